//! Compression on push, as podman does by default: a layer stored uncompressed (from a
//! docker-archive, whose tars are plain) goes to the registry as gzip, several times
//! smaller. The compressed blob is written to a temp file in the store's tmp dir first,
//! because the registry wants its digest before (monolithic) or at the end of the upload,
//! and a whole layer must never sit in memory. The config is untouched (its diff_ids are
//! of the uncompressed tars), so the image ID stays; the manifest is rewritten.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::archive::{MT_LAYER_GZIP, MT_LAYER_TAR};
use super::ImageError;

const MT_DOCKER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
const MT_DOCKER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// podman's `--compression-format`; only gzip can be written here (no zstd encoder).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CompressionFormat {
    #[default]
    Gzip,
}

impl CompressionFormat {
    /// The name the blob-info cache records the compressed form under.
    pub fn name(self) -> &'static str {
        match self {
            CompressionFormat::Gzip => "gzip",
        }
    }
}

impl std::str::FromStr for CompressionFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<CompressionFormat, String> {
        match s {
            "gzip" => Ok(CompressionFormat::Gzip),
            "zstd" | "zstd:chunked" => Err(format!(
                "compression format {s:?} is not supported by skiff push: use gzip (the default)"
            )),
            // podman's words for a name it does not know.
            other => Err(format!(
                "cannot find compressor for {other:?}: use gzip (the default)"
            )),
        }
    }
}

/// The gzip media type for an uncompressed layer media type; None when the layer is
/// compressed already (or of a type we do not know, which is sent as it is).
pub fn gzip_media_type(media_type: &str) -> Option<&'static str> {
    match media_type {
        MT_LAYER_TAR => Some(MT_LAYER_GZIP),
        MT_DOCKER_TAR => Some(MT_DOCKER_GZIP),
        _ => None,
    }
}

/// A compressed blob in the store's tmp dir, removed when dropped (on success and on
/// every error path alike).
#[derive(Debug)]
pub struct TempBlob {
    pub path: PathBuf,
    pub digest: String,
    pub size: u64,
}

impl Drop for TempBlob {
    fn drop(&mut self) {
        tracing::debug!(path = %self.path.display(), "remove compressed temp blob");
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Counts and hashes what the encoder writes on its way to the file.
struct HashingFile {
    file: io::BufWriter<File>,
    hasher: Sha256,
    written: u64,
}

impl Write for HashingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Gzips the blob at `src` into a new file under `tmp_dir`; blocking, CPU-bound.
pub fn gzip_to_temp(src: &Path, tmp_dir: &Path) -> Result<TempBlob, ImageError> {
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ImageError::Io { path, source }
    };
    let mut input = File::open(src).map_err(io_err(src))?;
    let path = tmp_dir.join(format!(
        "push-gzip-{}-{}",
        std::process::id(),
        hex::encode(crate::storage::random_bytes::<6>())
    ));
    let file = File::create(&path).map_err(io_err(&path))?;
    // From here on the guard removes the file whatever happens.
    let mut blob = TempBlob {
        path,
        digest: String::new(),
        size: 0,
    };
    let sink = HashingFile {
        file: io::BufWriter::with_capacity(1 << 20, file),
        hasher: Sha256::new(),
        written: 0,
    };
    // Go's gzip.DefaultCompression is level 6 too, so sizes compare with podman's.
    let mut enc = flate2::write::GzEncoder::new(sink, flate2::Compression::default());
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match io::Read::read(&mut input, &mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err(src)(e)),
        };
        enc.write_all(&buf[..n]).map_err(io_err(&blob.path))?;
    }
    let mut sink = enc.finish().map_err(io_err(&blob.path))?;
    sink.flush().map_err(io_err(&blob.path))?;
    blob.digest = format!("sha256:{}", hex::encode(sink.hasher.finalize()));
    blob.size = sink.written;
    tracing::debug!(src = %src.display(), digest = %blob.digest, size = blob.size, "compressed layer for push");
    Ok(blob)
}

/// Removes compressed temp blobs of pushes that died (kill -9) before their guard ran.
pub fn clean_stale(tmp_dir: &Path) {
    let Ok(rd) = std::fs::read_dir(tmp_dir) else {
        return;
    };
    for e in rd.flatten() {
        let n = e.file_name().to_string_lossy().to_string();
        let Some(rest) = n.strip_prefix("push-gzip-") else {
            continue;
        };
        let pid = rest.split('-').next().unwrap_or("");
        if !pid.is_empty() && !Path::new(&format!("/proc/{pid}")).exists() {
            tracing::debug!(path = %e.path().display(), "remove stale compressed temp blob");
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// What an uncompressed layer became: the new descriptor fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replacement {
    pub digest: String,
    pub size: u64,
    pub media_type: &'static str,
}

/// The stored manifest with the replaced layers' descriptors changed (keyed by the old
/// layer digest); everything else is kept.
pub fn rewrite_manifest(
    manifest: &[u8],
    replaced: &HashMap<String, Replacement>,
) -> Result<Vec<u8>, String> {
    let mut v: serde_json::Value =
        serde_json::from_slice(manifest).map_err(|e| format!("cannot parse the manifest: {e}"))?;
    let layers = v
        .get_mut("layers")
        .and_then(|l| l.as_array_mut())
        .ok_or("the manifest has no layers list")?;
    for l in layers {
        let Some(old) = l.get("digest").and_then(|d| d.as_str()) else {
            continue;
        };
        if let Some(r) = replaced.get(old) {
            l["digest"] = r.digest.clone().into();
            l["size"] = r.size.into();
            l["mediaType"] = r.media_type.into();
        }
    }
    serde_json::to_vec(&v).map_err(|e| format!("cannot write the manifest: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_media_types() {
        assert_eq!("gzip".parse(), Ok(CompressionFormat::Gzip));
        assert!("zstd".parse::<CompressionFormat>().is_err());
        assert!("lz4".parse::<CompressionFormat>().is_err());
        assert_eq!(gzip_media_type(MT_LAYER_TAR), Some(MT_LAYER_GZIP));
        assert_eq!(gzip_media_type(MT_DOCKER_TAR), Some(MT_DOCKER_GZIP));
        assert_eq!(gzip_media_type(MT_LAYER_GZIP), None);
    }

    #[test]
    fn gzip_to_temp_hashes_what_it_wrote_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("layer.tar");
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&src, &data).unwrap();
        let blob = gzip_to_temp(&src, dir.path()).unwrap();
        let bytes = std::fs::read(&blob.path).unwrap();
        assert_eq!(bytes.len() as u64, blob.size);
        assert_eq!(crate::storage::blobs::sha256_digest(&bytes), blob.digest);
        assert!(blob.size < data.len() as u64 / 10);
        let mut out = Vec::new();
        io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut out).unwrap();
        assert_eq!(out, data);
        // The same input compresses to the same digest, so a cached digest stays valid.
        let again = gzip_to_temp(&src, dir.path()).unwrap();
        assert_eq!(again.digest, blob.digest);
        let path = blob.path.clone();
        drop(blob);
        assert!(!path.exists());
        drop(again);
        assert!(gzip_to_temp(&dir.path().join("missing"), dir.path()).is_err());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn manifest_rewrite_changes_only_replaced_layers() {
        let m = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:c","size":3},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:a","size":100},{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:b","size":5}]}"#;
        let mut r = HashMap::new();
        r.insert(
            "sha256:a".to_string(),
            Replacement {
                digest: "sha256:z".into(),
                size: 7,
                media_type: MT_LAYER_GZIP,
            },
        );
        let out: serde_json::Value =
            serde_json::from_slice(&rewrite_manifest(m, &r).unwrap()).unwrap();
        assert_eq!(out["layers"][0]["digest"], "sha256:z");
        assert_eq!(out["layers"][0]["size"], 7);
        assert_eq!(out["layers"][0]["mediaType"], MT_LAYER_GZIP);
        assert_eq!(out["layers"][1]["digest"], "sha256:b");
        assert_eq!(out["config"]["digest"], "sha256:c");
        assert!(rewrite_manifest(b"{}", &r).is_err());
    }
}
