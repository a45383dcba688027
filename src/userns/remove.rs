//! Removing files owned by subordinate IDs: the host user cannot, so a helper does it
//! from inside the user's user namespace (as `podman unshare rm -rf` would).

use std::path::{Component, Path, PathBuf};

use super::{spawn_helper, IdMapping, UsernsError};
use crate::config::Paths;

/// Removes trees under the store root, entering the user namespace when rootless.
pub fn remove_trees(paths: &Paths, dirs: &[PathBuf]) -> Result<(), UsernsError> {
    let dirs: Vec<&PathBuf> = dirs.iter().filter(|d| d.exists()).collect();
    if dirs.is_empty() {
        return Ok(());
    }
    let failed = |path: &Path, detail: String| {
        UsernsError::Handshake(format!("removing {}: {detail}", path.display()))
    };
    if !paths.rootless {
        for d in dirs {
            std::fs::remove_dir_all(d).map_err(|e| failed(d, e.to_string()))?;
        }
        return Ok(());
    }
    let mapping = IdMapping::for_current_user(paths.uid, paths.gid)?;
    let mut args: Vec<std::ffi::OsString> = vec![
        "--root".into(),
        paths.root.clone().into(),
        "--runroot".into(),
        paths.runroot.clone().into(),
        "__rm-tree".into(),
    ];
    args.extend(dirs.iter().map(|d| d.as_os_str().to_owned()));
    let mut h = spawn_helper(Path::new("/proc/self/exe"), &args, Some(&mapping), |_| {})?;
    let status = h.child.wait().map_err(|e| failed(dirs[0], e.to_string()))?;
    if !status.success() {
        return Err(failed(
            dirs[0],
            "the helper in the user namespace failed".into(),
        ));
    }
    Ok(())
}

/// The `__rm-tree` helper: removes trees from inside the user namespace. Only paths
/// under the store root are accepted, so the helper cannot be turned against other files.
pub fn rm_tree_main(paths: &Paths, dirs: &[PathBuf]) -> i32 {
    if let Err(e) = super::enter_from_parent() {
        eprintln!("Error: {e}");
        return 125;
    }
    let mut code = 0;
    for d in dirs {
        if !d.starts_with(&paths.root) || d.components().any(|c| c == Component::ParentDir) {
            eprintln!(
                "Error: refusing to remove {}: not under {}",
                d.display(),
                paths.root.display()
            );
            code = 125;
            continue;
        }
        if let Err(e) = std::fs::remove_dir_all(d) {
            if e.kind() != std::io::ErrorKind::NotFound {
                eprintln!("Error: removing {}: {e}", d.display());
                code = 125;
            }
        }
    }
    code
}
