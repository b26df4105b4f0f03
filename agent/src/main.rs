//! `swarm-agent`: the node agent binary.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use swarm_agent::runtime::sim::SimOptions;
use swarm_agent::{AgentOptions, RuntimeKind};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum RuntimeArg {
    Docker,
    Sim,
}

#[derive(Parser, Debug)]
#[command(name = "swarm-agent", version, about = "swarm's node agent")]
struct Args {
    /// The manager's dispatcher address (`host:port`).
    #[arg(long, env = "SWARM_MANAGER")]
    manager: String,
    /// Where the agent keeps its state.
    #[arg(long, default_value = "swarm-agent-data")]
    data_dir: PathBuf,
    #[arg(long, value_enum, default_value = "docker")]
    runtime: RuntimeArg,
    /// The address other nodes reach this node on.
    #[arg(long)]
    advertise_addr: Option<IpAddr>,
    /// The node's name (default: kept in the data dir, else the hostname). With
    /// `--runtime sim`, the prefix of the simulated nodes' names.
    #[arg(long)]
    node_name: Option<String>,
    /// Simulated nodes to run in this process (`--runtime sim`).
    #[arg(long, default_value_t = 1)]
    sim_nodes: usize,
    /// Simulated prepare and start latency, in milliseconds.
    #[arg(long, default_value_t = 50)]
    sim_start_latency_ms: u64,
    /// Fraction of simulated tasks that fail to prepare (0..1).
    #[arg(long, default_value_t = 0.0)]
    sim_failure_rate: f64,
    /// The apiserver (`https://ADDR:PORT`) of a TLS cluster: the agent joins there with
    /// `--token` on first start, renews its certificate there, and talks to the dispatcher
    /// over mutual TLS. Without it, the dispatcher is spoken to in plain gRPC.
    #[arg(long, env = "SWARM_API_SERVER")]
    api_server: Option<String>,
    /// The join token, used when the data dir holds no certificate yet.
    #[arg(long, env = "SWARM_JOIN_TOKEN", requires = "api_server")]
    token: Option<String>,
}

/// mimalloc rather than glibc's malloc, which took a third of the CPU of a busy cluster.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SWARM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let mut opts = AgentOptions::new(args.manager, args.data_dir);
    opts.runtime = match args.runtime {
        RuntimeArg::Docker => RuntimeKind::Docker,
        RuntimeArg::Sim => RuntimeKind::Sim,
    };
    opts.advertise_addr = args.advertise_addr;
    opts.node_name = args.node_name;
    opts.sim_nodes = args.sim_nodes;
    opts.tls = args.api_server.map(|api_url| swarm_agent::TlsJoin {
        api_url,
        token: args.token,
    });
    opts.sim = SimOptions {
        start_latency: Duration::from_millis(args.sim_start_latency_ms),
        failure_rate: args.sim_failure_rate,
        ..SimOptions::default()
    };
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down; containers are left running for the next start");
        tx.send_replace(true);
    });
    swarm_agent::run(opts, rx).await?;
    Ok(())
}
