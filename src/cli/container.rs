//! run, create, start, ps, rm, inspect.

use std::path::PathBuf;
use std::process::Stdio;

use clap::Args;

use super::image::{pull_options, user_mapping};
use super::{Ctx, Exit};
use crate::image::pull::{get_image, PullPolicy};
use crate::monitor::{client, proto};
use crate::runtime::{ContainerConfig, CreateOptions};
use crate::storage::containers::{ContainerRecord, State};
use crate::storage::{StorageError, Store};

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
    /// Add a supplementary group (a name from the image's /etc/group, or a GID);
    /// keep-groups, alone, is accepted and adds none (runc keeps no host groups)
    #[arg(long = "group-add", value_name = "GROUP")]
    pub group_add: Vec<String>,
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
    /// With --read-only, mount writable tmpfs on /run, /tmp and /var/tmp (default true)
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub read_only_tmpfs: Option<bool>,
    /// Mount a tmpfs: CONTAINER-DIR[:OPTIONS]
    #[arg(long)]
    pub tmpfs: Vec<String>,
    /// Size of /dev/shm, e.g. 256m (default 64m)
    #[arg(long, value_name = "SIZE")]
    pub shm_size: Option<String>,
    /// Network mode: slirp4netns[:allow_host_loopback=BOOL,enable_ipv6=BOOL] (default),
    /// none, host, container:NAME, ns:PATH, or user-defined network
    /// names (repeatable, or comma-separated)
    #[arg(long, alias = "net")]
    pub network: Vec<String>,
    /// Network-scoped alias for the container (user-defined networks)
    #[arg(long, value_name = "ALIAS")]
    pub network_alias: Vec<String>,
    /// Static IPv4 address on the user-defined network
    #[arg(long, value_name = "IP")]
    pub ip: Option<String>,
    /// Publish a container's port on the host: [ip:][hostPort:]containerPort[/tcp|/udp]
    #[arg(short = 'p', long = "publish", value_name = "PORT")]
    pub publish: Vec<String>,
    /// Publish every port the image EXPOSEs on a free host port
    #[arg(short = 'P', long)]
    pub publish_all: bool,
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
    #[command(flatten)]
    pub security: super::security_flags::SecurityFlags,
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
    /// Stop running containers first (SIGKILL, or with --time the stop signal first)
    #[arg(short, long)]
    pub force: bool,
    /// With --force: seconds to wait for the stop signal to work before killing
    #[arg(short = 't', long = "time", value_name = "SECONDS")]
    pub time: Option<u32>,
    /// Remove the containers that depend on each one first (--network container:)
    #[arg(long)]
    pub depend: bool,
    /// Remove all containers
    #[arg(short, long)]
    pub all: bool,
    /// Read the container ID from this file (written by `run --cidfile`)
    #[arg(long, value_name = "FILE")]
    pub cidfile: Vec<PathBuf>,
    /// Ignore containers (and --cidfile files) that do not exist
    #[arg(short, long)]
    pub ignore: bool,
    #[arg(required_unless_present_any = ["all", "cidfile"])]
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

/// Creates the container, with `--cidfile` handled as podman does: the file is claimed
/// (created exclusively) before anything else, filled with the ID (no newline) after
/// the create, and removed again if the create fails.
fn create_from(ctx: &Ctx, f: CreateFlags) -> anyhow::Result<(Store, ContainerRecord)> {
    if f.replace && f.name.is_none() {
        return Err(Exit::with(
            125,
            "--replace: cannot replace a container without --name: add --name NAME",
        ));
    }
    let Some(cidfile) = f.cidfile.clone() else {
        return create_inner(ctx, f);
    };
    let mut file = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&cidfile)
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let path = cidfile.display();
            return Err(Exit::with(
                125,
                format!("container id file exists, ensure another container is not using it or delete {path}"),
            ));
        }
        Err(e) => {
            return Err(Exit::with(
                125,
                format!("--cidfile: cannot create {}: {e}", cidfile.display()),
            ))
        }
    };
    let res = create_inner(ctx, f).and_then(|(store, rec)| {
        use std::io::Write;
        file.write_all(rec.id.as_bytes()).map_err(|e| {
            Exit::with(
                125,
                format!("--cidfile: cannot write {}: {e}", cidfile.display()),
            )
        })?;
        Ok((store, rec))
    });
    if res.is_err() {
        let _ = std::fs::remove_file(&cidfile);
    }
    res
}

fn create_inner(ctx: &Ctx, f: CreateFlags) -> anyhow::Result<(Store, ContainerRecord)> {
    let mut store = Store::open(&ctx.paths)?;
    let pol = policy(&f.pull)?;
    let mut opts = pull_options(ctx, f.quiet, f.tls_verify)?;
    if let Some(p) = &f.platform {
        opts.platform = Some(crate::image::pull::parse_platform(p).ok_or_else(|| {
            Exit::with(
                125,
                format!("--platform {p:?} is invalid: use OS/ARCH[/VARIANT], e.g. linux/arm64"),
            )
        })?);
    }
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
        group_add: f.group_add,
        entrypoint: f.entrypoint,
        hostname: f.hostname,
        volumes: f.volume,
        read_only: f.read_only,
        read_only_tmpfs: f.read_only_tmpfs,
        tmpfs: f.tmpfs,
        shm_size: f.shm_size,
        network: super::network::join_network_flags(&f.network)?
            .or_else(|| ctx.settings.default_network()),
        network_aliases: f.network_alias,
        ip: f.ip,
        publish: f.publish,
        publish_all: f.publish_all,
        interactive: f.interactive,
        rm: f.rm,
        command: f.command,
        tty: f.tty,
        detach_keys: f.detach_keys,
        restart: f.restart,
        init: f.init,
        log_driver: f.log_driver.or_else(|| ctx.settings.default_log_driver()),
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
        security: f.security.into_options(),
    };
    let mapping = user_mapping(ctx)?;
    let mut res =
        crate::runtime::create::create(&mut store, &img, &image_name, mapping.as_ref(), &copts);
    // --replace: the new container's flags all passed validation (the name is claimed
    // last), so only now remove the holder of the name, then create again.
    if let (true, Err(crate::runtime::RuntimeError::Storage(StorageError::NameInUse { id, .. }))) =
        (copts.replace, &res)
    {
        let old = store.find_container(id)?;
        super::manage::remove_container(ctx, &mut store, &old, true).map_err(|e| {
            Exit::with(
                125,
                format!("--replace: cannot remove container {}: {e}", old.name),
            )
        })?;
        res =
            crate::runtime::create::create(&mut store, &img, &image_name, mapping.as_ref(), &copts);
    }
    Ok((store, res?))
}

pub fn create(ctx: &Ctx, a: CreateArgs) -> anyhow::Result<i32> {
    let (_, rec) = create_from(ctx, a.flags)?;
    println!("{}", rec.id);
    Ok(0)
}

pub fn run(ctx: &Ctx, a: RunArgs) -> anyhow::Result<i32> {
    if a.detach && a.flags.log_driver.as_deref() == Some("passthrough") {
        return Err(Exit::with(
            125,
            "--log-driver passthrough needs an attached run: it cannot be used with -d",
        ));
    }
    let (store, rec) = create_from(ctx, a.flags)?;
    drop(store);
    if a.detach {
        start_detached(ctx, &rec)?;
        println!("{}", rec.id);
        return Ok(0);
    }
    start_attached(ctx, &rec)
}

/// Starts the container with its monitor attached to our terminal, as a foreground
/// `run` or `start -a`: the monitor writes the output straight to our stdout/stderr
/// (and the log), and we wait for the exit code, relaying signals and window sizes.
pub(super) fn start_attached(ctx: &Ctx, rec: &ContainerRecord) -> anyhow::Result<i32> {
    let cfg: ContainerConfig = serde_json::from_str(&rec.config)?;
    super::network::start_dependency(ctx, &cfg)?;
    let o = &cfg.options;
    let keys = proto::parse_detach_keys(o.detach_keys.as_deref().unwrap_or("ctrl-p,ctrl-q"))
        .map_err(|e| Exit::with(125, e))?;
    let mut args = ctx.self_args();
    args.extend([
        "__monitor".into(),
        rec.id.clone().into(),
        "--attach".into(),
        "--keys".into(),
        hex::encode(&keys).into(),
    ]);
    if o.interactive {
        args.push("--stdin".into());
    }
    if o.tty {
        let size = crate::runtime::pty::get_winsize(&std::io::stdout())
            .or_else(|| crate::runtime::pty::get_winsize(&std::io::stdin()));
        if let Some((rows, cols)) = size {
            args.extend(["--size".into(), format!("{rows}x{cols}").into()]);
        }
    }
    let h =
        crate::userns::spawn_helper(std::path::Path::new("/proc/self/exe"), &args, None, |_| {})?;
    // The monitor outlives us if we detach; it is reparented when we exit.
    std::mem::forget(h.child);
    let session = client::Session {
        tty: o.tty,
        sig_proxy: o.sig_proxy.unwrap_or(true),
        name: rec.name.clone(),
    };
    match client::wait(h.sync, &session) {
        Ok(outcome) => Ok(client::finish(&outcome)),
        Err(e) => Err(Exit::with(e.exit_code(), e.to_string())),
    }
}

/// Starts a monitor in the background and waits until it reports the container running.
/// Holds the container's lock meanwhile, so `rm`, `cp` and another `start` wait for the
/// outcome instead of racing the overlay mount.
pub(super) fn start_detached(ctx: &Ctx, rec: &ContainerRecord) -> anyhow::Result<()> {
    use std::io::Read;
    if let Ok(cfg) = serde_json::from_str::<ContainerConfig>(&rec.config) {
        super::network::start_dependency(ctx, &cfg)?;
    }
    let _lock = crate::storage::lock::FileLock::exclusive(&super::manage::lock_path(ctx, &rec.id))?;
    if let Ok(now) = Store::open(&ctx.paths).and_then(|s| s.find_container(&rec.id)) {
        if matches!(now.state, State::Running | State::Paused) {
            return Ok(());
        }
    }
    let mut args = ctx.self_args();
    args.extend(["__monitor".into(), rec.id.clone().into(), "--detach".into()]);
    let mut h =
        crate::userns::spawn_helper(std::path::Path::new("/proc/self/exe"), &args, None, |c| {
            c.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
        })?;
    let mut report = String::new();
    let _ = h.sync.read_to_string(&mut report);
    // The monitor keeps running; reap nothing, it is reparented when we exit.
    std::mem::forget(h.child);
    if report.starts_with("ok") {
        return Ok(());
    }
    let mut w = report.trim_end().splitn(3, ' ');
    let code = match (w.next(), w.next()) {
        (Some("error"), Some(c)) => c.parse().unwrap_or(125),
        _ => 125,
    };
    let msg = w
        .next()
        .unwrap_or("the monitor exited during start-up")
        .to_string();
    Err(Exit::with(code, msg))
}

/// Brings a record up to date: a running container whose monitor is gone has exited.
pub(super) fn refresh(
    store: &mut Store,
    mut c: ContainerRecord,
) -> anyhow::Result<ContainerRecord> {
    if matches!(c.state, State::Running | State::Paused) {
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
        return start_attached(ctx, &c);
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
        if !matches!(c.state, State::Running | State::Paused) {
            start_detached(ctx, &c)?;
        }
        println!("{name}");
    }
    Ok(code)
}

/// Stops a running container by killing it and waiting for its monitor to record it.
pub(super) fn kill_and_wait(store: &mut Store, c: &ContainerRecord) -> anyhow::Result<()> {
    // Tell the monitor first, or its restart policy would bring back what we kill.
    store.set_stop_requested(&c.id, true)?;
    if let Some(pid) = c.pid {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    wait_monitor(c);
    Ok(())
}

/// Waits (up to 5 s) for the container's monitor to finish: it records the exit and,
/// for `--rm`, removes the container itself.
pub(super) fn wait_monitor(c: &ContainerRecord) {
    if let (Some(mp), Some(ms)) = (c.monitor_pid, c.monitor_start) {
        for _ in 0..500 {
            if !crate::monitor::is_alive(mp, ms) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

pub fn rm(ctx: &Ctx, a: RmArgs) -> anyhow::Result<i32> {
    super::rm::rm(ctx, a)
}
