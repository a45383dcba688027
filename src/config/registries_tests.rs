use super::*;
use crate::image::reference::parse_normalized;
use std::fs;

const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, text).unwrap();
    path
}

fn from_text(text: &str) -> Registries {
    let dir = tempfile::tempdir().unwrap();
    let main = write(dir.path(), "registries.conf", text);
    Registries::load_from(Some(&main), &[]).unwrap()
}

fn resolved(reg: &Registries, input: &str) -> Vec<String> {
    reg.resolve(input)
        .unwrap()
        .iter()
        .map(|r| r.to_string())
        .collect()
}

fn eps(reg: &Registries, input: &str) -> Vec<(String, String, String, bool, bool)> {
    reg.endpoints(&parse_normalized(input).unwrap())
        .unwrap()
        .into_iter()
        .map(|e| (e.host, e.repository, e.reference, e.insecure, e.mirror))
        .collect()
}

fn ep(
    host: &str,
    repo: &str,
    reference: &str,
    insecure: bool,
    mirror: bool,
) -> (String, String, String, bool, bool) {
    (host.into(), repo.into(), reference.into(), insecure, mirror)
}

#[test]
fn paths_follow_podman() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let vars = |pairs: Vec<(&'static str, PathBuf)>| {
        move |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.clone().into_os_string())
        }
    };
    // Env override: exactly one file.
    let p = ConfigPaths::from_vars(
        vars(vec![
            ("CONTAINERS_REGISTRIES_CONF", "/x.conf".into()),
            ("HOME", home.clone()),
        ]),
        true,
    );
    assert_eq!(p.main, Some(PathBuf::from("/x.conf")));
    assert!(p.dropin_dirs.is_empty());
    // No user file: system file, system then user drop-ins.
    let p = ConfigPaths::from_vars(vars(vec![("HOME", home.clone())]), true);
    assert_eq!(p.main, Some(PathBuf::from(SYSTEM_FILE)));
    let user_dir = home.join(".config/containers/registries.conf.d");
    assert_eq!(
        p.dropin_dirs,
        vec![PathBuf::from(SYSTEM_DROPIN_DIR), user_dir.clone()]
    );
    assert_eq!(
        p.alias_cache,
        Some(home.join(".cache/containers/short-name-aliases.conf"))
    );
    // User file replaces the system file and the system drop-ins.
    let user_file = write(&home, ".config/containers/registries.conf", "");
    let p = ConfigPaths::from_vars(vars(vec![("HOME", home.clone())]), true);
    assert_eq!(p.main, Some(user_file));
    assert_eq!(p.dropin_dirs, vec![user_dir]);
    // XDG_CONFIG_HOME wins over ~/.config.
    let xdg = dir.path().join("xdg");
    let p = ConfigPaths::from_vars(
        vars(vec![
            ("HOME", home.clone()),
            ("XDG_CONFIG_HOME", xdg.clone()),
        ]),
        true,
    );
    assert_eq!(p.main, Some(PathBuf::from(SYSTEM_FILE)));
    assert_eq!(p.dropin_dirs[1], xdg.join("containers/registries.conf.d"));
    // Root ignores the user file.
    let p = ConfigPaths::from_vars(vars(vec![("HOME", home.clone())]), false);
    assert_eq!(p.main, Some(PathBuf::from(SYSTEM_FILE)));
    assert_eq!(p.dropin_dirs, vec![PathBuf::from(SYSTEM_DROPIN_DIR)]);
}

#[test]
fn dropins_merge_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let main = write(
        dir.path(),
        "main.conf",
        r#"
unqualified-search-registries = ["a.io"]
short-name-mode = "enforcing"
[aliases]
one = "a.io/one"
two = "a.io/two"
[[registry]]
location = "a.io"
insecure = true
"#,
    );
    let d1 = dir.path().join("d1");
    let d2 = dir.path().join("d2");
    write(
        &d1,
        "20-b.conf",
        "unqualified-search-registries = [\"c.io\"]\n[aliases]\ntwo = \"\"\n",
    );
    write(
        &d1,
        "10-a.conf",
        "unqualified-search-registries = [\"b.io\"]\n[aliases]\none = \"b.io/one\"\n",
    );
    write(&d1, "30-ignored.txt", "this is not toml [[[");
    fs::create_dir_all(d1.join("sub.conf")).unwrap();
    write(
        &d2,
        "00-z.conf",
        "[[registry]]\nlocation = \"a.io\"\nblocked = true\n[aliases]\nthree = \"z.io/x/three\"\n",
    );
    let missing = dir.path().join("missing");
    let reg = Registries::load_from(Some(&main), &[d1.clone(), missing, d2.clone()]).unwrap();
    assert_eq!(reg.unqualified_search, vec!["c.io"]);
    assert_eq!(reg.search_origin, Some(d1.join("20-b.conf")));
    assert_eq!(reg.short_name_mode, ShortNameMode::Enforcing);
    let aliases: Vec<(&str, &str)> = reg
        .aliases
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        aliases,
        vec![("one", "b.io/one"), ("three", "z.io/x/three")]
    );
    assert_eq!(reg.registries.len(), 1);
    assert!(reg.registries[0].blocked && !reg.registries[0].insecure);
    assert_eq!(reg.registries[0].source, d2.join("00-z.conf"));
    assert_eq!(reg.sources.len(), 4);
}

#[test]
fn empty_search_list_in_dropin_clears_it() {
    let dir = tempfile::tempdir().unwrap();
    let main = write(
        dir.path(),
        "main.conf",
        "unqualified-search-registries = [\"a.io\"]\n",
    );
    let d = dir.path().join("d");
    let dropin = write(&d, "x.conf", "unqualified-search-registries = []\n");
    let reg = Registries::load_from(Some(&main), &[d]).unwrap();
    let err = reg.resolve("busybox").unwrap_err().to_string();
    assert!(err.starts_with("short-name \"busybox\" did not resolve to an alias and no unqualified-search registries are defined in "), "{err}");
    assert!(err.contains(&dropin.display().to_string()), "{err}");
}

#[test]
fn missing_files_give_an_empty_config() {
    let reg = Registries::load_from(
        Some(Path::new("/nonexistent/registries.conf")),
        &[PathBuf::from("/nonexistent/d")],
    )
    .unwrap();
    assert_eq!(reg, Registries::default());
    let err = reg.resolve("busybox").unwrap_err().to_string();
    assert!(err.contains("none found"), "{err}");
    assert_eq!(resolved(&reg, "quay.io/a/b"), vec!["quay.io/a/b:latest"]);
}

#[test]
fn malformed_files_name_path_and_line() {
    let dir = tempfile::tempdir().unwrap();
    for text in [
        "unqualified-search-registries = [\"a.io\"]\n\n[[registry]\n",
        "unqualified-search-registries = \"a.io\"\n",
    ] {
        let main = write(dir.path(), "bad.conf", text);
        let err = Registries::load_from(Some(&main), &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains(&main.display().to_string()), "{err}");
        assert!(err.contains("line "), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }
    let d = dir.path().join("d");
    let bad = write(&d, "x.conf", "short-name-mode = \"sometimes\"\n");
    let err = Registries::load_from(None, &[d]).unwrap_err().to_string();
    assert!(
        err.contains(&bad.display().to_string()) && err.contains("sometimes"),
        "{err}"
    );
}

#[test]
fn invalid_settings_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let bad = [
        "unqualified-search-registries = [\"https://a.io\"]",
        "unqualified-search-registries = [\"a.io/ns\"]",
        "unqualified-search-registries = [\"nodot\"]",
        "[aliases]\n\"a.io/x\" = \"b.io/x\"",
        "[aliases]\n\"x:1\" = \"b.io/x\"",
        "[aliases]\nx = \"b.io/x:1\"",
        "[aliases]\nx = \"notqualified/x\"",
        "[[registry]]\ninsecure = true",
        "[[registry]]\nprefix = \"a.io\"",
        "[[registry]]\nprefix = \"*.a.io/x\"",
        "[[registry]]\nlocation = \"https://a.io\"",
        "[[registry]]\nlocation = \"a.io\"\n[[registry.mirror]]\ninsecure = true",
        "[[registry]]\nlocation = \"a.io\"\n[[registry.mirror]]\nlocation = \"m.io\"\npull-from-mirror = \"never\"",
        "[[registry]]\nlocation = \"a.io\"\nmirror-by-digest-only = true\n[[registry.mirror]]\nlocation = \"m.io\"\npull-from-mirror = \"tag-only\"",
        "[registries.search]\nregistries = [\"a.io\"]\n[[registry]]\nlocation = \"a.io\"",
    ];
    for text in bad {
        let main = write(dir.path(), "r.conf", text);
        let err = Registries::load_from(Some(&main), &[]);
        assert!(err.is_err(), "accepted: {text}");
    }
    // Unknown keys are tolerated.
    let reg = from_text("credential-helpers = [\"pass\"]\nfuture-key = 1\n[[registry]]\nlocation = \"a.io\"\nfuture = true\n");
    assert_eq!(reg.registries.len(), 1);
}

#[test]
fn short_names_resolve_through_aliases_then_search_order() {
    let reg = from_text(
        r#"
unqualified-search-registries = ["quay.io", "docker.io", "quay.io", "localhost:5000"]
[aliases]
busybox = "docker.io/library/busybox"
"tools/bb" = "registry.example.com/ns/bb"
short = "docker.io/short"
"#,
    );
    assert_eq!(
        resolved(&reg, "busybox"),
        vec!["docker.io/library/busybox:latest"]
    );
    assert_eq!(
        resolved(&reg, "busybox:1.36"),
        vec!["docker.io/library/busybox:1.36"]
    );
    let d = format!("sha256:{HEX}");
    assert_eq!(
        resolved(&reg, &format!("tools/bb:2@{d}")),
        vec![format!("registry.example.com/ns/bb:2@{d}")]
    );
    assert_eq!(
        resolved(&reg, "short"),
        vec!["docker.io/library/short:latest"]
    );
    assert_eq!(
        resolved(&reg, "alpine:3"),
        vec![
            "quay.io/alpine:3",
            "docker.io/library/alpine:3",
            "localhost:5000/alpine:3"
        ]
    );
    assert_eq!(
        resolved(&reg, "me/app"),
        vec![
            "quay.io/me/app:latest",
            "docker.io/me/app:latest",
            "localhost:5000/me/app:latest"
        ]
    );
    // Aliases never apply to qualified names.
    assert_eq!(
        resolved(&reg, "localhost/busybox"),
        vec!["localhost/busybox:latest"]
    );
    assert_eq!(
        resolved(&reg, "docker.io/busybox:1"),
        vec!["docker.io/library/busybox:1"]
    );
    assert!(matches!(
        reg.resolve("Busybox"),
        Err(RegistriesError::Reference(_))
    ));
}

#[test]
fn alias_cache_overrides_config_aliases() {
    let dir = tempfile::tempdir().unwrap();
    let main = write(
        dir.path(),
        "r.conf",
        "[aliases]\nbb = \"a.io/bb\"\ncc = \"a.io/cc\"\n",
    );
    let cache = write(dir.path(), "cache.conf", "[aliases]\nbb = \"b.io/bb\"\n");
    let mut reg = Registries::load_from(Some(&main), &[]).unwrap();
    reg.load_alias_cache(&cache).unwrap();
    reg.load_alias_cache(&dir.path().join("absent.conf"))
        .unwrap();
    assert_eq!(resolved(&reg, "bb"), vec!["b.io/bb:latest"]);
    assert_eq!(resolved(&reg, "cc"), vec!["a.io/cc:latest"]);
}

#[test]
fn endpoints_rewrite_by_longest_prefix_with_mirrors() {
    let reg = from_text(
        r#"
[[registry]]
prefix = "example.com"
location = "plain.example.net"

[[registry]]
prefix = "example.com/foo"
location = "internal.example.net/bar"
insecure = true
[[registry.mirror]]
location = "mirror0.local/mirror-for-foo"
[[registry.mirror]]
location = "mirror1.local:5000/mirrors/foo"
insecure = true

[[registry]]
location = "docker.io"
[[registry.mirror]]
location = "mirror.gcr.io"
"#,
    );
    assert_eq!(
        eps(&reg, "example.com/foo/image:1"),
        vec![
            ep("mirror0.local", "mirror-for-foo/image", "1", false, true),
            ep("mirror1.local:5000", "mirrors/foo/image", "1", true, true),
            ep("internal.example.net", "bar/image", "1", true, false),
        ]
    );
    // Component boundary: foobar is not under foo.
    assert_eq!(
        eps(&reg, "example.com/foobar"),
        vec![ep("plain.example.net", "foobar", "latest", false, false)]
    );
    // Exact repository match, tag carried over.
    assert_eq!(
        eps(&reg, "example.com/foo:2")[2],
        ep("internal.example.net", "bar", "2", true, false)
    );
    // A host prefix does not swallow another port.
    assert_eq!(
        eps(&reg, "example.com:5000/x"),
        vec![ep("example.com:5000", "x", "latest", false, false)]
    );
    assert_eq!(
        eps(&reg, "busybox"),
        vec![
            ep("mirror.gcr.io", "library/busybox", "latest", false, true),
            ep("docker.io", "library/busybox", "latest", false, false),
        ]
    );
    // Unconfigured registries: the reference itself; loopback is insecure.
    assert_eq!(
        eps(&reg, "quay.io/a/b"),
        vec![ep("quay.io", "a/b", "latest", false, false)]
    );
    for host in [
        "localhost:5000",
        "127.0.0.1:5000",
        "[::1]:5000",
        "localhost",
        "127.1.2.3",
    ] {
        assert!(eps(&reg, &format!("{host}/x"))[0].3, "{host}");
    }
    assert!(!eps(&reg, "localhost.example.com/x")[0].3);
}

#[test]
fn wildcard_prefixes_match_subdomains() {
    let reg = from_text(
        r#"
[[registry]]
prefix = "*.example.com"
insecure = true
[[registry.mirror]]
location = "mirror.local/cache"

[[registry]]
prefix = "exact.example.com"
location = "exact.example.com"
"#,
    );
    assert_eq!(
        eps(&reg, "a.b.example.com:5000/ns/img:1"),
        vec![
            ep("mirror.local", "cache/ns/img", "1", false, true),
            ep("a.b.example.com:5000", "ns/img", "1", true, false),
        ]
    );
    assert_eq!(
        eps(&reg, "exact.example.com/x"),
        vec![ep("exact.example.com", "x", "latest", false, false)]
    );
    assert_eq!(
        eps(&reg, "example.com/x"),
        vec![ep("example.com", "x", "latest", false, false)]
    );
    assert_eq!(
        eps(&reg, "badexample.com/x"),
        vec![ep("badexample.com", "x", "latest", false, false)]
    );
}

#[test]
fn mirror_usage_restrictions() {
    let reg = from_text(
        r#"
[[registry]]
location = "a.io"
mirror-by-digest-only = true
[[registry.mirror]]
location = "m.io"

[[registry]]
location = "b.io"
[[registry.mirror]]
location = "digest.io"
pull-from-mirror = "digest-only"
[[registry.mirror]]
location = "tag.io"
pull-from-mirror = "tag-only"
"#,
    );
    let hosts = |s: &str| eps(&reg, s).into_iter().map(|e| e.0).collect::<Vec<_>>();
    assert_eq!(hosts("a.io/x:1"), vec!["a.io"]);
    assert_eq!(hosts(&format!("a.io/x@sha256:{HEX}")), vec!["m.io", "a.io"]);
    assert_eq!(hosts("b.io/x:1"), vec!["tag.io", "b.io"]);
    assert_eq!(
        hosts(&format!("b.io/x@sha256:{HEX}")),
        vec!["digest.io", "b.io"]
    );
    assert_eq!(
        eps(&reg, &format!("b.io/x:1@sha256:{HEX}"))[0].2,
        format!("sha256:{HEX}")
    );
}

#[test]
fn blocked_registries_are_refused_for_pull_only() {
    let dir = tempfile::tempdir().unwrap();
    let main = write(dir.path(), "r.conf", "[[registry]]\nprefix = \"evil.io/bad\"\nlocation = \"evil.io/bad\"\nblocked = true\ninsecure = true\n");
    let reg = Registries::load_from(Some(&main), &[]).unwrap();
    let err = reg
        .endpoints(&parse_normalized("evil.io/bad/x").unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("\"evil.io/bad\" is blocked in") && err.contains(&main.display().to_string()),
        "{err}"
    );
    assert!(reg
        .endpoints(&parse_normalized("evil.io/good").unwrap())
        .is_ok());
    let push = reg.push_endpoint(&parse_normalized("evil.io/bad/x").unwrap());
    assert_eq!(
        (push.host.as_str(), push.repository.as_str(), push.insecure),
        ("evil.io", "bad/x", true)
    );
}

#[test]
fn rewrite_to_an_unqualified_location_is_an_error() {
    let reg = from_text("[[registry]]\nprefix = \"a.io\"\nlocation = \"nodot\"\n");
    let err = reg
        .endpoints(&parse_normalized("a.io/x").unwrap())
        .unwrap_err();
    assert!(matches!(err, RegistriesError::Rewrite { .. }), "{err}");
}

#[test]
fn v1_format_is_read() {
    let reg = from_text(
        r#"
[registries.search]
registries = ['registry1.com', 'docker.io']
[registries.insecure]
registries = ['registry3.com', 'registry1.com/']
[registries.block]
registries = ['registry.untrusted.com']
"#,
    );
    assert_eq!(reg.unqualified_search, vec!["registry1.com", "docker.io"]);
    assert_eq!(
        resolved(&reg, "bb"),
        vec!["registry1.com/bb:latest", "docker.io/library/bb:latest"]
    );
    assert!(eps(&reg, "registry3.com/x")[0].3);
    assert!(eps(&reg, "registry1.com/x")[0].3);
    assert!(reg
        .endpoints(&parse_normalized("registry.untrusted.com/x").unwrap())
        .is_err());
}

#[test]
fn duplicate_prefix_in_one_file_keeps_the_first() {
    let reg = from_text(
        "[[registry]]\nlocation = \"a.io\"\ninsecure = true\n[[registry]]\nlocation = \"a.io\"\n",
    );
    assert_eq!(reg.registries.len(), 1);
    assert!(reg.registries[0].insecure);
}
