//! The connector: a process that lives in the container's user and network namespaces
//! and opens sockets there for the monitor. A socket belongs to the network namespace it
//! was created in, so a socket made (and connected to 127.0.0.1:PORT) here reaches the
//! container's service, and once passed to the monitor over SCM_RIGHTS the monitor
//! splices into it from the host side.
//!
//! The connector is forked from the monitor rather than exec'd: the monitor is
//! single-threaded (it clones the container's init itself), so its child is too and may
//! setns into a user namespace (the kernel only refuses threaded callers). Forking costs
//! a fraction of an exec of the skiff binary, needs no command-line protocol, and the
//! child drops every descriptor but its socket before it joins anything. It dies with
//! the monitor (PR_SET_PDEATHSIG) and when the monitor closes its socket.
//!
//! Protocol (SOCK_SEQPACKET, one message each way per socket):
//! request `[kind u8][0][port u16 BE][token u32 LE]`, kind 1 = TCP, 2 = UDP;
//! reply `[token u32 LE][errno i32 LE]`, with the socket attached unless errno is a
//! failure (0 or EINPROGRESS carry the socket).

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use nix::sched::CloneFlags;
use nix::sys::socket::{
    connect, socket, socketpair, AddressFamily, SockFlag, SockType, SockaddrIn,
};
use nix::unistd::{ForkResult, Pid};

use super::portspec::Protocol;
use super::NetworkError;

/// The monitor's handle on a running connector.
pub struct Connector {
    pub sock: OwnedFd,
    pub pid: Pid,
}

pub const REQUEST_LEN: usize = 8;
pub const REPLY_LEN: usize = 8;

pub fn request(proto: Protocol, port: u16, token: u32) -> [u8; REQUEST_LEN] {
    let mut b = [0u8; REQUEST_LEN];
    b[0] = match proto {
        Protocol::Tcp => 1,
        Protocol::Udp => 2,
    };
    b[2..4].copy_from_slice(&port.to_be_bytes());
    b[4..8].copy_from_slice(&token.to_le_bytes());
    b
}

/// (token, errno) of a reply.
pub fn parse_reply(b: &[u8]) -> Option<(u32, i32)> {
    let token = u32::from_le_bytes(b.get(0..4)?.try_into().ok()?);
    let errno = i32::from_le_bytes(b.get(4..8)?.try_into().ok()?);
    Some((token, errno))
}

impl Drop for Connector {
    fn drop(&mut self) {
        // Closing the socket ends it too; the kill makes sure. The monitor's SIGCHLD
        // handling reaps it.
        let _ = nix::sys::signal::kill(self.pid, nix::sys::signal::Signal::SIGKILL);
    }
}

/// Forks a connector into the namespaces given (the user namespace first: it grants
/// the capability that joining the network namespace needs). Only call from a
/// single-threaded process.
pub fn spawn(userns: Option<&OwnedFd>, netns: &OwnedFd) -> Result<Connector, NetworkError> {
    let (mine, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|source| NetworkError::Connector {
        call: "socketpair",
        source,
    })?;
    let parent = nix::unistd::getpid();
    tracing::debug!("fork port connector");
    // SAFETY: the monitor is single-threaded, so the child's copy of the address space is
    // consistent (no lock held by another thread); the child only makes syscalls and
    // ends in _exit.
    match unsafe { nix::unistd::fork() } {
        Ok(ForkResult::Child) => {
            drop(mine);
            let code = child(parent, userns, netns, theirs);
            // SAFETY: _exit skips destructors of the state copied from the monitor.
            unsafe { libc::_exit(code) }
        }
        Ok(ForkResult::Parent { child }) => Ok(Connector {
            sock: mine,
            pid: child,
        }),
        Err(source) => Err(NetworkError::Connector {
            call: "fork",
            source,
        }),
    }
}

fn child(parent: Pid, userns: Option<&OwnedFd>, netns: &OwnedFd, sock: OwnedFd) -> i32 {
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
    if nix::unistd::getppid() != parent {
        return 1;
    }
    // Nothing inside the container may read this process's memory through /proc.
    let _ = nix::sys::prctl::set_dumpable(false);
    // Tell it apart from the monitor in ps and top (same command line).
    let _ = nix::sys::prctl::set_name(c"skiff-ports");
    if let Some(u) = userns {
        if nix::sched::setns(u, CloneFlags::CLONE_NEWUSER).is_err() {
            return 2;
        }
    }
    if nix::sched::setns(netns, CloneFlags::CLONE_NEWNET).is_err() {
        return 3;
    }
    close_all_but(sock.as_raw_fd());
    serve(&sock);
    0
}

/// Closes every descriptor but `keep` (the monitor's listeners, log, client terminals).
pub(super) fn close_all_but(keep: RawFd) {
    // SAFETY: close_range only closes descriptors of this process; the ones closed are
    // not used again (the connector works through `keep` alone).
    unsafe {
        if keep > 0 {
            libc::syscall(libc::SYS_close_range, 0u32, (keep - 1) as u32, 0u32);
        }
        libc::syscall(libc::SYS_close_range, (keep + 1) as u32, u32::MAX, 0u32);
    }
}

fn serve(sock: &OwnedFd) {
    let mut buf = [0u8; 64];
    loop {
        let n = match nix::sys::socket::recv(
            sock.as_raw_fd(),
            &mut buf,
            nix::sys::socket::MsgFlags::empty(),
        ) {
            Ok(0) => return,
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return,
        };
        if n < REQUEST_LEN {
            continue;
        }
        let port = u16::from_be_bytes([buf[2], buf[3]]);
        let token = [buf[4], buf[5], buf[6], buf[7]];
        let ty = if buf[0] == 2 {
            SockType::Datagram
        } else {
            SockType::Stream
        };
        let (errno, fd) = open(ty, port);
        let mut reply = [0u8; REPLY_LEN];
        reply[0..4].copy_from_slice(&token);
        reply[4..8].copy_from_slice(&errno.to_le_bytes());
        let fds: Vec<RawFd> = fd.iter().map(|f| f.as_raw_fd()).collect();
        loop {
            match crate::runtime::fdpass::send_fds(sock.as_fd(), &reply, &fds) {
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return,
                Ok(_) => break,
            }
        }
    }
}

/// A non-blocking socket of this namespace, connected (or connecting) to
/// 127.0.0.1:port; the errno of the connect.
fn open(ty: SockType, port: u16) -> (i32, Option<OwnedFd>) {
    let fd = match socket(
        AddressFamily::Inet,
        ty,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    ) {
        Ok(fd) => fd,
        Err(e) => return (e as i32, None),
    };
    let addr = SockaddrIn::new(127, 0, 0, 1, port);
    match connect(fd.as_raw_fd(), &addr) {
        Ok(()) => (0, Some(fd)),
        Err(nix::errno::Errno::EINPROGRESS) => (libc::EINPROGRESS, Some(fd)),
        Err(e) => (e as i32, None),
    }
}
