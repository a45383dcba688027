//! The monitor's user-mode network (slirp4netns-compatible): frames the container sends
//! on its tap0 become ordinary host sockets, pasta-style. There is no TCP state machine
//! of our own: a SYN becomes a non-blocking connect(), payload is written to the host
//! socket and acknowledged by what the socket accepted, and data from the host socket
//! is read with MSG_PEEK and stays queued in the kernel until the container
//! acknowledges it (SO_PEEK_OFF moves the peek position; acknowledged bytes are dropped
//! with MSG_TRUNC). UDP maps each container socket to one unconnected host socket
//! (endpoint-independent, as slirp4netns and pasta), ICMP echo to per-flow ping
//! sockets (src/network/udp.rs); DNS to 10.0.2.3 is relayed to the host's resolver.
//!
//! It runs inside the monitor's poll loop through one epoll descriptor, like the port
//! relay: the monitor stays single-threaded, so restarting the container (a new clone
//! into new namespaces) stays possible. Each wake-up reads at most a bounded batch of
//! frames and sends one ACK per connection after the batch.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

use super::frame::{self, IP_AT};
use super::relay::{key, Slab};
use super::tap::{self, VNET_HDR};
use super::tcp::{self, TcpConn, TcpKey};
use super::udp::{self, Flow, FlowKey};

/// Frames read from the tap per wake-up: bounds the time one wake-up takes, so a
/// flooding container cannot starve the host side or the monitor's other work.
const TAP_BATCH: usize = 64;
const BUF: usize = VNET_HDR + frame::ETH + tap::MTU as usize + 64;

const K_TAP: u64 = 10;
pub(super) const K_TCP: u64 = 11;
pub(super) const K_UDP: u64 = 12;
const K_PEER: u64 = 13;

/// What `--network slirp4netns[:options]` asked for, plus where DNS goes.
#[derive(Debug, Clone)]
pub struct SlirpOptions {
    /// 10.0.2.2 reaches the host's 127.0.0.1 (podman's allow_host_loopback=true).
    pub allow_host_loopback: bool,
    /// The resolver that queries to 10.0.2.3 are relayed to.
    pub dns_upstream: Option<SocketAddr>,
    /// The container's side of the link.
    pub guest: tap::Addressing,
    /// Our own addresses on the link: the gateway, and where DNS is answered.
    pub gateway: Ipv4Addr,
    pub dns: Ipv4Addr,
    /// No way out (`network create --internal`): only the link's own addresses.
    pub internal: bool,
    /// IPv6 on the link (fd00::/64), served when the container has it (stack6.rs).
    pub ipv6: Option<super::tap6::Link6>,
}

impl SlirpOptions {
    /// `--network slirp4netns[:allow_host_loopback=...]`.
    pub fn slirp(
        allow_host_loopback: bool,
        dns_upstream: Option<SocketAddr>,
        ipv6: bool,
    ) -> SlirpOptions {
        SlirpOptions {
            allow_host_loopback,
            dns_upstream,
            guest: tap::SLIRP,
            gateway: tap::GATEWAY_IP,
            dns: tap::DNS_IP,
            internal: false,
            ipv6: ipv6.then_some(super::tap6::SLIRP6),
        }
    }

    /// On the container's link (its subnet).
    pub(super) fn on_link(&self, ip: Ipv4Addr) -> bool {
        let m = u32::from(self.guest.netmask);
        u32::from(ip) & m == u32::from(self.guest.ip) & m
    }
}

/// The tap and the frame buffer everything writes through.
pub(super) struct Out {
    pub(super) tap: OwnedFd,
    pub(super) buf: Vec<u8>,
    /// The container's MAC address, learnt from its first frame.
    pub(super) mac: [u8; 6],
    pub(super) dropped: u64,
}

impl Out {
    /// Writes `buf[..len]` to the tap; a full queue drops the frame (TCP resends).
    pub(super) fn send(&mut self, len: usize) {
        match nix::unistd::write(&self.tap, &self.buf[..len]) {
            Ok(_) => {}
            Err(e) => {
                self.dropped += 1;
                if self.dropped.is_power_of_two() {
                    tracing::debug!(error = %e, dropped = self.dropped, "tap write");
                }
            }
        }
    }
}

/// The network of one run of the container.
pub struct Stack {
    pub(super) epoll: Epoll,
    pub(super) out: Out,
    pub(super) opts: SlirpOptions,
    rbuf: Vec<u8>,
    pub(super) tcp: Slab<TcpConn>,
    pub(super) tcp_index: HashMap<TcpKey, usize>,
    pub(super) udp: Slab<Flow>,
    pub(super) udp_index: HashMap<FlowKey, usize>,
    /// Connections owed an ACK (or more data) after the current batch.
    pub(super) ack_due: Vec<usize>,
    pub(super) generation: u32,
    pub(super) max_tcp: usize,
    /// The other members of a user-defined network (peers.rs).
    pub(super) peers: Option<super::peers::Peers>,
    /// Bytes buffered for host sockets that were full (tcp.rs).
    pub(super) pending_bytes: usize,
    /// When to look at retransmission timers (only while data is unacknowledged).
    rto_tick: Option<Instant>,
    /// When to close idle UDP flows (only while there are flows).
    sweep_at: Option<Instant>,
}

/// Where a destination of either family maps to on the host; None: refused.
pub(super) fn map_dest_ip(opts: &SlirpOptions, dst: IpAddr, port: u16) -> Option<SocketAddr> {
    match dst {
        IpAddr::V4(d) => map_dest(opts, d, port),
        IpAddr::V6(d) => super::stack6::map_dest6(opts, d, port),
    }
}

/// Where a destination the container sees maps to on the host; None: refused.
pub(super) fn map_dest(opts: &SlirpOptions, dst: Ipv4Addr, port: u16) -> Option<SocketAddr> {
    if dst == opts.dns && port == 53 {
        return opts.dns_upstream;
    }
    if dst == opts.gateway {
        return opts
            .allow_host_loopback
            .then(|| SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)));
    }
    if opts.on_link(dst)
        || opts.internal
        || dst.is_broadcast()
        || dst.is_multicast()
        || dst.is_unspecified()
        || dst.is_loopback()
    {
        return None;
    }
    Some(SocketAddr::V4(SocketAddrV4::new(dst, port)))
}

/// Adds a host socket to the stack's epoll set.
pub(super) fn register(epoll: &Epoll, fd: &OwnedFd, flags: EpollFlags, k: u64) -> bool {
    match epoll.add(fd, EpollEvent::new(flags, k)) {
        Ok(()) => true,
        Err(e) => {
            tracing::debug!(error = %e, "epoll add");
            false
        }
    }
}

impl Stack {
    pub fn new(
        tap_fd: OwnedFd,
        opts: SlirpOptions,
        peers: Option<super::peers::Peers>,
    ) -> Result<Stack, String> {
        let tap_fd = tap::adopt(tap_fd);
        let epoll =
            Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(|e| format!("epoll: {e}"))?;
        epoll
            .add(
                &tap_fd,
                EpollEvent::new(EpollFlags::EPOLLIN, key(K_TAP, 0, 0)),
            )
            .map_err(|e| format!("epoll add tap: {e}"))?;
        if let Some(p) = &peers {
            epoll
                .add(
                    p.fd(),
                    EpollEvent::new(EpollFlags::EPOLLIN, key(K_PEER, 0, 0)),
                )
                .map_err(|e| format!("epoll add member socket: {e}"))?;
        }
        let nofile = super::listen::raise_nofile();
        let max_tcp =
            tcp::MAX_CONNS.min(nofile.saturating_sub(256 + udp::MAX_FLOWS as u64) as usize);
        tracing::debug!(?opts, max_tcp, "user-mode network up");
        Ok(Stack {
            epoll,
            out: Out {
                tap: tap_fd,
                buf: vec![0u8; BUF],
                mac: [0xff; 6],
                dropped: 0,
            },
            opts,
            rbuf: vec![0u8; BUF],
            tcp: Slab::new(),
            tcp_index: HashMap::new(),
            udp: Slab::new(),
            udp_index: HashMap::new(),
            ack_due: Vec::new(),
            generation: 0,
            max_tcp: max_tcp.max(16),
            pending_bytes: 0,
            peers,
            rto_tick: None,
            sweep_at: None,
        })
    }

    /// The descriptor the monitor polls for readability.
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.epoll.0.as_fd()
    }

    /// The run directories of the container's other user-defined networks: DNS at this
    /// gateway answers their members too (member.rs).
    pub fn set_dns_scope(&mut self, dirs: Vec<std::path::PathBuf>) {
        if let Some(p) = self.peers.as_mut() {
            p.set_scope(dirs);
        }
    }

    /// When `tick` wants to run next.
    pub fn deadline(&self) -> Option<Instant> {
        match (self.rto_tick, self.sweep_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub(super) fn next_generation(&mut self) -> u32 {
        self.generation = (self.generation + 1) & 0xff_ffff;
        self.generation
    }

    /// Handles whatever is ready; bounded work per call.
    pub fn service(&mut self) {
        let mut events = [EpollEvent::empty(); 64];
        let n = match self.epoll.wait(&mut events, EpollTimeout::ZERO) {
            Ok(n) => n,
            Err(_) => return,
        };
        for ev in &events[..n] {
            let (kind, generation, idx) = super::relay::unkey(ev.data());
            let flags = ev.events();
            match kind {
                K_TAP => self.read_tap(),
                K_TCP => tcp::host_event(self, idx, generation, flags),
                K_UDP => udp::host_event(self, idx, generation, flags),
                K_PEER => self.relay_from_peers(),
                _ => {}
            }
        }
        self.flush();
    }

    /// Sends the ACKs (and data) owed after a batch.
    fn flush(&mut self) {
        let due = std::mem::take(&mut self.ack_due);
        let mut rto = false;
        for idx in due {
            rto |= tcp::after_batch(self, idx);
        }
        self.arm(rto);
    }

    fn read_tap(&mut self) {
        for _ in 0..TAP_BATCH {
            let n = match nix::unistd::read(&self.out.tap, &mut self.rbuf) {
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => break,
            };
            if n < VNET_HDR + frame::ETH {
                continue;
            }
            let rbuf = std::mem::take(&mut self.rbuf);
            self.frame(&rbuf[..n]);
            self.rbuf = rbuf;
        }
    }

    /// Frames other members' monitors sent us, to our tap (lan.rs filters them).
    fn relay_from_peers(&mut self) {
        let mut rbuf = std::mem::take(&mut self.rbuf);
        super::lan::from_peers(self, &mut rbuf, TAP_BATCH);
        self.rbuf = rbuf;
    }

    fn frame(&mut self, f: &[u8]) {
        // A user-defined network: sources checked, ARP and members' traffic handled.
        if super::lan::guest_frame(self, f) {
            return;
        }
        let eth = &f[VNET_HDR..IP_AT];
        let src_mac: [u8; 6] = [eth[6], eth[7], eth[8], eth[9], eth[10], eth[11]];
        if src_mac[0] & 1 == 0 {
            self.out.mac = src_mac;
        }
        let payload = &f[IP_AT..];
        match u16::from_be_bytes([eth[12], eth[13]]) {
            0x0806 => {
                let ours = [self.opts.gateway, self.opts.dns];
                if let Some(len) = frame::arp_reply(&mut self.out.buf, payload, &ours) {
                    self.out.send(len);
                }
            }
            0x0800 => {
                let Some(p) = frame::ipv4(payload) else {
                    return;
                };
                match p.proto {
                    frame::PROTO_TCP => {
                        tcp::guest_segment(self, p.src.into(), p.dst.into(), p.payload)
                    }
                    frame::PROTO_UDP => udp::guest_datagram(self, &p),
                    frame::PROTO_ICMP => udp::guest_icmp(self, &p),
                    _ => {}
                }
            }
            super::frame6::ETHERTYPE => self.frame6(src_mac, payload),
            _ => {}
        }
    }

    /// Retransmission and idle timers; called on every wake-up of the monitor. An idle
    /// network arms no timer: the monitor sleeps until something happens.
    pub fn tick(&mut self) {
        let now = Instant::now();
        if self.rto_tick.is_some_and(|t| t <= now) {
            self.rto_tick = None;
            let waiting = tcp::timers(self, now);
            self.flush();
            self.arm(waiting);
        }
        if self.sweep_at.is_some_and(|t| t <= now) {
            self.sweep_at = None;
            udp::sweep(self, now);
            self.arm(false);
        }
    }

    /// Arms the retransmission tick (`rto`: some connection waits for an ACK) and the
    /// flow sweep.
    fn arm(&mut self, rto: bool) {
        let now = Instant::now();
        if rto && self.rto_tick.is_none_or(|t| t <= now) {
            self.rto_tick = Some(now + TICK);
        }
        self.sweep_at = match (self.udp.live > 0, self.sweep_at) {
            (false, _) => None,
            (true, Some(t)) => Some(t),
            (true, None) => Some(now + SWEEP),
        };
    }

    /// Sends an ICMP error about the packet `p` to the container (type 3: unreachable).
    pub(super) fn icmp_unreachable(&mut self, p: &frame::Ipv4Pkt, code: u8) {
        let quote = p.payload.len().min(8);
        let mut m = Vec::with_capacity(8 + p.header.len() + quote);
        m.extend_from_slice(&[3, code, 0, 0, 0, 0, 0, 0]);
        m.extend_from_slice(p.header);
        m.extend_from_slice(&p.payload[..quote]);
        let len = frame::icmp(&mut self.out.buf, self.out.mac, p.dst, p.src, &m);
        self.out.send(len);
    }
}

pub(super) const TICK: Duration = Duration::from_millis(100);
const SWEEP: Duration = Duration::from_secs(5);
