//! Issue 5, moving images: `login`/`logout` against a registry with htpasswd auth,
//! `push` (exact bytes, skipped and mounted blobs), `save`/`load` in docker-archive,
//! oci-archive and oci-dir, interop with podman, and bad input that changes nothing.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::auth::start_auth_registry;
use crate::images::{self, fixtures};
use crate::registry;
use crate::require;
use crate::support::{assert_error, inspect_one, pull, snapshot};
use crate::util::{Output, TestEnv};

/// A repository name no other test run uses, so pushes start from an empty repo.
fn fresh_repo(what: &str) -> String {
    let n = hex::encode(rand_bytes());
    format!("pushed-{}-{n}/{what}", std::process::id())
}

fn rand_bytes() -> [u8; 4] {
    let mut b = [0u8; 4];
    // SAFETY: getrandom writes at most b.len() bytes into our buffer.
    unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    b
}

fn auth_file(env: &TestEnv) -> PathBuf {
    env.runtime_dir.join("containers").join("auth.json")
}

#[test]
fn login_checks_credentials_and_logout_removes_them() {
    let reg = require!(start_auth_registry());
    let env = TestEnv::rootless();
    let file = auth_file(&env);
    let image = format!("{}/{}:latest", reg.addr, fixtures().busybox.repo);

    // Wrong password: one-line error, exit 125, no file written.
    let out = env.run(&["login", &reg.addr, "-u", "alice", "-p", "wrong"]);
    assert_error(&out, 125, &[&reg.addr, "invalid username/password"]);
    assert!(!file.exists(), "a failed login wrote {}", file.display());

    // Right password: saved in $XDG_RUNTIME_DIR/containers/auth.json, mode 0600.
    let out = env.run(&["login", &reg.addr, "-u", "alice", "-p", "s3cret"]);
    out.success();
    assert_eq!(out.stdout_trim(), "Login Succeeded!");
    let mode = fs::metadata(&file).expect("auth.json").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "auth.json mode");
    let doc: serde_json::Value =
        serde_json::from_slice(&fs::read(&file).expect("read auth.json")).expect("json");
    assert!(doc["auths"][&reg.addr]["auth"].is_string(), "{doc}");
    // The saved credentials work for pulls.
    assert_eq!(pull(&env, &image), fixtures().busybox.id);

    // A later wrong login leaves the file as it was.
    let before = fs::read(&file).expect("auth.json");
    let out = env
        .cmd(&["login", &reg.addr, "-u", "alice", "--password-stdin"])
        .stdin("nope\n")
        .output();
    assert_error(&out, 125, &["invalid username/password"]);
    assert_eq!(fs::read(&file).expect("auth.json"), before);

    // --password-stdin and --authfile.
    let other = env.work.join("other-auth.json");
    let out = env
        .cmd(&["login", "--authfile"])
        .arg(&other)
        .args(&[&reg.addr, "-u", "alice", "--password-stdin"])
        .stdin("s3cret\n")
        .output();
    out.success();
    assert!(fs::read_to_string(&other)
        .expect("other auth file")
        .contains(&reg.addr));

    // logout removes the entry; a second logout says it was not logged in.
    let out = env.run(&["logout", &reg.addr]);
    out.success();
    assert!(out.stdout_str().contains(&reg.addr), "{}", out.describe());
    let doc: serde_json::Value =
        serde_json::from_slice(&fs::read(&file).expect("read auth.json")).expect("json");
    assert!(doc["auths"].get(&reg.addr).is_none(), "{doc}");
    let out = env.run(&["logout", &reg.addr]);
    assert_error(&out, 125, &["not logged into", &reg.addr]);
    // Without credentials the pull is refused again.
    env.run(&["rmi", &image]).success();
    assert_error(
        &env.run(&["pull", "-q", &image]),
        125,
        &["authentication required"],
    );

    // logout --all empties the other file.
    env.cmd(&["logout", "--all", "--authfile"])
        .arg(&other)
        .output()
        .success();
    assert!(!fs::read_to_string(&other)
        .expect("other auth file")
        .contains(&reg.addr));
}

#[test]
fn push_needs_login_on_a_registry_with_auth() {
    let reg = require!(start_auth_registry());
    let env = TestEnv::rootless();
    let fx = fixtures();
    pull(&env, &fx.busybox.reference);
    let dest = format!("{}/{}:1", reg.addr, fresh_repo("bb"));
    let out = env.run(&["push", &fx.busybox.reference, &dest]);
    assert_error(&out, 125, &["authentication required"]);
    env.run(&["login", &reg.addr, "-u", "alice", "-p", "s3cret"])
        .success();
    env.run(&["push", &fx.busybox.reference, &dest]).success();
    // It is there: a fresh env with the same credentials pulls the same image.
    let other = TestEnv::rootless();
    other
        .run(&["login", &reg.addr, "-u", "alice", "-p", "s3cret"])
        .success();
    assert_eq!(pull(&other, &dest), fx.busybox.id);
}

#[test]
fn push_sends_the_same_bytes_and_skips_what_is_there() {
    let fx = require!(images::try_fixtures());
    let env = TestEnv::rootless();
    // layered has gzip, zstd and uncompressed layers: the compressed ones arrive as they
    // are, the uncompressed one gzipped (as podman pushes it), the config unchanged.
    pull(&env, &fx.layered.reference);
    let repo = fresh_repo("layered");
    let dest = format!("{}/{repo}:v1", env.registry());
    env.run(&["tag", &fx.layered.reference, &dest]).success();
    let out = env.cmd(&["--log-level", "debug", "push", &dest]).output();
    out.success();
    let err = out.stderr_str();
    assert!(
        err.contains("Writing manifest to image destination"),
        "{}",
        out.describe()
    );
    // The layers came from skiff-test/layered on the same registry: mounted, not sent.
    assert!(err.contains("mounted blob"), "{}", out.describe());

    let m = registry::get_manifest(&repo, "v1").expect("manifest");
    assert_eq!(m.status, 200);
    let pushed_digest = registry::digest(&m.body);
    let manifest: serde_json::Value = serde_json::from_slice(&m.body).expect("manifest json");
    let src = registry::get_manifest(&fx.layered.repo, &fx.layered.tag).expect("source");
    let src: serde_json::Value = serde_json::from_slice(&src.body).expect("manifest json");
    assert_eq!(manifest["config"], src["config"]);
    let src_layers = src["layers"].as_array().expect("layers");
    for (l, s) in manifest["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .zip(src_layers)
    {
        if s["mediaType"] == "application/vnd.oci.image.layer.v1.tar" {
            assert_eq!(
                l["mediaType"],
                "application/vnd.oci.image.layer.v1.tar+gzip"
            );
            assert_ne!(l["digest"], s["digest"]);
        } else {
            assert_eq!(l, s);
        }
        let d = l["digest"].as_str().expect("digest");
        assert!(
            registry::blob_exists(&repo, d).expect("HEAD"),
            "{d} missing"
        );
    }

    // Pushing again sends nothing: every blob is skipped.
    let out = env.run(&["push", &dest]);
    out.success();
    let skipped = out.stderr_str().matches("skipped: already exists").count();
    assert_eq!(skipped, fx.layered.layers, "{}", out.describe());

    // A fresh store pulls it back with the same ID and the pushed manifest digest.
    let other = TestEnv::rootless();
    assert_eq!(pull(&other, &dest), fx.layered.id);
    let info = inspect_one(&other, &[&dest]);
    assert_eq!(info["Digest"], pushed_digest, "{info}");
    let keep = other.run(&["run", "--rm", &dest, "cat", "/opt/app/keep"]);
    keep.success();
    assert_eq!(keep.stdout_trim(), "v3");
}

/// Saves `image` from `from` as `format` and loads it into a fresh env; returns that env
/// and the load output.
fn round_trip(from: &TestEnv, image: &str, format: &str) -> (TestEnv, Output) {
    let name = if format == "oci-dir" {
        "dir"
    } else {
        "img.tar"
    };
    let path = from.work.join(format!("{format}-{name}"));
    let out = from
        .cmd(&["save", "--format", format, "-o"])
        .arg(&path)
        .arg(image)
        .output();
    out.success();
    assert!(path.exists(), "{}", out.describe());
    let to = TestEnv::rootless();
    let out = to.cmd(&["load", "-i"]).arg(&path).output();
    (to, out)
}

#[test]
fn save_and_load_round_trip_in_every_format() {
    let fx = require!(images::try_fixtures());
    let env = TestEnv::rootless();
    pull(&env, &fx.layered.reference);
    for format in ["docker-archive", "oci-archive", "oci-dir"] {
        let (to, out) = round_trip(&env, &fx.layered.reference, format);
        out.success();
        assert_eq!(
            out.stdout_trim(),
            format!("Loaded image: {}", fx.layered.reference),
            "{format}\n{}",
            out.describe()
        );
        let info = inspect_one(&to, &[&fx.layered.reference]);
        assert_eq!(info["Id"], fx.layered.id, "{format}: {info}");
        if format != "docker-archive" {
            // OCI layouts carry the stored manifest: same digest.
            assert_eq!(
                info["Digest"], fx.layered.manifest_digest,
                "{format}: {info}"
            );
        }
        let keep = to.run(&[
            "run",
            "--rm",
            &fx.layered.reference,
            "sh",
            "-c",
            "cat /opt/app/keep /opt/layer2 /opt/layer3; test ! -e /bin/vi",
        ]);
        keep.success();
        assert_eq!(keep.stdout_str(), "v323", "{format}");
    }

    // docker-archive through stdout and stdin, as `save > f; load < f` does.
    let out = env.run(&["save", &fx.busybox.reference.replace(":latest", "")]);
    assert_error(&out, 125, &["not known"]);
    pull(&env, &fx.busybox.reference);
    let out = env.run(&["save", &fx.busybox.reference]);
    out.success();
    assert!(
        out.stdout.len() > 100_000,
        "save wrote {} bytes",
        out.stdout.len()
    );
    let to = TestEnv::rootless();
    let loaded = to.cmd(&["load"]).stdin(out.stdout.clone()).output();
    loaded.success();
    assert_eq!(pull_free_id(&to, &fx.busybox.reference), fx.busybox.id);

    // Saving by ID records no name; loading it gives an unnamed image.
    let path = env.work.join("by-id.tar");
    env.cmd(&["save", "-o"])
        .arg(&path)
        .arg(&fx.busybox.id[..12])
        .output()
        .success();
    let to = TestEnv::rootless();
    let out = to.cmd(&["load", "-i"]).arg(&path).output();
    out.success();
    assert_eq!(
        out.stdout_trim(),
        format!("Loaded image: sha256:{}", fx.busybox.id)
    );
}

fn pull_free_id(env: &TestEnv, image: &str) -> String {
    inspect_one(env, &[image])["Id"]
        .as_str()
        .expect("Id")
        .to_string()
}

/// A private rootful podman (vfs storage, runc), or why there is none.
struct Podman {
    dir: tempfile::TempDir,
}

impl Podman {
    fn new() -> Result<Podman, String> {
        if !Path::new("/usr/bin/podman").exists() {
            return Err("no podman (Debian package podman)".into());
        }
        if !crate::util::is_root() {
            return Err(
                "the podman interop test runs podman rootful: run the tests as root".into(),
            );
        }
        if !Path::new("/usr/sbin/runc").exists() && !Path::new("/usr/bin/runc").exists() {
            return Err("no runc (Debian package runc)".into());
        }
        let dir = tempfile::Builder::new()
            .prefix(&crate::util::it_prefix("t"))
            .tempdir_in(crate::util::it_root())
            .map_err(|e| e.to_string())?;
        Ok(Podman { dir })
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        let d = self.dir.path();
        let out = Command::new("podman")
            .arg("--root")
            .arg(d.join("root"))
            .arg("--runroot")
            .arg(d.join("runroot"))
            .args(["--storage-driver", "vfs", "--runtime", "runc"])
            .args(args)
            .output()
            .expect("run podman");
        assert!(
            out.status.success(),
            "podman {args:?}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn image_id(&self, image: &str) -> String {
        let out = self.run(&["image", "inspect", "--format", "{{.Id}}", image]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

#[test]
fn archives_move_between_skiff_and_podman() {
    let fx = require!(images::try_fixtures());
    let podman = require!(Podman::new());
    let env = TestEnv::rootless();
    // Two gzip layers (podman cannot write zstd layers into a docker-archive).
    let image = &fx.big_ids.reference;

    // podman's archives load into skiff with the same image ID.
    podman.run(&["pull", "-q", "--tls-verify=false", image]);
    for format in ["docker-archive", "oci-archive"] {
        let path = env.work.join(format!("podman-{format}.tar"));
        podman.run(&[
            "save",
            "--format",
            format,
            "-o",
            path.to_str().expect("utf-8"),
            image,
        ]);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        let to = TestEnv::rootless();
        let out = to.cmd(&["load", "-i"]).arg(&path).output();
        out.success();
        assert_eq!(pull_free_id(&to, image), fx.big_ids.id, "{format}");
        let data = to.run(&[
            "run",
            "--rm",
            image,
            "stat",
            "-c",
            "%u %s",
            images::BIG_IDS_FILE,
        ]);
        data.success();
        assert_eq!(data.stdout_trim(), "1000 5", "{format}");
    }

    // skiff's archives load into podman with the same image ID.
    pull(&env, image);
    for format in ["docker-archive", "oci-archive"] {
        let path = env.work.join(format!("skiff-{format}.tar"));
        env.cmd(&["save", "--format", format, "-o"])
            .arg(&path)
            .arg(image)
            .output()
            .success();
        podman.run(&["rmi", "-a", "-f"]);
        podman.run(&["load", "-i", path.to_str().expect("utf-8")]);
        assert_eq!(podman.image_id(image), fx.big_ids.id, "{format}");
    }
}

#[test]
fn bad_archives_and_inputs_change_nothing() {
    let fx = require!(images::try_fixtures());
    let env = TestEnv::rootless();
    pull(&env, &fx.busybox.reference);
    let work = &env.work;
    let fails = |args: &[&str], needles: &[&str]| {
        let before = snapshot(&env);
        let out = env.run(args);
        assert_error(&out, 125, needles);
        assert_eq!(snapshot(&env), before, "the store changed: {}", out.cmdline);
        let tmp = env.root_dir.join("tmp");
        assert!(
            crate::support::listing(&tmp).is_empty(),
            "tmp left behind: {:?}",
            crate::support::listing(&tmp)
        );
    };
    let file = |name: &str, data: &[u8]| -> String {
        let p = work.join(name);
        fs::write(&p, data).expect("write");
        env.give(&p);
        p.to_str().expect("utf-8").to_string()
    };

    // A tar that holds no image.
    let mut t = images::LayerTar::new();
    t.file("hello.txt", 0o644, 0, 0, b"not an image\n");
    let not_image = file("not-image.tar", &t.finish());
    fails(&["load", "-i", &not_image], &["not an image archive"]);
    // Not a tar at all.
    let junk = file("junk.tar", &b"garbage that is no tar at all\n".repeat(100));
    fails(&["load", "-i", &junk], &["junk.tar"]);
    // A real archive cut in half.
    let full = work.join("full.tar");
    env.cmd(&["save", "-o"])
        .arg(&full)
        .arg(&fx.busybox.reference)
        .output()
        .success();
    let bytes = fs::read(&full).expect("read archive");
    let cut = file("cut.tar", &bytes[..bytes.len() / 2]);
    // Fresh env: nothing is shared with the store, so a half load would show.
    let other = TestEnv::rootless();
    let before = snapshot(&other);
    let out = other.run(&["load", "-i", &cut]);
    assert_error(&out, 125, &["cut.tar"]);
    assert_eq!(snapshot(&other), before);
    // An OCI layout whose layer blob was tampered with.
    let dir = work.join("tampered");
    env.cmd(&["save", "--format", "oci-dir", "-o"])
        .arg(&dir)
        .arg(&fx.busybox.reference)
        .output()
        .success();
    let blobs = dir.join("blobs/sha256");
    let biggest = crate::support::listing(&blobs)
        .into_iter()
        .max_by_key(|b| fs::metadata(blobs.join(b)).map(|m| m.len()).unwrap_or(0))
        .expect("a blob");
    let p = blobs.join(&biggest);
    let mut data = fs::read(&p).expect("read blob");
    let mid = data.len() / 2;
    data[mid] ^= 0xff;
    fs::write(&p, data).expect("write blob");
    let out = other.cmd(&["load", "-i"]).arg(&dir).output();
    assert_error(&out, 125, &["does not match its digest"]);
    assert_eq!(snapshot(&other), before);
    // A missing input file and a missing image.
    fails(
        &["load", "-i", "/nonexistent/archive.tar"],
        &["/nonexistent/archive.tar"],
    );
    let out_path = work.join("never.tar");
    fails(
        &[
            "save",
            "-o",
            out_path.to_str().expect("utf-8"),
            "no-such-image-here",
        ],
        &["no-such-image-here"],
    );
    assert!(
        !out_path.exists(),
        "a failed save left {}",
        out_path.display()
    );
    fails(
        &[
            "save",
            "--format",
            "docker-dir",
            "-o",
            "x",
            &fx.busybox.reference,
        ],
        &["docker-dir"],
    );
    // Push of a missing image; push to a registry that is not there.
    fails(
        &["push", "no-such-image-here", "127.0.0.1:1/x/y:1"],
        &["no-such-image-here"],
    );
    fails(
        &["push", &fx.busybox.reference, "127.0.0.1:1/x/y:1"],
        &["127.0.0.1:1"],
    );
}
