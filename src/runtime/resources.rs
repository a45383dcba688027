//! Resource limits as flags and spec: --memory, --memory-swap, --cpus, --cpu-shares,
//! --pids-limit (the spec's cgroup resources), --ulimit (rlimits) and --oom-score-adj,
//! checked at create. Where the cgroup limits are enforced on this host is
//! [`super::cgroup_limits`]'s business.

use oci_spec::runtime::{
    LinuxCpu, LinuxMemory, LinuxPids, LinuxResources, PosixRlimit, PosixRlimitBuilder,
    PosixRlimitType,
};

use super::{RuntimeError, SecurityOptions};

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
