//! IPv4 subnets of user-defined networks: parsing (podman's CIDR rules), overlap and
//! host-address tests for allocation.

use std::net::Ipv4Addr;

/// An IPv4 subnet: network address and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Subnet {
    /// Parses `A.B.C.D/N`; host bits are cleared (podman stores 10.0.0.1/24 as
    /// 10.0.0.0/24).
    pub fn parse(s: &str) -> Option<Subnet> {
        let (a, p) = s.split_once('/')?;
        let addr: Ipv4Addr = a.parse().ok()?;
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let prefix: u8 = p.parse().ok().filter(|p| *p <= 32)?;
        Some(Subnet {
            addr: Ipv4Addr::from(u32::from(addr) & mask(prefix)),
            prefix,
        })
    }
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == u32::from(self.addr)
    }
    pub fn overlaps(&self, other: &Subnet) -> bool {
        let m = mask(self.prefix.min(other.prefix));
        u32::from(self.addr) & m == u32::from(other.addr) & m
    }
    fn broadcast(&self) -> u32 {
        u32::from(self.addr) | !mask(self.prefix)
    }
    /// The first usable host address (podman's default gateway).
    pub fn first_host(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) + u32::from(self.prefix < 31))
    }
    /// An address a container may hold: in the subnet, neither network nor broadcast.
    pub fn is_host(&self, ip: Ipv4Addr) -> bool {
        let v = u32::from(ip);
        self.contains(ip)
            && (self.prefix >= 31 || (v != u32::from(self.addr) && v != self.broadcast()))
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

pub(crate) fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets() {
        let s = Subnet::parse("10.0.0.1/24").unwrap();
        assert_eq!(s.to_string(), "10.0.0.0/24");
        assert!(s.contains("10.0.0.255".parse().unwrap()));
        assert!(!s.is_host("10.0.0.255".parse().unwrap()));
        assert!(!s.is_host("10.0.0.0".parse().unwrap()));
        assert!(s.is_host("10.0.0.7".parse().unwrap()));
        assert_eq!(s.first_host(), Ipv4Addr::new(10, 0, 0, 1));
        for bad in [
            "10.0.0.0/33",
            "foo",
            "10.0.0/24",
            "10.0.0.0/",
            "10.0.0.0/-1",
            "10.0.0.0",
        ] {
            assert!(Subnet::parse(bad).is_none(), "{bad}");
        }
        let big = Subnet::parse("10.80.0.0/12").unwrap();
        assert!(big.overlaps(&Subnet::parse("10.89.1.0/24").unwrap()));
        assert!(!s.overlaps(&Subnet::parse("10.0.1.0/24").unwrap()));
    }
}
