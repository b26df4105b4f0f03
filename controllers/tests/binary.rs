//! `swarm-controller` as its own process, talking to the apiserver over HTTP only.

mod common;

use std::process::{Command, Stdio};

use common::*;
use swarm_api::ServiceMode;

const BIN: &str = env!("CARGO_BIN_EXE_swarm-controller");

#[test]
fn an_unknown_controller_is_refused_with_the_known_names() {
    let out = Command::new(BIN)
        .args(["bogus", "--server", "http://127.0.0.1:9"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown controller \"bogus\""), "{err}");
    assert!(err.contains("replication"), "{err}");
}

/// Kills the child when the test ends, however it ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_reconciles_a_remote_apiserver() {
    let c = start().await;
    c.sim.add_node("a").await.unwrap();
    let metrics_addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let _child = Child(
        Command::new(BIN)
            .args(["all", "--server", c.client.base_url()])
            .args(["--metrics-listen", &metrics_addr.to_string()])
            .args(["--identity", "proc-1", "--lease-duration", "2s"])
            .args(["--heartbeat-period", "400ms"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    c.create_service(&service("web", ServiceMode::Replicated { replicas: 2 }))
        .await;
    c.settle("2 replicas from the separate process", |s| {
        running(s, "web").len() == 2
    })
    .await;
    let lease = c
        .client
        .get::<swarm_api::Lease>("swarm-controller-replication")
        .await
        .unwrap();
    assert_eq!(lease.spec.holder_identity, "proc-1");

    // Its counters, scraped over HTTP.
    let text = scrape(metrics_addr).await;
    assert!(
        text.contains("swarm_controller_leader{controller=\"replication\"} 1\n"),
        "{text}"
    );
    let reconciles = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("swarm_controller_reconciles_total{controller=\"replication\"} ")
        })
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(reconciles > 0, "{text}");
}

async fn scrape(addr: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}
