//! Which compressed blob a layer became when push compressed it, as containers/image's
//! blob-info cache records: a later push of the same layer can then ask the registry
//! for that digest (HEAD) instead of compressing the whole layer again to learn it.

use rusqlite::{params, OptionalExtension};

use super::images::db_err;
use super::{StorageError, Store};

/// Created on first use rather than by a numbered migration: only push needs it, and
/// other changes claim schema versions at the same time.
const TABLE: &str = "CREATE TABLE IF NOT EXISTS compressed_blobs (
    diff_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    digest TEXT NOT NULL,
    size INTEGER NOT NULL,
    PRIMARY KEY (diff_id, algorithm)
);";

/// A compressed form of a layer: its blob digest and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompressedBlob {
    pub digest: String,
    pub size: u64,
}

impl Store {
    fn has_blob_info_table(&self) -> Result<bool, StorageError> {
        let n: i64 = self
            .conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type='table' AND name='compressed_blobs'",
                [],
                |r| r.get(0),
            )
            .map_err(self.err())?;
        Ok(n > 0)
    }

    /// The blob the layer `diff_id` was compressed to with `algorithm` before, if any.
    pub fn compressed_blob(
        &self,
        diff_id: &str,
        algorithm: &str,
    ) -> Result<Option<CompressedBlob>, StorageError> {
        if !self.has_blob_info_table()? {
            return Ok(None);
        }
        self.conn
            .query_row(
                "SELECT digest, size FROM compressed_blobs WHERE diff_id = ?1 AND algorithm = ?2",
                params![diff_id, algorithm],
                |r| {
                    Ok(CompressedBlob {
                        digest: r.get(0)?,
                        size: r.get::<_, i64>(1)?.max(0) as u64,
                    })
                },
            )
            .optional()
            .map_err(self.err())
    }

    pub fn record_compressed_blob(
        &mut self,
        diff_id: &str,
        algorithm: &str,
        blob: &CompressedBlob,
    ) -> Result<(), StorageError> {
        self.write(|tx| {
            tx.execute_batch(TABLE).map_err(|e| db_err(tx, e))?;
            tx.execute(
                "INSERT OR REPLACE INTO compressed_blobs (diff_id, algorithm, digest, size) VALUES (?1,?2,?3,?4)",
                params![diff_id, algorithm, blob.digest, blob.size as i64],
            )
            .map_err(|e| db_err(tx, e))?;
            Ok(())
        })
    }
}
