//! `export` and `commit` of a root container with a user namespace (`--uidmap`,
//! `--userns=auto` as root). The `__archive` helper then runs as host root, outside
//! any user namespace, while the container's files are owned on disk by host IDs of its
//! mapping (the upper dir, copied layers) or by container IDs shown shifted through
//! idmapped mounts (the host's layers). Both must come out as the container sees them,
//! as when it runs.
//!
//! - Export of a stopped container: a user namespace with the container's mapping is
//!   made for the occasion (a forked child unshares it, root writes its maps, the child
//!   exits; an fd holds it). In the helper's private mount namespace the lower layers
//!   get idmapped clones through it, exactly as the monitor makes them at start, the
//!   read-only overlay goes on top, and the helper then joins that user namespace before
//!   walking: the tree and its owners are what the running container's export shows,
//!   and nothing is mounted on the host or left to undo.
//! - Diff (commit, running or stopped): the upper dir is read by host root (the overlay
//!   whiteouts and opaque markers live in trusted.* xattrs, which nothing inside a user
//!   namespace may read) through a detached idmapped clone made with the inverse of the
//!   container's mapping, so host ID 100000 reads as the container's 0.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use crate::rootfs::RootfsLayout;
use crate::userns::{IdMapping, IdRange};

/// The container's ID mapping when its files must be shifted for `export`/`commit`:
/// root containers with a user namespace. Rootless helpers already run inside the
/// user's namespace, where the stored owners are the container's.
pub fn container_mapping(rootless: bool, bundle: &Path) -> Option<IdMapping> {
    if rootless {
        return None;
    }
    let spec = super::bundle::load_spec(bundle).ok()?;
    super::spec::mapping_of(&spec).filter(|m| !m.uids.is_empty() && !m.gids.is_empty())
}

/// The mapping that takes host IDs back to the container's: each range turned around.
fn inverse(m: &IdMapping) -> IdMapping {
    let flip = |v: &[IdRange]| {
        v.iter()
            .map(|r| IdRange {
                inside: r.outside,
                outside: r.inside,
                count: r.count,
            })
            .collect()
    };
    IdMapping {
        uids: flip(&m.uids),
        gids: flip(&m.gids),
    }
}

/// A user namespace carrying the container's mapping, for idmapped lowers and for the
/// helper to join before it walks the tree.
pub(super) fn userns(m: &IdMapping) -> Result<OwnedFd, String> {
    crate::rootfs::idmapped::userns_for(m)
        .map_err(|e| format!("making a user namespace with its ID mapping: {e}"))
}

/// Lays idmapped clones of the lower layers over their directories in the helper's
/// private mount namespace, as the monitor does in the container's at start.
pub(super) fn idmap_lowers(layout: &RootfsLayout, userns: &OwnedFd) -> Result<(), String> {
    crate::rootfs::idmapped::idmap_lowers(layout, userns.as_fd())
        .map_err(|e| format!("{e}: run with SKIFF_NO_IDMAP=1 to copy the layers instead"))
}

/// Joins `userns` so the walk sees owners as the container does. Only a single-threaded
/// process may do this: the `__archive` helper is one, freshly exec'd.
pub(super) fn enter(userns: &OwnedFd) -> Result<(), String> {
    tracing::debug!("setns(CLONE_NEWUSER) into the container's mapping");
    nix::sched::setns(userns.as_fd(), nix::sched::CloneFlags::CLONE_NEWUSER)
        .map_err(|e| format!("joining a user namespace with its ID mapping: {e}"))
}

/// The upper dir `upper` with owners shifted from host IDs to the container's, as a
/// detached read-only mount that nothing else sees.
pub(super) fn shifted_upper(upper: &Path, m: &IdMapping) -> Result<OwnedFd, String> {
    let ns = crate::rootfs::idmapped::userns_for(&inverse(m))
        .map_err(|e| format!("making a user namespace with its inverse ID mapping: {e}"))?;
    let tree = crate::rootfs::idmapped::idmapped_view(upper, ns.as_fd()).map_err(|e| {
        format!("{e}: the file system of the store must support idmapped mounts to read a container with a user namespace")
    })?;
    tracing::debug!(path = %upper.display(), "open the shifted upper dir");
    nix::fcntl::openat(
        &tree,
        ".",
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| format!("opening {}: {e}", upper.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverse_turns_each_range_around() {
        let r = |inside, outside, count| IdRange {
            inside,
            outside,
            count,
        };
        let m = IdMapping {
            uids: vec![r(0, 100000, 1000), r(1000, 200000, 64536)],
            gids: vec![r(0, 300000, 65536)],
        };
        let inv = inverse(&m);
        assert_eq!(inv.uids, vec![r(100000, 0, 1000), r(200000, 1000, 64536)]);
        assert_eq!(inv.gids, vec![r(300000, 0, 65536)]);
        assert_eq!(inverse(&inv), m);
    }
}
