//! `controller`: watch → cache → queue → reconcile, the loop every swarm controller runs.
//!
//! ```text
//!  watcher(K) ──► reflector(Store<K>) ──► key = name ─────────────┐
//!  watcher(C) ──► reflector(Store<C>) ──► mapper(&C) → [keys] ────┤
//!                                                                 ▼
//!                                     WorkQueue (dedupe, delay, one worker per key)
//!                                                                 ▼
//!                            reconcile(key, ctx) -> Result<Action, E>  (N workers)
//! ```
//!
//! A `Controller<K>` watches its primary kind `K` (each change enqueues the object's name)
//! and any number of secondary kinds, each with a mapper from a secondary object to the
//! primary keys it affects (a Task → its Service). `reconcile` gets only the key: it reads
//! the current state from the stores, never the event that woke it, so it must be idempotent
//! and level-triggered — it also runs for keys whose object was deleted (the store then has no
//! object), which is how clean-up happens.
//!
//! The caches are the controller's own (`with_config`: a watcher per kind, as configured), or
//! the process's shared ones (`sharing`: one watcher per kind for all its controllers, see
//! `shared`); the controller cannot tell the difference.
//!
//! Reconciling waits until every store has completed its first list. After a secondary
//! kind is relisted every primary key is enqueued, because objects deleted while the watch
//! was down produce no event. An error retries the key with per-key exponential backoff,
//! except a lost write race (`ReconcileError::is_conflict`: a 409 on a `resourceVersion`
//! precondition), which is routine among controllers that share objects: it is logged at
//! debug and the key runs again promptly, on fresher state. `Action::requeue` asks for a
//! later run, e.g. when a restart delay is still running. A key that keeps changing rests
//! between its reconciles (`ControllerConfig::cooldown`, see `queue`).

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use swarm_api::Resource;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::backoff::BackoffConfig;
use super::metrics::Metrics;
use super::queue::{Cooldown, Outcome, WorkQueue};
use super::reflector::{IndexFn, Store, Writer, reflector};
use super::shared::{SharedCaches, Subscription};
use super::watcher::{self, Event, watcher};
use crate::{Client, ClientError};

/// What the runtime asks of a reconcile's error type.
pub trait ReconcileError: std::error::Error + Send + Sized + 'static {
    /// Whether the reconcile only lost a write race (409 Conflict: the object changed since it
    /// was read). The default looks for a conflicting `ClientError` in the `source()` chain.
    fn is_conflict(&self) -> bool {
        conflict_in_chain(self)
    }
}

impl ReconcileError for ClientError {}

/// Whether `err` or any error in its `source()` chain is a `ClientError` conflict.
pub fn conflict_in_chain(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(e) = next {
        if e.downcast_ref::<ClientError>()
            .is_some_and(ClientError::is_conflict)
        {
            return true;
        }
        next = e.source();
    }
    false
}

/// What a reconcile asks for next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Action {
    requeue_after: Option<Duration>,
}

impl Action {
    /// Run again after `d` even if nothing changes (timers: restart delays, heartbeats).
    pub fn requeue(d: Duration) -> Self {
        Action {
            requeue_after: Some(d),
        }
    }

    /// Run again only when a watched object changes.
    pub fn await_change() -> Self {
        Action {
            requeue_after: None,
        }
    }

    pub fn requeue_after(&self) -> Option<Duration> {
        self.requeue_after
    }

    /// The earlier of two requests (`await_change` is "never").
    pub fn min(self, other: Action) -> Action {
        match (self.requeue_after, other.requeue_after) {
            (Some(a), Some(b)) => Action::requeue(a.min(b)),
            (a, b) => Action {
                requeue_after: a.or(b),
            },
        }
    }
}

/// How the controller runs its workers.
#[derive(Clone, Debug)]
pub struct ControllerConfig {
    /// Reconciles running at once (never two for one key).
    pub concurrency: usize,
    /// Per-key backoff after reconcile errors.
    pub backoff: BackoffConfig,
    /// Enqueue every primary key this often (a safety net; `None` = never).
    pub resync: Option<Duration>,
    /// How long a key rests after each reconcile, relative to how long it took.
    pub cooldown: Cooldown,
}

impl ControllerConfig {
    /// A key rests 3 × its last reconcile's time, at most 1 s: a key that never stops
    /// changing takes at most a quarter of a worker, and waits at most 1 s for its next run.
    pub const COOLDOWN: Cooldown = Cooldown {
        factor: 3,
        max: Duration::from_secs(1),
    };
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            concurrency: 4,
            backoff: BackoffConfig::RECONCILE,
            resync: Some(Duration::from_secs(300)),
            cooldown: Self::COOLDOWN,
        }
    }
}

/// What happened to a watched secondary object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Applied,
    Deleted,
}

/// Adds keys to a controller's queue from outside (tests, periodic triggers).
#[derive(Clone, Debug)]
pub struct Trigger {
    queue: WorkQueue<String>,
}

impl Trigger {
    pub fn enqueue(&self, key: impl Into<String>) {
        self.queue.add(key.into());
    }

    pub fn enqueue_after(&self, key: impl Into<String>, delay: Duration) {
        self.queue.add_after(key.into(), delay);
    }
}

/// A controller of primary kind `K`; see the module documentation.
pub struct Controller<K: Resource> {
    name: String,
    client: Client,
    queue: WorkQueue<String>,
    store: Store<K>,
    feeds: Feeds,
    /// Which changes of a primary object enqueue its key (every change when unset).
    primary_filter: Arc<OnceLock<PrimaryFilter<K>>>,
    metrics: Metrics,
    config: ControllerConfig,
}

type PrimaryFilter<K> = Box<dyn Fn(&K, Change) -> bool + Send + Sync>;

/// Where a controller's caches come from, and what keeps them fed.
struct Feeds {
    client: Client,
    /// The process's shared caches, or `None`: the controller watches on its own.
    caches: Option<SharedCaches>,
    metrics: Metrics,
    /// Resolve once each store has its first list.
    ready: Vec<BoxFuture<'static, bool>>,
    /// The loops that feed own stores and the queue, started by `run`.
    drivers: Vec<BoxFuture<'static, ()>>,
    /// Subscriptions to shared caches, held as long as the controller.
    subscriptions: Vec<Subscription>,
}

impl Feeds {
    /// A cache of `C` whose every event is also handed to `on_event`: the shared one, or one
    /// of its own with a watcher driven by `run`.
    fn feed<C: Resource>(
        &mut self,
        watch: watcher::Config,
        index: Option<IndexFn<C>>,
        on_event: impl Fn(&Event<C>) + Send + Sync + 'static,
    ) -> Store<C> {
        let store = match &self.caches {
            Some(caches) => {
                let informer = caches.informer::<C>(index);
                let metrics = self.metrics.clone();
                self.subscriptions.push(informer.subscribe(move |ev| {
                    metrics.watch_event();
                    on_event(ev);
                }));
                informer.store()
            }
            None => {
                let writer = match index {
                    Some(f) => Writer::<C>::with_index(f),
                    None => Writer::<C>::new(),
                };
                let store = writer.store();
                let stream = reflector(writer, watcher::<C>(self.client.clone(), watch));
                self.drivers
                    .push(drive(stream, self.metrics.clone(), on_event).boxed());
                store
            }
        };
        self.ready.push(ready_future(&store));
        store
    }
}

impl<K: Resource> Controller<K> {
    /// A controller named `name` (for logs and metrics) watching `K` as `watch` says.
    pub fn new(name: impl Into<String>, client: Client, watch: watcher::Config) -> Self {
        Self::with_config(name, client, watch, ControllerConfig::default())
    }

    /// A controller with watches and caches of its own.
    pub fn with_config(
        name: impl Into<String>,
        client: Client,
        watch: watcher::Config,
        config: ControllerConfig,
    ) -> Self {
        Self::build(name.into(), client, None, watch, config)
    }

    /// A controller whose caches — of `K` and of every kind it watches — are the process's
    /// shared ones (`SharedCaches`: whole kinds, one watch each for all its controllers). The
    /// `watcher::Config` given to `watches*` is then not used: a shared cache has no selectors.
    pub fn sharing(
        name: impl Into<String>,
        client: Client,
        caches: &SharedCaches,
        config: ControllerConfig,
    ) -> Self {
        Self::build(
            name.into(),
            client,
            Some(caches.clone()),
            watcher::Config::default(),
            config,
        )
    }

    fn build(
        name: String,
        client: Client,
        caches: Option<SharedCaches>,
        watch: watcher::Config,
        config: ControllerConfig,
    ) -> Self {
        let queue = WorkQueue::with_cooldown(config.backoff, config.cooldown);
        let metrics = super::metrics::registry().register(&name);
        let mut feeds = Feeds {
            client: client.clone(),
            caches,
            metrics: metrics.clone(),
            ready: Vec::new(),
            drivers: Vec::new(),
            subscriptions: Vec::new(),
        };
        let primary_filter: Arc<OnceLock<PrimaryFilter<K>>> = Arc::default();
        let (q, filter) = (queue.clone(), primary_filter.clone());
        let store = feeds.feed(watch, None, move |ev: &Event<K>| {
            let (o, change) = match ev {
                Event::Apply(o) | Event::InitApply(o) => (o, Change::Applied),
                Event::Delete(o) => (o, Change::Deleted),
                Event::Init | Event::InitDone => return,
            };
            if filter.get().is_none_or(|f| f(o, change)) {
                q.add(o.name().to_string());
            }
        });
        Controller {
            name,
            client,
            queue,
            store,
            feeds,
            primary_filter,
            metrics,
            config,
        }
    }

    /// Enqueues a change of a primary object only when `matters` says it can give the
    /// controller work (e.g. ipam: a task to allocate or to release, not one on its way to
    /// RUNNING). Set before `run`; a second call is ignored.
    pub fn filter_primary(&mut self, matters: impl Fn(&K, Change) -> bool + Send + Sync + 'static) {
        let _ = self.primary_filter.set(Box::new(matters));
    }

    /// The cache of the primary kind.
    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    pub fn metrics(&self) -> Metrics {
        self.metrics.clone()
    }

    pub fn trigger(&self) -> Trigger {
        Trigger {
            queue: self.queue.clone(),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Also watches `C`; each change of a `C` enqueues the keys `mapper` returns. Returns the
    /// cache of `C` for the reconciler to read.
    pub fn watches<C: Resource>(
        &mut self,
        watch: watcher::Config,
        mapper: impl Fn(&C) -> Vec<String> + Send + Sync + 'static,
    ) -> Store<C> {
        self.watches_changes(watch, move |c: &C, _| mapper(c))
    }

    /// Like `watches`, but the mapper also learns whether the object was deleted (a mapper
    /// that compares an object with what it saw before needs to know).
    pub fn watches_changes<C: Resource>(
        &mut self,
        watch: watcher::Config,
        mapper: impl Fn(&C, Change) -> Vec<String> + Send + Sync + 'static,
    ) -> Store<C> {
        self.watches_indexed(watch, None, mapper)
    }

    /// Like `watches_changes`, with the returned cache indexed by `index` (`Store::indexed`).
    pub fn watches_indexed<C: Resource>(
        &mut self,
        watch: watcher::Config,
        index: Option<IndexFn<C>>,
        mapper: impl Fn(&C, Change) -> Vec<String> + Send + Sync + 'static,
    ) -> Store<C> {
        let queue = self.queue.clone();
        let primaries = self.store.clone();
        self.feeds.feed(watch, index, move |ev| {
            let keys = match ev {
                Event::Apply(o) | Event::InitApply(o) => mapper(o, Change::Applied),
                Event::Delete(o) => mapper(o, Change::Deleted),
                Event::Init => Vec::new(),
                // Deletions missed while the watch was down leave no event: look at all.
                Event::InitDone => primaries.keys(),
            };
            for key in keys {
                queue.add(key);
            }
        })
    }

    /// Also watches `C`, mapping each object to the `K` named in its owner references.
    pub fn owns<C: Resource>(&mut self, watch: watcher::Config) -> Store<C> {
        self.watches(watch, |c: &C| {
            c.meta()
                .owner_references
                .iter()
                .filter(|o| o.kind == K::KIND.name())
                .map(|o| o.name.clone())
                .collect()
        })
    }

    /// Also watches `C` only to read it from a cache; its changes trigger nothing.
    pub fn caches<C: Resource>(&mut self, watch: watcher::Config) -> Store<C> {
        self.watches(watch, |_: &C| Vec::new())
    }

    /// Runs until `shutdown` is cancelled: feeds the caches, waits for their first lists,
    /// then reconciles keys with `concurrency` workers. A reconcile in progress at shutdown
    /// is allowed to finish.
    pub async fn run<Ctx, E, F, Fut>(self, reconcile: F, ctx: Arc<Ctx>, shutdown: CancellationToken)
    where
        Ctx: Send + Sync + 'static,
        E: ReconcileError,
        F: Fn(String, Arc<Ctx>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Action, E>> + Send + 'static,
    {
        let Controller {
            name,
            queue,
            store,
            feeds,
            metrics,
            config,
            ..
        } = self;
        let Feeds {
            ready,
            drivers,
            subscriptions: _subscriptions,
            ..
        } = feeds;
        // Dropping the JoinSet aborts the drivers.
        let mut feeding = JoinSet::new();
        for d in drivers {
            feeding.spawn(d);
        }
        let all_ready = futures::future::join_all(ready);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = all_ready => {}
        }
        tracing::info!(controller = %name, "caches ready, reconciling");
        if let Some(every) = config.resync {
            let (queue, store, stop) = (queue.clone(), store.clone(), shutdown.clone());
            feeding.spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.tick().await;
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tick.tick() => store.keys().into_iter().for_each(|k| queue.add(k)),
                    }
                }
            });
        }
        let reconcile = Arc::new(reconcile);
        let mut workers = JoinSet::new();
        for _ in 0..config.concurrency.max(1) {
            let (queue, metrics, ctx, reconcile, name, stop) = (
                queue.clone(),
                metrics.clone(),
                ctx.clone(),
                reconcile.clone(),
                name.clone(),
                shutdown.clone(),
            );
            workers.spawn(async move {
                loop {
                    let key = tokio::select! {
                        _ = stop.cancelled() => return,
                        k = queue.next() => match k { Some(k) => k, None => return },
                    };
                    metrics.set_queue_depth(queue.len());
                    let started = Instant::now();
                    let fut = std::panic::AssertUnwindSafe(reconcile(key.clone(), ctx.clone()));
                    let result = fut.catch_unwind().await;
                    let outcome = outcome_of(result, &name, &key);
                    match outcome {
                        Outcome::Retry => metrics.reconciled(started.elapsed(), false),
                        Outcome::Conflict => metrics.conflicted(started.elapsed()),
                        Outcome::Requeue(_) => {
                            metrics.reconciled(started.elapsed(), true);
                            metrics.requeued();
                        }
                        Outcome::Forget => metrics.reconciled(started.elapsed(), true),
                    }
                    queue.done(&key, outcome);
                    metrics.set_queue_depth(queue.len());
                }
            });
        }
        shutdown.cancelled().await;
        queue.shut_down();
        while workers.join_next().await.is_some() {}
        feeding.abort_all();
        tracing::info!(controller = %name, "stopped");
    }
}

/// What the queue does with a key after its reconcile returned `result` (logging failures).
fn outcome_of<E: ReconcileError>(
    result: std::thread::Result<Result<Action, E>>,
    controller: &str,
    key: &str,
) -> Outcome {
    match result {
        Ok(Ok(action)) => match action.requeue_after() {
            Some(d) => Outcome::Requeue(d),
            None => Outcome::Forget,
        },
        Ok(Err(e)) if e.is_conflict() => {
            tracing::debug!(controller, key, error = %e, "reconcile lost a write race, retrying");
            Outcome::Conflict
        }
        Ok(Err(e)) => {
            tracing::warn!(controller, key, error = %e, "reconcile failed");
            Outcome::Retry
        }
        Err(_) => {
            tracing::error!(controller, key, "reconcile panicked");
            Outcome::Retry
        }
    }
}

fn ready_future<C: Resource>(store: &Store<C>) -> BoxFuture<'static, bool> {
    let s = store.clone();
    async move { s.wait_until_ready().await }.boxed()
}

/// Consumes a reflected watcher stream, counting events and errors, calling `on_event`.
async fn drive<C, S>(stream: S, metrics: Metrics, on_event: impl Fn(&Event<C>) + Send)
where
    C: Resource,
    S: futures::Stream<Item = Result<Event<C>, watcher::WatchError>> + Send,
{
    futures::pin_mut!(stream);
    while let Some(item) = stream.next().await {
        match item {
            Ok(ev) => {
                metrics.watch_event();
                on_event(&ev);
            }
            Err(_) => metrics.watch_error(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_api::Status;

    /// A controller's error, wrapping the client's as controllers do.
    #[derive(Debug, thiserror::Error)]
    enum WriteError {
        #[error("writing task {task}: {source}")]
        Task {
            task: String,
            #[source]
            source: ClientError,
        },
        #[error("cannot encode")]
        Encode,
    }

    impl ReconcileError for WriteError {}

    fn task_error(source: ClientError) -> WriteError {
        WriteError::Task {
            task: "web.1.1".into(),
            source,
        }
    }

    #[test]
    fn a_lost_write_race_is_a_conflict_wherever_it_sits_in_the_chain() {
        let conflict = || ClientError::from(Status::conflict("Task", "web.1.1", "modified"));
        assert!(conflict().is_conflict());
        assert!(ReconcileError::is_conflict(&task_error(conflict())));
        let refused = ClientError::from(Status::not_found("Task", "web.1.1"));
        assert!(!ReconcileError::is_conflict(&task_error(refused)));
        let down = ClientError::Transport {
            url: "http://127.0.0.1:1".into(),
            message: "connection refused".into(),
        };
        assert!(!ReconcileError::is_conflict(&task_error(down)));
        assert!(!WriteError::Encode.is_conflict());
    }

    #[test]
    fn conflicts_run_again_promptly_and_failures_back_off() {
        let conflict = task_error(ClientError::from(Status::conflict("Task", "t", "modified")));
        let failure = task_error(ClientError::from(Status::not_found("Task", "t")));
        assert_eq!(outcome_of(Ok(Err(conflict)), "c", "k"), Outcome::Conflict);
        assert_eq!(outcome_of(Ok(Err(failure)), "c", "k"), Outcome::Retry);
        let ok: Result<Action, WriteError> = Ok(Action::await_change());
        assert_eq!(outcome_of(Ok(ok), "c", "k"), Outcome::Forget);
        let later: Result<Action, WriteError> = Ok(Action::requeue(Duration::from_secs(2)));
        assert_eq!(
            outcome_of(Ok(later), "c", "k"),
            Outcome::Requeue(Duration::from_secs(2))
        );
        let panicked: std::thread::Result<Result<Action, WriteError>> = Err(Box::new("boom"));
        assert_eq!(outcome_of(panicked, "c", "k"), Outcome::Retry);
    }

    #[test]
    fn actions_combine_to_the_earliest() {
        let a = Action::requeue(Duration::from_secs(5));
        let b = Action::requeue(Duration::from_secs(2));
        assert_eq!(a.min(b).requeue_after(), Some(Duration::from_secs(2)));
        assert_eq!(
            Action::await_change().min(a).requeue_after(),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            Action::await_change().min(Action::await_change()),
            Action::await_change()
        );
    }
}
