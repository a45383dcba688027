//! `--mount type=bind|volume|tmpfs,source=...,destination=...[,options]`, docker's and
//! podman's long form of `-v`/`--tmpfs`. The parser is pure (no file system access), so
//! it can be fuzzed; [`to_spec_mount`] then resolves the host path and builds the same
//! OCI mount that `-v`/`--tmpfs` produce.

use std::path::PathBuf;

use oci_spec::runtime::Mount;

use super::RuntimeError;

/// The kinds of `--mount` skiff can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountKind {
    Bind,
    Tmpfs,
    /// A named volume (`src=NAME`), or an anonymous one without `src`.
    Volume,
}

/// A parsed `--mount`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountFlag {
    pub kind: MountKind,
    /// Host path (bind) or volume name (volume), as given.
    pub source: Option<String>,
    pub destination: String,
    pub readonly: bool,
    /// Recursive bind (the default; `bind-nonrecursive` turns it off).
    pub recursive: bool,
    /// Propagation and nosuid/nodev/noexec-style options, passed to the mount.
    pub options: Vec<String>,
    /// `U`: chown the mount to the container's user at start.
    pub chown: bool,
    /// tmpfs `size=` in bytes.
    pub tmpfs_size: Option<u64>,
    /// tmpfs `mode=` (octal permission bits).
    pub tmpfs_mode: Option<u32>,
    /// volume `volume-nocopy`: no copy-up of the image's files.
    pub nocopy: bool,
}

fn bad(spec: &str, why: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::BadFlag {
        flag: "--mount",
        detail: format!("invalid mount {spec:?}: {why}"),
    }
}

fn parse_bool(spec: &str, key: &str, v: Option<&str>) -> Result<bool, RuntimeError> {
    match v {
        None | Some("true") | Some("1") => Ok(true),
        Some("false") | Some("0") => Ok(false),
        Some(o) => Err(bad(spec, format!("{key}={o:?}: use true or false"))),
    }
}

/// A size such as `64m`, `1g`, `512k`, `100MiB` or `1048576` in bytes (binary units,
/// as podman's tmpfs-size).
pub fn parse_size(s: &str) -> Option<u64> {
    let lower = s.trim().to_ascii_lowercase();
    let t = lower.strip_suffix('b').unwrap_or(&lower);
    let t = t.strip_suffix('i').unwrap_or(t);
    let (num, mult) = match t.chars().last()? {
        'k' => (&t[..t.len() - 1], 1u64 << 10),
        'm' => (&t[..t.len() - 1], 1 << 20),
        'g' => (&t[..t.len() - 1], 1 << 30),
        't' => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    num.parse::<u64>().ok()?.checked_mul(mult)
}

fn need<'a>(spec: &str, key: &str, v: Option<&'a str>) -> Result<&'a str, RuntimeError> {
    v.filter(|v| !v.is_empty())
        .ok_or_else(|| bad(spec, format!("{key} needs a value")))
}

/// Parses one `--mount` value.
pub fn parse_mount(spec: &str) -> Result<MountFlag, RuntimeError> {
    let mut kind = None;
    let mut source = None;
    let mut destination = None;
    let mut readonly = false;
    let mut recursive = true;
    let mut options = Vec::new();
    let mut chown = false;
    let mut tmpfs_size = None;
    let mut tmpfs_mode = None;
    let mut tmpfs_only = Vec::new();
    let mut bind_only = Vec::new();
    let mut volume_only = Vec::new();
    let mut nocopy = false;
    for field in spec.split(',').filter(|f| !f.is_empty()) {
        let (key, val) = match field.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (field, None),
        };
        let need = |v| need(spec, key, v);
        match key {
            "type" => {
                kind = Some(match need(val)? {
                    "bind" => MountKind::Bind,
                    "tmpfs" => MountKind::Tmpfs,
                    "volume" => MountKind::Volume,
                    o => {
                        return Err(bad(
                            spec,
                            format!("mount type {o:?} is not supported: use bind, volume or tmpfs"),
                        ))
                    }
                })
            }
            "source" | "src" => source = Some(need(val)?.to_string()),
            "volume-nocopy" | "nocopy" => {
                nocopy = parse_bool(spec, key, val)?;
                volume_only.push(key);
            }
            "destination" | "dst" | "target" => destination = Some(need(val)?.to_string()),
            "ro" | "readonly" => readonly = parse_bool(spec, key, val)?,
            "rw" => readonly = !parse_bool(spec, key, val)?,
            "U" | "chown" => chown = parse_bool(spec, key, val)?,
            "bind-propagation" => {
                let p = need(val)?;
                if ![
                    "private", "rprivate", "shared", "rshared", "slave", "rslave",
                ]
                .contains(&p)
                {
                    return Err(bad(spec, format!("bind-propagation {p:?} is invalid")));
                }
                options.push(p.to_string());
                bind_only.push(key);
            }
            "bind-nonrecursive" => {
                recursive = !parse_bool(spec, key, val)?;
                bind_only.push(key);
            }
            // SELinux relabeling and docker's consistency hints mean nothing here.
            "relabel" | "z" | "Z" | "consistency" => {}
            "nosuid" | "suid" | "nodev" | "dev" | "noexec" | "exec" if val.is_none() => {
                options.push(key.to_string())
            }
            "tmpfs-size" => {
                let v = need(val)?;
                tmpfs_size = Some(
                    parse_size(v)
                        .ok_or_else(|| bad(spec, format!("tmpfs-size {v:?} is not a size")))?,
                );
                tmpfs_only.push(key);
            }
            "tmpfs-mode" => {
                let v = need(val)?;
                tmpfs_mode = Some(
                    u32::from_str_radix(v, 8)
                        .ok()
                        .filter(|m| *m <= 0o7777)
                        .ok_or_else(|| {
                            bad(spec, format!("tmpfs-mode {v:?} is not an octal mode"))
                        })?,
                );
                tmpfs_only.push(key);
            }
            "tmpcopyup" | "notmpcopyup" => tmpfs_only.push(key),
            _ => return Err(bad(spec, format!("unknown option {field:?}"))),
        }
    }
    let kind = kind.ok_or_else(|| {
        bad(
            spec,
            "type is missing: use type=bind, type=volume or type=tmpfs",
        )
    })?;
    let destination =
        destination.ok_or_else(|| bad(spec, "destination is missing: add destination=PATH"))?;
    if !destination.starts_with('/') {
        return Err(bad(
            spec,
            format!("destination {destination:?} must be an absolute path"),
        ));
    }
    if kind == MountKind::Tmpfs && source.is_some() {
        bind_only.push("source");
    }
    let misplaced = match kind {
        MountKind::Bind => tmpfs_only.first().or(volume_only.first()),
        MountKind::Tmpfs => bind_only.first().or(volume_only.first()),
        MountKind::Volume => tmpfs_only.first().or(bind_only.first()),
    };
    if let Some(k) = misplaced {
        let t = match kind {
            MountKind::Bind => "bind",
            MountKind::Tmpfs => "tmpfs",
            MountKind::Volume => "volume",
        };
        return Err(bad(spec, format!("option {k} is not valid for type={t}")));
    }
    if kind == MountKind::Volume {
        if let Some(n) = source.as_deref() {
            if !crate::storage::volumes::valid_name(n) {
                return Err(bad(
                    spec,
                    format!("volume name {n:?} must match [a-zA-Z0-9][a-zA-Z0-9_.-]*"),
                ));
            }
        }
    }
    if kind == MountKind::Bind {
        match &source {
            None => return Err(bad(spec, "source is missing: add source=HOST-PATH")),
            Some(s) if !(s.starts_with('/') || s.starts_with('.')) => {
                return Err(bad(
                    spec,
                    format!(
                        "source {s:?} is not a host path: give an absolute path, or use type=volume for a named volume"
                    ),
                ))
            }
            Some(_) => {}
        }
    }
    if chown && readonly {
        return Err(bad(
            spec,
            "U cannot be combined with readonly yet: drop readonly, or chown the directory with `skiff unshare chown`",
        ));
    }
    Ok(MountFlag {
        kind,
        source,
        destination,
        readonly,
        recursive,
        options,
        chown,
        tmpfs_size,
        tmpfs_mode,
        nocopy,
    })
}

/// The OCI mount for a parsed `--mount`; resolves a bind source on the host.
pub fn to_spec_mount(
    m: &MountFlag,
    raw: &str,
    volumes_dir: &std::path::Path,
) -> Result<Mount, RuntimeError> {
    if m.kind == MountKind::Volume {
        let name = m.source.as_deref().ok_or_else(|| {
            bad(
                raw,
                "anonymous volume has no name: create the container again",
            )
        })?;
        let mut opts = m.options.clone();
        opts.push(if m.readonly { "ro" } else { "rw" }.into());
        return Ok(super::spec_mounts::volume_mount(
            volumes_dir,
            name,
            &m.destination,
            &opts,
            m.nocopy,
        ));
    }
    let mut out = Mount::default();
    out.set_destination(PathBuf::from(&m.destination));
    let mut opts: Vec<String> = Vec::new();
    match m.kind {
        MountKind::Bind => {
            let src = m.source.as_deref().unwrap_or_default();
            let source = std::fs::canonicalize(src)
                .map_err(|e| bad(raw, format!("host path {src}: {e}")))?;
            out.set_typ(Some("bind".into()));
            out.set_source(Some(source));
            opts.push(if m.recursive { "rbind" } else { "bind" }.into());
            opts.extend(m.options.iter().cloned());
        }
        MountKind::Volume => {}
        MountKind::Tmpfs => {
            out.set_typ(Some("tmpfs".into()));
            out.set_source(Some(PathBuf::from("tmpfs")));
            // As --tmpfs: nosuid, nodev, noexec unless the user turned one back on.
            for (flag, undo) in [("noexec", "exec"), ("nosuid", "suid"), ("nodev", "dev")] {
                if !m.options.iter().any(|o| o == undo) {
                    opts.push(flag.into());
                }
            }
            if let Some(s) = m.tmpfs_size {
                opts.push(format!("size={s}"));
            }
            if let Some(mode) = m.tmpfs_mode {
                opts.push(format!("mode={mode:o}"));
            }
        }
    }
    opts.push(if m.readonly { "ro" } else { "rw" }.into());
    out.set_options(Some(opts));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_and_tmpfs_forms() {
        let m = parse_mount("type=bind,src=/tmp,target=/data,ro").unwrap();
        assert_eq!(m.kind, MountKind::Bind);
        assert_eq!(m.source.as_deref(), Some("/tmp"));
        assert_eq!(m.destination, "/data");
        assert!(m.readonly && m.recursive && !m.chown);
        let m = parse_mount("type=bind,source=/tmp,destination=/d,readonly=false,U,bind-propagation=rslave,bind-nonrecursive").unwrap();
        assert!(!m.readonly && m.chown && !m.recursive);
        assert_eq!(m.options, vec!["rslave"]);
        let m = parse_mount("type=tmpfs,dst=/t,tmpfs-size=64m,tmpfs-mode=1770").unwrap();
        assert_eq!(m.kind, MountKind::Tmpfs);
        assert_eq!(m.tmpfs_size, Some(64 << 20));
        assert_eq!(m.tmpfs_mode, Some(0o1770));
        let spec = to_spec_mount(&m, "x", std::path::Path::new("/v")).unwrap();
        let o = spec.options().clone().unwrap();
        assert!(o.contains(&"size=67108864".to_string()) && o.contains(&"mode=1770".to_string()));
        assert!(o.contains(&"noexec".to_string()));
        let spec = to_spec_mount(
            &parse_mount("type=tmpfs,dst=/t,exec").unwrap(),
            "x",
            std::path::Path::new("/v"),
        )
        .unwrap();
        assert!(!spec
            .options()
            .clone()
            .unwrap()
            .contains(&"noexec".to_string()));
    }

    #[test]
    fn bad_mounts_are_refused() {
        for s in [
            "",
            "type=bind",
            "type=bind,dst=/d",
            "type=bind,src=/tmp",
            "type=bind,src=/tmp,dst=rel",
            "type=volume,src=../x,dst=/d",
            "type=volume,src=v,dst=/d,tmpfs-size=1m",
            "type=volume,src=v,dst=/d,bind-propagation=shared",
            "type=bind,src=/tmp,dst=/d,volume-nocopy",
            "type=bind,src=name,dst=/d",
            "type=image,src=x,dst=/d",
            "type=tmpfs,dst=/t,tmpfs-size=lots",
            "type=tmpfs,dst=/t,tmpfs-mode=999",
            "type=tmpfs,dst=/t,src=/x",
            "type=bind,src=/tmp,dst=/d,tmpfs-size=1m",
            "type=bind,src=/tmp,dst=/d,bogus",
            "type=bind,src=/tmp,dst=/d,ro=maybe",
            "type=bind,src=/tmp,dst=/d,bind-propagation=sideways",
            "src=/tmp,dst=/d",
            "type=,dst=/d",
        ] {
            assert!(parse_mount(s).is_err(), "{s}");
        }
        let e = parse_mount("type=bind,src=v,dst=/d").unwrap_err();
        assert!(e.to_string().contains("type=volume"), "{e}");
        let v = parse_mount("type=volume,src=v,dst=/d,ro,volume-nocopy").unwrap();
        assert_eq!(v.kind, MountKind::Volume);
        assert_eq!(v.source.as_deref(), Some("v"));
        assert!(v.readonly && v.nocopy);
        let anon = parse_mount("type=volume,dst=/d").unwrap();
        assert_eq!(anon.source, None);
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1024"), Some(1024));
        assert_eq!(parse_size("1k"), Some(1024));
        assert_eq!(parse_size("2MiB"), Some(2 << 20));
        assert_eq!(parse_size("1g"), Some(1 << 30));
        assert_eq!(parse_size(""), None);
        assert_eq!(parse_size("m"), None);
        assert_eq!(parse_size("-1"), None);
        assert_eq!(parse_size("99999999999999999999t"), None);
    }
}
