//! A position-aware YAML tree. Every node remembers where it was written, so errors found
//! later (after interpolation, merging several files and typing) still point at the right
//! file, line and column.
//!
//! Parsing goes in two passes: serde-saphyr first checks the document against a [`Budget`]
//! (depth, node count, alias storms, scalar bytes), then its event parser builds the tree;
//! aliases are expanded and `<<:` merge keys applied here, under a node limit of our own.
//!
//! [`Budget`]: serde_saphyr::Budget

use std::collections::HashMap;

use serde_saphyr::granit_parser::{Event, Parser, ScalarStyle};

use super::error::{Issue, Pos};

/// Most nodes a document may expand to (aliases count once per use).
pub const MAX_NODES: usize = 250_000;
/// Deepest nesting accepted.
pub const MAX_DEPTH: usize = 64;
/// Largest stack file accepted, in bytes.
pub const MAX_FILE_BYTES: usize = 8 * 1024 * 1024;

/// A YAML node and where it starts.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub pos: Pos,
    pub value: Value,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A scalar's text after YAML escapes; `quoted` when written quoted, as a block
    /// scalar or tagged `!!str`, so it is always a string.
    Scalar {
        text: String,
        quoted: bool,
    },
    Seq(Vec<Node>),
    /// Entries in document order; keys are unique.
    Map(Vec<(Key, Node)>),
}

/// A mapping key (always read as text, never interpolated).
#[derive(Clone, Debug, PartialEq)]
pub struct Key {
    pub text: String,
    pub pos: Pos,
}

impl Node {
    pub fn scalar(pos: Pos, text: impl Into<String>, quoted: bool) -> Node {
        Node {
            pos,
            value: Value::Scalar {
                text: text.into(),
                quoted,
            },
        }
    }

    /// A plain scalar that YAML reads as null: empty, `~` or `null`.
    pub fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar { text, quoted: false } if is_null_text(text))
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Key, Node)]> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The value under `key` in a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.text == key)
            .map(|(_, v)| v)
    }

    /// What kind of node this is, for messages: `a mapping`, `a list`, `"text"`.
    pub fn describe(&self) -> String {
        match &self.value {
            Value::Scalar { text, quoted } if !quoted && is_null_text(text) => {
                "nothing (null)".to_string()
            }
            Value::Scalar { text, .. } => format!("{text:?}"),
            Value::Seq(_) => "a list".to_string(),
            Value::Map(_) => "a mapping".to_string(),
        }
    }

    /// The node as JSON, typing plain scalars as YAML 1.2 core does (quoted → string).
    pub fn to_json(&self) -> serde_json::Value {
        match &self.value {
            Value::Scalar { text, quoted: true } => serde_json::Value::String(text.clone()),
            Value::Scalar {
                text,
                quoted: false,
            } => plain_to_json(text),
            Value::Seq(items) => items.iter().map(Node::to_json).collect(),
            Value::Map(entries) => entries
                .iter()
                .map(|(k, v)| (k.text.clone(), v.to_json()))
                .collect::<serde_json::Map<_, _>>()
                .into(),
        }
    }
}

pub fn is_null_text(text: &str) -> bool {
    matches!(text, "" | "~" | "null" | "Null" | "NULL")
}

/// Types a plain scalar: null, bool (`true`/`false` only), integer, float, else string.
pub fn plain_to_json(text: &str) -> serde_json::Value {
    use serde_json::Value as J;
    if is_null_text(text) {
        return J::Null;
    }
    match text {
        "true" | "True" | "TRUE" => return J::Bool(true),
        "false" | "False" | "FALSE" => return J::Bool(false),
        _ => {}
    }
    if let Some(i) = parse_int(text) {
        return J::from(i);
    }
    if looks_like_float(text)
        && let Ok(f) = text.parse::<f64>()
        && let Some(n) = serde_json::Number::from_f64(f)
    {
        return J::Number(n);
    }
    J::String(text.to_string())
}

/// A YAML integer: decimal, `0x` hex or `0o` octal, optional sign.
pub fn parse_int(text: &str) -> Option<i64> {
    let (neg, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let v = if let Some(h) = digits.strip_prefix("0x") {
        i64::from_str_radix(h, 16).ok()?
    } else if let Some(o) = digits.strip_prefix("0o") {
        i64::from_str_radix(o, 8).ok()?
    } else if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse::<i64>().ok()?
    } else {
        return None;
    };
    Some(if neg { -v } else { v })
}

fn looks_like_float(text: &str) -> bool {
    let t = text.trim_start_matches(['-', '+']);
    t.starts_with(|c: char| c.is_ascii_digit() || c == '.')
        && t.bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'))
        && t.bytes().any(|b| b.is_ascii_digit())
}

/// Parses every document of `text`. `file` is the index stamped into positions.
pub fn parse_documents(text: &str, file: u32) -> Result<Vec<Node>, Issue> {
    if text.len() > MAX_FILE_BYTES {
        return Err(Issue::new(
            Pos {
                file,
                line: 0,
                col: 0,
            },
            "",
            format!(
                "file is {} bytes; stack files may be at most {MAX_FILE_BYTES} bytes",
                text.len()
            ),
        ));
    }
    budget_check(text, file)?;
    let mut b = Builder {
        parser: Parser::new_from_str(text),
        file,
        anchors: HashMap::new(),
        nodes: 0,
    };
    let mut docs = Vec::new();
    loop {
        match b.next()? {
            None | Some((Event::StreamEnd, _)) => break,
            Some((Event::DocumentStart(..), _)) => {
                b.anchors.clear();
                let (ev, pos) = b.next_node_event()?;
                docs.push(b.node(ev, pos, 0)?);
            }
            Some(_) => {}
        }
    }
    Ok(docs)
}

/// serde-saphyr's resource limits, applied before the tree is built.
fn budget_check(text: &str, file: u32) -> Result<(), Issue> {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_depth = MAX_DEPTH;
    budget.max_nodes = MAX_NODES;
    budget.max_documents = 1_024;
    budget.max_aliases = 10_000;
    budget.max_anchors = 10_000;
    budget.max_total_scalar_bytes = MAX_FILE_BYTES;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options.with_snippet = false;
    match serde_saphyr::from_str_multiple_with_options::<serde::de::IgnoredAny, Vec<_>>(
        text, options,
    ) {
        Ok(_) => Ok(()),
        Err(e) => {
            let msg = e.to_string();
            // Syntax errors are reported (with a better position) by the tree builder; only
            // refuse here what is about size.
            if msg.to_ascii_lowercase().contains("budget") {
                let (line, col) = e
                    .location()
                    .map(|l| (l.line() as u32, l.column() as u32))
                    .unwrap_or((0, 0));
                let first = msg.lines().next().unwrap_or("too large").to_string();
                Err(Issue::new(
                    Pos { file, line, col },
                    "",
                    format!("document is too large or too deeply nested: {first}"),
                ))
            } else {
                Ok(())
            }
        }
    }
}

type Ev<'a> = (Event<'a>, Pos);

struct Builder<'a> {
    parser: Parser<'a, serde_saphyr::granit_parser::StrInput<'a>>,
    file: u32,
    anchors: HashMap<usize, Node>,
    nodes: usize,
}

impl<'a> Builder<'a> {
    fn next(&mut self) -> Result<Option<Ev<'a>>, Issue> {
        match self.parser.next_event() {
            None => Ok(None),
            Some(Ok((ev, span))) => Ok(Some((
                ev,
                Pos {
                    file: self.file,
                    line: span.start.line() as u32,
                    col: span.start.col() as u32 + 1,
                },
            ))),
            Some(Err(e)) => {
                let m = e.marker();
                Err(Issue::new(
                    Pos {
                        file: self.file,
                        line: m.line() as u32,
                        col: m.col() as u32 + 1,
                    },
                    "",
                    format!("invalid YAML: {}", e.info()),
                ))
            }
        }
    }

    /// The next event that is a node (skipping comments and anchor metadata).
    fn next_node_event(&mut self) -> Result<Ev<'a>, Issue> {
        loop {
            match self.next()? {
                None => {
                    return Err(Issue::new(
                        Pos {
                            file: self.file,
                            line: 0,
                            col: 0,
                        },
                        "",
                        "invalid YAML: unexpected end of input",
                    ));
                }
                Some((
                    ev @ (Event::Scalar(..)
                    | Event::SequenceStart(..)
                    | Event::MappingStart(..)
                    | Event::Alias(_)
                    | Event::SequenceEnd
                    | Event::MappingEnd
                    | Event::DocumentEnd
                    | Event::UnresolvedAlias(_)),
                    pos,
                )) => return Ok((ev, pos)),
                Some(_) => {}
            }
        }
    }

    fn count(&mut self, pos: Pos, n: usize) -> Result<(), Issue> {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > MAX_NODES {
            return Err(Issue::new(
                pos,
                "",
                format!("document expands to more than {MAX_NODES} nodes (alias bomb?)"),
            ));
        }
        Ok(())
    }

    fn node(&mut self, ev: Event<'a>, pos: Pos, depth: usize) -> Result<Node, Issue> {
        if depth > MAX_DEPTH {
            return Err(Issue::new(
                pos,
                "",
                format!("document is nested more than {MAX_DEPTH} levels deep"),
            ));
        }
        self.count(pos, 1)?;
        let (node, anchor) = match ev {
            Event::Scalar(text, style, anchor, tag) => {
                let is_str_tag = tag.as_ref().is_some_and(|t| t.suffix() == "str");
                let quoted = is_str_tag || !matches!(style, ScalarStyle::Plain);
                (Node::scalar(pos, text.into_owned(), quoted), anchor)
            }
            Event::SequenceStart(_, anchor, _) => {
                let mut items = Vec::new();
                loop {
                    let (ev, p) = self.next_node_event()?;
                    if matches!(ev, Event::SequenceEnd) {
                        break;
                    }
                    items.push(self.node(ev, p, depth + 1)?);
                }
                (
                    Node {
                        pos,
                        value: Value::Seq(items),
                    },
                    anchor,
                )
            }
            Event::MappingStart(_, anchor, _) => (self.mapping(pos, depth)?, anchor),
            Event::Alias(id) => {
                let node = self.anchors.get(&id).cloned().ok_or_else(|| {
                    Issue::new(pos, "", "invalid YAML: alias to an unknown anchor")
                })?;
                let size = node_size(&node);
                self.count(pos, size)?;
                return Ok(node);
            }
            Event::UnresolvedAlias(name) => {
                return Err(Issue::new(
                    pos,
                    "",
                    format!("invalid YAML: alias *{name} has no anchor &{name} before it"),
                ));
            }
            _ => {
                return Err(Issue::new(pos, "", "invalid YAML: unexpected token"));
            }
        };
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        Ok(node)
    }

    fn mapping(&mut self, pos: Pos, depth: usize) -> Result<Node, Issue> {
        let mut entries: Vec<(Key, Node)> = Vec::new();
        let mut merged: Vec<(Key, Node)> = Vec::new();
        loop {
            let (ev, kpos) = self.next_node_event()?;
            if matches!(ev, Event::MappingEnd) {
                break;
            }
            let key_node = self.node(ev, kpos, depth + 1)?;
            let key_text = match &key_node.value {
                Value::Scalar { text, .. } => text.clone(),
                _ => {
                    return Err(Issue::new(
                        kpos,
                        "",
                        "mapping keys must be plain text, not lists or mappings",
                    ));
                }
            };
            let (ev, vpos) = self.next_node_event()?;
            let value = self.node(ev, vpos, depth + 1)?;
            let is_merge = key_text == "<<" && key_node.as_str() == Some("<<") && {
                matches!(key_node.value, Value::Scalar { quoted: false, .. })
            };
            if is_merge {
                let sources: Vec<Node> = match value.value {
                    Value::Map(_) => vec![value],
                    Value::Seq(items) => items,
                    Value::Scalar { .. } => {
                        return Err(Issue::new(
                            vpos,
                            "<<",
                            "a merge key `<<` needs a mapping or a list of mappings",
                        ));
                    }
                };
                for src in sources {
                    match src.value {
                        Value::Map(m) => {
                            for (k, v) in m {
                                if !merged.iter().any(|(mk, _)| mk.text == k.text) {
                                    merged.push((k, v));
                                }
                            }
                        }
                        _ => {
                            return Err(Issue::new(
                                src.pos,
                                "<<",
                                "a merge key `<<` needs a mapping or a list of mappings",
                            ));
                        }
                    }
                }
                continue;
            }
            if entries.iter().any(|(k, _)| k.text == key_text) {
                return Err(Issue::new(
                    kpos,
                    "",
                    format!("key {key_text:?} appears twice in the same mapping"),
                ));
            }
            entries.push((
                Key {
                    text: key_text,
                    pos: kpos,
                },
                value,
            ));
        }
        for (k, v) in merged {
            if !entries.iter().any(|(ek, _)| ek.text == k.text) {
                entries.push((k, v));
            }
        }
        Ok(Node {
            pos,
            value: Value::Map(entries),
        })
    }
}

fn node_size(node: &Node) -> usize {
    match &node.value {
        Value::Scalar { .. } => 1,
        Value::Seq(items) => 1 + items.iter().map(node_size).sum::<usize>(),
        Value::Map(entries) => 1 + entries.iter().map(|(_, v)| 1 + node_size(v)).sum::<usize>(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse1(s: &str) -> Node {
        let mut docs = parse_documents(s, 0).unwrap();
        assert_eq!(docs.len(), 1);
        docs.remove(0)
    }

    #[test]
    fn positions_are_one_based() {
        let n = parse1("a:\n  b: three\n");
        let b = n.get("a").unwrap().get("b").unwrap();
        assert_eq!((b.pos.line, b.pos.col), (2, 6));
    }

    #[test]
    fn quoting_is_remembered() {
        let n = parse1("a: yes\nb: 'yes'\nc: !!str 5\nd: |\n  x\n");
        assert_eq!(n.get("a").unwrap().to_json(), serde_json::json!("yes"));
        assert!(matches!(
            n.get("b").unwrap().value,
            Value::Scalar { quoted: true, .. }
        ));
        assert_eq!(n.get("c").unwrap().to_json(), serde_json::json!("5"));
        assert_eq!(n.get("d").unwrap().to_json(), serde_json::json!("x\n"));
    }

    #[test]
    fn anchors_and_merge_keys() {
        let n = parse1(
            "base: &b\n  x: 1\n  y: 2\nother:\n  <<: *b\n  y: 3\nlist: [*b]\nmulti:\n  <<: [{p: 1}, {p: 2, q: 3}]\n",
        );
        assert_eq!(
            n.get("other").unwrap().to_json(),
            serde_json::json!({"y": 3, "x": 1})
        );
        assert_eq!(
            n.get("list").unwrap().to_json(),
            serde_json::json!([{"x": 1, "y": 2}])
        );
        assert_eq!(
            n.get("multi").unwrap().to_json(),
            serde_json::json!({"p": 1, "q": 3})
        );
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let e = parse_documents("a: 1\na: 2\n", 0).unwrap_err();
        assert!(e.message.contains("twice"), "{e:?}");
        assert_eq!(e.pos.line, 2);
    }

    #[test]
    fn syntax_errors_have_positions() {
        let e = parse_documents("a: [1, 2\nb: 3\n", 0).unwrap_err();
        assert!(e.message.starts_with("invalid YAML"), "{e:?}");
        assert!(e.pos.line >= 1);
    }

    #[test]
    fn alias_bombs_are_refused() {
        let mut s = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            s.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        assert!(parse_documents(&s, 0).is_err());
    }

    #[test]
    fn deep_nesting_is_refused() {
        let s = format!("{}{}", "[".repeat(500), "]".repeat(500));
        assert!(parse_documents(&s, 0).is_err());
    }

    #[test]
    fn multiple_documents() {
        let docs = parse_documents("a: 1\n---\nb: 2\n", 0).unwrap();
        assert_eq!(docs.len(), 2);
    }

    #[test]
    fn plain_scalars_type_like_yaml_core() {
        assert_eq!(plain_to_json("12"), serde_json::json!(12));
        assert_eq!(plain_to_json("1.5"), serde_json::json!(1.5));
        assert_eq!(plain_to_json("~"), serde_json::Value::Null);
        assert_eq!(plain_to_json("on"), serde_json::json!("on"));
        assert_eq!(plain_to_json("1.2.3"), serde_json::json!("1.2.3"));
    }
}
