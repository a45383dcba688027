//! IPv6 frames from the container (`enable_ipv6`, fd00::/64): neighbor solicitations
//! for the gateway and DNS addresses are answered here, as is echo to them; TCP goes
//! through the same translation to host sockets as IPv4 (tcp.rs, with family-agnostic
//! keys), UDP and echo to other addresses through per-flow host sockets (udp.rs).
//! fd00::2 is the host's ::1 with allow_host_loopback=true, as 10.0.2.2 is 127.0.0.1;
//! fd00::3:53 is the DNS relay, whichever family the upstream resolver has.

use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV6};

use super::frame::{Ipv4Pkt, PROTO_TCP, PROTO_UDP};
use super::frame6::{self, Ipv6Pkt, ECHO_REPLY, ECHO_REQUEST, NEIGHBOR_SOLICIT, PROTO_ICMPV6};
use super::stack::{SlirpOptions, Stack};
use super::tcp;

/// Where an IPv6 destination the container sees maps to on the host; None: refused.
pub(super) fn map_dest6(opts: &SlirpOptions, dst: Ipv6Addr, port: u16) -> Option<SocketAddr> {
    let link = opts.ipv6.as_ref()?;
    if dst == link.dns && port == 53 {
        return opts.dns_upstream;
    }
    if dst == link.gateway {
        return opts
            .allow_host_loopback
            .then(|| SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::LOCALHOST, port, 0, 0)));
    }
    // IPv4-mapped and -compatible addresses would reach IPv4 destinations (127.0.0.1
    // among them) through an IPv6 socket: the container has IPv4 for those.
    let v4_in_v6 = dst.segments()[..5] == [0; 5];
    if link.on_link(dst)
        || opts.internal
        || dst.is_multicast()
        || dst.is_unspecified()
        || dst.is_loopback()
        || dst.is_unicast_link_local()
        || v4_in_v6
    {
        return None;
    }
    Some(SocketAddr::V6(SocketAddrV6::new(dst, port, 0, 0)))
}

/// A packet from the container of either family (ICMP errors quote it).
#[derive(Clone, Copy)]
pub(super) enum Pkt<'a> {
    V4(&'a Ipv4Pkt<'a>),
    V6(&'a Ipv6Pkt<'a>),
}

impl Pkt<'_> {
    pub(super) fn src(&self) -> IpAddr {
        match self {
            Pkt::V4(p) => p.src.into(),
            Pkt::V6(p) => p.src.into(),
        }
    }
    pub(super) fn dst(&self) -> IpAddr {
        match self {
            Pkt::V4(p) => p.dst.into(),
            Pkt::V6(p) => p.dst.into(),
        }
    }
    pub(super) fn payload(&self) -> &[u8] {
        match self {
            Pkt::V4(p) => p.payload,
            Pkt::V6(p) => p.payload,
        }
    }
}

/// ICMP destination unreachable about `p`: `code` as ICMP (v4) or ICMPv6 defines it.
fn unreachable(st: &mut Stack, p: Pkt, code: u8) {
    match p {
        Pkt::V4(p) => st.icmp_unreachable(p, code),
        Pkt::V6(p) => st.icmp6_unreachable(p, code),
    }
}

/// Port unreachable about `p`, in its family's numbering.
pub(super) fn port_unreachable(st: &mut Stack, p: Pkt) {
    let code = match p {
        Pkt::V4(_) => 3,
        Pkt::V6(_) => 4,
    };
    unreachable(st, p, code);
}

/// The link's DNS address of `ip`'s family.
pub(super) fn dns_of(opts: &SlirpOptions, ip: IpAddr) -> Option<IpAddr> {
    match ip {
        IpAddr::V4(_) => Some(opts.dns.into()),
        IpAddr::V6(_) => opts.ipv6.map(|l| l.dns.into()),
    }
}

/// The gateway or DNS address (of either family): answered by the monitor itself.
pub(super) fn is_ours(opts: &SlirpOptions, ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => a == opts.gateway || a == opts.dns,
        IpAddr::V6(a) => opts.ipv6.is_some_and(|l| a == l.gateway || a == l.dns),
    }
}

impl Stack {
    /// An IPv6 frame's payload (after Ethernet) from the container's MAC `src_mac`.
    pub(super) fn frame6(&mut self, src_mac: [u8; 6], payload: &[u8]) {
        if self.opts.ipv6.is_none() {
            return;
        }
        let Some(p) = frame6::ipv6(payload) else {
            return;
        };
        match p.proto {
            PROTO_TCP => tcp::guest_segment(self, p.src.into(), p.dst.into(), p.payload),
            PROTO_UDP => super::udp::guest_datagram6(self, &p),
            PROTO_ICMPV6 => self.icmp6(src_mac, &p),
            _ => {}
        }
    }

    fn icmp6(&mut self, src_mac: [u8; 6], p: &Ipv6Pkt) {
        let Some(link) = self.opts.ipv6 else { return };
        let m = p.payload;
        if m.len() < 8 {
            return;
        }
        match m[0] {
            NEIGHBOR_SOLICIT => {
                let ours = [link.gateway, link.dns];
                if let Some(n) = frame6::neighbor_advert(&mut self.out.buf, p, src_mac, &ours) {
                    self.out.send(n);
                }
            }
            ECHO_REQUEST if p.dst == link.gateway || p.dst == link.dns => {
                let mut reply = m.to_vec();
                reply[0] = ECHO_REPLY;
                let n = frame6::icmp6(&mut self.out.buf, self.out.mac, p.dst, p.src, &reply, 64);
                self.out.send(n);
            }
            ECHO_REQUEST if !p.dst.is_multicast() => super::udp::guest_echo6(self, p),
            _ => {}
        }
    }

    /// Sends an ICMPv6 destination unreachable about `p` to the container (code 4:
    /// port unreachable).
    pub(super) fn icmp6_unreachable(&mut self, p: &Ipv6Pkt, code: u8) {
        let m = frame6::unreachable_msg(p, code);
        let n = frame6::icmp6(&mut self.out.buf, self.out.mac, p.dst, p.src, &m, 64);
        self.out.send(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(loopback: bool) -> SlirpOptions {
        SlirpOptions::slirp(loopback, Some("127.0.0.1:5300".parse().unwrap()), true)
    }

    fn map(o: &SlirpOptions, dst: &str, port: u16) -> Option<SocketAddr> {
        map_dest6(o, dst.parse().unwrap(), port)
    }

    #[test]
    fn gateway_is_host_loopback_only_when_allowed() {
        assert_eq!(
            map(&opts(true), "fd00::2", 80),
            Some("[::1]:80".parse().unwrap())
        );
        assert_eq!(map(&opts(false), "fd00::2", 80), None);
        // DNS relays to the upstream, whatever its family; other ports are refused.
        assert_eq!(
            map(&opts(false), "fd00::3", 53),
            Some("127.0.0.1:5300".parse().unwrap())
        );
        assert_eq!(map(&opts(true), "fd00::3", 80), None);
    }

    #[test]
    fn only_routable_destinations_leave() {
        let o = opts(true);
        assert_eq!(
            map(&o, "2001:db8::1", 443),
            Some("[2001:db8::1]:443".parse().unwrap())
        );
        for refused in [
            "::1",
            "::",
            "fd00::100",
            "fd00::7",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.2.2",
            "::127.0.0.1",
        ] {
            assert_eq!(map(&o, refused, 80), None, "{refused}");
        }
        // Without IPv6 on the link nothing maps; --internal keeps the link only.
        let mut o = opts(true);
        o.ipv6 = None;
        assert_eq!(map(&o, "2001:db8::1", 443), None);
        let mut o = opts(true);
        o.internal = true;
        assert_eq!(map(&o, "2001:db8::1", 443), None);
    }

    #[test]
    fn host_sources_appear_as_the_container_addresses_them() {
        use super::super::udp::guest_source;
        let sa = |s: &str| -> SocketAddr { s.parse().unwrap() };
        // The host's ::1 is fd00::2, only with allow_host_loopback.
        assert_eq!(
            guest_source(&opts(true), sa("[::1]:4000")),
            Some(sa("[fd00::2]:4000"))
        );
        assert_eq!(guest_source(&opts(false), sa("[::1]:4000")), None);
        assert_eq!(
            guest_source(&opts(false), sa("[2001:db8::9]:53")),
            Some(sa("[2001:db8::9]:53"))
        );
        // A scope or flow label on what recvfrom reports changes nothing.
        let scoped = SocketAddr::V6(SocketAddrV6::new("2001:db8::9".parse().unwrap(), 53, 7, 0));
        assert_eq!(
            guest_source(&opts(false), scoped),
            Some(sa("[2001:db8::9]:53"))
        );
        for unanswerable in ["[fd00::7]:53", "[fe80::1]:53", "[::ffff:127.0.0.1]:53"] {
            assert_eq!(
                guest_source(&opts(true), sa(unanswerable)),
                None,
                "{unanswerable}"
            );
        }
    }
}
