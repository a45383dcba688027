//! The monitor's port relay: host listeners for a container's published ports, bound
//! before the container starts (so a taken or privileged port fails the start) and kept
//! for the monitor's life (a restart under --restart keeps them), plus every relayed
//! connection. It runs inside the monitor's poll loop through one epoll descriptor:
//! level-triggered, non-blocking, each wake-up bounded.
//!
//! While no container runs (before the start, between restarts) the listeners are not
//! polled: clients wait in the kernel's backlog rather than being refused.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::socket::{
    accept4, bind, listen, setsockopt, socket, sockopt, AddressFamily, Backlog, SockFlag, SockType,
    SockaddrStorage,
};

use super::connector::{self, Connector};
use super::portspec::{PortMapping, Protocol};
use super::relay_conn::{self, Conn, PipePool, Status};
use super::relay_udp::{self, Flow};
use super::NetworkError;

/// The most relayed TCP connections at once; more are refused (reset) with a debug log.
const MAX_CONNS: usize = 4096;
/// Connections accepted per listener per wake-up.
const ACCEPT_BATCH: usize = 64;
/// Sweep idle UDP flows this often.
const SWEEP: Duration = Duration::from_secs(15);

const K_LISTENER: u64 = 1;
const K_CONNECTOR: u64 = 2;
const K_CLIENT: u64 = 3;
const K_INNER: u64 = 4;
const K_FLOW: u64 = 5;

fn key(kind: u64, generation: u32, idx: usize) -> u64 {
    (kind << 56) | ((u64::from(generation) & 0xff_ffff) << 32) | (idx as u64 & 0xffff_ffff)
}

fn unkey(k: u64) -> (u64, u32, usize) {
    (
        k >> 56,
        ((k >> 32) & 0xff_ffff) as u32,
        (k & 0xffff_ffff) as usize,
    )
}

/// Connector request tokens: bit 31 marks UDP, bits 16..31 a generation, 0..16 the slot.
fn token(udp: bool, generation: u32, idx: usize) -> u32 {
    (u32::from(udp) << 31) | ((generation & 0x7fff) << 16) | (idx as u32 & 0xffff)
}

enum Sock {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

struct Listener {
    sock: Sock,
    mapping: PortMapping,
}

impl Listener {
    fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match &self.sock {
            Sock::Tcp(l) => l.as_fd(),
            Sock::Udp(u) => u.as_fd(),
        }
    }
}

/// A slab of slots, reused through a free list.
struct Slab<T> {
    slots: Vec<Option<T>>,
    free: Vec<usize>,
    live: usize,
}

impl<T> Slab<T> {
    fn new() -> Slab<T> {
        Slab {
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
        }
    }
    fn insert(&mut self, v: T) -> usize {
        self.live += 1;
        if let Some(i) = self.free.pop() {
            self.slots[i] = Some(v);
            i
        } else {
            self.slots.push(Some(v));
            self.slots.len() - 1
        }
    }
    fn remove(&mut self, i: usize) -> Option<T> {
        let v = self.slots.get_mut(i)?.take();
        if v.is_some() {
            self.live -= 1;
            self.free.push(i);
        }
        v
    }
    fn get_mut(&mut self, i: usize) -> Option<&mut T> {
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
    epoll: Epoll,
    listeners: Vec<Listener>,
    connector: Option<Connector>,
    /// Requests the connector socket could not take yet.
    backlog: VecDeque<[u8; connector::REQUEST_LEN]>,
    connector_out: bool,
    conns: Slab<Conn>,
    flows: Slab<Flow>,
    flow_index: HashMap<(usize, SocketAddr), usize>,
    pending_bytes: usize,
    pool: PipePool,
    generation: u32,
    max_conns: usize,
    udp_buf: Vec<u8>,
    next_sweep: Option<Instant>,
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

    /// The container is gone: drop its connections and connector, stop polling the
    /// listeners (they stay bound for a restart).
    pub fn detach(&mut self) {
        for l in &self.listeners {
            let _ = self.epoll.delete(l.fd());
        }
        for mut c in self.conns.drain() {
            c.release(&mut self.pool);
        }
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

    /// Closes idle UDP flows.
    pub fn tick(&mut self) {
        let Some(t) = self.next_sweep else { return };
        let now = Instant::now();
        if now < t {
            return;
        }
        let idle: Vec<usize> = self
            .flows
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, f)| {
                f.as_ref()
                    .filter(|f| now.duration_since(f.last) >= relay_udp::IDLE)
                    .map(|_| i)
            })
            .collect();
        for i in idle {
            self.drop_flow(i);
        }
        self.next_sweep = (self.flows.live > 0).then(|| now + SWEEP);
    }

    fn next_generation(&mut self) -> u32 {
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
        let idx = self.conns.insert(Conn::new(client, g));
        self.request(connector::request(
            Protocol::Tcp,
            port,
            token(false, g, idx),
        ));
    }

    fn request(&mut self, req: [u8; connector::REQUEST_LEN]) {
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
        matches!(
            nix::sys::socket::send(
                c.sock.as_raw_fd(),
                req,
                nix::sys::socket::MsgFlags::MSG_DONTWAIT
            ),
            Ok(_)
        )
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
            Status::Alive => self.update_interest(idx),
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

    fn on_udp_listener(&mut self, idx: usize) {
        if self.udp_buf.is_empty() {
            self.udp_buf = vec![0u8; relay_udp::DATAGRAM];
        }
        for _ in 0..relay_udp::BATCH {
            let Some(Listener {
                sock: Sock::Udp(s),
                mapping,
            }) = self.listeners.get(idx)
            else {
                return;
            };
            let port = mapping.container_port;
            let (n, from) = match s.recv_from(&mut self.udp_buf) {
                Ok(v) => v,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            };
            if let Some(&fi) = self.flow_index.get(&(idx, from)) {
                let pending_ok = self.pending_bytes + n <= relay_udp::MAX_PENDING_BYTES;
                if let Some(f) = self.flows.get_mut(fi) {
                    f.last = Instant::now();
                    match &f.inner {
                        Some(inner) => {
                            let _ = inner.send(&self.udp_buf[..n]);
                        }
                        None if pending_ok => {
                            f.pending.push(self.udp_buf[..n].to_vec());
                            self.pending_bytes += n;
                        }
                        None => tracing::debug!("udp: queue full, datagram dropped"),
                    }
                }
                continue;
            }
            if self.flows.live >= relay_udp::MAX_FLOWS
                || self.connector.is_none()
                || self.pending_bytes + n > relay_udp::MAX_PENDING_BYTES
            {
                tracing::debug!(client = %from, "udp: too many flows, datagram dropped");
                continue;
            }
            let g = self.next_generation();
            let mut f = Flow::new(idx, from, g);
            f.pending.push(self.udp_buf[..n].to_vec());
            self.pending_bytes += n;
            let fi = self.flows.insert(f);
            self.flow_index.insert((idx, from), fi);
            self.request(connector::request(Protocol::Udp, port, token(true, g, fi)));
            if self.next_sweep.is_none() {
                self.next_sweep = Some(Instant::now() + SWEEP);
            }
        }
    }

    fn flow_delivered(&mut self, idx: usize, generation: u32, errno: i32, fd: Option<OwnedFd>) {
        let ok = matches!(self.flows.get_mut(idx), Some(f) if f.generation == generation);
        if !ok {
            return;
        }
        let Some(fd) = fd.filter(|_| errno == 0) else {
            tracing::debug!(errno, "udp: opening a socket inside the container failed");
            self.drop_flow(idx);
            return;
        };
        let ev = EpollEvent::new(EpollFlags::EPOLLIN, key(K_FLOW, generation, idx));
        if let Err(e) = self.epoll.add(&fd, ev) {
            tracing::debug!(error = %e, "epoll add udp flow");
        }
        if let Some(f) = self.flows.get_mut(idx) {
            f.inner = Some(UdpSocket::from(fd));
            let freed = f.flush();
            self.pending_bytes = self.pending_bytes.saturating_sub(freed);
        }
    }

    fn on_flow(&mut self, idx: usize, generation: u32) {
        if self.udp_buf.is_empty() {
            self.udp_buf = vec![0u8; relay_udp::DATAGRAM];
        }
        let Some(f) = self.flows.slots.get_mut(idx).and_then(|f| f.as_mut()) else {
            return;
        };
        if f.generation != generation {
            return;
        }
        if let Some(Listener {
            sock: Sock::Udp(host),
            ..
        }) = self.listeners.get(f.listener)
        {
            f.replies(host, &mut self.udp_buf);
        }
    }

    fn drop_flow(&mut self, idx: usize) {
        if let Some(f) = self.flows.remove(idx) {
            self.flow_index.remove(&(f.listener, f.client));
            let queued: usize = f.pending.iter().map(Vec::len).sum();
            self.pending_bytes = self.pending_bytes.saturating_sub(queued);
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

/// Raises the soft descriptor limit to the hard one (every connection needs several);
/// returns the limit in force.
fn raise_nofile() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 1024;
    };
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return hard;
    }
    soft
}

/// The first port below which binding needs privileges.
fn unprivileged_port_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1024)
}

/// Binds one host port. Without an address: dual-stack [::] where the host has IPv6,
/// else 0.0.0.0, as podman's rootlessport listens.
fn bind_one(m: &PortMapping) -> Result<Sock, NetworkError> {
    let proto = m.protocol.as_str().to_string();
    let shown = match m.host_ip {
        Some(IpAddr::V6(a)) => format!("[{a}]:{}", m.host_port),
        _ => format!("{}:{}", m.host_ip_text(), m.host_port),
    };
    let fail = |call: &'static str, source: Errno| match source {
        Errno::EADDRINUSE => NetworkError::InUse {
            addr: shown.clone(),
            proto: proto.clone(),
        },
        Errno::EACCES if m.host_port < unprivileged_port_start() => NetworkError::Privileged {
            addr: shown.clone(),
            proto: proto.clone(),
            port: m.host_port,
            start: unprivileged_port_start(),
        },
        source => NetworkError::Socket {
            addr: shown.clone(),
            proto: proto.clone(),
            call,
            source,
        },
    };
    let addr = match m.host_ip {
        Some(ip) => SocketAddr::new(ip, m.host_port),
        None => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), m.host_port),
    };
    let fd = match open_bound(addr, m.protocol, m.host_ip.is_none()) {
        Ok(fd) => fd,
        // No IPv6 on this host: all IPv4 addresses then.
        Err((_, Errno::EAFNOSUPPORT | Errno::EADDRNOTAVAIL)) if m.host_ip.is_none() => {
            let v4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), m.host_port);
            open_bound(v4, m.protocol, false).map_err(|(call, e)| fail(call, e))?
        }
        Err((call, e)) => return Err(fail(call, e)),
    };
    Ok(match m.protocol {
        Protocol::Tcp => Sock::Tcp(TcpListener::from(fd)),
        Protocol::Udp => Sock::Udp(UdpSocket::from(fd)),
    })
}

fn open_bound(
    addr: SocketAddr,
    proto: Protocol,
    dual: bool,
) -> Result<OwnedFd, (&'static str, Errno)> {
    let family = if addr.is_ipv6() {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    let ty = match proto {
        Protocol::Tcp => SockType::Stream,
        Protocol::Udp => SockType::Datagram,
    };
    let fd = socket(
        family,
        ty,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| ("socket", e))?;
    if dual {
        setsockopt(&fd, sockopt::Ipv6V6Only, &false).map_err(|e| ("setsockopt(IPV6_V6ONLY)", e))?;
    }
    if proto == Protocol::Tcp {
        // A restart must not trip over the last run's connections in TIME_WAIT.
        setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(|e| ("setsockopt(SO_REUSEADDR)", e))?;
    }
    let sa: SockaddrStorage = addr.into();
    tracing::debug!(%addr, proto = proto.as_str(), "bind published port");
    bind(fd.as_raw_fd(), &sa).map_err(|e| ("bind", e))?;
    if proto == Protocol::Tcp {
        listen(&fd, Backlog::MAXCONN).map_err(|e| ("listen", e))?;
    }
    Ok(fd)
}
