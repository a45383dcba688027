//! pull, images, rmi, tag.

use clap::Args;

use super::format::{ago, human_size, parse_time, table};
use super::template::Format;
use super::{Ctx, Exit};
use crate::image::pull::{find_local, PullOptions};
use crate::image::reference;
use crate::storage::Store;
use crate::userns::IdMapping;

#[derive(Debug, Args)]
pub struct PullArgs {
    /// Image to pull (NAME[:TAG|@DIGEST])
    pub image: String,
    /// Print nothing but the image ID
    #[arg(short, long)]
    pub quiet: bool,
    /// Require HTTPS and verify certificates (false: plain HTTP allowed)
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub tls_verify: Option<bool>,
}

#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Show only image IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Do not truncate IDs
    #[arg(long)]
    pub no_trunc: bool,
    /// Output format: json, a Go template ('{{.Repository}}:{{.Tag}}'), or 'table TEMPLATE'
    #[arg(long)]
    pub format: Option<String>,
    /// Filter output: dangling=, label=, reference=, before=, since=, id=
    #[arg(short, long, value_name = "KEY=VALUE")]
    pub filter: Vec<String>,
    /// Show all images (skiff keeps no intermediate images: the same list; for docker scripts)
    #[arg(short, long)]
    pub all: bool,
    /// Show the manifest digest of each image
    #[arg(long)]
    pub digests: bool,
    /// Show images with this repository name only
    pub repository: Option<String>,
}

#[derive(Debug, Args)]
pub struct RmiArgs {
    /// Images to remove (names or IDs)
    #[arg(required = true)]
    pub images: Vec<String>,
    /// Remove even if containers use the image
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct TagArgs {
    /// The image to tag
    pub image: String,
    /// New names
    #[arg(required = true)]
    pub names: Vec<String>,
}

/// The ID mapping layers are unpacked with for this user (None when root).
pub fn user_mapping(ctx: &Ctx) -> anyhow::Result<Option<IdMapping>> {
    if ctx.paths.rootless {
        Ok(Some(IdMapping::for_current_user(
            ctx.paths.uid,
            ctx.paths.gid,
        )?))
    } else {
        Ok(None)
    }
}

pub fn pull_options(
    ctx: &Ctx,
    quiet: bool,
    tls_verify: Option<bool>,
) -> anyhow::Result<PullOptions> {
    Ok(PullOptions {
        quiet,
        tls_verify,
        mapping: user_mapping(ctx)?,
        platform: None,
    })
}

pub fn pull(ctx: &Ctx, a: PullArgs) -> anyhow::Result<i32> {
    let mut store = Store::open(&ctx.paths)?;
    let opts = pull_options(ctx, a.quiet, a.tls_verify)?;
    let img = crate::image::pull(&mut store, &a.image, &opts)?;
    println!("{}", img.id);
    Ok(0)
}

/// Splits a stored name into (repository, tag) for display.
pub(super) fn repo_tag(name: &str) -> (String, String) {
    if let Some((r, d)) = name.split_once('@') {
        return (r.to_string(), d.to_string());
    }
    match name.rfind(':') {
        Some(i) if !name[i..].contains('/') => (name[..i].to_string(), name[i + 1..].to_string()),
        _ => (name.to_string(), "<none>".to_string()),
    }
}

pub fn images(ctx: &Ctx, a: ImagesArgs) -> anyhow::Result<i32> {
    let format =
        Format::parse("images", a.format.as_deref()).map_err(|e| Exit::with(125, e.to_string()))?;
    let store = Store::open(&ctx.paths)?;
    let mut imgs = store.images()?;
    if let Some(r) = &a.repository {
        let want = reference::parse_normalized_named(r)
            .map(|x| x.name())
            .unwrap_or_else(|_| r.clone());
        imgs.retain(|i| {
            i.names.iter().any(|n| {
                let (repo, _) = repo_tag(n);
                repo == want || repo.ends_with(&format!("/{r}"))
            })
        });
    }
    let filters = super::image_filter::ImageFilters::parse(&store, &a.filter)?;
    let mut listed = Vec::new();
    for i in imgs {
        let labels = super::image_filter::labels(&store, &i);
        if filters.matches(&i, &labels) {
            listed.push((i, labels));
        }
    }
    let imgs: Vec<_> = listed.iter().map(|(i, _)| i.clone()).collect();
    match &format {
        Format::Json => {
            let v: Vec<serde_json::Value> = listed
                .iter()
                .map(|(i, labels)| {
                    serde_json::json!({
                        "Id": i.id,
                        "Names": i.names,
                        "Digest": i.manifest_digest,
                        "Created": i.created.as_deref().and_then(parse_time).unwrap_or(0),
                        "CreatedAt": i.created,
                        "Size": i.size,
                        "VirtualSize": i.size,
                        "Labels": labels,
                        "Dangling": i.names.is_empty(),
                        "Containers": super::image_filter::containers_using(&store, &i.id),
                    })
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&v)?);
            return Ok(0);
        }
        Format::Template { .. } if !a.quiet => {
            let mut items = Vec::new();
            for (i, labels) in &listed {
                let used = super::image_filter::containers_using(&store, &i.id);
                for (repo, tag) in display_names(i) {
                    items.push(super::image_filter::view(
                        i, labels, &repo, &tag, a.no_trunc, used,
                    ));
                }
            }
            let out = format
                .render(&items, &super::image_filter::header)
                .map_err(|e| Exit::with(125, e.to_string()))?;
            print!("{out}");
            return Ok(0);
        }
        _ => {}
    }
    if a.quiet {
        for i in &imgs {
            println!(
                "{}",
                if a.no_trunc {
                    format!("sha256:{}", i.id)
                } else {
                    i.id[..12].to_string()
                }
            );
        }
        return Ok(0);
    }
    let mut rows = Vec::new();
    for i in &imgs {
        let created = i
            .created
            .as_deref()
            .and_then(parse_time)
            .map(ago)
            .unwrap_or_default();
        let id = if a.no_trunc {
            format!("sha256:{}", i.id)
        } else {
            i.id[..12].to_string()
        };
        for (repo, tag) in display_names(i) {
            let mut row = vec![repo, tag];
            if a.digests {
                row.push(i.manifest_digest.clone());
            }
            row.extend([id.clone(), created.clone(), human_size(i.size)]);
            rows.push(row);
        }
    }
    let header: &[&str] = if a.digests {
        &["REPOSITORY", "TAG", "DIGEST", "IMAGE ID", "CREATED", "SIZE"]
    } else {
        &["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]
    };
    table(header, &rows);
    Ok(0)
}

/// One (repository, tag) row per name; `<none>` twice for an untagged image.
fn display_names(i: &crate::storage::images::ImageRecord) -> Vec<(String, String)> {
    if i.names.is_empty() {
        return vec![("<none>".into(), "<none>".into())];
    }
    i.names.iter().map(|n| repo_tag(n)).collect()
}

pub fn rmi(ctx: &Ctx, a: RmiArgs) -> anyhow::Result<i32> {
    let mut store = Store::open(&ctx.paths)?;
    let mut code = 0;
    for input in &a.images {
        let img = match find_local(&store, input) {
            Ok(i) => i,
            // As podman: `rmi -f` of an image that is not there is not an error.
            Err(crate::image::ImageError::Storage(
                crate::storage::StorageError::ImageNotKnown(_),
            )) if a.force => continue,
            Err(e) => {
                eprintln!("Error: {e}");
                code = 1;
                continue;
            }
        };
        // A name that is one of several only loses that name, as in podman.
        let by_name = img.names.iter().find(|n| {
            reference::parse_normalized(input)
                .map(|r| &r.to_string() == *n)
                .unwrap_or(false)
                || n.ends_with(&format!("/{input}"))
                || n.ends_with(&format!("/{input}:latest"))
        });
        if let (Some(n), true) = (by_name, img.names.len() > 1) {
            store.untag(n)?;
            println!("Untagged: {n}");
            continue;
        }
        if a.force {
            // As podman: containers using the image go first (running ones are killed).
            for c in store.containers()? {
                if c.image_id == img.id {
                    if let Err(e) = super::manage::remove_container(ctx, &mut store, &c, true) {
                        eprintln!("Error: {e}");
                        code = e.exit_code();
                    }
                }
            }
        }
        // Never with force in the store: a container created meanwhile keeps its image.
        match store.remove_image(&img.id, false) {
            Ok(()) => {}
            Err(e @ crate::storage::StorageError::ImageInUse { .. }) => {
                eprintln!("Error: {e}");
                code = 2;
                continue;
            }
            Err(e) => return Err(e.into()),
        }
        for n in &img.names {
            println!("Untagged: {n}");
        }
        println!("Deleted: {}", img.id);
    }
    collect(ctx, &mut store)?;
    Ok(code)
}

/// Deletes layers and blobs no image refers to, under the exclusive GC lock so a pull,
/// commit or import in progress keeps what it has written so far.
pub fn collect(ctx: &Ctx, store: &mut Store) -> anyhow::Result<()> {
    let _gc = crate::storage::lock::FileLock::gc(&ctx.paths, true)?;
    let garbage = store.collect_garbage()?;
    let spinner = (!garbage.layer_dirs.is_empty()).then(|| {
        crate::image::progress::spinner(format!(
            "Removing {} unused layer(s)",
            garbage.layer_dirs.len()
        ))
    });
    crate::userns::remove_trees(&ctx.paths, &garbage.layer_dirs)?;
    if let Some(Some(s)) = spinner {
        s.finish_and_clear();
    }
    for b in garbage.blobs {
        let _ = std::fs::remove_file(b);
    }
    Ok(())
}

pub fn tag(ctx: &Ctx, a: TagArgs) -> anyhow::Result<i32> {
    let mut store = Store::open(&ctx.paths)?;
    let img = find_local(&store, &a.image)?;
    for n in &a.names {
        // podman puts unqualified new names under localhost/.
        let full = match reference::parse_short(n)? {
            reference::ShortOrFull::Full(r) => r,
            reference::ShortOrFull::Short(s) => s.qualify("localhost")?,
        };
        store.tag_image(&img.id, &full.to_string())?;
    }
    Ok(0)
}
