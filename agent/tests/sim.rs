//! Simulated nodes against a real in-process apiserver and dispatcher: many hollow nodes in
//! one process register, take their tasks through to RUNNING (or REJECTED with an injected
//! failure rate), and hand tasks back when they are deleted.

use std::sync::Arc;
use std::time::Duration;

use swarm_agent::runtime::sim::SimOptions;
use swarm_agent::{AgentOptions, RuntimeKind};
use swarm_api::{AnyObject, Kind, NodeState, Task, TaskSpec, TaskState};
use swarm_apiserver::registry::{ListQuery, Registry, Subresource};
use swarm_apiserver::server::{RunningServer, Server, ServerOptions};
use swarm_apiserver::store::Store;
use swarm_apiserver::store::embedded::EmbeddedStore;
use tokio::sync::watch;

const PATIENCE: Duration = Duration::from_secs(120);

struct Fixture {
    server: RunningServer,
    registry: Registry,
    dir: tempfile::TempDir,
    _store: Arc<dyn Store>,
}

async fn start() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(&dir.path().join("store.db")).unwrap());
    let opts = ServerOptions {
        ..ServerOptions::loopback_with_dispatcher()
    };
    let server = Server::with_store(store.clone(), opts)
        .await
        .unwrap()
        .spawn();
    Fixture {
        registry: Registry::new(store.clone()),
        server,
        dir,
        _store: store,
    }
}

fn agent(f: &Fixture, prefix: &str, nodes: usize, sim: SimOptions) -> watch::Sender<bool> {
    let addr = f.server.dispatcher_addr.unwrap();
    let mut opts = AgentOptions::new(addr.to_string(), f.dir.path().join(prefix));
    opts.runtime = RuntimeKind::Sim;
    opts.node_name = Some(prefix.into());
    opts.sim_nodes = nodes;
    opts.sim = sim;
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move { swarm_agent::run(opts, rx).await.unwrap() });
    tx
}

async fn list<T: serde::de::DeserializeOwned>(f: &Fixture, kind: Kind) -> Vec<T> {
    f.registry
        .list(kind, &ListQuery::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|o| serde_json::from_value(o.to_value()).unwrap())
        .collect()
}

async fn assign(f: &Fixture, name: &str, node: &str) {
    let t = Task::new(
        name,
        TaskSpec {
            service: "sim".into(),
            slot: Some(1),
            node_name: Some(node.into()),
            desired_state: TaskState::Running,
            ..Default::default()
        },
    );
    let AnyObject::Task(mut t) = f
        .registry
        .create(AnyObject::Task(Box::new(t)))
        .await
        .unwrap()
    else {
        unreachable!()
    };
    t.status.state = TaskState::Assigned;
    f.registry
        .update(AnyObject::Task(t), Subresource::Status)
        .await
        .unwrap();
}

async fn wait_for(what: &str, mut check: impl AsyncFnMut() -> bool) {
    tokio::time::timeout(PATIENCE, async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

fn fast() -> SimOptions {
    SimOptions {
        start_latency: Duration::from_millis(5),
        ..SimOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_nodes_register_and_run_their_tasks() {
    let f = start().await;
    let stop = agent(&f, "hollow", 20, fast());
    wait_for("20 ready nodes", async || {
        let nodes: Vec<swarm_api::Node> = list(&f, Kind::Node).await;
        nodes.len() == 20 && nodes.iter().all(|n| n.status.state == NodeState::Ready)
    })
    .await;
    for i in 0..20 {
        assign(&f, &format!("sim.{i}.1"), &format!("hollow-{i:04}")).await;
    }
    wait_for("20 running tasks", async || {
        let tasks: Vec<Task> = list(&f, Kind::Task).await;
        tasks
            .iter()
            .filter(|t| t.status.state == TaskState::Running)
            .count()
            == 20
    })
    .await;
    let tasks: Vec<Task> = list(&f, Kind::Task).await;
    assert!(
        tasks
            .iter()
            .all(|t| t.status.container_id.starts_with("sim-"))
    );

    // Desired SHUTDOWN is honoured.
    let AnyObject::Task(mut t) = f.registry.get(Kind::Task, "sim.0.1").await.unwrap() else {
        unreachable!()
    };
    t.spec.desired_state = TaskState::Shutdown;
    f.registry
        .update(AnyObject::Task(t), Subresource::Main)
        .await
        .unwrap();
    wait_for("shutdown", async || {
        let AnyObject::Task(t) = f.registry.get(Kind::Task, "sim.0.1").await.unwrap() else {
            unreachable!()
        };
        t.status.state == TaskState::Shutdown
    })
    .await;
    stop.send_replace(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_injected_failure_rate_rejects_tasks() {
    let f = start().await;
    let stop = agent(
        &f,
        "flaky",
        1,
        SimOptions {
            failure_rate: 1.0,
            ..fast()
        },
    );
    assign(&f, "sim.1.1", "flaky-0000").await;
    wait_for("rejected", async || {
        let AnyObject::Task(t) = f.registry.get(Kind::Task, "sim.1.1").await.unwrap() else {
            unreachable!()
        };
        t.status.state == TaskState::Rejected && t.status.err == "sim: injected failure"
    })
    .await;
    stop.send_replace(true);
}

/// More nodes than share one HTTP/2 connection (`NODES_PER_CONNECTION`, 50) all register and
/// run a task each. (How long 1,000 nodes take is `bench/src/bin/e2e.rs`'s business.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_spread_over_several_connections_all_register_and_run() {
    let f = start().await;
    let n = 120;
    let stop = agent(&f, "k", n, fast());
    wait_for("all nodes ready", async || {
        let nodes: Vec<swarm_api::Node> = list(&f, Kind::Node).await;
        nodes
            .iter()
            .filter(|x| x.status.state == NodeState::Ready)
            .count()
            == n
    })
    .await;
    for i in 0..n {
        assign(&f, &format!("sim.{i}.1"), &format!("k-{i:04}")).await;
    }
    wait_for("all tasks running", async || {
        let tasks: Vec<Task> = list(&f, Kind::Task).await;
        tasks
            .iter()
            .filter(|t| t.status.state == TaskState::Running)
            .count()
            == n
    })
    .await;
    stop.send_replace(true);
}
