//! `swarm join --token TOKEN ADDR:PORT`: this machine joins a swarm and runs its agent — or,
//! with a manager token, a second control plane (apiserver, dispatcher, controllers under
//! leader election, local agent) over the cluster's shared etcd, as `swarm server` runs it; and
//! `swarm join-token [-q] [--rotate] worker|manager`: what to run on the machines that join.
//!
//! Joining trusts nothing at first: the manager's CA is fetched blind and kept only if its
//! digest is the one in the token; then a key is made here, and a CSR sent with the token
//! gets back a certificate naming this node and its role. The credentials are kept in the
//! data directory, so running `swarm join` again (or after a reboot) just starts the agent.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use swarm_client::join::{self, NodeCredentials};

use crate::cmd::server::{LocalAgent, ServerArgs, StoreKind};
use crate::connect::{ConnectArgs, block_on};
use swarm_apiserver::server::DEFAULT_LISTEN;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RuntimeArg {
    /// This machine's Docker engine.
    Docker,
    /// Simulated containers (hollow nodes, for scale tests).
    Sim,
    /// No agent: a manager that runs only the control plane.
    None,
}

#[derive(Args, Debug)]
pub struct JoinArgs {
    /// The join token (`swarm join-token worker` on a manager prints it).
    #[arg(long)]
    pub token: String,
    /// The manager's API address, `ADDR:PORT`.
    pub manager: String,
    /// Where the agent keeps its credentials and state [default: ~/.swarm/agent].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The name this node asks for (default: its hostname); the manager adds a suffix when
    /// another node has it.
    #[arg(long)]
    pub node_name: Option<String>,
    /// The address other nodes and the routing mesh reach this node on.
    #[arg(long)]
    pub advertise_addr: Option<std::net::IpAddr>,
    #[arg(long, value_enum, default_value = "docker")]
    pub runtime: RuntimeArg,
    /// With `--runtime sim`: how many simulated nodes.
    #[arg(long, default_value_t = 1)]
    pub sim_nodes: usize,
    /// Managers: where this manager's API listens (port 0 picks a free port).
    #[arg(long, default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Managers: where its dispatcher listens (default: the `--listen` address, port 4242).
    #[arg(long)]
    pub dispatcher_listen: Option<SocketAddr>,
    /// Managers: the shared store's etcd endpoints, comma-separated (default: those the
    /// manager joined through uses).
    #[arg(long, value_delimiter = ',')]
    pub etcd_endpoints: Vec<String>,
    /// Managers: how often agents heartbeat (as `swarm server --heartbeat-period`).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = crate::cmd::service::parse::duration)]
    pub heartbeat_period: swarm_api::Duration,
}

fn api_url(manager: &str) -> String {
    if manager.contains("://") {
        manager.trim_end_matches('/').to_string()
    } else {
        format!("https://{manager}")
    }
}

pub fn run(args: JoinArgs) -> anyhow::Result<ExitCode> {
    let data_dir = args
        .data_dir
        .clone()
        .or_else(|| {
            swarm_client::ClientConfig::default_path()
                .and_then(|p| p.parent().map(|d| d.join("agent")))
        })
        .context("cannot tell where the agent's data goes: pass --data-dir")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match rt.block_on(join_swarm(&args, &data_dir))? {
        Joined::Worker(opts) => rt.block_on(run_agent(*opts)),
        Joined::Manager(server) => {
            // `swarm server` makes its own runtime.
            drop(rt);
            crate::cmd::server::run(*server)
        }
    }
}

/// What this machine runs after joining.
enum Joined {
    /// An agent (a worker, or a manager's machine without a control plane).
    Worker(Box<swarm_agent::AgentOptions>),
    /// A second control plane over the cluster's shared store, as `swarm server` runs it.
    Manager(Box<ServerArgs>),
}

/// Where a joined manager keeps its node credentials: its local agent's (`DIR/agent/pki`).
fn manager_pki(data_dir: &Path) -> PathBuf {
    data_dir.join("agent").join("pki")
}

/// The file a joined manager keeps the store's etcd endpoints in, for later starts.
fn endpoints_file(data_dir: &Path) -> PathBuf {
    data_dir.join("etcd-endpoints")
}

async fn join_swarm(args: &JoinArgs, data_dir: &Path) -> anyhow::Result<Joined> {
    let api = api_url(&args.manager);
    // A manager that joined before starts its control plane again.
    if let Ok(creds) = NodeCredentials::load(&manager_pki(data_dir)) {
        eprintln!(
            "This node is already part of a swarm as a manager ({}).",
            creds.identity.id
        );
        let saved = std::fs::read_to_string(endpoints_file(data_dir)).unwrap_or_default();
        let endpoints = saved.lines().map(str::to_string).collect();
        return Ok(Joined::Manager(Box::new(manager_args(
            args, data_dir, endpoints,
        ))));
    }
    let mut opts = swarm_agent::AgentOptions::new(String::new(), data_dir.to_path_buf());
    opts.runtime = match args.runtime {
        RuntimeArg::Docker | RuntimeArg::None => swarm_agent::RuntimeKind::Docker,
        RuntimeArg::Sim => swarm_agent::RuntimeKind::Sim,
    };
    opts.sim_nodes = args.sim_nodes;
    opts.node_name = args.node_name.clone();
    opts.advertise_addr = args.advertise_addr;
    let ca_pem = match args.runtime {
        // Each simulated node joins for itself when the agent starts.
        RuntimeArg::Sim => join::fetch_ca(&api, &args.token.parse()?).await?,
        RuntimeArg::Docker | RuntimeArg::None => {
            let pki = data_dir.join("pki");
            let creds = match NodeCredentials::load(&pki) {
                Ok(creds) => {
                    eprintln!(
                        "This node is already part of a swarm as {}.",
                        creds.identity.id
                    );
                    creds
                }
                Err(_) => {
                    let wanted = args.node_name.clone().unwrap_or_else(hostname);
                    let joined = join::join_with(&api, &args.token, &wanted, true).await?;
                    if let Some(setup) = joined.manager {
                        return become_manager(args, data_dir, joined.credentials, setup);
                    }
                    let creds = joined.credentials;
                    creds.save(&pki)?;
                    println!(
                        "This node joined a swarm as a worker ({}).",
                        creds.identity.id
                    );
                    creds
                }
            };
            creds.ca_pem
        }
    };
    anyhow::ensure!(
        args.runtime != RuntimeArg::None,
        "a worker runs an agent: pass --runtime docker (or sim)"
    );
    opts.manager = join::dispatcher_addr(&api, &ca_pem).await?;
    opts.tls = Some(swarm_agent::TlsJoin {
        api_url: api,
        token: Some(args.token.clone()),
    });
    Ok(Joined::Worker(Box::new(opts)))
}

/// Keeps what a joined manager needs — its node credentials (for its local agent), the
/// store's encryption key (mode 0600) and where the store is — and says how it starts.
fn become_manager(
    args: &JoinArgs,
    data_dir: &Path,
    creds: NodeCredentials,
    setup: join::ManagerSetup,
) -> anyhow::Result<Joined> {
    creds.save(&manager_pki(data_dir))?;
    let key_path = data_dir.join(swarm_apiserver::server::SECRETS_KEY_FILE);
    {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&key_path)
            .and_then(|mut f| f.write_all(&setup.secrets_key))
            .with_context(|| format!("cannot write {}", key_path.display()))?;
    }
    let endpoints = if args.etcd_endpoints.is_empty() {
        setup.etcd_endpoints
    } else {
        args.etcd_endpoints.clone()
    };
    std::fs::write(endpoints_file(data_dir), endpoints.join("\n"))
        .with_context(|| format!("cannot write {}", endpoints_file(data_dir).display()))?;
    println!(
        "This node joined a swarm as a manager ({}); starting its control plane over etcd at {}.",
        creds.identity.id,
        endpoints.join(",")
    );
    Ok(Joined::Manager(Box::new(manager_args(
        args, data_dir, endpoints,
    ))))
}

/// `swarm server` for a joined manager: its data directory, the shared etcd, and a local
/// agent on this machine's engine unless `--runtime none`.
fn manager_args(args: &JoinArgs, data_dir: &Path, saved: Vec<String>) -> ServerArgs {
    ServerArgs {
        data_dir: data_dir.to_path_buf(),
        listen: args.listen,
        store: StoreKind::Etcd,
        etcd_endpoints: if args.etcd_endpoints.is_empty() {
            saved
        } else {
            args.etcd_endpoints.clone()
        },
        no_controllers: false,
        agent: match args.runtime {
            RuntimeArg::None => LocalAgent::None,
            RuntimeArg::Docker => LocalAgent::Docker,
            RuntimeArg::Sim => LocalAgent::Sim,
        },
        sim_nodes: args.sim_nodes,
        node_name: args.node_name.clone(),
        dispatcher_listen: args.dispatcher_listen,
        heartbeat_period: args.heartbeat_period,
        default_addr_pool: DEFAULT_ADDR_POOL
            .parse()
            .unwrap_or_else(|_| unreachable!("a valid CIDR")),
        advertise_addr: args.advertise_addr.iter().map(|a| a.to_string()).collect(),
        no_tls: false,
        cert_validity: None,
    }
}

/// The pool `swarm server` cuts subnets from by default.
const DEFAULT_ADDR_POOL: &str = "10.0.0.0/8";

async fn run_agent(opts: swarm_agent::AgentOptions) -> anyhow::Result<ExitCode> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        tx.send_replace(true);
    });
    swarm_agent::run(opts, rx).await?;
    Ok(ExitCode::SUCCESS)
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "node".to_string())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TokenRole {
    Worker,
    Manager,
}

impl TokenRole {
    fn as_str(self) -> &'static str {
        match self {
            TokenRole::Worker => "worker",
            TokenRole::Manager => "manager",
        }
    }
}

#[derive(Args, Debug)]
pub struct JoinTokenArgs {
    pub role: TokenRole,
    /// Print only the token.
    #[arg(short, long)]
    pub quiet: bool,
    /// Replace the token; the old one stops working at once (machines already joined keep
    /// their certificates).
    #[arg(long)]
    pub rotate: bool,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

pub fn run_token(args: JoinTokenArgs) -> anyhow::Result<ExitCode> {
    let client = args.connect.client()?;
    let role = args.role.as_str();
    let token = block_on(async {
        if args.rotate {
            client.rotate_join_token(role).await
        } else {
            client.join_tokens().await.map(|t| match args.role {
                TokenRole::Worker => t.worker,
                TokenRole::Manager => t.manager,
            })
        }
    })?
    .with_context(|| format!("cannot get the {role} join token"))?;
    if args.quiet {
        println!("{token}");
        return Ok(ExitCode::SUCCESS);
    }
    if args.rotate {
        println!("Successfully rotated {role} join token.\n");
    }
    let addr = client
        .base_url()
        .split("://")
        .last()
        .unwrap_or_default()
        .to_string();
    println!(
        "To add a {role} to this swarm, run the following command:\n\n    swarm join --token {token} {addr}\n"
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_address_is_an_https_url() {
        assert_eq!(api_url("10.0.0.1:2377"), "https://10.0.0.1:2377");
        assert_eq!(api_url("https://m:2377/"), "https://m:2377");
    }
}
