//! The handshake between a parent and a freshly exec'd skiff helper that enters a user
//! namespace. The kernel refuses unshare(CLONE_NEWUSER) to a multi-threaded process, so
//! the helper does it first thing after exec, then waits while the parent (which can run
//! the setuid newuidmap/newgidmap on it) writes the ID maps.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command};

use nix::sched::{unshare, CloneFlags};

use super::{IdMapping, UsernsError};

/// Environment variable naming the helper's end of the sync socket.
pub const SYNC_FD_ENV: &str = "_SKIFF_SYNC_FD";
const USERNS_ENV: &str = "_SKIFF_USERNS";
const CHILD_FD: i32 = 3;

/// A running helper and the parent's end of its sync socket, which stays open for
/// whatever protocol the helper speaks after the handshake.
pub struct HelperChild {
    pub child: Child,
    pub sync: UnixStream,
}

/// Starts `exe args` as a helper; with a mapping, waits until the helper has unshared its
/// user namespace and writes the maps before letting it continue.
pub fn spawn_helper<I, S>(
    exe: &Path,
    args: I,
    mapping: Option<&IdMapping>,
    configure: impl FnOnce(&mut Command),
) -> Result<HelperChild, UsernsError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let (parent, child_end) = UnixStream::pair().map_err(|source| UsernsError::Spawn {
        exe: exe.to_path_buf(),
        source,
    })?;
    let child_fd = child_end.as_raw_fd();
    let mut cmd = Command::new(exe);
    cmd.args(args).env(SYNC_FD_ENV, CHILD_FD.to_string());
    if mapping.is_some() {
        cmd.env(USERNS_ENV, "1");
    } else {
        cmd.env_remove(USERNS_ENV);
    }
    configure(&mut cmd);
    // SAFETY: the closure runs between fork and exec and only calls dup2, which is
    // async-signal-safe; dup2 clears FD_CLOEXEC on the new descriptor so it survives exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(child_fd, CHILD_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    // A helper that fails (a full disk during unpack) closes its end of the pipes we
    // stream into: that must come back as EPIPE and the helper's own error, not kill
    // this process with the SIGPIPE that user-facing commands otherwise restore.
    // SAFETY: installing SIG_IGN runs no code of ours in signal context.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    tracing::debug!(exe = %exe.display(), "spawn helper");
    let child = cmd.spawn().map_err(|source| UsernsError::Spawn {
        exe: exe.to_path_buf(),
        source,
    })?;
    drop(child_end);
    let mut h = HelperChild {
        child,
        sync: parent,
    };
    if let Some(m) = mapping {
        if let Err(e) = handshake_parent(&mut h, m) {
            let _ = h.child.kill();
            let _ = h.child.wait();
            return Err(e);
        }
    }
    Ok(h)
}

fn handshake_parent(h: &mut HelperChild, m: &IdMapping) -> Result<(), UsernsError> {
    let mut b = [0u8; 1];
    match h.sync.read(&mut b) {
        Ok(1) if b[0] == b'U' => {}
        Ok(1) if b[0] == b'E' => {
            let mut msg = String::new();
            let _ = h.sync.read_to_string(&mut msg);
            return Err(UsernsError::Handshake(msg));
        }
        _ => {
            return Err(UsernsError::Handshake(
                "helper exited before entering its user namespace".into(),
            ))
        }
    }
    m.apply(h.child.id() as i32)?;
    h.sync
        .write_all(b"M")
        .map_err(|e| UsernsError::Handshake(format!("cannot signal helper: {e}")))
}

/// Called first thing in a helper: takes the sync socket from the parent and, when asked
/// to, enters a new user and mount namespace and waits for the parent to map IDs.
/// Returns None when the process was not started as a helper.
pub fn enter_from_parent() -> Result<Option<UnixStream>, UsernsError> {
    let Some(fd) = std::env::var(SYNC_FD_ENV)
        .ok()
        .and_then(|v| v.parse::<i32>().ok())
    else {
        return Ok(None);
    };
    let want_userns = std::env::var_os(USERNS_ENV).is_some();
    // SAFETY: changing the environment is sound here: helpers call this before any
    // thread exists.
    unsafe {
        std::env::remove_var(SYNC_FD_ENV);
        std::env::remove_var(USERNS_ENV);
    }
    // SAFETY: the parent placed our end of a socketpair at this fd number before exec and
    // nothing else in this fresh process owns it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let _ = nix::fcntl::fcntl(
        &owned,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    );
    let mut sync = UnixStream::from(owned);
    if want_userns {
        let flags = CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS;
        tracing::debug!(?flags, "unshare");
        if let Err(source) = unshare(flags) {
            let _ = sync.write_all(format!("Eunshare failed: {source}").as_bytes());
            return Err(UsernsError::Kernel {
                call: "unshare(CLONE_NEWUSER|CLONE_NEWNS)",
                source,
            });
        }
        sync.write_all(b"U")
            .map_err(|e| UsernsError::Handshake(format!("cannot reach parent: {e}")))?;
        let mut b = [0u8; 1];
        match sync.read(&mut b) {
            Ok(1) if b[0] == b'M' => {}
            _ => {
                return Err(UsernsError::Handshake(
                    "parent did not write the ID maps".into(),
                ))
            }
        }
        // Become root of the namespace explicitly so file creation uses ID 0 even if the
        // parent mapped us oddly.
        let root_uid = nix::unistd::Uid::from_raw(0);
        let root_gid = nix::unistd::Gid::from_raw(0);
        nix::unistd::setresgid(root_gid, root_gid, root_gid).map_err(|source| {
            UsernsError::Kernel {
                call: "setresgid(0)",
                source,
            }
        })?;
        nix::unistd::setresuid(root_uid, root_uid, root_uid).map_err(|source| {
            UsernsError::Kernel {
                call: "setresuid(0)",
                source,
            }
        })?;
        // Groups inherited from the host show up as nogroup; drop them where allowed
        // (setgroups is denied under a single-ID mapping).
        let _ = nix::unistd::setgroups(&[]);
    }
    Ok(Some(sync))
}

/// The start of every hidden helper command: take the sync socket (entering the user
/// namespace if the parent asked), or print why not and give the exit code. `what`
/// tells a user who ran the helper by hand where it belongs.
pub fn enter_helper(what: &str) -> Result<UnixStream, i32> {
    match enter_from_parent() {
        Ok(Some(s)) => Ok(s),
        Ok(None) => {
            eprintln!("Error: {what}");
            Err(125)
        }
        Err(e) => {
            eprintln!("Error: {e}");
            Err(125)
        }
    }
}
