//! Issue 7, seccomp: the default filter, `--security-opt seccomp=unconfined|FILE`,
//! `--privileged`, and `exec`. The proof is sysprobe (tests/tools/sysprobe.rs), which tries
//! every system call of the host's table with harmless arguments and prints the outcome:
//! the same image runs under rootless podman 4.3 (runc) and under skiff, and the outputs
//! must agree line by line. Without podman the comparison is skipped, and the checks on
//! known lines (what podman's profile decides) still run.

use std::collections::BTreeMap;

use crate::require;
use crate::support::{assert_error, inspect_one, snapshot};
use crate::util::TestEnv;

pub mod fixture;
use fixture::{probe_image, Podman};

/// `NAME -> outcome` from sysprobe's output.
pub(crate) fn parse(out: &str) -> BTreeMap<String, String> {
    out.lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(n, r)| (n.to_string(), r.to_string()))
        .collect()
}

/// sysprobe under skiff with these run flags.
pub(crate) fn skiff_probe(env: &TestEnv, image: &str, flags: &[&str], names: &[&str]) -> String {
    let mut args = vec!["run", "--rm", "--network", "none"];
    args.extend_from_slice(flags);
    args.extend([image, "sysprobe"]);
    args.extend_from_slice(names);
    let out = env.run(&args);
    out.success();
    let s = out.stdout_str();
    assert!(
        s.lines().count() >= names.len().max(1),
        "{}",
        out.describe()
    );
    s
}

pub(crate) fn podman_probe(p: &Podman, image: &str, flags: &[&str]) -> String {
    let mut args = vec!["run", "--rm", "--network", "none"];
    args.extend_from_slice(flags);
    args.extend([image, "sysprobe"]);
    let out = p.run(&args);
    out.success();
    out.stdout_str()
}

/// Every line where the two runs differ, as `name: podman=X skiff=Y`.
pub(crate) fn differences(podman: &str, skiff: &str) -> Vec<String> {
    let (p, s) = (parse(podman), parse(skiff));
    let mut out = Vec::new();
    for (name, pr) in &p {
        match s.get(name) {
            Some(sr) if sr == pr => {}
            other => out.push(format!("{name}: podman={pr} skiff={other:?}")),
        }
    }
    out.extend(
        s.keys()
            .filter(|n| !p.contains_key(*n))
            .map(|n| format!("{n}: only under skiff")),
    );
    out
}

#[track_caller]
pub(crate) fn expect(map: &BTreeMap<String, String>, want: &[(&str, &str)]) {
    for (name, outcome) in want {
        assert_eq!(
            map.get(*name).map(String::as_str),
            Some(*outcome),
            "sysprobe {name}"
        );
    }
}

/// What podman's default profile decides, for calls that tell the rules apart.
const DEFAULT_DECISIONS: &[(&str, &str)] = &[
    // EPERM list.
    ("userfaultfd", "EPERM"),
    ("vmsplice", "EPERM"),
    ("kexec_load", "EPERM"),
    // Capability rules: no CAP_SYS_ADMIN / SYS_MODULE / SYS_PTRACE / SYS_TIME.
    ("bpf", "EPERM"),
    ("init_module", "EPERM"),
    ("finit_module", "EPERM"),
    ("kcmp", "EPERM"),
    ("clock_settime", "EPERM"),
    // Not in the allowlist: the default answer, ENOSYS.
    ("add_key", "ENOSYS"),
    ("io_uring_setup", "ENOSYS"),
    ("personality:1", "ENOSYS"),
    // Allowed (the kernel's own answer to the bad arguments).
    ("personality:query", "allowed"),
    ("personality:0", "allowed"),
    ("unshare", "EINVAL"),
    ("mount", "EFAULT"),
    ("setns", "EBADF"),
    ("chroot", "EFAULT"),
    ("socket:netlink_audit", "EINVAL"),
    ("socket:inet", "allowed"),
];

#[test]
fn default_and_unconfined_match_podman_line_by_line() {
    let image = require!(probe_image());
    let env = TestEnv::rootless();
    let default = skiff_probe(&env, image, &[], &[]);
    let d = parse(&default);
    assert!(d.len() > 300, "sysprobe tried only {} calls", d.len());
    expect(&d, DEFAULT_DECISIONS);
    let unconfined = skiff_probe(&env, image, &["--security-opt", "seccomp=unconfined"], &[]);
    let u = parse(&unconfined);
    // Without a filter the kernel answers itself.
    expect(
        &u,
        &[
            ("add_key", "EINVAL"),
            ("personality:1", "allowed"),
            ("userfaultfd", "EINVAL"),
        ],
    );
    // --privileged: no filter either (and all capabilities).
    let p = parse(&skiff_probe(
        &env,
        image,
        &["--privileged"],
        &["add_key", "bpf"],
    ));
    expect(&p, &[("add_key", "EINVAL")]);
    assert_ne!(p.get("bpf").map(String::as_str), Some("EPERM"));

    let podman = require!(Podman::new(&env));
    require!(podman.pull(image));
    for (flags, ours) in [
        (&[][..], &default),
        (&["--security-opt", "seccomp=unconfined"][..], &unconfined),
    ] {
        let theirs = podman_probe(&podman, image, flags);
        let diff = differences(&theirs, ours);
        eprintln!(
            "sysprobe {flags:?}: {} calls compared, {} differ",
            parse(&theirs).len(),
            diff.len()
        );
        assert!(
            diff.is_empty(),
            "{flags:?}: differs from podman:\n{}",
            diff.join("\n")
        );
    }
}

#[test]
fn capability_rules_follow_cap_add_like_podman() {
    let image = require!(probe_image());
    let env = TestEnv::rootless();
    let flags = ["--cap-add", "sys_admin,sys_ptrace,sys_time"];
    let ours = skiff_probe(&env, image, &flags, &[]);
    let m = parse(&ours);
    // Allowed now: the kernel answers.
    for name in ["bpf", "kcmp", "perf_event_open", "clock_settime"] {
        assert_ne!(m.get(name).map(String::as_str), Some("EPERM"), "{name}");
    }
    expect(&m, &[("init_module", "EPERM"), ("add_key", "ENOSYS")]);
    let podman = require!(Podman::new(&env));
    require!(podman.pull(image));
    let theirs = podman_probe(&podman, image, &flags);
    let diff = differences(&theirs, &ours);
    assert!(diff.is_empty(), "differs from podman:\n{}", diff.join("\n"));
}

/// Allows everything but `uname` (EDOM) and `personality(1)` (EOPNOTSUPP).
const CUSTOM: &str = r#"{
  "defaultAction": "SCMP_ACT_ALLOW",
  "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"],
  "syscalls": [
    {"names": ["uname"], "action": "SCMP_ACT_ERRNO", "errnoRet": 33},
    {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 95,
     "args": [{"index": 0, "value": 1, "valueTwo": 0, "op": "SCMP_CMP_EQ"}]}
  ]
}"#;

#[test]
fn custom_profile_denies_one_call_with_its_errno() {
    let image = require!(probe_image());
    let env = TestEnv::rootless();
    let file = env.work.join("profile.json");
    std::fs::write(&file, CUSTOM).expect("write profile");
    env.give(&file);
    let opt = format!("seccomp={}", file.display());
    let ours = skiff_probe(&env, image, &["--security-opt", &opt], &[]);
    let m = parse(&ours);
    expect(
        &m,
        &[
            ("uname", "EDOM"),
            ("personality:1", "EOPNOTSUPP"),
            ("personality:0", "allowed"),
            ("add_key", "EINVAL"),
            ("userfaultfd", "EINVAL"),
        ],
    );
    let podman = require!(Podman::new(&env));
    require!(podman.pull(image));
    let theirs = podman_probe(&podman, image, &["--security-opt", &opt]);
    let diff = differences(&theirs, &ours);
    assert!(diff.is_empty(), "differs from podman:\n{}", diff.join("\n"));
}

#[test]
fn exec_runs_under_the_same_filter() {
    let image = require!(probe_image());
    let env = TestEnv::rootless();
    let names = [
        "bpf",
        "add_key",
        "userfaultfd",
        "personality:1",
        "unshare",
        "mount",
    ];
    let id = env.run(&["run", "-d", image, "sleep", "600"]);
    id.success();
    let id = id.stdout_trim();
    let mut args = vec!["exec", id.as_str(), "sysprobe"];
    args.extend(names);
    let out = env.run(&args);
    out.success();
    let m = parse(&out.stdout_str());
    expect(
        &m,
        &[
            ("bpf", "EPERM"),
            ("add_key", "ENOSYS"),
            ("userfaultfd", "EPERM"),
            ("personality:1", "ENOSYS"),
            ("unshare", "EINVAL"),
            ("mount", "EFAULT"),
        ],
    );
    env.run(&["rm", "-f", &id]).success();
    // Unconfined containers' exec'd processes are unconfined too.
    let id = env.run(&[
        "run",
        "-d",
        "--security-opt",
        "seccomp=unconfined",
        image,
        "sleep",
        "600",
    ]);
    id.success();
    let id = id.stdout_trim();
    let out = env.run(&["exec", &id, "sysprobe", "add_key"]);
    out.success();
    assert_eq!(out.stdout_trim(), "add_key EINVAL");
    env.run(&["rm", "-f", &id]).success();
}

#[test]
fn inspect_and_spec_show_the_profile() {
    let image = require!(probe_image());
    let env = TestEnv::rootless();
    let file = env.work.join("profile.json");
    std::fs::write(&file, CUSTOM).expect("write profile");
    env.give(&file);
    let opt = format!("seccomp={}", file.display());
    let cases: [(&[&str], serde_json::Value); 4] = [
        (&[], serde_json::json!([])),
        (
            &["--security-opt", "seccomp=unconfined"],
            serde_json::json!(["seccomp=unconfined"]),
        ),
        (&["--security-opt", &opt], serde_json::json!([opt.clone()])),
        (&["--privileged"], serde_json::json!([])),
    ];
    for (flags, want) in cases {
        let mut args = vec!["create"];
        args.extend_from_slice(flags);
        args.extend([image, "true"]);
        let out = env.run(&args);
        out.success();
        let id = out.stdout_trim();
        let j = inspect_one(&env, &[&id]);
        assert_eq!(j["HostConfig"]["SecurityOpt"], want, "{flags:?}");
        let privileged = flags.contains(&"--privileged");
        assert_eq!(j["HostConfig"]["Privileged"], privileged, "{flags:?}");
        let cfg = j["OCIConfigPath"].as_str().expect("OCIConfigPath");
        let spec: serde_json::Value =
            serde_json::from_slice(&std::fs::read(cfg).expect("read config.json"))
                .expect("config.json");
        let sc = &spec["linux"]["seccomp"];
        match flags.first().copied() {
            None => {
                assert_eq!(sc["defaultAction"], "SCMP_ACT_ERRNO");
                assert_eq!(sc["defaultErrnoRet"], 38);
                // Capability rules are resolved for the container: bpf only as EPERM.
                let bpf: Vec<&serde_json::Value> = sc["syscalls"]
                    .as_array()
                    .expect("syscalls")
                    .iter()
                    .filter(|r| {
                        r["names"]
                            .as_array()
                            .is_some_and(|n| n.iter().any(|x| x == "bpf"))
                    })
                    .collect();
                assert_eq!(bpf.len(), 1, "{bpf:?}");
                assert_eq!(bpf[0]["action"], "SCMP_ACT_ERRNO");
            }
            Some("--security-opt") if flags[1] == opt => {
                assert_eq!(sc["defaultAction"], "SCMP_ACT_ALLOW")
            }
            _ => assert!(sc.is_null(), "{flags:?}: {sc}"),
        }
    }
}

#[test]
fn bad_profiles_fail_with_one_line_and_change_nothing() {
    let image = require!(probe_image());
    let env = TestEnv::rootless();
    env.run(&["pull", "-q", image]).success();
    let before = snapshot(&env);
    let write = |name: &str, text: &str| {
        let p = env.work.join(name);
        std::fs::write(&p, text).expect("write");
        env.give(&p);
        p.display().to_string()
    };
    let cases = [
        (write("broken.json", "{\"defaultAction\": "), "invalid JSON"),
        (
            write("action.json", r#"{"defaultAction":"SCMP_ACT_MAYBE"}"#),
            "SCMP_ACT_MAYBE",
        ),
        (
            write(
                "op.json",
                r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_ERRNO","args":[{"index":0,"value":1,"op":"SCMP_CMP_ABOUT"}]}]}"#,
            ),
            "SCMP_CMP_ABOUT",
        ),
        (
            write(
                "capset.json",
                r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["capset"],"action":"SCMP_ACT_ERRNO"}]}"#,
            ),
            "capset",
        ),
        (
            env.work.join("missing.json").display().to_string(),
            "missing.json",
        ),
    ];
    for (path, needle) in &cases {
        let opt = format!("seccomp={path}");
        for cmd in ["run", "create"] {
            let out = env.run(&[cmd, "--security-opt", &opt, image, "true"]);
            let file = std::path::Path::new(path)
                .file_name()
                .and_then(|f| f.to_str())
                .expect("name");
            assert_error(&out, 125, &[file, needle]);
        }
    }
    let out = env.run(&["run", "--security-opt", "seccomp=", image, "true"]);
    assert_error(&out, 125, &["seccomp"]);
    assert_eq!(snapshot(&env), before);
}

#[test]
fn filter_holds_for_other_users_init_and_no_new_privileges() {
    let image = require!(probe_image());
    let env = TestEnv::rootless();
    let names = ["bpf", "add_key", "personality:1", "unshare"];
    let want = [
        ("bpf", "EPERM"),
        ("add_key", "ENOSYS"),
        ("personality:1", "ENOSYS"),
        ("unshare", "EINVAL"),
    ];
    for flags in [
        &["--user", "1000"][..],
        &["--security-opt", "no-new-privileges"][..],
        &["--init"][..],
    ] {
        let m = parse(&skiff_probe(&env, image, flags, &names));
        for (name, outcome) in want {
            assert_eq!(
                m.get(name).map(String::as_str),
                Some(outcome),
                "{flags:?}: {name}"
            );
        }
    }
}
