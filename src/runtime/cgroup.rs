//! The cgroup freezer behind `pause`/`unpause`. skiff has no cgroup manager: the only
//! cgroup it makes is one per container for freezing it.
//!
//! - cgroup v1 (and hybrid hosts, which keep the v1 freezer): root only, since the v1
//!   hierarchy belongs to root and cannot be delegated safely. The container joins
//!   /sys/fs/cgroup/freezer/skiff/<id> at start; pause writes FROZEN to freezer.state.
//! - cgroup v2 (unified): a child cgroup `skiff-<id>` of the monitor's own cgroup,
//!   which works for root and for a user whose cgroup systemd delegated; pause writes 1
//!   to its cgroup.freeze.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const CGROUP_ROOT: &str = "/sys/fs/cgroup";
const FREEZER_V1: &str = "/sys/fs/cgroup/freezer";

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("{verb} is not supported for rootless containers on cgroup v1: use cgroup v2 with systemd delegation")]
    RootlessV1 { verb: &'static str },
    #[error("cannot {verb} container {name}: it has no freezer cgroup of its own (it was started without one, or the host has no freezer): restart it and try again")]
    NoFreezer { verb: &'static str, name: String },
    #[error("cannot {verb} container {name}: {path}: {source}")]
    Io {
        verb: &'static str,
        name: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot {verb} container {name}: the freezer did not reach {want} within 5 seconds")]
    Timeout {
        verb: &'static str,
        name: String,
        want: &'static str,
    },
}

/// True on a pure cgroup v2 host (/sys/fs/cgroup is cgroup2 itself).
pub fn unified() -> bool {
    nix::sys::statfs::statfs(CGROUP_ROOT)
        .map(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
        .unwrap_or(false)
}

/// Refuses pause/unpause where they cannot work at all (rootless on cgroup v1), before
/// any container is looked at, as podman does.
pub fn check_supported(verb: &'static str, rootless: bool) -> Result<(), CgroupError> {
    if rootless && !unified() {
        return Err(CgroupError::RootlessV1 { verb });
    }
    Ok(())
}

/// Container IDs become path components: only plain hex gets through.
fn safe_id(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit())
}

fn v1_dir(id: &str) -> PathBuf {
    Path::new(FREEZER_V1).join("skiff").join(id)
}

/// The v2 cgroup path of a process ("0::/path" in /proc/PID/cgroup).
fn v2_path(pid: i32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| p.trim().to_string())
}

/// Puts the container's init (and so every process it later forks) into a freezer
/// cgroup of its own, so `pause` can freeze it. Best effort by design: where the host
/// does not allow it (rootless on v1, an undelegated v2 cgroup) the container runs
/// anyway and only `pause` fails, with an error saying why. Call it as early as
/// possible after the init exists: processes forked before it stay outside.
pub fn join_freezer(id: &str, pid: i32) {
    if let Err(e) = try_join(id, pid) {
        tracing::debug!(id, pid, error = %e, "no freezer cgroup: pause will not work");
    }
}

fn try_join(id: &str, pid: i32) -> std::io::Result<()> {
    if !safe_id(id) {
        return Err(std::io::Error::other(format!(
            "invalid container id {id:?}"
        )));
    }
    let dir = if unified() {
        let base = v2_path(pid).ok_or_else(|| std::io::Error::other("no cgroup v2 path"))?;
        Path::new(CGROUP_ROOT)
            .join(base.trim_start_matches('/'))
            .join(format!("skiff-{id}"))
    } else {
        if !nix::unistd::geteuid().is_root() || !Path::new(FREEZER_V1).exists() {
            return Ok(());
        }
        v1_dir(id)
    };
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("cgroup.procs"), pid.to_string())
}

/// Removes the container's freezer cgroup once its processes are gone (v1: from any
/// process; v2: from the monitor, whose cgroup is its parent). Missing is fine.
pub fn remove(id: &str) {
    if !safe_id(id) {
        return;
    }
    super::cgroup_limits::remove(id);
    let dir = if unified() {
        let Some(base) = v2_path(std::process::id() as i32) else {
            return;
        };
        Path::new(CGROUP_ROOT)
            .join(base.trim_start_matches('/'))
            .join(format!("skiff-{id}"))
    } else {
        v1_dir(id)
    };
    let _ = std::fs::remove_dir(dir);
}

/// Freezes (`frozen`) or thaws the container whose init is `pid`; waits until the
/// kernel reports the new state.
pub fn set_frozen(id: &str, name: &str, pid: i32, frozen: bool) -> Result<(), CgroupError> {
    let verb = if frozen { "pause" } else { "unpause" };
    let no_freezer = || CgroupError::NoFreezer {
        verb,
        name: name.to_string(),
    };
    if !safe_id(id) {
        return Err(no_freezer());
    }
    let (file, value, status, want) = if unified() {
        let path = v2_path(pid).ok_or_else(no_freezer)?;
        if !path.ends_with(&format!("/skiff-{id}")) {
            return Err(no_freezer());
        }
        let dir = Path::new(CGROUP_ROOT).join(path.trim_start_matches('/'));
        let want = if frozen { "frozen 1" } else { "frozen 0" };
        (
            dir.join("cgroup.freeze"),
            if frozen { "1" } else { "0" },
            dir.join("cgroup.events"),
            want,
        )
    } else {
        // The init must really be in our freezer cgroup, or we would freeze nothing.
        let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        let ours = format!("/skiff/{id}");
        let joined = cg.lines().any(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctrl, path) = (f.next(), f.next(), f.next());
            ctrl.is_some_and(|c| c.split(',').any(|c| c == "freezer"))
                && path.is_some_and(|p| p.ends_with(&ours))
        });
        if !joined {
            return Err(no_freezer());
        }
        let dir = v1_dir(id);
        let state = if frozen { "FROZEN" } else { "THAWED" };
        (
            dir.join("freezer.state"),
            state,
            dir.join("freezer.state"),
            state,
        )
    };
    let io = |path: &Path, source| CgroupError::Io {
        verb,
        name: name.to_string(),
        path: path.to_path_buf(),
        source,
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        // v1 may stay FREEZING while tasks are busy; writing again retries, as runc does.
        std::fs::write(&file, value).map_err(|e| io(&file, e))?;
        let now = std::fs::read_to_string(&status).map_err(|e| io(&status, e))?;
        if now.lines().any(|l| l.trim() == want) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(CgroupError::Timeout {
                verb,
                name: name.to_string(),
                want,
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
