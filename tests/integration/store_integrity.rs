//! Issue 5, a store that heals: image prune, rmi -f, system df/prune/check/reset,
//! parallel pulls sharing a layer, pulls killed with SIGKILL at many points, and rmi
//! racing run. Everything runs as the unprivileged test user with real processes.

use std::fs;
use std::process::Stdio;
use std::time::Duration;

use crate::images::{self, LayerTar};
use crate::require;
use crate::support::{assert_error, listing, pull, snapshot, store};
use crate::util::TestEnv;

fn setup() -> Result<(TestEnv, String), String> {
    let fx = images::try_fixtures()?;
    let env = TestEnv::try_rootless()?;
    pull(&env, &fx.busybox.reference);
    Ok((env, fx.busybox.reference.clone()))
}

/// Incompressible bytes (xorshift), so a layer's size survives gzip.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A gzip layer holding one file of `len` random bytes.
fn big_layer(name: &str, len: usize, seed: u64) -> images::Blob {
    let mut t = LayerTar::new();
    t.dir("data", 0o755, 0, 0)
        .file(&format!("data/{name}"), 0o644, 0, 0, &noise(len, seed));
    images::gzip(t.finish())
}

fn small_layer(name: &str) -> images::Blob {
    let mut t = LayerTar::new();
    t.file(name, 0o644, 0, 0, name.as_bytes());
    images::gzip(t.finish())
}

/// Lines of `system check` output, asserting its exit code is 0 or 1.
fn check(env: &TestEnv, repair: bool) -> (i32, String) {
    let out = if repair {
        env.run(&["system", "check", "--repair"])
    } else {
        env.run(&["system", "check"])
    };
    let code = out.code().unwrap_or(-1);
    assert!(code == 0 || code == 1, "{}", out.describe());
    (code, out.stdout_str())
}

#[test]
fn image_prune_and_rmi_force() {
    let (env, img) = require!(setup());
    // A dangling image: commit without a name.
    env.run(&["run", "--name", "c", &img, "touch", "/x"])
        .success();
    let dangling = env.run(&["commit", "-q", "c"]);
    let dangling = dangling.success().stdout_trim();
    // Named but unused.
    env.run(&["commit", "-q", "c", "unused:1"]).success();
    env.run(&["rm", "c"]).success();
    // Busybox is used by a container.
    env.run(&["create", "--name", "user", &img, "true"])
        .success();

    // No confirmation on a closed stdin means nothing is removed.
    let before = snapshot(&env);
    env.cmd(&["image", "prune"]).stdin("n\n").output().success();
    assert_eq!(snapshot(&env), before);

    let out = env.run(&["image", "prune", "-f"]);
    assert_eq!(
        out.success().stdout_trim(),
        dangling,
        "only the dangling image goes"
    );
    let ids = env
        .run(&["images", "-q", "--no-trunc"])
        .success()
        .stdout_str();
    assert!(
        !ids.contains(&dangling) && ids.lines().count() == 2,
        "{ids}"
    );
    // Pruning again changes nothing.
    assert_eq!(
        env.run(&["image", "prune", "-f"]).success().stdout_trim(),
        ""
    );

    let out = env.run(&["image", "prune", "-a", "-f"]);
    assert_eq!(
        out.success().stdout_str().lines().count(),
        1,
        "unused:1 goes"
    );
    env.run(&["inspect", "--type", "image", &img]).success();

    // rmi without -f refuses an image in use; with -f it removes the container first.
    let out = env.run(&["rmi", &img]);
    assert_error(&out, 2, &["in use", "user"]);
    env.run(&["start", "user"]).success();
    env.run(&["rmi", "-f", &img]).success();
    assert_eq!(env.run(&["ps", "-a", "-q"]).success().stdout_trim(), "");
    assert_eq!(env.run(&["images", "-q"]).success().stdout_trim(), "");
    assert!(listing(&store(&env).join("layers")).is_empty());
    let (code, out) = check(&env, false);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn system_df_counts_and_system_prune() {
    let (env, img) = require!(setup());
    env.run(&[
        "run",
        "--name",
        "stopped",
        &img,
        "sh",
        "-c",
        "head -c 300000 /dev/zero > /blob",
    ])
    .success();
    env.run(&["volume", "create", "unused-vol"]).success();
    env.run(&[
        "run",
        "--rm",
        "-v",
        "unused-vol:/v",
        &img,
        "sh",
        "-c",
        "head -c 100000 /dev/zero > /v/f",
    ])
    .success();
    env.run(&[
        "run",
        "-d",
        "--name",
        "running",
        "-v",
        "used-vol:/v",
        &img,
        "sleep",
        "1000",
    ])
    .success();
    let out = env.run(&["system", "df", "--format", "json"]);
    let v = crate::support::json(&out);
    let row = |t: &str| {
        v.as_array()
            .unwrap()
            .iter()
            .find(|r| r["Type"] == t)
            .unwrap()
            .clone()
    };
    let (i, c, vol) = (row("Images"), row("Containers"), row("Local Volumes"));
    assert_eq!(
        (vol["Total"].as_i64(), vol["Active"].as_i64()),
        (Some(2), Some(1)),
        "{v}"
    );
    assert!(vol["RawReclaimable"].as_i64().unwrap() >= 100_000, "{v}");
    assert_eq!(
        (i["Total"].as_i64(), i["Active"].as_i64()),
        (Some(1), Some(1))
    );
    assert!(i["RawSize"].as_i64().unwrap() > 500_000, "{v}");
    assert_eq!(i["RawReclaimable"].as_i64(), Some(0));
    assert_eq!(
        (c["Total"].as_i64(), c["Active"].as_i64()),
        (Some(2), Some(1))
    );
    assert!(c["RawReclaimable"].as_i64().unwrap() >= 300_000, "{v}");
    let text = env.run(&["system", "df"]).success().stdout_str();
    for col in [
        "TYPE",
        "TOTAL",
        "ACTIVE",
        "SIZE",
        "RECLAIMABLE",
        "Images",
        "Containers",
        "Local Volumes",
    ] {
        assert!(text.contains(col), "{text}");
    }

    let out = env.run(&["system", "prune", "-f", "-a"]);
    let text = out.success().stdout_str();
    assert!(
        text.contains("Deleted Containers") && text.contains("Total reclaimed space"),
        "{text}"
    );
    let names = env.run(&["ps", "-a"]).success().stdout_str();
    assert!(
        !names.contains("stopped") && names.contains("running"),
        "{names}"
    );
    assert_eq!(
        env.run(&["images", "-q"])
            .success()
            .stdout_str()
            .lines()
            .count(),
        1,
        "the image of the running container stays"
    );
    let vols = env.run(&["volume", "ls", "-q"]).success().stdout_str();
    assert!(
        vols.contains("used-vol") && vols.contains("unused-vol"),
        "without --volumes: {vols}"
    );
    let out = env.run(&["system", "prune", "-f", "--volumes"]);
    assert!(
        out.success().stdout_str().contains("unused-vol"),
        "{}",
        out.describe()
    );
    let vols = env.run(&["volume", "ls", "-q"]).success().stdout_str();
    assert!(
        vols.contains("used-vol") && !vols.contains("unused-vol"),
        "{vols}"
    );
}

#[test]
fn system_check_finds_and_repairs_corruption() {
    let (env, img) = require!(setup());
    env.run(&["create", "--name", "keep", &img, "true"])
        .success();
    let (code, out) = check(&env, false);
    assert_eq!(code, 0, "a fresh store is clean: {out}");

    // Flip a byte of the layer blob and delete the unpacked layer directory.
    let root = store(&env);
    let manifest_digest = crate::support::inspect_one(&env, &["--type", "image", &img])["Digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let manifest: serde_json::Value = serde_json::from_slice(
        &fs::read(root.join("blobs/sha256").join(&manifest_digest)).unwrap(),
    )
    .unwrap();
    let layer_hex = manifest["layers"][0]["digest"].as_str().unwrap()[7..].to_string();
    let blob = root.join("blobs/sha256").join(&layer_hex);
    let mut bytes = fs::read(&blob).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(&blob, &bytes).unwrap();
    let layers = listing(&root.join("layers"));
    assert_eq!(layers.len(), 1);
    let layer_dir = root.join("layers").join(&layers[0]);
    env.cmd(&["unshare", "rm", "-rf"])
        .arg(&layer_dir)
        .output()
        .success();
    // A stray temp file of a writer that is gone.
    fs::write(root.join("tmp/blob-999999-dead"), b"partial").unwrap();

    let out = env.run(&["system", "check"]);
    out.assert_code(1);
    let text = out.stdout_str();
    assert!(
        text.contains(&layer_hex) && text.contains("corrupt"),
        "{text}"
    );
    assert!(
        text.contains(&layers[0]) && text.contains("missing"),
        "{text}"
    );
    assert!(text.contains("blob-999999-dead"), "{text}");
    assert!(out.stderr_str().contains("--repair"), "{}", out.describe());

    // Repair: the corrupt blob goes, the temp file goes; the layer cannot come back
    // from a corrupt blob, so the image needs a pull and the exit code says so.
    let (code, text) = check(&env, true);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("repaired:"), "{text}");
    assert!(text.contains("pull the image again"), "{text}");
    assert!(!root.join("tmp/blob-999999-dead").exists());
    env.run(&["pull", "-q", &img]).success();
    let (code, text) = check(&env, false);
    assert_eq!(code, 0, "a pull restores the blob and the layer: {text}");
    env.run(&["start", "-a", "keep"]).success();

    // A deleted layer dir with an intact blob is unpacked again by --repair.
    env.cmd(&["unshare", "rm", "-rf"])
        .arg(&layer_dir)
        .output()
        .success();
    let (code, _) = check(&env, false);
    assert_eq!(code, 1);
    let (code, text) = check(&env, true);
    assert_eq!(code, 0, "{text}");
    assert!(layer_dir.is_dir());
    env.run(&["start", "-a", "keep"]).success();
}

#[test]
fn system_reset_leaves_nothing() {
    let (env, img) = require!(setup());
    env.run(&["run", "-d", "--name", "r", &img, "sleep", "1000"])
        .success();
    env.run(&[
        "run",
        "--name",
        "s",
        &img,
        "sh",
        "-c",
        "mkdir -p /a/b && chmod 700 /a",
    ])
    .success();
    env.run(&["system", "reset", "-f"]).success();
    let root = store(&env);
    assert!(listing(&root).is_empty(), "{:?}", listing(&root));
    assert!(listing(&env.runtime_dir.join("skiff")).is_empty());
    assert_eq!(env.run(&["ps", "-a", "-q"]).success().stdout_trim(), "");
    assert_eq!(env.run(&["images", "-q"]).success().stdout_trim(), "");
    // The store works again afterwards.
    pull(&env, &img);
}

#[test]
fn parallel_pulls_sharing_a_layer_fetch_it_once() {
    let env = require!(TestEnv::try_rootless());
    let reg = require!(crate::registry::try_registry());
    let shared = big_layer("shared", 24 << 20, 7);
    let (a, b) = (small_layer("only-a"), small_layer("only-b"));
    let arch = images::host_arch();
    let (ia, _) = images::push_image("store/par-a", "1", &[&shared, &a], arch).unwrap();
    let (ib, _) = images::push_image("store/par-b", "1", &[&shared, &b], arch).unwrap();
    let _ = reg;
    let spawn = |r: &str| {
        env.cmd(&["pull", r])
            .timeout(Duration::from_secs(300))
            .into_command()
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (pa, pb) = (spawn(&ia.reference), spawn(&ib.reference));
    let (oa, ob) = (
        pa.wait_with_output().unwrap(),
        pb.wait_with_output().unwrap(),
    );
    assert!(oa.status.success() && ob.status.success(), "{oa:?}\n{ob:?}");
    let logs = format!(
        "{}{}",
        String::from_utf8_lossy(&oa.stderr),
        String::from_utf8_lossy(&ob.stderr)
    );
    let short = &shared_digest(&shared)[7..19];
    let fetched = logs
        .lines()
        .filter(|l| l.contains(short) && l.ends_with("done"))
        .count();
    assert_eq!(fetched, 1, "the shared layer is fetched once:\n{logs}");
    assert_eq!(listing(&store(&env).join("layers")).len(), 3);
    let (code, text) = check(&env, false);
    assert_eq!(code, 0, "{text}");
    for r in [&ia.reference, &ib.reference] {
        let out = env.run(&["run", "--rm", r, "true"]);
        // No shell in these images: exit 127 proves the rootfs assembled.
        assert!(
            out.code() == Some(127) || out.code() == Some(0),
            "{}",
            out.describe()
        );
    }
}

fn shared_digest(b: &images::Blob) -> String {
    crate::registry::digest(&b.bytes)
}

#[test]
fn pulls_killed_at_many_points_leave_a_healthy_store() {
    let env = require!(TestEnv::try_rootless());
    let _ = require!(crate::registry::try_registry());
    let big = big_layer("big", 32 << 20, 11);
    let (img, _) = images::push_image(
        "store/killed",
        "1",
        &[&big, &small_layer("x")],
        images::host_arch(),
    )
    .unwrap();
    for delay_ms in [30u64, 80, 150, 250, 400, 600, 900, 1300, 1800] {
        let mut child = env
            .cmd(&["pull", "-q", &img.reference])
            .into_command()
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        // Helpers of the killed pull notice and clean up by themselves.
        std::thread::sleep(Duration::from_millis(300));
        let (code, text) = check(&env, false);
        if code != 0 {
            for l in text.lines().filter(|l| !l.starts_with("no problems")) {
                assert!(
                    l.contains("interrupted write") || l.contains("has no record"),
                    "after a kill at {delay_ms} ms only repairable leftovers may remain: {text}"
                );
            }
        }
    }
    pull(&env, &img.reference);
    let (code, text) = check(&env, false);
    assert_eq!(code, 0, "the next pull finishes and heals: {text}");
    assert!(listing(&store(&env).join("tmp")).is_empty());
}

#[test]
fn rmi_racing_run_never_removes_a_layer_in_use() {
    let (env, img) = require!(setup());
    for i in 0..6 {
        pull(&env, &img);
        let name = format!("race{i}");
        let run = env
            .cmd(&["run", "--pull", "never", "--name", &name, &img, "true"])
            .into_command()
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(20 * i as u64));
        let rmi = env.run(&["rmi", &img]);
        let run = run.wait_with_output().unwrap();
        let created = env.run(&["inspect", "--type", "container", &name]).code() == Some(0);
        if created {
            // The container exists: its image and layers must too, and it runs.
            env.run(&["start", "-a", &name]).success();
            assert_ne!(
                rmi.code(),
                Some(0),
                "rmi removed an image in use\n{}",
                rmi.describe()
            );
            env.run(&["rm", &name]).success();
        } else {
            assert!(!run.status.success());
        }
        let (code, text) = check(&env, false);
        assert_eq!(code, 0, "round {i}: {text}");
    }
}
