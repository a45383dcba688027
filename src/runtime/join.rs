//! Entering a running container's namespaces from outside (exec, cp). The kernel only
//! lets a single-threaded process setns into a user namespace, so this runs in a freshly
//! exec'd helper. The target is named by host pid *and* start time and every namespace
//! file is opened through one /proc/PID directory fd, so a container that exits while we
//! work (and a pid the kernel hands to some other process) is never joined.

use std::os::fd::{AsFd, OwnedFd};

use nix::fcntl::{openat, OFlag};
use nix::sched::CloneFlags;
use nix::sys::stat::{fstat, Mode};
use serde::{Deserialize, Serialize};

/// Failures reaching a running container.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The recorded process is gone or is no longer the container's.
    #[error(
        "container {name} is not running (its process {pid} is gone): container state improper"
    )]
    Gone { name: String, pid: i32 },
    /// A /proc file of the container could not be opened.
    #[error("container {name}: opening /proc/{pid}/{file}: {source}")]
    Proc {
        name: String,
        pid: i32,
        file: String,
        source: nix::Error,
    },
    /// setns refused a namespace.
    #[error("container {name}: joining its {ns} namespace: {source}")]
    Setns {
        name: String,
        ns: &'static str,
        source: nix::Error,
    },
}

/// A container's init process as the CLI saw it in the record.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Target {
    pub pid: i32,
    /// Start time in clock ticks since boot (field 22 of /proc/PID/stat).
    pub start: u64,
}

/// Fields 4 (ppid) and 22 (start time) of a /proc/PID/stat text.
pub fn parse_stat(stat: &str) -> Option<(i32, u64)> {
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split(' ').collect();
    Some((f.get(1)?.parse().ok()?, f.get(19)?.parse().ok()?))
}

impl Target {
    /// The init of a container whose record says it runs: its parent must be the
    /// recorded monitor and that monitor must still be the one that started it, so a
    /// recycled pid is refused.
    pub fn of_record(
        name: &str,
        pid: Option<i32>,
        monitor: Option<(i32, u64)>,
    ) -> Result<Target, JoinError> {
        let gone = || JoinError::Gone {
            name: name.to_string(),
            pid: pid.unwrap_or(0),
        };
        let (pid, (mpid, mstart)) = match (pid, monitor) {
            (Some(p), Some(m)) if p > 0 => (p, m),
            _ => return Err(gone()),
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|_| gone())?;
        let (ppid, start) = parse_stat(&stat).ok_or_else(gone)?;
        if ppid != mpid || !crate::monitor::is_alive(mpid, mstart) {
            return Err(gone());
        }
        // Under --init, PID 1 is skiff's reaper, which never execs and so stays
        // non-dumpable (its /proc/PID/ns files are closed to us, by design: it must not
        // expose the skiff binary). Its child, the container's program, shares every
        // namespace and is an ordinary process: join through that one.
        if std::fs::File::open(format!("/proc/{pid}/ns/user"))
            .is_err_and(|e| e.kind() == std::io::ErrorKind::PermissionDenied)
        {
            if let Some(child) = first_child(pid) {
                return Ok(child);
            }
        }
        Ok(Target { pid, start })
    }
}

/// The oldest child of `pid` that is still its child, with its start time.
fn first_child(pid: i32) -> Option<Target> {
    let list = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
    list.split_whitespace().find_map(|c| {
        let c: i32 = c.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{c}/stat")).ok()?;
        let (ppid, start) = parse_stat(&stat)?;
        (ppid == pid).then_some(Target { pid: c, start })
    })
}

/// Namespace kinds in the order they must be joined: user first (it grants the
/// capabilities the others need), mount before pid so paths are the container's.
pub const ALL: &[(&str, CloneFlags)] = &[
    ("user", CloneFlags::CLONE_NEWUSER),
    ("mnt", CloneFlags::CLONE_NEWNS),
    ("pid", CloneFlags::CLONE_NEWPID),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("net", CloneFlags::CLONE_NEWNET),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
];

/// The namespaces of a verified target, opened and waiting to be entered.
pub struct Opened {
    name: String,
    fds: Vec<(&'static str, CloneFlags, OwnedFd)>,
    /// /proc/PID of the target, kept for reading more of its files safely.
    pub proc_dir: OwnedFd,
}

/// Opens `kinds` (a subset of [`ALL`], in that order) of the target, skipping those it
/// shares with us (joining one's own user namespace is an error).
pub fn open(name: &str, t: Target, kinds: &[&str]) -> Result<Opened, JoinError> {
    let proc_err = |file: &str| {
        let file = file.to_string();
        move |source| JoinError::Proc {
            name: name.to_string(),
            pid: t.pid,
            file,
            source,
        }
    };
    let dir = nix::fcntl::open(
        format!("/proc/{}", t.pid).as_str(),
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|_| JoinError::Gone {
        name: name.to_string(),
        pid: t.pid,
    })?;
    let stat_fd = openat(
        dir.as_fd(),
        "stat",
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|_| JoinError::Gone {
        name: name.to_string(),
        pid: t.pid,
    })?;
    let stat = std::io::read_to_string(std::fs::File::from(stat_fd)).unwrap_or_default();
    if parse_stat(&stat).map(|(_, s)| s) != Some(t.start) {
        return Err(JoinError::Gone {
            name: name.to_string(),
            pid: t.pid,
        });
    }
    let mut fds = Vec::new();
    for (kind, flag) in ALL.iter().filter(|(k, _)| kinds.contains(k)) {
        let file = format!("ns/{kind}");
        let fd = openat(
            dir.as_fd(),
            file.as_str(),
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(proc_err(&file))?;
        let theirs = fstat(&fd).map_err(proc_err(&file))?;
        let same = nix::sys::stat::stat(format!("/proc/self/ns/{kind}").as_str())
            .map(|ours| ours.st_ino == theirs.st_ino && ours.st_dev == theirs.st_dev)
            .unwrap_or(false);
        if !same {
            fds.push((*kind, *flag, fd));
        }
    }
    Ok(Opened {
        name: name.to_string(),
        fds,
        proc_dir: dir,
    })
}

impl Opened {
    /// The opened namespace files by kind, for a process that enters them itself
    /// (the monitor's launch of a `container:` container).
    pub fn into_fds(self) -> Vec<(&'static str, OwnedFd)> {
        self.fds.into_iter().map(|(k, _, fd)| (k, fd)).collect()
    }

    /// Enters every opened namespace, user namespace first. After a pid namespace the
    /// caller must fork: only children land in it.
    pub fn enter(self) -> Result<OwnedFd, JoinError> {
        for (ns, flag, fd) in &self.fds {
            tracing::debug!(ns, "setns");
            nix::sched::setns(fd, *flag).map_err(|source| JoinError::Setns {
                name: self.name.clone(),
                ns,
                source,
            })?;
        }
        Ok(self.proc_dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields() {
        let s = "42 (a b) c) S 7 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 12345 1000 100";
        assert_eq!(parse_stat(s), Some((7, 12345)));
        assert_eq!(parse_stat("garbage"), None);
    }
}
