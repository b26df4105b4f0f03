//! Encryption at rest: a `Store` wrapper that seals the values of sensitive kinds (secrets)
//! with AES-256-GCM before they reach the backend, and opens them on every way back out
//! (get, list, transaction results, watch events).
//!
//! Like kube-apiserver's encryption providers, this sits between the registry and the
//! storage, so nothing above it changes and no backend ever holds the plaintext — not the
//! SQLite file, not its WAL, not etcd. A sealed value is
//!
//! ```text
//! swarm:enc:aes256gcm:v1: ‖ nonce (12 bytes, random per write) ‖ ciphertext ‖ tag (16 bytes)
//! ```
//!
//! and the store key (`/registry/secrets/NAME`) is the AEAD's associated data, so a sealed
//! value copied under another key fails to open instead of leaking into the wrong object.
//! A value without the prefix (written before encryption was enabled) is read as it is and
//! gets sealed on its next write.
//!
//! The 32-byte key lives in a file (`DATA_DIR/secrets.key`, mode 0600), created on first
//! start. Apiservers sharing one etcd must be given the same file.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use bytes::Bytes;
use futures::StreamExt;

use super::{
    Event, KeyValue, ListOptions, ListResult, ProgressWatchStream, Result, Revision, Store,
    StoreError, TxnOp, TxnResult, WatchItem, WatchStream,
};

/// Marks a sealed value; the version lets a later format or key rotation coexist.
const PREFIX: &[u8] = b"swarm:enc:aes256gcm:v1:";

/// Key prefixes whose values are sealed.
pub const SEALED_PREFIXES: &[&str] = &["/registry/secrets/", crate::cluster_pki::SHARED_CA_KEY];

/// Length of the key file's content.
pub const KEY_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read the encryption key {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot create the encryption key {path}: {source}")]
    Create {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "the encryption key {path} holds {len} bytes, not {KEY_LEN}; restore the cluster's key file"
    )]
    Length { path: String, len: usize },
    #[error("the system random generator failed while making the encryption key")]
    Random,
}

/// The AEAD key, loaded from or created in a key file.
pub struct SealingKey {
    key: RandomizedNonceKey,
}

impl SealingKey {
    pub fn from_bytes(bytes: &[u8; KEY_LEN]) -> Self {
        // AES-256-GCM accepts every 32-byte key; `new` fails only on a wrong length.
        let key = RandomizedNonceKey::new(&AES_256_GCM, bytes)
            .unwrap_or_else(|_| unreachable!("a 32-byte key is valid for AES-256-GCM"));
        SealingKey { key }
    }

    /// Reads the key file at `path`, creating it (mode 0600, random key) if it does not exist.
    pub fn load_or_create(path: &Path) -> std::result::Result<Self, KeyFileError> {
        let shown = path.display().to_string();
        match std::fs::read(path) {
            Ok(bytes) => {
                let len = bytes.len();
                let bytes: [u8; KEY_LEN] = bytes
                    .try_into()
                    .map_err(|_| KeyFileError::Length { path: shown, len })?;
                Ok(Self::from_bytes(&bytes))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut bytes = [0u8; KEY_LEN];
                aws_lc_rs::rand::fill(&mut bytes).map_err(|_| KeyFileError::Random)?;
                write_private(path, &bytes).map_err(|source| KeyFileError::Create {
                    path: shown,
                    source,
                })?;
                Ok(Self::from_bytes(&bytes))
            }
            Err(source) => Err(KeyFileError::Read {
                path: shown,
                source,
            }),
        }
    }

    fn seal(&self, key: &str, plain: &[u8]) -> Result<Bytes> {
        let mut sealed = plain.to_vec();
        let nonce = self
            .key
            .seal_in_place_append_tag(Aad::from(key.as_bytes()), &mut sealed)
            .map_err(|_| StoreError::Internal(format!("cannot encrypt the value of {key}")))?;
        let mut out = Vec::with_capacity(PREFIX.len() + NONCE_LEN + sealed.len());
        out.extend_from_slice(PREFIX);
        out.extend_from_slice(nonce.as_ref());
        out.extend_from_slice(&sealed);
        Ok(Bytes::from(out))
    }

    fn open(&self, key: &str, stored: &Bytes) -> Result<Bytes> {
        let Some(body) = stored.strip_prefix(PREFIX) else {
            return Ok(stored.clone());
        };
        let fail = || {
            StoreError::Internal(format!(
                "cannot decrypt the value of {key}: the encryption key file does not match the one it was written with"
            ))
        };
        if body.len() < NONCE_LEN {
            return Err(fail());
        }
        let (nonce, sealed) = body.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| fail())?;
        let mut buf = sealed.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(key.as_bytes()), &mut buf)
            .map_err(|_| fail())?;
        Ok(Bytes::copy_from_slice(plain))
    }
}

/// Writes `bytes` to a new file only its owner can read.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

fn is_sealed_key(key: &str) -> bool {
    SEALED_PREFIXES.iter().any(|p| key.starts_with(p))
}

/// A `Store` that seals the values of `SEALED_PREFIXES` keys in `inner`.
pub struct EncryptedStore {
    inner: Arc<dyn Store>,
    key: Arc<SealingKey>,
}

impl EncryptedStore {
    pub fn new(inner: Arc<dyn Store>, key: SealingKey) -> Self {
        EncryptedStore {
            inner,
            key: Arc::new(key),
        }
    }
}

fn open_kv(key: &SealingKey, mut kv: KeyValue) -> Result<KeyValue> {
    if is_sealed_key(&kv.key) {
        kv.value = key.open(&kv.key, &kv.value)?;
    }
    Ok(kv)
}

fn open_event(key: &SealingKey, mut ev: Event) -> Result<Event> {
    if is_sealed_key(&ev.key) {
        ev.value = key.open(&ev.key, &ev.value)?;
        if let Some(prev) = ev.prev_value.take() {
            ev.prev_value = Some(key.open(&ev.key, &prev)?);
        }
    }
    Ok(ev)
}

#[async_trait]
impl Store for EncryptedStore {
    async fn current_revision(&self) -> Result<Revision> {
        self.inner.current_revision().await
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        match self.inner.get(key).await? {
            Some(kv) => open_kv(&self.key, kv).map(Some),
            None => Ok(None),
        }
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult> {
        let mut page = self.inner.list(prefix, opts).await?;
        page.items = page
            .items
            .into_iter()
            .map(|kv| open_kv(&self.key, kv))
            .collect::<Result<_>>()?;
        Ok(page)
    }

    async fn txn(&self, ops: Vec<TxnOp>) -> Result<TxnResult> {
        let ops = ops
            .into_iter()
            .map(|op| match op {
                TxnOp::Create { key, value } if is_sealed_key(&key) => {
                    let value = self.key.seal(&key, &value)?;
                    Ok(TxnOp::Create { key, value })
                }
                TxnOp::Update {
                    key,
                    value,
                    expected,
                } if is_sealed_key(&key) => {
                    let value = self.key.seal(&key, &value)?;
                    Ok(TxnOp::Update {
                        key,
                        value,
                        expected,
                    })
                }
                other => Ok(other),
            })
            .collect::<Result<Vec<_>>>()?;
        let mut done = self.inner.txn(ops).await?;
        done.results = done
            .results
            .into_iter()
            .map(|kv| open_kv(&self.key, kv))
            .collect::<Result<_>>()?;
        Ok(done)
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        let key = self.key.clone();
        let events = self.inner.watch(prefix, after).await?;
        Ok(Box::pin(
            events.map(move |ev| ev.and_then(|ev| open_event(&key, ev))),
        ))
    }

    async fn watch_with_progress(
        &self,
        prefix: &str,
        after: Revision,
    ) -> Result<Option<ProgressWatchStream>> {
        let key = self.key.clone();
        let Some(items) = self.inner.watch_with_progress(prefix, after).await? else {
            return Ok(None);
        };
        Ok(Some(Box::pin(items.map(move |item| match item {
            Ok(WatchItem::Event(ev)) => open_event(&key, ev).map(WatchItem::Event),
            other => other,
        }))))
    }

    async fn request_progress(&self, prefix: &str) {
        self.inner.request_progress(prefix).await
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.inner.compact(revision).await
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        self.inner.compacted_revision().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::embedded::EmbeddedStore;

    const SECRET_KEY: &str = "/registry/secrets/db-password";
    const PLAIN: &[u8] = b"{\"spec\":{\"data\":\"correct-horse-battery-staple\"}}";

    fn key() -> SealingKey {
        SealingKey::from_bytes(&[7u8; KEY_LEN])
    }

    /// The bytes of every file SQLite keeps for the store (main file, WAL, shared memory).
    fn store_files_bytes(dir: &Path) -> Vec<u8> {
        let mut all = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            all.extend(std::fs::read(entry.unwrap().path()).unwrap_or_default());
        }
        all
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    #[tokio::test]
    async fn secrets_are_sealed_in_the_backend_and_open_on_every_read_path() {
        let dir = tempfile::tempdir().unwrap();
        let inner: Arc<dyn Store> =
            Arc::new(EmbeddedStore::open(&dir.path().join("store.db")).unwrap());
        let store = EncryptedStore::new(inner.clone(), key());
        let mut watch = store.watch("/registry/", 0).await.unwrap();

        let created = store
            .create(SECRET_KEY, Bytes::from_static(PLAIN))
            .await
            .unwrap();
        assert_eq!(created.value, PLAIN);
        store
            .create("/registry/configs/app", Bytes::from_static(b"plain-config"))
            .await
            .unwrap();

        // The backend holds ciphertext for the secret, plaintext for the config.
        let raw = inner.get(SECRET_KEY).await.unwrap().unwrap();
        assert!(raw.value.starts_with(PREFIX));
        assert!(!contains(&raw.value, b"correct-horse"));
        let raw_config = inner.get("/registry/configs/app").await.unwrap().unwrap();
        assert_eq!(raw_config.value, "plain-config");
        assert!(!contains(
            &store_files_bytes(dir.path()),
            b"correct-horse-battery-staple"
        ));

        // get, list and watch all see the plaintext.
        assert_eq!(store.get(SECRET_KEY).await.unwrap().unwrap().value, PLAIN);
        let listed = store
            .list("/registry/secrets/", ListOptions::default())
            .await
            .unwrap();
        assert_eq!(listed.items[0].value, PLAIN);
        let ev = watch.next().await.unwrap().unwrap();
        assert_eq!((ev.key.as_str(), ev.value.as_ref()), (SECRET_KEY, PLAIN));

        // Deleting returns the plaintext too, and the delete event's value opens.
        let deleted = store.delete(SECRET_KEY, None).await.unwrap();
        assert_eq!(deleted.value, PLAIN);
        let _config = watch.next().await.unwrap().unwrap();
        let del = watch.next().await.unwrap().unwrap();
        assert_eq!(del.value, PLAIN);
    }

    #[tokio::test]
    async fn a_wrong_key_or_a_moved_value_fails_to_open() {
        let dir = tempfile::tempdir().unwrap();
        let inner: Arc<dyn Store> =
            Arc::new(EmbeddedStore::open(&dir.path().join("store.db")).unwrap());
        let store = EncryptedStore::new(inner.clone(), key());
        store
            .create(SECRET_KEY, Bytes::from_static(PLAIN))
            .await
            .unwrap();

        let other = EncryptedStore::new(inner.clone(), SealingKey::from_bytes(&[8u8; KEY_LEN]));
        let err = other.get(SECRET_KEY).await.unwrap_err();
        assert!(err.to_string().contains("does not match"), "{err}");

        // The same ciphertext under another name does not open: the key is bound in.
        let sealed = inner.get(SECRET_KEY).await.unwrap().unwrap().value;
        inner
            .create("/registry/secrets/stolen", sealed)
            .await
            .unwrap();
        assert!(store.get("/registry/secrets/stolen").await.is_err());
    }

    #[test]
    fn key_file_is_created_private_and_reloaded() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/secrets.key");
        let first = SealingKey::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let sealed = first.seal(SECRET_KEY, PLAIN).unwrap();
        let again = SealingKey::load_or_create(&path).unwrap();
        assert_eq!(again.open(SECRET_KEY, &sealed).unwrap(), PLAIN);

        std::fs::write(&path, b"short").unwrap();
        let err = SealingKey::load_or_create(&path).err().unwrap();
        assert!(err.to_string().contains("holds 5 bytes"), "{err}");
    }

    #[test]
    fn unsealed_values_from_before_encryption_read_as_they_are() {
        let v = Bytes::from_static(b"{\"old\":true}");
        assert_eq!(key().open(SECRET_KEY, &v).unwrap(), v);
    }
}
