//! Which nodes a global service runs on: ready, active, and matching the service's placement
//! constraints — with placement's matcher (`placement::constraint`), so a constraint means the
//! same for global and replicated services: `node.id/hostname/role/ip`,
//! `node.platform.os/arch`, `node.labels.*`, `engine.labels.*`, only `==` and `!=`, values
//! compared case-insensitively, a missing label reads as `""`, as in SwarmKit.
//!
//! Placement has the full filter set for replicated tasks; a global service needs only this
//! yes/no per node to decide where its tasks exist at all.

use swarm_api::{Node, NodeAvailability, NodeState};

use crate::placement::constraint::Constraint;

/// A service's constraints, parsed once: `None` if one cannot be parsed (an unknown key, no
/// operator), and then no node satisfies them — the task is unschedulable, as in SwarmKit.
pub fn parse(constraints: &[String]) -> Option<Vec<Constraint>> {
    Constraint::parse_all(constraints).ok()
}

/// The node is healthy and takes new tasks, and satisfies every constraint.
pub fn accepts_new(node: &Node, constraints: Option<&[Constraint]>) -> bool {
    node.status.state == NodeState::Ready
        && node.spec.availability == NodeAvailability::Active
        && satisfies(node, constraints)
}

/// The node may keep the tasks it has: not down, not drained, constraints still hold
/// (`pause` keeps tasks but takes no new ones).
pub fn keeps(node: &Node, constraints: Option<&[Constraint]>) -> bool {
    node.status.state != NodeState::Down
        && node.spec.availability != NodeAvailability::Drain
        && satisfies(node, constraints)
}

/// Every constraint holds; an unparseable list never does.
pub fn satisfies(node: &Node, constraints: Option<&[Constraint]>) -> bool {
    constraints.is_some_and(|cs| cs.iter().all(|c| c.matches(node)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_api::NodeSpec;

    fn node() -> Node {
        let mut n = Node::new("n1", NodeSpec::default());
        n.spec.labels.insert("zone".into(), "East".into());
        n.status.state = NodeState::Ready;
        n.status.hostname = "host1".into();
        n.status.addr = "192.168.1.7".into();
        n.status.platform.os = "linux".into();
        n.status.platform.architecture = "x86_64".into();
        n.status.engine.labels.insert("disk".into(), "ssd".into());
        n
    }

    fn ok(n: &Node, c: &str) -> bool {
        satisfies(n, parse(&[c.to_string()]).as_deref())
    }

    #[test]
    fn constraints_match_like_swarm() {
        let n = node();
        assert!(ok(&n, "node.labels.zone==east"));
        assert!(!ok(&n, "node.labels.zone!=east"));
        assert!(ok(&n, "node.labels.rack=="));
        assert!(ok(&n, "node.role==worker"));
        assert!(ok(&n, "node.id==n1"));
        assert!(ok(&n, "node.hostname==host1"));
        assert!(ok(&n, "node.platform.os==Linux"));
        assert!(ok(&n, "node.platform.arch!=aarch64"));
        assert!(ok(&n, "engine.labels.disk==SSD"));
        assert!(!ok(&n, "node.bogus==x"));
        assert!(!ok(&n, "no operator"));
        assert!(satisfies(&n, parse(&[]).as_deref()));
    }

    // The forms the old matcher of this module read differently from placement's.

    #[test]
    fn node_ip_is_a_constraint_for_global_services_too() {
        // Was an unknown key here: a global service constrained by node.ip ran nowhere.
        let n = node();
        assert!(ok(&n, "node.ip==192.168.1.7"));
        assert!(ok(&n, "node.ip==192.168.1.0/24"));
        assert!(!ok(&n, "node.ip==10.0.0.0/8"));
    }

    #[test]
    fn keys_are_case_insensitive_label_names_are_not() {
        // SwarmKit lower-cases the key (not the label name); this module used to refuse these.
        let n = node();
        assert!(ok(&n, "NODE.ROLE==worker"));
        assert!(ok(&n, "Node.Labels.zone==east"));
        assert!(
            !ok(&n, "node.labels.ZONE==east"),
            "labels are case-sensitive"
        );
    }

    #[test]
    fn equals_is_looked_for_before_not_equals() {
        // SwarmKit splits at `==` first; this module split at `!=` first and read
        // `node.labels.zone!=a==b` as "zone is not a==b" (true here).
        let n = node();
        assert!(!ok(&n, "node.labels.zone!=a==b"));
    }

    #[test]
    fn pause_keeps_drain_does_not() {
        let mut n = node();
        let none = parse(&[]);
        let c = none.as_deref();
        assert!(accepts_new(&n, c) && keeps(&n, c));
        n.spec.availability = NodeAvailability::Pause;
        assert!(!accepts_new(&n, c) && keeps(&n, c));
        n.spec.availability = NodeAvailability::Drain;
        assert!(!keeps(&n, c));
        n.spec.availability = NodeAvailability::Active;
        n.status.state = NodeState::Down;
        assert!(!keeps(&n, c) && !accepts_new(&n, c));
    }
}
