//! network create|ls|inspect|rm|prune|exists|connect|disconnect: user-defined
//! networks, as podman's `network` commands. The records live in the store
//! (src/storage/networks.rs); the datapath that carries their traffic is the monitor's.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};

use super::filters::{label_matches, name_matches, Filters};
use super::template::{header_name, Format};
use super::{Ctx, Exit};
use crate::storage::networks::{NetworkRecord, Subnet, DEFAULT_NETWORK};
use crate::storage::Store;

#[derive(Debug, Args)]
pub struct NetworkArgs {
    #[command(subcommand)]
    pub command: NetworkCommand,
}

#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// Create a network
    Create(CreateArgs),
    /// List networks
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Display detailed information on one or more networks
    Inspect(InspectArgs),
    /// Remove one or more networks
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// Remove all networks no container uses
    Prune(PruneArgs),
    /// Check whether a network exists (exit 0 if it does, 1 if not)
    Exists { name: String },
    /// Attach a container to a network (a running one at once)
    Connect(ConnectArgs),
    /// Take a container off a network (a running one at once)
    Disconnect(DisconnectArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Network name (default: the next free podmanN)
    pub name: Option<String>,
    /// Subnet in CIDR notation (default: the first free 10.89.N.0/24)
    #[arg(long, value_name = "CIDR")]
    pub subnet: Option<String>,
    /// IPv4 gateway of the subnet (default: its first address)
    #[arg(long, value_name = "IP")]
    pub gateway: Option<String>,
    /// No route to the outside: members only reach each other
    #[arg(long)]
    pub internal: bool,
    /// Set metadata on the network (KEY=VALUE or KEY)
    #[arg(long)]
    pub label: Vec<String>,
    /// Network driver (only "bridge")
    #[arg(short, long, default_value = "bridge")]
    pub driver: String,
    /// Driver options: mtu=N, isolate=BOOL
    #[arg(short, long, value_name = "KEY=VALUE")]
    pub opt: Vec<String>,
    /// Do not answer DNS queries for the network's members
    #[arg(long)]
    pub disable_dns: bool,
    /// Do nothing if the network already exists
    #[arg(long)]
    pub ignore: bool,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Print only network IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Output format: json, a Go template ('{{.Name}}'), or 'table TEMPLATE'
    #[arg(long)]
    pub format: Option<String>,
    /// Filter output: name=, id=, label=, driver=
    #[arg(short, long, value_name = "KEY=VALUE")]
    pub filter: Vec<String>,
    /// Do not print the header
    #[arg(long)]
    pub noheading: bool,
    /// Do not truncate network IDs
    #[arg(long)]
    pub no_trunc: bool,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Output format: json (the default) or a Go template ('{{.Subnets}}')
    #[arg(short, long)]
    pub format: Option<String>,
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Remove the containers that use the network first
    #[arg(short, long)]
    pub force: bool,
    /// Accepted for podman compatibility (the containers are killed at once, as
    /// `rm -f` does)
    #[arg(short = 't', long = "time", value_name = "SECONDS")]
    pub timeout: Option<u32>,
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Do not ask for confirmation
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// Network-scoped alias for the container
    #[arg(long)]
    pub alias: Vec<String>,
    /// Static IPv4 address on the network
    #[arg(long)]
    pub ip: Option<String>,
    pub network: String,
    pub container: String,
}

#[derive(Debug, Args)]
pub struct DisconnectArgs {
    /// Accepted for podman compatibility
    #[arg(short, long)]
    pub force: bool,
    pub network: String,
    pub container: String,
}

pub fn network(ctx: &Ctx, a: NetworkArgs) -> anyhow::Result<i32> {
    match a.command {
        NetworkCommand::Create(a) => create(ctx, a),
        NetworkCommand::Ls(a) => ls(ctx, a),
        NetworkCommand::Inspect(a) => inspect(ctx, a),
        NetworkCommand::Rm(a) => rm(ctx, a),
        NetworkCommand::Prune(a) => prune(ctx, a),
        NetworkCommand::Exists { name } => {
            let store = Store::open(&ctx.paths)?;
            Ok(if store.network(&name).is_ok() { 0 } else { 1 })
        }
        NetworkCommand::Connect(a) => connect(ctx, a),
        NetworkCommand::Disconnect(a) => disconnect(ctx, a),
    }
}

fn bad(msg: impl Into<String>) -> anyhow::Error {
    Exit::with(125, msg)
}

/// The IPv4 subnets of the host's interfaces (a new network must not shadow them).
fn host_subnets() -> Vec<Subnet> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    addrs
        .filter_map(|a| {
            let ip = a.address?.as_sockaddr_in()?.ip();
            let mask = a.netmask?.as_sockaddr_in()?.ip();
            if ip.is_loopback() {
                return None;
            }
            let prefix = u32::from(mask).leading_ones() as u8;
            Subnet::parse(&format!("{ip}/{prefix}"))
        })
        .collect()
}

fn parse_options(opts: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for o in opts {
        let (k, v) = o.split_once('=').unwrap_or((o, ""));
        let ok = match k {
            "mtu" => v.parse::<u32>().is_ok_and(|m| (68..=65536).contains(&m)),
            "isolate" => matches!(v, "true" | "false" | "strict"),
            _ => {
                return Err(bad(format!(
                    "unsupported bridge network option {k}: skiff knows mtu and isolate"
                )))
            }
        };
        if !ok {
            return Err(bad(format!("invalid value {v:?} for network option {k}")));
        }
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

fn create(ctx: &Ctx, a: CreateArgs) -> anyhow::Result<i32> {
    match a.driver.as_str() {
        "bridge" => {}
        "macvlan" | "ipvlan" => {
            return Err(bad(format!(
                "unsupported driver {}: a rootless user-mode network has no host interface to attach to: use the bridge driver",
                a.driver
            )))
        }
        other => return Err(bad(format!("unsupported driver {other}: invalid argument"))),
    }
    let subnet = match &a.subnet {
        Some(s) => Some(Subnet::parse(s).ok_or_else(|| bad(format!("invalid CIDR address: {s}")))?),
        None => None,
    };
    let gateway = match &a.gateway {
        Some(g) => {
            let ip: Ipv4Addr = g.parse().map_err(|_| {
                bad(format!(
                    "invalid gateway address {g:?}: expected an IPv4 address"
                ))
            })?;
            let Some(s) = &subnet else {
                return Err(bad("cannot set gateway or range without subnet"));
            };
            if !s.is_host(ip) {
                return Err(bad(format!("gateway {ip} not in subnet {s}")));
            }
            Some(ip)
        }
        None => None,
    };
    if let Some(s) = &subnet {
        if s.prefix > 30 {
            return Err(bad(format!(
                "subnet {s} is too small: it needs room for a gateway and containers (at most /30)"
            )));
        }
    }
    if a.label.iter().any(|l| l.is_empty() || l.starts_with('=')) {
        return Err(bad("--label needs KEY or KEY=VALUE"));
    }
    let options = parse_options(&a.opt)?;
    let mut store = Store::open(&ctx.paths)?;
    let name = match a.name {
        Some(n) => n,
        None => {
            let taken: Vec<String> = store.networks()?.into_iter().map(|n| n.name).collect();
            (1..)
                .map(|i| format!("podman{i}"))
                .find(|n| !taken.contains(n))
                .unwrap_or_default()
        }
    };
    if a.ignore && store.network(&name).is_ok_and(|n| n.name == name) {
        println!("{name}");
        return Ok(0);
    }
    let rec = NetworkRecord {
        name: name.clone(),
        id: crate::storage::random_id(),
        driver: a.driver,
        interface: String::new(),
        created_ns: crate::storage::networks::now_ns(),
        subnet: subnet.unwrap_or(Subnet {
            addr: Ipv4Addr::UNSPECIFIED,
            prefix: 0,
        }),
        gateway: gateway.unwrap_or(Ipv4Addr::UNSPECIFIED),
        internal: a.internal,
        dns_enabled: !a.disable_dns,
        labels: parse_labels(&a.label),
        options,
    };
    store
        .create_network(rec, subnet.is_some(), gateway.is_some(), &host_subnets())
        .map_err(|e| bad(e.to_string()))?;
    println!("{name}");
    Ok(0)
}

fn time_ns(ns: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(
        ns.div_euclid(1_000_000_000),
        ns.rem_euclid(1_000_000_000) as u32,
    )
    .unwrap_or_default()
}

/// `network inspect` JSON, with podman's keys (labels and options only when set).
pub fn network_json(n: &NetworkRecord) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), json!(n.name));
    m.insert("id".into(), json!(n.id));
    m.insert("driver".into(), json!(n.driver));
    m.insert("network_interface".into(), json!(n.interface));
    m.insert(
        "created".into(),
        json!(time_ns(n.created_ns).to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)),
    );
    m.insert(
        "subnets".into(),
        json!([{"subnet": n.subnet.to_string(), "gateway": n.gateway.to_string()}]),
    );
    m.insert("ipv6_enabled".into(), json!(false));
    m.insert("internal".into(), json!(n.internal));
    m.insert("dns_enabled".into(), json!(n.dns_enabled));
    if !n.labels.is_empty() {
        m.insert("labels".into(), json!(n.labels));
    }
    if !n.options.is_empty() {
        m.insert("options".into(), json!(n.options));
    }
    m.insert("ipam_options".into(), json!({"driver": "host-local"}));
    Value::Object(m)
}

/// The object templates see: podman's Go field names (`.NetworkInterface`,
/// `.DNSEnabled`), which differ from the JSON keys.
fn template_value(n: &NetworkRecord, short_id: bool) -> Value {
    let id = if short_id { &n.id[..12] } else { &n.id[..] };
    json!({
        "Name": n.name,
        "ID": id,
        "Driver": n.driver,
        "NetworkInterface": n.interface,
        "Created": time_ns(n.created_ns).format("%Y-%m-%d %H:%M:%S%.f +0000 UTC").to_string(),
        "Subnets": [{"Subnet": n.subnet.to_string(), "Gateway": n.gateway.to_string()}],
        "IPv6Enabled": false,
        "Internal": n.internal,
        "DNSEnabled": n.dns_enabled,
        "Labels": if short_id {
            json!(n.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","))
        } else {
            json!(n.labels)
        },
        "Options": n.options,
        "IPAMOptions": {"driver": "host-local"},
    })
}

fn ls(ctx: &Ctx, a: LsArgs) -> anyhow::Result<i32> {
    let filters = Filters::parse(&a.filter, &["name", "id", "label", "driver"], "network")?;
    let format = Format::parse("network", a.format.as_deref()).map_err(|e| bad(e.to_string()))?;
    let store = Store::open(&ctx.paths)?;
    let list: Vec<NetworkRecord> = store
        .networks()?
        .into_iter()
        .filter(|n| {
            filters.matches(|k, v| match k {
                "name" => name_matches(v, &n.name),
                "id" => n.id.starts_with(v),
                "label" => label_matches(&n.labels, v),
                "driver" => v == n.driver,
                _ => false,
            })
        })
        .collect();
    if a.quiet {
        for n in &list {
            println!("{}", if a.no_trunc { &n.id[..] } else { &n.id[..12] });
        }
        return Ok(0);
    }
    let format = match format {
        Format::Json => {
            let items: Vec<Value> = list.iter().map(network_json).collect();
            println!("{}", serde_json::to_string_pretty(&items)?);
            return Ok(0);
        }
        Format::Default => {
            Format::parse("network", Some("table {{.ID}}\\t{{.Name}}\\t{{.Driver}}"))
                .map_err(|e| bad(e.to_string()))?
        }
        t => t,
    };
    let items: Vec<Value> = list
        .iter()
        .map(|n| template_value(n, !a.no_trunc))
        .collect();
    let header = |f: &str| match f {
        "ID" => "NETWORK ID".to_string(),
        other => header_name(other),
    };
    let mut out = format
        .render(&items, &header)
        .map_err(|e| bad(e.to_string()))?;
    if a.noheading {
        if let Format::Template { table: true, .. } = format {
            out = out
                .split_once('\n')
                .map(|(_, r)| r.to_string())
                .unwrap_or_default();
        }
    }
    print!("{out}");
    Ok(0)
}

fn inspect(ctx: &Ctx, a: InspectArgs) -> anyhow::Result<i32> {
    let format = Format::parse("network", a.format.as_deref()).map_err(|e| bad(e.to_string()))?;
    let store = Store::open(&ctx.paths)?;
    let mut found = Vec::new();
    let mut missing = None;
    for n in &a.names {
        match store.network(n) {
            Ok(net) => found.push(net),
            Err(e) => {
                missing.get_or_insert(format!("inspecting object: network {n}: {e}"));
            }
        }
    }
    match format {
        Format::Template { .. } => {
            let objs: Vec<Value> = found.iter().map(|n| template_value(n, false)).collect();
            super::inspect::print_objects("network", a.format.as_deref(), &objs)?;
        }
        _ => {
            let objs: Vec<Value> = found.iter().map(network_json).collect();
            println!("{}", serde_json::to_string_pretty(&objs)?);
        }
    }
    match missing {
        Some(m) => Err(bad(m)),
        None => Ok(0),
    }
}

/// Names of the containers attached to a network.
fn users(store: &Store, net: &NetworkRecord) -> anyhow::Result<Vec<String>> {
    Ok(store
        .network_members(&net.name)?
        .into_iter()
        .map(|m| m.container_id)
        .collect())
}

fn rm(ctx: &Ctx, a: RmArgs) -> anyhow::Result<i32> {
    let mut store = Store::open(&ctx.paths)?;
    // Check everything first, so a bad name or a network in use changes nothing.
    let mut nets = Vec::new();
    for n in &a.names {
        let net = store.network(n).map_err(|e| Exit::with(1, e.to_string()))?;
        if net.name == DEFAULT_NETWORK {
            return Err(bad(format!(
                "default network {DEFAULT_NETWORK} cannot be removed"
            )));
        }
        if !a.force && !users(&store, &net)?.is_empty() {
            return Err(Exit::with(
                2,
                format!(
                    "\"{}\" has associated containers with it. Use -f to forcibly delete containers and pods: network is being used",
                    net.name
                ),
            ));
        }
        nets.push(net);
    }
    for net in nets {
        let used = users(&store, &net)?;
        if !used.is_empty() {
            // --force: the containers go first, as in podman.
            let _ = a.timeout;
            let status = std::process::Command::new("/proc/self/exe")
                .args(ctx.self_args())
                .args(["rm", "--force"])
                .args(&used)
                .stdout(std::process::Stdio::null())
                .status()?;
            if !status.success() {
                return Err(bad(format!(
                    "removing the containers that use network {} failed",
                    net.name
                )));
            }
        }
        store.delete_network(&net.name)?;
        println!("{}", net.name);
    }
    Ok(0)
}

fn prune(ctx: &Ctx, a: PruneArgs) -> anyhow::Result<i32> {
    if !a.force && !super::confirm("WARNING! This will remove all networks not used by at least one container.\nAre you sure you want to continue?") {
        return Ok(0);
    }
    let mut store = Store::open(&ctx.paths)?;
    for n in store.networks()? {
        if n.name != DEFAULT_NETWORK && users(&store, &n)?.is_empty() {
            store.delete_network(&n.name)?;
            println!("{}", n.name);
        }
    }
    Ok(0)
}

fn connect(ctx: &Ctx, a: ConnectArgs) -> anyhow::Result<i32> {
    let ip = match &a.ip {
        Some(s) => Some(
            s.parse::<Ipv4Addr>()
                .map_err(|_| bad(format!("--ip {s:?} is not an IPv4 address")))?,
        ),
        None => None,
    };
    let mut store = Store::open(&ctx.paths)?;
    let net = store.network(&a.network).map_err(|e| bad(e.to_string()))?;
    let c = store
        .find_container(&a.container)
        .map_err(|e| bad(e.to_string()))?;
    let c = super::container::refresh(&mut store, c)?;
    crate::runtime::netconnect::connect(&mut store, &c, &net.name, &a.alias, ip)
        .map_err(|e| bad(e.to_string()))?;
    Ok(0)
}

fn disconnect(ctx: &Ctx, a: DisconnectArgs) -> anyhow::Result<i32> {
    let mut store = Store::open(&ctx.paths)?;
    let net = store.network(&a.network).map_err(|e| bad(e.to_string()))?;
    let c = store
        .find_container(&a.container)
        .map_err(|e| bad(e.to_string()))?;
    let c = super::container::refresh(&mut store, c)?;
    crate::runtime::netconnect::disconnect(&mut store, &c, &net.name)
        .map_err(|e| bad(e.to_string()))?;
    Ok(0)
}

/// Folds repeated `--network` flags into one value: several user-defined networks
/// become `a,b`; a mode (none, host, container:, ns:, slirp4netns...) must stand alone,
/// as in podman.
pub fn join_network_flags(flags: &[String]) -> anyhow::Result<Option<String>> {
    if flags.len() <= 1 {
        return Ok(flags.first().cloned());
    }
    for f in flags {
        if crate::runtime::NetworkMode::parse(f).ok() != Some(crate::runtime::NetworkMode::Bridge) {
            return Err(bad(format!(
                "cannot set multiple networks without bridge network mode, selected mode {}: invalid argument",
                f.split(':').next().unwrap_or(f)
            )));
        }
    }
    Ok(Some(flags.join(",")))
}

fn parse_labels(raw: &[String]) -> BTreeMap<String, String> {
    raw.iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (l.to_string(), String::new()),
        })
        .collect()
}

/// `NetworkSettings.Networks` of a container as podman shows it: one entry per
/// user-defined network (a `container:` container shows its target's), keyed by name.
pub fn container_networks_json(ctx: &Ctx, id: &str, network: Option<&str>) -> Value {
    let Ok(store) = Store::open(&ctx.paths) else {
        return json!({});
    };
    let id = match network.and_then(crate::runtime::networks::container_target) {
        Some(target) => target,
        None => id,
    };
    let mut m = Map::new();
    for a in store.container_networks(id).unwrap_or_default() {
        let mut aliases = a.member.aliases.clone();
        aliases.push(id[..id.len().min(12)].to_string());
        m.insert(
            a.network.name.clone(),
            json!({
                "EndpointID": "",
                "Gateway": a.network.gateway.to_string(),
                "IPAddress": a.member.ip.to_string(),
                "IPPrefixLen": a.network.subnet.prefix,
                "IPv6Gateway": "",
                "GlobalIPv6Address": "",
                "GlobalIPv6PrefixLen": 0,
                "MacAddress": a.member.mac,
                "NetworkID": a.network.name,
                "DriverOpts": Value::Null,
                "IPAMConfig": Value::Null,
                "Links": Value::Null,
                "Aliases": aliases,
            }),
        );
    }
    Value::Object(m)
}

/// A `container:` container's target is started first when it is not running, as
/// podman starts a container's dependencies.
pub fn start_dependency(ctx: &Ctx, cfg: &crate::runtime::ContainerConfig) -> anyhow::Result<()> {
    let Some(target) = crate::runtime::networks::dependency_of(cfg) else {
        return Ok(());
    };
    let mut store = Store::open(&ctx.paths)?;
    let found = store.find_container(target).map_err(|e| {
        bad(format!(
            "looking up container to share net namespace with: {e}"
        ))
    })?;
    let t = super::container::refresh(&mut store, found)?;
    drop(store);
    if !matches!(
        t.state,
        crate::storage::containers::State::Running | crate::storage::containers::State::Paused
    ) {
        super::container::start_detached(ctx, &t).map_err(|e| {
            bad(format!(
                "starting container {} (its network namespace is shared): {e}",
                t.name
            ))
        })?;
    }
    Ok(())
}
