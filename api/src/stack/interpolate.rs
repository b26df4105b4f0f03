//! Docker-Compose variable interpolation as `docker stack deploy` does it (docker/cli
//! `cli/compose/template`): `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`,
//! `${VAR:?err}`, `${VAR?err}` and `$$`. Values only, never keys; an unset variable without
//! a default becomes the empty string; a default runs up to the first `}` (no nesting).

use super::error::Issue;
use super::yaml::{Node, Value};

/// Why a string could not be interpolated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterpolateError {
    #[error(
        "invalid interpolation in {0:?}: write `$$` for a literal `$`, or `${{NAME}}` for a variable"
    )]
    Invalid(String),
    #[error("required variable {name} is missing a value: {message}")]
    Required { name: String, message: String },
}

/// Expands variables in one string; `env` looks a variable up.
pub fn interpolate(
    s: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, InterpolateError> {
    let invalid = || InterpolateError::Invalid(s.to_string());
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(r) = after.strip_prefix('{') {
            let end = r.find('}').ok_or_else(invalid)?;
            let body = &r[..end];
            out.push_str(&braced(body, env).ok_or_else(invalid)??);
            rest = &r[end + 1..];
        } else {
            let len = name_len(after);
            if len == 0 {
                return Err(invalid());
            }
            out.push_str(&env(&after[..len]).unwrap_or_default());
            rest = &after[len..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Length of the variable name at the start of `s` (`[_a-zA-Z][_a-zA-Z0-9]*`).
fn name_len(s: &str) -> usize {
    let mut n = 0;
    for (i, c) in s.char_indices() {
        let ok = c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit());
        if !ok {
            break;
        }
        n = i + c.len_utf8();
    }
    n
}

/// The value of `${body}`; `None` when the body is malformed.
fn braced(
    body: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<Result<String, InterpolateError>> {
    let len = name_len(body);
    if len == 0 {
        return None;
    }
    let name = &body[..len];
    let op = &body[len..];
    let value = env(name);
    let result = if op.is_empty() {
        Ok(value.unwrap_or_default())
    } else if let Some(d) = op.strip_prefix(":-") {
        Ok(value
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| d.to_string()))
    } else if let Some(d) = op.strip_prefix('-') {
        Ok(value.unwrap_or_else(|| d.to_string()))
    } else if let Some(m) = op.strip_prefix(":?") {
        match value.filter(|v| !v.is_empty()) {
            Some(v) => Ok(v),
            None => Err(InterpolateError::Required {
                name: name.to_string(),
                message: m.to_string(),
            }),
        }
    } else if let Some(m) = op.strip_prefix('?') {
        match value {
            Some(v) => Ok(v),
            None => Err(InterpolateError::Required {
                name: name.to_string(),
                message: m.to_string(),
            }),
        }
    } else {
        return None;
    };
    Some(result)
}

/// Interpolates every scalar value of a tree in place (keys untouched), collecting errors.
pub fn interpolate_tree(
    node: &mut Node,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
    issues: &mut Vec<Issue>,
) {
    match &mut node.value {
        Value::Scalar { text, .. } => {
            if text.contains('$') {
                match interpolate(text, env) {
                    Ok(v) => *text = v,
                    Err(e) => issues.push(Issue::new(node.pos, path, e.to_string())),
                }
            }
        }
        Value::Seq(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate_tree(item, &format!("{path}[{i}]"), env, issues);
            }
        }
        Value::Map(entries) => {
            for (k, v) in entries.iter_mut() {
                let p = if path.is_empty() {
                    k.text.clone()
                } else {
                    format!("{path}.{}", k.text)
                };
                interpolate_tree(v, &p, env, issues);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TAG" => Some("1.2".into()),
            "EMPTY" => Some(String::new()),
            "lower" => Some("x".into()),
            _ => None,
        }
    }

    fn i(s: &str) -> Result<String, InterpolateError> {
        interpolate(s, &env)
    }

    #[test]
    fn forms() {
        assert_eq!(i("img:$TAG").unwrap(), "img:1.2");
        assert_eq!(i("img:${TAG}-x").unwrap(), "img:1.2-x");
        assert_eq!(i("${UNSET}").unwrap(), "");
        assert_eq!(i("${UNSET:-d}").unwrap(), "d");
        assert_eq!(i("${EMPTY:-d}").unwrap(), "d");
        assert_eq!(i("${EMPTY-d}").unwrap(), "");
        assert_eq!(i("${UNSET-d}").unwrap(), "d");
        assert_eq!(i("$$TAG costs $$5").unwrap(), "$TAG costs $5");
        assert_eq!(i("$lower").unwrap(), "x");
        assert_eq!(i("{{.Node.ID}}").unwrap(), "{{.Node.ID}}");
    }

    #[test]
    fn required() {
        assert_eq!(i("${TAG:?need tag}").unwrap(), "1.2");
        let e = i("${UNSET:?set UNSET}").unwrap_err();
        assert_eq!(
            e.to_string(),
            "required variable UNSET is missing a value: set UNSET"
        );
        assert!(i("${EMPTY:?x}").is_err());
        assert_eq!(i("${EMPTY?x}").unwrap(), "");
        assert!(i("${UNSET?x}").is_err());
    }

    #[test]
    fn no_nesting_default_runs_to_first_brace() {
        assert_eq!(i("${UNSET:-${TAG}}").unwrap(), "${TAG}");
    }

    #[test]
    fn invalid() {
        assert!(i("$").is_err());
        assert!(i("cost $5").is_err());
        assert!(i("${").is_err());
        assert!(i("${}").is_err());
        assert!(i("${A B}").is_err());
        assert!(i("${A:x}").is_err());
    }
}
