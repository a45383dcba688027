//! `top`: the processes of a running container, with podman's descriptors and columns.
//! Everything is read from the host's /proc: a process belongs to the container when
//! its pid namespace is the container init's; PIDs are shown as the container sees them
//! (the last NSpid), users are mapped back through the container's uid_map and named
//! from the container's own /etc/passwd, opened inside its root (openat2 RESOLVE_IN_ROOT
//! on /proc/<init>/root), so a symlink in the container can never make us read a host
//! file.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::Path;

use clap::Args;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use super::{Ctx, Exit};
use crate::runtime::cp::open_in_root;
use crate::runtime::join::Target;
use crate::storage::containers::State;
use crate::storage::Store;

#[derive(Debug, Args)]
pub struct TopArgs {
    /// The container
    pub container: String,
    /// Format descriptors (user, pid, ppid, pcpu, etime, tty, time, args, comm, group,
    /// nice, pgid, rgroup, ruser, state, vsz, rss, hpid, huser, hgroup, or AIX %U %p …)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub descriptors: Vec<String>,
}

const DEFAULT: &[&str] = &[
    "user", "pid", "ppid", "pcpu", "etime", "tty", "time", "args",
];

/// Descriptor name, AIX alias, column header.
const DESCRIPTORS: &[(&str, &str, &str)] = &[
    ("args", "%a", "COMMAND"),
    ("comm", "%c", "COMMAND"),
    ("etime", "%t", "ELAPSED"),
    ("group", "%G", "GROUP"),
    ("hgroup", "", "HGROUP"),
    ("hpid", "", "HPID"),
    ("huser", "", "HUSER"),
    ("nice", "%n", "NI"),
    ("pcpu", "%C", "%CPU"),
    ("pgid", "%r", "PGID"),
    ("pid", "%p", "PID"),
    ("ppid", "%P", "PPID"),
    ("rgroup", "%g", "RGROUP"),
    ("rss", "", "RSS"),
    ("ruser", "%u", "RUSER"),
    ("state", "", "STATE"),
    ("time", "%x", "TIME"),
    ("tty", "%y", "TTY"),
    ("user", "%U", "USER"),
    ("vsz", "%z", "VSZ"),
];

/// One process, as read from /proc.
struct Proc {
    host_pid: i32,
    pid: i32,
    host_ppid: i32,
    ruid: u32,
    euid: u32,
    rgid: u32,
    egid: u32,
    state: String,
    pgid: i32,
    tty_nr: u64,
    nice: i64,
    cpu_ticks: u64,
    start_ticks: u64,
    vsz_kib: u64,
    rss_kib: u64,
    comm: String,
    args: String,
}

fn read_proc(pid: i32) -> Option<Proc> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_string();
    let f: Vec<&str> = stat.get(close + 2..)?.split(' ').collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Vec<i64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| {
                v.split_whitespace()
                    .filter_map(|x| x.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    let uids = field("Uid:");
    let gids = field("Gid:");
    let nspid = field("NSpid:");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let page_kib = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .unwrap_or(4096) as u64
        / 1024;
    Some(Proc {
        host_pid: pid,
        pid: nspid.last().copied().unwrap_or(pid as i64) as i32,
        host_ppid: num(1) as i32,
        ruid: uids.first().copied().unwrap_or(0) as u32,
        euid: uids.get(1).copied().unwrap_or(0) as u32,
        rgid: gids.first().copied().unwrap_or(0) as u32,
        egid: gids.get(1).copied().unwrap_or(0) as u32,
        state: f.first().unwrap_or(&"?").to_string(),
        pgid: num(2) as i32,
        tty_nr: num(4) as u64,
        nice: num(16),
        cpu_ticks: (num(11) + num(12)) as u64,
        start_ticks: num(19) as u64,
        vsz_kib: num(20) as u64 / 1024,
        rss_kib: num(21) as u64 * page_kib,
        comm: comm.clone(),
        args: if args.is_empty() {
            format!("[{comm}]")
        } else {
            args.join(" ")
        },
    })
}

/// Go's time.Duration formatting ("4.617186263s", "1m2.5s", "0s"), which podman prints.
pub fn go_duration(nanos: u128) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    let frac = |v: u128, unit: u128, suffix: &str| {
        let whole = v / unit;
        let rest = v % unit;
        if rest == 0 {
            return format!("{whole}{suffix}");
        }
        let digits = unit.to_string().len() - 1;
        let s = format!("{rest:0digits$}");
        format!("{whole}.{}{suffix}", s.trim_end_matches('0'))
    };
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return frac(nanos, 1_000, "µs");
    }
    if nanos < 1_000_000_000 {
        return frac(nanos, 1_000_000, "ms");
    }
    let secs = nanos / 1_000_000_000;
    let (h, m) = (secs / 3600, (secs / 60) % 60);
    let s = frac(nanos % 60_000_000_000, 1_000_000_000, "s");
    match (h, m) {
        (0, 0) => s,
        (0, m) => format!("{m}m{s}"),
        (h, m) => format!("{h}h{m}m{s}"),
    }
}

fn tty_name(nr: u64) -> String {
    let (major, minor) = ((nr >> 8) & 0xfff, (nr & 0xff) | ((nr >> 12) & 0xfff00));
    match major {
        0 => "?".into(),
        136..=143 => format!("pts/{}", (major - 136) * 256 + minor),
        4 => format!("tty{minor}"),
        _ => "?".into(),
    }
}

/// Maps a host ID into the container through a /proc/PID/{uid,gid}_map as we read it.
fn map_back(map: &str, host: u32) -> Option<u32> {
    map.lines().find_map(|l| {
        let v: Vec<u64> = l
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        let (inside, outside, count) = (*v.first()?, *v.get(1)?, *v.get(2)?);
        let h = host as u64;
        (h >= outside && h < outside + count).then(|| (inside + h - outside) as u32)
    })
}

/// ID → name from a passwd or group file's text.
fn names(text: &str) -> HashMap<u32, String> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some((f.get(2)?.parse().ok()?, f.first()?.to_string()))
        })
        .collect()
}

/// Reads a file of the container through its root, never leaving it.
fn read_in_root(root: Option<&OwnedFd>, path: &str) -> String {
    let Some(root) = root else {
        return String::new();
    };
    open_in_root(root, Path::new(path), OFlag::O_RDONLY)
        .ok()
        .and_then(|fd| std::io::read_to_string(std::fs::File::from(fd)).ok())
        .unwrap_or_default()
}

fn boot_nanos() -> u128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own (nix's time feature is off).
    if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) } != 0 {
        return 0;
    }
    ts.tv_sec as u128 * 1_000_000_000 + ts.tv_nsec as u128
}

fn resolve(d: &str) -> anyhow::Result<(&'static str, &'static str)> {
    DESCRIPTORS
        .iter()
        .find(|(n, aix, _)| *n == d || (!aix.is_empty() && *aix == d))
        .map(|(n, _, h)| (*n, *h))
        .ok_or_else(|| {
            Exit::with(
                125,
                format!(
                    "unknown descriptor: {d}: use one of {}",
                    DESCRIPTORS
                        .iter()
                        .map(|d| d.0)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })
}

pub fn top(ctx: &Ctx, a: TopArgs) -> anyhow::Result<i32> {
    let wanted: Vec<String> = a
        .descriptors
        .iter()
        .flat_map(|d| d.split(','))
        .filter(|d| !d.is_empty())
        .map(String::from)
        .collect();
    let cols: Vec<(&str, &str)> = if wanted.is_empty() {
        DEFAULT
            .iter()
            .map(|d| resolve(d))
            .collect::<Result<_, _>>()?
    } else {
        wanted
            .iter()
            .map(|d| resolve(d))
            .collect::<Result<_, _>>()?
    };
    let mut store = Store::open(&ctx.paths)?;
    let found = store.find_container(&a.container)?;
    let c = super::container::refresh(&mut store, found)?;
    drop(store);
    const NOT_RUNNING: &str = "top can only be used on running containers";
    if c.state != State::Running {
        return Err(Exit::with(125, NOT_RUNNING));
    }
    let t = Target::of_record(&c.name, c.pid, c.monitor_pid.zip(c.monitor_start))
        .map_err(|_| Exit::with(125, NOT_RUNNING))?;
    let init = t.pid;
    let ns = std::fs::read_link(format!("/proc/{init}/ns/pid")).map_err(|e| {
        Exit::with(
            125,
            format!("container {}: reading its pid namespace: {e}", c.name),
        )
    })?;
    let uid_map = std::fs::read_to_string(format!("/proc/{init}/uid_map")).unwrap_or_default();
    let gid_map = std::fs::read_to_string(format!("/proc/{init}/gid_map")).unwrap_or_default();
    let root = nix::fcntl::open(
        format!("/proc/{init}/root").as_str(),
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ok();
    let users = names(&read_in_root(root.as_ref(), "etc/passwd"));
    let groups = names(&read_in_root(root.as_ref(), "etc/group"));
    let mut procs: Vec<Proc> = std::fs::read_dir("/proc")?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| {
            std::fs::read_link(format!("/proc/{p}/ns/pid"))
                .ok()
                .as_ref()
                == Some(&ns)
        })
        .filter_map(read_proc)
        .collect();
    // The init must still be the one we verified: a reused pid shows nothing.
    if read_proc(init).map(|p| p.start_ticks) != Some(t.start) {
        return Err(Exit::with(125, NOT_RUNNING));
    }
    procs.sort_by_key(|p| p.pid);
    let inside_pid: HashMap<i32, i32> = procs.iter().map(|p| (p.host_pid, p.pid)).collect();
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100)
        .max(1) as u128;
    let now = boot_nanos();
    let ticks_ns = |t: u64| t as u128 * 1_000_000_000 / hz;
    let user = |host: u32, map: &str, db: &HashMap<u32, String>| match map_back(map, host) {
        Some(id) => db.get(&id).cloned().unwrap_or_else(|| id.to_string()),
        None => host.to_string(),
    };
    let rows: Vec<Vec<String>> = procs
        .iter()
        .map(|p| {
            let elapsed = now.saturating_sub(ticks_ns(p.start_ticks));
            cols.iter()
                .map(|(d, _)| match *d {
                    "args" => p.args.clone(),
                    "comm" => p.comm.clone(),
                    "etime" => go_duration(elapsed),
                    "group" => user(p.egid, &gid_map, &groups),
                    "hgroup" => p.egid.to_string(),
                    "hpid" => p.host_pid.to_string(),
                    "huser" => p.euid.to_string(),
                    "nice" => p.nice.to_string(),
                    "pcpu" => {
                        let cpu = ticks_ns(p.cpu_ticks) as f64;
                        let pct = if elapsed > 0 {
                            cpu * 100.0 / elapsed as f64
                        } else {
                            0.0
                        };
                        format!("{pct:.3}")
                    }
                    "pgid" => inside_pid.get(&p.pgid).copied().unwrap_or(0).to_string(),
                    "pid" => p.pid.to_string(),
                    "ppid" => inside_pid
                        .get(&p.host_ppid)
                        .copied()
                        .unwrap_or(0)
                        .to_string(),
                    "rgroup" => user(p.rgid, &gid_map, &groups),
                    "rss" => p.rss_kib.to_string(),
                    "ruser" => user(p.ruid, &uid_map, &users),
                    "state" => p.state.clone(),
                    "time" => go_duration(ticks_ns(p.cpu_ticks)),
                    "tty" => tty_name(p.tty_nr),
                    "user" => user(p.euid, &uid_map, &users),
                    "vsz" => p.vsz_kib.to_string(),
                    _ => String::new(),
                })
                .collect()
        })
        .collect();
    let header: Vec<&str> = cols.iter().map(|(_, h)| *h).collect();
    super::format::table(&header, &rows);
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_like_go() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(4_617_186_263), "4.617186263s");
        assert_eq!(go_duration(62_500_000_000), "1m2.5s");
        assert_eq!(go_duration(3_723_000_000_000), "1h2m3s");
        assert_eq!(go_duration(1_500_000), "1.5ms");
    }

    #[test]
    fn ids_map_back() {
        let m = "         0       1000          1\n         1     100000      65536\n";
        assert_eq!(map_back(m, 1000), Some(0));
        assert_eq!(map_back(m, 100999), Some(1000));
        assert_eq!(map_back(m, 5), None);
        assert_eq!(tty_name(0), "?");
        assert_eq!(tty_name((136 << 8) | 3), "pts/3");
    }
}
