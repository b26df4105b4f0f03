//! The garbage collector: deletes what nothing needs any more.
//!
//! * Tasks whose service is gone — deleted, or replaced by a new service of the same name
//!   (their owner reference names another uid).
//! * Task history beyond `history_limit` finished tasks per slot (SwarmKit's
//!   `TaskHistoryRetentionLimit`, 5), oldest first. The newest task of a slot is always kept:
//!   it carries the slot's restart count. Completed tasks of the current run of a job are kept:
//!   they are the job's completions.
//! * Slots removed by a scale down (desired REMOVE), once their task has stopped.
//! * Its own finalizer, `swarm.gc/tasks`: put on every service so that deleting a service
//!   deletes its tasks first; removed when none is left, which lets the service go.
//!
//! Keyed by service; only the task changes that can give it work wake it (`matters`).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use swarm_api::{Resource, Service, Task, TaskState};
use swarm_client::runtime::watcher::Config;
use swarm_client::runtime::{Action, Change, Controller, ControllerConfig, ReconcileError, Store};
use swarm_client::{Client, ClientError, Operation};
use tokio_util::sync::CancellationToken;

use crate::Options;
use crate::replication::{by_slot, plan::owned_by};

/// The finalizer gc owns on services.
pub const FINALIZER: &str = "swarm.gc/tasks";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("deleting task {task}: {source}")]
    Delete {
        task: String,
        #[source]
        source: ClientError,
    },
    #[error("finalizer of service {service}: {source}")]
    Finalizer {
        service: String,
        #[source]
        source: ClientError,
    },
}

/// Conflicts (a lost CAS) are found in the `source()` chain and retried promptly.
impl ReconcileError for Error {}

pub struct Ctx {
    pub client: Client,
    pub services: Store<Service>,
    pub tasks: Store<Task>,
    pub history_limit: usize,
    /// Per service, the task versions this process deleted that the cache may still show
    /// (its watch lags the deletes): not deleted again, which would only fail one by one.
    deleted: Mutex<HashMap<String, HashSet<(String, String)>>>,
}

pub fn controller(client: Client, opts: &Options) -> (Controller<Service>, Arc<Ctx>) {
    let config = ControllerConfig {
        concurrency: opts.concurrency,
        ..ControllerConfig::default()
    };
    let mut c = opts.controller::<Service>("gc", client.clone(), config);
    let services = c.store();
    let owners = services.clone();
    let tasks = c.watches_indexed(
        Config::default(),
        Some(crate::replication::by_service),
        move |t: &Task, change| {
            if matters(t, change, owners.get(&t.spec.service).as_deref()) {
                vec![t.spec.service.clone()]
            } else {
                Vec::new()
            }
        },
    );
    let ctx = Arc::new(Ctx {
        client,
        services,
        tasks,
        history_limit: opts.history_limit,
        deleted: Mutex::new(HashMap::new()),
    });
    (c, ctx)
}

/// Whether a task change can give gc work: a deletion (a deleting service waits for its last
/// task; tombstones are dropped), a task of no live service or of an older one, a task no
/// longer wanted (desired past RUNNING: history, removed slots), or a new attempt in a slot
/// (it turns the slot's previous task into history). A wanted first attempt going through
/// its states — every event of a scale-up — cannot expire anything.
pub fn matters(t: &Task, change: Change, svc: Option<&Service>) -> bool {
    let Some(svc) = svc else {
        return true;
    };
    change == Change::Deleted
        || svc.metadata.deletion_timestamp.is_some()
        || !owned_by(t, svc)
        || t.spec.desired_state > TaskState::Running
        || t.spec.attempt > 1 && t.status.state == TaskState::New
}

pub async fn run(client: Client, opts: Options, stop: CancellationToken) {
    let (c, ctx) = controller(client, &opts);
    c.run(reconcile, ctx, stop).await;
}

pub async fn reconcile(name: String, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let tasks = ctx.tasks.indexed(&name);
    let svc = ctx.services.get(&name);
    let doomed: Vec<&Arc<Task>> = match &svc {
        None => tasks.iter().collect(),
        Some(s) if s.metadata.deletion_timestamp.is_some() => tasks.iter().collect(),
        Some(s) => {
            let (mine, orphans): (Vec<&Arc<Task>>, Vec<&Arc<Task>>) =
                tasks.iter().partition(|t| owned_by(t, s));
            let mut doomed = orphans;
            doomed.extend(expired(s, &mine, ctx.history_limit));
            doomed
        }
    };
    let doomed: Vec<&Arc<Task>> = {
        let mut deleted = ctx.deleted.lock().unwrap_or_else(|e| e.into_inner());
        let gone = deleted.entry(name.clone()).or_default();
        // What the cache no longer shows needs no tombstone.
        let present: HashSet<&str> = tasks.iter().map(|t| t.name()).collect();
        gone.retain(|(n, _)| present.contains(n.as_str()));
        let doomed = doomed
            .into_iter()
            .filter(|t| !gone.contains(&version(t)))
            .collect();
        if gone.is_empty() {
            deleted.remove(&name);
        }
        doomed
    };
    let result = delete_all(&ctx.client, &doomed).await;
    let done = match &result {
        Ok(()) => doomed.iter().map(|t| version(t)).collect(),
        Err(_) => Vec::new(),
    };
    if !done.is_empty() {
        let mut deleted = ctx.deleted.lock().unwrap_or_else(|e| e.into_inner());
        deleted.entry(name.clone()).or_default().extend(done);
    }
    result?;
    if let Some(s) = &svc {
        let has = s.metadata.finalizers.iter().any(|f| f == FINALIZER);
        let deleting = s.metadata.deletion_timestamp.is_some();
        // Deleting: let the service go once its tasks are (the deletes above come back as
        // events and run this again with an empty list).
        if deleting && has && tasks.is_empty() {
            let mut next = (**s).clone();
            next.metadata.finalizers.retain(|f| f != FINALIZER);
            update_finalizers(&ctx.client, &next).await?;
        } else if !deleting && !has {
            let mut next = (**s).clone();
            next.metadata.finalizers.push(FINALIZER.to_string());
            update_finalizers(&ctx.client, &next).await?;
        }
    }
    Ok(Action::await_change())
}

/// A task's name and version: what a tombstone remembers.
fn version(t: &Task) -> (String, String) {
    (t.name().to_string(), t.metadata.resource_version.clone())
}

/// Tasks deleted per transaction (below etcd's default limit of 128 operations).
const DELETE_BATCH: usize = 100;

/// Deletes `tasks`, each only if unchanged since read: in transactions of `DELETE_BATCH`,
/// falling back to one by one when a batch loses a race (a task changed or is already gone).
async fn delete_all(client: &Client, tasks: &[&Arc<Task>]) -> Result<(), Error> {
    let rv = |t: &Task| Some(t.metadata.resource_version.clone()).filter(|r| !r.is_empty());
    for chunk in tasks.chunks(DELETE_BATCH) {
        if chunk.len() > 1 {
            let ops: Vec<Operation> = chunk
                .iter()
                .map(|t| Operation::delete::<Task>(t.name(), rv(t)))
                .collect();
            match client.transaction(&ops).await {
                Ok(_) => {
                    tracing::info!(tasks = chunk.len(), first = %chunk[0].name(), "deleted tasks");
                    continue;
                }
                Err(e) if e.is_conflict() || e.is_not_found() => {}
                Err(source) => {
                    return Err(Error::Delete {
                        task: chunk[0].name().to_string(),
                        source,
                    });
                }
            }
        }
        let mut first_err = None;
        for t in chunk {
            match client.delete::<Task>(t.name(), rv(t).as_deref()).await {
                Ok(()) => tracing::info!(task = %t.name(), "deleted task"),
                Err(e) if e.is_not_found() => {}
                Err(source) => {
                    first_err.get_or_insert(Error::Delete {
                        task: t.name().to_string(),
                        source,
                    });
                }
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
    }
    Ok(())
}

async fn update_finalizers(client: &Client, svc: &Service) -> Result<(), Error> {
    match client.replace(svc).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(source) => Err(Error::Finalizer {
            service: svc.metadata.name.clone(),
            source,
        }),
    }
}

/// The tasks of a live service that history no longer needs.
pub fn expired<'a>(svc: &Service, tasks: &[&'a Arc<Task>], limit: usize) -> Vec<&'a Arc<Task>> {
    let generation = svc.metadata.generation;
    let job = svc.spec.mode.is_job();
    // Not (or no longer) on a node: an agent has nothing to stop.
    let stopped = |t: &Task| t.status.state.is_terminal() || t.status.state < TaskState::Assigned;
    let wanted = |t: &Task| {
        t.spec.desired_state <= TaskState::Running
            || (t.spec.desired_state == TaskState::Complete && !t.status.state.is_terminal())
    };
    let mut out = Vec::new();
    for (_, mut group) in by_slot(tasks.iter().copied()) {
        group.sort_by_key(|t| std::cmp::Reverse(t.spec.attempt));
        let newest = group[0];
        // A slot removed by scale down goes entirely once nothing in it runs.
        if newest.spec.desired_state == TaskState::Remove {
            if group.iter().all(|t| stopped(t)) {
                out.extend(group);
            }
            continue;
        }
        let finished = group.iter().skip(1).filter(|t| {
            !wanted(t)
                && stopped(t)
                && !(job
                    && t.spec.service_generation == generation
                    && t.status.state == TaskState::Complete)
        });
        // The newest task counts towards the limit when it is finished too.
        let room = if wanted(newest) {
            limit
        } else {
            limit.saturating_sub(1)
        };
        out.extend(finished.skip(room).copied());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replication::plan::fixtures::*;
    use swarm_api::ServiceMode;

    fn finished(svc: &Service, slot: u64, attempt: u64) -> Arc<Task> {
        let mut t = (*task(svc, slot, attempt, Some("a"), TaskState::Failed)).clone();
        t.spec.desired_state = TaskState::Shutdown;
        Arc::new(t)
    }

    fn names(v: &[&Arc<Task>]) -> Vec<String> {
        let mut n: Vec<String> = v.iter().map(|t| t.metadata.name.clone()).collect();
        n.sort();
        n
    }

    #[test]
    fn the_steps_of_a_first_attempt_give_gc_nothing_to_do() {
        let svc = service("web", ServiceMode::Replicated { replicas: 1 });
        let live = |state| (*task(&svc, 1, 1, Some("a"), state)).clone();
        for state in [
            TaskState::New,
            TaskState::Pending,
            TaskState::Assigned,
            TaskState::Running,
            TaskState::Failed,
        ] {
            assert!(
                !matters(&live(state), Change::Applied, Some(&svc)),
                "{state}"
            );
        }
        let t = live(TaskState::Running);
        // Deleted; of an unknown, deleting or newer service; no longer wanted; a new attempt.
        assert!(matters(&t, Change::Deleted, Some(&svc)));
        assert!(matters(&t, Change::Applied, None));
        let mut deleting = svc.clone();
        deleting.metadata.deletion_timestamp = Some(swarm_api::Timestamp::now());
        assert!(matters(&t, Change::Applied, Some(&deleting)));
        let mut newer = svc.clone();
        newer.metadata.uid = "uid-other".into();
        assert!(matters(&t, Change::Applied, Some(&newer)));
        let mut stopping = t.clone();
        stopping.spec.desired_state = TaskState::Shutdown;
        assert!(matters(&stopping, Change::Applied, Some(&svc)));
        let second = (*task(&svc, 1, 2, None, TaskState::New)).clone();
        assert!(matters(&second, Change::Applied, Some(&svc)));
    }

    #[test]
    fn keeps_the_newest_finished_tasks_per_slot() {
        let svc = service("web", ServiceMode::Replicated { replicas: 2 });
        let mut tasks: Vec<Arc<Task>> = (1..=8).map(|a| finished(&svc, 1, a)).collect();
        tasks.push(task(&svc, 1, 9, Some("a"), TaskState::Running));
        tasks.extend((1..=3).map(|a| finished(&svc, 2, a)));
        let refs: Vec<&Arc<Task>> = tasks.iter().collect();
        // Slot 1: 8 finished + 1 running, limit 5 → attempts 1..=3 go. Slot 2: 3 finished.
        assert_eq!(
            names(&expired(&svc, &refs, 5)),
            vec!["web.1.1", "web.1.2", "web.1.3"]
        );
        // Slot 2's newest is finished and counts: with limit 2, only attempt 1 goes.
        assert_eq!(
            names(&expired(&svc, &refs, 2)),
            vec![
                "web.1.1", "web.1.2", "web.1.3", "web.1.4", "web.1.5", "web.1.6", "web.2.1"
            ]
        );
    }

    #[test]
    fn a_removed_slot_goes_once_stopped() {
        let svc = service("web", ServiceMode::Replicated { replicas: 1 });
        let old = finished(&svc, 2, 1);
        let mut removing = (*task(&svc, 2, 2, Some("a"), TaskState::Running)).clone();
        removing.spec.desired_state = TaskState::Remove;
        let tasks = [old.clone(), Arc::new(removing.clone())];
        let refs: Vec<&Arc<Task>> = tasks.iter().collect();
        assert!(expired(&svc, &refs, 5).is_empty());
        removing.status.state = TaskState::Shutdown;
        let tasks = [old, Arc::new(removing)];
        let refs: Vec<&Arc<Task>> = tasks.iter().collect();
        assert_eq!(names(&expired(&svc, &refs, 5)), vec!["web.2.1", "web.2.2"]);
    }

    #[test]
    fn completions_of_a_job_are_kept() {
        let svc = service(
            "batch",
            ServiceMode::ReplicatedJob {
                max_concurrent: 1,
                total_completions: 9,
            },
        );
        let mut done = (*task(&svc, 1, 1, Some("a"), TaskState::Complete)).clone();
        done.spec.desired_state = TaskState::Complete;
        let tasks = [Arc::new(done)];
        let refs: Vec<&Arc<Task>> = tasks.iter().collect();
        assert!(expired(&svc, &refs, 0).is_empty());
    }
}
