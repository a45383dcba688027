//! Hostile layers: each must fail with `UnsafePath` and leave the sentinel
//! tree next to `dest` exactly as it was.

use std::fs;

use tar::EntryType;

use super::super::UnpackError;
use super::{tree_hash, Scratch, Tar};

/// Unpacks the tar built by `make` (given the scratch area so it can aim at
/// the sentinel) and checks the error and the untouched sentinel.
fn assert_rejected(make: impl FnOnce(&Scratch) -> Vec<u8>) -> UnpackError {
    let s = Scratch::new();
    let tar = make(&s);
    let before = tree_hash(&s.sentinel);
    let err = s.unpack(&tar).expect_err("hostile layer was accepted");
    assert!(matches!(err, UnpackError::UnsafePath { .. }), "{err:?}");
    assert_eq!(tree_hash(&s.sentinel), before, "sentinel changed: {err}");
    let msg = err.to_string();
    assert!(msg.contains("unsafe") && !msg.ends_with('.'), "{msg}");
    err
}

fn sentinel(s: &Scratch) -> String {
    s.sentinel.display().to_string()
}

#[test]
fn dotdot_file() {
    assert_rejected(|_| {
        Tar::new()
            .raw(EntryType::Regular, b"../sentinel/x", b"", b"evil")
            .build()
    });
}

#[test]
fn dotdot_in_the_middle() {
    assert_rejected(|_| {
        Tar::new()
            .dir("a", 0o755)
            .raw(EntryType::Regular, b"a/../../sentinel/x", b"", b"evil")
            .build()
    });
}

#[test]
fn dotdot_through_pax_path() {
    assert_rejected(|_| {
        Tar::new()
            .pax(&[("path", b"../sentinel/x")])
            .file("innocent", b"evil", 0o644)
            .build()
    });
}

#[test]
fn absolute_path() {
    assert_rejected(|s| {
        let p = format!("{}/x", sentinel(s));
        Tar::new()
            .raw(EntryType::Regular, p.as_bytes(), b"", b"evil")
            .build()
    });
    assert_rejected(|_| {
        Tar::new()
            .raw(EntryType::Regular, b"/etc/x", b"", b"evil")
            .build()
    });
}

#[test]
fn write_through_absolute_symlink() {
    let err = assert_rejected(|s| {
        Tar::new()
            .symlink("a", &sentinel(s))
            .file("a/etc/passwd", b"evil", 0o644)
            .build()
    });
    assert!(err.to_string().contains("a/etc/passwd"), "{err}");
    assert_rejected(|_| {
        Tar::new()
            .symlink("a", "/")
            .file("a/etc/passwd", b"evil", 0o644)
            .build()
    });
}

#[test]
fn write_through_relative_symlink() {
    assert_rejected(|_| {
        Tar::new()
            .symlink("a", "..")
            .file("a/sentinel/x", b"evil", 0o644)
            .build()
    });
    assert_rejected(|_| {
        Tar::new()
            .symlink("a", "..")
            .dir("a/sentinel/newdir", 0o777)
            .build()
    });
}

#[test]
fn symlink_swapped_in_between_entries() {
    assert_rejected(|s| {
        Tar::new()
            .dir("a", 0o755)
            .file("a/y", b"fine", 0o644)
            .symlink("a", &sentinel(s))
            .file("a/x", b"evil", 0o644)
            .build()
    });
}

#[test]
fn hardlink_to_absolute_path() {
    assert_rejected(|s| {
        let target = format!("{}/etc/passwd", sentinel(s));
        Tar::new()
            .raw(EntryType::Link, b"pw", target.as_bytes(), b"")
            .build()
    });
    assert_rejected(|_| {
        Tar::new()
            .raw(EntryType::Link, b"pw", b"/etc/passwd", b"")
            .build()
    });
}

#[test]
fn hardlink_to_dotdot() {
    assert_rejected(|_| {
        Tar::new()
            .raw(EntryType::Link, b"x", b"../sentinel/x", b"")
            .build()
    });
}

#[test]
fn hardlink_through_symlinked_dir() {
    assert_rejected(|s| {
        Tar::new()
            .symlink("s", &sentinel(s))
            .hardlink("h", "s/file")
            .build()
    });
}

#[test]
fn hardlink_placed_through_symlinked_dir() {
    assert_rejected(|s| {
        Tar::new()
            .file("f", b"x", 0o644)
            .symlink("s", &sentinel(s))
            .hardlink("s/file", "f")
            .build()
    });
}

#[test]
fn hardlink_to_symlink_links_the_symlink_itself() {
    let s = Scratch::new();
    let before = tree_hash(&s.sentinel);
    let tar = Tar::new()
        .symlink("l", &format!("{}/file", sentinel(&s)))
        .hardlink("h", "l")
        .build();
    s.unpack(&tar).unwrap();
    assert!(fs::symlink_metadata(s.p("h"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(tree_hash(&s.sentinel), before);
}

#[test]
fn whiteout_of_the_root() {
    assert_rejected(|_| Tar::new().file(".wh.", b"", 0o644).build());
    assert_rejected(|_| {
        Tar::new()
            .raw(EntryType::Regular, b"./.wh..", b"", b"")
            .build()
    });
    assert_rejected(|_| {
        Tar::new()
            .raw(EntryType::Regular, b".wh...", b"", b"")
            .build()
    });
    assert_rejected(|_| {
        Tar::new()
            .raw(EntryType::Regular, b"/.wh.etc", b"", b"")
            .build()
    });
    assert_rejected(|_| {
        Tar::new()
            .raw(EntryType::Regular, b"a/.wh..", b"", b"")
            .build()
    });
}

#[test]
fn whiteout_and_opaque_through_symlink() {
    assert_rejected(|s| {
        Tar::new()
            .symlink("s", &sentinel(s))
            .file("s/.wh.file", b"", 0o644)
            .build()
    });
    assert_rejected(|s| {
        Tar::new()
            .symlink("s", &sentinel(s))
            .file("s/.wh..wh..opq", b"", 0o644)
            .build()
    });
}

#[test]
fn root_replaced_by_non_directory() {
    assert_rejected(|_| Tar::new().symlink(".", "/").build());
    assert_rejected(|_| Tar::new().raw(EntryType::Regular, b".", b"", b"x").build());
}

#[test]
fn device_and_fifo_through_symlink() {
    assert_rejected(|s| {
        Tar::new()
            .symlink("s", &sentinel(s))
            .node("s/fifo", EntryType::Fifo, 0, 0)
            .build()
    });
}

#[test]
fn directory_metadata_through_symlink() {
    // The final component itself is a symlink to outside: a directory entry
    // there must replace the symlink, never chmod what it points to.
    let s = Scratch::new();
    let before = tree_hash(&s.sentinel);
    let tar = Tar::new()
        .symlink("d", &sentinel(&s))
        .dir("d", 0o777)
        .symlink("f", &format!("{}/file", sentinel(&s)))
        .file("f", b"replaced", 0o666)
        .build();
    s.unpack(&tar).unwrap();
    assert!(fs::symlink_metadata(s.p("d")).unwrap().is_dir());
    assert_eq!(fs::read(s.p("f")).unwrap(), b"replaced");
    assert_eq!(tree_hash(&s.sentinel), before);
}
