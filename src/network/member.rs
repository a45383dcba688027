//! A container on user-defined networks: per network, its address and MAC, the
//! network's gateway (where the monitor answers and DNS lives), and the run directory
//! where the members' monitors meet (peers.rs). Each network gets an interface of its
//! own in the container (eth0, eth1, ... in attach order, as podman names them) and a
//! Stack of its own in the monitor.

use std::net::Ipv4Addr;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use super::peers::Peers;
use super::stack::{SlirpOptions, Stack};
use super::tap::Addressing;
use crate::storage::Store;

/// Why a container's user-defined network cannot start; each names the network or
/// container and what to do.
#[derive(Debug, thiserror::Error)]
pub enum MemberError {
    /// The store could not say which networks the container is on.
    #[error("reading the networks of container {container}: {source}: check the store with `skiff system check`")]
    Store {
        container: String,
        source: crate::storage::StorageError,
    },
    /// The MAC recorded at attach does not parse (the store was edited by hand).
    #[error("network {network}: the recorded MAC address {mac:?} of container {container} is invalid: disconnect it and connect it again (`skiff network disconnect {network} {container}`, then `skiff network connect {network} {container}`)")]
    BadMac {
        network: String,
        container: String,
        mac: String,
    },
    /// The member socket could not be made in the network's run directory.
    #[error("network {network}: binding the member socket {path} for container {container}: {source}: check that the run directory is writable by you")]
    Bind {
        network: String,
        container: String,
        path: PathBuf,
        source: std::io::Error,
    },
    /// The user-mode stack on the container's tap could not be set up.
    #[error("network {network}: starting the network of container {container}: {detail}")]
    Stack {
        network: String,
        container: String,
        detail: String,
    },
}

#[derive(Debug, Clone)]
pub struct Membership {
    pub addr: Addressing,
    /// The recorded MAC, set on the interface by the init.
    pub mac: [u8; 6],
    /// The network's name.
    pub network: String,
    pub gateway: Ipv4Addr,
    pub internal: bool,
    pub dns_enabled: bool,
    pub run_dir: PathBuf,
}

fn short(id: &str) -> String {
    id.get(..12).unwrap_or(id).to_string()
}

/// The container's interface for its `i`-th network (podman's names).
pub fn iface_name(i: usize) -> String {
    format!("eth{i}")
}

/// The metric of the default route through the `i`-th network: netavark's 100 for the
/// first. podman gives every network 100, and which one the kernel then uses is left to
/// chance (netavark configures them in hash-map order); distinct metrics make the
/// first network attached the way out, and a network connected later never takes the
/// default route from it.
pub fn route_metric(i: usize) -> u16 {
    100u16.saturating_add(u16::try_from(i).unwrap_or(u16::MAX))
}

/// The container's networks in attach order (the order of `network`, its stored
/// `--network` value, then any others the store knows).
pub fn memberships(
    store: &Store,
    id: &str,
    network: Option<&str>,
) -> Result<Vec<Membership>, MemberError> {
    let mut all = store
        .container_networks(id)
        .map_err(|source| MemberError::Store {
            container: short(id),
            source,
        })?;
    let order = crate::runtime::networks::network_names(network.unwrap_or(""));
    all.sort_by_key(|a| {
        order
            .iter()
            .position(|n| *n == a.network.name)
            .unwrap_or(usize::MAX)
    });
    all.into_iter()
        .map(|a| {
            let n = &a.network;
            let mac = super::tap::parse_mac(&a.member.mac).ok_or_else(|| MemberError::BadMac {
                network: n.name.clone(),
                container: short(id),
                mac: a.member.mac.clone(),
            })?;
            let bits = u32::from(n.subnet.prefix.min(32));
            let netmask = Ipv4Addr::from(u32::MAX.checked_shl(32 - bits).unwrap_or(0));
            Ok(Membership {
                addr: Addressing {
                    ip: a.member.ip,
                    netmask,
                    gateway: (!n.internal).then_some(n.gateway),
                    mac: Some(mac),
                },
                mac,
                network: n.name.clone(),
                gateway: n.gateway,
                internal: n.internal,
                dns_enabled: n.dns_enabled,
                run_dir: crate::storage::networks::network_run_dir(&store.paths, n),
            })
        })
        .collect()
}

/// Points the container's resolv.conf at the gateways of its DNS-enabled networks, in
/// attach order (each answers the members of all the container's networks, and relays
/// the rest), with podman's `dns.podman` search domain first. Rewritten in place: the
/// file is bind-mounted, so a running container sees a network connected later.
pub fn write_resolv(bundle: &Path, ms: &[Membership]) {
    let servers: Vec<Ipv4Addr> = ms
        .iter()
        .filter(|m| m.dns_enabled)
        .map(|m| m.gateway)
        .collect();
    if servers.is_empty() {
        return;
    }
    let path = bundle.join("resolv.conf");
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    let mut search = vec!["dns.podman".to_string()];
    let mut options = Vec::new();
    for l in old.lines() {
        let mut w = l.split_whitespace();
        match w.next() {
            Some("search") => search.extend(w.map(String::from)),
            Some("options") => options.extend(w.map(String::from)),
            _ => {}
        }
    }
    let mut seen = std::collections::HashSet::new();
    search.retain(|s| seen.insert(s.clone()));
    let mut text = format!("search {}\n", search.join(" "));
    for s in servers {
        text.push_str(&format!("nameserver {s}\n"));
    }
    if !options.is_empty() {
        text.push_str(&format!("options {}\n", options.join(" ")));
    }
    if let Err(e) = std::fs::write(&path, text) {
        tracing::debug!(error = %e, path = %path.display(), "write resolv.conf");
    }
}

/// Starts the network of one interface, which the init addressed (launch sent it
/// `m.addr`): members through their monitors, the rest of the world through host
/// sockets (unless internal). DNS at its gateway also answers the members of the
/// container's other networks (`all`), as aardvark-dns answers a container on several.
/// With DNS disabled (`network create --disable-dns`) nothing answers or relays DNS at
/// the gateway, as podman runs no aardvark-dns for such a network.
pub fn start(
    tap_fd: OwnedFd,
    m: &Membership,
    all: &[Membership],
    container_id: &str,
) -> Result<Stack, MemberError> {
    let mut peers = Peers::bind(m, container_id)?;
    peers.set_scope(dns_scope(m, all));
    let opts = SlirpOptions {
        allow_host_loopback: false,
        dns_upstream: super::dns_upstream().filter(|_| m.dns_enabled),
        guest: m.addr,
        gateway: m.gateway,
        dns: m.gateway,
        internal: m.internal,
        ipv6: None,
    };
    let mut stack = Stack::new(tap_fd, opts, Some(peers)).map_err(|detail| MemberError::Stack {
        network: m.network.clone(),
        container: short(container_id),
        detail,
    })?;
    // The tap has the recorded MAC from the start: nothing to learn from its frames
    // (lan.rs drops any that claim another).
    stack.out.mac = m.mac;
    Ok(stack)
}

/// The run directories of the container's networks other than `m`.
pub fn dns_scope(m: &Membership, all: &[Membership]) -> Vec<PathBuf> {
    all.iter()
        .filter(|o| o.run_dir != m.run_dir)
        .map(|o| o.run_dir.clone())
        .collect()
}
