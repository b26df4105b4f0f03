//! Shared by the CLI's end-to-end tests: an apiserver in this process over a fresh embedded
//! store, the `swarm` binary pointed at it, and a stand-in for the controllers and agents
//! (the test writes tasks and statuses itself).

#![allow(dead_code)]

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use swarm_api::{Node, NodeSpec, Resource, Service, Task, TaskSpec, TaskState};
use swarm_apiserver::server::{RunningServer, Server, ServerOptions};
use swarm_apiserver::store::Store;
use swarm_apiserver::store::embedded::EmbeddedStore;
use swarm_client::Client;

/// Bounds every wait of a test, so a broken run fails instead of hanging; tests assert
/// behaviour, never timing.
pub const PATIENCE: Duration = Duration::from_secs(30);

pub struct Cluster {
    pub server: RunningServer,
    pub client: Client,
    pub url: String,
    pub dir: tempfile::TempDir,
}

pub async fn start() -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(&dir.path().join("store.db")).unwrap());
    let opts = ServerOptions {
        bookmark_interval: Duration::from_millis(200),
        ..ServerOptions::loopback()
    };
    let server = Server::with_store(store, opts).await.unwrap().spawn();
    let url = server.url();
    let client = Client::new(&url).unwrap();
    swarm_client::ClientConfig::single(&url)
        .save(&dir.path().join("admin.conf"))
        .unwrap();
    Cluster {
        server,
        client,
        url,
        dir,
    }
}

/// What a finished `swarm` run printed.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    #[track_caller]
    pub fn ok(self) -> Run {
        assert_eq!(self.code, Some(0), "swarm failed: {self:#?}");
        self
    }
}

impl Cluster {
    /// A `swarm ARGS…` process against this cluster (stdout is a pipe, so progress is plain).
    pub fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_swarm"));
        cmd.args(args)
            .env("SWARM_CONFIG", self.dir.path().join("admin.conf"))
            .env("HOME", self.dir.path())
            .env("SWARM_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    /// Runs `swarm ARGS…` to the end.
    pub async fn swarm(&self, args: &[&str]) -> Run {
        let child = self.command(args).spawn().unwrap();
        finish(child).await
    }

    /// Adds a ready, active node.
    pub async fn node(&self, name: &str) -> Node {
        let n = self
            .client
            .create(&Node::new(name, NodeSpec::default()))
            .await
            .unwrap();
        let mut n = n;
        n.status.state = swarm_api::NodeState::Ready;
        n.status.hostname = name.to_string();
        self.client.replace_status(&n).await.unwrap()
    }

    /// Waits until `pred` holds for service `name` (the CLI wrote what the test waits for).
    pub async fn service_when(&self, name: &str, pred: impl Fn(&Service) -> bool) -> Service {
        tokio::time::timeout(PATIENCE, async {
            loop {
                if let Ok(s) = self.client.get::<Service>(name).await
                    && pred(&s)
                {
                    return s;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("service {name} never reached the expected state"))
    }

    /// Plays the controllers and the agent for one task: creates it for `slot` with the
    /// service's current template, and reports `state`.
    pub async fn task(
        &self,
        svc: &Service,
        slot: u64,
        attempt: u64,
        node: &str,
        state: TaskState,
        err: &str,
    ) -> Task {
        let name = format!("{}.{slot}.{attempt}", svc.metadata.name);
        let spec = TaskSpec {
            service: svc.metadata.name.clone(),
            slot: Some(slot),
            node_name: Some(node.to_string()),
            attempt,
            service_generation: svc.metadata.generation,
            template: svc.spec.task_template.clone(),
            desired_state: if state.is_terminal() {
                TaskState::Shutdown
            } else {
                TaskState::Running
            },
            ..Default::default()
        };
        let t = self.client.create(&Task::new(name, spec)).await.unwrap();
        self.set_state(t, state, err).await
    }

    /// Reports a task's observed state, entered ten minutes ago (so tables read
    /// `Running 10 minutes ago` however long the test takes).
    pub async fn set_state(&self, mut t: Task, state: TaskState, err: &str) -> Task {
        t.status.state = state;
        t.status.err = err.to_string();
        t.status.timestamp = Some(swarm_api::Timestamp(
            std::time::SystemTime::now() - Duration::from_secs(600),
        ));
        self.client.replace_status(&t).await.unwrap()
    }

    /// Pauses the service's update as the update controller does when `task` failed.
    pub async fn pause_update(&self, name: &str, task: &str) -> Service {
        self.service_status(name, |s| {
            s.status.update_status = Some(swarm_api::UpdateStatus {
                state: swarm_api::UpdateState::Paused,
                message: format!(
                    "update paused due to failure or early termination of task {task}"
                ),
                ..Default::default()
            })
        })
        .await
    }

    /// Replaces a service's status (as the controllers would).
    pub async fn service_status(&self, name: &str, edit: impl Fn(&mut Service)) -> Service {
        let mut s = self.client.get::<Service>(name).await.unwrap();
        edit(&mut s);
        self.client.replace_status(&s).await.unwrap()
    }
}

/// Waits for a `swarm` process to end.
pub async fn finish(child: tokio::process::Child) -> Run {
    let out = tokio::time::timeout(PATIENCE, child.wait_with_output())
        .await
        .expect("swarm ended within the patience window")
        .unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The object's name (for messages).
pub fn name<T: Resource>(o: &T) -> &str {
    o.name()
}
