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
