//! `cp`: copy files between the host and a container, as a tar stream between this
//! process (the host side, as the plain user) and the `__cp` helper (the container
//! side, see runtime::cp). Works on running containers (the helper joins them) and on
//! created or exited ones (the helper mounts their rootfs under the container's lock).

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use clap::Args;

use super::{Ctx, Exit};
use crate::runtime::cp::{CpRequest, Direction, Kind, Place, Plan, Reply};
use crate::runtime::exec::read_line;
use crate::runtime::join::Target;
use crate::storage::containers::{ContainerRecord, State};
use crate::storage::Store;

#[derive(Debug, Args)]
pub struct CpArgs {
    /// Keep ownership from the source (accepted for podman compatibility; files copied
    /// in from the host belong to the container's root, files copied out to you)
    #[arg(short, long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub archive: Option<bool>,
    /// Allow a directory to replace a file and the other way round (accepted, ignored)
    #[arg(long)]
    pub overwrite: bool,
    /// Source: a host path, CONTAINER:PATH, or - for a tar stream on stdin
    pub src: String,
    /// Destination: a host path, CONTAINER:PATH, or - for a tar stream on stdout
    pub dest: String,
}

/// One side of a copy.
enum Loc {
    Host(PathBuf),
    Stream,
    Container { key: String, path: String },
}

fn parse(arg: &str) -> Loc {
    if arg == "-" {
        return Loc::Stream;
    }
    if !arg.starts_with('/') && !arg.starts_with('.') {
        if let Some((c, p)) = arg.split_once(':') {
            if !c.is_empty() && !c.contains('/') {
                let path = if p.is_empty() { "/" } else { p };
                return Loc::Container {
                    key: c.to_string(),
                    path: path.to_string(),
                };
            }
        }
    }
    Loc::Host(PathBuf::from(arg))
}

fn fail(msg: impl Into<String>) -> anyhow::Error {
    Exit::with(125, msg)
}

/// The name a source gets at its destination: its last component, or "." for a path
/// ending in "/." (podman: copy the directory's contents).
fn base_name(path: &str) -> String {
    if path.ends_with("/.") || path == "." {
        return ".".into();
    }
    Path::new(path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| ".".into())
}

fn parent_of(path: &str) -> String {
    match Path::new(path).parent() {
        Some(p) if !p.as_os_str().is_empty() => p.display().to_string(),
        _ if path.starts_with('/') => "/".into(),
        _ => ".".into(),
    }
}

/// Where a source lands given what the destination is: (directory to extract in, name).
fn plan_dest(
    dest: &str,
    dest_kind: Kind,
    parent_kind: Kind,
    src_is_dir: bool,
    src_name: &str,
    where_: &str,
) -> anyhow::Result<(String, String)> {
    match dest_kind {
        Kind::Dir => Ok((dest.to_string(), src_name.to_string())),
        Kind::File | Kind::Other if src_is_dir => Err(fail(format!(
            "cannot copy a directory to {dest:?}{where_}: it is not a directory"
        ))),
        Kind::File | Kind::Other if dest.ends_with('/') => {
            Err(fail(format!("{dest:?}{where_} is not a directory")))
        }
        _ if dest.ends_with('/') => Err(fail(format!(
            "{dest:?} could not be found{where_}: no such file or directory"
        ))),
        Kind::File | Kind::Other => Ok((parent_of(dest), base_name(dest))),
        Kind::Missing if parent_kind == Kind::Dir => Ok((parent_of(dest), base_name(dest))),
        Kind::Missing if parent_kind == Kind::Missing => Err(fail(format!(
            "{:?} could not be found{where_}: no such file or directory",
            parent_of(dest)
        ))),
        Kind::Missing => Err(fail(format!(
            "{:?}{where_} is not a directory",
            parent_of(dest)
        ))),
    }
}

fn host_kind(p: &Path) -> Kind {
    match std::fs::metadata(p) {
        Ok(m) if m.is_dir() => Kind::Dir,
        Ok(m) if m.is_file() => Kind::File,
        Ok(_) => Kind::Other,
        Err(_) => Kind::Missing,
    }
}

struct Session {
    child: Child,
    sync: UnixStream,
}

impl Session {
    fn reply(&mut self) -> anyhow::Result<Reply> {
        let line = read_line(&mut self.sync)
            .map_err(|e| fail(format!("talking to the cp helper: {e}")))?;
        if line.is_empty() {
            let status = self.child.wait().ok();
            return Err(fail(format!(
                "the cp helper exited unexpectedly ({status:?})"
            )));
        }
        let r: Reply = serde_json::from_str(&line)
            .map_err(|e| fail(format!("bad reply from the cp helper: {e}")))?;
        if let Reply::Err(msg) = r {
            let _ = self.child.wait();
            return Err(fail(msg));
        }
        Ok(r)
    }

    fn send(&mut self, plan: &Plan) -> anyhow::Result<()> {
        let mut line = serde_json::to_string(plan)?;
        line.push('\n');
        self.sync
            .write_all(line.as_bytes())
            .map_err(|e| fail(format!("talking to the cp helper: {e}")))
    }

    fn finish(mut self) -> anyhow::Result<i32> {
        let r = self.reply();
        let _ = self.child.wait();
        r.map(|_| 0)
    }
}

pub fn cp(ctx: &Ctx, a: CpArgs) -> anyhow::Result<i32> {
    let (src, dest) = (parse(&a.src), parse(&a.dest));
    let (key, cpath, direction) = match (&src, &dest) {
        (Loc::Container { .. }, Loc::Container { .. }) => {
            return Err(fail("copying between containers is not supported"))
        }
        (Loc::Container { key, path }, _) => (key.clone(), path.clone(), Direction::Out),
        (_, Loc::Container { key, path }) => (key.clone(), path.clone(), Direction::Into),
        _ => {
            return Err(fail(format!(
                "invalid arguments {}, {}: you must use just one container",
                a.src, a.dest
            )))
        }
    };
    // Host side checks first, so a bad host path changes nothing in the container.
    let host_src = match &src {
        Loc::Host(p) => {
            let k = host_kind(p);
            if k == Kind::Missing {
                return Err(fail(format!(
                    "{:?} could not be found on the host: no such file or directory",
                    p.display().to_string()
                )));
            }
            Some((p.clone(), k == Kind::Dir))
        }
        _ => None,
    };
    let mut store = Store::open(&ctx.paths)?;
    let found = store.find_container(&key)?;
    let mut c = super::container::refresh(&mut store, found)?;
    let live = |c: &ContainerRecord| {
        Target::of_record(&c.name, c.pid, c.monitor_pid.zip(c.monitor_start)).ok()
    };
    let mut lock = None;
    if live(&c).is_none() {
        // Serialize with start and rm, and decide on the state read under the lock: the
        // rootfs must never be mounted here while a monitor mounts it too.
        let path = ctx.paths.runroot.join("locks").join(&c.id);
        lock = Some(crate::storage::lock::FileLock::exclusive(&path)?);
        let again = store.find_container(&c.id)?;
        c = super::container::refresh(&mut store, again)?;
    }
    drop(store);
    let (place, mapping) = match live(&c) {
        Some(t) => {
            lock = None;
            (Place::Running(t), None)
        }
        None if c.state == State::Running => {
            return Err(fail(format!(
                "container {} is starting or stopping: try again",
                c.name
            )))
        }
        None => {
            let bundle = ctx.paths.container_dir(&c.id);
            (Place::Stopped { bundle }, super::image::user_mapping(ctx)?)
        }
    };
    let req = CpRequest {
        name: c.name.clone(),
        place,
        direction,
        path: cpath.clone(),
    };
    let mut args = ctx.self_args();
    args.push("__cp".into());
    let (stdin_stream, stdout_stream) = (matches!(src, Loc::Stream), matches!(dest, Loc::Stream));
    let h = crate::userns::spawn_helper(
        Path::new("/proc/self/exe"),
        &args,
        mapping.as_ref(),
        |cmd| {
            cmd.stdin(match direction {
                Direction::Into if stdin_stream => Stdio::inherit(),
                Direction::Into => Stdio::piped(),
                Direction::Out => Stdio::null(),
            });
            cmd.stdout(match direction {
                Direction::Out if stdout_stream => Stdio::inherit(),
                Direction::Out => Stdio::piped(),
                Direction::Into => Stdio::null(),
            });
        },
    )?;
    let mut s = Session {
        child: h.child,
        sync: h.sync,
    };
    let mut line = serde_json::to_string(&req)?;
    line.push('\n');
    s.sync
        .write_all(line.as_bytes())
        .map_err(|e| fail(format!("talking to the cp helper: {e}")))?;
    let (kind, parent) = match s.reply()? {
        Reply::Info { kind, parent } => (kind, parent),
        _ => return Err(fail("unexpected reply from the cp helper")),
    };
    let on_ctr = format!(" on container {}", c.name);
    let code = match direction {
        Direction::Into => {
            let (dir, name, src_is_dir) = match &host_src {
                Some((p, is_dir)) => {
                    let (dir, name) = plan_dest(
                        &cpath,
                        kind,
                        parent,
                        *is_dir,
                        &base_name(&p.to_string_lossy()),
                        &on_ctr,
                    )?;
                    (dir, name, *is_dir)
                }
                None if kind == Kind::Dir => (cpath.clone(), String::new(), false),
                None => {
                    return Err(fail(format!(
                        "destination {cpath:?}{on_ctr} must be a directory when copying from stdin"
                    )))
                }
            };
            s.send(&Plan {
                dir,
                name: name.clone(),
                keep_owners: host_src.is_none(),
            })?;
            if let Some((p, _)) = &host_src {
                let pipe = s
                    .child
                    .stdin
                    .take()
                    .ok_or_else(|| fail("no pipe to the cp helper"))?;
                if let Err(e) = write_tar(pipe, p, &name, src_is_dir) {
                    // The helper's own error explains more, if it has one.
                    s.finish()?;
                    return Err(fail(format!("copying {}: {e}", p.display())));
                }
            }
            s.finish()?
        }
        Direction::Out => {
            let src_is_dir = kind == Kind::Dir;
            let name = base_name(&cpath);
            match &dest {
                Loc::Host(d) => {
                    let ds = d.to_string_lossy().into_owned();
                    let dk = host_kind(d);
                    let pk = host_kind(Path::new(&parent_of(&ds)));
                    let (dir, name) =
                        match plan_dest(&ds, dk, pk, src_is_dir, &name, " on the host") {
                            Ok(v) => v,
                            Err(e) => {
                                drop(s.sync);
                                let _ = s.child.wait();
                                return Err(e);
                            }
                        };
                    s.send(&Plan {
                        dir: String::new(),
                        name,
                        keep_owners: false,
                    })?;
                    let pipe = s
                        .child
                        .stdout
                        .take()
                        .ok_or_else(|| fail("no pipe from the cp helper"))?;
                    let res = extract_on_host(pipe, Path::new(&dir));
                    let end = s.finish();
                    res.map_err(|e| fail(format!("copying to {}: {e}", d.display())))?;
                    end?
                }
                _ => {
                    s.send(&Plan {
                        dir: String::new(),
                        name,
                        keep_owners: false,
                    })?;
                    s.finish()?
                }
            }
        }
    };
    drop(lock);
    Ok(code)
}

/// Tars a host file or directory under `name` (symlinks inside a directory are stored,
/// never followed).
fn write_tar(pipe: impl Write, src: &Path, name: &str, is_dir: bool) -> std::io::Result<()> {
    let mut b = tar::Builder::new(std::io::BufWriter::with_capacity(1 << 16, pipe));
    b.follow_symlinks(false);
    if is_dir {
        let real = std::fs::canonicalize(src)?;
        b.append_dir_all(name, real)?;
    } else {
        let mut f = std::fs::File::open(src)?;
        b.append_file(name, &mut f)?;
    }
    b.into_inner()?.flush()
}

/// Unpacks the container's tar into a host directory as the plain user: owners are not
/// kept, and the tar crate refuses names and links that lead out of `dir`.
fn extract_on_host(pipe: impl std::io::Read, dir: &Path) -> std::io::Result<()> {
    let mut ar = tar::Archive::new(pipe);
    ar.set_preserve_permissions(true);
    ar.set_preserve_ownerships(false);
    ar.set_preserve_mtime(true);
    ar.set_overwrite(true);
    ar.set_unpack_xattrs(false);
    ar.unpack(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        assert!(matches!(parse("-"), Loc::Stream));
        assert!(matches!(parse("./a:b"), Loc::Host(_)));
        assert!(matches!(parse("/a:b"), Loc::Host(_)));
        assert!(matches!(parse("web:/etc"), Loc::Container { .. }));
        assert!(matches!(parse("file"), Loc::Host(_)));
    }

    #[test]
    fn destinations() {
        let p = |d, k, pk, dir| plan_dest(d, k, pk, dir, "src", "").ok();
        assert_eq!(
            p(".", Kind::Dir, Kind::Dir, false),
            Some((".".into(), "src".into()))
        );
        assert_eq!(
            p("out", Kind::Missing, Kind::Dir, true),
            Some((".".into(), "out".into()))
        );
        assert_eq!(
            p("/tmp/x", Kind::File, Kind::Dir, false),
            Some(("/tmp".into(), "x".into()))
        );
        assert_eq!(p("/tmp/x", Kind::File, Kind::Dir, true), None);
        assert_eq!(p("/no/x", Kind::Missing, Kind::Missing, false), None);
        assert_eq!(p("/no/", Kind::Missing, Kind::Dir, false), None);
        assert_eq!(base_name("/etc/."), ".");
        assert_eq!(base_name("/etc/hostname"), "hostname");
    }
}
