//! swarm's node agent: registers with the dispatcher, receives its tasks and runs them on a
//! container runtime (Docker, or a simulated one for scale tests).
//!
//! * `session` — the gRPC session: register, heartbeat, assignment stream, status batches;
//! * `credentials` — the node certificate for mutual TLS, joined for once and renewed;
//! * `worker` — assignments applied to one runner per task, adoption and cleanup;
//! * `runner` — one task's state machine over the runtime;
//! * `events` — the runtime's events, routed to the runner of their task;
//! * `mesh` — the routing mesh: published ports forwarded to running tasks on any node;
//! * `reporter` — status reports waiting to be sent, latest wins;
//! * `logs` — log subscriptions from the dispatcher, answered with this node's container logs;
//! * `runtime` — the `Runtime` trait and its `docker` and `sim` backends.

pub mod credentials;
pub mod events;
pub mod logs;
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
    /// Mutual TLS with the dispatcher (a cluster made by `swarm init`/`swarm server`);
    /// `None`: plain gRPC, for dispatchers running without TLS.
    pub tls: Option<TlsJoin>,
}

/// How a node gets and keeps its certificate.
#[derive(Clone, Debug)]
pub struct TlsJoin {
    /// The apiserver (`https://ADDR:PORT`): joins and renewals go there.
    pub api_url: String,
    /// The join token, used when the node has no certificate yet (first start).
    pub token: Option<String>,
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
            tls: None,
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
    #[error("node {node}: {source}")]
    Join {
        node: String,
        #[source]
        source: swarm_client::join::JoinError,
    },
    #[error(
        "node {node} has no certificate in {dir} and no join token was given: join the cluster first (`swarm join --token TOKEN ADDR:PORT`)"
    )]
    NotJoined { node: String, dir: PathBuf },
}

/// The node's credentials in `dir`, joining with the token first when there are none yet.
async fn credentials(
    tls: &TlsJoin,
    dir: &std::path::Path,
    wanted_name: &str,
) -> Result<credentials::SharedCredentials, AgentError> {
    use swarm_client::join::{self, NodeCredentials};
    let join_err = |source| AgentError::Join {
        node: wanted_name.to_string(),
        source,
    };
    if NodeCredentials::load(dir).is_err() {
        let Some(token) = &tls.token else {
            return Err(AgentError::NotJoined {
                node: wanted_name.to_string(),
                dir: dir.to_path_buf(),
            });
        };
        let creds = join::join(&tls.api_url, token, wanted_name)
            .await
            .map_err(join_err)?;
        creds.save(dir).map_err(join_err)?;
        tracing::info!(node = %creds.identity.id, role = %creds.identity.role, "joined the cluster");
    }
    credentials::SharedCredentials::load(dir).map_err(join_err)
}

/// Starts the renewal of `creds` in the background.
fn keep_renewed(
    tls: &TlsJoin,
    dir: &std::path::Path,
    creds: &credentials::SharedCredentials,
    shutdown: &watch::Receiver<bool>,
) {
    let opts = credentials::TlsOptions {
        dir: dir.to_path_buf(),
        api_url: tls.api_url.clone(),
    };
    tokio::spawn(credentials::renew_forever(
        opts,
        creds.clone(),
        shutdown.clone(),
    ));
}

/// The directory of a node's credentials inside the agent's data dir.
fn pki_dir(data_dir: &std::path::Path, node: Option<&str>) -> PathBuf {
    match node {
        Some(n) => data_dir.join("nodes").join(n).join("pki"),
        None => data_dir.join("pki"),
    }
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
    let name = opts
        .node_name
        .clone()
        .or_else(|| kept_node_name(dir))
        .unwrap_or_else(|| fallback.to_string());
    std::fs::write(dir.join("node-name"), &name).map_err(err)?;
    Ok(name)
}

/// The node name kept in the data dir by an earlier start, if any.
fn kept_node_name(data_dir: &std::path::Path) -> Option<String> {
    std::fs::read_to_string(data_dir.join("node-name"))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// The name of simulated node `i` of a sim agent whose nodes are named `prefix-NNNN`.
fn sim_node_name(prefix: &str, i: usize) -> String {
    format!("{prefix}-{i:04}")
}

impl AgentOptions {
    /// The name this agent's node (with the sim runtime: its first node) asks for, known
    /// before it starts: `node_name`, else the name kept in the data dir (the certificate's,
    /// after a first join), else the hostname; sim nodes are `PREFIX-0000` (`node_name` or
    /// `sim`). A first join under a name another node has gets a suffixed one, which this
    /// returns from the next start on.
    pub fn expected_node_name(&self) -> String {
        match self.runtime {
            RuntimeKind::Docker => self
                .node_name
                .clone()
                .or_else(|| kept_node_name(&self.data_dir))
                .unwrap_or_else(hostname_fallback),
            RuntimeKind::Sim => sim_node_name(self.node_name.as_deref().unwrap_or(SIM_PREFIX), 0),
        }
    }
}

/// The prefix of simulated nodes' names when none is given.
const SIM_PREFIX: &str = "sim";

/// Keeps `name` as the node's name in the data dir.
fn remember_node_name(opts: &AgentOptions, name: &str) -> Result<(), AgentError> {
    let file = opts.data_dir.join("node-name");
    std::fs::write(&file, name).map_err(|source| AgentError::DataDir {
        path: file.clone(),
        source,
    })
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
            let mut name = node_name(&opts, &host)?;
            let tls = match &opts.tls {
                Some(t) => {
                    let dir = pki_dir(&opts.data_dir, None);
                    let creds = credentials(t, &dir, &name).await?;
                    keep_renewed(t, &dir, &creds, &shutdown);
                    // The certificate names the node; keep that name for next time.
                    name = creds.node_name();
                    remember_node_name(&opts, &name)?;
                    Some(creds)
                }
                None => None,
            };
            let rt = runtime::docker::DockerRuntime::connect(&name, &opts.data_dir).await?;
            let cfg = NodeConfig {
                manager: opts.manager.clone(),
                tls,
                node_name: name,
                advertise_addr: advertise,
                mesh: true,
            };
            session::run_node(cfg, Arc::new(rt), None, shutdown).await;
        }
        RuntimeKind::Sim => {
            let prefix = opts.node_name.as_deref().unwrap_or(SIM_PREFIX);
            run_sim(&opts, prefix, &advertise, shutdown).await?;
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
    let endpoint = session::endpoint(&opts.manager, None)?;
    let mut channel = None;
    let mut nodes = Vec::new();
    for i in 0..opts.sim_nodes.max(1) {
        let mut name = sim_node_name(prefix, i);
        // Over TLS each node has its own certificate, hence its own connection; without,
        // nodes share connections.
        let tls = match &opts.tls {
            Some(t) => {
                let dir = pki_dir(&opts.data_dir, Some(&name));
                let creds = credentials(t, &dir, &name).await?;
                keep_renewed(t, &dir, &creds, &shutdown);
                name = creds.node_name();
                channel = None;
                Some(creds)
            }
            None => {
                if i % NODES_PER_CONNECTION == 0 {
                    channel = Some(endpoint.connect_lazy());
                }
                None
            }
        };
        let rt: Arc<dyn Runtime> = Arc::new(SimRuntime::new(&name, opts.sim.clone()));
        let cfg = NodeConfig {
            manager: opts.manager.clone(),
            tls,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_expected_node_name_is_given_else_kept_else_the_hostname() {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = AgentOptions::new("127.0.0.1:4242", dir.path());
        assert_eq!(opts.expected_node_name(), hostname_fallback());
        std::fs::write(dir.path().join("node-name"), "web-2\n").unwrap();
        assert_eq!(opts.expected_node_name(), "web-2");
        opts.node_name = Some("asked".into());
        assert_eq!(opts.expected_node_name(), "asked");
        assert_eq!(node_name(&opts, "fallback").unwrap(), "asked");
        opts.runtime = RuntimeKind::Sim;
        assert_eq!(opts.expected_node_name(), "asked-0000");
        opts.node_name = None;
        assert_eq!(opts.expected_node_name(), "sim-0000");
    }
}
