//! `push`: sends an image's stored blobs (compressed layers, config, manifest) byte for
//! byte, so its manifest digest and image ID are the same at the destination. Blobs the
//! destination repository already has are skipped (HEAD); a blob that came from another
//! repository on the same registry is mounted from there instead of uploaded.

use std::io::Read;

use futures_util::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, RegistryOperation};

use super::progress::Progress;
use super::reference::{self, Reference};
use super::ImageError;
use crate::config::auth;
use crate::config::registries::Registries;
use crate::storage::images::ImageRecord;
use crate::storage::Store;

pub struct PushOptions {
    pub quiet: bool,
    /// Some(false) forces plain HTTP, as --tls-verify=false.
    pub tls_verify: Option<bool>,
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

/// Pushes the local image `input` to `dest` (or its own name); returns the manifest
/// digest at the destination.
pub fn push(
    store: &Store,
    img: &ImageRecord,
    target: &Reference,
    opts: &PushOptions,
) -> Result<String, ImageError> {
    let regs = Registries::load()?;
    let ep = regs.push_endpoint(target);
    let insecure = ep.insecure || opts.tls_verify == Some(false);
    let creds = auth::lookup(&ep.host, &ep.repository)?;
    // Everything must be local before anything is sent.
    let mut blobs = Vec::new();
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
        let path = store.blob_path(&l.digest)?;
        blobs.push((l.digest.clone(), path, false));
    }
    blobs.push((
        img.config_digest(),
        store.blob_path(&img.config_digest())?,
        true,
    ));
    if !store.has_blob(&img.manifest_digest) {
        return Err(push_err(
            target,
            "the image's manifest is not stored (the image was built locally): pushing such images is not supported yet",
        ));
    }
    let manifest = store.read_blob(&img.manifest_digest)?;
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
    rt.block_on(async {
        client
            .auth(&oref, &auth, RegistryOperation::Push)
            .await
            .map_err(|e| describe(target, e))?;
        progress.message("Getting image source signatures");
        let results: Vec<Result<(), ImageError>> = futures_util::stream::iter(blobs.iter())
            .map(|(digest, path, is_config)| {
                send_blob(
                    &client, &oref, target, digest, path, *is_config, &sources, &ep.host, &progress,
                )
            })
            .buffer_unordered(MAX_PARALLEL_UPLOADS)
            .collect()
            .await;
        results
            .into_iter()
            .collect::<Result<Vec<()>, ImageError>>()?;
        progress.message("Writing manifest to image destination");
        let ct: reqwest::header::HeaderValue = img.manifest_media_type.parse().map_err(|_| {
            push_err(
                target,
                format!("bad media type {:?}", img.manifest_media_type),
            )
        })?;
        tracing::debug!(reference = %oref, "PUT manifest");
        client
            .push_manifest_raw(&oref, manifest, ct)
            .await
            .map_err(|e| describe(target, e))?;
        progress.message("Storing signatures");
        Ok(img.manifest_digest.clone())
    })
}

#[allow(clippy::too_many_arguments)]
async fn send_blob(
    client: &Client,
    oref: &oci_client::Reference,
    target: &Reference,
    digest: &str,
    path: &std::path::Path,
    is_config: bool,
    sources: &[String],
    host: &str,
    progress: &Progress,
) -> Result<(), ImageError> {
    let short = digest
        .trim_start_matches("sha256:")
        .chars()
        .take(12)
        .collect::<String>();
    let done = |skipped: bool| {
        if is_config {
            progress.message(&format!("Copying config {short} done"));
        } else {
            progress.blob(digest, None).done(skipped);
        }
    };
    tracing::debug!(%digest, "HEAD blob");
    if client
        .blob_exists(oref, digest)
        .await
        .map_err(|e| describe(target, e))?
    {
        done(true);
        return Ok(());
    }
    if let Some(from) = sources.first() {
        let src = oci_client::Reference::with_tag(host.to_string(), from.clone(), "latest".into());
        match client.mount_blob(oref, &src, digest).await {
            Ok(()) => {
                tracing::debug!(%digest, %from, "mounted blob from another repository");
                done(true);
                return Ok(());
            }
            Err(e) => {
                tracing::debug!(%digest, %from, error = %e, "cannot mount blob, uploading it")
            }
        }
    }
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
    client
        .push_blob_stream(oref, stream, digest, Some(size))
        .await
        .map_err(|e| describe(target, e))?;
    done(false);
    Ok(())
}
