//! `--sysctl NAME=VALUE`: which kernel parameters a container may set, and setting them
//! inside the container. Only parameters that belong to a namespace the container owns
//! are allowed (podman's list), so a container can never change the host's kernel.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};

use super::{NetworkMode, RuntimeError};

/// IPC-namespace parameters podman allows by exact name.
const IPC_SYSCTLS: &[&str] = &[
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
];

fn bad(detail: String) -> RuntimeError {
    RuntimeError::BadFlag {
        flag: "--sysctl",
        detail,
    }
}

/// A name made of dot-separated words of `[A-Za-z0-9_-]`: it becomes a path under
/// /proc/sys, so no slash, no empty or dot-only component may get through.
fn valid_name(name: &str) -> bool {
    name.split('.').all(|c| {
        !c.is_empty()
            && c.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    })
}

/// Validates `--sysctl` values as podman does (namespaced parameters only; `net.*` only
/// with a network namespace of the container's own); returns them by name.
pub fn parse_sysctls(
    list: &[String],
    network: NetworkMode,
) -> Result<BTreeMap<String, String>, RuntimeError> {
    let mut out = BTreeMap::new();
    for s in list {
        let (name, value) = s
            .split_once('=')
            .filter(|(n, v)| !n.is_empty() && !v.is_empty())
            .ok_or_else(|| bad(format!("{s:?} is invalid: use NAME=VALUE")))?;
        if name.trim() != name || value.trim() != value {
            return Err(bad(format!("{s:?} is invalid: extra spaces found")));
        }
        if !valid_name(name) || value.chars().any(|c| c.is_control()) {
            return Err(bad(format!("{s:?} is invalid: use NAME=VALUE")));
        }
        if name.starts_with("net.") {
            if network == NetworkMode::Host {
                return Err(bad(format!(
                    "sysctl {name:?} is not allowed in the host's network namespace: use --network none"
                )));
            }
        } else if !(IPC_SYSCTLS.contains(&name) || name.starts_with("fs.mqueue.")) {
            return Err(bad(format!(
                "sysctl {name:?} is not allowed: only namespaced ones can be set (kernel.msg*, kernel.sem, kernel.shm*, fs.mqueue.*, net.*)"
            )));
        }
        out.insert(name.to_string(), value.to_string());
    }
    Ok(out)
}

/// Writes each sysctl through the container's own /proc (mounted under `root`, before
/// /proc/sys is made read-only): net.* and kernel.* files there act on the namespaces
/// of the writer, which are the container's. Names were validated at create time and
/// are checked again, since the spec on disk is outside input.
pub fn apply_sysctls(
    root: &OwnedFd,
    sysctls: Option<&HashMap<String, String>>,
) -> Result<(), String> {
    // Sorted, so errors and effects do not depend on hash order.
    let sorted: BTreeMap<_, _> = sysctls.into_iter().flatten().collect();
    for (name, value) in sorted {
        if !valid_name(name) {
            return Err(format!("invalid sysctl name {name:?} in the spec"));
        }
        let path: PathBuf = ["proc", "sys"].into_iter().chain(name.split('.')).collect();
        let fd = openat2(
            root.as_fd(),
            &path,
            OpenHow::new()
                .flags(OFlag::O_WRONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW)
                .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS),
        )
        .map_err(|e| format!("setting sysctl {name}={value}: {e}"))?;
        let on_proc = nix::sys::statfs::fstatfs(&fd)
            .map(|s| s.filesystem_type() == nix::sys::statfs::PROC_SUPER_MAGIC)
            .unwrap_or(false);
        if !on_proc {
            return Err(format!(
                "setting sysctl {name}={value}: /{} is not on procfs",
                path.display()
            ));
        }
        std::fs::File::from(fd)
            .write_all(value.as_bytes())
            .map_err(|e| format!("setting sysctl {name}={value}: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(v: &[&str], n: NetworkMode) -> Result<BTreeMap<String, String>, RuntimeError> {
        parse_sysctls(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>(), n)
    }

    #[test]
    fn namespaced_sysctls_only() {
        let m = p(
            &[
                "net.ipv4.ip_forward=1",
                "kernel.shmmax=1000",
                "kernel.sem=250 32000 32 128",
                "fs.mqueue.msg_max=20",
            ],
            NetworkMode::None,
        )
        .unwrap();
        assert_eq!(m["kernel.sem"], "250 32000 32 128");
        assert_eq!(m.len(), 4);
        for bad in [
            "kernel.hostname=x",
            "vm.swappiness=1",
            "net.ipv4.ip_forward",
            "=1",
            "net.ipv4.ip_forward=",
            "net..ipv4=1",
            "net.ipv4/../../x=1",
            "net.ipv4.ip_forward =1",
            "net.ipv4.ip_forward=1 ",
            "kernel.shmmax=1\n2",
        ] {
            assert!(p(&[bad], NetworkMode::None).is_err(), "{bad}");
        }
        let e = p(&["net.ipv4.ip_forward=1"], NetworkMode::Host).unwrap_err();
        assert!(e.to_string().contains("net.ipv4.ip_forward"), "{e}");
        assert!(p(&["kernel.shmmax=1"], NetworkMode::Host).is_ok());
    }
}
