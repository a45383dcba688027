//! The container's init, from clone to execve. Runs in the child of a clone with the
//! container's namespaces, in a copy of the single-threaded monitor. Failures travel back
//! over the sync socket as "<exit code>\n<message>"; a successful execve closes the
//! socket (close-on-exec), which the parent reads as "started".

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::fcntl::{open, OFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::Mode;
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use super::launch::ContainerIo;
use super::process::{self, Fail};
use super::spec::{INIT_ANNOTATION, USER_ANNOTATION, USER_IMPLICIT_ANNOTATION};
use super::{mounts, pty};
use crate::rootfs::RootfsLayout;

/// What the init needs besides the spec.
pub struct InitArgs<'a> {
    pub spec: &'a Spec,
    pub layout: &'a RootfsLayout,
    pub bundle: &'a Path,
    pub sock: &'a UnixStream,
    pub io: &'a ContainerIo,
    pub parent: i32,
    pub userns: bool,
}

/// Entry point in the cloned child; returns only on failure (the exit code).
pub fn run(a: &InitArgs) -> isize {
    let fail = match setup_and_exec(a) {
        Ok(never) => match never {},
        Err(f) => f,
    };
    let mut s = a.sock;
    let _ = s.write_all(format!("{}\n{}", fail.code, fail.message).as_bytes());
    fail.code as isize
}

fn has_ns(spec: &Spec, t: LinuxNamespaceType) -> bool {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .map(|n| n.iter().any(|n| n.typ() == t))
        .unwrap_or(false)
}

enum Never {}

fn k<T>(r: nix::Result<T>, what: &str) -> Result<T, Fail> {
    r.map_err(|e| Fail::engine(format!("{what}: {e}")))
}

/// Closes every fd above stderr except the sync socket: the monitor's database and
/// anything it inherited must not be reachable from the container, even before exec.
fn close_stray_fds(keep: i32) {
    // SAFETY: close_range only closes descriptors; none of them is used again by this
    // process (the Rust objects owning them live in the parent's memory image and are
    // never dropped here, since the child ends in execve or _exit).
    unsafe {
        if keep < 3 {
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
            return;
        }
        if keep > 3 {
            libc::syscall(libc::SYS_close_range, 3u32, (keep - 1) as u32, 0u32);
        }
        libc::syscall(libc::SYS_close_range, (keep + 1) as u32, u32::MAX, 0u32);
    }
}

/// Puts the container's stdio in place: pipes from the monitor, or what the monitor has
/// (passthrough). A terminal is set up later, once the container's devpts exists.
fn setup_stdio(io: &ContainerIo) -> Result<(), Fail> {
    if let ContainerIo::Pipes {
        stdin,
        stdout,
        stderr,
    } = io
    {
        let null;
        let inp = match stdin {
            Some(fd) => fd,
            None => {
                null = k(
                    open(
                        "/dev/null",
                        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
                        Mode::empty(),
                    ),
                    "open /dev/null",
                )?;
                &null
            }
        };
        k(nix::unistd::dup2_stdin(inp), "dup2 stdin")?;
        k(nix::unistd::dup2_stdout(stdout), "dup2 stdout")?;
        k(nix::unistd::dup2_stderr(stderr), "dup2 stderr")?;
    }
    Ok(())
}

fn setup_and_exec(a: &InitArgs) -> Result<Never, Fail> {
    if !matches!(a.io, ContainerIo::Inherit) {
        crate::LOG_SILENCED.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    // The monitor blocks signals (it reads them from a signalfd): reset them too.
    super::signal::reset_for_exec();
    setup_stdio(a.io)?;
    close_stray_fds(a.sock.as_raw_fd());
    k(
        nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL),
        "prctl(PR_SET_PDEATHSIG)",
    )?;
    // In a new PID namespace the parent is outside it and getppid() reads 0.
    let ppid = nix::unistd::getppid().as_raw();
    if ppid != 0 && ppid != a.parent {
        return Err(Fail::engine("monitor exited during container start"));
    }
    // Wait until the monitor has written our ID maps.
    let mut b = [0u8; 1];
    let mut s = a.sock;
    match s.read(&mut b) {
        Ok(1) if b[0] == b'M' => {}
        _ => {
            return Err(Fail::engine(
                "monitor did not finish the user namespace setup",
            ))
        }
    }
    if a.userns {
        let z = nix::unistd::Uid::from_raw(0);
        let zg = nix::unistd::Gid::from_raw(0);
        k(nix::unistd::setresgid(zg, zg, zg), "setresgid(0)")?;
        k(nix::unistd::setresuid(z, z, z), "setresuid(0)")?;
        // A change of effective UID clears the parent-death signal: when the
        // container's root is not the caller's UID (root with --uidmap, nomap, auto),
        // a killed monitor would otherwise leave the container running.
        k(
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL),
            "prctl(PR_SET_PDEATHSIG)",
        )?;
        if ppid != 0 && nix::unistd::getppid().as_raw() != a.parent {
            return Err(Fail::engine("monitor exited during container start"));
        }
    }
    // Nothing in the container may reach our memory or fds through /proc until exec.
    k(
        nix::sys::prctl::set_dumpable(false),
        "prctl(PR_SET_DUMPABLE)",
    )?;
    k(
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        ),
        "making / private",
    )?;
    let rootfs = super::spec::rootfs_path(a.bundle, a.spec);
    // Idmapped layers: the monitor has mounted the rootfs in our namespace already.
    if !a.layout.idmapped {
        a.layout
            .mount(&rootfs)
            .map_err(|e| Fail::engine(e.to_string()))?;
    }
    let root: OwnedFd = k(
        open(
            &rootfs,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        ),
        "opening rootfs",
    )?;
    for m in a.spec.mounts().iter().flatten() {
        super::copyup::copy_up(&root, m).map_err(Fail::engine)?;
        mounts::mount_one(&root, m).map_err(Fail::engine)?;
        if m.destination() == Path::new("/dev") {
            mounts::populate_dev(&root).map_err(Fail::engine)?;
        }
    }
    let tty = if let ContainerIo::Tty(rows, cols) = *a.io {
        let (master, slave) = pty::allocate(&root).map_err(Fail::engine)?;
        // The size must be right before the program starts: it may ask at once.
        pty::set_winsize(&master, rows, cols);
        super::fdpass::send_fds(a.sock.as_fd(), b"T", &[master.as_raw_fd()])
            .map_err(|e| Fail::engine(format!("passing the pty to the monitor: {e}")))?;
        Some(slave)
    } else {
        None
    };
    let linux = a.spec.linux().clone().unwrap_or_default();
    super::sysctl::apply_sysctls(&root, linux.sysctl().as_ref()).map_err(Fail::engine)?;
    for p in linux.masked_paths().iter().flatten() {
        mounts::mask(&root, p).map_err(Fail::engine)?;
    }
    for p in linux.readonly_paths().iter().flatten() {
        mounts::make_readonly(&root, p).map_err(Fail::engine)?;
    }
    if has_ns(a.spec, LinuxNamespaceType::Uts) {
        if let Some(h) = a.spec.hostname() {
            k(nix::unistd::sethostname(h), "sethostname")?;
        }
    }
    if has_ns(a.spec, LinuxNamespaceType::Network) {
        loopback_up()?;
        let tap = a
            .spec
            .annotations()
            .as_ref()
            .and_then(|m| m.get(super::spec::TAP_ANNOTATION).cloned());
        // Still root in the new user namespace, and /dev is still the host's.
        if tap.as_deref() == Some("bare") {
            // User-defined networks: one interface per network (eth0, eth1, ... in
            // attach order, as podman names them), addressed as the monitor said
            // after "M" (one line each, then an empty line).
            let mut i = 0u16;
            while let Some(addr) = read_addressing(&mut s)? {
                let name = crate::network::member::iface_name(usize::from(i));
                let metric = crate::network::member::route_metric(usize::from(i));
                let fd = crate::network::tap::create_named(&name, Some(&addr), metric)
                    .map_err(Fail::engine)?;
                super::fdpass::send_fds(a.sock.as_fd(), b"N", &[fd.as_raw_fd()])
                    .map_err(|e| Fail::engine(format!("passing {name} to the monitor: {e}")))?;
                i += 1;
            }
        } else if let Some(how) = tap {
            // "v6": slirp4netns's IPv6 too (the host had it at create).
            let v6 = how == "v6" && crate::network::tap6::prepare().map_err(Fail::engine)?;
            let fd = crate::network::tap::create(Some(&crate::network::tap::SLIRP))
                .map_err(Fail::engine)?;
            if v6 {
                crate::network::tap6::configure6(&crate::network::tap6::SLIRP6)
                    .map_err(Fail::engine)?;
            }
            super::fdpass::send_fds(a.sock.as_fd(), b"N", &[fd.as_raw_fd()])
                .map_err(|e| Fail::engine(format!("passing tap0 to the monitor: {e}")))?;
        }
    }
    pivot(&rootfs)?;
    if a.spec.root().as_ref().and_then(|r| r.readonly()) == Some(true) {
        let top = k(
            open(
                "/",
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            ),
            "opening /",
        )?;
        mounts::remount_ro(&top, MsFlags::empty(), Path::new("/")).map_err(Fail::engine)?;
    }
    let with_init = a
        .spec
        .annotations()
        .as_ref()
        .is_some_and(|m| m.get(INIT_ANNOTATION).map(String::as_str) == Some("true"));
    if let Some(slave) = &tty {
        if !with_init {
            pty::make_controlling(slave).map_err(Fail::engine)?;
        }
    } else {
        // As with runc, the container's first process leads a session of its own (a
        // terminal's make_controlling does this above).
        tracing::debug!("setsid");
        let _ = nix::unistd::setsid();
    }
    let p = a
        .spec
        .process()
        .clone()
        .ok_or_else(|| Fail::engine("spec has no process"))?;
    process::set_rlimits(&p)?;
    let user = a
        .spec
        .annotations()
        .as_ref()
        .and_then(|m| m.get(USER_ANNOTATION).cloned())
        .unwrap_or_else(|| format!("{}:{}", p.user().uid(), p.user().gid()));
    let implicit = a
        .spec
        .annotations()
        .as_ref()
        .and_then(|m| m.get(USER_IMPLICIT_ANNOTATION))
        .is_some_and(|v| v == "1");
    let added = process::added_groups(&super::spec::group_add(a.spec))?;
    let id = process::resolve_user(
        &user,
        process::Groups::Run {
            user_named: !implicit,
            added,
        },
    )?;
    super::chown::chown_volumes(a.spec, id.uid, id.gid).map_err(Fail::engine)?;
    let cwd = p.cwd().clone();
    if !cwd.exists() {
        let _ = std::fs::create_dir_all(&cwd);
        let _ = nix::unistd::chown(
            &cwd,
            Some(nix::unistd::Uid::from_raw(id.uid)),
            Some(nix::unistd::Gid::from_raw(id.gid)),
        );
    }
    let filter = a.spec.linux().as_ref().and_then(|l| l.seccomp().clone());
    process::become_user(
        &p,
        &id,
        &super::security::nonroot_caps(a.spec),
        filter.as_ref(),
    )?;
    nix::unistd::chdir(&cwd)
        .map_err(|e| Fail::engine(format!("chdir to `{}`: {}", cwd.display(), e.desc())))?;
    let mut env = p.env().clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", id.home));
    }
    let args = p.args().clone().unwrap_or_default();
    let arg0 = args
        .first()
        .ok_or_else(|| Fail::engine("no command given"))?;
    let prog = process::find_program(arg0, &env)?;
    if with_init {
        become_reaper(tty.as_ref())?;
    }
    // Every inherited fd above stderr closes at exec, the sync socket included.
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags on our own fds.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
    }
    Err(process::exec(&prog, &args, &env))
}

/// The next line the monitor sent after "M" with a user-defined network's address, read
/// a byte at a time so nothing after it is consumed; None at the empty line that ends
/// the list.
fn read_addressing(s: &mut impl Read) -> Result<Option<crate::network::tap::Addressing>, Fail> {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while line.len() < 128 {
        match s.read(&mut b) {
            Ok(1) if b[0] == b'\n' => break,
            Ok(1) => line.push(b[0]),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&line);
    if text.trim().is_empty() {
        return Ok(None);
    }
    crate::network::tap::Addressing::parse_line(&text)
        .map(Some)
        .ok_or_else(|| {
            Fail::engine(format!(
                "the monitor sent a bad interface address: {text:?}"
            ))
        })
}

fn pivot(rootfs: &Path) -> Result<(), Fail> {
    k(nix::unistd::chdir(rootfs), "chdir to rootfs")?;
    k(nix::unistd::pivot_root(".", "."), "pivot_root")?;
    k(umount2(".", MntFlags::MNT_DETACH), "detaching the old root")?;
    k(nix::unistd::chdir("/"), "chdir /")
}

/// Brings up `lo` in the container's own network namespace.
fn loopback_up() -> Result<(), Fail> {
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
    let sock = k(
        socket(
            AddressFamily::Inet,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC,
            None,
        ),
        "socket for loopback",
    )?;
    // SAFETY: ifreq is plain old data; zeroed is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (i, b) in b"lo\0".iter().enumerate() {
        ifr.ifr_name[i] = *b as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write the ifreq we own.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr) < 0 {
            return Err(Fail::engine(format!(
                "reading flags of lo: {}",
                std::io::Error::last_os_error()
            )));
        }
        ifr.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &ifr) < 0 {
            return Err(Fail::engine(format!(
                "bringing up lo: {}",
                std::io::Error::last_os_error()
            )));
        }
    }
    Ok(())
}

/// `--init`: this process stays PID 1 (no binary needed in the image), forks the
/// program, forwards signals to it and reaps every orphan, then exits with the program's
/// status. Returns in the child, which goes on to exec.
fn become_reaper(tty: Option<&OwnedFd>) -> Result<(), Fail> {
    use nix::sys::signal::Signal;
    use nix::sys::wait::{waitpid, WaitStatus};
    // SAFETY: this process is single-threaded (a clone of the single-threaded monitor).
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            if let Some(slave) = tty {
                pty::make_controlling(slave).map_err(Fail::engine)?;
            }
            Ok(())
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            hide_cmdline();
            let mut signals = super::signal::FORWARDED.to_vec();
            signals.extend([Signal::SIGWINCH, Signal::SIGCONT]);
            super::signal::forward_to(child.as_raw(), &signals);
            // Our own exec never happens: close the sync socket (and the pty slave) so
            // the monitor sees "started".
            close_stray_fds(-1);
            loop {
                match waitpid(None, None) {
                    Ok(WaitStatus::Exited(pid, code)) if pid == child => std::process::exit(code),
                    Ok(WaitStatus::Signaled(pid, sig, _)) if pid == child => {
                        std::process::exit(128 + sig as i32)
                    }
                    Ok(_) => {}
                    Err(nix::errno::Errno::EINTR) => {}
                    Err(_) => std::process::exit(125),
                }
            }
        }
        Err(e) => Err(Fail::engine(format!("fork for --init: {e}"))),
    }
}

/// The `--init` reaper is a copy of the monitor and stays PID 1 of the container, whose
/// processes may read its /proc/1/cmdline (unlike its environ, fds or exe, which being
/// non-dumpable closes): overwrite the monitor's arguments (host paths of the store and
/// run directories) with a plain name, in place.
fn hide_cmdline() {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return;
    };
    // Fields 48 and 49 (arg_start, arg_end), counted after the command name.
    let Some(rest) = stat.rfind(')').and_then(|i| stat.get(i + 2..)) else {
        return;
    };
    let f: Vec<&str> = rest.split(' ').collect();
    let (Some(start), Some(end)) = (
        f.get(45).and_then(|s| s.parse::<usize>().ok()),
        f.get(46).and_then(|s| s.parse::<usize>().ok()),
    ) else {
        return;
    };
    if end <= start || end - start > 1 << 20 {
        return;
    }
    const NAME: &[u8] = b"skiff-init";
    tracing::debug!(start, end, "overwriting the reaper's command line");
    // SAFETY: [arg_start, arg_end) is this process's own argument area on its stack, set
    // up by the kernel at exec and still mapped read-write. Nothing reads it afterwards:
    // the reaper only waits for children and exits (std::env::args is never called).
    unsafe {
        let p = start as *mut u8;
        std::ptr::write_bytes(p, 0, end - start);
        std::ptr::copy_nonoverlapping(NAME.as_ptr(), p, NAME.len().min(end - start - 1));
    }
}
