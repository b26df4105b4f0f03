//! The server: options, the route table, the axum router and the serve loop.
//!
//! ```no_run
//! # async fn f() -> Result<(), swarm_apiserver::server::ServerError> {
//! use swarm_apiserver::server::{Server, ServerOptions};
//! let server = Server::bind(ServerOptions::default()).await?;   // opens the store, binds
//! println!("listening on {}", server.local_addr());               // port 0 resolved
//! server.run(async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```
//!
//! Binding and running are separate steps so a caller (tests, `swarm server`) can learn the
//! real address before serving. On shutdown every open watch is ended first, so graceful
//! shutdown does not wait forever for streams that never finish.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::sync::watch as signal;

use crate::cluster_pki::ClusterPki;
use crate::dispatcher::DispatcherOptions;
use crate::errors::ApiError;
use crate::handlers::{self, AppState};
use crate::metrics::{InstrumentedStore, Metrics};
use crate::registry::Registry;
use crate::store::encrypted::{EncryptedStore, KeyFileError, SealingKey};
use crate::store::{Store, StoreError};
use crate::watch_cache::{CacheOptions, WatchCache};

/// Default REST address, as Docker Swarm's manager port.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:2377";

/// Default gRPC dispatcher address of the `swarm-apiserver` binary.
pub const DEFAULT_DISPATCHER_LISTEN: &str = "0.0.0.0:4242";

/// Largest accepted request body (etcd's own limit is 1.5 MiB per request).
pub const DEFAULT_MAX_BODY: usize = 3 * 1024 * 1024;

/// Which store the server runs on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreConfig {
    /// The single-file store under `data_dir` (`store.db`).
    Embedded,
    /// An etcd cluster.
    Etcd { endpoints: Vec<String> },
}

#[derive(Clone, Debug)]
pub struct ServerOptions {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub store: StoreConfig,
    /// How often watches that asked for bookmarks get one.
    pub bookmark_interval: Duration,
    pub max_body_bytes: usize,
    pub cache: CacheOptions,
    /// Where the gRPC dispatcher for agents listens; `None`: no dispatcher (the binary's
    /// default is `DEFAULT_DISPATCHER_LISTEN`).
    pub dispatcher_listen: Option<SocketAddr>,
    pub dispatcher: DispatcherOptions,
    /// Serve HTTPS (TLS 1.3) with client certificates, from the cluster PKI under
    /// `DATA_DIR/pki` (made on first start), and serve `/v1/join`.
    pub tls: bool,
    /// Addresses and names clients use to reach this apiserver; they go into its certificate.
    pub advertise: Vec<String>,
    /// How long the certificates this apiserver issues (its own, nodes', controllers') are
    /// valid; each is renewed at 50–80 % of it. 90 days; tests use seconds.
    pub cert_validity: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            data_dir: PathBuf::from("swarm-data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 2377)),
            store: StoreConfig::Embedded,
            bookmark_interval: Duration::from_secs(10),
            max_body_bytes: DEFAULT_MAX_BODY,
            cache: CacheOptions::default(),
            dispatcher_listen: None,
            dispatcher: DispatcherOptions::default(),
            tls: false,
            advertise: Vec::new(),
            cert_validity: swarm_pki::DEFAULT_CERT_VALIDITY,
        }
    }
}

impl ServerOptions {
    /// The options tests, benchmarks and embedders start from: the REST API on a free
    /// loopback port (`127.0.0.1:0`, read the bound address from the running server) and no
    /// gRPC dispatcher; everything else as `Default`. Override fields with `..loopback()`.
    pub fn loopback() -> ServerOptions {
        ServerOptions {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            ..ServerOptions::default()
        }
    }

    /// `loopback()` plus the gRPC dispatcher on a free loopback port of its own.
    pub fn loopback_with_dispatcher() -> ServerOptions {
        ServerOptions {
            dispatcher_listen: Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))),
            ..ServerOptions::loopback()
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot open the store: {0}")]
    Store(#[from] StoreError),
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("server failed: {0}")]
    Serve(#[source] std::io::Error),
    #[error("{0}")]
    Unsupported(String),
    #[error(transparent)]
    SecretsKey(#[from] KeyFileError),
    #[error("cluster PKI: {0}")]
    Pki(#[from] crate::cluster_pki::PkiError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

/// One documented route (the OpenAPI document is generated from this table). `{plural}`
/// routes exist once per kind; `{kind}` in the summary is replaced by the kind's name.
pub struct RouteDoc {
    pub method: &'static str,
    pub path: &'static str,
    pub summary: &'static str,
    pub ok_code: &'static str,
    pub has_body: bool,
    /// Only for kinds with a status subresource.
    pub status_only: bool,
    pub query: &'static [&'static str],
}

const LIST_QUERY: &[&str] = &[
    "labelSelector",
    "fieldSelector",
    "limit",
    "continue",
    "watch",
    "resourceVersion",
    "allowWatchBookmarks",
    "timeoutSeconds",
];

const LOG_QUERY: &[&str] = &["follow", "tail", "timestamps"];

const fn route(method: &'static str, path: &'static str, summary: &'static str) -> RouteDoc {
    RouteDoc {
        method,
        path,
        summary,
        ok_code: "200",
        has_body: false,
        status_only: false,
        query: &[],
    }
}

pub const ROUTES: &[RouteDoc] = &[
    RouteDoc {
        query: LIST_QUERY,
        ..route("GET", "/v1/{plural}", "List or watch {kind} objects")
    },
    RouteDoc {
        ok_code: "201",
        has_body: true,
        ..route("POST", "/v1/{plural}", "Create a {kind}")
    },
    route("GET", "/v1/{plural}/{name}", "Read a {kind}"),
    RouteDoc {
        has_body: true,
        ..route(
            "PUT",
            "/v1/{plural}/{name}",
            "Replace a {kind} (status ignored)",
        )
    },
    RouteDoc {
        query: &["resourceVersion"],
        ..route("DELETE", "/v1/{plural}/{name}", "Delete a {kind}")
    },
    RouteDoc {
        status_only: true,
        ..route(
            "GET",
            "/v1/{plural}/{name}/status",
            "Read a {kind}'s status",
        )
    },
    RouteDoc {
        status_only: true,
        has_body: true,
        ..route(
            "PUT",
            "/v1/{plural}/{name}/status",
            "Replace a {kind}'s status (spec ignored)",
        )
    },
    RouteDoc {
        has_body: true,
        query: &["dryRun", "prune"],
        ..route(
            "POST",
            "/v1/stacks/{name}/apply",
            "Apply a stack's objects atomically",
        )
    },
    RouteDoc {
        query: LOG_QUERY,
        ..route(
            "GET",
            "/v1/services/{name}/logs",
            "Stream the container logs of a service's tasks (NDJSON records)",
        )
    },
    RouteDoc {
        query: LOG_QUERY,
        ..route(
            "GET",
            "/v1/tasks/{name}/logs",
            "Stream the container logs of one task (NDJSON records)",
        )
    },
    RouteDoc {
        has_body: true,
        ..route(
            "POST",
            "/v1/transactions",
            "Commit several writes all or none",
        )
    },
    RouteDoc {
        has_body: true,
        ..route(
            "POST",
            "/v1/join",
            "Join with a token and a CSR; get a certificate (TLS mode, no client certificate needed)",
        )
    },
    route("GET", "/v1/ca", "The cluster CA certificate (TLS mode)"),
    RouteDoc {
        has_body: true,
        ..route(
            "POST",
            "/v1/renew",
            "Renew the caller's certificate for a new key",
        )
    },
    RouteDoc {
        has_body: true,
        ..route(
            "POST",
            "/v1/certificates",
            "Issue a controller certificate for a CSR (admins)",
        )
    },
    route(
        "GET",
        "/v1/join-tokens",
        "The current worker and manager join tokens (admins)",
    ),
    route(
        "POST",
        "/v1/join-tokens/{role}/rotate",
        "Replace the worker or manager join token (admins)",
    ),
    route("GET", "/healthz", "Liveness"),
    route("GET", "/readyz", "Readiness (store reachable)"),
    route("GET", "/metrics", "Prometheus metrics"),
    route("GET", "/openapi.json", "This document"),
];

/// The router over `state`.
pub fn router(state: AppState) -> Router {
    use handlers::*;
    let metrics = state.metrics.clone();
    let max_body = state.max_body_bytes;
    Router::new()
        .route("/v1/transactions", post(txn::transaction))
        .route("/v1/join", post(join::join))
        .route("/v1/ca", get(join::ca))
        .route("/v1/renew", post(join::renew))
        .route("/v1/certificates", post(certificates::issue))
        .route("/v1/join-tokens", get(join_tokens::get))
        .route("/v1/join-tokens/{role}/rotate", post(join_tokens::rotate))
        .route("/v1/stacks/{name}/apply", post(apply::apply))
        .route("/v1/services/{name}/logs", get(logs::service_logs))
        .route("/v1/tasks/{name}/logs", get(logs::task_logs))
        .route("/v1/{plural}", get(list::list).post(objects::create))
        .route(
            "/v1/{plural}/{name}",
            get(objects::get)
                .put(objects::replace)
                .delete(objects::delete),
        )
        .route(
            "/v1/{plural}/{name}/status",
            get(objects::get_status).put(objects::replace_status),
        )
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/openapi.json", get(health::openapi))
        .fallback(|| async {
            ApiError::new(
                swarm_api::StatusReason::NotFound,
                "the server could not find the requested resource",
            )
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                swarm_api::StatusReason::MethodNotAllowed,
                "method not allowed",
            )
        })
        // Inner to outer: who may do what, then "who are you", then size limits and metrics.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::guard,
        ))
        .layer(axum::middleware::from_fn(crate::tls::require_identity))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            crate::metrics::track,
        ))
        .with_state(state)
}

/// The file under the data directory holding the key that encrypts secrets at rest.
/// Apiservers that share one etcd must each have a copy of the same file.
pub const SECRETS_KEY_FILE: &str = "secrets.key";

/// Opens the store the options name, with secrets encrypted at rest by the key in
/// `DATA_DIR/secrets.key` (created on first start).
pub async fn open_store(opts: &ServerOptions) -> Result<Arc<dyn Store>, ServerError> {
    std::fs::create_dir_all(&opts.data_dir).map_err(|source| ServerError::DataDir {
        path: opts.data_dir.clone(),
        source,
    })?;
    let backend: Arc<dyn Store> = match &opts.store {
        StoreConfig::Embedded => {
            let path = opts.data_dir.join("store.db");
            Arc::new(crate::store::embedded::EmbeddedStore::open(&path)?)
        }
        StoreConfig::Etcd { endpoints } => open_etcd(endpoints).await?,
    };
    let key = SealingKey::load_or_create(&opts.data_dir.join(SECRETS_KEY_FILE))?;
    Ok(Arc::new(EncryptedStore::new(backend, key)))
}

#[cfg(feature = "store-etcd")]
async fn open_etcd(endpoints: &[String]) -> Result<Arc<dyn Store>, ServerError> {
    let store = crate::store::etcd::EtcdStore::connect(endpoints).await?;
    Ok(Arc::new(store))
}

#[cfg(not(feature = "store-etcd"))]
async fn open_etcd(endpoints: &[String]) -> Result<Arc<dyn Store>, ServerError> {
    Err(ServerError::Unsupported(format!(
        "this build has no etcd support (feature store-etcd); cannot use {}",
        endpoints.join(",")
    )))
}

/// A bound, not yet serving, server.
pub struct Server {
    listener: TcpListener,
    addr: SocketAddr,
    app: Router,
    cache: WatchCache,
    shutdown_tx: signal::Sender<bool>,
    registry: Registry,
    dispatcher: Option<(TcpListener, SocketAddr, DispatcherOptions)>,
    tls: Option<Arc<rustls::ServerConfig>>,
    /// The dispatcher's TLS (client certificates required), with `tls`.
    dispatcher_tls: Option<Arc<rustls::ServerConfig>>,
    pki: Option<Arc<ClusterPki>>,
}

impl Server {
    /// Opens the store named by `opts` and binds `opts.listen`.
    pub async fn bind(opts: ServerOptions) -> Result<Server, ServerError> {
        let store = open_store(&opts).await?;
        Server::with_store(store, opts).await
    }

    /// Binds `opts.listen` over an already open store (tests, embedding).
    pub async fn with_store(
        store: Arc<dyn Store>,
        opts: ServerOptions,
    ) -> Result<Server, ServerError> {
        let metrics = Metrics::new();
        let store: Arc<dyn Store> = Arc::new(InstrumentedStore::new(store, metrics.clone()));
        let cache = WatchCache::start(store.clone(), opts.cache.clone());
        let (shutdown_tx, shutdown) = signal::channel(false);
        let registry = Registry::new(store.clone()).with_cache(cache.clone());
        let (pki, tls, dispatcher_tls) = if opts.tls {
            let pki = match &opts.store {
                // Managers over one etcd share the CA and the join tokens through it.
                StoreConfig::Etcd { endpoints } => {
                    let shared = crate::cluster_pki::SharedStore {
                        store: store.clone(),
                        etcd_endpoints: endpoints.clone(),
                        secrets_key: opts.data_dir.join(SECRETS_KEY_FILE),
                    };
                    ClusterPki::load_or_init_shared(
                        &opts.data_dir,
                        &opts.advertise,
                        opts.cert_validity,
                        shared,
                    )
                    .await?
                }
                StoreConfig::Embedded => ClusterPki::load_or_init_with(
                    &opts.data_dir,
                    &opts.advertise,
                    opts.cert_validity,
                )?,
            };
            let config = crate::tls::server_config(pki.ca.cert_pem(), pki.serving())?;
            let dispatcher = crate::tls::dispatcher_config(pki.ca.cert_pem(), pki.serving())?;
            (Some(pki), Some(config), Some(dispatcher))
        } else {
            (None, None, None)
        };
        let listener =
            TcpListener::bind(opts.listen)
                .await
                .map_err(|source| ServerError::Bind {
                    addr: opts.listen,
                    source,
                })?;
        let addr = listener.local_addr().map_err(ServerError::Serve)?;
        let dispatcher = match opts.dispatcher_listen {
            Some(at) => {
                let l = TcpListener::bind(at)
                    .await
                    .map_err(|source| ServerError::Bind { addr: at, source })?;
                let bound = l.local_addr().map_err(ServerError::Serve)?;
                Some((l, bound, opts.dispatcher.clone()))
            }
            None => None,
        };
        let state = AppState {
            pki: pki.clone(),
            registry: registry.clone(),
            cache: cache.clone(),
            metrics,
            bookmark_interval: opts.bookmark_interval,
            max_body_bytes: opts.max_body_bytes,
            shutdown,
            dispatcher_port: dispatcher.as_ref().map(|(_, a, _)| a.port()),
            logs: opts.dispatcher.logs.clone(),
        };
        Ok(Server {
            listener,
            addr,
            app: router(state),
            cache,
            shutdown_tx,
            registry,
            dispatcher,
            tls,
            dispatcher_tls,
            pki,
        })
    }

    /// The cluster PKI, when the server runs with TLS.
    pub fn pki(&self) -> Option<&Arc<ClusterPki>> {
        self.pki.as_ref()
    }

    /// The address actually bound (with port 0 resolved).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The gRPC dispatcher's address, when it runs.
    pub fn dispatcher_addr(&self) -> Option<SocketAddr> {
        self.dispatcher.as_ref().map(|(_, a, _)| *a)
    }

    /// Serves until `shutdown` resolves, then ends open watches and drains connections.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let Server {
            listener,
            addr,
            app,
            cache,
            shutdown_tx,
            registry,
            dispatcher,
            tls,
            dispatcher_tls,
            pki,
        } = self;
        if let Some(pki) = pki {
            let mut stop = shutdown_tx.subscribe();
            tokio::spawn(pki.keep_serving_cert_renewed(async move {
                let _ = stop.wait_for(|s| *s).await;
            }));
        }
        tracing::info!(%addr, tls = tls.is_some(), "apiserver listening");
        if let Some((listener, _, dopts)) = dispatcher {
            let mut stop = shutdown_tx.subscribe();
            let cache = cache.clone();
            tokio::spawn(async move {
                let done = async move {
                    let _ = stop.wait_for(|s| *s).await;
                };
                if let Err(e) =
                    crate::dispatcher::serve(listener, registry, cache, dopts, dispatcher_tls, done)
                        .await
                {
                    tracing::error!(error = %e, "dispatcher stopped");
                }
            });
        }
        let stopping = async move {
            shutdown.await;
            tracing::info!("apiserver shutting down");
            shutdown_tx.send_replace(true);
        };
        let result = match tls {
            Some(config) => {
                crate::tls::serve(listener, app, config, stopping).await;
                Ok(())
            }
            None => axum::serve(listener, app)
                .with_graceful_shutdown(stopping)
                .await
                .map_err(ServerError::Serve),
        };
        cache.stop();
        result
    }

    /// Serves in a background task; the returned handle stops it.
    pub fn spawn(self) -> RunningServer {
        let addr = self.addr;
        let url = self.url();
        let dispatcher_addr = self.dispatcher_addr();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(self.run(async move {
            let _ = rx.await;
        }));
        RunningServer {
            addr,
            url,
            dispatcher_addr,
            stop: Some(tx),
            handle,
        }
    }
}

/// A server serving in the background (tests). Dropping it stops the server.
pub struct RunningServer {
    pub addr: SocketAddr,
    url: String,
    /// The gRPC dispatcher's address, when it runs.
    pub dispatcher_addr: Option<SocketAddr>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    handle: tokio::task::JoinHandle<Result<(), ServerError>>,
}

impl RunningServer {
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Stops serving and waits until the server has finished.
    pub async fn shutdown(mut self) -> Result<(), ServerError> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match (&mut self.handle).await {
            Ok(r) => r,
            Err(e) => Err(ServerError::Serve(std::io::Error::other(e.to_string()))),
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// Opens the store, binds and serves until `shutdown` resolves.
pub async fn serve(
    opts: ServerOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    Server::bind(opts).await?.run(shutdown).await
}

#[cfg(all(test, feature = "store-etcd"))]
mod etcd_tests {
    //! Two apiservers over one etcd serve the same objects and the same watches: the
    //! apiserver keeps no state of its own beyond caches fed by the store.

    use super::*;
    use crate::store::etcd_testing::EtcdServer;
    use futures::StreamExt;
    use serde_json::{Value, json};

    /// An apiserver over `etcd`; all share `data_dir`, so they share the secrets key.
    async fn apiserver(etcd: &EtcdServer, data_dir: &std::path::Path) -> RunningServer {
        let opts = ServerOptions {
            data_dir: data_dir.to_path_buf(),
            store: StoreConfig::Etcd {
                endpoints: vec![etcd.endpoint()],
            },
            ..ServerOptions::loopback()
        };
        Server::bind(opts).await.unwrap().spawn()
    }

    /// Reads NDJSON events until one satisfies `pred`.
    async fn wait_for(
        stream: &mut (impl futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
        buf: &mut Vec<u8>,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let patience = std::time::Duration::from_secs(20);
        tokio::time::timeout(patience, async {
            loop {
                while let Some(i) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=i).collect();
                    let ev: Value = serde_json::from_slice(&line).unwrap();
                    if pred(&ev) {
                        return ev;
                    }
                }
                let chunk = stream.next().await.expect("watch ended").unwrap();
                buf.extend_from_slice(&chunk);
            }
        })
        .await
        .expect("event within the patience window")
    }

    /// The JSON body of `GET url`.
    async fn get_json(http: &reqwest::Client, url: impl reqwest::IntoUrl) -> Value {
        http.get(url).send().await.unwrap().json().await.unwrap()
    }

    /// How many reads apiserver `url` sent to its store (`get` and `list`), from `/metrics`.
    async fn store_reads(http: &reqwest::Client, url: &str) -> u64 {
        let text = http
            .get(format!("{url}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        ["get", "list"]
            .iter()
            .map(|op| {
                let prefix =
                    format!("swarm_apiserver_store_duration_seconds_count{{op=\"{op}\"}} ");
                text.lines()
                    .find_map(|l| l.strip_prefix(&prefix))
                    .and_then(|n| n.trim().parse::<u64>().ok())
                    .unwrap_or(0)
            })
            .sum()
    }

    /// A read right after a write through another apiserver sees the write, and is answered
    /// by the reader's watch cache (caught up through etcd's progress reports), not by etcd —
    /// also for a kind nobody wrote since the cache started.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_after_writes_through_another_apiserver_come_from_the_cache() {
        let etcd = EtcdServer::start().await;
        let dir = tempfile::tempdir().unwrap();
        let a = apiserver(&etcd, dir.path()).await;
        let b = apiserver(&etcd, dir.path()).await;
        let http = reqwest::Client::new();
        let before = store_reads(&http, &b.url()).await;
        for i in 0..20 {
            let net = json!({"kind": "Network", "metadata": {"name": format!("n{i}")}});
            let created: Value = http
                .post(format!("{}/v1/networks", a.url()))
                .json(&net)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let got: Value = get_json(&http, format!("{}/v1/networks/n{i}", b.url())).await;
            assert_eq!(
                got["metadata"]["resourceVersion"],
                created["metadata"]["resourceVersion"]
            );
            // Configs are never written: their cache must still pass the network's revision.
            let configs: Value = get_json(&http, format!("{}/v1/configs", b.url())).await;
            let listed: i64 = configs["metadata"]["resourceVersion"]
                .as_str()
                .and_then(|r| r.parse().ok())
                .unwrap();
            let written: i64 = created["metadata"]["resourceVersion"]
                .as_str()
                .and_then(|r| r.parse().ok())
                .unwrap();
            assert!(listed >= written, "list at {listed}, write at {written}");
            let list: Value = get_json(&http, format!("{}/v1/networks", b.url())).await;
            assert_eq!(list["items"].as_array().map(Vec::len), Some(i + 1));
        }
        assert_eq!(
            store_reads(&http, &b.url()).await,
            before,
            "a read went to etcd instead of the cache"
        );
        a.shutdown().await.unwrap();
        b.shutdown().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_apiservers_over_one_etcd_share_objects_and_watches() {
        let etcd = EtcdServer::start().await;
        let dir = tempfile::tempdir().unwrap();
        let a = apiserver(&etcd, dir.path()).await;
        let b = apiserver(&etcd, dir.path()).await;
        let http = reqwest::Client::new();

        // A watch on B, opened before the write on A.
        let resp = http
            .get(format!("{}/v1/services?watch=true", b.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let mut events = Box::pin(resp.bytes_stream());
        let mut buf = Vec::new();

        let svc = json!({"kind": "Service", "metadata": {"name": "web"},
                         "spec": {"taskTemplate": {"container": {"image": "nginx"}}}});
        let created: Value = http
            .post(format!("{}/v1/services", a.url()))
            .json(&svc)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let rv = created["metadata"]["resourceVersion"].clone();

        // B serves the object A wrote, at the same resourceVersion.
        let got: Value = get_json(&http, format!("{}/v1/services/web", b.url())).await;
        assert_eq!(got["metadata"]["resourceVersion"], rv);
        assert_eq!(got["metadata"]["uid"], created["metadata"]["uid"]);

        // B's watch sees A's write.
        let ev = wait_for(&mut events, &mut buf, |e| e["type"] == "ADDED").await;
        assert_eq!(ev["object"]["metadata"]["resourceVersion"], rv);

        // A CAS with B's copy after A changed it is refused by B: one store, one truth.
        let mut changed = created.clone();
        changed["metadata"]["labels"] = json!({"x": "1"});
        let r = http
            .put(format!("{}/v1/services/web", a.url()))
            .json(&changed)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let stale = http
            .put(format!("{}/v1/services/web", b.url()))
            .json(&got)
            .send()
            .await
            .unwrap();
        assert_eq!(stale.status().as_u16(), 409);
        let ev = wait_for(&mut events, &mut buf, |e| e["type"] == "MODIFIED").await;
        assert_eq!(ev["object"]["metadata"]["labels"]["x"], "1");

        // A stack apply through B is visible through A's list.
        let r = http
            .post(format!("{}/v1/stacks/s/apply", b.url()))
            .json(&json!({"objects": [{"kind": "Network", "metadata": {"name": "s_net"}}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let list: Value = http
            .get(format!(
                "{}/v1/networks?labelSelector=swarm.stack%3Ds",
                a.url()
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(list["items"][0]["metadata"]["name"], "s_net");

        // A secret written through A reads back through B (same key file), while etcd
        // itself holds only ciphertext.
        let data = "c2VjcmV0LW9mLXRoZS1ldGNkLXRlc3Q="; // base64("secret-of-the-etcd-test")
        let r = http
            .post(format!("{}/v1/secrets", a.url()))
            .json(&json!({"kind": "Secret", "metadata": {"name": "pw"}, "spec": {"data": data}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
        let got: Value = get_json(&http, format!("{}/v1/secrets/pw?showData=true", b.url())).await;
        assert_eq!(got["spec"]["data"], data);
        let raw = crate::store::etcd::EtcdStore::connect(&[etcd.endpoint()])
            .await
            .unwrap()
            .get("/registry/secrets/pw")
            .await
            .unwrap()
            .unwrap();
        assert!(raw.value.starts_with(b"swarm:enc:aes256gcm:v1:"));
        assert!(!String::from_utf8_lossy(&raw.value).contains(data));

        a.shutdown().await.unwrap();
        b.shutdown().await.unwrap();
    }
}
