//! Small helpers shared by the foundation, unpack and bad-input tests: pulling,
//! store snapshots, error-line checks, JSON parsing, host-side xattrs.

#![allow(dead_code)] // each test module uses a different part of these helpers

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::util::{Output, TestEnv};

/// `skiff pull -q IMAGE`, asserting success; returns the image ID printed on stdout.
#[track_caller]
pub fn pull(env: &TestEnv, image: &str) -> String {
    let out = env.run(&["pull", "-q", image]);
    out.success();
    let id = out.stdout_trim();
    assert!(
        is_full_id(&id),
        "pull -q must print a 64-hex ID\n{}",
        out.describe()
    );
    id
}

pub fn is_full_id(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// The skiff store (graph root) of this env.
pub fn store(env: &TestEnv) -> PathBuf {
    env.root_dir.clone()
}

/// Sorted entry names of a directory (empty if it does not exist).
pub fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Everything a failed command must leave unchanged.
#[derive(Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub images: String,
    pub ps: String,
    pub layers: Vec<String>,
    pub containers: Vec<String>,
}

#[track_caller]
pub fn snapshot(env: &TestEnv) -> Snapshot {
    let images = env.run(&["images", "--no-trunc"]);
    images.success();
    let ps = env.run(&["ps", "-a", "--no-trunc"]);
    ps.success();
    let root = store(env);
    Snapshot {
        // CREATED columns ("x seconds ago") change with time: compare without them.
        images: strip_times(&images.stdout_str()),
        ps: strip_times(&ps.stdout_str()),
        layers: listing(&root.join("layers")),
        containers: listing(&root.join("containers")),
    }
}

/// Table text without relative times: each line's words minus those that look like
/// parts of "N units ago" / "Less than a second ago" / "About a minute ago".
fn strip_times(table: &str) -> String {
    const TIME_WORDS: &[&str] = &[
        "less", "than", "a", "an", "about", "second", "seconds", "minute", "minutes", "hour",
        "hours", "day", "days", "week", "weeks", "month", "months", "year", "years", "ago",
    ];
    table
        .lines()
        .map(|l| {
            l.split_whitespace()
                .filter(|w| {
                    !TIME_WORDS.contains(&w.to_ascii_lowercase().as_str())
                        && !w.bytes().all(|b| b.is_ascii_digit())
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Assert the command failed with `code` and a clear one-line error: exactly one
/// stderr line mentions an error, it is the last line, starts with `Error: ` and
/// contains every needle (case-insensitive).
#[track_caller]
pub fn assert_error(out: &Output, code: i32, needles: &[&str]) {
    out.assert_code(code);
    let err = out.stderr_str();
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    let errors: Vec<&&str> = lines
        .iter()
        .filter(|l| l.to_ascii_lowercase().contains("error"))
        .collect();
    assert_eq!(
        errors.len(),
        1,
        "exactly one error line expected\n{}",
        out.describe()
    );
    let last = lines.last().copied().unwrap_or("");
    assert!(
        last.starts_with("Error: ") && std::ptr::eq(*errors[0], last),
        "the error must be the last stderr line and start with `Error: `\n{}",
        out.describe()
    );
    for n in needles {
        assert!(
            last.to_ascii_lowercase().contains(&n.to_ascii_lowercase()),
            "the error line must mention {n:?}\n{}",
            out.describe()
        );
    }
}

#[track_caller]
pub fn json(out: &Output) -> serde_json::Value {
    out.success();
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON: {e}\n{}", out.describe()))
}

/// `skiff inspect ...` parsed, asserting a one-element array; returns that element.
#[track_caller]
pub fn inspect_one(env: &TestEnv, args: &[&str]) -> serde_json::Value {
    let mut full = vec!["inspect"];
    full.extend_from_slice(args);
    let out = env.run(&full);
    let v = json(&out);
    let arr = v
        .as_array()
        .unwrap_or_else(|| panic!("not an array\n{}", out.describe()));
    assert_eq!(arr.len(), 1, "{}", out.describe());
    arr[0].clone()
}

/// `skiff run --rm IMAGE sh -c SCRIPT` (plus `flags` before the image); asserts exit 0
/// and returns stdout.
#[track_caller]
pub fn run_sh(env: &TestEnv, flags: &[&str], image: &str, script: &str) -> String {
    let mut args = vec!["run", "--rm"];
    args.extend_from_slice(flags);
    args.extend_from_slice(&[image, "sh", "-c", script]);
    let out = env.run(&args);
    out.success();
    out.stdout_str()
}

/// An extended attribute of a host path (not following symlinks), or None.
pub fn lgetxattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let p = CString::new(path.as_os_str().as_bytes()).ok()?;
    let n = CString::new(name).ok()?;
    let mut buf = vec![0u8; 4096];
    // SAFETY: valid NUL-terminated strings and a buffer of the given length.
    let len =
        unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (len >= 0).then(|| {
        buf.truncate(len as usize);
        buf
    })
}

/// The first unpacked layer dir in the store holding `rel` (e.g. `opt/layer3`).
pub fn layer_dir_with(env: &TestEnv, rel: &str) -> Option<PathBuf> {
    let layers = store(env).join("layers");
    listing(&layers)
        .into_iter()
        .map(|l| layers.join(l))
        .find(|d| fs::symlink_metadata(find_root(d).join(rel)).is_ok())
        .map(|d| find_root(&d))
}

/// A layer dir's root: the dir itself, or its `diff/` if the store uses one.
fn find_root(layer: &Path) -> PathBuf {
    let diff = layer.join("diff");
    if diff.is_dir() {
        diff
    } else {
        layer.to_path_buf()
    }
}

/// First host subordinate ID of `user` in `file`, if any.
pub fn subid_start(file: &str, name: &str, uid: u32) -> Option<u32> {
    fs::read_to_string(file).ok()?.lines().find_map(|l| {
        let mut f = l.trim().split(':');
        let (who, start) = (f.next()?, f.next()?);
        (who == name || who == uid.to_string()).then(|| start.parse().ok())?
    })
}

/// Names of the network interfaces in /proc/net/dev text.
pub fn interfaces(proc_net_dev: &str) -> Vec<String> {
    let mut v: Vec<String> = proc_net_dev
        .lines()
        .filter_map(|l| l.split_once(':').map(|(n, _)| n.trim().to_string()))
        .filter(|n| !n.is_empty() && !n.contains('|'))
        .collect();
    v.sort();
    v
}

/// Processes whose command line mentions `needle` (a container ID: its monitor).
pub(crate) fn processes_mentioning(needle: &str) -> usize {
    std::fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter(|e| {
                    std::fs::read(e.path().join("cmdline"))
                        .map(|c| String::from_utf8_lossy(&c).contains(needle))
                        .unwrap_or(false)
                })
                .count()
        })
        .unwrap_or(0)
}
