//! Splitting a template into text and actions, and an action into tokens. Works on
//! byte offsets but only ever slices at ASCII delimiters, so any UTF-8 input is safe.

use super::TemplateError;

/// One piece of the template source: literal text or the inside of `{{ }}`.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Text(String),
    Action {
        tokens: Vec<Token>,
        line: usize,
        col: usize,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Token {
    /// `.` alone.
    Dot,
    /// `.A.B`; `attached` when it directly follows `)`, as in `(index .X 0).Name`.
    Field {
        path: Vec<String>,
        attached: bool,
    },
    /// `$` or `$x`, with an optional field chain (`$x.A`).
    Var {
        name: String,
        path: Vec<String>,
    },
    Ident(String),
    Str(String),
    Num(serde_json::Number),
    Pipe,
    LParen,
    RParen,
    Comma,
    Declare,
    Assign,
}

/// Splits `src` into text and actions, applying `{{-` / `-}}` trimming and dropping
/// comments.
pub fn split(src: &str, name: &str) -> Result<Vec<Item>, TemplateError> {
    let mut items = Vec::new();
    let mut pos = 0;
    let mut trim_next = false;
    while pos <= src.len() {
        let rest = &src[pos..];
        let Some(open) = rest.find("{{") else {
            let text = if trim_next { rest.trim_start() } else { rest };
            if !text.is_empty() {
                items.push(Item::Text(text.to_string()));
            }
            break;
        };
        let mut text = &rest[..open];
        if trim_next {
            text = text.trim_start();
        }
        let mut start = pos + open + 2;
        let after = &src[start..];
        let trim_left =
            after.starts_with('-') && after[1..].starts_with(|c: char| c.is_ascii_whitespace());
        if trim_left {
            text = text.trim_end();
            start += 1;
        }
        if !text.is_empty() {
            items.push(Item::Text(text.to_string()));
        }
        let line = 1 + src[..start].matches('\n').count();
        let line_start = src[..start].rfind('\n').map(|i| i + 1).unwrap_or(0);
        let col = src[line_start..start].chars().count() + 1;
        let close = find_close(&src[start..])
            .ok_or_else(|| TemplateError::parse(name, line, "unclosed action"))?;
        let mut body = &src[start..start + close];
        trim_next = false;
        if let Some(b) = body.strip_suffix('-') {
            if b.ends_with(|c: char| c.is_ascii_whitespace()) {
                body = b;
                trim_next = true;
            }
        }
        pos = start + close + 2;
        let t = body.trim();
        if t.starts_with("/*") {
            if !(t.ends_with("*/") && t.len() >= 4) {
                return Err(TemplateError::parse(name, line, "unclosed comment"));
            }
            continue;
        }
        let tokens = tokens(body, name, line)?;
        if tokens.is_empty() {
            return Err(TemplateError::parse(
                name,
                line,
                "missing value for command",
            ));
        }
        items.push(Item::Action { tokens, line, col });
    }
    Ok(items)
}

/// Offset of the `}}` that closes an action, skipping quoted strings.
fn find_close(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' | b'\'' => {
                let q = b[i];
                i += 1;
                while i < b.len() && b[i] != q {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
            }
            b'`' => {
                i += 1;
                while i < b.len() && b[i] != b'`' {
                    i += 1;
                }
                i += 1;
            }
            b'}' if b.get(i + 1) == Some(&b'}') => return Some(i),
            _ => i += 1,
        }
    }
    None
}

fn ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Reads `.a.b.c` starting at a `.`; returns the names and the bytes consumed.
fn field_chain(s: &str) -> (Vec<String>, usize) {
    let mut path = Vec::new();
    let mut used = 0;
    while let Some(rest) = s[used..].strip_prefix('.') {
        let n: usize = rest
            .chars()
            .take_while(|c| ident_char(*c))
            .map(char::len_utf8)
            .sum();
        if n == 0 {
            break;
        }
        path.push(rest[..n].to_string());
        used += 1 + n;
    }
    (path, used)
}

/// Tokens of one action body.
pub fn tokens(body: &str, name: &str, line: usize) -> Result<Vec<Token>, TemplateError> {
    let err = |m: String| TemplateError::parse(name, line, m);
    let mut out = Vec::new();
    let mut i = 0;
    while i < body.len() {
        let rest = &body[i..];
        let Some(c) = rest.chars().next() else { break };
        if c.is_whitespace() {
            i += c.len_utf8();
            continue;
        }
        match c {
            '|' => {
                out.push(Token::Pipe);
                i += 1;
            }
            '(' => {
                out.push(Token::LParen);
                i += 1;
            }
            ')' => {
                out.push(Token::RParen);
                i += 1;
                let (path, used) = field_chain(&body[i..]);
                if !path.is_empty() {
                    out.push(Token::Field {
                        path,
                        attached: true,
                    });
                    i += used;
                }
            }
            ',' => {
                out.push(Token::Comma);
                i += 1;
            }
            ':' if rest.starts_with(":=") => {
                out.push(Token::Declare);
                i += 2;
            }
            '=' => {
                out.push(Token::Assign);
                i += 1;
            }
            '"' => {
                let (s, used) =
                    quoted(rest).ok_or_else(|| err("unterminated quoted string".into()))?;
                out.push(Token::Str(s));
                i += used;
            }
            '`' => {
                let end = rest[1..]
                    .find('`')
                    .ok_or_else(|| err("unterminated raw quoted string".into()))?;
                out.push(Token::Str(rest[1..1 + end].to_string()));
                i += end + 2;
            }
            '\'' => {
                let (s, used) =
                    quoted(rest).ok_or_else(|| err("unterminated character constant".into()))?;
                let mut cs = s.chars();
                match (cs.next(), cs.next()) {
                    (Some(ch), None) => out.push(Token::Num((ch as u32).into())),
                    _ => {
                        return Err(err(format!(
                            "malformed character constant: {}",
                            &rest[..used]
                        )))
                    }
                }
                i += used;
            }
            '.' => {
                let (path, used) = field_chain(rest);
                if path.is_empty() {
                    if rest[1..].starts_with(|c: char| c.is_ascii_digit()) {
                        return Err(err(format!("bad number syntax: {:?}", word(rest))));
                    }
                    out.push(Token::Dot);
                    i += 1;
                } else {
                    out.push(Token::Field {
                        path,
                        attached: false,
                    });
                    i += used;
                }
            }
            '$' => {
                let n: usize = rest[1..]
                    .chars()
                    .take_while(|c| ident_char(*c))
                    .map(char::len_utf8)
                    .sum();
                let name = format!("${}", &rest[1..1 + n]);
                let (path, used) = field_chain(&rest[1 + n..]);
                out.push(Token::Var { name, path });
                i += 1 + n + used;
            }
            c if c.is_ascii_digit()
                || ((c == '-' || c == '+')
                    && rest[1..].starts_with(|d: char| d.is_ascii_digit())) =>
            {
                let w = word(rest);
                out.push(Token::Num(
                    number(w).ok_or_else(|| err(format!("bad number syntax: {w:?}")))?,
                ));
                i += w.len();
            }
            c if c.is_alphabetic() || c == '_' => {
                let n: usize = rest
                    .chars()
                    .take_while(|c| ident_char(*c))
                    .map(char::len_utf8)
                    .sum();
                out.push(Token::Ident(rest[..n].to_string()));
                i += n;
            }
            other => {
                return Err(err(format!(
                    "bad character U+{:04X} '{other}'",
                    other as u32
                )))
            }
        }
    }
    Ok(out)
}

/// A number-ish word: digits, letters, `.`, `_`, signs (checked by [`number`]).
fn word(s: &str) -> &str {
    let mut n = 0;
    for (i, c) in s.char_indices() {
        let sign_ok = i == 0 || s[..i].ends_with(['e', 'E']);
        if c.is_ascii_alphanumeric() || c == '.' || c == '_' || ((c == '-' || c == '+') && sign_ok)
        {
            n = i + c.len_utf8();
        } else {
            break;
        }
    }
    &s[..n]
}

fn number(w: &str) -> Option<serde_json::Number> {
    let clean = w.replace('_', "");
    let (neg, digits) = match clean.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, clean.strip_prefix('+').unwrap_or(&clean)),
    };
    let int = if let Some(h) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        i64::from_str_radix(h, 16).ok()
    } else {
        digits.parse::<i64>().ok()
    };
    if let Some(v) = int {
        return Some(if neg { (-v).into() } else { v.into() });
    }
    let f: f64 = clean.parse().ok()?;
    serde_json::Number::from_f64(f)
}

/// A Go double- or single-quoted literal at the start of `s`: its value and length.
fn quoted(s: &str) -> Option<(String, usize)> {
    let q = s.chars().next()?;
    let mut out = String::new();
    let mut it = s.char_indices().skip(1);
    while let Some((i, c)) = it.next() {
        match c {
            c if c == q => return Some((out, i + 1)),
            '\n' => return None,
            '\\' => {
                let (_, e) = it.next()?;
                match e {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    '0' => out.push('\0'),
                    'a' => out.push('\u{7}'),
                    'b' => out.push('\u{8}'),
                    'f' => out.push('\u{c}'),
                    'v' => out.push('\u{b}'),
                    '\\' | '"' | '\'' => out.push(e),
                    'x' | 'u' | 'U' => {
                        let n = match e {
                            'x' => 2,
                            'u' => 4,
                            _ => 8,
                        };
                        let mut hex = String::new();
                        for _ in 0..n {
                            hex.push(it.next()?.1);
                        }
                        out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                    }
                    _ => return None,
                }
            }
            c => out.push(c),
        }
    }
    None
}
