//! `POST /v1/transactions`: several writes committed all or none.
//!
//! ```json
//! {"operations": [
//!   {"op": "create", "object": {…}},
//!   {"op": "update", "object": {… "metadata": {"resourceVersion": "12"}}},
//!   {"op": "updateStatus", "object": {…}},
//!   {"op": "delete", "kind": "Task", "name": "web.1.1", "resourceVersion": "9"}
//! ]}
//! ```
//!
//! Each operation is planned exactly like its single-object endpoint (validation, admission,
//! generation, no-op detection), then all go into one store transaction. A failure names the
//! operation: the message starts with `operations[i]: ` and the cause's field is
//! `operations[i]`. Operations without a `resourceVersion` are conditional on what was read;
//! if only those lose a race, the transaction is re-read and retried a few times.

use axum::Json;
use axum::extract::State;
use serde_json::Value;
use swarm_api::{AnyObject, Kind, StatusCause, StatusReason, validation};

use super::{AppState, JsonBody};
use crate::authz::Verb;
use crate::codec::{decode_any, parse_revision};
use crate::errors::{ApiError, ApiResult};
use crate::registry::{Subresource, plan_create, plan_delete, plan_update, prefix_causes};
use crate::store::{Revision, StoreError};

const MAX_ATTEMPTS: usize = 5;

/// One decoded operation.
enum Op {
    Create(AnyObject),
    Update(AnyObject, Subresource),
    Delete {
        kind: Kind,
        name: String,
        precondition: Option<Revision>,
    },
}

impl Op {
    fn target(&self) -> (Kind, String) {
        match self {
            Op::Create(o) | Op::Update(o, _) => (o.kind(), o.name().to_string()),
            Op::Delete { kind, name, .. } => (*kind, name.clone()),
        }
    }

    /// Whether the client made this operation conditional (then a conflict is final).
    fn guarded(&self) -> bool {
        match self {
            Op::Create(_) => true,
            Op::Update(o, _) => !o.meta().resource_version.is_empty(),
            Op::Delete { precondition, .. } => precondition.is_some(),
        }
    }
}

pub async fn transaction(
    State(st): State<AppState>,
    peer: Option<axum::Extension<crate::tls::Peer>>,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Value>> {
    let ops = decode_ops(body)?;
    if let Some(axum::Extension(crate::tls::Peer(Some(who)))) = &peer {
        for (i, op) in ops.iter().enumerate() {
            let (kind, name) = op.target();
            let verb = match op {
                Op::Create(_) => Verb::Create,
                Op::Update(_, Subresource::Status) => Verb::UpdateStatus,
                Op::Update(_, _) => Verb::Update,
                Op::Delete { .. } => Verb::Delete,
            };
            super::guard::decide(&st, who, verb, kind, Some(&name), None)
                .await
                .map_err(|e| e.in_context(&format!("operations[{i}]")))?;
        }
    }
    for attempt in 1..=MAX_ATTEMPTS {
        let mut plans = Vec::with_capacity(ops.len());
        for (i, op) in ops.iter().enumerate() {
            let (kind, name) = op.target();
            let current = st.registry.read(kind, &name).await?;
            let planned = match op {
                Op::Create(obj) => plan_create(current.as_ref(), obj.clone()),
                Op::Update(obj, sub) => plan_update(current.as_ref(), obj.clone(), *sub),
                Op::Delete { precondition, .. } => {
                    plan_delete(kind, &name, current.as_ref(), *precondition)
                }
            }
            .map_err(|e| e.in_context(&format!("operations[{i}]")))?;
            plans.push(planned);
        }
        match st.registry.commit(plans).await {
            Ok((revision, objs)) => {
                let objs: Vec<AnyObject> = objs
                    .into_iter()
                    .map(|o| super::redact::redact(o, false))
                    .collect();
                return Ok(Json(serde_json::json!({
                    "resourceVersion": revision.to_string(),
                    "results": objs,
                })));
            }
            Err((Some(i), e)) => {
                let retry = matches!(e, StoreError::Conflict { .. } | StoreError::NotFound { .. })
                    && !ops[i].guarded()
                    && attempt < MAX_ATTEMPTS;
                if retry {
                    continue;
                }
                let (kind, name) = ops[i].target();
                return Err(
                    ApiError::from_store(kind, &name, e).in_context(&format!("operations[{i}]"))
                );
            }
            Err((None, e)) => return Err(ApiError::from(e)),
        }
    }
    Err(ApiError::new(
        StatusReason::Conflict,
        "transaction kept conflicting with concurrent writers; try again",
    ))
}

fn invalid(causes: Vec<StatusCause>) -> ApiError {
    ApiError(Box::new(swarm_api::Status::invalid(
        "Transaction",
        "",
        causes,
    )))
}

fn decode_ops(body: Value) -> ApiResult<Vec<Op>> {
    let Some(items) = body.get("operations").and_then(Value::as_array) else {
        return Err(invalid(vec![StatusCause::required("operations")]));
    };
    let mut causes = Vec::new();
    let mut ops = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, v) in items.iter().enumerate() {
        let at = format!("operations[{i}]");
        match decode_op(v) {
            Ok(op) => {
                // Report every invalid object up front, not just the first one planned.
                if let Op::Create(obj) | Op::Update(obj, Subresource::Main) = &op {
                    causes.extend(prefix_causes(validation::validate(obj), &at));
                }
                if !seen.insert(op.target()) {
                    let (kind, name) = op.target();
                    causes.push(StatusCause::new(
                        "FieldValueDuplicate",
                        at,
                        format!("{kind} {name:?} is the target of more than one operation"),
                    ));
                }
                ops.push(op);
            }
            Err(e) => {
                let inner = e.status().causes().to_vec();
                if inner.is_empty() {
                    causes.push(StatusCause::invalid(at, e.status().message.clone()));
                } else {
                    causes.extend(prefix_causes(inner, &at));
                }
            }
        }
    }
    if !causes.is_empty() {
        return Err(invalid(causes));
    }
    Ok(ops)
}

fn decode_op(v: &Value) -> ApiResult<Op> {
    let op = v.get("op").and_then(Value::as_str).unwrap_or("");
    let object = || -> ApiResult<AnyObject> {
        let obj = v
            .get("object")
            .cloned()
            .ok_or_else(|| invalid(vec![StatusCause::required("object")]))?;
        let obj = decode_any(obj).map_err(|e| {
            let causes = prefix_causes(e.status().causes().to_vec(), "object");
            if causes.is_empty() {
                e
            } else {
                invalid(causes)
            }
        })?;
        Ok(obj)
    };
    match op {
        "create" => Ok(Op::Create(object()?)),
        "update" => Ok(Op::Update(object()?, Subresource::Main)),
        "updateStatus" => Ok(Op::Update(object()?, Subresource::Status)),
        "delete" => {
            let kind = v
                .get("kind")
                .and_then(Value::as_str)
                .and_then(|k| k.parse::<Kind>().ok())
                .ok_or_else(|| {
                    invalid(vec![StatusCause::invalid(
                        "kind",
                        "a known kind is required",
                    )])
                })?;
            let name = v
                .get("name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .ok_or_else(|| invalid(vec![StatusCause::required("name")]))?;
            let precondition = parse_revision(
                v.get("resourceVersion")
                    .and_then(Value::as_str)
                    .unwrap_or(""),
            )?;
            Ok(Op::Delete {
                kind,
                name: name.to_string(),
                precondition,
            })
        }
        other => Err(invalid(vec![StatusCause::new(
            "FieldValueNotSupported",
            "op",
            format!("unknown op {other:?}; expected create, update, updateStatus or delete"),
        )])),
    }
}
