//! `images --filter` and what `images --format '{{...}}'` sees for one row, with
//! podman's field names.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::filters::{glob_match, label_matches, parse_bool, Filters};
use super::format::{ago, go_time, human_size, parse_time};
use super::template::header_name;
use super::Exit;
use crate::storage::images::ImageRecord;
use crate::storage::Store;

const KEYS: &[&str] = &["dangling", "label", "reference", "before", "since", "id"];

/// Parsed image filters, with before/since resolved to creation times.
pub struct ImageFilters {
    filters: Filters,
    before: Vec<i64>,
    since: Vec<i64>,
    dangling: Vec<bool>,
}

fn created(i: &ImageRecord) -> i64 {
    i.created.as_deref().and_then(parse_time).unwrap_or(0)
}

impl ImageFilters {
    pub fn parse(store: &Store, raw: &[String]) -> anyhow::Result<ImageFilters> {
        let filters = Filters::parse(raw, KEYS, "image")?;
        let times = |key: &str| -> anyhow::Result<Vec<i64>> {
            filters
                .get(key)
                .iter()
                .map(|v| {
                    crate::image::pull::find_local(store, v)
                        .map(|i| created(&i))
                        .map_err(|e| Exit::with(125, format!("--filter {key}={v}: {e}")))
                })
                .collect()
        };
        let before = times("before")?;
        let since = times("since")?;
        let dangling = filters
            .get("dangling")
            .iter()
            .map(|v| parse_bool("dangling", v))
            .collect::<anyhow::Result<Vec<bool>>>()?;
        Ok(ImageFilters {
            filters,
            before,
            since,
            dangling,
        })
    }

    pub fn matches(&self, i: &ImageRecord, labels: &BTreeMap<String, String>) -> bool {
        let c = created(i);
        let (mut b, mut s, mut d) = (0, 0, 0);
        self.filters.matches(|k, v| match k {
            "dangling" => {
                d += 1;
                self.dangling.get(d - 1) == Some(&i.names.is_empty())
            }
            "before" => {
                b += 1;
                self.before.get(b - 1).is_some_and(|t| c < *t)
            }
            "since" => {
                s += 1;
                self.since.get(s - 1).is_some_and(|t| c > *t)
            }
            "label" => label_matches(labels, v),
            "id" => i.id.starts_with(v.strip_prefix("sha256:").unwrap_or(v)),
            "reference" => i.names.iter().any(|n| reference_matches(v, n)),
            _ => false,
        })
    }
}

/// podman's reference filter: a glob over the name, with or without the registry, and
/// with the tag optional in the pattern.
fn reference_matches(pattern: &str, name: &str) -> bool {
    let (repo, _tag) = super::image::repo_tag(name);
    let short = name.split_once('/').map(|(_, r)| r).unwrap_or(name);
    let short_repo = repo.split_once('/').map(|(_, r)| r).unwrap_or(&repo);
    let last = repo.rsplit('/').next().unwrap_or(&repo);
    let last_tagged = name.rsplit('/').next().unwrap_or(name);
    [name, short, &repo, short_repo, last, last_tagged]
        .iter()
        .any(|c| glob_match(pattern, c))
}

/// The image's labels from its config.
pub fn labels(store: &Store, i: &ImageRecord) -> BTreeMap<String, String> {
    store
        .read_blob(&i.config_digest())
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| v.get("config")?.get("Labels").cloned())
        .and_then(|l| serde_json::from_value(l).ok())
        .unwrap_or_default()
}

/// How many containers use the image.
pub fn containers_using(store: &Store, id: &str) -> usize {
    store
        .containers()
        .map(|cs| cs.iter().filter(|c| c.image_id == id).count())
        .unwrap_or(0)
}

/// Column titles for `images --format 'table ...'`.
pub fn header(field: &str) -> String {
    match field {
        "ID" | "Id" => "IMAGE ID".into(),
        "CreatedSince" | "Created" => "CREATED".into(),
        "ReadOnly" => "R/O".into(),
        other => header_name(other),
    }
}

/// One row as podman's imageReporter shows it to templates.
pub fn view(
    i: &ImageRecord,
    labels: &BTreeMap<String, String>,
    repo: &str,
    tag: &str,
    no_trunc: bool,
    containers: usize,
) -> Value {
    let c = created(i);
    json!({
        "ID": if no_trunc { format!("sha256:{}", i.id) } else { i.id[..12.min(i.id.len())].to_string() },
        "Id": i.id,
        "Repository": repo,
        "Tag": tag,
        "Digest": i.manifest_digest,
        "Size": human_size(i.size),
        "VirtualSize": i.size,
        "SharedSize": 0,
        "Created": ago(c),
        "CreatedSince": ago(c),
        "CreatedAt": go_time(c),
        "CreatedTime": go_time(c),
        "Labels": labels,
        "Names": i.names,
        "Dangling": i.names.is_empty(),
        "History": i.names.join(", "),
        "Containers": containers,
        "ReadOnly": false,
        "Os": i.os,
        "Arch": i.arch,
    })
}
