//! Shell completions and manual pages, both generated from the clap definitions.
//!
//! Completions are clap_complete's dynamic ones: the shell script only registers skiff
//! as its own completer, and every TAB runs `skiff` with `_SKIFF_COMPLETE=SHELL`. So the
//! installed binary always answers for itself (no script that drifts from the flags),
//! and container names, image references and volume names come from the live store.

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, CommandFactory};
use clap_complete::engine::{ArgValueCandidates, ArgValueCompleter, CompletionCandidate};
use clap_complete::env::{Bash, Elvish, EnvCompleter, Fish, Powershell, Zsh};

use super::docs_text;
use super::{Cli, Exit};

/// The environment variable that switches skiff into completion mode.
pub const COMPLETE_VAR: &str = "_SKIFF_COMPLETE";

#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// The shell to print a completion script for
    #[arg(value_parser = ["bash", "zsh", "fish", "elvish", "powershell"])]
    pub shell: String,
}

#[derive(Debug, Args)]
pub struct GenerateDocsArgs {
    /// Directory that receives completions/ and man/ (the checkout's top directory)
    pub dir: PathBuf,
}

/// Answers a completion request and exits when `_SKIFF_COMPLETE` is set; returns at
/// once otherwise (the command tree is only built when completing).
pub fn complete_from_env() {
    clap_complete::CompleteEnv::with_factory(command)
        .var(COMPLETE_VAR)
        .completer("skiff")
        .complete();
}

/// The full command tree with live-state completers attached to the arguments that
/// name containers, images and volumes (matched by argument id, so command files
/// need not know about completion).
pub fn command() -> clap::Command {
    decorate(Cli::command(), &[])
}

fn decorate(cmd: clap::Command, path: &[&str]) -> clap::Command {
    let name = cmd.get_name().to_string();
    let mut here: Vec<&str> = path.to_vec();
    here.push(&name);
    // In place: re-adding an argument would move it, and positionals keep their order.
    let mut cmd = cmd.mut_args(|a| match arg_kind(&here, a.get_id().as_str()) {
        Some(Kind::Container) => a.add(ArgValueCandidates::new(containers)),
        Some(Kind::Image) => a.add(ArgValueCandidates::new(images)),
        Some(Kind::Volume) => a.add(ArgValueCandidates::new(volumes)),
        Some(Kind::VolumeSpec) => a.add(ArgValueCompleter::new(volume_spec)),
        None => a,
    });
    let subs: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    for s in subs {
        let parent = here.clone();
        cmd = cmd.mut_subcommand(&s, |sc| decorate(sc, &parent));
    }
    cmd
}

enum Kind {
    Container,
    Image,
    Volume,
    VolumeSpec,
}

fn arg_kind(path: &[&str], id: &str) -> Option<Kind> {
    let last = path.last().copied().unwrap_or("");
    let in_group = |g: &str| path.len() >= 2 && path[path.len() - 2] == g;
    match id {
        "container" | "containers" => Some(Kind::Container),
        "volume" if matches!(last, "run" | "create") => Some(Kind::VolumeSpec),
        "volumes" | "name" | "names" if in_group("volume") && last != "create" => {
            Some(Kind::Volume)
        }
        "image" | "images" | "source" if matches!(last, "run" | "create" | "rmi" | "tag") => {
            Some(Kind::Image)
        }
        "image" | "images" if in_group("image") => Some(Kind::Image),
        _ => None,
    }
}

fn store() -> Option<crate::storage::Store> {
    let root = std::env::var_os("SKIFF_ROOT").map(PathBuf::from);
    let runroot = std::env::var_os("SKIFF_RUNROOT").map(PathBuf::from);
    let paths = crate::config::Paths::resolve(root.as_deref(), runroot.as_deref()).ok()?;
    crate::storage::Store::open(&paths).ok()
}

fn containers() -> Vec<CompletionCandidate> {
    let Some(store) = store() else {
        return Vec::new();
    };
    store
        .containers()
        .unwrap_or_default()
        .into_iter()
        .map(|c| {
            CompletionCandidate::new(c.name).help(Some(
                format!("{} {}", &c.id[..c.id.len().min(12)], c.image_name).into(),
            ))
        })
        .collect()
}

fn images() -> Vec<CompletionCandidate> {
    let Some(store) = store() else {
        return Vec::new();
    };
    let mut v: Vec<CompletionCandidate> = Vec::new();
    for img in store.images().unwrap_or_default() {
        for n in &img.names {
            v.push(CompletionCandidate::new(n));
        }
    }
    v
}

fn volume_names() -> Vec<String> {
    let root = std::env::var_os("SKIFF_ROOT").map(PathBuf::from);
    let Ok(paths) = crate::config::Paths::resolve(root.as_deref(), None) else {
        return Vec::new();
    };
    let mut v: Vec<String> = std::fs::read_dir(paths.root.join("volumes"))
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn volumes() -> Vec<CompletionCandidate> {
    volume_names()
        .into_iter()
        .map(CompletionCandidate::new)
        .collect()
}

/// `-v` takes a volume name or a host path before the colon: offer both.
fn volume_spec(current: &OsStr) -> Vec<CompletionCandidate> {
    let cur = current.to_string_lossy();
    if cur.contains(':') {
        return Vec::new();
    }
    let mut v: Vec<CompletionCandidate> = volume_names()
        .into_iter()
        .filter(|n| n.starts_with(cur.as_ref()))
        .map(|n| CompletionCandidate::new(format!("{n}:")))
        .collect();
    use clap_complete::engine::ValueCompleter;
    v.extend(clap_complete::engine::PathCompleter::any().complete(current));
    v
}

fn shell(name: &str) -> Option<&'static dyn EnvCompleter> {
    Some(match name {
        "bash" => &Bash,
        "zsh" => &Zsh,
        "fish" => &Fish,
        "elvish" => &Elvish,
        "powershell" => &Powershell,
        _ => return None,
    })
}

/// The script a shell sources to complete skiff (what `skiff completion SHELL` prints).
pub fn completion_script(name: &str) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    shell(name)?
        .write_registration(COMPLETE_VAR, "skiff", "skiff", "skiff", &mut buf)
        .ok()?;
    Some(buf)
}

pub fn completion(a: CompletionArgs) -> anyhow::Result<i32> {
    let script = completion_script(&a.shell)
        .ok_or_else(|| Exit::with(125, format!("unknown shell {:?}", a.shell)))?;
    std::io::stdout().write_all(&script)?;
    Ok(0)
}

/// The files under completions/ and their shells.
pub const COMPLETION_FILES: &[(&str, &str)] = &[
    ("bash", "skiff.bash"),
    ("zsh", "_skiff"),
    ("fish", "skiff.fish"),
    ("elvish", "skiff.elv"),
    ("powershell", "_skiff.ps1"),
];

/// Every generated file, relative to the checkout: completions/* and man/*.1.
pub fn render_all() -> std::io::Result<Vec<(PathBuf, Vec<u8>)>> {
    let mut out = Vec::new();
    for (sh, file) in COMPLETION_FILES {
        let script = completion_script(sh).unwrap_or_default();
        out.push((Path::new("completions").join(file), script));
    }
    let mut root = Cli::command();
    root.build();
    man_pages(&root, &mut out)?;
    Ok(out)
}

fn man_pages(cmd: &clap::Command, out: &mut Vec<(PathBuf, Vec<u8>)>) -> std::io::Result<()> {
    let page = cmd
        .get_display_name()
        .unwrap_or_else(|| cmd.get_name())
        .to_string();
    let man = clap_mangen::Man::new(cmd.clone())
        .title(page.to_uppercase())
        .manual("skiff manual");
    let mut buf = Vec::new();
    man.render_title(&mut buf)?;
    man.render_name_section(&mut buf)?;
    man.render_synopsis_section(&mut buf)?;
    man.render_description_section(&mut buf)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut buf)?;
    }
    if cmd
        .get_subcommands()
        .any(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        man.render_subcommands_section(&mut buf)?;
    }
    man.render_extra_section(&mut buf)?;
    docs_text::render_sections(&page, &mut buf)?;
    out.push((PathBuf::from("man").join(format!("{page}.1")), buf));
    // clap's own `help` subcommand gets no page: `skiff help run` is `man skiff-run`.
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        man_pages(sub, out)?;
    }
    Ok(())
}

/// Writes completions/ and man/ under `dir`, removing stale man pages.
pub fn generate_docs(a: GenerateDocsArgs) -> anyhow::Result<i32> {
    let files = render_all()?;
    for sub in ["completions", "man"] {
        let d = a.dir.join(sub);
        std::fs::create_dir_all(&d)
            .map_err(|e| Exit::with(125, format!("cannot create {}: {e}", d.display())))?;
        // Pages of commands that no longer exist must not linger.
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd.flatten() {
                let rel = Path::new(sub).join(e.file_name());
                if !files.iter().any(|(p, _)| *p == rel) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
    for (rel, data) in &files {
        let path = a.dir.join(rel);
        std::fs::write(&path, data)
            .map_err(|e| Exit::with(125, format!("cannot write {}: {e}", path.display())))?;
    }
    println!("wrote {} files under {}", files.len(), a.dir.display());
    Ok(0)
}
