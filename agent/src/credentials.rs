//! The node's TLS credentials: the certificate `swarm join` got, used for every connection to
//! the dispatcher, and renewed in the background at a random point between 50 % and 80 % of
//! its life (as Swarm does), without a restart.
//!
//! The current credentials live behind a lock; each new dispatcher connection reads them, so
//! after a renewal the next reconnect presents the new certificate. Connections already open
//! stay up: a certificate is checked when a connection is made.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rand::Rng;
use swarm_client::join::{JoinError, NodeCredentials, renewal_time};
use tokio::sync::watch;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

/// How long to wait before trying again after a failed renewal.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(60);

/// Where the credentials are kept and whom to ask for new ones.
#[derive(Clone, Debug)]
pub struct TlsOptions {
    /// The directory `swarm join` saved `node.key`, `node.crt` and `ca.crt` into.
    pub dir: PathBuf,
    /// The apiserver's URL (`https://ADDR:PORT`), where `/v1/renew` is.
    pub api_url: String,
}

/// The credentials in use, shared by the sessions and the renewal task.
#[derive(Clone)]
pub struct SharedCredentials {
    current: Arc<RwLock<NodeCredentials>>,
}

/// Shows whose credentials these are, never the key.
impl std::fmt::Debug for SharedCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedCredentials")
            .field("node", &self.node_name())
            .finish_non_exhaustive()
    }
}

impl SharedCredentials {
    pub fn load(dir: &Path) -> Result<Self, JoinError> {
        Ok(SharedCredentials {
            current: Arc::new(RwLock::new(NodeCredentials::load(dir)?)),
        })
    }

    pub fn get(&self) -> NodeCredentials {
        match self.current.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set(&self, creds: NodeCredentials) {
        match self.current.write() {
            Ok(mut c) => *c = creds,
            Err(poisoned) => *poisoned.into_inner() = creds,
        }
    }

    /// The node's name: its certificate's common name.
    pub fn node_name(&self) -> String {
        self.get().identity.id
    }

    /// The client TLS configuration for a dispatcher connection: trust only the cluster CA,
    /// present the node's certificate.
    pub fn tls_config(&self) -> ClientTlsConfig {
        let c = self.get();
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(c.ca_pem.as_bytes()))
            .identity(Identity::from_pem(
                c.cert_pem.as_bytes(),
                c.key_pem.as_bytes(),
            ))
    }
}

/// Renews the certificate whenever it reaches its renewal time, until `shutdown` flips.
pub async fn renew_forever(
    opts: TlsOptions,
    creds: SharedCredentials,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let current = creds.get();
        let fraction: f64 = rand::rng().random();
        let wait = match renewal_time(&current.cert_pem, fraction) {
            Ok(at) => at
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO),
            Err(e) => {
                tracing::error!(error = %e, "cannot read the node certificate's validity; not renewing it");
                return;
            }
        };
        tracing::debug!(in_secs = wait.as_secs(), "certificate renewal scheduled");
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        match renew_once(&opts, &creds).await {
            Ok(()) => tracing::info!(node = %creds.node_name(), "node certificate renewed"),
            Err(e) => {
                tracing::warn!(error = %e, "certificate renewal failed; retrying in a minute");
                tokio::select! {
                    _ = tokio::time::sleep(RETRY_AFTER_FAILURE) => {}
                    _ = shutdown.wait_for(|s| *s) => return,
                }
            }
        }
    }
}

/// One renewal: a new key and certificate, saved (atomically) and put in use.
pub async fn renew_once(opts: &TlsOptions, creds: &SharedCredentials) -> Result<(), JoinError> {
    let fresh = creds.get().renew(&opts.api_url).await?;
    fresh.save(&opts.dir)?;
    creds.set(fresh);
    Ok(())
}
