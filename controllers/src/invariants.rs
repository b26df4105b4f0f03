//! The cluster invariants, checkable by any test against a live apiserver (or a snapshot).
//!
//! Always (whatever is in flight):
//! * no slot has two wanted tasks (desired RUNNING/READY, or a job's unfinished task) —
//!   except a start-first update's overlap of an old and a new generation;
//! * no address is owned twice on one network (task attachments of tasks not yet finished,
//!   and service VIPs).
//!
//! At rest (after the controllers have settled):
//! * no task is wanted on a down or drained node, and none runs on a drained node;
//! * replicated services run exactly `replicas` tasks in distinct slots, and global services
//!   one on every node that accepts them.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use swarm_api::{
    Node, NodeAvailability, NodeState, Service, ServiceMode, Task, TaskState, UpdateOrder,
};
use swarm_client::{Client, ClientError, ListParams};

use crate::replication::{eligible, slot_key};

/// One broken invariant, readable in a test failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    TwoWantedInSlot {
        service: String,
        slot: String,
        tasks: Vec<String>,
    },
    AddressOwnedTwice {
        network: String,
        address: String,
        owners: Vec<String>,
    },
    WantedOnUnusableNode {
        task: String,
        node: String,
        why: &'static str,
    },
    RunningOnDrainedNode {
        task: String,
        node: String,
    },
    ReplicasMismatch {
        service: String,
        want: u64,
        running: u64,
    },
    GlobalMismatch {
        service: String,
        node: String,
        running: usize,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::TwoWantedInSlot {
                service,
                slot,
                tasks,
            } => {
                write!(
                    f,
                    "service {service} slot {slot} has several wanted tasks: {tasks:?}"
                )
            }
            Violation::AddressOwnedTwice {
                network,
                address,
                owners,
            } => {
                write!(
                    f,
                    "address {address} on network {network} is owned by {owners:?}"
                )
            }
            Violation::WantedOnUnusableNode { task, node, why } => {
                write!(f, "task {task} is wanted on node {node}, which is {why}")
            }
            Violation::RunningOnDrainedNode { task, node } => {
                write!(f, "task {task} still runs on drained node {node}")
            }
            Violation::ReplicasMismatch {
                service,
                want,
                running,
            } => {
                write!(f, "service {service} wants {want} replicas, {running} run")
            }
            Violation::GlobalMismatch {
                service,
                node,
                running,
            } => {
                write!(
                    f,
                    "global service {service} runs {running} tasks on node {node}, not 1"
                )
            }
        }
    }
}

/// Everything the invariants look at, read at one moment.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub services: Vec<Service>,
    pub tasks: Vec<Task>,
    pub nodes: Vec<Node>,
}

impl Snapshot {
    pub async fn read(client: &Client) -> Result<Self, ClientError> {
        let p = ListParams::default();
        Ok(Snapshot {
            services: client.list_all::<Service>(&p).await?.items,
            tasks: client.list_all::<Task>(&p).await?.items,
            nodes: client.list_all::<Node>(&p).await?.items,
        })
    }
}

fn wanted(t: &Task) -> bool {
    t.spec.desired_state <= TaskState::Running
        || (t.spec.desired_state == TaskState::Complete && !t.status.state.is_terminal())
}

/// The invariants that hold at every moment.
pub fn check(s: &Snapshot) -> Vec<Violation> {
    let mut out = Vec::new();
    let services: HashMap<&str, &Service> = s
        .services
        .iter()
        .map(|x| (x.metadata.name.as_str(), x))
        .collect();
    let mut slots: BTreeMap<(&str, String), Vec<&Task>> = BTreeMap::new();
    for t in s.tasks.iter().filter(|t| wanted(t)) {
        slots
            .entry((t.spec.service.as_str(), slot_key(t)))
            .or_default()
            .push(t);
    }
    for ((service, slot), ts) in slots {
        if ts.len() < 2 {
            continue;
        }
        let start_first = services.get(service).is_some_and(|svc| {
            svc.spec.update_config.order == UpdateOrder::StartFirst
                || svc.spec.rollback_config.order == UpdateOrder::StartFirst
        });
        let generations: std::collections::BTreeSet<i64> =
            ts.iter().map(|t| t.spec.service_generation).collect();
        if start_first && ts.len() == 2 && generations.len() == 2 {
            continue;
        }
        out.push(Violation::TwoWantedInSlot {
            service: service.to_string(),
            slot,
            tasks: ts.iter().map(|t| t.metadata.name.clone()).collect(),
        });
    }
    let mut owners: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for t in s.tasks.iter().filter(|t| !t.status.state.is_terminal()) {
        for a in &t.spec.networks {
            for addr in &a.addresses {
                owners
                    .entry((a.network.clone(), ip_of(addr)))
                    .or_default()
                    .push(format!("task {}", t.metadata.name));
            }
        }
    }
    for svc in &s.services {
        for vip in &svc.status.virtual_ips {
            owners
                .entry((vip.network.clone(), ip_of(&vip.addr)))
                .or_default()
                .push(format!("service {}", svc.metadata.name));
        }
    }
    for ((network, address), owners) in owners {
        if owners.len() > 1 {
            out.push(Violation::AddressOwnedTwice {
                network,
                address,
                owners,
            });
        }
    }
    out
}

/// `check`, plus what must hold once the controllers have settled.
pub fn check_at_rest(s: &Snapshot) -> Vec<Violation> {
    let mut out = check(s);
    let nodes: HashMap<&str, &Node> = s
        .nodes
        .iter()
        .map(|n| (n.metadata.name.as_str(), n))
        .collect();
    for t in &s.tasks {
        let Some(node_name) = t.spec.node_name.as_deref() else {
            continue;
        };
        let node = nodes.get(node_name);
        let why = match node {
            None => Some("deleted"),
            Some(n) if n.status.state == NodeState::Down => Some("down"),
            Some(n) if n.spec.availability == NodeAvailability::Drain => Some("drained"),
            _ => None,
        };
        if let Some(why) = why
            && wanted(t)
            && !t.status.state.is_terminal()
        {
            out.push(Violation::WantedOnUnusableNode {
                task: t.metadata.name.clone(),
                node: node_name.to_string(),
                why,
            });
        }
        if node.is_some_and(|n| {
            n.spec.availability == NodeAvailability::Drain && n.status.state != NodeState::Down
        }) && t.status.state == TaskState::Running
        {
            out.push(Violation::RunningOnDrainedNode {
                task: t.metadata.name.clone(),
                node: node_name.to_string(),
            });
        }
    }
    for svc in s
        .services
        .iter()
        .filter(|x| x.metadata.deletion_timestamp.is_none())
    {
        let running: Vec<&Task> = s
            .tasks
            .iter()
            .filter(|t| {
                t.spec.service == svc.metadata.name
                    && t.spec.desired_state <= TaskState::Running
                    && t.status.state == TaskState::Running
            })
            .collect();
        match svc.spec.mode {
            ServiceMode::Replicated { replicas } => {
                let slots: std::collections::BTreeSet<String> =
                    running.iter().map(|t| slot_key(t)).collect();
                let n = slots.len() as u64;
                if n != replicas || running.len() as u64 != replicas {
                    out.push(Violation::ReplicasMismatch {
                        service: svc.metadata.name.clone(),
                        want: replicas,
                        running: running.len() as u64,
                    });
                }
            }
            ServiceMode::Global {} => {
                let constraints = eligible::parse(&svc.spec.task_template.placement.constraints);
                let constraints = constraints.as_deref();
                for n in &s.nodes {
                    let here = running
                        .iter()
                        .filter(|t| t.spec.node_name.as_deref() == Some(n.metadata.name.as_str()))
                        .count();
                    let ok = if eligible::accepts_new(n, constraints) {
                        here == 1
                    } else if eligible::keeps(n, constraints) {
                        here <= 1
                    } else {
                        here == 0 || n.status.state == NodeState::Down
                    };
                    if !ok {
                        out.push(Violation::GlobalMismatch {
                            service: svc.metadata.name.clone(),
                            node: n.metadata.name.clone(),
                            running: here,
                        });
                    }
                }
            }
            ServiceMode::ReplicatedJob { .. } | ServiceMode::GlobalJob {} => {}
        }
    }
    out
}

fn ip_of(cidr: &str) -> String {
    cidr.split('/').next().unwrap_or(cidr).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replication::plan::fixtures::*;
    use std::sync::Arc;
    use swarm_api::NetworkAttachment;

    fn owned(t: Arc<Task>) -> Task {
        (*t).clone()
    }

    #[test]
    fn two_wanted_tasks_in_a_slot_are_a_violation_unless_start_first() {
        let mut svc = service("web", ServiceMode::Replicated { replicas: 1 });
        let a = owned(task(&svc, 1, 1, Some("n"), TaskState::Running));
        let mut b = owned(task(&svc, 1, 2, Some("n"), TaskState::Running));
        b.spec.service_generation = 2;
        let mut snap = Snapshot {
            services: vec![svc.clone()],
            tasks: vec![a, b],
            nodes: vec![],
        };
        assert!(matches!(
            &check(&snap)[..],
            [Violation::TwoWantedInSlot { .. }]
        ));
        svc.spec.update_config.order = UpdateOrder::StartFirst;
        snap.services = vec![svc];
        assert!(check(&snap).is_empty());
    }

    #[test]
    fn an_address_owned_twice_is_found() {
        let svc = service("web", ServiceMode::Replicated { replicas: 2 });
        let mut tasks = Vec::new();
        for slot in 1..=2 {
            let mut t = owned(task(&svc, slot, 1, Some("n"), TaskState::Running));
            t.spec.networks = vec![NetworkAttachment {
                network: "net".into(),
                addresses: vec!["10.0.0.2/24".into()],
                aliases: vec![],
            }];
            tasks.push(t);
        }
        let snap = Snapshot {
            services: vec![svc],
            tasks,
            nodes: vec![],
        };
        assert!(
            matches!(&check(&snap)[..], [Violation::AddressOwnedTwice { address, .. }] if address == "10.0.0.2")
        );
    }

    #[test]
    fn at_rest_replicas_and_nodes_are_checked() {
        let svc = service("web", ServiceMode::Replicated { replicas: 2 });
        let (_, drained) = node("d", NodeState::Ready, NodeAvailability::Drain);
        let (_, ok) = node("n", NodeState::Ready, NodeAvailability::Active);
        let snap = Snapshot {
            services: vec![svc.clone()],
            tasks: vec![
                owned(task(&svc, 1, 1, Some("n"), TaskState::Running)),
                owned(task(&svc, 2, 1, Some("d"), TaskState::Running)),
            ],
            nodes: vec![(*drained).clone(), (*ok).clone()],
        };
        assert!(check(&snap).is_empty());
        let v = check_at_rest(&snap);
        assert!(
            v.iter()
                .any(|v| matches!(v, Violation::WantedOnUnusableNode { why: "drained", .. })),
            "{v:?}"
        );
        assert!(
            v.iter()
                .any(|v| matches!(v, Violation::RunningOnDrainedNode { .. })),
            "{v:?}"
        );
        let mut healthy = snap.clone();
        healthy.tasks[1].spec.node_name = Some("n".into());
        assert!(
            check_at_rest(&healthy).is_empty(),
            "{:?}",
            check_at_rest(&healthy)
        );
        healthy.tasks.pop();
        assert!(matches!(
            &check_at_rest(&healthy)[..],
            [Violation::ReplicasMismatch {
                want: 2,
                running: 1,
                ..
            }]
        ));
    }
}
