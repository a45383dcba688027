//! `--sdnotify`: who tells systemd that a container's service is ready. `conmon` (the
//! default): the monitor sends MAINPID and READY=1 once the container runs. `container`:
//! the monitor sends only MAINPID, and the host's notify socket is bound into the
//! container (with NOTIFY_SOCKET pointing at it) so the program's own READY=1 reaches
//! systemd. `ignore`: nothing is sent.

use std::path::PathBuf;

use super::{CreateOptions, RuntimeError};

/// Where the notify socket appears inside the container (podman's path).
pub const CONTAINER_SOCKET: &str = "/run/notify/notify.sock";

/// The valid `--sdnotify` values.
pub fn validate(opts: &CreateOptions) -> Result<(), RuntimeError> {
    match opts.sdnotify.as_deref() {
        None | Some("conmon" | "container" | "ignore") => {}
        Some(other) => {
            return Err(RuntimeError::BadFlag {
                flag: "--sdnotify",
                detail: format!(
                    "invalid sdnotify value {other:?}: must be container, conmon or ignore"
                ),
            })
        }
    }
    host_socket(opts).map(|_| ())
}

/// The host socket to bind into the container: only in `container` mode, and only when
/// systemd gave us one (NOTIFY_SOCKET is read when the container is created).
pub fn host_socket(opts: &CreateOptions) -> Result<Option<PathBuf>, RuntimeError> {
    if opts.sdnotify.as_deref() != Some("container") {
        return Ok(None);
    }
    let Some(sock) = std::env::var_os("NOTIFY_SOCKET").filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let path = PathBuf::from(&sock);
    if !path.is_absolute() {
        return Err(RuntimeError::BadFlag {
            flag: "--sdnotify",
            detail: format!(
                "NOTIFY_SOCKET {} is not a socket path (an abstract socket cannot be bound into a container): use --sdnotify=conmon",
                path.display()
            ),
        });
    }
    Ok(Some(path))
}
