//! Issue 6, output formats: Go templates (`--format '{{.Names}}'`, `table ...`,
//! `{{json .}}`), filters for ps and images, `inspect -f`, and inspect's key set
//! compared with podman's (tests/integration/fixtures/podman-inspect-keys.txt).

use std::collections::BTreeSet;

use serde_json::Value;

use crate::images;
use crate::require;
use crate::support::{assert_error, inspect_one, json, pull, snapshot};
use crate::util::TestEnv;

fn lines(out: &crate::util::Output) -> Vec<String> {
    out.success();
    out.stdout_str().lines().map(str::to_string).collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// `ps -a --filter F --format {{.Names}}`, sorted.
fn ps_names(env: &TestEnv, filters: &[&str]) -> Vec<String> {
    let mut args = vec!["ps", "--format", "{{.Names}}"];
    for f in filters {
        args.extend(["--filter", f]);
    }
    sorted(lines(&env.run(&args)))
}

#[test]
fn ps_templates_tables_and_filters() {
    let fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootless());
    let bb = &fx.busybox.reference;
    pull(&env, bb);
    env.run(&["run", "--name", "web", "--label", "app=shop", bb, "true"])
        .success();
    env.run(&["run", "--name", "db", bb, "sh", "-c", "exit 3"])
        .assert_code(3);
    env.run(&["create", "--name", "idle", bb]).success();
    env.run(&["run", "-d", "--name", "up", bb, "sleep", "100"])
        .success();

    let all = sorted(lines(&env.run(&["ps", "-a", "--format", "{{.Names}}"])));
    assert_eq!(all, ["db", "idle", "up", "web"]);
    let running = lines(&env.run(&["ps", "--format", "{{.Names}}|{{.State}}|{{.Image}}"]));
    assert_eq!(running.len(), 1, "{running:?}");
    assert!(running[0].starts_with("up|Up "), "{running:?}");
    assert!(running[0].ends_with(&format!("|{bb}")), "{running:?}");

    // table: podman's header names, columns aligned (tabwriter: min width 12, pad 2).
    let t = lines(&env.run(&[
        "ps",
        "-a",
        "--format",
        "table {{.ID}}\\t{{.Names}}\\t{{.Command}}",
    ]));
    assert_eq!(t[0], "CONTAINER ID  NAMES       COMMAND", "{t:?}");
    assert_eq!(t.len(), 5, "{t:?}");
    for row in &t[1..] {
        assert_eq!(&row[12..14], "  ", "{row:?}");
        assert!(row[..12].bytes().all(|b| b.is_ascii_hexdigit()), "{row:?}");
    }
    let web_id = env.run(&["ps", "-a", "-q", "--no-trunc", "--filter", "name=^web$"]);
    let web_id = web_id.success().stdout_trim();
    assert_eq!(web_id.len(), 64, "{web_id}");
    let full = lines(&env.run(&[
        "ps",
        "-a",
        "--no-trunc",
        "--format",
        "{{.ID}}",
        "--filter",
        "name=web",
    ]));
    assert_eq!(full, std::slice::from_ref(&web_id));
    let labels = lines(&env.run(&[
        "ps",
        "-a",
        "--filter",
        "name=web",
        "--format",
        "{{json .Labels}} {{.Labels.app}} {{range $k, $v := .Labels}}{{$k}}={{$v}}{{end}}",
    ]));
    assert_eq!(labels, ["{\"app\":\"shop\"} shop app=shop"]);
    let j: Value = serde_json::from_str(
        &env.run(&["ps", "-a", "--filter", "name=db", "--format", "{{json .}}"])
            .success()
            .stdout_trim(),
    )
    .expect("{{json .}} is JSON");
    assert_eq!(j["Names"], "db", "{j}");
    assert_eq!(j["ExitCode"], 3, "{j}");

    // Filters: one key's values are alternatives, different keys all apply, and a
    // filter lists stopped containers without -a (as podman does).
    assert_eq!(ps_names(&env, &["status=exited"]), ["db", "web"]);
    assert_eq!(ps_names(&env, &["status=created"]), ["idle"]);
    assert_eq!(ps_names(&env, &["status=running"]), ["up"]);
    assert_eq!(ps_names(&env, &["exited=3"]), ["db"]);
    assert_eq!(ps_names(&env, &["exited=0"]), ["web"]);
    assert_eq!(ps_names(&env, &["label=app"]), ["web"]);
    assert_eq!(ps_names(&env, &["label=app=shop"]), ["web"]);
    assert!(ps_names(&env, &["label=app=other"]).is_empty());
    assert_eq!(ps_names(&env, &["name=web", "name=db"]), ["db", "web"]);
    assert_eq!(ps_names(&env, &["name=^d"]), ["db"]);
    assert_eq!(ps_names(&env, &["status=exited", "name=w"]), ["web"]);
    assert_eq!(ps_names(&env, &[&format!("id={}", &web_id[..8])]), ["web"]);
    assert_eq!(
        ps_names(&env, &[&format!("ancestor={bb}")]),
        ["db", "idle", "up", "web"]
    );
    let by_id = format!("ancestor={}", &fx.busybox.id[..12]);
    assert_eq!(ps_names(&env, &[&by_id]).len(), 4);
    assert!(ps_names(&env, &["ancestor=nothing-like-it"]).is_empty());

    // JSON stays JSON; the default table is unchanged.
    let j = json(&env.run(&["ps", "-a", "--format", "json"]));
    assert_eq!(j.as_array().map(Vec::len), Some(4), "{j}");
    let t = lines(&env.run(&["ps", "-a"]));
    assert!(t[0].starts_with("CONTAINER ID  IMAGE"), "{t:?}");
    env.run(&["rm", "-f", "up"]).success();
}

#[test]
fn images_templates_and_filters() {
    let fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootless());
    pull(&env, &fx.busybox.reference);
    pull(&env, &fx.layered.reference);
    env.run(&["tag", &fx.busybox.reference, "mybox:v1"])
        .success();
    let rows = sorted(lines(&env.run(&[
        "images",
        "--format",
        "{{.Repository}}:{{.Tag}} {{.ID}}",
    ])));
    let bb_repo = format!("{}/{}", fx.registry, fx.busybox.repo);
    let ly_repo = format!("{}/{}", fx.registry, fx.layered.repo);
    assert_eq!(
        rows,
        sorted(vec![
            format!("{bb_repo}:latest {}", &fx.busybox.id[..12]),
            format!("{ly_repo}:latest {}", &fx.layered.id[..12]),
            format!("localhost/mybox:v1 {}", &fx.busybox.id[..12]),
        ])
    );
    let t = lines(&env.run(&[
        "images",
        "--format",
        "table {{.Repository}}\\t{{.Tag}}\\t{{.ID}}\\t{{.Size}}",
    ]));
    let head: Vec<&str> = t[0]
        .split("  ")
        .filter(|s| !s.is_empty())
        .map(str::trim)
        .collect();
    assert_eq!(head, ["REPOSITORY", "TAG", "IMAGE ID", "SIZE"], "{t:?}");
    assert_eq!(t.len(), 4, "{t:?}");
    let nt = lines(&env.run(&[
        "images",
        "--no-trunc",
        "--format",
        "{{.ID}}",
        "--filter",
        "reference=*mybox*",
    ]));
    assert_eq!(
        nt,
        [
            format!("sha256:{}", fx.busybox.id),
            format!("sha256:{}", fx.busybox.id)
        ]
    );

    let q = |f: &str| sorted(lines(&env.run(&["images", "-q", "--filter", f])));
    let bb12 = fx.busybox.id[..12].to_string();
    let ly12 = fx.layered.id[..12].to_string();
    assert_eq!(q("reference=mybox"), std::slice::from_ref(&bb12));
    assert_eq!(
        q("reference=*/skiff-test/layered:*"),
        std::slice::from_ref(&ly12)
    );
    assert_eq!(
        q("dangling=false"),
        sorted(vec![bb12.clone(), ly12.clone()])
    );
    assert!(q("dangling=true").is_empty());
    assert!(q("label=no.such.label").is_empty());
    assert_eq!(q(&format!("id={}", &fx.layered.id[..6])), [ly12]);
    // Both fixtures share one creation time: neither is before or after the other.
    assert!(q(&format!("before={}", fx.busybox.reference)).is_empty());
    assert!(q(&format!("since={}", fx.busybox.reference)).is_empty());
    let h = lines(&env.run(&[
        "history",
        "--format",
        "table {{.ID}}\\t{{.CreatedBy}}",
        &fx.layered.reference,
    ]));
    assert_eq!(
        h[0].split_whitespace().collect::<Vec<_>>(),
        ["ID", "CREATED", "BY"],
        "{h:?}"
    );
    assert_eq!(
        h[1].split_whitespace().next(),
        Some(&fx.layered.id[..12]),
        "{h:?}"
    );
    assert_error(
        &env.run(&["history", "--format", "{{.Bogus}}", &fx.layered.reference]),
        125,
        &["Bogus"],
    );
    let j = json(&env.run(&["images", "--format", "json", "--filter", "reference=mybox"]));
    assert_eq!(j[0]["Id"], fx.busybox.id.as_str(), "{j}");
}

/// Key paths as the fixture lists them: `A.B`, `A[].B`; keys below map-valued
/// fields are user data and not listed; list elements that are not objects add nothing.
fn key_paths(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    const MAPS: &[&str] = &[
        "Labels",
        "Annotations",
        "Ports",
        "ExposedPorts",
        "Networks",
        "Volumes",
        "Options",
        "Sysctls",
        "Data",
        "StorageOpt",
        "Tmpfs",
        "PortBindings",
    ];
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                out.insert(p.clone());
                let is_log_config = p.ends_with("LogConfig.Config");
                if !MAPS.contains(&k.as_str()) && !is_log_config {
                    key_paths(x, &p, out);
                }
            }
        }
        Value::Array(a) => {
            for x in a {
                key_paths(x, &format!("{prefix}[]"), out);
            }
        }
        _ => {}
    }
}

fn podman_keys(section: &str) -> BTreeSet<String> {
    let text = include_str!("fixtures/podman-inspect-keys.txt");
    let mut cur = "";
    let mut keys = BTreeSet::new();
    for l in text.lines() {
        let l = l.trim();
        if l.starts_with('#') || l.is_empty() {
            continue;
        }
        if let Some(s) = l.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            cur = s;
            continue;
        }
        if cur == section {
            keys.insert(l.to_string());
        }
    }
    assert!(keys.len() > 5, "fixture section {section} is empty");
    keys
}

/// Podman keys skiff leaves out on purpose, with the reason.
const OMITTED: &[(&str, &str)] = &[
    // The image's own config and history pass through unchanged: which keys they have
    // depends on the image, not on skiff.
    ("History[].comment", "image data"),
    ("History[].created", "image data"),
    ("History[].created_by", "image data"),
    ("Config.Cmd", "image data"),
    ("Config.Labels", "image data"),
];

fn missing(section: &str, v: &Value) -> Vec<String> {
    let mut have = BTreeSet::new();
    key_paths(v, "", &mut have);
    podman_keys(section)
        .into_iter()
        .filter(|k| {
            let omitted = section == "image" && OMITTED.iter().any(|(o, _)| o == k);
            !have.contains(k) && !omitted
        })
        .collect()
}

#[test]
fn inspect_has_podmans_keys_and_takes_templates() {
    let fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootless());
    let bb = &fx.busybox.reference;
    pull(&env, bb);
    let host = env.work.join("h");
    std::fs::create_dir(&host).expect("mkdir");
    env.give(&host);
    let bind = format!("{}:/hosttmp:ro", host.display());
    env.run(&[
        "create",
        "--name",
        "golden",
        "-v",
        "vol1:/data",
        "-v",
        &bind,
        "--label",
        "x=y",
        "--env",
        "FOO=bar",
        bb,
        "sleep",
        "1000",
    ])
    .success();
    let c = inspect_one(&env, &["golden"]);
    assert_eq!(missing("container", &c), Vec::<String>::new(), "{c:#}");
    let i = inspect_one(&env, &["--type", "image", bb]);
    assert_eq!(missing("image", &i), Vec::<String>::new(), "{i:#}");
    let v = inspect_one(&env, &["--type", "volume", "vol1"]);
    assert_eq!(missing("volume", &v), Vec::<String>::new(), "{v:#}");
    let vol = c["Mounts"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["Destination"] == "/data"))
        .unwrap_or_else(|| panic!("no /data mount: {c:#}"));
    assert_eq!(vol["Type"], "volume", "{vol}");
    assert_eq!(vol["Name"], "vol1", "{vol}");
    assert_eq!(vol["Source"], v["Mountpoint"], "{vol}");
    let b = c["Mounts"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["Destination"] == "/hosttmp"))
        .unwrap_or_else(|| panic!("no bind: {c:#}"));
    assert_eq!(
        (b["Type"].as_str(), b["RW"].as_bool()),
        (Some("bind"), Some(false))
    );

    let out = env.run(&[
        "inspect",
        "-f",
        "{{.Name}} {{.State.Status}} {{.Config.Labels.x}} {{json .Config.Cmd}} {{range .Mounts}}{{.Destination}},{{end}}",
        "golden",
    ]);
    let mut dests = out.success().stdout_trim();
    assert!(
        dests.starts_with("golden created y [\"sleep\",\"1000\"] "),
        "{dests}"
    );
    dests = dests.rsplit(' ').next().unwrap_or_default().to_string();
    let mut d: Vec<&str> = dests.split(',').filter(|s| !s.is_empty()).collect();
    d.sort();
    assert_eq!(d, ["/data", "/hosttmp"]);
    let out = env.run(&["inspect", "--format", "{{.Id}}", "--type", "image", bb]);
    assert_eq!(out.success().stdout_trim(), fx.busybox.id);
    let out = env.run(&["inspect", "--format", "json", "golden"]);
    assert_eq!(json(&out)[0]["Name"], "golden");
    let out = env.run(&[
        "volume",
        "inspect",
        "--format",
        "{{.Name}}:{{.Driver}}",
        "vol1",
    ]);
    assert_eq!(out.success().stdout_trim(), "vol1:local");
}

#[test]
fn version_and_info_take_templates() {
    let env = require!(TestEnv::try_rootless());
    let out = env.run(&["version", "--format", "{{.Client.Version}}"]);
    assert_eq!(out.success().stdout_trim(), env!("CARGO_PKG_VERSION"));
    let j = json(&env.run(&["version", "--format", "json"]));
    assert_eq!(j["Client"]["Version"], env!("CARGO_PKG_VERSION"), "{j}");
    let out = env.run(&[
        "info",
        "--format",
        "{{.Store.GraphRoot}}|{{.Host.Security.Rootless}}",
    ]);
    let root = env.root_dir.to_str().expect("utf8");
    assert_eq!(out.success().stdout_trim(), format!("{root}|true"));
}

#[test]
fn bad_formats_and_filters_fail_cleanly() {
    let fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootless());
    pull(&env, &fx.busybox.reference);
    env.run(&["create", "--name", "c1", &fx.busybox.reference])
        .success();
    // Templates run per item: an unknown field only shows with something to list.
    env.run(&["volume", "create", "v1"]).success();
    let before = snapshot(&env);
    for (args, code, needles) in [
        (
            vec!["ps", "-a", "--format", "{{.Names}} {{.Foo}}"],
            125,
            vec!["template: ps", "can't evaluate field Foo"],
        ),
        (
            vec!["images", "--format", "{{.Nope}}"],
            125,
            vec!["can't evaluate field Nope"],
        ),
        (
            vec!["inspect", "-f", "{{.State.Bogus}}", "c1"],
            125,
            vec!["can't evaluate field Bogus"],
        ),
        (
            vec!["inspect", "-f", "{{.State.Status", "c1"],
            125,
            vec!["template: inspect", "unclosed action"],
        ),
        (
            vec!["ps", "--format", "{{nosuchfunc .ID}}"],
            125,
            vec!["function \"nosuchfunc\" not defined"],
        ),
        (
            vec!["ps", "--format", "{{if .ID}}"],
            125,
            vec!["unexpected EOF"],
        ),
        (
            vec!["volume", "ls", "--format", "{{.Bad}}"],
            125,
            vec!["can't evaluate field Bad"],
        ),
        (
            vec!["info", "--format", "{{.Nope.Deeper}}"],
            125,
            vec!["can't evaluate field Nope"],
        ),
        (
            vec!["ps", "--filter", "bogus=1"],
            125,
            vec!["bogus", "invalid"],
        ),
        (
            vec!["ps", "--filter", "name"],
            125,
            vec!["invalid filter", "name"],
        ),
        (
            vec!["ps", "--filter", "status=sleeping"],
            125,
            vec!["sleeping"],
        ),
        (vec!["ps", "--filter", "exited=abc"], 125, vec!["abc"]),
        (
            vec!["images", "--filter", "dangling=maybe"],
            125,
            vec!["maybe"],
        ),
        (
            vec!["images", "--filter", "before=nope"],
            125,
            vec!["before=nope", "image not known"],
        ),
        (vec!["images", "--filter", "color=red"], 125, vec!["color"]),
    ] {
        let out = env.run(&args);
        assert_error(&out, code, &needles);
        assert_eq!(out.stdout_str(), "", "nothing printed: {}", out.describe());
    }
    assert_eq!(snapshot(&env), before);
}

fn write_config(env: &TestEnv, path: &std::path::Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write skiff.toml");
    env.give(&env.home.join(".config"));
    env.give(path);
}

/// `(value, source)` of one setting in `info --format json`.
fn setting(info: &Value, key: &str) -> (String, String) {
    let s = info["config"]["settings"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["key"] == key))
        .unwrap_or_else(|| panic!("no {key}: {info}"));
    (
        s["value"].as_str().unwrap_or_default().to_string(),
        s["source"].as_str().unwrap_or_default().to_string(),
    )
}

#[test]
fn skiff_toml_precedence_and_info_sources() {
    let fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootless());
    let user_file = env.home.join(".config/skiff/skiff.toml");
    let alt = env.work.join("altroot");
    write_config(
        &env,
        &user_file,
        &format!(
            "[storage]\nroot = \"{}\"\ndriver = \"overlay\"\n[network]\ndefault = \"host\"\n\
             [containers]\nlog_driver = \"none\"\n[registries]\nconfig = \"{}\"\n",
            alt.display(),
            env.registries_conf.display()
        ),
    );
    let uf = user_file.to_str().expect("utf8").to_string();
    let info = json(&env.run(&["info", "--format", "json"]));
    assert_eq!(info["config"]["files"][0], uf.as_str(), "{info}");
    assert_eq!(
        setting(&info, "storage.root"),
        (alt.display().to_string(), uf.clone())
    );
    assert_eq!(
        setting(&info, "network.default"),
        ("host".into(), uf.clone())
    );
    assert_eq!(
        setting(&info, "containers.log_driver"),
        ("none".into(), uf.clone())
    );
    assert_eq!(setting(&info, "storage.driver").1, uf);
    assert_eq!(setting(&info, "storage.runroot").1, "default");
    assert_eq!(info["store"]["graphRoot"], alt.to_str().expect("utf8"));
    // The environment beats the file.
    assert_eq!(
        setting(&info, "registries.config").1,
        "environment CONTAINERS_REGISTRIES_CONF"
    );
    // Without the variable, the file's registries.conf resolves a short name.
    let out = env
        .cmd(&["pull", "-q", "mytools/bb"])
        .env_remove("CONTAINERS_REGISTRIES_CONF")
        .output();
    assert_eq!(out.success().stdout_trim(), fx.short_name.id);
    assert!(
        alt.join("skiff.db").exists(),
        "the store moved to the configured root"
    );
    // Defaults from the file apply to run/create; flags still win.
    env.run(&["create", "--name", "c1", "mytools/bb:latest"])
        .success();
    let c = inspect_one(&env, &["c1"]);
    assert_eq!(c["HostConfig"]["NetworkMode"], "host", "{c}");
    assert_eq!(c["HostConfig"]["LogConfig"]["Type"], "none", "{c}");
    env.run(&[
        "create",
        "--name",
        "c2",
        "--network",
        "none",
        "mytools/bb:latest",
    ])
    .success();
    assert_eq!(
        inspect_one(&env, &["c2"])["HostConfig"]["NetworkMode"],
        "none"
    );
    // Environment over file, flag over environment.
    let env_root = env.work.join("envroot");
    let out = env
        .cmd(&["info", "--format", "json"])
        .env("SKIFF_ROOT", &env_root)
        .output();
    assert_eq!(
        setting(&json(&out), "storage.root"),
        (
            env_root.display().to_string(),
            "environment SKIFF_ROOT".into()
        )
    );
    let flag_root = env.work.join("flagroot");
    let out = env
        .cmd(&[
            "--root",
            flag_root.to_str().expect("utf8"),
            "info",
            "--format",
            "json",
        ])
        .env("SKIFF_ROOT", &env_root)
        .output();
    assert_eq!(
        setting(&json(&out), "storage.root"),
        (flag_root.display().to_string(), "flag --root".into())
    );
    // SKIFF_CONFIG replaces the user file.
    let other = env.work.join("other.toml");
    write_config(&env, &other, "[containers]\nlog_driver = \"passthrough\"\n");
    let out = env
        .cmd(&["info", "--format", "json"])
        .env("SKIFF_CONFIG", &other)
        .output();
    let i = json(&out);
    assert_eq!(i["config"]["files"], serde_json::json!([other.to_str()]));
    assert_eq!(setting(&i, "storage.root").1, "default");
    assert_eq!(setting(&i, "containers.log_driver").0, "passthrough");
    let text = env.run(&["info"]);
    text.success()
        .stdout_contains(&format!("storage.root: {} (from {uf})", alt.display()));
    env.run(&["rm", "c1", "c2"]).success();
}

#[test]
fn malformed_skiff_toml_stops_every_command_and_changes_nothing() {
    let env = require!(TestEnv::try_rootless());
    let user_file = env.home.join(".config/skiff/skiff.toml");
    let store = env.root_dir.clone();
    for (text, needles) in [
        ("[storage]\nroot = \n", vec![":2:"]),
        (
            "[network]\ndefault = \"host\"\nbogus = 1\n",
            vec![":3:", "bogus"],
        ),
        (
            "[network]\ndefault = \"bridge\"\n",
            vec!["network.default", "bridge"],
        ),
        (
            "[storage]\ndriver = \"btrfs\"\n",
            vec!["storage.driver", "btrfs"],
        ),
    ] {
        write_config(&env, &user_file, text);
        for args in [
            vec!["info"],
            vec!["ps", "-a"],
            vec!["images"],
            vec!["volume", "create", "v"],
        ] {
            let out = env.run(&args);
            let mut n = vec![user_file.to_str().expect("utf8")];
            n.extend(&needles);
            assert_error(&out, 125, &n);
            assert!(!store.exists(), "nothing created: {}", out.describe());
        }
    }
    let out = env
        .cmd(&["info"])
        .env("SKIFF_CONFIG", env.work.join("missing.toml"))
        .output();
    assert_error(&out, 125, &["missing.toml"]);
    std::fs::remove_file(&user_file).expect("rm");
    env.run(&["info"]).success();
}
