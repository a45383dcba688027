//! `--filter KEY=VALUE` for ps and images, with podman's keys and rules: values of one
//! key are alternatives (any may match), different keys must all match.

use std::collections::BTreeMap;

use super::Exit;

/// Parsed filters, key → alternatives.
#[derive(Debug, Default, Clone)]
pub struct Filters(pub BTreeMap<String, Vec<String>>);

impl Filters {
    /// Parses `--filter` values, accepting only `keys`; podman's messages, exit 125.
    pub fn parse(raw: &[String], keys: &[&str], what: &str) -> anyhow::Result<Filters> {
        let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for f in raw {
            let Some((k, v)) = f.split_once('=') else {
                return Err(Exit::with(
                    125,
                    format!("invalid filter {f:?}: use KEY=VALUE"),
                ));
            };
            if !keys.contains(&k) {
                return Err(Exit::with(
                    125,
                    format!(
                        "{k} is an invalid {what} filter: use one of {}",
                        keys.join(", ")
                    ),
                ));
            }
            m.entry(k.to_string()).or_default().push(v.to_string());
        }
        Ok(Filters(m))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// True when, for every key, at least one value satisfies `test(key, value)`.
    pub fn matches(&self, mut test: impl FnMut(&str, &str) -> bool) -> bool {
        self.0.iter().all(|(k, vs)| vs.iter().any(|v| test(k, v)))
    }

    pub fn get(&self, key: &str) -> &[String] {
        self.0.get(key).map(Vec::as_slice).unwrap_or_default()
    }
}

/// `label=KEY` or `label=KEY=VALUE` against a label map.
pub fn label_matches(labels: &BTreeMap<String, String>, want: &str) -> bool {
    match want.split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
        None => labels.contains_key(want),
    }
}

/// podman's name filter is a regular expression matched anywhere in the name; skiff
/// supports the forms people write: plain text (substring), `^` and `$` anchors, `.`
/// (any character) and `.*`.
pub fn name_matches(pattern: &str, name: &str) -> bool {
    let (anchored_start, p) = match pattern.strip_prefix('^') {
        Some(p) => (true, p),
        None => (false, pattern),
    };
    let (anchored_end, p) = match p.strip_suffix('$') {
        Some(p) => (true, p),
        None => (false, p),
    };
    // Translate to a glob: `.*` → `*`, `.` → `?`, `\.` → literal dot.
    let mut glob = String::new();
    let mut cs = p.chars().peekable();
    while let Some(c) = cs.next() {
        match c {
            '\\' => match cs.next() {
                Some(n @ ('*' | '?' | '[')) => {
                    glob.push('[');
                    glob.push(n);
                    glob.push(']');
                }
                Some(n) => glob.push(n),
                None => glob.push('\\'),
            },
            '.' if cs.peek() == Some(&'*') => {
                cs.next();
                glob.push('*');
            }
            '.' => glob.push('?'),
            '*' | '?' | '[' => {
                glob.push('[');
                glob.push(c);
                glob.push(']');
            }
            c => glob.push(c),
        }
    }
    let full = format!(
        "{}{glob}{}",
        if anchored_start { "" } else { "*" },
        if anchored_end { "" } else { "*" }
    );
    glob_match(&full, name)
}

/// Shell-style matching: `*`, `?`, `[abc]`, `[a-z]`, `[!a]`; `*` does not cross `/`
/// when `slash` patterns are wanted by the caller (they pass components).
pub fn glob_match(pattern: &str, s: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = s.chars().collect();
    // Iterative matcher with one backtrack point for the last `*` (linear memory).
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi, ti));
                    pi += 1;
                    continue;
                }
                '?' => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                '[' => {
                    if let Some((ok, len)) = class(&p[pi..], t[ti]) {
                        if ok {
                            pi += len;
                            ti += 1;
                            continue;
                        }
                    } else if t[ti] == '[' {
                        pi += 1;
                        ti += 1;
                        continue;
                    }
                }
                c if c == t[ti] => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, st)) => {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// A `[...]` class at the start of `p`: whether `c` is in it and the class's length.
fn class(p: &[char], c: char) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = matches!(p.get(1), Some('!') | Some('^'));
    if negate {
        i += 1;
    }
    let mut found = false;
    let mut first = true;
    while i < p.len() {
        if p[i] == ']' && !first {
            return Some((found != negate, i + 1));
        }
        first = false;
        if p.get(i + 1) == Some(&'-') && p.get(i + 2).is_some_and(|e| *e != ']') {
            if p[i] <= c && c <= p[i + 2] {
                found = true;
            }
            i += 3;
        } else {
            if p[i] == c {
                found = true;
            }
            i += 1;
        }
    }
    None
}

/// podman's boolean filter values.
pub fn parse_bool(key: &str, v: &str) -> anyhow::Result<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "t" => Ok(true),
        "false" | "0" | "f" => Ok(false),
        _ => Err(Exit::with(
            125,
            format!("invalid value {v:?} for the {key} filter: use true or false"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_and_names() {
        assert!(glob_match("a*c", "abbbc"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("a?c", "ac"));
        assert!(glob_match("[a-c]x", "bx"));
        assert!(!glob_match("[!a-c]x", "bx"));
        assert!(glob_match("*/busybox:*", "127.0.0.1:5000/busybox:latest"));
        assert!(!glob_match("[", "x"));
        assert!(glob_match("[", "["));
        assert!(name_matches("eb", "web"));
        assert!(name_matches("^we", "web"));
        assert!(!name_matches("^eb", "web"));
        assert!(name_matches("b$", "web"));
        assert!(!name_matches("e$", "web"));
        assert!(name_matches("^w.b$", "web"));
        assert!(name_matches("^w.*$", "web"));
        assert!(!name_matches("a*", "web"), "a literal star");
    }

    #[test]
    fn filter_parsing() {
        let f = Filters::parse(
            &["name=a".into(), "name=b".into(), "status=running".into()],
            &["name", "status"],
            "ps",
        )
        .unwrap();
        assert_eq!(f.get("name"), ["a", "b"]);
        assert!(f.matches(|k, v| (k == "name" && v == "b") || k == "status"));
        assert!(!f.matches(|k, _| k == "name"));
        assert!(Filters::parse(&["bogus=1".into()], &["name"], "ps").is_err());
        assert!(Filters::parse(&["name".into()], &["name"], "ps").is_err());
        let mut l = BTreeMap::new();
        l.insert("a".to_string(), "b".to_string());
        assert!(label_matches(&l, "a"));
        assert!(label_matches(&l, "a=b"));
        assert!(!label_matches(&l, "a=c"));
        assert!(!label_matches(&l, "x"));
    }
}
