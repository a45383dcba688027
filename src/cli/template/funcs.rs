//! The functions a podman user's template can call: Go's builtins (printf, index, len,
//! eq, and, ...) and podman's additions (json, join, upper, lower, title, split,
//! truncate, pad).

use serde_json::Value;

use super::exec::{display, truth, type_name};

/// Every function name a template may use (checked when the template is parsed).
pub const NAMES: &[&str] = &[
    "json", "index", "join", "upper", "lower", "title", "split", "truncate", "pad", "printf",
    "print", "println", "len", "eq", "ne", "lt", "le", "gt", "ge", "and", "or", "not",
];

/// Widths and precisions beyond this are refused rather than allocated.
const MAX_WIDTH: usize = 4096;

fn want(name: &str, args: &[Value], n: usize) -> Result<(), String> {
    if args.len() == n {
        Ok(())
    } else {
        Err(format!(
            "wrong number of args for {name}: want {n} got {}",
            args.len()
        ))
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => display(other),
    }
}

fn int(name: &str, v: &Value) -> Result<i64, String> {
    v.as_i64()
        .ok_or_else(|| format!("{name}: expected an integer, got {}", type_name(v)))
}

/// Calls function `name`; the error is the message without position.
pub fn call(name: &str, args: Vec<Value>) -> Result<Value, String> {
    match name {
        "json" => {
            want(name, &args, 1)?;
            serde_json::to_string(&args[0])
                .map(Value::String)
                .map_err(|e| e.to_string())
        }
        "index" => {
            let mut it = args.into_iter();
            let mut cur = it
                .next()
                .ok_or("wrong number of args for index: want at least 1 got 0")?;
            for k in it {
                cur = match (cur, &k) {
                    (Value::Array(mut a), Value::Number(n)) => {
                        let i = n
                            .as_u64()
                            .and_then(|i| usize::try_from(i).ok())
                            .filter(|i| *i < a.len())
                            .ok_or_else(|| {
                                format!("error calling index: index out of range: {n}")
                            })?;
                        a.swap_remove(i)
                    }
                    // Go's index yields the map's zero value for a missing key: "" for
                    // podman's string maps (Labels, Annotations), so `[ -z "$(...)" ]` works.
                    (Value::Object(mut m), Value::String(s)) => match m.remove(s) {
                        Some(v) => v,
                        None if m.values().all(Value::is_string) => Value::String(String::new()),
                        None => Value::Null,
                    },
                    (Value::Null, _) => {
                        return Err("error calling index: index of untyped nil".into())
                    }
                    (c, k) => {
                        return Err(format!(
                            "error calling index: cannot index {} with {}",
                            type_name(&c),
                            type_name(k)
                        ))
                    }
                };
            }
            Ok(cur)
        }
        "join" => {
            want(name, &args, 2)?;
            let (list, sep) = match (&args[0], &args[1]) {
                (Value::String(s), l @ Value::Array(_)) => (l, s),
                (l, Value::String(s)) => (l, s),
                _ => return Err("join: expected a list and a separator string".into()),
            };
            Ok(Value::String(match list {
                Value::Array(a) => a.iter().map(text).collect::<Vec<_>>().join(sep),
                Value::Null => String::new(),
                other => text(other),
            }))
        }
        "upper" | "lower" | "title" => {
            want(name, &args, 1)?;
            let s = text(&args[0]);
            Ok(Value::String(match name {
                "upper" => s.to_uppercase(),
                "lower" => s.to_lowercase(),
                _ => title(&s),
            }))
        }
        "split" => {
            want(name, &args, 2)?;
            let (s, sep) = (text(&args[0]), text(&args[1]));
            let parts: Vec<Value> = if sep.is_empty() {
                s.chars().map(|c| Value::String(c.to_string())).collect()
            } else {
                s.split(sep.as_str())
                    .map(|p| Value::String(p.into()))
                    .collect()
            };
            Ok(Value::Array(parts))
        }
        "truncate" => {
            want(name, &args, 2)?;
            let n = usize::try_from(int(name, &args[1])?).unwrap_or(0);
            Ok(Value::String(text(&args[0]).chars().take(n).collect()))
        }
        "pad" => {
            want(name, &args, 3)?;
            let b = usize::try_from(int(name, &args[1])?)
                .unwrap_or(0)
                .min(MAX_WIDTH);
            let a = usize::try_from(int(name, &args[2])?)
                .unwrap_or(0)
                .min(MAX_WIDTH);
            Ok(Value::String(format!(
                "{}{}{}",
                " ".repeat(b),
                text(&args[0]),
                " ".repeat(a)
            )))
        }
        "printf" => {
            let mut it = args.into_iter();
            let f = it
                .next()
                .ok_or("wrong number of args for printf: want at least 1 got 0")?;
            Ok(Value::String(sprintf(&text(&f), &it.collect::<Vec<_>>())))
        }
        "print" | "println" => {
            let mut s = String::new();
            for (i, a) in args.iter().enumerate() {
                let both_non_string = i > 0 && !args[i - 1].is_string() && !a.is_string();
                if i > 0 && (name == "println" || both_non_string) {
                    s.push(' ');
                }
                s.push_str(&display_plain(a));
            }
            if name == "println" {
                s.push('\n');
            }
            Ok(Value::String(s))
        }
        "len" => {
            want(name, &args, 1)?;
            match &args[0] {
                Value::Array(a) => Ok(a.len().into()),
                Value::Object(m) => Ok(m.len().into()),
                Value::String(s) => Ok(s.len().into()),
                other => Err(format!(
                    "error calling len: len of type {}",
                    type_name(other)
                )),
            }
        }
        "not" => {
            want(name, &args, 1)?;
            Ok(Value::Bool(!truth(&args[0])))
        }
        "and" | "or" => {
            if args.is_empty() {
                return Err(format!(
                    "wrong number of args for {name}: want at least 1 got 0"
                ));
            }
            let stop = name == "or";
            let last = args.len() - 1;
            for (i, a) in args.into_iter().enumerate() {
                if truth(&a) == stop || i == last {
                    return Ok(a);
                }
            }
            Ok(Value::Null)
        }
        "eq" => {
            if args.len() < 2 {
                return Err("missing argument for comparison".into());
            }
            Ok(Value::Bool(args[1..].iter().any(|b| equal(&args[0], b))))
        }
        "ne" => {
            want(name, &args, 2)?;
            Ok(Value::Bool(!equal(&args[0], &args[1])))
        }
        "lt" | "le" | "gt" | "ge" => {
            want(name, &args, 2)?;
            let ord = match (&args[0], &args[1]) {
                (Value::Number(a), Value::Number(b)) => a
                    .as_f64()
                    .zip(b.as_f64())
                    .and_then(|(a, b)| a.partial_cmp(&b)),
                (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
                (a, b) => {
                    return Err(format!(
                        "error calling {name}: incompatible types for comparison: {} and {}",
                        type_name(a),
                        type_name(b)
                    ))
                }
            }
            .ok_or_else(|| format!("error calling {name}: values are not comparable"))?;
            use std::cmp::Ordering::*;
            Ok(Value::Bool(match name {
                "lt" => ord == Less,
                "le" => ord != Greater,
                "gt" => ord == Greater,
                _ => ord != Less,
            }))
        }
        other => Err(format!("function {other:?} not defined")),
    }
}

fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn display_plain(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".into(),
        other => display(other),
    }
}

/// Go's deprecated strings.Title: upper-cases the first letter of each word.
fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        if start && c.is_alphabetic() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = !(c.is_alphanumeric() || c == '_' || c == '\'');
    }
    out
}

/// Go's fmt.Sprintf for the verbs templates use: %v %s %d %q %x %X %o %b %c %t %f %e %g
/// %%, with flags `-` `0` `+` and width/precision.
pub fn sprintf(f: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut next = 0;
    let mut chars = f.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let (mut minus, mut zero, mut plus) = (false, false, false);
        while let Some(&fl) = chars.peek() {
            match fl {
                '-' => minus = true,
                '0' => zero = true,
                '+' => plus = true,
                ' ' | '#' => {}
                _ => break,
            }
            chars.next();
        }
        let mut width = 0usize;
        while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
            width = (width * 10 + d as usize).min(MAX_WIDTH);
            chars.next();
        }
        let mut prec = None;
        if chars.peek() == Some(&'.') {
            chars.next();
            let mut p = 0usize;
            while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
                p = (p * 10 + d as usize).min(MAX_WIDTH);
                chars.next();
            }
            prec = Some(p);
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(next) else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        next += 1;
        let numeric = arg.is_number();
        let s = match verb {
            'v' | 's' => {
                let s = display_plain(arg);
                match (verb, prec) {
                    ('s', Some(p)) => s.chars().take(p).collect(),
                    _ => s,
                }
            }
            'q' => serde_json::to_string(&text(arg)).unwrap_or_default(),
            'd' => match arg.as_i64() {
                Some(i) if plus && i >= 0 => format!("+{i}"),
                Some(i) => i.to_string(),
                None => format!("%!d({}={})", type_name(arg), display_plain(arg)),
            },
            'x' | 'X' | 'o' | 'b' => match (arg.as_i64(), arg) {
                (Some(i), _) => match verb {
                    'x' => format!("{i:x}"),
                    'X' => format!("{i:X}"),
                    'o' => format!("{i:o}"),
                    _ => format!("{i:b}"),
                },
                (None, Value::String(s)) if verb == 'x' => hex::encode(s),
                (None, Value::String(s)) if verb == 'X' => hex::encode_upper(s),
                _ => format!("%!{verb}({}={})", type_name(arg), display_plain(arg)),
            },
            'c' => arg
                .as_u64()
                .and_then(|u| u32::try_from(u).ok())
                .and_then(char::from_u32)
                .map(String::from)
                .unwrap_or_else(|| format!("%!c({}={})", type_name(arg), display_plain(arg))),
            't' => match arg {
                Value::Bool(b) => b.to_string(),
                _ => format!("%!t({}={})", type_name(arg), display_plain(arg)),
            },
            'f' | 'F' | 'e' | 'g' => match arg.as_f64() {
                Some(x) => {
                    let p = prec.unwrap_or(6);
                    match verb {
                        'e' => format!("{x:.p$e}"),
                        'g' => x.to_string(),
                        _ => format!("{x:.p$}"),
                    }
                }
                None => format!("%!{verb}({}={})", type_name(arg), display_plain(arg)),
            },
            other => format!("%!{other}({}={})", type_name(arg), display_plain(arg)),
        };
        let len = s.chars().count();
        if len >= width {
            out.push_str(&s);
        } else if minus {
            out.push_str(&s);
            out.push_str(&" ".repeat(width - len));
        } else if zero && numeric {
            let (sign, digits) = match s.strip_prefix('-') {
                Some(d) => ("-", d),
                None => ("", s.as_str()),
            };
            out.push_str(sign);
            out.push_str(&"0".repeat(width - len));
            out.push_str(digits);
        } else {
            out.push_str(&" ".repeat(width - len));
            out.push_str(&s);
        }
    }
    if next < args.len() {
        let extra: Vec<String> = args[next..]
            .iter()
            .map(|a| format!("{}={}", type_name(a), display_plain(a)))
            .collect();
        out.push_str(&format!("%!(EXTRA {})", extra.join(", ")));
    }
    out
}
