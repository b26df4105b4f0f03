//! Swarm's per-task templates: the part of Go's `text/template` that Docker uses in secrets and
//! configs with `templateDriver: golang` (rendered when the file is written) and in a
//! service's hostname, environment values and mount sources and targets (`expand_container`,
//! before the container is created), e.g. `hostname: "{{.Node.Hostname}}-{{.Task.Slot}}"`.
//!
//! What a template can say, as in SwarmKit's `template` package:
//! * fields: `.Service.ID`, `.Service.Name`, `.Service.Labels` (and `.Service.Labels.KEY`),
//!   `.Node.ID`, `.Node.Hostname`, `.Node.Platform.OS`, `.Node.Platform.Architecture`,
//!   `.Task.ID`, `.Task.Name`, `.Task.Slot`;
//! * functions: `env "NAME"` (the task's container environment, `""` if unset), `secret
//!   "TARGET"` and `config "TARGET"` (the content of another file of the same task, by its
//!   target), `index MAP "KEY"`, `join SEP A B…`;
//! * string literals (`"…"` with Go escapes, or `` `raw` ``), parentheses, pipelines
//!   (`.Task.Slot | printf`-style: the value goes in as the last argument), `{{/* comments */}}`
//!   and Go's whitespace trimming (`{{- ` and ` -}}`).
//!
//! Anything else — an unknown field or function, `if`/`range`/`with` — is an error that names
//! the placeholder, never a silent empty string (Go's `missingkey=error`, as Docker runs it).

use std::collections::BTreeMap;
use std::fmt;

use swarm_api::{ContainerSpec, Service, Task};

use super::spec::{container_name, task_id};

/// What templates may say about the node (`.Node.*`).
#[derive(Clone, Debug, Default)]
pub struct NodeFacts {
    /// The node's name, which is its id in swarm (`.Node.ID`).
    pub id: String,
    pub hostname: String,
    pub os: String,
    pub architecture: String,
}

/// A value a field path leads to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Str(String),
    /// Labels: printed as Go prints a map (`map[a:1 b:2]`).
    Map(BTreeMap<String, String>),
    /// A group of fields (`.Service`, `.Node.Platform`): not printable itself.
    Fields(Vec<(&'static str, Value)>),
}

impl Value {
    fn s(v: impl Into<String>) -> Value {
        Value::Str(v.into())
    }
}

/// What a task's template sees.
#[derive(Clone, Debug, Default)]
pub struct Context {
    pub service_id: String,
    pub service_name: String,
    pub service_labels: BTreeMap<String, String>,
    pub node_id: String,
    pub node_hostname: String,
    pub node_os: String,
    pub node_architecture: String,
    pub task_id: String,
    pub task_name: String,
    pub task_slot: String,
    /// The container's environment, for `env`.
    pub env: BTreeMap<String, String>,
    /// The task's secrets and configs by target (decoded), for `secret` and `config`.
    pub secrets: BTreeMap<String, String>,
    pub configs: BTreeMap<String, String>,
}

impl Context {
    /// The context of `task` (of `service`, if known) on `node`, without files: what a
    /// container spec's templates see.
    pub fn for_task(task: &Task, service: Option<&Service>, node: &NodeFacts) -> Context {
        Context {
            service_id: service.map(|s| s.metadata.uid.clone()).unwrap_or_default(),
            service_name: task.spec.service.clone(),
            service_labels: service
                .map(|s| s.metadata.labels.clone())
                .unwrap_or_default(),
            node_id: node.id.clone(),
            node_hostname: node.hostname.clone(),
            node_os: node.os.clone(),
            node_architecture: node.architecture.clone(),
            task_id: task_id(task),
            task_name: container_name(task, &node.id),
            // Swarm falls back to the node for tasks without a slot (global services).
            task_slot: task
                .spec
                .slot
                .map(|s| s.to_string())
                .unwrap_or_else(|| node.id.clone()),
            env: task.spec.template.container.env.clone(),
            secrets: BTreeMap::new(),
            configs: BTreeMap::new(),
        }
    }

    /// The root `.` as a tree of fields.
    fn root(&self) -> Value {
        Value::Fields(vec![
            (
                "Service",
                Value::Fields(vec![
                    ("ID", Value::s(&self.service_id)),
                    ("Name", Value::s(&self.service_name)),
                    ("Labels", Value::Map(self.service_labels.clone())),
                ]),
            ),
            (
                "Node",
                Value::Fields(vec![
                    ("ID", Value::s(&self.node_id)),
                    ("Hostname", Value::s(&self.node_hostname)),
                    (
                        "Platform",
                        Value::Fields(vec![
                            ("Architecture", Value::s(&self.node_architecture)),
                            ("OS", Value::s(&self.node_os)),
                        ]),
                    ),
                ]),
            ),
            (
                "Task",
                Value::Fields(vec![
                    ("ID", Value::s(&self.task_id)),
                    ("Name", Value::s(&self.task_name)),
                    ("Slot", Value::s(&self.task_slot)),
                ]),
            ),
        ])
    }
}

/// Why a template could not be rendered, with the 1-based line of the action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for TemplateError {}

/// What rendering produced: the text, and whether it pulled in a secret (then the file must
/// be kept like a secret, on tmpfs, even for a config).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    pub text: String,
    pub uses_secret: bool,
}

/// Renders `src` with `cx`.
pub fn render(src: &str, cx: &Context) -> Result<Rendered, TemplateError> {
    let root = cx.root();
    let mut ev = Eval {
        cx,
        root: &root,
        uses_secret: false,
        line: 1,
    };
    let mut out = String::new();
    for piece in split(src)? {
        match piece {
            Piece::Text(t) => out.push_str(&t),
            Piece::Action { body, line } => {
                ev.line = line;
                let tokens = lex(&body).map_err(|m| ev.err(m))?;
                let mut p = Parser { tokens, pos: 0 };
                let pipe = p.pipeline().map_err(|m| ev.err(m))?;
                if p.pos != p.tokens.len() {
                    return Err(ev.err(format!("unexpected {} in {{{{{body}}}}}", p.tokens[p.pos])));
                }
                let v = ev.pipeline(&pipe)?;
                out.push_str(&ev.print(&v, &pipe)?);
            }
        }
    }
    Ok(Rendered {
        text: out,
        uses_secret: ev.uses_secret,
    })
}

/// Expands the fields of a container spec Swarm expands — hostname, environment values, mount
/// sources and targets. Text without `{{` is left alone. The error names the field:
/// `hostname: template: line 1: unknown field .Node.Name (…)`.
pub fn expand_container(c: &mut ContainerSpec, cx: &Context) -> Result<(), String> {
    let one = |field: &str, s: &mut String| -> Result<(), String> {
        if s.contains("{{") {
            *s = render(s, cx)
                .map_err(|e| format!("{field}: template: {e}"))?
                .text;
        }
        Ok(())
    };
    one("hostname", &mut c.hostname)?;
    for (k, v) in c.env.iter_mut() {
        one(&format!("env {k}"), v)?;
    }
    for m in c.mounts.iter_mut() {
        one("mount source", &mut m.source)?;
        one("mount target", &mut m.target)?;
    }
    Ok(())
}

/// Text and the actions between `{{` and `}}`.
enum Piece {
    Text(String),
    Action { body: String, line: usize },
}

/// Cuts a template into text and actions, applying `{{- ` / ` -}}` trimming and dropping
/// comments.
fn split(src: &str) -> Result<Vec<Piece>, TemplateError> {
    let mut pieces = Vec::new();
    let mut rest = src;
    let mut line = 1;
    let mut trim_next = false;
    while let Some(open) = rest.find("{{") {
        let mut text = &rest[..open];
        if trim_next {
            text = text.trim_start();
        }
        line += rest[..open].matches('\n').count();
        let after = &rest[open + 2..];
        let (left_trim, after) = match after.strip_prefix('-') {
            Some(a) if a.starts_with(char::is_whitespace) => (true, a),
            _ => (false, after),
        };
        if left_trim {
            text = text.trim_end();
        }
        pieces.push(Piece::Text(text.to_string()));
        let close = find_close(after).ok_or_else(|| TemplateError {
            line,
            message: "unclosed action: `{{` without `}}`".into(),
        })?;
        let mut body = &after[..close];
        trim_next = false;
        if body.ends_with(" -") || body.ends_with("\t-") || body.ends_with("\n-") {
            body = &body[..body.len() - 1];
            trim_next = true;
        }
        let trimmed = body.trim();
        if !(trimmed.starts_with("/*") && trimmed.ends_with("*/")) {
            pieces.push(Piece::Action {
                body: trimmed.to_string(),
                line,
            });
        }
        line += after[..close].matches('\n').count();
        rest = &after[close + 2..];
    }
    let text = if trim_next { rest.trim_start() } else { rest };
    pieces.push(Piece::Text(text.to_string()));
    Ok(pieces)
}

/// The `}}` closing an action, skipping string literals (a `"}}"` inside one is text).
fn find_close(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'`' => {
                i += 1;
                while i < b.len() && b[i] != b'`' {
                    i += 1;
                }
            }
            b'}' if b.get(i + 1) == Some(&b'}') => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    /// `.A.B` (empty: `.` itself).
    Field(Vec<String>),
    Ident(String),
    Str(String),
    Pipe,
    Open,
    Close,
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Field(p) if p.is_empty() => write!(f, "`.`"),
            Token::Field(p) => write!(f, "`.{}`", p.join(".")),
            Token::Ident(i) => write!(f, "`{i}`"),
            Token::Str(s) => write!(f, "{s:?}"),
            Token::Pipe => write!(f, "`|`"),
            Token::Open => write!(f, "`(`"),
            Token::Close => write!(f, "`)`"),
        }
    }
}

fn lex(body: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut chars = body.char_indices().peekable();
    while let Some(&(i, c)) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '|' => {
                chars.next();
                out.push(Token::Pipe);
            }
            '(' => {
                chars.next();
                out.push(Token::Open);
            }
            ')' => {
                chars.next();
                out.push(Token::Close);
            }
            '"' => {
                chars.next();
                let mut s = String::new();
                loop {
                    match chars.next() {
                        None => return Err(format!("unterminated string in {{{{{body}}}}}")),
                        Some((_, '"')) => break,
                        Some((_, '\\')) => match chars.next() {
                            Some((_, 'n')) => s.push('\n'),
                            Some((_, 't')) => s.push('\t'),
                            Some((_, 'r')) => s.push('\r'),
                            Some((_, '\\')) => s.push('\\'),
                            Some((_, '"')) => s.push('"'),
                            Some((_, other)) => {
                                return Err(format!("unknown escape `\\{other}` in a string"));
                            }
                            None => return Err(format!("unterminated string in {{{{{body}}}}}")),
                        },
                        Some((_, ch)) => s.push(ch),
                    }
                }
                out.push(Token::Str(s));
            }
            '`' => {
                chars.next();
                let mut s = String::new();
                loop {
                    match chars.next() {
                        None => return Err(format!("unterminated raw string in {{{{{body}}}}}")),
                        Some((_, '`')) => break,
                        Some((_, ch)) => s.push(ch),
                    }
                }
                out.push(Token::Str(s));
            }
            '.' | '$' if c == '.' => {
                let mut end = i;
                while let Some(&(j, ch)) = chars.peek() {
                    if ch == '.' || ch == '_' || ch.is_alphanumeric() {
                        end = j + ch.len_utf8();
                        chars.next();
                    } else {
                        break;
                    }
                }
                let path = &body[i + 1..end];
                let parts: Vec<String> = if path.is_empty() {
                    Vec::new()
                } else {
                    path.split('.').map(str::to_string).collect()
                };
                if parts.iter().any(String::is_empty) {
                    return Err(format!("bad field `{}`", &body[i..end]));
                }
                out.push(Token::Field(parts));
            }
            c if c.is_alphabetic() || c == '_' => {
                let mut end = i;
                while let Some(&(j, ch)) = chars.peek() {
                    if ch == '_' || ch.is_alphanumeric() {
                        end = j + ch.len_utf8();
                        chars.next();
                    } else {
                        break;
                    }
                }
                out.push(Token::Ident(body[i..end].to_string()));
            }
            other => {
                return Err(format!(
                    "unexpected `{other}` in {{{{{body}}}}}: swarm templates take fields \
                     (.Service.Name), string literals and the functions {FUNCTIONS}"
                ));
            }
        }
    }
    Ok(out)
}

const FUNCTIONS: &str = "env, secret, config, index and join";

/// Go's control words, which this renderer does not run.
const KEYWORDS: &[&str] = &[
    "if", "else", "end", "range", "with", "define", "template", "block", "break", "continue",
];

/// One command's operands; a pipeline is commands joined by `|`.
type Pipeline = Vec<Vec<Operand>>;

#[derive(Clone, Debug)]
enum Operand {
    Field(Vec<String>),
    Ident(String),
    Str(String),
    Group(Pipeline),
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn pipeline(&mut self) -> Result<Pipeline, String> {
        let mut cmds = vec![self.command()?];
        while self.tokens.get(self.pos) == Some(&Token::Pipe) {
            self.pos += 1;
            cmds.push(self.command()?);
        }
        Ok(cmds)
    }

    fn command(&mut self) -> Result<Vec<Operand>, String> {
        let mut ops = Vec::new();
        while let Some(t) = self.tokens.get(self.pos).cloned() {
            let op = match t {
                Token::Pipe | Token::Close => break,
                Token::Field(p) => Operand::Field(p),
                Token::Ident(i) => Operand::Ident(i),
                Token::Str(s) => Operand::Str(s),
                Token::Open => {
                    self.pos += 1;
                    let inner = self.pipeline()?;
                    if self.tokens.get(self.pos) != Some(&Token::Close) {
                        return Err("missing `)`".into());
                    }
                    Operand::Group(inner)
                }
            };
            self.pos += 1;
            ops.push(op);
        }
        if ops.is_empty() {
            return Err("empty command".into());
        }
        Ok(ops)
    }
}

struct Eval<'a> {
    cx: &'a Context,
    root: &'a Value,
    uses_secret: bool,
    line: usize,
}

impl Eval<'_> {
    fn err(&self, message: impl Into<String>) -> TemplateError {
        TemplateError {
            line: self.line,
            message: message.into(),
        }
    }

    fn pipeline(&mut self, pipe: &Pipeline) -> Result<Value, TemplateError> {
        let mut prev: Option<Value> = None;
        for cmd in pipe {
            prev = Some(self.command(cmd, prev.take())?);
        }
        prev.ok_or_else(|| self.err("empty pipeline"))
    }

    fn command(&mut self, ops: &[Operand], piped: Option<Value>) -> Result<Value, TemplateError> {
        match &ops[0] {
            Operand::Ident(name) => {
                let mut args = Vec::new();
                for a in &ops[1..] {
                    args.push(self.operand(a)?);
                }
                args.extend(piped);
                self.call(name, args)
            }
            first => {
                if ops.len() > 1 || piped.is_some() {
                    return Err(self.err(format!(
                        "{} is not a function: only {FUNCTIONS} take arguments",
                        describe(first)
                    )));
                }
                self.operand(first)
            }
        }
    }

    fn operand(&mut self, op: &Operand) -> Result<Value, TemplateError> {
        match op {
            Operand::Str(s) => Ok(Value::Str(s.clone())),
            Operand::Group(p) => self.pipeline(p),
            Operand::Ident(name) => self.call(name, Vec::new()),
            Operand::Field(path) => self.field(path),
        }
    }

    /// Walks `.A.B.C` from the root.
    fn field(&self, path: &[String]) -> Result<Value, TemplateError> {
        let mut v = self.root;
        for (i, name) in path.iter().enumerate() {
            let at = if i == 0 {
                String::new()
            } else {
                format!(".{}", path[..i].join("."))
            };
            v = match v {
                Value::Fields(fields) => match fields.iter().find(|(n, _)| n == name) {
                    Some((_, next)) => next,
                    None => {
                        let known: Vec<String> =
                            fields.iter().map(|(n, _)| format!("{at}.{n}")).collect();
                        return Err(self.err(format!(
                            "unknown field .{} (known: {})",
                            path.join("."),
                            known.join(", ")
                        )));
                    }
                },
                Value::Map(m) => {
                    if i + 1 != path.len() {
                        return Err(self.err(format!("{at}.{name} is a label value, not fields")));
                    }
                    return match m.get(name) {
                        Some(val) => Ok(Value::Str(val.clone())),
                        None => Err(self.err(format!("{at} has no entry for key {name:?}"))),
                    };
                }
                Value::Str(_) => {
                    return Err(self.err(format!("{at} is a string and has no field {name}")));
                }
            };
        }
        Ok(v.clone())
    }

    fn call(&mut self, name: &str, args: Vec<Value>) -> Result<Value, TemplateError> {
        let strings = |ev: &Self, args: &[Value]| -> Result<Vec<String>, TemplateError> {
            args.iter()
                .map(|a| match a {
                    Value::Str(s) => Ok(s.clone()),
                    _ => Err(ev.err(format!("{name} takes strings"))),
                })
                .collect()
        };
        let one = |ev: &Self, args: &[Value]| -> Result<String, TemplateError> {
            let s = strings(ev, args)?;
            match <[String; 1]>::try_from(s) {
                Ok([v]) => Ok(v),
                Err(s) => Err(ev.err(format!(
                    "{name} takes one argument, got {}: {{{{{name} \"NAME\"}}}}",
                    s.len()
                ))),
            }
        };
        match name {
            "env" => {
                let var = one(self, &args)?;
                Ok(Value::Str(
                    self.cx.env.get(&var).cloned().unwrap_or_default(),
                ))
            }
            "secret" => {
                let target = one(self, &args)?;
                self.uses_secret = true;
                self.cx
                    .secrets
                    .get(&target)
                    .map(|s| Value::Str(s.clone()))
                    .ok_or_else(|| self.err(format!("secret target {target} not found")))
            }
            "config" => {
                let target = one(self, &args)?;
                self.cx
                    .configs
                    .get(&target)
                    .map(|s| Value::Str(s.clone()))
                    .ok_or_else(|| self.err(format!("config target {target} not found")))
            }
            "index" => match args.as_slice() {
                [Value::Map(m), Value::Str(k)] => {
                    Ok(Value::Str(m.get(k).cloned().unwrap_or_default()))
                }
                _ => {
                    Err(self.err("index takes a map and a key: {{index .Service.Labels \"KEY\"}}"))
                }
            },
            "join" => {
                let s = strings(self, &args)?;
                match s.split_first() {
                    Some((sep, rest)) => Ok(Value::Str(rest.join(sep))),
                    None => Err(self.err("join takes a separator and strings")),
                }
            }
            k if KEYWORDS.contains(&k) => Err(self.err(format!(
                "{{{{{k}}}}} is not supported in swarm templates: use fields (.Service.Name) \
                 and the functions {FUNCTIONS}"
            ))),
            other => Err(self.err(format!("unknown function {other:?} (known: {FUNCTIONS})"))),
        }
    }

    /// The text an action's value prints as.
    fn print(&self, v: &Value, pipe: &Pipeline) -> Result<String, TemplateError> {
        match v {
            Value::Str(s) => Ok(s.clone()),
            Value::Map(m) => {
                let inner: Vec<String> = m.iter().map(|(k, v)| format!("{k}:{v}")).collect();
                Ok(format!("map[{}]", inner.join(" ")))
            }
            Value::Fields(fields) => {
                let at = match pipe.first().and_then(|c| c.first()) {
                    Some(Operand::Field(p)) if !p.is_empty() => format!(".{}", p.join(".")),
                    _ => String::new(),
                };
                let known: Vec<String> = fields.iter().map(|(n, _)| format!("{at}.{n}")).collect();
                Err(self.err(format!(
                    "{} is a group of fields, not a value: use one of {}",
                    if at.is_empty() { "." } else { &at },
                    known.join(", ")
                )))
            }
        }
    }
}

fn describe(op: &Operand) -> String {
    match op {
        Operand::Field(p) if p.is_empty() => ".".into(),
        Operand::Field(p) => format!(".{}", p.join(".")),
        Operand::Str(s) => format!("{s:?}"),
        Operand::Ident(i) => i.clone(),
        Operand::Group(_) => "(…)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx() -> Context {
        Context {
            service_id: "svc-uid".into(),
            service_name: "web".into(),
            service_labels: BTreeMap::from([
                ("tier".to_string(), "front".to_string()),
                ("owner".to_string(), "ops".to_string()),
            ]),
            node_id: "node-1".into(),
            node_hostname: "host-a".into(),
            node_os: "linux".into(),
            node_architecture: "x86_64".into(),
            task_id: "abc123".into(),
            task_name: "web.2.abc123".into(),
            task_slot: "2".into(),
            env: BTreeMap::from([("GREETING".to_string(), "hi".to_string())]),
            secrets: BTreeMap::from([("db_pw".to_string(), "hunter2".to_string())]),
            configs: BTreeMap::from([("base.conf".to_string(), "x=1".to_string())]),
        }
    }

    fn ok(src: &str) -> String {
        render(src, &cx()).unwrap().text
    }

    fn err(src: &str) -> String {
        render(src, &cx()).unwrap_err().to_string()
    }

    #[test]
    fn fields_and_functions_render_per_task() {
        assert_eq!(
            ok("{{.Service.Name}} {{.Task.Name}} slot={{.Task.Slot}} on {{.Node.Hostname}}"),
            "web web.2.abc123 slot=2 on host-a"
        );
        assert_eq!(
            ok("{{ .Service.ID }}/{{.Node.ID}}/{{.Task.ID}}"),
            "svc-uid/node-1/abc123"
        );
        assert_eq!(
            ok("{{.Node.Platform.OS}}-{{.Node.Platform.Architecture}}"),
            "linux-x86_64"
        );
        assert_eq!(ok(r#"{{env "GREETING"}}, {{env "UNSET"}}!"#), "hi, !");
        assert_eq!(ok(r#"{{index .Service.Labels "tier"}}"#), "front");
        assert_eq!(ok("{{.Service.Labels.owner}}"), "ops");
        assert_eq!(ok("{{.Service.Labels}}"), "map[owner:ops tier:front]");
        assert_eq!(ok(r#"{{join "-" .Service.Name .Task.Slot}}"#), "web-2");
        assert_eq!(ok(r#"{{.Task.Slot | join "," "a"}}"#), "a,2");
        assert_eq!(ok(r#"{{join "+" (env "GREETING") `raw\n`}}"#), r"hi+raw\n");
        assert_eq!(ok(r#"{{config "base.conf"}}"#), "x=1");
        assert_eq!(ok("no actions\n"), "no actions\n");
    }

    #[test]
    fn a_container_spec_is_expanded_where_swarm_expands_it() {
        let mut c = ContainerSpec {
            hostname: "{{.Node.Hostname}}-{{.Task.Slot}}".into(),
            ..Default::default()
        };
        c.env
            .insert("WHO".into(), "{{.Service.Name}}.{{.Task.Slot}}".into());
        c.env.insert("PLAIN".into(), "as is".into());
        c.labels.insert("l".into(), "{{.Task.Slot}}".into());
        c.mounts.push(swarm_api::Mount {
            source: "data-{{.Task.Slot}}".into(),
            target: "/data/{{.Service.Name}}".into(),
            ..Default::default()
        });
        expand_container(&mut c, &cx()).unwrap();
        assert_eq!(c.hostname, "host-a-2");
        assert_eq!(c.env["WHO"], "web.2");
        assert_eq!(c.env["PLAIN"], "as is");
        assert_eq!(c.mounts[0].source, "data-2");
        assert_eq!(c.mounts[0].target, "/data/web");
        // Labels are not templates in Swarm.
        assert_eq!(c.labels["l"], "{{.Task.Slot}}");

        let mut bad = ContainerSpec {
            hostname: "{{.Node.Name}}".into(),
            ..Default::default()
        };
        assert_eq!(
            expand_container(&mut bad, &cx()).unwrap_err(),
            "hostname: template: line 1: unknown field .Node.Name \
             (known: .Node.ID, .Node.Hostname, .Node.Platform)"
        );
    }

    #[test]
    fn a_secret_marks_the_output_sensitive() {
        let r = render(r#"password={{secret "db_pw"}}"#, &cx()).unwrap();
        assert_eq!(r.text, "password=hunter2");
        assert!(r.uses_secret);
        assert!(!render("{{.Task.Slot}}", &cx()).unwrap().uses_secret);
    }

    #[test]
    fn whitespace_trimming_and_comments_follow_go() {
        assert_eq!(ok("a  {{- .Task.Slot -}}  \n b"), "a2b");
        assert_eq!(ok("a {{/* note */}}b"), "a b");
        assert_eq!(ok("x {{- /* gone */ -}} y"), "xy");
        // `{{-3}}` is not a trim marker in Go; here it is simply not supported.
        assert!(err("{{-3}}").contains("unexpected `-`"));
        assert_eq!(ok(r#"{{"}}"}}"#), "}}");
    }

    #[test]
    fn errors_name_the_placeholder_and_the_line() {
        let e = err("ok\n{{.Task.Nmae}}");
        assert_eq!(
            e,
            "line 2: unknown field .Task.Nmae (known: .Task.ID, .Task.Name, .Task.Slot)"
        );
        assert!(err("{{.Cluster.Name}}").contains("unknown field .Cluster.Name (known: .Service"));
        assert!(err("{{.Service.Labels.nope}}").contains("no entry for key \"nope\""));
        assert!(err("{{.Task.Slot.X}}").contains(".Task.Slot is a string"));
        assert!(err("{{upper .Service.Name}}").contains("unknown function \"upper\""));
        assert!(err("{{if .Task.Slot}}x{{end}}").contains("{{if}} is not supported"));
        assert!(err("{{.Node}}").contains(".Node is a group of fields"));
        assert!(err(r#"{{secret "nope"}}"#).contains("secret target nope not found"));
        assert!(err("{{.Task.Slot").contains("unclosed action"));
        assert!(err(r#"{{env "A" "B"}}"#).contains("env takes one argument, got 2"));
        assert!(err(r#"{{.Task.Slot "x"}}"#).contains(".Task.Slot is not a function"));
    }
}
