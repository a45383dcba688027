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
//! big list and denies it again without CAP_SYS_ADMIN: containers get it allowed).
//! Calls matched by argument rules of two different actions could still differ from
//! libseccomp's single program; a profile cannot mean that consistently anyway.
//!
//! Names the architecture's table does not know are skipped (as runc does). Calls made
//! through another ABI (32-bit `int 0x80` on x86_64) kill the process: seccompiler checks
//! the architecture first, and skiff does not build 32-bit filters.

use std::collections::BTreeMap;

use oci_spec::runtime::{
    LinuxSeccomp, LinuxSeccompAction as Act, LinuxSeccompOperator as Op, LinuxSyscall,
};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use super::SeccompError;

fn target() -> TargetArch {
    if cfg!(target_arch = "aarch64") {
        TargetArch::aarch64
    } else {
        TargetArch::x86_64
    }
}

/// The host architecture's syscall number for a name.
pub fn syscall_nr(name: &str) -> Option<i64> {
    let table = if cfg!(target_arch = "aarch64") {
        super::table_aarch64::TABLE
    } else {
        super::table_x86_64::TABLE
    };
    table
        .binary_search_by(|(n, _)| (*n).cmp(name))
        .ok()
        .map(|i| table[i].1)
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

/// A syscall's rules: None = matches whatever the arguments; otherwise any of the rules.
type Rules = BTreeMap<i64, Option<Vec<SeccompRule>>>;

fn condition(a: &oci_spec::runtime::LinuxSeccompArg) -> Result<SeccompCondition, SeccompError> {
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
    SeccompCondition::new(index, SeccompCmpArgLen::Qword, op, value)
        .map_err(|e| SeccompError::Compile(format!("argument {}: {e}", a.index())))
}

/// The seccompiler rules of one profile entry: its conditions all hold (runc's rule: when
/// two conditions name the same argument, each becomes a rule of its own, any may hold).
fn entry_rules(s: &LinuxSyscall) -> Result<Option<Vec<SeccompRule>>, SeccompError> {
    let args = s.args().clone().unwrap_or_default();
    if args.is_empty() {
        return Ok(None);
    }
    let conds = args.iter().map(condition).collect::<Result<Vec<_>, _>>()?;
    let mut seen = [0u8; 6];
    for a in &args {
        if let Some(c) = seen.get_mut(a.index()) {
            *c += 1;
        }
    }
    let rule = |c: Vec<SeccompCondition>| {
        SeccompRule::new(c).map_err(|e| SeccompError::Compile(e.to_string()))
    };
    if seen.iter().any(|c| *c > 1) {
        Ok(Some(
            conds
                .into_iter()
                .map(|c| rule(vec![c]))
                .collect::<Result<_, _>>()?,
        ))
    } else {
        Ok(Some(vec![rule(conds)?]))
    }
}

fn add(rules: &mut Rules, nr: i64, r: Option<Vec<SeccompRule>>) {
    match (rules.get_mut(&nr), r) {
        (Some(None), _) => {}
        (Some(slot), None) => *slot = None,
        (Some(Some(v)), Some(more)) => v.extend(more),
        (None, r) => {
            rules.insert(nr, r);
        }
    }
}

/// A compiled profile: the programs in the order they must be installed.
pub struct Compiled {
    pub programs: Vec<BpfProgram>,
    pub flags: libc::c_ulong,
}

/// Builds the filter stack for the host architecture.
pub fn compile(sc: &LinuxSeccomp) -> Result<Compiled, SeccompError> {
    let default = Action::of(sc.default_action(), sc.default_errno_ret())?;
    let mut all: Rules = BTreeMap::new();
    let mut by_action: BTreeMap<Action, Rules> = BTreeMap::new();
    // Calls an earlier entry already decided whatever the arguments.
    let mut fixed: BTreeMap<i64, Action> = BTreeMap::new();
    for s in sc.syscalls().iter().flatten() {
        let action = Action::of(s.action(), s.errno_ret())?;
        let rules = entry_rules(s)?;
        for name in s.names() {
            let Some(nr) = syscall_nr(name) else {
                tracing::debug!(
                    name,
                    "seccomp: syscall unknown on this architecture, skipped"
                );
                continue;
            };
            match fixed.get(&nr) {
                Some(a) if *a != action => {
                    tracing::debug!(name, "seccomp: an earlier rule decided this call, skipped");
                    continue;
                }
                Some(_) => {}
                None if rules.is_none() => {
                    fixed.insert(nr, action);
                }
                None => {}
            }
            add(&mut all, nr, rules.clone());
            add(by_action.entry(action).or_default(), nr, rules.clone());
        }
    }
    let seccomp_nr = syscall_nr("seccomp").unwrap_or(-1);
    // (blocks the seccomp call itself, filter): such a filter must go in last, or the
    // next install would be refused.
    let mut stack: Vec<(bool, SeccompFilter)> = Vec::new();
    let mk = |rules: Rules, mismatch: Action, matched: Action| {
        let rules = rules
            .into_iter()
            .map(|(nr, r)| (nr, r.unwrap_or_default()))
            .collect();
        SeccompFilter::new(
            rules,
            mismatch.to_seccompiler(),
            matched.to_seccompiler(),
            target(),
        )
        .map_err(|e| SeccompError::Compile(e.to_string()))
    };
    for (action, rules) in by_action {
        if action == Action::Allow {
            continue;
        }
        let blocks = rules.contains_key(&seccomp_nr);
        stack.push((blocks, mk(rules, Action::Allow, action)?));
    }
    if default != Action::Allow {
        let blocks = !all.contains_key(&seccomp_nr);
        stack.push((blocks, mk(all, default, Action::Allow)?));
    }
    stack.sort_by_key(|(b, _)| *b);
    let programs = stack
        .into_iter()
        .map(|(_, f)| BpfProgram::try_from(f).map_err(|e| SeccompError::Compile(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
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
