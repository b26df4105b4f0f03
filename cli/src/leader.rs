//! Which manager leads: the node whose `swarm server` holds the controllers' leases.
//!
//! swarm's managers share one store instead of running Raft, so "leader" means what Docker's
//! leader does besides Raft: it runs the orchestrators. Every controller campaigns on its own
//! `Lease` (`swarm-controller-<name>`, see `client::runtime::leader`) and the winner writes its
//! identity as the lease's holder. A `swarm server` campaigns for all its controllers with one
//! identity, [`server_identity`]:
//!
//! ```text
//! swarm-server node=<node> host=<hostname> dir=<data directory>
//! ```
//!
//! `<node>` is the name the server's local agent registers its node under (with `--agent sim`,
//! its first simulated node); a server without a local agent leaves `node=…` out, and
//! standalone `swarm-controller` processes use identities of their own: neither names a node.
//! The name is the one the agent asks for at start (`--node-name`, else the name kept in its
//! data directory, else the hostname); if a node of that name already exists when it first
//! joins, the cluster gives it a suffixed name, which the server uses from its next start on.
//!
//! [`leader_nodes`] reads the node names back from the leases; `node ls` and
//! `node inspect --pretty` show those nodes as `Leader`.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::Context as _;
use swarm_api::Lease;
use swarm_client::{Client, ListParams};

/// The prefix of the controllers' leader-election leases.
pub const CONTROLLER_LEASE_PREFIX: &str = "swarm-controller-";

const SERVER: &str = "swarm-server";

/// The leader-election identity of a `swarm server`'s controllers: its local agent's node
/// (if it runs one), this host and the data directory — stable across restarts, so a server
/// restarted after a crash takes its leases back at once, and distinct for servers with other
/// data directories.
pub fn server_identity(node: Option<&str>, host: &str, data_dir: &Path) -> String {
    let node = node.map(|n| format!(" node={n}")).unwrap_or_default();
    format!("{SERVER}{node} host={host} dir={}", data_dir.display())
}

/// The node a lease holder identity names (see the module docs), if any.
pub fn node_of(identity: &str) -> Option<&str> {
    let rest = identity.strip_prefix(SERVER)?.strip_prefix(" node=")?;
    let node = rest.split(' ').next()?;
    (!node.is_empty()).then_some(node)
}

/// The nodes whose servers hold controller leases now: normally one, as a server takes all
/// the leases it finds free; several when leadership is split between servers.
pub fn leader_nodes(leases: &[Lease]) -> BTreeSet<String> {
    leases
        .iter()
        .filter(|l| l.metadata.name.starts_with(CONTROLLER_LEASE_PREFIX))
        .filter_map(|l| node_of(&l.spec.holder_identity))
        .map(str::to_string)
        .collect()
}

/// Reads the controllers' leases and returns [`leader_nodes`].
pub async fn fetch_leader_nodes(client: &Client) -> anyhow::Result<BTreeSet<String>> {
    let leases = client
        .list_all::<Lease>(&ListParams::default())
        .await
        .context("cannot read the controllers' leases (to tell which manager leads)")?;
    Ok(leader_nodes(&leases.items))
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_api::LeaseSpec;

    fn lease(name: &str, holder: &str) -> Lease {
        Lease::new(
            name,
            LeaseSpec {
                holder_identity: holder.into(),
                ..LeaseSpec::default()
            },
        )
    }

    #[test]
    fn the_identity_names_the_node_and_reads_back() {
        let id = server_identity(Some("manager-1"), "box", Path::new("/var/lib/swarm dir"));
        assert_eq!(
            id,
            "swarm-server node=manager-1 host=box dir=/var/lib/swarm dir"
        );
        assert_eq!(node_of(&id), Some("manager-1"));
        let none = server_identity(None, "box", Path::new("/d"));
        assert_eq!(none, "swarm-server host=box dir=/d");
        assert_eq!(node_of(&none), None);
        assert_eq!(node_of("replication-host-123-abcd"), None);
        assert_eq!(node_of(""), None);
    }

    #[test]
    fn leaders_are_the_nodes_holding_controller_leases() {
        let a = server_identity(Some("m1"), "h", Path::new("/a"));
        let b = server_identity(Some("m2"), "h", Path::new("/b"));
        let leases = [
            lease("swarm-controller-replication", &a),
            lease("swarm-controller-gc", &a),
            // A released lease has no holder; ipam's markers are not leadership.
            lease("swarm-controller-nodes", ""),
            lease("ipam-subnet-10-0-1-0", &b),
        ];
        assert_eq!(leader_nodes(&leases), BTreeSet::from(["m1".to_string()]));
        let split = [
            lease("swarm-controller-replication", &a),
            lease("swarm-controller-gc", &b),
        ];
        assert_eq!(leader_nodes(&split).len(), 2);
    }
}
