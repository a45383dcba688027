//! Issue 6: long operations (pull, save, load) draw indicatif bars on a terminal and
//! plain podman-style lines, with no escape codes, when stderr is not one.

use crate::images;
use crate::require;
use crate::support::pull;
use crate::util::{skiff_bin, TestEnv};

/// Runs skiff under `script`, so its stdout and stderr are a pseudo-terminal; returns
/// what the terminal showed.
fn on_a_terminal(env: &TestEnv, args: &str) -> String {
    let line = format!("{} {args}", skiff_bin().display());
    let out = env
        .host_cmd("script", &["-qefc", &line, "/dev/null"])
        .output();
    out.success();
    out.stdout_str()
}

fn has_bar(screen: &str) -> bool {
    // indicatif redraws with cursor movement and draws the bar's fill characters.
    screen.contains('\u{1b}') && screen.contains("Copying blob") && screen.contains("=>")
}

#[test]
fn pull_save_and_load_draw_bars_on_a_terminal_only() {
    let fx = require!(images::try_fixtures());
    let env = require!(TestEnv::try_rootless());
    let image = &fx.layered.reference;

    let screen = on_a_terminal(&env, &format!("pull {image}"));
    assert!(
        has_bar(&screen),
        "no progress bar on a terminal: {screen:?}"
    );

    let screen = on_a_terminal(&env, &format!("save -o t.tar {image}"));
    assert!(has_bar(&screen), "save: no progress bar: {screen:?}");
    let out = env.run(&["save", "-o", "p.tar", image]);
    out.success();
    let err = out.stderr_str();
    assert!(
        err.contains("Copying blob") && !err.contains('\u{1b}') && !err.contains('\r'),
        "save to a pipe: {err:?}"
    );

    env.run(&["rmi", image]).success();
    let screen = on_a_terminal(&env, "load -i t.tar");
    assert!(has_bar(&screen), "load: no progress bar: {screen:?}");
    env.run(&["rmi", image]).success();
    let out = env.run(&["load", "-i", "p.tar"]);
    out.success();
    let err = out.stderr_str();
    assert!(
        err.contains("Copying blob") && !err.contains('\u{1b}') && !err.contains('\r'),
        "load from a pipe: {err:?}"
    );

    // Prune has no byte count: a spinner at most, and nothing but the IDs on a pipe.
    pull(&env, &fx.busybox.reference);
    let out = env.run(&["image", "prune", "-a", "-f"]);
    out.success();
    assert!(out.stderr_str().is_empty(), "{}", out.describe());
    assert!(
        out.stdout_str().contains(&fx.busybox.id),
        "{}",
        out.describe()
    );
}
