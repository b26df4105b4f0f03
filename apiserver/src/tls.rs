//! TLS for the REST API: TLS 1.3 only, client certificates checked against the cluster CA, and
//! the caller's identity (from its certificate) handed to every handler.
//!
//! axum's own `serve` cannot see the TLS session, so this module runs the accept loop itself
//! (tokio-rustls + hyper-util): each connection is handshaken, its verified peer certificate is
//! read into a [`Peer`], and the router serves the connection with `Peer` as a request
//! extension. Client certificates are *optional at the TLS layer* so one port can serve the
//! join endpoint to machines that have none yet; [`require_identity`] then answers 401 to any
//! other request without one, with a message the CLI can show as is.

use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use swarm_api::{Status, StatusReason};
use swarm_pki::Identity;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// How long a client has to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long open connections get to finish after shutdown begins.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Paths served to callers without a client certificate.
pub const UNAUTHENTICATED_PATHS: &[&str] = &["/healthz", "/readyz", "/v1/join", "/v1/ca"];

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the {what} PEM: {detail}")]
    Pem { what: &'static str, detail: String },
    #[error("TLS configuration refused: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// The caller of one request: `Some` when it presented a certificate the CA signed.
#[derive(Clone, Debug, Default)]
pub struct Peer(pub Option<Identity>);

fn pem_err(what: &'static str) -> impl Fn(rustls_pki_types::pem::Error) -> TlsError {
    move |e| TlsError::Pem {
        what,
        detail: e.to_string(),
    }
}

/// The apiserver's serving certificate, replaceable while serving: rustls asks for it at each
/// handshake, so a renewed certificate is presented to every new connection without a
/// restart (connections already open keep the one they were made with). One is shared by the
/// REST API and the dispatcher.
#[derive(Debug)]
pub struct ServingCert {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ServingCert {
    pub fn new(cert_pem: &str, key_pem: &str) -> Result<Arc<Self>, TlsError> {
        Ok(Arc::new(ServingCert {
            current: RwLock::new(certified(cert_pem, key_pem)?),
        }))
    }

    /// Serves `cert_pem` (with `key_pem`) from the next handshake on.
    pub fn replace(&self, cert_pem: &str, key_pem: &str) -> Result<(), TlsError> {
        let fresh = certified(cert_pem, key_pem)?;
        match self.current.write() {
            Ok(mut c) => *c = fresh,
            Err(poisoned) => *poisoned.into_inner() = fresh,
        }
        Ok(())
    }
}

impl ResolvesServerCert for ServingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(match self.current.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        })
    }
}

fn certified(cert_pem: &str, key_pem: &str) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_err("server certificate"))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(pem_err("server key"))?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    Ok(Arc::new(CertifiedKey::from_der(chain, key, &provider)?))
}

/// The rustls configuration of an apiserver: its (renewable) certificate, the cluster CA as
/// the only root for client certificates, TLS 1.3 only, HTTP/2 and HTTP/1.1. Client
/// certificates are optional here (the join endpoint); [`require_identity`] enforces them.
pub fn server_config(
    ca_pem: &str,
    serving: Arc<ServingCert>,
) -> Result<Arc<ServerConfig>, TlsError> {
    build(ca_pem, serving, ClientCerts::Optional)
}

/// The rustls configuration of the gRPC dispatcher: like [`server_config`], but a client
/// certificate signed by the cluster CA is required at the handshake (agents always have one)
/// and only HTTP/2 is offered.
pub fn dispatcher_config(
    ca_pem: &str,
    serving: Arc<ServingCert>,
) -> Result<Arc<ServerConfig>, TlsError> {
    build(ca_pem, serving, ClientCerts::Required)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ClientCerts {
    Optional,
    Required,
}

fn build(
    ca_pem: &str,
    serving: Arc<ServingCert>,
    client_certs: ClientCerts,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.map_err(pem_err("CA certificate"))?)?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
    let verifier = match client_certs {
        ClientCerts::Optional => verifier.allow_unauthenticated().build()?,
        ClientCerts::Required => verifier.build()?,
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(serving);
    config.alpn_protocols = match client_certs {
        ClientCerts::Optional => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        ClientCerts::Required => vec![b"h2".to_vec()],
    };
    Ok(Arc::new(config))
}

/// Accepts TCP connections on `listener` and yields them once their TLS handshake has
/// succeeded (each handshake runs on its own task, bounded by a timeout, so a slow client
/// holds up no one). For servers such as tonic's that take a stream of connections; the
/// stream ends when its receiver is dropped.
pub fn accept_stream(
    listener: TcpListener,
    config: Arc<ServerConfig>,
) -> tokio_stream::wrappers::ReceiverStream<
    std::io::Result<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>,
> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let acceptor = TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let (tcp, remote) = tokio::select! {
                _ = tx.closed() => return,
                accepted = listener.accept() => match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(Ok(tls)).await;
                    }
                    Ok(Err(e)) => tracing::debug!(%remote, error = %e, "TLS handshake refused"),
                    Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// Serves `app` over TLS on `listener` until `shutdown` completes, then lets open
/// connections finish for a few seconds. Connections come from [`accept_stream`].
pub async fn serve(
    listener: TcpListener,
    app: Router,
    config: Arc<ServerConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    use tokio_stream::StreamExt as _;
    let mut incoming = accept_stream(listener, config);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let tls = tokio::select! {
            _ = &mut shutdown => break,
            next = incoming.next() => match next {
                Some(Ok(tls)) => tls,
                Some(Err(_)) => continue,
                None => break,
            },
        };
        let remote = tls.get_ref().0.peer_addr().ok();
        let app = app.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let identity = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|leaf| match Identity::from_cert_der(leaf) {
                    Ok(id) => Some(id),
                    Err(e) => {
                        tracing::info!(?remote, error = %e, "client certificate without a swarm identity");
                        None
                    }
                });
            let service = TowerToHyperService::new(app.layer(axum::Extension(Peer(identity))));
            let conn = ConnBuilder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(tls), service)
                .into_owned();
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(?remote, error = %e, "connection ended with an error");
            }
        });
    }
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::info!("connections still open after the drain timeout; closing them");
    }
}

/// Middleware: over TLS, a request without a client identity gets 401, except on
/// [`UNAUTHENTICATED_PATHS`]. Plain-HTTP requests (no `Peer` at all) pass.
pub async fn require_identity(req: Request, next: Next) -> Response {
    let known = match req.extensions().get::<Peer>() {
        None => true,
        Some(peer) => peer.0.is_some(),
    };
    if known || UNAUTHENTICATED_PATHS.contains(&req.uri().path()) {
        return next.run(req).await;
    }
    let status = Status::new(
        StatusReason::Unauthorized,
        "not authenticated: this API requires a client certificate issued by the cluster's CA; \
         use the credentials file `swarm init` wrote (set SWARM_CONFIG or pass --config)",
    );
    (http::StatusCode::UNAUTHORIZED, axum::Json(status)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use swarm_pki::{ClusterCa, Role};

    struct Pki {
        ca: ClusterCa,
        server: Arc<ServerConfig>,
    }

    fn pki() -> Pki {
        let ca = ClusterCa::generate("cluster-t").unwrap();
        let (cert, key) = ca
            .issue(
                &Identity::new("manager-1", Role::Manager, "cluster-t"),
                &["127.0.0.1".into(), "localhost".into()],
                Duration::from_secs(3600),
            )
            .unwrap();
        let server = server_config(ca.cert_pem(), ServingCert::new(&cert, &key).unwrap()).unwrap();
        Pki { ca, server }
    }

    async fn whoami(axum::Extension(peer): axum::Extension<Peer>) -> String {
        match peer.0 {
            Some(id) => format!("{} {}", id.id, id.role),
            None => "anonymous".into(),
        }
    }

    async fn start(config: Arc<ServerConfig>) -> (String, tokio::sync::oneshot::Sender<()>) {
        let app = Router::new()
            .route("/whoami", get(whoami))
            .route("/healthz", get(|| async { "ok" }))
            .layer(axum::middleware::from_fn(require_identity));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("https://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(serve(listener, app, config, async move {
            let _ = rx.await;
        }));
        (url, tx)
    }

    fn client(ca_pem: &str, identity: Option<(String, String)>) -> reqwest::Client {
        let mut b = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap()]);
        if let Some((cert, key)) = identity {
            b = b.identity(reqwest::Identity::from_pem(format!("{cert}{key}").as_bytes()).unwrap());
        }
        b.build().unwrap()
    }

    #[tokio::test]
    async fn a_client_certificate_becomes_the_callers_identity() {
        let p = pki();
        let (url, _stop) = start(p.server.clone()).await;
        let admin =
            p.ca.issue(
                &Identity::new("alice", Role::Admin, "cluster-t"),
                &[],
                Duration::from_secs(3600),
            )
            .unwrap();
        let body = client(p.ca.cert_pem(), Some(admin))
            .get(format!("{url}/whoami"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(body, "alice swarm-admin");
    }

    #[tokio::test]
    async fn no_certificate_is_401_with_advice_but_health_is_open() {
        let p = pki();
        let (url, _stop) = start(p.server.clone()).await;
        let anon = client(p.ca.cert_pem(), None);
        let resp = anon.get(format!("{url}/whoami")).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 401);
        let status: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(status["reason"], "Unauthorized");
        assert!(
            status["message"]
                .as_str()
                .unwrap()
                .starts_with("not authenticated: ")
        );
        let health = anon.get(format!("{url}/healthz")).send().await.unwrap();
        assert_eq!(health.status().as_u16(), 200);
    }

    #[tokio::test]
    async fn certificates_of_another_cluster_or_expired_ones_are_refused() {
        let p = pki();
        let (url, _stop) = start(p.server.clone()).await;

        let other = ClusterCa::generate("cluster-other").unwrap();
        let foreign = other
            .issue(
                &Identity::new("mallory", Role::Admin, "cluster-other"),
                &[],
                Duration::from_secs(3600),
            )
            .unwrap();
        let err = client(p.ca.cert_pem(), Some(foreign))
            .get(format!("{url}/whoami"))
            .send()
            .await;
        assert!(err.is_err(), "a foreign certificate was accepted: {err:?}");

        // Valid for zero seconds: expired by the time it is presented.
        let expired =
            p.ca.issue(
                &Identity::new("bob", Role::Admin, "cluster-t"),
                &[],
                Duration::ZERO,
            )
            .unwrap();
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let err = client(p.ca.cert_pem(), Some(expired))
            .get(format!("{url}/whoami"))
            .send()
            .await;
        assert!(err.is_err(), "an expired certificate was accepted: {err:?}");
    }

    #[tokio::test]
    async fn a_client_that_does_not_trust_our_ca_does_not_connect() {
        let p = pki();
        let (url, _stop) = start(p.server.clone()).await;
        let other = ClusterCa::generate("cluster-other").unwrap();
        let err = client(other.cert_pem(), None)
            .get(format!("{url}/healthz"))
            .send()
            .await;
        assert!(err.is_err());
    }
}
