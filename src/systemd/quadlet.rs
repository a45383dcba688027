//! Quadlet: `.container` files in podman's format turned into systemd services that run
//! the container with skiff. The key set is podman 4.4's (the first Quadlet release;
//! Debian's podman 4.3 has none) plus the later keys skiff has flags for. A key skiff
//! cannot honour is an error naming the key and the file, never silently dropped.

use std::path::{Path, PathBuf};

use super::unit::{command_line, parse_bool, split_words, UnitFile};
use super::SystemdError;

/// How to generate.
pub struct Options {
    /// Generating for a user's systemd instance (changes only the search path).
    pub user: bool,
    /// The skiff binary the services run.
    pub skiff: PathBuf,
}

/// One generated service.
#[derive(Debug)]
pub struct Generated {
    /// `web.service` for `web.container`.
    pub service: String,
    pub text: String,
    /// `[Install]` targets: (kind `wants`/`requires`, target unit).
    pub install: Vec<(&'static str, String)>,
}

/// The [Container] keys skiff understands.
const KEYS: &[&str] = &[
    "ContainerName",
    "Image",
    "Exec",
    "Environment",
    "EnvironmentFile",
    "Label",
    "Annotation",
    "User",
    "Group",
    "WorkingDir",
    "Entrypoint",
    "HostName",
    "Volume",
    "Mount",
    "Tmpfs",
    "VolatileTmp",
    "ReadOnly",
    "ReadOnlyTmpfs",
    "Network",
    "PublishPort",
    "Notify",
    "RunInit",
    "StopSignal",
    "StopTimeout",
    "Pull",
    "DNS",
    "DNSSearch",
    "AddHost",
    "Sysctl",
    "LogDriver",
    "LogOpt",
    "PodmanArgs",
    "SkiffArgs",
];

/// Where `.container` files are looked for: `QUADLET_UNIT_DIRS` (colon-separated, as
/// podman's quadlet reads it), else podman's directories.
pub fn unit_dirs(user: bool, uid: u32) -> Vec<PathBuf> {
    if let Some(v) = std::env::var_os("QUADLET_UNIT_DIRS").filter(|v| !v.is_empty()) {
        return std::env::split_paths(&v).collect();
    }
    if user {
        let mut v = Vec::new();
        let config = std::env::var_os("XDG_CONFIG_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| crate::config::home_dir().ok().map(|h| h.join(".config")));
        if let Some(c) = config {
            v.push(c.join("containers/systemd"));
        }
        v.push(PathBuf::from(format!(
            "/etc/containers/systemd/users/{uid}"
        )));
        v.push(PathBuf::from("/etc/containers/systemd/users"));
        v
    } else {
        vec![
            PathBuf::from("/etc/containers/systemd"),
            PathBuf::from("/usr/share/containers/systemd"),
        ]
    }
}

/// The `.container` files in `dirs`, sorted; a name in an earlier dir hides the same
/// name in later ones.
pub fn find_units(dirs: &[PathBuf]) -> Vec<PathBuf> {
    let mut seen = std::collections::BTreeMap::new();
    for d in dirs {
        let Ok(rd) = std::fs::read_dir(d) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".container") && !seen.contains_key(&name) {
                seen.insert(name, e.path());
            }
        }
    }
    seen.into_values().collect()
}

/// Reads and converts one file.
pub fn convert_file(path: &Path, opts: &Options) -> Result<Generated, SystemdError> {
    let text = std::fs::read_to_string(path).map_err(|source| SystemdError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    convert(path, &text, opts)
}

struct Ctx<'a> {
    path: &'a Path,
    unit: &'a UnitFile,
}

impl Ctx<'_> {
    fn err(&self, detail: impl Into<String>) -> SystemdError {
        SystemdError::Quadlet {
            path: self.path.to_path_buf(),
            detail: detail.into(),
        }
    }
    fn all(&self, key: &str) -> Vec<&str> {
        self.unit.all("Container", key)
    }
    fn last(&self, key: &str) -> Option<&str> {
        self.unit.last("Container", key).filter(|v| !v.is_empty())
    }
    fn bool(&self, key: &str) -> Result<Option<bool>, SystemdError> {
        match self.last(key) {
            None => Ok(None),
            Some(v) => parse_bool(v)
                .map(Some)
                .ok_or_else(|| self.err(format!("{key}={v} is not a boolean: use true or false"))),
        }
    }
    fn words(&self, key: &str, v: &str) -> Result<Vec<String>, SystemdError> {
        split_words(v).map_err(|e| self.err(format!("{key}={v}: {e}")))
    }
}

/// Converts the text of one `.container` file.
pub fn convert(path: &Path, text: &str, opts: &Options) -> Result<Generated, SystemdError> {
    let shown = path.display().to_string();
    let unit = UnitFile::parse(text, &shown)?;
    let c = Ctx { path, unit: &unit };
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let base = file.strip_suffix(".container").unwrap_or(&file).to_string();
    if unit.section("Container").is_none() {
        return Err(c.err("no [Container] section"));
    }
    for (k, _) in unit
        .sections
        .iter()
        .filter(|s| s.name == "Container")
        .flat_map(|s| s.entries.iter())
    {
        if !KEYS.contains(&k.as_str()) {
            return Err(SystemdError::UnsupportedKey {
                key: k.clone(),
                path: path.to_path_buf(),
            });
        }
    }
    let image = c
        .last("Image")
        .ok_or_else(|| c.err("no Image= key in [Container]: name the image to run"))?
        .to_string();
    let name = c.last("ContainerName").unwrap_or("systemd-%N").to_string();
    let service_type = unit.last("Service", "Type");
    if let Some(t) = service_type.filter(|t| !matches!(*t, "notify" | "oneshot")) {
        return Err(c.err(format!("invalid service Type={t}: use notify or oneshot")));
    }
    let oneshot = service_type == Some("oneshot");
    if let Some(k) = unit
        .last("Service", "KillMode")
        .filter(|k| !matches!(*k, "mixed" | "control-group"))
    {
        return Err(c.err(format!("invalid KillMode={k}: use mixed or control-group")));
    }

    let skiff = opts.skiff.to_string_lossy().into_owned();
    let mut run: Vec<String> = vec![
        skiff.clone(),
        "run".into(),
        format!("--name={name}"),
        "--cidfile=%t/%N.cid".into(),
        "--replace".into(),
        "--rm".into(),
    ];
    for n in c.all("Network") {
        run.push(format!("--network={n}"));
    }
    if !oneshot {
        let mode = if c.bool("Notify")?.unwrap_or(false) {
            "container"
        } else {
            "conmon"
        };
        run.push(format!("--sdnotify={mode}"));
        run.push("-d".into());
    }
    if c.bool("RunInit")? == Some(true) {
        run.push("--init".into());
    }
    let read_only = c.bool("ReadOnly")?.unwrap_or(false);
    let volatile = c.bool("VolatileTmp")?.unwrap_or(false);
    if read_only {
        run.push("--read-only".into());
    }
    if volatile && !read_only {
        run.extend(["--tmpfs".into(), "/tmp:rw,size=512M,mode=1777".into()]);
    }
    if let Some(b) = c.bool("ReadOnlyTmpfs")? {
        run.push(format!("--read-only-tmpfs={b}"));
    } else if read_only && !volatile {
        run.push("--read-only-tmpfs=false".into());
    }
    match (c.last("User"), c.last("Group")) {
        (Some(u), Some(g)) => run.extend(["--user".into(), format!("{u}:{g}")]),
        (Some(u), None) => run.extend(["--user".into(), u.into()]),
        (None, Some(g)) => run.extend(["--user".into(), format!("0:{g}")]),
        (None, None) => {}
    }
    let singles = [
        ("WorkingDir", "--workdir"),
        ("Entrypoint", "--entrypoint"),
        ("HostName", "--hostname"),
        ("StopSignal", "--stop-signal"),
        ("StopTimeout", "--stop-timeout"),
        ("Pull", "--pull"),
        ("LogDriver", "--log-driver"),
    ];
    for (key, flag) in singles {
        if let Some(v) = c.last(key) {
            run.extend([flag.into(), v.into()]);
        }
    }
    let mut requires_mounts = Vec::new();
    for v in c.all("Volume") {
        let mut parts = v.splitn(3, ':');
        let src = parts.next().unwrap_or("");
        if src.ends_with(".volume") {
            return Err(c.err(format!(
                "Volume={v}: .volume units are not supported yet: name a host path or a volume"
            )));
        }
        if src.starts_with('/') && v.contains(':') {
            requires_mounts.push(src.to_string());
        }
        run.extend(["-v".into(), v.into()]);
    }
    let multi = [
        ("Mount", "--mount"),
        ("Tmpfs", "--tmpfs"),
        ("DNS", "--dns"),
        ("DNSSearch", "--dns-search"),
        ("AddHost", "--add-host"),
        ("LogOpt", "--log-opt"),
    ];
    for (key, flag) in multi {
        for v in c.all(key) {
            run.extend([flag.into(), v.into()]);
        }
    }
    for v in c.all("PublishPort") {
        run.extend(["--publish".into(), v.into()]);
    }
    for (key, flag) in [
        ("Environment", "--env"),
        ("Label", "--label"),
        ("Annotation", "--annotation"),
        ("Sysctl", "--sysctl"),
    ] {
        for v in c.all(key) {
            for w in c.words(key, v)? {
                run.extend([flag.into(), w]);
            }
        }
    }
    for v in c.all("EnvironmentFile") {
        let p = Path::new(v);
        let abs = if p.is_absolute() || v.starts_with('%') {
            p.to_path_buf()
        } else {
            path.parent().unwrap_or(Path::new("/")).join(p)
        };
        run.extend(["--env-file".into(), abs.to_string_lossy().into_owned()]);
    }
    for key in ["PodmanArgs", "SkiffArgs"] {
        for v in c.all(key) {
            run.extend(c.words(key, v)?);
        }
    }
    run.push(image);
    if let Some(v) = c.last("Exec") {
        run.extend(c.words("Exec", v)?);
    }

    // The service: the user's sections as they were, [Container] kept as X-Container
    // (systemd ignores X- sections), then what running under skiff needs.
    let mut svc = UnitFile::default();
    svc.add("Unit", "SourcePath", path.to_string_lossy());
    svc.add("Unit", "RequiresMountsFor", "%t/skiff");
    for m in requires_mounts {
        svc.add("Unit", "RequiresMountsFor", m);
    }
    for s in &unit.sections {
        let name = if s.name == "Container" {
            "X-Container"
        } else {
            s.name.as_str()
        };
        for (k, v) in &s.entries {
            svc.add(name, k, v.clone());
        }
    }
    let has = |k: &str| unit.last("Service", k).is_some();
    svc.add("Service", "Environment", "PODMAN_SYSTEMD_UNIT=%n");
    if !has("KillMode") {
        svc.add("Service", "KillMode", "mixed");
    }
    svc.add("Service", "Delegate", "yes");
    if !oneshot {
        svc.add("Service", "Type", "notify");
        svc.add("Service", "NotifyAccess", "all");
    }
    if !has("SyslogIdentifier") {
        svc.add("Service", "SyslogIdentifier", "%N");
    }
    svc.add("Service", "ExecStart", command_line(&run));
    let cid = "--cidfile=%t/%N.cid".to_string();
    let stop = vec![skiff.clone(), "stop".into(), "--ignore".into(), cid.clone()];
    svc.add("Service", "ExecStop", command_line(&stop));
    let rm = vec![
        format!("-{skiff}"),
        "rm".into(),
        "-f".into(),
        "--ignore".into(),
        cid,
    ];
    svc.add("Service", "ExecStopPost", command_line(&rm));
    svc.add("Service", "ExecStopPost", "-/bin/rm -f %t/%N.cid");

    let mut install = Vec::new();
    for (key, kind) in [("WantedBy", "wants"), ("RequiredBy", "requires")] {
        for v in unit.all("Install", key) {
            for t in v.split_whitespace() {
                install.push((kind, t.to_string()));
            }
        }
    }
    let header = format!(
        "# Automatically generated by skiff quadlet{}\n",
        if opts.user { " --user" } else { "" }
    );
    Ok(Generated {
        service: format!("{base}.service"),
        text: header + &svc.render(),
        install,
    })
}

/// Writes a service into a generator output directory, with the `.wants`/`.requires`
/// links its [Install] section asks for (a generator cannot be `systemctl enable`d).
pub fn write(dir: &Path, g: &Generated) -> Result<(), SystemdError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SystemdError::Write { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let dest = dir.join(&g.service);
    let tmp = dir.join(format!(".{}.tmp", g.service));
    std::fs::write(&tmp, &g.text).map_err(io(&tmp))?;
    std::fs::rename(&tmp, &dest).map_err(io(&dest))?;
    for (kind, target) in &g.install {
        let d = dir.join(format!("{target}.{kind}"));
        std::fs::create_dir_all(&d).map_err(io(&d))?;
        let link = d.join(&g.service);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(format!("../{}", g.service), &link).map_err(io(&link))?;
    }
    Ok(())
}
