//! The JSON Schemas swarm publishes: the stack file as the loader accepts it, and one per
//! kind. `swarm schema --out schemas/` writes them; a test keeps the checked-in copies fresh.

use schemars::JsonSchema;

use super::compose::ComposeFile;
use crate::Kind;
use crate::objects::*;

fn render<T: JsonSchema>() -> String {
    let schema = schemars::schema_for!(T);
    let mut s = serde_json::to_string_pretty(&schema).unwrap_or_default();
    s.push('\n');
    s
}

/// The schema of one kind's objects.
pub fn kind_schema(kind: Kind) -> String {
    match kind {
        Kind::Node => render::<Node>(),
        Kind::Network => render::<Network>(),
        Kind::Secret => render::<Secret>(),
        Kind::Config => render::<Config>(),
        Kind::Service => render::<Service>(),
        Kind::Task => render::<Task>(),
        Kind::Lease => render::<Lease>(),
        Kind::GitSync => render::<GitSync>(),
    }
}

/// Every schema as (file name, content): `stack.schema.json`, then `<kind>.schema.json`.
pub fn all_schemas() -> Vec<(String, String)> {
    let mut out = vec![("stack.schema.json".to_string(), render::<ComposeFile>())];
    for kind in Kind::ALL {
        out.push((
            format!("{}.schema.json", kind.name().to_ascii_lowercase()),
            kind_schema(kind),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_schema_allows_extension_keys_and_refuses_unknown_ones() {
        let v: serde_json::Value = serde_json::from_str(&all_schemas()[0].1).unwrap();
        assert_eq!(v["additionalProperties"], false);
        assert!(v["patternProperties"]["^x-"].is_object());
        assert!(v["properties"]["services"].is_object());
        assert_eq!(all_schemas().len(), 1 + Kind::ALL.len());
    }
}
