//! TCP between the container and host sockets, translated segment by segment (see
//! stack.rs). Container → host: payload in sequence is written to the host socket and
//! acknowledged by what the socket took; the window we advertise is the room left in
//! the socket's send buffer, so the container never sends what would not fit.
//! Host → container: data is peeked (MSG_PEEK with SO_PEEK_OFF) into segments within
//! the container's window and only dropped from the socket (MSG_TRUNC) once the
//! container acknowledges it; a retransmission is a rewind of the peek offset. Memory
//! per connection is a few words: the kernel holds the bytes in flight.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::epoll::EpollFlags;
use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, SockaddrStorage};

use super::frame::{self, TcpSeg, ACK, FIN, PSH, RST, SYN};
use super::relay::key;
use super::stack::{map_dest_ip, register, Out, Stack, K_TCP};
use super::tap;

mod sock;
use sock::{discard, drain, set_peek_off, shutdown_host, take, window};

/// Connections at once; more SYNs are refused with a reset.
pub(super) const MAX_CONNS: usize = 4096;
/// Our window scale towards the container (windows up to 8 MiB).
const OUR_WS: u8 = 7;
/// The largest segment the tap carries (IPv4; IPv6 headers take 20 bytes more).
const MSS_MAX: u32 = tap::MTU - 40;

/// The largest segment for a connection with `peer`.
fn mss_max(peer: IpAddr) -> u32 {
    match peer {
        IpAddr::V4(_) => MSS_MAX,
        IpAddr::V6(_) => MSS_MAX - 20,
    }
}
/// Unacknowledged data older than this is sent again (the link is a memory copy: only
/// a full queue loses frames).
const RTO: Duration = Duration::from_millis(200);

/// A connection as the container sees it: (its address, port), (peer address, port),
/// of either family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct TcpKey {
    guest: (IpAddr, u16),
    peer: (IpAddr, u16),
}

pub(super) struct TcpConn {
    sock: OwnedFd,
    generation: u32,
    key: TcpKey,
    /// The host connect() completed and the SYN-ACK went out.
    open: bool,
    guest_isn: u32,
    /// Next sequence number expected from the container.
    rcv_nxt: u32,
    guest_fin: bool,
    iss: u32,
    /// Oldest byte sent to the container and not acknowledged (= the socket's head).
    snd_una: u32,
    snd_nxt: u32,
    /// The container's window, in bytes.
    snd_wnd: u32,
    ws_guest: u8,
    ws_ours: u8,
    /// Largest segment the container takes.
    mss: u32,
    fin_sent: bool,
    fin_acked: bool,
    rto_at: Option<Instant>,
    dup_acks: u8,
    /// The window we last advertised was small: send an update once the host socket
    /// has room (an EPOLLOUT edge, armed by re-registering the socket).
    clamped: bool,
    /// The window last advertised and the socket's send buffer then, in bytes.
    adv: u32,
    sndbuf: u32,
    /// Payload acknowledged to the container that the host socket has not taken yet.
    pending: Vec<u8>,
    ack_owed: bool,
    due: bool,
}

/// A segment from the container (`src` → `dst`, either family).
pub(super) fn guest_segment(st: &mut Stack, src: IpAddr, dst: IpAddr, payload: &[u8]) {
    let Some(seg) = frame::tcp(payload) else {
        return;
    };
    let k = TcpKey {
        guest: (src, seg.sport),
        peer: (dst, seg.dport),
    };
    if let Some(&idx) = st.tcp_index.get(&k) {
        segment(st, idx, &seg);
        return;
    }
    if seg.flags & RST != 0 {
        return;
    }
    if seg.flags & (SYN | ACK) == SYN {
        open(st, k, &seg);
    } else {
        reset_unknown(&mut st.out, k, &seg);
    }
}

/// A reset answering a segment of no (or a refused) connection.
fn reset_unknown(out: &mut Out, k: TcpKey, seg: &TcpSeg) {
    let (seq, ack, flags) = if seg.flags & ACK != 0 {
        (seg.ack, 0, RST)
    } else {
        let len = seg.payload.len() as u32 + u32::from(seg.flags & (SYN | FIN) != 0);
        (0, seg.seq.wrapping_add(len), RST | ACK)
    };
    let n = frame::tcp_header(
        &mut out.buf,
        out.mac,
        k.peer,
        k.guest,
        seq,
        ack,
        flags,
        0,
        &[],
        0,
    );
    out.send(n);
}

fn isn(k: &TcpKey) -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u32)
        .unwrap_or(0);
    t.wrapping_mul(2_654_435_761) ^ (u32::from(k.guest.1) << 16) ^ u32::from(k.peer.1)
}

/// A SYN: connect to where the destination maps on the host; the SYN-ACK waits for the
/// connect, so a refusal reaches the container as a reset.
fn open(st: &mut Stack, k: TcpKey, seg: &TcpSeg) {
    let Some(addr) = map_dest_ip(&st.opts, k.peer.0, k.peer.1) else {
        tracing::debug!(dst = %k.peer.0, port = k.peer.1, "tcp: destination refused");
        reset_unknown(&mut st.out, k, seg);
        return;
    };
    if st.tcp.live >= st.max_tcp {
        tracing::debug!(live = st.tcp.live, "tcp: too many connections, refusing");
        reset_unknown(&mut st.out, k, seg);
        return;
    }
    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let sock = match socket(
        family,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    ) {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(error = %e, "tcp: socket");
            reset_unknown(&mut st.out, k, seg);
            return;
        }
    };
    let _ = nix::sys::socket::setsockopt(&sock, nix::sys::socket::sockopt::TcpNoDelay, &true);
    tracing::debug!(%addr, "tcp: connect");
    match connect(sock.as_raw_fd(), &SockaddrStorage::from(addr)) {
        Ok(()) | Err(Errno::EINPROGRESS) => {}
        Err(e) => {
            tracing::debug!(%addr, error = %e, "tcp: connect failed");
            reset_unknown(&mut st.out, k, seg);
            return;
        }
    }
    let (ws_guest, ws_ours) = match seg.wscale {
        Some(w) => (w, OUR_WS),
        None => (0, 0),
    };
    let iss = isn(&k);
    let generation = st.next_generation();
    let conn = TcpConn {
        sock,
        generation,
        key: k,
        open: false,
        guest_isn: seg.seq,
        rcv_nxt: seg.seq.wrapping_add(1),
        guest_fin: false,
        iss,
        snd_una: iss.wrapping_add(1),
        snd_nxt: iss.wrapping_add(1),
        snd_wnd: u32::from(seg.window),
        ws_guest,
        ws_ours,
        mss: u32::from(seg.mss.unwrap_or(536)).clamp(64, mss_max(k.peer.0)),
        fin_sent: false,
        fin_acked: false,
        rto_at: None,
        dup_acks: 0,
        clamped: false,
        adv: 0,
        sndbuf: 0,
        pending: Vec::new(),
        ack_owed: false,
        due: false,
    };
    let idx = st.tcp.insert(conn);
    let flags =
        EpollFlags::EPOLLIN | EpollFlags::EPOLLOUT | EpollFlags::EPOLLRDHUP | EpollFlags::EPOLLET;
    let ok = st.tcp.slots[idx]
        .as_ref()
        .is_some_and(|c| register(&st.epoll, &c.sock, flags, key(K_TCP, generation, idx)));
    if !ok {
        st.tcp.remove(idx);
        reset_unknown(&mut st.out, k, seg);
        return;
    }
    st.tcp_index.insert(k, idx);
}

fn mark(st: &mut Stack, idx: usize) {
    if let Some(c) = st.tcp.get_mut(idx) {
        if !c.due {
            c.due = true;
            st.ack_due.push(idx);
        }
    }
}

/// A segment of a known connection.
fn segment(st: &mut Stack, idx: usize, seg: &TcpSeg) {
    let Some(c) = st.tcp.get_mut(idx) else { return };
    if seg.flags & RST != 0 {
        tracing::debug!(port = c.key.guest.1, "tcp: reset by the container");
        close(st, idx, true);
        return;
    }
    if seg.flags & SYN != 0 {
        if c.open && seg.seq == c.guest_isn {
            // Our SYN-ACK was lost.
            syn_ack(c, &mut st.out);
        }
        return;
    }
    if !c.open {
        return;
    }
    if seg.flags & ACK != 0 {
        on_ack(c, seg);
    }
    if seg.payload.is_empty() && seg.flags & FIN == 0 && seg.seq != c.rcv_nxt {
        // A window probe or an old segment: answer with where we are.
        c.ack_owed = true;
    }
    if !seg.payload.is_empty() {
        c.ack_owed = true;
        let have = c.rcv_nxt.wrapping_sub(seg.seq) as i32;
        if have >= 0 && (have as usize) < seg.payload.len() && !c.guest_fin {
            let data = &seg.payload[have as usize..];
            match take(c, data, &mut st.pending_bytes) {
                Ok(n) => c.rcv_nxt = c.rcv_nxt.wrapping_add(n as u32),
                Err(e) => {
                    tracing::debug!(error = %e, "tcp: send to host");
                    reset_guest(c, &mut st.out);
                    close(st, idx, true);
                    return;
                }
            }
        }
    }
    if seg.flags & FIN != 0 && !c.guest_fin {
        let fin_seq = seg.seq.wrapping_add(seg.payload.len() as u32);
        if fin_seq == c.rcv_nxt {
            c.guest_fin = true;
            c.rcv_nxt = c.rcv_nxt.wrapping_add(1);
            if c.pending.is_empty() {
                shutdown_host(c);
            }
        }
        c.ack_owed = true;
    }
    mark(st, idx);
}

fn on_ack(c: &mut TcpConn, seg: &TcpSeg) {
    let ack = seg.ack;
    let advance = ack.wrapping_sub(c.snd_una) as i32;
    let within = c.snd_nxt.wrapping_sub(ack) as i32 >= 0;
    let wnd = u32::from(seg.window) << c.ws_guest;
    if advance > 0 && within {
        let mut bytes = advance as u32;
        if c.fin_sent && ack == c.snd_nxt && !c.fin_acked {
            c.fin_acked = true;
            bytes -= 1;
        }
        discard(&c.sock, bytes as usize);
        c.snd_una = ack;
        c.dup_acks = 0;
        c.rto_at = (c.snd_una != c.snd_nxt).then(|| Instant::now() + RTO);
    } else if advance == 0
        && seg.payload.is_empty()
        && seg.flags & FIN == 0
        && c.snd_una != c.snd_nxt
        && wnd == c.snd_wnd
    {
        c.dup_acks += 1;
        if c.dup_acks == 3 {
            rewind(c);
        }
    }
    c.snd_wnd = wnd;
}

/// Sends everything unacknowledged again from the socket's head.
fn rewind(c: &mut TcpConn) {
    c.snd_nxt = c.snd_una;
    if c.fin_sent && !c.fin_acked {
        c.fin_sent = false;
    }
    c.dup_acks = 0;
    c.rto_at = None;
    set_peek_off(&c.sock, 0);
}

fn syn_ack(c: &mut TcpConn, out: &mut Out) {
    let mss = (mss_max(c.key.peer.0) as u16).to_be_bytes();
    let opts_ws = [2, 4, mss[0], mss[1], 1, 3, 3, OUR_WS];
    let opts = if c.ws_ours > 0 {
        &opts_ws[..]
    } else {
        &opts_ws[..4]
    };
    // The window of a SYN is never scaled.
    let (w, _) = window(c);
    let w = (u32::from(w) << c.ws_ours).min(65535) as u16;
    let n = frame::tcp_header(
        &mut out.buf,
        out.mac,
        c.key.peer,
        c.key.guest,
        c.iss,
        c.rcv_nxt,
        SYN | ACK,
        w,
        opts,
        0,
    );
    out.send(n);
}

fn reset_guest(c: &TcpConn, out: &mut Out) {
    control(c, out, RST | ACK, 0);
}

/// A segment without payload at the connection's current sequence and ACK numbers.
fn control(c: &TcpConn, out: &mut Out, flags: u8, window: u16) {
    let n = frame::tcp_header(
        &mut out.buf,
        out.mac,
        c.key.peer,
        c.key.guest,
        c.snd_nxt,
        c.rcv_nxt,
        flags,
        window,
        &[],
        0,
    );
    out.send(n);
}

/// Removes a connection; `abort` resets the host side (SO_LINGER 0) instead of a FIN.
fn close(st: &mut Stack, idx: usize, abort: bool) {
    if let Some(c) = st.tcp.remove(idx) {
        st.pending_bytes -= c.pending.len().min(st.pending_bytes);
        if abort {
            let _ = nix::sys::socket::setsockopt(
                &c.sock,
                nix::sys::socket::sockopt::Linger,
                &libc::linger {
                    l_onoff: 1,
                    l_linger: 0,
                },
            );
        }
        st.tcp_index.remove(&c.key);
    }
}

/// Readiness of a host socket.
pub(super) fn host_event(st: &mut Stack, idx: usize, generation: u32, flags: EpollFlags) {
    let Some(c) = st.tcp.get_mut(idx) else { return };
    if c.generation != generation {
        return;
    }
    let err =
        nix::sys::socket::getsockopt(&c.sock, nix::sys::socket::sockopt::SocketError).unwrap_or(0);
    if !c.open {
        if err != 0
            || (flags.contains(EpollFlags::EPOLLHUP) && !flags.contains(EpollFlags::EPOLLOUT))
        {
            tracing::debug!(
                error = err,
                port = c.key.peer.1,
                "tcp: connect failed: reset"
            );
            let n = frame::tcp_header(
                &mut st.out.buf,
                st.out.mac,
                c.key.peer,
                c.key.guest,
                0,
                c.rcv_nxt,
                RST | ACK,
                0,
                &[],
                0,
            );
            st.out.send(n);
            close(st, idx, false);
        } else if flags.contains(EpollFlags::EPOLLOUT) {
            c.open = true;
            set_peek_off(&c.sock, 0);
            syn_ack(c, &mut st.out);
        }
        return;
    }
    if err != 0 {
        tracing::debug!(error = err, "tcp: host socket error: reset");
        reset_guest(c, &mut st.out);
        close(st, idx, true);
        return;
    }
    if flags.contains(EpollFlags::EPOLLOUT) {
        if !drain(c, &mut st.pending_bytes) {
            reset_guest(c, &mut st.out);
            close(st, idx, true);
            return;
        }
        if c.clamped {
            c.clamped = false;
            c.ack_owed = true;
        }
    }
    mark(st, idx);
}

/// After a batch: data the window allows, then an ACK if one is owed and no segment
/// carried it; finished connections go. True if the connection waits for an ACK.
pub(super) fn after_batch(st: &mut Stack, idx: usize) -> bool {
    let Some(c) = st.tcp.get_mut(idx) else {
        return false;
    };
    c.due = false;
    if !c.open {
        return false;
    }
    let (sent, failed) = pump(c, &mut st.out);
    if failed {
        reset_guest(c, &mut st.out);
        close(st, idx, true);
        return false;
    }
    if c.ack_owed && !sent {
        let (w, _) = window(c);
        control(c, &mut st.out, ACK, w);
    }
    c.ack_owed = false;
    // A window below a third of the send buffer (where the kernel stops calling the
    // socket writable) may leave the container waiting: ask for an
    // EPOLLOUT edge when the socket drains. Re-registering polls the socket, which marks
    // it out of room (SOCK_NOSPACE) so the kernel wakes us once it has room again.
    if !c.clamped && (!c.pending.is_empty() || (!c.guest_fin && c.adv < c.sndbuf / 3)) {
        c.clamped = true;
        let ev = nix::sys::epoll::EpollEvent::new(
            EpollFlags::EPOLLIN
                | EpollFlags::EPOLLOUT
                | EpollFlags::EPOLLRDHUP
                | EpollFlags::EPOLLET,
            key(K_TCP, c.generation, idx),
        );
        if let Err(e) = st.epoll.modify(&c.sock, &mut { ev }) {
            tracing::debug!(error = %e, "tcp: epoll re-arm");
        }
    }
    if c.guest_fin && c.fin_acked && c.pending.is_empty() {
        tracing::debug!(port = c.key.guest.1, "tcp: closed");
        close(st, idx, false);
    }
    st.tcp.get_mut(idx).is_some_and(|c| c.rto_at.is_some())
}

/// Sends host data within the container's window. (segments sent?, socket failed?)
fn pump(c: &mut TcpConn, out: &mut Out) -> (bool, bool) {
    let mut sent = false;
    if c.fin_sent {
        return (false, false);
    }
    let mut win: Option<u16> = None;
    loop {
        let in_flight = c.snd_nxt.wrapping_sub(c.snd_una);
        let room = c.snd_wnd.saturating_sub(in_flight);
        if room == 0 {
            break;
        }
        let n = room.min(c.mss).min(mss_max(c.key.peer.0)) as usize;
        let at = frame::l4_at(c.key.peer.0) + 20;
        // SAFETY: recv writes at most n bytes into the buffer at `at`, which has room
        // for a whole segment (BUF is sized for the MTU).
        let r = unsafe {
            libc::recv(
                c.sock.as_raw_fd(),
                out.buf[at..at + n].as_mut_ptr().cast(),
                n,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        let w = *win.get_or_insert_with(|| window(c).0);
        if r == 0 {
            control(c, out, FIN | ACK, w);
            c.snd_nxt = c.snd_nxt.wrapping_add(1);
            c.fin_sent = true;
            c.rto_at.get_or_insert_with(|| Instant::now() + RTO);
            return (true, false);
        }
        if r < 0 {
            let e = Errno::last();
            if e == Errno::EAGAIN || e == Errno::EINTR {
                break;
            }
            tracing::debug!(error = %e, "tcp: peek from host");
            return (sent, true);
        }
        let k = r as usize;
        let len = frame::tcp_header(
            &mut out.buf,
            out.mac,
            c.key.peer,
            c.key.guest,
            c.snd_nxt,
            c.rcv_nxt,
            ACK | PSH,
            w,
            &[],
            k,
        );
        out.send(len);
        sent = true;
        c.snd_nxt = c.snd_nxt.wrapping_add(k as u32);
        c.rto_at.get_or_insert_with(|| Instant::now() + RTO);
    }
    (sent, false)
}

/// Retransmission timers; true if some connection still waits for an ACK.
pub(super) fn timers(st: &mut Stack, now: Instant) -> bool {
    let mut due = Vec::new();
    let mut waiting = false;
    for (idx, slot) in st.tcp.slots.iter_mut().enumerate() {
        let Some(c) = slot else { continue };
        waiting |= c.rto_at.is_some_and(|t| t > now);
        if c.rto_at.is_some_and(|t| t <= now) {
            tracing::debug!(
                port = c.key.guest.1,
                una = c.snd_una,
                nxt = c.snd_nxt,
                "tcp: retransmit"
            );
            rewind(c);
            due.push(idx);
        }
    }
    for idx in due {
        mark(st, idx);
    }
    waiting
}
