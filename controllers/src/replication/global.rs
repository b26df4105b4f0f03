//! Global services and global jobs: one task per eligible node, named
//! `<service>.<node>.<attempt>` and bound to the node at creation.
//!
//! * A node that joins (ready, active, constraints hold) gets a task.
//! * A node that is drained, goes down, is deleted or stops matching the constraints has its
//!   task stopped; a paused node keeps its task but gets no new one.
//! * A task that ended by itself is replaced as the restart policy says.
//! * Global jobs: one run to completion per node and spec generation; a completed node is done.

use std::collections::BTreeMap;
use std::sync::Arc;

use swarm_api::{Service, Task, TaskState};

use super::eligible;
use super::plan::{Inputs, Plan, Write, is_running, max_attempt, new_task};
use super::restart::{self, Decision};

/// Plans a global service (`job` = global-job).
pub fn plan(svc: &Service, tasks: &[&Arc<Task>], inp: &Inputs, job: bool) -> Plan {
    let mut plan = Plan::default();
    let generation = svc.metadata.generation;
    let desired_state = if job {
        TaskState::Complete
    } else {
        TaskState::Running
    };
    // Jobs: tasks of an older spec generation belong to an earlier run of the job.
    let wanted = |t: &Task| {
        if job {
            t.spec.desired_state == TaskState::Complete && t.spec.service_generation == generation
        } else {
            t.spec.desired_state <= TaskState::Running
        }
    };
    let mut by_node: BTreeMap<&str, Vec<&Arc<Task>>> = BTreeMap::new();
    for t in tasks {
        if let Some(n) = t.spec.node_name.as_deref() {
            by_node.entry(n).or_default().push(t);
        }
        // An earlier run of a job still going: stop it.
        if job
            && t.spec.desired_state == TaskState::Complete
            && t.spec.service_generation != generation
            && !t.status.state.is_terminal()
        {
            plan.writes.push(stop(t));
        }
    }
    let constraints = eligible::parse(&svc.spec.task_template.placement.constraints);
    let constraints = constraints.as_deref();
    // Tasks on nodes that no longer exist.
    for (node, ts) in &by_node {
        if !inp.nodes.contains_key(*node) {
            for t in ts
                .iter()
                .filter(|t| wanted(t) && !t.status.state.is_terminal())
            {
                plan.writes.push(stop(t));
            }
        }
    }
    let mut names: Vec<&String> = inp.nodes.keys().collect();
    names.sort();
    for name in names {
        let node = &inp.nodes[name];
        let ts: &[&Arc<Task>] = by_node.get(name.as_str()).map(Vec::as_slice).unwrap_or(&[]);
        let live: Vec<&Arc<Task>> = ts.iter().copied().filter(|t| wanted(t)).collect();
        let done = job
            && ts.iter().any(|t| {
                t.spec.service_generation == generation && t.status.state == TaskState::Complete
            });
        let keeps = eligible::keeps(node, constraints);
        let accepts = eligible::accepts_new(node, constraints);
        if job && done {
            plan.completed += 1;
            continue;
        }
        if !keeps {
            for t in live.iter().filter(|t| !t.status.state.is_terminal()) {
                plan.writes.push(stop(t));
            }
            continue;
        }
        if accepts || !live.is_empty() {
            plan.desired += 1;
        }
        plan.running += live.iter().filter(|t| is_running(t)).count() as u64;
        let attempt = max_attempt(ts.iter().copied()) + 1;
        match live.as_slice() {
            [] if accepts => {
                let t = new_task(svc, None, Some(name), attempt, desired_state);
                plan.writes.push(Write::Create(Box::new(t)));
            }
            [t] if t.status.state.is_terminal() => {
                let policy = &svc.spec.task_template.restart_policy;
                match restart::decide(policy, t, generation, inp.now) {
                    Decision::GiveUp => {}
                    Decision::Restart { at, history } if at <= inp.now => {
                        let mut new = new_task(svc, None, Some(name), attempt, desired_state);
                        restart::annotate(&mut new, &history);
                        plan.writes.push(Write::Replace {
                            old: Arc::clone(t),
                            new: Box::new(new),
                        });
                    }
                    Decision::Restart { at, .. } => plan.requeue_in(restart::until(at, inp.now)),
                }
            }
            _ => {}
        }
    }
    plan
}

fn stop(t: &Arc<Task>) -> Write {
    Write::SetDesired {
        task: Arc::clone(t),
        desired: TaskState::Shutdown,
    }
}

#[cfg(test)]
mod tests {
    use super::super::plan::fixtures::*;
    use super::*;
    use std::time::SystemTime;
    use swarm_api::{NodeAvailability, NodeState, ServiceMode};

    fn global_task(svc: &Service, node: &str, attempt: u64, state: TaskState) -> Arc<Task> {
        let mut t = new_task(svc, None, Some(node), attempt, TaskState::Running);
        t.status.state = state;
        Arc::new(t)
    }

    #[test]
    fn one_task_per_eligible_node() {
        let mut svc = service("agent", ServiceMode::Global {});
        svc.spec.task_template.placement.constraints = vec!["node.labels.gpu!=yes".into()];
        let mut nodes = ready_nodes(&["a", "b"]);
        nodes.extend([
            node("paused", NodeState::Ready, NodeAvailability::Pause),
            node("drained", NodeState::Ready, NodeAvailability::Drain),
            node("down", NodeState::Down, NodeAvailability::Active),
        ]);
        let (gpu, mut g) = node("gpu", NodeState::Ready, NodeAvailability::Active);
        Arc::make_mut(&mut g)
            .spec
            .labels
            .insert("gpu".into(), "yes".into());
        nodes.insert(gpu, g);
        let tasks = [
            global_task(&svc, "a", 1, TaskState::Running),
            global_task(&svc, "paused", 1, TaskState::Running),
            global_task(&svc, "drained", 1, TaskState::Running),
            global_task(&svc, "gpu", 1, TaskState::Running),
            global_task(&svc, "gone", 2, TaskState::Running),
        ];
        let refs: Vec<&Arc<Task>> = tasks.iter().collect();
        let p = plan(
            &svc,
            &refs,
            &Inputs {
                nodes: &nodes,
                now: SystemTime::now(),
            },
            false,
        );
        let mut summary: Vec<String> = p
            .writes
            .iter()
            .map(|w| match w {
                Write::Create(t) => format!("create {}", t.metadata.name),
                Write::SetDesired { task, desired } => format!("{desired} {}", task.metadata.name),
                Write::Replace { old, .. } => format!("replace {}", old.metadata.name),
            })
            .collect();
        summary.sort();
        assert_eq!(
            summary,
            vec![
                "create agent.b.1",
                "shutdown agent.drained.1",
                "shutdown agent.gone.2",
                "shutdown agent.gpu.1"
            ]
        );
        // a, b and the paused node (which keeps its task).
        assert_eq!(p.desired, 3);
        assert_eq!(p.running, 2);
    }

    #[test]
    fn a_global_job_runs_once_per_node_and_generation() {
        let mut svc = service("migrate", ServiceMode::GlobalJob {});
        let nodes = ready_nodes(&["a", "b"]);
        let mut done = (*global_task(&svc, "a", 1, TaskState::Complete)).clone();
        done.spec.desired_state = TaskState::Complete;
        let tasks = [Arc::new(done)];
        let refs: Vec<&Arc<Task>> = tasks.iter().collect();
        let inp = Inputs {
            nodes: &nodes,
            now: SystemTime::now(),
        };
        let p = plan(&svc, &refs, &inp, true);
        assert!(
            matches!(&p.writes[..], [Write::Create(t)] if t.metadata.name == "migrate.b.1" && t.spec.desired_state == TaskState::Complete)
        );
        assert_eq!(p.completed, 1);
        // A new spec generation runs the job again everywhere.
        svc.metadata.generation = 2;
        let p = plan(&svc, &refs, &inp, true);
        assert_eq!(p.writes.len(), 2);
        assert_eq!(p.completed, 0);
    }
}
