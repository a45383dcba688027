//! Issue 4, the datapath of user-defined networks: members of one network reach each
//! other by address, name and alias (frames travel monitor to monitor over the
//! network's member sockets; the gateway answers DNS for members), a container on
//! another network does not reach them, `--internal` has no way out, and nothing (no
//! process, no socket file) outlives the containers. Outbound traffic goes to a
//! server of the test on this machine's own address; DNS upstream is a resolver the
//! test starts (SKIFF_DNS_UPSTREAM). No address outside this machine is contacted.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::time::{Duration, Instant};

use crate::images;
use crate::require;
use crate::support::{json, processes_mentioning, pull};
use crate::util::TestEnv;

pub(crate) fn setup(env: TestEnv) -> (TestEnv, &'static str) {
    let fx = images::fixtures();
    pull(&env, &fx.busybox.reference);
    (env, fx.busybox.reference.as_str())
}

pub(crate) fn ok(env: &TestEnv, args: &[&str]) -> String {
    let out = env.run(args);
    out.success();
    out.stdout_trim()
}

/// `run --rm --network NET img sh -c script`.
pub(crate) fn sh(env: &TestEnv, net: &str, img: &str, script: &str) -> crate::util::Output {
    env.run(&["run", "--rm", "--network", net, img, "sh", "-c", script])
}

/// Retries `script` on `net` until it succeeds (the server may still be starting).
pub(crate) fn until_ok(env: &TestEnv, net: &str, img: &str, script: &str) -> String {
    let t0 = Instant::now();
    loop {
        let out = sh(env, net, img, script);
        if out.code() == Some(0) {
            return out.stdout_trim();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "{script}: {}",
            out.describe()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub(crate) fn network_id(env: &TestEnv, name: &str) -> String {
    json(&env.run(&["network", "inspect", name]))[0]["id"]
        .as_str()
        .expect("id")
        .to_string()
}

pub(crate) fn ip_of(env: &TestEnv, ctr: &str, net: &str) -> String {
    let d = json(&env.run(&["inspect", ctr]));
    d[0]["NetworkSettings"]["Networks"][net]["IPAddress"]
        .as_str()
        .expect("ip")
        .to_string()
}

/// Member socket files under the network's run-time directory.
pub(crate) fn sockets(env: &TestEnv, net_id: &str) -> Vec<String> {
    let dir = env
        .runtime_dir
        .join("skiff")
        .join("networks")
        .join(&net_id[..12]);
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.') && n != "members.json")
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn members_reach_each_other_by_ip_name_alias_and_dns() {
    let (mut env, img) = setup(require!(TestEnv::try_rootless()));
    let (dns_port, _seen) = crate::netstack::dns_server();
    env.set_env("SKIFF_DNS_UPSTREAM", format!("127.0.0.1:{dns_port}"));
    ok(&env, &["network", "create", "front"]);
    ok(&env, &["network", "create", "other"]);
    let srv = ok(
        &env,
        &[
            "run",
            "-d",
            "--name",
            "web",
            "--network",
            "front",
            "--network-alias",
            "api",
            img,
            "sh",
            "-c",
            "mkdir -p /www && echo hello-from-web > /www/index.html && exec httpd -f -p 8080 -h /www",
        ],
    );
    let ip = ip_of(&env, "web", "front");
    let fid = network_id(&env, "front");
    assert_eq!(sockets(&env, &fid).len(), 1, "{:?}", sockets(&env, &fid));

    // By address (the first frame needs ARP for a member, answered by our monitor).
    let body = until_ok(&env, "front", img, &format!("wget -qO- http://{ip}:8080/"));
    assert_eq!(body, "hello-from-web");
    // By name and alias (resolved by /etc/hosts or DNS), and DNS itself answers for
    // the name, the alias, the ID prefix and under dns.podman; other names go upstream.
    let script = format!(
        "wget -qO- http://web:8080/ && wget -qO- http://api:8080/ && \
         nslookup api && nslookup {} && nslookup web.dns.podman && \
         nslookup whoami.skiff.test && cat /etc/resolv.conf && ip addr show eth0",
        &srv[..12]
    );
    let out = sh(&env, "front", img, &script);
    out.success();
    let text = out.stdout_str();
    assert_eq!(text.matches("hello-from-web").count(), 2, "{text}");
    assert_eq!(
        text.matches(&format!("Address: {ip}")).count(),
        3,
        "member names answered by the gateway:\n{text}"
    );
    assert!(text.contains("192.0.2.7"), "forwarded upstream:\n{text}");
    let gw = ip
        .rsplit_once('.')
        .map(|(n, _)| format!("{n}.1"))
        .expect("ip");
    assert!(text.contains(&format!("nameserver {gw}\n")), "{text}");
    assert!(text.contains("search dns.podman"), "{text}");
    assert!(
        text.contains("/24"),
        "the network's prefix on eth0 (podman's name):\n{text}"
    );

    // A container on another network reaches nothing of it (the same request from a
    // member succeeds; nc rather than wget: this busybox's wget -T crashes).
    let get = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {ip} 8080; nslookup api");
    let out = sh(&env, "front", img, &get);
    assert!(
        out.stdout_str().contains("hello-from-web"),
        "{}",
        out.describe()
    );
    let out = sh(&env, "other", img, &get);
    assert!(
        !out.stdout_str().contains("hello-from-web"),
        "{}",
        out.describe()
    );
    assert!(
        !out.stdout_str().contains(&format!("Address: {ip}")),
        "{}",
        out.describe()
    );

    ok(&env, &["rm", "-f", "web"]);
    assert_eq!(processes_mentioning(&srv), 0, "a process outlived rm");
    assert!(sockets(&env, &fid).is_empty(), "{:?}", sockets(&env, &fid));
    assert_eq!(
        ok(&env, &["network", "rm", "front", "other"]),
        "front\nother"
    );
}

/// This machine's own non-loopback IPv4 address (no packet is sent to find it).
fn own_address() -> Option<Ipv4Addr> {
    let s = UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?;
    match s.local_addr().ok()?.ip() {
        std::net::IpAddr::V4(a) if !a.is_loopback() && !a.is_unspecified() => Some(a),
        _ => None,
    }
}

#[test]
fn internal_networks_have_no_way_out() {
    let (env, img) = setup(require!(TestEnv::try_rootless()));
    let Some(host) = own_address() else {
        eprintln!("skipped: this machine has no non-loopback IPv4 address");
        return;
    };
    let l = TcpListener::bind("0.0.0.0:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let mut s = s;
            let mut b = [0u8; 512];
            let _ = s.read(&mut b);
            let _ = s.write_all(b"outside\n");
        }
    });
    ok(&env, &["network", "create", "open"]);
    ok(&env, &["network", "create", "--internal", "closed"]);
    // (nc rather than wget: busybox's wget crashes on this minimal reply.)
    let fetch = format!("echo GET | nc -w 3 {host} {port}");
    let out = sh(&env, "open", img, &fetch);
    assert!(
        out.success().stdout_str().contains("outside"),
        "{}",
        out.describe()
    );
    let out = sh(&env, "closed", img, &fetch);
    assert_ne!(out.code(), Some(0), "{}", out.describe());
    assert!(!out.stdout_str().contains("outside"));
    // Members of the internal network still reach each other.
    let a = ok(
        &env,
        &[
            "run",
            "-d",
            "--name",
            "a",
            "--network",
            "closed",
            img,
            "sh",
            "-c",
            "mkdir /www && echo inside > /www/index.html && exec httpd -f -p 8080 -h /www",
        ],
    );
    let body = until_ok(&env, "closed", img, "wget -qO- http://a:8080/");
    assert_eq!(body, "inside");
    let nid = network_id(&env, "closed");
    ok(&env, &["rm", "-f", "a"]);
    assert_eq!(processes_mentioning(&a), 0);
    assert!(sockets(&env, &nid).is_empty());
}
