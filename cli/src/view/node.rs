//! `node ls`: `ID HOSTNAME STATUS AVAILABILITY MANAGER STATUS ENGINE VERSION`, with `*` after
//! the ID of the node this machine is.

use serde_json::json;
use swarm_api::{Node, NodeRole, NodeState};

use super::natural_cmp;
use crate::output::columns::wire;
use crate::output::humanize::{full_id, pretty};
use crate::output::listing::{Listing, record};

pub const FORMAT: &str = "table {{.ID}} {{._self}}\t{{.Hostname}}\t{{.Status}}\t{{.Availability}}\t{{.ManagerStatus}}\t{{.EngineVersion}}";
pub const HEADERS: &[(&str, &str)] = &[
    ("ID", "ID"),
    ("_self", " "),
    ("Self", ""),
    ("Hostname", "HOSTNAME"),
    ("Status", "STATUS"),
    ("Availability", "AVAILABILITY"),
    ("ManagerStatus", "MANAGER STATUS"),
    ("EngineVersion", "ENGINE VERSION"),
];

/// The hostname a node reports, or its name before it has reported one.
pub fn hostname(n: &Node) -> &str {
    if n.status.hostname.is_empty() {
        &n.metadata.name
    } else {
        &n.status.hostname
    }
}

/// swarm's managers share one store rather than a Raft group, so there is no leader among
/// them: a manager is `Reachable` while ready and `Unreachable` otherwise; workers show nothing.
pub fn manager_status(n: &Node) -> &'static str {
    match (n.spec.role, n.status.state) {
        (NodeRole::Worker, _) => "",
        (NodeRole::Manager, NodeState::Ready) => "Reachable",
        (NodeRole::Manager, _) => "Unreachable",
    }
}

/// The nodes sorted by hostname; `self_host` is this machine's hostname (marked `*`).
pub fn list(nodes: &[Node], self_host: Option<&str>) -> Listing {
    let mut sorted: Vec<&Node> = nodes.iter().collect();
    sorted.sort_by(|a, b| natural_cmp(hostname(a), hostname(b)));
    let mut l = Listing::new(FORMAT, HEADERS);
    for n in sorted {
        let is_self = self_host.is_some_and(|h| h == hostname(n) || h == n.metadata.name);
        l.rows.push(record([
            ("ID", json!(full_id(&n.metadata.uid))),
            ("_self", json!(if is_self { "*" } else { " " })),
            ("Self", json!(is_self)),
            ("Hostname", json!(hostname(n))),
            ("Status", json!(pretty(&wire(&n.status.state)))),
            ("Availability", json!(pretty(&wire(&n.spec.availability)))),
            ("ManagerStatus", json!(manager_status(n))),
            ("EngineVersion", json!(n.status.engine.engine_version)),
        ]));
    }
    l
}

/// This machine's hostname, to mark its node (`None` when it cannot be read).
pub fn local_hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nodes() -> Vec<Node> {
        [
            json!({"metadata": {"name": "worker-2", "uid": "22222222-0000-4000-8000-000000000000"},
                   "spec": {"role": "worker", "availability": "drain"},
                   "status": {"state": "down", "hostname": "worker-2"}}),
            json!({"metadata": {"name": "manager-1", "uid": "11111111-0000-4000-8000-000000000000"},
                   "spec": {"role": "manager"},
                   "status": {"state": "ready", "hostname": "manager-1",
                              "engine": {"engineVersion": "27.3.1"}}}),
            json!({"metadata": {"name": "worker-10", "uid": "33333333-0000-4000-8000-000000000000"},
                   "spec": {"availability": "pause"},
                   "status": {"state": "ready", "engine": {"engineVersion": "27.3.1"}}}),
        ]
        .into_iter()
        .map(|v| serde_json::from_value(v).unwrap())
        .collect()
    }

    #[test]
    fn golden_node_ls() {
        let text = list(&nodes(), Some("manager-1"))
            .render(None, false)
            .unwrap();
        assert_eq!(
            text,
            "\
ID                                   HOSTNAME    STATUS    AVAILABILITY   MANAGER STATUS   ENGINE VERSION
11111111000040008000000000000000 *   manager-1   Ready     Active         Reachable        27.3.1
22222222000040008000000000000000     worker-2    Down      Drain                           
33333333000040008000000000000000     worker-10   Ready     Pause                           27.3.1
"
        );
    }

    #[test]
    fn golden_node_ls_formats() {
        let l = list(&nodes(), None);
        assert_eq!(
            l.render(Some("{{.Hostname}}: {{.Status}} {{.Availability}}"), false)
                .unwrap(),
            "manager-1: Ready Active\nworker-2: Down Drain\nworker-10: Ready Pause\n"
        );
        let first = l.render(Some("{{json .}}"), false).unwrap();
        assert_eq!(
            first.lines().next().unwrap(),
            r#"{"Availability":"Active","EngineVersion":"27.3.1","Hostname":"manager-1","ID":"11111111000040008000000000000000","ManagerStatus":"Reachable","Self":false,"Status":"Ready"}"#
        );
        assert_eq!(l.render(None, true).unwrap().lines().count(), 3);
    }
}
