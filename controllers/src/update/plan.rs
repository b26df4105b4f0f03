//! The rolling-update decision for one service, pure: from the service and its tasks, what to
//! write next. Level-triggered — everything it needs is in the objects:
//!
//! * the update's state and start time are `status.updateStatus`;
//! * the templates the service ran are `status.revisions` (10 kept); a template that differs
//!   from the newest revision starts a new update (or, written together with
//!   `rollback_started`, a rollback);
//! * a slot is *dirty* when its wanted task (desired ≤ RUNNING, not finished) runs another
//!   template than the service's (SwarmKit's `IsTaskDirty`);
//! * the tasks the update created carry `swarm.update=<its startedAt>`; a slot is *in flight*
//!   while its task of this update has neither reached RUNNING nor ended (SwarmKit's worker
//!   waits for exactly that before taking the next slot);
//! * when a task reached RUNNING is its status timestamp while it runs; after it has ended,
//!   `seen_running` (what the controller's watch saw) is the only record.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use swarm_api::{
    FailureAction, Service, ServiceRevision, Task, TaskState, TaskTemplate, Timestamp,
    UpdateConfig, UpdateOrder, UpdateState, UpdateStatus,
};

use super::UPDATE_ANNOTATION;

/// Revisions kept in `status.revisions`.
pub const REVISIONS: usize = 10;

/// How long a stop-first successor waits for its predecessor to stop (SwarmKit: 1 min).
pub const STOP_WAIT: Duration = Duration::from_secs(60);

/// One write the update wants.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Replace a slot: stop `old` (desired SHUTDOWN, unless start-first) and create `new`, in
    /// one transaction.
    Replace {
        old: Box<Task>,
        new: Box<Task>,
        stop_old: bool,
    },
    /// Set a task's desired state (start a held successor, stop a replaced predecessor).
    Desire { task: Box<Task>, state: TaskState },
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// A new `status.updateStatus` / `status.revisions`, when they change.
    pub status: Option<(Option<UpdateStatus>, Vec<ServiceRevision>)>,
    /// Roll the spec back to this template (automatic rollback).
    pub rollback_to: Option<swarm_api::TaskTemplate>,
    pub steps: Vec<Step>,
    /// Look again after this long (delay, monitor, start deadline).
    pub requeue: Option<Duration>,
}

impl Plan {
    fn requeue_in(&mut self, d: Duration) {
        self.requeue = Some(self.requeue.map_or(d, |r| r.min(d)));
    }
}

/// A new update status; `dirty_slots` is carried over from the update it reports on, or
/// counted when an update starts.
fn status(state: UpdateState, message: &str, now: SystemTime, dirty_slots: u64) -> UpdateStatus {
    UpdateStatus {
        state,
        started_at: Some(Timestamp(now)),
        completed_at: None,
        message: message.to_string(),
        dirty_slots,
    }
}

/// What identifies an update on the tasks it created: its start time, as stored.
pub fn update_id(u: &UpdateStatus) -> String {
    u.started_at.map(|t| t.to_string()).unwrap_or_default()
}

/// Whether `t` was created by the update `id`.
fn of_update(t: &Task, id: &str) -> bool {
    t.metadata
        .annotations
        .get(UPDATE_ANNOTATION)
        .is_some_and(|v| v == id)
}

/// Ended without being asked to: a failure if it happened early enough.
fn ended_early(t: &Task) -> bool {
    matches!(
        t.status.state,
        TaskState::Failed | TaskState::Rejected | TaskState::Complete | TaskState::Orphaned
    ) || (t.status.state == TaskState::Shutdown && t.spec.desired_state <= TaskState::Running)
}

/// The revision list with the current template appended if it is new.
pub fn with_revision(svc: &Service, now: SystemTime) -> (Vec<ServiceRevision>, bool) {
    let mut revs = svc.status.revisions.clone();
    let current = &svc.spec.task_template;
    if revs.last().is_some_and(|r| &r.template == current) {
        return (revs, false);
    }
    revs.push(ServiceRevision {
        generation: svc.metadata.generation,
        template: current.clone(),
        created_at: Some(Timestamp(now)),
    });
    if revs.len() > REVISIONS {
        revs.drain(..revs.len() - REVISIONS);
    }
    (revs, true)
}

/// The template a rollback goes back to: the newest revision unlike the current template, or
/// the one of generation `to`.
pub fn rollback_target(svc: &Service, to: Option<i64>) -> Option<&ServiceRevision> {
    let current = &svc.spec.task_template;
    match to {
        Some(g) => svc.status.revisions.iter().find(|r| r.generation == g),
        None => svc
            .status
            .revisions
            .iter()
            .rev()
            .find(|r| &r.template != current),
    }
}

/// A slot: its wanted tasks (desired ≤ RUNNING, not finished) and all its tasks.
struct Slot<'a> {
    wanted: Vec<&'a Arc<Task>>,
    all: Vec<&'a Arc<Task>>,
}

/// The service's tasks by slot (replicated) or node (global).
fn slots_of<'a>(svc: &Service, tasks: &[&'a Arc<Task>]) -> BTreeMap<String, Slot<'a>> {
    let mut slots: BTreeMap<String, Slot> = BTreeMap::new();
    for t in tasks {
        let key = match (t.spec.slot, &t.spec.node_name) {
            (Some(s), _) => format!("{s:020}"),
            (None, Some(n)) if svc.spec.mode.is_global() => n.clone(),
            _ => continue,
        };
        let slot = slots.entry(key).or_insert(Slot {
            wanted: Vec::new(),
            all: Vec::new(),
        });
        slot.all.push(t);
        if t.spec.desired_state <= TaskState::Running && !t.status.state.is_terminal() {
            slot.wanted.push(t);
        }
    }
    slots
}

/// Whether the update has work in `s`: a wanted task of another template, none of this one.
fn needs_update(s: &Slot, template: &TaskTemplate) -> bool {
    s.wanted.iter().any(|t| &t.spec.template != template)
        && !s.wanted.iter().any(|t| &t.spec.template == template)
}

/// SwarmKit's `dirtySlots` for an update to `template`: slots with more than one wanted task,
/// or with one of another template. Counted when an update or rollback starts; the failure
/// ratio is over this number for the whole update.
pub fn dirty_count(svc: &Service, tasks: &[&Arc<Task>], template: &TaskTemplate) -> u64 {
    let n = slots_of(svc, tasks)
        .values()
        .filter(|s| s.wanted.len() > 1 || s.wanted.iter().any(|t| &t.spec.template != template))
        .count();
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// Decides the next writes. `tasks` are the service's tasks; `node_ok` says whether a node
/// can still run tasks (stop-first does not wait for a task on a dead node to stop);
/// `seen_running` says when the controller saw a task reach RUNNING, if it did.
pub fn plan(
    svc: &Service,
    tasks: &[&Arc<Task>],
    now: SystemTime,
    node_ok: impl Fn(&str) -> bool,
    seen_running: impl Fn(&str) -> Option<SystemTime>,
) -> Plan {
    let mut plan = Plan::default();
    if svc.spec.mode.is_job() {
        return plan;
    }
    let template = &svc.spec.task_template;
    let (revisions, new_revision) = with_revision(svc, now);
    let mut ustatus = svc.status.update_status.clone();
    let dirty = |t: &Task| &t.spec.template != template;

    let slots = slots_of(svc, tasks);
    let dirty_slots: Vec<&Slot> = slots
        .values()
        .filter(|s| needs_update(s, template))
        .collect();
    // Slots with a wanted task of this template on its way (whoever created it).
    let starting = slots
        .values()
        .filter(|s| {
            s.wanted
                .iter()
                .any(|t| !dirty(t) && t.status.state != TaskState::Running)
        })
        .count();
    let count = || match dirty_count(svc, tasks, template) {
        0 => u64::try_from(starting).unwrap_or(u64::MAX),
        n => n,
    };

    if new_revision {
        // A new template: a new update starts (unless the first, or ours: a rollback we wrote
        // sets its own status together with the revision).
        // The first revision of a new service has nothing to replace; one recorded late (the
        // controller first sees a service whose tasks run another template) starts an update.
        if !dirty_slots.is_empty() || (starting > 0 && !svc.status.revisions.is_empty()) {
            ustatus = Some(status(
                UpdateState::Updating,
                "update in progress",
                now,
                count(),
            ));
        }
        plan.status = Some((ustatus.clone(), revisions));
        // Write the status first; the next pass acts on it.
        return plan;
    }
    // Finish what is in flight, whatever the update's state (a paused update still lets a
    // started slot come up): start held successors, stop replaced predecessors.
    for s in slots.values() {
        let old: Vec<&&Arc<Task>> = s.wanted.iter().filter(|t| dirty(t)).collect();
        let new: Vec<&&Arc<Task>> = s.wanted.iter().filter(|t| !dirty(t)).collect();
        for n in &new {
            if n.spec.desired_state == TaskState::Ready {
                // Stop-first: the predecessor (no longer wanted) must have stopped.
                let gone = s.all.iter().filter(|o| dirty(o)).all(|o| {
                    o.status.state.is_terminal()
                        || o.status.state < TaskState::Assigned
                        || o.spec.node_name.as_deref().is_some_and(|x| !node_ok(x))
                });
                let waited = now
                    .duration_since(n.metadata.creation_timestamp.map_or(now, |c| c.0))
                    .unwrap_or_default();
                if gone || waited >= STOP_WAIT {
                    plan.steps.push(Step::Desire {
                        task: Box::new((****n).clone()),
                        state: TaskState::Running,
                    });
                } else {
                    plan.requeue_in(STOP_WAIT - waited);
                }
            } else if n.status.state == TaskState::Running {
                // Start-first: the successor runs, the predecessor goes.
                for o in &old {
                    plan.steps.push(Step::Desire {
                        task: Box::new((****o).clone()),
                        state: TaskState::Shutdown,
                    });
                }
            }
        }
    }

    let Some(current) = ustatus.clone() else {
        if !dirty_slots.is_empty() {
            // Out-of-date tasks and no update on record (its status was lost): start one.
            let started = status(UpdateState::Updating, "update in progress", now, count());
            plan.status = Some((Some(started), revisions));
        }
        return plan;
    };
    let rolling_back = current.state == UpdateState::RollbackStarted;
    if !matches!(
        current.state,
        UpdateState::Updating | UpdateState::RollbackStarted
    ) {
        return plan;
    }
    let config: &UpdateConfig = if rolling_back {
        &svc.spec.rollback_config
    } else {
        &svc.spec.update_config
    };
    let started = current.started_at.map_or(now, |t| t.0);
    let id = update_id(&current);
    let monitor = config.monitor.as_std();

    // The tasks this update created: which failed (ended before RUNNING or within `monitor`
    // of it, or missed their start deadline), which are still on their way, and when the
    // last one was done (reached RUNNING or ended: SwarmKit's worker moves on then).
    let mut failed: Vec<(SystemTime, &Arc<Task>)> = Vec::new();
    let mut in_flight = 0usize;
    let mut touched = 0usize;
    let mut last_done: Option<SystemTime> = None;
    for s in slots.values() {
        let mine: Vec<&&Arc<Task>> = s.all.iter().filter(|t| of_update(t, &id)).collect();
        if mine.is_empty() {
            continue;
        }
        touched += 1;
        let mut flying = false;
        for t in mine {
            let at = t.status.timestamp.map_or(now, |x| x.0);
            let running_at = if t.status.state == TaskState::Running {
                Some(at)
            } else {
                seen_running(&t.metadata.name)
            };
            let ended = ended_early(t);
            if let Some(done) = running_at.or(ended.then_some(at)) {
                last_done = Some(last_done.map_or(done, |l| l.max(done)));
            }
            if ended {
                let early =
                    running_at.is_none_or(|r| at.duration_since(r).unwrap_or_default() <= monitor);
                if early {
                    failed.push((at, t));
                }
                continue;
            }
            if t.status.state >= TaskState::Running || t.spec.desired_state > TaskState::Running {
                continue;
            }
            flying = true;
            if let Some(d) = config.start_timeout {
                let created = t.metadata.creation_timestamp.map_or(now, |c| c.0);
                let age = now.duration_since(created).unwrap_or_default();
                if age > d.as_std() {
                    failed.push((now, t));
                } else {
                    plan.requeue_in(d.as_std() - age + Duration::from_millis(10));
                }
            }
        }
        if flying {
            in_flight += 1;
        }
    }
    // The denominator is fixed when the update starts; a status from before it was recorded
    // falls back to what is left to do plus what this update did.
    let denominator = match current.dirty_slots {
        0 => (dirty_slots.len() + touched).max(1),
        n => usize::try_from(n).unwrap_or(usize::MAX),
    };
    failed.sort_by(|a, b| (a.0, &a.1.metadata.name).cmp(&(b.0, &b.1.metadata.name)));
    if let Some((_, last)) = failed.last() {
        let ratio = failed.len() as f64 / denominator as f64;
        if ratio > config.max_failure_ratio {
            // Named after the failure that tipped the ratio over, as SwarmKit does.
            let task = last.metadata.name.as_str();
            // A pause keeps the update's start time and count (SwarmKit changes only the
            // state and message).
            let paused = |state, msg: &str| UpdateStatus {
                started_at: current.started_at,
                ..status(state, msg, now, current.dirty_slots)
            };
            match (config.failure_action, rolling_back) {
                (FailureAction::Continue, _) => {}
                (FailureAction::Pause, false) => {
                    let msg =
                        format!("update paused due to failure or early termination of task {task}");
                    plan.status = Some((Some(paused(UpdateState::Paused, &msg)), revisions));
                    return plan;
                }
                (_, true) => {
                    // A rollback is never rolled back.
                    let msg = format!(
                        "rollback paused due to failure or early termination of task {task}"
                    );
                    plan.status =
                        Some((Some(paused(UpdateState::RollbackPaused, &msg)), revisions));
                    return plan;
                }
                (FailureAction::Rollback, false) => {
                    if let Some(r) = rollback_target(svc, None) {
                        let msg = format!(
                            "update rolled back due to failure or early termination of task {task}"
                        );
                        let back = dirty_count(svc, tasks, &r.template);
                        plan.rollback_to = Some(r.template.clone());
                        plan.status = Some((
                            Some(status(UpdateState::RollbackStarted, &msg, now, back)),
                            revisions,
                        ));
                        return plan;
                    }
                    let msg =
                        format!("update paused due to failure or early termination of task {task}");
                    plan.status = Some((Some(paused(UpdateState::Paused, &msg)), revisions));
                    return plan;
                }
            }
        }
    }

    // Start more slots: at most `parallelism` in flight (0 = all), `delay` after the last
    // slot was done.
    let parallelism = if config.parallelism == 0 {
        usize::MAX
    } else {
        usize::try_from(config.parallelism).unwrap_or(usize::MAX)
    };
    let room = parallelism.saturating_sub(in_flight);
    let delay = config.delay.as_std();
    if !dirty_slots.is_empty() && room > 0 {
        let wait = last_done
            .map(|t| delay.saturating_sub(now.duration_since(t).unwrap_or_default()))
            .unwrap_or_default();
        if !wait.is_zero() && in_flight == 0 {
            plan.requeue_in(wait);
        } else if in_flight == 0 || delay.is_zero() {
            for s in dirty_slots.iter().take(room) {
                let Some(old) = s.wanted.first() else {
                    continue;
                };
                let attempt = s.all.iter().map(|t| t.spec.attempt).max().unwrap_or(0) + 1;
                let start_first = config.order == UpdateOrder::StartFirst;
                let desired = if start_first {
                    TaskState::Running
                } else {
                    TaskState::Ready
                };
                let node = if svc.spec.mode.is_global() {
                    old.spec.node_name.as_deref()
                } else {
                    None
                };
                let mut new =
                    crate::replication::plan::new_task(svc, old.spec.slot, node, attempt, desired);
                new.metadata
                    .annotations
                    .insert(UPDATE_ANNOTATION.to_string(), id.clone());
                plan.steps.push(Step::Replace {
                    old: Box::new((***old).clone()),
                    new: Box::new(new),
                    stop_old: !start_first,
                });
            }
        }
    }

    // Done with the slots: keep watching for failures for `monitor` (`delay + 1 s` if the
    // delay is longer), after the last slot's own `delay`, then complete.
    if dirty_slots.is_empty() && in_flight == 0 && plan.steps.is_empty() {
        let watch = if delay >= monitor {
            delay + Duration::from_secs(1)
        } else {
            monitor
        };
        let until = last_done.unwrap_or(started).max(started) + delay + watch;
        if let Ok(left) = until.duration_since(now)
            && !left.is_zero()
        {
            plan.requeue_in(left);
            return plan;
        }
        let (state, msg) = if rolling_back {
            (UpdateState::RollbackCompleted, "rollback completed")
        } else {
            (UpdateState::Completed, "update completed")
        };
        let mut done = status(state, msg, now, current.dirty_slots);
        done.started_at = current.started_at;
        done.completed_at = Some(Timestamp(now));
        plan.status = Some((Some(done), revisions));
    }
    plan
}
