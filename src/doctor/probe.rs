//! The doctor's probe: a freshly exec'd helper (`__doctor-probe DIR`) that enters a
//! user namespace through the same handshake containers use, then mounts a tiny
//! overlay in DIR the way a rootless container's root filesystem is mounted.

use std::io::{Read, Write};
use std::path::Path;

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::userns::IdMapping;

/// What the probe found.
pub struct Outcome {
    pub userns: Result<(), String>,
    pub overlay: Result<(), String>,
}

/// Runs the probe with `mapping` (None: as root, no user namespace) in a scratch dir
/// under `scratch`, and removes the dir afterwards.
pub fn run(
    exe: &Path,
    scratch: &Path,
    self_args: &[std::ffi::OsString],
    mapping: Option<&IdMapping>,
) -> Outcome {
    let dir = scratch.join(format!(
        "doctor-{}",
        hex::encode(crate::storage::random_bytes::<6>())
    ));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        return Outcome {
            userns: Ok(()),
            overlay: Err(format!("cannot create {}: {e}", dir.display())),
        };
    }
    let mut args: Vec<std::ffi::OsString> = self_args.to_vec();
    args.push("__doctor-probe".into());
    args.push(dir.clone().into());
    let out = match crate::userns::spawn_helper(exe, &args, mapping, |c| {
        c.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
    }) {
        Err(e) => Outcome {
            userns: Err(e.to_string()),
            overlay: Err("not tried".into()),
        },
        Ok(mut h) => {
            let mut report = String::new();
            let _ = h.sync.read_to_string(&mut report);
            let _ = h.child.wait();
            let overlay = match report.trim() {
                "ok" => Ok(()),
                "" => Err("the probe helper exited without a report".into()),
                other => Err(other.trim_start_matches("error: ").to_string()),
            };
            Outcome {
                userns: Ok(()),
                overlay,
            }
        }
    };
    // The helper removes what it made inside the namespace; this catches the rest.
    let _ = std::fs::remove_dir_all(&dir);
    out
}

/// The helper side: enter the namespace, mount, report, clean up.
pub fn probe_main(dir: &Path) -> i32 {
    let mut sync =
        match crate::userns::enter_helper("__doctor-probe is started by `skiff system doctor`") {
            Ok(s) => s,
            Err(code) => return code,
        };
    let res = try_overlay(dir);
    let msg = match &res {
        Ok(()) => "ok".to_string(),
        Err(e) => format!("error: {e}"),
    };
    let _ = sync.write_all(msg.as_bytes());
    let _ = std::fs::remove_dir_all(dir);
    i32::from(res.is_err())
}

fn try_overlay(dir: &Path) -> Result<(), String> {
    // A mount namespace of our own in every case (root gets none from the handshake),
    // so nothing we mount is ever seen on the host.
    tracing::debug!("unshare(CLONE_NEWNS)");
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .map_err(|e| format!("unshare(CLONE_NEWNS): {e}"))?;
    tracing::debug!("mount --make-rprivate /");
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| format!("making / private: {e}"))?;
    let (lower, upper, work, merged) = (dir.join("l"), dir.join("u"), dir.join("w"), dir.join("m"));
    for d in [&lower, &upper, &work, &merged] {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    std::fs::write(lower.join("f"), b"x").map_err(|e| e.to_string())?;
    let opts = format!(
        "lowerdir={},upperdir={},workdir={},userxattr",
        lower.display(),
        upper.display(),
        work.display()
    );
    tracing::debug!(%opts, "mount overlay");
    mount(
        Some("overlay"),
        &merged,
        Some("overlay"),
        MsFlags::empty(),
        Some(opts.as_str()),
    )
    .map_err(|e| format!("mount -t overlay on {}: {e}", merged.display()))?;
    // A copy-up and a whiteout: what a container's first writes do.
    let res = std::fs::write(merged.join("f"), b"y")
        .and_then(|_| std::fs::remove_file(merged.join("f")))
        .map_err(|e| format!("writing through the overlay: {e}"));
    let _ = umount2(&merged, MntFlags::MNT_DETACH);
    res
}
