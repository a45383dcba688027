//! Named volumes: a record per volume and its directory `volumes/<name>/_data`. The
//! directory is created with the record, in the same transaction, so a volume listed
//! always has its directory. Files in it may belong to subordinate IDs, so removing
//! the tree is the caller's job (inside the user namespace); this module removes the
//! record.

use std::collections::BTreeMap;
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;

use rusqlite::{params, OptionalExtension};

use super::images::db_err;
use super::{StorageError, Store};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeRecord {
    pub name: String,
    pub created: i64,
    pub labels: BTreeMap<String, String>,
    /// `-o KEY=VALUE` given at creation (kept and shown; the local driver uses none).
    pub options: BTreeMap<String, String>,
    /// Created for a `-v /path` without a source; `volume prune` removes it once unused.
    pub anonymous: bool,
}

/// podman's rule for volume names; also keeps names safe as path components.
pub fn valid_name(n: &str) -> bool {
    let mut chars = n.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

fn row(r: &rusqlite::Row) -> rusqlite::Result<VolumeRecord> {
    let labels: String = r.get(2)?;
    let options: String = r.get(3)?;
    Ok(VolumeRecord {
        name: r.get(0)?,
        created: r.get(1)?,
        labels: serde_json::from_str(&labels).unwrap_or_default(),
        options: serde_json::from_str(&options).unwrap_or_default(),
        anonymous: r.get::<_, i64>(4)? != 0,
    })
}

const COLS: &str = "name, created, labels, options, anonymous";

impl Store {
    /// `<root>/volumes/<name>` (the volume's data is in its `_data`).
    pub fn volume_dir(&self, name: &str) -> PathBuf {
        self.paths.root.join("volumes").join(name)
    }

    /// What a container mounts for the volume.
    pub fn volume_data(&self, name: &str) -> PathBuf {
        self.volume_dir(name).join("_data")
    }

    /// Creates a volume and its directory; fails if the name is taken or invalid.
    pub fn create_volume(&mut self, v: &VolumeRecord) -> Result<(), StorageError> {
        if !valid_name(&v.name) {
            return Err(StorageError::BadVolumeName(v.name.clone()));
        }
        let data = self.volume_data(&v.name);
        let labels = serde_json::to_string(&v.labels).unwrap_or_else(|_| "{}".into());
        let options = serde_json::to_string(&v.options).unwrap_or_else(|_| "{}".into());
        self.write(|tx| {
            let exists: Option<String> = tx
                .query_row("SELECT name FROM volumes WHERE name = ?1", [&v.name], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(|e| db_err(tx, e))?;
            if exists.is_some() {
                return Err(StorageError::VolumeExists(v.name.clone()));
            }
            tx.execute(
                &format!("INSERT INTO volumes ({COLS}) VALUES (?1,?2,?3,?4,?5)"),
                params![v.name, v.created, labels, options, v.anonymous as i64],
            )
            .map_err(|e| db_err(tx, e))?;
            // Inside the transaction: if this fails, the record is rolled back.
            tracing::debug!(path = %data.display(), "create volume dir");
            let parent = data.parent().unwrap_or(&data);
            crate::config::mkdir_private(parent).map_err(|e| StorageError::Io {
                path: parent.to_path_buf(),
                source: std::io::Error::other(e.to_string()),
            })?;
            // 0755 like podman's: a non-root user in the container must reach it.
            match std::fs::DirBuilder::new().mode(0o755).create(&data) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(StorageError::io(&data)(e)),
            }
            Ok(())
        })
    }

    pub fn volume(&self, name: &str) -> Result<VolumeRecord, StorageError> {
        self.conn
            .query_row(
                &format!("SELECT {COLS} FROM volumes WHERE name = ?1"),
                [name],
                row,
            )
            .optional()
            .map_err(self.err())?
            .ok_or_else(|| StorageError::NoSuchVolume(name.to_string()))
    }

    /// All volumes, by name.
    pub fn volumes(&self) -> Result<Vec<VolumeRecord>, StorageError> {
        let mut st = self
            .conn
            .prepare(&format!("SELECT {COLS} FROM volumes ORDER BY name"))
            .map_err(self.err())?;
        let v = st
            .query_map([], row)
            .map_err(self.err())?
            .collect::<Result<_, _>>()
            .map_err(self.err())?;
        Ok(v)
    }

    /// Forgets a volume (its directory must already be gone).
    pub fn delete_volume(&mut self, name: &str) -> Result<(), StorageError> {
        self.write(|tx| {
            tx.execute("DELETE FROM volumes WHERE name = ?1", [name])
                .map_err(|e| db_err(tx, e))?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database from before volumes (user_version 2) gains the table on open, and
    /// opening again changes nothing.
    #[test]
    fn older_database_gains_volumes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let paths =
            crate::config::Paths::resolve(Some(&root), Some(&dir.path().join("run"))).unwrap();
        let conn = rusqlite::Connection::open(paths.db()).unwrap();
        conn.execute_batch(&format!("{} PRAGMA user_version=2;", super::super::SCHEMA))
            .unwrap();
        drop(conn);
        let mut store = Store::open(&paths).unwrap();
        let v = VolumeRecord {
            name: "v1".into(),
            created: 1,
            labels: [("a".to_string(), "b".to_string())].into(),
            options: BTreeMap::new(),
            anonymous: false,
        };
        store.create_volume(&v).unwrap();
        assert!(store.volume_data("v1").is_dir());
        drop(store);
        let store = Store::open(&paths).unwrap();
        assert_eq!(store.volumes().unwrap(), vec![v.clone()]);
        assert!(matches!(
            store.volume("nope"),
            Err(StorageError::NoSuchVolume(_))
        ));
        let mut store = store;
        assert!(matches!(
            store.create_volume(&v),
            Err(StorageError::VolumeExists(_))
        ));
        let bad = VolumeRecord {
            name: "../x".into(),
            ..v
        };
        assert!(matches!(
            store.create_volume(&bad),
            Err(StorageError::BadVolumeName(_))
        ));
    }

    #[test]
    fn names() {
        for ok in ["a", "vol1", "my_vol.2-x", "0"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "..", ".x", "a/b", "-a", "a b", "é", "_x"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
