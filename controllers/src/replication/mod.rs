//! The replication controller: keeps each service's tasks as its mode says — N slots
//! (replicated), one per eligible node (global), or runs to completion (jobs) — with the
//! restart policy, and replaces tasks of down or drained nodes.
//!
//! One reconcile per service (the key is its name), woken by the service, by a task change
//! that can change its plan or counts (`matters`), and by node changes that matter: read the
//! service, its tasks and the nodes from the caches, let the pure planner for its mode decide (`replicated`, `global`,
//! `jobs`), carry out the plan's writes, then report `status.replicas` and
//! `status.observedGeneration`. Every write is safe against a stale cache and against a second
//! replica: creates are create-if-absent on deterministic names, and the other writes are
//! conditional on the `resourceVersion` read (a conflict retries the whole reconcile).
//!
//! The task cache lags behind the controller's own creates (at 100,000 tasks, by seconds), and
//! task events re-run the reconcile; a plan made from the lagging cache would create the
//! same tasks again, each refused as `AlreadyExists` one request at a time. So, like
//! placement's `assumed`, the controller lays the tasks it created over the cache until the
//! cache has them (or has moved past their revision without them: deleted meanwhile).

pub mod eligible;
pub mod global;
pub mod jobs;
pub mod plan;
pub mod replicated;
pub mod restart;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use swarm_api::{Node, ReplicaStatus, Service, ServiceMode, Task, TaskState};
use swarm_client::runtime::watcher::Config;
use swarm_client::runtime::{Action, Change, Controller, ControllerConfig, ReconcileError, Store};
use swarm_client::{Client, ClientError, Operation};
use tokio_util::sync::CancellationToken;

use crate::Options;
use crate::placement::batch;
use plan::{Inputs, Plan, Write};

/// Writes in flight at once while carrying out one plan.
const PARALLEL_WRITES: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("task {task}: {source}")]
    Task {
        task: String,
        #[source]
        source: ClientError,
    },
    #[error("status of service {service}: {source}")]
    Status {
        service: String,
        #[source]
        source: ClientError,
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

/// What reconcile reads and writes through.
pub struct Ctx {
    pub client: Client,
    pub services: Store<Service>,
    pub tasks: Store<Task>,
    pub nodes: Store<Node>,
    /// Tasks created here that the cache may not hold yet, by service.
    assumed: Mutex<HashMap<String, Vec<Assumed>>>,
}

/// A task this controller created, as the server stored it.
struct Assumed {
    task: Arc<Task>,
    revision: u64,
    at: Instant,
}

/// How long a created task is assumed at most without the cache showing it (a bound for the
/// unlikely case of a task deleted before the cache saw it and no later event of its service).
const ASSUME_FOR: Duration = Duration::from_secs(60);

/// Builds the controller: services are primary, tasks map to their service, and a node
/// change that matters (state, availability, labels — not a heartbeat) maps to every service.
pub fn controller(client: Client, opts: &Options) -> (Controller<Service>, Arc<Ctx>) {
    let config = ControllerConfig {
        concurrency: opts.concurrency,
        ..ControllerConfig::default()
    };
    let mut c = opts.controller::<Service>("replication", client.clone(), config);
    let services = c.store();
    let tasks = c.watches_indexed(Config::default(), Some(by_service), |t: &Task, change| {
        if matters(t, change) {
            vec![t.spec.service.clone()]
        } else {
            Vec::new()
        }
    });
    let all = services.clone();
    let seen: Mutex<HashMap<String, String>> = Mutex::new(HashMap::new());
    let nodes = c.watches_changes(Config::default(), move |n: &Node, change| {
        let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
        let changed = match change {
            Change::Deleted => {
                seen.remove(&n.metadata.name);
                true
            }
            Change::Applied => {
                let sig = node_signature(n);
                seen.insert(n.metadata.name.clone(), sig.clone()).as_ref() != Some(&sig)
            }
        };
        if changed { all.keys() } else { Vec::new() }
    });
    let ctx = Arc::new(Ctx {
        client,
        services,
        tasks,
        nodes,
        assumed: Mutex::new(HashMap::new()),
    });
    (c, ctx)
}

/// Whether a task change can change its service's plan or `status.replicas`; the others
/// (a task on its way from PENDING to RUNNING: allocated, bound, accepted, preparing...)
/// wake nothing, so a service of 100,000 tasks is not re-planned for each of those steps.
///
/// What the planners read of a task: its slot and attempt (fixed at creation: NEW), its
/// desired state (when not RUNNING, shown), whether it runs (RUNNING) or ended (terminal)
/// for counts and the restart policy, and its node once bound (ASSIGNED) for node checks.
/// Judged on the new version alone: every change that matters leaves one of these marks.
pub fn matters(t: &Task, change: Change) -> bool {
    change == Change::Deleted
        || t.spec.desired_state != TaskState::Running
        || t.status.state.is_terminal()
        || matches!(
            t.status.state,
            TaskState::New | TaskState::Assigned | TaskState::Running
        )
}

/// The task cache's index: tasks by service name.
pub fn by_service(t: &Task) -> Option<String> {
    Some(t.spec.service.clone())
}

/// What about a node decides where tasks may run.
fn node_signature(n: &Node) -> String {
    format!(
        "{:?}|{:?}|{:?}|{:?}|{:?}|{}|{:?}",
        n.status.state,
        n.spec.availability,
        n.spec.role,
        n.spec.labels,
        n.status.engine.labels,
        n.status.hostname,
        n.status.platform
    )
}

/// Runs the controller until `stop`.
pub async fn run(client: Client, opts: Options, stop: CancellationToken) {
    let (c, ctx) = controller(client, &opts);
    c.run(reconcile, ctx, stop).await;
}

/// Reconciles service `name`.
pub async fn reconcile(name: String, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let Some(svc) = ctx.services.get(&name) else {
        // Deleted: gc removes its tasks.
        return Ok(Action::await_change());
    };
    if svc.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let all = with_assumed(&ctx, &name, ctx.tasks.indexed(&name));
    let tasks = plan::tasks_of(&svc, &all);
    let nodes: HashMap<String, Arc<Node>> = ctx
        .nodes
        .state()
        .into_iter()
        .map(|n| (n.metadata.name.clone(), n))
        .collect();
    let inp = Inputs {
        nodes: &nodes,
        now: SystemTime::now(),
    };
    let plan = match svc.spec.mode {
        ServiceMode::Replicated { replicas } => replicated::plan(&svc, replicas, &tasks, &inp),
        ServiceMode::Global {} => global::plan(&svc, &tasks, &inp, false),
        ServiceMode::ReplicatedJob {
            max_concurrent,
            total_completions,
        } => jobs::plan(&svc, max_concurrent, total_completions, &tasks, &inp),
        ServiceMode::GlobalJob {} => global::plan(&svc, &tasks, &inp, true),
    };
    if !plan.writes.is_empty() {
        tracing::debug!(service = %name, writes = plan.writes.len(), "replication plan");
    }
    let created = execute(&ctx.client, &plan.writes).await;
    if !created.tasks.is_empty() {
        let at = Instant::now();
        ctx.assumed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name.clone())
            .or_default()
            .extend(created.tasks.into_iter().map(|(task, revision)| Assumed {
                task: Arc::new(task),
                revision,
                at,
            }));
    }
    created.result?;
    write_status(&ctx.client, &svc, &plan).await?;
    Ok(plan
        .requeue
        .map_or_else(Action::await_change, Action::requeue))
}

/// The cached tasks of `service` with the ones created here laid over; forgets a created task
/// once the cache has it, or has a task of the service at a later revision without it.
fn with_assumed(ctx: &Ctx, service: &str, mut cached: Vec<Arc<Task>>) -> Vec<Arc<Task>> {
    let mut assumed = ctx.assumed.lock().unwrap_or_else(|e| e.into_inner());
    let Some(mine) = assumed.get_mut(service) else {
        return cached;
    };
    let seen = cached
        .iter()
        .map(|t| batch::revision(&t.metadata.resource_version))
        .max()
        .unwrap_or(0);
    let names: HashSet<&str> = cached.iter().map(|t| t.metadata.name.as_str()).collect();
    // A batch of creates is one revision, whose events the cache applies one at a time: a
    // cache at that revision may hold only part of the batch. Only a later revision proves
    // it has applied all of it.
    mine.retain(|a| {
        !names.contains(a.task.metadata.name.as_str())
            && a.revision >= seen
            && a.at.elapsed() < ASSUME_FOR
    });
    let extra: Vec<Arc<Task>> = mine.iter().map(|a| a.task.clone()).collect();
    if mine.is_empty() {
        assumed.remove(service);
    }
    drop(names);
    cached.extend(extra);
    cached
}

/// What `execute` did: the first error, if any, and the tasks it created with the revision
/// of their creation.
pub struct Executed {
    pub result: Result<(), Error>,
    pub tasks: Vec<(Task, u64)>,
}

/// Carries out `writes`, several at a time; returns the first error after trying all.
///
/// Creates go in transactions of up to `CREATE_BATCH` (one store commit for many tasks: a
/// scale-up of thousands is bound by commits, not by requests). A batch that loses a race on
/// one name (`AlreadyExists`) is retried task by task, so the others still get created.
pub async fn execute(client: &Client, writes: &[Write]) -> Executed {
    let mut jobs: Vec<Job> = Vec::new();
    let mut batch: Vec<Task> = Vec::new();
    for w in writes {
        match w {
            Write::Create(t) => {
                batch.push((**t).clone());
                if batch.len() == CREATE_BATCH {
                    jobs.push(Job::Creates(std::mem::take(&mut batch)));
                }
            }
            other => jobs.push(Job::One(other.clone())),
        }
    }
    if !batch.is_empty() {
        jobs.push(Job::Creates(batch));
    }
    // Owned items and futures: a closure over borrowed ones is not `Send` for every lifetime.
    let results: Vec<Result<Vec<(Task, u64)>, Error>> = futures::stream::iter(jobs)
        .map(|job| {
            let client = client.clone();
            async move {
                match job {
                    Job::One(w) => apply(&client, &w).await.map(|()| Vec::new()),
                    Job::Creates(tasks) => create_all(&client, tasks).await,
                }
            }
        })
        .buffer_unordered(PARALLEL_WRITES)
        .collect()
        .await;
    let mut out = Executed {
        result: Ok(()),
        tasks: Vec::new(),
    };
    for r in results {
        match r {
            Ok(created) => out.tasks.extend(created),
            Err(e) => {
                if out.result.is_ok() {
                    out.result = Err(e);
                }
            }
        }
    }
    out
}

/// Tasks created per transaction (below etcd's default limit of 128 operations).
const CREATE_BATCH: usize = 100;

enum Job {
    One(Write),
    Creates(Vec<Task>),
}

/// Creates `tasks` in one transaction; returns them as stored, with the commit's revision.
async fn create_all(client: &Client, tasks: Vec<Task>) -> Result<Vec<(Task, u64)>, Error> {
    if let [one] = tasks.as_slice() {
        return apply(client, &Write::Create(Box::new(one.clone())))
            .await
            .map(|()| Vec::new());
    }
    let first = tasks
        .first()
        .map(|t| t.metadata.name.clone())
        .unwrap_or_default();
    let ops: Vec<Operation> = tasks
        .iter()
        .map(|t| {
            Operation::create(t).map_err(|source| Error::Encode {
                task: t.metadata.name.clone(),
                source,
            })
        })
        .collect::<Result<_, _>>()?;
    match client.transaction(&ops).await {
        Ok(resp) => {
            tracing::info!(tasks = tasks.len(), first = %first, "created tasks");
            let revision = batch::revision(&resp.resource_version);
            Ok(resp
                .results
                .into_iter()
                .filter_map(|v| serde_json::from_value::<Task>(v).ok())
                .map(|t| (t, revision))
                .collect())
        }
        Err(e) if e.is_already_exists() || e.is_conflict() => {
            tracing::debug!(tasks = tasks.len(), first = %first, error = %e, "batch create lost a race; creating one by one");
            let mut result = Ok(());
            for t in tasks {
                let r = apply(client, &Write::Create(Box::new(t))).await;
                if result.is_ok() {
                    result = r;
                }
            }
            result.map(|()| Vec::new())
        }
        Err(source) => Err(Error::Task {
            task: first,
            source,
        }),
    }
}

async fn apply(client: &Client, w: &Write) -> Result<(), Error> {
    let err = |task: &str| {
        let task = task.to_string();
        move |source| Error::Task { task, source }
    };
    match w {
        Write::Create(t) => match client.create(t.as_ref()).await {
            Ok(_) => {
                tracing::info!(task = %t.metadata.name, "created task");
                Ok(())
            }
            // Someone (a stale view of ours, or another replica) made it first.
            Err(e) if e.is_already_exists() => Ok(()),
            Err(e) => Err(err(&t.metadata.name)(e)),
        },
        Write::SetDesired { task, desired } => {
            let mut t = (**task).clone();
            t.spec.desired_state = *desired;
            match client.replace(&t).await {
                Ok(_) => {
                    tracing::info!(task = %t.metadata.name, desired = %desired, "set desired state");
                    Ok(())
                }
                Err(e) if e.is_not_found() => Ok(()),
                Err(e) => Err(err(&t.metadata.name)(e)),
            }
        }
        Write::Replace { old, new } => {
            let mut stopped = (**old).clone();
            stopped.spec.desired_state = TaskState::Shutdown;
            let encode = |source| Error::Encode {
                task: new.metadata.name.clone(),
                source,
            };
            let ops = vec![
                Operation::update(&stopped).map_err(encode)?,
                Operation::create(new.as_ref()).map_err(encode)?,
            ];
            client
                .transaction(&ops)
                .await
                .map_err(err(&new.metadata.name))?;
            tracing::info!(old = %old.metadata.name, new = %new.metadata.name, "replaced task");
            Ok(())
        }
    }
}

/// Writes `status.replicas` and `status.observedGeneration` when they changed. The update
/// controller writes the same status (`updateStatus`); a write that loses to it re-reads the
/// service and tries again (a few times) rather than failing the whole reconcile into backoff.
async fn write_status(client: &Client, svc: &Service, plan: &Plan) -> Result<(), Error> {
    let replicas = ReplicaStatus {
        desired: plan.desired,
        running: plan.running,
        completed: plan.completed,
    };
    let generation = svc.metadata.generation;
    let mut current = svc.clone();
    let mut attempt = 0;
    loop {
        if current.status.replicas == replicas && current.status.observed_generation == generation {
            return Ok(());
        }
        let mut next = current.clone();
        next.status.replicas = replicas.clone();
        next.status.observed_generation = generation;
        let err = |source| Error::Status {
            service: svc.metadata.name.clone(),
            source,
        };
        match client.replace_status(&next).await {
            Ok(_) => return Ok(()),
            Err(e) if e.is_conflict() && attempt < STATUS_ATTEMPTS => {
                attempt += 1;
                current = client
                    .get::<Service>(&svc.metadata.name)
                    .await
                    .map_err(err)?;
                if current.metadata.uid != svc.metadata.uid {
                    return Ok(()); // deleted and made again: its own reconcile follows
                }
            }
            Err(e) => return Err(err(e)),
        }
    }
}

/// Tries of a status write that keeps losing to other writers of the service status.
const STATUS_ATTEMPTS: u32 = 3;

/// Tasks of one service grouped by slot (replicated) or node (global): the unit of history.
pub fn slot_key(t: &Task) -> String {
    match (t.spec.slot, &t.spec.node_name) {
        (Some(s), _) => s.to_string(),
        (None, Some(n)) => n.clone(),
        (None, None) => String::new(),
    }
}

/// Groups `tasks` by `slot_key`.
pub fn by_slot<'a>(
    tasks: impl IntoIterator<Item = &'a Arc<Task>>,
) -> BTreeMap<String, Vec<&'a Arc<Task>>> {
    let mut m: BTreeMap<String, Vec<&Arc<Task>>> = BTreeMap::new();
    for t in tasks {
        m.entry(slot_key(t)).or_default().push(t);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use plan::fixtures::{service, task};
    use swarm_api::ServiceMode;
    use swarm_api::TaskState::*;

    const LIFE: [TaskState; 9] = [
        New, Pending, Assigned, Accepted, Preparing, Ready, Starting, Running, Failed,
    ];

    #[test]
    fn a_task_wakes_its_service_only_at_the_steps_that_change_slots_or_counts() {
        let svc = service("web", ServiceMode::Replicated { replicas: 1 });
        let at = |state| (*task(&svc, 1, 1, Some("n1"), state)).clone();
        let woke: Vec<TaskState> = LIFE
            .into_iter()
            .filter(|s| matters(&at(*s), Change::Applied))
            .collect();
        assert_eq!(woke, vec![New, Assigned, Running, Failed]);
        // Whatever its state: a deletion, or a desired state other than RUNNING.
        assert!(matters(&at(Preparing), Change::Deleted));
        for desired in [Ready, Shutdown, Remove, Complete] {
            let mut t = at(Preparing);
            t.spec.desired_state = desired;
            assert!(matters(&t, Change::Applied), "desired {desired}");
        }
    }
}
