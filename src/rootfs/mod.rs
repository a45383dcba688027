//! Storage drivers that turn an image's layers plus a container's writable layer into a
//! root filesystem. Kernel overlayfs is mounted from inside the container's user and
//! mount namespaces (rootless overlay needs `userxattr`), so it vanishes with them.

pub mod idmapped;

use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};
use serde::{Deserialize, Serialize};

/// Errors mounting a container's root filesystem.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("mounting overlay on {target}: {source}: the kernel must support overlayfs in user namespaces (Linux 5.11+)")]
    Overlay { target: PathBuf, source: nix::Error },
    #[error("mounting the root filesystem on {target} over idmapped layers: {detail}: run with SKIFF_NO_IDMAP=1 to copy the layers instead")]
    Idmap { target: PathBuf, detail: String },
    #[error("layer directory {0} is missing: pull the image again")]
    MissingLayer(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// How a container's rootfs is assembled; written next to config.json at create time.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RootfsLayout {
    /// Directory holding the layer dirs; lower layers are named relative to it to keep
    /// the mount option string short.
    pub layers_dir: PathBuf,
    /// Layer dir names, topmost first (overlay's lowerdir order).
    pub lower: Vec<String>,
    pub upper: PathBuf,
    pub work: PathBuf,
    /// Rootless overlay keeps its metadata in user.* xattrs.
    pub userxattr: bool,
    /// Root with a user namespace: the lower layers are the host's, idmapped, and the
    /// monitor mounts the overlay (see [`idmapped`]); the init finds it mounted.
    #[serde(default)]
    pub idmapped: bool,
}

impl RootfsLayout {
    /// Creates the container's writable dirs.
    pub fn prepare(&self) -> Result<(), RootfsError> {
        for d in [&self.upper, &self.work] {
            std::fs::create_dir_all(d).map_err(|source| RootfsError::Io {
                path: d.clone(),
                source,
            })?;
        }
        for l in &self.lower {
            let p = self.layers_dir.join(l);
            if !p.is_dir() {
                return Err(RootfsError::MissingLayer(p));
            }
        }
        Ok(())
    }

    /// Mounts the overlay on `target`. Must run inside the container's mount namespace
    /// (and user namespace when rootless). Changes the working directory.
    pub fn mount(&self, target: &Path) -> Result<(), RootfsError> {
        nix::unistd::chdir(&self.layers_dir).map_err(|e| RootfsError::Io {
            path: self.layers_dir.clone(),
            source: e.into(),
        })?;
        // overlay needs at least one lower layer; an image with no layers gets an empty one.
        let lower = if self.lower.is_empty() {
            let empty = self.work.with_file_name("empty");
            let _ = std::fs::create_dir_all(&empty);
            empty.display().to_string()
        } else {
            self.lower.join(":")
        };
        let mut opts = format!(
            "lowerdir={lower},upperdir={},workdir={}",
            self.upper.display(),
            self.work.display()
        );
        if self.userxattr {
            opts.push_str(",userxattr");
        }
        tracing::debug!(target = %target.display(), %opts, "mount overlay");
        mount(
            Some("overlay"),
            target,
            Some("overlay"),
            MsFlags::empty(),
            Some(opts.as_str()),
        )
        .map_err(|source| RootfsError::Overlay {
            target: target.to_path_buf(),
            source,
        })
    }
}
