//! `-p/--publish` values in podman's syntax, `[[ip:][hostPort]:]containerPort[/tcp|/udp]`
//! with ranges (`8000-8005:80-85`) and IPv6 addresses in brackets, and the display forms
//! podman uses (`0.0.0.0:8080->80/tcp` in ps, `80/tcp -> 0.0.0.0:8080` in port). The
//! parser is a pure function of its input: any string gives a mapping list or an error,
//! never a panic, so it can be fuzzed directly.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::NetworkError;

/// Transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }

    /// `tcp`/`udp` as in `-p 53/udp`, podman's `sctp` refused with a reason.
    pub fn parse(s: &str) -> Result<Protocol, String> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Ok(Protocol::Tcp),
            "udp" => Ok(Protocol::Udp),
            "" => Err("the protocol after '/' is empty: use tcp or udp".into()),
            "sctp" => Err("sctp ports are not supported by skiff: use tcp or udp".into()),
            other => Err(format!("unknown protocol {other:?}: use tcp or udp")),
        }
    }
}

/// One port as asked for: `host_port` None means "any free port", decided at create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRequest {
    pub host_ip: Option<IpAddr>,
    pub host_port: Option<u16>,
    pub container_port: u16,
    pub protocol: Protocol,
}

/// A published port with its host port fixed; stored with the container so a restart
/// binds the same ports again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PortMapping {
    /// None: every address of the host (shown as 0.0.0.0, as podman does).
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: Protocol,
}

/// The most ports one container may publish (every port of one protocol twice over).
const MAX_PORTS: usize = 2 * 65536;

/// Parses one `-p` value into one request per port.
pub fn parse(spec: &str) -> Result<Vec<PortRequest>, NetworkError> {
    parse_inner(spec).map_err(|detail| NetworkError::BadPublish {
        spec: spec.to_string(),
        detail,
    })
}

fn parse_inner(spec: &str) -> Result<Vec<PortRequest>, String> {
    let spec = spec.trim();
    if spec.is_empty() {
        return Err("empty value: use [ip:][hostPort:]containerPort[/tcp|/udp]".into());
    }
    let (rest, protocol) = match spec.rsplit_once('/') {
        Some((r, p)) => (r, Protocol::parse(p)?),
        None => (spec, Protocol::Tcp),
    };
    let (ip, ports) = split_ip(rest)?;
    let (host, container) = match ports.rsplit_once(':') {
        Some((h, c)) => (Some(h), c),
        None => (None, ports),
    };
    if container.is_empty() {
        return Err("the container port is empty: use [ip:][hostPort:]containerPort".into());
    }
    let (c_lo, c_hi) = range(container, "container")?;
    let host = match host {
        Some("") | None => None,
        Some(h) => Some(range(h, "host")?),
    };
    let count = usize::from(c_hi - c_lo) + 1;
    let mut out = Vec::with_capacity(count.min(MAX_PORTS));
    match host {
        // Host port 0 asks for a free port, like an omitted one.
        Some((0, 0)) | None => {
            for p in c_lo..=c_hi {
                out.push(PortRequest {
                    host_ip: ip,
                    host_port: None,
                    container_port: p,
                    protocol,
                });
            }
        }
        Some((0, _)) => return Err("port 0 cannot start a host port range".into()),
        Some((h_lo, h_hi)) => {
            let h_count = usize::from(h_hi - h_lo) + 1;
            if h_count != count {
                return Err(format!(
                    "the host port range has {h_count} ports but the container port range {count}: give ranges of the same length"
                ));
            }
            for (h, c) in (h_lo..=h_hi).zip(c_lo..=c_hi) {
                out.push(PortRequest {
                    host_ip: ip,
                    host_port: Some(h),
                    container_port: c,
                    protocol,
                });
            }
        }
    }
    Ok(out)
}

/// Splits `ip:rest` (`[v6]:rest` for IPv6) from the ports. Without an address, returns
/// the input whole.
fn split_ip(s: &str) -> Result<(Option<IpAddr>, &str), String> {
    if let Some(after) = s.strip_prefix('[') {
        let (addr, rest) = after
            .split_once(']')
            .ok_or("an IPv6 address in '[' lacks its closing ']'")?;
        let rest = rest
            .strip_prefix(':')
            .ok_or("after [ADDRESS] give :hostPort:containerPort")?;
        if !rest.contains(':') {
            return Err("after [ADDRESS] give :hostPort:containerPort".into());
        }
        let ip: std::net::Ipv6Addr = addr
            .parse()
            .map_err(|_| format!("{addr:?} is not an IPv6 address"))?;
        return Ok((Some(IpAddr::V6(ip)), rest));
    }
    match s.matches(':').count() {
        0 | 1 => Ok((None, s)),
        2 => {
            let (addr, rest) = s.split_once(':').ok_or("unreachable")?;
            if addr.is_empty() {
                return Ok((None, rest));
            }
            let ip: IpAddr = addr
                .parse()
                .map_err(|_| format!("{addr:?} is not an IP address"))?;
            Ok((Some(ip), rest))
        }
        _ => Err(
            "too many ':': use [ip:][hostPort:]containerPort, with an IPv6 address in brackets ([::1]:8080:80)"
                .into(),
        ),
    }
}

/// `N` or `N-M` (N ≤ M); port 0 is allowed here only for the host side.
fn range(s: &str, what: &str) -> Result<(u16, u16), String> {
    let (lo, hi) = match s.split_once('-') {
        Some((a, b)) => (port(a, what)?, port(b, what)?),
        None => {
            let p = port(s, what)?;
            (p, p)
        }
    };
    if lo > hi {
        return Err(format!(
            "the {what} port range {s:?} ends before it starts: use LOW-HIGH"
        ));
    }
    if what == "container" && lo == 0 {
        return Err("container port 0 is not a port: use 1-65535".into());
    }
    if lo == 0 && hi != 0 {
        return Err(format!("the {what} port range {s:?} starts at 0"));
    }
    Ok((lo, hi))
}

fn port(s: &str, what: &str) -> Result<u16, String> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{what} port {s:?} is not a number from 1 to 65535"));
    }
    s.parse::<u16>()
        .map_err(|_| format!("{what} port {s} is out of range: use 1-65535"))
}

/// The ports of several `-p` values, checked for a host port given twice.
pub fn parse_all(specs: &[String]) -> Result<Vec<PortRequest>, NetworkError> {
    let mut out: Vec<PortRequest> = Vec::new();
    for s in specs {
        let reqs = parse(s)?;
        if out.len() + reqs.len() > MAX_PORTS {
            return Err(NetworkError::BadPublish {
                spec: s.clone(),
                detail: "too many published ports".into(),
            });
        }
        out.extend(reqs);
    }
    let mut seen = std::collections::HashSet::new();
    for r in &out {
        if let Some(h) = r.host_port {
            if !seen.insert((r.host_ip, h, r.protocol)) {
                return Err(NetworkError::BadPublish {
                    spec: format!("{}/{}", h, r.protocol.as_str()),
                    detail: format!(
                        "host port {h}/{} is published twice: give each host port once",
                        r.protocol.as_str()
                    ),
                });
            }
        }
    }
    Ok(out)
}

/// The `EXPOSE`d ports of an image config (`80/tcp`, `53/udp`, `8080`), for `-P`;
/// entries that are not ports are skipped, as podman does.
pub fn exposed(keys: &[String]) -> Vec<(u16, Protocol)> {
    let mut v: Vec<(u16, Protocol)> = keys
        .iter()
        .filter_map(|k| {
            let (p, proto) = k.split_once('/').unwrap_or((k, "tcp"));
            let proto = Protocol::parse(proto).ok()?;
            let p: u16 = p.parse().ok().filter(|p| *p > 0)?;
            Some((p, proto))
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

impl PortMapping {
    /// The host address as podman prints it.
    pub fn host_ip_text(&self) -> String {
        self.host_ip
            .map(|i| i.to_string())
            .unwrap_or_else(|| "0.0.0.0".into())
    }

    /// `80/tcp`, the key of inspect's NetworkSettings.Ports.
    pub fn container_key(&self) -> String {
        format!("{}/{}", self.container_port, self.protocol.as_str())
    }
}

/// The PORTS column of ps: sorted, with runs of consecutive ports folded into ranges
/// (`0.0.0.0:9000-9002->90-92/udp`), joined by ", ".
pub fn ps_column(ports: &[PortMapping]) -> String {
    let mut v: Vec<PortMapping> = ports.to_vec();
    v.sort_by_key(|p| (p.host_ip_text(), p.protocol, p.container_port, p.host_port));
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let first = v[i];
        let mut j = i;
        while j + 1 < v.len() {
            let (a, b) = (v[j], v[j + 1]);
            let next = a.host_ip == b.host_ip
                && a.protocol == b.protocol
                && a.container_port.checked_add(1) == Some(b.container_port)
                && a.host_port.checked_add(1) == Some(b.host_port);
            if !next {
                break;
            }
            j += 1;
        }
        let last = v[j];
        let (h, c) = if i == j {
            (
                first.host_port.to_string(),
                first.container_port.to_string(),
            )
        } else {
            (
                format!("{}-{}", first.host_port, last.host_port),
                format!("{}-{}", first.container_port, last.container_port),
            )
        };
        out.push(format!(
            "{}:{h}->{c}/{}",
            first.host_ip_text(),
            first.protocol.as_str()
        ));
        i = j + 1;
    }
    out.join(", ")
}

/// inspect's NetworkSettings.Ports and HostConfig.PortBindings:
/// `{"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}` (HostIp empty for every address).
pub fn inspect_map(ports: &[PortMapping]) -> serde_json::Value {
    let mut map: std::collections::BTreeMap<String, Vec<serde_json::Value>> = Default::default();
    for p in ports {
        map.entry(p.container_key())
            .or_default()
            .push(serde_json::json!({
                "HostIp": p.host_ip.map(|i| i.to_string()).unwrap_or_default(),
                "HostPort": p.host_port.to_string(),
            }));
    }
    serde_json::json!(map)
}

/// `ps --format json`'s Ports: podman's port mappings, consecutive ports as one entry
/// with a range.
pub fn ps_json(ports: &[PortMapping]) -> serde_json::Value {
    let mut v: Vec<PortMapping> = ports.to_vec();
    v.sort_by_key(|p| (p.host_ip_text(), p.protocol, p.container_port, p.host_port));
    let mut out: Vec<serde_json::Value> = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j + 1 < v.len()
            && v[j].host_ip == v[j + 1].host_ip
            && v[j].protocol == v[j + 1].protocol
            && v[j].container_port.checked_add(1) == Some(v[j + 1].container_port)
            && v[j].host_port.checked_add(1) == Some(v[j + 1].host_port)
        {
            j += 1;
        }
        out.push(serde_json::json!({
            "host_ip": v[i].host_ip.map(|a| a.to_string()).unwrap_or_default(),
            "container_port": v[i].container_port,
            "host_port": v[i].host_port,
            "range": j - i + 1,
            "protocol": v[i].protocol.as_str(),
        }));
        i = j + 1;
    }
    serde_json::json!(out)
}

/// Parses the PORT argument of `skiff port` (`80`, `80/udp`).
pub fn parse_port_arg(s: &str) -> Result<(u16, Protocol), String> {
    let (p, proto) = match s.split_once('/') {
        Some((p, proto)) => (p, Protocol::parse(proto)?),
        None => (s, Protocol::Tcp),
    };
    let n = port(p, "container")?;
    if n == 0 {
        return Err("container port 0 is not a port: use 1-65535".into());
    }
    Ok((n, proto))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(s: &str) -> PortRequest {
        let v = parse(s).unwrap();
        assert_eq!(v.len(), 1, "{s}");
        v[0]
    }

    #[test]
    fn forms() {
        let r = one("80");
        assert_eq!((r.host_ip, r.host_port, r.container_port), (None, None, 80));
        assert_eq!(r.protocol, Protocol::Tcp);
        let r = one("8080:80");
        assert_eq!((r.host_port, r.container_port), (Some(8080), 80));
        let r = one("127.0.0.1:8080:80/udp");
        assert_eq!(r.host_ip, Some("127.0.0.1".parse().unwrap()));
        assert_eq!(r.protocol, Protocol::Udp);
        let r = one("127.0.0.1::80");
        assert_eq!((r.host_port, r.container_port), (None, 80));
        let r = one(":80");
        assert_eq!((r.host_ip, r.host_port), (None, None));
        let r = one("0:80");
        assert_eq!(r.host_port, None);
        let r = one("[::1]:8080:80");
        assert_eq!(r.host_ip, Some("::1".parse().unwrap()));
        let r = one("[::1]::80/TCP");
        assert_eq!(r.host_port, None);
        let r = one("::80");
        assert_eq!((r.host_ip, r.host_port, r.container_port), (None, None, 80));
    }

    #[test]
    fn ranges() {
        let v = parse("8000-8002:80-82/udp").unwrap();
        assert_eq!(v.len(), 3);
        assert_eq!((v[2].host_port, v[2].container_port), (Some(8002), 82));
        let v = parse("90-92").unwrap();
        assert_eq!(v.len(), 3);
        assert!(v.iter().all(|r| r.host_port.is_none()));
        assert_eq!(parse("1-65535").unwrap().len(), 65535);
    }

    #[test]
    fn bad_values() {
        for s in [
            "",
            "/",
            "80/",
            "80/sctp",
            "80/icmp",
            "abc",
            "8080:",
            "8080:0",
            "0",
            "70000:80",
            "80:70000",
            "1.2.3:80:80",
            "80:80:80",
            "::1:80:80",
            "[::1]",
            "[::1]:80",
            "[::1:80:80",
            "[1.2.3.4]:80:80",
            "5-3",
            "8000-8002:80",
            "8000:80-82",
            "-1:80",
            "+80",
            "80-",
            "-80",
            "0-5:1-6",
            "1:2:3:4",
            " : ",
            "８０",
            "80 :80",
        ] {
            let e = parse(s);
            assert!(e.is_err(), "{s:?} parsed: {e:?}");
            let msg = e.unwrap_err().to_string();
            assert!(msg.starts_with("invalid -p"), "{msg}");
        }
    }

    #[test]
    fn never_panics() {
        // A cheap fuzz: every short string over the syntax's alphabet.
        let alphabet: Vec<char> = "0189:-/[]tcpu.".chars().collect();
        let mut s = String::new();
        fn walk(s: &mut String, alphabet: &[char], depth: usize) {
            let _ = parse(s);
            let _ = parse_port_arg(s);
            if depth == 0 {
                return;
            }
            for c in alphabet {
                s.push(*c);
                walk(s, alphabet, depth - 1);
                s.pop();
            }
        }
        walk(&mut s, &alphabet, 4);
        for s in ["\u{0}", "é:é", "[", "]", "[]:1:1", "99999999999999999999:1"] {
            let _ = parse(s);
        }
    }

    #[test]
    fn duplicates_refused() {
        let specs = vec!["8080:80".to_string(), "8080:81".to_string()];
        assert!(parse_all(&specs).is_err());
        let specs = vec!["8080:80".to_string(), "8080:80/udp".to_string()];
        assert_eq!(parse_all(&specs).unwrap().len(), 2);
    }

    fn m(ip: Option<&str>, h: u16, c: u16, p: Protocol) -> PortMapping {
        PortMapping {
            host_ip: ip.map(|i| i.parse().unwrap()),
            host_port: h,
            container_port: c,
            protocol: p,
        }
    }

    #[test]
    fn ps_column_like_podman() {
        let v = vec![
            m(Some("127.0.0.1"), 38111, 81, Protocol::Tcp),
            m(None, 9001, 91, Protocol::Udp),
            m(None, 8080, 80, Protocol::Tcp),
            m(None, 9000, 90, Protocol::Udp),
            m(None, 9002, 92, Protocol::Udp),
            m(None, 7000, 70, Protocol::Tcp),
        ];
        assert_eq!(
            ps_column(&v),
            "0.0.0.0:7000->70/tcp, 0.0.0.0:8080->80/tcp, 0.0.0.0:9000-9002->90-92/udp, 127.0.0.1:38111->81/tcp"
        );
        assert_eq!(ps_column(&[]), "");
    }

    #[test]
    fn exposed_ports() {
        let keys = vec![
            "80/tcp".into(),
            "53/udp".into(),
            "8080".into(),
            "x/tcp".into(),
        ];
        assert_eq!(
            exposed(&keys),
            vec![
                (53, Protocol::Udp),
                (80, Protocol::Tcp),
                (8080, Protocol::Tcp)
            ]
        );
    }

    #[test]
    fn port_arg() {
        assert_eq!(parse_port_arg("80").unwrap(), (80, Protocol::Tcp));
        assert_eq!(parse_port_arg("53/udp").unwrap(), (53, Protocol::Udp));
        assert!(parse_port_arg("0").is_err());
        assert!(parse_port_arg("x").is_err());
    }
}
