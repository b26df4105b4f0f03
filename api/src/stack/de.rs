//! A serde `Deserializer` over the position-aware tree, so the typed Compose model decodes
//! with errors that carry the node's position and dotted path, and so scalars are typed by
//! what the field expects (YAML 1.1 `yes`/`off` where a bool is wanted, `"3"` where an
//! integer is wanted — as docker/cli's casts after interpolation do), not by how they look.

use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};

use super::error::{Issue, Pos};
use super::yaml::{Key, Node, Value, parse_int, plain_to_json};

/// A decoding error; position and path are filled in by the innermost node that saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeError {
    pub pos: Option<Pos>,
    pub path: Option<String>,
    pub message: String,
}

impl DeError {
    fn msg(message: impl Into<String>) -> Self {
        DeError {
            pos: None,
            path: None,
            message: message.into(),
        }
    }

    fn at(mut self, pos: Pos, path: &str) -> Self {
        if self.pos.is_none() {
            self.pos = Some(pos);
            self.path = Some(path.to_string());
        }
        self
    }

    pub fn into_issue(self, fallback: Pos, fallback_path: &str) -> Issue {
        Issue::new(
            self.pos.unwrap_or(fallback),
            self.path.unwrap_or_else(|| fallback_path.to_string()),
            self.message,
        )
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError::msg(msg.to_string())
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        let hint = closest(field, expected)
            .map(|c| format!("; did you mean {c:?}?"))
            .unwrap_or_else(|| format!("; remove it (allowed here: {})", expected.join(", ")));
        DeError::msg(format!("unknown key {field:?}{hint}"))
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        let list: Vec<String> = expected.iter().map(|e| format!("{e:?}")).collect();
        DeError::msg(format!(
            "expected one of {}, found {variant:?}",
            list.join(", ")
        ))
    }

    fn missing_field(field: &'static str) -> Self {
        DeError::msg(format!("missing required key {field:?}"))
    }
}

/// The expected name closest to `word` (edit distance at most 2).
fn closest<'e>(word: &str, expected: &[&'e str]) -> Option<&'e str> {
    expected
        .iter()
        .map(|e| (distance(word, e), *e))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, e)| e)
}

fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Decodes `T` from a node; `path` is the node's dotted path.
pub fn from_node<'de, T: de::Deserialize<'de>>(node: &'de Node, path: &str) -> Result<T, Issue> {
    T::deserialize(NodeDe {
        node,
        path: path.to_string(),
    })
    .map_err(|e| e.into_issue(node.pos, path))
}

pub struct NodeDe<'a> {
    pub node: &'a Node,
    pub path: String,
}

impl<'a> NodeDe<'a> {
    fn fail<T>(&self, expected: &str) -> Result<T, DeError> {
        Err(DeError::msg(format!(
            "expected {expected}, found {}",
            self.node.describe()
        ))
        .at(self.node.pos, &self.path))
    }

    fn text(&self) -> Option<&'a str> {
        match &self.node.value {
            Value::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    fn int(&self) -> Result<i64, DeError> {
        match self.text().map(str::trim).and_then(parse_int) {
            Some(v) => Ok(v),
            None => self.fail("an integer"),
        }
    }

    fn uint(&self) -> Result<u64, DeError> {
        let v = self.int()?;
        u64::try_from(v).or_else(|_| self.fail("a number that is not negative"))
    }

    fn float(&self) -> Result<f64, DeError> {
        match self.text().and_then(|t| t.trim().parse::<f64>().ok()) {
            Some(v) if v.is_finite() => Ok(v),
            _ => self.fail("a number"),
        }
    }

    fn wrap<T>(&self, r: Result<T, DeError>) -> Result<T, DeError> {
        r.map_err(|e| e.at(self.node.pos, &self.path))
    }
}

fn yaml11_bool(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "yes" | "y" | "on" => Some(true),
        "false" | "no" | "n" | "off" => Some(false),
        _ => None,
    }
}

macro_rules! de_int {
    ($method:ident, $visit:ident, $ty:ty, $get:ident) => {
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            let v = self.$get()?;
            let v = <$ty>::try_from(v)
                .or_else(|_| self.fail(concat!("a smaller integer (", stringify!($ty), ")")))?;
            let r = visitor.$visit(v);
            self.wrap(r)
        }
    };
}

impl<'de> de::Deserializer<'de> for NodeDe<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let r = match &self.node.value {
            Value::Scalar { text, quoted: true } => visitor.visit_str(text),
            Value::Scalar {
                text,
                quoted: false,
            } => match plain_to_json(text) {
                serde_json::Value::Null => visitor.visit_unit(),
                serde_json::Value::Bool(b) => visitor.visit_bool(b),
                serde_json::Value::Number(n) => {
                    if let Some(i) = n.as_u64() {
                        visitor.visit_u64(i)
                    } else if let Some(i) = n.as_i64() {
                        visitor.visit_i64(i)
                    } else {
                        visitor.visit_f64(n.as_f64().unwrap_or(0.0))
                    }
                }
                _ => visitor.visit_str(text),
            },
            Value::Seq(items) => visitor.visit_seq(Seq {
                items: items.iter().enumerate(),
                path: &self.path,
            }),
            Value::Map(entries) => visitor.visit_map(Map {
                entries: entries.iter(),
                value: None,
                path: &self.path,
            }),
        };
        self.wrap(r)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.text().and_then(|t| yaml11_bool(t.trim())) {
            Some(b) => {
                let r = visitor.visit_bool(b);
                self.wrap(r)
            }
            None => self.fail("true or false"),
        }
    }

    de_int!(deserialize_i8, visit_i8, i8, int);
    de_int!(deserialize_i16, visit_i16, i16, int);
    de_int!(deserialize_i32, visit_i32, i32, int);
    de_int!(deserialize_i64, visit_i64, i64, int);
    de_int!(deserialize_u8, visit_u8, u8, uint);
    de_int!(deserialize_u16, visit_u16, u16, uint);
    de_int!(deserialize_u32, visit_u32, u32, uint);
    de_int!(deserialize_u64, visit_u64, u64, uint);

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let v = self.float()?;
        let r = visitor.visit_f64(v);
        self.wrap(r)
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.text() {
            Some(t) => {
                let r = visitor.visit_str(t);
                self.wrap(r)
            }
            None => self.fail("a string"),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if self.node.is_null() {
            let r = visitor.visit_none();
            self.wrap(r)
        } else {
            let pos = self.node.pos;
            let path = self.path.clone();
            visitor.visit_some(self).map_err(|e| e.at(pos, &path))
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if self.node.is_null() {
            let r = visitor.visit_unit();
            self.wrap(r)
        } else {
            self.fail("nothing (null)")
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let pos = self.node.pos;
        let path = self.path.clone();
        visitor
            .visit_newtype_struct(self)
            .map_err(|e| e.at(pos, &path))
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Seq(items) => {
                let r = visitor.visit_seq(Seq {
                    items: items.iter().enumerate(),
                    path: &self.path,
                });
                self.wrap(r)
            }
            _ => self.fail("a list"),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Map(entries) => {
                let r = visitor.visit_map(Map {
                    entries: entries.iter(),
                    value: None,
                    path: &self.path,
                });
                self.wrap(r)
            }
            // An empty value (`deploy:` with nothing under it) reads as an empty mapping.
            _ if self.node.is_null() => {
                let r = visitor.visit_map(Map {
                    entries: [].iter(),
                    value: None,
                    path: &self.path,
                });
                self.wrap(r)
            }
            _ => self.fail("a mapping"),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Scalar { text, .. } => {
                let r = visitor.visit_enum(text.as_str().into_deserializer());
                self.wrap(r)
            }
            _ => {
                let list: Vec<String> = variants.iter().map(|v| format!("{v:?}")).collect();
                self.fail(&format!("one of {}", list.join(", ")))
            }
        }
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }
}

struct Seq<'a, I> {
    items: I,
    path: &'a str,
}

impl<'de, I: Iterator<Item = (usize, &'de Node)>> SeqAccess<'de> for Seq<'_, I> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        match self.items.next() {
            None => Ok(None),
            Some((i, node)) => {
                let path = format!("{}[{i}]", self.path);
                seed.deserialize(NodeDe {
                    node,
                    path: path.clone(),
                })
                .map(Some)
                .map_err(|e| e.at(node.pos, &path))
            }
        }
    }
}

struct Map<'a, 'de, I> {
    entries: I,
    value: Option<(&'de Key, &'de Node)>,
    path: &'a str,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

impl<'de, I: Iterator<Item = &'de (Key, Node)>> MapAccess<'de> for Map<'_, 'de, I> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        match self.entries.next() {
            None => Ok(None),
            Some((key, value)) => {
                self.value = Some((key, value));
                let path = join(self.path, &key.text);
                let key_de: de::value::BorrowedStrDeserializer<'de, DeError> =
                    de::value::BorrowedStrDeserializer::new(&key.text);
                seed.deserialize(key_de)
                    .map(Some)
                    .map_err(|e| e.at(key.pos, &path))
            }
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        match self.value.take() {
            Some((key, node)) => {
                let path = join(self.path, &key.text);
                seed.deserialize(NodeDe {
                    node,
                    path: path.clone(),
                })
                .map_err(|e| e.at(node.pos, &path))
            }
            None => Err(DeError::msg("internal: value requested before key")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::yaml::parse_documents;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct T {
        #[serde(default)]
        n: Option<u64>,
        #[serde(default)]
        b: Option<bool>,
        #[serde(default)]
        s: Option<String>,
        #[serde(default)]
        inner: Option<Inner>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        replicas: u64,
    }

    fn de(s: &str) -> Result<T, Issue> {
        let node = parse_documents(s, 0).unwrap().remove(0);
        from_node::<T>(&node, "")
    }

    #[test]
    fn type_errors_have_value_position_and_path() {
        let e = de("inner:\n  replicas: three\n").unwrap_err();
        assert_eq!(e.path, "inner.replicas");
        assert_eq!((e.pos.line, e.pos.col), (2, 13));
        assert_eq!(e.message, "expected an integer, found \"three\"");
    }

    #[test]
    fn yaml11_booleans_where_a_bool_is_expected_and_strings_stay_strings() {
        let t = de("b: on\ns: no\n").unwrap();
        assert_eq!(t.b, Some(true));
        assert_eq!(t.s.as_deref(), Some("no"));
        assert_eq!(de("b: 'off'\n").unwrap().b, Some(false));
        assert!(de("b: maybe\n").is_err());
    }

    #[test]
    fn quoted_numbers_are_cast_where_numbers_are_expected() {
        assert_eq!(de("n: '3'\n").unwrap().n, Some(3));
        assert!(de("n: -3\n").is_err());
    }

    #[test]
    fn unknown_keys_point_at_the_key_and_suggest() {
        let e = de("inner:\n  replicsa: 1\n").unwrap_err();
        assert_eq!(e.path, "inner.replicsa");
        assert_eq!((e.pos.line, e.pos.col), (2, 3));
        assert!(
            e.message.contains("did you mean \"replicas\""),
            "{}",
            e.message
        );
    }

    #[test]
    fn missing_fields_point_at_the_mapping() {
        let e = de("inner: {}\n").unwrap_err();
        assert_eq!(e.path, "inner");
        assert!(e.message.contains("missing required key \"replicas\""));
    }
}
