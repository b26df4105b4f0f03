//! `swarm server`: run the control plane in this process.
//!
//! Today that is the apiserver (REST + watch over the embedded store or etcd); the controllers
//! and a local agent join it as they are built, each still its own component. After binding,
//! it writes `DIR/admin.conf` — a client config pointing at the real address (port 0 resolved)
//! — so `swarm --config DIR/admin.conf get services` works at once, and logs the address.
//! TLS is not set up yet: the API is plain HTTP.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};
use swarm_apiserver::server::{DEFAULT_LISTEN, Server, ServerOptions, StoreConfig};
use swarm_client::ClientConfig;

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
}

/// The file `swarm server` writes for clients.
pub fn admin_conf(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("admin.conf")
}

/// Opens the store, binds, and writes `admin.conf` with the real URL.
pub async fn start(args: &ServerArgs) -> anyhow::Result<Server> {
    let opts = ServerOptions {
        data_dir: args.data_dir.clone(),
        listen: args.listen,
        store: match args.store {
            StoreKind::Embedded => StoreConfig::Embedded,
            StoreKind::Etcd => StoreConfig::Etcd {
                endpoints: args.etcd_endpoints.clone(),
            },
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
        server
            .run(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .context("apiserver failed")
    })?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_admin_conf_with_the_bound_address() {
        let dir = tempfile::tempdir().unwrap();
        let args = ServerArgs {
            data_dir: dir.path().join("data"),
            listen: "127.0.0.1:0".parse().unwrap(),
            store: StoreKind::Embedded,
            etcd_endpoints: vec![],
        };
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
