//! Issue 2, bad input: each case gets a clear one-line `Error: ...` on stderr, podman's
//! exit code (125 unless podman uses another), and changes nothing in the store
//! (`images`, `ps -a`, layers/ and containers/ are compared; the store's tmp/ must be
//! empty after a failed pull).

use std::time::Duration;

use crate::images;
use crate::require;
use crate::support::{assert_error, pull, snapshot};
use crate::util::TestEnv;

/// An env with busybox pulled and one exited container `existing`, so "changes
/// nothing" is checked against a non-empty store.
fn populated(rootful: bool) -> Result<TestEnv, String> {
    let fx = images::try_fixtures()?;
    let env = if rootful {
        TestEnv::try_rootful()?
    } else {
        TestEnv::try_rootless()?
    };
    pull(&env, &fx.busybox.reference);
    env.run(&[
        "create",
        "--name",
        "existing",
        &fx.busybox.reference,
        "true",
    ])
    .success();
    Ok(env)
}

/// Run `args`, expect the one-line error with `code` and `needles`, and no change.
#[track_caller]
fn fails_cleanly(env: &TestEnv, args: &[&str], code: i32, needles: &[&str]) {
    let before = snapshot(env);
    let out = env.run(args);
    assert_error(&out, code, needles);
    assert_eq!(snapshot(env), before, "the store changed: {}", out.cmdline);
}

#[test]
fn unknown_image_fails_cleanly() {
    let env = require!(populated(false));
    let reg = env.registry();
    let missing = format!("{reg}/skiff-test/no-such-image:latest");
    fails_cleanly(&env, &["pull", &missing], 125, &["no-such-image"]);
    fails_cleanly(
        &env,
        &["run", "--rm", &missing, "true"],
        125,
        &["no-such-image"],
    );
    let tag = format!("{reg}/skiff-test/busybox:no-such-tag");
    fails_cleanly(&env, &["pull", &tag], 125, &["no-such-tag"]);
    // A short name tried against the search registries, and one never pulled with
    // --pull never.
    fails_cleanly(
        &env,
        &["run", "--rm", "nope-image", "true"],
        125,
        &["nope-image"],
    );
    fails_cleanly(
        &env,
        &["run", "--rm", "--pull", "never", &missing, "true"],
        125,
        &["no-such-image"],
    );
}

#[test]
fn unreachable_registry_fails_cleanly_and_fast() {
    let env = require!(populated(false));
    let before = snapshot(&env);
    let out = env
        .cmd(&["pull", "127.0.0.1:1/skiff-test/busybox:latest"])
        .timeout(Duration::from_secs(60))
        .output();
    assert_error(&out, 125, &["127.0.0.1:1"]);
    assert!(out.elapsed < Duration::from_secs(30), "{}", out.describe());
    assert_eq!(snapshot(&env), before);
    fails_cleanly(
        &env,
        &["run", "--rm", "127.0.0.1:1/x", "true"],
        125,
        &["127.0.0.1:1"],
    );
}

#[test]
fn digest_mismatch_fails_cleanly() {
    let fx = require!(images::try_fixtures());
    let env = require!(populated(false));
    let r = &fx.bad_diffid.reference;
    fails_cleanly(&env, &["pull", r], 125, &["sha256:"]);
    fails_cleanly(&env, &["run", "--rm", r, "true"], 125, &["sha256:"]);
    // Nothing half-made is left that a later pull would trust.
    fails_cleanly(&env, &["pull", r], 125, &["sha256:"]);
}

#[test]
fn digest_mismatch_fails_cleanly_rootful() {
    let fx = require!(images::try_fixtures());
    let env = require!(populated(true));
    fails_cleanly(&env, &["pull", &fx.bad_diffid.reference], 125, &["sha256:"]);
    fails_cleanly(&env, &["pull", &fx.corrupt_gzip.reference], 125, &["gzip"]);
}

#[test]
fn corrupt_gzip_fails_cleanly() {
    let fx = require!(images::try_fixtures());
    let env = require!(populated(false));
    let r = &fx.corrupt_gzip.reference;
    fails_cleanly(&env, &["pull", r], 125, &["gzip"]);
    fails_cleanly(&env, &["pull", r], 125, &["gzip"]);
}

#[test]
fn bad_reference_syntax_fails_cleanly() {
    let env = require!(populated(false));
    for bad in ["Bad/Name", "a::b", "busybox:", "busybox@sha256:abc", ""] {
        fails_cleanly(&env, &["pull", bad], 125, &["reference"]);
    }
    fails_cleanly(
        &env,
        &["run", "--rm", "Bad/Name", "true"],
        125,
        &["Bad/Name"],
    );
    let fx = images::fixtures();
    fails_cleanly(
        &env,
        &["tag", &fx.busybox.reference, "Bad/Name"],
        125,
        &["Bad/Name"],
    );
}

#[test]
fn unknown_flag_fails_cleanly() {
    let fx = require!(images::try_fixtures());
    let env = require!(populated(false));
    let bb = &fx.busybox.reference;
    fails_cleanly(&env, &["run", "--bogus", bb, "true"], 125, &["--bogus"]);
    fails_cleanly(&env, &["images", "--bogus"], 125, &["--bogus"]);
    fails_cleanly(&env, &["no-such-command"], 125, &["no-such-command"]);
    // Flags after the image belong to the container's command.
    let out = env.run(&["run", "--rm", bb, "echo", "--bogus"]);
    assert_eq!(out.success().stdout_str(), "--bogus\n");
}

#[test]
fn name_already_in_use_fails_cleanly() {
    let fx = require!(images::try_fixtures());
    let env = require!(populated(false));
    let bb = &fx.busybox.reference;
    fails_cleanly(
        &env,
        &["run", "--name", "existing", bb, "true"],
        125,
        &["existing", "in use"],
    );
    fails_cleanly(
        &env,
        &["create", "--name", "existing", bb, "true"],
        125,
        &["existing"],
    );
    fails_cleanly(
        &env,
        &["run", "--rm", "--name", "existing", bb, "true"],
        125,
        &["existing"],
    );
}

#[test]
fn rm_of_a_missing_container_and_rmi_of_a_missing_image_fail_cleanly() {
    let env = require!(populated(false));
    // podman: exit 1 for "no such container" / "image not known".
    fails_cleanly(&env, &["rm", "nothing-here"], 1, &["nothing-here"]);
    fails_cleanly(&env, &["rmi", "nothing-here"], 1, &["nothing-here"]);
    fails_cleanly(&env, &["start", "nothing-here"], 125, &["nothing-here"]);
    fails_cleanly(
        &env,
        &["inspect", "--type", "container", "nothing-here"],
        125,
        &["nothing-here"],
    );
    fails_cleanly(
        &env,
        &["tag", "nothing-here", "x:y"],
        125,
        &["nothing-here"],
    );
    // The valid name in the same rm still goes; the missing one makes it exit 1.
    let out = env.run(&["rm", "existing", "nothing-here"]);
    out.assert_code(1).stdout_contains("existing");
    assert_eq!(env.run(&["ps", "-a", "-q"]).stdout_trim(), "");
}

#[test]
fn image_in_use_is_not_removed() {
    let fx = require!(images::try_fixtures());
    let env = require!(populated(false));
    fails_cleanly(&env, &["rmi", &fx.busybox.reference], 2, &["existing"]);
}

#[test]
fn volume_and_network_errors_fail_cleanly() {
    let fx = require!(images::try_fixtures());
    let env = require!(populated(false));
    let bb = &fx.busybox.reference;
    let run = |flags: &[&str], needles: &[&str]| {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&[bb, "true"]);
        fails_cleanly(&env, &args, 125, needles);
    };
    // A plain name is a named volume now; one that cannot be a volume name fails.
    run(&["-v", "not/a-name:/x"], &["not/a-name", "volume"]);
    run(&["-v", "/does/not/exist:/x"], &["/does/not/exist"]);
    run(&["-v", "/tmp:relative"], &["relative"]);
    run(&["--network", "bogus"], &["bogus"]);
    run(&["--tmpfs", "relative"], &["relative"]);
    run(
        &["--env-file", "/does/not/exist.env"],
        &["/does/not/exist.env"],
    );
    run(&["--pull", "sometimes"], &["sometimes"]);
}

#[test]
fn command_not_found_is_127_and_not_executable_is_126() {
    let fx = require!(images::try_fixtures());
    let env = require!(populated(false));
    let bb = &fx.busybox.reference;
    fails_cleanly(
        &env,
        &["run", "--rm", bb, "/nonexistent"],
        127,
        &["/nonexistent"],
    );
    fails_cleanly(
        &env,
        &["run", "--rm", bb, "no-such-cmd"],
        127,
        &["no-such-cmd"],
    );
    fails_cleanly(
        &env,
        &["run", "--rm", bb, "/etc/passwd"],
        126,
        &["/etc/passwd"],
    );
}

#[test]
fn failed_pulls_leave_no_temp_files() {
    let fx = require!(images::try_fixtures());
    let env = require!(populated(false));
    let tmp = crate::support::store(&env).join("tmp");
    for image in [&fx.bad_diffid, &fx.corrupt_gzip, &fx.hostile_dotdot.image] {
        env.run(&["pull", &image.reference]).assert_code(125);
        assert_eq!(
            crate::support::listing(&tmp),
            Vec::<String>::new(),
            "{}: temp files left in {}",
            image.reference,
            tmp.display()
        );
    }
}
