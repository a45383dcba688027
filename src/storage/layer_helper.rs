//! The unpack helper: a freshly exec'd skiff that enters the user namespace (so file
//! owners land as the image says, seen from inside) and turns a layer stream on stdin
//! into a layer directory. It reports the diff_id and waits for the parent's verdict,
//! because only the parent knows whether the compressed digest matched.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::unpack::{self, Compression, OverlayXattrs, UnpackOptions};

/// What the helper tells the parent after the stream ended.
#[derive(Debug, Serialize, Deserialize)]
pub struct Summary {
    pub diff_id: Option<String>,
    pub size: u64,
    pub error: Option<String>,
    /// Entries the kernel refused (device nodes in a user namespace), already warned about.
    pub skipped: Vec<String>,
}

/// Arguments of the hidden `__unpack-layer` command.
#[derive(Debug, clap::Args)]
pub struct HelperArgs {
    #[arg(long)]
    pub layers_dir: PathBuf,
    #[arg(long)]
    pub name: String,
    #[arg(long)]
    pub media_type: String,
    #[arg(long)]
    pub trusted_xattrs: bool,
    /// Uncompressed bytes the layer may have (storage.max_layer_size).
    #[arg(long)]
    pub max_size: Option<u64>,
}

/// Entry point of the helper; returns the process exit code.
pub fn main(args: &HelperArgs) -> i32 {
    let mut sync = match crate::userns::enter_helper(
        "__unpack-layer is internal and must be started by skiff",
    ) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let tmp = args.layers_dir.join(format!(
        ".tmp-{}-{}-{}",
        args.name,
        std::process::id(),
        hex::encode(super::random_bytes::<4>())
    ));
    let result = unpack_into(args, &tmp);
    let summary = match &result {
        Ok(s) => Summary {
            skipped: s
                .skipped
                .iter()
                .map(|e| format!("{}: {}", e.path, e.reason))
                .collect(),
            diff_id: Some(s.diff_id.clone()),
            size: s.uncompressed_size,
            error: None,
        },
        Err(e) => Summary {
            skipped: Vec::new(),
            diff_id: None,
            size: 0,
            error: Some(e.clone()),
        },
    };
    let line = serde_json::to_string(&summary).unwrap_or_default();
    let _ = sync.write_all(format!("{line}\n").as_bytes());
    if result.is_err() {
        remove_tree(&tmp);
        return 1;
    }
    let mut verdict = String::new();
    let _ = BufReader::new(&sync).read_line(&mut verdict);
    let reply = if verdict.trim() == "commit" {
        let dest = args.layers_dir.join(&args.name);
        tracing::debug!(from = %tmp.display(), to = %dest.display(), "rename layer");
        match std::fs::rename(&tmp, &dest) {
            Ok(()) => "ok".to_string(),
            // Another pull committed the same layer first: theirs is as good as ours.
            Err(_) if dest.is_dir() => {
                remove_tree(&tmp);
                "ok".to_string()
            }
            Err(e) => {
                remove_tree(&tmp);
                format!("cannot move layer into {}: {e}", dest.display())
            }
        }
    } else {
        remove_tree(&tmp);
        "aborted".to_string()
    };
    let _ = sync.write_all(format!("{reply}\n").as_bytes());
    0
}

fn unpack_into(args: &HelperArgs, tmp: &Path) -> Result<unpack::UnpackSummary, String> {
    std::fs::create_dir(tmp).map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
    let stdin = std::io::stdin().lock();
    let reader = BufReader::with_capacity(1 << 20, stdin);
    let opts = UnpackOptions {
        xattrs: if args.trusted_xattrs {
            OverlayXattrs::Trusted
        } else {
            OverlayXattrs::User
        },
        max_uncompressed: args.max_size.or(UnpackOptions::default().max_uncompressed),
    };
    let compression = Compression::from_media_type(&args.media_type);
    let s = match compression {
        Some(c) => unpack::unpack_layer(reader, c, tmp, &opts),
        None => {
            let mut reader = reader;
            let head = reader.fill_buf().map_err(|e| e.to_string())?;
            let c = Compression::sniff(head);
            unpack::unpack_layer(reader, c, tmp, &opts)
        }
    };
    if s.is_ok() {
        // Drain anything after the archive so the parent never blocks on a full pipe; on
        // error we stop reading at once and the parent sees a closed pipe.
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
    }
    s.map_err(|e| e.to_string())
}

/// Removes a tree owned by IDs of this user namespace; used by helpers that already
/// entered it.
pub fn remove_tree(p: &Path) {
    if let Err(e) = std::fs::remove_dir_all(p) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(path = %p.display(), error = %e, "cannot remove");
        }
    }
}
