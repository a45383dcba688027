//! The container's ID mapping from --userns/--uidmap/--gidmap at create time: parse,
//! allot an `auto` slice in the store, and unpack the image's layers for the mapping
//! if this is the first container to use it.

use super::RuntimeError;
use crate::storage::images::ImageRecord;
use crate::storage::Store;
use crate::userns::modes::{self, UsernsMode};
use crate::userns::{IdMapping, UsernsError};

/// The mapping a container gets.
pub struct Resolved {
    pub mapping: Option<IdMapping>,
    /// An `auto` slice was allotted to the container (freed with its record).
    pub auto: bool,
    /// keep-id's user when --user is not given.
    pub default_user: Option<String>,
}

pub fn parse(sec: &super::SecurityOptions) -> Result<UsernsMode, RuntimeError> {
    Ok(modes::parse(
        sec.userns.as_deref(),
        &sec.uidmaps,
        &sec.gidmaps,
    )?)
}

fn bad(detail: String) -> RuntimeError {
    RuntimeError::Userns(UsernsError::BadMode {
        flag: "--userns",
        detail,
    })
}

/// Turns the mode into a mapping; `default` is the user's default mapping (None as
/// root). Allots an `auto` slice to `id`, sized from `size=` or from the image.
pub fn resolve(
    store: &mut Store,
    id: &str,
    default: Option<&IdMapping>,
    mode: &UsernsMode,
    image: &ImageRecord,
) -> Result<Resolved, RuntimeError> {
    let own = (store.paths.uid, store.paths.gid);
    let plain = |mapping: Option<IdMapping>| Resolved {
        mapping,
        auto: false,
        default_user: None,
    };
    let root_pool;
    let default = match default {
        Some(d) => d,
        // Root: the default is no user namespace at all.
        None => match mode {
            UsernsMode::Default | UsernsMode::Host => return Ok(plain(None)),
            // podman's own words.
            UsernsMode::KeepId { .. } => {
                return Err(bad("keep-id is only supported in rootless mode".into()))
            }
            UsernsMode::NoMap => {
                return Err(bad("nomap is only supported in rootless mode".into()))
            }
            // Slices of the `containers` user's subordinate IDs, as podman.
            UsernsMode::Auto { .. } => {
                root_pool = IdMapping::for_containers_user()
                    .map_err(|e| bad(e.to_string()))?
                    .ok_or_else(root_auto_error)?;
                &root_pool
            }
            // Root's HOST-IDs are the host's own.
            UsernsMode::Custom { uids, gids } => {
                return Ok(plain(Some(IdMapping {
                    uids: uids.clone(),
                    gids: gids.clone(),
                })))
            }
        },
    };
    let rootful = store.paths.uid == 0;
    let auto_start = match mode {
        UsernsMode::Auto { size, .. } => {
            let n = match size {
                Some(n) => *n,
                None => image_size(store, image, (!rootful).then_some(default)),
            };
            let end = modes::space(&default.uids).min(modes::space(&default.gids));
            match store.allocate_auto_range(id, n, end)? {
                Ok(start) => Some((start, n)),
                Err(full) => {
                    return Err(bad(format!(
                        "auto: could not find enough available IDs: no free range of {n} IDs in your {} subordinate IDs ({} taken by other auto containers): remove some, or give a smaller auto:size=",
                        end.saturating_sub(1),
                        full.used
                    )))
                }
            }
        }
        _ => None,
    };
    let mode_sized = match (mode, auto_start) {
        (UsernsMode::Auto { uids, gids, .. }, Some((_, n))) => UsernsMode::Auto {
            size: Some(n),
            uids: uids.clone(),
            gids: gids.clone(),
        },
        _ => mode.clone(),
    };
    let mapping = modes::rootless_mapping(&mode_sized, default, own, auto_start.map(|a| a.0));
    if mapping.is_err() && auto_start.is_some() {
        let _ = store.release_auto_range(id);
    }
    Ok(Resolved {
        mapping: Some(mapping?),
        auto: auto_start.is_some(),
        default_user: modes::default_user(mode, own),
    })
}

/// Frees the `auto` slice of a container whose create failed before its record was
/// written (the record's deletion frees it otherwise).
pub fn release(store: &mut Store, id: &str, r: &Resolved) {
    if r.auto {
        let _ = store.release_auto_range(id);
    }
}

/// As root, podman takes auto slices from the `containers` user's ranges.
fn root_auto_error() -> RuntimeError {
    bad("auto: cannot find mappings for user \"containers\": no subuid ranges found for user \"containers\" in /etc/subuid: ask an admin to add a range for \"containers\" to /etc/subuid and /etc/subgid".into())
}

/// podman's size for `auto` without `size=`: the highest UID/GID the image's
/// /etc/passwd and /etc/group name (nobody aside) plus one, at least 1024.
fn image_size(store: &Store, image: &ImageRecord, default: Option<&IdMapping>) -> u32 {
    let key = crate::image::pull::mapping_key(default);
    let mut dirs = Vec::new();
    for l in image.layers.iter().rev() {
        if let Ok(Some(d)) = store.layer(&l.diff_id, &key) {
            dirs.push(d);
        }
    }
    let mut max = 0u32;
    for file in ["etc/passwd", "etc/group"] {
        // The topmost layer that has the file wins (whiteouts aside).
        let Some(text) = dirs
            .iter()
            .find_map(|d| std::fs::read_to_string(d.join(file)).ok())
        else {
            continue;
        };
        max = max.max(max_id(&text));
    }
    max.saturating_add(1).max(modes::AUTO_DEFAULT_SIZE)
}

/// The highest ID in the third field of a passwd/group file, ignoring nobody/nogroup.
fn max_id(text: &str) -> u32 {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            let name = *f.first()?;
            let id: u32 = f.get(2)?.parse().ok()?;
            (name != "nobody" && name != "nogroup" && id != 65534).then_some(id)
        })
        .max()
        .unwrap_or(0)
}

/// Unpacks the image's layers for the mapping where missing; frees the `auto` slice
/// if that fails.
pub fn prepare_layers(
    store: &mut Store,
    image: &ImageRecord,
    image_name: &str,
    id: &str,
    r: &Resolved,
) -> Result<(), RuntimeError> {
    let res = crate::image::remap::ensure_layers(store, image, image_name, r.mapping.as_ref());
    if res.is_err() && r.auto {
        let _ = store.release_auto_range(id);
    }
    res.map_err(|e| RuntimeError::Image(Box::new(e)))
}

/// For a mapping that leaves out the user's own IDs (see `crate::userns::reach`): lets
/// the container's root search its way to the layers, the bundle and its volumes, and
/// gives it its writable dirs, generated /etc files and new (empty) volumes.
pub fn prepare_reach(
    store: &Store,
    bundle_dir: &std::path::Path,
    mapping: Option<&IdMapping>,
) -> Result<(), RuntimeError> {
    use crate::userns::reach;
    let own = (store.paths.uid, store.paths.gid);
    let Some(m) = mapping.filter(|m| reach::leaves_out_owner(m, own)) else {
        return Ok(());
    };
    let spec = super::bundle::load_spec(bundle_dir)?;
    let volumes = store.paths.root.join("volumes");
    let mut search = vec![store.paths.layers(), bundle_dir.to_path_buf()];
    let mut chown = vec![bundle_dir.join("upper"), bundle_dir.join("work")];
    for mnt in spec.mounts().iter().flatten() {
        let Some(src) = mnt.source().as_ref() else {
            continue;
        };
        if src.starts_with(bundle_dir) {
            chown.push(src.clone());
        } else if src.starts_with(&volumes) && src.ends_with("_data") {
            if let Some(parent) = src.parent() {
                search.push(parent.to_path_buf());
            }
            // A volume the user's own containers already filled keeps its owners.
            let fresh = std::fs::read_dir(src).is_ok_and(|mut d| d.next().is_none());
            let mine =
                std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(src).map_err(|source| {
                    RuntimeError::Io {
                        path: src.clone(),
                        source,
                    }
                })?) == own.0;
            if fresh && mine {
                chown.push(src.clone());
            }
        }
    }
    reach::make_searchable(&search, own.0)?;
    reach::chown_to_root(&store.paths, m, &chown)?;
    Ok(())
}

/// UidMap and GidMap entries ("CONTAINER:HOST:SIZE") for inspect.
pub type InspectMaps = (Vec<String>, Vec<String>);

/// What `inspect` shows, as podman 4.3.1 does: HostConfig.UsernsMode ("private" for
/// keep-id, nomap and --uidmap, "" for the default and auto, "host") and, for any
/// mapping but the default, IDMappings as "CONTAINER:HOST:SIZE" in podman's rootless
/// terms (host 0 is the user, 1 the first subordinate ID).
pub fn inspect_view(
    sec: &super::SecurityOptions,
    spec: Option<&oci_spec::runtime::Spec>,
    paths: &crate::config::Paths,
) -> (String, Option<InspectMaps>) {
    let mode = parse(sec).unwrap_or(UsernsMode::Default);
    let name = match &mode {
        UsernsMode::Default | UsernsMode::Auto { .. } => "",
        UsernsMode::Host => "host",
        UsernsMode::KeepId { .. } | UsernsMode::NoMap | UsernsMode::Custom { .. } => "private",
    };
    let shown = !matches!(mode, UsernsMode::Default | UsernsMode::Host);
    let mapping = spec.and_then(super::spec::mapping_of).filter(|_| shown);
    let view = mapping.map(|m| {
        let default = paths
            .rootless
            .then(|| IdMapping::for_current_user(paths.uid, paths.gid).ok())
            .flatten();
        let fmt = |v: &[crate::userns::IdRange], d: Option<&[crate::userns::IdRange]>| {
            let v = match d {
                Some(d) => modes::untranslate(d, v),
                None => v.to_vec(),
            };
            v.iter()
                .map(|r| format!("{}:{}:{}", r.inside, r.outside, r.count))
                .collect::<Vec<_>>()
        };
        (
            fmt(&m.uids, default.as_ref().map(|d| d.uids.as_slice())),
            fmt(&m.gids, default.as_ref().map(|d| d.gids.as_slice())),
        )
    });
    (name.to_string(), view)
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwd_max_skips_nobody() {
        let t = "root:x:0:0::/root:/bin/sh\napp:x:1500:1500::/:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n";
        assert_eq!(super::max_id(t), 1500);
        assert_eq!(super::max_id(""), 0);
    }
}
