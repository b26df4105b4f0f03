//! One module per `swarm` subcommand.

pub mod apply;
pub mod completion;
pub mod convert;
pub mod credentials;
pub mod data;
pub mod delete;
pub mod describe;
pub mod diff;
pub mod events;
pub mod get;
pub mod init;
pub mod join;
pub mod logs;
pub mod network;
pub mod node;
pub mod rollout;
pub mod schema;
pub mod server;
pub mod service;
pub mod stack;
pub mod validate;
pub mod wait;

use serde::Serialize;

use crate::output::template::Template;

/// `inspect` output: the objects as a JSON array indented by four spaces (docker's layout),
/// or `format` applied to each object, one line each.
pub fn inspect_json<T: Serialize>(objects: &[T], format: Option<&str>) -> anyhow::Result<String> {
    let values: Vec<serde_json::Value> = objects
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<_, _>>()?;
    if let Some(f) = format {
        let t = Template::parse(f, "")?;
        let mut out = String::new();
        for v in &values {
            out.push_str(&t.render(v, false)?);
            out.push('\n');
        }
        return Ok(out);
    }
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    values.serialize(&mut ser)?;
    let mut text = String::from_utf8(buf)?;
    text.push('\n');
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inspect_is_an_indented_array_or_a_format_per_object() {
        let objs = vec![serde_json::json!({"metadata": {"name": "a"}})];
        assert_eq!(
            inspect_json(&objs, None).unwrap(),
            "[\n    {\n        \"metadata\": {\n            \"name\": \"a\"\n        }\n    }\n]\n"
        );
        assert_eq!(
            inspect_json(&objs, Some("{{.metadata.name}}")).unwrap(),
            "a\n"
        );
    }
}
