//! Creating a container: claim the name, write the bundle (spec, rootfs layout,
//! generated /etc files). A failure removes what was written, so bad input leaves the
//! store as it was.

use std::path::Path;

use oci_spec::image::ImageConfiguration;

use super::bundle::{self, Generated};
use super::spec::{self, SpecInputs};
use super::{ContainerConfig, CreateOptions, NetworkMode, RuntimeError};
use crate::rootfs::RootfsLayout;
use crate::storage::containers::{ContainerRecord, State};
use crate::storage::images::ImageRecord;
use crate::storage::Store;
use crate::userns::IdMapping;

const ADJECTIVES: &[&str] = &[
    "agile", "bold", "brave", "calm", "clever", "eager", "fair", "gentle", "happy", "jolly",
    "keen", "lucid", "merry", "nimble", "proud", "quiet", "rapid", "sharp", "steady", "swift",
    "tender", "vivid", "witty", "zealous",
];
const NOUNS: &[&str] = &[
    "albatross",
    "beacon",
    "canoe",
    "dinghy",
    "ferry",
    "galleon",
    "harbor",
    "island",
    "jetty",
    "keel",
    "lagoon",
    "mast",
    "oar",
    "pilot",
    "quay",
    "rudder",
    "sail",
    "tide",
    "voyage",
    "wharf",
    "yacht",
    "anchor",
    "buoy",
    "compass",
];

/// A docker-style random name, for containers created without --name.
fn random_name() -> String {
    let b = crate::storage::random_bytes::<2>();
    format!(
        "{}_{}",
        ADJECTIVES[b[0] as usize % ADJECTIVES.len()],
        NOUNS[b[1] as usize % NOUNS.len()]
    )
}

/// Checks the flags the monitor acts on (restart policy, logging, stop signal) before
/// anything is written, so a bad value leaves no container behind.
fn validate_lifecycle(opts: &CreateOptions) -> Result<(), RuntimeError> {
    let bad = |flag: &'static str, detail: String| RuntimeError::BadFlag { flag, detail };
    let policy = crate::monitor::RestartPolicy::parse(opts.restart.as_deref())
        .map_err(|e| bad("--restart", e))?;
    if opts.rm && policy != crate::monitor::RestartPolicy::No {
        return Err(bad(
            "--restart",
            "the --rm option conflicts with --restart: choose one".into(),
        ));
    }
    match opts.log_driver.as_deref().unwrap_or("k8s-file") {
        "k8s-file" | "none" | "passthrough" => {}
        other => {
            return Err(bad(
                "--log-driver",
                format!("unknown log driver {other:?}: use k8s-file, none or passthrough"),
            ))
        }
    }
    for o in &opts.log_opts {
        match o.split_once('=') {
            Some(("max-size", v)) if crate::monitor::parse_size(v).is_some() => {}
            Some(("max-size", v)) => {
                return Err(bad(
                    "--log-opt",
                    format!("invalid max-size {v:?}: use a size like 10m"),
                ))
            }
            _ => {
                return Err(bad(
                    "--log-opt",
                    format!("unsupported log option {o:?}: skiff knows max-size=SIZE"),
                ))
            }
        }
    }
    if let Some(s) = &opts.stop_signal {
        super::signal::parse(s).map_err(|e| bad("--stop-signal", e))?;
    }
    if opts.group_add.len() > 1 && opts.group_add.iter().any(|g| g == "keep-groups") {
        return Err(bad(
            "--group-add",
            "the '--group-add keep-groups' option is not allowed with any other --group-add options".into(),
        ));
    }
    if let Some(g) = opts
        .group_add
        .iter()
        .find(|g| g.is_empty() || g.contains([',', '\n']))
    {
        return Err(bad(
            "--group-add",
            format!("invalid group {g:?}: use a group name or GID"),
        ));
    }
    super::notify::validate(opts)?;
    if let Some(k) = &opts.detach_keys {
        crate::monitor::proto::parse_detach_keys(k).map_err(|e| bad("--detach-keys", e))?;
    }
    Ok(())
}

/// The container's published ports (`-p`, and `-P` for the image's EXPOSEd ports), with
/// host ports fixed now; none with the host's, another container's or no network,
/// where podman drops them too (with its warning).
fn published_ports(
    image: &ImageConfiguration,
    opts: &CreateOptions,
    network: NetworkMode,
) -> Result<Vec<crate::network::portspec::PortMapping>, RuntimeError> {
    use crate::network::portspec;
    let mut reqs = portspec::parse_all(&opts.publish)?;
    if opts.publish_all {
        let keys: Vec<String> = image
            .config()
            .as_ref()
            .and_then(|c| c.exposed_ports().clone())
            .unwrap_or_default();
        for (port, protocol) in portspec::exposed(&keys) {
            let given = reqs
                .iter()
                .any(|r| r.container_port == port && r.protocol == protocol);
            if !given {
                reqs.push(portspec::PortRequest {
                    host_ip: None,
                    host_port: None,
                    container_port: port,
                    protocol,
                });
            }
        }
    }
    if reqs.is_empty() {
        return Ok(Vec::new());
    }
    if matches!(
        network,
        NetworkMode::Host | NetworkMode::Container | NetworkMode::None
    ) {
        tracing::warn!("Port mappings have been discarded as one of the Host, Container, Pod, and None network modes are in use");
        return Ok(Vec::new());
    }
    Ok(crate::network::assign(&reqs)?)
}

/// podman's rule for container names (create, rename).
pub fn valid_name(n: &str) -> bool {
    let mut chars = n.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// Creates a container from an image; returns its record (state "created").
pub fn create(
    store: &mut Store,
    image: &ImageRecord,
    image_name: &str,
    default_mapping: Option<&IdMapping>,
    opts: &CreateOptions,
) -> Result<ContainerRecord, RuntimeError> {
    let network = NetworkMode::parse(opts.network.as_deref().unwrap_or(super::DEFAULT_NETWORK))?;
    let net = super::networks::prepare(store, opts, network)?;
    validate_lifecycle(opts)?;
    let userns_mode = super::userns_mode::parse(&opts.security)?;
    if let Some(n) = &opts.name {
        if !valid_name(n) {
            return Err(RuntimeError::BadFlag {
                flag: "--name",
                detail: format!("container name {n:?} is invalid: use [a-zA-Z0-9][a-zA-Z0-9_.-]*"),
            });
        }
    }
    let config_bytes = store.read_blob(&image.config_digest())?;
    let image_config: ImageConfiguration =
        serde_json::from_slice(&config_bytes).map_err(|e| RuntimeError::Bundle {
            path: store.blob_path(&image.config_digest()).unwrap_or_default(),
            detail: format!("image config: {e}"),
        })?;
    let id = crate::storage::random_id();
    let name = opts.name.clone().unwrap_or_else(|| {
        // Retry a few times so two random names rarely collide.
        (0..8)
            .map(|_| random_name())
            .find(|n| store.find_container(n).is_err())
            .unwrap_or_else(|| format!("skiff_{}", &id[..12]))
    });
    let hostname = opts.hostname.clone().unwrap_or_else(|| match network {
        NetworkMode::Host => nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().to_string())
            .unwrap_or_else(|_| id[..12].to_string()),
        _ => id[..12].to_string(),
    });
    // Validate everything that can fail on user input before anything is written.
    let command = spec::command(&image_config, opts)?;
    for v in &opts.volumes {
        spec::parse_volume(v)?;
    }
    for m in &opts.mounts {
        super::mount_flag::parse_mount(m)?;
    }
    for h in &opts.add_hosts {
        bundle::parse_add_host(h)?;
    }
    for d in &opts.dns {
        bundle::parse_dns(d)?;
    }
    for d in &opts.dns_search {
        bundle::check_dns_search(d)?;
    }
    super::sysctl::parse_sysctls(&opts.sysctls, network)?;
    let ports = published_ports(&image_config, opts, network)?;
    super::security::validate(&opts.security)?;
    super::resources::parse_limits(&opts.security)?;
    super::resources::check_oom_score_adj(opts.security.oom_score_adj)?;
    for u in &opts.security.ulimits {
        super::resources::parse_ulimit(u)?;
    }
    let labels = super::labels::labels(&image_config, &opts.labels)?;
    let annotations = super::labels::annotations(&opts.annotations)?;
    let resolved = match &net.mapping {
        // container:NAME shares the target's user namespace, so its mapping too.
        Some(m) => super::userns_mode::Resolved {
            mapping: m.clone(),
            auto: false,
            default_user: None,
        },
        None => super::userns_mode::resolve(store, &id, default_mapping, &userns_mode, image)?,
    };
    // Root with a user namespace uses the host's layers through idmapped mounts.
    let idmapped = resolved.mapping.is_some() && crate::rootfs::idmapped::enabled(&store.paths);
    if !idmapped {
        super::userns_mode::prepare_layers(store, image, image_name, &id, &resolved)?;
    }
    let keep_id_opts;
    let opts = match &resolved.default_user {
        Some(u) if opts.user.is_none() => {
            keep_id_opts = CreateOptions {
                user: Some(u.clone()),
                ..opts.clone()
            };
            &keep_id_opts
        }
        _ => opts,
    };
    let mapping = resolved.mapping.as_ref();
    let mapping_key = crate::image::pull::mapping_key(mapping.filter(|_| !idmapped));
    let mut lower = Vec::new();
    for l in image.layers.iter().rev() {
        let found = store.layer(&l.diff_id, &mapping_key);
        if !matches!(found, Ok(Some(_))) {
            super::userns_mode::release(store, &id, &resolved);
        }
        let dir = found?.ok_or_else(|| RuntimeError::Bundle {
            path: store.paths.layers(),
            detail: format!(
                "layer {} of image {} is not unpacked for this user: pull the image again",
                l.diff_id, image_name
            ),
        })?;
        lower.push(
            dir.file_name()
                .map(|f| f.to_string_lossy().to_string())
                .unwrap_or_default(),
        );
    }
    // Named volumes are created on first use and anonymous ones get their names here,
    // so the stored options name every volume the container mounts.
    let (mut prepared, new_volumes) = match super::volumes::prepare(store, opts) {
        Ok(v) => v,
        Err(e) => {
            super::userns_mode::release(store, &id, &resolved);
            return Err(e);
        }
    };
    if net.network.is_some() {
        prepared.network = net.network.clone();
    }
    // Recorded, so inspect and ps show the mode the container really has.
    prepared
        .network
        .get_or_insert_with(|| super::DEFAULT_NETWORK.to_string());
    let opts = &prepared;
    let record = ContainerRecord {
        id: id.clone(),
        name: name.clone(),
        image_id: image.id.clone(),
        image_name: image_name.to_string(),
        command,
        created: crate::storage::now(),
        state: State::Created,
        exit_code: None,
        started: None,
        finished: None,
        monitor_pid: None,
        monitor_start: None,
        pid: None,
        restarts: 0,
        stop_requested: false,
        config: serde_json::to_string(&ContainerConfig {
            options: opts.clone(),
            rootless: store.paths.rootless,
            labels,
            annotations,
            ports,
        })
        .unwrap_or_default(),
    };
    let support = super::cgroup_limits::cgroup_support(store.paths.rootless);
    for w in super::cgroup_limits::warnings(&opts.security, support) {
        tracing::warn!("{w}");
    }
    if let Err(e) = store.insert_container(&record) {
        super::userns_mode::release(store, &id, &resolved);
        super::volumes::forget(store, &new_volumes);
        return Err(e.into());
    }
    if let Err(e) = super::networks::attach(store, &id, &net.attach) {
        let _ = store.delete_container(&id);
        super::volumes::forget(store, &new_volumes);
        return Err(e);
    }
    let dir = store.paths.container_dir(&id);
    let res = write_bundle(
        &dir,
        &id,
        &name,
        image,
        image_name,
        &image_config,
        mapping,
        network,
        hostname,
        opts,
        lower,
        store.paths.layers(),
        store.paths.rootless,
        idmapped,
        &NetFiles {
            store,
            target_dir: net.target_dir.as_deref(),
        },
    )
    .and_then(|()| super::userns_mode::prepare_reach(store, &dir, mapping));
    if let Err(e) = res {
        let _ = std::fs::remove_dir_all(&dir);
        let _ = store.delete_container(&id);
        super::volumes::forget(store, &new_volumes);
        return Err(e);
    }
    super::networks::announce(store, &id);
    Ok(record)
}

/// What the generated /etc files need to know about the network mode.
struct NetFiles<'a> {
    store: &'a Store,
    /// `container:` mode: the target's bundle, whose hosts and resolv.conf are shared.
    target_dir: Option<&'a Path>,
}

#[allow(clippy::too_many_arguments)]
fn write_bundle(
    dir: &Path,
    id: &str,
    name: &str,
    image: &ImageRecord,
    image_name: &str,
    image_config: &ImageConfiguration,
    mapping: Option<&IdMapping>,
    network: NetworkMode,
    hostname: String,
    opts: &CreateOptions,
    lower: Vec<String>,
    layers_dir: std::path::PathBuf,
    rootless: bool,
    idmapped: bool,
    net: &NetFiles,
) -> Result<(), RuntimeError> {
    std::fs::create_dir_all(dir.join("rootfs")).map_err(|source| RuntimeError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut generated = bundle::generate_files(
        dir,
        &Generated {
            id,
            name,
            image_name,
            image_id: &image.id,
            hostname: &hostname,
            network,
            rootless,
            add_hosts: &opts.add_hosts,
            dns: &opts.dns,
            dns_search: &opts.dns_search,
        },
    )?;
    super::networks::adjust_files(
        net.store,
        id,
        name,
        &hostname,
        network,
        net.target_dir,
        &mut generated,
    )?;
    let spec = spec::build(&SpecInputs {
        id,
        name,
        image: image_config,
        opts,
        mapping,
        network,
        hostname,
        generated,
        // layers_dir is <root>/layers; volumes live beside it.
        volumes_dir: &layers_dir.with_file_name("volumes"),
    })?;
    let layout = RootfsLayout {
        layers_dir,
        lower,
        upper: dir.join("upper"),
        work: dir.join("work"),
        // Copies made for a mapping are written from inside a user namespace, which
        // cannot set trusted.* xattrs; idmapped host layers keep theirs.
        userxattr: rootless || (mapping.is_some() && !idmapped),
        idmapped,
    };
    layout.prepare()?;
    bundle::write_layout(dir, &layout)?;
    bundle::write_spec(dir, &spec)
}
