//! Starting a container from its bundle: clone the init into new namespaces, write its ID
//! maps from outside, release it, and learn whether execve succeeded. Must be called from
//! a single-threaded process (the monitor), because clone with CLONE_NEWUSER is refused
//! to threaded ones.

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::sched::CloneFlags;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use oci_spec::runtime::LinuxNamespaceType;

use super::init::{self, InitArgs};
use super::networks::JoinNs;
use super::{bundle, spec, RuntimeError};

/// A started container.
pub struct Launched {
    pub pid: Pid,
    /// The container's user namespace, kept open so cleanup can enter it after the
    /// container's processes are gone.
    pub userns: Option<OwnedFd>,
    /// The container's terminal (with `-t`).
    pub pty_master: Option<OwnedFd>,
    /// The container's own network namespace, opened before the init can become
    /// non-dumpable (after that its /proc/PID/ns files are closed to us): published
    /// ports are served from inside it.
    pub netns: Option<OwnedFd>,
    /// The taps in the container's network namespace, in the order created: tap0
    /// (`--network slirp4netns`), or eth0, eth1, ... (one per user-defined network).
    pub taps: Vec<OwnedFd>,
}

/// How the container's stdio is connected.
pub enum ContainerIo {
    /// Pipes to the monitor (stdin only with -i; /dev/null otherwise).
    Pipes {
        stdin: Option<OwnedFd>,
        stdout: OwnedFd,
        stderr: OwnedFd,
    },
    /// A pty allocated inside the container, with this initial size (rows, columns);
    /// the master comes back to the monitor.
    Tty(u16, u16),
    /// The monitor's own stdio, unchanged (log driver passthrough).
    Inherit,
}

const STACK_SIZE: usize = 1 << 20;

fn clone_flags(spec: &oci_spec::runtime::Spec) -> CloneFlags {
    let mut f = CloneFlags::empty();
    for n in spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .into_iter()
        .flatten()
    {
        f |= match n.typ() {
            LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
            LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
            LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
            LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
            LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
            LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
            LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
            _ => CloneFlags::empty(),
        };
    }
    f
}

/// Starts the container described by the bundle; returns once its program runs.
/// `join` names namespaces to enter instead of creating them (`--network
/// container:NAME` / `ns:PATH`).
pub fn launch(
    bundle_dir: &Path,
    io: &ContainerIo,
    join: Option<&JoinNs>,
    addrs: &[crate::network::tap::Addressing],
) -> Result<Launched, RuntimeError> {
    let spec = bundle::load_spec(bundle_dir)?;
    let layout = bundle::load_layout(bundle_dir)?;
    layout.prepare()?;
    let mapping = spec::mapping_of(&spec);
    let mut flags = clone_flags(&spec);
    if let Some(j) = join {
        flags.remove(CloneFlags::CLONE_NEWNET);
        if j.userns.is_some() {
            flags.remove(CloneFlags::CLONE_NEWUSER);
        }
    }
    let (mut parent_sock, child_sock) = UnixStream::pair().map_err(|source| RuntimeError::Io {
        path: bundle_dir.to_path_buf(),
        source,
    })?;
    let me = nix::unistd::getpid().as_raw();
    let args = InitArgs {
        spec: &spec,
        layout: &layout,
        bundle: bundle_dir,
        sock: &child_sock,
        io,
        parent: me,
        userns: mapping.is_some(),
    };
    let mut stack = vec![0u8; STACK_SIZE];
    tracing::debug!(?flags, "clone container init");
    let pid = match join {
        Some(j) => super::launch_join::clone_joined(
            j,
            flags,
            &mut stack,
            &|| init::run(&args),
            mapping.as_ref(),
        )?,
        // SAFETY: the monitor is single-threaded, so the child's copy of the address
        // space is consistent (no lock held by another thread); the callback only uses
        // data cloned into the child and ends in execve or returns an exit code.
        None => unsafe {
            nix::sched::clone(
                Box::new(|| init::run(&args)),
                &mut stack,
                flags,
                Some(libc::SIGCHLD),
            )
        }
        .map_err(|source| RuntimeError::Kernel {
            call: format!("clone({flags:?})"),
            source,
        })?,
    };
    drop(child_sock);
    let fail = |e: RuntimeError| {
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = waitpid(pid, None);
        e
    };
    let userns = if let Some(m) = &mapping {
        // A joined user namespace has its maps already.
        if flags.contains(CloneFlags::CLONE_NEWUSER) {
            m.apply(pid.as_raw()).map_err(|e| fail(e.into()))?;
        }
        Some(open_ns(pid, "user").map_err(fail)?)
    } else {
        None
    };
    if let (true, Some(ns)) = (layout.idmapped, &userns) {
        let rootfs = spec::rootfs_path(bundle_dir, &spec);
        crate::rootfs::idmapped::mount_rootfs(pid, ns, &layout, &rootfs)
            .map_err(|e| fail(e.into()))?;
    }
    let netns = if flags.contains(CloneFlags::CLONE_NEWNET) {
        Some(open_ns(pid, "net").map_err(fail)?)
    } else if let Some(j) = join {
        // ns:PATH may publish ports: the connector works in the joined namespace.
        Some(j.netns.try_clone().map_err(|source| {
            fail(RuntimeError::Io {
                path: bundle_dir.to_path_buf(),
                source,
            })
        })?)
    } else {
        None
    };
    // Limits bind before the init runs anything, so nothing it forks escapes them. The
    // OOM score is written from here: once the init is not dumpable, its /proc files
    // belong to a root its user namespace does not map.
    if let Err(e) = super::cgroup_limits::apply(&spec, pid.as_raw()) {
        return Err(fail(RuntimeError::Init {
            code: 125,
            message: format!("applying resource limits: {e}"),
        }));
    }
    // The user-defined networks' addresses follow, one line per interface and an
    // empty line, for the init to set before the container's program runs (set later
    // from here, a program that connects at once would find no route).
    let mut go = b"M".to_vec();
    for a in addrs {
        go.extend_from_slice(a.to_line().as_bytes());
    }
    go.push(b'\n');
    parent_sock.write_all(&go).map_err(|source| {
        fail(RuntimeError::Io {
            path: bundle_dir.to_path_buf(),
            source,
        })
    })?;
    // The init sends its taps ("N" + fd each) and the pty master ("T" + fd), then either an
    // error report or nothing: its exec closes the socket. A message carrying fds is
    // never merged with another by the kernel.
    let mut report = Vec::new();
    let mut pty_master = None;
    let mut taps = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match super::fdpass::recv_fds(parent_sock.as_fd(), &mut buf) {
            Ok((0, _)) => break,
            Ok((n, mut fds)) => {
                let mut data = &buf[..n];
                if let Some(fd) = fds.pop() {
                    if data.first() == Some(&b'N') {
                        taps.push(fd);
                    } else {
                        pty_master = Some(fd);
                    }
                    if matches!(data.first(), Some(b'T' | b'N')) {
                        data = &data[1..];
                    }
                }
                report.extend_from_slice(data);
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        }
    }
    let report = String::from_utf8_lossy(&report).to_string();
    if !report.is_empty() {
        let (code, message) = report.split_once('\n').unwrap_or(("125", &report));
        let _ = waitpid(pid, None);
        return Err(RuntimeError::Init {
            code: code.trim().parse().unwrap_or(125),
            message: message.to_string(),
        });
    }
    Ok(Launched {
        pid,
        userns,
        pty_master,
        netns,
        taps,
    })
}

/// Opens one of the child's namespaces (/proc/PID/ns/KIND), kept by the monitor for
/// cleanup (user) or the port connector (net).
fn open_ns(pid: Pid, kind: &str) -> Result<OwnedFd, RuntimeError> {
    let p = format!("/proc/{}/ns/{kind}", pid.as_raw());
    tracing::debug!(path = %p, "open namespace");
    nix::fcntl::open(
        p.as_str(),
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|source| RuntimeError::Kernel {
        call: format!("open {p}"),
        source,
    })
}

/// Removes a tree whose files belong to IDs of the container's user namespace, by
/// entering that namespace in a forked child (the monitor is single-threaded, so
/// setns is allowed there).
pub fn remove_in_userns(userns: Option<&OwnedFd>, path: &Path) -> bool {
    let Some(ns) = userns else {
        return std::fs::remove_dir_all(path).is_ok() || !path.exists();
    };
    // SAFETY: the monitor is single-threaded; the child only calls setns, removes files
    // and exits.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            let ok = nix::sched::setns(ns, CloneFlags::CLONE_NEWUSER).is_ok()
                && (std::fs::remove_dir_all(path).is_ok() || !path.exists());
            // SAFETY: _exit skips atexit handlers and destructors of the parent's state.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) }
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            matches!(waitpid(child, None), Ok(WaitStatus::Exited(_, 0)))
        }
        Err(_) => false,
    }
}
