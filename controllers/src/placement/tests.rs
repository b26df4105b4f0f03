//! Scheduler behaviour on hand-built snapshots.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use swarm_api::{
    Node, NodeAvailability, NodeSpec, NodeState, PlacementPreference, PortConfig, PublishMode,
    Task, TaskSpec, TaskState, Timestamp,
};

use super::*;

fn node(name: &str, mem: i64, labels: &[(&str, &str)]) -> Node {
    let mut n = Node::new(
        name,
        NodeSpec {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            ..Default::default()
        },
    );
    n.status.state = NodeState::Ready;
    n.status.hostname = name.to_string();
    n.status.resources.memory_bytes = mem;
    n.status.resources.nano_cpus = 4_000_000_000;
    n
}

fn task(service: &str, slot: u64) -> Task {
    let mut t = Task::new(
        format!("{service}.{slot}.1"),
        TaskSpec {
            service: service.to_string(),
            slot: Some(slot),
            service_generation: 1,
            desired_state: TaskState::Running,
            ..Default::default()
        },
    );
    t.status.state = TaskState::Pending;
    t
}

fn tasks(service: &str, n: u64) -> Vec<Task> {
    (1..=n).map(|s| task(service, s)).collect()
}

fn bound(mut t: Task, node: &str, state: TaskState) -> Task {
    t.spec.node_name = Some(node.to_string());
    t.status.state = state;
    t
}

fn run(nodes: &[Node], existing: &[Task], pending: &[Task]) -> (Cluster, Outcome) {
    let mut c = Cluster::build(
        nodes,
        existing.iter().chain(pending),
        SystemTime::now(),
        Options::default(),
    );
    let refs: Vec<&Task> = pending.iter().filter(|t| is_pending(t)).collect();
    let out = schedule(&mut c, &refs);
    (c, out)
}

/// Tasks per node name.
fn spread(c: &Cluster, out: &Outcome) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for a in &out.assigned {
        *m.entry(c.node_name(a.node).to_string()).or_default() += 1;
    }
    m
}

#[test]
fn tasks_spread_evenly_over_nodes() {
    let nodes: Vec<Node> = (1..=4).map(|i| node(&format!("n{i}"), 0, &[])).collect();
    let (c, out) = run(&nodes, &[], &tasks("web", 10));
    assert!(out.unplaced.is_empty());
    let m = spread(&c, &out);
    let mut counts: Vec<usize> = m.values().copied().collect();
    counts.sort();
    assert_eq!(counts, vec![2, 2, 3, 3]);
}

#[test]
fn fewest_tasks_of_the_service_then_fewest_overall() {
    let nodes = vec![node("a", 0, &[]), node("b", 0, &[]), node("c", 0, &[])];
    // a: 2 of web; b: 0 of web but 3 of other; c: 0 of web, 1 of other.
    let existing = vec![
        bound(task("web", 10), "a", TaskState::Running),
        bound(task("web", 11), "a", TaskState::Running),
        bound(task("other", 1), "b", TaskState::Running),
        bound(task("other", 2), "b", TaskState::Running),
        bound(task("other", 3), "b", TaskState::Running),
        bound(task("other", 4), "c", TaskState::Running),
    ];
    let (c, out) = run(&nodes, &existing, &tasks("web", 1));
    assert_eq!(c.node_name(out.assigned[0].node), "c");
}

#[test]
fn finished_tasks_do_not_count() {
    let nodes = vec![node("a", 0, &[]), node("b", 0, &[])];
    let existing = vec![
        bound(task("web", 10), "a", TaskState::Complete),
        bound(task("web", 11), "a", TaskState::Shutdown),
        bound(task("web", 12), "b", TaskState::Running),
    ];
    let (c, out) = run(&nodes, &existing, &tasks("web", 1));
    assert_eq!(c.node_name(out.assigned[0].node), "a");
}

#[test]
fn memory_reservations_limit_what_fits_and_say_so() {
    let gib = 1 << 30;
    let mut nodes: Vec<Node> = (1..=3)
        .map(|i| node(&format!("n{i}"), 2 * gib, &[]))
        .collect();
    let mut down = node("n4", 8 * gib, &[]);
    down.status.state = NodeState::Down;
    nodes.push(down);
    let mut pending = tasks("db", 4);
    for t in &mut pending {
        t.spec.template.resources.reservations.memory_bytes = 2 * gib;
    }
    let (c, out) = run(&nodes, &[], &pending);
    assert_eq!(out.assigned.len(), 3);
    assert_eq!(spread(&c, &out).len(), 3, "one per node");
    assert_eq!(out.unplaced.len(), 1);
    assert_eq!(
        out.unplaced[0].message,
        "no suitable node (insufficient memory on 3 nodes; 1 node not available)"
    );
}

#[test]
fn reservations_of_running_tasks_are_subtracted() {
    let gib = 1 << 30;
    let nodes = vec![node("a", 4 * gib, &[]), node("b", 3 * gib, &[])];
    let mut big = task("big", 1);
    big.spec.template.resources.reservations.memory_bytes = 3 * gib;
    let existing = vec![bound(big, "a", TaskState::Running)];
    let mut pending = tasks("web", 2);
    for t in &mut pending {
        t.spec.template.resources.reservations.memory_bytes = 2 * gib;
    }
    let (c, out) = run(&nodes, &existing, &pending);
    assert_eq!(out.assigned.len(), 1);
    assert_eq!(c.node_name(out.assigned[0].node), "b");
    assert_eq!(
        out.unplaced[0].message,
        "no suitable node (insufficient memory on 2 nodes)"
    );
}

#[test]
fn paused_and_drained_nodes_take_nothing() {
    let mut nodes = vec![node("a", 0, &[]), node("b", 0, &[]), node("c", 0, &[])];
    nodes[0].spec.availability = NodeAvailability::Pause;
    nodes[1].spec.availability = NodeAvailability::Drain;
    let (c, out) = run(&nodes, &[], &tasks("web", 5));
    assert!(out.assigned.iter().all(|a| c.node_name(a.node) == "c"));
    assert_eq!(out.assigned.len(), 5);
    nodes[2].spec.availability = NodeAvailability::Drain;
    let (_, out) = run(&nodes, &[], &tasks("web", 1));
    assert_eq!(
        out.unplaced[0].message,
        "no suitable node (3 nodes not available)"
    );
}

#[test]
fn constraints_filter_nodes() {
    let nodes = vec![
        node("a", 0, &[("zone", "east")]),
        node("b", 0, &[("zone", "west")]),
        node("c", 0, &[]),
    ];
    let mut pending = tasks("web", 4);
    for t in &mut pending {
        t.spec.template.placement.constraints = vec!["node.labels.zone==east".into()];
    }
    let (c, out) = run(&nodes, &[], &pending);
    assert_eq!(out.assigned.len(), 4);
    assert!(out.assigned.iter().all(|a| c.node_name(a.node) == "a"));

    for t in &mut pending {
        t.spec.template.placement.constraints = vec!["node.labels.zone==north".into()];
    }
    let (_, out) = run(&nodes, &[], &pending);
    assert_eq!(
        out.unplaced[0].message,
        "no suitable node (scheduling constraints not satisfied on 3 nodes)"
    );

    for t in &mut pending {
        t.spec.template.placement.constraints = vec!["node.colour==red".into()];
    }
    let (_, out) = run(&nodes, &[], &pending);
    assert_eq!(out.unplaced.len(), 4);
    assert!(
        out.unplaced[0].message.contains("unknown key"),
        "{}",
        out.unplaced[0].message
    );
}

#[test]
fn max_replicas_per_node() {
    let nodes = vec![node("a", 0, &[]), node("b", 0, &[])];
    let mut pending = tasks("web", 5);
    for t in &mut pending {
        t.spec.template.placement.max_replicas_per_node = 2;
    }
    let (c, out) = run(&nodes, &[], &pending);
    assert_eq!(out.assigned.len(), 4);
    let m = spread(&c, &out);
    assert_eq!(m["a"], 2);
    assert_eq!(m["b"], 2);
    assert_eq!(
        out.unplaced[0].message,
        "no suitable node (max replicas per node limit exceed)"
    );
}

#[test]
fn spread_preference_balances_label_values_not_nodes() {
    // dc1 has one node, dc2 has three: spread over dc puts half the tasks on the lone node.
    let nodes = vec![
        node("a", 0, &[("dc", "dc1")]),
        node("b", 0, &[("dc", "dc2")]),
        node("c", 0, &[("dc", "dc2")]),
        node("d", 0, &[("dc", "dc2")]),
        node("e", 0, &[]),
    ];
    let mut pending = tasks("web", 9);
    for t in &mut pending {
        t.spec.template.placement.preferences = vec![PlacementPreference {
            spread: "node.labels.dc".into(),
        }];
    }
    let (c, out) = run(&nodes, &[], &pending);
    assert_eq!(out.assigned.len(), 9);
    let m = spread(&c, &out);
    assert_eq!(m["a"], 3, "dc1");
    assert_eq!(m["b"] + m["c"] + m["d"], 3, "dc2");
    assert_eq!(m["e"], 3, "no label is a group of its own");
    assert_eq!((m["b"], m["c"], m["d"]), (1, 1, 1));
}

#[test]
fn spread_counts_existing_tasks() {
    let nodes = vec![
        node("a", 0, &[("dc", "dc1")]),
        node("b", 0, &[("dc", "dc2")]),
    ];
    let existing = vec![
        bound(task("web", 10), "a", TaskState::Running),
        bound(task("web", 11), "a", TaskState::Running),
    ];
    let mut pending = tasks("web", 2);
    for t in &mut pending {
        t.spec.template.placement.preferences = vec![PlacementPreference {
            spread: "node.labels.dc".into(),
        }];
    }
    let (c, out) = run(&nodes, &existing, &pending);
    assert!(out.assigned.iter().all(|a| c.node_name(a.node) == "b"));
}

#[test]
fn nodes_where_the_service_failed_recently_come_last() {
    let nodes = vec![node("a", 0, &[]), node("b", 0, &[])];
    let mut existing = Vec::new();
    for i in 0..5 {
        let mut t = bound(task("web", 100 + i), "a", TaskState::Failed);
        t.status.timestamp = Some(Timestamp::now());
        existing.push(t);
    }
    // b already has two web tasks: without the failures, a would win.
    existing.push(bound(task("web", 1), "b", TaskState::Running));
    existing.push(bound(task("web", 2), "b", TaskState::Running));
    let (c, out) = run(&nodes, &existing, &tasks("web", 1));
    assert_eq!(c.node_name(out.assigned[0].node), "b");

    // Old failures do not count.
    for t in existing.iter_mut().take(5) {
        t.status.timestamp = Some(Timestamp(SystemTime::now() - Duration::from_secs(600)));
    }
    let (c, out) = run(&nodes, &existing, &tasks("web", 1));
    assert_eq!(c.node_name(out.assigned[0].node), "a");
}

#[test]
fn host_ports_are_exclusive() {
    let nodes = vec![node("a", 0, &[]), node("b", 0, &[])];
    let mut pending = tasks("web", 3);
    for t in &mut pending {
        t.spec.ports = vec![PortConfig {
            target_port: 80,
            published_port: Some(8080),
            publish_mode: PublishMode::Host,
            ..Default::default()
        }];
    }
    let (_, out) = run(&nodes, &[], &pending);
    assert_eq!(out.assigned.len(), 2);
    assert_eq!(
        out.unplaced[0].message,
        "no suitable node (host-mode port already in use on 2 nodes)"
    );
}

#[test]
fn preassigned_tasks_are_only_checked() {
    let mut nodes = vec![node("a", 0, &[]), node("b", 0, &[])];
    nodes[1].spec.availability = NodeAvailability::Pause;
    let mut t1 = task("agent", 1);
    t1.spec.node_name = Some("a".into());
    let mut t2 = task("agent", 2);
    t2.spec.node_name = Some("b".into());
    let mut t3 = task("agent", 3);
    t3.spec.node_name = Some("gone".into());
    let (c, out) = run(&nodes, &[], &[t1, t2, t3]);
    assert_eq!(out.assigned.len(), 1);
    assert_eq!(c.node_name(out.assigned[0].node), "a");
    assert_eq!(out.unplaced.len(), 2);
    assert_eq!(
        out.unplaced[0].message,
        "no suitable node (1 node not available)"
    );
    assert!(out.unplaced[1].message.contains("not known"));
}

#[test]
fn tasks_on_their_way_out_are_not_pending() {
    let mut t = task("web", 1);
    t.spec.desired_state = TaskState::Shutdown;
    assert!(!is_pending(&t));
    let mut t = task("web", 1);
    t.status.state = TaskState::New;
    assert!(!is_pending(&t));
}

#[test]
fn no_nodes_at_all() {
    let (_, out) = run(&[], &[], &tasks("web", 1));
    assert_eq!(out.unplaced[0].message, "no suitable node");
}

#[test]
fn groups_per_generation_share_counts() {
    // Two generations of one service still spread as one service.
    let nodes = vec![node("a", 0, &[]), node("b", 0, &[])];
    let mut pending = tasks("web", 2);
    pending[1].spec.service_generation = 2;
    let (c, out) = run(&nodes, &[], &pending);
    let m = spread(&c, &out);
    assert_eq!(m.len(), 2);
}

#[test]
fn only_tasks_to_place_or_leaving_wake_a_pass() {
    use super::controller::matters;
    use swarm_client::runtime::Change;
    let at = |state: TaskState| {
        let mut t = task("web", 1);
        t.status.state = state;
        t
    };
    let woke: Vec<TaskState> = [
        TaskState::New,
        TaskState::Pending,
        TaskState::Assigned,
        TaskState::Preparing,
        TaskState::Running,
        TaskState::Failed,
    ]
    .into_iter()
    .filter(|s| matters(&at(*s), Change::Applied))
    .collect();
    assert_eq!(woke, vec![TaskState::Pending, TaskState::Failed]);
    assert!(matters(&at(TaskState::Running), Change::Deleted));
    let mut leaving = at(TaskState::Running);
    leaving.spec.desired_state = TaskState::Shutdown;
    assert!(matters(&leaving, Change::Applied));
}
