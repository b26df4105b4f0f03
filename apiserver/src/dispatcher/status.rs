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
    for _ in 0..ATTEMPTS {
        let mut refused = Vec::new();
        let mut plans = Vec::with_capacity(chunk.len());
        for (name, status) in chunk {
            let refuse = |reason: String| RefusedUpdate {
                task_name: name.clone(),
                reason,
            };
            let Some(current) = registry.read(Kind::Task, name).await? else {
                refused.push(refuse(format!("task {name:?} not found")));
                continue;
            };
            let AnyObject::Task(task) = &current else {
                refused.push(refuse("not a task".to_string()));
                continue;
            };
            if task.spec.node_name.as_deref() != Some(node) {
                refused.push(refuse(format!(
                    "task {name:?} is not assigned to node {node:?}"
                )));
                continue;
            }
            let mut new = task.clone();
            new.status = status.clone();
            match plan_update(Some(&current), AnyObject::Task(new), Subresource::Status) {
                Ok(Planned::Noop { .. }) => {}
                Ok(p) => plans.push(p),
                Err(e) => refused.push(refuse(e.status().message.clone())),
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
