//! lantool: UDP on a user-defined network's link for skiff's member tests (broadcast,
//! multicast, chosen source addresses), which busybox's nc cannot do. Built static
//! (`rustc -O -C target-feature=+crt-static`, no crates) and run inside busybox test
//! images. Not part of skiff.
//!
//!   listen PORT [GROUP]        print `got MSG from IP` for every datagram to PORT (on
//!                              any address; GROUP: join that multicast group first),
//!                              flushing each line; runs until killed
//!                              (a datagram over 64 bytes: `got N bytes from IP`)
//!   send ADDR:PORT MSG [FROM]  send MSG in one datagram (broadcast allowed), from the
//!                              local address FROM if given; print `sent`. MSG
//!                              `size=N`: N bytes of `x` (over the MTU: fragments)

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};

fn die(msg: &str) -> ! {
    eprintln!("lantool: {msg}");
    std::process::exit(2)
}

fn listen(port: &str, group: Option<&str>) {
    let s = UdpSocket::bind(format!("0.0.0.0:{port}"))
        .unwrap_or_else(|e| die(&format!("bind {port}: {e}")));
    if let Some(g) = group {
        let g: Ipv4Addr = g.parse().unwrap_or_else(|_| die("bad group"));
        s.join_multicast_v4(&g, &Ipv4Addr::UNSPECIFIED)
            .unwrap_or_else(|e| die(&format!("join {g}: {e}")));
    }
    println!("listening");
    let _ = std::io::stdout().flush();
    let mut buf = vec![0u8; 65536];
    loop {
        match s.recv_from(&mut buf) {
            Ok((n, from)) if n > 64 => println!("got {n} bytes from {}", from.ip()),
            Ok((n, from)) => {
                println!(
                    "got {} from {}",
                    String::from_utf8_lossy(&buf[..n]),
                    from.ip()
                );
                let _ = std::io::stdout().flush();
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => die(&format!("recv: {e}")),
        }
    }
}

fn send(to: &str, msg: &str, from: Option<&str>) {
    let to: SocketAddr = to.parse().unwrap_or_else(|_| die("bad ADDR:PORT"));
    let s = UdpSocket::bind(format!("{}:0", from.unwrap_or("0.0.0.0")))
        .unwrap_or_else(|e| die(&format!("bind {from:?}: {e}")));
    s.set_broadcast(true)
        .unwrap_or_else(|e| die(&format!("SO_BROADCAST: {e}")));
    let data = match msg.strip_prefix("size=") {
        Some(n) => vec![b'x'; n.parse().unwrap_or_else(|_| die("bad size"))],
        None => msg.as_bytes().to_vec(),
    };
    s.send_to(&data, to)
        .unwrap_or_else(|e| die(&format!("send to {to}: {e}")));
    println!("sent");
}

fn main() {
    let v: Vec<String> = std::env::args().collect();
    let arg = |i: usize| v.get(i).map(String::as_str);
    match (arg(1), arg(2), arg(3)) {
        (Some("listen"), Some(port), group) => listen(port, group),
        (Some("send"), Some(to), Some(msg)) => send(to, msg, arg(4)),
        _ => die("usage: lantool listen PORT [GROUP] | send ADDR:PORT MSG [FROM]"),
    }
}
