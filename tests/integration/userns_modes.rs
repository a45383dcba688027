//! Issue 7: `--userns=nomap` and `--userns=auto[:size=N,...]`, rootless, checked against
//! what podman 4.3.1 (runc) shows on this host: the container's root is a subordinate
//! ID, the user's own UID is not mapped, auto containers get disjoint slices that are
//! freed on rm, and inspect shows podman's UsernsMode and IDMappings.

use std::fs;
use std::os::unix::fs::MetadataExt;

use crate::images;
use crate::require;
use crate::support::{
    assert_error, inspect_one, listing, pull, run_sh, snapshot, store, subid_start,
};
use crate::util::TestEnv;

/// (first subordinate UID, first subordinate GID) of the rootless test user.
fn subids(env: &TestEnv) -> (u32, u32) {
    let u = env.user.as_ref().expect("rootless user");
    (
        subid_start("/etc/subuid", &u.name, u.uid).expect("subuid entry"),
        subid_start("/etc/subgid", &u.name, u.uid).expect("subgid entry"),
    )
}

fn rows(map: &str) -> Vec<Vec<u64>> {
    map.lines()
        .map(|l| {
            l.split_whitespace()
                .map(|w| w.parse().expect("number"))
                .collect()
        })
        .collect()
}

#[test]
fn nomap_maps_only_subordinate_ids_and_gives_root_its_files() {
    let fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootless());
    let bb = &fx.busybox.reference;
    pull(&env, bb);
    let (su, sg) = subids(&env);
    let bind = env.work.join("mine");
    fs::create_dir(&bind).expect("mkdir");
    env.give(&bind);
    let layers = store(&env).join("layers");
    let before = listing(&layers).len();
    let script = "cat /proc/self/uid_map /proc/self/gid_map; id -u; \
                  stat -c %u:%g /etc/hosts /etc/resolv.conf /etc/hostname /; \
                  touch /data/f /etc/hosts /rootfile && echo writable; \
                  stat -c %u /b; touch /b/x 2>/dev/null || echo bind-denied";
    let v = format!("{}:/b", bind.display());
    let out = run_sh(
        &env,
        &["--userns=nomap", "-v", "nmvol:/data", "-v", &v],
        bb,
        script,
    );
    let lines: Vec<&str> = out.lines().collect();
    // podman shows `0 1 65536` in its own namespace: the first subordinate ID as root.
    assert_eq!(rows(lines[0])[0][..2], [0, su as u64], "{out}");
    assert_eq!(rows(lines[1])[0][..2], [0, sg as u64], "{out}");
    assert_eq!(
        lines.len(),
        10,
        "one range each, the user's UID not mapped: {out}"
    );
    assert_eq!(lines[2], "0", "{out}");
    for l in &lines[3..7] {
        assert_eq!(
            *l, "0:0",
            "hosts, resolv.conf, hostname and / belong to root: {out}"
        );
    }
    assert_eq!(lines[7], "writable", "{out}");
    // The user's own directory is nobody's inside and not writable, as in podman.
    assert_eq!(lines[8], "65534", "{out}");
    assert_eq!(lines[9], "bind-denied", "{out}");
    assert!(!bind.join("x").exists());
    // A file written into the volume belongs to the first subordinate ID on the host.
    let data = store(&env).join("volumes/nmvol/_data/f");
    let md = fs::metadata(&data).expect("volume file");
    assert_eq!((md.uid(), md.gid()), (su, sg));
    // One layer copy for the nomap mapping, reused by the next nomap container.
    let after = listing(&layers).len();
    assert_eq!(after, before + 1, "busybox has one layer");
    assert_eq!(run_sh(&env, &["--userns=nomap"], bb, "id -u"), "0\n");
    assert_eq!(listing(&layers).len(), after, "the nomap copy is reused");
    // inspect as podman: "private" and the mapping in podman's terms.
    let id = env
        .run(&["create", "--userns=nomap", bb, "true"])
        .success()
        .stdout_trim();
    let j = inspect_one(&env, &[&id]);
    assert_eq!(j["HostConfig"]["UsernsMode"], "private");
    assert_eq!(j["HostConfig"]["IDMappings"]["UidMap"][0], "0:1:65536");
    env.run(&["rm", &id]).success();
    assert!(!store(&env).join("containers").join(&id).exists());
}

#[test]
fn auto_containers_get_disjoint_slices_freed_on_rm() {
    let fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootless());
    let bb = &fx.busybox.reference;
    pull(&env, bb);
    let (su, _) = subids(&env);
    let start = |flags: &str| {
        env.run(&["run", "-d", flags, bb, "sleep", "300"])
            .success()
            .stdout_trim()
    };
    let map_of = |id: &str| {
        let out = env.run(&["exec", id, "cat", "/proc/self/uid_map"]);
        rows(&out.success().stdout_str())
    };
    let a = start("--userns=auto");
    let b = start("--userns=auto:size=2000");
    let (ma, mb) = (map_of(&a), map_of(&b));
    // Default size: busybox names no ID above 1023, so podman's minimum of 1024.
    assert_eq!(ma, vec![vec![0, su as u64, 1024]]);
    assert_eq!(mb, vec![vec![0, su as u64 + 1024, 2000]], "after a's slice");
    let j = inspect_one(&env, &[&b]);
    assert_eq!(j["HostConfig"]["UsernsMode"], "");
    assert_eq!(j["HostConfig"]["IDMappings"]["GidMap"][0], "0:1025:2000");
    // ps and top are unaffected.
    let ps = env
        .run(&["ps", "--format", "{{.ID}}"])
        .success()
        .stdout_str();
    assert!(ps.contains(&a[..12]) && ps.contains(&b[..12]), "{ps}");
    let top = env.run(&["top", &a]).success().stdout_str();
    assert!(top.contains("sleep"), "{top}");
    // A removed container's slice is handed out again.
    env.run(&["rm", "-f", &a]).success();
    // (busybox has a file owned by 1000, so the slice must be larger than that.)
    let c = start("--userns=auto:size=1010");
    assert_eq!(
        map_of(&c),
        vec![vec![0, su as u64, 1010]],
        "fits a's freed slot"
    );
    env.run(&["rm", "-f", &b, &c]).success();
}

#[test]
fn auto_creates_at_once_never_overlap() {
    let fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootless());
    let bb = &fx.busybox.reference;
    pull(&env, bb);
    let ids: Vec<String> = std::thread::scope(|sc| {
        let kids: Vec<_> = (0..4)
            .map(|_| {
                sc.spawn(|| {
                    env.run(&["create", "--userns=auto:size=3000", bb, "true"])
                        .success()
                        .stdout_trim()
                })
            })
            .collect();
        kids.into_iter()
            .map(|k| k.join().expect("thread"))
            .collect()
    });
    let mut slices: Vec<u64> = ids
        .iter()
        .map(|id| {
            let j = inspect_one(&env, &[id]);
            let m = j["HostConfig"]["IDMappings"]["UidMap"][0]
                .as_str()
                .expect("mapping")
                .to_string();
            m.split(':').nth(1).expect("host").parse().expect("number")
        })
        .collect();
    slices.sort();
    assert_eq!(
        slices,
        vec![1, 3001, 6001, 9001],
        "disjoint first-fit slices"
    );
    let mut args = vec!["rm"];
    args.extend(ids.iter().map(String::as_str));
    env.run(&args).success();
}

#[test]
fn bad_userns_modes_fail_cleanly_and_change_nothing() {
    let fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootless());
    let bb = &fx.busybox.reference;
    pull(&env, bb);
    let before = snapshot(&env);
    for (mode, needles) in [
        ("auto:size=0", vec!["--userns", "size", "above 0"]),
        ("auto:size=x", vec!["--userns", "\"x\"", "size"]),
        (
            "auto:size=70000",
            vec!["--userns", "70000", "enough available IDs"],
        ),
        ("auto:bogus=1", vec!["--userns", "bogus"]),
        ("auto:uidmapping=0:1", vec!["--userns", "0:1"]),
        ("nomap:x", vec!["--userns", "nomap:x"]),
    ] {
        let flag = format!("--userns={mode}");
        let out = env.run(&["run", "--rm", &flag, bb, "true"]);
        assert_error(&out, 125, &needles);
        assert_eq!(snapshot(&env), before, "{mode} changed the store");
    }
    // Nothing was kept allotted: the next auto container starts at the first ID.
    let (su, _) = subids(&env);
    let out = run_sh(&env, &["--userns=auto"], bb, "cat /proc/self/uid_map");
    assert_eq!(rows(&out), vec![vec![0, su as u64, 1024]]);
}

#[test]
fn nomap_and_auto_as_root_give_podmans_errors() {
    let fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootful());
    let bb = &fx.busybox.reference;
    pull(&env, bb);
    let before = snapshot(&env);
    let out = env.run(&["run", "--rm", "--userns=nomap", bb, "true"]);
    assert_error(&out, 125, &["nomap is only supported in rootless mode"]);
    let has_containers = fs::read_to_string("/etc/subuid")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("containers:"));
    if !has_containers {
        let out = env.run(&["run", "--rm", "--userns=auto", bb, "true"]);
        assert_error(
            &out,
            125,
            &[
                "cannot find mappings for user \"containers\"",
                "/etc/subuid",
            ],
        );
    }
    assert_eq!(snapshot(&env), before);
}

/// The `containers` user's first range in /etc/subuid: (start, count).
fn containers_range() -> Result<(u64, u64), String> {
    let text = fs::read_to_string("/etc/subuid").map_err(|e| e.to_string())?;
    text.lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&"containers"))
                .then(|| Some((f.get(1)?.parse().ok()?, f.get(2)?.parse().ok()?)))
                .flatten()
        })
        .ok_or_else(|| "no containers range in /etc/subuid (scripts/test adds one)".into())
}

#[test]
fn auto_as_root_takes_disjoint_slices_of_the_containers_range() {
    let fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootful());
    let (start, count) = require!(containers_range());
    let bb = &fx.busybox.reference;
    pull(&env, bb);
    let mut maps = Vec::new();
    for name in ["a1", "a2"] {
        env.run(&[
            "run",
            "-d",
            "--name",
            name,
            "--userns=auto",
            bb,
            "sleep",
            "100",
        ])
        .success();
        let out = env.run(&["exec", name, "cat", "/proc/self/uid_map"]);
        out.success();
        let r = rows(&out.stdout_str());
        assert_eq!(r.len(), 1, "{}", out.stdout_str());
        let (inside, outside, n) = (r[0][0], r[0][1], r[0][2]);
        assert_eq!(inside, 0);
        assert!(n >= 1024, "{n}");
        assert!(outside >= start && outside + n <= start + count, "{r:?}");
        maps.push((outside, n));
        // Root's files from the image are root's inside, and writes work.
        let out = env.run(&[
            "exec",
            name,
            "sh",
            "-c",
            "stat -c %u:%g /bin/busybox; touch /w && echo ok",
        ]);
        out.success();
        assert_eq!(out.stdout_str(), "0:0\nok\n");
    }
    let ((o1, n1), (o2, n2)) = (maps[0], maps[1]);
    assert!(o1 + n1 <= o2 || o2 + n2 <= o1, "{maps:?} overlap");
    // Removing one frees its slice for the next.
    env.run(&["rm", "-f", "a1"]).success();
    env.run(&[
        "run",
        "-d",
        "--name",
        "a3",
        "--userns=auto",
        bb,
        "sleep",
        "100",
    ])
    .success();
    let out = env.run(&["exec", "a3", "cat", "/proc/self/uid_map"]);
    assert_eq!(
        rows(&out.stdout_str())[0][1],
        o1,
        "the freed slice is reused"
    );
    env.run(&["rm", "-f", "a2", "a3"]).success();
}
