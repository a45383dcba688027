//! The host-socket side of a translated TCP connection: writing the container's payload
//! (with the small overflow buffer), the window we advertise from the socket's free
//! send buffer, and the peek offset / discard calls behind host -> container data.

use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;

use super::TcpConn;

const SO_PEEK_OFF: libc::c_int = 42;
/// Payload from the container buffered per connection, and over all, when a host
/// socket takes less than the window promised; beyond that it is dropped (the
/// container sends it again).
const PENDING_MAX: usize = 256 << 10;
const PENDING_TOTAL: usize = 8 << 20;

/// The container's FIN, passed on once everything before it is written.
pub(super) fn shutdown_host(c: &TcpConn) {
    tracing::debug!(
        port = c.key.guest.1,
        "tcp: FIN from the container: shutdown(SHUT_WR)"
    );
    let _ = nix::sys::socket::shutdown(c.sock.as_raw_fd(), nix::sys::socket::Shutdown::Write);
}

/// Writes payload from the container to the host socket; what the socket does not take
/// (the advertised window is an estimate of its room) is kept in a small buffer, within
/// per-connection and global bounds. Returns the bytes taken (to acknowledge).
pub(super) fn take(c: &mut TcpConn, data: &[u8], total: &mut usize) -> Result<usize, Errno> {
    let mut sent = 0;
    if c.pending.is_empty() {
        match nix::sys::socket::send(
            c.sock.as_raw_fd(),
            data,
            nix::sys::socket::MsgFlags::MSG_DONTWAIT | nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
        ) {
            Ok(n) => sent = n,
            Err(Errno::EAGAIN) => {}
            Err(e) => return Err(e),
        }
    }
    let rest = &data[sent..];
    if rest.is_empty() {
        return Ok(sent);
    }
    let room = PENDING_MAX
        .saturating_sub(c.pending.len())
        .min(PENDING_TOTAL.saturating_sub(*total));
    let keep = rest.len().min(room);
    c.pending.extend_from_slice(&rest[..keep]);
    *total += keep;
    c.clamped = false; // re-armed after the batch: EPOLLOUT drains the buffer
    Ok(sent + keep)
}

/// Writes buffered payload once the host socket has room; false on a socket error.
pub(super) fn drain(c: &mut TcpConn, total: &mut usize) -> bool {
    if c.pending.is_empty() {
        return true;
    }
    match nix::sys::socket::send(
        c.sock.as_raw_fd(),
        &c.pending,
        nix::sys::socket::MsgFlags::MSG_DONTWAIT | nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
    ) {
        Ok(n) => {
            c.pending.drain(..n);
            *total -= n.min(*total);
            if c.pending.is_empty() {
                c.pending = Vec::new();
                if c.guest_fin {
                    shutdown_host(c);
                }
            }
            true
        }
        Err(Errno::EAGAIN) => true,
        Err(_) => false,
    }
}

/// Drops `n` acknowledged bytes from the head of the host socket.
pub(super) fn discard(sock: &OwnedFd, mut n: usize) {
    while n > 0 {
        // SAFETY: with MSG_TRUNC a TCP socket discards the bytes without copying them,
        // so the null buffer is never written.
        let r = unsafe {
            libc::recv(
                sock.as_raw_fd(),
                std::ptr::null_mut(),
                n,
                libc::MSG_TRUNC | libc::MSG_DONTWAIT,
            )
        };
        if r <= 0 {
            return;
        }
        n -= (r as usize).min(n);
    }
}

pub(super) fn set_peek_off(sock: &OwnedFd, off: i32) {
    // SAFETY: SO_PEEK_OFF takes an int we pass by pointer for the call.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_PEEK_OFF,
            (&off as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        );
    }
}

/// Room in the host socket's send buffer, as the window field (scaled) and in bytes.
pub(super) fn window(c: &mut TcpConn) -> (u16, u32) {
    if c.guest_fin {
        return (0, 0);
    }
    let fd = c.sock.as_raw_fd();
    let mut sndbuf: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    let mut outq: libc::c_int = 0;
    // SAFETY: getsockopt writes an int into sndbuf (len says its size); TIOCOUTQ
    // (SIOCOUTQ) writes an int into outq.
    unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&mut sndbuf as *mut libc::c_int).cast(),
            &mut len,
        );
        libc::ioctl(fd, libc::TIOCOUTQ, &mut outq);
    }
    let sndbuf = sndbuf.max(0) as u32;
    // The kernel counts buffer memory, not payload: keep a 1/16 margin.
    let free = (sndbuf - sndbuf / 16)
        .saturating_sub(outq.max(0) as u32)
        .saturating_sub(c.pending.len() as u32);
    let field = (free >> c.ws_ours).min(65535);
    c.adv = field << c.ws_ours;
    c.sndbuf = sndbuf;
    (field as u16, c.adv)
}
