//! IPv6 frames on the TAP (slirp4netns's fd00::/64 layout): parsing what the container
//! sends, IPv6 headers for what goes back (the same partial-checksum virtio header as
//! IPv4, with the L4 header 40 bytes after the IP header's start), neighbor
//! advertisements for our own addresses, and ICMPv6 messages with their checksums
//! (ICMPv6 sums a pseudo-header, unlike ICMP; the messages are small, so they are
//! summed here).

use std::net::Ipv6Addr;

use super::frame::{fold, sum, GW_MAC, IP_AT};

pub const IP6: usize = 40;
/// Where the L4 header of a written IPv6 frame starts.
pub const L4_AT6: usize = IP_AT + IP6;
pub const ETHERTYPE: u16 = 0x86dd;
pub const PROTO_ICMPV6: u8 = 58;

pub const ECHO_REQUEST: u8 = 128;
pub const ECHO_REPLY: u8 = 129;
pub const NEIGHBOR_SOLICIT: u8 = 135;
pub const NEIGHBOR_ADVERT: u8 = 136;
/// Hop limit of neighbor discovery (RFC 4861: anything else is dropped).
pub const ND_HOPS: u8 = 255;

/// The smallest MTU IPv6 allows: an ICMPv6 error quotes no more than fits in it.
const MIN_MTU: usize = 1280;

/// A parsed IPv6 packet: extension headers other than fragments skipped.
pub struct Ipv6Pkt<'a> {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    /// The upper-layer protocol (after extension headers).
    pub proto: u8,
    pub hop_limit: u8,
    /// The whole packet as received (for ICMPv6 errors quoting it).
    pub packet: &'a [u8],
    pub payload: &'a [u8],
}

fn addr(b: &[u8]) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[..16]);
    Ipv6Addr::from(a)
}

/// Parses the IPv6 packet after the Ethernet header; None for anything malformed or a
/// fragment (the MTU makes those rare; they are dropped).
pub fn ipv6(p: &[u8]) -> Option<Ipv6Pkt<'_>> {
    if p.len() < IP6 || p[0] >> 4 != 6 {
        return None;
    }
    let total = IP6 + usize::from(u16::from_be_bytes([p[4], p[5]]));
    if total > p.len() {
        return None;
    }
    let mut next = p[6];
    let mut at = IP6;
    // Hop-by-hop, routing and destination options: skip (MLD reports carry one).
    for _ in 0..8 {
        if !matches!(next, 0 | 43 | 60) {
            break;
        }
        let h = p.get(at..at + 2)?;
        next = h[0];
        at += 8 + usize::from(h[1]) * 8;
        if at > total {
            return None;
        }
    }
    if matches!(next, 0 | 43 | 44 | 60) {
        return None;
    }
    Some(Ipv6Pkt {
        src: addr(&p[8..24]),
        dst: addr(&p[24..40]),
        proto: next,
        hop_limit: p[7],
        packet: &p[..total],
        payload: &p[at..total],
    })
}

/// Writes vnet, Ethernet and IPv6 headers for `l4_len` bytes of protocol `proto` into
/// `buf[..L4_AT6]`. `csum_offset` (within the L4 header) asks the kernel to complete
/// that checksum; the caller stores the pseudo-header sum there.
#[allow(clippy::too_many_arguments)]
pub fn headers6(
    buf: &mut [u8],
    dst_mac: [u8; 6],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    proto: u8,
    l4_len: usize,
    csum_offset: Option<u16>,
    hops: u8,
) {
    super::frame::link_headers(buf, dst_mac, ETHERTYPE, L4_AT6, csum_offset);
    let ip = &mut buf[IP_AT..L4_AT6];
    ip[0..4].copy_from_slice(&[0x60, 0, 0, 0]);
    ip[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
    ip[6] = proto;
    ip[7] = hops;
    ip[8..24].copy_from_slice(&src.octets());
    ip[24..40].copy_from_slice(&dst.octets());
}

/// The IPv6 pseudo-header sum (folded, not inverted).
pub fn pseudo6(src: Ipv6Addr, dst: Ipv6Addr, proto: u8, len: usize) -> u16 {
    let mut s = sum(&src.octets(), 0);
    s = sum(&dst.octets(), s);
    s += (len as u64 >> 16) + (len as u64 & 0xffff) + u64::from(proto);
    fold(s)
}

/// Writes an ICMPv6 message (type, code, checksum field, body) at L4_AT6 with its
/// checksum; returns the frame length.
pub fn icmp6(
    buf: &mut [u8],
    dst_mac: [u8; 6],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    msg: &[u8],
    hops: u8,
) -> usize {
    headers6(buf, dst_mac, src, dst, PROTO_ICMPV6, msg.len(), None, hops);
    let m = &mut buf[L4_AT6..L4_AT6 + msg.len()];
    m.copy_from_slice(msg);
    m[2..4].fill(0);
    let pseudo = pseudo6(src, dst, PROTO_ICMPV6, msg.len());
    let c = !fold(sum(m, u64::from(pseudo)));
    m[2..4].copy_from_slice(&c.to_be_bytes());
    L4_AT6 + msg.len()
}

/// True if the ICMPv6 message in `p` carries a correct checksum.
#[cfg(test)]
pub fn icmp6_valid(p: &Ipv6Pkt) -> bool {
    let pseudo = pseudo6(p.src, p.dst, PROTO_ICMPV6, p.payload.len());
    fold(sum(p.payload, u64::from(pseudo))) == 0xffff
}

/// A neighbor advertisement answering the solicitation `p` if it asks for one of
/// `ours`; `eth_src` is the asker's MAC (used when the solicitation names none).
/// Written at the start of `buf`; returns the frame length.
pub fn neighbor_advert(
    buf: &mut [u8],
    p: &Ipv6Pkt,
    eth_src: [u8; 6],
    ours: &[Ipv6Addr],
) -> Option<usize> {
    let m = p.payload;
    if m.len() < 24 || m[0] != NEIGHBOR_SOLICIT || m[1] != 0 || p.hop_limit != ND_HOPS {
        return None;
    }
    let target = addr(&m[8..24]);
    // An unspecified source is the guest's duplicate address detection: not ours.
    if !ours.contains(&target) || p.src.is_unspecified() {
        return None;
    }
    let mut mac = eth_src;
    let mut o = &m[24..];
    while o.len() >= 8 {
        let len = usize::from(o[1]) * 8;
        if len == 0 || len > o.len() {
            break;
        }
        if o[0] == 1 {
            mac.copy_from_slice(&o[2..8]);
        }
        o = &o[len..];
    }
    let mut na = [0u8; 32];
    na[0] = NEIGHBOR_ADVERT;
    na[4] = 0xe0; // router, solicited, override
    na[8..24].copy_from_slice(&target.octets());
    na[24] = 2; // target link-layer address
    na[25] = 1;
    na[26..32].copy_from_slice(&GW_MAC);
    Some(icmp6(buf, mac, target, p.src, &na, ND_HOPS))
}

/// An ICMPv6 destination unreachable (`code`: 1 prohibited, 4 port unreachable)
/// quoting as much of `p` as the minimum MTU allows.
pub fn unreachable_msg(p: &Ipv6Pkt, code: u8) -> Vec<u8> {
    let quote = p.packet.len().min(MIN_MTU - IP6 - 8);
    let mut m = Vec::with_capacity(8 + quote);
    m.extend_from_slice(&[1, code, 0, 0, 0, 0, 0, 0]);
    m.extend_from_slice(&p.packet[..quote]);
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::frame::{self, ACK, SYN};
    use crate::network::tap::VNET_HDR;

    const GUEST: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x100);
    const GW: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);

    /// A frame as the container would send it (no vnet header), parsed back.
    fn strip(b: &[u8], n: usize) -> Ipv6Pkt<'_> {
        assert_eq!(u16::from_be_bytes([b[IP_AT - 2], b[IP_AT - 1]]), ETHERTYPE);
        ipv6(&b[IP_AT..n]).expect("parses")
    }

    #[test]
    fn tcp_frame_round_trips_with_a_partial_checksum_for_the_kernel() {
        let mut b = vec![0u8; 256];
        let n = frame::tcp_header(
            &mut b,
            [1; 6],
            (GW.into(), 80),
            (GUEST.into(), 4000),
            7,
            8,
            SYN | ACK,
            100,
            &[2, 4, 0xff, 0xb4],
            0,
        );
        assert_eq!(n, L4_AT6 + 24);
        let p = strip(&b, n);
        assert_eq!((p.src, p.dst, p.proto, p.hop_limit), (GW, GUEST, 6, 64));
        let t = frame::tcp(p.payload).expect("tcp");
        assert_eq!(
            (t.sport, t.dport, t.seq, t.mss),
            (80, 4000, 7, Some(0xffb4))
        );
        // virtio: NEEDS_CSUM, csum_start at the TCP header (after Ethernet + IPv6),
        // csum_offset 16; the field holds the pseudo-header sum, so summing the
        // segment completes it the way the kernel will.
        assert_eq!(b[0], 1);
        assert_eq!(u16::from_le_bytes([b[6], b[7]]) as usize, frame::ETH + IP6);
        assert_eq!(u16::from_le_bytes([b[8], b[9]]), 16);
        let partial = u16::from_be_bytes([b[L4_AT6 + 16], b[L4_AT6 + 17]]);
        assert_eq!(partial, pseudo6(GW, GUEST, 6, 24));
        let c = !fold(sum(&b[L4_AT6..n], 0));
        b[L4_AT6 + 16..L4_AT6 + 18].copy_from_slice(&c.to_be_bytes());
        let full = fold(sum(&b[L4_AT6..n], u64::from(pseudo6(GW, GUEST, 6, 24))));
        assert_eq!(full, 0xffff);
    }

    #[test]
    fn pseudo_header_matches_a_known_sum() {
        // fd00::2 -> fd00::100, UDP, 12 bytes: 0xfd00*2 + 2 + 0x100 + 12 + 17 = 0x1fb1f
        // -> folded 0xfb20.
        assert_eq!(pseudo6(GW, GUEST, 17, 12), 0xfb20);
        // Lengths above 64 KiB (jumbo) still sum both halves.
        assert_eq!(
            pseudo6(Ipv6Addr::UNSPECIFIED, Ipv6Addr::UNSPECIFIED, 0, 0x1_0001),
            2
        );
    }

    fn solicitation(target: Ipv6Addr, src: Ipv6Addr, hops: u8) -> Vec<u8> {
        let mut m = vec![NEIGHBOR_SOLICIT, 0, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(&target.octets());
        m.extend_from_slice(&[1, 1, 2, 2, 2, 2, 2, 2]);
        let mut b = vec![0u8; 256];
        let n = icmp6(
            &mut b,
            GW_MAC,
            src,
            "ff02::1:ff00:2".parse().unwrap(),
            &m,
            hops,
        );
        b[IP_AT..n].to_vec()
    }

    #[test]
    fn neighbor_solicitation_for_the_gateway_is_answered() {
        let ns = solicitation(GW, GUEST, ND_HOPS);
        let p = ipv6(&ns).unwrap();
        assert!(icmp6_valid(&p));
        let mut b = vec![0u8; 256];
        let n = neighbor_advert(&mut b, &p, [9; 6], &[GW]).expect("answered");
        // To the MAC the solicitation named, from the target, hop limit 255.
        assert_eq!(&b[VNET_HDR..VNET_HDR + 6], &[2; 6]);
        let na = strip(&b, n);
        assert_eq!((na.src, na.dst, na.hop_limit), (GW, GUEST, ND_HOPS));
        assert!(icmp6_valid(&na));
        assert_eq!(na.payload[0], NEIGHBOR_ADVERT);
        assert_eq!(na.payload[4], 0xe0);
        assert_eq!(&na.payload[8..24], &GW.octets());
        assert_eq!(&na.payload[26..32], &GW_MAC);
        // Another address, a forwarded (hop limit < 255) one, or DAD: no answer.
        let other = solicitation("fd00::7".parse().unwrap(), GUEST, ND_HOPS);
        assert!(neighbor_advert(&mut b, &ipv6(&other).unwrap(), [9; 6], &[GW]).is_none());
        let hopped = solicitation(GW, GUEST, 64);
        assert!(neighbor_advert(&mut b, &ipv6(&hopped).unwrap(), [9; 6], &[GW]).is_none());
        let dad = solicitation(GW, Ipv6Addr::UNSPECIFIED, ND_HOPS);
        assert!(neighbor_advert(&mut b, &ipv6(&dad).unwrap(), [9; 6], &[GW]).is_none());
    }

    #[test]
    fn extension_headers_are_skipped_and_fragments_dropped() {
        let mut p = vec![0u8; 40 + 8 + 4];
        p[0] = 0x60;
        p[4..6].copy_from_slice(&12u16.to_be_bytes());
        p[6] = 0; // hop-by-hop
        p[40] = PROTO_ICMPV6;
        p[41] = 0;
        p[48] = 143; // an MLDv2 report's type
        let pk = ipv6(&p).unwrap();
        assert_eq!(
            (pk.proto, pk.payload.len(), pk.payload[0]),
            (PROTO_ICMPV6, 4, 143)
        );
        p[40] = 44;
        assert!(ipv6(&p).is_none(), "a fragment header");
        // A length beyond the frame, a short header, IPv4.
        p[40] = PROTO_ICMPV6;
        p[4..6].copy_from_slice(&13u16.to_be_bytes());
        assert!(ipv6(&p).is_none());
        assert!(ipv6(&p[..39]).is_none());
        p[0] = 0x45;
        assert!(ipv6(&p).is_none());
    }

    #[test]
    fn unreachable_quotes_within_the_minimum_mtu() {
        let mut big = vec![0u8; 40 + 3000];
        big[0] = 0x60;
        big[4..6].copy_from_slice(&3000u16.to_be_bytes());
        big[6] = 17;
        let p = ipv6(&big).unwrap();
        let m = unreachable_msg(&p, 4);
        assert_eq!(m.len(), MIN_MTU - IP6);
        assert_eq!(&m[..2], &[1, 4]);
        let mut b = vec![0u8; 2048];
        let n = icmp6(&mut b, [1; 6], GW, GUEST, &m, 64);
        assert!(icmp6_valid(&strip(&b, n)));
    }
}
