//! The container's OCI bundle on disk: config.json (the spec), rootfs.json (how to build
//! the rootfs), and the generated /etc files bind-mounted into the container.

use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;

use super::{NetworkMode, RuntimeError};
use crate::rootfs::RootfsLayout;

pub const CONFIG: &str = "config.json";
pub const ROOTFS: &str = "rootfs.json";

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RuntimeError + '_ {
    move |source| RuntimeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes a file atomically (temp + rename), so a crash never leaves half a config.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), RuntimeError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// Inputs for the generated files.
pub struct Generated<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub image_name: &'a str,
    pub image_id: &'a str,
    pub hostname: &'a str,
    pub network: NetworkMode,
    pub rootless: bool,
}

/// Writes hosts, hostname, resolv.conf and .containerenv into the bundle; returns the
/// (source, destination) bind mounts for them.
pub fn generate_files(
    dir: &Path,
    g: &Generated,
) -> Result<Vec<(PathBuf, &'static str)>, RuntimeError> {
    let mut hosts = String::new();
    if g.network == NetworkMode::Host {
        hosts.push_str(&std::fs::read_to_string("/etc/hosts").unwrap_or_default());
        if !hosts.is_empty() && !hosts.ends_with('\n') {
            hosts.push('\n');
        }
    } else {
        hosts.push_str(
            "127.0.0.1\tlocalhost localhost.localdomain localhost4 localhost4.localdomain4\n",
        );
        hosts.push_str("::1\tlocalhost localhost.localdomain localhost6 localhost6.localdomain6\n");
    }
    hosts.push_str(&format!("127.0.1.1\t{} {}\n", g.hostname, g.name));
    let mut resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    if g.network != NetworkMode::Host {
        // A loopback resolver on the host is unreachable from a private network namespace.
        resolv = resolv
            .lines()
            .filter(|l| {
                let l = l.trim();
                !(l.starts_with("nameserver") && (l.contains(" 127.") || l.contains(" ::1")))
            })
            .map(|l| format!("{l}\n"))
            .collect();
    }
    let containerenv = format!(
        "engine=\"skiff-{}\"\nname=\"{}\"\nid=\"{}\"\nimage=\"{}\"\nimageid=\"{}\"\nrootless={}\n",
        env!("CARGO_PKG_VERSION"),
        g.name,
        g.id,
        g.image_name,
        g.image_id,
        u8::from(g.rootless)
    );
    let files: [(&str, &'static str, String); 4] = [
        ("hosts", "/etc/hosts", hosts),
        ("hostname", "/etc/hostname", format!("{}\n", g.hostname)),
        ("resolv.conf", "/etc/resolv.conf", resolv),
        ("containerenv", "/run/.containerenv", containerenv),
    ];
    let mut out = Vec::new();
    for (file, dest, content) in files {
        let p = dir.join(file);
        std::fs::write(&p, content).map_err(io(&p))?;
        out.push((p, dest));
    }
    Ok(out)
}

pub fn write_spec(dir: &Path, spec: &Spec) -> Result<(), RuntimeError> {
    let data = serde_json::to_vec_pretty(spec).map_err(|e| RuntimeError::Bundle {
        path: dir.to_path_buf(),
        detail: e.to_string(),
    })?;
    write_atomic(&dir.join(CONFIG), &data)
}

pub fn write_layout(dir: &Path, layout: &RootfsLayout) -> Result<(), RuntimeError> {
    let data = serde_json::to_vec_pretty(layout).map_err(|e| RuntimeError::Bundle {
        path: dir.to_path_buf(),
        detail: e.to_string(),
    })?;
    write_atomic(&dir.join(ROOTFS), &data)
}

pub fn load_spec(dir: &Path) -> Result<Spec, RuntimeError> {
    let p = dir.join(CONFIG);
    let data = std::fs::read(&p).map_err(io(&p))?;
    serde_json::from_slice(&data).map_err(|e| RuntimeError::Bundle {
        path: p.clone(),
        detail: e.to_string(),
    })
}

pub fn load_layout(dir: &Path) -> Result<RootfsLayout, RuntimeError> {
    let p = dir.join(ROOTFS);
    let data = std::fs::read(&p).map_err(io(&p))?;
    serde_json::from_slice(&data).map_err(|e| RuntimeError::Bundle {
        path: p.clone(),
        detail: e.to_string(),
    })
}
