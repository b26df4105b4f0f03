//! Whether a service has converged, from its object, its tasks and the nodes — a pure
//! function, so every case is testable without a cluster.
//!
//! Converged means: for a replicated service, every slot 1..N has a task of the current
//! template that is RUNNING and no task beyond N still runs; for a global service, every
//! eligible node has one (eligible: ready and active, or already given a task when the
//! service has placement constraints this client cannot evaluate); for a replicated job,
//! enough tasks of the current template completed. An update that started after the wait
//! began (its `updateStatus` differs from the one seen before) must have finished too.

use std::collections::BTreeMap;

use swarm_api::{
    Node, NodeAvailability, NodeState, Service, ServiceMode, Task, TaskState, UpdateState,
    UpdateStatus,
};

/// What the wait is for: it decides which update outcomes are success.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Goal {
    /// A new service.
    Create,
    /// A spec change (update or scale): a rollback is a failure.
    Update,
    /// A requested rollback: `rollback_completed` is the success.
    Rollback,
}

/// A task of the current template failing this often in one slot means it keeps failing.
pub const MAX_FAILURES: usize = 3;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Converged,
    Waiting,
    /// The wait cannot succeed; the reason says why.
    Failed(String),
}

/// One progress line: a slot (`1/3`) or a node, and the state of its current task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotProgress {
    pub label: String,
    pub state: Option<TaskState>,
    /// The task's error or message, when it has one worth showing.
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assessment {
    pub running: u64,
    pub desired: u64,
    /// The progress shown is a rollback's.
    pub rolling_back: bool,
    /// `rollback: <why>` when an update turned into a rollback.
    pub note: Option<String>,
    pub slots: Vec<SlotProgress>,
    pub verdict: Verdict,
}

/// Assesses `service` given its tasks and the cluster's nodes. `baseline` is the service's
/// `updateStatus` before this wait's change, so an old outcome is not taken for a new one.
pub fn assess(
    service: &Service,
    tasks: &[Task],
    nodes: &[Node],
    goal: Goal,
    baseline: Option<&UpdateStatus>,
) -> Assessment {
    let current: Vec<&Task> = tasks
        .iter()
        .filter(|t| t.spec.template == service.spec.task_template)
        .collect();
    let mut a = match &service.spec.mode {
        ServiceMode::Replicated { replicas } => replicated(&current, tasks, *replicas),
        ServiceMode::Global {} | ServiceMode::GlobalJob {} => global(service, &current, nodes),
        ServiceMode::ReplicatedJob {
            total_completions, ..
        } => job(&current, *total_completions),
    };
    if let Some(reason) = keeps_failing(service, &current) {
        a.verdict = Verdict::Failed(reason);
        return a;
    }
    let fresh = service
        .status
        .update_status
        .as_ref()
        .filter(|u| Some(*u) != baseline);
    if let Some(u) = fresh {
        let msg = |what: &str| {
            if u.message.is_empty() {
                what.to_string()
            } else {
                format!("{what}: {}", u.message)
            }
        };
        match (u.state, goal) {
            (UpdateState::Updating, _) => {
                if a.verdict == Verdict::Converged {
                    a.verdict = Verdict::Waiting;
                }
            }
            (UpdateState::Completed, _) => {}
            (UpdateState::Paused, _) => a.verdict = Verdict::Failed(msg("service update paused")),
            (UpdateState::RollbackStarted, g) => {
                a.rolling_back = true;
                if g != Goal::Rollback {
                    a.note = Some(if u.message.is_empty() {
                        "update rolled back due to failure".to_string()
                    } else {
                        u.message.clone()
                    });
                }
                if a.verdict == Verdict::Converged {
                    a.verdict = Verdict::Waiting;
                }
            }
            (UpdateState::RollbackPaused, _) => {
                a.rolling_back = true;
                a.verdict = Verdict::Failed(msg("service rollback paused"))
            }
            (UpdateState::RollbackCompleted, Goal::Rollback) => a.rolling_back = true,
            (UpdateState::RollbackCompleted, _) => {
                a.rolling_back = true;
                a.verdict = Verdict::Failed(msg("service rolled back"))
            }
        }
    } else if goal == Goal::Rollback {
        // The update controller has not taken the request up yet: what runs now is what is
        // being rolled back from.
        a.rolling_back = true;
        if a.verdict == Verdict::Converged {
            a.verdict = Verdict::Waiting;
        }
    }
    a
}

fn replicated(current: &[&Task], all: &[Task], replicas: u64) -> Assessment {
    let mut slots = Vec::new();
    let mut running = 0;
    for slot in 1..=replicas {
        let task = latest(
            current
                .iter()
                .filter(|t| t.spec.slot == Some(slot) && live(t)),
        );
        if task.is_some_and(|t| t.status.state == TaskState::Running) {
            running += 1;
        }
        slots.push(progress(format!("{slot}/{replicas}"), task));
    }
    let extra = all.iter().any(|t| {
        t.spec.slot.is_some_and(|s| s > replicas)
            && t.spec.desired_state <= TaskState::Running
            && t.status.state <= TaskState::Running
    });
    let verdict = if running == replicas && !extra {
        Verdict::Converged
    } else {
        Verdict::Waiting
    };
    Assessment {
        running,
        desired: replicas,
        rolling_back: false,
        note: None,
        slots,
        verdict,
    }
}

fn global(service: &Service, current: &[&Task], nodes: &[Node]) -> Assessment {
    let mut by_node: BTreeMap<String, Option<&Task>> = BTreeMap::new();
    let constrained = !service.spec.task_template.placement.constraints.is_empty();
    if !constrained {
        for n in nodes {
            if n.status.state == NodeState::Ready && n.spec.availability == NodeAvailability::Active
            {
                by_node.insert(n.metadata.name.clone(), None);
            }
        }
    }
    for t in current.iter().filter(|t| live(t)) {
        if let Some(node) = &t.spec.node_name {
            let slot = by_node.entry(node.clone()).or_default();
            if slot.is_none_or(|old| t.spec.attempt > old.spec.attempt) {
                *slot = Some(t);
            }
        }
    }
    let job = service.spec.mode.is_job();
    let goal_state = if job {
        TaskState::Complete
    } else {
        TaskState::Running
    };
    let done = by_node
        .values()
        .filter(|t| t.is_some_and(|t| t.status.state == goal_state))
        .count() as u64;
    let desired = (by_node.len() as u64).max(service.status.replicas.desired);
    let slots = by_node
        .iter()
        .map(|(n, t)| progress(n.clone(), *t))
        .collect();
    Assessment {
        running: done,
        desired,
        rolling_back: false,
        note: None,
        slots,
        verdict: if done == desired && desired > 0 {
            Verdict::Converged
        } else {
            Verdict::Waiting
        },
    }
}

fn job(current: &[&Task], total: u64) -> Assessment {
    let completed = current
        .iter()
        .filter(|t| t.status.state == TaskState::Complete)
        .count() as u64;
    let mut slots: Vec<SlotProgress> = Vec::new();
    let mut seen: BTreeMap<u64, &Task> = BTreeMap::new();
    for t in current {
        let slot = t.spec.slot.unwrap_or(0);
        if seen
            .get(&slot)
            .is_none_or(|old| t.spec.attempt > old.spec.attempt)
        {
            seen.insert(slot, t);
        }
    }
    for (slot, t) in seen {
        slots.push(progress(format!("{slot}/{total}"), Some(t)));
    }
    Assessment {
        running: completed.min(total),
        desired: total,
        rolling_back: false,
        note: None,
        slots,
        verdict: if completed >= total {
            Verdict::Converged
        } else {
            Verdict::Waiting
        },
    }
}

/// A task its service still wants (not one being shut down or replaced).
fn live(t: &Task) -> bool {
    t.spec.desired_state <= TaskState::Running
}

fn latest<'a>(tasks: impl Iterator<Item = &'a &'a Task>) -> Option<&'a Task> {
    tasks.max_by_key(|t| t.spec.attempt).copied()
}

fn progress(label: String, task: Option<&Task>) -> SlotProgress {
    SlotProgress {
        label,
        state: task.map(|t| t.status.state),
        message: task
            .map(|t| {
                if t.status.err.is_empty() {
                    t.status.message.clone()
                } else {
                    t.status.err.clone()
                }
            })
            .unwrap_or_default(),
    }
}

/// A slot (or node) whose tasks of the current template failed `MAX_FAILURES` times.
fn keeps_failing(service: &Service, current: &[&Task]) -> Option<String> {
    let mut failures: BTreeMap<String, Vec<&Task>> = BTreeMap::new();
    for t in current {
        if matches!(t.status.state, TaskState::Failed | TaskState::Rejected) {
            let key = crate::view::task::display_name(t);
            failures.entry(key).or_default().push(t);
        }
    }
    let (name, tasks) = failures
        .into_iter()
        .find(|(_, v)| v.len() >= MAX_FAILURES)?;
    let last = tasks.iter().max_by_key(|t| t.spec.attempt)?;
    let why = if last.status.err.is_empty() {
        last.status.message.clone()
    } else {
        last.status.err.clone()
    };
    Some(format!(
        "tasks of service {} keep failing: {name} failed {} times, last with {why:?}; \
         see `swarm service ps {}`",
        service.metadata.name,
        tasks.len(),
        service.metadata.name
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(mode: serde_json::Value, image: &str) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "generation": 2},
            "spec": {"mode": mode, "taskTemplate": {"container": {"image": image}}}
        }))
        .unwrap()
    }

    fn task(
        slot: Option<u64>,
        node: &str,
        attempt: u64,
        image: &str,
        desired: &str,
        state: &str,
    ) -> Task {
        serde_json::from_value(json!({
            "metadata": {"name": format!("web.{}.{attempt}", slot.map_or(node.to_string(), |s| s.to_string()))},
            "spec": {"service": "web", "slot": slot, "nodeName": node, "attempt": attempt,
                     "desiredState": desired,
                     "template": {"container": {"image": image}}},
            "status": {"state": state, "err": if state == "failed" {"exit 1"} else {""}}
        }))
        .unwrap()
    }

    fn node(name: &str, state: &str, availability: &str) -> Node {
        serde_json::from_value(json!({"metadata": {"name": name},
            "spec": {"availability": availability}, "status": {"state": state}}))
        .unwrap()
    }

    fn replicated(n: u64) -> serde_json::Value {
        json!({"replicated": {"replicas": n}})
    }

    #[test]
    fn replicated_converges_when_every_slot_runs_the_current_template() {
        let s = service(replicated(2), "v2");
        let mut tasks = vec![
            task(Some(1), "n1", 1, "v1", "shutdown", "shutdown"),
            task(Some(1), "n1", 2, "v2", "running", "running"),
            task(Some(2), "n2", 1, "v1", "running", "running"),
        ];
        let a = assess(&s, &tasks, &[], Goal::Update, None);
        assert_eq!(
            (a.running, a.desired, a.verdict.clone()),
            (1, 2, Verdict::Waiting)
        );
        assert_eq!(
            a.slots[0],
            SlotProgress {
                label: "1/2".into(),
                state: Some(TaskState::Running),
                message: String::new()
            }
        );
        assert_eq!(a.slots[1].state, None);
        tasks.push(task(Some(2), "n2", 2, "v2", "running", "starting"));
        assert_eq!(
            assess(&s, &tasks, &[], Goal::Update, None).slots[1].state,
            Some(TaskState::Starting)
        );
        tasks.push(task(Some(2), "n2", 3, "v2", "running", "running"));
        let a = assess(&s, &tasks, &[], Goal::Update, None);
        assert_eq!((a.running, a.verdict), (2, Verdict::Converged));
    }

    #[test]
    fn scale_down_waits_for_extra_tasks_to_stop() {
        let s = service(replicated(1), "v1");
        let mut tasks = vec![
            task(Some(1), "n1", 1, "v1", "running", "running"),
            task(Some(2), "n2", 1, "v1", "running", "running"),
        ];
        assert_eq!(
            assess(&s, &tasks, &[], Goal::Update, None).verdict,
            Verdict::Waiting
        );
        tasks[1] = task(Some(2), "n2", 1, "v1", "shutdown", "shutdown");
        assert_eq!(
            assess(&s, &tasks, &[], Goal::Update, None).verdict,
            Verdict::Converged
        );
    }

    #[test]
    fn global_wants_one_task_per_ready_active_node() {
        let s = service(json!({"global": {}}), "v1");
        let nodes = vec![
            node("n1", "ready", "active"),
            node("n2", "ready", "active"),
            node("n3", "ready", "drain"),
            node("n4", "down", "active"),
        ];
        let mut tasks = vec![task(None, "n1", 1, "v1", "running", "running")];
        let a = assess(&s, &tasks, &nodes, Goal::Create, None);
        assert_eq!(
            (a.running, a.desired, a.verdict.clone()),
            (1, 2, Verdict::Waiting)
        );
        assert_eq!(
            a.slots.iter().map(|s| s.label.as_str()).collect::<Vec<_>>(),
            vec!["n1", "n2"]
        );
        tasks.push(task(None, "n2", 1, "v1", "running", "running"));
        assert_eq!(
            assess(&s, &tasks, &nodes, Goal::Create, None).verdict,
            Verdict::Converged
        );
    }

    #[test]
    fn update_outcomes() {
        let mut s = service(replicated(1), "v1");
        let tasks = vec![task(Some(1), "n1", 1, "v1", "running", "running")];
        let status = |state: &str, msg: &str| -> UpdateStatus {
            serde_json::from_value(json!({"state": state, "message": msg})).unwrap()
        };
        s.status.update_status = Some(status("updating", ""));
        assert_eq!(
            assess(&s, &tasks, &[], Goal::Update, None).verdict,
            Verdict::Waiting
        );
        s.status.update_status = Some(status("completed", ""));
        assert_eq!(
            assess(&s, &tasks, &[], Goal::Update, None).verdict,
            Verdict::Converged
        );
        s.status.update_status = Some(status(
            "paused",
            "update paused due to failure of task web.1.2",
        ));
        assert_eq!(
            assess(&s, &tasks, &[], Goal::Update, None).verdict,
            Verdict::Failed(
                "service update paused: update paused due to failure of task web.1.2".into()
            )
        );
        // The same paused status seen before the wait began is an old story.
        let old = s.status.update_status.clone();
        assert_eq!(
            assess(&s, &tasks, &[], Goal::Update, old.as_ref()).verdict,
            Verdict::Converged
        );
        s.status.update_status = Some(status(
            "rollback_started",
            "update rolled back due to failure",
        ));
        let a = assess(&s, &tasks, &[], Goal::Update, None);
        assert_eq!((a.verdict, a.rolling_back), (Verdict::Waiting, true));
        assert_eq!(a.note.as_deref(), Some("update rolled back due to failure"));
        s.status.update_status = Some(status("rollback_completed", "rolled back"));
        assert_eq!(
            assess(&s, &tasks, &[], Goal::Update, None).verdict,
            Verdict::Failed("service rolled back: rolled back".into())
        );
        assert_eq!(
            assess(&s, &tasks, &[], Goal::Rollback, None).verdict,
            Verdict::Converged
        );
        // A rollback not taken up yet (no new update status) is not done, however well the
        // current tasks run.
        let before = s.status.update_status.clone();
        assert_eq!(
            assess(&s, &tasks, &[], Goal::Rollback, before.as_ref()).verdict,
            Verdict::Waiting
        );
        s.status.update_status = Some(status("rollback_paused", ""));
        assert_eq!(
            assess(&s, &tasks, &[], Goal::Rollback, None).verdict,
            Verdict::Failed("service rollback paused".into())
        );
    }

    #[test]
    fn repeated_failures_end_the_wait() {
        let s = service(replicated(1), "v1");
        let mut tasks: Vec<Task> = (1..MAX_FAILURES as u64)
            .map(|i| task(Some(1), "n1", i, "v1", "shutdown", "failed"))
            .collect();
        assert_eq!(
            assess(&s, &tasks, &[], Goal::Create, None).verdict,
            Verdict::Waiting
        );
        tasks.push(task(
            Some(1),
            "n1",
            MAX_FAILURES as u64,
            "v1",
            "shutdown",
            "failed",
        ));
        let Verdict::Failed(why) = assess(&s, &tasks, &[], Goal::Create, None).verdict else {
            panic!("expected a failure");
        };
        assert!(
            why.contains("web.1 failed 3 times") && why.contains("exit 1"),
            "{why}"
        );
    }

    #[test]
    fn jobs_converge_on_completions() {
        let s = service(
            json!({"replicatedJob": {"maxConcurrent": 1, "totalCompletions": 2}}),
            "v1",
        );
        let mut tasks = vec![task(Some(1), "n1", 1, "v1", "complete", "complete")];
        assert_eq!(
            assess(&s, &tasks, &[], Goal::Create, None).verdict,
            Verdict::Waiting
        );
        tasks.push(task(Some(2), "n1", 1, "v1", "complete", "complete"));
        assert_eq!(
            assess(&s, &tasks, &[], Goal::Create, None).verdict,
            Verdict::Converged
        );
    }
}
