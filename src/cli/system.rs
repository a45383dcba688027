//! unshare, version, info.

use std::os::unix::process::CommandExt;

use clap::Args;

use super::image::user_mapping;
use super::template::{header_name, Format};
use super::{Ctx, Exit};

#[derive(Debug, Args)]
pub struct UnshareArgs {
    /// Command to run (default: $SHELL)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct VersionArgs {
    /// Output format: json or a Go template ('{{.Client.Version}}')
    #[arg(short, long)]
    pub format: Option<String>,
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Output format: json or a Go template ('{{.Store.GraphRoot}}')
    #[arg(short, long)]
    pub format: Option<String>,
}

pub fn unshare(ctx: &Ctx, a: UnshareArgs) -> anyhow::Result<i32> {
    if !ctx.paths.rootless {
        return Err(Exit::with(125, "please use unshare with rootless"));
    }
    let mapping = user_mapping(ctx)?;
    let mut args = ctx.self_args();
    args.push("__unshare".into());
    args.extend(a.command.iter().map(Into::into));
    let mut h = crate::userns::spawn_helper(
        std::path::Path::new("/proc/self/exe"),
        &args,
        mapping.as_ref(),
        |_| {},
    )?;
    let status = h.child.wait()?;
    Ok(status.code().unwrap_or(125))
}

/// Inside the namespace: exec the user's command with the store paths in the env.
pub fn unshare_helper(ctx: &Ctx, command: &[String]) -> i32 {
    if let Err(e) = crate::userns::enter_from_parent() {
        eprintln!("Error: {e}");
        return 125;
    }
    let cmd: Vec<String> = if command.is_empty() {
        vec![std::env::var("SHELL").unwrap_or_else(|_| "/bin/sh".into())]
    } else {
        command.to_vec()
    };
    let err = std::process::Command::new(&cmd[0])
        .args(&cmd[1..])
        .env("SKIFF_ROOT", &ctx.paths.root)
        .env("CONTAINERS_GRAPHROOT", &ctx.paths.root)
        .env("CONTAINERS_RUNROOT", &ctx.paths.runroot)
        .exec();
    eprintln!("Error: {}: {err}", cmd[0]);
    if err.kind() == std::io::ErrorKind::NotFound {
        127
    } else {
        126
    }
}

pub fn version(_ctx: &Ctx, a: VersionArgs) -> anyhow::Result<i32> {
    let v = serde_json::json!({"Client": {
        "APIVersion": env!("CARGO_PKG_VERSION"),
        "Version": env!("CARGO_PKG_VERSION"),
        "GoVersion": "",
        "GitCommit": "",
        "BuiltTime": "",
        "Built": 0,
        "OsArch": format!("linux/{}", crate::image::host_platform().1),
        "Os": "linux",
    }});
    let format = Format::parse("version", a.format.as_deref())
        .map_err(|e| Exit::with(125, e.to_string()))?;
    if let Format::Json = format {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else if let Format::Template { .. } = format {
        // `version -f '{{.Server.Version}}'` is how docker scripts check the engine is
        // there; with no daemon the engine is this binary, as podman answers too.
        let mut v = v;
        v["Server"] = v["Client"].clone();
        print!(
            "{}",
            format
                .render(&[v], &header_name)
                .map_err(|e| Exit::with(125, e.to_string()))?
        );
    } else {
        println!("Version:      {}", env!("CARGO_PKG_VERSION"));
        println!("OS/Arch:      linux/{}", crate::image::host_platform().1);
    }
    Ok(0)
}

pub fn info(ctx: &Ctx, a: InfoArgs) -> anyhow::Result<i32> {
    let mapping = user_mapping(ctx).ok().flatten();
    let kernel = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().to_string())
        .unwrap_or_default();
    let cgroup = if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "v2"
    } else {
        "v1"
    };
    let settings = ctx.settings.table(&ctx.paths.root, &ctx.paths.runroot);
    let v = serde_json::json!({
        "host": {
            "arch": crate::image::host_platform().1,
            "os": "linux",
            "hostname": nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default(),
            "kernel": kernel,
            "cgroupVersion": cgroup,
            "security": { "rootless": ctx.paths.rootless },
            "idMappings": mapping.as_ref().map(|m| serde_json::json!({"uidmap": m.uids, "gidmap": m.gids})),
        },
        "store": {
            "graphRoot": ctx.paths.root,
            "runRoot": ctx.paths.runroot,
            "graphDriverName": "overlay",
        },
        "version": { "Version": env!("CARGO_PKG_VERSION") },
        "config": {
            "files": ctx.settings.files,
            "settings": settings.iter().map(|(k, v, s)| serde_json::json!({"key": k, "value": v, "source": s})).collect::<Vec<_>>(),
        },
    });
    let format =
        Format::parse("info", a.format.as_deref()).map_err(|e| Exit::with(125, e.to_string()))?;
    if let Format::Json = format {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else if let Format::Template { .. } = format {
        print!(
            "{}",
            format
                .render(&[v], &header_name)
                .map_err(|e| Exit::with(125, e.to_string()))?
        );
    } else {
        println!("host:");
        println!("  arch: {}", crate::image::host_platform().1);
        println!("  kernel: {kernel}");
        println!("  cgroupVersion: {cgroup}");
        println!("  rootless: {}", ctx.paths.rootless);
        if let Some(m) = &mapping {
            println!("  idMappings:");
            for (label, v) in [("uidmap", &m.uids), ("gidmap", &m.gids)] {
                println!("    {label}:");
                for r in v {
                    println!(
                        "    - container_id: {}\n      host_id: {}\n      size: {}",
                        r.inside, r.outside, r.count
                    );
                }
            }
        }
        println!("store:");
        println!("  graphDriverName: overlay");
        println!("  graphRoot: {}", ctx.paths.root.display());
        println!("  runRoot: {}", ctx.paths.runroot.display());
        println!("version:");
        println!("  Version: {}", env!("CARGO_PKG_VERSION"));
        println!("config:");
        println!("  files:");
        for f in &ctx.settings.files {
            println!("  - {}", f.display());
        }
        println!("  settings:");
        for (k, v, src) in &settings {
            println!("    {k}: {v} (from {src})");
        }
    }
    Ok(0)
}
