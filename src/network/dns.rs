//! The DNS answers a user-defined network's gateway gives, as podman's aardvark-dns:
//! A records for members' names, aliases and ID prefixes, bare or under the
//! `dns.podman` search domain, matched without regard to case. For a member, any other
//! record type gets an empty NOERROR answer, so a resolver asking AAAA and A in
//! parallel does not wait on (or leak the name to) the upstream resolver; an unknown
//! name under `dns.podman` is NXDOMAIN, since it is ours and nobody upstream knows it.
//! Everything else is not ours and the caller relays it upstream. Only the shapes
//! resolvers send are handled (one question, no compression in it); a query that does
//! not parse is relayed as it is.

use std::net::Ipv4Addr;

/// The search domain podman writes into a member's resolv.conf.
pub const SEARCH_DOMAIN: &str = "dns.podman";
/// How long resolvers may cache our answers (aardvark-dns uses 60 s too).
const TTL: u32 = 60;
const TYPE_A: u16 = 1;
const CLASS_IN: u16 = 1;
const NOERROR: u8 = 0;
const NXDOMAIN: u8 = 3;

/// One parsed question: the lower-cased name without the trailing dot, its type and
/// class, and where the question section ends in the query.
#[derive(Debug)]
struct Question {
    name: String,
    qtype: u16,
    qclass: u16,
    end: usize,
}

fn question(q: &[u8]) -> Option<Question> {
    // Header: QR must be 0 (a query), opcode 0 (QUERY), exactly one question.
    if q.len() < 12 || q[2] & 0x80 != 0 || (q[2] >> 3) & 0xf != 0 {
        return None;
    }
    if u16::from_be_bytes([q[4], q[5]]) != 1 {
        return None;
    }
    let mut at = 12;
    let mut labels: Vec<String> = Vec::new();
    loop {
        let len = usize::from(*q.get(at)?);
        at += 1;
        if len == 0 {
            break;
        }
        // 0xc0 and above are compression pointers, which a question never needs.
        if len > 63 {
            return None;
        }
        let l = q.get(at..at + len)?;
        labels.push(String::from_utf8_lossy(l).to_ascii_lowercase());
        at += len;
    }
    let t = q.get(at..at + 4)?;
    Some(Question {
        name: labels.join("."),
        qtype: u16::from_be_bytes([t[0], t[1]]),
        qclass: u16::from_be_bytes([t[2], t[3]]),
        end: at + 4,
    })
}

/// The gateway's answer to `query`, if it is ours: `lookup` maps a lower-case bare
/// name to a member's address. None: not ours, relay it upstream.
pub fn answer(query: &[u8], lookup: &mut dyn FnMut(&str) -> Option<Ipv4Addr>) -> Option<Vec<u8>> {
    let q = question(query)?;
    if q.qclass != CLASS_IN {
        return None;
    }
    let (bare, ours) = match q
        .name
        .strip_suffix(SEARCH_DOMAIN)
        .and_then(|b| b.strip_suffix('.'))
    {
        Some(b) => (b, true),
        None => (q.name.as_str(), q.name == SEARCH_DOMAIN),
    };
    let found = if bare.is_empty() || bare == SEARCH_DOMAIN {
        None
    } else {
        lookup(bare)
    };
    let (rcode, ip) = match found {
        Some(ip) => (NOERROR, (q.qtype == TYPE_A).then_some(ip)),
        None if ours => (NXDOMAIN, None),
        None => return None,
    };
    let mut r = Vec::with_capacity(q.end + 16);
    r.extend_from_slice(&query[..q.end]);
    // QR, opcode 0, AA, RD as asked; RA; the rcode.
    r[2] = 0x80 | 0x04 | (query[2] & 0x01);
    r[3] = 0x80 | rcode;
    r[6..8].copy_from_slice(&u16::from(ip.is_some()).to_be_bytes());
    // No authority or additional records (an EDNS OPT in the query is not echoed).
    r[8..12].fill(0);
    if let Some(ip) = ip {
        r.extend_from_slice(&[0xc0, 12]);
        r.extend_from_slice(&TYPE_A.to_be_bytes());
        r.extend_from_slice(&CLASS_IN.to_be_bytes());
        r.extend_from_slice(&TTL.to_be_bytes());
        r.extend_from_slice(&4u16.to_be_bytes());
        r.extend_from_slice(&ip.octets());
    }
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
        for l in name.split('.').filter(|l| !l.is_empty()) {
            q.push(l.len() as u8);
            q.extend_from_slice(l.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&1u16.to_be_bytes());
        // An EDNS OPT record in the additional section, as resolvers send.
        q.extend_from_slice(&[0, 0, 41, 4, 0, 0, 0, 0, 0, 0, 0]);
        q
    }

    fn web(n: &str) -> Option<Ipv4Addr> {
        (n == "web").then_some(Ipv4Addr::new(10, 89, 0, 2))
    }

    fn rcode(r: &[u8]) -> u8 {
        r[3] & 0xf
    }

    fn answers(r: &[u8]) -> u16 {
        u16::from_be_bytes([r[6], r[7]])
    }

    #[test]
    fn member_names_get_a_records_in_any_case() {
        for name in ["web", "WEB", "web.dns.podman", "Web.DNS.Podman."] {
            let q = query(name, TYPE_A);
            let r = answer(&q, &mut web).unwrap();
            assert_eq!(&r[..2], &[0x12, 0x34], "{name}: the query's ID");
            assert_eq!(r[2] & 0x85, 0x85, "{name}: response, authoritative, RD");
            assert_eq!(rcode(&r), NOERROR, "{name}");
            assert_eq!(answers(&r), 1, "{name}");
            assert_eq!(u16::from_be_bytes([r[10], r[11]]), 0, "no OPT echoed");
            assert_eq!(&r[r.len() - 4..], &[10, 89, 0, 2], "{name}");
            // The question is echoed as asked (the case of the name included).
            assert_eq!(&r[12..q.len() - 11], &q[12..q.len() - 11]);
        }
    }

    #[test]
    fn other_types_for_a_member_are_empty_noerror() {
        for t in [28u16, 15, 16] {
            let r = answer(&query("web.dns.podman", t), &mut web).unwrap();
            assert_eq!((rcode(&r), answers(&r)), (NOERROR, 0), "type {t}");
        }
    }

    #[test]
    fn unknown_names_under_dns_podman_are_nxdomain() {
        for name in [
            "db.dns.podman",
            "DB.Dns.Podman",
            "a.b.dns.podman",
            "dns.podman",
        ] {
            let r = answer(&query(name, TYPE_A), &mut web).unwrap();
            assert_eq!((rcode(&r), answers(&r)), (NXDOMAIN, 0), "{name}");
        }
        let r = answer(&query("db.dns.podman", 28), &mut web).unwrap();
        assert_eq!(rcode(&r), NXDOMAIN);
    }

    #[test]
    fn everything_else_is_relayed() {
        for name in ["example.com", "db", "web.example.com", "xdns.podman"] {
            assert!(answer(&query(name, TYPE_A), &mut web).is_none(), "{name}");
        }
        // Not a query, two questions, a compression pointer, class CH, truncated.
        let mut resp = query("web", TYPE_A);
        resp[2] |= 0x80;
        assert!(answer(&resp, &mut web).is_none());
        let mut two = query("web", TYPE_A);
        two[5] = 2;
        assert!(answer(&two, &mut web).is_none());
        let mut ptr = query("web", TYPE_A);
        ptr[12] = 0xc0;
        assert!(answer(&ptr, &mut web).is_none());
        let mut chaos = query("web", TYPE_A);
        let at = 12 + 5;
        chaos[at + 3] = 3;
        assert!(answer(&chaos, &mut web).is_none());
        let q = query("web", TYPE_A);
        for cut in 0..at + 4 {
            assert!(answer(&q[..cut], &mut web).is_none(), "cut at {cut}");
        }
    }
}
