//! The update controller over the runtime: services are primary, a task change that can
//! matter to an update (`matters`) wakes its service. Each reconcile reads its service's
//! tasks from the cache's by-service index, asks `plan` what to do, and writes it —
//! status first (a new update or a verdict), then the task steps, each replace in one
//! transaction with its create-if-absent successor.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use swarm_api::{Node, NodeState, Service, Task, TaskState, UpdateState};
use swarm_client::runtime::watcher::Config;
use swarm_client::runtime::{Action, Change, Controller, ControllerConfig, ReconcileError, Store};
use swarm_client::{Client, ClientError, Operation};
use tokio_util::sync::CancellationToken;

use super::plan::{self, Step};
use super::{ROLLBACK_ANNOTATION, UPDATE_ANNOTATION};
use crate::Options;
use crate::placement::batch::revision;
use crate::replication::by_service;
use crate::replication::plan::tasks_of;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Api {
        what: String,
        #[source]
        source: ClientError,
    },
    #[error("cannot encode {what}: {source}")]
    Encode {
        what: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Conflicts (a lost CAS) are found in the `source()` chain and retried promptly.
impl ReconcileError for Error {}

fn api(what: impl Into<String>) -> impl FnOnce(ClientError) -> Error {
    let what = what.into();
    move |source| Error::Api { what, source }
}

pub struct Ctx {
    pub client: Client,
    pub services: Store<Service>,
    pub tasks: Store<Task>,
    pub nodes: Store<Node>,
    /// Tasks this process created, per service, with the revision of the write, until the
    /// cache has them: planning on a cache that does not show our own successors yet would
    /// start more slots than `parallelism` allows (Kubernetes' "expectations").
    expected: Mutex<HashMap<String, HashMap<String, u64>>>,
    /// When each task an update created was seen reaching RUNNING (its status timestamp
    /// then), filled from every task event: once the task has ended, its status no longer
    /// says, and whether it failed within `monitor` depends on it. Forgotten on delete.
    running: Arc<Mutex<HashMap<String, SystemTime>>>,
}

impl Ctx {
    /// Whether the cache has caught up with every task we created for `service`.
    fn caught_up(&self, service: &str) -> bool {
        let mut expected = self.expected.lock().unwrap_or_else(|e| e.into_inner());
        let Some(mine) = expected.get_mut(service) else {
            return true;
        };
        mine.retain(|name, rv| {
            self.tasks
                .get(name)
                .is_none_or(|t| revision(&t.metadata.resource_version) < *rv)
        });
        let done = mine.is_empty();
        if done {
            expected.remove(service);
        }
        done
    }

    fn seen_running(&self, task: &str) -> Option<SystemTime> {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(task)
            .copied()
    }

    fn expect(&self, service: &str, task: &str, rv: u64) {
        self.expected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(service.to_string())
            .or_default()
            .insert(task.to_string(), rv);
    }
}

pub fn controller(client: Client, opts: &Options) -> (Controller<Service>, Arc<Ctx>) {
    let config = ControllerConfig {
        concurrency: opts.concurrency,
        ..ControllerConfig::default()
    };
    let mut c = opts.controller::<Service>("update", client.clone(), config);
    let services = c.store();
    let running: Arc<Mutex<HashMap<String, SystemTime>>> = Arc::default();
    let seen = running.clone();
    let owners = services.clone();
    let tasks = c.watches_indexed(
        Config::default(),
        Some(by_service),
        move |t: &Task, change| {
            if t.metadata.annotations.contains_key(UPDATE_ANNOTATION) {
                let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
                match change {
                    Change::Deleted => {
                        seen.remove(&t.metadata.name);
                    }
                    Change::Applied if t.status.state == TaskState::Running => {
                        let at = t.status.timestamp.map_or_else(SystemTime::now, |ts| ts.0);
                        seen.entry(t.metadata.name.clone()).or_insert(at);
                    }
                    Change::Applied => {}
                }
            }
            if matters(t, owners.get(&t.spec.service).as_deref()) {
                vec![t.spec.service.clone()]
            } else {
                Vec::new()
            }
        },
    );
    let nodes = c.caches(Config::default());
    let ctx = Arc::new(Ctx {
        client,
        services,
        tasks,
        nodes,
        expected: Mutex::new(HashMap::new()),
        running,
    });
    (c, ctx)
}

/// Whether a task change can matter to the update of its service. During an update (also
/// paused: its started slots still come up), or with the service unknown, every change does.
/// Outside one (none, or completed) only a task of another template than the service's
/// (it starts one) or a held successor (desired READY) does — so the steps of a scale-up,
/// 100,000 tasks each going NEW → RUNNING, wake nothing here. A change of the service
/// wakes its key anyway, whatever its tasks do.
pub fn matters(t: &Task, svc: Option<&Service>) -> bool {
    let Some(svc) = svc else {
        return true;
    };
    let settled = svc.status.update_status.as_ref().is_none_or(|u| {
        matches!(
            u.state,
            UpdateState::Completed | UpdateState::RollbackCompleted
        )
    });
    !settled
        || t.spec.desired_state == TaskState::Ready
        || t.spec.template != svc.spec.task_template
}

/// Runs the update controller until `stop`.
pub async fn run(client: Client, opts: Options, stop: CancellationToken) {
    let (c, ctx) = controller(client, &opts);
    c.run(reconcile, ctx, stop).await;
}

/// Conflicts and vanished objects are not errors: the next event brings the new state.
fn raced(e: &ClientError) -> bool {
    e.is_conflict() || e.is_not_found() || e.is_already_exists()
}

pub async fn reconcile(name: String, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let Some(svc) = ctx.services.get(&name) else {
        return Ok(Action::await_change());
    };
    if svc.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let now = SystemTime::now();
    if let Some(to) = svc.metadata.annotations.get(ROLLBACK_ANNOTATION) {
        return manual_rollback(&svc, to, &ctx, now).await;
    }
    if !ctx.caught_up(&name) {
        // Our own successors are on their way into the cache; their events wake us too.
        return Ok(Action::requeue(Duration::from_millis(200)));
    }
    let all = ctx.tasks.indexed(&name);
    let tasks = tasks_of(&svc, &all);
    let node_ok = |n: &str| {
        ctx.nodes
            .get(n)
            .is_some_and(|node| node.status.state != NodeState::Down)
    };
    let plan = plan::plan(&svc, &tasks, now, node_ok, |t| ctx.seen_running(t));

    if let Some(template) = plan.rollback_to {
        let mut next = (*svc).clone();
        next.spec.task_template = template;
        let ustatus = plan.status.and_then(|(u, _)| u);
        return rewrite(&ctx, next, ustatus, now).await;
    }
    if let Some((ustatus, revisions)) = plan.status {
        let mut next = (*svc).clone();
        next.status.update_status = ustatus;
        next.status.revisions = revisions;
        match ctx.client.replace_status(&next).await {
            Ok(_) => {}
            Err(e) if raced(&e) => {}
            Err(e) => return Err(api(format!("status of service {name}"))(e)),
        }
        return Ok(Action::await_change());
    }
    for step in plan.steps {
        let result = match step {
            Step::Replace { old, new, stop_old } => {
                let mut ops = Vec::new();
                if stop_old {
                    let mut o = *old;
                    o.spec.desired_state = TaskState::Shutdown;
                    ops.push(Operation::update(&o).map_err(|source| Error::Encode {
                        what: o.metadata.name.clone(),
                        source,
                    })?);
                }
                ops.push(Operation::create(&*new).map_err(|source| Error::Encode {
                    what: new.metadata.name.clone(),
                    source,
                })?);
                tracing::info!(service = %name, task = %new.metadata.name, "updating slot");
                ctx.client.transaction(&ops).await.map(|resp| {
                    ctx.expect(&name, &new.metadata.name, revision(&resp.resource_version));
                })
            }
            Step::Desire { task, state } => {
                let mut t = *task;
                t.spec.desired_state = state;
                ctx.client.replace(&t).await.map(|_| ())
            }
        };
        match result {
            Ok(()) => {}
            Err(e) if raced(&e) => {}
            Err(e) => return Err(api(format!("update of service {name}"))(e)),
        }
    }
    Ok(match plan.requeue {
        Some(d) => Action::requeue(d),
        None => Action::await_change(),
    })
}

/// Writes a rolled-back spec, then the status that says so (with the revision it made).
async fn rewrite(
    ctx: &Ctx,
    next: Service,
    ustatus: Option<swarm_api::UpdateStatus>,
    now: SystemTime,
) -> Result<Action, Error> {
    let name = next.metadata.name.clone();
    let mut written = match ctx.client.replace(&next).await {
        Ok(w) => w,
        Err(e) if raced(&e) => return Ok(Action::await_change()),
        Err(e) => return Err(api(format!("spec of service {name}"))(e)),
    };
    // The status that says why the template changed; retried on conflict (other controllers
    // write this status too) as long as the spec is still the one written here.
    let generation = written.metadata.generation;
    for _ in 0..10 {
        let (revisions, _) = plan::with_revision(&written, now);
        written.status.revisions = revisions;
        written.status.update_status = ustatus.clone();
        match ctx.client.replace_status(&written).await {
            Ok(_) => return Ok(Action::await_change()),
            Err(e) if e.is_conflict() => {
                written = match ctx.client.get::<Service>(&name).await {
                    Ok(s) if s.metadata.generation == generation => s,
                    Ok(_) => return Ok(Action::await_change()),
                    Err(e) if e.is_not_found() => return Ok(Action::await_change()),
                    Err(e) => return Err(api(format!("service {name}"))(e)),
                };
            }
            Err(e) if raced(&e) => return Ok(Action::await_change()),
            Err(e) => return Err(api(format!("status of service {name}"))(e)),
        }
    }
    Ok(Action::requeue(Duration::from_millis(100)))
}

async fn manual_rollback(
    svc: &Service,
    to: &str,
    ctx: &Ctx,
    now: SystemTime,
) -> Result<Action, Error> {
    let generation = match to.trim() {
        "" | "previous" => None,
        g => g.parse::<i64>().ok(),
    };
    let mut next = svc.clone();
    next.metadata.annotations.remove(ROLLBACK_ANNOTATION);
    let target = plan::rollback_target(svc, generation).map(|r| r.template.clone());
    match target {
        Some(t) => {
            let all = ctx.tasks.indexed(&svc.metadata.name);
            let dirty_slots = plan::dirty_count(svc, &tasks_of(svc, &all), &t);
            next.spec.task_template = t;
            let status = swarm_api::UpdateStatus {
                state: swarm_api::UpdateState::RollbackStarted,
                started_at: Some(swarm_api::Timestamp(now)),
                completed_at: None,
                message: "manually requested rollback".to_string(),
                dirty_slots,
            };
            rewrite(ctx, next, Some(status), now).await
        }
        None => {
            tracing::warn!(service = %svc.metadata.name, %to, "no such revision to roll back to");
            match ctx.client.replace(&next).await {
                Ok(_) => Ok(Action::await_change()),
                Err(e) if raced(&e) => Ok(Action::await_change()),
                Err(e) => Err(api(format!("service {}", svc.metadata.name))(e)),
            }
        }
    }
}
