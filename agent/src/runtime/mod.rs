//! The container runtime behind the agent: `docker` (bollard, a real engine) or `sim` (hollow
//! nodes for scale tests). The agent's task runners drive a runtime through small,
//! idempotent steps — prepare, start, inspect, stop, remove — and wake up on its events.

pub mod docker;
pub mod sim;

use std::collections::{BTreeSet, HashMap};

use async_trait::async_trait;
use futures::stream::BoxStream;
use swarm_api::{Config, Network, PortConfig, Secret, Service, Task, TaskHealth};
use tokio::sync::broadcast;

/// What a node offers, for its `Node` object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeInfo {
    pub hostname: String,
    pub nano_cpus: i64,
    pub memory_bytes: i64,
    pub engine_version: String,
    pub engine_labels: HashMap<String, String>,
    pub os: String,
    pub architecture: String,
}

/// A container's state as the runtime sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContainerStatus {
    Created,
    Running,
    Exited,
    /// Paused, restarting, being removed, dead: wait and look again.
    Other(String),
}

/// One look at a task's container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    pub id: String,
    pub status: ContainerStatus,
    pub exit_code: Option<i64>,
    /// `None` when the container has no healthcheck.
    pub health: Option<TaskHealth>,
    /// The engine's error for the container, if any.
    pub error: String,
    /// Host ports as bound.
    pub ports: Vec<PortConfig>,
}

/// A container the runtime manages on this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Managed {
    pub task: String,
    pub id: String,
}

/// Something changed in the runtime: a runner of `task` should look again. `task` empty:
/// every runner should (events may have been lost).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeEvent {
    pub task: String,
    /// `die` events carry the exit code.
    pub exit_code: Option<i64>,
}

/// The networks, secrets and configs the node received, by name.
#[derive(Clone, Debug, Default)]
pub struct Assets {
    pub networks: HashMap<String, Network>,
    pub secrets: HashMap<String, Secret>,
    pub configs: HashMap<String, Config>,
    pub services: HashMap<String, Service>,
}

/// The ports a task publishes: its own list, else its service's (as allocated, else as
/// asked). Host mode binds the published port; ingress binds an ephemeral host port the
/// routing mesh forwards to.
pub fn task_ports(task: &Task, assets: &Assets) -> Vec<PortConfig> {
    if !task.spec.ports.is_empty() {
        return task.spec.ports.clone();
    }
    match assets.services.get(&task.spec.service) {
        Some(s) if !s.status.ports.is_empty() => s.status.ports.clone(),
        Some(s) => s.spec.endpoint.ports.clone(),
        None => Vec::new(),
    }
}

/// Which output of a container a log line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogSource {
    Stdout,
    Stderr,
}

/// One line of a container's output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    pub source: LogSource,
    /// When the container wrote it, in nanoseconds since the Unix epoch (0: unknown).
    pub timestamp_nanos: i64,
    /// The line without its newline.
    pub line: Vec<u8>,
}

/// Which lines of a container's log to read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogRequest {
    /// Keep going with new lines until the stream is dropped.
    pub follow: bool,
    /// Only the last N lines; `None`: all.
    pub tail: Option<u64>,
}

/// A container's log lines, oldest first.
pub type LogLines = BoxStream<'static, Result<LogEntry, RuntimeError>>;

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum RuntimeError {
    /// The task cannot run here (bad image, bad spec): before start it is REJECTED, after,
    /// FAILED.
    #[error("{0}")]
    Fatal(String),
    /// Worth retrying (engine unreachable, a race).
    #[error("{0}")]
    Temporary(String),
}

#[async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// The node's description.
    async fn describe(&self) -> Result<NodeInfo, RuntimeError>;
    /// Change notifications; runners re-inspect on each.
    fn events(&self) -> broadcast::Receiver<RuntimeEvent>;
    /// Every container this runtime manages for this node.
    async fn list(&self) -> Result<Vec<Managed>, RuntimeError>;
    /// Makes the task's image, networks and container exist (created, not started).
    async fn prepare(&self, task: &Task, assets: &Assets) -> Result<(), RuntimeError>;
    /// Starts the container if it is not running.
    async fn start(&self, task: &Task) -> Result<(), RuntimeError>;
    /// The task's container, or `None` if there is none.
    async fn inspect(&self, task: &Task) -> Result<Option<Observed>, RuntimeError>;
    /// Stops the container with the task's stop signal and grace period.
    async fn stop(&self, task: &Task) -> Result<(), RuntimeError>;
    /// Removes every container of the task named `task`.
    async fn remove(&self, task: &str) -> Result<(), RuntimeError>;
    /// Removes this node's networks that no task in `in_use` (network object names) needs.
    async fn prune_networks(&self, in_use: &BTreeSet<String>) -> Result<(), RuntimeError>;
    /// The log of the container of the task named `task` on this node (stdout and stderr);
    /// `Fatal` when this node has no container for it. Runtimes that keep no logs (test
    /// doubles) need not implement it.
    async fn logs(&self, task: &str, _req: LogRequest) -> Result<LogLines, RuntimeError> {
        Err(RuntimeError::Fatal(format!(
            "task {task}: this runtime keeps no container logs"
        )))
    }
}
