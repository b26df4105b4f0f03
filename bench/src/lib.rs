//! Shared pieces of the benchmarks: an API server started in-process over either store (with
//! a real etcd started for the run), latency summaries and table printing.
//!
//! The binaries under `src/bin/` are run by hand (see `bench/README.md`); they are built by
//! `cargo build --workspace --all-targets` but are not part of any test suite.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use swarm_apiserver::server::{RunningServer, Server, ServerOptions, StoreConfig};

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

/// A single-member etcd on free loopback ports with its data in a temporary directory; killed
/// when dropped. Like `swarm_apiserver::store::etcd_testing`, for the benches.
pub struct Etcd {
    child: Child,
    client_port: u16,
    _dir: tempfile::TempDir,
}

fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("bind a loopback port")?;
    Ok(l.local_addr()?.port())
}

impl Etcd {
    /// Starts `etcd` (from PATH, or `$ETCD`) and waits until it answers `/health`.
    pub async fn start() -> Result<Etcd> {
        let binary = std::env::var_os("ETCD")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("etcd"));
        let dir = tempfile::tempdir()?;
        let client_port = free_port()?;
        let peer = format!("http://127.0.0.1:{}", free_port()?);
        let client = format!("http://127.0.0.1:{client_port}");
        let log = std::fs::File::create(dir.path().join("etcd.log"))?;
        let child = Command::new(&binary)
            .arg("--name=bench")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=bench={peer}"))
            .arg("--initial-cluster-state=new")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("start {} (apt-get install etcd-server)", binary.display()))?;
        let etcd = Etcd {
            child,
            client_port,
            _dir: dir,
        };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = http
                .get(format!("{}/health", etcd.endpoint()))
                .send()
                .await
                .map(|r| r.status().is_success())
                .unwrap_or(false);
            if ok {
                return Ok(etcd);
            }
            if Instant::now() > deadline {
                bail!("etcd not healthy after 30 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An API server running in-process (on the caller's Tokio runtime), over `store`.
pub struct ApiServer {
    pub url: String,
    server: Option<RunningServer>,
    _etcd: Option<Etcd>,
    _dir: tempfile::TempDir,
}

impl ApiServer {
    /// Starts etcd first if `store` is `Etcd`. Call from within a Tokio runtime.
    pub async fn start(store: StoreKind) -> Result<ApiServer> {
        let dir = tempfile::tempdir()?;
        let (etcd, config) = match store {
            StoreKind::Embedded => (None, StoreConfig::Embedded),
            StoreKind::Etcd => {
                let etcd = Etcd::start().await?;
                let endpoints = vec![etcd.endpoint()];
                (Some(etcd), StoreConfig::Etcd { endpoints })
            }
        };
        let opts = ServerOptions {
            data_dir: dir.path().join("data"),
            listen: "127.0.0.1:0".parse()?,
            store: config,
            ..ServerOptions::default()
        };
        let server = Server::bind(opts).await?.spawn();
        let url = server.url();
        Ok(ApiServer {
            url,
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

/// The `swarm_apiserver_open_watches` gauge for `resource`.
pub async fn open_watches(http: &reqwest::Client, url: &str, resource: &str) -> Result<u64> {
    let text = http
        .get(format!("{url}/metrics"))
        .send()
        .await?
        .text()
        .await?;
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
