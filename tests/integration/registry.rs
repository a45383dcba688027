//! A real registry for the tests: Debian's `docker-registry` (distribution 2.8) on a
//! free loopback port, started once per test binary, plus a tiny push client for the
//! registry HTTP API (blocking ureq).
//!
//! `SKIFF_TEST_REGISTRY=host:port` uses an already running registry instead.

#![allow(dead_code)] // each test module uses a different part of the harness

use std::io::Write as _;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// `sha256:<hex>` of some bytes.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// `host:port` of the test registry; panics if it cannot be had.
pub fn registry() -> &'static str {
    try_registry().unwrap_or_else(|e| panic!("{e}"))
}

/// `host:port` of the test registry, or why there is none (for `require!`).
pub fn try_registry() -> Result<&'static str, String> {
    static REG: OnceLock<Result<String, String>> = OnceLock::new();
    REG.get_or_init(|| match std::env::var("SKIFF_TEST_REGISTRY") {
        Ok(addr) if !addr.is_empty() => wait_ready(&addr, Duration::from_secs(10)).map(|_| addr),
        _ => start(),
    })
    .as_deref()
    .map_err(Clone::clone)
}

static PID: AtomicI32 = AtomicI32::new(0);
static DATA: OnceLock<PathBuf> = OnceLock::new();

/// The storage directory of the registry this binary started (None when the registry
/// came from SKIFF_TEST_REGISTRY): a second registry with auth can serve the same images.
pub fn data_dir() -> Option<PathBuf> {
    DATA.get().map(|d| d.join("data"))
}

extern "C" fn stop_registry() {
    let pid = PID.swap(0, Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: plain kill(2) of the child we started.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    if let Some(dir) = DATA.get() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

fn start() -> Result<String, String> {
    if !std::path::Path::new(REGISTRY_BIN).exists() {
        return Err(format!(
            "no {REGISTRY_BIN} (Debian package docker-registry)"
        ));
    }
    let dir = tempfile::Builder::new()
        .prefix(&crate::util::it_prefix("r"))
        .tempdir_in(crate::util::it_root())
        .map_err(|e| format!("registry dir: {e}"))?
        .keep();
    let _ = DATA.set(dir.clone());
    // SAFETY: registering a plain extern "C" fn; runs at exit(3), which libtest calls.
    unsafe { libc::atexit(stop_registry) };
    let mut last_err = String::new();
    for _attempt in 0..3 {
        let port = free_port()?;
        let addr = format!("127.0.0.1:{port}");
        let config = dir.join("config.yml");
        // Debian's /etc/docker/registry/config.yml enables htpasswd auth: use our own.
        let yaml = format!(
            "version: 0.1\n\
             log:\n  level: warn\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
             \x20 maintenance:\n    uploadpurging:\n      enabled: false\n\
             http:\n  addr: {addr}\n",
            dir.join("data").display()
        );
        std::fs::write(&config, yaml).map_err(|e| format!("registry config: {e}"))?;
        let log = std::fs::File::create(dir.join("registry.log")).map_err(|e| e.to_string())?;
        let (tx, rx) = mpsc::channel();
        let cfg = config.clone();
        // The child gets PR_SET_PDEATHSIG, which fires when the *thread* that forked it
        // exits: fork from a thread that lives as long as the test binary.
        std::thread::Builder::new()
            .name("test-registry".into())
            .spawn(move || {
                let mut cmd = Command::new(REGISTRY_BIN);
                cmd.arg("serve")
                    .arg(&cfg)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(log);
                // SAFETY: prctl is async-signal-safe.
                unsafe {
                    cmd.pre_exec(|| {
                        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                        Ok(())
                    });
                }
                match cmd.spawn() {
                    Ok(mut child) => {
                        PID.store(child.id() as i32, Ordering::SeqCst);
                        let _ = tx.send(Ok(child.id()));
                        let status = child.wait();
                        let pid = child.id() as i32;
                        if PID
                            .compare_exchange(pid, 0, Ordering::SeqCst, Ordering::SeqCst)
                            .is_ok()
                        {
                            let _ = writeln!(std::io::stderr(), "test registry exited: {status:?}");
                        }
                        loop {
                            std::thread::park();
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(format!("start {REGISTRY_BIN}: {e}")));
                    }
                }
            })
            .map_err(|e| e.to_string())?;
        rx.recv().map_err(|e| e.to_string())??;
        match wait_ready(&addr, Duration::from_secs(15)) {
            Ok(()) => return Ok(addr),
            Err(e) => {
                let log = std::fs::read_to_string(dir.join("registry.log")).unwrap_or_default();
                last_err = format!("{e}\nregistry log:\n{log}");
                stop_pid();
            }
        }
    }
    Err(format!("test registry did not start: {last_err}"))
}

fn stop_pid() {
    let pid = PID.swap(0, Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill(2) of our own child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

fn wait_ready(addr: &str, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let url = format!("http://{addr}/v2/");
    loop {
        match agent().get(&url).call() {
            Ok(r) if r.status() == 200 => return Ok(()),
            Ok(r) => return Err(format!("GET {url}: HTTP {}", r.status())),
            Err(e) if Instant::now() >= deadline => return Err(format!("GET {url}: {e}")),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn agent() -> &'static ureq::Agent {
    static AGENT: OnceLock<ureq::Agent> = OnceLock::new();
    AGENT.get_or_init(|| {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .into()
    })
}

/// A response from the registry.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub content_type: Option<String>,
    /// `Docker-Content-Digest` header.
    pub digest: Option<String>,
    pub body: Vec<u8>,
}

fn response(r: ureq::http::Response<ureq::Body>) -> Result<Response, String> {
    let header = |name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (status, content_type, digest) = (
        r.status().as_u16(),
        header("content-type"),
        header("docker-content-digest"),
    );
    let body = r
        .into_body()
        .with_config()
        .limit(1 << 30)
        .read_to_vec()
        .map_err(|e| e.to_string())?;
    Ok(Response {
        status,
        content_type,
        digest,
        body,
    })
}

fn base() -> Result<String, String> {
    Ok(format!("http://{}", try_registry()?))
}

/// GET `/v2/<path>` with an optional Accept header.
pub fn get(path: &str, accept: Option<&str>) -> Result<Response, String> {
    let url = format!("{}/v2/{}", base()?, path.trim_start_matches('/'));
    let mut req = agent().get(&url);
    if let Some(a) = accept {
        req = req.header("Accept", a);
    }
    response(req.call().map_err(|e| format!("GET {url}: {e}"))?)
}

/// The manifest (or index) `repo:reference` as stored, any OCI/Docker media type.
pub fn get_manifest(repo: &str, reference: &str) -> Result<Response, String> {
    get(
        &format!("{repo}/manifests/{reference}"),
        Some(
            "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, \
             application/vnd.docker.distribution.manifest.v2+json, \
             application/vnd.docker.distribution.manifest.list.v2+json",
        ),
    )
}

/// Whether the blob is already in `repo`.
pub fn blob_exists(repo: &str, digest: &str) -> Result<bool, String> {
    let url = format!("{}/v2/{repo}/blobs/{digest}", base()?);
    let r = agent()
        .head(&url)
        .call()
        .map_err(|e| format!("HEAD {url}: {e}"))?;
    Ok(r.status() == 200)
}

/// Upload a blob to `repo` (POST an upload, then PUT the bytes); returns its digest.
pub fn push_blob(repo: &str, bytes: &[u8]) -> Result<String, String> {
    let d = digest(bytes);
    if blob_exists(repo, &d)? {
        return Ok(d);
    }
    let base = base()?;
    let url = format!("{base}/v2/{repo}/blobs/uploads/");
    let r0 = agent()
        .post(&url)
        .send_empty()
        .map_err(|e| format!("POST {url}: {e}"))?;
    if r0.status() != 202 {
        return Err(format!("POST {url}: HTTP {}", r0.status()));
    }
    let location = r0
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| format!("POST {url}: no Location"))?
        .to_string();
    // Location may be absolute or relative to the registry.
    let mut put = if location.starts_with("http://") || location.starts_with("https://") {
        location
    } else {
        format!("{base}/{}", location.trim_start_matches('/'))
    };
    put.push(if put.contains('?') { '&' } else { '?' });
    put.push_str("digest=");
    put.push_str(&d);
    let r = response(
        agent()
            .put(&put)
            .header("Content-Type", "application/octet-stream")
            .send(bytes)
            .map_err(|e| format!("PUT {put}: {e}"))?,
    )?;
    if r.status != 201 {
        return Err(format!(
            "PUT blob {d} to {repo}: HTTP {}: {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        ));
    }
    Ok(d)
}

/// PUT a manifest or index as `repo:reference`; returns its digest.
pub fn put_manifest(
    repo: &str,
    reference: &str,
    media_type: &str,
    bytes: &[u8],
) -> Result<String, String> {
    let url = format!("{}/v2/{repo}/manifests/{reference}", base()?);
    let r = response(
        agent()
            .put(&url)
            .header("Content-Type", media_type)
            .send(bytes)
            .map_err(|e| format!("PUT {url}: {e}"))?,
    )?;
    if r.status != 201 {
        return Err(format!(
            "PUT manifest {repo}:{reference}: HTTP {}: {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        ));
    }
    Ok(digest(bytes))
}

/// DELETE a manifest by digest (the registry has deletes enabled).
pub fn delete_manifest(repo: &str, digest: &str) -> Result<(), String> {
    let url = format!("{}/v2/{repo}/manifests/{digest}", base()?);
    let r = agent()
        .delete(&url)
        .call()
        .map_err(|e| format!("DELETE {url}: {e}"))?;
    match r.status().as_u16() {
        202 => Ok(()),
        s => Err(format!("DELETE {url}: HTTP {s}")),
    }
}
