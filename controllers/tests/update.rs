//! The update controller against a real apiserver, with replication running and the node
//! simulator standing in for ipam, placement and the agents. Every poll also checks the
//! always-true invariants (never two wanted tasks in one slot, stop-first).

mod common;

use std::time::Duration;

use swarm_api::{FailureAction, Service, ServiceMode, ServiceSpec, Task, TaskState, UpdateState};
use swarm_client::Client;
use swarm_controllers::Options;
use swarm_controllers::invariants::{Snapshot, check};
use swarm_controllers::testing::{Behaviour, Sim, SimOptions};
use swarm_controllers::update::UPDATE_ANNOTATION;
use tokio_util::sync::CancellationToken;

const PATIENCE: Duration = Duration::from_secs(30);

struct Harness {
    _server: swarm_apiserver::server::RunningServer,
    client: Client,
    sim: Sim,
    stop: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn start() -> Harness {
    let (server, _store, client, dir) = common::apiserver().await;
    let sim = Sim::start(
        client.clone(),
        SimOptions {
            heartbeat_period: Duration::from_millis(100),
            ..SimOptions::default()
        },
    );
    for n in ["n1", "n2", "n3"] {
        sim.add_node(n).await.unwrap();
    }
    let stop = CancellationToken::new();
    for name in ["replication", "update"] {
        let options = Options {
            identity: format!("{name}-test"),
            lease_duration: Duration::from_secs(2),
            heartbeat_period: Duration::from_millis(400),
            concurrency: 2,
            ..Options::default()
        };
        let (c, token) = (client.clone(), stop.clone());
        tokio::spawn(async move {
            swarm_controllers::run(name, c, options, token)
                .await
                .unwrap();
        });
    }
    Harness {
        _server: server,
        client,
        sim,
        stop,
        _dir: dir,
    }
}

fn web(image: &str) -> Service {
    let mut spec = ServiceSpec {
        mode: ServiceMode::Replicated { replicas: 3 },
        ..Default::default()
    };
    spec.task_template.container.image = image.into();
    spec.task_template.restart_policy.delay = swarm_api::Duration::from_secs(0);
    spec.update_config.monitor = swarm_api::Duration::from_secs(0);
    spec.rollback_config.monitor = swarm_api::Duration::from_secs(0);
    Service::new("web", spec)
}

impl Harness {
    /// Polls until `pred` holds, checking the invariants on every snapshot.
    async fn until(
        &self,
        what: &str,
        pred: impl Fn(&Snapshot, &Service) -> bool,
    ) -> (Snapshot, Service) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let snap = Snapshot::read(&self.client).await.unwrap();
            let broken = check(&snap);
            assert!(
                broken.is_empty(),
                "invariants broken waiting for {what}: {broken:#?}"
            );
            let svc = self.client.get::<Service>("web").await.unwrap();
            if pred(&snap, &svc) {
                return (snap, svc);
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "gave up waiting for {what}: {:?}\n{:#?}",
                svc.status.update_status,
                snap.tasks
                    .iter()
                    .map(|t| (
                        &t.metadata.name,
                        &t.spec.template.container.image,
                        t.spec.desired_state,
                        t.status.state
                    ))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Like `until`, failing (as their node would report a crash) the tasks the update created
    /// with `image` in `slots`, each as soon as it runs: within any monitor window.
    async fn fail_and_wait(
        &self,
        image: &str,
        slots: &[u64],
        what: &str,
        pred: impl Fn(&Snapshot, &Service) -> bool,
    ) -> (Snapshot, Service) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let snap = Snapshot::read(&self.client).await.unwrap();
            let broken = check(&snap);
            assert!(broken.is_empty(), "invariants broken: {broken:#?}");
            // Judged before this round's failures: the snapshot returned has every failure
            // that led to the state `pred` saw (those of earlier rounds).
            let svc = self.client.get::<Service>("web").await.unwrap();
            if pred(&snap, &svc) {
                return (snap, svc);
            }
            for t in &snap.tasks {
                if t.spec.template.container.image == image
                    && t.metadata.annotations.contains_key(UPDATE_ANNOTATION)
                    && t.spec.slot.is_some_and(|s| slots.contains(&s))
                    && t.status.state == TaskState::Running
                {
                    self.sim.fail_task(&t.metadata.name).await.unwrap();
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "gave up waiting for {what}: {:?}",
                svc.status.update_status
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn edit(&self, f: impl Fn(&mut Service)) {
        for _ in 0..20 {
            let mut s = self.client.get::<Service>("web").await.unwrap();
            f(&mut s);
            match self.client.replace(&s).await {
                Ok(_) => return,
                Err(e) if e.is_conflict() => continue,
                Err(e) => panic!("{e}"),
            }
        }
        panic!("kept conflicting");
    }
}

/// Wanted tasks observed running, with their images.
fn running(s: &Snapshot) -> Vec<&Task> {
    s.tasks
        .iter()
        .filter(|t| {
            t.spec.service == "web"
                && t.spec.desired_state == TaskState::Running
                && t.status.state == TaskState::Running
        })
        .collect()
}

fn all_on(s: &Snapshot, image: &str) -> bool {
    let r = running(s);
    r.len() == 3 && r.iter().all(|t| t.spec.template.container.image == image)
}

fn state(svc: &Service) -> Option<UpdateState> {
    svc.status.update_status.as_ref().map(|u| u.state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_update_replaces_every_task_and_completes() {
    let h = start().await;
    h.client.create(&web("hello:1")).await.unwrap();
    h.until("v1 running", |s, _| all_on(s, "hello:1")).await;
    h.edit(|s| s.spec.task_template.container.image = "hello:2".into())
        .await;
    let (snap, svc) = h
        .until("update completed on v2", |s, svc| {
            state(svc) == Some(UpdateState::Completed) && all_on(s, "hello:2")
        })
        .await;
    let u = svc.status.update_status.unwrap();
    assert_eq!(u.message, "update completed");
    assert!(u.completed_at.is_some());
    assert_eq!(svc.status.revisions.len(), 2);
    assert_eq!(svc.status.revisions[0].template.container.image, "hello:1");
    // Every slot got a successor: attempt 2, the old task shut down.
    for t in running(&snap) {
        assert_eq!(t.spec.attempt, 2, "{}", t.metadata.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_update_pauses_then_a_manual_rollback_restores() {
    let h = start().await;
    h.client.create(&web("hello:1")).await.unwrap();
    h.until("v1 running", |s, _| all_on(s, "hello:1")).await;
    h.sim.set_behaviour("web", Behaviour::FailOnStart);
    h.edit(|s| s.spec.task_template.container.image = "hello:bad".into())
        .await;
    let (snap, svc) = h
        .until("paused", |_, svc| state(svc) == Some(UpdateState::Paused))
        .await;
    let msg = svc.status.update_status.unwrap().message;
    assert!(
        msg.starts_with("update paused due to failure or early termination of task web."),
        "{msg}"
    );
    // Paused after the first slot: the two others still run v1.
    let v1 = running(&snap)
        .into_iter()
        .filter(|t| t.spec.template.container.image == "hello:1")
        .count();
    assert_eq!(v1, 2);

    h.sim.set_behaviour("web", Behaviour::Run);
    h.edit(|s| {
        s.metadata
            .annotations
            .insert("swarm.rollback".into(), "previous".into());
    })
    .await;
    let (_, svc) = h
        .until("rolled back to v1", |s, svc| {
            state(svc) == Some(UpdateState::RollbackCompleted) && all_on(s, "hello:1")
        })
        .await;
    assert_eq!(svc.spec.task_template.container.image, "hello:1");
    assert!(!svc.metadata.annotations.contains_key("swarm.rollback"));
    assert_eq!(
        svc.status.update_status.unwrap().message,
        "rollback completed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_action_rollback_goes_back_by_itself() {
    let h = start().await;
    let mut svc = web("hello:1");
    svc.spec.update_config.failure_action = FailureAction::Rollback;
    svc.spec.update_config.parallelism = 0;
    h.client.create(&svc).await.unwrap();
    h.until("v1 running", |s, _| all_on(s, "hello:1")).await;
    h.sim.set_behaviour("web", Behaviour::FailOnStart);
    h.edit(|s| s.spec.task_template.container.image = "hello:bad".into())
        .await;
    let (_, svc) = h
        .until("rollback started", |_, svc| {
            matches!(
                state(svc),
                Some(UpdateState::RollbackStarted | UpdateState::RollbackPaused)
            )
        })
        .await;
    let u = svc.status.update_status.clone().unwrap();
    assert!(
        u.message
            .starts_with("update rolled back due to failure or early termination of task web."),
        "{}",
        u.message
    );
    assert_eq!(svc.spec.task_template.container.image, "hello:1");
    assert_eq!(svc.status.revisions.len(), 3, "v1, bad, v1 again");
}

/// Tasks of the update to `image` that failed.
fn failed_of(s: &Snapshot, image: &str) -> Vec<String> {
    let mut v: Vec<String> = s
        .tasks
        .iter()
        .filter(|t| {
            t.spec.template.container.image == image
                && t.metadata.annotations.contains_key(UPDATE_ANNOTATION)
                && t.status.state == TaskState::Failed
        })
        .map(|t| t.metadata.name.clone())
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_after_the_monitor_window_does_not_pause_the_update() {
    let h = start().await;
    let mut svc = web("hello:1");
    svc.spec.mode = ServiceMode::Replicated { replicas: 2 };
    // Monitor 1 s; the 3 s delay keeps the update going well past it.
    svc.spec.update_config.monitor = swarm_api::Duration::from_secs(1);
    svc.spec.update_config.delay = swarm_api::Duration::from_secs(3);
    h.client.create(&svc).await.unwrap();
    h.until("v1 running", |s, _| {
        running(s).len() == 2
            && running(s)
                .iter()
                .all(|t| t.spec.template.container.image == "hello:1")
    })
    .await;
    h.edit(|s| s.spec.task_template.container.image = "hello:2".into())
        .await;
    let (snap, _) = h
        .until("slot 1 runs v2", |s, _| {
            s.tasks
                .iter()
                .any(|t| t.metadata.name == "web.1.2" && t.status.state == TaskState::Running)
        })
        .await;
    let up = snap
        .tasks
        .iter()
        .find(|t| t.metadata.name == "web.1.2")
        .and_then(|t| t.status.timestamp)
        .unwrap()
        .0;
    // Two seconds after it reached RUNNING: outside the 1 s monitor window.
    let past = up + Duration::from_secs(2);
    if let Ok(wait) = past.duration_since(std::time::SystemTime::now()) {
        tokio::time::sleep(wait).await;
    }
    h.sim.fail_task("web.1.2").await.unwrap();
    let svc = h.client.get::<Service>("web").await.unwrap();
    assert_eq!(
        state(&svc),
        Some(UpdateState::Updating),
        "the failure happened during the update"
    );
    let (snap, svc) = h
        .until("update completed on v2", |s, svc| {
            matches!(
                state(svc),
                Some(UpdateState::Completed | UpdateState::Paused)
            ) && running(s).len() == 2
                && running(s)
                    .iter()
                    .all(|t| t.spec.template.container.image == "hello:2")
        })
        .await;
    assert_eq!(
        state(&svc),
        Some(UpdateState::Completed),
        "{:?}",
        svc.status.update_status
    );
    assert_eq!(failed_of(&snap, "hello:2"), ["web.1.2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_failure_ratio_is_over_the_slots_the_update_started_with() {
    let h = start().await;
    let mut svc = web("hello:1");
    svc.spec.mode = ServiceMode::Replicated { replicas: 4 };
    svc.spec.update_config.max_failure_ratio = 0.5;
    // Every failure below lands well within the monitor window.
    svc.spec.update_config.monitor = swarm_api::Duration::from_secs(10);
    h.client.create(&svc).await.unwrap();
    let on = |s: &Snapshot, image: &str| {
        let r = running(s);
        r.len() == 4 && r.iter().all(|t| t.spec.template.container.image == image)
    };
    h.until("v1 running", |s, _| on(s, "hello:1")).await;

    // Two of the four slots fail: 2/4 is not more than 0.5, so the update goes on to the
    // end. (Over the slots left to do when the second failure comes, it would pause.)
    h.edit(|s| s.spec.task_template.container.image = "hello:2".into())
        .await;
    let (snap, svc) = h
        .fail_and_wait(
            "hello:2",
            &[1, 2],
            "the update past two failures",
            |s, svc| {
                matches!(
                    state(svc),
                    Some(UpdateState::Completed | UpdateState::Paused)
                ) && on(s, "hello:2")
            },
        )
        .await;
    let u = svc.status.update_status.unwrap();
    assert_eq!(u.state, UpdateState::Completed, "{}", u.message);
    assert_eq!(u.dirty_slots, 4);
    assert_eq!(failed_of(&snap, "hello:2"), ["web.1.2", "web.2.2"]);

    // A new update; three of its four slots fail: 3/4 > 0.5 pauses it, at the third.
    h.edit(|s| s.spec.task_template.container.image = "hello:3".into())
        .await;
    let (snap, svc) = h
        .fail_and_wait("hello:3", &[1, 2, 3], "paused", |_, svc| {
            state(svc) == Some(UpdateState::Paused)
        })
        .await;
    let failed = failed_of(&snap, "hello:3");
    assert_eq!(failed.len(), 3, "{failed:?}");
    let u = svc.status.update_status.unwrap();
    assert_eq!(u.dirty_slots, 4);
    assert_eq!(
        u.message,
        format!(
            "update paused due to failure or early termination of task {}",
            failed[2]
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_counts_failures_over_its_own_dirty_slots() {
    let h = start().await;
    let mut svc = web("hello:1");
    svc.spec.mode = ServiceMode::Replicated { replicas: 4 };
    svc.spec.update_config.monitor = swarm_api::Duration::from_secs(10);
    // Slot 2 waits 5 s after slot 1: the failure in slot 1 pauses the update before that.
    svc.spec.update_config.delay = swarm_api::Duration::from_secs(5);
    h.client.create(&svc).await.unwrap();
    let on = |s: &Snapshot, image: &str| {
        running(s)
            .iter()
            .filter(|t| t.spec.template.container.image == image)
            .count()
    };
    h.until("v1 running", |s, _| on(s, "hello:1") == 4).await;
    // The update to v2 pauses at its first failure (ratio 0), in slot 1; slot 1 restarts on
    // v2, slots 2-4 stay on v1.
    h.edit(|s| s.spec.task_template.container.image = "hello:2".into())
        .await;
    h.fail_and_wait("hello:2", &[1], "paused", |_, svc| {
        state(svc) == Some(UpdateState::Paused)
    })
    .await;
    h.until("slot 1 back up on v2", |s, _| {
        on(s, "hello:2") == 1 && on(s, "hello:1") == 3
    })
    .await;

    // Roll back, tolerating half the slots failing. Only slot 1 needs rolling back, so one
    // failure is 1/1 > 0.5: paused. (Over all four slots it would be 1/4, and go on.)
    h.edit(|s| {
        s.spec.rollback_config.max_failure_ratio = 0.5;
        s.spec.rollback_config.monitor = swarm_api::Duration::from_secs(10);
        s.metadata
            .annotations
            .insert("swarm.rollback".into(), "previous".into());
    })
    .await;
    let (_, svc) = h
        .fail_and_wait("hello:1", &[1], "rollback paused", |_, svc| {
            state(svc) == Some(UpdateState::RollbackPaused)
        })
        .await;
    let u = svc.status.update_status.unwrap();
    assert_eq!(u.dirty_slots, 1);
    assert!(
        u.message
            .starts_with("rollback paused due to failure or early termination of task web.1."),
        "{}",
        u.message
    );
}
