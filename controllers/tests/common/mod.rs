//! What every controller test needs: a real apiserver over a fresh embedded store on an
//! ephemeral port, the node simulator, controllers started and stopped by name, and a
//! `wait_for` that polls the cluster until a condition holds (the timeout only guards against
//! hangs; tests assert what the cluster looks like, never how fast it got there).

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use swarm_api::{Service, ServiceMode, ServiceSpec, Task, TaskState};
use swarm_apiserver::server::{RunningServer, Server, ServerOptions};
use swarm_apiserver::store::Store as KvStore;
use swarm_apiserver::store::embedded::EmbeddedStore;
use swarm_apiserver::watch_cache::CacheOptions;
use swarm_client::Client;
use swarm_controllers::Options;
use swarm_controllers::invariants::{Snapshot, check, check_at_rest};
use swarm_controllers::testing::{Sim, SimOptions};
use tokio_util::sync::CancellationToken;

pub const PATIENCE: Duration = Duration::from_secs(20);

pub struct Cluster {
    _server: RunningServer,
    pub store: Arc<dyn KvStore>,
    pub client: Client,
    pub sim: Sim,
    _dir: tempfile::TempDir,
}

/// Controllers' timing for tests: agents heartbeat every 100 ms (the simulator's default), a
/// node is down after 3 × 1 s of silence, leases last 2 s.
pub fn opts(identity: &str) -> Options {
    Options {
        identity: identity.to_string(),
        lease_duration: Duration::from_secs(2),
        // Generous, so a loaded CI machine does not see a node as down when it only stalled.
        heartbeat_period: Duration::from_secs(1),
        missed_heartbeats: 3,
        history_limit: 5,
        concurrency: 2,
        ..Options::default()
    }
}

/// A real apiserver on an ephemeral loopback port over a fresh embedded store, with short
/// bookmark and cache-retry intervals; the temp dir holds the store and must outlive it.
pub async fn apiserver() -> (RunningServer, Arc<dyn KvStore>, Client, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn KvStore> =
        Arc::new(EmbeddedStore::open(&dir.path().join("store.db")).unwrap());
    let server_opts = ServerOptions {
        bookmark_interval: Duration::from_millis(200),
        cache: CacheOptions {
            window: 10_000,
            watcher_buffer: 10_000,
            retry_delay: Duration::from_millis(50),
        },
        ..ServerOptions::loopback()
    };
    let server = Server::with_store(store.clone(), server_opts)
        .await
        .unwrap()
        .spawn();
    let client = Client::new(&server.url()).unwrap();
    (server, store, client, dir)
}

pub async fn start() -> Cluster {
    let (server, store, client, dir) = apiserver().await;
    let sim = Sim::start(
        client.clone(),
        SimOptions {
            heartbeat_period: Duration::from_millis(100),
            ..SimOptions::default()
        },
    );
    Cluster {
        _server: server,
        store,
        client,
        sim,
        _dir: dir,
    }
}

/// Controllers running in this process, as `swarm-controller NAME` would run them.
pub struct Running {
    stop: CancellationToken,
    handle: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Orderly shutdown (leases are released).
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(PATIENCE, self.handle).await;
    }

    /// Like `kill -9`: everything stops at once, nothing is released.
    pub async fn kill(self) {
        self.handle.abort();
        let _ = self.handle.await;
    }
}

impl Cluster {
    pub fn run(&self, name: &str, options: Options) -> Running {
        let stop = CancellationToken::new();
        let (client, token, name) = (self.client.clone(), stop.clone(), name.to_string());
        let handle = tokio::spawn(async move {
            swarm_controllers::run(&name, client, options, token)
                .await
                .unwrap();
        });
        Running { stop, handle }
    }

    /// Polls until `pred` holds on a snapshot of the cluster, checking the always-true
    /// invariants on every snapshot on the way.
    pub async fn wait_for(&self, what: &str, pred: impl Fn(&Snapshot) -> bool) -> Snapshot {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let snap = Snapshot::read(&self.client).await.unwrap();
            let broken = check(&snap);
            assert!(
                broken.is_empty(),
                "invariants broken while waiting for {what}: {broken:#?}"
            );
            if pred(&snap) {
                return snap;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("gave up waiting for {what}; tasks:\n{}", describe(&snap));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for `pred`, then asserts the at-rest invariants.
    pub async fn settle(&self, what: &str, pred: impl Fn(&Snapshot) -> bool) -> Snapshot {
        let snap = self.wait_for(what, pred).await;
        let broken = check_at_rest(&snap);
        assert!(
            broken.is_empty(),
            "at rest after {what}: {broken:#?}\n{}",
            describe(&snap)
        );
        snap
    }

    pub async fn create_service(&self, svc: &Service) -> Service {
        self.client.create(svc).await.unwrap()
    }

    /// Read-modify-write of a service's spec, retried on conflict.
    pub async fn update_service(&self, name: &str, f: impl Fn(&mut Service)) {
        for _ in 0..20 {
            let mut s = self.client.get::<Service>(name).await.unwrap();
            f(&mut s);
            match self.client.replace(&s).await {
                Ok(_) => return,
                Err(e) if e.is_conflict() => continue,
                Err(e) => panic!("update {name}: {e}"),
            }
        }
        panic!("update {name}: kept conflicting");
    }
}

pub fn service(name: &str, mode: ServiceMode) -> Service {
    let mut spec = ServiceSpec {
        mode,
        ..ServiceSpec::default()
    };
    spec.task_template.container.image = "swarm-examples/hello:1".into();
    Service::new(name, spec)
}

/// Tasks of `service` in the snapshot.
pub fn tasks_of<'a>(s: &'a Snapshot, service: &str) -> Vec<&'a Task> {
    let mut v: Vec<&Task> = s
        .tasks
        .iter()
        .filter(|t| t.spec.service == service)
        .collect();
    v.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    v
}

/// Wanted (desired ≤ RUNNING) and observed RUNNING.
pub fn running<'a>(s: &'a Snapshot, service: &str) -> Vec<&'a Task> {
    tasks_of(s, service)
        .into_iter()
        .filter(|t| {
            t.spec.desired_state <= TaskState::Running && t.status.state == TaskState::Running
        })
        .collect()
}

pub fn describe(s: &Snapshot) -> String {
    let mut lines: Vec<String> = s
        .tasks
        .iter()
        .map(|t| {
            format!(
                "  {} node={} desired={} state={}",
                t.metadata.name,
                t.spec.node_name.as_deref().unwrap_or("-"),
                t.spec.desired_state,
                t.status.state
            )
        })
        .collect();
    lines.sort();
    for n in &s.nodes {
        lines.push(format!(
            "  node {} {:?} {:?}",
            n.metadata.name, n.status.state, n.spec.availability
        ));
    }
    lines.join("\n")
}
