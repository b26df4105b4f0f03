//! Replicated jobs: tasks that run to completion, `totalCompletions` in all, at most
//! `maxConcurrent` at once.
//!
//! Each completion has a slot, 1..=totalCompletions; a slot is done once one of its tasks is
//! COMPLETE. Tasks are created with desired state COMPLETE in the lowest slots that have
//! none yet, while fewer than `maxConcurrent` slots are active. A failed task is replaced in
//! its slot as the restart policy says (a slot waiting out its restart delay stays active).
//! A new spec generation is a new run of the job: tasks of the old run are stopped and the
//! counting starts over.

use std::collections::BTreeMap;
use std::sync::Arc;

use swarm_api::{Service, Task, TaskState};

use super::plan::{Inputs, Plan, Write, is_running, max_attempt, new_task, on_invalid_node};
use super::restart::{self, Decision};

pub fn plan(
    svc: &Service,
    max_concurrent: u64,
    total: u64,
    tasks: &[&Arc<Task>],
    inp: &Inputs,
) -> Plan {
    let mut plan = Plan::default();
    let generation = svc.metadata.generation;
    let mut slots: BTreeMap<u64, Vec<&Arc<Task>>> = BTreeMap::new();
    for t in tasks {
        let wanted = t.spec.desired_state == TaskState::Complete;
        if t.spec.service_generation != generation {
            if wanted && !t.status.state.is_terminal() {
                plan.writes.push(Write::SetDesired {
                    task: Arc::clone(t),
                    desired: TaskState::Shutdown,
                });
            }
            continue;
        }
        if let Some(s) = t.spec.slot {
            slots.entry(s).or_default().push(t);
        }
    }
    let mut active = 0u64;
    // Slots without a wanted task and not done, with the attempt their next task gets.
    let mut free: Vec<(u64, u64)> = Vec::new();
    for (slot, ts) in &slots {
        if ts.iter().any(|t| t.status.state == TaskState::Complete) {
            plan.completed += 1;
            continue;
        }
        let Some(t) = ts
            .iter()
            .filter(|t| t.spec.desired_state == TaskState::Complete)
            .max_by_key(|t| t.spec.attempt)
        else {
            // Its task was stopped (its node went down): the slot is free again.
            free.push((*slot, max_attempt(ts.iter().copied()) + 1));
            continue;
        };
        let attempt = max_attempt(ts.iter().copied()) + 1;
        plan.running += u64::from(is_running(t));
        if !t.status.state.is_terminal() {
            active += 1;
            if on_invalid_node(t, inp.nodes) {
                let new = new_task(svc, Some(*slot), None, attempt, TaskState::Complete);
                plan.writes.push(Write::Replace {
                    old: Arc::clone(t),
                    new: Box::new(new),
                });
            }
            continue;
        }
        let policy = &svc.spec.task_template.restart_policy;
        match restart::decide(policy, t, generation, inp.now) {
            Decision::GiveUp => {}
            Decision::Restart { at, history } if at <= inp.now => {
                active += 1;
                let mut new = new_task(svc, Some(*slot), None, attempt, TaskState::Complete);
                restart::annotate(&mut new, &history);
                plan.writes.push(Write::Replace {
                    old: Arc::clone(t),
                    new: Box::new(new),
                });
            }
            Decision::Restart { at, .. } => {
                active += 1;
                plan.requeue_in(restart::until(at, inp.now));
            }
        }
    }
    free.extend(
        (1..=total)
            .filter(|s| !slots.contains_key(s))
            .map(|s| (s, 1)),
    );
    free.sort();
    let room = usize::try_from(max_concurrent.saturating_sub(active)).unwrap_or(usize::MAX);
    for (slot, attempt) in free.into_iter().take(room) {
        let t = new_task(svc, Some(slot), None, attempt, TaskState::Complete);
        plan.writes.push(Write::Create(Box::new(t)));
    }
    plan.desired = max_concurrent.min(total.saturating_sub(plan.completed));
    plan
}

#[cfg(test)]
mod tests {
    use super::super::plan::fixtures::*;
    use super::*;
    use std::time::SystemTime;
    use swarm_api::ServiceMode;

    fn job_task(svc: &Service, slot: u64, attempt: u64, state: TaskState) -> Arc<Task> {
        let mut t = (*task(svc, slot, attempt, Some("a"), state)).clone();
        t.spec.desired_state = TaskState::Complete;
        Arc::new(t)
    }

    fn creates(p: &Plan) -> Vec<String> {
        p.writes
            .iter()
            .filter_map(|w| match w {
                Write::Create(t) => Some(t.metadata.name.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn runs_at_most_max_concurrent_until_total_completions() {
        let svc = service(
            "batch",
            ServiceMode::ReplicatedJob {
                max_concurrent: 2,
                total_completions: 5,
            },
        );
        let nodes = ready_nodes(&["a"]);
        let inp = Inputs {
            nodes: &nodes,
            now: SystemTime::now(),
        };
        let p = plan(&svc, 2, 5, &[], &inp);
        assert_eq!(creates(&p), vec!["batch.1.1", "batch.2.1"]);
        let tasks = [
            job_task(&svc, 1, 1, TaskState::Complete),
            job_task(&svc, 2, 1, TaskState::Running),
            job_task(&svc, 3, 1, TaskState::Complete),
        ];
        let refs: Vec<&Arc<Task>> = tasks.iter().collect();
        let p = plan(&svc, 2, 5, &refs, &inp);
        assert_eq!(creates(&p), vec!["batch.4.1"]);
        assert_eq!((p.completed, p.running, p.desired), (2, 1, 2));
        let all: Vec<Arc<Task>> = (1..=5)
            .map(|s| job_task(&svc, s, 1, TaskState::Complete))
            .collect();
        let refs: Vec<&Arc<Task>> = all.iter().collect();
        let p = plan(&svc, 2, 5, &refs, &inp);
        assert!(p.writes.is_empty());
        assert_eq!((p.completed, p.desired), (5, 0));
    }

    #[test]
    fn a_failed_completion_is_retried_in_its_slot() {
        let mut svc = service(
            "batch",
            ServiceMode::ReplicatedJob {
                max_concurrent: 1,
                total_completions: 2,
            },
        );
        svc.spec.task_template.restart_policy.delay = swarm_api::Duration::ZERO;
        let nodes = ready_nodes(&["a"]);
        let inp = Inputs {
            nodes: &nodes,
            now: SystemTime::now(),
        };
        let tasks = [job_task(&svc, 1, 1, TaskState::Failed)];
        let refs: Vec<&Arc<Task>> = tasks.iter().collect();
        let p = plan(&svc, 1, 2, &refs, &inp);
        assert!(
            matches!(&p.writes[..], [Write::Replace { new, .. }] if new.metadata.name == "batch.1.2")
        );
    }
}
