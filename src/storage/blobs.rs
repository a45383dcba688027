//! Content-addressed blobs (manifests, configs, compressed layers) kept exactly as pulled,
//! so a later push or save sends the same bytes and digests still hold.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{StorageError, Store};

/// Splits and checks a `sha256:<64 hex>` digest; anything else could name a path outside
/// the blob directory, so it is refused.
pub fn digest_hex(digest: &str) -> Result<&str, StorageError> {
    let hex = digest.strip_prefix("sha256:").unwrap_or("");
    if hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(hex)
    } else {
        Err(StorageError::Corrupt {
            what: format!("digest {digest:?}"),
            detail: "only sha256 digests of 64 lowercase hex digits are supported".into(),
        })
    }
}

/// `sha256:<hex>` of some bytes.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

impl Store {
    pub fn blob_path(&self, digest: &str) -> Result<PathBuf, StorageError> {
        Ok(self.paths.blobs().join(digest_hex(digest)?))
    }

    pub fn has_blob(&self, digest: &str) -> bool {
        self.blob_path(digest).map(|p| p.exists()).unwrap_or(false)
    }

    /// Stores small blobs (manifests, configs) after checking their digest.
    pub fn put_blob(&self, digest: &str, data: &[u8]) -> Result<(), StorageError> {
        let mut w = BlobWriter::create(self, digest)?;
        w.write_all(data).map_err(StorageError::io(&w.tmp))?;
        w.commit()
    }

    pub fn read_blob(&self, digest: &str) -> Result<Vec<u8>, StorageError> {
        let p = self.blob_path(digest)?;
        std::fs::read(&p).map_err(StorageError::io(p))
    }
}

/// Streams a blob into a temp file while hashing it; only a blob whose digest matches is
/// renamed into place, so the store never holds unverified content under a digest name.
pub struct BlobWriter {
    /// Set once the blob is renamed into place; otherwise drop removes the temp file.
    done: bool,
    file: File,
    tmp: PathBuf,
    dest: PathBuf,
    expected: String,
    hasher: Sha256,
    pub written: u64,
}

impl BlobWriter {
    pub fn create(store: &Store, digest: &str) -> Result<BlobWriter, StorageError> {
        let dest = store.blob_path(digest)?;
        let tmp = store.paths.tmp().join(format!(
            "blob-{}-{}",
            std::process::id(),
            hex::encode(super::random_bytes::<4>())
        ));
        let file = File::create(&tmp).map_err(StorageError::io(&tmp))?;
        Ok(BlobWriter {
            done: false,
            file,
            tmp,
            dest,
            expected: digest.to_string(),
            hasher: Sha256::new(),
            written: 0,
        })
    }

    /// The digest of what was written so far (meaningful once the stream is complete).
    pub fn actual_digest(&self) -> String {
        format!("sha256:{}", hex::encode(self.hasher.clone().finalize()))
    }

    /// Verifies the digest and moves the blob into place.
    pub fn commit(mut self) -> Result<(), StorageError> {
        let actual = self.actual_digest();
        if actual != self.expected {
            return Err(StorageError::Corrupt {
                what: format!("blob {}", self.expected),
                detail: format!("content has digest {actual}: the registry sent different bytes, try pulling again"),
            });
        }
        self.file.sync_all().map_err(StorageError::io(&self.tmp))?;
        std::fs::rename(&self.tmp, &self.dest).map_err(StorageError::io(&self.dest))?;
        self.done = true;
        Ok(())
    }

    /// Drops the partial blob (as dropping does; this names the intent).
    pub fn abort(self) {}

    pub fn tmp_path(&self) -> &Path {
        &self.tmp
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

impl Write for BlobWriter {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_validation() {
        let good = format!("sha256:{}", "a".repeat(64));
        assert!(digest_hex(&good).is_ok());
        assert!(digest_hex("sha256:../../etc/passwd").is_err());
        assert!(digest_hex(&format!("sha512:{}", "a".repeat(64))).is_err());
        assert!(digest_hex(&format!("sha256:{}", "A".repeat(64))).is_err());
    }
}
