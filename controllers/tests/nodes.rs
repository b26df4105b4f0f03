//! The nodes controller against a real apiserver with simulated nodes.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use swarm_api::NodeState;
use swarm_controllers::nodes::DOWN_MESSAGE;

fn state(s: &swarm_controllers::invariants::Snapshot, node: &str) -> Option<NodeState> {
    s.nodes
        .iter()
        .find(|n| n.metadata.name == node)
        .map(|n| n.status.state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_node_goes_down_stays_down_across_a_restart_and_comes_back() {
    let c = start().await;
    c.sim.add_node("a").await.unwrap();
    c.sim.add_node("b").await.unwrap();
    let ctl = c.run("nodes", opts("n1"));
    c.sim.stop_node("b");
    let s = c
        .wait_for("b down", |s| state(s, "b") == Some(NodeState::Down))
        .await;
    let b = s.nodes.iter().find(|n| n.metadata.name == "b").unwrap();
    assert_eq!(b.status.message, DOWN_MESSAGE);
    assert_eq!(state(&s, "a"), Some(NodeState::Ready));
    ctl.stop().await;

    // A new controller process has never seen b's heartbeat move: b must stay down (it
    // would flap to ready for a whole timeout otherwise). "zz" goes silent after the restart;
    // by the time the new controller marks it down it has long judged b.
    let ctl = c.run("nodes", opts("n2"));
    c.sim.add_node("zz").await.unwrap();
    c.sim.stop_node("zz");
    let b_revived = AtomicBool::new(false);
    c.wait_for("zz down", |s| {
        if state(s, "b") != Some(NodeState::Down) {
            b_revived.store(true, Ordering::SeqCst);
        }
        state(s, "zz") == Some(NodeState::Down)
    })
    .await;
    assert!(
        !b_revived.load(Ordering::SeqCst),
        "b was revived without a heartbeat"
    );

    c.sim.restart_node("b");
    c.wait_for("b ready again", |s| state(s, "b") == Some(NodeState::Ready))
        .await;
    ctl.stop().await;
}
