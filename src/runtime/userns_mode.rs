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
/// root). Allots an `auto` slice to `id`.
pub fn resolve(
    store: &mut Store,
    id: &str,
    default: Option<&IdMapping>,
    mode: &UsernsMode,
) -> Result<Resolved, RuntimeError> {
    let own = (store.paths.uid, store.paths.gid);
    let plain = |mapping: Option<IdMapping>| Resolved {
        mapping,
        auto: false,
        default_user: None,
    };
    let Some(default) = default else {
        // Root: the default is no user namespace at all.
        return match mode {
            UsernsMode::Default | UsernsMode::Host => Ok(plain(None)),
            UsernsMode::KeepId { .. } | UsernsMode::NoMap => Err(bad(
                "keep-id and nomap are only supported in rootless mode: as root, use --uidmap".into(),
            )),
            UsernsMode::Auto { .. } | UsernsMode::Custom { .. } => Err(bad(
                "user namespaces for root containers (--userns=auto, --uidmap) are not supported yet: run rootless, or without these flags".into(),
            )),
        };
    };
    if let Some(what) = leaves_out_own_ids(mode, default, own) {
        return Err(bad(format!(
            "{what}: mappings that leave out your own UID and GID are not supported yet (the store is private to your UID, so the container could not reach its files): use --userns=keep-id, or a --uidmap/--gidmap that maps 0:0:1"
        )));
    }
    let auto_start = match mode {
        UsernsMode::Auto { size } => {
            let n = size.unwrap_or(modes::AUTO_DEFAULT_SIZE);
            let end = modes::space(&default.uids).min(modes::space(&default.gids));
            match store.allocate_auto_range(id, n, end)? {
                Ok(start) => Some(start),
                Err(full) => {
                    return Err(bad(format!(
                        "auto: no free range of {n} IDs left in your {} subordinate IDs ({} taken by other auto containers): remove some, or ask for a smaller size=",
                        end.saturating_sub(1),
                        full.used
                    )))
                }
            }
        }
        _ => None,
    };
    let mapping = modes::rootless_mapping(mode, default, own, auto_start);
    if mapping.is_err() && auto_start.is_some() {
        let _ = store.release_auto_range(id);
    }
    Ok(Resolved {
        mapping: Some(mapping?),
        auto: auto_start.is_some(),
        default_user: modes::default_user(mode, own),
    })
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

/// Names the mode when its mapping would not map the user's own UID and GID.
fn leaves_out_own_ids(
    mode: &UsernsMode,
    default: &IdMapping,
    own: (u32, u32),
) -> Option<&'static str> {
    match mode {
        UsernsMode::NoMap => Some("nomap"),
        UsernsMode::Auto { .. } => Some("auto"),
        UsernsMode::Custom { .. } => {
            let m = modes::rootless_mapping(mode, default, own, None).ok()?;
            let has = |v: &[crate::userns::IdRange], id: u32| {
                v.iter()
                    .any(|r| id >= r.outside && (id as u64) < r.outside as u64 + r.count as u64)
            };
            (!(has(&m.uids, own.0) && has(&m.gids, own.1))).then_some("--uidmap/--gidmap")
        }
        _ => None,
    }
}
