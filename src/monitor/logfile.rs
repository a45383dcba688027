//! Container logs in podman's k8s-file format: `<RFC3339Nano> <stdout|stderr> <F|P> <text>`,
//! one record per line; `P` marks a partial line continued by the next record. The
//! monitor writes them; `skiff logs` reads them.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, Write};
use std::path::{Path, PathBuf};

/// Which stream a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Appends records to the log file, truncating it when it grows past `max_size` (as
/// conmon does).
pub struct LogWriter {
    file: File,
    path: PathBuf,
    written: u64,
    max_size: Option<u64>,
}

impl LogWriter {
    pub fn open(path: &Path, max_size: Option<u64>) -> std::io::Result<LogWriter> {
        let file = File::options().create(true).append(true).open(path)?;
        let written = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(LogWriter {
            file,
            path: path.to_path_buf(),
            written,
            max_size,
        })
    }

    /// Writes one chunk of output as records: one `F` record per complete line and a `P`
    /// record for a trailing partial line.
    pub fn write(&mut self, stream: Stream, data: &[u8]) {
        let ts = chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, false);
        let mut out = Vec::with_capacity(data.len() + 64);
        for piece in data.split_inclusive(|b| *b == b'\n') {
            let (text, tag) = match piece.strip_suffix(b"\n") {
                Some(t) => (t, "F"),
                None => (piece, "P"),
            };
            let start = out.len();
            out.extend_from_slice(format!("{ts} {} {tag} ", stream.name()).as_bytes());
            out.extend_from_slice(text);
            out.push(b'\n');
            // The limit is kept record by record, as conmon does: a big read never
            // pushes the file far past max-size.
            if let Some(max) = self.max_size {
                if self.written + out.len() as u64 > max {
                    self.flush(&out[..start]);
                    let _ = self.file.set_len(0);
                    let _ = self.file.rewind();
                    self.written = 0;
                    out.drain(..start);
                }
            }
        }
        self.flush(&out);
    }

    fn flush(&mut self, out: &[u8]) {
        if out.is_empty() {
            return;
        }
        if self.file.write_all(out).is_ok() {
            self.written += out.len() as u64;
        } else {
            tracing::debug!(path = %self.path.display(), "log write failed");
        }
    }
}

/// A log line reassembled from its records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub time: String,
    pub unix_nanos: i64,
    pub stream: Stream,
    pub text: Vec<u8>,
    /// The line ended with a newline (its last record was `F`).
    pub complete: bool,
}

/// Parses one record; None for a malformed line.
fn parse_record(line: &[u8]) -> Option<(String, Stream, bool, &[u8])> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let ts = std::str::from_utf8(parts.next()?).ok()?.to_string();
    let stream = match parts.next()? {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return None,
    };
    let full = match parts.next()? {
        b"F" => true,
        b"P" => false,
        _ => return None,
    };
    Some((ts, stream, full, parts.next().unwrap_or(b"")))
}

/// Reads log lines starting at byte `offset`; returns them and the offset after the last
/// complete record, so a follower can continue from there.
pub fn read_lines(path: &Path, offset: u64) -> std::io::Result<(Vec<LogLine>, u64)> {
    let mut f = File::open(path)?;
    f.seek(std::io::SeekFrom::Start(offset))?;
    let mut r = BufReader::new(f);
    let mut pos = offset;
    let mut lines: Vec<LogLine> = Vec::new();
    let mut pending: [Option<LogLine>; 2] = [None, None];
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = r.read_until(b'\n', &mut buf)?;
        if n == 0 || buf.last() != Some(&b'\n') {
            break;
        }
        pos += n as u64;
        let rec = &buf[..buf.len() - 1];
        let Some((ts, stream, full, text)) = parse_record(rec) else {
            continue;
        };
        let slot = &mut pending[stream as usize];
        let entry = slot.get_or_insert_with(|| LogLine {
            unix_nanos: chrono::DateTime::parse_from_rfc3339(&ts)
                .ok()
                .and_then(|d| d.timestamp_nanos_opt())
                .unwrap_or(0),
            time: ts.clone(),
            stream,
            text: Vec::new(),
            complete: false,
        });
        entry.text.extend_from_slice(text);
        if full {
            let mut l = slot.take().expect("slot was just filled");
            l.complete = true;
            lines.push(l);
        }
    }
    // Partial lines without their end yet are shown as they are (the container may
    // never finish them), and the offset stays before them only if nothing followed.
    for l in pending.into_iter().flatten() {
        lines.push(l);
    }
    lines.sort_by_key(|l| l.unix_nanos);
    Ok((lines, pos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_partial_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ctr.log");
        let mut w = LogWriter::open(&p, None).unwrap();
        w.write(Stream::Stdout, b"hello\nwor");
        w.write(Stream::Stdout, b"ld\n");
        w.write(Stream::Stderr, b"oops\n");
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(text.lines().count(), 4);
        assert!(text.lines().nth(1).unwrap().contains(" stdout P wor"));
        let (lines, off) = read_lines(&p, 0).unwrap();
        let texts: Vec<_> = lines
            .iter()
            .map(|l| String::from_utf8_lossy(&l.text).to_string())
            .collect();
        assert_eq!(texts, vec!["hello", "world", "oops"]);
        assert_eq!(off, text.len() as u64);
    }

    #[test]
    fn truncates_past_max_size() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ctr.log");
        let mut w = LogWriter::open(&p, Some(200)).unwrap();
        for i in 0..20 {
            w.write(Stream::Stdout, format!("line {i}\n").as_bytes());
        }
        assert!(std::fs::metadata(&p).unwrap().len() <= 200);
        let (lines, _) = read_lines(&p, 0).unwrap();
        assert_eq!(lines.last().unwrap().text, b"line 19");
    }
}
