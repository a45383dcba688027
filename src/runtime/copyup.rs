//! Volume copy-up: the first time an empty named volume is mounted over a directory
//! the image has, the image's files are copied into the volume (podman's behaviour), so
//! `-v data:/var/lib/app` starts with what the image ships there.
//!
//! Runs in the container's init, inside its user namespace (so ownership is kept with
//! the container's IDs, subordinate ones included) and after the rootfs is mounted, but
//! before the volume is bind-mounted over the path. The image side is opened with
//! RESOLVE_IN_ROOT and every step after that is fd-relative with O_NOFOLLOW, so a
//! symlink in the image cannot point the copy at host files; device nodes and sockets
//! are skipped (a user namespace cannot create them).

use std::os::fd::{AsFd, OwnedFd};
use std::rc::Rc;

use nix::dir::Dir;
use nix::fcntl::{openat, readlinkat, AtFlags, OFlag};
use nix::sys::stat::{fchmod, fstatat, mkdirat, utimensat, FileStat, Mode, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, symlinkat, Gid, Uid};
use oci_spec::runtime::Mount;

/// The spec mount option that asks for copy-up (set for named volumes without `nocopy`).
pub const COPYUP_OPTION: &str = "copyup";

const DIR: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

/// Copies the image's contents at the mount's destination into its (empty) source.
pub fn copy_up(root: &OwnedFd, m: &Mount) -> Result<(), String> {
    if !m.options().iter().flatten().any(|o| o == COPYUP_OPTION) {
        return Ok(());
    }
    let Some(src) = m.source().as_ref() else {
        return Ok(());
    };
    let dest = m.destination();
    let err = |what: &str, e: nix::Error| {
        format!(
            "copying {} of the image into volume {}: {what}: {e}",
            dest.display(),
            src.display()
        )
    };
    tracing::debug!(volume = %src.display(), dest = %dest.display(), "volume copy-up");
    let vol =
        nix::fcntl::open(src.as_path(), DIR, Mode::empty()).map_err(|e| err("open volume", e))?;
    if !is_empty(&vol).map_err(|e| err("read volume", e))? {
        return Ok(());
    }
    let from = match super::mounts::open_in_root(root, dest, DIR) {
        Ok(fd) => fd,
        // Nothing there in the image (or not a directory): nothing to copy.
        Err(nix::errno::Errno::ENOENT)
        | Err(nix::errno::Errno::ENOTDIR)
        | Err(nix::errno::Errno::ELOOP) => return Ok(()),
        Err(e) => return Err(err("open image path", e)),
    };
    let st = nix::sys::stat::fstat(&from).map_err(|e| err("stat image path", e))?;
    fchown(
        &vol,
        Some(Uid::from_raw(st.st_uid)),
        Some(Gid::from_raw(st.st_gid)),
    )
    .map_err(|e| err("chown volume", e))?;
    fchmod(&vol, Mode::from_bits_truncate(st.st_mode & 0o7777))
        .map_err(|e| err("chmod volume", e))?;
    copy_tree(from, vol).map_err(|(what, e)| err(&what, e))
}

fn is_empty(dir: &OwnedFd) -> nix::Result<bool> {
    let dup = nix::unistd::dup(dir)?;
    let mut d = Dir::from_fd(dup)?;
    for e in d.iter() {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            return Ok(false);
        }
    }
    Ok(true)
}

type CopyErr = (String, nix::Error);

fn at<T>(r: nix::Result<T>, what: &str, name: &std::ffi::CStr) -> Result<T, CopyErr> {
    r.map_err(|e| (format!("{what} {}", name.to_string_lossy()), e))
}

fn times(st: &FileStat) -> (TimeSpec, TimeSpec) {
    (
        TimeSpec::new(st.st_atime, st.st_atime_nsec),
        TimeSpec::new(st.st_mtime, st.st_mtime_nsec),
    )
}

/// Copies the tree under `from` into `to`. Pending directories are kept as (parent fds,
/// name) on a heap stack, so open fds grow with depth, not width, and the init's small
/// stack is never at risk.
fn copy_tree(from: OwnedFd, to: OwnedFd) -> Result<(), CopyErr> {
    type Pending = (Rc<OwnedFd>, Rc<OwnedFd>, Option<std::ffi::CString>);
    let mut stack: Vec<Pending> = vec![(Rc::new(from), Rc::new(to), None)];
    while let Some((sp, dp, name)) = stack.pop() {
        let (s, d) = match name {
            None => (sp, dp),
            Some(n) => {
                let s = at(
                    openat(sp.as_fd(), n.as_c_str(), DIR, Mode::empty()),
                    "open",
                    &n,
                )?;
                let d = at(
                    openat(dp.as_fd(), n.as_c_str(), DIR, Mode::empty()),
                    "open",
                    &n,
                )?;
                (Rc::new(s), Rc::new(d))
            }
        };
        let dup = nix::unistd::dup(s.as_ref()).map_err(|e| ("dup".to_string(), e))?;
        let mut entries = Dir::from_fd(dup).map_err(|e| ("opendir".to_string(), e))?;
        for entry in entries.iter() {
            let entry = entry.map_err(|e| ("readdir".to_string(), e))?;
            let n = entry.file_name().to_owned();
            if n.as_bytes() == b"." || n.as_bytes() == b".." {
                continue;
            }
            let st = at(
                fstatat(s.as_fd(), n.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW),
                "stat",
                &n,
            )?;
            let (uid, gid) = (
                Some(Uid::from_raw(st.st_uid)),
                Some(Gid::from_raw(st.st_gid)),
            );
            let perm = Mode::from_bits_truncate(st.st_mode & 0o7777);
            let (atime, mtime) = times(&st);
            match st.st_mode & libc::S_IFMT {
                libc::S_IFDIR => {
                    at(
                        mkdirat(d.as_fd(), n.as_c_str(), Mode::from_bits_truncate(0o700)),
                        "mkdir",
                        &n,
                    )?;
                    let nd = at(
                        openat(d.as_fd(), n.as_c_str(), DIR, Mode::empty()),
                        "open",
                        &n,
                    )?;
                    at(fchown(&nd, uid, gid), "chown", &n)?;
                    at(fchmod(&nd, perm), "chmod", &n)?;
                    stack.push((Rc::clone(&s), Rc::clone(&d), Some(n)));
                }
                libc::S_IFREG => {
                    let sf = at(
                        openat(
                            s.as_fd(),
                            n.as_c_str(),
                            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                            Mode::empty(),
                        ),
                        "open",
                        &n,
                    )?;
                    let df = at(
                        openat(
                            d.as_fd(),
                            n.as_c_str(),
                            OFlag::O_WRONLY
                                | OFlag::O_CREAT
                                | OFlag::O_EXCL
                                | OFlag::O_NOFOLLOW
                                | OFlag::O_CLOEXEC,
                            Mode::from_bits_truncate(0o600),
                        ),
                        "create",
                        &n,
                    )?;
                    let mut r = std::fs::File::from(sf);
                    let mut w = std::fs::File::from(df);
                    std::io::copy(&mut r, &mut w).map_err(|e| {
                        (
                            format!("copy {}", n.to_string_lossy()),
                            nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
                        )
                    })?;
                    // chown before chmod: chown clears set-id bits.
                    at(fchown(&w, uid, gid), "chown", &n)?;
                    at(fchmod(&w, perm), "chmod", &n)?;
                    at(
                        nix::sys::stat::futimens(&w, &atime, &mtime),
                        "set times of",
                        &n,
                    )?;
                }
                libc::S_IFLNK => {
                    let target = at(readlinkat(s.as_fd(), n.as_c_str()), "readlink", &n)?;
                    at(
                        symlinkat(target.as_os_str(), d.as_fd(), n.as_c_str()),
                        "symlink",
                        &n,
                    )?;
                    at(
                        fchownat(
                            d.as_fd(),
                            n.as_c_str(),
                            uid,
                            gid,
                            AtFlags::AT_SYMLINK_NOFOLLOW,
                        ),
                        "chown",
                        &n,
                    )?;
                    at(
                        utimensat(
                            d.as_fd(),
                            n.as_c_str(),
                            &atime,
                            &mtime,
                            UtimensatFlags::NoFollowSymlink,
                        ),
                        "set times of",
                        &n,
                    )?;
                }
                libc::S_IFIFO => {
                    at(
                        nix::unistd::mkfifoat(d.as_fd(), n.as_c_str(), perm),
                        "mkfifo",
                        &n,
                    )?;
                    at(
                        fchownat(
                            d.as_fd(),
                            n.as_c_str(),
                            uid,
                            gid,
                            AtFlags::AT_SYMLINK_NOFOLLOW,
                        ),
                        "chown",
                        &n,
                    )?;
                }
                // Devices and sockets cannot be created in a user namespace.
                _ => {}
            }
        }
    }
    Ok(())
}
