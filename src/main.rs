//! skiff: a rootless, daemonless container engine. This file parses arguments, sets up
//! logging, dispatches, and turns errors into podman's exit codes; nothing else.

mod cli;
mod config;
mod image;
mod monitor;
mod rootfs;
mod runtime;
mod storage;
mod userns;

use clap::Parser;

fn main() {
    let args = match cli::Cli::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let code = match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => 0,
                _ => 125,
            };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    init_logging(&args.log_level);
    let code = match cli::dispatch(args) {
        Ok(code) => code,
        Err(e) => report(&e),
    };
    std::process::exit(code);
}

fn init_logging(level: &str) {
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
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
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
