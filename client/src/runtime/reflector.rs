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
//!
//! A store may keep one secondary index (`Writer::with_index`), e.g. tasks by service name, so
//! a reconcile reads "the tasks of web" without scanning every task in the cluster.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use futures::{Stream, StreamExt};
use swarm_api::Resource;
use tokio::sync::watch;

use super::watcher::Event;

type Map<K> = HashMap<String, Arc<K>>;

/// Computes an object's index key (`None`: not indexed).
pub type IndexFn<K> = fn(&K) -> Option<String>;

/// The objects, and the optional index over them.
#[derive(Debug)]
struct Cache<K> {
    objects: Map<K>,
    index: Option<Index<K>>,
}

#[derive(Debug)]
struct Index<K> {
    key_of: IndexFn<K>,
    names: HashMap<String, BTreeSet<String>>,
}

impl<K> Index<K> {
    fn add(&mut self, name: &str, obj: &K) {
        if let Some(k) = (self.key_of)(obj) {
            self.names.entry(k).or_default().insert(name.to_string());
        }
    }

    fn remove(&mut self, name: &str, obj: &K) {
        if let Some(k) = (self.key_of)(obj)
            && let Some(set) = self.names.get_mut(&k)
        {
            set.remove(name);
            if set.is_empty() {
                self.names.remove(&k);
            }
        }
    }
}

impl<K> Cache<K> {
    fn insert(&mut self, name: String, obj: Arc<K>) {
        if let Some(ix) = &mut self.index {
            if let Some(old) = self.objects.get(&name) {
                ix.remove(&name, old);
            }
            ix.add(&name, &obj);
        }
        self.objects.insert(name, obj);
    }

    fn remove(&mut self, name: &str) {
        if let Some(old) = self.objects.remove(name)
            && let Some(ix) = &mut self.index
        {
            ix.remove(name, &old);
        }
    }

    fn replace_all(&mut self, fresh: Map<K>) {
        if let Some(ix) = &mut self.index {
            ix.names.clear();
            for (name, obj) in &fresh {
                ix.add(name, obj);
            }
        }
        self.objects = fresh;
    }
}

/// A shared, read-only view of the cache.
#[derive(Debug)]
pub struct Store<K> {
    map: Arc<RwLock<Cache<K>>>,
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
    map: Arc<RwLock<Cache<K>>>,
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
        Self::build(None)
    }

    /// A writer whose store also indexes objects by `key_of` (see `Store::indexed`).
    pub fn with_index(key_of: IndexFn<K>) -> Self {
        Self::build(Some(Index {
            key_of,
            names: HashMap::new(),
        }))
    }

    fn build(index: Option<Index<K>>) -> Self {
        let (ready, _) = watch::channel(false);
        Writer {
            map: Arc::new(RwLock::new(Cache {
                objects: HashMap::new(),
                index,
            })),
            ready,
            buffer: None,
        }
    }

    /// Indexes the cache by `key_of` from now on, unless it has an index already (a cache
    /// keeps one; see `SharedCaches` for who sets it).
    pub fn add_index(&mut self, key_of: IndexFn<K>) {
        let mut cache = write(&self.map);
        if cache.index.is_some() {
            return;
        }
        let mut ix = Index {
            key_of,
            names: HashMap::new(),
        };
        for (name, obj) in &cache.objects {
            ix.add(name, obj);
        }
        cache.index = Some(ix);
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
                write(&self.map).replace_all(fresh);
                self.ready.send_replace(true);
            }
        }
    }
}

impl<K: Resource> Store<K> {
    /// The object named `name`, as last seen.
    pub fn get(&self, name: &str) -> Option<Arc<K>> {
        read(&self.map).objects.get(name).cloned()
    }

    /// Every object (in no particular order).
    pub fn state(&self) -> Vec<Arc<K>> {
        read(&self.map).objects.values().cloned().collect()
    }

    /// Every object for which `pred` holds.
    pub fn filter(&self, pred: impl Fn(&K) -> bool) -> Vec<Arc<K>> {
        read(&self.map)
            .objects
            .values()
            .filter(|o| pred(o))
            .cloned()
            .collect()
    }

    /// The objects whose index key is `key`, in name order. A store without an index
    /// (`Writer::new`) has none.
    pub fn indexed(&self, key: &str) -> Vec<Arc<K>> {
        let cache = read(&self.map);
        let Some(ix) = &cache.index else {
            return Vec::new();
        };
        ix.names
            .get(key)
            .into_iter()
            .flatten()
            .filter_map(|n| cache.objects.get(n).cloned())
            .collect()
    }

    /// The names of every object.
    pub fn keys(&self) -> Vec<String> {
        read(&self.map).objects.keys().cloned().collect()
    }

    pub fn len(&self) -> usize {
        read(&self.map).objects.len()
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

fn read<K>(m: &RwLock<Cache<K>>) -> RwLockReadGuard<'_, Cache<K>> {
    // A panic while holding the lock cannot leave a HashMap half-updated in a way that
    // matters here (each write is one insert, remove or swap), so a poisoned lock is used.
    m.read().unwrap_or_else(|e| e.into_inner())
}

fn write<K>(m: &RwLock<Cache<K>>) -> RwLockWriteGuard<'_, Cache<K>> {
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

    fn labelled(name: &str, app: &str) -> Network {
        let mut n = net(name);
        n.metadata.labels.insert("app".into(), app.into());
        n
    }

    #[test]
    fn the_index_follows_changes_deletes_and_relists() {
        let mut w = Writer::<Network>::with_index(|n| n.metadata.labels.get("app").cloned());
        let s = w.store();
        let names = |app: &str| -> Vec<String> {
            s.indexed(app)
                .iter()
                .map(|n| n.metadata.name.clone())
                .collect()
        };
        w.apply(&Event::Init);
        w.apply(&Event::InitApply(labelled("a", "web")));
        w.apply(&Event::InitApply(labelled("b", "web")));
        w.apply(&Event::InitApply(net("plain")));
        w.apply(&Event::InitDone);
        assert_eq!(names("web"), vec!["a", "b"]);
        // Moving an object to another key removes it from the old one.
        w.apply(&Event::Apply(labelled("b", "db")));
        assert_eq!(
            (names("web"), names("db")),
            (vec!["a".to_string()], vec!["b".to_string()])
        );
        w.apply(&Event::Delete(labelled("a", "web")));
        assert!(names("web").is_empty());
        w.apply(&Event::Init);
        w.apply(&Event::InitApply(labelled("c", "web")));
        w.apply(&Event::InitDone);
        assert_eq!((names("web"), names("db")), (vec!["c".to_string()], vec![]));
        // A store without an index has nothing indexed.
        assert!(Writer::<Network>::new().store().indexed("web").is_empty());
    }

    #[tokio::test]
    async fn wait_until_ready_fails_when_the_writer_is_gone() {
        let w = Writer::<Network>::new();
        let s = w.store();
        drop(w);
        assert!(!s.wait_until_ready().await);
    }
}
