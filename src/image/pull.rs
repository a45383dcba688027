//! Pulling: resolve a name to candidates, fetch the manifest (picking this host's
//! platform from an index), the config, and the layers. Layers stream in parallel from
//! the registry into the blob store and, at the same time, into an unpack helper running
//! in the user namespace, so download, decompression, hashing and writing overlap.

use futures_util::StreamExt;
use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest};

use super::fetch::{self, LayerJob};
use super::progress::Progress;
use super::reference::{self, Reference};
use super::registry::{FetchError, Registry};
use super::{host_platform, ImageError};
use crate::config::auth;
use crate::config::registries::Registries;
use crate::storage::images::{ImageRecord, LayerRef};
use crate::storage::layers::layer_dir_name;
use crate::storage::Store;
use crate::userns::IdMapping;

/// When `run`/`create` fetch an image, as podman's --pull.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    Always,
    Missing,
    Never,
    Newer,
}

pub struct PullOptions {
    pub quiet: bool,
    /// Some(false) forces plain HTTP / no verification, as --tls-verify=false.
    pub tls_verify: Option<bool>,
    /// The ID mapping layers are unpacked for (None: rootful, host IDs).
    pub mapping: Option<IdMapping>,
    /// `--platform`: pick this (os, arch, variant) from an index instead of the host's.
    pub platform: Option<Platform>,
}

/// An image platform: os, architecture and optional variant (e.g. linux/arm64/v8).
pub type Platform = (String, String, Option<String>);

/// Parses `os/arch[/variant]`, with the architecture spelled as Go does (`x86_64` is
/// `amd64`, `aarch64` is `arm64`), as podman's --platform accepts.
pub fn parse_platform(s: &str) -> Option<Platform> {
    let parts: Vec<&str> = s.split('/').collect();
    let ok = |p: &&str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !(2..=3).contains(&parts.len()) || !parts.iter().all(ok) {
        return None;
    }
    let arch = match parts[1] {
        "x86_64" | "x86-64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    };
    Some((
        parts[0].to_ascii_lowercase(),
        arch.to_ascii_lowercase(),
        parts.get(2).map(|v| v.to_ascii_lowercase()),
    ))
}

const MAX_PARALLEL_LAYERS: usize = 4;

/// The fully qualified names an input may mean, most likely first.
pub fn candidates(input: &str) -> Result<Vec<Reference>, ImageError> {
    match reference::parse_short(input)? {
        reference::ShortOrFull::Full(r) => Ok(vec![r]),
        reference::ShortOrFull::Short(_) => Ok(Registries::load()?.resolve(input)?),
    }
}

/// Looks an image up locally by what the user typed (ID, full name or short name).
pub fn find_local(store: &Store, input: &str) -> Result<ImageRecord, ImageError> {
    let names: Vec<String> = match candidates(input) {
        Ok(c) => c.iter().map(|r| r.to_string()).collect(),
        // IDs and odd inputs are not references; the store still matches IDs.
        Err(_) => Vec::new(),
    };
    Ok(store.find_image(input, &names)?)
}

/// The image for `run`/`create`, pulled according to the policy.
pub fn get_image(
    store: &mut Store,
    input: &str,
    policy: PullPolicy,
    opts: &PullOptions,
) -> Result<ImageRecord, ImageError> {
    // With --platform, a local image of another platform does not count as present.
    let local = find_local(store, input).and_then(|img| match &opts.platform {
        Some((os, arch, _))
            if policy != PullPolicy::Never && (&img.os != os || &img.arch != arch) =>
        {
            Err(ImageError::NotPresent(input.to_string()))
        }
        _ => Ok(img),
    });
    match (policy, local) {
        (PullPolicy::Never, Ok(img)) | (PullPolicy::Missing, Ok(img)) => Ok(img),
        (PullPolicy::Never, Err(_)) => Err(ImageError::NotPresent(input.to_string())),
        (PullPolicy::Newer, Ok(img)) => Ok(pull(store, input, opts).unwrap_or(img)),
        _ => pull(store, input, opts),
    }
}

/// Pulls `input` (trying each candidate for a short name) and returns the stored image.
pub fn pull(store: &mut Store, input: &str, opts: &PullOptions) -> Result<ImageRecord, ImageError> {
    let cands = candidates(input)?;
    let regs = Registries::load()?;
    // A pull killed earlier (kill -9, power loss) leaves temp files that nothing uses;
    // clear them so they do not pile up. Their owners' pids tell live from dead.
    let (dirs, blobs) = store.stale_temps();
    for b in blobs {
        let _ = std::fs::remove_file(b);
    }
    if !dirs.is_empty() {
        if let Err(e) = crate::userns::remove_trees(&store.paths, &dirs) {
            tracing::warn!(error = %e, "cannot remove temp layers of an interrupted pull");
        }
    }
    // Collection (rmi, prune) waits while we write blobs and layers no image names yet.
    let _gc = crate::storage::lock::FileLock::gc(&store.paths, false)?;
    let progress = Progress::new(opts.quiet);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| ImageError::Io {
            path: "tokio runtime".into(),
            source,
        })?;
    let mut tried = Vec::new();
    let mut first_err = None;
    for cand in &cands {
        progress.message(&format!("Trying to pull {cand}..."));
        match rt.block_on(pull_reference(store, &regs, cand, opts, &progress)) {
            Ok(img) => return Ok(img),
            Err(PullError::NotFound(detail)) => {
                tracing::debug!(candidate = %cand, %detail, "not found");
                tried.push(cand.to_string());
            }
            Err(PullError::Fatal(e)) => {
                tried.push(cand.to_string());
                if cands.len() == 1 {
                    return Err(e);
                }
                tracing::debug!(candidate = %cand, error = %e, "pull failed");
                first_err.get_or_insert(e);
            }
        }
    }
    Err(first_err.unwrap_or_else(|| ImageError::NotFound {
        input: input.to_string(),
        tried: tried.join(", "),
    }))
}

enum PullError {
    NotFound(String),
    Fatal(ImageError),
}

impl From<ImageError> for PullError {
    fn from(e: ImageError) -> Self {
        PullError::Fatal(e)
    }
}

impl From<crate::storage::StorageError> for PullError {
    fn from(e: crate::storage::StorageError) -> Self {
        PullError::Fatal(e.into())
    }
}

async fn pull_reference(
    store: &mut Store,
    regs: &Registries,
    r: &Reference,
    opts: &PullOptions,
    progress: &Progress,
) -> Result<ImageRecord, PullError> {
    let endpoints = regs.endpoints(r).map_err(ImageError::from)?;
    let mut last = PullError::NotFound(format!("no endpoint for {r}"));
    for ep in endpoints {
        let insecure = ep.insecure || opts.tls_verify == Some(false);
        let creds = auth::lookup(&ep.host, &ep.repository).map_err(ImageError::from)?;
        let reg = Registry::new(&ep.host, &ep.repository, insecure, creds);
        match pull_from(store, &reg, r, opts, progress).await {
            Ok(img) => return Ok(img),
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn registry_err(r: &Reference, host: &str, e: FetchError) -> PullError {
    match e {
        FetchError::NotFound(d) => PullError::NotFound(d),
        FetchError::Other(detail) => PullError::Fatal(ImageError::Registry {
            image: r.to_string(),
            registry: host.to_string(),
            detail,
        }),
    }
}

fn invalid(r: &Reference, detail: impl Into<String>) -> PullError {
    PullError::Fatal(ImageError::Invalid {
        image: r.to_string(),
        detail: detail.into(),
    })
}

async fn pull_from(
    store: &mut Store,
    reg: &Registry,
    r: &Reference,
    opts: &PullOptions,
    progress: &Progress,
) -> Result<ImageRecord, PullError> {
    let anchor = r.reference_for_registry().to_string();
    let (mut body, mut digest) = reg
        .manifest(&anchor)
        .await
        .map_err(|e| registry_err(r, reg.host(), e))?;
    let mut media_type = media_type_of(&body);
    if media_type.contains("index") || media_type.contains("manifest.list") {
        let index: ImageIndex = serde_json::from_slice(&body)
            .map_err(|e| invalid(r, format!("cannot parse image index: {e}")))?;
        let chosen = choose_platform(r, &index, opts.platform.as_ref())?;
        let (b, d) = reg
            .manifest(&chosen)
            .await
            .map_err(|e| registry_err(r, reg.host(), e))?;
        body = b;
        digest = d;
        media_type = media_type_of(&body);
    }
    let manifest: ImageManifest = serde_json::from_slice(&body)
        .map_err(|e| invalid(r, format!("cannot parse image manifest: {e}")))?;
    let config_digest = manifest.config().digest().to_string();
    progress.message("Getting image source signatures");
    let config_bytes = if store.has_blob(&config_digest) {
        store.read_blob(&config_digest)?
    } else {
        reg.blob_bytes(&anchor, &config_digest)
            .await
            .map_err(|e| registry_err(r, reg.host(), e))?
    };
    if crate::storage::blobs::sha256_digest(&config_bytes) != config_digest {
        return Err(invalid(
            r,
            format!("config blob does not match its digest {config_digest}"),
        ));
    }
    let config: ImageConfiguration = serde_json::from_slice(&config_bytes)
        .map_err(|e| invalid(r, format!("cannot parse image config: {e}")))?;
    let diff_ids = config.rootfs().diff_ids().clone();
    if diff_ids.len() != manifest.layers().len() {
        return Err(invalid(
            r,
            format!(
                "manifest has {} layers but the config lists {} diff_ids",
                manifest.layers().len(),
                diff_ids.len()
            ),
        ));
    }
    let mapping_key = mapping_key(opts.mapping.as_ref());
    let layers: Vec<LayerRef> = manifest
        .layers()
        .iter()
        .zip(&diff_ids)
        .map(|(d, diff)| LayerRef {
            digest: d.digest().to_string(),
            diff_id: diff.clone(),
            media_type: d.media_type().to_string(),
            size: d.size() as i64,
        })
        .collect();

    // Layers already unpacked for this mapping are shared, not fetched again (unless
    // their kept blob went missing, e.g. removed as corrupt by `system check --repair`).
    let mut jobs = Vec::new();
    for l in &layers {
        if store.layer(&l.diff_id, &mapping_key)?.is_some() && store.has_blob(&l.digest) {
            progress.blob(&l.digest, None).done(true);
            continue;
        }
        if jobs.iter().any(|j: &LayerJob| j.diff_id == l.diff_id) {
            continue;
        }
        jobs.push(LayerJob {
            image: r.to_string(),
            digest: l.digest.clone(),
            diff_id: l.diff_id.clone(),
            media_type: l.media_type.clone(),
            size: l.size as u64,
            dir_name: layer_dir_name(&l.diff_id, &mapping_key),
        });
    }
    let paths = store.paths.clone();
    let key = mapping_key.as_str();
    // `buffered` keeps the results in job order while running up to N at once.
    let results: Vec<Result<u64, ImageError>> = futures_util::stream::iter(jobs.iter())
        .map(|job| locked_fetch(&paths, reg, &anchor, job, key, opts, progress))
        .buffered(MAX_PARALLEL_LAYERS)
        .collect()
        .await;
    // Every layer that made it is recorded already, even when another failed: the next
    // pull reuses it.
    let mut first_err = None;
    for res in results {
        if let Err(e) = res {
            first_err.get_or_insert(e);
        }
    }
    if let Some(e) = first_err {
        return Err(e.into());
    }
    progress.message(&format!("Copying config {} done", &config_digest[7..19]));
    progress.message("Writing manifest to image destination");
    store.put_blob(&config_digest, &config_bytes)?;
    store.put_blob(&digest, &body)?;
    let size = store.layers_size(&diff_ids, &mapping_key)?;
    let img = ImageRecord {
        id: config_digest.trim_start_matches("sha256:").to_string(),
        manifest_digest: digest,
        manifest_media_type: media_type,
        created: config.created().clone(),
        pulled: crate::storage::now(),
        size,
        layers,
        os: config.os().to_string(),
        arch: config.architecture().to_string(),
        names: Vec::new(),
    };
    store.put_image(&img, Some(&r.to_string()))?;
    progress.message("Storing signatures");
    Ok(store.image_by_id(&img.id)?.unwrap_or(img))
}

/// Fetches one layer under its per-layer lock, so parallel pulls of images that share
/// it fetch it once: whoever waited finds it recorded and skips the download. The
/// layer is recorded before the lock is released.
async fn locked_fetch(
    paths: &crate::config::Paths,
    reg: &Registry,
    anchor: &str,
    job: &LayerJob,
    key: &str,
    opts: &PullOptions,
    progress: &Progress,
) -> Result<u64, ImageError> {
    let lock_paths = paths.clone();
    let dir = job.dir_name.clone();
    // flock blocks: wait on a blocking thread so our other layers keep streaming.
    let lock = tokio::task::spawn_blocking(move || {
        crate::storage::layer_build::layer_lock(&lock_paths, &dir)
    })
    .await
    .map_err(|e| ImageError::Io {
        path: paths.runroot.join("locks"),
        source: std::io::Error::other(e.to_string()),
    })??;
    let mut store = Store::open(paths)?;
    if store.layer(&job.diff_id, key)?.is_some() && store.has_blob(&job.digest) {
        progress.blob(&job.digest, None).done(true);
        drop(lock);
        return Ok(store
            .layers_size(std::slice::from_ref(&job.diff_id), key)?
            .max(0) as u64);
    }
    let size =
        fetch::fetch_and_unpack(paths, reg, anchor, job, opts.mapping.as_ref(), progress).await?;
    store.record_layer(&job.diff_id, key, &job.dir_name, size)?;
    drop(lock);
    Ok(size)
}

/// The parsing half of a pull, for the fuzz target (crate::fuzzing): the bytes as an
/// index (choosing the host's platform), a manifest and a config, as `pull_from`
/// treats what a registry sends.
pub(crate) fn parse_untrusted(body: &[u8]) {
    let r = Reference {
        registry: "fuzz.invalid".into(),
        repository: "fuzz".into(),
        tag: Some("latest".into()),
        digest: None,
    };
    let media_type = media_type_of(body);
    if media_type.contains("index") || media_type.contains("manifest.list") {
        if let Ok(index) = serde_json::from_slice::<ImageIndex>(body) {
            let _ = choose_platform(&r, &index, None);
        }
    }
    if let Ok(m) = serde_json::from_slice::<ImageManifest>(body) {
        let _ = m.config().digest().to_string();
        for l in m.layers() {
            let _ = layer_dir_name(l.digest().as_ref(), "host");
        }
    }
    if let Ok(c) = serde_json::from_slice::<ImageConfiguration>(body) {
        let _ = (c.rootfs().diff_ids().len(), c.os().to_string(), c.created());
    }
}

/// The key unpacked layers are stored under for a mapping ("host" when rootful).
pub fn mapping_key(m: Option<&IdMapping>) -> String {
    m.map(|m| m.key()).unwrap_or_else(|| "host".to_string())
}

fn media_type_of(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
    }
    match serde_json::from_slice::<Probe>(body) {
        Ok(Probe {
            media_type: Some(m),
            ..
        }) => m,
        Ok(Probe {
            manifests: Some(_), ..
        }) => "application/vnd.oci.image.index.v1+json".into(),
        _ => "application/vnd.oci.image.manifest.v1+json".into(),
    }
}

fn choose_platform(
    r: &Reference,
    index: &ImageIndex,
    want: Option<&Platform>,
) -> Result<String, PullError> {
    let (os, arch, variant) = want.cloned().unwrap_or_else(host_platform);
    let mut best: Option<(u8, String)> = None;
    let mut available = Vec::new();
    for m in index.manifests() {
        let Some(p) = m.platform() else { continue };
        let p_os = p.os().to_string();
        let p_arch = p.architecture().to_string();
        let p_var = p.variant().clone();
        available.push(match &p_var {
            Some(v) => format!("{p_os}/{p_arch}/{v}"),
            None => format!("{p_os}/{p_arch}"),
        });
        // An explicitly requested variant (--platform linux/arm/v7) must match.
        let variant_differs =
            want.is_some() && matches!((&p_var, &variant), (Some(a), Some(b)) if a != b);
        if p_os != os || p_arch != arch || variant_differs {
            continue;
        }
        let score = match (&p_var, &variant) {
            (Some(a), Some(b)) if a == b => 2,
            (None, _) => 1,
            _ => 0,
        };
        if best.as_ref().map(|(s, _)| score > *s).unwrap_or(true) {
            best = Some((score, m.digest().to_string()));
        }
    }
    best.map(|(_, d)| d).ok_or_else(|| {
        PullError::Fatal(ImageError::NoPlatform {
            image: r.to_string(),
            platform: format!("{os}/{arch}"),
            available: available.join(", "),
        })
    })
}
