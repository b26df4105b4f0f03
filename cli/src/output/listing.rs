//! A list command's output (`service ls`, `service ps`, `node ls`, …) as docker prints it: the
//! default table, a `--format` template, or IDs only with `-q`.
//!
//! A list is a set of records — one JSON object per row, Docker's field names as keys
//! (`ID`, `Name`, `Replicas`) — plus the header of each field and the default table format.
//! Keys starting with `_` are internal helpers of the default format and never shown by
//! `{{json .}}`.

use serde_json::{Map, Value};

use super::tabwriter::tabwrite;
use super::template::{Template, TemplateError};

/// Rows ready to print.
#[derive(Clone, Debug)]
pub struct Listing {
    /// `table {{.ID}}\t{{.Name}}…`, as docker's default.
    pub default_format: &'static str,
    /// Field → header (`Name` → `NAME`).
    pub headers: &'static [(&'static str, &'static str)],
    pub rows: Vec<Map<String, Value>>,
}

impl Listing {
    pub fn new(
        default_format: &'static str,
        headers: &'static [(&'static str, &'static str)],
    ) -> Self {
        Listing {
            default_format,
            headers,
            rows: Vec::new(),
        }
    }

    /// The text to print: `-q` prints the `ID` field of each row; otherwise `format`
    /// (default: the default table).
    pub fn render(&self, format: Option<&str>, quiet: bool) -> Result<String, TemplateError> {
        let source = match (quiet, format) {
            (true, _) => "{{.ID}}",
            (false, Some(f)) if !f.trim().is_empty() => f,
            _ => self.default_format,
        };
        let template = Template::parse(source, self.default_format)?;
        let mut out = String::new();
        if template.table {
            let header: Map<String, Value> = self
                .headers
                .iter()
                .map(|(k, h)| (k.to_string(), Value::String(h.to_string())))
                .collect();
            out.push_str(&template.render(&Value::Object(header), false)?);
            out.push('\n');
        }
        for row in &self.rows {
            out.push_str(&template.render(&Value::Object(row.clone()), true)?);
            out.push('\n');
        }
        Ok(if template.table { tabwrite(&out) } else { out })
    }
}

/// Builds a record from `(field, value)` pairs.
pub fn record<const N: usize>(fields: [(&str, Value); N]) -> Map<String, Value> {
    fields
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const HEADERS: &[(&str, &str)] = &[("ID", "ID"), ("Name", "NAME")];

    fn listing() -> Listing {
        let mut l = Listing::new("table {{.ID}}\t{{.Name}}", HEADERS);
        l.rows
            .push(record([("ID", json!("abc")), ("Name", json!("web"))]));
        l.rows
            .push(record([("ID", json!("def")), ("Name", json!("db"))]));
        l
    }

    #[test]
    fn default_table_quiet_and_custom_formats() {
        let l = listing();
        assert_eq!(
            l.render(None, false).unwrap(),
            "ID        NAME\nabc       web\ndef       db\n"
        );
        assert_eq!(l.render(None, true).unwrap(), "abc\ndef\n");
        assert_eq!(l.render(Some("{{.Name}}"), true).unwrap(), "abc\ndef\n");
        assert_eq!(
            l.render(Some("{{.Name}}: {{.ID}}"), false).unwrap(),
            "web: abc\ndb: def\n"
        );
        assert_eq!(
            l.render(Some("table {{.Name}}"), false).unwrap(),
            "NAME\nweb\ndb\n"
        );
        assert_eq!(
            l.render(Some("{{json .}}"), false).unwrap(),
            "{\"ID\":\"abc\",\"Name\":\"web\"}\n{\"ID\":\"def\",\"Name\":\"db\"}\n"
        );
    }

    #[test]
    fn an_empty_list_still_has_its_header() {
        let l = Listing::new("table {{.ID}}\t{{.Name}}", HEADERS);
        assert_eq!(l.render(None, false).unwrap(), "ID        NAME\n");
        assert_eq!(l.render(None, true).unwrap(), "");
    }

    #[test]
    fn unknown_fields_are_errors() {
        let err = listing().render(Some("{{.Nope}}"), false).unwrap_err();
        assert!(err.to_string().contains(".ID, .Name"), "{err}");
    }
}
