//! `shared`: one watch and one cache per kind for all the controllers of a process.
//!
//! Six controllers that each watch tasks make the apiserver send every task event six times,
//! and the process decode it six times and keep six copies of every task: at 100,000 tasks
//! that, not the reconciles, is where the cores go. `SharedCaches` keeps one watcher and one
//! reflector per kind (an `Informer`); each controller subscribes to it with a callback that
//! maps events to its keys.
//!
//! A subscriber never misses an object, though it may see one twice (callbacks only enqueue
//! keys, which the queue dedupes):
//! * one that arrives after a complete list (a controller that starts leading later) is first
//!   shown every cached object as `InitApply`, then `InitDone`, as if it had listed itself;
//! * one that arrives during a list gets that replay when the list completes, before the
//!   list's own `InitDone`;
//! * an event applied to the cache but not yet handed out when it arrives is in its replay
//!   and is handed to it again.
//!
//! A shared cache watches the whole kind (no selectors). It keeps at most one index, set by
//! the first subscriber that asks for one (swarm indexes only tasks, by service).

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use futures::{Stream, StreamExt};
use swarm_api::Resource;
use tokio_util::sync::CancellationToken;

use super::reflector::{IndexFn, Store, Writer};
use super::watcher::{self, Event, WatchError, watcher};
use crate::Client;

/// What a subscriber is handed for each event.
type Callback<K> = Arc<dyn Fn(&Event<K>) + Send + Sync>;

/// The watches and caches one process shares, by kind. Cloning shares them.
#[derive(Clone)]
pub struct SharedCaches {
    client: Client,
    informers: Arc<Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>>,
    /// Ends every informer's watch.
    stop: CancellationToken,
}

impl fmt::Debug for SharedCaches {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedCaches")
            .field("kinds", &lock(&self.informers).len())
            .finish()
    }
}

impl SharedCaches {
    /// Caches that watch through `client` until `stop` is cancelled. A kind's watch starts
    /// when its informer is first asked for.
    pub fn new(client: Client, stop: CancellationToken) -> Self {
        SharedCaches {
            client,
            informers: Arc::default(),
            stop,
        }
    }

    /// The informer of `K`, started on first use; with `index` set on its cache if it has none.
    pub fn informer<K: Resource>(&self, index: Option<IndexFn<K>>) -> Arc<Informer<K>> {
        let mut map = lock(&self.informers);
        if let Some(existing) = map.get(&TypeId::of::<K>())
            && let Ok(informer) = existing.clone().downcast::<Informer<K>>()
        {
            if let Some(f) = index {
                lock(&informer.writer).add_index(f);
            }
            return informer;
        }
        let informer = Informer::new(index);
        let events = watcher::<K>(self.client.clone(), watcher::Config::default());
        let (stop, driven) = (self.stop.clone(), informer.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = driven.feed_from(events) => {}
            }
        });
        map.insert(TypeId::of::<K>(), informer.clone());
        informer
    }
}

/// One kind's watch, cache and subscribers.
pub struct Informer<K> {
    store: Store<K>,
    writer: Mutex<Writer<K>>,
    subscribers: Arc<Mutex<Subscribers<K>>>,
}

struct Subscribers<K> {
    next_id: u64,
    live: Vec<(u64, Callback<K>)>,
    /// Whether a (re)list is in progress (between `Init` and `InitDone`).
    listing: bool,
    /// Subscribers that arrived during a list: shown the whole cache at its `InitDone`.
    late: Vec<u64>,
}

impl<K: Resource> Informer<K> {
    /// An informer with nothing fed to it yet; `feed_from` feeds it.
    fn new(index: Option<IndexFn<K>>) -> Arc<Self> {
        let writer = match index {
            Some(f) => Writer::<K>::with_index(f),
            None => Writer::<K>::new(),
        };
        Arc::new(Informer {
            store: writer.store(),
            writer: Mutex::new(writer),
            subscribers: Arc::new(Mutex::new(Subscribers {
                next_id: 0,
                live: Vec::new(),
                listing: false,
                late: Vec::new(),
            })),
        })
    }

    /// The shared cache.
    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// Hands `callback` every event from now on (and the cache so far, see the module
    /// documentation) until the returned `Subscription` is dropped.
    pub fn subscribe(&self, callback: impl Fn(&Event<K>) + Send + Sync + 'static) -> Subscription {
        let callback: Callback<K> = Arc::new(callback);
        let mut subs = lock(&self.subscribers);
        let id = subs.next_id;
        subs.next_id += 1;
        if subs.listing {
            subs.late.push(id);
        } else if self.store.is_ready() {
            replay(&self.store, &callback);
            callback(&Event::InitDone);
        }
        subs.live.push((id, callback));
        let weak: Weak<Mutex<Subscribers<K>>> = Arc::downgrade(&self.subscribers);
        Subscription {
            cancel: Some(Box::new(move || {
                if let Some(subs) = weak.upgrade() {
                    let mut subs = lock(&subs);
                    subs.live.retain(|(i, _)| *i != id);
                    subs.late.retain(|i| *i != id);
                }
            })),
        }
    }

    /// Feeds the cache and the subscribers from one watcher's events, until they end.
    async fn feed_from(self: Arc<Self>, events: impl Stream<Item = Result<Event<K>, WatchError>>) {
        futures::pin_mut!(events);
        while let Some(item) = events.next().await {
            // The watcher logs its errors and carries on; only events are handed out.
            let Ok(event) = item else { continue };
            lock(&self.writer).apply(&event);
            let mut subs = lock(&self.subscribers);
            match &event {
                Event::Init => subs.listing = true,
                Event::InitDone => {
                    subs.listing = false;
                    let late = std::mem::take(&mut subs.late);
                    for (id, callback) in &subs.live {
                        if late.contains(id) {
                            replay(&self.store, callback);
                        }
                    }
                }
                _ => {}
            }
            for (_, callback) in &subs.live {
                callback(&event);
            }
        }
    }
}

/// Shows `callback` every cached object as `InitApply`.
fn replay<K: Resource>(store: &Store<K>, callback: &Callback<K>) {
    for obj in store.state() {
        callback(&Event::InitApply((*obj).clone()));
    }
}

/// Keeps a subscriber subscribed; dropping it unsubscribes.
pub struct Subscription {
    cancel: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Subscription")
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(cancel) = self.cancel.take() {
            cancel();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Each critical section is a push, a retain or a loop of callbacks that only enqueue
    // keys: a panic in one leaves nothing half-done that matters.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_api::{Network, NetworkSpec};

    fn net(name: &str) -> Event<Network> {
        Event::InitApply(Network::new(name, NetworkSpec::default()))
    }

    type Log = Arc<Mutex<Vec<String>>>;

    fn recorder(log: &Log) -> impl Fn(&Event<Network>) + Send + Sync + 'static {
        let log = log.clone();
        move |e| {
            lock(&log).push(match e {
                Event::Apply(o) | Event::Delete(o) | Event::InitApply(o) => o.metadata.name.clone(),
                Event::Init => "<init>".into(),
                Event::InitDone => "<done>".into(),
            })
        }
    }

    async fn until(log: &Log, what: &str) {
        tokio::time::timeout(std::time::Duration::from_secs(10), async {
            while !lock(log).iter().any(|n| n == what) {
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{what} never came: {:?}", lock(log)));
    }

    #[tokio::test]
    async fn a_subscriber_arriving_during_a_list_is_shown_all_of_it_before_its_end() {
        let informer = Informer::<Network>::new(None);
        let (tx, rx) = futures::channel::mpsc::unbounded();
        tokio::spawn(informer.clone().feed_from(rx));
        let early: Log = Arc::default();
        let _early = informer.subscribe(recorder(&early));
        for ev in [Event::Init, net("a")] {
            tx.unbounded_send(Ok(ev)).unwrap();
        }
        until(&early, "a").await;
        // Mid-list: "a" has gone by, and the cache shows nothing before the list's end.
        let late: Log = Arc::default();
        let _late = informer.subscribe(recorder(&late));
        assert!(lock(&late).is_empty());
        for ev in [net("b"), Event::InitDone] {
            tx.unbounded_send(Ok(ev)).unwrap();
        }
        until(&early, "<done>").await;
        let seen = lock(&late).clone();
        assert_eq!(seen.last().map(String::as_str), Some("<done>"));
        for name in ["a", "b"] {
            assert!(
                seen.contains(&name.to_string()),
                "{name} missing from {seen:?}"
            );
        }
        assert_eq!(informer.store().len(), 2);
    }
}
