//! `system doctor`: checks the host for rootless use and says how to fix each problem.
//! Checks read the same files and run the same tools skiff itself relies on; the user
//! namespace and overlay checks actually try them in a helper, because a sysctl that
//! looks right proves little (AppArmor, seccomp, a container host can still refuse).

mod probe;

pub use probe::probe_main;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::userns::{lookup_subids, IdMapping};

/// How a check turned out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
    /// Not applicable here (e.g. subordinate IDs when running as root).
    Skip,
}

/// One finding, with the command or setting that fixes it.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub id: &'static str,
    /// Needed for skiff to work at all; optional ones only warn.
    pub required: bool,
    pub status: Status,
    pub message: String,
    pub fix: Option<String>,
}

/// The whole diagnosis.
#[derive(Debug, Serialize)]
pub struct Report {
    pub ok: bool,
    pub rootless: bool,
    pub user: String,
    pub uid: u32,
    pub checks: Vec<Check>,
}

fn check(id: &'static str, required: bool, status: Status, message: String) -> Check {
    Check {
        id,
        required,
        status,
        message,
        fix: None,
    }
}

fn with_fix(mut c: Check, fix: impl Into<String>) -> Check {
    c.fix = Some(fix.into());
    c
}

/// Whether root containers with a user namespace (--uidmap) can use the host's layers
/// through idmapped mounts here, or get a copy of the layers per mapping.
fn idmapped(scratch: &Path, rootless: bool) -> Check {
    if rootless {
        return check(
            "idmapped-mounts",
            false,
            Status::Skip,
            "rootless: each ID mapping gets its own copy of the layers (idmapped mounts need root)"
                .into(),
        );
    }
    if std::env::var(crate::rootfs::idmapped::DISABLE_ENV).is_ok_and(|v| v == "1") {
        return check(
            "idmapped-mounts",
            false,
            Status::Warn,
            format!(
                "{}=1: --uidmap containers copy the layers",
                crate::rootfs::idmapped::DISABLE_ENV
            ),
        );
    }
    match crate::rootfs::idmapped::probe(scratch) {
        Ok(()) => check("idmapped-mounts", false, Status::Ok, "idmapped mounts work: --uidmap containers use the stored layers, no copy".into()),
        Err(e) => with_fix(
            check("idmapped-mounts", false, Status::Warn, format!("idmapped mount refused ({e}): --uidmap containers copy the layers once per mapping")),
            "use Linux 5.19 or newer and a store on a file system with idmapped mount support (ext4, xfs, btrfs, tmpfs)",
        ),
    }
}

fn read_trim(p: &str) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
}

/// Runs every check. `exe` is the skiff binary that runs the probe helper.
/// `scratch` is a directory on the store's filesystem for the overlay probe, and
/// `self_args` the global flags the probe helper is started with.
pub fn diagnose(
    exe: &Path,
    scratch: &Path,
    self_args: &[std::ffi::OsString],
    uid: u32,
    gid: u32,
) -> Report {
    let rootless = uid != 0;
    let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| uid.to_string());
    let mut checks = Vec::new();
    for (id, file) in [("subuid", "/etc/subuid"), ("subgid", "/etc/subgid")] {
        checks.push(subids(id, file, &user, uid, rootless));
    }
    for tool in ["newuidmap", "newgidmap"] {
        checks.push(map_tool(tool, rootless));
    }
    checks.push(userns_sysctls());
    checks.extend(probes(exe, scratch, self_args, uid, gid, rootless, &checks));
    checks.push(idmapped(scratch, rootless));
    checks.push(device("fuse", "/dev/fuse", "the FUSE overlay driver and fuse mounts", "modprobe fuse, and make /dev/fuse mode 0666 (or pass --device /dev/fuse to the container this runs in)"));
    checks.push(device("tun", "/dev/net/tun", "user-mode networking (the TAP device)", "modprobe tun, and make /dev/net/tun mode 0666 (or pass --device /dev/net/tun to the container this runs in)"));
    checks.push(runtime_dir(uid, rootless));
    checks.push(cgroups(uid, rootless));
    checks.push(linger(&user, rootless));
    checks.push(ping_range(gid));
    checks.push(port_start());
    let ok = !checks
        .iter()
        .any(|c| c.required && c.status == Status::Fail);
    Report {
        ok,
        rootless,
        user,
        uid,
        checks,
    }
}

fn subids(id: &'static str, file: &str, user: &str, uid: u32, rootless: bool) -> Check {
    if !rootless {
        return check(
            id,
            true,
            Status::Skip,
            format!("{file} is not needed as root"),
        );
    }
    let ranges = lookup_subids(file, Some(user), uid).unwrap_or_default();
    let mut total: u64 = ranges.iter().map(|r| u64::from(r.count)).sum();
    let mut source = file.to_string();
    if total == 0 {
        // libsubid may serve the ranges from elsewhere (LDAP, sssd): ask getsubids.
        if let Some(n) = getsubids(user, id == "subgid") {
            total = n;
            source = "getsubids".into();
        }
    }
    let flag = if id == "subuid" { "subuids" } else { "subgids" };
    let fix = format!("as root: usermod --add-{flag} 100000-165535 {user} (pick a range no other user has in {file})");
    match total {
        0 => with_fix(
            check(id, true, Status::Fail, format!("no subordinate {} for {user} in {file}: only a single-ID mapping is possible, and images with files owned by other users fail", if id == "subuid" { "UIDs" } else { "GIDs" })),
            fix,
        ),
        n if n < 65536 => with_fix(
            check(id, true, Status::Warn, format!("{n} subordinate IDs for {user} ({source}): images that use IDs above {n} fail")),
            fix,
        ),
        n => check(id, true, Status::Ok, format!("{n} subordinate IDs for {user} ({source})")),
    }
}

fn getsubids(user: &str, group: bool) -> Option<u64> {
    let mut cmd = std::process::Command::new("getsubids");
    if group {
        cmd.arg("-g");
    }
    let out = cmd
        .arg(user)
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    // Lines look like `0: alice 100000 65536`.
    let n: u64 = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().last()?.parse::<u64>().ok())
        .sum();
    (n > 0).then_some(n)
}

/// Finds a program in PATH (plus the sbin dirs, which a user's PATH may lack).
pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin", "/usr/sbin", "/bin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

fn map_tool(tool: &'static str, rootless: bool) -> Check {
    if !rootless {
        return check(
            tool,
            true,
            Status::Skip,
            format!("{tool} is not needed as root"),
        );
    }
    let Some(path) = which(tool) else {
        return with_fix(
            check(
                tool,
                true,
                Status::Fail,
                format!("{tool} not found: mappings of subordinate IDs need it"),
            ),
            "as root: apt-get install uidmap (Fedora: dnf install shadow-utils)",
        );
    };
    let Ok(md) = std::fs::metadata(&path) else {
        return check(
            tool,
            true,
            Status::Fail,
            format!("cannot stat {}", path.display()),
        );
    };
    let setuid = md.permissions().mode() & 0o4000 != 0 && md.uid() == 0;
    // Some distributions grant file capabilities instead of the setuid bit.
    let caps = xattr_present(&path, "security.capability");
    if setuid || caps {
        let how = if setuid {
            "setuid root"
        } else {
            "file capabilities"
        };
        check(
            tool,
            true,
            Status::Ok,
            format!("{} ({how})", path.display()),
        )
    } else {
        with_fix(
            check(
                tool,
                true,
                Status::Fail,
                format!(
                    "{} is neither setuid root nor has file capabilities: it cannot write ID maps",
                    path.display()
                ),
            ),
            format!(
                "as root: chown root {p} && chmod u+s {p}",
                p = path.display()
            ),
        )
    }
}

fn xattr_present(path: &Path, name: &str) -> bool {
    let (Ok(p), Ok(n)) = (
        std::ffi::CString::new(path.as_os_str().as_encoded_bytes()),
        std::ffi::CString::new(name),
    ) else {
        return false;
    };
    // SAFETY: valid NUL-terminated strings; a null buffer of size 0 only asks the size.
    let r = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), std::ptr::null_mut(), 0) };
    r > 0
}

fn userns_sysctls() -> Check {
    let id = "userns-sysctl";
    if read_trim("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
        return with_fix(
            check(
                id,
                true,
                Status::Fail,
                "user.max_user_namespaces is 0: user namespaces are disabled".into(),
            ),
            "as root: sysctl -w user.max_user_namespaces=15000 (persist in /etc/sysctl.d/)",
        );
    }
    if read_trim("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        return with_fix(
            check(id, true, Status::Fail, "kernel.unprivileged_userns_clone is 0: unprivileged users cannot create user namespaces".into()),
            "as root: sysctl -w kernel.unprivileged_userns_clone=1 (persist in /etc/sysctl.d/)",
        );
    }
    if read_trim("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").as_deref() == Some("1") {
        return with_fix(
            check(id, true, Status::Fail, "kernel.apparmor_restrict_unprivileged_userns is 1: AppArmor denies user namespaces to unconfined programs".into()),
            "as root: add an AppArmor profile for skiff with `userns,` (see /etc/apparmor.d/), or sysctl -w kernel.apparmor_restrict_unprivileged_userns=0",
        );
    }
    let max = read_trim("/proc/sys/user/max_user_namespaces").unwrap_or_else(|| "?".into());
    check(
        id,
        true,
        Status::Ok,
        format!("user namespaces enabled (user.max_user_namespaces={max})"),
    )
}

fn probes(
    exe: &Path,
    scratch: &Path,
    self_args: &[std::ffi::OsString],
    uid: u32,
    gid: u32,
    rootless: bool,
    so_far: &[Check],
) -> Vec<Check> {
    let single = IdMapping {
        uids: vec![crate::userns::IdRange {
            inside: 0,
            outside: uid,
            count: 1,
        }],
        gids: vec![crate::userns::IdRange {
            inside: 0,
            outside: gid,
            count: 1,
        }],
    };
    let mut v = Vec::new();
    let first = probe::run(exe, scratch, self_args, rootless.then_some(&single));
    match &first.userns {
        Ok(()) => v.push(check("userns", true, Status::Ok, if rootless { "created a user namespace".into() } else { "running as root: no user namespace needed".into() })),
        Err(e) => v.push(with_fix(
            check("userns", true, Status::Fail, format!("cannot create a user namespace: {e}")),
            "allow unprivileged user namespaces (see userns-sysctl); inside a container, run it with --security-opt seccomp=unconfined or a profile that allows unshare/clone",
        )),
    }
    match (&first.userns, &first.overlay) {
        (Err(_), _) => v.push(check("overlay", true, Status::Fail, "not tried: no user namespace".into())),
        (_, Ok(())) => v.push(check("overlay", true, Status::Ok, "mounted overlay (userxattr) inside a user namespace".into())),
        (_, Err(e)) => v.push(with_fix(
            check("overlay", true, Status::Fail, format!("overlay mount in a user namespace failed: {e}")),
            "use Linux 5.11 or newer (rootless overlay with userxattr); the directory must not be on overlayfs or NFS",
        )),
    }
    // The full mapping exercises newuidmap/newgidmap for real.
    let tools_ok = so_far
        .iter()
        .filter(|c| matches!(c.id, "subuid" | "subgid" | "newuidmap" | "newgidmap"))
        .all(|c| c.status != Status::Fail);
    if rootless && tools_ok && first.userns.is_ok() {
        match IdMapping::for_current_user(uid, gid) {
            Ok(m) => {
                let full = probe::run(exe, scratch, self_args, Some(&m));
                v.push(match full.userns {
                    Ok(()) => check("idmap", true, Status::Ok, format!("newuidmap/newgidmap mapped {} UIDs and {} GIDs", count(&m.uids), count(&m.gids))),
                    Err(e) => with_fix(
                        check("idmap", true, Status::Fail, format!("mapping the subordinate IDs failed: {e}")),
                        "check that the ranges in /etc/subuid and /etc/subgid do not overlap another user's and that newuidmap/newgidmap are setuid root",
                    ),
                });
            }
            Err(e) => v.push(check("idmap", true, Status::Fail, e.to_string())),
        }
    }
    v
}

fn count(r: &[crate::userns::IdRange]) -> u64 {
    r.iter().map(|x| u64::from(x.count)).sum()
}

fn device(id: &'static str, path: &str, what: &str, fix: &str) -> Check {
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
    {
        Ok(_) => check(id, false, Status::Ok, format!("{path} is usable")),
        Err(e) => with_fix(
            check(
                id,
                false,
                Status::Warn,
                format!("cannot open {path}: {e}: {what} will not work"),
            ),
            fix,
        ),
    }
}

fn runtime_dir(uid: u32, rootless: bool) -> Check {
    let id = "runtime-dir";
    if !rootless {
        return check(id, false, Status::Skip, "root uses /run/skiff".into());
    }
    let fix = format!("log in through PAM (systemd-logind creates /run/user/{uid}), or export XDG_RUNTIME_DIR=/run/user/{uid} after `loginctl enable-linger`; skiff otherwise uses /tmp/skiff-run-{uid}");
    let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) else {
        return with_fix(check(id, false, Status::Warn, "XDG_RUNTIME_DIR is not set: run state goes to /tmp, which is not cleaned at logout".into()), fix);
    };
    let dir = PathBuf::from(dir);
    match std::fs::metadata(&dir) {
        Ok(md) if md.uid() == uid && md.permissions().mode() & 0o077 == 0 => check(
            id,
            false,
            Status::Ok,
            format!("{} (yours, mode 0700)", dir.display()),
        ),
        Ok(md) if md.uid() == uid => with_fix(
            check(
                id,
                false,
                Status::Warn,
                format!(
                    "{} is readable by others (mode {:o})",
                    dir.display(),
                    md.permissions().mode() & 0o777
                ),
            ),
            format!("chmod 0700 {}", dir.display()),
        ),
        Ok(md) => with_fix(
            check(
                id,
                false,
                Status::Warn,
                format!(
                    "XDG_RUNTIME_DIR {} belongs to uid {}, not you: skiff falls back to /tmp",
                    dir.display(),
                    md.uid()
                ),
            ),
            fix,
        ),
        Err(e) => with_fix(
            check(
                id,
                false,
                Status::Warn,
                format!("XDG_RUNTIME_DIR {}: {e}", dir.display()),
            ),
            fix,
        ),
    }
}

fn cgroups(uid: u32, rootless: bool) -> Check {
    let id = "cgroup";
    let unified_only = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    if !unified_only {
        return with_fix(
            check(id, false, Status::Warn, "cgroup v1 or hybrid hierarchy: resource limits (--memory, --cpus, --pids-limit) cannot apply to rootless containers".into()),
            "boot with systemd.unified_cgroup_hierarchy=1 (cgroup v2) and delegate controllers to users",
        );
    }
    if !rootless {
        return check(id, false, Status::Ok, "cgroup v2".into());
    }
    let dir = format!("/sys/fs/cgroup/user.slice/user-{uid}.slice/user@{uid}.service");
    let controllers = read_trim(&format!("{dir}/cgroup.controllers")).unwrap_or_default();
    let have: Vec<&str> = controllers.split_whitespace().collect();
    let missing: Vec<&str> = ["cpu", "memory", "pids", "io"]
        .into_iter()
        .filter(|c| !have.contains(c))
        .collect();
    if missing.is_empty() {
        check(
            id,
            false,
            Status::Ok,
            format!("cgroup v2, controllers delegated: {controllers}"),
        )
    } else {
        with_fix(
            check(id, false, Status::Warn, format!("cgroup v2, but {} not delegated to {dir}: those limits cannot apply", missing.join(", "))),
            "as root: mkdir -p /etc/systemd/system/user@.service.d && printf '[Service]\\nDelegate=cpu cpuset io memory pids\\n' > /etc/systemd/system/user@.service.d/delegate.conf && systemctl daemon-reload",
        )
    }
}

fn linger(user: &str, rootless: bool) -> Check {
    let id = "linger";
    if !rootless {
        return check(
            id,
            false,
            Status::Skip,
            "root's services do not depend on a login".into(),
        );
    }
    let p = format!("/var/lib/systemd/linger/{user}");
    if Path::new(&p).exists() {
        check(
            id,
            false,
            Status::Ok,
            format!("lingering enabled ({p}): your systemd services run without a login"),
        )
    } else {
        with_fix(
            check(id, false, Status::Warn, format!("lingering is off for {user}: containers run as systemd user services stop at logout and do not start at boot")),
            format!("loginctl enable-linger {user}"),
        )
    }
}

fn ping_range(gid: u32) -> Check {
    let id = "ping";
    let Some(v) = read_trim("/proc/sys/net/ipv4/ping_group_range") else {
        return check(
            id,
            false,
            Status::Skip,
            "net.ipv4.ping_group_range not readable".into(),
        );
    };
    let mut it = v.split_whitespace().filter_map(|x| x.parse::<u64>().ok());
    let (lo, hi) = (it.next().unwrap_or(1), it.next().unwrap_or(0));
    if lo <= u64::from(gid) && u64::from(gid) <= hi {
        check(
            id,
            false,
            Status::Ok,
            format!("net.ipv4.ping_group_range={lo} {hi} includes your group {gid}"),
        )
    } else {
        with_fix(
            check(id, false, Status::Warn, format!("net.ipv4.ping_group_range is \"{lo} {hi}\": ping from the host user's network namespace needs raw sockets")),
            "as root: sysctl -w net.ipv4.ping_group_range=\"0 2147483647\"",
        )
    }
}

fn port_start() -> Check {
    let id = "ports";
    let Some(v) = read_trim("/proc/sys/net/ipv4/ip_unprivileged_port_start") else {
        return check(
            id,
            false,
            Status::Skip,
            "net.ipv4.ip_unprivileged_port_start not readable".into(),
        );
    };
    match v.parse::<u32>() {
        Ok(n) if n <= 80 => check(id, false, Status::Ok, format!("net.ipv4.ip_unprivileged_port_start={n}: ports from {n} can be published")),
        _ => with_fix(
            check(id, false, Status::Warn, format!("net.ipv4.ip_unprivileged_port_start={v}: rootless containers cannot publish ports below {v} (e.g. -p 80:80)")),
            "as root: sysctl -w net.ipv4.ip_unprivileged_port_start=80 (persist in /etc/sysctl.d/)",
        ),
    }
}

/// The report as text, one line per check and its fix below.
pub fn render_text(r: &Report) -> String {
    let mut out = String::new();
    for c in &r.checks {
        let tag = match c.status {
            Status::Ok => "  ok",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
            Status::Skip => "skip",
        };
        out.push_str(&format!("[{tag}] {:<14} {}\n", c.id, c.message));
        if let (Some(fix), Status::Warn | Status::Fail) = (&c.fix, c.status) {
            out.push_str(&format!("       {:<14} fix: {fix}\n", ""));
        }
    }
    let fails = r.checks.iter().filter(|c| c.status == Status::Fail).count();
    let warns = r.checks.iter().filter(|c| c.status == Status::Warn).count();
    out.push_str(&format!(
        "{}: {fails} failed, {warns} warnings\n",
        if r.ok {
            "ready for rootless containers"
        } else {
            "not ready"
        }
    ));
    out
}
