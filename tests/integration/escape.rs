//! Issue 7, escape checks run inside containers: each must fail as it does under podman.
//! Kernel interfaces (/proc/sysrq-trigger, modules, bpf, userfaultfd, /proc/kcore), the
//! skiff binary and the monitor through /proc (the runc CVE-2019-5736 class: an `--init`
//! reaper and the `exec` helper are skiff processes inside the container's pid
//! namespace), /proc/self/root, a symlink in the image that a volume is mounted through,
//! and a mount made in a nested user namespace.

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::require;
use crate::seccomp::fixture::{link_image, probe_image, Podman};
use crate::util::{skiff_bin, TestEnv};

fn sha256(p: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(p).expect("read binary")))
}

/// Tries the kernel's sensitive interfaces; one `what=outcome` line each.
const KERNEL_SCRIPT: &str = r#"
(echo h > /proc/sysrq-trigger) 2>/dev/null && echo sysrq=written || echo sysrq=refused
echo kcore=$(cat /proc/kcore 2>/dev/null | wc -c)
echo keys=$(cat /proc/keys 2>/dev/null | wc -c)
(echo 1 > /proc/sys/kernel/sysrq) 2>/dev/null && echo proc_sys=written || echo proc_sys=refused
(mount -t proc proc /mnt) 2>/dev/null && echo remount_proc=done || echo remount_proc=refused
sysprobe init_module finit_module delete_module bpf userfaultfd kexec_load perf_event_open
"#;

#[test]
fn kernel_interfaces_are_out_of_reach_as_under_podman() {
    let image = require!(probe_image());
    let env = TestEnv::rootless();
    let out = env.run(&["run", "--rm", image, "sh", "-c", KERNEL_SCRIPT]);
    out.success();
    let ours = out.stdout_str();
    for want in [
        "sysrq=refused",
        "kcore=0",
        "keys=0",
        "proc_sys=refused",
        "init_module EPERM",
        "finit_module EPERM",
        "delete_module EPERM",
        "bpf EPERM",
        "userfaultfd EPERM",
        "kexec_load EPERM",
        "perf_event_open EPERM",
    ] {
        assert!(ours.lines().any(|l| l == want), "{want} missing:\n{ours}");
    }
    let podman = require!(Podman::new(&env));
    require!(podman.pull(image));
    let theirs = podman.run(&["run", "--rm", image, "sh", "-c", KERNEL_SCRIPT]);
    theirs.success();
    assert_eq!(ours, theirs.stdout_str(), "skiff (left) and podman (right)");
}

/// Looks at every process the container can see: whose binary is it, and can it be
/// read or written through /proc/PID/exe? Prints `pid:exe:read:write` for the others
/// than itself, or `none`.
const PROC_SCRIPT: &str = r#"
for p in /proc/[0-9]*; do
  n=${p#/proc/}
  [ "$n" = "$$" ] && continue
  [ -e $p/exe ] || [ -L $p/exe ] || continue
  l=$(readlink $p/exe 2>/dev/null) || l=denied
  (cat $p/exe > /dev/null) 2>/dev/null && r=read || r=denied
  (echo x >> $p/exe) 2>/dev/null && w=written || w=denied
  echo "$n:$l:$r:$w"
done
echo ppid=$(sed -n 's/^PPid:\t*//p' /proc/1/status)
(echo x >> /proc/self/exe) 2>/dev/null && echo self_exe=written || echo self_exe=refused
a=__moni; b=tor; c=--run; d=root; seen=
for f in /proc/[0-9]*/cmdline; do
  case "$(tr '\0' ' ' < $f 2>/dev/null)" in *"$a$b"*|*"$c$d"*) seen="$seen $f";; esac
done
echo monitor=${seen:-invisible}
"#;

#[test]
fn skiff_binary_and_monitor_are_unreachable_through_proc() {
    let image = require!(probe_image());
    let env = TestEnv::rootless();
    let bin = skiff_bin();
    let before = sha256(&bin);
    // --init: PID 1 is skiff's own reaper, which never execs: the host binary is its exe.
    let out = env.run(&["run", "--rm", "--init", image, "sh", "-c", PROC_SCRIPT]);
    out.success();
    let text = out.stdout_str();
    assert!(
        text.contains("\n1:denied:denied:denied\n") || text.starts_with("1:denied:denied:denied\n"),
        "the --init reaper's exe must be closed to the container:\n{text}"
    );
    assert!(text.contains("ppid=0\n"), "{text}");
    assert!(text.contains("self_exe=refused\n"), "{text}");
    assert!(text.contains("monitor=invisible\n"), "{text}");
    // Without --init, the only other process is the shell's own child (busybox).
    let out = env.run(&["run", "--rm", image, "sh", "-c", PROC_SCRIPT]);
    out.success();
    let text = out.stdout_str();
    assert!(!text.contains("skiff"), "{text}");
    assert!(text.contains("monitor=invisible\n"), "{text}");

    // exec: the helper that joins the container is skiff too, until it execs. A watcher
    // inside scans /proc while commands are exec'd and records any skiff binary it sees.
    let watcher = r#"
touch /tmp/scans
while :; do
  for p in /proc/[0-9]*; do
    l=$(readlink $p/exe 2>/dev/null) && case "$l" in *busybox*|*sysprobe*) ;; *) echo "$p $l" >> /tmp/found;; esac
    (cat $p/exe > /dev/null) 2>/dev/null || true
  done
  echo >> /tmp/scans
done
"#;
    let id = env.run(&["run", "-d", image, "sh", "-c", watcher]);
    id.success();
    let id = id.stdout_trim();
    for _ in 0..15 {
        env.run(&["exec", &id, "true"]).success();
    }
    let found = env.run(&[
        "exec",
        &id,
        "sh",
        "-c",
        "cat /tmp/found 2>/dev/null; wc -l < /tmp/scans",
    ]);
    found.success();
    let text = found.stdout_str();
    let lines: Vec<&str> = text.lines().collect();
    let scans: usize = lines
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0);
    assert!(scans > 0, "the watcher never scanned:\n{text}");
    assert_eq!(
        lines.len(),
        1,
        "the container saw a foreign binary:\n{text}"
    );
    env.run(&["rm", "-f", &id]).success();
    assert_eq!(sha256(&bin), before, "the skiff binary changed");
}

#[test]
fn proc_root_and_volume_symlinks_stay_inside() {
    let env = TestEnv::rootless();
    // A host directory the container must never reach, with a file in it.
    let victim = env.dir.join("victim");
    std::fs::create_dir(&victim).expect("mkdir victim");
    std::fs::write(victim.join("secret"), "host secret\n").expect("write secret");
    env.give(&victim);
    let v = victim.display().to_string();
    let image = require!(link_image("escape-link", &v));
    let script = format!(
        "cat /proc/self/root{v}/secret 2>/dev/null || echo self_root=inside; \
         cat /proc/1/root{v}/secret 2>/dev/null || echo pid1_root=inside; \
         ls /proc/self/root/bin/sysprobe >/dev/null && echo root=container"
    );
    let out = env.run(&["run", "--rm", &image, "sh", "-c", &script]);
    out.success();
    assert_eq!(
        out.stdout_str(),
        "self_root=inside\npid1_root=inside\nroot=container\n"
    );
    // The image's /data is a symlink to the victim's host path (absolute, and relative
    // with more `..` than the rootfs is deep): a volume mounted at /data/sub lands at
    // that path inside the container's root, created there as podman (runc's
    // securejoin) creates it, never in the host directory.
    let src = env.dir.join("volsrc");
    std::fs::create_dir(&src).expect("mkdir volsrc");
    std::fs::write(src.join("payload"), "from the volume\n").expect("write payload");
    env.give(&src);
    let vol = format!("{}:/data/sub", src.display());
    let rel_target = format!("../../../../../../../..{v}");
    let rel_image = require!(link_image("escape-link-rel", &rel_target));
    for (img, written) in [(&image, "written"), (&rel_image, "written-rel")] {
        let script = format!(
            "cat /data/sub/payload; echo x > /data/sub/{written}; ls /data; \
             readlink /data; ls {v}; grep -c ' {v}/sub ' /proc/self/mountinfo"
        );
        let out = env.run(&["run", "--rm", "-v", &vol, img, "sh", "-c", &script]);
        out.success();
        let link = if img == &image {
            v.clone()
        } else {
            rel_target.clone()
        };
        assert_eq!(
            out.stdout_str(),
            format!("from the volume\nsub\n{link}\nsub\n1\n"),
            "{}",
            out.describe()
        );
        assert!(src.join(written).exists(), "the volume was not mounted");
    }
    let mut host: Vec<String> = std::fs::read_dir(&victim)
        .expect("read victim")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    host.sort();
    assert_eq!(host, ["secret"], "the host directory changed");
}

#[test]
fn nested_user_namespace_mounts_stay_in_the_container() {
    let image = require!(probe_image());
    let env = TestEnv::rootless();
    let src = env.dir.join("vol");
    std::fs::create_dir(&src).expect("mkdir vol");
    env.give(&src);
    let vol = format!("{}:/vol", src.display());
    // As under podman, the default profile lets a nested user namespace mount things;
    // they stay in its own mount namespace.
    let script = "unshare -Urm sh -c 'mount -t tmpfs t /vol && echo in > /vol/f && \
                  mount --bind /bin /mnt && echo mounted'; \
                  ls /vol; ls /mnt | wc -l";
    let out = env.run(&["run", "--rm", "-v", &vol, image, "sh", "-c", script]);
    out.success();
    assert_eq!(out.stdout_str(), "mounted\n0\n", "{}", out.describe());
    assert_eq!(std::fs::read_dir(&src).expect("read vol").count(), 0);
    let podman = require!(Podman::new(&env));
    require!(podman.pull(image));
    let theirs = podman.run(&["run", "--rm", "-v", &vol, image, "sh", "-c", script]);
    assert_eq!(
        theirs.stdout_str(),
        out.stdout_str(),
        "{}",
        theirs.describe()
    );
}
