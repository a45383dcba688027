//! Running a parsed template against a JSON value, with Go's text/template rules for
//! truth, printing, variables and scopes.

use serde_json::Value;

use super::funcs;
use super::parse::{Arg, Node, Pipe, Pos};
use super::TemplateError;

/// Fields whose values are maps (user keys), not structs: a missing key there prints
/// `<no value>` as in Go, where a missing struct field is an error.
const MAP_FIELDS: &[&str] = &[
    "Labels",
    "Annotations",
    "Ports",
    "ExposedPorts",
    "PortBindings",
    "Networks",
    "Volumes",
    "Options",
    "Data",
    "Tmpfs",
    "Sysctls",
    "StorageOpt",
];

/// Output larger than this is refused: a template cannot be used to exhaust memory.
const MAX_OUTPUT: usize = 64 << 20;

enum Flow {
    Normal,
    Break,
    Continue,
}

pub struct Exec<'a> {
    pub name: &'a str,
    pub root: &'a Value,
    vars: Vec<(String, Value)>,
    pub out: String,
}

impl<'a> Exec<'a> {
    pub fn new(name: &'a str, root: &'a Value) -> Self {
        Exec {
            name,
            root,
            vars: vec![("$".into(), root.clone())],
            out: String::new(),
        }
    }

    pub fn run(&mut self, nodes: &[Node]) -> Result<(), TemplateError> {
        let root = self.root;
        self.walk(root, nodes).map(|_| ())
    }

    fn err(&self, pos: &Pos, at: impl Into<String>, msg: impl Into<String>) -> TemplateError {
        TemplateError::Exec {
            name: self.name.to_string(),
            line: pos.line,
            col: pos.col,
            at: at.into(),
            msg: msg.into(),
        }
    }

    fn walk(&mut self, dot: &Value, nodes: &[Node]) -> Result<Flow, TemplateError> {
        for n in nodes {
            if self.out.len() > MAX_OUTPUT {
                return Err(TemplateError::parse(self.name, 1, "output too large"));
            }
            match n {
                Node::Text(t) => self.out.push_str(t),
                Node::Action(p) => {
                    let v = self.pipe(dot, p)?;
                    if p.decl.is_empty() {
                        self.out.push_str(&display(&v));
                    }
                }
                Node::If { arms, otherwise } | Node::With { arms, otherwise } => {
                    let with = matches!(n, Node::With { .. });
                    let mark = self.vars.len();
                    let mut taken = None;
                    for (p, body) in arms {
                        let v = self.pipe(dot, p)?;
                        if truth(&v) {
                            taken = Some((v, body));
                            break;
                        }
                    }
                    let flow = match taken {
                        Some((v, body)) if with => self.walk(&v, body),
                        Some((_, body)) => self.walk(dot, body),
                        None => self.walk(dot, otherwise),
                    };
                    self.vars.truncate(mark);
                    match flow? {
                        Flow::Normal => {}
                        f => return Ok(f),
                    }
                }
                Node::Range {
                    pipe,
                    body,
                    otherwise,
                } => {
                    let v = self.cmds(dot, pipe)?;
                    let items: Vec<(Value, Value)> = match v {
                        Value::Array(a) => a
                            .into_iter()
                            .enumerate()
                            .map(|(i, e)| (Value::from(i), e))
                            .collect(),
                        Value::Object(m) => {
                            let mut kv: Vec<(String, Value)> = m.into_iter().collect();
                            kv.sort_by(|a, b| a.0.cmp(&b.0));
                            kv.into_iter().map(|(k, e)| (Value::String(k), e)).collect()
                        }
                        Value::Number(n) if n.as_u64().is_some() => {
                            (0..n.as_u64().unwrap_or(0).min(1 << 20))
                                .map(|i| (Value::from(i), Value::from(i)))
                                .collect()
                        }
                        Value::Null | Value::Bool(false) => Vec::new(),
                        other => {
                            return Err(self.err(
                                &pipe.pos,
                                "range",
                                format!("range can't iterate over {}", display(&other)),
                            ))
                        }
                    };
                    if items.is_empty() {
                        match self.walk(dot, otherwise)? {
                            Flow::Normal => {}
                            f => return Ok(f),
                        }
                        continue;
                    }
                    for (k, e) in items {
                        let mark = self.vars.len();
                        match pipe.decl.as_slice() {
                            [one] => self.vars.push((one.clone(), e.clone())),
                            [a, b] => {
                                self.vars.push((a.clone(), k));
                                self.vars.push((b.clone(), e.clone()));
                            }
                            _ => {}
                        }
                        let flow = self.walk(&e, body);
                        self.vars.truncate(mark);
                        match flow? {
                            Flow::Break => break,
                            Flow::Continue | Flow::Normal => {}
                        }
                    }
                }
                Node::Break => return Ok(Flow::Break),
                Node::Continue => return Ok(Flow::Continue),
            }
        }
        Ok(Flow::Normal)
    }

    /// A pipeline's value, declaring or assigning its variable if it has one.
    fn pipe(&mut self, dot: &Value, p: &Pipe) -> Result<Value, TemplateError> {
        let v = self.cmds(dot, p)?;
        if let Some(name) = p.decl.first() {
            if p.assign {
                match self.vars.iter_mut().rev().find(|(n, _)| n == name) {
                    Some(slot) => slot.1 = v.clone(),
                    None => {
                        return Err(self.err(
                            &p.pos,
                            name.clone(),
                            format!("undefined variable: {name}"),
                        ))
                    }
                }
            } else {
                self.vars.push((name.clone(), v.clone()));
            }
        }
        Ok(v)
    }

    fn cmds(&mut self, dot: &Value, p: &Pipe) -> Result<Value, TemplateError> {
        let mut piped: Option<Value> = None;
        for cmd in &p.cmds {
            piped = Some(self.cmd(dot, cmd, piped, &p.pos)?);
        }
        Ok(piped.unwrap_or(Value::Null))
    }

    fn cmd(
        &mut self,
        dot: &Value,
        args: &[Arg],
        piped: Option<Value>,
        pos: &Pos,
    ) -> Result<Value, TemplateError> {
        let Some(first) = args.first() else {
            return Ok(Value::Null);
        };
        if let Arg::Ident(f) = first {
            let mut vals = Vec::with_capacity(args.len());
            for a in &args[1..] {
                vals.push(self.arg(dot, a, pos)?);
            }
            vals.extend(piped);
            return funcs::call(f, vals).map_err(|m| self.err(pos, f.clone(), m));
        }
        if args.len() > 1 || piped.is_some() {
            return Err(self.err(
                pos,
                first.show(),
                format!("can't give argument to non-function {}", first.show()),
            ));
        }
        self.arg(dot, first, pos)
    }

    fn arg(&mut self, dot: &Value, a: &Arg, pos: &Pos) -> Result<Value, TemplateError> {
        Ok(match a {
            Arg::Dot => dot.clone(),
            Arg::Field(path) => self.chain(dot.clone(), path, a, pos)?,
            Arg::Var(name, path) => {
                let v = self
                    .vars
                    .iter()
                    .rev()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone())
                    .ok_or_else(|| {
                        self.err(pos, name.clone(), format!("undefined variable: {name}"))
                    })?;
                self.chain(v, path, a, pos)?
            }
            Arg::Ident(f) => funcs::call(f, Vec::new()).map_err(|m| self.err(pos, f.clone(), m))?,
            Arg::Str(s) => Value::String(s.clone()),
            Arg::Num(n) => Value::Number(n.clone()),
            Arg::Bool(b) => Value::Bool(*b),
            Arg::Nil => Value::Null,
            Arg::Sub(p, path) => {
                let v = self.cmds(dot, p)?;
                self.chain(v, path, a, pos)?
            }
        })
    }

    fn chain(
        &self,
        start: Value,
        path: &[String],
        a: &Arg,
        pos: &Pos,
    ) -> Result<Value, TemplateError> {
        let mut cur = start;
        let mut via: Option<&str> = None;
        for f in path {
            cur = match cur {
                Value::Object(mut m) => {
                    let key = if m.contains_key(f) {
                        Some(f.clone())
                    } else {
                        m.keys().find(|k| k.eq_ignore_ascii_case(f)).cloned()
                    };
                    match key.and_then(|k| m.remove(&k)) {
                        Some(v) => v,
                        None if m.is_empty() || via.is_some_and(|v| MAP_FIELDS.contains(&v)) => {
                            Value::Null
                        }
                        None => {
                            return Err(self.err(
                                pos,
                                a.show(),
                                format!("can't evaluate field {f}"),
                            ))
                        }
                    }
                }
                // A nil pointer in Go; lenient here so optional sections print <no value>.
                Value::Null => Value::Null,
                other => {
                    return Err(self.err(
                        pos,
                        a.show(),
                        format!("can't evaluate field {f} in type {}", type_name(&other)),
                    ))
                }
            };
            via = Some(f);
        }
        Ok(cur)
    }
}

pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "nil",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float64",
        Value::Number(_) => "int",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

/// Go's truth: false, 0, nil and empty strings, lists and maps are false.
pub fn truth(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(m) => !m.is_empty(),
    }
}

/// How `{{.X}}` prints a value (Go's %v): lists as `[a b]`, maps as `map[k:v]`.
pub fn display(v: &Value) -> String {
    match v {
        Value::Null => "<no value>".into(),
        other => inner(other),
    }
}

fn inner(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Array(a) => format!("[{}]", a.iter().map(inner).collect::<Vec<_>>().join(" ")),
        Value::Object(m) => {
            let mut kv: Vec<(&String, &Value)> = m.iter().collect();
            kv.sort_by(|a, b| a.0.cmp(b.0));
            format!(
                "map[{}]",
                kv.iter()
                    .map(|(k, v)| format!("{k}:{}", inner(v)))
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        }
    }
}
