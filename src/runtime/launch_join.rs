//! Cloning a container init into namespaces that already exist (`--network
//! container:NAME`, `ns:PATH`). setns into a user namespace is one-way, so the monitor
//! cannot do it itself: it forks a short-lived child (a fork of the single-threaded
//! monitor is single-threaded, which setns into a user namespace requires) that enters
//! the user and network namespaces and clones the init with CLONE_PARENT, so the init
//! is still the monitor's own child (waited for, PDEATHSIG), then reports its pid.

use std::io::{Read, Write};

use nix::sched::CloneFlags;
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, Pid};

use super::networks::JoinNs;
use super::RuntimeError;
use crate::userns::{IdMapping, IdRange};

fn failed(message: String) -> RuntimeError {
    RuntimeError::Init { code: 125, message }
}

/// Parses /proc/self/uid_map (or gid_map) text.
fn parse_map(text: &str) -> Vec<IdRange> {
    let mut v: Vec<IdRange> = text
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace().map(|x| x.parse::<u32>().ok());
            Some(IdRange {
                inside: w.next()??,
                outside: w.next()??,
                count: w.next()??,
            })
        })
        .collect();
    v.sort_by_key(|r| r.inside);
    v
}

fn same(a: &[IdRange], b: &[IdRange]) -> bool {
    let mut b = b.to_vec();
    b.sort_by_key(|r| r.inside);
    a.len() == b.len()
        && a.iter()
            .zip(&b)
            .all(|(x, y)| x.inside == y.inside && x.outside == y.outside && x.count == y.count)
}

/// In the forked child: enter the namespaces, check the ID mapping, clone the init.
fn enter_and_clone(
    j: &JoinNs,
    flags: CloneFlags,
    stack: &mut [u8],
    cb: &dyn Fn() -> isize,
    expect: Option<&IdMapping>,
) -> Result<Pid, String> {
    if let Some(u) = &j.userns {
        tracing::debug!("setns user namespace");
        nix::sched::setns(u, CloneFlags::CLONE_NEWUSER).map_err(|e| {
            format!("joining the user namespace that owns the network namespace: {e}")
        })?;
        if let Some(m) = expect {
            let uids =
                parse_map(&std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default());
            let gids =
                parse_map(&std::fs::read_to_string("/proc/self/gid_map").unwrap_or_default());
            if !same(&uids, &m.uids) || !same(&gids, &m.gids) {
                return Err("the network namespace belongs to a user namespace with another ID mapping than this container's: skiff can only join one whose user namespace maps IDs as the container does (e.g. another skiff container's /proc/PID/ns/net)".into());
            }
        }
    }
    tracing::debug!("setns network namespace");
    nix::sched::setns(&j.netns, CloneFlags::CLONE_NEWNET)
        .map_err(|e| format!("joining the network namespace: {e}"))?;
    let flags = flags | CloneFlags::CLONE_PARENT;
    tracing::debug!(?flags, "clone container init");
    // SAFETY: this forked child of the single-threaded monitor is single-threaded; the
    // callback only uses data copied into this process and ends in execve or exits.
    unsafe { nix::sched::clone(Box::new(cb), stack, flags, Some(libc::SIGCHLD)) }
        .map_err(|e| format!("clone({flags:?}): {e}"))
}

/// Clones the container init inside `j`'s namespaces; the init is our child.
pub fn clone_joined(
    j: &JoinNs,
    flags: CloneFlags,
    stack: &mut [u8],
    cb: &dyn Fn() -> isize,
    expect: Option<&IdMapping>,
) -> Result<Pid, RuntimeError> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|source| {
        RuntimeError::Kernel {
            call: "pipe2".into(),
            source,
        }
    })?;
    // SAFETY: the monitor is single-threaded, so the child's memory is consistent; it
    // only enters namespaces, clones, writes one line and _exits.
    match unsafe { nix::unistd::fork() } {
        Ok(ForkResult::Child) => {
            drop(r);
            let line = match enter_and_clone(j, flags, stack, cb, expect) {
                Ok(pid) => format!("ok {pid}"),
                Err(e) => format!("error {e}"),
            };
            let mut w = std::fs::File::from(w);
            let _ = w.write_all(line.as_bytes());
            // SAFETY: _exit skips destructors of the parent's state copied into us.
            unsafe { libc::_exit(0) }
        }
        Ok(ForkResult::Parent { child }) => {
            drop(w);
            let mut out = String::new();
            let _ = std::fs::File::from(r).read_to_string(&mut out);
            let _ = waitpid(child, None);
            if let Some(pid) = out.strip_prefix("ok ").and_then(|p| p.trim().parse().ok()) {
                return Ok(Pid::from_raw(pid));
            }
            Err(failed(
                out.strip_prefix("error ")
                    .unwrap_or("the helper that joins the network namespace died")
                    .to_string(),
            ))
        }
        Err(source) => Err(RuntimeError::Kernel {
            call: "fork".into(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_compare_as_sets() {
        let a = parse_map("         0       1001          1\n         1     100000      65536\n");
        let b = vec![
            IdRange {
                inside: 1,
                outside: 100000,
                count: 65536,
            },
            IdRange {
                inside: 0,
                outside: 1001,
                count: 1,
            },
        ];
        assert!(same(&a, &b));
        assert!(!same(&a, &b[..1]));
    }
}
