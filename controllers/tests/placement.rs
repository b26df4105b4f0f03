//! The placement controller against a real apiserver, with simulated nodes (the simulator's
//! own placement turned off). Tasks are created PENDING, as ipam leaves them.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use swarm_api::{Node, NodeAvailability, NodeSpec, Task, TaskSpec, TaskState};
use swarm_client::Client;
use swarm_controllers::Options;
use swarm_controllers::testing::{Sim, SimOptions};
use tokio_util::sync::CancellationToken;

const PATIENCE: Duration = Duration::from_secs(20);

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
            assign: false,
            ..SimOptions::default()
        },
    );
    let stop = CancellationToken::new();
    let options = Options {
        identity: "placement-test".into(),
        lease_duration: Duration::from_secs(2),
        ..Options::default()
    };
    let (c, token) = (client.clone(), stop.clone());
    tokio::spawn(async move {
        swarm_controllers::run("placement", c, options, token)
            .await
            .unwrap();
    });
    Harness {
        _server: server,
        client,
        sim,
        stop,
        _dir: dir,
    }
}

impl Harness {
    async fn node(&self, name: &str, labels: &[(&str, &str)], memory: i64) {
        let spec = NodeSpec {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            ..Default::default()
        };
        self.sim.add_node_with(name, spec).await.unwrap();
        if memory > 0 {
            for _ in 0..10 {
                let mut n = self.client.get::<Node>(name).await.unwrap();
                n.status.resources.memory_bytes = memory;
                n.status.resources.nano_cpus = 2_000_000_000;
                match self.client.replace_status(&n).await {
                    Ok(_) => break,
                    Err(e) if e.is_conflict() => continue,
                    Err(e) => panic!("{e}"),
                }
            }
        }
    }

    /// Waits until placement's node cache holds `node` and the nodes added before it. Each
    /// kind has its own watch, so tasks created right after their nodes may reach placement
    /// first, and a pass on that partial view puts every task on the nodes it has (the spread
    /// tests below failed that way about once in twenty runs on a loaded machine). A probe
    /// task that only `node` may run is placed once placement has seen it, and node events
    /// arrive in order; the probe is deleted again.
    async fn placement_sees(&self, node: &str) {
        let probe = format!("probe-{node}");
        self.pending(&probe, 1, |t| {
            t.spec.template.placement.constraints = vec![format!("node.id=={node}")];
        })
        .await;
        self.wait_for("the probe placed", &probe, |ts| placed(ts) == 1)
            .await;
        self.client
            .delete::<Task>(&format!("{probe}.1.1"), None)
            .await
            .unwrap();
    }

    /// Creates a PENDING task of `service` in `slot`, shaped by `f`.
    async fn pending(&self, service: &str, slot: u64, f: impl Fn(&mut Task)) {
        let mut t = Task::new(
            format!("{service}.{slot}.1"),
            TaskSpec {
                service: service.into(),
                slot: Some(slot),
                attempt: 1,
                service_generation: 1,
                desired_state: TaskState::Running,
                ..Default::default()
            },
        );
        t.spec.template.container.image = "swarm-examples/hello:1".into();
        f(&mut t);
        let mut t = self.client.create(&t).await.unwrap();
        t.status.state = TaskState::Pending;
        self.client.replace_status(&t).await.unwrap();
    }

    async fn tasks(&self, service: &str) -> Vec<Task> {
        let list = self
            .client
            .list_all::<Task>(&Default::default())
            .await
            .unwrap();
        let mut v: Vec<Task> = list
            .items
            .into_iter()
            .filter(|t| t.spec.service == service)
            .collect();
        v.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        v
    }

    async fn wait_for(
        &self,
        what: &str,
        service: &str,
        pred: impl Fn(&[Task]) -> bool,
    ) -> Vec<Task> {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let tasks = self.tasks(service).await;
            if pred(&tasks) {
                return tasks;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "gave up waiting for {what}: {:#?}",
                tasks
                    .iter()
                    .map(|t| (
                        &t.metadata.name,
                        &t.spec.node_name,
                        t.status.state,
                        &t.status.message
                    ))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn per_node(tasks: &[Task]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for t in tasks {
        if let Some(n) = &t.spec.node_name {
            *m.entry(n.clone()).or_default() += 1;
        }
    }
    m
}

fn placed(tasks: &[Task]) -> usize {
    tasks
        .iter()
        .filter(|t| t.spec.node_name.is_some() && t.status.state >= TaskState::Assigned)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_tasks_are_assigned_and_spread() {
    let h = start().await;
    for n in ["n1", "n2", "n3"] {
        h.node(n, &[], 0).await;
    }
    h.placement_sees("n3").await;
    for slot in 1..=6 {
        h.pending("web", slot, |_| {}).await;
    }
    let tasks = h
        .wait_for("all six running", "web", |ts| {
            ts.len() == 6 && ts.iter().all(|t| t.status.state == TaskState::Running)
        })
        .await;
    let m = per_node(&tasks);
    assert_eq!(m.len(), 3);
    assert!(m.values().all(|c| *c == 2), "{m:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_fits_nowhere_says_why_and_is_placed_when_a_node_comes() {
    let h = start().await;
    let gib = 1 << 30;
    h.node("n1", &[], gib).await;
    h.node("n2", &[], gib).await;
    for slot in 1..=3 {
        h.pending("db", slot, |t| {
            t.spec.template.resources.reservations.memory_bytes = gib;
        })
        .await;
    }
    let tasks = h
        .wait_for("two placed, one explained", "db", |ts| {
            placed(ts) == 2
                && ts.iter().any(|t| {
                    t.status.state == TaskState::Pending
                        && t.status.message == "no suitable node (insufficient memory on 2 nodes)"
                })
        })
        .await;
    assert_eq!(per_node(&tasks).len(), 2, "one per node");
    h.node("n3", &[], gib).await;
    let tasks = h
        .wait_for("the third placed on the new node", "db", |ts| {
            placed(ts) == 3
        })
        .await;
    assert_eq!(per_node(&tasks)["n3"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_and_drained_nodes_get_nothing_until_active() {
    let h = start().await;
    // Created paused and drained: placement's node cache and its task cache are separate
    // watches, so a node made active first and paused a moment later could still look active
    // when the task arrives — a race the real system has too, not what this test is about.
    for (name, availability) in [
        ("n1", NodeAvailability::Pause),
        ("n2", NodeAvailability::Drain),
    ] {
        let spec = NodeSpec {
            availability,
            ..Default::default()
        };
        h.sim.add_node_with(name, spec).await.unwrap();
    }
    h.pending("web", 1, |_| {}).await;
    h.wait_for("explained", "web", |ts| {
        ts.iter()
            .any(|t| t.status.message == "no suitable node (2 nodes not available)")
    })
    .await;
    h.sim
        .set_availability("n1", NodeAvailability::Active)
        .await
        .unwrap();
    let tasks = h
        .wait_for("placed on n1", "web", |ts| placed(ts) == 1)
        .await;
    assert_eq!(tasks[0].spec.node_name.as_deref(), Some("n1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn constraints_and_spread_preferences_are_followed() {
    let h = start().await;
    h.node("a1", &[("zone", "a"), ("rack", "r1")], 0).await;
    h.node("a2", &[("zone", "a"), ("rack", "r1")], 0).await;
    h.node("a3", &[("zone", "a"), ("rack", "r2")], 0).await;
    h.node("b1", &[("zone", "b"), ("rack", "r3")], 0).await;
    h.placement_sees("b1").await;
    for slot in 1..=4 {
        h.pending("api", slot, |t| {
            t.spec.template.placement.constraints = vec!["node.labels.zone==a".into()];
            t.spec.template.placement.preferences = vec![swarm_api::PlacementPreference {
                spread: "node.labels.rack".into(),
            }];
        })
        .await;
    }
    let tasks = h.wait_for("all placed", "api", |ts| placed(ts) == 4).await;
    let m = per_node(&tasks);
    assert!(!m.contains_key("b1"), "constraint: {m:?}");
    // Spread over racks: r2 (one node) takes half.
    assert_eq!(m.get("a3"), Some(&2), "{m:?}");
    assert_eq!(
        m.get("a1").copied().unwrap_or(0) + m.get("a2").copied().unwrap_or(0),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_runs_a_service_with_replication_ipam_and_placement() {
    let h = start().await;
    for name in ["replication", "ipam"] {
        let options = Options {
            identity: format!("{name}-test"),
            lease_duration: Duration::from_secs(2),
            ..Options::default()
        };
        let (c, token) = (h.client.clone(), h.stop.clone());
        tokio::spawn(async move {
            swarm_controllers::run(name, c, options, token)
                .await
                .unwrap();
        });
    }
    for n in ["n1", "n2"] {
        h.node(n, &[], 0).await;
    }
    h.client
        .create(&swarm_api::Network::new("front", Default::default()))
        .await
        .unwrap();
    let mut spec = swarm_api::ServiceSpec {
        mode: swarm_api::ServiceMode::Replicated { replicas: 4 },
        ..Default::default()
    };
    spec.task_template.container.image = "swarm-examples/hello:1".into();
    spec.task_template.networks = vec![swarm_api::NetworkAttachmentConfig {
        target: "front".into(),
        ..Default::default()
    }];
    h.client
        .create(&swarm_api::Service::new("web", spec))
        .await
        .unwrap();
    let tasks = h
        .wait_for("four running", "web", |ts| {
            ts.iter()
                .filter(|t| t.status.state == TaskState::Running)
                .count()
                == 4
        })
        .await;
    let m = per_node(&tasks);
    assert_eq!((m.get("n1"), m.get("n2")), (Some(&2), Some(&2)));
    let addrs: std::collections::HashSet<&str> = tasks
        .iter()
        .flat_map(|t| t.spec.networks.iter().flat_map(|a| a.addresses.iter()))
        .map(String::as_str)
        .collect();
    assert_eq!(addrs.len(), 4, "one address each: {addrs:?}");
    let snap = swarm_controllers::invariants::Snapshot::read(&h.client)
        .await
        .unwrap();
    assert!(swarm_controllers::invariants::check(&snap).is_empty());
}
