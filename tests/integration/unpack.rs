//! Issue 2, layer unpack: whiteouts, opaque dirs, type changes, owners and modes
//! through the user-namespace mapping, hardlinks, symlinks, xattrs, gzip + zstd +
//! uncompressed layers, 60 layers, multi-arch indexes, hostile layers, and rootless
//! without subordinate IDs.

use std::fs;
use std::os::unix::fs::MetadataExt;

use crate::images::{self, Image, BIG_IDS_FILE};
use crate::require;
use crate::support::{
    assert_error, inspect_one, layer_dir_with, lgetxattr, listing, pull, run_sh, snapshot, store,
    subid_start,
};
use crate::util::{Mode, TestEnv};

/// One line per path under /opt: `type mode uid:gid inode-links name [content]`.
const SURVEY: &str = r#"cd /opt && for p in $(find . | sort); do
  if [ -L "$p" ]; then echo "$p L $(readlink "$p")";
  elif [ -d "$p" ]; then echo "$p D $(stat -c '%a %u:%g' "$p")";
  else echo "$p F $(stat -c '%a %u:%g %h' "$p") $(cat "$p" | head -c 20 | tr '\n' ' ')"; fi
done
echo "hard: $(stat -c %i hard-a) $(stat -c %i hard-b)"
echo "link: $(cat link)"
if [ -e /bin/vi ]; then echo "vi: present"; else echo "vi: gone"; fi
echo "sh: $(readlink /bin/sh)"
echo "mtimes: $(stat -c %Y app/keep hard-a owned owned/by-1000 link setuid xdir/lower | sort -u)"
"#;

/// The exact /opt tree the docs of `images::layered_layers` promise.
const EXPECTED: &str = "\
. D 755 0:0
./app D 755 0:0
./app/keep F 644 0:0 1 v3
./dir2file F 644 0:0 1 now a file
./hard-a F 644 0:0 2 hard
./hard-b F 644 0:0 2 hard
./layer2 F 644 0:0 1 2
./layer3 F 644 0:0 1 3
./link L app/keep
./opaque D 755 0:0
./opaque/new F 644 0:0 1 new
./owned D 755 0:0
./owned/by-1000 F 644 1000:1000 1 1000
./owned/by-nobody F 600 65534:65534 1 nobody
./owned/dir-1000 D 755 1000:1000
./replace D 755 0:0
./replace/inside F 644 0:0 1 inside
./setuid F 4755 0:0 1 #!/bin/sh id -u 
./xattr F 644 0:0 1 xattr
./xdir D 755 0:0
./xdir/lower F 644 0:0 1 lower
link: v3
vi: gone
sh: busybox
mtimes: 1700000000
";

/// Run the survey in the layered image and compare it line by line.
fn check_layered(env: &TestEnv) {
    let fx = images::fixtures();
    let out = run_sh(env, &[], &fx.layered.reference, SURVEY);
    let mut got: Vec<&str> = out.lines().collect();
    let hard = got
        .iter()
        .position(|l| l.starts_with("hard: "))
        .map(|i| got.remove(i))
        .unwrap_or_default();
    let inodes: Vec<&str> = hard.split_whitespace().skip(1).collect();
    assert!(
        inodes.len() == 2 && inodes[0] == inodes[1],
        "hard-a and hard-b must be one inode: {hard:?}"
    );
    let want: Vec<&str> = EXPECTED.lines().collect();
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g.trim_end(), w.trim_end(), "\nwhole survey:\n{out}");
    }
    assert_eq!(got.len(), want.len(), "\nwhole survey:\n{out}");

    // What the container wrote over a whiteout or opaque dir stays consistent.
    let out = run_sh(
        env,
        &[],
        &fx.layered.reference,
        "rm /opt/app/keep /opt/hard-a; echo new > /opt/opaque/old1; \
         ls /opt/app; cat /opt/hard-b; ls /opt/opaque",
    );
    assert_eq!(out, "hardnew\nold1\n");
}

/// Inspect's RootFS.Layers equals the config's diff_ids.
fn check_diff_ids(env: &TestEnv, image: &Image) {
    let config = crate::registry::get(
        &format!("{}/blobs/{}", image.repo, image.config_digest),
        None,
    )
    .expect("GET config");
    let config: serde_json::Value = serde_json::from_slice(&config.body).expect("config JSON");
    let img = inspect_one(env, &["--type", "image", &image.reference]);
    assert_eq!(img["Id"], image.id.as_str());
    assert_eq!(
        img["RootFS"]["Layers"], config["rootfs"]["diff_ids"],
        "{img}"
    );
}

#[test]
fn layered_image_unpacks_exactly_as_documented_rootless() {
    let fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootless());
    let out = env.run(&["pull", &fx.layered.reference]);
    assert_eq!(out.success().stdout_trim(), fx.layered.id);
    check_diff_ids(&env, &fx.layered);
    // The layers really are gzip, zstd and plain tar.
    let m = crate::registry::get_manifest(&fx.layered.repo, "latest").expect("manifest");
    let m: serde_json::Value = serde_json::from_slice(&m.body).expect("manifest JSON");
    let types: Vec<&str> = m["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .filter_map(|l| l["mediaType"].as_str())
        .collect();
    assert_eq!(
        types,
        [
            images::MT_GZIP,
            images::MT_GZIP,
            images::MT_ZSTD,
            images::MT_TAR
        ]
    );
    check_layered(&env);

    // Host side: the xattr from the tar header is kept, the smuggled overlay opaque
    // xattrs are dropped, and ownership is the mapped subordinate ID.
    let l3 = layer_dir_with(&env, "opt/layer3").expect("layer 3 dir");
    assert_eq!(
        lgetxattr(&l3.join("opt/xattr"), "user.skiff").as_deref(),
        Some(&b"hello"[..]),
        "user.skiff xattr on {}",
        l3.display()
    );
    for x in ["user.overlay.opaque", "trusted.overlay.opaque"] {
        assert_eq!(
            lgetxattr(&l3.join("opt/xdir"), x),
            None,
            "{x} from the tar header must be dropped"
        );
    }
    let l1 = layer_dir_with(&env, "opt/owned/by-1000").expect("layer 1 dir");
    let u = env.user.as_ref().expect("user");
    let start = subid_start("/etc/subuid", &u.name, u.uid).expect("subuid");
    let gstart = subid_start("/etc/subgid", &u.name, u.uid).expect("subgid");
    let m = fs::symlink_metadata(l1.join("opt/owned/by-1000")).expect("by-1000");
    assert_eq!((m.uid(), m.gid()), (start + 999, gstart + 999));
    let m = fs::symlink_metadata(l1.join("opt/owned/by-nobody")).expect("by-nobody");
    assert_eq!((m.uid(), m.mode() & 0o7777), (start + 65533, 0o600));
    let m = fs::symlink_metadata(l1.join("opt/setuid")).expect("setuid");
    assert_eq!((m.uid(), m.mode() & 0o7777), (u.uid, 0o4755));
    // Inside `skiff unshare` the image's own IDs show.
    let out = env.run(&[
        "unshare",
        "ls",
        "-ln",
        l1.join("opt/owned").to_str().expect("utf8"),
    ]);
    let text = out.success().stdout_str();
    for (name, owner) in [
        ("by-1000", "1000"),
        ("by-nobody", "65534"),
        ("dir-1000", "1000"),
    ] {
        let line = text
            .lines()
            .find(|l| l.ends_with(name))
            .unwrap_or_else(|| panic!("{name} missing\n{}", out.describe()));
        assert_eq!(line.split_whitespace().nth(2), Some(owner), "{line}");
    }
}

#[test]
fn layered_image_unpacks_exactly_as_documented_rootful() {
    let fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootful());
    assert_eq!(env.mode, Mode::Rootful);
    pull(&env, &fx.layered.reference);
    check_layered(&env);
    let l3 = layer_dir_with(&env, "opt/layer3").expect("layer 3 dir");
    assert_eq!(
        lgetxattr(&l3.join("opt/xattr"), "user.skiff").as_deref(),
        Some(&b"hello"[..])
    );
    assert_eq!(
        lgetxattr(&l3.join("opt/xdir"), "trusted.overlay.opaque"),
        None
    );
    let l1 = layer_dir_with(&env, "opt/owned/by-1000").expect("layer 1 dir");
    let m = fs::symlink_metadata(l1.join("opt/owned/by-nobody")).expect("by-nobody");
    assert_eq!((m.uid(), m.gid()), (65534, 65534));
}

#[test]
fn multiarch_index_picks_the_host_platform() {
    let fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootless());
    let id = pull(&env, &fx.multiarch.reference);
    assert_eq!(id, fx.multiarch.id, "the {} manifest", images::host_arch());
    let out = env.run(&["run", "--rm", &fx.multiarch.reference, "cat", "/arch"]);
    assert_eq!(
        out.success().stdout_str(),
        format!("{}\n", images::host_arch())
    );
    let img = inspect_one(&env, &[&fx.multiarch.reference]);
    assert_eq!(img["Architecture"], images::host_arch(), "{img}");
    assert_eq!(img["Os"], "linux");
}

#[test]
fn sixty_layers_stack_and_run() {
    let fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootless());
    pull(&env, &fx.many_layers.reference);
    check_diff_ids(&env, &fx.many_layers);
    assert_eq!(listing(&store(&env).join("layers")).len(), 60);
    let out = run_sh(
        &env,
        &[],
        &fx.many_layers.reference,
        "ls /layers | wc -l; for i in $(seq 1 59); do printf '%s ' $(cat /layers/$i); done",
    );
    let want: Vec<String> = (1..60).map(|n| n.to_string()).collect();
    assert_eq!(out, format!("59\n{} ", want.join(" ")));
    // A second container on the same 60 layers, writing to its upper dir.
    let out = run_sh(
        &env,
        &[],
        &fx.many_layers.reference,
        "echo 60 > /layers/60 && cat /layers/60 /layers/30",
    );
    assert_eq!(out, "60\n30");
}

#[test]
fn hostile_layers_are_rejected_and_write_nothing_outside() {
    let fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootless());
    pull(&env, &fx.busybox.reference);
    let passwd_links = fs::metadata("/etc/passwd").expect("/etc/passwd").nlink();
    let before = snapshot(&env);
    for h in fx.hostile() {
        let out = env.run(&["pull", &h.image.reference]);
        // The error names the unsafe entry.
        let needle = match h.case {
            "dotdot" | "abs" => h.escape.file_name().expect("name").to_str().expect("utf8"),
            "symlink" => "evil",
            _ => "passwd-link",
        };
        assert_error(&out, 125, &[needle, "unsafe"]);
        if h.case.starts_with("hardlink") {
            assert_eq!(
                fs::metadata("/etc/passwd").expect("/etc/passwd").nlink(),
                passwd_links,
                "{}: /etc/passwd got a new link",
                h.case
            );
        } else {
            assert!(
                fs::symlink_metadata(&h.escape).is_err(),
                "{}: {} was written",
                h.case,
                h.escape.display()
            );
        }
        assert_eq!(snapshot(&env), before, "{}: the store changed", h.case);
        // Running it pulls it again, and fails the same way.
        let out = env.run(&["run", "--rm", &h.image.reference, "true"]);
        assert_error(&out, 125, &[needle]);
        assert_eq!(snapshot(&env), before, "{}: the store changed", h.case);
    }
}

#[test]
fn hostile_layers_are_rejected_rootful() {
    let fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootful());
    pull(&env, &fx.busybox.reference);
    let passwd_links = fs::metadata("/etc/passwd").expect("/etc/passwd").nlink();
    let before = snapshot(&env);
    for h in fx.hostile() {
        let out = env.run(&["pull", &h.image.reference]);
        assert_error(&out, 125, &["unsafe"]);
        assert!(h.case.starts_with("hardlink") || fs::symlink_metadata(&h.escape).is_err());
        assert_eq!(
            fs::metadata("/etc/passwd").expect("passwd").nlink(),
            passwd_links
        );
        assert_eq!(snapshot(&env), before, "{}: the store changed", h.case);
    }
}

#[test]
fn without_subordinate_ids_root_only_images_run_with_a_warning() {
    let fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootless_no_subids());
    let out = env.run(&[
        "run",
        "--rm",
        &fx.rootonly.reference,
        "sh",
        "-c",
        "id -u; cat /proc/self/uid_map",
    ]);
    out.success();
    let text = out.stdout_str();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "0", "{}", out.describe());
    let u = env.user.as_ref().expect("user");
    let map: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        map,
        ["0", u.uid.to_string().as_str(), "1"],
        "{}",
        out.describe()
    );
    assert_eq!(lines.len(), 2, "a single-ID mapping: {}", out.describe());
    let err = out.stderr_str();
    assert!(
        err.contains("subordinate") && err.contains("/etc/subuid") && err.contains("single"),
        "a warning about the single-ID mapping\n{}",
        out.describe()
    );
    assert!(
        !err.contains('\x1b'),
        "no colour codes when stderr is not a terminal\n{err}"
    );
    // The same run again does not need the registry's layers again.
    let out = env.run(&["run", "--rm", &fx.rootonly.reference, "echo", "again"]);
    assert_eq!(out.success().stdout_str(), "again\n");
}

#[test]
fn without_subordinate_ids_an_image_needing_more_ids_fails_naming_the_file() {
    let fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootless_no_subids());
    let out = env.run(&["pull", &fx.rootonly.reference]);
    out.success();
    let before = snapshot(&env);
    let file = BIG_IDS_FILE.trim_start_matches('/');
    for args in [
        vec!["pull", fx.big_ids.reference.as_str()],
        vec!["run", "--rm", fx.big_ids.reference.as_str(), "true"],
    ] {
        let out = env.run(&args);
        assert_error(&out, 125, &[file, "1000", "subordinate", "usermod"]);
        assert_eq!(snapshot(&env), before, "the store changed");
    }
    // busybox has /home/tester owned by 1000: the same, naming that directory.
    let out = env.run(&["pull", &fx.busybox.reference]);
    assert_error(&out, 125, &["home/tester", "subordinate"]);
}
