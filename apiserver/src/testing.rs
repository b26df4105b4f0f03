//! `MemStore`: a small in-memory `Store` for unit tests of the layers above the store.
//!
//! It keeps the whole history (a log of every change) so it can answer reads at old revisions
//! and watches from any revision, and it honours `compact`. It is deliberately simple — a
//! mutex around a `Vec` — and is not one of the real backends (see `store::embedded`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;

use crate::store::{
    Event, EventType, KeyValue, ListOptions, ListResult, Result, Revision, Store, StoreError,
    TxnOp, TxnResult, WatchStream,
};

#[derive(Default)]
struct State {
    revision: Revision,
    compacted: Revision,
    current: BTreeMap<String, KeyValue>,
    log: Vec<Event>,
}

/// An in-memory store with full history.
#[derive(Clone)]
pub struct MemStore {
    state: Arc<Mutex<State>>,
    live: broadcast::Sender<Event>,
}

impl Default for MemStore {
    fn default() -> Self {
        MemStore::new()
    }
}

impl MemStore {
    pub fn new() -> Self {
        let (live, _) = broadcast::channel(4096);
        MemStore {
            state: Arc::new(Mutex::new(State::default())),
            live,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl State {
    /// The key/values as of `revision`, rebuilt from the log.
    fn at(&self, revision: Revision) -> BTreeMap<String, KeyValue> {
        if revision >= self.revision {
            return self.current.clone();
        }
        let mut map = BTreeMap::new();
        for e in self.log.iter().take_while(|e| e.revision <= revision) {
            match e.kind {
                EventType::Put => {
                    map.insert(
                        e.key.clone(),
                        KeyValue {
                            key: e.key.clone(),
                            value: e.value.clone(),
                            create_revision: e.create_revision,
                            mod_revision: e.revision,
                        },
                    );
                }
                EventType::Delete => {
                    map.remove(&e.key);
                }
            }
        }
        map
    }
}

#[async_trait]
impl Store for MemStore {
    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.lock().revision)
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        Ok(self.lock().current.get(key).cloned())
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult> {
        let st = self.lock();
        let revision = if opts.revision == 0 {
            st.revision
        } else {
            opts.revision
        };
        if revision < st.compacted {
            return Err(StoreError::Compacted {
                requested: revision,
                compacted: st.compacted,
            });
        }
        if revision > st.revision {
            return Err(StoreError::FutureRevision {
                requested: revision,
                current: st.revision,
            });
        }
        let map = st.at(revision);
        let mut items: Vec<KeyValue> = map
            .into_values()
            .filter(|kv| kv.key.starts_with(prefix))
            .filter(|kv| opts.start_after.as_ref().is_none_or(|s| kv.key > *s))
            .collect();
        let more = opts.limit > 0 && items.len() > opts.limit;
        if more {
            items.truncate(opts.limit);
        }
        Ok(ListResult {
            items,
            revision,
            more,
        })
    }

    async fn txn(&self, ops: Vec<TxnOp>) -> Result<TxnResult> {
        let mut st = self.lock();
        // Check every operation first: all or nothing.
        for (index, op) in ops.iter().enumerate() {
            let fail = |source| StoreError::Txn {
                index,
                source: Box::new(source),
            };
            let existing = st.current.get(op.key());
            match op {
                TxnOp::Create { key, .. } => {
                    if existing.is_some() {
                        return Err(fail(StoreError::AlreadyExists { key: key.clone() }));
                    }
                }
                TxnOp::Update { key, expected, .. } | TxnOp::Delete { key, expected } => {
                    let Some(kv) = existing else {
                        return Err(fail(StoreError::NotFound { key: key.clone() }));
                    };
                    if let Some(exp) = expected
                        && *exp != kv.mod_revision
                    {
                        return Err(fail(StoreError::Conflict {
                            key: key.clone(),
                            expected: *exp,
                            actual: kv.mod_revision,
                        }));
                    }
                }
            }
        }
        st.revision += 1;
        let revision = st.revision;
        let mut results = Vec::new();
        let mut events = Vec::new();
        for op in ops {
            match op {
                TxnOp::Create { key, value } | TxnOp::Update { key, value, .. } => {
                    let prev = st.current.get(&key).cloned();
                    let kv = KeyValue {
                        key: key.clone(),
                        value: value.clone(),
                        create_revision: prev.as_ref().map_or(revision, |p| p.create_revision),
                        mod_revision: revision,
                    };
                    st.current.insert(key.clone(), kv.clone());
                    events.push(Event {
                        kind: EventType::Put,
                        key,
                        value,
                        prev_value: prev.map(|p| p.value),
                        revision,
                        create_revision: kv.create_revision,
                    });
                    results.push(kv);
                }
                TxnOp::Delete { key, .. } => {
                    if let Some(prev) = st.current.remove(&key) {
                        events.push(Event {
                            kind: EventType::Delete,
                            key,
                            value: prev.value.clone(),
                            prev_value: Some(prev.value.clone()),
                            revision,
                            create_revision: prev.create_revision,
                        });
                        results.push(prev);
                    }
                }
            }
        }
        for e in events {
            st.log.push(e.clone());
            // No receivers is fine.
            let _ = self.live.send(e);
        }
        Ok(TxnResult { revision, results })
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        let st = self.lock();
        if after < st.compacted {
            return Err(StoreError::Compacted {
                requested: after,
                compacted: st.compacted,
            });
        }
        // Subscribe while holding the lock so no event falls between history and live.
        let rx = self.live.subscribe();
        let prefix = prefix.to_string();
        let history: Vec<Result<Event>> = st
            .log
            .iter()
            .filter(|e| e.revision > after && e.key.starts_with(&prefix))
            .cloned()
            .map(Ok)
            .collect();
        let last = st.revision.max(after);
        drop(st);
        let live = BroadcastStream::new(rx).filter_map(move |r| {
            let prefix = prefix.clone();
            async move {
                match r {
                    Ok(e) if e.revision > last && e.key.starts_with(&prefix) => Some(Ok(e)),
                    Ok(_) => None,
                    Err(_) => Some(Err(StoreError::Unavailable("watch lagged".into()))),
                }
            }
        });
        Ok(Box::pin(futures::stream::iter(history).chain(live)))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let mut st = self.lock();
        if revision > st.compacted {
            st.compacted = revision.min(st.revision);
        }
        Ok(())
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        Ok(self.lock().compacted)
    }
}

/// A registry whose watch cache is behind its store, on purpose and deterministically: the
/// cache follows a second store (`cached`), so it holds exactly what the test wrote there,
/// whatever the registry's store (`store`) holds. For tests of writes planned against the
/// cache (`Registry::plan`).
pub struct LaggingCache {
    pub store: Arc<MemStore>,
    pub cached: Arc<MemStore>,
    pub registry: crate::registry::Registry,
    cache: crate::watch_cache::WatchCache,
}

impl LaggingCache {
    pub async fn new() -> LaggingCache {
        let store = Arc::new(MemStore::new());
        let cached = Arc::new(MemStore::new());
        let cache = crate::watch_cache::WatchCache::start(cached.clone(), Default::default());
        let registry = crate::registry::Registry::new(store.clone()).with_cache(cache.clone());
        LaggingCache {
            store,
            cached,
            registry,
            cache,
        }
    }

    /// Writes `obj` to `store` and, with `cache_too`, the same bytes to `cached` (then waits
    /// until the cache holds them). Both stores must be at the same revision for the copies
    /// to carry the same `resourceVersion`.
    pub async fn put(&self, obj: &swarm_api::AnyObject, cache_too: bool) {
        let key = obj.kind().key(obj.name());
        let value = crate::codec::encode(obj);
        let mut stores = vec![self.store.clone()];
        if cache_too {
            stores.push(self.cached.clone());
        }
        let mut revision = 0;
        for s in stores {
            let r = match s.get(&key).await.unwrap() {
                Some(kv) => s.update(&key, value.clone(), Some(kv.mod_revision)).await,
                None => s.create(&key, value.clone()).await,
            };
            revision = r.unwrap().mod_revision;
        }
        if cache_too {
            let kind = self.cache.kind(obj.kind());
            let want = revision.to_string();
            tokio::time::timeout(std::time::Duration::from_secs(10), async {
                while kind
                    .get_cached(obj.name())
                    .is_none_or(|c| c.obj.meta().resource_version != want)
                {
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
            })
            .await
            .expect("the cache sees the write");
        }
    }
}

impl Drop for LaggingCache {
    fn drop(&mut self) {
        self.cache.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[tokio::test]
    async fn history_reads_and_watch_from_revision() {
        let s = MemStore::new();
        s.create("/a/1", Bytes::from("x")).await.unwrap();
        s.update("/a/1", Bytes::from("y"), Some(1)).await.unwrap();
        assert!(matches!(
            s.update("/a/1", Bytes::from("z"), Some(1)).await,
            Err(StoreError::Conflict { .. })
        ));
        let old = s
            .list(
                "/a/",
                ListOptions {
                    revision: 1,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(old.items[0].value, Bytes::from("x"));
        let mut w = s.watch("/a/", 1).await.unwrap();
        assert_eq!(w.next().await.unwrap().unwrap().revision, 2);
        s.compact(2).await.unwrap();
        assert!(s.watch("/a/", 1).await.is_err());
    }
}
