//! User-defined networks (podman's `network` records) and their members: which
//! container has which address, MAC and aliases on which network. Addresses are handed
//! out inside one write transaction, so two concurrent creates never get the same one,
//! and a container's addresses go with its record (trigger).
//!
//! The datapath runs in each member's monitor, which lets go of the database while its
//! container runs: so every membership change also rewrites a small JSON file per
//! network under the runroot ([`network_run_dir`]), which [`super::network_cache::MemberCache`] re-reads only
//! when it changed. That directory is also where members' monitors put their sockets.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::images::db_err;
use super::network_cache::write_members;
use super::subnet::mask;
pub use super::subnet::Subnet;
use super::{StorageError, Store};
use crate::config::Paths;

/// The tables, added by a step keyed on their presence (like volumes), so it merges with
/// other schema changes in any order. The default network `podman` is a row like any
/// other, so members can reference it; it cannot be removed.
pub(crate) const NETWORKS_TABLES: &str = r#"
CREATE TABLE IF NOT EXISTS networks (
    name TEXT PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    driver TEXT NOT NULL,
    interface TEXT NOT NULL,
    created_ns INTEGER NOT NULL,
    subnet TEXT NOT NULL,
    gateway TEXT NOT NULL,
    internal INTEGER NOT NULL,
    dns_enabled INTEGER NOT NULL,
    labels TEXT NOT NULL,
    options TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS network_members (
    network TEXT NOT NULL REFERENCES networks(name) ON DELETE CASCADE,
    container TEXT NOT NULL,
    ip TEXT NOT NULL,
    mac TEXT NOT NULL,
    aliases TEXT NOT NULL,
    PRIMARY KEY (network, container),
    UNIQUE (network, ip)
);
CREATE INDEX IF NOT EXISTS network_members_container ON network_members(container);
CREATE TRIGGER IF NOT EXISTS network_members_release AFTER DELETE ON containers
BEGIN DELETE FROM network_members WHERE container = OLD.id; END;
"#;

/// podman's default network: always there, never removed.
pub const DEFAULT_NETWORK: &str = "podman";
/// sha256("podman"), the ID podman gives its default network.
const DEFAULT_ID: &str = "2f259bab93aaaaa2542ba43ef33eb990d0999ee1b9924b557b7be53c0b7a1bb9";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkRecord {
    pub name: String,
    pub id: String,
    pub driver: String,
    /// The bridge name podman would give it (podman0, podman1, ...), shown by inspect.
    pub interface: String,
    /// Nanoseconds since the epoch (podman shows creation times with nanoseconds).
    pub created_ns: i64,
    pub subnet: Subnet,
    pub gateway: Ipv4Addr,
    /// No route to the outside (`--internal`).
    pub internal: bool,
    pub dns_enabled: bool,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
}

/// One container's attachment to a network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkMember {
    pub container_id: String,
    /// The container's name (the members file is rewritten on membership changes only,
    /// so a rename shows there from the next one).
    pub name: String,
    /// `--network-alias` values (DNS also answers for the name and the 12-char ID).
    pub aliases: Vec<String>,
    pub ip: Ipv4Addr,
    /// Locally administered unicast MAC, aa:bb:cc:dd:ee:ff.
    pub mac: String,
}

/// What a container asks of one network at create time.
#[derive(Debug, Clone, Default)]
pub struct AttachRequest {
    pub network: String,
    pub aliases: Vec<String>,
    /// A static address (`--ip`); otherwise the lowest free one.
    pub ip: Option<Ipv4Addr>,
}

/// A container's attachment, with the network it belongs to.
#[derive(Debug, Clone)]
pub struct Attachment {
    pub network: NetworkRecord,
    pub member: NetworkMember,
}

fn row(r: &rusqlite::Row) -> rusqlite::Result<NetworkRecord> {
    let subnet: String = r.get(5)?;
    let gateway: String = r.get(6)?;
    let labels: String = r.get(9)?;
    let options: String = r.get(10)?;
    let bad = |what: &str| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            format!("network {what}").into(),
        )
    };
    Ok(NetworkRecord {
        name: r.get(0)?,
        id: r.get(1)?,
        driver: r.get(2)?,
        interface: r.get(3)?,
        created_ns: r.get(4)?,
        subnet: Subnet::parse(&subnet).ok_or_else(|| bad("subnet"))?,
        gateway: gateway.parse().map_err(|_| bad("gateway"))?,
        internal: r.get::<_, i64>(7)? != 0,
        dns_enabled: r.get::<_, i64>(8)? != 0,
        labels: serde_json::from_str(&labels).unwrap_or_default(),
        options: serde_json::from_str(&options).unwrap_or_default(),
    })
}

const COLS: &str =
    "name, id, driver, interface, created_ns, subnet, gateway, internal, dns_enabled, labels, options";

fn member_row(r: &rusqlite::Row) -> rusqlite::Result<NetworkMember> {
    let ip: String = r.get(2)?;
    let aliases: String = r.get(4)?;
    Ok(NetworkMember {
        container_id: r.get(0)?,
        name: r.get(1)?,
        ip: ip.parse().unwrap_or(Ipv4Addr::UNSPECIFIED),
        mac: r.get(3)?,
        aliases: serde_json::from_str(&aliases).unwrap_or_default(),
    })
}

/// podman's rule for network names (also keeps them safe as path components).
pub fn valid_name(n: &str) -> bool {
    super::volumes::valid_name(n)
}

/// Nanoseconds since the epoch.
pub fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
}

/// Where the members of a network meet at run time: the members file, and one socket
/// per member's monitor. Short (12 hex digits of the ID) because socket paths are
/// limited to 108 bytes.
pub fn network_run_dir(paths: &Paths, net: &NetworkRecord) -> PathBuf {
    paths
        .runroot
        .join("networks")
        .join(&net.id[..net.id.len().min(12)])
}

/// A random locally administered unicast MAC.
fn random_mac() -> String {
    let mut b = super::random_bytes::<6>();
    b[0] = (b[0] & 0xfe) | 0x02;
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The lowest free host address of the subnet that is not the gateway.
fn free_ip(net: &NetworkRecord, taken: &[Ipv4Addr]) -> Option<Ipv4Addr> {
    let start = u32::from(net.subnet.addr);
    let end = start | !mask(net.subnet.prefix);
    (start..=end)
        .map(Ipv4Addr::from)
        .find(|ip| net.subnet.is_host(*ip) && *ip != net.gateway && !taken.contains(ip))
}

impl Store {
    /// Creates the tables and the default network where missing.
    pub(crate) fn ensure_network_tables(&mut self) -> Result<(), StorageError> {
        let has: i64 = self
            .conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type='table' AND name='networks'",
                [],
                |r| r.get(0),
            )
            .map_err(self.err())?;
        if has != 0 {
            return Ok(());
        }
        self.write(|tx| {
            tx.execute_batch(NETWORKS_TABLES)
                .map_err(|e| db_err(tx, e))?;
            tx.execute(
                &format!("INSERT OR IGNORE INTO networks ({COLS}) VALUES (?1,?2,'bridge','podman0',?3,'10.88.0.0/16','10.88.0.1',0,0,'{{}}','{{}}')"),
                params![DEFAULT_NETWORK, DEFAULT_ID, now_ns()],
            )
            .map_err(|e| db_err(tx, e))?;
            Ok(())
        })
    }

    /// A network by name, full ID or unique ID prefix.
    pub fn network(&self, key: &str) -> Result<NetworkRecord, StorageError> {
        let exact = self
            .conn
            .query_row(
                &format!("SELECT {COLS} FROM networks WHERE name = ?1 OR id = ?1"),
                [key],
                row,
            )
            .optional()
            .map_err(self.err())?;
        if let Some(n) = exact {
            return Ok(n);
        }
        if !key.is_empty() && key.bytes().all(|b| b.is_ascii_hexdigit()) {
            let found: Vec<NetworkRecord> = self
                .networks()?
                .into_iter()
                .filter(|n| n.id.starts_with(key))
                .collect();
            match found.len() {
                1 => return Ok(found.into_iter().next().expect("one element")),
                0 => {}
                _ => return Err(StorageError::Ambiguous(key.to_string())),
            }
        }
        Err(StorageError::NoSuchNetwork(key.to_string()))
    }

    /// All networks, by name.
    pub fn networks(&self) -> Result<Vec<NetworkRecord>, StorageError> {
        let mut st = self
            .conn
            .prepare(&format!("SELECT {COLS} FROM networks ORDER BY name"))
            .map_err(self.err())?;
        let v = st
            .query_map([], row)
            .map_err(self.err())?
            .collect::<Result<_, _>>()
            .map_err(self.err())?;
        Ok(v)
    }

    /// Records a new network. `subnet` None picks the first free 10.89.N.0/24 as podman
    /// does; the interface name is the first free podmanN. Fails if the name is taken or
    /// the subnet overlaps another network's or one in `host_subnets`.
    pub fn create_network(
        &mut self,
        mut net: NetworkRecord,
        subnet_given: bool,
        gateway_given: bool,
        host_subnets: &[Subnet],
    ) -> Result<NetworkRecord, StorageError> {
        let conflict = StorageError::NetworkConflict;
        if !valid_name(&net.name) {
            return Err(conflict(format!(
                "network name {} invalid: names must match [a-zA-Z0-9][a-zA-Z0-9_.-]*",
                net.name
            )));
        }
        self.write(|tx| {
            let mut st = tx
                .prepare(&format!("SELECT {COLS} FROM networks"))
                .map_err(|e| db_err(tx, e))?;
            let all: Vec<NetworkRecord> = st
                .query_map([], row)
                .map_err(|e| db_err(tx, e))?
                .collect::<Result<_, _>>()
                .map_err(|e| db_err(tx, e))?;
            if all.iter().any(|n| n.name == net.name) {
                return Err(conflict(format!(
                    "network name {} already used: network already exists",
                    net.name
                )));
            }
            let used = |s: &Subnet| {
                all.iter().any(|n| n.subnet.overlaps(s)) || host_subnets.iter().any(|h| h.overlaps(s))
            };
            if subnet_given {
                if used(&net.subnet) {
                    return Err(conflict(format!(
                        "subnet {} is already used on the host or by another config",
                        net.subnet
                    )));
                }
            } else {
                net.subnet = (0..=255u8)
                    .map(|n| Subnet {
                        addr: Ipv4Addr::new(10, 89, n, 0),
                        prefix: 24,
                    })
                    .find(|s| !used(s))
                    .ok_or_else(|| {
                        conflict("could not find a free subnet in 10.89.0.0/16: remove unused networks or give --subnet".into())
                    })?;
            }
            if !gateway_given {
                net.gateway = net.subnet.first_host();
            }
            net.interface = (0..)
                .map(|i| format!("podman{i}"))
                .find(|i| !all.iter().any(|n| &n.interface == i))
                .unwrap_or_default();
            tx.execute(
                &format!("INSERT INTO networks ({COLS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11)"),
                params![
                    net.name,
                    net.id,
                    net.driver,
                    net.interface,
                    net.created_ns,
                    net.subnet.to_string(),
                    net.gateway.to_string(),
                    net.internal as i64,
                    net.dns_enabled as i64,
                    serde_json::to_string(&net.labels).unwrap_or_else(|_| "{}".into()),
                    serde_json::to_string(&net.options).unwrap_or_else(|_| "{}".into()),
                ],
            )
            .map_err(|e| db_err(tx, e))?;
            Ok(())
        })?;
        Ok(net)
    }

    /// Forgets a network (it must have no members left) and its run-time directory.
    pub fn delete_network(&mut self, name: &str) -> Result<(), StorageError> {
        let net = self.network(name)?;
        self.write(|tx| {
            tx.execute("DELETE FROM networks WHERE name = ?1", [&net.name])
                .map_err(|e| db_err(tx, e))?;
            Ok(())
        })?;
        let _ = std::fs::remove_dir_all(network_run_dir(&self.paths, &net));
        Ok(())
    }

    /// The members of a network, by address.
    pub fn network_members(&self, network: &str) -> Result<Vec<NetworkMember>, StorageError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT m.container, c.name, m.ip, m.mac, m.aliases FROM network_members m
                 JOIN containers c ON c.id = m.container WHERE m.network = ?1",
            )
            .map_err(self.err())?;
        let mut v: Vec<NetworkMember> = st
            .query_map([network], member_row)
            .map_err(self.err())?
            .collect::<Result<_, _>>()
            .map_err(self.err())?;
        v.sort_by_key(|m| m.ip);
        Ok(v)
    }

    /// A container's attachments, by network name.
    pub fn container_networks(&self, container: &str) -> Result<Vec<Attachment>, StorageError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT m.network, m.container, c.name, m.ip, m.mac, m.aliases FROM network_members m
                 JOIN containers c ON c.id = m.container WHERE m.container = ?1 ORDER BY m.network",
            )
            .map_err(self.err())?;
        let rows: Vec<(String, NetworkMember)> = st
            .query_map([container], |r| {
                let net: String = r.get(0)?;
                let ip: String = r.get(3)?;
                let aliases: String = r.get(5)?;
                Ok((
                    net,
                    NetworkMember {
                        container_id: r.get(1)?,
                        name: r.get(2)?,
                        ip: ip.parse().unwrap_or(Ipv4Addr::UNSPECIFIED),
                        mac: r.get(4)?,
                        aliases: serde_json::from_str(&aliases).unwrap_or_default(),
                    },
                ))
            })
            .map_err(self.err())?
            .collect::<Result<_, _>>()
            .map_err(self.err())?;
        let mut out = Vec::new();
        for (net, member) in rows {
            out.push(Attachment {
                network: self.network(&net)?,
                member,
            });
        }
        Ok(out)
    }

    /// Attaches a container (already recorded) to networks, handing out addresses and
    /// MACs; all or nothing. Rewrites the networks' members files.
    pub fn attach_networks(
        &mut self,
        container: &str,
        reqs: &[AttachRequest],
    ) -> Result<Vec<Attachment>, StorageError> {
        let mut nets = Vec::new();
        for r in reqs {
            nets.push(self.network(&r.network)?);
        }
        self.write(|tx| {
            for (r, net) in reqs.iter().zip(&nets) {
                let mut st = tx
                    .prepare("SELECT ip FROM network_members WHERE network = ?1")
                    .map_err(|e| db_err(tx, e))?;
                let taken: Vec<Ipv4Addr> = st
                    .query_map([&net.name], |r| r.get::<_, String>(0))
                    .map_err(|e| db_err(tx, e))?
                    .filter_map(|s| s.ok()?.parse().ok())
                    .collect();
                let ip = match r.ip {
                    Some(ip) if !net.subnet.is_host(ip) || ip == net.gateway => {
                        return Err(StorageError::NetworkConflict(format!(
                            "requested static ip {ip} not in any subnet on network {}",
                            net.name
                        )))
                    }
                    Some(ip) if taken.contains(&ip) => {
                        return Err(StorageError::NetworkConflict(format!(
                            "requested ip address {ip} is already allocated on network {}: choose another --ip",
                            net.name
                        )))
                    }
                    Some(ip) => ip,
                    None => free_ip(net, &taken).ok_or_else(|| {
                        StorageError::NetworkConflict(format!(
                            "no free IP address left in subnet {} of network {}",
                            net.subnet, net.name
                        ))
                    })?,
                };
                tx.execute(
                    "INSERT INTO network_members (network, container, ip, mac, aliases) VALUES (?1,?2,?3,?4,?5)",
                    params![
                        net.name,
                        container,
                        ip.to_string(),
                        random_mac(),
                        serde_json::to_string(&r.aliases).unwrap_or_else(|_| "[]".into())
                    ],
                )
                .map_err(|e| db_err(tx, e))?;
            }
            Ok(())
        })?;
        self.sync_member_files(&nets);
        self.container_networks(container)
    }

    /// Takes a container off one network (its address is free again).
    pub fn detach_network(&mut self, container: &str, network: &str) -> Result<(), StorageError> {
        let net = self.network(network)?;
        let n = self.write(|tx| {
            tx.execute(
                "DELETE FROM network_members WHERE network = ?1 AND container = ?2",
                params![net.name, container],
            )
            .map_err(|e| db_err(tx, e))
        })?;
        if n == 0 {
            return Err(StorageError::NetworkConflict(format!(
                "container {container} is not connected to network {}",
                net.name
            )));
        }
        self.sync_member_files(std::slice::from_ref(&net));
        Ok(())
    }

    /// Replaces a container's stored configuration (`network connect` changes the
    /// networks it names).
    pub fn set_container_config(&mut self, id: &str, config: &str) -> Result<(), StorageError> {
        self.write(|tx| {
            tx.execute(
                "UPDATE containers SET config = ?2 WHERE id = ?1",
                params![id, config],
            )
            .map_err(|e| db_err(tx, e))?;
            Ok(())
        })
    }

    /// Names of the networks a container is attached to (before its record goes, so
    /// their members files can be rewritten after).
    pub fn network_names_of(&self, container: &str) -> Vec<String> {
        self.container_networks(container)
            .map(|v| v.into_iter().map(|a| a.network.name).collect())
            .unwrap_or_default()
    }

    /// Rewrites the members file of each named network (best effort: the database is
    /// the truth, the file a cache for monitors).
    pub fn sync_member_files_by_name(&self, names: &[String]) {
        let nets: Vec<NetworkRecord> = names.iter().filter_map(|n| self.network(n).ok()).collect();
        self.sync_member_files(&nets);
    }

    fn sync_member_files(&self, nets: &[NetworkRecord]) {
        for net in nets {
            let dir = network_run_dir(&self.paths, net);
            let members = match self.network_members(&net.name) {
                Ok(m) => m,
                Err(_) => continue,
            };
            if let Err(e) = write_members(&dir, &members) {
                tracing::debug!(dir = %dir.display(), error = %e, "writing network members file");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_and_members() {
        let dir = tempfile::tempdir().unwrap();
        let paths = crate::config::Paths::resolve(
            Some(&dir.path().join("root")),
            Some(&dir.path().join("run")),
        )
        .unwrap();
        let mut store = Store::open(&paths).unwrap();
        let def = store.network("podman").unwrap();
        assert_eq!(def.subnet.to_string(), "10.88.0.0/16");
        let mk = |name: &str| NetworkRecord {
            name: name.into(),
            id: super::super::random_id(),
            driver: "bridge".into(),
            interface: String::new(),
            created_ns: 1,
            subnet: Subnet::parse("0.0.0.0/0").unwrap(),
            gateway: Ipv4Addr::UNSPECIFIED,
            internal: false,
            dns_enabled: true,
            labels: BTreeMap::new(),
            options: BTreeMap::new(),
        };
        let a = store.create_network(mk("a"), false, false, &[]).unwrap();
        assert_eq!(a.subnet.to_string(), "10.89.0.0/24");
        assert_eq!(a.gateway, Ipv4Addr::new(10, 89, 0, 1));
        assert_eq!(a.interface, "podman1");
        let host = [Subnet::parse("10.89.1.0/24").unwrap()];
        let b = store.create_network(mk("b"), false, false, &host).unwrap();
        assert_eq!(b.subnet.to_string(), "10.89.2.0/24");
        assert!(store.create_network(mk("a"), false, false, &[]).is_err());
        let mut c = mk("c");
        c.subnet = Subnet::parse("10.89.0.128/25").unwrap();
        assert!(store.create_network(c, true, false, &[]).is_err());
        let found = store.network(&a.id[..6]).unwrap();
        assert_eq!(found.name, "a");
    }
}
