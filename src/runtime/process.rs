//! The container process's identity and the final exec: user and groups from the
//! container's own /etc/passwd and /etc/group, capabilities, rlimits, PATH lookup.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use caps::{CapSet, Capability as Cap, CapsHashSet};
use oci_spec::runtime::{Capability, LinuxSeccomp, Process};

/// An init failure with podman's exit code.
pub struct Fail {
    pub code: i32,
    pub message: String,
}

impl Fail {
    pub fn engine(message: impl Into<String>) -> Fail {
        Fail {
            code: 125,
            message: message.into(),
        }
    }
}

/// The resolved identity of the container process.
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub home: String,
}

fn passwd_lookup(spec_user: &str) -> Option<(String, u32, u32, String)> {
    let text = std::fs::read_to_string("/etc/passwd").ok()?;
    let by_uid = spec_user.parse::<u32>().ok();
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 6 {
            return None;
        }
        let uid = f[2].parse::<u32>().ok()?;
        let gid = f[3].parse::<u32>().ok()?;
        let matches = match by_uid {
            Some(u) => u == uid,
            None => f[0] == spec_user,
        };
        matches.then(|| (f[0].to_string(), uid, gid, f[5].to_string()))
    })
}

fn group_lookup(name: &str) -> Option<u32> {
    let text = std::fs::read_to_string("/etc/group").ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 3 && f[0] == name)
            .then(|| f[2].parse().ok())
            .flatten()
    })
}

/// The groups that list `user` as a member in the container's /etc/group (none when
/// the image has no such file), sorted.
fn memberships(user: &str) -> Vec<u32> {
    let Ok(text) = std::fs::read_to_string("/etc/group") else {
        return Vec::new();
    };
    let mut v: Vec<u32> = text
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 4 || !f[3].split(',').any(|m| m.trim() == user) {
                return None;
            }
            f[2].parse().ok()
        })
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// The supplementary groups as podman 4.3 sets them: `primary` adds the primary group
/// first, then the `--group-add` GIDs, then with `members` the user's memberships in
/// /etc/group unless a group was named too (`user:group`). An image without /etc/group
/// gives no memberships.
fn supplementary(
    name: &str,
    gid: u32,
    group_named: bool,
    (primary, added, members): (bool, &[u32], bool),
) -> Vec<u32> {
    let mut groups = Vec::new();
    if primary {
        groups.push(gid);
    }
    let from_file = if members && !group_named && !name.is_empty() {
        memberships(name)
    } else {
        Vec::new()
    };
    for g in added.iter().chain(&from_file) {
        if !groups.contains(g) {
            groups.push(*g);
        }
    }
    groups
}

/// Resolves `--group-add` values: GIDs as they are, names through the container's
/// /etc/group (an unknown one fails the start with podman's exit code 126).
pub fn added_groups(values: &[String]) -> Result<Vec<u32>, Fail> {
    values
        .iter()
        .filter(|v| !v.is_empty() && v.as_str() != "keep-groups")
        .map(|v| match v.parse::<u32>() {
            Ok(n) => Ok(n),
            Err(_) => group_lookup(v).ok_or_else(|| Fail {
                code: 126,
                message: format!(
                    "looking up supplemental groups: unable to find group {v}: no matching entries in group file"
                ),
            }),
        })
        .collect()
}

/// Which supplementary groups a process gets, by how it is started (podman 4.3.1).
#[derive(Clone, Debug)]
pub enum Groups {
    /// The container's init: the primary group when a user was named (`--user` or the
    /// image's User), the `--group-add` GIDs, then the /etc/group memberships.
    Run { user_named: bool, added: Vec<u32> },
    /// `exec` without `--user`: the container's primary group when a user was named,
    /// the `--group-add` GIDs, no memberships.
    ExecAsContainer { user_named: bool, added: Vec<u32> },
    /// `exec --user`: the /etc/group memberships only.
    ExecAsUser,
}

/// Resolves `user[:group]` (names or numbers) against the container's files, as podman
/// does: unknown names fail, unknown numbers are used as they are. `kind` decides the
/// supplementary groups.
pub fn resolve_user(spec_user: &str, kind: Groups) -> Result<Identity, Fail> {
    let (u, g) = match spec_user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec_user, None),
    };
    let entry = passwd_lookup(u);
    let (name, uid, pgid, home) = match (entry, u.parse::<u32>()) {
        (Some(e), _) => e,
        (None, Ok(n)) => (String::new(), n, n, "/".to_string()),
        (None, Err(_)) => {
            return Err(Fail::engine(format!(
                "unable to find user {u}: no matching entries in passwd file"
            )))
        }
    };
    let gid = match g {
        None => pgid,
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => group_lookup(g).ok_or_else(|| {
                Fail::engine(format!(
                    "unable to find group {g}: no matching entries in group file"
                ))
            })?,
        },
    };
    let how = match &kind {
        Groups::Run { user_named, added } => (*user_named, added.as_slice(), true),
        Groups::ExecAsContainer { user_named, added } => (*user_named, added.as_slice(), false),
        Groups::ExecAsUser => (false, &[][..], true),
    };
    let groups = supplementary(&name, gid, g.is_some(), how);
    Ok(Identity {
        uid,
        gid,
        groups,
        home,
    })
}

fn to_caps(set: &Option<std::collections::HashSet<Capability>>) -> CapsHashSet {
    set.as_ref()
        .map(|s| {
            s.iter()
                .filter_map(|c| {
                    let name = serde_json::to_value(c).ok()?;
                    name.as_str()?.parse::<Cap>().ok()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Applies rlimits from the spec.
pub fn set_rlimits(p: &Process) -> Result<(), Fail> {
    use nix::sys::resource::setrlimit;
    for r in p.rlimits().iter().flatten() {
        let Some(res) = super::resources::resource_of(r.typ()) else {
            continue;
        };
        tracing::debug!(?res, soft = r.soft(), hard = r.hard(), "setrlimit");
        setrlimit(res, r.soft(), r.hard())
            .map_err(|e| Fail::engine(format!("setrlimit {res:?}: {e}")))?;
    }
    Ok(())
}

/// Installs the spec's seccomp filter (if any).
fn seccomp(sc: Option<&LinuxSeccomp>) -> Result<(), Fail> {
    match sc {
        Some(sc) => super::seccomp::apply(sc).map_err(|e| Fail::engine(e.to_string())),
        None => Ok(()),
    }
}

/// Switches to the container user with the spec's capabilities: the bounding set is cut
/// first (needs CAP_SETPCAP), then IDs change; a non-root user ends with no effective or
/// permitted capabilities, as in podman. The seccomp filter goes in while we still hold
/// CAP_SYS_ADMIN in the container's user namespace (right after the bounding set is cut,
/// as runc does), or last with no-new-privileges, when the kernel needs no privilege;
/// `seccomp::for_spec` refused profiles that block the calls made after it.
pub fn become_user(
    p: &Process,
    id: &Identity,
    nonroot_caps: &str,
    filter: Option<&LinuxSeccomp>,
) -> Result<(), Fail> {
    let nnp = p.no_new_privileges() == Some(true);
    let c = p.capabilities().clone().unwrap_or_default();
    // podman gives a non-root user the capabilities --cap-add named, in every set.
    let nonroot: CapsHashSet = nonroot_caps
        .split(',')
        .filter_map(|n| n.trim().parse::<Cap>().ok())
        .collect();
    let keep = id.uid != 0 && !nonroot.is_empty();
    if keep {
        nix::sys::prctl::set_keepcaps(true)
            .map_err(|e| Fail::engine(format!("prctl(PR_SET_KEEPCAPS): {e}")))?;
    }
    let bounding = to_caps(c.bounding());
    for cap in caps::all() {
        if !bounding.contains(&cap) {
            match caps::drop(None, CapSet::Bounding, cap) {
                Ok(()) => {}
                // Capabilities newer than the running kernel do not exist to drop.
                Err(_)
                    if !caps::runtime::procfs_all_supported(None)
                        .map(|s| s.contains(&cap))
                        .unwrap_or(true) => {}
                Err(e) => {
                    return Err(Fail::engine(format!(
                        "dropping {cap} from the bounding set: {e}"
                    )))
                }
            }
        }
    }
    if !nnp {
        seccomp(filter)?;
    }
    let gids: Vec<nix::unistd::Gid> = id
        .groups
        .iter()
        .map(|g| nix::unistd::Gid::from_raw(*g))
        .collect();
    if let Err(e) = nix::unistd::setgroups(&gids) {
        // Under a single-ID mapping the kernel denies setgroups for good; the process
        // keeps the host's groups (shown as nogroup), as with podman.
        let denied = std::fs::read_to_string("/proc/self/setgroups")
            .map(|s| s.trim() == "deny")
            .unwrap_or(false);
        if !denied {
            return Err(Fail::engine(format!("setgroups {:?}: {e}", id.groups)));
        }
    }
    let gid = nix::unistd::Gid::from_raw(id.gid);
    nix::unistd::setresgid(gid, gid, gid).map_err(|e| {
        Fail::engine(format!(
            "setgid {}: {e}: is GID {} mapped in the user namespace?",
            id.gid, id.gid
        ))
    })?;
    let uid = nix::unistd::Uid::from_raw(id.uid);
    nix::unistd::setresuid(uid, uid, uid).map_err(|e| {
        Fail::engine(format!(
            "setuid {}: {e}: is UID {} mapped in the user namespace?",
            id.uid, id.uid
        ))
    })?;
    if id.uid == 0 {
        let set = |s: CapSet, v: &CapsHashSet| {
            caps::set(None, s, v)
                .map_err(|e| Fail::engine(format!("setting {s:?} capabilities: {e}")))
        };
        // Effective must stay a subset of permitted at every step: shrink it first.
        set(CapSet::Effective, &to_caps(c.effective()))?;
        set(CapSet::Permitted, &to_caps(c.permitted()))?;
        set(CapSet::Inheritable, &to_caps(c.inheritable()))?;
        let _ = caps::clear(None, CapSet::Ambient);
    } else if keep {
        let set = |s: CapSet| {
            caps::set(None, s, &nonroot)
                .map_err(|e| Fail::engine(format!("setting {s:?} capabilities: {e}")))
        };
        // Inheritable may only grow from permitted: set it before permitted shrinks.
        set(CapSet::Inheritable)?;
        set(CapSet::Effective)?;
        set(CapSet::Permitted)?;
        for cap in &nonroot {
            caps::raise(None, CapSet::Ambient, *cap)
                .map_err(|e| Fail::engine(format!("raising ambient {cap}: {e}")))?;
        }
    } else {
        let _ = caps::clear(None, CapSet::Ambient);
    }
    if nnp {
        nix::sys::prctl::set_no_new_privs()
            .map_err(|e| Fail::engine(format!("prctl(PR_SET_NO_NEW_PRIVS): {e}")))?;
        seccomp(filter)?;
    }
    Ok(())
}

fn is_executable(p: &Path) -> bool {
    nix::unistd::access(p, nix::unistd::AccessFlags::X_OK).is_ok() && p.is_file()
}

/// Finds the program like execvp with the container's PATH; podman's codes on failure.
pub fn find_program(arg0: &str, env: &[String]) -> Result<PathBuf, Fail> {
    if arg0.contains('/') {
        let p = PathBuf::from(arg0);
        if !p.exists() {
            return Err(Fail {
                code: 127,
                message: format!("{arg0}: no such file or directory"),
            });
        }
        return Ok(p);
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    let mut found_not_exec = None;
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let cand = Path::new(dir).join(arg0);
        if is_executable(&cand) {
            return Ok(cand);
        }
        if cand.is_file() && found_not_exec.is_none() {
            found_not_exec = Some(cand);
        }
    }
    match found_not_exec {
        Some(p) => Err(Fail {
            code: 126,
            message: format!("{}: permission denied", p.display()),
        }),
        None => Err(Fail {
            code: 127,
            message: format!(
                "executable file `{arg0}` not found in $PATH: No such file or directory"
            ),
        }),
    }
}

/// Replaces this process with the container's program.
pub fn exec(path: &Path, args: &[String], env: &[String]) -> Fail {
    let cstr = |s: &str| CString::new(s.as_bytes()).unwrap_or_default();
    let c_path = cstr(&path.display().to_string());
    let c_args: Vec<CString> = args.iter().map(|a| cstr(a)).collect();
    let c_env: Vec<CString> = env.iter().map(|e| cstr(e)).collect();
    let err = match nix::unistd::execve(&c_path, &c_args, &c_env) {
        Err(e) => e,
        Ok(never) => match never {},
    };
    let code = match err {
        nix::errno::Errno::ENOENT => 127,
        nix::errno::Errno::EACCES | nix::errno::Errno::ENOEXEC | nix::errno::Errno::EPERM => 126,
        _ => 125,
    };
    Fail {
        code,
        message: format!("{}: {}", path.display(), err.desc().to_lowercase()),
    }
}
