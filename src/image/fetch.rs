//! Parent side of a layer pull: streams the blob from the registry (or the local blob
//! store) into the blob store and into an unpack helper at the same time, then commits
//! both only when the compressed digest and the diff_id check out.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::Stdio;

use futures_util::StreamExt;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::progress::Progress;
use super::registry::{FetchError, Registry};
use super::ImageError;
use crate::config::Paths;
use crate::storage::blobs::BlobWriter;
use crate::storage::layer_helper::Summary;
use crate::userns::{spawn_helper, IdMapping};

/// The configured storage.max_layer_size, set once from the settings before any pull.
static MAX_LAYER_SIZE: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(crate::config::file::DEFAULT_MAX_LAYER_SIZE);

/// Applies skiff.toml's storage.max_layer_size to every unpack of this process.
pub fn set_max_layer_size(bytes: u64) {
    MAX_LAYER_SIZE.store(bytes, std::sync::atomic::Ordering::Relaxed);
}

/// One layer to fetch and unpack.
pub struct LayerJob {
    pub image: String,
    pub digest: String,
    pub diff_id: String,
    pub media_type: String,
    pub size: u64,
    pub dir_name: String,
}

impl LayerJob {
    fn err(&self, detail: impl Into<String>) -> ImageError {
        ImageError::Unpack {
            image: self.image.clone(),
            digest: self.digest.clone(),
            detail: detail.into(),
        }
    }
}

/// Where a layer's compressed bytes come from.
pub enum Source<'a> {
    /// The registry, unless the blob store already has the blob.
    Registry { reg: &'a Registry, anchor: &'a str },
    /// A local file whose digest the caller already checked (`load`).
    File(&'a Path),
}

/// Fetches and unpacks one layer; returns its uncompressed size.
pub async fn fetch_and_unpack(
    paths: &Paths,
    reg: &Registry,
    anchor: &str,
    job: &LayerJob,
    mapping: Option<&IdMapping>,
    progress: &Progress,
) -> Result<u64, ImageError> {
    unpack(
        paths,
        Source::Registry { reg, anchor },
        job,
        mapping,
        progress,
    )
    .await
}

/// Unpacks one layer from `source` through the unpack helper, committing it only when
/// its diff_id matches; returns its uncompressed size.
pub async fn unpack(
    paths: &Paths,
    source: Source<'_>,
    job: &LayerJob,
    mapping: Option<&IdMapping>,
    progress: &Progress,
) -> Result<u64, ImageError> {
    let mut args: Vec<String> = vec![
        "__unpack-layer".into(),
        "--layers-dir".into(),
        paths.layers().display().to_string(),
        "--name".into(),
        job.dir_name.clone(),
        "--media-type".into(),
        job.media_type.clone(),
        "--max-size".into(),
        MAX_LAYER_SIZE
            .load(std::sync::atomic::Ordering::Relaxed)
            .to_string(),
    ];
    // A helper in a user namespace (a copy for a mapping) cannot set trusted.* xattrs.
    if !paths.rootless && mapping.is_none() {
        args.push("--trusted-xattrs".into());
    }
    let mut helper = spawn_helper(Path::new("/proc/self/exe"), &args, mapping, |c| {
        c.stdin(Stdio::piped());
        c.stdout(Stdio::null());
    })?;
    let stdin = helper
        .child
        .stdin
        .take()
        .ok_or_else(|| job.err("unpack helper has no stdin"))?;
    let pipe = tokio::net::unix::pipe::Sender::from_owned_fd(OwnedFd::from(stdin))
        .map_err(|e| job.err(format!("unpack helper pipe: {e}")))?;
    helper
        .sync
        .set_nonblocking(true)
        .map_err(|e| job.err(format!("unpack helper socket: {e}")))?;
    let sync = tokio::net::UnixStream::from_std(helper.sync)
        .map_err(|e| job.err(format!("unpack helper socket: {e}")))?;
    let (rd, mut wr) = sync.into_split();
    let mut rd = BufReader::new(rd);

    let store = crate::storage::Store::open(paths)?;
    let bar = progress.blob(&job.digest, Some(job.size));
    let (streamed, have_blob) = match source {
        Source::Registry { reg, anchor } if !store.has_blob(&job.digest) => (
            stream_remote(&store, reg, anchor, job, pipe, &bar)
                .await
                .map(Some),
            false,
        ),
        Source::Registry { .. } => match store.blob_path(&job.digest) {
            Ok(p) => (stream_file(&p, job, pipe, &bar).await.map(|_| None), true),
            Err(e) => (Err(e.into()), true),
        },
        Source::File(p) => (stream_file(p, job, pipe, &bar).await.map(|_| None), false),
    };
    drop(store);

    let mut line = String::new();
    let _ = rd.read_line(&mut line).await;
    let summary: Option<Summary> = serde_json::from_str(line.trim()).ok();
    let outcome = match (streamed, summary) {
        // Our own side failed (the blob store's disk, the registry, the digest): that
        // is the cause, and the helper only saw its stream end early.
        (
            Err(
                e @ (ImageError::Io { .. }
                | ImageError::Registry { .. }
                | ImageError::DigestMismatch { .. }),
            ),
            _,
        ) => Err(e),
        // A helper error explains a broken pipe better than the pipe does.
        (_, Some(Summary { error: Some(e), .. })) => Err(job.err(e)),
        (Err(e), _) => Err(e),
        (Ok(_), None) => Err(job.err("unpack helper exited without a report")),
        (Ok(blob), Some(s)) => match s.diff_id {
            Some(d) if d == job.diff_id => {
                for sk in &s.skipped {
                    tracing::debug!(layer = %job.digest, entry = %sk, "skipped");
                }
                Ok((blob, s.size))
            }
            Some(actual) => Err(ImageError::DiffIdMismatch {
                image: job.image.clone(),
                digest: job.digest.clone(),
                expected: job.diff_id.clone(),
                actual,
            }),
            None => Err(job.err("unpack helper reported no diff_id")),
        },
    };
    let verdict = if outcome.is_ok() {
        "commit\n"
    } else {
        "abort\n"
    };
    let _ = wr.write_all(verdict.as_bytes()).await;
    let mut reply = String::new();
    let _ = rd.read_line(&mut reply).await;
    let _ = helper.child.wait();
    let (blob, size) = match outcome {
        Ok(v) => v,
        Err(e) => return Err(e),
    };
    if reply.trim() != "ok" {
        if let Some(b) = blob {
            b.abort();
        }
        return Err(job.err(reply.trim().to_string()));
    }
    if let Some(b) = blob {
        b.commit()?;
    }
    bar.done(have_blob);
    Ok(size)
}

async fn stream_file(
    path: &Path,
    job: &LayerJob,
    mut pipe: tokio::net::unix::pipe::Sender,
    bar: &super::progress::BlobProgress,
) -> Result<(), ImageError> {
    use std::io::Read;
    let path = path.to_path_buf();
    let mut f = std::fs::File::open(&path).map_err(|source| ImageError::Io {
        path: path.clone(),
        source,
    })?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|source| ImageError::Io {
            path: path.clone(),
            source,
        })?;
        if n == 0 {
            return Ok(());
        }
        pipe.write_all(&buf[..n])
            .await
            .map_err(|e| job.err(format!("unpack helper stopped reading: {e}")))?;
        bar.inc(n as u64);
    }
}

async fn stream_remote(
    store: &crate::storage::Store,
    reg: &Registry,
    anchor: &str,
    job: &LayerJob,
    mut pipe: tokio::net::unix::pipe::Sender,
    bar: &super::progress::BlobProgress,
) -> Result<BlobWriter, ImageError> {
    let mut blob = BlobWriter::create(store, &job.digest)?;
    let mut stream = match reg.blob_stream(anchor, &job.digest).await {
        Ok(s) => s,
        Err(e) => {
            blob.abort();
            let detail = match e {
                FetchError::NotFound(d) | FetchError::Other(d) => d,
            };
            return Err(ImageError::Registry {
                image: job.image.clone(),
                registry: reg.host().to_string(),
                detail,
            });
        }
    };
    while let Some(chunk) = stream.stream.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                let actual = blob.actual_digest();
                blob.abort();
                if e.to_string().to_lowercase().contains("digest") {
                    return Err(ImageError::DigestMismatch {
                        image: job.image.clone(),
                        digest: job.digest.clone(),
                        actual,
                    });
                }
                return Err(ImageError::Registry {
                    image: job.image.clone(),
                    registry: reg.host().to_string(),
                    detail: super::registry::cut_short(&job.digest, &e.to_string()),
                });
            }
        };
        if let Err(e) = blob.write_all(&chunk) {
            let p = blob.tmp_path().to_path_buf();
            blob.abort();
            return Err(ImageError::Io { path: p, source: e });
        }
        if let Err(e) = pipe.write_all(&chunk).await {
            blob.abort();
            return Err(job.err(format!("unpack helper stopped reading: {e}")));
        }
        bar.inc(chunk.len() as u64);
    }
    if blob.actual_digest() != job.digest {
        let actual = blob.actual_digest();
        blob.abort();
        return Err(ImageError::DigestMismatch {
            image: job.image.clone(),
            digest: job.digest.clone(),
            actual,
        });
    }
    Ok(blob)
}
