//! IPv6 on tap0 (slirp4netns's `enable_ipv6=true` layout: fd00::/64, gateway and host
//! fd00::2, DNS fd00::3). slirp4netns lets the guest's kernel pick its address by SLAAC
//! from router advertisements, which lands a second or more after the container's
//! program has started (duplicate address detection, router solicitation delay). The
//! init here sets a fixed address (fd00::100/64, as 10.0.2.100) and the default route
//! via fd00::2 with two ioctls before the container's program runs, with duplicate
//! address detection off on tap0 (the monitor is the link's only other end), so the
//! address is usable at once. Offered only where the host itself has IPv6 (a global or
//! unique-local address, or an IPv6 default route); decided when the container is
//! created.

use std::net::Ipv6Addr;
use std::os::fd::AsRawFd;

use super::tap::NAME;

pub const GUEST_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x100);
pub const GATEWAY_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);
pub const DNS_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 3);
pub const PREFIX_LEN: u8 = 64;

/// The IPv6 side of the link, as the monitor serves it.
#[derive(Debug, Clone, Copy)]
pub struct Link6 {
    pub guest: Ipv6Addr,
    pub gateway: Ipv6Addr,
    pub dns: Ipv6Addr,
    pub prefix_len: u8,
}

/// slirp4netns's layout.
pub const SLIRP6: Link6 = Link6 {
    guest: GUEST_IP6,
    gateway: GATEWAY_IP6,
    dns: DNS_IP6,
    prefix_len: PREFIX_LEN,
};

impl Link6 {
    /// On the container's link (its prefix).
    pub fn on_link(&self, ip: Ipv6Addr) -> bool {
        let m = u128::MAX
            .checked_shl(128 - u32::from(self.prefix_len))
            .unwrap_or(0);
        u128::from(ip) & m == u128::from(self.guest) & m
    }
}

/// Whether the host has IPv6 to offer: a non-loopback address that is not link-local
/// (global or unique-local) or an IPv6 default route, in the caller's network
/// namespace.
pub fn host_has_ipv6() -> bool {
    let addrs = std::fs::read_to_string("/proc/net/if_inet6").unwrap_or_default();
    let routes = std::fs::read_to_string("/proc/net/ipv6_route").unwrap_or_default();
    let has = has_ipv6(&addrs, &routes);
    tracing::debug!(has, "host IPv6 (/proc/net/if_inet6, /proc/net/ipv6_route)");
    has
}

/// [`host_has_ipv6`] on the two files' contents.
pub fn has_ipv6(if_inet6: &str, ipv6_route: &str) -> bool {
    let addr = if_inet6.lines().any(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        // address ifindex prefixlen scope flags name; scope 0 is global.
        w.len() >= 6 && w[3] == "00" && w[5] != "lo"
    });
    let default = ipv6_route.lines().any(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        // dst dst_len src src_len next_hop metric refcnt use flags dev
        w.len() >= 10
            && w[0] == "00000000000000000000000000000000"
            && w[1] == "00"
            && w[9] != "lo"
            && u32::from_str_radix(w[8], 16).is_ok_and(|f| f & 0x0200 == 0) // not RTF_REJECT
    });
    addr || default
}

/// `struct in6_rtmsg` of <linux/ipv6_route.h> (libc's has private fields).
#[repr(C)]
struct In6RtMsg {
    dst: libc::in6_addr,
    src: libc::in6_addr,
    gateway: libc::in6_addr,
    ty: u32,
    dst_len: u16,
    src_len: u16,
    metric: u32,
    info: libc::c_ulong,
    flags: u32,
    ifindex: libc::c_int,
}

fn in6(a: Ipv6Addr) -> libc::in6_addr {
    libc::in6_addr {
        s6_addr: a.octets(),
    }
}

/// Before tap0 exists, in the container's fresh network namespace: no duplicate
/// address detection for interfaces created from now on (addresses would stay
/// "tentative", unusable, for a second; the monitor is the only other end of the
/// link). False if the kernel has no IPv6 (no /proc/sys/net/ipv6): then tap0 stays
/// IPv4 only.
pub fn prepare() -> Result<bool, String> {
    let dad = "/proc/sys/net/ipv6/conf/default/accept_dad";
    tracing::debug!(path = dad, "write 0");
    match std::fs::write(dad, "0") {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::debug!("no IPv6 in this kernel: tap0 stays IPv4 only");
            Ok(false)
        }
        Err(e) => Err(format!("preparing IPv6 for {NAME}: writing {dad}: {e}")),
    }
}

/// Gives tap0 (already up, created after [`prepare`]) `link`'s address and the
/// default route via its gateway. Errors are one line.
pub fn configure6(link: &Link6) -> Result<(), String> {
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
    let s = socket(
        AddressFamily::Inet6,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| format!("IPv6 socket for {NAME}: {e}"))?;
    let index = nix::net::if_::if_nametoindex(NAME)
        .map_err(|e| format!("configuring {NAME}: interface index: {e}"))?;
    let mut ifr = libc::in6_ifreq {
        ifr6_addr: in6(link.guest),
        ifr6_prefixlen: u32::from(link.prefix_len),
        ifr6_ifindex: index as libc::c_int,
    };
    tracing::debug!(addr = %link.guest, "SIOCSIFADDR (IPv6) on {NAME}");
    // SAFETY: SIOCSIFADDR on an AF_INET6 socket reads the in6_ifreq we own.
    if unsafe { libc::ioctl(s.as_raw_fd(), libc::SIOCSIFADDR, &mut ifr) } < 0 {
        return Err(format!(
            "configuring {NAME}: adding {}/{}: {}",
            link.guest,
            link.prefix_len,
            std::io::Error::last_os_error()
        ));
    }
    let mut rt = In6RtMsg {
        dst: in6(Ipv6Addr::UNSPECIFIED),
        src: in6(Ipv6Addr::UNSPECIFIED),
        gateway: in6(link.gateway),
        ty: 0,
        dst_len: 0,
        src_len: 0,
        metric: 1024,
        info: 0,
        flags: (libc::RTF_UP | libc::RTF_GATEWAY) as u32,
        ifindex: index as libc::c_int,
    };
    tracing::debug!(gateway = %link.gateway, "SIOCADDRT (IPv6 default route)");
    // SAFETY: SIOCADDRT on an AF_INET6 socket reads the in6_rtmsg we own.
    if unsafe { libc::ioctl(s.as_raw_fd(), libc::SIOCADDRT, &mut rt as *mut In6RtMsg) } < 0 {
        return Err(format!(
            "adding the IPv6 default route via {}: {}",
            link.gateway,
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ipv6_needs_more_than_loopback_and_link_local() {
        let lo = "00000000000000000000000000000001 01 80 10 80       lo\n";
        let ll = "fe8000000000000000fc00fffe000001 04 40 20 80     eth0\n";
        let ula = "fd000000000000000000000000000002 04 40 00 80     eth0\n";
        let none = "";
        assert!(!has_ipv6(&format!("{lo}{ll}"), none));
        assert!(has_ipv6(&format!("{lo}{ll}{ula}"), none));
        let default = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fd000000000000000000000000000001 00000400 00000001 00000000 00000003     eth0\n";
        assert!(has_ipv6(lo, default));
        // The kernel's "unreachable" default on lo does not count.
        let reject = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo\n";
        assert!(!has_ipv6(lo, reject));
    }

    #[test]
    fn the_link_is_the_slash_64() {
        assert!(SLIRP6.on_link("fd00::2".parse().unwrap()));
        assert!(SLIRP6.on_link("fd00::ffff:1".parse().unwrap()));
        assert!(!SLIRP6.on_link("fd00:0:0:1::2".parse().unwrap()));
        assert!(!SLIRP6.on_link("::1".parse().unwrap()));
    }
}
