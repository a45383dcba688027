//! The container's TAP device. The container's init creates it while it is still root in
//! its new user namespace (so it holds CAP_NET_ADMIN over the new network namespace),
//! before pivot_root (so /dev/net/tun is the host's node), configures the address, MTU
//! and default route with plain ioctls, and passes the descriptor to the monitor over
//! its sync socket (SCM_RIGHTS). The device is not persistent: it goes away with the
//! last descriptor (the monitor's) or with the network namespace, whichever is first.
//!
//! Raw ioctls through libc rather than the tun-tap crate or smoltcp's `TunTapInterface`:
//! we need IFF_VNET_HDR and TUNSETOFFLOAD (checksum offload both ways, which neither
//! exposes), the fd must be opened in one process and used in another, and the address
//! and route set-up is a handful of ioctls either way.

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};

/// The slirp4netns addresses (podman's defaults).
pub const GUEST_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 100);
pub const GATEWAY_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
pub const DNS_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 3);
pub const NETMASK: Ipv4Addr = Ipv4Addr::new(255, 255, 255, 0);
pub const MTU: u32 = 65520;
pub const NAME: &str = "tap0";
/// Size of `struct virtio_net_hdr` that precedes every frame (IFF_VNET_HDR).
pub const VNET_HDR: usize = 10;

/// The addresses of tap0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addressing {
    pub ip: Ipv4Addr,
    pub netmask: Ipv4Addr,
    /// The default route (none for an internal network).
    pub gateway: Option<Ipv4Addr>,
    /// A user-defined network's recorded MAC, so inspect shows what the container has
    /// and the monitor knows it from the first frame (None: the kernel's random one).
    pub mac: Option<[u8; 6]>,
}

impl Addressing {
    /// One line for the init, which addresses tap0 itself before the container runs.
    pub fn to_line(self) -> String {
        let gw = self.gateway.map_or("-".to_string(), |g| g.to_string());
        let mac = self.mac.map_or("-".to_string(), format_mac);
        format!("{} {} {gw} {mac}\n", self.ip, self.netmask)
    }

    /// The inverse of [`Addressing::to_line`].
    pub fn parse_line(line: &str) -> Option<Addressing> {
        let mut w = line.split_whitespace();
        let ip = w.next()?.parse().ok()?;
        let netmask = w.next()?.parse().ok()?;
        let gateway = match w.next()? {
            "-" => None,
            g => Some(g.parse().ok()?),
        };
        let mac = match w.next() {
            None | Some("-") => None,
            Some(m) => Some(parse_mac(m)?),
        };
        Some(Addressing {
            ip,
            netmask,
            gateway,
            mac,
        })
    }
}

/// slirp4netns's layout.
pub const SLIRP: Addressing = Addressing {
    ip: GUEST_IP,
    netmask: NETMASK,
    gateway: Some(GATEWAY_IP),
    mac: None,
};

/// "aa:bb:cc:dd:ee:ff" (the store's form of a MAC) → bytes.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for b in out.iter_mut() {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// Bytes → "aa:bb:cc:dd:ee:ff".
pub fn format_mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Creates tap0 in the current network namespace, up with our MTU, addressed as `addr`
/// says (None: no address yet, the monitor sets it); the caller must have
/// CAP_NET_ADMIN over the namespace. Errors are one line naming what to do.
pub fn create(addr: Option<&Addressing>) -> Result<OwnedFd, String> {
    create_named(NAME, addr, 0)
}

/// [`create`] under another name (a user-defined network's eth0, eth1, ...), with the
/// default route at `metric`: a container on several networks gets one default route
/// per network, and distinct metrics decide which one is used.
pub fn create_named(name: &str, addr: Option<&Addressing>, metric: u16) -> Result<OwnedFd, String> {
    use nix::fcntl::OFlag;
    tracing::debug!("open /dev/net/tun");
    let fd = nix::fcntl::open(
        "/dev/net/tun",
        OFlag::O_RDWR | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| match e {
        nix::errno::Errno::EACCES | nix::errno::Errno::EPERM | nix::errno::Errno::ENOENT => {
            format!(
                "cannot open /dev/net/tun for the container's network: {}: ask an admin to make it usable by everyone (`chmod 0666 /dev/net/tun`, or load the tun module), or run with --network none",
                e.desc()
            )
        }
        e => format!("opening /dev/net/tun: {}", e.desc()),
    })?;
    let mut ifr = ifreq(name);
    ifr.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as i16;
    // SAFETY: TUNSETIFF reads the ifreq we own (and writes the name back into it).
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut ifr) } < 0 {
        return Err(format!("creating {name}: TUNSETIFF: {}", last()));
    }
    // Frames from the container may carry partial checksums (we never check them: the
    // link is a memory copy); big segments stay one frame thanks to the MTU.
    // SAFETY: TUNSETOFFLOAD takes its argument by value.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETOFFLOAD, libc::TUN_F_CSUM) } < 0 {
        return Err(format!("{name}: TUNSETOFFLOAD: {}", last()));
    }
    configure(name, addr, metric)?;
    Ok(fd)
}

fn last() -> std::io::Error {
    std::io::Error::last_os_error()
}

fn ifreq(name: &str) -> libc::ifreq {
    // SAFETY: ifreq is plain old data; zeroed is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (i, b) in name.bytes().take(libc::IFNAMSIZ - 1).enumerate() {
        ifr.ifr_name[i] = b as libc::c_char;
    }
    ifr
}

fn sockaddr(ip: Ipv4Addr) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr have the same size; the kernel reads the
    // family-tagged bytes.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

/// `struct rtentry` of <net/route.h> (glibc's libc crate lacks it).
#[repr(C)]
struct RtEntry {
    rt_pad1: libc::c_ulong,
    rt_dst: libc::sockaddr,
    rt_gateway: libc::sockaddr,
    rt_genmask: libc::sockaddr,
    rt_flags: libc::c_ushort,
    rt_pad2: libc::c_short,
    rt_pad3: libc::c_ulong,
    rt_pad4: *mut libc::c_void,
    rt_metric: libc::c_short,
    rt_dev: *mut libc::c_char,
    rt_mtu: libc::c_ulong,
    rt_window: libc::c_ulong,
    rt_irtt: libc::c_ushort,
}

/// MAC, MTU, up, and with `addr` address, netmask and the default route (at `metric`).
pub fn configure(name: &str, addr: Option<&Addressing>, metric: u16) -> Result<(), String> {
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
    let s = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| format!("socket for {name}: {e}"))?;
    let ioctl = |req: libc::Ioctl, ifr: &mut libc::ifreq, what: &str| -> Result<(), String> {
        tracing::debug!(what, name, "ioctl on the tap");
        // SAFETY: each request reads (or fills) the ifreq we own.
        if unsafe { libc::ioctl(s.as_raw_fd(), req, ifr as *mut libc::ifreq) } < 0 {
            return Err(format!("configuring {name}: {what}: {}", last()));
        }
        Ok(())
    };
    if let Some(mac) = addr.and_then(|a| a.mac) {
        let mut ifr = ifreq(name);
        let mut hw = libc::sockaddr {
            sa_family: libc::ARPHRD_ETHER,
            sa_data: [0; 14],
        };
        for (d, b) in hw.sa_data.iter_mut().zip(mac) {
            *d = b as libc::c_char;
        }
        ifr.ifr_ifru.ifru_hwaddr = hw;
        ioctl(libc::SIOCSIFHWADDR, &mut ifr, "SIOCSIFHWADDR")?;
    }
    let mut ifr = ifreq(name);
    ifr.ifr_ifru.ifru_mtu = MTU as i32;
    ioctl(libc::SIOCSIFMTU, &mut ifr, "SIOCSIFMTU")?;
    if let Some(a) = addr {
        let mut ifr = ifreq(name);
        ifr.ifr_ifru.ifru_addr = sockaddr(a.ip);
        ioctl(libc::SIOCSIFADDR, &mut ifr, "SIOCSIFADDR")?;
        let mut ifr = ifreq(name);
        ifr.ifr_ifru.ifru_netmask = sockaddr(a.netmask);
        ioctl(libc::SIOCSIFNETMASK, &mut ifr, "SIOCSIFNETMASK")?;
    }
    let mut ifr = ifreq(name);
    ioctl(libc::SIOCGIFFLAGS, &mut ifr, "SIOCGIFFLAGS")?;
    // SAFETY: reading the union member SIOCGIFFLAGS just filled.
    unsafe {
        ifr.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    }
    ioctl(libc::SIOCSIFFLAGS, &mut ifr, "SIOCSIFFLAGS")?;
    let Some(gw) = addr.and_then(|a| a.gateway) else {
        return Ok(());
    };
    let mut dev: Vec<u8> = name.bytes().chain([0]).collect();
    let mut rt = RtEntry {
        rt_pad1: 0,
        rt_dst: sockaddr(Ipv4Addr::UNSPECIFIED),
        rt_gateway: sockaddr(gw),
        rt_genmask: sockaddr(Ipv4Addr::UNSPECIFIED),
        rt_flags: libc::RTF_UP | libc::RTF_GATEWAY,
        rt_pad2: 0,
        rt_pad3: 0,
        rt_pad4: std::ptr::null_mut(),
        // The kernel stores rt_metric - 1 (0: metric 0).
        rt_metric: if metric == 0 {
            0
        } else {
            libc::c_short::try_from(metric.saturating_add(1)).unwrap_or(libc::c_short::MAX)
        },
        rt_dev: dev.as_mut_ptr().cast(),
        rt_mtu: 0,
        rt_window: 0,
        rt_irtt: 0,
    };
    tracing::debug!(name, metric, "SIOCADDRT default via {gw}");
    // SAFETY: SIOCADDRT reads the rtentry (and the device name it points to), both alive
    // for the call.
    if unsafe { libc::ioctl(s.as_raw_fd(), libc::SIOCADDRT, &mut rt as *mut RtEntry) } < 0 {
        return Err(format!(
            "adding the default route via {gw} on {name}: {}",
            last()
        ));
    }
    Ok(())
}

/// Takes ownership of a descriptor received from the init (already an OwnedFd) and makes
/// sure it is non-blocking.
pub fn adopt(fd: OwnedFd) -> OwnedFd {
    let _ = nix::fcntl::fcntl(
        &fd,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    );
    fd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addressing_line_round_trips_with_and_without_mac() {
        let member = Addressing {
            ip: Ipv4Addr::new(10, 89, 0, 2),
            netmask: NETMASK,
            gateway: None,
            mac: Some([0x02, 0xab, 0, 0x10, 0xfe, 0x01]),
        };
        let line = member.to_line();
        assert_eq!(line, "10.89.0.2 255.255.255.0 - 02:ab:00:10:fe:01\n");
        assert_eq!(Addressing::parse_line(&line), Some(member));
        assert_eq!(Addressing::parse_line(&SLIRP.to_line()), Some(SLIRP));
        // A line of three fields (no MAC) still parses; a bad MAC does not.
        assert_eq!(
            Addressing::parse_line("10.0.2.100 255.255.255.0 10.0.2.2"),
            Some(SLIRP)
        );
        assert_eq!(
            Addressing::parse_line("10.0.2.100 255.255.255.0 - 02:zz"),
            None
        );
    }

    #[test]
    fn macs_parse_strictly() {
        assert_eq!(parse_mac("02:00:0a:59:00:02"), Some([2, 0, 10, 0x59, 0, 2]));
        for bad in [
            "",
            "02:00:0a:59:00",
            "02:00:0a:59:00:02:03",
            "2:0:a:59:0:2",
            "02:00:0a:59:00:0g",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad}");
        }
        assert_eq!(format_mac([2, 0, 10, 0x59, 0, 2]), "02:00:0a:59:00:02");
    }
}
