//! `generate systemd`: a service for an existing container, in the shape podman 4.3's
//! `podman generate systemd` gives, so users can keep their habits. With `new` the unit
//! creates a fresh container from the recorded flags on every start; without, it starts
//! and stops the existing one. Both are Type=notify: the monitor tells systemd its pid.

use crate::runtime::CreateOptions;

use super::unit::{command_line, UnitFile};

/// What to generate.
pub struct Request<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub image: &'a str,
    pub options: &'a CreateOptions,
    /// `--new`: run a new container each time instead of starting this one.
    pub new: bool,
    /// `--name`: name the unit (and its commands) by the container name, not the ID.
    pub use_name: bool,
    pub restart_policy: Option<&'a str>,
    pub stop_timeout: u32,
    pub prefix: &'a str,
    pub separator: &'a str,
    pub header: bool,
    /// The skiff binary and global flags (`--root` ...) the unit runs.
    pub skiff: Vec<String>,
}

/// systemd's Restart= values that podman accepts for --restart-policy.
pub const RESTART_POLICIES: &[&str] = &[
    "no",
    "on-success",
    "on-failure",
    "on-abnormal",
    "on-watchdog",
    "on-abort",
    "always",
];

/// The unit's file name, e.g. `container-web.service`.
pub fn unit_name(r: &Request) -> String {
    let who = if r.use_name { r.name } else { r.id };
    format!("{}{}{}.service", r.prefix, r.separator, who)
}

/// `--restart` of the container mapped to systemd's Restart=.
fn restart_from_container(o: &CreateOptions) -> &'static str {
    match o.restart.as_deref().unwrap_or("no") {
        "always" | "unless-stopped" => "always",
        r if r.starts_with("on-failure") => "on-failure",
        _ => "on-failure",
    }
}

/// The `run` flags that recreate the container, from what was recorded at create.
fn run_flags(o: &CreateOptions) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    let mut one = |flag: &str, val: &Option<String>| {
        if let Some(x) = val {
            v.push(flag.into());
            v.push(x.clone());
        }
    };
    one("--workdir", &o.workdir);
    one("--user", &o.user);
    one("--entrypoint", &o.entrypoint);
    one("--hostname", &o.hostname);
    one("--network", &o.network);
    one("--log-driver", &o.log_driver);
    one("--stop-signal", &o.stop_signal);
    one("--platform", &o.platform);
    one("--detach-keys", &o.detach_keys);
    if let Some(t) = o.stop_timeout {
        v.extend(["--stop-timeout".into(), t.to_string()]);
    }
    if o.read_only {
        v.push("--read-only".into());
    }
    if let Some(b) = o.read_only_tmpfs {
        v.push(format!("--read-only-tmpfs={b}"));
    }
    if o.interactive {
        v.push("-i".into());
    }
    if o.tty {
        v.push("-t".into());
    }
    if o.init {
        v.push("--init".into());
    }
    let many: [(&str, Vec<String>); 12] = [
        ("-e", o.env.clone()),
        (
            "--env-file",
            o.env_files
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect(),
        ),
        ("-v", o.volumes.clone()),
        ("--mount", o.mounts.clone()),
        ("--tmpfs", o.tmpfs.clone()),
        ("--log-opt", o.log_opts.clone()),
        ("--add-host", o.add_hosts.clone()),
        ("--dns", o.dns.clone()),
        ("--dns-search", o.dns_search.clone()),
        ("--label", o.labels.clone()),
        ("--annotation", o.annotations.clone()),
        ("--sysctl", o.sysctls.clone()),
    ];
    for (flag, vals) in many {
        for x in vals {
            v.extend([flag.into(), x]);
        }
    }
    v
}

/// The unit text.
pub fn render(r: &Request) -> String {
    let unit_file = unit_name(r);
    let who = if r.use_name { r.name } else { r.id };
    let t = r.stop_timeout.to_string();
    let restart = r
        .restart_policy
        .unwrap_or_else(|| restart_from_container(r.options));
    let mut u = UnitFile::default();
    u.add("Unit", "Description", format!("skiff {unit_file}"));
    u.add("Unit", "Documentation", "man:skiff-generate-systemd(1)");
    u.add("Unit", "Wants", "network-online.target");
    u.add("Unit", "After", "network-online.target");
    u.add("Unit", "RequiresMountsFor", "%t/skiff");
    u.add("Service", "Environment", "PODMAN_SYSTEMD_UNIT=%n");
    u.add("Service", "Restart", restart);
    u.add(
        "Service",
        "TimeoutStopSec",
        (r.stop_timeout + 60).to_string(),
    );
    let cmd = |args: &[&str]| {
        let mut v = r.skiff.clone();
        v.extend(args.iter().map(|s| s.to_string()));
        v
    };
    if r.new {
        let cid = "--cidfile=%t/%n.ctr-id";
        u.add("Service", "ExecStartPre", "/bin/rm -f %t/%n.ctr-id");
        let mut run = cmd(&["run", cid, "--rm"]);
        let notify = match r.options.sdnotify.as_deref() {
            Some("container") => "container",
            _ => "conmon",
        };
        run.push(format!("--sdnotify={notify}"));
        run.extend(["-d".into(), "--replace".into()]);
        run.extend(["--name".into(), r.name.into()]);
        run.extend(run_flags(r.options));
        run.push(r.image.into());
        run.extend(r.options.command.iter().cloned());
        u.add("Service", "ExecStart", command_line(&run));
        u.add(
            "Service",
            "ExecStop",
            command_line(&cmd(&["stop", "--ignore", "-t", &t, cid])),
        );
        u.add(
            "Service",
            "ExecStopPost",
            command_line(&cmd(&["rm", "-f", "--ignore", cid])),
        );
    } else {
        u.add("Service", "ExecStart", command_line(&cmd(&["start", who])));
        u.add(
            "Service",
            "ExecStop",
            command_line(&cmd(&["stop", "--ignore", "-t", &t, who])),
        );
        u.add(
            "Service",
            "ExecStopPost",
            command_line(&cmd(&["stop", "--ignore", "-t", &t, who])),
        );
    }
    u.add("Service", "Type", "notify");
    u.add("Service", "NotifyAccess", "all");
    u.add("Install", "WantedBy", "default.target");
    let mut out = String::new();
    if r.header {
        out.push_str(&format!(
            "# {unit_file}\n# autogenerated by skiff {}\n\n",
            env!("CARGO_PKG_VERSION")
        ));
    }
    out.push_str(&u.render());
    out
}
