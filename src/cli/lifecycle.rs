//! stop, kill, wait, restart, attach, logs.

use std::io::Write;
use std::time::{Duration, Instant};

use clap::Args;
use nix::sys::signal::Signal;

use super::container::{refresh, start_detached};
use super::{Ctx, Exit};
use crate::monitor::{client, logfile, proto};
use crate::runtime::ContainerConfig;
use crate::storage::containers::{ContainerRecord, State};
use crate::storage::Store;

#[derive(Debug, Args)]
pub struct StopArgs {
    /// Seconds to wait for the stop signal to work before killing (default: the
    /// container's --stop-timeout, else 10)
    #[arg(
        short = 't',
        long = "time",
        value_name = "SECONDS",
        allow_negative_numbers = true
    )]
    pub time: Option<u32>,
    /// Stop all running containers
    #[arg(short, long)]
    pub all: bool,
    /// Read the container ID from this file (written by `run --cidfile`)
    #[arg(long, value_name = "FILE")]
    pub cidfile: Vec<std::path::PathBuf>,
    /// Ignore containers (and --cidfile files) that do not exist
    #[arg(short, long)]
    pub ignore: bool,
    #[arg(required_unless_present_any = ["all", "cidfile"])]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct KillArgs {
    /// Signal to send (name or number)
    #[arg(short, long, default_value = "KILL")]
    pub signal: String,
    /// Signal all running containers
    #[arg(short, long)]
    pub all: bool,
    #[arg(required_unless_present = "all")]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct WaitArgs {
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RestartArgs {
    /// Seconds to wait before killing (default: the container's --stop-timeout, else 10)
    #[arg(
        short = 't',
        long = "time",
        value_name = "SECONDS",
        allow_negative_numbers = true
    )]
    pub time: Option<u32>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct AttachArgs {
    /// Key sequence for detaching (default ctrl-p,ctrl-q)
    #[arg(long, value_name = "KEYS")]
    pub detach_keys: Option<String>,
    /// Do not attach stdin
    #[arg(long)]
    pub no_stdin: bool,
    /// Proxy received signals to the container
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub sig_proxy: Option<bool>,
    pub container: String,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Follow the output
    #[arg(short, long)]
    pub follow: bool,
    /// Show timestamps
    #[arg(short, long)]
    pub timestamps: bool,
    /// Only the last N lines
    #[arg(long, value_name = "N")]
    pub tail: Option<i64>,
    /// Only logs since this time (RFC 3339, unix seconds, or a duration like 10m)
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only logs before this time (same formats as --since)
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

fn config(c: &ContainerRecord) -> ContainerConfig {
    serde_json::from_str(&c.config).unwrap_or(ContainerConfig {
        options: Default::default(),
        rootless: true,
        labels: Default::default(),
        annotations: Default::default(),
        ports: Default::default(),
    })
}

/// The signal `stop` sends: --stop-signal, else the image's StopSignal, else SIGTERM.
fn stop_signal(ctx: &Ctx, store: &Store, c: &ContainerRecord) -> Signal {
    if let Some(s) = config(c).options.stop_signal {
        if let Ok(sig) = crate::runtime::signal::parse(&s) {
            return sig;
        }
    }
    let image_sig = store
        .read_blob(&format!("sha256:{}", c.image_id))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| {
            v.pointer("/config/StopSignal")
                .and_then(|s| s.as_str().map(String::from))
        });
    let _ = ctx;
    image_sig
        .and_then(|s| crate::runtime::signal::parse(&s).ok())
        .unwrap_or(Signal::SIGTERM)
}

/// Polls until the container is no longer running, up to `timeout`.
fn wait_stopped(store: &mut Store, id: &str, timeout: Duration) -> anyhow::Result<bool> {
    let end = Instant::now() + timeout;
    loop {
        let c = store.find_container(id)?;
        let c = refresh(store, c)?;
        if !matches!(c.state, State::Running | State::Paused) {
            return Ok(true);
        }
        if Instant::now() >= end {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Frozen tasks act on no signal until thawed, so stop and kill thaw a paused container.
fn thaw(store: &mut Store, c: &ContainerRecord) -> anyhow::Result<()> {
    if c.state == State::Paused {
        if let Some(pid) = c.pid {
            crate::runtime::cgroup::set_frozen(&c.id, &c.name, pid, false)?;
            store.set_paused(&c.id, false)?;
        }
    }
    Ok(())
}

fn signal_container(c: &ContainerRecord, sig: Signal) -> anyhow::Result<()> {
    let Some(pid) = c.pid else {
        return Ok(());
    };
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(e) => Err(Exit::with(
            125,
            format!("sending {sig} to container {}: {e}", c.name),
        )),
    }
}

/// Stops one container: stop signal, then SIGKILL after the timeout.
pub(super) fn stop_one(
    ctx: &Ctx,
    store: &mut Store,
    c: &ContainerRecord,
    time: Option<u32>,
) -> anyhow::Result<()> {
    if !matches!(c.state, State::Running | State::Paused) {
        return Ok(());
    }
    store.set_stop_requested(&c.id, true)?;
    thaw(store, c)?;
    let timeout = time.or(config(c).options.stop_timeout).unwrap_or(10);
    let sig = stop_signal(ctx, store, c);
    tracing::debug!(container = %c.name, %sig, timeout, "stop");
    signal_container(c, sig)?;
    if !wait_stopped(store, &c.id, Duration::from_secs(u64::from(timeout)))? {
        signal_container(c, Signal::SIGKILL)?;
        if !wait_stopped(store, &c.id, Duration::from_secs(10))? {
            return Err(Exit::with(
                125,
                format!("container {} did not stop after SIGKILL", c.name),
            ));
        }
    }
    Ok(())
}

fn targets(
    store: &mut Store,
    all: bool,
    names: &[String],
) -> anyhow::Result<Vec<Result<ContainerRecord, String>>> {
    if all {
        let mut v = Vec::new();
        for c in store.containers()? {
            let c = refresh(store, c)?;
            if c.state == State::Running {
                v.push(Ok(c));
            }
        }
        return Ok(v);
    }
    let mut v = Vec::new();
    for n in names {
        v.push(match store.find_container(n) {
            Ok(c) => Ok(refresh(store, c)?),
            Err(e) => Err(e.to_string()),
        });
    }
    Ok(v)
}

pub fn stop(ctx: &Ctx, a: StopArgs) -> anyhow::Result<i32> {
    let names = super::cidfile::targets(&a.containers, &a.cidfile, a.ignore)?;
    let mut store = Store::open(&ctx.paths)?;
    let mut code = 0;
    for (i, t) in targets(&mut store, a.all, &names)?.into_iter().enumerate() {
        match t {
            Ok(c) => {
                stop_one(ctx, &mut store, &c, a.time)?;
                println!("{}", names.get(i).cloned().unwrap_or(c.id));
            }
            Err(_) if a.ignore => {}
            Err(e) => {
                eprintln!("Error: {e}");
                code = 125;
            }
        }
    }
    Ok(code)
}

pub fn kill(ctx: &Ctx, a: KillArgs) -> anyhow::Result<i32> {
    let sig = crate::runtime::signal::parse(&a.signal).map_err(|e| Exit::with(125, e))?;
    let mut store = Store::open(&ctx.paths)?;
    let mut code = 0;
    for (i, t) in targets(&mut store, a.all, &a.containers)?
        .into_iter()
        .enumerate()
    {
        match t {
            Ok(c) if matches!(c.state, State::Running | State::Paused) => {
                if matches!(sig, Signal::SIGKILL | Signal::SIGTERM | Signal::SIGINT) {
                    store.set_stop_requested(&c.id, true)?;
                    thaw(&mut store, &c)?;
                }
                signal_container(&c, sig)?;
                println!("{}", a.containers.get(i).cloned().unwrap_or(c.id));
            }
            Ok(c) => {
                eprintln!(
                    "Error: can only kill running containers. {} is in state {}: container state improper",
                    c.id,
                    c.state.as_str()
                );
                code = 125;
            }
            Err(e) => {
                eprintln!("Error: {e}");
                code = 125;
            }
        }
    }
    Ok(code)
}

pub fn wait(ctx: &Ctx, a: WaitArgs) -> anyhow::Result<i32> {
    let mut store = Store::open(&ctx.paths)?;
    let mut code = 0;
    for n in &a.containers {
        let c = match store.find_container(n) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("Error: {e}");
                code = 125;
                continue;
            }
        };
        loop {
            let now = match store.find_container(&c.id) {
                Ok(r) => refresh(&mut store, r)?,
                // Removed while we waited (--rm): podman reports the last known code.
                Err(_) => {
                    println!("0");
                    break;
                }
            };
            if now.state == State::Exited {
                println!("{}", now.exit_code.unwrap_or(0));
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(code)
}

pub fn restart(ctx: &Ctx, a: RestartArgs) -> anyhow::Result<i32> {
    let mut store = Store::open(&ctx.paths)?;
    let mut code = 0;
    for n in &a.containers {
        let c = match store.find_container(n) {
            Ok(c) => refresh(&mut store, c)?,
            Err(e) => {
                eprintln!("Error: {e}");
                code = 125;
                continue;
            }
        };
        stop_one(ctx, &mut store, &c, a.time)?;
        // Wait for the old monitor to be gone before starting a new one.
        if let (Some(p), Some(s)) = (c.monitor_pid, c.monitor_start) {
            let end = Instant::now() + Duration::from_secs(10);
            while crate::monitor::is_alive(p, s) && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let c = store.find_container(&c.id)?;
        start_detached(ctx, &c)?;
        println!("{n}");
    }
    Ok(code)
}

pub fn attach(ctx: &Ctx, a: AttachArgs) -> anyhow::Result<i32> {
    let mut store = Store::open(&ctx.paths)?;
    let c = store.find_container(&a.container)?;
    let c = refresh(&mut store, c)?;
    if c.state != State::Running {
        return Err(Exit::with(
            125,
            format!(
                "you can only attach to running containers: container {} is {}",
                c.name,
                c.state.as_str()
            ),
        ));
    }
    let o = config(&c).options;
    let keys_spec = a
        .detach_keys
        .or(o.detach_keys.clone())
        .unwrap_or_else(|| "ctrl-p,ctrl-q".into());
    let keys = proto::parse_detach_keys(&keys_spec).map_err(|e| Exit::with(125, e))?;
    let hello = proto::Hello {
        stdin: o.interactive && !a.no_stdin,
        detach_keys: keys,
    };
    drop(store);
    let ctl = client::connect(&ctx.paths, &c.id, &c.name, &hello)
        .map_err(|e| Exit::with(e.exit_code(), e.to_string()))?;
    let session = client::Session {
        tty: o.tty,
        sig_proxy: a.sig_proxy.unwrap_or(true) && !o.tty,
        name: c.name.clone(),
    };
    match client::wait(ctl, &session) {
        Ok(outcome) => Ok(client::finish(&outcome)),
        Err(e) => Err(Exit::with(e.exit_code(), e.to_string())),
    }
}

/// Parses --since/--until as podman and docker do: RFC 3339, a date and time without
/// a zone (local time: `2024-01-02`, `2024-01-02T15:04:05`), unix seconds, or a Go
/// duration back from now (`10m`, `1h30m`, `1.5h`).
fn parse_time_arg(s: &str) -> Result<i64, String> {
    let bad = || format!("invalid time {s:?}: use RFC 3339, unix seconds or a duration like 10m");
    if let Ok(d) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(d.timestamp_nanos_opt().unwrap_or(0));
    }
    if let Ok(secs) = s.parse::<f64>() {
        return Ok((secs * 1e9) as i64);
    }
    if let Some(t) = local_time(s) {
        return Ok(t);
    }
    let secs = go_duration(s).ok_or_else(bad)?;
    Ok(chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0) - (secs * 1e9) as i64)
}

/// A date, or date and time, with no zone, in local time (podman's ParseInputTime).
fn local_time(s: &str) -> Option<i64> {
    use chrono::{NaiveDate, NaiveDateTime, TimeZone};
    let naive = ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
        .or_else(|| NaiveDateTime::parse_from_str(&format!("{s}:00"), "%Y-%m-%dT%H:%M").ok())
        .or_else(|| {
            NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        })?;
    chrono::Local
        .from_local_datetime(&naive)
        .earliest()
        .and_then(|t| t.timestamp_nanos_opt())
}

/// Seconds in a Go duration: one or more `<number><unit>`, units h m s ms us µs ns.
fn go_duration(s: &str) -> Option<f64> {
    let mut rest = s;
    let mut total = 0.0;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .filter(|&n| n > 0)?;
        let value: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..u] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += value * scale;
        rest = &rest[u..];
    }
    (!s.is_empty()).then_some(total)
}

/// A log record's time as podman prints it (Go's RFC3339Nano: trailing zeros of the
/// fraction dropped, `Z` for UTC); the file keeps conmon's `+00:00` form.
fn go_rfc3339_nano(ts: &str) -> String {
    let Ok(t) = chrono::DateTime::parse_from_rfc3339(ts) else {
        return ts.to_string();
    };
    let mut out = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    let frac = format!("{:09}", t.timestamp_subsec_nanos());
    let frac = frac.trim_end_matches('0');
    if !frac.is_empty() {
        out.push('.');
        out.push_str(frac);
    }
    if t.offset().local_minus_utc() == 0 {
        out.push('Z');
    } else {
        out.push_str(&t.format("%:z").to_string());
    }
    out
}

fn print_lines(
    lines: &[logfile::LogLine],
    timestamps: bool,
    since: Option<i64>,
    until: Option<i64>,
) {
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    for l in lines {
        if since.is_some_and(|s| l.unix_nanos < s) || until.is_some_and(|u| l.unix_nanos > u) {
            continue;
        }
        let w: &mut dyn Write = match l.stream {
            logfile::Stream::Stdout => &mut out,
            logfile::Stream::Stderr => &mut err,
        };
        if timestamps {
            let _ = write!(w, "{} ", go_rfc3339_nano(&l.time));
        }
        let _ = w.write_all(&l.text);
        if l.complete {
            let _ = w.write_all(b"\n");
        }
    }
    let _ = out.flush();
}

pub fn logs(ctx: &Ctx, a: LogsArgs) -> anyhow::Result<i32> {
    let since = a
        .since
        .as_deref()
        .map(parse_time_arg)
        .transpose()
        .map_err(|e| Exit::with(125, e))?;
    let until = a
        .until
        .as_deref()
        .map(parse_time_arg)
        .transpose()
        .map_err(|e| Exit::with(125, e))?;
    let mut store = Store::open(&ctx.paths)?;
    for n in &a.containers {
        let c = store.find_container(n)?;
        let path = ctx.paths.container_dir(&c.id).join("ctr.log");
        let (mut lines, mut offset) = match logfile::read_lines(&path, 0) {
            Ok(v) => v,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Vec::new(), 0),
            Err(e) => {
                return Err(Exit::with(
                    125,
                    format!("reading the log of {}: {e}", c.name),
                ))
            }
        };
        if let Some(t) = a.tail {
            if t >= 0 && (t as usize) < lines.len() {
                lines.drain(..lines.len() - t as usize);
            }
        }
        print_lines(&lines, a.timestamps, since, until);
        if !a.follow || a.containers.len() > 1 {
            continue;
        }
        loop {
            let running = store
                .find_container(&c.id)
                .ok()
                .map(|r| refresh(&mut store, r))
                .transpose()?
                .is_some_and(|r| matches!(r.state, State::Running | State::Paused));
            if let Ok((more, off)) = logfile::read_lines(&path, offset) {
                print_lines(&more, a.timestamps, since, until);
                offset = off;
            }
            if !running {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(0)
}

#[cfg(test)]
mod go_time_tests {
    #[test]
    fn timestamps_print_as_go_rfc3339_nano() {
        let f = super::go_rfc3339_nano;
        assert_eq!(
            f("2026-11-28T04:00:00.120000000+00:00"),
            "2026-11-28T04:00:00.12Z"
        );
        assert_eq!(
            f("2026-11-28T04:00:00.000000000+00:00"),
            "2026-11-28T04:00:00Z"
        );
        assert_eq!(
            f("2026-11-28T05:00:00.000000001+01:00"),
            "2026-11-28T05:00:00.000000001+01:00"
        );
        assert_eq!(f("garbage"), "garbage");
    }
}
