//! run/create flags for capabilities, privileges, devices, user namespaces and resource
//! limits; flattened into `CreateFlags`.

use clap::Args;

use crate::runtime::SecurityOptions;

#[derive(Debug, Args)]
pub struct SecurityFlags {
    /// Add Linux capabilities (NAME, CAP_NAME or ALL)
    #[arg(long, value_name = "CAP")]
    pub cap_add: Vec<String>,
    /// Drop Linux capabilities (NAME, CAP_NAME or ALL)
    #[arg(long, value_name = "CAP")]
    pub cap_drop: Vec<String>,
    /// Give extended privileges: all capabilities, no masked paths, host devices
    #[arg(long)]
    pub privileged: bool,
    /// Security options: seccomp=unconfined|PROFILE.json, no-new-privileges, mask=PATHS, unmask=ALL|PATHS
    #[arg(long, value_name = "OPT")]
    pub security_opt: Vec<String>,
    /// Add a host device: HOST-PATH[:CONTAINER-PATH][:PERMISSIONS]
    #[arg(long, value_name = "DEVICE")]
    pub device: Vec<String>,
    /// User namespace: host, keep-id[:uid=UID,gid=GID], nomap, auto[:size=N,uidmapping=C:H:N,gidmapping=C:H:N]
    #[arg(long, value_name = "MODE")]
    pub userns: Option<String>,
    /// UID mapping: CONTAINER-ID:HOST-ID:COUNT (rootless: HOST-ID counts in your user namespace)
    #[arg(long, value_name = "MAP")]
    pub uidmap: Vec<String>,
    /// GID mapping: CONTAINER-ID:HOST-ID:COUNT
    #[arg(long, value_name = "MAP")]
    pub gidmap: Vec<String>,
    /// Memory limit (e.g. 512m, 1g)
    #[arg(short, long, value_name = "SIZE")]
    pub memory: Option<String>,
    /// Memory plus swap limit (-1: unlimited)
    #[arg(long, value_name = "SIZE", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// Number of CPUs (e.g. 1.5)
    #[arg(long, value_name = "N")]
    pub cpus: Option<String>,
    /// CPU shares (relative weight)
    #[arg(short, long, value_name = "SHARES")]
    pub cpu_shares: Option<u64>,
    /// Limit the number of processes (-1: unlimited)
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Set a resource limit: NAME=SOFT[:HARD]
    #[arg(long, value_name = "ULIMIT")]
    pub ulimit: Vec<String>,
    /// Tune the container's OOM preference (-1000 to 1000)
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub oom_score_adj: Option<i32>,
}

impl SecurityFlags {
    pub fn into_options(self) -> SecurityOptions {
        SecurityOptions {
            cap_add: self.cap_add,
            cap_drop: self.cap_drop,
            privileged: self.privileged,
            security_opts: self.security_opt,
            devices: self.device,
            userns: self.userns,
            uidmaps: self.uidmap,
            gidmaps: self.gidmap,
            memory: self.memory,
            memory_swap: self.memory_swap,
            cpus: self.cpus,
            cpu_shares: self.cpu_shares,
            pids_limit: self.pids_limit,
            ulimits: self.ulimit,
            oom_score_adj: self.oom_score_adj,
        }
    }
}
