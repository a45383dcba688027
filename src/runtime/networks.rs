//! The network modes that involve other objects: `container:NAME` (share another
//! container's user and network namespaces), `ns:PATH` (join a network namespace file)
//! and user-defined networks (`--network NAME[,NAME]`, `--network-alias`, `--ip`).
//! Checked at create, so bad input leaves nothing behind; resolved again at every start
//! by the monitor ([`join_for`]), because a target's namespaces change when it restarts.

use std::net::Ipv4Addr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use super::{ContainerConfig, CreateOptions, NetworkMode, RuntimeError};
use crate::storage::containers::State;
use crate::storage::networks::{AttachRequest, Attachment, DEFAULT_NETWORK};
use crate::storage::Store;
use crate::userns::IdMapping;

fn bad(flag: &'static str, detail: String) -> RuntimeError {
    RuntimeError::BadFlag { flag, detail }
}

/// `container:X` → X.
pub fn container_target(network: &str) -> Option<&str> {
    network.strip_prefix("container:")
}

/// `ns:PATH` → PATH.
pub fn ns_path(network: &str) -> Option<&Path> {
    network.strip_prefix("ns:").map(Path::new)
}

/// The user-defined networks named by a `--network` value (`bridge` is podman's name
/// for the default network).
pub fn network_names(network: &str) -> Vec<String> {
    network
        .split(',')
        .filter(|n| !n.is_empty())
        .map(|n| {
            if n == "bridge" {
                DEFAULT_NETWORK.to_string()
            } else {
                n.to_string()
            }
        })
        .collect()
}

/// What `inspect` shows as HostConfig.NetworkMode: podman's "bridge" for user-defined
/// networks, the value itself otherwise.
pub fn inspect_mode(network: Option<&str>) -> String {
    let n = network.unwrap_or("none");
    match NetworkMode::parse(n) {
        Ok(NetworkMode::Bridge) => "bridge".into(),
        _ => n.to_string(),
    }
}

/// The container a `container:` container depends on (its full ID).
pub fn dependency_of(cfg: &ContainerConfig) -> Option<&str> {
    cfg.options.network.as_deref().and_then(container_target)
}

/// IDs of the containers that share `id`'s network namespace (`container:<id>`).
pub fn dependents(store: &Store, id: &str) -> Result<Vec<String>, crate::storage::StorageError> {
    Ok(store
        .containers()?
        .into_iter()
        .filter(|c| {
            serde_json::from_str::<ContainerConfig>(&c.config)
                .ok()
                .is_some_and(|cfg| dependency_of(&cfg) == Some(id))
        })
        .map(|c| c.id)
        .collect())
}

/// Refuses the removal of a container that others still share (`container:<id>`),
/// with podman's message; an exited `--rm` container is kept for the same reason.
/// A store that cannot be read refuses too: removing blind could orphan a dependent.
pub fn check_no_dependents(store: &Store, id: &str) -> Result<(), String> {
    let deps = dependents(store, id)
        .map_err(|e| format!("listing the containers that depend on {id}: {e}"))?;
    if deps.is_empty() {
        return Ok(());
    }
    Err(format!(
        "container {id} has dependent containers which must be removed before it: {}: container already exists",
        deps.join(", ")
    ))
}

/// What create learned about the network mode.
#[derive(Default)]
pub struct Prepared {
    /// The `--network` value to store: `container:<full id>`, `ns:<path>`, or the
    /// network names.
    pub network: Option<String>,
    /// `container:` mode: the target's ID mapping (the two share a user namespace).
    pub mapping: Option<Option<IdMapping>>,
    /// `container:` mode: the target's bundle (its /etc/hosts and resolv.conf are
    /// shared, as podman shares them).
    pub target_dir: Option<PathBuf>,
    /// User-defined networks to attach to once the record exists.
    pub attach: Vec<AttachRequest>,
}

/// Checks the network flags against the mode and resolves what the mode names.
pub fn prepare(
    store: &Store,
    opts: &CreateOptions,
    mode: NetworkMode,
) -> Result<Prepared, RuntimeError> {
    let raw = opts.network.clone().unwrap_or_default();
    let not_bridge = |flag: &'static str| {
        bad(
            flag,
            format!("{flag} can only be set when the network mode is bridge"),
        )
    };
    if mode != NetworkMode::Bridge {
        if !opts.network_aliases.is_empty() {
            return Err(not_bridge("--network-alias"));
        }
        if opts.ip.is_some() {
            return Err(not_bridge("--ip"));
        }
    }
    match mode {
        NetworkMode::Container => {
            let target = container_target(&raw).unwrap_or_default();
            if target.is_empty() {
                return Err(bad(
                    "--network",
                    "namespace mode container requires a value: use container:NAME".into(),
                ));
            }
            if target.contains(',') {
                return Err(bad("--network", "cannot set multiple networks without bridge network mode, selected mode container".into()));
            }
            let t = store.find_container(target).map_err(|e| {
                bad(
                    "--network",
                    format!("looking up container to share net namespace with: {e}"),
                )
            })?;
            if !opts.dns.is_empty() || !opts.dns_search.is_empty() {
                return Err(bad(
                    "--dns",
                    "conflicting options: dns and the network mode: container".into(),
                ));
            }
            if !opts.add_hosts.is_empty() {
                return Err(bad("--add-host", "cannot set extra host entries when the container is joined to another containers network namespace".into()));
            }
            if opts.security.userns.is_some()
                || !opts.security.uidmaps.is_empty()
                || !opts.security.gidmaps.is_empty()
            {
                return Err(bad("--userns", "a container:NAME network shares that container's user namespace: drop --userns/--uidmap/--gidmap".into()));
            }
            let dir = store.paths.container_dir(&t.id);
            let spec = super::bundle::load_spec(&dir)?;
            Ok(Prepared {
                network: Some(format!("container:{}", t.id)),
                mapping: Some(super::spec::mapping_of(&spec)),
                target_dir: Some(dir),
                attach: Vec::new(),
            })
        }
        NetworkMode::Ns => {
            let p = ns_path(&raw).unwrap_or(Path::new(""));
            if p.as_os_str().is_empty() {
                return Err(bad(
                    "--network",
                    "namespace mode ns requires a value: use ns:/path/to/netns".into(),
                ));
            }
            let p = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
            check_netns_file(&p)?;
            Ok(Prepared {
                network: Some(format!("ns:{}", p.display())),
                ..Prepared::default()
            })
        }
        NetworkMode::Bridge => {
            let names = network_names(&raw);
            let ip = match &opts.ip {
                Some(s) => Some(
                    s.parse::<Ipv4Addr>()
                        .map_err(|_| bad("--ip", format!("{s:?} is not an IPv4 address")))?,
                ),
                None => None,
            };
            if ip.is_some() && names.len() > 1 {
                return Err(bad(
                    "--ip",
                    "--ip can only be set for a single network".into(),
                ));
            }
            let mut attach = Vec::new();
            for n in &names {
                let net = store
                    .network(n)
                    .map_err(|e| bad("--network", e.to_string()))?;
                if attach.iter().any(|a: &AttachRequest| a.network == net.name) {
                    continue;
                }
                if let Some(ip) = ip {
                    if !net.subnet.is_host(ip) || ip == net.gateway {
                        return Err(bad(
                            "--ip",
                            format!(
                                "requested static ip {ip} not in any subnet on network {}",
                                net.name
                            ),
                        ));
                    }
                }
                attach.push(AttachRequest {
                    network: net.name,
                    aliases: opts.network_aliases.clone(),
                    ip,
                });
            }
            Ok(Prepared {
                network: Some(
                    attach
                        .iter()
                        .map(|a| a.network.as_str())
                        .collect::<Vec<_>>()
                        .join(","),
                ),
                attach,
                ..Prepared::default()
            })
        }
        _ => Ok(Prepared::default()),
    }
}

/// A network namespace file must exist and be one (NS_GET_NSTYPE).
fn check_netns_file(p: &Path) -> Result<(), RuntimeError> {
    let f = std::fs::File::open(p).map_err(|e| {
        bad(
            "--network",
            format!("cannot open network namespace {}: {e}", p.display()),
        )
    })?;
    // NS_GET_NSTYPE = _IO(0xb7, 0x3).
    const NS_GET_NSTYPE: libc::c_ulong = 0xb703;
    tracing::debug!(path = %p.display(), "ioctl NS_GET_NSTYPE");
    // SAFETY: an argument-less ioctl on a descriptor we own; it only returns a value.
    let t = unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&f), NS_GET_NSTYPE) };
    if t != libc::CLONE_NEWNET {
        return Err(bad(
            "--network",
            format!(
                "{} is not a network namespace: use ns:/proc/PID/ns/net or a file from `ip netns add`",
                p.display()
            ),
        ));
    }
    Ok(())
}

/// Attaches a new container to its networks and writes its /etc/hosts lines; removes
/// nothing on failure (the caller deletes the record, which frees the addresses).
pub fn attach(
    store: &mut Store,
    id: &str,
    reqs: &[AttachRequest],
) -> Result<Vec<Attachment>, RuntimeError> {
    if reqs.is_empty() {
        return Ok(Vec::new());
    }
    Ok(store.attach_networks(id, reqs)?)
}

/// The /etc/hosts of a container on user-defined networks: the generated base (minus
/// its 127.0.1.1 self line), then one line per address of its own, then the other
/// members by name and alias, as far as they are known when this is written.
pub fn bridge_hosts(base: &str, hostname: &str, store: &Store, id: &str) -> String {
    let mut out: String = base
        .lines()
        .filter(|l| !l.starts_with("127.0.1.1\t"))
        .map(|l| format!("{l}\n"))
        .collect();
    let mut own = store.container_networks(id).unwrap_or_default();
    // In attach order (eth0's address first), as podman lists them.
    if let Some(order) = store
        .find_container(id)
        .ok()
        .and_then(|c| serde_json::from_str::<ContainerConfig>(&c.config).ok())
        .and_then(|cfg| cfg.options.network)
        .map(|n| network_names(&n))
    {
        own.sort_by_key(|a| order.iter().position(|n| *n == a.network.name));
    }
    let name = own
        .first()
        .map(|a| a.member.name.clone())
        .unwrap_or_default();
    for a in &own {
        out.push_str(&format!("{}\t{hostname} {name}\n", a.member.ip));
    }
    let mut seen = std::collections::BTreeSet::new();
    for a in &own {
        for m in store.network_members(&a.network.name).unwrap_or_default() {
            if m.container_id == id || !seen.insert((m.ip, m.container_id.clone())) {
                continue;
            }
            let mut names = vec![m.name.clone()];
            names.extend(m.aliases.iter().cloned());
            out.push_str(&format!("{}\t{}\n", m.ip, names.join(" ")));
        }
    }
    out
}

/// Tells the other members of the container's networks about it: appends its line to
/// their /etc/hosts in place (the file is bind-mounted, so a running container sees
/// it at once).
pub fn announce(store: &Store, id: &str) {
    use std::io::Write;
    for a in store.container_networks(id).unwrap_or_default() {
        let mut names = vec![a.member.name.clone()];
        names.extend(a.member.aliases.iter().cloned());
        let line = format!("{}\t{}\n", a.member.ip, names.join(" "));
        for m in store.network_members(&a.network.name).unwrap_or_default() {
            if m.container_id == id {
                continue;
            }
            let p = store.paths.container_dir(&m.container_id).join("hosts");
            let ok = std::fs::read_to_string(&p).is_ok_and(|t| !t.contains(&line));
            if ok {
                if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(&p) {
                    let _ = f.write_all(line.as_bytes());
                }
            }
        }
    }
}

/// Namespaces a container joins instead of creating them.
pub struct JoinNs {
    /// The owner user namespace (None when it is ours, as for rootful containers).
    pub userns: Option<OwnedFd>,
    pub netns: OwnedFd,
}

/// The namespaces to join for a `container:` or `ns:` container, looked up now (the
/// target may have restarted since create). None for the other modes.
pub fn join_for(store: &Store, cfg: &ContainerConfig) -> Result<Option<JoinNs>, RuntimeError> {
    let raw = cfg.options.network.as_deref().unwrap_or("none");
    if let Some(target) = container_target(raw) {
        let t = store.find_container(target)?;
        let not_running = || RuntimeError::Init {
            code: 125,
            message: format!(
                "some dependencies of the container are not started: {}: container state improper",
                t.id
            ),
        };
        if !matches!(t.state, State::Running | State::Paused) {
            return Err(not_running());
        }
        let target =
            super::join::Target::of_record(&t.name, t.pid, t.monitor_pid.zip(t.monitor_start))
                .map_err(|_| not_running())?;
        let opened = super::join::open(&t.name, target, &["user", "net"]).map_err(|e| {
            RuntimeError::Init {
                code: 125,
                message: e.to_string(),
            }
        })?;
        let mut fds = opened.into_fds();
        let netns = match fds.iter().position(|(k, _)| *k == "net") {
            Some(i) => fds.remove(i).1,
            None => {
                return Err(RuntimeError::Init {
                    code: 125,
                    message: format!(
                        "container {} shares our network namespace: use --network host",
                        t.name
                    ),
                })
            }
        };
        let userns = fds.into_iter().find(|(k, _)| *k == "user").map(|(_, f)| f);
        return Ok(Some(JoinNs { userns, netns }));
    }
    if let Some(p) = ns_path(raw) {
        let netns: OwnedFd = std::fs::File::open(p)
            .map_err(|source| RuntimeError::Io {
                path: p.to_path_buf(),
                source,
            })?
            .into();
        // Rootless: joining a network namespace needs CAP_SYS_ADMIN in the user
        // namespace that owns it, so the container enters that one too.
        let userns = if cfg.rootless {
            Some(owner_userns(&netns, p)?)
        } else {
            None
        };
        return Ok(Some(JoinNs { userns, netns }));
    }
    Ok(None)
}

/// The user namespace owning a namespace (NS_GET_USERNS), unless it is our own.
fn owner_userns(ns: &OwnedFd, p: &Path) -> Result<OwnedFd, RuntimeError> {
    const NS_GET_USERNS: libc::c_ulong = 0xb701;
    tracing::debug!(path = %p.display(), "ioctl NS_GET_USERNS");
    // SAFETY: NS_GET_USERNS takes no argument and returns a new descriptor we own.
    let fd = unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(ns), NS_GET_USERNS) };
    if fd < 0 {
        return Err(RuntimeError::Init {
            code: 125,
            message: format!(
                "network namespace {}: cannot find the user namespace that owns it ({}): a rootless container can only join a network namespace owned by a user namespace you created",
                p.display(),
                std::io::Error::last_os_error()
            ),
        });
    }
    // SAFETY: fd is a fresh descriptor returned by the kernel.
    let fd: OwnedFd = unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) };
    let ours = nix::sys::stat::stat("/proc/self/ns/user").ok();
    let theirs = nix::sys::stat::fstat(fd.as_fd()).ok();
    if let (Some(o), Some(t)) = (ours, theirs) {
        if o.st_ino == t.st_ino && o.st_dev == t.st_dev {
            return Err(RuntimeError::Init {
                code: 125,
                message: format!(
                    "network namespace {} belongs to the host's user namespace: a rootless container cannot join it (only root can); use one created inside a user namespace, e.g. another container's /proc/PID/ns/net",
                    p.display()
                ),
            });
        }
    }
    Ok(fd)
}

/// Adjusts the generated /etc files for the network mode: a `container:` container
/// shares its target's /etc/hosts and resolv.conf (its own line is added to the
/// target's hosts, as podman does); a container on user-defined networks lists its
/// addresses and the other members in its /etc/hosts.
pub(super) fn adjust_files(
    store: &Store,
    id: &str,
    name: &str,
    hostname: &str,
    mode: NetworkMode,
    target_dir: Option<&Path>,
    generated: &mut [(PathBuf, &'static str)],
) -> Result<(), RuntimeError> {
    use std::io::Write;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| RuntimeError::Io { path, source }
    };
    match (mode, target_dir) {
        (NetworkMode::Container, Some(dir)) => {
            let hosts = dir.join("hosts");
            let line = format!("127.0.0.1\t{hostname} {name}\n");
            let text = std::fs::read_to_string(&hosts).map_err(io(&hosts))?;
            if !text.contains(&line) {
                let mut f = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&hosts)
                    .map_err(io(&hosts))?;
                f.write_all(line.as_bytes()).map_err(io(&hosts))?;
            }
            for (src, dest) in generated.iter_mut() {
                match *dest {
                    "/etc/hosts" => *src = hosts.clone(),
                    "/etc/resolv.conf" => *src = dir.join("resolv.conf"),
                    _ => {}
                }
            }
        }
        (NetworkMode::Bridge, _) => {
            if let Some((src, _)) = generated.iter().find(|(_, d)| *d == "/etc/hosts") {
                let base = std::fs::read_to_string(src).map_err(io(src))?;
                let text = bridge_hosts(&base, hostname, store, id);
                std::fs::write(src, text).map_err(io(src))?;
            }
        }
        _ => {}
    }
    Ok(())
}
