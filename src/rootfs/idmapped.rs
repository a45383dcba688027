//! Rootful containers with a user namespace (`--uidmap` as root) use the layers stored
//! for the host through idmapped mounts instead of a copy per mapping: the kernel shifts
//! owners on the fly (Linux 5.19+ lets overlayfs take idmapped lower layers).
//!
//! Setting MOUNT_ATTR_IDMAP needs CAP_SYS_ADMIN in the initial user namespace, which the
//! container's init (inside its own user namespace) lacks. So the monitor, right after
//! writing the init's ID maps and before releasing it, forks a child that enters the
//! init's mount namespace, lays an idmapped clone of each lower layer over that layer's
//! own directory, and mounts the overlay on the bundle's rootfs; the init then finds its
//! root already mounted. Chosen over mounts under the runroot in the host's namespace:
//! the mounts exist only in the container's private mount namespace, so the lowerdir
//! string stays as short as before, and they vanish with the container however it ends
//! (stop, rm, kill -9 of the monitor) with nothing on the host to clean up.
//!
//! The overlay is mounted by host root, so it keeps its metadata in trusted.* xattrs,
//! as the host's layers do. Rootless never gets here: the kernel refuses idmapped
//! mounts without CAP_SYS_ADMIN in the initial namespace (ext4), so rootless keeps a
//! copy of the layers per mapping (src/image/remap.rs), and so does root when the probe
//! fails or `SKIFF_NO_IDMAP=1` is set.

use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{ForkResult, Pid};

use super::{RootfsError, RootfsLayout};
use crate::config::Paths;
use crate::userns::IdMapping;

/// Set to 1 to make root containers with a user namespace copy the layers for their
/// mapping instead of using idmapped mounts (for comparison and tests).
pub const DISABLE_ENV: &str = "SKIFF_NO_IDMAP";

/// Name of the probe's cached verdict in the runroot (a tmpfs: a new kernel means a
/// reboot, which clears it).
const PROBE_FILE: &str = "idmap-probe";

fn cstr(p: &Path) -> Result<CString, Errno> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)
}

/// A detached, idmapped, read-only clone of the mount tree at `path` (relative to the
/// working directory or absolute): the container's IDs map through `userns`.
fn idmapped_clone(path: &Path, userns: BorrowedFd) -> Result<OwnedFd, (String, Errno)> {
    let c = cstr(path).map_err(|e| ("path".to_string(), e))?;
    let flags = libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC;
    tracing::debug!(path = %path.display(), "open_tree(OPEN_TREE_CLONE)");
    // SAFETY: open_tree takes a dirfd, a NUL-terminated path that outlives the call and
    // flags; it returns a new fd or -1 and touches no memory of ours otherwise.
    let fd = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, c.as_ptr(), flags) };
    if fd < 0 {
        return Err(("open_tree".into(), Errno::last()));
    }
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    let tree = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let attr = libc::mount_attr {
        attr_set: libc::MOUNT_ATTR_IDMAP | libc::MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    let empty = c"";
    tracing::debug!(path = %path.display(), userns = userns.as_raw_fd(), "mount_setattr(MOUNT_ATTR_IDMAP)");
    // SAFETY: `attr` is a valid mount_attr of the size passed, alive for the call; the
    // empty path with AT_EMPTY_PATH makes the call act on `tree` itself.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_RECURSIVE,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    if r < 0 {
        return Err(("mount_setattr(MOUNT_ATTR_IDMAP)".into(), Errno::last()));
    }
    Ok(tree)
}

/// Attaches the detached mount `tree` on `target`.
fn attach(tree: BorrowedFd, target: &Path) -> Result<(), (String, Errno)> {
    let t = cstr(target).map_err(|e| ("path".to_string(), e))?;
    let empty = c"";
    tracing::debug!(target = %target.display(), "move_mount");
    // SAFETY: both paths are NUL-terminated strings alive for the call; the empty source
    // path with MOVE_MOUNT_F_EMPTY_PATH names `tree` itself.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            libc::MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if r < 0 {
        return Err(("move_mount".into(), Errno::last()));
    }
    Ok(())
}

/// Runs `work` in a forked child and returns its error text, if any. The caller must be
/// single-threaded, or `work` must only make async-signal-safe calls.
fn in_child(work: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
    let (rd, wr) = nix::unistd::pipe().map_err(|e| format!("pipe: {e}"))?;
    // SAFETY: callers are single-threaded (the monitor) or pass work that only issues
    // raw system calls; the child ends in _exit without unwinding into our state.
    match unsafe { nix::unistd::fork() } {
        Ok(ForkResult::Child) => {
            drop(rd);
            let code = match work() {
                Ok(()) => 0,
                Err(e) => {
                    let mut f = std::fs::File::from(wr);
                    let _ = f.write_all(e.as_bytes());
                    1
                }
            };
            // SAFETY: _exit skips atexit handlers and destructors of the parent's state.
            unsafe { libc::_exit(code) }
        }
        Ok(ForkResult::Parent { child }) => {
            drop(wr);
            let mut msg = String::new();
            let _ = std::fs::File::from(rd).read_to_string(&mut msg);
            match waitpid(child, None) {
                Ok(WaitStatus::Exited(_, 0)) => Ok(()),
                _ if !msg.is_empty() => Err(msg),
                other => Err(format!("the mount helper process ended with {other:?}")),
            }
        }
        Err(e) => Err(format!("fork: {e}")),
    }
}

/// Mounts the container's root filesystem from the monitor: enters the mount namespace
/// of `pid` (the waiting init), lays idmapped clones of the lower layers over their
/// own directories there, then mounts the overlay on `target`. Must be called between
/// writing the init's ID maps and releasing it, from a single-threaded process holding
/// CAP_SYS_ADMIN in the initial user namespace.
pub fn mount_rootfs(
    pid: Pid,
    userns: &OwnedFd,
    layout: &RootfsLayout,
    target: &Path,
) -> Result<(), RootfsError> {
    let ns_path = format!("/proc/{}/ns/mnt", pid.as_raw());
    tracing::debug!(path = %ns_path, "open mount namespace");
    let mnt_ns = std::fs::File::open(&ns_path).map_err(|source| RootfsError::Io {
        path: ns_path.clone().into(),
        source,
    })?;
    let res = in_child(|| {
        tracing::debug!(path = %ns_path, "setns(CLONE_NEWNS)");
        nix::sched::setns(mnt_ns.as_fd(), CloneFlags::CLONE_NEWNS)
            .map_err(|e| format!("entering the container's mount namespace: {e}"))?;
        idmap_lowers(layout, userns.as_fd())?;
        layout.mount(target).map_err(|e| e.to_string())
    });
    res.map_err(|detail| RootfsError::Idmap {
        target: target.to_path_buf(),
        detail,
    })
}

/// Lays an idmapped clone of each of `layout`'s lower layers over that layer's own
/// directory, in the caller's mount namespace (which must be private: the container's,
/// or a throwaway one), and leaves the working directory at the layers directory so
/// the relative lowerdir names resolve to the clones.
pub fn idmap_lowers(layout: &RootfsLayout, userns: BorrowedFd) -> Result<(), String> {
    nix::unistd::chdir(&layout.layers_dir)
        .map_err(|e| format!("{}: {e}", layout.layers_dir.display()))?;
    let mut done: Vec<&str> = Vec::new();
    for l in &layout.lower {
        if done.contains(&l.as_str()) {
            continue;
        }
        let p = Path::new(l);
        let tree =
            idmapped_clone(p, userns).map_err(|(call, e)| format!("{call} on layer {l}: {e}"))?;
        attach(tree.as_fd(), p).map_err(|(call, e)| format!("{call} on layer {l}: {e}"))?;
        done.push(l);
    }
    Ok(())
}

/// A detached, read-only clone of `dir` whose owners are shifted through `userns`;
/// never attached anywhere, so it vanishes when the fd is closed.
pub fn idmapped_view(dir: &Path, userns: BorrowedFd) -> Result<OwnedFd, String> {
    idmapped_clone(dir, userns).map_err(|(call, e)| format!("{call} on {}: {e}", dir.display()))
}

/// A user namespace with the ID mapping `m`, held by an fd after its only process has
/// exited (so no helper process outlives the call). Needs root: the maps are written
/// directly. Safe from a multi-threaded process, as [`probe`] is.
pub fn userns_for(m: &IdMapping) -> Result<OwnedFd, String> {
    userns_with(Some(m))
}

/// Whether root containers with a user namespace use idmapped layers here: not with
/// `SKIFF_NO_IDMAP=1`, not rootless, and only if a test mount of the layers directory
/// succeeded (probed once, the verdict cached in the runroot).
pub fn enabled(paths: &Paths) -> bool {
    if paths.rootless {
        return false;
    }
    if std::env::var(DISABLE_ENV).is_ok_and(|v| v == "1") {
        tracing::debug!("{DISABLE_ENV}=1: copying layers for the mapping");
        return false;
    }
    match support(paths) {
        Ok(()) => true,
        Err(why) => {
            tracing::debug!(%why, "idmapped mounts unavailable: copying layers for the mapping");
            false
        }
    }
}

/// The cached probe verdict, probing first if there is none.
pub fn support(paths: &Paths) -> Result<(), String> {
    let file = paths.runroot.join(PROBE_FILE);
    if let Ok(t) = std::fs::read_to_string(&file) {
        return match t.trim_end().strip_prefix("no: ") {
            Some(why) => Err(why.to_string()),
            None if t.trim_end() == "yes" => Ok(()),
            None => probe(&paths.layers()),
        };
    }
    let verdict = probe(&paths.layers());
    let text = match &verdict {
        Ok(()) => "yes\n".to_string(),
        Err(why) => format!("no: {why}\n"),
    };
    let tmp = file.with_extension(format!("tmp{}", std::process::id()));
    if std::fs::write(&tmp, text).is_ok() {
        let _ = std::fs::rename(&tmp, &file);
    }
    verdict
}

/// A test: make a throwaway user namespace and an idmapped (never attached) clone of
/// `dir`. Safe from a multi-threaded process: the forked child only makes raw calls.
pub fn probe(dir: &Path) -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("needs root".into());
    }
    let _ = std::fs::create_dir_all(dir);
    let userns = throwaway_userns()?;
    match idmapped_clone(dir, userns.as_fd()) {
        Ok(_tree) => Ok(()),
        Err((call, e)) => Err(format!("{call} on {}: {e}", dir.display())),
    }
}

/// A user namespace mapping 0 to 65534, held by an fd after its only process exits.
fn throwaway_userns() -> Result<OwnedFd, String> {
    userns_with(None)
}

/// A user namespace with mapping `m` (None: 0 to 65534), held by an fd after its only
/// process exits.
fn userns_with(m: Option<&IdMapping>) -> Result<OwnedFd, String> {
    let (go_rd, go_wr) = nix::unistd::pipe().map_err(|e| format!("pipe: {e}"))?;
    let (ready_rd, ready_wr) = nix::unistd::pipe().map_err(|e| format!("pipe: {e}"))?;
    tracing::debug!("fork a process for a throwaway user namespace");
    // SAFETY: the child makes only async-signal-safe raw calls (unshare, write, read,
    // _exit), so forking from a threaded process is sound.
    let child = match unsafe { nix::unistd::fork() } {
        Ok(ForkResult::Child) => {
            // SAFETY: raw calls on fds we own; _exit never returns. Our copies of the
            // parent's ends are closed first, so its closing `go` reaches us as EOF.
            unsafe {
                libc::close(go_wr.as_raw_fd());
                libc::close(ready_rd.as_raw_fd());
                let ok = libc::unshare(libc::CLONE_NEWUSER) == 0;
                let b = [if ok { b'U' } else { b'E' }];
                libc::write(ready_wr.as_raw_fd(), b.as_ptr().cast(), 1);
                let mut x = [0u8; 1];
                libc::read(go_rd.as_raw_fd(), x.as_mut_ptr().cast(), 1);
                libc::_exit(0)
            }
        }
        Ok(ForkResult::Parent { child }) => child,
        Err(e) => return Err(format!("fork: {e}")),
    };
    drop(ready_wr);
    drop(go_rd);
    let res = (|| {
        let mut b = [0u8; 1];
        let n = nix::unistd::read(&ready_rd, &mut b).map_err(|e| format!("read: {e}"))?;
        if n != 1 || b[0] != b'U' {
            return Err("unshare(CLONE_NEWUSER) failed".to_string());
        }
        match m {
            Some(m) => m.apply(child.as_raw()).map_err(|e| e.to_string())?,
            None => {
                for f in ["uid_map", "gid_map"] {
                    let p = format!("/proc/{}/{f}", child.as_raw());
                    tracing::debug!(path = %p, "write id map");
                    std::fs::write(&p, "0 65534 1\n").map_err(|e| format!("{p}: {e}"))?;
                }
            }
        }
        let p = format!("/proc/{}/ns/user", child.as_raw());
        tracing::debug!(path = %p, "open namespace");
        std::fs::File::open(&p)
            .map(OwnedFd::from)
            .map_err(|e| format!("{p}: {e}"))
    })();
    drop(go_wr);
    let _ = waitpid(child, None);
    res
}
