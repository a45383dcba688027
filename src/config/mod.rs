//! Where skiff keeps its state, and the user-level configuration it shares with podman.
//!
//! Paths follow podman's rootless conventions (XDG dirs) so users find things where they
//! expect them; root uses /var/lib/skiff and /run/skiff.

pub mod auth;
pub mod file;
pub mod registries;

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::unistd::{getegid, geteuid, Uid, User};

/// Errors about the host's directories, with the path and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The runtime directory exists but belongs to someone else: using it would let that
    /// user tamper with our sockets and locks.
    #[error("runtime directory {path} is owned by uid {owner}, not by you (uid {uid}): remove it or set XDG_RUNTIME_DIR to a directory you own")]
    RuntimeDirOwner { path: PathBuf, owner: u32, uid: u32 },
    /// A directory skiff needs could not be created.
    #[error("cannot create directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    /// No home directory to derive the XDG defaults from.
    #[error("cannot determine your home directory: set HOME")]
    NoHome,
}

/// The resolved locations of one skiff instance (one user, or root).
#[derive(Debug, Clone)]
pub struct Paths {
    /// Persistent state: database, blobs, layers, containers.
    pub root: PathBuf,
    /// Volatile state: locks, monitor pids, exit files (tmpfs when possible).
    pub runroot: PathBuf,
    /// True when running without root: IDs are mapped through /etc/subuid.
    pub rootless: bool,
    pub uid: u32,
    pub gid: u32,
}

impl Paths {
    /// Resolves the paths from flags and the environment, creating them if needed.
    pub fn resolve(root: Option<&Path>, runroot: Option<&Path>) -> Result<Paths, ConfigError> {
        let uid = geteuid().as_raw();
        let gid = getegid().as_raw();
        let rootless = uid != 0;
        let root = match root {
            Some(p) => absolute(p),
            None if rootless => data_home()?.join("skiff"),
            None => PathBuf::from("/var/lib/skiff"),
        };
        let runroot = match runroot {
            Some(p) => absolute(p),
            None if rootless => runtime_dir(uid)?.join("skiff"),
            None => PathBuf::from("/run/skiff"),
        };
        for dir in [&root, &runroot] {
            mkdir_private(dir)?;
        }
        Ok(Paths {
            root,
            runroot,
            rootless,
            uid,
            gid,
        })
    }

    pub fn db(&self) -> PathBuf {
        self.root.join("skiff.db")
    }
    pub fn blobs(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }
    pub fn layers(&self) -> PathBuf {
        self.root.join("layers")
    }
    pub fn containers(&self) -> PathBuf {
        self.root.join("containers")
    }
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.containers().join(id)
    }
    pub fn tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    }
}

/// The user's home, from HOME or the passwd database (su and cron may not set HOME).
pub fn home_dir() -> Result<PathBuf, ConfigError> {
    if let Some(h) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        return Ok(PathBuf::from(h));
    }
    match User::from_uid(Uid::effective()) {
        Ok(Some(u)) => Ok(u.dir),
        _ => Err(ConfigError::NoHome),
    }
}

fn xdg(var: &str, default_under_home: &str) -> Result<PathBuf, ConfigError> {
    match std::env::var_os(var).filter(|v| !v.is_empty()) {
        Some(v) if Path::new(&v).is_absolute() => Ok(PathBuf::from(v)),
        _ => Ok(home_dir()?.join(default_under_home)),
    }
}

/// `$XDG_DATA_HOME`, defaulting to `~/.local/share`.
pub fn data_home() -> Result<PathBuf, ConfigError> {
    xdg("XDG_DATA_HOME", ".local/share")
}

/// `$XDG_RUNTIME_DIR`, or, when unset (su, cron), a private directory under /tmp as
/// podman does, checked to be ours so another user cannot plant files in it.
pub fn runtime_dir(uid: u32) -> Result<PathBuf, ConfigError> {
    if let Some(v) = std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        let p = PathBuf::from(v);
        if let Ok(md) = std::fs::metadata(&p) {
            if md.uid() == uid {
                return Ok(p);
            }
            tracing::warn!(
                "XDG_RUNTIME_DIR {} is not owned by you, using a private directory under /tmp",
                p.display()
            );
        }
    }
    let p = PathBuf::from(format!("/tmp/skiff-run-{uid}"));
    mkdir_private(&p)?;
    let md = std::fs::symlink_metadata(&p).map_err(|source| ConfigError::CreateDir {
        path: p.clone(),
        source,
    })?;
    if md.uid() != uid || !md.is_dir() {
        return Err(ConfigError::RuntimeDirOwner {
            path: p,
            owner: md.uid(),
            uid,
        });
    }
    if md.mode() & 0o077 != 0 {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700)).map_err(|source| {
            ConfigError::CreateDir {
                path: p.clone(),
                source,
            }
        })?;
    }
    Ok(p)
}

/// Creates `dir` and missing parents with mode 0700 (existing dirs are left as they are).
pub fn mkdir_private(dir: &Path) -> Result<(), ConfigError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| ConfigError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })
}
