//! Reading one registries.conf file (v1 or v2 format) and checking it the way
//! podman does, so a file podman rejects is not silently half-applied here.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::{Mirror, MirrorUse, RegistriesError, RegistryEntry, Result, ShortNameMode};
use crate::image::reference::{parse_short, ShortOrFull};

#[derive(Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
struct FileToml {
    unqualified_search_registries: Option<Vec<String>>,
    short_name_mode: Option<String>,
    #[serde(default)]
    registry: Vec<RegistryToml>,
    #[serde(default)]
    aliases: BTreeMap<String, String>,
    /// v1 format: `[registries.search]`, `[registries.insecure]`, `[registries.block]`.
    registries: Option<V1Toml>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
struct RegistryToml {
    #[serde(default)]
    prefix: String,
    #[serde(default)]
    location: String,
    #[serde(default)]
    insecure: bool,
    #[serde(default)]
    blocked: bool,
    #[serde(default)]
    mirror_by_digest_only: bool,
    #[serde(default)]
    pull_from_mirror: String,
    #[serde(default)]
    mirror: Vec<MirrorToml>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
struct MirrorToml {
    #[serde(default)]
    location: String,
    #[serde(default)]
    insecure: bool,
    #[serde(default)]
    pull_from_mirror: String,
}

#[derive(Deserialize, Default)]
struct V1Toml {
    #[serde(default)]
    search: V1List,
    #[serde(default)]
    insecure: V1List,
    #[serde(default)]
    block: V1List,
}

#[derive(Deserialize, Default)]
struct V1List {
    #[serde(default)]
    registries: Vec<String>,
}

pub(super) struct FileConfig {
    pub(super) search: Option<Vec<String>>,
    pub(super) mode: Option<ShortNameMode>,
    pub(super) aliases: BTreeMap<String, String>,
    pub(super) registries: Vec<RegistryEntry>,
}

pub(super) fn parse_file(path: &Path, text: &str) -> Result<FileConfig> {
    let invalid = |message: String| RegistriesError::Invalid {
        path: path.to_path_buf(),
        message,
    };
    let toml: FileToml = toml::from_str(text).map_err(|e| {
        let place = e.span().map(|s| line_col(text, s.start));
        invalid(match place {
            Some((line, col)) => format!("line {line}, column {col}: {}", e.message().trim()),
            None => e.message().trim().to_string(),
        })
    })?;
    let v1 = toml.registries.unwrap_or_default();
    let v1_used = !(v1.search.registries.is_empty()
        && v1.insecure.registries.is_empty()
        && v1.block.registries.is_empty());
    let v2_used = toml.unqualified_search_registries.is_some()
        || !toml.registry.is_empty()
        || !toml.aliases.is_empty()
        || toml.short_name_mode.is_some();
    if v1_used && v2_used {
        return Err(invalid(
            "mixes the v1 format ([registries.*]) with the v2 format; keep only one".into(),
        ));
    }
    let mut raw = toml.registry;
    let mut search = toml.unqualified_search_registries;
    if v1_used {
        search = Some(v1.search.registries);
        let mut by_location: Vec<RegistryToml> = Vec::new();
        let lists = [(v1.block.registries, true), (v1.insecure.registries, false)];
        for (list, is_block) in lists {
            for location in list {
                let location = location.trim_end_matches('/').to_string();
                let pos = match by_location.iter().position(|r| r.location == location) {
                    Some(pos) => pos,
                    None => {
                        by_location.push(RegistryToml {
                            location,
                            ..Default::default()
                        });
                        by_location.len() - 1
                    }
                };
                if is_block {
                    by_location[pos].blocked = true;
                } else {
                    by_location[pos].insecure = true;
                }
            }
        }
        raw = by_location;
    }
    let search = search
        .map(|list| {
            list.iter()
                .map(|s| check_search_entry(s).map_err(&invalid))
                .collect::<Result<Vec<_>>>()
        })
        .transpose()?;
    let mode = match toml.short_name_mode.as_deref() {
        None | Some("") => None,
        Some("enforcing") => Some(ShortNameMode::Enforcing),
        Some("permissive") => Some(ShortNameMode::Permissive),
        Some("disabled") => Some(ShortNameMode::Disabled),
        Some(other) => {
            return Err(invalid(format!(
            "short-name-mode {other:?} is not one of \"enforcing\", \"permissive\", \"disabled\""
        )))
        }
    };
    for (name, value) in &toml.aliases {
        check_alias(name, value).map_err(&invalid)?;
    }
    let mut registries: Vec<RegistryEntry> = Vec::new();
    for r in raw {
        let entry = check_registry(r, path).map_err(&invalid)?;
        // Within one file the first table for a prefix wins, as in podman.
        if !registries.iter().any(|e| e.prefix == entry.prefix) {
            registries.push(entry);
        }
    }
    Ok(FileConfig {
        search,
        mode,
        aliases: toml.aliases,
        registries,
    })
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text.as_bytes()[..offset.min(text.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let col = before.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
    (line, col)
}

fn check_location(s: &str, what: &str) -> std::result::Result<String, String> {
    let trimmed = s.trim_end_matches('/');
    if trimmed.starts_with("http://") || trimmed.starts_with("https://") {
        return Err(format!(
            "{what} {s:?}: URI schemes are not supported, write host[:port][/path]"
        ));
    }
    Ok(trimmed.to_string())
}

fn check_search_entry(s: &str) -> std::result::Result<String, String> {
    let host = check_location(s, "unqualified-search-registries entry")?;
    let is_host = !host.contains('/')
        && matches!(parse_short(&format!("{host}/x")), Ok(ShortOrFull::Full(_)));
    if is_host {
        Ok(host)
    } else {
        Err(format!(
            "unqualified-search-registries entry {s:?} is not a registry host[:port] (a name with '.' or ':', or localhost)"
        ))
    }
}

fn check_alias(name: &str, value: &str) -> std::result::Result<(), String> {
    match parse_short(name) {
        Ok(ShortOrFull::Short(s)) if s.tag.is_none() && s.digest.is_none() => {}
        _ => {
            return Err(format!(
                "alias {name:?} must be a short name without registry, tag or digest"
            ))
        }
    }
    if value.is_empty() {
        return Ok(());
    }
    let bare_name = !value.contains(['@']) && !value.rsplit('/').next().unwrap_or("").contains(':');
    match parse_short(value) {
        Ok(ShortOrFull::Full(_)) if bare_name => Ok(()),
        _ => Err(format!(
            "alias {name:?} = {value:?}: the value must be a fully qualified name without tag or digest"
        )),
    }
}

fn check_registry(r: RegistryToml, path: &Path) -> std::result::Result<RegistryEntry, String> {
    let location = check_location(&r.location, "location")?;
    let prefix = if r.prefix.is_empty() {
        if location.is_empty() {
            return Err("a [[registry]] table sets neither prefix nor location".into());
        }
        location.clone()
    } else {
        check_location(&r.prefix, "prefix")?
    };
    let wildcard = prefix.starts_with("*.");
    if wildcard && prefix.contains(['/', '@', ':']) {
        return Err(format!(
            "wildcard prefix {prefix:?} must have the form *.example.com"
        ));
    }
    if location.is_empty() && !wildcard {
        return Err(format!(
            "[[registry]] {prefix:?} has no location; only a wildcard prefix (*.example.com) may omit it"
        ));
    }
    if !r.pull_from_mirror.is_empty() {
        return Err(format!(
            "pull-from-mirror is only valid in a [[registry.mirror]] table, not in [[registry]] {prefix:?}"
        ));
    }
    let mut mirrors = Vec::new();
    for m in r.mirror {
        let location = check_location(&m.location, "mirror location")?;
        if location.is_empty() {
            return Err(format!(
                "a mirror of [[registry]] {prefix:?} has no location"
            ));
        }
        let pull_from_mirror = match m.pull_from_mirror.as_str() {
            "" | "all" => MirrorUse::All,
            "digest-only" => MirrorUse::DigestOnly,
            "tag-only" => MirrorUse::TagOnly,
            other => {
                return Err(format!(
                    "pull-from-mirror {other:?} of mirror {location:?} is not one of \"all\", \"digest-only\", \"tag-only\""
                ))
            }
        };
        if r.mirror_by_digest_only && pull_from_mirror != MirrorUse::All {
            return Err(format!(
                "[[registry]] {prefix:?} sets mirror-by-digest-only and its mirror {location:?} sets pull-from-mirror; use one"
            ));
        }
        mirrors.push(Mirror {
            location,
            insecure: m.insecure,
            pull_from_mirror,
        });
    }
    Ok(RegistryEntry {
        prefix,
        location,
        insecure: r.insecure,
        blocked: r.blocked,
        mirror_by_digest_only: r.mirror_by_digest_only,
        mirrors,
        source: path.to_path_buf(),
    })
}
