//! quadlet, generate systemd.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{Ctx, Exit};
use crate::runtime::ContainerConfig;
use crate::storage::Store;
use crate::systemd::{generate, quadlet};

#[derive(Debug, Args)]
pub struct QuadletArgs {
    /// Generate user services: read ~/.config/containers/systemd/ (the default when not
    /// run as root)
    #[arg(long)]
    pub user: bool,
    /// Print the services on stdout instead of writing them
    #[arg(long, visible_alias = "dry-run")]
    pub dryrun: bool,
    /// Where to write the services: systemd passes the generator's normal, early and
    /// late directories; the services go to the first
    #[arg(value_name = "OUTPUT_DIR")]
    pub dirs: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    #[command(subcommand)]
    pub command: GenerateCommand,
}

#[derive(Debug, Subcommand)]
pub enum GenerateCommand {
    /// Generate a systemd unit file for a container
    Systemd(GenerateSystemdArgs),
}

#[derive(Debug, Args)]
pub struct GenerateSystemdArgs {
    /// Create a new container on every start (from the recorded flags) instead of
    /// starting the existing one
    #[arg(long)]
    pub new: bool,
    /// Name the unit after the container's name instead of its ID
    #[arg(short, long)]
    pub name: bool,
    /// systemd restart policy (default: on-failure, or always for a container created
    /// with --restart always or unless-stopped)
    #[arg(long, value_name = "POLICY", value_parser = generate::RESTART_POLICIES.to_vec())]
    pub restart_policy: Option<String>,
    /// Write the unit to ./<unit>.service and print its path, instead of printing it
    #[arg(short, long)]
    pub files: bool,
    /// Prefix of the unit name
    #[arg(long, default_value = "container", value_name = "PREFIX")]
    pub container_prefix: String,
    /// Separator between the prefix and the name
    #[arg(long, default_value = "-", value_name = "SEP")]
    pub separator: String,
    /// Seconds the stop command waits before killing
    #[arg(
        short = 't',
        long = "time",
        default_value_t = 10,
        value_name = "SECONDS"
    )]
    pub time: u32,
    /// Leave out the header comment
    #[arg(long)]
    pub no_header: bool,
    /// The container (name or ID)
    pub container: String,
}

fn skiff_exe() -> anyhow::Result<PathBuf> {
    std::env::current_exe()
        .map_err(|e| Exit::with(125, format!("cannot find the skiff binary's path: {e}")))
}

/// True once `run` accepts `--publish` (the network stack is not built yet).
pub fn quadlet_cmd(ctx: &Ctx, a: QuadletArgs) -> anyhow::Result<i32> {
    let user = a.user || ctx.paths.rootless;
    if !a.dryrun && a.dirs.is_empty() {
        return Err(Exit::with(
            125,
            "missing output directory: give the directory to write services to (systemd passes it to a generator), or --dryrun",
        ));
    }
    let opts = quadlet::Options {
        user,
        skiff: skiff_exe()?,
    };
    let dirs = quadlet::unit_dirs(user, ctx.paths.uid);
    let mut errors = Vec::new();
    for file in quadlet::find_units(&dirs) {
        match quadlet::convert_file(&file, &opts) {
            Ok(g) if a.dryrun => print!("---{}---\n{}\n", g.service, g.text),
            Ok(g) => {
                if let Err(e) = quadlet::write(&a.dirs[0], &g) {
                    errors.push(e.to_string());
                }
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    // Each broken file is reported; the others are still generated.
    match errors.split_last() {
        None => Ok(0),
        Some((last, rest)) => {
            for e in rest {
                eprintln!("Error: {e}");
            }
            Err(Exit::with(125, last.clone()))
        }
    }
}

/// The global flags a unit needs to reach the same store, when they are not defaults.
fn global_args(ctx: &Ctx) -> Vec<String> {
    let (root, runroot) = if ctx.paths.rootless {
        (
            crate::config::data_home().ok().map(|d| d.join("skiff")),
            crate::config::runtime_dir(ctx.paths.uid)
                .ok()
                .map(|d| d.join("skiff")),
        )
    } else {
        (
            Some(PathBuf::from("/var/lib/skiff")),
            Some(PathBuf::from("/run/skiff")),
        )
    };
    let mut v = Vec::new();
    if root.as_ref() != Some(&ctx.paths.root) {
        v.extend([
            "--root".into(),
            ctx.paths.root.to_string_lossy().into_owned(),
        ]);
    }
    if runroot.as_ref() != Some(&ctx.paths.runroot) {
        v.extend([
            "--runroot".into(),
            ctx.paths.runroot.to_string_lossy().into_owned(),
        ]);
    }
    v
}

pub fn generate_cmd(ctx: &Ctx, a: GenerateArgs) -> anyhow::Result<i32> {
    let GenerateCommand::Systemd(a) = a.command;
    let store = Store::open(&ctx.paths)?;
    let rec = store.find_container(&a.container)?;
    let cfg: ContainerConfig = serde_json::from_str(&rec.config).map_err(|e| {
        Exit::with(
            125,
            format!(
                "container {} has an unreadable configuration: {e}",
                rec.name
            ),
        )
    })?;
    let mut skiff = vec![skiff_exe()?.to_string_lossy().into_owned()];
    skiff.extend(global_args(ctx));
    let req = generate::Request {
        id: &rec.id,
        name: &rec.name,
        image: &rec.image_name,
        options: &cfg.options,
        new: a.new,
        use_name: a.name,
        restart_policy: a.restart_policy.as_deref(),
        stop_timeout: a.time,
        prefix: &a.container_prefix,
        separator: &a.separator,
        header: !a.no_header,
        skiff,
    };
    let text = generate::render(&req);
    if !a.files {
        print!("{text}");
        return Ok(0);
    }
    let file = std::env::current_dir()
        .map_err(|e| Exit::with(125, format!("cannot find the current directory: {e}")))?
        .join(generate::unit_name(&req));
    std::fs::write(&file, text)
        .map_err(|e| Exit::with(125, format!("cannot write {}: {e}", file.display())))?;
    println!("{}", file.display());
    Ok(0)
}
