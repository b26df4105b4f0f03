//! The rolling-update decision for one service, pure: from the service and its tasks, what to
//! write next. Level-triggered — everything it needs is in the objects:
//!
//! * the update's state and start time are `status.updateStatus`;
//! * the templates the service ran are `status.revisions` (10 kept); a template that differs
//!   from the newest revision starts a new update (or, written together with
//!   `rollback_started`, a rollback);
//! * a slot is *dirty* when its wanted task (desired ≤ RUNNING, not finished) runs another
//!   template than the service's (SwarmKit's `IsTaskDirty`); *in flight* when it has a wanted
//!   task of the current template that is not RUNNING yet.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use swarm_api::{
    FailureAction, Service, ServiceRevision, Task, TaskState, Timestamp, UpdateConfig, UpdateOrder,
    UpdateState, UpdateStatus,
};

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

fn status(state: UpdateState, message: &str, now: SystemTime) -> UpdateStatus {
    UpdateStatus {
        state,
        started_at: Some(Timestamp(now)),
        completed_at: None,
        message: message.to_string(),
    }
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

/// A slot: its key (slot number or node) and its wanted tasks.
struct Slot<'a> {
    wanted: Vec<&'a Arc<Task>>,
    all: Vec<&'a Arc<Task>>,
}

/// Decides the next writes. `tasks` are the service's tasks; `node_ok` says whether a node
/// can still run tasks (stop-first does not wait for a task on a dead node to stop).
pub fn plan(
    svc: &Service,
    tasks: &[&Arc<Task>],
    now: SystemTime,
    node_ok: impl Fn(&str) -> bool,
) -> Plan {
    let mut plan = Plan::default();
    if svc.spec.mode.is_job() {
        return plan;
    }
    let template = &svc.spec.task_template;
    let (revisions, new_revision) = with_revision(svc, now);
    let mut ustatus = svc.status.update_status.clone();
    let dirty = |t: &Task| &t.spec.template != template;

    // Slots (replicated) or nodes (global).
    let mut slots: std::collections::BTreeMap<String, Slot> = std::collections::BTreeMap::new();
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
    let dirty_slots: Vec<&Slot> = slots
        .values()
        .filter(|s| s.wanted.iter().any(|t| dirty(t)) && !s.wanted.iter().any(|t| !dirty(t)))
        .collect();
    let in_flight: Vec<&Slot> = slots
        .values()
        .filter(|s| {
            s.wanted
                .iter()
                .any(|t| !dirty(t) && t.status.state != TaskState::Running)
        })
        .collect();

    if new_revision {
        // A new template: a new update starts (unless the first, or ours: a rollback we wrote
        // sets its own status together with the revision).
        // The first revision of a new service has nothing to replace; one recorded late (the
        // controller first sees a service whose tasks run another template) starts an update.
        if !dirty_slots.is_empty() || (!in_flight.is_empty() && !svc.status.revisions.is_empty()) {
            ustatus = Some(status(UpdateState::Updating, "update in progress", now));
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
            let started = status(UpdateState::Updating, "update in progress", now);
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

    // Failures: tasks of this template that ended (or missed their start deadline) since the
    // update began; any failure within `monitor` of starting counts.
    let mut failed: Vec<&Arc<Task>> = Vec::new();
    for s in slots.values() {
        for t in &s.all {
            if dirty(t) {
                continue;
            }
            let created = t.metadata.creation_timestamp.map_or(now, |c| c.0);
            if created < started {
                continue;
            }
            let ended = matches!(
                t.status.state,
                TaskState::Failed | TaskState::Rejected | TaskState::Complete | TaskState::Orphaned
            ) || (t.status.state == TaskState::Shutdown
                && t.spec.desired_state <= TaskState::Running);
            let late = config.start_timeout.is_some_and(|d| {
                t.status.state < TaskState::Running
                    && t.spec.desired_state <= TaskState::Running
                    && now.duration_since(created).unwrap_or_default() > d.as_std()
            });
            if ended || late {
                failed.push(t);
            } else if let Some(d) = config.start_timeout
                && t.status.state < TaskState::Running
            {
                let left = d
                    .as_std()
                    .saturating_sub(now.duration_since(created).unwrap_or_default());
                plan.requeue_in(left + Duration::from_millis(10));
            }
        }
    }
    let slots_total = slots.len().max(1);
    if let Some(first) = failed.first() {
        let ratio = failed.len() as f64 / slots_total as f64;
        if ratio > config.max_failure_ratio {
            let id = first.metadata.name.as_str();
            match (config.failure_action, rolling_back) {
                (FailureAction::Continue, _) => {}
                (FailureAction::Pause, false) => {
                    let msg =
                        format!("update paused due to failure or early termination of task {id}");
                    plan.status = Some((Some(status(UpdateState::Paused, &msg, now)), revisions));
                    return plan;
                }
                (_, true) => {
                    // A rollback is never rolled back.
                    let msg =
                        format!("rollback paused due to failure or early termination of task {id}");
                    plan.status = Some((
                        Some(status(UpdateState::RollbackPaused, &msg, now)),
                        revisions,
                    ));
                    return plan;
                }
                (FailureAction::Rollback, false) => {
                    if let Some(r) = rollback_target(svc, None) {
                        let msg = format!(
                            "update rolled back due to failure or early termination of task {id}"
                        );
                        plan.rollback_to = Some(r.template.clone());
                        plan.status = Some((
                            Some(status(UpdateState::RollbackStarted, &msg, now)),
                            revisions,
                        ));
                        return plan;
                    }
                    let msg =
                        format!("update paused due to failure or early termination of task {id}");
                    plan.status = Some((Some(status(UpdateState::Paused, &msg, now)), revisions));
                    return plan;
                }
            }
        }
    }

    // Start more slots: at most `parallelism` in flight (0 = all), `delay` after the last
    // batch came up.
    let parallelism = if config.parallelism == 0 {
        usize::MAX
    } else {
        config.parallelism as usize
    };
    let room = parallelism.saturating_sub(in_flight.len());
    let waiting: Vec<&Slot> = dirty_slots
        .iter()
        .copied()
        .filter(|s| !s.wanted.iter().any(|t| !dirty(t)))
        .collect();
    if !waiting.is_empty() && room > 0 {
        let last_up = slots
            .values()
            .flat_map(|s| s.wanted.iter())
            .filter(|t| !dirty(t) && t.status.state == TaskState::Running)
            .filter_map(|t| t.status.timestamp.map(|ts| ts.0))
            .filter(|ts| *ts >= started)
            .max();
        let wait = last_up
            .map(|t| {
                config
                    .delay
                    .as_std()
                    .saturating_sub(now.duration_since(t).unwrap_or_default())
            })
            .unwrap_or_default();
        if !wait.is_zero() && in_flight.is_empty() {
            plan.requeue_in(wait);
        } else if in_flight.is_empty() || config.delay.is_zero() {
            for s in waiting.into_iter().take(room) {
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
                let new =
                    crate::replication::plan::new_task(svc, old.spec.slot, node, attempt, desired);
                plan.steps.push(Step::Replace {
                    old: Box::new((***old).clone()),
                    new: Box::new(new),
                    stop_old: !start_first,
                });
            }
        }
    }

    // Done: nothing dirty, nothing in flight, and every new task has run for `monitor`.
    if dirty_slots.is_empty() && in_flight.is_empty() && plan.steps.is_empty() {
        let newest_up = slots
            .values()
            .flat_map(|s| s.wanted.iter())
            .filter(|t| t.status.state == TaskState::Running)
            .filter_map(|t| t.status.timestamp.map(|ts| ts.0))
            .max();
        let monitored = newest_up.map_or(Duration::ZERO, |t| {
            now.duration_since(t).unwrap_or_default()
        });
        let monitor = config.monitor.as_std();
        let all_up = slots.values().all(|s| {
            s.wanted
                .iter()
                .all(|t| t.status.state == TaskState::Running)
        });
        if !all_up {
            return plan;
        }
        if monitored < monitor {
            plan.requeue_in(monitor - monitored);
            return plan;
        }
        let (state, msg) = if rolling_back {
            (UpdateState::RollbackCompleted, "rollback completed")
        } else {
            (UpdateState::Completed, "update completed")
        };
        let mut done = status(state, msg, now);
        done.started_at = current.started_at;
        done.completed_at = Some(Timestamp(now));
        plan.status = Some((Some(done), revisions));
    }
    plan
}
