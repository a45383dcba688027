//! The image the seccomp and escape tests run: busybox plus `sysprobe`
//! (tests/tools/sysprobe.rs, built static like nettool) and an empty /mnt, pushed as
//! `<busybox repo>:sysprobe`, and a rootless podman (runc) to compare with.

use std::path::PathBuf;
use std::sync::OnceLock;

use serde_json::json;

use crate::images::{self, plain, LayerTar};
use crate::util::{Output, TestEnv};

/// sysprobe, compiled once per test run.
pub fn sysprobe() -> Result<&'static PathBuf, String> {
    static TOOL: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    TOOL.get_or_init(|| {
        if !cfg!(any(target_arch = "x86_64", target_arch = "aarch64")) {
            return Err("sysprobe knows the syscall tables of x86_64 and aarch64 only".into());
        }
        images::build_static_tool("sysprobe")
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// busybox + /bin/sysprobe + /mnt, as `<busybox repo>:sysprobe`.
pub fn probe_image() -> Result<&'static str, String> {
    static IMG: OnceLock<Result<String, String>> = OnceLock::new();
    IMG.get_or_init(|| push_variant("sysprobe", None))
        .as_ref()
        .map(String::as_str)
        .map_err(Clone::clone)
}

/// The probe image plus a symlink `/data -> target` (e.g. a host path), as a new tag.
pub fn link_image(tag: &str, target: &str) -> Result<String, String> {
    let mut t = LayerTar::new();
    t.symlink("data", target);
    push_variant(tag, Some(t))
}

fn push_variant(tag: &str, extra: Option<LayerTar>) -> Result<String, String> {
    let tool = std::fs::read(sysprobe()?).map_err(|e| e.to_string())?;
    let mut t = LayerTar::new();
    t.dir("bin", 0o755, 0, 0)
        .file("bin/sysprobe", 0o755, 0, 0, &tool)
        .dir("mnt", 0o755, 0, 0);
    let mut layers = vec![plain(t.finish())];
    layers.extend(extra.map(|t| plain(t.finish())));
    images::push_on_busybox(tag, &layers, json!({}))
}

/// podman 4.3 rootless as the test user, with runc and a private store in the test's
/// directory (vfs: no fuse-overlayfs needed), or why there is none.
pub struct Podman<'a> {
    env: &'a TestEnv,
    root: PathBuf,
    runroot: PathBuf,
}

impl<'a> Podman<'a> {
    pub fn new(env: &'a TestEnv) -> Result<Podman<'a>, String> {
        if !std::path::Path::new("/usr/bin/podman").exists() {
            return Err("no podman (Debian package podman)".into());
        }
        if !std::path::Path::new("/usr/sbin/runc").exists()
            && !std::path::Path::new("/usr/bin/runc").exists()
        {
            return Err("no runc (Debian package runc)".into());
        }
        let p = Podman {
            env,
            root: env.dir.join("podman-root"),
            runroot: env.dir.join("podman-run"),
        };
        Ok(p)
    }

    /// `podman ARGS` as the test user.
    pub fn run(&self, args: &[&str]) -> Output {
        let mut full: Vec<String> = vec![
            "--root".into(),
            self.root.display().to_string(),
            "--runroot".into(),
            self.runroot.display().to_string(),
            "--storage-driver".into(),
            "vfs".into(),
            "--runtime".into(),
            "runc".into(),
            "--cgroup-manager".into(),
            "cgroupfs".into(),
            "--events-backend".into(),
            "file".into(),
        ];
        full.extend(args.iter().map(|s| s.to_string()));
        self.env.host_cmd("podman", &full).output()
    }

    /// Pulls an image from the test registry (plain HTTP).
    pub fn pull(&self, image: &str) -> Result<(), String> {
        let out = self.run(&["pull", "-q", "--tls-verify=false", image]);
        if out.code() != Some(0) {
            return Err(format!("podman pull {image} failed: {}", out.describe()));
        }
        Ok(())
    }
}

impl Drop for Podman<'_> {
    fn drop(&mut self) {
        // The store holds files owned by subordinate IDs: remove it inside podman's
        // user namespace (the test user could not otherwise).
        let root = self.root.display().to_string();
        let run = self.runroot.display().to_string();
        let _ = self
            .env
            .host_cmd("podman", &["unshare", "rm", "-rf", &root, &run])
            .output();
    }
}
