//! Mounts inside the container's mount namespace, before pivot_root. Every target is
//! resolved inside the rootfs (openat2 RESOLVE_IN_ROOT) and mounted through its
//! /proc/self/fd magic link, so a symlink planted in the image can never redirect a mount
//! onto the host.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::mount::{mount, MsFlags};
use nix::sys::stat::{mkdirat, Mode};
use nix::sys::statvfs::{fstatvfs, FsFlags};
use oci_spec::runtime::Mount;

/// A failure while building the container's filesystem view; becomes an init error.
pub type MountResult<T> = Result<T, String>;

fn ctx<T>(r: nix::Result<T>, what: impl FnOnce() -> String) -> MountResult<T> {
    r.map_err(|e| format!("{}: {e}", what()))
}

fn rel(dest: &Path) -> PathBuf {
    dest.components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect()
}

fn in_root(root: &OwnedFd, p: &Path, flags: OFlag) -> nix::Result<OwnedFd> {
    let p = if p.as_os_str().is_empty() {
        Path::new(".")
    } else {
        p
    };
    openat2(
        root.as_fd(),
        p,
        OpenHow::new()
            .flags(flags | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS),
    )
}

/// Symlinks followed in one mount point before giving up, as the kernel's ELOOP limit.
const MAX_LINKS: usize = 40;

/// Opens `dest` inside the root, creating it (as a dir, or an empty file) and missing
/// parents if needed. Symlinks on the way are followed inside the root (an absolute
/// target starts again at the rootfs, `..` stops there), as openat2 RESOLVE_IN_ROOT
/// resolves them, and what they point to is created when missing, as runc's securejoin
/// does: `/data -> /some/dir` in the image makes `-v SRC:/data/sub` mount at
/// /some/dir/sub of the container, never on the host.
pub fn ensure(root: &OwnedFd, dest: &Path, dir: bool) -> MountResult<OwnedFd> {
    let mut todo: std::collections::VecDeque<std::ffi::OsString> = rel(dest)
        .components()
        .map(|c| c.as_os_str().to_owned())
        .collect();
    // The resolved path so far: never holds a symlink, so `..` can pop it.
    let mut cur = PathBuf::new();
    let mut links = 0;
    while let Some(c) = todo.pop_front() {
        if c == ".." {
            cur.pop();
            continue;
        }
        if c == "." || c.is_empty() {
            continue;
        }
        let last = todo.is_empty();
        let next = cur.join(&c);
        match in_root(root, &next, OFlag::O_PATH | OFlag::O_NOFOLLOW) {
            Ok(fd) => {
                let st = ctx(nix::sys::stat::fstat(&fd), || {
                    format!("resolving {} in the container", next.display())
                })?;
                if st.st_mode & libc::S_IFMT != libc::S_IFLNK {
                    cur = next;
                    continue;
                }
                links += 1;
                if links > MAX_LINKS {
                    return Err(format!(
                        "resolving mount point {} in the container: {}",
                        dest.display(),
                        Errno::ELOOP
                    ));
                }
                let target = ctx(nix::fcntl::readlinkat(&fd, ""), || {
                    format!("reading the symlink {} in the container", next.display())
                })?;
                tracing::debug!(link = %next.display(), target = ?target, "mount point through a symlink");
                let target = Path::new(&target);
                if target.is_absolute() {
                    cur = PathBuf::new();
                }
                for t in target.components().rev() {
                    match t {
                        Component::Normal(n) => todo.push_front(n.to_owned()),
                        Component::ParentDir => todo.push_front("..".into()),
                        _ => {}
                    }
                }
            }
            Err(Errno::ENOENT) => {
                let parent = ctx(
                    in_root(root, &cur, OFlag::O_PATH | OFlag::O_DIRECTORY),
                    || format!("resolving {} in the container", cur.display()),
                )?;
                let res = if last && !dir {
                    nix::fcntl::openat(
                        parent.as_fd(),
                        c.as_os_str(),
                        OFlag::O_CREAT
                            | OFlag::O_EXCL
                            | OFlag::O_NOFOLLOW
                            | OFlag::O_WRONLY
                            | OFlag::O_CLOEXEC,
                        Mode::from_bits_truncate(0o644),
                    )
                    .map(drop)
                } else {
                    tracing::debug!(path = %next.display(), "mkdirat");
                    mkdirat(
                        parent.as_fd(),
                        c.as_os_str(),
                        Mode::from_bits_truncate(0o755),
                    )
                };
                match res {
                    Ok(()) => cur = next,
                    // Made meanwhile (or a symlink appeared): look at it again.
                    Err(Errno::EEXIST) if links < MAX_LINKS => {
                        links += 1;
                        todo.push_front(c);
                    }
                    Err(e) => {
                        return Err(format!(
                            "creating mount point {} in the container: {e}",
                            dest.display()
                        ))
                    }
                }
            }
            Err(e) => {
                return Err(format!(
                    "resolving mount point {} in the container: {e}",
                    dest.display()
                ))
            }
        }
    }
    ctx(in_root(root, &cur, OFlag::O_PATH), || {
        format!("opening mount point {} in the container", dest.display())
    })
}

/// Opens a path inside the root with the given flags (resolved as if the root were /).
pub fn open_in_root(root: &OwnedFd, p: &Path, flags: OFlag) -> nix::Result<OwnedFd> {
    in_root(root, &rel(p), flags)
}

/// Opens an existing path inside the root, or None.
pub fn open_existing(root: &OwnedFd, dest: &Path) -> MountResult<Option<OwnedFd>> {
    match in_root(root, &rel(dest), OFlag::O_PATH) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::ENOENT) | Err(Errno::ENOTDIR) => Ok(None),
        Err(e) => Err(format!(
            "resolving {} in the container: {e}",
            dest.display()
        )),
    }
}

pub fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Flags that a remount in a user namespace must repeat: the kernel locks them.
fn locked_flags(fd: &OwnedFd) -> MsFlags {
    let mut f = MsFlags::empty();
    if let Ok(st) = fstatvfs(fd) {
        let fl = st.flags();
        for (a, b) in [
            (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
            (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
            (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
            (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
            (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
            (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
        ] {
            if fl.contains(a) {
                f |= b;
            }
        }
    }
    f
}

/// Remounts the mount at `fd` read-only (plus `extra` flags), keeping locked flags.
pub fn remount_ro(fd: &OwnedFd, extra: MsFlags, what: &Path) -> MountResult<()> {
    let flags =
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | extra | locked_flags(fd);
    tracing::debug!(target = %what.display(), ?flags, "remount read-only");
    ctx(
        mount(
            None::<&str>,
            &fd_path(fd),
            None::<&str>,
            flags,
            None::<&str>,
        ),
        || format!("remounting {} read-only", what.display()),
    )
}

fn split_options(opts: &[String]) -> (MsFlags, Vec<String>, bool, bool) {
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    let mut ro = false;
    let mut rec = false;
    for o in opts {
        match o.as_str() {
            "ro" => ro = true,
            "rw" | "bind" | "z" | "Z" => {}
            "rbind" => rec = true,
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "nodev" => flags |= MsFlags::MS_NODEV,
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            "strictatime" => flags |= MsFlags::MS_STRICTATIME,
            "relatime" => flags |= MsFlags::MS_RELATIME,
            "noatime" => flags |= MsFlags::MS_NOATIME,
            "suid" | "dev" | "exec" | "private" | "rprivate" | "slave" | "rslave" | "shared"
            | "rshared" => {}
            other => data.push(other.to_string()),
        }
    }
    (flags, data, ro, rec)
}

/// Performs one spec mount under the rootfs.
pub fn mount_one(root: &OwnedFd, m: &Mount) -> MountResult<()> {
    let dest = m.destination();
    let typ = m.typ().clone().unwrap_or_else(|| "bind".into());
    let opts = m.options().clone().unwrap_or_default();
    let (flags, data, ro, rec) = split_options(&opts);
    let source = m.source().clone().unwrap_or_else(|| PathBuf::from(&typ));
    let is_bind = typ == "bind" || opts.iter().any(|o| o == "bind" || o == "rbind");
    if is_bind {
        let md = std::fs::metadata(&source)
            .map_err(|e| format!("bind mount source {}: {e}", source.display()))?;
        let target = ensure(root, dest, md.is_dir())?;
        let mut bflags = MsFlags::MS_BIND;
        if rec {
            bflags |= MsFlags::MS_REC;
        }
        tracing::debug!(source = %source.display(), dest = %dest.display(), "bind mount");
        ctx(
            mount(
                Some(&source),
                &fd_path(&target),
                None::<&str>,
                bflags,
                None::<&str>,
            ),
            || format!("bind mounting {} on {}", source.display(), dest.display()),
        )?;
        if ro || !flags.is_empty() {
            let top = ensure(root, dest, md.is_dir())?;
            if ro {
                remount_ro(&top, flags, dest)?;
            } else {
                let f = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags | locked_flags(&top);
                ctx(
                    mount(None::<&str>, &fd_path(&top), None::<&str>, f, None::<&str>),
                    || format!("remounting {}", dest.display()),
                )?;
            }
        }
        return Ok(());
    }
    let target = ensure(root, dest, true)?;
    let mut f = flags;
    if ro {
        f |= MsFlags::MS_RDONLY;
    }
    let d = data.join(",");
    tracing::debug!(%typ, dest = %dest.display(), data = %d, ?f, "mount");
    let res = mount(
        Some(source.as_path()),
        &fd_path(&target),
        Some(typ.as_str()),
        f,
        Some(d.as_str()).filter(|s| !s.is_empty()),
    );
    match (res, typ.as_str()) {
        (Ok(()), _) => Ok(()),
        // GID 5 (tty) is not mapped under a single-ID mapping.
        (Err(Errno::EINVAL), "devpts") => {
            let d2: Vec<_> = data
                .iter()
                .filter(|o| !o.starts_with("gid="))
                .cloned()
                .collect();
            ctx(
                mount(
                    Some(source.as_path()),
                    &fd_path(&target),
                    Some("devpts"),
                    f,
                    Some(d2.join(",").as_str()),
                ),
                || format!("mounting devpts on {}", dest.display()),
            )
        }
        // sysfs needs a network namespace of our own; fall back to the host's, read-only.
        (Err(Errno::EPERM), "sysfs") => {
            ctx(
                mount(
                    Some("/sys"),
                    &fd_path(&target),
                    None::<&str>,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None::<&str>,
                ),
                || format!("bind mounting /sys on {}", dest.display()),
            )?;
            let top = ensure(root, dest, true)?;
            remount_ro(&top, flags, dest)
        }
        (Err(e), _) => Err(format!("mounting {typ} on {}: {e}", dest.display())),
    }
}

const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

/// Fills the container's /dev tmpfs: host device nodes bind-mounted (a user namespace
/// may not mknod) and the usual symlinks.
pub fn populate_dev(root: &OwnedFd) -> MountResult<()> {
    for d in DEVICES {
        let dest = PathBuf::from("/dev").join(d);
        let target = ensure(root, &dest, false)?;
        let src = Path::new("/dev").join(d);
        ctx(
            mount(
                Some(&src),
                &fd_path(&target),
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            ),
            || format!("bind mounting {}", src.display()),
        )?;
    }
    let dev = ensure(root, Path::new("/dev"), true)?;
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
        ("core", "/proc/kcore"),
    ] {
        match nix::unistd::symlinkat(target, dev.as_fd(), name) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(format!("creating /dev/{name}: {e}")),
        }
    }
    Ok(())
}

/// Hides sensitive files and dirs (podman's masked paths): /dev/null over files, an
/// empty read-only tmpfs over directories.
pub fn mask(root: &OwnedFd, path: &str) -> MountResult<()> {
    let Some(fd) = open_existing(root, Path::new(path))? else {
        return Ok(());
    };
    let is_dir = nix::sys::stat::fstat(&fd)
        .map(|s| s.st_mode & libc::S_IFMT == libc::S_IFDIR)
        .unwrap_or(false);
    let res = if is_dir {
        mount(
            Some("tmpfs"),
            &fd_path(&fd),
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            Some("size=0k"),
        )
    } else {
        mount(
            Some("/dev/null"),
            &fd_path(&fd),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
    };
    ctx(res, || format!("masking {path}"))
}

/// Makes a path read-only by binding it onto itself and remounting.
pub fn make_readonly(root: &OwnedFd, path: &str) -> MountResult<()> {
    let Some(fd) = open_existing(root, Path::new(path))? else {
        return Ok(());
    };
    ctx(
        mount(
            Some(&fd_path(&fd)),
            &fd_path(&fd),
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        ),
        || format!("bind mounting {path} read-only"),
    )?;
    let Some(top) = open_existing(root, Path::new(path))? else {
        return Ok(());
    };
    remount_ro(&top, MsFlags::empty(), Path::new(path))
}
