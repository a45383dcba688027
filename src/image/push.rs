//! `push`: sends an image's stored blobs (compressed layers, config, manifest) byte for
//! byte, so its manifest digest and image ID are the same at the destination. Blobs the
//! destination repository already has are skipped (HEAD); a blob that came from another
//! repository on the same registry is mounted from there instead of uploaded. Layers
//! stored uncompressed (docker-archive) are gzipped on the way, as podman does (see
//! push_gzip); then the manifest, not the config, changes.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, RegistryOperation};

use super::progress::Progress;
use super::push_gzip::{self, CompressionFormat, Replacement};
use super::reference::{self, Reference};
use super::ImageError;
use crate::config::auth;
use crate::config::registries::Registries;
use crate::storage::blob_info::CompressedBlob;
use crate::storage::images::ImageRecord;
use crate::storage::Store;

pub struct PushOptions {
    pub quiet: bool,
    /// Some(false) forces plain HTTP, as --tls-verify=false.
    pub tls_verify: Option<bool>,
    /// What uncompressed layers are compressed with (podman's --compression-format).
    pub compression: CompressionFormat,
}

const MAX_PARALLEL_UPLOADS: usize = 4;

/// The destination for `push IMAGE [DEST]`: DEST (a `docker://` prefix allowed), else
/// the image's own name as the user typed it.
pub fn destination(
    img: &ImageRecord,
    input: &str,
    dest: Option<&str>,
) -> Result<Reference, ImageError> {
    if let Some(d) = dest {
        let d = d.strip_prefix("docker://").unwrap_or(d);
        return match reference::parse_short(d)? {
            reference::ShortOrFull::Full(r) => Ok(r),
            // podman sends unqualified destinations to docker.io as well.
            reference::ShortOrFull::Short(_) => Ok(reference::parse_normalized(d)?),
        };
    }
    if let Ok(reference::ShortOrFull::Full(r)) = reference::parse_short(input) {
        return Ok(r);
    }
    // A short name or ID: the stored name it matched.
    let matched = img
        .names
        .iter()
        .find(|n| n.ends_with(&format!("/{input}")) || n.ends_with(&format!("/{input}:latest")))
        .or_else(|| img.names.first());
    match matched {
        Some(n) => Ok(reference::parse_normalized(n)?),
        None => Err(ImageError::Invalid {
            image: input.to_string(),
            detail: "the image has no name to push to: give a destination".into(),
        }),
    }
}

fn push_err(target: &Reference, detail: impl Into<String>) -> ImageError {
    ImageError::Transfer {
        what: format!("pushing {target}"),
        detail: detail.into(),
    }
}

fn describe(target: &Reference, e: OciDistributionError) -> ImageError {
    let detail = match e {
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_) => format!(
            "authentication required: log in with `skiff login {}`",
            target.registry
        ),
        OciDistributionError::RequestError(r)
            if r.status()
                .is_some_and(|s| s.as_u16() == 401 || s.as_u16() == 403) =>
        {
            format!(
                "authentication required: log in with `skiff login {}`",
                target.registry
            )
        }
        OciDistributionError::RequestError(r) => {
            let mut msg = r.to_string();
            let mut src = std::error::Error::source(&r);
            while let Some(s) = src {
                msg = format!("{msg}: {s}");
                src = s.source();
            }
            msg
        }
        OciDistributionError::ServerError { code: 401, url, .. } => format!(
            "authentication required for {url}: log in with `skiff login {}`",
            target.registry
        ),
        other => other.to_string(),
    };
    push_err(target, detail)
}

/// How one blob goes out.
struct Item {
    /// The stored blob's digest (the layer digest in the stored manifest).
    digest: String,
    path: PathBuf,
    is_config: bool,
    /// For an uncompressed layer: it is compressed first.
    gzip: Option<GzipPlan>,
}

struct GzipPlan {
    diff_id: String,
    media_type: &'static str,
    /// What the same layer compressed to on an earlier push.
    cached: Option<CompressedBlob>,
}

/// What the registry ended up with for a compressed layer.
struct Sent {
    old_digest: String,
    diff_id: String,
    replacement: Replacement,
}

/// Pushes the local image `input` to `dest` (or its own name); returns the manifest
/// digest at the destination.
pub fn push(
    store: &mut Store,
    img: &ImageRecord,
    target: &Reference,
    opts: &PushOptions,
) -> Result<String, ImageError> {
    let regs = Registries::load()?;
    let ep = regs.push_endpoint(target);
    let insecure = ep.insecure || opts.tls_verify == Some(false);
    let creds = auth::lookup(&ep.host, &ep.repository)?;
    let tmp_dir = store.paths.tmp();
    push_gzip::clean_stale(&tmp_dir);
    let algorithm = opts.compression.name();
    // Everything must be local before anything is sent.
    let mut items = Vec::new();
    for l in &img.layers {
        if !store.has_blob(&l.digest) {
            return Err(push_err(
                target,
                format!(
                    "layer {} has no stored compressed blob (the image was built locally): pushing such images is not supported yet",
                    l.digest
                ),
            ));
        }
        let gzip = match push_gzip::gzip_media_type(&l.media_type) {
            Some(media_type) => Some(GzipPlan {
                diff_id: l.diff_id.clone(),
                media_type,
                cached: store.compressed_blob(&l.diff_id, algorithm)?,
            }),
            None => None,
        };
        items.push(Item {
            digest: l.digest.clone(),
            path: store.blob_path(&l.digest)?,
            is_config: false,
            gzip,
        });
    }
    items.push(Item {
        digest: img.config_digest(),
        path: store.blob_path(&img.config_digest())?,
        is_config: true,
        gzip: None,
    });
    if !store.has_blob(&img.manifest_digest) {
        return Err(push_err(
            target,
            "the image's manifest is not stored (the image was built locally): pushing such images is not supported yet",
        ));
    }
    let stored_manifest = store.read_blob(&img.manifest_digest)?;
    // Other repositories on the same registry this image is known in, for mounts.
    let sources: Vec<String> = img
        .names
        .iter()
        .filter_map(|n| reference::parse_normalized(n).ok())
        .filter(|r| r.registry == target.registry && r.repository != ep.repository)
        .map(|r| r.repository)
        .collect();

    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = Client::new(ClientConfig {
        protocol: if insecure {
            ClientProtocol::HttpsExcept(vec![ep.host.clone()])
        } else {
            ClientProtocol::Https
        },
        platform_resolver: None,
        connect_timeout: Some(std::time::Duration::from_secs(30)),
        use_monolithic_push: true,
        ..Default::default()
    });
    let auth = match creds {
        Some(c) => RegistryAuth::Basic(c.username, c.password),
        None => RegistryAuth::Anonymous,
    };
    let oref = match (&target.digest, &target.tag) {
        (Some(d), _) => {
            oci_client::Reference::with_digest(ep.host.clone(), ep.repository.clone(), d.clone())
        }
        (None, t) => oci_client::Reference::with_tag(
            ep.host.clone(),
            ep.repository.clone(),
            t.clone().unwrap_or_else(|| "latest".into()),
        ),
    };
    let progress = Progress::new(opts.quiet);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| push_err(target, format!("tokio runtime: {e}")))?;
    let ctx = SendCtx {
        client: &client,
        oref: &oref,
        target,
        sources: &sources,
        host: &ep.host,
        progress: &progress,
        tmp_dir: &tmp_dir,
    };
    let sent: Vec<Sent> = rt.block_on(async {
        client
            .auth(&oref, &auth, RegistryOperation::Push)
            .await
            .map_err(|e| describe(target, e))?;
        progress.message("Getting image source signatures");
        let results: Vec<Result<Option<Sent>, ImageError>> =
            futures_util::stream::iter(items.iter())
                .map(|item| send_item(&ctx, item))
                .buffer_unordered(MAX_PARALLEL_UPLOADS)
                .collect()
                .await;
        results
            .into_iter()
            .filter_map(Result::transpose)
            .collect::<Result<Vec<Sent>, ImageError>>()
    })?;
    for s in &sent {
        let blob = CompressedBlob {
            digest: s.replacement.digest.clone(),
            size: s.replacement.size,
        };
        store.record_compressed_blob(&s.diff_id, algorithm, &blob)?;
    }
    let (manifest, digest) = if sent.is_empty() {
        (stored_manifest, img.manifest_digest.clone())
    } else {
        let replaced: HashMap<String, Replacement> = sent
            .into_iter()
            .map(|s| (s.old_digest, s.replacement))
            .collect();
        let m = push_gzip::rewrite_manifest(&stored_manifest, &replaced)
            .map_err(|e| push_err(target, e))?;
        let d = crate::storage::blobs::sha256_digest(&m);
        (m, d)
    };
    rt.block_on(async {
        progress.message("Writing manifest to image destination");
        let ct: reqwest::header::HeaderValue = img.manifest_media_type.parse().map_err(|_| {
            push_err(
                target,
                format!("bad media type {:?}", img.manifest_media_type),
            )
        })?;
        tracing::debug!(reference = %oref, %digest, "PUT manifest");
        client
            .push_manifest_raw(&oref, manifest, ct)
            .await
            .map_err(|e| describe(target, e))?;
        progress.message("Storing signatures");
        Ok(digest)
    })
}

/// What every upload of one push shares.
struct SendCtx<'a> {
    client: &'a Client,
    oref: &'a oci_client::Reference,
    target: &'a Reference,
    sources: &'a [String],
    host: &'a str,
    progress: &'a Progress,
    tmp_dir: &'a Path,
}

impl SendCtx<'_> {
    fn done(&self, item: &Item, skipped: bool) {
        if item.is_config {
            let short = item
                .digest
                .trim_start_matches("sha256:")
                .chars()
                .take(12)
                .collect::<String>();
            self.progress
                .message(&format!("Copying config {short} done"));
        } else {
            self.progress.blob(&item.digest, None).done(skipped);
        }
    }

    /// Whether the destination has `digest` already, or can mount it from another
    /// repository of the same registry.
    async fn already_there(&self, digest: &str) -> Result<bool, ImageError> {
        tracing::debug!(%digest, "HEAD blob");
        if self
            .client
            .blob_exists(self.oref, digest)
            .await
            .map_err(|e| describe(self.target, e))?
        {
            return Ok(true);
        }
        if let Some(from) = self.sources.first() {
            let src = oci_client::Reference::with_tag(
                self.host.to_string(),
                from.clone(),
                "latest".into(),
            );
            match self.client.mount_blob(self.oref, &src, digest).await {
                Ok(()) => {
                    tracing::debug!(%digest, %from, "mounted blob from another repository");
                    return Ok(true);
                }
                Err(e) => {
                    tracing::debug!(%digest, %from, error = %e, "cannot mount blob, uploading it")
                }
            }
        }
        Ok(false)
    }
}

async fn send_item(ctx: &SendCtx<'_>, item: &Item) -> Result<Option<Sent>, ImageError> {
    let Some(plan) = &item.gzip else {
        if !ctx.already_there(&item.digest).await? {
            upload_file(ctx, &item.digest, &item.path).await?;
            ctx.done(item, false);
        } else {
            ctx.done(item, true);
        }
        return Ok(None);
    };
    let sent = |digest: String, size: u64| Sent {
        old_digest: item.digest.clone(),
        diff_id: plan.diff_id.clone(),
        replacement: Replacement {
            digest,
            size,
            media_type: plan.media_type,
        },
    };
    // Pushed compressed before: if the registry has that blob, nothing to compress.
    if let Some(c) = &plan.cached {
        if ctx.already_there(&c.digest).await? {
            tracing::debug!(layer = %item.digest, compressed = %c.digest, "reusing the compressed blob of an earlier push");
            ctx.done(item, true);
            return Ok(Some(sent(c.digest.clone(), c.size)));
        }
    }
    let (src, tmp) = (item.path.clone(), ctx.tmp_dir.to_path_buf());
    let blob = tokio::task::spawn_blocking(move || push_gzip::gzip_to_temp(&src, &tmp))
        .await
        .map_err(|e| {
            push_err(
                ctx.target,
                format!("compressing layer {}: {e}", item.digest),
            )
        })??;
    let known_missing = plan
        .cached
        .as_ref()
        .is_some_and(|c| c.digest == blob.digest);
    if !known_missing && ctx.already_there(&blob.digest).await? {
        ctx.done(item, true);
    } else {
        upload_file(ctx, &blob.digest, &blob.path).await?;
        ctx.done(item, false);
    }
    Ok(Some(sent(blob.digest.clone(), blob.size)))
}

/// Uploads a file as the blob `digest`, streamed in 1 MiB chunks.
async fn upload_file(ctx: &SendCtx<'_>, digest: &str, path: &Path) -> Result<(), ImageError> {
    let file = std::fs::File::open(path).map_err(|source| ImageError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let size = file
        .metadata()
        .map_err(|source| ImageError::Io {
            path: path.to_path_buf(),
            source,
        })?
        .len();
    let stream = futures_util::stream::unfold(Some(file), |state| async move {
        let mut f = state?;
        let mut buf = vec![0u8; 1 << 20];
        match f.read(&mut buf) {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(bytes::Bytes::from(buf)), Some(f)))
            }
            Err(e) => Some((
                Err(OciDistributionError::GenericError(Some(e.to_string()))),
                None,
            )),
        }
    });
    tracing::debug!(%digest, size, "PUT blob");
    ctx.client
        .push_blob_stream(ctx.oref, stream, digest, Some(size))
        .await
        .map_err(|e| describe(ctx.target, e))?;
    Ok(())
}
