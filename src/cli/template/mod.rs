//! Go text/template, as far as podman users write it in `--format`: field paths, `json`,
//! `table`, `range`/`if`/`with`/`else`/`end`, variables, `index`, `join`, `printf`,
//! `{{- -}}` trimming. Templates run against `serde_json::Value`s built by each command.
//!
//! Hand-written rather than a crate: the Rust template engines (tera, handlebars,
//! minijinja) use Jinja or Mustache syntax, and the one Go-syntax port (gtmpl) is
//! unmaintained and evaluates against its own value type. The lexer and parser never
//! panic and bound nesting depth and output size, so any input is safe to feed them.

mod exec;
mod funcs;
mod lex;
mod parse;
#[cfg(test)]
mod tests;

use serde_json::Value;

use parse::{Arg, Node, Pipe};

/// A template that could not be parsed or run; podman's wording, exit 125.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TemplateError {
    #[error("template: {name}:{line}: {msg}")]
    Parse {
        name: String,
        line: usize,
        msg: String,
    },
    #[error("template: {name}:{line}:{col}: executing \"{name}\" at <{at}>: {msg}")]
    Exec {
        name: String,
        line: usize,
        col: usize,
        at: String,
        msg: String,
    },
}

impl TemplateError {
    fn parse(name: &str, line: usize, msg: impl Into<String>) -> TemplateError {
        TemplateError::Parse {
            name: name.to_string(),
            line,
            msg: msg.into(),
        }
    }
}

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    name: String,
    nodes: Vec<Node>,
}

impl Template {
    /// Parses `src`; `name` (the command, as podman names it) appears in errors.
    pub fn parse(name: &str, src: &str) -> Result<Template, TemplateError> {
        let items = lex::split(src, name)?;
        let nodes = parse::Parser::new(items, name).parse()?;
        check_funcs(name, &nodes)?;
        Ok(Template {
            name: name.to_string(),
            nodes,
        })
    }

    /// Runs the template with `data` as `.`.
    pub fn execute(&self, data: &Value) -> Result<String, TemplateError> {
        let mut e = exec::Exec::new(&self.name, data);
        e.run(&self.nodes)?;
        Ok(e.out)
    }

    /// The header row of a `table` template: each action shows the column name of the
    /// first field it uses (`{{.Names}}` → `names("Names")`), text stays as written.
    pub fn header(&self, names: &dyn Fn(&str) -> String) -> String {
        let mut out = String::new();
        header_nodes(&self.nodes, names, &mut out);
        out
    }
}

fn header_nodes(nodes: &[Node], names: &dyn Fn(&str) -> String, out: &mut String) {
    for n in nodes {
        match n {
            Node::Text(t) => out.push_str(t),
            Node::Action(p) if p.decl.is_empty() => {
                if let Some(f) = first_field(p) {
                    out.push_str(&names(&f));
                }
            }
            Node::If { arms, .. } | Node::With { arms, .. } => {
                if let Some((_, body)) = arms.first() {
                    header_nodes(body, names, out);
                }
            }
            Node::Range { body, .. } => header_nodes(body, names, out),
            _ => {}
        }
    }
}

fn first_field(p: &Pipe) -> Option<String> {
    p.cmds.iter().flatten().find_map(|a| match a {
        Arg::Field(path) | Arg::Var(_, path) => path.last().cloned(),
        Arg::Sub(inner, path) => path.last().cloned().or_else(|| first_field(inner)),
        _ => None,
    })
}

/// Unknown functions are a parse error, as in Go, even in branches never taken.
fn check_funcs(name: &str, nodes: &[Node]) -> Result<(), TemplateError> {
    fn pipe(name: &str, p: &Pipe) -> Result<(), TemplateError> {
        for a in p.cmds.iter().flatten() {
            match a {
                Arg::Ident(f) if !funcs::NAMES.contains(&f.as_str()) => {
                    return Err(TemplateError::parse(
                        name,
                        p.pos.line,
                        format!("function {f:?} not defined"),
                    ))
                }
                Arg::Sub(inner, _) => pipe(name, inner)?,
                _ => {}
            }
        }
        Ok(())
    }
    for n in nodes {
        match n {
            Node::Action(p) => pipe(name, p)?,
            Node::If { arms, otherwise } | Node::With { arms, otherwise } => {
                for (p, body) in arms {
                    pipe(name, p)?;
                    check_funcs(name, body)?;
                }
                check_funcs(name, otherwise)?;
            }
            Node::Range {
                pipe: p,
                body,
                otherwise,
            } => {
                pipe(name, p)?;
                check_funcs(name, body)?;
                check_funcs(name, otherwise)?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// What `--format` asked for.
#[derive(Debug, Clone)]
pub enum Format {
    /// No --format (or plain `table`): the command's own table.
    Default,
    /// `json`: the command's JSON document.
    Json,
    /// A Go template, run once per item; `table` adds a header row and aligns columns.
    Template { tpl: Template, table: bool },
}

impl Format {
    /// Parses a `--format` value as podman does: `json`, `table [TEMPLATE]`, or a
    /// template; `\t` and `\n` written literally become tab and newline, and every item
    /// ends with a newline.
    pub fn parse(name: &str, value: Option<&str>) -> Result<Format, TemplateError> {
        let Some(v) = value else {
            return Ok(Format::Default);
        };
        let t = v.trim();
        if t.is_empty() || t == "table" {
            return Ok(Format::Default);
        }
        if t == "json" {
            return Ok(Format::Json);
        }
        let (table, body) = match v.trim_start().strip_prefix("table") {
            Some(rest) if rest.starts_with(|c: char| c.is_whitespace()) => (true, &rest[1..]),
            _ => (false, v),
        };
        let mut src = body.replace("\\t", "\t").replace("\\n", "\n");
        if !src.ends_with('\n') {
            src.push('\n');
        }
        Ok(Format::Template {
            tpl: Template::parse(name, &src)?,
            table,
        })
    }

    /// Renders items with a template format (`Default`/`Json` render nothing here).
    pub fn render(
        &self,
        items: &[Value],
        names: &dyn Fn(&str) -> String,
    ) -> Result<String, TemplateError> {
        let Format::Template { tpl, table } = self else {
            return Ok(String::new());
        };
        let mut out = String::new();
        if *table {
            out.push_str(&tpl.header(names));
        }
        for i in items {
            out.push_str(&tpl.execute(i)?);
        }
        Ok(if *table { align(&out) } else { out })
    }
}

/// A column title from a field name, as podman derives them: `CreatedAt` → `CREATED AT`,
/// `ImageID` → `IMAGE ID`.
pub fn header_name(field: &str) -> String {
    let cs: Vec<char> = field.chars().collect();
    let mut out = String::new();
    for (i, &c) in cs.iter().enumerate() {
        if i > 0 && c.is_uppercase() {
            let prev = cs[i - 1];
            let next_lower = cs.get(i + 1).is_some_and(|n| n.is_lowercase());
            if prev.is_lowercase() || prev.is_ascii_digit() || (prev.is_uppercase() && next_lower) {
                out.push(' ');
            }
        }
        out.extend(c.to_uppercase());
    }
    out
}

/// Aligns tab-separated cells into columns like Go's tabwriter with podman's settings
/// (minimum cell width 12, padding 2); text after the last tab of a line is not padded.
pub fn align(text: &str) -> String {
    let lines: Vec<Vec<&str>> = text.split('\n').map(|l| l.split('\t').collect()).collect();
    let mut widths: Vec<usize> = Vec::new();
    for cells in &lines {
        for (j, c) in cells.iter().take(cells.len().saturating_sub(1)).enumerate() {
            let w = c.chars().count();
            if j >= widths.len() {
                widths.push(w);
            } else {
                widths[j] = widths[j].max(w);
            }
        }
    }
    let mut out = String::with_capacity(text.len());
    for (n, cells) in lines.iter().enumerate() {
        if n > 0 {
            out.push('\n');
        }
        let last = cells.len() - 1;
        for (j, c) in cells.iter().enumerate() {
            out.push_str(c);
            if j < last {
                let w = (widths[j] + 2).max(12);
                out.push_str(&" ".repeat(w - c.chars().count()));
            }
        }
    }
    out
}
