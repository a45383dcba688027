//! `--cidfile` on stop and rm: the container a systemd unit started is found through the
//! ID file its `run --cidfile` wrote, so ExecStop/ExecStopPost never depend on names.

use std::path::PathBuf;

use super::Exit;

/// The containers named on the command line, or read from the ID files. With `ignore`,
/// a missing ID file names no container (the unit never got as far as creating one).
pub fn targets(
    containers: &[String],
    cidfiles: &[PathBuf],
    ignore: bool,
) -> anyhow::Result<Vec<String>> {
    if cidfiles.is_empty() {
        return Ok(containers.to_vec());
    }
    if !containers.is_empty() {
        return Err(Exit::with(
            125,
            "no arguments are needed with --cidfile: give either container names or --cidfile",
        ));
    }
    let mut ids = Vec::new();
    for f in cidfiles {
        match std::fs::read_to_string(f) {
            Ok(text) => {
                let id = text.lines().next().unwrap_or("").trim().to_string();
                if id.is_empty() {
                    if ignore {
                        continue;
                    }
                    return Err(Exit::with(
                        125,
                        format!("container id file {} is empty", f.display()),
                    ));
                }
                ids.push(id);
            }
            Err(e) if ignore && e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Exit::with(
                    125,
                    format!("reading container id file {}: {e}", f.display()),
                ))
            }
        }
    }
    Ok(ids)
}
