//! More tasks than one transaction holds: replication creates a service's tasks in batched
//! transactions (`CREATE_BATCH`) and gc deletes them in batches; a service bigger than two
//! batches gets exactly one task per slot, and all of them go with the service. (How long this
//! takes at 100,000 tasks is `bench/src/bin/e2e.rs`'s business, not a test's.)

mod common;

use std::collections::BTreeSet;

use common::*;
use swarm_api::ServiceMode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_larger_than_several_batches_gets_every_slot_once_and_gc_takes_them_all() {
    let n: u64 = 250;
    let c = start().await;
    let replication = c.run("replication", opts("r1"));
    c.create_service(&service("big", ServiceMode::Replicated { replicas: n }))
        .await;
    let snap = c
        .wait_for("250 tasks", |s| tasks_of(s, "big").len() as u64 == n)
        .await;
    let slots: BTreeSet<u64> = tasks_of(&snap, "big")
        .iter()
        .filter_map(|t| t.spec.slot)
        .collect();
    assert_eq!(slots, (1..=n).collect::<BTreeSet<u64>>());

    let gc = c.run("gc", opts("g1"));
    c.client
        .delete::<swarm_api::Service>("big", None)
        .await
        .unwrap();
    c.wait_for("every task deleted", |s| {
        s.tasks.is_empty() && s.services.is_empty()
    })
    .await;
    gc.stop().await;
    replication.stop().await;
}
