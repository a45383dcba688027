//! Registry credentials in containers-auth.json(5) / docker config.json files, read
//! in podman's order so `podman login` and `docker login` keep working for skiff.

// store/remove back `skiff login`/`logout`, which arrive with the images issue; they are
// unit-tested here already.
#![allow(dead_code)]

use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use serde_json::{Map, Value};

/// docker writes padded base64, some tools do not; accept both.
const B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// What went wrong reading or writing an auth file; every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read auth file {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("invalid auth file {}: {message}: fix it or remove the file", path.display())]
    Invalid { path: PathBuf, message: String },
    #[error("cannot write auth file {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
}

type Result<T> = std::result::Result<T, AuthError>;

/// Username and password for HTTP basic auth or a registry token exchange.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// Keeps passwords out of logs and panic messages.
impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Credentials for `repository` on `registry_host` (`host[:port]`), from the first
/// auth file that has an entry; within a file the most specific key wins
/// (`host/ns/repo`, then `host/ns`, then `host`).
pub fn lookup(registry_host: &str, repository: &str) -> Result<Option<Credentials>> {
    lookup_in(&auth_files(), registry_host, repository)
}

/// [`lookup`] over explicit files; a file named `.dockercfg` is read in docker's
/// legacy format (a bare map of hosts).
pub fn lookup_in(
    files: &[PathBuf],
    registry_host: &str,
    repository: &str,
) -> Result<Option<Credentials>> {
    let host = canonical_host(registry_host);
    let mut wanted = Vec::new();
    let mut key = format!("{host}/{}", repository.trim_matches('/'));
    loop {
        wanted.push(key.clone());
        match key.rfind('/') {
            Some(i) => key.truncate(i),
            None => break,
        }
    }
    for path in files {
        if let Some(creds) = lookup_file(path, &host, &wanted)? {
            return Ok(Some(creds));
        }
    }
    Ok(None)
}

/// Auth files in the order podman consults them: `REGISTRY_AUTH_FILE` (or
/// `$XDG_RUNTIME_DIR/containers/auth.json`), then the runtime file,
/// `$XDG_CONFIG_HOME/containers/auth.json`, docker's `config.json` (in
/// `$DOCKER_CONFIG` or `~/.docker`) and the legacy `~/.dockercfg`.
pub fn auth_files() -> Vec<PathBuf> {
    auth_files_from(|k| std::env::var_os(k), current_uid())
}

/// [`auth_files`] with the environment and uid passed in, for tests.
pub fn auth_files_from(var: impl Fn(&str) -> Option<OsString>, uid: u32) -> Vec<PathBuf> {
    let var = |k: &str| var(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    let home = var("HOME");
    let mut files = Vec::new();
    if let Some(path) = var("REGISTRY_AUTH_FILE") {
        files.push(path);
    }
    files.push(runtime_auth_file(var("XDG_RUNTIME_DIR"), uid));
    let config_home = var("XDG_CONFIG_HOME").or_else(|| home.as_ref().map(|h| h.join(".config")));
    if let Some(c) = config_home {
        files.push(c.join("containers").join("auth.json"));
    }
    if let Some(d) = var("DOCKER_CONFIG") {
        files.push(d.join("config.json"));
    } else if let Some(h) = &home {
        files.push(h.join(".docker").join("config.json"));
    }
    if let Some(h) = &home {
        files.push(h.join(".dockercfg"));
    }
    let mut seen = Vec::new();
    files.retain(|f| {
        let new = !seen.contains(f);
        seen.push(f.clone());
        new
    });
    files
}

/// The file `login` writes and `logout` edits: `REGISTRY_AUTH_FILE` if set, else
/// podman's per-session `$XDG_RUNTIME_DIR/containers/auth.json`.
pub fn default_auth_file() -> PathBuf {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var("REGISTRY_AUTH_FILE")
        .unwrap_or_else(|| runtime_auth_file(var("XDG_RUNTIME_DIR"), current_uid()))
}

/// Saves credentials under `key` (`host[:port]` or `host/ns[/repo]`), replacing any
/// entry for the same key, and keeping everything else in the file intact.
pub fn store(path: &Path, key: &str, creds: &Credentials) -> Result<()> {
    let key = normalize_key(key, false);
    let mut doc = read_document(path)?;
    let auths = auths_mut(path, &mut doc)?;
    auths.retain(|k, _| normalize_key(k, false) != key);
    let encoded = B64.encode(format!("{}:{}", creds.username, creds.password));
    let mut entry = Map::new();
    entry.insert("auth".into(), Value::String(encoded));
    auths.insert(key, Value::Object(entry));
    write_atomic(path, &doc)
}

/// Deletes the entry for `key` (however it is spelled in the file); returns whether
/// there was one, so `logout` can say "not logged into" as podman does.
pub fn remove(path: &Path, key: &str) -> Result<bool> {
    let key = normalize_key(key, false);
    if !path.exists() {
        return Ok(false);
    }
    let mut doc = read_document(path)?;
    let auths = auths_mut(path, &mut doc)?;
    let before = auths.len();
    auths.retain(|k, _| normalize_key(k, false) != key);
    if auths.len() == before {
        return Ok(false);
    }
    write_atomic(path, &doc)?;
    Ok(true)
}

/// Deletes every entry (`logout --all`); other settings in the file stay.
pub fn remove_all(path: &Path) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let mut doc = read_document(path)?;
    auths_mut(path, &mut doc)?.clear();
    write_atomic(path, &doc)
}

fn current_uid() -> u32 {
    fs::metadata("/proc/self").map_or(u32::MAX, |m| m.uid())
}

fn runtime_auth_file(xdg_runtime_dir: Option<PathBuf>, uid: u32) -> PathBuf {
    xdg_runtime_dir
        .map(|d| d.join("containers"))
        .unwrap_or_else(|| PathBuf::from(format!("/run/containers/{uid}")))
        .join("auth.json")
}

/// Docker Hub has three names; credentials saved under any of them apply to all.
fn canonical_host(host: &str) -> String {
    match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".to_string(),
        other => other.to_string(),
    }
}

/// `https://host/v1/` → `host`; `docker.io/library/x` keeps its path (only a
/// URL's path is dropped, as in containers/image).
fn normalize_key(key: &str, legacy: bool) -> String {
    let stripped = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"));
    let had_scheme = stripped.is_some();
    let mut k = stripped.unwrap_or(key).trim_end_matches('/');
    if legacy || had_scheme {
        k = k.split('/').next().unwrap_or(k);
    }
    match k.split_once('/') {
        Some((host, path)) => format!("{}/{path}", canonical_host(host)),
        None => canonical_host(k),
    }
}

fn lookup_file(path: &Path, host: &str, wanted: &[String]) -> Result<Option<Credentials>> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(AuthError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    if text.trim().is_empty() {
        return Ok(None);
    }
    let invalid = |message: String| AuthError::Invalid {
        path: path.to_path_buf(),
        message,
    };
    let doc: Value = serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;
    let Value::Object(top) = doc else {
        return Err(invalid("expected a JSON object".into()));
    };
    let legacy = path.file_name().is_some_and(|n| n == ".dockercfg");
    let auths = if legacy {
        top.clone()
    } else {
        if let Some(helpers) = top.get("credHelpers").and_then(Value::as_object) {
            for (key, helper) in helpers {
                if normalize_key(key, true) == host {
                    tracing::warn!(
                        "auth file {} sends {host} to credential helper {helper}, which skiff does not run yet; skipping it",
                        path.display()
                    );
                    return Ok(None);
                }
            }
        }
        if let Some(store) = top.get("credsStore") {
            tracing::warn!(
                "auth file {} names credential store {store}, which skiff does not run yet; only entries in \"auths\" are used",
                path.display()
            );
        }
        match top.get("auths") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(_) => return Err(invalid("\"auths\" must be an object".into())),
        }
    };
    for want in wanted {
        if legacy && want.contains('/') {
            continue;
        }
        for (key, entry) in &auths {
            if normalize_key(key, legacy) != *want {
                continue;
            }
            if let Some(creds) = decode_entry(entry, key).map_err(&invalid)? {
                return Ok(Some(creds));
            }
        }
    }
    Ok(None)
}

fn decode_entry(entry: &Value, key: &str) -> std::result::Result<Option<Credentials>, String> {
    let auth = entry.get("auth").and_then(Value::as_str).unwrap_or("");
    if auth.trim().is_empty() {
        if entry.get("identitytoken").is_some() {
            tracing::warn!("auth entry {key:?} holds only an identity token, which skiff does not support yet; log in again with a password");
        }
        return Ok(None);
    }
    let bad = |why: &str| format!("entry {key:?}: \"auth\" {why}");
    let raw = B64
        .decode(auth.trim())
        .map_err(|_| bad("is not valid base64"))?;
    let text = String::from_utf8(raw).map_err(|_| bad("does not decode to text"))?;
    let (username, password) = text
        .split_once(':')
        .ok_or_else(|| bad("does not decode to username:password"))?;
    Ok(Some(Credentials {
        username: username.to_string(),
        password: password.trim_end_matches('\n').to_string(),
    }))
}

fn read_document(path: &Path) -> Result<Value> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(AuthError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    if text.trim().is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    serde_json::from_str(&text).map_err(|e| AuthError::Invalid {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

fn auths_mut<'a>(path: &Path, doc: &'a mut Value) -> Result<&'a mut Map<String, Value>> {
    let invalid = |message: &str| AuthError::Invalid {
        path: path.to_path_buf(),
        message: message.to_string(),
    };
    let top = doc
        .as_object_mut()
        .ok_or_else(|| invalid("expected a JSON object"))?;
    let auths = top
        .entry("auths")
        .or_insert_with(|| Value::Object(Map::new()));
    if auths.is_null() {
        *auths = Value::Object(Map::new());
    }
    auths
        .as_object_mut()
        .ok_or_else(|| invalid("\"auths\" must be an object"))
}

/// Temp file + fsync + rename, mode 0600, so a crash never leaves a torn file and
/// other users never see the secrets; new parent directories get 0700.
fn write_atomic(path: &Path, doc: &Value) -> Result<()> {
    let write_err = |source| AuthError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(write_err)?;
    let mut bytes = serde_json::to_vec_pretty(doc).map_err(|e| write_err(e.into()))?;
    bytes.push(b'\n');
    let name = path
        .file_name()
        .map_or_else(|| OsString::from("auth.json"), |n| n.to_os_string());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mut tmp_name = OsString::from(".");
    tmp_name.push(&name);
    tmp_name.push(format!(".tmp-{}-{nanos}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        if let Ok(d) = fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(write_err)
}

#[cfg(test)]
#[path = "auth_tests.rs"]
mod tests;
