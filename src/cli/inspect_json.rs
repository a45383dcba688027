//! The JSON `inspect` prints, with podman's field names and layout so `jq` scripts and
//! `--format '{{.State.Pid}}'` written for podman work unchanged. Fields skiff has no
//! counterpart for carry podman's zero values; the deliberate omissions are listed in
//! tests/integration/formats.rs.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::format::rfc3339;
use super::Ctx;
use crate::runtime::ContainerConfig;
use crate::storage::containers::{ContainerRecord, State};
use crate::storage::images::ImageRecord;
use crate::storage::Store;

/// podman's zero time, shown for times that never happened.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

fn time_or_zero(t: Option<i64>) -> String {
    t.map(rfc3339).unwrap_or_else(|| ZERO_TIME.into())
}

/// One `Mounts[]` entry, from a spec mount the user asked for.
fn mount_json(m: &oci_spec::runtime::Mount, volumes_dir: &std::path::Path) -> Value {
    let opts = m.options().clone().unwrap_or_default();
    let src = m.source().clone().unwrap_or_default();
    let rw = !opts.iter().any(|o| o == "ro");
    let propagation = opts
        .iter()
        .find(|o| {
            [
                "private", "rprivate", "shared", "rshared", "slave", "rslave",
            ]
            .contains(&o.as_str())
        })
        .cloned()
        .unwrap_or_else(|| "rprivate".into());
    let typ = m.typ().clone().unwrap_or_else(|| "bind".into());
    // A named volume is a bind of <root>/volumes/<name>/_data.
    let volume = src.strip_prefix(volumes_dir).ok().and_then(|rest| {
        let mut c = rest.components();
        let name = c.next()?.as_os_str().to_string_lossy().to_string();
        (c.next()?.as_os_str() == "_data").then_some(name)
    });
    let mut v = json!({
        "Type": if volume.is_some() { "volume" } else { typ.as_str() },
        "Source": src,
        "Destination": m.destination(),
        "Driver": if volume.is_some() { "local" } else { "" },
        "Mode": "",
        "Options": opts.iter().filter(|o| !["ro", "rw", "copyup"].contains(&o.as_str())).collect::<Vec<_>>(),
        "RW": rw,
        "Propagation": propagation,
    });
    if let Some(n) = volume {
        v["Name"] = json!(n);
    }
    v
}

fn restart_policy(p: Option<&str>) -> Value {
    let p = p.unwrap_or("no");
    let (name, max) = match p.split_once(':') {
        Some((n, m)) => (n, m.parse::<i64>().unwrap_or(0)),
        None => (p, 0),
    };
    json!({"Name": if name == "no" { "" } else { name }, "MaximumRetryCount": max})
}

fn tmpfs_map(tmpfs: &[String]) -> BTreeMap<String, String> {
    tmpfs
        .iter()
        .map(|t| {
            let (d, o) = t.split_once(':').unwrap_or((t, ""));
            let o = if o.is_empty() {
                "rw,noexec,nosuid,nodev".to_string()
            } else {
                o.to_string()
            };
            (d.to_string(), o)
        })
        .collect()
}

pub fn container_json(ctx: &Ctx, c: &ContainerRecord) -> Value {
    let cfg: Option<ContainerConfig> = serde_json::from_str(&c.config).ok();
    let dir = ctx.paths.container_dir(&c.id);
    let spec = crate::runtime::bundle::load_spec(&dir).ok();
    let process = spec.as_ref().and_then(|s| s.process().clone());
    let volumes_dir = ctx.paths.root.join("volumes");
    let mounts: Vec<Value> = spec
        .as_ref()
        .and_then(|s| s.mounts().clone())
        .unwrap_or_default()
        .iter()
        .filter(|m| {
            matches!(m.typ().as_deref(), Some("bind"))
                && !m
                    .source()
                    .as_ref()
                    .is_some_and(|s| s.starts_with(&dir) || s.as_os_str() == "/sys")
        })
        .map(|m| mount_json(m, &volumes_dir))
        .collect();
    let o = cfg.as_ref().map(|c| c.options.clone()).unwrap_or_default();
    let ports = cfg.as_ref().map(|c| c.ports.clone()).unwrap_or_default();
    let caps =
        |which: fn(&oci_spec::runtime::LinuxCapabilities) -> Option<Vec<String>>| -> Vec<String> {
            let mut v: Vec<String> = process
                .as_ref()
                .and_then(|p| p.capabilities().as_ref())
                .and_then(&which)
                .unwrap_or_default();
            v.sort();
            v
        };
    let ulimits: Vec<Value> = process
        .as_ref()
        .and_then(|p| p.rlimits().clone())
        .unwrap_or_default()
        .iter()
        .map(|r| {
            let name = format!("{:?}", r.typ())
                .to_uppercase()
                .replacen("RLIMIT", "RLIMIT_", 1);
            json!({"Name": name, "Soft": r.soft(), "Hard": r.hard()})
        })
        .collect();
    let network = crate::runtime::networks::inspect_mode(o.network.as_deref());
    let stop_signal = o
        .stop_signal
        .as_deref()
        .and_then(|s| crate::runtime::signal::parse(s).ok())
        .map(|s| s as i32)
        .unwrap_or(15);
    let labels = cfg.as_ref().map(|c| c.labels.clone()).unwrap_or_default();
    let annotations = cfg
        .as_ref()
        .map(|c| c.annotations.clone())
        .unwrap_or_default();
    let mut volumes_cfg = BTreeMap::new();
    for m in &mounts {
        if m["Type"] == "volume" {
            if let Some(d) = m["Destination"].as_str() {
                volumes_cfg.insert(d.to_string(), json!({}));
            }
        }
    }
    let state = json!({
        "OciVersion": spec.as_ref().map(|s| s.version().clone()).unwrap_or_default(),
        "Status": c.state.as_str(),
        "Running": c.state == State::Running,
        "Paused": c.state == State::Paused,
        "Restarting": false,
        "OOMKilled": false,
        "Dead": false,
        "Pid": c.pid.unwrap_or(0),
        "ConmonPid": c.monitor_pid.unwrap_or(0),
        "ExitCode": c.exit_code.unwrap_or(0),
        "Error": "",
        "StartedAt": time_or_zero(c.started),
        "FinishedAt": time_or_zero(c.finished),
        "Health": {"Status": "", "FailingStreak": 0, "Log": Value::Null},
        "CheckpointedAt": ZERO_TIME,
        "RestoredAt": ZERO_TIME,
    });
    let config = json!({
        "Hostname": spec.as_ref().and_then(|s| s.hostname().clone()).unwrap_or_default(),
        "Domainname": "",
        "User": o.user.clone().unwrap_or_default(),
        "AttachStdin": o.interactive,
        "AttachStdout": false,
        "AttachStderr": false,
        "Tty": o.tty,
        "OpenStdin": o.interactive,
        "StdinOnce": false,
        "Env": process.as_ref().and_then(|p| p.env().clone()).unwrap_or_default(),
        "Cmd": c.command,
        "Image": c.image_name,
        "Volumes": if volumes_cfg.is_empty() { Value::Null } else { json!(volumes_cfg) },
        "WorkingDir": process.as_ref().map(|p| p.cwd().display().to_string()).unwrap_or_default(),
        "Entrypoint": o.entrypoint.clone().unwrap_or_default(),
        "OnBuild": Value::Null,
        "Labels": labels,
        "Annotations": annotations,
        "StopSignal": stop_signal,
        "StopTimeout": o.stop_timeout.unwrap_or(10),
        "Timeout": 0,
        "CreateCommand": [],
        "Umask": "0022",
        "Passwd": true,
        "HealthcheckOnFailureAction": "none",
        "sdNotifyMode": o.sdnotify.clone().unwrap_or_else(|| "container".into()),
    });
    let (userns_mode, id_mappings) =
        crate::runtime::userns_mode::inspect_view(&o.security, spec.as_ref(), &ctx.paths);
    let mut host_config = json!({
            "Binds": o.volumes,
            "CgroupManager": "cgroupfs",
            "CgroupMode": "private",
            "ContainerIDFile": o.cidfile.clone().unwrap_or_default(),
            "LogConfig": {
                "Type": o.log_driver.clone().unwrap_or_else(|| "k8s-file".into()),
                "Config": Value::Null,
                "Path": dir.join("ctr.log"),
                "Tag": "",
                "Size": o.log_opts.iter().find_map(|x| x.strip_prefix("max-size=")).unwrap_or("0B"),
            },
            "NetworkMode": network,
            "PortBindings": crate::network::portspec::inspect_map(&ports),
            "RestartPolicy": restart_policy(o.restart.as_deref()),
            "AutoRemove": o.rm,
            "VolumeDriver": "",
            "VolumesFrom": Value::Null,
            "CapAdd": [],
            "CapDrop": [],
            "Dns": o.dns,
            "DnsOptions": [],
            "DnsSearch": o.dns_search,
            "ExtraHosts": o.add_hosts,
            "GroupAdd": o.group_add,
            "IpcMode": "private",
            "Cgroup": "",
            "Cgroups": "default",
            "Links": Value::Null,
            "OomScoreAdj": 0,
            "PidMode": "private",
            "Privileged": o.security.privileged,
            "PublishAllPorts": o.publish_all,
            "ReadonlyRootfs": o.read_only,
            "SecurityOpt": crate::runtime::security::inspect_security_opt(&o.security),
            "Tmpfs": tmpfs_map(&o.tmpfs),
            "UTSMode": "private",
            "UsernsMode": userns_mode,
            "ShmSize": o.shm_size.as_deref().and_then(crate::runtime::mount_flag::parse_size).unwrap_or(65536000),
            "Runtime": "oci",
            "ConsoleSize": [0, 0],
            "Isolation": "",
    });
    // Resource settings skiff does not apply (cgroups v1 rootless): podman's zeros.
    let unset = json!({
        "CpuShares": 0, "Memory": 0, "NanoCpus": 0, "CgroupParent": "",
        "BlkioWeight": 0, "BlkioWeightDevice": Value::Null,
        "BlkioDeviceReadBps": Value::Null, "BlkioDeviceWriteBps": Value::Null,
        "BlkioDeviceReadIOps": Value::Null, "BlkioDeviceWriteIOps": Value::Null,
        "CpuPeriod": 0, "CpuQuota": 0, "CpuRealtimePeriod": 0, "CpuRealtimeRuntime": 0,
        "CpusetCpus": "", "CpusetMems": "", "Devices": [], "DiskQuota": 0,
        "KernelMemory": 0, "MemoryReservation": 0, "MemorySwap": 0,
        "MemorySwappiness": 0, "OomKillDisable": false, "PidsLimit": 0,
        "Ulimits": ulimits, "CpuCount": 0, "CpuPercent": 0,
        "IOMaximumIOps": 0, "IOMaximumBandwidth": 0, "CgroupConf": Value::Null,
    });
    if let (Some(h), Value::Object(z)) = (host_config.as_object_mut(), unset) {
        h.extend(z);
    }
    if let (Some(h), Some((u, g))) = (host_config.as_object_mut(), id_mappings) {
        h.insert("IDMappings".into(), json!({"UidMap": u, "GidMap": g}));
    }
    let network_settings = json!({
        "EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0,
        "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
        "MacAddress": "", "Bridge": "", "SandboxID": "", "HairpinMode": false,
        "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0,
        "Ports": crate::network::portspec::inspect_map(&ports), "SandboxKey": "",
        "Networks": super::network::container_networks_json(ctx, &c.id, o.network.as_deref()),
    });
    let graph_driver = json!({
        "Name": "overlay",
        "Data": {"UpperDir": dir.join("upper"), "WorkDir": dir.join("work"), "MergedDir": dir.join("rootfs")},
    });
    json!({
        "Id": c.id,
        "Created": rfc3339(c.created),
        "Path": c.command.first(),
        "Args": c.command.iter().skip(1).collect::<Vec<_>>(),
        "State": state,
        "Image": c.image_id,
        "ImageDigest": "",
        "ImageName": c.image_name,
        "Rootfs": "",
        "Pod": "",
        "ResolvConfPath": dir.join("resolv.conf"),
        "HostnamePath": dir.join("hostname"),
        "HostsPath": dir.join("hosts"),
        "StaticDir": dir,
        "OCIConfigPath": dir.join("config.json"),
        "OCIRuntime": "skiff",
        "ConmonPidFile": "",
        "PidFile": "",
        "Name": c.name,
        "RestartCount": c.restarts,
        "Driver": "overlay",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "EffectiveCaps": caps(|c| c.effective().as_ref().map(|s| s.iter().map(|x| format!("CAP_{x}")).collect())),
        "BoundingCaps": caps(|c| c.bounding().as_ref().map(|s| s.iter().map(|x| format!("CAP_{x}")).collect())),
        "ExecIDs": [],
        "GraphDriver": graph_driver,
        "Mounts": mounts,
        "Dependencies": o.network.as_deref().and_then(crate::runtime::networks::container_target).into_iter().collect::<Vec<_>>(),
        "NetworkSettings": network_settings,
        "Namespace": "",
        "IsInfra": false,
        "IsService": false,
        "Config": config,
        "HostConfig": host_config,
    })
}

pub fn image_json(store: &Store, img: &ImageRecord) -> anyhow::Result<Value> {
    let config: Value = serde_json::from_slice(&store.read_blob(&img.config_digest())?)?;
    let repo_digests: Vec<String> = img
        .names
        .iter()
        .map(|n| {
            let repo = n
                .rsplit_once(':')
                .filter(|(_, t)| !t.contains('/'))
                .map(|(r, _)| r)
                .unwrap_or(n);
            format!("{repo}@{}", img.manifest_digest)
        })
        .collect();
    let cfg = config.get("config").cloned().unwrap_or(json!({}));
    let labels = cfg.get("Labels").cloned().unwrap_or(Value::Null);
    let s = |k: &str| config.get(k).cloned().unwrap_or(json!(""));
    Ok(json!({
        "Id": img.id,
        "Digest": img.manifest_digest,
        "RepoTags": img.names,
        "RepoDigests": repo_digests,
        "Parent": "",
        "Comment": s("comment"),
        "Created": img.created,
        "Config": cfg,
        "Version": s("docker_version"),
        "Author": s("author"),
        "Architecture": img.arch,
        "Os": img.os,
        "Size": img.size,
        "VirtualSize": img.size,
        "GraphDriver": {
            "Name": "overlay",
            "Data": {"LowerDir": img.layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>().join(":")},
        },
        "RootFS": {"Type": "layers", "Layers": img.layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>()},
        "Labels": labels,
        "Annotations": {},
        "ManifestType": img.manifest_media_type,
        "User": cfg.get("User").cloned().unwrap_or(json!("")),
        "History": config.get("history").cloned().unwrap_or(json!([])),
        "NamesHistory": img.names,
    }))
}
