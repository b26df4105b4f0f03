//! The gc controller against a real apiserver with simulated nodes.

mod common;

use common::*;
use swarm_api::{Duration, RestartCondition, Service, ServiceMode, TaskState};
use swarm_controllers::gc::FINALIZER;
use swarm_controllers::testing::Behaviour;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_service_deletes_its_tasks_first() {
    let c = start().await;
    c.sim.add_node("a").await.unwrap();
    let ctl = c.run("all", opts("r1"));
    c.create_service(&service("web", ServiceMode::Replicated { replicas: 2 }))
        .await;
    c.settle("2 replicas", |s| {
        running(s, "web").len() == 2
            && s.services[0]
                .metadata
                .finalizers
                .iter()
                .any(|f| f == FINALIZER)
    })
    .await;
    c.client.delete::<Service>("web", None).await.unwrap();
    c.wait_for("service and tasks gone", |s| {
        s.services.is_empty() && s.tasks.is_empty()
    })
    .await;
    ctl.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_of_a_deleted_service_are_collected_even_without_the_finalizer() {
    let c = start().await;
    c.sim.add_node("a").await.unwrap();
    // Only replication: no finalizer is put on the service.
    let ctl = c.run("replication", opts("r1"));
    c.create_service(&service("web", ServiceMode::Replicated { replicas: 2 }))
        .await;
    c.settle("2 replicas", |s| running(s, "web").len() == 2)
        .await;
    c.client.delete::<Service>("web", None).await.unwrap();
    let s = c.wait_for("service gone", |s| s.services.is_empty()).await;
    assert_eq!(s.tasks.len(), 2, "orphans remain without gc");
    let gc = c.run("gc", opts("g1"));
    c.wait_for("orphans deleted", |s| s.tasks.is_empty()).await;
    gc.stop().await;
    ctl.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_trimmed_to_the_limit_per_slot() {
    let c = start().await;
    c.sim.add_node("a").await.unwrap();
    c.sim.set_behaviour("crashy", Behaviour::FailOnStart);
    let mut svc = service("crashy", ServiceMode::Replicated { replicas: 1 });
    let policy = &mut svc.spec.task_template.restart_policy;
    policy.condition = RestartCondition::Any;
    policy.delay = Duration::ZERO;
    policy.max_attempts = 6;
    let mut o = opts("r1");
    o.history_limit = 2;
    let ctl = c.run("all", o);
    c.create_service(&svc).await;
    // 7 attempts in all (1 + 6 restarts); the newest (given up) and 2 more finished are kept.
    let s = c
        .wait_for("attempts 5..=7 kept", |s| {
            let names: Vec<&str> = tasks_of(s, "crashy")
                .iter()
                .map(|t| t.metadata.name.as_str())
                .collect();
            let all_failed = tasks_of(s, "crashy")
                .iter()
                .all(|t| t.status.state == TaskState::Failed);
            names == ["crashy.1.5", "crashy.1.6", "crashy.1.7"] && all_failed
        })
        .await;
    assert!(
        tasks_of(&s, "crashy")
            .iter()
            .all(|t| t.status.state == TaskState::Failed)
    );
    ctl.stop().await;
}
