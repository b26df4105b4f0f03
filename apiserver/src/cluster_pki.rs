//! The manager's PKI on disk: made on first start, loaded on every later one.
//!
//! ```text
//! DATA_DIR/pki/ca.crt          the cluster CA certificate (shared with every node)
//! DATA_DIR/pki/ca.key          its private key                         (0600)
//! DATA_DIR/pki/apiserver.crt   this apiserver's certificate (SANs: advertise addresses)
//! DATA_DIR/pki/apiserver.key                                           (0600)
//! DATA_DIR/pki/cluster-id      the cluster's id, written into every certificate's O
//! DATA_DIR/pki/join-tokens     "worker <token>\nmanager <token>\n"     (0600)
//! ```
//!
//! Everything is written to a temporary name and renamed, so a crash never leaves half a key.

use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use swarm_pki::{ClusterCa, DEFAULT_CERT_VALIDITY, Identity, JoinToken, Role};

use crate::store::{Store, StoreError, TxnOp};
use crate::tls::ServingCert;

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error(transparent)]
    Ca(#[from] swarm_pki::CaError),
    #[error(transparent)]
    Token(#[from] swarm_pki::TokenError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("this apiserver's certificate: {0}")]
    Identity(#[from] swarm_pki::IdentityError),
    #[error("the cluster PKI in the shared store: {0}")]
    Store(#[from] StoreError),
    #[error("the cluster PKI in the shared store: {0}")]
    Shared(String),
}

/// How long after a failed renewal of the serving certificate it is tried again (at most).
const RENEWAL_RETRY: Duration = Duration::from_secs(60);

/// The two join tokens; rotating one replaces it.
#[derive(Clone, Debug)]
pub struct JoinTokens {
    pub worker: JoinToken,
    pub manager: JoinToken,
}

/// The loaded PKI of this manager.
pub struct ClusterPki {
    dir: PathBuf,
    pub ca: ClusterCa,
    /// This apiserver's certificate as served (REST and dispatcher); renewed in place.
    serving: Arc<ServingCert>,
    /// The PEM of the certificate `serving` holds.
    serving_pem: RwLock<String>,
    /// The addresses and names in this apiserver's certificate.
    server_names: Vec<String>,
    tokens: RwLock<JoinTokens>,
    /// How long the certificates this manager issues are valid.
    validity: Duration,
    /// The store shared with other managers, when there is one.
    shared: Option<SharedStore>,
}

/// A store other managers share (etcd), and what a joining manager needs to use it.
#[derive(Clone)]
pub struct SharedStore {
    pub store: Arc<dyn Store>,
    /// Where the store is, told to joining managers.
    pub etcd_endpoints: Vec<String>,
    /// The encryption-at-rest key file every manager must hold a copy of.
    pub secrets_key: PathBuf,
}

/// The record of the cluster's PKI in a shared store: CA certificate, cluster id, tokens.
pub const SHARED_RECORD: &str = "/swarm/pki/cluster";
/// The CA's private key in a shared store; sealed there like secrets
/// (`store::encrypted::SEALED_PREFIXES`), so etcd never holds it in the clear.
pub const SHARED_CA_KEY: &str = "/swarm/pki/ca-key";
/// How many times a manager tries to publish or adopt the shared PKI.
const PUBLISH_ATTEMPTS: usize = 3;

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct SharedRecord {
    cluster_id: String,
    ca_cert: String,
    worker_token: String,
    manager_token: String,
}

impl SharedRecord {
    fn to_bytes(&self) -> Result<bytes::Bytes, PkiError> {
        serde_json::to_vec(self)
            .map(Into::into)
            .map_err(|e| PkiError::Shared(e.to_string()))
    }

    fn from_bytes(b: &[u8]) -> Result<Self, PkiError> {
        serde_json::from_slice(b)
            .map_err(|e| PkiError::Shared(format!("{SHARED_RECORD} is not a PKI record: {e}")))
    }

    fn tokens(&self) -> Result<JoinTokens, PkiError> {
        Ok(JoinTokens {
            worker: self.worker_token.parse()?,
            manager: self.manager_token.parse()?,
        })
    }
}

/// What failed in a store error, under the transaction's wrapping.
fn cause(e: &StoreError) -> &StoreError {
    match e {
        StoreError::Txn { source, .. } => cause(source),
        other => other,
    }
}

/// The PKI record and CA key in the shared store, if a manager published them.
async fn read_shared(store: &dyn Store) -> Result<Option<(SharedRecord, String)>, PkiError> {
    let (Some(record), Some(key)) = (
        store.get(SHARED_RECORD).await?,
        store.get(SHARED_CA_KEY).await?,
    ) else {
        return Ok(None);
    };
    let key = String::from_utf8(key.value.to_vec())
        .map_err(|_| PkiError::Shared(format!("{SHARED_CA_KEY} is not a PEM key")))?;
    Ok(Some((SharedRecord::from_bytes(&record.value)?, key)))
}

/// Writes the shared PKI under `data_dir/pki`; refuses a data directory of another cluster.
fn adopt(data_dir: &Path, record: &SharedRecord, ca_key: &str) -> Result<(), PkiError> {
    let dir = data_dir.join("pki");
    let ca_crt = dir.join("ca.crt");
    if ca_crt.exists() {
        if read(&ca_crt)? == record.ca_cert {
            return Ok(());
        }
        return Err(PkiError::Corrupt {
            path: ca_crt,
            message: "this data directory belongs to another cluster than the shared store's; \
                      give this manager an empty --data-dir"
                .into(),
        });
    }
    write_file(&dir.join("ca.key"), ca_key, true)?;
    write_file(&dir.join("cluster-id"), &record.cluster_id, false)?;
    write_tokens(&dir.join("join-tokens"), &record.tokens()?)?;
    write_file(&ca_crt, &record.ca_cert, false)?;
    tracing::info!(cluster = %record.cluster_id, "adopted the cluster PKI from the shared store");
    Ok(())
}

fn read(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(|source| PkiError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `content` atomically; `private` files get mode 0600.
pub fn write_file(path: &Path, content: &str, private: bool) -> Result<(), PkiError> {
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| PkiError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(&tmp)
        .map_err(err)?;
    f.write_all(content.as_bytes()).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

fn parse_tokens(path: &Path, text: &str) -> Result<JoinTokens, PkiError> {
    let corrupt = |message: &str| PkiError::Corrupt {
        path: path.to_path_buf(),
        message: message.to_string(),
    };
    let (mut worker, mut manager) = (None, None);
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match line.split_once(' ') {
            Some(("worker", t)) => worker = Some(t.parse()?),
            Some(("manager", t)) => manager = Some(t.parse()?),
            _ => {
                return Err(corrupt(
                    "expected lines `worker <token>` and `manager <token>`",
                ));
            }
        }
    }
    Ok(JoinTokens {
        worker: worker.ok_or_else(|| corrupt("no worker token"))?,
        manager: manager.ok_or_else(|| corrupt("no manager token"))?,
    })
}

impl ClusterPki {
    /// Loads the PKI under `data_dir/pki`, creating a new cluster's on first start.
    /// `sans` (IP addresses, DNS names) go into this apiserver's certificate when it is made.
    pub fn load_or_init(data_dir: &Path, sans: &[String]) -> Result<Arc<Self>, PkiError> {
        Self::load_or_init_with(data_dir, sans, DEFAULT_CERT_VALIDITY)
    }

    /// `load_or_init`, issuing certificates valid for `validity` (tests use seconds).
    pub fn load_or_init_with(
        data_dir: &Path,
        sans: &[String],
        validity: Duration,
    ) -> Result<Arc<Self>, PkiError> {
        Ok(Arc::new(Self::load(data_dir, sans, validity)?))
    }

    fn load(data_dir: &Path, sans: &[String], validity: Duration) -> Result<Self, PkiError> {
        let dir = data_dir.join("pki");
        let ca_crt = dir.join("ca.crt");
        if !ca_crt.exists() {
            let cluster_id = new_id();
            let ca = ClusterCa::generate(&cluster_id)?;
            write_file(&dir.join("ca.key"), &ca.key_pem(), true)?;
            write_file(&dir.join("cluster-id"), &cluster_id, false)?;
            // The CA certificate last: its presence means the rest is there.
            write_file(&ca_crt, ca.cert_pem(), false)?;
            tracing::info!(cluster = %cluster_id, dir = %dir.display(), "created the cluster CA");
        }
        let cluster_id = read(&dir.join("cluster-id"))?.trim().to_string();
        let ca = ClusterCa::from_pem(&read(&ca_crt)?, &read(&dir.join("ca.key"))?, &cluster_id)?;

        let (crt, key) = (dir.join("apiserver.crt"), dir.join("apiserver.key"));
        let mut names: Vec<String> = vec!["127.0.0.1".into(), "localhost".into()];
        names.extend(sans.iter().cloned());
        if !crt.exists() {
            let id = Identity::new(
                format!("apiserver-{}", new_id()),
                Role::Manager,
                &cluster_id,
            );
            let (cert_pem, key_pem) = ca.issue(&id, &names, validity)?;
            write_file(&key, &key_pem, true)?;
            write_file(&crt, &cert_pem, false)?;
        }
        let tokens_path = dir.join("join-tokens");
        let tokens = if tokens_path.exists() {
            parse_tokens(&tokens_path, &read(&tokens_path)?)?
        } else {
            let t = JoinTokens {
                worker: JoinToken::generate(ca.digest())?,
                manager: JoinToken::generate(ca.digest())?,
            };
            write_tokens(&tokens_path, &t)?;
            t
        };
        let serving_pem = read(&crt)?;
        Ok(ClusterPki {
            serving: ServingCert::new(&serving_pem, &read(&key)?)?,
            serving_pem: RwLock::new(serving_pem),
            server_names: names,
            dir,
            ca,
            tokens: RwLock::new(tokens),
            validity,
            shared: None,
        })
    }

    /// `load_or_init_with` for a manager over a store other managers share (etcd). The first
    /// manager publishes its CA (certificate and key) and join tokens there; every later one
    /// adopts them, writing them under `DATA_DIR/pki`, so all managers sign with one CA and
    /// check one pair of tokens. `secrets_key` is the store's encryption-at-rest key file (it
    /// seals the CA key in the store); joining managers get a copy with their certificate.
    pub async fn load_or_init_shared(
        data_dir: &Path,
        sans: &[String],
        validity: Duration,
        shared: SharedStore,
    ) -> Result<Arc<Self>, PkiError> {
        for _ in 0..PUBLISH_ATTEMPTS {
            if let Some((record, ca_key)) = read_shared(&*shared.store).await? {
                adopt(data_dir, &record, &ca_key)?;
                let mut pki = Self::load(data_dir, sans, validity)?;
                pki.shared = Some(shared);
                pki.refresh_tokens().await?;
                return Ok(Arc::new(pki));
            }
            let mut pki = Self::load(data_dir, sans, validity)?;
            let t = pki.tokens();
            let record = SharedRecord {
                cluster_id: pki.ca.cluster_id().to_string(),
                ca_cert: pki.ca.cert_pem().to_string(),
                worker_token: t.worker.to_string(),
                manager_token: t.manager.to_string(),
            };
            let ops = vec![
                TxnOp::Create {
                    key: SHARED_CA_KEY.to_string(),
                    value: pki.ca.key_pem().into_bytes().into(),
                },
                TxnOp::Create {
                    key: SHARED_RECORD.to_string(),
                    value: record.to_bytes()?,
                },
            ];
            match shared.store.txn(ops).await {
                Ok(_) => {
                    tracing::info!(cluster = %record.cluster_id, "published the cluster PKI in the shared store");
                    pki.shared = Some(shared);
                    return Ok(Arc::new(pki));
                }
                // Another manager published first: adopt its PKI.
                Err(e) if matches!(cause(&e), StoreError::AlreadyExists { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Err(PkiError::Shared(
            "the cluster PKI in the store keeps changing; try again".into(),
        ))
    }

    /// The shared store this manager's PKI lives in, when it has one (etcd).
    pub fn shared(&self) -> Option<&SharedStore> {
        self.shared.as_ref()
    }

    /// Reads the join tokens again from the shared store (a no-op for a manager alone), so a
    /// rotation on another manager counts here at once.
    pub async fn refresh_tokens(&self) -> Result<(), PkiError> {
        let Some(shared) = &self.shared else {
            return Ok(());
        };
        let Some(kv) = shared.store.get(SHARED_RECORD).await? else {
            return Err(PkiError::Shared(format!(
                "{SHARED_RECORD} is missing from the store"
            )));
        };
        let fresh = SharedRecord::from_bytes(&kv.value)?.tokens()?;
        self.set_tokens(fresh);
        Ok(())
    }

    fn set_tokens(&self, tokens: JoinTokens) {
        match self.tokens.write() {
            Ok(mut t) => *t = tokens,
            Err(poisoned) => *poisoned.into_inner() = tokens,
        }
    }

    /// How long the certificates this manager issues are valid (90 days by default).
    pub fn validity(&self) -> Duration {
        self.validity
    }

    /// This apiserver's certificate, for the TLS configurations of the REST API and the
    /// dispatcher; [`ClusterPki::renew_serving_cert`] replaces what it serves.
    pub fn serving(&self) -> Arc<ServingCert> {
        self.serving.clone()
    }

    /// The PEM of the certificate served now.
    pub fn serving_cert_pem(&self) -> String {
        match self.serving_pem.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Issues this apiserver a fresh certificate — same identity and names, a new key —
    /// saves it and serves it from the next handshake on.
    pub fn renew_serving_cert(&self) -> Result<(), PkiError> {
        let id = Identity::from_cert_pem(&self.serving_cert_pem())?;
        let (cert_pem, key_pem) = self.ca.issue(&id, &self.server_names, self.validity)?;
        write_file(&self.dir.join("apiserver.key"), &key_pem, true)?;
        write_file(&self.dir.join("apiserver.crt"), &cert_pem, false)?;
        self.serving.replace(&cert_pem, &key_pem)?;
        match self.serving_pem.write() {
            Ok(mut p) => *p = cert_pem,
            Err(poisoned) => *poisoned.into_inner() = cert_pem,
        }
        Ok(())
    }

    /// Renews this apiserver's certificate at a random point between 50 % and 80 % of its
    /// life, again and again, until `stop` resolves. A failed renewal is retried.
    pub async fn keep_serving_cert_renewed(self: Arc<Self>, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            let wait = match swarm_pki::until_renewal(&self.serving_cert_pem()) {
                Ok(wait) => wait,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read this apiserver's certificate; not renewing it");
                    return;
                }
            };
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(wait) => {}
            }
            match self.renew_serving_cert() {
                Ok(()) => tracing::info!("apiserver certificate renewed"),
                Err(e) => {
                    tracing::warn!(error = %e, "apiserver certificate renewal failed; retrying");
                    tokio::select! {
                        _ = &mut stop => return,
                        _ = tokio::time::sleep(RENEWAL_RETRY.min(self.validity / 10)) => {}
                    }
                }
            }
        }
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    pub fn tokens(&self) -> JoinTokens {
        match self.tokens.read() {
            Ok(t) => t.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The role a presented token grants, if it is one of the current tokens.
    pub fn role_for(&self, presented: &JoinToken) -> Option<Role> {
        let t = self.tokens();
        if t.worker.matches(presented) {
            Some(Role::Worker)
        } else if t.manager.matches(presented) {
            Some(Role::Manager)
        } else {
            None
        }
    }

    /// Replaces the token of `role` (worker or manager); the old one stops working at once,
    /// on every manager sharing the store.
    pub async fn rotate(&self, role: Role) -> Result<JoinToken, PkiError> {
        let fresh = JoinToken::generate(self.ca.digest())?;
        let with_fresh = |mut t: JoinTokens| {
            match role {
                Role::Manager => t.manager = fresh.clone(),
                _ => t.worker = fresh.clone(),
            }
            t
        };
        let next = match &self.shared {
            None => with_fresh(self.tokens()),
            Some(shared) => loop {
                let Some(kv) = shared.store.get(SHARED_RECORD).await? else {
                    return Err(PkiError::Shared(format!(
                        "{SHARED_RECORD} is missing from the store"
                    )));
                };
                let mut record = SharedRecord::from_bytes(&kv.value)?;
                let next = with_fresh(record.tokens()?);
                record.worker_token = next.worker.to_string();
                record.manager_token = next.manager.to_string();
                match shared
                    .store
                    .update(SHARED_RECORD, record.to_bytes()?, Some(kv.mod_revision))
                    .await
                {
                    Ok(_) => break next,
                    // Rotated meanwhile on another manager: again over its tokens.
                    Err(e) if matches!(cause(&e), StoreError::Conflict { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            },
        };
        write_tokens(&self.dir.join("join-tokens"), &next)?;
        self.set_tokens(next);
        Ok(fresh)
    }

    /// Issues the admin's client certificate into `dir` (`admin.crt`, `admin.key`) and
    /// returns their paths. Valid 90 days whatever `validity()` is: nothing renews a user's
    /// credentials (`swarm server` writes fresh ones at each start).
    pub fn write_admin_credentials(&self, dir: &Path) -> Result<(PathBuf, PathBuf), PkiError> {
        self.issue_into(dir, "admin", "admin", Role::Admin, DEFAULT_CERT_VALIDITY)
    }

    /// Issues a client certificate for `id` with `role` into `dir` (`FILE.crt`, `FILE.key`,
    /// the key 0600) and returns their paths. Made fresh each time, valid for `validity()`.
    pub fn write_credentials(
        &self,
        dir: &Path,
        file: &str,
        id: &str,
        role: Role,
    ) -> Result<(PathBuf, PathBuf), PkiError> {
        self.issue_into(dir, file, id, role, self.validity)
    }

    fn issue_into(
        &self,
        dir: &Path,
        file: &str,
        id: &str,
        role: Role,
        validity: Duration,
    ) -> Result<(PathBuf, PathBuf), PkiError> {
        let id = Identity::new(id, role, self.ca.cluster_id());
        let (cert, key) = self.ca.issue(&id, &[], validity)?;
        let (crt_path, key_path) = (
            dir.join(format!("{file}.crt")),
            dir.join(format!("{file}.key")),
        );
        write_file(&key_path, &key, true)?;
        write_file(&crt_path, &cert, false)?;
        Ok((crt_path, key_path))
    }
}

fn write_tokens(path: &Path, t: &JoinTokens) -> Result<(), PkiError> {
    write_file(
        path,
        &format!("worker {}\nmanager {}\n", t.worker, t.manager),
        true,
    )
}

/// A 25-character lowercase id, as Swarm's node and cluster ids look.
pub fn new_id() -> String {
    let u = uuid::Uuid::new_v4().as_u128();
    let mut n = u;
    let mut s = String::with_capacity(25);
    const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    for _ in 0..25 {
        s.push(ALPHABET[(n % 36) as usize] as char);
        n /= 36;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_start_creates_and_later_starts_reload_the_same_pki() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let a = ClusterPki::load_or_init(dir.path(), &["10.1.2.3".into()]).unwrap();
        let b = ClusterPki::load_or_init(dir.path(), &[]).unwrap();
        assert_eq!(a.ca.digest(), b.ca.digest());
        assert_eq!(a.serving_cert_pem(), b.serving_cert_pem());
        assert_eq!(a.tokens().worker.to_string(), b.tokens().worker.to_string());
        for private in ["ca.key", "apiserver.key", "join-tokens"] {
            let mode = std::fs::metadata(dir.path().join("pki").join(private))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{private}");
        }
    }

    #[test]
    fn tokens_grant_their_role_until_rotated() {
        let dir = tempfile::tempdir().unwrap();
        let pki = ClusterPki::load_or_init(dir.path(), &[]).unwrap();
        let t = pki.tokens();
        assert_eq!(pki.role_for(&t.worker), Some(Role::Worker));
        assert_eq!(pki.role_for(&t.manager), Some(Role::Manager));
        let fresh = futures::executor::block_on(pki.rotate(Role::Worker)).unwrap();
        assert_eq!(pki.role_for(&t.worker), None);
        assert_eq!(pki.role_for(&fresh), Some(Role::Worker));
        assert_eq!(pki.role_for(&t.manager), Some(Role::Manager));
        // The rotation is on disk too.
        let again = ClusterPki::load_or_init(dir.path(), &[]).unwrap();
        assert_eq!(again.role_for(&t.worker), None);
        assert_eq!(again.role_for(&fresh), Some(Role::Worker));
    }

    #[test]
    fn ids_look_like_swarms() {
        let id = new_id();
        assert_eq!(id.len(), 25);
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        );
        assert_ne!(new_id(), id);
    }
}
