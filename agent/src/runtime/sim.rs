//! The `sim` runtime: a hollow node. Containers are entries in memory; preparing and starting
//! take a configurable latency, and a configurable fraction of tasks fail to prepare, so the
//! controllers can be exercised with a thousand nodes in one process.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use rand::Rng;
use swarm_api::Task;
use tokio::sync::broadcast;

use super::{
    Assets, ContainerStatus, LogEntry, LogLines, LogRequest, LogSource, Managed, NodeInfo,
    Observed, Runtime, RuntimeError, RuntimeEvent,
};

/// How simulated containers behave.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// Time to prepare, and again to start, a container.
    pub start_latency: Duration,
    /// Fraction (0..=1) of tasks whose prepare fails (the task is rejected).
    pub failure_rate: f64,
    pub nano_cpus: i64,
    pub memory_bytes: i64,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            start_latency: Duration::from_millis(50),
            failure_rate: 0.0,
            nano_cpus: 4_000_000_000,
            memory_bytes: 8 << 30,
        }
    }
}

struct Container {
    id: String,
    status: ContainerStatus,
    exit_code: Option<i64>,
}

/// One simulated node.
pub struct SimRuntime {
    node: String,
    opts: SimOptions,
    containers: Mutex<HashMap<String, Container>>,
    events: broadcast::Sender<RuntimeEvent>,
}

impl SimRuntime {
    pub fn new(node: &str, opts: SimOptions) -> SimRuntime {
        let (events, _) = broadcast::channel(256);
        SimRuntime {
            node: node.to_string(),
            opts,
            containers: Mutex::new(HashMap::new()),
            events,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Container>> {
        self.containers.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn notify(&self, task: &str, exit_code: Option<i64>) {
        let _ = self.events.send(RuntimeEvent {
            task: task.to_string(),
            exit_code,
        });
    }

    /// Makes a running container exit with `code` (tests: a crash).
    pub fn exit(&self, task: &str, code: i64) -> bool {
        let found = match self.lock().get_mut(task) {
            Some(c) => {
                c.status = ContainerStatus::Exited;
                c.exit_code = Some(code);
                true
            }
            None => false,
        };
        if found {
            self.notify(task, Some(code));
        }
        found
    }

    /// How many containers are running.
    pub fn running(&self) -> usize {
        self.lock()
            .values()
            .filter(|c| c.status == ContainerStatus::Running)
            .count()
    }
}

#[async_trait]
impl Runtime for SimRuntime {
    async fn describe(&self) -> Result<NodeInfo, RuntimeError> {
        Ok(NodeInfo {
            hostname: self.node.clone(),
            nano_cpus: self.opts.nano_cpus,
            memory_bytes: self.opts.memory_bytes,
            engine_version: "sim".into(),
            engine_labels: HashMap::new(),
            os: "linux".into(),
            architecture: std::env::consts::ARCH.into(),
        })
    }

    fn events(&self) -> broadcast::Receiver<RuntimeEvent> {
        self.events.subscribe()
    }

    async fn list(&self) -> Result<Vec<Managed>, RuntimeError> {
        Ok(self
            .lock()
            .iter()
            .map(|(task, c)| Managed {
                task: task.clone(),
                id: c.id.clone(),
            })
            .collect())
    }

    async fn prepare(&self, task: &Task, _assets: &Assets) -> Result<(), RuntimeError> {
        let name = task.metadata.name.clone();
        if self.lock().contains_key(&name) {
            return Ok(());
        }
        tokio::time::sleep(self.opts.start_latency).await;
        let rate = self.opts.failure_rate.clamp(0.0, 1.0);
        if rate > 0.0 && rand::rng().random_bool(rate) {
            return Err(RuntimeError::Fatal("sim: injected failure".into()));
        }
        self.lock().entry(name).or_insert_with(|| Container {
            id: format!("sim-{}", rand::rng().random::<u64>()),
            status: ContainerStatus::Created,
            exit_code: None,
        });
        Ok(())
    }

    async fn start(&self, task: &Task) -> Result<(), RuntimeError> {
        let name = &task.metadata.name;
        if !self.lock().contains_key(name) {
            return Err(RuntimeError::Temporary("sim: no such container".into()));
        }
        tokio::time::sleep(self.opts.start_latency).await;
        if let Some(c) = self.lock().get_mut(name)
            && c.status == ContainerStatus::Created
        {
            c.status = ContainerStatus::Running;
        }
        self.notify(name, None);
        Ok(())
    }

    async fn inspect(&self, task: &Task) -> Result<Option<Observed>, RuntimeError> {
        Ok(self.lock().get(&task.metadata.name).map(|c| Observed {
            id: c.id.clone(),
            status: c.status.clone(),
            exit_code: c.exit_code,
            health: None,
            error: String::new(),
            ports: Vec::new(),
        }))
    }

    async fn stop(&self, task: &Task) -> Result<(), RuntimeError> {
        let name = &task.metadata.name;
        let changed = match self.lock().get_mut(name) {
            Some(c) if c.status == ContainerStatus::Running => {
                c.status = ContainerStatus::Exited;
                c.exit_code = Some(0);
                true
            }
            _ => false,
        };
        if changed {
            self.notify(name, Some(0));
        }
        Ok(())
    }

    async fn remove(&self, task: &str) -> Result<(), RuntimeError> {
        if self.lock().remove(task).is_some() {
            self.notify(task, None);
        }
        Ok(())
    }

    async fn prune_networks(&self, _in_use: &BTreeSet<String>) -> Result<(), RuntimeError> {
        Ok(())
    }

    /// Three made-up lines per container (the third on stderr); following then waits for
    /// lines that never come, as a quiet container's log does.
    async fn logs(&self, task: &str, req: LogRequest) -> Result<LogLines, RuntimeError> {
        if !self.lock().contains_key(task) {
            return Err(RuntimeError::Fatal(format!(
                "task {task} has no container on node {}",
                self.node
            )));
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(0);
        let lines = [
            (
                LogSource::Stdout,
                format!("sim: {task} created on {}", self.node),
            ),
            (LogSource::Stdout, format!("sim: {task} started")),
            (LogSource::Stderr, format!("sim: {task} has nothing to say")),
        ];
        let skip = match req.tail {
            Some(n) => lines.len().saturating_sub(n as usize),
            None => 0,
        };
        let entries: Vec<Result<LogEntry, RuntimeError>> = lines
            .into_iter()
            .skip(skip)
            .map(|(source, line)| {
                Ok(LogEntry {
                    source,
                    timestamp_nanos: now,
                    line: line.into_bytes(),
                })
            })
            .collect();
        let head = futures::stream::iter(entries);
        Ok(if req.follow {
            head.chain(futures::stream::pending()).boxed()
        } else {
            head.boxed()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_api::TaskSpec;

    fn task(name: &str) -> Task {
        Task::new(
            name,
            TaskSpec {
                service: "s".into(),
                ..Default::default()
            },
        )
    }

    #[tokio::test]
    async fn containers_go_through_their_life_idempotently() {
        let rt = SimRuntime::new(
            "n1",
            SimOptions {
                start_latency: Duration::from_millis(1),
                ..Default::default()
            },
        );
        let t = task("s.1.1");
        assert_eq!(rt.inspect(&t).await.unwrap(), None);
        rt.prepare(&t, &Assets::default()).await.unwrap();
        rt.prepare(&t, &Assets::default()).await.unwrap();
        assert_eq!(rt.list().await.unwrap().len(), 1);
        let mut ev = rt.events();
        rt.start(&t).await.unwrap();
        assert_eq!(ev.recv().await.unwrap().task, "s.1.1");
        let seen = rt.inspect(&t).await.unwrap().unwrap();
        assert_eq!(seen.status, ContainerStatus::Running);
        assert_eq!(rt.running(), 1);
        assert!(rt.exit("s.1.1", 3));
        let seen = rt.inspect(&t).await.unwrap().unwrap();
        assert_eq!(
            (seen.status, seen.exit_code),
            (ContainerStatus::Exited, Some(3))
        );
        rt.remove("s.1.1").await.unwrap();
        rt.remove("s.1.1").await.unwrap();
        assert_eq!(rt.inspect(&t).await.unwrap(), None);
    }

    #[tokio::test]
    async fn logs_are_a_few_made_up_lines_of_existing_containers() {
        let rt = SimRuntime::new(
            "n1",
            SimOptions {
                start_latency: Duration::ZERO,
                ..Default::default()
            },
        );
        assert!(matches!(
            rt.logs("s.1.1", LogRequest::default()).await,
            Err(RuntimeError::Fatal(_))
        ));
        rt.prepare(&task("s.1.1"), &Assets::default())
            .await
            .unwrap();
        let all: Vec<LogEntry> = rt
            .logs("s.1.1", LogRequest::default())
            .await
            .unwrap()
            .map(Result::unwrap)
            .collect()
            .await;
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].line, b"sim: s.1.1 created on n1");
        assert_eq!(all[2].source, LogSource::Stderr);
        let tail = LogRequest {
            tail: Some(1),
            ..Default::default()
        };
        let last: Vec<_> = rt.logs("s.1.1", tail).await.unwrap().collect().await;
        assert_eq!(last.len(), 1);
    }

    #[tokio::test]
    async fn failure_rate_one_rejects_every_task() {
        let rt = SimRuntime::new(
            "n1",
            SimOptions {
                start_latency: Duration::ZERO,
                failure_rate: 1.0,
                ..Default::default()
            },
        );
        let e = rt
            .prepare(&task("s.1.1"), &Assets::default())
            .await
            .unwrap_err();
        assert_eq!(e, RuntimeError::Fatal("sim: injected failure".into()));
        assert!(rt.list().await.unwrap().is_empty());
    }
}
