//! Shared pieces of the benchmarks: an API server started in-process over either store (with
//! a real etcd started for the run by `swarm_apiserver::store::etcd_testing`), latency
//! summaries and table printing.
//!
//! The binaries under `src/bin/` are run by hand (see `bench/README.md`); they are built by
//! `cargo build --workspace --all-targets` but are not part of any test suite.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use swarm_apiserver::server::{RunningServer, Server, ServerOptions, StoreConfig};
use swarm_apiserver::store::etcd_testing::EtcdServer;

/// Which store an API server runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    Embedded,
    Etcd,
}

impl StoreKind {
    pub fn name(self) -> &'static str {
        match self {
            StoreKind::Embedded => "embedded",
            StoreKind::Etcd => "etcd",
        }
    }

    /// `embedded`, `etcd` or `both`.
    pub fn parse_list(s: &str) -> Result<Vec<StoreKind>> {
        Ok(match s {
            "embedded" => vec![StoreKind::Embedded],
            "etcd" => vec![StoreKind::Etcd],
            "both" => vec![StoreKind::Embedded, StoreKind::Etcd],
            other => bail!("unknown store {other:?}: embedded, etcd or both"),
        })
    }
}

/// An API server running in-process (on the caller's Tokio runtime), over `store`.
pub struct ApiServer {
    pub url: String,
    /// The gRPC dispatcher's address, when started with one.
    pub dispatcher: Option<std::net::SocketAddr>,
    server: Option<RunningServer>,
    _etcd: Option<EtcdServer>,
    _dir: tempfile::TempDir,
}

impl ApiServer {
    /// Starts etcd first if `store` is `Etcd`. Call from within a Tokio runtime.
    pub async fn start(store: StoreKind) -> Result<ApiServer> {
        ApiServer::start_with(store, false).await
    }

    /// Like `start`; with `dispatcher`, also the gRPC dispatcher for agents on a free
    /// loopback port.
    pub async fn start_with(store: StoreKind, dispatcher: bool) -> Result<ApiServer> {
        let dir = tempfile::tempdir()?;
        let (etcd, config) = match store {
            StoreKind::Embedded => (None, StoreConfig::Embedded),
            StoreKind::Etcd => {
                let etcd = EtcdServer::try_start().await.map_err(anyhow::Error::msg)?;
                let endpoints = vec![etcd.endpoint()];
                (Some(etcd), StoreConfig::Etcd { endpoints })
            }
        };
        let opts = ServerOptions {
            data_dir: dir.path().join("data"),
            store: config,
            dispatcher_listen: dispatcher.then(|| ([127, 0, 0, 1], 0).into()),
            ..ServerOptions::loopback()
        };
        let server = Server::bind(opts).await?.spawn();
        let url = server.url();
        Ok(ApiServer {
            url,
            dispatcher: server.dispatcher_addr,
            server: Some(server),
            _etcd: etcd,
            _dir: dir,
        })
    }

    pub async fn stop(mut self) -> Result<()> {
        if let Some(s) = self.server.take() {
            s.shutdown().await?;
        }
        Ok(())
    }
}

/// The apiserver's `/metrics` page, as text.
pub async fn metrics_text(http: &reqwest::Client, url: &str) -> Result<String> {
    Ok(http
        .get(format!("{url}/metrics"))
        .send()
        .await?
        .text()
        .await?)
}

/// The `swarm_apiserver_open_watches` gauge for `resource`.
pub async fn open_watches(http: &reqwest::Client, url: &str, resource: &str) -> Result<u64> {
    let text = metrics_text(http, url).await?;
    let prefix = format!("swarm_apiserver_open_watches{{resource=\"{resource}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|n| n.trim().parse().ok())
        .with_context(|| format!("no open-watch gauge for {resource}"))
}

/// Latency percentiles of a set of samples.
#[derive(Clone, Copy, Debug, Default)]
pub struct Summary {
    pub count: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub p999: Duration,
    pub max: Duration,
}

impl Summary {
    pub fn of(samples: &mut [Duration]) -> Summary {
        if samples.is_empty() {
            return Summary::default();
        }
        samples.sort_unstable();
        let at = |q: f64| {
            let i = ((samples.len() as f64) * q).ceil() as usize;
            samples[i.clamp(1, samples.len()) - 1]
        };
        Summary {
            count: samples.len(),
            p50: at(0.50),
            p99: at(0.99),
            p999: at(0.999),
            max: samples[samples.len() - 1],
        }
    }
}

/// A duration in milliseconds with two decimals.
pub fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

/// Prints a Markdown table.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    println!("| {} |", header.join(" | "));
    println!(
        "|{}|",
        header.iter().map(|_| "---").collect::<Vec<_>>().join("|")
    );
    for r in rows {
        println!("| {} |", r.join(" | "));
    }
}

/// `uptime`'s load averages, for the record of how busy the machine was.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut v: Vec<Duration> = (1..=1000).map(Duration::from_millis).collect();
        let s = Summary::of(&mut v);
        assert_eq!(s.count, 1000);
        assert_eq!(s.p50, Duration::from_millis(500));
        assert_eq!(s.p99, Duration::from_millis(990));
        assert_eq!(s.p999, Duration::from_millis(999));
        assert_eq!(s.max, Duration::from_millis(1000));
    }
}
