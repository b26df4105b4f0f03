//! `node ls`: `ID HOSTNAME STATUS AVAILABILITY MANAGER STATUS ENGINE VERSION`, with `*` after
//! the ID of the node this machine is.

use std::collections::BTreeSet;

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

/// Docker's manager status: `Leader` for a ready manager whose server holds the controllers'
/// leases (`leaders`, node names: see `crate::leader`), `Reachable` for other ready
/// managers, `Unreachable` for managers that are not ready; workers show nothing.
pub fn manager_status(n: &Node, leaders: &BTreeSet<String>) -> &'static str {
    match (n.spec.role, n.status.state) {
        (NodeRole::Worker, _) => "",
        (NodeRole::Manager, NodeState::Ready) if leaders.contains(&n.metadata.name) => "Leader",
        (NodeRole::Manager, NodeState::Ready) => "Reachable",
        (NodeRole::Manager, _) => "Unreachable",
    }
}

/// The nodes sorted by hostname; `self_host` is this machine's hostname (marked `*`),
/// `leaders` the nodes that lead (see [`manager_status`]).
pub fn list(nodes: &[Node], self_host: Option<&str>, leaders: &BTreeSet<String>) -> Listing {
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
            ("ManagerStatus", json!(manager_status(n, leaders))),
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
            json!({"metadata": {"name": "manager-2", "uid": "44444444-0000-4000-8000-000000000000"},
                   "spec": {"role": "manager"},
                   "status": {"state": "ready", "hostname": "manager-2",
                              "engine": {"engineVersion": "27.3.1"}}}),
            json!({"metadata": {"name": "manager-3", "uid": "55555555-0000-4000-8000-000000000000"},
                   "spec": {"role": "manager"},
                   "status": {"state": "down", "hostname": "manager-3",
                              "engine": {"engineVersion": "27.3.1"}}}),
        ]
        .into_iter()
        .map(|v| serde_json::from_value(v).unwrap())
        .collect()
    }

    /// manager-1's server holds the controllers' leases.
    fn leaders() -> BTreeSet<String> {
        BTreeSet::from(["manager-1".to_string()])
    }

    #[test]
    fn golden_node_ls() {
        let text = list(&nodes(), Some("manager-2"), &leaders())
            .render(None, false)
            .unwrap();
        assert_eq!(
            text,
            "\
ID                                   HOSTNAME    STATUS    AVAILABILITY   MANAGER STATUS   ENGINE VERSION
11111111000040008000000000000000     manager-1   Ready     Active         Leader           27.3.1
44444444000040008000000000000000 *   manager-2   Ready     Active         Reachable        27.3.1
55555555000040008000000000000000     manager-3   Down      Active         Unreachable      27.3.1
22222222000040008000000000000000     worker-2    Down      Drain                           
33333333000040008000000000000000     worker-10   Ready     Pause                           27.3.1
"
        );
    }

    /// A leader whose node is down is shown as down (its lease names it until another
    /// server takes over); a worker never shows a manager status.
    #[test]
    fn a_down_or_worker_lease_holder_is_not_shown_as_leader() {
        let all = BTreeSet::from(["manager-3".to_string(), "worker-2".to_string()]);
        let n = nodes();
        let status = |name: &str| {
            let node = n.iter().find(|x| x.metadata.name == name).unwrap();
            manager_status(node, &all)
        };
        assert_eq!(status("manager-3"), "Unreachable");
        assert_eq!(status("worker-2"), "");
        assert_eq!(status("manager-1"), "Reachable");
    }

    #[test]
    fn golden_node_ls_formats() {
        let l = list(&nodes(), None, &leaders());
        assert_eq!(
            l.render(
                Some("{{.Hostname}}: {{.Status}} {{.Availability}} {{.ManagerStatus}}"),
                false
            )
            .unwrap(),
            "manager-1: Ready Active Leader\nmanager-2: Ready Active Reachable\n\
             manager-3: Down Active Unreachable\nworker-2: Down Drain \nworker-10: Ready Pause \n"
        );
        let first = l.render(Some("{{json .}}"), false).unwrap();
        assert_eq!(
            first.lines().next().unwrap(),
            r#"{"Availability":"Active","EngineVersion":"27.3.1","Hostname":"manager-1","ID":"11111111000040008000000000000000","ManagerStatus":"Leader","Self":false,"Status":"Ready"}"#
        );
        assert_eq!(l.render(None, true).unwrap().lines().count(), 5);
    }
}
