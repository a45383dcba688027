//! Unpacked layer directories, keyed by diff_id and ID mapping: file owners on disk depend
//! on the mapping, so each mapping needs its own copy, shared by every image using it.

use std::collections::HashSet;
use std::path::PathBuf;

use rusqlite::{params, OptionalExtension};
use sha2::{Digest, Sha256};

use super::images::db_err;
use super::{StorageError, Store};

/// A short, stable directory name for a layer: short names keep the overlay mount option
/// string (limited to one page) small enough for images with many layers.
pub fn layer_dir_name(diff_id: &str, mapping: &str) -> String {
    let mut h = Sha256::new();
    h.update(diff_id.as_bytes());
    h.update([0]);
    h.update(mapping.as_bytes());
    hex::encode(&h.finalize()[..8])
}

/// What garbage collection found unreferenced: records are already gone, the caller
/// removes the files (layer files may need the user namespace to delete).
#[derive(Debug, Default)]
pub struct Garbage {
    pub layer_dirs: Vec<PathBuf>,
    pub blobs: Vec<PathBuf>,
}

impl Store {
    /// The directory of an unpacked layer, if it is recorded and present.
    pub fn layer(&self, diff_id: &str, mapping: &str) -> Result<Option<PathBuf>, StorageError> {
        let dir: Option<String> = self
            .conn
            .query_row(
                "SELECT dir FROM layers WHERE diff_id = ?1 AND mapping = ?2",
                params![diff_id, mapping],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.err())?;
        Ok(dir
            .map(|d| self.paths.layers().join(d))
            .filter(|p| p.is_dir()))
    }

    pub fn record_layer(
        &mut self,
        diff_id: &str,
        mapping: &str,
        dir: &str,
        size: u64,
    ) -> Result<(), StorageError> {
        self.write(|tx| {
            tx.execute(
                "INSERT OR REPLACE INTO layers (diff_id, mapping, dir, size) VALUES (?1,?2,?3,?4)",
                params![diff_id, mapping, dir, size as i64],
            )
            .map_err(|e| db_err(tx, e))?;
            Ok(())
        })
    }

    /// Sum of the uncompressed sizes of the given layers under a mapping.
    pub fn layers_size(&self, diff_ids: &[String], mapping: &str) -> Result<i64, StorageError> {
        let mut total = 0i64;
        for d in diff_ids {
            let s: Option<i64> = self
                .conn
                .query_row(
                    "SELECT size FROM layers WHERE diff_id = ?1 AND mapping = ?2",
                    params![d, mapping],
                    |r| r.get(0),
                )
                .optional()
                .map_err(self.err())?;
            total += s.unwrap_or(0);
        }
        Ok(total)
    }

    /// Drops the records of layers and blobs no image refers to any more.
    pub fn collect_garbage(&mut self) -> Result<Garbage, StorageError> {
        let mut used_diffs = HashSet::new();
        let mut used_blobs = HashSet::new();
        let layers_dir = self.paths.layers();
        let blobs_dir = self.paths.blobs();
        let mut garbage = Garbage::default();
        self.write(|tx| {
            // What is in use is read in the same transaction that deletes, so an image
            // recorded meanwhile cannot lose its layers.
            let images: Vec<(String, String, String)> = {
                let mut st = tx
                    .prepare("SELECT id, manifest_digest, layers FROM images")
                    .map_err(|e| db_err(tx, e))?;
                let v = st
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .map_err(|e| db_err(tx, e))?
                    .collect::<Result<_, _>>()
                    .map_err(|e| db_err(tx, e))?;
                v
            };
            for (id, manifest, layers) in images {
                used_blobs.insert(format!("sha256:{id}"));
                used_blobs.insert(manifest);
                let layers: Vec<super::images::LayerRef> =
                    serde_json::from_str(&layers).map_err(|e| StorageError::Corrupt {
                        what: format!("image {id}"),
                        detail: e.to_string(),
                    })?;
                for l in layers {
                    used_diffs.insert(l.diff_id);
                    used_blobs.insert(l.digest);
                }
            }
            let rows: Vec<(String, String, String)> = {
                let mut st = tx
                    .prepare("SELECT diff_id, mapping, dir FROM layers")
                    .map_err(|e| db_err(tx, e))?;
                let v = st
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .map_err(|e| db_err(tx, e))?
                    .collect::<Result<_, _>>()
                    .map_err(|e| db_err(tx, e))?;
                v
            };
            for (diff, mapping, dir) in rows {
                if !used_diffs.contains(&diff) {
                    tx.execute(
                        "DELETE FROM layers WHERE diff_id = ?1 AND mapping = ?2",
                        params![diff, mapping],
                    )
                    .map_err(|e| db_err(tx, e))?;
                    garbage.layer_dirs.push(layers_dir.join(dir));
                }
            }
            Ok(())
        })?;
        if let Ok(rd) = std::fs::read_dir(&blobs_dir) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if !used_blobs.contains(&format!("sha256:{name}")) {
                    garbage.blobs.push(e.path());
                }
            }
        }
        Ok(garbage)
    }
}

/// The pid embedded in a temp name `<prefix><...>-<pid>-<rand>`.
fn temp_owner(name: &str) -> Option<i32> {
    let mut parts = name.rsplit('-');
    parts.next()?;
    parts.next()?.parse().ok()
}

impl Store {
    /// Temp layer dirs and blob files left by pulls that were killed (their pid is gone).
    /// Live pulls keep theirs. Returns (layer dirs, blob files) for the caller to remove.
    pub fn stale_temps(&self) -> (Vec<PathBuf>, Vec<PathBuf>) {
        let dead = |name: &str| {
            temp_owner(name)
                .map(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
                .unwrap_or(true)
        };
        let scan = |dir: PathBuf, prefix: &str| -> Vec<PathBuf> {
            std::fs::read_dir(dir)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| {
                    let n = e.file_name().to_string_lossy().to_string();
                    n.starts_with(prefix) && dead(&n)
                })
                .map(|e| e.path())
                .collect()
        };
        (
            scan(self.paths.layers(), ".tmp-"),
            scan(self.paths.tmp(), "blob-"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_carry_their_pid() {
        assert_eq!(
            temp_owner(".tmp-0123456789abcdef-4242-deadbeef"),
            Some(4242)
        );
        assert_eq!(temp_owner("blob-77-cafe"), Some(77));
        assert_eq!(temp_owner("blob-x"), None);
        assert_ne!(
            layer_dir_name("sha256:a", "host"),
            layer_dir_name("sha256:a", "u0:1:1")
        );
    }
}
