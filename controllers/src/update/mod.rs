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
//! **Failures** (SwarmKit's rules): a task the update created counts as a failure if it ends
//! before RUNNING, or within `monitor` after it reached RUNNING (later it is the restart
//! policy's business, not the update's). The failure action triggers when `failures /
//! dirtySlots > max_failure_ratio`, `dirtySlots` being the slots that needed replacing when
//! the update started (kept in `updateStatus.dirtySlots`). After the last slot, the update
//! keeps watching for `monitor` (`delay + 1 s` if the delay is longer), after the `delay` of
//! that last slot, before it is COMPLETED. The time a task reached RUNNING is in its status
//! while it runs; once it has ended, only the controller's watch saw it, so a task that
//! reached RUNNING and ended while no update controller was watching counts as having
//! ended before RUNNING.
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

/// The annotation on each task an update (or rollback) created: the update's `startedAt`.
/// Only these tasks count as the update's failures, as in SwarmKit, where a replacement made
/// by the restart policy does not.
pub const UPDATE_ANNOTATION: &str = "swarm.update";
