//! The update controller: Swarm's rolling update and rollback (`updateConfig` /
//! `rollbackConfig`: parallelism (0 = all), delay, order stop-first/start-first, monitor,
//! max_failure_ratio, failure_action pause/continue/rollback), `status.updateStatus` with
//! Swarm's states and messages, automatic and manual rollback — plus what Swarm lacks: 10
//! revisions in `status.revisions`, rollback to a chosen one, a per-task start deadline.
//!
//! **Who writes what.** Replication keeps slots filled: it creates a task only for a slot
//! without a wanted task (desired ≤ RUNNING), always from the current template, and leaves a
//! slot with two wanted tasks alone. The update controller replaces out-of-date tasks: for a
//! dirty slot it creates the successor `<service>.<slot>.<attempt+1>` (create-if-absent) and,
//! stop-first, sets the predecessor's desired state to SHUTDOWN in the same transaction, the
//! successor being held at READY until the predecessor has stopped; start-first, the
//! successor runs at once and the predecessor is stopped once it is RUNNING. Only the update
//! controller writes `status.updateStatus` and `status.revisions`, and it rewrites
//! `spec.taskTemplate` only for a rollback.
//!
//! Manual rollback: annotate the service `swarm.rollback=previous` (Swarm's `service
//! rollback`) or `swarm.rollback=<generation>` (any kept revision); the controller swaps the
//! template in, drops the annotation and reports `rollback_started` / "manually requested
//! rollback".

pub mod controller;
pub mod plan;

#[cfg(test)]
mod tests;

/// The annotation that asks for a rollback.
pub const ROLLBACK_ANNOTATION: &str = "swarm.rollback";
