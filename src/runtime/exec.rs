//! `exec`, container side: the hidden `__exec` helper joins a running container's
//! namespaces (user first), forks so the command lands in the container's pid namespace,
//! and execs it with the container's own user database, capabilities, rlimits and env.
//!
//! Protocol on the sync socket (helper → CLI): an optional `T` byte carrying the pty
//! master (SCM_RIGHTS), then `S` once the command runs, or `E` followed by
//! "<exit code>\n<message>" when it could not start. The helper then waits for the command
//! and exits with its status. While it waits, the CLI may send `D` with the master to
//! detach: the helper keeps the pty open (and drained) so the command is not hung up.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{ForkResult, Pid};
use oci_spec::runtime::Process;
use serde::{Deserialize, Serialize};

use super::join::{self, Target};
use super::process::{self, Fail};
use super::spec::{USER_ANNOTATION, USER_IMPLICIT_ANNOTATION};

/// What the CLI asks the helper to run; sent as one JSON line on the sync socket (not in
/// argv, where other users could read the environment).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecRequest {
    /// The container's name, for messages.
    pub name: String,
    pub target: Target,
    /// The container's bundle (config.json holds env, capabilities, rlimits, user).
    pub bundle: PathBuf,
    pub args: Vec<String>,
    /// `K=V` entries applied over the container's environment (later wins).
    pub env: Vec<String>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    pub tty: bool,
    /// Initial terminal size (rows, cols) for the pty.
    pub winsize: Option<(u16, u16)>,
}

nix::ioctl_write_int_bad!(tiocsctty, libc::TIOCSCTTY);
nix::ioctl_write_int_bad!(tiocgptpeer, libc::TIOCGPTPEER);

/// Sends one tag byte, with an fd attached when given.
pub fn send_tag(sock: &UnixStream, tag: u8, fd: Option<RawFd>) -> nix::Result<()> {
    let fds: Vec<RawFd> = fd.into_iter().collect();
    super::fdpass::send_fds(sock.as_fd(), &[tag], &fds).map(drop)
}

/// Receives one tag byte and any fd sent with it; None at end of stream.
pub fn recv_tag(sock: &UnixStream) -> nix::Result<Option<(u8, Option<OwnedFd>)>> {
    let mut buf = [0u8; 1];
    loop {
        match super::fdpass::recv_fds(sock.as_fd(), &mut buf) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e),
            Ok((0, _)) => return Ok(None),
            Ok((_, fds)) => return Ok(Some((buf[0], fds.into_iter().next()))),
        }
    }
}

/// Reads one `\n`-terminated line byte by byte, so nothing after it is consumed.
pub fn read_line(sock: &mut UnixStream) -> std::io::Result<String> {
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    loop {
        match sock.read(&mut b) {
            Ok(0) => break,
            Ok(_) if b[0] == b'\n' => break,
            Ok(_) => out.push(b[0]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        if out.len() > 1 << 20 {
            return Err(std::io::Error::other("request line too long"));
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Opens a pidfd, which poll reports readable when the process exits.
pub fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes plain integers and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    // SAFETY: a non-negative return is a fresh descriptor that we now own.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Exit code of a wait status: the command's code, or 128 + signal.
pub fn status_code(s: WaitStatus) -> Option<i32> {
    match s {
        WaitStatus::Exited(_, c) => Some(c),
        WaitStatus::Signaled(_, sig, _) => Some(128 + sig as i32),
        _ => None,
    }
}

/// The `__exec` helper; returns this process's exit code.
pub fn helper_main() -> i32 {
    let mut sync = match crate::userns::enter_helper("__exec is an internal command of skiff exec")
    {
        Ok(s) => s,
        Err(code) => return code,
    };
    let result = read_line(&mut sync)
        .map_err(|e| Fail::engine(format!("reading the exec request: {e}")))
        .and_then(|l| {
            serde_json::from_str::<ExecRequest>(&l)
                .map_err(|e| Fail::engine(format!("invalid exec request: {e}")))
        })
        .and_then(|req| run(&req, &sync));
    match result {
        Ok(code) => code,
        Err(f) => {
            let _ = send_tag(&sync, b'E', None);
            let _ = (&sync).write_all(format!("{}\n{}", f.code, f.message).as_bytes());
            f.code
        }
    }
}

fn k<T>(r: nix::Result<T>, what: &str) -> Result<T, Fail> {
    r.map_err(|e| Fail::engine(format!("{what}: {e}")))
}

/// Environment: the container's, then the request's entries (later wins, order kept).
fn merge_env(base: &[String], extra: &[String]) -> Vec<String> {
    let mut out: Vec<String> = base.to_vec();
    for e in extra {
        let key = e.split_once('=').map(|(k, _)| k).unwrap_or(e);
        let prefix = format!("{key}=");
        match out.iter_mut().find(|o| o.starts_with(&prefix)) {
            Some(slot) => *slot = e.clone(),
            None => out.push(e.clone()),
        }
    }
    out
}

fn run(req: &ExecRequest, sync: &UnixStream) -> Result<i32, Fail> {
    // Nothing in the container may read our memory or fds through /proc.
    k(
        nix::sys::prctl::set_dumpable(false),
        "prctl(PR_SET_DUMPABLE)",
    )?;
    let spec = super::bundle::load_spec(&req.bundle).map_err(|e| Fail::engine(e.to_string()))?;
    // The command shares the container's limits (and its freezer): join its cgroups
    // before forking it.
    super::cgroup_limits::join_like(req.target.pid);
    let proc = spec
        .process()
        .clone()
        .ok_or_else(|| Fail::engine(format!("container {}: spec has no process", req.name)))?;
    let user = req
        .user
        .clone()
        .or_else(|| {
            spec.annotations()
                .as_ref()
                .and_then(|m| m.get(USER_ANNOTATION).cloned())
        })
        .unwrap_or_else(|| format!("{}:{}", proc.user().uid(), proc.user().gid()));
    let groups = if req.user.is_some() {
        process::Groups::ExecAsUser
    } else {
        process::Groups::ExecAsContainer {
            user_named: spec
                .annotations()
                .as_ref()
                .and_then(|m| m.get(USER_IMPLICIT_ANNOTATION))
                .is_none_or(|v| v != "1"),
            // Resolved in the container (names come from its /etc/group).
            added: Vec::new(),
        }
    };
    let group_add = super::spec::group_add(&spec);
    // Our own session: a ctrl-c on the user's terminal reaches the CLI only, which
    // forwards it once; the command must not get it twice.
    let _ = nix::unistd::setsid();
    let kinds: Vec<&str> = join::ALL.iter().map(|(k, _)| *k).collect();
    let opened =
        join::open(&req.name, req.target, &kinds).map_err(|e| Fail::engine(e.to_string()))?;
    let _proc_dir = opened.enter().map_err(|e| Fail::engine(e.to_string()))?;
    let (status_r, status_w) = k(nix::unistd::pipe2(OFlag::O_CLOEXEC), "pipe")?;
    // SAFETY: this helper is single-threaded (freshly exec'd, no runtime started), so the
    // child's copy of the address space is consistent; it ends in execve or _exit.
    match k(unsafe { nix::unistd::fork() }, "fork")? {
        ForkResult::Child => {
            drop(status_r);
            let nonroot = super::security::nonroot_caps(&spec);
            let filter = spec.linux().as_ref().and_then(|l| l.seccomp().clone());
            let f = match child(
                req,
                &proc,
                (&user, groups, &group_add),
                &nonroot,
                filter.as_ref(),
                sync,
            ) {
                Ok(never) => match never {},
                Err(f) => f,
            };
            let mut w = std::fs::File::from(status_w);
            let _ = w.write_all(format!("{}\n{}", f.code, f.message).as_bytes());
            // SAFETY: _exit skips destructors of state copied from the parent.
            unsafe { libc::_exit(f.code) }
        }
        ForkResult::Parent { child } => {
            drop(status_w);
            let mut report = String::new();
            let _ = std::fs::File::from(status_r).read_to_string(&mut report);
            if !report.is_empty() {
                let _ = waitpid(child, None);
                let (code, message) = report.split_once('\n').unwrap_or(("125", &report));
                return Err(Fail {
                    code: code.trim().parse().unwrap_or(125),
                    message: message.to_string(),
                });
            }
            supervise(child, sync)
        }
    }
}

enum Never {}

/// In the forked child, inside every namespace of the container: identity, pty, exec.
fn child(
    req: &ExecRequest,
    proc: &Process,
    (user, mut groups, group_add): (&str, process::Groups, &[String]),
    nonroot_caps: &str,
    seccomp: Option<&oci_spec::runtime::LinuxSeccomp>,
    sync: &UnixStream,
) -> Result<Never, Fail> {
    super::signal::reset_for_exec();
    process::set_rlimits(proc)?;
    if let process::Groups::ExecAsContainer { added, .. } = &mut groups {
        *added = process::added_groups(group_add)?;
    }
    let id = process::resolve_user(user, groups)?;
    // The command leads a session (and process group) of its own inside the container,
    // as under runc: a session left behind in the helper's namespace would show as 0
    // there, and a shell's job control or a setsid() would behave differently. With a
    // terminal, the leader is the one that takes it as its controlling tty.
    tracing::debug!("setsid");
    k(nix::unistd::setsid().map(drop), "setsid")?;
    if req.tty {
        let slave = open_pty(req, sync)?;
        // The command's user must be able to reopen its terminal (as with run -t).
        let _ = nix::unistd::fchown(&slave, Some(nix::unistd::Uid::from_raw(id.uid)), None);
        // SAFETY: TIOCSCTTY on the slave we own makes it our controlling terminal.
        k(
            unsafe { tiocsctty(slave.as_raw_fd(), 0) }.map(drop),
            "TIOCSCTTY",
        )?;
        k(nix::unistd::dup2_stdin(&slave), "dup2 stdin")?;
        k(nix::unistd::dup2_stdout(&slave), "dup2 stdout")?;
        k(nix::unistd::dup2_stderr(&slave), "dup2 stderr")?;
    }
    process::become_user(proc, &id, nonroot_caps, seccomp)?;
    let cwd = req
        .workdir
        .clone()
        .map(PathBuf::from)
        .unwrap_or_else(|| proc.cwd().clone());
    nix::unistd::chdir(&cwd).map_err(|e| Fail {
        code: 127,
        message: format!(
            "container {}: chdir to `{}`: {}",
            req.name,
            cwd.display(),
            e.desc().to_lowercase()
        ),
    })?;
    let mut env = merge_env(&proc.env().clone().unwrap_or_default(), &req.env);
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", id.home));
    }
    if req.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".to_string());
    }
    let arg0 = req
        .args
        .first()
        .ok_or_else(|| Fail::engine("exec needs a command to run"))?;
    let prog = process::find_program(arg0, &env)?;
    // Every fd above stderr closes at exec: the sync socket, the status pipe, /proc.
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags on our own fds.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
    }
    Err(process::exec(&prog, &req.args, &env))
}

/// Allocates a pty from the container's own devpts (its /dev/ptmx), sends the master to
/// the CLI and returns the slave.
fn open_pty(req: &ExecRequest, sync: &UnixStream) -> Result<OwnedFd, Fail> {
    let master = k(
        open(
            "/dev/ptmx",
            OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
            Mode::empty(),
        ),
        "opening /dev/ptmx in the container",
    )?;
    // SAFETY: the fd is a freshly opened pty master that nothing else owns.
    let master = unsafe { nix::pty::PtyMaster::from_owned_fd(master) };
    k(nix::pty::unlockpt(&master), "unlockpt")?;
    // TIOCGPTPEER opens the slave through the master's own devpts mount, not by a path
    // the container could swap.
    // SAFETY: TIOCGPTPEER takes open flags and returns a new fd we then own.
    let raw = k(
        unsafe {
            tiocgptpeer(
                master.as_raw_fd(),
                libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
            )
        },
        "opening the pty slave",
    )?;
    // SAFETY: raw is the new descriptor TIOCGPTPEER returned.
    let slave = unsafe { OwnedFd::from_raw_fd(raw) };
    if let Some((rows, cols)) = req.winsize {
        super::pty::set_winsize(&slave, rows, cols);
    }
    k(
        send_tag(sync, b'T', Some(master.as_raw_fd())),
        "sending the pty to skiff exec",
    )?;
    Ok(slave)
}

/// Waits for the command, forwarding signals and keeping a detached pty drained; returns
/// the command's exit code.
fn supervise(child: Pid, sync: &UnixStream) -> Result<i32, Fail> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut signals = super::signal::FORWARDED.to_vec();
    signals.push(nix::sys::signal::Signal::SIGWINCH);
    super::signal::forward_to(child.as_raw(), &signals);
    let _ = send_tag(sync, b'S', None);
    let Some(pidfd) = pidfd_open(child.as_raw()) else {
        return Ok(wait_code(child));
    };
    let mut sync_open = true;
    let mut held: Option<OwnedFd> = None;
    loop {
        let mut fds = vec![PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
        if sync_open {
            fds.push(PollFd::new(sync.as_fd(), PollFlags::POLLIN));
        }
        if let Some(m) = &held {
            fds.push(PollFd::new(m.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return Ok(wait_code(child)),
            Ok(_) => {}
        }
        let ready: Vec<bool> = fds.iter().map(|f| f.any().unwrap_or(false)).collect();
        drop(fds);
        if ready[0] {
            return Ok(wait_code(child));
        }
        let mut i = 1;
        if sync_open {
            if ready[i] {
                match recv_tag(sync) {
                    Ok(Some((b'D', Some(fd)))) => held = Some(fd),
                    Ok(Some(_)) => {}
                    _ => sync_open = false,
                }
            }
            i += 1;
        }
        if ready.get(i).copied().unwrap_or(false) {
            if let Some(m) = &held {
                let mut buf = [0u8; 4096];
                if !matches!(nix::unistd::read(m, &mut buf), Ok(n) if n > 0) {
                    held = None;
                }
            }
        }
    }
}

fn wait_code(child: Pid) -> i32 {
    loop {
        match waitpid(child, None) {
            Ok(s) => {
                if let Some(c) = status_code(s) {
                    return c;
                }
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return 125,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_merge_replaces_and_appends() {
        let base = vec!["PATH=/bin".to_string(), "A=1".to_string()];
        let out = merge_env(&base, &["A=2".into(), "B=3".into()]);
        assert_eq!(out, vec!["PATH=/bin", "A=2", "B=3"]);
    }
}
