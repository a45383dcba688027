//! The networks the monitor serves for a run (one Stack per interface: tap0, or eth0,
//! eth1, ... for user-defined networks), and their hot-plugging.
//!
//! `network connect`/`disconnect` of a running container, as podman hot-plugs: the CLI
//! records the change in the store, then asks the monitor over the attach socket
//! (`net connect NETWORK` / `net disconnect NETWORK`, one line; the answer is `ok` or
//! `error <code> <message>`). The monitor reads the container's networks from the store,
//! creates the new interface inside the container (src/network/hotplug.rs) and serves
//! it from its poll loop, or drops the network's Stack, which takes the interface away.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use crate::config::Paths;
use crate::network::member::{self, Membership};
use crate::network::stack::Stack;
use crate::storage::Store;

/// One network the monitor serves in the current run: its Stack, the user-defined
/// network it belongs to (None: slirp4netns's tap0) and its interface's number (ethN).
pub struct Link {
    pub stack: Stack,
    pub network: Option<String>,
    pub index: usize,
}

/// What plugging an interface into the current run needs: the container's namespaces
/// (kept from the launch) and where its networks are recorded.
pub struct Plug {
    pub paths: Paths,
    pub id: String,
    pub userns: Option<OwnedFd>,
    pub netns: OwnedFd,
}

impl Plug {
    /// For a run of a container on user-defined networks (or taken off all of them:
    /// its mode reads none), which may get interfaces plugged while it runs.
    pub fn for_run(
        paths: &Paths,
        id: &str,
        network: Option<&str>,
        userns: Option<&OwnedFd>,
        netns: Option<&OwnedFd>,
    ) -> Option<Plug> {
        use crate::runtime::NetworkMode;
        let mode = NetworkMode::parse(network?).ok()?;
        if !matches!(mode, NetworkMode::Bridge | NetworkMode::None) {
            return None;
        }
        Plug::new(paths, id, userns, netns)
    }

    /// None when the container has no network namespace of its own.
    fn new(
        paths: &Paths,
        id: &str,
        userns: Option<&OwnedFd>,
        netns: Option<&OwnedFd>,
    ) -> Option<Plug> {
        Some(Plug {
            paths: paths.clone(),
            id: id.to_string(),
            userns: match userns {
                Some(u) => Some(u.try_clone().ok()?),
                None => None,
            },
            netns: netns?.try_clone().ok()?,
        })
    }
}

/// Starts the user-mode network on the taps the init created: tap0 (`--network
/// slirp4netns`), or one per user-defined network, in the order of `members`.
pub fn start_networks(
    net: &mut Vec<Link>,
    taps: Vec<OwnedFd>,
    mode: Option<&str>,
    members: &[Membership],
    id: &str,
) -> Result<(), String> {
    net.clear();
    if !members.is_empty() {
        if taps.len() != members.len() {
            return Err(format!(
                "the container's init created {} network interfaces for {} networks",
                taps.len(),
                members.len()
            ));
        }
        for (index, (tap, m)) in taps.into_iter().zip(members).enumerate() {
            let stack = member::start(tap, m, members, id).map_err(|e| e.to_string())?;
            net.push(Link {
                stack,
                network: Some(m.network.clone()),
                index,
            });
        }
        return Ok(());
    }
    let Some(tap) = taps.into_iter().next() else {
        return Ok(());
    };
    let (allow_host_loopback, enable_ipv6) =
        match crate::runtime::NetworkMode::parse(mode.unwrap_or(crate::runtime::DEFAULT_NETWORK)) {
            Ok(crate::runtime::NetworkMode::Slirp4netns {
                allow_host_loopback,
                enable_ipv6,
            }) => (allow_host_loopback, enable_ipv6),
            _ => (false, false),
        };
    let opts = crate::network::stack::SlirpOptions::slirp(
        allow_host_loopback,
        crate::network::dns_upstream(),
        enable_ipv6,
    );
    net.push(Link {
        stack: crate::network::stack::Stack::new(tap, opts, None)?,
        network: None,
        index: 0,
    });
    Ok(())
}

/// A request: connect (true) or disconnect, and the network's name.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    pub connect: bool,
    pub network: String,
}

impl Request {
    pub fn line(&self) -> String {
        let verb = if self.connect {
            "connect"
        } else {
            "disconnect"
        };
        format!("net {verb} {}\n", self.network)
    }

    pub fn parse(b: &[u8]) -> Option<Request> {
        let s = std::str::from_utf8(b).ok()?;
        let mut w = s.split_whitespace();
        if w.next()? != "net" {
            return None;
        }
        let connect = match w.next()? {
            "connect" => true,
            "disconnect" => false,
            _ => return None,
        };
        let network = w.next()?.to_string();
        w.next().is_none().then_some(Request { connect, network })
    }
}

/// Applies a request to the monitor's networks.
pub fn handle(links: &mut Vec<Link>, plug: Option<&Plug>, req: &Request) -> Result<(), String> {
    let Some(plug) = plug else {
        return Err("the container has no network namespace of its own to plug into".into());
    };
    let store = Store::open(&plug.paths).map_err(|e| e.to_string())?;
    let rec = store.find_container(&plug.id).map_err(|e| e.to_string())?;
    let cfg: crate::runtime::ContainerConfig =
        serde_json::from_str(&rec.config).map_err(|e| e.to_string())?;
    let all = member::memberships(&store, &plug.id, cfg.options.network.as_deref())
        .map_err(|e| e.to_string())?;
    drop(store);
    let r = if req.connect {
        connect(links, plug, &all, &req.network)
    } else {
        links.retain(|l| l.network.as_deref() != Some(req.network.as_str()));
        Ok(())
    };
    // Every gateway answers the members of all the container's networks.
    for l in links.iter_mut() {
        if let Some(m) = all.iter().find(|m| Some(&m.network) == l.network.as_ref()) {
            l.stack.set_dns_scope(member::dns_scope(m, &all));
        }
    }
    // Back to the monitor's idle size: the store's pages and the code that read it.
    // SAFETY: malloc_trim only returns free heap pages to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
    super::memory::release_file_pages();
    r
}

fn connect(
    links: &mut Vec<Link>,
    plug: &Plug,
    all: &[Membership],
    network: &str,
) -> Result<(), String> {
    if links.iter().any(|l| l.network.as_deref() == Some(network)) {
        return Ok(());
    }
    let m = all
        .iter()
        .find(|m| m.network == network)
        .ok_or_else(|| format!("container {} is not attached to network {network}", plug.id))?;
    // The first free ethN, as podman names a hot-plugged interface.
    let index = (0..)
        .find(|i| !links.iter().any(|l| l.index == *i))
        .unwrap_or(links.len());
    let name = member::iface_name(index);
    let tap = crate::network::hotplug::create_in(
        plug.userns.as_ref(),
        &plug.netns,
        &name,
        &m.addr,
        member::route_metric(index),
    )?;
    let stack = member::start(tap, m, all, &plug.id).map_err(|e| e.to_string())?;
    links.push(Link {
        stack,
        network: Some(network.to_string()),
        index,
    });
    Ok(())
}

/// The CLI's side: asks the monitor of a running container to apply a change already
/// recorded in the store. Err: the monitor's message (or why it could not be asked).
pub fn request(paths: &Paths, id: &str, req: &Request) -> Result<(), String> {
    let path = super::attach_socket(paths, id);
    let mut s = UnixStream::connect(&path).map_err(|e| {
        format!(
            "reaching the monitor of container {id} at {}: {e}",
            path.display()
        )
    })?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    s.write_all(req.line().as_bytes())
        .map_err(|e| format!("asking the monitor of container {id}: {e}"))?;
    let mut line = String::new();
    BufReader::new(&s)
        .read_line(&mut line)
        .map_err(|e| format!("waiting for the monitor of container {id}: {e}"))?;
    match line.trim_end().split_once(' ') {
        _ if line == super::proto::OK => Ok(()),
        Some(("error", rest)) => Err(rest
            .split_once(' ')
            .map_or(rest, |(_, msg)| msg)
            .to_string()),
        _ => Err(format!(
            "the monitor of container {id} gave no answer: is it running?"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trips() {
        for connect in [true, false] {
            let r = Request {
                connect,
                network: "net-1".into(),
            };
            assert_eq!(Request::parse(r.line().as_bytes()), Some(r));
        }
        assert_eq!(Request::parse(b"net plug x\n"), None);
        assert_eq!(Request::parse(b"net connect\n"), None);
        assert_eq!(Request::parse(b"attach stdin=1 keys=\n"), None);
    }
}
