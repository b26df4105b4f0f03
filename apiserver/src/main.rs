//! `swarm-apiserver`: the REST API server on its own (`swarm server` runs it together with
//! the controllers and an agent).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use swarm_apiserver::server::{Server, ServerOptions, StoreConfig};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum StoreKind {
    Embedded,
    Etcd,
}

#[derive(Parser, Debug)]
#[command(
    name = "swarm-apiserver",
    version,
    about = "swarm's REST and watch API server"
)]
struct Args {
    /// Where the embedded store keeps its file.
    #[arg(long, default_value = "swarm-data")]
    data_dir: PathBuf,
    /// Address to serve the REST API on.
    #[arg(long, default_value = swarm_apiserver::server::DEFAULT_LISTEN)]
    listen: SocketAddr,
    #[arg(long, value_enum, default_value = "embedded")]
    store: StoreKind,
    /// Address of the gRPC dispatcher agents connect to.
    #[arg(long, default_value = swarm_apiserver::server::DEFAULT_DISPATCHER_LISTEN)]
    dispatcher_listen: SocketAddr,
    /// Do not run the dispatcher.
    #[arg(long)]
    no_dispatcher: bool,
    /// Serve HTTPS with client certificates; the cluster CA, this server's certificate and the
    /// join tokens are made under DATA_DIR/pki on first start, and an admin certificate is
    /// written to DATA_DIR/admin.crt and admin.key.
    #[arg(long)]
    tls: bool,
    /// Addresses or names clients reach this server by (put into its certificate).
    #[arg(long = "advertise-addr", value_delimiter = ',')]
    advertise: Vec<String>,
    /// etcd endpoints, comma-separated (with `--store etcd`).
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:2379")]
    etcd_endpoints: Vec<String>,
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
    let data_dir = args.data_dir.clone();
    let opts = ServerOptions {
        data_dir: args.data_dir,
        tls: args.tls,
        advertise: args.advertise,
        listen: args.listen,
        store: match args.store {
            StoreKind::Embedded => StoreConfig::Embedded,
            StoreKind::Etcd => StoreConfig::Etcd {
                endpoints: args.etcd_endpoints,
            },
        },
        dispatcher_listen: (!args.no_dispatcher).then_some(args.dispatcher_listen),
        ..ServerOptions::default()
    };
    let server = Server::bind(opts).await.context("starting the apiserver")?;
    if let Some(pki) = server.pki() {
        let (crt, key) = pki
            .write_admin_credentials(&data_dir)
            .context("writing the admin credentials")?;
        let tokens = pki.tokens();
        eprintln!(
            "CA: {}\nadmin certificate: {} (key {})\nworker join token: {}\nmanager join token: {}",
            pki.ca_path().display(),
            crt.display(),
            key.display(),
            tokens.worker,
            tokens.manager
        );
    }
    tracing::info!(url = %server.url(), dispatcher = ?server.dispatcher_addr(), "serving");
    server
        .run(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("serving")?;
    Ok(())
}
