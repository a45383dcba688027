//! Issue 7: capabilities, --privileged, no-new-privileges, masked paths, devices,
//! user-namespace modes and resource limits, seen from inside the container and
//! compared with what podman 4.3.1 (runc) shows on the same host.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use crate::images;
use crate::require;
use crate::support::{assert_error, listing, pull, run_sh, snapshot, store};
use crate::util::TestEnv;

/// The five Cap* lines of /proc/self/status, values only, in file order.
fn caps(env: &TestEnv, flags: &[&str]) -> Vec<String> {
    let fx = images::fixtures();
    run_sh(
        env,
        flags,
        &fx.busybox.reference,
        "grep ^Cap /proc/self/status",
    )
    .lines()
    .map(|l| l.split_once(':').expect("Cap line").1.trim().to_string())
    .collect()
}

/// Every capability the kernel knows (a new user namespace gets them all):
/// 000001ffffffffff on this host (cap_last_cap 40).
fn full_set() -> String {
    let last: u32 = fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .expect("cap_last_cap")
        .trim()
        .parse()
        .expect("number");
    format!("{:016x}", (1u64 << (last + 1)) - 1)
}

/// [CapInh, CapPrm, CapEff, CapBnd, CapAmb].
fn set(inh: &str, prm_eff: &str, bnd: &str, amb: &str) -> Vec<String> {
    [inh, prm_eff, prm_eff, bnd, amb]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

const NONE: &str = "0000000000000000";
const DEFAULT: &str = "00000000800405fb";

// Expected values were taken from podman 4.3.1 on this host, rootless as skiff-test:
//   podman --runtime runc --cgroup-manager cgroupfs run --rm --network none \
//       FLAGS localhost/bb grep Cap /proc/self/status
// (localhost/bb: `podman import` of a busybox rootfs). Rootless --cap-add ALL and
// --privileged show 000001ffffffffff there (the full set of this kernel).
#[test]
fn capabilities_match_podman_line_by_line() {
    let _fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootless());
    let full = full_set();
    let cases: Vec<(Vec<&str>, Vec<String>)> = vec![
        (vec![], set(NONE, DEFAULT, DEFAULT, NONE)),
        (vec!["-u", "1000"], set(NONE, NONE, DEFAULT, NONE)),
        (
            vec!["--cap-add", "NET_ADMIN"],
            set(NONE, "00000000800415fb", "00000000800415fb", NONE),
        ),
        (
            vec!["--cap-drop", "CHOWN"],
            set(NONE, "00000000800405fa", "00000000800405fa", NONE),
        ),
        (vec!["--cap-drop", "ALL"], set(NONE, NONE, NONE, NONE)),
        (vec!["--cap-add", "ALL"], set(NONE, &full, &full, NONE)),
        (vec!["--privileged"], set(NONE, &full, &full, NONE)),
        // podman 4.3 gives a non-root user the added capabilities in every set.
        (
            vec!["-u", "1000", "--cap-add", "cap_net_admin"],
            set(
                "0000000000001000",
                "0000000000001000",
                "00000000800415fb",
                "0000000000001000",
            ),
        ),
        (
            vec!["-u", "1000", "--cap-add", "ALL"],
            set(&full, &full, &full, &full),
        ),
        (
            vec!["-u", "1000", "--privileged"],
            set(NONE, NONE, &full, NONE),
        ),
        (
            vec!["-u", "1000", "--cap-drop", "ALL", "--cap-add", "NET_ADMIN"],
            set(
                "0000000000001000",
                "0000000000001000",
                "0000000000001000",
                "0000000000001000",
            ),
        ),
    ];
    for (flags, want) in cases {
        assert_eq!(caps(&env, &flags), want, "flags {flags:?}");
    }
}

#[test]
fn capabilities_rootful_are_bounded_by_the_hosts() {
    let fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootful());
    pull(&env, &fx.busybox.reference);
    // Without a user namespace, "all" is what root itself holds (podman rootful shows
    // 000001fffeffffff here: this host's root lacks CAP_SYS_RESOURCE).
    let host_bnd = fs::read_to_string("/proc/self/status")
        .expect("status")
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:").map(|v| v.trim().to_string()))
        .expect("CapBnd");
    assert_eq!(caps(&env, &[]), set(NONE, DEFAULT, DEFAULT, NONE));
    assert_eq!(
        caps(&env, &["--cap-add", "ALL"]),
        set(NONE, &host_bnd, &host_bnd, NONE)
    );
    assert_eq!(
        caps(&env, &["-u", "1000", "--cap-add", "NET_ADMIN"]),
        set(
            "0000000000001000",
            "0000000000001000",
            "00000000800415fb",
            "0000000000001000"
        )
    );
}

#[test]
fn privileged_unmasks_passes_devices_and_writable_sys() {
    let fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootless());
    let bb = &fx.busybox.reference;
    let script = "cat /proc/self/mountinfo; echo ===; ls /dev; ls /dev/net 2>/dev/null; true";
    let normal = run_sh(&env, &[], bb, script);
    assert!(normal.contains(" /proc/keys "), "{normal}");
    assert!(!normal.contains("fuse"), "{normal}");
    let out = run_sh(&env, &["--privileged"], bb, script);
    let (mounts, devs) = out.split_once("===").expect("marker");
    for masked in [" /proc/keys ", " /proc/timer_list ", " /proc/acpi "] {
        assert!(!mounts.contains(masked), "{masked} still masked\n{mounts}");
    }
    let sys = mounts
        .lines()
        .find(|l| l.split(' ').nth(4) == Some("/sys"))
        .expect("/sys mount");
    assert!(
        sys.split(' ').nth(5).expect("opts").starts_with("rw"),
        "{sys}"
    );
    assert!(!mounts
        .lines()
        .any(|l| l.split(' ').nth(4) == Some("/proc/sys")));
    // scripts/test makes these 0666: the user can open them, so they are passed.
    for d in ["/dev/fuse", "/dev/net/tun"] {
        if fs::metadata(d).is_ok_and(|m| m.mode() & 0o006 == 0o006) {
            let name = Path::new(d)
                .file_name()
                .expect("name")
                .to_string_lossy()
                .to_string();
            assert!(
                devs.lines().any(|l| l.trim() == name),
                "{d} missing\n{devs}"
            );
        }
    }
    // Nodes only root can open stay out (kvm, disks are 0600 root here).
    for line in devs.lines().map(str::trim) {
        let host = Path::new("/dev").join(line);
        if let Ok(m) = fs::metadata(&host) {
            if (m.file_type().is_char_device() || m.file_type().is_block_device())
                && m.mode() & 0o066 == 0
            {
                panic!(
                    "{} passed through but the user cannot open it",
                    host.display()
                );
            }
        }
    }
}

#[test]
fn no_new_privileges_and_masks() {
    let fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootless());
    let bb = &fx.busybox.reference;
    let nnp = "grep NoNewPrivs /proc/self/status";
    assert!(run_sh(&env, &[], bb, nnp).contains("NoNewPrivs:\t0"));
    assert!(
        run_sh(&env, &["--security-opt", "no-new-privileges"], bb, nnp).contains("NoNewPrivs:\t1")
    );
    // mask= hides a file behind /dev/null; unmask= drops one default mask.
    let out = run_sh(
        &env,
        &[
            "--security-opt",
            "mask=/etc/hostname",
            "--security-opt",
            "unmask=/proc/keys",
        ],
        bb,
        "echo \"[$(cat /etc/hostname)]\"; cat /proc/self/mountinfo",
    );
    assert!(out.starts_with("[]\n"), "{out}");
    assert!(!out.contains(" /proc/keys "), "{out}");
    assert!(out.contains(" /proc/timer_list "), "{out}");
    let all = run_sh(
        &env,
        &["--security-opt", "unmask=ALL"],
        bb,
        "cat /proc/self/mountinfo",
    );
    for p in [" /proc/keys ", " /proc/acpi ", " /proc/sys "] {
        assert!(!all.contains(p), "{p} with unmask=ALL\n{all}");
    }
}

#[test]
fn devices_the_user_can_open_are_bind_mounted() {
    let fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootless());
    let bb = &fx.busybox.reference;
    crate::skip_if!(
        !fs::metadata("/dev/fuse").is_ok_and(|m| m.mode() & 0o666 == 0o666),
        "/dev/fuse is not 0666 (scripts/test sets it)"
    );
    let out = run_sh(
        &env,
        &["--device", "/dev/fuse:/dev/myfuse"],
        bb,
        "[ -c /dev/myfuse ] && exec 3<>/dev/myfuse && echo opened",
    );
    assert_eq!(out.trim(), "opened");
    let ro = run_sh(
        &env,
        &["--device", "/dev/fuse:r"],
        bb,
        "grep ' /dev/fuse ' /proc/self/mountinfo",
    );
    assert!(
        ro.split(' ').nth(5).is_some_and(|o| o.starts_with("ro")),
        "{ro}"
    );

    // A node the user cannot open: a clear error, nothing created.
    let closed = ["/dev/kvm", "/dev/vda", "/dev/sda", "/dev/loop0", "/dev/mem"]
        .into_iter()
        .find(|d| fs::metadata(d).is_ok_and(|m| m.mode() & 0o006 == 0 && m.uid() == 0));
    let before = snapshot(&env);
    if let Some(d) = closed {
        let out = env.run(&["run", "--rm", "--device", d, bb, "true"]);
        assert_error(&out, 125, &["--device", d, "permission denied"]);
    }
    let out = env.run(&["run", "--rm", "--device", "/etc/passwd", bb, "true"]);
    assert_error(&out, 125, &["--device", "not a device"]);
    let out = env.run(&["run", "--rm", "--device", "/dev/nonexistent0", bb, "true"]);
    assert_error(&out, 125, &["--device", "/dev/nonexistent0"]);
    assert_eq!(snapshot(&env), before);
}

fn host_ids(env: &TestEnv) -> (u32, u32) {
    let u = env.user.as_ref().expect("rootless user");
    (u.uid, u.gid)
}

#[test]
fn keep_id_shows_the_users_own_ids_and_shares_one_layer_copy() {
    let fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootless());
    let bb = &fx.busybox.reference;
    pull(&env, bb);
    let (uid, gid) = host_ids(&env);
    let vol = env.work.join("kept");
    fs::create_dir(&vol).expect("mkdir");
    fs::write(vol.join("mine"), "x").expect("write");
    env.give(&vol);
    let layers = store(&env).join("layers");
    let before = listing(&layers).len();
    let bind = format!("{}:/kept", vol.display());
    let script = "id -u; id -g; stat -c %u:%g /kept/mine; cat /proc/self/uid_map";
    let out = run_sh(&env, &["--userns=keep-id", "-v", &bind], bb, script);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], uid.to_string(), "{out}");
    assert_eq!(lines[1], gid.to_string(), "{out}");
    assert_eq!(lines[2], format!("{uid}:{gid}"), "{out}");
    let own_line: Vec<String> = vec![uid.to_string(), uid.to_string(), "1".into()];
    assert!(
        lines[3..]
            .iter()
            .any(|l| l.split_whitespace().map(String::from).collect::<Vec<_>>() == own_line),
        "{out}"
    );
    // One copy of the image's layers for the keep-id mapping, shared by the next one.
    let after_first = listing(&layers).len();
    assert_eq!(after_first, before + 1, "busybox has one layer");
    let out = run_sh(
        &env,
        &["--userns", "keep-id:uid=200,gid=210"],
        bb,
        "id -u; id -g",
    );
    assert_eq!(out, "200\n210\n");
    let after_other = listing(&layers).len();
    assert_eq!(
        after_other,
        after_first + 1,
        "another mapping, another copy"
    );
    run_sh(&env, &["--userns=keep-id"], bb, "true");
    assert_eq!(listing(&layers).len(), after_other, "keep-id copy reused");
    // rmi removes every copy.
    env.run(&["rmi", bb]).success();
    assert!(listing(&layers).is_empty(), "{:?}", listing(&layers));
}

#[test]
fn uidmap_in_podman_terms() {
    let fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootless());
    let (uid, _) = host_ids(&env);
    let sub = fs::read_to_string("/etc/subuid")
        .expect("subuid")
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f[0] == env.user.as_ref().expect("user").name).then(|| f[1].to_string())
        })
        .expect("subuid entry");
    // HOST-ID counts in podman's rootless namespace: 0 is the user, 1 the first subuid.
    let out = run_sh(
        &env,
        &["--uidmap", "0:0:1", "--uidmap", "1:1:1000"],
        &fx.busybox.reference,
        "cat /proc/self/uid_map /proc/self/gid_map",
    );
    let rows: Vec<Vec<String>> = out
        .lines()
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect();
    let want = |a: &str, b: &str, c: &str| vec![a.to_string(), b.to_string(), c.to_string()];
    assert_eq!(rows[0], want("0", &uid.to_string(), "1"), "{out}");
    assert_eq!(rows[1], want("1", &sub, "1000"), "{out}");
    assert_eq!(rows.len(), 4, "gid map follows the uid map: {out}");
}

#[test]
fn resource_limits_on_this_host() {
    let fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootless());
    let bb = &fx.busybox.reference;
    let v1 = Path::new("/sys/fs/cgroup/memory").is_dir();
    let out = env.run(&[
        "run",
        "--rm",
        "--memory",
        "64m",
        "--cpus",
        "1",
        "--pids-limit",
        "50",
        bb,
        "sh",
        "-c",
        "ulimit -u",
    ]);
    out.success();
    if v1 {
        let err = out.stderr_str();
        for flag in ["--memory", "--cpus", "--pids-limit"] {
            assert!(
                err.lines().any(|l| l.contains(flag)
                    && l.contains("Resource limits are not supported and ignored on cgroups V1 rootless systems")),
                "no warning for {flag}\n{}",
                out.describe()
            );
        }
        assert!(err.contains("RLIMIT_NPROC"), "{}", out.describe());
        // The fallback: RLIMIT_NPROC.
        assert_eq!(out.stdout_str().trim(), "50");
    }
    let out = run_sh(
        &env,
        &["--ulimit", "nofile=100:200", "--oom-score-adj", "100"],
        bb,
        "ulimit -n; ulimit -Hn; cat /proc/self/oom_score_adj",
    );
    assert_eq!(out, "100\n200\n100\n");
}

#[test]
fn resource_limits_rootful_cgroup_v1() {
    let fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootful());
    crate::skip_if!(
        !Path::new("/sys/fs/cgroup/memory").is_dir(),
        "not a cgroup v1 host"
    );
    let bb = &fx.busybox.reference;
    pull(&env, bb);
    let out = env.run(&[
        "run",
        "-d",
        "--memory",
        "64m",
        "--pids-limit",
        "20",
        "--cpus",
        "0.5",
        bb,
        "sleep",
        "60",
    ]);
    out.success();
    let id = out.stdout_trim();
    let dir = |c: &str| Path::new("/sys/fs/cgroup").join(c).join("skiff").join(&id);
    let read = |c: &str, f: &str| {
        fs::read_to_string(dir(c).join(f))
            .unwrap_or_else(|e| panic!("{c}/{f}: {e}"))
            .trim()
            .to_string()
    };
    assert_eq!(read("memory", "memory.limit_in_bytes"), "67108864");
    assert_eq!(read("pids", "pids.max"), "20");
    assert_eq!(read("cpu", "cpu.cfs_quota_us"), "50000");
    // Only the controllers a flag asked for.
    assert!(!dir("blkio").exists());
    // exec'd processes count against the container's pids limit too.
    let out = env.run(&[
        "exec",
        &id,
        "sh",
        "-c",
        "for i in $(seq 30); do sleep 5 >/dev/null 2>&1 & done; wait",
    ]);
    assert!(
        out.stderr_str().contains("can't fork"),
        "{}",
        out.describe()
    );
    env.run(&["rm", "-f", &id]).success();
    for c in ["memory", "pids", "cpu"] {
        assert!(!dir(c).exists(), "{c} cgroup left behind");
    }
}

#[test]
fn bad_security_input_fails_cleanly_and_changes_nothing() {
    let fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootless());
    let bb = &fx.busybox.reference;
    pull(&env, bb);
    let before = snapshot(&env);
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (vec!["--cap-add", "bogus"], vec!["--cap-add", "CAP_BOGUS"]),
        (
            vec!["--cap-add", "CHOWN", "--cap-drop", "chown"],
            vec!["CAP_CHOWN", "dropped and added"],
        ),
        (vec!["--userns", "bogus"], vec!["--userns", "bogus"]),
        (vec!["--userns", "keep-id:uid=x"], vec!["--userns", "uid"]),
        (vec!["--userns=host"], vec!["--userns", "host"]),
        (
            vec!["--uidmap", "0:1:100", "--uidmap", "50:200:10"],
            vec!["--uidmap", "50:200:10", "overlap"],
        ),
        (vec!["--uidmap", "0:1"], vec!["--uidmap", "0:1"]),
        (
            vec!["--uidmap", "0:0:1", "--uidmap", "1:999999:10"],
            vec!["--uidmap", "outside"],
        ),
        (vec!["--ulimit", "bogus=1"], vec!["--ulimit", "bogus"]),
        (
            vec!["--ulimit", "nofile=200:100"],
            vec!["--ulimit", "soft limit"],
        ),
        (
            vec!["--ulimit", "nofile=10:99999999"],
            vec!["--ulimit", "CAP_SYS_RESOURCE"],
        ),
        (
            vec!["--security-opt", "bogus"],
            vec!["--security-opt", "bogus"],
        ),
        (
            vec!["--security-opt", "mask=relative"],
            vec!["--security-opt", "mask"],
        ),
        (vec!["--memory", "lots"], vec!["--memory", "lots"]),
        (
            vec!["--memory-swap", "1g"],
            vec!["--memory-swap", "--memory"],
        ),
        (
            vec!["--oom-score-adj", "-100"],
            vec!["--oom-score-adj", "CAP_SYS_RESOURCE"],
        ),
        (
            vec!["--oom-score-adj", "5000"],
            vec!["--oom-score-adj", "range"],
        ),
    ];
    for (flags, needles) in cases {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(&flags);
        args.extend_from_slice(&[bb, "true"]);
        let out = env.run(&args);
        assert_error(&out, 125, &needles);
        assert_eq!(snapshot(&env), before, "flags {flags:?} changed the store");
    }
}
