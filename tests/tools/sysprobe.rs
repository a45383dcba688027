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
//!
//! On x86_64, `sysprobe --i386 [NAME...]` does the same for the i386 ABI (`int 0x80`
//! from this 64-bit process: what a 32-bit binary's calls look like to seccomp, with the
//! i386 numbers and 32-bit arguments), with the variants `socketcall:inet`,
//! `socketcall:netlink_audit`, `socketcall:bind`, `ipc:semget`, `ipc:shmget` for the
//! multiplexers; `sysprobe --x32 [NAME...]` tries the x32 numbers (`__X32_SYSCALL_BIT`).
//! A call the filter kills ends the probe (SIGSYS, exit 159). `getpid:value` prints what
//! getpid returned through the ABI and the process's own pid.

use std::io::Write;

mod native {
    #[cfg(target_arch = "x86_64")]
    include!("../../src/runtime/seccomp/table_x86_64.rs");
    #[cfg(target_arch = "aarch64")]
    include!("../../src/runtime/seccomp/table_aarch64.rs");
}
#[cfg(target_arch = "x86_64")]
mod i386 {
    include!("../../src/runtime/seccomp/table_i386.rs");
}
#[cfg(target_arch = "x86_64")]
mod x32 {
    include!("../../src/runtime/seccomp/table_x32.rs");
}

/// Which ABI the calls go through.
#[derive(Clone, Copy, PartialEq)]
enum Abi {
    Native,
    #[cfg(target_arch = "x86_64")]
    I386,
    #[cfg(target_arch = "x86_64")]
    X32,
}

impl Abi {
    fn table(self) -> &'static [(&'static str, i64)] {
        match self {
            Abi::Native => native::TABLE,
            #[cfg(target_arch = "x86_64")]
            Abi::I386 => i386::TABLE,
            #[cfg(target_arch = "x86_64")]
            Abi::X32 => x32::TABLE,
        }
    }
}

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
    // i386: sigreturn reads a frame off the stack; sigsuspend(mask) waits for a signal.
    "sigreturn",
    "sigsuspend",
];

const M1: u64 = u64::MAX;

fn nr(abi: Abi, name: &str) -> Option<i64> {
    abi.table()
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| *v)
}

/// An i386 system call from this 64-bit process. ebx and ebp cannot be asm operands, so
/// they are loaded inside; the kernel zeroes r8-r11 on the way back.
#[cfg(target_arch = "x86_64")]
unsafe fn int80(n: i64, a: [u64; 6]) -> i64 {
    let ret: u64;
    core::arch::asm!(
        "push rbx",
        "push rbp",
        "mov ebx, {a0:e}",
        "mov ebp, {a5:e}",
        "int 0x80",
        "pop rbp",
        "pop rbx",
        a0 = in(reg) a[0],
        a5 = in(reg) a[5],
        inout("rax") n as u64 => ret,
        in("rcx") a[1],
        in("rdx") a[2],
        in("rsi") a[3],
        in("rdi") a[4],
        out("r8") _,
        out("r9") _,
        out("r10") _,
        out("r11") _,
    );
    // -4095..-1 are errors; anything else (e.g. an address from brk) is a result.
    let v = ret as u32 as i32;
    if (-4095..0).contains(&v) {
        i64::from(v)
    } else {
        i64::from(ret as u32)
    }
}

/// One call through `abi`: the result, or -errno.
unsafe fn call(abi: Abi, n: i64, a: [u64; 6]) -> i64 {
    match abi {
        #[cfg(target_arch = "x86_64")]
        Abi::I386 => int80(n, a),
        #[cfg(target_arch = "x86_64")]
        Abi::X32 => raw(n | 0x4000_0000, a),
        Abi::Native => raw(n, a),
    }
}

unsafe fn raw(n: i64, a: [u64; 6]) -> i64 {
    *__errno_location() = 0;
    let r = syscall(n, a[0], a[1], a[2], a[3], a[4], a[5]);
    if r < 0 {
        -(*__errno_location() as i64)
    } else {
        r
    }
}

/// A page below 4 GiB for the argument arrays of i386 socketcall (MAP_32BIT).
#[cfg(target_arch = "x86_64")]
fn low_page() -> u64 {
    // SAFETY (of this test tool): an anonymous private mapping.
    unsafe { raw(9, [0, 4096, 3, 0x22 | 0x40, u64::MAX, 0]) as u64 }
}

/// socketcall's arguments `[a, b, c]` as the u32 array it reads, at a low address.
#[cfg(target_arch = "x86_64")]
fn low_args(v: [u32; 3]) -> u64 {
    let p = low_page();
    // SAFETY (of this test tool): p is a fresh writable page.
    unsafe { std::ptr::copy_nonoverlapping(v.as_ptr(), p as *mut u32, 3) };
    p
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
        #[cfg(target_arch = "x86_64")]
        "socketcall:inet" => ("socketcall", [1, low_args([2, 1, 0]), 0, 0, 0, 0]),
        #[cfg(target_arch = "x86_64")]
        "socketcall:netlink_audit" => ("socketcall", [1, low_args([16, 3, 9]), 9, 0, 0, 0]),
        "socketcall:bind" => ("socketcall", [2, 0xffff_ffff, 0, 0, 0, 0]),
        "ipc:semget" => ("ipc", [2, 12345, 0, 0, 0, 0]),
        "ipc:shmget" => ("ipc", [23, 12345, 0, 0, 0, 0]),
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

fn probe(abi: Abi, label: &str) -> Option<String> {
    let (name, mut args) = match special(label) {
        Some(s) => s,
        None => (label, [M1; 6]),
    };
    if abi != Abi::Native {
        // 32-bit ABIs: -1 is 0xffffffff; brk(0) only asks where the break is.
        for a in args.iter_mut().filter(|a| **a == M1) {
            *a = u64::from(u32::MAX);
        }
        if name == "brk" {
            args = [0; 6];
        }
    }
    if label == "getpid:value" {
        // SAFETY (of this test tool): getpid has no arguments.
        let (r, own) = unsafe { (call(abi, nr(abi, "getpid")?, args), std::process::id()) };
        return Some(format!("{label} {r} {own}"));
    }
    let n = nr(abi, name)?;
    // SAFETY (of this test tool): the arguments are invalid pointers, fds and flags the
    // kernel rejects, or the harmless values above.
    unsafe {
        let r = call(abi, n, args);
        if name == "fork" && r == 0 {
            raw(nr(Abi::Native, "exit_group")?, [0; 6]);
        }
        if name == "fork" && r > 0 {
            let mut st = 0i32;
            let p = &mut st as *mut i32 as u64;
            raw(nr(Abi::Native, "wait4")?, [r as u64, p, 0, 0, 0, 0]);
        }
        if name == "personality" && r >= 0 {
            raw(nr(Abi::Native, "personality")?, [0; 6]);
        }
        Some(if r >= 0 {
            format!("{label} allowed")
        } else {
            format!("{label} {}", errno_name(-r as i32))
        })
    }
}

fn main() {
    let mut asked: Vec<String> = std::env::args().skip(1).collect();
    let abi = match asked.first().map(String::as_str) {
        #[cfg(target_arch = "x86_64")]
        Some("--i386") => Abi::I386,
        #[cfg(target_arch = "x86_64")]
        Some("--x32") => Abi::X32,
        _ => Abi::Native,
    };
    if abi != Abi::Native {
        asked.remove(0);
    }
    let names: Vec<String> = if asked.is_empty() {
        let mut v: Vec<String> = abi
            .table()
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
        #[cfg(target_arch = "x86_64")]
        if abi == Abi::I386 {
            for extra in [
                "socketcall:inet",
                "socketcall:netlink_audit",
                "socketcall:bind",
                "ipc:semget",
                "ipc:shmget",
            ] {
                v.push(extra.to_string());
            }
        }
        v
    } else {
        asked
    };
    let mut out = std::io::stdout().lock();
    for n in &names {
        let line = probe(abi, n).unwrap_or_else(|| format!("{n} unknown"));
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}
