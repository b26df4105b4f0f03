//! `swarm-controller NAME`: runs one controller (or `all`) against an apiserver, under leader
//! election, until Ctrl-C. Against a TLS apiserver it needs a controller's credentials
//! (`swarm credentials controller NAME -o FILE`, then `--config FILE`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use swarm_client::{Client, ClientConfig, config::DEFAULT_SERVER};
use swarm_controllers::Options;
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug)]
#[command(
    name = "swarm-controller",
    about = "Run a swarm controller (replication, ipam, placement, update, nodes, gc, or all)"
)]
struct Args {
    /// The controller to run, or `all`.
    name: String,
    /// The apiserver's URL (overrides the credentials file).
    #[arg(long, value_name = "URL")]
    server: Option<String>,
    /// The credentials file [default: ~/.swarm/config].
    #[arg(long, value_name = "FILE", env = "SWARM_CONFIG")]
    config: Option<PathBuf>,
    /// Leader-election lease duration, e.g. 15s.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    lease_duration: Duration,
    /// This replica's identity in leader election [default: host-pid-random].
    #[arg(long)]
    identity: Option<String>,
    /// Agents' heartbeat period, e.g. 5s (a node is down after 3 missed).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    heartbeat_period: Duration,
    /// Where networks without a subnet get theirs, cut in /24s (Swarm's default 10.0.0.0/8).
    #[arg(long, value_name = "CIDR", default_value = "10.0.0.0/8")]
    default_addr_pool: ipnet::Ipv4Net,
    /// Finished tasks kept per slot.
    #[arg(long, default_value_t = 5)]
    history_limit: usize,
    /// Serve the controllers' counters at `GET /metrics` on this address (e.g. 127.0.0.1:9102).
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<std::net::SocketAddr>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    s.parse::<swarm_api::Duration>()
        .map(|d| d.as_std())
        .map_err(|e| e.to_string())
}

/// The credentials to use: `--server`, else `--config`, else `~/.swarm/config`, else the
/// default address.
fn config(args: &Args) -> anyhow::Result<ClientConfig> {
    Ok(if let Some(url) = &args.server {
        ClientConfig::single(url)
    } else if let Some(path) = &args.config {
        ClientConfig::load(path).context("check --config or SWARM_CONFIG")?
    } else {
        match ClientConfig::default_path().filter(|p| p.exists()) {
            Some(p) => ClientConfig::load(&p)?,
            None => ClientConfig::single(DEFAULT_SERVER),
        }
    })
}

/// The client of the current context, and one per controller that has a context named after
/// it (`swarm credentials controller all` writes one per controller, each with that
/// controller's certificate); each with the config it was made from.
type Clients = (
    (Client, ClientConfig),
    HashMap<String, (Client, ClientConfig)>,
);

fn clients(cfg: &ClientConfig) -> anyhow::Result<Clients> {
    let current = (Client::from_config(cfg)?, cfg.clone());
    let mut own = HashMap::new();
    for ctx in cfg
        .contexts
        .iter()
        .filter(|c| swarm_controllers::NAMES.contains(&c.name.as_str()))
    {
        let mut cfg = cfg.clone();
        cfg.current_context = ctx.name.clone();
        let client = Client::from_config(&cfg)
            .with_context(|| format!("context {} of the credentials file", ctx.name))?;
        own.insert(ctx.name.clone(), (client, cfg));
    }
    Ok((current, own))
}

/// mimalloc rather than glibc's malloc, which took a third of the CPU of a busy cluster.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("swarm-controller: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let (current, own) = clients(&config(&args)?)?;
    let mut opts = Options {
        lease_duration: args.lease_duration,
        heartbeat_period: args.heartbeat_period,
        history_limit: args.history_limit,
        default_addr_pool: args.default_addr_pool,
        ..Options::default()
    };
    if let Some(id) = args.identity.clone() {
        opts.identity = id;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            stop.cancel();
        });
        if let Some(addr) = args.metrics_listen {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} for metrics"))?;
            tracing::info!(addr = %addr, "serving metrics");
            tokio::spawn(swarm_controllers::metrics_http::serve(
                listener,
                shutdown.clone(),
            ));
        }
        // Each certificate is renewed at 50–80 % of its life (none over plain HTTP).
        for (client, cfg) in own.values().chain([&current]) {
            tokio::spawn(swarm_client::join::keep_renewed(
                client.clone(),
                cfg.clone(),
                shutdown.clone().cancelled_owned(),
            ));
        }
        let client_for = |name: &str| match own.get(name) {
            Some((client, _)) => client.clone(),
            None => current.0.clone(),
        };
        swarm_controllers::run_with(&args.name, &client_for, opts, shutdown)
            .await
            .map_err(anyhow::Error::from)
    })?;
    Ok(())
}
