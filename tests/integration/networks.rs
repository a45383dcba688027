//! Issue 4, network control plane: `network create|ls|inspect|rm|prune|connect|
//! disconnect`, addresses handed out from a network's subnet (and freed on rm),
//! `--network container:NAME` (shared user + network namespaces: a server on the
//! target's 127.0.0.1 is reached from the dependent) and `--network ns:PATH`. Only
//! loopback addresses are ever contacted.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::images;
use crate::require;
use crate::support::{assert_error, inspect_one, json, pull, snapshot};
use crate::util::TestEnv;

fn setup(env: TestEnv) -> (TestEnv, &'static str) {
    let fx = images::fixtures();
    pull(&env, &fx.busybox.reference);
    (env, fx.busybox.reference.as_str())
}

fn net_names(env: &TestEnv) -> Vec<String> {
    let out = env.run(&["network", "ls", "--format", "{{.Name}}"]);
    out.success()
        .stdout_str()
        .lines()
        .map(str::to_string)
        .collect()
}

fn ok(env: &TestEnv, args: &[&str]) -> String {
    let out = env.run(args);
    out.success();
    out.stdout_trim()
}

#[track_caller]
fn until(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < limit, "timed out after {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn network_create_ls_inspect_rm_prune() {
    let env = require!(TestEnv::try_rootless());
    // The default network is there from the start.
    assert_eq!(net_names(&env), ["podman"]);
    let d = json(&env.run(&["network", "inspect", "podman"]));
    assert_eq!(d[0]["subnets"][0]["subnet"], "10.88.0.0/16", "{d}");
    assert_eq!(
        d[0]["id"],
        "2f259bab93aaaaa2542ba43ef33eb990d0999ee1b9924b557b7be53c0b7a1bb9"
    );
    assert_eq!(d[0]["dns_enabled"], false, "{d}");

    let out = env.run(&[
        "network", "create", "--label", "a=b", "--label", "c=d", "n1",
    ]);
    assert_eq!(out.success().stdout_trim(), "n1");
    assert_eq!(ok(&env, &["network", "create", "n2"]), "n2");
    let j = json(&env.run(&["network", "inspect", "n1", "n2"]));
    // podman 4.3.1's key set for a network with labels and no options.
    let keys: BTreeSet<&str> = j[0]
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    let want: BTreeSet<&str> = [
        "name",
        "id",
        "driver",
        "network_interface",
        "created",
        "subnets",
        "ipv6_enabled",
        "internal",
        "dns_enabled",
        "labels",
        "ipam_options",
    ]
    .into();
    assert_eq!(keys, want, "{j}");
    assert_eq!(j[0]["subnets"][0]["subnet"], "10.89.0.0/24", "{j}");
    assert_eq!(j[0]["subnets"][0]["gateway"], "10.89.0.1", "{j}");
    assert_eq!(j[0]["labels"]["c"], "d", "{j}");
    assert_eq!(j[0]["driver"], "bridge");
    assert_eq!(j[0]["network_interface"], "podman1");
    assert_eq!(j[0]["ipam_options"]["driver"], "host-local");
    assert_eq!(j[1]["subnets"][0]["subnet"], "10.89.1.0/24", "{j}");
    assert!(j[1].get("labels").is_none(), "{j}");
    let created = j[0]["created"].as_str().expect("created");
    assert!(created.ends_with('Z') && created.contains('T'), "{created}");

    // Explicit subnet (host bits cleared), gateway, internal, options.
    let out = env.run(&[
        "network",
        "create",
        "--subnet",
        "10.90.1.7/24",
        "--gateway",
        "10.90.1.254",
        "--internal",
        "-o",
        "mtu=1500",
        "n3",
    ]);
    out.success();
    let n3 = json(&env.run(&["network", "inspect", "n3"]));
    assert_eq!(n3[0]["subnets"][0]["subnet"], "10.90.1.0/24", "{n3}");
    assert_eq!(n3[0]["subnets"][0]["gateway"], "10.90.1.254", "{n3}");
    assert_eq!(n3[0]["internal"], true);
    assert_eq!(n3[0]["options"]["mtu"], "1500", "{n3}");

    // ls: podman's columns, -q, filters, templates.
    let ls = env.run(&["network", "ls"]);
    let text = ls.success().stdout_str();
    let mut lines = text.lines();
    assert_eq!(
        lines
            .next()
            .map(str::split_whitespace)
            .map(Iterator::collect::<Vec<_>>),
        Some(vec!["NETWORK", "ID", "NAME", "DRIVER"])
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows.len(), 4, "{text}");
    let n1_id = j[0]["id"].as_str().expect("id");
    assert!(rows.contains(&vec![&n1_id[..12], "n1", "bridge"]), "{text}");
    let nh = ok(
        &env,
        &["network", "ls", "--noheading", "--filter", "name=n1"],
    );
    assert_eq!(
        nh.split_whitespace().collect::<Vec<_>>(),
        [&n1_id[..12], "n1", "bridge"]
    );
    let q = ok(&env, &["network", "ls", "-q", "--filter", "label=a=b"]);
    assert_eq!(q, &n1_id[..12]);
    let out = env.run(&[
        "network",
        "ls",
        "--filter",
        "name=^n",
        "--format",
        "{{.Name}} {{.Driver}} {{.Labels}} {{.Internal}}",
    ]);
    assert_eq!(
        out.success().stdout_str(),
        "n1 bridge a=b,c=d false\nn2 bridge  false\nn3 bridge  true\n"
    );
    let out = env.run(&["network", "ls", "--format", "json", "--filter", "name=n2"]);
    assert_eq!(json(&out)[0]["name"], "n2");
    let out = env.run(&[
        "network",
        "inspect",
        "--format",
        "{{.Name}} {{.NetworkInterface}} {{range .Subnets}}{{.Subnet}} {{.Gateway}}{{end}} {{.DNSEnabled}}",
        "n3",
    ]);
    assert_eq!(
        out.success().stdout_str(),
        "n3 podman3 10.90.1.0/24 10.90.1.254 true\n"
    );
    assert_eq!(env.run(&["network", "exists", "n1"]).code(), Some(0));
    assert_eq!(env.run(&["network", "exists", "nope"]).code(), Some(1));

    // Bad input: one-line error, exit 125, nothing changed.
    let before = (net_names(&env), snapshot(&env));
    let cases: &[(&[&str], &[&str])] = &[
        (&["n1"], &["n1", "already exists"]),
        (&["bad/name"], &["bad/name", "invalid"]),
        (
            &["--subnet", "10.0.0.0/33", "x"],
            &["invalid CIDR", "10.0.0.0/33"],
        ),
        (&["--subnet", "foo", "x"], &["invalid CIDR", "foo"]),
        (
            &["--subnet", "10.89.1.128/25", "x"],
            &["10.89.1.128/25", "already used"],
        ),
        (
            &["--subnet", "10.80.0.0/12", "x"],
            &["10.80.0.0/12", "already used"],
        ),
        (
            &["--gateway", "10.1.0.1", "x"],
            &["gateway", "without subnet"],
        ),
        (
            &["--subnet", "10.91.0.0/24", "--gateway", "10.92.0.1", "x"],
            &["10.92.0.1", "not in subnet"],
        ),
        (&["-d", "foo", "x"], &["unsupported driver foo"]),
        (&["-o", "bogus=1", "x"], &["bogus"]),
    ];
    for (args, needles) in cases {
        let mut full = vec!["network", "create"];
        full.extend_from_slice(args);
        assert_error(&env.run(&full), 125, needles);
    }
    assert_error(
        &env.run(&["network", "inspect", "n1", "nope"]),
        125,
        &["nope", "network not found"],
    );
    assert_error(
        &env.run(&["network", "rm", "nope"]),
        1,
        &["nope", "network not found"],
    );
    assert_error(
        &env.run(&["network", "rm", "podman"]),
        125,
        &["default network podman cannot be removed"],
    );
    assert_error(
        &env.run(&["network", "ls", "--filter", "bogus=1"]),
        125,
        &["bogus"],
    );
    assert_eq!((net_names(&env), snapshot(&env)), before);

    // rm and prune: the default network stays.
    assert_eq!(ok(&env, &["network", "rm", "n2"]), "n2");
    assert_eq!(ok(&env, &["network", "prune", "-f"]), "n1\nn3");
    assert_eq!(net_names(&env), ["podman"]);
    // The freed subnet is handed out again.
    ok(&env, &["network", "create", "again"]);
    let j = json(&env.run(&["network", "inspect", "again"]));
    assert_eq!(j[0]["subnets"][0]["subnet"], "10.89.0.0/24", "{j}");
}

fn networks_of(env: &TestEnv, c: &str) -> serde_json::Value {
    inspect_one(env, &[c])["NetworkSettings"]["Networks"].clone()
}

#[test]
fn addresses_are_allocated_shown_and_released() {
    let (env, img) = setup(require!(TestEnv::try_rootless()));
    ok(&env, &["network", "create", "net1"]);
    ok(&env, &["network", "create", "net2"]);
    let a = ok(
        &env,
        &[
            "create",
            "--name",
            "a",
            "--network",
            "net1",
            "--network-alias",
            "web",
            img,
            "true",
        ],
    );
    let b = ok(
        &env,
        &[
            "create",
            "--name",
            "b",
            "--network",
            "net1,net2",
            img,
            "true",
        ],
    );
    let na = networks_of(&env, "a");
    let e = &na["net1"];
    assert_eq!(e["IPAddress"], "10.89.0.2", "{na}");
    assert_eq!(e["Gateway"], "10.89.0.1", "{na}");
    assert_eq!(e["IPPrefixLen"], 24, "{na}");
    assert_eq!(e["NetworkID"], "net1", "{na}");
    assert_eq!(e["Aliases"], serde_json::json!(["web", &a[..12]]), "{na}");
    let mac = e["MacAddress"].as_str().expect("mac");
    assert_eq!(mac.len(), 17, "{mac}");
    let first = u8::from_str_radix(&mac[..2], 16).expect("hex");
    assert_eq!(first & 3, 2, "locally administered unicast: {mac}");
    assert_eq!(
        inspect_one(&env, &["a"])["HostConfig"]["NetworkMode"],
        "bridge"
    );
    let nb = networks_of(&env, "b");
    assert_eq!(nb["net1"]["IPAddress"], "10.89.0.3", "{nb}");
    assert_eq!(nb["net2"]["IPAddress"], "10.89.1.2", "{nb}");
    assert_eq!(nb["net2"]["Aliases"], serde_json::json!([&b[..12]]), "{nb}");
    // Repeated --network works like a comma list; the default network by name.
    ok(
        &env,
        &[
            "create",
            "--name",
            "c",
            "--network",
            "net2",
            "--network",
            "podman",
            img,
            "true",
        ],
    );
    let nc = networks_of(&env, "c");
    assert_eq!(nc["podman"]["IPAddress"], "10.88.0.2", "{nc}");
    assert_eq!(nc["podman"]["IPPrefixLen"], 16, "{nc}");
    // Static address.
    ok(
        &env,
        &[
            "create",
            "--name",
            "s",
            "--network",
            "net1",
            "--ip",
            "10.89.0.50",
            img,
            "true",
        ],
    );
    assert_eq!(networks_of(&env, "s")["net1"]["IPAddress"], "10.89.0.50");

    // Bad input changes nothing.
    let before = snapshot(&env);
    let bad: &[(&[&str], &[&str])] = &[
        (
            &["--network", "net1", "--ip", "10.89.0.50"],
            &["10.89.0.50", "already allocated"],
        ),
        (
            &["--network", "net1", "--ip", "10.99.0.5"],
            &["10.99.0.5", "not in any subnet"],
        ),
        (&["--network", "net1", "--ip", "nonsense"], &["nonsense"]),
        (
            &["--network", "net1,net2", "--ip", "10.89.0.9"],
            &["--ip", "single network"],
        ),
        (&["--network", "nope"], &["nope", "network not found"]),
        (
            &["--network", "none", "--network-alias", "x"],
            &["--network-alias", "bridge"],
        ),
        (
            &["--network", "host", "--network", "net1"],
            &["multiple networks"],
        ),
    ];
    for (flags, needles) in bad {
        let mut full = vec!["create"];
        full.extend_from_slice(flags);
        full.extend_from_slice(&[img, "true"]);
        assert_error(&env.run(&full), 125, needles);
    }
    assert_eq!(snapshot(&env), before);

    // rm releases the address: the next container gets it.
    ok(&env, &["rm", "a"]);
    ok(
        &env,
        &["create", "--name", "a2", "--network", "net1", img, "true"],
    );
    assert_eq!(networks_of(&env, "a2")["net1"]["IPAddress"], "10.89.0.2");

    // A network in use is not removed without -f; with -f its containers go too.
    let before = snapshot(&env);
    assert_error(
        &env.run(&["network", "rm", "net2"]),
        2,
        &["net2", "associated containers", "-f"],
    );
    assert_eq!(snapshot(&env), before);
    // prune keeps networks in use.
    assert_eq!(ok(&env, &["network", "prune", "-f"]), "");
    assert_eq!(ok(&env, &["network", "rm", "-f", "net2"]), "net2");
    let left = ok(&env, &["ps", "-a", "--format", "{{.Names}}"]);
    let mut left: Vec<&str> = left.lines().collect();
    left.sort();
    assert_eq!(left, ["a2", "s"]);

    // connect/disconnect a stopped container.
    ok(&env, &["network", "create", "net3"]);
    ok(&env, &["network", "connect", "--alias", "db", "net3", "s"]);
    let ns = networks_of(&env, "s");
    assert_eq!(ns["net3"]["Aliases"][0], "db", "{ns}");
    assert_error(
        &env.run(&["network", "connect", "net3", "s"]),
        125,
        &["already connected"],
    );
    ok(&env, &["network", "disconnect", "net3", "s"]);
    assert!(networks_of(&env, "s").get("net3").is_none());
    assert_eq!(ok(&env, &["network", "rm", "net3"]), "net3");
}

#[test]
fn hosts_file_lists_members_and_the_container_runs() {
    let (env, img) = setup(require!(TestEnv::try_rootless()));
    ok(&env, &["network", "create", "web"]);
    ok(
        &env,
        &[
            "run",
            "-d",
            "--name",
            "srv",
            "--network",
            "web",
            "--network-alias",
            "api",
            img,
            "sleep",
            "1000",
        ],
    );
    let out = env.run(&[
        "run",
        "--rm",
        "--name",
        "cli",
        "--network",
        "web",
        img,
        "cat",
        "/etc/hosts",
    ]);
    let hosts = out.success().stdout_str();
    assert!(hosts.contains("10.89.0.3\t"), "own address:\n{hosts}");
    assert!(hosts.contains(" cli\n"), "own name:\n{hosts}");
    assert!(
        hosts.contains("10.89.0.2\tsrv api\n"),
        "the other member:\n{hosts}"
    );
    // The datapath exists now (src/network/peers.rs): no warning about its absence.
    assert!(
        !out.stderr_str().contains("datapath"),
        "{}",
        out.stderr_str()
    );
    // The running member learned about the newcomer.
    let seen = ok(&env, &["exec", "srv", "cat", "/etc/hosts"]);
    assert!(seen.contains("10.89.0.3\tcli"), "{seen}");
    // Its run-time directory holds the members file for the datapath.
    let id = json(&env.run(&["network", "inspect", "web"]))[0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let runroot = env.runtime_dir.join("skiff");
    let members = std::fs::read_to_string(
        runroot
            .join("networks")
            .join(&id[..12])
            .join("members.json"),
    )
    .expect("members file");
    assert!(
        members.contains("\"srv\"") && members.contains("\"api\""),
        "{members}"
    );
    assert!(
        !members.contains("\"cli\""),
        "removed member still listed: {members}"
    );
    ok(&env, &["rm", "-f", "srv"]);
}

/// A busybox httpd on 127.0.0.1:8080 inside `name`.
fn start_server(env: &TestEnv, img: &str, name: &str, extra: &[&str]) -> String {
    let mut args = vec!["run", "-d", "--name", name];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[
        img,
        "sh",
        "-c",
        "mkdir -p /www && echo hello-from-$(hostname) > /www/index.html && exec httpd -f -p 127.0.0.1:8080 -h /www",
    ]);
    ok(env, &args)
}

fn wget_from(env: &TestEnv, img: &str, network: &str) -> String {
    let mut body = String::new();
    until(Duration::from_secs(10), "httpd answers", || {
        let out = env.run(&[
            "run",
            "--rm",
            "--network",
            network,
            img,
            "wget",
            "-qO-",
            "http://127.0.0.1:8080/",
        ]);
        body = out.stdout_trim();
        out.code() == Some(0)
    });
    body
}

#[test]
fn container_mode_shares_the_network_namespace() {
    let (env, img) = setup(require!(TestEnv::try_rootless()));
    let id = start_server(&env, img, "srv", &[]);
    let body = wget_from(&env, img, "container:srv");
    assert_eq!(body, format!("hello-from-{}", &id[..12]));
    // By ID prefix too, and without the shared namespace nothing answers.
    assert_eq!(
        wget_from(&env, img, &format!("container:{}", &id[..10])),
        body
    );
    let out = env.run(&[
        "run",
        "--rm",
        img,
        "wget",
        "-qO-",
        "-T",
        "2",
        "http://127.0.0.1:8080/",
    ]);
    assert_ne!(out.code(), Some(0), "{}", out.describe());

    // A dependent: inspect, hostname, /etc/hosts shared with the target.
    let dep = ok(
        &env,
        &[
            "run",
            "-d",
            "--name",
            "dep",
            "--network",
            "container:srv",
            "-p",
            "9999:80",
            img,
            "sleep",
            "1000",
        ],
    );
    let j = inspect_one(&env, &["dep"]);
    assert_eq!(j["HostConfig"]["NetworkMode"], format!("container:{id}"));
    assert_eq!(j["Dependencies"][0], id.as_str());
    assert_eq!(
        j["HostConfig"]["PortBindings"],
        serde_json::json!({}),
        "-p is discarded"
    );
    assert_eq!(ok(&env, &["exec", "dep", "hostname"]), &dep[..12]);
    let hosts = ok(&env, &["exec", "srv", "cat", "/etc/hosts"]);
    assert!(
        hosts.contains(&format!("127.0.0.1\t{} dep", &dep[..12])),
        "{hosts}"
    );
    assert_eq!(ok(&env, &["exec", "dep", "cat", "/etc/hosts"]), hosts);
    // Same user and network namespaces, own pid and uts namespaces.
    let ns = |c: &str, k: &str| {
        ok(
            &env,
            &["exec", c, "readlink", &format!("/proc/self/ns/{k}")],
        )
    };
    assert_eq!(ns("srv", "net"), ns("dep", "net"));
    assert_eq!(ns("srv", "user"), ns("dep", "user"));
    assert_ne!(ns("srv", "uts"), ns("dep", "uts"));

    // The target cannot be removed while a dependent exists, not even with -f; without
    // -f podman names the running state first (exit 2).
    let before = snapshot(&env);
    assert_error(&env.run(&["rm", "srv"]), 2, &[&id, "is running"]);
    assert_error(
        &env.run(&["rm", "-f", "srv"]),
        125,
        &[&id, "dependent containers", &dep],
    );
    assert_eq!(snapshot(&env), before);

    // Bad input.
    let bad: &[(&[&str], &[&str])] = &[
        (
            &["--network", "container:nope"],
            &["nope", "no such container"],
        ),
        (&["--network", "container:"], &["requires a value"]),
        (
            &["--network", "container:srv", "--dns", "1.1.1.1"],
            &["conflicting options", "dns"],
        ),
        (
            &["--network", "container:srv", "--add-host", "a:1.2.3.4"],
            &["extra host"],
        ),
        (
            &["--network", "container:srv", "--network-alias", "x"],
            &["--network-alias", "bridge"],
        ),
        (
            &["--network", "container:srv", "--network", "other"],
            &["multiple networks"],
        ),
    ];
    for (flags, needles) in bad {
        let mut full = vec!["create"];
        full.extend_from_slice(flags);
        full.extend_from_slice(&[img, "true"]);
        assert_error(&env.run(&full), 125, needles);
    }
    assert_eq!(snapshot(&env), before);

    // Stopping the target leaves the dependent running (as podman); starting a
    // dependent starts its stopped target first.
    ok(&env, &["stop", "-t", "0", "srv"]);
    assert_eq!(
        ok(&env, &["inspect", "--format", "{{.State.Status}}", "dep"]),
        "running"
    );
    ok(&env, &["stop", "-t", "0", "dep"]);
    ok(&env, &["start", "dep"]);
    assert_eq!(
        ok(&env, &["inspect", "--format", "{{.State.Status}}", "srv"]),
        "running"
    );
    assert_eq!(ns("srv", "net"), ns("dep", "net"));
    ok(&env, &["rm", "-f", "dep"]);
    ok(&env, &["rm", "-f", "srv"]);
}

#[test]
fn ns_mode_joins_a_namespace_file() {
    let (env, img) = setup(require!(TestEnv::try_rootless()));
    start_server(&env, img, "srv", &[]);
    let pid = ok(&env, &["inspect", "--format", "{{.State.Pid}}", "srv"]);
    let path = format!("ns:/proc/{pid}/ns/net");
    let body = wget_from(&env, img, &path);
    assert!(body.starts_with("hello-from-"), "{body}");
    let j = inspect_one(&env, &["srv"]);
    assert_eq!(j["State"]["Pid"].to_string(), pid);
    // Refused: not a namespace (at create), the host's own namespace (at start: a
    // rootless user has no CAP_SYS_ADMIN over the user namespace that owns it).
    let before = snapshot(&env);
    assert_error(
        &env.run(&["create", "--network", "ns:/etc/hostname", img, "true"]),
        125,
        &["/etc/hostname", "not a network namespace"],
    );
    assert_error(
        &env.run(&["create", "--network", "ns:/nonexistent/net", img, "true"]),
        125,
        &["/nonexistent/net"],
    );
    assert_eq!(snapshot(&env), before);
    let out = env.run(&[
        "run",
        "--rm",
        "--network",
        "ns:/proc/self/ns/net",
        img,
        "true",
    ]);
    assert_error(&out, 125, &["host's user namespace", "cannot join"]);
    ok(&env, &["rm", "-f", "srv"]);
}

#[test]
fn rootful_networks_and_container_mode() {
    let (env, img) = setup(require!(TestEnv::try_rootful()));
    ok(
        &env,
        &["network", "create", "--subnet", "10.77.0.0/24", "rnet"],
    );
    ok(
        &env,
        &["create", "--name", "m", "--network", "rnet", img, "true"],
    );
    assert_eq!(networks_of(&env, "m")["rnet"]["IPAddress"], "10.77.0.2");
    let id = start_server(&env, img, "srv", &[]);
    assert_eq!(
        wget_from(&env, img, "container:srv"),
        format!("hello-from-{}", &id[..12])
    );
    ok(&env, &["rm", "-f", "srv", "m"]);
    assert_eq!(ok(&env, &["network", "rm", "rnet"]), "rnet");
}

/// A `--rm` container that others share (`container:NAME`) is kept when it exits, as
/// podman keeps it: its monitor's cleanup makes the same dependents check as `rm`. A
/// foreground run still exits with the container's code and says why on stderr.
#[test]
fn rm_on_exit_keeps_a_container_others_share() {
    let (env, img) = setup(require!(TestEnv::try_rootless()));
    let status = |c: &str| ok(&env, &["inspect", "--format", "{{.State.Status}}", c]);
    // Foreground: the CLI returns only after the monitor's cleanup.
    let fg = std::thread::scope(|s| {
        let t = s.spawn(|| {
            env.run(&[
                "run",
                "--rm",
                "--name",
                "t",
                img,
                "sh",
                "-c",
                "until [ -e /go ]; do sleep 0.1; done; exit 3",
            ])
        });
        until(Duration::from_secs(20), "t runs", || {
            env.run(&["inspect", "--format", "{{.State.Status}}", "t"])
                .stdout_trim()
                == "running"
        });
        let dep = ok(
            &env,
            &[
                "run",
                "-d",
                "--name",
                "dep",
                "--network",
                "container:t",
                img,
                "sleep",
                "1000",
            ],
        );
        ok(&env, &["exec", "t", "touch", "/go"]);
        (t.join().expect("foreground run"), dep)
    });
    let (out, dep) = fg;
    out.assert_code(3);
    let err = out.stderr_str();
    assert!(
        err.contains("removing container") && err.contains("has dependent containers"),
        "{}",
        out.describe()
    );
    assert!(err.contains(&dep), "{}", out.describe());
    assert_eq!(status("t"), "exited");
    assert_eq!(status("dep"), "running");
    // Once the dependent is gone, the target can go too.
    ok(&env, &["rm", "-f", "dep"]);
    ok(&env, &["rm", "t"]);

    // Detached (the monitor is the only one left to clean up): wait for it to be gone.
    ok(
        &env,
        &["run", "-d", "--rm", "--name", "t2", img, "sleep", "2"],
    );
    let monitor = ok(&env, &["inspect", "--format", "{{.State.ConmonPid}}", "t2"]);
    ok(
        &env,
        &[
            "run",
            "-d",
            "--name",
            "dep2",
            "--network",
            "container:t2",
            img,
            "sleep",
            "1000",
        ],
    );
    until(Duration::from_secs(20), "t2's monitor exits", || {
        !std::path::Path::new(&format!("/proc/{monitor}")).exists()
    });
    assert_eq!(status("t2"), "exited");
    assert_eq!(status("dep2"), "running");
    ok(&env, &["rm", "-f", "dep2"]);
    ok(&env, &["rm", "t2"]);
    // A --rm container nobody shares is still removed when it exits.
    ok(&env, &["run", "--rm", "--name", "t3", img, "true"]);
    assert_error(&env.run(&["inspect", "t3"]), 125, &["t3"]);
}

/// `rm --depend`: the containers that share one's namespaces (and theirs) go first,
/// each named by its full ID; without -f running ones stay, with podman's exit code 2.
#[test]
fn rm_depend_removes_dependents_first() {
    let (env, img) = setup(require!(TestEnv::try_rootless()));
    let a = ok(&env, &["run", "-d", "--name", "a", img, "sleep", "1000"]);
    let b = ok(
        &env,
        &[
            "run",
            "-d",
            "--name",
            "b",
            "--network",
            "container:a",
            img,
            "sleep",
            "1000",
        ],
    );
    let c = ok(
        &env,
        &[
            "create",
            "--name",
            "c",
            "--network",
            "container:b",
            img,
            "sleep",
            "1000",
        ],
    );
    // Not forced: only the stopped leaf goes; both running ones are refused.
    let out = env.run(&["rm", "--depend", "a"]);
    out.assert_code(2);
    assert_eq!(out.stdout_trim(), c);
    let err = out.stderr_str();
    assert!(
        err.contains(&format!("cannot remove container {b} as it is running"))
            && err.contains(&format!("cannot remove container {a} as it is running")),
        "{}",
        out.describe()
    );
    // By full ID: "c" alone is also a prefix an image or container ID may start with.
    env.run(&["inspect", &c]).assert_code(125);
    // Forced: dependents first, all by full ID.
    let out = env.run(&["rm", "-f", "--depend", "a"]);
    assert_eq!(out.success().stdout_trim(), format!("{b}\n{a}"));
    assert_eq!(ok(&env, &["ps", "-aq"]), "");
    // Nothing depends on it: just itself, by ID.
    let x = ok(&env, &["create", "--name", "x", img, "true"]);
    assert_eq!(ok(&env, &["rm", "--depend", "x"]), x);
}
