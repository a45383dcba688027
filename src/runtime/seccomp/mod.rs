//! Seccomp: `--security-opt seccomp=unconfined|FILE`, the built-in default profile, and
//! the filters the container's init and `exec`'d processes install. The profile is
//! resolved at create time (capabilities and architecture decide which rules apply) into
//! the spec's `linux.seccomp`, so config.json shows exactly what runs, as with podman;
//! the init compiles that into BPF with seccompiler (see bpf.rs for why several filters).

mod abi;
mod bpf;
mod default_profile;
pub mod profile;
mod table_aarch64;
mod table_i386;
mod table_x32;
mod table_x86_64;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction as Act};

pub use default_profile::default_profile;
pub use profile::Profile;

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("reading seccomp profile {path}: {source}: give a readable JSON profile file")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("seccomp profile {path}: {detail}")]
    Profile { path: PathBuf, detail: String },
    #[error("building the seccomp filter: {0}")]
    Compile(String),
    #[error("installing the seccomp filter: {0}")]
    Install(std::io::Error),
}

/// What `--security-opt seccomp=` asked for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Choice {
    #[default]
    Default,
    Unconfined,
    File(PathBuf),
}

impl Choice {
    pub fn parse(value: &str) -> Choice {
        match value {
            "unconfined" => Choice::Unconfined,
            "" => Choice::Default,
            p => Choice::File(PathBuf::from(p)),
        }
    }
}

/// Reads and checks a profile file; every problem names the file.
pub fn load_file(path: &Path) -> Result<Profile, SeccompError> {
    let text = std::fs::read(path).map_err(|source| SeccompError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let bad = |detail: String| SeccompError::Profile {
        path: path.to_path_buf(),
        detail,
    };
    let p: Profile = serde_json::from_slice(&text).map_err(|e| {
        bad(format!(
            "invalid JSON: {e}: fix the file or use seccomp=unconfined"
        ))
    })?;
    p.check().map_err(bad)?;
    Ok(p)
}

/// The calls skiff's init (and the exec helper) makes after the filter is in place:
/// before dropping its user and capabilities (without no-new-privileges), or only the
/// final exec (with it). A profile that blocks one could never start a container.
const NEEDED_BEFORE_CAPS: &[&str] = &[
    "capget",
    "capset",
    "setgroups",
    "setresgid",
    "setresuid",
    "prctl",
    "chdir",
    "close_range",
    "execve",
    "write",
    "exit_group",
];
const NEEDED_AT_EXEC: &[&str] = &["chdir", "close_range", "execve", "write", "exit_group"];

/// Whether a resolved profile answers `name` with something other than ALLOW whatever
/// its arguments (rules with argument checks count as allowing).
fn blocks(sc: &LinuxSeccomp, name: &str) -> bool {
    let mut saw_args = false;
    let mut deny = false;
    for s in sc.syscalls().iter().flatten() {
        if !s.names().iter().any(|n| n == name) {
            continue;
        }
        if s.args().as_ref().is_some_and(|a| !a.is_empty()) {
            saw_args = true;
        } else if s.action() == Act::ScmpActAllow {
            return false;
        } else {
            deny = true;
        }
    }
    deny || (!saw_args && sc.default_action() != Act::ScmpActAllow)
}

/// The spec's `linux.seccomp` for a container with these root capabilities; None runs
/// without a filter (`--privileged`, `seccomp=unconfined`).
pub fn for_spec(
    choice: &Choice,
    privileged: bool,
    caps: &HashSet<String>,
    no_new_privs: bool,
) -> Result<Option<LinuxSeccomp>, SeccompError> {
    let (profile, path) = match choice {
        Choice::Unconfined => return Ok(None),
        _ if privileged => return Ok(None),
        Choice::Default => (default_profile(), PathBuf::from("(built-in default)")),
        Choice::File(p) => (load_file(p)?, p.clone()),
    };
    let sc = profile
        .resolve(caps)
        .map_err(|detail| SeccompError::Profile {
            path: path.clone(),
            detail,
        })?;
    bpf::compile(&sc).map_err(|e| SeccompError::Profile {
        path: path.clone(),
        detail: e.to_string(),
    })?;
    let needed = if no_new_privs {
        NEEDED_AT_EXEC
    } else {
        NEEDED_BEFORE_CAPS
    };
    if let Some(name) = needed.iter().find(|n| blocks(&sc, n)) {
        return Err(SeccompError::Profile {
            path,
            detail: format!(
                "it blocks {name}, which the container's init calls after installing the filter: allow {name} in the profile"
            ),
        });
    }
    Ok(Some(sc))
}

/// Compiles and installs a spec's filter on the calling (single-threaded) process.
pub fn apply(sc: &LinuxSeccomp) -> Result<(), SeccompError> {
    let c = bpf::compile(sc)?;
    bpf::install(&c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_caps() -> HashSet<String> {
        crate::runtime::spec::DEFAULT_CAPS
            .iter()
            .filter_map(|c| serde_json::to_value(c).ok()?.as_str().map(String::from))
            .collect()
    }

    fn rules_for<'a>(sc: &'a LinuxSeccomp, name: &str) -> Vec<&'a oci_spec::runtime::LinuxSyscall> {
        sc.syscalls()
            .iter()
            .flatten()
            .filter(|s| s.names().iter().any(|n| n == name))
            .collect()
    }

    #[test]
    fn default_profile_decisions() {
        let sc = for_spec(&Choice::Default, false, &default_caps(), false)
            .unwrap()
            .unwrap();
        assert_eq!(sc.default_action(), Act::ScmpActErrno);
        assert_eq!(sc.default_errno_ret(), Some(38));
        // No CAP_SYS_ADMIN: bpf is denied with EPERM, never allowed.
        let bpf = rules_for(&sc, "bpf");
        assert_eq!(bpf.len(), 1);
        assert_eq!(
            (bpf[0].action(), bpf[0].errno_ret()),
            (Act::ScmpActErrno, Some(1))
        );
        // CAP_SYS_CHROOT is a default capability: chroot allowed.
        assert!(rules_for(&sc, "chroot")
            .iter()
            .all(|r| r.action() == Act::ScmpActAllow));
        for n in ["unshare", "mount", "keyctl", "clone", "read"] {
            assert!(!blocks(&sc, n), "{n}");
        }
        for n in ["userfaultfd", "init_module", "kexec_load", "add_key"] {
            assert!(blocks(&sc, n), "{n}");
        }
        assert!(bpf::compile(&sc).unwrap().programs.len() >= 2);
        let mut admin = default_caps();
        admin.insert("CAP_SYS_ADMIN".into());
        let sc = for_spec(&Choice::Default, false, &admin, false)
            .unwrap()
            .unwrap();
        assert!(!blocks(&sc, "bpf"));
        assert!(for_spec(&Choice::Default, true, &admin, false)
            .unwrap()
            .is_none());
        assert!(for_spec(&Choice::Unconfined, false, &admin, false)
            .unwrap()
            .is_none());
    }

    #[test]
    fn table_lookups() {
        let nr = |n| abi::Abi::host().nr(n);
        assert!(nr("read").is_some());
        assert!(nr("openat").is_some());
        assert_eq!(nr("no_such_call"), None);
        #[cfg(target_arch = "x86_64")]
        assert_eq!((nr("read"), nr("clone3")), (Some(0), Some(435)));
    }

    #[test]
    fn profiles_that_would_break_the_init_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.json");
        std::fs::write(
            &f,
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["capset"],"action":"SCMP_ACT_ERRNO"}]}"#,
        )
        .unwrap();
        let e = for_spec(&Choice::File(f.clone()), false, &default_caps(), false).unwrap_err();
        assert!(e.to_string().contains("capset"), "{e}");
        assert!(for_spec(&Choice::File(f), false, &default_caps(), true).is_ok());
        let g = dir.path().join("bad.json");
        std::fs::write(&g, "{not json").unwrap();
        let e = load_file(&g).unwrap_err().to_string();
        assert!(e.contains("bad.json") && e.contains("invalid JSON"), "{e}");
    }
}
