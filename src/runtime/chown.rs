//! The `:U` volume option: chown a mount's contents to the container's user at start.
//! Done by the container's init, after pivot_root and after the user is resolved: it is
//! root of the container's user namespace there, so the kernel maps the container's
//! uid/gid to the right host IDs by itself (rootless: subordinate IDs), and the user
//! named in the image's /etc/passwd is already known.
//!
//! The walk is fd-based and never follows a symlink (lchown semantics, O_NOFOLLOW on
//! every directory it enters), so a link planted in the volume cannot send it onto the
//! container's other files, and it stays on the mount's file system, like `chown -R -x`.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::rc::Rc;

use nix::dir::{Dir, Type};
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{fstat, fstatat, Mode};
use nix::unistd::{fchown, fchownat, Gid, Uid};

/// Annotation listing (newline-separated) the container paths to chown at start.
pub const CHOWN_ANNOTATION: &str = "io.skiff.chown";

const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

/// Chowns every mount the spec's annotation lists (`:U`) to the container's user; runs
/// after pivot_root, so the paths are the container's.
pub fn chown_volumes(spec: &oci_spec::runtime::Spec, uid: u32, gid: u32) -> Result<(), String> {
    let Some(list) = spec
        .annotations()
        .as_ref()
        .and_then(|a| a.get(CHOWN_ANNOTATION))
    else {
        return Ok(());
    };
    for dest in list.lines().filter(|l| l.starts_with('/')) {
        chown_tree(Path::new(dest), uid, gid)?;
    }
    Ok(())
}

/// Recursively lchowns `path` (a mount point inside the container) to uid:gid.
pub fn chown_tree(path: &Path, uid: u32, gid: u32) -> Result<(), String> {
    let (u, g) = (Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)));
    let err = |what: &str, e: nix::Error| format!("chown {} for :U: {what}: {e}", path.display());
    let top = match nix::fcntl::open(path, DIR_FLAGS, Mode::empty()) {
        Ok(fd) => fd,
        // A bind-mounted file: chown it alone.
        Err(nix::errno::Errno::ENOTDIR) => {
            let fd = nix::fcntl::open(
                path,
                OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| err("open", e))?;
            return fchownat(fd.as_fd(), "", u, g, AtFlags::AT_EMPTY_PATH)
                .map_err(|e| err("chown", e));
        }
        Err(e) => return Err(err("open", e)),
    };
    fchown(&top, u, g).map_err(|e| err("chown", e))?;
    let dev = fstat(&top).map_err(|e| err("stat", e))?.st_dev;
    // Pending directories as (parent fd, name): a directory is opened only when its turn
    // comes, and only parents of pending entries stay open, which bounds open fds by the
    // depth, not the width, of the tree. A heap stack, since the init runs on a small
    // clone stack.
    let mut stack: Vec<(Rc<OwnedFd>, Option<std::ffi::CString>)> = vec![(Rc::new(top), None)];
    while let Some((parent, name)) = stack.pop() {
        let dir = match name {
            None => parent,
            Some(name) => match openat(parent.as_fd(), name.as_c_str(), DIR_FLAGS, Mode::empty()) {
                // Replaced by something else since we looked: skip it, never follow it.
                Ok(fd) if fstat(&fd).map(|s| s.st_dev == dev).unwrap_or(false) => Rc::new(fd),
                Ok(_) | Err(nix::errno::Errno::ENOTDIR) | Err(nix::errno::Errno::ELOOP) => continue,
                Err(e) => return Err(err("open", e)),
            },
        };
        let dup = nix::unistd::dup(dir.as_ref()).map_err(|e| err("dup", e))?;
        let mut entries = Dir::from_fd(dup).map_err(|e| err("opendir", e))?;
        for entry in entries.iter() {
            let entry = entry.map_err(|e| err("readdir", e))?;
            let name = entry.file_name().to_owned();
            if name.as_bytes() == b"." || name.as_bytes() == b".." {
                continue;
            }
            let st = fstatat(dir.as_fd(), name.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
                .map_err(|e| err("stat", e))?;
            // Another file system mounted below (or a file bound over): leave it alone.
            if st.st_dev != dev {
                continue;
            }
            fchownat(
                dir.as_fd(),
                name.as_c_str(),
                u,
                g,
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(|e| err("chown", e))?;
            let is_dir = match entry.file_type() {
                Some(t) => t == Type::Directory,
                None => st.st_mode & libc::S_IFMT == libc::S_IFDIR,
            };
            if is_dir {
                stack.push((Rc::clone(&dir), Some(name)));
            }
        }
    }
    Ok(())
}
