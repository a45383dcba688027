//! The per-container monitor (skiff's conmon): a re-exec of skiff that starts the
//! container, holds its stdio and log, serves attach clients, waits for it, records the
//! exit, applies the restart policy and cleans up `--rm` containers. It is single-threaded
//! (which is what lets it clone into new namespaces) and lets go of the database and the
//! CLI's descriptors while the container runs, so it stays small.

mod args;
pub mod client;
pub mod debuglog;
mod io;
pub mod logfile;
mod memory;
pub mod netplug;
pub mod proto;

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::config::Paths;
use crate::runtime::launch::{self, ContainerIo};
use crate::runtime::ContainerConfig;
use crate::storage::Store;
pub use args::{FastArgs, MonitorArgs};
use io::{Client, ContainerStreams, Io};

/// Start time of a process (clock ticks since boot), to tell a live monitor from a
/// recycled pid. None for a process that is gone or a zombie: a killed monitor whose
/// parent does not reap it still has a /proc entry.
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    if matches!(fields.next(), Some("Z" | "X" | "x")) {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// True when the recorded monitor still runs.
pub fn is_alive(pid: i32, start: u64) -> bool {
    start_time(pid) == Some(start)
}

/// Where a container's attach socket lives (kept short: socket paths are limited to
/// 108 bytes).
pub fn attach_socket(paths: &Paths, id: &str) -> PathBuf {
    paths.runroot.join("attach").join(&id[..id.len().min(32)])
}

/// A restart policy as `--restart` spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    No,
    Always,
    UnlessStopped,
    OnFailure(u32),
}

impl RestartPolicy {
    pub fn parse(s: Option<&str>) -> Result<RestartPolicy, String> {
        match s.unwrap_or("no") {
            "" | "no" => Ok(RestartPolicy::No),
            "always" => Ok(RestartPolicy::Always),
            "unless-stopped" => Ok(RestartPolicy::UnlessStopped),
            "on-failure" => Ok(RestartPolicy::OnFailure(0)),
            other => match other.strip_prefix("on-failure:").map(str::parse::<u32>) {
                Some(Ok(n)) => Ok(RestartPolicy::OnFailure(n)),
                _ => Err(format!(
                    "invalid restart policy {other:?}: use no, always, unless-stopped or on-failure[:MAX]"
                )),
            },
        }
    }

    fn should_restart(self, code: i32, restarts: i64, stopped: bool) -> bool {
        if stopped {
            return false;
        }
        match self {
            RestartPolicy::No => false,
            RestartPolicy::Always | RestartPolicy::UnlessStopped => true,
            RestartPolicy::OnFailure(max) => code != 0 && (max == 0 || restarts < max as i64),
        }
    }
}

/// Parses podman's size syntax (`10m`, `1g`, `512k`, bytes).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let s = s.strip_suffix('b').unwrap_or(&s);
    let (num, mult) = match s.chars().last()? {
        'k' => (&s[..s.len() - 1], 1u64 << 10),
        'm' => (&s[..s.len() - 1], 1 << 20),
        'g' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>().ok().map(|n| n * mult)
}

/// Runs the monitor; returns the exit code for this process.
pub fn main(paths: &Paths, args: &MonitorArgs) -> i32 {
    let sync = crate::userns::enter_from_parent().ok().flatten();
    let _ = nix::unistd::setsid();
    let mut reporter = Reporter { sync, client: None };
    match run(paths, args, &mut reporter) {
        Ok(code) => code,
        Err((code, msg)) => {
            reporter.error(code, &msg);
            code
        }
    }
}

/// Tells whoever started us how start-up went.
struct Reporter {
    sync: Option<UnixStream>,
    /// The foreground client (whose control channel is the sync socket).
    client: Option<usize>,
}

impl Reporter {
    fn error(&mut self, code: i32, msg: &str) {
        if let Some(mut s) = self.sync.take() {
            let _ = std::io::Write::write_all(&mut s, proto::error_line(code, msg).as_bytes());
        }
    }
}

fn block_signals() -> nix::Result<SignalFd> {
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGQUIT,
    ] {
        set.add(s);
    }
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)?;
    SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
}

fn dup_std(fd: i32) -> Option<OwnedFd> {
    // SAFETY: fd 0/1/2 are open in this process; F_DUPFD_CLOEXEC returns a new fd we own.
    let n = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    // SAFETY: n is a fresh descriptor owned by nobody else.
    (n >= 0).then(|| unsafe { std::os::fd::FromRawFd::from_raw_fd(n) })
}

/// Points our own stdio at /dev/null so the client's terminal is held only through the
/// client record, which a detach drops.
fn release_std() {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        for t in 0..3 {
            // SAFETY: dup2 onto our own standard descriptors.
            unsafe {
                libc::dup2(null.as_raw_fd(), t);
            }
        }
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd), (i32, String)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| (125, format!("pipe: {e}")))
}

fn run(paths: &Paths, args: &MonitorArgs, rep: &mut Reporter) -> Result<i32, (i32, String)> {
    let engine = |e: &dyn std::fmt::Display| (125, e.to_string());
    // Nothing the CLI had open may stay open in the monitor (or `$(skiff run -d)` hangs).
    if let Some(s) = &rep.sync {
        let keep = s.as_raw_fd();
        // SAFETY: close_range on descriptors this fresh process does not use.
        unsafe {
            if keep > 3 {
                libc::syscall(libc::SYS_close_range, 3u32, (keep - 1) as u32, 0u32);
            }
            libc::syscall(libc::SYS_close_range, (keep + 1) as u32, u32::MAX, 0u32);
        }
    }
    let sigfd = block_signals().map_err(|e| engine(&e))?;
    let mut store = Store::open(paths).map_err(|e| engine(&e))?;
    let rec = store.find_container(&args.id).map_err(|e| engine(&e))?;
    // Next to ctr.log: from here on (and through restarts by policy) our debug events
    // survive our stdio becoming /dev/null.
    debuglog::open(&paths.container_dir(&rec.id));
    let cfg: ContainerConfig = serde_json::from_str(&rec.config).map_err(|e| engine(&e))?;
    let o = &cfg.options;
    let bundle = paths.container_dir(&rec.id);
    let policy = RestartPolicy::parse(o.restart.as_deref()).map_err(|e| (125, e))?;
    // Published ports are bound before anything starts: a port in use or a privileged
    // one fails the start here, with nothing to undo.
    let ports = if cfg.ports.is_empty() {
        None
    } else {
        match crate::network::relay::Relay::bind(&cfg.ports) {
            Ok(r) => Some(r),
            Err(e) => {
                if o.rm {
                    let _ = cleanup(&mut store, &rec.id, None);
                }
                return Err((125, e.to_string()));
            }
        }
    };
    let driver = o.log_driver.as_deref().unwrap_or("k8s-file");
    let passthrough = driver == "passthrough";
    if passthrough && !args.attach {
        return Err((
            125,
            "the passthrough log driver needs an attached run, not -d".into(),
        ));
    }
    let max_size = o
        .log_opts
        .iter()
        .find_map(|kv| kv.strip_prefix("max-size="))
        .and_then(parse_size);
    let log = match driver {
        "k8s-file" | "" => Some(
            logfile::LogWriter::open(&bundle.join("ctr.log"), max_size)
                .map_err(|e| (125, format!("opening the log {}: {e}", bundle.display())))?,
        ),
        "none" | "passthrough" => None,
        other => {
            return Err((
                125,
                format!("unknown log driver {other:?}: use k8s-file, none or passthrough"),
            ))
        }
    };
    let sock_path = attach_socket(paths, &rec.id);
    if let Some(dir) = sock_path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let _ = std::fs::remove_file(&sock_path);
    let listener = UnixListener::bind(&sock_path).ok();
    let stop_signal = o
        .stop_signal
        .as_deref()
        .and_then(|s| crate::runtime::signal::parse(s).ok())
        .unwrap_or(Signal::SIGTERM);
    let mut io = Io {
        clients: Vec::new(),
        listener,
        log,
        sigfd,
        stop_signal,
        stop_timeout: Duration::from_secs(u64::from(o.stop_timeout.unwrap_or(10))),
        stop_requested: false,
        ports,
        net: Vec::new(),
        plug: None,
    };
    if args.attach {
        let fds: Vec<OwnedFd> = (0..3).filter_map(dup_std).collect();
        let hello = proto::Hello {
            stdin: args.stdin,
            detach_keys: hex::decode(&args.keys).unwrap_or_default(),
        };
        if let Some(ctl) = rep.sync.take() {
            if let Some(c) = Client::new(ctl, fds, &hello) {
                io.clients.push(c);
                rep.client = Some(0);
            }
        }
        if !passthrough {
            release_std();
        }
    }
    // The attached client's terminal size, else the classic 24x80.
    let size = args
        .size
        .split_once('x')
        .and_then(|(r, c)| Some((r.parse::<u16>().ok()?, c.parse::<u16>().ok()?)))
        .filter(|(r, c)| *r > 0 && *c > 0)
        .unwrap_or((24, 80));
    let mut first = true;
    let mut last_userns: Option<OwnedFd> = None;
    let notify_mode = o.sdnotify.as_deref().unwrap_or("conmon");
    let me = std::process::id() as i32;
    // The container sends READY itself: systemd must know the monitor as the service's
    // main process before the container can possibly be ready.
    if notify_mode == "container" {
        sd_notify(&format!("MAINPID={me}\n"));
    }
    let code = loop {
        // User-defined networks (read at every start: a restart sees a network
        // connected meanwhile): their addresses and gateways, resolv.conf naming them.
        let (members, member_err) =
            match crate::network::member::memberships(&store, &rec.id, o.network.as_deref()) {
                Ok(m) => (m, None),
                Err(e) => (Vec::new(), Some(e.to_string())),
            };
        if o.dns.is_empty() {
            crate::network::member::write_resolv(&bundle, &members);
        }
        let addrs: Vec<_> = members.iter().map(|m| m.addr).collect();
        let (mut streams, cio) = if o.tty {
            (
                ContainerStreams {
                    out: None,
                    err: None,
                    input: None,
                    tty: true,
                },
                ContainerIo::Tty(size.0, size.1),
            )
        } else if passthrough {
            (
                ContainerStreams {
                    out: None,
                    err: None,
                    input: None,
                    tty: false,
                },
                ContainerIo::Inherit,
            )
        } else {
            let (out_r, out_w) = pipe()?;
            let (err_r, err_w) = pipe()?;
            let (in_r, in_w) = if o.interactive {
                let (r, w) = pipe()?;
                (Some(r), Some(w))
            } else {
                (None, None)
            };
            (
                ContainerStreams {
                    out: Some(out_r),
                    err: Some(err_r),
                    input: in_w,
                    tty: false,
                },
                ContainerIo::Pipes {
                    stdin: in_r,
                    stdout: out_w,
                    stderr: err_w,
                },
            )
        };
        // container:/ns: namespaces are looked up at every start (a target that
        // restarted has new ones).
        let launched = match crate::runtime::networks::join_for(&store, &cfg).and_then(|join| {
            if let Some(message) = &member_err {
                return Err(crate::runtime::RuntimeError::Init {
                    code: 125,
                    message: message.clone(),
                });
            }
            launch::launch(&bundle, &cio, join.as_ref(), &addrs)
        }) {
            Ok(l) => l,
            Err(e) => {
                let code = e.exit_code();
                let _ = store.set_exited(&rec.id, code, crate::storage::now());
                if first {
                    if o.rm {
                        let _ = cleanup(&mut store, &rec.id, None);
                    }
                    let _ = std::fs::remove_file(&sock_path);
                    if let Some(i) = rep.client.take() {
                        io.clients[i].send(&proto::error_line(code, &e.to_string()));
                    }
                    return Err((code, e.to_string()));
                }
                break code;
            }
        };
        crate::runtime::cgroup::join_freezer(&rec.id, launched.pid.as_raw());
        let mut launched = launched;
        let taps = std::mem::take(&mut launched.taps);
        let served = serve_ports(&mut io, &launched).and_then(|()| {
            let mode = o.network.as_deref();
            netplug::start_networks(&mut io.net, taps, mode, &members, &rec.id)
        });
        if let Err(msg) = served {
            let _ = nix::sys::signal::kill(launched.pid, Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(launched.pid, None);
            let _ = store.set_exited(&rec.id, 125, crate::storage::now());
            if first {
                if o.rm {
                    let _ = cleanup(&mut store, &rec.id, launched.userns.as_ref());
                }
                let _ = std::fs::remove_file(&sock_path);
                if let Some(i) = rep.client.take() {
                    io.clients[i].send(&proto::error_line(125, &msg));
                }
                return Err((125, msg));
            }
            break 125;
        }
        drop(cio);
        if passthrough {
            release_std();
        }
        if let Some(m) = launched.pty_master {
            // One fd serves both directions of the terminal.
            streams.input = m.try_clone().ok();
            streams.out = Some(m);
        }
        let pid = launched.pid;
        let _ = store.set_running(&rec.id, me, start_time(me).unwrap_or(0), pid.as_raw());
        if first {
            first = false;
            // Before `run -d` learns the container runs: the CLI (systemd's ExecStart
            // process) must not exit before systemd has MAINPID and READY.
            if notify_mode == "conmon" {
                sd_notify(&format!("MAINPID={me}\nREADY=1\n"));
            }
            if let Some(mut s) = rep.sync.take() {
                let _ = std::io::Write::write_all(&mut s, proto::OK.as_bytes());
            }
            if let Some(i) = rep.client.take() {
                io.clients[i].send(proto::OK);
            }
        }
        io.plug = netplug::Plug::for_run(
            paths,
            &rec.id,
            o.network.as_deref(),
            launched.userns.as_ref(),
            launched.netns.as_ref(),
        );
        // While the container runs, hold as little memory as possible: the database
        // (and its page cache) is closed and reopened when the container exits.
        let closed = std::mem::replace(&mut store, Store::closed(paths));
        drop(closed);
        // SAFETY: malloc_trim only returns free heap pages to the kernel.
        unsafe {
            libc::malloc_trim(0);
        }
        memory::release_dead_stack();
        memory::release_file_pages();
        last_userns = launched.userns;
        let exit = io.run(pid, &mut streams);
        if let Some(p) = io.ports.as_mut() {
            p.detach();
        }
        // The network dies with the run: every host socket of it closes here.
        io.net.clear();
        io.plug = None;
        crate::runtime::cgroup::remove(&rec.id);
        tracing::debug!(id = %rec.id, code = exit.code, "container exited");
        store = match Store::open(paths) {
            Ok(s) => s,
            Err(_) => break exit.code,
        };
        let now = match store.find_container(&rec.id) {
            Ok(r) => r,
            Err(_) => break exit.code,
        };
        let stopped = io.stop_requested || now.stop_requested;
        if !policy.should_restart(exit.code, now.restarts, stopped) {
            break exit.code;
        }
        let _ = store.add_restart(&rec.id);
        let _ = store.set_exited(&rec.id, exit.code, crate::storage::now());
        let delay = 100u64 << now.restarts.clamp(0, 6);
        std::thread::sleep(Duration::from_millis(delay));
    };
    let _ = store.set_exited(&rec.id, code, crate::storage::now());
    if o.rm {
        if let Err(msg) = cleanup(&mut store, &rec.id, last_userns.as_ref()) {
            // podman logs this and keeps the container; the exit code stays the
            // container's. Attached clients see it on their stderr.
            let line = format!("ERROR removing container {}: {msg}\n", rec.id);
            for c in io.clients.iter_mut() {
                c.write_err(line.as_bytes());
            }
        }
    }
    let _ = std::fs::remove_file(&sock_path);
    for c in io.clients.iter_mut() {
        c.send(&proto::exit_line(code));
    }
    Ok(code)
}

/// Starts the connector for the published ports inside the container just launched.
fn serve_ports(io: &mut Io, launched: &launch::Launched) -> Result<(), String> {
    let Some(relay) = io.ports.as_mut() else {
        return Ok(());
    };
    let Some(netns) = &launched.netns else {
        return Err("published ports need the container's own network namespace".into());
    };
    let c = crate::network::connector::spawn(launched.userns.as_ref(), netns)
        .map_err(|e| e.to_string())?;
    relay.attach(c);
    Ok(())
}

/// Removes a container's files and record (`--rm`), unless other containers share its
/// namespaces: then it is kept, as podman keeps it, and the refusal is returned.
fn cleanup(store: &mut Store, id: &str, userns: Option<&OwnedFd>) -> Result<(), String> {
    crate::runtime::networks::check_no_dependents(store, id)?;
    let dir = store.paths.container_dir(id);
    // The container's own user namespace (kept open by fd) saves spawning newuidmap.
    if userns.is_some() || !store.paths.rootless {
        launch::remove_in_userns(userns, &dir);
    } else {
        let _ = crate::runtime::remove_container_dir(&store.paths, &dir);
    }
    let _ = store.delete_container(id);
    Ok(())
}

/// Sends an sd_notify message to systemd (when it started us, with NotifyAccess=all):
/// that the monitor is the service's main process and, with --sdnotify=conmon, that the
/// service is up, as conmon does.
fn sd_notify(msg: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sock = match std::os::unix::net::UnixDatagram::unbound() {
        Ok(s) => s,
        Err(_) => return,
    };
    let bytes = path.as_encoded_bytes();
    let res = if let Some(abstract_name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(abstract_name)
            .and_then(|a| sock.send_to_addr(msg.as_bytes(), &a))
    } else {
        sock.send_to(msg.as_bytes(), &path)
    };
    if let Err(e) = res {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}
