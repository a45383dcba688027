//! The container's OCI bundle on disk: config.json (the spec), rootfs.json (how to build
//! the rootfs), and the generated /etc files bind-mounted into the container.

use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;

use super::{NetworkMode, RuntimeError};
use crate::rootfs::RootfsLayout;

pub const CONFIG: &str = "config.json";
pub const ROOTFS: &str = "rootfs.json";

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RuntimeError + '_ {
    move |source| RuntimeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes a file atomically (temp + rename), so a crash never leaves half a config.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), RuntimeError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// Inputs for the generated files.
pub struct Generated<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub image_name: &'a str,
    pub image_id: &'a str,
    pub hostname: &'a str,
    pub network: NetworkMode,
    pub rootless: bool,
    /// `--add-host HOST:IP` entries, already validated by [`parse_add_host`].
    pub add_hosts: &'a [String],
    /// `--dns` servers; when given they replace the host's nameservers.
    pub dns: &'a [String],
    /// `--dns-search` domains; when given they replace the host's; "." means none.
    pub dns_search: &'a [String],
}

/// A flag error for the generated /etc files.
fn bad(flag: &'static str, detail: String) -> RuntimeError {
    RuntimeError::BadFlag { flag, detail }
}

/// Splits `--add-host HOST:IP` at the first colon (so IPv6 addresses keep theirs), as
/// podman does; the IP must parse.
pub fn parse_add_host(entry: &str) -> Result<(&str, std::net::IpAddr), RuntimeError> {
    let (host, ip) = entry.split_once(':').ok_or_else(|| {
        bad(
            "--add-host",
            format!("invalid host entry {entry:?}: expected HOST:IP"),
        )
    })?;
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c == '#') {
        return Err(bad(
            "--add-host",
            format!("invalid host name {host:?} in {entry:?}: expected HOST:IP"),
        ));
    }
    let ip = ip.parse().map_err(|_| {
        bad(
            "--add-host",
            format!("invalid IP address {ip:?} in {entry:?}: expected HOST:IP"),
        )
    })?;
    Ok((host, ip))
}

/// Checks a `--dns` server address.
pub fn parse_dns(server: &str) -> Result<std::net::IpAddr, RuntimeError> {
    server
        .parse()
        .map_err(|_| bad("--dns", format!("{server:?} is not an IP address")))
}

/// Checks a `--dns-search` domain ("." clears the search list).
pub fn check_dns_search(domain: &str) -> Result<(), RuntimeError> {
    if domain.is_empty()
        || domain.len() > 253
        || domain.chars().any(|c| c.is_whitespace() || c == '#')
    {
        return Err(bad(
            "--dns-search",
            format!("invalid search domain {domain:?}"),
        ));
    }
    Ok(())
}

/// The container's /etc/hosts in podman's order: `--add-host` entries first (one
/// "IP<TAB>HOST" line each), then the base entries, then the container's own name.
pub fn hosts_file(g: &Generated, host_hosts: &str) -> String {
    let mut hosts = String::new();
    for e in g.add_hosts {
        if let Ok((host, ip)) = parse_add_host(e) {
            hosts.push_str(&format!("{ip}\t{host}\n"));
        }
    }
    if g.network == NetworkMode::Host {
        hosts.push_str(host_hosts);
        if !hosts.is_empty() && !hosts.ends_with('\n') {
            hosts.push('\n');
        }
    } else {
        hosts.push_str(
            "127.0.0.1\tlocalhost localhost.localdomain localhost4 localhost4.localdomain4\n",
        );
        hosts.push_str("::1\tlocalhost localhost.localdomain localhost6 localhost6.localdomain6\n");
    }
    if let NetworkMode::Slirp4netns { .. } = g.network {
        // As podman with slirp4netns: the container's own address, and the host.
        hosts.push_str(&format!(
            "{}\t{} {}\n",
            crate::network::tap::GUEST_IP,
            g.hostname,
            g.name
        ));
        hosts.push_str(&format!(
            "{}\thost.containers.internal\n",
            crate::network::tap::GATEWAY_IP
        ));
        return hosts;
    }
    hosts.push_str(&format!("127.0.1.1\t{} {}\n", g.hostname, g.name));
    hosts
}

/// The container's /etc/resolv.conf from the host's. Without --dns/--dns-search the
/// host's file is kept (minus loopback resolvers a private network cannot reach);
/// with them it is rebuilt as podman does: search line, nameservers, host options.
pub fn resolv_conf(g: &Generated, host_resolv: &str) -> String {
    // A loopback resolver on the host is unreachable from a private network namespace.
    let private = g.network != NetworkMode::Host;
    let unreachable = |addr: &str| private && (addr.starts_with("127.") || addr == "::1");
    let slirp = matches!(g.network, NetworkMode::Slirp4netns { .. });
    if g.dns.is_empty() && g.dns_search.is_empty() && !slirp {
        return host_resolv
            .lines()
            .filter(|l| {
                let mut w = l.split_whitespace();
                !(w.next() == Some("nameserver") && w.next().is_some_and(unreachable))
            })
            .map(|l| format!("{l}\n"))
            .collect();
    }
    let mut search: Vec<String> = Vec::new();
    let mut servers: Vec<String> = Vec::new();
    let mut options: Vec<String> = Vec::new();
    for l in host_resolv.lines() {
        let mut words = l.split_whitespace();
        match words.next() {
            Some("search") | Some("domain") => search = words.map(String::from).collect(),
            Some("nameserver") => {
                servers.extend(words.next().filter(|s| !unreachable(s)).map(String::from))
            }
            Some("options") => options.extend(words.map(String::from)),
            _ => {}
        }
    }
    if !g.dns_search.is_empty() {
        search = g.dns_search.iter().filter(|d| *d != ".").cloned().collect();
    }
    if !g.dns.is_empty() {
        servers = g.dns.to_vec();
    } else if slirp {
        // The monitor's DNS forwarder relays to the host's resolvers.
        servers = vec![crate::network::tap::DNS_IP.to_string()];
    }
    let mut out = String::new();
    if !search.is_empty() {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    for s in servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    out
}

/// Writes hosts, hostname, resolv.conf and .containerenv into the bundle; returns the
/// (source, destination) bind mounts for them.
pub fn generate_files(
    dir: &Path,
    g: &Generated,
) -> Result<Vec<(PathBuf, &'static str)>, RuntimeError> {
    let hosts = hosts_file(
        g,
        &std::fs::read_to_string("/etc/hosts").unwrap_or_default(),
    );
    let resolv = resolv_conf(
        g,
        &std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
    );
    let containerenv = format!(
        "engine=\"skiff-{}\"\nname=\"{}\"\nid=\"{}\"\nimage=\"{}\"\nimageid=\"{}\"\nrootless={}\n",
        env!("CARGO_PKG_VERSION"),
        g.name,
        g.id,
        g.image_name,
        g.image_id,
        u8::from(g.rootless)
    );
    let files: [(&str, &'static str, String); 4] = [
        ("hosts", "/etc/hosts", hosts),
        ("hostname", "/etc/hostname", format!("{}\n", g.hostname)),
        ("resolv.conf", "/etc/resolv.conf", resolv),
        ("containerenv", "/run/.containerenv", containerenv),
    ];
    let mut out = Vec::new();
    for (file, dest, content) in files {
        let p = dir.join(file);
        std::fs::write(&p, content).map_err(io(&p))?;
        out.push((p, dest));
    }
    Ok(out)
}

pub fn write_spec(dir: &Path, spec: &Spec) -> Result<(), RuntimeError> {
    let data = serde_json::to_vec_pretty(spec).map_err(|e| RuntimeError::Bundle {
        path: dir.to_path_buf(),
        detail: e.to_string(),
    })?;
    write_atomic(&dir.join(CONFIG), &data)
}

pub fn write_layout(dir: &Path, layout: &RootfsLayout) -> Result<(), RuntimeError> {
    let data = serde_json::to_vec_pretty(layout).map_err(|e| RuntimeError::Bundle {
        path: dir.to_path_buf(),
        detail: e.to_string(),
    })?;
    write_atomic(&dir.join(ROOTFS), &data)
}

pub fn load_spec(dir: &Path) -> Result<Spec, RuntimeError> {
    let p = dir.join(CONFIG);
    let data = std::fs::read(&p).map_err(io(&p))?;
    serde_json::from_slice(&data).map_err(|e| RuntimeError::Bundle {
        path: p.clone(),
        detail: e.to_string(),
    })
}

pub fn load_layout(dir: &Path) -> Result<RootfsLayout, RuntimeError> {
    let p = dir.join(ROOTFS);
    let data = std::fs::read(&p).map_err(io(&p))?;
    serde_json::from_slice(&data).map_err(|e| RuntimeError::Bundle {
        path: p.clone(),
        detail: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gen<'a>(hosts: &'a [String], dns: &'a [String], search: &'a [String]) -> Generated<'a> {
        Generated {
            id: "id",
            name: "web",
            image_name: "img",
            image_id: "iid",
            hostname: "box",
            network: NetworkMode::None,
            rootless: true,
            add_hosts: hosts,
            dns,
            dns_search: search,
        }
    }

    #[test]
    fn add_hosts_come_first_in_podman_format() {
        let h = ["db:10.0.0.1".to_string(), "six:fd00::1".to_string()];
        let text = hosts_file(&gen(&h, &[], &[]), "");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[..2], ["10.0.0.1\tdb", "fd00::1\tsix"]);
        assert_eq!(lines.last(), Some(&"127.0.1.1\tbox web"));
        assert!(parse_add_host("nocolon").is_err());
        assert!(parse_add_host(":1.2.3.4").is_err());
        assert!(parse_add_host("h:1.2.3").is_err());
    }

    #[test]
    fn dns_flags_rebuild_resolv_conf() {
        let host = "# comment\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nsearch corp.example\noptions edns0\n";
        // Untouched without flags, minus the loopback resolver.
        let kept = resolv_conf(&gen(&[], &[], &[]), host);
        assert!(!kept.contains("127.0.0.53") && kept.contains("nameserver 10.0.0.2"));
        let dns = ["9.9.9.9".to_string()];
        let out = resolv_conf(&gen(&[], &dns, &[]), host);
        assert_eq!(
            out,
            "search corp.example\nnameserver 9.9.9.9\noptions edns0\n"
        );
        let dot = [".".to_string()];
        let out = resolv_conf(&gen(&[], &[], &dot), host);
        assert_eq!(out, "nameserver 10.0.0.2\noptions edns0\n");
        assert!(parse_dns("x").is_err() && check_dns_search("a b").is_err());
    }

    #[test]
    fn slirp_points_at_the_forwarder_and_names_the_host() {
        let mut g = gen(&[], &[], &[]);
        g.network = NetworkMode::Slirp4netns {
            allow_host_loopback: false,
            enable_ipv6: true,
        };
        let host = "nameserver 127.0.0.53\nsearch corp.example\n";
        assert_eq!(
            resolv_conf(&g, host),
            "search corp.example\nnameserver 10.0.2.3\n"
        );
        let hosts = hosts_file(&g, "");
        assert!(hosts.contains("10.0.2.100\tbox web\n"), "{hosts}");
        assert!(
            hosts.contains("10.0.2.2\thost.containers.internal\n"),
            "{hosts}"
        );
    }
}
