//! system df, system prune, system reset, system check: the store as a whole.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use super::container::refresh;
use super::format::{human_size, table};
use super::{Ctx, Exit};
use crate::image::pull::mapping_key;
use crate::storage::check::Problem;
use crate::storage::containers::State;
use crate::storage::lock::FileLock;
use crate::storage::Store;

/// `system` subcommands about the store (the group may hold others too).
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Show skiff's disk usage
    Df(DfArgs),
    /// Remove unused data: stopped containers, dangling (or all unused) images
    Prune(SystemPruneArgs),
    /// Remove everything skiff stores for this user
    Reset(ResetArgs),
    /// Check the store for inconsistencies (and repair them with --repair)
    Check(CheckArgs),
    /// Check the host for rootless containers and say how to fix each problem
    Doctor(super::doctor::DoctorArgs),
}

#[derive(Debug, Args)]
pub struct DfArgs {
    /// Output format: json
    #[arg(long)]
    pub format: Option<String>,
}

#[derive(Debug, Args)]
pub struct SystemPruneArgs {
    /// Remove all images not used by a container, not just dangling ones
    #[arg(short, long)]
    pub all: bool,
    /// Do not ask for confirmation
    #[arg(short, long)]
    pub force: bool,
    /// Also remove volumes no container uses
    #[arg(long)]
    pub volumes: bool,
}

#[derive(Debug, Args)]
pub struct ResetArgs {
    /// Do not ask for confirmation
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Fix what can be fixed without losing a container's data
    #[arg(short, long)]
    pub repair: bool,
    /// Quiet: print only the problems
    #[arg(short, long)]
    pub quiet: bool,
}

pub fn dispatch(ctx: &Ctx, c: StoreCommand) -> anyhow::Result<i32> {
    match c {
        StoreCommand::Df(a) => df(ctx, a),
        StoreCommand::Prune(a) => prune(ctx, a),
        StoreCommand::Reset(a) => reset(ctx, a),
        StoreCommand::Check(a) => check(ctx, a),
        StoreCommand::Doctor(a) => super::doctor::doctor(ctx, a),
    }
}

/// Bytes used by a tree, as far as this user can see (files owned by subordinate IDs
/// in unreadable directories are not counted).
fn tree_size(p: &Path) -> i64 {
    let Ok(meta) = std::fs::symlink_metadata(p) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len() as i64;
    }
    std::fs::read_dir(p)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| tree_size(&e.path()))
        .sum()
}

fn df(ctx: &Ctx, a: DfArgs) -> anyhow::Result<i32> {
    let mut store = Store::open(&ctx.paths)?;
    let key = mapping_key(super::image::user_mapping(ctx)?.as_ref());
    let mut containers = Vec::new();
    for c in store.containers()? {
        containers.push(refresh(&mut store, c)?);
    }
    let used: HashSet<&str> = containers.iter().map(|c| c.image_id.as_str()).collect();
    let images = store.images()?;
    // Layers are shared: count each once, and as reclaimable only if no used image has it.
    let mut all_layers = HashSet::new();
    let mut used_layers = HashSet::new();
    for i in &images {
        for l in &i.layers {
            all_layers.insert(l.diff_id.clone());
            if used.contains(i.id.as_str()) {
                used_layers.insert(l.diff_id.clone());
            }
        }
    }
    let size_of = |set: &HashSet<String>| -> anyhow::Result<i64> {
        let v: Vec<String> = set.iter().cloned().collect();
        Ok(store.layers_size(&v, &key)?)
    };
    let img_size = size_of(&all_layers)?;
    let img_reclaim = img_size - size_of(&used_layers)?;
    let img_active = images
        .iter()
        .filter(|i| used.contains(i.id.as_str()))
        .count();
    let mut ctr_size = 0;
    let mut ctr_reclaim = 0;
    let mut ctr_active = 0;
    for c in &containers {
        let s = tree_size(&ctx.paths.container_dir(&c.id).join("upper"));
        ctr_size += s;
        if matches!(c.state, State::Running | State::Paused) {
            ctr_active += 1;
        } else {
            ctr_reclaim += s;
        }
    }
    let rows = [
        ("Images", images.len(), img_active, img_size, img_reclaim),
        (
            "Containers",
            containers.len(),
            ctr_active,
            ctr_size,
            ctr_reclaim,
        ),
        volume_row(&store)?,
    ];
    if a.format.as_deref() == Some("json") {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .map(|(t, total, active, size, rec)| {
                serde_json::json!({
                    "Type": t, "Total": total, "Active": active,
                    "RawSize": size, "RawReclaimable": rec,
                    "Size": human_size(*size), "Reclaimable": human_size(*rec),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    } else if let Some(f) = &a.format {
        return Err(Exit::with(
            125,
            format!("--format {f:?} is not supported yet: use json"),
        ));
    }
    let pct = |r: i64, s: i64| if s > 0 { r * 100 / s } else { 0 };
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|(t, total, active, size, rec)| {
            vec![
                t.to_string(),
                total.to_string(),
                active.to_string(),
                human_size(*size),
                format!("{} ({}%)", human_size(*rec), pct(*rec, *size)),
            ]
        })
        .collect();
    table(&["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"], &rows);
    Ok(0)
}

/// Local volumes: (type, total, active, size, reclaimable); unused ones are reclaimable.
fn volume_row(store: &Store) -> anyhow::Result<(&'static str, usize, usize, i64, i64)> {
    let (mut total, mut active, mut size, mut reclaim) = (0, 0, 0, 0);
    for v in store.volumes()? {
        let s = tree_size(&store.volume_dir(&v.name));
        total += 1;
        size += s;
        if crate::runtime::volumes::users(store, &v.name)?.is_empty() {
            reclaim += s;
        } else {
            active += 1;
        }
    }
    Ok(("Local Volumes", total, active, size, reclaim))
}

/// Removes the volumes no container uses; returns their names.
fn prune_volumes(ctx: &Ctx, store: &mut Store) -> anyhow::Result<Vec<String>> {
    let mut removed = Vec::new();
    for v in store.volumes()? {
        if !crate::runtime::volumes::users(store, &v.name)?.is_empty() {
            continue;
        }
        let dir = store.volume_dir(&v.name);
        if dir.exists() {
            crate::userns::remove_trees(&ctx.paths, std::slice::from_ref(&dir))?;
        }
        store.delete_volume(&v.name)?;
        removed.push(v.name);
    }
    Ok(removed)
}

fn prune(ctx: &Ctx, a: SystemPruneArgs) -> anyhow::Result<i32> {
    if !a.force
        && !super::confirm(
            "WARNING! This command removes:\n\t- all stopped containers\n\t- all dangling images (with --all: all unused images)\n\t- with --volumes: all volumes not used by a container\n\nAre you sure you want to continue?",
        )
    {
        return Ok(0);
    }
    let mut store = Store::open(&ctx.paths)?;
    let usage = || {
        [
            ctx.paths.layers(),
            ctx.paths.blobs(),
            ctx.paths.containers(),
            ctx.paths.root.join("volumes"),
        ]
        .iter()
        .map(|p| tree_size(p))
        .sum::<i64>()
    };
    let before = usage();
    let mut code = 0;
    println!("Deleted Containers");
    for c in store.containers()? {
        let c = refresh(&mut store, c)?;
        if matches!(c.state, State::Running | State::Paused) {
            continue;
        }
        match super::manage::remove_container(ctx, &mut store, &c, false) {
            Ok(()) => println!("{}", c.id),
            Err(super::manage::RemoveError::Running(_)) => {}
            Err(e) => {
                eprintln!("Error: {e}");
                code = 125;
            }
        }
    }
    if a.volumes {
        println!("Deleted Volumes");
        for name in prune_volumes(ctx, &mut store)? {
            println!("{name}");
        }
    }
    println!("Deleted Images");
    for id in super::image_group::prune_images(ctx, &mut store, a.all)? {
        println!("{id}");
    }
    let after = usage();
    println!(
        "Total reclaimed space: {}",
        human_size((before - after).max(0))
    );
    Ok(code)
}

fn reset(ctx: &Ctx, a: ResetArgs) -> anyhow::Result<i32> {
    if !a.force
        && !super::confirm(
            "WARNING! This will remove all containers, images and layers skiff stores for you.\nAre you sure you want to continue?",
        )
    {
        return Ok(0);
    }
    {
        let mut store = Store::open(&ctx.paths)?;
        for c in store.containers()? {
            // Running containers are killed first; their monitors then exit.
            if let Err(e) = super::manage::remove_container(ctx, &mut store, &c, true) {
                tracing::warn!(container = %c.name, error = %e, "cannot remove container");
            }
        }
    }
    // Everything under the root may belong to subordinate IDs: remove it inside the
    // user namespace. The runtime dir only holds the user's own sockets and locks.
    let (dirs, files): (Vec<PathBuf>, Vec<PathBuf>) = std::fs::read_dir(&ctx.paths.root)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .partition(|p| p.is_dir() && !p.is_symlink());
    crate::userns::remove_trees(&ctx.paths, &dirs)?;
    for f in files {
        std::fs::remove_file(&f).map_err(|e| Exit::with(125, format!("{}: {e}", f.display())))?;
    }
    for e in std::fs::read_dir(&ctx.paths.runroot)
        .into_iter()
        .flatten()
        .flatten()
    {
        let p = e.path();
        let res = if p.is_dir() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        if let Err(err) = res {
            tracing::warn!(path = %p.display(), error = %err, "cannot remove");
        }
    }
    let _ = std::fs::remove_dir(&ctx.paths.root);
    let _ = std::fs::remove_dir(&ctx.paths.runroot);
    Ok(0)
}

/// A container-level problem (found by the CLI: it needs the runtime's bundle).
fn container_problems(ctx: &Ctx, store: &mut Store) -> anyhow::Result<Vec<(String, bool)>> {
    let mut out = Vec::new();
    let mut ids = HashSet::new();
    for c in store.containers()? {
        let c = refresh(store, c)?;
        ids.insert(c.id.clone());
        if store.image_by_id(&c.image_id)?.is_none() {
            out.push((
                format!(
                    "container {} uses image {}, which is gone",
                    c.name,
                    &c.image_id[..12.min(c.image_id.len())]
                ),
                false,
            ));
        }
        if let Ok(layout) = crate::runtime::bundle::load_layout(&ctx.paths.container_dir(&c.id)) {
            for l in &layout.lower {
                if !layout.layers_dir.join(l).is_dir() {
                    out.push((
                        format!(
                            "container {} needs layer directory {l}, which is gone",
                            c.name
                        ),
                        false,
                    ));
                }
            }
        }
        let sock = crate::monitor::attach_socket(&ctx.paths, &c.id);
        if !matches!(c.state, State::Running | State::Paused) && sock.exists() {
            out.push((format!("stale attach socket {}", sock.display()), true));
        }
    }
    // Locks and sockets of containers that no longer exist.
    for (dir, skip) in [("locks", true), ("attach", false)] {
        for e in std::fs::read_dir(ctx.paths.runroot.join(dir))
            .into_iter()
            .flatten()
            .flatten()
        {
            let n = e.file_name().to_string_lossy().to_string();
            let is_ctr_name = n.len() >= 32 && n.bytes().all(|b| b.is_ascii_hexdigit());
            if skip && !is_ctr_name {
                continue;
            }
            if is_ctr_name && !ids.iter().any(|id| id.starts_with(&n)) {
                out.push((format!("stale runtime file {}", e.path().display()), true));
            }
        }
    }
    Ok(out)
}

/// Repairs one store problem; returns true when it is fixed.
fn repair(ctx: &Ctx, store: &mut Store, p: &Problem, key: &str) -> anyhow::Result<bool> {
    let mapping = super::image::user_mapping(ctx)?;
    Ok(match p {
        Problem::CorruptBlob { path, .. } => std::fs::remove_file(path).is_ok(),
        Problem::UnrecordedLayerDir { path } | Problem::TempLeftover { path } if path.is_dir() => {
            crate::userns::remove_trees(&ctx.paths, std::slice::from_ref(path)).is_ok()
        }
        Problem::TempLeftover { path } => std::fs::remove_file(path).is_ok(),
        Problem::UnrecordedLayerDir { .. } => true,
        Problem::MissingLayerDir {
            diff_id,
            mapping: m,
            ..
        } => {
            store.forget_layer(diff_id, m)?;
            m != key || reunpack(store, diff_id, key, mapping.as_ref())
        }
        Problem::ImageLayerMissing { diff_id, .. } => {
            reunpack(store, diff_id, key, mapping.as_ref())
        }
        Problem::MissingBlob { .. } => false,
    })
}

/// Unpacks a layer again from its kept blob, if an image has it and it verifies.
fn reunpack(
    store: &mut Store,
    diff_id: &str,
    key: &str,
    mapping: Option<&crate::userns::IdMapping>,
) -> bool {
    let Ok(images) = store.images() else {
        return false;
    };
    let Some(l) = images
        .iter()
        .flat_map(|i| i.layers.iter())
        .find(|l| l.diff_id == diff_id && store.has_blob(&l.digest))
        .cloned()
    else {
        return false;
    };
    match crate::storage::layer_build::install_layer(
        store,
        &l.digest,
        &l.diff_id,
        &l.media_type,
        key,
        mapping,
    ) {
        Ok(_) => true,
        Err(e) => {
            eprintln!("cannot unpack layer {diff_id} again: {e}");
            false
        }
    }
}

fn check(ctx: &Ctx, a: CheckArgs) -> anyhow::Result<i32> {
    let mut store = Store::open(&ctx.paths)?;
    let key = mapping_key(super::image::user_mapping(ctx)?.as_ref());
    // No pull, commit or prune may be half-way while we judge the store.
    let _gc = FileLock::gc(&ctx.paths, true)?;
    let problems = store.check()?;
    let mut remaining = 0;
    for p in &problems {
        let fixed = a.repair && repair(ctx, &mut store, p, &key)?;
        println!("{}{p}", if fixed { "repaired: " } else { "" });
        if !fixed {
            remaining += 1;
        }
    }
    for (msg, fixable) in container_problems(ctx, &mut store)? {
        let path = msg.rsplit(' ').next().unwrap_or("").to_string();
        let fixed = a.repair && fixable && std::fs::remove_file(&path).is_ok();
        println!("{}{msg}", if fixed { "repaired: " } else { "" });
        if !fixed {
            remaining += 1;
        }
    }
    if a.repair && !problems.is_empty() {
        // What a repair changed (a blob removed, a layer unpacked) may expose more.
        for p in store.check()? {
            if !problems.contains(&p) {
                println!("{p}");
                remaining += 1;
            }
        }
    }
    if remaining > 0 {
        return Err(Exit::with(
            1,
            format!(
                "{remaining} problem(s) remain in the store {}{}",
                ctx.paths.root.display(),
                if a.repair {
                    ""
                } else {
                    ": run `skiff system check --repair`"
                }
            ),
        ));
    }
    if !a.quiet {
        println!("no problems found in {}", ctx.paths.root.display());
    }
    Ok(0)
}
