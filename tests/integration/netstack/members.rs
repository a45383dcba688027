//! The datapath of user-defined networks: members reach each other by address, name
//! and alias (DNS at the gateway), frames going monitor to monitor through sockets in
//! the network's run directory, which go away with the members.

use std::time::{Duration, Instant};

use super::setup;
use crate::ports::fixture::PAGE;
use crate::require;

#[test]
fn members_talk_by_name_and_alias_and_leave_nothing() {
    let (env, img) = require!(setup());
    env.run(&["network", "create", "nt1"]).success();
    let web = env
        .run(&[
            "run",
            "-d",
            "--network",
            "nt1",
            "--name",
            "web",
            "--network-alias",
            "site",
            img,
            "httpd",
            "-f",
            "-p",
            "80",
            "-h",
            "/www",
        ])
        .success()
        .stdout_trim();
    let ip = crate::support::inspect_one(&env, &[&web])["NetworkSettings"]["Networks"]["nt1"]
        ["IPAddress"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    // The server may need a moment to listen.
    let t0 = Instant::now();
    let out = loop {
        let out = super::run(
            &env,
            &["--network", "nt1"],
            img,
            "wget -qO- http://web/ && wget -qO- http://site/ && nslookup site; cat /etc/resolv.conf",
        );
        if out.code() == Some(0) || t0.elapsed() > Duration::from_secs(20) {
            break out;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    out.success();
    let text = out.stdout_str();
    assert_eq!(text.matches(PAGE.trim()).count(), 2, "{}", out.describe());
    assert!(
        !ip.is_empty() && text.contains(&ip),
        "{ip}\n{}",
        out.describe()
    );
    assert!(text.contains("search dns.podman"), "{}", out.describe());
    // Each running member's monitor has its socket in the network's run directory;
    // none is left once the members are gone.
    let sockets = || {
        let dir = env.runtime_dir.join("skiff/networks");
        std::fs::read_dir(&dir)
            .map(|rd| {
                rd.flatten()
                    .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten())
                    .filter(|e| e.file_name() != "members.json")
                    .count()
            })
            .unwrap_or(0)
    };
    assert_eq!(sockets(), 1, "the running member's socket");
    env.run(&["rm", "-f", &web]).success();
    assert_eq!(sockets(), 0, "a member socket outlived its container");
    env.run(&["network", "rm", "nt1"]).success();
}
