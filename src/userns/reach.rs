//! Containers whose mapping leaves out the user's own UID/GID (`--userns=nomap`,
//! `auto`, some `--uidmap`s). Their root is a subordinate ID, so every file the engine
//! creates as the user (upper/work dirs, /etc/hosts, resolv.conf, hostname, a new
//! volume's `_data`) would be `nobody` inside and not writable; and the store's
//! directories, private to the user, could not even be searched by the container's
//! init, which mounts the rootfs and the volumes from inside the container's user
//! namespace.
//!
//! Chosen layout (podman's, not a two-level namespace): the files the container must own
//! are chowned to its root by a helper inside a user namespace that maps both the
//! container's root and the user, and the directories on the way to the store's layers,
//! the container's bundle and its volumes get the search bit for group and others (no read
//! bit: names stay unlistable), as containers-storage makes them 0711. Layer copies for
//! such a mapping are unpacked by a helper whose mapping adds the user's own ID at an
//! ID no image uses, so it can write into the store.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use super::{spawn_helper, IdMapping, IdRange, UsernsError};
use crate::config::Paths;

/// The container ID under which helpers see the user's own files: far above any ID an
/// image's files carry, and below (uid_t)-1.
pub const OWNER_SLOT: u32 = u32::MAX - 1;

fn maps(v: &[IdRange], host: u32) -> bool {
    v.iter()
        .any(|r| host >= r.outside && (host as u64) < r.outside as u64 + r.count as u64)
}

/// True when the container's mapping maps neither the user's UID nor GID as such.
pub fn leaves_out_owner(m: &IdMapping, own: (u32, u32)) -> bool {
    !maps(&m.uids, own.0) || !maps(&m.gids, own.1)
}

/// The mapping for a helper that must write the store while creating files for `m`
/// (layer unpack): `m` plus the user at [`OWNER_SLOT`], where `m` leaves the user out.
pub fn with_owner(m: &IdMapping, own: (u32, u32)) -> IdMapping {
    let add = |v: &[IdRange], id: u32| {
        let mut v = v.to_vec();
        if !maps(&v, id) {
            v.push(IdRange {
                inside: OWNER_SLOT,
                outside: id,
                count: 1,
            });
        }
        v
    };
    IdMapping {
        uids: add(&m.uids, own.0),
        gids: add(&m.gids, own.1),
    }
}

fn host_root(v: &[IdRange]) -> Option<u32> {
    v.iter().find(|r| r.inside == 0).map(|r| r.outside)
}

fn err(path: &Path, detail: impl std::fmt::Display) -> UsernsError {
    UsernsError::Handshake(format!("{}: {detail}", path.display()))
}

/// Gives `dirs` and each of their ancestors the search bit for group and others where
/// they lack it (podman's 0711); a directory the user does not own and others cannot search is an error naming it.
pub fn make_searchable(dirs: &[PathBuf], own_uid: u32) -> Result<(), UsernsError> {
    for d in dirs {
        for a in d.ancestors() {
            if a.as_os_str().is_empty() {
                continue;
            }
            let md = std::fs::metadata(a).map_err(|e| err(a, e))?;
            let mode = md.permissions().mode();
            // The group bit too: the init still carries the user's own groups when it
            // mounts, and the owner group's bits then apply instead of others'.
            if mode & 0o011 == 0o011 || (md.uid() != own_uid && mode & 0o001 != 0) {
                continue;
            }
            if md.uid() != own_uid {
                return Err(err(
                    a,
                    "the container's root (a subordinate ID) cannot search this directory: run `chmod o+x` on it, or use a mapping that includes your own UID",
                ));
            }
            tracing::debug!(path = %a.display(), "chmod go+x for a mapping without the user's ID");
            std::fs::set_permissions(a, std::fs::Permissions::from_mode((mode | 0o011) & 0o7777))
                .map_err(|e| err(a, e))?;
        }
    }
    Ok(())
}

/// Chowns `files` (under the store root) to the container's root, from a helper in a
/// user namespace that maps that root (as 0) and the user.
pub fn chown_to_root(paths: &Paths, m: &IdMapping, files: &[PathBuf]) -> Result<(), UsernsError> {
    if files.is_empty() {
        return Ok(());
    }
    let (Some(ru), Some(rg)) = (host_root(&m.uids), host_root(&m.gids)) else {
        return Ok(());
    };
    let one = |host: u32, own: u32| {
        let mut v = vec![IdRange {
            inside: 0,
            outside: host,
            count: 1,
        }];
        if host != own {
            v.push(IdRange {
                inside: OWNER_SLOT,
                outside: own,
                count: 1,
            });
        }
        v
    };
    let helper_map = IdMapping {
        uids: one(ru, paths.uid),
        gids: one(rg, paths.gid),
    };
    let mut args: Vec<std::ffi::OsString> = vec![
        "--root".into(),
        paths.root.clone().into(),
        "--runroot".into(),
        paths.runroot.clone().into(),
        "__chown-root".into(),
    ];
    args.extend(files.iter().map(|d| d.as_os_str().to_owned()));
    let mut h = spawn_helper(
        Path::new("/proc/self/exe"),
        &args,
        Some(&helper_map),
        |_| {},
    )?;
    let status = h.child.wait().map_err(|e| err(&files[0], e))?;
    if !status.success() {
        return Err(err(
            &files[0],
            "giving the container's root its files failed in the user namespace helper",
        ));
    }
    Ok(())
}

/// The `__chown-root` helper: lchowns each path under the store root to 0:0 of its user
/// namespace (the container's root). Only paths under the store root are accepted.
pub fn chown_root_main(paths: &Paths, files: &[PathBuf]) -> i32 {
    if let Err(e) = super::enter_from_parent() {
        eprintln!("Error: {e}");
        return 125;
    }
    let mut code = 0;
    for f in files {
        if !f.starts_with(&paths.root) || f.components().any(|c| c == Component::ParentDir) {
            eprintln!(
                "Error: refusing to chown {}: not under {}",
                f.display(),
                paths.root.display()
            );
            code = 125;
            continue;
        }
        tracing::debug!(path = %f.display(), "lchown to the container's root");
        if let Err(e) = std::os::unix::fs::lchown(f, Some(0), Some(0)) {
            eprintln!("Error: chown {}: {e}", f.display());
            code = 125;
        }
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_added_only_when_missing() {
        let r = |i, o, c| IdRange {
            inside: i,
            outside: o,
            count: c,
        };
        let nomap = IdMapping {
            uids: vec![r(0, 200000, 65536)],
            gids: vec![r(0, 200000, 65536)],
        };
        assert!(leaves_out_owner(&nomap, (1001, 1001)));
        let w = with_owner(&nomap, (1001, 1001));
        assert_eq!(w.uids[1], r(OWNER_SLOT, 1001, 1));
        assert!(!leaves_out_owner(&w, (1001, 1001)));
        assert_eq!(with_owner(&w, (1001, 1001)), w);
    }
}
