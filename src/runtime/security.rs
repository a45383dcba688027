//! Capabilities, `--privileged`, `--security-opt` (no-new-privileges, mask, unmask) and
//! `--device`, turned into spec fields with podman 4.3's rules. Everything here is
//! checked at create time, so bad input fails before anything is written.

use std::collections::HashSet;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use caps::Capability as Cap;

use super::{RuntimeError, SecurityOptions};

/// Annotation with the capabilities a non-root container user gets in its effective,
/// permitted, inheritable and ambient sets (podman puts explicitly added capabilities
/// there); names resolve to a UID only inside the container, so the init picks.
pub const NONROOT_CAPS_ANNOTATION: &str = "io.skiff.caps.nonroot";

/// The non-root capability list a spec carries (comma-separated names, maybe empty).
pub fn nonroot_caps(spec: &oci_spec::runtime::Spec) -> String {
    spec.annotations()
        .as_ref()
        .and_then(|m| m.get(NONROOT_CAPS_ANNOTATION).cloned())
        .unwrap_or_default()
}

fn bad(flag: &'static str, detail: String) -> RuntimeError {
    RuntimeError::BadFlag { flag, detail }
}

/// Every capability a container could get: what the kernel knows; without a user
/// namespace, only within our own bounding set (root on this host lacks
/// CAP_SYS_RESOURCE), while a new user namespace starts with a full bounding set.
pub fn available_caps(userns: bool) -> HashSet<Cap> {
    let bounding = caps::read(None, caps::CapSet::Bounding).unwrap_or_default();
    let known = caps::runtime::procfs_all_supported(None).unwrap_or_else(|_| caps::all());
    caps::all()
        .into_iter()
        .filter(|c| (userns || bounding.contains(c)) && known.contains(c))
        .collect()
}

/// `chown`, `CAP_CHOWN` and `cap_chown` all name CAP_CHOWN; None for `ALL`.
fn parse_cap(flag: &'static str, name: &str) -> Result<Option<Cap>, RuntimeError> {
    let up = name.trim().to_ascii_uppercase();
    if up == "ALL" {
        return Ok(None);
    }
    let full = if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    };
    full.parse::<Cap>().map(Some).map_err(|_| {
        bad(
            flag,
            format!("unknown capability {full:?}: see capabilities(7) for the names"),
        )
    })
}

/// The parsed list, with `ALL` as a flag; entries may also be comma-separated.
fn cap_list(flag: &'static str, v: &[String]) -> Result<(bool, HashSet<Cap>), RuntimeError> {
    let mut all = false;
    let mut set = HashSet::new();
    for name in v
        .iter()
        .flat_map(|s| s.split(','))
        .filter(|s| !s.is_empty())
    {
        match parse_cap(flag, name)? {
            None => all = true,
            Some(c) => {
                set.insert(c);
            }
        }
    }
    Ok((all, set))
}

/// The container's capabilities as podman 4.3 computes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapSets {
    /// Bounding set; also effective and permitted for UID 0.
    pub root: HashSet<Cap>,
    /// Effective, permitted, inheritable and ambient for any other UID: only what
    /// --cap-add named explicitly.
    pub nonroot: HashSet<Cap>,
}

pub fn capability_sets(sec: &SecurityOptions, userns: bool) -> Result<CapSets, RuntimeError> {
    let (add_all, add) = cap_list("--cap-add", &sec.cap_add)?;
    let (drop_all, drop) = cap_list("--cap-drop", &sec.cap_drop)?;
    if let Some(c) = add.intersection(&drop).next() {
        return Err(bad(
            "--cap-drop",
            format!("capability \"{c}\" cannot be dropped and added: give it to one of --cap-add and --cap-drop"),
        ));
    }
    let avail = available_caps(userns);
    let base: HashSet<Cap> = if sec.privileged {
        avail.clone()
    } else {
        super::spec::DEFAULT_CAPS
            .iter()
            .filter_map(|c| serde_json::to_value(c).ok()?.as_str()?.parse().ok())
            .collect()
    };
    let added: HashSet<Cap> = if add_all { avail.clone() } else { add };
    let root: HashSet<Cap> = if drop_all {
        added.clone()
    } else if add_all {
        avail.difference(&drop).copied().collect()
    } else {
        base.union(&added)
            .copied()
            .filter(|c| !drop.contains(c))
            .collect()
    };
    let root: HashSet<Cap> = root.intersection(&avail).copied().collect();
    let nonroot = added
        .iter()
        .filter(|c| root.contains(c) && !drop.contains(c))
        .copied()
        .collect();
    Ok(CapSets { root, nonroot })
}

/// What `--security-opt` asks for (label and apparmor do not apply, and pass through).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecurityOpts {
    pub no_new_privileges: bool,
    pub seccomp: super::seccomp::Choice,
    pub mask: Vec<String>,
    pub unmask_all: bool,
    pub unmask: Vec<String>,
}

pub fn parse_security_opts(opts: &[String]) -> Result<SecurityOpts, RuntimeError> {
    let mut s = SecurityOpts::default();
    let paths = |o: &str, v: &str| -> Result<Vec<String>, RuntimeError> {
        let v: Vec<String> = v
            .split(':')
            .filter(|p| !p.is_empty())
            .map(String::from)
            .collect();
        if v.is_empty() || v.iter().any(|p| !p.starts_with('/')) {
            return Err(bad(
                "--security-opt",
                format!("{o}: give absolute paths separated by colons, e.g. {o}=/proc/a:/proc/b"),
            ));
        }
        Ok(v)
    };
    for o in opts {
        let (k, v) = o.split_once(['=', ':']).unwrap_or((o.as_str(), ""));
        match k {
            "no-new-privileges" => {
                s.no_new_privileges = match v {
                    "" | "true" => true,
                    "false" => false,
                    _ => {
                        return Err(bad(
                            "--security-opt",
                            format!("invalid no-new-privileges value {v:?}: use true or false"),
                        ))
                    }
                }
            }
            "mask" => s.mask.extend(paths(k, v)?),
            "unmask" if v == "ALL" => s.unmask_all = true,
            "unmask" => s.unmask.extend(paths(k, v)?),
            "seccomp" if v.is_empty() => {
                return Err(bad(
                    "--security-opt",
                    "seccomp: give unconfined or the path of a JSON profile, e.g. seccomp=/etc/skiff/seccomp.json".into(),
                ))
            }
            "seccomp" => s.seccomp = super::seccomp::Choice::parse(v),
            "label" | "apparmor" | "proc-opts" => {}
            _ => {
                return Err(bad(
                    "--security-opt",
                    format!("unknown security option {o:?}: skiff knows no-new-privileges, mask=PATHS, unmask=ALL|PATHS, seccomp=..."),
                ))
            }
        }
    }
    Ok(s)
}

/// `HostConfig.SecurityOpt` as podman shows it: the seccomp choice and
/// no-new-privileges (masks and unmasks are not listed).
pub fn inspect_security_opt(sec: &SecurityOptions) -> Vec<String> {
    let Ok(o) = parse_security_opts(&sec.security_opts) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    match &o.seccomp {
        super::seccomp::Choice::Default => {}
        super::seccomp::Choice::Unconfined => out.push("seccomp=unconfined".to_string()),
        super::seccomp::Choice::File(p) => out.push(format!("seccomp={}", p.display())),
    }
    if o.no_new_privileges {
        out.push("no-new-privileges".to_string());
    }
    out
}

/// Matches a path against an unmask entry; `/proc/*` style globs match one level.
fn unmasked(path: &str, patterns: &[String]) -> bool {
    patterns.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => path.starts_with(prefix) && !path[prefix.len()..].contains('/'),
        None => p.trim_end_matches('/') == path,
    })
}

/// The masked and read-only path lists after --privileged, mask= and unmask=.
pub fn masked_and_readonly(sec: &SecurityOptions, o: &SecurityOpts) -> (Vec<String>, Vec<String>) {
    let keep = |p: &&&str| !(sec.privileged || o.unmask_all || unmasked(p, &o.unmask));
    let mut masked: Vec<String> = super::spec::MASKED_PATHS
        .iter()
        .filter(keep)
        .map(|s| s.to_string())
        .collect();
    masked.extend(o.mask.iter().cloned());
    let ro = super::spec::READONLY_PATHS
        .iter()
        .filter(keep)
        .map(|s| s.to_string())
        .collect();
    (masked, ro)
}

/// A parsed `--device HOST[:CONTAINER][:PERMS]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub host: PathBuf,
    pub container: String,
    pub perms: String,
}

fn is_perms(s: &str) -> bool {
    !s.is_empty() && s.len() <= 3 && s.chars().all(|c| "rwm".contains(c))
}

/// Parses and checks one --device: the node must be a device this user can open with
/// the asked permissions, since it is bind-mounted (a user namespace cannot mknod).
pub fn parse_device(spec: &str) -> Result<Device, RuntimeError> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (host, container, perms) = match parts.as_slice() {
        [h] => (*h, *h, "rwm"),
        [h, p] if is_perms(p) => (*h, *h, *p),
        [h, c] => (*h, *c, "rwm"),
        [h, c, p] => (*h, *c, *p),
        _ => {
            return Err(bad(
                "--device",
                format!("invalid device {spec:?}: use HOST-PATH[:CONTAINER-PATH][:PERMISSIONS]"),
            ))
        }
    };
    if !is_perms(perms) {
        return Err(bad(
            "--device",
            format!("invalid device {spec:?}: permissions {perms:?} must be made of r, w and m"),
        ));
    }
    if !host.starts_with('/') || !container.starts_with('/') {
        return Err(bad(
            "--device",
            format!("invalid device {spec:?}: paths must be absolute"),
        ));
    }
    let md = std::fs::metadata(host).map_err(|e| {
        bad(
            "--device",
            format!("{host}: {e}: give an existing device node"),
        )
    })?;
    let ft = md.file_type();
    if !(ft.is_char_device() || ft.is_block_device()) {
        return Err(bad(
            "--device",
            format!("{host} is not a device node: give a character or block device"),
        ));
    }
    let mut mode = nix::unistd::AccessFlags::empty();
    if perms.contains('r') {
        mode |= nix::unistd::AccessFlags::R_OK;
    }
    if perms.contains('w') {
        mode |= nix::unistd::AccessFlags::W_OK;
    }
    if nix::unistd::access(host, mode).is_err() {
        return Err(bad(
            "--device",
            format!("{host}: permission denied: your user cannot open this device ({perms}); ask an admin for access (e.g. a group or mode 0666) or use another device"),
        ));
    }
    Ok(Device {
        host: PathBuf::from(host),
        container: container.to_string(),
        perms: perms.to_string(),
    })
}

/// Devices already in every container's /dev, or that must not be passed through.
const SKIP_PRIVILEGED: &[&str] = &[
    "null", "zero", "full", "random", "urandom", "tty", "console", "ptmx",
];

/// `--privileged`: the host's device nodes this user can open (podman passes them all
/// through; a node nobody in the container could open would only clutter /dev).
pub fn privileged_devices() -> Vec<Device> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::from("/dev")];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().to_string();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                if !["pts", "shm", "mqueue", "hugepages"].contains(&name.as_str()) {
                    stack.push(p);
                }
                continue;
            }
            let top = dir == Path::new("/dev");
            if !(ft.is_char_device() || ft.is_block_device())
                || (top && SKIP_PRIVILEGED.contains(&name.as_str()))
                || (top && name.starts_with("tty"))
            {
                continue;
            }
            let any = nix::unistd::access(&p, nix::unistd::AccessFlags::R_OK).is_ok()
                || nix::unistd::access(&p, nix::unistd::AccessFlags::W_OK).is_ok();
            if any {
                let s = p.display().to_string();
                out.push(Device {
                    host: p,
                    container: s,
                    perms: "rwm".into(),
                });
            }
        }
    }
    out.sort_by(|a, b| a.container.cmp(&b.container));
    out
}

/// Spec mounts for the devices (after /dev is set up, in list order).
pub fn device_mounts(devs: &[Device]) -> Vec<oci_spec::runtime::Mount> {
    devs.iter()
        .map(|d| {
            let mut m = oci_spec::runtime::Mount::default();
            m.set_destination(PathBuf::from(&d.container));
            m.set_typ(Some("bind".into()));
            m.set_source(Some(d.host.clone()));
            let mut o = vec!["bind".to_string(), "nosuid".into(), "noexec".into()];
            if !d.perms.contains('w') {
                o.push("ro".into());
            }
            m.set_options(Some(o));
            m
        })
        .collect()
}

/// Adds the device bind mounts (after /dev exists: they come last) and, for
/// --privileged, makes /sys writable where the kernel allows.
pub fn extend_mounts(
    mounts: &mut Vec<oci_spec::runtime::Mount>,
    sec: &SecurityOptions,
) -> Result<(), RuntimeError> {
    let mut devs = if sec.privileged {
        privileged_devices()
    } else {
        Vec::new()
    };
    for d in &sec.devices {
        let d = parse_device(d)?;
        devs.retain(|x| x.container != d.container);
        devs.push(d);
    }
    if sec.privileged {
        for m in mounts.iter_mut() {
            if m.destination() == Path::new("/sys") {
                let o: Vec<String> = m
                    .options()
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|o| o != "ro")
                    .collect();
                m.set_options(Some(o));
            }
        }
    }
    mounts.extend(device_mounts(&devs));
    Ok(())
}

/// Checks every security flag; called before anything is written.
pub fn validate(sec: &SecurityOptions) -> Result<(), RuntimeError> {
    capability_sets(sec, true)?;
    let o = parse_security_opts(&sec.security_opts)?;
    if let super::seccomp::Choice::File(p) = &o.seccomp {
        super::seccomp::load_file(p)?;
    }
    for d in &sec.devices {
        parse_device(d)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sets(add: &[&str], drop: &[&str], privileged: bool) -> CapSets {
        capability_sets(
            &SecurityOptions {
                cap_add: add.iter().map(|s| s.to_string()).collect(),
                cap_drop: drop.iter().map(|s| s.to_string()).collect(),
                privileged,
                ..Default::default()
            },
            true,
        )
        .unwrap()
    }

    #[test]
    fn podman_cap_rules() {
        let d = sets(&[], &[], false);
        assert_eq!(d.root.len(), 11);
        assert!(d.nonroot.is_empty());
        let a = sets(&["net_admin"], &[], false);
        assert!(a.root.contains(&Cap::CAP_NET_ADMIN));
        assert_eq!(a.nonroot, [Cap::CAP_NET_ADMIN].into_iter().collect());
        let dr = sets(&[], &["CAP_CHOWN"], false);
        assert!(!dr.root.contains(&Cap::CAP_CHOWN));
        assert!(sets(&[], &["ALL"], false).root.is_empty());
        let only = sets(&["chown"], &["all"], false);
        assert_eq!(only.root, [Cap::CAP_CHOWN].into_iter().collect());
        assert!(sets(&[], &[], true).nonroot.is_empty());
        assert!(capability_sets(
            &SecurityOptions {
                cap_add: vec!["bogus".into()],
                ..Default::default()
            },
            true
        )
        .is_err());
        assert!(capability_sets(
            &SecurityOptions {
                cap_add: vec!["chown".into()],
                cap_drop: vec!["CAP_CHOWN".into()],
                ..Default::default()
            },
            true
        )
        .is_err());
    }

    #[test]
    fn masks() {
        let o = parse_security_opts(&["unmask=/proc/keys:/proc/sys".into(), "mask=/etc/x".into()])
            .unwrap();
        let (m, r) = masked_and_readonly(&SecurityOptions::default(), &o);
        assert!(!m.contains(&"/proc/keys".to_string()));
        assert!(m.contains(&"/etc/x".to_string()));
        assert!(!r.contains(&"/proc/sys".to_string()));
        let o = parse_security_opts(&["unmask=/proc/*".into()]).unwrap();
        let (m, _) = masked_and_readonly(&SecurityOptions::default(), &o);
        assert!(m.iter().all(|p| !p.starts_with("/proc/")));
        assert!(parse_security_opts(&["mask=relative".into()]).is_err());
        assert!(parse_security_opts(&["bogus".into()]).is_err());
        assert!(
            parse_security_opts(&["no-new-privileges".into()])
                .unwrap()
                .no_new_privileges
        );
    }

    #[test]
    fn devices() {
        let d = parse_device("/dev/null:/dev/n:r").unwrap();
        assert_eq!((d.container.as_str(), d.perms.as_str()), ("/dev/n", "r"));
        assert_eq!(parse_device("/dev/null:rw").unwrap().container, "/dev/null");
        assert!(parse_device("/dev/null:/dev/n:x").is_err());
        assert!(parse_device("/etc/passwd").is_err());
        assert!(parse_device("/dev/nonexistent-xyz").is_err());
    }
}
