//! Seccomp for the 32-bit ABIs on x86_64: i386 (`int 0x80`, 32-bit binaries) and x32.
//! sysprobe's `--i386` mode makes every i386 call from inside the container (plus the
//! socketcall/ipc multiplexers), `--x32` every x32 number; skiff and rootless podman 4.3
//! (runc + libseccomp) must print the same line for each. Without podman the comparison
//! is skipped and the checks on known lines still run.

use crate::require;
use crate::seccomp::fixture::{probe_image, Podman};
use crate::seccomp::{differences, expect, parse, skiff_probe};
use crate::util::TestEnv;

fn x86_64() -> Result<(), String> {
    if cfg!(target_arch = "x86_64") {
        Ok(())
    } else {
        Err("the 32-bit ABIs are probed on x86_64 only".into())
    }
}

/// What podman's default profile decides for i386 calls.
const I386_DEFAULT: &[(&str, &str)] = &[
    ("getpid", "allowed"),
    ("add_key", "ENOSYS"),
    ("userfaultfd", "EPERM"),
    ("bpf", "EPERM"),
    ("vm86", "EPERM"),
    ("chroot", "EFAULT"),
    ("personality:1", "ENOSYS"),
    ("personality:query", "allowed"),
    ("socket:netlink_audit", "EINVAL"),
    ("socket:inet", "allowed"),
    ("socketcall:inet", "allowed"),
    ("socketcall:bind", "EFAULT"),
    ("ipc:semget", "ENOENT"),
    ("chown32", "EFAULT"),
];

/// sysprobe under podman with these run flags and arguments.
fn podman_run(p: &Podman, image: &str, flags: &[&str], names: &[&str]) -> crate::util::Output {
    let mut args = vec!["run", "--rm", "--network", "none"];
    args.extend_from_slice(flags);
    args.extend([image, "sysprobe"]);
    args.extend_from_slice(names);
    p.run(&args)
}

fn skiff_run(env: &TestEnv, image: &str, flags: &[&str], names: &[&str]) -> crate::util::Output {
    let mut args = vec!["run", "--rm", "--network", "none"];
    args.extend_from_slice(flags);
    args.extend([image, "sysprobe"]);
    args.extend_from_slice(names);
    env.run(&args)
}

#[test]
fn i386_and_x32_match_podman_line_by_line() {
    require!(x86_64());
    let image = require!(probe_image());
    let env = TestEnv::rootless();
    let unconfined = ["--security-opt", "seccomp=unconfined"];
    let mut ours = Vec::new();
    for flags in [&[][..], &unconfined[..]] {
        for abi in ["--i386", "--x32"] {
            let out = skiff_probe(&env, image, flags, &[abi]);
            ours.push((flags, abi, out));
        }
    }
    let d = parse(&ours[0].2);
    assert!(
        d.len() > 400,
        "sysprobe --i386 tried only {} calls",
        d.len()
    );
    expect(&d, I386_DEFAULT);
    // x32: the filter's answers (calls it lets through get ENOSYS where the kernel has no
    // x32 ABI, as here).
    expect(
        &parse(&ours[1].2),
        &[
            ("add_key", "ENOSYS"),
            ("userfaultfd", "EPERM"),
            ("bpf", "EPERM"),
        ],
    );
    expect(
        &parse(&ours[2].2),
        &[
            ("userfaultfd", "EINVAL"),
            ("vm86", "ENOSYS"),
            ("personality:1", "allowed"),
        ],
    );
    let podman = require!(Podman::new(&env));
    require!(podman.pull(image));
    for (flags, abi, ours) in &ours {
        let out = podman_run(&podman, image, flags, &[abi]);
        out.success();
        let theirs = out.stdout_str();
        let diff = differences(&theirs, ours);
        eprintln!(
            "sysprobe {abi} {flags:?}: {} calls compared, {} differ",
            parse(&theirs).len(),
            diff.len()
        );
        assert!(
            diff.is_empty(),
            "{abi} {flags:?}: differs from podman:\n{}",
            diff.join("\n")
        );
    }
}

#[test]
fn a_32_bit_getpid_returns_the_pid() {
    require!(x86_64());
    let image = require!(probe_image());
    let env = TestEnv::rootless();
    for flags in [&[][..], &["--security-opt", "no-new-privileges"][..]] {
        let out = skiff_run(&env, image, flags, &["--i386", "getpid:value", "getppid"]);
        out.success();
        let s = out.stdout_str();
        let first = s.lines().next().unwrap_or_default().to_string();
        let v: Vec<&str> = first.split(' ').collect();
        assert_eq!(v.len(), 3, "{}", out.describe());
        assert_eq!(v[0], "getpid:value");
        assert!(v[1].parse::<i64>().unwrap_or(-1) > 0, "{first}");
        assert_eq!(v[1], v[2], "i386 getpid differs from the pid: {first}");
        expect(&parse(&s), &[("getppid", "allowed")]);
    }
}

/// Allows everything but `uname` (EDOM), for the listed architectures.
fn native_only(arches: &str) -> String {
    format!(
        r#"{{"defaultAction":"SCMP_ACT_ALLOW",{arches}
        "syscalls":[{{"names":["uname"],"action":"SCMP_ACT_ERRNO","errnoRet":33}}]}}"#
    )
}

#[test]
fn a_profile_without_x86_kills_32_bit_calls_like_podman() {
    require!(x86_64());
    let image = require!(probe_image());
    let env = TestEnv::rootless();
    let podman = Podman::new(&env).ok();
    if let Some(p) = &podman {
        require!(p.pull(image));
    }
    for (name, arches) in [
        ("x86_64.json", r#""architectures":["SCMP_ARCH_X86_64"],"#),
        ("none.json", ""),
    ] {
        let file = env.work.join(name);
        std::fs::write(&file, native_only(arches)).expect("write profile");
        env.give(&file);
        let opt = format!("seccomp={}", file.display());
        let flags = ["--security-opt", opt.as_str()];
        // The native ABI gets the rules.
        let out = skiff_run(&env, image, &flags, &["uname", "getpid"]);
        out.success();
        expect(
            &parse(&out.stdout_str()),
            &[("uname", "EDOM"), ("getpid", "allowed")],
        );
        // i386 and x32 calls: SIGSYS before any output (exit 128 + 31).
        for abi in ["--i386", "--x32"] {
            let ours = skiff_run(&env, image, &flags, &[abi, "getpid"]);
            ours.assert_code(159);
            assert_eq!(ours.stdout_trim(), "", "{name} {abi}");
            if let Some(p) = &podman {
                let theirs = podman_run(p, image, &flags, &[abi, "getpid"]);
                assert_eq!(theirs.code(), Some(159), "podman {name} {abi}");
                assert_eq!(theirs.stdout_trim(), "");
            }
        }
    }
}

/// A profile for all three x86 ABIs whose rules show libseccomp's i386 handling: `socket`
/// and `semget` denied (their socketcall/ipc forms too), `connect` denied only for
/// argument 2 == 9 (socketcall keeps that condition), `personality(1)` denied.
const CUSTOM32: &str = r#"{
  "defaultAction": "SCMP_ACT_ALLOW",
  "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
  "syscalls": [
    {"names": ["uname"], "action": "SCMP_ACT_ERRNO", "errnoRet": 33},
    {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 95},
    {"names": ["semget"], "action": "SCMP_ACT_ERRNO", "errnoRet": 34},
    {"names": ["connect"], "action": "SCMP_ACT_ERRNO", "errnoRet": 33,
     "args": [{"index": 2, "value": 4294967295, "op": "SCMP_CMP_EQ"}]},
    {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 95,
     "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]}
  ]
}"#;

#[test]
fn custom_profile_on_i386_and_x32_matches_podman() {
    require!(x86_64());
    let image = require!(probe_image());
    let env = TestEnv::rootless();
    let file = env.work.join("profile32.json");
    std::fs::write(&file, CUSTOM32).expect("write profile");
    env.give(&file);
    let opt = format!("seccomp={}", file.display());
    let flags = ["--security-opt", opt.as_str()];
    let i386 = skiff_probe(&env, image, &flags, &["--i386"]);
    expect(
        &parse(&i386),
        &[
            ("uname", "EDOM"),
            ("socket:inet", "EOPNOTSUPP"),
            ("socketcall:inet", "EOPNOTSUPP"),
            ("socketcall:bind", "EFAULT"),
            ("ipc:semget", "ERANGE"),
            ("ipc:shmget", "ENOENT"),
            ("semget", "ERANGE"),
            ("connect", "EDOM"),
            ("personality:1", "EOPNOTSUPP"),
            ("personality:0", "allowed"),
            ("userfaultfd", "EINVAL"),
        ],
    );
    let x32 = skiff_probe(&env, image, &flags, &["--x32"]);
    expect(
        &parse(&x32),
        &[
            ("uname", "EDOM"),
            ("socket", "EOPNOTSUPP"),
            ("getpid", "ENOSYS"),
        ],
    );
    let podman = require!(Podman::new(&env));
    require!(podman.pull(image));
    for (abi, ours) in [("--i386", &i386), ("--x32", &x32)] {
        let out = podman_run(&podman, image, &flags, &[abi]);
        out.success();
        let theirs = out.stdout_str();
        let diff = differences(&theirs, ours);
        eprintln!(
            "custom {abi}: {} calls compared, {} differ",
            parse(&theirs).len(),
            diff.len()
        );
        assert!(
            diff.is_empty(),
            "{abi}: differs from podman:\n{}",
            diff.join("\n")
        );
    }
}
