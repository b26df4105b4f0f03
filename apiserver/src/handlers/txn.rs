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
//!
//! The first attempt plans against the watch cache rather than reading every object from the
//! store, as single-object writes do (`Registry::plan`): each operation is conditional on the
//! revision it was planned against, so the store's compare-and-swap still decides, and a
//! stale cache can only make the commit fail, never let a wrong write through.

use axum::Json;
use axum::extract::State;
use serde_json::Value;
use swarm_api::{AnyObject, Kind, StatusCause, StatusReason, validation};

use super::{AppState, JsonBody};
use crate::authz::Verb;
use crate::codec::{decode_any, parse_revision};
use crate::errors::{ApiError, ApiResult};
use crate::registry::{
    Registry, Subresource, plan_create, plan_delete, plan_update, prefix_causes,
};
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

    /// What this operation may plan against without reading the store
    /// (`Registry::guess`): nothing for a create (the store refuses a taken name); the watch
    /// cache's copy for an update or delete, if it is the revision the client named. A wrong
    /// guess fails the commit: final when the client named a revision (it is not the stored
    /// one), retried on a store read otherwise.
    fn guess(&self, registry: &Registry) -> ApiResult<Option<Option<AnyObject>>> {
        Ok(match self {
            Op::Create(_) => Some(None),
            Op::Update(o, _) => {
                let precondition = parse_revision(&o.meta().resource_version)?;
                registry.guess(o.kind(), o.name(), precondition)
            }
            Op::Delete {
                kind,
                name,
                precondition,
            } => registry.guess(*kind, name, *precondition),
        })
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
    let (revision, objs) = commit_ops(&st.registry, &ops).await?;
    let objs: Vec<AnyObject> = objs
        .into_iter()
        .map(|o| super::redact::redact(o, false))
        .collect();
    Ok(Json(serde_json::json!({
        "resourceVersion": revision.to_string(),
        "results": objs,
    })))
}

/// Plans and commits `ops` as one store transaction; the objects as they are after it.
async fn commit_ops(registry: &Registry, ops: &[Op]) -> ApiResult<(Revision, Vec<AnyObject>)> {
    for attempt in 1..=MAX_ATTEMPTS {
        let mut plans = Vec::with_capacity(ops.len());
        for (i, op) in ops.iter().enumerate() {
            let (kind, name) = op.target();
            // The first attempt plans against the watch cache (see `Op::guess`); a retry
            // follows a lost race, so it reads the store.
            let guess = if attempt == 1 {
                op.guess(registry)?
            } else {
                None
            };
            let planned = registry
                .plan(kind, &name, guess, |current| match op {
                    Op::Create(obj) => plan_create(current, obj.clone()),
                    Op::Update(obj, sub) => plan_update(current, obj.clone(), *sub),
                    Op::Delete { precondition, .. } => {
                        plan_delete(kind, &name, current, *precondition)
                    }
                })
                .await?
                .map_err(|e| e.in_context(&format!("operations[{i}]")))?;
            plans.push(planned);
        }
        match registry.commit(plans).await {
            Ok(committed) => return Ok(committed),
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

#[cfg(test)]
mod tests {
    use serde_json::json;
    use swarm_api::{StatusReason, Task, TaskSpec, TaskState};

    use super::*;
    use crate::store::Store;
    use crate::testing::LaggingCache;

    fn task(name: &str, state: TaskState) -> AnyObject {
        let mut t = Task::new(
            name,
            TaskSpec {
                service: "web".into(),
                ..Default::default()
            },
        );
        t.status.state = state;
        AnyObject::Task(Box::new(t))
    }

    /// `web.1.1` at revision 1 in both the store and the cache, then at revision 2 (ASSIGNED)
    /// in the store only: the cache is one write behind.
    async fn one_write_behind() -> LaggingCache {
        let lag = LaggingCache::new().await;
        lag.put(&task("web.1.1", TaskState::New), true).await;
        lag.put(&task("web.1.1", TaskState::Assigned), false).await;
        lag
    }

    async fn stored_state(lag: &LaggingCache, name: &str) -> (Revision, TaskState) {
        let kv = lag.store.get(&Kind::Task.key(name)).await.unwrap().unwrap();
        match crate::codec::decode_kv(Kind::Task, &kv).unwrap() {
            AnyObject::Task(t) => (kv.mod_revision, t.status.state),
            _ => unreachable!(),
        }
    }

    fn op(v: serde_json::Value) -> Vec<Op> {
        decode_ops(json!({ "operations": [v] })).unwrap()
    }

    /// The cache still holds revision 1, which is the revision the client names: planning
    /// against it must not let the write through, since the store is at revision 2.
    #[tokio::test]
    async fn a_stale_resource_version_is_refused_when_the_cache_is_as_stale() {
        let lag = one_write_behind().await;
        let mut stale = task("web.1.1", TaskState::Pending);
        stale.meta_mut().resource_version = "1".into();
        for ops in [
            op(json!({"op": "updateStatus", "object": stale})),
            op(json!({"op": "update", "object": stale})),
            op(json!({"op": "delete", "kind": "Task", "name": "web.1.1", "resourceVersion": "1"})),
        ] {
            let e = commit_ops(&lag.registry, &ops).await.unwrap_err();
            assert_eq!(e.reason(), StatusReason::Conflict, "{}", e.status().message);
            assert!(e.status().message.starts_with("operations[0]: "));
        }
        assert_eq!(
            stored_state(&lag, "web.1.1").await,
            (2, TaskState::Assigned)
        );
    }

    /// Without a precondition, a write planned against a stale copy loses at the commit and
    /// is planned again against the store: it lands on the stored object, not the cached one.
    #[tokio::test]
    async fn an_unconditional_write_planned_on_a_stale_cache_lands_on_the_stored_object() {
        let lag = one_write_behind().await;
        let mut relabelled = task("web.1.1", TaskState::New);
        relabelled
            .meta_mut()
            .labels
            .insert("tier".into(), "front".into());
        let (revision, objs) = commit_ops(
            &lag.registry,
            &op(json!({"op": "update", "object": relabelled})),
        )
        .await
        .unwrap();
        assert_eq!(revision, 3);
        let AnyObject::Task(t) = &objs[0] else {
            panic!("not a task")
        };
        // The status is the store's (ASSIGNED at revision 2), not the cache's (NEW).
        assert_eq!(t.status.state, TaskState::Assigned);
        assert_eq!(
            t.metadata.labels.get("tier").map(String::as_str),
            Some("front")
        );
        assert_eq!(
            stored_state(&lag, "web.1.1").await,
            (3, TaskState::Assigned)
        );
    }

    /// A create is planned without a read: a name the cache has not seen yet but the store
    /// holds is refused by the store.
    #[tokio::test]
    async fn a_create_of_a_name_only_the_store_holds_is_refused() {
        let lag = LaggingCache::new().await;
        lag.put(&task("web.2.1", TaskState::Running), false).await;
        let e = commit_ops(
            &lag.registry,
            &op(json!({"op": "create", "object": task("web.2.1", TaskState::New)})),
        )
        .await
        .unwrap_err();
        assert_eq!(e.reason(), StatusReason::AlreadyExists);
        assert_eq!(stored_state(&lag, "web.2.1").await, (1, TaskState::Running));
    }

    /// A write the cache's copy makes look like a no-op is checked against the store.
    #[tokio::test]
    async fn a_write_that_is_a_noop_on_the_cache_is_decided_on_the_store() {
        let lag = one_write_behind().await;
        // Back to NEW: equal to the cached copy, but a regression of the stored ASSIGNED.
        let e = commit_ops(
            &lag.registry,
            &op(json!({"op": "updateStatus", "object": task("web.1.1", TaskState::New)})),
        )
        .await
        .unwrap_err();
        assert_eq!(e.reason(), StatusReason::Conflict);
        assert!(
            e.status().message.contains("may not go backwards"),
            "{}",
            e.status().message
        );
        assert_eq!(
            stored_state(&lag, "web.1.1").await,
            (2, TaskState::Assigned)
        );
    }
}
