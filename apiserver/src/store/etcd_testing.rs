//! A real etcd for tests and benchmarks: `EtcdServer::start()` runs the `etcd` binary (`$ETCD`,
//! else `etcd` on PATH: Debian's `etcd-server` package) on free loopback ports with its data in
//! a temporary directory, and can kill and restart it on the same data and ports — which is how
//! the tests check that data survives an etcd restart and that watches reconnect. Public with
//! the `testing` feature, for the benchmarks in `bench/`.
//!
//! There is no fallback: without an `etcd` binary the tests fail and say how to install one.

use std::fs::File;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions};

/// A single-member etcd cluster owned by a test; killed when dropped.
pub struct EtcdServer {
    dir: tempfile::TempDir,
    binary: PathBuf,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

/// `$ETCD`, else the `etcd` binary on PATH, or an error saying how to get one.
fn etcd_binary() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("ETCD") {
        return Ok(PathBuf::from(p));
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("etcd"))
            .find(|p| p.is_file())
    });
    found.ok_or_else(|| {
        "a real etcd is needed, and no `etcd` binary is on PATH (nor in $ETCD): \
         install it with `apt-get install etcd-server`"
            .to_string()
    })
}

fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind a loopback port: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("local address: {e}"))
}

impl EtcdServer {
    /// Starts a fresh etcd and waits until it answers; panics (a test failure) if it cannot.
    pub async fn start() -> EtcdServer {
        match EtcdServer::try_start().await {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        }
    }

    /// Starts a fresh etcd and waits until it answers.
    pub async fn try_start() -> Result<EtcdServer, String> {
        let binary = etcd_binary()?;
        // A port picked free may be taken again before etcd binds it; try a few.
        let mut last_err = String::new();
        for _ in 0..3 {
            let mut server = EtcdServer {
                dir: tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?,
                binary: binary.clone(),
                client_port: free_port()?,
                peer_port: free_port()?,
                child: None,
            };
            match server.start_again().await {
                Ok(()) => return Ok(server),
                Err(e) => last_err = e,
            }
        }
        Err(format!("etcd did not start: {last_err}"))
    }

    /// The client URL, e.g. `http://127.0.0.1:23790`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Kills etcd (`SIGKILL`, like a crash) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts etcd on the existing data directory and ports, waiting until it answers.
    pub async fn start_again(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "etcd is already running");
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|e| format!("open etcd log: {e}"))?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(&self.binary)
            .arg("--name=test")
            .arg(format!(
                "--data-dir={}",
                self.dir.path().join("data").display()
            ))
            .arg(format!("--listen-client-urls={}", self.endpoint()))
            .arg(format!("--advertise-client-urls={}", self.endpoint()))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=test={peer}"))
            .arg("--initial-cluster-state=new")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", self.binary.display()))?;
        self.child = Some(child);

        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(format!("etcd exited with {status}:\n{}", self.log_tail()));
            }
            if self.ready().await {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(format!("etcd not ready after 20 s:\n{}", self.log_tail()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn ready(&self) -> bool {
        let opts = ConnectOptions::new()
            .with_connect_timeout(Duration::from_millis(500))
            .with_timeout(Duration::from_secs(1));
        match Client::connect([self.endpoint()], Some(opts)).await {
            Ok(mut c) => c.get("/", None).await.is_ok(),
            Err(_) => false,
        }
    }

    /// Kills and restarts etcd on the same data and ports.
    pub async fn restart(&mut self) {
        self.kill();
        if let Err(e) = self.start_again().await {
            panic!("etcd did not restart: {e}");
        }
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.kill();
    }
}
