//! Issue 2, run flags and the container's environment as seen from inside: name, env,
//! env-file, workdir, user and groups, volumes, hostname, entrypoint, stdin,
//! read-only root + tmpfs, host/none networking, capabilities, masked and read-only
//! /proc paths, namespaces, generated /etc files and /dev.

use std::fs;

use crate::images;
use crate::require;
use crate::support::{assert_error, inspect_one, interfaces, pull, run_sh, snapshot};
use crate::util::TestEnv;

#[test]
fn run_flags_name_env_workdir_user_volume_hostname_are_visible_inside() {
    let fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootless());
    let vol = env.work.join("vol");
    fs::create_dir(&vol).expect("mkdir vol");
    fs::write(vol.join("f"), "from the host\n").expect("write");
    env.give(&vol);
    let bind = format!("{}:/data:ro", vol.display());
    let script = "id; pwd; hostname; echo \"A=$A\"; cat /data/f; \
                  if touch /data/new 2>/dev/null; then echo rw; else echo ro; fi";
    let out = env.run(&[
        "run",
        "--name",
        "web",
        "-e",
        "A=1",
        "-w",
        "/tmp",
        "-u",
        "1000:1000",
        "-v",
        &bind,
        "--hostname",
        "box",
        &fx.busybox.reference,
        "sh",
        "-c",
        script,
    ]);
    out.success();
    let text = out.stdout_str();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("uid=1000(tester) gid=1000(tester)"),
        "{}",
        out.describe()
    );
    assert_eq!(lines[1..], ["/tmp", "box", "A=1", "from the host", "ro"]);
    assert!(!vol.join("new").exists());

    let c = inspect_one(&env, &["--type", "container", "web"]);
    assert_eq!(c["Name"], "web");
    assert_eq!(c["State"]["Status"], "exited");
    assert_eq!(c["State"]["ExitCode"], 0);
    assert!(c["Config"]["Env"].to_string().contains("\"A=1\""), "{c}");
    assert_eq!(c["Config"]["Cmd"][0], "sh", "{c}");
    let mounts = c["Mounts"].as_array().expect("Mounts");
    assert!(
        mounts
            .iter()
            .any(|m| m["Destination"] == "/data" && m["Source"] == vol.to_str().expect("utf8")),
        "{c}"
    );
    let ps = env.run(&["ps", "-a"]);
    ps.success().stdout_contains("web");
    env.run(&["rm", "web"]).success();
    env.run(&["rmi", &fx.busybox.reference]).success();
    assert_eq!(env.run(&["images", "-q"]).stdout_trim(), "");
}

#[test]
fn user_by_name_gets_home_and_supplementary_groups() {
    let fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootless());
    let out = run_sh(
        &env,
        &["-u", "tester"],
        &fx.busybox.reference,
        "id; echo $HOME; pwd",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("uid=1000(tester) gid=1000(tester)"),
        "{out}"
    );
    assert!(
        lines[0].contains("50(staff)"),
        "supplementary group staff: {out}"
    );
    assert_eq!(lines[1], "/home/tester", "{out}");
    let out = run_sh(
        &env,
        &["-u", "nobody"],
        &fx.busybox.reference,
        "id -u; id -g",
    );
    assert_eq!(out, "65534\n65534\n");
    let out = env.run(&[
        "run",
        "--rm",
        "-u",
        "nosuchuser",
        &fx.busybox.reference,
        "true",
    ]);
    out.failure().stderr_contains("nosuchuser");
}

/// Supplementary groups as podman 4.3.1 sets them: the primary group only when a user
/// is named, memberships only from the image's /etc/group (none without the file) and
/// only when no group is named.
#[test]
fn supplementary_groups_come_from_the_images_etc_group_only() {
    let fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootless());
    // busybox without /etc/group (a whiteout over the fixture's).
    let mut t = images::LayerTar::new();
    t.whiteout("etc/group");
    let layer = images::gzip(t.finish());
    let img = images::push_image(
        "skiff-test/no-etc-group",
        "latest",
        &[&fx.busybox_layer, &layer],
        images::host_arch(),
    )
    .expect("push the image without /etc/group")
    .0;
    let groups = |flags: &[&str], image: &str| -> String {
        let out = run_sh(
            &env,
            flags,
            image,
            "[ -e /etc/group ] && echo has-group-file; grep Groups /proc/self/status",
        );
        out.trim().to_string()
    };
    let none = &img.reference;
    let bb = &fx.busybox.reference;
    let cases: &[(&[&str], &str, &str)] = &[
        (&[], none, "Groups:"),
        (&["-u", "0"], none, "Groups:\t0"),
        (&["-u", "5:6"], none, "Groups:\t6"),
        (&["-u", "tester"], none, "Groups:\t1000"),
        (&[], bb, "has-group-file\nGroups:"),
        (&["-u", "root"], bb, "has-group-file\nGroups:\t0"),
        (&["-u", "tester"], bb, "has-group-file\nGroups:\t50 1000"),
        (
            &["-u", "tester:tester"],
            bb,
            "has-group-file\nGroups:\t1000",
        ),
        // --group-add: GIDs as they are, names from the image's /etc/group.
        (&["--group-add", "77"], none, "Groups:\t77"),
        (&["--group-add", "keep-groups"], none, "Groups:"),
        (
            &["-u", "tester", "--group-add", "staff", "--group-add", "9"],
            bb,
            "has-group-file\nGroups:\t9 50 1000",
        ),
    ];
    for (flags, image, want) in cases {
        assert_eq!(groups(flags, image), *want, "{flags:?} on {image}");
    }
    let out = env.run(&["run", "--rm", none, "id"]);
    assert_eq!(out.success().stdout_trim(), "uid=0(root) gid=0");
    // Bad --group-add: keep-groups with others is refused at create (nothing made); a
    // name the image does not have fails the start with podman's 126.
    let before = snapshot(&env);
    assert_error(
        &env.run(&[
            "create",
            "--group-add",
            "keep-groups",
            "--group-add",
            "5",
            bb,
        ]),
        125,
        &["keep-groups", "not allowed"],
    );
    assert_eq!(snapshot(&env), before);
    assert_error(
        &env.run(&["run", "--rm", "--group-add", "staff", none, "true"]),
        126,
        &["unable to find group staff"],
    );
    // inspect shows them; exec without -u gets them (and no memberships), exec -u
    // only the user's memberships.
    env.run(&[
        "run",
        "-d",
        "--name",
        "ga",
        "--group-add",
        "staff",
        "--group-add",
        "77",
        bb,
        "sleep",
        "1000",
    ])
    .success();
    let c = inspect_one(&env, &["ga"]);
    assert_eq!(
        c["HostConfig"]["GroupAdd"],
        serde_json::json!(["staff", "77"])
    );
    let status = |args: &[&str]| {
        let mut full = vec!["exec"];
        full.extend_from_slice(args);
        full.extend_from_slice(&["ga", "grep", "Groups", "/proc/self/status"]);
        env.run(&full).success().stdout_trim()
    };
    assert_eq!(status(&[]), "Groups:\t50 77");
    assert_eq!(status(&["-u", "tester"]), "Groups:\t50");
    assert_eq!(status(&["-u", "0"]), "Groups:");
    env.run(&["rm", "-f", "ga"]).success();
}

#[test]
fn entrypoint_env_file_and_stdin() {
    let fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootless());
    let bb = &fx.busybox.reference;
    let out = env.run(&["run", "--rm", "--entrypoint", "/bin/echo", bb, "a", "b"]);
    assert_eq!(out.success().stdout_str(), "a b\n");
    let ef = env.work.join("vars.env");
    fs::write(&ef, "# a comment\nX=from file\n\nY=2\n").expect("write env file");
    env.give(&ef);
    let ef = ef.to_str().expect("utf8");
    let out = run_sh(
        &env,
        &["--env-file", ef, "-e", "Y=3"],
        bb,
        "echo \"$X|$Y|$container\"",
    );
    assert_eq!(out, "from file|3|skiff\n");
    let out = env
        .cmd(&["run", "--rm", "-i", bb, "sh", "-c", "tr a-z A-Z"])
        .stdin(b"piped in\n".to_vec())
        .output();
    assert_eq!(out.success().stdout_str(), "PIPED IN\n");
}

#[test]
fn read_only_rootfs_with_tmpfs() {
    let fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootless());
    let script = "for p in /x /scratch/x /small/x; do \
                  if touch $p 2>/dev/null; then echo \"$p ok\"; else echo \"$p fail\"; fi; done; \
                  stat -c %a /scratch /small";
    let out = run_sh(
        &env,
        &[
            "--read-only",
            "--tmpfs",
            "/scratch",
            "--tmpfs",
            "/small:size=1m,mode=700",
        ],
        &fx.busybox.reference,
        script,
    );
    assert_eq!(out, "/x fail\n/scratch/x ok\n/small/x ok\n1777\n700\n");
    // Without --read-only the root filesystem is writable.
    let out = run_sh(&env, &[], &fx.busybox.reference, "touch /x && echo ok");
    assert_eq!(out, "ok\n");
}

/// podman's --read-only-tmpfs defaults to true: /tmp, /var/tmp and /run get a tmpfs.
#[test]
fn read_only_keeps_tmp_writable_like_podman() {
    let fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootless());
    let script = "for p in /tmp/x /var/tmp/x /run/x /x; do \
                  if touch $p 2>/dev/null; then echo \"$p ok\"; else echo \"$p fail\"; fi; done";
    let out = run_sh(&env, &["--read-only"], &fx.busybox.reference, script);
    assert_eq!(out, "/tmp/x ok\n/var/tmp/x ok\n/run/x ok\n/x fail\n");
}

#[test]
fn network_host_sees_host_interfaces_and_none_only_lo() {
    let fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootless());
    let host = interfaces(&fs::read_to_string("/proc/net/dev").expect("/proc/net/dev"));
    let bb = &fx.busybox.reference;
    let none = interfaces(&run_sh(
        &env,
        &["--network", "none"],
        bb,
        "cat /proc/net/dev",
    ));
    assert_eq!(none, ["lo"]);
    let default = interfaces(&run_sh(&env, &[], bb, "cat /proc/net/dev"));
    assert_eq!(default, ["lo", "tap0"], "the default is slirp4netns");
    let inside = interfaces(&run_sh(
        &env,
        &["--network", "host"],
        bb,
        "cat /proc/net/dev",
    ));
    assert_eq!(inside, host);
    // lo is up in the private network namespace.
    let out = run_sh(&env, &[], bb, "ip -o link show lo");
    assert!(out.contains(",UP"), "{out}");
}

/// Cap* lines of /proc/self/status as (name, value) pairs.
fn caps(env: &TestEnv, user: &str) -> Vec<(String, String)> {
    let fx = images::fixtures();
    let flags: Vec<&str> = if user.is_empty() {
        vec![]
    } else {
        vec!["-u", user]
    };
    run_sh(
        env,
        &flags,
        &fx.busybox.reference,
        "grep ^Cap /proc/self/status",
    )
    .lines()
    .map(|l| {
        let (k, v) = l.split_once(':').expect("Cap line");
        (k.to_string(), v.trim().to_string())
    })
    .collect()
}

fn expect_caps(root: bool) -> Vec<(String, String)> {
    let set = if root {
        "00000000800405fb"
    } else {
        "0000000000000000"
    };
    [
        ("CapInh", "0000000000000000"),
        ("CapPrm", set),
        ("CapEff", set),
        ("CapBnd", "00000000800405fb"),
        ("CapAmb", "0000000000000000"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

#[test]
fn capabilities_are_podmans_defaults_for_root_and_empty_for_users() {
    let _fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootless());
    assert_eq!(caps(&env, ""), expect_caps(true));
    assert_eq!(caps(&env, "1000:1000"), expect_caps(false));
    assert_eq!(caps(&env, "nobody"), expect_caps(false));
    if let Ok(rootful) = TestEnv::try_rootful() {
        pull(&rootful, &images::fixtures().busybox.reference);
        assert_eq!(caps(&rootful, ""), expect_caps(true));
        assert_eq!(caps(&rootful, "tester"), expect_caps(false));
    }
}

#[test]
fn masked_and_read_only_proc_paths_and_namespaces() {
    let fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootless());
    let script = "cat /proc/self/mountinfo; echo ===; \
                  for p in /proc/kcore /proc/keys /proc/timer_list; do \
                  if [ -e $p ]; then echo \"$p $(cat $p 2>/dev/null | wc -c)\"; \
                  else echo \"$p 0\"; fi; done; \
                  ls -A /proc/acpi /sys/firmware 2>/dev/null | grep -v : | grep . ; \
                  echo ===; \
                  (echo x > /proc/sys/kernel/hostname) 2>&1; echo $$; hostname; \
                  cat /etc/hostname; grep -c . /run/.containerenv; ls /dev";
    let out = run_sh(&env, &["--name", "masky"], &fx.busybox.reference, script);
    let mut parts = out.split("===\n");
    let (mountinfo, masked, rest) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    // mount point (field 5) -> mount options (field 6)
    let mounts: Vec<(&str, &str)> = mountinfo
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((*f.get(4)?, *f.get(5)?))
        })
        .collect();
    for p in [
        "/proc/kcore",
        "/proc/keys",
        "/proc/timer_list",
        "/proc/acpi",
        "/sys/firmware",
    ] {
        if std::path::Path::new(p).exists() {
            assert!(
                mounts.iter().any(|(m, _)| *m == p),
                "{p} must be masked (a mount over it)\n{mountinfo}"
            );
        }
    }
    for p in [
        "/sys",
        "/proc/sys",
        "/proc/bus",
        "/proc/fs",
        "/proc/irq",
        "/proc/sysrq-trigger",
    ] {
        if std::path::Path::new(p).exists() {
            let opts = mounts.iter().rev().find(|(m, _)| *m == p).map(|(_, o)| *o);
            assert!(
                opts.is_some_and(|o| o.split(',').any(|x| x == "ro")),
                "{p} must be a read-only mount\n{mountinfo}"
            );
        }
    }
    for line in masked.lines() {
        assert!(
            line.ends_with(" 0"),
            "masked content readable: {line:?}\n{out}"
        );
    }
    let rest: Vec<&str> = rest.lines().collect();
    assert!(rest[0].contains("Read-only file system"), "{out}");
    assert_eq!(rest[1], "1", "the command is pid 1: {out}");
    // podman's default hostname is the short container ID, also in /etc/hostname.
    assert!(
        rest[2].len() == 12 && rest[2].bytes().all(|b| b.is_ascii_hexdigit()),
        "{out}"
    );
    assert_eq!(rest[3], rest[2], "{out}");
    assert!(
        rest[4].parse::<u32>().is_ok_and(|n| n > 0),
        "containerenv: {out}"
    );
    let devs: Vec<&str> = rest[5..].to_vec();
    for d in [
        "null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "mqueue",
    ] {
        assert!(devs.contains(&d), "/dev/{d} missing: {devs:?}");
    }
}
