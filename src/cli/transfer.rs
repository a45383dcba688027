//! login, logout, push, save, load.

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;

use clap::Args;

use super::image::user_mapping;
use super::{Ctx, Exit};
use crate::config::auth::{self, Credentials};
use crate::config::registries::Registries;
use crate::image::archive::Format;
use crate::image::pull::{find_local, mapping_key};
use crate::image::reference::{self, Reference};
use crate::image::{load, login, push, push_gzip, save};
use crate::storage::Store;

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Registry to log in to (host[:port], optionally with a repository path)
    pub registry: String,
    /// Username for the registry
    #[arg(short, long)]
    pub username: Option<String>,
    /// Password for the registry
    #[arg(short, long, conflicts_with = "password_stdin")]
    pub password: Option<String>,
    /// Take the password from stdin
    #[arg(long)]
    pub password_stdin: bool,
    /// Require HTTPS and verify certificates (false: plain HTTP allowed)
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub tls_verify: Option<bool>,
    /// Auth file to write (default: $XDG_RUNTIME_DIR/containers/auth.json, or REGISTRY_AUTH_FILE)
    #[arg(long, value_name = "FILE")]
    pub authfile: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// Registry to log out of
    #[arg(required_unless_present = "all")]
    pub registry: Option<String>,
    /// Remove the credentials of every registry
    #[arg(short, long)]
    pub all: bool,
    /// Auth file to edit (default: $XDG_RUNTIME_DIR/containers/auth.json, or REGISTRY_AUTH_FILE)
    #[arg(long, value_name = "FILE")]
    pub authfile: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// Local image to push
    pub image: String,
    /// Destination (default: the image's name); a `docker://` prefix is accepted
    pub destination: Option<String>,
    /// Print no progress
    #[arg(short, long)]
    pub quiet: bool,
    /// Require HTTPS and verify certificates (false: plain HTTP allowed)
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub tls_verify: Option<bool>,
    /// Compression for layers stored uncompressed: gzip (the default, as podman)
    #[arg(long, value_name = "FORMAT")]
    pub compression_format: Option<String>,
    /// Write the manifest digest of the pushed image to this file
    #[arg(long, value_name = "FILE")]
    pub digestfile: Option<PathBuf>,
    /// Auth file to read credentials from
    #[arg(long, value_name = "FILE")]
    pub authfile: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SaveArgs {
    /// Images to save
    #[arg(required = true)]
    pub images: Vec<String>,
    /// Write to this file (oci-dir: directory) instead of stdout
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// docker-archive (default), oci-archive or oci-dir
    #[arg(long, default_value = "docker-archive")]
    pub format: String,
    /// Accepted for podman compatibility (several images always fit in one archive)
    #[arg(short, long)]
    pub multi_image_archive: bool,
    /// Print no progress
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Read the archive (or OCI layout directory) from this path instead of stdin
    #[arg(short, long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Print no progress
    #[arg(short, long)]
    pub quiet: bool,
}

/// `https://host/ns/` → `host/ns`; the first component is the host.
fn registry_key(input: &str) -> String {
    let s = input
        .strip_prefix("https://")
        .or_else(|| input.strip_prefix("http://"))
        .or_else(|| input.strip_prefix("docker://"))
        .unwrap_or(input);
    s.trim_end_matches('/').to_string()
}

fn prompt(label: &str, secret: bool) -> anyhow::Result<String> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    eprint!("{label}");
    let _ = std::io::stderr().flush();
    let stdin = std::io::stdin();
    let saved = if secret { tcgetattr(&stdin).ok() } else { None };
    if let Some(t) = &saved {
        let mut quiet = t.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, &quiet);
    }
    let mut line = String::new();
    let r = stdin.read_line(&mut line);
    if let Some(t) = &saved {
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, t);
        eprintln!();
    }
    r?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

pub fn login(_ctx: &Ctx, a: LoginArgs) -> anyhow::Result<i32> {
    let key = registry_key(&a.registry);
    let host = key.split('/').next().unwrap_or("").to_string();
    if host.is_empty() {
        return Err(Exit::with(
            125,
            format!("invalid registry {:?}", a.registry),
        ));
    }
    let tty = std::io::stdin().is_terminal();
    let username = match a.username {
        Some(u) => u,
        None if tty && !a.password_stdin => prompt("Username: ", false)?,
        None => {
            return Err(Exit::with(
                125,
                "a username is required: give it with --username",
            ))
        }
    };
    let password = if a.password_stdin {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        s.trim_end_matches(['\n', '\r']).to_string()
    } else if let Some(p) = a.password {
        p
    } else if tty {
        prompt("Password: ", true)?
    } else {
        return Err(Exit::with(
            125,
            "a password is required: give it with --password or --password-stdin",
        ));
    };
    if username.is_empty() || password.is_empty() {
        return Err(Exit::with(125, "username and password must not be empty"));
    }
    let probe = Reference {
        registry: host.clone(),
        repository: key
            .split_once('/')
            .map(|(_, r)| r.to_string())
            .unwrap_or_default(),
        tag: None,
        digest: None,
    };
    let insecure =
        a.tls_verify == Some(false) || Registries::load()?.push_endpoint(&probe).insecure;
    let creds = Credentials { username, password };
    login::verify(&host, &creds, insecure)?;
    let file = a.authfile.unwrap_or_else(auth::default_auth_file);
    auth::store(&file, &key, &creds)?;
    println!("Login Succeeded!");
    Ok(0)
}

pub fn logout(_ctx: &Ctx, a: LogoutArgs) -> anyhow::Result<i32> {
    let file = a.authfile.unwrap_or_else(auth::default_auth_file);
    if a.all {
        auth::remove_all(&file)?;
        println!("Removed login credentials for all registries");
        return Ok(0);
    }
    let key = registry_key(a.registry.as_deref().unwrap_or(""));
    if auth::remove(&file, &key)? {
        println!("Removed login credentials for {key}");
        Ok(0)
    } else {
        Err(Exit::with(
            125,
            format!("not logged into {key} (in {})", file.display()),
        ))
    }
}

pub fn push(ctx: &Ctx, a: PushArgs) -> anyhow::Result<i32> {
    if let Some(f) = &a.authfile {
        // Single-threaded here: nothing else reads the environment yet.
        std::env::set_var("REGISTRY_AUTH_FILE", f);
    }
    let compression = match &a.compression_format {
        Some(c) => c
            .parse::<push_gzip::CompressionFormat>()
            .map_err(|e| Exit::with(125, e))?,
        None => Default::default(),
    };
    let mut store = Store::open(&ctx.paths)?;
    let img = find_local(&store, &a.image)?;
    let target = push::destination(&img, &a.image, a.destination.as_deref())?;
    let opts = push::PushOptions {
        quiet: a.quiet,
        tls_verify: a.tls_verify,
        compression,
    };
    let digest = push::push(&mut store, &img, &target, &opts)?;
    if let Some(f) = &a.digestfile {
        std::fs::write(f, &digest)
            .map_err(|e| Exit::with(125, format!("cannot write {}: {e}", f.display())))?;
    }
    Ok(0)
}

/// The stored names `input` refers to (none for an ID, as docker writes no RepoTags).
fn names_for(img: &crate::storage::images::ImageRecord, input: &str) -> Vec<String> {
    if let Ok(reference::ShortOrFull::Full(r)) = reference::parse_short(input) {
        let full = r.to_string();
        return img.names.iter().filter(|n| **n == full).cloned().collect();
    }
    let with_tag = if input.contains(':') {
        input.to_string()
    } else {
        format!("{input}:latest")
    };
    img.names
        .iter()
        .filter(|n| n.ends_with(&format!("/{with_tag}")))
        .take(1)
        .cloned()
        .collect()
}

pub fn save(ctx: &Ctx, a: SaveArgs) -> anyhow::Result<i32> {
    let format: Format = a.format.parse().map_err(|e: String| Exit::with(125, e))?;
    let out = match &a.output {
        Some(p) => save::Output::Path(p.clone()),
        None if std::io::stdout().is_terminal() => {
            return Err(Exit::with(
                125,
                "refusing to save to terminal: use -o or redirect stdout",
            ))
        }
        None => save::Output::Stdout,
    };
    let store = Store::open(&ctx.paths)?;
    let mut items: Vec<save::SaveItem> = Vec::new();
    for input in &a.images {
        let img = find_local(&store, input)?;
        let names = names_for(&img, input);
        if let Some(it) = items.iter_mut().find(|i| i.image.id == img.id) {
            for n in names {
                if !it.names.contains(&n) {
                    it.names.push(n);
                }
            }
            continue;
        }
        items.push(save::SaveItem { image: img, names });
    }
    let key = mapping_key(user_mapping(ctx)?.as_ref());
    // Progress goes to stderr, so it never mixes with an archive on stdout.
    save::save(&store, &items, format, &out, &key, a.quiet)?;
    Ok(0)
}

pub fn load(ctx: &Ctx, a: LoadArgs) -> anyhow::Result<i32> {
    let input = match a.input {
        Some(p) => load::Input::Path(p),
        None if std::io::stdin().is_terminal() => {
            return Err(Exit::with(
                125,
                "cannot read an archive from a terminal: use -i FILE or redirect stdin",
            ))
        }
        None => load::Input::Stdin,
    };
    let mapping = user_mapping(ctx)?;
    let mut store = Store::open(&ctx.paths)?;
    let loaded = load::load(&mut store, &input, mapping.as_ref(), a.quiet)?;
    for l in loaded {
        if l.names.is_empty() {
            println!("Loaded image: sha256:{}", l.id);
        }
        for n in &l.names {
            println!("Loaded image: {n}");
        }
    }
    Ok(0)
}
