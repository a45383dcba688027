//! The mounts of a container's spec: podman's standard set, the generated /etc files,
//! and the user's -v, --tmpfs and --mount, checked for clashes.

use std::collections::HashSet;
use std::path::PathBuf;

use oci_spec::runtime::Mount;

use super::spec::SpecInputs;
use super::{CreateOptions, NetworkMode, RuntimeError};

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Mount {
    let mut m = Mount::default();
    m.set_destination(PathBuf::from(dest));
    m.set_typ(Some(typ.to_string()));
    m.set_source(Some(PathBuf::from(source)));
    m.set_options(Some(options.iter().map(|s| s.to_string()).collect()));
    m
}

/// A parsed `-v SRC:DST[:OPTS]`, `-v NAME:DST[:OPTS]` or `-v DST` (anonymous volume).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    /// The host path of a bind mount (empty for volumes).
    pub source: PathBuf,
    pub destination: String,
    pub options: Vec<String>,
    /// `U`: chown the source to the container's user at start.
    pub chown: bool,
    /// A named volume.
    pub named: Option<String>,
    /// `-v /path`: a fresh volume is made for it at create time.
    pub anonymous: bool,
    /// `nocopy`: do not copy the image's files into an empty volume.
    pub nocopy: bool,
}

/// Parses `-v` the way podman does: a source that is not a path names a volume.
pub fn parse_volume(spec: &str) -> Result<Volume, RuntimeError> {
    let bad = |detail: String| RuntimeError::BadFlag {
        flag: "--volume",
        detail,
    };
    let parts: Vec<&str> = spec.split(':').collect();
    let (src, dst, opts) = match parts.as_slice() {
        [d] => ("", *d, ""),
        [d, o] if d.starts_with('/') && !o.starts_with('/') => ("", *d, *o),
        [s, d] => (*s, *d, ""),
        [s, d, o] => (*s, *d, *o),
        _ => {
            return Err(bad(format!(
                "invalid volume {spec:?}: expected SRC:DST[:OPTIONS]"
            )))
        }
    };
    if !dst.starts_with('/') {
        return Err(bad(format!(
            "invalid volume {spec:?}: container path {dst:?} must be absolute"
        )));
    }
    let is_path = src.starts_with('/') || src.starts_with('.');
    let named = (!src.is_empty() && !is_path).then(|| src.to_string());
    if let Some(n) = &named {
        if !crate::storage::volumes::valid_name(n) {
            return Err(bad(format!(
                "invalid volume {spec:?}: volume name {n:?} must match [a-zA-Z0-9][a-zA-Z0-9_.-]* (or give an absolute host path)"
            )));
        }
    }
    let source = if is_path {
        std::fs::canonicalize(src)
            .map_err(|e| bad(format!("invalid volume {spec:?}: host path {src}: {e}")))?
    } else {
        PathBuf::new()
    };
    let mut options = Vec::new();
    let mut chown = false;
    let mut nocopy = false;
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o {
            "U" => chown = true,
            "nocopy" if !is_path => nocopy = true,
            "copy" if !is_path => nocopy = false,
            "ro" | "rw" | "nosuid" | "nodev" | "noexec" | "suid" | "dev" | "exec" | "rprivate"
            | "private" | "rslave" | "slave" | "rshared" | "shared" => options.push(o.to_string()),
            "z" | "Z" | "bind" | "rbind" => {}
            other => {
                return Err(bad(format!(
                    "invalid volume {spec:?}: unknown option {other:?}"
                )))
            }
        }
    }
    if chown && options.iter().any(|o| o == "ro") {
        return Err(bad(format!(
            "invalid volume {spec:?}: U cannot be combined with ro yet: drop ro, or chown the directory with `skiff unshare chown`"
        )));
    }
    Ok(Volume {
        source,
        destination: dst.to_string(),
        options,
        chown,
        anonymous: src.is_empty(),
        named,
        nocopy,
    })
}

/// The spec mount of a named volume: its data dir, bound like podman's
/// (nosuid, nodev, rbind), marked for copy-up unless `nocopy`.
pub fn volume_mount(
    volumes_dir: &std::path::Path,
    name: &str,
    dest: &str,
    user_opts: &[String],
    nocopy: bool,
) -> Mount {
    let src = volumes_dir.join(name).join("_data");
    let mut o: Vec<&str> = vec!["rbind", "nosuid", "nodev"];
    o.extend(user_opts.iter().map(String::as_str));
    if !nocopy {
        o.push(super::copyup::COPYUP_OPTION);
    }
    mount(dest, "bind", &src.display().to_string(), &o)
}

/// The /dev/shm tmpfs size option for `--shm-size` (podman's and docker's default 64m).
fn shm_size_option(flag: Option<&str>) -> Result<String, RuntimeError> {
    let Some(raw) = flag else {
        return Ok("size=65536k".into());
    };
    match super::mount_flag::parse_size(raw) {
        Some(bytes) if bytes > 0 => Ok(format!("size={bytes}")),
        _ => Err(RuntimeError::BadFlag {
            flag: "--shm-size",
            detail: format!(
                "invalid size {raw:?}: give a number of bytes greater than 0 with an optional unit (b, k, m, g), e.g. 256m"
            ),
        }),
    }
}

/// The spec's mounts, in order, and the container paths to chown to the container's
/// user at start (`:U`).
pub fn mounts(inp: &SpecInputs) -> Result<(Vec<Mount>, Vec<String>), RuntimeError> {
    let opts = inp.opts;
    let shm_size = shm_size_option(opts.shm_size.as_deref())?;
    let mut mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", &shm_size],
        ),
    ];
    match inp.network {
        NetworkMode::Host => mounts.push(mount(
            "/sys",
            "bind",
            "/sys",
            &["rbind", "nosuid", "noexec", "nodev", "ro"],
        )),
        _ => mounts.push(mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        )),
    }
    // Before the generated files: /run/.containerenv lives on the /run tmpfs.
    if opts.read_only && opts.read_only_tmpfs.unwrap_or(true) {
        for dst in ["/run", "/tmp", "/var/tmp"] {
            let taken = opts.tmpfs.iter().any(|t| t.split(':').next() == Some(dst))
                || opts
                    .volumes
                    .iter()
                    .any(|v| v.split(':').nth(1) == Some(dst))
                || opts
                    .mounts
                    .iter()
                    .any(|m| super::mount_flag::parse_mount(m).is_ok_and(|f| f.destination == dst));
            if !taken {
                mounts.push(mount(
                    dst,
                    "tmpfs",
                    "tmpfs",
                    &["rw", "nosuid", "nodev", "mode=1777"],
                ));
            }
        }
    }
    for (src, dst) in &inp.generated {
        let ro: &[&str] = if *dst == "/run/.containerenv" {
            &["bind", "ro"]
        } else {
            &["bind"]
        };
        mounts.push(mount(dst, "bind", &src.display().to_string(), ro));
    }
    if let Some(sock) = super::notify::host_socket(opts)? {
        let src = sock.display().to_string();
        mounts.push(mount(
            super::notify::CONTAINER_SOCKET,
            "bind",
            &src,
            &["bind"],
        ));
    }
    // Container paths to chown to the container's user at start (`:U`).
    let mut chown: Vec<String> = Vec::new();
    for v in &opts.volumes {
        let vol = parse_volume(v)?;
        if vol.chown {
            chown.push(vol.destination.clone());
        }
        if let Some(name) = &vol.named {
            mounts.push(volume_mount(
                inp.volumes_dir,
                name,
                &vol.destination,
                &vol.options,
                vol.nocopy,
            ));
            continue;
        }
        if vol.anonymous {
            return Err(RuntimeError::BadFlag {
                flag: "--volume",
                detail: format!("anonymous volume {v:?} has no name: create the container again"),
            });
        }
        let mut o: Vec<&str> = vec!["rbind"];
        o.extend(vol.options.iter().map(String::as_str));
        mounts.push(mount(
            &vol.destination,
            "bind",
            &vol.source.display().to_string(),
            &o,
        ));
    }
    for t in &opts.tmpfs {
        let (dst, o) = t.split_once(':').unwrap_or((t, ""));
        if !dst.starts_with('/') {
            return Err(RuntimeError::BadFlag {
                flag: "--tmpfs",
                detail: format!("invalid tmpfs {t:?}: path must be absolute"),
            });
        }
        let mut options: Vec<&str> = vec!["rw", "noexec", "nosuid", "nodev"];
        options.extend(o.split(',').filter(|s| !s.is_empty()));
        mounts.push(mount(dst, "tmpfs", "tmpfs", &options));
    }
    for raw in &opts.mounts {
        let m = super::mount_flag::parse_mount(raw)?;
        if m.chown {
            chown.push(m.destination.clone());
        }
        mounts.push(super::mount_flag::to_spec_mount(&m, raw, inp.volumes_dir)?);
    }
    check_unique_destinations(&mounts[mounts.len() - user_mounts(opts)..])?;
    Ok((mounts, chown))
}

/// How many mounts -v, --tmpfs and --mount add (they come last in the spec's list).
fn user_mounts(opts: &CreateOptions) -> usize {
    opts.volumes.len() + opts.tmpfs.len() + opts.mounts.len()
}

/// Two user mounts on one container path would silently hide one of them; podman
/// refuses that, and so do we.
fn check_unique_destinations(mounts: &[Mount]) -> Result<(), RuntimeError> {
    let mut seen = HashSet::new();
    for m in mounts {
        let d = m.destination().display().to_string();
        let norm = d.trim_end_matches('/').to_string();
        if !seen.insert(norm) {
            return Err(RuntimeError::BadFlag {
                flag: "--mount",
                detail: format!(
                    "duplicate mount destination {d}: give each -v/--tmpfs/--mount its own container path"
                ),
            });
        }
    }
    Ok(())
}
