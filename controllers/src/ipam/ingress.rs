//! The ingress network: Swarm's routing-mesh network, `ingress`, on the first /24 of the
//! address pool (10.0.0.0/24 by default), marked `spec.ingress`.
//!
//! A service in vip mode that publishes a port in ingress mode gets a VIP on it besides its
//! VIPs on its own networks (SwarmKit's allocator does the same); a dnsrr service gets none
//! (and may not publish ingress ports at all: the API refuses it). Tasks are not attached to
//! it: the agents' routing mesh forwards published ports to task addresses directly.
//!
//! ipam creates `ingress` when it starts and no network is marked ingress — as `docker swarm
//! init` does once. A network the user created beforehand with `ingress: true` (any name) is
//! used instead and left as it is; one deleted by the user is not re-created until ipam
//! restarts, which leaves room to replace it (`docker network rm ingress`, then create one's
//! own). The pool's first /24 is kept for the ingress network: other networks that ask for
//! no subnet get the next ones, as in Docker, where the first overlay gets 10.0.1.0/24.

use std::collections::HashMap;
use std::sync::Arc;

use ipnet::Ipv4Net;
use swarm_api::{EndpointMode, Network, NetworkSpec, PublishMode, Service};

use super::subnet::BLOCK_PREFIX;

/// The name of the ingress network ipam creates.
pub const NAME: &str = "ingress";

/// The subnet Swarm gives the ingress network: the first /24 of the pool (10.0.0.0/24 for
/// the default pool). `None` when the pool is a single /24 (nothing to keep apart then).
pub fn default_subnet(pool: Ipv4Net) -> Option<Ipv4Net> {
    if pool.prefix_len() >= BLOCK_PREFIX {
        return None;
    }
    pool.subnets(BLOCK_PREFIX).ok()?.next()
}

/// The ingress network in use: the network marked ingress and not being deleted; if the
/// user made more than one, the oldest (then the first by name), so every ipam picks the same.
pub fn find<'a>(networks: impl IntoIterator<Item = &'a Arc<Network>>) -> Option<&'a Arc<Network>> {
    networks
        .into_iter()
        .filter(|n| n.spec.ingress && n.metadata.deletion_timestamp.is_none())
        .min_by(|a, b| {
            (a.metadata.creation_timestamp, &a.metadata.name)
                .cmp(&(b.metadata.creation_timestamp, &b.metadata.name))
        })
}

/// The `ingress` network ipam creates when none is marked ingress: Swarm's default subnet if
/// no other network holds it (`claimed`: block → holder), else any free one from the pool.
pub fn network(pool: Ipv4Net, claimed: &HashMap<Ipv4Net, String>) -> Network {
    let mut spec = NetworkSpec {
        ingress: true,
        ..NetworkSpec::default()
    };
    if let Some(subnet) = default_subnet(pool).filter(|s| !claimed.contains_key(s)) {
        spec.ipam.subnet = Some(subnet.to_string());
    }
    Network::new(NAME, spec)
}

/// Whether `svc` publishes a port through the routing mesh.
pub fn publishes(svc: &Service) -> bool {
    svc.spec
        .endpoint
        .ports
        .iter()
        .any(|p| p.publish_mode == PublishMode::Ingress)
}

/// The network `svc` needs an ingress VIP on, if any: `ingress` names the ingress network in
/// use. `Err` says why a service that publishes ingress ports gets none.
pub fn vip_network<'a>(svc: &Service, ingress: Option<&'a str>) -> Result<Option<&'a str>, String> {
    if !publishes(svc) {
        return Ok(None);
    }
    if svc.spec.endpoint.mode == EndpointMode::Dnsrr {
        return Err(
            "a dnsrr service cannot publish ports in ingress mode; publish them in host mode"
                .to_string(),
        );
    }
    match ingress {
        Some(n) => Ok(Some(n)),
        None => Err("no ingress network for the published ports (none is marked ingress)".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_api::{PortConfig, ServiceSpec, Timestamp};

    #[test]
    fn swarms_default_subnet_is_the_pools_first_24() {
        let pool = super::super::subnet::DEFAULT_POOL;
        assert_eq!(default_subnet(pool).unwrap().to_string(), "10.0.0.0/24");
        let other: Ipv4Net = "10.77.0.0/16".parse().unwrap();
        assert_eq!(default_subnet(other).unwrap().to_string(), "10.77.0.0/24");
        assert_eq!(default_subnet("192.168.5.0/24".parse().unwrap()), None);

        let n = network(pool, &HashMap::new());
        assert_eq!(n.metadata.name, "ingress");
        assert!(n.spec.ingress);
        assert_eq!(n.spec.ipam.subnet.as_deref(), Some("10.0.0.0/24"));
        // Held by another network already (a cluster from before ingress existed): any subnet.
        let taken = HashMap::from([(default_subnet(pool).unwrap(), "Network/a/1".to_string())]);
        assert_eq!(network(pool, &taken).spec.ipam.subnet, None);
    }

    #[test]
    fn the_oldest_network_marked_ingress_is_the_one() {
        let mk = |name: &str, ingress: bool, secs: u64| {
            let mut n = Network::new(name, NetworkSpec::default());
            n.spec.ingress = ingress;
            n.metadata.creation_timestamp = Some(Timestamp(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs),
            ));
            Arc::new(n)
        };
        let nets = [
            mk("ingress", false, 1),
            mk("mesh-b", true, 5),
            mk("mesh-a", true, 5),
            mk("later", true, 9),
        ];
        assert_eq!(find(&nets).unwrap().metadata.name, "mesh-a");
        assert!(find(&nets[..1]).is_none());
    }

    #[test]
    fn who_gets_an_ingress_vip() {
        let mut svc = Service::new("web", ServiceSpec::default());
        assert_eq!(vip_network(&svc, Some("ingress")), Ok(None));
        svc.spec.endpoint.ports = vec![PortConfig {
            target_port: 80,
            publish_mode: PublishMode::Host,
            ..Default::default()
        }];
        assert_eq!(vip_network(&svc, Some("ingress")), Ok(None), "host mode");
        svc.spec.endpoint.ports[0].publish_mode = PublishMode::Ingress;
        assert_eq!(vip_network(&svc, Some("ingress")), Ok(Some("ingress")));
        assert!(vip_network(&svc, None).is_err());
        svc.spec.endpoint.mode = EndpointMode::Dnsrr;
        assert!(
            vip_network(&svc, Some("ingress"))
                .unwrap_err()
                .contains("dnsrr")
        );
    }
}
