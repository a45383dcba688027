//! Issue 3, the container lifecycle around the monitor: detached and foreground runs,
//! logs, ptys, attach and detach, stop/kill/wait/restart/start -a, restart policies,
//! `--rm`, `--init`, a killed monitor, 50 parallel runs and removals, log drivers and
//! bad input. Everything runs as the unprivileged test user with real processes; pty
//! cases go through a real pseudo-terminal (a small one here, or `script`).

use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::images;
use crate::require;
use crate::support::{assert_error, inspect_one, is_full_id, listing, pull, snapshot, store};
use crate::util::{skiff_bin, Cmd, TestEnv};

macro_rules! skip_if_no_script {
    () => {
        crate::skip_if!(
            !Path::new("/usr/bin/script").exists(),
            "script (util-linux) is not installed"
        );
    };
}

/// A rootless env with busybox pulled; returns it and the image reference.
fn setup() -> Result<(TestEnv, String), String> {
    let fx = images::try_fixtures()?;
    let env = TestEnv::try_rootless()?;
    pull(&env, &fx.busybox.reference);
    Ok((env, fx.busybox.reference.clone()))
}

/// Polls `f` every 50 ms until it is true; panics with `what` after `limit`.
#[track_caller]
fn until(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < limit, "timed out after {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `run -d ARGS...`, asserting success; returns the 64-hex ID it prints.
#[track_caller]
fn run_d(env: &TestEnv, args: &[&str]) -> String {
    let mut full = vec!["run", "-d"];
    full.extend_from_slice(args);
    let out = env.run(&full);
    out.success();
    let id = out.stdout_trim();
    assert!(
        is_full_id(&id),
        "run -d must print the ID\n{}",
        out.describe()
    );
    id
}

fn status(env: &TestEnv, name: &str) -> String {
    inspect_one(env, &[name])["State"]["Status"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

fn exit_code(env: &TestEnv, name: &str) -> i64 {
    inspect_one(env, &[name])["State"]["ExitCode"]
        .as_i64()
        .unwrap_or(-1)
}

/// Waits until the container has exited (up to `limit`).
#[track_caller]
fn wait_exited(env: &TestEnv, name: &str, limit: Duration) {
    until(limit, &format!("{name} exits"), || {
        status(env, name) == "exited"
    });
}

/// The `ps -a` line of a container (by name), or None.
fn ps_line(env: &TestEnv, name: &str) -> Option<String> {
    let out = env.run(&["ps", "-a"]);
    out.success();
    out.stdout_str()
        .lines()
        .find(|l| l.split_whitespace().last() == Some(name))
        .map(String::from)
}

fn logs(env: &TestEnv, args: &[&str]) -> crate::util::Output {
    let mut full = vec!["logs"];
    full.extend_from_slice(args);
    let out = env.run(&full);
    out.success();
    out
}

fn attach_dir(env: &TestEnv) -> PathBuf {
    env.runtime_dir.join("skiff/attach")
}

fn containers_dir(env: &TestEnv) -> PathBuf {
    store(env).join("containers")
}

/// Whether a host process is gone (or a zombie: this host's PID 1 reaps nothing).
fn dead(pid: i64) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s
            .rfind(')')
            .and_then(|i| {
                s[i + 2..]
                    .split(' ')
                    .next()
                    .map(|st| st == "Z" || st == "X")
            })
            .unwrap_or(true),
    }
}

/// Host pids whose command line contains `needle` (via pgrep -f).
fn pgrep_f(needle: &str) -> Vec<i32> {
    let out = Command::new("pgrep")
        .args(["-f", needle])
        .output()
        .expect("pgrep");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .filter(|p: &i32| !dead(i64::from(*p)))
        .collect()
}

// ------------------------------------------------------------------------------ pty

/// A command on a real pseudo-terminal of our own: it is a session leader with the pty
/// as its controlling terminal; we hold the master, collect everything it prints and
/// can type into it.
struct Pty {
    master: OwnedFd,
    child: Child,
    out: Arc<Mutex<Vec<u8>>>,
}

impl Pty {
    fn spawn(cmd: Cmd, rows: u16, cols: u16) -> Pty {
        let cmdline = cmd.cmdline();
        let user = cmd.clone().into_command();
        let ws = nix::pty::Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = nix::pty::openpty(Some(&ws), None).expect("openpty");
        for fd in [pty.master.as_raw_fd(), pty.slave.as_raw_fd()] {
            // SAFETY: fcntl on descriptors we own; other test threads must not
            // inherit them.
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        }
        // The command runs as the test user: give it its terminal.
        if let Some(u) = &crate::util::TestEnv::try_rootless()
            .ok()
            .and_then(|e| e.user.clone())
            .filter(|u| u.switch)
        {
            // SAFETY: fchown on a descriptor we own.
            unsafe { libc::fchown(pty.slave.as_raw_fd(), u.uid, u.gid) };
        }
        // The harness's Command is its own process group leader, which setsid refuses:
        // rebuild it without that.
        let mut c = Command::new(user.get_program());
        c.args(user.get_args()).env_clear();
        for (k, v) in user.get_envs() {
            if let Some(v) = v {
                c.env(k, v);
            }
        }
        if let Some(d) = user.get_current_dir() {
            c.current_dir(d);
        }
        let slave = pty.slave;
        c.stdin(Stdio::from(slave.try_clone().expect("dup")))
            .stdout(Stdio::from(slave.try_clone().expect("dup")))
            .stderr(Stdio::from(slave.try_clone().expect("dup")));
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut c, || {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = c.spawn().unwrap_or_else(|e| panic!("spawn {cmdline}: {e}"));
        drop(slave);
        let out: Arc<Mutex<Vec<u8>>> = Arc::default();
        let reader = master_reader(&pty.master);
        let sink = Arc::clone(&out);
        std::thread::spawn(move || {
            let mut r = reader;
            let mut b = [0u8; 4096];
            // EIO once every holder of the slave side is gone.
            while let Ok(n @ 1..) = r.read(&mut b) {
                sink.lock().expect("pty buffer").extend_from_slice(&b[..n]);
            }
        });
        Pty {
            master: pty.master,
            child,
            out,
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().expect("pty buffer")).into_owned()
    }

    fn send(&self, bytes: &[u8]) {
        let mut f = master_reader(&self.master);
        f.write_all(bytes).expect("write to the pty");
    }

    /// Waits until the output contains `needle`.
    #[track_caller]
    fn expect(&self, needle: &str, limit: Duration) {
        let t0 = Instant::now();
        while !self.text().contains(needle) {
            if t0.elapsed() > limit {
                panic!(
                    "{needle:?} did not appear on the terminal in {limit:?}; it shows:\n{}",
                    self.text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the command's exit code (None: still running after `limit`).
    fn wait(&mut self, limit: Duration) -> Option<i32> {
        let t0 = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().expect("wait") {
                return Some(st.code().unwrap_or(-1));
            }
            if t0.elapsed() > limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn set_size(&self, rows: u16, cols: u16) {
        let ws = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ on our pty master with a valid winsize; the kernel sends
        // SIGWINCH to the terminal's foreground process group.
        unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A File over a dup of the master (reads and writes both go through it).
fn master_reader(master: &OwnedFd) -> fs::File {
    // SAFETY: F_DUPFD_CLOEXEC returns a new descriptor that the File then owns.
    let fd = unsafe { libc::fcntl(master.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    assert!(fd >= 0, "dup the pty master");
    // SAFETY: fd is fresh and owned by nobody else.
    fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Runs `cmd` (a shell command line) under `script`, i.e. with a real terminal.
fn in_script(env: &TestEnv, cmd: &str) -> crate::util::Output {
    env.host_cmd("script", &["-qec", cmd, "/dev/null"])
        .env("TERM", "dumb")
        .timeout(Duration::from_secs(60))
        .output()
}

// ------------------------------------------------------------------------------ tests

#[test]
fn run_d_returns_at_once_inside_command_substitution() {
    let (env, bb) = require!(setup());
    let bin = skiff_bin().display().to_string();
    // The monitor must hold none of the shell's descriptors, or $(...) never returns
    // (the harness also flags a leaked stdout/stderr).
    let script = format!("id=$({bin} run -d --name web {bb} sleep 1000); echo \"id=$id\"");
    let out = env
        .host_cmd("sh", &["-c", &script])
        .timeout(Duration::from_secs(30))
        .output();
    out.success();
    let id = out
        .stdout_trim()
        .strip_prefix("id=")
        .unwrap_or_default()
        .to_string();
    assert!(is_full_id(&id), "{}", out.describe());
    assert!(
        out.elapsed < Duration::from_secs(5),
        "run -d took {:?}",
        out.elapsed
    );
    let line = ps_line(&env, "web").expect("web in ps -a");
    assert!(line.contains("Up "), "{line}");
    assert!(line.starts_with(&id[..12]), "{line}");
    let ps = env.run(&["ps"]);
    ps.success().stdout_contains("web");
    let c = inspect_one(&env, &["web"]);
    assert_eq!(c["Id"], id.as_str());
    assert_eq!(c["State"]["Running"], true, "{c}");
}

#[test]
fn logs_streams_tail_timestamps_and_partial_lines() {
    let (env, bb) = require!(setup());
    run_d(
        &env,
        &[
            "--name",
            "talk",
            &bb,
            "sh",
            "-c",
            "echo one; echo two; echo to-err >&2; sleep 0.3; echo three; printf no-newline; sleep 1000",
        ],
    );
    until(Duration::from_secs(10), "the output is logged", || {
        env.run(&["logs", "talk"])
            .stdout_str()
            .contains("no-newline")
    });
    let out = logs(&env, &["talk"]);
    assert_eq!(
        out.stdout_str(),
        "one\ntwo\nthree\nno-newline",
        "{}",
        out.describe()
    );
    assert_eq!(out.stderr_str(), "to-err\n", "{}", out.describe());

    // --tail counts lines across both streams, as podman does.
    let out = logs(&env, &["--tail", "2", "talk"]);
    assert_eq!(out.stdout_str(), "three\nno-newline", "{}", out.describe());
    assert_eq!(out.stderr_str(), "", "{}", out.describe());
    let out = logs(&env, &["--tail", "0", "talk"]);
    assert_eq!(
        out.stdout_str() + &out.stderr_str(),
        "",
        "{}",
        out.describe()
    );

    // -t: every line starts with an RFC 3339 timestamp.
    let out = logs(&env, &["-t", "talk"]);
    let text = out.stdout_str();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{}", out.describe());
    for (l, want) in lines.iter().zip(["one", "two", "three", "no-newline"]) {
        let (ts, rest) = l.split_once(' ').unwrap_or_default();
        assert!(
            chrono::DateTime::parse_from_rfc3339(ts).is_ok(),
            "not RFC 3339: {ts:?}\n{}",
            out.describe()
        );
        assert_eq!(rest, want, "{}", out.describe());
    }
}

#[test]
fn logs_since_and_until_split_by_time() {
    let (env, bb) = require!(setup());
    run_d(
        &env,
        &[
            "--name",
            "slow",
            &bb,
            "sh",
            "-c",
            "echo early; sleep 2; echo late; sleep 1000",
        ],
    );
    until(Duration::from_secs(15), "late is logged", || {
        env.run(&["logs", "slow"]).stdout_str().contains("late")
    });
    let out = logs(&env, &["-t", "slow"]);
    let text = out.stdout_str();
    let first = text
        .lines()
        .next()
        .expect("a line")
        .split(' ')
        .next()
        .unwrap();
    let t = chrono::DateTime::parse_from_rfc3339(first).expect("timestamp");
    let mid = (t + chrono::Duration::milliseconds(1000)).to_rfc3339();
    let out = logs(&env, &["--since", &mid, "slow"]);
    assert_eq!(out.stdout_str(), "late\n", "{}", out.describe());
    let out = logs(&env, &["--until", &mid, "slow"]);
    assert_eq!(out.stdout_str(), "early\n", "{}", out.describe());
    // A duration back from now: both lines are younger than 10 minutes.
    let out = logs(&env, &["--since", "10m", "slow"]);
    assert_eq!(out.stdout_str(), "early\nlate\n", "{}", out.describe());
    // Bad time: one-line error, 125.
    let out = env.run(&["logs", "--since", "yesterday-ish", "slow"]);
    assert_error(&out, 125, &["yesterday-ish"]);
}

#[test]
fn logs_follow_streams_until_the_container_exits() {
    let (env, bb) = require!(setup());
    run_d(
        &env,
        &[
            "--name",
            "f",
            &bb,
            "sh",
            "-c",
            "for i in 1 2 3 4; do echo f$i; sleep 0.5; done; exit 3",
        ],
    );
    let out = env
        .cmd(&["logs", "-f", "f"])
        .timeout(Duration::from_secs(30))
        .output();
    out.success();
    assert_eq!(out.stdout_str(), "f1\nf2\nf3\nf4\n", "{}", out.describe());
    assert!(
        out.elapsed >= Duration::from_millis(1000),
        "logs -f must wait for the output to come: {:?}",
        out.elapsed
    );
    assert_eq!(status(&env, "f"), "exited");
    assert_eq!(exit_code(&env, "f"), 3);
    // -f of an exited container prints everything and returns.
    let out = env
        .cmd(&["logs", "-f", "--tail", "1", "f"])
        .timeout(Duration::from_secs(10))
        .output();
    out.success();
    assert_eq!(out.stdout_str(), "f4\n", "{}", out.describe());
}

#[test]
fn foreground_run_prints_propagates_and_stays_visible() {
    let (env, bb) = require!(setup());
    let out = env.run(&[
        "run",
        "--name",
        "fg",
        &bb,
        "sh",
        "-c",
        "echo out-line; echo err-line >&2; exit 7",
    ]);
    out.assert_code(7);
    assert_eq!(out.stdout_str(), "out-line\n", "{}", out.describe());
    assert_eq!(out.stderr_str(), "err-line\n", "{}", out.describe());
    let line = ps_line(&env, "fg").expect("fg in ps -a");
    assert!(line.contains("Exited (7)"), "{line}");
    let out = logs(&env, &["fg"]);
    assert_eq!(out.stdout_str(), "out-line\n", "{}", out.describe());
    assert_eq!(out.stderr_str(), "err-line\n", "{}", out.describe());
    // stdin reaches a foreground -i container; its end ends the container's input.
    let out = env
        .cmd(&[
            "run",
            "--rm",
            "-i",
            &bb,
            "sh",
            "-c",
            "read x; echo got-$x; cat",
        ])
        .stdin(b"abc\nrest\n".to_vec())
        .output();
    out.success();
    assert_eq!(out.stdout_str(), "got-abc\nrest\n", "{}", out.describe());
}

#[test]
fn foreground_run_visible_from_another_command_while_running() {
    let (env, bb) = require!(setup());
    let mut child = env
        .cmd(&[
            "run",
            "--name",
            "live",
            &bb,
            "sh",
            "-c",
            "echo hello-live; sleep 30",
        ])
        .into_command()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn run");
    until(Duration::from_secs(15), "hello-live is logged", || {
        env.run(&["logs", "live"]).stdout_str() == "hello-live\n"
    });
    let line = ps_line(&env, "live").expect("live in ps");
    assert!(line.contains("Up "), "{line}");
    // ctrl-c (SIGINT to the CLI) is proxied: sh as PID 1 has no handler, so the
    // container would ignore it; SIGTERM likewise: use kill to end it.
    env.run(&["kill", "live"]).success();
    let t0 = Instant::now();
    let st = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "run did not return");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(st.code(), Some(137));
}

#[test]
fn foreground_run_proxies_sigint_without_a_tty() {
    let (env, bb) = require!(setup());
    let script = "trap 'echo got-int; exit 9' INT; echo ready; while :; do sleep 0.1; done";
    let mut child = env
        .cmd(&["run", "--rm", "--name", "si", &bb, "sh", "-c", script])
        .into_command()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn run");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut first = [0u8; 6];
    stdout.read_exact(&mut first).expect("ready");
    assert_eq!(&first, b"ready\n");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("SIGINT");
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).expect("read");
    let st = child.wait().expect("wait");
    assert_eq!(rest, "got-int\n");
    assert_eq!(st.code(), Some(9));
}

#[test]
fn tty_run_has_a_terminal_size_and_term() {
    let (env, bb) = require!(setup());
    skip_if_no_script!();
    let bin = skiff_bin().display().to_string();
    let out = in_script(
        &env,
        &format!("{bin} run --rm -it {bb} sh -c 'tty; echo term=$TERM'; echo rc=$?"),
    );
    let text = out.stdout_str();
    assert!(text.contains("/dev/pts/"), "{}", out.describe());
    assert!(text.contains("term=xterm"), "{}", out.describe());
    assert!(text.contains("rc=0"), "{}", out.describe());
    let out = in_script(
        &env,
        &format!("stty rows 33 cols 99; {bin} run --rm -t {bb} stty -a; echo rc=$?"),
    );
    let text = out.stdout_str();
    assert!(
        text.contains("rows 33") && text.contains("columns 99"),
        "{}",
        out.describe()
    );
    assert!(text.contains("rc=0"), "{}", out.describe());
    // The exit code of a tty run comes back too.
    let out = in_script(
        &env,
        &format!("{bin} run --rm -t {bb} sh -c 'exit 6'; echo rc=$?"),
    );
    assert!(out.stdout_str().contains("rc=6"), "{}", out.describe());
}

#[test]
fn tty_run_ctrl_c_and_window_size_reach_the_container() {
    let (env, bb) = require!(setup());
    let script = "trap 'echo got-int; exit 9' INT; stty size; echo ready; \
                  while :; do sleep 0.1; done";
    let mut p = Pty::spawn(
        env.cmd(&["run", "--rm", "-it", &bb, "sh", "-c", script]),
        33,
        99,
    );
    p.expect("ready", Duration::from_secs(20));
    assert!(p.text().contains("33 99"), "{}", p.text());
    p.send(b"\x03");
    p.expect("got-int", Duration::from_secs(10));
    assert_eq!(p.wait(Duration::from_secs(10)), Some(9), "{}", p.text());

    // SIGWINCH: the new size of our terminal reaches the container's.
    let script = "echo ready; sleep 2; stty size";
    let mut p = Pty::spawn(
        env.cmd(&["run", "--rm", "-t", &bb, "sh", "-c", script]),
        24,
        80,
    );
    p.expect("ready", Duration::from_secs(20));
    p.set_size(50, 120);
    p.expect("50 120", Duration::from_secs(10));
    assert_eq!(p.wait(Duration::from_secs(10)), Some(0), "{}", p.text());
}

#[test]
fn attach_types_and_detaches_with_keys() {
    let (env, bb) = require!(setup());
    run_d(&env, &["-it", "--name", "a", &bb, "sh"]);
    let mut p = Pty::spawn(env.cmd(&["attach", "a"]), 24, 80);
    // The shell's echo of what we type contains `40+2`, only its output `hi42`.
    std::thread::sleep(Duration::from_millis(300));
    p.send(b"echo hi$((40+2))\r");
    p.expect("hi42", Duration::from_secs(10));
    p.send(b"\x10\x11");
    assert_eq!(
        p.wait(Duration::from_secs(10)),
        Some(0),
        "ctrl-p ctrl-q must detach\n{}",
        p.text()
    );
    assert_eq!(status(&env, "a"), "running");

    // Custom keys; ctrl-p alone is now an ordinary key.
    let mut p = Pty::spawn(
        env.cmd(&["attach", "--detach-keys", "ctrl-x,x", "a"]),
        24,
        80,
    );
    std::thread::sleep(Duration::from_millis(300));
    p.send(b"echo again$((5*5))\r");
    p.expect("again25", Duration::from_secs(10));
    // ctrl-p ctrl-q reach the shell (its line editor recalls history: ctrl-u clears).
    p.send(b"\x10\x11");
    assert_eq!(
        p.wait(Duration::from_millis(700)),
        None,
        "ctrl-p ctrl-q detached"
    );
    p.send(b"\x15echo still$((2+2))\r");
    p.expect("still4", Duration::from_secs(10));
    p.send(b"\x18x");
    assert_eq!(p.wait(Duration::from_secs(10)), Some(0), "{}", p.text());
    assert_eq!(status(&env, "a"), "running");

    // Leaving the shell ends the container; attach returns its exit code.
    let mut p = Pty::spawn(env.cmd(&["attach", "a"]), 24, 80);
    std::thread::sleep(Duration::from_millis(300));
    p.send(b"\x15exit 4\r");
    assert_eq!(p.wait(Duration::from_secs(10)), Some(4), "{}", p.text());
    wait_exited(&env, "a", Duration::from_secs(10));
    assert_eq!(exit_code(&env, "a"), 4);
}

#[test]
fn attach_to_a_non_tty_container_shows_its_output() {
    let (env, bb) = require!(setup());
    run_d(
        &env,
        &[
            "--name",
            "tick",
            &bb,
            "sh",
            "-c",
            "i=0; while [ $i -lt 100 ]; do echo tick-$i; i=$((i+1)); sleep 0.2; done",
        ],
    );
    let mut child = env
        .cmd(&["attach", "--no-stdin", "tick"])
        .into_command()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn attach");
    let mut out = child.stdout.take().expect("stdout");
    let mut buf = [0u8; 64];
    let n = out.read(&mut buf).expect("read");
    assert!(
        String::from_utf8_lossy(&buf[..n]).contains("tick-"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    env.run(&["kill", "tick"]).success();
    let t0 = Instant::now();
    let st = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "attach did not return"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(st.code(), Some(137));
}

const GRACEFUL: &str = "trap 'echo bye; exit 3' TERM; while :; do sleep 0.1; done";

#[test]
fn stop_is_graceful_then_kills_after_the_timeout() {
    let (env, bb) = require!(setup());
    run_d(&env, &["--name", "g", &bb, "sh", "-c", GRACEFUL]);
    std::thread::sleep(Duration::from_millis(300));
    let out = env.run(&["stop", "g"]);
    out.success();
    assert_eq!(out.stdout_trim(), "g");
    assert!(out.elapsed < Duration::from_secs(3), "{}", out.describe());
    assert_eq!(status(&env, "g"), "exited");
    assert_eq!(exit_code(&env, "g"), 3);
    logs(&env, &["g"]).stdout_contains("bye");
    // Stopping a stopped container is fine.
    env.run(&["stop", "g"]).success();

    // PID 1 without a handler ignores SIGTERM: SIGKILL after -t 1.
    run_d(&env, &["--name", "s", &bb, "sleep", "1000"]);
    let pid = inspect_one(&env, &["s"])["State"]["Pid"]
        .as_i64()
        .unwrap_or(0);
    assert!(pid > 1, "State.Pid is the host pid");
    let out = env.run(&["stop", "-t", "1", "s"]);
    out.success();
    assert!(
        out.elapsed >= Duration::from_secs(1) && out.elapsed < Duration::from_secs(5),
        "{}",
        out.describe()
    );
    assert_eq!(exit_code(&env, "s"), 137);
    assert!(dead(pid), "container process {pid} still runs");
    let line = ps_line(&env, "s").expect("s in ps -a");
    assert!(line.contains("Exited (137)"), "{line}");

    // --stop-signal and --stop-timeout from run are used.
    run_d(
        &env,
        &[
            "--name",
            "u",
            "--stop-signal",
            "USR1",
            &bb,
            "sh",
            "-c",
            "trap 'exit 12' USR1; while :; do sleep 0.1; done",
        ],
    );
    std::thread::sleep(Duration::from_millis(300));
    let out = env.run(&["stop", "u"]);
    out.success();
    assert!(out.elapsed < Duration::from_secs(3), "{}", out.describe());
    assert_eq!(exit_code(&env, "u"), 12);
}

#[test]
fn stop_with_init_forwards_sigterm() {
    let (env, bb) = require!(setup());
    // With --init, sleep is not PID 1 and dies of SIGTERM at once.
    run_d(&env, &["--init", "--name", "i", &bb, "sleep", "1000"]);
    let out = env.run(&["stop", "-t", "5", "i"]);
    out.success();
    assert!(out.elapsed < Duration::from_secs(3), "{}", out.describe());
    assert_eq!(exit_code(&env, "i"), 143);
}

#[test]
fn kill_signals_wait_prints_the_code() {
    let (env, bb) = require!(setup());
    run_d(
        &env,
        &[
            "--name",
            "h",
            &bb,
            "sh",
            "-c",
            "trap 'echo got-hup' HUP; while :; do sleep 0.1; done",
        ],
    );
    std::thread::sleep(Duration::from_millis(300));
    let out = env.run(&["kill", "-s", "HUP", "h"]);
    out.success();
    assert_eq!(out.stdout_trim(), "h");
    until(Duration::from_secs(10), "got-hup is logged", || {
        env.run(&["logs", "h"]).stdout_str().contains("got-hup")
    });
    assert_eq!(status(&env, "h"), "running", "HUP is handled, not fatal");
    // Other spellings of HUP (one at a time: pending signals of a kind merge).
    for (n, spelling) in [(2, "SIGHUP"), (3, "1"), (4, "hup")] {
        env.run(&["kill", "--signal", spelling, "h"]).success();
        until(Duration::from_secs(10), &format!("got-hup #{n}"), || {
            env.run(&["logs", "h"])
                .stdout_str()
                .matches("got-hup")
                .count()
                == n
        });
    }

    let before = snapshot(&env);
    let out = env.run(&["kill", "-s", "BOGUS", "h"]);
    assert_error(&out, 125, &["BOGUS"]);
    assert_eq!(snapshot(&env), before);
    assert_eq!(status(&env, "h"), "running");

    // wait prints the exit code, for a running container once it exits.
    let id = run_d(&env, &["--name", "w", &bb, "sh", "-c", "sleep 1; exit 6"]);
    let out = env.run(&["wait", &id]);
    out.success();
    assert_eq!(out.stdout_trim(), "6", "{}", out.describe());
    assert!(
        out.elapsed >= Duration::from_millis(500),
        "{}",
        out.describe()
    );
    let out = env.run(&["wait", "w"]);
    assert_eq!(out.success().stdout_trim(), "6");

    env.run(&["kill", "h"]).success();
    assert_eq!(env.run(&["wait", "h"]).success().stdout_trim(), "137");
    // Killing a stopped container is refused.
    let out = env.run(&["kill", "h"]);
    assert_error(&out, 125, &["state"]);
}

#[test]
fn restart_keeps_the_id_and_starts_anew() {
    let (env, bb) = require!(setup());
    let id = run_d(&env, &["--name", "r", &bb, "sh", "-c", GRACEFUL]);
    let c = inspect_one(&env, &["r"]);
    let started = c["State"]["StartedAt"].as_str().unwrap_or("").to_string();
    let pid = c["State"]["Pid"].as_i64().unwrap_or(0);
    assert!(!started.is_empty(), "{c}");
    std::thread::sleep(Duration::from_millis(1100));
    let out = env.run(&["restart", "r"]);
    out.success();
    assert_eq!(out.stdout_trim(), "r");
    let c = inspect_one(&env, &["r"]);
    assert_eq!(c["Id"], id.as_str());
    assert_eq!(c["State"]["Status"], "running", "{c}");
    assert_ne!(
        c["State"]["StartedAt"].as_str().unwrap_or(""),
        started,
        "{c}"
    );
    assert_ne!(c["State"]["Pid"].as_i64().unwrap_or(0), pid, "{c}");
    assert!(dead(pid), "the old container process {pid} is gone");
    // The old run's goodbye and both runs' output are in one log.
    logs(&env, &["r"]).stdout_contains("bye");
    // restart of an exited container just starts it.
    env.run(&["stop", "r"]).success();
    env.run(&["restart", "r"]).success();
    assert_eq!(status(&env, "r"), "running");
}

#[test]
fn start_attach_of_a_created_container() {
    let (env, bb) = require!(setup());
    env.run(&[
        "create",
        "--name",
        "c",
        &bb,
        "sh",
        "-c",
        "echo from-start; echo to-err >&2; exit 5",
    ])
    .success();
    let out = env.run(&["start", "-a", "c"]);
    out.assert_code(5);
    assert_eq!(out.stdout_str(), "from-start\n", "{}", out.describe());
    assert_eq!(out.stderr_str(), "to-err\n", "{}", out.describe());
    // Started again (detached), it runs again and logs again.
    let out = env.run(&["start", "c"]);
    out.success();
    assert_eq!(out.stdout_trim(), "c");
    wait_exited(&env, "c", Duration::from_secs(10));
    assert_eq!(logs(&env, &["c"]).stdout_str(), "from-start\nfrom-start\n");
}

#[test]
fn restart_on_failure_stops_after_the_maximum() {
    let (env, bb) = require!(setup());
    run_d(
        &env,
        &[
            "--restart=on-failure:3",
            "--name",
            "rf",
            &bb,
            "sh",
            "-c",
            "echo run; exit 1",
        ],
    );
    // 4 runs, with 100 + 200 + 400 ms back-off between them.
    until(Duration::from_secs(20), "four runs", || {
        env.run(&["logs", "rf"]).stdout_str().matches("run").count() >= 4
    });
    wait_exited(&env, "rf", Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        logs(&env, &["rf"]).stdout_str().matches("run").count(),
        4,
        "on-failure:3 means 3 restarts"
    );
    let c = inspect_one(&env, &["rf"]);
    assert_eq!(c["State"]["Status"], "exited", "{c}");
    assert_eq!(c["State"]["ExitCode"], 1, "{c}");
    assert_eq!(c["RestartCount"], 3, "{c}");
    let line = ps_line(&env, "rf").expect("rf in ps -a");
    assert!(line.contains("Exited (1)"), "{line}");

    // on-failure does not restart a clean exit.
    run_d(
        &env,
        &[
            "--restart=on-failure",
            "--name",
            "ok",
            &bb,
            "sh",
            "-c",
            "echo run; exit 0",
        ],
    );
    wait_exited(&env, "ok", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(logs(&env, &["ok"]).stdout_str(), "run\n");
}

#[test]
fn restart_always_restarts_until_stopped() {
    let (env, bb) = require!(setup());
    run_d(
        &env,
        &[
            "--restart=always",
            "--name",
            "al",
            &bb,
            "sh",
            "-c",
            "echo run; sleep 0.2",
        ],
    );
    until(Duration::from_secs(20), "three runs", || {
        env.run(&["logs", "al"]).stdout_str().matches("run").count() >= 3
    });
    // However the stop falls (running or between two runs), it is final.
    env.run(&["stop", "-t", "1", "al"]).success();
    let n = logs(&env, &["al"]).stdout_str().matches("run").count();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(status(&env, "al"), "exited", "stopped stays stopped");
    assert_eq!(
        logs(&env, &["al"]).stdout_str().matches("run").count(),
        n,
        "no run after the stop"
    );

    // A long-running one, stopped while it runs.
    run_d(
        &env,
        &[
            "--restart=always",
            "--name",
            "al2",
            &bb,
            "sh",
            "-c",
            "echo run; sleep 1000",
        ],
    );
    env.run(&["stop", "-t", "1", "al2"]).success();
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(status(&env, "al2"), "exited");
    assert_eq!(logs(&env, &["al2"]).stdout_str(), "run\n");
}

#[test]
fn rm_detached_container_is_gone_after_exit() {
    let (env, bb) = require!(setup());
    let id = run_d(&env, &["--rm", "--name", "tmp", &bb, "sleep", "1"]);
    assert_eq!(status(&env, "tmp"), "running");
    until(
        Duration::from_secs(15),
        "the --rm container is removed",
        || env.run(&["ps", "-aq"]).stdout_trim().is_empty(),
    );
    env.run(&["inspect", "tmp"]).assert_code(125);
    assert_eq!(listing(&containers_dir(&env)), Vec::<String>::new());
    assert!(
        !listing(&attach_dir(&env))
            .iter()
            .any(|f| id.starts_with(f.as_str())),
        "attach socket left: {:?}",
        listing(&attach_dir(&env))
    );
    // Foreground --rm: gone when run returns.
    env.run(&["run", "--rm", &bb, "true"]).success();
    assert_eq!(env.run(&["ps", "-aq"]).stdout_trim(), "");
    assert_eq!(listing(&containers_dir(&env)), Vec::<String>::new());
}

/// `rm -f -t SECONDS` (podman's): the stop signal first, SIGKILL only after SECONDS;
/// `-t` without `-f` is refused; `rm -f` of a running `--rm` container succeeds.
#[test]
fn rm_force_time_stops_gracefully_first() {
    let (env, bb) = require!(setup());
    let out_dir = env.work.join("out");
    std::fs::create_dir(&out_dir).unwrap();
    env.give(&out_dir);
    let vol = format!("{}:/out", out_dir.display());
    run_d(
        &env,
        &[
            "--name",
            "g",
            "-v",
            &vol,
            &bb,
            "sh",
            "-c",
            "trap 'touch /out/term; exit 7' TERM; touch /out/up; while :; do sleep 0.1; done",
        ],
    );
    until(Duration::from_secs(10), "the trap is set", || {
        out_dir.join("up").exists()
    });
    // Refused without -f, and nothing changes.
    let before = snapshot(&env);
    assert_error(
        &env.run(&["rm", "-t", "5", "g"]),
        125,
        &["--force", "--time"],
    );
    assert_error(
        &env.run(&["rm", "-f", "-t", "x", "g"]),
        125,
        &["x", "--time"],
    );
    assert_eq!(snapshot(&env), before);
    assert_eq!(status(&env, "g"), "running");
    let t0 = Instant::now();
    let out = env.run(&["rm", "-f", "-t", "10", "g"]);
    assert_eq!(out.success().stdout_trim(), "g");
    assert!(
        out_dir.join("term").exists(),
        "SIGTERM never reached the trap"
    );
    assert!(t0.elapsed() < Duration::from_secs(8), "{:?}", t0.elapsed());
    env.run(&["inspect", "g"]).assert_code(125);

    // A process that ignores SIGTERM is killed after the timeout.
    run_d(&env, &["--name", "s", &bb, "sleep", "1000"]);
    let t0 = Instant::now();
    assert_eq!(
        env.run(&["rm", "-f", "--time", "2", "s"])
            .success()
            .stdout_trim(),
        "s"
    );
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(10),
        "{took:?}"
    );
    env.run(&["inspect", "s"]).assert_code(125);

    // A running --rm container: its monitor removes it, and rm still succeeds.
    for time in [&[][..], &["-t", "1"][..]] {
        run_d(&env, &["--rm", "--name", "r", &bb, "sleep", "1000"]);
        let mut args = vec!["rm", "-f"];
        args.extend_from_slice(time);
        args.push("r");
        assert_eq!(env.run(&args).success().stdout_trim(), "r");
        env.run(&["inspect", "r"]).assert_code(125);
    }
    assert_eq!(listing(&containers_dir(&env)), Vec::<String>::new());
}

#[test]
fn init_is_pid_1_and_reaps_orphans() {
    let (env, bb) = require!(setup());
    let out = env.run(&[
        "run",
        "--rm",
        "--init",
        &bb,
        "sh",
        "-c",
        "echo sh=$$; ps -o pid,comm",
    ]);
    out.success();
    let text = out.stdout_str();
    assert!(!text.contains("sh=1\n"), "sh must not be PID 1\n{text}");
    let pid1 = text
        .lines()
        .find(|l| l.split_whitespace().next() == Some("1"))
        .unwrap_or_else(|| panic!("no PID 1 in ps\n{text}"));
    assert!(
        !pid1.contains("sh"),
        "PID 1 is skiff's init, not sh\n{text}"
    );

    // An orphan whose parent exits is reparented to PID 1, skiff's init, which must
    // reap it: the container's own ps shows no zombie afterwards.
    let script = "sh -c 'sleep 0.2 &'; sleep 1; ps -o pid,stat,comm";
    let out = env.run(&["run", "--rm", "--init", &bb, "sh", "-c", script]);
    out.success();
    assert_eq!(zombies(&out.stdout_str()), "", "{}", out.describe());
    assert!(out.stdout_str().contains("ps"), "{}", out.describe());

    // Signals reach the program through init: sleep has no handler for HUP.
    run_d(&env, &["--init", "--name", "fwd", &bb, "sleep", "1000"]);
    env.run(&["kill", "-s", "HUP", "fwd"]).success();
    wait_exited(&env, "fwd", Duration::from_secs(10));
    assert_eq!(exit_code(&env, "fwd"), 129);
}

/// The lines of `ps -o pid,stat,comm` output whose state is Z.
fn zombies(ps: &str) -> String {
    ps.lines()
        .filter(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|s| s.starts_with('Z'))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn exec_into_an_init_container_sees_no_zombies() {
    let (env, bb) = require!(setup());
    // `sleep` as PID 1 never reaps the orphan (the control: this check can fail);
    // skiff's init as PID 1 does.
    let orphan = "sh -c 'sleep 0.2 &'; exec sleep 1000";
    let ps_after = |flags: &[&str], name: &str| -> String {
        let mut args = vec!["--name", name];
        args.extend_from_slice(flags);
        args.extend_from_slice(&[&bb, "sh", "-c", orphan]);
        run_d(&env, &args);
        std::thread::sleep(Duration::from_millis(1500));
        let out = env.run(&["exec", name, "ps", "-o", "pid,stat,comm"]);
        out.success();
        out.stdout_str()
    };
    let control = ps_after(&[], "noinit");
    assert_ne!(
        zombies(&control),
        "",
        "without --init a zombie stays\n{control}"
    );
    let ps = ps_after(&["--init"], "reaped");
    assert_eq!(zombies(&ps), "", "--init leaves no zombie\n{ps}");
}

#[test]
fn killed_monitor_takes_its_container_and_rm_cleans_up() {
    let (env, bb) = require!(setup());
    let id = run_d(&env, &["--name", "m", &bb, "sleep", "1000"]);
    let pid = inspect_one(&env, &["m"])["State"]["Pid"]
        .as_i64()
        .unwrap_or(0);
    assert!(
        pid > 1 && !dead(pid),
        "the container runs as host pid {pid}"
    );
    let monitors = pgrep_f(&format!("__monitor {id}"));
    assert_eq!(monitors.len(), 1, "one monitor for {id}: {monitors:?}");
    assert!(
        listing(&attach_dir(&env))
            .iter()
            .any(|f| id.starts_with(f.as_str())),
        "attach socket: {:?}",
        listing(&attach_dir(&env))
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(monitors[0]),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the monitor");
    let t0 = Instant::now();
    while !dead(pid) {
        assert!(
            t0.elapsed() < Duration::from_secs(1),
            "container process {pid} outlived its monitor by 1 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let line = ps_line(&env, "m").expect("m in ps -a");
    assert!(line.contains("Exited (137)"), "{line}");
    assert_eq!(status(&env, "m"), "exited");
    assert_eq!(env.run(&["ps", "-q"]).stdout_trim(), "", "nothing runs");
    let out = env.run(&["rm", "-f", "m"]);
    out.success();
    assert_eq!(env.run(&["ps", "-aq"]).stdout_trim(), "");
    assert_eq!(listing(&containers_dir(&env)), Vec::<String>::new());
    assert_eq!(
        listing(&attach_dir(&env)),
        Vec::<String>::new(),
        "runtime files left"
    );
}

#[test]
fn fifty_parallel_runs_and_removals_leave_nothing() {
    let (env, bb) = require!(setup());
    let t0 = Instant::now();
    let env = Arc::new(env);
    let ids: Vec<String> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..50)
            .map(|i| {
                let env = Arc::clone(&env);
                let bb = bb.clone();
                s.spawn(move || {
                    let name = format!("p{i}");
                    let out = env
                        .cmd(&["run", "-d", "--name", &name, &bb, "sleep", "1000"])
                        .timeout(Duration::from_secs(60))
                        .output();
                    out.success();
                    out.stdout_trim()
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("run thread"))
            .collect()
    });
    let ran = t0.elapsed();
    let mut uniq = ids.clone();
    uniq.sort();
    uniq.dedup();
    assert_eq!(uniq.len(), 50, "50 distinct IDs");
    let ps = env.run(&["ps", "-q", "--no-trunc"]);
    ps.success();
    assert_eq!(ps.stdout_str().lines().count(), 50, "{}", ps.describe());
    let pids: Vec<i64> = ids
        .iter()
        .map(|id| {
            inspect_one(&env, &[id])["State"]["Pid"]
                .as_i64()
                .unwrap_or(0)
        })
        .collect();
    assert!(pids.iter().all(|p| *p > 1 && !dead(*p)), "{pids:?}");

    std::thread::scope(|s| {
        for id in &ids {
            let env = Arc::clone(&env);
            s.spawn(move || {
                let out = env
                    .cmd(&["rm", "-f", id])
                    .timeout(Duration::from_secs(60))
                    .output();
                out.success();
            });
        }
    });
    assert_eq!(env.run(&["ps", "-aq"]).stdout_trim(), "", "no records");
    assert_eq!(
        listing(&containers_dir(&env)),
        Vec::<String>::new(),
        "no dirs"
    );
    assert_eq!(
        listing(&attach_dir(&env)),
        Vec::<String>::new(),
        "no sockets"
    );
    for id in &ids {
        assert_eq!(
            pgrep_f(&format!("__monitor {id}")),
            Vec::<i32>::new(),
            "monitor of {id}"
        );
    }
    let alive: Vec<&i64> = pids.iter().filter(|p| !dead(**p)).collect();
    assert!(alive.is_empty(), "container processes left: {alive:?}");
    assert!(
        t0.elapsed() < Duration::from_secs(90),
        "50 runs took {ran:?}, all {:?}",
        t0.elapsed()
    );
}

#[test]
fn log_drivers_none_passthrough_and_max_size() {
    let (env, bb) = require!(setup());
    // none: the terminal still gets the output, the log nothing.
    let out = env.run(&[
        "run",
        "--log-driver",
        "none",
        "--name",
        "n",
        &bb,
        "echo",
        "hi",
    ]);
    out.success();
    assert_eq!(out.stdout_str(), "hi\n");
    let out = logs(&env, &["n"]);
    assert_eq!(out.stdout_str() + &out.stderr_str(), "");

    // passthrough: the container writes to our stdio directly; not with -d.
    let out = env.run(&[
        "run",
        "--rm",
        "--log-driver",
        "passthrough",
        &bb,
        "sh",
        "-c",
        "echo pass; echo pass-err >&2; exit 2",
    ]);
    out.assert_code(2);
    assert_eq!(out.stdout_str(), "pass\n");
    assert_eq!(out.stderr_str(), "pass-err\n");
    // (That a refused run leaves no container is checked in
    // refused_run_flags_leave_no_container.)
    let out = env.run(&[
        "run",
        "-d",
        "--rm",
        "--log-driver",
        "passthrough",
        &bb,
        "true",
    ]);
    assert_error(&out, 125, &["passthrough"]);
    let out = env.run(&["run", "--rm", "--log-driver", "bogus", &bb, "true"]);
    assert_error(&out, 125, &["bogus"]);

    // max-size: the file never grows past it; the newest lines are kept.
    let out = env.run(&[
        "run",
        "--log-opt",
        "max-size=1k",
        "--name",
        "big",
        &bb,
        "sh",
        "-c",
        "i=0; while [ $i -lt 200 ]; do echo line-$i; i=$((i+1)); done",
    ]);
    out.success();
    assert_eq!(out.stdout_str().lines().count(), 200);
    let id = inspect_one(&env, &["big"])["Id"]
        .as_str()
        .unwrap()
        .to_string();
    let log = containers_dir(&env).join(&id).join("ctr.log");
    let size = fs::metadata(&log).expect("ctr.log").len();
    assert!(size > 0 && size <= 1024, "ctr.log is {size} bytes");
    let out = logs(&env, &["big"]);
    assert!(
        out.stdout_str().ends_with("line-199\n"),
        "{}",
        out.describe()
    );
    assert!(!out.stdout_str().contains("line-0\n"), "{}", out.describe());
}

#[test]
fn bad_input_fails_cleanly() {
    let (env, bb) = require!(setup());
    run_d(&env, &["--name", "up", &bb, "sleep", "1000"]);
    env.run(&["create", "--name", "made", &bb, "true"])
        .success();
    let check = |args: &[&str], code: i32, needles: &[&str]| {
        let before = snapshot(&env);
        let out = env.run(args);
        assert_error(&out, code, needles);
        assert_eq!(snapshot(&env), before, "the store changed: {}", out.cmdline);
    };
    for cmd in [
        &["exec", "nosuch", "true"][..],
        &["attach", "nosuch"],
        &["stop", "nosuch"],
        &["kill", "nosuch"],
        &["wait", "nosuch"],
        &["restart", "nosuch"],
        &["start", "nosuch"],
        &["logs", "nosuch"],
    ] {
        check(cmd, 125, &["nosuch"]);
    }
    check(&["kill", "-s", "BOGUS", "up"], 125, &["BOGUS"]);
    check(&["kill", "-s", "99", "up"], 125, &["99"]);
    check(&["stop", "-t", "-1", "up"], 125, &["-1"]);
    check(&["restart", "-t", "-1", "up"], 125, &["-1"]);
    check(&["attach", "made"], 125, &["made"]);
    check(
        &["attach", "--detach-keys", "ctrl-", "up"],
        125,
        &["detach"],
    );
    check(&["logs", "--tail", "x", "up"], 125, &[]);
    assert_eq!(status(&env, "up"), "running", "nothing happened to it");
}

#[test]
fn refused_run_flags_leave_no_container() {
    let (env, bb) = require!(setup());
    env.run(&["create", "--name", "made", &bb, "true"])
        .success();
    for (flags, needle) in [
        (&["--restart", "sometimes"][..], "sometimes"),
        (&["--log-driver", "bogus"], "bogus"),
        (&["-d", "--log-driver", "passthrough"], "passthrough"),
        (&["-d", "--restart", "on-failure:x"], "on-failure:x"),
    ] {
        let before = snapshot(&env);
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&[&bb, "true"]);
        let out = env.run(&args);
        assert_error(&out, 125, &[needle]);
        assert_eq!(
            snapshot(&env),
            before,
            "a refused run must leave no container: {}",
            out.cmdline
        );
        // A created container may still be started attached (`start -a`), where the
        // passthrough driver works: only `run -d` must refuse it.
        if flags.contains(&"passthrough") {
            continue;
        }
        let mut args = vec!["create"];
        args.extend_from_slice(flags.strip_prefix(&["-d"][..]).unwrap_or(flags));
        args.extend_from_slice(&[&bb, "true"]);
        let out = env.run(&args);
        assert_error(&out, 125, &[needle]);
        assert_eq!(snapshot(&env), before, "{}", out.cmdline);
    }
}
