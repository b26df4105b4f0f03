//! The replication and nodes controllers against a real apiserver with simulated nodes.

mod common;

use std::collections::BTreeSet;

use common::*;
use swarm_api::{Duration, NodeAvailability, NodeState, RestartCondition, ServiceMode, TaskState};
use swarm_controllers::testing::Behaviour;

fn slots(tasks: &[&swarm_api::Task]) -> BTreeSet<u64> {
    tasks.iter().filter_map(|t| t.spec.slot).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_up_fills_slots_and_scale_down_empties_the_busiest_nodes_first() {
    let c = start().await;
    c.sim.add_node("a").await.unwrap();
    let ctl = c.run("replication", opts("r1"));
    c.create_service(&service("web", ServiceMode::Replicated { replicas: 3 }))
        .await;
    let s = c
        .settle("3 replicas on a", |s| running(s, "web").len() == 3)
        .await;
    assert_eq!(slots(&running(&s, "web")), BTreeSet::from([1, 2, 3]));
    let status = c
        .client
        .get::<swarm_api::Service>("web")
        .await
        .unwrap()
        .status;
    assert_eq!(status.observed_generation, 1);

    // Two more nodes; scale to 5: the new slots 4 and 5 land on b and c.
    c.sim.add_node("b").await.unwrap();
    c.sim.add_node("c").await.unwrap();
    c.update_service("web", |s| {
        s.spec.mode = ServiceMode::Replicated { replicas: 5 }
    })
    .await;
    let s = c
        .settle("5 replicas", |s| running(s, "web").len() == 5)
        .await;
    let on = |node: &str| {
        running(&s, "web")
            .iter()
            .filter(|t| t.spec.node_name.as_deref() == Some(node))
            .count()
    };
    assert_eq!((on("a"), on("b"), on("c")), (3, 1, 1));

    // Down to 3: a holds three copies, so its highest-indexed ones go (slots 3, then 2).
    c.update_service("web", |s| {
        s.spec.mode = ServiceMode::Replicated { replicas: 3 }
    })
    .await;
    let s = c
        .settle("3 replicas again", |s| {
            running(s, "web").len() == 3
                && s.services[0].status.replicas.running == 3
                && tasks_of(s, "web")
                    .iter()
                    .filter(|t| t.spec.desired_state == TaskState::Remove)
                    .all(|t| t.status.state == TaskState::Shutdown)
        })
        .await;
    assert_eq!(slots(&running(&s, "web")), BTreeSet::from([1, 4, 5]));
    let nodes: BTreeSet<_> = running(&s, "web")
        .iter()
        .filter_map(|t| t.spec.node_name.clone())
        .collect();
    assert_eq!(nodes.len(), 3, "one per node after scale down");
    let removed: Vec<String> = tasks_of(&s, "web")
        .iter()
        .filter(|t| t.spec.desired_state == TaskState::Remove)
        .map(|t| t.metadata.name.clone())
        .collect();
    assert_eq!(removed, vec!["web.2.1", "web.3.1"]);

    // Up to 4: the lowest free slot (2) is reused, with the next attempt number.
    c.update_service("web", |s| {
        s.spec.mode = ServiceMode::Replicated { replicas: 4 }
    })
    .await;
    let s = c
        .settle("4 replicas", |s| running(s, "web").len() == 4)
        .await;
    assert!(
        running(&s, "web")
            .iter()
            .any(|t| t.metadata.name == "web.2.2"),
        "{}",
        describe(&s)
    );
    let svc = c.client.get::<swarm_api::Service>("web").await.unwrap();
    assert_eq!(svc.status.replicas.desired, 4);
    assert_eq!(svc.status.observed_generation, svc.metadata.generation);
    ctl.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_global_service_follows_node_joins_drains_and_constraints() {
    let c = start().await;
    c.sim.add_node("a").await.unwrap();
    c.sim.add_node("b").await.unwrap();
    let ctl = c.run("replication", opts("r1"));
    c.create_service(&service("agent", ServiceMode::Global {}))
        .await;
    let on_nodes = |s: &swarm_controllers::invariants::Snapshot| -> BTreeSet<String> {
        running(s, "agent")
            .iter()
            .filter_map(|t| t.spec.node_name.clone())
            .collect()
    };
    let s = c
        .settle("one per node", |s| running(s, "agent").len() == 2)
        .await;
    assert_eq!(on_nodes(&s), BTreeSet::from(["a".into(), "b".into()]));
    assert!(
        tasks_of(&s, "agent")
            .iter()
            .any(|t| t.metadata.name == "agent.a.1")
    );

    c.sim.add_node("c").await.unwrap();
    let s = c
        .settle("the new node gets one", |s| running(s, "agent").len() == 3)
        .await;
    assert!(on_nodes(&s).contains("c"));

    c.sim
        .set_availability("b", NodeAvailability::Drain)
        .await
        .unwrap();
    let s = c
        .settle("drained b has none", |s| {
            running(s, "agent").len() == 2
                && tasks_of(s, "agent").iter().any(|t| {
                    t.metadata.name == "agent.b.1" && t.status.state == TaskState::Shutdown
                })
        })
        .await;
    assert_eq!(on_nodes(&s), BTreeSet::from(["a".into(), "c".into()]));

    c.update_service("agent", |s| {
        s.spec.task_template.placement.constraints = vec!["node.hostname!=c".into()];
    })
    .await;
    let s = c
        .settle("c no longer matches", |s| running(s, "agent").len() == 1)
        .await;
    assert_eq!(on_nodes(&s), BTreeSet::from(["a".into()]));

    c.sim
        .set_availability("b", NodeAvailability::Active)
        .await
        .unwrap();
    let s = c
        .settle("b is back in", |s| running(s, "agent").len() == 2)
        .await;
    assert!(
        running(&s, "agent")
            .iter()
            .any(|t| t.metadata.name == "agent.b.2"),
        "{}",
        describe(&s)
    );
    ctl.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_max_attempts_survives_a_controller_restart() {
    let c = start().await;
    c.sim.add_node("a").await.unwrap();
    c.sim.set_behaviour("crashy", Behaviour::FailOnStart);
    let mut svc = service("crashy", ServiceMode::Replicated { replicas: 1 });
    let policy = &mut svc.spec.task_template.restart_policy;
    policy.condition = RestartCondition::OnFailure;
    policy.delay = Duration::ZERO;
    policy.max_attempts = 2;
    let ctl = c.run("replication", opts("r1"));
    c.create_service(&svc).await;
    // The first task and two restarts, all failed; then the slot is given up.
    let failed = |s: &swarm_controllers::invariants::Snapshot| {
        tasks_of(s, "crashy")
            .iter()
            .filter(|t| t.status.state == TaskState::Failed)
            .count()
    };
    let s = c.wait_for("three failures", |s| failed(s) == 3).await;
    let names: Vec<&str> = tasks_of(&s, "crashy")
        .iter()
        .map(|t| t.metadata.name.as_str())
        .collect();
    assert_eq!(names, vec!["crashy.1.1", "crashy.1.2", "crashy.1.3"]);
    ctl.stop().await;

    // A new controller process (concurrency 1: keys in order) reads the count back from the
    // objects. "zz-probe" is listed after "crashy", so once its task exists, crashy has been
    // reconciled by the new controller.
    let mut o = opts("r2");
    o.concurrency = 1;
    let ctl = c.run("replication", o);
    c.create_service(&service(
        "zz-probe",
        ServiceMode::Replicated { replicas: 1 },
    ))
    .await;
    let s = c
        .wait_for("the probe runs", |s| running(s, "zz-probe").len() == 1)
        .await;
    assert_eq!(
        tasks_of(&s, "crashy").len(),
        3,
        "restarted again:\n{}",
        describe(&s)
    );

    // A spec change starts the count over.
    c.update_service("crashy", |s| {
        s.spec
            .task_template
            .container
            .env
            .insert("V".into(), "2".into());
    })
    .await;
    c.wait_for("three more attempts", |s| failed(s) == 6).await;
    ctl.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_of_a_down_node_are_replaced_and_stopped_when_it_returns() {
    let c = start().await;
    c.sim.add_node("a").await.unwrap();
    c.sim.add_node("b").await.unwrap();
    let ctl = c.run("all", opts("r1"));
    c.create_service(&service("web", ServiceMode::Replicated { replicas: 2 }))
        .await;
    let s = c
        .settle("2 replicas", |s| running(s, "web").len() == 2)
        .await;
    // The node of one running task goes away; which one does not matter (placement may put
    // both tasks on the node that was ready first), the other node must end up with both.
    let (stale_task, gone) = running(&s, "web")
        .first()
        .map(|t| (t.metadata.name.clone(), t.spec.node_name.clone()))
        .expect("a running task");
    let gone = gone.expect("a running task has a node");
    let kept = if gone == "a" { "b" } else { "a" };

    c.sim.stop_node(&gone);
    let s = c
        .settle("the node down, its task replaced on the other", |s| {
            let down = s
                .nodes
                .iter()
                .any(|n| n.metadata.name == gone && n.status.state == NodeState::Down);
            down && running(s, "web")
                .iter()
                .all(|t| t.spec.node_name.as_deref() == Some(kept))
                && running(s, "web").len() == 2
        })
        .await;
    let stale = s
        .tasks
        .iter()
        .find(|t| t.metadata.name == stale_task)
        .unwrap();
    assert_eq!(stale.spec.desired_state, TaskState::Shutdown);

    c.sim.restart_node(&gone);
    c.settle("the node back, its stale task stopped", |s| {
        let ready = s
            .nodes
            .iter()
            .any(|n| n.metadata.name == gone && n.status.state == NodeState::Ready);
        ready
            && s.tasks
                .iter()
                .any(|t| t.metadata.name == stale_task && t.status.state == TaskState::Shutdown)
    })
    .await;
    ctl.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicated_job_runs_to_completion_within_max_concurrent() {
    let c = start().await;
    c.sim.add_node("a").await.unwrap();
    c.sim.add_node("b").await.unwrap();
    let ctl = c.run("replication", opts("r1"));
    c.create_service(&service(
        "batch",
        ServiceMode::ReplicatedJob {
            max_concurrent: 2,
            total_completions: 5,
        },
    ))
    .await;
    let s = c
        .wait_for("5 completions", |s| {
            let active = tasks_of(s, "batch")
                .iter()
                .filter(|t| !t.status.state.is_terminal())
                .count();
            assert!(
                active <= 2,
                "more than maxConcurrent active:\n{}",
                describe(s)
            );
            s.services[0].status.replicas.completed == 5
        })
        .await;
    let names: Vec<&str> = tasks_of(&s, "batch")
        .iter()
        .map(|t| t.metadata.name.as_str())
        .collect();
    assert_eq!(
        names,
        vec![
            "batch.1.1",
            "batch.2.1",
            "batch.3.1",
            "batch.4.1",
            "batch.5.1"
        ]
    );
    assert!(
        tasks_of(&s, "batch")
            .iter()
            .all(|t| t.status.state == TaskState::Complete)
    );
    ctl.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_global_job_completes_once_per_node_including_nodes_that_join() {
    let c = start().await;
    c.sim.add_node("a").await.unwrap();
    c.sim.add_node("b").await.unwrap();
    let ctl = c.run("replication", opts("r1"));
    c.create_service(&service("migrate", ServiceMode::GlobalJob {}))
        .await;
    let done = |s: &swarm_controllers::invariants::Snapshot| {
        tasks_of(s, "migrate")
            .iter()
            .filter(|t| t.status.state == TaskState::Complete)
            .count()
    };
    c.wait_for("a and b complete", |s| {
        done(s) == 2 && s.services[0].status.replicas.completed == 2
    })
    .await;
    c.sim.add_node("c").await.unwrap();
    let s = c
        .wait_for("c completes too", |s| {
            done(s) == 3 && s.services[0].status.replicas.completed == 3
        })
        .await;
    let names: Vec<&str> = tasks_of(&s, "migrate")
        .iter()
        .map(|t| t.metadata.name.as_str())
        .collect();
    assert_eq!(names, vec!["migrate.a.1", "migrate.b.1", "migrate.c.1"]);
    ctl.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_creates_that_loses_one_name_still_creates_the_rest() {
    let c = start().await;
    // "web.2.1" is taken by a task of another service, so replication's view of web has no
    // slot 2 and its batch of creates collides on that name.
    let squatter = swarm_api::Task::new(
        "web.2.1",
        swarm_api::TaskSpec {
            service: "other".into(),
            ..Default::default()
        },
    );
    c.client.create(&squatter).await.unwrap();
    let ctl = c.run("replication", opts("r1"));
    c.create_service(&service("web", ServiceMode::Replicated { replicas: 3 }))
        .await;
    let s = c
        .wait_for("slots 1 and 3 created", |s| tasks_of(s, "web").len() == 2)
        .await;
    let names: Vec<&str> = tasks_of(&s, "web")
        .iter()
        .map(|t| t.metadata.name.as_str())
        .collect();
    assert_eq!(names, vec!["web.1.1", "web.3.1"]);
    ctl.stop().await;
}
