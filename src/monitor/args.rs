//! The monitor's command line: clap's definition for the hidden `__monitor` command,
//! and the allocation-light parser used when skiff itself wrote the line.

use std::path::PathBuf;

/// Arguments of the hidden `__monitor` command.
#[derive(Debug, clap::Args)]
pub struct MonitorArgs {
    pub id: String,
    /// Started by `run -d`/`start`: report start-up on the sync socket, then let go.
    #[arg(long)]
    pub detach: bool,
    /// Started by a foreground `run`/`start -a`: our stdio is the client's terminal and
    /// the sync socket is its control channel.
    #[arg(long)]
    pub attach: bool,
    /// Forward the attached client's stdin.
    #[arg(long)]
    pub stdin: bool,
    /// Detach key sequence, hex-encoded bytes (empty: none).
    #[arg(long, default_value = "")]
    pub keys: String,
    /// The client's terminal size as ROWSxCOLS, for a container with a terminal.
    #[arg(long, default_value = "")]
    pub size: String,
}

/// A monitor's command line as skiff itself writes it, parsed without clap: the monitor
/// stays resident for the container's whole life, and clap's command tree and the log
/// subscriber would leave a few hundred kB of heap behind in every one of them.
pub struct FastArgs {
    pub root: PathBuf,
    pub runroot: PathBuf,
    pub log_level: String,
    pub args: MonitorArgs,
}

impl FastArgs {
    /// Recognises `--root R --runroot RR --log-level L __monitor ID [--detach|--attach|
    /// --stdin|--keys HEX]...`; anything else goes through the normal parser.
    pub fn parse(argv: &[String]) -> Option<FastArgs> {
        let [root_flag, root, runroot_flag, runroot, level_flag, level, cmd, id, rest @ ..] = argv
        else {
            return None;
        };
        if root_flag != "--root"
            || runroot_flag != "--runroot"
            || level_flag != "--log-level"
            || cmd != "__monitor"
        {
            return None;
        }
        let mut args = MonitorArgs {
            id: id.clone(),
            detach: false,
            attach: false,
            stdin: false,
            keys: String::new(),
            size: String::new(),
        };
        let mut it = rest.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--detach" => args.detach = true,
                "--attach" => args.attach = true,
                "--stdin" => args.stdin = true,
                "--keys" => args.keys = it.next()?.clone(),
                "--size" => args.size = it.next()?.clone(),
                _ => return None,
            }
        }
        Some(FastArgs {
            root: PathBuf::from(root),
            runroot: PathBuf::from(runroot),
            log_level: level.clone(),
            args,
        })
    }
}
