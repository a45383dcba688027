//! Resource limits: --memory, --memory-swap, --cpus, --cpu-shares, --pids-limit (cgroups),
//! --ulimit (rlimits) and --oom-score-adj.
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

use oci_spec::runtime::{
    LinuxCpu, LinuxMemory, LinuxPids, LinuxResources, PosixRlimit, PosixRlimitBuilder,
    PosixRlimitType, Spec,
};

use super::{RuntimeError, SecurityOptions};

const CGROUP_ROOT: &str = "/sys/fs/cgroup";
const CPU_PERIOD: u64 = 100_000;

fn bad(flag: &'static str, detail: String) -> RuntimeError {
    RuntimeError::BadFlag { flag, detail }
}

/// docker's RAMInBytes: a number with an optional b, k, m, g, t suffix (kb, mb, ...).
pub fn parse_size(s: &str) -> Option<i64> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last()? {
        'k' => (&t[..t.len() - 1], 1i64 << 10),
        'm' => (&t[..t.len() - 1], 1 << 20),
        'g' => (&t[..t.len() - 1], 1 << 30),
        't' => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let v: f64 = num.parse().ok()?;
    (v.is_finite() && v >= 0.0).then_some((v * mult as f64) as i64)
}

/// The cgroup limits the flags ask for (None: not asked).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    pub memory: Option<i64>,
    /// memory + swap; -1 unlimited.
    pub memory_swap: Option<i64>,
    /// CFS quota per CPU_PERIOD.
    pub cpu_quota: Option<i64>,
    pub cpu_shares: Option<u64>,
    /// -1 unlimited.
    pub pids: Option<i64>,
}

impl Limits {
    pub fn is_empty(&self) -> bool {
        *self == Limits::default()
    }
}

pub fn parse_limits(sec: &SecurityOptions) -> Result<Limits, RuntimeError> {
    let mut l = Limits::default();
    if let Some(m) = &sec.memory {
        let v = parse_size(m).filter(|v| *v > 0).ok_or_else(|| {
            bad(
                "--memory",
                format!("invalid memory limit {m:?}: use a size like 512m or 1g"),
            )
        })?;
        if v < 6 << 20 {
            return Err(bad(
                "--memory",
                format!("minimum memory limit allowed is 6MB, got {m}"),
            ));
        }
        l.memory = Some(v);
    }
    if let Some(s) = &sec.memory_swap {
        let v = if s.trim() == "-1" {
            -1
        } else {
            parse_size(s).filter(|v| *v > 0).ok_or_else(|| {
                bad(
                    "--memory-swap",
                    format!(
                        "invalid memory-swap limit {s:?}: use a size like 1g, or -1 for unlimited"
                    ),
                )
            })?
        };
        match l.memory {
            None => {
                return Err(bad(
                    "--memory-swap",
                    "you must provide a memory limit too: add --memory".into(),
                ))
            }
            Some(m) if v != -1 && v < m => {
                return Err(bad(
                    "--memory-swap",
                    format!("memory-swap {s} must be larger than or equal to --memory"),
                ))
            }
            _ => {}
        }
        l.memory_swap = Some(v);
    }
    if let Some(c) = &sec.cpus {
        let v: f64 = c
            .trim()
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite() && *v > 0.0)
            .ok_or_else(|| {
                bad(
                    "--cpus",
                    format!("invalid number of CPUs {c:?}: use a positive number like 1.5"),
                )
            })?;
        let ncpu = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1) as f64;
        if v > ncpu {
            return Err(bad(
                "--cpus",
                format!("range of CPUs is from 0.01 to {ncpu:.2}, as there are only {ncpu} CPUs available"),
            ));
        }
        l.cpu_quota = Some((v * CPU_PERIOD as f64) as i64);
    }
    if let Some(s) = sec.cpu_shares {
        if s < 2 {
            return Err(bad(
                "--cpu-shares",
                format!("cpu shares {s} is below the minimum of 2"),
            ));
        }
        l.cpu_shares = Some(s);
    }
    if let Some(p) = sec.pids_limit {
        l.pids = Some(if p <= 0 { -1 } else { p });
    }
    Ok(l)
}

/// The OCI resources block for the spec.
pub fn linux_resources(l: &Limits) -> Option<LinuxResources> {
    if l.is_empty() {
        return None;
    }
    let mut r = LinuxResources::default();
    if l.memory.is_some() {
        let mut m = LinuxMemory::default();
        m.set_limit(l.memory);
        m.set_swap(l.memory_swap);
        r.set_memory(Some(m));
    }
    if l.cpu_quota.is_some() || l.cpu_shares.is_some() {
        let mut c = LinuxCpu::default();
        c.set_quota(l.cpu_quota);
        c.set_period(l.cpu_quota.map(|_| CPU_PERIOD));
        c.set_shares(l.cpu_shares);
        r.set_cpu(Some(c));
    }
    if let Some(p) = l.pids {
        let mut pl = LinuxPids::default();
        pl.set_limit(p);
        r.set_pids(Some(pl));
    }
    Some(r)
}

fn rlimit_type(name: &str) -> Option<(PosixRlimitType, nix::sys::resource::Resource)> {
    use nix::sys::resource::Resource as R;
    use PosixRlimitType as T;
    Some(match name {
        "core" => (T::RlimitCore, R::RLIMIT_CORE),
        "cpu" => (T::RlimitCpu, R::RLIMIT_CPU),
        "data" => (T::RlimitData, R::RLIMIT_DATA),
        "fsize" => (T::RlimitFsize, R::RLIMIT_FSIZE),
        "locks" => (T::RlimitLocks, R::RLIMIT_LOCKS),
        "memlock" => (T::RlimitMemlock, R::RLIMIT_MEMLOCK),
        "msgqueue" => (T::RlimitMsgqueue, R::RLIMIT_MSGQUEUE),
        "nice" => (T::RlimitNice, R::RLIMIT_NICE),
        "nofile" => (T::RlimitNofile, R::RLIMIT_NOFILE),
        "nproc" => (T::RlimitNproc, R::RLIMIT_NPROC),
        "rss" => (T::RlimitRss, R::RLIMIT_RSS),
        "rtprio" => (T::RlimitRtprio, R::RLIMIT_RTPRIO),
        "rttime" => (T::RlimitRttime, R::RLIMIT_RTTIME),
        "sigpending" => (T::RlimitSigpending, R::RLIMIT_SIGPENDING),
        "stack" => (T::RlimitStack, R::RLIMIT_STACK),
        _ => return None,
    })
}

/// The kernel resource behind an OCI rlimit type, for the init's setrlimit.
pub fn resource_of(t: PosixRlimitType) -> Option<nix::sys::resource::Resource> {
    [
        "core",
        "cpu",
        "data",
        "fsize",
        "locks",
        "memlock",
        "msgqueue",
        "nice",
        "nofile",
        "nproc",
        "rss",
        "rtprio",
        "rttime",
        "sigpending",
        "stack",
    ]
    .iter()
    .filter_map(|n| rlimit_type(n))
    .find(|(ty, _)| *ty == t)
    .map(|(_, r)| r)
}

fn parse_limit_value(v: &str) -> Option<u64> {
    match v.trim() {
        "-1" | "unlimited" => Some(libc::RLIM_INFINITY),
        n => n.parse().ok(),
    }
}

/// `--ulimit name=soft[:hard]`, checked against what this process may set: a hard
/// limit above the current one needs CAP_SYS_RESOURCE, which rootless never has (and
/// root may lack, as on this host).
pub fn parse_ulimit(s: &str) -> Result<PosixRlimit, RuntimeError> {
    let err = |why: String| {
        bad(
            "--ulimit",
            format!("ulimit option {s:?} requires name=SOFT:HARD, failed to be parsed: {why}"),
        )
    };
    let (name, vals) = s.split_once('=').ok_or_else(|| err("missing =".into()))?;
    let name = name.trim().to_ascii_lowercase();
    let (typ, res) =
        rlimit_type(&name).ok_or_else(|| err(format!("invalid ulimit type: {name}")))?;
    let (soft, hard) = match vals.split_once(':') {
        Some((a, b)) => (a, b),
        None => (vals, vals),
    };
    let soft =
        parse_limit_value(soft).ok_or_else(|| err(format!("invalid soft limit {soft:?}")))?;
    let hard =
        parse_limit_value(hard).ok_or_else(|| err(format!("invalid hard limit {hard:?}")))?;
    if soft > hard {
        return Err(err(format!(
            "ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}"
        )));
    }
    let (_, cur_hard) = nix::sys::resource::getrlimit(res).unwrap_or((0, libc::RLIM_INFINITY));
    let privileged = caps::has_cap(
        None,
        caps::CapSet::Effective,
        caps::Capability::CAP_SYS_RESOURCE,
    )
    .unwrap_or(false);
    if hard > cur_hard && !privileged {
        return Err(bad(
            "--ulimit",
            format!("{s}: the hard limit cannot be raised above {cur_hard} without CAP_SYS_RESOURCE: give a value up to {cur_hard}"),
        ));
    }
    PosixRlimitBuilder::default()
        .typ(typ)
        .soft(soft)
        .hard(hard)
        .build()
        .map_err(|e| err(e.to_string()))
}

/// Merges --ulimit (and, where cgroups cannot, --pids-limit as RLIMIT_NPROC) over the
/// default rlimits.
pub fn rlimits(
    defaults: Vec<PosixRlimit>,
    sec: &SecurityOptions,
    pids_as_rlimit: bool,
) -> Result<Vec<PosixRlimit>, RuntimeError> {
    let mut out = defaults;
    let mut set = |r: PosixRlimit| {
        out.retain(|x| x.typ() != r.typ());
        out.push(r);
    };
    if pids_as_rlimit {
        if let Some(p) = sec.pids_limit.filter(|p| *p > 0) {
            if let Ok(r) = PosixRlimitBuilder::default()
                .typ(PosixRlimitType::RlimitNproc)
                .soft(p as u64)
                .hard(p as u64)
                .build()
            {
                set(r);
            }
        }
    }
    for u in &sec.ulimits {
        set(parse_ulimit(u)?);
    }
    Ok(out)
}

/// `--oom-score-adj`: -1000..1000; lowering it below ours needs CAP_SYS_RESOURCE.
pub fn check_oom_score_adj(v: Option<i32>) -> Result<(), RuntimeError> {
    let Some(v) = v else { return Ok(()) };
    if !(-1000..=1000).contains(&v) {
        return Err(bad(
            "--oom-score-adj",
            format!("{v} is out of range: use a value from -1000 to 1000"),
        ));
    }
    let cur: i32 = std::fs::read_to_string("/proc/self/oom_score_adj")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let privileged = caps::has_cap(
        None,
        caps::CapSet::Effective,
        caps::Capability::CAP_SYS_RESOURCE,
    )
    .unwrap_or(false);
    if v < cur && !privileged {
        return Err(bad(
            "--oom-score-adj",
            format!("{v} is below the current value {cur}: lowering it needs CAP_SYS_RESOURCE (root); only raising is allowed"),
        ));
    }
    Ok(())
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_limits() {
        assert_eq!(parse_size("512m"), Some(512 << 20));
        assert_eq!(parse_size("1g"), Some(1 << 30));
        assert_eq!(parse_size("1GB"), Some(1 << 30));
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("x"), None);
        let sec = SecurityOptions {
            memory: Some("100m".into()),
            memory_swap: Some("50m".into()),
            ..Default::default()
        };
        assert!(parse_limits(&sec).is_err());
        let sec = SecurityOptions {
            cpus: Some("0.5".into()),
            pids_limit: Some(10),
            ..Default::default()
        };
        let l = parse_limits(&sec).unwrap();
        assert_eq!(l.cpu_quota, Some(50_000));
        assert_eq!(l.pids, Some(10));
    }

    #[test]
    fn ulimits() {
        let r = parse_ulimit("nofile=100:200").unwrap();
        assert_eq!((r.soft(), r.hard()), (100, 200));
        assert!(parse_ulimit("bogus=1").is_err());
        assert!(parse_ulimit("nofile=200:100").is_err());
        assert!(parse_ulimit("nofile").is_err());
    }
}
