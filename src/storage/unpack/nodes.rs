//! Symlinks, hardlinks, device nodes, fifos and OCI whiteouts.

use std::os::fd::AsFd;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{
    fchmodat, makedev, mknodat, utimensat, FchmodatFlags, Mode, SFlag, UtimensatFlags,
};
use nix::unistd::{linkat, symlinkat};

use super::entry::{create_at, parent_fd, resolve_err, unsafe_path, Unpacker, WHITEOUT};
use super::meta::{chown_at, set_xattr, set_xattrs, timespec, Meta, Target};
use super::path::{kind_at, RelPath, ResolveError};
use super::{SkippedEntry, UnpackError};

const OPAQUE: &[u8] = b".wh..wh..opq";

impl Unpacker<'_> {
    /// The target is only data: symlinks are never followed while unpacking.
    pub(super) fn symlink(
        &mut self,
        path: &RelPath,
        target: &[u8],
        shown: &str,
        meta: &Meta,
    ) -> Result<(), UnpackError> {
        let parent = parent_fd(&mut self.res, &mut self.dirs, path, shown)?;
        tracing::trace!(path = shown, target = %String::from_utf8_lossy(target), "symlinkat");
        create_at(&mut self.dirs, parent, path, shown, || {
            symlinkat(target, parent, path.name())
        })?
        .map_err(|e| UnpackError::fs("symlinkat", shown, e))?;
        chown_at(parent, path.name(), meta, shown)?;
        set_xattrs(&Target::At(parent, path.name()), meta, shown)?;
        let t = timespec(meta.mtime);
        utimensat(parent, path.name(), &t, &t, UtimensatFlags::NoFollowSymlink)
            .map_err(|e| UnpackError::fs("utimensat", shown, e))?;
        Ok(())
    }

    /// Links to an earlier entry. The target is resolved beneath the layer
    /// without symlinks, and `linkat` without AT_SYMLINK_FOLLOW links a
    /// symlink itself, never what it points to.
    pub(super) fn hardlink(
        &mut self,
        path: &RelPath,
        target: &[u8],
        shown: &str,
    ) -> Result<(), UnpackError> {
        let shown_target = String::from_utf8_lossy(target).into_owned();
        let bad = |reason: &str| {
            unsafe_path(shown, format!("hardlink target {shown_target:?}: {reason}"))
        };
        let target = RelPath::parse(target).map_err(bad)?;
        if target.is_root() {
            return Err(bad("a hardlink to the layer root is not allowed"));
        }
        if target == *path {
            tracing::trace!(path = shown, "hardlink to itself: nothing to do");
            return Ok(());
        }
        let tparent = self
            .res
            .open_dir(target.parent(), OFlag::O_PATH)
            .map_err(|e| match e {
                ResolveError::Unsafe(reason) => bad(reason),
                e => resolve_err(&shown_target, e),
            })?;
        let missing = || {
            let msg = format!("hardlink target {shown_target} is not in the layer");
            UnpackError::fs(
                "linkat",
                shown,
                std::io::Error::new(std::io::ErrorKind::NotFound, msg),
            )
        };
        if kind_at(tparent.as_fd(), target.name()) == Ok(None) {
            return Err(missing());
        }
        let parent = parent_fd(&mut self.res, &mut self.dirs, path, shown)?;
        tracing::trace!(path = shown, target = %shown_target, "linkat");
        let (tdir, tname) = (tparent.as_fd(), target.name());
        match create_at(&mut self.dirs, parent, path, shown, || {
            linkat(tdir, tname, parent, path.name(), AtFlags::empty())
        })? {
            Ok(()) => Ok(()),
            Err(Errno::ENOENT) => Err(missing()),
            Err(e) => Err(UnpackError::fs("linkat", shown, e)),
        }
    }

    /// Devices are not allowed in a user namespace: skipped with a warning,
    /// as podman does. Fifos always work.
    pub(super) fn node(
        &mut self,
        path: &RelPath,
        shown: &str,
        meta: &Meta,
        kind: SFlag,
        dev: u64,
    ) -> Result<(), UnpackError> {
        let parent = parent_fd(&mut self.res, &mut self.dirs, path, shown)?;
        tracing::trace!(path = shown, ?kind, dev, "mknodat");
        let perm = Mode::from_bits_truncate(0o600);
        match create_at(&mut self.dirs, parent, path, shown, || {
            mknodat(parent, path.name(), kind, perm, dev)
        })? {
            Ok(()) => {}
            Err(Errno::EPERM) if kind != SFlag::S_IFIFO => {
                tracing::warn!(
                    path = shown,
                    "skipping device node: not allowed here (rootless)"
                );
                self.skipped.push(SkippedEntry {
                    path: shown.to_owned(),
                    reason: "device nodes cannot be created in a user namespace".into(),
                });
                return Ok(());
            }
            Err(e) => return Err(UnpackError::fs("mknodat", shown, e)),
        }
        chown_at(parent, path.name(), meta, shown)?;
        set_xattrs(&Target::At(parent, path.name()), meta, shown)?;
        // Safe to follow: the name was just created by mknodat and no other
        // process writes into a layer being unpacked.
        fchmodat(
            parent,
            path.name(),
            Mode::from_bits_truncate(meta.mode),
            FchmodatFlags::FollowSymlink,
        )
        .map_err(|e| UnpackError::fs("fchmodat", shown, e))?;
        let t = timespec(meta.mtime);
        utimensat(parent, path.name(), &t, &t, UtimensatFlags::NoFollowSymlink)
            .map_err(|e| UnpackError::fs("utimensat", shown, e))?;
        Ok(())
    }

    /// OCI whiteouts become what overlayfs understands: `.wh.name` a 0:0
    /// char device at `name` (kept even if `name` is not in this layer, to
    /// hide it in lower layers), `.wh..wh..opq` an opaque xattr on the dir.
    pub(super) fn whiteout(
        &mut self,
        path: &RelPath,
        shown: &str,
        meta: &Meta,
    ) -> Result<(), UnpackError> {
        let name = path.name();
        if name == OPAQUE {
            return self.opaque(path, shown);
        }
        let hidden = &name[WHITEOUT.len()..];
        if hidden.starts_with(WHITEOUT) {
            tracing::trace!(path = shown, "ignoring aufs metadata entry");
            return Ok(());
        }
        if hidden.is_empty() || hidden == b"." || hidden == b".." {
            return Err(unsafe_path(
                shown,
                "whiteout of the layer root or its parent is not allowed",
            ));
        }
        let target = RelPath::join(path.parent(), hidden);
        let shown_target = target.display();
        self.res.invalidate(target.as_bytes());
        let parent = parent_fd(&mut self.res, &mut self.dirs, &target, shown)?;
        tracing::trace!(path = %shown_target, "mknodat whiteout");
        create_at(&mut self.dirs, parent, &target, &shown_target, || {
            mknodat(parent, hidden, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0))
        })?
        .map_err(|e| {
            UnpackError::fs(
                "create whiteout (mknod c 0 0; run inside the user namespace)",
                shown_target.clone(),
                e,
            )
        })?;
        chown_at(parent, hidden, meta, &shown_target)
    }

    fn opaque(&mut self, path: &RelPath, shown: &str) -> Result<(), UnpackError> {
        let dir = path.parent();
        // Creates the directory implicitly when the layer did not list it.
        parent_fd(&mut self.res, &mut self.dirs, path, shown)?;
        let fd = self
            .res
            .open_dir(dir, OFlag::O_RDONLY)
            .map_err(|e| resolve_err(shown, e))?;
        let xattr = self.opts.xattrs.opaque_name();
        tracing::trace!(path = shown, xattr = %String::from_utf8_lossy(xattr), "setxattr opaque");
        set_xattr(&Target::Fd(fd.as_fd()), xattr, b"y").map_err(|e| {
            let what = format!(
                "{} ({})",
                String::from_utf8_lossy(dir),
                String::from_utf8_lossy(xattr)
            );
            UnpackError::fs("mark directory opaque (setxattr)", what, e)
        })
    }
}
