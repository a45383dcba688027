//! The link of a user-defined network as one member's monitor enforces it: what its
//! container may put on the wire and what it receives from the other members.
//!
//! Out of the tap, a frame must carry the container's own MAC (the one recorded at
//! attach and set on its tap) and, for IPv4, its own address (ARP: its own sender
//! MAC and address, or 0.0.0.0 for a probe); anything else is forged and dropped, so
//! a container that adds a neighbour's address (CAP_NET_ADMIN) or writes raw frames
//! cannot speak for that neighbour. ARP is answered here (the gateway's MAC for the
//! gateway, a member's recorded MAC for a member), so ARP never crosses; a frame for a
//! member's address goes to that member's monitor; one for the subnet's broadcast,
//! 255.255.255.255 or an IPv4 multicast group goes to every other member. The rest
//! (the gateway, the world) is the stack's.
//!
//! Into the tap, only frames for the container's address (their destination MAC set
//! to its own) and broadcast/multicast frames (as sent) are written; a frame carrying
//! our own source MAC would be our own coming back and is dropped.

use std::net::Ipv4Addr;

use super::frame::{self, IP_AT};
use super::stack::Stack;
use super::tap::{Addressing, VNET_HDR};

const ETH_ARP: u16 = 0x0806;
const ETH_IPV4: u16 = 0x0800;

fn ethertype(f: &[u8]) -> u16 {
    u16::from_be_bytes([f[IP_AT - 2], f[IP_AT - 1]])
}

fn src_mac(f: &[u8]) -> [u8; 6] {
    let mut m = [0u8; 6];
    m.copy_from_slice(&f[VNET_HDR + 6..VNET_HDR + 12]);
    m
}

/// Source and destination of an IPv4 packet. Lighter than frame::ipv4 on purpose:
/// fragments and packets with options cross the link between members as they are.
fn ipv4_addrs(p: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr)> {
    if p.len() < frame::IP || p[0] >> 4 != 4 || usize::from(p[0] & 0xf) * 4 < frame::IP {
        return None;
    }
    let src = Ipv4Addr::new(p[12], p[13], p[14], p[15]);
    let dst = Ipv4Addr::new(p[16], p[17], p[18], p[19]);
    Some((src, dst))
}

/// A destination every member receives: the limited broadcast, the subnet's own
/// broadcast address, or an IPv4 multicast group.
fn to_all(guest: &Addressing, dst: Ipv4Addr) -> bool {
    let mask = u32::from(guest.netmask);
    let bcast = u32::from(guest.ip) | !mask;
    // (A /31 or /32 has no broadcast address of its own.)
    dst.is_broadcast() || dst.is_multicast() || (!mask > 1 && u32::from(dst) == bcast)
}

/// Handles a frame (vnet header included, at least Ethernet long) that the container
/// of a user-defined network wrote to its tap. True: done with it (dropped, answered
/// or sent to members); false: the stack's (gateway and outbound traffic).
pub(super) fn guest_frame(st: &mut Stack, f: &[u8]) -> bool {
    let Some(peers) = st.peers.as_mut() else {
        return false;
    };
    let (me_ip, me_mac) = (peers.ip(), peers.mac());
    let from = src_mac(f);
    if from != me_mac {
        peers.forged("source MAC", &super::tap::format_mac(from));
        return true;
    }
    let payload = &f[IP_AT..];
    match ethertype(f) {
        ETH_ARP => {
            if payload.len() < 28 {
                return true;
            }
            let sender_mac = &payload[8..14];
            let sender_ip = Ipv4Addr::new(payload[14], payload[15], payload[16], payload[17]);
            if sender_mac != me_mac || (sender_ip != me_ip && !sender_ip.is_unspecified()) {
                peers.forged("ARP sender", &sender_ip.to_string());
                return true;
            }
            let target = Ipv4Addr::new(payload[24], payload[25], payload[26], payload[27]);
            let mac = if target == st.opts.gateway || target == st.opts.dns {
                frame::GW_MAC
            } else if target == me_ip {
                return true;
            } else {
                match peers.member_mac(target) {
                    Some(mac) => mac.unwrap_or(frame::GW_MAC),
                    None => return true,
                }
            };
            if let Some(len) = frame::arp_reply(&mut st.out.buf, payload, &[target]) {
                // As the member itself would answer: its MAC as the frame's source and
                // as the ARP sender.
                st.out.buf[VNET_HDR + 6..VNET_HDR + 12].copy_from_slice(&mac);
                st.out.buf[IP_AT + 8..IP_AT + 14].copy_from_slice(&mac);
                st.out.send(len);
            }
            true
        }
        ETH_IPV4 => {
            let Some((src, dst)) = ipv4_addrs(payload) else {
                return true;
            };
            if src != me_ip {
                peers.forged("source address", &src.to_string());
                return true;
            }
            if to_all(&st.opts.guest, dst) {
                peers.broadcast(f);
                return true;
            }
            if dst == st.opts.gateway || dst == st.opts.dns || !st.opts.on_link(dst) {
                return false;
            }
            peers.forward(f, dst);
            true
        }
        // Other protocols are the stack's (it ignores what it does not know).
        _ => false,
    }
}

/// Frames other members' monitors sent us, to our tap; at most `batch` per call.
pub(super) fn from_peers(st: &mut Stack, buf: &mut [u8], batch: usize) {
    let Some(peers) = st.peers.as_mut() else {
        return;
    };
    let (me_ip, me_mac) = (peers.ip(), peers.mac());
    for _ in 0..batch {
        let Some(n) = peers.recv(buf) else {
            break;
        };
        if n < IP_AT || ethertype(&buf[..n]) != ETH_IPV4 || src_mac(&buf[..n]) == me_mac {
            continue;
        }
        let Some((_, dst)) = ipv4_addrs(&buf[IP_AT..n]) else {
            continue;
        };
        if dst == me_ip {
            buf[VNET_HDR..VNET_HDR + 6].copy_from_slice(&me_mac);
        } else if !to_all(&st.opts.guest, dst) {
            continue;
        }
        if let Err(e) = nix::unistd::write(&st.out.tap, &buf[..n]) {
            st.out.dropped += 1;
            if st.out.dropped.is_power_of_two() {
                tracing::debug!(error = %e, dropped = st.out.dropped, "tap write (from a member)");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_multicast_and_subnet_broadcast_go_to_all() {
        let guest = Addressing {
            ip: Ipv4Addr::new(10, 89, 3, 7),
            netmask: Ipv4Addr::new(255, 255, 255, 0),
            gateway: None,
            mac: None,
        };
        for all in ["255.255.255.255", "10.89.3.255", "224.0.0.1", "239.1.2.3"] {
            assert!(to_all(&guest, all.parse().unwrap()), "{all}");
        }
        for one in ["10.89.3.1", "10.89.3.254", "10.89.4.255", "10.89.3.0"] {
            assert!(!to_all(&guest, one.parse().unwrap()), "{one}");
        }
    }

    #[test]
    fn addresses_of_fragments_and_packets_with_options() {
        let mut p = [0u8; 24];
        p[0] = 0x46; // IHL 6: one word of options
        p[6] = 0x20; // more fragments
        p[12..16].copy_from_slice(&[10, 89, 0, 2]);
        p[16..20].copy_from_slice(&[10, 89, 0, 3]);
        assert_eq!(
            ipv4_addrs(&p),
            Some((Ipv4Addr::new(10, 89, 0, 2), Ipv4Addr::new(10, 89, 0, 3)))
        );
        p[0] = 0x44; // IHL below 5
        assert_eq!(ipv4_addrs(&p), None);
        p[0] = 0x65; // IPv6
        assert_eq!(ipv4_addrs(&p), None);
        assert_eq!(ipv4_addrs(&p[..19]), None);
    }
}
