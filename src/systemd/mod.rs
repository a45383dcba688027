//! systemd integration: Quadlet `.container` files turned into services (skiff also
//! works as a systemd generator), `generate systemd` for existing containers, and the
//! unit file syntax both need. The sd_notify messages themselves come from the monitor,
//! the one process that lives as long as the container.

pub mod generate;
pub mod quadlet;
pub mod unit;

use std::path::PathBuf;

/// Errors reading or writing unit files, naming the file and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum SystemdError {
    /// The file is not valid unit file syntax.
    #[error("{path}:{line}: {detail}")]
    Syntax {
        path: String,
        line: usize,
        detail: String,
    },
    /// A [Container] key skiff does not implement: an error, so nothing is dropped quietly.
    #[error("unsupported key '{key}' in group 'Container' in {path}: remove it, or pass an equivalent skiff flag with SkiffArgs=")]
    UnsupportedKey { key: String, path: PathBuf },
    /// A value skiff cannot turn into a command line.
    #[error("{path}: {detail}")]
    Quadlet { path: PathBuf, detail: String },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}
