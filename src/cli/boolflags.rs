//! `--rm=false`, `-t=true`, `--detach=$DETACH`: docker and podman (Go's pflag) accept an
//! explicit value on every boolean flag, and scripts generated from variables pass one.
//! clap's plain switches refuse it, so before parsing, an explicit `=true` becomes the
//! bare switch and `=false` drops it. Only flags of the command being parsed are
//! rewritten, and nothing from the first positional argument on (the image and the
//! container's own command line stay as typed).

use std::ffi::OsString;

use clap::{Arg, ArgAction, Command, CommandFactory};

/// The arguments with explicit boolean values on switches folded away.
pub fn normalize(args: Vec<OsString>) -> Vec<OsString> {
    let explicit = |a: &OsString| {
        a.to_str()
            .is_some_and(|s| s.starts_with('-') && (s.ends_with("=true") || s.ends_with("=false")))
    };
    if !args.iter().any(explicit) {
        return args;
    }
    let mut root = super::Cli::command();
    root.build();
    let mut cur: &Command = &root;
    let mut out = Vec::with_capacity(args.len());
    let mut it = args.into_iter();
    out.extend(it.next());
    let mut expect_value = false;
    let mut verbatim = false;
    for a in it {
        if verbatim || expect_value {
            expect_value = false;
            out.push(a);
            continue;
        }
        let Some(s) = a.to_str().map(str::to_string) else {
            out.push(a);
            continue;
        };
        if s == "--" {
            verbatim = true;
        } else if let Some(body) = s.strip_prefix("--") {
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (body, None),
            };
            let arg = cur.get_arguments().find(|x| {
                x.get_long() == Some(name) || x.get_all_aliases().is_some_and(|v| v.contains(&name))
            });
            match (arg, value) {
                (Some(x), Some(v)) if is_switch(x) => {
                    match v {
                        "true" => out.push(format!("--{name}").into()),
                        "false" => {}
                        _ => out.push(a),
                    }
                    continue;
                }
                (Some(x), None) => expect_value = takes_value(x),
                _ => {}
            }
        } else if let Some(body) = s.strip_prefix('-').filter(|b| !b.is_empty()) {
            let (flags, value) = match body.split_once('=') {
                Some((f, v)) => (f, Some(v)),
                None => (body, None),
            };
            let short = |c: char| cur.get_arguments().find(|x| x.get_short() == Some(c));
            if let (Some(v), true) = (value, flags.chars().count() == 1) {
                if let Some(c) = flags.chars().next() {
                    if short(c).is_some_and(is_switch) {
                        match v {
                            "true" => out.push(format!("-{c}").into()),
                            "false" => {}
                            _ => out.push(a),
                        }
                        continue;
                    }
                }
            }
            // `-it`, `-p 80`, `-p80`: a value-taking short flag ends the cluster; the
            // next argument is its value only when nothing is attached.
            for (i, c) in flags.char_indices() {
                if short(c).is_some_and(takes_value) {
                    expect_value = value.is_none() && i + c.len_utf8() == flags.len();
                    break;
                }
            }
        } else if let Some(sub) = cur.find_subcommand(&s) {
            cur = sub;
        } else {
            verbatim = true;
        }
        out.push(a);
    }
    out
}

fn is_switch(a: &Arg) -> bool {
    matches!(a.get_action(), ArgAction::SetTrue)
}

fn takes_value(a: &Arg) -> bool {
    a.get_action().takes_values() && a.get_num_args().is_none_or(|n| n.min_values() > 0)
}

#[cfg(test)]
mod tests {
    use super::normalize;

    fn n(args: &[&str]) -> Vec<String> {
        let v = std::iter::once("skiff")
            .chain(args.iter().copied())
            .map(Into::into)
            .collect();
        normalize(v)
            .into_iter()
            .skip(1)
            .map(|s| s.into_string().unwrap())
            .collect()
    }

    #[test]
    fn explicit_booleans_fold_into_switches() {
        assert_eq!(
            n(&["run", "--rm=false", "-t=true", "-i=false", "-d", "img", "x"]),
            ["run", "-t", "-d", "img", "x"]
        );
        assert_eq!(
            n(&["run", "--detach=true", "img"]),
            ["run", "--detach", "img"]
        );
        // The container's command line and flag values are left alone.
        assert_eq!(
            n(&["run", "--rm", "img", "prog", "--rm=false", "-t=true"]),
            ["run", "--rm", "img", "prog", "--rm=false", "-t=true"]
        );
        assert_eq!(
            n(&["run", "-e", "--rm=false", "--name", "-t=true", "img"]),
            ["run", "-e", "--rm=false", "--name", "-t=true", "img"]
        );
        assert_eq!(
            n(&["--log-level", "warn", "ps", "--all=true", "-q=false"]),
            ["--log-level", "warn", "ps", "--all"]
        );
        // Not booleans, or not flags of this command: untouched (clap reports them).
        assert_eq!(n(&["ps", "--bogus=true"]), ["ps", "--bogus=true"]);
        assert_eq!(n(&["ps", "--all=maybe"]), ["ps", "--all=maybe"]);
    }
}
