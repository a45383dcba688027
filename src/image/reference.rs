//! Image references (`[registry/]repository[:tag][@digest]`), parsed by the same
//! grammar docker and podman use, so a name that works there works here and a name
//! they reject is rejected with a clear reason.

use std::fmt;

/// The registry an unqualified name means once normalized, as in docker.
pub const DEFAULT_REGISTRY: &str = "docker.io";
/// The tag a name without tag or digest gets when normalized.
pub const DEFAULT_TAG: &str = "latest";
/// Namespace docker.io gives to single-component names (`busybox` → `library/busybox`).
pub const OFFICIAL_NAMESPACE: &str = "library";
const LEGACY_DEFAULT_REGISTRY: &str = "index.docker.io";
const NAME_MAX: usize = 255;
const TAG_MAX: usize = 128;

/// Why a string is not an image reference; every variant names the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("invalid reference format: repository name must have at least one component")]
    Empty,
    #[error("invalid reference format {input:?}: repository name must be lowercase")]
    Uppercase { input: String },
    #[error(
        "invalid reference format {input:?}: repository name must not be more than 255 characters"
    )]
    NameTooLong { input: String },
    #[error(
        "invalid reference format {input:?}: invalid tag {tag:?}: use up to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'"
    )]
    InvalidTag { input: String, tag: String },
    #[error("invalid reference format {input:?}: invalid digest {digest:?}: {reason}")]
    InvalidDigest {
        input: String,
        digest: String,
        reason: &'static str,
    },
    #[error("invalid reference format {input:?}: invalid registry {registry:?}: use host[:port], e.g. registry.example.com:5000")]
    InvalidRegistry { input: String, registry: String },
    #[error("invalid reference format {input:?}: {reason}")]
    InvalidFormat { input: String, reason: &'static str },
    #[error("invalid reference format {input:?}: a 64-character hexadecimal string is an image ID, not a repository name")]
    HexName { input: String },
}

/// A fully qualified image reference; `registry` is never empty.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// `host[:port]`, e.g. `docker.io`, `localhost:5000`, `[::1]:5000`.
    pub registry: String,
    /// Path inside the registry, e.g. `library/busybox`.
    pub repository: String,
    pub tag: Option<String>,
    /// `algorithm:hex`, validated.
    pub digest: Option<String>,
}

impl Reference {
    /// `registry/repository`: the key images are grouped and authenticated by.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// What the registry API wants after `/manifests/`: the digest pins content, so
    /// it wins over the tag when both are given (as docker does for `name:tag@digest`).
    pub fn reference_for_registry(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or(DEFAULT_TAG)
    }

    /// The same repository path on another registry (mirrors, location rewrites, push).
    #[allow(dead_code)] // used by push and mirrors (images issue)
    pub fn with_registry(&self, registry: &str) -> Reference {
        Reference {
            registry: registry.to_string(),
            ..self.clone()
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// A name without a registry (`busybox`, `mytools/bb:1`), kept as typed so that
/// registries.conf (aliases, unqualified-search registries) decides where it lives.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ShortName {
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl ShortName {
    /// Places the name on `registry`, applying docker.io's `library/` rule and the
    /// default tag, exactly as if the user had typed `registry/name`.
    pub fn qualify(&self, registry: &str) -> Result<Reference, ReferenceError> {
        let mut repository = self.repository.clone();
        let registry = canonical_registry(registry);
        if registry == DEFAULT_REGISTRY && !repository.contains('/') {
            repository = format!("{OFFICIAL_NAMESPACE}/{repository}");
        }
        let reference = Reference {
            registry: registry.to_string(),
            repository,
            tag: self.tag.clone(),
            digest: self.digest.clone(),
        };
        check_name_len(&reference, &self.to_string())?;
        Ok(with_default_tag(reference))
    }
}

impl fmt::Display for ShortName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Result of [`parse_short`]: either the user named a registry, or registries.conf
/// must decide.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ShortOrFull {
    /// Normalized as by [`parse_normalized`] (docker.io `library/`, default tag).
    Full(Reference),
    Short(ShortName),
}

/// Parses like `docker pull`: names without a registry go to docker.io, and a
/// missing tag becomes `latest`.
pub fn parse_normalized(s: &str) -> Result<Reference, ReferenceError> {
    parse_normalized_named(s).map(with_default_tag)
}

/// As [`parse_normalized`] but without adding `latest`, for commands where a bare
/// repository means "any tag" (e.g. `images REPO`, `rmi` matching).
pub fn parse_normalized_named(s: &str) -> Result<Reference, ReferenceError> {
    if s.len() == 64 && is_lower_hex(s) {
        return Err(ReferenceError::HexName {
            input: s.to_string(),
        });
    }
    let parts = split(s)?;
    let registry = canonical_registry(parts.domain.unwrap_or(DEFAULT_REGISTRY));
    let repository = if registry == DEFAULT_REGISTRY && !parts.path.contains('/') {
        format!("{OFFICIAL_NAMESPACE}/{}", parts.path)
    } else {
        parts.path.to_string()
    };
    let reference = Reference {
        registry: registry.to_string(),
        repository,
        tag: parts.tag.map(str::to_string),
        digest: parts.digest.map(str::to_string),
    };
    check_name_len(&reference, s)?;
    Ok(reference)
}

/// Tells a fully qualified name from a short name the way podman does: the first
/// `/`-separated component is a registry only if it contains `.` or `:` or is
/// `localhost`. Qualified names come back normalized; short names as typed.
pub fn parse_short(s: &str) -> Result<ShortOrFull, ReferenceError> {
    if s.len() == 64 && is_lower_hex(s) {
        return Err(ReferenceError::HexName {
            input: s.to_string(),
        });
    }
    let parts = split(s)?;
    if parts.domain.is_some() {
        return parse_normalized(s).map(ShortOrFull::Full);
    }
    if parts.path.len() > NAME_MAX {
        return Err(ReferenceError::NameTooLong {
            input: s.to_string(),
        });
    }
    Ok(ShortOrFull::Short(ShortName {
        repository: parts.path.to_string(),
        tag: parts.tag.map(str::to_string),
        digest: parts.digest.map(str::to_string),
    }))
}

/// Whether `s` could abbreviate an image or container ID (3 to 64 lowercase hex
/// characters). Such strings can also be valid short names (`abc`, `cafe`), so
/// callers try local IDs first, as podman does.
#[allow(dead_code)] // image filters (ecosystem issue)
pub fn is_image_id_prefix(s: &str) -> bool {
    (3..=64).contains(&s.len()) && is_lower_hex(s)
}

/// Returns the hex part of an ID given as `sha256:<hex>` or bare `<hex>` (3..=64
/// lowercase hex), so `inspect sha256:abc…` and `inspect abc…` find the same image.
#[allow(dead_code)] // image filters (ecosystem issue)
pub fn image_id_prefix(s: &str) -> Option<&str> {
    let hex = s.strip_prefix("sha256:").unwrap_or(s);
    is_image_id_prefix(hex).then_some(hex)
}

/// Checks a digest string (`sha256:<64 hex>`, `sha384:<96>`, `sha512:<128>`);
/// the error text explains what is wrong.
pub fn validate_digest(digest: &str) -> Result<(), &'static str> {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return Err("expected algorithm:hex, e.g. sha256:<64 hex digits>");
    };
    if !valid_algorithm(algorithm) {
        return Err("malformed digest algorithm");
    }
    let want = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return Err("unsupported digest algorithm (use sha256, sha384 or sha512)"),
    };
    if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("the encoded part must be hexadecimal");
    }
    if hex.len() != want {
        return Err("wrong length for this digest algorithm");
    }
    if !is_lower_hex(hex) {
        return Err("the hexadecimal part must be lowercase");
    }
    Ok(())
}

fn with_default_tag(mut r: Reference) -> Reference {
    if r.tag.is_none() && r.digest.is_none() {
        r.tag = Some(DEFAULT_TAG.to_string());
    }
    r
}

fn canonical_registry(registry: &str) -> &str {
    if registry == LEGACY_DEFAULT_REGISTRY {
        DEFAULT_REGISTRY
    } else {
        registry
    }
}

fn check_name_len(r: &Reference, input: &str) -> Result<(), ReferenceError> {
    if r.registry.len() + 1 + r.repository.len() > NAME_MAX {
        return Err(ReferenceError::NameTooLong {
            input: input.to_string(),
        });
    }
    Ok(())
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// True when the first path component names a registry host (podman's rule).
pub(crate) fn is_domain_like(component: &str) -> bool {
    component.contains('.') || component.contains(':') || component == "localhost"
}

struct Parts<'a> {
    domain: Option<&'a str>,
    path: &'a str,
    tag: Option<&'a str>,
    digest: Option<&'a str>,
}

fn split(input: &str) -> Result<Parts<'_>, ReferenceError> {
    let invalid = |reason| ReferenceError::InvalidFormat {
        input: input.to_string(),
        reason,
    };
    if input.is_empty() {
        return Err(ReferenceError::Empty);
    }
    let (name_tag, digest) = match input.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (input, None),
    };
    if let Some(d) = digest {
        validate_digest(d).map_err(|reason| ReferenceError::InvalidDigest {
            input: input.to_string(),
            digest: d.to_string(),
            reason,
        })?;
    }
    // A ':' followed by no '/' separates the tag; any other ':' belongs to a port.
    let (name, tag) = match name_tag.rfind(':') {
        Some(i) if !name_tag[i + 1..].contains(['/', ']']) => {
            (&name_tag[..i], Some(&name_tag[i + 1..]))
        }
        _ => (name_tag, None),
    };
    if let Some(t) = tag {
        if !valid_tag(t) {
            return Err(ReferenceError::InvalidTag {
                input: input.to_string(),
                tag: t.to_string(),
            });
        }
    }
    if name.is_empty() {
        return Err(invalid("missing repository name"));
    }
    let (domain, path) = match name.split_once('/') {
        Some((first, rest)) if is_domain_like(first) => (Some(first), rest),
        _ => (None, name),
    };
    if let Some(d) = domain {
        if !valid_domain(d) {
            return Err(ReferenceError::InvalidRegistry {
                input: input.to_string(),
                registry: d.to_string(),
            });
        }
    }
    if path.is_empty() {
        return Err(invalid("missing repository name after the registry"));
    }
    let mut uppercase = false;
    for component in path.split('/') {
        if valid_path_component(component) {
            continue;
        }
        if valid_path_component(&component.to_ascii_lowercase()) {
            uppercase = true;
        } else if component.is_empty() {
            return Err(invalid("empty path component (doubled or trailing '/')"));
        } else {
            return Err(invalid(
                "repository path components are lowercase letters and digits, separated by '.', '_', '__' or '-'",
            ));
        }
    }
    if uppercase {
        return Err(ReferenceError::Uppercase {
            input: input.to_string(),
        });
    }
    if name.len() > NAME_MAX {
        return Err(ReferenceError::NameTooLong {
            input: input.to_string(),
        });
    }
    Ok(Parts {
        domain,
        path,
        tag,
        digest,
    })
}

fn valid_tag(t: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = t.as_bytes();
    match bytes.split_first() {
        Some((first, rest)) => {
            t.len() <= TAG_MAX
                && word(*first)
                && rest.iter().all(|&b| word(b) || b == b'.' || b == b'-')
        }
        None => false,
    }
}

/// `[a-z0-9]+` runs separated by exactly one of `.`, `_`, `__` or one or more `-`.
fn valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    let mut i = 0;
    loop {
        let start = i;
        while i < b.len() && alnum(b[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == b.len() {
            return true;
        }
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
    }
}

/// `host[:port]` where host is a DNS name, IPv4 address or `[ipv6]`.
fn valid_domain(d: &str) -> bool {
    let (host_ok, rest) = if let Some(inner) = d.strip_prefix('[') {
        match inner.split_once(']') {
            Some((addr, rest)) => (
                !addr.is_empty() && addr.bytes().all(|b| b.is_ascii_hexdigit() || b == b':'),
                rest,
            ),
            None => return false,
        }
    } else {
        let (host, rest) = match d.find(':') {
            Some(i) => (&d[..i], &d[i..]),
            None => (d, ""),
        };
        (host.split('.').all(valid_domain_component), rest)
    };
    if !host_ok {
        return false;
    }
    match rest.strip_prefix(':') {
        Some(port) => !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()),
        None => rest.is_empty(),
    }
}

fn valid_domain_component(c: &str) -> bool {
    let b = c.as_bytes();
    match (b.first(), b.last()) {
        (Some(f), Some(l)) => {
            f.is_ascii_alphanumeric()
                && l.is_ascii_alphanumeric()
                && b.iter().all(|x| x.is_ascii_alphanumeric() || *x == b'-')
        }
        _ => false,
    }
}

fn valid_algorithm(a: &str) -> bool {
    !a.is_empty()
        && a.split(['+', '.', '-', '_']).all(|part| {
            let mut bytes = part.bytes();
            matches!(bytes.next(), Some(f) if f.is_ascii_alphabetic())
                && bytes.all(|b| b.is_ascii_alphanumeric())
        })
}

#[cfg(test)]
#[path = "reference_tests.rs"]
mod tests;
