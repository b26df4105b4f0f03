//! `/openapi.json`: an OpenAPI 3 description of the API, generated from the route table
//! (`server::ROUTES`) and the schemars schemas of every kind.
//!
//! Per-kind routes (`/v1/{plural}/...`) are expanded once per kind, so each path names the
//! schema of its own kind; schemas live under `components/schemas`, shared by reference.

use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};
use swarm_api::{Kind, objects::*};

use crate::server::{ROUTES, RouteDoc};

/// The whole document.
pub fn document() -> Value {
    let mut generator = SchemaSettings::openapi3().into_generator();
    let mut kind_refs = Map::new();
    for kind in Kind::ALL {
        let schema = match kind {
            Kind::Node => generator.subschema_for::<Node>(),
            Kind::Network => generator.subschema_for::<Network>(),
            Kind::Secret => generator.subschema_for::<Secret>(),
            Kind::Config => generator.subschema_for::<Config>(),
            Kind::Service => generator.subschema_for::<Service>(),
            Kind::Task => generator.subschema_for::<Task>(),
            Kind::Lease => generator.subschema_for::<Lease>(),
            Kind::GitSync => generator.subschema_for::<GitSync>(),
        };
        kind_refs.insert(kind.name().to_string(), schema.to_value());
    }
    let status = generator.subschema_for::<swarm_api::Status>().to_value();
    let schemas = generator.take_definitions(true);

    let mut paths = Map::new();
    for route in ROUTES {
        if route.path.contains("{plural}") {
            for kind in Kind::ALL {
                if route.status_only && !kind.has_status() {
                    continue;
                }
                let path = route.path.replace("{plural}", kind.plural());
                let schema = kind_refs.get(kind.name()).cloned().unwrap_or(Value::Null);
                add(&mut paths, &path, route, Some(kind), &schema, &status);
            }
        } else {
            add(&mut paths, route.path, route, None, &Value::Null, &status);
        }
    }
    json!({
        "openapi": "3.0.3",
        "info": {"title": "swarm API", "version": "v1"},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

fn add(
    paths: &mut Map<String, Value>,
    path: &str,
    route: &RouteDoc,
    kind: Option<Kind>,
    schema: &Value,
    status: &Value,
) {
    let summary = match kind {
        Some(k) => route.summary.replace("{kind}", k.name()),
        None => route.summary.to_string(),
    };
    let mut op = json!({
        "summary": summary,
        "operationId": format!("{}{}", route.method.to_ascii_lowercase(), path.replace(['/', '{', '}'], "_")),
        "responses": {
            "default": {"description": "a Status describing the failure",
                        "content": {"application/json": {"schema": status}}},
        },
    });
    let ok = if schema.is_null() {
        json!({"description": "success"})
    } else {
        json!({"description": "success", "content": {"application/json": {"schema": schema}}})
    };
    op["responses"][route.ok_code] = ok;
    if route.has_body && !schema.is_null() {
        op["requestBody"] = json!({"content": {"application/json": {"schema": schema}}});
    }
    let params: Vec<Value> = path
        .split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|p| json!({"name": p, "in": "path", "required": true, "schema": {"type": "string"}}))
        .chain(
            route
                .query
                .iter()
                .map(|q| json!({"name": q, "in": "query", "schema": {"type": "string"}})),
        )
        .collect();
    if !params.is_empty() {
        op["parameters"] = Value::Array(params);
    }
    let entry = paths
        .entry(path.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    entry[route.method.to_ascii_lowercase()] = op;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_paths_and_a_schema() {
        let doc = document();
        for kind in Kind::ALL {
            let list = format!("/v1/{}", kind.plural());
            assert!(doc["paths"][&list]["get"].is_object(), "{list}");
            assert!(doc["paths"][&list]["post"].is_object(), "{list}");
            assert!(
                doc["components"]["schemas"][kind.name()].is_object(),
                "{}",
                kind.name()
            );
            let status = format!("/v1/{}/{{name}}/status", kind.plural());
            assert_eq!(
                doc["paths"][&status].is_object(),
                kind.has_status(),
                "{status}"
            );
        }
        assert!(doc["paths"]["/v1/transactions"]["post"].is_object());
        assert!(doc["paths"]["/v1/stacks/{name}/apply"]["post"].is_object());
    }
}
