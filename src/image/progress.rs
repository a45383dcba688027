//! Pull progress: indicatif bars on a terminal, podman-style lines otherwise, nothing
//! with --quiet.

use std::io::IsTerminal;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Where progress goes for one pull.
#[derive(Clone)]
pub enum Progress {
    Quiet,
    Lines,
    Bars(MultiProgress),
}

/// Progress of one blob.
pub enum BlobProgress {
    None,
    Line(String),
    Bar(ProgressBar),
}

impl Progress {
    pub fn new(quiet: bool) -> Progress {
        if quiet {
            Progress::Quiet
        } else if std::io::stderr().is_terminal() {
            Progress::Bars(MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
        } else {
            Progress::Lines
        }
    }

    pub fn message(&self, msg: &str) {
        match self {
            Progress::Quiet => {}
            Progress::Lines => eprintln!("{msg}"),
            Progress::Bars(m) => {
                let _ = m.println(msg);
            }
        }
    }

    pub fn blob(&self, digest: &str, size: Option<u64>) -> BlobProgress {
        let short = short_digest(digest);
        match self {
            Progress::Quiet => BlobProgress::None,
            Progress::Lines => BlobProgress::Line(short),
            Progress::Bars(m) => {
                let bar = m.add(ProgressBar::new(size.unwrap_or(0)));
                let style = ProgressStyle::with_template(
                    "Copying blob {msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
                bar.set_style(style);
                bar.set_message(short);
                BlobProgress::Bar(bar)
            }
        }
    }
}

impl BlobProgress {
    /// Sets the total once it is known (an uncompressed size).
    pub fn set_len(&self, n: u64) {
        if let BlobProgress::Bar(b) = self {
            b.set_length(n);
        }
    }

    pub fn inc(&self, n: u64) {
        if let BlobProgress::Bar(b) = self {
            b.inc(n);
        }
    }
    pub fn done(&self, skipped: bool) {
        match self {
            BlobProgress::None => {}
            BlobProgress::Line(d) => {
                if skipped {
                    eprintln!("Copying blob {d} skipped: already exists");
                } else {
                    eprintln!("Copying blob {d} done");
                }
            }
            BlobProgress::Bar(b) => b.finish(),
        }
    }
}

/// A reader that advances a blob's bar by what passes through it.
pub struct Counting<'a, R> {
    pub inner: R,
    pub bar: &'a BlobProgress,
}

impl<R: std::io::Read> std::io::Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}

/// A spinner on a terminal for work without a byte count (prune removing layers);
/// None when stderr is not a terminal or with --quiet, so scripts see no escape codes.
pub fn spinner(msg: String) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template("{spinner} {msg} {elapsed}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    bar.set_style(style);
    bar.set_message(msg);
    bar.enable_steady_tick(std::time::Duration::from_millis(100));
    Some(bar)
}

fn short_digest(d: &str) -> String {
    let hex = d.strip_prefix("sha256:").unwrap_or(d);
    hex.chars().take(12).collect()
}
