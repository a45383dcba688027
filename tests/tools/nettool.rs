//! nettool: a small static network helper for skiff's port tests and benchmarks. It runs
//! inside busybox test images (built with `rustc -O -C target-feature=+crt-static`, no
//! crates) and on the host. Not part of skiff.
//!
//! Servers (inside the container):
//!   (a server's PORT may be ADDR:PORT, e.g. [::1]:PORT)
//!   echo-sum PORT [nofile] echo one connection back while checksumming it; at EOF print
//!                          `bytes=N sum=HEX` to stdout and (without nofile) to
//!                          /tmp/echo-sum, then close
//!   udp-echo PORT          echo every datagram back to its sender
//!   halfclose PORT         per connection: read to EOF, then answer `got N` and close
//!   reset PORT             1st connection: read 1 byte, close with a reset;
//!                          2nd: read until EOF or error, record `eof`/`reset` in
//!                          /tmp/reset-seen
//!   sink PORT              per connection (threads): read to EOF, answer the byte
//!                          count (8 bytes LE), close
//!   source PORT            per connection (threads): read a count (8 bytes LE), send
//!                          that many bytes, close
//! Clients (on the host):
//!   xfer ADDR BYTES        send BYTES of generated data while reading the echo; print
//!                          `sent=N sum=HEX recv=M sum=HEX`
//!   send ADDR BYTES [N]    N (default 1) connections in parallel, each sending BYTES
//!                          to a sink; print `bytes=T secs=S gbit=G`
//!   conns ADDR N           N sequential short connections to a sink; print
//!                          `conns=N secs=S us_per_conn=U`
//!   fetch ADDR BYTES       ask a source for BYTES and read them; print
//!                          `bytes=T secs=S gbit=G`
//!   udp-ask ADDR MSG       send MSG in one datagram, print the first answer (2 s)
//!   many ADDR N            N connections open at once to an echo server (many-echo),
//!                          each sends its index and reads it back; print `ok=N`
//!   many-echo PORT         echo every connection (threads) until EOF
//!   halfclose-client ADDR N  send N bytes, shut down writing, print what comes back
//!   reset-client ADDR      send a byte, then read: print `reset` or `eof`
//!   rst ADDR               send a byte, then close with a reset (SO_LINGER 0)
//!   ping IP                one ICMP echo through an unprivileged ICMP socket (needs
//!                          net.ipv4.ping_group_range); print `reply from IP` (2 s)
//!   udp-flood ADDR SECS    send 1400-byte datagrams as fast as possible for SECS; print
//!                          `sent=N`
//!   udp-rtt ADDR N         N sequential round trips of a 64-byte datagram to a
//!                          udp-echo (1 s timeout each, a loss is resent); print
//!                          `rtts=N secs=S per_sec=R lost=L`
//!   udp-peer ADDR MSG N    from one unconnected socket: send MSG to ADDR, then take N
//!                          datagrams from anyone (10 s each), print `from=SRC data=D`
//!                          for each and answer the sender with `re:D`

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, UdpSocket};
use std::time::Instant;

/// A streaming 64-bit checksum (FNV-1a over 8-byte words with a final mix): order
/// sensitive and fast; enough to catch lost, duplicated or corrupted bytes.
struct Sum {
    h: u64,
    tail: [u8; 8],
    tail_len: usize,
    n: u64,
}

impl Sum {
    fn new() -> Sum {
        Sum {
            h: 0xcbf2_9ce4_8422_2325,
            tail: [0; 8],
            tail_len: 0,
            n: 0,
        }
    }
    fn word(&mut self, w: u64) {
        self.h = (self.h ^ w)
            .wrapping_mul(0x0000_0100_0000_01b3)
            .rotate_left(29);
    }
    fn update(&mut self, mut d: &[u8]) {
        self.n += d.len() as u64;
        while self.tail_len > 0 && !d.is_empty() {
            self.tail[self.tail_len] = d[0];
            self.tail_len += 1;
            d = &d[1..];
            if self.tail_len == 8 {
                let w = u64::from_le_bytes(self.tail);
                self.word(w);
                self.tail_len = 0;
            }
        }
        let mut chunks = d.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            self.word(w);
        }
        for &b in chunks.remainder() {
            self.tail[self.tail_len] = b;
            self.tail_len += 1;
        }
    }
    fn finish(&self) -> String {
        let mut h = self.h;
        for &b in &self.tail[..self.tail_len] {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        h ^= self.n;
        format!("{h:016x}")
    }
}

fn die(msg: &str) -> ! {
    eprintln!("nettool: {msg}");
    std::process::exit(2)
}

fn arg(v: &[String], i: usize) -> &str {
    v.get(i)
        .map(String::as_str)
        .unwrap_or_else(|| die("missing argument"))
}

fn num(s: &str) -> u64 {
    s.parse()
        .unwrap_or_else(|_| die(&format!("not a number: {s}")))
}

/// PORT (all IPv4 addresses) or ADDR:PORT (`[::1]:PORT` for IPv6).
fn listen(port: &str) -> TcpListener {
    let at = if port.contains(':') {
        port.to_string()
    } else {
        format!("0.0.0.0:{port}")
    };
    TcpListener::bind(at).unwrap_or_else(|e| die(&format!("bind: {e}")))
}

fn main() {
    let v: Vec<String> = std::env::args().collect();
    match arg(&v, 1) {
        "echo-sum" => echo_sum(arg(&v, 2), v.get(3).map(String::as_str) != Some("nofile")),
        "udp-echo" => udp_echo(arg(&v, 2)),
        "halfclose" => halfclose(arg(&v, 2)),
        "reset" => reset(arg(&v, 2)),
        "sink" => sink(arg(&v, 2)),
        "xfer" => xfer(arg(&v, 2), num(arg(&v, 3))),
        "send" => send(
            arg(&v, 2),
            num(arg(&v, 3)),
            v.get(4).map(|s| num(s)).unwrap_or(1),
        ),
        "conns" => conns(arg(&v, 2), num(arg(&v, 3))),
        "source" => source(arg(&v, 2)),
        "fetch" => fetch(arg(&v, 2), num(arg(&v, 3))),
        "udp-ask" => udp_ask(arg(&v, 2), arg(&v, 3)),
        "many" => many(arg(&v, 2), num(arg(&v, 3))),
        "many-echo" => many_echo(arg(&v, 2)),
        "halfclose-client" => halfclose_client(arg(&v, 2), num(arg(&v, 3))),
        "reset-client" => reset_client(arg(&v, 2)),
        "rst" => rst(arg(&v, 2)),
        "udp-flood" => udp_flood(arg(&v, 2), num(arg(&v, 3))),
        "ping" => ping(arg(&v, 2)),
        "udp-rtt" => udp_rtt(arg(&v, 2), num(arg(&v, 3))),
        "udp-peer" => udp_peer(arg(&v, 2), arg(&v, 3), num(arg(&v, 4))),
        other => die(&format!("unknown mode {other}")),
    }
}

fn echo_sum(port: &str, file: bool) {
    let l = listen(port);
    let (mut s, _) = l.accept().unwrap_or_else(|e| die(&format!("accept: {e}")));
    let mut w = s
        .try_clone()
        .unwrap_or_else(|e| die(&format!("clone: {e}")));
    let mut sum = Sum::new();
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => die(&format!("read: {e}")),
        };
        sum.update(&buf[..n]);
        w.write_all(&buf[..n])
            .unwrap_or_else(|e| die(&format!("write: {e}")));
    }
    let line = format!("bytes={} sum={}\n", sum.n, sum.finish());
    if file {
        let _ = std::fs::write("/tmp/echo-sum", &line);
    }
    print!("{line}");
    let _ = std::io::stdout().flush();
    let _ = w.shutdown(Shutdown::Write);
}

fn udp_echo(port: &str) {
    let s =
        UdpSocket::bind(format!("0.0.0.0:{port}")).unwrap_or_else(|e| die(&format!("bind: {e}")));
    let mut buf = vec![0u8; 65536];
    loop {
        if let Ok((n, from)) = s.recv_from(&mut buf) {
            let _ = s.send_to(&buf[..n], from);
        }
    }
}

fn halfclose(port: &str) {
    let l = listen(port);
    for s in l.incoming().flatten() {
        let mut s = s;
        let mut n = 0usize;
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(_) => break,
            }
        }
        let _ = s.write_all(format!("got {n}\n").as_bytes());
    }
}

fn set_linger_zero(s: &TcpStream) {
    use std::os::fd::AsRawFd;
    #[repr(C)]
    struct Linger {
        onoff: i32,
        linger: i32,
    }
    extern "C" {
        fn setsockopt(fd: i32, level: i32, name: i32, val: *const u8, len: u32) -> i32;
    }
    let l = Linger {
        onoff: 1,
        linger: 0,
    };
    // SAFETY: a valid socket and a correctly sized struct linger (SOL_SOCKET=1, SO_LINGER=13).
    unsafe {
        setsockopt(
            s.as_raw_fd(),
            1,
            13,
            (&l as *const Linger).cast(),
            std::mem::size_of::<Linger>() as u32,
        );
    }
}

fn reset(port: &str) {
    let l = listen(port);
    let (mut s, _) = l.accept().unwrap_or_else(|e| die(&format!("accept: {e}")));
    let mut b = [0u8; 1];
    let _ = s.read(&mut b);
    set_linger_zero(&s);
    drop(s);
    let (mut s, _) = l.accept().unwrap_or_else(|e| die(&format!("accept: {e}")));
    let mut buf = [0u8; 4096];
    let seen = loop {
        match s.read(&mut buf) {
            Ok(0) => break "eof",
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break "reset",
            Err(e) => {
                break if e.raw_os_error() == Some(104) {
                    "reset"
                } else {
                    "error"
                }
            }
        }
    };
    let _ = std::fs::write("/tmp/reset-seen", seen);
    println!("reset-seen {seen}");
}

fn sink(port: &str) {
    let l = listen(port);
    for s in l.incoming().flatten() {
        std::thread::spawn(move || {
            let mut s = s;
            let mut buf = vec![0u8; 256 << 10];
            let mut n: u64 = 0;
            loop {
                match s.read(&mut buf) {
                    Ok(0) => break,
                    Ok(k) => n += k as u64,
                    Err(_) => return,
                }
            }
            let _ = s.write_all(&n.to_le_bytes());
        });
    }
}

/// Deterministic pseudo-random bytes (xorshift64*), chunk by chunk.
fn fill(state: &mut u64, buf: &mut [u8]) {
    for c in buf.chunks_mut(8) {
        *state ^= *state >> 12;
        *state ^= *state << 25;
        *state ^= *state >> 27;
        let w = state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
        c.copy_from_slice(&w[..c.len()]);
    }
}

fn connect(addr: &str) -> TcpStream {
    TcpStream::connect(addr).unwrap_or_else(|e| die(&format!("connect {addr}: {e}")))
}

fn xfer(addr: &str, bytes: u64) {
    let s = connect(addr);
    let mut w = s
        .try_clone()
        .unwrap_or_else(|e| die(&format!("clone: {e}")));
    let sender = std::thread::spawn(move || {
        let mut sum = Sum::new();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut buf = vec![0u8; 256 << 10];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            fill(&mut state, &mut buf[..n]);
            sum.update(&buf[..n]);
            w.write_all(&buf[..n])
                .unwrap_or_else(|e| die(&format!("write: {e}")));
            left -= n as u64;
        }
        w.shutdown(Shutdown::Write)
            .unwrap_or_else(|e| die(&format!("shutdown: {e}")));
        sum
    });
    let mut r = s;
    let mut sum = Sum::new();
    let mut buf = vec![0u8; 256 << 10];
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => sum.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => die(&format!("read: {e}")),
        }
    }
    let sent = sender.join().unwrap_or_else(|_| die("sender failed"));
    println!(
        "sent={} sum={} recv={} sum={}",
        sent.n,
        sent.finish(),
        sum.n,
        sum.finish()
    );
}

fn send(addr: &str, bytes: u64, streams: u64) {
    let start = Instant::now();
    let threads: Vec<_> = (0..streams)
        .map(|_| {
            let addr = addr.to_string();
            std::thread::spawn(move || {
                let mut s = connect(&addr);
                let buf = vec![0x5au8; 1 << 20];
                let mut left = bytes;
                while left > 0 {
                    let n = left.min(buf.len() as u64) as usize;
                    s.write_all(&buf[..n])
                        .unwrap_or_else(|e| die(&format!("write: {e}")));
                    left -= n as u64;
                }
                s.shutdown(Shutdown::Write)
                    .unwrap_or_else(|e| die(&format!("shutdown: {e}")));
                let mut got = [0u8; 8];
                s.read_exact(&mut got)
                    .unwrap_or_else(|e| die(&format!("read count: {e}")));
                let got = u64::from_le_bytes(got);
                if got != bytes {
                    die(&format!("the sink got {got} bytes of {bytes}"));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap_or_else(|_| die("a stream failed"));
    }
    let secs = start.elapsed().as_secs_f64();
    let total = bytes * streams;
    println!(
        "bytes={total} secs={secs:.3} gbit={:.2}",
        total as f64 * 8.0 / secs / 1e9
    );
}

fn conns(addr: &str, n: u64) {
    let start = Instant::now();
    for _ in 0..n {
        let mut s = connect(addr);
        s.shutdown(Shutdown::Write)
            .unwrap_or_else(|e| die(&format!("shutdown: {e}")));
        let mut got = [0u8; 8];
        s.read_exact(&mut got)
            .unwrap_or_else(|e| die(&format!("read: {e}")));
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "conns={n} secs={secs:.3} us_per_conn={:.0}",
        secs * 1e6 / n as f64
    );
}

fn source(port: &str) {
    let l = listen(port);
    for s in l.incoming().flatten() {
        std::thread::spawn(move || {
            let mut s = s;
            let mut want = [0u8; 8];
            if s.read_exact(&mut want).is_err() {
                return;
            }
            let mut left = u64::from_le_bytes(want);
            let buf = vec![0xa5u8; 1 << 20];
            while left > 0 {
                let n = left.min(buf.len() as u64) as usize;
                if s.write_all(&buf[..n]).is_err() {
                    return;
                }
                left -= n as u64;
            }
            let _ = s.shutdown(Shutdown::Write);
            let mut rest = [0u8; 64];
            while matches!(s.read(&mut rest), Ok(n) if n > 0) {}
        });
    }
}

fn fetch(addr: &str, bytes: u64) {
    let start = Instant::now();
    let mut s = connect(addr);
    s.write_all(&bytes.to_le_bytes())
        .unwrap_or_else(|e| die(&format!("write: {e}")));
    let mut buf = vec![0u8; 1 << 20];
    let mut got = 0u64;
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got += n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => die(&format!("read: {e}")),
        }
    }
    if got != bytes {
        die(&format!("got {got} bytes of {bytes}"));
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "bytes={got} secs={secs:.3} gbit={:.2}",
        got as f64 * 8.0 / secs / 1e9
    );
}

fn udp_ask(addr: &str, msg: &str) {
    let any = if addr.starts_with('[') { "[::]:0" } else { "0.0.0.0:0" };
    let s = UdpSocket::bind(any).unwrap_or_else(|e| die(&format!("bind: {e}")));
    s.connect(addr)
        .unwrap_or_else(|e| die(&format!("connect {addr}: {e}")));
    let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(2)));
    s.send(msg.as_bytes())
        .unwrap_or_else(|e| die(&format!("send: {e}")));
    let mut buf = vec![0u8; 65536];
    let n = s.recv(&mut buf).unwrap_or_else(|e| die(&format!("recv: {e}")));
    println!("{}", String::from_utf8_lossy(&buf[..n]));
}

fn many(addr: &str, n: u64) {
    let mut socks = Vec::new();
    for i in 0..n {
        let mut s = connect(addr);
        s.write_all(&i.to_le_bytes())
            .unwrap_or_else(|e| die(&format!("write {i}: {e}")));
        socks.push(s);
    }
    let mut ok = 0;
    for (i, s) in socks.iter_mut().enumerate() {
        let mut b = [0u8; 8];
        s.read_exact(&mut b)
            .unwrap_or_else(|e| die(&format!("read {i}: {e}")));
        if u64::from_le_bytes(b) == i as u64 {
            ok += 1;
        }
    }
    println!("ok={ok}");
}

fn many_echo(port: &str) {
    let l = listen(port);
    for s in l.incoming().flatten() {
        std::thread::spawn(move || {
            let mut s = s;
            let mut buf = [0u8; 4096];
            loop {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if s.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                }
            }
        });
    }
}

fn halfclose_client(addr: &str, n: u64) {
    let mut s = connect(addr);
    s.write_all(&vec![b'h'; n as usize])
        .unwrap_or_else(|e| die(&format!("write: {e}")));
    s.shutdown(Shutdown::Write)
        .unwrap_or_else(|e| die(&format!("shutdown: {e}")));
    let mut r = String::new();
    s.read_to_string(&mut r)
        .unwrap_or_else(|e| die(&format!("read: {e}")));
    print!("{r}");
}

fn reset_client(addr: &str) {
    let mut s = connect(addr);
    s.write_all(b"x")
        .unwrap_or_else(|e| die(&format!("write: {e}")));
    let mut buf = [0u8; 64];
    let seen = loop {
        match s.read(&mut buf) {
            Ok(0) => break "eof",
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break "reset",
            Err(e) => die(&format!("read: {e}")),
        }
    };
    println!("{seen}");
}

fn rst(addr: &str) {
    let mut s = connect(addr);
    s.write_all(b"x")
        .unwrap_or_else(|e| die(&format!("write: {e}")));
    std::thread::sleep(std::time::Duration::from_millis(300));
    set_linger_zero(&s);
    drop(s);
    println!("sent-reset");
}

fn udp_flood(addr: &str, secs: u64) {
    let s = UdpSocket::bind("0.0.0.0:0").unwrap_or_else(|e| die(&format!("bind: {e}")));
    s.connect(addr)
        .unwrap_or_else(|e| die(&format!("connect {addr}: {e}")));
    let buf = [0x55u8; 1400];
    let end = Instant::now() + std::time::Duration::from_secs(secs);
    let mut n = 0u64;
    while Instant::now() < end {
        for _ in 0..256 {
            if s.send(&buf).is_ok() {
                n += 1;
            }
        }
    }
    println!("sent={n}");
}

fn udp_rtt(addr: &str, n: u64) {
    let s = UdpSocket::bind("0.0.0.0:0").unwrap_or_else(|e| die(&format!("bind: {e}")));
    s.connect(addr)
        .unwrap_or_else(|e| die(&format!("connect {addr}: {e}")));
    let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(1)));
    let mut msg = [0x42u8; 64];
    let mut buf = [0u8; 2048];
    let mut lost = 0u64;
    let start = Instant::now();
    for i in 0..n {
        msg[..8].copy_from_slice(&i.to_le_bytes());
        loop {
            s.send(&msg)
                .unwrap_or_else(|e| die(&format!("send: {e}")));
            match s.recv(&mut buf) {
                Ok(k) if k == msg.len() && buf[..8] == msg[..8] => break,
                Ok(_) => {}
                Err(_) => {
                    lost += 1;
                    if lost > 100 {
                        die("more than 100 datagrams lost");
                    }
                }
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "rtts={n} secs={secs:.3} per_sec={:.0} lost={lost}",
        n as f64 / secs
    );
}

fn udp_peer(addr: &str, msg: &str, n: u64) {
    let s = UdpSocket::bind("0.0.0.0:0").unwrap_or_else(|e| die(&format!("bind: {e}")));
    s.send_to(msg.as_bytes(), addr)
        .unwrap_or_else(|e| die(&format!("send to {addr}: {e}")));
    let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(10)));
    let mut buf = vec![0u8; 65536];
    for _ in 0..n {
        let (k, from) = s
            .recv_from(&mut buf)
            .unwrap_or_else(|e| die(&format!("recv: {e}")));
        let data = String::from_utf8_lossy(&buf[..k]).into_owned();
        println!("from={from} data={data}");
        let _ = std::io::stdout().flush();
        let _ = s.send_to(format!("re:{data}").as_bytes(), from);
    }
}

fn ping(ip: &str) {
    #[repr(C)]
    struct SockaddrIn {
        family: u16,
        port: u16,
        addr: [u8; 4],
        zero: [u8; 8],
    }
    #[repr(C)]
    struct Timeval {
        sec: i64,
        usec: i64,
    }
    extern "C" {
        fn socket(domain: i32, ty: i32, proto: i32) -> i32;
        fn connect(fd: i32, addr: *const SockaddrIn, len: u32) -> i32;
        fn send(fd: i32, buf: *const u8, len: usize, flags: i32) -> isize;
        fn recv(fd: i32, buf: *mut u8, len: usize, flags: i32) -> isize;
        fn setsockopt(fd: i32, level: i32, name: i32, val: *const u8, len: u32) -> i32;
    }
    let a: std::net::Ipv4Addr = ip.parse().unwrap_or_else(|_| die("not an IPv4 address"));
    // SAFETY: plain socket calls on a descriptor we own, with correctly sized buffers
    // (AF_INET=2, SOCK_DGRAM=2, IPPROTO_ICMP=1, SOL_SOCKET=1, SO_RCVTIMEO=20).
    unsafe {
        let fd = socket(2, 2, 1);
        if fd < 0 {
            die(&format!("icmp socket: {}", std::io::Error::last_os_error()));
        }
        let tv = Timeval { sec: 2, usec: 0 };
        setsockopt(
            fd,
            1,
            20,
            (&tv as *const Timeval).cast(),
            std::mem::size_of::<Timeval>() as u32,
        );
        let sa = SockaddrIn {
            family: 2,
            port: 0,
            addr: a.octets(),
            zero: [0; 8],
        };
        if connect(fd, &sa, std::mem::size_of::<SockaddrIn>() as u32) < 0 {
            die(&format!("connect: {}", std::io::Error::last_os_error()));
        }
        let req = [8u8, 0, 0, 0, 0, 0, 0, 1, b's', b'k', b'i', b'f', b'f'];
        if send(fd, req.as_ptr(), req.len(), 0) < 0 {
            die(&format!("send: {}", std::io::Error::last_os_error()));
        }
        let mut b = [0u8; 256];
        let n = recv(fd, b.as_mut_ptr(), b.len(), 0);
        if n < 8 || b[0] != 0 || &b[8..n as usize] != b"skiff" {
            die(&format!("no echo reply: {}", std::io::Error::last_os_error()));
        }
    }
    println!("reply from {ip}");
}
