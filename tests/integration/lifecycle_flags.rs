//! Issue 3, the create-time flags and small container commands: --add-host, --dns,
//! --dns-search, --label, --annotation, --replace, --cidfile, --sysctl, --mount, the
//! `:U` volume option, --platform, rename, container prune, the `container` group and
//! pause/unpause. Each feature is checked by its effect inside the container, by
//! `inspect`, and by its bad input (one `Error:` line, exit 125, store unchanged).

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::images;
use crate::require;
use crate::support::{assert_error, inspect_one, pull, run_sh, snapshot, subid_start};
use crate::util::TestEnv;

/// Runs `args`, expects a one-line error with exit 125 mentioning `needles`, and an
/// unchanged store.
#[track_caller]
fn fails_cleanly(env: &TestEnv, args: &[&str], needles: &[&str]) {
    let before = snapshot(env);
    let out = env.run(args);
    assert_error(&out, 125, needles);
    assert_eq!(snapshot(env), before, "the store changed: {}", out.cmdline);
}

/// A rootless env with busybox pulled and one container `existing`.
fn populated() -> Result<(TestEnv, String), String> {
    let fx = images::try_fixtures()?;
    let env = TestEnv::try_rootless()?;
    pull(&env, &fx.busybox.reference);
    env.run(&[
        "create",
        "--name",
        "existing",
        &fx.busybox.reference,
        "true",
    ])
    .success();
    Ok((env, fx.busybox.reference.clone()))
}

fn unified_cgroup() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

#[test]
fn add_host_dns_and_dns_search_reach_etc_files() {
    let (env, bb) = require!(populated());
    let out = run_sh(
        &env,
        &[
            "--add-host",
            "db:10.1.2.3",
            "--add-host",
            "six:fd00::1",
            "--dns",
            "9.9.9.9",
            "--dns",
            "1.1.1.1",
            "--dns-search",
            "example.com",
        ],
        &bb,
        "cat /etc/hosts; echo ---; cat /etc/resolv.conf",
    );
    let (hosts, resolv) = out.split_once("---\n").expect("separator");
    let lines: Vec<&str> = hosts.lines().collect();
    // podman's order and format: --add-host entries first, "IP<TAB>NAME".
    assert_eq!(lines[..2], ["10.1.2.3\tdb", "fd00::1\tsix"], "{hosts}");
    assert!(hosts.contains("localhost"), "{hosts}");
    let servers: Vec<&str> = resolv
        .lines()
        .filter(|l| l.starts_with("nameserver"))
        .collect();
    assert_eq!(
        servers,
        ["nameserver 9.9.9.9", "nameserver 1.1.1.1"],
        "{resolv}"
    );
    assert!(
        resolv.lines().any(|l| l == "search example.com"),
        "{resolv}"
    );

    // "." clears the search list.
    let resolv = run_sh(&env, &["--dns-search", "."], &bb, "cat /etc/resolv.conf");
    assert!(!resolv.contains("search"), "{resolv}");

    fails_cleanly(
        &env,
        &["create", "--add-host", "nocolon", &bb],
        &["--add-host"],
    );
    fails_cleanly(
        &env,
        &["create", "--add-host", "db:999.1.1.1", &bb],
        &["--add-host", "999.1.1.1"],
    );
    fails_cleanly(
        &env,
        &["create", "--dns", "not-an-ip", &bb],
        &["--dns", "not-an-ip"],
    );
}

#[test]
fn labels_and_annotations_show_in_inspect_and_spec() {
    let (env, bb) = require!(populated());
    env.run(&[
        "create",
        "--name",
        "lab",
        "--label",
        "app=web",
        "--label",
        "tier",
        "-l",
        "x=a=b",
        "--annotation",
        "org.example/key=v1",
        &bb,
        "true",
    ])
    .success();
    let c = inspect_one(&env, &["lab"]);
    assert_eq!(c["Config"]["Labels"]["app"], "web", "{c}");
    assert_eq!(c["Config"]["Labels"]["tier"], "", "{c}");
    assert_eq!(c["Config"]["Labels"]["x"], "a=b", "{c}");
    assert_eq!(c["Config"]["Annotations"]["org.example/key"], "v1", "{c}");
    let id = c["Id"].as_str().expect("Id");
    let spec = fs::read_to_string(env.root_dir.join("containers").join(id).join("config.json"))
        .expect("config.json");
    let spec: serde_json::Value = serde_json::from_str(&spec).expect("spec JSON");
    assert_eq!(spec["annotations"]["org.example/key"], "v1");

    fails_cleanly(&env, &["create", "--label", "=v", &bb], &["--label"]);
    fails_cleanly(
        &env,
        &["create", "--annotation", "novalue", &bb],
        &["--annotation"],
    );
}

#[test]
fn replace_removes_the_holder_of_the_name() {
    let (env, bb) = require!(populated());
    let old = env.run(&["run", "-d", "--name", "web", &bb, "sleep", "100"]);
    let old_id = old.success().stdout_trim();
    // Without --replace the name is taken.
    fails_cleanly(
        &env,
        &["create", "--name", "web", &bb],
        &["web", "already in use"],
    );
    // A bad flag with --replace leaves the old container alone.
    fails_cleanly(
        &env,
        &["create", "--replace", "--name", "web", "--label", "=x", &bb],
        &["--label"],
    );
    let new = env.run(&[
        "run",
        "-d",
        "--replace",
        "--name",
        "web",
        &bb,
        "sleep",
        "100",
    ]);
    let new_id = new.success().stdout_trim();
    assert_ne!(old_id, new_id);
    let ps = env.run(&["ps", "-a", "--no-trunc"]).success().stdout_str();
    assert!(ps.contains(&new_id) && !ps.contains(&old_id), "{ps}");
    assert!(!env.root_dir.join("containers").join(&old_id).exists());
    fails_cleanly(
        &env,
        &["create", "--replace", &bb],
        &["--replace", "--name"],
    );
}

#[test]
fn cidfile_holds_the_id_and_is_never_reused() {
    let (env, bb) = require!(populated());
    let cid = env.work.join("cid");
    let cid_s = cid.to_str().expect("utf8");
    let out = env.run(&["create", "--cidfile", cid_s, &bb, "true"]);
    let id = out.success().stdout_trim();
    // The ID without a newline, as podman writes it.
    assert_eq!(fs::read_to_string(&cid).expect("cidfile"), id);
    fails_cleanly(
        &env,
        &["create", "--cidfile", cid_s, &bb, "true"],
        &["container id file exists", cid_s],
    );
    // A failed create removes the file it claimed.
    let cid2 = env.work.join("cid2");
    let cid2_s = cid2.to_str().expect("utf8");
    fails_cleanly(
        &env,
        &["create", "--cidfile", cid2_s, "--label", "=x", &bb],
        &["--label"],
    );
    assert!(!cid2.exists());
}

#[test]
fn sysctls_apply_inside_and_bad_ones_are_refused() {
    let (env, bb) = require!(populated());
    let host_forward = fs::read_to_string("/proc/sys/net/ipv4/ip_forward").expect("host sysctl");
    let out = run_sh(
        &env,
        &[
            "--sysctl",
            "net.ipv4.ip_forward=1",
            "--sysctl",
            "net.ipv4.ping_group_range=0 0",
            "--sysctl",
            "kernel.shmmax=123456",
            "--sysctl",
            "fs.mqueue.msg_max=20",
        ],
        &bb,
        "cat /proc/sys/net/ipv4/ip_forward /proc/sys/net/ipv4/ping_group_range \
         /proc/sys/kernel/shmmax /proc/sys/fs/mqueue/msg_max; \
         if echo 0 > /proc/sys/net/ipv4/ip_forward; then echo rw; else echo ro; fi",
    );
    let lines: Vec<String> = out
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(lines, ["1", "0 0", "123456", "20", "ro"], "{out}");
    assert_eq!(
        fs::read_to_string("/proc/sys/net/ipv4/ip_forward").expect("host sysctl"),
        host_forward,
        "the host's value must not change"
    );
    env.run(&[
        "create",
        "--name",
        "sys",
        "--sysctl",
        "net.ipv4.ip_forward=1",
        &bb,
    ])
    .success();
    let id = inspect_one(&env, &["sys"])["Id"]
        .as_str()
        .expect("Id")
        .to_string();
    let spec: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(
            env.root_dir
                .join("containers")
                .join(&id)
                .join("config.json"),
        )
        .expect("config.json"),
    )
    .expect("spec JSON");
    assert_eq!(spec["linux"]["sysctl"]["net.ipv4.ip_forward"], "1");

    fails_cleanly(
        &env,
        &["create", "--sysctl", "kernel.hostname=x", &bb],
        &["--sysctl", "kernel.hostname"],
    );
    fails_cleanly(
        &env,
        &["create", "--sysctl", "vm.swappiness", &bb],
        &["--sysctl"],
    );
    fails_cleanly(
        &env,
        &[
            "create",
            "--network",
            "host",
            "--sysctl",
            "net.ipv4.ip_forward=1",
            &bb,
        ],
        &["net.ipv4.ip_forward", "network"],
    );
}

#[test]
fn mount_flag_binds_and_tmpfs() {
    let (env, bb) = require!(populated());
    let vol = env.work.join("m");
    fs::create_dir(&vol).expect("mkdir");
    fs::write(vol.join("f"), "hello\n").expect("write");
    env.give(&vol);
    let bind = format!("type=bind,source={},target=/m,readonly", vol.display());
    let out = run_sh(
        &env,
        &[
            "--mount",
            &bind,
            "--mount",
            "type=tmpfs,destination=/t,tmpfs-size=1m,tmpfs-mode=1770",
        ],
        &bb,
        "cat /m/f; if touch /m/x 2>/dev/null; then echo rw; else echo ro; fi; \
         stat -c %a /t; grep ' /t ' /proc/mounts",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..3], ["hello", "ro", "1770"], "{out}");
    assert!(
        lines[3].contains("tmpfs") && lines[3].contains("size=1024k"),
        "{out}"
    );
    assert!(!vol.join("x").exists());

    let rw = format!("type=bind,src={},dst=/m", vol.display());
    env.run(&["create", "--name", "mnt", "--mount", &rw, &bb])
        .success();
    let c = inspect_one(&env, &["mnt"]);
    let mounts = c["Mounts"].as_array().expect("Mounts");
    assert!(
        mounts
            .iter()
            .any(|m| m["Destination"] == "/m" && m["RW"] == true),
        "{c}"
    );

    // Named volumes work now (tests/integration/volumes.rs); a volume without a
    // destination still does not.
    fails_cleanly(
        &env,
        &["create", "--mount", "type=volume,source=data", &bb],
        &["--mount"],
    );
    fails_cleanly(
        &env,
        &["create", "--mount", "type=bind,target=/d", &bb],
        &["--mount", "source"],
    );
    fails_cleanly(
        &env,
        &["create", "--mount", "type=tmpfs,target=rel", &bb],
        &["--mount"],
    );
    fails_cleanly(
        &env,
        &["create", "--mount", "type=bind,src=/tmp,dst=/d,bogus", &bb],
        &["bogus"],
    );
    fails_cleanly(
        &env,
        &[
            "create",
            "--mount",
            "type=tmpfs,dst=/d",
            "--tmpfs",
            "/d",
            &bb,
        ],
        &["duplicate", "/d"],
    );
}

#[test]
fn volume_u_chowns_to_the_container_user_without_following_links() {
    let (env, bb) = require!(populated());
    let user = env.user.clone().expect("rootless user");
    let vol = env.work.join("u");
    fs::create_dir_all(vol.join("sub")).expect("mkdir");
    fs::write(vol.join("f"), "x").expect("write");
    fs::write(vol.join("sub/g"), "y").expect("write");
    let outside = env.work.join("outside");
    fs::write(&outside, "not mine to chown").expect("write");
    std::os::unix::fs::symlink(&outside, vol.join("link")).expect("symlink");
    env.give(&vol);
    env.give(&outside);
    let v = format!("{}:/data:U", vol.display());
    let out = run_sh(
        &env,
        &["-u", "1000:1000", "-v", &v],
        &bb,
        "stat -c '%u:%g' /data /data/f /data/sub /data/sub/g; touch /data/new && echo ok",
    );
    assert_eq!(out, "1000:1000\n1000:1000\n1000:1000\n1000:1000\nok\n");
    // On the host: the container's 1000 is subordinate ID start+999.
    let start =
        require!(subid_start("/etc/subuid", &user.name, user.uid)
            .ok_or("no subordinate IDs".to_string()));
    let meta = fs::symlink_metadata(vol.join("sub/g")).expect("stat");
    assert_eq!(meta.uid(), start + 999);
    // The symlink's target outside the volume is untouched.
    assert_eq!(fs::metadata(&outside).expect("stat").uid(), user.uid);

    // The user from the image's /etc/passwd, by name.
    let out = run_sh(
        &env,
        &["-u", "tester", "-v", &v],
        &bb,
        "stat -c '%U' /data/f",
    );
    assert_eq!(out, "tester\n");
    let ro = format!("{}:/data:U,ro", vol.display());
    fails_cleanly(&env, &["create", "-v", &ro, &bb], &["--volume", "U"]);
}

#[test]
fn platform_pulls_the_requested_variant() {
    let fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootless());
    let img = &fx.multiarch.reference;
    let out = env.run(&[
        "run",
        "--rm",
        "--platform",
        "linux/arm64",
        "--pull",
        "always",
        img,
        "cat",
        "/arch",
    ]);
    assert_eq!(out.success().stdout_str(), "arm64\n");
    let i = inspect_one(&env, &["--type", "image", img]);
    assert_eq!(i["Architecture"], "arm64", "{i}");
    assert_eq!(i["Id"], fx.multiarch_arm64.id.as_str(), "{i}");
    // The host's platform again: a local image of another platform does not count.
    let host = format!("linux/{}", images::host_arch());
    let out = env.run(&["run", "--rm", "--platform", &host, img, "cat", "/arch"]);
    assert_eq!(
        out.success().stdout_str(),
        format!("{}\n", images::host_arch())
    );
    fails_cleanly(
        &env,
        &["create", "--platform", "linux", img],
        &["--platform"],
    );
}

#[test]
fn rename_checks_names() {
    let (env, bb) = require!(populated());
    env.run(&["create", "--name", "first", &bb, "true"])
        .success();
    env.run(&["rename", "first", "second"]).success();
    assert_eq!(inspect_one(&env, &["second"])["Name"], "second");
    env.run(&["inspect", "first"]).failure();
    fails_cleanly(
        &env,
        &["rename", "second", "existing"],
        &["existing", "already in use"],
    );
    fails_cleanly(
        &env,
        &["rename", "second", "no good"],
        &["no good", "invalid"],
    );
    fails_cleanly(&env, &["rename", "nosuch", "third"], &["nosuch"]);
    env.run(&["container", "rename", "second", "third"])
        .success();
    env.run(&["start", "-a", "third"]).success();
}

#[test]
fn container_group_and_prune() {
    let (env, bb) = require!(populated());
    let running = env.run(&["run", "-d", "--name", "up", &bb, "sleep", "100"]);
    let running = running.success().stdout_trim();
    let exited = env.run(&["container", "create", "--name", "down", &bb, "true"]);
    let exited = exited.success().stdout_trim();
    env.run(&["container", "start", "-a", "down"]).success();
    for ls in ["ls", "list", "ps"] {
        let out = env.run(&["container", ls, "-a", "--no-trunc"]);
        out.success()
            .stdout_contains(&running)
            .stdout_contains(&exited);
    }
    let out = env.run(&["container", "inspect", "down"]);
    assert!(out.success().stdout_str().contains("\"Name\": \"down\""));
    // Without -f, prune asks; "n" keeps everything.
    let before = snapshot(&env);
    let out = env
        .cmd(&["container", "prune"])
        .stdin(b"n\n".to_vec())
        .output();
    out.success()
        .stdout_contains("WARNING! This will remove all non running containers.");
    assert_eq!(snapshot(&env), before);
    let out = env
        .cmd(&["container", "prune"])
        .stdin(b"y\n".to_vec())
        .output();
    out.success().stdout_contains(&exited);
    let existing = env.run(&["ps", "-a", "--no-trunc"]).success().stdout_str();
    assert!(
        existing.contains(&running) && !existing.contains(&exited),
        "{existing}"
    );
    assert!(!existing.contains("existing"), "{existing}");
    env.run(&["create", "--name", "again", &bb, "true"])
        .success();
    let out = env.run(&["container", "prune", "-f"]);
    let ids = out.success().stdout_str();
    assert_eq!(ids.lines().count(), 1, "{ids}");
    env.run(&["container", "logs", "up"]).success();
    env.run(&["container", "top", "up"])
        .success()
        .stdout_contains("sleep");
    env.run(&["container", "rm", "-f", "up"]).success();
    assert_eq!(env.run(&["container", "ls", "-aq"]).stdout_trim(), "");
}

#[test]
fn pause_rootless_on_cgroup_v1_is_refused() {
    crate::skip_if!(
        unified_cgroup(),
        "this host has cgroup v2, where rootless pause may work"
    );
    let (env, bb) = require!(populated());
    env.run(&["run", "-d", "--name", "p", &bb, "sleep", "100"])
        .success();
    fails_cleanly(
        &env,
        &["pause", "p"],
        &["pause is not supported for rootless containers on cgroup v1"],
    );
    fails_cleanly(&env, &["unpause", "p"], &["unpause", "cgroup v1"]);
    assert_eq!(inspect_one(&env, &["p"])["State"]["Status"], "running");
}

#[test]
fn pause_and_unpause_rootful_freeze_the_container() {
    let fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootful());
    let bb = &fx.busybox.reference;
    let id = env.run(&[
        "run",
        "-d",
        "--name",
        "p",
        bb,
        "sh",
        "-c",
        "while :; do sleep 0.1; done",
    ]);
    let id = id.success().stdout_trim();
    let out = env.run(&["pause", "p"]);
    assert_eq!(out.success().stdout_trim(), "p");
    let c = inspect_one(&env, &["p"]);
    assert_eq!(c["State"]["Status"], "paused", "{c}");
    assert_eq!(c["State"]["Paused"], true, "{c}");
    env.run(&["ps"]).success().stdout_contains("Paused");
    if !unified_cgroup() {
        let state = fs::read_to_string(format!("/sys/fs/cgroup/freezer/skiff/{id}/freezer.state"))
            .expect("freezer.state");
        assert_eq!(state.trim(), "FROZEN");
    }
    fails_cleanly(&env, &["pause", "p"], &["already paused"]);
    env.run(&["unpause", "p"]).success();
    assert_eq!(inspect_one(&env, &["p"])["State"]["Status"], "running");
    fails_cleanly(&env, &["unpause", "p"], &["not paused"]);
    // A paused container can be removed with force.
    env.run(&["pause", "p"]).success();
    env.run(&["rm", "p"]).assert_code(2);
    env.run(&["rm", "-f", "p"]).success();
    assert!(!Path::new(&format!("/sys/fs/cgroup/freezer/skiff/{id}")).exists());
}
