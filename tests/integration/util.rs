//! Test harness: run the real `skiff` binary as the unprivileged test user (rootless)
//! or as root with private `--root`/`--runroot` (rootful), each test in its own
//! directory under /tmp/skiff-it, with a timeout on every command.
//!
//! Environment knobs:
//! - `SKIFF_TEST_USER` (default `skiff-test`): user the rootless commands run as when
//!   the tests run as root. `SKIFF_TEST_USER_NOSUBID` (default `skiff-nosubid`): a user
//!   without /etc/subuid entries, for the single-ID mapping tests.
//! - `SKIFF_TEST_LOG`: passed to every skiff command as `--log-level`.
//! - `SKIFF_TEST_KEEP=1`: keep the per-test directories for debugging.
//! - `SKIFF_TEST_REQUIRE_ALL=1`: a test that would be skipped fails instead (set by
//!   scripts/test when it prepared the host as root, so CI never skips silently).
//! - `SKIFF_TEST_TIMEOUT`: default per-command timeout in seconds (120).

#![allow(dead_code)] // each test module uses a different part of the harness

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

mod cmd;
use cmd::default_timeout;
pub use cmd::{Cmd, Output};

/// Parent of every per-test directory; sticky and world-writable like /tmp.
pub const IT_ROOT: &str = "/tmp/skiff-it";
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Skip the current test with a reason (or fail it under `SKIFF_TEST_REQUIRE_ALL=1`).
/// `skip_if!(cond, "why {}", x)` or `let v = require!(result_with_string_err);`
#[macro_export]
macro_rules! skip_if {
    ($cond:expr, $($why:tt)+) => {
        if $cond {
            $crate::util::skip(&format!($($why)+));
            return;
        }
    };
}

/// Unwrap `Ok(v)`, or skip the current test with the `Err(String)` as the reason.
#[macro_export]
macro_rules! require {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(why) => {
                $crate::util::skip(&why);
                return;
            }
        }
    };
}

/// Report a skipped test on the real stderr (libtest captures only `eprintln!`).
pub fn skip(why: &str) {
    let name = std::thread::current().name().unwrap_or("?").to_string();
    if std::env::var_os("SKIFF_TEST_REQUIRE_ALL").is_some_and(|v| v == "1") {
        panic!("{name}: would be skipped, but SKIFF_TEST_REQUIRE_ALL=1: {why}");
    }
    let _ = writeln!(std::io::stderr(), "SKIPPED {name}: {why}");
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Rootful tests need the test process itself to be root.
pub fn can_run_rootful() -> bool {
    is_root()
}

pub fn test_user_name() -> String {
    std::env::var("SKIFF_TEST_USER").unwrap_or_else(|_| "skiff-test".into())
}

pub fn nosubid_user_name() -> String {
    std::env::var("SKIFF_TEST_USER_NOSUBID").unwrap_or_else(|_| "skiff-nosubid".into())
}

/// The user a rootless command runs as.
#[derive(Clone, Debug)]
pub struct TestUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Whether commands must switch to this user (the tests run as root).
    pub switch: bool,
}

fn lookup_user(name: &str) -> Result<TestUser, String> {
    if !is_root() {
        let me = nix::unistd::User::from_uid(nix::unistd::geteuid())
            .ok()
            .flatten()
            .ok_or("the current user has no passwd entry")?;
        return Ok(TestUser {
            name: me.name,
            uid: me.uid.as_raw(),
            gid: me.gid.as_raw(),
            switch: false,
        });
    }
    match nix::unistd::User::from_name(name) {
        Ok(Some(u)) if u.uid.as_raw() != 0 => Ok(TestUser {
            name: u.name,
            uid: u.uid.as_raw(),
            gid: u.gid.as_raw(),
            switch: true,
        }),
        Ok(Some(_)) => Err(format!("test user {name} is root")),
        _ => Err(format!(
            "no test user {name} (scripts/test creates it as root)"
        )),
    }
}

/// Why user namespaces cannot be used by an unprivileged user, if they cannot.
pub fn userns_missing() -> Option<String> {
    let read = |p: &str| fs::read_to_string(p).ok().map(|s| s.trim().to_string());
    if read("/proc/sys/kernel/unprivileged_userns_clone").is_some_and(|v| v == "0") {
        return Some("kernel.unprivileged_userns_clone is 0".into());
    }
    if read("/proc/sys/user/max_user_namespaces").is_some_and(|v| v == "0") {
        return Some("user.max_user_namespaces is 0".into());
    }
    if read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").is_some_and(|v| v == "1") {
        return Some("kernel.apparmor_restrict_unprivileged_userns is 1".into());
    }
    None
}

/// Count of subordinate IDs `user` has in `file` (/etc/subuid or /etc/subgid).
pub fn subid_count(file: &str, user: &TestUser) -> u64 {
    let Ok(text) = fs::read_to_string(file) else {
        return 0;
    };
    text.lines()
        .filter_map(|l| {
            let mut f = l.trim().split(':');
            let (who, _start, count) = (f.next()?, f.next()?, f.next()?);
            let uid = user.uid.to_string();
            (who == user.name || who == uid).then(|| count.parse::<u64>().ok())?
        })
        .sum()
}

/// Why rootless tests with a full (subordinate-ID) mapping cannot run, if they cannot.
pub fn rootless_missing() -> Option<String> {
    let user = match lookup_user(&test_user_name()) {
        Ok(u) => u,
        Err(e) => return Some(e),
    };
    let mut missing = Vec::new();
    missing.extend(userns_missing());
    for tool in ["/usr/bin/newuidmap", "/usr/bin/newgidmap"] {
        if !Path::new(tool).exists() {
            missing.push(format!("{tool} (Debian package uidmap)"));
        }
    }
    for file in ["/etc/subuid", "/etc/subgid"] {
        if subid_count(file, &user) < 65536 {
            missing.push(format!("65536 IDs for {} in {file}", user.name));
        }
    }
    (!missing.is_empty()).then(|| format!("rootless needs: {}", missing.join(", ")))
}

/// The skiff binary, reachable by the test user: under root it is copied to
/// /tmp/skiff-it/bin/<pid>/skiff (removed at exit) because the checkout may be under
/// an unreadable /root. A private copy per test process, so concurrent runs of
/// different builds never swap each other's binary.
pub fn skiff_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let built = PathBuf::from(env!("CARGO_BIN_EXE_skiff"));
        if !is_root() {
            return built;
        }
        let dir = it_root().join("bin").join(std::process::id().to_string());
        mkdir_mode(&it_root().join("bin"), 0o755);
        mkdir_mode(&dir, 0o755);
        let dest = dir.join("skiff");
        fs::copy(&built, &dest).expect("copy the skiff binary");
        fs::set_permissions(&dest, fs::Permissions::from_mode(0o755)).expect("chmod skiff");
        extern "C" fn remove_bin() {
            let dir = Path::new(IT_ROOT)
                .join("bin")
                .join(std::process::id().to_string());
            let _ = fs::remove_dir_all(dir);
        }
        // SAFETY: registers a plain extern "C" fn, run by exit(3) (libtest exits so).
        unsafe { libc::atexit(remove_bin) };
        dest
    })
    .clone()
}

/// /tmp/skiff-it, created mode 1777 so both root and the test user can use it.
/// Leftovers of dead test processes (`t<pid>-*`, `r<pid>-*`, `bin/<pid>`) are swept.
pub fn it_root() -> PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let root = PathBuf::from(IT_ROOT);
        if !root.exists() {
            let _ = fs::create_dir_all(&root);
            let _ = fs::set_permissions(&root, fs::Permissions::from_mode(0o1777));
        }
        sweep(&root, &["t", "r"]);
        sweep(&root.join("bin"), &[""]);
        root
    })
    .clone()
}

/// Remove `dir/<prefix><pid>[-...]` entries whose process is gone (best effort).
fn sweep(dir: &Path, prefixes: &[&str]) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let pid = prefixes.iter().find_map(|p| {
            let rest = name.strip_prefix(p)?;
            rest.split('-').next()?.parse::<u32>().ok()
        });
        if pid.is_some_and(|p| !Path::new(&format!("/proc/{p}")).exists()) {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

/// Prefix of this process's entries in /tmp/skiff-it (see [`it_root`]).
pub fn it_prefix(kind: &str) -> String {
    format!("{kind}{}-", std::process::id())
}

fn mkdir_mode(path: &Path, mode: u32) {
    fs::create_dir_all(path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Rootless,
    Rootful,
}

/// One test's private skiff world. Removed on drop (unless SKIFF_TEST_KEEP=1).
pub struct TestEnv {
    pub mode: Mode,
    /// The per-test directory; everything below belongs to this test.
    pub dir: PathBuf,
    /// HOME; XDG_CONFIG_HOME is home/.config, XDG_DATA_HOME home/.local/share.
    pub home: PathBuf,
    /// XDG_RUNTIME_DIR (rootless, mode 0700) or the `--runroot` dir (rootful).
    pub runtime_dir: PathBuf,
    /// `--root` dir (rootful); skiff's data dir rootless is data_home/skiff.
    pub root_dir: PathBuf,
    /// A scratch dir owned by the user skiff runs as (cwd of every command).
    pub work: PathBuf,
    pub registries_conf: PathBuf,
    /// Rootless: the user commands run as; None for rootful.
    pub user: Option<TestUser>,
    extra_env: Vec<(OsString, OsString)>,
}

impl TestEnv {
    /// Rootless as the test user with subordinate IDs; panics if the host lacks them.
    pub fn rootless() -> TestEnv {
        Self::try_rootless().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Rootless, or why not (for `require!`).
    pub fn try_rootless() -> Result<TestEnv, String> {
        if let Some(why) = rootless_missing() {
            return Err(why);
        }
        Self::new(Mode::Rootless, Some(lookup_user(&test_user_name())?))
    }

    /// Rootless as a user with no /etc/subuid entry (single-ID mapping).
    pub fn try_rootless_no_subids() -> Result<TestEnv, String> {
        let user = lookup_user(&nosubid_user_name())?;
        if let Some(why) = userns_missing() {
            return Err(why);
        }
        if subid_count("/etc/subuid", &user) > 0 || subid_count("/etc/subgid", &user) > 0 {
            return Err(format!("user {} has subordinate IDs", user.name));
        }
        Self::new(Mode::Rootless, Some(user))
    }

    /// Rootful with private `--root`/`--runroot`; panics unless the tests run as root.
    pub fn rootful() -> TestEnv {
        Self::try_rootful().unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_rootful() -> Result<TestEnv, String> {
        if !can_run_rootful() {
            return Err("rootful tests need the tests to run as root".into());
        }
        Self::new(Mode::Rootful, None)
    }

    fn new(mode: Mode, user: Option<TestUser>) -> Result<TestEnv, String> {
        let dir = tempfile::Builder::new()
            .prefix(&it_prefix("t"))
            .rand_bytes(6)
            .tempdir_in(it_root())
            .map_err(|e| format!("create a test dir in {IT_ROOT}: {e}"))?
            .keep();
        let _ = fs::write(
            dir.join("TEST_NAME"),
            std::thread::current().name().unwrap_or("?"),
        );
        let home = dir.join("home");
        let (runtime_dir, root_dir) = match mode {
            Mode::Rootless => (dir.join("run"), home.join(".local/share/skiff")),
            Mode::Rootful => (dir.join("runroot"), dir.join("root")),
        };
        let work = dir.join("work");
        for d in [
            &home,
            &home.join(".config"),
            &home.join(".local"),
            &home.join(".local/share"),
            &work,
        ] {
            mkdir_mode(d, 0o755);
        }
        mkdir_mode(&runtime_dir, 0o700);
        let registries_conf = dir.join("registries.conf");
        // Without a registry (not installed) tests that need none can still run.
        let conf = match crate::registry::try_registry() {
            Ok(reg) => format!(
                "unqualified-search-registries = [\"{reg}\"]\n\n\
                 [[registry]]\nlocation = \"{reg}\"\ninsecure = true\n"
            ),
            Err(_) => "unqualified-search-registries = []\n".to_string(),
        };
        fs::write(&registries_conf, conf).map_err(|e| format!("write registries.conf: {e}"))?;
        fs::set_permissions(&registries_conf, fs::Permissions::from_mode(0o644))
            .map_err(|e| e.to_string())?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
        if let Some(u) = user.as_ref().filter(|u| u.switch) {
            for d in [&dir, &work, &runtime_dir] {
                chown(d, Some(u.uid), Some(u.gid)).map_err(|e| e.to_string())?;
            }
            chown_tree(&home, u.uid, u.gid)?;
        }
        Ok(TestEnv {
            mode,
            dir,
            home,
            runtime_dir,
            root_dir,
            work,
            registries_conf,
            user,
            extra_env: Vec::new(),
        })
    }

    /// Add an environment variable to every later command of this env.
    pub fn set_env(&mut self, key: impl AsRef<OsStr>, val: impl AsRef<OsStr>) {
        self.extra_env
            .push((key.as_ref().into(), val.as_ref().into()));
    }

    /// The registry every fixture lives in (`host:port`).
    pub fn registry(&self) -> &'static str {
        crate::registry::registry()
    }

    /// The environment every command of this env gets (nothing else is inherited).
    pub fn base_env(&self) -> Vec<(OsString, OsString)> {
        let mut env: Vec<(OsString, OsString)> = vec![
            ("PATH".into(), PATH.into()),
            ("HOME".into(), self.home.clone().into()),
            ("XDG_CONFIG_HOME".into(), self.home.join(".config").into()),
            (
                "XDG_DATA_HOME".into(),
                self.home.join(".local/share").into(),
            ),
            (
                "CONTAINERS_REGISTRIES_CONF".into(),
                self.registries_conf.clone().into(),
            ),
            ("LANG".into(), "C.UTF-8".into()),
        ];
        match (&self.mode, &self.user) {
            (Mode::Rootless, Some(u)) => {
                env.push(("XDG_RUNTIME_DIR".into(), self.runtime_dir.clone().into()));
                env.push(("USER".into(), u.name.clone().into()));
                env.push(("LOGNAME".into(), u.name.clone().into()));
            }
            _ => {
                env.push(("USER".into(), "root".into()));
                env.push(("LOGNAME".into(), "root".into()));
            }
        }
        for key in ["RUST_BACKTRACE", "RUST_LOG", "SKIFF_LOG", "TERM"] {
            if let Some(v) = std::env::var_os(key) {
                env.push((key.into(), v));
            }
        }
        env.extend(self.extra_env.iter().cloned());
        env
    }

    /// A skiff command: `env.cmd(&["run", "--rm", img, "true"]).stdin(b"x").output()`.
    pub fn cmd<S: AsRef<OsStr>>(&self, args: &[S]) -> Cmd {
        let mut full: Vec<OsString> = Vec::new();
        if self.mode == Mode::Rootful {
            full.extend(["--root".into(), self.root_dir.clone().into_os_string()]);
            full.extend([
                "--runroot".into(),
                self.runtime_dir.clone().into_os_string(),
            ]);
        }
        if let Some(level) = std::env::var_os("SKIFF_TEST_LOG").filter(|v| !v.is_empty()) {
            full.extend(["--log-level".into(), level]);
        }
        full.extend(args.iter().map(|a| a.as_ref().to_os_string()));
        self.host_cmd(skiff_bin(), &full)
    }

    /// Run a skiff command to completion (see [`Cmd::output`]).
    pub fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        self.cmd(args).output()
    }

    /// Any program, run as the user and with the environment skiff commands get
    /// (e.g. `env.host_cmd("sh", &["-c", "ls -la"])` as the test user).
    pub fn host_cmd<S: AsRef<OsStr>>(&self, program: impl AsRef<OsStr>, args: &[S]) -> Cmd {
        Cmd {
            program: program.as_ref().into(),
            args: args.iter().map(|a| a.as_ref().to_os_string()).collect(),
            env: self.base_env(),
            env_remove: Vec::new(),
            user: self.user.clone().filter(|u| u.switch),
            cwd: self.work.clone(),
            stdin: None,
            timeout: default_timeout(),
        }
    }

    /// Make `path` (under this env) belong to the user skiff runs as.
    pub fn give(&self, path: &Path) {
        if let Some(u) = self.user.as_ref().filter(|u| u.switch) {
            chown_tree(path, u.uid, u.gid).expect("chown to the test user");
        }
    }
}

fn chown_tree(path: &Path, uid: u32, gid: u32) -> Result<(), String> {
    let meta = fs::symlink_metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
        .map_err(|e| format!("chown {}: {e}", path.display()))?;
    if meta.is_dir() {
        for entry in fs::read_dir(path).map_err(|e| e.to_string())? {
            chown_tree(&entry.map_err(|e| e.to_string())?.path(), uid, gid)?;
        }
    }
    Ok(())
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if std::env::var_os("SKIFF_TEST_KEEP").is_some_and(|v| v == "1") {
            let _ = writeln!(std::io::stderr(), "kept {}", self.dir.display());
            return;
        }
        // Stop whatever the test left running (its monitors hold files open).
        let _ = self
            .cmd(&["rm", "--all", "--force"])
            .timeout(Duration::from_secs(30))
            .try_output();
        if !is_root() {
            // Files owned by subordinate IDs: remove them inside the user namespace.
            let _ = self
                .cmd(&[OsStr::new("unshare"), OsStr::new("rm"), OsStr::new("-rf")])
                .arg(&self.dir)
                .timeout(Duration::from_secs(60))
                .try_output();
        }
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                let _ = writeln!(
                    std::io::stderr(),
                    "cannot remove {}: {e}",
                    self.dir.display()
                );
            }
        }
    }
}
