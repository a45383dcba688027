//! Building layers: deterministic tars ([`LayerTar`]) and compressed blobs ([`Blob`]).

use std::io::Write as _;

use tar::{EntryType, Header};

use super::MTIME;
use crate::registry::digest;

pub const MT_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MT_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MT_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MT_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const MT_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const MT_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

/// A deterministic layer tar: fixed mtimes, no user/group names.
pub struct LayerTar {
    b: tar::Builder<Vec<u8>>,
}

impl Default for LayerTar {
    fn default() -> Self {
        Self::new()
    }
}

impl LayerTar {
    pub fn new() -> LayerTar {
        LayerTar {
            b: tar::Builder::new(Vec::new()),
        }
    }

    fn header(kind: EntryType, mode: u32, uid: u32, gid: u32, size: u64) -> Header {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(uid.into());
        h.set_gid(gid.into());
        h.set_size(size);
        h.set_mtime(MTIME);
        h
    }

    pub fn dir(&mut self, path: &str, mode: u32, uid: u32, gid: u32) -> &mut Self {
        let mut h = Self::header(EntryType::Directory, mode, uid, gid, 0);
        self.b.append_data(&mut h, path, &[][..]).expect("tar dir");
        self
    }

    pub fn file(&mut self, path: &str, mode: u32, uid: u32, gid: u32, data: &[u8]) -> &mut Self {
        let mut h = Self::header(EntryType::Regular, mode, uid, gid, data.len() as u64);
        self.b.append_data(&mut h, path, data).expect("tar file");
        self
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        let mut h = Self::header(EntryType::Symlink, 0o777, 0, 0, 0);
        self.b
            .append_link(&mut h, path, target)
            .expect("tar symlink");
        self
    }

    /// A hardlink; `target` is a path in the archive (no leading /).
    pub fn hardlink(&mut self, path: &str, target: &str) -> &mut Self {
        let mut h = Self::header(EntryType::Link, 0o644, 0, 0, 0);
        self.b
            .append_link(&mut h, path, target)
            .expect("tar hardlink");
        self
    }

    /// A device node or fifo (`kind` Char, Block or Fifo) with its numbers.
    pub fn special(&mut self, path: &str, kind: EntryType, major: u32, minor: u32) -> &mut Self {
        let mut h = Self::header(kind, 0o644, 0, 0, 0);
        h.set_device_major(major).expect("device major");
        h.set_device_minor(minor).expect("device minor");
        self.b
            .append_data(&mut h, path, &[][..])
            .expect("tar special");
        self
    }

    /// OCI whiteout of `path` (from a lower layer): writes `dir/.wh.name`.
    pub fn whiteout(&mut self, path: &str) -> &mut Self {
        let (dir, name) = path.rsplit_once('/').map_or(("", path), |(d, n)| (d, n));
        let wh = if dir.is_empty() {
            format!(".wh.{name}")
        } else {
            format!("{dir}/.wh.{name}")
        };
        self.file(&wh, 0o644, 0, 0, b"")
    }

    /// OCI opaque marker for `dir`: `dir/.wh..wh..opq`.
    pub fn opaque(&mut self, dir: &str) -> &mut Self {
        self.file(&format!("{dir}/.wh..wh..opq"), 0o644, 0, 0, b"")
    }

    /// A PAX extended header applying to the next entry, e.g. SCHILY.xattr.user.x.
    pub fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        let mut data = Vec::new();
        for (key, value) in records {
            let rest = key.len() + value.len() + 3; // ' ', '=', '\n'
            let mut len = rest + 1;
            while len != rest + len.to_string().len() {
                len = rest + len.to_string().len();
            }
            data.extend_from_slice(format!("{len} {key}=").as_bytes());
            data.extend_from_slice(value);
            data.push(b'\n');
        }
        self.raw(EntryType::XHeader, b"PaxHeader", b"", &data)
    }

    /// An entry with raw name/linkname bytes (no path checks: `..`, absolute paths).
    pub fn raw(&mut self, kind: EntryType, name: &[u8], link: &[u8], data: &[u8]) -> &mut Self {
        let mut h = Self::header(kind, 0o644, 0, 0, data.len() as u64);
        let old = h.as_old_mut();
        assert!(name.len() < old.name.len() && link.len() < old.linkname.len());
        old.name[..name.len()].copy_from_slice(name);
        old.linkname[..link.len()].copy_from_slice(link);
        h.set_cksum();
        self.b.append(&h, data).expect("tar raw entry");
        self
    }

    pub fn finish(self) -> Vec<u8> {
        self.b.into_inner().expect("finish tar")
    }
}

/// A layer blob as pushed, with the digest of its uncompressed tar.
#[derive(Clone, Debug)]
pub struct Blob {
    pub media_type: &'static str,
    pub bytes: Vec<u8>,
    pub diff_id: String,
}

pub fn plain(tar: Vec<u8>) -> Blob {
    Blob {
        media_type: MT_TAR,
        diff_id: digest(&tar),
        bytes: tar,
    }
}

pub fn gzip(tar: Vec<u8>) -> Blob {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(&tar).expect("gzip");
    Blob {
        media_type: MT_GZIP,
        diff_id: digest(&tar),
        bytes: enc.finish().expect("gzip"),
    }
}

pub fn zstd(tar: Vec<u8>) -> Blob {
    Blob {
        media_type: MT_ZSTD,
        diff_id: digest(&tar),
        bytes: zstd::encode_all(&tar[..], 3).expect("zstd"),
    }
}

/// An OCI descriptor of some bytes.
pub fn descriptor(media_type: &str, bytes: &[u8]) -> serde_json::Value {
    serde_json::json!({"mediaType": media_type, "digest": digest(bytes), "size": bytes.len()})
}
