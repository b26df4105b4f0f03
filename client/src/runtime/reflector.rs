//! `reflector`: a read-only, in-memory cache of one kind, kept current by a watcher.
//!
//! The cache is split in two, as in kube-runtime: one `Writer` applies the watcher's events,
//! any number of `Store` clones read. Objects are held as `Arc<K>`, so a read hands out a
//! cheap pointer to an immutable snapshot of the object, never a lock.
//!
//! A (re)list is applied atomically: between `Init` and `InitDone` new objects are collected
//! aside and then replace the whole map in one step, so readers never see a half-listed cache,
//! and objects deleted while the watch was down disappear. `Store::wait_until_ready` resolves
//! after the first complete list: a controller that reconciled against an empty cache before
//! that would think nothing exists.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use futures::{Stream, StreamExt};
use swarm_api::Resource;
use tokio::sync::watch;

use super::watcher::Event;

type Map<K> = HashMap<String, Arc<K>>;

/// A shared, read-only view of the cache.
#[derive(Debug)]
pub struct Store<K> {
    map: Arc<RwLock<Map<K>>>,
    ready: watch::Receiver<bool>,
}

impl<K> Clone for Store<K> {
    fn clone(&self) -> Self {
        Store {
            map: self.map.clone(),
            ready: self.ready.clone(),
        }
    }
}

/// The only writer of a `Store`.
#[derive(Debug)]
pub struct Writer<K> {
    map: Arc<RwLock<Map<K>>>,
    ready: watch::Sender<bool>,
    /// The objects of a relist in progress.
    buffer: Option<Map<K>>,
}

impl<K: Resource> Default for Writer<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Resource> Writer<K> {
    pub fn new() -> Self {
        let (ready, _) = watch::channel(false);
        Writer {
            map: Arc::new(RwLock::new(HashMap::new())),
            ready,
            buffer: None,
        }
    }

    /// A reader of this writer's cache.
    pub fn store(&self) -> Store<K> {
        Store {
            map: self.map.clone(),
            ready: self.ready.subscribe(),
        }
    }

    /// Applies one watcher event.
    pub fn apply(&mut self, event: &Event<K>) {
        match event {
            Event::Apply(o) => {
                write(&self.map).insert(o.name().to_string(), Arc::new(o.clone()));
            }
            Event::Delete(o) => {
                write(&self.map).remove(o.name());
            }
            Event::Init => self.buffer = Some(HashMap::new()),
            Event::InitApply(o) => {
                self.buffer
                    .get_or_insert_with(HashMap::new)
                    .insert(o.name().to_string(), Arc::new(o.clone()));
            }
            Event::InitDone => {
                let fresh = self.buffer.take().unwrap_or_default();
                *write(&self.map) = fresh;
                self.ready.send_replace(true);
            }
        }
    }
}

impl<K: Resource> Store<K> {
    /// The object named `name`, as last seen.
    pub fn get(&self, name: &str) -> Option<Arc<K>> {
        read(&self.map).get(name).cloned()
    }

    /// Every object (in no particular order).
    pub fn state(&self) -> Vec<Arc<K>> {
        read(&self.map).values().cloned().collect()
    }

    /// Every object for which `pred` holds.
    pub fn filter(&self, pred: impl Fn(&K) -> bool) -> Vec<Arc<K>> {
        read(&self.map)
            .values()
            .filter(|o| pred(o))
            .cloned()
            .collect()
    }

    /// The names of every object.
    pub fn keys(&self) -> Vec<String> {
        read(&self.map).keys().cloned().collect()
    }

    pub fn len(&self) -> usize {
        read(&self.map).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the first complete list has been applied.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Resolves once the first complete list has been applied (at once if it has been).
    /// Returns `false` if the writer went away before that.
    pub async fn wait_until_ready(&self) -> bool {
        let mut rx = self.ready.clone();
        rx.wait_for(|r| *r).await.is_ok()
    }
}

fn read<K>(m: &RwLock<Map<K>>) -> RwLockReadGuard<'_, Map<K>> {
    // A panic while holding the lock cannot leave a HashMap half-updated in a way that
    // matters here (each write is one insert, remove or swap), so a poisoned lock is used.
    m.read().unwrap_or_else(|e| e.into_inner())
}

fn write<K>(m: &RwLock<Map<K>>) -> RwLockWriteGuard<'_, Map<K>> {
    m.write().unwrap_or_else(|e| e.into_inner())
}

/// Feeds every successful event of `stream` into `writer` and passes all items on.
pub fn reflector<K, E, S>(
    mut writer: Writer<K>,
    stream: S,
) -> impl Stream<Item = Result<Event<K>, E>> + Send
where
    K: Resource,
    S: Stream<Item = Result<Event<K>, E>> + Send,
{
    stream.map(move |item| {
        if let Ok(ev) = &item {
            writer.apply(ev);
        }
        item
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_api::{Network, NetworkSpec};

    fn net(name: &str) -> Network {
        Network::new(name, NetworkSpec::default())
    }

    #[tokio::test]
    async fn relist_swaps_atomically_and_forgets_deleted() {
        let mut w = Writer::<Network>::new();
        let s = w.store();
        assert!(!s.is_ready());
        w.apply(&Event::Init);
        w.apply(&Event::InitApply(net("a")));
        w.apply(&Event::InitApply(net("b")));
        // Not visible before the list is complete.
        assert!(s.is_empty());
        w.apply(&Event::InitDone);
        assert!(s.wait_until_ready().await);
        assert_eq!(s.len(), 2);
        w.apply(&Event::Apply(net("c")));
        w.apply(&Event::Delete(net("a")));
        let mut keys = s.keys();
        keys.sort();
        assert_eq!(keys, vec!["b", "c"]);
        // A relist that no longer contains b or c replaces everything, only at InitDone.
        w.apply(&Event::Init);
        w.apply(&Event::InitApply(net("d")));
        assert_eq!(s.len(), 2);
        w.apply(&Event::InitDone);
        assert_eq!(s.keys(), vec!["d"]);
        assert!(s.get("b").is_none());
        assert_eq!(s.filter(|n| n.metadata.name == "d").len(), 1);
    }

    #[tokio::test]
    async fn wait_until_ready_fails_when_the_writer_is_gone() {
        let w = Writer::<Network>::new();
        let s = w.store();
        drop(w);
        assert!(!s.wait_until_ready().await);
    }
}
