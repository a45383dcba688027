//! Writing a directory tree as a tar stream: the whole tree for `export`, or an overlay
//! upper dir as an OCI layer diff for `commit` (overlay whiteouts become `.wh.` entries,
//! opaque dirs get `.wh..wh..opq`). Runs in a helper that is already inside the user
//! namespace, so owners are written as the container sees them. Nothing is followed:
//! every entry is opened relative to its parent's fd with O_NOFOLLOW.

use std::collections::HashMap;
use std::ffi::{CString, OsStr, OsString};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{fstatat, FileStat, Mode};

use super::unpack::OverlayXattrs;

/// Extended attributes of one entry: (name, value).
type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

/// How the tree is turned into entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TreeMode {
    /// Everything as it is (a merged root filesystem).
    Export,
    /// An overlay upper dir: 0:0 char devices are deletions, the opaque xattr marks a
    /// directory that hides everything below it.
    Diff(OverlayXattrs),
}

/// Failures while archiving, naming the path inside the tree.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{path}: {op}: {source}")]
    Fs {
        path: String,
        op: &'static str,
        source: io::Error,
    },
    #[error("writing the archive: {0}")]
    Write(io::Error),
}

fn fs_err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(nix::Error) -> ArchiveError + 'a {
    move |e| ArchiveError::Fs {
        path: format!("/{}", path.display()),
        op,
        source: e.into(),
    }
}

/// What was written, for the caller's report.
#[derive(Debug, Default, Clone, Copy)]
pub struct Written {
    pub entries: u64,
    pub whiteouts: u64,
}

struct Walker<W: Write> {
    out: tar::Builder<W>,
    mode: TreeMode,
    /// (dev, ino) of regular files with several links → the first path written.
    links: HashMap<(u64, u64), PathBuf>,
    written: Written,
}

/// Writes the tree under `root` (a directory fd) to `out`, then the end-of-archive
/// blocks. Entry names are relative (`etc/passwd`), sorted per directory so the same
/// tree always gives the same bytes (and the same diff_id).
pub fn write_tree<W: Write>(
    root: &OwnedFd,
    mode: TreeMode,
    out: W,
) -> Result<Written, ArchiveError> {
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    let mut w = Walker {
        out: b,
        mode,
        links: HashMap::new(),
        written: Written::default(),
    };
    w.dir(root.as_fd(), Path::new(""))?;
    w.out.finish().map_err(ArchiveError::Write)?;
    w.out
        .into_inner()
        .and_then(|mut o| o.flush().map(|_| o))
        .map_err(ArchiveError::Write)?;
    Ok(w.written)
}

fn list(dir: BorrowedFd<'_>, rel: &Path) -> Result<Vec<OsString>, ArchiveError> {
    let fd = openat(
        dir,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(fs_err(rel, "open directory"))?;
    let mut d = nix::dir::Dir::from_fd(fd).map_err(fs_err(rel, "read directory"))?;
    let mut names = Vec::new();
    for e in d.iter() {
        let e = e.map_err(fs_err(rel, "read directory"))?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(OsString::from_vec(n.to_vec()));
        }
    }
    names.sort();
    Ok(names)
}

fn header_for(st: &FileStat, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(st.st_mode & 0o7777);
    h.set_uid(st.st_uid as u64);
    h.set_gid(st.st_gid as u64);
    h.set_mtime(st.st_mtime.max(0) as u64);
    h.set_size(0);
    h
}

impl<W: Write> Walker<W> {
    fn dir(&mut self, dir: BorrowedFd<'_>, rel: &Path) -> Result<(), ArchiveError> {
        for name in list(dir, rel)? {
            let path = rel.join(&name);
            let st = fstatat(dir, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
                .map_err(fs_err(&path, "stat"))?;
            self.entry(dir, &name, &path, &st)?;
        }
        Ok(())
    }

    fn entry(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        path: &Path,
        st: &FileStat,
    ) -> Result<(), ArchiveError> {
        let fmt = st.st_mode & libc::S_IFMT;
        let diff = matches!(self.mode, TreeMode::Diff(_));
        if diff && fmt == libc::S_IFCHR && st.st_rdev == 0 {
            // An overlay whiteout: the file was deleted in the container.
            let wh = path.with_file_name(format!(".wh.{}", name.to_string_lossy()));
            let mut h = header_for(st, tar::EntryType::Regular);
            h.set_mode(0o644);
            self.out
                .append_data(&mut h, &wh, io::empty())
                .map_err(ArchiveError::Write)?;
            self.written.whiteouts += 1;
            return Ok(());
        }
        match fmt {
            libc::S_IFDIR => {
                let fd = openat(
                    dir,
                    name,
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(fs_err(path, "open directory"))?;
                let xattrs = read_xattrs(&fd, path)?;
                let mut h = header_for(st, tar::EntryType::Directory);
                self.pax(path, &xattrs)?;
                self.out
                    .append_data(&mut h, path, io::empty())
                    .map_err(ArchiveError::Write)?;
                self.written.entries += 1;
                if let TreeMode::Diff(x) = self.mode {
                    if is_opaque(&fd, x) {
                        let mut h = header_for(st, tar::EntryType::Regular);
                        h.set_mode(0o644);
                        self.out
                            .append_data(&mut h, path.join(".wh..wh..opq"), io::empty())
                            .map_err(ArchiveError::Write)?;
                        self.written.whiteouts += 1;
                    }
                }
                self.dir(fd.as_fd(), path)
            }
            libc::S_IFREG => {
                if st.st_nlink > 1 {
                    let key = (st.st_dev, st.st_ino);
                    if let Some(first) = self.links.get(&key) {
                        let mut h = header_for(st, tar::EntryType::Link);
                        let first = first.clone();
                        self.out
                            .append_link(&mut h, path, &first)
                            .map_err(ArchiveError::Write)?;
                        self.written.entries += 1;
                        return Ok(());
                    }
                    self.links.insert(key, path.to_path_buf());
                }
                let fd = openat(
                    dir,
                    name,
                    OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
                    Mode::empty(),
                )
                .map_err(fs_err(path, "open"))?;
                let xattrs = read_xattrs(&fd, path)?;
                self.pax(path, &xattrs)?;
                let mut h = header_for(st, tar::EntryType::Regular);
                let size = st.st_size.max(0) as u64;
                h.set_size(size);
                // A file that changes while we read it (a running container) must still
                // fill exactly the size the header promised.
                let data = ExactSize {
                    inner: std::fs::File::from(fd).take(size),
                    left: size,
                };
                self.out
                    .append_data(&mut h, path, data)
                    .map_err(ArchiveError::Write)?;
                self.written.entries += 1;
                Ok(())
            }
            libc::S_IFLNK => {
                let target = nix::fcntl::readlinkat(dir, name).map_err(fs_err(path, "readlink"))?;
                let mut h = header_for(st, tar::EntryType::Symlink);
                self.out
                    .append_link(&mut h, path, Path::new(&target))
                    .map_err(ArchiveError::Write)?;
                self.written.entries += 1;
                Ok(())
            }
            libc::S_IFCHR | libc::S_IFBLK | libc::S_IFIFO => {
                let kind = match fmt {
                    libc::S_IFCHR => tar::EntryType::Char,
                    libc::S_IFBLK => tar::EntryType::Block,
                    _ => tar::EntryType::Fifo,
                };
                let mut h = header_for(st, kind);
                if fmt != libc::S_IFIFO {
                    let dev = st.st_rdev;
                    let _ = h.set_device_major(libc::major(dev));
                    let _ = h.set_device_minor(libc::minor(dev));
                }
                self.out
                    .append_data(&mut h, path, io::empty())
                    .map_err(ArchiveError::Write)?;
                self.written.entries += 1;
                Ok(())
            }
            // Sockets are not archived (tar cannot carry them; podman skips them too).
            _ => Ok(()),
        }
    }

    /// A PAX header carrying the entry's extended attributes (SCHILY.xattr.*).
    fn pax(&mut self, path: &Path, xattrs: &Xattrs) -> Result<(), ArchiveError> {
        if xattrs.is_empty() {
            return Ok(());
        }
        let mut data = Vec::new();
        for (k, v) in xattrs {
            let mut rec = b" SCHILY.xattr.".to_vec();
            rec.extend_from_slice(k);
            rec.push(b'=');
            rec.extend_from_slice(v);
            rec.push(b'\n');
            data.extend_from_slice(&pax_record(&rec));
        }
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::XHeader);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        let name = format!(
            "PaxHeaders.0/{}",
            path.file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default()
        );
        let short: String = name.chars().take(99).collect();
        h.set_path(&short).map_err(ArchiveError::Write)?;
        h.set_cksum();
        self.out
            .append(&h, data.as_slice())
            .map_err(ArchiveError::Write)
    }
}

/// Prefixes a PAX record (` key=value\n`) with its own total length in decimal.
fn pax_record(rest: &[u8]) -> Vec<u8> {
    let mut len = rest.len() + 1;
    loop {
        let total = len.to_string().len() + rest.len();
        if total == len {
            break;
        }
        len = total;
    }
    let mut out = len.to_string().into_bytes();
    out.extend_from_slice(rest);
    out
}

/// Reads at most `left` bytes from `inner`, then zeros up to `left` if it ran short.
struct ExactSize<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for ExactSize<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf.len().min(self.left as usize);
        let n = match self.inner.read(&mut buf[..want])? {
            0 => {
                buf[..want].fill(0);
                want
            }
            n => n,
        };
        self.left -= n as u64;
        Ok(n)
    }
}

fn is_opaque(fd: &OwnedFd, x: OverlayXattrs) -> bool {
    let name = match x {
        OverlayXattrs::User => "user.overlay.opaque",
        OverlayXattrs::Trusted => "trusted.overlay.opaque",
    };
    matches!(fgetxattr(fd, name), Some(v) if v == b"y")
}

fn fgetxattr(fd: &OwnedFd, name: &str) -> Option<Vec<u8>> {
    let n = CString::new(name).ok()?;
    let mut buf = vec![0u8; 4096];
    // SAFETY: a valid fd, a NUL-terminated name and a buffer of the given length.
    let len = unsafe {
        libc::fgetxattr(
            fd.as_raw_fd(),
            n.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    (len >= 0).then(|| {
        buf.truncate(len as usize);
        buf
    })
}

/// The entry's extended attributes, minus overlay's own metadata (never part of an
/// image) and those this process may not read.
fn read_xattrs(fd: &OwnedFd, path: &Path) -> Result<Xattrs, ArchiveError> {
    let mut buf = vec![0u8; 4096];
    // SAFETY: a valid fd and a buffer of the given length.
    let len = unsafe { libc::flistxattr(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    if len < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENOTSUP) => Ok(Vec::new()),
            _ => Err(ArchiveError::Fs {
                path: format!("/{}", path.display()),
                op: "list xattrs",
                source: e,
            }),
        };
    }
    buf.truncate(len as usize);
    let mut out = Vec::new();
    for name in buf.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let s = String::from_utf8_lossy(name);
        if s.contains(".overlay.") {
            continue;
        }
        if let Some(v) = fgetxattr(fd, &s) {
            out.push((name.to_vec(), v));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_lengths_count_themselves() {
        let r = pax_record(b" SCHILY.xattr.user.a=b\n");
        let s = String::from_utf8(r.clone()).unwrap();
        let (n, _) = s.split_once(' ').unwrap();
        assert_eq!(n.parse::<usize>().unwrap(), r.len());
        // 95 bytes + the two digits of "97" is 97: the length counts itself.
        let long = vec![b'x'; 95];
        let r = pax_record(&long);
        assert_eq!(r.len(), 97);
        assert!(r.starts_with(b"97"));
        // 98 bytes + "100" is 101: one more digit moves the length past 99.
        let r = pax_record(&[b'y'; 98]);
        assert_eq!(r.len(), 101);
        assert!(r.starts_with(b"101"));
    }

    #[test]
    fn exact_size_pads_short_files() {
        let mut r = ExactSize {
            inner: &b"abc"[..],
            left: 5,
        };
        let mut v = Vec::new();
        r.read_to_end(&mut v).unwrap();
        assert_eq!(v, b"abc\0\0");
    }
}
