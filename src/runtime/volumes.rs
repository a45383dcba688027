//! Named and anonymous volumes in `run`/`create`: `-v NAME:/path`, `-v /path` and
//! `--mount type=volume,...` get their volume (created on first use, as podman does),
//! and anonymous ones get a name recorded in the container's options, so `start` and
//! `inspect` see the same volume every time.

use super::mount_flag::{parse_mount, MountKind};
use super::spec_mounts::parse_volume;
use super::{ContainerConfig, CreateOptions, RuntimeError};
use crate::storage::volumes::VolumeRecord;
use crate::storage::Store;

/// The options with every anonymous volume named, and the volumes this call created
/// (to remove again if the container cannot be created).
pub fn prepare(
    store: &mut Store,
    opts: &CreateOptions,
) -> Result<(CreateOptions, Vec<String>), RuntimeError> {
    let mut out = opts.clone();
    let mut created = Vec::new();
    let res = (|| {
        for v in out.volumes.iter_mut() {
            let vol = parse_volume(v)?;
            if vol.anonymous {
                let name = crate::storage::random_id();
                ensure(store, &name, true, &mut created)?;
                // `/path[:opts]` becomes `NAME:/path[:opts]`.
                *v = format!("{name}:{v}");
            } else if let Some(name) = &vol.named {
                ensure(store, name, false, &mut created)?;
            }
        }
        for m in out.mounts.iter_mut() {
            let f = parse_mount(m)?;
            if f.kind != MountKind::Volume {
                continue;
            }
            match &f.source {
                Some(name) => ensure(store, name, false, &mut created)?,
                None => {
                    let name = crate::storage::random_id();
                    ensure(store, &name, true, &mut created)?;
                    *m = format!("{m},src={name}");
                }
            }
        }
        Ok(())
    })();
    match res {
        Ok(()) => Ok((out, created)),
        Err(e) => {
            forget(store, &created);
            Err(e)
        }
    }
}

fn ensure(
    store: &mut Store,
    name: &str,
    anonymous: bool,
    created: &mut Vec<String>,
) -> Result<(), RuntimeError> {
    match store.volume(name) {
        Ok(_) => Ok(()),
        Err(crate::storage::StorageError::NoSuchVolume(_)) => {
            store.create_volume(&VolumeRecord {
                name: name.to_string(),
                created: crate::storage::now(),
                labels: Default::default(),
                options: Default::default(),
                anonymous,
            })?;
            created.push(name.to_string());
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Removes volumes created by [`prepare`] for a container that was not created after
/// all. They are empty (no container ever ran with them), so the host user can remove
/// their directories.
pub fn forget(store: &mut Store, names: &[String]) {
    for n in names {
        let _ = std::fs::remove_dir_all(store.volume_dir(n));
        let _ = store.delete_volume(n);
    }
}

/// The names of the volumes a container uses.
pub fn used_by(config: &str) -> Vec<String> {
    let Ok(cfg) = serde_json::from_str::<ContainerConfig>(config) else {
        return Vec::new();
    };
    let mut v: Vec<String> = cfg
        .options
        .volumes
        .iter()
        .filter_map(|s| parse_volume(s).ok()?.named)
        .collect();
    v.extend(cfg.options.mounts.iter().filter_map(|m| {
        let f = parse_mount(m).ok()?;
        (f.kind == MountKind::Volume).then_some(f.source).flatten()
    }));
    v
}

/// IDs of the containers that use volume `name`.
pub fn users(store: &Store, name: &str) -> Result<Vec<String>, RuntimeError> {
    Ok(store
        .containers()?
        .into_iter()
        .filter(|c| used_by(&c.config).iter().any(|n| n == name))
        .map(|c| c.id)
        .collect())
}
