//! The runtime: turns an image config plus the user's flags into an OCI runtime spec in
//! the container's bundle, and runs that spec with skiff's own executor (namespaces,
//! mounts, capabilities, user, exec). Only this module calls clone and pivot_root.

pub mod bundle;
pub mod cgroup;
pub mod cgroup_limits;
mod chown;
mod copyup;
pub mod cp;
pub mod create;
pub mod exec;
pub mod export;
pub mod export_mapped;
pub mod fdpass;
mod init;
pub mod join;
pub mod labels;
pub mod launch;
mod launch_join;
pub mod mount_flag;
mod mounts;
pub mod netconnect;
pub mod networks;
pub mod notify;
mod process;
pub mod pty;
pub mod resources;
pub mod seccomp;
pub mod security;
pub mod signal;
pub mod spec;
pub mod spec_mounts;
pub mod sysctl;
pub mod userns_mode;
pub mod volumes;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Runtime errors, with podman's exit code for each class.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// A flag value that cannot work; names the flag.
    #[error("{flag}: {detail}")]
    BadFlag { flag: &'static str, detail: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    #[error(transparent)]
    Userns(#[from] crate::userns::UsernsError),
    #[error(transparent)]
    Rootfs(#[from] crate::rootfs::RootfsError),
    #[error(transparent)]
    Network(#[from] crate::network::NetworkError),
    #[error(transparent)]
    Seccomp(#[from] seccomp::SeccompError),
    /// Unpacking the image's layers for the container's ID mapping failed.
    #[error(transparent)]
    Image(#[from] Box<crate::image::ImageError>),
    /// The container's init reported a failure before exec.
    #[error("{message}")]
    Init { code: i32, message: String },
    /// A kernel call failed in the engine.
    #[error("{call}: {source}")]
    Kernel { call: String, source: nix::Error },
    #[error("invalid bundle {path}: {detail}")]
    Bundle { path: PathBuf, detail: String },
}

impl RuntimeError {
    /// podman's exit code: 126 cannot execute, 127 not found, 125 anything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            RuntimeError::Init { code, .. } => *code,
            _ => 125,
        }
    }
}

/// The network mode when neither --network nor skiff.toml names one (podman's rootless
/// default).
pub const DEFAULT_NETWORK: &str = "slirp4netns";

/// How a container is networked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NetworkMode {
    /// The container gets its own network namespace with only loopback.
    None,
    /// The container shares the host's network namespace.
    Host,
    /// `container:NAME`: shares that container's user and network namespaces.
    Container,
    /// `ns:PATH`: joins a network namespace file (and, rootless, its owner user
    /// namespace).
    Ns,
    /// `NAME[,NAME]`: attached to user-defined networks (its own network namespace).
    Bridge,
    /// Its own network namespace with tap0, served by the monitor's user-mode network
    /// (src/network/stack.rs), as podman's slirp4netns.
    /// `enable_ipv6` (podman's default: true) adds fd00::/64 where the host has IPv6.
    Slirp4netns {
        allow_host_loopback: bool,
        enable_ipv6: bool,
    },
}

impl NetworkMode {
    pub fn parse(s: &str) -> Result<NetworkMode, RuntimeError> {
        let bad = |detail: String| RuntimeError::BadFlag {
            flag: "--network",
            detail,
        };
        if let ("slirp4netns", opts) = s.split_once(':').unwrap_or((s, "")) {
            let (mut allow_host_loopback, mut enable_ipv6) = (false, true);
            for o in opts.split(',').filter(|o| !o.is_empty()) {
                match o {
                    "allow_host_loopback=true" => allow_host_loopback = true,
                    "allow_host_loopback=false" => allow_host_loopback = false,
                    "enable_ipv6=true" => enable_ipv6 = true,
                    "enable_ipv6=false" => enable_ipv6 = false,
                    _ => {
                        return Err(bad(format!(
                        "unsupported slirp4netns option {o:?}: use allow_host_loopback=true|false or enable_ipv6=true|false"
                    )))
                    }
                };
            }
            return Ok(NetworkMode::Slirp4netns {
                allow_host_loopback,
                enable_ipv6,
            });
        }
        match s {
            "none" => Ok(NetworkMode::None),
            "host" => Ok(NetworkMode::Host),
            s if s.starts_with("container:") => Ok(NetworkMode::Container),
            s if s.starts_with("ns:") => Ok(NetworkMode::Ns),
            s if networks::network_names(s)
                .iter()
                .all(|n| crate::storage::networks::valid_name(n))
                && !s.is_empty() =>
            {
                Ok(NetworkMode::Bridge)
            }
            other => Err(bad(format!(
                "network mode {other:?} is not supported: use slirp4netns[:allow_host_loopback=true], host, none, container:NAME, ns:PATH or a network name"
            ))),
        }
    }
}

/// What the user asked for with run/create flags; stored with the container so `start`
/// can run it again.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CreateOptions {
    pub name: Option<String>,
    pub env: Vec<String>,
    pub env_files: Vec<PathBuf>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    /// `--group-add` values, resolved against the image's /etc/group at start.
    pub group_add: Vec<String>,
    pub entrypoint: Option<String>,
    pub hostname: Option<String>,
    pub volumes: Vec<String>,
    pub read_only: bool,
    /// With --read-only, mount writable tmpfs on /run, /tmp and /var/tmp (podman's
    /// default: true).
    pub read_only_tmpfs: Option<bool>,
    pub tmpfs: Vec<String>,
    /// `--shm-size`: size of the container's /dev/shm (default 64m).
    pub shm_size: Option<String>,
    pub network: Option<String>,
    /// `--network-alias` values (user-defined networks only).
    pub network_aliases: Vec<String>,
    /// `--ip`: a static address on the (single) user-defined network.
    pub ip: Option<String>,
    /// `-p/--publish` values as given ([ip:][hostPort:]containerPort[/proto]).
    pub publish: Vec<String>,
    /// `-P/--publish-all`: the image's EXPOSEd ports on free host ports.
    pub publish_all: bool,
    pub interactive: bool,
    pub rm: bool,
    pub command: Vec<String>,
    /// Allocate a pseudo-terminal for the container.
    pub tty: bool,
    /// Key sequence that detaches an attached client (podman's default ctrl-p,ctrl-q).
    pub detach_keys: Option<String>,
    /// Restart policy: no, always, on-failure[:N], unless-stopped.
    pub restart: Option<String>,
    /// Run skiff's own init as PID 1 (reaps zombies, forwards signals).
    pub init: bool,
    /// k8s-file (default), none, passthrough.
    pub log_driver: Option<String>,
    /// e.g. max-size=10m.
    pub log_opts: Vec<String>,
    /// Forward signals the CLI receives to the container (foreground runs).
    pub sig_proxy: Option<bool>,
    pub stop_signal: Option<String>,
    pub stop_timeout: Option<u32>,
    /// --mount type=bind|volume|tmpfs,...
    pub mounts: Vec<String>,
    pub add_hosts: Vec<String>,
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
    pub labels: Vec<String>,
    pub annotations: Vec<String>,
    pub replace: bool,
    pub cidfile: Option<PathBuf>,
    pub sysctls: Vec<String>,
    pub platform: Option<String>,
    /// conmon (default), container, ignore.
    pub sdnotify: Option<String>,
    /// Security and resources (src/runtime/security.rs, resources.rs, userns modes).
    #[serde(flatten)]
    pub security: SecurityOptions,
}

/// Capabilities, privileges, devices, user-namespace mode and resource limits, as the
/// user gave them; checked by `security::validate` before anything is written.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SecurityOptions {
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub privileged: bool,
    /// --security-opt values: no-new-privileges, mask=, unmask= (seccomp= elsewhere).
    pub security_opts: Vec<String>,
    /// --device HOST[:CONTAINER][:PERMS].
    pub devices: Vec<String>,
    /// --userns: host, keep-id[:uid=,gid=], nomap, auto[:size=].
    pub userns: Option<String>,
    pub uidmaps: Vec<String>,
    pub gidmaps: Vec<String>,
    pub memory: Option<String>,
    pub memory_swap: Option<String>,
    pub cpus: Option<String>,
    pub cpu_shares: Option<u64>,
    pub pids_limit: Option<i64>,
    /// --ulimit name=soft[:hard].
    pub ulimits: Vec<String>,
    pub oom_score_adj: Option<i32>,
}

/// What the monitor needs to know beyond the spec.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerConfig {
    pub options: CreateOptions,
    pub rootless: bool,
    /// The image's labels overlaid with `--label`, as `inspect` shows them.
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// `--annotation` values (also in the spec).
    #[serde(default)]
    pub annotations: std::collections::BTreeMap<String, String>,
    /// Published ports with their host ports fixed at create (random ones included),
    /// so every start binds the same ones.
    #[serde(default)]
    pub ports: Vec<crate::network::portspec::PortMapping>,
}

/// Removes a container directory. Rootless containers leave files owned by subordinate
/// IDs (and overlay's mode-000 work dir), so the removal runs inside the user namespace.
pub fn remove_container_dir(
    paths: &crate::config::Paths,
    dir: &std::path::Path,
) -> Result<(), RuntimeError> {
    Ok(crate::userns::remove_trees(paths, &[dir.to_path_buf()])?)
}
