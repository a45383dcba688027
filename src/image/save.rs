//! `save`: images out of the store as a docker-archive, oci-archive or oci-dir. OCI
//! layouts get the stored blobs byte for byte (same manifest digest); a docker-archive
//! holds uncompressed layer tars, decompressed from the stored blobs and checked against
//! the diff_ids on the way out.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::archive::{self, archive_err, DockerManifest, Format};
use super::progress::{BlobProgress, Counting, Progress};
use super::ImageError;
use crate::storage::images::ImageRecord;
use crate::storage::unpack::Compression;
use crate::storage::Store;

/// Where the archive goes.
pub enum Output {
    /// A tar file (oci-dir: a directory), written under a temp name and renamed, so a
    /// failed save leaves nothing behind.
    Path(PathBuf),
    Stdout,
}

/// One image to save and the names to record for it.
pub struct SaveItem {
    pub image: ImageRecord,
    pub names: Vec<String>,
}

/// Writes `items` in `format` to `out`. `mapping_key` finds the recorded uncompressed
/// layer sizes a docker-archive needs up front.
pub fn save(
    store: &Store,
    items: &[SaveItem],
    format: Format,
    out: &Output,
    mapping_key: &str,
    quiet: bool,
) -> Result<(), ImageError> {
    let progress = Progress::new(quiet);
    progress.message("Getting image source signatures");
    match (out, format) {
        (Output::Stdout, Format::OciDir) => Err(archive_err(
            "save",
            "--format oci-dir needs a directory: give one with -o",
        )),
        (Output::Stdout, _) => {
            let stdout = io::stdout().lock();
            let mut sink = Sink::Tar(tar::Builder::new(Box::new(BufWriter::with_capacity(
                1 << 20,
                stdout,
            ))));
            write_all(store, items, format, &mut sink, mapping_key, &progress)?;
            sink.finish("stdout")
        }
        (Output::Path(path), _) => {
            let shown = path.display().to_string();
            let tmp = temp_sibling(path);
            let result = (|| {
                let mut sink = if format == Format::OciDir {
                    if path.is_dir()
                        && std::fs::read_dir(path).map_or(true, |mut d| d.next().is_some())
                    {
                        return Err(archive_err(
                            &shown,
                            "directory exists and is not empty: give a new or empty directory",
                        ));
                    }
                    std::fs::create_dir(&tmp).map_err(|e| io_err(&tmp, e))?;
                    Sink::Dir(tmp.clone())
                } else {
                    let f = File::create(&tmp).map_err(|e| io_err(&tmp, e))?;
                    Sink::Tar(tar::Builder::new(Box::new(BufWriter::with_capacity(
                        1 << 20,
                        f,
                    ))))
                };
                write_all(store, items, format, &mut sink, mapping_key, &progress)?;
                sink.finish(&shown)?;
                std::fs::rename(&tmp, path).map_err(|e| io_err(path, e))
            })();
            if result.is_err() {
                let _ = std::fs::remove_dir_all(&tmp);
                let _ = std::fs::remove_file(&tmp);
            }
            result
        }
    }
}

fn temp_sibling(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "archive".into());
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

fn io_err(path: &Path, e: io::Error) -> ImageError {
    ImageError::Io {
        path: path.to_path_buf(),
        source: e,
    }
}

/// A tar stream or a directory, with the same three operations.
enum Sink {
    Tar(tar::Builder<Box<dyn Write>>),
    Dir(PathBuf),
}

fn header(size: u64, mode: u32, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_mode(mode);
    h.set_entry_type(kind);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h
}

impl Sink {
    fn dir(&mut self, name: &str) -> io::Result<()> {
        match self {
            Sink::Tar(b) => {
                let mut h = header(0, 0o755, tar::EntryType::Directory);
                b.append_data(&mut h, name, io::empty())
            }
            Sink::Dir(root) => match std::fs::create_dir(root.join(name)) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(e),
                _ => Ok(()),
            },
        }
    }

    /// Adds `size` bytes read from `data`; fails if `data` has another length.
    fn file(&mut self, name: &str, size: u64, data: &mut dyn Read) -> io::Result<()> {
        let mut exact = Exact {
            inner: data,
            left: size,
        };
        match self {
            Sink::Tar(b) => {
                let mut h = header(size, 0o644, tar::EntryType::Regular);
                b.append_data(&mut h, name, &mut exact)?;
            }
            Sink::Dir(root) => {
                let mut f = File::create(root.join(name))?;
                io::copy(&mut exact, &mut f)?;
            }
        }
        if exact.left != 0 {
            return Err(io::Error::other(format!(
                "{name}: {} bytes short of the expected {size}",
                exact.left
            )));
        }
        // One more byte means the source is longer than promised.
        let mut probe = [0u8; 1];
        if exact.inner.read(&mut probe)? != 0 {
            return Err(io::Error::other(format!(
                "{name}: longer than the expected {size} bytes"
            )));
        }
        Ok(())
    }

    fn bytes(&mut self, name: &str, data: &[u8]) -> io::Result<()> {
        self.file(name, data.len() as u64, &mut &data[..])
    }

    fn finish(self, shown: &str) -> Result<(), ImageError> {
        match self {
            Sink::Tar(b) => {
                let mut w = b
                    .into_inner()
                    .map_err(|e| archive_err(shown, format!("writing: {e}")))?;
                w.flush()
                    .map_err(|e| archive_err(shown, format!("writing: {e}")))
            }
            Sink::Dir(_) => Ok(()),
        }
    }
}

/// Reads at most `left` bytes from `inner`.
struct Exact<'a> {
    inner: &'a mut dyn Read,
    left: u64,
}

impl Read for Exact<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let max = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..max])?;
        self.left -= n as u64;
        Ok(n)
    }
}

/// Hashes what passes through, to check a decompressed layer against its diff_id.
struct HashRead<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

fn write_all(
    store: &Store,
    items: &[SaveItem],
    format: Format,
    sink: &mut Sink,
    mapping_key: &str,
    progress: &Progress,
) -> Result<(), ImageError> {
    let sink_err = |e: io::Error| archive_err("save", format!("writing the archive: {e}"));
    match format {
        Format::DockerArchive => {
            let mut written = HashSet::new();
            let mut manifests = Vec::new();
            let mut repositories = serde_json::Map::new();
            for item in items {
                let img = &item.image;
                let config = store.read_blob(&img.config_digest())?;
                let mut layers = Vec::new();
                for l in &img.layers {
                    let hex = l.diff_id.trim_start_matches("sha256:");
                    let name = format!("{hex}.tar");
                    if written.insert(name.clone()) {
                        let bar = progress.blob(&l.digest, None);
                        docker_layer(store, img, l, &name, sink, mapping_key, &bar)?;
                        bar.done(false);
                    }
                    layers.push(name);
                }
                let config_name = format!("{}.json", img.id);
                if written.insert(config_name.clone()) {
                    sink.bytes(&config_name, &config).map_err(sink_err)?;
                }
                for n in &item.names {
                    if let Some((repo, tag)) = split_name(n) {
                        let top = layers
                            .last()
                            .map(|l| l.trim_end_matches(".tar"))
                            .unwrap_or("");
                        let entry = repositories
                            .entry(repo)
                            .or_insert_with(|| serde_json::json!({}));
                        entry[tag] = serde_json::Value::String(top.to_string());
                    }
                }
                manifests.push(DockerManifest {
                    config: config_name,
                    repo_tags: Some(item.names.clone()),
                    layers,
                });
            }
            let m =
                serde_json::to_vec(&manifests).map_err(|e| archive_err("save", e.to_string()))?;
            sink.bytes("manifest.json", &m).map_err(sink_err)?;
            let r = serde_json::to_vec(&repositories)
                .map_err(|e| archive_err("save", e.to_string()))?;
            sink.bytes("repositories", &r).map_err(sink_err)?;
        }
        Format::OciArchive | Format::OciDir => {
            sink.bytes("oci-layout", archive::OCI_LAYOUT.as_bytes())
                .map_err(sink_err)?;
            sink.dir("blobs").map_err(sink_err)?;
            sink.dir("blobs/sha256").map_err(sink_err)?;
            let mut written = HashSet::new();
            let mut index = Vec::new();
            for item in items {
                let img = &item.image;
                if !store.has_blob(&img.manifest_digest) {
                    return Err(missing(img, &img.manifest_digest, "manifest"));
                }
                let manifest = store.read_blob(&img.manifest_digest)?;
                let mut blobs = vec![(img.manifest_digest.clone(), "manifest")];
                blobs.push((img.config_digest(), "config"));
                blobs.extend(img.layers.iter().map(|l| (l.digest.clone(), "layer")));
                for (d, what) in blobs {
                    if !written.insert(d.clone()) {
                        continue;
                    }
                    if what == "layer" {
                        let bar = progress.blob(&d, None);
                        copy_blob(store, img, &d, what, sink, &bar)?;
                        bar.done(false);
                    } else {
                        copy_blob(store, img, &d, what, sink, &BlobProgress::None)?;
                    }
                }
                let mut desc = serde_json::json!({
                    "mediaType": img.manifest_media_type,
                    "digest": img.manifest_digest,
                    "size": manifest.len(),
                });
                if item.names.is_empty() {
                    index.push(desc.clone());
                }
                for n in &item.names {
                    desc["annotations"] = serde_json::json!({ archive::REF_NAME: n });
                    index.push(desc.clone());
                }
            }
            let idx = serde_json::json!({"schemaVersion": 2, "manifests": index});
            let idx = serde_json::to_vec(&idx).map_err(|e| archive_err("save", e.to_string()))?;
            sink.bytes("index.json", &idx).map_err(sink_err)?;
        }
    }
    progress.message("Writing manifest to image destination");
    Ok(())
}

/// `registry/repo:tag` → (`registry/repo`, `tag`).
fn split_name(n: &str) -> Option<(String, String)> {
    let i = n.rfind(':')?;
    (!n[i..].contains('/')).then(|| (n[..i].to_string(), n[i + 1..].to_string()))
}

fn missing(img: &ImageRecord, digest: &str, what: &str) -> ImageError {
    ImageError::Invalid {
        image: img.names.first().cloned().unwrap_or_else(|| img.id.clone()),
        detail: format!(
            "the {what} blob {digest} is not in the store (the image was not pulled or loaded): saving it is not supported yet"
        ),
    }
}

fn copy_blob(
    store: &Store,
    img: &ImageRecord,
    digest: &str,
    what: &str,
    sink: &mut Sink,
    bar: &BlobProgress,
) -> Result<(), ImageError> {
    let path = store.blob_path(digest)?;
    let mut f = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(missing(img, digest, what)),
        Err(e) => return Err(io_err(&path, e)),
    };
    let size = f.metadata().map_err(|e| io_err(&path, e))?.len();
    bar.set_len(size);
    let hex = digest.trim_start_matches("sha256:");
    let mut f = Counting { inner: &mut f, bar };
    sink.file(&format!("blobs/sha256/{hex}"), size, &mut f)
        .map_err(|e| archive_err("save", format!("writing blob {digest}: {e}")))
}

/// Writes one layer as an uncompressed tar, checking it against its diff_id.
fn docker_layer(
    store: &Store,
    img: &ImageRecord,
    l: &crate::storage::images::LayerRef,
    name: &str,
    sink: &mut Sink,
    mapping_key: &str,
    bar: &BlobProgress,
) -> Result<(), ImageError> {
    let path = store.blob_path(&l.digest)?;
    let open = || -> Result<Box<dyn Read>, ImageError> {
        let f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(missing(img, &l.digest, "layer"))
            }
            Err(e) => return Err(io_err(&path, e)),
        };
        let f = io::BufReader::with_capacity(1 << 20, f);
        let compression = match Compression::from_media_type(&l.media_type) {
            Some(c) => c,
            None => {
                let mut f = f;
                let head = io::BufRead::fill_buf(&mut f).map_err(|e| io_err(&path, e))?;
                let c = Compression::sniff(head);
                return decoder(c, f, &path);
            }
        };
        decoder(compression, f, &path)
    };
    // The recorded uncompressed size saves a decompression pass; without it, count.
    let mut size = store.layers_size(std::slice::from_ref(&l.diff_id), mapping_key)? as u64;
    if size == 0 {
        size = io::copy(&mut open()?, &mut io::sink()).map_err(|e| io_err(&path, e))?;
    }
    bar.set_len(size);
    let mut reader = HashRead {
        inner: Counting {
            inner: open()?,
            bar,
        },
        hasher: Sha256::new(),
    };
    sink.file(name, size, &mut reader).map_err(|e| {
        archive_err(
            "save",
            format!("writing layer {} of {}: {e}", l.digest, img.id),
        )
    })?;
    let actual = format!("sha256:{}", hex::encode(reader.hasher.finalize()));
    if actual != l.diff_id {
        return Err(ImageError::DiffIdMismatch {
            image: img.id.clone(),
            digest: l.digest.clone(),
            expected: l.diff_id.clone(),
            actual,
        });
    }
    Ok(())
}

fn decoder(
    c: Compression,
    f: io::BufReader<File>,
    path: &Path,
) -> Result<Box<dyn Read>, ImageError> {
    Ok(match c {
        Compression::None => Box::new(f),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(f)),
        Compression::Zstd => Box::new(zstd::Decoder::with_buffer(f).map_err(|e| io_err(path, e))?),
    })
}
