//! A container on a user-defined network (the first one it is attached to): its
//! address, the network's gateway (where the monitor answers and DNS lives), and the
//! run directory where the members' monitors meet (peers.rs).

use std::net::Ipv4Addr;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use super::peers::Peers;
use super::stack::{SlirpOptions, Stack};
use super::tap::Addressing;
use crate::storage::Store;

pub struct Membership {
    pub addr: Addressing,
    pub gateway: Ipv4Addr,
    pub internal: bool,
    pub dns_enabled: bool,
    pub run_dir: PathBuf,
}

/// The container's network attachment, if any. A container attached to several
/// networks is refused: its one tap serves one network.
pub fn membership(store: &Store, id: &str) -> Result<Option<Membership>, String> {
    let all = store.container_networks(id).unwrap_or_default();
    if all.len() > 1 {
        let names: Vec<&str> = all.iter().map(|a| a.network.name.as_str()).collect();
        return Err(format!(
            "container {} is attached to {} networks ({}): skiff serves one user-defined network per container for now: disconnect the others with `skiff network disconnect NETWORK {}`",
            &id[..12.min(id.len())],
            all.len(),
            names.join(", "),
            &id[..12.min(id.len())]
        ));
    }
    let Some(a) = all.into_iter().next() else {
        return Ok(None);
    };
    let n = &a.network;
    let bits = u32::from(n.subnet.prefix.min(32));
    let netmask = Ipv4Addr::from(u32::MAX.checked_shl(32 - bits).unwrap_or(0));
    Ok(Some(Membership {
        addr: Addressing {
            ip: a.member.ip,
            netmask,
            gateway: (!n.internal).then_some(n.gateway),
        },
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

/// Starts the network of tap0, which the init addressed (launch sent it `m.addr`): members through their
/// monitors, the rest of the world through host sockets (unless internal).
pub fn start(tap_fd: OwnedFd, m: &Membership, container_id: &str) -> Result<Stack, String> {
    let peers = Peers::bind(&m.run_dir, container_id)?;
    let opts = SlirpOptions {
        allow_host_loopback: false,
        dns_upstream: super::dns_upstream(),
        guest: m.addr,
        gateway: m.gateway,
        dns: m.gateway,
        internal: m.internal,
    };
    Stack::new(tap_fd, opts, Some(peers))
}
