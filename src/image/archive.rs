//! What `save` writes and `load` reads: docker-archive (`docker save` / `podman save`
//! output) and the OCI image layout, in a tar (oci-archive) or a directory (oci-dir).

use std::path::{Component, Path, PathBuf};

use super::ImageError;

pub const OCI_LAYOUT: &str = r#"{"imageLayoutVersion":"1.0.0"}"#;
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Docker 25+ writes the full name here and only the tag in REF_NAME.
pub const CONTAINERD_NAME: &str = "io.containerd.image.name";
pub const MT_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MT_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MT_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const MT_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const MT_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

/// The archive formats of podman's `save --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    DockerArchive,
    OciArchive,
    OciDir,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Format, String> {
        match s {
            "docker-archive" => Ok(Format::DockerArchive),
            "oci-archive" => Ok(Format::OciArchive),
            "oci-dir" => Ok(Format::OciDir),
            other => Err(format!(
                "unsupported format {other:?}: use docker-archive, oci-archive or oci-dir"
            )),
        }
    }
}

/// One `manifest.json` entry of a docker-archive.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct DockerManifest {
    #[serde(rename = "Config")]
    pub config: String,
    #[serde(rename = "RepoTags", default)]
    pub repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    pub layers: Vec<String>,
}

/// A path inside an archive, made relative and free of `.`/`..` so it can never name
/// anything outside the archive; None when it tries to climb out.
pub fn clean_member(name: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in name.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::Prefix(_) => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

/// The layer media type for a blob whose first bytes are `head`.
pub fn layer_media_type(head: &[u8]) -> &'static str {
    match crate::storage::unpack::Compression::sniff(head) {
        crate::storage::unpack::Compression::Gzip => MT_LAYER_GZIP,
        crate::storage::unpack::Compression::Zstd => MT_LAYER_ZSTD,
        crate::storage::unpack::Compression::None => MT_LAYER_TAR,
    }
}

/// An error about an archive file or directory.
pub fn archive_err(path: &str, detail: impl Into<String>) -> ImageError {
    ImageError::Transfer {
        what: path.to_string(),
        detail: detail.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_cannot_climb_out() {
        assert_eq!(
            clean_member(Path::new("./blobs/sha256/ab")),
            Some(PathBuf::from("blobs/sha256/ab"))
        );
        assert_eq!(
            clean_member(Path::new("/abs/x")),
            Some(PathBuf::from("abs/x"))
        );
        assert_eq!(
            clean_member(Path::new("a/../b.tar")),
            Some(PathBuf::from("b.tar"))
        );
        assert_eq!(clean_member(Path::new("../etc/passwd")), None);
        assert_eq!(clean_member(Path::new(".")), None);
    }

    #[test]
    fn formats_parse() {
        assert_eq!("oci-dir".parse::<Format>(), Ok(Format::OciDir));
        assert!("docker-dir".parse::<Format>().is_err());
    }
}
