//! Test helpers: in-memory tars (including hand-made hostile headers), a
//! scratch area on a real disk (user.* xattrs), and a tree fingerprint used
//! to prove that nothing outside `dest` changed.

mod basic;
mod hostile;
mod stream;
mod userns;

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tar::{EntryType, Header};

use super::{unpack_layer, Compression, UnpackError, UnpackOptions, UnpackSummary};

pub(super) const MTIME: u64 = 1_600_000_000;

pub(super) fn euid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

pub(super) fn egid() -> u32 {
    nix::unistd::getegid().as_raw()
}

pub(super) fn is_root() -> bool {
    euid() == 0
}

/// A temp dir on the real disk holding `dest` (empty) and `sentinel` (a
/// tree that hostile layers try to reach).
pub(super) struct Scratch {
    _tmp: tempfile::TempDir,
    pub dest: PathBuf,
    pub sentinel: PathBuf,
}

impl Scratch {
    pub fn new() -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("skiff-unpack-test-")
            .tempdir_in("/var/tmp")
            .unwrap();
        let dest = tmp.path().join("dest");
        let sentinel = tmp.path().join("sentinel");
        fs::create_dir(&dest).unwrap();
        fs::create_dir_all(sentinel.join("etc")).unwrap();
        fs::write(sentinel.join("etc/passwd"), b"root:x:0:0::/root:/bin/sh\n").unwrap();
        fs::write(sentinel.join("file"), b"precious").unwrap();
        fs::write(sentinel.join("x"), b"do not touch").unwrap();
        Self {
            _tmp: tmp,
            dest,
            sentinel,
        }
    }

    pub fn unpack(&self, tar: &[u8]) -> Result<UnpackSummary, UnpackError> {
        unpack_layer(
            tar,
            Compression::None,
            &self.dest,
            &UnpackOptions::default(),
        )
    }

    pub fn unpack_with(
        &self,
        tar: &[u8],
        opts: &UnpackOptions,
    ) -> Result<UnpackSummary, UnpackError> {
        unpack_layer(tar, Compression::None, &self.dest, opts)
    }

    pub fn p(&self, rel: &str) -> PathBuf {
        self.dest.join(rel)
    }
}

/// Builds tars in memory; entries default to the caller's own IDs so the
/// tests also pass as a non-root user.
pub(super) struct Tar {
    b: tar::Builder<Vec<u8>>,
}

pub(super) fn header(kind: EntryType, mode: u32, size: u64) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(euid().into());
    h.set_gid(egid().into());
    h.set_mtime(MTIME);
    h
}

impl Tar {
    pub fn new() -> Self {
        Self {
            b: tar::Builder::new(Vec::new()),
        }
    }

    pub fn file(mut self, path: &str, data: &[u8], mode: u32) -> Self {
        let mut h = header(EntryType::Regular, mode, data.len() as u64);
        self.b.append_data(&mut h, path, data).unwrap();
        self
    }

    pub fn file_h(mut self, path: &str, data: &[u8], mut h: Header) -> Self {
        h.set_size(data.len() as u64);
        self.b.append_data(&mut h, path, data).unwrap();
        self
    }

    pub fn dir(mut self, path: &str, mode: u32) -> Self {
        let mut h = header(EntryType::Directory, mode, 0);
        self.b.append_data(&mut h, path, &[][..]).unwrap();
        self
    }

    pub fn dir_h(mut self, path: &str, mut h: Header) -> Self {
        self.b.append_data(&mut h, path, &[][..]).unwrap();
        self
    }

    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        let mut h = header(EntryType::Symlink, 0o777, 0);
        self.b.append_link(&mut h, path, target).unwrap();
        self
    }

    pub fn hardlink(mut self, path: &str, target: &str) -> Self {
        let mut h = header(EntryType::Link, 0o644, 0);
        self.b.append_link(&mut h, path, target).unwrap();
        self
    }

    pub fn node(mut self, path: &str, kind: EntryType, major: u32, minor: u32) -> Self {
        let mut h = header(kind, 0o644, 0);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        self.b.append_data(&mut h, path, &[][..]).unwrap();
        self
    }

    pub fn pax(mut self, exts: &[(&str, &[u8])]) -> Self {
        self.b.append_pax_extensions(exts.iter().copied()).unwrap();
        self
    }

    /// An entry whose name and link name bytes are written verbatim, for
    /// paths `Header::set_path` refuses (`..`, absolute).
    pub fn raw(mut self, kind: EntryType, name: &[u8], link: &[u8], data: &[u8]) -> Self {
        let mut h = header(kind, 0o644, data.len() as u64);
        let old = h.as_old_mut();
        old.name = [0; 100];
        old.name[..name.len()].copy_from_slice(name);
        old.linkname = [0; 100];
        old.linkname[..link.len()].copy_from_slice(link);
        h.set_cksum();
        self.b.append(&h, data).unwrap();
        self
    }

    pub fn build(self) -> Vec<u8> {
        self.b.into_inner().unwrap()
    }
}

pub(super) fn sha256_hex(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// Reads one xattr of `path` without following a symlink.
pub(super) fn get_xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    let mut buf = vec![0u8; 4096];
    // SAFETY: NUL-terminated strings and a buffer whose length is passed.
    let rc = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if rc < 0 {
        return None;
    }
    buf.truncate(rc as usize);
    Some(buf)
}

fn xattr_names(path: &Path) -> Vec<u8> {
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let mut buf = vec![0u8; 65536];
    // SAFETY: NUL-terminated path and a buffer whose length is passed.
    let rc = unsafe { libc::llistxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    buf.truncate(rc.max(0) as usize);
    buf
}

/// Fingerprint of a tree: names, types, owners, modes, mtimes, contents,
/// link targets and xattrs, never following symlinks.
pub(super) fn tree_hash(root: &Path) -> String {
    fn walk(dir: &Path, root: &Path, h: &mut Sha256) {
        let mut names: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        for p in names {
            let md = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap();
            h.update(rel.as_os_str().as_bytes());
            let desc = format!(
                "|{:o}|{}|{}|{}|{}|{}|",
                md.mode(),
                md.uid(),
                md.gid(),
                md.size(),
                md.mtime(),
                md.rdev()
            );
            h.update(desc.as_bytes());
            h.update(xattr_names(&p));
            let ft = md.file_type();
            if ft.is_symlink() {
                h.update(fs::read_link(&p).unwrap().as_os_str().as_bytes());
            } else if ft.is_file() {
                h.update(fs::read(&p).unwrap());
            } else if ft.is_dir() {
                walk(&p, root, h);
            } else {
                assert!(
                    ft.is_char_device() || ft.is_block_device() || ft.is_fifo() || ft.is_socket()
                );
            }
        }
    }
    let mut h = Sha256::new();
    let md = fs::symlink_metadata(root).unwrap();
    h.update(format!("{:o}|{}|{}|{}", md.mode(), md.uid(), md.gid(), md.mtime()).as_bytes());
    h.update(xattr_names(root));
    walk(root, root, &mut h);
    hex::encode(h.finalize())
}
