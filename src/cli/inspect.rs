//! inspect: podman-compatible JSON for containers and images.

use clap::Args;

use super::container::refresh;
use super::format::rfc3339;
use super::{Ctx, Exit};
use crate::image::pull::find_local;
use crate::runtime::ContainerConfig;
use crate::storage::containers::{ContainerRecord, State};
use crate::storage::Store;

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Only look at this kind of object: container or image
    #[arg(long = "type", short = 't')]
    pub kind: Option<String>,
    #[arg(required = true)]
    pub names: Vec<String>,
}

fn container_json(
    store: &Store,
    ctx: &Ctx,
    c: &ContainerRecord,
) -> anyhow::Result<serde_json::Value> {
    let cfg: Option<ContainerConfig> = serde_json::from_str(&c.config).ok();
    let spec = crate::runtime::bundle::load_spec(&ctx.paths.container_dir(&c.id)).ok();
    let process = spec.as_ref().and_then(|s| s.process().clone());
    let mounts: Vec<serde_json::Value> = spec
        .as_ref()
        .and_then(|s| s.mounts().clone())
        .unwrap_or_default()
        .iter()
        .filter(|m| {
            m.typ().as_deref() == Some("bind")
                && !m.source().as_ref().is_some_and(|s| {
                    s.starts_with(ctx.paths.container_dir(&c.id)) || s.as_os_str() == "/sys"
                })
        })
        .map(|m| {
            let opts = m.options().clone().unwrap_or_default();
            serde_json::json!({
                "Type": "bind",
                "Source": m.source(),
                "Destination": m.destination(),
                "Options": opts,
                "RW": !opts.iter().any(|o| o == "ro"),
            })
        })
        .collect();
    let o = cfg.as_ref().map(|c| c.options.clone()).unwrap_or_default();
    let _ = store;
    Ok(serde_json::json!({
        "Id": c.id,
        "Created": rfc3339(c.created),
        "Path": c.command.first(),
        "Args": c.command.iter().skip(1).collect::<Vec<_>>(),
        "State": {
            "Status": c.state.as_str(),
            "Running": c.state == State::Running,
            "Paused": c.state == State::Paused,
            "Restarting": false,
            "OOMKilled": false,
            "Dead": false,
            "Pid": c.pid.unwrap_or(0),
            "ExitCode": c.exit_code.unwrap_or(0),
            "Error": "",
            "StartedAt": c.started.map(rfc3339).unwrap_or_default(),
            "FinishedAt": c.finished.map(rfc3339).unwrap_or_default(),
        },
        "Image": c.image_id,
        "ImageName": c.image_name,
        "Rootfs": "",
        "Name": c.name,
        "RestartCount": c.restarts,
        "Driver": "overlay",
        "Mounts": mounts,
        "Config": {
            "Hostname": spec.as_ref().and_then(|s| s.hostname().clone()).unwrap_or_default(),
            "User": o.user.clone().unwrap_or_default(),
            "Env": process.as_ref().and_then(|p| p.env().clone()).unwrap_or_default(),
            "Cmd": c.command,
            "Image": c.image_name,
            "WorkingDir": process.as_ref().map(|p| p.cwd().display().to_string()).unwrap_or_default(),
            "Entrypoint": o.entrypoint,
            "Tty": false,
            "OpenStdin": o.interactive,
            "Labels": cfg.as_ref().map(|c| c.labels.clone()).unwrap_or_default(),
            "Annotations": cfg.as_ref().map(|c| c.annotations.clone()).unwrap_or_default(),
        },
        "HostConfig": {
            "NetworkMode": o.network.clone().unwrap_or_else(|| "none".into()),
            "ReadonlyRootfs": o.read_only,
            "AutoRemove": o.rm,
            "Binds": o.volumes,
        },
        "NetworkSettings": { "Ports": {} },
    }))
}

fn image_json(
    store: &Store,
    img: &crate::storage::images::ImageRecord,
) -> anyhow::Result<serde_json::Value> {
    let config: serde_json::Value =
        serde_json::from_slice(&store.read_blob(&img.config_digest())?)?;
    let repo_digests: Vec<String> = img
        .names
        .iter()
        .map(|n| {
            let repo = n
                .rsplit_once(':')
                .filter(|(_, t)| !t.contains('/'))
                .map(|(r, _)| r)
                .unwrap_or(n);
            format!("{repo}@{}", img.manifest_digest)
        })
        .collect();
    Ok(serde_json::json!({
        "Id": img.id,
        "Digest": img.manifest_digest,
        "RepoTags": img.names,
        "RepoDigests": repo_digests,
        "Created": img.created,
        "Config": config.get("config").cloned().unwrap_or(serde_json::json!({})),
        "Architecture": img.arch,
        "Os": img.os,
        "Size": img.size,
        "RootFS": {"Type": "layers", "Layers": img.layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>()},
        "History": config.get("history").cloned().unwrap_or(serde_json::json!([])),
        "ManifestType": img.manifest_media_type,
    }))
}

pub fn inspect(ctx: &Ctx, a: InspectArgs) -> anyhow::Result<i32> {
    let mut store = Store::open(&ctx.paths)?;
    let kind = a.kind.as_deref().unwrap_or("all");
    if !["all", "container", "image"].contains(&kind) {
        return Err(Exit::with(
            125,
            format!("--type {kind:?}: use container or image"),
        ));
    }
    let mut out = Vec::new();
    let mut code = 0;
    for n in &a.names {
        if kind != "image" {
            if let Ok(c) = store.find_container(n) {
                let c = refresh(&mut store, c)?;
                out.push(container_json(&store, ctx, &c)?);
                continue;
            }
        }
        if kind != "container" {
            if let Ok(img) = find_local(&store, n) {
                out.push(image_json(&store, &img)?);
                continue;
            }
        }
        eprintln!("Error: no such object: \"{n}\"");
        code = 125;
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(code)
}
