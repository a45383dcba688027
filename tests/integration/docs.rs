//! Issue 6, completions and manual pages: the checked-in completions/ and man/ are what
//! the code generates; `skiff completion SHELL` prints them; dynamic completion offers
//! live container, image and volume names (through the real bash script too); the
//! man pages document every flag and read like a manual.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::images;
use crate::require;
use crate::support::{assert_error, pull};
use crate::util::{skiff_bin, TestEnv};

const REGENERATE: &str =
    "regenerate with `cargo run -- __generate-docs .` and commit completions/ and man/";

fn checkout() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every file under `dir`/completions and `dir`/man, by relative path.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut m = BTreeMap::new();
    for sub in ["completions", "man"] {
        let Ok(rd) = fs::read_dir(dir.join(sub)) else {
            continue;
        };
        for e in rd.flatten() {
            let rel = format!("{sub}/{}", e.file_name().to_string_lossy());
            m.insert(rel, fs::read(e.path()).unwrap());
        }
    }
    m
}

fn generated() -> (tempfile::TempDir, BTreeMap<String, Vec<u8>>) {
    let tmp = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(skiff_bin())
        .arg("__generate-docs")
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let t = tree(tmp.path());
    (tmp, t)
}

#[test]
fn checked_in_docs_match_the_code() {
    let (_tmp, fresh) = generated();
    let have = tree(&checkout());
    let missing: Vec<&String> = fresh.keys().filter(|k| !have.contains_key(*k)).collect();
    let stale: Vec<&String> = have.keys().filter(|k| !fresh.contains_key(*k)).collect();
    let differ: Vec<&String> = fresh
        .iter()
        .filter(|(k, v)| have.get(*k).is_some_and(|h| h != *v))
        .map(|(k, _)| k)
        .collect();
    assert!(
        missing.is_empty() && stale.is_empty() && differ.is_empty(),
        "checked-in docs are out of date: missing {missing:?}, stale {stale:?}, different {differ:?}: {REGENERATE}"
    );
    for f in [
        "skiff.bash",
        "_skiff",
        "skiff.fish",
        "skiff.elv",
        "_skiff.ps1",
    ] {
        assert!(fresh.contains_key(&format!("completions/{f}")), "{f}");
    }
    for page in [
        "skiff.1",
        "skiff-run.1",
        "skiff-quadlet.1",
        "skiff-system-doctor.1",
        "skiff-container-ls.1",
    ] {
        assert!(fresh.contains_key(&format!("man/{page}")), "{page}");
    }
    assert!(
        !fresh
            .keys()
            .any(|k| k.contains("__") || k.contains("-help")),
        "{:?}",
        fresh.keys()
    );
}

#[test]
fn completion_prints_each_shell_script() {
    let have = tree(&checkout());
    for (shell, file) in [
        ("bash", "skiff.bash"),
        ("zsh", "_skiff"),
        ("fish", "skiff.fish"),
        ("elvish", "skiff.elv"),
        ("powershell", "_skiff.ps1"),
    ] {
        let out = std::process::Command::new(skiff_bin())
            .args(["completion", shell])
            .output()
            .unwrap();
        assert!(out.status.success());
        assert_eq!(
            Some(&out.stdout),
            have.get(&format!("completions/{file}")),
            "{shell}: {REGENERATE}"
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("_SKIFF_COMPLETE"));
    }
    let env = require!(TestEnv::try_rootless());
    assert_error(&env.run(&["completion", "tcsh"]), 125, &["tcsh"]);
}

/// Asks skiff for completions the way the fish script does: one candidate per line.
fn complete(env: &TestEnv, words: &[&str]) -> Vec<String> {
    let mut args = vec!["--", "skiff"];
    args.extend_from_slice(words);
    let out = env
        .host_cmd(skiff_bin(), &args)
        .env("_SKIFF_COMPLETE", "fish")
        .output();
    out.success();
    out.stdout_str()
        .lines()
        .map(|l| l.split('\t').next().unwrap_or("").to_string())
        .collect()
}

#[test]
fn dynamic_completion_offers_live_names() {
    let fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootless());
    pull(&env, &fx.busybox.reference);
    env.run(&[
        "create",
        "--name",
        "alpha-web",
        &fx.busybox.reference,
        "true",
    ])
    .success();
    // No volume command yet: a volume is a directory in the store.
    let vol = env.root_dir.join("volumes/myvol/_data");
    fs::create_dir_all(&vol).unwrap();
    env.give(&env.root_dir.join("volumes"));

    assert_eq!(complete(&env, &["rm", "al"]), vec!["alpha-web"]);
    assert!(complete(&env, &["logs", ""]).contains(&"alpha-web".to_string()));
    assert!(complete(&env, &["container", "stop", "alp"]).contains(&"alpha-web".to_string()));
    let imgs = complete(&env, &["run", "127.0.0.1"]);
    assert!(imgs.contains(&fx.busybox.reference), "{imgs:?}");
    assert!(complete(&env, &["rmi", ""]).contains(&fx.busybox.reference));
    assert!(complete(&env, &["run", "-v", "my"]).contains(&"myvol:".to_string()));
    assert_eq!(complete(&env, &["quad"]), vec!["quadlet"]);
    assert!(complete(&env, &["run", "--sdn"]).contains(&"--sdnotify".to_string()));
    // Helpers are not offered among the commands.
    let top = complete(&env, &[""]);
    assert!(top.contains(&"run".to_string()), "{top:?}");
    assert!(!top.iter().any(|c| c.starts_with("__")), "{top:?}");

    // The real bash script, as a user's shell would run it.
    let bin_dir = skiff_bin().parent().unwrap().to_path_buf();
    let script = "source <(skiff completion bash)\n\
                  COMP_WORDS=(skiff stop al); COMP_CWORD=2; COMP_TYPE=9\n\
                  _clap_complete_skiff skiff al stop\n\
                  printf '%s\\n' \"${COMPREPLY[@]}\"";
    let out = env
        .host_cmd("bash", &["-c", script])
        .env("PATH", format!("{}:/usr/bin:/bin", bin_dir.display()))
        .output();
    out.success();
    assert_eq!(out.stdout_trim(), "alpha-web", "{}", out.describe());
}

#[test]
fn man_pages_document_every_flag_and_read_like_a_manual() {
    let man = checkout().join("man");
    let run = fs::read_to_string(man.join("skiff-run.1")).unwrap();
    let help = std::process::Command::new(skiff_bin())
        .args(["run", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    let flags: Vec<&str> = help
        .split(|c: char| c.is_whitespace() || c == ',' || c == '[' || c == '=')
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .collect();
    assert!(flags.len() > 40, "{flags:?}");
    for f in &flags {
        let roff = f.replace('-', "\\-");
        assert!(
            run.contains(&roff),
            "skiff-run.1 does not document {f}: {REGENERATE}"
        );
    }
    for section in [
        "NAME",
        "SYNOPSIS",
        "DESCRIPTION",
        "OPTIONS",
        "EXAMPLES",
        "EXIT STATUS",
        "FILES",
        "ENVIRONMENT",
        "SEE ALSO",
    ] {
        assert!(
            run.contains(&format!(".SH {section}")) || run.contains(&format!(".SH \"{section}\"")),
            "skiff-run.1 lacks {section}"
        );
    }
    for code in ["125", "126", "127"] {
        assert!(run.contains(&format!("\\fB{code}\\fR")), "exit code {code}");
    }
    // Every visible command has its page.
    let top = fs::read_to_string(man.join("skiff.1")).unwrap();
    for cmd in [
        "run",
        "ps",
        "quadlet",
        "generate",
        "system",
        "completion",
        "container",
    ] {
        assert!(man.join(format!("skiff-{cmd}.1")).exists(), "{cmd}");
        assert!(
            top.contains(&format!("skiff\\-{cmd}(1)")),
            "skiff.1 lists {cmd}"
        );
    }
    // man renders it without complaint.
    crate::skip_if!(
        !Path::new("/usr/bin/man").exists(),
        "man (man-db) is not installed"
    );
    let out = std::process::Command::new("man")
        .args(["--warnings", "-l"])
        .arg(man.join("skiff-run.1"))
        .env("MANWIDTH", "80")
        .env("MAN_KEEP_FORMATTING", "0")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    // Strip the overstrike bold (`X\bX`) man uses when not writing to a terminal.
    let raw: Vec<char> = String::from_utf8_lossy(&out.stdout).chars().collect();
    let mut text = String::new();
    let mut i = 0;
    while i < raw.len() {
        if raw.get(i + 1) == Some(&'\u{8}') {
            i += 2;
            continue;
        }
        text.push(raw[i]);
        i += 1;
    }
    assert!(
        text.contains("EXIT STATUS") && text.contains("skiff run --rm"),
        "{text}"
    );
    assert_eq!(String::from_utf8_lossy(&out.stderr), "", "man warnings");
}
