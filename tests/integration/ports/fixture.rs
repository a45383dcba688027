//! The image and helper the port tests run: `nettool` (tests/tools/nettool.rs) built as
//! a static binary, and busybox plus nettool and a web page, EXPOSEing two ports.

use std::path::PathBuf;
use std::sync::OnceLock;

use serde_json::json;

use crate::images::{self, descriptor, plain, LayerTar, MT_CONFIG, MT_MANIFEST, PATH_ENV};
use crate::registry;

/// What busybox httpd serves from /www.
pub const PAGE: &str = "hello through a published port\n";

/// nettool, compiled once per test run (static, so it runs in the busybox image).
pub fn nettool() -> Result<&'static PathBuf, String> {
    static TOOL: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    TOOL.get_or_init(|| images::build_static_tool("nettool"))
        .as_ref()
        .map_err(Clone::clone)
}

/// busybox + /bin/nettool + /www/index.html, EXPOSE 80/tcp and 5353/udp, as
/// `skiff-test/busybox:ports` (sharing busybox's base layer).
pub fn ports_image() -> Result<&'static str, String> {
    static IMG: OnceLock<Result<String, String>> = OnceLock::new();
    IMG.get_or_init(|| {
        let fx = images::try_fixtures()?;
        let repo = &fx.busybox.repo;
        let m = registry::get_manifest(repo, "latest")?;
        let m: serde_json::Value = serde_json::from_slice(&m.body).map_err(|e| e.to_string())?;
        let base = m["layers"][0].clone();
        let cfg = registry::get(&format!("{repo}/blobs/{}", fx.busybox.config_digest), None)?;
        let cfg: serde_json::Value =
            serde_json::from_slice(&cfg.body).map_err(|e| e.to_string())?;
        let base_diff = cfg["rootfs"]["diff_ids"][0].clone();
        let tool = std::fs::read(nettool()?).map_err(|e| e.to_string())?;
        let mut t = LayerTar::new();
        t.dir("bin", 0o755, 0, 0)
            .file("bin/nettool", 0o755, 0, 0, &tool)
            .dir("www", 0o755, 0, 0)
            .file("www/index.html", 0o644, 0, 0, PAGE.as_bytes());
        let layer = plain(t.finish());
        registry::push_blob(repo, &layer.bytes)?;
        let config = serde_json::to_vec(&json!({
            "architecture": images::host_arch(), "os": "linux",
            "config": {"Env": [PATH_ENV], "Cmd": ["sh"],
                       "ExposedPorts": {"80/tcp": {}, "5353/udp": {}}},
            "rootfs": {"type": "layers", "diff_ids": [base_diff, layer.diff_id]},
        }))
        .map_err(|e| e.to_string())?;
        registry::push_blob(repo, &config)?;
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": MT_MANIFEST,
            "config": descriptor(MT_CONFIG, &config),
            "layers": [base, descriptor(layer.media_type, &layer.bytes)],
        }))
        .map_err(|e| e.to_string())?;
        registry::put_manifest(repo, "ports", MT_MANIFEST, &manifest)?;
        Ok(format!("{}/{repo}:ports", registry::try_registry()?))
    })
    .as_ref()
    .map(String::as_str)
    .map_err(Clone::clone)
}
