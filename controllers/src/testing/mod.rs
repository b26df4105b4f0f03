//! An in-process node simulator for controller tests (feature `testing`).
//!
//! `Sim` plays the agents of any number of nodes through the API only, as real agents would:
//! it creates `Node` objects, heartbeats their status, and moves the tasks bound to them
//! ASSIGNED → ACCEPTED → PREPARING → READY → STARTING → RUNNING (holding at READY when that is
//! the desired state, going on to COMPLETE for jobs), and stops tasks whose desired state is
//! past RUNNING. Tests make nodes fail (stop heartbeating: the node is partitioned — no
//! heartbeats, no task reports), make a service's tasks fail on start, or fail one task.
//!
//! With `assign` on it also stands in for ipam and placement: a NEW or PENDING task without a
//! node goes to the live, ready, active node with the fewest tasks. Tests of those controllers
//! turn it off.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use swarm_api::{Node, NodeAvailability, NodeSpec, NodeState, Task, TaskState, Timestamp};
use swarm_client::{Client, ClientError, ListParams};
use tokio_util::sync::CancellationToken;

/// What a simulated node does with the tasks of a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Start and keep running (jobs: run, then complete).
    Run,
    /// Fail while starting (exit code 1).
    FailOnStart,
}

#[derive(Clone, Debug)]
pub struct SimOptions {
    pub heartbeat_period: Duration,
    /// Act as ipam + placement for tasks without a node.
    pub assign: bool,
    /// How often the simulator looks at the cluster.
    pub tick: Duration,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            heartbeat_period: Duration::from_millis(200),
            assign: true,
            tick: Duration::from_millis(30),
        }
    }
}

#[derive(Default)]
struct State {
    /// Simulated nodes: whether each is alive, and when it last heartbeat.
    nodes: BTreeMap<String, (bool, Option<Instant>)>,
    behaviours: HashMap<String, Behaviour>,
}

/// A running simulator; stops when dropped.
pub struct Sim {
    client: Client,
    state: Arc<Mutex<State>>,
    stop: CancellationToken,
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Sim {
    /// Starts simulating (no nodes yet).
    pub fn start(client: Client, opts: SimOptions) -> Sim {
        let state = Arc::new(Mutex::new(State::default()));
        let stop = CancellationToken::new();
        let looper = Looper {
            client: client.clone(),
            state: state.clone(),
            opts,
        };
        let token = stop.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(looper.opts.tick);
            loop {
                tokio::select! {
                    _ = token.cancelled() => return,
                    _ = tick.tick() => {
                        if let Err(e) = looper.round().await {
                            tracing::debug!(error = %e, "sim round failed");
                        }
                    }
                }
            }
        });
        Sim {
            client,
            state,
            stop,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Creates node `name` (active worker) and starts heartbeating it.
    pub async fn add_node(&self, name: &str) -> Result<Node, ClientError> {
        self.add_node_with(name, NodeSpec::default()).await
    }

    pub async fn add_node_with(&self, name: &str, spec: NodeSpec) -> Result<Node, ClientError> {
        self.client.create(&Node::new(name, spec)).await?;
        self.lock().nodes.insert(name.to_string(), (true, None));
        heartbeat(&self.client, name).await?;
        self.client.get::<Node>(name).await
    }

    /// The node stops heartbeating and reporting (a crash or a partition).
    pub fn stop_node(&self, name: &str) {
        if let Some(n) = self.lock().nodes.get_mut(name) {
            n.0 = false;
        }
    }

    /// The node heartbeats and reports again.
    pub fn restart_node(&self, name: &str) {
        if let Some(n) = self.lock().nodes.get_mut(name) {
            *n = (true, None);
        }
    }

    /// Sets a node's availability (`docker node update --availability`), as a user would.
    pub async fn set_availability(
        &self,
        name: &str,
        a: NodeAvailability,
    ) -> Result<(), ClientError> {
        for _ in 0..10 {
            let mut n = self.client.get::<Node>(name).await?;
            n.spec.availability = a;
            match self.client.replace(&n).await {
                Ok(_) => return Ok(()),
                Err(e) if e.is_conflict() => continue,
                Err(e) => return Err(e),
            }
        }
        Err(conflict(name))
    }

    pub fn set_behaviour(&self, service: &str, b: Behaviour) {
        self.lock().behaviours.insert(service.to_string(), b);
    }

    /// Reports task `name` as failed (its container exited with 1).
    pub async fn fail_task(&self, name: &str) -> Result<(), ClientError> {
        for _ in 0..10 {
            let mut t = self.client.get::<Task>(name).await?;
            set(&mut t, TaskState::Failed, "task: non-zero exit (1)");
            t.status.exit_code = Some(1);
            t.status.err = "task: non-zero exit (1)".into();
            match self.client.replace_status(&t).await {
                Ok(_) => return Ok(()),
                Err(e) if e.is_conflict() => continue,
                Err(e) => return Err(e),
            }
        }
        Err(conflict(name))
    }
}

fn conflict(name: &str) -> ClientError {
    ClientError::Config(format!("{name}: kept conflicting"))
}

fn set(t: &mut Task, state: TaskState, message: &str) {
    t.status.state = state;
    t.status.message = message.to_string();
    t.status.timestamp = Some(Timestamp::now());
}

async fn heartbeat(client: &Client, name: &str) -> Result<(), ClientError> {
    for _ in 0..5 {
        let mut n = client.get::<Node>(name).await?;
        n.status.state = NodeState::Ready;
        n.status.message.clear();
        n.status.hostname = name.to_string();
        n.status.last_heartbeat = Some(Timestamp::now());
        match client.replace_status(&n).await {
            Ok(_) => return Ok(()),
            Err(e) if e.is_conflict() => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

struct Looper {
    client: Client,
    state: Arc<Mutex<State>>,
    opts: SimOptions,
}

impl Looper {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn round(&self) -> Result<(), ClientError> {
        let due: Vec<String> = {
            let st = self.lock();
            st.nodes
                .iter()
                .filter(|(_, (alive, last))| {
                    *alive && last.is_none_or(|l| l.elapsed() >= self.opts.heartbeat_period)
                })
                .map(|(n, _)| n.clone())
                .collect()
        };
        for n in due {
            heartbeat(&self.client, &n).await?;
            if let Some(e) = self.lock().nodes.get_mut(&n) {
                e.1 = Some(Instant::now());
            }
        }
        let p = ListParams::default();
        let tasks = self.client.list_all::<Task>(&p).await?.items;
        let nodes = self.client.list_all::<Node>(&p).await?.items;
        let (alive, behaviours): (HashSet<String>, HashMap<String, Behaviour>) = {
            let st = self.lock();
            (
                st.nodes
                    .iter()
                    .filter(|(_, (a, _))| *a)
                    .map(|(n, _)| n.clone())
                    .collect(),
                st.behaviours.clone(),
            )
        };
        let mut load: HashMap<String, usize> = HashMap::new();
        for t in tasks.iter().filter(|t| !t.status.state.is_terminal()) {
            if let Some(n) = &t.spec.node_name {
                *load.entry(n.clone()).or_default() += 1;
            }
        }
        for t in tasks {
            let behaviour = behaviours
                .get(&t.spec.service)
                .copied()
                .unwrap_or(Behaviour::Run);
            let result = match t.spec.node_name.clone() {
                None if self.opts.assign => self.assign(t, &nodes, &alive, &mut load).await,
                Some(n) if alive.contains(&n) => self.agent(t, behaviour).await,
                _ => Ok(()),
            };
            if let Err(e) = result
                && !e.is_conflict()
                && !e.is_not_found()
            {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Stands in for ipam + placement.
    async fn assign(
        &self,
        mut t: Task,
        nodes: &[Node],
        alive: &HashSet<String>,
        load: &mut HashMap<String, usize>,
    ) -> Result<(), ClientError> {
        let wanted = t.spec.desired_state <= TaskState::Running
            || t.spec.desired_state == TaskState::Complete;
        if t.status.state > TaskState::Pending || !wanted {
            return Ok(());
        }
        let Some(node) = nodes
            .iter()
            .filter(|n| {
                alive.contains(&n.metadata.name)
                    && n.status.state == NodeState::Ready
                    && n.spec.availability == NodeAvailability::Active
            })
            .min_by_key(|n| {
                (
                    load.get(&n.metadata.name).copied().unwrap_or(0),
                    n.metadata.name.clone(),
                )
            })
        else {
            return Ok(());
        };
        let name = node.metadata.name.clone();
        t.spec.node_name = Some(name.clone());
        let mut t = self.client.replace(&t).await?;
        *load.entry(name).or_default() += 1;
        set(&mut t, TaskState::Assigned, "scheduled by the simulator");
        self.client.replace_status(&t).await.map(drop)
    }

    /// Plays the node's agent for one of its tasks.
    async fn agent(&self, mut t: Task, behaviour: Behaviour) -> Result<(), ClientError> {
        let state = t.status.state;
        let desired = t.spec.desired_state;
        if state.is_terminal() {
            return Ok(());
        }
        // A global task is bound at creation; without placement it is still NEW.
        if state < TaskState::Assigned {
            if self.opts.assign && desired <= TaskState::Complete && desired != TaskState::Shutdown
            {
                set(&mut t, TaskState::Assigned, "bound to its node");
                self.client.replace_status(&t).await?;
            }
            return Ok(());
        }
        if desired > TaskState::Running && desired != TaskState::Complete {
            set(&mut t, TaskState::Shutdown, "shutdown");
            return self.client.replace_status(&t).await.map(drop);
        }
        if state == TaskState::Running {
            if desired == TaskState::Complete {
                set(&mut t, TaskState::Complete, "finished");
                t.status.exit_code = Some(0);
                self.client.replace_status(&t).await?;
            }
            return Ok(());
        }
        let target = if desired == TaskState::Ready {
            TaskState::Ready
        } else {
            TaskState::Running
        };
        for next in [
            TaskState::Accepted,
            TaskState::Preparing,
            TaskState::Ready,
            TaskState::Starting,
            TaskState::Running,
        ] {
            if next <= t.status.state || next > target {
                continue;
            }
            if next == TaskState::Starting && behaviour == Behaviour::FailOnStart {
                set(&mut t, TaskState::Failed, "starting container failed");
                t.status.err = "task: non-zero exit (1)".into();
                t.status.exit_code = Some(1);
                self.client.replace_status(&t).await?;
                return Ok(());
            }
            set(&mut t, next, next.as_str());
            t = self.client.replace_status(&t).await?;
        }
        Ok(())
    }
}
