//! The monitor's event loop: one poll over the container's output, the attach listener,
//! attached clients and a signalfd. Clients hand the monitor their own terminal fds, so
//! output goes straight to them, and a client that dies only detaches.

use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::sys::signalfd::SignalFd;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::logfile::{LogWriter, Stream};
use super::proto;

/// One attached client: its control socket and its own stdio.
pub struct Client {
    pub ctl: UnixStream,
    pub stdin: Option<OwnedFd>,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    keys: Vec<u8>,
    matched: usize,
    ctl_buf: Vec<u8>,
}

impl Client {
    pub fn new(ctl: UnixStream, fds: Vec<OwnedFd>, hello: &proto::Hello) -> Option<Client> {
        let mut it = fds.into_iter();
        let stdin = it.next()?;
        let stdout = it.next()?;
        let stderr = it.next()?;
        Some(Client {
            ctl,
            stdin: hello.stdin.then_some(stdin),
            stdout,
            stderr,
            keys: hello.detach_keys.clone(),
            matched: 0,
            ctl_buf: Vec::new(),
        })
    }

    /// Sends a control line; false if the client is gone.
    pub fn send(&mut self, line: &str) -> bool {
        self.ctl.write_all(line.as_bytes()).is_ok()
    }

    /// Writes a message of the monitor's own to the client's stderr.
    pub fn write_err(&mut self, data: &[u8]) -> bool {
        write_all_fd(self.stderr.as_fd(), data)
    }

    fn write_out(&mut self, stream: Stream, data: &[u8]) -> bool {
        let fd = match stream {
            Stream::Stdout => &self.stdout,
            Stream::Stderr => &self.stderr,
        };
        write_all_fd(fd.as_fd(), data)
    }
}

fn write_all_fd(fd: BorrowedFd, mut data: &[u8]) -> bool {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(0) => return false,
            Ok(n) => data = &data[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(nix::errno::Errno::EAGAIN) => std::thread::sleep(Duration::from_millis(5)),
            Err(_) => return false,
        }
    }
    true
}

/// The container's side of the streams for one run of the container.
pub struct ContainerStreams {
    pub out: Option<OwnedFd>,
    pub err: Option<OwnedFd>,
    /// Where client input goes: the stdin pipe, or the pty master.
    pub input: Option<OwnedFd>,
    pub tty: bool,
}

/// What ended the loop.
pub struct Exit {
    pub code: i32,
}

/// State that lives across restarts of the container.
pub struct Io {
    pub clients: Vec<Client>,
    pub listener: Option<UnixListener>,
    pub log: Option<LogWriter>,
    pub sigfd: SignalFd,
    /// Signal sent by a graceful stop (the container's stop signal).
    pub stop_signal: Signal,
    pub stop_timeout: Duration,
    /// A stop was asked of the monitor itself (SIGTERM from systemd or the user).
    pub stop_requested: bool,
    /// Published ports (src/network/relay.rs), served from this loop.
    pub ports: Option<crate::network::relay::Relay>,
    /// The user-mode networks of the current run (src/network/stack.rs): tap0's, or
    /// one per user-defined network (the container's eth0, eth1, ...).
    pub net: Vec<super::netplug::Link>,
    /// What `network connect` needs to add an interface to the current run.
    pub plug: Option<super::netplug::Plug>,
}

const BUF: usize = 32 * 1024;

impl Io {
    /// Runs until the container's init has exited and its output is drained.
    pub fn run(&mut self, pid: Pid, s: &mut ContainerStreams) -> Exit {
        let mut buf = vec![0u8; BUF];
        let mut code: Option<i32> = None;
        let mut kill_at: Option<Instant> = None;
        let mut drain_until: Option<Instant> = None;
        loop {
            if code.is_some() && s.out.is_none() && s.err.is_none() {
                // Relayed connections still carry what the container wrote before it
                // exited: let them finish (within the drain time), accepting no more.
                let relaying = self.ports.as_mut().is_some_and(|p| {
                    p.quiesce();
                    p.busy()
                });
                if !relaying {
                    break;
                }
            }
            if let (Some(c), Some(d)) = (code, drain_until) {
                if Instant::now() >= d {
                    // Output still held open by an escaped process: stop waiting.
                    return Exit { code: c };
                }
            }
            if let Some(k) = kill_at {
                if Instant::now() >= k && code.is_none() {
                    tracing::debug!(%pid, "stop timeout: SIGKILL");
                    let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
                    kill_at = None;
                }
            }
            let mut fds: Vec<PollFd> = Vec::new();
            let mut kinds: Vec<Kind> = Vec::new();
            fds.push(PollFd::new(self.sigfd.as_fd(), PollFlags::POLLIN));
            kinds.push(Kind::Signal);
            if let Some(o) = &s.out {
                fds.push(PollFd::new(o.as_fd(), PollFlags::POLLIN));
                kinds.push(Kind::Out(Stream::Stdout));
            }
            if let Some(e) = &s.err {
                fds.push(PollFd::new(e.as_fd(), PollFlags::POLLIN));
                kinds.push(Kind::Out(Stream::Stderr));
            }
            if let Some(l) = &self.listener {
                fds.push(PollFd::new(l.as_fd(), PollFlags::POLLIN));
                kinds.push(Kind::Listener);
            }
            if let Some(p) = &self.ports {
                fds.push(PollFd::new(p.fd(), PollFlags::POLLIN));
                kinds.push(Kind::Ports);
            }
            for (i, n) in self.net.iter().enumerate() {
                fds.push(PollFd::new(n.stack.fd(), PollFlags::POLLIN));
                kinds.push(Kind::Net(i));
            }
            for (i, c) in self.clients.iter().enumerate() {
                fds.push(PollFd::new(c.ctl.as_fd(), PollFlags::POLLIN));
                kinds.push(Kind::Ctl(i));
                if let (Some(inp), Some(_)) = (&c.stdin, &s.input) {
                    fds.push(PollFd::new(inp.as_fd(), PollFlags::POLLIN));
                    kinds.push(Kind::Stdin(i));
                }
            }
            let ports_at = self.ports.as_ref().and_then(|p| p.deadline());
            let net_at = self.net.iter().filter_map(|n| n.stack.deadline()).min();
            let timeout = [kill_at, drain_until, ports_at, net_at]
                .into_iter()
                .flatten()
                // poll takes at most u16::MAX ms here: wake at least once a minute and
                // look again rather than wrap around.
                .map(|t| {
                    let ms = t.saturating_duration_since(Instant::now()).as_millis();
                    ms.min(60_000) as u16 + 1
                })
                .min()
                .map(PollTimeout::from)
                .unwrap_or(PollTimeout::NONE);
            match poll(&mut fds, timeout) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
            let ready: Vec<(Kind, bool)> = fds
                .iter()
                .zip(kinds.iter())
                .filter_map(|(f, k)| {
                    let r = f.revents().unwrap_or(PollFlags::empty());
                    (!r.is_empty()).then_some((*k, r.contains(PollFlags::POLLIN)))
                })
                .collect();
            drop(fds);
            if let Some(p) = self.ports.as_mut() {
                p.tick();
            }
            for n in self.net.iter_mut() {
                n.stack.tick();
            }
            let mut dead_clients = Vec::new();
            for (kind, readable) in ready {
                match kind {
                    Kind::Signal => {
                        while let Ok(Some(info)) = self.sigfd.read_signal() {
                            let sig = info.ssi_signo as i32;
                            if sig == libc::SIGCHLD {
                                if let Some(c) = reap(pid) {
                                    code = Some(c);
                                    drain_until = Some(Instant::now() + Duration::from_secs(2));
                                }
                            } else if code.is_none() {
                                // The monitor itself was asked to stop: stop the container
                                // gracefully, as `skiff stop` would.
                                self.stop_requested = true;
                                let _ = nix::sys::signal::kill(pid, self.stop_signal);
                                kill_at = Some(Instant::now() + self.stop_timeout);
                            }
                        }
                    }
                    Kind::Out(stream) => {
                        let fd = match stream {
                            Stream::Stdout => &mut s.out,
                            Stream::Stderr => &mut s.err,
                        };
                        let n = match fd.as_ref().map(|f| nix::unistd::read(f, &mut buf)) {
                            Some(Ok(n)) => n,
                            Some(Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN)) => {
                                continue
                            }
                            _ => 0,
                        };
                        if n == 0 {
                            // EOF, or EIO on a pty whose slave side is gone.
                            *fd = None;
                            if s.tty {
                                s.input = None;
                            }
                            continue;
                        }
                        let data = &buf[..n];
                        if let Some(l) = self.log.as_mut() {
                            l.write(stream, data);
                        }
                        for (i, c) in self.clients.iter_mut().enumerate() {
                            if !c.write_out(stream, data) {
                                dead_clients.push(i);
                            }
                        }
                    }
                    Kind::Listener => self.accept(),
                    Kind::Ports => {
                        if let Some(p) = self.ports.as_mut() {
                            p.service();
                        }
                    }
                    Kind::Net(i) => {
                        if let Some(n) = self.net.get_mut(i) {
                            n.stack.service();
                        }
                    }
                    Kind::Ctl(i) => {
                        if !self.client_ctl(i, pid, s.input.as_ref()) {
                            dead_clients.push(i);
                        }
                    }
                    Kind::Stdin(i) if readable || s.input.is_some() => {
                        if let Some(detach) = self.client_stdin(i, &mut buf, s) {
                            if detach {
                                let c = &mut self.clients[i];
                                c.send(proto::DETACHED);
                                dead_clients.push(i);
                            }
                        }
                    }
                    Kind::Stdin(_) => {}
                }
            }
            dead_clients.sort_unstable();
            dead_clients.dedup();
            for i in dead_clients.into_iter().rev() {
                self.clients.remove(i);
            }
        }
        Exit {
            code: code.unwrap_or(125),
        }
    }

    fn accept(&mut self) {
        let Some(l) = &self.listener else { return };
        let Ok((sock, _)) = l.accept() else { return };
        let _ = sock.set_read_timeout(Some(Duration::from_secs(5)));
        let mut b = [0u8; 512];
        let Ok((n, fds)) = crate::runtime::fdpass::recv_fds(sock.as_fd(), &mut b) else {
            return;
        };
        let _ = sock.set_read_timeout(None);
        if let Some(req) = super::netplug::Request::parse(&b[..n]) {
            let mut sock = sock;
            let answer = match super::netplug::handle(&mut self.net, self.plug.as_ref(), &req) {
                Ok(()) => proto::OK.to_string(),
                Err(e) => proto::error_line(125, &e),
            };
            let _ = sock.write_all(answer.as_bytes());
            return;
        }
        let Some(hello) = proto::Hello::parse(&b[..n]) else {
            return;
        };
        if let Some(mut c) = Client::new(sock, fds, &hello) {
            if c.send(proto::OK) {
                self.clients.push(c);
            }
        }
    }

    /// Handles control input from a client; false when it is gone.
    fn client_ctl(&mut self, i: usize, pid: Pid, input: Option<&OwnedFd>) -> bool {
        let c = &mut self.clients[i];
        let mut b = [0u8; 256];
        let n = match c.ctl.read(&mut b) {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        c.ctl_buf.extend_from_slice(&b[..n]);
        while let Some(pos) = c.ctl_buf.iter().position(|x| *x == b'\n') {
            let line: Vec<u8> = c.ctl_buf.drain(..=pos).collect();
            match proto::Command::parse(&line) {
                Some(proto::Command::Signal(sig)) => {
                    let _ = nix::sys::signal::kill(pid, sig);
                }
                Some(proto::Command::Resize(rows, cols)) => {
                    if let Some(m) = input {
                        crate::runtime::pty::set_winsize(m, rows, cols);
                    }
                }
                None => {}
            }
        }
        true
    }

    /// Moves a client's keystrokes to the container. Some(true) when the detach keys
    /// were typed.
    fn client_stdin(&mut self, i: usize, buf: &mut [u8], s: &mut ContainerStreams) -> Option<bool> {
        let c = &mut self.clients[i];
        let inp = c.stdin.as_ref()?;
        let n = match nix::unistd::read(inp, buf) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => return None,
            Err(_) => 0,
        };
        if n == 0 {
            // The client's input ended: without a terminal, so does the container's.
            c.stdin = None;
            if !s.tty {
                s.input = None;
            }
            return Some(false);
        }
        let mut out = Vec::with_capacity(n);
        for &byte in &buf[..n] {
            if !c.keys.is_empty() && byte == c.keys[c.matched] {
                c.matched += 1;
                if c.matched == c.keys.len() {
                    return Some(true);
                }
                continue;
            }
            // A partial match that broke off is passed through after all.
            out.extend_from_slice(&c.keys[..c.matched]);
            c.matched = 0;
            out.push(byte);
        }
        if let Some(target) = &s.input {
            if !write_all_fd(target.as_fd(), &out) {
                s.input = None;
            }
        }
        Some(false)
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Signal,
    Out(Stream),
    Listener,
    Ports,
    Net(usize),
    Ctl(usize),
    Stdin(usize),
}

/// Collects the container init's status if it exited (reaping any other child too).
fn reap(pid: Pid) -> Option<i32> {
    let mut code = None;
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(p, c)) if p == pid => code = Some(c),
            Ok(WaitStatus::Signaled(p, sig, _)) if p == pid => code = Some(128 + sig as i32),
            Ok(WaitStatus::StillAlive) | Err(_) => return code,
            Ok(_) => {}
        }
    }
}
