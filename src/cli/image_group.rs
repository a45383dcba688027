//! history, image prune, and the `skiff image ...` group podman users type
//! (`podman image ls`, `image rm`, `image inspect`, ...).

use clap::{Args, Subcommand};

use super::format::{ago, human_size, parse_time, table};
use super::{commit, image, inspect, Ctx, Exit};
use crate::image::pull::{find_local, mapping_key};
use crate::storage::Store;

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Do not truncate the output
    #[arg(long)]
    pub no_trunc: bool,
    /// Show only the IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Output format: json, a Go template ('{{.ID}} {{.Size}}'), or 'table TEMPLATE'
    #[arg(long)]
    pub format: Option<String>,
    /// Show sizes and dates in human readable format (default true)
    #[arg(short = 'H', long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub human: Option<bool>,
    /// The image
    pub image: String,
}

#[derive(Debug, Args)]
pub struct ImagePruneArgs {
    /// Remove all images not used by a container, not just dangling ones
    #[arg(short, long)]
    pub all: bool,
    /// Do not ask for confirmation
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct ImageArgs {
    #[command(subcommand)]
    pub command: ImageCommand,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// List images in local storage
    #[command(name = "ls", visible_alias = "list")]
    Ls(image::ImagesArgs),
    /// Remove one or more images
    Rm(image::RmiArgs),
    /// Pull an image from a registry
    Pull(image::PullArgs),
    /// Add an additional name to a local image
    Tag(image::TagArgs),
    /// Display the configuration of an image
    Inspect(inspect::InspectArgs),
    /// Show the history of an image
    History(HistoryArgs),
    /// Remove unused images
    Prune(ImagePruneArgs),
    /// Import a tarball as a filesystem image
    Import(commit::ImportArgs),
}

pub fn image_group(ctx: &Ctx, a: ImageArgs) -> anyhow::Result<i32> {
    match a.command {
        ImageCommand::Ls(a) => image::images(ctx, a),
        ImageCommand::Rm(a) => image::rmi(ctx, a),
        ImageCommand::Pull(a) => image::pull(ctx, a),
        ImageCommand::Tag(a) => image::tag(ctx, a),
        ImageCommand::Inspect(mut a) => {
            a.kind = Some("image".into());
            inspect::inspect(ctx, a)
        }
        ImageCommand::History(a) => history(ctx, a),
        ImageCommand::Prune(a) => prune(ctx, a),
        ImageCommand::Import(a) => commit::import(ctx, a),
    }
}

/// One line of `history`, newest first.
struct Step {
    id: String,
    created: Option<String>,
    created_by: String,
    size: i64,
    comment: String,
}

fn steps(ctx: &Ctx, store: &Store, input: &str) -> anyhow::Result<(Vec<Step>, Vec<String>)> {
    let img = find_local(store, input)?;
    let config: serde_json::Value =
        serde_json::from_slice(&store.read_blob(&img.config_digest())?)?;
    let key = mapping_key(super::image::user_mapping(ctx)?.as_ref());
    let mut layers = img.layers.iter();
    let mut out = Vec::new();
    let empty = Vec::new();
    let hist = config["history"].as_array().unwrap_or(&empty);
    for h in hist {
        let is_empty = h["empty_layer"].as_bool().unwrap_or(false);
        let size = if is_empty {
            0
        } else {
            match layers.next() {
                Some(l) => store.layers_size(std::slice::from_ref(&l.diff_id), &key)?,
                None => 0,
            }
        };
        out.push(Step {
            id: "<missing>".into(),
            created: h["created"].as_str().map(String::from),
            created_by: h["created_by"].as_str().unwrap_or("").to_string(),
            size,
            comment: h["comment"].as_str().unwrap_or("").to_string(),
        });
    }
    // Layers the history does not describe still count, as podman shows them.
    for l in layers {
        out.push(Step {
            id: "<missing>".into(),
            created: None,
            created_by: String::new(),
            size: store.layers_size(std::slice::from_ref(&l.diff_id), &key)?,
            comment: String::new(),
        });
    }
    out.reverse();
    if let Some(top) = out.first_mut() {
        top.id = img.id.clone();
    } else {
        out.push(Step {
            id: img.id.clone(),
            created: img.created.clone(),
            created_by: String::new(),
            size: 0,
            comment: String::new(),
        });
    }
    Ok((out, img.names))
}

pub fn history(ctx: &Ctx, a: HistoryArgs) -> anyhow::Result<i32> {
    let store = Store::open(&ctx.paths)?;
    let (steps, names) = steps(ctx, &store, &a.image)?;
    let short = |id: &str| {
        if a.no_trunc || id.len() < 12 {
            id.to_string()
        } else {
            id[..12].to_string()
        }
    };
    match a.format.as_deref() {
        Some("json") => {
            let v: Vec<serde_json::Value> = steps
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    serde_json::json!({
                        "id": s.id,
                        "created": s.created,
                        "CreatedBy": s.created_by,
                        "size": s.size,
                        "comment": s.comment,
                        "tags": if i == 0 { Some(&names) } else { None },
                    })
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&v)?);
            return Ok(0);
        }
        Some(f) if f.trim() != "table" => {
            let format = super::template::Format::parse("history", Some(f))
                .map_err(|e| Exit::with(125, e.to_string()))?;
            let items: Vec<serde_json::Value> = steps
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let t = s.created.as_deref().and_then(parse_time).unwrap_or(0);
                    serde_json::json!({
                        "ID": short(&s.id),
                        "Created": s.created.as_deref().and_then(parse_time).map(ago).unwrap_or_default(),
                        "CreatedAt": s.created,
                        "CreatedSince": ago(t),
                        "CreatedBy": s.created_by,
                        "Size": human_size(s.size),
                        "Comment": s.comment,
                        "Tags": if i == 0 { names.clone() } else { Vec::new() },
                    })
                })
                .collect();
            let header = |f: &str| match f {
                "CreatedSince" | "Created" => "CREATED".to_string(),
                other => super::template::header_name(other),
            };
            let out = format
                .render(&items, &header)
                .map_err(|e| Exit::with(125, e.to_string()))?;
            print!("{out}");
            return Ok(0);
        }
        _ => {}
    }
    if a.quiet {
        for s in &steps {
            println!("{}", short(&s.id));
        }
        return Ok(0);
    }
    let human = a.human.unwrap_or(true);
    let rows: Vec<Vec<String>> = steps
        .iter()
        .map(|s| {
            let created = match (&s.created, human) {
                (Some(c), true) => parse_time(c).map(ago).unwrap_or_else(|| c.clone()),
                (Some(c), false) => c.clone(),
                (None, _) => String::new(),
            };
            let by = s.created_by.replace('\t', " ");
            let by = if !a.no_trunc && by.chars().count() > 45 {
                format!("{}...", by.chars().take(42).collect::<String>())
            } else {
                by
            };
            let size = if human {
                human_size(s.size)
            } else {
                s.size.to_string()
            };
            vec![short(&s.id), created, by, size, s.comment.clone()]
        })
        .collect();
    table(&["ID", "CREATED", "CREATED BY", "SIZE", "COMMENT"], &rows);
    Ok(0)
}

/// Removes dangling images (or, with `all`, every image no container uses); returns
/// the IDs removed. Images that gain a container meanwhile are kept (the store refuses).
pub fn prune_images(ctx: &Ctx, store: &mut Store, all: bool) -> anyhow::Result<Vec<String>> {
    let used: std::collections::HashSet<String> = store
        .containers()?
        .into_iter()
        .map(|c| c.image_id)
        .collect();
    let mut removed = Vec::new();
    // Removing an image can leave its parent's layers unused but never makes another
    // image dangling (names are per image), so one pass suffices.
    for img in store.images()? {
        if used.contains(&img.id) || (!all && !img.names.is_empty()) {
            continue;
        }
        match store.remove_image(&img.id, false) {
            Ok(()) => removed.push(img.id),
            Err(crate::storage::StorageError::ImageInUse { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    super::image::collect(ctx, store)?;
    Ok(removed)
}

pub fn prune(ctx: &Ctx, a: ImagePruneArgs) -> anyhow::Result<i32> {
    let q = if a.all {
        "WARNING! This command removes all images without at least one container associated with them.\nAre you sure you want to continue?"
    } else {
        "WARNING! This command removes all dangling images.\nAre you sure you want to continue?"
    };
    if !a.force && !super::confirm(q) {
        return Ok(0);
    }
    let mut store = Store::open(&ctx.paths)?;
    for id in prune_images(ctx, &mut store, a.all)? {
        println!("{id}");
    }
    Ok(0)
}
