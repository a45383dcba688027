//! The per-container monitor (skiff's conmon): a re-exec of skiff that starts the
//! container, holds its stdio, waits for it, records the exit, and cleans up `--rm`
//! containers. It is single-threaded, which is what lets it clone into new namespaces.

use std::io::Write;
use std::sync::atomic::{AtomicI32, Ordering};

use nix::sys::signal::{self, SigHandler, Signal};

use crate::config::Paths;
use crate::runtime::{launch, ContainerConfig};
use crate::storage::Store;

/// Arguments of the hidden `__monitor` command.
#[derive(Debug, clap::Args)]
pub struct MonitorArgs {
    pub id: String,
    /// Report start-up over the sync socket and detach from the terminal.
    #[arg(long)]
    pub detach: bool,
}

static CHILD: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(sig: libc::c_int) {
    let pid = CHILD.load(Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// Start time of a process (clock ticks since boot), to tell a live monitor from a
/// recycled pid.
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

/// True when the recorded monitor still runs.
pub fn is_alive(pid: i32, start: u64) -> bool {
    start_time(pid) == Some(start)
}

/// Runs the monitor; returns the exit code for this process.
pub fn main(paths: &Paths, args: &MonitorArgs) -> i32 {
    let mut sync = if args.detach {
        let s = crate::userns::enter_from_parent().ok().flatten();
        let _ = nix::unistd::setsid();
        s
    } else {
        None
    };
    // Reporting closes the socket: the starting CLI reads to EOF, so it must see EOF as
    // soon as the container runs, not when it exits.
    let mut report = |msg: &str| {
        if let Some(mut s) = sync.take() {
            let _ = s.write_all(msg.as_bytes());
        }
    };
    let code = match run(paths, args, &mut report) {
        Ok(code) => code,
        Err((code, msg)) => {
            report(&format!("{code}\n{msg}"));
            if !args.detach {
                eprintln!("Error: {msg}");
            }
            code
        }
    };
    code
}

fn run(
    paths: &Paths,
    args: &MonitorArgs,
    report: &mut dyn FnMut(&str),
) -> Result<i32, (i32, String)> {
    let engine = |e: &dyn std::fmt::Display| (125, e.to_string());
    let mut store = Store::open(paths).map_err(|e| engine(&e))?;
    let rec = store.find_container(&args.id).map_err(|e| engine(&e))?;
    let cfg: ContainerConfig = serde_json::from_str(&rec.config).map_err(|e| engine(&e))?;
    let bundle = paths.container_dir(&rec.id);
    let launched = match launch::launch(&bundle, cfg.options.interactive && !args.detach) {
        Ok(l) => l,
        Err(e) => {
            let code = e.exit_code();
            let _ = store.set_exited(&rec.id, code, crate::storage::now());
            if cfg.options.rm {
                cleanup(&mut store, &rec.id, None);
            }
            return Err((code, e.to_string()));
        }
    };
    let pid = launched.pid.as_raw();
    CHILD.store(pid, Ordering::Relaxed);
    for s in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
    ] {
        // SAFETY: the handler only reads an atomic and calls kill, both signal-safe.
        unsafe {
            let _ = signal::signal(s, SigHandler::Handler(forward));
        }
    }
    let me = std::process::id() as i32;
    let _ = store.set_running(&rec.id, me, start_time(me).unwrap_or(0), pid);
    report("ok\n");
    let code = launch::wait(launched.pid);
    tracing::debug!(id = %rec.id, code, "container exited");
    let _ = store.set_exited(&rec.id, code, crate::storage::now());
    if cfg.options.rm {
        cleanup(&mut store, &rec.id, launched.userns.as_ref());
    }
    Ok(code)
}

/// Removes a container's files and record.
fn cleanup(store: &mut Store, id: &str, userns: Option<&std::os::fd::OwnedFd>) {
    let dir = store.paths.container_dir(id);
    if userns.is_some() || !store.paths.rootless {
        launch::remove_in_userns(userns, &dir);
    } else {
        let _ = crate::runtime::remove_container_dir(&store.paths, &dir);
    }
    let _ = store.delete_container(id);
}
