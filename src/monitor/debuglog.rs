//! The monitor's own debug log, `monitor.log` next to the container's `ctr.log` (what
//! conmon sends to the journal). Once the container starts, the monitor's stdio is
//! /dev/null, so without this file everything it and its network stack report at
//! `--log-level debug` (dropped frames, failing sockets, restarts) would be lost. It
//! exists only when the command that started the monitor asked for debug or trace.
//!
//! A plain file descriptor written once per event, not tracing-appender: the monitor
//! stays single-threaded (it clones into new namespaces) and small.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

/// The file's name in the container's directory (`skiff rm` removes it with the rest).
pub const FILE_NAME: &str = "monitor.log";

/// Past this size nothing more is written (one last line says so): a chatty network
/// under a long-running container must not fill the disk, and rotation is not worth
/// its code for a debugging aid.
pub const LIMIT: u64 = 8 << 20;

struct DebugLog {
    file: File,
    /// The monitor's pid. The container's init is a clone of the monitor that closes
    /// every inherited descriptor before exec: its events must not go to whatever file
    /// later takes this descriptor's number, so they keep going where they always went.
    owner: u32,
    /// The last line has been written: this monitor writes nothing more.
    full: AtomicBool,
}

static LOG: OnceLock<DebugLog> = OnceLock::new();

/// Opens (appending) `dir/monitor.log` and sends this process's tracing events there
/// from now on, when debug events are enabled at all; otherwise does nothing and no
/// file is made. Called once the monitor has closed the descriptors it inherited.
pub fn open(dir: &Path) {
    if !tracing::enabled!(tracing::Level::DEBUG) || LOG.get().is_some() {
        return;
    }
    let path = dir.join(FILE_NAME);
    let opened = File::options()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(&path);
    match opened {
        Ok(file) => {
            let owner = std::process::id();
            let _ = LOG.set(DebugLog {
                file,
                owner,
                full: AtomicBool::new(false),
            });
            tracing::debug!(path = %path.display(), pid = owner, "monitor log opened");
        }
        // Still reaches the monitor's stderr (an attached client's terminal).
        Err(e) => tracing::debug!(path = %path.display(), error = %e, "open monitor log"),
    }
}

/// Where this process's tracing events go instead of stderr, if anywhere.
pub fn writer() -> Option<Writer> {
    let log = LOG.get()?;
    (std::process::id() == log.owner).then_some(Writer(log))
}

/// Writes each formatted event with one append, up to about [`LIMIT`] (a later monitor
/// of the same container may add one more last line).
pub struct Writer(&'static DebugLog);

/// What to do with an event of `n` bytes when the file holds `len`.
#[derive(Debug, PartialEq, Eq)]
enum Decision {
    Write,
    /// It does not fit: write the last line instead, and nothing after it.
    Last,
    Drop,
}

fn decide(len: u64, n: usize, limit: u64) -> Decision {
    if len >= limit {
        Decision::Drop
    } else if len + n as u64 > limit {
        Decision::Last
    } else {
        Decision::Write
    }
}

impl Write for Writer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let log = self.0;
        if log.full.load(Ordering::Relaxed) {
            return Ok(buf.len());
        }
        // One fstat per event: the bound holds across the monitors that append to the
        // same file (each `start`), and debug logging is not the fast path.
        let len = log.file.metadata().map(|m| m.len()).unwrap_or(0);
        let mut f = &log.file;
        match decide(len, buf.len(), LIMIT) {
            Decision::Write => f.write_all(buf)?,
            Decision::Last => {
                log.full.store(true, Ordering::Relaxed);
                let last = format!(
                    "monitor.log reached {} MiB: later events of this container's monitor are not written\n",
                    LIMIT >> 20
                );
                f.write_all(last.as_bytes())?;
            }
            Decision::Drop => log.full.store(true, Ordering::Relaxed),
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_stop_at_the_bound_with_one_last_line() {
        assert_eq!(decide(0, 100, 1000), Decision::Write);
        assert_eq!(decide(900, 100, 1000), Decision::Write);
        assert_eq!(decide(901, 100, 1000), Decision::Last);
        assert_eq!(decide(1000, 1, 1000), Decision::Drop);
        assert_eq!(decide(5000, 1, 1000), Decision::Drop);
    }
}
