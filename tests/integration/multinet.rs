//! Issue 4, a container on several user-defined networks: one interface per network
//! (eth0, eth1, ... in attach order, as podman names them), each served by a stack of
//! its own in the monitor. It reaches the members of every network by name and
//! address, members of one network still do not reach the other's, resolv.conf names
//! every DNS-enabled gateway, the first network's default route wins, inspect lists
//! every network, a restart keeps the addresses, and nothing outlives `rm`.

use crate::netuser::{network_id, ok, setup, sockets, until_ok};
use crate::require;
use crate::support::json;
use crate::support::processes_mentioning;
use crate::util::TestEnv;

/// A detached web server on `net` answering `body`.
fn web(env: &TestEnv, img: &str, name: &str, net: &str, body: &str) -> String {
    ok(
        env,
        &[
            "run",
            "-d",
            "--name",
            name,
            "--network",
            net,
            img,
            "sh",
            "-c",
            &format!(
                "mkdir -p /www && echo {body} > /www/index.html && exec httpd -f -p 8080 -h /www"
            ),
        ],
    )
}

fn exec_sh(env: &TestEnv, ctr: &str, script: &str) -> crate::util::Output {
    env.run(&["exec", ctr, "sh", "-c", script])
}

/// Gateway of a network as inspect shows it.
fn gateway(env: &TestEnv, net: &str) -> String {
    json(&env.run(&["network", "inspect", net]))[0]["subnets"][0]["gateway"]
        .as_str()
        .expect("gateway")
        .to_string()
}

#[test]
fn a_container_on_two_networks_reaches_both_and_isolation_holds() {
    let (env, img) = setup(require!(TestEnv::try_rootless()));
    ok(&env, &["network", "create", "na"]);
    ok(&env, &["network", "create", "nb"]);
    let (gwa, gwb) = (gateway(&env, "na"), gateway(&env, "nb"));
    let a = web(&env, img, "a", "na", "from-a");
    let b = web(&env, img, "b", "nb", "from-b");
    let ab = ok(
        &env,
        &[
            "run",
            "-d",
            "--name",
            "ab",
            "--network",
            "na",
            "--network",
            "nb",
            img,
            "sleep",
            "1000",
        ],
    );
    let d = json(&env.run(&["inspect", "ab"]));
    let nets = &d[0]["NetworkSettings"]["Networks"];
    let ip = |n: &str| nets[n]["IPAddress"].as_str().expect("ip").to_string();
    let (ab_a, ab_b) = (ip("na"), ip("nb"));
    assert_eq!(nets["na"]["Gateway"], gwa.as_str(), "{nets}");
    assert_eq!(nets["nb"]["Gateway"], gwb.as_str(), "{nets}");
    for n in ["na", "nb"] {
        let mac = nets[n]["MacAddress"].as_str().expect("mac");
        assert_eq!(mac.len(), 17, "{nets}");
        assert_eq!(nets[n]["Aliases"][0], &ab[..12], "{nets}");
    }
    let ip_a = crate::netuser::ip_of(&env, "a", "na");
    let ip_b = crate::netuser::ip_of(&env, "b", "nb");

    // Members of both networks by name and address (the servers may still start).
    for (name, ip, body) in [("a", &ip_a, "from-a"), ("b", &ip_b, "from-b")] {
        for host in [name, ip.as_str()] {
            let t0 = std::time::Instant::now();
            loop {
                let out = exec_sh(&env, "ab", &format!("wget -qO- http://{host}:8080/"));
                if out.code() == Some(0) {
                    assert_eq!(out.stdout_trim(), body);
                    break;
                }
                assert!(t0.elapsed().as_secs() < 20, "{host}: {}", out.describe());
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
        }
    }

    // What the container sees: podman's interface names, one default route per
    // network (the first network's preferred), every gateway as a nameserver, its own
    // addresses in /etc/hosts, and each gateway answering the other network's members.
    let out = exec_sh(
        &env,
        "ab",
        &format!(
            "ip -o -4 addr show; echo ---; ip route; echo ---; ip route get 192.0.2.1; \
             echo ---; cat /etc/resolv.conf; echo ---; cat /etc/hosts; echo ---; \
             nslookup b {gwa}; echo ---; nslookup a {gwb}"
        ),
    );
    let text = out.success().stdout_str();
    let part: Vec<&str> = text.split("---\n").collect();
    assert_eq!(part.len(), 7, "{text}");
    assert!(
        part[0].contains(&format!("eth0    inet {ab_a}/24")),
        "{text}"
    );
    assert!(
        part[0].contains(&format!("eth1    inet {ab_b}/24")),
        "{text}"
    );
    assert!(!part[0].contains("tap0"), "{text}");
    assert!(
        part[1].contains(&format!("default via {gwa} dev eth0  metric 100")),
        "{text}"
    );
    assert!(
        part[1].contains(&format!("default via {gwb} dev eth1  metric 101")),
        "{text}"
    );
    assert!(part[2].contains(&format!("via {gwa} dev eth0")), "{text}");
    assert!(
        part[3].contains(&format!("nameserver {gwa}\nnameserver {gwb}\n")),
        "{text}"
    );
    assert_eq!(part[3].matches("dns.podman").count(), 1, "{text}");
    assert!(part[4].contains(&format!("{ab_a}\t")), "{text}");
    assert!(part[4].contains(&format!("{ab_b}\t")), "{text}");
    assert!(part[5].contains(&format!("Address: {ip_b}")), "{text}");
    assert!(part[6].contains(&format!("Address: {ip_a}")), "{text}");

    // Isolation holds between the single-network members: a reaches nothing of b,
    // and its gateway does not answer b's name (while the same requests from ab work).
    let get = |ip: &str| format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {ip} 8080");
    let out = exec_sh(&env, "a", &format!("{}; nslookup b {gwa}", get(&ip_b)));
    assert!(!out.stdout_str().contains("from-b"), "{}", out.describe());
    assert!(
        !out.stdout_str().contains(&format!("Address: {ip_b}")),
        "{}",
        out.describe()
    );
    let out = exec_sh(&env, "b", &get(&ip_a));
    assert!(!out.stdout_str().contains("from-a"), "{}", out.describe());
    let out = exec_sh(&env, "ab", &get(&ip_b));
    assert!(out.stdout_str().contains("from-b"), "{}", out.describe());

    // A restart keeps the addresses (and the interfaces come back in the same order).
    let (ida, idb) = (network_id(&env, "na"), network_id(&env, "nb"));
    ok(&env, &["restart", "ab"]);
    let out = exec_sh(&env, "ab", "ip -o -4 addr show");
    let text = out.success().stdout_str();
    assert!(text.contains(&format!("eth0    inet {ab_a}/24")), "{text}");
    assert!(text.contains(&format!("eth1    inet {ab_b}/24")), "{text}");
    let body = until_ok(&env, "na", img, "wget -qO- http://a:8080/");
    assert_eq!(body, "from-a");
    assert!(sockets(&env, &ida).contains(&ab[..12].to_string()));
    assert!(sockets(&env, &idb).contains(&ab[..12].to_string()));

    // stop and rm leave no socket and no process behind.
    ok(&env, &["stop", "-t", "0", "ab"]);
    assert!(!sockets(&env, &ida).contains(&ab[..12].to_string()));
    assert!(!sockets(&env, &idb).contains(&ab[..12].to_string()));
    ok(&env, &["rm", "-f", "ab", "a", "b"]);
    for id in [&ab, &a, &b] {
        assert_eq!(processes_mentioning(id), 0, "a process of {id} outlived rm");
    }
    assert!(sockets(&env, &ida).is_empty(), "{:?}", sockets(&env, &ida));
    assert!(sockets(&env, &idb).is_empty(), "{:?}", sockets(&env, &idb));
    assert_eq!(ok(&env, &["network", "rm", "na", "nb"]), "na\nnb");
}

/// Retries `script` in `ctr` until it succeeds; its stdout.
fn exec_until_ok(env: &TestEnv, ctr: &str, script: &str) -> String {
    let t0 = std::time::Instant::now();
    loop {
        let out = exec_sh(env, ctr, script);
        if out.code() == Some(0) {
            return out.stdout_trim();
        }
        assert!(t0.elapsed().as_secs() < 20, "{script}: {}", out.describe());
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// As podman, `network connect`/`disconnect` of a running container act at once: the
/// interface appears (the next free ethN, its default route behind the first
/// network's) or goes, and /etc/hosts and resolv.conf follow.
#[test]
fn connect_and_disconnect_plug_a_running_container() {
    let (env, img) = setup(require!(TestEnv::try_rootless()));
    ok(&env, &["network", "create", "hx"]);
    ok(&env, &["network", "create", "hy"]);
    let (gwx, gwy) = (gateway(&env, "hx"), gateway(&env, "hy"));
    let x = web(&env, img, "x", "hx", "from-x");
    let y = web(&env, img, "y", "hy", "from-y");
    let c = ok(
        &env,
        &[
            "run",
            "-d",
            "--name",
            "c",
            "--network",
            "hx",
            img,
            "sleep",
            "1000",
        ],
    );
    let ip_x = crate::netuser::ip_of(&env, "x", "hx");
    let ip_y = crate::netuser::ip_of(&env, "y", "hy");
    assert_eq!(
        exec_until_ok(&env, "c", "wget -qO- http://x:8080/"),
        "from-x"
    );
    let get = |ip: &str| format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {ip} 8080");
    let out = exec_sh(&env, "c", &get(&ip_y));
    assert!(!out.stdout_str().contains("from-y"), "{}", out.describe());

    // connect: eth1 appears with hy's address, y answers by name and address.
    ok(&env, &["network", "connect", "--alias", "cal", "hy", "c"]);
    let c_y = crate::netuser::ip_of(&env, "c", "hy");
    let c_x = crate::netuser::ip_of(&env, "c", "hx");
    let nets = &json(&env.run(&["inspect", "c"]))[0]["NetworkSettings"]["Networks"];
    assert_eq!(nets["hy"]["Aliases"][0], "cal", "{nets}");
    assert_eq!(nets["hy"]["Gateway"], gwy.as_str(), "{nets}");
    assert_eq!(
        exec_until_ok(&env, "c", &format!("wget -qO- http://{ip_y}:8080/")),
        "from-y"
    );
    let out = exec_sh(
        &env,
        "c",
        "wget -qO- http://y:8080/; echo ---; ip -o -4 addr show; echo ---; ip route; \
         echo ---; ip route get 192.0.2.1; echo ---; cat /etc/resolv.conf; echo ---; \
         cat /etc/hosts",
    );
    let text = out.success().stdout_str();
    let part: Vec<&str> = text.split("---\n").collect();
    assert_eq!(part.len(), 6, "{text}");
    assert_eq!(part[0].trim(), "from-y", "{text}");
    assert!(
        part[1].contains(&format!("eth0    inet {c_x}/24")),
        "{text}"
    );
    assert!(
        part[1].contains(&format!("eth1    inet {c_y}/24")),
        "{text}"
    );
    assert!(
        part[2].contains(&format!("default via {gwy} dev eth1  metric 101")),
        "{text}"
    );
    assert!(part[3].contains(&format!("via {gwx} dev eth0")), "{text}");
    assert!(
        part[4].contains(&format!("nameserver {gwx}\nnameserver {gwy}\n")),
        "{text}"
    );
    assert!(part[5].contains(&format!("{c_y}\t")), "{text}");
    // y learns c's new address: in its /etc/hosts and from its gateway's DNS.
    let seen = ok(&env, &["exec", "y", "cat", "/etc/hosts"]);
    let line = format!("{c_y}\tc cal");
    assert!(seen.lines().any(|l| l == line), "{seen}");
    let out = exec_sh(&env, "y", &format!("nslookup cal {gwy}"));
    assert!(
        out.stdout_str().contains(&format!("Address: {c_y}")),
        "{}",
        out.describe()
    );

    // Connecting again is refused and changes nothing.
    let before = crate::support::snapshot(&env);
    crate::support::assert_error(
        &env.run(&["network", "connect", "hy", "c"]),
        125,
        &["already connected", "hy"],
    );
    assert_eq!(crate::support::snapshot(&env), before);

    // disconnect: eth0 goes with hx's address, route, nameserver and hosts line; x is
    // out of reach, y still answers; c's socket leaves hx's run directory.
    let (idx, idy) = (network_id(&env, "hx"), network_id(&env, "hy"));
    assert!(sockets(&env, &idx).contains(&c[..12].to_string()));
    ok(&env, &["network", "disconnect", "hx", "c"]);
    assert!(!sockets(&env, &idx).contains(&c[..12].to_string()));
    assert!(sockets(&env, &idy).contains(&c[..12].to_string()));
    let nets = &json(&env.run(&["inspect", "c"]))[0]["NetworkSettings"]["Networks"];
    assert!(nets.get("hx").is_none(), "{nets}");
    let out = exec_sh(
        &env,
        "c",
        "ip -o -4 addr show; echo ---; ip route; echo ---; cat /etc/resolv.conf; \
         echo ---; cat /etc/hosts",
    );
    let text = out.success().stdout_str();
    assert!(!text.contains("eth0"), "{text}");
    assert!(!text.contains(c_x.as_str()), "{text}");
    assert!(!text.contains(&format!("nameserver {gwx}")), "{text}");
    assert!(text.contains(&format!("nameserver {gwy}")), "{text}");
    let out = exec_sh(&env, "c", &get(&ip_x));
    assert!(!out.stdout_str().contains("from-x"), "{}", out.describe());
    assert_eq!(
        exec_until_ok(&env, "c", "wget -qO- http://y:8080/"),
        "from-y"
    );
    let seen = ok(&env, &["exec", "x", "cat", "/etc/hosts"]);
    assert!(!seen.contains(&format!("{c_x}\t")), "{seen}");

    // At the next start the interfaces are numbered afresh, addresses kept.
    ok(&env, &["stop", "-t", "0", "c"]);
    ok(&env, &["start", "c"]);
    let text = exec_until_ok(&env, "c", "ip -o -4 addr show");
    assert!(text.contains(&format!("eth0    inet {c_y}/24")), "{text}");
    assert!(!text.contains("eth1"), "{text}");

    // Off every network, it keeps its bridge mode (as podman): connected again, eth0
    // comes back on hx.
    ok(&env, &["network", "disconnect", "hy", "c"]);
    let text = exec_until_ok(&env, "c", "ip -o -4 addr show");
    assert!(!text.contains("eth"), "{text}");
    ok(&env, &["network", "connect", "hx", "c"]);
    let c_x = crate::netuser::ip_of(&env, "c", "hx");
    let text = exec_until_ok(&env, "c", "ip -o -4 addr show");
    assert!(text.contains(&format!("eth0    inet {c_x}/24")), "{text}");
    assert_eq!(
        exec_until_ok(&env, "c", "wget -qO- http://x:8080/"),
        "from-x"
    );

    ok(&env, &["rm", "-f", "c", "x", "y"]);
    for id in [&c, &x, &y] {
        assert_eq!(processes_mentioning(id), 0, "a process of {id} outlived rm");
    }
    assert!(sockets(&env, &idx).is_empty(), "{:?}", sockets(&env, &idx));
    assert!(sockets(&env, &idy).is_empty(), "{:?}", sockets(&env, &idy));
}

/// A plug that fails inside the container (here: the interface name is taken) is one
/// error line, and the container's networks, files and the network's members are as
/// before.
#[test]
fn a_failed_plug_changes_nothing() {
    let (env, img) = setup(require!(TestEnv::try_rootless()));
    ok(&env, &["network", "create", "px"]);
    ok(&env, &["network", "create", "py"]);
    // A member of py, so its members file exists and names someone.
    ok(
        &env,
        &["create", "--name", "e", "--network", "py", img, "true"],
    );
    ok(
        &env,
        &[
            "run",
            "-d",
            "--name",
            "d",
            "--network",
            "px",
            "--cap-add",
            "NET_ADMIN",
            img,
            "sh",
            "-c",
            "ip link set lo down && ip link set lo name eth1 && exec sleep 1000",
        ],
    );
    let files = || {
        exec_until_ok(
            &env,
            "d",
            "ip link show eth1 >/dev/null && cat /etc/hosts /etc/resolv.conf",
        )
    };
    let before_files = files();
    let before_nets = json(&env.run(&["inspect", "d"]))[0]["NetworkSettings"]["Networks"].clone();
    let members = |net: &str| {
        let id = network_id(&env, net);
        std::fs::read_to_string(
            env.runtime_dir
                .join("skiff/networks")
                .join(&id[..12])
                .join("members.json"),
        )
        .unwrap_or_default()
    };
    let before_members = members("py");
    assert!(before_members.contains("\"e\""), "{before_members}");
    let before = crate::support::snapshot(&env);
    crate::support::assert_error(
        &env.run(&["network", "connect", "py", "d"]),
        125,
        &["py", "eth1", "already has an interface"],
    );
    assert_eq!(crate::support::snapshot(&env), before);
    let nets = json(&env.run(&["inspect", "d"]))[0]["NetworkSettings"]["Networks"].clone();
    assert_eq!(nets, before_nets);
    assert_eq!(files(), before_files);
    assert_eq!(members("py"), before_members);
    // The container is still on px only and still runs.
    let cfg = ok(&env, &["inspect", "--format", "{{.State.Status}}", "d"]);
    assert_eq!(cfg, "running");
    ok(&env, &["rm", "-f", "d", "e"]);
    assert_eq!(ok(&env, &["network", "rm", "px", "py"]), "px\npy");
}

/// A container taken off every network starts with loopback only (its init is told
/// there are no interfaces to create), keeps its bridge mode (it can be connected
/// again, as in podman), and is removed cleanly; a `--network none` one is not
/// connected.
#[test]
fn off_every_network_it_starts_with_loopback_only() {
    let (env, img) = setup(require!(TestEnv::try_rootless()));
    ok(&env, &["network", "create", "lone"]);
    let id = ok(
        &env,
        &[
            "create",
            "--name",
            "l",
            "--network",
            "lone",
            img,
            "cat",
            "/proc/net/dev",
        ],
    );
    ok(&env, &["network", "disconnect", "lone", "l"]);
    let out = env
        .cmd(&["start", "-a", "l"])
        .timeout(std::time::Duration::from_secs(30))
        .output();
    let text = out.success().stdout_str();
    assert!(text.contains("lo:"), "{text}");
    assert!(!text.contains("eth0") && !text.contains("tap0"), "{text}");
    // It keeps its bridge mode: connected again (stopped), it gets eth0 back at start.
    ok(&env, &["network", "connect", "lone", "l"]);
    let text = env.run(&["start", "-a", "l"]).success().stdout_str();
    assert!(text.contains("eth0:"), "{text}");
    // A container created with --network none is not connected.
    ok(
        &env,
        &["create", "--name", "n", "--network", "none", img, "true"],
    );
    let before = crate::support::snapshot(&env);
    crate::support::assert_error(
        &env.run(&["network", "connect", "lone", "n"]),
        125,
        &["network mode none"],
    );
    assert_eq!(crate::support::snapshot(&env), before);
    ok(&env, &["rm", "l", "n"]);
    assert_eq!(processes_mentioning(&id), 0);
    assert_eq!(ok(&env, &["network", "rm", "lone"]), "lone");
}

/// As root (no user namespace of the container's own: the plug helper joins only its
/// network namespace), two networks at start and a network plugged in and out.
#[test]
fn rootful_two_networks_and_hot_plug() {
    let (env, img) = setup(require!(TestEnv::try_rootful()));
    for (net, subnet) in [
        ("ra", "10.78.0.0/24"),
        ("rb", "10.78.1.0/24"),
        ("rc", "10.78.2.0/24"),
    ] {
        ok(&env, &["network", "create", "--subnet", subnet, net]);
    }
    // Attach order, not the networks' names, numbers the interfaces and orders the
    // container's own lines in /etc/hosts.
    let out = env.run(&[
        "run",
        "--rm",
        "--network",
        "rc,ra",
        img,
        "sh",
        "-c",
        "ip -o -4 addr show; cat /etc/hosts",
    ]);
    let text = out.success().stdout_str();
    assert!(text.contains("eth0    inet 10.78.2.2/24"), "{text}");
    assert!(text.contains("eth1    inet 10.78.0.2/24"), "{text}");
    let (c, a) = (text.find("10.78.2.2\t"), text.find("10.78.0.2\t"));
    assert!(c.is_some() && a.is_some() && c < a, "{text}");
    let id = ok(
        &env,
        &[
            "run",
            "-d",
            "--name",
            "r",
            "--network",
            "ra,rb",
            img,
            "sleep",
            "1000",
        ],
    );
    let addrs = || exec_until_ok(&env, "r", "ip -o -4 addr show");
    let text = addrs();
    assert!(text.contains("eth0    inet 10.78.0.2/24"), "{text}");
    assert!(text.contains("eth1    inet 10.78.1.2/24"), "{text}");
    ok(&env, &["network", "connect", "rc", "r"]);
    let text = addrs();
    assert!(text.contains("eth2    inet 10.78.2.2/24"), "{text}");
    ok(&env, &["network", "disconnect", "ra", "r"]);
    let text = addrs();
    assert!(!text.contains("10.78.0.2"), "{text}");
    assert!(text.contains("eth1    inet 10.78.1.2/24"), "{text}");
    assert!(text.contains("eth2    inet 10.78.2.2/24"), "{text}");
    ok(&env, &["rm", "-f", "r"]);
    assert_eq!(processes_mentioning(&id), 0);
    assert_eq!(ok(&env, &["network", "rm", "ra", "rb", "rc"]), "ra\nrb\nrc");
}
