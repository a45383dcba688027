//! The template's tree: text, actions (pipelines) and if/range/with blocks, built by
//! recursive descent over the lexer's items. Nesting is bounded so no input can
//! exhaust the stack.

use super::lex::{Item, Token};
use super::TemplateError;

const MAX_DEPTH: usize = 64;

/// Where an action starts, and its source, for error messages.
#[derive(Debug, Clone, PartialEq)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Text(String),
    Action(Pipe),
    If {
        arms: Vec<(Pipe, Vec<Node>)>,
        otherwise: Vec<Node>,
    },
    With {
        arms: Vec<(Pipe, Vec<Node>)>,
        otherwise: Vec<Node>,
    },
    Range {
        pipe: Pipe,
        body: Vec<Node>,
        otherwise: Vec<Node>,
    },
    Break,
    Continue,
}

/// `[$a[, $b] :=|=] cmd | cmd ...`
#[derive(Debug, Clone, PartialEq)]
pub struct Pipe {
    pub decl: Vec<String>,
    /// `=` (assign to existing variables) rather than `:=`.
    pub assign: bool,
    pub cmds: Vec<Vec<Arg>>,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    Dot,
    Field(Vec<String>),
    Var(String, Vec<String>),
    Ident(String),
    Str(String),
    Num(serde_json::Number),
    Bool(bool),
    Nil,
    Sub(Box<Pipe>, Vec<String>),
}

impl Arg {
    /// How the operand is written, for "at <...>" in errors.
    pub fn show(&self) -> String {
        let chain = |p: &[String]| p.iter().map(|f| format!(".{f}")).collect::<String>();
        match self {
            Arg::Dot => ".".into(),
            Arg::Field(p) => chain(p),
            Arg::Var(n, p) => format!("{n}{}", chain(p)),
            Arg::Ident(n) => n.clone(),
            Arg::Str(s) => format!("{s:?}"),
            Arg::Num(n) => n.to_string(),
            Arg::Bool(b) => b.to_string(),
            Arg::Nil => "nil".into(),
            Arg::Sub(_, p) => format!("(...){}", chain(p)),
        }
    }
}

enum Stop {
    End,
    Else(Vec<Token>, Pos),
    Eof,
}

pub struct Parser<'a> {
    items: Vec<Item>,
    i: usize,
    name: &'a str,
    depth: usize,
}

impl<'a> Parser<'a> {
    pub fn new(items: Vec<Item>, name: &'a str) -> Self {
        Parser {
            items,
            i: 0,
            name,
            depth: 0,
        }
    }

    fn err(&self, line: usize, msg: impl Into<String>) -> TemplateError {
        TemplateError::parse(self.name, line, msg)
    }

    /// The whole template.
    pub fn parse(mut self) -> Result<Vec<Node>, TemplateError> {
        let (nodes, stop) = self.list()?;
        match stop {
            Stop::Eof => Ok(nodes),
            Stop::End => Err(self.err(self.line(), "unexpected {{end}}")),
            Stop::Else(_, p) => Err(self.err(p.line, "unexpected {{else}}")),
        }
    }

    fn line(&self) -> usize {
        match self.items.get(self.i.saturating_sub(1)) {
            Some(Item::Action { line, .. }) => *line,
            _ => 1,
        }
    }

    fn list(&mut self) -> Result<(Vec<Node>, Stop), TemplateError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err(self.line(), "template nested too deeply"));
        }
        let mut nodes = Vec::new();
        while let Some(item) = self.items.get(self.i).cloned() {
            self.i += 1;
            let (tokens, line, col) = match item {
                Item::Text(t) => {
                    nodes.push(Node::Text(t));
                    continue;
                }
                Item::Action { tokens, line, col } => (tokens, line, col),
            };
            let pos = Pos { line, col };
            let rest = tokens.get(1..).unwrap_or_default().to_vec();
            match tokens.first() {
                Some(Token::Ident(k)) if k == "end" => {
                    self.no_args(&rest, line, "end")?;
                    self.depth -= 1;
                    return Ok((nodes, Stop::End));
                }
                Some(Token::Ident(k)) if k == "else" => {
                    self.depth -= 1;
                    return Ok((nodes, Stop::Else(rest, pos)));
                }
                Some(Token::Ident(k)) if k == "if" || k == "with" => {
                    let kw = k.clone();
                    nodes.push(self.cond(&kw, rest, pos)?);
                }
                Some(Token::Ident(k)) if k == "range" => {
                    let pipe = self.pipe(&rest, pos, true)?;
                    let (body, stop) = self.list()?;
                    let otherwise = match stop {
                        Stop::End => Vec::new(),
                        Stop::Else(r, p) if r.is_empty() => {
                            let (o, stop) = self.list()?;
                            self.expect_end(stop, p.line, "range")?;
                            o
                        }
                        Stop::Else(_, p) => {
                            return Err(self.err(p.line, "unexpected else-clause in range"))
                        }
                        Stop::Eof => return Err(self.err(line, "unexpected EOF in range")),
                    };
                    nodes.push(Node::Range {
                        pipe,
                        body,
                        otherwise,
                    });
                }
                Some(Token::Ident(k)) if k == "break" || k == "continue" => {
                    self.no_args(&rest, line, k)?;
                    nodes.push(if k == "break" {
                        Node::Break
                    } else {
                        Node::Continue
                    });
                }
                Some(Token::Ident(k)) if ["define", "template", "block"].contains(&k.as_str()) => {
                    return Err(self.err(line, format!("{{{{{k}}}}} is not supported")));
                }
                _ => nodes.push(Node::Action(self.pipe(&tokens, pos, false)?)),
            }
        }
        self.depth -= 1;
        Ok((nodes, Stop::Eof))
    }

    fn no_args(&self, rest: &[Token], line: usize, kw: &str) -> Result<(), TemplateError> {
        if rest.is_empty() {
            Ok(())
        } else {
            Err(self.err(line, format!("unexpected arguments after {kw}")))
        }
    }

    fn expect_end(&self, stop: Stop, line: usize, kw: &str) -> Result<(), TemplateError> {
        match stop {
            Stop::End => Ok(()),
            Stop::Else(_, p) => Err(self.err(p.line, format!("expected end; found else in {kw}"))),
            Stop::Eof => Err(self.err(line, format!("unexpected EOF in {kw}"))),
        }
    }

    /// `if`/`with` with their `else if`/`else with` chains.
    fn cond(&mut self, kw: &str, tokens: Vec<Token>, pos: Pos) -> Result<Node, TemplateError> {
        let mut arms = Vec::new();
        let mut head = (tokens, pos);
        let otherwise = loop {
            let pipe = self.pipe(&head.0, head.1.clone(), kw == "with")?;
            let (body, stop) = self.list()?;
            arms.push((pipe, body));
            match stop {
                Stop::End => break Vec::new(),
                Stop::Eof => return Err(self.err(head.1.line, format!("unexpected EOF in {kw}"))),
                Stop::Else(r, p) if r.is_empty() => {
                    let (o, stop) = self.list()?;
                    self.expect_end(stop, p.line, kw)?;
                    break o;
                }
                Stop::Else(r, p) => match r.first() {
                    Some(Token::Ident(k)) if k == kw => head = (r[1..].to_vec(), p),
                    _ => {
                        return Err(
                            self.err(p.line, format!("unexpected tokens after else in {kw}"))
                        )
                    }
                },
            }
        };
        Ok(if kw == "if" {
            Node::If { arms, otherwise }
        } else {
            Node::With { arms, otherwise }
        })
    }

    /// A pipeline, with an optional variable declaration (two variables only in range).
    fn pipe(&self, tokens: &[Token], pos: Pos, allow_decl: bool) -> Result<Pipe, TemplateError> {
        let line = pos.line;
        let mut decl = Vec::new();
        let mut assign = false;
        let mut t = tokens;
        // `$x :=`, `$x =`, `$i, $e :=`
        let decl_end = t
            .iter()
            .position(|k| matches!(k, Token::Declare | Token::Assign));
        if let Some(end) = decl_end {
            let names = &t[..end];
            let ok = match names {
                [Token::Var { name, path }] if path.is_empty() => {
                    decl.push(name.clone());
                    true
                }
                [Token::Var { name: a, path: pa }, Token::Comma, Token::Var { name: b, path: pb }]
                    if pa.is_empty() && pb.is_empty() && allow_decl =>
                {
                    decl.push(a.clone());
                    decl.push(b.clone());
                    true
                }
                _ => false,
            };
            if !ok {
                return Err(self.err(line, "bad variable declaration"));
            }
            assign = matches!(t[end], Token::Assign);
            t = &t[end + 1..];
        }
        let cmds = self.sub_pipe(t, line, 0)?.cmds;
        Ok(Pipe {
            decl,
            assign,
            cmds,
            pos,
        })
    }

    fn operand(
        &self,
        t: &[Token],
        k: &mut usize,
        line: usize,
        depth: usize,
    ) -> Result<Arg, TemplateError> {
        if depth > MAX_DEPTH {
            return Err(self.err(line, "parentheses nested too deeply"));
        }
        let tok = t
            .get(*k)
            .cloned()
            .ok_or_else(|| self.err(line, "missing operand"))?;
        *k += 1;
        Ok(match tok {
            Token::Dot => Arg::Dot,
            Token::Field {
                path,
                attached: false,
            } => Arg::Field(path),
            Token::Var { name, path } => Arg::Var(name, path),
            Token::Ident(n) if n == "true" => Arg::Bool(true),
            Token::Ident(n) if n == "false" => Arg::Bool(false),
            Token::Ident(n) if n == "nil" => Arg::Nil,
            Token::Ident(n) => Arg::Ident(n),
            Token::Str(s) => Arg::Str(s),
            Token::Num(n) => Arg::Num(n),
            Token::LParen => {
                // Find the matching parenthesis, then parse what is inside as a pipeline.
                let mut level = 1;
                let start = *k;
                while level > 0 {
                    match t.get(*k) {
                        Some(Token::LParen) => level += 1,
                        Some(Token::RParen) => level -= 1,
                        Some(_) => {}
                        None => return Err(self.err(line, "unclosed left paren")),
                    }
                    *k += 1;
                }
                let inner = &t[start..*k - 1];
                let pipe = self.sub_pipe(inner, line, depth + 1)?;
                let path = match t.get(*k) {
                    Some(Token::Field {
                        path,
                        attached: true,
                    }) => {
                        *k += 1;
                        path.clone()
                    }
                    _ => Vec::new(),
                };
                Arg::Sub(Box::new(pipe), path)
            }
            other => return Err(self.err(line, format!("unexpected {} in operand", show(&other)))),
        })
    }

    fn sub_pipe(&self, t: &[Token], line: usize, depth: usize) -> Result<Pipe, TemplateError> {
        let mut cmds = Vec::new();
        for part in split_pipe(t) {
            if part.is_empty() {
                return Err(self.err(line, "missing command in pipeline"));
            }
            let mut k = 0;
            let mut args = Vec::new();
            while k < part.len() {
                args.push(self.operand(part, &mut k, line, depth)?);
            }
            cmds.push(args);
        }
        if cmds.is_empty() {
            return Err(self.err(line, "missing value for command"));
        }
        Ok(Pipe {
            decl: Vec::new(),
            assign: false,
            cmds,
            pos: Pos { line, col: 0 },
        })
    }
}

/// Splits tokens at top-level `|` (not inside parentheses).
fn split_pipe(t: &[Token]) -> Vec<&[Token]> {
    if t.is_empty() {
        return Vec::new();
    }
    let mut parts = Vec::new();
    let mut level = 0i32;
    let mut start = 0;
    for (i, tok) in t.iter().enumerate() {
        match tok {
            Token::LParen => level += 1,
            Token::RParen => level -= 1,
            Token::Pipe if level == 0 => {
                parts.push(&t[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&t[start..]);
    parts
}

fn show(t: &Token) -> &'static str {
    match t {
        Token::Pipe => "\"|\"",
        Token::RParen => "\")\"",
        Token::LParen => "\"(\"",
        Token::Comma => "\",\"",
        Token::Declare => "\":=\"",
        Token::Assign => "\"=\"",
        Token::Field { .. } => "field",
        _ => "token",
    }
}
