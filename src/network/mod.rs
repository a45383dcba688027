//! Networking that the monitor runs for a container. Today: published ports
//! (`-p`/`-P`), which never cross a userspace TCP/IP stack: the monitor listens on the
//! host and splices each connection into a socket opened inside the container's
//! network namespace by a small connector process (see DESIGN.md).

pub mod connector;
mod dns;
mod frame;
mod frame6;
pub mod hotplug;
mod lan;
mod listen;
pub mod member;
pub mod peers;
pub mod portspec;
pub mod relay;
mod relay_conn;
mod relay_udp;
pub mod stack;
mod stack6;
pub mod tap;
pub mod tap6;
mod tcp;
mod udp;

/// Failures setting up published ports; each names the port and what to do.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// A `-p` value that does not parse.
    #[error("invalid -p {spec:?}: {detail}")]
    BadPublish { spec: String, detail: String },
    /// The host port is taken by another process.
    #[error("cannot publish {addr}/{proto}: the port is already in use: stop what listens there or choose another host port")]
    InUse { addr: String, proto: String },
    /// A port below net.ipv4.ip_unprivileged_port_start, rootless.
    #[error("cannot publish {addr}/{proto}: ports below {start} need privileges (net.ipv4.ip_unprivileged_port_start={start}): use a host port of {start} or above, or ask an admin to lower it with `sysctl net.ipv4.ip_unprivileged_port_start={port}`")]
    Privileged {
        addr: String,
        proto: String,
        port: u16,
        start: u16,
    },
    /// Any other failure of a socket call for a port.
    #[error("cannot publish {addr}/{proto}: {call}: {source}")]
    Socket {
        addr: String,
        proto: String,
        call: &'static str,
        source: nix::Error,
    },
    /// The connector process could not be started.
    #[error("starting the port connector for the container: {call}: {source}")]
    Connector {
        call: &'static str,
        source: nix::Error,
    },
}

use portspec::{PortMapping, PortRequest, Protocol};

/// Environment variable naming the resolver (IP or IP:PORT) that DNS queries to
/// 10.0.2.3 are relayed to, instead of the first nameserver of /etc/resolv.conf.
pub const DNS_UPSTREAM_ENV: &str = "SKIFF_DNS_UPSTREAM";

/// `IP`, `IP:PORT` or `[IPv6]:PORT` (port 53 when absent): a resolver's address as
/// skiff.toml's network.dns_upstream and $SKIFF_DNS_UPSTREAM give it.
pub fn parse_resolver(s: &str) -> Option<std::net::SocketAddr> {
    use std::net::{IpAddr, SocketAddr};
    let s = s.trim();
    s.parse::<SocketAddr>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53)))
}

/// Where the user-mode network relays DNS: $SKIFF_DNS_UPSTREAM (which the CLI sets from
/// skiff.toml's network.dns_upstream when the environment has none), else the host's
/// first resolver (a loopback one works: the monitor's sockets live in the host's
/// network).
pub fn dns_upstream() -> Option<std::net::SocketAddr> {
    let parse = parse_resolver;
    if let Some(v) = std::env::var_os(DNS_UPSTREAM_ENV) {
        return parse(&v.to_string_lossy());
    }
    let conf = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    conf.lines().find_map(|l| {
        let mut w = l.split_whitespace();
        (w.next() == Some("nameserver"))
            .then(|| w.next().and_then(parse))
            .flatten()
    })
}

/// Fixes the host port of every request: those without one get a free port of the host
/// now (bound and released), so the container keeps the same ports across restarts.
pub fn assign(reqs: &[PortRequest]) -> Result<Vec<PortMapping>, NetworkError> {
    let mut out: Vec<PortMapping> = Vec::with_capacity(reqs.len());
    let taken: std::collections::HashSet<(u16, Protocol)> = reqs
        .iter()
        .filter_map(|r| r.host_port.map(|p| (p, r.protocol)))
        .collect();
    for r in reqs {
        let host_port = match r.host_port {
            Some(p) => p,
            None => loop {
                let p = free_port(r.host_ip, r.protocol)?;
                let dup = taken.contains(&(p, r.protocol))
                    || out
                        .iter()
                        .any(|m| m.host_port == p && m.protocol == r.protocol);
                if !dup {
                    break p;
                }
            },
        };
        out.push(PortMapping {
            host_ip: r.host_ip,
            host_port,
            container_port: r.container_port,
            protocol: r.protocol,
        });
    }
    Ok(out)
}

/// A port the kernel considers free for `ip` (all addresses when None) right now.
fn free_port(ip: Option<std::net::IpAddr>, proto: Protocol) -> Result<u16, NetworkError> {
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};
    let addr = SocketAddr::new(ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)), 0);
    let err = |source: std::io::Error| NetworkError::Socket {
        addr: addr.to_string(),
        proto: proto.as_str().into(),
        call: "bind (choosing a free host port)",
        source: nix::errno::Errno::from_raw(source.raw_os_error().unwrap_or(libc::EIO)),
    };
    tracing::debug!(%addr, "bind: pick a free host port");
    let port = match proto {
        Protocol::Tcp => std::net::TcpListener::bind(addr)
            .and_then(|l| l.local_addr())
            .map_err(err)?
            .port(),
        Protocol::Udp => std::net::UdpSocket::bind(addr)
            .and_then(|l| l.local_addr())
            .map_err(err)?
            .port(),
    };
    Ok(port)
}
