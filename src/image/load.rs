//! `load`: images into the store from a docker-archive, an oci-archive (tar, also
//! gzip/zstd compressed) or an OCI layout directory. A tar is first spooled into the
//! store's tmp dir (docker puts manifest.json last, and stdin cannot be rewound) while
//! every member is hashed; blobs are then checked against their digests, layers are
//! unpacked by the unpack helper and checked against the config's diff_ids, and only
//! when every layer is good are the blobs, layers and image recorded. Anything less
//! leaves the store as it was.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest};
use sha2::{Digest, Sha256};

use super::archive::{self, archive_err, DockerManifest};
use super::fetch::{self, LayerJob, Source};
use super::progress::Progress;
use super::pull::mapping_key;
use super::reference;
use super::{host_platform, ImageError};
use crate::storage::images::{ImageRecord, LayerRef};
use crate::storage::layers::layer_dir_name;
use crate::storage::Store;
use crate::userns::IdMapping;

/// Where the archive comes from.
pub enum Input {
    /// A tar file, or a directory holding an OCI layout.
    Path(PathBuf),
    Stdin,
}

/// One member of the archive: where its bytes are now, their digest and size.
#[derive(Clone)]
struct Member {
    path: PathBuf,
    digest: String,
    size: u64,
    /// Spooled into our temp dir (may be renamed into the blob store).
    owned: bool,
}

/// The archive's members by cleaned path; a directory input is hashed on demand.
struct Members {
    shown: String,
    spool: Option<PathBuf>,
    dir: Option<PathBuf>,
    files: HashMap<PathBuf, Member>,
    links: HashMap<PathBuf, PathBuf>,
}

impl Drop for Members {
    fn drop(&mut self) {
        if let Some(s) = &self.spool {
            let _ = std::fs::remove_dir_all(s);
        }
    }
}

impl Members {
    fn get(&mut self, name: &str) -> Result<Option<Member>, ImageError> {
        let Some(mut p) = archive::clean_member(Path::new(name)) else {
            return Err(archive_err(
                &self.shown,
                format!("member {name:?} points outside the archive"),
            ));
        };
        for _ in 0..8 {
            match self.links.get(&p) {
                Some(t) => p = t.clone(),
                None => break,
            }
        }
        if let Some(m) = self.files.get(&p) {
            return Ok(Some(m.clone()));
        }
        let Some(dir) = &self.dir else {
            return Ok(None);
        };
        let full = dir.join(&p);
        // Only regular files inside the layout, never through a symlink out of it.
        match std::fs::symlink_metadata(&full) {
            Ok(md) if md.is_file() => {}
            _ => return Ok(None),
        }
        let f = File::open(&full).map_err(|e| io_err(&full, e))?;
        let (digest, size) = hash_copy(f, &mut io::sink()).map_err(|e| io_err(&full, e))?;
        let m = Member {
            path: full,
            digest,
            size,
            owned: false,
        };
        self.files.insert(p, m.clone());
        Ok(Some(m))
    }

    fn read(&mut self, name: &str, limit: u64) -> Result<Option<(Vec<u8>, Member)>, ImageError> {
        let Some(m) = self.get(name)? else {
            return Ok(None);
        };
        if m.size > limit {
            return Err(archive_err(
                &self.shown,
                format!("{name} is larger than {limit} bytes"),
            ));
        }
        let data = std::fs::read(&m.path).map_err(|e| io_err(&m.path, e))?;
        Ok(Some((data, m)))
    }
}

fn io_err(path: &Path, e: io::Error) -> ImageError {
    ImageError::Io {
        path: path.to_path_buf(),
        source: e,
    }
}

/// The tar crate quotes raw header bytes in its errors: keep them printable and short.
fn one_line(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(160)
        .collect();
    if s.chars().count() > 160 {
        out.push_str("...");
    }
    out
}

fn hash_copy(mut r: impl Read, w: &mut dyn Write) -> io::Result<(String, u64)> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        h.update(&buf[..k]);
        w.write_all(&buf[..k])?;
        n += k as u64;
    }
    Ok((format!("sha256:{}", hex::encode(h.finalize())), n))
}

/// Reads a (possibly compressed) tar into `spool`, hashing each regular file.
fn spool(store: &Store, input: Box<dyn Read>, shown: &str) -> Result<Members, ImageError> {
    let dir = store.paths.tmp().join(format!(
        "load-{}-{}",
        std::process::id(),
        hex::encode(crate::storage::random_bytes::<4>())
    ));
    std::fs::create_dir(&dir).map_err(|e| io_err(&dir, e))?;
    let mut members = Members {
        shown: shown.to_string(),
        spool: Some(dir.clone()),
        dir: None,
        files: HashMap::new(),
        links: HashMap::new(),
    };
    let mut input = BufReader::with_capacity(1 << 20, input);
    let head = input
        .fill_buf()
        .map_err(|e| archive_err(shown, format!("reading: {e}")))?;
    if head.is_empty() {
        return Err(archive_err(shown, "the archive is empty"));
    }
    let c = crate::storage::unpack::Compression::sniff(head);
    let reader: Box<dyn Read> = match c {
        crate::storage::unpack::Compression::None => Box::new(input),
        crate::storage::unpack::Compression::Gzip => {
            Box::new(flate2::read::MultiGzDecoder::new(input))
        }
        crate::storage::unpack::Compression::Zstd => Box::new(
            zstd::Decoder::with_buffer(input).map_err(|e| archive_err(shown, e.to_string()))?,
        ),
    };
    let bad = |e: io::Error| {
        archive_err(
            shown,
            format!("not a valid tar archive: {}", one_line(&e.to_string())),
        )
    };
    let mut ar = tar::Archive::new(reader);
    let mut count = 0usize;
    for entry in ar.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let raw = entry.path().map_err(bad)?.into_owned();
        let Some(name) = archive::clean_member(&raw) else {
            continue;
        };
        match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                count += 1;
                let file = dir.join(format!("m{count}"));
                let mut f = File::create(&file).map_err(|e| io_err(&file, e))?;
                let (digest, size) = hash_copy(&mut entry, &mut f).map_err(bad)?;
                // The tar crate only notices a truncated member when reading it.
                if size != entry.header().size().unwrap_or(size) {
                    return Err(bad(io::ErrorKind::UnexpectedEof.into()));
                }
                members.files.insert(
                    name,
                    Member {
                        path: file,
                        digest,
                        size,
                        owned: true,
                    },
                );
            }
            tar::EntryType::Symlink | tar::EntryType::Link => {
                if let Some(t) = entry.link_name().map_err(bad)? {
                    let target = if entry.header().entry_type() == tar::EntryType::Symlink {
                        name.parent().unwrap_or(Path::new("")).join(t)
                    } else {
                        t.into_owned()
                    };
                    if let Some(t) = archive::clean_member(&target) {
                        members.links.insert(name, t);
                    }
                }
            }
            _ => {}
        }
    }
    Ok(members)
}

/// An image found in the archive, checked and ready to unpack.
struct Plan {
    manifest: Vec<u8>,
    manifest_digest: String,
    manifest_media_type: String,
    config: Vec<u8>,
    config_digest: String,
    parsed: ImageConfiguration,
    layers: Vec<(LayerRef, Member)>,
    names: Vec<String>,
}

/// What one loaded image ended up as.
pub struct Loaded {
    pub id: String,
    pub names: Vec<String>,
}

/// Loads every image in `input`; the store is only changed once all of them check out.
pub fn load(
    store: &mut Store,
    input: &Input,
    mapping: Option<&IdMapping>,
    quiet: bool,
) -> Result<Vec<Loaded>, ImageError> {
    clean_stale_spools(store);
    // Collection (rmi, prune) waits while we write blobs and layers no image names yet.
    let _gc = crate::storage::lock::FileLock::gc(&store.paths, false)?;
    let (mut members, shown) = match input {
        Input::Path(p) if p.is_dir() => {
            let shown = p.display().to_string();
            (
                Members {
                    shown: shown.clone(),
                    spool: None,
                    dir: Some(p.clone()),
                    files: HashMap::new(),
                    links: HashMap::new(),
                },
                shown,
            )
        }
        Input::Path(p) => {
            let shown = p.display().to_string();
            let f = File::open(p).map_err(|e| io_err(p, e))?;
            (spool(store, Box::new(f), &shown)?, shown)
        }
        Input::Stdin => {
            let shown = "stdin".to_string();
            (spool(store, Box::new(io::stdin().lock()), &shown)?, shown)
        }
    };
    let plans = if members.get("index.json")?.is_some() {
        oci_plans(&mut members)?
    } else if members.get("manifest.json")?.is_some() {
        docker_plans(&mut members)?
    } else {
        return Err(archive_err(
            &shown,
            "not an image archive: it has neither index.json (oci-archive) nor manifest.json (docker-archive)",
        ));
    };
    if plans.is_empty() {
        return Err(archive_err(&shown, "the archive holds no images"));
    }
    let progress = Progress::new(quiet);
    progress.message("Getting image source signatures");
    unpack_all(store, &plans, mapping, &progress)?;
    let key = mapping_key(mapping);
    let mut loaded = Vec::new();
    for p in &plans {
        for (l, m) in &p.layers {
            keep_blob(store, &l.digest, m)?;
        }
        store.put_blob(&p.config_digest, &p.config)?;
        store.put_blob(&p.manifest_digest, &p.manifest)?;
        let diff_ids: Vec<String> = p.layers.iter().map(|(l, _)| l.diff_id.clone()).collect();
        let img = ImageRecord {
            id: p.config_digest.trim_start_matches("sha256:").to_string(),
            manifest_digest: p.manifest_digest.clone(),
            manifest_media_type: p.manifest_media_type.clone(),
            created: p.parsed.created().clone(),
            pulled: crate::storage::now(),
            size: store.layers_size(&diff_ids, &key)?,
            layers: p.layers.iter().map(|(l, _)| l.clone()).collect(),
            os: p.parsed.os().to_string(),
            arch: p.parsed.architecture().to_string(),
            names: Vec::new(),
        };
        store.put_image(&img, p.names.first().map(String::as_str))?;
        for n in p.names.iter().skip(1) {
            store.tag_image(&img.id, n)?;
        }
        loaded.push(Loaded {
            id: img.id,
            names: p.names.clone(),
        });
    }
    progress.message("Writing manifest to image destination");
    progress.message("Storing signatures");
    Ok(loaded)
}

/// Spool dirs of loads that were killed (their pid is gone).
fn clean_stale_spools(store: &Store) {
    let Ok(rd) = std::fs::read_dir(store.paths.tmp()) else {
        return;
    };
    for e in rd.flatten() {
        let n = e.file_name().to_string_lossy().to_string();
        let Some(rest) = n.strip_prefix("load-") else {
            continue;
        };
        let pid = rest.split('-').next().unwrap_or("");
        if !pid.is_empty() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Moves (spooled) or copies (directory input) a verified layer blob into the store.
fn keep_blob(store: &Store, digest: &str, m: &Member) -> Result<(), ImageError> {
    if store.has_blob(digest) {
        return Ok(());
    }
    let dest = store.blob_path(digest)?;
    if m.owned {
        if let Ok(f) = File::open(&m.path) {
            let _ = f.sync_all();
        }
        if std::fs::rename(&m.path, &dest).is_ok() {
            return Ok(());
        }
    }
    let mut w = crate::storage::blobs::BlobWriter::create(store, digest)?;
    let f = File::open(&m.path).map_err(|e| io_err(&m.path, e))?;
    hash_copy(f, &mut w).map_err(|e| io_err(&m.path, e))?;
    w.commit()?;
    Ok(())
}

/// Unpacks the layers not yet in the store, in parallel; on any failure the layers this
/// load committed are removed again.
fn unpack_all(
    store: &mut Store,
    plans: &[Plan],
    mapping: Option<&IdMapping>,
    progress: &Progress,
) -> Result<(), ImageError> {
    let key = mapping_key(mapping);
    let mut jobs: Vec<(LayerJob, PathBuf)> = Vec::new();
    for p in plans {
        for (l, m) in &p.layers {
            if store.layer(&l.diff_id, &key)?.is_some() {
                progress.blob(&l.digest, None).done(true);
                continue;
            }
            if jobs.iter().any(|(j, _)| j.diff_id == l.diff_id) {
                continue;
            }
            jobs.push((
                LayerJob {
                    image: p
                        .names
                        .first()
                        .cloned()
                        .unwrap_or_else(|| p.config_digest.clone()),
                    digest: l.digest.clone(),
                    diff_id: l.diff_id.clone(),
                    media_type: l.media_type.clone(),
                    size: m.size,
                    dir_name: layer_dir_name(&l.diff_id, &key),
                },
                m.path.clone(),
            ));
        }
    }
    if jobs.is_empty() {
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| io_err(Path::new("tokio runtime"), e))?;
    let paths = store.paths.clone();
    let results: Vec<Result<u64, ImageError>> = rt.block_on(
        futures_util::stream::iter(jobs.iter())
            .map(|(job, file)| fetch::unpack(&paths, Source::File(file), job, mapping, progress))
            .buffered(4)
            .collect(),
    );
    let mut first_err = None;
    let mut committed = Vec::new();
    for ((job, _), r) in jobs.iter().zip(results) {
        match r {
            Ok(size) => committed.push((job, size)),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_err {
        // Only ours: a layer someone else recorded meanwhile (a parallel pull) stays.
        let mut dirs = Vec::new();
        for (j, _) in &committed {
            if store.layer(&j.diff_id, &key)?.is_none() {
                dirs.push(paths.layers().join(&j.dir_name));
            }
        }
        if let Err(re) = crate::userns::remove_trees(&paths, &dirs) {
            tracing::warn!(error = %re, "cannot remove the layers of a failed load");
        }
        return Err(e);
    }
    for (job, size) in committed {
        store.record_layer(&job.diff_id, &key, &job.dir_name, size)?;
    }
    Ok(())
}

/// Checks a config and the layer members against each other; returns the plan.
#[allow(clippy::too_many_arguments)]
fn plan(
    members: &mut Members,
    image: &str,
    manifest: Vec<u8>,
    manifest_digest: String,
    manifest_media_type: String,
    config_name: &str,
    layers: Vec<(String, Option<String>, String)>,
    names: Vec<String>,
) -> Result<Plan, ImageError> {
    let shown = members.shown.clone();
    let bad = |d: String| archive_err(&shown, format!("image {image}: {d}"));
    let (config, cm) = members
        .read(config_name, 64 << 20)?
        .ok_or_else(|| bad(format!("config {config_name} is missing")))?;
    let parsed: ImageConfiguration = serde_json::from_slice(&config)
        .map_err(|e| bad(format!("cannot parse the image config: {e}")))?;
    let diff_ids = parsed.rootfs().diff_ids();
    if diff_ids.len() != layers.len() {
        return Err(bad(format!(
            "{} layers but the config lists {} diff_ids",
            layers.len(),
            diff_ids.len()
        )));
    }
    let mut out = Vec::new();
    for ((name, want_digest, media_type), diff_id) in layers.into_iter().zip(diff_ids) {
        let m = members
            .get(&name)?
            .ok_or_else(|| bad(format!("layer {name} is missing")))?;
        if let Some(w) = &want_digest {
            if *w != m.digest {
                return Err(bad(format!(
                    "layer blob {name} does not match its digest {w}: the archive is corrupt"
                )));
            }
        }
        crate::storage::blobs::digest_hex(diff_id)?;
        out.push((
            LayerRef {
                digest: m.digest.clone(),
                diff_id: diff_id.clone(),
                media_type,
                size: m.size as i64,
            },
            m,
        ));
    }
    Ok(Plan {
        manifest,
        manifest_digest,
        manifest_media_type,
        config,
        config_digest: cm.digest,
        parsed,
        layers: out,
        names,
    })
}

fn blob_name(digest: &str) -> String {
    format!("blobs/{}", digest.replacen(':', "/", 1))
}

fn oci_plans(members: &mut Members) -> Result<Vec<Plan>, ImageError> {
    let shown = members.shown.clone();
    let (idx, _) = members
        .read("index.json", 16 << 20)?
        .ok_or_else(|| archive_err(&shown, "index.json is missing"))?;
    let index: ImageIndex = serde_json::from_slice(&idx)
        .map_err(|e| archive_err(&shown, format!("cannot parse index.json: {e}")))?;
    let mut plans: Vec<Plan> = Vec::new();
    for desc in index.manifests() {
        let ann = desc.annotations().clone().unwrap_or_default();
        let name = ann
            .get(archive::CONTAINERD_NAME)
            .or_else(|| ann.get(archive::REF_NAME))
            .and_then(|n| {
                // A bare tag ("latest") names nothing by itself.
                (n.contains('/') || n.contains(':'))
                    .then(|| reference::parse_normalized(n).ok())
                    .flatten()
            })
            .map(|r| r.to_string());
        let mut digest = desc.digest().to_string();
        let mut media_type = desc.media_type().to_string();
        let (mut body, _) = read_blob(members, &digest)?;
        if media_type.contains("index") || media_type.contains("manifest.list") {
            let inner: ImageIndex = serde_json::from_slice(&body)
                .map_err(|e| archive_err(&shown, format!("cannot parse index {digest}: {e}")))?;
            let (os, arch, _) = host_platform();
            let pick = inner
                .manifests()
                .iter()
                .find(|m| {
                    m.platform().as_ref().is_some_and(|p| {
                        p.os().to_string() == os && p.architecture().to_string() == arch
                    })
                })
                .ok_or_else(|| {
                    archive_err(
                        &shown,
                        format!("index {digest} has no image for {os}/{arch}"),
                    )
                })?;
            digest = pick.digest().to_string();
            media_type = pick.media_type().to_string();
            body = read_blob(members, &digest)?.0;
        }
        // Two names for one manifest: one image with both names.
        if let Some(p) = plans.iter_mut().find(|p| p.manifest_digest == digest) {
            p.names.extend(name);
            continue;
        }
        let manifest: ImageManifest = serde_json::from_slice(&body)
            .map_err(|e| archive_err(&shown, format!("cannot parse manifest {digest}: {e}")))?;
        let config_digest = manifest.config().digest().to_string();
        let layers = manifest
            .layers()
            .iter()
            .map(|l| {
                let d = l.digest().to_string();
                (blob_name(&d), Some(d), l.media_type().to_string())
            })
            .collect();
        let image = name.clone().unwrap_or_else(|| digest.clone());
        let config_name = blob_name(&config_digest);
        let p = plan(
            members,
            &image,
            body,
            digest,
            media_type,
            &config_name,
            layers,
            name.into_iter().collect(),
        )?;
        if p.config_digest != config_digest {
            return Err(archive_err(&shown, format!("image {image}: config blob does not match its digest {config_digest}: the archive is corrupt")));
        }
        plans.push(p);
    }
    Ok(plans)
}

fn read_blob(members: &mut Members, digest: &str) -> Result<(Vec<u8>, Member), ImageError> {
    let shown = members.shown.clone();
    crate::storage::blobs::digest_hex(digest)?;
    let (body, m) = members
        .read(&blob_name(digest), 16 << 20)?
        .ok_or_else(|| archive_err(&shown, format!("blob {digest} is missing")))?;
    if m.digest != digest {
        return Err(archive_err(
            &shown,
            format!("blob {digest} does not match its digest: the archive is corrupt"),
        ));
    }
    Ok((body, m))
}

fn docker_plans(members: &mut Members) -> Result<Vec<Plan>, ImageError> {
    let shown = members.shown.clone();
    let (raw, _) = members
        .read("manifest.json", 16 << 20)?
        .ok_or_else(|| archive_err(&shown, "manifest.json is missing"))?;
    let entries: Vec<DockerManifest> = serde_json::from_slice(&raw)
        .map_err(|e| archive_err(&shown, format!("cannot parse manifest.json: {e}")))?;
    let mut plans = Vec::new();
    for e in entries {
        let mut layers = Vec::new();
        let mut descs = Vec::new();
        for l in &e.layers {
            let m = members
                .get(l)?
                .ok_or_else(|| archive_err(&shown, format!("layer {l} is missing")))?;
            let mut head = [0u8; 8];
            let n = File::open(&m.path)
                .and_then(|mut f| f.read(&mut head))
                .map_err(|err| io_err(&m.path, err))?;
            let mt = archive::layer_media_type(&head[..n]);
            descs.push(serde_json::json!({"mediaType": mt, "digest": m.digest, "size": m.size}));
            layers.push((l.clone(), None, mt.to_string()));
        }
        let (cfg, cm) = members
            .read(&e.config, 64 << 20)?
            .ok_or_else(|| archive_err(&shown, format!("config {} is missing", e.config)))?;
        // docker-archive has no manifest: write an OCI one (podman keeps docker schema2
        // here; both carry the same config, so the image ID is the same).
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": archive::MT_OCI_MANIFEST,
            "config": {"mediaType": archive::MT_OCI_CONFIG, "digest": cm.digest, "size": cfg.len()},
            "layers": descs,
        }))
        .map_err(|err| archive_err(&shown, err.to_string()))?;
        let digest = crate::storage::blobs::sha256_digest(&manifest);
        let mut names = Vec::new();
        for t in e.repo_tags.iter().flatten() {
            let r = reference::parse_normalized(t)
                .map_err(|err| archive_err(&shown, format!("RepoTags: {err}")))?;
            names.push(r.to_string());
        }
        let image = names.first().cloned().unwrap_or_else(|| cm.digest.clone());
        plans.push(plan(
            members,
            &image,
            manifest,
            digest,
            archive::MT_OCI_MANIFEST.to_string(),
            &e.config,
            layers,
            names,
        )?);
    }
    Ok(plans)
}
