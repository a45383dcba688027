//! The small line protocol between the monitor and attached clients. A client connects
//! (or is the process that started the monitor), passes its stdin, stdout and stderr
//! with SCM_RIGHTS together with a hello line, then sends signals and window sizes; the
//! monitor answers `ok`, and later `exit <code>`, `detached` or `error <code> <message>`.

use nix::sys::signal::Signal;

pub const OK: &str = "ok\n";
pub const DETACHED: &str = "detached\n";

pub fn exit_line(code: i32) -> String {
    format!("exit {code}\n")
}

pub fn error_line(code: i32, msg: &str) -> String {
    format!("error {code} {}\n", msg.replace('\n', " "))
}

/// What a client says when it attaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// Forward the client's stdin to the container.
    pub stdin: bool,
    /// The byte sequence that detaches (empty: none).
    pub detach_keys: Vec<u8>,
}

impl Hello {
    pub fn line(&self) -> String {
        format!(
            "attach stdin={} keys={}\n",
            u8::from(self.stdin),
            hex::encode(&self.detach_keys)
        )
    }

    pub fn parse(b: &[u8]) -> Option<Hello> {
        let s = std::str::from_utf8(b).ok()?;
        let mut words = s.split_whitespace();
        if words.next()? != "attach" {
            return None;
        }
        let mut h = Hello {
            stdin: false,
            detach_keys: Vec::new(),
        };
        for w in words {
            match w.split_once('=')? {
                ("stdin", v) => h.stdin = v == "1",
                ("keys", v) => h.detach_keys = hex::decode(v).ok()?,
                _ => {}
            }
        }
        Some(h)
    }
}

/// Requests from a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Signal(Signal),
    Resize(u16, u16),
}

impl Command {
    pub fn line(&self) -> String {
        match self {
            Command::Signal(s) => format!("signal {}\n", *s as i32),
            Command::Resize(r, c) => format!("resize {r} {c}\n"),
        }
    }

    pub fn parse(b: &[u8]) -> Option<Command> {
        let s = std::str::from_utf8(b).ok()?;
        let mut w = s.split_whitespace();
        match w.next()? {
            "signal" => Some(Command::Signal(
                Signal::try_from(w.next()?.parse::<i32>().ok()?).ok()?,
            )),
            "resize" => Some(Command::Resize(
                w.next()?.parse().ok()?,
                w.next()?.parse().ok()?,
            )),
            _ => None,
        }
    }
}

/// Parses podman's `--detach-keys` syntax: comma-separated `ctrl-<c>` or single
/// characters; the empty string disables detaching.
pub fn parse_detach_keys(spec: &str) -> Result<Vec<u8>, String> {
    if spec.is_empty() {
        return Ok(Vec::new());
    }
    spec.split(',')
        .map(|k| {
            if let Some(c) = k.strip_prefix("ctrl-") {
                let ch = match c.as_bytes() {
                    [b] => *b,
                    _ => return Err(format!("invalid detach key {k:?}")),
                };
                match ch {
                    b'a'..=b'z' => Ok(ch - b'a' + 1),
                    b'@' => Ok(0),
                    b'[' => Ok(27),
                    b'\\' => Ok(28),
                    b']' => Ok(29),
                    b'^' => Ok(30),
                    b'_' => Ok(31),
                    _ => Err(format!("invalid detach key {k:?}")),
                }
            } else if k.len() == 1 {
                Ok(k.as_bytes()[0])
            } else {
                Err(format!(
                    "invalid detach key {k:?}: use ctrl-<letter> or single characters"
                ))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let h = Hello {
            stdin: true,
            detach_keys: vec![16, 17],
        };
        assert_eq!(Hello::parse(h.line().as_bytes()), Some(h));
        let c = Command::Resize(24, 80);
        assert_eq!(Command::parse(c.line().as_bytes()), Some(c));
        let s = Command::Signal(Signal::SIGHUP);
        assert_eq!(Command::parse(s.line().as_bytes()), Some(s));
    }

    #[test]
    fn detach_keys() {
        assert_eq!(parse_detach_keys("ctrl-p,ctrl-q").unwrap(), vec![16, 17]);
        assert_eq!(parse_detach_keys("ctrl-a,x").unwrap(), vec![1, b'x']);
        assert!(parse_detach_keys("").unwrap().is_empty());
        assert!(parse_detach_keys("ctrl-").is_err());
        assert!(parse_detach_keys("hello").is_err());
    }
}
