//! User-defined networks: frames between members go monitor to monitor. Each member's
//! monitor binds a unix datagram socket in the network's run directory
//! (`<runroot>/networks/<id12>/<container id12>`), answers ARP for every address of
//! the link, and sends a frame for another member's address, as read from its tap, to
//! that member's socket; what arrives there goes to its own tap. The members and their
//! addresses come from the members file the store keeps there (MemberCache). DNS at
//! the gateway answers members' names and aliases and relays the rest. Nothing
//! outlives the monitors: each one removes its socket when its network goes.

use std::net::Ipv4Addr;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

use crate::storage::network_cache::MemberCache;

pub struct Peers {
    sock: UnixDatagram,
    path: PathBuf,
    dir: PathBuf,
    members: MemberCache,
}

fn socket_name(id: &str) -> &str {
    &id[..id.len().min(12)]
}

impl Peers {
    /// Binds this member's socket in the network's run directory.
    pub fn bind(dir: &Path, container_id: &str) -> Result<Peers, String> {
        let path = dir.join(socket_name(container_id));
        let _ = std::fs::create_dir_all(dir);
        let _ = std::fs::remove_file(&path);
        tracing::debug!(path = %path.display(), "bind member socket");
        let sock = UnixDatagram::bind(&path)
            .map_err(|e| format!("binding the network socket {}: {e}", path.display()))?;
        sock.set_nonblocking(true)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Peers {
            sock,
            path,
            dir: dir.to_path_buf(),
            members: MemberCache::new(dir),
        })
    }

    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.sock)
    }

    /// Every member's address.
    pub fn addresses(&mut self) -> Vec<Ipv4Addr> {
        self.members.members().iter().map(|m| m.ip).collect()
    }

    /// Sends a frame (vnet header included) to the member that has `dst`; false if no
    /// member has it.
    pub fn forward(&mut self, frame: &[u8], dst: Ipv4Addr) -> bool {
        let Some(id) = self
            .members
            .members()
            .iter()
            .find(|m| m.ip == dst)
            .map(|m| m.container_id.clone())
        else {
            return false;
        };
        let to = self.dir.join(socket_name(&id));
        // A member that is not running has no socket: the frame is lost, as on a wire.
        let _ = self.sock.send_to(frame, &to);
        true
    }

    /// The next frame from another member.
    pub fn recv(&self, buf: &mut [u8]) -> Option<usize> {
        self.sock.recv(buf).ok()
    }

    /// An answer to a DNS query for a member's name or alias (A records; other
    /// types for a member's name get an empty answer); None: not a member, relay it.
    pub fn dns_answer(&mut self, q: &[u8]) -> Option<Vec<u8>> {
        if q.len() < 17 || q[2] & 0x80 != 0 || u16::from_be_bytes([q[4], q[5]]) != 1 {
            return None;
        }
        let mut name = String::new();
        let mut i = 12;
        while i < q.len() && q[i] != 0 {
            let len = usize::from(q[i]);
            if len > 63 || i + 1 + len > q.len() {
                return None;
            }
            if !name.is_empty() {
                name.push('.');
            }
            name.push_str(&String::from_utf8_lossy(&q[i + 1..i + 1 + len]));
            i += 1 + len;
        }
        let end = i + 5;
        if end > q.len() {
            return None;
        }
        let qtype = u16::from_be_bytes([q[i + 1], q[i + 2]]);
        // podman's aardvark-dns answers NAME and NAME.dns.podman.
        let short = name.strip_suffix(".dns.podman").unwrap_or(&name);
        let ip = self.members.lookup(short)?.ip;
        let mut r = q[..end].to_vec();
        r[2] = 0x84 | (q[2] & 0x01); // response, authoritative, RD copied
        r[3] = 0x80; // RA, NOERROR
        let a = qtype == 1;
        r[6..12].copy_from_slice(&[0, u8::from(a), 0, 0, 0, 0]);
        if a {
            r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
            r.extend_from_slice(&ip.octets());
        }
        Some(r)
    }
}

impl Drop for Peers {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
