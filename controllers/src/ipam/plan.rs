//! The ipam decisions, pure: given an object and snapshots of what it refers to, what to write.
//! The controller turns each plan into one transaction.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use swarm_api::{
    EndpointMode, Network, NetworkAttachment, PortConfig, PortProtocol, PublishMode, Service, Task,
    TaskState, VirtualIp,
};

use super::ledger::{AddressPool, Owner, addr_of, parse_owner, service_owner, task_owner};
use super::ports;

/// What ipam does for one task.
#[derive(Clone, Debug, PartialEq)]
pub enum TaskPlan {
    /// Not ipam's business: not NEW, or on its way out.
    Skip,
    /// Every attachment is there: NEW → PENDING.
    Pending,
    /// Hand out addresses: the task with its new attachments and the networks with their
    /// ledgers updated, written in one transaction.
    Attach {
        task: Box<Task>,
        networks: Vec<Network>,
    },
    /// Cannot go on yet; the message goes on the task.
    Wait(String),
}

/// Networks a template attaches to, once each, in order.
fn targets(task_networks: &[swarm_api::NetworkAttachmentConfig]) -> Vec<&str> {
    let mut seen = HashSet::new();
    task_networks
        .iter()
        .map(|n| n.target.as_str())
        .filter(|t| seen.insert(*t))
        .collect()
}

/// Why a network cannot hand out addresses yet, if it cannot.
fn not_ready(name: &str, net: Option<&Network>) -> Option<String> {
    let Some(n) = net else {
        return Some(format!("network {name:?} not found"));
    };
    if n.metadata.deletion_timestamp.is_some() {
        return Some(format!("network {name:?} is being deleted"));
    }
    if n.status.subnet.is_empty() {
        let refused = n.status.conditions.iter().find(|c| {
            c.type_ == super::ALLOCATED && c.status == swarm_api::meta::ConditionStatus::False
        });
        return Some(match refused {
            Some(c) => format!("network {name:?} has no subnet: {}", c.message),
            None => format!("waiting for network {name:?} to get a subnet"),
        });
    }
    None
}

pub fn plan_task(task: &Task, network: impl Fn(&str) -> Option<Arc<Network>>) -> TaskPlan {
    if task.status.state != TaskState::New
        || task.spec.desired_state >= TaskState::Shutdown
        || task.metadata.deletion_timestamp.is_some()
    {
        return TaskPlan::Skip;
    }
    let wanted = targets(&task.spec.template.networks);
    let missing: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|t| {
            !task
                .spec
                .networks
                .iter()
                .any(|a| a.network == *t && !a.addresses.is_empty())
        })
        .collect();
    if missing.is_empty() {
        return TaskPlan::Pending;
    }
    let mut out = task.clone();
    let mut networks = Vec::new();
    let owner = task_owner(&task.metadata.name);
    for name in missing {
        let net = network(name);
        if let Some(why) = not_ready(name, net.as_deref()) {
            return TaskPlan::Wait(why);
        }
        let Some(net) = net else {
            return TaskPlan::Wait(format!("network {name:?} not found"));
        };
        let mut net = (*net).clone();
        let Some(mut pool) = AddressPool::of(&net) else {
            return TaskPlan::Wait(format!("waiting for network {name:?} to get a subnet"));
        };
        let Some(ip) = pool.allocate() else {
            return TaskPlan::Wait(format!(
                "no address left on network {name:?} ({})",
                pool.subnet
            ));
        };
        net.status.addresses.insert(ip.to_string(), owner.clone());
        let config = task
            .spec
            .template
            .networks
            .iter()
            .find(|c| c.target == name);
        let mut aliases = vec![task.spec.service.clone()];
        for a in config.map(|c| c.aliases.as_slice()).unwrap_or_default() {
            if !aliases.contains(a) {
                aliases.push(a.clone());
            }
        }
        out.spec.networks.retain(|a| a.network != name);
        out.spec.networks.push(NetworkAttachment {
            network: name.to_string(),
            addresses: vec![pool.cidr(ip)],
            aliases,
        });
        networks.push(net);
    }
    TaskPlan::Attach {
        task: Box::new(out),
        networks,
    }
}

/// What ipam writes for one service: its VIPs and published ports.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServicePlan {
    /// `status.virtualIps` as it should be.
    pub vips: Vec<VirtualIp>,
    /// Networks whose ledgers got a new VIP.
    pub networks: Vec<Network>,
    /// `status.ports` as it should be.
    pub ports: Vec<PortConfig>,
    /// Port markers to create.
    pub claim: Vec<(PortProtocol, u16)>,
    /// This service's port markers no longer needed (names).
    pub release: Vec<String>,
    /// What stands in the way, for the service's `Allocated` condition.
    pub problems: Vec<String>,
}

/// `ingress`: the ingress network in use, if any; `port_markers`: every port marker,
/// (protocol, port) → holder.
pub fn plan_service(
    svc: &Service,
    network: impl Fn(&str) -> Option<Arc<Network>>,
    ingress: Option<&str>,
    port_markers: &HashMap<(PortProtocol, u16), String>,
) -> ServicePlan {
    let mut plan = ServicePlan::default();
    if svc.metadata.deletion_timestamp.is_some() {
        return plan;
    }
    let owner = service_owner(&svc.metadata.name);
    // One VIP per attached network (vip mode), plus one on ingress for ingress-mode ports.
    let mut vip_networks = match svc.spec.endpoint.mode {
        EndpointMode::Vip => targets(&svc.spec.task_template.networks),
        EndpointMode::Dnsrr => Vec::new(),
    };
    match super::ingress::vip_network(svc, ingress) {
        Ok(Some(n)) if !vip_networks.contains(&n) => vip_networks.push(n),
        Ok(_) => {}
        Err(why) => plan.problems.push(why),
    }
    for name in vip_networks {
        if let Some(v) = svc.status.virtual_ips.iter().find(|v| v.network == name) {
            plan.vips.push(v.clone());
            continue;
        }
        let net = network(name);
        if let Some(why) = not_ready(name, net.as_deref()) {
            plan.problems.push(why);
            continue;
        }
        let Some(mut net) = net.map(|n| (*n).clone()) else {
            continue;
        };
        let Some(ip) = AddressPool::of(&net).and_then(|mut p| p.allocate().map(|ip| (p, ip)))
        else {
            plan.problems
                .push(format!("no address left on network {name:?} for the VIP"));
            continue;
        };
        let (pool, ip) = ip;
        net.status.addresses.insert(ip.to_string(), owner.clone());
        plan.vips.push(VirtualIp {
            network: name.to_string(),
            addr: pool.cidr(ip),
        });
        plan.networks.push(net);
    }
    let me = ports::holder(svc);
    let mut taken: HashSet<(PortProtocol, u16)> = port_markers
        .iter()
        .filter(|(_, h)| **h != me)
        .map(|(k, _)| *k)
        .collect();
    let mut mine = HashSet::new();
    for p in &svc.spec.endpoint.ports {
        let mut out = p.clone();
        if p.publish_mode == PublishMode::Ingress {
            let port = match p.published_port {
                Some(port) => Some(port),
                None => svc
                    .status
                    .ports
                    .iter()
                    .find(|s| {
                        s.protocol == p.protocol
                            && s.target_port == p.target_port
                            && s.name == p.name
                            && s.publish_mode == p.publish_mode
                    })
                    .and_then(|s| s.published_port)
                    .filter(|port| !taken.contains(&(p.protocol, *port)))
                    .or_else(|| ports::pick(p.protocol, &taken)),
            };
            match port {
                Some(port) if taken.contains(&(p.protocol, port)) => {
                    let by = port_markers
                        .get(&(p.protocol, port))
                        .and_then(|h| ports::holder_service(h))
                        .map_or("another service", |(n, _)| n);
                    plan.problems.push(format!(
                        "port {port}/{} is already published by {by}",
                        ports_proto(p.protocol)
                    ));
                    continue;
                }
                Some(port) => {
                    out.published_port = Some(port);
                    taken.insert((p.protocol, port));
                    mine.insert((p.protocol, port));
                    if port_markers.get(&(p.protocol, port)) != Some(&me) {
                        plan.claim.push((p.protocol, port));
                    }
                }
                None => {
                    plan.problems.push(format!(
                        "no free port left in {}-{}",
                        ports::DYNAMIC.start(),
                        ports::DYNAMIC.end()
                    ));
                    continue;
                }
            }
        }
        plan.ports.push(out);
    }
    plan.release = port_markers
        .iter()
        .filter(|(k, h)| **h == me && !mine.contains(k))
        .map(|((p, port), _)| ports::marker_name(*p, *port))
        .collect();
    plan.release.sort();
    plan
}

fn ports_proto(p: PortProtocol) -> &'static str {
    match p {
        PortProtocol::Tcp => "tcp",
        PortProtocol::Udp => "udp",
        PortProtocol::Sctp => "sctp",
    }
}

/// Whether `task` (freshly read) holds `addr` on `network`. A finished task holds nothing:
/// its address goes back to the pool, as SwarmKit frees the resources of dead tasks.
pub fn task_holds(task: &Task, network: &str, addr: &str) -> bool {
    !task.status.state.is_terminal()
        && task
            .spec
            .networks
            .iter()
            .any(|a| a.network == network && a.addresses.iter().any(|c| addr_of(c) == addr))
}

/// Whether `svc` (freshly read) holds `addr` as its VIP on `network`.
pub fn service_holds(svc: &Service, network: &str, addr: &str) -> bool {
    svc.metadata.deletion_timestamp.is_none()
        && svc
            .status
            .virtual_ips
            .iter()
            .any(|v| v.network == network && addr_of(&v.addr) == addr)
}

/// Ledger entries of `net` that look unowned in the caches. Each must be confirmed against a
/// fresh read before it is released (a cache may lag the ledger).
pub fn release_candidates(
    net: &Network,
    task: impl Fn(&str) -> Option<Arc<Task>>,
    service: impl Fn(&str) -> Option<Arc<Service>>,
) -> Vec<(String, String)> {
    let name = net.metadata.name.as_str();
    net.status
        .addresses
        .iter()
        .filter(|(addr, owner)| match parse_owner(owner) {
            Some(Owner::Task(t)) => !task(t).is_some_and(|t| task_holds(&t, name, addr)),
            Some(Owner::Service(s)) => !service(s).is_some_and(|s| service_holds(&s, name, addr)),
            None => false,
        })
        .map(|(a, o)| (a.clone(), o.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_api::{NetworkAttachmentConfig, NetworkSpec, ServiceSpec, TaskSpec};

    fn network(name: &str, subnet: &str) -> Arc<Network> {
        let mut n = Network::new(name, NetworkSpec::default());
        n.status.subnet = subnet.into();
        n.status.gateway = subnet.replace(".0/24", ".1");
        Arc::new(n)
    }

    fn task_on(nets: &[&str]) -> Task {
        let mut t = Task::new(
            "web.1.1",
            TaskSpec {
                service: "web".into(),
                ..Default::default()
            },
        );
        t.spec.template.networks = nets
            .iter()
            .map(|n| NetworkAttachmentConfig {
                target: n.to_string(),
                aliases: vec!["w".into()],
                ..Default::default()
            })
            .collect();
        t
    }

    #[test]
    fn a_task_without_networks_goes_pending() {
        assert_eq!(plan_task(&task_on(&[]), |_| None), TaskPlan::Pending);
        let mut t = task_on(&[]);
        t.status.state = TaskState::Pending;
        assert_eq!(plan_task(&t, |_| None), TaskPlan::Skip);
    }

    #[test]
    fn a_task_gets_one_address_per_network() {
        let a = network("a", "10.0.0.0/24");
        let b = network("b", "10.0.1.0/24");
        let lookup = |n: &str| match n {
            "a" => Some(a.clone()),
            "b" => Some(b.clone()),
            _ => None,
        };
        let TaskPlan::Attach { task, networks } = plan_task(&task_on(&["a", "b", "a"]), lookup)
        else {
            panic!("expected an allocation");
        };
        assert_eq!(task.spec.networks.len(), 2);
        assert_eq!(task.spec.networks[0].addresses, vec!["10.0.0.2/24"]);
        assert_eq!(task.spec.networks[0].aliases, vec!["web", "w"]);
        assert_eq!(task.spec.networks[1].addresses, vec!["10.0.1.2/24"]);
        assert_eq!(networks.len(), 2);
        assert_eq!(networks[0].status.addresses["10.0.0.2"], "task/web.1.1");
        // Once attached, the next step is PENDING.
        assert_eq!(plan_task(&task, lookup), TaskPlan::Pending);
    }

    #[test]
    fn a_task_waits_for_its_network() {
        let plan = plan_task(&task_on(&["x"]), |_| None);
        assert_eq!(plan, TaskPlan::Wait("network \"x\" not found".into()));
        let bare = Arc::new(Network::new("x", NetworkSpec::default()));
        let plan = plan_task(&task_on(&["x"]), |_| Some(bare.clone()));
        assert!(matches!(plan, TaskPlan::Wait(m) if m.contains("to get a subnet")));
        let mut full = Network::new("x", NetworkSpec::default());
        full.status.subnet = "10.0.0.0/30".into();
        full.status.gateway = "10.0.0.1".into();
        full.status
            .addresses
            .insert("10.0.0.2".into(), "task/other".into());
        let full = Arc::new(full);
        let plan = plan_task(&task_on(&["x"]), |_| Some(full.clone()));
        assert_eq!(
            plan,
            TaskPlan::Wait("no address left on network \"x\" (10.0.0.0/30)".into())
        );
    }

    fn service(ports: Vec<PortConfig>) -> Service {
        let mut s = Service::new("web", ServiceSpec::default());
        s.metadata.uid = "u1".into();
        s.spec.task_template.networks = vec![NetworkAttachmentConfig {
            target: "a".into(),
            ..Default::default()
        }];
        s.spec.endpoint.ports = ports;
        s
    }

    fn port(target: u16, published: Option<u16>) -> PortConfig {
        PortConfig {
            target_port: target,
            published_port: published,
            ..Default::default()
        }
    }

    #[test]
    fn a_service_gets_a_vip_and_ports() {
        let a = network("a", "10.0.1.0/24");
        let ingress = network("ingress", "10.0.0.0/24");
        let lookup = |n: &str| Some(if n == "ingress" { &ingress } else { &a }.clone());
        let mut markers = HashMap::new();
        markers.insert((PortProtocol::Tcp, 30000), "Service/other/u9".to_string());
        let svc = service(vec![port(80, None), port(443, Some(8443))]);
        let plan = plan_service(&svc, lookup, Some("ingress"), &markers);
        assert_eq!(plan.vips[0].addr, "10.0.1.2/24");
        assert_eq!(plan.networks[0].status.addresses["10.0.1.2"], "service/web");
        assert_eq!(plan.vips[1].addr, "10.0.0.2/24", "the ingress VIP");
        assert_eq!(plan.ports[0].published_port, Some(30001));
        assert_eq!(plan.ports[1].published_port, Some(8443));
        assert_eq!(
            plan.claim,
            vec![(PortProtocol::Tcp, 30001), (PortProtocol::Tcp, 8443)]
        );
        assert!(plan.problems.is_empty());

        // Written back, the plan is stable and claims nothing more.
        let mut svc = svc;
        svc.status.virtual_ips = plan.vips.clone();
        svc.status.ports = plan.ports.clone();
        markers.insert((PortProtocol::Tcp, 30001), "Service/web/u1".into());
        markers.insert((PortProtocol::Tcp, 8443), "Service/web/u1".into());
        markers.insert((PortProtocol::Tcp, 9999), "Service/web/u1".into());
        let again = plan_service(&svc, lookup, Some("ingress"), &markers);
        assert!(again.networks.is_empty());
        assert!(again.claim.is_empty());
        assert_eq!(again.ports, plan.ports);
        assert_eq!(again.release, vec!["ipam-port-tcp-9999".to_string()]);
    }

    #[test]
    fn ingress_ports_get_an_ingress_vip_until_they_go() {
        let a = network("a", "10.0.1.0/24");
        let ingress = network("ingress", "10.0.0.0/24");
        let lookup = |n: &str| match n {
            "a" => Some(a.clone()),
            "ingress" => Some(ingress.clone()),
            _ => None,
        };
        let mut svc = service(vec![port(80, Some(8080))]);
        let plan = plan_service(&svc, lookup, Some("ingress"), &HashMap::new());
        let vips: Vec<(&str, &str)> = plan
            .vips
            .iter()
            .map(|v| (v.network.as_str(), v.addr.as_str()))
            .collect();
        assert_eq!(vips, [("a", "10.0.1.2/24"), ("ingress", "10.0.0.2/24")]);
        assert_eq!(plan.networks[1].status.addresses["10.0.0.2"], "service/web");
        assert!(plan.problems.is_empty(), "{:?}", plan.problems);

        // Host-mode ports only: the ingress VIP goes (its ledger entry is then released).
        svc.status.virtual_ips = plan.vips.clone();
        svc.spec.endpoint.ports[0].publish_mode = PublishMode::Host;
        let plan = plan_service(&svc, lookup, Some("ingress"), &HashMap::new());
        assert_eq!(plan.vips.len(), 1);
        assert_eq!(plan.vips[0].network, "a");

        // No ingress network: said on the service, the other VIPs still allocated.
        svc.spec.endpoint.ports[0].publish_mode = PublishMode::Ingress;
        svc.status.virtual_ips.clear();
        let plan = plan_service(&svc, lookup, None, &HashMap::new());
        assert_eq!(plan.vips.len(), 1);
        assert!(plan.problems[0].contains("no ingress network"));

        // dnsrr: no VIP at all, and ingress ports are refused.
        svc.spec.endpoint.mode = EndpointMode::Dnsrr;
        let plan = plan_service(&svc, lookup, Some("ingress"), &HashMap::new());
        assert!(plan.vips.is_empty());
        assert!(plan.problems[0].contains("dnsrr"), "{:?}", plan.problems);
    }

    #[test]
    fn a_port_published_elsewhere_is_a_problem() {
        let mut markers = HashMap::new();
        markers.insert((PortProtocol::Tcp, 8080), "Service/other/u9".to_string());
        let mut svc = service(vec![port(80, Some(8080))]);
        svc.spec.task_template.networks.clear();
        let ingress = network("ingress", "10.0.0.0/24");
        let plan = plan_service(&svc, |_| Some(ingress.clone()), Some("ingress"), &markers);
        assert_eq!(
            plan.problems,
            vec!["port 8080/tcp is already published by other".to_string()]
        );
        assert!(plan.claim.is_empty());
    }

    #[test]
    fn dead_and_missing_owners_are_release_candidates() {
        let mut n = (*network("a", "10.0.0.0/24")).clone();
        for (addr, owner) in [
            ("10.0.0.2", "task/live"),
            ("10.0.0.3", "task/dead"),
            ("10.0.0.4", "task/gone"),
            ("10.0.0.5", "service/web"),
            ("10.0.0.6", "service/gone"),
        ] {
            n.status.addresses.insert(addr.into(), owner.into());
        }
        let mk = |name: &str, addr: &str, state| {
            let mut t = task_on(&["a"]);
            t.metadata.name = name.into();
            t.status.state = state;
            t.spec.networks = vec![NetworkAttachment {
                network: "a".into(),
                addresses: vec![format!("{addr}/24")],
                aliases: vec![],
            }];
            Arc::new(t)
        };
        let live = mk("live", "10.0.0.2", TaskState::Running);
        let dead = mk("dead", "10.0.0.3", TaskState::Failed);
        let mut web = service(vec![]);
        web.status.virtual_ips = vec![VirtualIp {
            network: "a".into(),
            addr: "10.0.0.5/24".into(),
        }];
        let web = Arc::new(web);
        let c = release_candidates(
            &n,
            |t| match t {
                "live" => Some(live.clone()),
                "dead" => Some(dead.clone()),
                _ => None,
            },
            |s| (s == "web").then(|| web.clone()),
        );
        let addrs: Vec<&str> = c.iter().map(|(a, _)| a.as_str()).collect();
        assert_eq!(addrs, vec!["10.0.0.3", "10.0.0.4", "10.0.0.6"]);
    }
}
