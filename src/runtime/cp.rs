//! `cp`, container side: the hidden `__cp` helper gets into the container's filesystem
//! and reads or writes a tar stream there, while the CLI handles the host side as the
//! plain user.
//!
//! - A running container: the helper joins its user and mount namespaces; its root is
//!   then the container's root (volumes included).
//! - A created or exited one: the helper enters a new user + mount namespace (or just a
//!   mount namespace as root), mounts the container's overlay on the bundle's rootfs dir
//!   and chroots there.
//!
//! Either way the root is the container's, so no symlink in it can lead to the host, and
//! the container path is resolved with openat2(RESOLVE_IN_ROOT) on top of that.
//!
//! Protocol on the sync socket, one JSON line each: CLI → [`CpRequest`]; helper →
//! [`Reply`] describing the container path; CLI → [`Plan`] (or EOF to give up); the tar
//! stream flows on the helper's stdin (into the container) or stdout (out of it); helper →
//! a final [`Reply`].

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstat, Mode};
use serde::{Deserialize, Serialize};

use super::exec::read_line;
use super::join::{self, Target};

/// Where the container's files are.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Place {
    /// Join the running container's user and mount namespaces.
    Running(Target),
    /// Mount the container's rootfs from its bundle.
    Stopped { bundle: PathBuf },
}

/// Which way the tar stream flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Direction {
    /// Host → container: the helper extracts stdin.
    Into,
    /// Container → host: the helper writes a tar to stdout.
    Out,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CpRequest {
    /// The container's name, for messages.
    pub name: String,
    pub place: Place,
    pub direction: Direction,
    /// The path inside the container, as the user wrote it.
    pub path: String,
}

/// What a path is, after following symlinks inside the root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    Missing,
    Dir,
    File,
    Other,
}

/// The helper's answer: the kind of the container path and of its parent, or an error.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Reply {
    Info { kind: Kind, parent: Kind },
    Done,
    Err(String),
}

/// The CLI's decision, once it knows both sides.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    /// Into: the directory (inside the container) to extract in.
    /// Out: ignored.
    pub dir: String,
    /// Out: the name the source gets in the tar.
    pub name: String,
    /// Into: keep owners from the tar (a user-supplied stream); otherwise files belong
    /// to the container's root.
    pub keep_owners: bool,
}

/// Failures inside the cp helper, naming the container and path.
#[derive(Debug, thiserror::Error)]
pub enum CpError {
    #[error("could not find {path:?} on container {name}: no such file or directory")]
    NotFound { name: String, path: String },
    #[error("container {name}: {path:?}: {detail}")]
    Path {
        name: String,
        path: String,
        detail: String,
    },
    #[error("container {name}: {detail}")]
    Setup { name: String, detail: String },
}

/// Relative form of a container path: only normal components (the root is implied).
fn rel(p: &str) -> PathBuf {
    let r: PathBuf = Path::new(p)
        .components()
        .filter(|c| matches!(c, Component::Normal(_) | Component::ParentDir))
        .collect();
    if r.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        r
    }
}

/// Opens a path inside the root, following symlinks only within it.
pub fn open_in_root(root: &OwnedFd, path: &Path, flags: OFlag) -> nix::Result<OwnedFd> {
    loop {
        match openat2(
            root.as_fd(),
            path,
            OpenHow::new()
                .flags(flags | OFlag::O_CLOEXEC)
                .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS),
        ) {
            // openat2 asks for a retry when a rename raced the lookup.
            Err(Errno::EAGAIN) => continue,
            r => return r,
        }
    }
}

fn kind_of(root: &OwnedFd, path: &Path) -> Kind {
    match open_in_root(root, path, OFlag::O_PATH) {
        Ok(fd) => match fstat(&fd).map(|s| s.st_mode & libc::S_IFMT) {
            Ok(libc::S_IFDIR) => Kind::Dir,
            Ok(libc::S_IFREG) => Kind::File,
            Ok(_) => Kind::Other,
            Err(_) => Kind::Missing,
        },
        Err(_) => Kind::Missing,
    }
}

fn send(sync: &mut UnixStream, r: &Reply) {
    let mut line = serde_json::to_string(r).unwrap_or_else(|_| "{\"Err\":\"encoding\"}".into());
    line.push('\n');
    let _ = sync.write_all(line.as_bytes());
}

/// The `__cp` helper; returns this process's exit code.
pub fn helper_main() -> i32 {
    let mut sync = match crate::userns::enter_helper("__cp is an internal command of skiff cp") {
        Ok(s) => s,
        Err(code) => return code,
    };
    let req = match read_line(&mut sync)
        .ok()
        .and_then(|l| serde_json::from_str::<CpRequest>(&l).ok())
    {
        Some(r) => r,
        None => {
            send(&mut sync, &Reply::Err("invalid cp request".into()));
            return 125;
        }
    };
    match run(&req, &mut sync) {
        Ok(()) => {
            send(&mut sync, &Reply::Done);
            0
        }
        Err(e) => {
            send(&mut sync, &Reply::Err(e.to_string()));
            125
        }
    }
}

fn setup_err(name: &str) -> impl Fn(String) -> CpError + '_ {
    move |detail| CpError::Setup {
        name: name.to_string(),
        detail,
    }
}

/// Makes the container's root our root.
fn enter_root(req: &CpRequest) -> Result<(), CpError> {
    let fail = setup_err(&req.name);
    let _ = nix::sys::prctl::set_dumpable(false);
    match &req.place {
        Place::Running(t) => {
            let opened =
                join::open(&req.name, *t, &["user", "mnt"]).map_err(|e| CpError::Setup {
                    name: req.name.clone(),
                    detail: e.to_string(),
                })?;
            opened.enter().map_err(|e| CpError::Setup {
                name: req.name.clone(),
                detail: e.to_string(),
            })?;
            Ok(())
        }
        Place::Stopped { bundle } => {
            // A private mount namespace (inside the fresh user namespace when rootless),
            // so the overlay vanishes with this helper.
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
                .map_err(|e| fail(format!("unshare(CLONE_NEWNS): {e}")))?;
            nix::mount::mount(
                None::<&str>,
                "/",
                None::<&str>,
                nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
                None::<&str>,
            )
            .map_err(|e| fail(format!("making / private: {e}")))?;
            let spec = super::bundle::load_spec(bundle).map_err(|e| fail(e.to_string()))?;
            let layout = super::bundle::load_layout(bundle).map_err(|e| fail(e.to_string()))?;
            layout.prepare().map_err(|e| fail(e.to_string()))?;
            let rootfs = super::spec::rootfs_path(bundle, &spec);
            layout.mount(&rootfs).map_err(|e| fail(e.to_string()))?;
            nix::unistd::chroot(&rootfs)
                .map_err(|e| fail(format!("chroot {}: {e}", rootfs.display())))?;
            nix::unistd::chdir("/").map_err(|e| fail(format!("chdir /: {e}")))?;
            Ok(())
        }
    }
}

fn run(req: &CpRequest, sync: &mut UnixStream) -> Result<(), CpError> {
    enter_root(req)?;
    let fail = setup_err(&req.name);
    let root = nix::fcntl::open(
        "/",
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| fail(format!("opening the container root: {e}")))?;
    let path = rel(&req.path);
    let kind = kind_of(&root, &path);
    let parent = match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(p) => kind_of(&root, p),
        None => Kind::Dir,
    };
    if req.direction == Direction::Out && kind == Kind::Missing {
        return Err(CpError::NotFound {
            name: req.name.clone(),
            path: req.path.clone(),
        });
    }
    send(sync, &Reply::Info { kind, parent });
    let plan: Plan = match read_line(sync).ok().filter(|l| !l.is_empty()) {
        Some(l) => serde_json::from_str(&l).map_err(|e| fail(format!("invalid plan: {e}")))?,
        // The CLI found a problem on its side and gave up.
        None => return Ok(()),
    };
    match req.direction {
        Direction::Into => extract(req, &root, &plan),
        Direction::Out => archive(req, &root, &path, kind, &plan),
    }
}

fn path_err(req: &CpRequest, path: &str) -> impl Fn(std::io::Error) -> CpError {
    let name = req.name.clone();
    let path = path.to_string();
    move |e| CpError::Path {
        name: name.clone(),
        path: path.clone(),
        detail: e.to_string(),
    }
}

/// Unpacks stdin into `plan.dir`; the tar crate refuses `..` and absolute names and
/// never writes through a symlink that leads out of the directory.
fn extract(req: &CpRequest, root: &OwnedFd, plan: &Plan) -> Result<(), CpError> {
    let err = path_err(req, &plan.dir);
    let dir = open_in_root(root, &rel(&plan.dir), OFlag::O_RDONLY | OFlag::O_DIRECTORY)
        .map_err(|e| err(e.into()))?;
    nix::unistd::fchdir(&dir).map_err(|e| err(e.into()))?;
    let mut ar = tar::Archive::new(std::io::stdin().lock());
    ar.set_preserve_permissions(true);
    ar.set_preserve_ownerships(plan.keep_owners);
    ar.set_preserve_mtime(true);
    ar.set_overwrite(true);
    ar.set_unpack_xattrs(false);
    ar.unpack(".").map_err(err)
}

/// Writes `path` as a tar named `plan.name` to stdout: a file through the fd openat2
/// gave, a directory by walking it from inside (symlinks are stored, never followed).
fn archive(
    req: &CpRequest,
    root: &OwnedFd,
    path: &Path,
    kind: Kind,
    plan: &Plan,
) -> Result<(), CpError> {
    let err = path_err(req, &req.path);
    let name = rel(&plan.name);
    let out = std::io::stdout().lock();
    let mut b = tar::Builder::new(std::io::BufWriter::with_capacity(1 << 16, out));
    b.follow_symlinks(false);
    match kind {
        Kind::Dir => {
            let dir = open_in_root(root, path, OFlag::O_RDONLY | OFlag::O_DIRECTORY)
                .map_err(|e| err(e.into()))?;
            nix::unistd::fchdir(&dir).map_err(|e| err(e.into()))?;
            b.append_dir_all(&name, ".").map_err(&err)?;
        }
        _ => {
            let fd = open_in_root(root, path, OFlag::O_RDONLY | OFlag::O_NONBLOCK)
                .map_err(|e| err(e.into()))?;
            let mut f = std::fs::File::from(fd);
            b.append_file(&name, &mut f).map_err(&err)?;
        }
    }
    b.into_inner().and_then(|mut w| w.flush()).map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_forms() {
        assert_eq!(rel("/"), PathBuf::from("."));
        assert_eq!(rel("/etc/../x"), PathBuf::from("etc/../x"));
        assert_eq!(rel("tmp/"), PathBuf::from("tmp"));
    }
}
