//! Label selectors and field selectors, as in Kubernetes' `?labelSelector=` and
//! `?fieldSelector=` query parameters: parsing and matching, nothing else.
//!
//! A selector is a comma-separated list of requirements that must all hold (AND):
//!
//! | form            | meaning                                  |
//! |-----------------|------------------------------------------|
//! | `k=v`, `k==v`   | label `k` is present and equals `v`      |
//! | `k!=v`          | label `k` is absent or differs from `v`  |
//! | `k in (a,b)`    | label `k` is present and is `a` or `b`   |
//! | `k notin (a,b)` | label `k` is absent or is neither        |
//! | `k`             | label `k` is present                     |
//! | `!k`            | label `k` is absent                      |
//!
//! Field selectors only know the equality forms (`=`, `==`, `!=`) and address fields by a dotted
//! path such as `spec.nodeName`; `field_value` reads such a path out of an object. Which paths
//! a server accepts per kind is `supported_fields`.
//!
//! The commas inside `in (a,b)` are not requirement separators, which is why parsing walks the
//! string keeping track of parentheses instead of splitting on `,`.

use std::collections::BTreeMap;
use std::fmt;

use crate::{AnyObject, Kind};

/// Why a selector string could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    #[error("invalid selector {selector:?}: {reason}")]
    Invalid { selector: String, reason: String },
    #[error("field {field:?} is not supported for {kind} field selectors; supported: {supported}")]
    UnsupportedField {
        kind: Kind,
        field: String,
        supported: String,
    },
}

fn invalid(selector: &str, reason: impl Into<String>) -> SelectorError {
    SelectorError::Invalid {
        selector: selector.to_string(),
        reason: reason.into(),
    }
}

/// One requirement of a label selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

impl Requirement {
    /// Whether a label set satisfies this requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Requirement::Equals(k, v) => labels.get(k) == Some(v),
            Requirement::NotEquals(k, v) => labels.get(k) != Some(v),
            Requirement::In(k, vs) => labels.get(k).is_some_and(|l| vs.contains(l)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|l| !vs.contains(l)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::DoesNotExist(k) => !labels.contains_key(k),
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Requirement::Equals(k, v) => write!(f, "{k}={v}"),
            Requirement::NotEquals(k, v) => write!(f, "{k}!={v}"),
            Requirement::In(k, vs) => write!(f, "{k} in ({})", vs.join(",")),
            Requirement::NotIn(k, vs) => write!(f, "{k} notin ({})", vs.join(",")),
            Requirement::Exists(k) => write!(f, "{k}"),
            Requirement::DoesNotExist(k) => write!(f, "!{k}"),
        }
    }
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    pub requirements: Vec<Requirement>,
}

impl LabelSelector {
    pub fn parse(s: &str) -> Result<LabelSelector, SelectorError> {
        let mut requirements = Vec::new();
        for part in split_top_level(s).map_err(|r| invalid(s, r))? {
            requirements.push(parse_requirement(s, part)?);
        }
        Ok(LabelSelector { requirements })
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.requirements.iter().map(|r| r.to_string()).collect();
        f.write_str(&parts.join(","))
    }
}

/// Splits on commas that are not inside parentheses, trimming each part and dropping empty
/// input. `a=b, c in (x,y)` → [`a=b`, `c in (x,y)`].
fn split_top_level(s: &str) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let mut depth = 0u32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| "unbalanced ')'".to_string())?
            }
            ',' if depth == 0 => {
                parts.push(s[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err("unbalanced '('".to_string());
    }
    parts.push(s[start..].trim());
    if parts.len() == 1 && parts[0].is_empty() {
        return Ok(Vec::new());
    }
    if parts.iter().any(|p| p.is_empty()) {
        return Err("empty requirement".to_string());
    }
    Ok(parts)
}

fn check_key(selector: &str, key: &str) -> Result<String, SelectorError> {
    let key = key.trim();
    if key.is_empty() {
        return Err(invalid(selector, "empty key"));
    }
    if key.len() > 253
        || !key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
    {
        return Err(invalid(selector, format!("invalid key {key:?}")));
    }
    Ok(key.to_string())
}

fn check_value(selector: &str, value: &str) -> Result<String, SelectorError> {
    let value = value.trim();
    if value.len() > 253
        || !value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | ':'))
    {
        return Err(invalid(selector, format!("invalid value {value:?}")));
    }
    Ok(value.to_string())
}

fn parse_requirement(selector: &str, part: &str) -> Result<Requirement, SelectorError> {
    // Set-based forms first: `key in (..)` / `key notin (..)`.
    if let Some(open) = part.find('(') {
        let head = part[..open].trim_end();
        let close = part
            .rfind(')')
            .filter(|&c| c == part.len() - 1)
            .ok_or_else(|| invalid(selector, format!("{part:?}: expected ')' at the end")))?;
        let values = part[open + 1..close]
            .split(',')
            .map(|v| check_value(selector, v))
            .collect::<Result<Vec<_>, _>>()?;
        if values.iter().any(String::is_empty) {
            return Err(invalid(selector, format!("{part:?}: empty value in set")));
        }
        let (key, op) = head
            .rsplit_once(char::is_whitespace)
            .ok_or_else(|| invalid(selector, format!("{part:?}: expected `KEY in (..)`")))?;
        let key = check_key(selector, key)?;
        return match op {
            "in" => Ok(Requirement::In(key, values)),
            "notin" => Ok(Requirement::NotIn(key, values)),
            other => Err(invalid(
                selector,
                format!("{part:?}: unknown operator {other:?}; expected in or notin"),
            )),
        };
    }
    if let Some((k, v)) = part.split_once("!=") {
        return Ok(Requirement::NotEquals(
            check_key(selector, k)?,
            check_value(selector, v)?,
        ));
    }
    if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
        return Ok(Requirement::Equals(
            check_key(selector, k)?,
            check_value(selector, v)?,
        ));
    }
    if let Some(k) = part.strip_prefix('!') {
        return Ok(Requirement::DoesNotExist(check_key(selector, k)?));
    }
    Ok(Requirement::Exists(check_key(selector, part)?))
}

/// One requirement of a field selector: `path=value` or `path!=value`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldRequirement {
    pub field: String,
    pub value: String,
    pub negated: bool,
}

/// A parsed field selector; the empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    pub requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    pub fn parse(s: &str) -> Result<FieldSelector, SelectorError> {
        let mut requirements = Vec::new();
        for part in split_top_level(s).map_err(|r| invalid(s, r))? {
            let (field, value, negated) = if let Some((f, v)) = part.split_once("!=") {
                (f, v, true)
            } else if let Some((f, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                (f, v, false)
            } else {
                return Err(invalid(
                    s,
                    format!("{part:?}: field selectors need `=`, `==` or `!=`"),
                ));
            };
            let field = field.trim();
            if field.is_empty() {
                return Err(invalid(s, format!("{part:?}: empty field")));
            }
            requirements.push(FieldRequirement {
                field: field.to_string(),
                value: value.trim().to_string(),
                negated,
            });
        }
        Ok(FieldSelector { requirements })
    }

    /// Parses and checks that every field is one the kind supports.
    pub fn parse_for(kind: Kind, s: &str) -> Result<FieldSelector, SelectorError> {
        let sel = FieldSelector::parse(s)?;
        let supported = supported_fields(kind);
        for r in &sel.requirements {
            if !supported.contains(&r.field.as_str()) {
                return Err(SelectorError::UnsupportedField {
                    kind,
                    field: r.field.clone(),
                    supported: supported.join(", "),
                });
            }
        }
        Ok(sel)
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether the object matches; `value_of` reads a field path (absent reads as `""`).
    pub fn matches_with(&self, value_of: impl Fn(&str) -> Option<String>) -> bool {
        self.requirements.iter().all(|r| {
            let actual = value_of(&r.field).unwrap_or_default();
            (actual == r.value) != r.negated
        })
    }

    pub fn matches(&self, obj: &AnyObject) -> bool {
        if self.is_empty() {
            return true;
        }
        let value = obj.to_value();
        self.matches_with(|path| field_value(&value, path))
    }
}

/// The field paths a field selector may use for each kind.
pub fn supported_fields(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Task => &[
            "metadata.name",
            "spec.service",
            "spec.nodeName",
            "spec.desiredState",
            "spec.slot",
            "status.state",
        ],
        Kind::Node => &[
            "metadata.name",
            "spec.role",
            "spec.availability",
            "status.state",
        ],
        Kind::Network => &["metadata.name", "spec.driver"],
        Kind::Service | Kind::Secret | Kind::Config | Kind::Lease | Kind::GitSync => {
            &["metadata.name"]
        }
    }
}

/// Reads a dotted path out of a JSON object as a string: strings as they are, numbers and
/// booleans printed, anything else (absent, null, objects, arrays) as `None`.
pub fn field_value(value: &serde_json::Value, path: &str) -> Option<String> {
    let mut v = value;
    for segment in path.split('.') {
        v = v.get(segment)?;
    }
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn equality_forms() {
        let l = labels(&[("app", "web"), ("tier", "front")]);
        assert!(LabelSelector::parse("app=web").unwrap().matches(&l));
        assert!(LabelSelector::parse("app==web").unwrap().matches(&l));
        assert!(!LabelSelector::parse("app!=web").unwrap().matches(&l));
        assert!(LabelSelector::parse("app!=db").unwrap().matches(&l));
        // `!=` matches objects without the label, as in Kubernetes.
        assert!(LabelSelector::parse("env!=prod").unwrap().matches(&l));
    }

    #[test]
    fn set_forms_and_existence() {
        let l = labels(&[("app", "web"), ("tier", "front")]);
        assert!(
            LabelSelector::parse("app in (db, web)")
                .unwrap()
                .matches(&l)
        );
        assert!(
            !LabelSelector::parse("app in (db,cache)")
                .unwrap()
                .matches(&l)
        );
        assert!(
            LabelSelector::parse("app notin (db,cache)")
                .unwrap()
                .matches(&l)
        );
        assert!(
            LabelSelector::parse("env notin (prod)")
                .unwrap()
                .matches(&l)
        );
        assert!(!LabelSelector::parse("env in (prod)").unwrap().matches(&l));
        assert!(LabelSelector::parse("tier").unwrap().matches(&l));
        assert!(!LabelSelector::parse("!tier").unwrap().matches(&l));
        assert!(LabelSelector::parse("!env").unwrap().matches(&l));
    }

    #[test]
    fn comma_is_and_but_not_inside_sets() {
        let sel = LabelSelector::parse("app in (web,db),tier=front,!env").unwrap();
        assert_eq!(sel.requirements.len(), 3);
        assert!(sel.matches(&labels(&[("app", "db"), ("tier", "front")])));
        assert!(!sel.matches(&labels(&[("app", "db"), ("tier", "back")])));
        assert!(!sel.matches(&labels(&[("app", "db"), ("tier", "front"), ("env", "x")])));
        assert_eq!(sel.to_string(), "app in (web,db),tier=front,!env");
    }

    #[test]
    fn empty_selector_matches_everything() {
        let sel = LabelSelector::parse("").unwrap();
        assert!(sel.is_empty());
        assert!(sel.matches(&labels(&[])));
    }

    #[test]
    fn bad_selectors_are_errors() {
        for bad in [
            "app in (web",
            "app)",
            "app=web,,x=y",
            "app between (a,b)",
            "a b=c",
            "=web",
            "app in ()",
        ] {
            assert!(
                LabelSelector::parse(bad).is_err(),
                "{bad:?} should not parse"
            );
        }
    }

    #[test]
    fn field_selectors() {
        let obj = serde_json::json!({
            "metadata": {"name": "web.1.1"},
            "spec": {"service": "web", "nodeName": "n1", "slot": 1},
            "status": {"state": "running"},
        });
        let get = |p: &str| field_value(&obj, p);
        let sel = FieldSelector::parse("spec.service=web,status.state!=failed").unwrap();
        assert!(sel.matches_with(get));
        let sel = FieldSelector::parse("spec.nodeName==n2").unwrap();
        assert!(!sel.matches_with(get));
        let sel = FieldSelector::parse("spec.slot=1").unwrap();
        assert!(sel.matches_with(get));
        // An absent field reads as empty.
        let sel = FieldSelector::parse("spec.missing=").unwrap();
        assert!(sel.matches_with(get));
        assert!(FieldSelector::parse("spec.service").is_err());
    }

    #[test]
    fn field_selectors_are_checked_per_kind() {
        assert!(FieldSelector::parse_for(Kind::Task, "spec.nodeName=n1").is_ok());
        let err = FieldSelector::parse_for(Kind::Service, "spec.nodeName=n1").unwrap_err();
        assert!(err.to_string().contains("metadata.name"), "{err}");
    }
}
