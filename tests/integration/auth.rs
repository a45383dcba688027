//! Registries that need credentials: skiff reads them from the containers auth.json
//! locations and docker's config.json, as podman does, and fails clearly without them.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;

use crate::images::fixtures;
use crate::require;
use crate::support::assert_error;
use crate::util::TestEnv;

/// A docker-registry with htpasswd auth over the main test registry's storage, killed on
/// drop.
pub struct AuthRegistry {
    child: Child,
    pub addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for AuthRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start_auth_registry() -> Result<AuthRegistry, String> {
    // The fixtures live in the main registry, which this starts if needed.
    crate::images::try_fixtures()?;
    let data = crate::registry::data_dir()
        .ok_or("the test registry came from SKIFF_TEST_REGISTRY; its storage is not ours")?;
    if !Path::new("/usr/bin/htpasswd").exists() {
        return Err("no htpasswd (Debian package apache2-utils)".into());
    }
    let dir = tempfile::Builder::new()
        .prefix("auth")
        .tempdir_in(crate::util::it_root())
        .map_err(|e| e.to_string())?;
    let out = Command::new("htpasswd")
        .args(["-Bbn", "alice", "s3cret"])
        .output()
        .map_err(|e| e.to_string())?;
    std::fs::write(dir.path().join("htpasswd"), &out.stdout).map_err(|e| e.to_string())?;
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let addr = format!("127.0.0.1:{port}");
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  maintenance:\n    uploadpurging:\n      enabled: false\n\
             http:\n  addr: {addr}\n\
             auth:\n  htpasswd:\n    realm: skiff-test\n    path: {}\n",
            data.display(),
            dir.path().join("htpasswd").display()
        ),
    )
    .map_err(|e| e.to_string())?;
    let mut cmd = Command::new("/usr/bin/docker-registry");
    cmd.arg("serve")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: prctl is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|e| e.to_string())?;
    let reg = AuthRegistry {
        child,
        addr,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(&reg.addr).is_err() {
        if Instant::now() > deadline {
            return Err("the auth registry did not come up".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(reg)
}

fn auth_json(host: &str, user: &str, pass: &str) -> String {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    format!(r#"{{"auths":{{"{host}":{{"auth":"{token}"}}}}}}"#)
}

#[test]
fn pulls_from_a_registry_that_needs_credentials() {
    let reg = require!(start_auth_registry());
    let env = TestEnv::rootless();
    let image = format!(
        "{}/{}:{}",
        reg.addr,
        fixtures().busybox.repo,
        fixtures().busybox.tag
    );

    // Without credentials: a clear error, and nothing stored.
    let out = env.run(&["pull", "-q", &image]);
    assert_error(&out, 125, &["authentication required", &reg.addr]);
    assert_eq!(env.run(&["images", "-q"]).stdout_trim(), "");

    // Wrong password in the containers auth file: still refused.
    let auth_dir = env.runtime_dir.join("containers");
    std::fs::create_dir_all(&auth_dir).expect("auth dir");
    let auth_file = auth_dir.join("auth.json");
    std::fs::write(&auth_file, auth_json(&reg.addr, "alice", "wrong")).expect("auth.json");
    env.give(&auth_dir);
    env.give(&auth_file);
    let out = env.run(&["pull", "-q", &image]);
    assert_eq!(out.code(), Some(125), "{}", out.describe());

    // The right one in $XDG_RUNTIME_DIR/containers/auth.json.
    std::fs::write(&auth_file, auth_json(&reg.addr, "alice", "s3cret")).expect("auth.json");
    let out = env.run(&["pull", "-q", &image]);
    out.success();
    assert_eq!(out.stdout_trim(), fixtures().busybox.id);
    let run = env.run(&["run", "--rm", &image, "echo", "authed"]);
    run.success();
    assert_eq!(run.stdout_trim(), "authed");
}

#[test]
fn docker_config_json_and_registry_auth_file_are_read() {
    let reg = require!(start_auth_registry());
    let env = TestEnv::rootless();
    let image = format!(
        "{}/{}:{}",
        reg.addr,
        fixtures().busybox.repo,
        fixtures().busybox.tag
    );

    // docker's ~/.docker/config.json, as podman also reads it.
    let docker_dir = env.home.join(".docker");
    std::fs::create_dir_all(&docker_dir).expect("docker dir");
    let cfg = docker_dir.join("config.json");
    std::fs::write(&cfg, auth_json(&reg.addr, "alice", "s3cret")).expect("config.json");
    env.give(&docker_dir);
    env.give(&cfg);
    env.run(&["pull", "-q", &image]).success();
    env.run(&["rmi", &image]).success();
    std::fs::remove_file(&cfg).expect("remove config.json");

    // REGISTRY_AUTH_FILE names the file explicitly.
    let explicit = env.dir.join("explicit-auth.json");
    std::fs::write(&explicit, auth_json(&reg.addr, "alice", "s3cret")).expect("explicit");
    env.give(&explicit);
    let out = env
        .cmd(&["pull", "-q", &image])
        .env("REGISTRY_AUTH_FILE", explicit.to_str().expect("utf-8 path"))
        .output();
    out.success();
    assert_eq!(out.stdout_trim(), fixtures().busybox.id);
}
