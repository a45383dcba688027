//! OCI layer unpacking into a directory that overlayfs can use as a lower layer.
//!
//! Runs in a helper process that is already inside the right user namespace,
//! so owners from the tar headers are applied as they are and the namespace's
//! ID mapping turns them into the subordinate IDs on disk. OCI whiteouts are
//! converted to overlay's format while unpacking, so the directory can be
//! stacked directly. The layer is untrusted input: see `path.rs` for how
//! nothing is ever written outside `dest`.

mod entry;
mod meta;
mod nodes;
mod path;
#[cfg(test)]
mod tests;

use std::io::{self, Read};
use std::path::Path;

use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;
use sha2::{Digest, Sha256};

use entry::Unpacker;
use path::Resolver;

/// How a layer blob is compressed; unpacking needs it to pick a decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// Guesses from the first bytes of a blob, for blobs whose media type
    /// does not say (docker v2 schema 1, `load` of odd archives).
    pub fn sniff(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    /// Maps OCI and Docker layer media types; `None` for a type that is not a
    /// layer tar at all (the caller should refuse it rather than guess).
    pub fn from_media_type(media_type: &str) -> Option<Compression> {
        let base = media_type.split(';').next().unwrap_or("").trim();
        match base {
            "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.docker.image.rootfs.diff.tar" => Some(Compression::None),
            "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => {
                Some(Compression::Gzip)
            }
            "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => {
                Some(Compression::Zstd)
            }
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Compression::None => "uncompressed",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

/// Which xattr namespace overlayfs reads its metadata from: a rootless
/// mount uses `userxattr` (`user.overlay.*`), a rootful one `trusted.overlay.*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverlayXattrs {
    User,
    Trusted,
}

impl OverlayXattrs {
    fn opaque_name(self) -> &'static [u8] {
        match self {
            OverlayXattrs::User => b"user.overlay.opaque",
            OverlayXattrs::Trusted => b"trusted.overlay.opaque",
        }
    }
}

/// Knobs for one unpack; the size limit protects the disk from
/// decompression bombs.
#[derive(Debug, Clone)]
pub struct UnpackOptions {
    /// Must match how the layer will be mounted, or opaque dirs are ignored.
    pub xattrs: OverlayXattrs,
    /// Fail once the decompressed stream exceeds this many bytes (None: no
    /// limit); the default of 64 GiB is far above any sane layer.
    pub max_uncompressed: Option<u64>,
}

impl Default for UnpackOptions {
    fn default() -> Self {
        Self {
            xattrs: OverlayXattrs::User,
            max_uncompressed: Some(64 << 30),
        }
    }
}

/// An entry that was deliberately not created, reported so the CLI can tell
/// the user (e.g. device nodes in a rootless layer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedEntry {
    pub path: String,
    pub reason: String,
}

/// What the caller needs to verify and record the layer: `diff_id` must be
/// compared with the image config before the directory is trusted.
#[derive(Debug, Clone)]
pub struct UnpackSummary {
    /// `sha256:<hex>` of the decompressed stream, to compare with the config.
    pub diff_id: String,
    /// Bytes of the decompressed stream, for `images` size and the db.
    pub uncompressed_size: u64,
    /// Entries left out on purpose, to report to the user.
    pub skipped: Vec<SkippedEntry>,
}

/// Errors from unpacking; after any of them the caller discards `dest`.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error(
        "layer entry {path:?} is unsafe: {reason}; the image is broken or malicious, do not use it"
    )]
    UnsafePath { path: String, reason: String },

    #[error(
        "{path} needs UID {uid} and GID {gid}, which are not mapped in this user namespace: \
         add subordinate IDs to /etc/subuid and /etc/subgid, e.g. \
         `usermod --add-subuids 100000-165535 --add-subgids 100000-165535 USER`"
    )]
    UnmappedId { path: String, uid: u64, gid: u64 },

    #[error(
        "reading the {compression} layer stream failed at uncompressed offset {offset}: {message}; \
         the blob is corrupt or truncated, remove it and pull again"
    )]
    Decompress {
        compression: &'static str,
        offset: u64,
        message: String,
    },

    #[error(
        "layer is larger than the limit of {limit} bytes uncompressed; \
         it may be a decompression bomb (raise storage.max_layer_size in skiff.toml only if you trust the image)"
    )]
    TooLarge { limit: u64 },

    #[error(
        "malformed tar stream at offset {offset}{}: {source}; the layer is corrupt, pull it again",
        fmt_entry(entry)
    )]
    Tar {
        entry: Option<String>,
        offset: u64,
        source: io::Error,
    },

    #[error("{op} failed for {path}: {source}; check free space and permissions of the storage directory")]
    Fs {
        op: &'static str,
        path: String,
        source: io::Error,
    },
}

fn fmt_entry(entry: &Option<String>) -> String {
    match entry {
        Some(e) => format!(" (entry {e:?})"),
        None => String::new(),
    }
}

impl UnpackError {
    fn fs(op: &'static str, path: impl Into<String>, e: impl Into<io::Error>) -> Self {
        UnpackError::Fs {
            op,
            path: path.into(),
            source: e.into(),
        }
    }
}

/// An error while walking the archive, before we know whether the stream
/// (decoder, size limit) or the tar format is to blame.
enum Failure {
    Unpack(UnpackError),
    Stream {
        entry: Option<String>,
        offset: Option<u64>,
        err: io::Error,
    },
}

impl From<UnpackError> for Failure {
    fn from(e: UnpackError) -> Self {
        Failure::Unpack(e)
    }
}

enum TapFault {
    Read(String),
    TooLarge,
}

/// Sits between the decoder and the tar parser: hashes and counts every
/// decompressed byte and enforces the size limit.
struct Tap<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
    limit: Option<u64>,
    fault: Option<TapFault>,
}

impl<R: Read> Read for Tap<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.fault.is_some() {
            return Err(io::Error::other("layer stream already failed"));
        }
        let n = match self.inner.read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Err(e),
            Err(e) => {
                self.fault = Some(TapFault::Read(e.to_string()));
                return Err(e);
            }
        };
        self.count += n as u64;
        if self.limit.is_some_and(|l| self.count > l) {
            self.fault = Some(TapFault::TooLarge);
            return Err(io::Error::other("uncompressed size limit exceeded"));
        }
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

impl<R> Tap<R> {
    fn classify(&self, compression: Compression, f: Failure) -> UnpackError {
        match (f, &self.fault) {
            (Failure::Unpack(e), None) => e,
            (_, Some(TapFault::TooLarge)) => UnpackError::TooLarge {
                limit: self.limit.unwrap_or(u64::MAX),
            },
            (_, Some(TapFault::Read(message))) => UnpackError::Decompress {
                compression: compression.name(),
                offset: self.count,
                message: message.clone(),
            },
            (Failure::Stream { entry, offset, err }, None) => UnpackError::Tar {
                entry,
                offset: offset.unwrap_or(self.count),
                source: err,
            },
        }
    }
}

/// Unpacks one layer stream into the empty directory `dest` and returns its
/// diff_id, computed over the whole decompressed stream (end-of-archive
/// blocks and padding included) so it matches `sha256sum` of the tar.
pub fn unpack_layer<R: Read>(
    input: R,
    compression: Compression,
    dest: &Path,
    opts: &UnpackOptions,
) -> Result<UnpackSummary, UnpackError> {
    let dest_str = dest.display().to_string();
    tracing::debug!(dest = %dest_str, compression = compression.name(), "unpacking layer");
    let root = open(
        dest,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| UnpackError::fs("open layer directory", dest_str.clone(), e))?;

    let decoder: Box<dyn Read + '_> = match compression {
        Compression::None => Box::new(input),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(input)),
        Compression::Zstd => {
            Box::new(
                zstd::Decoder::new(input).map_err(|e| UnpackError::Decompress {
                    compression: compression.name(),
                    offset: 0,
                    message: e.to_string(),
                })?,
            )
        }
    };
    let mut tap = Tap {
        inner: decoder,
        hasher: Sha256::new(),
        count: 0,
        limit: opts.max_uncompressed,
        fault: None,
    };

    let mut unpacker = Unpacker::new(Resolver::new(root), opts);
    let walked = {
        let mut archive = tar::Archive::new(&mut tap);
        walk(&mut archive, &mut unpacker)
    };
    if let Err(f) = walked {
        return Err(tap.classify(compression, f));
    }
    // The tar parser stops at the first zero block; the rest of the stream
    // (second zero block, blocking padding) is part of the diff_id.
    if let Err(err) = io::copy(&mut tap, &mut io::sink()) {
        let f = Failure::Stream {
            entry: None,
            offset: None,
            err,
        };
        return Err(tap.classify(compression, f));
    }

    let skipped = unpacker.finish(&dest_str)?;
    let diff_id = format!("sha256:{}", hex::encode(tap.hasher.finalize()));
    tracing::debug!(dest = %dest_str, %diff_id, size = tap.count, skipped = skipped.len(), "layer unpacked");
    Ok(UnpackSummary {
        diff_id,
        uncompressed_size: tap.count,
        skipped,
    })
}

fn walk<R: Read>(
    archive: &mut tar::Archive<R>,
    unpacker: &mut Unpacker<'_>,
) -> Result<(), Failure> {
    let mut last: Option<String> = None;
    let entries = archive.entries().map_err(|err| Failure::Stream {
        entry: None,
        offset: Some(0),
        err,
    })?;
    for entry in entries {
        let mut entry = entry.map_err(|err| Failure::Stream {
            entry: last.as_ref().map(|l| format!("after {l}")),
            offset: None,
            err,
        })?;
        last = Some(String::from_utf8_lossy(&entry.path_bytes()).into_owned());
        unpacker.entry(&mut entry)?;
    }
    Ok(())
}
