//! systemd's unit file syntax: `[Section]` headers, `Key=Value` lines, `#`/`;`
//! comments, backslash continuation lines; and the word splitting and quoting of
//! `Exec*=` command lines. Enough to read Quadlet files and write services.

use super::SystemdError;

/// A parsed unit file: sections in file order, entries in file order (keys repeat).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitFile {
    pub sections: Vec<Section>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub name: String,
    pub entries: Vec<(String, String)>,
}

impl UnitFile {
    /// Parses `text`; `path` only names the file in errors.
    pub fn parse(text: &str, path: &str) -> Result<UnitFile, SystemdError> {
        let mut unit = UnitFile::default();
        let lines: Vec<&str> = text.lines().collect();
        let mut i = 0;
        while i < lines.len() {
            let lineno = i + 1;
            let mut line = lines[i].trim().to_string();
            i += 1;
            if line.is_empty() || line.starts_with(['#', ';']) {
                continue;
            }
            // Continuation: a trailing backslash joins the next line (comments inside a
            // continued value are skipped, as systemd does).
            while line.ends_with('\\') {
                line.pop();
                line.push(' ');
                while i < lines.len() && lines[i].trim_start().starts_with(['#', ';']) {
                    i += 1;
                }
                if i < lines.len() {
                    line.push_str(lines[i].trim());
                    i += 1;
                }
            }
            if let Some(rest) = line.strip_prefix('[') {
                let Some(name) = rest.strip_suffix(']') else {
                    return Err(SystemdError::Syntax {
                        path: path.into(),
                        line: lineno,
                        detail: format!("bad section header {line:?}"),
                    });
                };
                unit.sections.push(Section {
                    name: name.to_string(),
                    entries: Vec::new(),
                });
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                return Err(SystemdError::Syntax {
                    path: path.into(),
                    line: lineno,
                    detail: format!("expected KEY=VALUE, found {line:?}"),
                });
            };
            let key = k.trim();
            if key.is_empty()
                || !key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(SystemdError::Syntax {
                    path: path.into(),
                    line: lineno,
                    detail: format!("bad key {key:?}"),
                });
            }
            let Some(sec) = unit.sections.last_mut() else {
                return Err(SystemdError::Syntax {
                    path: path.into(),
                    line: lineno,
                    detail: format!("{key}= comes before any [Section] header"),
                });
            };
            sec.entries.push((key.to_string(), v.trim().to_string()));
        }
        Ok(unit)
    }

    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }

    /// Every value of `key` in all sections called `section`, in order.
    pub fn all(&self, section: &str, key: &str) -> Vec<&str> {
        self.sections
            .iter()
            .filter(|s| s.name == section)
            .flat_map(|s| s.entries.iter())
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The last value of `key` (later assignments win, as in systemd).
    pub fn last(&self, section: &str, key: &str) -> Option<&str> {
        self.all(section, key).last().copied()
    }

    /// Appends an entry, creating the section at the end if needed.
    pub fn add(&mut self, section: &str, key: &str, value: impl Into<String>) {
        let value = value.into();
        match self.sections.iter_mut().find(|s| s.name == section) {
            Some(s) => s.entries.push((key.into(), value)),
            None => self.sections.push(Section {
                name: section.into(),
                entries: vec![(key.into(), value)],
            }),
        }
    }

    /// Renders the file, one blank line between sections.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (i, s) in self.sections.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            out.push_str(&format!("[{}]\n", s.name));
            for (k, v) in &s.entries {
                out.push_str(&format!("{k}={v}\n"));
            }
        }
        out
    }
}

/// Parses a systemd boolean (`yes`, `true`, `on`, `1` and their negations).
pub fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "yes" | "y" | "true" | "t" | "on" => Some(true),
        "0" | "no" | "n" | "false" | "f" | "off" => Some(false),
        _ => None,
    }
}

/// Splits a command line the way systemd splits `Exec*=`: whitespace separates words,
/// single and double quotes group, backslash escapes the next character.
pub fn split_words(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (_, '\\') => {
                let n = chars.next().ok_or("a trailing backslash")?;
                cur.push(match n {
                    'n' => '\n',
                    't' => '\t',
                    other => other,
                });
                in_word = true;
            }
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if let Some(q) = quote {
        return Err(format!("an unterminated {q} quote"));
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// Quotes one word for an `Exec*=` line so systemd hands it over unchanged. `%`
/// specifiers are left alone on purpose: the generated units use %t, %N and %n.
pub fn quote_word(w: &str) -> String {
    let plain = !w.is_empty()
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,+@%^~[]{}".contains(c));
    if plain {
        return w.to_string();
    }
    let mut out = String::from("\"");
    for c in w.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            '$' => out.push_str("$$"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A command line for an `Exec*=` key, long ones continued over lines as podman does.
pub fn command_line(words: &[String]) -> String {
    let quoted: Vec<String> = words.iter().map(|w| quote_word(w)).collect();
    let mut out = String::new();
    let mut width = 0;
    for (i, w) in quoted.iter().enumerate() {
        if i > 0 {
            if width + w.len() > 76 {
                out.push_str(" \\\n\t");
                width = 8;
            } else {
                out.push(' ');
                width += 1;
            }
        }
        out.push_str(w);
        width += w.len();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sections_continuations_and_comments() {
        let t = "# c\n[Unit]\nDescription=web\n\n[Container]\nImage=busybox\nExec=sh -c \\\n  'echo hi'\n; x\nLabel=a=b\nLabel=c=d\n";
        let u = UnitFile::parse(t, "x").unwrap();
        assert_eq!(u.last("Unit", "Description"), Some("web"));
        assert_eq!(u.last("Container", "Exec"), Some("sh -c  'echo hi'"));
        assert_eq!(u.all("Container", "Label"), vec!["a=b", "c=d"]);
        assert!(UnitFile::parse("Image=x\n", "f").is_err());
        assert!(UnitFile::parse("[Container\n", "f").is_err());
        assert!(UnitFile::parse("[Container]\nnovalue\n", "f").is_err());
    }

    #[test]
    fn words_round_trip() {
        let w = split_words(r#"sh -c "echo \"a b\"" 'x y' z\ w"#).unwrap();
        assert_eq!(w, vec!["sh", "-c", "echo \"a b\"", "x y", "z w"]);
        let line = command_line(&w);
        assert_eq!(split_words(&line.replace("\\\n\t", "")).unwrap(), w);
        assert!(split_words("'open").is_err());
        assert_eq!(quote_word("%t/%N.cid"), "%t/%N.cid");
        assert_eq!(quote_word("a b"), "\"a b\"");
    }
}
