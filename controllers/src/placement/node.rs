//! What placement knows about one node: its description (`NodeView`, from the `Node` object)
//! and what is already placed on it (`NodeUsage`, from the tasks bound to it).

use std::collections::{BTreeMap, HashMap, HashSet};

use swarm_api::{Node, NodeAvailability, NodeRole, NodeState, PortProtocol};

/// The parts of a `Node` that filters and ranking read, flattened once per pass.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeView {
    pub name: String,
    pub hostname: String,
    pub role: &'static str,
    pub addr: String,
    pub os: String,
    pub arch: String,
    pub labels: BTreeMap<String, String>,
    pub engine_labels: BTreeMap<String, String>,
    /// `status.state == ready`.
    pub ready: bool,
    /// `spec.availability == active` (pause and drain take no new tasks).
    pub active: bool,
    pub nano_cpus: i64,
    pub memory_bytes: i64,
}

impl NodeView {
    pub fn from_node(n: &Node) -> Self {
        NodeView {
            name: n.metadata.name.clone(),
            hostname: n.status.hostname.clone(),
            role: match n.spec.role {
                NodeRole::Worker => "worker",
                NodeRole::Manager => "manager",
            },
            addr: n.status.addr.clone(),
            os: n.status.platform.os.clone(),
            arch: n.status.platform.architecture.clone(),
            labels: n.spec.labels.clone(),
            engine_labels: n.status.engine.labels.clone(),
            ready: n.status.state == NodeState::Ready,
            active: n.spec.availability == NodeAvailability::Active,
            nano_cpus: n.status.resources.nano_cpus,
            memory_bytes: n.status.resources.memory_bytes,
        }
    }
}

/// What tasks bound to a node already take.
#[derive(Clone, Debug, Default)]
pub struct NodeUsage {
    /// Reserved by tasks that have not finished.
    pub nano_cpus: i64,
    pub memory_bytes: i64,
    /// Tasks meant to run (desired state below SHUTDOWN), all services.
    pub total: u32,
    /// The same, per service.
    pub per_service: HashMap<String, u32>,
    /// Host-mode published ports in use.
    pub host_ports: HashSet<(PortProtocol, u16)>,
    /// Recent failures (FAILED or REJECTED within the window), per service.
    pub failures: HashMap<String, u32>,
}

impl NodeUsage {
    pub fn service_count(&self, service: &str) -> u32 {
        self.per_service.get(service).copied().unwrap_or(0)
    }

    pub fn failure_count(&self, service: &str) -> u32 {
        self.failures.get(service).copied().unwrap_or(0)
    }
}
