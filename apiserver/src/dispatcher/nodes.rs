//! The `Node` object as the dispatcher writes it: `Register` creates or refreshes it (status
//! ready, address, description), and heartbeats set `status.lastHeartbeat`.
//!
//! Heartbeats are collected in memory and written by a flusher, one store transaction per
//! flush (split at `max_ops_per_txn`), so a thousand nodes beating every 5 s cost a few
//! transactions a second rather than two hundred. Marking nodes down is the nodes
//! controller's job, not the dispatcher's; a heartbeat from a node marked down makes it ready
//! again.

use std::collections::HashMap;
use std::sync::Mutex;

use swarm_api::{
    AnyObject, EngineDescription, Kind, Node, NodeResources, NodeSpec, NodeState, Platform,
    StatusReason, Timestamp,
};
use swarm_proto::v1::NodeDescription;

use crate::errors::{ApiError, ApiResult};
use crate::registry::{Planned, Registry, Subresource, plan_update};
use crate::store::StoreError;

/// How often a write that lost a race is re-planned.
const ATTEMPTS: usize = 5;

/// The node's status as its description says, beating now.
fn described_status(node: &Node, desc: &NodeDescription) -> swarm_api::NodeStatus {
    let mut status = node.status.clone();
    status.state = NodeState::Ready;
    status.message = String::new();
    status.hostname = desc.hostname.clone();
    status.addr = desc.advertise_addr.clone();
    status.resources = NodeResources {
        nano_cpus: desc.nano_cpus,
        memory_bytes: desc.memory_bytes,
    };
    let engine = desc.engine.clone().unwrap_or_default();
    status.engine = EngineDescription {
        engine_version: engine.engine_version,
        labels: engine.labels.into_iter().collect(),
    };
    let platform = desc.platform.clone().unwrap_or_default();
    status.platform = Platform {
        os: platform.os,
        architecture: platform.architecture,
    };
    status.last_heartbeat = Some(Timestamp::now());
    status
}

/// Creates the node if it is new, then writes its status from the description.
pub async fn register(registry: &Registry, name: &str, desc: &NodeDescription) -> ApiResult<()> {
    if registry.read(Kind::Node, name).await?.is_none() {
        let node = AnyObject::Node(Node::new(name, NodeSpec::default()));
        match registry.create(node).await {
            Ok(_) => {}
            Err(e) if e.reason() == StatusReason::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    for _ in 0..ATTEMPTS {
        let current = registry.get(Kind::Node, name).await?;
        let AnyObject::Node(node) = &current else {
            return Err(ApiError::internal("a Node key holds another kind"));
        };
        let mut new = node.clone();
        new.status = described_status(node, desc);
        let plan = plan_update(Some(&current), AnyObject::Node(new), Subresource::Status)?;
        match registry.commit(vec![plan]).await {
            Ok(_) => return Ok(()),
            Err((_, StoreError::Conflict { .. })) => continue,
            Err((_, e)) => return Err(ApiError::from_store(Kind::Node, name, e)),
        }
    }
    Err(ApiError::conflict(
        Kind::Node,
        name,
        "kept conflicting with other writers",
    ))
}

/// Heartbeats received since the last flush.
#[derive(Default)]
pub struct Heartbeats {
    pending: Mutex<HashMap<String, Timestamp>>,
}

impl Heartbeats {
    pub fn beat(&self, node: &str) {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(node.to_string(), Timestamp::now());
    }

    fn take(&self) -> HashMap<String, Timestamp> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Writes every collected heartbeat; returns how many nodes were written.
    pub async fn flush(&self, registry: &Registry, max_ops: usize) -> usize {
        let beats: Vec<(String, Timestamp)> = self.take().into_iter().collect();
        let mut written = 0;
        for chunk in beats.chunks(max_ops.max(1)) {
            match write_beats(registry, chunk).await {
                Ok(n) => written += n,
                Err(e) => tracing::warn!(error = %e.status().message, "heartbeat flush failed"),
            }
        }
        written
    }
}

/// One transaction for a chunk of heartbeats (a node changed meanwhile is re-planned alone).
async fn write_beats(registry: &Registry, beats: &[(String, Timestamp)]) -> ApiResult<usize> {
    let refused = super::batch::commit_each(
        registry,
        Kind::Node,
        beats,
        |(name, _)| name.as_str(),
        |(name, at), current| beat(current, name, *at),
        "heartbeat flush kept conflicting with other writers",
    )
    .await?;
    let mut written = 0;
    for e in refused {
        match e {
            None => written += 1,
            // Deleted by a user meanwhile: it registers again on its own.
            Some(e) if e.reason() == StatusReason::NotFound => {}
            Some(e) => return Err(e),
        }
    }
    Ok(written)
}

/// Plans the heartbeat of node `name` at `at` on the node as stored (or cached): ready, beating.
fn beat(current: Option<&AnyObject>, name: &str, at: Timestamp) -> ApiResult<Planned> {
    let Some(AnyObject::Node(node)) = current else {
        return Err(ApiError::not_found(Kind::Node, name));
    };
    let mut new = node.clone();
    new.status.last_heartbeat = Some(at);
    if new.status.state != NodeState::Ready {
        new.status.state = NodeState::Ready;
        new.status.message = String::new();
    }
    plan_update(current, AnyObject::Node(new), Subresource::Status)
}
