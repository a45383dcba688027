//! push compresses layers stored uncompressed (a loaded docker-archive) with gzip, as
//! podman does: the registry gets gzip blobs with gzip media types, the config (image
//! ID) is unchanged, a second push reuses the recorded compressed digest, and a push
//! that dies midway leaves no temp file behind and can be retried.

use std::io::{BufReader, Read as _, Write as _};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::images;
use crate::registry;
use crate::require;
use crate::support::{assert_error, pull, snapshot, store};
use crate::util::TestEnv;

const MT_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

fn fresh_repo(what: &str) -> String {
    let mut b = [0u8; 4];
    // SAFETY: getrandom writes at most b.len() bytes into our buffer.
    unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    format!("pushgz-{}-{}/{what}", std::process::id(), hex::encode(b))
}

/// A fresh env holding `image` loaded from a docker-archive (whose layers are plain tars).
fn loaded_from_docker_archive(image: &str) -> TestEnv {
    let from = TestEnv::rootless();
    pull(&from, image);
    let path = from.work.join("img.tar");
    from.cmd(&["save", "--format", "docker-archive", "-o"])
        .arg(&path)
        .arg(image)
        .output()
        .success();
    let to = TestEnv::rootless();
    to.cmd(&["load", "-q", "-i"]).arg(&path).output().success();
    to
}

fn temp_blobs(env: &TestEnv) -> Vec<String> {
    crate::support::listing(&store(env).join("tmp"))
        .into_iter()
        .filter(|n| n.starts_with("push-gzip-"))
        .collect()
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("the blob is gzip");
    out
}

#[test]
fn push_gzips_layers_of_a_loaded_docker_archive() {
    let fx = require!(images::try_fixtures());
    let env = loaded_from_docker_archive(&fx.layered.reference);
    let repo = fresh_repo("layered");
    let dest = format!("{}/{repo}:v1", env.registry());
    let digestfile = env.work.join("digest");
    let out = env
        .cmd(&["push", "--digestfile"])
        .arg(&digestfile)
        .args(&[&fx.layered.reference, &dest])
        .output();
    out.success();
    assert!(temp_blobs(&env).is_empty(), "{:?}", temp_blobs(&env));

    let m = registry::get_manifest(&repo, "v1").expect("manifest");
    assert_eq!(m.status, 200);
    let pushed_digest = registry::digest(&m.body);
    assert_eq!(
        std::fs::read_to_string(&digestfile).expect("digestfile"),
        pushed_digest
    );
    let manifest: serde_json::Value = serde_json::from_slice(&m.body).expect("manifest json");
    // The config is sent as it is: the image ID does not change with compression.
    let config_digest = manifest["config"]["digest"].as_str().expect("config");
    assert_eq!(config_digest, format!("sha256:{}", fx.layered.id));
    let config = registry::get(&format!("{repo}/blobs/{config_digest}"), None).expect("config");
    let config: serde_json::Value = serde_json::from_slice(&config.body).expect("config json");
    let diff_ids = config["rootfs"]["diff_ids"].as_array().expect("diff_ids");
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), fx.layered.layers);
    let (mut packed, mut plain) = (0usize, 0usize);
    for (l, diff_id) in layers.iter().zip(diff_ids) {
        assert_eq!(l["mediaType"], MT_GZIP, "{manifest}");
        let d = l["digest"].as_str().expect("digest");
        let blob = registry::get(&format!("{repo}/blobs/{d}"), None).expect("blob");
        assert_eq!(blob.status, 200);
        assert_eq!(registry::digest(&blob.body), d);
        assert_eq!(l["size"].as_u64(), Some(blob.body.len() as u64));
        assert_eq!(&blob.body[..2], &[0x1f, 0x8b], "{d} is not gzip");
        let tar = gunzip(&blob.body);
        assert_eq!(registry::digest(&tar), diff_id.as_str().expect("diff_id"));
        packed += blob.body.len();
        plain += tar.len();
    }
    assert!(packed * 2 < plain, "gzip {packed} bytes vs tar {plain}");

    // Again: the recorded gzip digests are found at the registry, nothing is compressed
    // or sent, and the manifest comes out the same.
    let out = env
        .cmd(&["--log-level", "debug", "push", &fx.layered.reference, &dest])
        .output();
    out.success();
    let err = out.stderr_str();
    assert_eq!(
        err.matches("reusing the compressed blob of an earlier push")
            .count(),
        fx.layered.layers,
        "{}",
        out.describe()
    );
    assert!(
        !err.contains("compressed layer for push"),
        "{}",
        out.describe()
    );
    let again = registry::get_manifest(&repo, "v1").expect("manifest");
    assert_eq!(registry::digest(&again.body), pushed_digest);

    // A fresh store pulls it back with the same image ID and runs it.
    let other = TestEnv::rootless();
    assert_eq!(pull(&other, &dest), fx.layered.id);
    let keep = other.run(&["run", "--rm", &dest, "cat", "/opt/app/keep"]);
    keep.success();
    assert_eq!(keep.stdout_trim(), "v3");
}

#[test]
fn unsupported_compression_formats_are_refused_and_change_nothing() {
    let fx = require!(images::try_fixtures());
    let env = TestEnv::rootless();
    pull(&env, &fx.busybox.reference);
    let repo = fresh_repo("busybox");
    let dest = format!("{}/{repo}:v1", env.registry());
    let before = snapshot(&env);
    for (format, needle) in [("zstd", "not supported"), ("lz4", "cannot find compressor")] {
        let out = env.run(&[
            "push",
            "--compression-format",
            format,
            &fx.busybox.reference,
            &dest,
        ]);
        assert_error(&out, 125, &[format, needle]);
    }
    assert_eq!(snapshot(&env), before);
    assert_eq!(
        registry::get_manifest(&repo, "v1")
            .expect("manifest")
            .status,
        404
    );
    // gzip, named, is the default.
    env.run(&[
        "push",
        "--compression-format",
        "gzip",
        &fx.busybox.reference,
        &dest,
    ])
    .success();
}

/// A loopback proxy to the registry that, while `down`, drops every blob upload request
/// unanswered, as a registry that was stopped mid-push would.
struct UploadCutter {
    addr: String,
    down: Arc<AtomicBool>,
}

impl UploadCutter {
    fn start(upstream: &str) -> UploadCutter {
        let down = Arc::new(AtomicBool::new(false));
        let d = down.clone();
        let addr = crate::faults::proxy(upstream, move |conn, up| {
            let _ = forward(conn, up, &d);
        });
        UploadCutter { addr, down }
    }
}

fn forward(client: TcpStream, upstream: &str, down: &AtomicBool) -> std::io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut reader = BufReader::new(client.try_clone()?);
    let Some((request_line, head)) = crate::faults::request_head(&mut reader)? else {
        return Ok(());
    };
    let is_upload = !request_line.starts_with("GET ")
        && !request_line.starts_with("HEAD ")
        && request_line.contains("/blobs/uploads");
    if is_upload && down.load(Ordering::SeqCst) {
        return client.shutdown(Shutdown::Both);
    }
    let mut up = TcpStream::connect(upstream)?;
    up.write_all(&head)?;
    let mut up_w = up.try_clone()?;
    // The request body (if any) flows on while the response comes back.
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut reader, &mut up_w);
        let _ = up_w.shutdown(Shutdown::Write);
    });
    let mut c = client;
    std::io::copy(&mut up, &mut c)?;
    c.shutdown(Shutdown::Both)
}

#[test]
fn a_push_cut_midway_leaves_no_temp_file_and_a_retry_works() {
    let fx = require!(images::try_fixtures());
    let env = loaded_from_docker_archive(&fx.layered.reference);
    let proxy = UploadCutter::start(env.registry());
    let repo = fresh_repo("layered");
    let dest = format!("{}/{repo}:v1", proxy.addr);
    let before = snapshot(&env);
    proxy.down.store(true, Ordering::SeqCst);
    let out = env.run(&["push", "--tls-verify=false", &fx.layered.reference, &dest]);
    assert_error(&out, 125, &["pushing", &proxy.addr]);
    assert!(temp_blobs(&env).is_empty(), "{:?}", temp_blobs(&env));
    assert_eq!(snapshot(&env), before);
    assert_eq!(
        registry::get_manifest(&repo, "v1")
            .expect("manifest")
            .status,
        404
    );

    proxy.down.store(false, Ordering::SeqCst);
    env.run(&["push", "--tls-verify=false", &fx.layered.reference, &dest])
        .success();
    assert!(temp_blobs(&env).is_empty(), "{:?}", temp_blobs(&env));
    let m = registry::get_manifest(&repo, "v1").expect("manifest");
    assert_eq!(m.status, 200);
    let manifest: serde_json::Value = serde_json::from_slice(&m.body).expect("manifest json");
    for l in manifest["layers"].as_array().expect("layers") {
        assert_eq!(l["mediaType"], MT_GZIP);
        let d = l["digest"].as_str().expect("digest");
        assert!(
            registry::blob_exists(&repo, d).expect("HEAD"),
            "{d} missing"
        );
    }
}
