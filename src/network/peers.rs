//! User-defined networks: frames between members go monitor to monitor. Each member's
//! monitor binds a unix datagram socket in the network's run directory
//! (`<runroot>/networks/<id12>/<container id12>`) and sends a frame for another
//! member's address, as read from its tap, to that member's socket (a broadcast or
//! multicast frame to every other member's); what arrives there goes to its own tap
//! (lan.rs decides what may leave and what may enter). The members, their addresses
//! and MACs come from the members file the store keeps there (MemberCache). DNS at the
//! gateway answers members' names (dns.rs) and relays the rest. Nothing outlives the
//! monitors: each one removes its socket when its network goes.
//!
//! Sends never block the monitor's loop: a member whose queue is full (the kernel
//! bounds it at net.unix.max_dgram_qlen) or that is not running loses the frame, as a
//! full NIC queue or an unplugged cable would; TCP resends.

use std::net::Ipv4Addr;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;

use super::member::{MemberError, Membership};
use crate::storage::network_cache::MemberCache;

pub struct Peers {
    sock: UnixDatagram,
    path: PathBuf,
    dir: PathBuf,
    members: MemberCache,
    container_id: String,
    /// Our container's address and MAC (the one set on its tap).
    ip: Ipv4Addr,
    mac: [u8; 6],
    dns_enabled: bool,
    /// Frames from our container with a source that is not its own, dropped.
    forged: u64,
    /// Frames that found no room at (or no socket of) the member they were for.
    lost: u64,
    /// The container's other networks: DNS here answers their members too (member.rs).
    scope: Vec<MemberCache>,
}

fn socket_name(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

impl Peers {
    /// Binds this member's socket in the network's run directory (replacing one a
    /// killed monitor left behind).
    pub fn bind(m: &Membership, container_id: &str) -> Result<Peers, MemberError> {
        let dir = &m.run_dir;
        let path = dir.join(socket_name(container_id));
        let bind_err = |source: std::io::Error| MemberError::Bind {
            network: m.network.clone(),
            container: socket_name(container_id).to_string(),
            path: path.clone(),
            source,
        };
        tracing::debug!(dir = %dir.display(), "create the network run directory");
        std::fs::create_dir_all(dir).map_err(bind_err)?;
        if let Err(e) = std::fs::remove_file(&path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::debug!(error = %e, path = %path.display(), "remove a stale member socket");
            }
        }
        tracing::debug!(path = %path.display(), "bind member socket");
        let sock = UnixDatagram::bind(&path).map_err(bind_err)?;
        sock.set_nonblocking(true).map_err(bind_err)?;
        Ok(Peers {
            sock,
            path,
            dir: dir.to_path_buf(),
            members: MemberCache::new(dir),
            container_id: container_id.to_string(),
            ip: m.addr.ip,
            mac: m.mac,
            dns_enabled: m.dns_enabled,
            forged: 0,
            lost: 0,
            scope: Vec::new(),
        })
    }

    /// The run directories of the container's other networks, whose members DNS here
    /// answers too (after this network's own), as aardvark-dns answers a container on
    /// several networks.
    pub fn set_scope(&mut self, dirs: Vec<PathBuf>) {
        self.scope = dirs.iter().map(|d| MemberCache::new(d)).collect();
    }

    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.sock)
    }

    /// Our container's address on the network.
    pub(super) fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// Our container's MAC (set on its tap; its frames must carry it).
    pub(super) fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// The recorded MAC of the other member at `ip`, for an ARP reply; `Some(None)`
    /// when the member's MAC does not parse (the gateway's is answered instead).
    pub(super) fn member_mac(&mut self, ip: Ipv4Addr) -> Option<Option<[u8; 6]>> {
        let me = &self.container_id;
        self.members
            .members()
            .iter()
            .find(|m| m.ip == ip && &m.container_id != me)
            .map(|m| super::tap::parse_mac(&m.mac))
    }

    /// Counts (and logs, sparingly) a frame from our container whose source is not its
    /// own address or MAC: it is dropped, so no member ever sees it.
    pub(super) fn forged(&mut self, why: &str, claimed: &str) {
        self.forged += 1;
        if self.forged.is_power_of_two() {
            tracing::debug!(
                container = socket_name(&self.container_id),
                why,
                claimed,
                forged = self.forged,
                "dropped a frame with a forged source"
            );
        }
    }

    fn send(&mut self, frame: &[u8], id: &str) {
        let to = self.dir.join(socket_name(id));
        if let Err(e) = self.sock.send_to(frame, &to) {
            self.lost += 1;
            if self.lost.is_power_of_two() {
                tracing::debug!(error = %e, to = %to.display(), lost = self.lost, "member send");
            }
        }
    }

    /// Sends a frame (vnet header included) to the other member that has `dst`; false
    /// if no other member has it. Never to our own socket.
    pub fn forward(&mut self, frame: &[u8], dst: Ipv4Addr) -> bool {
        let me = &self.container_id;
        let Some(id) = self
            .members
            .members()
            .iter()
            .find(|m| m.ip == dst && &m.container_id != me)
            .map(|m| m.container_id.clone())
        else {
            return false;
        };
        self.send(frame, &id);
        true
    }

    /// Sends a broadcast or multicast frame to every other member of the network.
    pub(super) fn broadcast(&mut self, frame: &[u8]) {
        let me = &self.container_id;
        let others: Vec<String> = self
            .members
            .members()
            .iter()
            .filter(|m| &m.container_id != me)
            .map(|m| m.container_id.clone())
            .collect();
        for id in others {
            self.send(frame, &id);
        }
    }

    /// The next frame from another member.
    pub fn recv(&self, buf: &mut [u8]) -> Option<usize> {
        self.sock.recv(buf).ok()
    }

    /// The gateway's answer to a DNS query about a member or under `dns.podman`;
    /// None: not ours (relay it), or the network has DNS disabled.
    pub fn dns_answer(&mut self, q: &[u8]) -> Option<Vec<u8>> {
        if !self.dns_enabled {
            return None;
        }
        let (members, scope) = (&mut self.members, &mut self.scope);
        super::dns::answer(q, &mut |name| {
            members
                .lookup(name)
                .or_else(|| scope.iter_mut().find_map(|c| c.lookup(name)))
                .map(|m| m.ip)
        })
    }
}

impl Drop for Peers {
    fn drop(&mut self) {
        tracing::debug!(path = %self.path.display(), "unlink member socket");
        let _ = std::fs::remove_file(&self.path);
    }
}
