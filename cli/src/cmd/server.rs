//! `swarm server`: run a manager in this process.
//!
//! That is the apiserver (REST + watch over the embedded store or etcd, and the gRPC
//! dispatcher), every controller (`swarm_controllers::run_with`, the same code as
//! `swarm-controller all`, talking to the apiserver over its API like any client) and a local
//! agent on this machine's Docker engine. Each is still its own component, with its own
//! credentials: the controllers each get a controller certificate (so each may write only its
//! kinds), and the agent joins with the manager token like any other machine would.
//!
//! Secure by default, as Swarm is: on first start the cluster CA, this apiserver's certificate
//! and the join tokens are made under `DIR/pki`; the REST API and the dispatcher speak TLS 1.3
//! and require client certificates. After binding, the server writes `DIR/admin.conf` — the
//! admin's credentials and the real address (port 0 resolved) — so
//! `swarm --config DIR/admin.conf get services` works at once, and prints the `swarm join`
//! line for workers. On Ctrl-C the agent stops (leaving its containers running), then the
//! controllers (releasing their leases), then the apiserver.

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
    #[arg(long, value_enum, default_value = "docker")]
    pub agent: LocalAgent,
    /// With `--agent sim`: how many simulated nodes.
    #[arg(long, default_value_t = 1)]
    pub sim_nodes: usize,
    /// The local agent's node name (default: this machine's hostname; with `--agent sim`, the
    /// prefix of the simulated nodes' names).
    #[arg(long)]
    pub node_name: Option<String>,
    /// Where agents reach the dispatcher (default: the `--listen` address, port 4242).
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
    /// Addresses other machines reach this manager on, comma-separated: they go into its
    /// certificate and into the `swarm join` line (default: the `--listen` address).
    #[arg(long = "advertise-addr", value_delimiter = ',')]
    pub advertise_addr: Vec<String>,
    /// Plain HTTP and gRPC: no CA, no certificates, no join tokens. For local experiments
    /// only; anyone who reaches the ports can do anything.
    #[arg(long)]
    pub no_tls: bool,
    /// How long the certificates this manager issues last (its own, its controllers', the
    /// nodes'); each is renewed at 50–80 % of it. For tests of renewal.
    #[arg(long, hide = true, value_name = "DURATION", value_parser = crate::cmd::service::parse::duration)]
    pub cert_validity: Option<swarm_api::Duration>,
}

/// The dispatcher's port when `--dispatcher-listen` is not given.
pub const DEFAULT_DISPATCHER_PORT: u16 = 4242;

/// The agent `swarm server` runs beside the control plane.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LocalAgent {
    None,
    Docker,
    Sim,
}

/// Starts the local agent against `server`'s dispatcher; it runs until `stop` flips. Over
/// TLS it joins with the manager token (this machine is a manager), as `swarm join` would.
fn start_agent(
    args: &ServerArgs,
    server: &Server,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    let opts = agent_options(args, server)?;
    Some(tokio::spawn(async move {
        if let Err(e) = swarm_agent::run(opts, stop).await {
            tracing::error!(error = %e, "local agent failed");
            eprintln!("swarm server: the local agent stopped: {e}");
        }
    }))
}

/// The local agent's options (`None`: `--agent none`).
fn agent_options(args: &ServerArgs, server: &Server) -> Option<swarm_agent::AgentOptions> {
    let runtime = match args.agent {
        LocalAgent::None => return None,
        LocalAgent::Docker => swarm_agent::RuntimeKind::Docker,
        LocalAgent::Sim => swarm_agent::RuntimeKind::Sim,
    };
    let addr = loopback_if_unspecified(server.dispatcher_addr()?);
    let mut opts = swarm_agent::AgentOptions::new(addr.to_string(), args.data_dir.join("agent"));
    opts.runtime = runtime;
    opts.sim_nodes = args.sim_nodes;
    opts.node_name = args.node_name.clone();
    opts.tls = server.pki().map(|pki| swarm_agent::TlsJoin {
        api_url: local_url(server),
        token: Some(pki.tokens().manager.to_string()),
    });
    Some(opts)
}

/// `addr`, with 127.0.0.1 in place of an unspecified IP (0.0.0.0): where this process
/// reaches its own listeners.
fn loopback_if_unspecified(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    }
}

/// The URL this process (its controllers and agent) uses for its own apiserver.
fn local_url(server: &Server) -> String {
    let scheme = if server.pki().is_some() {
        "https"
    } else {
        "http"
    };
    format!(
        "{scheme}://{}",
        loopback_if_unspecified(server.local_addr())
    )
}

/// What other machines dial: the first advertised address with the API's port, else the
/// address the API listens on.
fn join_addr(args: &ServerArgs, server: &Server) -> String {
    let port = server.local_addr().port();
    match args.advertise_addr.first() {
        Some(a)
            if a.contains(':')
                && !a.starts_with('[')
                && a.parse::<std::net::Ipv6Addr>().is_err() =>
        {
            a.clone()
        }
        Some(a) => format!("{a}:{port}"),
        None => loopback_if_unspecified(server.local_addr()).to_string(),
    }
}

/// The file `swarm server` writes for clients.
pub fn admin_conf(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("admin.conf")
}

/// Opens the store, binds, and writes `admin.conf` with the real URL (and, over TLS, the
/// admin's certificate).
pub async fn start(args: &ServerArgs) -> anyhow::Result<Server> {
    anyhow::ensure!(
        !args.heartbeat_period.as_std().is_zero(),
        "--heartbeat-period must be more than 0 (e.g. 1s; the default is 5s)"
    );
    let mut advertise = args.advertise_addr.clone();
    if !args.listen.ip().is_unspecified() {
        advertise.push(args.listen.ip().to_string());
    }
    let opts = ServerOptions {
        data_dir: args.data_dir.clone(),
        listen: args.listen,
        store: match args.store {
            StoreKind::Embedded => StoreConfig::Embedded,
            StoreKind::Etcd => StoreConfig::Etcd {
                endpoints: args.etcd_endpoints.clone(),
            },
        },
        dispatcher_listen: Some(
            args.dispatcher_listen
                .unwrap_or_else(|| SocketAddr::new(args.listen.ip(), DEFAULT_DISPATCHER_PORT)),
        ),
        dispatcher: DispatcherOptions {
            heartbeat_period: args.heartbeat_period.as_std(),
            heartbeat_jitter: args.heartbeat_period.as_std() / 10,
            ..DispatcherOptions::default()
        },
        tls: !args.no_tls,
        advertise,
        // `swarm events` lets an event out once every kind's watch has passed it, which an
        // idle kind shows only by a bookmark: each second keeps events about a second late
        // at most (one short line per watch per second).
        bookmark_interval: std::time::Duration::from_secs(1),
        cert_validity: args
            .cert_validity
            .map(|d| d.as_std())
            .unwrap_or(swarm_pki::DEFAULT_CERT_VALIDITY),
        ..ServerOptions::default()
    };
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create {}", args.data_dir.display()))?;
    let server = Server::bind(opts)
        .await
        .context("cannot start the apiserver")?;
    let conf = admin_conf(&args.data_dir);
    admin_config(&args.data_dir, &server)?
        .save(&conf)
        .with_context(|| format!("cannot write {}", conf.display()))?;
    tracing::info!(url = %server.url(), config = %conf.display(), "swarm server listening");
    eprintln!(
        "swarm server listening on {} (client config: {})",
        server.url(),
        conf.display()
    );
    if let Some(pki) = server.pki() {
        eprintln!(
            "To add a worker to this swarm, run the following command:\n\n    swarm join --token {} {}\n",
            pki.tokens().worker,
            join_addr(args, &server)
        );
    }
    Ok(server)
}

/// The admin's client config for `server`: over TLS, a fresh admin certificate in `data_dir`.
pub fn admin_config(data_dir: &std::path::Path, server: &Server) -> anyhow::Result<ClientConfig> {
    let url = local_url(server);
    let Some(pki) = server.pki() else {
        return Ok(ClientConfig::single(url));
    };
    let (cert, key) = pki
        .write_admin_credentials(data_dir)
        .context("cannot write the admin credentials")?;
    Ok(ClientConfig::with_credentials(
        "default",
        url,
        pki.ca_path(),
        cert,
        key,
    ))
}

/// One client per controller, each with its own controller certificate over TLS (written
/// under `DIR/pki/controllers/`), so the apiserver lets each write only its kinds. Each
/// certificate is renewed at 50–80 % of its life until `stop`.
pub fn controller_clients(
    server: &Server,
    stop: &CancellationToken,
) -> anyhow::Result<std::collections::HashMap<String, swarm_client::Client>> {
    let url = local_url(server);
    let mut clients = std::collections::HashMap::new();
    for name in swarm_controllers::NAMES {
        let config = match server.pki() {
            Some(pki) => {
                let dir = pki.ca_path().with_file_name("controllers");
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
                let (cert, key) = pki
                    .write_credentials(&dir, name, name, swarm_pki::Role::Controller)
                    .with_context(|| format!("cannot issue the {name} controller's certificate"))?;
                ClientConfig::with_credentials(name, url.clone(), pki.ca_path(), cert, key)
            }
            None => ClientConfig::single(url.clone()),
        };
        let client = swarm_client::Client::from_config(&config)?;
        if server.pki().is_some() {
            tokio::spawn(swarm_client::join::keep_renewed(
                client.clone(),
                config,
                stop.clone().cancelled_owned(),
            ));
        }
        clients.insert(name.to_string(), client);
    }
    Ok(clients)
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
            // The local agent's node, so `node ls` can show it as the leader.
            let node = agent_options(&args, &server).map(|o| o.expected_node_name());
            let opts = swarm_controllers::Options {
                identity: controller_identity(&args.data_dir, node.as_deref()),
                heartbeat_period: args.heartbeat_period.as_std(),
                default_addr_pool: args.default_addr_pool,
                ..swarm_controllers::Options::default()
            };
            Some(start_controllers(
                controller_clients(&server, &stop)?,
                opts,
                stop.clone(),
            ))
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

/// The controllers' leader-election identity (`crate::leader::server_identity`): it names
/// the local agent's `node`, and is stable across restarts of this server (same host, same
/// data directory), so a server restarted after a crash takes its leases back at once
/// instead of waiting them out; distinct for servers with other data directories.
pub fn controller_identity(data_dir: &std::path::Path, node: Option<&str>) -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let dir = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    crate::leader::server_identity(node, &host, &dir)
}

/// Runs every controller in this process until `stop`, each with its client in `clients`
/// (keyed by controller name; see [`controller_clients`]).
pub fn start_controllers(
    clients: std::collections::HashMap<String, swarm_client::Client>,
    opts: swarm_controllers::Options,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Some(any) = clients.values().next().cloned() else {
            tracing::error!("no controller clients: no controllers run");
            return;
        };
        let client_for = |name: &str| clients.get(name).cloned().unwrap_or_else(|| any.clone());
        if let Err(e) = swarm_controllers::run_with("all", &client_for, opts, stop).await {
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
            node_name: None,
            dispatcher_listen: Some("127.0.0.1:0".parse().unwrap()),
            advertise_addr: vec![],
            cert_validity: None,
            no_tls: false,
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
        assert!(url.starts_with("https://"), "TLS by default: {url}");
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
            swarm_client::Client::from_config(&admin_config(&args.data_dir, &server).unwrap())
                .unwrap();
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
            swarm_client::Client::from_config(&admin_config(&args.data_dir, &server).unwrap())
                .unwrap();
        let stop = CancellationToken::new();
        let opts = swarm_controllers::Options {
            identity: "test".into(),
            ..swarm_controllers::Options::default()
        };
        let controllers = start_controllers(
            controller_clients(&server, &stop).unwrap(),
            opts,
            stop.clone(),
        );
        let running = server.spawn();
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
