//! skiff.toml: the user's and the host's defaults for skiff, with podman's precedence:
//! flags, then environment, then `$XDG_CONFIG_HOME/skiff/skiff.toml`, then
//! `/etc/skiff/skiff.toml`, then built-in defaults. `SKIFF_CONFIG` names the one file
//! to read instead of both. Every effective value remembers where it came from, so
//! `skiff info` can say why a setting is what it is.
//!
//! ```toml
//! [storage]
//! root = "/data/skiff"          # --root, SKIFF_ROOT
//! runroot = "/run/user/1000/skiff"  # --runroot, SKIFF_RUNROOT
//! driver = "overlay"
//! max_layer_size = "64GiB"      # refuse a layer that unpacks to more (a gzip bomb)
//! [network]
//! default = "slirp4netns"       # run/create without --network
//! dns_upstream = "192.168.1.1"  # where 10.0.2.3 relays queries (SKIFF_DNS_UPSTREAM)
//! [containers]
//! log_driver = "k8s-file"       # run/create without --log-driver
//! [registries]
//! config = "/etc/containers/registries.conf"  # CONTAINERS_REGISTRIES_CONF
//! ```

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The host-wide file.
pub const SYSTEM_FILE: &str = "/etc/skiff/skiff.toml";

/// Far above any real layer (the largest CUDA layers are ~10 GiB), yet it stops a
/// decompression bomb before it fills a shared disk.
pub const DEFAULT_MAX_LAYER_SIZE: u64 = 64 << 30;

/// `123`, `10k`, `500MB`, `64GiB` (units are powers of 1024, as podman's sizes).
pub fn parse_size(s: &str) -> Option<u64> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().ok()?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return None,
    };
    n.checked_mul(1u64 << shift)
}

/// A configuration file that cannot be used; names the file (and line) and what to do.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{path}:{line}:{col}: {msg}: fix the file, or point SKIFF_CONFIG at another one")]
    Parse {
        path: PathBuf,
        line: usize,
        col: usize,
        msg: String,
    },
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {key} = {value:?}: {why}")]
    Invalid {
        path: PathBuf,
        key: &'static str,
        value: String,
        why: &'static str,
    },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    storage: Option<StorageSection>,
    network: Option<NetworkSection>,
    containers: Option<ContainersSection>,
    registries: Option<RegistriesSection>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StorageSection {
    root: Option<PathBuf>,
    runroot: Option<PathBuf>,
    driver: Option<String>,
    max_layer_size: Option<toml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NetworkSection {
    default: Option<String>,
    dns_upstream: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ContainersSection {
    log_driver: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistriesSection {
    config: Option<PathBuf>,
}

/// Where an effective value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Flag(&'static str),
    Env(&'static str),
    File(PathBuf),
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Flag(n) => write!(f, "flag {n}"),
            Source::Env(n) => write!(f, "environment {n}"),
            Source::File(p) => write!(f, "{}", p.display()),
            Source::Default => write!(f, "default"),
        }
    }
}

/// A value and its source; `value` None means "skiff's computed default" (the XDG
/// paths, or podman's registries.conf search).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting<T> {
    pub value: T,
    pub source: Source,
}

/// The effective configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub root: Setting<Option<PathBuf>>,
    pub runroot: Setting<Option<PathBuf>>,
    pub driver: Setting<String>,
    /// Bytes a layer may unpack to; more is refused as a likely decompression bomb.
    pub max_layer_size: Setting<u64>,
    pub network: Setting<String>,
    /// The resolver the user-mode network relays DNS to (None: the host's first
    /// nameserver, read when the container starts).
    pub dns_upstream: Setting<Option<String>>,
    pub log_driver: Setting<String>,
    pub registries: Setting<Option<PathBuf>>,
    /// The files read, in order of increasing precedence.
    pub files: Vec<PathBuf>,
}

impl Settings {
    /// `--network` for run/create when the flag is absent (None: built-in default).
    pub fn default_network(&self) -> Option<String> {
        (self.network.source != Source::Default).then(|| self.network.value.clone())
    }

    /// `--log-driver` for run/create when the flag is absent (None: built-in default).
    pub fn default_log_driver(&self) -> Option<String> {
        (self.log_driver.source != Source::Default).then(|| self.log_driver.value.clone())
    }

    /// Every setting as (key, value, source), for `skiff info`.
    pub fn table(&self, root: &Path, runroot: &Path) -> Vec<(&'static str, String, String)> {
        let path = |s: &Setting<Option<PathBuf>>, fallback: &Path| {
            (
                s.value.as_deref().unwrap_or(fallback).display().to_string(),
                s.source.to_string(),
            )
        };
        let (r, rs) = path(&self.root, root);
        let (rr, rrs) = path(&self.runroot, runroot);
        let reg = match &self.registries.value {
            Some(p) => p.display().to_string(),
            None => "podman's search (~/.config/containers, /etc/containers)".into(),
        };
        vec![
            ("storage.root", r, rs),
            ("storage.runroot", rr, rrs),
            (
                "storage.driver",
                self.driver.value.clone(),
                self.driver.source.to_string(),
            ),
            (
                "storage.max_layer_size",
                self.max_layer_size.value.to_string(),
                self.max_layer_size.source.to_string(),
            ),
            (
                "network.default",
                self.network.value.clone(),
                self.network.source.to_string(),
            ),
            (
                "network.dns_upstream",
                self.dns_upstream
                    .value
                    .clone()
                    .unwrap_or_else(|| "the host's first nameserver (/etc/resolv.conf)".into()),
                self.dns_upstream.source.to_string(),
            ),
            (
                "containers.log_driver",
                self.log_driver.value.clone(),
                self.log_driver.source.to_string(),
            ),
            ("registries.config", reg, self.registries.source.to_string()),
        ]
    }
}

/// What the command line said (None: not given there).
#[derive(Debug, Default, Clone)]
pub struct Flags {
    pub root: Option<PathBuf>,
    pub runroot: Option<PathBuf>,
}

fn read(path: &Path, required: bool) -> Result<Option<FileConfig>, FileError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => return Ok(None),
        Err(source) => {
            return Err(FileError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    tracing::debug!(path = %path.display(), "read skiff.toml");
    toml::from_str::<FileConfig>(&text).map(Some).map_err(|e| {
        let at = e.span().map(|s| s.start).unwrap_or(0).min(text.len());
        let before = text.get(..at).unwrap_or_default();
        let line = before.matches('\n').count() + 1;
        let col = before
            .rsplit('\n')
            .next()
            .map(|l| l.chars().count())
            .unwrap_or(0)
            + 1;
        FileError::Parse {
            path: path.to_path_buf(),
            line,
            col,
            msg: e.message().trim().replace('\n', " "),
        }
    })
}

fn check(
    path: &Path,
    key: &'static str,
    value: &str,
    allowed: &[&str],
    why: &'static str,
) -> Result<(), FileError> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(FileError::Invalid {
            path: path.to_path_buf(),
            key,
            value: value.to_string(),
            why,
        })
    }
}

/// Loads the effective settings; `env` reads environment variables (injected for tests).
/// `read_files` false: environment and flags only (for hidden helpers).
pub fn load(
    flags: &Flags,
    env: impl Fn(&str) -> Option<OsString>,
    user_config_dir: Option<&Path>,
    read_files: bool,
) -> Result<Settings, FileError> {
    let env = |k: &str| env(k).filter(|v| !v.is_empty());
    // Lowest precedence first.
    let mut files: Vec<(PathBuf, FileConfig)> = Vec::new();
    if !read_files {
    } else if let Some(p) = env("SKIFF_CONFIG") {
        let p = PathBuf::from(p);
        if let Some(c) = read(&p, true)? {
            files.push((p, c));
        }
    } else {
        let mut candidates = vec![PathBuf::from(SYSTEM_FILE)];
        candidates.extend(user_config_dir.map(|d| d.join("skiff").join("skiff.toml")));
        for p in candidates {
            if let Some(c) = read(&p, false)? {
                files.push((p, c));
            }
        }
    }
    let mut s = Settings {
        root: Setting {
            value: None,
            source: Source::Default,
        },
        runroot: Setting {
            value: None,
            source: Source::Default,
        },
        driver: Setting {
            value: "overlay".into(),
            source: Source::Default,
        },
        max_layer_size: Setting {
            value: DEFAULT_MAX_LAYER_SIZE,
            source: Source::Default,
        },
        network: Setting {
            value: crate::runtime::DEFAULT_NETWORK.into(),
            source: Source::Default,
        },
        dns_upstream: Setting {
            value: None,
            source: Source::Default,
        },
        log_driver: Setting {
            value: "k8s-file".into(),
            source: Source::Default,
        },
        registries: Setting {
            value: None,
            source: Source::Default,
        },
        files: files.iter().map(|(p, _)| p.clone()).collect(),
    };
    for (path, c) in &files {
        let from = || Source::File(path.clone());
        if let Some(st) = &c.storage {
            if let Some(r) = &st.root {
                s.root = Setting {
                    value: Some(r.clone()),
                    source: from(),
                };
            }
            if let Some(r) = &st.runroot {
                s.runroot = Setting {
                    value: Some(r.clone()),
                    source: from(),
                };
            }
            if let Some(d) = &st.driver {
                check(
                    path,
                    "storage.driver",
                    d,
                    &["overlay"],
                    "skiff has the overlay driver",
                )?;
                s.driver = Setting {
                    value: d.clone(),
                    source: from(),
                };
            }
            if let Some(v) = &st.max_layer_size {
                let text = match v {
                    toml::Value::String(t) => t.clone(),
                    toml::Value::Integer(i) => i.to_string(),
                    _ => String::from("(not a size)"),
                };
                let Some(n) = parse_size(&text).filter(|n| *n > 0) else {
                    return Err(FileError::Invalid {
                        path: path.clone(),
                        key: "storage.max_layer_size",
                        value: text,
                        why: "use a size such as \"64GiB\", \"500MB\" or a number of bytes",
                    });
                };
                s.max_layer_size = Setting {
                    value: n,
                    source: from(),
                };
            }
            for (key, p) in [("storage.root", &st.root), ("storage.runroot", &st.runroot)] {
                if let Some(p) = p.as_ref().filter(|p| !p.is_absolute()) {
                    check(
                        path,
                        key,
                        &p.display().to_string(),
                        &[],
                        "use an absolute path",
                    )?;
                }
            }
        }
        if let Some(n) = c.network.as_ref().and_then(|n| n.default.as_ref()) {
            // slirp4netns with any of its options (allow_host_loopback, enable_ipv6).
            let slirp = matches!(
                crate::runtime::NetworkMode::parse(n),
                Ok(crate::runtime::NetworkMode::Slirp4netns { .. })
            );
            if !slirp {
                check(
                    path,
                    "network.default",
                    n,
                    &["none", "host"],
                    "use \"slirp4netns[:allow_host_loopback=true][,enable_ipv6=false]\", \"none\" or \"host\"",
                )?;
            }
            s.network = Setting {
                value: n.clone(),
                source: from(),
            };
        }
        if let Some(d) = c.network.as_ref().and_then(|n| n.dns_upstream.as_ref()) {
            if crate::network::parse_resolver(d).is_none() {
                return Err(FileError::Invalid {
                    path: path.clone(),
                    key: "network.dns_upstream",
                    value: d.clone(),
                    why: "use an IP address, IP:PORT or [IPv6]:PORT",
                });
            }
            s.dns_upstream = Setting {
                value: Some(d.clone()),
                source: from(),
            };
        }
        if let Some(l) = c.containers.as_ref().and_then(|c| c.log_driver.as_ref()) {
            check(
                path,
                "containers.log_driver",
                l,
                &["k8s-file", "none", "passthrough"],
                "use k8s-file, none or passthrough",
            )?;
            s.log_driver = Setting {
                value: l.clone(),
                source: from(),
            };
        }
        if let Some(r) = c.registries.as_ref().and_then(|r| r.config.as_ref()) {
            s.registries = Setting {
                value: Some(r.clone()),
                source: from(),
            };
        }
    }
    for (name, setting) in [
        ("SKIFF_ROOT", &mut s.root),
        ("SKIFF_RUNROOT", &mut s.runroot),
    ] {
        if let Some(v) = env(name) {
            *setting = Setting {
                value: Some(PathBuf::from(v)),
                source: Source::Env(name),
            };
        }
    }
    if let Some(v) = env(crate::network::DNS_UPSTREAM_ENV) {
        s.dns_upstream = Setting {
            value: Some(v.to_string_lossy().into_owned()),
            source: Source::Env(crate::network::DNS_UPSTREAM_ENV),
        };
    }
    if let Some(v) = env("CONTAINERS_REGISTRIES_CONF") {
        s.registries = Setting {
            value: Some(PathBuf::from(v)),
            source: Source::Env("CONTAINERS_REGISTRIES_CONF"),
        };
    }
    if let Some(r) = &flags.root {
        s.root = Setting {
            value: Some(r.clone()),
            source: Source::Flag("--root"),
        };
    }
    if let Some(r) = &flags.runroot {
        s.runroot = Setting {
            value: Some(r.clone()),
            source: Source::Flag("--runroot"),
        };
    }
    Ok(s)
}

/// Whether `--NAME` (or `--NAME=...`) is on the command line: clap merges a flag and
/// its environment variable, and the source matters to `info`.
pub fn flag_given(args: &[OsString], name: &str) -> bool {
    let long = format!("--{name}");
    let eq = format!("--{name}=");
    args.iter()
        .take_while(|a| a.as_os_str() != "--")
        .filter_map(|a| a.to_str())
        .any(|a| a == long || a.starts_with(&eq))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn precedence_and_sources() {
        let d = tempfile::tempdir().unwrap();
        let cfg = d.path().join("cfg");
        let user = write(
            &cfg,
            "skiff/skiff.toml",
            "[storage]\nroot = \"/u/root\"\nrunroot = \"/u/run\"\n[network]\ndefault = \"host\"\n",
        );
        let no_env = |_: &str| None;
        let s = load(&Flags::default(), no_env, Some(&cfg), true).unwrap();
        assert_eq!(s.root.value.as_deref(), Some(Path::new("/u/root")));
        assert_eq!(s.root.source, Source::File(user.clone()));
        assert_eq!(s.network.value, "host");
        assert_eq!(
            s.log_driver,
            Setting {
                value: "k8s-file".into(),
                source: Source::Default
            }
        );
        let env = |k: &str| (k == "SKIFF_ROOT").then(|| OsString::from("/e/root"));
        let s = load(&Flags::default(), env, Some(&cfg), true).unwrap();
        assert_eq!(s.root.source, Source::Env("SKIFF_ROOT"));
        assert_eq!(s.runroot.source, Source::File(user));
        let flags = Flags {
            root: Some("/f/root".into()),
            runroot: None,
        };
        let s = load(&flags, env, Some(&cfg), true).unwrap();
        assert_eq!(
            s.root,
            Setting {
                value: Some("/f/root".into()),
                source: Source::Flag("--root")
            }
        );
        // SKIFF_CONFIG replaces the user (and system) file.
        let other = write(
            d.path(),
            "other.toml",
            "[containers]\nlog_driver = \"none\"\n",
        );
        let o = other.clone();
        let env = move |k: &str| (k == "SKIFF_CONFIG").then(|| o.clone().into_os_string());
        let s = load(&Flags::default(), env, Some(&cfg), true).unwrap();
        assert_eq!(s.files, vec![other.clone()]);
        assert_eq!(s.log_driver.source, Source::File(other));
        assert_eq!(s.root.source, Source::Default);
    }

    #[test]
    fn bad_files_name_the_file_and_line() {
        let d = tempfile::tempdir().unwrap();
        let cfg = d.path().join("cfg");
        let cases = [
            (
                "[storage]\nroot = \"/x\"\nroot2 = 1\n",
                "skiff.toml:3:1",
                "root2",
            ),
            ("[storage\n", "skiff.toml:1:", ""),
            (
                "[network]\ndefault = \"bridge\"\n",
                "network.default",
                "bridge",
            ),
            ("[storage]\ndriver = \"vfs\"\n", "storage.driver", "vfs"),
            ("[storage]\nroot = \"rel\"\n", "storage.root", "absolute"),
            (
                "[containers]\nlog_driver = \"journald\"\n",
                "containers.log_driver",
                "journald",
            ),
            ("[bogus]\n", "skiff.toml:1:", "bogus"),
            (
                "[network]\ndns_upstream = \"resolver.lan\"\n",
                "network.dns_upstream",
                "resolver.lan",
            ),
        ];
        for (text, want, also) in cases {
            write(&cfg, "skiff/skiff.toml", text);
            let e = load(&Flags::default(), |_| None, Some(&cfg), true)
                .unwrap_err()
                .to_string();
            assert!(e.contains(want) && e.contains(also), "{text:?}: {e}");
            assert!(!e.contains('\n'), "one line: {e}");
        }
        let missing = d.path().join("nope.toml");
        let m = missing.clone();
        let e = load(
            &Flags::default(),
            move |k| (k == "SKIFF_CONFIG").then(|| m.clone().into_os_string()),
            None,
            true,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("nope.toml"), "{e}");
    }

    #[test]
    fn dns_upstream_from_file_then_environment() {
        let d = tempfile::tempdir().unwrap();
        let cfg = d.path().join("cfg");
        let file = write(
            &cfg,
            "skiff/skiff.toml",
            "[network]\ndns_upstream = \"[fd00::1]:5353\"\n",
        );
        let s = load(&Flags::default(), |_| None, Some(&cfg), true).unwrap();
        assert_eq!(s.dns_upstream.value.as_deref(), Some("[fd00::1]:5353"));
        assert_eq!(s.dns_upstream.source, Source::File(file));
        let env = |k: &str| (k == "SKIFF_DNS_UPSTREAM").then(|| "10.1.1.1".into());
        let s = load(&Flags::default(), env, Some(&cfg), true).unwrap();
        assert_eq!(s.dns_upstream.value.as_deref(), Some("10.1.1.1"));
        assert_eq!(s.dns_upstream.source, Source::Env("SKIFF_DNS_UPSTREAM"));
    }

    #[test]
    fn flags_on_the_command_line() {
        let a: Vec<OsString> = ["skiff", "--root=/x", "run", "--", "--runroot"]
            .iter()
            .map(OsString::from)
            .collect();
        assert!(flag_given(&a, "root"));
        assert!(!flag_given(&a, "runroot"));
    }
}
