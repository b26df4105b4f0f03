//! The gRPC dispatcher: where node agents register, heartbeat, receive their assignments and
//! report task status (DESIGN.md §7, `api/proto/dispatcher.proto`).
//!
//! * `sessions` — who is connected: a session per registered node, and the node identity a
//!   request carries (over mTLS, the client certificate's; without TLS, the session id's);
//! * `nodes` — `Register` writes the `Node` object; heartbeats are batched into one store
//!   transaction per flush;
//! * `hub` — one watch per kind on the apiserver's watch cache, indexed by node and fanned out
//!   to the node's assignment stream;
//! * `stream` — builds the bounded assignment messages of one session;
//! * `status` — task status reports of every node batched together, one store transaction
//!   per batch;
//! * `logs` — the log broker: log subscriptions sent to nodes, their lines back to REST readers.

mod batch;
mod hub;
pub mod logs;
mod nodes;
mod service;
mod sessions;
mod status;
mod stream;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::time::Duration;

use swarm_proto::DispatcherServer;
use tokio::net::TcpListener;

use crate::registry::Registry;
use crate::watch_cache::WatchCache;

pub use service::DispatcherService;

/// Tuning of the dispatcher.
#[derive(Clone, Debug)]
pub struct DispatcherOptions {
    /// Heartbeat period given to agents (Swarm: 5 s).
    pub heartbeat_period: Duration,
    /// Each period is moved by up to this much either way, so nodes spread out.
    pub heartbeat_jitter: Duration,
    /// How often collected heartbeats are written (one transaction per flush).
    pub heartbeat_flush: Duration,
    /// At most this many changes in one assignments message.
    pub max_changes_per_message: usize,
    /// At most about this many bytes of objects in one assignments message.
    pub max_message_bytes: usize,
    /// Writes per store transaction (status batches and heartbeat flushes are split at it;
    /// status reports of several nodes are joined up to it).
    pub max_ops_per_txn: usize,
    /// The log broker, shared with the REST API's log endpoints (a handle: clones share it).
    pub logs: logs::LogBroker,
}

impl Default for DispatcherOptions {
    fn default() -> Self {
        DispatcherOptions {
            heartbeat_period: Duration::from_secs(5),
            heartbeat_jitter: Duration::from_millis(500),
            heartbeat_flush: Duration::from_millis(500),
            max_changes_per_message: 200,
            max_message_bytes: 1024 * 1024,
            // etcd refuses transactions of more than 128 operations (`--max-txn-ops`).
            max_ops_per_txn: 100,
            logs: logs::LogBroker::default(),
        }
    }
}

/// Largest gRPC message accepted or sent (the agent's status batches stay well below it).
pub const MAX_GRPC_MESSAGE: usize = 8 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum DispatcherError {
    #[error("dispatcher failed: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// Serves the dispatcher on `listener` until `shutdown` resolves. With `tls` (see
/// [`crate::tls::dispatcher_config`]) every connection must present a certificate of the
/// cluster CA, and a node is who its certificate says; without, a node is who it says it is
/// (tests and in-process benchmarks only).
pub async fn serve(
    listener: TcpListener,
    registry: Registry,
    cache: WatchCache,
    opts: DispatcherOptions,
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), DispatcherError> {
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    let svc = DispatcherService::start(registry, cache, opts);
    tracing::info!(?addr, tls = tls.is_some(), "dispatcher listening");
    let server = DispatcherServer::new(svc.clone())
        .max_decoding_message_size(MAX_GRPC_MESSAGE)
        .max_encoding_message_size(MAX_GRPC_MESSAGE);
    let router = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .add_service(server);
    let result = match tls {
        Some(config) => {
            let incoming = crate::tls::accept_stream(listener, config);
            router
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
        }
        None => {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            router
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
        }
    };
    svc.stop();
    result.map_err(DispatcherError::from)
}
