//! Prometheus metrics, written out by hand in the text exposition format (no metrics crate:
//! a few counters and histograms behind a mutex are all the apiserver needs).
//!
//! * `swarm_apiserver_requests_total{verb,resource,code}` — requests served;
//! * `swarm_apiserver_request_duration_seconds{verb,resource}` — latency histogram (for a
//!   watch, the time until the response headers went out);
//! * `swarm_apiserver_open_watches{resource}` — client watches currently streaming;
//! * `swarm_apiserver_store_duration_seconds{op}` — latency of each store call, measured by
//!   `InstrumentedStore`, a `Store` wrapper.
//!
//! Label values come from a closed set (verbs, kinds, status codes), so cardinality is bounded.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::extract::{Request, State};
use axum::http::{Method, Uri};
use axum::middleware::Next;
use axum::response::Response;
use swarm_api::Kind;

use crate::store::{
    KeyValue, ListOptions, ListResult, ProgressWatchStream, Result, Revision, Store, TxnOp,
    TxnResult, WatchStream,
};

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Clone, Debug, Default)]
struct Histogram {
    /// Per bucket (not cumulative); the last slot is `+Inf`.
    counts: [u64; BUCKETS.len() + 1],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        self.counts[i] += 1;
        self.sum += secs;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (i, b) in BUCKETS.iter().enumerate() {
            cumulative += self.counts[i];
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{b}\"}} {cumulative}");
        }
        cumulative += self.counts[BUCKETS.len()];
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {cumulative}");
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

#[derive(Default)]
struct Data {
    requests: BTreeMap<(String, String, u16), u64>,
    latency: BTreeMap<(String, String), Histogram>,
    store: BTreeMap<&'static str, Histogram>,
    watches: BTreeMap<String, i64>,
}

/// The apiserver's metrics registry.
#[derive(Default)]
pub struct Metrics {
    data: Mutex<Data>,
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        Arc::new(Metrics::default())
    }

    fn lock(&self) -> MutexGuard<'_, Data> {
        self.data.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn observe_request(&self, verb: &str, resource: &str, code: u16, d: Duration) {
        let mut data = self.lock();
        *data
            .requests
            .entry((verb.to_string(), resource.to_string(), code))
            .or_default() += 1;
        data.latency
            .entry((verb.to_string(), resource.to_string()))
            .or_default()
            .observe(d);
    }

    pub fn observe_store(&self, op: &'static str, d: Duration) {
        self.lock().store.entry(op).or_default().observe(d);
    }

    /// Counts an open watch until the guard is dropped.
    pub fn watch_opened(self: &Arc<Self>, kind: Kind) -> WatchGuard {
        *self
            .lock()
            .watches
            .entry(kind.plural().to_string())
            .or_default() += 1;
        WatchGuard {
            metrics: self.clone(),
            kind,
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let data = self.lock();
        let mut out = String::new();
        out.push_str("# HELP swarm_apiserver_requests_total Requests served, by verb, resource and HTTP code.\n");
        out.push_str("# TYPE swarm_apiserver_requests_total counter\n");
        for ((verb, resource, code), n) in &data.requests {
            let _ = writeln!(
                out,
                "swarm_apiserver_requests_total{{verb=\"{verb}\",resource=\"{resource}\",code=\"{code}\"}} {n}"
            );
        }
        out.push_str("# HELP swarm_apiserver_request_duration_seconds Request latency (watches: until headers).\n");
        out.push_str("# TYPE swarm_apiserver_request_duration_seconds histogram\n");
        for ((verb, resource), h) in &data.latency {
            h.render(
                &mut out,
                "swarm_apiserver_request_duration_seconds",
                &format!("verb=\"{verb}\",resource=\"{resource}\""),
            );
        }
        out.push_str("# HELP swarm_apiserver_open_watches Client watches currently open.\n");
        out.push_str("# TYPE swarm_apiserver_open_watches gauge\n");
        for kind in Kind::ALL {
            let n = data.watches.get(kind.plural()).copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "swarm_apiserver_open_watches{{resource=\"{}\"}} {n}",
                kind.plural()
            );
        }
        out.push_str("# HELP swarm_apiserver_store_duration_seconds Store operation latency.\n");
        out.push_str("# TYPE swarm_apiserver_store_duration_seconds histogram\n");
        for (op, h) in &data.store {
            h.render(
                &mut out,
                "swarm_apiserver_store_duration_seconds",
                &format!("op=\"{op}\""),
            );
        }
        out
    }
}

/// Decrements the open-watches gauge when dropped.
pub struct WatchGuard {
    metrics: Arc<Metrics>,
    kind: Kind,
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        *self
            .metrics
            .lock()
            .watches
            .entry(self.kind.plural().to_string())
            .or_default() -= 1;
    }
}

/// The `verb` and `resource` labels of a request.
pub fn classify(method: &Method, uri: &Uri) -> (&'static str, String) {
    let segs: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    let query = uri.query().unwrap_or("");
    let watching = query
        .split('&')
        .any(|p| p == "watch=true" || p == "watch=1");
    match segs.as_slice() {
        ["v1", "transactions"] => ("TXN", "transactions".into()),
        ["v1", "stacks", _, "apply"] => ("APPLY", "stacks".into()),
        ["v1", plural, rest @ ..] if Kind::from_plural(plural).is_some() => {
            let verb = match (method.as_str(), rest.len()) {
                ("GET", 0) if watching => "WATCH",
                ("GET", 0) => "LIST",
                ("GET", _) => "GET",
                ("POST", _) => "CREATE",
                ("PUT", 2) => "UPDATE_STATUS",
                ("PUT", _) => "UPDATE",
                ("DELETE", _) => "DELETE",
                _ => "OTHER",
            };
            (verb, (*plural).to_string())
        }
        _ => ("OTHER", String::new()),
    }
}

/// axum middleware recording every request.
pub async fn track(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let (verb, resource) = classify(req.method(), req.uri());
    let start = Instant::now();
    let resp = next.run(req).await;
    metrics.observe_request(verb, &resource, resp.status().as_u16(), start.elapsed());
    resp
}

/// A `Store` that times every call into `Metrics`.
pub struct InstrumentedStore {
    inner: Arc<dyn Store>,
    metrics: Arc<Metrics>,
}

impl InstrumentedStore {
    pub fn new(inner: Arc<dyn Store>, metrics: Arc<Metrics>) -> Self {
        InstrumentedStore { inner, metrics }
    }

    async fn timed<T>(&self, op: &'static str, f: impl Future<Output = T>) -> T {
        let start = Instant::now();
        let r = f.await;
        self.metrics.observe_store(op, start.elapsed());
        r
    }
}

#[async_trait]
impl Store for InstrumentedStore {
    async fn current_revision(&self) -> Result<Revision> {
        self.timed("current_revision", self.inner.current_revision())
            .await
    }
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        self.timed("get", self.inner.get(key)).await
    }
    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult> {
        self.timed("list", self.inner.list(prefix, opts)).await
    }
    async fn txn(&self, ops: Vec<TxnOp>) -> Result<TxnResult> {
        self.timed("txn", self.inner.txn(ops)).await
    }
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        self.timed("watch", self.inner.watch(prefix, after)).await
    }
    async fn watch_with_progress(
        &self,
        prefix: &str,
        after: Revision,
    ) -> Result<Option<ProgressWatchStream>> {
        self.timed("watch", self.inner.watch_with_progress(prefix, after))
            .await
    }
    async fn request_progress(&self, prefix: &str) {
        self.inner.request_progress(prefix).await
    }
    async fn compact(&self, revision: Revision) -> Result<()> {
        self.timed("compact", self.inner.compact(revision)).await
    }
    async fn compacted_revision(&self) -> Result<Revision> {
        self.timed("compacted_revision", self.inner.compacted_revision())
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_are_classified() {
        let c = |m: Method, u: &str| classify(&m, &u.parse().unwrap());
        assert_eq!(
            c(Method::GET, "/v1/tasks?watch=true"),
            ("WATCH", "tasks".into())
        );
        assert_eq!(c(Method::GET, "/v1/tasks"), ("LIST", "tasks".into()));
        assert_eq!(c(Method::GET, "/v1/tasks/t1"), ("GET", "tasks".into()));
        assert_eq!(
            c(Method::PUT, "/v1/tasks/t1/status"),
            ("UPDATE_STATUS", "tasks".into())
        );
        assert_eq!(
            c(Method::POST, "/v1/stacks/s/apply"),
            ("APPLY", "stacks".into())
        );
        assert_eq!(c(Method::GET, "/metrics"), ("OTHER", String::new()));
    }

    #[test]
    fn text_format_has_cumulative_buckets() {
        let m = Metrics::new();
        m.observe_request("GET", "services", 200, Duration::from_millis(3));
        m.observe_request("GET", "services", 404, Duration::from_millis(30));
        let _w = m.watch_opened(Kind::Task);
        let text = m.render();
        assert!(text.contains(
            "swarm_apiserver_requests_total{verb=\"GET\",resource=\"services\",code=\"404\"} 1"
        ));
        assert!(text.contains(
            "swarm_apiserver_request_duration_seconds_bucket{verb=\"GET\",resource=\"services\",le=\"0.005\"} 1"
        ));
        assert!(text.contains(
            "swarm_apiserver_request_duration_seconds_bucket{verb=\"GET\",resource=\"services\",le=\"+Inf\"} 2"
        ));
        assert!(text.contains("swarm_apiserver_open_watches{resource=\"tasks\"} 1"));
    }
}
