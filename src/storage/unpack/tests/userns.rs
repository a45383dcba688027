//! The real deployment: unpacking inside a user namespace with a single-ID
//! mapping (`0 <uid> 1`), where whiteouts work, devices do not and any other
//! owner is unmapped. The test binary re-runs itself under `unshare -r`
//! because a multi-threaded test process cannot enter a user namespace.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::process::Command;

use tar::EntryType;

use super::super::{OverlayXattrs, UnpackError, UnpackOptions};
use super::{get_xattr, header, Scratch, Tar};

const INNER_ENV: &str = "SKIFF_UNPACK_TEST_IN_USERNS";

#[test]
fn in_single_id_user_namespace() {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("unshare")
        .args(["--user", "--map-root-user", "--"])
        .arg(exe)
        .args([
            "storage::unpack::tests::userns::inner",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(INNER_ENV, "1")
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            eprintln!("skipping: cannot run unshare: {e}");
            return;
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && stderr.contains("unshare failed") {
        eprintln!("skipping: user namespaces unavailable: {stderr}");
        return;
    }
    assert!(
        out.status.success(),
        "inner test failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("1 passed"),
        "inner test did not run:\n{stdout}\n{stderr}"
    );
}

#[test]
#[ignore = "run by in_single_id_user_namespace inside `unshare -r`"]
fn inner() {
    if std::env::var_os(INNER_ENV).is_none() {
        return;
    }
    assert_eq!(
        nix::unistd::geteuid().as_raw(),
        0,
        "not root in the namespace"
    );
    let uid_map = fs::read_to_string("/proc/self/uid_map").unwrap();
    assert_eq!(uid_map.lines().count(), 1, "{uid_map}");

    // Whiteouts and opaque dirs in the user.* namespace; devices skipped.
    let s = Scratch::new();
    let tar = Tar::new()
        .dir("etc", 0o755)
        .file("etc/old", b"x", 0o644)
        .file("etc/.wh.old", b"", 0o644)
        .file("etc/.wh.lower", b"", 0o644)
        .file("etc/.wh..wh..opq", b"", 0o644)
        .node("dev/null", EntryType::Char, 1, 3)
        .pax(&[
            (
                "SCHILY.xattr.security.capability",
                b"\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
            ),
            ("SCHILY.xattr.trusted.x", b"1"),
        ])
        .file("bin/ping", b"elf", 0o4755)
        .build();
    let opts = UnpackOptions {
        xattrs: OverlayXattrs::User,
        ..UnpackOptions::default()
    };
    let sum = s.unpack_with(&tar, &opts).unwrap();
    for p in ["etc/old", "etc/lower"] {
        let m = fs::symlink_metadata(s.p(p)).unwrap();
        assert!(m.file_type().is_char_device() && m.rdev() == 0, "{p}");
    }
    assert_eq!(
        get_xattr(&s.p("etc"), "user.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert_eq!(sum.skipped.len(), 1, "{:?}", sum.skipped);
    assert_eq!(sum.skipped[0].path, "dev/null");
    assert!(!s.p("dev/null").exists());
    assert_eq!(
        fs::metadata(s.p("bin/ping")).unwrap().mode() & 0o7777,
        0o4755
    );
    assert!(get_xattr(&s.p("bin/ping"), "security.capability").is_some());
    assert_eq!(get_xattr(&s.p("bin/ping"), "trusted.x"), None);

    // An owner outside the mapping is a clear, actionable error.
    let s = Scratch::new();
    let mut h = header(EntryType::Regular, 0o644, 0);
    h.set_uid(1000);
    h.set_gid(1000);
    let err = s
        .unpack(&Tar::new().file_h("home/user/f", b"x", h).build())
        .unwrap_err();
    assert!(
        matches!(
            err,
            UnpackError::UnmappedId {
                uid: 1000,
                gid: 1000,
                ..
            }
        ),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("UID 1000") && msg.contains("usermod --add-subuids"),
        "{msg}"
    );
    assert!(
        msg.contains("home/user/f") && msg.contains("/etc/subuid"),
        "{msg}"
    );

    // trusted.* is refused in a user namespace, so the opaque marker must be
    // an error there, not a silent loss.
    let s = Scratch::new();
    let trusted = UnpackOptions {
        xattrs: OverlayXattrs::Trusted,
        ..UnpackOptions::default()
    };
    let err = s.unpack_with(
        &Tar::new().file("d/.wh..wh..opq", b"", 0o644).build(),
        &trusted,
    );
    assert!(matches!(err, Err(UnpackError::Fs { .. })), "{err:?}");
}
