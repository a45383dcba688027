//! From the spec's `linux.seccomp` to kernel filters, with seccompiler.
//!
//! A seccompiler filter has one action for the syscalls it matches and one for the rest,
//! while a profile gives each rule its own action. The kernel runs every filter a thread
//! has and keeps the highest-precedence answer (seccomp(2): kill > trap > errno > trace >
//! log > allow), so a profile becomes a small stack of filters:
//! - the *base* filter matches every rule of the profile (whatever its action) and
//!   returns ALLOW on a match, the profile's default action otherwise;
//! - one filter per other action (e.g. ERRNO(EPERM)) matches only that action's rules and
//!   returns the action on a match, ALLOW otherwise.
//!
//! For a call no rule matches, only the base filter answers (the default action); for a
//! call some rule matches, the base filter allows and that rule's filter answers. When
//! an entry matches a call whatever its arguments, later entries with another action for
//! that call are ignored, as runc + libseccomp do (podman's profile allows `setns` in its
//! big list and denies it again without CAP_SYS_ADMIN: containers get it allowed); such
//! an entry also replaces earlier argument rules for the call (libseccomp's database).
//! Calls matched by argument rules of two different actions could still differ from
//! libseccomp's single program; a profile cannot mean that consistently anyway.
//!
//! Entries whose action is the default action are dropped, as runc does. Names an ABI's
//! table does not know are skipped (as runc does). The profile's `architectures` decide
//! which ABIs get the rules (the host's own always): abi.rs scopes each filter to one ABI
//! and adds the filter that kills calls of the others, as libseccomp's "bad arch" action.

use std::collections::BTreeMap;

use oci_spec::runtime::{
    LinuxSeccomp, LinuxSeccompAction as Act, LinuxSeccompArgBuilder, LinuxSeccompOperator as Op,
    LinuxSyscall,
};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use super::abi::{self, Abi};
use super::SeccompError;

fn target() -> TargetArch {
    if cfg!(target_arch = "aarch64") {
        TargetArch::aarch64
    } else {
        TargetArch::x86_64
    }
}

/// One action with its data (errno, trace message), as the filters are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Action {
    Allow,
    Errno(u32),
    KillThread,
    KillProcess,
    Trap,
    Trace(u32),
    Log,
}

impl Action {
    fn of(a: Act, errno: Option<u32>) -> Result<Action, SeccompError> {
        Ok(match a {
            Act::ScmpActAllow => Action::Allow,
            Act::ScmpActErrno => Action::Errno(errno.unwrap_or(libc::EPERM as u32)),
            Act::ScmpActKill | Act::ScmpActKillThread => Action::KillThread,
            Act::ScmpActKillProcess => Action::KillProcess,
            Act::ScmpActTrap => Action::Trap,
            Act::ScmpActTrace => Action::Trace(errno.unwrap_or(libc::EPERM as u32)),
            Act::ScmpActLog => Action::Log,
            Act::ScmpActNotify => {
                return Err(SeccompError::Compile(
                    "SCMP_ACT_NOTIFY needs a seccomp agent, which skiff does not run".into(),
                ))
            }
        })
    }

    fn to_seccompiler(self) -> SeccompAction {
        match self {
            Action::Allow => SeccompAction::Allow,
            Action::Errno(e) => SeccompAction::Errno(e),
            Action::KillThread => SeccompAction::KillThread,
            Action::KillProcess => SeccompAction::KillProcess,
            Action::Trap => SeccompAction::Trap,
            Action::Trace(e) => SeccompAction::Trace(e),
            Action::Log => SeccompAction::Log,
        }
    }
}

/// What a profile decided for one call number of one ABI, as libseccomp's filter database
/// keeps it: an entry that matches whatever the arguments decides the call and later
/// entries for it are ignored; it also replaces earlier argument rules for the call.
enum Calls {
    Any(Action),
    Rules(Vec<(Action, SeccompRule)>),
}

/// One rule's conditions, all of which must hold.
type Conj = Vec<oci_spec::runtime::LinuxSeccompArg>;

fn condition(
    a: &oci_spec::runtime::LinuxSeccompArg,
    len: SeccompCmpArgLen,
) -> Result<SeccompCondition, SeccompError> {
    let op = match a.op() {
        Op::ScmpCmpNe => SeccompCmpOp::Ne,
        Op::ScmpCmpLt => SeccompCmpOp::Lt,
        Op::ScmpCmpLe => SeccompCmpOp::Le,
        Op::ScmpCmpEq => SeccompCmpOp::Eq,
        Op::ScmpCmpGe => SeccompCmpOp::Ge,
        Op::ScmpCmpGt => SeccompCmpOp::Gt,
        Op::ScmpCmpMaskedEq => SeccompCmpOp::MaskedEq(a.value()),
    };
    // libseccomp's MASKED_EQ: (arg & value) == valueTwo.
    let value = match a.op() {
        Op::ScmpCmpMaskedEq => a.value_two().unwrap_or(0),
        _ => a.value(),
    };
    let index = u8::try_from(a.index())
        .map_err(|_| SeccompError::Compile(format!("argument index {}", a.index())))?;
    SeccompCondition::new(index, len, op, value)
        .map_err(|e| SeccompError::Compile(format!("argument {}: {e}", a.index())))
}

/// A profile entry's rules: None matches whatever the arguments; otherwise any of the
/// conjunctions (runc's rule: when two conditions name the same argument, each becomes a
/// rule of its own, any may hold).
fn entry_conjs(s: &LinuxSyscall) -> Option<Vec<Conj>> {
    let args = s.args().clone().unwrap_or_default();
    if args.is_empty() {
        return None;
    }
    let mut seen = [0u8; 6];
    for a in &args {
        if let Some(c) = seen.get_mut(a.index()) {
            *c += 1;
        }
    }
    if seen.iter().any(|c| *c > 1) {
        Some(args.into_iter().map(|a| vec![a]).collect())
    } else {
        Some(vec![args])
    }
}

/// The rules for a multiplexer (`socketcall`, `ipc`): argument 0 must be the selector,
/// whatever the entry said about it (libseccomp's rewrite).
fn muxed(conjs: Option<&Vec<Conj>>, selector: u64) -> Vec<Conj> {
    let sel = LinuxSeccompArgBuilder::default()
        .index(0usize)
        .value(selector)
        .op(Op::ScmpCmpEq)
        .build()
        .ok();
    let base = conjs.cloned().unwrap_or_else(|| vec![Vec::new()]);
    base.into_iter()
        .map(|c| {
            let mut c: Conj = c.into_iter().filter(|a| a.index() != 0).collect();
            c.extend(sel);
            c
        })
        .collect()
}

fn add(db: &mut BTreeMap<i64, Calls>, nr: i64, action: Action, rules: Option<Vec<SeccompRule>>) {
    match (db.get_mut(&nr), rules) {
        (Some(Calls::Any(_)), _) => {
            tracing::debug!(nr, "seccomp: an earlier rule decided this call, skipped");
        }
        (_, None) => {
            db.insert(nr, Calls::Any(action));
        }
        (Some(Calls::Rules(v)), Some(r)) => v.extend(r.into_iter().map(|r| (action, r))),
        (None, Some(r)) => {
            db.insert(
                nr,
                Calls::Rules(r.into_iter().map(|r| (action, r)).collect()),
            );
        }
    }
}

/// The profile's decisions for one ABI, by call number.
fn decisions(
    sc: &LinuxSeccomp,
    abi: Abi,
    default: Action,
) -> Result<BTreeMap<i64, Calls>, SeccompError> {
    let to_rules = |conjs: Vec<Conj>| -> Result<Vec<SeccompRule>, SeccompError> {
        conjs
            .iter()
            .map(|c| {
                let conds = c
                    .iter()
                    .map(|a| condition(a, abi.arg_len()))
                    .collect::<Result<Vec<_>, _>>()?;
                SeccompRule::new(conds).map_err(|e| SeccompError::Compile(e.to_string()))
            })
            .collect()
    };
    let mut db = BTreeMap::new();
    for s in sc.syscalls().iter().flatten() {
        let action = Action::of(s.action(), s.errno_ret())?;
        // runc drops entries that repeat the default action.
        if action == default {
            continue;
        }
        let conjs = entry_conjs(s);
        for name in s.names() {
            let targets = abi::targets(abi, name);
            if targets.is_empty() {
                tracing::debug!(name, ?abi, "seccomp: syscall unknown on this ABI, skipped");
            }
            for (nr, selector) in targets {
                let rules = match selector {
                    Some(sel) => Some(to_rules(muxed(conjs.as_ref(), sel))?),
                    None => conjs.clone().map(to_rules).transpose()?,
                };
                add(&mut db, nr, action, rules);
            }
        }
    }
    Ok(db)
}

/// A compiled profile: the programs in the order they must be installed.
pub struct Compiled {
    pub programs: Vec<BpfProgram>,
    pub flags: libc::c_ulong,
}

/// Builds the filter stack: per ABI the profile covers, a base filter and one per other
/// action (see the module doc), each answering only for its ABI; then the filter that
/// kills calls of other ABIs.
pub fn compile(sc: &LinuxSeccomp) -> Result<Compiled, SeccompError> {
    let default = Action::of(sc.default_action(), sc.default_errno_ret())?;
    let abis = Abi::for_spec(sc.architectures().as_deref());
    // (blocks the seccomp call itself, filter): such a filter must go in last, or the
    // next install would be refused.
    let mut stack: Vec<(bool, BpfProgram)> = Vec::new();
    for &abi in &abis {
        let db = decisions(sc, abi, default)?;
        let mut all: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
        let mut by_action: BTreeMap<Action, BTreeMap<i64, Vec<SeccompRule>>> = BTreeMap::new();
        for (nr, calls) in db {
            match calls {
                Calls::Any(a) => {
                    all.insert(nr, Vec::new());
                    by_action.entry(a).or_default().insert(nr, Vec::new());
                }
                Calls::Rules(v) => {
                    for (a, r) in v {
                        all.entry(nr).or_default().push(r.clone());
                        by_action
                            .entry(a)
                            .or_default()
                            .entry(nr)
                            .or_default()
                            .push(r);
                    }
                }
            }
        }
        let seccomp_nr = if abi == Abi::host() {
            abi.nr("seccomp").unwrap_or(-1)
        } else {
            -1
        };
        let mk = |rules: BTreeMap<i64, Vec<SeccompRule>>, mismatch: Action, matched: Action| {
            let f = SeccompFilter::new(
                rules,
                mismatch.to_seccompiler(),
                matched.to_seccompiler(),
                target(),
            )
            .map_err(|e| SeccompError::Compile(e.to_string()))?;
            let p = BpfProgram::try_from(f).map_err(|e| SeccompError::Compile(e.to_string()))?;
            abi::scope(abi, p)
        };
        for (action, rules) in by_action {
            if action == Action::Allow {
                continue;
            }
            let blocks = rules.contains_key(&seccomp_nr);
            stack.push((blocks, mk(rules, Action::Allow, action)?));
        }
        if default != Action::Allow {
            let blocks = abi == Abi::host() && !all.contains_key(&seccomp_nr);
            stack.push((blocks, mk(all, default, Action::Allow)?));
        }
    }
    stack.push((false, abi::arch_filter(&abis, abi::RET_KILL_THREAD)));
    stack.sort_by_key(|(b, _)| *b);
    let programs = stack.into_iter().map(|(_, p)| p).collect();
    let mut flags = 0;
    for f in sc.flags().iter().flatten() {
        let name = serde_json::to_value(f)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        // TSYNC means nothing for a single-threaded process.
        if name != "SECCOMP_FILTER_FLAG_TSYNC" {
            flags |= super::profile::flag_bit(&name).map_err(SeccompError::Compile)?;
        }
    }
    Ok(Compiled { programs, flags })
}

/// Installs the programs on the calling thread. Without no_new_privs the caller needs
/// CAP_SYS_ADMIN in its user namespace.
pub fn install(c: &Compiled) -> Result<(), SeccompError> {
    for p in &c.programs {
        let prog = libc::sock_fprog {
            len: p.len() as u16,
            // seccompiler's sock_filter is #[repr(C)] with the kernel's layout.
            filter: p.as_ptr() as *mut libc::sock_filter,
        };
        tracing::debug!(len = p.len(), "seccomp(SECCOMP_SET_MODE_FILTER)");
        // SAFETY: the kernel copies the program from `prog` during the call; both live
        // until it returns.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                c.flags,
                &prog as *const libc::sock_fprog,
            )
        };
        if rc != 0 {
            return Err(SeccompError::Install(std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::seccomp::{default_profile, Profile};

    const I386: u32 = 0x4000_0003;
    const X86_64: u32 = 0xc000_003e;

    /// The kernel's answer from a filter stack: the lowest action (as signed) wins.
    fn decide(c: &Compiled, arch: u32, nr: i64, args: [u64; 6]) -> u32 {
        c.programs
            .iter()
            .map(|p| abi::run(p, arch, nr as u32, args))
            .min_by_key(|r| (r & 0xffff_0000) as i32)
            .unwrap()
    }

    fn caps() -> std::collections::HashSet<String> {
        ["CAP_CHOWN", "CAP_SETUID", "CAP_SYS_CHROOT"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    fn compiled(p: &Profile) -> Compiled {
        compile(&p.resolve(&caps()).unwrap()).unwrap()
    }

    const ALLOW: u32 = 0x7fff_0000;
    const fn errno(e: u32) -> u32 {
        0x0005_0000 | e
    }

    #[test]
    fn default_profile_covers_i386_and_x32() {
        if Abi::host() != Abi::X86_64 {
            return;
        }
        let c = compiled(&default_profile());
        let nr = |abi: Abi, n: &str| abi.nr(n).unwrap();
        let m1 = [u64::from(u32::MAX); 6];
        for abi in [Abi::X86_64, Abi::I386, Abi::X32] {
            let arch = if abi == Abi::I386 { I386 } else { X86_64 };
            assert_eq!(decide(&c, arch, nr(abi, "getpid"), m1), ALLOW, "{abi:?}");
            assert_eq!(
                decide(&c, arch, nr(abi, "add_key"), m1),
                errno(38),
                "{abi:?}"
            );
            assert_eq!(decide(&c, arch, nr(abi, "userfaultfd"), m1), errno(1));
            assert_eq!(decide(&c, arch, nr(abi, "bpf"), m1), errno(1));
            let sock = nr(abi, "socket");
            assert_eq!(decide(&c, arch, sock, [16, 3, 9, 0, 0, 0]), errno(22));
            assert_eq!(decide(&c, arch, sock, [2, 1, 0, 0, 0, 0]), ALLOW);
            assert_eq!(decide(&c, arch, nr(abi, "personality"), [1; 6]), errno(38));
            assert_eq!(decide(&c, arch, nr(abi, "personality"), [8; 6]), ALLOW);
        }
        // 32-bit arguments: only the low half counts.
        let pers = nr(Abi::I386, "personality");
        assert_eq!(decide(&c, I386, pers, [0xffff_ffff; 6]), ALLOW);
        // i386-only calls.
        assert_eq!(decide(&c, I386, nr(Abi::I386, "socketcall"), m1), ALLOW);
        assert_eq!(decide(&c, I386, nr(Abi::I386, "vm86"), m1), errno(1));
        assert_eq!(decide(&c, I386, nr(Abi::I386, "chown32"), m1), ALLOW);
        // x86_64 numbers beyond the table, and unknown arches.
        assert_eq!(decide(&c, X86_64, 1000, m1), errno(38));
        assert_eq!(decide(&c, 0xc000_00b7, 20, m1), abi::RET_KILL_THREAD);
    }

    #[test]
    fn custom_profile_rules_reach_the_multiplexers() {
        if Abi::host() != Abi::X86_64 {
            return;
        }
        let p: Profile = serde_json::from_str(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_X86"],
            "syscalls":[
              {"names":["socket"],"action":"SCMP_ACT_ERRNO","errnoRet":95},
              {"names":["semget"],"action":"SCMP_ACT_ERRNO","errnoRet":34},
              {"names":["connect"],"action":"SCMP_ACT_ERRNO","errnoRet":33,
               "args":[{"index":0,"value":7,"op":"SCMP_CMP_EQ"},{"index":2,"value":9,"op":"SCMP_CMP_EQ"}]},
              {"names":["uname"],"action":"SCMP_ACT_ALLOW"},
              {"names":["uname"],"action":"SCMP_ACT_ERRNO","errnoRet":33}
            ]}"#,
        )
        .unwrap();
        let c = compiled(&p);
        let m1 = [u64::from(u32::MAX); 6];
        let i = |n: &str| Abi::I386.nr(n).unwrap();
        assert_eq!(decide(&c, I386, i("socket"), m1), errno(95));
        assert_eq!(decide(&c, I386, 102, [1, 0, 0, 0, 0, 0]), errno(95));
        assert_eq!(decide(&c, I386, 102, [2, 0, 0, 0, 0, 0]), ALLOW);
        assert_eq!(decide(&c, I386, i("semget"), m1), errno(34));
        assert_eq!(decide(&c, I386, 117, [2, 0, 0, 0, 0, 0]), errno(34));
        assert_eq!(decide(&c, I386, 117, [23, 0, 0, 0, 0, 0]), ALLOW);
        // connect's argument 0 becomes the selector on socketcall; argument 2 stays.
        assert_eq!(
            decide(&c, I386, i("connect"), [7, 0, 9, 0, 0, 0]),
            errno(33)
        );
        assert_eq!(decide(&c, I386, 102, [3, 0, 9, 0, 0, 0]), errno(33));
        assert_eq!(decide(&c, I386, 102, [3, 0, 8, 0, 0, 0]), ALLOW);
        // An entry with the default action is dropped (runc): uname gets the errno.
        assert_eq!(decide(&c, X86_64, 63, m1), errno(33));
        assert_eq!(decide(&c, I386, i("uname"), m1), errno(33));
        // x32 is not listed: killed.
        assert_eq!(
            decide(&c, X86_64, 39 | abi::X32_SYSCALL_BIT, m1),
            abi::RET_KILL_THREAD
        );
    }

    #[test]
    fn only_the_native_abi_listed_kills_32_bit_calls() {
        if Abi::host() != Abi::X86_64 {
            return;
        }
        for arches in [r#"["SCMP_ARCH_X86_64"]"#, "[]"] {
            let p: Profile = serde_json::from_str(&format!(
                r#"{{"defaultAction":"SCMP_ACT_ALLOW","architectures":{arches},
                "syscalls":[{{"names":["uname"],"action":"SCMP_ACT_ERRNO","errnoRet":33}}]}}"#
            ))
            .unwrap();
            let c = compiled(&p);
            assert_eq!(decide(&c, X86_64, 39, [0; 6]), ALLOW);
            assert_eq!(decide(&c, X86_64, 63, [0; 6]), errno(33));
            assert_eq!(decide(&c, I386, 20, [0; 6]), abi::RET_KILL_THREAD);
        }
    }
}
