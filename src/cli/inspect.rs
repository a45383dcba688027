//! inspect: podman-compatible JSON for containers, images and volumes, or a Go
//! template per object (`-f '{{.State.Pid}}'`).

use clap::Args;
use serde_json::Value;

use super::container::refresh;
use super::inspect_json::{container_json, image_json};
use super::template::Format;
use super::{Ctx, Exit};
use crate::image::pull::find_local;
use crate::storage::Store;

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Only look at this kind of object: container, image or volume
    #[arg(long = "type", short = 't')]
    pub kind: Option<String>,
    /// Output format: json (the default) or a Go template ('{{.State.Status}}')
    #[arg(short, long)]
    pub format: Option<String>,
    #[arg(required = true)]
    pub names: Vec<String>,
}

/// Prints inspected objects as a JSON array or one template result per object. The
/// whole output is built first, so a template error prints nothing but the error.
pub fn print_objects(name: &str, format: Option<&str>, objs: &[Value]) -> anyhow::Result<()> {
    match Format::parse(name, format).map_err(|e| Exit::with(125, e.to_string()))? {
        Format::Template { tpl, .. } => {
            let mut out = String::new();
            for o in objs {
                out.push_str(&tpl.execute(o).map_err(|e| Exit::with(125, e.to_string()))?);
            }
            print!("{out}");
        }
        _ => println!("{}", serde_json::to_string_pretty(objs)?),
    }
    Ok(())
}

pub fn inspect(ctx: &Ctx, a: InspectArgs) -> anyhow::Result<i32> {
    let kind = a.kind.as_deref().unwrap_or("all");
    if !["all", "container", "image", "volume"].contains(&kind) {
        return Err(Exit::with(
            125,
            format!("--type {kind:?}: use container, image or volume"),
        ));
    }
    // A bad template is refused before anything is looked up.
    Format::parse("inspect", a.format.as_deref()).map_err(|e| Exit::with(125, e.to_string()))?;
    let mut store = Store::open(&ctx.paths)?;
    let mut out = Vec::new();
    let mut code = 0;
    for n in &a.names {
        if kind == "all" || kind == "container" {
            if let Ok(c) = store.find_container(n) {
                let c = refresh(&mut store, c)?;
                out.push(container_json(ctx, &c));
                continue;
            }
        }
        if kind == "all" || kind == "image" {
            if let Ok(img) = find_local(&store, n) {
                out.push(image_json(&store, &img)?);
                continue;
            }
        }
        if kind == "all" || kind == "volume" {
            if let Ok(v) = super::volume::inspect_one(&store, n) {
                out.push(v);
                continue;
            }
        }
        eprintln!("Error: no such object: \"{n}\"");
        code = 125;
    }
    print_objects("inspect", a.format.as_deref(), &out)?;
    Ok(code)
}
