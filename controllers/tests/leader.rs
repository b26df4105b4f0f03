//! Two replicas of a controller: one acts; when it is killed the other takes over.

mod common;

use common::*;
use swarm_api::{Lease, ServiceMode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standby_replica_takes_over_when_the_leader_is_killed() {
    let c = start().await;
    c.sim.add_node("a").await.unwrap();
    let one = c.run("replication", opts("one"));
    let two = c.run("replication", opts("two"));
    c.create_service(&service("web", ServiceMode::Replicated { replicas: 1 }))
        .await;
    c.settle("1 replica", |s| running(s, "web").len() == 1)
        .await;
    let lease = c
        .client
        .get::<Lease>("swarm-controller-replication")
        .await
        .unwrap();
    let leader = lease.spec.holder_identity.clone();
    assert!(leader == "one" || leader == "two", "{leader}");
    let (killed, standby, standby_id) = if leader == "one" {
        (one, two, "two")
    } else {
        (two, one, "one")
    };
    killed.kill().await;

    // Only a live controller can act on this change.
    c.update_service("web", |s| {
        s.spec.mode = ServiceMode::Replicated { replicas: 3 }
    })
    .await;
    c.settle("3 replicas under the new leader", |s| {
        running(s, "web").len() == 3
    })
    .await;
    let lease = c
        .client
        .get::<Lease>("swarm-controller-replication")
        .await
        .unwrap();
    assert_eq!(lease.spec.holder_identity, standby_id);
    assert_eq!(lease.spec.lease_transitions, 1);
    standby.stop().await;
}
