//! Placement constraints (`node.labels.zone==east`): parsing once per service and matching
//! against a node, as SwarmKit does — only `==` and `!=`, values compared case-insensitively,
//! a missing label counts as `""`, and an unknown key makes the task unschedulable.

use std::net::IpAddr;

use swarm_api::{Node, NodeRole};

use super::node::NodeView;

/// What a constraint reads from a node: placement's flattened `NodeView`, or the `Node`
/// object itself (replication decides where global tasks exist with the same matcher).
pub trait NodeFacts {
    fn id(&self) -> &str;
    fn hostname(&self) -> &str;
    fn role(&self) -> &str;
    fn addr(&self) -> &str;
    fn os(&self) -> &str;
    fn arch(&self) -> &str;
    fn label(&self, key: &str) -> Option<&str>;
    fn engine_label(&self, key: &str) -> Option<&str>;
}

impl NodeFacts for NodeView {
    fn id(&self) -> &str {
        &self.name
    }
    fn hostname(&self) -> &str {
        &self.hostname
    }
    fn role(&self) -> &str {
        self.role
    }
    fn addr(&self) -> &str {
        &self.addr
    }
    fn os(&self) -> &str {
        &self.os
    }
    fn arch(&self) -> &str {
        &self.arch
    }
    fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }
    fn engine_label(&self, key: &str) -> Option<&str> {
        self.engine_labels.get(key).map(String::as_str)
    }
}

impl NodeFacts for Node {
    fn id(&self) -> &str {
        &self.metadata.name
    }
    fn hostname(&self) -> &str {
        &self.status.hostname
    }
    fn role(&self) -> &str {
        match self.spec.role {
            NodeRole::Worker => "worker",
            NodeRole::Manager => "manager",
        }
    }
    fn addr(&self) -> &str {
        &self.status.addr
    }
    fn os(&self) -> &str {
        &self.status.platform.os
    }
    fn arch(&self) -> &str {
        &self.status.platform.architecture
    }
    fn label(&self, key: &str) -> Option<&str> {
        self.spec.labels.get(key).map(String::as_str)
    }
    fn engine_label(&self, key: &str) -> Option<&str> {
        self.status.engine.labels.get(key).map(String::as_str)
    }
}

/// What a constraint looks at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConstraintKey {
    NodeId,
    NodeHostname,
    NodeRole,
    NodeIp,
    NodePlatformOs,
    NodePlatformArch,
    NodeLabel(String),
    EngineLabel(String),
}

/// One parsed `KEY==VALUE` or `KEY!=VALUE`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Constraint {
    pub key: ConstraintKey,
    pub equal: bool,
    /// Lower-cased once, so matching does not allocate.
    pub value: String,
}

/// Why a constraint string could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConstraintError {
    #[error("constraint {0:?} must have the form KEY==VALUE or KEY!=VALUE")]
    Syntax(String),
    #[error(
        "constraint {0:?} has an unknown key; expected node.id, node.hostname, node.role, node.ip, node.platform.os, node.platform.arch, node.labels.KEY or engine.labels.KEY"
    )]
    UnknownKey(String),
}

impl Constraint {
    pub fn parse(s: &str) -> Result<Self, ConstraintError> {
        let (key, value, equal) = if let Some((k, v)) = s.split_once("==") {
            (k, v, true)
        } else if let Some((k, v)) = s.split_once("!=") {
            (k, v, false)
        } else {
            return Err(ConstraintError::Syntax(s.to_string()));
        };
        let key_trim = key.trim();
        let value = value.trim();
        if key_trim.is_empty() || value.contains("==") || value.contains("!=") {
            return Err(ConstraintError::Syntax(s.to_string()));
        }
        let lower = key_trim.to_ascii_lowercase();
        let key = match lower.as_str() {
            "node.id" => ConstraintKey::NodeId,
            "node.hostname" => ConstraintKey::NodeHostname,
            "node.role" => ConstraintKey::NodeRole,
            "node.ip" => ConstraintKey::NodeIp,
            "node.platform.os" => ConstraintKey::NodePlatformOs,
            "node.platform.arch" => ConstraintKey::NodePlatformArch,
            _ => {
                // Label keys keep their case: labels are case-sensitive maps.
                if let Some(l) = strip_prefix_ci(key_trim, "node.labels.") {
                    ConstraintKey::NodeLabel(l.to_string())
                } else if let Some(l) = strip_prefix_ci(key_trim, "engine.labels.") {
                    ConstraintKey::EngineLabel(l.to_string())
                } else {
                    return Err(ConstraintError::UnknownKey(s.to_string()));
                }
            }
        };
        Ok(Constraint {
            key,
            equal,
            value: value.to_ascii_lowercase(),
        })
    }

    /// Parses every constraint of a service; the first bad one is the error.
    pub fn parse_all(list: &[String]) -> Result<Vec<Constraint>, ConstraintError> {
        list.iter().map(|s| Constraint::parse(s)).collect()
    }

    pub fn matches<N: NodeFacts + ?Sized>(&self, node: &N) -> bool {
        let hit = match &self.key {
            ConstraintKey::NodeId => eq_ci(node.id(), &self.value),
            ConstraintKey::NodeHostname => eq_ci(node.hostname(), &self.value),
            ConstraintKey::NodeRole => eq_ci(node.role(), &self.value),
            ConstraintKey::NodeIp => ip_matches(node.addr(), &self.value),
            ConstraintKey::NodePlatformOs => eq_ci(node.os(), &self.value),
            ConstraintKey::NodePlatformArch => eq_ci(node.arch(), &self.value),
            ConstraintKey::NodeLabel(k) => eq_ci(node.label(k).unwrap_or(""), &self.value),
            ConstraintKey::EngineLabel(k) => eq_ci(node.engine_label(k).unwrap_or(""), &self.value),
        };
        hit == self.equal
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    if s.len() > prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix) {
        s.get(prefix.len()..)
    } else {
        None
    }
}

/// `lower` is already lower case.
fn eq_ci(a: &str, lower: &str) -> bool {
    a.len() == lower.len() && a.eq_ignore_ascii_case(lower)
}

/// `node.ip==10.0.0.5` or `node.ip==10.0.0.0/24`; the node's address may carry a port.
fn ip_matches(addr: &str, want: &str) -> bool {
    let host = addr
        .parse::<std::net::SocketAddr>()
        .map(|s| s.ip())
        .or_else(|_| addr.parse::<IpAddr>());
    let Ok(ip) = host else { return false };
    if let Ok(net) = want.parse::<ipnet::IpNet>() {
        return net.contains(&ip);
    }
    want.parse::<IpAddr>().is_ok_and(|w| w == ip)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn node() -> NodeView {
        NodeView {
            name: "node-1".into(),
            hostname: "Host-A".into(),
            role: "worker",
            addr: "192.168.1.7:4789".into(),
            os: "linux".into(),
            arch: "x86_64".into(),
            labels: BTreeMap::from([("zone".to_string(), "East".to_string())]),
            engine_labels: BTreeMap::from([("disk".to_string(), "ssd".to_string())]),
            ..NodeView::default()
        }
    }

    fn m(c: &str) -> bool {
        Constraint::parse(c).unwrap().matches(&node())
    }

    #[test]
    fn every_key_matches() {
        assert!(m("node.id==node-1"));
        assert!(m("node.hostname==host-a"));
        assert!(m("node.role==worker"));
        assert!(!m("node.role==manager"));
        assert!(m("node.role!=manager"));
        assert!(m("node.platform.os==Linux"));
        assert!(m("node.platform.arch==x86_64"));
        assert!(m("node.labels.zone==east"));
        assert!(m("node.labels.zone != west"));
        assert!(m("engine.labels.disk==SSD"));
        assert!(m("node.ip==192.168.1.7"));
        assert!(m("node.ip==192.168.1.0/24"));
        assert!(!m("node.ip==10.0.0.0/8"));
    }

    #[test]
    fn a_missing_label_is_empty() {
        assert!(m("node.labels.rack!=r1"));
        assert!(!m("node.labels.rack==r1"));
        assert!(m("node.labels.rack=="));
    }

    #[test]
    fn bad_constraints_are_errors() {
        assert!(matches!(
            Constraint::parse("node.role=manager"),
            Err(ConstraintError::Syntax(_))
        ));
        assert!(matches!(
            Constraint::parse("node.colour==red"),
            Err(ConstraintError::UnknownKey(_))
        ));
        assert!(matches!(
            Constraint::parse("node.labels.==x"),
            Err(ConstraintError::UnknownKey(_))
        ));
    }
}
