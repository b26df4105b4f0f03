//! The nodes controller: node liveness from heartbeats.
//!
//! Agents write `status.lastHeartbeat` every heartbeat period (5 s, jittered). A node whose
//! heartbeat has not changed for `missed_heartbeats` periods (3 × 5 s) is marked `down`, and
//! the tasks it was meant to run get desired state SHUTDOWN — so replication fills their
//! slots elsewhere, and when the node comes back its agent stops the stale containers instead
//! of running them twice. A `down` node whose heartbeat moves again is `ready`.
//!
//! Freshness is judged on this process's clock: the controller notes *when it saw* each new
//! heartbeat value, so agents' clocks never need to agree with it. After a restart of the
//! controller every node gets a full timeout of grace, which errs on the safe side.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use swarm_api::{Node, NodeState, Task, TaskState, Timestamp};
use swarm_client::runtime::watcher::Config;
use swarm_client::runtime::{Action, Controller, ControllerConfig, ReconcileError, Store};
use swarm_client::{Client, ClientError};
use tokio_util::sync::CancellationToken;

use crate::Options;
use crate::replication::{self, plan::Write};

/// `status.message` of a node marked down.
pub const DOWN_MESSAGE: &str = "heartbeat failure";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("node {node}: {source}")]
    Node {
        node: String,
        #[source]
        source: ClientError,
    },
    #[error(transparent)]
    Tasks(#[from] replication::Error),
}

/// Conflicts (a lost CAS) are found in the `source()` chain and retried promptly.
impl ReconcileError for Error {}

pub struct Ctx {
    pub client: Client,
    pub nodes: Store<Node>,
    pub tasks: Store<Task>,
    /// Silence after which a node is down.
    pub timeout: Duration,
    /// Per node: what this process knows of its heartbeats.
    seen: Mutex<HashMap<String, Seen>>,
}

/// The heartbeat value last seen on a node, when it was first seen, and whether it has moved
/// since this process first looked (only a moving heartbeat proves a node is back).
struct Seen {
    heartbeat: Option<Timestamp>,
    at: Instant,
    moved: bool,
}

pub fn controller(client: Client, opts: &Options) -> (Controller<Node>, Arc<Ctx>) {
    let config = ControllerConfig {
        concurrency: opts.concurrency,
        ..ControllerConfig::default()
    };
    let mut c = opts.controller::<Node>("nodes", client.clone(), config);
    let tasks = c.caches::<Task>(Config::default());
    let ctx = Arc::new(Ctx {
        client,
        nodes: c.store(),
        tasks,
        timeout: opts.node_timeout(),
        seen: Mutex::new(HashMap::new()),
    });
    (c, ctx)
}

pub async fn run(client: Client, opts: Options, stop: CancellationToken) {
    let (c, ctx) = controller(client, &opts);
    c.run(reconcile, ctx, stop).await;
}

pub async fn reconcile(name: String, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let Some(node) = ctx.nodes.get(&name) else {
        ctx.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&name);
        return Ok(Action::await_change());
    };
    let heartbeat = node.status.last_heartbeat;
    let (silent_for, moved) = {
        let mut seen = ctx.seen.lock().unwrap_or_else(|e| e.into_inner());
        let entry = seen.entry(name.clone()).or_insert(Seen {
            heartbeat,
            at: Instant::now(),
            moved: false,
        });
        if entry.heartbeat != heartbeat {
            *entry = Seen {
                heartbeat,
                at: Instant::now(),
                moved: true,
            };
        }
        (entry.at.elapsed(), entry.moved)
    };
    // A node that never sent a heartbeat has not joined yet: nothing to judge.
    if heartbeat.is_none() {
        return Ok(Action::await_change());
    }
    // A node first seen by this process gets a full timeout of grace; a node already down
    // is back only once its heartbeat has moved (a restarted controller must not revive it).
    let alive = silent_for < ctx.timeout && (moved || node.status.state != NodeState::Down);
    match (node.status.state, alive) {
        (NodeState::Down, false) => {
            stop_tasks(&ctx, &name).await?;
            Ok(Action::await_change())
        }
        (NodeState::Down, true) => {
            set_state(&ctx.client, &node, NodeState::Ready, "").await?;
            tracing::info!(node = %name, "node is back");
            Ok(Action::requeue(ctx.timeout))
        }
        (_, false) => {
            set_state(&ctx.client, &node, NodeState::Down, DOWN_MESSAGE).await?;
            tracing::warn!(node = %name, silent_for = ?silent_for, "node is down");
            // The status write comes back as an event and stops the tasks.
            Ok(Action::await_change())
        }
        (_, true) => Ok(Action::requeue(
            ctx.timeout.saturating_sub(silent_for) + Duration::from_millis(10),
        )),
    }
}

async fn set_state(
    client: &Client,
    node: &Node,
    state: NodeState,
    message: &str,
) -> Result<(), Error> {
    let mut next = node.clone();
    next.status.state = state;
    next.status.message = message.to_string();
    client
        .replace_status(&next)
        .await
        .map(drop)
        .map_err(|source| Error::Node {
            node: node.metadata.name.clone(),
            source,
        })
}

/// Desired SHUTDOWN for every task the down node was meant to run.
async fn stop_tasks(ctx: &Ctx, node: &str) -> Result<(), Error> {
    let writes: Vec<Write> = ctx
        .tasks
        .filter(|t| {
            t.spec.node_name.as_deref() == Some(node)
                && t.spec.desired_state <= TaskState::Complete
                && !t.status.state.is_terminal()
        })
        .into_iter()
        .map(|task| Write::SetDesired {
            task,
            desired: TaskState::Shutdown,
        })
        .collect();
    if !writes.is_empty() {
        tracing::info!(
            node,
            tasks = writes.len(),
            "stopping the tasks of a down node"
        );
    }
    replication::execute(&ctx.client, &writes).await.result?;
    Ok(())
}
