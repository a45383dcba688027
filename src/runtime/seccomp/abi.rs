//! The system call ABIs a filter covers, and the BPF that sends each call to its ABI's
//! rules.
//!
//! An x86_64 kernel with IA32 emulation takes three kinds of calls from one process: its
//! own (AUDIT_ARCH_X86_64), i386 ones (`int 0x80`, 32-bit binaries: AUDIT_ARCH_I386, other
//! numbers, 32-bit arguments) and, when built with CONFIG_X86_X32_ABI, x32 ones
//! (AUDIT_ARCH_X86_64 again, numbers with `__X32_SYSCALL_BIT` set). A profile names its
//! ABIs in `architectures`; runc + libseccomp apply every rule to each of them by name
//! and answer calls of an ABI not listed with the "bad arch" action, SIGSYS
//! (SECCOMP_RET_KILL_THREAD). On i386, libseccomp also turns rules on the socket and
//! SysV IPC calls into rules on the `socketcall`/`ipc` multiplexers (see [`targets`]).
//!
//! seccompiler only builds x86_64/aarch64/riscv64 filters, and each of them starts by
//! killing calls of any other architecture. Its program is an architecture check
//! followed by a body that only looks at the call number and arguments, so skiff builds
//! one body per ABI with seccompiler (32-bit argument compares for 32-bit ABIs) and
//! replaces the check with [`scope`]: calls of other ABIs get ALLOW from that program,
//! i.e. no opinion, since the kernel keeps the strictest answer of all filters. One
//! more small filter, [`arch_filter`], kills calls of ABIs the profile does not list.

use oci_spec::runtime::Arch;
use seccompiler::{sock_filter, BpfProgram, SeccompCmpArgLen};

use super::SeccompError;

const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const AUDIT_ARCH_I386: u32 = 0x4000_0003;
const AUDIT_ARCH_AARCH64: u32 = 0xc000_00b7;
/// The x32 ABI's call numbers have this bit set.
pub const X32_SYSCALL_BIT: i64 = 0x4000_0000;

/// The i386 multiplexers and the first argument that selects each call (linux/net.h
/// SYS_*, linux/ipc.h).
const SOCKETCALL: i64 = 102;
const IPC: i64 = 117;
const SOCKET_CALLS: &[(&str, u64)] = &[
    ("socket", 1),
    ("bind", 2),
    ("connect", 3),
    ("listen", 4),
    ("accept", 5),
    ("getsockname", 6),
    ("getpeername", 7),
    ("socketpair", 8),
    ("send", 9),
    ("recv", 10),
    ("sendto", 11),
    ("recvfrom", 12),
    ("shutdown", 13),
    ("setsockopt", 14),
    ("getsockopt", 15),
    ("sendmsg", 16),
    ("recvmsg", 17),
    ("accept4", 18),
    ("recvmmsg", 19),
    ("sendmmsg", 20),
];
const IPC_CALLS: &[(&str, u64)] = &[
    ("semop", 1),
    ("semget", 2),
    ("semctl", 3),
    ("semtimedop", 4),
    ("msgsnd", 11),
    ("msgrcv", 12),
    ("msgget", 13),
    ("msgctl", 14),
    ("shmat", 21),
    ("shmdt", 22),
    ("shmget", 23),
    ("shmctl", 24),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Abi {
    X86_64,
    X32,
    I386,
    Aarch64,
}

impl Abi {
    /// The host's own ABI.
    pub fn host() -> Abi {
        if cfg!(target_arch = "aarch64") {
            Abi::Aarch64
        } else {
            Abi::X86_64
        }
    }

    /// The ABIs a filter covers: the host's own, plus those of the profile's
    /// `architectures` this host can run. Others (e.g. SCMP_ARCH_AARCH64 on x86_64, or
    /// SCMP_ARCH_ARM, for which skiff has no table) can never be seen or stay refused.
    pub fn for_spec(arches: Option<&[Arch]>) -> Vec<Abi> {
        let mut out = vec![Abi::host()];
        for a in arches.unwrap_or_default() {
            let abi = match (Abi::host(), a) {
                (Abi::X86_64, Arch::ScmpArchX86) => Abi::I386,
                (Abi::X86_64, Arch::ScmpArchX32) => Abi::X32,
                _ => continue,
            };
            if !out.contains(&abi) {
                out.push(abi);
            }
        }
        out
    }

    fn audit_arch(self) -> u32 {
        match self {
            Abi::X86_64 | Abi::X32 => AUDIT_ARCH_X86_64,
            Abi::I386 => AUDIT_ARCH_I386,
            Abi::Aarch64 => AUDIT_ARCH_AARCH64,
        }
    }

    fn table(self) -> &'static [(&'static str, i64)] {
        match self {
            Abi::X86_64 => super::table_x86_64::TABLE,
            Abi::X32 => super::table_x32::TABLE,
            Abi::I386 => super::table_i386::TABLE,
            Abi::Aarch64 => super::table_aarch64::TABLE,
        }
    }

    /// The number the kernel shows the filter for a call of this ABI.
    pub fn nr(self, name: &str) -> Option<i64> {
        let t = self.table();
        let n = t
            .binary_search_by(|(n, _)| (*n).cmp(name))
            .ok()
            .map(|i| t[i].1)?;
        Some(if self == Abi::X32 {
            n | X32_SYSCALL_BIT
        } else {
            n
        })
    }

    /// libseccomp compares only the low 32 bits of arguments on 32-bit ABIs (x32
    /// included).
    pub fn arg_len(self) -> SeccompCmpArgLen {
        match self {
            Abi::X86_64 | Abi::Aarch64 => SeccompCmpArgLen::Qword,
            Abi::X32 | Abi::I386 => SeccompCmpArgLen::Dword,
        }
    }
}

/// Where a rule naming `name` lands on this ABI, as libseccomp places it: the call's own
/// number, and on i386 also the multiplexer with its first argument fixed to the call's
/// selector (`None`: keep the rule's arguments; `Some(sel)`: replace any condition on
/// argument 0 with `== sel`, keep the others, as libseccomp does).
pub fn targets(abi: Abi, name: &str) -> Vec<(i64, Option<u64>)> {
    let mut out = Vec::new();
    if abi == Abi::I386 {
        let muxed = SOCKET_CALLS
            .iter()
            .map(|(n, s)| (n, SOCKETCALL, s))
            .chain(IPC_CALLS.iter().map(|(n, s)| (n, IPC, s)))
            .find(|(n, _, _)| **n == name);
        if let Some((_, mux, sel)) = muxed {
            out.push((mux, Some(*sel)));
        }
    }
    if let Some(nr) = abi.nr(name) {
        out.push((nr, None));
    }
    out
}

const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JEQ_K: u16 = 0x15;
const BPF_JGE_K: u16 = 0x35;
const BPF_RET_K: u16 = 0x06;
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const RET_ALLOW: u32 = 0x7fff_0000;
const RET_KILL_PROCESS: u32 = 0x8000_0000;
/// libseccomp's default "bad arch" action (SCMP_ACT_KILL), which runc keeps.
pub const RET_KILL_THREAD: u32 = 0;

fn stmt(code: u16, k: u32) -> sock_filter {
    sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

fn same(a: &sock_filter, b: &sock_filter) -> bool {
    (a.code, a.jt, a.jf, a.k) == (b.code, b.jt, b.jf, b.k)
}

/// Turns a seccompiler program built for the host into one that answers only for `abi`:
/// seccompiler's leading architecture check (load arch; equal → skip; kill) is replaced
/// by "not this ABI → ALLOW". Its body uses relative jumps only, so it moves unchanged.
pub fn scope(abi: Abi, prog: BpfProgram) -> Result<BpfProgram, SeccompError> {
    let check = [
        stmt(BPF_LD_W_ABS, OFF_ARCH),
        jump(BPF_JEQ_K, Abi::host().audit_arch(), 1, 0),
        stmt(BPF_RET_K, RET_KILL_PROCESS),
    ];
    if prog.len() <= check.len() || !prog.iter().zip(&check).all(|(a, b)| same(a, b)) {
        return Err(SeccompError::Compile(
            "seccompiler's program does not start with its architecture check".into(),
        ));
    }
    let mut out = vec![
        stmt(BPF_LD_W_ABS, OFF_ARCH),
        jump(BPF_JEQ_K, abi.audit_arch(), 1, 0),
        stmt(BPF_RET_K, RET_ALLOW),
    ];
    match abi {
        // x86_64 and x32 share the audit arch: the number tells them apart.
        Abi::X86_64 | Abi::X32 => {
            let (jt, jf) = if abi == Abi::X32 { (1, 0) } else { (0, 1) };
            out.extend([
                stmt(BPF_LD_W_ABS, OFF_NR),
                jump(BPF_JGE_K, X32_SYSCALL_BIT as u32, jt, jf),
                stmt(BPF_RET_K, RET_ALLOW),
            ]);
        }
        Abi::I386 | Abi::Aarch64 => {}
    }
    out.extend_from_slice(&prog[check.len()..]);
    if out.len() > 4096 {
        return Err(SeccompError::Compile(format!(
            "a filter of {} instructions is over the kernel's limit of 4096",
            out.len()
        )));
    }
    Ok(out)
}

/// ALLOW for calls of the covered ABIs, `bad` for every other (including x32 numbers
/// when x32 is not covered).
pub fn arch_filter(abis: &[Abi], bad: u32) -> BpfProgram {
    let mut p = vec![stmt(BPF_LD_W_ABS, OFF_ARCH)];
    let mut block = |audit: u32, body: Vec<sock_filter>| {
        p.push(jump(BPF_JEQ_K, audit, 0, body.len() as u8));
        p.extend(body);
    };
    match Abi::host() {
        Abi::X86_64 => {
            block(
                AUDIT_ARCH_X86_64,
                if abis.contains(&Abi::X32) {
                    vec![stmt(BPF_RET_K, RET_ALLOW)]
                } else {
                    vec![
                        stmt(BPF_LD_W_ABS, OFF_NR),
                        jump(BPF_JGE_K, X32_SYSCALL_BIT as u32, 1, 0),
                        stmt(BPF_RET_K, RET_ALLOW),
                        stmt(BPF_RET_K, bad),
                    ]
                },
            );
            if abis.contains(&Abi::I386) {
                block(AUDIT_ARCH_I386, vec![stmt(BPF_RET_K, RET_ALLOW)]);
            }
        }
        _ => block(AUDIT_ARCH_AARCH64, vec![stmt(BPF_RET_K, RET_ALLOW)]),
    }
    p.push(stmt(BPF_RET_K, bad));
    p
}

/// A tiny classic-BPF interpreter for the instructions skiff's filters use.
#[cfg(test)]
pub fn run(prog: &[sock_filter], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
    let word = |off: u32| -> u32 {
        match off {
            0 => nr,
            4 => arch,
            o if (16..64).contains(&o) => {
                let a = args[((o - 16) / 8) as usize];
                if (o - 16) % 8 == 0 {
                    a as u32
                } else {
                    (a >> 32) as u32
                }
            }
            o => panic!("load at {o}"),
        }
    };
    let (mut pc, mut acc) = (0usize, 0u32);
    loop {
        let i = &prog[pc];
        pc += 1;
        match i.code {
            0x20 => acc = word(i.k),
            0x06 => return i.k,
            0x05 => pc += i.k as usize,
            0x54 => acc &= i.k,
            0x15 | 0x25 | 0x35 | 0x45 => {
                let t = match i.code {
                    0x15 => acc == i.k,
                    0x25 => acc > i.k,
                    0x35 => acc >= i.k,
                    _ => acc & i.k != 0,
                };
                pc += if t { i.jt } else { i.jf } as usize;
            }
            c => panic!("opcode {c:#x}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_and_targets() {
        assert_eq!(Abi::I386.nr("getpid"), Some(20));
        assert_eq!(Abi::I386.nr("socket"), Some(359));
        assert_eq!(Abi::I386.nr("clone3"), Some(435));
        assert_eq!(Abi::X32.nr("getpid"), Some(39 | X32_SYSCALL_BIT));
        assert_eq!(Abi::X32.nr("rt_sigaction"), Some(512 | X32_SYSCALL_BIT));
        assert_eq!(Abi::I386.nr("newfstatat"), None);
        for t in [
            super::super::table_i386::TABLE,
            super::super::table_x32::TABLE,
        ] {
            assert!(t.windows(2).all(|w| w[0].0 < w[1].0), "table not sorted");
        }
        assert_eq!(
            targets(Abi::I386, "socket"),
            vec![(SOCKETCALL, Some(1)), (359, None)]
        );
        // No direct i386 accept or semop: only the multiplexer.
        assert_eq!(targets(Abi::I386, "accept"), vec![(SOCKETCALL, Some(5))]);
        assert_eq!(targets(Abi::I386, "semop"), vec![(IPC, Some(1))]);
        assert_eq!(
            targets(Abi::I386, "shmget"),
            vec![(IPC, Some(23)), (395, None)]
        );
        assert_eq!(targets(Abi::X86_64, "socket"), vec![(41, None)]);
        assert_eq!(targets(Abi::I386, "nope"), vec![]);
    }

    #[test]
    fn arch_filter_kills_unlisted_abis() {
        if Abi::host() != Abi::X86_64 {
            return;
        }
        let x32 = 39 | X32_SYSCALL_BIT as u32;
        let only = arch_filter(&[Abi::X86_64], RET_KILL_THREAD);
        assert_eq!(run(&only, AUDIT_ARCH_X86_64, 39, [0; 6]), RET_ALLOW);
        assert_eq!(run(&only, AUDIT_ARCH_X86_64, x32, [0; 6]), RET_KILL_THREAD);
        assert_eq!(run(&only, AUDIT_ARCH_I386, 20, [0; 6]), RET_KILL_THREAD);
        assert_eq!(run(&only, 0x1234, 20, [0; 6]), RET_KILL_THREAD);
        let all = arch_filter(&[Abi::X86_64, Abi::I386, Abi::X32], RET_KILL_THREAD);
        assert_eq!(run(&all, AUDIT_ARCH_X86_64, x32, [0; 6]), RET_ALLOW);
        assert_eq!(run(&all, AUDIT_ARCH_I386, 20, [0; 6]), RET_ALLOW);
        assert_eq!(run(&all, AUDIT_ARCH_AARCH64, 20, [0; 6]), RET_KILL_THREAD);
    }

    #[test]
    fn for_spec_adds_what_the_host_runs() {
        let all = [
            Arch::ScmpArchX86_64,
            Arch::ScmpArchX86,
            Arch::ScmpArchX32,
            Arch::ScmpArchAarch64,
            Arch::ScmpArchArm,
        ];
        let abis = Abi::for_spec(Some(&all));
        if Abi::host() == Abi::X86_64 {
            assert_eq!(abis, vec![Abi::X86_64, Abi::I386, Abi::X32]);
        } else {
            assert_eq!(abis, vec![Abi::Aarch64]);
        }
        assert_eq!(Abi::for_spec(None), vec![Abi::host()]);
    }
}
