//! The routing mesh: every node listens on each ingress-published port on its advertise
//! address and forwards each TCP connection to a running task of the service, on any node,
//! round robin (`copy_bidirectional`). A backend that refuses the connection is skipped for
//! the next one. The table comes from the dispatcher's `Routes` stream.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use swarm_proto::v1::Route;
use tokio::net::{TcpListener, TcpStream};

struct Listener {
    backends: Arc<RwLock<Vec<String>>>,
    task: tokio::task::AbortHandle,
}

/// This node's listeners, one per published port.
pub struct Mesh {
    addr: IpAddr,
    listeners: HashMap<u16, Listener>,
}

impl Drop for Mesh {
    fn drop(&mut self) {
        for l in self.listeners.values() {
            l.task.abort();
        }
    }
}

impl Mesh {
    pub fn new(addr: IpAddr) -> Mesh {
        Mesh {
            addr,
            listeners: HashMap::new(),
        }
    }

    /// The ports listened on now.
    pub fn ports(&self) -> Vec<u16> {
        let mut p: Vec<u16> = self.listeners.keys().copied().collect();
        p.sort();
        p
    }

    /// Makes the listeners match `routes`.
    pub async fn apply(&mut self, routes: &[Route]) {
        let mut wanted: HashMap<u16, Vec<String>> = HashMap::new();
        for r in routes.iter().filter(|r| r.protocol == "tcp") {
            let Ok(port) = u16::try_from(r.published_port) else {
                continue;
            };
            wanted.entry(port).or_default().extend(r.backends.clone());
        }
        self.listeners.retain(|port, l| {
            let keep = wanted.contains_key(port);
            if !keep {
                l.task.abort();
                tracing::info!(port, "mesh: stopped listening");
            }
            keep
        });
        for (port, backends) in wanted {
            if let Some(l) = self.listeners.get(&port) {
                *l.backends.write().unwrap_or_else(|p| p.into_inner()) = backends;
                continue;
            }
            let at = SocketAddr::new(self.addr, port);
            let listener = match TcpListener::bind(at).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(%at, error = %e, "mesh: cannot listen");
                    continue;
                }
            };
            tracing::info!(%at, "mesh: listening");
            let backends = Arc::new(RwLock::new(backends));
            let task = tokio::spawn(serve(listener, backends.clone())).abort_handle();
            self.listeners.insert(port, Listener { backends, task });
        }
    }
}

async fn serve(listener: TcpListener, backends: Arc<RwLock<Vec<String>>>) {
    let next = Arc::new(AtomicUsize::new(0));
    loop {
        let Ok((client, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let backends = backends.clone();
        let next = next.clone();
        tokio::spawn(async move {
            let list = backends.read().unwrap_or_else(|p| p.into_inner()).clone();
            if let Err(e) = forward(client, &list, &next).await {
                tracing::debug!(%peer, error = %e, "mesh: connection not forwarded");
            }
        });
    }
}

async fn forward(
    mut client: TcpStream,
    backends: &[String],
    next: &AtomicUsize,
) -> std::io::Result<()> {
    if backends.is_empty() {
        return Err(std::io::Error::other("no running task behind this port"));
    }
    let start = next.fetch_add(1, Ordering::Relaxed);
    let mut last = std::io::Error::other("no backend answered");
    for i in 0..backends.len() {
        let b = &backends[(start + i) % backends.len()];
        match tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(b)).await {
            Ok(Ok(mut upstream)) => {
                let _ = client.set_nodelay(true);
                tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
                return Ok(());
            }
            Ok(Err(e)) => last = e,
            Err(_) => last = std::io::Error::other(format!("{b}: connect timed out")),
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A backend that answers every connection with `name`.
    async fn backend(name: &'static str) -> String {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let _ = s.write_all(name.as_bytes()).await;
            }
        });
        addr
    }

    async fn ask(port: u16) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    #[tokio::test]
    async fn forwards_round_robin_and_skips_dead_backends() {
        let a = backend("a").await;
        let b = backend("b").await;
        let dead = format!("127.0.0.1:{}", free_port());
        let port = free_port();
        let mut mesh = Mesh::new("127.0.0.1".parse().unwrap());
        let route = |backends: Vec<String>| Route {
            service: "web".into(),
            published_port: u32::from(port),
            protocol: "tcp".into(),
            backends,
        };
        mesh.apply(&[route(vec![a, dead, b])]).await;
        assert_eq!(mesh.ports(), [port]);
        let mut seen = Vec::new();
        for _ in 0..6 {
            seen.push(ask(port).await);
        }
        assert!(seen.contains(&"a".to_string()) && seen.contains(&"b".to_string()));
        mesh.apply(&[]).await;
        assert!(mesh.ports().is_empty());
    }
}
