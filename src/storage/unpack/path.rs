//! Path handling that cannot leave the layer directory.
//!
//! Every entry is created relative to a directory fd that was resolved with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`, so neither `..`, an
//! absolute path, nor a symlink planted by an earlier entry can redirect a
//! write outside `dest`. The final component is then handled by `*at()` calls
//! that never follow it.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{openat, openat2, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstatat, mkdirat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};

/// A normalized path inside the layer: no leading `/` or `./`, no `.` or empty
/// components, no `..`. The empty path is the layer root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RelPath {
    full: Vec<u8>,
    /// Index of the last `/` in `full`, if any.
    split: Option<usize>,
}

impl RelPath {
    /// Normalizes a tar path, or says why it is unsafe.
    pub(super) fn parse(raw: &[u8]) -> Result<Self, &'static str> {
        if raw.first() == Some(&b'/') {
            return Err("absolute paths are not allowed in a layer");
        }
        if raw.contains(&0) {
            return Err("the path contains a NUL byte");
        }
        let mut full = Vec::with_capacity(raw.len());
        for comp in raw.split(|&b| b == b'/') {
            match comp {
                b"" | b"." => {}
                b".." => return Err("`..` components are not allowed in a layer"),
                _ => {
                    if !full.is_empty() {
                        full.push(b'/');
                    }
                    full.extend_from_slice(comp);
                }
            }
        }
        Ok(Self::from_normalized(full))
    }

    fn from_normalized(full: Vec<u8>) -> Self {
        let split = full.iter().rposition(|&b| b == b'/');
        Self { full, split }
    }

    /// Joins a normalized parent with one plain component.
    pub(super) fn join(parent: &[u8], name: &[u8]) -> Self {
        let mut full = Vec::with_capacity(parent.len() + name.len() + 1);
        full.extend_from_slice(parent);
        if !parent.is_empty() {
            full.push(b'/');
        }
        full.extend_from_slice(name);
        Self::from_normalized(full)
    }

    pub(super) fn is_root(&self) -> bool {
        self.full.is_empty()
    }

    pub(super) fn as_bytes(&self) -> &[u8] {
        &self.full
    }

    pub(super) fn parent(&self) -> &[u8] {
        match self.split {
            Some(i) => &self.full[..i],
            None => b"",
        }
    }

    pub(super) fn name(&self) -> &[u8] {
        match self.split {
            Some(i) => &self.full[i + 1..],
            None => &self.full,
        }
    }

    /// Number of components, used to order directories deepest first.
    pub(super) fn depth(&self) -> usize {
        if self.full.is_empty() {
            0
        } else {
            1 + self.full.iter().filter(|&&b| b == b'/').count()
        }
    }

    pub(super) fn display(&self) -> String {
        String::from_utf8_lossy(&self.full).into_owned()
    }
}

/// True when `path` is `prefix` or lies below it.
pub(super) fn is_under(path: &[u8], prefix: &[u8]) -> bool {
    prefix.is_empty()
        || path == prefix
        || (path.len() > prefix.len() && path.starts_with(prefix) && path[prefix.len()] == b'/')
}

/// Why a directory inside the layer could not be reached.
#[derive(Debug)]
pub(super) enum ResolveError {
    /// Reaching it would go through a symlink or leave the layer.
    Unsafe(&'static str),
    /// Some component is missing (only when not creating).
    NotFound,
    /// Some component exists but is not a directory.
    NotDir,
    Sys(&'static str, Errno),
}

impl ResolveError {
    fn from_errno(op: &'static str, e: Errno) -> Self {
        match e {
            Errno::ELOOP => Self::Unsafe("a parent component is a symlink"),
            Errno::EXDEV => Self::Unsafe("the path resolves outside the layer directory"),
            Errno::ENOENT => Self::NotFound,
            Errno::ENOTDIR => Self::NotDir,
            e => Self::Sys(op, e),
        }
    }
}

/// Tells a symlink at the end of `path` (unsafe) from a plain non-directory:
/// with O_DIRECTORY|O_NOFOLLOW the kernel reports both as ENOTDIR.
fn diagnose(dir: BorrowedFd<'_>, path: &[u8], op: &'static str, e: Errno) -> ResolveError {
    if e != Errno::ENOTDIR {
        return ResolveError::from_errno(op, e);
    }
    match open_beneath(dir, path, OFlag::O_PATH) {
        Ok(fd) => match nix::sys::stat::fstat(&fd) {
            Ok(st) if st.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFLNK.bits() => {
                ResolveError::Unsafe("a parent component is a symlink")
            }
            _ => ResolveError::NotDir,
        },
        Err(e) => ResolveError::from_errno(op, e),
    }
}

fn how(flags: OFlag) -> OpenHow {
    OpenHow::new()
        .flags(flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
        .resolve(
            ResolveFlag::RESOLVE_BENEATH
                | ResolveFlag::RESOLVE_NO_SYMLINKS
                | ResolveFlag::RESOLVE_NO_MAGICLINKS,
        )
}

/// `openat2` confined to `dir`, retried on the EAGAIN it returns when a
/// concurrent rename makes the kernel unsure the walk stayed beneath.
pub(super) fn open_beneath(dir: BorrowedFd<'_>, path: &[u8], flags: OFlag) -> nix::Result<OwnedFd> {
    let path: &[u8] = if path.is_empty() { b"." } else { path };
    let mut tries = 0;
    loop {
        match openat2(dir, path, how(flags)) {
            Err(Errno::EAGAIN) if tries < 16 => tries += 1,
            Err(Errno::EINTR) => {}
            r => return r,
        }
    }
}

/// Resolves parent directories of entries, caching the last one because
/// consecutive tar entries almost always share a parent.
pub(super) struct Resolver {
    root: OwnedFd,
    cache: Option<(Vec<u8>, OwnedFd)>,
}

impl Resolver {
    pub(super) fn new(root: OwnedFd) -> Self {
        Self { root, cache: None }
    }

    pub(super) fn root(&self) -> BorrowedFd<'_> {
        self.root.as_fd()
    }

    /// Drops the cached fd if `changed` (about to be replaced or removed) is
    /// that directory or one of its ancestors, so later entries re-resolve
    /// and notice a swapped-in symlink.
    pub(super) fn invalidate(&mut self, changed: &[u8]) {
        if let Some((cached, _)) = &self.cache {
            if is_under(cached, changed) {
                self.cache = None;
            }
        }
    }

    /// Opens (O_PATH) the directory `path`, creating missing components as
    /// 0755 directories when `create` is set; `created` is told about each
    /// new one so its mode can be fixed at the end regardless of umask.
    pub(super) fn dir(
        &mut self,
        path: &[u8],
        create: bool,
        created: &mut dyn FnMut(&[u8]),
    ) -> Result<BorrowedFd<'_>, ResolveError> {
        if path.is_empty() {
            return Ok(self.root.as_fd());
        }
        let hit = matches!(&self.cache, Some((p, _)) if p.as_slice() == path);
        if !hit {
            self.cache = None;
            let flags = OFlag::O_PATH | OFlag::O_DIRECTORY;
            let fd = match open_beneath(self.root.as_fd(), path, flags) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) if create => self.create_dirs(path, created)?,
                Err(e) => return Err(diagnose(self.root.as_fd(), path, "openat2", e)),
            };
            self.cache = Some((path.to_vec(), fd));
        }
        match &self.cache {
            Some((_, fd)) => Ok(fd.as_fd()),
            None => Err(ResolveError::NotFound),
        }
    }

    /// Opens a directory without touching the cache (for hardlink targets
    /// and the final metadata pass).
    pub(super) fn open_dir(&self, path: &[u8], flags: OFlag) -> Result<OwnedFd, ResolveError> {
        open_beneath(self.root.as_fd(), path, flags | OFlag::O_DIRECTORY)
            .map_err(|e| diagnose(self.root.as_fd(), path, "openat2", e))
    }

    fn create_dirs(
        &self,
        path: &[u8],
        created: &mut dyn FnMut(&[u8]),
    ) -> Result<OwnedFd, ResolveError> {
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY;
        let mut cur: Option<OwnedFd> = None;
        let mut end = 0;
        for comp in path.split(|&b| b == b'/') {
            end += comp.len();
            let parent = match &cur {
                Some(fd) => fd.as_fd(),
                None => self.root.as_fd(),
            };
            let next = match open_beneath(parent, comp, flags) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) => {
                    tracing::trace!(dir = %String::from_utf8_lossy(&path[..end]), "mkdirat (implicit parent)");
                    match mkdirat(parent, comp, Mode::from_bits_truncate(0o755)) {
                        Ok(()) => created(&path[..end]),
                        Err(Errno::EEXIST) => {}
                        Err(e) => return Err(ResolveError::Sys("mkdirat", e)),
                    }
                    open_beneath(parent, comp, flags)
                        .map_err(|e| diagnose(parent, comp, "openat2", e))?
                }
                Err(e) => return Err(diagnose(parent, comp, "openat2", e)),
            };
            cur = Some(next);
            end += 1;
        }
        cur.ok_or(ResolveError::NotFound)
    }
}

/// What is at a name, without following it.
pub(super) fn kind_at(dir: BorrowedFd<'_>, name: &[u8]) -> nix::Result<Option<SFlag>> {
    match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(SFlag::from_bits_truncate(
            st.st_mode & SFlag::S_IFMT.bits(),
        ))),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Removes `name` in `dir` and, for a directory, everything below it. Only
/// `*at()` calls on fds opened with O_NOFOLLOW are used, so a symlink inside
/// the tree is unlinked, never followed.
pub(super) fn remove_all_at(dir: BorrowedFd<'_>, name: &[u8], kind: SFlag) -> nix::Result<()> {
    if kind != SFlag::S_IFDIR {
        return unlinkat(dir, name, UnlinkatFlags::NoRemoveDir);
    }
    let fd = openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let mut children = Vec::new();
    {
        let mut listing = nix::dir::Dir::from_fd(fd.try_clone().map_err(|_| Errno::EMFILE)?)?;
        for ent in listing.iter() {
            let ent = ent?;
            let child = ent.file_name().to_bytes();
            if child != b"." && child != b".." {
                children.push(child.to_vec());
            }
        }
    }
    for child in children {
        if let Some(k) = kind_at(fd.as_fd(), &child)? {
            remove_all_at(fd.as_fd(), &child, k)?;
        }
    }
    unlinkat(dir, name, UnlinkatFlags::RemoveDir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_normalizes_and_rejects() {
        let p = RelPath::parse(b"./a//b/./c/").unwrap();
        assert_eq!(p.as_bytes(), b"a/b/c");
        assert_eq!(p.parent(), b"a/b");
        assert_eq!(p.name(), b"c");
        assert_eq!(p.depth(), 3);
        assert!(RelPath::parse(b"./").unwrap().is_root());
        assert!(RelPath::parse(b"/etc").is_err());
        assert!(RelPath::parse(b"a/../b").is_err());
        assert!(RelPath::parse(b"..").is_err());
        let top = RelPath::parse(b"x").unwrap();
        assert_eq!((top.parent(), top.name()), (&b""[..], &b"x"[..]));
        assert_eq!(RelPath::join(b"a", b"b").as_bytes(), b"a/b");
    }

    #[test]
    fn is_under_matches_components_only() {
        assert!(is_under(b"a/b", b"a"));
        assert!(is_under(b"a", b"a"));
        assert!(!is_under(b"ab", b"a"));
        assert!(is_under(b"x", b""));
    }
}
