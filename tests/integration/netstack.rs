//! Issue 4, the outbound user-mode network (`--network slirp4netns`, the default): the
//! container's own connections leave through tap0 and the monitor turns them into host
//! sockets. Servers run on the host's loopback (in the test process, or `nettool`
//! started by the test) and are reached from inside at 10.0.2.2 with
//! allow_host_loopback=true; DNS goes to a resolver the test starts, named with
//! SKIFF_DNS_UPSTREAM. No address outside this machine is contacted.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::ports::fixture::{nettool, ports_image};
use crate::require;
use crate::support::{assert_error, inspect_one, processes_mentioning, pull, snapshot};
use crate::util::TestEnv;

const LOOPBACK: &str = "slirp4netns:allow_host_loopback=true";

fn setup() -> Result<(TestEnv, &'static str), String> {
    let img = ports_image()?;
    let env = TestEnv::try_rootless()?;
    pull(&env, img);
    Ok((env, img))
}

fn listener() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let p = l.local_addr().expect("addr").port();
    (l, p)
}

/// `skiff run --rm [flags] img sh -c script`; the output.
fn run(env: &TestEnv, flags: &[&str], img: &str, script: &str) -> crate::util::Output {
    let mut args = vec!["run", "--rm"];
    args.extend_from_slice(flags);
    args.extend_from_slice(&[img, "sh", "-c", script]);
    env.run(&args)
}

/// A host nettool server (killed on drop).
struct HostTool(Child);

impl HostTool {
    fn start(args: &[&str]) -> HostTool {
        let tool = nettool().expect("nettool");
        let child = Command::new(tool)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nettool");
        HostTool(child)
    }

    /// Waits for it to exit; its stdout.
    fn output(mut self, limit: Duration) -> String {
        let t0 = Instant::now();
        loop {
            if let Ok(Some(_)) = self.0.try_wait() {
                break;
            }
            assert!(t0.elapsed() < limit, "host nettool did not finish");
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut s = String::new();
        if let Some(mut o) = self.0.stdout.take() {
            let _ = o.read_to_string(&mut s);
        }
        s
    }
}

impl Drop for HostTool {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port free on the host right now (for host nettool servers, which bind 0.0.0.0).
fn free_port() -> u16 {
    listener().1
}

fn wait_port(port: u16) {
    let t0 = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "nothing listens on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn outbound_tcp_udp_and_the_container_side_of_the_network() {
    let (env, img) = require!(setup());
    let (l, tport) = listener();
    let server = std::thread::spawn(move || {
        let (mut s, peer) = l.accept().expect("accept");
        let mut b = [0u8; 5];
        s.read_exact(&mut b).expect("read");
        s.write_all(format!("{} {}\n", String::from_utf8_lossy(&b), peer.ip()).as_bytes())
            .expect("write");
    });
    let u = UdpSocket::bind("127.0.0.1:0").expect("udp bind");
    let uport = u.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut b = [0u8; 512];
        if let Ok((n, from)) = u.recv_from(&mut b) {
            let mut r = b"echo:".to_vec();
            r.extend_from_slice(&b[..n]);
            let _ = u.send_to(&r, from);
        }
    });
    let script = format!(
        "printf hello | nc 10.0.2.2 {tport}; nettool udp-ask 10.0.2.2:{uport} ping; \
         nettool ping 10.0.2.2; ip addr show tap0; ip route; cat /etc/resolv.conf /etc/hosts"
    );
    let out = run(&env, &["--network", LOOPBACK], img, &script);
    out.success();
    server.join().expect("server");
    let text = out.stdout_str();
    // The host side sees the monitor's own socket, from its loopback.
    assert!(text.contains("hello 127.0.0.1"), "{}", out.describe());
    assert!(text.contains("echo:ping"), "{}", out.describe());
    // Echo to the gateway, through an ICMP socket (ping_group_range is "0 0" inside).
    assert!(text.contains("reply from 10.0.2.2"), "{}", out.describe());
    assert!(text.contains("inet 10.0.2.100/24"), "{}", out.describe());
    assert!(text.contains("mtu 65520"), "{}", out.describe());
    assert!(text.contains("default via 10.0.2.2"), "{}", out.describe());
    assert!(text.contains("nameserver 10.0.2.3"), "{}", out.describe());
    assert!(
        text.contains("10.0.2.2\thost.containers.internal"),
        "{}",
        out.describe()
    );
    // The default network is slirp4netns, and inspect says so.
    let id = env.run(&["create", img, "true"]).success().stdout_trim();
    let v = inspect_one(&env, &[&id]);
    assert_eq!(v["HostConfig"]["NetworkMode"], "slirp4netns");
    env.run(&["rm", &id]).success();
}

/// Without allow_host_loopback, TCP and UDP from the container to `gateway` (10.0.2.2,
/// or [fd00::2]) are refused, and the host's loopback servers `l` and `u` see nothing.
fn assert_gateway_refused(env: &TestEnv, img: &str, gateway: &str, l: &TcpListener, u: &UdpSocket) {
    l.set_nonblocking(true).expect("nonblocking");
    u.set_nonblocking(true).expect("nonblocking");
    let tport = l.local_addr().expect("addr").port();
    let uport = u.local_addr().expect("addr").port();
    let script =
        format!("nettool conns {gateway}:{tport} 1; nettool udp-ask {gateway}:{uport} x; true");
    let out = run(env, &[], img, &script);
    out.success();
    assert_eq!(
        out.stderr_str().matches("Connection refused").count(),
        2,
        "TCP and UDP to {gateway} must be refused\n{}",
        out.describe()
    );
    assert!(
        matches!(l.accept(), Err(e) if e.kind() == ErrorKind::WouldBlock),
        "the host server saw a connection"
    );
    let mut b = [0u8; 8];
    assert!(
        u.recv_from(&mut b).is_err(),
        "the host UDP server got a datagram"
    );
}

#[test]
fn host_loopback_is_refused_without_allow_host_loopback() {
    let (env, img) = require!(setup());
    let (l, tport) = listener();
    let u = UdpSocket::bind("127.0.0.1:0").expect("udp bind");
    assert_gateway_refused(&env, img, "10.0.2.2", &l, &u);
    // Explicitly false is the same.
    let out = run(
        &env,
        &["--network", "slirp4netns:allow_host_loopback=false"],
        img,
        &format!("nettool conns 10.0.2.2:{tport} 1"),
    );
    assert!(
        out.stderr_str().contains("Connection refused"),
        "{}",
        out.describe()
    );
}

#[test]
fn gigabyte_both_ways_checksummed() {
    let (env, img) = require!(setup());
    let port = free_port();
    let host = HostTool::start(&["echo-sum", &port.to_string(), "nofile"]);
    wait_port(port);
    // wait_port's probe was the one connection echo-sum serves: start another.
    drop(host);
    let host = HostTool::start(&["echo-sum", &port.to_string(), "nofile"]);
    std::thread::sleep(Duration::from_millis(300));
    xfer_checked(&env, img, &format!("10.0.2.2:{port}"), host, 1u64 << 30);
}

/// `nettool xfer TARGET BYTES` in the container against the host's `echo-sum`: the
/// bytes go out and come back, checksummed at both ends.
fn xfer_checked(env: &TestEnv, img: &str, target: &str, host: HostTool, bytes: u64) {
    let out = run(
        env,
        &["--network", LOOPBACK],
        img,
        &format!("nettool xfer {target} {bytes}"),
    );
    out.success();
    let host_line = host.output(Duration::from_secs(60));
    // sent=N sum=A recv=M sum=B in the container; bytes=N sum=A on the host.
    let w: Vec<&str> = out.stdout_trim().leak().split_whitespace().collect();
    assert_eq!(w.len(), 4, "{}", out.describe());
    assert_eq!(w[0], format!("sent={bytes}"));
    assert_eq!(w[2], format!("recv={bytes}"), "{}", out.describe());
    assert_eq!(w[1], w[3], "what came back differs from what was sent");
    assert_eq!(
        host_line.trim(),
        format!("bytes={bytes} {}", w[1]),
        "the host got other bytes than the container sent"
    );
}

#[test]
fn half_close_and_resets_reach_the_peer() {
    let (env, img) = require!(setup());
    // Half-close: the container shuts down writing and still reads the answer.
    let (l, hport) = listener();
    let half = std::thread::spawn(move || {
        let (mut s, _) = l.accept().expect("accept");
        let mut n = 0usize;
        let mut b = [0u8; 8192];
        loop {
            match s.read(&mut b) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) => panic!("read: {e}"),
            }
        }
        s.write_all(format!("got {n}\n").as_bytes())
            .expect("answer");
    });
    // Reset from the host: the container's read fails with ECONNRESET.
    let (l2, rport) = listener();
    let reset_from_host = std::thread::spawn(move || {
        let (mut s, _) = l2.accept().expect("accept");
        let mut b = [0u8; 1];
        s.read_exact(&mut b).expect("read");
        // SO_LINGER 0: close sends a reset.
        let lg = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: a valid socket and a correctly sized struct linger.
        unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&s),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&lg as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            );
        }
    });
    // Reset from the container: the host's read fails with ECONNRESET.
    let (l3, cport) = listener();
    let reset_from_container = std::thread::spawn(move || {
        let (mut s, _) = l3.accept().expect("accept");
        s.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let mut b = [0u8; 64];
        loop {
            match s.read(&mut b) {
                Ok(0) => return "eof",
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return "reset",
                Err(_) => return "error",
            }
        }
    });
    let script = format!(
        "nettool halfclose-client 10.0.2.2:{hport} 100000; \
         nettool reset-client 10.0.2.2:{rport}; nettool rst 10.0.2.2:{cport}"
    );
    let out = run(&env, &["--network", LOOPBACK], img, &script);
    out.success();
    half.join().expect("half-close server");
    reset_from_host.join().expect("reset server");
    let lines: Vec<String> = out.stdout_str().lines().map(String::from).collect();
    assert_eq!(
        lines,
        ["got 100000", "reset", "sent-reset"],
        "{}",
        out.describe()
    );
    assert_eq!(reset_from_container.join().expect("server"), "reset");
}

/// A DNS server answering every A query with 192.0.2.7 (and nothing for others);
/// counts the queries it saw.
pub(crate) fn dns_server() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    dns_server_on("127.0.0.1:0")
}

/// [`dns_server`] bound to `bind` (`[::1]:0` for an IPv6 resolver).
pub(crate) fn dns_server_on(bind: &str) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let s = UdpSocket::bind(bind).expect("bind");
    let port = s.local_addr().expect("addr").port();
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = seen.clone();
    std::thread::spawn(move || {
        let mut b = [0u8; 512];
        while let Ok((n, from)) = s.recv_from(&mut b) {
            if n < 17 {
                continue;
            }
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            // Header, then the question up to its QTYPE and QCLASS.
            let mut i = 12;
            while i < n && b[i] != 0 {
                i += usize::from(b[i]) + 1;
            }
            let qend = i + 5;
            if qend > n {
                continue;
            }
            let qtype = u16::from_be_bytes([b[i + 1], b[i + 2]]);
            let mut r = b[..qend].to_vec();
            r[2] = 0x81;
            r[3] = 0x80;
            r[6..12].copy_from_slice(&[0, u8::from(qtype == 1), 0, 0, 0, 0]);
            if qtype == 1 {
                r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 7]);
            }
            let _ = s.send_to(&r, from);
        }
    });
    (port, seen)
}

#[test]
fn dns_is_forwarded_to_the_hosts_resolver() {
    let (mut env, img) = require!(setup());
    let (port, seen) = dns_server();
    env.set_env("SKIFF_DNS_UPSTREAM", format!("127.0.0.1:{port}"));
    let out = run(&env, &[], img, "nslookup whoami.skiff.test");
    out.success();
    assert!(out.stdout_str().contains("192.0.2.7"), "{}", out.describe());
    assert!(seen.load(std::sync::atomic::Ordering::SeqCst) > 0);
}

/// A connection from the container held open by `sleep | nc`; the host end.
fn held_connection(l: &TcpListener) -> TcpStream {
    l.set_nonblocking(false).expect("blocking");
    let (s, _) = l.accept().expect("accept");
    s.set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    s
}

#[test]
fn the_network_dies_with_stop_and_rm_and_comes_back_on_start() {
    let (env, img) = require!(setup());
    let (l, port) = listener();
    let script = format!("sleep 1000 | nc 10.0.2.2 {port}");
    let id = env
        .run(&["run", "-d", "--network", LOOPBACK, img, "sh", "-c", &script])
        .success()
        .stdout_trim();
    let mut s = held_connection(&l);
    env.run(&["stop", "-t", "1", &id]).success();
    // The monitor is gone, and with it the host end of the container's connection.
    let mut b = [0u8; 16];
    assert!(
        matches!(s.read(&mut b), Ok(0) | Err(_)),
        "the connection outlived the container"
    );
    assert_eq!(processes_mentioning(&id), 0, "a process outlived stop");
    // A restart gets a working network again.
    env.run(&["start", &id]).success();
    let mut s = held_connection(&l);
    s.write_all(b"back\n").expect("write");
    env.run(&["rm", "-f", &id]).success();
    assert!(matches!(s.read(&mut b), Ok(0) | Err(_)));
    assert_eq!(processes_mentioning(&id), 0, "a process outlived rm");
}

/// Accepts one connection within `limit`; what it sent.
fn accept_within(l: &TcpListener, limit: Duration) -> Option<String> {
    l.set_nonblocking(true).expect("nonblocking");
    let t0 = Instant::now();
    loop {
        match l.accept() {
            Ok((mut s, _)) => {
                s.set_nonblocking(false).expect("blocking");
                s.set_read_timeout(Some(Duration::from_secs(10)))
                    .expect("timeout");
                let mut r = String::new();
                let _ = s.read_to_string(&mut r);
                return Some(r);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if t0.elapsed() > limit {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

#[test]
fn a_restart_by_policy_gets_a_new_network() {
    let (env, img) = require!(setup());
    let (l, port) = listener();
    // The same monitor clones a new init for each restart: each run dials out anew.
    let script = format!("printf run | nc 10.0.2.2 {port}; exit 3");
    let id = env
        .run(&[
            "run",
            "-d",
            "--restart",
            "on-failure:2",
            "--network",
            LOOPBACK,
            img,
            "sh",
            "-c",
            &script,
        ])
        .success()
        .stdout_trim();
    for i in 0..3 {
        assert_eq!(
            accept_within(&l, Duration::from_secs(20)).as_deref(),
            Some("run"),
            "run {i} did not connect"
        );
    }
    assert_eq!(env.run(&["wait", &id]).success().stdout_trim(), "3");
    env.run(&["rm", "-f", &id]).success();
    assert_eq!(processes_mentioning(&id), 0);
}

#[test]
fn rootful_containers_get_the_same_network() {
    let img = require!(ports_image());
    let env = require!(TestEnv::try_rootful());
    pull(&env, img);
    let (l, port) = listener();
    // busybox nc keeps the connection until the server closes it: accept meanwhile.
    let server = std::thread::spawn(move || accept_within(&l, Duration::from_secs(60)));
    let out = run(
        &env,
        &["--network", LOOPBACK],
        img,
        &format!("printf root | nc 10.0.2.2 {port}; ip route"),
    );
    out.success();
    assert_eq!(server.join().expect("server").as_deref(), Some("root"));
    assert!(
        out.stdout_str().contains("default via 10.0.2.2"),
        "{}",
        out.describe()
    );
}

#[test]
fn a_thousand_concurrent_connections() {
    let (env, img) = require!(setup());
    let port = free_port();
    let _host = HostTool::start(&["many-echo", &port.to_string()]);
    wait_port(port);
    let out = run(
        &env,
        &["--network", LOOPBACK],
        img,
        &format!("nettool many 10.0.2.2:{port} 1000"),
    );
    out.success();
    assert_eq!(out.stdout_trim(), "ok=1000", "{}", out.describe());
}

/// VmRSS of the monitor of container `id`, in kB.
fn monitor_rss(id: &str) -> Option<u64> {
    let rd = std::fs::read_dir("/proc").ok()?;
    for e in rd.flatten() {
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd);
        if cmd.contains("__monitor") && cmd.contains(id) {
            let st = std::fs::read_to_string(e.path().join("status")).ok()?;
            return st
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok());
        }
    }
    None
}

#[test]
fn a_flooding_container_starves_nothing_and_the_monitor_stays_small() {
    let (env, img) = require!(setup());
    let sink = free_port();
    let _host = HostTool::start(&["sink", &sink.to_string()]);
    wait_port(sink);
    let u = UdpSocket::bind("127.0.0.1:0").expect("udp bind");
    let uport = u.local_addr().expect("addr").port();
    let got = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let g = got.clone();
    std::thread::spawn(move || {
        let mut b = [0u8; 2048];
        while u.recv(&mut b).is_ok() {
            g.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    });
    // A UDP flood and a bulk TCP upload at once, and short connections in between.
    // The flood shares the container's tap queue with the upload, whose segments are
    // dropped there (by the container's kernel) while it lasts. On a loaded machine the
    // upload's retransmission timer can back off to seconds and stay there (our SYN-ACK
    // offers neither timestamps nor SACK, so retransmitted data gives no RTT sample):
    // the upload is bounded in time, it is load, not the subject.
    let script = format!(
        "nettool udp-flood 10.0.2.2:{uport} 6 >/dev/null & \
         timeout 20 nettool send 10.0.2.2:{sink} 100000000 >/dev/null 2>&1 & \
         sleep 1; nettool conns 10.0.2.2:{sink} 50; wait"
    );
    let id = env
        .run(&["run", "-d", "--network", LOOPBACK, img, "sh", "-c", &script])
        .success()
        .stdout_trim();
    let mut peak = 0;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(5) {
        peak = peak.max(monitor_rss(&id).unwrap_or(0));
        std::thread::sleep(Duration::from_millis(100));
    }
    let deadline = Instant::now() + Duration::from_secs(100);
    while Instant::now() < deadline {
        let st = env
            .run(&["inspect", "-f", "{{.State.Status}}", &id])
            .stdout_trim();
        if st != "running" {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let st = env
        .run(&["inspect", "-f", "{{.State.Status}}", &id])
        .stdout_trim();
    if st == "running" {
        let ps = env
            .run(&["exec", &id, "ps", "-o", "pid,stat,args"])
            .stdout_str();
        let tcp = env.run(&["exec", &id, "cat", "/proc/net/tcp"]).stdout_str();
        let logs = env.run(&["logs", &id]).stdout_str();
        panic!("still running after 100 s\nps:\n{ps}\ntcp:\n{tcp}\nlogs:\n{logs}");
    }
    let code = env.run(&["wait", &id]).success().stdout_trim();
    assert_eq!(code, "0");
    let logs = env.run(&["logs", &id]).success().stdout_str();
    let us: u64 = logs
        .split("us_per_conn=")
        .nth(1)
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no connection timing in {logs:?}"));
    assert!(us < 200_000, "short connections starved: {us} us each");
    assert!(
        got.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "no datagram arrived"
    );
    assert!(peak > 0, "the monitor was not found");
    assert!(
        peak < 32 * 1024,
        "the monitor grew to {peak} kB under the flood"
    );
    env.run(&["rm", "-f", &id]).success();
}

#[test]
fn no_access_to_dev_net_tun_says_how_to_fix_it() {
    let (env, img) = require!(setup());
    if !crate::util::is_root() {
        crate::util::skip("needs root to hide /dev/net/tun in a mount namespace");
        return;
    }
    // /dev/net/tun replaced, in a mount namespace of this command only, by a file the
    // test user may not open.
    let fake = env.home.join("fake-tun");
    std::fs::write(&fake, b"").expect("write");
    let inner = env.cmd(&["run", "--rm", img, "true"]).into_command();
    let mut c = Command::new("unshare");
    c.args([
        "-m",
        "--",
        "sh",
        "-c",
        "mount --bind \"$0\" /dev/net/tun && exec \"$@\"",
    ])
    .arg(&fake)
    .arg(inner.get_program())
    .args(inner.get_args())
    .env_clear()
    .envs(inner.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))));
    if let Some(d) = inner.get_current_dir() {
        c.current_dir(d);
    }
    let out = c.output().expect("unshare");
    assert_eq!(out.status.code(), Some(125), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.lines().last().unwrap_or("");
    assert!(
        last.starts_with("Error: ")
            && last.contains("/dev/net/tun")
            && last.contains("chmod 0666 /dev/net/tun"),
        "{err}"
    );
    // Nothing stays behind: no container record.
    let ps = env.run(&["ps", "-aq"]);
    assert_eq!(ps.success().stdout_trim(), "");
}

#[test]
fn bad_network_options_are_refused_and_change_nothing() {
    let (env, img) = require!(setup());
    let before = snapshot(&env);
    for (mode, needle) in [
        ("slirp4netns:mtu=1500", "mtu=1500"),
        (
            "slirp4netns:allow_host_loopback=maybe",
            "allow_host_loopback",
        ),
        ("slirp4netns:port_handler=slirp4netns", "port_handler"),
    ] {
        assert_error(
            &env.run(&["run", "--rm", "--network", mode, img, "true"]),
            125,
            &[needle],
        );
        assert_error(
            &env.run(&["create", "--network", mode, img]),
            125,
            &[needle],
        );
    }
    assert_eq!(snapshot(&env), before);
}

mod ipv6;
mod members;
mod udp;

/// skiff.toml's network.dns_upstream names the resolver when the environment does not;
/// `info` says where the value came from.
#[test]
fn dns_upstream_from_skiff_toml() {
    let (env, img) = require!(setup());
    let (port, seen) = dns_server();
    let file = env.home.join(".config/skiff/skiff.toml");
    std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
    std::fs::write(
        &file,
        format!("[network]\ndns_upstream = \"127.0.0.1:{port}\"\n"),
    )
    .expect("write skiff.toml");
    env.give(&env.home.join(".config"));
    env.give(&file);
    let info = env.run(&["info", "--format", "json"]);
    info.success();
    assert!(
        info.stdout_str().contains(&format!("127.0.0.1:{port}")),
        "{}",
        info.describe()
    );
    let out = run(&env, &[], img, "nslookup whoami.skiff.test");
    out.success();
    assert!(out.stdout_str().contains("192.0.2.7"), "{}", out.describe());
    assert!(seen.load(std::sync::atomic::Ordering::SeqCst) > 0);
}
