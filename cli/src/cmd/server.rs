//! `swarm server`: run the control plane in this process.
//!
//! That is the apiserver (REST + watch over the embedded store or etcd) and every controller
//! (`swarm_controllers::run("all", …)`, the same code as `swarm-controller all`, talking to
//! the apiserver over its API like any client); a local agent joins it later. Each is still its
//! own component. On Ctrl-C the controllers stop first (releasing their leases), then the
//! apiserver. After binding,
//! it writes `DIR/admin.conf` — a client config pointing at the real address (port 0 resolved)
//! — so `swarm --config DIR/admin.conf get services` works at once, and logs the address.
//! TLS is not set up yet: the API is plain HTTP.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};
use swarm_apiserver::dispatcher::DispatcherOptions;
use swarm_apiserver::server::{DEFAULT_LISTEN, Server, ServerOptions, StoreConfig};
use swarm_client::ClientConfig;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StoreKind {
    /// One SQLite file under the data directory.
    Embedded,
    /// An etcd cluster (`--etcd-endpoints`).
    Etcd,
}

#[derive(Args, Debug)]
pub struct ServerArgs {
    /// Where the store (embedded) and `admin.conf` live.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Address for the REST API (port 0 picks a free port).
    #[arg(long, default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    #[arg(long, value_enum, default_value = "embedded")]
    pub store: StoreKind,
    /// etcd endpoints, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:2379")]
    pub etcd_endpoints: Vec<String>,
    /// Run only the apiserver (controllers run elsewhere, e.g. `swarm-controller all`).
    #[arg(long)]
    pub no_controllers: bool,
    /// Run a local agent in this process: `docker` (this machine's engine), `sim` (hollow
    /// nodes, see `--sim-nodes`) or `none`.
    #[arg(long, value_enum, default_value = "none")]
    pub agent: LocalAgent,
    /// With `--agent sim`: how many simulated nodes.
    #[arg(long, default_value_t = 1)]
    pub sim_nodes: usize,
    /// Where agents reach the dispatcher (default: off, or an ephemeral loopback port when
    /// `--agent` runs one here).
    #[arg(long)]
    pub dispatcher_listen: Option<SocketAddr>,
    /// How often agents heartbeat; a node is down after 3 missed. Shorter finds a dead node
    /// sooner (tests use 1s).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = crate::cmd::service::parse::duration)]
    pub heartbeat_period: swarm_api::Duration,
    /// Where networks without a subnet get theirs, cut in /24s (Swarm's
    /// `--default-addr-pool`). Clusters sharing one Docker engine need disjoint pools.
    #[arg(long, value_name = "CIDR", default_value = "10.0.0.0/8")]
    pub default_addr_pool: ipnet::Ipv4Net,
}

/// The agent `swarm server` runs beside the control plane.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LocalAgent {
    None,
    Docker,
    Sim,
}

/// Starts the local agent against `server`'s dispatcher; it runs until `stop` flips.
fn start_agent(
    args: &ServerArgs,
    server: &Server,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    let runtime = match args.agent {
        LocalAgent::None => return None,
        LocalAgent::Docker => swarm_agent::RuntimeKind::Docker,
        LocalAgent::Sim => swarm_agent::RuntimeKind::Sim,
    };
    let addr = server.dispatcher_addr()?;
    let mut opts = swarm_agent::AgentOptions::new(addr.to_string(), args.data_dir.join("agent"));
    opts.runtime = runtime;
    opts.sim_nodes = args.sim_nodes;
    Some(tokio::spawn(async move {
        if let Err(e) = swarm_agent::run(opts, stop).await {
            tracing::error!(error = %e, "local agent failed");
        }
    }))
}

/// The file `swarm server` writes for clients.
pub fn admin_conf(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("admin.conf")
}

/// Opens the store, binds, and writes `admin.conf` with the real URL.
pub async fn start(args: &ServerArgs) -> anyhow::Result<Server> {
    anyhow::ensure!(
        !args.heartbeat_period.as_std().is_zero(),
        "--heartbeat-period must be more than 0 (e.g. 1s; the default is 5s)"
    );
    let opts = ServerOptions {
        data_dir: args.data_dir.clone(),
        listen: args.listen,
        store: match args.store {
            StoreKind::Embedded => StoreConfig::Embedded,
            StoreKind::Etcd => StoreConfig::Etcd {
                endpoints: args.etcd_endpoints.clone(),
            },
        },
        dispatcher_listen: args.dispatcher_listen.or_else(|| {
            (args.agent != LocalAgent::None).then(|| SocketAddr::from(([127, 0, 0, 1], 0)))
        }),
        dispatcher: DispatcherOptions {
            heartbeat_period: args.heartbeat_period.as_std(),
            heartbeat_jitter: args.heartbeat_period.as_std() / 10,
            ..DispatcherOptions::default()
        },
        ..ServerOptions::default()
    };
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create {}", args.data_dir.display()))?;
    let server = Server::bind(opts)
        .await
        .context("cannot start the apiserver")?;
    let conf = admin_conf(&args.data_dir);
    ClientConfig::single(server.url())
        .save(&conf)
        .with_context(|| format!("cannot write {}", conf.display()))?;
    tracing::info!(url = %server.url(), config = %conf.display(), "swarm server listening");
    eprintln!(
        "swarm server listening on {} (client config: {})",
        server.url(),
        conf.display()
    );
    Ok(server)
}

pub fn run(args: ServerArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async {
        let server = start(&args).await?;
        let stop = CancellationToken::new();
        let controllers = if args.no_controllers {
            None
        } else {
            let client = swarm_client::Client::from_config(&ClientConfig::single(server.url()))?;
            let opts = swarm_controllers::Options {
                identity: controller_identity(&args.data_dir),
                heartbeat_period: args.heartbeat_period.as_std(),
                default_addr_pool: args.default_addr_pool,
                ..swarm_controllers::Options::default()
            };
            Some(start_controllers(client, opts, stop.clone()))
        };
        let (agent_stop, agent_rx) = tokio::sync::watch::channel(false);
        let agent = start_agent(&args, &server, agent_rx);
        server
            .run(async move {
                let _ = tokio::signal::ctrl_c().await;
                // The agent leaves its containers running for the next start.
                agent_stop.send_replace(true);
                if let Some(a) = agent {
                    let _ = tokio::time::timeout(CONTROLLER_STOP, a).await;
                }
                stop.cancel();
                if let Some(c) = controllers {
                    // Their leases are released through the apiserver: it stops after them.
                    let _ = tokio::time::timeout(CONTROLLER_STOP, c).await;
                }
            })
            .await
            .context("apiserver failed")
    })?;
    Ok(ExitCode::SUCCESS)
}

/// How long Ctrl-C waits for the controllers to finish their reconciles.
const CONTROLLER_STOP: std::time::Duration = std::time::Duration::from_secs(10);

/// The controllers' leader-election identity: stable across restarts of this server (same
/// host, same data directory), so a server restarted after a crash takes its leases back at
/// once instead of waiting them out; distinct for servers with other data directories.
pub fn controller_identity(data_dir: &std::path::Path) -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let dir = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    format!("swarm-server:{host}:{}", dir.display())
}

/// Runs every controller in this process until `stop`.
pub fn start_controllers(
    client: swarm_client::Client,
    opts: swarm_controllers::Options,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(e) = swarm_controllers::run("all", client, opts, stop).await {
            tracing::error!(error = %e, "controllers failed");
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server on an ephemeral loopback port over an embedded store in `dir`, with neither
    /// controllers nor an agent; tests turn on what they need.
    pub(super) fn local_args(dir: &std::path::Path) -> ServerArgs {
        ServerArgs {
            data_dir: dir.join("data"),
            listen: "127.0.0.1:0".parse().unwrap(),
            store: StoreKind::Embedded,
            etcd_endpoints: vec![],
            no_controllers: true,
            agent: LocalAgent::None,
            sim_nodes: 1,
            dispatcher_listen: None,
            heartbeat_period: swarm_api::Duration::from_secs(5),
            default_addr_pool: swarm_controllers::ipam::subnet::DEFAULT_POOL,
        }
    }

    #[tokio::test]
    async fn a_zero_heartbeat_period_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let args = ServerArgs {
            heartbeat_period: swarm_api::Duration::from_secs(0),
            ..local_args(dir.path())
        };
        let err = start(&args).await.err().expect("refused");
        assert!(
            err.to_string()
                .contains("--heartbeat-period must be more than 0")
        );
    }

    #[tokio::test]
    async fn writes_admin_conf_with_the_bound_address() {
        let dir = tempfile::tempdir().unwrap();
        let args = local_args(dir.path());
        let server = start(&args).await.unwrap();
        let url = server.url();
        assert!(!url.ends_with(":0"), "{url}");
        let conf = ClientConfig::load(&admin_conf(&args.data_dir)).unwrap();
        assert_eq!(conf.current().unwrap().server, url);
        let running = server.spawn();
        // A client built from the written config reaches the server.
        let client = swarm_client::Client::from_config(&conf).unwrap();
        let created = client
            .create(&swarm_api::Network::new("net", Default::default()))
            .await
            .unwrap();
        assert_eq!(created.metadata.generation, 1);
        running.shutdown().await.unwrap();
    }
}

#[cfg(test)]
mod agent_tests {
    use super::*;

    /// `swarm server --agent sim --sim-nodes 3`: the local agent's nodes register through the
    /// in-process dispatcher and show up ready.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_local_sim_agent_registers_its_nodes() {
        let dir = tempfile::tempdir().unwrap();
        let args = ServerArgs {
            agent: LocalAgent::Sim,
            sim_nodes: 3,
            ..tests::local_args(dir.path())
        };
        let server = start(&args).await.unwrap();
        assert!(server.dispatcher_addr().is_some());
        let (stop, rx) = tokio::sync::watch::channel(false);
        let agent = start_agent(&args, &server, rx).unwrap();
        let client =
            swarm_client::Client::from_config(&ClientConfig::single(server.url())).unwrap();
        let running = server.spawn();
        tokio::time::timeout(std::time::Duration::from_secs(20), async {
            loop {
                let nodes = client
                    .list::<swarm_api::Node>(&swarm_client::ListParams::default())
                    .await
                    .unwrap();
                if nodes.items.len() == 3
                    && nodes
                        .items
                        .iter()
                        .all(|n| n.status.state == swarm_api::NodeState::Ready)
                {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        })
        .await
        .expect("three ready nodes");
        stop.send_replace(true);
        let _ = agent.await;
        running.shutdown().await.unwrap();
    }
}

#[cfg(test)]
mod controller_tests {
    use super::*;
    use swarm_api::{Service, ServiceMode, ServiceSpec, Task};

    /// `swarm server`'s controllers act on what the apiserver holds: a new service gets tasks.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_in_process_controllers_create_tasks_for_a_service() {
        let dir = tempfile::tempdir().unwrap();
        let args = ServerArgs {
            no_controllers: false,
            ..tests::local_args(dir.path())
        };
        let server = start(&args).await.unwrap();
        let client =
            swarm_client::Client::from_config(&ClientConfig::single(server.url())).unwrap();
        let running = server.spawn();
        let stop = CancellationToken::new();
        let opts = swarm_controllers::Options {
            identity: "test".into(),
            ..swarm_controllers::Options::default()
        };
        let controllers = start_controllers(client.clone(), opts, stop.clone());
        let mut spec = ServiceSpec {
            mode: ServiceMode::Replicated { replicas: 2 },
            ..ServiceSpec::default()
        };
        spec.task_template.container.image = "swarm-examples/hello:1".into();
        client.create(&Service::new("web", spec)).await.unwrap();
        let tasks = tokio::time::timeout(std::time::Duration::from_secs(20), async {
            loop {
                let l = client
                    .list::<Task>(&swarm_client::ListParams::default())
                    .await
                    .unwrap();
                if l.items.len() == 2 {
                    return l.items;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        })
        .await
        .expect("replication creates the tasks");
        let mut names: Vec<String> = tasks.into_iter().map(|t| t.metadata.name).collect();
        names.sort();
        assert_eq!(names, vec!["web.1.1", "web.2.1"]);
        stop.cancel();
        controllers.await.unwrap();
        running.shutdown().await.unwrap();
    }
}
