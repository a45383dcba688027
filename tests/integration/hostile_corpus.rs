//! Issue 7, hostile input: a corpus of crafted layers pulled through the real binary
//! as the unprivileged user, each on top of busybox. Every case either unpacks safely
//! (and the container sees what the case says) or is refused with one clear line and
//! an unchanged store; in both cases a sentinel tree next to the test's store and the
//! busybox layer already in the store hash the same before and after, and
//! `system check` finds nothing wrong.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tar::EntryType;

use crate::images::{self, gzip, LayerTar};
use crate::require;
use crate::support::{assert_error, pull, run_sh, snapshot};
use crate::util::TestEnv;

/// Path → (mode, size, content hash, symlink target) of every entry under `root`.
fn tree_hash(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(meta) = fs::symlink_metadata(&p) else {
            continue;
        };
        let what = if meta.file_type().is_symlink() {
            format!("link {:?}", fs::read_link(&p).ok())
        } else if meta.is_file() {
            let data = fs::read(&p).unwrap_or_default();
            hex::encode(Sha256::digest(&data))
        } else {
            String::new()
        };
        out.insert(
            p.strip_prefix(root).unwrap_or(&p).to_path_buf(),
            format!(
                "{:o} {} {}:{} {what}",
                meta.mode(),
                meta.size(),
                meta.uid(),
                meta.gid()
            ),
        );
        if meta.is_dir() {
            for e in fs::read_dir(&p).into_iter().flatten().flatten() {
                stack.push(e.path());
            }
        }
    }
    out
}

/// A sentinel tree the hostile layers aim at: files, a dir, mode 0777 so any escape
/// as the test user would succeed if the unpacker let it.
fn sentinel(env: &TestEnv) -> PathBuf {
    let s = env.dir.join("sentinel");
    fs::create_dir_all(s.join("etc")).expect("sentinel dir");
    fs::write(s.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").expect("sentinel file");
    fs::write(s.join("keep"), "keep\n").expect("sentinel file");
    for p in [&s, &s.join("etc")] {
        fs::set_permissions(p, fs::Permissions::from_mode(0o777)).expect("chmod");
    }
    for p in [s.join("etc/passwd"), s.join("keep")] {
        fs::set_permissions(p, fs::Permissions::from_mode(0o666)).expect("chmod");
    }
    s
}

enum Expect {
    /// Refused; the error line contains these.
    Refused(&'static [&'static str]),
    /// Unpacked; this script in the container prints `ok`.
    Runs(&'static str),
}

struct Case {
    name: &'static str,
    layer: Vec<u8>,
    expect: Expect,
}

fn corpus(sentinel: &Path) -> Vec<Case> {
    let s = sentinel.display().to_string();
    let rel_up = "../".repeat(14);
    let long: String = (0..16).map(|i| format!("{i:0>250}/")).collect::<String>() + "leaf";
    let mut cases = Vec::new();
    let mut add = |name, expect, f: &dyn Fn(&mut LayerTar)| {
        let mut t = LayerTar::new();
        f(&mut t);
        cases.push(Case {
            name,
            layer: t.finish(),
            expect,
        });
    };
    add("dotdot", Expect::Refused(&["unsafe"]), &|t| {
        let name = format!("{rel_up}{}/keep", &s[1..]);
        t.raw(EntryType::Regular, name.as_bytes(), b"", b"evil");
    });
    add("absolute", Expect::Refused(&["unsafe"]), &|t| {
        t.raw(
            EntryType::Regular,
            format!("{s}/keep").as_bytes(),
            b"",
            b"evil",
        );
    });
    add(
        "symlink-to-root-then-file",
        Expect::Refused(&["unsafe"]),
        &|t| {
            t.symlink("root-link", "/");
            t.file(&format!("root-link/{}/keep", &s[1..]), 0o644, 0, 0, b"evil");
        },
    );
    add(
        "symlink-swapped-between-entries",
        Expect::Refused(&["unsafe"]),
        &|t| {
            t.dir("swap", 0o755, 0, 0)
                .file("swap/fine", 0o644, 0, 0, b"fine");
            t.symlink("swap", &s);
            t.file("swap/keep", 0o644, 0, 0, b"evil");
        },
    );
    add("hardlink-outside", Expect::Refused(&["unsafe"]), &|t| {
        t.raw(
            EntryType::Link,
            b"pw",
            format!("{s}/etc/passwd").as_bytes(),
            b"",
        );
    });
    add("hardlink-dotdot", Expect::Refused(&["unsafe"]), &|t| {
        let target = format!("{rel_up}{}/etc/passwd", &s[1..]);
        t.raw(EntryType::Link, b"pw", target.as_bytes(), b"");
    });
    add(
        "hardlink-to-a-symlink",
        Expect::Runs("test -L /opt/hl && [ \"$(readlink /opt/hl)\" = /etc/passwd ] && echo ok"),
        &|t| {
            t.dir("opt", 0o755, 0, 0).symlink("opt/sl", "/etc/passwd");
            t.hardlink("opt/hl", "opt/sl");
        },
    );
    add(
        "device-nodes-and-fifo",
        // Rootless, the kernel refuses mknod of devices: skipped with a warning.
        Expect::Runs("test -p /opt/fifo && ! test -e /opt/mem && echo ok"),
        &|t| {
            t.dir("opt", 0o755, 0, 0)
                .special("opt/mem", EntryType::Char, 1, 1)
                .special("opt/sda", EntryType::Block, 8, 0)
                .special("opt/fifo", EntryType::Fifo, 0, 0);
        },
    );
    add(
        "setuid-and-setgid",
        Expect::Runs(
            "[ \"$(stat -c %a /opt/su /opt/sg)\" = \"$(printf '4755\\n2755')\" ] && echo ok",
        ),
        &|t| {
            t.dir("opt", 0o755, 0, 0)
                .file("opt/su", 0o4755, 0, 0, b"#!/bin/sh\n")
                .file("opt/sg", 0o2755, 0, 0, b"#!/bin/sh\n");
        },
    );
    let long_leaf = format!("opt/{long}");
    let mut long_dirs = vec!["opt".to_string()];
    let mut acc = String::from("opt");
    for part in long.split('/').filter(|p| *p != "leaf") {
        acc = format!("{acc}/{part}");
        long_dirs.push(acc.clone());
    }
    add(
        "names-of-4-kib",
        Expect::Runs("f=$(find /opt -name leaf); [ ${#f} -gt 4000 ] && cat \"$f\""),
        &|t| {
            for d in &long_dirs {
                t.dir(d, 0o755, 0, 0);
            }
            t.file(&long_leaf, 0o644, 0, 0, b"ok\n");
        },
    );
    add(
        "duplicate-entries",
        Expect::Runs("[ \"$(cat /opt/dup)\" = second ] && echo ok"),
        &|t| {
            t.dir("opt", 0o755, 0, 0)
                .file("opt/dup", 0o644, 0, 0, b"first")
                .file("opt/dup", 0o644, 0, 0, b"second");
        },
    );
    add(
        "whiteouts-of-nothing",
        Expect::Runs(
            "test -x /bin/busybox && ! test -e /nothing-here && ! test -e /nowhere/deeper/x && echo ok",
        ),
        &|t| {
            t.whiteout("nothing-here").whiteout("nowhere/deeper/x");
        },
    );
    add("whiteout-of-the-root", Expect::Refused(&["unsafe"]), &|t| {
        t.raw(EntryType::Regular, b"./.wh..", b"", b"");
    });
    add(
        "whiteout-through-a-symlink",
        Expect::Refused(&["unsafe"]),
        &|t| {
            t.symlink("wl", &s);
            t.whiteout("wl/keep");
        },
    );
    cases
}

#[test]
fn a_corpus_of_hostile_layers_unpacks_safely_or_is_refused() {
    let fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootless());
    pull(&env, &fx.busybox.reference);
    let sentinel = sentinel(&env);
    let layers = crate::support::store(&env).join("layers");
    let guarded = |what: &str| (tree_hash(&sentinel), tree_hash(&layers), what.to_string());
    let base = fx.busybox_layer.clone();
    for case in corpus(&sentinel) {
        let layer = gzip(case.layer);
        let (image, _) = images::push_image(
            "skiff-test/corpus",
            case.name,
            &[&base, &layer],
            images::host_arch(),
        )
        .expect("push the case");
        let before = snapshot(&env);
        let (sent, lay, _) = guarded(case.name);
        let out = env.run(&["pull", &image.reference]);
        assert_eq!(
            tree_hash(&sentinel),
            sent,
            "{}: the sentinel changed",
            case.name
        );
        match case.expect {
            Expect::Refused(needles) => {
                assert_error(&out, 125, needles);
                assert_eq!(snapshot(&env), before, "{}: the store changed", case.name);
                assert_eq!(tree_hash(&layers), lay, "{}: layers changed", case.name);
            }
            Expect::Runs(script) => {
                out.success();
                let got = run_sh(&env, &[], &image.reference, script);
                assert_eq!(got.trim(), "ok", "{}", case.name);
                assert_eq!(tree_hash(&sentinel), sent, "{}: sentinel", case.name);
                env.run(&["rmi", &image.reference]).success();
            }
        }
        env.run(&["system", "check"]).success();
    }
}

#[test]
fn a_gzip_bomb_stops_at_the_configured_layer_size() {
    let fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootless());
    pull(&env, &fx.busybox.reference);
    let conf = env.home.join(".config/skiff");
    fs::create_dir_all(&conf).expect("config dir");
    fs::write(
        conf.join("skiff.toml"),
        "[storage]\nmax_layer_size = \"32MiB\"\n",
    )
    .expect("skiff.toml");
    env.give(&conf);
    let info = env.run(&["info", "--format", "json"]);
    info.success();
    assert!(
        info.stdout_str().contains("33554432"),
        "{}",
        info.describe()
    );
    // 256 MiB of zeros gzip to ~256 KiB.
    let mut t = LayerTar::new();
    t.file("bomb", 0o644, 0, 0, &vec![0u8; 256 << 20]);
    let layer = gzip(t.finish());
    assert!(layer.bytes.len() < 2 << 20, "{}", layer.bytes.len());
    let base = fx.busybox_layer.clone();
    let (image, _) = images::push_image(
        "skiff-test/corpus",
        "bomb",
        &[&base, &layer],
        images::host_arch(),
    )
    .expect("push the bomb");
    let before = snapshot(&env);
    let out = env.run(&["pull", &image.reference]);
    assert_error(
        &out,
        125,
        &["33554432", "decompression bomb", "max_layer_size"],
    );
    assert_eq!(snapshot(&env), before);
    // A bad value in the file is one clear error naming the file and key.
    fs::write(
        conf.join("skiff.toml"),
        "[storage]\nmax_layer_size = \"lots\"\n",
    )
    .expect("skiff.toml");
    env.give(&conf);
    assert_error(
        &env.run(&["images"]),
        125,
        &["skiff.toml", "max_layer_size", "lots"],
    );
}
