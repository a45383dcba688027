//! The effective configuration for this command: skiff.toml files, environment and
//! flags (see `config::file`), resolved before anything touches the store, so a
//! malformed file stops every command with one clear line and changes nothing.

use std::ffi::OsString;

use super::{Cli, Command, Exit};
use crate::config::file::{self, Flags, Settings};
use crate::config::Paths;

/// Hidden helpers get their store from the flags their parent passes and never read
/// configuration files: a file edited while containers run must not break them.
fn is_helper(c: &Command) -> bool {
    matches!(
        c,
        Command::Monitor(_)
            | Command::UnpackLayer(_)
            | Command::ExecHelper
            | Command::CpHelper
            | Command::ArchiveHelper
            | Command::RmTree { .. }
            | Command::UnshareHelper { .. }
    )
}

/// `$XDG_CONFIG_HOME`, defaulting to `~/.config`.
fn config_home() -> Option<std::path::PathBuf> {
    match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(v) if std::path::Path::new(&v).is_absolute() => Some(v.into()),
        _ => crate::config::home_dir().ok().map(|h| h.join(".config")),
    }
}

/// The store paths and the settings they came from.
pub fn resolve(cli: &Cli) -> anyhow::Result<(Paths, Settings)> {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let flags = Flags {
        root: cli.root.clone().filter(|_| file::flag_given(&argv, "root")),
        runroot: cli
            .runroot
            .clone()
            .filter(|_| file::flag_given(&argv, "runroot")),
    };
    let settings = if is_helper(&cli.command) {
        file::load(&flags, |k| std::env::var_os(k), None, false)
    } else {
        file::load(
            &flags,
            |k| std::env::var_os(k),
            config_home().as_deref(),
            true,
        )
    }
    .map_err(|e| Exit::with(125, e.to_string()))?;
    if let (Some(p), file::Source::File(_)) =
        (&settings.registries.value, &settings.registries.source)
    {
        // The registries code reads CONTAINERS_REGISTRIES_CONF; the environment wins
        // over the file, and it is unset here (or it would be the source).
        // This runs before any thread starts, so changing the environment is sound.
        std::env::set_var("CONTAINERS_REGISTRIES_CONF", p);
    }
    if let (Some(d), file::Source::File(_)) =
        (&settings.dns_upstream.value, &settings.dns_upstream.source)
    {
        // The monitor (a child) reads SKIFF_DNS_UPSTREAM; unset here, or it would be
        // the source. Still before any thread starts.
        std::env::set_var(crate::network::DNS_UPSTREAM_ENV, d);
    }
    crate::image::set_max_layer_size(settings.max_layer_size.value);
    let paths = Paths::resolve(
        settings.root.value.as_deref(),
        settings.runroot.value.as_deref(),
    )?;
    Ok((paths, settings))
}
