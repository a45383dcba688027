//! Hot-plugging an interface into a running container (`network connect` while it
//! runs, as podman does): the monitor forks a child that joins the container's user
//! namespace, then its network namespace, creates the tap there (eth1, eth2, ...,
//! addressed and routed as the init does at start) and passes it back over a
//! socketpair (SCM_RIGHTS); the monitor serves it with a Stack of its own. Taking a
//! network off is the monitor dropping that Stack: the tap is not persistent, so the
//! interface goes with its last descriptor.
//!
//! Forked, not exec'd, like the port connector (connector.rs): the monitor is
//! single-threaded, so its child may setns into a user namespace; the child only makes
//! syscalls and ends in _exit.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::sched::CloneFlags;
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use nix::sys::wait::waitpid;
use nix::unistd::ForkResult;

use super::tap::Addressing;

/// Creates interface `name` in the container's network namespace `netns` (joined
/// through its user namespace `userns`, when it has one of its own) with `addr` and a
/// default route at `metric`; returns the tap. Only call from a single-threaded
/// process.
pub fn create_in(
    userns: Option<&OwnedFd>,
    netns: &OwnedFd,
    name: &str,
    addr: &Addressing,
    metric: u16,
) -> Result<OwnedFd, String> {
    let (mine, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| format!("adding {name} to the container: socketpair: {e}"))?;
    tracing::debug!(name, "fork the interface helper");
    // SAFETY: the monitor is single-threaded, so the child's copy of the address space is
    // consistent (no lock held by another thread); the child only makes syscalls and
    // ends in _exit.
    let child = match unsafe { nix::unistd::fork() } {
        Ok(ForkResult::Child) => {
            drop(mine);
            let msg = match plug(userns, netns, &theirs, name, addr, metric) {
                Ok(fd) => crate::runtime::fdpass::send_fds(theirs.as_fd(), b"N", &[fd.as_raw_fd()])
                    .map(|_| 0),
                Err(e) => nix::sys::socket::send(
                    theirs.as_raw_fd(),
                    format!("E{e}").as_bytes(),
                    nix::sys::socket::MsgFlags::empty(),
                )
                .map(|_| 1),
            };
            // SAFETY: _exit skips destructors of the state copied from the monitor.
            unsafe { libc::_exit(msg.unwrap_or(2)) }
        }
        Ok(ForkResult::Parent { child }) => child,
        Err(e) => return Err(format!("adding {name} to the container: fork: {e}")),
    };
    drop(theirs);
    let mut buf = [0u8; 1024];
    let got = crate::runtime::fdpass::recv_fds(mine.as_fd(), &mut buf);
    let _ = waitpid(child, None);
    match got {
        Ok((n, mut fds)) if n > 0 && buf[0] == b'N' => fds
            .pop()
            .ok_or_else(|| format!("adding {name} to the container: no tap came back")),
        Ok((n, _)) if n > 1 && buf[0] == b'E' => Err(String::from_utf8_lossy(&buf[1..n]).into()),
        Ok(_) => Err(format!(
            "adding {name} to the container: the helper exited without an answer"
        )),
        Err(e) => Err(format!("adding {name} to the container: {e}")),
    }
}

/// In the forked child: join the namespaces, let go of every descriptor of the
/// monitor's but `sock`, and create the tap.
fn plug(
    userns: Option<&OwnedFd>,
    netns: &OwnedFd,
    sock: &OwnedFd,
    name: &str,
    addr: &Addressing,
    metric: u16,
) -> Result<OwnedFd, String> {
    // Nothing inside the container may read this process's memory through /proc.
    let _ = nix::sys::prctl::set_dumpable(false);
    if let Some(u) = userns {
        tracing::debug!("setns into the container's user namespace");
        nix::sched::setns(u, CloneFlags::CLONE_NEWUSER)
            .map_err(|e| format!("joining the container's user namespace: {e}"))?;
    }
    tracing::debug!("setns into the container's network namespace");
    nix::sched::setns(netns, CloneFlags::CLONE_NEWNET)
        .map_err(|e| format!("joining the container's network namespace: {e}"))?;
    super::connector::close_all_but(sock.as_raw_fd());
    // TUNSETIFF would take over a tap of that name, or fail with EINVAL on another kind.
    if nix::net::if_::if_nametoindex(name).is_ok() {
        return Err(format!(
            "the container already has an interface named {name}: rename or remove it inside the container, or connect the network while the container is stopped"
        ));
    }
    super::tap::create_named(name, Some(addr), metric)
}
