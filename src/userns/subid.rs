//! /etc/subuid and /etc/subgid: `name-or-uid:start:count` lines.

use std::path::Path;

use super::UsernsError;

/// A subordinate ID range granted to a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubIdRange {
    pub start: u32,
    pub count: u32,
}

/// The ranges for a user, matched by name or numeric UID as shadow-utils does. A missing
/// file means no ranges.
pub fn lookup_subids(
    file: impl AsRef<Path>,
    user: Option<&str>,
    uid: u32,
) -> Result<Vec<SubIdRange>, UsernsError> {
    let file = file.as_ref();
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(UsernsError::ReadSubIds {
                path: file.to_path_buf(),
                source,
            })
        }
    };
    Ok(parse(&text, user, uid))
}

fn parse(text: &str, user: Option<&str>, uid: u32) -> Vec<SubIdRange> {
    let uid_s = uid.to_string();
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                return None;
            }
            let mut it = line.split(':');
            let who = it.next()?;
            let start = it.next()?.trim().parse().ok()?;
            let count: u32 = it.next()?.trim().parse().ok()?;
            let matches = Some(who) == user || who == uid_s;
            (matches && count > 0).then_some(SubIdRange { start, count })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_by_name_and_uid() {
        let t = "# c\nalice:100000:65536\nbob:165536:65536\n1001:300000:10\nbad line\nalice:x:1\n";
        assert_eq!(
            parse(t, Some("alice"), 1000),
            vec![SubIdRange {
                start: 100000,
                count: 65536
            }]
        );
        assert_eq!(
            parse(t, Some("carol"), 1001),
            vec![SubIdRange {
                start: 300000,
                count: 10
            }]
        );
        assert!(parse(t, None, 5).is_empty());
    }
}
