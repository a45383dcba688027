//! The monitor's port relay: host listeners for a container's published ports, bound
//! before the container starts (so a taken or privileged port fails the start) and kept
//! for the monitor's life (a restart under --restart keeps them), plus every relayed
//! connection. It runs inside the monitor's poll loop through one epoll descriptor:
//! level-triggered, non-blocking, each wake-up bounded.
//!
//! While no container runs (before the start, between restarts) the listeners are not
//! polled: clients wait in the kernel's backlog rather than being refused.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::socket::{accept4, sockopt, SockFlag};

use super::connector::{self, Connector};
use super::listen::{bind_one, raise_nofile};
pub(super) use super::listen::{Listener, Sock};
use super::portspec::{PortMapping, Protocol};
use super::relay_conn::{self, Conn, PipePool, Status};
use super::relay_udp::{self, Flow};
use super::NetworkError;

/// The most relayed TCP connections at once; more are refused (reset) with a debug log.
const MAX_CONNS: usize = 4096;
/// Connects in flight to the container at once: a burst of clients must not overflow
/// the SYN queue of a server with a small backlog (its SYN cookies then fail and it
/// resets); later clients wait their turn.
const MAX_CONNECTING: usize = 64;
/// Connections accepted per listener per wake-up.
const ACCEPT_BATCH: usize = 64;
/// Sweep idle UDP flows this often.
pub(super) const SWEEP: Duration = Duration::from_secs(15);

const K_LISTENER: u64 = 1;
const K_CONNECTOR: u64 = 2;
const K_CLIENT: u64 = 3;
const K_INNER: u64 = 4;
pub(super) const K_FLOW: u64 = 5;

pub(super) fn key(kind: u64, generation: u32, idx: usize) -> u64 {
    (kind << 56) | ((u64::from(generation) & 0xff_ffff) << 32) | (idx as u64 & 0xffff_ffff)
}

pub(super) fn unkey(k: u64) -> (u64, u32, usize) {
    (
        k >> 56,
        ((k >> 32) & 0xff_ffff) as u32,
        (k & 0xffff_ffff) as usize,
    )
}

/// Connector request tokens: bit 31 marks UDP, bits 16..31 a generation, 0..16 the slot.
pub(super) fn token(udp: bool, generation: u32, idx: usize) -> u32 {
    (u32::from(udp) << 31) | ((generation & 0x7fff) << 16) | (idx as u32 & 0xffff)
}

/// A slab of slots, reused through a free list.
pub(super) struct Slab<T> {
    pub(super) slots: Vec<Option<T>>,
    free: Vec<usize>,
    pub(super) live: usize,
}

impl<T> Slab<T> {
    pub(super) fn new() -> Slab<T> {
        Slab {
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
        }
    }
    pub(super) fn insert(&mut self, v: T) -> usize {
        self.live += 1;
        if let Some(i) = self.free.pop() {
            self.slots[i] = Some(v);
            i
        } else {
            self.slots.push(Some(v));
            self.slots.len() - 1
        }
    }
    pub(super) fn remove(&mut self, i: usize) -> Option<T> {
        let v = self.slots.get_mut(i)?.take();
        if v.is_some() {
            self.live -= 1;
            self.free.push(i);
        }
        v
    }
    pub(super) fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        self.slots.get_mut(i)?.as_mut()
    }
    fn drain(&mut self) -> Vec<T> {
        self.free.clear();
        self.live = 0;
        self.slots.drain(..).flatten().collect()
    }
}

/// Published ports of one container, for the monitor's whole life.
pub struct Relay {
    pub(super) epoll: Epoll,
    pub(super) listeners: Vec<Listener>,
    pub(super) connector: Option<Connector>,
    /// Requests the connector socket could not take yet.
    backlog: VecDeque<[u8; connector::REQUEST_LEN]>,
    connector_out: bool,
    conns: Slab<Conn>,
    /// Connects asked of the connector and not yet done.
    in_flight: usize,
    /// Accepted clients waiting for a connect slot: (slot, generation).
    waiting: VecDeque<(usize, u32)>,
    pub(super) flows: Slab<Flow>,
    pub(super) flow_index: HashMap<(usize, SocketAddr), usize>,
    pub(super) pending_bytes: usize,
    pool: PipePool,
    generation: u32,
    max_conns: usize,
    pub(super) udp_buf: Vec<u8>,
    pub(super) next_sweep: Option<Instant>,
}

impl Relay {
    /// Binds every published port; any failure closes what was bound and names the port.
    pub fn bind(ports: &[PortMapping]) -> Result<Relay, NetworkError> {
        let epoll =
            Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(|source| NetworkError::Socket {
                addr: String::new(),
                proto: String::new(),
                call: "epoll_create",
                source,
            })?;
        let mut listeners = Vec::with_capacity(ports.len());
        for m in ports {
            listeners.push(Listener {
                sock: bind_one(m)?,
                mapping: *m,
            });
        }
        let nofile = raise_nofile();
        let reserve = 256 + listeners.len() + relay_udp::MAX_FLOWS;
        // Each connection: two sockets and, while data is stuck, two pipes.
        let max_conns = MAX_CONNS.min(nofile.saturating_sub(reserve as u64) as usize / 6);
        tracing::debug!(ports = ports.len(), max_conns, "published ports bound");
        Ok(Relay {
            epoll,
            listeners,
            connector: None,
            backlog: VecDeque::new(),
            connector_out: false,
            conns: Slab::new(),
            in_flight: 0,
            waiting: VecDeque::new(),
            flows: Slab::new(),
            flow_index: HashMap::new(),
            pending_bytes: 0,
            pool: PipePool::default(),
            generation: 0,
            max_conns: max_conns.max(1),
            udp_buf: Vec::new(),
            next_sweep: None,
        })
    }

    /// The descriptor the monitor polls for readability.
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.epoll.0.as_fd()
    }

    /// When `tick` wants to run next.
    pub fn deadline(&self) -> Option<Instant> {
        self.next_sweep
    }

    /// Starts serving through a connector in the (new) container's namespaces.
    pub fn attach(&mut self, c: Connector) {
        let _ = nix::fcntl::fcntl(
            &c.sock,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        );
        let ev = EpollEvent::new(EpollFlags::EPOLLIN, key(K_CONNECTOR, 0, 0));
        if let Err(e) = self.epoll.add(&c.sock, ev) {
            tracing::debug!(error = %e, "epoll add connector");
        }
        self.connector = Some(c);
        self.connector_out = false;
        for (i, l) in self.listeners.iter().enumerate() {
            let ev = EpollEvent::new(EpollFlags::EPOLLIN, key(K_LISTENER, 0, i));
            if let Err(e) = self.epoll.add(l.fd(), ev) {
                tracing::debug!(error = %e, port = l.mapping.host_port, "epoll add listener");
            }
        }
    }

    /// The container exited: accept nothing more and drop connections that never
    /// reached it, but let established ones deliver what the container sent.
    pub fn quiesce(&mut self) {
        for l in &self.listeners {
            let _ = self.epoll.delete(l.fd());
        }
        self.waiting.clear();
        let pending: Vec<usize> = (0..self.conns.slots.len())
            .filter(|i| matches!(&self.conns.slots[*i], Some(c) if c.pending()))
            .collect();
        for i in pending {
            self.finish(i, Status::InnerFailed);
        }
    }

    /// Connections are still being relayed.
    pub fn busy(&self) -> bool {
        self.conns.live > 0
    }

    /// The container is gone: drop its connections and connector, stop polling the
    /// listeners (they stay bound for a restart).
    pub fn detach(&mut self) {
        for l in &self.listeners {
            let _ = self.epoll.delete(l.fd());
        }
        for mut c in self.conns.drain() {
            c.release(&mut self.pool);
        }
        self.in_flight = 0;
        self.waiting.clear();
        self.flows.drain();
        self.flow_index.clear();
        self.pending_bytes = 0;
        self.backlog.clear();
        self.connector = None;
        self.pool.clear();
        self.next_sweep = None;
    }

    /// Handles whatever is ready; never blocks.
    pub fn service(&mut self) {
        let mut events = [EpollEvent::empty(); 128];
        let n = match self.epoll.wait(&mut events, EpollTimeout::ZERO) {
            Ok(n) => n,
            Err(_) => return,
        };
        for ev in &events[..n] {
            let (kind, generation, idx) = unkey(ev.data());
            let flags = ev.events();
            match kind {
                K_LISTENER => self.on_listener(idx),
                K_CONNECTOR => self.on_connector(flags),
                K_CLIENT | K_INNER => self.on_conn(idx, generation, kind == K_CLIENT, flags),
                K_FLOW => self.on_flow(idx, generation),
                _ => {}
            }
        }
    }

    pub(super) fn next_generation(&mut self) -> u32 {
        self.generation = (self.generation + 1) & 0x7fff;
        self.generation
    }

    fn on_listener(&mut self, idx: usize) {
        let Some(l) = self.listeners.get(idx) else {
            return;
        };
        match &l.sock {
            Sock::Tcp(t) => {
                let fd = t.as_raw_fd();
                let port = l.mapping.container_port;
                for _ in 0..ACCEPT_BATCH {
                    match accept4(fd, SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC) {
                        // SAFETY: accept4 returned a new descriptor that we now own.
                        Ok(c) => self.accepted(unsafe { OwnedFd::from_raw_fd(c) }, port),
                        Err(Errno::EINTR | Errno::ECONNABORTED) => continue,
                        Err(Errno::EAGAIN) => break,
                        Err(e) => {
                            tracing::debug!(error = %e, "accept on a published port");
                            break;
                        }
                    }
                }
            }
            Sock::Udp(_) => self.on_udp_listener(idx),
        }
    }

    fn accepted(&mut self, client: OwnedFd, port: u16) {
        if self.conns.live >= self.max_conns || self.connector.is_none() {
            tracing::debug!(
                max = self.max_conns,
                "published port: too many connections, refusing one"
            );
            relay_conn::reset(client);
            return;
        }
        relay_conn::tune(&client);
        let g = self.next_generation();
        let idx = self.conns.insert(Conn::new(client, g, port));
        if self.in_flight < MAX_CONNECTING {
            self.start_connect(idx);
        } else {
            self.waiting.push_back((idx, g));
        }
    }

    /// Asks the connector for the container side of a connection.
    fn start_connect(&mut self, idx: usize) {
        let Some(c) = self.conns.get_mut(idx) else {
            return;
        };
        c.in_flight = true;
        let req = connector::request(Protocol::Tcp, c.port, token(false, c.generation, idx));
        self.in_flight += 1;
        self.request(req);
    }

    /// A connect slot came free: start the next waiting client's.
    fn next_waiting(&mut self) {
        while self.in_flight < MAX_CONNECTING {
            let Some((idx, g)) = self.waiting.pop_front() else {
                return;
            };
            if matches!(self.conns.get_mut(idx), Some(c) if c.generation == g) {
                self.start_connect(idx);
            }
        }
    }

    /// Updates the connects-in-flight count once a connection's connect is done.
    fn settle(&mut self, idx: usize) {
        let Some(c) = self.conns.get_mut(idx) else {
            return;
        };
        if c.in_flight && !c.pending() {
            c.in_flight = false;
            self.in_flight = self.in_flight.saturating_sub(1);
            self.next_waiting();
        }
    }

    pub(super) fn request(&mut self, req: [u8; connector::REQUEST_LEN]) {
        if self.backlog.is_empty() && self.send_request(&req) {
            return;
        }
        self.backlog.push_back(req);
        self.want_connector_out(true);
    }

    fn send_request(&self, req: &[u8]) -> bool {
        let Some(c) = &self.connector else {
            return false;
        };
        let flags = nix::sys::socket::MsgFlags::MSG_DONTWAIT;
        nix::sys::socket::send(c.sock.as_raw_fd(), req, flags).is_ok()
    }

    fn want_connector_out(&mut self, on: bool) {
        if self.connector_out == on {
            return;
        }
        let Some(c) = &self.connector else { return };
        let mut f = EpollFlags::EPOLLIN;
        if on {
            f |= EpollFlags::EPOLLOUT;
        }
        let mut ev = EpollEvent::new(f, key(K_CONNECTOR, 0, 0));
        if self.epoll.modify(&c.sock, &mut ev).is_ok() {
            self.connector_out = on;
        }
    }

    fn on_connector(&mut self, flags: EpollFlags) {
        if flags.contains(EpollFlags::EPOLLOUT) {
            while let Some(req) = self.backlog.front().copied() {
                if !self.send_request(&req) {
                    break;
                }
                self.backlog.pop_front();
            }
            if self.backlog.is_empty() {
                self.want_connector_out(false);
            }
        }
        let mut buf = [0u8; 16];
        loop {
            let Some(c) = &self.connector else { return };
            match crate::runtime::fdpass::recv_fds(c.sock.as_fd(), &mut buf) {
                Ok((0, _)) => {
                    tracing::warn!(
                        "the port connector of the container exited: published ports stop working"
                    );
                    self.connector_lost();
                    return;
                }
                Ok((n, mut fds)) => {
                    let Some((tok, errno)) = connector::parse_reply(&buf[..n]) else {
                        continue;
                    };
                    self.delivered(tok, errno, fds.pop());
                }
                Err(Errno::EINTR) => continue,
                Err(_) => return,
            }
        }
    }

    fn connector_lost(&mut self) {
        if let Some(c) = self.connector.take() {
            let _ = self.epoll.delete(&c.sock);
        }
        let waiting: Vec<usize> = (0..self.conns.slots.len())
            .filter(|i| matches!(&self.conns.slots[*i], Some(c) if c.inner.is_none()))
            .collect();
        for i in waiting {
            if let Some(c) = self.conns.remove(i) {
                relay_conn::reset(c.client);
            }
        }
        self.in_flight = 0;
        self.waiting.clear();
    }

    fn delivered(&mut self, tok: u32, errno: i32, fd: Option<OwnedFd>) {
        let udp = tok >> 31 == 1;
        let generation = (tok >> 16) & 0x7fff;
        let idx = (tok & 0xffff) as usize;
        if udp {
            self.flow_delivered(idx, generation, errno, fd);
            return;
        }
        let ok = matches!(self.conns.get_mut(idx), Some(c) if c.generation == generation);
        if !ok {
            return;
        }
        let fd = match fd {
            Some(fd) if errno == 0 || errno == libc::EINPROGRESS => fd,
            _ => {
                tracing::debug!(
                    errno,
                    "published port: connecting inside the container failed"
                );
                self.finish(idx, Status::InnerFailed);
                return;
            }
        };
        relay_conn::tune(&fd);
        if let Some(c) = self.conns.get_mut(idx) {
            c.inner = Some(fd);
            c.connecting = errno == libc::EINPROGRESS;
        }
        self.run_conn(idx);
    }

    fn on_conn(&mut self, idx: usize, generation: u32, client_side: bool, flags: EpollFlags) {
        let Some(c) = self.conns.get_mut(idx) else {
            return;
        };
        if c.generation != generation {
            return;
        }
        if flags.contains(EpollFlags::EPOLLERR) && !c.connecting {
            // A reset (or other error) on one side: pass it on to the other.
            let fd = if client_side {
                Some(&c.client)
            } else {
                c.inner.as_ref()
            };
            let err = fd
                .map(|f| nix::sys::socket::getsockopt(f, sockopt::SocketError).unwrap_or(0))
                .unwrap_or(0);
            if err != 0 {
                tracing::debug!(err, client_side, "published port: socket error");
                let status = if client_side {
                    Status::ClientFailed
                } else {
                    Status::InnerFailed
                };
                self.finish(idx, status);
                return;
            }
        }
        self.run_conn(idx);
    }

    fn run_conn(&mut self, idx: usize) {
        let Some(c) = self.conns.get_mut(idx) else {
            return;
        };
        match c.service(&mut self.pool) {
            Status::Alive => {
                self.settle(idx);
                self.update_interest(idx);
            }
            other => self.finish(idx, other),
        }
    }

    fn update_interest(&mut self, idx: usize) {
        let Some(c) = self.conns.get_mut(idx) else {
            return;
        };
        let (wc, wi) = c.wanted();
        let g = c.generation;
        let ep = &self.epoll;
        c.client_reg = set_interest(ep, &c.client, c.client_reg, wc, key(K_CLIENT, g, idx));
        if let Some(inner) = &c.inner {
            c.inner_reg = set_interest(ep, inner, c.inner_reg, wi, key(K_INNER, g, idx));
        }
    }

    fn finish(&mut self, idx: usize, status: Status) {
        let Some(mut c) = self.conns.remove(idx) else {
            return;
        };
        c.release(&mut self.pool);
        if c.in_flight {
            self.in_flight = self.in_flight.saturating_sub(1);
            self.next_waiting();
        }
        match status {
            Status::ClientFailed => {
                if let Some(i) = c.inner.take() {
                    relay_conn::reset(i);
                }
            }
            Status::InnerFailed => relay_conn::reset(c.client),
            Status::Finished | Status::Alive => {}
        }
    }
}

/// Registers, changes or removes a socket's epoll interest; returns what is registered.
/// A socket with nothing wanted is removed, so a finished side cannot keep reporting
/// HUP.
fn set_interest(ep: &Epoll, fd: &OwnedFd, reg: Option<u32>, want: u32, data: u64) -> Option<u32> {
    let flags = EpollFlags::from_bits_truncate(want as _);
    match (reg, want) {
        (None, 0) => None,
        (Some(_), 0) => {
            let _ = ep.delete(fd);
            None
        }
        (None, w) => ep.add(fd, EpollEvent::new(flags, data)).ok().map(|_| w),
        (Some(r), w) if r == w => Some(r),
        (Some(r), w) => {
            let mut ev = EpollEvent::new(flags, data);
            match ep.modify(fd, &mut ev) {
                Ok(()) => Some(w),
                Err(_) => Some(r),
            }
        }
    }
}
