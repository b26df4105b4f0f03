//! A small Go-template subset for `--format`: literal text, fields (`{{.Name}}`,
//! `{{.spec.mode}}`), `{{json .}}` / `{{json .Field}}`, `{{upper …}}`, `{{lower …}}`, the `table`
//! prefix (a header row, then tab-aligned columns) and the `\t` / `\n` escapes docker accepts.
//! `--format json` means `{{json .}}`, as in newer docker.

use serde_json::Value;

/// A parsed `--format`.
#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    /// `table …`: print a header row and align columns.
    pub table: bool,
    parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq)]
enum Part {
    Text(String),
    Action { func: Func, path: Vec<String> },
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Func {
    Print,
    Json,
    Upper,
    Lower,
}

/// Why a `--format` was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TemplateError {
    #[error("invalid --format {format:?}: {message}")]
    Parse { format: String, message: String },
    #[error("invalid --format: there is no field .{field}; the fields are {known}")]
    UnknownField { field: String, known: String },
}

impl Template {
    /// Parses a format; `table` alone (or an empty table) means `default_table`.
    pub fn parse(format: &str, default_table: &str) -> Result<Template, TemplateError> {
        let trimmed = format.trim();
        let source = match trimmed {
            "table" => default_table,
            "json" => "{{json .}}",
            _ => format,
        };
        let (table, body) = match source.strip_prefix("table") {
            Some(rest) => (true, rest.trim_matches(' ')),
            None => (false, source),
        };
        let body = body.replace("\\t", "\t").replace("\\n", "\n");
        let parts = parse_parts(&body).map_err(|message| TemplateError::Parse {
            format: format.to_string(),
            message,
        })?;
        Ok(Template { table, parts })
    }

    /// The template applied to one value. With `strict`, a field the value lacks is an error
    /// naming the fields there are; otherwise it prints `<no value>`, as Go does for maps.
    pub fn render(&self, value: &Value, strict: bool) -> Result<String, TemplateError> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Action { func, path } => {
                    let v = match lookup(value, path) {
                        Some(v) => v,
                        None if strict => {
                            return Err(TemplateError::UnknownField {
                                field: path.join("."),
                                known: known_fields(value),
                            });
                        }
                        None => {
                            out.push_str("<no value>");
                            continue;
                        }
                    };
                    match func {
                        Func::Print => out.push_str(&go_print(v)),
                        Func::Json => out.push_str(&go_json(v)),
                        Func::Upper => out.push_str(&go_print(v).to_uppercase()),
                        Func::Lower => out.push_str(&go_print(v).to_lowercase()),
                    }
                }
            }
        }
        Ok(out)
    }
}

fn known_fields(value: &Value) -> String {
    match value.as_object() {
        Some(map) => {
            let mut keys: Vec<String> = map
                .keys()
                .filter(|k| !k.starts_with('_'))
                .map(|k| format!(".{k}"))
                .collect();
            keys.sort();
            keys.join(", ")
        }
        None => "none".to_string(),
    }
}

fn parse_parts(body: &str) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut rest = body;
    while let Some(open) = rest.find("{{") {
        let mut text = rest[..open].to_string();
        let after = &rest[open + 2..];
        let close = after
            .find("}}")
            .ok_or_else(|| "an action opened with {{ is not closed with }}".to_string())?;
        let mut inner = &after[..close];
        rest = &after[close + 2..];
        if let Some(i) = inner.strip_prefix('-') {
            inner = i;
            text.truncate(text.trim_end().len());
        }
        let mut trim_after = false;
        if let Some(i) = inner.strip_suffix('-') {
            inner = i;
            trim_after = true;
        }
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        parts.push(parse_action(inner.trim())?);
        if trim_after {
            rest = rest.trim_start();
        }
    }
    if !rest.is_empty() {
        parts.push(Part::Text(rest.to_string()));
    }
    Ok(parts)
}

fn parse_action(inner: &str) -> Result<Part, String> {
    let words: Vec<&str> = inner.split_whitespace().collect();
    let (func, arg) = match words.as_slice() {
        [arg] => (Func::Print, *arg),
        ["json", arg] => (Func::Json, *arg),
        ["upper", arg] => (Func::Upper, *arg),
        ["lower", arg] => (Func::Lower, *arg),
        [f, _] => {
            return Err(format!(
                "unknown function {f:?} (known: json, upper, lower)"
            ));
        }
        _ => {
            return Err(format!(
                "cannot read {{{{{inner}}}}}: use {{{{.Field}}}} or {{{{json .}}}}"
            ));
        }
    };
    let path = parse_path(arg)?;
    Ok(Part::Action { func, path })
}

fn parse_path(arg: &str) -> Result<Vec<String>, String> {
    if arg == "." {
        return Ok(Vec::new());
    }
    let Some(rest) = arg.strip_prefix('.') else {
        return Err(format!(
            "{arg:?} is not a field: fields start with a dot, as in .Name"
        ));
    };
    rest.split('.')
        .map(|seg| {
            if !seg.is_empty()
                && seg
                    .chars()
                    .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
            {
                Ok(seg.to_string())
            } else {
                Err(format!(
                    "{arg:?} is not a field path such as .Name or .spec.mode"
                ))
            }
        })
        .collect()
}

fn lookup<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut v = value;
    for seg in path {
        v = v.get(seg.as_str())?;
    }
    Some(v)
}

/// How Go's `text/template` prints a value: strings bare, `[a b]` lists, `map[k:v]` maps.
pub fn go_print(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".to_string(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(a) => format!("[{}]", a.iter().map(go_print).collect::<Vec<_>>().join(" ")),
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().filter(|k| !k.starts_with('_')).collect();
            keys.sort();
            format!(
                "map[{}]",
                keys.iter()
                    .map(|k| format!("{k}:{}", go_print(&m[k.as_str()])))
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        }
    }
}

/// JSON as Go's `encoding/json` writes it: compact, object keys sorted, `<`, `>` and `&`
/// escaped. Fields whose names start with `_` are internal and left out.
pub fn go_json(v: &Value) -> String {
    let mut out = String::new();
    write_json(v, &mut out);
    out
}

fn write_json(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().filter(|k| !k.starts_with('_')).collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(&Value::String((*k).clone()), out);
                out.push(':');
                write_json(&m[k.as_str()], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, item) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(item, out);
            }
            out.push(']');
        }
        scalar => {
            let s = scalar.to_string();
            out.push_str(
                &s.replace('<', "\\u003c")
                    .replace('>', "\\u003e")
                    .replace('&', "\\u0026"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(format: &str, v: &Value) -> String {
        Template::parse(format, "table {{.ID}}")
            .unwrap()
            .render(v, true)
            .unwrap()
    }

    #[test]
    fn fields_and_literal_text() {
        let v = json!({"Name": "web", "Replicas": "2/3"});
        assert_eq!(render("{{.Name}} {{.Replicas}}", &v), "web 2/3");
        assert_eq!(render("name={{ .Name }};", &v), "name=web;");
        assert_eq!(render("{{.Name}}\\t{{.Replicas}}", &v), "web\t2/3");
        assert_eq!(render("{{upper .Name}}", &v), "WEB");
    }

    #[test]
    fn json_sorts_keys_escapes_like_go_and_hides_internal_fields() {
        let v = json!({"Name": "a<b>&c", "ID": "x", "_self": " "});
        assert_eq!(
            render("{{json .}}", &v),
            r#"{"ID":"x","Name":"a\u003cb\u003e\u0026c"}"#
        );
        assert_eq!(
            render("json", &v),
            r#"{"ID":"x","Name":"a\u003cb\u003e\u0026c"}"#
        );
        assert_eq!(render("{{json .ID}}", &v), r#""x""#);
    }

    #[test]
    fn table_prefix_and_default() {
        let t = Template::parse("table {{.ID}}\\t{{.Name}}", "").unwrap();
        assert!(t.table);
        assert_eq!(
            t.render(&json!({"ID": "1", "Name": "n"}), true).unwrap(),
            "1\tn"
        );
        let t = Template::parse("table", "table {{.ID}}").unwrap();
        assert!(t.table);
        assert_eq!(t.render(&json!({"ID": "1"}), true).unwrap(), "1");
        assert!(!Template::parse("{{.ID}}", "").unwrap().table);
    }

    #[test]
    fn nested_paths_and_go_printing() {
        let v = json!({"spec": {"mode": {"replicated": {"replicas": 3}}, "ports": [1, 2]}});
        assert_eq!(
            render("{{.spec.mode}}", &v),
            "map[replicated:map[replicas:3]]"
        );
        assert_eq!(render("{{.spec.ports}}", &v), "[1 2]");
        let t = Template::parse("{{.status.x}}", "").unwrap();
        assert_eq!(t.render(&v, false).unwrap(), "<no value>");
    }

    #[test]
    fn trim_markers() {
        let v = json!({"A": "a", "B": "b"});
        assert_eq!(render("{{.A}}  {{- .B}}", &v), "ab");
        assert_eq!(render("{{.A -}}  x", &v), "ax");
    }

    #[test]
    fn errors_say_what_to_do() {
        let err = Template::parse("{{.Name", "").unwrap_err();
        assert!(err.to_string().contains("not closed"), "{err}");
        let err = Template::parse("{{printf .Name}}", "").unwrap_err();
        assert!(
            err.to_string().contains("unknown function \"printf\""),
            "{err}"
        );
        let err = Template::parse("{{Name}}", "").unwrap_err();
        assert!(err.to_string().contains("fields start with a dot"), "{err}");
        let t = Template::parse("{{.Nmae}}", "").unwrap();
        let err = t
            .render(&json!({"Name": "x", "ID": "y"}), true)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid --format: there is no field .Nmae; the fields are .ID, .Name"
        );
    }
}
