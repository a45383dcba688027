//! UDP and ICMP echo between the container and host sockets.
//!
//! UDP is endpoint-independent, as with slirp4netns (libslirp) and pasta: each
//! container socket (source address and port) gets one unconnected host socket that
//! sends each datagram where it is addressed and takes datagrams from any source. So a
//! STUN-like answer from another port, a server answering from another socket, or a
//! second host client all reach the container's socket, each with its real source as
//! the container would address it (`guest_source`: the host's 127.0.0.1 appears as
//! the gateway when allow_host_loopback, a source the container could not reach is
//! dropped). ICMP errors come back through IP_RECVERR: a datagram a host port refuses
//! becomes ICMP port unreachable in the container.
//!
//! DNS to 10.0.2.3:53 has its own connected socket per container socket, to the
//! upstream resolver, so answers come from 10.0.2.3 whatever the upstream is. ICMP echo
//! goes through the kernel's unprivileged ping sockets (one connected socket per
//! container, identifier and destination) where net.ipv4.ping_group_range allows them;
//! echo to the gateway and DNS addresses is answered here.
//!
//! All of these together hold at most MAX_FLOWS host sockets: past that, a new one
//! closes the least recently used (a container socket whose mapping went gets a new
//! host port with its next datagram; what host peers send to the old one is lost). A
//! flow with no traffic either way for the idle timeout is closed.

use std::io::IoSliceMut;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::epoll::EpollFlags;
use nix::sys::socket::{
    connect, recvfrom, recvmsg, sendto, setsockopt, socket, sockopt, AddressFamily,
    ControlMessageOwned, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrStorage,
};

use super::frame::{self, Ipv4Pkt, PROTO_UDP};
use super::frame6::{self, Ipv6Pkt};
use super::relay::key;
use super::stack::{map_dest_ip, register, SlirpOptions, Stack, K_UDP};
use super::stack6::{dns_of, is_ours, port_unreachable, Pkt};

/// Host sockets for UDP, DNS and echo together; the least recently used goes when a
/// new one needs room.
pub(super) const MAX_FLOWS: usize = 1024;
/// Seconds a flow may stay idle (default 60; DNS flows at most 10), for tests and
/// tuning; read by the monitor.
pub(super) const IDLE_ENV: &str = "SKIFF_UDP_IDLE_TIMEOUT";
const IDLE: Duration = Duration::from_secs(60);
const DNS_IDLE: Duration = Duration::from_secs(10);
/// Datagrams (or queued errors) read from one host socket per wake-up.
const BATCH: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Kind {
    /// A container socket's endpoint-independent mapping: any destination, any source.
    Udp,
    /// Queries from one container socket to the DNS address, relayed upstream.
    Dns,
    /// ICMP echo: `guest` carries the echo identifier as its port.
    Echo,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct FlowKey {
    kind: Kind,
    /// The container's end.
    guest: SocketAddr,
    /// The one destination (as the container addresses it) of a connected flow; None
    /// for a UDP mapping, which talks to anyone.
    peer: Option<SocketAddr>,
}

pub(super) struct Flow {
    sock: OwnedFd,
    generation: u32,
    key: FlowKey,
    last: Instant,
}

/// How long a flow of `kind` may stay idle.
fn idle(kind: Kind) -> Duration {
    static LIMIT: OnceLock<Duration> = OnceLock::new();
    let limit = *LIMIT.get_or_init(|| {
        std::env::var(IDLE_ENV)
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|&s| s > 0)
            .map_or(IDLE, Duration::from_secs)
    });
    match kind {
        Kind::Dns => limit.min(DNS_IDLE),
        _ => limit,
    }
}

/// How a host source appears to the container: the inverse of `map_dest`, so the
/// container can answer it at that address; None for a source it could not address
/// (loopback without allow_host_loopback, its own link, anything when --internal).
pub(super) fn guest_source(opts: &SlirpOptions, from: SocketAddr) -> Option<SocketAddr> {
    let ip = match from.ip() {
        IpAddr::V4(a) if a == Ipv4Addr::LOCALHOST => opts.gateway.into(),
        IpAddr::V6(a) if a == Ipv6Addr::LOCALHOST => opts.ipv6?.gateway.into(),
        ip => ip,
    };
    let from = SocketAddr::new(from.ip(), from.port());
    (map_dest_ip(opts, ip, from.port()) == Some(from)).then_some(SocketAddr::new(ip, from.port()))
}

fn to_std(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(a) = a.as_sockaddr_in() {
        return Some(SocketAddr::V4((*a).into()));
    }
    a.as_sockaddr_in6().map(|a| SocketAddr::V6((*a).into()))
}

/// A UDP datagram from the container.
pub(super) fn guest_datagram(st: &mut Stack, p: &Ipv4Pkt) {
    datagram(st, Pkt::V4(p));
}

/// A UDP datagram from the container over IPv6.
pub(super) fn guest_datagram6(st: &mut Stack, p: &Ipv6Pkt) {
    datagram(st, Pkt::V6(p));
}

fn datagram(st: &mut Stack, p: Pkt) {
    let Some((sport, dport, data)) = frame::udp(p.payload()) else {
        return;
    };
    let guest = SocketAddr::new(p.src(), sport);
    if Some(p.dst()) == dns_of(&st.opts, p.dst()) && dport == 53 {
        dns_query(st, p, guest, data);
        return;
    }
    let Some(to) = map_dest_ip(&st.opts, p.dst(), dport) else {
        if is_ours(&st.opts, p.dst()) {
            port_unreachable(st, p);
        }
        return;
    };
    let k = FlowKey {
        kind: Kind::Udp,
        guest,
        peer: None,
    };
    let Some(fd) = flow(st, k, to, None) else {
        return;
    };
    let dest = SockaddrStorage::from(to);
    for _ in 0..2 {
        match sendto(fd, data, &dest, MsgFlags::MSG_DONTWAIT) {
            // The error an ICMP message left for an earlier datagram (the error queue
            // answers that one): this datagram was not sent yet.
            Err(Errno::ECONNREFUSED) => continue,
            Err(e) => tracing::debug!(%to, error = %e, "udp: sendto"),
            Ok(_) => {}
        }
        break;
    }
}

/// A query to the DNS address: answered for a user network's members, else relayed.
fn dns_query(st: &mut Stack, p: Pkt, guest: SocketAddr, data: &[u8]) {
    if let Some(answer) = st.peers.as_mut().and_then(|x| x.dns_answer(data)) {
        let at = frame::l4_at(p.src()) + 8;
        st.out.buf[at..at + answer.len()].copy_from_slice(&answer);
        let n = frame::udp_header(
            &mut st.out.buf,
            st.out.mac,
            (p.dst(), 53),
            (p.src(), guest.port()),
            answer.len(),
        );
        st.out.send(n);
        return;
    }
    let Some(to) = st.opts.dns_upstream else {
        port_unreachable(st, p);
        return;
    };
    let k = FlowKey {
        kind: Kind::Dns,
        guest,
        peer: Some(SocketAddr::new(p.dst(), 53)),
    };
    let Some(fd) = flow(st, k, to, None) else {
        return;
    };
    match nix::sys::socket::send(fd, data, MsgFlags::MSG_DONTWAIT) {
        Ok(_) => {}
        Err(Errno::ECONNREFUSED) => port_unreachable(st, p),
        Err(e) => tracing::debug!(error = %e, "dns: send upstream"),
    }
}

/// An ICMP message from the container: echo requests only.
pub(super) fn guest_icmp(st: &mut Stack, p: &Ipv4Pkt) {
    let m = p.payload;
    if m.len() < 8 || m[0] != 8 {
        return;
    }
    if p.dst == st.opts.gateway || p.dst == st.opts.dns {
        let mut reply = m.to_vec();
        reply[0] = 0;
        let n = frame::icmp(&mut st.out.buf, st.out.mac, p.dst, p.src, &reply);
        st.out.send(n);
        return;
    }
    echo(st, Pkt::V4(p), SockProtocol::Icmp);
}

/// An ICMPv6 echo request from the container to an address other than ours.
pub(super) fn guest_echo6(st: &mut Stack, p: &Ipv6Pkt) {
    echo(st, Pkt::V6(p), SockProtocol::IcmpV6);
}

/// Echo through an unprivileged ping socket (net.ipv4.ping_group_range covers both
/// families).
fn echo(st: &mut Stack, p: Pkt, proto: SockProtocol) {
    let m = p.payload();
    let id = u16::from_be_bytes([m[4], m[5]]);
    let Some(to) = map_dest_ip(&st.opts, p.dst(), 0) else {
        return;
    };
    let k = FlowKey {
        kind: Kind::Echo,
        guest: SocketAddr::new(p.src(), id),
        peer: Some(SocketAddr::new(p.dst(), 0)),
    };
    let Some(fd) = flow(st, k, to, Some(proto)) else {
        return;
    };
    // The kernel sets the identifier (the socket's "port") and the checksum.
    if let Err(e) = nix::sys::socket::send(fd, m, MsgFlags::MSG_DONTWAIT) {
        tracing::debug!(error = %e, "icmp: send echo");
    }
}

/// The host socket of flow `k` (made on first use; `to` is where a connected flow's
/// socket connects, and picks the family of a mapping's), its idle clock restarted.
fn flow(st: &mut Stack, k: FlowKey, to: SocketAddr, proto: Option<SockProtocol>) -> Option<RawFd> {
    let idx = match st.udp_index.get(&k) {
        Some(&i) => i,
        None => new_flow(st, k, to, proto)?,
    };
    let f = st.udp.get_mut(idx)?;
    f.last = Instant::now();
    Some(f.sock.as_raw_fd())
}

fn new_flow(
    st: &mut Stack,
    k: FlowKey,
    to: SocketAddr,
    proto: Option<SockProtocol>,
) -> Option<usize> {
    if st.udp.live >= MAX_FLOWS {
        evict_oldest(st);
    }
    let family = match to {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
    let sock = match socket(family, SockType::Datagram, flags, proto) {
        Ok(s) => s,
        Err(e) => {
            // EACCES for ping sockets outside net.ipv4.ping_group_range.
            tracing::debug!(error = %e, kind = ?k.kind, "flow: socket");
            return None;
        }
    };
    let set_up = if k.kind == Kind::Udp {
        // Unconnected: ICMP errors reach it only through its error queue.
        tracing::debug!(guest = %k.guest, "udp mapping: setsockopt IP_RECVERR");
        match to {
            SocketAddr::V4(_) => setsockopt(&sock, sockopt::Ipv4RecvErr, &true),
            SocketAddr::V6(_) => setsockopt(&sock, sockopt::Ipv6RecvErr, &true),
        }
    } else {
        tracing::debug!(%to, kind = ?k.kind, "flow: connect");
        connect(sock.as_raw_fd(), &SockaddrStorage::from(to))
    };
    if let Err(e) = set_up {
        tracing::debug!(%to, error = %e, kind = ?k.kind, "flow: set up");
        return None;
    }
    let generation = st.next_generation();
    let idx = st.udp.insert(Flow {
        sock,
        generation,
        key: k,
        last: Instant::now(),
    });
    let ok = st.udp.slots[idx].as_ref().is_some_and(|f| {
        register(
            &st.epoll,
            &f.sock,
            EpollFlags::EPOLLIN,
            key(K_UDP, generation, idx),
        )
    });
    if !ok {
        st.udp.remove(idx);
        return None;
    }
    st.udp_index.insert(k, idx);
    Some(idx)
}

fn evict_oldest(st: &mut Stack) {
    let oldest = st
        .udp
        .slots
        .iter()
        .enumerate()
        .filter_map(|(i, f)| f.as_ref().map(|f| (f.last, i)))
        .min();
    if let Some((_, i)) = oldest {
        tracing::debug!(
            max = MAX_FLOWS,
            "flow table full: closing the least recently used"
        );
        remove(st, i);
    }
}

fn remove(st: &mut Stack, idx: usize) {
    if let Some(f) = st.udp.remove(idx) {
        st.udp_index.remove(&f.key);
    }
}

/// Datagrams (or echo replies, or errors) from a host socket, to the container.
pub(super) fn host_event(st: &mut Stack, idx: usize, generation: u32, flags: EpollFlags) {
    let Some(f) = st.udp.get_mut(idx) else { return };
    if f.generation != generation {
        return;
    }
    let k = f.key;
    let fd = f.sock.as_raw_fd();
    f.last = Instant::now();
    if k.kind == Kind::Udp && flags.contains(EpollFlags::EPOLLERR) {
        queued_errors(st, k, fd);
    }
    let at = frame::l4_at(k.guest.ip()) + 8;
    for _ in 0..BATCH {
        let got = recvfrom::<SockaddrStorage>(fd, &mut st.out.buf[at..]);
        match (got, k.kind, k.peer) {
            (Ok((n, from)), Kind::Udp, _) => {
                let src = from.as_ref().and_then(to_std);
                let Some(src) = src.and_then(|a| guest_source(&st.opts, a)) else {
                    tracing::debug!(
                        ?src,
                        "udp: dropped a datagram from a source the container cannot address"
                    );
                    continue;
                };
                to_guest(st, src, k.guest, n);
            }
            (Ok((n, _)), Kind::Dns, Some(peer)) => {
                to_guest(st, peer, k.guest, n);
            }
            (Ok((n, _)), Kind::Echo, Some(peer)) => {
                let reply = match k.guest {
                    SocketAddr::V4(_) => 0,
                    SocketAddr::V6(_) => frame6::ECHO_REPLY,
                };
                if n < 8 || st.out.buf[at] != reply {
                    continue;
                }
                let mut m = st.out.buf[at..at + n].to_vec();
                m[4..6].copy_from_slice(&k.guest.port().to_be_bytes());
                let len = match (peer.ip(), k.guest.ip()) {
                    (IpAddr::V4(from), IpAddr::V4(to)) => {
                        frame::icmp(&mut st.out.buf, st.out.mac, from, to, &m)
                    }
                    (IpAddr::V6(from), IpAddr::V6(to)) => {
                        frame6::icmp6(&mut st.out.buf, st.out.mac, from, to, &m, 64)
                    }
                    _ => continue,
                };
                st.out.send(len);
            }
            (Ok(_), _, _) | (Err(Errno::EAGAIN), _, _) => break,
            // The error queue (a mapping) already answered it.
            (Err(Errno::ECONNREFUSED), Kind::Udp, _) => continue,
            (Err(Errno::ECONNREFUSED), Kind::Dns, Some(peer)) => {
                let code = if peer.is_ipv4() { 3 } else { 4 };
                unreachable_for(st, k.guest, peer, code);
                break;
            }
            (Err(e), _, _) => {
                tracing::debug!(error = %e, kind = ?k.kind, "flow: recv");
                break;
            }
        }
    }
}

/// Writes the UDP datagram of `n` bytes already 8 bytes after `l4_at(guest)` to the
/// container.
fn to_guest(st: &mut Stack, src: SocketAddr, guest: SocketAddr, n: usize) {
    if src.is_ipv4() != guest.is_ipv4() {
        return;
    }
    let len = frame::udp_header(
        &mut st.out.buf,
        st.out.mac,
        (src.ip(), src.port()),
        (guest.ip(), guest.port()),
        n,
    );
    st.out.send(len);
}

/// ICMP errors queued on a mapping's socket (IP_RECVERR), each about one datagram it
/// sent: destination unreachable ones go to the container as coming from where that
/// datagram went.
fn queued_errors(st: &mut Stack, k: FlowKey, fd: RawFd) {
    for _ in 0..BATCH {
        let mut data = [0u8; 64];
        let mut iov = [IoSliceMut::new(&mut data)];
        let mut cmsg = nix::cmsg_space!(libc::sock_extended_err, libc::sockaddr_in6);
        let flags = MsgFlags::MSG_ERRQUEUE | MsgFlags::MSG_DONTWAIT;
        let (dest, err) = match recvmsg::<SockaddrStorage>(fd, &mut iov, Some(&mut cmsg), flags) {
            Ok(m) => {
                let err = m.cmsgs().ok().and_then(|mut c| {
                    c.find_map(|c| match c {
                        ControlMessageOwned::Ipv4RecvErr(e, _) => {
                            Some((e.ee_origin, e.ee_type, e.ee_code))
                        }
                        // As ICMP's: destination unreachable.
                        ControlMessageOwned::Ipv6RecvErr(e, _)
                            if e.ee_origin == libc::SO_EE_ORIGIN_ICMP6 && e.ee_type == 1 =>
                        {
                            Some((libc::SO_EE_ORIGIN_ICMP, 3, e.ee_code))
                        }
                        _ => None,
                    })
                });
                (m.address.as_ref().and_then(to_std), err)
            }
            Err(Errno::EAGAIN) => return,
            Err(e) => {
                tracing::debug!(error = %e, "udp: recvmsg MSG_ERRQUEUE");
                return;
            }
        };
        let seen = dest.and_then(|d| guest_source(&st.opts, d));
        if let (Some(to), Some((libc::SO_EE_ORIGIN_ICMP, 3, code))) = (seen, err) {
            unreachable_for(st, k.guest, to, code);
        }
    }
}

/// ICMP destination unreachable (`code`) for a datagram from `guest` to `peer` (as the
/// container addressed it).
fn unreachable_for(st: &mut Stack, guest: SocketAddr, peer: SocketAddr, code: u8) {
    let (guest, peer) = match (guest, peer) {
        (SocketAddr::V4(g), SocketAddr::V4(p)) => ((*g.ip(), g.port()), (*p.ip(), p.port())),
        (SocketAddr::V6(g), SocketAddr::V6(p)) => {
            let mut pkt = [0u8; 48];
            pkt[0] = 0x60;
            pkt[4..6].copy_from_slice(&8u16.to_be_bytes());
            pkt[6] = PROTO_UDP;
            pkt[7] = 64;
            pkt[8..24].copy_from_slice(&g.ip().octets());
            pkt[24..40].copy_from_slice(&p.ip().octets());
            pkt[40..42].copy_from_slice(&g.port().to_be_bytes());
            pkt[42..44].copy_from_slice(&p.port().to_be_bytes());
            pkt[44..46].copy_from_slice(&8u16.to_be_bytes());
            if let Some(p) = frame6::ipv6(&pkt) {
                st.icmp6_unreachable(&p, code);
            }
            return;
        }
        _ => return,
    };
    let mut pkt = [0u8; 28];
    pkt[0] = 0x45;
    pkt[2..4].copy_from_slice(&28u16.to_be_bytes());
    pkt[8] = 64;
    pkt[9] = PROTO_UDP;
    pkt[12..16].copy_from_slice(&guest.0.octets());
    pkt[16..20].copy_from_slice(&peer.0.octets());
    pkt[20..22].copy_from_slice(&guest.1.to_be_bytes());
    pkt[22..24].copy_from_slice(&peer.1.to_be_bytes());
    pkt[24..26].copy_from_slice(&8u16.to_be_bytes());
    let c = !frame::fold(frame::sum(&pkt[..20], 0));
    pkt[10..12].copy_from_slice(&c.to_be_bytes());
    if let Some(p) = frame::ipv4(&pkt) {
        st.icmp_unreachable(&p, code);
    }
}

/// Closes idle flows.
pub(super) fn sweep(st: &mut Stack, now: Instant) {
    let idle: Vec<usize> = st
        .udp
        .slots
        .iter()
        .enumerate()
        .filter_map(|(i, f)| {
            let f = f.as_ref()?;
            (now.duration_since(f.last) > idle(f.key.kind)).then_some(i)
        })
        .collect();
    for i in idle {
        remove(st, i);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn host_loopback_appears_as_the_gateway_only_when_allowed() {
        let open = SlirpOptions::slirp(true, None, false);
        assert_eq!(
            guest_source(&open, sa("127.0.0.1:4000")),
            Some(sa("10.0.2.2:4000"))
        );
        let closed = SlirpOptions::slirp(false, None, false);
        assert_eq!(guest_source(&closed, sa("127.0.0.1:4000")), None);
        // Other loopback addresses have no address in the container.
        assert_eq!(guest_source(&open, sa("127.0.0.2:4000")), None);
    }

    #[test]
    fn other_sources_keep_their_address_unless_unreachable() {
        let o = SlirpOptions::slirp(false, None, false);
        assert_eq!(
            guest_source(&o, sa("192.0.2.9:53")),
            Some(sa("192.0.2.9:53"))
        );
        // The container's own link, and broadcast, cannot be answered.
        assert_eq!(guest_source(&o, sa("10.0.2.7:53")), None);
        assert_eq!(guest_source(&o, sa("255.255.255.255:53")), None);
        assert_eq!(guest_source(&o, sa("[2001:db8::1]:53")), None);
        let mut internal = SlirpOptions::slirp(true, None, false);
        internal.internal = true;
        assert_eq!(guest_source(&internal, sa("192.0.2.9:53")), None);
    }

    #[test]
    fn dns_flows_idle_sooner() {
        assert!(idle(Kind::Dns) <= DNS_IDLE);
        assert!(idle(Kind::Dns) <= idle(Kind::Udp));
        assert_eq!(idle(Kind::Echo), idle(Kind::Udp));
    }
}
