//! skiff: a rootless, daemonless container engine. This file parses arguments, sets up
//! logging, dispatches, and turns errors into podman's exit codes; nothing else.
//!
//! The engine is a library only so that the fuzz targets (fuzz/) can reach its parsers
//! through [`fuzzing`]; its modules stay private and `src/main.rs` just calls [`main`].

mod cli;
mod config;
mod doctor;
mod image;
mod monitor;
mod network;
mod rootfs;
mod runtime;
mod storage;
mod systemd;
mod userns;

pub mod fuzzing;

use clap::Parser;

/// The whole program: never returns.
pub fn main() -> ! {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if let Some(fast) = monitor::FastArgs::parse(&argv) {
        if matches!(fast.log_level.as_str(), "debug" | "trace") {
            // Plain text: the monitor's events end up in its monitor.log.
            init_logging(&fast.log_level, false);
        }
        let code = match config::Paths::resolve(Some(&fast.root), Some(&fast.runroot)) {
            Ok(paths) => monitor::main(&paths, &fast.args),
            Err(e) => {
                eprintln!("Error: {e}");
                125
            }
        };
        std::process::exit(code);
    }
    // Rust ignores SIGPIPE; for user-facing commands the Unix convention is right:
    // `skiff inspect x | head -1` ends quietly when head is done. Internal helpers
    // (`__...`) keep ignoring it and handle EPIPE themselves.
    if !argv.iter().any(|a| a.starts_with("__")) {
        // SAFETY: restoring the default disposition runs no code of ours in signal
        // context; no other thread exists yet.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    cli::complete_from_env();
    let args = match cli::Cli::try_parse_from(cli::normalize_bool_flags(generator_args())) {
        Ok(a) => a,
        Err(e) => std::process::exit(usage_error(&e)),
    };
    init_logging(&args.log_level, true);
    let code = match cli::dispatch(args) {
        Ok(code) => code,
        Err(e) => report(&e),
    };
    std::process::exit(code);
}

/// Installed as a systemd generator (a symlink named `*generator`), skiff is called
/// as `NAME normal-dir early-dir late-dir`: that is `skiff quadlet [--user] DIRS`.
fn generator_args() -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let name = args
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if name.ends_with("generator") {
        let mut v: Vec<std::ffi::OsString> = vec!["skiff".into(), "quadlet".into()];
        if name.contains("user") {
            v.push("--user".into());
        }
        v.extend(args.drain(1..));
        return v;
    }
    args
}

/// Set in a container's init once its stderr belongs to the container: from then on the
/// engine's log lines must not end up in the container's output.
pub static LOG_SILENCED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn log_writer() -> Box<dyn std::io::Write> {
    if LOG_SILENCED.load(std::sync::atomic::Ordering::Relaxed) {
        Box::new(std::io::sink())
    } else if let Some(w) = monitor::debuglog::writer() {
        Box::new(w)
    } else {
        Box::new(std::io::stderr())
    }
}

/// Debug and trace lines carry the wall-clock time to the microsecond, so the phases
/// of a run across CLI, monitor and init line up; other levels carry none.
struct DebugClock(bool);

impl tracing_subscriber::fmt::time::FormatTime for DebugClock {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        if self.0 {
            write!(w, "{}", chrono::Utc::now().format("%H:%M:%S%.6f"))
        } else {
            Ok(())
        }
    }
}

/// `colour`: ANSI colours when stderr is a terminal (not for the monitor, whose
/// events go to a file).
fn init_logging(level: &str, colour: bool) {
    let filter = match level {
        "error" | "fatal" | "panic" => tracing::Level::ERROR,
        "info" => tracing::Level::INFO,
        "debug" => tracing::Level::DEBUG,
        "trace" => tracing::Level::TRACE,
        _ => tracing::Level::WARN,
    };
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    // skiff's own events at the chosen level; the HTTP stack's only from trace on, so
    // `--log-level debug` reads as a list of skiff's kernel calls and requests.
    let others = if filter == tracing::Level::TRACE {
        tracing::Level::DEBUG
    } else {
        tracing::Level::WARN.min(filter)
    };
    let targets = tracing_subscriber::filter::Targets::new()
        .with_target("skiff", filter)
        .with_default(others);
    let ansi = colour && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(log_writer)
        .with_target(false)
        .with_ansi(ansi)
        .with_timer(DebugClock(filter >= tracing::Level::DEBUG));
    tracing_subscriber::registry()
        .with(fmt)
        .with(targets)
        .init();
}

/// Prints an error podman-style (`Error: ...`, one line) and returns the exit code.
fn report(e: &anyhow::Error) -> i32 {
    if let Some(x) = e.downcast_ref::<cli::Exit>() {
        if let Some(m) = &x.message {
            eprintln!("Error: {m}");
        }
        return x.code;
    }
    let code = e
        .downcast_ref::<runtime::RuntimeError>()
        .map(|r| r.exit_code())
        .unwrap_or(125);
    // Module errors already name their cause, so only the outermost message is printed.
    eprintln!("Error: {e}");
    code
}

/// What to tell a docker user who calls a command skiff does not have.
fn missing_command(cmd: &str) -> Option<String> {
    match cmd {
        "build" | "buildx" | "builder" => Some(format!(
            "skiff cannot build images (`{cmd}` is not implemented): build with \
             `podman build` or `buildah bud`, then `podman save IMAGE | skiff load` \
             or push it to a registry and `skiff pull` it"
        )),
        "stats" => Some(
            if !runtime::cgroup::unified() && !nix::unistd::geteuid().is_root() {
                "stats is not supported in rootless mode without cgroups v2: \
                 this host has cgroup v1, where a rootless container gets no cgroup of its own"
            } else {
                "skiff has no `stats` command yet: use `skiff top CONTAINER` for its processes"
            }
            .to_string(),
        ),
        _ => None,
    }
}

/// Prints a command-line error the way podman does (`Error: unknown flag: --x`, one line
/// plus a hint) and returns 125; help and version go to stdout with 0.
fn usage_error(e: &clap::Error) -> i32 {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            return if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                125
            } else {
                0
            };
        }
        _ => {}
    }
    let ctx = |k: ContextKind| match e.get(k) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        Some(ContextValue::Strings(v)) => v.first().cloned(),
        _ => None,
    };
    let msg = match e.kind() {
        ErrorKind::UnknownArgument => {
            format!(
                "unknown flag: {}",
                ctx(ContextKind::InvalidArg).unwrap_or_default()
            )
        }
        ErrorKind::InvalidSubcommand => {
            let cmd = ctx(ContextKind::InvalidSubcommand).unwrap_or_default();
            // Scripts written for docker call these: say what to do instead of only
            // "unrecognized" (no hint line: the one-line error is the whole answer).
            if let Some(msg) = missing_command(&cmd) {
                eprintln!("Error: {msg}");
                return 125;
            }
            format!("unrecognized command `skiff {cmd}`")
        }
        ErrorKind::MissingRequiredArgument => {
            let missing = match e.get(ContextKind::InvalidArg) {
                Some(ContextValue::Strings(v)) => v.join(", "),
                _ => String::new(),
            };
            format!("missing required argument {missing}")
        }
        _ => {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            first.trim_start_matches("error: ").to_string()
        }
    };
    eprintln!("Error: {msg}: see 'skiff --help'");
    125
}
