//! The `Store`: a revisioned key-value store with compare-and-swap, multi-key transactions and
//! watch-from-revision — the part of etcd's model the apiserver needs.
//!
//! Two backends implement it with the same semantics, checked by one conformance suite:
//! * `embedded` — one SQLite file with a revision log (as k3s's kine), the default;
//! * `etcd` — a real etcd cluster (feature `store-etcd`).
//!
//! # Semantics every backend keeps
//! * One global revision, rising by one per committed write or transaction (the embedded
//!   store's first write is revision 1; a fresh etcd starts at 1 with no write, so its first
//!   write is 2 — do not rely on the absolute number). All operations of one transaction commit
//!   at the same revision; reads and failed writes take none.
//! * A key's `mod_revision` is the revision of its last write; `create_revision` of its creation.
//! * Writes take an optional expected `mod_revision`; a mismatch is `Conflict` and writes nothing.
//!   A transaction names each key at most once.
//! * `watch(prefix, after)` delivers every event with revision > `after`, in revision order
//!   (within one revision, in the transaction's operation order), then follows live writes.
//!   If `after` is older than the compaction point, `watch` fails with `Compacted`; a running
//!   watch that falls behind a compaction ends with a `Compacted` item. A watch survives
//!   reconnects to the backend (etcd restarts) without losing or repeating events.
//! * `list` at a revision at or after the compaction point is the state at that revision;
//!   older ones are `Compacted`. Compacting to an older point than the current one does nothing.
//! * Values are opaque bytes; keys are UTF-8 strings (`/registry/<plural>/<name>`).

use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;

#[cfg(test)]
pub(crate) mod conformance;
pub mod embedded;
pub mod encrypted;
#[cfg(feature = "store-etcd")]
pub mod etcd;
#[cfg(all(any(test, feature = "testing"), feature = "store-etcd"))]
pub mod etcd_testing;

/// A store revision. 0 means "before any write".
pub type Revision = i64;

/// A key with its current value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Bytes,
    pub create_revision: Revision,
    pub mod_revision: Revision,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Put,
    Delete,
}

/// One change, as delivered by `watch`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventType,
    pub key: String,
    /// For `Put`, the new value; for `Delete`, the value it had before deletion.
    pub value: Bytes,
    /// The value before this change, if the key existed.
    pub prev_value: Option<Bytes>,
    /// The revision of this change.
    pub revision: Revision,
    pub create_revision: Revision,
}

/// How to read a range of keys.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// Read as of this revision (0: latest). Fails with `Compacted` if history is gone.
    pub revision: Revision,
    /// At most this many keys (0: no limit).
    pub limit: usize,
    /// Start strictly after this key (pagination: the last key of the previous page).
    pub start_after: Option<String>,
}

/// A page of keys, in key order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListResult {
    pub items: Vec<KeyValue>,
    /// The revision the list reflects; a next page must be read at this revision.
    pub revision: Revision,
    /// More keys follow the last one returned.
    pub more: bool,
}

/// One operation of a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnOp {
    /// Fails with `AlreadyExists` if the key exists.
    Create { key: String, value: Bytes },
    /// Fails with `NotFound` if the key is absent, `Conflict` if `expected` is given and differs.
    Update {
        key: String,
        value: Bytes,
        expected: Option<Revision>,
    },
    /// Fails with `NotFound` if the key is absent, `Conflict` if `expected` is given and differs.
    Delete {
        key: String,
        expected: Option<Revision>,
    },
}

impl TxnOp {
    pub fn key(&self) -> &str {
        match self {
            TxnOp::Create { key, .. } | TxnOp::Update { key, .. } | TxnOp::Delete { key, .. } => {
                key
            }
        }
    }
}

/// What a committed transaction did, one entry per operation in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnResult {
    pub revision: Revision,
    /// For creates and updates, the key as written; for deletes, the key as it was.
    pub results: Vec<KeyValue>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("key {key:?} not found")]
    NotFound { key: String },
    #[error("key {key:?} already exists")]
    AlreadyExists { key: String },
    /// The key's `mod_revision` is not the one the write expected (`actual` 0: key absent).
    #[error("key {key:?} was modified: expected revision {expected}, found {actual}")]
    Conflict {
        key: String,
        expected: Revision,
        actual: Revision,
    },
    /// The requested revision's history has been compacted away; re-list.
    #[error("revision {requested} has been compacted; the oldest available is {compacted}")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    /// The revision is newer than the store's current revision.
    #[error("revision {requested} is in the future; the store is at {current}")]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },
    /// Operation `index` of a transaction failed; nothing was written.
    #[error("transaction operation {index} failed: {source}")]
    Txn {
        index: usize,
        #[source]
        source: Box<StoreError>,
    },
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store error: {0}")]
    Internal(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A watch: events in revision order, until dropped or an error ends it.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<Event>> + Send>>;

/// One item of a watch with progress reports (`Store::watch_with_progress`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchItem {
    Event(Event),
    /// Every event under the watch's prefix with a revision up to this one has been yielded,
    /// including the writes at or below it that touched other prefixes (they have none here).
    Progress(Revision),
}

/// A watch with progress reports: events as `WatchStream`, with `Progress` items among them.
pub type ProgressWatchStream = Pin<Box<dyn Stream<Item = Result<WatchItem>> + Send>>;

/// The events of a progress watch, without its reports (a plain `watch` built on one).
pub(crate) fn events_only(items: ProgressWatchStream) -> WatchStream {
    use futures::StreamExt;
    Box::pin(items.filter_map(|item| {
        std::future::ready(match item {
            Ok(WatchItem::Event(ev)) => Some(Ok(ev)),
            Ok(WatchItem::Progress(_)) => None,
            Err(e) => Some(Err(e)),
        })
    }))
}

/// The storage the apiserver runs on. See the module docs for the semantics.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The current revision (of the last committed write).
    async fn current_revision(&self) -> Result<Revision>;

    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;

    /// Keys starting with `prefix`, in key order, per `opts`.
    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult>;

    /// Commits all operations at one new revision, or none of them. A failing operation is
    /// reported as `StoreError::Txn { index, source }`.
    async fn txn(&self, ops: Vec<TxnOp>) -> Result<TxnResult>;

    /// Events on keys under `prefix` with revision > `after`, then live ones.
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream>;

    /// `watch`, plus `Progress(r)` items telling that the stream has yielded every event up to
    /// revision `r`: a cache fed by it then knows it is current up to `r` even when the newest
    /// writes were under other prefixes, which is what consistent reads from the watch cache
    /// need (etcd's progress notifications play this part in Kubernetes). Reports come soon
    /// after `request_progress`, and unasked at least every few seconds (the embedded store
    /// reports after each commit; etcd when asked and every second). `None`: this backend
    /// cannot report progress; consistent reads then go to the store.
    async fn watch_with_progress(
        &self,
        _prefix: &str,
        _after: Revision,
    ) -> Result<Option<ProgressWatchStream>> {
        Ok(None)
    }

    /// Asks the progress watches of `prefix` to report their progress soon: a reader waits for
    /// them to pass the current revision. Backends that report after every commit need not
    /// do anything.
    async fn request_progress(&self, _prefix: &str) {}

    /// Forgets history before `revision` (current values stay). Watches and lists older than
    /// it then fail with `Compacted`.
    async fn compact(&self, revision: Revision) -> Result<()>;

    /// The oldest revision still readable (history before it is compacted).
    async fn compacted_revision(&self) -> Result<Revision>;

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue> {
        let op = TxnOp::Create {
            key: key.to_string(),
            value,
        };
        single(self.txn(vec![op]).await)
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Option<Revision>,
    ) -> Result<KeyValue> {
        let op = TxnOp::Update {
            key: key.to_string(),
            value,
            expected,
        };
        single(self.txn(vec![op]).await)
    }

    /// Deletes `key`, returning it as it was.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        let op = TxnOp::Delete {
            key: key.to_string(),
            expected,
        };
        single(self.txn(vec![op]).await)
    }
}

/// The check a transaction operation makes against the key's current state (`None`: absent),
/// shared by the backends so they report failures alike.
pub(crate) fn check_op(op: &TxnOp, current: Option<&KeyValue>) -> Result<()> {
    let key = || op.key().to_string();
    match (op, current) {
        (TxnOp::Create { .. }, Some(_)) => Err(StoreError::AlreadyExists { key: key() }),
        (TxnOp::Create { .. }, None) => Ok(()),
        (TxnOp::Update { .. } | TxnOp::Delete { .. }, None) => {
            Err(StoreError::NotFound { key: key() })
        }
        (TxnOp::Update { expected, .. } | TxnOp::Delete { expected, .. }, Some(kv)) => {
            match expected {
                Some(expected) if *expected != kv.mod_revision => Err(StoreError::Conflict {
                    key: key(),
                    expected: *expected,
                    actual: kv.mod_revision,
                }),
                _ => Ok(()),
            }
        }
    }
}

/// The first operation naming a key an earlier one already named, as a `Txn` error.
pub(crate) fn check_distinct_keys(ops: &[TxnOp]) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for (index, op) in ops.iter().enumerate() {
        if !seen.insert(op.key()) {
            return Err(StoreError::Txn {
                index,
                source: Box::new(StoreError::Internal(format!(
                    "key {:?} appears twice in one transaction",
                    op.key()
                ))),
            });
        }
    }
    Ok(())
}

/// The smallest byte string greater than every string starting with `prefix` (None: no bound).
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Unwraps the result of a one-operation transaction into that operation's result or error.
fn single(r: Result<TxnResult>) -> Result<KeyValue> {
    match r {
        Ok(mut t) => t
            .results
            .pop()
            .ok_or_else(|| StoreError::Internal("transaction returned no result".into())),
        Err(StoreError::Txn { source, .. }) => Err(*source),
        Err(e) => Err(e),
    }
}
