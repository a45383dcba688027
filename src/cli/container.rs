//! run, create, start, ps, rm, inspect.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use clap::Args;

use super::image::{pull_options, user_mapping};
use super::{Ctx, Exit};
use crate::image::pull::{get_image, PullPolicy};
use crate::runtime::CreateOptions;
use crate::storage::containers::{ContainerRecord, State};
use crate::storage::Store;

/// Flags shared by run and create.
#[derive(Debug, Args)]
pub struct CreateFlags {
    /// Assign a name to the container
    #[arg(long)]
    pub name: Option<String>,
    /// Set environment variables (NAME=VALUE, or NAME to copy from the host)
    #[arg(short, long = "env", value_name = "ENV")]
    pub env: Vec<String>,
    /// Read environment variables from a file
    #[arg(long, value_name = "FILE")]
    pub env_file: Vec<PathBuf>,
    /// Working directory inside the container
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// User (name or UID) and optional group: USER[:GROUP]
    #[arg(short, long)]
    pub user: Option<String>,
    /// Override the image's entrypoint
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Container host name
    #[arg(long, short = 'h')]
    pub hostname: Option<String>,
    /// Bind mount a volume: HOST-DIR:CONTAINER-DIR[:OPTIONS]
    #[arg(short, long = "volume", value_name = "VOLUME")]
    pub volume: Vec<String>,
    /// Mount the container's root filesystem read-only
    #[arg(long)]
    pub read_only: bool,
    /// Mount a tmpfs: CONTAINER-DIR[:OPTIONS]
    #[arg(long)]
    pub tmpfs: Vec<String>,
    /// Network mode: none or host
    #[arg(long, alias = "net")]
    pub network: Option<String>,
    /// Keep stdin open
    #[arg(short, long)]
    pub interactive: bool,
    /// Remove the container when it exits
    #[arg(long)]
    pub rm: bool,
    /// Pull policy: always, missing, never, newer
    #[arg(long, default_value = "missing")]
    pub pull: String,
    /// Require HTTPS and verify certificates when pulling
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub tls_verify: Option<bool>,
    /// Suppress pull output
    #[arg(short, long)]
    pub quiet: bool,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    pub tty: bool,
    /// Key sequence to detach an attached session (default ctrl-p,ctrl-q)
    #[arg(long, value_name = "KEYS")]
    pub detach_keys: Option<String>,
    /// Restart policy: no, always, on-failure[:MAX], unless-stopped
    #[arg(long, value_name = "POLICY")]
    pub restart: Option<String>,
    /// Run an init inside the container that forwards signals and reaps processes
    #[arg(long)]
    pub init: bool,
    /// Logging driver: k8s-file, none, passthrough
    #[arg(long, value_name = "DRIVER")]
    pub log_driver: Option<String>,
    /// Logging driver options (max-size=SIZE)
    #[arg(long, value_name = "OPT")]
    pub log_opt: Vec<String>,
    /// Proxy received signals to the container (foreground only)
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub sig_proxy: Option<bool>,
    /// Signal to stop the container (default: the image's, else SIGTERM)
    #[arg(long, value_name = "SIGNAL")]
    pub stop_signal: Option<String>,
    /// Seconds to wait before killing the container on stop (default 10)
    #[arg(long, value_name = "SECONDS")]
    pub stop_timeout: Option<u32>,
    /// Attach a mount: type=bind|volume|tmpfs,source=...,destination=...[,ro]
    #[arg(long, value_name = "MOUNT")]
    pub mount: Vec<String>,
    /// Add a custom host-to-IP mapping (host:ip)
    #[arg(long, value_name = "HOST:IP")]
    pub add_host: Vec<String>,
    /// Set custom DNS servers
    #[arg(long, value_name = "IP")]
    pub dns: Vec<String>,
    /// Set custom DNS search domains
    #[arg(long, value_name = "DOMAIN")]
    pub dns_search: Vec<String>,
    /// Set metadata on the container (key=value)
    #[arg(short, long, value_name = "LABEL")]
    pub label: Vec<String>,
    /// Add an annotation to the container (key=value)
    #[arg(long, value_name = "KEY=VALUE")]
    pub annotation: Vec<String>,
    /// Replace an existing container of the same name
    #[arg(long)]
    pub replace: bool,
    /// Write the container ID to this file
    #[arg(long, value_name = "FILE")]
    pub cidfile: Option<PathBuf>,
    /// Namespaced kernel parameters (name=value)
    #[arg(long, value_name = "SYSCTL")]
    pub sysctl: Vec<String>,
    /// Pull the image for this platform (os/arch[/variant])
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<String>,
    /// How to notify systemd: conmon, container, ignore
    #[arg(long, value_name = "MODE")]
    pub sdnotify: Option<String>,
    /// The image to run
    pub image: String,
    /// Command and arguments (default: the image's)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
pub struct RunArgs {
    /// Print help (-h is --hostname, as in podman)
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
    /// Run in the background and print the container ID
    #[arg(short, long)]
    pub detach: bool,
    #[command(flatten)]
    pub flags: CreateFlags,
}

#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
pub struct CreateArgs {
    /// Print help (-h is --hostname, as in podman)
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
    #[command(flatten)]
    pub flags: CreateFlags,
}

#[derive(Debug, Args)]
pub struct StartArgs {
    /// Attach to the container's output and wait for it (one container only)
    #[arg(short, long)]
    pub attach: bool,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Stop running containers first (SIGKILL)
    #[arg(short, long)]
    pub force: bool,
    /// Remove all containers
    #[arg(short, long)]
    pub all: bool,
    #[arg(required_unless_present = "all")]
    pub containers: Vec<String>,
}

fn policy(s: &str) -> anyhow::Result<PullPolicy> {
    Ok(match s {
        "always" => PullPolicy::Always,
        "missing" => PullPolicy::Missing,
        "never" => PullPolicy::Never,
        "newer" => PullPolicy::Newer,
        o => {
            return Err(Exit::with(
                125,
                format!("--pull {o:?}: use always, missing, never or newer"),
            ))
        }
    })
}

fn create_from(ctx: &Ctx, f: CreateFlags) -> anyhow::Result<(Store, ContainerRecord)> {
    let mut store = Store::open(&ctx.paths)?;
    let pol = policy(&f.pull)?;
    let opts = pull_options(ctx, f.quiet, f.tls_verify)?;
    let img = get_image(&mut store, &f.image, pol, &opts)?;
    let image_name = img
        .names
        .iter()
        .find(|n| n.ends_with(&f.image) || n.ends_with(&format!("{}:latest", f.image)))
        .or(img.names.first())
        .cloned()
        .unwrap_or_else(|| img.id.clone());
    let copts = CreateOptions {
        name: f.name,
        env: f.env,
        env_files: f.env_file,
        workdir: f.workdir,
        user: f.user,
        entrypoint: f.entrypoint,
        hostname: f.hostname,
        volumes: f.volume,
        read_only: f.read_only,
        tmpfs: f.tmpfs,
        network: f.network,
        interactive: f.interactive,
        rm: f.rm,
        command: f.command,
        tty: f.tty,
        detach_keys: f.detach_keys,
        restart: f.restart,
        init: f.init,
        log_driver: f.log_driver,
        log_opts: f.log_opt,
        sig_proxy: f.sig_proxy,
        stop_signal: f.stop_signal,
        stop_timeout: f.stop_timeout,
        mounts: f.mount,
        add_hosts: f.add_host,
        dns: f.dns,
        dns_search: f.dns_search,
        labels: f.label,
        annotations: f.annotation,
        replace: f.replace,
        cidfile: f.cidfile,
        sysctls: f.sysctl,
        platform: f.platform,
        sdnotify: f.sdnotify,
    };
    let mapping = user_mapping(ctx)?;
    let rec =
        crate::runtime::create::create(&mut store, &img, &image_name, mapping.as_ref(), &copts)?;
    Ok((store, rec))
}

pub fn create(ctx: &Ctx, a: CreateArgs) -> anyhow::Result<i32> {
    let (_, rec) = create_from(ctx, a.flags)?;
    println!("{}", rec.id);
    Ok(0)
}

pub fn run(ctx: &Ctx, a: RunArgs) -> anyhow::Result<i32> {
    let (store, rec) = create_from(ctx, a.flags)?;
    drop(store);
    if a.detach {
        start_detached(ctx, &rec)?;
        println!("{}", rec.id);
        return Ok(0);
    }
    exec_monitor(ctx, &rec.id)
}

/// Becomes the container's monitor in the foreground: same pid, same terminal, and the
/// container's exit code becomes ours.
fn exec_monitor(ctx: &Ctx, id: &str) -> anyhow::Result<i32> {
    let err = Command::new("/proc/self/exe")
        .args(ctx.self_args())
        .arg("__monitor")
        .arg(id)
        .exec();
    Err(Exit::with(125, format!("cannot exec the monitor: {err}")))
}

/// Starts a monitor in the background and waits until it reports the container running.
fn start_detached(ctx: &Ctx, rec: &ContainerRecord) -> anyhow::Result<()> {
    use std::io::Read;
    let log = ctx.paths.container_dir(&rec.id).join("ctr.log");
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)?;
    let err = out.try_clone()?;
    let mut args = ctx.self_args();
    args.extend(["__monitor".into(), rec.id.clone().into(), "--detach".into()]);
    let mut h =
        crate::userns::spawn_helper(std::path::Path::new("/proc/self/exe"), &args, None, |c| {
            c.stdin(Stdio::null()).stdout(out).stderr(err);
        })?;
    let mut report = String::new();
    let _ = h.sync.read_to_string(&mut report);
    // The monitor keeps running; reap nothing, it is reparented when we exit.
    std::mem::forget(h.child);
    if report.starts_with("ok") {
        return Ok(());
    }
    let (code, msg) = report
        .split_once('\n')
        .unwrap_or(("125", "monitor exited during start-up"));
    Err(Exit::with(
        code.trim().parse().unwrap_or(125),
        msg.to_string(),
    ))
}

/// Brings a record up to date: a running container whose monitor is gone has exited.
pub(super) fn refresh(
    store: &mut Store,
    mut c: ContainerRecord,
) -> anyhow::Result<ContainerRecord> {
    if c.state == State::Running {
        let alive = match (c.monitor_pid, c.monitor_start) {
            (Some(p), Some(s)) => crate::monitor::is_alive(p, s),
            _ => false,
        };
        if !alive {
            // The monitor died; its container died with it (PDEATHSIG).
            let code = c.exit_code.unwrap_or(137);
            store.set_exited(&c.id, code, crate::storage::now())?;
            c = store.find_container(&c.id)?;
        }
    }
    Ok(c)
}

pub fn start(ctx: &Ctx, a: StartArgs) -> anyhow::Result<i32> {
    let mut store = Store::open(&ctx.paths)?;
    if a.attach {
        if a.containers.len() != 1 {
            return Err(Exit::with(
                125,
                "start --attach works with exactly one container",
            ));
        }
        let found = store.find_container(&a.containers[0])?;
        let c = refresh(&mut store, found)?;
        if c.state == State::Running {
            return Err(Exit::with(
                125,
                format!("container {} is already running", c.name),
            ));
        }
        drop(store);
        return exec_monitor(ctx, &c.id);
    }
    let mut code = 0;
    for name in &a.containers {
        let c = match store
            .find_container(name)
            .map_err(anyhow::Error::from)
            .and_then(|c| refresh(&mut store, c))
        {
            Ok(c) => c,
            Err(e) => {
                eprintln!("Error: {e}");
                code = 125;
                continue;
            }
        };
        if c.state != State::Running {
            start_detached(ctx, &c)?;
        }
        println!("{name}");
    }
    Ok(code)
}

/// Stops a running container by killing it and waiting for its monitor to record it.
fn kill_and_wait(store: &mut Store, c: &ContainerRecord) -> anyhow::Result<()> {
    if let Some(pid) = c.pid {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    if let (Some(mp), Some(ms)) = (c.monitor_pid, c.monitor_start) {
        for _ in 0..500 {
            if !crate::monitor::is_alive(mp, ms) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
    let found = store.find_container(&c.id)?;
    refresh(store, found)?;
    Ok(())
}

pub fn rm(ctx: &Ctx, a: RmArgs) -> anyhow::Result<i32> {
    let mut store = Store::open(&ctx.paths)?;
    let mut code = 0;
    let names: Vec<String> = if a.all {
        store.containers()?.into_iter().map(|c| c.id).collect()
    } else {
        a.containers.clone()
    };
    for name in &names {
        let c = match store.find_container(name) {
            Ok(c) => refresh(&mut store, c)?,
            Err(e) => {
                eprintln!("Error: {e}");
                code = 1;
                continue;
            }
        };
        let lock = ctx.paths.runroot.join("locks").join(&c.id);
        let _guard = crate::storage::lock::FileLock::exclusive(&lock)?;
        if c.state == State::Running {
            if !a.force {
                eprintln!(
                    "Error: cannot remove container {} as it is running - running or paused containers cannot be removed without force: container state improper",
                    c.id
                );
                code = 2;
                continue;
            }
            kill_and_wait(&mut store, &c)?;
        }
        crate::runtime::remove_container_dir(&ctx.paths, &ctx.paths.container_dir(&c.id))?;
        store.delete_container(&c.id)?;
        let _ = std::fs::remove_file(&lock);
        println!("{name}");
    }
    Ok(code)
}
