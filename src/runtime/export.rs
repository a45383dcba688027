//! The `__archive` helper behind `export` and `commit`: it gets at a container's files
//! from inside the right namespace and writes them to stdout as a tar stream.
//!
//! - Export of a running container: join its user and mount namespaces and clone just
//!   its root mount (open_tree without AT_RECURSIVE), so /proc, /sys, /dev and volumes
//!   mounted over the root are not part of the archive, as in podman.
//! - Export of a stopped container: in a fresh user + mount namespace, mount its upper
//!   dir and image layers as a read-only overlay (no work dir is touched) and walk that.
//! - Diff (commit): in a fresh user namespace read the upper dir itself; owners are seen
//!   as the container sees them and overlay whiteouts become OCI whiteouts.
//! - Root containers with a user namespace (the helper runs as host root): see
//!   [`super::export_mapped`] for how their owners come out as the container's.
//!
//! Protocol: the CLI sends one JSON [`ArchiveRequest`] line on the sync socket; the
//! helper streams the tar on stdout, closes it, and answers `ok` or the error text.

use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::mount::{mount, MsFlags};
use nix::sys::stat::Mode;
use serde::{Deserialize, Serialize};

use super::exec::read_line;
use super::join::{self, Target};
use crate::storage::archive::{write_tree, TreeMode};
use crate::storage::unpack::OverlayXattrs;
use crate::userns::IdMapping;

/// What to archive.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ArchiveRequest {
    Running {
        name: String,
        target: Target,
    },
    Stopped {
        name: String,
        bundle: PathBuf,
        /// The container's own mapping when the helper runs as host root (see
        /// [`super::export_mapped`]).
        #[serde(default)]
        mapping: Option<IdMapping>,
    },
    Diff {
        name: String,
        upper: PathBuf,
        trusted: bool,
        #[serde(default)]
        mapping: Option<IdMapping>,
    },
}

impl ArchiveRequest {
    fn name(&self) -> &str {
        match self {
            ArchiveRequest::Running { name, .. }
            | ArchiveRequest::Stopped { name, .. }
            | ArchiveRequest::Diff { name, .. } => name,
        }
    }
}

/// The `__archive` helper; returns the exit code.
pub fn helper_main() -> i32 {
    let mut sync = match crate::userns::enter_helper(
        "__archive is an internal command of skiff export and commit",
    ) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let req = match read_line(&mut sync)
        .ok()
        .and_then(|l| serde_json::from_str::<ArchiveRequest>(&l).ok())
    {
        Some(r) => r,
        None => {
            let _ = sync.write_all(b"invalid archive request\n");
            return 125;
        }
    };
    let _ = nix::sys::prctl::set_dumpable(false);
    let res = run(&req);
    let reply = match &res {
        Ok(()) => "ok".to_string(),
        Err(e) => format!("container {}: {e}", req.name()),
    };
    let _ = sync.write_all(format!("{reply}\n").as_bytes());
    i32::from(res.is_err()) * 125
}

fn run(req: &ArchiveRequest) -> Result<(), String> {
    let (root, mode) = match req {
        ArchiveRequest::Running { name, target } => {
            (running_root(name, *target)?, TreeMode::Export)
        }
        ArchiveRequest::Stopped {
            bundle, mapping, ..
        } => (stopped_root(bundle, mapping.as_ref())?, TreeMode::Export),
        ArchiveRequest::Diff {
            upper,
            trusted,
            mapping,
            ..
        } => {
            let fd = match mapping {
                Some(m) => super::export_mapped::shifted_upper(upper, m)?,
                None => open_dir(upper)?,
            };
            let x = if *trusted {
                OverlayXattrs::Trusted
            } else {
                OverlayXattrs::User
            };
            (fd, TreeMode::Diff(x))
        }
    };
    // SAFETY: fd 1 is our stdout, which the parent set up; we own it from here on and
    // closing it at the end tells the reader the archive is complete.
    let stdout = unsafe { std::fs::File::from_raw_fd(1) };
    let out = std::io::BufWriter::with_capacity(1 << 20, stdout);
    write_tree(&root, mode, out).map_err(|e| e.to_string())?;
    Ok(())
}

fn open_dir(p: &Path) -> Result<OwnedFd, String> {
    tracing::debug!(path = %p.display(), "open directory");
    nix::fcntl::open(
        p,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("opening {}: {e}", p.display()))
}

/// The container's root mount alone, detached, from inside its namespaces.
fn running_root(name: &str, t: Target) -> Result<OwnedFd, String> {
    join::open(name, t, &["user", "mnt"])
        .and_then(|o| o.enter())
        .map_err(|e| e.to_string())?;
    let path = c"/";
    tracing::debug!("open_tree(/, OPEN_TREE_CLONE)");
    // SAFETY: open_tree takes a dirfd, a NUL-terminated path and flags; it returns a new
    // fd or -1 and touches no memory of ours beyond the path.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            path.as_ptr(),
            (libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC) as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(format!(
            "cloning its root mount: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    let tree = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // The detached mount's root, opened as a directory to read.
    nix::fcntl::openat(
        &tree,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("opening its root: {e}"))
}

/// A read-only overlay of the container's upper dir over its image layers. With the
/// container's `mapping` (host root), seen from a user namespace with that mapping.
fn stopped_root(bundle: &Path, mapping: Option<&IdMapping>) -> Result<OwnedFd, String> {
    // Made before any mount: its process is forked and gone when this returns.
    let userns = mapping.map(super::export_mapped::userns).transpose()?;
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .map_err(|e| format!("unshare(CLONE_NEWNS): {e}"))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| format!("making / private: {e}"))?;
    let spec = super::bundle::load_spec(bundle).map_err(|e| e.to_string())?;
    let layout = super::bundle::load_layout(bundle).map_err(|e| e.to_string())?;
    let target = super::spec::rootfs_path(bundle, &spec);
    std::fs::create_dir_all(&target).map_err(|e| format!("{}: {e}", target.display()))?;
    let mut lower: Vec<String> = Vec::new();
    if layout.upper.is_dir() {
        lower.push(layout.upper.display().to_string());
    }
    for l in &layout.lower {
        if !layout.layers_dir.join(l).is_dir() {
            return Err(format!(
                "layer directory {} is missing: run `skiff system check --repair`",
                layout.layers_dir.join(l).display()
            ));
        }
        lower.push(l.clone());
    }
    match (&userns, layout.idmapped) {
        // The host's layers, shifted as the monitor shifts them for the running container.
        (Some(ns), true) => super::export_mapped::idmap_lowers(&layout, ns)?,
        (None, true) => {
            return Err("its layers are idmapped but it has no ID mapping in its config.json: recreate the container".into())
        }
        _ => {}
    }
    nix::unistd::chdir(&layout.layers_dir)
        .map_err(|e| format!("{}: {e}", layout.layers_dir.display()))?;
    if lower.len() == 1 {
        // overlay wants two layers when it has no upper dir: a bind does the same.
        tracing::debug!(src = %lower[0], target = %target.display(), "bind mount");
        mount(
            Some(lower[0].as_str()),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| format!("bind mounting {}: {e}", lower[0]))?;
    } else if !lower.is_empty() {
        let mut opts = format!("lowerdir={}", lower.join(":"));
        if layout.userxattr {
            opts.push_str(",userxattr");
        }
        tracing::debug!(target = %target.display(), %opts, "mount overlay read-only");
        mount(
            Some("overlay"),
            &target,
            Some("overlay"),
            MsFlags::MS_RDONLY,
            Some(opts.as_str()),
        )
        .map_err(|e| format!("mounting its root filesystem: {e}"))?;
    }
    let root = open_dir(&target)?;
    if let Some(ns) = &userns {
        super::export_mapped::enter(ns)?;
    }
    Ok(root)
}

/// Parent side: starts the helper with `stdout` as its stdout, sends the request, and
/// returns the running helper; call [`finish`] after consuming the stream.
pub fn spawn(
    self_args: Vec<std::ffi::OsString>,
    req: &ArchiveRequest,
    mapping: Option<&crate::userns::IdMapping>,
    stdout: std::process::Stdio,
) -> Result<crate::userns::HelperChild, String> {
    let mut args = self_args;
    args.push("__archive".into());
    let mut h = crate::userns::spawn_helper(Path::new("/proc/self/exe"), &args, mapping, |c| {
        c.stdin(std::process::Stdio::null());
        c.stdout(stdout);
    })
    .map_err(|e| e.to_string())?;
    let mut line = serde_json::to_string(req).map_err(|e| e.to_string())?;
    line.push('\n');
    h.sync
        .write_all(line.as_bytes())
        .map_err(|e| format!("talking to the archive helper: {e}"))?;
    Ok(h)
}

/// Waits for the helper's verdict once its stream has been read to the end.
pub fn finish(mut h: crate::userns::HelperChild) -> Result<(), String> {
    let reply = read_line(&mut h.sync).unwrap_or_default();
    let status = h.child.wait().ok();
    match reply.trim() {
        "ok" => Ok(()),
        "" => Err(format!(
            "the archive helper exited unexpectedly ({status:?})"
        )),
        e => Err(e.to_string()),
    }
}
