//! Test images, built here from the host's static busybox (Debian's busybox-static)
//! as OCI manifests + configs + layers and pushed to the test registry once per test
//! binary: `let fx = require!(images::try_fixtures());` then `fx.busybox.reference`.
//!
//! Every image lives at `<registry>/skiff-test/<name>:latest` except the short-name
//! copy of busybox, `<registry>/mytools/bb:latest` (no podman short-name alias).

#![allow(dead_code)] // each test module uses a different part of the harness

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use serde_json::json;
use tar::EntryType;

use crate::registry::{self, digest};

mod layer;
pub use layer::*;

pub const BUSYBOX_HOST: &str = "/bin/busybox";
pub const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// mtime of every entry, and `created` of every image (2023-11-14T22:13:20Z).
pub const MTIME: u64 = 1_700_000_000;
pub const CREATED: &str = "2023-11-14T22:13:20Z";

pub const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
    tester:x:1000:1000:tester:/home/tester:/bin/sh\n\
    nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
pub const GROUP: &str = "root:x:0:\nstaff:x:50:tester\ntester:x:1000:\nnobody:x:65534:\n";

/// An image pushed to the test registry.
#[derive(Clone, Debug)]
pub struct Image {
    /// Repository path in the registry, e.g. `skiff-test/busybox`.
    pub repo: String,
    pub tag: String,
    /// Fully qualified: `127.0.0.1:PORT/skiff-test/busybox:latest`.
    pub reference: String,
    /// Image ID as podman prints it with --no-trunc minus the prefix: config digest hex.
    pub id: String,
    /// `sha256:<id>`.
    pub config_digest: String,
    /// Digest of what the tag points at (the index for `multiarch`).
    pub manifest_digest: String,
    pub layers: usize,
}

impl Image {
    /// `<registry>/<repo>@<manifest digest>`.
    pub fn by_digest(&self) -> String {
        format!(
            "{}/{}@{}",
            registry::registry(),
            self.repo,
            self.manifest_digest
        )
    }
}

/// busybox + one layer with a path-safety attack: pulling it must fail (exit 125,
/// layer rejected) and `escape` must be untouched.
#[derive(Clone, Debug)]
pub struct Hostile {
    pub image: Image,
    /// dotdot: file `../`x16 `tmp/skiff-escape-dotdot-<pid>`; abs: file
    /// `/tmp/skiff-escape-abs-<pid>`; symlink: `evil -> /tmp` then file
    /// `evil/skiff-escape-sym-<pid>`; hardlink-abs: `passwd-link` hardlinked to
    /// `/etc/passwd`; hardlink-dotdot: `passwd-link` hardlinked to `../`x16 `etc/passwd`.
    pub case: &'static str,
    /// For file cases a host path that must not exist afterwards; for hardlink cases
    /// /etc/passwd, whose link count (1) must not change.
    pub escape: PathBuf,
}

/// All fixtures; see each field for what the image holds.
#[derive(Debug)]
pub struct Fixtures {
    pub registry: &'static str,
    /// The busybox image's one layer, to build more images on.
    pub busybox_layer: Blob,
    /// One gzip layer: /bin/busybox + a symlink per applet in /bin, /etc/passwd
    /// ([`PASSWD`]), /etc/group ([`GROUP`]), /tmp 1777, /root 0700, /home/tester
    /// 1000:1000, empty /usr/bin /usr/sbin /sbin /usr/local/bin /var /run /proc /sys
    /// /dev. Cmd ["sh"], Env [`PATH_ENV`].
    pub busybox: Image,
    /// The same image as `<registry>/mytools/bb:latest`, for short-name resolution.
    pub short_name: Image,
    /// busybox with every file owned by 0:0 (runs with a single-ID mapping).
    pub rootonly: Image,
    /// rootonly + `/data/owned-by-1000` owned by 1000:1000 ([`BIG_IDS_FILE`]): needs
    /// more than a single-ID mapping.
    pub big_ids: Image,
    /// busybox + 3 layers, see [`layered_layers`] for the expected final tree.
    pub layered: Image,
    /// OCI index: linux/amd64 and linux/arm64 (variant v8); each is busybox + /arch
    /// containing its architecture name.
    pub multiarch: Image,
    pub multiarch_amd64: Image,
    pub multiarch_arm64: Image,
    /// busybox + a layer (/bad) whose config diff_id is not the digest of its tar.
    pub bad_diffid: Image,
    /// busybox + a "tar+gzip" blob that is not gzip (blob digest itself correct).
    pub corrupt_gzip: Image,
    /// busybox + 59 layers, layer N adding /layers/N containing "N" (60 layers).
    pub many_layers: Image,
    pub hostile_dotdot: Hostile,
    pub hostile_abs: Hostile,
    pub hostile_symlink: Hostile,
    pub hostile_hardlink_abs: Hostile,
    pub hostile_hardlink_dotdot: Hostile,
}

pub const BIG_IDS_FILE: &str = "/data/owned-by-1000";

impl Fixtures {
    pub fn hostile(&self) -> [&Hostile; 5] {
        [
            &self.hostile_dotdot,
            &self.hostile_abs,
            &self.hostile_symlink,
            &self.hostile_hardlink_abs,
            &self.hostile_hardlink_dotdot,
        ]
    }

    /// Every image and index, for checks over all of them.
    pub fn all(&self) -> Vec<&Image> {
        let mut v = vec![
            &self.busybox,
            &self.short_name,
            &self.rootonly,
            &self.big_ids,
            &self.layered,
            &self.multiarch,
            &self.multiarch_amd64,
            &self.multiarch_arm64,
            &self.bad_diffid,
            &self.corrupt_gzip,
            &self.many_layers,
        ];
        v.extend(self.hostile().map(|h| &h.image));
        v
    }
}

/// The fixtures, built and pushed on first use; panics if they cannot be.
pub fn fixtures() -> &'static Fixtures {
    try_fixtures().unwrap_or_else(|e| panic!("{e}"))
}

/// The fixtures, or why they cannot be had (for `require!`).
pub fn try_fixtures() -> Result<&'static Fixtures, String> {
    static FX: OnceLock<Result<Fixtures, String>> = OnceLock::new();
    FX.get_or_init(build).as_ref().map_err(Clone::clone)
}

/// The OCI architecture name of this host.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Compiles `tests/tools/NAME.rs` into a static binary under /tmp/skiff-it (so it runs
/// in the busybox image and the test user can read it); returns its path.
pub fn build_static_tool(name: &str) -> Result<std::path::PathBuf, String> {
    let src = format!("{}/tests/tools/{name}.rs", env!("CARGO_MANIFEST_DIR"));
    let out = crate::util::it_root().join(format!("{name}-{}", std::process::id()));
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let st = std::process::Command::new(&rustc)
        .args([
            "-O",
            "-C",
            "strip=symbols",
            "-C",
            "target-feature=+crt-static",
        ])
        .args(["--edition", "2021", &src, "-o"])
        .arg(&out)
        .status()
        .map_err(|e| format!("{rustc}: {e}"))?;
    if !st.success() {
        return Err(format!("building {src} failed: {st}"));
    }
    Ok(out)
}

/// busybox's layer plus `layers`, pushed to the busybox repository as `:tag`, with
/// busybox's Env and Cmd and `config` merged into the image config (e.g. ExposedPorts);
/// returns the reference.
pub fn push_on_busybox(
    tag: &str,
    layers: &[Blob],
    config: serde_json::Value,
) -> Result<String, String> {
    let fx = try_fixtures()?;
    let repo = &fx.busybox.repo;
    let m = registry::get_manifest(repo, "latest")?;
    let m: serde_json::Value = serde_json::from_slice(&m.body).map_err(|e| e.to_string())?;
    let cfg = registry::get(&format!("{repo}/blobs/{}", fx.busybox.config_digest), None)?;
    let cfg: serde_json::Value = serde_json::from_slice(&cfg.body).map_err(|e| e.to_string())?;
    let mut diff_ids = vec![cfg["rootfs"]["diff_ids"][0].clone()];
    let mut descs = vec![m["layers"][0].clone()];
    for l in layers {
        registry::push_blob(repo, &l.bytes)?;
        diff_ids.push(json!(l.diff_id));
        descs.push(descriptor(l.media_type, &l.bytes));
    }
    let mut inner = json!({"Env": [PATH_ENV], "Cmd": ["sh"]});
    if let (Some(to), Some(from)) = (inner.as_object_mut(), config.as_object()) {
        to.extend(from.clone());
    }
    let config = serde_json::to_vec(&json!({
        "architecture": host_arch(), "os": "linux",
        "config": inner,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .map_err(|e| e.to_string())?;
    registry::push_blob(repo, &config)?;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": MT_MANIFEST,
        "config": descriptor(MT_CONFIG, &config),
        "layers": descs,
    }))
    .map_err(|e| e.to_string())?;
    registry::put_manifest(repo, tag, MT_MANIFEST, &manifest)?;
    Ok(format!("{}/{repo}:{tag}", registry::try_registry()?))
}

/// Push layers, config and manifest as `repo:tag` (tag may be empty: push by digest
/// only). Returns the image and its manifest bytes.
pub fn push_image(
    repo: &str,
    tag: &str,
    layers: &[&Blob],
    arch: &str,
) -> Result<(Image, Vec<u8>), String> {
    for l in layers {
        registry::push_blob(repo, &l.bytes)?;
    }
    let mut config = json!({
        "created": CREATED,
        "architecture": arch,
        "os": "linux",
        "config": {"Env": [PATH_ENV], "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| &l.diff_id).collect::<Vec<_>>()},
        "history": layers.iter().enumerate().map(|(i, _)| json!({
            "created": CREATED,
            "created_by": format!("skiff tests: layer {i}"),
        })).collect::<Vec<_>>(),
    });
    if arch == "arm64" {
        config["variant"] = json!("v8");
    }
    let config = serde_json::to_vec(&config).map_err(|e| e.to_string())?;
    let config_digest = registry::push_blob(repo, &config)?;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": descriptor(MT_CONFIG, &config),
        "layers": layers.iter().map(|l| descriptor(l.media_type, &l.bytes)).collect::<Vec<_>>(),
    }))
    .map_err(|e| e.to_string())?;
    let manifest_digest = digest(&manifest);
    let reference = if tag.is_empty() {
        &manifest_digest
    } else {
        tag
    };
    registry::put_manifest(repo, reference, MT_MANIFEST, &manifest)?;
    let image = Image {
        repo: repo.to_string(),
        tag: tag.to_string(),
        reference: if tag.is_empty() {
            format!("{}/{repo}@{manifest_digest}", registry::try_registry()?)
        } else {
            format!("{}/{repo}:{tag}", registry::try_registry()?)
        },
        id: config_digest.trim_start_matches("sha256:").to_string(),
        config_digest,
        manifest_digest,
        layers: layers.len(),
    };
    Ok((image, manifest))
}

/// The busybox root filesystem; `tester_owned` makes /home/tester 1000:1000.
fn busybox_tar(busybox: &[u8], applets: &[String], tester_owned: bool) -> Vec<u8> {
    enum E<'a> {
        Dir(u32, u32),
        File(u32, &'a [u8]),
        Link(String),
    }
    let mut entries: Vec<(String, E)> = Vec::new();
    for d in [
        "bin", "dev", "etc", "home", "proc", "run", "sbin", "sys", "usr", "var",
    ] {
        entries.push((d.into(), E::Dir(0o755, 0)));
    }
    for d in [
        "usr/bin",
        "usr/sbin",
        "usr/local",
        "usr/local/bin",
        "var/log",
    ] {
        entries.push((d.into(), E::Dir(0o755, 0)));
    }
    entries.push(("tmp".into(), E::Dir(0o1777, 0)));
    entries.push(("var/tmp".into(), E::Dir(0o1777, 0)));
    entries.push(("root".into(), E::Dir(0o700, 0)));
    let tester = if tester_owned { 1000 } else { 0 };
    entries.push(("home/tester".into(), E::Dir(0o755, tester)));
    entries.push(("bin/busybox".into(), E::File(0o755, busybox)));
    entries.push(("etc/passwd".into(), E::File(0o644, PASSWD.as_bytes())));
    entries.push(("etc/group".into(), E::File(0o644, GROUP.as_bytes())));
    for a in applets.iter().filter(|a| a.as_str() != "busybox") {
        entries.push((format!("bin/{a}"), E::Link("busybox".into())));
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let mut t = LayerTar::new();
    for (path, e) in &entries {
        match e {
            E::Dir(mode, id) => t.dir(path, *mode, *id, *id),
            E::File(mode, data) => t.file(path, *mode, 0, 0, data),
            E::Link(target) => t.symlink(path, target),
        };
    }
    t.finish()
}

/// The 3 layers of `layered`. Expected tree in the container afterwards:
/// - /opt/app/keep = "v3" (written in layer 1, rewritten in 3); /opt/app/remove-me
///   gone (whiteout in 2); /bin/vi gone (whiteout in 3 of a busybox-layer file)
/// - /opt/opaque/ holds only `new` (old1, old2 hidden by the opaque marker in 2)
/// - /opt/replace is a dir holding `inside` (a file in 1); /opt/dir2file is a file
///   "now a file" (a dir with `child` in 1)
/// - /opt/owned/by-1000 1000:1000 0644, /opt/owned/by-nobody 65534:65534 0600,
///   /opt/owned/dir-1000 dir 1000:1000
/// - /opt/setuid mode 4755 root; /opt/hard-a and /opt/hard-b one inode ("hard");
///   /opt/link -> app/keep
/// - /opt/layer2 "2" and /opt/layer3 "3"; /opt/xattr has xattr user.skiff=hello;
///   /opt/xdir still holds `lower` (layer 3 re-adds the dir with trusted/user
///   overlay opaque xattrs in its tar header, which must be dropped)
///
/// Layer 1 is gzip, layer 2 zstd, layer 3 an uncompressed tar.
pub fn layered_layers() -> [Blob; 3] {
    let mut t = LayerTar::new();
    t.dir("opt", 0o755, 0, 0)
        .dir("opt/app", 0o755, 0, 0)
        .file("opt/app/keep", 0o644, 0, 0, b"v1")
        .file("opt/app/remove-me", 0o644, 0, 0, b"gone")
        .dir("opt/dir2file", 0o755, 0, 0)
        .file("opt/dir2file/child", 0o644, 0, 0, b"child")
        .file("opt/hard-a", 0o644, 0, 0, b"hard")
        .hardlink("opt/hard-b", "opt/hard-a")
        .symlink("opt/link", "app/keep")
        .dir("opt/opaque", 0o755, 0, 0)
        .file("opt/opaque/old1", 0o644, 0, 0, b"old1")
        .file("opt/opaque/old2", 0o644, 0, 0, b"old2")
        .dir("opt/owned", 0o755, 0, 0)
        .file("opt/owned/by-1000", 0o644, 1000, 1000, b"1000")
        .file("opt/owned/by-nobody", 0o600, 65534, 65534, b"nobody")
        .dir("opt/owned/dir-1000", 0o755, 1000, 1000)
        .file("opt/replace", 0o644, 0, 0, b"a file")
        .file("opt/setuid", 0o4755, 0, 0, b"#!/bin/sh\nid -u\n")
        .dir("opt/xdir", 0o755, 0, 0)
        .file("opt/xdir/lower", 0o644, 0, 0, b"lower");
    let l1 = gzip(t.finish());

    let mut t = LayerTar::new();
    t.dir("opt", 0o755, 0, 0)
        .dir("opt/app", 0o755, 0, 0)
        .whiteout("opt/app/remove-me")
        .file("opt/dir2file", 0o644, 0, 0, b"now a file")
        .file("opt/layer2", 0o644, 0, 0, b"2")
        .dir("opt/opaque", 0o755, 0, 0)
        .opaque("opt/opaque")
        .file("opt/opaque/new", 0o644, 0, 0, b"new")
        .dir("opt/replace", 0o755, 0, 0)
        .file("opt/replace/inside", 0o644, 0, 0, b"inside");
    let l2 = zstd(t.finish());

    let mut t = LayerTar::new();
    t.dir("bin", 0o755, 0, 0)
        .whiteout("bin/vi")
        .dir("opt", 0o755, 0, 0)
        .dir("opt/app", 0o755, 0, 0)
        .file("opt/app/keep", 0o644, 0, 0, b"v3")
        .file("opt/layer3", 0o644, 0, 0, b"3")
        .pax(&[("SCHILY.xattr.user.skiff", b"hello")])
        .file("opt/xattr", 0o644, 0, 0, b"xattr")
        .pax(&[
            ("SCHILY.xattr.trusted.overlay.opaque", b"y"),
            ("SCHILY.xattr.user.overlay.opaque", b"y"),
        ])
        .dir("opt/xdir", 0o755, 0, 0);
    let l3 = plain(t.finish());
    [l1, l2, l3]
}

fn hostile_layers() -> Vec<(&'static str, String, Blob)> {
    let one = |f: &dyn Fn(&mut LayerTar)| {
        let mut t = LayerTar::new();
        f(&mut t);
        gzip(t.finish())
    };
    // Unique per test binary run, so a leftover from a buggy earlier run never counts.
    let tag = std::process::id();
    let up = "../".repeat(16);
    let dotdot = format!("/tmp/skiff-escape-dotdot-{tag}");
    let abs = format!("/tmp/skiff-escape-abs-{tag}");
    let sym = format!("skiff-escape-sym-{tag}");
    vec![
        (
            "dotdot",
            dotdot.clone(),
            one(&|t| {
                let name = format!("{up}{}", &dotdot[1..]);
                t.raw(EntryType::Regular, name.as_bytes(), b"", b"escaped\n");
            }),
        ),
        (
            "abs",
            abs.clone(),
            one(&|t| {
                t.raw(EntryType::Regular, abs.as_bytes(), b"", b"escaped\n");
            }),
        ),
        (
            "symlink",
            format!("/tmp/{sym}"),
            one(&|t| {
                t.symlink("evil", "/tmp");
                t.file(&format!("evil/{sym}"), 0o644, 0, 0, b"escaped\n");
            }),
        ),
        (
            "hardlink-abs",
            "/etc/passwd".into(),
            one(&|t| {
                t.raw(EntryType::Link, b"passwd-link", b"/etc/passwd", b"");
            }),
        ),
        (
            "hardlink-dotdot",
            "/etc/passwd".into(),
            one(&|t| {
                let target = format!("{up}etc/passwd");
                t.raw(EntryType::Link, b"passwd-link", target.as_bytes(), b"");
            }),
        ),
    ]
}

/// Whether an ELF64 little-endian binary has a PT_INTERP (is dynamically linked).
fn has_interpreter(elf: &[u8]) -> bool {
    let num = |at: usize, len: usize| -> usize {
        elf.get(at..at + len)
            .map_or(0, |b| b.iter().rev().fold(0, |n, &x| (n << 8) | x as usize))
    };
    let (phoff, phentsize, phnum) = (num(0x20, 8), num(0x36, 2), num(0x38, 2));
    (0..phnum).any(|i| num(phoff + i * phentsize, 4) == 3)
}

fn build() -> Result<Fixtures, String> {
    let reg = registry::try_registry()?;
    let bb = fs::read(BUSYBOX_HOST)
        .map_err(|e| format!("{BUSYBOX_HOST}: {e} (Debian package busybox-static)"))?;
    if has_interpreter(&bb) {
        return Err(format!(
            "{BUSYBOX_HOST} is not static: install busybox-static"
        ));
    }
    let out = Command::new(BUSYBOX_HOST)
        .arg("--list")
        .output()
        .map_err(|e| format!("{BUSYBOX_HOST} --list: {e}"))?;
    let applets: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && !a.contains('/'))
        .map(String::from)
        .collect();
    let arch = host_arch();
    let base = gzip(busybox_tar(&bb, &applets, true));
    let rootonly_base = gzip(busybox_tar(&bb, &applets, false));
    let img = |name: &str, layers: &[&Blob]| -> Result<Image, String> {
        Ok(push_image(&format!("skiff-test/{name}"), "latest", layers, arch)?.0)
    };

    let busybox = img("busybox", &[&base])?;
    let short_name = push_image("mytools/bb", "latest", &[&base], arch)?.0;
    let rootonly = img("rootonly", &[&rootonly_base])?;
    let mut t = LayerTar::new();
    t.dir("data", 0o755, 0, 0)
        .file("data/owned-by-1000", 0o644, 1000, 1000, b"1000\n");
    let big_ids = img("big-ids", &[&rootonly_base, &gzip(t.finish())])?;

    let [l1, l2, l3] = layered_layers();
    let layered = img("layered", &[&base, &l1, &l2, &l3])?;

    // multiarch: two manifests pushed by digest, then an index tagged latest.
    let repo = "skiff-test/multiarch";
    let mut platforms = Vec::new();
    let mut images = Vec::new();
    for a in ["amd64", "arm64"] {
        let mut t = LayerTar::new();
        t.file("arch", 0o644, 0, 0, format!("{a}\n").as_bytes());
        let (image, manifest) = push_image(repo, "", &[&base, &gzip(t.finish())], a)?;
        let mut d = descriptor(MT_MANIFEST, &manifest);
        d["platform"] = json!({"architecture": a, "os": "linux"});
        if a == "arm64" {
            d["platform"]["variant"] = json!("v8");
        }
        platforms.push(d);
        images.push(image);
    }
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": MT_INDEX, "manifests": platforms,
    }))
    .map_err(|e| e.to_string())?;
    registry::put_manifest(repo, "latest", MT_INDEX, &index)?;
    let (multiarch_amd64, multiarch_arm64) = (images[0].clone(), images[1].clone());
    let host = if arch == "arm64" {
        &multiarch_arm64
    } else {
        &multiarch_amd64
    };
    let multiarch = Image {
        tag: "latest".into(),
        reference: format!("{reg}/{repo}:latest"),
        manifest_digest: digest(&index),
        ..host.clone()
    };

    let mut t = LayerTar::new();
    t.file("bad", 0o644, 0, 0, b"bad diff_id\n");
    let mut bad = gzip(t.finish());
    bad.diff_id = digest(b"not the content of this layer");
    let bad_diffid = img("bad-diffid", &[&base, &bad])?;

    let junk = b"this is not gzip data, although the manifest says so\n".repeat(20);
    let corrupt = Blob {
        media_type: MT_GZIP,
        diff_id: digest(&junk),
        bytes: junk,
    };
    let corrupt_gzip = img("corrupt-gzip", &[&base, &corrupt])?;

    let mut many = vec![base.clone()];
    for n in 1..60 {
        let mut t = LayerTar::new();
        t.dir("layers", 0o755, 0, 0).file(
            &format!("layers/{n}"),
            0o644,
            0,
            0,
            n.to_string().as_bytes(),
        );
        many.push(gzip(t.finish()));
    }
    let many_layers = img("many-layers", &many.iter().collect::<Vec<_>>())?;

    let mut hostile = Vec::new();
    for (case, escape, layer) in hostile_layers() {
        hostile.push(Hostile {
            image: img(&format!("hostile-{case}"), &[&base, &layer])?,
            case,
            escape: escape.into(),
        });
    }
    let mut hostile = hostile.into_iter();
    let mut next = || hostile.next().ok_or("hostile fixtures");
    Ok(Fixtures {
        registry: reg,
        busybox_layer: base.clone(),
        busybox,
        short_name,
        rootonly,
        big_ids,
        layered,
        multiarch,
        multiarch_amd64,
        multiarch_arm64,
        bad_diffid,
        corrupt_gzip,
        many_layers,
        hostile_dotdot: next()?,
        hostile_abs: next()?,
        hostile_symlink: next()?,
        hostile_hardlink_abs: next()?,
        hostile_hardlink_dotdot: next()?,
    })
}
