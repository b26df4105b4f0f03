//! The worker: the node's assignments applied to runners. A complete set replaces what the
//! node has — new tasks get a runner, tasks no longer listed are stopped and removed, and
//! containers no task claims (left from before a restart) are removed; incremental changes
//! add, update or remove one task or asset at a time.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use swarm_api::{Config, Network, Secret, Service, Task};
use swarm_proto::v1::{AssignmentChange, ObjectKind, assignment_change::Action};

use crate::events::Events;
use crate::reporter::Reporter;
use crate::runner::{self, RunnerCtx, RunnerHandle};
use crate::runtime::{Assets, Runtime};

/// One decoded change.
enum Change {
    Task(Arc<Task>),
    TaskGone(String),
    Network(String, Option<Network>),
    Secret(String, Option<Secret>),
    Config(String, Option<Config>),
    Service(String, Option<Box<Service>>),
}

fn decode<T: serde::de::DeserializeOwned>(c: &AssignmentChange) -> Option<T> {
    match serde_json::from_slice(&c.object) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(name = %c.name, error = %e, "undecodable assignment skipped");
            None
        }
    }
}

fn decode_change(c: &AssignmentChange) -> Option<Change> {
    let remove = c.action == Action::Remove as i32;
    let name = c.name.clone();
    Some(match ObjectKind::try_from(c.kind).ok()? {
        ObjectKind::Task if remove => Change::TaskGone(name),
        ObjectKind::Task => Change::Task(Arc::new(decode(c)?)),
        ObjectKind::Network => Change::Network(name, if remove { None } else { decode(c) }),
        ObjectKind::Secret => Change::Secret(name, if remove { None } else { decode(c) }),
        ObjectKind::Config => Change::Config(name, if remove { None } else { decode(c) }),
        ObjectKind::Service => Change::Service(name, if remove { None } else { decode(c) }),
        ObjectKind::Unspecified => return None,
    })
}

/// The node's runners.
pub struct Worker {
    ctx: RunnerCtx,
    runners: HashMap<String, RunnerHandle>,
    tasks: HashMap<String, Arc<Task>>,
}

impl Worker {
    pub fn new(rt: Arc<dyn Runtime>, reporter: Reporter) -> Worker {
        Worker {
            ctx: RunnerCtx {
                events: Arc::new(Events::start(rt.events())),
                rt,
                reporter,
                assets: Arc::new(RwLock::new(Assets::default())),
            },
            runners: HashMap::new(),
            tasks: HashMap::new(),
        }
    }

    /// The tasks the node has now.
    pub fn task_names(&self) -> BTreeSet<String> {
        self.tasks.keys().cloned().collect()
    }

    fn set_asset(&self, change: Change) {
        let mut a = self.ctx.assets.write().unwrap_or_else(|p| p.into_inner());
        match change {
            Change::Network(n, Some(v)) => {
                a.networks.insert(n, v);
            }
            Change::Network(n, None) => {
                a.networks.remove(&n);
            }
            Change::Secret(n, Some(v)) => {
                a.secrets.insert(n, v);
            }
            Change::Secret(n, None) => {
                a.secrets.remove(&n);
            }
            Change::Config(n, Some(v)) => {
                a.configs.insert(n, v);
            }
            Change::Config(n, None) => {
                a.configs.remove(&n);
            }
            Change::Service(n, Some(v)) => {
                a.services.insert(n, *v);
            }
            Change::Service(n, None) => {
                a.services.remove(&n);
            }
            Change::Task(_) | Change::TaskGone(_) => {}
        }
    }

    fn upsert(&mut self, task: Arc<Task>) {
        let name = task.metadata.name.clone();
        self.tasks.insert(name.clone(), task.clone());
        if let Some(h) = self.runners.get(&name)
            && !h.join.is_finished()
        {
            h.tx.send_replace(Some(task));
            return;
        }
        self.runners
            .insert(name, runner::spawn(self.ctx.clone(), task));
    }

    fn unassign(&mut self, name: &str) {
        self.tasks.remove(name);
        if let Some(h) = self.runners.remove(name) {
            // The runner stops and removes the container, then ends on its own.
            h.tx.send_replace(None);
        }
    }

    /// Replaces everything with a complete set.
    pub async fn complete(&mut self, changes: Vec<AssignmentChange>) {
        let decoded: Vec<Change> = changes.iter().filter_map(decode_change).collect();
        *self.ctx.assets.write().unwrap_or_else(|p| p.into_inner()) = Assets::default();
        let mut listed = BTreeSet::new();
        let mut tasks = Vec::new();
        for c in decoded {
            match c {
                Change::Task(t) => {
                    listed.insert(t.metadata.name.clone());
                    tasks.push(t);
                }
                Change::TaskGone(_) => {}
                other => self.set_asset(other),
            }
        }
        let gone: Vec<String> = self
            .tasks
            .keys()
            .filter(|n| !listed.contains(*n))
            .cloned()
            .collect();
        for n in gone {
            self.unassign(&n);
        }
        for t in tasks {
            self.upsert(t);
        }
        // Containers no task claims: left from before a restart, or from removed tasks.
        match self.ctx.rt.list().await {
            Ok(managed) => {
                for m in managed {
                    if !listed.contains(&m.task) && !self.runners.contains_key(&m.task) {
                        tracing::info!(task = %m.task, id = %m.id, "removing unclaimed container");
                        if let Err(e) = self.ctx.rt.remove(&m.task).await {
                            tracing::warn!(task = %m.task, error = %e, "cannot remove");
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot list containers"),
        }
        tracing::info!(
            tasks = self.tasks.len(),
            "assignments: complete set applied"
        );
        self.maintain().await;
    }

    /// Applies incremental changes.
    pub fn incremental(&mut self, changes: Vec<AssignmentChange>) {
        for c in changes.iter().filter_map(decode_change) {
            match c {
                Change::Task(t) => self.upsert(t),
                Change::TaskGone(n) => self.unassign(&n),
                other => self.set_asset(other),
            }
        }
    }

    /// Housekeeping: forget finished runners, remove networks no task here needs.
    pub async fn maintain(&mut self) {
        self.runners.retain(|_, h| !h.join.is_finished());
        let in_use: BTreeSet<String> = self
            .tasks
            .values()
            .flat_map(|t| {
                crate::runtime::docker::spec::attachments(t)
                    .into_iter()
                    .map(|(n, _, _)| n)
            })
            .collect();
        if let Err(e) = self.ctx.rt.prune_networks(&in_use).await {
            tracing::debug!(error = %e, "network prune failed");
        }
    }

    /// Lets go of every runner without touching containers (agent shutdown).
    pub fn detach(&mut self) {
        for (_, h) in self.runners.drain() {
            h.join.abort();
        }
    }
}
