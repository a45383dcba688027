//! One relayed TCP connection: the host client's socket and the socket the connector
//! opened inside the container, with bytes moved each way by splice(2) through a pipe
//! (socket → pipe → socket, no copy through user memory). Pipes come from a small pool
//! and go back to it whenever they are empty, so an idle connection holds none and the
//! kernel memory a connection can pin is one pipe per direction.
//!
//! A FIN from one side becomes shutdown(SHUT_WR) on the other once the data before it
//! is through; a reset from one side (ECONNRESET/EPIPE) becomes a reset on the other
//! (close with SO_LINGER 0).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{splice, SpliceFFlags};
use nix::sys::socket::{setsockopt, shutdown, sockopt, Shutdown};

/// Pipes this large (the unprivileged maximum by default) move more per splice; only
/// the first few pipes get it, so a flood of connections pins at most the default 64 KiB
/// per direction each.
const BIG_PIPE: usize = 1 << 20;
const BIG_PIPES: usize = 8;
const DEFAULT_PIPE: usize = 64 << 10;
/// Free pipes kept for reuse.
const POOL_KEEP: usize = 16;
/// Splice rounds per direction per wake-up, so one busy connection cannot starve others.
const ROUNDS: usize = 8;

pub(super) struct Pipe {
    r: OwnedFd,
    w: OwnedFd,
    cap: usize,
    big: bool,
}

/// Empty pipes waiting for a direction with data to move.
#[derive(Default)]
pub(super) struct PipePool {
    free: Vec<Pipe>,
    big_live: usize,
}

impl PipePool {
    fn take(&mut self) -> Option<Pipe> {
        if let Some(p) = self.free.pop() {
            return Some(p);
        }
        let (r, w) = match nix::unistd::pipe2(
            nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK,
        ) {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(error = %e, "pipe2 for a published port");
                return None;
            }
        };
        let mut cap = DEFAULT_PIPE;
        let mut big = false;
        if self.big_live < BIG_PIPES {
            // Refused once the user's pipe pages are over the soft limit: keep the default.
            if let Ok(n) = nix::fcntl::fcntl(&w, nix::fcntl::FcntlArg::F_SETPIPE_SZ(BIG_PIPE as _))
            {
                cap = n as usize;
                big = true;
                self.big_live += 1;
            }
        }
        Some(Pipe { r, w, cap, big })
    }

    fn give(&mut self, p: Pipe) {
        if self.free.len() < POOL_KEEP {
            self.free.push(p);
        } else if p.big {
            self.big_live -= 1;
        }
    }

    /// Drops every free pipe (when the container stops).
    pub fn clear(&mut self) {
        for p in self.free.drain(..) {
            if p.big {
                self.big_live -= 1;
            }
        }
    }
}

/// One direction of a connection.
#[derive(Default)]
struct Dir {
    pipe: Option<Pipe>,
    in_pipe: usize,
    /// The source sent FIN.
    eof: bool,
    /// The FIN was passed on (shutdown of the destination's write side).
    shut: bool,
    /// Waiting for the destination to take more (else: for the source to send).
    wait_dst: bool,
}

/// Which side of a direction failed.
enum Fail {
    Src,
    Dst,
}

impl Dir {
    fn done(&self) -> bool {
        self.eof && self.in_pipe == 0 && self.shut
    }

    fn pump(&mut self, src: BorrowedFd, dst: BorrowedFd, pool: &mut PipePool) -> Result<(), Fail> {
        let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
        self.wait_dst = false;
        for _ in 0..ROUNDS {
            if self.in_pipe > 0 {
                let Some(p) = &self.pipe else {
                    return Err(Fail::Dst);
                };
                match splice(&p.r, None, dst, None, self.in_pipe, flags) {
                    Ok(n) => self.in_pipe -= n.min(self.in_pipe),
                    Err(Errno::EINTR) => continue,
                    Err(Errno::EAGAIN) => {
                        self.wait_dst = true;
                        return Ok(());
                    }
                    Err(_) => return Err(Fail::Dst),
                }
                if self.in_pipe == 0 {
                    if let Some(p) = self.pipe.take() {
                        pool.give(p);
                    }
                }
                continue;
            }
            if self.eof {
                if !self.shut {
                    self.shut = true;
                    tracing::debug!(fd = dst.as_raw_fd(), "shutdown(SHUT_WR): peer sent FIN");
                    if shutdown(dst.as_raw_fd(), Shutdown::Write).is_err() {
                        return Err(Fail::Dst);
                    }
                }
                return Ok(());
            }
            let p = match self.pipe.take().or_else(|| pool.take()) {
                Some(p) => p,
                // Out of pipes (descriptors): try again on the next wake-up.
                None => return Ok(()),
            };
            let res = splice(src, None, &p.w, None, p.cap, flags);
            match res {
                Ok(0) => {
                    self.eof = true;
                    pool.give(p);
                }
                Ok(n) => {
                    self.in_pipe = n;
                    self.pipe = Some(p);
                }
                Err(Errno::EINTR) => pool.give(p),
                Err(Errno::EAGAIN) => {
                    pool.give(p);
                    return Ok(());
                }
                Err(_) => {
                    pool.give(p);
                    return Err(Fail::Src);
                }
            }
        }
        Ok(())
    }
}

/// What a connection needs next.
pub(super) enum Status {
    Alive,
    /// Both directions ended cleanly: close both sockets.
    Finished,
    /// The client reset (or failed): reset the container side.
    ClientFailed,
    /// The container side reset (or refused): reset the client.
    InnerFailed,
}

pub(super) struct Conn {
    pub client: OwnedFd,
    /// The container side, once the connector delivered it.
    pub inner: Option<OwnedFd>,
    /// The container side's connect is still in progress.
    pub connecting: bool,
    up: Dir,
    down: Dir,
    /// Events registered with epoll for each socket (None: not registered).
    pub client_reg: Option<u32>,
    pub inner_reg: Option<u32>,
    pub generation: u32,
    /// The container port to connect to.
    pub port: u16,
    /// Counted among the connects in flight (asked of the connector, not yet done).
    pub in_flight: bool,
}

impl Conn {
    pub fn new(client: OwnedFd, generation: u32, port: u16) -> Conn {
        Conn {
            client,
            inner: None,
            connecting: false,
            up: Dir::default(),
            down: Dir::default(),
            client_reg: None,
            inner_reg: None,
            generation,
            port,
            in_flight: false,
        }
    }

    /// Still waiting for the container side: not asked yet, or connecting.
    pub fn pending(&self) -> bool {
        self.inner.is_none() || self.connecting
    }

    /// Moves what can move now in both directions.
    pub fn service(&mut self, pool: &mut PipePool) -> Status {
        let Some(inner) = &self.inner else {
            return Status::Alive;
        };
        if self.connecting {
            // Connected once it has a peer; SO_ERROR alone is 0 while the SYN is out.
            let peer = nix::sys::socket::getpeername::<nix::sys::socket::SockaddrStorage>(
                inner.as_raw_fd(),
            );
            match (
                peer,
                nix::sys::socket::getsockopt(inner, sockopt::SocketError),
            ) {
                (Ok(_), _) => self.connecting = false,
                (Err(Errno::ENOTCONN), Ok(0)) => return Status::Alive,
                _ => return Status::InnerFailed,
            }
        }
        let (c, i) = (self.client.as_fd(), inner.as_fd());
        if !self.up.done() {
            match self.up.pump(c, i, pool) {
                Ok(()) => {}
                Err(Fail::Src) => return Status::ClientFailed,
                Err(Fail::Dst) => return Status::InnerFailed,
            }
        }
        if !self.down.done() {
            match self.down.pump(i, c, pool) {
                Ok(()) => {}
                Err(Fail::Src) => return Status::InnerFailed,
                Err(Fail::Dst) => return Status::ClientFailed,
            }
        }
        if self.up.done() && self.down.done() {
            Status::Finished
        } else {
            Status::Alive
        }
    }

    /// The epoll events wanted on (client, inner) now; 0 means none.
    pub fn wanted(&self) -> (u32, u32) {
        if self.inner.is_none() {
            return (0, 0);
        }
        if self.connecting {
            return (0, libc::EPOLLOUT as u32);
        }
        let (mut c, mut i) = (0u32, 0u32);
        let want = |d: &Dir| -> (bool, bool) {
            if d.done() {
                (false, false)
            } else if d.in_pipe > 0 || d.wait_dst {
                (false, true)
            } else if !d.eof {
                (true, false)
            } else {
                (false, false)
            }
        };
        let (read_c, write_i) = want(&self.up);
        let (read_i, write_c) = want(&self.down);
        if read_c {
            c |= libc::EPOLLIN as u32;
        }
        if write_c {
            c |= libc::EPOLLOUT as u32;
        }
        if read_i {
            i |= libc::EPOLLIN as u32;
        }
        if write_i {
            i |= libc::EPOLLOUT as u32;
        }
        (c, i)
    }

    /// Pipes still holding data go back to the pool only when empty; drop the rest.
    pub fn release(&mut self, pool: &mut PipePool) {
        for d in [&mut self.up, &mut self.down] {
            if let Some(p) = d.pipe.take() {
                if p.big {
                    pool.big_live = pool.big_live.saturating_sub(1);
                }
            }
        }
    }
}

/// Closes a socket with a reset (SO_LINGER 0), so its peer sees ECONNRESET rather than
/// an orderly end.
pub(super) fn reset(fd: OwnedFd) {
    let _ = setsockopt(
        &fd,
        sockopt::Linger,
        &libc::linger {
            l_onoff: 1,
            l_linger: 0,
        },
    );
    drop(fd);
}

/// Socket options for both ends of a relayed connection: no Nagle delay (the relay
/// adds none of its own).
pub(super) fn tune(fd: &OwnedFd) {
    let _ = setsockopt(fd, sockopt::TcpNoDelay, &true);
}
