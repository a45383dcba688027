//! UDP and ICMP echo between the container and host sockets: one connected host socket
//! per flow (container address and port, destination address and port), so replies
//! come back with the source the container expects. DNS to 10.0.2.3:53 is just a flow
//! whose host side is the upstream resolver. ICMP echo goes through the kernel's
//! unprivileged ping sockets where net.ipv4.ping_group_range allows them; echo to the
//! gateway and DNS addresses is answered here.

use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::epoll::EpollFlags;
use nix::sys::socket::{
    connect, socket, AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrStorage,
};

use super::frame::{self, Ipv4Pkt, L4_AT, PROTO_ICMP, PROTO_UDP};
use super::relay::key;
use super::stack::{map_dest, register, Stack, K_UDP};

/// Flows at once; the least recently used goes when a new one needs room.
pub(super) const MAX_FLOWS: usize = 1024;
/// A flow with no traffic for this long is closed (DNS ones sooner).
const IDLE: Duration = Duration::from_secs(60);
const DNS_IDLE: Duration = Duration::from_secs(10);
/// Datagrams read from one host socket per wake-up.
const BATCH: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct FlowKey {
    proto: u8,
    /// (container address, port; for ICMP the echo identifier)
    guest: (Ipv4Addr, u16),
    peer: (Ipv4Addr, u16),
}

pub(super) struct Flow {
    sock: OwnedFd,
    generation: u32,
    key: FlowKey,
    last: Instant,
}

/// A UDP datagram from the container.
pub(super) fn guest_datagram(st: &mut Stack, p: &Ipv4Pkt) {
    let Some((sport, dport, data)) = frame::udp(p.payload) else {
        return;
    };
    if p.dst == st.opts.dns && dport == 53 {
        if let Some(answer) = st.peers.as_mut().and_then(|x| x.dns_answer(data)) {
            let at = L4_AT + 8;
            st.out.buf[at..at + answer.len()].copy_from_slice(&answer);
            let n = frame::udp_header(
                &mut st.out.buf,
                st.out.mac,
                (st.opts.dns, 53),
                (p.src, sport),
                answer.len(),
            );
            st.out.send(n);
            return;
        }
    }
    let k = FlowKey {
        proto: PROTO_UDP,
        guest: (p.src, sport),
        peer: (p.dst, dport),
    };
    let idx = match st.udp_index.get(&k) {
        Some(&i) => i,
        None => {
            let Some(addr) = map_dest(&st.opts, p.dst, dport) else {
                if p.dst == st.opts.gateway || p.dst == st.opts.dns {
                    st.icmp_unreachable(p, 3);
                }
                return;
            };
            match new_flow(st, k, addr, SockType::Datagram, None) {
                Some(i) => i,
                None => return,
            }
        }
    };
    let Some(f) = st.udp.get_mut(idx) else { return };
    f.last = Instant::now();
    match nix::sys::socket::send(f.sock.as_raw_fd(), data, MsgFlags::MSG_DONTWAIT) {
        Ok(_) => {}
        Err(Errno::ECONNREFUSED) => st.icmp_unreachable(p, 3),
        Err(e) => tracing::debug!(error = %e, "udp: send to host"),
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
    let id = u16::from_be_bytes([m[4], m[5]]);
    let k = FlowKey {
        proto: PROTO_ICMP,
        guest: (p.src, id),
        peer: (p.dst, 0),
    };
    let idx = match st.udp_index.get(&k) {
        Some(&i) => i,
        None => {
            let Some(addr) = map_dest(&st.opts, p.dst, 0) else {
                return;
            };
            match new_flow(st, k, addr, SockType::Datagram, Some(SockProtocol::Icmp)) {
                Some(i) => i,
                None => return,
            }
        }
    };
    let Some(f) = st.udp.get_mut(idx) else { return };
    f.last = Instant::now();
    // The kernel sets the identifier (the socket's "port") and the checksum.
    if let Err(e) = nix::sys::socket::send(f.sock.as_raw_fd(), m, MsgFlags::MSG_DONTWAIT) {
        tracing::debug!(error = %e, "icmp: send echo");
    }
}

fn new_flow(
    st: &mut Stack,
    k: FlowKey,
    addr: SocketAddr,
    ty: SockType,
    proto: Option<SockProtocol>,
) -> Option<usize> {
    if st.udp.live >= MAX_FLOWS {
        evict_oldest(st);
    }
    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let sock = match socket(
        family,
        ty,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        proto,
    ) {
        Ok(s) => s,
        Err(e) => {
            // EACCES for ping sockets outside net.ipv4.ping_group_range.
            tracing::debug!(error = %e, proto = k.proto, "flow: socket");
            return None;
        }
    };
    tracing::debug!(%addr, proto = k.proto, "flow: connect");
    if let Err(e) = connect(sock.as_raw_fd(), &SockaddrStorage::from(addr)) {
        tracing::debug!(%addr, error = %e, "flow: connect");
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
        remove(st, i);
    }
}

fn remove(st: &mut Stack, idx: usize) {
    if let Some(f) = st.udp.remove(idx) {
        st.udp_index.remove(&f.key);
    }
}

/// Datagrams (or echo replies) from a host socket, to the container.
pub(super) fn host_event(st: &mut Stack, idx: usize, generation: u32) {
    let Some(f) = st.udp.get_mut(idx) else { return };
    if f.generation != generation {
        return;
    }
    let k = f.key;
    let fd = f.sock.as_raw_fd();
    f.last = Instant::now();
    for _ in 0..BATCH {
        let at = L4_AT + 8;
        let cap = st.out.buf.len() - at;
        match nix::sys::socket::recv(fd, &mut st.out.buf[at..at + cap], MsgFlags::MSG_DONTWAIT) {
            Ok(n) if k.proto == PROTO_UDP => {
                let len = frame::udp_header(&mut st.out.buf, st.out.mac, k.peer, k.guest, n);
                st.out.send(len);
            }
            Ok(n) => {
                if n < 8 || st.out.buf[at] != 0 {
                    continue;
                }
                let mut m = st.out.buf[at..at + n].to_vec();
                m[4..6].copy_from_slice(&k.guest.1.to_be_bytes());
                let len = frame::icmp(&mut st.out.buf, st.out.mac, k.peer.0, k.guest.0, &m);
                st.out.send(len);
            }
            Err(Errno::EAGAIN) => break,
            Err(Errno::ECONNREFUSED) if k.proto == PROTO_UDP => {
                unreachable_for(st, k);
                break;
            }
            Err(e) => {
                tracing::debug!(error = %e, "flow: recv");
                break;
            }
        }
    }
}

/// ICMP port unreachable for a flow whose destination refused a datagram.
fn unreachable_for(st: &mut Stack, k: FlowKey) {
    let mut pkt = [0u8; 28];
    pkt[0] = 0x45;
    pkt[2..4].copy_from_slice(&28u16.to_be_bytes());
    pkt[8] = 64;
    pkt[9] = PROTO_UDP;
    pkt[12..16].copy_from_slice(&k.guest.0.octets());
    pkt[16..20].copy_from_slice(&k.peer.0.octets());
    pkt[20..22].copy_from_slice(&k.guest.1.to_be_bytes());
    pkt[22..24].copy_from_slice(&k.peer.1.to_be_bytes());
    pkt[24..26].copy_from_slice(&8u16.to_be_bytes());
    let c = !frame::fold(frame::sum(&pkt[..20], 0));
    pkt[10..12].copy_from_slice(&c.to_be_bytes());
    if let Some(p) = frame::ipv4(&pkt) {
        st.icmp_unreachable(&p, 3);
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
            let limit = if f.key.peer.1 == 53 { DNS_IDLE } else { IDLE };
            (now.duration_since(f.last) > limit).then_some(i)
        })
        .collect();
    for i in idle {
        remove(st, i);
    }
}
