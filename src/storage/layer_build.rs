//! Layers made here rather than pulled (`commit`, `import`) and layers unpacked again
//! from a stored blob (`system check --repair`): a tar stream is compressed into a blob
//! while both digests are computed, then the blob is unpacked into the layer store by
//! the same user-namespace helper a pull uses, under the same per-layer lock.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use sha2::{Digest, Sha256};

use super::layer_helper::Summary;
use super::layers::layer_dir_name;
use super::lock::FileLock;
use super::{StorageError, Store};
use crate::config::Paths;
use crate::userns::IdMapping;

/// How a new layer blob is compressed (`--compression-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerCompression {
    Gzip,
    Zstd,
}

impl LayerCompression {
    pub fn parse(s: &str) -> Option<LayerCompression> {
        match s {
            "gzip" => Some(LayerCompression::Gzip),
            "zstd" | "zstd:chunked" => Some(LayerCompression::Zstd),
            _ => None,
        }
    }
    pub fn media_type(self) -> &'static str {
        match self {
            LayerCompression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            LayerCompression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }
}

/// A layer blob written by [`LayerWriter::finish`], already in the blob store.
#[derive(Debug, Clone)]
pub struct NewLayer {
    pub digest: String,
    pub diff_id: String,
    pub media_type: String,
    /// Compressed size.
    pub size: u64,
}

/// The compressed bytes' sink: a temp file in the store, hashed as it is written.
struct HashFile {
    file: BufWriter<File>,
    hasher: Sha256,
    written: u64,
}

impl Write for HashFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

enum Encoder {
    Gzip(flate2::write::GzEncoder<HashFile>),
    Zstd(zstd::Encoder<'static, HashFile>),
}

/// Takes an uncompressed layer tar via `Write`; the temp file is removed unless
/// `finish` moved it into the blob store.
pub struct LayerWriter {
    enc: Option<Encoder>,
    tmp: PathBuf,
    diff: Sha256,
    compression: LayerCompression,
}

impl LayerWriter {
    pub fn create(
        store: &Store,
        compression: LayerCompression,
    ) -> Result<LayerWriter, StorageError> {
        let tmp = store.paths.tmp().join(format!(
            "blob-{}-{}",
            std::process::id(),
            hex::encode(super::random_bytes::<4>())
        ));
        let file = File::create(&tmp).map_err(StorageError::io(&tmp))?;
        let sink = HashFile {
            file: BufWriter::with_capacity(1 << 20, file),
            hasher: Sha256::new(),
            written: 0,
        };
        let enc = match compression {
            LayerCompression::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                sink,
                flate2::Compression::default(),
            )),
            LayerCompression::Zstd => {
                Encoder::Zstd(zstd::Encoder::new(sink, 3).map_err(StorageError::io(&tmp))?)
            }
        };
        Ok(LayerWriter {
            enc: Some(enc),
            tmp,
            diff: Sha256::new(),
            compression,
        })
    }

    /// Ends the stream, syncs the blob and names it by its digest.
    pub fn finish(mut self, store: &Store) -> Result<NewLayer, StorageError> {
        let tmp = self.tmp.clone();
        let sink = match self.enc.take() {
            Some(Encoder::Gzip(e)) => e.finish(),
            Some(Encoder::Zstd(e)) => e.finish(),
            None => Err(std::io::Error::other("layer already finished")),
        }
        .map_err(StorageError::io(&tmp))?;
        let HashFile {
            file,
            hasher,
            written,
        } = sink;
        let file = file.into_inner().map_err(|e| StorageError::Io {
            path: tmp.clone(),
            source: e.into_error(),
        })?;
        file.sync_all().map_err(StorageError::io(&tmp))?;
        let digest = format!("sha256:{}", hex::encode(hasher.finalize()));
        let dest = store.blob_path(&digest)?;
        std::fs::rename(&tmp, &dest).map_err(StorageError::io(&dest))?;
        Ok(NewLayer {
            digest,
            diff_id: format!("sha256:{}", hex::encode(self.diff.clone().finalize())),
            media_type: self.compression.media_type().to_string(),
            size: written,
        })
    }
}

impl Write for LayerWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = match self.enc.as_mut() {
            Some(Encoder::Gzip(e)) => e.write(buf)?,
            Some(Encoder::Zstd(e)) => e.write(buf)?,
            None => return Err(std::io::Error::other("layer already finished")),
        };
        self.diff.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LayerWriter {
    fn drop(&mut self) {
        if self.enc.is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// The lock that serializes fetching/unpacking one layer across processes, so
/// parallel pulls (and commits, repairs) of the same layer do the work once.
pub fn layer_lock(paths: &Paths, dir_name: &str) -> Result<FileLock, StorageError> {
    FileLock::exclusive(
        &paths
            .runroot
            .join("locks")
            .join(format!("layer-{dir_name}")),
    )
}

/// Makes sure the layer of `blob` (stored in the blob store) is unpacked for `mapping`
/// and recorded; returns its uncompressed size. The diff_id is verified.
pub fn install_layer(
    store: &mut Store,
    digest: &str,
    diff_id: &str,
    media_type: &str,
    mapping_key: &str,
    mapping: Option<&IdMapping>,
) -> Result<u64, StorageError> {
    let dir_name = layer_dir_name(diff_id, mapping_key);
    let _lock = layer_lock(&store.paths, &dir_name)?;
    if store.layer(diff_id, mapping_key)?.is_some() {
        return Ok(store
            .layers_size(&[diff_id.to_string()], mapping_key)?
            .max(0) as u64);
    }
    let blob = store.blob_path(digest)?;
    let size = unpack_blob(&store.paths, &blob, media_type, &dir_name, mapping, diff_id)?;
    store.record_layer(diff_id, mapping_key, &dir_name, size)?;
    Ok(size)
}

fn helper_err(blob: &Path, detail: impl Into<String>) -> StorageError {
    StorageError::Corrupt {
        what: format!("layer blob {}", blob.display()),
        detail: detail.into(),
    }
}

/// Streams a stored blob through the `__unpack-layer` helper into `layers/<dir_name>`;
/// the directory is committed only if the stream hashes to `diff_id`.
pub fn unpack_blob(
    paths: &Paths,
    blob: &Path,
    media_type: &str,
    dir_name: &str,
    mapping: Option<&IdMapping>,
    diff_id: &str,
) -> Result<u64, StorageError> {
    let mut args: Vec<String> = vec![
        "__unpack-layer".into(),
        "--layers-dir".into(),
        paths.layers().display().to_string(),
        "--name".into(),
        dir_name.to_string(),
        "--media-type".into(),
        media_type.to_string(),
    ];
    if !paths.rootless {
        args.push("--trusted-xattrs".into());
    }
    let mut src = File::open(blob).map_err(StorageError::io(blob))?;
    let mut h = crate::userns::spawn_helper(Path::new("/proc/self/exe"), &args, mapping, |c| {
        c.stdin(Stdio::piped());
        c.stdout(Stdio::null());
    })
    .map_err(|e| helper_err(blob, e.to_string()))?;
    if let Some(mut stdin) = h.child.stdin.take() {
        // A helper that fails stops reading: its report says why, better than EPIPE.
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match src.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    let _ = h.child.kill();
                    let _ = h.child.wait();
                    return Err(StorageError::Io {
                        path: blob.to_path_buf(),
                        source: e,
                    });
                }
            };
            if stdin.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    }
    let line = crate::runtime::exec::read_line(&mut h.sync).unwrap_or_default();
    let summary: Option<Summary> = serde_json::from_str(line.trim()).ok();
    let verdict = match &summary {
        Some(Summary {
            diff_id: Some(d), ..
        }) if d == diff_id => Ok(summary.as_ref().map(|s| s.size).unwrap_or(0)),
        Some(Summary { error: Some(e), .. }) => Err(helper_err(blob, e.clone())),
        Some(Summary {
            diff_id: Some(d), ..
        }) => Err(helper_err(
            blob,
            format!("uncompressed content has {d}, expected {diff_id}"),
        )),
        _ => Err(helper_err(
            blob,
            "the unpack helper exited without a report",
        )),
    };
    let _ = h.sync.write_all(if verdict.is_ok() {
        b"commit\n"
    } else {
        b"abort\n"
    });
    let reply = crate::runtime::exec::read_line(&mut h.sync).unwrap_or_default();
    let _ = h.child.wait();
    let size = verdict?;
    if reply.trim() != "ok" {
        return Err(helper_err(blob, reply.trim().to_string()));
    }
    Ok(size)
}
