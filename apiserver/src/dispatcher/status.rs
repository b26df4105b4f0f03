//! Batched task status reports. Within a batch the last report of a task wins; every report is
//! planned as a `/status` write (so the registry's admission refuses an observed-state
//! regression), and the accepted ones are committed in one store transaction per chunk of
//! `max_ops_per_txn`. A report is refused — and only that report — when its task is unknown,
//! bound to another node, or would move backwards.

use swarm_api::{AnyObject, Kind, StatusReason, TaskStatus};
use swarm_proto::v1::{RefusedUpdate, TaskStatusUpdate};

use crate::errors::{ApiError, ApiResult};
use crate::registry::{Planned, Registry, Subresource, plan_update};
use crate::store::StoreError;

const ATTEMPTS: usize = 5;

/// Applies `updates` from `node`; returns the refused ones.
pub async fn apply(
    registry: &Registry,
    node: &str,
    updates: Vec<TaskStatusUpdate>,
    max_ops: usize,
) -> ApiResult<Vec<RefusedUpdate>> {
    // Latest wins: keep each task's last report, in first-seen order.
    let mut order: Vec<String> = Vec::new();
    let mut latest: std::collections::HashMap<String, Vec<u8>> = Default::default();
    for u in updates {
        if latest.insert(u.task_name.clone(), u.status).is_none() {
            order.push(u.task_name);
        }
    }
    let mut refused = Vec::new();
    let mut parsed = Vec::with_capacity(order.len());
    for name in order {
        let raw = latest.remove(&name).unwrap_or_default();
        match serde_json::from_slice::<TaskStatus>(&raw) {
            Ok(s) => parsed.push((name, s)),
            Err(e) => refused.push(RefusedUpdate {
                task_name: name,
                reason: format!("invalid status: {e}"),
            }),
        }
    }
    for chunk in parsed.chunks(max_ops.max(1)) {
        refused.extend(write_chunk(registry, node, chunk).await?);
    }
    Ok(refused)
}

async fn write_chunk(
    registry: &Registry,
    node: &str,
    chunk: &[(String, TaskStatus)],
) -> ApiResult<Vec<RefusedUpdate>> {
    for attempt in 0..ATTEMPTS {
        let mut refused = Vec::new();
        let mut plans = Vec::with_capacity(chunk.len());
        for (name, status) in chunk {
            // The first attempt plans against the watch cache (`Registry::plan`: a refusal or
            // a no-op is decided again on a store read; a write is checked by the commit); a
            // retry follows a lost race, so it reads the store.
            let guess = if attempt == 0 {
                registry.guess(Kind::Task, name, None)
            } else {
                None
            };
            let planned = registry
                .plan(Kind::Task, name, guess, |current| {
                    plan_report(current, name, node, status)
                })
                .await?;
            match planned {
                Ok(Planned::Noop { .. }) => {}
                Ok(p) => plans.push(p),
                Err(e) => refused.push(RefusedUpdate {
                    task_name: name.clone(),
                    reason: e.status().message.clone(),
                }),
            }
        }
        match registry.commit(plans).await {
            Ok(_) => return Ok(refused),
            Err((_, StoreError::Conflict { .. } | StoreError::NotFound { .. })) => continue,
            Err((_, e)) => return Err(ApiError::from(e)),
        }
    }
    Err(ApiError::new(
        StatusReason::Conflict,
        "status batch kept conflicting with other writers; retry",
    ))
}

/// Plans `node`'s report of `status` for task `name`, given the task as stored (or cached):
/// refused when the task is unknown, bound to another node, or would move backwards.
fn plan_report(
    current: Option<&AnyObject>,
    name: &str,
    node: &str,
    status: &TaskStatus,
) -> ApiResult<Planned> {
    let Some(current) = current else {
        return Err(ApiError::new(
            StatusReason::NotFound,
            format!("task {name:?} not found"),
        ));
    };
    let AnyObject::Task(task) = current else {
        return Err(ApiError::internal("not a task"));
    };
    if task.spec.node_name.as_deref() != Some(node) {
        return Err(ApiError::new(
            StatusReason::Forbidden,
            format!("task {name:?} is not assigned to node {node:?}"),
        ));
    }
    let mut new = task.clone();
    new.status = status.clone();
    plan_update(Some(current), AnyObject::Task(new), Subresource::Status)
}

#[cfg(test)]
mod tests {
    use swarm_api::{Task, TaskSpec, TaskState};

    use super::*;
    use crate::store::Store;
    use crate::testing::LaggingCache;

    fn task(node: &str, state: TaskState) -> AnyObject {
        let mut t = Task::new(
            "web.1.1",
            TaskSpec {
                service: "web".into(),
                node_name: Some(node.into()),
                ..Default::default()
            },
        );
        t.status.state = state;
        AnyObject::Task(Box::new(t))
    }

    fn report(state: TaskState) -> TaskStatusUpdate {
        let status = TaskStatus {
            state,
            ..Default::default()
        };
        TaskStatusUpdate {
            task_name: "web.1.1".into(),
            status: serde_json::to_vec(&status).unwrap(),
        }
    }

    async fn stored(lag: &LaggingCache) -> Task {
        let kv = lag.store.get(&Kind::Task.key("web.1.1")).await.unwrap();
        match crate::codec::decode_kv(Kind::Task, &kv.unwrap()).unwrap() {
            AnyObject::Task(t) => *t,
            _ => unreachable!(),
        }
    }

    /// Reports are planned against the watch cache, but the node binding and the state order
    /// that decide are the store's: here the cache still has the task on node `b`, the store
    /// has moved it to node `a`.
    #[tokio::test]
    async fn reports_planned_on_a_stale_cache_are_decided_by_the_store() {
        let lag = LaggingCache::new().await;
        lag.put(&task("b", TaskState::Assigned), true).await;
        lag.put(&task("a", TaskState::Assigned), false).await;

        // `b` is no longer the task's node: refused, and nothing written.
        let refused = apply(&lag.registry, "b", vec![report(TaskState::Accepted)], 100)
            .await
            .unwrap();
        assert_eq!(refused.len(), 1);
        assert!(
            refused[0].reason.contains("not assigned to node \"b\""),
            "{}",
            refused[0].reason
        );
        assert_eq!(stored(&lag).await.status.state, TaskState::Assigned);

        // `a` is: accepted, on top of the stored object.
        let refused = apply(&lag.registry, "a", vec![report(TaskState::Running)], 100)
            .await
            .unwrap();
        assert!(refused.is_empty(), "{refused:?}");
        let t = stored(&lag).await;
        assert_eq!(t.status.state, TaskState::Running);
        assert_eq!(t.spec.node_name.as_deref(), Some("a"));
    }
}
