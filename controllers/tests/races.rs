//! Two replication controllers acting at once, without leader election: the store settles
//! every race (deterministic task names created if absent, CAS on every other write, a slot's
//! stop-and-replace in one transaction), so the invariants hold on every snapshot and the
//! service converges.

mod common;

use std::collections::BTreeSet;

use common::*;
use swarm_api::{ServiceMode, TaskState};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_active_replication_controllers_never_break_the_invariants() {
    let c = start().await;
    for n in ["a", "b", "c"] {
        c.sim.add_node(n).await.unwrap();
    }
    let stop = CancellationToken::new();
    let mut handles = Vec::new();
    for id in ["x", "y"] {
        let (client, stop, o) = (c.client.clone(), stop.clone(), opts(id));
        handles.push(tokio::spawn(async move {
            swarm_controllers::replication::run(client, o, stop).await;
        }));
    }
    c.create_service(&service("web", ServiceMode::Replicated { replicas: 6 }))
        .await;
    for n in [6u64, 2, 8, 3, 5] {
        c.update_service("web", |s| {
            s.spec.mode = ServiceMode::Replicated { replicas: n }
        })
        .await;
        let s = c
            .settle(&format!("{n} replicas"), |s| {
                running(s, "web").len() as u64 == n
                    && tasks_of(s, "web")
                        .iter()
                        .filter(|t| t.spec.desired_state <= TaskState::Running)
                        .count() as u64
                        == n
            })
            .await;
        let slots: BTreeSet<u64> = running(&s, "web")
            .iter()
            .filter_map(|t| t.spec.slot)
            .collect();
        assert_eq!(slots.len() as u64, n);
    }

    // A task fails: both controllers see it; exactly one successor is created.
    let s = c
        .wait_for("web running", |s| running(s, "web").len() == 5)
        .await;
    let victim = running(&s, "web")[0].clone();
    c.sim.fail_task(&victim.metadata.name).await.unwrap();
    let slot = victim.spec.slot;
    let s = c
        .settle("the failed slot replaced", |s| {
            running(s, "web").len() == 5
                && running(s, "web")
                    .iter()
                    .any(|t| t.spec.slot == slot && t.spec.attempt > victim.spec.attempt)
        })
        .await;
    let successors: Vec<&str> = tasks_of(&s, "web")
        .iter()
        .filter(|t| t.spec.slot == slot && t.spec.attempt > victim.spec.attempt)
        .map(|t| t.metadata.name.as_str())
        .collect();
    assert_eq!(successors.len(), 1, "{successors:?}");
    stop.cancel();
    for h in handles {
        h.await.unwrap();
    }
}
