//! Issue 7: root containers with a user namespace (`--uidmap` as root) see the host's
//! layers through idmapped mounts instead of a copy per mapping; `SKIFF_NO_IDMAP=1`
//! forces the copy. The mounts live only in the container's mount namespace: the
//! host's mount table is the same before, during and after.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use crate::images;
use crate::require;
use crate::support::{inspect_one, listing, pull, store};
use crate::util::TestEnv;

/// The host's mount table (`findmnt -rn`), sorted.
fn mounts(env: &TestEnv) -> Vec<String> {
    let out = env.host_cmd("findmnt", &["-rn"]).output();
    out.success();
    let mut v: Vec<String> = out.stdout_str().lines().map(String::from).collect();
    v.sort();
    v
}

/// What the layered image shows inside: IDs, owners of image files (root and 1000),
/// a whiteout, an opaque dir and the top layer's version of a file.
const SCRIPT: &str =
    "id -u; id -g; stat -c %u:%g /bin/busybox /opt/owned/by-1000 /opt/owned/dir-1000; \
    ls /opt/opaque | tr '\\n' ' '; echo; test -e /opt/app/remove-me && echo present || echo gone; \
    cat /opt/app/keep; echo; echo hi > /written; touch /opt/owned/by-1000; cat /proc/self/uid_map";

fn check_inside(out: &str, host_root: u32) {
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(&l[..2], ["0", "0"], "{out}");
    assert_eq!(&l[2..5], ["0:0", "1000:1000", "1000:1000"], "{out}");
    assert_eq!(
        l[5].trim(),
        "new",
        "opaque dir hides the lower files: {out}"
    );
    assert_eq!(l[6], "gone", "whiteout: {out}");
    assert_eq!(l[7], "v3", "{out}");
    let map: Vec<&str> = l[8].split_whitespace().collect();
    assert_eq!(map, ["0", &host_root.to_string(), "65536"], "{out}");
}

fn upper_file(env: &TestEnv, id: &str, rel: &str) -> fs::Metadata {
    let p = store(env)
        .join("containers")
        .join(id)
        .join("upper")
        .join(rel);
    fs::metadata(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn uidmap_as_root_uses_idmapped_host_layers() {
    let fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootful());
    let img = &fx.layered.reference;
    pull(&env, img);
    let layers = store(&env).join("layers");
    let before_layers = listing(&layers);
    let before_mounts = mounts(&env);
    let out = env.run(&["run", "--uidmap", "0:100000:65536", img, "sh", "-c", SCRIPT]);
    out.success();
    check_inside(&out.stdout_str(), 100000);
    assert_eq!(
        listing(&layers),
        before_layers,
        "no layer copy for the mapping"
    );
    let id = env
        .run(&["ps", "-aq", "--no-trunc"])
        .stdout_trim()
        .lines()
        .next()
        .expect("the container")
        .to_string();
    // Written through the overlay: the mapped root on the host, in the upper dir.
    let w = upper_file(&env, &id, "written");
    assert_eq!((w.uid(), w.gid()), (100000, 100000));
    let c = upper_file(&env, &id, "opt/owned/by-1000");
    assert_eq!(
        (c.uid(), c.gid()),
        (101000, 101000),
        "copied up with its mapped owner"
    );
    let up = upper_file(&env, &id, "");
    assert_eq!(
        up.uid(),
        100000,
        "upper dir belongs to the container's root"
    );
    // The host's layer is untouched.
    let host_file = crate::support::layer_dir_with(&env, "opt/owned/by-1000").expect("layer");
    assert_eq!(
        fs::metadata(host_file.join("opt/owned/by-1000"))
            .expect("stat")
            .uid(),
        1000
    );
    env.run(&["rm", &id]).success();
    assert_eq!(mounts(&env), before_mounts, "nothing left mounted");
    assert_eq!(listing(&layers), before_layers);
}

fn wait_gone(pid: i32) {
    let t = Instant::now();
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        assert!(t.elapsed() < Duration::from_secs(10), "{pid} still alive");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn two_mappings_at_once_and_no_mount_left_after_stop_rm_or_kill() {
    let fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootful());
    let img = &fx.layered.reference;
    pull(&env, img);
    let layers = store(&env).join("layers");
    let before_layers = listing(&layers);
    let before_mounts = mounts(&env);
    let start = |map: &str| {
        let out = env.run(&["run", "-d", "--uidmap", map, img, "sleep", "1000"]);
        out.success();
        out.stdout_trim()
    };
    let a = start("0:100000:65536");
    let b = start("0:200000:65536");
    let c = start("0:300000:65536");
    for (id, host) in [(&a, 100000), (&b, 200000), (&c, 300000)] {
        let out = env.run(&["exec", id, "sh", "-c", SCRIPT]);
        out.success();
        check_inside(&out.stdout_str(), host);
        assert_eq!(upper_file(&env, id, "written").uid(), host);
    }
    // The idmapped layers and the overlays live in the containers' mount namespaces only.
    assert_eq!(
        mounts(&env),
        before_mounts,
        "host mount table while running"
    );
    assert_eq!(listing(&layers), before_layers, "no copies");
    env.run(&["stop", "-t", "0", &a]).success();
    env.run(&["rm", "-f", &b]).success();
    // kill -9 of a monitor takes its container (and its mount namespace) with it.
    let mon = inspect_one(&env, &[&c])["State"]["ConmonPid"]
        .as_i64()
        .expect("monitor pid") as i32;
    let init = inspect_one(&env, &[&c])["State"]["Pid"]
        .as_i64()
        .expect("pid") as i32;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(mon), nix::sys::signal::SIGKILL)
        .expect("kill monitor");
    wait_gone(init);
    assert_eq!(mounts(&env), before_mounts, "after stop, rm -f and kill -9");
    // A stopped idmapped container starts again.
    env.run(&["start", &a]).success();
    let out = env.run(&["exec", &a, "cat", "/written"]);
    assert_eq!(out.success().stdout_trim(), "hi", "its upper dir is kept");
    env.run(&["rm", "-f", &a, &c]).success();
    assert_eq!(mounts(&env), before_mounts);
}

#[test]
fn no_idmap_env_falls_back_to_a_copy_per_mapping() {
    let fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootful());
    let img = &fx.layered.reference;
    pull(&env, img);
    let layers = store(&env).join("layers");
    let before_layers = listing(&layers);
    let before_mounts = mounts(&env);
    let run = |map: &str| {
        let out = env
            .cmd(&["run", "--uidmap", map, img, "sh", "-c", SCRIPT])
            .env("SKIFF_NO_IDMAP", "1")
            .output();
        out.success();
        out.stdout_str()
    };
    check_inside(&run("0:100000:65536"), 100000);
    let copies = listing(&layers).len() - before_layers.len();
    assert_eq!(copies, 4, "one copy of each of the image's four layers");
    check_inside(&run("0:100000:65536"), 100000);
    assert_eq!(
        listing(&layers).len() - before_layers.len(),
        4,
        "copy reused"
    );
    let id = env
        .run(&["ps", "-aq", "--no-trunc"])
        .stdout_trim()
        .lines()
        .next()
        .expect("a container")
        .to_string();
    assert_eq!(upper_file(&env, &id, "written").uid(), 100000);
    env.run(&["rm", "-a"]).success();
    assert_eq!(mounts(&env), before_mounts);
}

#[test]
fn export_of_an_idmapped_container_shows_the_containers_owners() {
    let fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootful());
    let img = &fx.layered.reference;
    pull(&env, img);
    let run = env.run(&[
        "run",
        "-d",
        "--name",
        "ex",
        "--uidmap",
        "0:100000:65536",
        img,
        "sh",
        "-c",
        "echo mine > /mine; chown 1000:1000 /mine; sleep 100",
    ]);
    run.success();
    // Running: the export sees the container's own mounts, so its own owners.
    let mut listing = String::new();
    for _ in 0..50 {
        let tar = env.work.join("running.tar");
        env.run(&["export", "-o", tar.to_str().unwrap(), "ex"])
            .success();
        let out = env
            .host_cmd("tar", &["-tvf", tar.to_str().unwrap(), "--numeric-owner"])
            .output();
        out.success();
        listing = out.stdout_str();
        if listing.contains(" mine") || listing.contains("/mine") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let owner = |listing: &str, name: &str| {
        listing
            .lines()
            .find(|l| l.ends_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or_else(|| panic!("{name} not in the export:\n{listing}"))
            .to_string()
    };
    assert_eq!(owner(&listing, "bin/busybox"), "0/0");
    assert_eq!(owner(&listing, "opt/owned/by-1000"), "1000/1000");
    assert_eq!(owner(&listing, "mine"), "1000/1000");
    // Stopped: the same owners (never an archive with host owners); idmap_export.rs
    // compares whole listings.
    env.run(&["stop", "-t", "0", "ex"]).success();
    let tar = env.work.join("stopped.tar");
    env.run(&["export", "-o", tar.to_str().unwrap(), "ex"])
        .success();
    let out = env
        .host_cmd("tar", &["-tvf", tar.to_str().unwrap(), "--numeric-owner"])
        .output();
    let listing = out.success().stdout_str();
    assert_eq!(owner(&listing, "bin/busybox"), "0/0");
    assert_eq!(owner(&listing, "opt/owned/by-1000"), "1000/1000");
    assert_eq!(owner(&listing, "mine"), "1000/1000");
    env.run(&["rm", "ex"]).success();
}
