//! Shared helpers of the HTTP-level tests: a server on an ephemeral port over a fresh embedded
//! store, a JSON client, and a reader for NDJSON watch streams.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use swarm_apiserver::server::{RunningServer, Server, ServerOptions};
use swarm_apiserver::store::Store;
use swarm_apiserver::store::embedded::EmbeddedStore;
use swarm_apiserver::watch_cache::CacheOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Guards against a hung test; behaviour, not timing, is what tests assert.
pub const PATIENCE: Duration = Duration::from_secs(20);

pub struct TestServer {
    pub server: RunningServer,
    pub store: Arc<dyn Store>,
    pub http: reqwest::Client,
    pub url: String,
    _dir: tempfile::TempDir,
}

pub fn options() -> ServerOptions {
    ServerOptions {
        bookmark_interval: Duration::from_millis(100),
        cache: CacheOptions {
            window: 1000,
            watcher_buffer: 1000,
            retry_delay: Duration::from_millis(50),
        },
        ..ServerOptions::loopback()
    }
}

pub async fn start() -> TestServer {
    start_with(options()).await
}

pub async fn start_with(opts: ServerOptions) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(&dir.path().join("store.db")).unwrap());
    let server = Server::with_store(store.clone(), opts)
        .await
        .unwrap()
        .spawn();
    let url = server.url();
    TestServer {
        server,
        store,
        http: reqwest::Client::new(),
        url,
        _dir: dir,
    }
}

/// A response's status code and JSON body.
pub struct Reply {
    pub code: u16,
    pub body: Value,
}

impl TestServer {
    pub async fn send(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Reply {
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.unwrap();
        let code = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Reply { code, body }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(reqwest::Method::GET, path, None).await
    }
    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }
    pub async fn put(&self, path: &str, body: &Value) -> Reply {
        self.send(reqwest::Method::PUT, path, Some(body)).await
    }
    pub async fn delete(&self, path: &str) -> Reply {
        self.send(reqwest::Method::DELETE, path, None).await
    }

    /// Opens a watch; panics unless it answers 200.
    pub async fn watch(&self, path: &str) -> Watch {
        let resp = self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200, "watch {path}");
        Watch {
            stream: Box::pin(resp.bytes_stream()),
            buf: Vec::new(),
        }
    }

    pub async fn revision(&self) -> i64 {
        self.store.current_revision().await.unwrap()
    }

    /// Opens a watch over a raw TCP connection that reads nothing until `read_to_end`: a
    /// client that stopped reading. Its receive buffer is kept small, so the server feels it.
    pub async fn stalled_watch(&self, path: &str) -> StalledWatch {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut stream = socket.connect(self.server.addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        StalledWatch { stream }
    }

    /// The server's `swarm_apiserver_open_watches` gauge for `resource`.
    pub async fn open_watches(&self, resource: &str) -> i64 {
        let r = self.get("/metrics").await;
        let text = r.body.as_str().unwrap_or_default().to_string();
        let prefix = format!("swarm_apiserver_open_watches{{resource=\"{resource}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no open-watch gauge for {resource} in:\n{text}"))
    }

    /// Polls the open-watch gauge until it reads `n`; panics after `PATIENCE`.
    pub async fn wait_open_watches(&self, resource: &str, n: i64) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let now = self.open_watches(resource).await;
            if now == n {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "open {resource} watches stayed at {now}, expected {n}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A watch on a raw TCP connection whose client does not read (see `stalled_watch`).
pub struct StalledWatch {
    stream: tokio::net::TcpStream,
}

impl StalledWatch {
    /// Starts reading at last: everything until the server closes the connection, as the
    /// status code and the NDJSON events of the (chunked) body.
    pub async fn read_to_end(mut self) -> (u16, Vec<Value>) {
        let mut raw = Vec::new();
        tokio::time::timeout(PATIENCE, self.stream.read_to_end(&mut raw))
            .await
            .expect("the server ends the stream within the patience window")
            .unwrap();
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a complete response head");
        let head = String::from_utf8_lossy(&raw[..split]).to_string();
        let code: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .expect("a status line");
        assert!(
            head.to_ascii_lowercase()
                .contains("transfer-encoding: chunked"),
            "{head}"
        );
        let body = dechunk(&raw[split + 4..]);
        let events = body
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        (code, events)
    }
}

/// Decodes a complete chunked body (panics on a truncated one: the stream must end cleanly).
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = raw
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("a chunk size line");
        let size = usize::from_str_radix(std::str::from_utf8(&raw[..eol]).unwrap().trim(), 16)
            .expect("a hex chunk size");
        raw = &raw[eol + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

/// An NDJSON watch stream.
pub struct Watch {
    stream: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buf: Vec<u8>,
}

impl Watch {
    /// The next event, or `None` when the server ended the stream.
    pub async fn next(&mut self) -> Option<Value> {
        tokio::time::timeout(PATIENCE, async {
            loop {
                if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = self.buf.drain(..=i).collect();
                    return Some(serde_json::from_slice(&line).unwrap());
                }
                match self.stream.next().await {
                    Some(Ok(chunk)) => self.buf.extend_from_slice(&chunk),
                    _ => return None,
                }
            }
        })
        .await
        .expect("watch event within the patience window")
    }

    /// The next event that is not a bookmark.
    pub async fn next_change(&mut self) -> Option<Value> {
        loop {
            let e = self.next().await?;
            if e["type"] != "BOOKMARK" {
                return Some(e);
            }
        }
    }
}

pub fn service(name: &str, image: &str) -> Value {
    json!({"kind": "Service", "apiVersion": "swarm/v1",
           "metadata": {"name": name},
           "spec": {"taskTemplate": {"container": {"image": image}}}})
}

pub fn network(name: &str) -> Value {
    json!({"kind": "Network", "metadata": {"name": name}})
}

pub fn task(name: &str, service: &str) -> Value {
    json!({"kind": "Task", "metadata": {"name": name}, "spec": {"service": service}})
}

pub fn secret(name: &str, data: &str) -> Value {
    json!({"kind": "Secret", "metadata": {"name": name}, "spec": {"data": data}})
}

pub fn rv(obj: &Value) -> String {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string()
}
