//! Frames on the TAP: parsing what the container sends (Ethernet, ARP, IPv4, TCP, UDP,
//! ICMP; IPv6 and NDP in frame6.rs) and writing headers for what goes back. Every frame starts with a 10-byte
//! `virtio_net_hdr` (IFF_VNET_HDR); the ones we write ask the kernel to treat the TCP or
//! UDP checksum as partial (VIRTIO_NET_HDR_F_NEEDS_CSUM), so no payload is ever summed
//! in user space: the container's kernel delivers such frames locally as valid.

use std::net::{IpAddr, Ipv4Addr};

use super::tap::VNET_HDR;

pub const ETH: usize = 14;
pub const IP: usize = 20;
/// Where the IP header of a written frame starts.
pub const IP_AT: usize = VNET_HDR + ETH;
/// Where the L4 header of a written IPv4 frame starts.
pub const L4_AT: usize = IP_AT + IP;

/// Where the L4 header of a written frame to or from `ip` starts.
pub fn l4_at(ip: IpAddr) -> usize {
    match ip {
        IpAddr::V4(_) => L4_AT,
        IpAddr::V6(_) => super::frame6::L4_AT6,
    }
}
/// The gateway's (our) MAC address, as slirp4netns uses.
pub const GW_MAC: [u8; 6] = [0x52, 0x55, 0x0a, 0x00, 0x02, 0x02];

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Ones' complement sum of `data` (big-endian 16-bit words) added to `sum`, unfolded.
pub fn sum(data: &[u8], mut sum: u64) -> u64 {
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        sum += u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
    }
    let rest = chunks.remainder();
    let mut i = 0;
    while i + 1 < rest.len() {
        sum += u64::from(be16(rest, i));
        i += 2;
    }
    if i < rest.len() {
        sum += u64::from(rest[i]) << 8;
    }
    sum
}

/// Folds a sum to 16 bits (not inverted).
pub fn fold(mut s: u64) -> u16 {
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// A parsed IPv4 packet (options skipped).
pub struct Ipv4Pkt<'a> {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    /// The IP header as received (for ICMP errors quoting it).
    pub header: &'a [u8],
    pub payload: &'a [u8],
}

/// Parses the IPv4 packet after the Ethernet header; None for anything malformed or a
/// fragment (the MTU makes those rare; they are dropped).
pub fn ipv4(p: &[u8]) -> Option<Ipv4Pkt<'_>> {
    if p.len() < IP || p[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(p[0] & 0xf) * 4;
    let total = usize::from(be16(p, 2));
    if ihl < IP || total < ihl || total > p.len() {
        return None;
    }
    let frag = be16(p, 6);
    if frag & 0x3fff != 0 {
        return None;
    }
    Some(Ipv4Pkt {
        src: Ipv4Addr::from(be32(p, 12)),
        dst: Ipv4Addr::from(be32(p, 16)),
        proto: p[9],
        header: &p[..ihl],
        payload: &p[ihl..total],
    })
}

/// A parsed TCP segment.
pub struct TcpSeg<'a> {
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    /// MSS and window-scale options (SYN only).
    pub mss: Option<u16>,
    pub wscale: Option<u8>,
    pub payload: &'a [u8],
}

pub fn tcp(p: &[u8]) -> Option<TcpSeg<'_>> {
    if p.len() < 20 {
        return None;
    }
    let off = usize::from(p[12] >> 4) * 4;
    if off < 20 || off > p.len() {
        return None;
    }
    let flags = p[13];
    let (mut mss, mut wscale) = (None, None);
    if flags & SYN != 0 {
        let mut o = &p[20..off];
        while let Some(&kind) = o.first() {
            match kind {
                0 => break,
                1 => o = &o[1..],
                _ => {
                    let len = usize::from(*o.get(1)?);
                    if len < 2 || len > o.len() {
                        break;
                    }
                    match (kind, len) {
                        (2, 4) => mss = Some(be16(o, 2)),
                        (3, 3) => wscale = Some(o[2].min(14)),
                        _ => {}
                    }
                    o = &o[len..];
                }
            }
        }
    }
    Some(TcpSeg {
        sport: be16(p, 0),
        dport: be16(p, 2),
        seq: be32(p, 4),
        ack: be32(p, 8),
        flags,
        window: be16(p, 14),
        mss,
        wscale,
        payload: &p[off..],
    })
}

/// (source port, destination port, payload) of a UDP datagram.
pub fn udp(p: &[u8]) -> Option<(u16, u16, &[u8])> {
    if p.len() < 8 {
        return None;
    }
    let len = usize::from(be16(p, 4));
    if len < 8 || len > p.len() {
        return None;
    }
    Some((be16(p, 0), be16(p, 2), &p[8..len]))
}

/// Writes vnet, Ethernet and IPv4 headers for an IPv4 packet of `l4_len` bytes of
/// protocol `proto` into `buf[..L4_AT]`. `csum_offset` (within the L4 header) asks the
/// kernel to complete that checksum; the caller stores the pseudo-header sum there.
pub fn headers(
    buf: &mut [u8],
    dst_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    l4_len: usize,
    csum_offset: Option<u16>,
) {
    link_headers(buf, dst_mac, 0x0800, L4_AT, csum_offset);
    let ip = &mut buf[IP_AT..L4_AT];
    ip[0] = 0x45;
    ip[1] = 0;
    ip[2..4].copy_from_slice(&((IP + l4_len) as u16).to_be_bytes());
    ip[4..6].fill(0);
    ip[6..8].copy_from_slice(&0x4000u16.to_be_bytes());
    ip[8] = 64;
    ip[9] = proto;
    ip[10..12].fill(0);
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    let c = !fold(sum(ip, 0));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
}

/// The vnet header (asking the kernel to complete the checksum at `csum_offset` within
/// the L4 header that starts at `l4_at`, if any) and an Ethernet header from the
/// gateway to `dst_mac`, for IPv4 and IPv6 alike.
pub(super) fn link_headers(
    buf: &mut [u8],
    dst_mac: [u8; 6],
    ethertype: u16,
    l4_at: usize,
    csum_offset: Option<u16>,
) {
    let v = &mut buf[..VNET_HDR];
    v.fill(0);
    if let Some(off) = csum_offset {
        v[0] = 1; // VIRTIO_NET_HDR_F_NEEDS_CSUM
        v[6..8].copy_from_slice(&((l4_at - VNET_HDR) as u16).to_le_bytes());
        v[8..10].copy_from_slice(&off.to_le_bytes());
    }
    let e = &mut buf[VNET_HDR..IP_AT];
    e[0..6].copy_from_slice(&dst_mac);
    e[6..12].copy_from_slice(&GW_MAC);
    e[12..14].copy_from_slice(&ethertype.to_be_bytes());
}

/// The pseudo-header sum for TCP/UDP checksums (folded, not inverted).
pub fn pseudo(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: usize) -> u16 {
    let mut s = sum(&src.octets(), 0);
    s = sum(&dst.octets(), s);
    s += u64::from(proto) + len as u64;
    fold(s)
}

/// Writes vnet, Ethernet and IP headers (v4 or v6, as the addresses are) for `l4_len`
/// bytes of protocol `proto`; returns where the L4 header starts.
pub fn headers_ip(
    buf: &mut [u8],
    dst_mac: [u8; 6],
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    l4_len: usize,
    csum_offset: Option<u16>,
) -> usize {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            headers(buf, dst_mac, s, d, proto, l4_len, csum_offset);
            L4_AT
        }
        (s, d) => {
            let v6 = |a: IpAddr| match a {
                IpAddr::V4(a) => a.to_ipv6_mapped(),
                IpAddr::V6(a) => a,
            };
            super::frame6::headers6(buf, dst_mac, v6(s), v6(d), proto, l4_len, csum_offset, 64);
            super::frame6::L4_AT6
        }
    }
}

/// The pseudo-header sum of either family (folded, not inverted).
pub fn pseudo_ip(src: IpAddr, dst: IpAddr, proto: u8, len: usize) -> u16 {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => pseudo(s, d, proto, len),
        (s, d) => {
            let v6 = |a: IpAddr| match a {
                IpAddr::V4(a) => a.to_ipv6_mapped(),
                IpAddr::V6(a) => a,
            };
            super::frame6::pseudo6(v6(s), v6(d), proto, len)
        }
    }
}

/// Writes a TCP header (20 bytes plus `opts`) at `l4_at(src)`; returns the frame length.
#[allow(clippy::too_many_arguments)]
pub fn tcp_header(
    buf: &mut [u8],
    dst_mac: [u8; 6],
    src: (IpAddr, u16),
    dst: (IpAddr, u16),
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    opts: &[u8],
    payload_len: usize,
) -> usize {
    let hl = 20 + opts.len();
    let l4 = hl + payload_len;
    let at = headers_ip(buf, dst_mac, src.0, dst.0, PROTO_TCP, l4, Some(16));
    let t = &mut buf[at..at + hl];
    t[0..2].copy_from_slice(&src.1.to_be_bytes());
    t[2..4].copy_from_slice(&dst.1.to_be_bytes());
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[8..12].copy_from_slice(&ack.to_be_bytes());
    t[12] = ((hl / 4) as u8) << 4;
    t[13] = flags;
    t[14..16].copy_from_slice(&window.to_be_bytes());
    t[16..18].copy_from_slice(&pseudo_ip(src.0, dst.0, PROTO_TCP, l4).to_be_bytes());
    t[18..20].fill(0);
    t[20..].copy_from_slice(opts);
    at + l4
}

/// Writes a UDP header at `l4_at(src)` for a payload already 8 bytes after it; returns
/// the frame length.
pub fn udp_header<A: Into<IpAddr>>(
    buf: &mut [u8],
    dst_mac: [u8; 6],
    src: (A, u16),
    dst: (A, u16),
    payload_len: usize,
) -> usize {
    let (s, d) = (src.0.into(), dst.0.into());
    let l4 = 8 + payload_len;
    let at = headers_ip(buf, dst_mac, s, d, PROTO_UDP, l4, Some(6));
    let u = &mut buf[at..at + 8];
    u[0..2].copy_from_slice(&src.1.to_be_bytes());
    u[2..4].copy_from_slice(&dst.1.to_be_bytes());
    u[4..6].copy_from_slice(&(l4 as u16).to_be_bytes());
    u[6..8].copy_from_slice(&pseudo_ip(s, d, PROTO_UDP, l4).to_be_bytes());
    at + l4
}

/// Writes an ICMP message (`icmp` = type, code, rest of header and data, checksum field
/// zero) at L4_AT with its checksum; returns the frame length.
pub fn icmp(buf: &mut [u8], dst_mac: [u8; 6], src: Ipv4Addr, dst: Ipv4Addr, icmp: &[u8]) -> usize {
    headers(buf, dst_mac, src, dst, PROTO_ICMP, icmp.len(), None);
    let m = &mut buf[L4_AT..L4_AT + icmp.len()];
    m.copy_from_slice(icmp);
    m[2..4].fill(0);
    let c = !fold(sum(m, 0));
    m[2..4].copy_from_slice(&c.to_be_bytes());
    L4_AT + icmp.len()
}

/// An ARP reply to `req` (the ARP payload) if it asks for one of `ours`; written at
/// VNET_HDR; returns the frame length.
pub fn arp_reply(buf: &mut [u8], req: &[u8], ours: &[Ipv4Addr]) -> Option<usize> {
    if req.len() < 28 || be16(req, 0) != 1 || be16(req, 2) != 0x0800 || be16(req, 6) != 1 {
        return None;
    }
    let target = Ipv4Addr::from(be32(req, 24));
    if !ours.contains(&target) {
        return None;
    }
    let sender_mac: [u8; 6] = req[8..14].try_into().ok()?;
    buf[..VNET_HDR].fill(0);
    let e = &mut buf[VNET_HDR..IP_AT];
    e[0..6].copy_from_slice(&sender_mac);
    e[6..12].copy_from_slice(&GW_MAC);
    e[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    let a = &mut buf[IP_AT..IP_AT + 28];
    a[0..6].copy_from_slice(&req[0..6]);
    a[6..8].copy_from_slice(&2u16.to_be_bytes());
    a[8..14].copy_from_slice(&GW_MAC);
    a[14..18].copy_from_slice(&target.octets());
    a[18..24].copy_from_slice(&sender_mac);
    a[24..28].copy_from_slice(&req[14..18]);
    Some(IP_AT + 28)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_header_checksums_to_zero() {
        let mut b = vec![0u8; 128];
        headers(
            &mut b,
            [1; 6],
            Ipv4Addr::new(10, 0, 2, 2),
            Ipv4Addr::new(10, 0, 2, 100),
            PROTO_TCP,
            40,
            Some(16),
        );
        assert_eq!(fold(sum(&b[IP_AT..L4_AT], 0)), 0xffff);
        let p = ipv4(&b[IP_AT..L4_AT + 40]).unwrap();
        assert_eq!(p.dst, Ipv4Addr::new(10, 0, 2, 100));
        assert_eq!(p.payload.len(), 40);
    }

    #[test]
    fn syn_options_parse() {
        let mut b = vec![0u8; 128];
        let n = tcp_header(
            &mut b,
            [1; 6],
            (Ipv4Addr::new(1, 2, 3, 4).into(), 5),
            (Ipv4Addr::new(5, 6, 7, 8).into(), 9),
            7,
            8,
            SYN | ACK,
            100,
            &[2, 4, 0xff, 0xc8, 1, 3, 3, 7],
            0,
        );
        let t = tcp(&b[L4_AT..n]).unwrap();
        assert_eq!(
            (t.mss, t.wscale, t.seq, t.ack),
            (Some(0xffc8), Some(7), 7, 8)
        );
        assert!(t.payload.is_empty());
    }

    #[test]
    fn arp_for_gateway_only() {
        let mut req = vec![0u8; 28];
        req[0..8].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
        req[8..14].copy_from_slice(&[2; 6]);
        req[14..18].copy_from_slice(&[10, 0, 2, 100]);
        req[24..28].copy_from_slice(&[10, 0, 2, 2]);
        let mut b = vec![0u8; 128];
        let gw = [Ipv4Addr::new(10, 0, 2, 2)];
        let n = arp_reply(&mut b, &req, &gw).unwrap();
        assert_eq!(&b[IP_AT + 8..IP_AT + 14], &GW_MAC);
        assert_eq!(n, IP_AT + 28);
        req[27] = 9;
        assert!(arp_reply(&mut b, &req, &gw).is_none());
    }
}
