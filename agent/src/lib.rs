//! swarm's node agent: registers with the dispatcher, receives its tasks and runs them on a
//! container runtime (Docker, or a simulated one for scale tests).
//!
//! * `session` — the gRPC session: register, heartbeat, assignment stream, status batches;
//! * `worker` — assignments applied to one runner per task, adoption and cleanup;
//! * `runner` — one task's state machine over the runtime;
//! * `mesh` — the routing mesh: published ports forwarded to running tasks on any node;
//! * `reporter` — status reports waiting to be sent, latest wins;
//! * `runtime` — the `Runtime` trait and its `docker` and `sim` backends.

pub mod mesh;
pub mod reporter;
pub mod runner;
pub mod runtime;
pub mod session;
pub mod worker;

use std::net::{IpAddr, ToSocketAddrs, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;

use runtime::sim::{SimOptions, SimRuntime};
use runtime::{Runtime, RuntimeError};
use session::{NodeConfig, SessionError};

/// Which runtime runs the tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuntimeKind {
    Docker,
    Sim,
}

#[derive(Clone, Debug)]
pub struct AgentOptions {
    /// The dispatcher: `host:port` or `http://host:port`.
    pub manager: String,
    pub data_dir: PathBuf,
    pub runtime: RuntimeKind,
    /// The address other nodes reach this one on; default: the local address that routes to
    /// the manager.
    pub advertise_addr: Option<IpAddr>,
    /// Default: the name kept in the data dir, else the engine's hostname.
    pub node_name: Option<String>,
    pub sim: SimOptions,
    /// With the sim runtime: how many hollow nodes this process runs.
    pub sim_nodes: usize,
}

impl AgentOptions {
    pub fn new(manager: impl Into<String>, data_dir: impl Into<PathBuf>) -> AgentOptions {
        AgentOptions {
            manager: manager.into(),
            data_dir: data_dir.into(),
            runtime: RuntimeKind::Docker,
            advertise_addr: None,
            node_name: None,
            sim: SimOptions::default(),
            sim_nodes: 1,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("runtime: {0}")]
    Runtime(#[from] RuntimeError),
    #[error("data dir {path}: {source}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Session(#[from] SessionError),
}

/// The local address that routes to `manager` (no packet is sent).
fn route_to(manager: &str) -> Option<IpAddr> {
    let hostport = manager.split("://").last().unwrap_or(manager);
    let target = hostport.to_socket_addrs().ok()?.next()?;
    let sock = UdpSocket::bind(("0.0.0.0", 0)).ok()?;
    sock.connect(target).ok()?;
    Some(sock.local_addr().ok()?.ip())
}

/// The node name: given, else kept in the data dir, else `fallback`; kept for next time.
fn node_name(opts: &AgentOptions, fallback: &str) -> Result<String, AgentError> {
    let dir = &opts.data_dir;
    let err = |source| AgentError::DataDir {
        path: dir.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    let file = dir.join("node-name");
    let name = match &opts.node_name {
        Some(n) => n.clone(),
        None => match std::fs::read_to_string(&file) {
            Ok(s) if !s.trim().is_empty() => s.trim().to_string(),
            _ => fallback.to_string(),
        },
    };
    std::fs::write(&file, &name).map_err(err)?;
    Ok(name)
}

/// Runs the agent until `shutdown` flips to `true`.
pub async fn run(opts: AgentOptions, shutdown: watch::Receiver<bool>) -> Result<(), AgentError> {
    let advertise = opts
        .advertise_addr
        .or_else(|| route_to(&opts.manager))
        .map(|ip| ip.to_string())
        .unwrap_or_else(|| "127.0.0.1".to_string());
    match opts.runtime {
        RuntimeKind::Docker => {
            let host = hostname_fallback();
            let name = node_name(&opts, &host)?;
            let rt = runtime::docker::DockerRuntime::connect(&name, &opts.data_dir).await?;
            let cfg = NodeConfig {
                manager: opts.manager.clone(),
                node_name: name,
                advertise_addr: advertise,
                mesh: true,
            };
            session::run_node(cfg, Arc::new(rt), None, shutdown).await;
        }
        RuntimeKind::Sim => {
            let prefix = opts.node_name.clone().unwrap_or_else(|| "sim".to_string());
            run_sim(&opts, &prefix, &advertise, shutdown).await?;
        }
    }
    Ok(())
}

/// Nodes that share one HTTP/2 connection (servers allow a few hundred streams on one).
const NODES_PER_CONNECTION: usize = 50;

async fn run_sim(
    opts: &AgentOptions,
    prefix: &str,
    advertise: &str,
    shutdown: watch::Receiver<bool>,
) -> Result<(), AgentError> {
    let endpoint = session::endpoint(&opts.manager)?;
    let mut channel = None;
    let mut nodes = Vec::new();
    for i in 0..opts.sim_nodes.max(1) {
        if i % NODES_PER_CONNECTION == 0 {
            channel = Some(endpoint.connect_lazy());
        }
        let name = format!("{prefix}-{i:04}");
        let rt: Arc<dyn Runtime> = Arc::new(SimRuntime::new(&name, opts.sim.clone()));
        let cfg = NodeConfig {
            manager: opts.manager.clone(),
            node_name: name,
            advertise_addr: advertise.to_string(),
            mesh: false,
        };
        nodes.push(tokio::spawn(session::run_node(
            cfg,
            rt,
            channel.clone(),
            shutdown.clone(),
        )));
    }
    tracing::info!(nodes = nodes.len(), "simulated nodes started");
    for n in nodes {
        let _ = n.await;
    }
    Ok(())
}

fn hostname_fallback() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "node".to_string())
}
