//! The image and helper the port tests run: `nettool` (tests/tools/nettool.rs) built as
//! a static binary, and busybox plus nettool and a web page, EXPOSEing two ports.

use std::path::PathBuf;
use std::sync::OnceLock;

use serde_json::json;

use crate::images::{self, plain, LayerTar};

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
        let tool = std::fs::read(nettool()?).map_err(|e| e.to_string())?;
        let mut t = LayerTar::new();
        t.dir("bin", 0o755, 0, 0)
            .file("bin/nettool", 0o755, 0, 0, &tool)
            .dir("www", 0o755, 0, 0)
            .file("www/index.html", 0o644, 0, 0, PAGE.as_bytes());
        let exposed = json!({"ExposedPorts": {"80/tcp": {}, "5353/udp": {}}});
        images::push_on_busybox("ports", &[plain(t.finish())], exposed)
    })
    .as_ref()
    .map(String::as_str)
    .map_err(Clone::clone)
}
