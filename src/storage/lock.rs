//! Advisory file locks that serialize operations on one container (or one layer) across
//! short-lived CLI processes. Locks live in the runtime directory and vanish at reboot.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

use super::StorageError;

/// An exclusive flock held until drop.
pub struct FileLock {
    _file: File,
}

impl FileLock {
    /// Blocks until the lock on `path` is ours.
    pub fn exclusive(path: &Path) -> Result<FileLock, StorageError> {
        Self::take(path, libc::LOCK_EX)
    }

    /// Blocks until we share the lock on `path` (others may share it; an exclusive
    /// holder waits for all of us).
    pub fn shared(path: &Path) -> Result<FileLock, StorageError> {
        Self::take(path, libc::LOCK_SH)
    }

    /// The store-wide garbage-collection lock: whoever writes blobs or layers that no
    /// image record refers to yet (pull, commit, import, load) holds it shared, and
    /// collection takes it exclusively, so it never deletes work in progress.
    pub fn gc(paths: &crate::config::Paths, exclusive: bool) -> Result<FileLock, StorageError> {
        let p = paths.runroot.join("locks").join("gc");
        if exclusive {
            Self::exclusive(&p)
        } else {
            Self::shared(&p)
        }
    }

    fn take(path: &Path, op: libc::c_int) -> Result<FileLock, StorageError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(StorageError::io(dir))?;
        }
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(StorageError::io(path))?;
        tracing::trace!(path = %path.display(), "flock");
        loop {
            // SAFETY: flock on an fd we own; no memory is passed.
            let r = unsafe { libc::flock(file.as_raw_fd(), op) };
            if r == 0 {
                break;
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(StorageError::Io {
                    path: path.to_path_buf(),
                    source: e,
                });
            }
        }
        Ok(FileLock { _file: file })
    }
}
