//! The seccomp profile model: the OCI/docker JSON profile format (what podman and docker
//! read with `--security-opt seccomp=FILE`), checked field by field, and its resolution
//! against a container's capabilities and the host's architecture into the spec's
//! `linux.seccomp` (as containers/common does before handing the spec to runc).

use std::collections::HashSet;

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction as Act, LinuxSeccompArg, LinuxSeccompArgBuilder,
    LinuxSeccompOperator as Op, LinuxSyscall,
};
use serde::Deserialize;

/// A profile as written in JSON (docker's superset of the OCI `linux.seccomp` object).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    pub default_action: String,
    #[serde(default)]
    pub default_errno_ret: Option<u32>,
    #[serde(default)]
    pub architectures: Vec<String>,
    #[serde(default)]
    pub arch_map: Vec<ArchMap>,
    #[serde(default)]
    pub flags: Vec<String>,
    #[serde(default)]
    pub syscalls: Vec<Rule>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchMap {
    pub architecture: String,
    #[serde(default)]
    pub sub_architectures: Vec<String>,
}

/// One entry of `syscalls`: these names get this action (when the args match and the
/// includes/excludes conditions hold for the container).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    #[serde(default)]
    pub names: Vec<String>,
    /// docker's older single-name form.
    #[serde(default)]
    pub name: Option<String>,
    pub action: String,
    #[serde(default)]
    pub errno_ret: Option<u32>,
    #[serde(default)]
    pub args: Option<Vec<Arg>>,
    #[serde(default)]
    pub includes: Condition,
    #[serde(default)]
    pub excludes: Condition,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(default)]
    pub caps: Vec<String>,
    #[serde(default)]
    pub arches: Vec<String>,
    #[serde(default)]
    pub min_kernel: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Arg {
    pub index: u32,
    pub value: u64,
    #[serde(default)]
    pub value_two: u64,
    pub op: String,
}

/// The action names libseccomp (and so runc) accept.
pub fn parse_action(s: &str) -> Result<Act, String> {
    Ok(match s {
        "SCMP_ACT_ALLOW" => Act::ScmpActAllow,
        "SCMP_ACT_ERRNO" => Act::ScmpActErrno,
        "SCMP_ACT_KILL" => Act::ScmpActKill,
        "SCMP_ACT_KILL_THREAD" => Act::ScmpActKillThread,
        "SCMP_ACT_KILL_PROCESS" => Act::ScmpActKillProcess,
        "SCMP_ACT_TRAP" => Act::ScmpActTrap,
        "SCMP_ACT_TRACE" => Act::ScmpActTrace,
        "SCMP_ACT_LOG" => Act::ScmpActLog,
        "SCMP_ACT_NOTIFY" => {
            return Err("action SCMP_ACT_NOTIFY needs a seccomp agent, which skiff does not run: use SCMP_ACT_ERRNO or SCMP_ACT_TRACE".into())
        }
        other => return Err(format!("unknown action {other:?}: use SCMP_ACT_ALLOW, SCMP_ACT_ERRNO, SCMP_ACT_KILL, SCMP_ACT_KILL_PROCESS, SCMP_ACT_TRAP, SCMP_ACT_TRACE or SCMP_ACT_LOG")),
    })
}

pub fn parse_op(s: &str) -> Result<Op, String> {
    Ok(match s {
        "SCMP_CMP_NE" => Op::ScmpCmpNe,
        "SCMP_CMP_LT" => Op::ScmpCmpLt,
        "SCMP_CMP_LE" => Op::ScmpCmpLe,
        "SCMP_CMP_EQ" => Op::ScmpCmpEq,
        "SCMP_CMP_GE" => Op::ScmpCmpGe,
        "SCMP_CMP_GT" => Op::ScmpCmpGt,
        "SCMP_CMP_MASKED_EQ" => Op::ScmpCmpMaskedEq,
        other => return Err(format!("unknown operator {other:?}: use SCMP_CMP_EQ, SCMP_CMP_NE, SCMP_CMP_LT, SCMP_CMP_LE, SCMP_CMP_GT, SCMP_CMP_GE or SCMP_CMP_MASKED_EQ")),
    })
}

pub fn parse_arch(s: &str) -> Result<Arch, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(|_| {
        format!(
            "unknown architecture {s:?}: use names such as SCMP_ARCH_X86_64 or SCMP_ARCH_AARCH64"
        )
    })
}

/// The host's architecture: its libseccomp name and the names docker profiles use in
/// `includes.arches` (Go's GOARCH).
pub fn native_arch() -> (Arch, &'static [&'static str]) {
    if cfg!(target_arch = "aarch64") {
        (Arch::ScmpArchAarch64, &["arm64"])
    } else {
        (Arch::ScmpArchX86_64, &["amd64"])
    }
}

/// The running kernel's major.minor, for `minKernel`.
fn kernel_version() -> (u32, u32) {
    let rel = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    parse_version(&rel).unwrap_or((0, 0))
}

fn parse_version(s: &str) -> Option<(u32, u32)> {
    let mut it = s.split(|c: char| !c.is_ascii_digit());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// `CAP_SYS_ADMIN` or `sys_admin` → `CAP_SYS_ADMIN`.
fn cap_name(s: &str) -> String {
    let up = s.trim().to_ascii_uppercase();
    if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    }
}

impl Profile {
    /// Checks every field the kernel filter depends on; the message names what is wrong
    /// (the caller adds the file name).
    pub fn check(&self) -> Result<(), String> {
        parse_action(&self.default_action).map_err(|e| format!("defaultAction: {e}"))?;
        for a in &self.architectures {
            parse_arch(a)?;
        }
        for m in &self.arch_map {
            parse_arch(&m.architecture)?;
            for a in &m.sub_architectures {
                parse_arch(a)?;
            }
        }
        for f in &self.flags {
            flag_bit(f)?;
        }
        for (i, r) in self.syscalls.iter().enumerate() {
            let at = |e: String| format!("syscalls[{i}]: {e}");
            parse_action(&r.action).map_err(at)?;
            if r.names.is_empty() && r.name.is_none() {
                return Err(at("no names given".into()));
            }
            for a in r.args.iter().flatten() {
                parse_op(&a.op).map_err(at)?;
                if a.index > 5 {
                    return Err(at(format!(
                        "argument index {} out of range: a syscall has arguments 0 to 5",
                        a.index
                    )));
                }
            }
            if let Some(k) = &r.includes.min_kernel {
                parse_version(k).ok_or_else(|| at(format!("invalid minKernel {k:?}")))?;
            }
        }
        Ok(())
    }

    /// The spec's `linux.seccomp` for a container with these capabilities on this host:
    /// rules whose conditions do not hold are left out, as podman does.
    pub fn resolve(&self, caps: &HashSet<String>) -> Result<LinuxSeccomp, String> {
        self.check()?;
        let (native, goarch) = native_arch();
        let native_name = serde_json::to_value(native)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        let mut arches: Vec<Arch> = Vec::new();
        if !self.arch_map.is_empty() {
            for m in self
                .arch_map
                .iter()
                .filter(|m| m.architecture == native_name)
            {
                arches.push(parse_arch(&m.architecture)?);
                for a in &m.sub_architectures {
                    arches.push(parse_arch(a)?);
                }
            }
        } else {
            for a in &self.architectures {
                arches.push(parse_arch(a)?);
            }
        }
        let kernel = kernel_version();
        let has_cap = |c: &String| caps.contains(&cap_name(c));
        let mut out = Vec::new();
        for r in &self.syscalls {
            let inc = &r.includes;
            let exc = &r.excludes;
            if !inc.arches.is_empty() && !inc.arches.iter().any(|a| goarch.contains(&a.as_str())) {
                continue;
            }
            if !inc.caps.is_empty() && !inc.caps.iter().all(has_cap) {
                continue;
            }
            if let Some(min) = inc.min_kernel.as_deref().and_then(parse_version) {
                if kernel < min {
                    continue;
                }
            }
            if exc.arches.iter().any(|a| goarch.contains(&a.as_str())) {
                continue;
            }
            if exc.caps.iter().any(has_cap) {
                continue;
            }
            let action = parse_action(&r.action)?;
            let mut names = r.names.clone();
            names.extend(r.name.clone());
            let mut s = LinuxSyscall::default();
            s.set_names(names);
            s.set_action(action);
            if action == Act::ScmpActErrno || action == Act::ScmpActTrace {
                s.set_errno_ret(r.errno_ret);
            }
            let args = r
                .args
                .iter()
                .flatten()
                .map(|a| -> Result<LinuxSeccompArg, String> {
                    let mut b = LinuxSeccompArgBuilder::default()
                        .index(a.index as usize)
                        .value(a.value)
                        .op(parse_op(&a.op)?);
                    if a.value_two != 0 {
                        b = b.value_two(a.value_two);
                    }
                    b.build().map_err(|e| e.to_string())
                })
                .collect::<Result<Vec<_>, String>>()?;
            s.set_args((!args.is_empty()).then_some(args));
            out.push(s);
        }
        let mut sc = LinuxSeccomp::default();
        sc.set_default_action(parse_action(&self.default_action)?);
        sc.set_default_errno_ret(self.default_errno_ret);
        sc.set_architectures((!arches.is_empty()).then_some(arches));
        let flags: Vec<oci_spec::runtime::LinuxSeccompFilterFlag> = self
            .flags
            .iter()
            .filter_map(|f| serde_json::from_value(serde_json::Value::String(f.clone())).ok())
            .collect();
        sc.set_flags((!flags.is_empty()).then_some(flags));
        sc.set_syscalls(Some(out));
        Ok(sc)
    }
}

/// The seccomp(2) filter flag a profile names.
pub fn flag_bit(f: &str) -> Result<libc::c_ulong, String> {
    Ok(match f {
        "SECCOMP_FILTER_FLAG_TSYNC" => libc::SECCOMP_FILTER_FLAG_TSYNC,
        "SECCOMP_FILTER_FLAG_LOG" => libc::SECCOMP_FILTER_FLAG_LOG,
        "SECCOMP_FILTER_FLAG_SPEC_ALLOW" => libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW,
        "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV" => 1 << 5,
        other => {
            return Err(format!(
            "unknown flag {other:?}: use SECCOMP_FILTER_FLAG_LOG or SECCOMP_FILTER_FLAG_SPEC_ALLOW"
        ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(v: &[&str]) -> HashSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn includes_and_excludes_follow_caps_and_arch() {
        let p: Profile = serde_json::from_str(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":38,
            "archMap":[{"architecture":"SCMP_ARCH_X86_64","subArchitectures":["SCMP_ARCH_X86"]},
                       {"architecture":"SCMP_ARCH_AARCH64","subArchitectures":["SCMP_ARCH_ARM"]}],
            "syscalls":[
              {"names":["chroot"],"action":"SCMP_ACT_ALLOW","includes":{"caps":["CAP_SYS_CHROOT"]}},
              {"names":["chroot"],"action":"SCMP_ACT_ERRNO","errnoRet":1,"excludes":{"caps":["CAP_SYS_CHROOT"]}},
              {"names":["arch_prctl"],"action":"SCMP_ACT_ALLOW","includes":{"arches":["amd64"]}},
              {"names":["cacheflush"],"action":"SCMP_ACT_ALLOW","includes":{"arches":["arm64"]}},
              {"name":"personality","action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":8,"op":"SCMP_CMP_EQ"}]}
            ]}"#,
        )
        .unwrap();
        let with = p.resolve(&caps(&["CAP_SYS_CHROOT"])).unwrap();
        let without = p.resolve(&caps(&[])).unwrap();
        let names = |s: &LinuxSeccomp| -> Vec<(String, Act)> {
            s.syscalls()
                .iter()
                .flatten()
                .map(|r| (r.names().join(","), r.action()))
                .collect()
        };
        let w = names(&with);
        assert!(w.contains(&("chroot".into(), Act::ScmpActAllow)));
        assert!(!w.contains(&("chroot".into(), Act::ScmpActErrno)));
        let wo = names(&without);
        assert!(wo.contains(&("chroot".into(), Act::ScmpActErrno)));
        assert!(wo.iter().any(|(n, _)| n == "personality"));
        let (native, goarch) = native_arch();
        assert_eq!(with.architectures().as_ref().unwrap()[0], native);
        assert_eq!(with.architectures().as_ref().unwrap().len(), 2);
        assert_eq!(
            w.iter().any(|(n, _)| n == "arch_prctl"),
            goarch == ["amd64"]
        );
        assert_eq!(with.default_errno_ret(), Some(38));
    }

    #[test]
    fn bad_fields_are_named() {
        let bad = |j: &str| {
            serde_json::from_str::<Profile>(j)
                .unwrap()
                .check()
                .unwrap_err()
        };
        assert!(bad(r#"{"defaultAction":"SCMP_ACT_NOPE"}"#).contains("SCMP_ACT_NOPE"));
        assert!(bad(r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_ERRNO","args":[{"index":0,"value":1,"op":"SCMP_CMP_LIKE"}]}]}"#).contains("SCMP_CMP_LIKE"));
        assert!(bad(r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_ERRNO","args":[{"index":7,"value":1,"op":"SCMP_CMP_EQ"}]}]}"#).contains("index 7"));
        assert!(
            bad(r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_Z80"]}"#)
                .contains("Z80")
        );
    }
}
