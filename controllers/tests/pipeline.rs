//! The whole task pipeline with every controller (`swarm-controller all`) and no shortcuts:
//! replication creates (NEW), ipam allocates (PENDING), placement binds (ASSIGNED), the
//! simulated agents run the tasks — with the invariants checked on every snapshot.

mod common;

use std::collections::BTreeSet;

use common::*;
use swarm_api::{
    Network, NetworkAttachmentConfig, NetworkSpec, NodeAvailability, ServiceMode, TaskState,
};
use swarm_controllers::testing::{Sim, SimOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_flow_through_ipam_and_placement_to_running_and_leave_a_drained_node() {
    let mut c = start().await;
    // Agents only: ipam and placement do their own jobs.
    c.sim = Sim::start(
        c.client.clone(),
        SimOptions {
            heartbeat_period: std::time::Duration::from_millis(100),
            assign: false,
            ..SimOptions::default()
        },
    );
    for n in ["a", "b"] {
        c.sim.add_node(n).await.unwrap();
    }
    c.client
        .create(&Network::new("backend", NetworkSpec::default()))
        .await
        .unwrap();
    let ctl = c.run("all", opts("all-1"));
    let mut svc = service("web", ServiceMode::Replicated { replicas: 4 });
    svc.spec.task_template.networks = vec![NetworkAttachmentConfig {
        target: "backend".into(),
        ..Default::default()
    }];
    c.create_service(&svc).await;
    let s = c
        .settle("4 replicas through the pipeline", |s| {
            running(s, "web").len() == 4
        })
        .await;
    // ipam gave every task its own address on the network; placement spread them.
    let addrs: BTreeSet<String> = running(&s, "web")
        .iter()
        .flat_map(|t| t.spec.networks.iter().flat_map(|a| a.addresses.clone()))
        .collect();
    assert_eq!(addrs.len(), 4, "{}", describe(&s));
    let on_a = running(&s, "web")
        .iter()
        .filter(|t| t.spec.node_name.as_deref() == Some("a"))
        .count();
    assert_eq!(on_a, 2, "{}", describe(&s));

    c.sim
        .set_availability("b", NodeAvailability::Drain)
        .await
        .unwrap();
    let s = c
        .settle("everything on a", |s| {
            running(s, "web").len() == 4
                && running(s, "web")
                    .iter()
                    .all(|t| t.spec.node_name.as_deref() == Some("a"))
                && tasks_of(s, "web")
                    .iter()
                    .filter(|t| t.spec.node_name.as_deref() == Some("b"))
                    .all(|t| t.status.state == TaskState::Shutdown)
        })
        .await;
    assert!(
        tasks_of(&s, "web").iter().any(|t| t.spec.attempt == 2),
        "drained tasks were replaced in their slots:\n{}",
        describe(&s)
    );
    ctl.stop().await;
}
