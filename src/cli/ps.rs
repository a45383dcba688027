//! ps: the container list, with podman's columns, JSON, Go templates and filters.

use clap::Args;
use serde_json::{json, Value};

use super::container::refresh;
use super::filters::{label_matches, name_matches, Filters};
use super::format::{ago, go_time, human_duration, table};
use super::template::{header_name, Format};
use super::{Ctx, Exit};
use crate::runtime::ContainerConfig;
use crate::storage::containers::{ContainerRecord, State};
use crate::storage::Store;

#[derive(Debug, Args)]
pub struct PsArgs {
    /// Show all containers, not only running ones
    #[arg(short, long)]
    pub all: bool,
    /// Show only container IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Do not truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Output format: json, a Go template ('{{.ID}} {{.Names}}'), or 'table TEMPLATE'
    #[arg(long)]
    pub format: Option<String>,
    /// Filter output: name=, status=, label=, ancestor=, id=, exited= (shows all
    /// containers that match)
    #[arg(short, long, value_name = "KEY=VALUE")]
    pub filter: Vec<String>,
    /// Show only the latest created container, in any state (`ps -lq` in docker scripts)
    #[arg(short = 'l', long)]
    pub latest: bool,
    /// Show the N latest created containers, in any state
    #[arg(short = 'n', long, value_name = "N")]
    pub last: Option<usize>,
}

const FILTERS: &[&str] = &["name", "status", "label", "ancestor", "id", "exited"];
const STATUSES: &[&str] = &[
    "created",
    "running",
    "paused",
    "exited",
    "stopped",
    "unknown",
    "configured",
    "removing",
];

pub(super) fn status_text(c: &ContainerRecord) -> String {
    let now = crate::storage::now();
    match c.state {
        State::Created => "Created".into(),
        State::Running => format!("Up {}", human_duration(now - c.started.unwrap_or(now))),
        State::Paused => "Paused".into(),
        State::Exited => format!(
            "Exited ({}) {} ago",
            c.exit_code.unwrap_or(0),
            human_duration(now - c.finished.unwrap_or(now))
        ),
    }
}

fn check_filters(f: &Filters) -> anyhow::Result<()> {
    for s in f.get("status") {
        if !STATUSES.contains(&s.as_str()) {
            return Err(Exit::with(
                125,
                format!(
                    "unknown container state {s:?} in --filter status: use one of {}",
                    STATUSES.join(", ")
                ),
            ));
        }
    }
    for e in f.get("exited") {
        if e.parse::<i32>().is_err() {
            return Err(Exit::with(
                125,
                format!("exited code {e:?} in --filter exited is not a number"),
            ));
        }
    }
    Ok(())
}

fn labels(c: &ContainerRecord) -> std::collections::BTreeMap<String, String> {
    serde_json::from_str::<ContainerConfig>(&c.config)
        .map(|x| x.labels)
        .unwrap_or_default()
}

fn matches(f: &Filters, c: &ContainerRecord) -> bool {
    f.matches(|k, v| match k {
        "name" => name_matches(v, &c.name),
        "id" => c.id.starts_with(v),
        "status" => match v {
            "stopped" => c.state == State::Exited,
            s => c.state.as_str() == s,
        },
        "exited" => c.state == State::Exited && v.parse::<i32>().ok() == c.exit_code,
        "label" => label_matches(&labels(c), v),
        "ancestor" => {
            let id = v.strip_prefix("sha256:").unwrap_or(v);
            (id.len() >= 3 && c.image_id.starts_with(id))
                || c.image_name == v
                || crate::image::reference::parse_normalized(v)
                    .is_ok_and(|r| r.to_string() == c.image_name)
                || c.image_name.ends_with(&format!("/{v}"))
                || c.image_name.ends_with(&format!("/{v}:latest"))
        }
        _ => false,
    })
}

/// Column titles for `table` templates (podman's).
fn ps_header(field: &str) -> String {
    match field {
        "ID" | "Id" => "CONTAINER ID".into(),
        "CreatedHuman" => "CREATED".into(),
        other => header_name(other),
    }
}

pub fn ps(ctx: &Ctx, a: PsArgs) -> anyhow::Result<i32> {
    let filters = Filters::parse(&a.filter, FILTERS, "ps")?;
    check_filters(&filters)?;
    let format =
        Format::parse("ps", a.format.as_deref()).map_err(|e| Exit::with(125, e.to_string()))?;
    let mut store = Store::open(&ctx.paths)?;
    let mut list = Vec::new();
    for c in store.containers()? {
        let c = refresh(&mut store, c)?;
        let shown = if filters.is_empty() {
            a.all
                || a.latest
                || a.last.is_some()
                || matches!(c.state, State::Running | State::Paused)
        } else {
            matches(&filters, &c)
        };
        if shown {
            list.push(c);
        }
    }
    if let Some(n) = a.last.or(a.latest.then_some(1)) {
        list.sort_by_key(|c| std::cmp::Reverse(c.created));
        list.truncate(n);
    }
    let id = |c: &ContainerRecord| {
        if a.no_trunc {
            c.id.clone()
        } else {
            c.id[..12.min(c.id.len())].to_string()
        }
    };
    if a.quiet {
        for c in &list {
            println!("{}", id(c));
        }
        return Ok(0);
    }
    match &format {
        Format::Json => {
            let v: Vec<Value> = list.iter().map(ps_json).collect();
            println!("{}", serde_json::to_string_pretty(&v)?);
            return Ok(0);
        }
        Format::Template { .. } => {
            let items: Vec<Value> = list.iter().map(|c| ps_view(c, a.no_trunc)).collect();
            let out = format
                .render(&items, &ps_header)
                .map_err(|e| Exit::with(125, e.to_string()))?;
            print!("{out}");
            return Ok(0);
        }
        Format::Default => {}
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|c| {
            vec![
                id(c),
                c.image_name.clone(),
                command(c, a.no_trunc),
                ago(c.created),
                status_text(c),
                crate::network::portspec::ps_column(&ports(c)),
                c.name.clone(),
            ]
        })
        .collect();
    table(
        &[
            "CONTAINER ID",
            "IMAGE",
            "COMMAND",
            "CREATED",
            "STATUS",
            "PORTS",
            "NAMES",
        ],
        &rows,
    );
    Ok(0)
}

/// The container's published ports.
fn ports(c: &ContainerRecord) -> Vec<crate::network::portspec::PortMapping> {
    serde_json::from_str::<ContainerConfig>(&c.config)
        .map(|x| x.ports)
        .unwrap_or_default()
}

fn command(c: &ContainerRecord, no_trunc: bool) -> String {
    let cmd = c.command.join(" ");
    if !no_trunc && cmd.chars().count() > 20 {
        cmd.chars().take(17).collect::<String>() + "..."
    } else {
        cmd
    }
}

/// Container destinations of the user's volumes and bind mounts.
fn mount_destinations(c: &ContainerRecord) -> Vec<String> {
    let Ok(cfg) = serde_json::from_str::<ContainerConfig>(&c.config) else {
        return Vec::new();
    };
    let o = &cfg.options;
    let mut v: Vec<String> = o
        .volumes
        .iter()
        .filter_map(|v| {
            let parts: Vec<&str> = v.split(':').collect();
            match parts.as_slice() {
                [one] => Some(one.to_string()),
                [_, d, ..] => Some(d.to_string()),
                _ => None,
            }
        })
        .collect();
    v.extend(o.mounts.iter().filter_map(|m| {
        crate::runtime::mount_flag::parse_mount(m)
            .ok()
            .map(|f| f.destination)
    }));
    v
}

/// What `{{...}}` sees for one container: podman's psReporter fields.
fn ps_view(c: &ContainerRecord, no_trunc: bool) -> Value {
    let cfg = serde_json::from_str::<ContainerConfig>(&c.config).ok();
    let network = cfg
        .as_ref()
        .and_then(|x| x.options.network.clone())
        .unwrap_or_else(|| "none".into());
    let status = status_text(c);
    json!({
        "ID": if no_trunc { c.id.clone() } else { c.id[..12.min(c.id.len())].to_string() },
        "Id": c.id,
        "Names": c.name,
        "Image": c.image_name,
        "ImageID": if no_trunc { c.image_id.clone() } else { c.image_id[..12.min(c.image_id.len())].to_string() },
        "Command": command(c, no_trunc),
        "Status": status,
        "State": status,
        "Ports": crate::network::portspec::ps_column(&ports(c)),
        "CreatedAt": go_time(c.created),
        "Created": go_time(c.created),
        "CreatedHuman": ago(c.created),
        "RunningFor": ago(c.created),
        "StartedAt": c.started.unwrap_or(0),
        "ExitedAt": c.finished.unwrap_or(0),
        "Exited": c.state == State::Exited,
        "ExitCode": c.exit_code.unwrap_or(0),
        "Pid": c.pid.unwrap_or(0),
        "Labels": cfg.as_ref().map(|x| x.labels.clone()).unwrap_or_default(),
        "Mounts": mount_destinations(c),
        "Networks": [network],
        "AutoRemove": cfg.as_ref().is_some_and(|x| x.options.rm),
        "Restarts": c.restarts,
        "Size": Value::Null,
        "Pod": "",
        "PodName": "",
        "IsInfra": false,
        "Namespaces": {},
    })
}

fn ps_json(c: &ContainerRecord) -> Value {
    let cfg = serde_json::from_str::<ContainerConfig>(&c.config).ok();
    json!({
        "Id": c.id,
        "Names": [c.name],
        "Image": c.image_name,
        "ImageID": c.image_id,
        "Command": c.command,
        "Created": c.created,
        "CreatedAt": ago(c.created),
        "State": c.state.as_str(),
        "Status": status_text(c),
        "ExitCode": c.exit_code.unwrap_or(0),
        "Exited": c.state == State::Exited,
        "ExitedAt": c.finished.unwrap_or(0),
        "StartedAt": c.started.unwrap_or(0),
        "Pid": c.pid.unwrap_or(0),
        "Labels": cfg.as_ref().map(|x| x.labels.clone()).unwrap_or_default(),
        "Mounts": mount_destinations(c),
        "AutoRemove": cfg.as_ref().is_some_and(|x| x.options.rm),
        "Restarts": c.restarts,
        "Ports": crate::network::portspec::ps_json(&ports(c)),
        "Networks": [],
        "Namespaces": {},
        "Pod": "",
        "PodName": "",
        "IsInfra": false,
        "Size": Value::Null,
    })
}
