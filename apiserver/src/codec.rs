//! Turning bytes into objects and back, at the two edges of the apiserver.
//!
//! * **Requests**: `decode_request` turns a JSON value from a client into a typed object of the
//!   kind the URL names. `kind` and `apiVersion` may be omitted (they are filled in) but must be
//!   right when given. Decoding goes through `serde_path_to_error`, so an unknown or mistyped
//!   field becomes a 422 cause pointing at the field (`spec.taskTemplate.container.imag`)
//!   instead of a bare serde message. Decoding applies every serde default, which is what makes
//!   "unchanged" comparisons meaningful: two requests that differ only in spelled-out defaults
//!   decode to equal objects.
//! * **Store**: values are the object's JSON *without* `resourceVersion` (it is the key's
//!   `mod_revision`, stamped back on every read), exactly as kube-apiserver does.

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde_json::Value;
use swarm_api::{API_VERSION, AnyObject, Kind, StatusCause};

use crate::errors::{ApiError, ApiResult};
use crate::store::{KeyValue, Revision};

/// Decodes a client's object of kind `kind`. `name_hint` names the object in errors when the
/// body has no usable name.
pub fn decode_request(kind: Kind, mut value: Value, name_hint: &str) -> ApiResult<AnyObject> {
    let name = value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or(name_hint)
        .to_string();
    let Some(map) = value.as_object_mut() else {
        return Err(ApiError::invalid(
            kind,
            &name,
            vec![StatusCause::invalid("", "the body must be a JSON object")],
        ));
    };
    let mut causes = Vec::new();
    match map.get("kind") {
        None | Some(Value::Null) => {}
        Some(Value::String(k)) if k == kind.name() => {}
        Some(other) => causes.push(StatusCause::invalid(
            "kind",
            format!("must be {:?} for this URL, found {other}", kind.name()),
        )),
    }
    match map.get("apiVersion") {
        None | Some(Value::Null) => {}
        Some(Value::String(v)) if v == API_VERSION => {}
        Some(other) => causes.push(StatusCause::invalid(
            "apiVersion",
            format!("must be {API_VERSION:?}, found {other}"),
        )),
    }
    if !causes.is_empty() {
        return Err(ApiError::invalid(kind, &name, causes));
    }
    map.insert("kind".into(), Value::String(kind.name().into()));
    map.insert("apiVersion".into(), Value::String(API_VERSION.into()));
    typed(kind, value).map_err(|cause| ApiError::invalid(kind, &name, vec![cause]))
}

/// Decodes an object of any kind: the kind comes from its `kind` field (stack apply).
pub fn decode_any(value: Value) -> ApiResult<AnyObject> {
    let name = value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let kind = match value.get("kind") {
        Some(Value::String(k)) => match Kind::ALL.into_iter().find(|x| x.name() == k) {
            Some(kind) => kind,
            None => {
                return Err(ApiError::new(
                    swarm_api::StatusReason::Invalid,
                    format!("unknown kind {k:?}"),
                )
                .with_cause(StatusCause::new(
                    "FieldValueNotSupported",
                    "kind",
                    format!("unknown kind {k:?}; known kinds: {}", kind_names()),
                )));
            }
        },
        _ => {
            return Err(
                ApiError::new(swarm_api::StatusReason::Invalid, "kind is required")
                    .with_cause(StatusCause::required("kind")),
            );
        }
    };
    decode_request(kind, value, &name)
}

fn kind_names() -> String {
    Kind::ALL.map(|k| k.name()).join(", ")
}

impl ApiError {
    /// Adds one cause to the error's details.
    pub fn with_cause(mut self, cause: StatusCause) -> Self {
        self.0
            .details
            .get_or_insert_with(Default::default)
            .causes
            .push(cause);
        self
    }
}

/// Decodes a JSON value known to be an object of `kind` (already normalized).
pub fn from_value(kind: Kind, value: Value) -> ApiResult<AnyObject> {
    let name = value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    typed(kind, value).map_err(|c| ApiError::invalid(kind, &name, vec![c]))
}

fn typed(kind: Kind, value: Value) -> Result<AnyObject, StatusCause> {
    Ok(match kind {
        Kind::Node => AnyObject::Node(de(value)?),
        Kind::Network => AnyObject::Network(de(value)?),
        Kind::Secret => AnyObject::Secret(de(value)?),
        Kind::Config => AnyObject::Config(de(value)?),
        Kind::Service => AnyObject::Service(Box::new(de(value)?)),
        Kind::Task => AnyObject::Task(Box::new(de(value)?)),
        Kind::Lease => AnyObject::Lease(de(value)?),
        Kind::GitSync => AnyObject::GitSync(de(value)?),
    })
}

/// Deserializes with the path of the failing field, turned into a `StatusCause`.
fn de<T: DeserializeOwned>(value: Value) -> Result<T, StatusCause> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let message = e.inner().to_string();
        cause_from_serde(&path, &message)
    })
}

/// Maps serde's messages onto field paths. serde reports an unknown or missing field on the
/// *containing* object, so the field's own name is taken from the message and appended.
fn cause_from_serde(path: &str, message: &str) -> StatusCause {
    let join = |field: &str| {
        if path.is_empty() || path == "." {
            field.to_string()
        } else {
            format!("{path}.{field}")
        }
    };
    let quoted = message
        .split('`')
        .nth(1)
        .map(str::to_string)
        .unwrap_or_default();
    if message.starts_with("unknown field") {
        // serde_path_to_error already ends the path with the unknown key.
        let field = if path == quoted || path.ends_with(&format!(".{quoted}")) {
            path.to_string()
        } else {
            join(&quoted)
        };
        StatusCause::new(
            "FieldValueNotSupported",
            field.clone(),
            format!("unknown field {field:?}"),
        )
    } else if message.starts_with("missing field") {
        StatusCause::required(join(&quoted))
    } else {
        let field = if path == "." {
            String::new()
        } else {
            path.to_string()
        };
        StatusCause::invalid(field, message.to_string())
    }
}

/// The bytes stored for an object: its JSON without `resourceVersion`.
pub fn encode(obj: &AnyObject) -> Bytes {
    let mut obj = obj.clone();
    obj.meta_mut().resource_version.clear();
    // Serializing plain data structures cannot fail.
    Bytes::from(serde_json::to_vec(&obj).unwrap_or_default())
}

/// Decodes a stored value, stamping `resourceVersion` from the key's revision.
pub fn decode_stored(kind: Kind, value: &[u8], revision: Revision) -> ApiResult<AnyObject> {
    let value: Value = serde_json::from_slice(value)
        .map_err(|e| ApiError::internal(format!("corrupt {} in store: {e}", kind.name())))?;
    let mut obj = typed(kind, value).map_err(|c| {
        ApiError::internal(format!(
            "corrupt {} in store: {}: {}",
            kind.name(),
            c.field,
            c.message
        ))
    })?;
    obj.meta_mut().resource_version = revision.to_string();
    Ok(obj)
}

pub fn decode_kv(kind: Kind, kv: &KeyValue) -> ApiResult<AnyObject> {
    decode_stored(kind, &kv.value, kv.mod_revision)
}

/// Parses a client-supplied resourceVersion (`""` means none).
pub fn parse_revision(rv: &str) -> ApiResult<Option<Revision>> {
    if rv.is_empty() {
        return Ok(None);
    }
    rv.parse::<Revision>()
        .ok()
        .filter(|r| *r >= 0)
        .map(Some)
        .ok_or_else(|| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_fields_are_named_with_their_path() {
        let body = json!({"metadata": {"name": "web"},
            "spec": {"taskTemplate": {"container": {"imag": "nginx"}}}});
        let e = decode_request(Kind::Service, body, "web").unwrap_err();
        let c = &e.status().causes()[0];
        assert_eq!(c.field, "spec.taskTemplate.container.imag");
        assert_eq!(
            e.http_status(),
            axum::http::StatusCode::UNPROCESSABLE_ENTITY
        );
    }

    #[test]
    fn wrong_types_and_missing_fields_have_paths() {
        let body = json!({"metadata": {"name": "web"}, "spec": {"mode": {"replicated": {"replicas": "x"}}}});
        let e = decode_request(Kind::Service, body, "web").unwrap_err();
        assert_eq!(
            e.status().causes()[0].field,
            "spec.mode.replicated.replicas"
        );

        let e = decode_request(Kind::Service, json!({"spec": {}}), "web").unwrap_err();
        assert_eq!(e.status().causes()[0].field, "metadata");
        assert_eq!(e.status().causes()[0].reason, "FieldValueRequired");
    }

    #[test]
    fn kind_and_api_version_are_filled_in_or_checked() {
        let obj = decode_request(Kind::Network, json!({"metadata": {"name": "n"}}), "n").unwrap();
        assert_eq!(obj.to_value()["kind"], "Network");
        assert_eq!(obj.to_value()["apiVersion"], API_VERSION);
        let e = decode_request(
            Kind::Network,
            json!({"kind": "Service", "metadata": {"name": "n"}}),
            "n",
        )
        .unwrap_err();
        assert_eq!(e.status().causes()[0].field, "kind");
    }

    #[test]
    fn stored_values_never_hold_the_resource_version() {
        let mut obj =
            decode_request(Kind::Network, json!({"metadata": {"name": "n"}}), "n").unwrap();
        obj.meta_mut().resource_version = "42".into();
        let bytes = encode(&obj);
        assert!(!String::from_utf8_lossy(&bytes).contains("resourceVersion"));
        let back = decode_stored(Kind::Network, &bytes, 7).unwrap();
        assert_eq!(back.meta().resource_version, "7");
    }
}
