//! skiff's persistent state: one SQLite database (images, tags, layers, containers), a
//! content-addressed blob store, and unpacked layer directories. Only this module opens
//! the database.

pub mod archive;
pub mod blob_info;
pub mod blobs;
pub mod check;
pub mod containers;
pub mod images;
pub mod layer_build;
pub mod layer_helper;
pub mod layers;
pub mod lock;
pub mod network_cache;
pub mod networks;
pub mod subnet;
pub mod unpack;
pub mod userns_auto;
pub mod volumes;

use std::path::PathBuf;
use std::time::Duration;

use rusqlite::Connection;

use crate::config::Paths;

/// Storage errors: each names the record or path involved.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("database {path}: {source}")]
    Db {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// No image matches what the user typed.
    #[error("{0}: image not known")]
    ImageNotKnown(String),
    /// No container matches the name or ID.
    #[error("no container with name or ID \"{0}\" found: no such container")]
    NoSuchContainer(String),
    /// An ID prefix fits more than one record.
    #[error("{0}: more than one result for the ID prefix: give more characters")]
    Ambiguous(String),
    /// The container name is taken.
    #[error("the container name \"{name}\" is already in use by {id}: remove that container or choose another name")]
    NameInUse { name: String, id: String },
    /// The image is still used by containers.
    #[error("image {image} is in use by container {container}: remove the container first or use --force")]
    ImageInUse { image: String, container: String },
    /// No volume has this name.
    #[error("no volume with name \"{0}\" found: no such volume")]
    NoSuchVolume(String),
    /// The volume name is taken.
    #[error("volume with name {0} already exists: choose another name or remove it first")]
    VolumeExists(String),
    /// A volume name that is not [a-zA-Z0-9][a-zA-Z0-9_.-]*.
    #[error("volume name {0:?} is invalid: names must match [a-zA-Z0-9][a-zA-Z0-9_.-]*")]
    BadVolumeName(String),
    /// No network has this name or ID.
    #[error("unable to find network with name or ID {0}: network not found")]
    NoSuchNetwork(String),
    /// A network change that conflicts with the store (name taken, subnet overlap,
    /// address in use); the text says which.
    #[error("{0}")]
    NetworkConflict(String),
    /// Corrupt data in the store.
    #[error("corrupt record {what}: {detail}: run `skiff system reset` if this persists")]
    Corrupt { what: String, detail: String },
}

impl StorageError {
    fn db(path: &std::path::Path) -> impl FnOnce(rusqlite::Error) -> StorageError + '_ {
        move |source| StorageError::Db {
            path: path.to_path_buf(),
            source,
        }
    }
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> StorageError {
        let path = path.into();
        move |source| StorageError::Io { path, source }
    }
}

/// An open store: the database connection plus the paths it governs.
pub struct Store {
    pub paths: Paths,
    conn: Connection,
}

/// Bumped with every schema change; `open` migrates older databases.
const SCHEMA_VERSION: i64 = 3;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY,
    manifest_digest TEXT NOT NULL,
    manifest_media_type TEXT NOT NULL,
    created TEXT,
    pulled INTEGER NOT NULL,
    size INTEGER NOT NULL,
    layers TEXT NOT NULL,
    os TEXT NOT NULL,
    arch TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tags (
    name TEXT PRIMARY KEY,
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS tags_image ON tags(image_id);
CREATE TABLE IF NOT EXISTS layers (
    diff_id TEXT NOT NULL,
    mapping TEXT NOT NULL,
    dir TEXT NOT NULL,
    size INTEGER NOT NULL,
    PRIMARY KEY (diff_id, mapping)
);
CREATE TABLE IF NOT EXISTS containers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    image_id TEXT NOT NULL,
    image_name TEXT NOT NULL,
    command TEXT NOT NULL,
    created INTEGER NOT NULL,
    state TEXT NOT NULL,
    exit_code INTEGER,
    started INTEGER,
    finished INTEGER,
    monitor_pid INTEGER,
    monitor_start INTEGER,
    pid INTEGER,
    config TEXT NOT NULL,
    restarts INTEGER NOT NULL DEFAULT 0,
    stop_requested INTEGER NOT NULL DEFAULT 0
);
"#;

/// Named volumes (labels and options as JSON objects). Added by a step keyed on the
/// table's presence, not on user_version: another change claims version 3 at the same
/// time, and a version-keyed step here would make its `version < 3` step skip on
/// databases created in between. Idempotent, so it is safe in any order.
const VOLUMES_TABLE: &str = r#"
CREATE TABLE IF NOT EXISTS volumes (
    name TEXT PRIMARY KEY,
    created INTEGER NOT NULL,
    labels TEXT NOT NULL,
    options TEXT NOT NULL,
    anonymous INTEGER NOT NULL DEFAULT 0
);
"#;

impl Store {
    /// Opens (creating if needed) the store under `paths.root`.
    pub fn open(paths: &Paths) -> Result<Store, StorageError> {
        for d in [
            paths.blobs(),
            paths.layers(),
            paths.containers(),
            paths.tmp(),
        ] {
            crate::config::mkdir_private(&d).map_err(|e| StorageError::Io {
                path: d.clone(),
                source: std::io::Error::other(e.to_string()),
            })?;
        }
        let db = paths.db();
        tracing::debug!(path = %db.display(), "open database");
        let conn = Connection::open(&db).map_err(StorageError::db(&db))?;
        conn.busy_timeout(Duration::from_secs(30))
            .map_err(StorageError::db(&db))?;
        // Every command is a short-lived process: checkpointing (two fsyncs) on each close
        // would dominate `run`. SQLite's auto-checkpoint during writes keeps the WAL short.
        let _ = conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
            true,
        );
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;",
        )
        .map_err(StorageError::db(&db))?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(StorageError::db(&db))?;
        if version < 1 {
            conn.execute_batch(&format!(
                "BEGIN IMMEDIATE; {SCHEMA} PRAGMA user_version={SCHEMA_VERSION}; COMMIT;"
            ))
            .map_err(StorageError::db(&db))?;
        } else if version < 2 {
            conn.execute_batch(
                "BEGIN IMMEDIATE;
                 ALTER TABLE containers ADD COLUMN restarts INTEGER NOT NULL DEFAULT 0;
                 ALTER TABLE containers ADD COLUMN stop_requested INTEGER NOT NULL DEFAULT 0;
                 PRAGMA user_version=2; COMMIT;",
            )
            .map_err(StorageError::db(&db))?;
        }
        if version < 3 {
            conn.execute_batch(userns_auto::MIGRATION_3)
                .map_err(StorageError::db(&db))?;
        }
        let has_volumes: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type='table' AND name='volumes'",
                [],
                |r| r.get(0),
            )
            .map_err(StorageError::db(&db))?;
        if has_volumes == 0 {
            conn.execute_batch(&format!("BEGIN IMMEDIATE; {VOLUMES_TABLE} COMMIT;"))
                .map_err(StorageError::db(&db))?;
        }
        let mut store = Store {
            paths: paths.clone(),
            conn,
        };
        store.ensure_network_tables()?;
        Ok(store)
    }

    /// A store with an in-memory placeholder connection, for a process that must let go
    /// of the database for a while (the monitor) and reopen it later.
    pub fn closed(paths: &Paths) -> Store {
        Store {
            paths: paths.clone(),
            conn: Connection::open_in_memory().unwrap_or_else(|_| {
                // open_in_memory only fails when SQLite cannot allocate; try once more.
                Connection::open_in_memory().expect("sqlite in-memory database")
            }),
        }
    }

    fn err(&self) -> impl FnOnce(rusqlite::Error) -> StorageError + '_ {
        StorageError::db(&self.paths.root)
    }

    /// Runs `f` in a BEGIN IMMEDIATE transaction so concurrent writers serialize on the
    /// database lock rather than failing half-way.
    pub(crate) fn write<T>(
        &mut self,
        f: impl FnOnce(&rusqlite::Transaction) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let path = self.paths.db();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(StorageError::db(&path))?;
        let v = f(&tx)?;
        tx.commit().map_err(StorageError::db(&path))?;
        Ok(v)
    }
}

/// Seconds since the epoch, for records.
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A random 64-hex-digit ID, as podman uses for containers.
pub fn random_id() -> String {
    hex::encode(random_bytes::<32>())
}

/// Random bytes from the kernel; IDs only need to be unique, so a short read is topped
/// up with the time and pid rather than failing.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    // SAFETY: getrandom writes at most b.len() bytes into the buffer we own.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != N as isize {
        use sha2::Digest;
        let seed = format!("{:?}{}", std::time::SystemTime::now(), std::process::id());
        let d = sha2::Sha256::digest(seed.as_bytes());
        for (i, x) in b.iter_mut().enumerate() {
            *x ^= d[i % d.len()];
        }
    }
    b
}
