//! Issue 4, the link between members of a user-defined network as each member's
//! monitor enforces it: a container cannot speak with another member's address or MAC
//! (even with CAP_NET_ADMIN and CAP_NET_RAW), broadcast and multicast reach every
//! other member of the network and nobody else (not the sender again, not another
//! network), the MAC shown by inspect is the one on eth0 (and the one ARP gives for a
//! member), and the gateway's DNS: NXDOMAIN under dns.podman, names in any case, other
//! record types answered empty without asking upstream, nothing at all with
//! `network create --disable-dns`. UDP through `lantool` (tests/tools/lantool.rs), as
//! busybox's nc has no UDP. Nothing here leaves the machine.

use std::sync::atomic::Ordering;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::images::{self, plain, LayerTar};
use crate::require;
use crate::support::{json, pull};
use crate::util::{Output, TestEnv};

/// busybox plus /bin/lantool, as `skiff-test/busybox:lan` (monlog.rs sends forged
/// frames with it too).
pub(crate) fn lan_image() -> Result<&'static str, String> {
    static IMG: OnceLock<Result<String, String>> = OnceLock::new();
    IMG.get_or_init(|| {
        let tool = images::build_static_tool("lantool")?;
        let tool = std::fs::read(tool).map_err(|e| e.to_string())?;
        let mut t = LayerTar::new();
        t.dir("bin", 0o755, 0, 0)
            .file("bin/lantool", 0o755, 0, 0, &tool);
        images::push_on_busybox("lan", &[plain(t.finish())], json!({}))
    })
    .as_ref()
    .map(String::as_str)
    .map_err(Clone::clone)
}

fn setup(env: TestEnv) -> Result<(TestEnv, &'static str), String> {
    let img = lan_image()?;
    pull(&env, img);
    Ok((env, img))
}

fn ok(env: &TestEnv, args: &[&str]) -> String {
    let out = env.run(args);
    out.success();
    out.stdout_trim()
}

/// `run --rm --network NET [extra] img sh -c script`.
fn sh(env: &TestEnv, net: &str, extra: &[&str], img: &str, script: &str) -> Output {
    let mut args = vec!["run", "--rm", "--network", net];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[img, "sh", "-c", script]);
    env.run(&args)
}

/// A detached member running `lantool listen 7000 239.1.2.3`, once it listens.
fn listener(env: &TestEnv, name: &str, net: &str, img: &str) {
    ok(
        env,
        &[
            "run",
            "-d",
            "--name",
            name,
            "--network",
            net,
            img,
            "lantool",
            "listen",
            "7000",
            "239.1.2.3",
        ],
    );
    wait_logs(env, name, |l| l.contains("listening"));
}

/// Waits (up to 20 s) for `name`'s logs to satisfy `f`; returns them.
fn wait_logs(env: &TestEnv, name: &str, f: impl Fn(&str) -> bool) -> String {
    let t0 = Instant::now();
    loop {
        let logs = env.run(&["logs", name]).stdout_str();
        if f(&logs) {
            return logs;
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "{name}: {logs}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn attachment(env: &TestEnv, ctr: &str, net: &str, field: &str) -> String {
    let d = json(&env.run(&["inspect", ctr]));
    d[0]["NetworkSettings"]["Networks"][net][field]
        .as_str()
        .unwrap_or_else(|| panic!("{ctr}: no {field} on {net}: {d}"))
        .to_string()
}

fn ip_of(env: &TestEnv, ctr: &str, net: &str) -> String {
    attachment(env, ctr, net, "IPAddress")
}

#[test]
fn a_member_cannot_speak_with_another_members_address_or_mac() {
    let (env, img) = setup(require!(TestEnv::try_rootless())).expect("image");
    ok(&env, &["network", "create", "lan"]);
    ok(
        &env,
        &[
            "run",
            "-d",
            "--name",
            "victim",
            "--network",
            "lan",
            img,
            "sleep",
            "600",
        ],
    );
    listener(&env, "peer", "lan", img);
    let victim = ip_of(&env, "victim", "lan");
    let victim_mac = attachment(&env, "victim", "lan", "MacAddress");
    let peer = ip_of(&env, "peer", "lan");
    let peer_mac = attachment(&env, "peer", "lan", "MacAddress");
    // The attacker first speaks as itself (which resolves the peer's MAC), then takes
    // the victim's address (CAP_NET_ADMIN) and speaks from it, asks ARP as the victim
    // (CAP_NET_RAW), and finally takes the victim's MAC and speaks with its own address
    // (the peer's MAC set by hand: the MAC change flushed the ARP cache, and ARP
    // would be refused for the MAC already).
    let script = format!(
        "lantool send {peer}:7000 genuine && \
         if arping -f -c 1 -w 2 -I eth0 {peer} >/dev/null; then echo arp-self=yes; fi; \
         ip addr add {victim}/32 dev eth0 && \
         lantool send {peer}:7000 forged-ip {victim} && \
         if arping -f -c 1 -w 2 -I eth0 -s {victim} {peer} >/dev/null; then echo arp-victim=yes; fi; \
         ip addr del {victim}/32 dev eth0 && \
         ip link set eth0 address {victim_mac} && \
         arp -i eth0 -s {peer} {peer_mac} && \
         lantool send {peer}:7000 forged-mac && echo attacker-done"
    );
    let out = sh(
        &env,
        "lan",
        &["--cap-add", "NET_ADMIN,NET_RAW"],
        img,
        &script,
    );
    let text = out.stdout_str();
    assert!(text.contains("attacker-done"), "{}", out.describe());
    // ARP answers it as itself, not as the victim.
    assert!(text.contains("arp-self=yes"), "{}", out.describe());
    assert!(!text.contains("arp-victim=yes"), "{}", out.describe());
    let attacker_logs = wait_logs(&env, "peer", |l| l.contains("got genuine"));
    assert!(!attacker_logs.contains(&format!("from {victim}")));
    // The forged datagrams would have arrived by now (the genuine one did at once).
    std::thread::sleep(Duration::from_secs(2));
    let logs = env.run(&["logs", "peer"]).stdout_str();
    assert!(
        !logs.contains("forged"),
        "forged frames got through:\n{logs}"
    );
    // The victim itself is still heard.
    let out = env.run(&[
        "exec",
        "victim",
        "lantool",
        "send",
        &format!("{peer}:7000"),
        "real",
    ]);
    out.success();
    let logs = wait_logs(&env, "peer", |l| l.contains("got real"));
    assert!(logs.contains(&format!("got real from {victim}")), "{logs}");
    ok(&env, &["rm", "-f", "-t", "0", "victim", "peer"]);
    ok(&env, &["network", "rm", "lan"]);
}

#[test]
fn broadcast_and_multicast_reach_every_other_member_once() {
    let (env, img) = setup(require!(TestEnv::try_rootless())).expect("image");
    ok(&env, &["network", "create", "bc"]);
    ok(&env, &["network", "create", "bcother"]);
    listener(&env, "r1", "bc", img);
    listener(&env, "r2", "bc", img);
    listener(&env, "far", "bcother", img);
    let r1 = ip_of(&env, "r1", "bc");
    let subnet_bcast = r1
        .rsplit_once('.')
        .map(|(n, _)| format!("{n}.255"))
        .expect("ip");
    // Nothing comes back to the sender: its tap receives no frame while it sends (a
    // copy of its own would count; its kernel would then drop it as a martian).
    let script = format!(
        "sleep 1; rx0=$(cat /sys/class/net/eth0/statistics/rx_packets); \
         lantool send 255.255.255.255:7000 to-all && \
         lantool send {subnet_bcast}:7000 to-subnet && \
         lantool send 239.1.2.3:7000 to-group && sleep 1; \
         echo echoed=$(( $(cat /sys/class/net/eth0/statistics/rx_packets) - rx0 )); \
         ip -4 addr show eth0; lantool send {r1}:7000 size=65507"
    );
    let out = sh(&env, "bc", &[], img, &script);
    let own = out.stdout_str();
    assert!(
        own.contains(&format!("brd {subnet_bcast}")),
        "{}",
        out.describe()
    );
    assert!(own.contains("echoed=0\n"), "{}", out.describe());
    for r in ["r1", "r2"] {
        let logs = wait_logs(&env, r, |l| {
            ["to-all", "to-subnet", "to-group"]
                .iter()
                .all(|m| l.contains(&format!("got {m} ")))
        });
        for msg in ["to-all", "to-subnet", "to-group"] {
            assert_eq!(
                logs.matches(&format!("got {msg} ")).count(),
                1,
                "{r}: {logs}"
            );
        }
    }
    // A datagram over the MTU crosses in fragments.
    wait_logs(&env, "r1", |l| l.contains("got 65507 bytes"));
    let far = env.run(&["logs", "far"]).stdout_str();
    assert!(!far.contains("got"), "another network heard it:\n{far}");
    ok(&env, &["rm", "-f", "-t", "0", "r1", "r2", "far"]);
    ok(&env, &["network", "rm", "bc", "bcother"]);
}

#[test]
fn the_recorded_mac_is_on_eth0_and_in_arp_answers() {
    let (env, img) = setup(require!(TestEnv::try_rootless())).expect("image");
    ok(&env, &["network", "create", "macs"]);
    ok(
        &env,
        &[
            "run",
            "-d",
            "--name",
            "m1",
            "--network",
            "macs",
            img,
            "sleep",
            "600",
        ],
    );
    let m1 = ip_of(&env, "m1", "macs");
    let m1_mac = attachment(&env, "m1", "macs", "MacAddress");
    let own = ok(&env, &["exec", "m1", "cat", "/sys/class/net/eth0/address"]);
    assert_eq!(own, m1_mac);
    let id = ok(
        &env,
        &[
            "create",
            "--name",
            "m2",
            "--network",
            "macs",
            img,
            "sh",
            "-c",
            &format!(
                "cat /sys/class/net/eth0/address; lantool send {m1}:9 x >/dev/null; \
                 for i in 1 2 3 4 5 6 7 8 9 10; do \
                 grep -q '^{m1} .* 0x2 ' /proc/net/arp && break; sleep 0.2; done; \
                 grep '^{m1} ' /proc/net/arp"
            ),
        ],
    );
    let out = env.run(&["start", "-a", &id]);
    out.success();
    let m2_mac = attachment(&env, "m2", "macs", "MacAddress");
    let text = out.stdout_str();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some(m2_mac.as_str()), "{text}");
    assert!(
        lines.next().is_some_and(|l| l.contains(&m1_mac)),
        "ARP gives m1's recorded MAC {m1_mac}:\n{text}"
    );
    // The same MAC on every start.
    env.run(&["start", "-a", &id]).success();
    assert_eq!(attachment(&env, "m2", "macs", "MacAddress"), m2_mac);
    ok(&env, &["rm", "-f", "-t", "0", "m1", "m2"]);
    ok(&env, &["network", "rm", "macs"]);
}

#[test]
fn gateway_dns_nxdomain_any_case_and_no_upstream_for_members() {
    let (mut env, img) = setup(require!(TestEnv::try_rootless())).expect("image");
    let (dns_port, seen) = crate::netstack::dns_server();
    env.set_env("SKIFF_DNS_UPSTREAM", format!("127.0.0.1:{dns_port}"));
    ok(&env, &["network", "create", "names"]);
    ok(
        &env,
        &[
            "run",
            "-d",
            "--name",
            "Web",
            "--network",
            "names",
            img,
            "sleep",
            "600",
        ],
    );
    let ip = ip_of(&env, "Web", "names");
    // A and AAAA for a member (any case) are answered at the gateway, nothing upstream;
    // an unknown name under dns.podman is NXDOMAIN, also without asking upstream.
    let before = seen.load(Ordering::SeqCst);
    let out = sh(
        &env,
        "names",
        &[],
        img,
        "nslookup WEB.dns.podman; nslookup web; nslookup -type=AAAA wEb; \
         nslookup nosuch.dns.podman; echo done",
    );
    let text = out.stdout_str() + &out.stderr_str();
    assert!(text.contains("done"), "{}", out.describe());
    assert_eq!(text.matches(&format!("Address: {ip}")).count(), 2, "{text}");
    assert!(text.contains("NXDOMAIN"), "{text}");
    assert!(!text.contains("192.0.2.7"), "asked upstream:\n{text}");
    assert_eq!(
        seen.load(Ordering::SeqCst),
        before,
        "queries went upstream:\n{text}"
    );
    // Other names still go upstream.
    let out = sh(&env, "names", &[], img, "nslookup whoami.skiff.test");
    assert!(out.stdout_str().contains("192.0.2.7"), "{}", out.describe());
    assert!(seen.load(Ordering::SeqCst) > before);
    ok(&env, &["rm", "-f", "-t", "0", "Web"]);
    ok(&env, &["network", "rm", "names"]);
}

#[test]
fn a_network_with_dns_disabled_has_no_dns_at_the_gateway() {
    let (mut env, img) = setup(require!(TestEnv::try_rootless())).expect("image");
    let (dns_port, seen) = crate::netstack::dns_server();
    env.set_env("SKIFF_DNS_UPSTREAM", format!("127.0.0.1:{dns_port}"));
    ok(&env, &["network", "create", "--disable-dns", "quiet"]);
    let d = json(&env.run(&["network", "inspect", "quiet"]));
    assert_eq!(d[0]["dns_enabled"], json!(false), "{d}");
    ok(
        &env,
        &[
            "run",
            "-d",
            "--name",
            "srv",
            "--network",
            "quiet",
            img,
            "sleep",
            "600",
        ],
    );
    let ip = ip_of(&env, "srv", "quiet");
    let gw = ip
        .rsplit_once('.')
        .map(|(n, _)| format!("{n}.1"))
        .expect("ip");
    // resolv.conf keeps the host's resolvers (as podman), and the gateway answers no
    // DNS: neither a member's name nor a relayed one.
    let out = sh(
        &env,
        "quiet",
        &[],
        img,
        &format!(
            "cat /etc/resolv.conf; nslookup srv {gw}; nslookup whoami.skiff.test {gw}; echo done"
        ),
    );
    let text = out.stdout_str() + &out.stderr_str();
    assert!(text.contains("done"), "{}", out.describe());
    assert!(!text.contains("dns.podman"), "{text}");
    assert!(!text.contains(&format!("nameserver {gw}")), "{text}");
    assert!(!text.contains(&format!("Address: {ip}")), "{text}");
    assert!(!text.contains("192.0.2.7"), "{text}");
    assert_eq!(seen.load(Ordering::SeqCst), 0);
    // Members still reach each other by address.
    let out = sh(&env, "quiet", &[], img, &format!("lantool send {ip}:9 x"));
    out.success();
    ok(&env, &["rm", "-f", "-t", "0", "srv"]);
    ok(&env, &["network", "rm", "quiet"]);
}
