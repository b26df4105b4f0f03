//! What one reconcile of a service decides, as data: the writes to make and when to look
//! again. The planners (`replicated`, `global`, `jobs`) are pure functions from the cached
//! service, its tasks and the nodes to a `Plan`, so every rule is unit-tested without I/O;
//! `mod.rs` carries a plan out.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use swarm_api::{
    Node, NodeAvailability, NodeState, OwnerReference, Resource, Service, Task, TaskSpec,
    TaskState, node_task_name, slot_task_name,
};

/// One write.
#[derive(Clone, Debug, PartialEq)]
pub enum Write {
    /// Create-if-absent (a loser of a race gets `AlreadyExists` and re-reads).
    Create(Box<Task>),
    /// Set the desired state of a task (CAS on its `resourceVersion`).
    SetDesired { task: Arc<Task>, desired: TaskState },
    /// Stop `old` and create its successor in one transaction: a slot never has both or
    /// neither.
    Replace { old: Arc<Task>, new: Box<Task> },
}

/// The outcome of planning one service.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    pub writes: Vec<Write>,
    /// Look again after this long (a restart delay is running).
    pub requeue: Option<Duration>,
    /// What `status.replicas` should say.
    pub desired: u64,
    pub running: u64,
    pub completed: u64,
}

impl Plan {
    pub fn requeue_in(&mut self, d: Duration) {
        self.requeue = Some(self.requeue.map_or(d, |r| r.min(d)));
    }
}

/// What planning needs besides the service and its tasks.
pub struct Inputs<'a> {
    pub nodes: &'a HashMap<String, Arc<Node>>,
    pub now: SystemTime,
}

/// The task is wanted (desired state RUNNING, or READY: prepared and held by an update).
pub fn is_runnable(t: &Task) -> bool {
    t.spec.desired_state <= TaskState::Running
}

/// The task's node cannot run it any more: gone, down, or drained (SwarmKit's `InvalidNode`).
pub fn on_invalid_node(t: &Task, nodes: &HashMap<String, Arc<Node>>) -> bool {
    match &t.spec.node_name {
        None => false,
        Some(n) => match nodes.get(n) {
            None => true,
            Some(node) => {
                node.status.state == NodeState::Down
                    || node.spec.availability == NodeAvailability::Drain
            }
        },
    }
}

/// Observed RUNNING while wanted.
pub fn is_running(t: &Task) -> bool {
    t.status.state == TaskState::Running && t.spec.desired_state <= TaskState::Complete
}

/// A new task of `svc`: in `slot`, or bound to `node` (global), copying the template at the
/// service's current generation.
pub fn new_task(
    svc: &Service,
    slot: Option<u64>,
    node: Option<&str>,
    attempt: u64,
    desired: TaskState,
) -> Task {
    let service = svc.name();
    let name = match (slot, node) {
        (Some(s), _) => slot_task_name(service, s, attempt),
        (None, Some(n)) => node_task_name(service, n, attempt),
        (None, None) => slot_task_name(service, 0, attempt),
    };
    let mut t = Task::new(
        name,
        TaskSpec {
            service: service.to_string(),
            slot,
            node_name: node.map(str::to_string),
            attempt,
            service_generation: svc.metadata.generation,
            template: svc.spec.task_template.clone(),
            desired_state: desired,
            networks: Vec::new(),
            ports: Vec::new(),
        },
    );
    if let Some(stack) = svc.metadata.stack() {
        t.metadata
            .labels
            .insert(swarm_api::meta::STACK_LABEL.to_string(), stack.to_string());
    }
    t.metadata.owner_references.push(OwnerReference {
        kind: "Service".to_string(),
        name: service.to_string(),
        uid: svc.metadata.uid.clone(),
        controller: true,
    });
    t
}

/// The tasks of `svc` in the cache: named after it and not owned by an older service of the
/// same name (gc deletes those).
pub fn tasks_of<'a>(svc: &Service, tasks: &'a [Arc<Task>]) -> Vec<&'a Arc<Task>> {
    tasks
        .iter()
        .filter(|t| t.spec.service == svc.metadata.name && owned_by(t, svc))
        .collect()
}

/// Whether `t` belongs to this incarnation of `svc` (tasks without owner references count).
pub fn owned_by(t: &Task, svc: &Service) -> bool {
    let mut owners = t
        .metadata
        .owner_references
        .iter()
        .filter(|o| o.kind == "Service")
        .peekable();
    owners.peek().is_none()
        || svc.metadata.uid.is_empty()
        || owners.any(|o| o.uid == svc.metadata.uid)
}

/// The highest attempt among `tasks` (0 when empty).
pub fn max_attempt<'a>(tasks: impl IntoIterator<Item = &'a Arc<Task>>) -> u64 {
    tasks.into_iter().map(|t| t.spec.attempt).max().unwrap_or(0)
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Builders for planner tests.
    use super::*;
    use swarm_api::{NodeSpec, ServiceMode, ServiceSpec};

    pub fn service(name: &str, mode: ServiceMode) -> Service {
        let mut s = Service::new(
            name,
            ServiceSpec {
                mode,
                ..Default::default()
            },
        );
        s.metadata.uid = format!("uid-{name}");
        s.metadata.generation = 1;
        s
    }

    pub fn task(
        svc: &Service,
        slot: u64,
        attempt: u64,
        node: Option<&str>,
        state: TaskState,
    ) -> Arc<Task> {
        let mut t = new_task(svc, Some(slot), None, attempt, TaskState::Running);
        t.spec.node_name = node.map(str::to_string);
        t.status.state = state;
        t.metadata.resource_version = "1".into();
        Arc::new(t)
    }

    pub fn node(
        name: &str,
        state: NodeState,
        availability: NodeAvailability,
    ) -> (String, Arc<Node>) {
        let mut n = Node::new(
            name,
            NodeSpec {
                availability,
                ..Default::default()
            },
        );
        n.status.state = state;
        (name.to_string(), Arc::new(n))
    }

    pub fn ready_nodes(names: &[&str]) -> HashMap<String, Arc<Node>> {
        names
            .iter()
            .map(|n| node(n, NodeState::Ready, NodeAvailability::Active))
            .collect()
    }
}
