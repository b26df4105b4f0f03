//! The placement controller: the pure scheduler over the runtime's caches.
//!
//! Nodes are the primary kind; a node change that matters to placement (not a heartbeat)
//! and a task change that matters (`matters`: a task to place, or one giving its resources
//! back) enqueue one key, `PASS`. The work queue dedupes it, so a burst of
//! changes becomes one pass; concurrency is 1, so passes never overlap. A pass builds the
//! `Cluster` from the caches, schedules every pending task, and writes the decisions in
//! batched transactions (a pass with nothing pending stops before building the `Cluster`):
//! `spec.nodeName` (conditional on the task's `resourceVersion`), then
//! `status.state = assigned`. Until the cache catches up with its own writes, the controller
//! remembers what it assigned (`assumed`), so a quick second pass neither places a task
//! twice nor forgets the resources it took.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use swarm_api::{Node, Task, TaskState, Timestamp};
use swarm_client::runtime::watcher::Config;
use swarm_client::runtime::{Action, Change, Controller, ControllerConfig, ReconcileError, Store};
use swarm_client::{Client, Operation};
use tokio_util::sync::CancellationToken;

use super::batch::{self, OpError, revision};
use super::{Cluster, Options as Ranking, is_pending, schedule};
use crate::Options;

/// The one key that runs a scheduling pass.
pub const PASS: &str = "~pass";

/// SwarmKit's message for a placed task.
pub const ASSIGNED_MESSAGE: &str = "scheduler assigned task to node";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{failed} of {total} placement writes failed, first: {first}")]
    Writes {
        failed: usize,
        total: usize,
        first: String,
    },
    #[error("cannot encode task {task}: {source}")]
    Encode {
        task: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Conflicts (a lost CAS) are found in the `source()` chain and retried promptly.
impl ReconcileError for Error {}

pub struct Ctx {
    pub client: Client,
    pub nodes: Store<Node>,
    pub tasks: Store<Task>,
    pub ranking: Ranking,
    /// Task → (node, revision of our write), until the cache holds that revision.
    assumed: Mutex<HashMap<String, (String, u64)>>,
    /// Node → what placement last saw of it, to skip heartbeats.
    seen: Mutex<HashMap<String, String>>,
}

/// What of a node matters to placement (everything but heartbeats and messages).
fn fingerprint(n: &Node) -> String {
    let s = &n.status;
    format!(
        "{:?}|{:?}|{:?}|{:?}|{}|{}|{:?}|{:?}|{:?}",
        n.spec,
        s.state,
        s.resources,
        s.engine.labels,
        s.hostname,
        s.addr,
        s.platform,
        n.metadata.deletion_timestamp,
        n.metadata.uid
    )
}

/// Builds the controller (concurrency is always 1, whatever `Options` say).
pub fn controller(client: Client, opts: &Options) -> (Controller<Node>, Arc<Ctx>) {
    let config = ControllerConfig {
        concurrency: 1,
        ..ControllerConfig::default()
    };
    let mut c = opts.controller::<Node>("placement", client.clone(), config);
    let nodes = c.store();
    let tasks = c.watches_changes(Config::default(), |t: &Task, change| {
        if matters(t, change) {
            vec![PASS.to_string()]
        } else {
            Vec::new()
        }
    });
    let ctx = Arc::new(Ctx {
        client,
        nodes,
        tasks,
        ranking: Ranking::default(),
        assumed: Mutex::new(HashMap::new()),
        seen: Mutex::new(HashMap::new()),
    });
    (c, ctx)
}

/// Whether a task change can change what a pass does: a task to place (PENDING), or
/// resources and spread counts given back (deleted, ended, or on its way out). A task going
/// from ASSIGNED to RUNNING holds what it held, so it wakes nothing.
pub fn matters(t: &Task, change: Change) -> bool {
    change == Change::Deleted
        || is_pending(t)
        || t.status.state.is_terminal()
        || t.spec.desired_state > TaskState::Running
}

/// Runs the placement controller until `stop`.
pub async fn run(client: Client, opts: Options, stop: CancellationToken) {
    let (c, ctx) = controller(client, &opts);
    c.run(reconcile, ctx, stop).await;
}

pub async fn reconcile(key: String, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if key != PASS {
        // A node event: only a change that matters to placement runs a pass.
        let now = ctx.nodes.get(&key).map(|n| fingerprint(&n));
        let mut seen = ctx.seen.lock().unwrap_or_else(|e| e.into_inner());
        let before = match &now {
            Some(f) => seen.insert(key.clone(), f.clone()),
            None => seen.remove(&key),
        };
        if before == now {
            return Ok(Action::await_change());
        }
    }
    pass(&ctx).await
}

/// The tasks as the cache has them, with our own recent assignments laid over.
fn snapshot(ctx: &Ctx) -> Vec<Arc<Task>> {
    let mut tasks = ctx.tasks.state();
    let mut assumed = ctx.assumed.lock().unwrap_or_else(|e| e.into_inner());
    if assumed.is_empty() {
        return tasks;
    }
    let mut still = HashMap::new();
    for t in &mut tasks {
        if let Some((node, rv)) = assumed.remove(&t.metadata.name)
            && revision(&t.metadata.resource_version) < rv
        {
            let mut copy = (**t).clone();
            copy.spec.node_name = Some(node.clone());
            copy.status.state = copy.status.state.max(TaskState::Assigned);
            *t = Arc::new(copy);
            still.insert(t.metadata.name.clone(), (node, rv));
        }
    }
    *assumed = still;
    tasks
}

async fn pass(ctx: &Ctx) -> Result<Action, Error> {
    let tasks = snapshot(ctx);
    let mut pending: Vec<&Task> = tasks
        .iter()
        .map(|t| &**t)
        .filter(|t| is_pending(t))
        .collect();
    if pending.is_empty() {
        return Ok(Action::await_change());
    }
    let nodes = ctx.nodes.state();
    let mut cluster = Cluster::build(
        nodes.iter().map(|n| &**n),
        tasks.iter().map(|t| &**t),
        SystemTime::now(),
        ctx.ranking,
    );
    // Slots in order, so a pass is deterministic.
    pending.sort_by(|a, b| {
        (
            a.spec.service.as_str(),
            a.spec.slot,
            a.metadata.name.as_str(),
        )
            .cmp(&(
                b.spec.service.as_str(),
                b.spec.slot,
                b.metadata.name.as_str(),
            ))
    });
    let out = schedule(&mut cluster, &pending);
    tracing::debug!(
        pending = pending.len(),
        assigned = out.assigned.len(),
        unplaced = out.unplaced.len(),
        "placement pass"
    );

    // 1. Bind: spec.nodeName, conditional on the version the decision was made on. A task
    //    already bound (global, or a pass cut short after its bind) needs only its status.
    let mut picks = Vec::with_capacity(out.assigned.len());
    let mut binds = Vec::new();
    for a in &out.assigned {
        let t = pending[a.task];
        let node = cluster.node_name(a.node).to_string();
        let bind = t.spec.node_name.as_deref() != Some(node.as_str());
        let mut copy = t.clone();
        if bind {
            copy.spec.node_name = Some(node.clone());
            binds.push(encode(Operation::update(&copy), &copy)?);
        }
        picks.push((copy, node, bind));
    }
    let mut failures: Vec<OpError> = Vec::new();
    let mut bound = batch::commit(&ctx.client, binds).await.into_iter();
    // 2. Assign: the status, from the version the bind wrote.
    let now = Timestamp::now();
    let mut statuses = Vec::new();
    let mut status_of = Vec::new();
    for (mut t, node, bind) in picks {
        if bind {
            match bound.next() {
                Some(Ok(v)) => match serde_json::from_value::<Task>(v) {
                    Ok(written) => t = written,
                    Err(e) => {
                        failures.push(OpError::Failed(e.to_string()));
                        continue;
                    }
                },
                Some(Err(e)) => {
                    failures.push(e);
                    continue;
                }
                None => continue,
            }
        }
        t.status.state = TaskState::Assigned;
        t.status.message = ASSIGNED_MESSAGE.to_string();
        t.status.timestamp = Some(now);
        statuses.push(encode(Operation::update_status(&t), &t)?);
        status_of.push((t.metadata.name.clone(), node));
    }
    let status_results = batch::commit(&ctx.client, statuses).await;
    {
        let mut assumed = ctx.assumed.lock().unwrap_or_else(|e| e.into_inner());
        for ((name, node), r) in status_of.into_iter().zip(status_results) {
            match r {
                Ok(v) => {
                    let rv = v["metadata"]["resourceVersion"]
                        .as_str()
                        .map_or(0, revision);
                    assumed.insert(name, (node, rv));
                }
                Err(e) => failures.push(e),
            }
        }
    }

    // 3. Unplaced tasks keep saying why.
    let mut notes = Vec::new();
    for u in &out.unplaced {
        let t = pending[u.task];
        if t.status.message != u.message {
            let mut copy = t.clone();
            copy.status.message = u.message.clone();
            notes.push(encode(Operation::update_status(&copy), &copy)?);
        }
    }
    for r in batch::commit(&ctx.client, notes).await {
        if let Err(e) = r {
            failures.push(e);
        }
    }
    // Lost races resolve themselves: the winner's write comes back as a task event.
    let total = failures.len();
    let real: Vec<&OpError> = failures
        .iter()
        .filter(|e| matches!(e, OpError::Failed(_)))
        .collect();
    if let Some(first) = real.first() {
        return Err(Error::Writes {
            failed: real.len(),
            total,
            first: first.to_string(),
        });
    }
    Ok(Action::await_change())
}

fn encode(op: Result<Operation, serde_json::Error>, t: &Task) -> Result<Operation, Error> {
    op.map_err(|source| Error::Encode {
        task: t.metadata.name.clone(),
        source,
    })
}
