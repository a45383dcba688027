//! Entry metadata: owners, xattrs and header parsing.

use std::ffi::CString;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid};

use super::UnpackError;

/// Header metadata of one entry, with PAX overrides applied.
pub(super) struct Meta {
    pub(super) uid: u64,
    pub(super) gid: u64,
    pub(super) mode: u32,
    pub(super) mtime: i64,
    pub(super) xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Where xattrs go: an open regular file or directory, or (for symlinks and
/// device nodes, which cannot be opened safely) a name in a directory.
pub(super) enum Target<'a> {
    Fd(BorrowedFd<'a>),
    At(BorrowedFd<'a>, &'a [u8]),
}

pub(super) fn ids(meta: &Meta, shown: &str) -> Result<(Uid, Gid), UnpackError> {
    // (uid_t)-1 means "leave unchanged" to chown: never let a header ask for it.
    match (u32::try_from(meta.uid), u32::try_from(meta.gid)) {
        (Ok(u), Ok(g)) if u != u32::MAX && g != u32::MAX => {
            Ok((Uid::from_raw(u), Gid::from_raw(g)))
        }
        _ => Err(UnpackError::UnmappedId {
            path: shown.to_owned(),
            uid: meta.uid,
            gid: meta.gid,
        }),
    }
}

pub(super) fn chown_result(
    r: nix::Result<()>,
    meta: &Meta,
    shown: &str,
) -> Result<(), UnpackError> {
    match r {
        Ok(()) => Ok(()),
        Err(Errno::EINVAL) => Err(UnpackError::UnmappedId {
            path: shown.to_owned(),
            uid: meta.uid,
            gid: meta.gid,
        }),
        Err(e) => Err(UnpackError::fs(
            "chown (run the unpack inside the user namespace)",
            shown,
            e,
        )),
    }
}

pub(super) fn timespec(secs: i64) -> TimeSpec {
    TimeSpec::new(secs, 0)
}

pub(super) fn set_xattr(target: &Target<'_>, name: &[u8], value: &[u8]) -> nix::Result<()> {
    let cname = CString::new(name).map_err(|_| Errno::EINVAL)?;
    let rc = match target {
        Target::Fd(fd) => {
            // SAFETY: `cname` is NUL-terminated, `value` is a live slice whose
            // length is passed, and the borrowed fd stays open for the call.
            unsafe {
                libc::fsetxattr(
                    fd.as_raw_fd(),
                    cname.as_ptr(),
                    value.as_ptr().cast(),
                    value.len(),
                    0,
                )
            }
        }
        Target::At(dir, entry) => {
            // The directory fd was resolved beneath the layer root and the
            // final name is not followed (lsetxattr), so this cannot escape.
            let mut p = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
            p.extend_from_slice(entry);
            let cpath = CString::new(p).map_err(|_| Errno::EINVAL)?;
            // SAFETY: both strings are NUL-terminated CStrings and `value` is a
            // live slice whose length is passed.
            unsafe {
                libc::lsetxattr(
                    cpath.as_ptr(),
                    cname.as_ptr(),
                    value.as_ptr().cast(),
                    value.len(),
                    0,
                )
            }
        }
    };
    Errno::result(rc).map(drop)
}

pub(super) fn set_xattrs(target: &Target<'_>, meta: &Meta, shown: &str) -> Result<(), UnpackError> {
    for (name, value) in &meta.xattrs {
        let n = String::from_utf8_lossy(name);
        tracing::trace!(path = shown, xattr = %n, "setxattr");
        match set_xattr(target, name, value) {
            Ok(()) => {}
            Err(e @ (Errno::EPERM | Errno::EOPNOTSUPP | Errno::EACCES | Errno::ENOENT)) => {
                tracing::warn!(path = shown, xattr = %n, error = %e, "xattr not kept: the kernel refused it");
            }
            Err(e) => return Err(UnpackError::fs("setxattr", format!("{shown} ({n})"), e)),
        }
    }
    Ok(())
}

/// Parses header fields; errors here are tar format errors.
pub(super) fn read_meta<R: Read>(entry: &mut tar::Entry<'_, R>, shown: &str) -> io::Result<Meta> {
    let h = entry.header();
    let mut meta = Meta {
        uid: h.uid()?,
        gid: h.gid()?,
        mode: h.mode()? & 0o7777,
        mtime: i64::try_from(h.mtime()?).unwrap_or(i64::MAX),
        xattrs: Vec::new(),
    };
    if let Some(exts) = entry.pax_extensions()? {
        for ext in exts {
            let ext = ext?;
            let key = ext.key_bytes();
            if key == b"mtime" {
                let v = String::from_utf8_lossy(ext.value_bytes()).into_owned();
                let secs = v.split('.').next().unwrap_or("");
                meta.mtime = secs
                    .parse()
                    .map_err(|_| io::Error::other(format!("invalid PAX mtime {v:?}")))?;
            } else if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                if name.windows(9).any(|w| w == b".overlay.") {
                    tracing::debug!(path = shown, xattr = %String::from_utf8_lossy(name), "dropping overlay xattr from layer");
                    continue;
                }
                meta.xattrs
                    .push((name.to_vec(), ext.value_bytes().to_vec()));
            }
        }
    }
    Ok(meta)
}

/// Chowns an open file or directory.
pub(super) fn chown_fd(fd: BorrowedFd<'_>, meta: &Meta, shown: &str) -> Result<(), UnpackError> {
    let (uid, gid) = ids(meta, shown)?;
    tracing::trace!(path = shown, uid = meta.uid, gid = meta.gid, "fchown");
    chown_result(nix::unistd::fchown(fd, Some(uid), Some(gid)), meta, shown)
}

/// Chowns a name in a directory without following it.
pub(super) fn chown_at(
    dir: BorrowedFd<'_>,
    name: &[u8],
    meta: &Meta,
    shown: &str,
) -> Result<(), UnpackError> {
    let (uid, gid) = ids(meta, shown)?;
    tracing::trace!(path = shown, uid = meta.uid, gid = meta.gid, "fchownat");
    let r = nix::unistd::fchownat(
        dir,
        name,
        Some(uid),
        Some(gid),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    );
    chown_result(r, meta, shown)
}
