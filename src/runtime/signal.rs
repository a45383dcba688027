//! Signal names as users type them (`HUP`, `SIGHUP`, `1`), for kill, stop and
//! --stop-signal.

use std::sync::atomic::{AtomicI32, Ordering};

use nix::sys::signal::{signal, SigHandler, Signal};

/// The signals a supervisor passes on to the process it supervises.
pub const FORWARDED: &[Signal] = &[
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

static FORWARD_TO: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(sig: libc::c_int) {
    let pid = FORWARD_TO.load(Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// Passes `signals` received by this process on to `pid` (a supervised child: the
/// container's program under `--init`, an exec'd command, an exec helper). One target
/// per process, which is all any of them needs.
pub fn forward_to(pid: i32, signals: &[Signal]) {
    FORWARD_TO.store(pid, Ordering::Relaxed);
    for s in signals {
        // SAFETY: the handler only reads an atomic and calls kill, both signal-safe.
        unsafe {
            let _ = signal(*s, SigHandler::Handler(forward));
        }
    }
}

/// Gives the command default signal dispositions and an empty mask. Ignored signals
/// survive exec: without this the command would inherit Rust's ignored SIGPIPE and the
/// SIGINT/SIGQUIT a shell ignores for `skiff exec ... &`, and ctrl-c could not stop it.
pub fn reset_for_exec() {
    use nix::sys::signal::{signal, sigprocmask, SigHandler, SigSet, SigmaskHow, Signal};
    for s in Signal::iterator() {
        if s != Signal::SIGKILL && s != Signal::SIGSTOP {
            // SAFETY: installing SIG_DFL runs no code of ours in signal context.
            let _ = unsafe { signal(s, SigHandler::SigDfl) };
        }
    }
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}

/// Parses a signal name or number.
pub fn parse(s: &str) -> Result<Signal, String> {
    let t = s.trim();
    if let Ok(n) = t.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| format!("invalid signal: {s}"));
    }
    let upper = t.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<Signal>()
        .map_err(|_| format!("invalid signal: {s}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(parse("HUP").unwrap(), Signal::SIGHUP);
        assert_eq!(parse("sigterm").unwrap(), Signal::SIGTERM);
        assert_eq!(parse("9").unwrap(), Signal::SIGKILL);
        assert!(parse("NOPE").is_err());
        assert!(parse("999").is_err());
    }
}
