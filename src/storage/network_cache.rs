//! The members file of a network under the runroot: written by the store on every
//! membership change, read by monitors (which let go of the database while their
//! container runs) through [`MemberCache`].

use std::path::{Path, PathBuf};

use super::networks::NetworkMember;

const MEMBERS_FILE: &str = "members.json";

pub(crate) fn write_members(dir: &Path, members: &[NetworkMember]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{MEMBERS_FILE}.{}", std::process::id()));
    std::fs::write(&tmp, serde_json::to_vec(members).unwrap_or_default())?;
    std::fs::rename(&tmp, dir.join(MEMBERS_FILE))
}

/// A network's members as its monitors see them: the members file under
/// [`super::networks::network_run_dir`], re-read only when it was replaced (one stat per call), so it is
/// cheap enough to consult on every DNS query.
pub struct MemberCache {
    path: PathBuf,
    stamp: Option<(u64, i64, i64, u64)>,
    members: Vec<NetworkMember>,
}

impl MemberCache {
    /// `run_dir` is [`super::networks::network_run_dir`] of the network (learned at start from the store).
    pub fn new(run_dir: &Path) -> MemberCache {
        MemberCache {
            path: run_dir.join(MEMBERS_FILE),
            stamp: None,
            members: Vec::new(),
        }
    }

    /// The current members (empty if the file is missing or unreadable).
    pub fn members(&mut self) -> &[NetworkMember] {
        use std::os::unix::fs::MetadataExt;
        let stamp = std::fs::metadata(&self.path)
            .ok()
            .map(|m| (m.ino(), m.mtime(), m.mtime_nsec(), m.len()));
        if stamp != self.stamp {
            self.members = std::fs::read(&self.path)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default();
            self.stamp = stamp;
        }
        &self.members
    }

    /// The member answering to `name`: container name, alias, or ID (12 or 64 hex
    /// digits), as podman's aardvark-dns answers; DNS names know no case.
    pub fn lookup(&mut self, name: &str) -> Option<NetworkMember> {
        let name = name.trim_end_matches('.');
        let lower = name.to_ascii_lowercase();
        self.members()
            .iter()
            .find(|m| {
                m.name.eq_ignore_ascii_case(name)
                    || m.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
                    || (name.len() >= 12 && m.container_id.starts_with(&lower))
            })
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn member_cache_rereads_a_replaced_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = MemberCache::new(dir.path());
        assert!(cache.members().is_empty());
        let m = NetworkMember {
            container_id: "ab".repeat(32),
            name: "web".into(),
            aliases: vec!["api".into()],
            ip: Ipv4Addr::new(10, 89, 0, 2),
            mac: "02:00:00:00:00:01".into(),
        };
        write_members(dir.path(), std::slice::from_ref(&m)).unwrap();
        assert_eq!(cache.lookup("api."), Some(m.clone()));
        assert_eq!(cache.lookup("WEB").map(|x| x.ip), Some(m.ip));
        assert_eq!(cache.lookup("Api").map(|x| x.ip), Some(m.ip));
        assert_eq!(cache.lookup(&"AB".repeat(6)).map(|x| x.ip), Some(m.ip));
        assert_eq!(
            cache.lookup(&m.container_id[..12]).map(|x| x.ip),
            Some(m.ip)
        );
        write_members(dir.path(), &[]).unwrap();
        assert_eq!(cache.lookup("web"), None);
    }
}
