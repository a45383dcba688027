//! IPv6 on the default user-mode network (slirp4netns's `enable_ipv6=true`, podman's
//! default): fd00::100/64 on tap0, default route and host at fd00::2, DNS at fd00::3.
//! Servers run on the host's ::1 and are reached at fd00::2 with allow_host_loopback;
//! nothing outside this machine is contacted. Skipped where the host has no IPv6 (the
//! container then gets none either).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use super::{dns_server_on, run, setup, HostTool, LOOPBACK};
use crate::require;
use crate::util::TestEnv;

/// The host's IPv6, as skiff decides it: a global or unique-local address off lo.
fn host_ipv6() -> Result<(), String> {
    let addrs = std::fs::read_to_string("/proc/net/if_inet6").unwrap_or_default();
    let global = addrs.lines().any(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        w.len() >= 6 && w[3] == "00" && w[5] != "lo"
    });
    if global {
        Ok(())
    } else {
        Err("the host has no global or unique-local IPv6 address".into())
    }
}

fn setup6() -> Result<(TestEnv, &'static str), String> {
    host_ipv6()?;
    setup()
}

fn listener6() -> (TcpListener, u16) {
    let l = TcpListener::bind("[::1]:0").expect("bind [::1]");
    let p = l.local_addr().expect("addr").port();
    (l, p)
}

#[test]
fn the_container_side_of_the_ipv6_link() {
    let (env, img) = require!(setup6());
    // busybox ping opens a raw socket: NET_RAW lets it send ICMPv6 through tap0, where
    // the monitor answers echo to the gateway and DNS addresses (after resolving them
    // by neighbor discovery, also answered by the monitor).
    let out = run(
        &env,
        &["--cap-add", "NET_RAW"],
        img,
        "ip -6 addr show tap0; ip -6 route; cat /etc/resolv.conf; \
         ping -6 -c 1 -W 2 fd00::2 && ping -6 -c 1 -W 2 fd00::3; ip -6 neigh",
    );
    out.success();
    let text = out.stdout_str();
    // A fixed address, usable at once (no DAD: nothing "tentative", the link-local
    // address included).
    assert!(
        text.contains("inet6 fd00::100/64 scope global"),
        "{}",
        out.describe()
    );
    assert!(!text.contains("tentative"), "{}", out.describe());
    assert!(
        text.contains("default via fd00::2 dev tap0"),
        "{}",
        out.describe()
    );
    assert!(text.contains("fd00::/64 dev tap0"), "{}", out.describe());
    // As podman: resolv.conf names the IPv4 forwarder only (fd00::3 answers too).
    assert!(text.contains("nameserver 10.0.2.3"), "{}", out.describe());
    assert!(!text.contains("nameserver fd00::3"), "{}", out.describe());
    assert_eq!(
        text.matches("1 packets received").count(),
        2,
        "{}",
        out.describe()
    );
    assert!(text.contains("52:55:0a:00:02:02"), "{}", out.describe());
    // enable_ipv6=false: link-local only, as without host IPv6.
    let out = run(
        &env,
        &["--network", "slirp4netns:enable_ipv6=false"],
        img,
        "ip -6 addr show tap0; ip -6 route",
    );
    out.success();
    let text = out.stdout_str();
    assert!(text.contains("inet6 fe80::"), "{}", out.describe());
    assert!(!text.contains("fd00::"), "{}", out.describe());
    assert!(!text.contains("default"), "{}", out.describe());
}

#[test]
fn tcp_over_ipv6_to_host_loopback_checksummed() {
    let (env, img) = require!(setup6());
    let port = listener6().1;
    let at = format!("[::1]:{port}");
    let host = HostTool::start(&["echo-sum", &at, "nofile"]);
    let t0 = Instant::now();
    while TcpStream::connect(&at).is_err() {
        assert!(t0.elapsed() < Duration::from_secs(10), "nothing on {at}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // That probe was the one connection echo-sum serves: start another.
    drop(host);
    let host = HostTool::start(&["echo-sum", &at, "nofile"]);
    std::thread::sleep(Duration::from_millis(300));
    super::xfer_checked(&env, img, &format!("[fd00::2]:{port}"), host, 256u64 << 20);
}

#[test]
fn the_host_sees_the_connection_from_its_ipv6_loopback() {
    let (env, img) = require!(setup6());
    let (l, tport) = listener6();
    let server = std::thread::spawn(move || {
        let (mut s, peer) = l.accept().expect("accept");
        let mut b = [0u8; 5];
        s.read_exact(&mut b).expect("read");
        s.write_all(format!("{} {}\n", String::from_utf8_lossy(&b), peer.ip()).as_bytes())
            .expect("write");
    });
    let out = run(
        &env,
        &["--network", LOOPBACK],
        img,
        &format!("printf hello | nc fd00::2 {tport}"),
    );
    out.success();
    server.join().expect("server");
    assert!(out.stdout_str().contains("hello ::1"), "{}", out.describe());
}

#[test]
fn udp_over_ipv6_round_trip() {
    let (env, img) = require!(setup6());
    let u = UdpSocket::bind("[::1]:0").expect("udp bind");
    let uport = u.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut b = [0u8; 512];
        while let Ok((n, from)) = u.recv_from(&mut b) {
            let mut r = b"echo6:".to_vec();
            r.extend_from_slice(&b[..n]);
            let _ = u.send_to(&r, from);
        }
    });
    let out = run(
        &env,
        &["--network", LOOPBACK],
        img,
        &format!("nettool udp-ask [fd00::2]:{uport} ping; nettool udp-ask [fd00::2]:{uport} pong"),
    );
    out.success();
    let text = out.stdout_str();
    assert!(text.contains("echo6:ping"), "{}", out.describe());
    assert!(text.contains("echo6:pong"), "{}", out.describe());
}

#[test]
fn fd00_2_is_refused_without_allow_host_loopback() {
    let (env, img) = require!(setup6());
    let (l, _) = listener6();
    let u = UdpSocket::bind("[::1]:0").expect("udp bind");
    super::assert_gateway_refused(&env, img, "[fd00::2]", &l, &u);
}

#[test]
fn dns_at_fd00_3_is_relayed_to_either_family() {
    for upstream in ["127.0.0.1", "::1"] {
        let (mut env, img) = require!(setup6());
        let bind = if upstream.contains(':') {
            "[::1]:0"
        } else {
            "127.0.0.1:0"
        };
        let (port, seen) = dns_server_on(bind);
        let up = if upstream.contains(':') {
            format!("[{upstream}]:{port}")
        } else {
            format!("{upstream}:{port}")
        };
        env.set_env("SKIFF_DNS_UPSTREAM", &up);
        let out = run(&env, &[], img, "nslookup whoami.skiff.test fd00::3");
        out.success();
        assert!(
            out.stdout_str().contains("192.0.2.7"),
            "{up}\n{}",
            out.describe()
        );
        assert!(seen.load(std::sync::atomic::Ordering::SeqCst) > 0, "{up}");
    }
}

#[test]
fn a_published_port_answers_on_the_hosts_ipv6_loopback() {
    let (env, img) = require!(setup6());
    let port = listener6().1;
    let id = env
        .run(&[
            "run",
            "-d",
            "-p",
            &format!("{port}:80"),
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
    let t0 = Instant::now();
    let page = loop {
        let got = TcpStream::connect(("::1", port)).and_then(|mut s| {
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
            let mut r = String::new();
            s.read_to_string(&mut r)?;
            Ok(r)
        });
        match got {
            Ok(r) if r.contains(crate::ports::fixture::PAGE.trim()) => break r,
            _ if t0.elapsed() > Duration::from_secs(20) => {
                panic!("no page on [::1]:{port}: {got:?}")
            }
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    assert!(
        page.starts_with("HTTP/1.") && page.contains(" 200 "),
        "{page}"
    );
    env.run(&["rm", "-f", &id]).success();
}
