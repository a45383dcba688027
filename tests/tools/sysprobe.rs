//! sysprobe: tries system calls with harmless arguments and prints one line per call,
//! `NAME allowed` (it returned success) or `NAME EXXX` (the errno it failed with), for
//! skiff's seccomp tests: the same program runs in a container under podman and under
//! skiff and the outputs are compared line by line. Built like nettool (static, no
//! crates); not part of skiff.
//!
//! Arguments are chosen so a call that gets past the filter fails in the kernel with a
//! telling errno (EBADF, EFAULT, EINVAL...) and changes nothing: every argument is -1
//! unless listed in `special`. Calls that cannot return (exit, rt_sigreturn, pause,
//! vfork, uretprobe) are not tried. `sysprobe NAME...` tries only those names; besides
//! the table's names it knows a few variants that check argument rules:
//! `personality:query`, `personality:0`, `personality:1`, `socket:inet`,
//! `socket:netlink_audit`, `socket:vsock`.

use std::io::Write;

#[cfg(target_arch = "x86_64")]
include!("../../src/runtime/seccomp/table_x86_64.rs");
#[cfg(target_arch = "aarch64")]
include!("../../src/runtime/seccomp/table_aarch64.rs");

extern "C" {
    fn syscall(n: i64, ...) -> i64;
    fn __errno_location() -> *mut i32;
}

const SKIP: &[&str] = &[
    "exit",
    "exit_group",
    "rt_sigreturn",
    "pause",
    "vfork",
    "uretprobe",
];

const M1: u64 = u64::MAX;

fn nr(name: &str) -> Option<i64> {
    TABLE.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

/// Arguments for calls whose -1 would not be harmless or not telling.
fn special(name: &str) -> Option<(&'static str, [u64; 6])> {
    Some(match name {
        "umask" => ("umask", [0o022, 0, 0, 0, 0, 0]),
        "alarm" => ("alarm", [0; 6]),
        "msgget" => ("msgget", [12345, 0, 0, 0, 0, 0]),
        "semget" => ("semget", [12345, 0, 0, 0, 0, 0]),
        "shmget" => ("shmget", [12345, 0, 0, 0, 0, 0]),
        "personality:query" => ("personality", [0xffff_ffff, 0, 0, 0, 0, 0]),
        "personality:0" => ("personality", [0; 6]),
        "personality:1" => ("personality", [1, 0, 0, 0, 0, 0]),
        "socket:inet" => ("socket", [2, 1, 0, 0, 0, 0]),
        "socket:netlink_audit" => ("socket", [16, 3, 9, 0, 0, 0]),
        "socket:vsock" => ("socket", [40, 1, 0, 0, 0, 0]),
        _ => return None,
    })
}

fn errno_name(e: i32) -> String {
    let n = match e {
        1 => "EPERM",
        2 => "ENOENT",
        3 => "ESRCH",
        4 => "EINTR",
        5 => "EIO",
        6 => "ENXIO",
        7 => "E2BIG",
        9 => "EBADF",
        10 => "ECHILD",
        11 => "EAGAIN",
        12 => "ENOMEM",
        13 => "EACCES",
        14 => "EFAULT",
        16 => "EBUSY",
        17 => "EEXIST",
        19 => "ENODEV",
        20 => "ENOTDIR",
        22 => "EINVAL",
        24 => "EMFILE",
        25 => "ENOTTY",
        28 => "ENOSPC",
        29 => "ESPIPE",
        33 => "EDOM",
        34 => "ERANGE",
        36 => "ENAMETOOLONG",
        38 => "ENOSYS",
        61 => "ENODATA",
        75 => "EOVERFLOW",
        88 => "ENOTSOCK",
        93 => "EPROTONOSUPPORT",
        94 => "ESOCKTNOSUPPORT",
        95 => "EOPNOTSUPP",
        97 => "EAFNOSUPPORT",
        _ => return format!("errno{e}"),
    };
    n.to_string()
}

fn probe(label: &str) -> Option<String> {
    let (name, args) = match special(label) {
        Some(s) => s,
        None => (label, [M1; 6]),
    };
    let n = nr(name)?;
    // SAFETY (of this test tool): the arguments are invalid pointers, fds and flags the
    // kernel rejects, or the harmless values above.
    unsafe {
        *__errno_location() = 0;
        let r = syscall(n, args[0], args[1], args[2], args[3], args[4], args[5]);
        let e = *__errno_location();
        if name == "fork" && r == 0 {
            syscall(nr("exit_group")?, 0u64);
        }
        if name == "fork" && r > 0 {
            let mut st = 0i32;
            syscall(nr("wait4")?, r, &mut st as *mut i32, 0u64, 0u64);
        }
        if name == "personality" && r >= 0 {
            syscall(n, 0u64);
        }
        Some(if r >= 0 {
            format!("{label} allowed")
        } else {
            format!("{label} {}", errno_name(e))
        })
    }
}

fn main() {
    let asked: Vec<String> = std::env::args().skip(1).collect();
    let names: Vec<String> = if asked.is_empty() {
        let mut v: Vec<String> = TABLE
            .iter()
            .map(|(n, _)| n.to_string())
            .filter(|n| !SKIP.contains(&n.as_str()))
            .collect();
        for extra in [
            "personality:query",
            "personality:0",
            "personality:1",
            "socket:inet",
            "socket:netlink_audit",
            "socket:vsock",
        ] {
            v.push(extra.to_string());
        }
        v
    } else {
        asked
    };
    let mut out = std::io::stdout().lock();
    for n in &names {
        let line = probe(n).unwrap_or_else(|| format!("{n} unknown"));
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}
