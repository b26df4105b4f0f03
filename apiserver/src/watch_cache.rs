//! The watch cache: one store watch per kind, fanned out to every client watch from memory.
//!
//! Without it, each `GET ?watch=true` would open its own store watch, and a thousand agents
//! watching tasks would be a thousand etcd watches. Like kube-apiserver's cacher, each kind
//! gets one `KindCache` that:
//!
//! * lists the kind once, then watches the store from that revision, keeping
//!   - `objects`: the current objects (served as the initial `ADDED` events of a watch without
//!     a `resourceVersion`),
//!   - `window`: a ring buffer of the most recent events, so a client resuming from a recent
//!     `resourceVersion` is served from memory;
//! * pushes each event to every registered watcher's **bounded** channel with `try_send`.
//!   A watcher whose backlog is full is cut off — it gets an `ERROR` event telling it to
//!   resume — and the cache moves on: one slow client never slows the others or the cache.
//!   The backlog allowed scales with the kind (see `Backlog`): a controller watching 100,000
//!   tasks may fall 100,000 events behind during a rollout, since cutting it off would make
//!   it re-list that many objects anyway; bytes stay bounded whatever the objects' size;
//! * on losing its store watch, re-watches from the last revision it saw; if that revision was
//!   compacted meanwhile, it re-lists and ends every client watch with `410 Expired` (clients
//!   re-list), as kube does.
//!
//! Events are encoded to JSON once, here, and shared (`Arc`) by every watcher.
//!
//! # Reads from the cache
//! The cache also answers GETs and lists (`WatchCache::get`, `WatchCache::list`), with
//! Kubernetes' semantics for consistent reads from cache: a read that must see the latest
//! writes (no `resourceVersion`) asks the store for its current revision (an atomic load for
//! the embedded store, a quorum read for etcd) and waits until the cache is *fresh* up to it —
//! the store watch reported progress up to that revision (`Store::watch_with_progress`), so
//! every write at or below it, to this kind or any other, has been applied — then answers
//! from memory. If the cache is behind, the read asks for a report (`Store::request_progress`:
//! etcd's progress request, as KEP-2340; the embedded store reports after every commit
//! anyway). A cache that does not catch up within `FRESH_WAIT`, or whose store watch has not
//! reported progress yet (or cannot), sends the read to the store. So a client that wrote then reads sees its write (read-your-writes),
//! whichever apiserver it asks. `resourceVersion=0` ("any") is answered from memory at once.
//! A list is taken only from an exact state (no transaction half applied: see `Inner::fresh`).
//! Tasks are also indexed by `spec.nodeName` for the authorization of node reads.
//!
//! Ordering and the lock: the cache applies an event to its state and pushes it to the
//! watchers' channels under one mutex, and registration (snapshot + subscribe) takes the same
//! mutex, so a new watcher sees each event exactly once — either in its snapshot/replay or in
//! its channel. Bookmarks use the same lock to learn "everything up to revision R has been
//! handed to this channel".

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use swarm_api::{AnyObject, Kind, Status, StatusReason};
use tokio::sync::{Notify, mpsc, watch};

use crate::codec::{decode_kv, decode_stored};
use crate::errors::ApiResult;
use crate::registry::ListQuery;
use crate::store::{
    Event, EventType, ListOptions, ProgressWatchStream, Revision, Store, StoreError, WatchItem,
};

/// How long a consistent read waits for the cache to catch up before it reads the store.
pub const FRESH_WAIT: Duration = Duration::from_millis(500);

/// An object as the cache holds it: decoded (for selectors) and encoded (for the wire).
#[derive(Debug)]
pub struct CachedObject {
    pub obj: AnyObject,
    /// The whole object (the dispatcher hands secrets to the nodes that need them).
    pub json: Bytes,
    /// What REST watchers see: secrets without their data (`handlers::redact`); for every
    /// other kind the same bytes as `json`.
    pub public_json: Bytes,
}

impl CachedObject {
    pub fn new(obj: AnyObject) -> Arc<CachedObject> {
        let json = Bytes::from(serde_json::to_vec(&obj).unwrap_or_default());
        let public_json = match &obj {
            AnyObject::Secret(_) => Bytes::from(
                serde_json::to_vec(&crate::handlers::redact::redact(obj.clone(), false))
                    .unwrap_or_default(),
            ),
            _ => json.clone(),
        };
        Arc::new(CachedObject {
            obj,
            json,
            public_json,
        })
    }
}

/// The wire types of watch events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchEventType {
    Added,
    Modified,
    Deleted,
    Bookmark,
    Error,
}

impl WatchEventType {
    pub fn as_str(self) -> &'static str {
        match self {
            WatchEventType::Added => "ADDED",
            WatchEventType::Modified => "MODIFIED",
            WatchEventType::Deleted => "DELETED",
            WatchEventType::Bookmark => "BOOKMARK",
            WatchEventType::Error => "ERROR",
        }
    }
}

/// One change of one object, as the cache saw it.
#[derive(Debug)]
pub struct CachedEvent {
    pub revision: Revision,
    pub kind: EventType,
    /// The object after the change (for a delete: its last state, at the delete's revision).
    pub object: Arc<CachedObject>,
    /// The object before the change, if it existed.
    pub prev: Option<Arc<CachedObject>>,
}

impl CachedEvent {
    /// What this event is for a watcher with filter `q`, or `None` if it should not see it.
    ///
    /// With a selector, an object that starts matching is `ADDED` and one that stops matching
    /// is `DELETED` (with its new state), as kube-apiserver does, so a client's view of "the
    /// objects matching my selector" stays exact.
    pub fn for_filter(&self, q: &ListQuery) -> Option<WatchEventType> {
        let now = self.kind == EventType::Put && q.matches(&self.object.obj);
        let before = self.prev.as_ref().is_some_and(|p| q.matches(&p.obj));
        match (before, now) {
            (false, true) => Some(WatchEventType::Added),
            (true, true) => Some(WatchEventType::Modified),
            (true, false) => Some(WatchEventType::Deleted),
            (false, false) if self.kind == EventType::Delete && self.prev.is_none() => {
                // A delete without a known previous state: judge by the deleted object.
                q.matches(&self.object.obj)
                    .then_some(WatchEventType::Deleted)
            }
            (false, false) => None,
        }
    }
}

/// One NDJSON line: `{"type":"ADDED","object":{…}}\n`.
pub fn event_line(t: WatchEventType, object_json: &[u8]) -> Bytes {
    let mut line = Vec::with_capacity(object_json.len() + 32);
    line.extend_from_slice(b"{\"type\":\"");
    line.extend_from_slice(t.as_str().as_bytes());
    line.extend_from_slice(b"\",\"object\":");
    line.extend_from_slice(object_json);
    line.extend_from_slice(b"}\n");
    Bytes::from(line)
}

/// A `BOOKMARK` line: only kind, apiVersion and the revision.
pub fn bookmark_line(kind: Kind, revision: Revision) -> Bytes {
    let obj = serde_json::json!({
        "kind": kind.name(),
        "apiVersion": swarm_api::API_VERSION,
        "metadata": {"resourceVersion": revision.to_string()},
    });
    event_line(WatchEventType::Bookmark, obj.to_string().as_bytes())
}

/// An `ERROR` line carrying a Status.
pub fn error_line(status: &Status) -> Bytes {
    event_line(
        WatchEventType::Error,
        &serde_json::to_vec(status).unwrap_or_default(),
    )
}

/// Tuning of the caches.
#[derive(Clone, Debug)]
pub struct CacheOptions {
    /// Events kept per kind for resuming watches from memory.
    pub window: usize,
    /// Events a watcher may always fall behind before it is cut off as too slow; a kind
    /// with more objects allows as many events as it has objects (see `Backlog`).
    pub watcher_buffer: usize,
    /// Pause before re-watching after a store watch failed.
    pub retry_delay: Duration,
}

impl Default for CacheOptions {
    fn default() -> Self {
        CacheOptions {
            window: 10_000,
            watcher_buffer: 1_000,
            retry_delay: Duration::from_millis(500),
        }
    }
}

/// Why the cache closed a watcher's channel on purpose (slow watcher, re-list), set at most
/// once. The client watch awaits it alongside handing lines to the HTTP body, so a watcher
/// stuck behind a client that stopped reading ends as soon as the cache cuts it off instead
/// of holding its backlog until the client reads again.
#[derive(Debug, Default)]
pub struct CloseReason {
    status: OnceLock<Status>,
    notify: Notify,
}

impl CloseReason {
    /// Records why the watcher was closed (the first reason wins) and wakes whoever waits.
    fn close(&self, status: Status) {
        if self.status.set(status).is_ok() {
            self.notify.notify_waiters();
        }
    }

    /// The reason, if the cache closed the watcher.
    pub fn get(&self) -> Option<&Status> {
        self.status.get()
    }

    /// Waits until the cache closes the watcher; forever if it never does.
    pub async fn wait(&self) -> &Status {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            // Register before checking, so a `close` between the check and the await is seen.
            notified.as_mut().enable();
            if let Some(s) = self.status.get() {
                return s;
            }
            notified.await;
        }
    }
}

struct WatcherSlot {
    tx: mpsc::Sender<Arc<CachedEvent>>,
    after: Revision,
    filter: Arc<ListQuery>,
    closed: Arc<CloseReason>,
    /// Bytes of the events in `tx` not yet received.
    queued_bytes: Arc<AtomicUsize>,
}

/// How far behind a watcher may fall before it is cut off: `watcher_buffer` events, or as
/// many as the kind has objects if that is more (a cut-off watcher re-lists, or resumes
/// from the store, which costs about that much: keeping it costs no more), and never more
/// than `watcher_buffer × BYTES_PER_EVENT` bytes of events (large objects, a huge kind).
/// Queued events are shared (`Arc`) with the window and the other watchers, so the memory a
/// backlog holds is at most the events since the slowest watcher's position.
struct Backlog {
    events: usize,
    bytes: usize,
}

/// The average event size the byte budget allows per `watcher_buffer` event.
const BYTES_PER_EVENT: usize = 256 * 1024;

/// The capacity of a watcher's channel: a ceiling only, since `Backlog` cuts watchers off
/// first (a tokio channel allocates as it fills, not up front).
const CHANNEL_CEILING: usize = 1 << 22;

impl Backlog {
    fn of(opts: &CacheOptions, objects: usize) -> Backlog {
        let min = opts.watcher_buffer.max(1);
        Backlog {
            events: min.max(objects).min(CHANNEL_CEILING),
            bytes: min.saturating_mul(BYTES_PER_EVENT),
        }
    }

    /// Why a watcher with `queued` events of `queued_bytes` bytes cannot take one more of
    /// `size` bytes, if it cannot. A watcher that has caught up takes any one event.
    fn refuses(&self, queued: usize, queued_bytes: usize, size: usize) -> Option<String> {
        if queued >= self.events {
            Some(format!("{queued} events"))
        } else if queued > 0 && queued_bytes.saturating_add(size) > self.bytes {
            Some(format!("{queued_bytes} bytes of events"))
        } else {
            None
        }
    }
}

#[derive(Default)]
struct Inner {
    ready: bool,
    /// Every event up to this revision has been applied and handed to the watchers (it may
    /// also be the revision of an event whose transaction siblings are still on their way).
    revision: Revision,
    /// The store watch reported progress up to here: the state holds every write up to this
    /// revision. When `revision <= fresh` the state is exactly the store's at `fresh`;
    /// otherwise part of a newer transaction may be applied.
    fresh: Revision,
    /// The store watch reports progress, so `fresh` follows the store (consistent reads).
    consistent: bool,
    /// Tasks only: task names by `spec.nodeName`.
    by_node: HashMap<String, BTreeSet<String>>,
    /// Every event with revision > `window_start` that the cache has seen is in `window`.
    window_start: Revision,
    objects: BTreeMap<String, Arc<CachedObject>>,
    window: VecDeque<Arc<CachedEvent>>,
    watchers: HashMap<u64, WatcherSlot>,
}

/// The cache of one kind.
pub struct KindCache {
    kind: Kind,
    opts: CacheOptions,
    inner: Mutex<Inner>,
    next_id: AtomicU64,
    ready_tx: watch::Sender<bool>,
    /// `Inner::fresh`, for readers waiting until the cache has caught up.
    fresh_tx: watch::Sender<Revision>,
}

/// The node a task is assigned to (the key of the `by_node` index).
fn node_of(obj: &AnyObject) -> Option<&str> {
    match obj {
        AnyObject::Task(t) => t.spec.node_name.as_deref().filter(|n| !n.is_empty()),
        _ => None,
    }
}

impl Inner {
    /// Records that `name` now holds `new` (None: deleted) in the node index.
    fn index(&mut self, name: &str, old: Option<&AnyObject>, new: Option<&AnyObject>) {
        let (from, to) = (old.and_then(node_of), new.and_then(node_of));
        if from == to {
            return;
        }
        if let Some(node) = from
            && let Some(names) = self.by_node.get_mut(node)
        {
            names.remove(name);
            if names.is_empty() {
                self.by_node.remove(node);
            }
        }
        if let Some(node) = to {
            self.by_node
                .entry(node.to_string())
                .or_default()
                .insert(name.to_string());
        }
    }
}

/// A registered client watch: initial events (snapshot or replay) then a live channel.
pub struct Subscription {
    pub initial: Vec<(WatchEventType, Arc<CachedObject>)>,
    rx: mpsc::Receiver<Arc<CachedEvent>>,
    queued_bytes: Arc<AtomicUsize>,
    /// Set when the cache closed the channel on purpose (slow watcher, re-list).
    pub closed: Arc<CloseReason>,
    /// The revision the initial events bring the watcher up to.
    pub revision: Revision,
    pub filter: Arc<ListQuery>,
    id: u64,
    cache: Arc<KindCache>,
}

impl Subscription {
    /// The next live event; `None` once the cache closed the channel (see `closed`).
    pub async fn recv(&mut self) -> Option<Arc<CachedEvent>> {
        let ev = self.rx.recv().await?;
        self.received(&ev);
        Some(ev)
    }

    fn received(&self, ev: &CachedEvent) {
        self.queued_bytes
            .fetch_sub(ev.object.json.len(), Ordering::Relaxed);
    }

    /// A revision up to which this watcher has received every event, for a `BOOKMARK`: the
    /// cache's revision, which follows the store's progress reports, so it passes the writes
    /// to other kinds too (a client watching several kinds learns that each has passed `R`).
    /// `None` while events are queued for the watcher, or while the cache is in the middle
    /// of a transaction (some of its events applied, not yet all: a client resuming from that
    /// revision would miss the rest). Checked under the cache lock, so it cannot race with a
    /// push. Never below the revision the watch started from. A watcher that was cut off
    /// gets none: the events after the cut never reached its channel, so an empty channel
    /// does not mean it has them (a bookmark would move the client's resume point past them,
    /// and they would be lost for good).
    pub fn bookmark_revision(&self) -> Option<Revision> {
        let inner = self.cache.lock();
        let whole = !inner.consistent || inner.revision <= inner.fresh;
        let live = self.closed.get().is_none();
        (whole && live && self.rx.is_empty()).then_some(inner.revision.max(self.revision))
    }

    pub fn kind(&self) -> Kind {
        self.cache.kind
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.cache.lock().watchers.remove(&self.id);
    }
}

/// Where a watch must be served from.
pub enum Start {
    /// From the cache.
    Cached(Subscription),
    /// The revision is older than the cache's window: serve it from the store.
    TooOld,
}

impl KindCache {
    fn new(kind: Kind, opts: CacheOptions) -> Arc<KindCache> {
        let (ready_tx, _) = watch::channel(false);
        let (fresh_tx, _) = watch::channel(0);
        Arc::new(KindCache {
            kind,
            opts,
            inner: Mutex::new(Inner::default()),
            next_id: AtomicU64::new(1),
            ready_tx,
            fresh_tx,
        })
    }

    /// Waits (at most `FRESH_WAIT`) until the cache holds every write up to `revision`
    /// (`None`: the store's current revision, read now). `false`: it cannot tell (the store
    /// reports no progress) or did not catch up in time; the caller reads the store.
    pub async fn wait_fresh(&self, store: &dyn Store, revision: Option<Revision>) -> bool {
        let wait = async {
            self.wait_ready().await;
            if !self.lock().consistent {
                return false;
            }
            let target = match revision {
                Some(r) => r,
                None => match store.current_revision().await {
                    Ok(r) => r,
                    Err(_) => return false,
                },
            };
            let mut rx = self.fresh_tx.subscribe();
            if *rx.borrow_and_update() < target {
                // etcd reports progress when asked (KEP-2340's progress requests).
                store.request_progress(&self.kind.key_prefix()).await;
            }
            rx.wait_for(|f| *f >= target).await.is_ok()
        };
        tokio::time::timeout(FRESH_WAIT, wait)
            .await
            .unwrap_or(false)
    }

    /// The cached object named `name`, as the cache holds it now (no freshness check).
    pub fn get_cached(&self, name: &str) -> Option<Arc<CachedObject>> {
        self.lock().objects.get(name).cloned()
    }

    /// The objects matching `q` and the revision they are exactly the state of, if the cache
    /// holds an exact state right now (no transaction half applied).
    fn list_exact(&self, q: &ListQuery) -> Option<(Revision, Vec<Arc<CachedObject>>)> {
        let inner = self.lock();
        if !inner.ready || inner.revision > inner.fresh {
            return None;
        }
        let items = inner
            .objects
            .values()
            .filter(|o| q.matches(&o.obj))
            .cloned()
            .collect();
        Some((inner.fresh, items))
    }

    /// The tasks assigned to `node`, as the cache holds them now (tasks only).
    pub fn tasks_on_cached(&self, node: &str) -> Vec<Arc<CachedObject>> {
        let inner = self.lock();
        inner
            .by_node
            .get(node)
            .into_iter()
            .flatten()
            .filter_map(|name| inner.objects.get(name).cloned())
            .collect()
    }

    /// The progress revision (for tests and metrics).
    pub fn fresh_revision(&self) -> Revision {
        self.lock().fresh
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The number of client watches currently fed by this cache.
    pub fn watcher_count(&self) -> usize {
        self.lock().watchers.len()
    }

    /// Waits until the first list has been loaded.
    pub async fn wait_ready(&self) {
        let mut rx = self.ready_tx.subscribe();
        // The sender lives as long as the cache, so this only ends when ready.
        let _ = rx.wait_for(|r| *r).await;
    }

    /// Registers a watcher. `after`: `None` — snapshot of current objects as ADDED, then live
    /// events; `Some(n)` — every event after `n` (from the window), then live events.
    pub async fn subscribe(self: &Arc<Self>, after: Option<Revision>, filter: ListQuery) -> Start {
        self.wait_ready().await;
        let filter = Arc::new(filter);
        let (tx, rx) = mpsc::channel(CHANNEL_CEILING);
        let closed = Arc::new(CloseReason::default());
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let mut inner = self.lock();
        let (initial, start) = match after {
            None => {
                let initial = inner
                    .objects
                    .values()
                    .filter(|o| filter.matches(&o.obj))
                    .map(|o| (WatchEventType::Added, o.clone()))
                    .collect();
                (initial, inner.revision)
            }
            Some(n) if n < inner.window_start => return Start::TooOld,
            Some(n) => {
                let initial = inner
                    .window
                    .iter()
                    .filter(|e| e.revision > n)
                    .filter_map(|e| e.for_filter(&filter).map(|t| (t, e.object.clone())))
                    .collect();
                (initial, n.max(inner.revision))
            }
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        inner.watchers.insert(
            id,
            WatcherSlot {
                tx,
                after: start,
                filter: filter.clone(),
                closed: closed.clone(),
                queued_bytes: queued_bytes.clone(),
            },
        );
        drop(inner);
        Start::Cached(Subscription {
            initial,
            rx,
            queued_bytes,
            closed,
            revision: start,
            filter,
            id,
            cache: self.clone(),
        })
    }

    /// Replaces the state with a fresh list; every current watcher is ended with `reason`.
    fn reset(
        &self,
        revision: Revision,
        objects: BTreeMap<String, Arc<CachedObject>>,
        reason: Option<Status>,
    ) {
        let mut inner = self.lock();
        inner.revision = revision;
        inner.window_start = revision;
        inner.window.clear();
        inner.by_node.clear();
        for (name, o) in &objects {
            if let Some(node) = node_of(&o.obj) {
                inner
                    .by_node
                    .entry(node.to_string())
                    .or_default()
                    .insert(name.clone());
            }
        }
        inner.objects = objects;
        // A list is the exact state at its revision.
        inner.fresh = revision;
        inner.ready = true;
        if let Some(reason) = reason {
            for (_, slot) in inner.watchers.drain() {
                slot.closed.close(reason.clone());
            }
        }
        drop(inner);
        self.fresh_tx.send_replace(revision);
        self.ready_tx.send_replace(true);
    }

    /// The store watch has yielded every event up to `revision`.
    fn progress(&self, revision: Revision) {
        let mut inner = self.lock();
        if revision <= inner.fresh {
            return;
        }
        inner.fresh = revision;
        inner.revision = inner.revision.max(revision);
        drop(inner);
        self.fresh_tx.send_replace(revision);
    }

    /// Applies one store event and pushes it to the watchers.
    fn apply(&self, ev: Event) {
        let prefix = self.kind.key_prefix();
        let Some(name) = ev.key.strip_prefix(&prefix) else {
            return;
        };
        let object = match decode_stored(self.kind, &ev.value, ev.revision) {
            Ok(o) => CachedObject::new(o),
            Err(e) => {
                tracing::error!(key = %ev.key, error = %e, "watch cache: undecodable event skipped");
                return;
            }
        };
        let mut inner = self.lock();
        let prev = match ev.kind {
            EventType::Put => inner.objects.insert(name.to_string(), object.clone()),
            EventType::Delete => inner.objects.remove(name),
        };
        if self.kind == Kind::Task {
            let now = (ev.kind == EventType::Put).then_some(&object.obj);
            inner.index(name, prev.as_ref().map(|p| &p.obj), now);
        }
        inner.revision = inner.revision.max(ev.revision);
        let event = Arc::new(CachedEvent {
            revision: ev.revision,
            kind: ev.kind,
            object,
            prev,
        });
        inner.window.push_back(event.clone());
        while inner.window.len() > self.opts.window {
            if let Some(old) = inner.window.pop_front() {
                inner.window_start = old.revision;
            }
        }
        let backlog = Backlog::of(&self.opts, inner.objects.len());
        let size = event.object.json.len();
        inner.watchers.retain(|_, slot| {
            if event.revision <= slot.after || event.for_filter(&slot.filter).is_none() {
                return true;
            }
            let queued = slot.tx.max_capacity() - slot.tx.capacity();
            let queued_bytes = slot.queued_bytes.load(Ordering::Relaxed);
            let behind = backlog.refuses(queued, queued_bytes, size);
            // Counted before the send, so the receiver never subtracts what was not added.
            slot.queued_bytes.fetch_add(size, Ordering::Relaxed);
            let sent = behind.is_none() && slot.tx.try_send(event.clone()).is_ok();
            if !sent {
                slot.queued_bytes.fetch_sub(size, Ordering::Relaxed);
                if !slot.tx.is_closed() {
                    let behind = behind.unwrap_or_else(|| format!("{queued} events"));
                    slot.closed.close(Status::new(
                        StatusReason::Timeout,
                        format!(
                            "watch cut off: the client fell {behind} behind; \
                             resume from the last resourceVersion received"
                        ),
                    ));
                }
            }
            sent
        });
    }

    /// Keeps the cache in sync with the store, forever.
    async fn run(self: Arc<Self>, store: Arc<dyn Store>) {
        let prefix = self.kind.key_prefix();
        let mut first = true;
        loop {
            // (Re)list.
            let list = match store.list(&prefix, ListOptions::default()).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(kind = %self.kind, error = %e, "watch cache: list failed; retrying");
                    tokio::time::sleep(self.opts.retry_delay).await;
                    continue;
                }
            };
            let mut objects = BTreeMap::new();
            for kv in &list.items {
                let Some(name) = kv.key.strip_prefix(&prefix) else {
                    continue;
                };
                match decode_stored(self.kind, &kv.value, kv.mod_revision) {
                    Ok(o) => {
                        objects.insert(name.to_string(), CachedObject::new(o));
                    }
                    Err(e) => {
                        tracing::error!(key = %kv.key, error = %e, "watch cache: undecodable object skipped")
                    }
                }
            }
            let reason = (!first).then(|| {
                Status::new(
                    StatusReason::Expired,
                    "the watch cache had to re-list (history compacted); re-list and watch again",
                )
            });
            first = false;
            self.reset(list.revision, objects, reason);
            // Watch, re-watching from the last revision seen after transient failures.
            loop {
                let from = self.lock().revision;
                // Consistent reads wait for progress reports only once this watch has sent
                // one (an etcd watch that is catching up may hold them back for a while).
                self.lock().consistent = false;
                let mut stream = match watch_items(store.as_ref(), &prefix, from).await {
                    Ok(s) => s,
                    Err(StoreError::Compacted { .. }) => break,
                    Err(e) => {
                        tracing::warn!(kind = %self.kind, error = %e, "watch cache: watch failed; retrying");
                        tokio::time::sleep(self.opts.retry_delay).await;
                        continue;
                    }
                };
                let compacted = loop {
                    match stream.next().await {
                        Some(Ok(WatchItem::Event(ev))) => self.apply(ev),
                        Some(Ok(WatchItem::Progress(r))) => {
                            self.lock().consistent = true;
                            self.progress(r)
                        }
                        Some(Err(StoreError::Compacted { .. })) => break true,
                        Some(Err(e)) => {
                            tracing::warn!(kind = %self.kind, error = %e, "watch cache: watch broke; re-watching");
                            tokio::time::sleep(self.opts.retry_delay).await;
                            break false;
                        }
                        None => break false,
                    }
                };
                if compacted {
                    break;
                }
            }
        }
    }
}

/// A store watch with progress reports if the store gives them, else a plain one seen as
/// items.
async fn watch_items(
    store: &dyn Store,
    prefix: &str,
    after: Revision,
) -> Result<ProgressWatchStream, StoreError> {
    if let Some(s) = store.watch_with_progress(prefix, after).await? {
        return Ok(s);
    }
    let events = store.watch(prefix, after).await?;
    Ok(Box::pin(events.map(|e| e.map(WatchItem::Event))))
}

/// How fresh a read must be (`resourceVersion` of a GET or list, as in Kubernetes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freshness {
    /// No `resourceVersion`: every write committed before the read (a consistent read).
    Latest,
    /// `resourceVersion=0`: whatever the cache holds.
    Any,
    /// `resourceVersion=N`: no older than `N`.
    AtLeast(Revision),
}

impl Freshness {
    /// From a request's `resourceVersion` parameter.
    pub fn parse(rv: Option<&str>) -> ApiResult<Freshness> {
        Ok(match crate::codec::parse_revision(rv.unwrap_or(""))? {
            None => Freshness::Latest,
            Some(0) => Freshness::Any,
            Some(n) => Freshness::AtLeast(n),
        })
    }
}

/// A list answered from the cache: the exact state at `revision`.
pub struct CachedList {
    pub revision: Revision,
    pub items: Vec<Arc<CachedObject>>,
}

/// The caches of every kind.
#[derive(Clone)]
pub struct WatchCache {
    caches: Arc<HashMap<Kind, Arc<KindCache>>>,
    tasks: Arc<Vec<tokio::task::AbortHandle>>,
    store: Arc<dyn Store>,
}

impl WatchCache {
    /// Starts one cache task per kind; they run until `stop` or the runtime's end.
    pub fn start(store: Arc<dyn Store>, opts: CacheOptions) -> WatchCache {
        let mut caches = HashMap::new();
        let mut tasks = Vec::new();
        for kind in Kind::ALL {
            let cache = KindCache::new(kind, opts.clone());
            tasks.push(tokio::spawn(cache.clone().run(store.clone())).abort_handle());
            caches.insert(kind, cache);
        }
        WatchCache {
            caches: Arc::new(caches),
            tasks: Arc::new(tasks),
            store,
        }
    }

    /// Waits until `cache` is as fresh as `f` asks; `false`: read the store instead.
    async fn fresh(&self, cache: &KindCache, f: Freshness) -> bool {
        match f {
            Freshness::Any => {
                // Any state will do, once there is one.
                tokio::time::timeout(FRESH_WAIT, cache.wait_ready())
                    .await
                    .is_ok()
            }
            Freshness::Latest => cache.wait_fresh(self.store.as_ref(), None).await,
            Freshness::AtLeast(n) => cache.wait_fresh(self.store.as_ref(), Some(n)).await,
        }
    }

    /// One object, as fresh as `f` asks: from memory when the cache is (or catches up in
    /// time), else from the store.
    pub async fn get(
        &self,
        kind: Kind,
        name: &str,
        f: Freshness,
    ) -> ApiResult<Option<Arc<CachedObject>>> {
        let cache = self.kind(kind);
        if self.fresh(&cache, f).await {
            return Ok(cache.get_cached(name));
        }
        match self.store.get(&kind.key(name)).await? {
            Some(kv) => Ok(Some(CachedObject::new(decode_kv(kind, &kv)?))),
            None => Ok(None),
        }
    }

    /// The objects of `kind` matching `q`'s selectors, as fresh as `f` asks, if the cache can
    /// answer: `None` means "list from the store" (pagination, a store without progress
    /// reports, a cache that did not catch up or kept changing mid-transaction).
    pub async fn list(&self, kind: Kind, q: &ListQuery, f: Freshness) -> Option<CachedList> {
        if q.limit > 0 || q.continue_token.is_some() {
            return None;
        }
        let cache = self.kind(kind);
        if f == Freshness::Any {
            // A state that is exact at some revision, without waiting for the store.
            self.fresh(&cache, f).await.then_some(())?;
        } else if !self.fresh(&cache, f).await {
            return None;
        }
        // Exact state: wait out a transaction being applied, a few times at most.
        for _ in 0..3 {
            if let Some((revision, items)) = cache.list_exact(q) {
                return Some(CachedList { revision, items });
            }
            let target = cache.lock().revision;
            if !cache.wait_fresh(self.store.as_ref(), Some(target)).await {
                return None;
            }
        }
        None
    }

    /// The tasks assigned to `node` (`spec.nodeName`), from the node index, as of every write
    /// committed before the call; from the store if the cache cannot be brought up to date.
    pub async fn tasks_on(&self, node: &str) -> ApiResult<Vec<Arc<CachedObject>>> {
        let cache = self.kind(Kind::Task);
        if self.fresh(&cache, Freshness::Latest).await {
            return Ok(cache.tasks_on_cached(node));
        }
        let list = self
            .store
            .list(&Kind::Task.key_prefix(), ListOptions::default())
            .await?;
        let mut tasks = Vec::new();
        for kv in &list.items {
            let obj = decode_kv(Kind::Task, kv)?;
            if node_of(&obj) == Some(node) {
                tasks.push(CachedObject::new(obj));
            }
        }
        Ok(tasks)
    }

    /// Stops the cache tasks (their store watches end with them).
    pub fn stop(&self) {
        for t in self.tasks.iter() {
            t.abort();
        }
    }

    pub fn kind(&self, kind: Kind) -> Arc<KindCache> {
        // Every kind gets a cache in `start`.
        self.caches[&kind].clone()
    }

    /// Open watches per kind (for the metrics gauge).
    pub fn watcher_counts(&self) -> Vec<(Kind, usize)> {
        Kind::ALL
            .into_iter()
            .map(|k| (k, self.caches[&k].watcher_count()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{decode_request, encode};
    use crate::testing::MemStore;
    use serde_json::json;

    fn net(name: &str, label: &str) -> bytes::Bytes {
        let obj = decode_request(
            Kind::Network,
            json!({"metadata": {"name": name, "labels": {"l": label}}}),
            name,
        )
        .unwrap();
        encode(&obj)
    }

    async fn setup(opts: CacheOptions) -> (Arc<MemStore>, WatchCache) {
        let store = Arc::new(MemStore::new());
        let cache = WatchCache::start(store.clone(), opts);
        cache.kind(Kind::Network).wait_ready().await;
        (store, cache)
    }

    fn sub(s: Start) -> Subscription {
        match s {
            Start::Cached(s) => s,
            Start::TooOld => panic!("expected a cached subscription"),
        }
    }

    #[tokio::test]
    async fn a_slow_watcher_is_cut_off_and_others_get_everything() {
        let (store, cache) = setup(CacheOptions {
            watcher_buffer: 4,
            ..Default::default()
        })
        .await;
        let c = cache.kind(Kind::Network);
        let mut fast = sub(c.subscribe(Some(0), ListQuery::default()).await);
        let mut slow = sub(c.subscribe(Some(0), ListQuery::default()).await);
        // The fast watcher reads each event as it comes; the slow one reads nothing. One
        // object changing: the backlog allowed is `watcher_buffer` events.
        let key = Kind::Network.key("n");
        let mut revs = Vec::new();
        store.create(&key, net("n", "v0")).await.unwrap();
        revs.push(fast.recv().await.unwrap().revision);
        for i in 1..20 {
            let value = net("n", &format!("v{i}"));
            store.update(&key, value, None).await.unwrap();
            revs.push(fast.recv().await.unwrap().revision);
        }
        assert_eq!(revs, (1..=20).collect::<Vec<_>>());
        // The slow watcher gets what fitted in its backlog, then the channel ends with a reason.
        let mut got = 0;
        while slow.recv().await.is_some() {
            got += 1;
        }
        assert_eq!(got, 4);
        // Drained, but it never got events 5..=20: no bookmark may claim it did.
        assert_eq!(slow.bookmark_revision(), None);
        assert_eq!(fast.bookmark_revision(), Some(20));
        assert_eq!(
            slow.closed.get().map(|s| s.reason),
            Some(StatusReason::Timeout)
        );
        // Waiting for the cut-off after it happened returns at once, with the same reason.
        assert_eq!(slow.closed.wait().await.reason, StatusReason::Timeout);
    }

    /// A watcher of a kind with many objects may fall as many events behind as there are
    /// objects (a re-list would cost as much), but no further.
    #[tokio::test]
    async fn a_watcher_may_fall_as_far_behind_as_its_kind_has_objects() {
        let (store, cache) = setup(CacheOptions {
            watcher_buffer: 4,
            ..Default::default()
        })
        .await;
        let c = cache.kind(Kind::Network);
        let mut slow = sub(c.subscribe(Some(0), ListQuery::default()).await);
        for i in 0..20 {
            let name = format!("n{i}");
            store
                .create(&Kind::Network.key(&name), net(&name, "a"))
                .await
                .unwrap();
        }
        // One more event than there are objects.
        let key = Kind::Network.key("n0");
        store.update(&key, net("n0", "b"), None).await.unwrap();
        let mut revs = Vec::new();
        while let Some(ev) = slow.recv().await {
            revs.push(ev.revision);
        }
        assert_eq!(revs, (1..=20).collect::<Vec<_>>());
        assert_eq!(
            slow.closed.get().map(|s| s.reason),
            Some(StatusReason::Timeout)
        );
    }

    /// Whatever the count, a watcher's backlog is bounded in bytes: `watcher_buffer` events
    /// of `BYTES_PER_EVENT` on average.
    #[tokio::test]
    async fn a_watcher_is_cut_off_past_its_byte_budget() {
        let (store, cache) = setup(CacheOptions {
            watcher_buffer: 2,
            ..Default::default()
        })
        .await;
        let c = cache.kind(Kind::Network);
        let mut slow = sub(c.subscribe(Some(0), ListQuery::default()).await);
        let mut fast = sub(c.subscribe(Some(0), ListQuery::default()).await);
        // Each event about 100 KiB: the 512 KiB budget holds five, the sixth cuts it off,
        // although the kind's 10 objects would allow 10 events.
        let big = "x".repeat(100 * 1024);
        for i in 0..10 {
            let name = format!("n{i}");
            store
                .create(&Kind::Network.key(&name), net(&name, &big))
                .await
                .unwrap();
            fast.recv().await.unwrap();
        }
        let mut got = 0;
        while slow.recv().await.is_some() {
            got += 1;
        }
        assert_eq!(got, 5);
        let reason = slow.closed.get().map(|s| s.message.clone()).unwrap();
        assert!(reason.contains("bytes of events behind"), "{reason}");
        // The fast watcher, which kept up, is still there.
        assert_eq!(c.watcher_count(), 1);
    }

    #[tokio::test]
    async fn resume_from_window_or_too_old() {
        let (store, cache) = setup(CacheOptions {
            window: 3,
            ..Default::default()
        })
        .await;
        for i in 0..6 {
            store
                .create(
                    &Kind::Network.key(&format!("n{i}")),
                    net(&format!("n{i}"), "a"),
                )
                .await
                .unwrap();
        }
        let c = cache.kind(Kind::Network);
        // Wait until the cache has seen all six.
        loop {
            if c.lock().revision == 6 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let s = sub(c.subscribe(Some(4), ListQuery::default()).await);
        let revs: Vec<_> = s
            .initial
            .iter()
            .map(|(_, o)| o.obj.meta().resource_version.clone())
            .collect();
        assert_eq!(revs, ["5", "6"]);
        assert!(matches!(
            c.subscribe(Some(1), ListQuery::default()).await,
            Start::TooOld
        ));
        let snap = sub(c.subscribe(None, ListQuery::default()).await);
        assert_eq!(snap.initial.len(), 6);
        assert_eq!(snap.revision, 6);
    }

    #[tokio::test]
    async fn selector_transitions_become_added_and_deleted() {
        let (store, cache) = setup(CacheOptions::default()).await;
        let c = cache.kind(Kind::Network);
        let q = ListQuery {
            labels: swarm_api::selector::LabelSelector::parse("l=a").unwrap(),
            ..Default::default()
        };
        let mut s = sub(c.subscribe(Some(0), q).await);
        let key = Kind::Network.key("n");
        store.create(&key, net("n", "b")).await.unwrap(); // not matching: unseen
        store.update(&key, net("n", "a"), None).await.unwrap(); // starts matching: ADDED
        store.update(&key, net("n", "b"), None).await.unwrap(); // stops matching: DELETED
        let e1 = s.recv().await.unwrap();
        assert_eq!(e1.for_filter(&s.filter), Some(WatchEventType::Added));
        let e2 = s.recv().await.unwrap();
        assert_eq!(e2.for_filter(&s.filter), Some(WatchEventType::Deleted));
        assert_eq!(e2.revision, 3);
    }
}
