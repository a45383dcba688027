//! containers-registries.conf(5): where short names are searched, short-name
//! aliases, and per-prefix registry settings (location rewrite, mirrors, insecure,
//! blocked). Users bring these files from podman, so skiff reads them the same way.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::image::reference::{
    parse_normalized_named, parse_short, Reference, ReferenceError, ShortName, ShortOrFull,
    DEFAULT_TAG,
};

#[path = "registries_file.rs"]
mod file;
use file::{parse_file, FileConfig};

const SYSTEM_FILE: &str = "/etc/containers/registries.conf";
const SYSTEM_DROPIN_DIR: &str = "/etc/containers/registries.conf.d";

/// What went wrong reading registries.conf or applying it to a name.
#[derive(Debug, thiserror::Error)]
pub enum RegistriesError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("invalid registries configuration {}: {message}: fix or remove the file", path.display())]
    Invalid { path: PathBuf, message: String },
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error("short-name {name:?} did not resolve to an alias and no unqualified-search registries are defined in {files}: use a fully qualified name (e.g. docker.io/library/{name}) or set unqualified-search-registries")]
    NoSearchRegistries { name: String, files: String },
    #[error("registry {prefix:?} is blocked in {}: pulling {reference} is not allowed", source_file.display())]
    Blocked {
        prefix: String,
        reference: String,
        source_file: PathBuf,
    },
    #[error("[[registry]] {prefix:?} in {} rewrites {reference} to {rewritten:?}, which is not a valid fully qualified reference: fix its location", source_file.display())]
    Rewrite {
        prefix: String,
        reference: String,
        rewritten: String,
        source_file: PathBuf,
    },
}

type Result<T> = std::result::Result<T, RegistriesError>;

/// How a short name with several candidate registries is handled; the prompt (or
/// refusal) is the caller's, since only it knows whether there is a terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ShortNameMode {
    /// More than one candidate: prompt on a TTY, otherwise fail.
    Enforcing,
    /// More than one candidate: prompt on a TTY, otherwise try them all in order.
    #[default]
    Permissive,
    /// Try all candidates in order.
    Disabled,
}

/// Which pulls may use a mirror; tag pulls through an out-of-sync mirror can yield
/// a different image, so admins restrict some mirrors to digests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MirrorUse {
    #[default]
    All,
    DigestOnly,
    TagOnly,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    pub location: String,
    pub insecure: bool,
    pub pull_from_mirror: MirrorUse,
}

/// One `[[registry]]` table. `location` is empty only for a wildcard prefix, where
/// the matched host itself is used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryEntry {
    pub prefix: String,
    pub location: String,
    pub insecure: bool,
    pub blocked: bool,
    pub mirror_by_digest_only: bool,
    pub mirrors: Vec<Mirror>,
    /// File that defined the entry, for error messages.
    pub source: PathBuf,
}

/// A place to fetch an image from, after prefix rewriting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host[:port]` as written (`docker.io` is not mapped to its API host here).
    pub host: String,
    pub repository: String,
    /// Tag or digest to request (a prefix with a tag can rewrite it).
    pub reference: String,
    /// Plain HTTP or unverified TLS is allowed.
    pub insecure: bool,
    pub mirror: bool,
}

/// The merged configuration of all registries.conf files that apply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registries {
    pub unqualified_search: Vec<String>,
    /// Short name (no tag) → fully qualified name (no tag).
    pub aliases: BTreeMap<String, String>,
    pub registries: Vec<RegistryEntry>,
    pub short_name_mode: ShortNameMode,
    /// Files actually read, in merge order.
    pub sources: Vec<PathBuf>,
    /// File that set `unqualified-search-registries`, named in errors as podman does.
    pub search_origin: Option<PathBuf>,
}

/// The files [`Registries::load`] reads, exposed so `skiff info` can show them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigPaths {
    pub main: Option<PathBuf>,
    pub dropin_dirs: Vec<PathBuf>,
    /// podman's record of short names the user chose at a prompt; its aliases win.
    pub alias_cache: Option<PathBuf>,
}

impl ConfigPaths {
    /// Chooses files as podman does. `CONTAINERS_REGISTRIES_CONF` selects one file
    /// and nothing else (so tests and scripts get exactly what they ask for). A
    /// non-root user's `$XDG_CONFIG_HOME/containers/registries.conf`, if present,
    /// replaces the system file and, as in podman, the system drop-in directory too.
    pub fn from_env() -> ConfigPaths {
        let rootless = std::fs::metadata("/proc/self").map_or(true, |m| m.uid() != 0);
        ConfigPaths::from_vars(|k| std::env::var_os(k), rootless)
    }

    /// [`ConfigPaths::from_env`] with the environment passed in, for tests.
    pub fn from_vars(var: impl Fn(&str) -> Option<OsString>, rootless: bool) -> ConfigPaths {
        let var = |k: &str| var(k).filter(|v| !v.is_empty());
        if let Some(path) = var("CONTAINERS_REGISTRIES_CONF") {
            return ConfigPaths {
                main: Some(PathBuf::from(path)),
                dropin_dirs: Vec::new(),
                alias_cache: None,
            };
        }
        let home = var("HOME").map(PathBuf::from);
        let xdg = |name: &str, fallback: &str| {
            var(name)
                .map(PathBuf::from)
                .or_else(|| home.as_ref().map(|h| h.join(fallback)))
        };
        let system_dir = PathBuf::from(SYSTEM_DROPIN_DIR);
        if !rootless {
            return ConfigPaths {
                main: Some(PathBuf::from(SYSTEM_FILE)),
                dropin_dirs: vec![system_dir],
                alias_cache: Some(PathBuf::from(
                    "/var/cache/containers/short-name-aliases.conf",
                )),
            };
        }
        let user = xdg("XDG_CONFIG_HOME", ".config").map(|c| c.join("containers"));
        let alias_cache = xdg("XDG_CACHE_HOME", ".cache")
            .map(|c| c.join("containers").join("short-name-aliases.conf"));
        let Some(user) = user else {
            return ConfigPaths {
                main: Some(PathBuf::from(SYSTEM_FILE)),
                dropin_dirs: vec![system_dir],
                alias_cache,
            };
        };
        let user_file = user.join("registries.conf");
        let user_dir = user.join("registries.conf.d");
        if user_file.exists() {
            ConfigPaths {
                main: Some(user_file),
                dropin_dirs: vec![user_dir],
                alias_cache,
            }
        } else {
            ConfigPaths {
                main: Some(PathBuf::from(SYSTEM_FILE)),
                dropin_dirs: vec![system_dir, user_dir],
                alias_cache,
            }
        }
    }
}

impl Registries {
    /// Loads the configuration podman would use for this user and environment.
    pub fn load() -> Result<Registries> {
        let paths = ConfigPaths::from_env();
        let mut reg = Registries::load_from(paths.main.as_deref(), &paths.dropin_dirs)?;
        if let Some(cache) = &paths.alias_cache {
            reg.load_alias_cache(cache)?;
        }
        Ok(reg)
    }

    /// Reads `main`, then every `*.conf` in each directory (by name, directory by
    /// directory), each later file overriding earlier ones. Missing files and
    /// directories are skipped.
    pub fn load_from(main: Option<&Path>, dropin_dirs: &[PathBuf]) -> Result<Registries> {
        let mut files: Vec<PathBuf> = main.map(Path::to_path_buf).into_iter().collect();
        for dir in dropin_dirs {
            files.extend(conf_files_in(dir)?);
        }
        let mut merged = Registries::default();
        for path in files {
            let Some(text) = read_optional(&path)? else {
                continue;
            };
            let layer = parse_file(&path, &text)?;
            merged.merge(layer, path);
        }
        Ok(merged)
    }

    /// Merges podman's machine-written short-name alias file, which takes
    /// precedence over registries.conf aliases.
    pub fn load_alias_cache(&mut self, path: &Path) -> Result<()> {
        let Some(text) = read_optional(path)? else {
            return Ok(());
        };
        let layer = parse_file(path, &text)?;
        merge_aliases(&mut self.aliases, layer.aliases);
        self.sources.push(path.to_path_buf());
        Ok(())
    }

    fn merge(&mut self, layer: FileConfig, path: PathBuf) {
        if let Some(search) = layer.search {
            self.unqualified_search = search;
            self.search_origin = Some(path.clone());
        }
        if let Some(mode) = layer.mode {
            self.short_name_mode = mode;
        }
        merge_aliases(&mut self.aliases, layer.aliases);
        for entry in layer.registries {
            self.registries.retain(|e| e.prefix != entry.prefix);
            self.registries.push(entry);
        }
        self.registries.sort_by(|a, b| a.prefix.cmp(&b.prefix));
        self.sources.push(path);
    }

    /// Candidate references for a user-typed name, in the order to try them. A fully
    /// qualified name is its own single candidate; a short name resolves through an
    /// alias if one exists, else through each unqualified-search registry. With more
    /// than one candidate the caller applies `short_name_mode` (prompt or refuse).
    pub fn resolve(&self, input: &str) -> Result<Vec<Reference>> {
        let short = match parse_short(input)? {
            ShortOrFull::Full(r) => return Ok(vec![r]),
            ShortOrFull::Short(s) => s,
        };
        if let Some(target) = self.alias_target(&short)? {
            return Ok(vec![target]);
        }
        if self.unqualified_search.is_empty() {
            return Err(RegistriesError::NoSearchRegistries {
                name: short.repository.clone(),
                files: self.describe_search_origin(),
            });
        }
        let mut out: Vec<Reference> = Vec::new();
        for registry in &self.unqualified_search {
            let candidate = short.qualify(registry)?;
            if !out.contains(&candidate) {
                out.push(candidate);
            }
        }
        Ok(out)
    }

    /// The alias for a short name, with the short name's tag/digest carried over.
    pub fn alias_target(&self, short: &ShortName) -> Result<Option<Reference>> {
        let Some(value) = self.aliases.get(&short.repository) else {
            return Ok(None);
        };
        let mut target = parse_normalized_named(value)?;
        target.tag.clone_from(&short.tag);
        target.digest.clone_from(&short.digest);
        if target.tag.is_none() && target.digest.is_none() {
            target.tag = Some(DEFAULT_TAG.to_string());
        }
        Ok(Some(target))
    }

    /// The `[[registry]]` entry whose prefix best matches `r` (longest prefix; an
    /// exact prefix beats a wildcard of equal length), with the matched length.
    pub fn find(&self, r: &Reference) -> Option<(&RegistryEntry, usize)> {
        let full = r.to_string();
        let mut best: Option<(&RegistryEntry, usize, (usize, bool))> = None;
        for entry in &self.registries {
            if let Some(len) = match_prefix(&entry.prefix, &full) {
                let score = (entry.prefix.len(), !entry.prefix.starts_with("*."));
                if best.as_ref().is_none_or(|b| score > b.2) {
                    best = Some((entry, len, score));
                }
            }
        }
        best.map(|(e, len, _)| (e, len))
    }

    /// Where to pull `r` from: usable mirrors in order, then the primary location.
    /// `insecure` is also set for loopback hosts (`localhost`, `127.0.0.0/8`,
    /// `[::1]`, any port): a registry on loopback almost always speaks plain HTTP
    /// and traffic never leaves the machine, so skiff does not make users configure
    /// it (podman would require `insecure = true` or `--tls-verify=false`).
    pub fn endpoints(&self, r: &Reference) -> Result<Vec<Endpoint>> {
        let full = r.to_string();
        let Some((entry, len)) = self.find(r) else {
            return Ok(vec![endpoint(r, false, false)]);
        };
        if entry.blocked {
            return Err(RegistriesError::Blocked {
                prefix: entry.prefix.clone(),
                reference: full,
                source_file: entry.source.clone(),
            });
        }
        let rest = &full[len..];
        let digested = r.digest.is_some();
        let mut out = Vec::new();
        for m in &entry.mirrors {
            let usable = if entry.mirror_by_digest_only {
                digested
            } else {
                match m.pull_from_mirror {
                    MirrorUse::All => true,
                    MirrorUse::DigestOnly => digested,
                    MirrorUse::TagOnly => !digested,
                }
            };
            if usable {
                let target = rewrite(entry, &m.location, rest, &full)?;
                out.push(endpoint(&target, m.insecure, true));
            }
        }
        let primary = if entry.location.is_empty() {
            r.clone()
        } else {
            rewrite(entry, &entry.location, rest, &full)?
        };
        out.push(endpoint(&primary, entry.insecure, false));
        Ok(out)
    }

    /// Where to push `r`: podman applies neither location rewriting nor mirrors nor
    /// `blocked` to pushes, only `insecure`.
    #[allow(dead_code)] // used by `skiff push` (images issue)
    pub fn push_endpoint(&self, r: &Reference) -> Endpoint {
        let insecure = self.find(r).is_some_and(|(e, _)| e.insecure);
        endpoint(r, insecure, false)
    }

    fn describe_search_origin(&self) -> String {
        if let Some(origin) = &self.search_origin {
            return origin.display().to_string();
        }
        if self.sources.is_empty() {
            return "any registries.conf (none found)".to_string();
        }
        let names: Vec<String> = self
            .sources
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        names.join(", ")
    }
}

/// True for hosts on the loopback interface, with or without a port.
pub fn is_loopback_host(host: &str) -> bool {
    let bare = if host.starts_with('[') {
        host.split_inclusive(']').next().unwrap_or(host)
    } else {
        host.split(':').next().unwrap_or(host)
    };
    if bare == "localhost" || bare == "[::1]" {
        return true;
    }
    bare.parse::<std::net::Ipv4Addr>()
        .is_ok_and(|ip| ip.is_loopback())
}

fn endpoint(r: &Reference, insecure: bool, mirror: bool) -> Endpoint {
    Endpoint {
        insecure: insecure || is_loopback_host(&r.registry),
        host: r.registry.clone(),
        repository: r.repository.clone(),
        reference: r.reference_for_registry().to_string(),
        mirror,
    }
}

fn rewrite(entry: &RegistryEntry, location: &str, rest: &str, full: &str) -> Result<Reference> {
    let rewritten = format!("{location}{rest}");
    let err = || RegistriesError::Rewrite {
        prefix: entry.prefix.clone(),
        reference: full.to_string(),
        rewritten: rewritten.clone(),
        source_file: entry.source.clone(),
    };
    match parse_short(&rewritten) {
        Ok(ShortOrFull::Full(_)) => parse_normalized_named(&rewritten).map_err(|_| err()),
        _ => Err(err()),
    }
}

/// Length of `reference` covered by `prefix`, if it matches at a component
/// boundary: `/` always, `:` and `@` only after a repository path (so `example.com`
/// does not swallow `example.com:5000`). `*.example.com` matches any subdomain.
fn match_prefix(prefix: &str, reference: &str) -> Option<usize> {
    let boundary = |end: usize, allow_tag: bool| match reference.as_bytes().get(end) {
        None | Some(b'/') => Some(end),
        Some(b':' | b'@') if allow_tag => Some(end),
        _ => None,
    };
    if let Some(domain) = prefix.strip_prefix('*') {
        let host_end = reference.find('/').unwrap_or(reference.len());
        let host = &reference[..host_end];
        let host_no_port = host.split(':').next().unwrap_or(host);
        let label_len = host_no_port.len().checked_sub(domain.len())?;
        if label_len == 0 || !host_no_port.ends_with(domain) {
            return None;
        }
        return Some(host_end);
    }
    if !reference.starts_with(prefix) {
        return None;
    }
    boundary(prefix.len(), prefix.contains('/'))
}

fn merge_aliases(into: &mut BTreeMap<String, String>, layer: BTreeMap<String, String>) {
    for (name, value) in layer {
        if value.is_empty() {
            into.remove(&name);
        } else {
            into.insert(name, value);
        }
    }
}

fn read_optional(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(RegistriesError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn conf_files_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let read_err = |source| RegistriesError::Read {
        path: dir.to_path_buf(),
        source,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(read_err(e)),
    };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(read_err)?.path();
        if path.extension().is_some_and(|e| e == "conf") && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
#[path = "registries_tests.rs"]
mod tests;
