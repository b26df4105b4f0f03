//! One task's runner: drives the task through ACCEPTED → PREPARING → READY → STARTING →
//! RUNNING and on to COMPLETE / FAILED / SHUTDOWN, or REJECTED when it cannot run here.
//!
//! The runner is level-triggered: each time it wakes (a runtime event for its container, a
//! new version of its task, or a periodic look) it inspects the container and takes the one
//! step the observed state calls for. Every step is idempotent, so a restarted agent resumes
//! from the task's recorded state and its container as found. A report never moves the
//! observed state backwards.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use swarm_api::{Task, TaskHealth, TaskState, TaskStatus, Timestamp};
use tokio::sync::watch;

use crate::events::{Events, TaskEvents};
use crate::reporter::Reporter;
use crate::runtime::{Assets, ContainerStatus, Observed, Runtime, RuntimeError};

/// How often a runner looks at its container without being woken.
const RESYNC: Duration = Duration::from_secs(15);

/// What runners share.
#[derive(Clone)]
pub struct RunnerCtx {
    pub rt: Arc<dyn Runtime>,
    /// The runtime's events, routed by task.
    pub events: Arc<Events>,
    pub reporter: Reporter,
    pub assets: Arc<RwLock<Assets>>,
}

/// The worker's handle on a runner: the latest task (`None`: unassigned — stop and remove).
pub struct RunnerHandle {
    pub tx: watch::Sender<Option<Arc<Task>>>,
    pub join: tokio::task::JoinHandle<()>,
}

pub fn spawn(ctx: RunnerCtx, task: Arc<Task>) -> RunnerHandle {
    // Subscribed before the runner starts, so no event of the task falls in between.
    let events = ctx.events.subscribe(&task.metadata.name);
    let (tx, rx) = watch::channel(Some(task));
    let join = tokio::spawn(run(ctx, rx, events));
    RunnerHandle { tx, join }
}

enum Next {
    /// Take the next step now.
    Again,
    /// Wait for an event, a task change or the periodic look.
    Wait,
    /// A temporary failure: wait a little, then try again.
    Retry,
}

/// The task's status as this runner last reported (or found) it.
struct Tracker {
    name: String,
    status: TaskStatus,
    reporter: Reporter,
    /// This runner has seen the task's container in STARTING or later: if it disappears now,
    /// it was removed, not "not created yet".
    seen_container: bool,
}

impl Tracker {
    fn state(&self) -> TaskState {
        self.status.state
    }

    fn report(&mut self, state: TaskState, message: &str, err: &str, seen: Option<&Observed>) {
        if state < self.status.state {
            return;
        }
        let mut s = self.status.clone();
        s.state = state;
        s.message = message.to_string();
        s.err = err.to_string();
        if let Some(o) = seen {
            s.container_id = o.id.clone();
            s.health = o.health;
            s.ports = o.ports.clone();
            if o.status == ContainerStatus::Exited {
                s.exit_code = o.exit_code;
            }
        }
        let mut cmp = s.clone();
        cmp.timestamp = self.status.timestamp;
        if cmp == self.status {
            return;
        }
        s.timestamp = Some(Timestamp::now());
        tracing::info!(task = %self.name, state = %state, %message, %err, "task status");
        self.status = s.clone();
        self.reporter.report(&self.name, s);
    }
}

async fn run(ctx: RunnerCtx, mut rx: watch::Receiver<Option<Arc<Task>>>, mut events: TaskEvents) {
    let Some(first) = rx.borrow_and_update().clone() else {
        return;
    };
    let name = first.metadata.name.clone();
    let mut tr = Tracker {
        name: name.clone(),
        status: first.status.clone(),
        reporter: ctx.reporter.clone(),
        seen_container: false,
    };
    let mut last = first;
    let mut removed = false;
    let mut last_exit: Option<i64> = None;
    let mut backoff = Duration::from_millis(500);
    loop {
        let current = rx.borrow_and_update().clone();
        let Some(task) = current else {
            // No longer assigned here: stop and remove the container.
            if let Err(e) = ctx.rt.stop(&last).await {
                tracing::warn!(task = %name, error = %e, "stop failed");
            }
            if let Err(e) = ctx.rt.remove(&name).await {
                tracing::warn!(task = %name, error = %e, "remove failed");
            }
            return;
        };
        last = task.clone();
        let next = match step(&ctx, &task, &mut tr, &mut removed, last_exit).await {
            Ok(n) => n,
            Err(RuntimeError::Temporary(m)) => {
                tracing::warn!(task = %name, error = %m, "temporary failure; retrying");
                Next::Retry
            }
            Err(RuntimeError::Fatal(m)) => {
                if tr.state() < TaskState::Starting {
                    tr.report(TaskState::Rejected, "rejected", &m, None);
                } else {
                    tr.report(TaskState::Failed, "failed", &m, None);
                }
                Next::Again
            }
        };
        let wait = match next {
            Next::Again => {
                backoff = Duration::from_millis(500);
                continue;
            }
            Next::Wait => RESYNC,
            Next::Retry => {
                backoff = (backoff * 2).min(Duration::from_secs(10));
                backoff
            }
        };
        tokio::select! {
            r = rx.changed() => {
                if r.is_err() {
                    return; // the agent is shutting down: leave the container as it is
                }
            }
            ev = events.next() => {
                if ev.exit_code.is_some() {
                    last_exit = ev.exit_code;
                }
            }
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

async fn step(
    ctx: &RunnerCtx,
    task: &Task,
    tr: &mut Tracker,
    removed: &mut bool,
    last_exit: Option<i64>,
) -> Result<Next, RuntimeError> {
    let desired = task.spec.desired_state;
    let state = tr.state();
    if state.is_terminal() {
        if desired >= TaskState::Remove && !*removed {
            ctx.rt.remove(&task.metadata.name).await?;
            *removed = true;
        }
        return Ok(Next::Wait);
    }
    if desired >= TaskState::Shutdown {
        if let Some(o) = ctx.rt.inspect(task).await?
            && o.status == ContainerStatus::Running
        {
            ctx.rt.stop(task).await?;
        }
        let seen = ctx.rt.inspect(task).await?;
        tr.report(TaskState::Shutdown, "shutdown", "", seen.as_ref());
        return Ok(Next::Again);
    }
    match state {
        TaskState::New | TaskState::Pending | TaskState::Assigned => {
            tr.report(TaskState::Accepted, "accepted", "", None);
            Ok(Next::Again)
        }
        TaskState::Accepted => {
            tr.report(TaskState::Preparing, "preparing", "", None);
            Ok(Next::Again)
        }
        TaskState::Preparing => {
            let assets = ctx.assets.read().unwrap_or_else(|p| p.into_inner()).clone();
            ctx.rt.prepare(task, &assets).await?;
            tr.report(TaskState::Ready, "prepared", "", None);
            Ok(Next::Again)
        }
        TaskState::Ready => {
            if desired < TaskState::Running {
                return Ok(Next::Wait); // prepared and held
            }
            tr.report(TaskState::Starting, "starting", "", None);
            Ok(Next::Again)
        }
        TaskState::Starting | TaskState::Running => observe(ctx, task, tr, last_exit).await,
        _ => Ok(Next::Wait),
    }
}

/// STARTING or RUNNING: look at the container and act on what is there.
async fn observe(
    ctx: &RunnerCtx,
    task: &Task,
    tr: &mut Tracker,
    last_exit: Option<i64>,
) -> Result<Next, RuntimeError> {
    let state = tr.state();
    let Some(seen) = ctx.rt.inspect(task).await? else {
        if state == TaskState::Starting && !tr.seen_container && tr.status.container_id.is_empty() {
            // Not created yet (a restarted agent resuming a task, say): prepare, then start.
            // A container that was there and is gone was removed: the task fails below and
            // is replaced, as in Swarm (a task never gets a second container).
            let assets = ctx.assets.read().unwrap_or_else(|p| p.into_inner()).clone();
            ctx.rt.prepare(task, &assets).await?;
            return Ok(Next::Again);
        }
        let err = match last_exit {
            Some(c) if c != 0 => format!("task: non-zero exit ({c}): container removed"),
            _ => "task: container removed".to_string(),
        };
        tr.status.exit_code = last_exit.or(tr.status.exit_code);
        tr.report(TaskState::Failed, "failed", &err, None);
        return Ok(Next::Again);
    };
    tr.seen_container = true;
    match seen.status {
        ContainerStatus::Created => {
            ctx.rt.start(task).await?;
            Ok(Next::Again)
        }
        ContainerStatus::Running => match seen.health {
            Some(TaskHealth::Unhealthy) => {
                ctx.rt.stop(task).await?;
                let after = ctx.rt.inspect(task).await?;
                tr.report(
                    TaskState::Failed,
                    "failed",
                    "unhealthy container",
                    after.as_ref().or(Some(&seen)),
                );
                Ok(Next::Again)
            }
            Some(TaskHealth::Starting) => Ok(Next::Wait),
            _ => {
                tr.report(TaskState::Running, "started", "", Some(&seen));
                Ok(Next::Wait)
            }
        },
        ContainerStatus::Exited => {
            let code = seen.exit_code.unwrap_or(0);
            if code == 0 {
                tr.report(TaskState::Complete, "finished", "", Some(&seen));
            } else {
                let err = format!("task: non-zero exit ({code})");
                tr.report(TaskState::Failed, "failed", &err, Some(&seen));
            }
            Ok(Next::Again)
        }
        ContainerStatus::Other(_) => Ok(Next::Wait),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashMap};
    use std::sync::Mutex;

    use async_trait::async_trait;
    use swarm_api::TaskSpec;
    use tokio::sync::broadcast;

    use super::*;
    use crate::runtime::{Managed, NodeInfo, RuntimeEvent};

    /// A runtime whose containers start and then stay `health: starting` (a healthcheck that
    /// has not passed yet), and can be removed behind the runner's back.
    #[derive(Default)]
    struct Scripted {
        containers: Mutex<HashMap<String, (String, ContainerStatus)>>,
        created: Mutex<u32>,
        events: Mutex<Option<broadcast::Sender<RuntimeEvent>>>,
    }

    impl Scripted {
        fn sender(&self) -> broadcast::Sender<RuntimeEvent> {
            self.events
                .lock()
                .unwrap()
                .get_or_insert_with(|| broadcast::channel(16).0)
                .clone()
        }

        /// `docker rm -f`, and the event Docker sends.
        fn remove_behind_the_back(&self, task: &str) {
            self.containers.lock().unwrap().remove(task);
            let _ = self.sender().send(RuntimeEvent {
                task: task.into(),
                exit_code: Some(137),
            });
        }
    }

    #[async_trait]
    impl Runtime for Scripted {
        async fn describe(&self) -> Result<NodeInfo, RuntimeError> {
            Ok(NodeInfo::default())
        }
        fn events(&self) -> broadcast::Receiver<RuntimeEvent> {
            self.sender().subscribe()
        }
        async fn list(&self) -> Result<Vec<Managed>, RuntimeError> {
            Ok(Vec::new())
        }
        async fn prepare(&self, task: &Task, _: &Assets) -> Result<(), RuntimeError> {
            let mut c = self.containers.lock().unwrap();
            if !c.contains_key(&task.metadata.name) {
                let mut n = self.created.lock().unwrap();
                *n += 1;
                c.insert(
                    task.metadata.name.clone(),
                    (format!("c{n}"), ContainerStatus::Created),
                );
            }
            Ok(())
        }
        async fn start(&self, task: &Task) -> Result<(), RuntimeError> {
            if let Some(c) = self.containers.lock().unwrap().get_mut(&task.metadata.name) {
                c.1 = ContainerStatus::Running;
            }
            Ok(())
        }
        async fn inspect(&self, task: &Task) -> Result<Option<Observed>, RuntimeError> {
            Ok(self
                .containers
                .lock()
                .unwrap()
                .get(&task.metadata.name)
                .map(|(id, status)| Observed {
                    id: id.clone(),
                    status: status.clone(),
                    exit_code: None,
                    health: Some(TaskHealth::Starting),
                    error: String::new(),
                    ports: Vec::new(),
                }))
        }
        async fn stop(&self, _: &Task) -> Result<(), RuntimeError> {
            Ok(())
        }
        async fn remove(&self, task: &str) -> Result<(), RuntimeError> {
            self.containers.lock().unwrap().remove(task);
            Ok(())
        }
        async fn prune_networks(&self, _: &BTreeSet<String>) -> Result<(), RuntimeError> {
            Ok(())
        }
    }

    async fn state_becomes(reporter: &Reporter, want: TaskState) -> TaskStatus {
        let mut seen = Vec::new();
        let r = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                for (_, _, s) in reporter.take(100) {
                    if s.state == want {
                        return s;
                    }
                    seen.push(s.state);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        r.unwrap_or_else(|_| panic!("never {want}; saw {seen:?}"))
    }

    /// A container removed while its task is STARTING (health check not passed yet) fails the
    /// task; the runner does not create a second container for it.
    #[tokio::test]
    async fn a_container_removed_while_starting_fails_the_task() {
        let rt = Arc::new(Scripted::default());
        let reporter = Reporter::default();
        let ctx = RunnerCtx {
            events: Arc::new(Events::start(rt.events())),
            rt: rt.clone(),
            reporter: reporter.clone(),
            assets: Arc::default(),
        };
        let mut task = Task::new(
            "web.1.1",
            TaskSpec {
                service: "web".into(),
                slot: Some(1),
                ..Default::default()
            },
        );
        task.status.state = TaskState::Assigned;
        let handle = spawn(ctx, Arc::new(task));
        state_becomes(&reporter, TaskState::Starting).await;
        // Started, health still starting.
        tokio::time::timeout(Duration::from_secs(10), async {
            while rt
                .containers
                .lock()
                .unwrap()
                .get("web.1.1")
                .map(|c| c.1.clone())
                != Some(ContainerStatus::Running)
            {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the container starts");
        // Let the runner look at the started container once more.
        let _ = rt.sender().send(RuntimeEvent {
            task: "web.1.1".into(),
            exit_code: None,
        });
        tokio::time::sleep(Duration::from_millis(200)).await;

        rt.remove_behind_the_back("web.1.1");
        let failed = state_becomes(&reporter, TaskState::Failed).await;
        assert_eq!(failed.err, "task: non-zero exit (137): container removed");
        assert_eq!(
            *rt.created.lock().unwrap(),
            1,
            "a second container was created"
        );
        assert!(rt.containers.lock().unwrap().is_empty());
        handle.join.abort();
    }
}
