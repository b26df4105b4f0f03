//! Secret data is write-only over the REST API, as in Swarm (`docker secret inspect` never
//! shows it): answers carry secrets with `spec.data` empty unless the request says
//! `?showData=true` — which only callers allowed to read the secret at all get this far with
//! (admins; a node for the secrets its tasks reference). Agents receive data through the
//! dispatcher. A `PUT` that carries empty data keeps the stored data (see `registry`), so
//! reading, relabelling and writing back a secret works.

use serde::Deserialize;
use swarm_api::AnyObject;

/// `?showData=true`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevealParams {
    pub show_data: Option<String>,
}

impl RevealParams {
    pub fn reveal(&self) -> bool {
        matches!(self.show_data.as_deref(), Some("true" | "1"))
    }
}

/// Empties a secret's data unless `reveal`.
pub fn redact(mut obj: AnyObject, reveal: bool) -> AnyObject {
    if !reveal && let AnyObject::Secret(s) = &mut obj {
        s.spec.data.clear();
    }
    obj
}

/// The same, on the JSON form (lists, transaction and apply results).
pub fn redact_json(value: &mut serde_json::Value, reveal: bool) {
    if reveal || value.get("kind").and_then(|k| k.as_str()) != Some("Secret") {
        return;
    }
    if let Some(data) = value.pointer_mut("/spec/data") {
        *data = serde_json::Value::String(String::new());
    }
}
