//! Which nodes a global service runs on: ready, active, and matching the service's placement
//! constraints (`node.role==manager`, `node.labels.zone!=east`, …; only `==` and `!=`, values
//! compared case-insensitively, a missing label reads as `""`, as in SwarmKit).
//!
//! Placement has the full filter set for replicated tasks; a global service needs only this
//! yes/no per node to decide where its tasks exist at all.

use swarm_api::{Node, NodeAvailability, NodeRole, NodeState};

/// The node is healthy and takes new tasks, and satisfies every constraint.
pub fn accepts_new(node: &Node, constraints: &[String]) -> bool {
    node.status.state == NodeState::Ready
        && node.spec.availability == NodeAvailability::Active
        && satisfies(node, constraints)
}

/// The node may keep the tasks it has: not down, not drained, constraints still hold
/// (`pause` keeps tasks but takes no new ones).
pub fn keeps(node: &Node, constraints: &[String]) -> bool {
    node.status.state != NodeState::Down
        && node.spec.availability != NodeAvailability::Drain
        && satisfies(node, constraints)
}

/// Every constraint holds; an unparseable one never does.
pub fn satisfies(node: &Node, constraints: &[String]) -> bool {
    constraints
        .iter()
        .all(|c| matches(node, c).unwrap_or(false))
}

fn matches(node: &Node, constraint: &str) -> Option<bool> {
    let (key, equal, value) = if let Some((k, v)) = constraint.split_once("!=") {
        (k, false, v)
    } else {
        let (k, v) = constraint.split_once("==")?;
        (k, true, v)
    };
    let (key, value) = (key.trim(), value.trim().to_lowercase());
    let actual: String = match key {
        "node.id" => node.metadata.name.clone(),
        "node.hostname" => node.status.hostname.clone(),
        "node.role" => match node.spec.role {
            NodeRole::Manager => "manager".into(),
            NodeRole::Worker => "worker".into(),
        },
        "node.platform.os" => node.status.platform.os.clone(),
        "node.platform.arch" => node.status.platform.architecture.clone(),
        _ => {
            if let Some(l) = key.strip_prefix("node.labels.") {
                node.spec.labels.get(l).cloned().unwrap_or_default()
            } else if let Some(l) = key.strip_prefix("engine.labels.") {
                node.status
                    .engine
                    .labels
                    .get(l)
                    .cloned()
                    .unwrap_or_default()
            } else {
                return None;
            }
        }
    };
    Some((actual.to_lowercase() == value) == equal)
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
        n
    }

    #[test]
    fn constraints_match_like_swarm() {
        let n = node();
        let ok = |c: &str| satisfies(&n, &[c.to_string()]);
        assert!(ok("node.labels.zone==east"));
        assert!(!ok("node.labels.zone!=east"));
        assert!(ok("node.labels.rack=="));
        assert!(ok("node.role==worker"));
        assert!(ok("node.id==n1"));
        assert!(ok("node.hostname==host1"));
        assert!(!ok("node.bogus==x"));
        assert!(!ok("no operator"));
    }

    #[test]
    fn pause_keeps_drain_does_not() {
        let mut n = node();
        assert!(accepts_new(&n, &[]) && keeps(&n, &[]));
        n.spec.availability = NodeAvailability::Pause;
        assert!(!accepts_new(&n, &[]) && keeps(&n, &[]));
        n.spec.availability = NodeAvailability::Drain;
        assert!(!keeps(&n, &[]));
        n.spec.availability = NodeAvailability::Active;
        n.status.state = NodeState::Down;
        assert!(!keeps(&n, &[]) && !accepts_new(&n, &[]));
    }
}
