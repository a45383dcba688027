//! Running commands: [`Cmd`] (user, env, cwd, stdin, timeout) and its [`Output`].

use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::TestUser;

pub(super) fn default_timeout() -> Duration {
    let secs = std::env::var("SKIFF_TEST_TIMEOUT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    Duration::from_secs(secs)
}

/// A command to run; built by [`TestEnv::cmd`] / [`TestEnv::host_cmd`].
#[derive(Clone, Debug)]
pub struct Cmd {
    pub(super) program: OsString,
    pub(super) args: Vec<OsString>,
    pub(super) env: Vec<(OsString, OsString)>,
    pub(super) env_remove: Vec<OsString>,
    pub(super) user: Option<TestUser>,
    pub(super) cwd: PathBuf,
    pub(super) stdin: Option<Vec<u8>>,
    pub(super) timeout: Duration,
}

impl Cmd {
    pub fn arg(mut self, a: impl AsRef<OsStr>) -> Self {
        self.args.push(a.as_ref().into());
        self
    }

    pub fn args<S: AsRef<OsStr>>(mut self, args: &[S]) -> Self {
        self.args
            .extend(args.iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, val: impl AsRef<OsStr>) -> Self {
        self.env.push((key.as_ref().into(), val.as_ref().into()));
        self
    }

    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.env_remove.push(key.as_ref().into());
        self
    }

    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.cwd = dir.as_ref().into();
        self
    }

    /// Bytes fed to stdin (default: /dev/null).
    pub fn stdin(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(data.into());
        self
    }

    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// The command line as a shell would need it to reproduce the run.
    pub fn cmdline(&self) -> String {
        let mut s = String::new();
        let removed = |k: &OsString| self.env_remove.contains(k);
        for (k, v) in self.env.iter().filter(|(k, _)| !removed(k)) {
            let _ = write!(s, "{}={} ", k.to_string_lossy(), quote(v));
        }
        for a in self.argv() {
            let _ = write!(s, "{} ", quote(&a));
        }
        s.pop();
        s
    }

    fn argv(&self) -> Vec<OsString> {
        let mut argv: Vec<OsString> = Vec::new();
        if let Some(u) = &self.user {
            // setpriv keeps the environment we pass (no --reset-env) and execs in place,
            // so the pid we time out and kill is skiff's own.
            argv.push("setpriv".into());
            argv.push(format!("--reuid={}", u.uid).into());
            argv.push(format!("--regid={}", u.gid).into());
            argv.push("--init-groups".into());
            argv.push("--".into());
        }
        argv.push(self.program.clone());
        argv.extend(self.args.iter().cloned());
        argv
    }

    /// A plain std Command with the same user, env and cwd (for tests that need to
    /// spawn and signal it themselves). It is its own process group leader.
    pub fn into_command(self) -> Command {
        let argv = self.argv();
        let mut c = Command::new(&argv[0]);
        c.args(&argv[1..]).env_clear().current_dir(&self.cwd);
        for (k, v) in &self.env {
            c.env(k, v);
        }
        for k in &self.env_remove {
            c.env_remove(k);
        }
        c.process_group(0);
        c
    }

    /// Run to completion; panics on timeout (after killing the process group) or if
    /// the command cannot be started.
    pub fn output(self) -> Output {
        self.try_output().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`Cmd::output`] but timeouts and spawn failures are errors.
    pub fn try_output(self) -> Result<Output, String> {
        let cmdline = self.cmdline();
        let timeout = self.timeout;
        let stdin = self.stdin.clone();
        let mut c = self.into_command();
        c.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        let start = Instant::now();
        let mut child = c
            .spawn()
            .map_err(|e| format!("cannot run {cmdline}: {e}"))?;
        let pid = child.id();
        if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
            std::thread::spawn(move || {
                let _ = pipe.write_all(&data);
            });
        }
        let out = Collector::start(&mut child);
        let status =
            wait_timeout(&mut child, timeout).map_err(|e| format!("wait for {cmdline}: {e}"))?;
        let Some(status) = status else {
            // Kill the whole process group: skiff and anything it forked that stayed.
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = child.wait();
            let (stdout, stderr) = out.finish(Duration::from_secs(2));
            return Err(format!(
                "TIMEOUT after {timeout:?}: {cmdline}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                String::from_utf8_lossy(&stdout),
                String::from_utf8_lossy(&stderr)
            ));
        };
        let elapsed = start.elapsed();
        let (stdout, stderr) = out.finish(Duration::from_secs(3));
        if out.leaked() {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            return Err(format!(
                "{cmdline} exited ({status}) but a process it started still holds its \
                 stdout/stderr open (leaked fd)\n--- stdout ---\n{}\n--- stderr ---\n{}",
                String::from_utf8_lossy(&stdout),
                String::from_utf8_lossy(&stderr)
            ));
        }
        Ok(Output {
            cmdline,
            status,
            stdout,
            stderr,
            elapsed,
        })
    }
}

fn quote(s: &OsStr) -> String {
    let s = s.to_string_lossy();
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./:=@,+%^".contains(c);
    if !s.is_empty() && s.chars().all(plain) {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn wait_timeout(child: &mut Child, timeout: Duration) -> std::io::Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    let mut nap = Duration::from_millis(1);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(Some(status)),
            Ok(None) if Instant::now() >= deadline => return Ok(None),
            Ok(None) => {
                std::thread::sleep(nap);
                nap = (nap * 2).min(Duration::from_millis(20));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Reads stdout and stderr on two threads into shared buffers.
struct Collector {
    bufs: [Arc<Mutex<Vec<u8>>>; 2],
    threads: Vec<JoinHandle<()>>,
}

impl Collector {
    fn start(child: &mut Child) -> Collector {
        let bufs: [Arc<Mutex<Vec<u8>>>; 2] = [Arc::default(), Arc::default()];
        let mut threads = Vec::new();
        let pipes: [Option<Box<dyn Read + Send>>; 2] = [
            child.stdout.take().map(|p| Box::new(p) as _),
            child.stderr.take().map(|p| Box::new(p) as _),
        ];
        for (pipe, buf) in pipes.into_iter().zip(bufs.iter()) {
            let (Some(mut pipe), buf) = (pipe, Arc::clone(buf)) else {
                continue;
            };
            threads.push(std::thread::spawn(move || {
                let mut chunk = [0u8; 16384];
                while let Ok(n @ 1..) = pipe.read(&mut chunk) {
                    buf.lock()
                        .expect("output buffer")
                        .extend_from_slice(&chunk[..n]);
                }
            }));
        }
        Collector { bufs, threads }
    }

    /// Wait up to `grace` for both pipes to reach EOF, then take what was read.
    fn finish(&self, grace: Duration) -> (Vec<u8>, Vec<u8>) {
        let deadline = Instant::now() + grace;
        while self.threads.iter().any(|t| !t.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let take = |b: &Arc<Mutex<Vec<u8>>>| b.lock().expect("output buffer").clone();
        (take(&self.bufs[0]), take(&self.bufs[1]))
    }

    fn leaked(&self) -> bool {
        self.threads.iter().any(|t| !t.is_finished())
    }
}

/// The result of a finished command.
#[derive(Clone, Debug)]
pub struct Output {
    pub cmdline: String,
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub elapsed: Duration,
}

impl Output {
    /// Exit code, or None if killed by a signal.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// stdout with surrounding whitespace trimmed (e.g. an ID printed by `run -d`).
    pub fn stdout_trim(&self) -> String {
        self.stdout_str().trim().to_string()
    }

    /// Panics, showing everything, unless the command exited 0.
    #[track_caller]
    pub fn success(&self) -> &Output {
        self.assert_code(0)
    }

    /// Panics, showing everything, unless the command exited with `code`.
    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Output {
        if self.code() != Some(code) {
            panic!("expected exit code {code}\n{}", self.describe());
        }
        self
    }

    /// Panics unless the command failed (any non-zero exit code).
    #[track_caller]
    pub fn failure(&self) -> &Output {
        if self.status.success() {
            panic!("expected failure\n{}", self.describe());
        }
        self
    }

    /// Panics unless stderr contains `needle`.
    #[track_caller]
    pub fn stderr_contains(&self, needle: &str) -> &Output {
        if !self.stderr_str().contains(needle) {
            panic!("expected {needle:?} on stderr\n{}", self.describe());
        }
        self
    }

    /// Panics unless stdout contains `needle`.
    #[track_caller]
    pub fn stdout_contains(&self, needle: &str) -> &Output {
        if !self.stdout_str().contains(needle) {
            panic!("expected {needle:?} on stdout\n{}", self.describe());
        }
        self
    }

    /// The command, how it ended, and its whole output: for panic messages.
    pub fn describe(&self) -> String {
        let how = match (self.status.code(), self.status.signal()) {
            (Some(c), _) => format!("exit code {c}"),
            (None, Some(s)) => format!("killed by signal {s}"),
            _ => format!("{}", self.status),
        };
        format!(
            "command: {}\nstatus: {how} after {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.cmdline,
            self.elapsed,
            self.stdout_str(),
            self.stderr_str()
        )
    }
}
