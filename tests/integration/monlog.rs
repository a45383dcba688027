//! The monitor's debug log: with `--log-level debug` on the command that starts a
//! container, what the monitor and its network report after its stdio went to
//! /dev/null lands in `monitor.log` in the container's directory (next to ctr.log),
//! appended, with the CLI's timestamps, also across restarts by policy and later
//! starts; without debug there is no such file; `rm` takes it away.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::require;
use crate::support::pull;
use crate::util::TestEnv;

/// An address that is nobody's on the test networks (TEST-NET-1).
const FORGED: &str = "192.0.2.77";

fn monitor_log(env: &TestEnv, id: &str) -> PathBuf {
    env.root_dir.join("containers").join(id).join("monitor.log")
}

/// True when every skiff command of this run gets a debug level anyway.
fn debug_everywhere() -> bool {
    matches!(
        std::env::var("SKIFF_TEST_LOG").as_deref(),
        Ok("debug" | "trace")
    )
}

fn ok(env: &TestEnv, args: &[&str]) -> String {
    let out = env.run(args);
    out.success();
    out.stdout_trim()
}

/// Waits (up to 30 s) until the file's text satisfies `f`; returns the text.
fn wait_for(path: &Path, f: impl Fn(&str) -> bool) -> String {
    let t0 = Instant::now();
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if f(&text) {
            return text;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "{}:\n{text}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Every line starts with the CLI's debug clock (HH:MM:SS.micro), in plain text.
fn assert_timestamped(text: &str) {
    for line in text.lines() {
        let b = line.as_bytes();
        let clock = b.len() > 15
            && b[2] == b':'
            && b[5] == b':'
            && b[8] == b'.'
            && b[..15]
                .iter()
                .enumerate()
                .all(|(i, c)| matches!(i, 2 | 5 | 8) || c.is_ascii_digit());
        assert!(clock, "line without a timestamp: {line:?}\n{text}");
    }
    assert!(!text.contains('\x1b'), "ANSI colours in the file:\n{text}");
}

#[test]
fn a_debug_run_logs_the_dropped_forged_frame_and_rm_removes_the_file() {
    let env = require!(TestEnv::try_rootless());
    let img = crate::netmembers::lan_image().expect("image");
    pull(&env, img);
    ok(&env, &["network", "create", "mlan"]);
    // As itself first (which resolves the gateway's MAC), then from an address that is
    // not its own: the monitor drops that frame (or the ARP asking as that address).
    let script = format!(
        "gw=$(ip route | awk '/^default/ {{print $3}}'); \
         lantool send $gw:7000 genuine && \
         ip addr add {FORGED}/32 dev eth0 && \
         lantool send $gw:7000 forged {FORGED}; echo sent; sleep 600"
    );
    let id = ok(
        &env,
        &[
            "--log-level",
            "debug",
            "run",
            "-d",
            "--network",
            "mlan",
            "--cap-add",
            "NET_ADMIN",
            img,
            "sh",
            "-c",
            &script,
        ],
    );
    let log = monitor_log(&env, &id);
    let text = wait_for(&log, |t| {
        t.lines()
            .any(|l| l.contains("dropped a frame with a forged source") && l.contains(FORGED))
    });
    // What only the running container's monitor logs, around the drop.
    assert!(text.contains("monitor log opened"), "{text}");
    assert!(text.contains("clone container init"), "{text}");
    assert_timestamped(&text);
    let logs = ok(&env, &["logs", &id]);
    assert!(logs.contains("sent"), "{logs}");

    // Started without debug: no file, though its directory (ctr.log) is there.
    let quiet = ok(
        &env,
        &["run", "-d", "--network", "mlan", img, "sleep", "600"],
    );
    let quiet_log = monitor_log(&env, &quiet);
    assert!(quiet_log.with_file_name("ctr.log").exists());
    if !debug_everywhere() {
        std::thread::sleep(Duration::from_millis(500));
        assert!(!quiet_log.exists(), "{}", quiet_log.display());
    }

    ok(&env, &["rm", "-f", "-t", "0", &id, &quiet]);
    assert!(!log.exists(), "{} outlived rm", log.display());
    assert!(!log.parent().unwrap().exists());
    ok(&env, &["network", "rm", "mlan"]);
}

#[test]
fn restarts_by_policy_and_a_later_start_keep_appending() {
    let env = require!(TestEnv::try_rootless());
    let fx = require!(crate::images::try_fixtures());
    let img = &fx.busybox.reference;
    pull(&env, img);
    let id = ok(
        &env,
        &[
            "--log-level",
            "debug",
            "run",
            "-d",
            "--restart",
            "on-failure:2",
            img,
            "sh",
            "-c",
            "sleep 0.3; exit 3",
        ],
    );
    let log = monitor_log(&env, &id);
    // The first run and two restarts, all by the one monitor.
    let text = wait_for(&log, |t| t.matches("container exited").count() == 3);
    assert_eq!(text.matches("clone container init").count(), 3, "{text}");
    assert_eq!(text.matches("monitor log opened").count(), 1, "{text}");
    assert_timestamped(&text);
    // A later debug start is a new monitor appending to the same file.
    ok(&env, &["--log-level", "debug", "start", &id]);
    let text = wait_for(&log, |t| t.matches("container exited").count() == 4);
    assert_eq!(text.matches("monitor log opened").count(), 2, "{text}");
    assert_eq!(text.matches("clone container init").count(), 4, "{text}");
    // A start without debug adds nothing.
    if !debug_everywhere() {
        ok(&env, &["start", &id]);
        ok(&env, &["wait", &id]);
        std::thread::sleep(Duration::from_millis(300));
        let after = std::fs::read_to_string(&log).unwrap();
        assert_eq!(after.matches("monitor log opened").count(), 2, "{after}");
    }
    ok(&env, &["rm", "-f", &id]);
    assert!(!log.exists());
}
