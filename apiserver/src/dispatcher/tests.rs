//! The dispatcher against a real in-process apiserver (embedded store, watch cache) over
//! gRPC on loopback: registration, heartbeats, the assignment stream's complete set and
//! incremental changes, and batched status reports.

use std::sync::Arc;
use std::time::Duration;

use swarm_api::{
    AnyObject, Kind, Network, NetworkAttachment, NetworkSpec, Node, NodeState, Task, TaskSpec,
    TaskState, TaskStatus,
};
use swarm_proto::DispatcherClient;
use swarm_proto::v1::{
    AssignmentsMessage, AssignmentsRequest, HeartbeatRequest, NodeDescription, Platform,
    RegisterRequest, TaskStatusUpdate, UpdateTaskStatusRequest, assignment_change::Action,
    assignments_message::Type,
};
use tonic::Streaming;
use tonic::transport::Channel;

use super::DispatcherOptions;
use crate::registry::{Registry, Subresource};
use crate::server::{RunningServer, Server, ServerOptions};
use crate::store::Store;
use crate::store::embedded::EmbeddedStore;
use crate::watch_cache::{CacheOptions, WatchCache};

const PATIENCE: Duration = Duration::from_secs(20);

struct Fixture {
    _server: RunningServer,
    store: Arc<dyn Store>,
    registry: Registry,
    client: DispatcherClient<Channel>,
    _dir: tempfile::TempDir,
}

async fn start(dopts: DispatcherOptions) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(&dir.path().join("store.db")).unwrap());
    let opts = ServerOptions {
        dispatcher: dopts,
        ..ServerOptions::loopback_with_dispatcher()
    };
    let server = Server::with_store(store.clone(), opts)
        .await
        .unwrap()
        .spawn();
    let addr = server.dispatcher_addr.unwrap();
    let client = DispatcherClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    Fixture {
        _server: server,
        registry: Registry::new(store.clone()),
        store,
        client,
        _dir: dir,
    }
}

/// A fixture whose heartbeats are flushed only by the test itself.
async fn start_flushing_by_hand() -> Fixture {
    start(DispatcherOptions {
        heartbeat_flush: Duration::from_secs(3600),
        ..fast()
    })
    .await
}

fn fast() -> DispatcherOptions {
    DispatcherOptions {
        heartbeat_period: Duration::from_millis(300),
        heartbeat_jitter: Duration::from_millis(30),
        heartbeat_flush: Duration::from_millis(50),
        ..DispatcherOptions::default()
    }
}

fn desc(host: &str) -> NodeDescription {
    NodeDescription {
        hostname: host.into(),
        nano_cpus: 2_000_000_000,
        memory_bytes: 1 << 30,
        engine: Some(swarm_proto::v1::EngineDescription {
            engine_version: "20.10.24".into(),
            labels: [("zone".to_string(), "a".to_string())].into(),
        }),
        platform: Some(Platform {
            os: "linux".into(),
            architecture: "x86_64".into(),
        }),
        advertise_addr: "10.1.2.3".into(),
    }
}

async fn register(f: &mut Fixture, node: &str) -> String {
    f.client
        .register(RegisterRequest {
            node_name: node.into(),
            description: Some(desc("host-1")),
        })
        .await
        .unwrap()
        .into_inner()
        .session_id
}

async fn node(f: &Fixture, name: &str) -> Node {
    match f.registry.get(Kind::Node, name).await.unwrap() {
        AnyObject::Node(n) => n,
        other => panic!("not a node: {other:?}"),
    }
}

async fn task(f: &Fixture, name: &str) -> Task {
    match f.registry.get(Kind::Task, name).await.unwrap() {
        AnyObject::Task(t) => *t,
        other => panic!("not a task: {other:?}"),
    }
}

/// Creates a task bound to `node` in `state` (as placement would leave it).
async fn assigned(f: &Fixture, name: &str, node: &str, state: TaskState, net: Option<&str>) {
    let mut t = Task::new(
        name,
        TaskSpec {
            service: "web".into(),
            slot: Some(1),
            node_name: Some(node.into()),
            ..Default::default()
        },
    );
    t.spec.template.container.image = "img".into();
    if let Some(n) = net {
        t.spec.networks = vec![NetworkAttachment {
            network: n.into(),
            ..Default::default()
        }];
    }
    let created = f
        .registry
        .create(AnyObject::Task(Box::new(t)))
        .await
        .unwrap();
    let AnyObject::Task(mut t) = created else {
        unreachable!()
    };
    t.status.state = state;
    f.registry
        .update(AnyObject::Task(t), Subresource::Status)
        .await
        .unwrap();
}

async fn next(stream: &mut Streaming<AssignmentsMessage>) -> AssignmentsMessage {
    tokio::time::timeout(PATIENCE, stream.message())
        .await
        .expect("a message within the patience window")
        .unwrap()
        .expect("stream open")
}

fn names(m: &AssignmentsMessage, action: Action) -> Vec<String> {
    let mut v: Vec<String> = m
        .changes
        .iter()
        .filter(|c| c.action == action as i32)
        .map(|c| c.name.clone())
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_writes_the_node_and_heartbeats_keep_it_alive() {
    let mut f = start(fast()).await;
    let session = register(&mut f, "n1").await;
    let n = node(&f, "n1").await;
    assert_eq!(n.status.state, NodeState::Ready);
    assert_eq!(n.status.addr, "10.1.2.3");
    assert_eq!(n.status.hostname, "host-1");
    assert_eq!(n.status.resources.nano_cpus, 2_000_000_000);
    assert_eq!(n.status.engine.engine_version, "20.10.24");
    assert_eq!(n.status.engine.labels["zone"], "a");
    assert_eq!(n.status.platform.architecture, "x86_64");
    let first = n.status.last_heartbeat.unwrap();

    // A node marked down by the nodes controller comes back with its next heartbeat.
    let mut down = n.clone();
    down.status.state = NodeState::Down;
    f.registry
        .update(AnyObject::Node(down), Subresource::Status)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let period = f
        .client
        .heartbeat(HeartbeatRequest {
            session_id: session.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .period_ms;
    assert!((270..=330).contains(&period), "jittered period {period}");
    tokio::time::timeout(PATIENCE, async {
        loop {
            let n = node(&f, "n1").await;
            if n.status.last_heartbeat.unwrap() > first && n.status.state == NodeState::Ready {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("heartbeat written");

    // A new registration ends the old session.
    let again = register(&mut f, "n1").await;
    let e = f
        .client
        .heartbeat(HeartbeatRequest {
            session_id: session,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    f.client
        .heartbeat(HeartbeatRequest { session_id: again })
        .await
        .unwrap();
    // Bad names are refused.
    let e = f
        .client
        .register(RegisterRequest {
            node_name: "bad name!".into(),
            description: Some(desc("h")),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_replans_only_what_changed_behind_the_cache() {
    let mut f = start_flushing_by_hand().await;
    for i in 0..4 {
        register(&mut f, &format!("n{i}")).await;
    }
    // A cache that saw the four nodes, then stopped following the store.
    let cache = WatchCache::start(f.store.clone(), CacheOptions::default());
    let nodes = cache.kind(Kind::Node);
    tokio::time::timeout(PATIENCE, async {
        nodes.wait_ready().await;
        while nodes.get_cached("n3").is_none() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    cache.stop();
    let frozen = Registry::new(f.store.clone()).with_cache(cache);
    // Two of them change behind its back.
    let behind = super::nodes::Heartbeats::default();
    behind.beat("n1");
    behind.beat("n2");
    assert_eq!(behind.flush(&f.registry, 100).await, 2);
    // A batch planned on the stale copies loses on n1 and n2, re-plans just those from the
    // store, and writes all four in one transaction.
    let beats = super::nodes::Heartbeats::default();
    for i in 0..4 {
        beats.beat(&format!("n{i}"));
    }
    let before = f.store.current_revision().await.unwrap();
    assert_eq!(beats.flush(&frozen, 100).await, 4);
    let after = f.store.current_revision().await.unwrap();
    assert_eq!(after, before + 1, "one committed transaction");
    for i in 0..4 {
        let n = node(&f, &format!("n{i}")).await;
        assert_eq!(n.metadata.resource_version, after.to_string(), "n{i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_of_many_nodes_are_one_transaction() {
    let mut f = start_flushing_by_hand().await;
    let mut sessions = Vec::new();
    for i in 0..5 {
        sessions.push(register(&mut f, &format!("n{i}")).await);
    }
    let beats = super::nodes::Heartbeats::default();
    for i in 0..5 {
        beats.beat(&format!("n{i}"));
    }
    let before = f.store.current_revision().await.unwrap();
    let written = beats.flush(&f.registry, 200).await;
    assert_eq!(written, 5);
    assert_eq!(f.store.current_revision().await.unwrap(), before + 1);
    // Split at the transaction limit: two chunks, two transactions.
    for i in 0..5 {
        beats.beat(&format!("n{i}"));
    }
    let before = f.store.current_revision().await.unwrap();
    assert_eq!(beats.flush(&f.registry, 3).await, 5);
    assert_eq!(f.store.current_revision().await.unwrap(), before + 2);
    assert!(!sessions.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assignments_start_complete_then_follow_changes() {
    let mut f = start(fast()).await;
    let net = Network::new("front", NetworkSpec::default());
    f.registry.create(AnyObject::Network(net)).await.unwrap();
    assigned(&f, "web.1.1", "n1", TaskState::Assigned, Some("front")).await;
    assigned(&f, "web.2.1", "n2", TaskState::Assigned, None).await;
    assigned(&f, "web.3.1", "n1", TaskState::Pending, None).await; // not yet placed
    let session = register(&mut f, "n1").await;
    let mut stream = f
        .client
        .assignments(AssignmentsRequest {
            session_id: session.clone(),
        })
        .await
        .unwrap()
        .into_inner();

    // The complete set: only n1's assigned task, with the network it references first.
    let m = next(&mut stream).await;
    assert_eq!(m.r#type, Type::Complete as i32);
    assert!(!m.more);
    let kinds: Vec<(i32, String)> = m.changes.iter().map(|c| (c.kind, c.name.clone())).collect();
    assert_eq!(
        kinds,
        [
            (swarm_proto::v1::ObjectKind::Network as i32, "front".into()),
            (swarm_proto::v1::ObjectKind::Task as i32, "web.1.1".into())
        ]
    );
    let sent: Task = serde_json::from_slice(&m.changes[1].object).unwrap();
    assert_eq!(sent.spec.node_name.as_deref(), Some("n1"));

    // Placement assigns web.3.1: it arrives as an incremental update.
    let mut t3 = task(&f, "web.3.1").await;
    t3.status.state = TaskState::Assigned;
    f.registry
        .update(AnyObject::Task(Box::new(t3)), Subresource::Status)
        .await
        .unwrap();
    let m = next(&mut stream).await;
    assert_eq!(m.r#type, Type::Incremental as i32);
    assert_eq!(names(&m, Action::Update), ["web.3.1"]);

    // A status-only change (the agent's own report) is not echoed; a desired-state change is.
    let mut t1 = task(&f, "web.1.1").await;
    t1.status.state = TaskState::Running;
    f.registry
        .update(AnyObject::Task(Box::new(t1)), Subresource::Status)
        .await
        .unwrap();
    let mut t1 = task(&f, "web.1.1").await;
    t1.spec.desired_state = TaskState::Shutdown;
    f.registry
        .update(AnyObject::Task(Box::new(t1)), Subresource::Main)
        .await
        .unwrap();
    let m = next(&mut stream).await;
    assert_eq!(names(&m, Action::Update), ["web.1.1"]);
    let sent: Task = serde_json::from_slice(&m.changes[0].object).unwrap();
    assert_eq!(sent.spec.desired_state, TaskState::Shutdown);

    // Deleting the last task that references the network removes both.
    f.registry
        .delete(Kind::Task, "web.1.1", None)
        .await
        .unwrap();
    let m = next(&mut stream).await;
    assert_eq!(names(&m, Action::Remove), ["front", "web.1.1"]);

    // A task moved to another node is removed from this one.
    let mut t3 = task(&f, "web.3.1").await;
    t3.spec.node_name = Some("n2".into());
    f.registry
        .update(AnyObject::Task(Box::new(t3)), Subresource::Main)
        .await
        .unwrap();
    let m = next(&mut stream).await;
    assert_eq!(names(&m, Action::Remove), ["web.3.1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_complete_set_is_split_into_bounded_messages() {
    let mut f = start(DispatcherOptions {
        max_changes_per_message: 3,
        ..fast()
    })
    .await;
    for i in 0..7 {
        assigned(&f, &format!("web.{i}.1"), "n1", TaskState::Assigned, None).await;
    }
    let session = register(&mut f, "n1").await;
    let mut stream = f
        .client
        .assignments(AssignmentsRequest {
            session_id: session,
        })
        .await
        .unwrap()
        .into_inner();
    let mut sizes = Vec::new();
    loop {
        let m = next(&mut stream).await;
        assert_eq!(m.r#type, Type::Complete as i32);
        sizes.push(m.changes.len());
        if !m.more {
            break;
        }
    }
    assert_eq!(sizes, [3, 3, 1]);
}

fn report(name: &str, state: TaskState) -> TaskStatusUpdate {
    TaskStatusUpdate {
        task_name: name.into(),
        status: serde_json::to_vec(&TaskStatus {
            state,
            message: state.to_string(),
            ..Default::default()
        })
        .unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_batches_are_one_transaction_latest_wins_and_never_go_back() {
    let mut f = start(fast()).await;
    assigned(&f, "web.1.1", "n1", TaskState::Assigned, None).await;
    assigned(&f, "web.2.1", "n1", TaskState::Assigned, None).await;
    assigned(&f, "web.3.1", "n2", TaskState::Assigned, None).await;
    let session = register(&mut f, "n1").await;
    let before = f.store.current_revision().await.unwrap();
    let resp = f
        .client
        .update_task_status(UpdateTaskStatusRequest {
            session_id: session.clone(),
            updates: vec![
                report("web.1.1", TaskState::Accepted),
                report("web.2.1", TaskState::Preparing),
                report("web.1.1", TaskState::Running), // latest wins
                report("web.3.1", TaskState::Running), // another node's task
                report("web.9.1", TaskState::Running), // no such task
            ],
        })
        .await
        .unwrap()
        .into_inner();
    let mut refused: Vec<&str> = resp.refused.iter().map(|r| r.task_name.as_str()).collect();
    refused.sort();
    assert_eq!(refused, ["web.3.1", "web.9.1"]);
    assert_eq!(f.store.current_revision().await.unwrap(), before + 1);
    assert_eq!(task(&f, "web.1.1").await.status.state, TaskState::Running);
    assert_eq!(task(&f, "web.2.1").await.status.state, TaskState::Preparing);
    assert_eq!(task(&f, "web.3.1").await.status.state, TaskState::Assigned);

    // A regression is refused (only that report); the rest of the batch is written.
    let resp = f
        .client
        .update_task_status(UpdateTaskStatusRequest {
            session_id: session,
            updates: vec![
                report("web.1.1", TaskState::Starting),
                report("web.2.1", TaskState::Running),
            ],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.refused.len(), 1);
    assert_eq!(resp.refused[0].task_name, "web.1.1");
    assert!(
        resp.refused[0].reason.contains("backwards"),
        "{}",
        resp.refused[0].reason
    );
    assert_eq!(task(&f, "web.1.1").await.status.state, TaskState::Running);
    assert_eq!(task(&f, "web.2.1").await.status.state, TaskState::Running);
}
