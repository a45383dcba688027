//! Command-line definitions (clap derive), one file per command family. Each command
//! parses, calls into the engine modules, and prints; no engine logic lives here.

mod boolflags;
mod cidfile;
mod commit;
mod container;
mod cp;
mod docs;
mod docs_text;
mod doctor;
mod exec;
mod filters;
mod format;
mod image;
mod image_filter;
mod image_group;
mod inspect;
mod inspect_json;
mod lifecycle;
mod manage;
mod network;
mod port;
mod ps;
mod rm;
mod security_flags;
mod settings;
mod store;
mod system;
mod systemd;
mod template;
mod top;
mod transfer;
mod volume;

pub use boolflags::normalize as normalize_bool_flags;
pub use docs::complete_from_env;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::Paths;

/// An error that carries the process exit code (podman's conventions).
#[derive(Debug)]
pub struct Exit {
    pub code: i32,
    pub message: Option<String>,
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.message.as_deref().unwrap_or(""))
    }
}
impl std::error::Error for Exit {}

impl Exit {
    /// Exit with a message and a specific code.
    pub fn with(code: i32, message: impl Into<String>) -> anyhow::Error {
        Exit {
            code,
            message: Some(message.into()),
        }
        .into()
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "skiff",
    version,
    about = "Rootless, daemonless containers in one binary",
    long_about = "skiff runs OCI containers without root and without a daemon: pull images from any registry, run them in user namespaces, manage them with podman's commands.",
    propagate_version = true
)]
pub struct Cli {
    /// Storage root (default: ~/.local/share/skiff, or /var/lib/skiff for root)
    #[arg(long, global = true, value_name = "DIR", env = "SKIFF_ROOT")]
    pub root: Option<PathBuf>,
    /// Runtime state directory (default: $XDG_RUNTIME_DIR/skiff, or /run/skiff for root)
    #[arg(long, global = true, value_name = "DIR", env = "SKIFF_RUNROOT")]
    pub runroot: Option<PathBuf>,
    /// Log messages at and above this level: error, warn, info, debug, trace
    #[arg(long, global = true, default_value = "warn", value_name = "LEVEL")]
    pub log_level: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Pull an image from a registry
    Pull(image::PullArgs),
    /// List images in local storage
    Images(image::ImagesArgs),
    /// Remove one or more images
    Rmi(image::RmiArgs),
    /// Add an additional name to a local image
    Tag(image::TagArgs),
    /// Log in to a container registry
    Login(transfer::LoginArgs),
    /// Log out of a container registry
    Logout(transfer::LogoutArgs),
    /// Push an image to a registry
    Push(transfer::PushArgs),
    /// Save images to an archive (docker-archive, oci-archive, oci-dir)
    Save(transfer::SaveArgs),
    /// Load images from an archive
    Load(transfer::LoadArgs),
    /// Display the configuration of a container or image
    Inspect(inspect::InspectArgs),
    /// Run a command in a new container
    Run(container::RunArgs),
    /// Create but do not start a container
    Create(container::CreateArgs),
    /// Start one or more containers
    Start(container::StartArgs),
    /// List containers
    Ps(ps::PsArgs),
    /// Remove one or more containers
    Rm(container::RmArgs),
    /// Rename an existing container
    Rename(manage::RenameArgs),
    /// Pause all the processes in one or more containers
    Pause(manage::PauseArgs),
    /// Unpause the processes in one or more containers
    Unpause(manage::PauseArgs),
    /// Manage containers (podman's `container` group: ls, rm, inspect, prune, ...)
    Container(manage::ContainerArgs),
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
    /// List the published ports of a container
    Port(port::PortArgs),
    /// Create a new image from a container's changes
    Commit(commit::CommitArgs),
    /// Import a tarball as a filesystem image
    Import(commit::ImportArgs),
    /// Export a container's filesystem contents as a tar archive
    Export(commit::ExportArgs),
    /// Show the history of an image
    History(image_group::HistoryArgs),
    /// Manage images (podman's `image` group: ls, rm, pull, tag, inspect, prune, ...)
    Image(image_group::ImageArgs),
    /// Manage named volumes
    Volume(volume::VolumeArgs),
    /// Manage user-defined networks
    Network(network::NetworkArgs),
    /// Run a command inside your user namespace (to inspect or remove files owned by
    /// subordinate IDs)
    Unshare(system::UnshareArgs),
    /// Display the skiff version information
    Version(system::VersionArgs),
    /// Display skiff related system information
    Info(system::InfoArgs),
    /// Turn Quadlet .container files into systemd services (also runs as a systemd
    /// generator)
    Quadlet(systemd::QuadletArgs),
    /// Generate structured data: `generate systemd` writes a unit for a container
    Generate(systemd::GenerateArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completion(docs::CompletionArgs),
    #[command(name = "__generate-docs", hide = true)]
    GenerateDocs(docs::GenerateDocsArgs),
    #[command(name = "__doctor-probe", hide = true)]
    DoctorProbe { dir: PathBuf },
    #[command(name = "__monitor", hide = true)]
    Monitor(crate::monitor::MonitorArgs),
    #[command(name = "__unpack-layer", hide = true)]
    UnpackLayer(crate::storage::layer_helper::HelperArgs),
    #[command(name = "__exec", hide = true)]
    ExecHelper,
    #[command(name = "__cp", hide = true)]
    CpHelper,
    /// Manage skiff's store: df, prune, reset, check
    System {
        #[command(subcommand)]
        command: store::StoreCommand,
    },
    #[command(name = "__archive", hide = true)]
    ArchiveHelper,
    #[command(name = "__rm-tree", hide = true)]
    RmTree { dirs: Vec<PathBuf> },
    #[command(name = "__chown-root", hide = true)]
    ChownRoot { files: Vec<PathBuf> },
    #[command(name = "__unshare", hide = true)]
    UnshareHelper {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
}

/// Global context passed to every command.
pub struct Ctx {
    pub paths: Paths,
    pub log_level: String,
    /// Effective configuration (skiff.toml, environment, flags) and its sources.
    pub settings: crate::config::file::Settings,
}

impl Ctx {
    /// Arguments that make a re-exec of skiff use the same store and log level.
    pub fn self_args(&self) -> Vec<std::ffi::OsString> {
        vec![
            "--root".into(),
            self.paths.root.clone().into(),
            "--runroot".into(),
            self.paths.runroot.clone().into(),
            "--log-level".into(),
            self.log_level.clone().into(),
        ]
    }
}

/// Runs the parsed command; Ok(code) is the process exit code.
pub fn dispatch(cli: Cli) -> anyhow::Result<i32> {
    let (paths, settings) = settings::resolve(&cli)?;
    let ctx = Ctx {
        paths,
        log_level: cli.log_level.clone(),
        settings,
    };
    match cli.command {
        Command::Pull(a) => image::pull(&ctx, a),
        Command::Images(a) => image::images(&ctx, a),
        Command::Rmi(a) => image::rmi(&ctx, a),
        Command::Tag(a) => image::tag(&ctx, a),
        Command::Commit(a) => commit::commit(&ctx, a),
        Command::Import(a) => commit::import(&ctx, a),
        Command::Export(a) => commit::export(&ctx, a),
        Command::History(a) => image_group::history(&ctx, a),
        Command::Image(a) => image_group::image_group(&ctx, a),
        Command::System { command } => store::dispatch(&ctx, command),
        Command::ArchiveHelper => Ok(crate::runtime::export::helper_main()),
        Command::Login(a) => transfer::login(&ctx, a),
        Command::Logout(a) => transfer::logout(&ctx, a),
        Command::Push(a) => transfer::push(&ctx, a),
        Command::Save(a) => transfer::save(&ctx, a),
        Command::Load(a) => transfer::load(&ctx, a),
        Command::Inspect(a) => inspect::inspect(&ctx, a),
        Command::Run(a) => container::run(&ctx, a),
        Command::Create(a) => container::create(&ctx, a),
        Command::Start(a) => container::start(&ctx, a),
        Command::Ps(a) => ps::ps(&ctx, a),
        Command::Rm(a) => container::rm(&ctx, a),
        Command::Rename(a) => manage::rename(&ctx, a),
        Command::Pause(a) => manage::pause(&ctx, a, true),
        Command::Unpause(a) => manage::pause(&ctx, a, false),
        Command::Container(a) => manage::container_group(&ctx, a),
        Command::Stop(a) => lifecycle::stop(&ctx, a),
        Command::Kill(a) => lifecycle::kill(&ctx, a),
        Command::Wait(a) => lifecycle::wait(&ctx, a),
        Command::Restart(a) => lifecycle::restart(&ctx, a),
        Command::Attach(a) => lifecycle::attach(&ctx, a),
        Command::Logs(a) => lifecycle::logs(&ctx, a),
        Command::Exec(a) => exec::exec(&ctx, a),
        Command::Cp(a) => cp::cp(&ctx, a),
        Command::Top(a) => top::top(&ctx, a),
        Command::Port(a) => port::port(&ctx, a),
        Command::ExecHelper => Ok(crate::runtime::exec::helper_main()),
        Command::CpHelper => Ok(crate::runtime::cp::helper_main()),
        Command::Volume(a) => volume::volume(&ctx, a),
        Command::Network(a) => network::network(&ctx, a),
        Command::Unshare(a) => system::unshare(&ctx, a),
        Command::Version(a) => system::version(&ctx, a),
        Command::Info(a) => system::info(&ctx, a),
        Command::Quadlet(a) => systemd::quadlet_cmd(&ctx, a),
        Command::Generate(a) => systemd::generate_cmd(&ctx, a),
        Command::Completion(a) => docs::completion(a),
        Command::GenerateDocs(a) => docs::generate_docs(a),
        Command::DoctorProbe { dir } => Ok(doctor::probe(&dir)),
        Command::Monitor(a) => Ok(crate::monitor::main(&ctx.paths, &a)),
        Command::UnpackLayer(a) => Ok(crate::storage::layer_helper::main(&a)),
        Command::RmTree { dirs } => Ok(crate::userns::rm_tree_main(&ctx.paths, &dirs)),
        Command::ChownRoot { files } => {
            Ok(crate::userns::reach::chown_root_main(&ctx.paths, &files))
        }
        Command::UnshareHelper { command } => Ok(system::unshare_helper(&ctx, &command)),
    }
}

/// podman's prune prompt: `QUESTION [y/N] `, yes when the answer starts with y or Y.
pub fn confirm(question: &str) -> bool {
    use std::io::{BufRead, Write};
    print!("{question} [y/N] ");
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    answer.trim_start().starts_with(['y', 'Y'])
}
