//! Placement (the scheduler): moves PENDING tasks to ASSIGNED by choosing a node and writing
//! `spec.nodeName`.
//!
//! The decision is pure and synchronous (`Cluster` + `schedule`): it takes a snapshot of nodes
//! and tasks and returns the assignments, so it is unit-tested and benchmarked without I/O.
//! Filters: node ready, availability active (pause and drain take no new tasks), constraints,
//! platform, reservations against node resources minus what bound tasks reserve, host-mode
//! ports, max replicas per node. Ranking: spread preferences, then fewest tasks of the service,
//! fewest tasks overall, nodes where the service failed recently last. A task that fits nowhere
//! keeps a `no suitable node (…)` message and is retried on the next node or task change.

pub mod batch;
pub mod cluster;
pub mod constraint;
pub mod controller;
pub mod filter;
pub mod node;
pub mod scheduler;

#[cfg(test)]
mod tests;

pub use cluster::{Cluster, Options, is_pending};
pub use scheduler::{Assignment, Outcome, Unplaced, schedule};
