//! TEMPORARY stub until the real unpacker lands.
use std::io::Read;
use std::path::Path;

#[derive(Debug, Clone, Copy)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}
impl Compression {
    pub fn sniff(b: &[u8]) -> Compression {
        if b.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if b.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}
#[derive(Debug, Clone, Copy)]
pub enum OverlayXattrs {
    User,
    Trusted,
}
#[derive(Debug, Clone)]
pub struct UnpackOptions {
    pub xattrs: OverlayXattrs,
    pub max_uncompressed: Option<u64>,
}
impl Default for UnpackOptions {
    fn default() -> Self {
        UnpackOptions {
            xattrs: OverlayXattrs::User,
            max_uncompressed: Some(64 << 30),
        }
    }
}
#[derive(Debug)]
pub struct UnpackSummary {
    pub diff_id: String,
    pub uncompressed_size: u64,
}
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

struct Hashing<R> {
    r: R,
    h: sha2::Sha256,
    n: u64,
}
impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use sha2::Digest;
        let n = self.r.read(buf)?;
        self.h.update(&buf[..n]);
        self.n += n as u64;
        Ok(n)
    }
}

pub fn unpack_layer<R: Read>(
    input: R,
    c: Compression,
    dest: &Path,
    _o: &UnpackOptions,
) -> Result<UnpackSummary, UnpackError> {
    use sha2::Digest;
    let r: Box<dyn Read> = match c {
        Compression::None => Box::new(input),
        Compression::Gzip => Box::new(flate2::read::GzDecoder::new(input)),
        Compression::Zstd => Box::new(zstd::Decoder::new(input)?),
    };
    let mut h = Hashing {
        r,
        h: sha2::Sha256::new(),
        n: 0,
    };
    {
        let mut a = tar::Archive::new(&mut h);
        a.set_preserve_permissions(true);
        a.set_preserve_ownerships(true);
        a.set_unpack_xattrs(false);
        a.unpack(dest)?;
    }
    std::io::copy(&mut h, &mut std::io::sink())?;
    Ok(UnpackSummary {
        diff_id: format!("sha256:{}", hex::encode(h.h.finalize())),
        uncompressed_size: h.n,
    })
}
