//! volume create|ls|inspect|rm|prune: named volumes, as podman's `volume` commands.

use std::collections::BTreeMap;

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::filters::{label_matches, name_matches, parse_bool, Filters};
use super::format::rfc3339;
use super::template::{header_name, Format};
use super::{Ctx, Exit};
use crate::runtime::volumes::users;
use crate::storage::containers::State;
use crate::storage::volumes::VolumeRecord;
use crate::storage::{StorageError, Store};

#[derive(Debug, Args)]
pub struct VolumeArgs {
    #[command(subcommand)]
    pub command: VolumeCommand,
}

#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Create a new volume
    Create(CreateArgs),
    /// List volumes
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Display detailed information on one or more volumes
    Inspect(InspectArgs),
    /// Remove one or more volumes
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// Remove all volumes no container uses
    Prune(PruneArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Volume name (default: a random ID)
    pub name: Option<String>,
    /// Set metadata on the volume (KEY=VALUE or KEY)
    #[arg(short, long)]
    pub label: Vec<String>,
    /// Volume driver (only "local")
    #[arg(short, long, default_value = "local")]
    pub driver: String,
    /// Driver options (the local driver takes none)
    #[arg(short, long)]
    pub opt: Vec<String>,
    /// Do nothing if the volume already exists
    #[arg(long)]
    pub ignore: bool,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Print only volume names
    #[arg(short, long)]
    pub quiet: bool,
    /// Output format: json, a Go template ('{{.Name}}'), or 'table TEMPLATE'
    #[arg(long)]
    pub format: Option<String>,
    /// Filter output: name=, label=, driver=, dangling=
    #[arg(short, long, value_name = "KEY=VALUE")]
    pub filter: Vec<String>,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Inspect all volumes
    #[arg(short, long)]
    pub all: bool,
    /// Output format: json (the default) or a Go template ('{{.Mountpoint}}')
    #[arg(short, long)]
    pub format: Option<String>,
    #[arg(required_unless_present = "all")]
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Remove the containers that use the volume first
    #[arg(short, long)]
    pub force: bool,
    /// Remove all volumes
    #[arg(short, long)]
    pub all: bool,
    #[arg(required_unless_present = "all")]
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Do not ask for confirmation
    #[arg(short, long)]
    pub force: bool,
}

pub fn volume(ctx: &Ctx, a: VolumeArgs) -> anyhow::Result<i32> {
    match a.command {
        VolumeCommand::Create(a) => create(ctx, a),
        VolumeCommand::Ls(a) => ls(ctx, a),
        VolumeCommand::Inspect(a) => inspect(ctx, a),
        VolumeCommand::Rm(a) => rm(ctx, a),
        VolumeCommand::Prune(a) => prune(ctx, a),
    }
}

fn parse_labels(raw: &[String]) -> BTreeMap<String, String> {
    raw.iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (l.to_string(), String::new()),
        })
        .collect()
}

fn create(ctx: &Ctx, a: CreateArgs) -> anyhow::Result<i32> {
    if a.driver != "local" {
        return Err(Exit::with(
            125,
            format!(
                "volume driver {:?} is not available: skiff has the \"local\" driver",
                a.driver
            ),
        ));
    }
    if let Some(o) = a.opt.first() {
        return Err(Exit::with(
            125,
            format!("volume option {o:?} is not supported: skiff's local driver takes no options"),
        ));
    }
    if a.label.iter().any(|l| l.is_empty() || l.starts_with('=')) {
        return Err(Exit::with(125, "--label needs KEY or KEY=VALUE"));
    }
    let mut store = Store::open(&ctx.paths)?;
    let name = a.name.unwrap_or_else(crate::storage::random_id);
    let rec = VolumeRecord {
        name: name.clone(),
        created: crate::storage::now(),
        labels: parse_labels(&a.label),
        options: BTreeMap::new(),
        anonymous: false,
    };
    match store.create_volume(&rec) {
        Ok(()) => {}
        Err(StorageError::VolumeExists(_)) if a.ignore => {}
        Err(e) => return Err(Exit::with(125, e.to_string())),
    }
    println!("{name}");
    Ok(0)
}

/// `volume inspect` JSON for one volume (also used by `skiff inspect`).
pub fn inspect_one(store: &Store, name: &str) -> anyhow::Result<Value> {
    let v = store.volume(name)?;
    Ok(volume_json(store, &v))
}

fn volume_json(store: &Store, v: &VolumeRecord) -> Value {
    let mounted = store
        .containers()
        .unwrap_or_default()
        .iter()
        .filter(|c| matches!(c.state, State::Running | State::Paused))
        .filter(|c| crate::runtime::volumes::used_by(&c.config).contains(&v.name))
        .count();
    json!({
        "Name": v.name,
        "Driver": "local",
        "Mountpoint": store.volume_data(&v.name),
        "CreatedAt": rfc3339(v.created),
        "Labels": v.labels,
        "Scope": "local",
        "Options": v.options,
        "MountCount": mounted,
        "Anonymous": v.anonymous,
    })
}

fn ls(ctx: &Ctx, a: LsArgs) -> anyhow::Result<i32> {
    let filters = Filters::parse(
        &a.filter,
        &["name", "label", "driver", "dangling"],
        "volume",
    )?;
    for d in filters.get("dangling") {
        parse_bool("dangling", d)?;
    }
    let format =
        Format::parse("volume", a.format.as_deref()).map_err(|e| Exit::with(125, e.to_string()))?;
    let store = Store::open(&ctx.paths)?;
    let mut list = Vec::new();
    for v in store.volumes()? {
        let used = !users(&store, &v.name)?.is_empty();
        let keep = filters.matches(|k, val| match k {
            "name" => name_matches(val, &v.name),
            "label" => label_matches(&v.labels, val),
            "driver" => val == "local",
            "dangling" => parse_bool("dangling", val).is_ok_and(|d| d != used),
            _ => false,
        });
        if keep {
            list.push(v);
        }
    }
    if a.quiet {
        for v in &list {
            println!("{}", v.name);
        }
        return Ok(0);
    }
    let items: Vec<Value> = list.iter().map(|v| volume_json(&store, v)).collect();
    let format = match format {
        Format::Json => {
            println!("{}", serde_json::to_string_pretty(&items)?);
            return Ok(0);
        }
        Format::Default => Format::parse("volume", Some("table {{.Driver}}\\t{{.Name}}"))
            .map_err(|e| Exit::with(125, e.to_string()))?,
        t => t,
    };
    let header = |f: &str| match f {
        "Name" => "VOLUME NAME".to_string(),
        other => header_name(other),
    };
    let out = format
        .render(&items, &header)
        .map_err(|e| Exit::with(125, e.to_string()))?;
    print!("{out}");
    Ok(0)
}

fn inspect(ctx: &Ctx, a: InspectArgs) -> anyhow::Result<i32> {
    Format::parse("volume", a.format.as_deref()).map_err(|e| Exit::with(125, e.to_string()))?;
    let store = Store::open(&ctx.paths)?;
    let names: Vec<String> = if a.all {
        store.volumes()?.into_iter().map(|v| v.name).collect()
    } else {
        a.names.clone()
    };
    let mut out = Vec::new();
    for n in &names {
        match store.volume(n) {
            Ok(v) => out.push(volume_json(&store, &v)),
            Err(e) => return Err(Exit::with(125, e.to_string())),
        }
    }
    super::inspect::print_objects("volume", a.format.as_deref(), &out)?;
    Ok(0)
}

/// Removes a volume's files (inside the user namespace: they may belong to subordinate
/// IDs), then its record.
fn remove(ctx: &Ctx, store: &mut Store, name: &str) -> anyhow::Result<()> {
    let dir = store.volume_dir(name);
    if dir.exists() {
        crate::userns::remove_trees(&ctx.paths, std::slice::from_ref(&dir))?;
    }
    store.delete_volume(name)?;
    Ok(())
}

fn rm(ctx: &Ctx, a: RmArgs) -> anyhow::Result<i32> {
    let mut store = Store::open(&ctx.paths)?;
    let names: Vec<String> = if a.all {
        store.volumes()?.into_iter().map(|v| v.name).collect()
    } else {
        a.names.clone()
    };
    // Check everything first, so a bad name or a volume in use changes nothing.
    for n in &names {
        if let Err(e) = store.volume(n) {
            return Err(Exit::with(1, e.to_string()));
        }
        let used = users(&store, n)?;
        if !used.is_empty() && !a.force {
            return Err(Exit::with(
                2,
                format!(
                    "volume {n} is being used by the following container(s): {}: remove them first or use --force",
                    used.join(", ")
                ),
            ));
        }
    }
    for n in &names {
        let used = users(&store, n)?;
        if !used.is_empty() {
            // --force: the containers go first, as in podman.
            let status = std::process::Command::new("/proc/self/exe")
                .args(ctx.self_args())
                .args(["rm", "--force"])
                .args(&used)
                .stdout(std::process::Stdio::null())
                .status()?;
            if !status.success() {
                return Err(Exit::with(
                    125,
                    format!("removing the containers that use volume {n} failed"),
                ));
            }
        }
        remove(ctx, &mut store, n)?;
        println!("{n}");
    }
    Ok(0)
}

fn prune(ctx: &Ctx, a: PruneArgs) -> anyhow::Result<i32> {
    if !a.force && !super::confirm("WARNING! This will remove all volumes not used by at least one container. The following volumes will be removed:\nAre you sure you want to continue?") {
        return Ok(0);
    }
    let mut store = Store::open(&ctx.paths)?;
    for v in store.volumes()? {
        if users(&store, &v.name)?.is_empty() {
            remove(ctx, &mut store, &v.name)?;
            println!("{}", v.name);
        }
    }
    Ok(0)
}
