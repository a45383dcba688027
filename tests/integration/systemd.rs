//! Issue 6, systemd: Quadlet `.container` files (also through the generator symlink),
//! `generate systemd`, `stop`/`rm --cidfile --ignore` as the units use them, and the
//! sd_notify protocol against a NOTIFY_SOCKET this test listens on. Generated units
//! are checked with `systemd-analyze verify`. This machine's PID 1 is not systemd, so
//! no unit is started for real.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::images;
use crate::require;
use crate::support::{assert_error, pull};
use crate::util::{skiff_bin, TestEnv};

const WEB: &str = "\
# a comment
[Unit]
Description=The web container

[Container]
Image=127.0.0.1:5000/skiff-test/busybox:latest
ContainerName=web
Exec=httpd -f -p 8080 -h \"/srv/my site\"
Environment=MODE=prod \"GREETING=hello world\"
Label=app=web
Annotation=owner=ops
Volume=/srv/site:/srv:ro
WorkingDir=/srv
Entrypoint=/bin/sh
User=1000
Group=1000
Notify=false
SkiffArgs=--stop-timeout 20

[Service]
Restart=always

[Install]
WantedBy=default.target multi-user.target
";

/// Writes `name` with `text` into the test user's Quadlet directory.
fn put_unit(env: &TestEnv, name: &str, text: &str) -> PathBuf {
    let dir = env.home.join(".config/containers/systemd");
    fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    fs::write(&path, text).unwrap();
    env.give(&env.home.join(".config"));
    path
}

/// `systemd-analyze verify` on unit files (as the test process: root in CI).
fn verify(units: &[&Path]) -> Result<(), String> {
    if !Path::new("/usr/bin/systemd-analyze").exists() {
        return Err("systemd-analyze is not installed (Debian package systemd)".into());
    }
    let out = std::process::Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(units)
        .output()
        .map_err(|e| e.to_string())?;
    let err = String::from_utf8_lossy(&out.stderr);
    // Complaints about the host's own units (there is no running systemd here) are not
    // about ours; anything that names one of our files is.
    let ours: Vec<&str> = err
        .lines()
        .filter(|l| {
            units.iter().any(|u| {
                let n = u.file_name().unwrap().to_string_lossy();
                l.contains(n.as_ref())
            })
        })
        .collect();
    assert!(
        out.status.success() && ours.is_empty(),
        "systemd-analyze verify failed ({:?}):\n{err}",
        out.status
    );
    Ok(())
}

#[test]
fn quadlet_dryrun_converts_every_key_and_verifies() {
    let env = require!(TestEnv::try_rootless());
    put_unit(&env, "web.container", WEB);
    let out = env.run(&["quadlet", "--user", "--dryrun"]);
    out.success();
    let text = out.stdout_str();
    assert!(text.starts_with("---web.service---\n"), "{text}");
    let bin = skiff_bin().display().to_string();
    for needle in [
        &format!("ExecStart={bin} run --name=web --cidfile=%t/%N.cid --replace --rm --sdnotify=conmon -d"),
        "--user 1000:1000",
        "--workdir /srv",
        "--entrypoint /bin/sh",
        "-v /srv/site:/srv:ro",
        "--env MODE=prod",
        "--env \"GREETING=hello world\"",
        "--label app=web",
        "--annotation owner=ops",
        "--stop-timeout 20",
        "127.0.0.1:5000/skiff-test/busybox:latest httpd -f -p 8080 -h \"/srv/my site\"",
        "Type=notify\n",
        "NotifyAccess=all\n",
        "KillMode=mixed\n",
        "Delegate=yes\n",
        "SyslogIdentifier=%N\n",
        "Environment=PODMAN_SYSTEMD_UNIT=%n\n",
        "Restart=always\n",
        &format!("ExecStop={bin} stop --ignore --cidfile=%t/%N.cid\n"),
        &format!("ExecStopPost=-{bin} rm -f --ignore --cidfile=%t/%N.cid\n"),
        "ExecStopPost=-/bin/rm -f %t/%N.cid\n",
        "RequiresMountsFor=/srv/site\n",
        "[X-Container]\nImage=",
        "Description=The web container\n",
        "[Install]\nWantedBy=default.target multi-user.target\n",
    ] {
        assert!(
            text.replace(" \\\n\t", " ").contains(needle),
            "missing {needle:?} in\n{text}"
        );
    }
    // The user's [Container] section must not survive under its own name.
    assert!(!text.contains("[Container]"), "{text}");
    let out_dir = env.dir.join("verify");
    fs::create_dir_all(&out_dir).unwrap();
    let unit = out_dir.join("web.service");
    fs::write(&unit, text.trim_start_matches("---web.service---\n")).unwrap();
    require!(verify(&[&unit]));
}

#[test]
fn quadlet_as_generator_writes_services_and_install_links() {
    let env = require!(TestEnv::try_rootless());
    put_unit(&env, "web.container", WEB);
    put_unit(
        &env,
        "job.container",
        "[Container]\nImage=busybox\nExec=true\nNotify=yes\n[Service]\nType=oneshot\n",
    );
    // systemd calls a generator by its symlink's name with normal, early and late dirs.
    let gen_dir = env.dir.join("gen");
    fs::create_dir_all(&gen_dir).unwrap();
    let link = gen_dir.join("skiff-user-generator");
    std::os::unix::fs::symlink(skiff_bin(), &link).unwrap();
    let out_dir = env.dir.join("out");
    for d in ["normal", "early", "late"] {
        fs::create_dir_all(out_dir.join(d)).unwrap();
    }
    env.give(&out_dir);
    let normal = out_dir.join("normal");
    env.host_cmd(
        &link,
        &[&normal, &out_dir.join("early"), &out_dir.join("late")],
    )
    .output()
    .success();
    let web = fs::read_to_string(normal.join("web.service")).unwrap();
    assert!(web.contains("--sdnotify=conmon -d"), "{web}");
    assert!(web.starts_with("# Automatically generated by skiff quadlet --user\n"));
    for target in ["default.target", "multi-user.target"] {
        let l = normal.join(format!("{target}.wants/web.service"));
        assert_eq!(
            fs::read_link(&l).unwrap(),
            PathBuf::from("../web.service"),
            "{}",
            l.display()
        );
    }
    // A oneshot service neither detaches nor speaks sd_notify.
    let job = fs::read_to_string(normal.join("job.service")).unwrap();
    assert!(!job.contains("-d ") && !job.contains("--sdnotify"), "{job}");
    assert!(
        job.contains("Type=oneshot") && !job.contains("Type=notify"),
        "{job}"
    );
    assert!(fs::read_dir(out_dir.join("early"))
        .unwrap()
        .next()
        .is_none());
    require!(verify(&[
        &normal.join("web.service"),
        &normal.join("job.service")
    ]));
}

#[test]
fn quadlet_rejects_unknown_keys_and_bad_files_by_name() {
    let env = require!(TestEnv::try_rootless());
    put_unit(&env, "good.container", "[Container]\nImage=busybox\n");
    let bad = put_unit(
        &env,
        "bad.container",
        "[Container]\nImage=busybox\nAddCapability=NET_ADMIN\n",
    );
    let out_dir = env.dir.join("out");
    fs::create_dir_all(&out_dir).unwrap();
    env.give(&out_dir);
    let out = env.run(&["quadlet", "--user", out_dir.to_str().unwrap()]);
    assert_error(
        &out,
        125,
        &[
            "unsupported key 'AddCapability'",
            &bad.display().to_string(),
        ],
    );
    // The good file is still generated, the bad one is not.
    assert!(out_dir.join("good.service").exists());
    assert!(!out_dir.join("bad.service").exists());

    // PublishPort= is passed on as --publish (an empty needle list: success).
    let publish: &[&str] = &[];
    let cases: [(&str, &[&str]); 6] = [
        ("[Container]\nExec=true\n", &["no Image= key"]),
        (
            "[Container]\nImage=busybox\nnot a key line\n",
            &[":3:", "KEY=VALUE"],
        ),
        ("Image=busybox\n", &[":1:", "before any [Section]"]),
        ("[Unit]\nDescription=x\n", &["no [Container] section"]),
        (
            "[Container]\nImage=busybox\n[Service]\nType=forking\n",
            &["invalid service Type=forking"],
        ),
        ("[Container]\nImage=busybox\nPublishPort=8080:80\n", publish),
    ];
    fs::remove_file(&bad).unwrap();
    for (text, needles) in cases {
        let p = put_unit(&env, "case.container", text);
        let out = env.run(&["quadlet", "--user", "--dryrun"]);
        if needles.is_empty() {
            out.success();
            assert!(
                out.stdout_str().contains("--publish 8080:80"),
                "{}",
                out.describe()
            );
            continue;
        }
        let mut all = vec![p.to_str().unwrap()];
        all.extend_from_slice(needles);
        assert_error(&out, 125, &all);
    }
    // Without --dryrun a directory is needed.
    fs::remove_file(env.home.join(".config/containers/systemd/case.container")).unwrap();
    assert_error(
        &env.run(&["quadlet", "--user"]),
        125,
        &["missing output directory"],
    );
}

/// A rootless env with busybox pulled.
fn with_busybox() -> Result<(TestEnv, String), String> {
    let fx = images::try_fixtures()?;
    let env = TestEnv::try_rootless()?;
    pull(&env, &fx.busybox.reference);
    Ok((env, fx.busybox.reference.clone()))
}

#[test]
fn generate_systemd_new_and_existing_units_verify() {
    let (env, image) = require!(with_busybox());
    env.run(&[
        "create",
        "--name",
        "gsweb",
        "-e",
        "A=1",
        "--label",
        "x=y z",
        "--restart",
        "on-failure",
        &image,
        "sleep",
        "100",
    ])
    .success();
    let bin = skiff_bin().display().to_string();
    let out = env.run(&["generate", "systemd", "--new", "--name", "gsweb"]);
    out.success();
    let text = out.stdout_str().replace(" \\\n\t", " ");
    for needle in [
        "# container-gsweb.service\n",
        "ExecStartPre=/bin/rm -f %t/%n.ctr-id\n",
        &format!("ExecStart={bin} run --cidfile=%t/%n.ctr-id --rm --sdnotify=conmon -d --replace --name gsweb"),
        "-e A=1",
        "--label \"x=y z\"",
        &format!("{image} sleep 100\n"),
        &format!("ExecStop={bin} stop --ignore -t 10 --cidfile=%t/%n.ctr-id\n"),
        &format!("ExecStopPost={bin} rm -f --ignore --cidfile=%t/%n.ctr-id\n"),
        "Restart=on-failure\n",
        "TimeoutStopSec=70\n",
        "Type=notify\n",
        "NotifyAccess=all\n",
        "WantedBy=default.target\n",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    assert!(!text.contains("--restart"), "{text}");

    // Existing container, by ID, custom prefix and separator, to a file.
    let out = env.run(&[
        "generate",
        "systemd",
        "--files",
        "--container-prefix=ctr",
        "--separator=_",
        "--restart-policy=always",
        "-t",
        "5",
        "gsweb",
    ]);
    out.success();
    let id = crate::support::inspect_one(&env, &["gsweb"])["Id"]
        .as_str()
        .unwrap()
        .to_string();
    let file = env.work.join(format!("ctr_{id}.service"));
    assert_eq!(out.stdout_trim(), file.display().to_string());
    let unit = fs::read_to_string(&file).unwrap().replace(" \\\n\t", " ");
    assert!(
        unit.contains(&format!("ExecStart={bin} start {id}\n")),
        "{unit}"
    );
    assert!(
        unit.contains(&format!("ExecStop={bin} stop --ignore -t 5 {id}\n")),
        "{unit}"
    );
    assert!(unit.contains("Restart=always\n") && unit.contains("TimeoutStopSec=65\n"));

    let new_unit = env.dir.join("container-gsweb.service");
    fs::write(
        &new_unit,
        out_text(&env, &["generate", "systemd", "--new", "--name", "gsweb"]),
    )
    .unwrap();
    require!(verify(&[&new_unit, &file]));

    assert_error(
        &env.run(&["generate", "systemd", "nosuch"]),
        125,
        &["nosuch"],
    );
    let bad = env.run(&["generate", "systemd", "--restart-policy=sometimes", "gsweb"]);
    assert_error(&bad, 125, &["sometimes"]);
}

fn out_text(env: &TestEnv, args: &[&str]) -> String {
    let out = env.run(args);
    out.success();
    out.stdout_str()
}

#[test]
fn stop_and_rm_by_cidfile_with_ignore() {
    let (env, image) = require!(with_busybox());
    let cid = env.work.join("c.cid");
    let cid_s = cid.to_str().unwrap();
    let run = env.run(&["run", "-d", "--cidfile", cid_s, &image, "sleep", "100"]);
    run.success();
    let id = run.stdout_trim();
    assert_eq!(fs::read_to_string(&cid).unwrap(), id);
    let out = env.run(&["stop", "--ignore", "-t", "1", &format!("--cidfile={cid_s}")]);
    out.success();
    assert_eq!(out.stdout_trim(), id);
    let st = crate::support::inspect_one(&env, &[&id]);
    assert_eq!(st["State"]["Status"], "exited", "{st}");
    env.run(&["rm", "-f", "--ignore", "--cidfile", cid_s])
        .success();
    assert!(env.run(&["inspect", &id]).code() != Some(0));
    // Gone container, and missing file, are fine with --ignore ...
    env.run(&["rm", "-f", "--ignore", "--cidfile", cid_s])
        .success();
    let missing = env.work.join("none.cid");
    let missing_s = missing.to_str().unwrap();
    env.run(&["stop", "--ignore", "--cidfile", missing_s])
        .success();
    env.run(&["rm", "-f", "-i", "--cidfile", missing_s])
        .success();
    // ... but errors naming the file without it.
    assert_error(
        &env.run(&["stop", "--cidfile", missing_s]),
        125,
        &["none.cid"],
    );
    assert_error(
        &env.run(&["rm", "--cidfile", missing_s]),
        125,
        &["none.cid"],
    );
    assert_error(
        &env.run(&["rm", "--cidfile", cid_s, "other"]),
        125,
        &["--cidfile"],
    );
}

/// A datagram socket the test user can send to, standing in for systemd's.
struct NotifySocket {
    sock: UnixDatagram,
    path: PathBuf,
}

impl NotifySocket {
    fn new(env: &TestEnv) -> NotifySocket {
        let dir = env.dir.join("systemd");
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.join("notify");
        let sock = UnixDatagram::bind(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o777)).unwrap();
        sock.set_nonblocking(true).unwrap();
        NotifySocket { sock, path }
    }

    /// Messages already queued, without waiting.
    fn queued(&self) -> Vec<String> {
        let mut v = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = self.sock.recv(&mut buf) {
            v.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        v
    }

    /// Waits up to `limit` for a message containing `needle`; returns all seen.
    fn wait_for(&self, needle: &str, limit: Duration) -> Vec<String> {
        let t0 = Instant::now();
        let mut seen = Vec::new();
        while t0.elapsed() < limit {
            seen.extend(self.queued());
            if seen.iter().any(|m| m.contains(needle)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        seen
    }
}

fn monitor_pid(env: &TestEnv, id: &str) -> i32 {
    // The monitor is the process whose command line is `... __monitor ID ...`.
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmd = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
        if args.contains(&b"__monitor".as_slice()) && args.contains(&id.as_bytes()) {
            return pid;
        }
    }
    panic!("no monitor for {id} (env {})", env.dir.display());
}

#[test]
fn sdnotify_conmon_sends_mainpid_and_ready_before_run_returns() {
    let (env, image) = require!(with_busybox());
    let ns = NotifySocket::new(&env);
    let out = env
        .cmd(&["run", "-d", &image, "sleep", "100"])
        .env("NOTIFY_SOCKET", &ns.path)
        .output();
    out.success();
    let id = out.stdout_trim();
    // Queued before `run -d` exited: no waiting allowed here.
    let msgs = ns.queued();
    let mon = monitor_pid(&env, &id);
    assert_eq!(msgs, vec![format!("MAINPID={mon}\nREADY=1\n")]);

    // --sdnotify=ignore: nothing at all.
    let out = env
        .cmd(&["run", "-d", "--sdnotify=ignore", &image, "sleep", "100"])
        .env("NOTIFY_SOCKET", &ns.path)
        .output();
    out.success();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(ns.queued(), Vec::<String>::new());

    // A bad mode is refused before anything is created.
    let before = crate::support::snapshot(&env);
    let bad = env.run(&["run", "-d", "--sdnotify=sometimes", &image, "true"]);
    assert_error(&bad, 125, &["sdnotify", "sometimes"]);
    assert_eq!(crate::support::snapshot(&env), before);
}

#[test]
fn sdnotify_container_passes_the_socket_and_only_mainpid_from_the_monitor() {
    let (env, image) = require!(with_busybox());
    let ns = NotifySocket::new(&env);
    // busybox has no sd_notify tool, but its logger sends one datagram to /dev/log:
    // pointing /dev/log at the socket delivers "<pri>... x\nREADY=1", whose second line
    // systemd reads as READY=1.
    let script = "test -S /run/notify/notify.sock && echo \"sock $NOTIFY_SOCKET\" && \
                  ln -sf /run/notify/notify.sock /dev/log && \
                  logger \"$(printf 'x\\nREADY=1')\" && sleep 100";
    let out = env
        .cmd(&[
            "run",
            "-d",
            "--sdnotify=container",
            &image,
            "sh",
            "-c",
            script,
        ])
        .env("NOTIFY_SOCKET", &ns.path)
        .output();
    out.success();
    let id = out.stdout_trim();
    let mon = monitor_pid(&env, &id);
    let msgs = ns.wait_for("READY=1", Duration::from_secs(10));
    assert_eq!(msgs.first(), Some(&format!("MAINPID={mon}\n")), "{msgs:?}");
    assert!(
        msgs.iter()
            .skip(1)
            .any(|m| m.lines().any(|l| l == "READY=1")),
        "the container's READY=1 never arrived: {msgs:?}"
    );
    let logs = env.run(&["logs", &id]);
    logs.success();
    assert_eq!(logs.stdout_trim(), "sock /run/notify/notify.sock");

    // Without a NOTIFY_SOCKET (not under systemd) container mode runs as usual.
    let out = env.run(&[
        "run",
        "--rm",
        "--sdnotify=container",
        &image,
        "sh",
        "-c",
        "echo ${NOTIFY_SOCKET:-unset}; test -e /run/notify/notify.sock || echo nosock",
    ]);
    out.success();
    assert_eq!(out.stdout_str(), "unset\nnosock\n");

    // An abstract socket cannot be bound into a container: a clear error.
    let bad = env
        .cmd(&["run", "--rm", "--sdnotify=container", &image, "true"])
        .env("NOTIFY_SOCKET", "@skiff-test-abstract")
        .output();
    assert_error(&bad, 125, &["abstract", "--sdnotify=conmon"]);
}

// `system doctor` lives here too: it is what a user runs before setting up services.

#[test]
fn doctor_passes_for_the_test_user_with_warnings() {
    let env = require!(TestEnv::try_rootless());
    let out = env.run(&["system", "doctor"]);
    out.success();
    let text = out.stdout_str();
    for line in [
        "[  ok] subuid ",
        "[  ok] subgid ",
        "[  ok] newuidmap ",
        "[  ok] userns ",
        "[  ok] overlay ",
        "[  ok] idmap ",
    ] {
        assert!(text.contains(line), "missing {line:?}\n{text}");
    }
    if !Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        assert!(
            text.contains("[warn] cgroup         cgroup v1 or hybrid"),
            "{text}"
        );
        assert!(text.contains("fix: boot with systemd.unified_cgroup_hierarchy=1"));
    }
    assert!(
        text.lines()
            .last()
            .unwrap()
            .starts_with("ready for rootless containers: 0 failed"),
        "{text}"
    );
    // The probe cleans up after itself.
    let tmp = env.root_dir.join("tmp");
    assert!(crate::support::listing(&tmp)
        .iter()
        .all(|n| !n.starts_with("doctor-")));
}

#[test]
fn doctor_fails_without_subids_and_names_the_fix() {
    let env = require!(TestEnv::try_rootless_no_subids());
    let user = env.user.clone().unwrap().name;
    let out = env.run(&["system", "doctor"]);
    assert_error(&out, 1, &["not ready", "subuid", "subgid"]);
    let text = out.stdout_str();
    assert!(text.contains("[FAIL] subuid"), "{text}");
    assert!(
        text.contains(&format!(
            "fix: as root: usermod --add-subuids 100000-165535 {user}"
        )),
        "{text}"
    );
    assert!(text.contains(&format!("usermod --add-subgids 100000-165535 {user}")));
    // The namespace itself still works: only the mapping is missing.
    assert!(text.contains("[  ok] userns "), "{text}");
}

#[test]
fn doctor_json_has_a_stable_shape() {
    let env = require!(TestEnv::try_rootless());
    let out = env.run(&["system", "doctor", "--format", "json"]);
    let v = crate::support::json(&out);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["rootless"], true);
    assert_eq!(v["user"], env.user.as_ref().unwrap().name.as_str());
    assert!(v["uid"].is_u64());
    let checks = v["checks"].as_array().unwrap();
    let mut ids = Vec::new();
    for c in checks {
        let o = c.as_object().unwrap();
        let mut keys: Vec<&str> = o.keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(keys, ["fix", "id", "message", "required", "status"], "{c}");
        assert!(["ok", "warn", "fail", "skip"].contains(&c["status"].as_str().unwrap()));
        assert!(c["required"].is_boolean() && c["message"].is_string());
        if c["status"] == "warn" || c["status"] == "fail" {
            assert!(c["fix"].is_string(), "a problem without a fix: {c}");
        }
        ids.push(c["id"].as_str().unwrap().to_string());
    }
    for want in [
        "subuid",
        "subgid",
        "newuidmap",
        "newgidmap",
        "userns-sysctl",
        "userns",
        "overlay",
        "idmap",
        "idmapped-mounts",
        "fuse",
        "tun",
        "runtime-dir",
        "cgroup",
        "linger",
        "ping",
        "ports",
    ] {
        assert_eq!(
            ids.iter().filter(|i| *i == want).count(),
            1,
            "{want}: {ids:?}"
        );
    }
    assert_error(
        &env.run(&["system", "doctor", "--format", "yaml"]),
        125,
        &["yaml"],
    );
}
