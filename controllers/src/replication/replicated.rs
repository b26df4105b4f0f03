//! Replicated services: N slots, each with one wanted task.
//!
//! * A slot is *occupied* while one of its tasks is wanted (desired ≤ RUNNING); its finished
//!   tasks are its history.
//! * Scale up fills the lowest free slot numbers; a slot's next task is `<service>.<slot>.<n+1>`.
//! * Scale down (SwarmKit's rule) balances first: each wanted task gets an index — it is the
//!   k-th task of the service on its node, counting running tasks before not-yet-running
//!   ones and lower slots first — and the highest indices go. So tasks leave the nodes with
//!   the most copies first, not-yet-running before running, the highest slot on ties. Their
//!   desired state becomes REMOVE; gc deletes them once stopped.
//! * A wanted task on a down, drained or deleted node is replaced at once (old stopped and
//!   successor created in one transaction); one that ended by itself is replaced as the
//!   restart policy says.
//! * Two wanted tasks in one slot are a start-first update in progress: left to `update`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use swarm_api::{Service, Task, TaskState};

use super::plan::{
    Inputs, Plan, Write, is_runnable, is_running, max_attempt, new_task, on_invalid_node,
};
use super::restart::{self, Decision};

/// Plans `svc` with `replicas` slots, given its tasks.
pub fn plan(svc: &Service, replicas: u64, tasks: &[&Arc<Task>], inp: &Inputs) -> Plan {
    let mut plan = Plan {
        desired: replicas,
        ..Plan::default()
    };
    let mut slots: BTreeMap<u64, Vec<&Arc<Task>>> = BTreeMap::new();
    for t in tasks {
        if let Some(s) = t.spec.slot {
            slots.entry(s).or_default().push(t);
        }
    }
    let occupied: Vec<(u64, &Arc<Task>)> = slots
        .iter()
        .filter_map(|(s, ts)| {
            ts.iter()
                .filter(|t| is_runnable(t))
                .max_by_key(|t| t.spec.attempt)
                .map(|t| (*s, *t))
        })
        .collect();
    let n = usize::try_from(replicas).unwrap_or(usize::MAX);
    let removed: BTreeSet<u64> = if occupied.len() > n {
        choose_removals(&occupied, occupied.len() - n)
            .into_iter()
            .collect()
    } else {
        BTreeSet::new()
    };
    for (slot, ts) in &slots {
        let wanted: Vec<&Arc<Task>> = ts.iter().copied().filter(|t| is_runnable(t)).collect();
        if removed.contains(slot) {
            for t in wanted {
                plan.writes.push(Write::SetDesired {
                    task: Arc::clone(t),
                    desired: TaskState::Remove,
                });
            }
            continue;
        }
        plan.running += wanted.iter().filter(|t| is_running(t)).count() as u64;
        if let [t] = wanted.as_slice() {
            tend_slot(svc, *slot, t, ts, inp, &mut plan);
        }
    }
    if occupied.len() < n {
        let taken: BTreeSet<u64> = occupied.iter().map(|(s, _)| *s).collect();
        let free = (1u64..)
            .filter(|s| !taken.contains(s))
            .take(n - occupied.len());
        for slot in free {
            let attempt = max_attempt(slots.get(&slot).into_iter().flatten().copied()) + 1;
            let t = new_task(svc, Some(slot), None, attempt, TaskState::Running);
            plan.writes.push(Write::Create(Box::new(t)));
        }
    }
    plan
}

/// Replaces the slot's one wanted task if its node is gone or it ended by itself.
fn tend_slot(
    svc: &Service,
    slot: u64,
    t: &Arc<Task>,
    history: &[&Arc<Task>],
    inp: &Inputs,
    plan: &mut Plan,
) {
    let attempt = max_attempt(history.iter().copied()) + 1;
    if on_invalid_node(t, inp.nodes) && !t.status.state.is_terminal() {
        let new = new_task(svc, Some(slot), None, attempt, TaskState::Running);
        plan.writes.push(Write::Replace {
            old: Arc::clone(t),
            new: Box::new(new),
        });
        return;
    }
    if !t.status.state.is_terminal() {
        return;
    }
    let policy = &svc.spec.task_template.restart_policy;
    match restart::decide(policy, t, svc.metadata.generation, inp.now) {
        Decision::GiveUp => {}
        Decision::Restart { at, history } if at <= inp.now => {
            let mut new = new_task(svc, Some(slot), None, attempt, TaskState::Running);
            restart::annotate(&mut new, &history);
            plan.writes.push(Write::Replace {
                old: Arc::clone(t),
                new: Box::new(new),
            });
        }
        Decision::Restart { at, .. } => plan.requeue_in(restart::until(at, inp.now)),
    }
}

/// The `count` slots to remove on scale down; see the module documentation.
pub fn choose_removals(occupied: &[(u64, &Arc<Task>)], count: usize) -> Vec<u64> {
    let mut order: Vec<(u64, &Arc<Task>)> = occupied.to_vec();
    // Running first, then by slot: the tail of each index group is what goes first.
    order.sort_by_key(|(slot, t)| (t.status.state != TaskState::Running, *slot));
    let mut per_node: HashMap<&str, usize> = HashMap::new();
    let mut indexed: Vec<(usize, u64)> = order
        .iter()
        .map(|(slot, t)| {
            let node = t.spec.node_name.as_deref().unwrap_or("");
            let k = per_node.entry(node).or_insert(0);
            *k += 1;
            (*k, *slot)
        })
        .collect();
    indexed.sort_by_key(|(k, _)| *k);
    indexed.iter().rev().take(count).map(|(_, s)| *s).collect()
}

#[cfg(test)]
mod tests {
    use super::super::plan::fixtures::*;
    use super::*;
    use std::time::{Duration, SystemTime};
    use swarm_api::{NodeAvailability, NodeState, ServiceMode, Timestamp};

    fn run(
        svc: &Service,
        n: u64,
        tasks: &[Arc<Task>],
        nodes: &HashMap<String, Arc<swarm_api::Node>>,
    ) -> Plan {
        let refs: Vec<&Arc<Task>> = tasks.iter().collect();
        plan(
            svc,
            n,
            &refs,
            &Inputs {
                nodes,
                now: SystemTime::now(),
            },
        )
    }

    fn created(p: &Plan) -> Vec<String> {
        p.writes
            .iter()
            .filter_map(|w| match w {
                Write::Create(t) => Some(t.metadata.name.clone()),
                _ => None,
            })
            .collect()
    }

    /// Names of the tasks set to REMOVE, sorted.
    fn removed(p: &Plan) -> Vec<String> {
        let mut v: Vec<String> = p
            .writes
            .iter()
            .filter_map(|w| match w {
                Write::SetDesired {
                    task,
                    desired: TaskState::Remove,
                } => Some(task.metadata.name.clone()),
                _ => None,
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn scale_up_fills_the_lowest_free_slots_with_the_next_attempt() {
        let svc = service("web", ServiceMode::Replicated { replicas: 4 });
        let nodes = ready_nodes(&["n1"]);
        let mut old = (*task(&svc, 2, 3, Some("n1"), TaskState::Shutdown)).clone();
        old.spec.desired_state = TaskState::Shutdown;
        let tasks = vec![
            task(&svc, 1, 1, Some("n1"), TaskState::Running),
            task(&svc, 3, 1, Some("n1"), TaskState::Running),
            Arc::new(old),
        ];
        let p = run(&svc, 4, &tasks, &nodes);
        assert_eq!(created(&p), vec!["web.2.4", "web.4.1"]);
        assert_eq!(p.running, 2);
        let Write::Create(t) = &p.writes[0] else {
            panic!()
        };
        assert_eq!(t.metadata.owner_references[0].uid, "uid-web");
        assert!(t.metadata.owner_references[0].controller);
    }

    #[test]
    fn scale_down_balances_nodes_then_prefers_not_running_then_highest_slot() {
        let svc = service("web", ServiceMode::Replicated { replicas: 3 });
        let nodes = ready_nodes(&["a", "b", "c"]);
        let tasks = vec![
            task(&svc, 1, 1, Some("a"), TaskState::Running),
            task(&svc, 2, 1, Some("a"), TaskState::Running),
            task(&svc, 3, 1, Some("a"), TaskState::Running),
            task(&svc, 4, 1, Some("b"), TaskState::Running),
            task(&svc, 5, 1, Some("b"), TaskState::Starting),
            task(&svc, 6, 1, Some("c"), TaskState::Running),
        ];
        // a has 3 → its 3rd goes first (index 3); then index 2: a's slot 2 (running) and
        // b's slot 5 (starting) tie on index — the not-yet-running one goes.
        let p = run(&svc, 4, &tasks, &nodes);
        assert_eq!(removed(&p), vec!["web.3.1", "web.5.1"]);
        // One more: among index-2 tasks only a's slot 2 is left.
        let p = run(&svc, 3, &tasks, &nodes);
        assert_eq!(removed(&p), vec!["web.2.1", "web.3.1", "web.5.1"]);
        assert!(created(&p).is_empty());
    }

    #[test]
    fn ties_go_to_the_highest_slot() {
        let svc = service("web", ServiceMode::Replicated { replicas: 1 });
        let nodes = ready_nodes(&["a", "b", "c"]);
        let tasks = vec![
            task(&svc, 1, 1, Some("a"), TaskState::Running),
            task(&svc, 2, 1, Some("b"), TaskState::Running),
            task(&svc, 3, 1, Some("c"), TaskState::Running),
        ];
        assert_eq!(
            removed(&run(&svc, 1, &tasks, &nodes)),
            vec!["web.2.1", "web.3.1"]
        );
    }

    #[test]
    fn tasks_on_down_or_drained_nodes_are_replaced_in_one_write() {
        let svc = service("web", ServiceMode::Replicated { replicas: 3 });
        let mut nodes = ready_nodes(&["a"]);
        nodes.extend([
            node("down", NodeState::Down, NodeAvailability::Active),
            node("drained", NodeState::Ready, NodeAvailability::Drain),
        ]);
        let tasks = vec![
            task(&svc, 1, 1, Some("a"), TaskState::Running),
            task(&svc, 2, 1, Some("down"), TaskState::Running),
            task(&svc, 3, 4, Some("drained"), TaskState::Running),
        ];
        let p = run(&svc, 3, &tasks, &nodes);
        let replaced: Vec<(String, String)> = p
            .writes
            .iter()
            .filter_map(|w| match w {
                Write::Replace { old, new } => {
                    Some((old.metadata.name.clone(), new.metadata.name.clone()))
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            replaced,
            vec![
                ("web.2.1".into(), "web.2.2".into()),
                ("web.3.4".into(), "web.3.5".into())
            ]
        );
        assert_eq!(p.writes.len(), 2);
    }

    #[test]
    fn a_failed_task_waits_for_the_restart_delay() {
        let mut svc = service("web", ServiceMode::Replicated { replicas: 1 });
        svc.spec.task_template.restart_policy.delay = swarm_api::Duration::from_secs(30);
        let nodes = ready_nodes(&["a"]);
        let mut t = (*task(&svc, 1, 1, Some("a"), TaskState::Failed)).clone();
        t.status.timestamp = Some(Timestamp::now());
        let p = run(&svc, 1, &[Arc::new(t.clone())], &nodes);
        assert!(p.writes.is_empty());
        assert!(p.requeue.is_some_and(|d| d > Duration::from_secs(25)));
        t.status.timestamp = Some(Timestamp(SystemTime::now() - Duration::from_secs(31)));
        let p = run(&svc, 1, &[Arc::new(t)], &nodes);
        assert!(
            matches!(&p.writes[..], [Write::Replace { new, .. }] if new.metadata.name == "web.1.2")
        );
    }

    #[test]
    fn two_wanted_tasks_in_a_slot_are_left_to_the_update() {
        let svc = service("web", ServiceMode::Replicated { replicas: 1 });
        let nodes = ready_nodes(&["a"]);
        let tasks = vec![
            task(&svc, 1, 1, Some("a"), TaskState::Running),
            task(&svc, 1, 2, Some("a"), TaskState::Starting),
        ];
        let p = run(&svc, 1, &tasks, &nodes);
        assert!(p.writes.is_empty(), "{:?}", p.writes);
    }
}
