//! The filter pipeline, in SwarmKit's order: a node is rejected by the first filter that fails,
//! and each rejection is counted so an unschedulable task can say why
//! (`no suitable node (insufficient memory on 3 nodes; 1 node not available)`).

use swarm_api::{Platform, PortProtocol};

use super::constraint::Constraint;
use super::node::{NodeUsage, NodeView};

/// Why a node cannot take a task. The order is the pipeline's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// Not ready, or availability pause/drain.
    NotAvailable,
    InsufficientMemory,
    InsufficientCpu,
    /// A generic resource (`gpu=1`) no node advertises.
    InsufficientGeneric,
    Constraints,
    Platform,
    HostPort,
    MaxReplicas,
}

impl Reason {
    const ALL: [Reason; 8] = [
        Reason::NotAvailable,
        Reason::InsufficientMemory,
        Reason::InsufficientCpu,
        Reason::InsufficientGeneric,
        Reason::Constraints,
        Reason::Platform,
        Reason::HostPort,
        Reason::MaxReplicas,
    ];

    fn index(self) -> usize {
        self as usize
    }

    fn explain(self, n: u32) -> String {
        let nodes = if n == 1 {
            "1 node".to_string()
        } else {
            format!("{n} nodes")
        };
        match self {
            Reason::NotAvailable => format!("{nodes} not available"),
            Reason::InsufficientMemory => format!("insufficient memory on {nodes}"),
            Reason::InsufficientCpu => format!("insufficient cpu on {nodes}"),
            Reason::InsufficientGeneric => format!("insufficient resources on {nodes}"),
            Reason::Constraints => format!("scheduling constraints not satisfied on {nodes}"),
            Reason::Platform => format!("unsupported platform on {nodes}"),
            Reason::HostPort => format!("host-mode port already in use on {nodes}"),
            // SwarmKit's exact wording.
            Reason::MaxReplicas => "max replicas per node limit exceed".to_string(),
        }
    }
}

/// Rejections counted per reason.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rejections([u32; 8]);

impl Rejections {
    pub fn add(&mut self, r: Reason) {
        self.0[r.index()] += 1;
    }

    /// `no suitable node (…)`: the most frequent reason first, ties in pipeline order.
    pub fn message(&self) -> String {
        let mut parts: Vec<(u32, Reason)> = Reason::ALL
            .iter()
            .filter(|r| self.0[r.index()] > 0)
            .map(|r| (self.0[r.index()], *r))
            .collect();
        parts.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        if parts.is_empty() {
            return "no suitable node".to_string();
        }
        let text: Vec<String> = parts.iter().map(|(n, r)| r.explain(*n)).collect();
        format!("no suitable node ({})", text.join("; "))
    }
}

/// What a task of one group asks of a node, prepared once per group.
#[derive(Clone, Debug, Default)]
pub struct Demand {
    pub constraints: Vec<Constraint>,
    pub platforms: Vec<Platform>,
    pub nano_cpus: i64,
    pub memory_bytes: i64,
    /// Generic resources are reserved but no node advertises any: a task asking for one fits
    /// nowhere.
    pub generic: bool,
    pub host_ports: Vec<(PortProtocol, u16)>,
    /// 0 means unlimited.
    pub max_per_node: u64,
}

impl Demand {
    /// Filters that depend only on the node's description: availability, constraints, platform.
    pub fn check_static(&self, node: &NodeView) -> Result<(), Reason> {
        if !node.ready || !node.active {
            return Err(Reason::NotAvailable);
        }
        if !self.constraints.iter().all(|c| c.matches(node)) {
            return Err(Reason::Constraints);
        }
        if !self.platforms.is_empty() && !self.platforms.iter().any(|p| platform_fits(p, node)) {
            return Err(Reason::Platform);
        }
        Ok(())
    }

    /// Filters that change as tasks are placed: reservations, host ports, replicas per node.
    /// `service_count` is this service's tasks on the node.
    pub fn check_dynamic(
        &self,
        node: &NodeView,
        usage: &NodeUsage,
        service_count: u32,
    ) -> Result<(), Reason> {
        if self.memory_bytes > 0 && usage.memory_bytes + self.memory_bytes > node.memory_bytes {
            return Err(Reason::InsufficientMemory);
        }
        if self.nano_cpus > 0 && usage.nano_cpus + self.nano_cpus > node.nano_cpus {
            return Err(Reason::InsufficientCpu);
        }
        if self.generic {
            return Err(Reason::InsufficientGeneric);
        }
        if self.host_ports.iter().any(|p| usage.host_ports.contains(p)) {
            return Err(Reason::HostPort);
        }
        if self.max_per_node > 0 && u64::from(service_count) >= self.max_per_node {
            return Err(Reason::MaxReplicas);
        }
        Ok(())
    }

    /// Both, in pipeline order (resources come before constraints in SwarmKit).
    pub fn check(
        &self,
        node: &NodeView,
        usage: &NodeUsage,
        service_count: u32,
    ) -> Result<(), Reason> {
        if !node.ready || !node.active {
            return Err(Reason::NotAvailable);
        }
        self.check_dynamic(node, usage, service_count)
            .and_then(|()| self.check_static(node))
    }
}

/// `linux`/`x86_64` against the node's platform; empty fields match anything, and the usual
/// architecture aliases are the same (`amd64` = `x86_64`, `arm64` = `aarch64`).
fn platform_fits(want: &Platform, node: &NodeView) -> bool {
    let os_ok = want.os.is_empty() || node.os.is_empty() || want.os.eq_ignore_ascii_case(&node.os);
    let arch_ok = want.architecture.is_empty()
        || node.arch.is_empty()
        || arch_alias(&want.architecture) == arch_alias(&node.arch);
    os_ok && arch_ok
}

fn arch_alias(a: &str) -> String {
    let a = a.to_ascii_lowercase();
    match a.as_str() {
        "amd64" | "x86-64" => "x86_64".to_string(),
        "arm64" => "aarch64".to_string(),
        _ => a,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_lists_reasons_most_frequent_first() {
        let mut r = Rejections::default();
        r.add(Reason::NotAvailable);
        for _ in 0..3 {
            r.add(Reason::InsufficientMemory);
        }
        assert_eq!(
            r.message(),
            "no suitable node (insufficient memory on 3 nodes; 1 node not available)"
        );
        assert_eq!(Rejections::default().message(), "no suitable node");
    }

    #[test]
    fn resources_and_replicas_are_checked() {
        let node = NodeView {
            ready: true,
            active: true,
            memory_bytes: 100,
            nano_cpus: 1000,
            ..Default::default()
        };
        let mut usage = NodeUsage::default();
        let d = Demand {
            memory_bytes: 60,
            max_per_node: 2,
            ..Default::default()
        };
        assert_eq!(d.check(&node, &usage, 0), Ok(()));
        usage.memory_bytes = 60;
        assert_eq!(d.check(&node, &usage, 1), Err(Reason::InsufficientMemory));
        usage.memory_bytes = 0;
        assert_eq!(d.check(&node, &usage, 2), Err(Reason::MaxReplicas));
        let paused = NodeView {
            active: false,
            ..node.clone()
        };
        assert_eq!(d.check(&paused, &usage, 0), Err(Reason::NotAvailable));
    }

    #[test]
    fn platforms_match_with_aliases() {
        let node = NodeView {
            os: "linux".into(),
            arch: "x86_64".into(),
            ..Default::default()
        };
        let p = |os: &str, arch: &str| Platform {
            os: os.into(),
            architecture: arch.into(),
        };
        assert!(platform_fits(&p("linux", "amd64"), &node));
        assert!(platform_fits(&p("", ""), &node));
        assert!(!platform_fits(&p("windows", "amd64"), &node));
        assert!(!platform_fits(&p("linux", "arm64"), &node));
    }
}
