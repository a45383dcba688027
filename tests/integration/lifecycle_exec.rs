//! Issue 3: `exec`, `cp` and `top` against running and stopped containers, as the
//! unprivileged test user. Pty cases go through a real pseudo-terminal (`script`).

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use crate::images;
use crate::require;
use crate::util::{skiff_bin, TestEnv};

macro_rules! skip_if_no_script {
    () => {
        crate::skip_if!(
            !std::path::Path::new("/usr/bin/script").exists(),
            "script (util-linux) is not installed"
        );
    };
}

/// Waits until `top web` shows `needle`.
fn wait_top(env: &TestEnv, needle: &str) {
    let t0 = Instant::now();
    while !env.run(&["top", "web"]).stdout_str().contains(needle) {
        assert!(t0.elapsed() < Duration::from_secs(20), "{needle} never ran");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `cmd` under `script`, types `input` once `top web` shows `needle`, and returns
/// what the terminal showed.
fn type_when_running(env: &TestEnv, cmd: &str, needle: &str, input: &[u8]) -> String {
    let mut child = env
        .host_cmd("script", &["-qec", cmd, "/dev/null"])
        .into_command()
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn script");
    wait_top(env, needle);
    let mut stdin = child.stdin.take().expect("stdin");
    std::io::Write::write_all(&mut stdin, input).expect("type");
    let t0 = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if t0.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("{cmd}: typing {input:?} did not end the session");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(stdin);
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().expect("stdout"), &mut out)
        .expect("read");
    out
}

#[test]
fn exec_tty_ctrl_c_and_detach_keys() {
    require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootless());
    skip_if_no_script!();
    start(&env, "web", &[]);
    let bin = skiff_bin().display().to_string();
    // ctrl-c travels through the pty to the command.
    let cmd = format!("{bin} exec -it web sleep 31; echo rc=$?");
    let out = type_when_running(&env, &cmd, "sleep 31", b"\x03");
    assert!(out.contains("rc=130"), "{out}");
    // ctrl-p ctrl-q detaches; the command keeps running with its terminal.
    let cmd = format!("{bin} exec -it web sleep 32; echo rc=$?");
    let out = type_when_running(&env, &cmd, "sleep 32", b"\x10\x11");
    assert!(out.contains("rc=0"), "{out}");
    std::thread::sleep(Duration::from_millis(500));
    let top = env.run(&["top", "web", "tty", "args"]);
    assert!(
        top.stdout_str()
            .lines()
            .any(|l| l.starts_with("pts/") && l.ends_with("sleep 32")),
        "{}",
        top.describe()
    );
    // Other keys when asked for.
    let cmd = format!("{bin} exec -it --detach-keys ctrl-x web sleep 33; echo rc=$?");
    let out = type_when_running(&env, &cmd, "sleep 33", b"\x18");
    assert!(out.contains("rc=0"), "{out}");
    env.run(&["exec", "--detach-keys", "bogus", "web", "true"])
        .assert_code(125);
}

/// `run -d --name NAME [flags] busybox sleep 1000`.
fn start(env: &TestEnv, name: &str, flags: &[&str]) {
    let fx = images::fixtures();
    let mut args = vec!["run", "-d", "--name", name];
    args.extend_from_slice(flags);
    args.extend_from_slice(&[&fx.busybox.reference, "sleep", "1000"]);
    env.run(&args).success();
}

fn exec_out(env: &TestEnv, args: &[&str]) -> String {
    let mut full = vec!["exec"];
    full.extend_from_slice(args);
    let out = env.run(&full);
    out.success();
    out.stdout_str()
}

#[test]
fn exec_user_workdir_env_and_exit_codes() {
    require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootless());
    start(&env, "web", &["-e", "A=7", "--hostname", "box"]);

    // No user named at run: no supplementary groups (podman); `exec -u` gets only the
    // user's /etc/group memberships.
    assert_eq!(
        exec_out(&env, &["web", "id"]).trim(),
        "uid=0(root) gid=0(root)"
    );
    assert_eq!(
        exec_out(
            &env,
            &["-u", "tester", "web", "grep", "Groups", "/proc/self/status"]
        )
        .trim(),
        "Groups:\t50"
    );
    let out = exec_out(
        &env,
        &[
            "-u",
            "1000",
            "-w",
            "/tmp",
            "-e",
            "X=1",
            "web",
            "sh",
            "-c",
            "id -u; id -g; pwd; echo $X; echo $A; hostname",
        ],
    );
    assert_eq!(out, "1000\n1000\n/tmp\n1\n7\nbox\n");
    // -e overrides the container's value; names resolve in the container's passwd.
    let out = exec_out(
        &env,
        &[
            "-e",
            "A=8",
            "-u",
            "tester",
            "web",
            "sh",
            "-c",
            "echo $A $HOME",
        ],
    );
    assert_eq!(out, "8 /home/tester\n");

    // Same pid namespace: the container's sleep is PID 1, the exec'd shell is not.
    let out = exec_out(
        &env,
        &[
            "web",
            "sh",
            "-c",
            "cat /proc/1/cmdline | tr '\\0' ' '; echo; echo $$",
        ],
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0].trim(), "sleep 1000", "{out}");
    assert_ne!(lines[1], "1", "{out}");
    // Same capabilities as the container's init.
    let caps = |pid: &str| -> String {
        exec_out(
            &env,
            &[
                "web",
                "grep",
                "-E",
                "^Cap(Bnd|Eff|Prm)",
                &format!("/proc/{pid}/status"),
            ],
        )
    };
    assert_eq!(caps("1"), caps("self"));
    let nnp = exec_out(
        &env,
        &["-u", "1000", "web", "grep", "^CapEff", "/proc/self/status"],
    );
    assert_eq!(nnp.trim(), "CapEff:\t0000000000000000");
    // No host fds leak into the command.
    let fds = exec_out(&env, &["web", "ls", "/proc/self/fd"]);
    let n: Vec<&str> = fds.split_whitespace().collect();
    assert!(
        n.iter().all(|f| ["0", "1", "2", "3"].contains(f)),
        "fds: {fds}"
    );

    env.run(&["exec", "web", "sh", "-c", "exit 3"])
        .assert_code(3);
    env.run(&["exec", "web", "sh", "-c", "kill -9 $$"])
        .assert_code(137);
    env.run(&["exec", "web", "no-such-cmd"]).assert_code(127);
    env.run(&["exec", "web", "/etc/passwd"]).assert_code(126);
    env.run(&["exec", "-w", "/nowhere", "web", "true"])
        .failure();

    // stdin only with -i.
    let out = env
        .cmd(&["exec", "-i", "web", "cat"])
        .stdin(b"hello\n".to_vec())
        .output();
    out.success();
    assert_eq!(out.stdout_str(), "hello\n");
    let out = env
        .cmd(&["exec", "web", "cat"])
        .stdin(b"hello\n".to_vec())
        .output();
    out.success();
    assert_eq!(out.stdout_str(), "");

    // -d returns at once and the command runs on.
    let out = env.run(&[
        "exec",
        "-d",
        "web",
        "sh",
        "-c",
        "sleep 1; echo done > /tmp/d",
    ]);
    out.success();
    assert_eq!(out.stdout_str(), "");
    let t0 = Instant::now();
    loop {
        let o = env.run(&["exec", "web", "cat", "/tmp/d"]);
        if o.code() == Some(0) {
            assert_eq!(o.stdout_str(), "done\n");
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "exec -d never ran");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn exec_on_missing_or_stopped_container_fails_cleanly() {
    let fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootless());
    let out = env.run(&["exec", "nope", "true"]);
    out.assert_code(125).stderr_contains("no such container");
    env.run(&["create", "--name", "made", &fx.busybox.reference, "true"])
        .success();
    let out = env.run(&["exec", "made", "true"]);
    out.assert_code(125)
        .stderr_contains("can only create exec sessions on running containers");
    assert_eq!(
        out.stderr_str().trim().lines().count(),
        1,
        "{}",
        out.describe()
    );
    env.run(&["run", "--name", "done", &fx.busybox.reference, "true"])
        .success();
    env.run(&["exec", "done", "true"])
        .assert_code(125)
        .stderr_contains("container state improper");
    env.run(&["exec", "--privileged", "made", "true"])
        .assert_code(125);
}

/// Runs `cmd` (a shell command line) under `script`, i.e. with a real terminal.
fn in_pty(env: &TestEnv, cmd: &str, input: &[u8]) -> crate::util::Output {
    env.host_cmd("script", &["-qec", cmd, "/dev/null"])
        .stdin(input.to_vec())
        .timeout(Duration::from_secs(60))
        .output()
}

#[test]
fn exec_tty_gets_a_pty_inside_the_container() {
    require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootless());
    skip_if_no_script!();
    start(&env, "web", &[]);
    let bin = skiff_bin().display().to_string();
    let out = in_pty(&env, &format!("{bin} exec -t web tty"), b"");
    assert!(out.stdout_str().contains("/dev/pts/"), "{}", out.describe());
    let out = in_pty(
        &env,
        &format!("stty rows 41 cols 103; {bin} exec -t web stty size"),
        b"",
    );
    assert!(out.stdout_str().contains("41 103"), "{}", out.describe());
    // The pty is the command's controlling terminal, and its exit code comes back.
    let out = in_pty(
        &env,
        &format!(
            "{bin} exec -t web sh -c '[ $(cut -d\" \" -f7 /proc/self/stat) != 0 ] && echo has-ctty; exit 4'; echo rc=$?"
        ),
        b"",
    );
    assert!(out.stdout_str().contains("has-ctty"), "{}", out.describe());
    assert!(out.stdout_str().contains("rc=4"), "{}", out.describe());
    // The window size follows the user's terminal (SIGWINCH).
    let out = in_pty(
        &env,
        &format!(
            "{bin} exec -t web sh -c 'sleep 3; stty size' & sleep 1; stty rows 50 cols 120; wait"
        ),
        b"",
    );
    assert!(out.stdout_str().contains("50 120"), "{}", out.describe());
    // Interactive input reaches the command.
    let out = in_pty(
        &env,
        &format!("{bin} exec -it web sh -c 'read x; echo got-$x'"),
        b"abc\r",
    );
    assert!(out.stdout_str().contains("got-abc"), "{}", out.describe());
}

/// Prints `S: pid pgrp session tty_nr tpgid` of the shell itself (no quotes inside, so
/// it can be single-quoted for a host shell).
const SESSION_PROBE: &str = "read -r a b c d e f g h r </proc/$$/stat; echo S: $$ $e $f $g $h";

/// The five numbers after `S:` in `text`.
fn session_fields(text: &str) -> Vec<String> {
    let after = text.split("S: ").nth(1).unwrap_or("");
    after
        .split_whitespace()
        .take(5)
        .map(str::to_string)
        .collect()
}

/// The exec'd command leads its own session and process group inside the container, as
/// under runc (so its own setsid() fails with EPERM), with or without -i; with -t it
/// is also the terminal's foreground process group.
#[test]
fn exec_command_leads_its_own_session() {
    require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootless());
    start(&env, "web", &[]);
    for flags in [&[][..], &["-i"][..]] {
        let mut args = flags.to_vec();
        args.extend_from_slice(&["web", "sh", "-c", SESSION_PROBE]);
        let line = exec_out(&env, &args);
        let f = session_fields(&line);
        assert_eq!(f.len(), 5, "{line}");
        assert_eq!(f[1], f[0], "process group of {flags:?}: {line}");
        assert_eq!(f[2], f[0], "session of {flags:?}: {line}");
        assert_eq!(f[3], "0", "no terminal without -t: {line}");
    }
    skip_if_no_script!();
    let bin = skiff_bin().display().to_string();
    for t in ["-t", "-it"] {
        let out = in_pty(
            &env,
            &format!("{bin} exec {t} web sh -c '{SESSION_PROBE}'"),
            b"",
        );
        let f = session_fields(&out.stdout_str());
        assert_eq!(f.len(), 5, "{}", out.describe());
        assert_eq!(f[1], f[0], "{}", out.describe());
        assert_eq!(f[2], f[0], "{}", out.describe());
        assert_ne!(
            f[3],
            "0",
            "the pty is its controlling terminal: {}",
            out.describe()
        );
        assert_eq!(f[4], f[0], "foreground process group: {}", out.describe());
    }
}

fn owner_in(env: &TestEnv, ctr: &str, path: &str) -> String {
    exec_out(env, &[ctr, "stat", "-c", "%u:%g", path])
        .trim()
        .to_string()
}

#[test]
fn cp_running_container_both_ways() {
    require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootless());
    start(&env, "web", &["--hostname", "webhost"]);
    // Out: a file into the current directory keeps its name.
    env.run(&["cp", "web:/etc/hostname", "."]).success();
    let got = env.work.join("hostname");
    assert_eq!(fs::read_to_string(&got).expect("hostname"), "webhost\n");
    if let Some(u) = &env.user {
        assert_eq!(fs::metadata(&got).expect("meta").uid(), u.uid);
    }
    // In: a file into a directory (trailing slash) goes inside, owned by root in there.
    fs::write(env.work.join("file"), "payload\n").expect("write");
    env.give(&env.work.join("file"));
    env.run(&["cp", "./file", "web:/tmp/"]).success();
    assert_eq!(exec_out(&env, &["web", "cat", "/tmp/file"]), "payload\n");
    assert_eq!(owner_in(&env, "web", "/tmp/file"), "0:0");
    // A new name at the destination.
    env.run(&["cp", "file", "web:/tmp/renamed"]).success();
    assert_eq!(exec_out(&env, &["web", "cat", "/tmp/renamed"]), "payload\n");
    // Directories copy recursively, both ways.
    let d = env.work.join("d");
    fs::create_dir_all(d.join("sub")).expect("mkdir");
    fs::write(d.join("sub/f"), "deep\n").expect("write");
    std::os::unix::fs::symlink("sub/f", d.join("link")).expect("symlink");
    env.give(&d);
    env.run(&["cp", "d", "web:/tmp"]).success();
    assert_eq!(exec_out(&env, &["web", "cat", "/tmp/d/sub/f"]), "deep\n");
    assert_eq!(
        exec_out(&env, &["web", "readlink", "/tmp/d/link"]),
        "sub/f\n"
    );
    exec_out(
        &env,
        &[
            "-u",
            "1000",
            "web",
            "sh",
            "-c",
            "mkdir /tmp/u && echo mine > /tmp/u/m",
        ],
    );
    env.run(&["cp", "web:/tmp/u", "back"]).success();
    assert_eq!(
        fs::read_to_string(env.work.join("back/m")).expect("m"),
        "mine\n"
    );
    // Errors: missing source, missing container, both sides local.
    let out = env.run(&["cp", "web:/nope", "."]);
    out.assert_code(125)
        .stderr_contains("could not find \"/nope\" on container web");
    env.run(&["cp", "ghost:/etc/hostname", "."])
        .assert_code(125);
    env.run(&["cp", "missing-file", "web:/tmp/"])
        .assert_code(125);
    env.run(&["cp", "web:/etc/hostname", "/no/such/dir/x"])
        .assert_code(125);
}

#[test]
fn cp_streams_tar_on_stdin_and_stdout() {
    require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootless());
    start(&env, "web", &[]);
    let out = env.run(&["cp", "web:/etc/passwd", "-"]);
    out.success();
    let mut ar = tar::Archive::new(&out.stdout[..]);
    let mut names = Vec::new();
    for e in ar.entries().expect("tar") {
        let mut e = e.expect("entry");
        names.push(e.path().expect("path").display().to_string());
        let mut s = String::new();
        std::io::Read::read_to_string(&mut e, &mut s).expect("read");
        assert_eq!(s, images::PASSWD);
    }
    assert_eq!(names, ["passwd"]);

    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(3);
    h.set_mode(0o640);
    h.set_uid(1000);
    h.set_gid(50);
    h.set_cksum();
    b.append_data(&mut h, "streamed", &b"abc"[..])
        .expect("append");
    let data = b.into_inner().expect("tar");
    env.cmd(&["cp", "-", "web:/tmp"])
        .stdin(data.clone())
        .output()
        .success();
    assert_eq!(exec_out(&env, &["web", "cat", "/tmp/streamed"]), "abc");
    assert_eq!(owner_in(&env, "web", "/tmp/streamed"), "1000:50");
    // A stream needs a directory to land in.
    env.cmd(&["cp", "-", "web:/tmp/streamed"])
        .stdin(data)
        .output()
        .assert_code(125);
}

#[test]
fn cp_never_follows_container_symlinks_to_the_host() {
    require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootless());
    start(&env, "web", &[]);
    exec_out(
        &env,
        &[
            "web",
            "sh",
            "-c",
            "ln -s / /escape && ln -s /etc/passwd /pw",
        ],
    );
    env.run(&["cp", "web:/pw", "out"]).success();
    assert_eq!(
        fs::read_to_string(env.work.join("out")).expect("out"),
        images::PASSWD
    );

    let marker = format!("skiff-cp-escape-{}", std::process::id());
    let host_tmp = std::path::Path::new("/tmp").join(&marker);
    let _ = fs::remove_file(&host_tmp);
    fs::write(env.work.join("f"), "inside\n").expect("write");
    env.give(&env.work.join("f"));
    env.run(&["cp", "f", &format!("web:/escape/tmp/{marker}")])
        .success();
    assert!(
        !host_tmp.exists(),
        "cp wrote through a container symlink onto the host"
    );
    assert_eq!(
        exec_out(&env, &["web", "cat", &format!("/tmp/{marker}")]),
        "inside\n"
    );
    // The same for a stopped container, whose rootfs the helper mounts itself.
    env.run(&["rm", "-f", "web"]).success();
    let fx = images::fixtures();
    env.run(&[
        "run",
        "--name",
        "st",
        &fx.busybox.reference,
        "sh",
        "-c",
        "ln -s / /escape && ln -s /etc/passwd /pw && echo made > /made",
    ])
    .success();
    env.run(&["cp", "st:/pw", "out2"]).success();
    assert_eq!(
        fs::read_to_string(env.work.join("out2")).expect("out2"),
        images::PASSWD
    );
    env.run(&["cp", "f", &format!("st:/escape/tmp/{marker}")])
        .success();
    assert!(
        !host_tmp.exists(),
        "cp wrote through a container symlink onto the host"
    );
    env.run(&["cp", &format!("st:/tmp/{marker}"), "back"])
        .success();
    assert_eq!(
        fs::read_to_string(env.work.join("back")).expect("back"),
        "inside\n"
    );
}

#[test]
fn cp_stopped_and_created_containers() {
    let fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootless());
    env.run(&[
        "run",
        "--name",
        "st",
        &fx.busybox.reference,
        "sh",
        "-c",
        "echo made > /made",
    ])
    .success();
    env.run(&["cp", "st:/made", "."]).success();
    assert_eq!(
        fs::read_to_string(env.work.join("made")).expect("made"),
        "made\n"
    );
    fs::write(env.work.join("in"), "to-stopped\n").expect("write");
    env.give(&env.work.join("in"));
    env.run(&["cp", "in", "st:/root/"]).success();
    env.run(&["cp", "st:/root/in", "again"]).success();
    assert_eq!(
        fs::read_to_string(env.work.join("again")).expect("again"),
        "to-stopped\n"
    );

    env.run(&[
        "create",
        "--name",
        "cr",
        &fx.busybox.reference,
        "cat",
        "/root/in",
    ])
    .success();
    env.run(&["cp", "in", "st:/root/"]).success();
    env.run(&["cp", "in", "cr:/root/"]).success();
    let out = env.run(&["start", "-a", "cr"]);
    out.success();
    assert_eq!(out.stdout_str(), "to-stopped\n");
    // After all that, rm leaves nothing behind.
    env.run(&["rm", "st", "cr"]).success();
}

#[test]
fn top_lists_container_processes_as_seen_inside() {
    let fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootless());
    start(&env, "web", &[]);
    env.run(&["exec", "-d", "-u", "1000", "web", "sleep", "999"])
        .success();
    let t0 = Instant::now();
    let text = loop {
        let out = env.run(&["top", "web"]);
        out.success();
        let text = out.stdout_str();
        if text.contains("sleep 999") || t0.elapsed() > Duration::from_secs(10) {
            break text;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let lines: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines[0],
        ["USER", "PID", "PPID", "%CPU", "ELAPSED", "TTY", "TIME", "COMMAND"],
        "{text}"
    );
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(lines[1][..3], ["root", "1", "0"], "{text}");
    // TIME is the CPU time of that process, which includes the container's set-up before
    // exec: under load it can reach 10ms. Only TTY and COMMAND are fixed.
    assert_eq!(lines[1][5], "?", "{text}");
    assert_eq!(lines[1][7..], ["sleep", "1000"], "{text}");
    assert_eq!(lines[2][0], "tester", "{text}");
    assert_eq!(lines[2][7..], ["sleep", "999"], "{text}");

    let out = env.run(&["top", "web", "pid", "%U", "args"]);
    out.success();
    let first: Vec<String> = out
        .stdout_str()
        .lines()
        .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(first[..2], ["PID USER".to_string(), "1 root".to_string()]);
    env.run(&["top", "web", "bogus"]).assert_code(125);

    env.run(&["create", "--name", "idle", &fx.busybox.reference, "true"])
        .success();
    env.run(&["top", "idle"])
        .assert_code(125)
        .stderr_contains("top can only be used on running containers");
}

#[test]
fn rootful_exec_cp_top() {
    let fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootful());
    start(&env, "web", &[]);
    assert_eq!(
        exec_out(&env, &["-u", "tester", "web", "id", "-un"]),
        "tester\n"
    );
    env.run(&["exec", "web", "sh", "-c", "exit 7"])
        .assert_code(7);
    fs::write(env.work.join("f"), "rootful\n").expect("write");
    env.run(&["cp", "f", "web:/tmp/"]).success();
    assert_eq!(owner_in(&env, "web", "/tmp/f"), "0:0");
    env.run(&["cp", "web:/tmp/f", "back"]).success();
    assert_eq!(
        fs::read_to_string(env.work.join("back")).expect("back"),
        "rootful\n"
    );
    let top = env.run(&["top", "web", "pid", "user", "args"]);
    top.success();
    assert!(
        top.stdout_str()
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["1", "root", "sleep", "1000"]),
        "{}",
        top.describe()
    );
    env.run(&["run", "--name", "st", &fx.busybox.reference, "true"])
        .success();
    env.run(&["cp", "f", "st:/"]).success();
    env.run(&["cp", "st:/f", "back2"]).success();
    assert_eq!(
        fs::read_to_string(env.work.join("back2")).expect("back2"),
        "rootful\n"
    );
    // The helper's overlay mount lived in its own mount namespace only.
    let mounts = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(
        !mounts.contains(env.root_dir.to_str().expect("utf8")),
        "{mounts}"
    );
}
