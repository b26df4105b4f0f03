//! Subnets: the default pool (10.0.0.0/8 unless `--default-addr-pool` says otherwise) cut in
//! /24s, user subnets honoured, overlaps refused.
//!
//! A network owns its subnet through one *claim marker* per /24 block the subnet covers: a
//! `Lease` named `ipam-subnet-10.0.5.0-24` whose holder is `Network/<name>/<uid>`, created
//! (create-if-absent) in the same transaction that writes the network's `status.subnet`. Two
//! allocators that pick the same block — for one network or two — both try to create the same
//! marker, and the store lets only one win. A subnet smaller than /24 still claims its whole
//! /24 block; a subnet larger than /16 is refused (its ledger and marker count would not be
//! bounded). IPv6 is not supported yet.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use swarm_api::Network;

/// The default address pool (Swarm's `--default-addr-pool` default).
pub const DEFAULT_POOL: Ipv4Net = match Ipv4Net::new(Ipv4Addr::new(10, 0, 0, 0), 8) {
    Ok(n) => n,
    Err(_) => panic!("constant pool"),
};

/// The size of a default subnet and of a claim block.
pub const BLOCK_PREFIX: u8 = 24;

/// The largest subnet a user may ask for.
pub const MAX_PREFIX: u8 = 16;

const MARKER_PREFIX: &str = "ipam-subnet-";

/// Why a network gets no subnet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubnetError {
    #[error("subnet {subnet} overlaps the subnet of network {network:?}")]
    Overlap { subnet: Ipv4Net, network: String },
    #[error("the address pool {0} is exhausted: no free /{BLOCK_PREFIX} left")]
    Exhausted(Ipv4Net),
    #[error("subnet {0:?} is not an IPv4 CIDR (IPv6 is not supported yet)")]
    Invalid(String),
    #[error("subnet {0} is larger than /{MAX_PREFIX}")]
    TooLarge(Ipv4Net),
    #[error("gateway {0:?} is not an address inside the subnet")]
    Gateway(String),
}

impl SubnetError {
    /// The condition reason this error is reported with.
    pub fn reason(&self) -> &'static str {
        match self {
            SubnetError::Overlap { .. } => "SubnetOverlap",
            SubnetError::Exhausted(_) => "PoolExhausted",
            SubnetError::Invalid(_) | SubnetError::TooLarge(_) | SubnetError::Gateway(_) => {
                "InvalidSubnet"
            }
        }
    }
}

/// The claim a network makes: its subnet, gateway and the blocks it covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    pub blocks: Vec<Ipv4Net>,
}

/// `ipam-subnet-10.0.5.0-24`.
pub fn marker_name(block: Ipv4Net) -> String {
    format!("{MARKER_PREFIX}{}-{}", block.network(), block.prefix_len())
}

/// The block a marker name claims.
pub fn parse_marker(name: &str) -> Option<Ipv4Net> {
    let rest = name.strip_prefix(MARKER_PREFIX)?;
    let (addr, len) = rest.rsplit_once('-')?;
    Ipv4Net::new(addr.parse().ok()?, len.parse().ok()?).ok()
}

/// Who holds a network's markers: `Network/<name>/<uid>` (the uid tells a re-created network
/// of the same name from the old one).
pub fn holder(network: &Network) -> String {
    format!("Network/{}/{}", network.metadata.name, network.metadata.uid)
}

/// The network name in a holder string.
pub fn holder_network(holder: &str) -> Option<(&str, &str)> {
    let rest = holder.strip_prefix("Network/")?;
    rest.rsplit_once('/')
}

/// The /24 blocks `subnet` covers (its enclosing block when it is smaller).
pub fn blocks_of(subnet: Ipv4Net) -> Vec<Ipv4Net> {
    if subnet.prefix_len() >= BLOCK_PREFIX {
        return Ipv4Net::new(subnet.network(), BLOCK_PREFIX)
            .map(|b| vec![b.trunc()])
            .unwrap_or_default();
    }
    subnet
        .subnets(BLOCK_PREFIX)
        .map(|s| s.collect())
        .unwrap_or_default()
}

/// Chooses the subnet of `network` given the blocks already claimed (block → holder); a
/// network that asks for none gets the first free /24 of `pool` (the first of all is the
/// ingress network's). Blocks held by `network`
/// itself count as free, so a retry after a lost race is idempotent.
pub fn choose(
    network: &Network,
    claimed: &HashMap<Ipv4Net, String>,
    pool: Ipv4Net,
) -> Result<Claim, SubnetError> {
    let me = holder(network);
    let free = |b: &Ipv4Net| claimed.get(b).is_none_or(|h| *h == me);
    let ipam = &network.spec.ipam;
    let subnet = match &ipam.subnet {
        Some(s) => {
            let net: Ipv4Net = s
                .trim()
                .parse()
                .map_err(|_| SubnetError::Invalid(s.clone()))?;
            let net = net.trunc();
            if net.prefix_len() < MAX_PREFIX {
                return Err(SubnetError::TooLarge(net));
            }
            if let Some(b) = blocks_of(net).iter().find(|b| !free(b)) {
                let other = claimed
                    .get(b)
                    .and_then(|h| holder_network(h))
                    .map_or_else(String::new, |(n, _)| n.to_string());
                return Err(SubnetError::Overlap {
                    subnet: net,
                    network: other,
                });
            }
            net
        }
        None => {
            // The pool's first /24 is kept for the ingress network (see `ingress`).
            let kept = (!network.spec.ingress)
                .then(|| super::ingress::default_subnet(pool))
                .flatten();
            pool.subnets(BLOCK_PREFIX)
                .map_err(|_| SubnetError::Exhausted(pool))?
                .find(|b| free(b) && Some(*b) != kept)
                .ok_or(SubnetError::Exhausted(pool))?
        }
    };
    let gateway = match &ipam.gateway {
        Some(g) => {
            let ip: Ipv4Addr = g
                .trim()
                .parse()
                .map_err(|_| SubnetError::Gateway(g.clone()))?;
            if !subnet.contains(&ip) || ip == subnet.network() || ip == subnet.broadcast() {
                return Err(SubnetError::Gateway(g.clone()));
            }
            ip
        }
        None => first_host(subnet),
    };
    Ok(Claim {
        subnet,
        gateway,
        blocks: blocks_of(subnet),
    })
}

fn first_host(net: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.network()).saturating_add(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_api::NetworkSpec;

    fn net(name: &str, subnet: Option<&str>) -> Network {
        let mut n = Network::new(name, NetworkSpec::default());
        n.metadata.uid = format!("uid-{name}");
        n.spec.ipam.subnet = subnet.map(str::to_string);
        n
    }

    #[test]
    fn default_subnets_are_consecutive_24s_after_the_ingress_one() {
        let mut claimed = HashMap::new();
        let a = choose(&net("a", None), &claimed, DEFAULT_POOL).unwrap();
        assert_eq!(a.subnet.to_string(), "10.0.1.0/24");
        assert_eq!(a.gateway.to_string(), "10.0.1.1");
        claimed.insert(a.blocks[0], holder(&net("a", None)));
        let b = choose(&net("b", None), &claimed, DEFAULT_POOL).unwrap();
        assert_eq!(b.subnet.to_string(), "10.0.2.0/24");
        // 10.0.0.0/24 is the ingress network's, whether asked for or not.
        let mut ingress = net("ingress", None);
        ingress.spec.ingress = true;
        let i = choose(&ingress, &claimed, DEFAULT_POOL).unwrap();
        assert_eq!(i.subnet.to_string(), "10.0.0.0/24");
        // Idempotent for the holder itself.
        assert_eq!(choose(&net("a", None), &claimed, DEFAULT_POOL).unwrap(), a);
    }

    #[test]
    fn user_subnets_are_honoured_and_overlaps_refused() {
        let mut claimed = HashMap::new();
        let mut n = net("a", Some("10.1.0.0/16"));
        n.spec.ipam.gateway = Some("10.1.0.254".into());
        let a = choose(&n, &claimed, DEFAULT_POOL).unwrap();
        assert_eq!(a.blocks.len(), 256);
        assert_eq!(a.gateway.to_string(), "10.1.0.254");
        for b in &a.blocks {
            claimed.insert(*b, holder(&n));
        }
        let err = choose(&net("b", Some("10.1.7.0/24")), &claimed, DEFAULT_POOL).unwrap_err();
        assert_eq!(
            err,
            SubnetError::Overlap {
                subnet: "10.1.7.0/24".parse().unwrap(),
                network: "a".into()
            }
        );
        assert_eq!(err.reason(), "SubnetOverlap");
        // The default pool skips the claimed blocks.
        let c = choose(&net("c", Some("10.0.0.0/26")), &claimed, DEFAULT_POOL).unwrap();
        assert_eq!(c.blocks, vec!["10.0.0.0/24".parse::<Ipv4Net>().unwrap()]);
    }

    #[test]
    fn bad_requests() {
        let claimed = HashMap::new();
        assert!(matches!(
            choose(&net("a", Some("10.0.0.0/8")), &claimed, DEFAULT_POOL),
            Err(SubnetError::TooLarge(_))
        ));
        assert!(matches!(
            choose(&net("a", Some("fd00::/64")), &claimed, DEFAULT_POOL),
            Err(SubnetError::Invalid(_))
        ));
    }

    #[test]
    fn another_pool_is_cut_the_same_way() {
        let pool: Ipv4Net = "10.77.0.0/16".parse().unwrap();
        let a = choose(&net("a", None), &HashMap::new(), pool).unwrap();
        assert_eq!(a.subnet.to_string(), "10.77.1.0/24");
        assert_eq!(a.gateway.to_string(), "10.77.1.1");
        // A pool of one /24 keeps nothing apart.
        let one: Ipv4Net = "192.168.5.0/24".parse().unwrap();
        let only = choose(&net("a", None), &HashMap::new(), one).unwrap();
        assert_eq!(only.subnet, one);
        let tiny: Ipv4Net = "192.168.5.0/24".parse().unwrap();
        let claimed = HashMap::from([(tiny, "Network/x/1".to_string())]);
        let err = choose(&net("b", None), &claimed, tiny).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the address pool 192.168.5.0/24 is exhausted: no free /24 left"
        );
    }

    #[test]
    fn exhausted_pool() {
        let claimed: HashMap<Ipv4Net, String> = DEFAULT_POOL
            .subnets(BLOCK_PREFIX)
            .unwrap()
            .map(|b| (b, "Network/x/1".to_string()))
            .collect();
        assert_eq!(
            choose(&net("a", None), &claimed, DEFAULT_POOL),
            Err(SubnetError::Exhausted(DEFAULT_POOL))
        );
    }

    #[test]
    fn markers_round_trip() {
        let b: Ipv4Net = "10.0.5.0/24".parse().unwrap();
        assert_eq!(marker_name(b), "ipam-subnet-10.0.5.0-24");
        assert_eq!(parse_marker(&marker_name(b)), Some(b));
        assert_eq!(holder_network("Network/web/u1"), Some(("web", "u1")));
    }
}
