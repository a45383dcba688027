//! Dispatching tar entries, regular files and directories, and the final
//! directory metadata pass.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};

use nix::errno::Errno;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{fchmod, futimens, makedev, mkdirat, Mode, SFlag};
use nix::unistd::syncfs;
use tar::EntryType;

use super::meta::{chown_fd, read_meta, set_xattrs, timespec, Meta, Target};
use super::path::{
    is_under, kind_at, open_beneath, remove_all_at, RelPath, ResolveError, Resolver,
};
use super::{Failure, SkippedEntry, UnpackError, UnpackOptions};

pub(super) const WHITEOUT: &[u8] = b".wh.";
const COPY_BUF: usize = 256 << 10;

/// Directory mode and mtime are applied after all entries: children would
/// bump the mtime, and a read-only mode would block creating them.
#[derive(Debug, Clone, Copy)]
pub(super) struct DirMeta {
    mode: u32,
    mtime: Option<i64>,
}

pub(super) type Dirs = HashMap<Vec<u8>, DirMeta>;

pub(super) struct Unpacker<'o> {
    pub(super) opts: &'o UnpackOptions,
    pub(super) res: Resolver,
    pub(super) dirs: Dirs,
    pub(super) skipped: Vec<SkippedEntry>,
    buf: Vec<u8>,
    entries: u64,
}

pub(super) fn unsafe_path(shown: &str, reason: impl Into<String>) -> UnpackError {
    UnpackError::UnsafePath {
        path: shown.to_owned(),
        reason: reason.into(),
    }
}

pub(super) fn resolve_err(shown: &str, e: ResolveError) -> UnpackError {
    match e {
        ResolveError::Unsafe(reason) => unsafe_path(shown, reason),
        ResolveError::NotFound => UnpackError::fs("open parent directory", shown, Errno::ENOENT),
        ResolveError::NotDir => UnpackError::fs("open parent directory", shown, Errno::ENOTDIR),
        ResolveError::Sys(op, e) => UnpackError::fs(op, shown, e),
    }
}

/// Resolves (creating as needed) the parent directory of `path`. A free
/// function so the returned fd borrows only the resolver, not all of `self`.
pub(super) fn parent_fd<'r>(
    res: &'r mut Resolver,
    dirs: &mut Dirs,
    path: &RelPath,
    shown: &str,
) -> Result<BorrowedFd<'r>, UnpackError> {
    let mut created = |p: &[u8]| {
        dirs.insert(
            p.to_vec(),
            DirMeta {
                mode: 0o755,
                mtime: None,
            },
        );
    };
    res.dir(path.parent(), true, &mut created)
        .map_err(|e| resolve_err(shown, e))
}

/// Makes room for a new entry at `path`, removing what an earlier entry put
/// there (recursively for directories, forgetting their metadata). Returns
/// true when an existing directory is kept instead (`keep_dir`).
pub(super) fn clear(
    dirs: &mut Dirs,
    parent: BorrowedFd<'_>,
    path: &RelPath,
    keep_dir: bool,
    shown: &str,
) -> Result<bool, UnpackError> {
    let name = path.name();
    let existing = kind_at(parent, name).map_err(|e| UnpackError::fs("fstatat", shown, e))?;
    match existing {
        None => Ok(false),
        Some(SFlag::S_IFDIR) if keep_dir => Ok(true),
        Some(kind) => {
            tracing::trace!(path = shown, "replacing an earlier entry");
            if kind == SFlag::S_IFDIR {
                dirs.retain(|d, _| !is_under(d, path.as_bytes()));
            }
            remove_all_at(parent, name, kind)
                .map_err(|e| UnpackError::fs("remove earlier entry", shown, e))?;
            Ok(false)
        }
    }
}

/// Runs `create` (an O_EXCL-style call that fails with EEXIST rather than
/// follow anything), and only when the name is taken clears it and retries:
/// most entries are new, so this saves a stat per entry.
pub(super) fn create_at<T>(
    dirs: &mut Dirs,
    parent: BorrowedFd<'_>,
    path: &RelPath,
    shown: &str,
    mut create: impl FnMut() -> nix::Result<T>,
) -> Result<nix::Result<T>, UnpackError> {
    match create() {
        Err(Errno::EEXIST) => {
            clear(dirs, parent, path, false, shown)?;
            Ok(create())
        }
        r => Ok(r),
    }
}

/// Fills `buf` from `r` as far as it goes, so files are written in large
/// chunks whatever sizes the decoder hands out.
fn fill(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

impl<'o> Unpacker<'o> {
    pub(super) fn new(res: Resolver, opts: &'o UnpackOptions) -> Self {
        Self {
            opts,
            res,
            dirs: HashMap::new(),
            skipped: Vec::new(),
            buf: Vec::new(),
            entries: 0,
        }
    }

    /// Creates one entry. Later entries win over earlier ones at the same path.
    pub(super) fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), Failure> {
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let kind = entry.header().entry_type();
        let offset = entry.raw_header_position();
        let stream_err = |err| Failure::Stream {
            entry: Some(shown.clone()),
            offset: Some(offset),
            err,
        };
        if kind.is_pax_global_extensions() {
            return Ok(());
        }
        self.entries += 1;
        tracing::trace!(path = %shown, kind = ?kind, offset, "entry");
        let path = RelPath::parse(&raw).map_err(|r| unsafe_path(&shown, r))?;
        let meta = read_meta(entry, &shown).map_err(stream_err)?;
        let is_dir =
            kind == EntryType::Directory || (kind == EntryType::Regular && raw.ends_with(b"/"));

        if !path.is_root() && path.name().starts_with(WHITEOUT) {
            return Ok(self.whiteout(&path, &shown, &meta)?);
        }
        if path.is_root() && !is_dir {
            let reason = "only a directory may stand for the layer root";
            return Err(unsafe_path(&shown, reason).into());
        }
        // Whatever was cached at or under this path may be about to change.
        self.res.invalidate(path.as_bytes());
        match kind {
            _ if is_dir => self.dir(&path, &shown, &meta)?,
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.file(entry, &path, &shown, &meta)?
            }
            EntryType::Symlink | EntryType::Link => {
                let what = if kind == EntryType::Link {
                    "hardlink"
                } else {
                    "symlink"
                };
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| {
                        stream_err(io::Error::other(format!("{what} entry without a target")))
                    })?
                    .into_owned();
                if kind == EntryType::Link {
                    self.hardlink(&path, &target, &shown)?
                } else {
                    self.symlink(&path, &target, &shown, &meta)?
                }
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let h = entry.header();
                let major = h.device_major().map_err(stream_err)?.unwrap_or(0);
                let minor = h.device_minor().map_err(stream_err)?.unwrap_or(0);
                let sflag = match kind {
                    EntryType::Char => SFlag::S_IFCHR,
                    EntryType::Block => SFlag::S_IFBLK,
                    _ => SFlag::S_IFIFO,
                };
                let dev = makedev(major.into(), minor.into());
                self.node(&path, &shown, &meta, sflag, dev)?
            }
            other => {
                tracing::warn!(path = %shown, kind = ?other, "skipping unsupported tar entry type");
                self.skipped.push(SkippedEntry {
                    path: shown.clone(),
                    reason: format!("unsupported tar entry type {:?}", other.as_byte() as char),
                });
            }
        }
        Ok(())
    }

    fn dir(&mut self, path: &RelPath, shown: &str, meta: &Meta) -> Result<(), UnpackError> {
        let fd = if path.is_root() {
            open_beneath(self.res.root(), b"", OFlag::O_RDONLY | OFlag::O_DIRECTORY)
                .map_err(|e| UnpackError::fs("open layer root", shown, e))?
        } else {
            let parent = parent_fd(&mut self.res, &mut self.dirs, path, shown)?;
            tracing::trace!(path = shown, "mkdirat");
            let mode = Mode::from_bits_truncate(0o700);
            match mkdirat(parent, path.name(), mode) {
                Err(Errno::EEXIST) if !clear(&mut self.dirs, parent, path, true, shown)? => {
                    mkdirat(parent, path.name(), mode)
                }
                Err(Errno::EEXIST) => Ok(()),
                r => r,
            }
            .map_err(|e| UnpackError::fs("mkdirat", shown, e))?;
            let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
            openat(parent, path.name(), flags, Mode::empty())
                .map_err(|e| UnpackError::fs("open directory", shown, e))?
        };
        chown_fd(fd.as_fd(), meta, shown)?;
        set_xattrs(&Target::Fd(fd.as_fd()), meta, shown)?;
        let dm = DirMeta {
            mode: meta.mode,
            mtime: Some(meta.mtime),
        };
        self.dirs.insert(path.as_bytes().to_vec(), dm);
        Ok(())
    }

    fn file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        path: &RelPath,
        shown: &str,
        meta: &Meta,
    ) -> Result<(), Failure> {
        let expected = entry.size();
        let offset = entry.raw_header_position();
        let parent = parent_fd(&mut self.res, &mut self.dirs, path, shown)?;
        tracing::trace!(path = shown, size = expected, "create file");
        let flags =
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let mode = Mode::from_bits_truncate(0o600);
        let fd = create_at(&mut self.dirs, parent, path, shown, || {
            openat(parent, path.name(), flags, mode)
        })?
        .map_err(|e| UnpackError::fs("create file", shown, e))?;
        let mut file = File::from(fd);

        if self.buf.is_empty() {
            self.buf = vec![0; COPY_BUF];
        }
        let mut total = 0u64;
        loop {
            let n = fill(entry, &mut self.buf).map_err(|err| Failure::Stream {
                entry: Some(shown.to_owned()),
                offset: Some(offset),
                err,
            })?;
            if n == 0 {
                break;
            }
            total += n as u64;
            file.write_all(&self.buf[..n])
                .map_err(|e| UnpackError::fs("write", shown, e))?;
        }
        if total != expected {
            let msg = format!("file data ends after {total} of {expected} bytes");
            return Err(Failure::Stream {
                entry: Some(shown.to_owned()),
                offset: Some(offset),
                err: io::Error::new(io::ErrorKind::UnexpectedEof, msg),
            });
        }
        // chown clears setuid/setgid and file capabilities: chown first, then
        // xattrs (security.capability), then the mode.
        chown_fd(file.as_fd(), meta, shown)?;
        set_xattrs(&Target::Fd(file.as_fd()), meta, shown)?;
        fchmod(&file, Mode::from_bits_truncate(meta.mode))
            .map_err(|e| UnpackError::fs("fchmod", shown, e))?;
        let t = timespec(meta.mtime);
        futimens(&file, &t, &t).map_err(|e| UnpackError::fs("futimens", shown, e))?;
        Ok(())
    }

    /// Applies directory modes and mtimes deepest first (so a parent's mtime
    /// is set after its children stop changing it), then flushes the
    /// filesystem once for the whole layer.
    pub(super) fn finish(self, dest: &str) -> Result<Vec<SkippedEntry>, UnpackError> {
        let mut dirs: Vec<(RelPath, DirMeta)> = self
            .dirs
            .into_iter()
            .map(|(p, m)| {
                (
                    RelPath::parse(&p).unwrap_or_else(|_| RelPath::join(b"", b"")),
                    m,
                )
            })
            .collect();
        dirs.sort_by_key(|(p, _)| std::cmp::Reverse(p.depth()));
        tracing::debug!(
            dest,
            entries = self.entries,
            dirs = dirs.len(),
            "setting directory metadata"
        );
        for (path, dm) in &dirs {
            let shown = path.display();
            let fd = self
                .res
                .open_dir(path.as_bytes(), OFlag::O_RDONLY)
                .map_err(|e| resolve_err(&shown, e))?;
            fchmod(&fd, Mode::from_bits_truncate(dm.mode))
                .map_err(|e| UnpackError::fs("fchmod", shown.clone(), e))?;
            if let Some(mtime) = dm.mtime {
                let t = timespec(mtime);
                futimens(&fd, &t, &t).map_err(|e| UnpackError::fs("futimens", shown.clone(), e))?;
            }
        }
        tracing::debug!(dest, "syncfs");
        let fd = open_beneath(self.res.root(), b"", OFlag::O_RDONLY | OFlag::O_DIRECTORY)
            .map_err(|e| UnpackError::fs("open layer directory", dest, e))?;
        syncfs(&fd).map_err(|e| UnpackError::fs("syncfs", dest, e))?;
        Ok(self.skipped)
    }
}
