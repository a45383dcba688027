//! `export` and `commit` of a stopped root container whose layers are idmapped
//! (`--uidmap`, `--userns=auto` as root) give what they give while it runs: the
//! container's owners, its upper dir's changes, whiteouts honoured; nothing mounted on
//! the host and no helper left behind.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::images;
use crate::require;
use crate::support::{assert_error, pull, store};
use crate::util::TestEnv;

/// Writes files owned by several users, chowns an image file, deletes another, then
/// marks itself ready and waits.
const SCRIPT: &str = "echo zero > /f-root; echo one > /f-1000; chown 1000:1000 /f-1000; \
    mkdir -p /d/sub; echo two > /d/sub/f; chown -R 33:44 /d; chmod 4750 /d/sub/f; \
    chown 123:456 /opt/app/keep; rm /opt/owned/by-1000; rm -rf /opt/opaque; \
    ln -s /f-root /link; touch /ready; exec sleep 1000";

/// `tar -tv` of an archive with numeric owners: one line per entry (mode, owners,
/// size, mtime, name), in archive order.
fn listing(env: &TestEnv, tar: &Path) -> Vec<String> {
    let out = env
        .host_cmd("tar", &["-tvf", tar.to_str().unwrap(), "--numeric-owner"])
        .output();
    out.success();
    out.stdout_str().lines().map(String::from).collect()
}

fn export(env: &TestEnv, name: &str, file: &str) -> Vec<String> {
    let tar = env.work.join(file);
    env.run(&["export", "-o", tar.to_str().unwrap(), name])
        .success();
    listing(env, &tar)
}

/// Owner column (`uid/gid`) of the entry named `name`.
fn owner(list: &[String], name: &str) -> String {
    list.iter()
        .find(|l| l.split_whitespace().nth(5) == Some(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or_else(|| panic!("{name} not in the export:\n{}", list.join("\n")))
        .to_string()
}

fn has(list: &[String], name: &str) -> bool {
    list.iter()
        .any(|l| l.split_whitespace().nth(5) == Some(name))
}

/// Lines of the host's /proc/self/mountinfo that mention this env's store.
fn our_mounts(env: &TestEnv) -> Vec<String> {
    let root = store(env).display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .filter(|l| l.contains(&root))
        .map(String::from)
        .collect()
}

/// Processes running an `__archive` helper (or its forked children) of this env.
fn helpers(env: &TestEnv) -> Vec<String> {
    let root = store(env).display().to_string();
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains("__archive") && cmd.contains(&root) {
            v.push(format!("{}: {cmd}", e.file_name().to_string_lossy()));
        }
    }
    v
}

fn wait_ready(env: &TestEnv, id: &str) {
    let ready = store(env).join("containers").join(id).join("upper/ready");
    let t = Instant::now();
    while !ready.exists() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "container never ready"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn diff_ids(env: &TestEnv, image: &str) -> Vec<String> {
    let out = env.run(&["image", "inspect", image]);
    let j = crate::support::json(out.success());
    j[0]["RootFS"]["Layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|v| v.as_str().expect("diff id").to_string())
        .collect()
}

/// Runs the whole check for a container made with `userns_flags`.
fn check(userns_flags: &[&str], tag: &str, idmapped: bool) {
    let fx = require!(images::try_fixtures());
    let mut env = require!(TestEnv::try_rootful());
    if !idmapped {
        env.set_env("SKIFF_NO_IDMAP", "1");
    }
    let img = &fx.layered.reference;
    pull(&env, img);
    let before = our_mounts(&env);
    let mut args = vec!["run", "-d", "--name", "c"];
    args.extend_from_slice(userns_flags);
    args.extend_from_slice(&[img, "sh", "-c", SCRIPT]);
    let id = env.run(&args).success().stdout_trim();
    let layout: serde_json::Value = serde_json::from_slice(
        &std::fs::read(store(&env).join("containers").join(&id).join("rootfs.json"))
            .expect("rootfs.json"),
    )
    .expect("json");
    assert_eq!(layout["idmapped"], idmapped, "{layout}");
    wait_ready(&env, &id);
    let insp = env.run(&["inspect", "c"]);
    let map = crate::support::json(insp.success())[0]["HostConfig"]["IDMappings"]["UidMap"][0]
        .as_str()
        .expect("the container has a uid map")
        .to_string();
    let host0: u32 = map
        .split(':')
        .nth(1)
        .expect("host id")
        .parse()
        .expect("number");
    assert_ne!(host0, 0, "a user namespace mapping root elsewhere: {map}");
    // Its upper dir holds host IDs of its mapping.
    let up = store(&env).join("containers").join(&id).join("upper");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(up.join("f-1000")).expect("f-1000").uid(),
        host0 + 1000
    );

    let running = export(&env, "c", "running.tar");
    let commit_running = env
        .run(&["commit", "-q", "c", &format!("localhost/running-{tag}")])
        .success()
        .stdout_trim();
    env.run(&["stop", "-t", "0", "c"]).success();
    let stopped = export(&env, "c", "stopped.tar");
    assert_eq!(
        stopped, running,
        "a stopped container exports what it exported running"
    );
    // As the container sees it: its owners, its changes, the whiteouts honoured.
    for (name, own) in [
        ("bin/busybox", "0/0"),
        ("f-root", "0/0"),
        ("f-1000", "1000/1000"),
        ("d/sub", "33/44"),
        ("d/sub/f", "33/44"),
        ("opt/app/keep", "123/456"),
        ("opt/owned/dir-1000", "1000/1000"),
    ] {
        assert_eq!(owner(&stopped, name), own, "{name}");
    }
    let f = stopped
        .iter()
        .find(|l| l.ends_with(" d/sub/f"))
        .expect("d/sub/f");
    assert!(f.starts_with("-rwsr-x---"), "mode kept: {f}");
    assert!(stopped.iter().any(|l| l.ends_with(" link -> /f-root")));
    for gone in [
        "opt/owned/by-1000",
        "opt/opaque",
        "opt/app/remove-me",
        "bin/vi",
    ] {
        assert!(
            !has(&stopped, gone),
            "{gone} was deleted:\n{}",
            stopped.join("\n")
        );
    }
    assert!(
        !stopped.iter().any(|l| l.contains(".wh.")),
        "no whiteout files"
    );

    let commit_stopped = env
        .run(&["commit", "-q", "c", &format!("localhost/stopped-{tag}")])
        .success()
        .stdout_trim();
    assert_ne!(commit_stopped, commit_running, "two images");
    assert_eq!(
        diff_ids(&env, &commit_stopped),
        diff_ids(&env, &commit_running),
        "the same layer, byte for byte, running or stopped"
    );
    // The image runs (without a user namespace) and shows the changes with the
    // container's owners.
    let out = env.run(&[
        "run",
        "--rm",
        &commit_stopped,
        "sh",
        "-c",
        "stat -c '%n %u:%g %a' /f-root /f-1000 /d/sub/f /opt/app/keep; cat /d/sub/f; \
         for f in /opt/owned/by-1000 /opt/opaque /opt/app/remove-me; do test -e $f && echo $f present; done; true",
    ]);
    assert_eq!(
        out.success().stdout_str(),
        "/f-root 0:0 644\n/f-1000 1000:1000 644\n/d/sub/f 33:44 4750\n/opt/app/keep 123:456 644\ntwo\n"
    );
    assert_eq!(our_mounts(&env), before, "nothing left mounted on the host");
    assert_eq!(helpers(&env), Vec::<String>::new(), "no helper lingers");
    env.run(&["rm", "c"]).success();
    // The same image through the same kind of user namespace shows the same.
    let mut again = vec!["run", "--rm"];
    again.extend_from_slice(userns_flags);
    again.extend_from_slice(&[
        &commit_stopped,
        "stat",
        "-c",
        "%u:%g",
        "/f-1000",
        "/opt/app/keep",
    ]);
    assert_eq!(
        env.run(&again).success().stdout_str(),
        "1000:1000\n123:456\n"
    );
    assert_eq!(our_mounts(&env), before);
}

#[test]
fn stopped_uidmap_container_exports_and_commits_as_running() {
    check(&["--uidmap", "0:100000:65536"], "uidmap", true);
}

#[test]
fn stopped_uidmap_container_with_copied_layers_exports_and_commits_as_running() {
    // SKIFF_NO_IDMAP=1: layers copied with host owners of the mapping, no idmapped mount.
    check(&["--uidmap", "0:200000:65536"], "copied", false);
}

#[test]
fn stopped_userns_auto_container_exports_and_commits_as_running() {
    // The default slice (1024 IDs) leaves the image's nobody (65534) unmapped, and its
    // 0600 file unreadable to the container's root, running or stopped alike.
    check(&["--userns=auto:size=65535"], "auto", true);
}

#[test]
fn stopped_idmapped_container_with_a_missing_layer_fails_cleanly() {
    let fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootful());
    let img = &fx.layered.reference;
    pull(&env, img);
    let before = our_mounts(&env);
    let id = env
        .run(&["create", "--uidmap", "0:100000:65536", img, "true"])
        .success()
        .stdout_trim();
    let layout: serde_json::Value = serde_json::from_slice(
        &std::fs::read(store(&env).join("containers").join(&id).join("rootfs.json"))
            .expect("rootfs.json"),
    )
    .expect("json");
    assert_eq!(layout["idmapped"], true, "{layout}");
    let layers = std::path::PathBuf::from(layout["layers_dir"].as_str().expect("layers_dir"));
    let first = layout["lower"][0].as_str().expect("a lower layer");
    let moved = env.work.join("moved-layer");
    std::fs::rename(layers.join(first), &moved).expect("move the layer away");
    let tar = env.work.join("x.tar");
    let out = env.run(&["export", "-o", tar.to_str().unwrap(), &id]);
    std::fs::rename(&moved, layers.join(first)).expect("put the layer back");
    assert_error(&out, 125, &["layer directory", "is missing", first]);
    assert!(!tar.exists(), "no partial archive left");
    assert_eq!(our_mounts(&env), before);
    assert_eq!(helpers(&env), Vec::<String>::new());
    // With the layer back it exports.
    let list = export(&env, &id, "y.tar");
    assert_eq!(owner(&list, "opt/owned/by-1000"), "1000/1000");
    env.run(&["rm", &id]).success();
}
