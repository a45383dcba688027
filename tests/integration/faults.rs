//! Issue 5, bad input from outside: a registry that answers 500 or cuts a body short
//! (a fault-injecting proxy in front of the real test registry), and a disk that fills
//! up during a pull (a small tmpfs under the store). Each gives one clear error, exit
//! 125, leaves the store as it was, and the next pull, once the fault is gone, works.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::images::{self, gzip, LayerTar};
use crate::require;
use crate::support::{assert_error, pull, snapshot};
use crate::util::TestEnv;

const PASS: u8 = 0;
const MANIFEST_500: u8 = 1;
const BLOB_500: u8 = 2;
const BLOB_TRUNCATED: u8 = 3;
const BLOB_RESET: u8 = 4;

/// A loopback HTTP proxy to the test registry that injects the current fault. One
/// request per connection (it forces `Connection: close` upstream).
struct FaultProxy {
    addr: String,
    fault: Arc<AtomicU8>,
}

impl FaultProxy {
    fn start(upstream: &str) -> FaultProxy {
        let fault = Arc::new(AtomicU8::new(PASS));
        let f = fault.clone();
        let addr = proxy(upstream, move |conn, up| {
            let _ = serve(conn, up, f.load(Ordering::SeqCst));
        });
        FaultProxy { addr, fault }
    }

    fn set(&self, fault: u8) {
        self.fault.store(fault, Ordering::SeqCst);
    }
}

/// A loopback proxy in front of `upstream`: each connection is served on a thread of
/// its own by `handle(connection, upstream)`. Returns the proxy's address.
pub(crate) fn proxy(
    upstream: &str,
    handle: impl Fn(TcpStream, &str) + Clone + Send + 'static,
) -> String {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind the proxy");
    let addr = listener.local_addr().expect("proxy address").to_string();
    let up = upstream.to_string();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let (h, up) = (handle.clone(), up.clone());
            std::thread::spawn(move || h(conn, &up));
        }
    });
    addr
}

/// Reads a request's head for a proxy that serves one request per connection: its
/// request line, and the head to send upstream with `Connection: close`. None at EOF.
pub(crate) fn request_head(
    reader: &mut BufReader<TcpStream>,
) -> std::io::Result<Option<(String, Vec<u8>)>> {
    let mut head = Vec::new();
    let mut request_line = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        if request_line.is_empty() {
            request_line = line.clone();
        }
        if line == "\r\n" || line == "\n" {
            break;
        }
        if !line.to_ascii_lowercase().starts_with("connection:") {
            head.extend_from_slice(line.as_bytes());
        }
    }
    head.extend_from_slice(b"Connection: close\r\n\r\n");
    Ok(Some((request_line, head)))
}

fn serve(mut client: TcpStream, upstream: &str, fault: u8) -> std::io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(client.try_clone()?);
    let Some((request_line, head)) = request_head(&mut reader)? else {
        return Ok(());
    };
    let path = request_line.split_whitespace().nth(1).unwrap_or("");
    let is_get = request_line.starts_with("GET ");
    let is_manifest = path.contains("/manifests/");
    let is_blob = path.contains("/blobs/sha256:") && is_get;
    if (fault == MANIFEST_500 && is_manifest) || (fault == BLOB_500 && is_blob) {
        let body = "{\"errors\":[{\"code\":\"UNKNOWN\",\"message\":\"injected fault\"}]}";
        write!(
            client,
            "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        return Ok(());
    }
    let mut up = TcpStream::connect(upstream)?;
    up.write_all(&head)?;
    let mut response = Vec::new();
    up.read_to_end(&mut response)?;
    let cut = (fault == BLOB_TRUNCATED || fault == BLOB_RESET) && is_blob;
    if cut {
        // Headers (with the full Content-Length) and half of the body, then EOF or RST.
        let body_at = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(response.len(), |p| p + 4);
        let keep = body_at + (response.len() - body_at) / 2;
        client.write_all(&response[..keep])?;
        client.flush()?;
        if fault == BLOB_RESET {
            // SO_LINGER 0: close sends RST instead of FIN.
            let _ = nix::sys::socket::setsockopt(
                &client,
                nix::sys::socket::sockopt::Linger,
                &libc::linger {
                    l_onoff: 1,
                    l_linger: 0,
                },
            );
            return Ok(());
        }
        client.shutdown(Shutdown::Write)?;
        return Ok(());
    }
    client.write_all(&response)
}

/// The layered fixture's repository and tag through the proxy.
fn via(proxy: &FaultProxy, image: &images::Image) -> String {
    format!("{}/{}:{}", proxy.addr, image.repo, image.tag)
}

#[test]
fn registry_500_and_cut_bodies_fail_cleanly_and_the_next_pull_works() {
    let fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootless());
    pull(&env, &fx.busybox.reference);
    let proxy = FaultProxy::start(env.registry());
    let reference = via(&proxy, &fx.layered);
    let cases: [(u8, &[&str]); 4] = [
        (MANIFEST_500, &["500"]),
        (BLOB_500, &["500"]),
        (BLOB_TRUNCATED, &["sha256:"]),
        (BLOB_RESET, &["sha256:"]),
    ];
    for (fault, needles) in cases {
        proxy.set(fault);
        let before = snapshot(&env);
        let out = env
            .cmd(&["pull", &reference])
            .timeout(Duration::from_secs(120))
            .output();
        let mut needles = needles.to_vec();
        needles.push(&proxy.addr);
        assert_error(&out, 125, &needles);
        assert_eq!(snapshot(&env), before, "fault {fault}: the store changed");
        let tmp = crate::support::store(&env).join("tmp");
        assert_eq!(
            crate::support::listing(&tmp),
            Vec::<String>::new(),
            "fault {fault}: temp files left"
        );
    }
    proxy.set(PASS);
    let out = env.run(&["pull", "-q", &reference]);
    out.success();
    assert_eq!(out.stdout_trim(), fx.layered.id);
    let check = env.run(&["system", "check"]);
    check.success();
}

/// A tmpfs mounted over the rootless store, unmounted on drop.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(env: &TestEnv, size: &str) -> Result<SmallDisk, String> {
        if !crate::util::is_root() {
            return Err("mounting a small tmpfs needs root".into());
        }
        let store = env.root_dir.clone();
        std::fs::create_dir_all(&store).map_err(|e| e.to_string())?;
        let user = env.user.as_ref().ok_or("a rootless env has a user")?;
        let st = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!(
                "size={size},mode=0700,uid={},gid={}",
                user.uid, user.gid
            ))
            .arg("skiff-small-disk")
            .arg(&store)
            .status()
            .map_err(|e| format!("mount: {e}"))?;
        if !st.success() {
            return Err(format!("mount tmpfs on {}: {st}", store.display()));
        }
        Ok(SmallDisk(store))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// An image whose one layer holds `size` bytes: random (the blob itself is big) or
/// zeros (a small blob that only fills the disk when unpacked).
fn big_image(tag: &str, size: usize, random: bool) -> images::Image {
    let mut data = vec![0u8; size];
    if random {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for b in data.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
    }
    let mut t = LayerTar::new();
    t.dir("data", 0o755, 0, 0)
        .file("data/big", 0o644, 0, 0, &data);
    let layer = gzip(t.finish());
    images::push_image("skiff-test/full-disk", tag, &[&layer], images::host_arch())
        .expect("push the big image")
        .0
}

#[test]
fn a_full_disk_during_pull_fails_cleanly_and_changes_nothing() {
    let fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootless());
    let _disk = require!(SmallDisk::mount(&env, "12m"));
    pull(&env, &fx.busybox.reference);
    env.run(&["create", "--name", "kept", &fx.busybox.reference, "true"])
        .success();
    // 24 MiB of random data: the download itself runs out of space. 64 MiB of zeros:
    // a small blob whose unpacking runs out of space.
    for (tag, size, random) in [("random", 24 << 20, true), ("zeros", 64 << 20, false)] {
        let image = big_image(tag, size, random);
        let before = snapshot(&env);
        let out = env.run(&["pull", &image.reference]);
        // The blob, the unpacked files or the database may be what hits the limit
        // first (load changes which): the kernel's or SQLite's words for it.
        let full = if out.stderr_str().contains("disk is full") {
            "disk is full"
        } else {
            "no space left on device"
        };
        assert_error(&out, 125, &[full]);
        assert_eq!(snapshot(&env), before, "{tag}: the store changed");
        let tmp = crate::support::store(&env).join("tmp");
        assert_eq!(
            crate::support::listing(&tmp),
            Vec::<String>::new(),
            "{tag}: temp files left"
        );
        // The space is given back: a container still runs.
        let out = env.run(&["run", "--rm", &fx.busybox.reference, "echo", "alive"]);
        out.success();
        assert_eq!(out.stdout_trim(), "alive");
    }
    env.run(&["system", "check"]).success();
    env.run(&["start", "-a", "kept"]).success();
}
