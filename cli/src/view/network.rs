//! `network ls`: `NETWORK ID NAME DRIVER SCOPE`. Every swarm network is cluster-wide, so the
//! scope is always `swarm`.

use std::time::SystemTime;

use serde_json::json;
use swarm_api::Network;

use super::{labels, natural_cmp};
use crate::output::columns::wire;
use crate::output::humanize::{full_id, short_id};
use crate::output::listing::{Listing, record};

pub const FORMAT: &str = "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}";
pub const HEADERS: &[(&str, &str)] = &[
    ("ID", "NETWORK ID"),
    ("Name", "NAME"),
    ("Driver", "DRIVER"),
    ("Scope", "SCOPE"),
    ("Internal", "INTERNAL"),
    ("Attachable", "ATTACHABLE"),
    ("Subnet", "SUBNET"),
    ("Labels", "LABELS"),
    ("CreatedAt", "CREATED AT"),
];

pub fn list(networks: &[Network], trunc: bool, _now: SystemTime) -> Listing {
    let mut sorted: Vec<&Network> = networks.iter().collect();
    sorted.sort_by(|a, b| natural_cmp(&a.metadata.name, &b.metadata.name));
    let mut l = Listing::new(FORMAT, HEADERS);
    for n in sorted {
        let id = if trunc {
            short_id(&n.metadata.uid)
        } else {
            full_id(&n.metadata.uid)
        };
        let subnet = if n.status.subnet.is_empty() {
            n.spec.ipam.subnet.clone().unwrap_or_default()
        } else {
            n.status.subnet.clone()
        };
        l.rows.push(record([
            ("ID", json!(id)),
            ("Name", json!(n.metadata.name)),
            ("Driver", json!(wire(&n.spec.driver))),
            ("Scope", json!("swarm")),
            ("Internal", json!(n.spec.internal.to_string())),
            ("Attachable", json!(n.spec.attachable.to_string())),
            ("Subnet", json!(subnet)),
            ("Labels", json!(labels(&n.metadata.labels))),
            (
                "CreatedAt",
                json!(
                    n.metadata
                        .creation_timestamp
                        .map(|t| t.to_string())
                        .unwrap_or_default()
                ),
            ),
        ]));
    }
    l
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::fixtures::now;
    use serde_json::json;

    #[test]
    fn golden_network_ls() {
        let nets: Vec<Network> = [
            json!({"metadata": {"name": "voting_front", "uid": "aaaabbbb-cccc-4ddd-8eee-ffff00001111",
                                "labels": {"swarm.stack": "voting"}},
                   "spec": {"driver": "overlay", "attachable": true},
                   "status": {"subnet": "10.0.1.0/24"}}),
            json!({"metadata": {"name": "backend", "uid": "12345678-cccc-4ddd-8eee-ffff00001111"},
                   "spec": {"driver": "bridge", "ipam": {"subnet": "10.9.0.0/24"}}}),
        ]
        .into_iter()
        .map(|v| serde_json::from_value(v).unwrap())
        .collect();
        let l = list(&nets, true, now());
        assert_eq!(
            l.render(None, false).unwrap(),
            "\
NETWORK ID     NAME           DRIVER    SCOPE
12345678cccc   backend        bridge    swarm
aaaabbbbcccc   voting_front   overlay   swarm
"
        );
        assert_eq!(
            l.render(
                Some("{{.Name}} {{.Subnet}} {{.Attachable}} {{.Labels}}"),
                false
            )
            .unwrap(),
            "backend 10.9.0.0/24 false \nvoting_front 10.0.1.0/24 true swarm.stack=voting\n"
        );
        assert_eq!(
            list(&nets, false, now()).render(None, true).unwrap(),
            "12345678cccc4ddd8eeeffff00001111\naaaabbbbcccc4ddd8eeeffff00001111\n"
        );
        assert_eq!(
            l.render(Some("{{json .}}"), false)
                .unwrap()
                .lines()
                .last()
                .unwrap(),
            r#"{"Attachable":"true","CreatedAt":"","Driver":"overlay","ID":"aaaabbbbcccc","Internal":"false","Labels":"swarm.stack=voting","Name":"voting_front","Scope":"swarm","Subnet":"10.0.1.0/24"}"#
        );
    }
}
