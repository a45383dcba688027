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
    tracing_subscriber::fmt()
        .with_max_level(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
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
