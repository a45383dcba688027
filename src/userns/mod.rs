//! The user namespace a rootless user gets: ID ranges from /etc/subuid and /etc/subgid,
//! written with the setuid newuidmap/newgidmap, and the handshake that lets a freshly
//! exec'd helper enter such a namespace before it does any work.

mod helper;
pub mod modes;
pub mod reach;
mod remove;
mod subid;

pub use helper::{enter_from_parent, enter_helper, spawn_helper, HelperChild};
pub use remove::{remove_trees, rm_tree_main};
pub use subid::{lookup_subids, SubIdRange};

use std::path::PathBuf;
use std::process::Command;

/// Errors setting up ID mappings, naming the file or tool and how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum UsernsError {
    /// Reading /etc/subuid or /etc/subgid failed for a reason other than absence.
    #[error("cannot read {path}: {source}")]
    ReadSubIds {
        path: PathBuf,
        source: std::io::Error,
    },
    /// newuidmap/newgidmap are missing: multi-range mappings need the setuid helpers.
    #[error("{tool} not found: install the uidmap package (apt-get install uidmap) so skiff can map your subordinate IDs")]
    MissingTool { tool: &'static str },
    /// newuidmap/newgidmap refused the mapping.
    #[error("{tool} {args} failed: {stderr}: check the entries for your user in /etc/subuid and /etc/subgid")]
    MapTool {
        tool: &'static str,
        args: String,
        stderr: String,
    },
    /// Writing a single-ID map directly through /proc failed.
    #[error("cannot write {path}: {source}")]
    WriteMap {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A kernel call failed while entering or preparing a namespace.
    #[error("{call} failed: {source}: check that unprivileged user namespaces are enabled (sysctl user.max_user_namespaces)")]
    Kernel {
        call: &'static str,
        source: nix::Error,
    },
    /// The handshake with a helper process broke off.
    #[error("user namespace helper: {0}")]
    Handshake(String),
    /// A --userns/--uidmap/--gidmap value that cannot work; names the flag.
    #[error("{flag}: {detail}")]
    BadMode { flag: &'static str, detail: String },
    /// A helper could not be started.
    #[error("cannot start helper {exe}: {source}")]
    Spawn {
        exe: PathBuf,
        source: std::io::Error,
    },
}

/// One line of a uid_map/gid_map: `inside outside count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IdRange {
    #[serde(rename = "container_id")]
    pub inside: u32,
    #[serde(rename = "host_id")]
    pub outside: u32,
    #[serde(rename = "size")]
    pub count: u32,
}

/// The UID and GID mappings of a container or helper: the default rootless mapping puts
/// the user at 0 and the subordinate range from 1, as podman does.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IdMapping {
    pub uids: Vec<IdRange>,
    pub gids: Vec<IdRange>,
}

impl IdMapping {
    /// The default mapping for the current user, or a single-ID mapping (with a warning)
    /// when the user has no subordinate IDs.
    pub fn for_current_user(uid: u32, gid: u32) -> Result<IdMapping, UsernsError> {
        let name = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .map(|u| u.name);
        let subuids = lookup_subids("/etc/subuid", name.as_deref(), uid)?;
        let subgids = lookup_subids("/etc/subgid", name.as_deref(), uid)?;
        let build = |own: u32, ranges: Vec<SubIdRange>| {
            let mut v = vec![IdRange {
                inside: 0,
                outside: own,
                count: 1,
            }];
            let mut next = 1u32;
            for r in ranges {
                v.push(IdRange {
                    inside: next,
                    outside: r.start,
                    count: r.count,
                });
                next = next.saturating_add(r.count);
            }
            v
        };
        let m = IdMapping {
            uids: build(uid, subuids),
            gids: build(gid, subgids),
        };
        static WARNED: std::sync::Once = std::sync::Once::new();
        if m.is_single() {
            WARNED.call_once(|| tracing::warn!(
                "no subordinate IDs for {} in /etc/subuid and /etc/subgid: using a single-ID mapping, \
                 images with files owned by other users will fail; ask an admin to run \
                 `usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {}`",
                name.as_deref().unwrap_or("your user"),
                name.as_deref().unwrap_or("USER")
            ));
        }
        Ok(m)
    }

    /// Root's pool for `--userns=auto`: the `containers` user's ranges in /etc/subuid and
    /// /etc/subgid (podman's convention), laid end to end from ID 0; None when either
    /// file has none.
    pub fn for_containers_user() -> Result<Option<IdMapping>, UsernsError> {
        let uid = nix::unistd::User::from_name("containers")
            .ok()
            .flatten()
            .map_or(u32::MAX, |u| u.uid.as_raw());
        let pool = |file: &str| -> Result<Vec<IdRange>, UsernsError> {
            let mut next = 0u32;
            Ok(lookup_subids(file, Some("containers"), uid)?
                .into_iter()
                .map(|r| {
                    let range = IdRange {
                        inside: next,
                        outside: r.start,
                        count: r.count,
                    };
                    next = next.saturating_add(r.count);
                    range
                })
                .collect())
        };
        let (uids, gids) = (pool("/etc/subuid")?, pool("/etc/subgid")?);
        Ok((!uids.is_empty() && !gids.is_empty()).then_some(IdMapping { uids, gids }))
    }

    /// True when only the user's own ID is mapped (no newuidmap needed).
    pub fn is_single(&self) -> bool {
        let own = |v: &[IdRange], id: u32| v.len() == 1 && v[0].count == 1 && v[0].outside == id;
        own(&self.uids, nix::unistd::geteuid().as_raw())
            && own(&self.gids, nix::unistd::getegid().as_raw())
    }

    /// A stable key for the mapping: unpacked layers are shared only between containers
    /// with the same mapping, because file owners on disk depend on it.
    pub fn key(&self) -> String {
        let fmt = |v: &[IdRange]| {
            v.iter()
                .map(|r| format!("{}:{}:{}", r.inside, r.outside, r.count))
                .collect::<Vec<_>>()
                .join(",")
        };
        format!("u{};g{}", fmt(&self.uids), fmt(&self.gids))
    }

    /// Writes the mapping for process `pid`, which must have unshared a user namespace
    /// and be waiting. Called by the parent, after the child exists, before it goes on.
    pub fn apply(&self, pid: i32) -> Result<(), UsernsError> {
        if self.is_single() {
            return self.apply_single(pid);
        }
        if nix::unistd::geteuid().is_root() {
            // Root may write any map itself; newuidmap would check /etc/subuid for root.
            return self.apply_direct(pid);
        }
        // The two setuid tools are independent: run them side by side.
        let uid = spawn_map_tool("newuidmap", pid, &self.uids)?;
        let gid = spawn_map_tool("newgidmap", pid, &self.gids);
        let uid_res = finish_map_tool(uid);
        let gid_res = gid.and_then(finish_map_tool);
        uid_res.and(gid_res)
    }

    fn apply_direct(&self, pid: i32) -> Result<(), UsernsError> {
        let write = |file: &str, v: &[IdRange]| {
            let path = PathBuf::from(format!("/proc/{pid}/{file}"));
            let data: String = v
                .iter()
                .map(|r| format!("{} {} {}\n", r.inside, r.outside, r.count))
                .collect();
            tracing::debug!(path = %path.display(), %data, "write id map");
            std::fs::write(&path, data).map_err(|source| UsernsError::WriteMap { path, source })
        };
        write("uid_map", &self.uids)?;
        write("gid_map", &self.gids)
    }

    fn apply_single(&self, pid: i32) -> Result<(), UsernsError> {
        let write = |file: &str, data: String| {
            let path = PathBuf::from(format!("/proc/{pid}/{file}"));
            tracing::debug!(path = %path.display(), %data, "write id map");
            std::fs::write(&path, data).map_err(|source| UsernsError::WriteMap { path, source })
        };
        let line = |r: &IdRange| format!("{} {} {}\n", r.inside, r.outside, r.count);
        write("uid_map", line(&self.uids[0]))?;
        write("setgroups", "deny\n".to_string())?;
        write("gid_map", line(&self.gids[0]))
    }
}

struct MapTool {
    tool: &'static str,
    args: String,
    child: std::process::Child,
}

fn spawn_map_tool(
    tool: &'static str,
    pid: i32,
    ranges: &[IdRange],
) -> Result<MapTool, UsernsError> {
    let mut args = vec![pid.to_string()];
    for r in ranges {
        args.extend([
            r.inside.to_string(),
            r.outside.to_string(),
            r.count.to_string(),
        ]);
    }
    let joined = args.join(" ");
    tracing::debug!(tool, args = %joined, "exec id map tool");
    let child = Command::new(tool)
        .args(&args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                UsernsError::MissingTool { tool }
            } else {
                UsernsError::MapTool {
                    tool,
                    args: joined.clone(),
                    stderr: e.to_string(),
                }
            }
        })?;
    Ok(MapTool {
        tool,
        args: joined,
        child,
    })
}

fn finish_map_tool(t: MapTool) -> Result<(), UsernsError> {
    let out = t
        .child
        .wait_with_output()
        .map_err(|e| UsernsError::MapTool {
            tool: t.tool,
            args: t.args.clone(),
            stderr: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(UsernsError::MapTool {
            tool: t.tool,
            args: t.args,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_and_lookup() {
        let m = IdMapping {
            uids: vec![
                IdRange {
                    inside: 0,
                    outside: 1000,
                    count: 1,
                },
                IdRange {
                    inside: 1,
                    outside: 100000,
                    count: 65536,
                },
            ],
            gids: vec![IdRange {
                inside: 0,
                outside: 1000,
                count: 1,
            }],
        };
        assert_eq!(m.key(), "u0:1000:1,1:100000:65536;g0:1000:1");
        assert!(!m.is_single());
    }
}
