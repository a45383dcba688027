//! The client side of attaching, used by foreground `run`, `start -a` and `attach`: the
//! monitor writes the container's output straight to our terminal; we only put the
//! terminal in raw mode, relay window sizes and signals, and wait for the outcome.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::termios;

use super::proto;
use crate::config::Paths;

/// How an attached session ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Exited(i32),
    Detached,
}

/// Errors of an attached session.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The container failed to start; carries podman's exit code.
    #[error("{message}")]
    Start { code: i32, message: String },
    #[error("container {0} has no attach socket: is it running?")]
    NotRunning(String),
    #[error("attaching to container {id}: {detail}")]
    Attach { id: String, detail: String },
    #[error("the monitor of container {0} exited unexpectedly: see `skiff logs {0}`")]
    Lost(String),
}

impl ClientError {
    pub fn exit_code(&self) -> i32 {
        match self {
            ClientError::Start { code, .. } => *code,
            _ => 125,
        }
    }
}

/// What the session forwards.
pub struct Session {
    /// The container has a terminal: ours goes raw and window sizes are relayed.
    pub tty: bool,
    /// Forward signals we receive to the container (podman's --sig-proxy).
    pub sig_proxy: bool,
    /// For messages.
    pub name: String,
}

/// Puts our terminal in raw mode and restores it on drop, whatever happens.
pub struct RawGuard {
    saved: Option<termios::Termios>,
}

impl RawGuard {
    /// Raw mode when `tty` is asked for and stdin is a terminal; a no-op guard otherwise.
    pub fn enter(tty: bool) -> RawGuard {
        let stdin = std::io::stdin();
        if !tty || !nix::unistd::isatty(stdin.as_fd()).unwrap_or(false) {
            return RawGuard { saved: None };
        }
        let Ok(saved) = termios::tcgetattr(stdin.as_fd()) else {
            return RawGuard { saved: None };
        };
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        let _ = termios::tcsetattr(stdin.as_fd(), termios::SetArg::TCSANOW, &raw);
        RawGuard { saved: Some(saved) }
    }
}

impl Drop for RawGuard {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            let _ = termios::tcsetattr(std::io::stdin().as_fd(), termios::SetArg::TCSANOW, t);
        }
    }
}

fn send_size(ctl: &mut UnixStream) {
    let size = crate::runtime::pty::get_winsize(&std::io::stdout())
        .or_else(|| crate::runtime::pty::get_winsize(&std::io::stdin()));
    if let Some((rows, cols)) = size {
        let _ = ctl.write_all(proto::Command::Resize(rows, cols).line().as_bytes());
    }
}

/// Connects to a running container's attach socket, handing over our stdio.
pub fn connect(
    paths: &Paths,
    id: &str,
    name: &str,
    hello: &proto::Hello,
) -> Result<UnixStream, ClientError> {
    let path = super::attach_socket(paths, id);
    let sock = UnixStream::connect(&path).map_err(|_| ClientError::NotRunning(name.to_string()))?;
    crate::runtime::fdpass::send_fds(sock.as_fd(), hello.line().as_bytes(), &[0, 1, 2]).map_err(
        |e| ClientError::Attach {
            id: name.to_string(),
            detail: e.to_string(),
        },
    )?;
    Ok(sock)
}

/// Waits on a control channel until the container exits or we detach.
pub fn wait(ctl: UnixStream, s: &Session) -> Result<Outcome, ClientError> {
    let mut set = SigSet::empty();
    for sig in [
        Signal::SIGWINCH,
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
    ] {
        set.add(sig);
    }
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None);
    let sigfd = SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC).ok();
    let _raw = RawGuard::enter(s.tty);
    let mut writer = ctl.try_clone().map_err(|e| ClientError::Attach {
        id: s.name.clone(),
        detail: e.to_string(),
    })?;
    if s.tty {
        send_size(&mut writer);
    }
    let mut reader = BufReader::new(ctl);
    loop {
        let mut fds = vec![PollFd::new(reader.get_ref().as_fd(), PollFlags::POLLIN)];
        if let Some(sf) = &sigfd {
            fds.push(PollFd::new(sf.as_fd(), PollFlags::POLLIN));
        }
        if let Err(e) = poll(&mut fds, PollTimeout::NONE) {
            if e == nix::errno::Errno::EINTR {
                continue;
            }
        }
        let ctl_ready = fds[0].revents().is_some_and(|r| !r.is_empty());
        let sig_ready = fds
            .get(1)
            .and_then(|f| f.revents())
            .is_some_and(|r| !r.is_empty());
        drop(fds);
        if sig_ready {
            if let Some(sf) = &sigfd {
                while let Ok(Some(info)) = sf.read_signal() {
                    let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else {
                        continue;
                    };
                    if sig == Signal::SIGWINCH {
                        if s.tty {
                            send_size(&mut writer);
                        }
                    } else if s.sig_proxy {
                        let _ = writer.write_all(proto::Command::Signal(sig).line().as_bytes());
                    }
                }
            }
        }
        if ctl_ready {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return Err(ClientError::Lost(s.name.clone())),
                Ok(_) => {}
            }
            let mut w = line.trim_end().splitn(3, ' ');
            match w.next() {
                Some("exit") => {
                    return Ok(Outcome::Exited(
                        w.next().and_then(|c| c.parse().ok()).unwrap_or(125),
                    ))
                }
                Some("detached") => return Ok(Outcome::Detached),
                Some("error") => {
                    let code = w.next().and_then(|c| c.parse().ok()).unwrap_or(125);
                    return Err(ClientError::Start {
                        code,
                        message: w.next().unwrap_or("start-up failed").to_string(),
                    });
                }
                _ => {}
            }
        }
    }
}

/// Prints nothing for a clean exit; a detach leaves a newline like podman so the
/// prompt starts on its own line.
pub fn finish(outcome: &Outcome) -> i32 {
    match outcome {
        Outcome::Exited(c) => *c,
        Outcome::Detached => {
            let _ = std::io::stdout().write_all(b"\n");
            let _ = std::io::stdout().as_raw_fd();
            0
        }
    }
}
