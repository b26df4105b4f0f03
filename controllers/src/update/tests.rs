//! Update decisions on hand-built services and tasks.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use swarm_api::{
    FailureAction, Service, ServiceRevision, ServiceSpec, Task, TaskState, Timestamp, UpdateOrder,
    UpdateState, UpdateStatus,
};

use super::UPDATE_ANNOTATION;
use super::plan::{Plan, Step, plan, update_id, with_revision};

fn service(image: &str, replicas: u64) -> Service {
    let mut spec = ServiceSpec {
        mode: swarm_api::ServiceMode::Replicated { replicas },
        ..Default::default()
    };
    spec.task_template.container.image = image.into();
    let mut s = Service::new("web", spec);
    s.metadata.generation = 1;
    s
}

fn task_of(svc: &Service, slot: u64, attempt: u64, state: TaskState, at: SystemTime) -> Arc<Task> {
    let mut t =
        crate::replication::plan::new_task(svc, Some(slot), None, attempt, TaskState::Running);
    t.status.state = state;
    t.status.timestamp = Some(Timestamp(at));
    t.metadata.creation_timestamp = Some(Timestamp(at));
    Arc::new(t)
}

/// A task the update of `svc` created in `slot` (attempt 2), in `state` since `at`.
fn new_of(svc: &Service, slot: u64, state: TaskState, at: SystemTime) -> Arc<Task> {
    let mut t = (*task_of(svc, slot, 2, state, at)).clone();
    let id = update_id(svc.status.update_status.as_ref().unwrap());
    t.metadata
        .annotations
        .insert(UPDATE_ANNOTATION.to_string(), id);
    Arc::new(t)
}

/// A service at v1 with 3 running v1 tasks, then updated to v2 (update started at `start`).
fn updating(cfg: impl Fn(&mut Service)) -> (Service, Vec<Arc<Task>>, SystemTime) {
    let start = SystemTime::now() - Duration::from_secs(100);
    let v1 = service("app:1", 3);
    let tasks = (1..=3)
        .map(|s| {
            task_of(
                &v1,
                s,
                1,
                TaskState::Running,
                start - Duration::from_secs(10),
            )
        })
        .collect();
    let mut svc = service("app:2", 3);
    svc.metadata.generation = 2;
    cfg(&mut svc);
    svc.status.revisions = vec![
        ServiceRevision {
            generation: 1,
            template: v1.spec.task_template.clone(),
            created_at: None,
        },
        ServiceRevision {
            generation: 2,
            template: svc.spec.task_template.clone(),
            created_at: None,
        },
    ];
    svc.status.update_status = Some(UpdateStatus {
        state: UpdateState::Updating,
        started_at: Some(Timestamp(start)),
        completed_at: None,
        message: "update in progress".into(),
        dirty_slots: 3,
    });
    (svc, tasks, start)
}

fn run(svc: &Service, tasks: &[Arc<Task>]) -> Plan {
    let refs: Vec<&Arc<Task>> = tasks.iter().collect();
    plan(svc, &refs, SystemTime::now(), |_| true, |_| None)
}

fn replaces(p: &Plan) -> Vec<(String, String, bool, TaskState)> {
    p.steps
        .iter()
        .filter_map(|s| match s {
            Step::Replace { old, new, stop_old } => Some((
                old.metadata.name.clone(),
                new.metadata.name.clone(),
                *stop_old,
                new.spec.desired_state,
            )),
            _ => None,
        })
        .collect()
}

#[test]
fn a_new_template_starts_an_update_and_records_a_revision() {
    let (mut svc, tasks, _) = updating(|_| {});
    svc.status.revisions.pop();
    svc.status.update_status = None;
    let p = run(&svc, &tasks);
    let (status, revs) = p.status.expect("a status write");
    assert_eq!(revs.len(), 2);
    assert_eq!(revs[1].generation, 2);
    let status = status.expect("an update status");
    assert_eq!(status.state, UpdateState::Updating);
    assert_eq!(status.message, "update in progress");
    assert!(p.steps.is_empty(), "the status goes first");
}

#[test]
fn the_first_revision_is_no_update() {
    let svc = service("app:1", 1);
    let p = run(&svc, &[]);
    let (status, revs) = p.status.unwrap();
    assert!(status.is_none());
    assert_eq!(revs.len(), 1);
}

#[test]
fn revisions_keep_ten() {
    let mut svc = service("app:0", 1);
    for g in 0..10 {
        svc.status.revisions.push(ServiceRevision {
            generation: g,
            template: Default::default(),
            created_at: None,
        });
    }
    let (revs, added) = with_revision(&svc, SystemTime::now());
    assert!(added);
    assert_eq!(revs.len(), 10);
    assert_eq!(revs[0].generation, 1);
}

#[test]
fn stop_first_replaces_one_slot_at_a_time() {
    let (svc, tasks, _) = updating(|_| {});
    let p = run(&svc, &tasks);
    assert_eq!(
        replaces(&p),
        vec![("web.1.1".into(), "web.1.2".into(), true, TaskState::Ready)]
    );
}

#[test]
fn parallelism_zero_means_all_and_start_first_runs_at_once() {
    let (svc, tasks, _) = updating(|s| {
        s.spec.update_config.parallelism = 0;
        s.spec.update_config.order = UpdateOrder::StartFirst;
    });
    let p = run(&svc, &tasks);
    let r = replaces(&p);
    assert_eq!(r.len(), 3);
    assert!(
        r.iter()
            .all(|(_, _, stop, d)| !stop && *d == TaskState::Running)
    );
}

#[test]
fn nothing_more_starts_while_a_slot_is_in_flight() {
    let (svc, mut tasks, start) = updating(|_| {});
    tasks.push(new_of(
        &svc,
        1,
        TaskState::Preparing,
        start + Duration::from_secs(1),
    ));
    let mut old = (*tasks[0]).clone();
    old.spec.desired_state = TaskState::Shutdown;
    tasks[0] = Arc::new(old);
    let p = run(&svc, &tasks);
    assert!(replaces(&p).is_empty());
}

#[test]
fn a_held_successor_starts_once_its_predecessor_stopped() {
    let (svc, mut tasks, start) = updating(|_| {});
    let _ = start;
    let mut new = (*new_of(&svc, 1, TaskState::Ready, SystemTime::now())).clone();
    new.spec.desired_state = TaskState::Ready;
    tasks.push(Arc::new(new));
    let mut old = (*tasks[0]).clone();
    old.spec.desired_state = TaskState::Shutdown;
    tasks[0] = Arc::new(old.clone());
    assert!(run(&svc, &tasks).steps.is_empty(), "old still running");
    old.status.state = TaskState::Shutdown;
    tasks[0] = Arc::new(old);
    let p = run(&svc, &tasks);
    assert!(matches!(
        &p.steps[0],
        Step::Desire { task, state: TaskState::Running } if task.metadata.name == "web.1.2"
    ));
}

#[test]
fn a_failure_pauses_with_swarms_message() {
    let (svc, mut tasks, start) = updating(|_| {});
    tasks.push(new_of(
        &svc,
        1,
        TaskState::Failed,
        start + Duration::from_secs(1),
    ));
    let p = run(&svc, &tasks);
    let status = p.status.unwrap().0.unwrap();
    assert_eq!(status.state, UpdateState::Paused);
    assert_eq!(
        status.message,
        "update paused due to failure or early termination of task web.1.2"
    );
}

#[test]
fn failure_action_rollback_goes_back_and_continue_goes_on() {
    let (svc, mut tasks, start) = updating(|s| {
        s.spec.update_config.failure_action = FailureAction::Rollback;
    });
    tasks.push(new_of(
        &svc,
        1,
        TaskState::Failed,
        start + Duration::from_secs(1),
    ));
    let p = run(&svc, &tasks);
    assert_eq!(
        p.rollback_to.unwrap().container.image,
        "app:1",
        "back to the previous revision"
    );
    let status = p.status.unwrap().0.unwrap();
    assert_eq!(status.state, UpdateState::RollbackStarted);
    assert_eq!(
        status.message,
        "update rolled back due to failure or early termination of task web.1.2"
    );

    let (svc, mut tasks, start) = updating(|s| {
        s.spec.update_config.failure_action = FailureAction::Continue;
    });
    tasks.push(new_of(
        &svc,
        1,
        TaskState::Failed,
        start + Duration::from_secs(1),
    ));
    let p = run(&svc, &tasks);
    assert!(p.status.is_none());
    assert_eq!(replaces(&p).len(), 1);
}

#[test]
fn a_failure_within_the_ratio_is_tolerated() {
    let (svc, mut tasks, start) = updating(|s| {
        s.spec.update_config.max_failure_ratio = 0.5;
    });
    tasks.push(new_of(
        &svc,
        1,
        TaskState::Failed,
        start + Duration::from_secs(1),
    ));
    let p = run(&svc, &tasks);
    assert!(p.status.is_none(), "1 of 3 is not more than 0.5");
}

#[test]
fn a_rollback_is_never_rolled_back() {
    let (mut svc, mut tasks, start) = updating(|s| {
        s.spec.rollback_config.failure_action = FailureAction::Rollback;
    });
    svc.status.update_status.as_mut().unwrap().state = UpdateState::RollbackStarted;
    tasks.push(new_of(
        &svc,
        1,
        TaskState::Failed,
        start + Duration::from_secs(1),
    ));
    let status = run(&svc, &tasks).status.unwrap().0.unwrap();
    assert_eq!(status.state, UpdateState::RollbackPaused);
    assert!(status.message.starts_with("rollback paused due to failure"));
}

#[test]
fn a_task_past_its_start_deadline_is_a_failure() {
    let (svc, mut tasks, start) = updating(|s| {
        s.spec.update_config.start_timeout = Some(swarm_api::Duration::from_secs(5));
    });
    tasks.push(new_of(
        &svc,
        1,
        TaskState::Preparing,
        start + Duration::from_secs(1),
    ));
    let status = run(&svc, &tasks).status.unwrap().0.unwrap();
    assert_eq!(status.state, UpdateState::Paused);
}

#[test]
fn completes_after_monitor() {
    let (mut svc, _, start) = updating(|_| {});
    let up = SystemTime::now() - Duration::from_secs(2);
    let tasks: Vec<Arc<Task>> = (1..=3)
        .map(|s| new_of(&svc, s, TaskState::Running, up))
        .collect();
    let p = run(&svc, &tasks);
    assert!(p.status.is_none(), "monitor (5s) not over");
    assert!(p.requeue.is_some());
    svc.spec.update_config.monitor = swarm_api::Duration::from_secs(0);
    let status = run(&svc, &tasks).status.unwrap().0.unwrap();
    assert_eq!(status.state, UpdateState::Completed);
    assert_eq!(status.message, "update completed");
    assert_eq!(status.started_at, Some(Timestamp(start)));
    assert!(status.completed_at.is_some());
}

#[test]
fn delay_waits_between_batches() {
    let (mut svc, mut tasks, _) = updating(|_| {});
    svc.spec.update_config.delay = swarm_api::Duration::from_secs(10);
    let up = SystemTime::now() - Duration::from_secs(1);
    let mut old = (*tasks[0]).clone();
    old.spec.desired_state = TaskState::Shutdown;
    old.status.state = TaskState::Shutdown;
    tasks[0] = Arc::new(old);
    tasks.push(new_of(&svc, 1, TaskState::Running, up));
    let p = run(&svc, &tasks);
    assert!(replaces(&p).is_empty(), "the delay is not over");
    let wait = p.requeue.expect("a timer");
    assert!(
        wait > Duration::from_secs(8) && wait <= Duration::from_secs(10),
        "{wait:?}"
    );
    svc.spec.update_config.delay = swarm_api::Duration::from_secs(0);
    assert_eq!(replaces(&run(&svc, &tasks)).len(), 1);
}

#[test]
fn rollback_targets_the_previous_or_a_chosen_revision() {
    let mut svc = service("app:3", 1);
    for (g, image) in [(1, "app:1"), (2, "app:2"), (3, "app:3")] {
        let mut t = svc.spec.task_template.clone();
        t.container.image = image.into();
        svc.status.revisions.push(ServiceRevision {
            generation: g,
            template: t,
            created_at: None,
        });
    }
    let image =
        |g| super::plan::rollback_target(&svc, g).map(|r| r.template.container.image.clone());
    assert_eq!(image(None).as_deref(), Some("app:2"));
    assert_eq!(image(Some(1)).as_deref(), Some("app:1"));
    assert_eq!(image(Some(7)), None);
}

#[test]
fn a_global_service_updates_node_by_node() {
    let (mut svc, _, start) = updating(|_| {});
    svc.spec.mode = swarm_api::ServiceMode::Global {};
    let v1 = service("app:1", 1);
    let mut v1g = v1.clone();
    v1g.spec.mode = swarm_api::ServiceMode::Global {};
    let tasks: Vec<Arc<Task>> = ["n1", "n2"]
        .iter()
        .map(|n| {
            let mut t =
                crate::replication::plan::new_task(&v1g, None, Some(n), 1, TaskState::Running);
            t.status.state = TaskState::Running;
            t.metadata.creation_timestamp = Some(Timestamp(start - Duration::from_secs(5)));
            Arc::new(t)
        })
        .collect();
    let p = run(&svc, &tasks);
    let r = replaces(&p);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].1, "web.n1.2");
    let Step::Replace { new, .. } = &p.steps[0] else {
        panic!("a replace");
    };
    assert_eq!(
        new.spec.node_name.as_deref(),
        Some("n1"),
        "bound to its node"
    );
}

#[test]
fn out_of_date_tasks_without_an_update_on_record_start_one() {
    let (mut svc, tasks, _) = updating(|_| {});
    svc.status.update_status = None;
    let status = run(&svc, &tasks).status.unwrap().0.unwrap();
    assert_eq!(status.state, UpdateState::Updating);
    svc.status.revisions.clear();
    let (status, revs) = run(&svc, &tasks).status.unwrap();
    assert_eq!(status.unwrap().state, UpdateState::Updating);
    assert_eq!(revs.len(), 1);
}

fn run_seen(svc: &Service, tasks: &[Arc<Task>], seen: &[(&str, SystemTime)]) -> Plan {
    let refs: Vec<&Arc<Task>> = tasks.iter().collect();
    plan(
        svc,
        &refs,
        SystemTime::now(),
        |_| true,
        |name| seen.iter().find(|(n, _)| *n == name).map(|(_, at)| *at),
    )
}

fn paused(p: &Plan) -> bool {
    matches!(&p.status, Some((Some(u), _)) if u.state == UpdateState::Paused)
}

#[test]
fn a_failure_counts_only_before_running_or_within_monitor_of_it() {
    let (svc, mut tasks, _) = updating(|s| {
        s.spec.update_config.monitor = swarm_api::Duration::from_secs(5);
    });
    let failed_at = SystemTime::now() - Duration::from_secs(1);
    tasks.push(new_of(&svc, 1, TaskState::Failed, failed_at));
    // Never seen running: it ended before RUNNING.
    assert!(paused(&run_seen(&svc, &tasks, &[])));
    // Ran 4 s: within the 5 s monitor.
    let within = [("web.1.2", failed_at - Duration::from_secs(4))];
    assert!(paused(&run_seen(&svc, &tasks, &within)));
    // Ran 6 s: past the monitor, the restart policy's business, not the update's.
    let after = [("web.1.2", failed_at - Duration::from_secs(6))];
    let p = run_seen(&svc, &tasks, &after);
    assert!(p.status.is_none(), "{:?}", p.status);
}

#[test]
fn only_tasks_the_update_created_count() {
    let (svc, mut tasks, start) = updating(|_| {});
    // A replacement the restart policy made (no update annotation) fails: not counted.
    tasks.push(task_of(
        &svc,
        1,
        3,
        TaskState::Failed,
        start + Duration::from_secs(2),
    ));
    assert!(!paused(&run(&svc, &tasks)));
}

/// A 4-slot service at v1, being updated to v2 with `max_failure_ratio` 0.5: slots 1..=3 got
/// their v2 task (`failed` of them failed within the monitor, their restarts run v2), slot 4
/// is still to do.
fn four_slots_with_failures(failed: u64) -> (Service, Vec<Arc<Task>>) {
    let (mut svc, _, start) = updating(|s| {
        s.spec.update_config.max_failure_ratio = 0.5;
    });
    svc.spec.mode = swarm_api::ServiceMode::Replicated { replicas: 4 };
    svc.status.update_status.as_mut().unwrap().dirty_slots = 4;
    let v1 = service("app:1", 4);
    let mut tasks = Vec::new();
    for slot in 1..=4 {
        let mut old = (*task_of(&v1, slot, 1, TaskState::Running, start)).clone();
        if slot <= 3 {
            old.spec.desired_state = TaskState::Shutdown;
            old.status.state = TaskState::Shutdown;
        }
        tasks.push(Arc::new(old));
    }
    let at = SystemTime::now() - Duration::from_secs(1);
    for slot in 1..=3 {
        if slot <= failed {
            tasks.push(new_of(&svc, slot, TaskState::Failed, at));
            tasks.push(task_of(&svc, slot, 3, TaskState::Running, at));
        } else {
            tasks.push(new_of(&svc, slot, TaskState::Running, at));
        }
    }
    (svc, tasks)
}

#[test]
fn the_ratio_is_over_the_slots_dirty_when_the_update_started() {
    // 2 failures of 4 dirty slots: 0.5 is not more than 0.5, the update goes on to slot 4.
    // (Over the one slot left to do, or the three touched so far, it would have paused.)
    let (svc, tasks) = four_slots_with_failures(2);
    let p = run(&svc, &tasks);
    assert!(!paused(&p), "{:?}", p.status);
    assert_eq!(replaces(&p).len(), 1, "slot 4 is next");
    // Had slot 4 run v2 already when the update started (3 dirty slots), 2 failures would
    // be 2/3 > 0.5: the ratio is over the dirty slots, not every slot.
    let (mut svc, tasks) = four_slots_with_failures(2);
    svc.status.update_status.as_mut().unwrap().dirty_slots = 3;
    assert!(paused(&run(&svc, &tasks)));
    // 3 of 4: 0.75 > 0.5.
    let (svc, tasks) = four_slots_with_failures(3);
    let p = run(&svc, &tasks);
    assert!(paused(&p));
    assert_eq!(
        p.status.unwrap().0.unwrap().message,
        "update paused due to failure or early termination of task web.3.2"
    );
}

#[test]
fn an_update_records_its_dirty_slots_and_marks_its_tasks() {
    let (mut svc, tasks, _) = updating(|_| {});
    svc.status.revisions.pop();
    svc.status.update_status = None;
    let started = run(&svc, &tasks).status.unwrap().0.unwrap();
    assert_eq!(started.dirty_slots, 3);

    let (svc, tasks, _) = updating(|_| {});
    let p = run(&svc, &tasks);
    let Step::Replace { new, .. } = &p.steps[0] else {
        panic!("a replace");
    };
    assert_eq!(
        new.metadata.annotations.get(UPDATE_ANNOTATION),
        Some(&update_id(svc.status.update_status.as_ref().unwrap()))
    );
}

#[test]
fn a_slot_with_two_wanted_tasks_is_dirty() {
    let (svc, mut tasks, start) = updating(|_| {});
    // Slot 1 mid start-first: its v1 task and a v2 task both wanted.
    tasks.push(task_of(&svc, 1, 2, TaskState::Running, start));
    let refs: Vec<&Arc<Task>> = tasks.iter().collect();
    let n = super::plan::dirty_count(&svc, &refs, &svc.spec.task_template);
    assert_eq!(n, 3);
}

#[test]
fn after_the_last_slot_the_update_watches_delay_then_monitor_or_delay_plus_one_second() {
    let (mut svc, _, _) = updating(|_| {});
    svc.spec.update_config.monitor = swarm_api::Duration::from_secs(5);
    svc.spec.update_config.delay = swarm_api::Duration::from_secs(10);
    let up = SystemTime::now() - Duration::from_secs(20);
    let tasks: Vec<Arc<Task>> = (1..=3)
        .map(|s| new_of(&svc, s, TaskState::Running, up))
        .collect();
    // delay 10 s ≥ monitor 5 s: 10 s of delay, then 11 s of watching: 21 s after the last.
    let p = run(&svc, &tasks);
    assert!(p.status.is_none(), "{:?}", p.status);
    let left = p.requeue.expect("a timer");
    assert!(left <= Duration::from_secs(1), "{left:?}");
    // delay 2 s < monitor 5 s: 7 s after the last, long past.
    svc.spec.update_config.delay = swarm_api::Duration::from_secs(2);
    let status = run(&svc, &tasks).status.unwrap().0.unwrap();
    assert_eq!(status.state, UpdateState::Completed);
    assert_eq!(status.dirty_slots, 3);
}

#[test]
fn outside_an_update_only_out_of_date_or_held_tasks_wake_the_service() {
    use super::controller::matters;
    let svc = service("app:1", 3);
    let now = SystemTime::now();
    // Every step of a task of the current template: nothing to update.
    for state in [
        TaskState::New,
        TaskState::Pending,
        TaskState::Assigned,
        TaskState::Running,
        TaskState::Failed,
    ] {
        assert!(
            !matters(&task_of(&svc, 1, 1, state, now), Some(&svc)),
            "{state}"
        );
    }
    let mut done = svc.clone();
    done.status.update_status = Some(UpdateStatus {
        state: UpdateState::Completed,
        ..Default::default()
    });
    assert!(!matters(
        &task_of(&svc, 1, 1, TaskState::Running, now),
        Some(&done)
    ));
    // A task of another template (an update to start), a held successor, an unknown service.
    let old = task_of(&service("app:0", 3), 1, 1, TaskState::Running, now);
    assert!(matters(&old, Some(&svc)));
    let mut held = (*task_of(&svc, 1, 2, TaskState::Ready, now)).clone();
    held.spec.desired_state = TaskState::Ready;
    assert!(matters(&held, Some(&svc)));
    assert!(matters(&task_of(&svc, 1, 1, TaskState::Running, now), None));
    // During an update (paused too), every change.
    for state in [
        UpdateState::Updating,
        UpdateState::Paused,
        UpdateState::RollbackStarted,
    ] {
        let (mut svc, tasks, _) = updating(|_| {});
        svc.status.update_status.as_mut().unwrap().state = state;
        let current = task_of(&svc, 1, 2, TaskState::Preparing, now);
        assert!(matters(&current, Some(&svc)), "{state:?}");
        assert!(matters(&tasks[0], Some(&svc)));
    }
}
