//! The container's terminal: allocated from the container's own devpts instance (so the
//! slave is a valid /dev/pts/N inside), its slave bound on /dev/console, its master
//! handed to the monitor.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use nix::fcntl::OFlag;
use nix::mount::{mount, MsFlags};

use super::mounts;

nix::ioctl_write_ptr_bad!(tiocswinsz, libc::TIOCSWINSZ, libc::winsize);
nix::ioctl_read_bad!(tiocgwinsz, libc::TIOCGWINSZ, libc::winsize);

/// Sets a terminal's size.
pub fn set_winsize(fd: &impl AsRawFd, rows: u16, cols: u16) {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads the winsize we own; on a non-tty it fails with ENOTTY.
    let _ = unsafe { tiocswinsz(fd.as_raw_fd(), &ws) };
}

/// A terminal's size (rows, cols), if `fd` is a terminal.
pub fn get_winsize(fd: &impl AsRawFd) -> Option<(u16, u16)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes into the winsize we own.
    unsafe { tiocgwinsz(fd.as_raw_fd(), &mut ws) }
        .ok()
        .map(|_| (ws.ws_row, ws.ws_col))
}

/// Opens a new pty pair in the container's devpts (mounted at <root>/dev/pts) and binds
/// the slave on <root>/dev/console. Returns (master, slave).
pub fn allocate(root: &OwnedFd) -> Result<(OwnedFd, OwnedFd), String> {
    let ptmx = mounts::open_in_root(
        root,
        Path::new("/dev/pts/ptmx"),
        OFlag::O_RDWR | OFlag::O_NOCTTY,
    )
    .map_err(|e| format!("opening the container's /dev/pts/ptmx: {e}"))?;
    let fd = ptmx.as_raw_fd();
    let mut unlock: libc::c_int = 0;
    let mut n: libc::c_uint = 0;
    // SAFETY: TIOCSPTLCK reads an int, TIOCGPTN writes an unsigned int; both ours.
    let ok = unsafe {
        libc::ioctl(fd, libc::TIOCSPTLCK, &mut unlock) == 0
            && libc::ioctl(fd, libc::TIOCGPTN, &mut n) == 0
    };
    if !ok {
        return Err(format!(
            "unlocking the pty: {}",
            std::io::Error::last_os_error()
        ));
    }
    let slave_path = format!("/dev/pts/{n}");
    let slave = mounts::open_in_root(
        root,
        Path::new(&slave_path),
        OFlag::O_RDWR | OFlag::O_NOCTTY,
    )
    .map_err(|e| format!("opening {slave_path}: {e}"))?;
    let console = mounts::ensure(root, Path::new("/dev/console"), false)?;
    tracing::debug!(slave = %slave_path, "bind pty slave on /dev/console");
    mount(
        Some(&mounts::fd_path(&slave)),
        &mounts::fd_path(&console),
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| format!("binding {slave_path} on /dev/console: {e}"))?;
    Ok((ptmx, slave))
}

/// Makes `slave` the controlling terminal and stdio of this (new session) process.
pub fn make_controlling(slave: &OwnedFd) -> Result<(), String> {
    nix::unistd::setsid().map_err(|e| format!("setsid: {e}"))?;
    // SAFETY: TIOCSCTTY takes an int argument; the fd is ours.
    if unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) } < 0 {
        return Err(format!(
            "making the pty the controlling terminal: {}",
            std::io::Error::last_os_error()
        ));
    }
    for target in 0..3 {
        // SAFETY: dup2 onto the standard descriptors of this process.
        if unsafe { libc::dup2(slave.as_raw_fd(), target) } < 0 {
            return Err(format!("dup2 pty: {}", std::io::Error::last_os_error()));
        }
    }
    Ok(())
}
