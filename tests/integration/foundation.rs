//! Issue 2, the foundation: pull, images, run, ps, inspect, rm, rmi, tag, create,
//! start, unshare, version, info, rootless (and the core path rootful). The run flags
//! seen from inside the container are in run_flags.rs.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Duration;

use crate::images;
use crate::require;
use crate::support::{inspect_one, is_full_id, json, listing, pull, run_sh, store, subid_start};
use crate::util::{Mode, TestEnv};

/// `skiff images` as rows of whitespace-separated words (header first).
fn images_table(env: &TestEnv, extra: &[&str]) -> Vec<Vec<String>> {
    let mut args = vec!["images"];
    args.extend_from_slice(extra);
    let out = env.run(&args);
    out.success();
    out.stdout_str()
        .lines()
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect()
}

/// The core path in either mode: pull, images, run, exit codes, ps -a, rm, rmi.
fn core_path(env: &TestEnv) {
    let fx = images::fixtures();
    let bb = &fx.busybox;
    let pulled = env.run(&["pull", &bb.reference]);
    pulled.success();
    assert_eq!(pulled.stdout_trim(), bb.id, "{}", pulled.describe());
    assert!(
        pulled.stderr_str().contains(&bb.reference),
        "progress names the image\n{}",
        pulled.describe()
    );

    let table = images_table(env, &[]);
    assert_eq!(
        table[0],
        ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"],
        "header"
    );
    assert_eq!(table.len(), 2, "{table:?}");
    let repo = format!("{}/{}", fx.registry, bb.repo);
    assert_eq!(table[1][..3], [repo.as_str(), "latest", &bb.id[..12]]);
    let q = env.run(&["images", "-q"]);
    q.success();
    assert_eq!(q.stdout_trim(), bb.id[..12]);
    let nt = env.run(&["images", "--no-trunc"]);
    nt.success().stdout_contains(&bb.id);
    let j = json(&env.run(&["images", "--format", "json"]));
    assert_eq!(j[0]["Id"], bb.id.as_str(), "{j}");
    assert!(j[0]["Names"].to_string().contains(&repo), "{j}");

    let out = env.run(&["run", "--rm", &bb.reference, "echo", "hello"]);
    out.success();
    assert_eq!(out.stdout_str(), "hello\n");
    env.run(&["run", "--rm", &bb.reference, "sh", "-c", "exit 3"])
        .assert_code(3);

    let out = env.run(&["run", "--name", "done", &bb.reference, "sh", "-c", "exit 5"]);
    out.assert_code(5);
    let ps = env.run(&["ps", "-a"]);
    ps.success();
    let text = ps.stdout_str();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{}", ps.describe());
    let head: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        head,
        [
            "CONTAINER",
            "ID",
            "IMAGE",
            "COMMAND",
            "CREATED",
            "STATUS",
            "PORTS",
            "NAMES"
        ]
    );
    assert!(
        lines[1].contains("Exited (5)") && lines[1].trim_end().ends_with("done"),
        "{}",
        ps.describe()
    );
    assert!(lines[1].contains(&bb.reference), "{}", ps.describe());
    let c = inspect_one(env, &["done"]);
    assert_eq!(c["State"]["ExitCode"], 5);
    assert_eq!(c["State"]["Status"], "exited");
    let cid = c["Id"].as_str().expect("Id").to_string();
    assert!(is_full_id(&cid), "{c}");
    assert_eq!(
        listing(&store(env).join("containers")),
        std::slice::from_ref(&cid)
    );

    env.run(&["rm", "done"]).success().stdout_contains("done");
    let ps = env.run(&["ps", "-a", "-q"]);
    assert_eq!(ps.success().stdout_trim(), "");
    assert_eq!(
        listing(&store(env).join("containers")),
        Vec::<String>::new()
    );

    let rmi = env.run(&["rmi", &bb.reference]);
    rmi.success();
    rmi.stdout_contains(&format!("Untagged: {}", bb.reference))
        .stdout_contains(&format!("Deleted: {}", bb.id));
    assert_eq!(images_table(env, &[]).len(), 1, "only the header is left");
    assert_eq!(listing(&store(env).join("layers")), Vec::<String>::new());
}

#[test]
fn rootless_core_path_pull_images_run_ps_rm_rmi() {
    let _fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootless());
    core_path(&env);
    // Rootless state lives in the user's XDG_DATA_HOME.
    assert!(env.home.join(".local/share/skiff").is_dir());
}

#[test]
fn rootful_core_path_pull_images_run_ps_rm_rmi() {
    let fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootful());
    assert_eq!(env.mode, Mode::Rootful);
    core_path(&env);
    // Rootful: real root inside, the identity mapping, the store under --root.
    pull(&env, &fx.busybox.reference);
    let out = run_sh(
        &env,
        &[],
        &fx.busybox.reference,
        "id -u; cat /proc/self/uid_map; stat -c '%u:%g' /home/tester",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "0");
    let map: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(map, ["0", "0", "4294967295"], "{out}");
    assert_eq!(lines[2], "1000:1000");
    let layers = listing(&store(&env).join("layers"));
    assert_eq!(layers.len(), 1, "{layers:?}");
    let home = store(&env)
        .join("layers")
        .join(&layers[0])
        .join("home/tester");
    assert_eq!(fs::metadata(&home).expect("layer file").uid(), 1000);
    // unshare is for rootless users only.
    let out = env.run(&["unshare", "true"]);
    out.assert_code(125).stderr_contains("Error:");
}

#[test]
fn short_name_resolves_through_registries_conf_and_exit_code_passes_through() {
    let fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootless());
    let out = env.run(&["run", "--rm", "mytools/bb", "sh", "-c", "exit 3"]);
    out.assert_code(3);
    let want = format!("{}/mytools/bb:latest", fx.registry);
    out.stderr_contains(&want);
    let img = inspect_one(&env, &["--type", "image", "mytools/bb"]);
    assert_eq!(img["Id"], fx.short_name.id.as_str());
    assert!(img["RepoTags"].to_string().contains(&want), "{img}");
}

#[test]
fn create_then_start_attach_and_ps_inspect_tag_round_trip() {
    let fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootless());
    let bb = &fx.busybox.reference;
    pull(&env, bb);
    let out = env.run(&[
        "create",
        "--name",
        "c1",
        bb,
        "sh",
        "-c",
        "echo started; exit 4",
    ]);
    out.success();
    let id = out.stdout_trim();
    assert!(is_full_id(&id), "{}", out.describe());
    let ps = env.run(&["ps", "-a", "--no-trunc"]);
    ps.success().stdout_contains(&id);
    assert!(ps.stdout_str().contains("Created"), "{}", ps.describe());
    assert_eq!(
        env.run(&["ps", "-q"]).stdout_trim(),
        "",
        "nothing is running"
    );
    let started = env.run(&["start", "-a", "c1"]);
    started.assert_code(4);
    assert_eq!(started.stdout_str(), "started\n");
    let c = inspect_one(&env, &["c1"]);
    assert_eq!(c["Id"], id.as_str());
    assert_eq!(c["State"]["ExitCode"], 4);
    let j = json(&env.run(&["ps", "-a", "--format", "json"]));
    assert_eq!(j[0]["Id"], id.as_str(), "{j}");
    assert_eq!(j[0]["Names"][0], "c1", "{j}");
    assert_eq!(j[0]["ExitCode"], 4, "{j}");
    assert_eq!(env.run(&["ps", "-a", "-q"]).stdout_trim(), id[..12]);

    env.run(&["tag", bb, "mybox:v1", "other/x"]).success();
    let table = images_table(&env, &[]);
    let names: Vec<String> = table[1..]
        .iter()
        .map(|r| format!("{}:{}", r[0], r[1]))
        .collect();
    for want in ["localhost/mybox:v1", "localhost/other/x:latest"] {
        assert!(names.iter().any(|n| n == want), "{want} in {table:?}");
    }
    assert!(
        table[1..].iter().all(|r| r[2] == fx.busybox.id[..12]),
        "{table:?}"
    );
    // Several names, container and image mixed: one array, in order.
    let both = json(&env.run(&["inspect", "c1", "mybox:v1"]));
    assert_eq!(both.as_array().map(Vec::len), Some(2), "{both}");
    assert_eq!(both[0]["Id"], id.as_str());
    assert_eq!(both[1]["Id"], fx.busybox.id.as_str());
    assert!(
        both[0]["State"].is_object() && both[1]["RootFS"].is_object(),
        "{both}"
    );
    let img = inspect_one(&env, &["mybox:v1"]);
    assert_eq!(img["Id"], fx.busybox.id.as_str());
    assert_eq!(
        img["RootFS"]["Layers"].as_array().map(Vec::len),
        Some(1),
        "{img}"
    );
    let out = env.run(&["run", "--rm", "mybox:v1", "echo", "tagged"]);
    assert_eq!(out.success().stdout_str(), "tagged\n");
    let rmi = env.run(&["rmi", "mybox:v1"]);
    rmi.success()
        .stdout_contains("Untagged: localhost/mybox:v1");
    assert!(!rmi.stdout_str().contains("Deleted"), "{}", rmi.describe());
    // The last tag of an image a container uses cannot go (podman: exit 2).
    env.run(&["rmi", "other/x"]).success();
    let out = env.run(&["rmi", bb]);
    out.assert_code(2).stderr_contains("c1");
    env.run(&["rm", "c1"]).success();
    env.run(&["rmi", &fx.busybox.id[..12]])
        .success()
        .stdout_contains("Deleted:");
    assert_eq!(env.run(&["images", "-q"]).stdout_trim(), "");
}

#[test]
fn run_rm_and_rm_leave_nothing_behind_even_for_subordinate_id_files() {
    let fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootless());
    let bb = &fx.busybox.reference;
    let containers = store(&env).join("containers");
    let write = "mkdir -p /tmp/d/e && echo x > /tmp/d/e/f && chmod 700 /tmp/d && stat -c %u /tmp/d";
    let out = env.run(&["run", "--rm", "-u", "1000:1000", bb, "sh", "-c", write]);
    assert_eq!(out.success().stdout_str(), "1000\n");
    assert_eq!(
        listing(&containers),
        Vec::<String>::new(),
        "run --rm left a dir"
    );
    assert_eq!(env.run(&["ps", "-a", "-q"]).stdout_trim(), "");

    let out = env.run(&[
        "run",
        "--name",
        "keep",
        "-u",
        "1000:1000",
        bb,
        "sh",
        "-c",
        write,
    ]);
    out.success();
    let id = inspect_one(&env, &["keep"])["Id"]
        .as_str()
        .expect("Id")
        .to_string();
    assert_eq!(listing(&containers), std::slice::from_ref(&id));
    // The file really is owned by a subordinate ID on the host.
    if let Some(u) = env.user.as_ref() {
        let start = subid_start("/etc/subuid", &u.name, u.uid).expect("subuid");
        let upper = containers.join(&id).join("upper/tmp/d");
        let m = fs::metadata(&upper).expect("the container's upper dir");
        assert_eq!(m.uid(), start + 999, "{}", upper.display());
    }
    env.run(&["rm", "keep"]).success();
    assert_eq!(listing(&containers), Vec::<String>::new(), "rm left a dir");
    let leftovers = crate::support::listing(&env.runtime_dir.join("skiff"))
        .into_iter()
        .filter(|n| n.contains(&id[..12]))
        .collect::<Vec<_>>();
    assert!(leftovers.is_empty(), "runtime leftovers: {leftovers:?}");
}

#[test]
fn unshare_sees_image_owners_and_the_user_namespace_mapping() {
    let fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootless());
    pull(&env, &fx.busybox.reference);
    let layers = listing(&store(&env).join("layers"));
    assert_eq!(layers.len(), 1, "{layers:?}");
    let home = store(&env).join("layers").join(&layers[0]).join("home");
    let out = env.run(&["unshare", "ls", "-ln", home.to_str().expect("utf8")]);
    let text = out.success().stdout_str();
    let line = text
        .lines()
        .find(|l| l.ends_with(" tester"))
        .expect("tester line");
    let f: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(f[2..4], ["1000", "1000"], "{line}");
    let out = env.run(&["unshare", "cat", "/proc/self/uid_map"]);
    let text = out.success().stdout_str();
    let u = env.user.as_ref().expect("user");
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0], ["0", u.uid.to_string().as_str(), "1"]);
    let start = subid_start("/etc/subuid", &u.name, u.uid)
        .expect("subuid")
        .to_string();
    assert_eq!(rows[1][..2], ["1", start.as_str()], "{text}");
    // Exit codes pass through unshare.
    env.run(&["unshare", "sh", "-c", "exit 7"]).assert_code(7);
}

#[test]
fn pulling_twice_skips_present_layers_and_images_share_the_base_layer() {
    let fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootless());
    let first = env.run(&["pull", &fx.busybox.reference]);
    first.success();
    let layers = listing(&store(&env).join("layers"));
    assert_eq!(layers.len(), 1);
    let second = env.run(&["pull", &fx.busybox.reference]);
    assert_eq!(second.success().stdout_trim(), fx.busybox.id);
    second.stderr_contains("skipped");
    assert_eq!(listing(&store(&env).join("layers")), layers);
    // By digest: the same image.
    let third = env.run(&["pull", "-q", &fx.busybox.by_digest()]);
    assert_eq!(third.success().stdout_trim(), fx.busybox.id);
    assert_eq!(third.stderr_str(), "", "-q prints nothing but the ID");
    // layered = busybox's layer + 3: only 3 new layer dirs, the base is reused.
    let out = env.run(&["pull", &fx.layered.reference]);
    out.success().stderr_contains("skipped");
    let after = listing(&store(&env).join("layers"));
    assert_eq!(after.len(), 4, "{after:?}");
    assert!(after.contains(&layers[0]));
    assert_eq!(images_table(&env, &["-q"]).len(), 2);
    // --pull never uses what is there; --pull always checks again (and finds it).
    let out = env.run(&[
        "run",
        "--rm",
        "--pull",
        "never",
        &fx.layered.reference,
        "true",
    ]);
    out.success();
    assert!(
        !out.stderr_str().contains("Trying to pull"),
        "{}",
        out.describe()
    );
    let out = env.run(&[
        "run",
        "--rm",
        "--pull",
        "always",
        &fx.busybox.reference,
        "true",
    ]);
    out.success().stderr_contains("skipped");
    assert_eq!(listing(&store(&env).join("layers")).len(), 4);
}

#[test]
fn detached_run_returns_at_once_and_rm_of_a_running_container_needs_force() {
    let fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootless());
    pull(&env, &fx.busybox.reference);
    let out = env
        .cmd(&[
            "run",
            "-d",
            "--name",
            "bg",
            &fx.busybox.reference,
            "sleep",
            "60",
        ])
        .timeout(Duration::from_secs(20))
        .output();
    out.success();
    assert!(is_full_id(&out.stdout_trim()), "{}", out.describe());
    assert!(out.elapsed < Duration::from_secs(10), "{}", out.describe());
    let ps = env.run(&["ps"]);
    ps.success().stdout_contains("bg");
    assert!(ps.stdout_str().contains("Up"), "{}", ps.describe());
    assert_eq!(inspect_one(&env, &["bg"])["State"]["Status"], "running");
    let rm = env.run(&["rm", "bg"]);
    rm.assert_code(2).stderr_contains("Error:");
    let rm = env.run(&["rm", "-f", "bg"]);
    rm.success();
    assert!(rm.elapsed < Duration::from_secs(15), "{}", rm.describe());
    assert_eq!(env.run(&["ps", "-a", "-q"]).stdout_trim(), "");
    // rm -a removes every stopped container; rm of a stopped one needs no -f.
    for n in ["s1", "s2"] {
        env.run(&["run", "--name", n, &fx.busybox.reference, "true"])
            .success();
    }
    let out = env.run(&["rm", "-a"]);
    // As podman: the full ID of each removed container.
    let ids: Vec<String> = out
        .success()
        .stdout_str()
        .lines()
        .map(String::from)
        .collect();
    assert!(
        ids.len() == 2 && ids.iter().all(|i| is_full_id(i)),
        "{}",
        out.describe()
    );
    assert_eq!(env.run(&["ps", "-a", "-q"]).stdout_trim(), "");
}

#[test]
fn version_and_info() {
    let env = require!(TestEnv::try_rootless());
    let out = env.run(&["version"]);
    out.success().stdout_contains(env!("CARGO_PKG_VERSION"));
    let info = json(&env.run(&["info", "--format", "json"]));
    assert_eq!(
        info["store"]["graphRoot"],
        store(&env).to_str().expect("utf8"),
        "{info}"
    );
    let u = env.user.as_ref().expect("user");
    let uidmap = &info["host"]["idMappings"]["uidmap"];
    assert_eq!(uidmap[0]["container_id"], 0, "podman's keys: {info}");
    assert_eq!(uidmap[0]["host_id"], u.uid, "{info}");
    assert_eq!(uidmap[0]["size"], 1, "{info}");
    let out = env.run(&["info"]);
    out.success().stdout_contains("graphRoot");
}

#[test]
fn without_xdg_runtime_dir_a_private_tmp_dir_is_used() {
    let fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootless());
    let out = env
        .cmd(&["run", "--rm", &fx.busybox.reference, "echo", "ok"])
        .env_remove("XDG_RUNTIME_DIR")
        .output();
    assert_eq!(out.success().stdout_str(), "ok\n");
    let u = env.user.as_ref().expect("user");
    // skiff's fallback, as podman's /tmp/podman-run-UID (other tools' /tmp/*-UID dirs are
    // none of our business).
    let dir = std::path::PathBuf::from(format!("/tmp/skiff-run-{}", u.uid));
    let md = fs::metadata(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    assert!(
        md.is_dir() && md.uid() == u.uid,
        "{} is ours",
        dir.display()
    );
    assert_eq!(
        md.permissions().mode() & 0o077,
        0,
        "the fallback runtime dir must be private"
    );
}
