//! Issue 6, named volumes: volume create/ls/inspect/rm/prune, `-v NAME:/path`,
//! `--mount type=volume`, anonymous `-v /path`, copy-up of the image's files into an
//! empty volume (owners kept, inside the user namespace), and volumes in use.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use crate::images;
use crate::require;
use crate::support::{assert_error, inspect_one, json, pull, snapshot, subid_start};
use crate::util::TestEnv;

fn names(env: &TestEnv) -> Vec<String> {
    let out = env.run(&["volume", "ls", "-q"]);
    out.success();
    let mut v: Vec<String> = out.stdout_str().lines().map(str::to_string).collect();
    v.sort();
    v
}

fn mountpoint(env: &TestEnv, name: &str) -> PathBuf {
    let v = inspect_one(env, &["--type", "volume", name]);
    PathBuf::from(v["Mountpoint"].as_str().expect("Mountpoint"))
}

#[test]
fn volume_create_ls_inspect_rm() {
    let env = require!(TestEnv::try_rootless());
    let out = env.run(&["volume", "create", "--label", "a=b", "--label", "c", "vol1"]);
    assert_eq!(out.success().stdout_trim(), "vol1");
    let anon = env.run(&["volume", "create"]).success().stdout_trim();
    assert!(
        anon.len() == 64 && anon.bytes().all(|b| b.is_ascii_hexdigit()),
        "{anon}"
    );
    assert_eq!(names(&env), {
        let mut v = vec![anon.clone(), "vol1".to_string()];
        v.sort();
        v
    });
    let ls = env.run(&["volume", "ls", "--filter", "name=vol"]);
    assert_eq!(
        ls.success().stdout_str(),
        "DRIVER      VOLUME NAME\nlocal       vol1\n"
    );
    let out = env.run(&[
        "volume",
        "ls",
        "--format",
        "{{.Name}} {{.Labels.a}} {{.Driver}}",
        "--filter",
        "label=a=b",
    ]);
    assert_eq!(out.success().stdout_str(), "vol1 b local\n");
    let j = json(&env.run(&["volume", "ls", "--format", "json", "--filter", "label=c"]));
    assert_eq!(j[0]["Name"], "vol1", "{j}");
    let v = inspect_one(&env, &["--type", "volume", "vol1"]);
    assert_eq!(v["Labels"]["a"], "b", "{v}");
    assert_eq!(v["Labels"]["c"], "", "{v}");
    assert_eq!(v["Driver"], "local", "{v}");
    let mp = mountpoint(&env, "vol1");
    assert!(mp.is_dir(), "{}", mp.display());
    assert_eq!(mp, env.root_dir.join("volumes/vol1/_data"));
    let vi = json(&env.run(&["volume", "inspect", "vol1"]));
    assert_eq!(vi[0]["Mountpoint"], v["Mountpoint"]);
    let out = env.run(&["volume", "inspect", "--format", "{{.Mountpoint}}", "vol1"]);
    assert_eq!(PathBuf::from(out.success().stdout_trim()), mp);

    // Bad input: a clear one-line error, nothing changed.
    let before = (names(&env), snapshot(&env));
    assert_error(
        &env.run(&["volume", "create", "vol1"]),
        125,
        &["vol1", "already exists"],
    );
    assert_error(
        &env.run(&["volume", "create", "bad/name"]),
        125,
        &["bad/name", "invalid"],
    );
    assert_error(
        &env.run(&["volume", "create", "-o", "type=tmpfs", "v2"]),
        125,
        &["type=tmpfs"],
    );
    assert_error(
        &env.run(&["volume", "create", "-d", "nfs", "v2"]),
        125,
        &["nfs"],
    );
    assert_error(
        &env.run(&["volume", "rm", "nope"]),
        1,
        &["nope", "no such volume"],
    );
    assert_error(&env.run(&["volume", "inspect", "nope"]), 125, &["nope"]);
    assert_error(
        &env.run(&["volume", "ls", "--filter", "size=1"]),
        125,
        &["size"],
    );
    assert_eq!((names(&env), snapshot(&env)), before);
    env.run(&["volume", "create", "--ignore", "vol1"]).success();

    let out = env.run(&["volume", "rm", "vol1", &anon]);
    assert_eq!(out.success().stdout_str(), format!("vol1\n{anon}\n"));
    assert!(names(&env).is_empty());
    assert!(!mp.exists());
}

#[test]
fn named_volume_copies_up_the_image_and_persists() {
    let fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootless());
    pull(&env, &fx.big_ids.reference);
    pull(&env, &fx.busybox.reference);
    // First use: the empty volume gets the image's /data, owners kept (1000:1000 in the
    // container is a subordinate ID on the host).
    let out = env.run(&[
        "run",
        "--rm",
        "-v",
        "data:/data",
        &fx.big_ids.reference,
        "sh",
        "-c",
        &format!(
            "stat -c '%u:%g' {}; echo new > /data/added",
            images::BIG_IDS_FILE
        ),
    ]);
    assert_eq!(out.success().stdout_str(), "1000:1000\n");
    let mp = mountpoint(&env, "data");
    let copied = mp.join("owned-by-1000");
    let md = fs::symlink_metadata(&copied).expect("copied file on the host");
    let user = env.user.as_ref().expect("user");
    let sub = subid_start("/etc/subuid", &user.name, user.uid).expect("subuid");
    assert_eq!(md.uid(), sub + 999, "owner is the mapped ID of 1000");
    assert_eq!(
        fs::read_to_string(mp.join("added")).expect("added"),
        "new\n"
    );
    // Later uses see the volume's contents, not the image's (no second copy-up).
    let out = env.run(&[
        "run",
        "--rm",
        "-v",
        "data:/data",
        &fx.busybox.reference,
        "sh",
        "-c",
        "ls /data; cat /data/added",
    ]);
    assert_eq!(out.success().stdout_str(), "added\nowned-by-1000\nnew\n");
    // A path the image does not have: an empty volume; nocopy: no copy-up.
    let out = env.run(&[
        "run",
        "--rm",
        "-v",
        "fresh:/nothing/here",
        &fx.busybox.reference,
        "ls",
        "-A",
        "/nothing/here",
    ]);
    assert_eq!(out.success().stdout_str(), "");
    let out = env.run(&[
        "run",
        "--rm",
        "-v",
        "nc:/data:nocopy",
        &fx.big_ids.reference,
        "ls",
        "-A",
        "/data",
    ]);
    assert_eq!(out.success().stdout_str(), "");
    // --mount type=volume, read-only.
    let out = env.run(&[
        "run",
        "--rm",
        "--mount",
        "type=volume,src=data,dst=/v,ro",
        &fx.busybox.reference,
        "sh",
        "-c",
        "cat /v/added; touch /v/x 2>/dev/null && echo rw || echo ro",
    ]);
    assert_eq!(out.success().stdout_str(), "new\nro\n");
    let mut n = names(&env);
    n.sort();
    assert_eq!(n, ["data", "fresh", "nc"]);
    // Removing a volume with files owned by subordinate IDs works (inside the userns).
    env.run(&["volume", "rm", "data"]).success();
    assert!(!mp.exists(), "{}", mp.display());
}

#[test]
fn anonymous_volumes_in_use_and_prune() {
    let fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootless());
    let bb = &fx.busybox.reference;
    pull(&env, bb);
    env.run(&[
        "run",
        "--name",
        "a",
        "-v",
        "/anon",
        bb,
        "sh",
        "-c",
        "echo hi > /anon/f",
    ])
    .success();
    env.run(&[
        "create",
        "--name",
        "b",
        "--mount",
        "type=volume,dst=/m",
        "-v",
        "named:/n",
        bb,
    ])
    .success();
    let all = names(&env);
    assert_eq!(all.len(), 3, "{all:?}");
    let c = inspect_one(&env, &["a"]);
    let m = &c["Mounts"][0];
    assert_eq!(m["Type"], "volume", "{c}");
    let anon = m["Name"].as_str().expect("Name").to_string();
    assert_eq!(anon.len(), 64, "{m}");
    assert!(all.contains(&anon));
    assert!(
        c["HostConfig"]["Binds"][0]
            .as_str()
            .expect("bind")
            .starts_with(&format!("{anon}:/anon")),
        "{c}"
    );
    // The same volume at every start.
    env.run(&["start", "-a", "a"]).success();
    assert_eq!(names(&env), all);
    assert_eq!(
        fs::read_to_string(mountpoint(&env, &anon).join("f")).expect("f"),
        "hi\n"
    );

    // In use: podman's exit code 2, the error names the volume and the container,
    // nothing is removed.
    let before = (names(&env), snapshot(&env));
    let out = env.run(&["volume", "rm", "named"]);
    let b_id = inspect_one(&env, &["b"])["Id"]
        .as_str()
        .expect("Id")
        .to_string();
    assert_error(&out, 2, &["named", "is being used", &b_id]);
    assert_eq!((names(&env), snapshot(&env)), before);
    // prune keeps volumes in use (and says nothing without -f and a "y").
    let out = env.cmd(&["volume", "prune"]).stdin("n\n").output();
    out.success();
    assert_eq!(names(&env), all);
    env.run(&["volume", "prune", "-f"]).success();
    assert_eq!(names(&env), all);
    // --force removes the containers that use the volume, then the volume.
    env.run(&["volume", "rm", "-f", "named"]).success();
    // (`inspect b` could match another container by ID prefix: list the names instead.)
    let left = env.run(&["ps", "-a", "--format", "{{.Names}}"]);
    assert!(
        !left.success().stdout_str().lines().any(|n| n == "b"),
        "container b was removed with its volume: {}",
        left.stdout_str()
    );
    env.run(&["rm", "a"]).success();
    let out = env.run(&["volume", "prune", "-f"]);
    let mut pruned: Vec<String> = out
        .success()
        .stdout_str()
        .lines()
        .map(str::to_string)
        .collect();
    pruned.sort();
    assert_eq!(pruned.len(), 2, "{}", out.describe());
    assert!(names(&env).is_empty());
}

#[test]
fn bad_volume_flags_change_nothing() {
    let fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootless());
    let bb = &fx.busybox.reference;
    pull(&env, bb);
    let before = (names(&env), snapshot(&env));
    for (args, needles) in [
        (
            vec!["run", "--rm", "-v", "bad/name:/x", bb, "true"],
            vec!["--volume", "bad/name"],
        ),
        (
            vec!["run", "--rm", "-v", "v:rel", bb, "true"],
            vec!["--volume", "absolute"],
        ),
        (
            vec!["run", "--rm", "-v", "v:/x:bogus", bb, "true"],
            vec!["--volume", "bogus"],
        ),
        (
            vec!["create", "--mount", "type=volume,src=..,dst=/x", bb],
            vec!["--mount", ".."],
        ),
        (
            vec![
                "create",
                "--mount",
                "type=volume,src=v,dst=/x,tmpfs-size=1m",
                bb,
            ],
            vec!["tmpfs-size"],
        ),
        // Valid volumes, but the container fails later: the auto-created volume goes too.
        (
            vec!["create", "-v", "auto:/x", "-v", "other:/x", bb],
            vec!["duplicate", "/x"],
        ),
    ] {
        assert_error(&env.run(&args), 125, &needles);
        assert_eq!((names(&env), snapshot(&env)), before, "{args:?}");
    }
}

#[test]
fn rootful_named_volume_copy_up() {
    let fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootful());
    pull(&env, &fx.big_ids.reference);
    let out = env.run(&[
        "run",
        "--rm",
        "-v",
        "data:/data",
        &fx.big_ids.reference,
        "stat",
        "-c",
        "%u:%g",
        images::BIG_IDS_FILE,
    ]);
    assert_eq!(out.success().stdout_str(), "1000:1000\n");
    let md = fs::symlink_metadata(mountpoint(&env, "data").join("owned-by-1000")).expect("copied");
    assert_eq!((md.uid(), md.gid()), (1000, 1000));
    env.run(&["volume", "rm", "data"]).success();
}
