//! `system check`: the store against itself. Every blob is hashed and compared with its
//! name, every layer record with its directory and every directory with a record, every
//! image with the blobs and layers it needs, and temp files of killed writers are found.
//! Repairs never touch a container's own data: they delete what is corrupt or unused,
//! unpack missing layers again from their kept blobs, and say what only a pull can fix.

use std::collections::HashSet;
use std::io::Read;
use std::path::PathBuf;

use rusqlite::params;
use sha2::{Digest, Sha256};

use super::images::db_err;
use super::{StorageError, Store};

/// One inconsistency, and what repairing it means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A blob whose content does not hash to its name (or a stray file in the blob dir).
    CorruptBlob { path: PathBuf, actual: String },
    /// An image needs a blob the store does not have.
    MissingBlob { image: String, digest: String },
    /// A layer directory no record refers to (a pull killed between unpack and record).
    UnrecordedLayerDir { path: PathBuf },
    /// A layer record whose directory is gone.
    MissingLayerDir {
        diff_id: String,
        mapping: String,
        dir: String,
    },
    /// An image layer that is not unpacked for any mapping.
    ImageLayerMissing { image: String, diff_id: String },
    /// A temp file or dir of a writer that no longer runs.
    TempLeftover { path: PathBuf },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::CorruptBlob { path, actual } => {
                write!(
                    f,
                    "blob {} is corrupt: its content hashes to {actual}",
                    path.display()
                )
            }
            Problem::MissingBlob { image, digest } => write!(
                f,
                "image {} needs blob {digest}, which is missing: pull the image again",
                short(image)
            ),
            Problem::UnrecordedLayerDir { path } => {
                write!(f, "layer directory {} has no record", path.display())
            }
            Problem::MissingLayerDir { diff_id, dir, .. } => {
                write!(
                    f,
                    "layer {diff_id} is recorded but its directory {dir} is missing"
                )
            }
            Problem::ImageLayerMissing { image, diff_id } => write!(
                f,
                "image {} needs layer {diff_id}, which is not unpacked: pull the image again",
                short(image)
            ),
            Problem::TempLeftover { path } => {
                write!(
                    f,
                    "{} is left over from an interrupted write",
                    path.display()
                )
            }
        }
    }
}

fn short(id: &str) -> &str {
    &id[..12.min(id.len())]
}

/// The `sha256:<hex>` of a file's content.
pub fn hash_file(path: &std::path::Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("sha256:{}", hex::encode(h.finalize())))
}

/// A recorded layer: (diff_id, mapping, dir name).
pub type LayerRecord = (String, String, String);

impl Store {
    /// Every layer record.
    pub fn layer_records(&self) -> Result<Vec<LayerRecord>, StorageError> {
        let mut st = self
            .conn
            .prepare("SELECT diff_id, mapping, dir FROM layers ORDER BY dir")
            .map_err(self.err())?;
        let v = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(self.err())?
            .collect::<Result<_, _>>()
            .map_err(self.err())?;
        Ok(v)
    }

    /// Drops the record of a layer (its directory is gone); the next pull fetches it.
    pub fn forget_layer(&mut self, diff_id: &str, mapping: &str) -> Result<(), StorageError> {
        self.write(|tx| {
            tx.execute(
                "DELETE FROM layers WHERE diff_id = ?1 AND mapping = ?2",
                params![diff_id, mapping],
            )
            .map_err(|e| db_err(tx, e))?;
            Ok(())
        })
    }

    /// Finds every store-level problem. The caller holds the GC lock exclusively, so no
    /// pull is between writing a layer and recording it.
    pub fn check(&self) -> Result<Vec<Problem>, StorageError> {
        let mut problems = Vec::new();
        // Blobs: content against name.
        let blobs = self.paths.blobs();
        let mut present = HashSet::new();
        for e in std::fs::read_dir(&blobs)
            .map_err(StorageError::io(&blobs))?
            .flatten()
        {
            let name = e.file_name().to_string_lossy().to_string();
            let digest = format!("sha256:{name}");
            let actual = match hash_file(&e.path()) {
                Ok(d) => d,
                Err(err) => format!("unreadable ({err})"),
            };
            if actual == digest {
                present.insert(digest);
            } else {
                problems.push(Problem::CorruptBlob {
                    path: e.path(),
                    actual,
                });
            }
        }
        // Layers: records against directories.
        let records = self.layer_records()?;
        let layers_dir = self.paths.layers();
        let mut recorded_dirs = HashSet::new();
        let mut unpacked = HashSet::new();
        for (diff_id, mapping, dir) in &records {
            recorded_dirs.insert(dir.clone());
            if layers_dir.join(dir).is_dir() {
                unpacked.insert(diff_id.clone());
            } else {
                problems.push(Problem::MissingLayerDir {
                    diff_id: diff_id.clone(),
                    mapping: mapping.clone(),
                    dir: dir.clone(),
                });
            }
        }
        let (tmp_dirs, tmp_blobs) = self.stale_temps();
        for e in std::fs::read_dir(&layers_dir)
            .map_err(StorageError::io(&layers_dir))?
            .flatten()
        {
            let name = e.file_name().to_string_lossy().to_string();
            if !name.starts_with(".tmp-") && !recorded_dirs.contains(&name) {
                problems.push(Problem::UnrecordedLayerDir { path: e.path() });
            }
        }
        for path in tmp_dirs.into_iter().chain(tmp_blobs) {
            problems.push(Problem::TempLeftover { path });
        }
        // Images: the blobs and layers they need.
        for img in self.images()? {
            let mut needed = vec![img.manifest_digest.clone(), img.config_digest()];
            needed.extend(img.layers.iter().map(|l| l.digest.clone()));
            for d in needed {
                if !present.contains(&d) {
                    problems.push(Problem::MissingBlob {
                        image: img.id.clone(),
                        digest: d,
                    });
                }
            }
            for l in &img.layers {
                let recorded = records.iter().any(|(d, _, _)| d == &l.diff_id);
                if !recorded {
                    problems.push(Problem::ImageLayerMissing {
                        image: img.id.clone(),
                        diff_id: l.diff_id.clone(),
                    });
                }
            }
        }
        Ok(problems)
    }
}
