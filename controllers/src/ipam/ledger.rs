//! Addresses on one network: the ledger in `Network.status.addresses` (address → owner).
//!
//! An address is owned by writing, in one transaction, the network's status with the address
//! added to the ledger (conditional on the network's `resourceVersion`) and the owner — a
//! task's `spec.networks` or a service's `status.virtualIps` — carrying it. Two allocators
//! reading the same ledger both try to write the network at the same version; the store
//! accepts one, the other re-reads and picks another address.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use swarm_api::Network;

/// The owner of a task's address.
pub fn task_owner(name: &str) -> String {
    format!("task/{name}")
}

/// The owner of a service's VIP.
pub fn service_owner(name: &str) -> String {
    format!("service/{name}")
}

/// Who an owner string names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner<'a> {
    Task(&'a str),
    Service(&'a str),
}

pub fn parse_owner(s: &str) -> Option<Owner<'_>> {
    if let Some(t) = s.strip_prefix("task/") {
        Some(Owner::Task(t))
    } else {
        s.strip_prefix("service/").map(Owner::Service)
    }
}

/// Free addresses of one network, from a snapshot of its status.
#[derive(Clone, Debug)]
pub struct AddressPool {
    pub subnet: Ipv4Net,
    used: HashSet<Ipv4Addr>,
    next: u32,
}

impl AddressPool {
    /// `None` while the network has no subnet yet.
    pub fn of(network: &Network) -> Option<Self> {
        let subnet: Ipv4Net = network.status.subnet.parse().ok()?;
        let mut used: HashSet<Ipv4Addr> = network
            .status
            .addresses
            .keys()
            .filter_map(|a| a.parse().ok())
            .collect();
        if let Ok(gw) = network.status.gateway.parse() {
            used.insert(gw);
        }
        Some(AddressPool {
            next: u32::from(subnet.network()).saturating_add(1),
            subnet,
            used,
        })
    }

    /// The lowest free host address (never the network, broadcast or gateway address).
    pub fn allocate(&mut self) -> Option<Ipv4Addr> {
        let last = u32::from(self.subnet.broadcast());
        while self.next < last {
            let ip = Ipv4Addr::from(self.next);
            self.next += 1;
            if self.used.insert(ip) {
                return Some(ip);
            }
        }
        None
    }

    /// `10.0.1.5/24`, as attachments and VIPs show it.
    pub fn cidr(&self, ip: Ipv4Addr) -> String {
        format!("{ip}/{}", self.subnet.prefix_len())
    }
}

/// The address part of `10.0.1.5/24`.
pub fn addr_of(cidr: &str) -> &str {
    cidr.split('/').next().unwrap_or(cidr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_api::NetworkSpec;

    #[test]
    fn allocates_lowest_free_skipping_gateway_and_ledger() {
        let mut n = Network::new("n", NetworkSpec::default());
        n.status.subnet = "10.0.3.0/30".into();
        n.status.gateway = "10.0.3.1".into();
        let mut p = AddressPool::of(&n).unwrap();
        assert_eq!(p.allocate(), Some("10.0.3.2".parse().unwrap()));
        assert_eq!(
            p.allocate(),
            None,
            "a /30 has two hosts, one is the gateway"
        );

        n.status.subnet = "10.0.3.0/29".into();
        n.status
            .addresses
            .insert("10.0.3.2".into(), task_owner("web.1.1"));
        let mut p = AddressPool::of(&n).unwrap();
        assert_eq!(p.allocate(), Some("10.0.3.3".parse().unwrap()));
        assert_eq!(p.cidr("10.0.3.3".parse().unwrap()), "10.0.3.3/29");
    }

    #[test]
    fn owners_parse() {
        assert_eq!(parse_owner("task/web.1.1"), Some(Owner::Task("web.1.1")));
        assert_eq!(parse_owner("service/web"), Some(Owner::Service("web")));
        assert_eq!(parse_owner("gateway"), None);
        assert_eq!(addr_of("10.0.0.5/24"), "10.0.0.5");
    }

    #[test]
    fn no_subnet_no_pool() {
        assert!(AddressPool::of(&Network::new("n", NetworkSpec::default())).is_none());
    }
}
