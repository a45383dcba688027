//! ps: the container list, with podman's columns and JSON.

use clap::Args;

use super::container::refresh;
use super::format::{ago, human_duration, table};
use super::{Ctx, Exit};
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
    /// Output format: json
    #[arg(long)]
    pub format: Option<String>,
}

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

pub fn ps(ctx: &Ctx, a: PsArgs) -> anyhow::Result<i32> {
    let mut store = Store::open(&ctx.paths)?;
    let mut list = Vec::new();
    for c in store.containers()? {
        let c = refresh(&mut store, c)?;
        if a.all || matches!(c.state, State::Running | State::Paused) {
            list.push(c);
        }
    }
    if a.format.as_deref() == Some("json") {
        let v: Vec<serde_json::Value> = list.iter().map(ps_json).collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    } else if let Some(f) = &a.format {
        return Err(Exit::with(
            125,
            format!("--format {f:?} is not supported yet: use json"),
        ));
    }
    let id = |c: &ContainerRecord| {
        if a.no_trunc {
            c.id.clone()
        } else {
            c.id[..12].to_string()
        }
    };
    if a.quiet {
        for c in &list {
            println!("{}", id(c));
        }
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|c| {
            let mut cmd = c.command.join(" ");
            if !a.no_trunc && cmd.chars().count() > 20 {
                cmd = cmd.chars().take(17).collect::<String>() + "...";
            }
            vec![
                id(c),
                c.image_name.clone(),
                cmd,
                ago(c.created),
                status_text(c),
                String::new(),
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

fn ps_json(c: &ContainerRecord) -> serde_json::Value {
    serde_json::json!({
        "Id": c.id,
        "Names": [c.name],
        "Image": c.image_name,
        "ImageID": c.image_id,
        "Command": c.command,
        "Created": c.created,
        "State": c.state.as_str(),
        "Status": status_text(c),
        "ExitCode": c.exit_code.unwrap_or(0),
        "Exited": c.state == State::Exited,
        "Pid": c.pid.unwrap_or(0),
    })
}
