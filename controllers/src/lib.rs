//! swarm's controllers, one module per controller, each a reconcile function over the shared
//! runtime in `swarm-client` (`swarm_client::runtime`).
//!
//! `run(name, client, opts, shutdown)` is the one entry point: the `swarm-controller NAME`
//! binary and `swarm server` (in-process) both call it. Every controller runs under leader
//! election on its own `Lease` (`swarm-controller-<name>`), so several replicas of one
//! controller may run and exactly one acts. The controllers `run` starts share one watch and
//! cache per kind (`SharedCaches`).

pub mod gc;
pub mod invariants;
pub mod ipam;
pub mod metrics_http;
pub mod nodes;
pub mod options;
pub mod placement;
pub mod replication;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod update;

use std::future::Future;
use std::pin::Pin;

use swarm_client::Client;
use swarm_client::runtime::{LeaderConfig, LeaderElector, SharedCaches};
use tokio_util::sync::CancellationToken;

pub use options::Options;

/// Every controller `run` knows, in the order `all` starts them.
pub const NAMES: &[&str] = &["replication", "ipam", "placement", "update", "nodes", "gc"];

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("unknown controller {0:?}; known: {known}, or all", known = NAMES.join(", "))]
    Unknown(String),
}

type BoxedRun = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The reconcile loop of controller `name`, without leader election; runs until `stop`.
fn controller(
    name: &str,
    client: Client,
    opts: Options,
    stop: CancellationToken,
) -> Option<BoxedRun> {
    Some(match name {
        "replication" => Box::pin(replication::run(client, opts, stop)),
        "nodes" => Box::pin(nodes::run(client, opts, stop)),
        "gc" => Box::pin(gc::run(client, opts, stop)),
        "ipam" => Box::pin(ipam::controller::run(client, opts, stop)),
        "placement" => Box::pin(placement::controller::run(client, opts, stop)),
        "update" => Box::pin(update::controller::run(client, opts, stop)),
        _ => return None,
    })
}

/// Runs controller `name` (or `all`) under leader election until `shutdown` is cancelled.
pub async fn run(
    name: &str,
    client: Client,
    opts: Options,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    run_with(name, &|_| client.clone(), opts, shutdown).await
}

/// `run`, each controller with the client `client_for(controller name)` returns — its own
/// credentials, so the apiserver grants each only its kinds (`swarm server` does this).
pub async fn run_with(
    name: &str,
    client_for: &(dyn Fn(&str) -> Client + Sync),
    mut opts: Options,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let names: Vec<&str> = if name == "all" {
        NAMES.to_vec()
    } else if NAMES.contains(&name) {
        vec![name]
    } else {
        return Err(RunError::Unknown(name.to_string()));
    };
    // One watch and cache per kind for all of them (started when a controller first leads).
    if opts.caches.is_none() {
        opts.caches = Some(SharedCaches::new(client_for(names[0]), shutdown.clone()));
    }
    let mut set = tokio::task::JoinSet::new();
    for n in names {
        let (client, opts, shutdown) = (client_for(n), opts.clone(), shutdown.clone());
        let n = n.to_string();
        set.spawn(async move { lead(&n, client, opts, shutdown).await });
    }
    while set.join_next().await.is_some() {}
    Ok(())
}

/// Campaigns for `swarm-controller-<name>` and runs the controller while leading.
async fn lead(name: &str, client: Client, opts: Options, shutdown: CancellationToken) {
    let config = LeaderConfig::new(
        format!("swarm-controller-{name}"),
        opts.identity.clone(),
        opts.lease_duration,
    );
    let elector = LeaderElector::new(client.clone(), config)
        .with_metrics(swarm_client::runtime::metrics::registry().register(name));
    elector
        .run(shutdown, |stop| {
            let fut = controller(name, client.clone(), opts.clone(), stop);
            async move {
                if let Some(f) = fut {
                    f.await;
                }
            }
        })
        .await;
}
