//! commit, import, export: images from containers and tarballs, and a container's
//! filesystem as a tarball. The files are read by the `__archive` helper inside the
//! right namespace (runtime::export); the layer blob and image are made by
//! storage::layer_build and image::compose.

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::Stdio;

use clap::Args;

use super::image::user_mapping;
use super::{Ctx, Exit};
use crate::image::compose::{self, NewImage};
use crate::runtime::export::{self, ArchiveRequest};
use crate::runtime::export_mapped::container_mapping;
use crate::runtime::join::Target;
use crate::storage::containers::{ContainerRecord, State};
use crate::storage::layer_build::{LayerCompression, LayerWriter};
use crate::storage::lock::FileLock;
use crate::storage::Store;

#[derive(Debug, Args)]
pub struct CommitArgs {
    /// Commit message (stored in the image history)
    #[arg(short, long)]
    pub message: Option<String>,
    /// Author of the image
    #[arg(short, long)]
    pub author: Option<String>,
    /// Apply a Dockerfile instruction to the image config (CMD, ENTRYPOINT, ENV, ...)
    #[arg(short, long)]
    pub change: Vec<String>,
    /// Pause the container while committing
    #[arg(short, long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub pause: Option<bool>,
    /// Compression of the new layer: gzip or zstd
    #[arg(long, default_value = "gzip")]
    pub compression_format: String,
    /// Print nothing but the image ID
    #[arg(short, long)]
    pub quiet: bool,
    /// The container to commit
    pub container: String,
    /// Name of the new image (none: a dangling image)
    pub image: Option<String>,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// A tarball (plain, gzip or zstd), or - for stdin
    pub source: String,
    /// Name of the new image
    pub reference: Option<String>,
    /// Apply a Dockerfile instruction to the image config (CMD, ENTRYPOINT, ENV, ...)
    #[arg(short, long)]
    pub change: Vec<String>,
    /// Commit message (stored in the image history)
    #[arg(short, long)]
    pub message: Option<String>,
    /// Compression of the layer: gzip or zstd
    #[arg(long, default_value = "gzip")]
    pub compression_format: String,
    /// Print nothing but the image ID
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Write to a file instead of stdout
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// The container to export
    pub container: String,
}

fn fail(msg: impl Into<String>) -> anyhow::Error {
    Exit::with(125, msg)
}

fn compression(s: &str) -> anyhow::Result<LayerCompression> {
    LayerCompression::parse(s)
        .ok_or_else(|| fail(format!("--compression-format {s:?}: use gzip or zstd")))
}

/// Checks names and --change before anything is written.
fn validate(changes: &[String], name: Option<&str>) -> anyhow::Result<Option<String>> {
    compose::apply_changes(&mut serde_json::json!({}), changes)?;
    Ok(name.map(compose::local_name).transpose()?)
}

/// The running container's init, if the record says it runs and it really does.
fn live(c: &ContainerRecord) -> Option<Target> {
    Target::of_record(&c.name, c.pid, c.monitor_pid.zip(c.monitor_start)).ok()
}

/// Finds the container and, unless it runs, takes its lock (so it cannot start while we
/// read it) and reads its state again under the lock.
fn container_for_read(
    ctx: &Ctx,
    store: &mut Store,
    key: &str,
) -> anyhow::Result<(ContainerRecord, Option<FileLock>)> {
    let found = store.find_container(key)?;
    let mut c = super::container::refresh(store, found)?;
    let mut lock = None;
    if live(&c).is_none() {
        lock = Some(FileLock::exclusive(&super::manage::lock_path(ctx, &c.id))?);
        let again = store.find_container(&c.id)?;
        c = super::container::refresh(store, again)?;
    }
    if live(&c).is_some() {
        lock = None;
    } else if c.state == State::Running {
        return Err(fail(format!(
            "container {} is starting or stopping: try again",
            c.name
        )));
    }
    Ok((c, lock))
}

pub fn export(ctx: &Ctx, a: ExportArgs) -> anyhow::Result<i32> {
    if a.output.is_none() && std::io::stdout().is_terminal() {
        return Err(fail(
            "refusing to export to terminal: use -o FILE or redirect stdout",
        ));
    }
    let mut store = Store::open(&ctx.paths)?;
    let (c, lock) = container_for_read(ctx, &mut store, &a.container)?;
    drop(store);
    let (req, mapping) = match live(&c) {
        Some(target) => (
            ArchiveRequest::Running {
                name: c.name.clone(),
                target,
            },
            None,
        ),
        None => (
            ArchiveRequest::Stopped {
                name: c.name.clone(),
                bundle: ctx.paths.container_dir(&c.id),
                mapping: container_mapping(ctx.paths.rootless, &ctx.paths.container_dir(&c.id)),
            },
            user_mapping(ctx)?,
        ),
    };
    let out = match &a.output {
        Some(p) => Stdio::from(
            std::fs::File::create(p).map_err(|e| fail(format!("{}: {e}", p.display())))?,
        ),
        None => Stdio::inherit(),
    };
    let res = export::spawn(ctx.self_args(), &req, mapping.as_ref(), out).and_then(export::finish);
    drop(lock);
    if let Err(e) = res {
        if let Some(p) = &a.output {
            let _ = std::fs::remove_file(p);
        }
        return Err(fail(e));
    }
    Ok(0)
}

pub fn commit(ctx: &Ctx, a: CommitArgs) -> anyhow::Result<i32> {
    let comp = compression(&a.compression_format)?;
    let name = validate(&a.change, a.image.as_deref())?;
    let mut store = Store::open(&ctx.paths)?;
    let (c, lock) = container_for_read(ctx, &mut store, &a.container)?;
    let parent = store.image_by_id(&c.image_id)?.ok_or_else(|| {
        fail(format!(
            "container {}: its image {} is no longer in the store: cannot commit",
            c.name,
            &c.image_id[..12.min(c.image_id.len())]
        ))
    })?;
    let layout = crate::runtime::bundle::load_layout(&ctx.paths.container_dir(&c.id))?;
    let mapping = user_mapping(ctx)?;
    let paused = match (a.pause.unwrap_or(false), live(&c), c.state) {
        (true, Some(t), State::Running) => {
            match crate::runtime::cgroup::set_frozen(&c.id, &c.name, t.pid, true) {
                Ok(()) => Some(t.pid),
                Err(e) => {
                    tracing::warn!(container = %c.name, error = %e, "cannot pause for commit");
                    None
                }
            }
        }
        _ => None,
    };
    let req = ArchiveRequest::Diff {
        name: c.name.clone(),
        upper: layout.upper.clone(),
        trusted: !ctx.paths.rootless,
        mapping: container_mapping(ctx.paths.rootless, &ctx.paths.container_dir(&c.id)),
    };
    // Collection must not take the new blob before the image names it.
    let _gc = FileLock::gc(&ctx.paths, false)?;
    let layer = (|| -> anyhow::Result<_> {
        let mut writer = LayerWriter::create(&store, comp)?;
        let mut h =
            export::spawn(ctx.self_args(), &req, mapping.as_ref(), Stdio::piped()).map_err(fail)?;
        let copied = match h.child.stdout.take() {
            Some(mut out) => std::io::copy(&mut out, &mut writer).map(|_| ()),
            None => Err(std::io::Error::other("no pipe from the archive helper")),
        };
        export::finish(h).map_err(fail)?;
        copied.map_err(|e| fail(format!("reading container {}: {e}", c.name)))?;
        Ok(writer.finish(&store)?)
    })();
    if let Some(pid) = paused {
        let _ = crate::runtime::cgroup::set_frozen(&c.id, &c.name, pid, false);
    }
    drop(lock);
    let layer = layer?;
    let img = compose::create_image(
        &mut store,
        NewImage {
            parent: Some(&parent),
            layer,
            name,
            changes: &a.change,
            comment: a.message.clone(),
            author: a.author.clone(),
            created_by: c.command.join(" "),
            mapping: mapping.as_ref(),
        },
    )?;
    if !a.quiet {
        eprintln!("Writing manifest to image destination");
    }
    println!("{}", img.id);
    Ok(0)
}

/// Reads ahead of the tar parser and hands every byte to the layer writer, so the
/// stream is verified as a tar while it is compressed.
struct Tee<'a, R> {
    inner: R,
    sink: &'a mut LayerWriter,
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sink.write_all(&buf[..n])?;
        Ok(n)
    }
}

pub fn import(ctx: &Ctx, a: ImportArgs) -> anyhow::Result<i32> {
    let comp = compression(&a.compression_format)?;
    let name = validate(&a.change, a.reference.as_deref())?;
    if a.source.starts_with("http://") || a.source.starts_with("https://") {
        return Err(fail(format!(
            "importing from a URL is not supported: download {} first",
            a.source
        )));
    }
    let input: Box<dyn Read> = if a.source == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(
            std::fs::File::open(&a.source)
                .map_err(|e| fail(format!("cannot read {}: {e}", a.source)))?,
        )
    };
    let mut input = std::io::BufReader::with_capacity(1 << 20, input);
    let head = std::io::BufRead::fill_buf(&mut input)
        .map_err(|e| fail(format!("cannot read {}: {e}", a.source)))?;
    let raw: Box<dyn Read> = match crate::storage::unpack::Compression::sniff(head) {
        crate::storage::unpack::Compression::Gzip => {
            Box::new(flate2::read::MultiGzDecoder::new(input))
        }
        crate::storage::unpack::Compression::Zstd => Box::new(
            zstd::Decoder::with_buffer(input)
                .map_err(|e| fail(format!("cannot read {}: {e}", a.source)))?,
        ),
        crate::storage::unpack::Compression::None => Box::new(input),
    };
    let mut store = Store::open(&ctx.paths)?;
    let _gc = FileLock::gc(&ctx.paths, false)?;
    let mut writer = LayerWriter::create(&store, comp)?;
    let not_tar = |detail: String| {
        // The tar crate's messages can quote the bad input: keep the first clause.
        let detail: String = detail
            .split(['\n', ':'])
            .next()
            .unwrap_or("")
            .chars()
            .take(80)
            .collect();
        fail(format!(
            "{} is not a tar archive: {}",
            if a.source == "-" { "stdin" } else { &a.source },
            detail.trim()
        ))
    };
    {
        let mut tee = Tee {
            inner: raw,
            sink: &mut writer,
        };
        let mut ar = tar::Archive::new(&mut tee);
        let mut count = 0u64;
        for e in ar.entries().map_err(|e| not_tar(e.to_string()))? {
            let mut e = e.map_err(|e| not_tar(e.to_string()))?;
            std::io::copy(&mut e, &mut std::io::sink()).map_err(|e| not_tar(e.to_string()))?;
            count += 1;
        }
        // The end-of-archive blocks are part of the layer (and of its diff_id).
        std::io::copy(&mut tee, &mut std::io::sink()).map_err(|e| not_tar(e.to_string()))?;
        if count == 0 {
            return Err(not_tar("it holds no files".into()));
        }
    }
    let layer = writer.finish(&store)?;
    let mapping = user_mapping(ctx)?;
    let digest = layer.digest.clone();
    let res = compose::create_image(
        &mut store,
        NewImage {
            parent: None,
            layer,
            name,
            changes: &a.change,
            comment: Some(
                a.message
                    .clone()
                    .unwrap_or_else(|| "imported from tarball".into()),
            ),
            author: None,
            created_by: String::new(),
            mapping: mapping.as_ref(),
        },
    );
    let img = match res {
        Ok(i) => i,
        Err(e) => {
            // Leave the store as it was: the blob is ours unless an image shares it.
            let shared = store
                .images()?
                .iter()
                .any(|i| i.layers.iter().any(|l| l.digest == digest));
            if !shared {
                if let Ok(p) = store.blob_path(&digest) {
                    let _ = std::fs::remove_file(p);
                }
            }
            return Err(fail(e.to_string()));
        }
    };
    if !a.quiet {
        eprintln!("Writing manifest to image destination");
    }
    println!("sha256:{}", img.id);
    Ok(0)
}
