//! Layers for an ID mapping other than the one the image was pulled for (`--userns=
//! keep-id`, `auto`, `nomap`, `--uidmap`): file owners on disk depend on the mapping and
//! rootless idmapped mounts are refused on ext4, so each mapping gets its own copy,
//! unpacked once from the stored compressed blobs (no registry) and shared by every
//! container with that mapping.

use futures_util::StreamExt;

use super::fetch::{self, LayerJob, Source};
use super::progress::Progress;
use super::ImageError;
use crate::storage::images::ImageRecord;
use crate::storage::layers::layer_dir_name;
use crate::storage::lock::FileLock;
use crate::storage::Store;
use crate::userns::IdMapping;

const MAX_PARALLEL_LAYERS: usize = 4;

/// Makes sure every layer of `image` is unpacked for `mapping`; unpacks the missing ones
/// from the blob store, up to four at a time.
pub fn ensure_layers(
    store: &mut Store,
    image: &ImageRecord,
    image_name: &str,
    mapping: Option<&IdMapping>,
) -> Result<(), ImageError> {
    let key = super::pull::mapping_key(mapping);
    let missing = |store: &Store| -> Result<Vec<LayerJob>, ImageError> {
        let mut jobs: Vec<LayerJob> = Vec::new();
        for l in &image.layers {
            if store.layer(&l.diff_id, &key)?.is_some()
                || jobs.iter().any(|j| j.diff_id == l.diff_id)
            {
                continue;
            }
            jobs.push(LayerJob {
                image: image_name.to_string(),
                digest: l.digest.clone(),
                diff_id: l.diff_id.clone(),
                media_type: l.media_type.clone(),
                size: l.size as u64,
                dir_name: layer_dir_name(&l.diff_id, &key),
            });
        }
        Ok(jobs)
    };
    if missing(store)?.is_empty() {
        return Ok(());
    }
    // One copy per mapping: a second create for the same mapping waits, then finds it.
    let _gc = FileLock::gc(&store.paths, false)?;
    let _lock = FileLock::exclusive(&store.paths.runroot.join("locks").join("remap"))?;
    let jobs = missing(store)?;
    let mut blobs = Vec::new();
    for j in &jobs {
        let p = store.blob_path(&j.digest)?;
        if !p.exists() {
            return Err(ImageError::Unpack {
                image: image_name.to_string(),
                digest: j.digest.clone(),
                detail: format!(
                    "the compressed layer is not in the store, so it cannot be unpacked for this ID mapping: pull {image_name} again"
                ),
            });
        }
        blobs.push(p);
    }
    tracing::debug!(layers = jobs.len(), mapping = %key, "unpack layers for an ID mapping");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| ImageError::Io {
            path: "tokio runtime".into(),
            source,
        })?;
    let progress = Progress::new(true);
    let paths = store.paths.clone();
    // A mapping without the user's own ID (nomap, auto) could not write into the store:
    // the helper gets the user too, at an ID no image uses.
    let helper_mapping =
        mapping.map(|m| crate::userns::reach::with_owner(m, (store.paths.uid, store.paths.gid)));
    let mapping = helper_mapping.as_ref();
    let results: Vec<Result<u64, ImageError>> = rt.block_on(
        futures_util::stream::iter(jobs.iter().zip(&blobs))
            .map(|(job, blob)| fetch::unpack(&paths, Source::File(blob), job, mapping, &progress))
            .buffered(MAX_PARALLEL_LAYERS)
            .collect(),
    );
    let mut first_err = None;
    for (job, res) in jobs.iter().zip(results) {
        match res {
            Ok(size) => store.record_layer(&job.diff_id, &key, &job.dir_name, size)?,
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    first_err.map_or(Ok(()), Err)
}
