//! Entries land as tar describes them: types, owners, modes, times, names,
//! xattrs, whiteouts and duplicates.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

use tar::EntryType;

use super::super::{OverlayXattrs, UnpackOptions};
use super::{euid, get_xattr, header, is_root, Scratch, Tar, MTIME};

#[test]
fn plain_tree() {
    let s = Scratch::new();
    let tar = Tar::new()
        .dir("./", 0o755)
        .dir("./usr/", 0o755)
        .dir("./usr/bin/", 0o755)
        .file("./usr/bin/tool", b"#!/bin/sh\necho hi\n", 0o755)
        .symlink("./bin", "usr/bin")
        .symlink("./abs", "/etc/passwd")
        .hardlink("./usr/bin/tool2", "./usr/bin/tool")
        .file("deep/implicit/file", b"x", 0o600)
        .node("./fifo", EntryType::Fifo, 0, 0)
        .build();
    let sum = s.unpack(&tar).unwrap();
    assert!(sum.skipped.is_empty(), "{:?}", sum.skipped);
    assert_eq!(
        fs::read(s.p("usr/bin/tool")).unwrap(),
        b"#!/bin/sh\necho hi\n"
    );
    assert_eq!(fs::read_link(s.p("bin")).unwrap().to_str(), Some("usr/bin"));
    assert_eq!(
        fs::read_link(s.p("abs")).unwrap().to_str(),
        Some("/etc/passwd")
    );
    let a = fs::metadata(s.p("usr/bin/tool")).unwrap();
    let b = fs::metadata(s.p("usr/bin/tool2")).unwrap();
    assert_eq!((a.ino(), a.nlink()), (b.ino(), 2));
    assert_eq!(fs::read(s.p("deep/implicit/file")).unwrap(), b"x");
    let implicit = fs::metadata(s.p("deep/implicit")).unwrap();
    assert!(implicit.is_dir());
    assert_eq!(implicit.mode() & 0o7777, 0o755);
    assert!(fs::symlink_metadata(s.p("fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
    assert_eq!(fs::metadata(&s.dest).unwrap().mode() & 0o7777, 0o755);
}

#[test]
fn modes_including_setuid_and_sticky() {
    let s = Scratch::new();
    let owner = if is_root() { 1000 } else { euid() as u64 };
    let mut h = header(EntryType::Regular, 0o4755, 0);
    h.set_uid(owner);
    let mut g = header(EntryType::Regular, 0o2710, 0);
    g.set_uid(owner);
    let tar = Tar::new()
        .file_h("suid", b"elf", h)
        .file_h("sgid", b"elf", g)
        .dir("tmp", 0o1777)
        .dir("ro", 0o555)
        .file("ro/inside", b"1", 0o400)
        .dir("locked", 0o000)
        .file("none", b"", 0o000)
        .build();
    s.unpack(&tar).unwrap();
    let mode = |p: &str| fs::symlink_metadata(s.p(p)).unwrap().mode() & 0o7777;
    assert_eq!(mode("suid"), 0o4755);
    assert_eq!(fs::metadata(s.p("suid")).unwrap().uid() as u64, owner);
    if is_root() {
        assert_eq!(mode("sgid"), 0o2710);
    }
    assert_eq!(mode("tmp"), 0o1777);
    assert_eq!(mode("ro"), 0o555);
    assert_eq!(mode("ro/inside"), 0o400);
    assert_eq!(mode("locked"), 0o000);
    assert_eq!(mode("none"), 0o000);
    // Let the temp dir be removed when not running as root.
    for d in ["locked", "ro"] {
        fs::set_permissions(s.p(d), fs::Permissions::from_mode(0o755)).unwrap();
    }
}

#[test]
fn ownership_numeric_ids() {
    if !is_root() {
        eprintln!("skipping: changing owners to 1000/65534 needs root");
        return;
    }
    let s = Scratch::new();
    let mut f = header(EntryType::Regular, 0o644, 0);
    f.set_uid(1000);
    f.set_gid(1000);
    // Names must be ignored: only the numeric IDs count.
    f.set_username("root").unwrap();
    f.set_groupname("root").unwrap();
    let mut d = header(EntryType::Directory, 0o755, 0);
    d.set_uid(65534);
    d.set_gid(65534);
    let mut l = header(EntryType::Symlink, 0o777, 0);
    l.set_uid(1000);
    l.set_gid(65534);
    let mut t = Tar::new().file_h("f", b"x", f).dir_h("d", d);
    t.b.append_link(&mut l, "l", "f").unwrap();
    s.unpack(&t.build()).unwrap();
    let ids = |p: &str| {
        let m = fs::symlink_metadata(s.p(p)).unwrap();
        (m.uid(), m.gid())
    };
    assert_eq!(ids("f"), (1000, 1000));
    assert_eq!(ids("d"), (65534, 65534));
    assert_eq!(ids("l"), (1000, 65534));
}

#[test]
fn mtimes_of_files_symlinks_and_dirs() {
    let s = Scratch::new();
    let mut d = header(EntryType::Directory, 0o755, 0);
    d.set_mtime(1_000_000);
    let mut sub = header(EntryType::Directory, 0o755, 0);
    sub.set_mtime(2_000_000);
    let tar = Tar::new()
        .dir_h("a", d)
        .dir_h("a/sub", sub)
        .file("a/sub/f", b"1", 0o644)
        .symlink("a/link", "sub/f")
        .file("a/g", b"2", 0o644)
        .pax(&[("mtime", b"1234567890.5")])
        .file("a/pax", b"3", 0o644)
        .build();
    s.unpack(&tar).unwrap();
    let mtime = |p: &str| fs::symlink_metadata(s.p(p)).unwrap().mtime();
    assert_eq!(mtime("a"), 1_000_000);
    assert_eq!(mtime("a/sub"), 2_000_000);
    assert_eq!(mtime("a/sub/f"), MTIME as i64);
    assert_eq!(mtime("a/link"), MTIME as i64);
    assert_eq!(mtime("a/pax"), 1_234_567_890);
}

#[test]
fn long_names_gnu_and_pax() {
    let s = Scratch::new();
    // ~3.9 KiB path made of 255-byte components (the kernel's name limit).
    let seg = "s".repeat(255);
    let long_dir = vec![seg.as_str(); 15].join("/");
    let gnu_path = format!("{long_dir}/gnu-file");
    let link_target = format!("{long_dir}/../{}", "t".repeat(200));
    let tar = Tar::new()
        .file(&gnu_path, b"gnu", 0o644)
        .symlink("longlink", &link_target)
        .pax(&[("path", format!("{long_dir}/pax-file").as_bytes())])
        .file("short-name-overridden", b"pax", 0o644)
        .hardlink("hard", &gnu_path)
        .build();
    s.unpack(&tar).unwrap();
    assert!(gnu_path.len() > 3800);
    assert_eq!(fs::read(s.p(&gnu_path)).unwrap(), b"gnu");
    assert_eq!(
        fs::read(s.p(&format!("{long_dir}/pax-file"))).unwrap(),
        b"pax"
    );
    assert!(!s.p("short-name-overridden").exists());
    assert_eq!(
        fs::read_link(s.p("longlink")).unwrap().to_str(),
        Some(link_target.as_str())
    );
    assert_eq!(fs::read(s.p("hard")).unwrap(), b"gnu");
}

#[test]
fn xattrs_kept_and_overlay_xattrs_dropped() {
    let s = Scratch::new();
    let tar = Tar::new()
        .pax(&[
            ("SCHILY.xattr.user.keep", b"v1"),
            ("SCHILY.xattr.user.overlay.opaque", b"y"),
            ("SCHILY.xattr.trusted.overlay.redirect", b"/etc"),
        ])
        .dir("d", 0o755)
        .pax(&[
            ("SCHILY.xattr.user.mime", b"text/plain"),
            ("SCHILY.xattr.trusted.overlay.origin", b"x"),
        ])
        .file("d/f", b"data", 0o644)
        .build();
    s.unpack(&tar).unwrap();
    assert_eq!(
        get_xattr(&s.p("d"), "user.keep").as_deref(),
        Some(&b"v1"[..])
    );
    assert_eq!(
        get_xattr(&s.p("d/f"), "user.mime").as_deref(),
        Some(&b"text/plain"[..])
    );
    assert_eq!(get_xattr(&s.p("d"), "user.overlay.opaque"), None);
    assert_eq!(get_xattr(&s.p("d"), "trusted.overlay.redirect"), None);
    assert_eq!(get_xattr(&s.p("d/f"), "trusted.overlay.origin"), None);
}

#[test]
fn refused_xattr_is_only_a_warning() {
    let s = Scratch::new();
    // user.* xattrs are not allowed on symlinks: the kernel refuses, we go on.
    let mut h = header(EntryType::Symlink, 0o777, 0);
    let mut t = Tar::new().pax(&[("SCHILY.xattr.user.x", b"1")]);
    t.b.append_link(&mut h, "l", "target").unwrap();
    s.unpack(&t.build()).unwrap();
    assert_eq!(fs::read_link(s.p("l")).unwrap().to_str(), Some("target"));
}

#[test]
fn whiteouts_become_char_devices() {
    if !is_root() {
        eprintln!("skipping: mknod c 0 0 needs root or a user namespace (see userns tests)");
        return;
    }
    let s = Scratch::new();
    let tar = Tar::new()
        .dir("etc", 0o755)
        .file("etc/gone", b"x", 0o644)
        .dir("etc/gonedir", 0o755)
        .file("etc/gonedir/inner", b"x", 0o644)
        .file("etc/.wh.gone", b"", 0o644)
        .file("etc/.wh.gonedir", b"", 0o644)
        .file("etc/.wh.lower-only", b"", 0o644)
        .file("newdir/.wh.implicit", b"", 0o644)
        .build();
    s.unpack(&tar).unwrap();
    for p in [
        "etc/gone",
        "etc/gonedir",
        "etc/lower-only",
        "newdir/implicit",
    ] {
        let m = fs::symlink_metadata(s.p(p)).unwrap();
        assert!(m.file_type().is_char_device(), "{p}");
        assert_eq!(m.rdev(), 0, "{p}");
    }
    assert!(!s.p("etc/.wh.gone").exists());
    assert!(!s.p("newdir/.wh.implicit").exists());
}

#[test]
fn opaque_dirs_user_and_trusted_namespace() {
    let tar = Tar::new()
        .dir("d", 0o755)
        .file("d/.wh..wh..opq", b"", 0o644)
        .file("d/kept", b"x", 0o644)
        .file("implicit/.wh..wh..opq", b"", 0o644)
        .file(".wh..wh..opq", b"", 0o644)
        .build();
    let s = Scratch::new();
    let user = UnpackOptions {
        xattrs: OverlayXattrs::User,
        ..UnpackOptions::default()
    };
    s.unpack_with(&tar, &user).unwrap();
    for p in ["d", "implicit", ""] {
        assert_eq!(
            get_xattr(&s.p(p), "user.overlay.opaque").as_deref(),
            Some(&b"y"[..]),
            "{p:?}"
        );
    }
    assert!(!s.p("d/.wh..wh..opq").exists());
    assert!(s.p("d/kept").exists());
    if !is_root() {
        eprintln!("skipping trusted.overlay.opaque: needs root");
        return;
    }
    let s = Scratch::new();
    let trusted = UnpackOptions {
        xattrs: OverlayXattrs::Trusted,
        ..UnpackOptions::default()
    };
    s.unpack_with(&tar, &trusted).unwrap();
    assert_eq!(
        get_xattr(&s.p("d"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert_eq!(get_xattr(&s.p("d"), "user.overlay.opaque"), None);
}

#[test]
fn duplicates_later_entry_wins() {
    let s = Scratch::new();
    let mut d2 = header(EntryType::Directory, 0o700, 0);
    d2.set_mtime(42);
    let tar = Tar::new()
        .file("f", b"old", 0o644)
        .file("f", b"new", 0o600)
        .file("f2dir", b"x", 0o644)
        .dir("f2dir", 0o755)
        .dir("d", 0o755)
        .file("d/child", b"c", 0o644)
        .dir_h("d", d2)
        .dir("dir2file", 0o755)
        .dir("dir2file/sub", 0o755)
        .symlink("dir2file/sub/escape", &s.sentinel.display().to_string())
        .file("dir2file/sub/f", b"x", 0o644)
        .file("dir2file", b"now a file", 0o644)
        .symlink("l", "a")
        .symlink("l", "b")
        .build();
    let before = super::tree_hash(&s.sentinel);
    s.unpack(&tar).unwrap();
    assert_eq!(super::tree_hash(&s.sentinel), before);
    assert_eq!(fs::read(s.p("f")).unwrap(), b"new");
    assert_eq!(fs::metadata(s.p("f")).unwrap().mode() & 0o777, 0o600);
    assert!(fs::metadata(s.p("f2dir")).unwrap().is_dir());
    assert_eq!(fs::read(s.p("d/child")).unwrap(), b"c");
    let d = fs::metadata(s.p("d")).unwrap();
    assert_eq!((d.mode() & 0o777, d.mtime()), (0o700, 42));
    assert_eq!(fs::read(s.p("dir2file")).unwrap(), b"now a file");
    assert_eq!(fs::read_link(s.p("l")).unwrap().to_str(), Some("b"));
}

#[test]
fn device_nodes_created_or_skipped() {
    let s = Scratch::new();
    let tar = Tar::new()
        .node("dev/null", EntryType::Char, 1, 3)
        .node("dev/loop0", EntryType::Block, 7, 0)
        .file("dev/after", b"ok", 0o644)
        .build();
    let sum = s.unpack(&tar).unwrap();
    assert_eq!(fs::read(s.p("dev/after")).unwrap(), b"ok");
    if sum.skipped.is_empty() {
        let m = fs::symlink_metadata(s.p("dev/null")).unwrap();
        assert!(m.file_type().is_char_device());
        assert_eq!(m.rdev(), nix::sys::stat::makedev(1, 3));
        assert!(fs::symlink_metadata(s.p("dev/loop0"))
            .unwrap()
            .file_type()
            .is_block_device());
    } else {
        let paths: Vec<_> = sum.skipped.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["dev/null", "dev/loop0"]);
        assert!(!s.p("dev/null").exists());
    }
}
