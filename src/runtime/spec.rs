//! Builds the OCI runtime spec for a container from its image config and the user's
//! flags, with podman's defaults (capabilities, masked paths, mounts, rlimits).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use oci_spec::image::ImageConfiguration;
use oci_spec::runtime::{
    Capability, Linux, LinuxCapabilities, LinuxIdMapping, LinuxIdMappingBuilder, LinuxNamespace,
    LinuxNamespaceType, PosixRlimit, PosixRlimitBuilder, PosixRlimitType, Process, Root, Spec,
    User,
};

pub use super::spec_mounts::parse_volume;
use super::{CreateOptions, NetworkMode, RuntimeError};
use crate::userns::IdMapping;

/// podman's default capability set.
pub const DEFAULT_CAPS: &[Capability] = &[
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fowner,
    Capability::Fsetid,
    Capability::Kill,
    Capability::NetBindService,
    Capability::Setfcap,
    Capability::Setgid,
    Capability::Setpcap,
    Capability::Setuid,
    Capability::SysChroot,
];

pub const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/fs/selinux",
    "/sys/dev/block",
];

pub const READONLY_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Annotation carrying the `--user` value: names resolve against the container's own
/// /etc/passwd, which only exists once the rootfs is mounted.
pub const USER_ANNOTATION: &str = "io.skiff.user";

/// Set ("1") when neither `--user` nor the image named a user: podman then lists no
/// primary group among the supplementary ones, only /etc/group memberships.
pub const USER_IMPLICIT_ANNOTATION: &str = "io.skiff.user-implicit";

/// Annotation carrying the `--group-add` values (comma-separated): names resolve
/// against the container's own /etc/group at start.
pub const GROUP_ADD_ANNOTATION: &str = "io.skiff.group-add";

/// The `--group-add` values a spec carries (see [`GROUP_ADD_ANNOTATION`]).
pub fn group_add(spec: &Spec) -> Vec<String> {
    spec.annotations()
        .as_ref()
        .and_then(|m| m.get(GROUP_ADD_ANNOTATION))
        .map(|v| v.split(',').map(str::to_string).collect())
        .unwrap_or_default()
}

/// Annotation asking for skiff's own init as PID 1 (`--init`).
pub const INIT_ANNOTATION: &str = "io.skiff.init";

/// Annotation asking the init for tap0 (the user-mode network, `--network
/// slirp4netns`); its value is the mode as given.
pub const TAP_ANNOTATION: &str = "io.skiff.tap";

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Everything the spec is made from.
pub struct SpecInputs<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub image: &'a ImageConfiguration,
    pub opts: &'a CreateOptions,
    pub mapping: Option<&'a IdMapping>,
    pub network: NetworkMode,
    pub hostname: String,
    /// Files in the bundle bind-mounted into the container: (source, destination).
    pub generated: Vec<(PathBuf, &'static str)>,
    /// Where named volumes live (`<root>/volumes`).
    pub volumes_dir: &'a std::path::Path,
}

/// The command the container runs: entrypoint + cmd, with docker's override rules.
pub fn command(
    image: &ImageConfiguration,
    opts: &CreateOptions,
) -> Result<Vec<String>, RuntimeError> {
    let cfg = image.config().as_ref();
    let (entrypoint, default_cmd) = match &opts.entrypoint {
        // An explicit --entrypoint drops the image's CMD, as docker and podman do.
        Some(e) if e.is_empty() => (Vec::new(), Vec::new()),
        Some(e) => (vec![e.clone()], Vec::new()),
        None => (
            cfg.and_then(|c| c.entrypoint().clone()).unwrap_or_default(),
            cfg.and_then(|c| c.cmd().clone()).unwrap_or_default(),
        ),
    };
    let cmd = if opts.command.is_empty() {
        default_cmd
    } else {
        opts.command.clone()
    };
    let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if args.is_empty() {
        return Err(RuntimeError::BadFlag {
            flag: "command",
            detail: "no command or entrypoint provided, and no CMD or ENTRYPOINT from image".into(),
        });
    }
    Ok(args)
}

/// The container's environment: image env, then --env-file, then -e (later wins).
pub fn environment(
    image: &ImageConfiguration,
    opts: &CreateOptions,
    hostname: &str,
) -> Result<Vec<String>, RuntimeError> {
    let mut order: Vec<String> = Vec::new();
    let mut vals: HashMap<String, String> = HashMap::new();
    let mut set = |kv: &str| {
        let (k, v) = match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            // `-e NAME` takes the value from the caller's environment, if set.
            None => (kv.to_string(), std::env::var(kv).ok()),
        };
        if k.is_empty() {
            return;
        }
        if let Some(v) = v {
            if !vals.contains_key(&k) {
                order.push(k.clone());
            }
            vals.insert(k, v);
        }
    };
    set(DEFAULT_PATH);
    if let Some(env) = image.config().as_ref().and_then(|c| c.env().clone()) {
        for e in env {
            set(&e);
        }
    }
    set("container=skiff");
    if opts.tty {
        set("TERM=xterm");
    }
    set(&format!("HOSTNAME={hostname}"));
    for f in &opts.env_files {
        let text = std::fs::read_to_string(f).map_err(|e| RuntimeError::BadFlag {
            flag: "--env-file",
            detail: format!("cannot read {}: {e}", f.display()),
        })?;
        for line in text.lines() {
            let line = line.trim();
            if !line.is_empty() && !line.starts_with('#') {
                set(line);
            }
        }
    }
    for e in &opts.env {
        set(e);
    }
    if let Ok(Some(_)) = super::notify::host_socket(opts) {
        set(&format!(
            "NOTIFY_SOCKET={}",
            super::notify::CONTAINER_SOCKET
        ));
    }
    Ok(order
        .into_iter()
        .map(|k| {
            let v = &vals[&k];
            format!("{k}={v}")
        })
        .collect())
}

fn to_id_mappings(v: &[crate::userns::IdRange]) -> Vec<LinuxIdMapping> {
    v.iter()
        .filter_map(|r| {
            LinuxIdMappingBuilder::default()
                .container_id(r.inside)
                .host_id(r.outside)
                .size(r.count)
                .build()
                .ok()
        })
        .collect()
}

/// Raises the soft limit to the current hard limit, as podman does; never above it, since
/// raising a hard limit needs CAP_SYS_RESOURCE, which even root may lack here.
fn rlimit(typ: PosixRlimitType, res: nix::sys::resource::Resource) -> Option<PosixRlimit> {
    let (_, hard) = nix::sys::resource::getrlimit(res).unwrap_or((1024, 1024));
    PosixRlimitBuilder::default()
        .typ(typ)
        .soft(hard)
        .hard(hard)
        .build()
        .ok()
}

/// Builds the spec.
pub fn build(inp: &SpecInputs) -> Result<Spec, RuntimeError> {
    let opts = inp.opts;
    let cfg = inp.image.config().as_ref();
    let mut process = Process::default();
    process.set_terminal(Some(false));
    process.set_args(Some(command(inp.image, opts)?));
    process.set_env(Some(environment(inp.image, opts, &inp.hostname)?));
    let cwd = opts
        .workdir
        .clone()
        .or_else(|| cfg.and_then(|c| c.working_dir().clone()))
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".to_string());
    if !cwd.starts_with('/') {
        return Err(RuntimeError::BadFlag {
            flag: "--workdir",
            detail: format!("working directory {cwd:?} must be absolute"),
        });
    }
    process.set_cwd(PathBuf::from(cwd));
    let named_user = opts
        .user
        .clone()
        .or_else(|| cfg.and_then(|c| c.user().clone()))
        .filter(|u| !u.is_empty());
    let user_implicit = named_user.is_none();
    let user_str = named_user.unwrap_or_else(|| "0".to_string());
    let mut user = User::default();
    let (u, g) = user_str.split_once(':').unwrap_or((&user_str, ""));
    user.set_uid(u.parse().unwrap_or(0));
    user.set_gid(g.parse().unwrap_or(0));
    process.set_user(user);
    let sec = &opts.security;
    let cap_sets = super::security::capability_sets(sec, inp.mapping.is_some())?;
    let to_oci = |v: &std::collections::HashSet<caps::Capability>| -> HashSet<Capability> {
        v.iter()
            .filter_map(|c| serde_json::from_value(serde_json::Value::String(c.to_string())).ok())
            .collect()
    };
    let caps: HashSet<Capability> = to_oci(&cap_sets.root);
    let mut lc = LinuxCapabilities::default();
    lc.set_bounding(Some(caps.clone()));
    lc.set_effective(Some(caps.clone()));
    lc.set_permitted(Some(caps));
    lc.set_inheritable(Some(HashSet::new()));
    lc.set_ambient(Some(HashSet::new()));
    process.set_capabilities(Some(lc));
    let sec_opts = super::security::parse_security_opts(&sec.security_opts)?;
    let rootless = !nix::unistd::geteuid().is_root();
    let cg_support = super::cgroup_limits::cgroup_support(rootless);
    let pids_as_rlimit = matches!(cg_support, super::cgroup_limits::CgroupSupport::None(_));
    process.set_oom_score_adj(sec.oom_score_adj);
    process.set_rlimits(Some(super::resources::rlimits(
        [
            rlimit(
                PosixRlimitType::RlimitNofile,
                nix::sys::resource::Resource::RLIMIT_NOFILE,
            ),
            rlimit(
                PosixRlimitType::RlimitNproc,
                nix::sys::resource::Resource::RLIMIT_NPROC,
            ),
        ]
        .into_iter()
        .flatten()
        .collect(),
        sec,
        pids_as_rlimit,
    )?));
    process.set_no_new_privileges(Some(sec_opts.no_new_privileges));

    let mut root = Root::default();
    root.set_path(PathBuf::from("rootfs"));
    root.set_readonly(Some(opts.read_only));

    let (mut mounts, chown) = super::spec_mounts::mounts(inp)?;
    super::security::extend_mounts(&mut mounts, sec)?;

    let mut ns = vec![
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Cgroup,
    ];
    if inp.mapping.is_some() {
        ns.insert(0, LinuxNamespaceType::User);
    }
    // container: and ns: join a network namespace at start (runtime/networks.rs).
    if matches!(
        inp.network,
        NetworkMode::None | NetworkMode::Bridge | NetworkMode::Slirp4netns { .. }
    ) {
        ns.push(LinuxNamespaceType::Network);
    }
    let mut linux = Linux::default();
    linux.set_namespaces(Some(
        ns.into_iter()
            .map(|t| {
                let mut n = LinuxNamespace::default();
                n.set_typ(t);
                n
            })
            .collect(),
    ));
    if let Some(m) = inp.mapping {
        linux.set_uid_mappings(Some(to_id_mappings(&m.uids)));
        linux.set_gid_mappings(Some(to_id_mappings(&m.gids)));
    }
    let mut sysctls = super::sysctl::parse_sysctls(&opts.sysctls, inp.network)?;
    if matches!(inp.network, NetworkMode::Slirp4netns { .. }) {
        // podman's default: ping works through ICMP sockets without CAP_NET_RAW (the
        // monitor answers or relays the echo).
        sysctls
            .entry("net.ipv4.ping_group_range".to_string())
            .or_insert_with(|| "0 0".to_string());
    }
    if !sysctls.is_empty() {
        linux.set_sysctl(Some(sysctls.into_iter().collect()));
    }
    let (masked, readonly) = super::security::masked_and_readonly(sec, &sec_opts);
    linux.set_masked_paths(Some(masked));
    linux.set_readonly_paths(Some(readonly));
    let limits = super::resources::parse_limits(sec)?;
    linux.set_resources(if pids_as_rlimit {
        None
    } else {
        super::resources::linux_resources(&limits)
    });
    let cap_names: std::collections::HashSet<String> =
        cap_sets.root.iter().map(|c| c.to_string()).collect();
    linux.set_seccomp(super::seccomp::for_spec(
        &sec_opts.seccomp,
        sec.privileged,
        &cap_names,
        sec_opts.no_new_privileges,
    )?);
    linux.set_devices(None);
    linux.set_cgroups_path(None);

    let mut spec = Spec::default();
    spec.set_version("1.0.2".to_string());
    spec.set_process(Some(process));
    spec.set_root(Some(root));
    spec.set_hostname(Some(inp.hostname.clone()));
    spec.set_mounts(Some(mounts));
    spec.set_linux(Some(linux));
    spec.set_hooks(None);
    // The user's annotations first, so they can never override skiff's own.
    let mut ann: HashMap<String, String> = super::labels::annotations(&opts.annotations)?
        .into_iter()
        .collect();
    if !chown.is_empty() {
        ann.insert(super::chown::CHOWN_ANNOTATION.to_string(), chown.join("\n"));
    }
    ann.insert(USER_ANNOTATION.to_string(), user_str);
    if user_implicit {
        ann.insert(USER_IMPLICIT_ANNOTATION.to_string(), "1".to_string());
    }
    let group_add: Vec<&str> = opts
        .group_add
        .iter()
        .map(String::as_str)
        .filter(|g| *g != "keep-groups")
        .collect();
    if !group_add.is_empty() {
        ann.insert(GROUP_ADD_ANNOTATION.to_string(), group_add.join(","));
    }
    if !cap_sets.nonroot.is_empty() {
        let mut names: Vec<String> = cap_sets.nonroot.iter().map(|c| c.to_string()).collect();
        names.sort();
        ann.insert(
            super::security::NONROOT_CAPS_ANNOTATION.to_string(),
            names.join(","),
        );
    }
    if opts.init {
        ann.insert(INIT_ANNOTATION.to_string(), "true".to_string());
    }
    match inp.network {
        NetworkMode::Slirp4netns { enable_ipv6, .. } => {
            // "v6": the init adds fd00::/64 too (where the host has IPv6 at create).
            let v6 = enable_ipv6 && crate::network::tap6::host_has_ipv6();
            let how = if v6 { "v6" } else { "true" };
            ann.insert(TAP_ANNOTATION.to_string(), how.to_string());
        }
        NetworkMode::Bridge => {
            ann.insert(TAP_ANNOTATION.to_string(), "bare".to_string());
        }
        _ => {}
    }
    ann.insert("io.skiff.name".to_string(), inp.name.to_string());
    ann.insert("io.skiff.id".to_string(), inp.id.to_string());
    spec.set_annotations(Some(ann));
    Ok(spec)
}

/// The spec's ID mapping, if the container has a user namespace.
pub fn mapping_of(spec: &Spec) -> Option<IdMapping> {
    let linux = spec.linux().as_ref()?;
    let conv = |v: &Vec<LinuxIdMapping>| {
        v.iter()
            .map(|m| crate::userns::IdRange {
                inside: m.container_id(),
                outside: m.host_id(),
                count: m.size(),
            })
            .collect::<Vec<_>>()
    };
    let has_userns = linux
        .namespaces()
        .as_ref()
        .map(|n| n.iter().any(|n| n.typ() == LinuxNamespaceType::User))
        .unwrap_or(false);
    if !has_userns {
        return None;
    }
    Some(IdMapping {
        uids: linux.uid_mappings().as_ref().map(conv).unwrap_or_default(),
        gids: linux.gid_mappings().as_ref().map(conv).unwrap_or_default(),
    })
}

/// Resolves `rootfs` relative to the bundle as OCI says.
pub fn rootfs_path(bundle: &Path, spec: &Spec) -> PathBuf {
    let p = spec
        .root()
        .as_ref()
        .map(|r| r.path().clone())
        .unwrap_or_else(|| PathBuf::from("rootfs"));
    if p.is_absolute() {
        p
    } else {
        bundle.join(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_parsing() {
        let v = parse_volume("/tmp:/data:ro").unwrap();
        assert_eq!(v.destination, "/data");
        assert_eq!(v.options, vec!["ro"]);
        assert!(!v.chown);
        assert!(parse_volume("/tmp:/data:U").unwrap().chown);
        assert!(parse_volume("/tmp:/data:U,ro").is_err());
        assert!(parse_volume("/tmp:data").is_err());
        assert!(parse_volume("/tmp:/data:bogus").is_err());
        assert!(parse_volume("/definitely/not/here:/data").is_err());
    }

    #[test]
    fn command_override_rules() {
        let img: ImageConfiguration = serde_json::from_str(
            r#"{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/ep"],"Cmd":["a"]},"rootfs":{"type":"layers","diff_ids":[]}}"#,
        )
        .unwrap();
        let mut o = CreateOptions::default();
        assert_eq!(command(&img, &o).unwrap(), vec!["/ep", "a"]);
        o.command = vec!["b".into()];
        assert_eq!(command(&img, &o).unwrap(), vec!["/ep", "b"]);
        o.entrypoint = Some("/x".into());
        o.command.clear();
        assert_eq!(command(&img, &o).unwrap(), vec!["/x"]);
        o.entrypoint = Some(String::new());
        assert!(command(&img, &o).is_err());
    }

    #[test]
    fn env_later_wins() {
        let img: ImageConfiguration = serde_json::from_str(
            r#"{"architecture":"amd64","os":"linux","config":{"Env":["A=1","PATH=/bin"]},"rootfs":{"type":"layers","diff_ids":[]}}"#,
        )
        .unwrap();
        let o = CreateOptions {
            env: vec!["A=2".into(), "B=3".into()],
            ..Default::default()
        };
        let env = environment(&img, &o, "h").unwrap();
        assert!(env.contains(&"A=2".to_string()));
        assert!(env.contains(&"PATH=/bin".to_string()));
        assert!(env.contains(&"B=3".to_string()));
        assert!(env.contains(&"HOSTNAME=h".to_string()));
    }
}
