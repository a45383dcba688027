//! Images: reference parsing, the registry client, and pulling into the store.

pub mod archive;
pub mod compose;
mod fetch;
pub use fetch::set_max_layer_size;
pub mod load;
pub mod login;
pub mod progress;
pub mod pull;
pub mod push;
pub mod push_gzip;
pub mod reference;
mod registry;
pub mod remap;
pub mod save;

pub use pull::pull;

use std::path::PathBuf;

/// Errors from resolving and pulling images; each names the image or registry.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(transparent)]
    Reference(#[from] reference::ReferenceError),
    #[error(transparent)]
    Registries(#[from] crate::config::registries::RegistriesError),
    #[error(transparent)]
    Auth(#[from] crate::config::auth::AuthError),
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    #[error(transparent)]
    Userns(#[from] crate::userns::UsernsError),
    /// The registry could not be reached or answered with an error.
    #[error("pulling {image} from {registry}: {detail}")]
    Registry {
        image: String,
        registry: String,
        detail: String,
    },
    /// No candidate for a short name could be pulled.
    #[error("{input}: image not known, tried: {tried}")]
    NotFound { input: String, tried: String },
    /// The manifest or config is not something we can run.
    #[error("image {image}: {detail}")]
    Invalid { image: String, detail: String },
    /// No manifest in an index fits this host.
    #[error("image {image} has no variant for {platform}: available: {available}")]
    NoPlatform {
        image: String,
        platform: String,
        available: String,
    },
    /// Downloaded bytes did not hash to the digest the manifest promised.
    #[error("image {image}: layer {digest}: digest mismatch, the registry sent {actual}: the blob is corrupt or was tampered with")]
    DigestMismatch {
        image: String,
        digest: String,
        actual: String,
    },
    /// The uncompressed layer did not match the diff_id in the image config.
    #[error("image {image}: layer {digest}: uncompressed content has {actual}, the image config says {expected}: the image is corrupt")]
    DiffIdMismatch {
        image: String,
        digest: String,
        expected: String,
        actual: String,
    },
    /// The unpack helper failed (bad tar, unsafe path, unmapped owner, ...).
    #[error("image {image}: layer {digest}: {detail}")]
    Unpack {
        image: String,
        digest: String,
        detail: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// login, push, save or load failed; `what` names the registry, image or file.
    #[error("{what}: {detail}")]
    Transfer { what: String, detail: String },
    /// Pull policy `never` and the image is not in the store.
    #[error("{0}: image not known and --pull=never was given")]
    NotPresent(String),
}

/// The platform an index entry must match for this host, as `os/arch[/variant]`.
pub fn host_platform() -> (String, String, Option<String>) {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    };
    let variant = match arch {
        "arm64" => Some("v8".to_string()),
        "arm" => Some("v7".to_string()),
        _ => None,
    };
    ("linux".to_string(), arch.to_string(), variant)
}
