//! Small container commands: rename, pause/unpause, container prune, the shared
//! `remove_container` behind rm/prune/--replace, and the `skiff container ...` group
//! that podman users type (`podman container ls` and friends).

use clap::{Args, Subcommand};

use super::container::{self, refresh};
use super::{cp, exec, inspect, lifecycle, ps, top, Ctx, Exit};
use crate::runtime::cgroup;
use crate::storage::containers::{ContainerRecord, State};
use crate::storage::Store;

#[derive(Debug, Args)]
pub struct RenameArgs {
    /// The container to rename (name or ID)
    pub container: String,
    /// Its new name
    pub name: String,
}

#[derive(Debug, Args)]
pub struct PauseArgs {
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Do not ask for confirmation
    #[arg(short, long)]
    pub force: bool,
}

/// `skiff container SUBCOMMAND`: the same commands under podman's group name.
#[derive(Debug, Args)]
pub struct ContainerArgs {
    #[command(subcommand)]
    pub command: ContainerCommand,
}

#[derive(Debug, Subcommand)]
pub enum ContainerCommand {
    /// List containers
    #[command(name = "ls", visible_alias = "list", alias = "ps")]
    Ls(ps::PsArgs),
    /// Remove one or more containers
    Rm(container::RmArgs),
    /// Display the configuration of one or more containers
    Inspect(inspect::InspectArgs),
    /// Run a command in a new container
    Run(container::RunArgs),
    /// Create but do not start a container
    Create(container::CreateArgs),
    /// Start one or more containers
    Start(container::StartArgs),
    /// Rename a container
    Rename(RenameArgs),
    /// Remove all non-running containers
    Prune(PruneArgs),
    /// Pause all the processes in one or more containers
    Pause(PauseArgs),
    /// Unpause the processes in one or more containers
    Unpause(PauseArgs),
    /// Stop one or more running containers
    Stop(lifecycle::StopArgs),
    /// Send a signal to one or more running containers
    Kill(lifecycle::KillArgs),
    /// Block until containers stop, then print their exit codes
    Wait(lifecycle::WaitArgs),
    /// Restart one or more containers
    Restart(lifecycle::RestartArgs),
    /// Attach to a running container's terminal or output
    Attach(lifecycle::AttachArgs),
    /// Show a container's logs
    Logs(lifecycle::LogsArgs),
    /// Run a process in a running container
    Exec(exec::ExecArgs),
    /// Copy files/folders between a container and the local filesystem
    Cp(cp::CpArgs),
    /// Display the running processes of a container
    Top(top::TopArgs),
}

pub fn container_group(ctx: &Ctx, a: ContainerArgs) -> anyhow::Result<i32> {
    match a.command {
        ContainerCommand::Ls(a) => ps::ps(ctx, a),
        ContainerCommand::Rm(a) => container::rm(ctx, a),
        ContainerCommand::Inspect(mut a) => {
            // `container inspect` only ever means containers.
            a.kind = Some("container".into());
            inspect::inspect(ctx, a)
        }
        ContainerCommand::Run(a) => container::run(ctx, a),
        ContainerCommand::Create(a) => container::create(ctx, a),
        ContainerCommand::Start(a) => container::start(ctx, a),
        ContainerCommand::Rename(a) => rename(ctx, a),
        ContainerCommand::Prune(a) => prune(ctx, a),
        ContainerCommand::Pause(a) => pause(ctx, a, true),
        ContainerCommand::Unpause(a) => pause(ctx, a, false),
        ContainerCommand::Stop(a) => lifecycle::stop(ctx, a),
        ContainerCommand::Kill(a) => lifecycle::kill(ctx, a),
        ContainerCommand::Wait(a) => lifecycle::wait(ctx, a),
        ContainerCommand::Restart(a) => lifecycle::restart(ctx, a),
        ContainerCommand::Attach(a) => lifecycle::attach(ctx, a),
        ContainerCommand::Logs(a) => lifecycle::logs(ctx, a),
        ContainerCommand::Exec(a) => exec::exec(ctx, a),
        ContainerCommand::Cp(a) => cp::cp(ctx, a),
        ContainerCommand::Top(a) => top::top(ctx, a),
    }
}

/// Why a container could not be removed; the exit code is podman's for rm.
#[derive(Debug, thiserror::Error)]
pub enum RemoveError {
    #[error("cannot remove container {0} as it is running - running or paused containers cannot be removed without force: container state improper")]
    Running(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl RemoveError {
    pub fn exit_code(&self) -> i32 {
        match self {
            RemoveError::Running(_) => 2,
            RemoveError::Other(_) => 125,
        }
    }
}

pub(super) fn lock_path(ctx: &Ctx, id: &str) -> std::path::PathBuf {
    ctx.paths.runroot.join("locks").join(id)
}

/// Removes a container: with `force` a running or paused one is killed first. Holds
/// the container's lock throughout, and decides on the state read under it, so a
/// container started meanwhile is never removed from under its monitor.
pub fn remove_container(
    ctx: &Ctx,
    store: &mut Store,
    rec: &ContainerRecord,
    force: bool,
) -> Result<(), RemoveError> {
    remove_container_with(ctx, store, rec, force, None)
}

/// [`remove_container`] for `rm -f -t SECONDS`: with `stop_time` a running container
/// gets its stop signal and that long to exit before SIGKILL (as `stop -t`); without,
/// it is killed at once.
pub fn remove_container_with(
    ctx: &Ctx,
    store: &mut Store,
    rec: &ContainerRecord,
    force: bool,
    stop_time: Option<u32>,
) -> Result<(), RemoveError> {
    let lock = lock_path(ctx, &rec.id);
    let _guard = crate::storage::lock::FileLock::exclusive(&lock).map_err(anyhow::Error::from)?;
    let found = store.find_container(&rec.id).map_err(anyhow::Error::from)?;
    let c = refresh(store, found)?;
    let running = matches!(c.state, State::Running | State::Paused);
    // podman checks the state before the dependents.
    if running && !force {
        return Err(RemoveError::Running(c.id.clone()));
    }
    crate::runtime::networks::check_no_dependents(store, &c.id)
        .map_err(|msg| RemoveError::Other(super::Exit::with(125, msg)))?;
    if running {
        if let Some(t) = stop_time {
            let stopped = lifecycle::stop_one(ctx, store, &c, Some(t));
            container::wait_monitor(&c);
            if let Err(e) = stopped {
                if store.find_container(&c.id).is_ok() {
                    return Err(e.into());
                }
            }
        } else {
            if c.state == State::Paused {
                // Frozen tasks (cgroup v1) do not die from SIGKILL until thawed.
                if let Some(pid) = c.pid {
                    let _ = cgroup::set_frozen(&c.id, &c.name, pid, false);
                }
            }
            container::kill_and_wait(store, &c)?;
        }
        match store.find_container(&c.id) {
            Ok(now) => {
                refresh(store, now)?;
            }
            Err(_) => {
                // A `--rm` container: its monitor removed it once it exited.
                let _ = std::fs::remove_file(crate::monitor::attach_socket(&ctx.paths, &c.id));
                let _ = std::fs::remove_file(&lock);
                return Ok(());
            }
        }
    }
    crate::runtime::remove_container_dir(&ctx.paths, &ctx.paths.container_dir(&c.id))
        .map_err(anyhow::Error::from)?;
    store.delete_container(&c.id).map_err(anyhow::Error::from)?;
    // A monitor that was killed could not remove its socket.
    let _ = std::fs::remove_file(crate::monitor::attach_socket(&ctx.paths, &c.id));
    cgroup::remove(&c.id);
    let _ = std::fs::remove_file(&lock);
    Ok(())
}

pub fn rename(ctx: &Ctx, a: RenameArgs) -> anyhow::Result<i32> {
    if !crate::runtime::create::valid_name(&a.name) {
        return Err(Exit::with(
            125,
            format!(
                "container name {:?} is invalid: use [a-zA-Z0-9][a-zA-Z0-9_.-]*",
                a.name
            ),
        ));
    }
    let mut store = Store::open(&ctx.paths)?;
    let c = store.find_container(&a.container)?;
    let _guard = crate::storage::lock::FileLock::exclusive(&lock_path(ctx, &c.id))?;
    store.rename_container(&c.id, &a.name)?;
    Ok(0)
}

pub fn prune(ctx: &Ctx, a: PruneArgs) -> anyhow::Result<i32> {
    if !a.force
        && !super::confirm(
            "WARNING! This will remove all non running containers.\nAre you sure you want to continue?",
        )
    {
        return Ok(0);
    }
    let mut store = Store::open(&ctx.paths)?;
    let mut code = 0;
    for c in store.containers()? {
        let c = refresh(&mut store, c)?;
        if matches!(c.state, State::Running | State::Paused) {
            continue;
        }
        match remove_container(ctx, &mut store, &c, false) {
            Ok(()) => println!("{}", c.id),
            // Started since we listed it: not ours to prune any more.
            Err(RemoveError::Running(_)) => {}
            Err(e) => {
                eprintln!("Error: {e}");
                code = 125;
            }
        }
    }
    Ok(code)
}

/// `pause` (`freeze`) or `unpause` each container; prints each one done, as podman.
pub fn pause(ctx: &Ctx, a: PauseArgs, freeze: bool) -> anyhow::Result<i32> {
    let verb = if freeze { "pause" } else { "unpause" };
    cgroup::check_supported(verb, ctx.paths.rootless)
        .map_err(|e| Exit::with(125, e.to_string()))?;
    let mut store = Store::open(&ctx.paths)?;
    let mut code = 0;
    for name in &a.containers {
        if let Err(e) = pause_one(ctx, &mut store, name, freeze) {
            if a.containers.len() == 1 {
                return Err(e);
            }
            eprintln!("Error: {e}");
            code = 125;
            continue;
        }
        println!("{name}");
    }
    Ok(code)
}

fn pause_one(ctx: &Ctx, store: &mut Store, name: &str, freeze: bool) -> anyhow::Result<()> {
    let found = store.find_container(name)?;
    let _guard = crate::storage::lock::FileLock::exclusive(&lock_path(ctx, &found.id))?;
    let c = refresh(store, store.find_container(&found.id)?)?;
    let (from, verb) = if freeze {
        (State::Running, "pause")
    } else {
        (State::Paused, "unpause")
    };
    if c.state != from {
        let why = if freeze && c.state == State::Paused {
            "it is already paused"
        } else if freeze {
            "it is not running"
        } else {
            "it is not paused"
        };
        return Err(Exit::with(
            125,
            format!(
                "cannot {verb} container {}: {why}: container state improper",
                c.name
            ),
        ));
    }
    let pid = c.pid.ok_or_else(|| {
        Exit::with(
            125,
            format!("cannot {verb} container {}: no process recorded", c.name),
        )
    })?;
    cgroup::set_frozen(&c.id, &c.name, pid, freeze).map_err(|e| Exit::with(125, e.to_string()))?;
    store.set_paused(&c.id, freeze)?;
    Ok(())
}
