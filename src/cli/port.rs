//! port: the published ports of running containers, as podman prints them.

use clap::Args;

use super::container::refresh;
use super::{Ctx, Exit};
use crate::network::portspec::{self, PortMapping};
use crate::runtime::ContainerConfig;
use crate::storage::containers::State;
use crate::storage::Store;

#[derive(Debug, Args)]
pub struct PortArgs {
    /// Show the ports of every running container
    #[arg(short, long)]
    pub all: bool,
    /// CONTAINER [PRIVATE_PORT[/PROTO]]
    #[arg(value_name = "ARGS")]
    pub args: Vec<String>,
}

pub fn port(ctx: &Ctx, a: PortArgs) -> anyhow::Result<i32> {
    let usage = |m: &str| Exit::with(125, m.to_string());
    let (names, wanted) = match (a.all, a.args.as_slice()) {
        (true, []) => (None, None),
        (true, [p]) => (None, Some(p.as_str())),
        (false, [c]) => (Some(c.clone()), None),
        (false, [c, p]) => (Some(c.clone()), Some(p.as_str())),
        (false, []) => return Err(usage("port needs a container name or ID, or --all")),
        _ => {
            return Err(usage(
                "port takes CONTAINER [PRIVATE_PORT[/PROTO]]: too many arguments",
            ))
        }
    };
    let wanted = wanted
        .map(portspec::parse_port_arg)
        .transpose()
        .map_err(|e| Exit::with(125, format!("invalid port argument: {e}")))?;
    let mut store = Store::open(&ctx.paths)?;
    let list = match &names {
        Some(n) => vec![store.find_container(n)?],
        None => store.containers()?,
    };
    for c in list {
        let c = refresh(&mut store, c)?;
        // As podman: only a running container has ports in use.
        if c.state != State::Running {
            continue;
        }
        let mut ports: Vec<PortMapping> = serde_json::from_str::<ContainerConfig>(&c.config)
            .map(|x| x.ports)
            .unwrap_or_default();
        ports.sort_by_key(|p| (p.container_port, p.protocol, p.host_port));
        let prefix = if a.all {
            format!("{}\t", &c.id[..12.min(c.id.len())])
        } else {
            String::new()
        };
        match wanted {
            None => {
                for p in &ports {
                    println!(
                        "{prefix}{} -> {}:{}",
                        p.container_key(),
                        p.host_ip_text(),
                        p.host_port
                    );
                }
            }
            Some((port, proto)) => {
                let found: Vec<&PortMapping> = ports
                    .iter()
                    .filter(|p| p.container_port == port && p.protocol == proto)
                    .collect();
                if found.is_empty() && !a.all {
                    return Err(Exit::with(
                        125,
                        format!(
                            "failed to find published port \"{port}/{}\"",
                            proto.as_str()
                        ),
                    ));
                }
                for p in found {
                    println!("{prefix}{}:{}", p.host_ip_text(), p.host_port);
                }
            }
        }
    }
    Ok(0)
}
