//! Issue 5, images from containers and tarballs and a store that heals: export (running
//! and stopped), import, commit (whiteouts, owners, zstd), history, image prune, rmi -f,
//! system df/prune/check/reset, parallel pulls sharing layers, pulls killed with SIGKILL,
//! and rmi racing run. Everything runs as the unprivileged test user with real processes.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::time::{Duration, Instant};

use crate::images;
use crate::require;
use crate::support::{assert_error, inspect_one, is_full_id, json, pull, snapshot, store};
use crate::util::TestEnv;

/// A rootless env with busybox pulled; returns it and the image reference.
fn setup() -> Result<(TestEnv, String), String> {
    let fx = images::try_fixtures()?;
    let env = TestEnv::try_rootless()?;
    pull(&env, &fx.busybox.reference);
    Ok((env, fx.busybox.reference.clone()))
}

/// One tar entry as the tests look at it.
#[derive(Debug, Clone)]
struct Entry {
    kind: tar::EntryType,
    uid: u64,
    gid: u64,
    data: Vec<u8>,
}

/// Path (without `./` and trailing `/`) → entry.
fn entries(tar_bytes: &[u8]) -> BTreeMap<String, Entry> {
    let mut out = BTreeMap::new();
    let mut ar = tar::Archive::new(tar_bytes);
    for e in ar.entries().expect("a tar archive") {
        let mut e = e.expect("a tar entry");
        let path = e.path().expect("entry path").display().to_string();
        let path = path
            .trim_start_matches("./")
            .trim_end_matches('/')
            .to_string();
        let h = e.header().clone();
        let mut data = Vec::new();
        e.read_to_end(&mut data).expect("entry data");
        out.insert(
            path,
            Entry {
                kind: h.entry_type(),
                uid: h.uid().unwrap_or(u64::MAX),
                gid: h.gid().unwrap_or(u64::MAX),
                data,
            },
        );
    }
    out
}

#[track_caller]
fn until(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < limit, "timed out after {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn export_stopped_container_to_file_and_stdout() {
    let (env, img) = require!(setup());
    env.run(&[
        "run",
        "--name",
        "exp",
        &img,
        "sh",
        "-c",
        "echo data > /root/file && chown 1000:1000 /root/file && rm /etc/group",
    ])
    .success();
    env.run(&["export", "-o", "fs.tar", "exp"]).success();
    let bytes = fs::read(env.work.join("fs.tar")).expect("export wrote fs.tar");
    let e = entries(&bytes);
    let f = &e["root/file"];
    assert_eq!(f.data, b"data\n");
    assert_eq!(
        (f.uid, f.gid),
        (1000, 1000),
        "container-side owners are kept"
    );
    assert_eq!(
        e["root"].uid, 0,
        "root's home belongs to the container's root"
    );
    assert_eq!(e["root"].kind, tar::EntryType::Directory);
    assert_eq!(e["bin/sh"].kind, tar::EntryType::Symlink);
    assert!(e.contains_key("bin/busybox"), "image files are exported");
    assert!(
        !e.contains_key("etc/group"),
        "a deleted file is not exported"
    );
    assert!(
        e.keys().all(|k| !k.contains(".wh.")),
        "no whiteouts in an export"
    );
    // The same bytes on stdout.
    let out = env.run(&["export", "exp"]);
    out.success();
    assert_eq!(
        entries(&out.stdout).keys().collect::<Vec<_>>(),
        e.keys().collect::<Vec<_>>()
    );
    // The container still starts afterwards (nothing of the export is left mounted).
    let out = env.run(&["start", "-a", "exp"]);
    out.assert_code(1); // /etc/group is gone, so rm fails the second time
}

#[test]
fn export_running_container_has_its_files_but_no_mounts() {
    let (env, img) = require!(setup());
    let out = env.run(&[
        "run",
        "-d",
        "--name",
        "live",
        "-v",
        "/etc:/mnt/hostetc:ro",
        &img,
        "sh",
        "-c",
        "echo live > /tmp/live; sleep 1000",
    ]);
    out.success();
    let mut e = BTreeMap::new();
    until(
        Duration::from_secs(10),
        "the container wrote /tmp/live",
        || {
            let out = env.run(&["export", "live"]);
            out.success();
            e = entries(&out.stdout);
            e.contains_key("tmp/live")
        },
    );
    assert_eq!(e["tmp/live"].data, b"live\n");
    assert!(e.contains_key("bin/busybox"));
    assert!(
        e.keys()
            .all(|k| !k.starts_with("proc/") && !k.starts_with("sys/")),
        "/proc and /sys are mounts, not part of the container's filesystem"
    );
    assert!(
        e.keys().all(|k| !k.starts_with("mnt/hostetc/")),
        "a volume is not part of the export"
    );
    assert_eq!(
        inspect_one(&env, &["live"])["State"]["Status"],
        "running",
        "export leaves a running container running"
    );
}

#[test]
fn import_runs_with_changes_from_file_and_stdin() {
    let (env, img) = require!(setup());
    env.run(&[
        "run",
        "--name",
        "src",
        &img,
        "sh",
        "-c",
        "echo imported > /root/file",
    ])
    .success();
    env.run(&["export", "-o", "fs.tar", "src"]).success();
    let out = env.run(&[
        "import",
        "--change",
        "CMD=cat /root/file",
        "--change",
        "ENV=GREETING=hello",
        "-m",
        "from a test",
        "fs.tar",
        "imp:1",
    ]);
    out.success();
    let id = out.stdout_trim();
    assert!(
        is_full_id(id.trim_start_matches("sha256:")),
        "{}",
        out.describe()
    );
    let out = env.run(&["run", "--rm", "imp:1"]);
    out.success();
    assert_eq!(out.stdout_trim(), "imported");
    let out = env.run(&[
        "run",
        "--rm",
        "localhost/imp:1",
        "sh",
        "-c",
        "echo $GREETING",
    ]);
    assert_eq!(out.success().stdout_trim(), "hello");
    let v = inspect_one(&env, &["--type", "image", "imp:1"]);
    assert_eq!(v["RepoTags"][0], "localhost/imp:1");
    assert_eq!(v["RootFS"]["Layers"].as_array().map(|a| a.len()), Some(1));
    assert_eq!(v["History"][0]["comment"], "from a test");

    // gzip-compressed input on stdin, zstd layer.
    let tar = fs::read(env.work.join("fs.tar")).unwrap();
    let out = env
        .cmd(&["import", "--compression-format", "zstd", "-", "imp:zstd"])
        .stdin(images::gzip(tar).bytes)
        .output();
    out.success();
    let v = inspect_one(&env, &["--type", "image", "imp:zstd"]);
    let manifest_digest = v["Digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let manifest: serde_json::Value = serde_json::from_slice(
        &fs::read(store(&env).join("blobs/sha256").join(manifest_digest)).unwrap(),
    )
    .unwrap();
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    let out = env.run(&["run", "--rm", "imp:zstd", "cat", "/root/file"]);
    assert_eq!(out.success().stdout_trim(), "imported");
}

#[test]
fn commit_records_changes_deletions_and_owners() {
    let (env, img) = require!(setup());
    env.run(&[
        "run",
        "--name",
        "work",
        &img,
        "sh",
        "-c",
        "echo new > /new-file && chown 1000:1000 /new-file && rm /bin/vi \
         && rm -rf /usr && mkdir -p /usr/only && echo y > /usr/only/f",
    ])
    .success();
    let out = env.run(&[
        "commit",
        "-q",
        "-m",
        "my message",
        "-a",
        "me",
        "-c",
        "CMD=cat /new-file",
        "work",
        "committed:1",
    ]);
    out.success();
    let id = out.stdout_trim();
    assert!(is_full_id(&id), "{}", out.describe());
    let out = env.run(&["run", "--rm", "committed:1"]);
    assert_eq!(out.success().stdout_trim(), "new");
    let script = "stat -c %u:%g /new-file; test -e /bin/vi && echo vi-present; \
                  ls /usr; test -e /bin/sh && echo sh-present";
    let out = env.run(&["run", "--rm", "committed:1", "sh", "-c", script]);
    assert_eq!(
        out.success().stdout_trim(),
        "1000:1000\nonly\nsh-present",
        "owner kept, /bin/vi deleted, /usr opaque, the rest of the image there"
    );

    // The layer as an OCI diff: whiteout for vi, opaque marker for /usr, gzip.
    let v = inspect_one(&env, &["--type", "image", "committed:1"]);
    assert_eq!(v["Id"], id);
    let hexd = v["Digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let blobs = store(&env).join("blobs/sha256");
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(blobs.join(hexd)).unwrap()).unwrap();
    let top = manifest["layers"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        top["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    let blob = fs::read(
        blobs.join(
            top["digest"]
                .as_str()
                .unwrap()
                .trim_start_matches("sha256:"),
        ),
    )
    .unwrap();
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(&blob[..])
        .read_to_end(&mut raw)
        .unwrap();
    let e = entries(&raw);
    assert!(e.contains_key("bin/.wh.vi"), "{:?}", e.keys());
    assert!(e.contains_key("usr/.wh..wh..opq"), "{:?}", e.keys());
    assert_eq!(e["new-file"].data, b"new\n");
    assert_eq!((e["new-file"].uid, e["new-file"].gid), (1000, 1000));

    // History: one more entry than the parent, the newest first, with the comment.
    let parent = env.run(&["history", "-q", &img]);
    let mine = env.run(&["history", "-q", "committed:1"]);
    let (p, m) = (parent.success().stdout_str(), mine.success().stdout_str());
    assert_eq!(m.lines().count(), p.lines().count() + 1);
    assert_eq!(m.lines().next(), Some(&id[..12]));
    let out = env.run(&["history", "committed:1"]);
    let text = out.success().stdout_str();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    for col in ["ID", "CREATED", "CREATED BY", "SIZE", "COMMENT"] {
        assert!(header.contains(col), "{header}");
    }
    let first = lines.next().unwrap();
    assert!(
        first.starts_with(&id[..12]) && first.contains("my message"),
        "{text}"
    );
    let out = env.run(&["history", "--format", "json", "--no-trunc", "committed:1"]);
    let v = json(&out);
    assert_eq!(v[0]["id"], id);
    assert_eq!(v[0]["comment"], "my message");
    assert!(v[0]["size"].as_i64().unwrap() > 0);
}

#[test]
fn commit_of_a_running_container_with_zstd() {
    let (env, img) = require!(setup());
    env.run(&[
        "run",
        "-d",
        "--name",
        "busy",
        &img,
        "sh",
        "-c",
        "echo running > /state; sleep 1000",
    ])
    .success();
    until(
        Duration::from_secs(10),
        "the container wrote /state",
        || env.run(&["exec", "busy", "cat", "/state"]).stdout_trim() == "running",
    );
    let out = env.run(&["commit", "--compression-format", "zstd", "busy", "snap"]);
    out.success();
    let out = env.run(&["run", "--rm", "localhost/snap:latest", "cat", "/state"]);
    assert_eq!(out.success().stdout_trim(), "running");
    assert_eq!(inspect_one(&env, &["busy"])["State"]["Status"], "running");
    // `image` group aliases.
    env.run(&["image", "ls"])
        .success()
        .stdout_contains("localhost/snap");
    let v = json(&env.run(&["image", "inspect", "snap"]));
    assert_eq!(v[0]["RepoTags"][0], "localhost/snap:latest");
    env.run(&["image", "tag", "snap", "snap2"]).success();
    env.run(&["image", "rm", "snap2"])
        .success()
        .stdout_contains("Untagged");
}

#[test]
fn bad_input_gives_one_line_errors_and_changes_nothing() {
    let (env, img) = require!(setup());
    env.run(&["create", "--name", "c1", &img, "true"]).success();
    let before = snapshot(&env);
    let blobs_before = crate::support::listing(&store(&env).join("blobs/sha256"));
    fs::write(
        env.work.join("not.tar"),
        "this is not a tar archive\n".repeat(40),
    )
    .unwrap();
    fs::write(env.work.join("empty.tar"), "").unwrap();
    env.give(&env.work);
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            vec!["import", "not.tar", "x:1"],
            vec!["not.tar", "not a tar archive"],
        ),
        (
            vec!["import", "empty.tar", "x:1"],
            vec!["empty.tar", "not a tar archive"],
        ),
        (vec!["import", "missing.tar"], vec!["missing.tar"]),
        (
            vec!["import", "--change", "FROM x", "not.tar"],
            vec!["FROM"],
        ),
        (
            vec!["export", "-o", "out.tar", "nosuch"],
            vec!["nosuch", "no such container"],
        ),
        (
            vec!["commit", "nosuch", "x:2"],
            vec!["nosuch", "no such container"],
        ),
        (vec!["commit", "-c", "BOGUS x", "c1", "x:3"], vec!["BOGUS"]),
        (
            vec!["commit", "--compression-format", "lz4", "c1"],
            vec!["lz4"],
        ),
        (vec!["history", "nosuch-image"], vec!["nosuch-image"]),
    ];
    for (args, needles) in cases {
        let out = env.run(&args);
        assert_error(&out, 125, &needles);
    }
    assert!(
        !env.work.join("out.tar").exists(),
        "a failed export leaves no file"
    );
    assert_eq!(snapshot(&env), before);
    assert_eq!(
        crate::support::listing(&store(&env).join("blobs/sha256")),
        blobs_before
    );
    assert!(
        crate::support::listing(&store(&env).join("tmp")).is_empty(),
        "no temp files left"
    );
}
