//! `network connect`/`disconnect`: a stopped container's change takes effect at its
//! next start; a running one's at once, as podman hot-plugs: its monitor adds (or
//! drops) the network's interface inside the container (src/monitor/netplug.rs), and
//! its /etc/hosts and resolv.conf follow (both bind-mounted, rewritten in place).

use std::net::Ipv4Addr;

use super::networks::{announce, network_names};
use super::{ContainerConfig, NetworkMode, RuntimeError};
use crate::monitor::netplug::{self, Request};
use crate::storage::containers::{ContainerRecord, State};
use crate::storage::networks::AttachRequest;
use crate::storage::Store;

fn bad(flag: &'static str, detail: String) -> RuntimeError {
    RuntimeError::BadFlag { flag, detail }
}

fn config_of(store: &Store, c: &ContainerRecord) -> Result<ContainerConfig, RuntimeError> {
    serde_json::from_str(&c.config).map_err(|e| RuntimeError::Bundle {
        path: store.paths.container_dir(&c.id),
        detail: e.to_string(),
    })
}

/// Whether the container was created on user-defined networks (its init creates one
/// interface per network it is told of, none included).
fn created_bridged(store: &Store, c: &ContainerRecord) -> bool {
    super::bundle::load_spec(&store.paths.container_dir(&c.id))
        .ok()
        .and_then(|s| s.annotations().clone())
        .and_then(|a| a.get(super::spec::TAP_ANNOTATION).cloned())
        .is_some_and(|v| v == "bare")
}

fn running(c: &ContainerRecord) -> bool {
    matches!(c.state, State::Running | State::Paused)
}

fn save_networks(
    store: &mut Store,
    id: &str,
    cfg: &mut ContainerConfig,
    names: &[String],
) -> Result<(), RuntimeError> {
    cfg.options.network = Some(if names.is_empty() {
        "none".into()
    } else {
        names.join(",")
    });
    let text = serde_json::to_string(&*cfg).map_err(|e| RuntimeError::Bundle {
        path: store.paths.container_dir(id),
        detail: e.to_string(),
    })?;
    store.set_container_config(id, &text)?;
    Ok(())
}

/// Attaches a container to one more network (`c` as refreshed by the caller: its
/// state decides whether the monitor is asked to plug the interface in now).
pub fn connect(
    store: &mut Store,
    c: &ContainerRecord,
    network: &str,
    aliases: &[String],
    ip: Option<Ipv4Addr>,
) -> Result<(), RuntimeError> {
    let mut cfg = config_of(store, c)?;
    let raw = cfg.options.network.clone().unwrap_or_else(|| "none".into());
    let mode = NetworkMode::parse(&raw)?;
    // Taken off every network, a container created on user-defined networks keeps its
    // bridge mode (as in podman): its mode reads none, its spec still says bridge.
    let emptied = mode == NetworkMode::None && created_bridged(store, c);
    if mode != NetworkMode::Bridge && !emptied {
        return Err(bad("network connect", format!("container {} uses network mode {raw}: only containers on user-defined networks can be connected to more", c.name)));
    }
    let mut names = if emptied {
        Vec::new()
    } else {
        network_names(&raw)
    };
    if names.iter().any(|n| n == network) {
        return Err(bad(
            "network connect",
            format!(
                "container {} is already connected to network {network}: network is already connected",
                c.name
            ),
        ));
    }
    store.attach_networks(
        &c.id,
        &[AttachRequest {
            network: network.to_string(),
            aliases: aliases.to_vec(),
            ip,
        }],
    )?;
    let old = names.clone();
    names.push(network.to_string());
    save_networks(store, &c.id, &mut cfg, &names)?;
    if !running(c) {
        return Ok(());
    }
    let req = Request {
        connect: true,
        network: network.to_string(),
    };
    if let Err(e) = netplug::request(&store.paths, &c.id, &req) {
        // Undone, so the record never names a network the container is not on.
        let _ = store.detach_network(&c.id, network);
        let _ = save_networks(store, &c.id, &mut cfg, &old);
        return Err(RuntimeError::Init {
            code: 125,
            message: format!(
                "connecting running container {} to network {network}: {e}",
                c.name
            ),
        });
    }
    let own = store
        .container_networks(&c.id)
        .unwrap_or_default()
        .into_iter()
        .find(|a| a.network.name == network);
    if let Some(a) = own {
        add_own_address(store, c, a.member.ip);
    }
    announce(store, &c.id);
    rewrite_resolv(store, c, &cfg);
    Ok(())
}

/// Takes a container off a network (at once when it runs).
pub fn disconnect(
    store: &mut Store,
    c: &ContainerRecord,
    network: &str,
) -> Result<(), RuntimeError> {
    let mut cfg = config_of(store, c)?;
    let raw = cfg.options.network.clone().unwrap_or_default();
    let gone = store
        .container_networks(&c.id)
        .unwrap_or_default()
        .into_iter()
        .find(|a| a.network.name == network);
    let names: Vec<String> = network_names(&raw)
        .into_iter()
        .filter(|n| n != network)
        .collect();
    store.detach_network(&c.id, network)?;
    save_networks(store, &c.id, &mut cfg, &names)?;
    // Its address leaves the other members' /etc/hosts (and its own, when it runs).
    if let Some(a) = &gone {
        let prefix = format!("{}\t", a.member.ip);
        for m in store.network_members(network).unwrap_or_default() {
            drop_lines(store, &m.container_id, &prefix);
        }
    }
    if !running(c) {
        return Ok(());
    }
    if let Some(a) = &gone {
        drop_lines(store, &c.id, &format!("{}\t", a.member.ip));
    }
    rewrite_resolv(store, c, &cfg);
    let req = Request {
        connect: false,
        network: network.to_string(),
    };
    netplug::request(&store.paths, &c.id, &req).map_err(|e| RuntimeError::Init {
        code: 125,
        message: format!(
            "disconnecting running container {} from network {network}: {e}: it takes effect at the next start",
            c.name
        ),
    })
}

/// Appends the container's line for a new address to its own /etc/hosts, with the
/// names its other addresses have there (the hostname and the container's name).
fn add_own_address(store: &Store, c: &ContainerRecord, ip: Ipv4Addr) {
    let path = store.paths.container_dir(&c.id).join("hosts");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return;
    };
    let others: Vec<String> = store
        .container_networks(&c.id)
        .unwrap_or_default()
        .into_iter()
        .filter(|a| a.member.ip != ip)
        .map(|a| format!("{}\t", a.member.ip))
        .collect();
    let names = text
        .lines()
        .find_map(|l| others.iter().find_map(|p| l.strip_prefix(p.as_str())))
        .map(str::to_string)
        .unwrap_or_else(|| format!("{} {}", &c.id[..c.id.len().min(12)], c.name));
    let line = format!("{ip}\t{names}\n");
    if !text.contains(&line) {
        let mut text = text;
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&line);
        write_in_place(&path, &text);
    }
}

/// Removes the lines starting with `prefix` from a container's /etc/hosts.
fn drop_lines(store: &Store, id: &str, prefix: &str) {
    let path = store.paths.container_dir(id).join("hosts");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return;
    };
    if !text.lines().any(|l| l.starts_with(prefix)) {
        return;
    }
    let kept: String = text
        .lines()
        .filter(|l| !l.starts_with(prefix))
        .map(|l| format!("{l}\n"))
        .collect();
    write_in_place(&path, &kept);
}

/// Rewrites a file the container has bind-mounted: same inode, so it sees the change.
fn write_in_place(path: &std::path::Path, text: &str) {
    if let Err(e) = std::fs::write(path, text) {
        tracing::debug!(error = %e, path = %path.display(), "rewrite");
    }
}

fn rewrite_resolv(store: &Store, c: &ContainerRecord, cfg: &ContainerConfig) {
    if !cfg.options.dns.is_empty() {
        return;
    }
    // A store that cannot say leaves the file as it was (the next start says why).
    let Ok(members) =
        crate::network::member::memberships(store, &c.id, cfg.options.network.as_deref())
    else {
        return;
    };
    crate::network::member::write_resolv(&store.paths.container_dir(&c.id), &members);
}
