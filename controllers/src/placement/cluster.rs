//! `Cluster`: the nodes and what is placed on them, built from a snapshot of `Node` and
//! `Task` objects and updated in place as the scheduler assigns tasks — placement never reads
//! the store on its hot path.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use swarm_api::{Node, PublishMode, Task, TaskState};

use super::node::{NodeUsage, NodeView};

/// Tunables of ranking; the defaults are SwarmKit's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// A node with at least this many recent failures of a service ranks last for it.
    pub failure_threshold: u32,
    /// How far back a failure counts.
    pub failure_window: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            failure_threshold: 5,
            failure_window: Duration::from_secs(5 * 60),
        }
    }
}

/// A task placement must decide: PENDING, not bound to a node yet (or pre-bound, for global
/// services), and not on its way out.
pub fn is_pending(t: &Task) -> bool {
    t.status.state == TaskState::Pending && t.spec.desired_state < TaskState::Shutdown
}

/// Every node, sorted by name, with its usage.
#[derive(Clone, Debug, Default)]
pub struct Cluster {
    pub(super) nodes: Vec<NodeView>,
    pub(super) usage: Vec<NodeUsage>,
    index: HashMap<String, usize>,
    pub(super) options: Options,
}

impl Cluster {
    /// Builds the cluster from every node and every task; pending tasks (`is_pending`) are left
    /// out of the accounting, since they are what the scheduler is about to place.
    pub fn build<'a>(
        nodes: impl IntoIterator<Item = &'a Node>,
        tasks: impl IntoIterator<Item = &'a Task>,
        now: SystemTime,
        options: Options,
    ) -> Self {
        let mut views: Vec<NodeView> = nodes.into_iter().map(NodeView::from_node).collect();
        views.sort_by(|a, b| a.name.cmp(&b.name));
        let index = views
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.clone(), i))
            .collect();
        let mut c = Cluster {
            usage: vec![NodeUsage::default(); views.len()],
            nodes: views,
            index,
            options,
        };
        for t in tasks {
            if !is_pending(t) {
                c.account(t, now);
            }
        }
        c
    }

    /// Adds what a bound task takes (or the failure it records) to its node.
    fn account(&mut self, t: &Task, now: SystemTime) {
        let Some(node) = t.spec.node_name.as_deref() else {
            return;
        };
        let Some(&i) = self.index.get(node) else {
            return;
        };
        let u = &mut self.usage[i];
        let state = t.status.state;
        if matches!(state, TaskState::Failed | TaskState::Rejected) {
            let recent = t.status.timestamp.is_some_and(|ts| {
                now.duration_since(ts.0).unwrap_or_default() <= self.options.failure_window
            });
            if recent {
                *u.failures.entry(t.spec.service.clone()).or_default() += 1;
            }
            return;
        }
        if state.is_terminal() {
            return;
        }
        let r = &t.spec.template.resources.reservations;
        u.nano_cpus += r.nano_cpus;
        u.memory_bytes += r.memory_bytes;
        for p in &t.spec.ports {
            if p.publish_mode == PublishMode::Host
                && let Some(port) = p.published_port
            {
                u.host_ports.insert((p.protocol, port));
            }
        }
        if t.spec.desired_state < TaskState::Shutdown {
            u.total += 1;
            *u.per_service.entry(t.spec.service.clone()).or_default() += 1;
        }
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The name of the node at `i` (as returned in an `Assignment`).
    pub fn node_name(&self, i: usize) -> &str {
        &self.nodes[i].name
    }

    pub fn node_index(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// Tasks meant to run on node `i`: all services, and of `service`.
    pub fn task_counts(&self, i: usize, service: &str) -> (u32, u32) {
        let u = &self.usage[i];
        (u.total, u.service_count(service))
    }
}
