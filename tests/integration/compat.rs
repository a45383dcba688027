//! `alias docker=skiff`: what docker/podman scripts rely on, checked through the real
//! binary against podman 4.3.1's behaviour (flags, exit codes, formats, messages).

use crate::images;
use crate::require;
use crate::support::{assert_error, inspect_one, pull, snapshot};
use crate::util::TestEnv;

/// Push the fixtures to `SKIFF_TEST_REGISTRY` (for comparing by hand with podman).
#[test]
#[ignore]
fn playground_push_fixtures() {
    let fx = images::fixtures();
    eprintln!("busybox: {}", fx.busybox.reference);
}

/// `docker rm -f name || true` cleanups: with --force a missing container is no error
/// (podman), the others are still removed; without --force it stays exit 1.
#[test]
fn rm_force_ignores_missing_containers() {
    let fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootless());
    let bb = &fx.busybox.reference;
    pull(&env, bb);
    env.run(&["create", "--name", "old", bb, "true"]).success();
    let before = snapshot(&env);
    let out = env.run(&["rm", "nosuch"]);
    assert_error(&out, 1, &["nosuch", "no such container"]);
    assert_eq!(snapshot(&env), before);

    let out = env.run(&["rm", "-f", "nosuch"]);
    out.success();
    assert_eq!(out.stdout_trim(), "", "{}", out.describe());
    assert!(out.stderr_str().is_empty(), "{}", out.describe());
    assert_eq!(snapshot(&env), before);

    let out = env.run(&["rm", "--force", "nosuch", "old", "nosuch2"]);
    out.success();
    assert_eq!(out.stdout_trim(), "old", "{}", out.describe());
    env.run(&["inspect", "old"]).assert_code(125);
}

/// `rmi -f` of an image that is not there exits 0 as in podman; plain `rmi` still fails.
#[test]
fn rmi_force_ignores_missing_images() {
    let fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootless());
    pull(&env, &fx.busybox.reference);
    let before = snapshot(&env);
    assert_error(&env.run(&["rmi", "nosuchimage"]), 1, &["nosuchimage"]);
    let out = env.run(&["rmi", "-f", "nosuchimage"]);
    out.success();
    assert!(out.stderr_str().is_empty(), "{}", out.describe());
    assert_eq!(snapshot(&env), before);
    // A real image named next to a missing one is still removed.
    env.run(&["rmi", "-f", "nosuchimage", &fx.busybox.reference])
        .success();
    env.run(&["images", "-q"]).success().stdout_str();
    assert_eq!(env.run(&["images", "-q"]).stdout_trim(), "");
}

/// `docker version -f '{{.Server.Version}}'` is how scripts check the engine is there;
/// `info -f '{{.Host.OS}}'` is a podman field.
#[test]
fn version_server_and_info_host_os_templates() {
    let env = require!(TestEnv::try_rootless());
    let server = env.run(&["version", "--format", "{{.Server.Version}}"]);
    server.success();
    let client = env.run(&["version", "-f", "{{.Client.Version}}"]);
    client.success();
    assert!(!server.stdout_trim().is_empty(), "{}", server.describe());
    assert_eq!(server.stdout_trim(), client.stdout_trim());
    let os = env.run(&["info", "--format", "{{.Host.OS}}"]);
    os.success();
    assert_eq!(os.stdout_trim(), "linux", "{}", os.describe());
}

/// `images -a` (docker scripts) and `images --digests` (podman's DIGEST column).
#[test]
fn images_all_and_digests() {
    let fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootless());
    pull(&env, &fx.busybox.reference);
    let all = env.run(&["images", "-a", "-q"]);
    all.success();
    assert_eq!(
        all.stdout_trim(),
        &fx.busybox.id[..12],
        "{}",
        all.describe()
    );
    let plain = env.run(&["images", "--all"]);
    plain.success();
    assert_eq!(plain.stdout_str(), env.run(&["images"]).stdout_str());

    let d = env.run(&["images", "--digests"]);
    d.success();
    let text = d.stdout_str();
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or("")
        .split("  ")
        .filter(|s| !s.is_empty())
        .map(str::trim)
        .collect();
    assert_eq!(
        header,
        ["REPOSITORY", "TAG", "DIGEST", "IMAGE ID", "CREATED", "SIZE"],
        "{}",
        d.describe()
    );
    let row: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    assert_eq!(
        row.get(2).copied(),
        Some(fx.busybox.manifest_digest.as_str()),
        "{}",
        d.describe()
    );
    assert_eq!(
        row.get(3).copied(),
        Some(&fx.busybox.id[..12]),
        "{}",
        d.describe()
    );
}

/// Commands skiff does not have say so and what to do, in one line, exit 125.
#[test]
fn build_and_stats_say_what_to_do() {
    let env = require!(TestEnv::try_rootless());
    for args in [
        &["build", "-t", "x", "."][..],
        &["build", "."][..],
        &["buildx", "build", "."][..],
    ] {
        assert_error(
            &env.run(args),
            125,
            &["cannot build images", "podman build", "skiff load"],
        );
    }
    let out = env.run(&["stats", "--no-stream"]);
    let unified = std::fs::metadata("/sys/fs/cgroup/cgroup.controllers").is_ok();
    if unified {
        assert_error(&out, 125, &["stats", "skiff top"]);
    } else {
        assert_error(
            &out,
            125,
            &["stats is not supported in rootless mode without cgroups v2"],
        );
    }
}

/// A command missing its argument names what is missing (was "not provided::").
#[test]
fn missing_argument_is_named() {
    let env = require!(TestEnv::try_rootless());
    assert_error(
        &env.run(&["rm"]),
        125,
        &["missing required argument", "CONTAINERS"],
    );
    assert_error(
        &env.run(&["tag", "x"]),
        125,
        &["missing required argument", "NAMES"],
    );
}

/// `logs --since/--until` take what docker and podman take: a date without a zone, a
/// date and time without one (local time), and Go durations such as 1h30m.
#[test]
fn logs_since_until_docker_time_forms() {
    let fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootless());
    let bb = &fx.busybox.reference;
    pull(&env, bb);
    env.run(&["run", "--name", "l", bb, "echo", "hello"])
        .success();
    let logs = |args: &[&str]| {
        let mut a = vec!["logs"];
        a.extend_from_slice(args);
        a.push("l");
        let out = env.run(&a);
        out.success();
        out.stdout_trim()
    };
    assert_eq!(logs(&["--since", "2000-01-01"]), "hello");
    assert_eq!(logs(&["--since", "2000-01-01T10:00:00"]), "hello");
    assert_eq!(logs(&["--since", "2000-01-01T10:00:00.5"]), "hello");
    assert_eq!(logs(&["--since", "2200-01-01"]), "");
    assert_eq!(logs(&["--until", "2000-01-01"]), "");
    assert_eq!(logs(&["--since", "1h30m"]), "hello");
    assert_eq!(logs(&["--since", "1.5h"]), "hello");
    assert_eq!(logs(&["--until", "1h30m"]), "");
    assert_eq!(logs(&["--until", "2m0s"]), "");
    for bad in ["yesterday", "10x", "1h30", "2000-13-01"] {
        assert_error(
            &env.run(&["logs", "--since", bad, "l"]),
            125,
            &["invalid time", bad],
        );
    }
}

/// `--shm-size` (postgres, browsers): the size of /dev/shm; bad sizes change nothing.
#[test]
fn run_shm_size() {
    let fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootless());
    let bb = &fx.busybox.reference;
    pull(&env, bb);
    let df = |flags: &[&str]| {
        let mut a = vec!["run", "--rm"];
        a.extend_from_slice(flags);
        a.extend([bb.as_str(), "sh", "-c", "df -k /dev/shm | tail -1"]);
        let out = env.run(&a);
        out.success();
        out.stdout_trim()
            .split_whitespace()
            .nth(1)
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(df(&[]), "65536");
    assert_eq!(df(&["--shm-size", "256m"]), "262144");
    assert_eq!(df(&["--shm-size=1g"]), "1048576");
    env.run(&["create", "--name", "c", "--shm-size", "128m", bb])
        .success();
    let c = inspect_one(&env, &["c"]);
    assert_eq!(c["HostConfig"]["ShmSize"], 128 << 20, "{c}");
    let before = snapshot(&env);
    for bad in ["bogus", "0", "-1m", "12q"] {
        let out = env.run(&["run", "--rm", &format!("--shm-size={bad}"), bb, "true"]);
        assert_error(&out, 125, &["--shm-size", bad]);
    }
    assert_eq!(snapshot(&env), before);
}

/// `--rm=false`, `-t=true`, `--detach=$D`: explicit values on boolean flags, as Go's
/// pflag takes them; the container's own arguments are never rewritten.
#[test]
fn boolean_flags_take_explicit_values() {
    let fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootless());
    let bb = &fx.busybox.reference;
    pull(&env, bb);
    let out = env.run(&[
        "run",
        "--rm=false",
        "-t=false",
        "-i=false",
        "-d=false",
        "--name",
        "b",
        bb,
        "echo",
        "--rm=false",
    ]);
    out.success();
    assert_eq!(out.stdout_trim(), "--rm=false", "{}", out.describe());
    // --rm=false kept the container.
    let st = inspect_one(&env, &["b"]);
    assert_eq!(st["State"]["Status"], "exited", "{st}");
    let out = env.run(&["run", "--rm=true", "--tty=true", bb, "tty"]);
    out.success();
    assert!(
        out.stdout_trim().starts_with("/dev/pts/"),
        "{}",
        out.describe()
    );
    let ids = env.run(&["ps", "--all=true", "--quiet=true", "--no-trunc=false"]);
    ids.success();
    assert_eq!(ids.stdout_trim().lines().count(), 1, "{}", ids.describe());
    let out = env.run(&["run", "--detach=true", "--name", "d", bb, "sleep", "100"]);
    out.success();
    assert!(
        crate::support::is_full_id(&out.stdout_trim()),
        "{}",
        out.describe()
    );
    // Still refused: a value that is not a boolean, a flag that is not one.
    let before = snapshot(&env);
    assert_error(&env.run(&["run", "--rm=maybe", bb, "true"]), 125, &["--rm"]);
    assert_error(
        &env.run(&["run", "--name=true=x", "--bogus=true", bb, "true"]),
        125,
        &["--bogus"],
    );
    assert_eq!(snapshot(&env), before);
}

/// `{{index .Config.Labels "k"}}` of a missing label is "" as in podman (Go's zero
/// value), so `[ -z "$(docker inspect -f ...)" ]` works.
#[test]
fn inspect_index_missing_label_is_empty() {
    let fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootless());
    let bb = &fx.busybox.reference;
    pull(&env, bb);
    env.run(&["create", "--name", "plain", bb]).success();
    env.run(&["create", "--name", "lab", "-l", "app=web", bb])
        .success();
    let f = |c: &str, t: &str| {
        let out = env.run(&["inspect", "-f", t, c]);
        out.success();
        out.stdout_trim()
    };
    assert_eq!(f("lab", "{{index .Config.Labels \"app\"}}"), "web");
    assert_eq!(f("lab", "{{index .Config.Labels \"nope\"}}"), "");
    assert_eq!(f("plain", "{{index .Config.Labels \"app\"}}"), "");
    assert_eq!(f("plain", "[{{index .Config.Labels \"app\"}}]"), "[]");
}

/// `docker ps -lq` / `ps -n 2`: the latest created containers, whatever their state.
#[test]
fn ps_latest_and_last() {
    let fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootless());
    let bb = &fx.busybox.reference;
    pull(&env, bb);
    let mut ids = Vec::new();
    for name in ["one", "two", "three"] {
        let out = env.run(&["create", "--name", name, bb, "true"]);
        out.success();
        ids.push(out.stdout_trim());
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    env.run(&["start", "-a", "two"]).success();
    let q = |args: &[&str]| {
        let out = env.run(args);
        out.success();
        out.stdout_trim()
    };
    assert_eq!(q(&["ps", "-lq", "--no-trunc"]), ids[2]);
    assert_eq!(q(&["ps", "--latest", "--format", "{{.Names}}"]), "three");
    assert_eq!(
        q(&["ps", "-n", "2", "--format", "{{.Names}}"]),
        "three\ntwo"
    );
    assert_eq!(q(&["ps", "--last", "5", "-q"]).lines().count(), 3);
    assert_eq!(q(&["ps", "-q"]), "");
}
