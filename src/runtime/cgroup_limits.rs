//! Enforcing the resource limits of a container's spec in cgroups (the limits
//! themselves come from [`super::resources`]).
//!
//! Where the limits go:
//! - root on cgroup v1 (and hybrid hosts): a cgroup `skiff/<id>` under each v1
//!   controller a flag needs (memory, cpu, pids); joining one costs ~10 ms here, so no
//!   other controller is touched.
//! - cgroup v2, root or a user whose cgroup systemd delegated: a child `skiff-<id>` of the
//!   monitor's cgroup (the one the freezer uses) with memory.max, memory.swap.max,
//!   cpu.max, cpu.weight, pids.max.
//! - rootless on cgroup v1, or v2 without the controllers delegated: the limits are
//!   ignored with a warning per limit, as podman does; --pids-limit falls back to
//!   RLIMIT_NPROC (per UID, not per container).
//!
//! The init joins these cgroups while it waits for its ID maps, before any of its
//! processes exist.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxResources, Spec};

use super::SecurityOptions;

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Where cgroup limits can be applied for this caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupSupport {
    V1Root,
    V2,
    /// Limits are ignored; the reason is the warning's text.
    None(&'static str),
}

fn v2_own_cgroup() -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let rel = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))?
        .trim()
        .to_string();
    Some(Path::new(CGROUP_ROOT).join(rel.trim_start_matches('/')))
}

/// Controllers the caller can use below its own cgroup (v2): listed in its
/// cgroup.controllers and the directory writable (systemd delegation).
fn v2_delegated(ctrl: &str) -> bool {
    let Some(dir) = v2_own_cgroup() else {
        return false;
    };
    let listed = std::fs::read_to_string(dir.join("cgroup.controllers"))
        .map(|s| s.split_whitespace().any(|c| c == ctrl))
        .unwrap_or(false);
    listed && nix::unistd::access(&dir, nix::unistd::AccessFlags::W_OK).is_ok()
}

pub fn cgroup_support(rootless: bool) -> CgroupSupport {
    if super::cgroup::unified() {
        if !rootless || v2_delegated("memory") || v2_delegated("pids") || v2_delegated("cpu") {
            CgroupSupport::V2
        } else {
            CgroupSupport::None("Resource limits are not supported and ignored: the cgroup v2 controllers are not delegated to your user (systemd user@.service delegation)")
        }
    } else if rootless {
        CgroupSupport::None(
            "Resource limits are not supported and ignored on cgroups V1 rootless systems",
        )
    } else {
        CgroupSupport::V1Root
    }
}

/// One warning per limit that will be ignored, in podman's words, plus what happens
/// instead (--pids-limit as RLIMIT_NPROC).
pub fn warnings(sec: &SecurityOptions, support: CgroupSupport) -> Vec<String> {
    let CgroupSupport::None(why) = support else {
        return Vec::new();
    };
    let mut w = Vec::new();
    for (flag, given) in [
        ("--memory", sec.memory.is_some()),
        ("--memory-swap", sec.memory_swap.is_some()),
        ("--cpus", sec.cpus.is_some()),
        ("--cpu-shares", sec.cpu_shares.is_some()),
    ] {
        if given {
            w.push(format!("{flag}: {why}"));
        }
    }
    if sec.pids_limit.is_some_and(|p| p > 0) {
        w.push(format!(
            "--pids-limit: {why}; applied as RLIMIT_NPROC instead, which counts every process of the container's UID, not only this container's"
        ));
    }
    w
}

fn cgroup_id(spec: &Spec) -> Option<String> {
    let id = spec.annotations().as_ref()?.get("io.skiff.id")?.clone();
    (!id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(id)
}

fn write(dir: &Path, file: &str, value: &str) -> Result<(), String> {
    let p = dir.join(file);
    tracing::debug!(path = %p.display(), value, "cgroup write");
    std::fs::write(&p, value).map_err(|e| format!("writing {value} to {}: {e}", p.display()))
}

/// Puts the waiting init `pid` into cgroups carrying the spec's limits. Called by the
/// monitor before the init runs anything.
pub fn apply(spec: &Spec, pid: i32) -> Result<(), String> {
    if let Some(adj) = spec.process().as_ref().and_then(|p| p.oom_score_adj()) {
        let path = format!("/proc/{pid}/oom_score_adj");
        tracing::debug!(%path, adj, "write oom_score_adj");
        std::fs::write(&path, adj.to_string())
            .map_err(|e| format!("--oom-score-adj {adj}: writing {path}: {e}"))?;
    }
    let Some(r) = spec.linux().as_ref().and_then(|l| l.resources().clone()) else {
        return Ok(());
    };
    let Some(id) = cgroup_id(spec) else {
        return Ok(());
    };
    let rootless = !nix::unistd::geteuid().is_root();
    match cgroup_support(rootless) {
        CgroupSupport::None(_) => Ok(()),
        CgroupSupport::V1Root => apply_v1(&id, &r, pid),
        CgroupSupport::V2 => apply_v2(&id, &r, pid),
    }
}

fn v1_dir(ctrl: &str, id: &str) -> PathBuf {
    Path::new(CGROUP_ROOT).join(ctrl).join("skiff").join(id)
}

fn apply_v1(id: &str, r: &LinuxResources, pid: i32) -> Result<(), String> {
    let join = |ctrl: &str, files: Vec<(&str, String)>| -> Result<(), String> {
        let dir = v1_dir(ctrl, id);
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        for (f, v) in files {
            // Swap accounting may be off in the kernel: then there is no memsw file.
            if f.contains("memsw") && !dir.join(f).exists() {
                tracing::warn!("--memory-swap: the kernel has no swap accounting (memory.memsw.*): swap is not limited");
                continue;
            }
            write(&dir, f, &v)?;
        }
        write(&dir, "cgroup.procs", &pid.to_string())
    };
    if let Some(m) = r.memory() {
        let mut f = Vec::new();
        if let Some(l) = m.limit() {
            f.push(("memory.limit_in_bytes", l.to_string()));
        }
        if let Some(s) = m.swap() {
            f.push(("memory.memsw.limit_in_bytes", s.to_string()));
        }
        join("memory", f)?;
    }
    if let Some(c) = r.cpu() {
        let mut f = Vec::new();
        if let Some(s) = c.shares() {
            f.push(("cpu.shares", s.to_string()));
        }
        if let (Some(q), Some(p)) = (c.quota(), c.period()) {
            f.push(("cpu.cfs_period_us", p.to_string()));
            f.push(("cpu.cfs_quota_us", q.to_string()));
        }
        join("cpu", f)?;
    }
    if let Some(p) = r.pids() {
        let v = if p.limit() > 0 {
            p.limit().to_string()
        } else {
            "max".into()
        };
        join("pids", vec![("pids.max", v)])?;
    }
    Ok(())
}

fn apply_v2(id: &str, r: &LinuxResources, pid: i32) -> Result<(), String> {
    let parent = v2_own_cgroup().ok_or("no cgroup v2 path in /proc/self/cgroup")?;
    let dir = parent.join(format!("skiff-{id}"));
    let mut ctrls = Vec::new();
    let mut files: Vec<(&str, String)> = Vec::new();
    if let Some(m) = r.memory() {
        ctrls.push("memory");
        if let Some(l) = m.limit() {
            files.push(("memory.max", l.to_string()));
            if let Some(s) = m.swap() {
                let v = if s < 0 {
                    "max".to_string()
                } else {
                    (s - l).max(0).to_string()
                };
                files.push(("memory.swap.max", v));
            }
        }
    }
    if let Some(c) = r.cpu() {
        ctrls.push("cpu");
        if let (Some(q), Some(p)) = (c.quota(), c.period()) {
            files.push(("cpu.max", format!("{q} {p}")));
        }
        if let Some(s) = c.shares() {
            // runc's conversion of v1 shares (2..262144) to v2 weight (1..10000).
            let w = 1 + ((s.clamp(2, 262_144) - 2) * 9999) / 262_142;
            files.push(("cpu.weight", w.to_string()));
        }
    }
    if let Some(p) = r.pids() {
        ctrls.push("pids");
        let v = if p.limit() > 0 {
            p.limit().to_string()
        } else {
            "max".into()
        };
        files.push(("pids.max", v));
    }
    // Enabling controllers for children fails with EBUSY while the parent holds
    // processes other than in the root cgroup; then the limits cannot apply.
    let want = ctrls
        .iter()
        .map(|c| format!("+{c}"))
        .collect::<Vec<_>>()
        .join(" ");
    write(&parent, "cgroup.subtree_control", &want).map_err(|e| {
        format!("{e}: the monitor's cgroup cannot pass the {} controllers on (is it delegated, with no processes of its own?)", ctrls.join(", "))
    })?;
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    for (f, v) in files {
        write(&dir, f, &v)?;
    }
    write(&dir, "cgroup.procs", &pid.to_string())
}

/// Moves this process into the cgroups skiff made for the container whose init is
/// `pid` (v1: each controller's `skiff/<id>`; v2: its `skiff-<id>`), so `exec` runs under
/// the same limits and freezer. Call it before entering the container's cgroup
/// namespace: /proc/PID/cgroup then shows full paths. Other cgroups are left alone.
pub fn join_like(pid: i32) {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
        return;
    };
    let me = std::process::id().to_string();
    let hex = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
    for line in text.lines() {
        let mut f = line.splitn(3, ':');
        let (Some(_), Some(ctrls), Some(path)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let path = path.trim();
        if path.contains("/..") {
            continue;
        }
        let parts: Vec<&str> = path.rsplitn(3, '/').collect();
        let dir = match (ctrls, parts.as_slice()) {
            ("", [last, ..]) if last.strip_prefix("skiff-").is_some_and(hex) => {
                Path::new(CGROUP_ROOT).join(path.trim_start_matches('/'))
            }
            (c, [id, "skiff", ..]) if !c.is_empty() && hex(id) => {
                let ctrl = c.split(',').next().unwrap_or(c);
                Path::new(CGROUP_ROOT)
                    .join(ctrl)
                    .join(path.trim_start_matches('/'))
            }
            _ => continue,
        };
        tracing::debug!(dir = %dir.display(), "join container cgroup");
        let _ = std::fs::write(dir.join("cgroup.procs"), &me);
    }
}

/// Removes the container's v1 limit cgroups once its processes are gone (the v2 one is
/// the freezer's directory, which `cgroup::remove` deletes).
pub fn remove(id: &str) {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return;
    }
    for ctrl in ["memory", "cpu", "pids"] {
        let _ = std::fs::remove_dir(v1_dir(ctrl, id));
    }
}
