//! Issue 4, published ports (`-p`, `-P`, `skiff port`): the monitor listens on the host
//! and relays into the container through sockets a connector opens in the container's
//! network namespace. Everything runs rootless (plus one rootful run) against real
//! servers in the container: busybox httpd, and `nettool` (tests/tools/nettool.rs, built
//! here as a static binary) for UDP echo, checksummed echo, half-close, reset and sink
//! servers. Only loopback addresses are ever contacted.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::images;
use crate::require;
use crate::support::{assert_error, inspect_one, json, processes_mentioning, pull, snapshot};
use crate::util::{skiff_bin, TestEnv};

pub(crate) mod fixture;
use fixture::{nettool, ports_image, PAGE};

fn setup() -> Result<(TestEnv, &'static str), String> {
    let img = ports_image()?;
    let env = TestEnv::try_rootless()?;
    pull(&env, img);
    Ok((env, img))
}

/// A TCP port nobody listens on right now.
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

#[track_caller]
fn until(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < limit, "timed out after {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn run_d(env: &TestEnv, args: &[&str]) -> String {
    let mut full = vec!["run", "-d"];
    full.extend_from_slice(args);
    let out = env.run(&full);
    out.success();
    out.stdout_trim()
}

/// HTTP GET / on 127.0.0.1:port; the body, or None if no answer.
fn http_get(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut r = String::new();
    s.read_to_string(&mut r).ok()?;
    r.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

/// Waits until `port/proto` listens inside the container (busybox netstat).
fn wait_listening(env: &TestEnv, name: &str, port: u16, udp: bool) {
    let flag = if udp { "-lun" } else { "-ltn" };
    until(Duration::from_secs(20), "the server listening", || {
        let out = env.run(&["exec", name, "netstat", flag]);
        out.stdout_str().contains(&format!(":{port} "))
    });
}

fn refused(port: u16) -> bool {
    matches!(TcpStream::connect(("127.0.0.1", port)), Err(e) if e.kind() == ErrorKind::ConnectionRefused)
}

fn httpd_script() -> &'static str {
    "exec httpd -f -p 80 -h /www"
}

#[test]
fn http_ps_port_inspect_stop_start_rm() {
    let (env, img) = require!(setup());
    let port = free_port();
    let p = format!("{port}:80");
    run_d(
        &env,
        &["--name", "web", "-p", &p, img, "sh", "-c", httpd_script()],
    );
    let mut body = None;
    until(Duration::from_secs(20), "the page through the port", || {
        body = http_get(port);
        body.is_some()
    });
    assert_eq!(body.as_deref(), Some(PAGE));
    // ps, port, inspect as podman shows them.
    let ps = env.run(&["ps"]);
    ps.success();
    assert!(
        ps.stdout_str().contains(&format!("0.0.0.0:{port}->80/tcp")),
        "{}",
        ps.describe()
    );
    let out = env.run(&["port", "web"]);
    assert_eq!(
        out.stdout_trim(),
        format!("80/tcp -> 0.0.0.0:{port}"),
        "{}",
        out.describe()
    );
    let out = env.run(&["port", "web", "80"]);
    assert_eq!(
        out.stdout_trim(),
        format!("0.0.0.0:{port}"),
        "{}",
        out.describe()
    );
    assert_error(&env.run(&["port", "web", "81/udp"]), 125, &["81/udp"]);
    let v = inspect_one(&env, &["web"]);
    let want = json!({"80/tcp": [{"HostIp": "", "HostPort": port.to_string()}]});
    assert_eq!(v["NetworkSettings"]["Ports"], want);
    assert_eq!(v["HostConfig"]["PortBindings"], want);
    let v = json(&env.run(&["ps", "--format", "json"]));
    assert_eq!(v[0]["Ports"][0]["host_port"], json!(port));
    assert_eq!(v[0]["Ports"][0]["container_port"], json!(80));
    // Stop: no listener, no monitor, no connector.
    env.run(&["stop", "-t", "1", "web"]).success();
    assert!(refused(port), "port {port} still accepts after stop");
    assert!(env.run(&["port", "web"]).success().stdout_trim().is_empty());
    // A restart serves the same port again.
    env.run(&["start", "web"]).success();
    until(Duration::from_secs(20), "the page after start", || {
        http_get(port).as_deref() == Some(PAGE)
    });
    env.run(&["rm", "-f", "web"]).success();
    assert!(refused(port), "port {port} still accepts after rm");
}

#[test]
fn random_and_exposed_ports_stay_across_restarts() {
    let (env, img) = require!(setup());
    run_d(
        &env,
        &[
            "--name",
            "r",
            "-p",
            "127.0.0.1::80",
            "-P",
            img,
            "sh",
            "-c",
            httpd_script(),
        ],
    );
    let lines = env.run(&["port", "r"]);
    lines.success();
    let text = lines.stdout_str();
    // -p 127.0.0.1::80 wins over -P for 80/tcp; -P adds 5353/udp.
    assert!(
        text.contains("80/tcp -> 127.0.0.1:"),
        "{}",
        lines.describe()
    );
    assert!(
        text.contains("5353/udp -> 0.0.0.0:"),
        "{}",
        lines.describe()
    );
    let port: u16 = env
        .run(&["port", "r", "80"])
        .stdout_trim()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    until(
        Duration::from_secs(20),
        "the page on the random port",
        || http_get(port).as_deref() == Some(PAGE),
    );
    assert_eq!(
        inspect_one(&env, &["r"])["HostConfig"]["PublishAllPorts"],
        json!(true)
    );
    env.run(&["restart", "-t", "1", "r"]).success();
    assert_eq!(
        env.run(&["port", "r"]).stdout_str(),
        text,
        "ports changed over a restart"
    );
    until(Duration::from_secs(20), "the page after restart", || {
        http_get(port).as_deref() == Some(PAGE)
    });
    env.run(&["rm", "-f", "r"]).success();
}

#[test]
fn udp_echo_per_client() {
    let (env, img) = require!(setup());
    let port = free_port();
    let p = format!("127.0.0.1:{port}:5353/udp");
    run_d(
        &env,
        &["--name", "u", "-p", &p, img, "nettool", "udp-echo", "5353"],
    );
    wait_listening(&env, "u", 5353, true);
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    for s in [&a, &b] {
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
    }
    let mut buf = [0u8; 2048];
    for round in 0..10 {
        for (s, tag) in [(&a, "a"), (&b, "b")] {
            let msg = format!("{tag}-{round}-{}", "x".repeat(1000));
            s.send_to(msg.as_bytes(), ("127.0.0.1", port)).unwrap();
            // A datagram can be lost before the flow exists: resend until answered.
            let mut got = None;
            for _ in 0..10 {
                match s.recv_from(&mut buf) {
                    Ok((n, _)) => {
                        got = Some(buf[..n].to_vec());
                        break;
                    }
                    Err(_) => {
                        s.send_to(msg.as_bytes(), ("127.0.0.1", port)).unwrap();
                    }
                }
            }
            assert_eq!(
                got.as_deref(),
                Some(msg.as_bytes()),
                "echo for {tag} round {round}"
            );
        }
    }
    env.run(&["rm", "-f", "u"]).success();
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let _ = c.send_to(b"late", ("127.0.0.1", port));
    assert!(c.recv_from(&mut buf).is_err(), "an echo after rm");
}

#[test]
fn gibibyte_both_ways_checksummed() {
    let (env, img) = require!(setup());
    let tool = require!(nettool());
    let port = free_port();
    let p = format!("{port}:9000");
    run_d(
        &env,
        &["--name", "x", "-p", &p, img, "nettool", "echo-sum", "9000"],
    );
    wait_listening(&env, "x", 9000, false);
    let t0 = Instant::now();
    let out = std::process::Command::new(tool)
        .args([
            "xfer",
            &format!("127.0.0.1:{port}"),
            &(1u64 << 30).to_string(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let f: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(f.len(), 4, "{line}");
    let (sent, sent_sum, recv, recv_sum) = (f[0], f[1], f[2], f[3]);
    assert_eq!(sent, format!("sent={}", 1u64 << 30));
    assert_eq!(recv, format!("recv={}", 1u64 << 30), "{line}");
    assert_eq!(
        sent_sum, recv_sum,
        "the echo differs from what was sent: {line}"
    );
    // The server prints its checksum and exits: read it from the log.
    let want = format!("bytes={} {sent_sum}", 1u64 << 30);
    until(Duration::from_secs(20), "the container's checksum", || {
        env.run(&["logs", "x"]).stdout_str().contains("bytes=")
    });
    let inside = env.run(&["logs", "x"]).stdout_trim();
    assert_eq!(inside, want, "container side");
    eprintln!("1 GiB each way in {:?}", t0.elapsed());
    env.run(&["rm", "-f", "x"]).success();
}

#[test]
fn half_close_and_reset_reach_the_peer() {
    let (env, img) = require!(setup());
    let (hp, rp) = (free_port(), free_port());
    let (a, b) = (format!("{hp}:81"), format!("{rp}:82"));
    let script = "nettool halfclose 81 & exec nettool reset 82";
    run_d(
        &env,
        &["--name", "h", "-p", &a, "-p", &b, img, "sh", "-c", script],
    );
    wait_listening(&env, "h", 81, false);
    wait_listening(&env, "h", 82, false);
    // Half-close: our FIN reaches the server, which still answers on the open half.
    let mut s = TcpStream::connect(("127.0.0.1", hp)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"hello").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut r = String::new();
    s.read_to_string(&mut r).unwrap();
    assert_eq!(r, "got 5\n");
    // The server resets: we see ECONNRESET, not an orderly end.
    let mut s = TcpStream::connect(("127.0.0.1", rp)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"x").unwrap();
    let mut buf = [0u8; 16];
    let res = loop {
        match s.read(&mut buf) {
            Ok(0) => break Ok(0),
            Ok(_) => continue,
            Err(e) => break Err(e.kind()),
        }
    };
    assert_eq!(
        res,
        Err(ErrorKind::ConnectionReset),
        "the server's reset must reach us"
    );
    // We reset: the server sees ECONNRESET too.
    let s = TcpStream::connect(("127.0.0.1", rp)).unwrap();
    (&s).write_all(b"some data").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let fd = std::os::fd::AsRawFd::as_raw_fd(&s);
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on our own socket with a correctly sized struct linger.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            std::ptr::addr_of!(l).cast(),
            std::mem::size_of_val(&l) as u32,
        );
    }
    drop(s);
    let mut seen = String::new();
    until(Duration::from_secs(20), "the server noticing", || {
        seen = env.run(&["logs", "h"]).stdout_str();
        seen.contains("reset-seen")
    });
    let seen = seen
        .lines()
        .find_map(|l| l.strip_prefix("reset-seen "))
        .unwrap_or("")
        .to_string();
    assert_eq!(seen, "reset", "the client's reset must reach the server");
    env.run(&["rm", "-f", "h"]).success();
}

#[test]
fn thousand_concurrent_connections() {
    let (env, img) = require!(setup());
    let port = free_port();
    let p = format!("{port}:9000");
    run_d(
        &env,
        &["--name", "k", "-p", &p, img, "nettool", "sink", "9000"],
    );
    wait_listening(&env, "k", 9000, false);
    let mut conns = Vec::new();
    for i in 0..1000 {
        let s = TcpStream::connect(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("connection {i}: {e}"));
        conns.push(s);
    }
    let payload = vec![7u8; 1024];
    for s in &mut conns {
        s.write_all(&payload).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
    }
    for (i, s) in conns.iter_mut().enumerate() {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut n = [0u8; 8];
        s.read_exact(&mut n)
            .unwrap_or_else(|e| panic!("connection {i}: {e}"));
        assert_eq!(u64::from_le_bytes(n), 1024, "connection {i}");
    }
    // A client that connects and never sends blocks nobody.
    let _idle = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"abc").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut n = [0u8; 8];
    s.read_exact(&mut n).unwrap();
    assert_eq!(u64::from_le_bytes(n), 3);
    env.run(&["rm", "-f", "k"]).success();
}

#[test]
fn port_in_use_fails_the_start_and_leaks_nothing() {
    let (env, img) = require!(setup());
    let holder = TcpListener::bind("0.0.0.0:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let p = format!("{port}:80");
    let before = snapshot(&env);
    let out = env.run(&[
        "run",
        "-d",
        "--rm",
        "-p",
        &p,
        img,
        "sh",
        "-c",
        httpd_script(),
    ]);
    assert_error(&out, 125, &[&port.to_string(), "already in use"]);
    assert_eq!(
        snapshot(&env),
        before,
        "a failed --rm run must leave nothing"
    );
    // Without --rm the container stays created (as podman), and starts once it is free.
    let out = env.run(&[
        "run",
        "-d",
        "--name",
        "busy",
        "-p",
        &p,
        img,
        "sh",
        "-c",
        httpd_script(),
    ]);
    assert_error(&out, 125, &["already in use"]);
    let ps = env.run(&["ps", "-a", "--format", "{{.Names}} {{.Status}}"]);
    assert!(
        ps.stdout_str().contains("busy Created"),
        "{}",
        ps.describe()
    );
    let id = inspect_one(&env, &["busy"])["Id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        processes_mentioning(&id),
        0,
        "a process of the failed start is left"
    );
    drop(holder);
    env.run(&["start", "busy"]).success();
    until(
        Duration::from_secs(20),
        "the page once the port is free",
        || http_get(port).as_deref() == Some(PAGE),
    );
    env.run(&["rm", "-f", "busy"]).success();
}

#[test]
fn privileged_port_is_refused_rootless() {
    let (env, img) = require!(setup());
    let start: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1024);
    crate::skip_if!(
        start <= 80,
        "net.ipv4.ip_unprivileged_port_start={start} allows port 80"
    );
    let before = snapshot(&env);
    let out = env.run(&[
        "run",
        "-d",
        "--rm",
        "-p",
        "80:80",
        img,
        "sh",
        "-c",
        httpd_script(),
    ]);
    assert_error(&out, 125, &["0.0.0.0:80/tcp", "ip_unprivileged_port_start"]);
    assert_eq!(snapshot(&env), before);
}

#[test]
fn malformed_publish_changes_nothing() {
    let (env, img) = require!(setup());
    let before = snapshot(&env);
    for bad in [
        "abc",
        "8080:",
        "70000:80",
        "80/sctp",
        "1.2.3:80:80",
        "::1:80:80",
        "9000-9002:80",
        "8080:0",
    ] {
        let out = env.run(&["run", "-d", "-p", bad, img, "true"]);
        assert_error(&out, 125, &["invalid -p", bad]);
        let out = env.run(&["create", "-p", bad, img, "true"]);
        assert_error(&out, 125, &["invalid -p"]);
    }
    let out = env.run(&["create", "-p", "8080:80", "-p", "8080:81", img, "true"]);
    assert_error(&out, 125, &["8080", "twice"]);
    assert_eq!(snapshot(&env), before);
}

#[test]
fn host_and_none_networks_ignore_publish_with_a_warning() {
    let (env, img) = require!(setup());
    let port = free_port();
    let p = format!("{port}:80");
    for net in ["host", "none"] {
        let name = format!("n-{net}");
        let out = env.run(&[
            "create",
            "--name",
            &name,
            "--network",
            net,
            "-p",
            &p,
            img,
            "true",
        ]);
        out.success();
        assert!(
            out.stderr_str()
                .contains("Port mappings have been discarded"),
            "{}",
            out.describe()
        );
    }
    let ps = env.run(&["ps", "-a", "--format", "{{.Names}}:{{.Ports}}"]);
    let mut lines: Vec<String> = ps.stdout_str().lines().map(str::to_string).collect();
    lines.sort();
    assert_eq!(lines, ["n-host:", "n-none:"], "{}", ps.describe());
}

#[test]
fn rootful_http_through_published_port() {
    let fx = require!(images::try_fixtures());
    let img = require!(ports_image());
    let env = require!(TestEnv::try_rootful());
    let _ = fx;
    pull(&env, img);
    let port = free_port();
    let p = format!("{port}:80");
    run_d(
        &env,
        &["--name", "web", "-p", &p, img, "sh", "-c", httpd_script()],
    );
    until(Duration::from_secs(20), "the page (rootful)", || {
        http_get(port).as_deref() == Some(PAGE)
    });
    env.run(&["rm", "-f", "web"]).success();
    assert!(refused(port));
}

#[test]
fn connections_over_the_cap_are_refused() {
    let (env, img) = require!(setup());
    let port = free_port();
    let p = format!("{port}:9000");
    // With 1300 descriptors the monitor can afford 3 relayed connections (each may need
    // two sockets and two pipes, beside a fixed reserve).
    let mut args: Vec<String> = vec!["--nofile=1300".into(), "--".into()];
    args.push(skiff_bin().display().to_string());
    for a in [
        "run", "-d", "--name", "cap", "-p", &p, img, "nettool", "sink", "9000",
    ] {
        args.push(a.into());
    }
    env.host_cmd("prlimit", &args).output().success();
    wait_listening(&env, "cap", 9000, false);
    let held: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let ask = |data: &[u8]| -> Result<u64, ErrorKind> {
        let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.kind())?;
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = s.write_all(data);
        let _ = s.shutdown(Shutdown::Write);
        let mut n = [0u8; 8];
        s.read_exact(&mut n).map_err(|e| e.kind())?;
        Ok(u64::from_le_bytes(n))
    };
    let over = ask(b"one too many");
    assert!(over.is_err(), "a 4th connection got through: {over:?}");
    drop(held);
    until(
        Duration::from_secs(10),
        "a connection once the held ones closed",
        || ask(b"room again") == Ok(10),
    );
    env.run(&["rm", "-f", "cap"]).success();
}
