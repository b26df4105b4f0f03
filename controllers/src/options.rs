//! `Options`: the knobs every controller reads, with SwarmKit's defaults.

use std::time::Duration;

use swarm_api::Resource;
use swarm_client::Client;
use swarm_client::runtime::watcher::Config;
use swarm_client::runtime::{Controller, ControllerConfig, SharedCaches};

#[derive(Clone, Debug)]
pub struct Options {
    /// This replica's name in leader election (unique per process).
    pub identity: String,
    /// How long a leader's lease lasts without renewal (failover time after a crash).
    pub lease_duration: Duration,
    /// How often agents heartbeat (SwarmKit: 5 s).
    pub heartbeat_period: Duration,
    /// Missed heartbeats after which a node is `down` (SwarmKit: 3).
    pub missed_heartbeats: u32,
    /// Finished tasks kept per slot (SwarmKit's `TaskHistoryRetentionLimit`: 5).
    pub history_limit: usize,
    /// Reconciles running at once per controller.
    pub concurrency: usize,
    /// Where ipam cuts the /24 subnets of networks that ask for none (Swarm's
    /// `--default-addr-pool`; 10.0.0.0/8). Clusters sharing one Docker engine need disjoint
    /// pools: their bridge networks share the host's address space.
    pub default_addr_pool: ipnet::Ipv4Net,
    /// The watches and caches the controllers of this process share (`run_with` sets them;
    /// `None`: each controller watches on its own).
    pub caches: Option<SharedCaches>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            identity: default_identity(),
            lease_duration: Duration::from_secs(15),
            heartbeat_period: Duration::from_secs(5),
            missed_heartbeats: 3,
            history_limit: 5,
            concurrency: 4,
            default_addr_pool: crate::ipam::subnet::DEFAULT_POOL,
            caches: None,
        }
    }
}

impl Options {
    /// A controller named `name` of primary kind `K`, on the shared caches if there are any.
    pub fn controller<K: Resource>(
        &self,
        name: &str,
        client: Client,
        config: ControllerConfig,
    ) -> Controller<K> {
        match &self.caches {
            Some(caches) => Controller::sharing(name, client, caches, config),
            None => Controller::with_config(name, client, Config::default(), config),
        }
    }

    /// How long a node may stay silent before it is `down`.
    pub fn node_timeout(&self) -> Duration {
        self.heartbeat_period * self.missed_heartbeats.max(1)
    }
}

/// `<hostname>-<pid>-<random>`: unique per process, readable in the `Lease`.
pub fn default_identity() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "controller".to_string());
    let nonce = swarm_client::runtime::backoff::jitter(std::time::Duration::from_secs(1 << 20))
        .as_nanos()
        % 0xffff_ffff;
    format!("{host}-{}-{nonce:08x}", std::process::id())
}
