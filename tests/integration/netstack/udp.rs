//! UDP through the user-mode network is endpoint-independent (as with slirp4netns and
//! pasta): each container socket gets one host socket that sends to any destination and
//! takes datagrams from any source, and the container sees each one's real source (the
//! host's 127.0.0.1 as 10.0.2.2). The mapping goes after the idle timeout.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use super::{run, setup, HostTool, LOOPBACK};
use crate::require;

fn udp_socket() -> (UdpSocket, u16) {
    let s = UdpSocket::bind("127.0.0.1:0").expect("udp bind");
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let p = s.local_addr().expect("addr").port();
    (s, p)
}

/// Sends `msg` from `s` to the container's mapping `to`; the answer and where it came
/// from.
fn ask(s: &UdpSocket, to: SocketAddr, msg: &str) -> (String, SocketAddr) {
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.send_to(msg.as_bytes(), to).expect("send");
    let mut b = [0u8; 512];
    let (n, from) = s.recv_from(&mut b).expect("no answer from the container");
    (String::from_utf8_lossy(&b[..n]).into_owned(), from)
}

#[test]
fn host_peers_the_container_never_sent_to_reach_its_socket() {
    let (env, img) = require!(setup());
    let (s1, p1) = udp_socket();
    let (s2, p2) = udp_socket();
    let (s3, p3) = udp_socket();
    // A port nothing listens on: a datagram there is refused, as before.
    let closed = udp_socket().1;
    let host = std::thread::spawn(move || {
        let mut b = [0u8; 512];
        let (n, mapped) = s1.recv_from(&mut b).expect("the container's datagram");
        assert_eq!(&b[..n], b"hello");
        // Two other host sockets, then the first one, talk to the same mapping; each
        // gets the container's answer from that mapping.
        let answers = [(&s2, "a"), (&s3, "b"), (&s1, "c")].map(|(s, m)| ask(s, mapped, m));
        (mapped, answers)
    });
    let script = format!(
        "nettool udp-peer 10.0.2.2:{p1} hello 3 && nettool udp-ask 10.0.2.2:{closed} x; true"
    );
    let out = run(&env, &["--network", LOOPBACK], img, &script);
    out.success();
    let (mapped, answers) = host.join().expect("host side");
    assert_eq!(mapped.ip().to_string(), "127.0.0.1");
    for (got, want) in answers.iter().zip(["re:a", "re:b", "re:c"]) {
        assert_eq!(
            (got.0.as_str(), got.1),
            (want, mapped),
            "{}",
            out.describe()
        );
    }
    // The container saw each datagram from its real source, 10.0.2.2:PORT.
    let lines: Vec<String> = out.stdout_str().lines().map(String::from).collect();
    assert_eq!(
        lines,
        [
            format!("from=10.0.2.2:{p2} data=a"),
            format!("from=10.0.2.2:{p3} data=b"),
            format!("from=10.0.2.2:{p1} data=c"),
        ],
        "{}",
        out.describe()
    );
    assert!(
        out.stderr_str().contains("Connection refused"),
        "a datagram to a closed host port must be refused\n{}",
        out.describe()
    );
}

/// The pid of the monitor of container `id`.
fn monitor_pid(id: &str) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
        let cmd = String::from_utf8_lossy(&cmd);
        (cmd.contains("__monitor") && cmd.contains(id))
            .then(|| e.file_name().to_str()?.parse().ok())
            .flatten()
    })
}

/// Socket inodes the process `pid` holds.
fn socket_inodes(pid: u32) -> Vec<String> {
    let rd = std::fs::read_dir(format!("/proc/{pid}/fd")).expect("monitor fds");
    rd.flatten()
        .filter_map(|e| {
            let l = std::fs::read_link(e.path()).ok()?;
            let l = l.to_str()?;
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect()
}

/// Inodes of the host's IPv4 UDP sockets bound to `port`.
fn udp_inodes(port: u16) -> Vec<String> {
    let t = std::fs::read_to_string("/proc/net/udp").expect("/proc/net/udp");
    t.lines()
        .skip(1)
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let p = u16::from_str_radix(w.get(1)?.rsplit(':').next()?, 16).ok()?;
            (p == port).then(|| w.get(9).map(|s| s.to_string()))?
        })
        .collect()
}

/// Whether the monitor `pid` holds the UDP socket bound to `port`.
fn holds(pid: u32, port: u16) -> bool {
    let mine = socket_inodes(pid);
    udp_inodes(port).iter().any(|i| mine.contains(i))
}

#[test]
fn an_idle_mapping_is_closed() {
    let (mut env, img) = require!(setup());
    env.set_env("SKIFF_UDP_IDLE_TIMEOUT", "3");
    let (s, port) = udp_socket();
    let script = format!("nettool udp-ask 10.0.2.2:{port} x; sleep 1000");
    let id = env
        .run(&["run", "-d", "--network", LOOPBACK, img, "sh", "-c", &script])
        .success()
        .stdout_trim();
    let mut b = [0u8; 64];
    let (_, mapped) = s.recv_from(&mut b).expect("the container's datagram");
    let t0 = Instant::now();
    s.send_to(b"x", mapped).expect("answer");
    let pid = monitor_pid(&id).expect("the monitor");
    assert!(
        holds(pid, mapped.port()),
        "the monitor holds no socket on {mapped}"
    );
    let gone = loop {
        if !holds(pid, mapped.port()) {
            break t0.elapsed();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the mapping {mapped} outlived its idle timeout"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    // Idle 3 s, swept every 5 s.
    assert!(gone >= Duration::from_secs(2), "closed after {gone:?}");
    // The network still works: a new datagram gets a new mapping.
    let out = env.run(&[
        "exec",
        &id,
        "nettool",
        "udp-peer",
        &format!("10.0.2.2:{port}"),
        "again",
        "0",
    ]);
    out.success();
    let (n, again) = s.recv_from(&mut b).expect("a datagram after the sweep");
    assert_eq!(&b[..n], b"again");
    assert!(holds(pid, again.port()), "no new mapping for {again}");
    env.run(&["rm", "-f", &id]).success();
}

/// utime + stime of process `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let st = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let rest = st.rsplit(')').next().unwrap_or_default();
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap_or(0) + f[12].parse::<u64>().unwrap_or(0)
}

/// A measurement, not a check: sequential UDP round trips container -> host echo, and
/// the monitor's CPU time for them.
/// `cargo test --test integration netstack::udp::round_trips -- --ignored --nocapture`
#[test]
#[ignore]
fn round_trips_per_second() {
    let (env, img) = require!(setup());
    let port = super::free_port();
    let _echo = HostTool::start(&["udp-echo", &port.to_string()]);
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..3 {
        let script = format!("sleep 1; nettool udp-rtt 10.0.2.2:{port} 20000; sleep 1000");
        let id = env
            .run(&["run", "-d", "--network", LOOPBACK, img, "sh", "-c", &script])
            .success()
            .stdout_trim();
        let pid = monitor_pid(&id).expect("the monitor");
        let before = cpu_ticks(pid);
        let t0 = Instant::now();
        let line = loop {
            let logs = env.run(&["logs", &id]).success().stdout_trim();
            if logs.contains("rtts=") {
                break logs;
            }
            assert!(t0.elapsed() < Duration::from_secs(120), "no result");
            std::thread::sleep(Duration::from_millis(100));
        };
        let ticks = cpu_ticks(pid) - before;
        println!(
            "{line} monitor_cpu_us_per_rtt={:.1}",
            ticks as f64 * 1e4 / 20000.0
        );
        env.run(&["rm", "-f", "-t", "0", &id]).success();
    }
}
