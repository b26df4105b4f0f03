//! Joining a cluster and keeping a certificate: what `swarm join` and the agent do.
//!
//! 1. Fetch the CA from the manager over a connection that trusts nothing yet, and keep it
//!    only if its SHA-256 is the digest in the join token — so a machine posing as the manager
//!    is caught before anything is sent to it.
//! 2. Make a key here (it never leaves the machine), send a CSR with the token over a
//!    connection that trusts only that CA, and get back a certificate naming the node id and
//!    role the manager chose.
//! 3. Renew before expiry: at a random point between 50 % and 80 % of the certificate's life
//!    (so a fleet that joined together does not renew together), authenticated by the
//!    current certificate.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use swarm_pki::{Identity, JoinToken, NodeKey, Role, ca_digest_of_pem};

use crate::Client;
use crate::config::{ClientConfig, Context};

#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error(transparent)]
    Token(#[from] swarm_pki::TokenError),
    #[error(
        "the manager at {server} presented a CA that does not match the join token; refusing to trust it (wrong address, or someone in between)"
    )]
    CaMismatch { server: String },
    #[error("cannot reach the manager at {server}: {message}")]
    Unreachable { server: String, message: String },
    #[error("the manager refused: {0}")]
    Refused(String),
    #[error("certificate: {0}")]
    Pki(String),
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A machine's credentials: its key, its certificate and the cluster CA (all PEM).
#[derive(Clone, Debug)]
pub struct NodeCredentials {
    pub identity: Identity,
    pub key_pem: String,
    pub cert_pem: String,
    pub ca_pem: String,
}

const KEY_FILE: &str = "node.key";
const CERT_FILE: &str = "node.crt";
const CA_FILE: &str = "ca.crt";

fn unreachable(server: &str, e: impl std::fmt::Display) -> JoinError {
    JoinError::Unreachable {
        server: server.to_string(),
        message: e.to_string(),
    }
}

fn pki_err(e: impl std::fmt::Display) -> JoinError {
    JoinError::Pki(e.to_string())
}

/// Reads a JSON answer; a non-2xx answer becomes `Refused` with the `Status` message.
async fn answer(server: &str, resp: reqwest::Response) -> Result<Value, JoinError> {
    let ok = resp.status().is_success();
    let body: Value = resp.json().await.map_err(|e| unreachable(server, e))?;
    if ok {
        Ok(body)
    } else {
        Err(JoinError::Refused(
            body["message"]
                .as_str()
                .unwrap_or("no reason given")
                .to_string(),
        ))
    }
}

fn field(body: &Value, name: &str) -> Result<String, JoinError> {
    body[name]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| JoinError::Refused(format!("the manager's answer has no {name:?}")))
}

fn pinned_client(
    ca_pem: &str,
    identity: Option<&NodeCredentials>,
) -> Result<reqwest::Client, JoinError> {
    let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes()).map_err(pki_err)?;
    let mut b = reqwest::Client::builder().tls_certs_only([ca]);
    if let Some(c) = identity {
        let pem = format!("{}\n{}", c.cert_pem, c.key_pem);
        b = b.identity(reqwest::Identity::from_pem(pem.as_bytes()).map_err(pki_err)?);
    }
    b.build().map_err(pki_err)
}

/// Fetches the manager's CA and checks it against the token's digest.
pub async fn fetch_ca(server: &str, token: &JoinToken) -> Result<String, JoinError> {
    // Trusting nothing is the point here: what we get is checked against the token.
    let blind = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .map_err(pki_err)?;
    let resp = blind
        .get(format!("{server}/v1/ca"))
        .send()
        .await
        .map_err(|e| unreachable(server, e))?;
    let ca = field(&answer(server, resp).await?, "ca")?;
    if ca_digest_of_pem(&ca).map_err(pki_err)? != token.ca_digest {
        return Err(JoinError::CaMismatch {
            server: server.to_string(),
        });
    }
    Ok(ca)
}

/// Where the dispatcher of the apiserver at `server` (`https://HOST:PORT`) listens: the same
/// host, the port the apiserver announces (`GET /v1/ca`, over a connection that trusts only
/// the cluster CA).
pub async fn dispatcher_addr(server: &str, ca_pem: &str) -> Result<String, JoinError> {
    let resp = pinned_client(ca_pem, None)?
        .get(format!("{server}/v1/ca"))
        .send()
        .await
        .map_err(|e| unreachable(server, e))?;
    let body = answer(server, resp).await?;
    let port = body["dispatcherPort"].as_u64().ok_or_else(|| {
        JoinError::Refused(format!(
            "the manager at {server} runs no dispatcher, so no agent can join it"
        ))
    })?;
    let hostport = server.split("://").last().unwrap_or(server);
    let host = match hostport.rsplit_once(':') {
        Some((host, _)) => host,
        None => hostport,
    };
    Ok(format!("{host}:{port}"))
}

/// Joins the cluster at `server` (`https://ADDR:PORT`) with `token`.
pub async fn join(server: &str, token: &str, hostname: &str) -> Result<NodeCredentials, JoinError> {
    Ok(join_with(server, token, hostname, false).await?.credentials)
}

/// What joining gave: the credentials, and for a manager that asked to run a control plane,
/// how to reach the cluster's store.
#[derive(Clone, Debug)]
pub struct Joined {
    pub credentials: NodeCredentials,
    pub manager: Option<ManagerSetup>,
}

/// What a joining manager needs to run a control plane: the shared store's etcd endpoints
/// and the key that encrypts it at rest (to be written to `DATA_DIR/secrets.key`).
#[derive(Clone)]
pub struct ManagerSetup {
    pub etcd_endpoints: Vec<String>,
    pub secrets_key: Vec<u8>,
}

/// Shows where the store is, never the key.
impl std::fmt::Debug for ManagerSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagerSetup")
            .field("etcd_endpoints", &self.etcd_endpoints)
            .finish_non_exhaustive()
    }
}

fn manager_setup(body: &Value) -> Result<Option<ManagerSetup>, JoinError> {
    let m = &body["manager"];
    if m.is_null() {
        return Ok(None);
    }
    let bad = || JoinError::Refused("the manager's answer has an unreadable \"manager\"".into());
    let etcd_endpoints = m["etcdEndpoints"]
        .as_array()
        .ok_or_else(bad)?
        .iter()
        .map(|e| e.as_str().map(str::to_string).ok_or_else(bad))
        .collect::<Result<Vec<_>, _>>()?;
    let hex = m["secretsKey"].as_str().ok_or_else(bad)?;
    let secrets_key = (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(bad)?;
    Ok(Some(ManagerSetup {
        etcd_endpoints,
        secrets_key,
    }))
}

/// `join`; with `control_plane`, a manager token also gets what a second control plane needs
/// (and is refused by a manager whose store no other process can share).
pub async fn join_with(
    server: &str,
    token: &str,
    hostname: &str,
    control_plane: bool,
) -> Result<Joined, JoinError> {
    let token: JoinToken = token.parse()?;
    let ca_pem = fetch_ca(server, &token).await?;
    let key = NodeKey::generate().map_err(pki_err)?;
    let csr = key.csr_pem(hostname).map_err(pki_err)?;
    let resp = pinned_client(&ca_pem, None)?
        .post(format!("{server}/v1/join"))
        .json(
            &json!({"token": token.to_string(), "csr": csr, "hostname": hostname,
                      "controlPlane": control_plane}),
        )
        .send()
        .await
        .map_err(|e| unreachable(server, e))?;
    let body = answer(server, resp).await?;
    let cert_pem = field(&body, "certificate")?;
    Ok(Joined {
        credentials: NodeCredentials {
            identity: identity_of(&cert_pem)?,
            key_pem: key.key_pem(),
            cert_pem,
            ca_pem,
        },
        manager: manager_setup(&body)?,
    })
}

fn identity_of(cert_pem: &str) -> Result<Identity, JoinError> {
    Identity::from_cert_pem(cert_pem).map_err(pki_err)
}

pub use swarm_pki::{renewal_time, validity};

/// Keeps the client certificate of `config`'s current context renewed until `stop` resolves:
/// at a random point between 50 % and 80 % of its life, a new key and certificate from
/// `/v1/renew` (authenticated by the current one) are written over the files the context
/// names, and `client` — with its clones — switches to them. For controllers, in
/// `swarm server` or in their own process; a failed renewal is retried.
pub async fn keep_renewed(client: Client, config: ClientConfig, stop: impl Future<Output = ()>) {
    tokio::pin!(stop);
    let Some(ctx) = config.current().cloned() else {
        return;
    };
    let (Some(ca), Some(cert), Some(key)) = (
        ctx.certificate_authority.clone(),
        ctx.client_certificate.clone(),
        ctx.client_key.clone(),
    ) else {
        return; // no client certificate: nothing to renew
    };
    loop {
        let current = match load_files(&ca, &cert, &key) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the client certificate; not renewing it");
                return;
            }
        };
        let (wait, retry) = match (
            swarm_pki::until_renewal(&current.cert_pem),
            validity(&current.cert_pem),
        ) {
            (Ok(wait), Ok((start, end))) => (
                wait,
                end.duration_since(start)
                    .unwrap_or_default()
                    .div_f64(10.0)
                    .min(RENEWAL_RETRY),
            ),
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(error = %e, "cannot read the client certificate; not renewing it");
                return;
            }
        };
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(wait) => {}
        }
        let renewed = async {
            let fresh = current.renew(&ctx.server).await?;
            write_file(&key, &fresh.key_pem, true)?;
            write_file(&cert, &fresh.cert_pem, false)?;
            client.reload(&config).map_err(pki_err)
        };
        match renewed.await {
            Ok(()) => tracing::info!(identity = %current.identity, "client certificate renewed"),
            Err(e) => {
                tracing::warn!(error = %e, "client certificate renewal failed; retrying");
                tokio::select! {
                    _ = &mut stop => return,
                    _ = tokio::time::sleep(retry) => {}
                }
            }
        }
    }
}

/// How long after a failed renewal it is tried again (at most).
const RENEWAL_RETRY: Duration = Duration::from_secs(60);

fn load_files(ca: &Path, cert: &Path, key: &Path) -> Result<NodeCredentials, JoinError> {
    let read = |path: &Path| {
        std::fs::read_to_string(path).map_err(|source| JoinError::Io {
            action: "read",
            path: path.to_path_buf(),
            source,
        })
    };
    let cert_pem = read(cert)?;
    Ok(NodeCredentials {
        identity: identity_of(&cert_pem)?,
        key_pem: read(key)?,
        cert_pem,
        ca_pem: read(ca)?,
    })
}

impl NodeCredentials {
    pub fn role(&self) -> Role {
        self.identity.role
    }

    /// Gets a new certificate for a new key from `server`, authenticated by the current one.
    pub async fn renew(&self, server: &str) -> Result<NodeCredentials, JoinError> {
        let key = NodeKey::generate().map_err(pki_err)?;
        let csr = key.csr_pem(&self.identity.id).map_err(pki_err)?;
        let resp = pinned_client(&self.ca_pem, Some(self))?
            .post(format!("{server}/v1/renew"))
            .json(&json!({ "csr": csr }))
            .send()
            .await
            .map_err(|e| unreachable(server, e))?;
        let cert_pem = field(&answer(server, resp).await?, "certificate")?;
        Ok(NodeCredentials {
            identity: identity_of(&cert_pem)?,
            key_pem: key.key_pem(),
            cert_pem,
            ca_pem: self.ca_pem.clone(),
        })
    }

    /// Saves to `dir` (`node.key` 0600, `node.crt`, `ca.crt`), each file replaced atomically.
    pub fn save(&self, dir: &Path) -> Result<(), JoinError> {
        write(dir, KEY_FILE, &self.key_pem, true)?;
        write(dir, CERT_FILE, &self.cert_pem, false)?;
        write(dir, CA_FILE, &self.ca_pem, false)
    }

    /// Loads what `save` wrote.
    pub fn load(dir: &Path) -> Result<NodeCredentials, JoinError> {
        load_files(
            &dir.join(CA_FILE),
            &dir.join(CERT_FILE),
            &dir.join(KEY_FILE),
        )
    }

    /// A credentials file context for `server` using the files `save` wrote in `dir`.
    pub fn client_config(dir: &Path, server: &str) -> ClientConfig {
        let mut config = ClientConfig::single(server);
        if let Some(ctx) = config.contexts.first_mut() {
            *ctx = Context {
                name: ctx.name.clone(),
                server: server.to_string(),
                certificate_authority: Some(dir.join(CA_FILE)),
                client_certificate: Some(dir.join(CERT_FILE)),
                client_key: Some(dir.join(KEY_FILE)),
            };
        }
        config
    }
}

fn write(dir: &Path, name: &str, content: &str, private: bool) -> Result<(), JoinError> {
    write_file(&dir.join(name), content, private)
}

/// Writes `content` to `path` atomically (a temporary file renamed); `private` files get
/// mode 0600.
fn write_file(path: &Path, content: &str, private: bool) -> Result<(), JoinError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = path.to_path_buf();
    let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    let io = |action, source| JoinError::Io {
        action,
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(|e| io("create the directory of", e))?;
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(&tmp)
        .map_err(|e| io("write", e))?;
    f.write_all(content.as_bytes())
        .map_err(|e| io("write", e))?;
    f.sync_all().map_err(|e| io("write", e))?;
    std::fs::rename(&tmp, &path).map_err(|e| io("write", e))
}
