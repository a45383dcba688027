//! `exec`: run a command in a running container. The namespace work happens in the
//! `__exec` helper (runtime::exec); this side checks the container, sends the request,
//! and then either lets the command use our stdio directly or relays our terminal to the
//! pty the helper allocated inside the container.

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};

use clap::Args;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{signal, SigHandler, Signal};

use super::{Ctx, Exit};
use crate::runtime::exec::{pidfd_open, recv_tag, send_tag, ExecRequest};
use crate::runtime::join::Target;
use crate::runtime::pty::{get_winsize, set_winsize};
use crate::storage::containers::State;
use crate::storage::Store;

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Run the command in the background
    #[arg(short, long)]
    pub detach: bool,
    /// Key sequence that detaches from an exec session with a terminal
    #[arg(long, value_name = "KEYS")]
    pub detach_keys: Option<String>,
    /// Set environment variables (NAME=VALUE, or NAME to copy from the host)
    #[arg(short, long = "env", value_name = "ENV")]
    pub env: Vec<String>,
    /// Read environment variables from a file
    #[arg(long, value_name = "FILE")]
    pub env_file: Vec<PathBuf>,
    /// Keep stdin open
    #[arg(short, long)]
    pub interactive: bool,
    /// Give the process extended privileges (not supported)
    #[arg(long)]
    pub privileged: bool,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    pub tty: bool,
    /// User (name or UID) and optional group: USER[:GROUP]
    #[arg(short, long)]
    pub user: Option<String>,
    /// Working directory inside the container
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// The container to run the command in
    pub container: String,
    /// Command and arguments
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    pub command: Vec<String>,
}

const STATE_IMPROPER: &str =
    "can only create exec sessions on running containers: container state improper";

/// The `-e` and `--env-file` entries as K=V (a bare NAME takes the host's value).
fn extra_env(a: &ExecArgs) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut add = |kv: &str| match kv.split_once('=') {
        Some(_) => out.push(kv.to_string()),
        None => {
            if let Ok(v) = std::env::var(kv) {
                out.push(format!("{kv}={v}"));
            }
        }
    };
    for f in &a.env_file {
        let text = std::fs::read_to_string(f).map_err(|e| {
            Exit::with(125, format!("--env-file: cannot read {}: {e}", f.display()))
        })?;
        for line in text.lines().map(str::trim) {
            if !line.is_empty() && !line.starts_with('#') {
                add(line);
            }
        }
    }
    for e in &a.env {
        add(e);
    }
    Ok(out)
}

pub fn exec(ctx: &Ctx, a: ExecArgs) -> anyhow::Result<i32> {
    if a.privileged {
        return Err(Exit::with(
            125,
            "exec --privileged is not supported: the command gets the container's capabilities",
        ));
    }
    let keys = crate::monitor::proto::parse_detach_keys(
        a.detach_keys.as_deref().unwrap_or("ctrl-p,ctrl-q"),
    )
    .map_err(|e| Exit::with(125, e))?;
    if let Some(w) = &a.workdir {
        if !w.starts_with('/') {
            return Err(Exit::with(
                125,
                format!("--workdir {w:?}: the working directory must be absolute"),
            ));
        }
    }
    let env = extra_env(&a)?;
    let mut store = Store::open(&ctx.paths)?;
    let found = store.find_container(&a.container)?;
    let c = super::container::refresh(&mut store, found)?;
    drop(store);
    if c.state != State::Running {
        return Err(Exit::with(125, STATE_IMPROPER));
    }
    let target = Target::of_record(&c.name, c.pid, c.monitor_pid.zip(c.monitor_start))
        .map_err(|_| Exit::with(125, STATE_IMPROPER))?;
    let tty = a.tty && !a.detach;
    let stdin = std::io::stdin();
    let winsize = tty
        .then(|| get_winsize(&stdin).or_else(|| get_winsize(&std::io::stdout())))
        .flatten();
    let req = ExecRequest {
        name: c.name.clone(),
        target,
        bundle: ctx.paths.container_dir(&c.id),
        args: a.command.clone(),
        env,
        user: a.user.clone(),
        workdir: a.workdir.clone(),
        tty,
        winsize,
    };
    let mut args = ctx.self_args();
    args.push("__exec".into());
    let detach = a.detach;
    let give_stdin = a.interactive && !tty && !detach;
    let mut h = crate::userns::spawn_helper(Path::new("/proc/self/exe"), &args, None, |cmd| {
        cmd.stdin(if give_stdin {
            Stdio::inherit()
        } else {
            Stdio::null()
        });
        if detach {
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
        }
    })?;
    let mut line = serde_json::to_string(&req)?;
    line.push('\n');
    h.sync
        .write_all(line.as_bytes())
        .map_err(|e| Exit::with(125, format!("sending the exec request: {e}")))?;
    let master = wait_started(&mut h.child, &h.sync)?;
    if detach {
        // The helper waits for the command on its own; it is reparented when we exit.
        std::mem::forget(h.child);
        return Ok(0);
    }
    forward_signals(h.child.id() as i32);
    if let Some(m) = master {
        let stdin_on = a.interactive;
        if relay(&m, &h.child, stdin_on, &keys)? == Outcome::Detached {
            let _ = send_tag(&h.sync, b'D', Some(m.as_raw_fd()));
            std::mem::forget(h.child);
            return Ok(0);
        }
    }
    let status = h
        .child
        .wait()
        .map_err(|e| Exit::with(125, format!("waiting for the exec session: {e}")))?;
    use std::os::unix::process::ExitStatusExt;
    Ok(status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(125))
}

/// Reads the helper's start-up messages: the pty master (with -t), then started or an
/// error with podman's exit code.
fn wait_started(child: &mut Child, sync: &UnixStream) -> anyhow::Result<Option<OwnedFd>> {
    let mut master = None;
    loop {
        match recv_tag(sync) {
            Ok(Some((b'T', fd))) => master = fd,
            Ok(Some((b'S', _))) => return Ok(master),
            Ok(Some((b'E', _))) => {
                let mut report = String::new();
                let _ = std::io::Read::read_to_string(&mut &*sync, &mut report);
                let _ = child.wait();
                let (code, msg) = report.split_once('\n').unwrap_or(("125", &report));
                return Err(Exit::with(code.trim().parse().unwrap_or(125), msg));
            }
            Ok(Some(_)) => continue,
            Ok(None) | Err(_) => {
                let status = child.wait().ok();
                return Err(Exit::with(
                    125,
                    format!("the exec helper exited before the command started ({status:?})"),
                ));
            }
        }
    }
}

static WINCH: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_winch(_: libc::c_int) {
    let fd = WINCH.load(Ordering::Relaxed);
    if fd >= 0 {
        // SAFETY: write is async-signal-safe; the pipe is non-blocking, so a full pipe
        // (a resize already pending) only drops this byte.
        unsafe {
            libc::write(fd, b"w".as_ptr().cast(), 1);
        }
    }
}

/// Signals we get go to the helper, which passes them to the command.
fn forward_signals(helper: i32) {
    crate::runtime::signal::forward_to(helper, crate::runtime::signal::FORWARDED);
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Exited,
    Detached,
}

/// Copies between our terminal and the pty master until the helper (and so the command)
/// exits or the user types the detach keys.
fn relay(master: &OwnedFd, helper: &Child, stdin_on: bool, keys: &[u8]) -> anyhow::Result<Outcome> {
    let stdin = std::io::stdin();
    let _raw = crate::monitor::client::RawGuard::enter(stdin_on);
    let (winch_r, winch_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)?;
    WINCH.store(winch_w.as_raw_fd(), Ordering::Relaxed);
    // SAFETY: the handler only writes to a pipe, which is async-signal-safe.
    unsafe {
        let _ = signal(Signal::SIGWINCH, SigHandler::Handler(on_winch));
    }
    let pidfd = pidfd_open(helper.id() as i32)
        .ok_or_else(|| Exit::with(125, "pidfd_open on the exec helper failed"))?;
    let mut out = std::io::stdout().lock();
    let mut stdin_open = stdin_on;
    let mut master_open = true;
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 1 << 15];
    let outcome = loop {
        let mut fds = vec![
            PollFd::new(pidfd.as_fd(), PollFlags::POLLIN),
            PollFd::new(winch_r.as_fd(), PollFlags::POLLIN),
        ];
        if master_open {
            fds.push(PollFd::new(master.as_fd(), PollFlags::POLLIN));
        }
        if stdin_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Exit::with(125, format!("poll: {e}"))),
            Ok(_) => {}
        }
        let ready: Vec<bool> = fds.iter().map(|f| f.any().unwrap_or(false)).collect();
        drop(fds);
        if ready[1] {
            let _ = nix::unistd::read(&winch_r, &mut buf);
            if let Some((r, c)) = get_winsize(&stdin).or_else(|| get_winsize(&std::io::stdout())) {
                set_winsize(master, r, c);
            }
        }
        let mut i = 2;
        if master_open {
            if ready[i] {
                match nix::unistd::read(master, &mut buf) {
                    Ok(n) if n > 0 => {
                        let _ = out.write_all(&buf[..n]);
                        let _ = out.flush();
                    }
                    Err(nix::errno::Errno::EINTR) | Err(nix::errno::Errno::EAGAIN) => {}
                    _ => master_open = false,
                }
            }
            i += 1;
        }
        if stdin_open && ready[i] {
            match nix::unistd::read(&stdin, &mut buf) {
                Ok(0) | Err(nix::errno::Errno::EBADF) => {
                    stdin_open = false;
                    // Like a user typing ctrl-d: the command sees end of input.
                    let _ = nix::unistd::write(master, &[4u8]);
                }
                Ok(n) => {
                    let (send, detach) = scan_keys(&mut pending, &buf[..n], keys);
                    let _ = write_all_fd(master, &send);
                    if detach {
                        break Outcome::Detached;
                    }
                }
                Err(_) => {}
            }
        }
        if ready[0] {
            break Outcome::Exited;
        }
    };
    if outcome == Outcome::Exited {
        drain(master, &mut out, &mut buf);
    }
    WINCH.store(-1, Ordering::Relaxed);
    Ok(outcome)
}

/// Reads what the command wrote before it exited.
fn drain(master: &OwnedFd, out: &mut impl Write, buf: &mut [u8]) {
    let _ = nix::fcntl::fcntl(
        master,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    );
    while let Ok(n) = nix::unistd::read(master, buf) {
        if n == 0 {
            break;
        }
        let _ = out.write_all(&buf[..n]);
    }
    let _ = out.flush();
}

fn write_all_fd(fd: &OwnedFd, mut data: &[u8]) -> nix::Result<()> {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Feeds input through the detach-key matcher: returns the bytes to pass on and whether
/// the whole sequence was typed. A partial match is held back until it completes or
/// breaks.
fn scan_keys(pending: &mut Vec<u8>, input: &[u8], keys: &[u8]) -> (Vec<u8>, bool) {
    if keys.is_empty() {
        return (input.to_vec(), false);
    }
    let mut send = Vec::with_capacity(input.len());
    for &b in input {
        pending.push(b);
        if pending.as_slice() == keys {
            return (send, true);
        }
        if !keys.starts_with(pending) {
            // Flush all but a suffix that could still start the sequence.
            let keep = if keys.starts_with(&[b]) { 1 } else { 0 };
            let cut = pending.len() - keep;
            send.extend(pending.drain(..cut));
        }
    }
    (send, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys_scan() {
        let keys = [16u8, 17];
        let mut p = Vec::new();
        assert_eq!(scan_keys(&mut p, b"ab", &keys), (b"ab".to_vec(), false));
        assert_eq!(scan_keys(&mut p, &[16], &keys), (vec![], false));
        assert_eq!(scan_keys(&mut p, b"x", &keys), (vec![16, b'x'], false));
        assert_eq!(scan_keys(&mut p, &[16, 16], &keys), (vec![16], false));
        assert_eq!(scan_keys(&mut p, &[17], &keys), (vec![], true));
    }
}
