//! The host side of published ports: one listening TCP socket or bound UDP socket per
//! port, with errors that say what to do (port taken, privileged port).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::socket::{
    bind, listen, setsockopt, socket, sockopt, AddressFamily, Backlog, SockFlag, SockType,
    SockaddrStorage,
};

use super::portspec::{PortMapping, Protocol};
use super::NetworkError;

pub(super) enum Sock {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

pub(super) struct Listener {
    pub(super) sock: Sock,
    pub(super) mapping: PortMapping,
}

impl Listener {
    pub(super) fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match &self.sock {
            Sock::Tcp(l) => l.as_fd(),
            Sock::Udp(u) => u.as_fd(),
        }
    }
}

/// Raises the soft descriptor limit to the hard one (every connection needs several);
/// returns the limit in force.
pub(super) fn raise_nofile() -> u64 {
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
pub(super) fn bind_one(m: &PortMapping) -> Result<Sock, NetworkError> {
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
