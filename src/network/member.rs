//! A container on a user-defined network (the first one it is attached to): its
//! address and MAC, the network's gateway (where the monitor answers and DNS lives),
//! and the run directory where the members' monitors meet (peers.rs).

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
    /// One tap serves one network.
    #[error("container {container} is attached to {count} networks ({names}): skiff serves one user-defined network per container for now: disconnect the others with `skiff network disconnect NETWORK {container}`")]
    TooManyNetworks {
        container: String,
        count: usize,
        names: String,
    },
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

pub struct Membership {
    pub addr: Addressing,
    /// The recorded MAC, set on tap0 by the init.
    pub mac: [u8; 6],
    /// The network's name, for messages.
    pub network: String,
    pub gateway: Ipv4Addr,
    pub internal: bool,
    pub dns_enabled: bool,
    pub run_dir: PathBuf,
}

fn short(id: &str) -> String {
    id.get(..12).unwrap_or(id).to_string()
}

/// The container's network attachment, if any. A container attached to several
/// networks is refused: its one tap serves one network.
pub fn membership(store: &Store, id: &str) -> Result<Option<Membership>, MemberError> {
    let all = store
        .container_networks(id)
        .map_err(|source| MemberError::Store {
            container: short(id),
            source,
        })?;
    if all.len() > 1 {
        let names: Vec<&str> = all.iter().map(|a| a.network.name.as_str()).collect();
        return Err(MemberError::TooManyNetworks {
            container: short(id),
            count: all.len(),
            names: names.join(", "),
        });
    }
    let Some(a) = all.into_iter().next() else {
        return Ok(None);
    };
    let n = &a.network;
    let mac = super::tap::parse_mac(&a.member.mac).ok_or_else(|| MemberError::BadMac {
        network: n.name.clone(),
        container: short(id),
        mac: a.member.mac.clone(),
    })?;
    let bits = u32::from(n.subnet.prefix.min(32));
    let netmask = Ipv4Addr::from(u32::MAX.checked_shl(32 - bits).unwrap_or(0));
    Ok(Some(Membership {
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
    }))
}

/// Points the container's resolv.conf at the gateway (members' names are answered
/// there, the rest relayed), with podman's `dns.podman` search domain first.
pub fn write_resolv(bundle: &Path, m: &Membership) {
    if !m.dns_enabled {
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
    let mut text = format!("search {}\nnameserver {}\n", search.join(" "), m.gateway);
    if !options.is_empty() {
        text.push_str(&format!("options {}\n", options.join(" ")));
    }
    if let Err(e) = std::fs::write(&path, text) {
        tracing::debug!(error = %e, path = %path.display(), "write resolv.conf");
    }
}

/// Starts the network of tap0, which the init addressed (launch sent it `m.addr`):
/// members through their monitors, the rest of the world through host sockets (unless
/// internal). With DNS disabled (`network create --disable-dns`) nothing answers or
/// relays DNS at the gateway, as podman runs no aardvark-dns for such a network.
pub fn start(tap_fd: OwnedFd, m: &Membership, container_id: &str) -> Result<Stack, MemberError> {
    let peers = Peers::bind(m, container_id)?;
    let opts = SlirpOptions {
        allow_host_loopback: false,
        dns_upstream: super::dns_upstream().filter(|_| m.dns_enabled),
        guest: m.addr,
        gateway: m.gateway,
        dns: m.gateway,
        internal: m.internal,
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
