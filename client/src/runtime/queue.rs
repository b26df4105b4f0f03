//! `queue`: the work queue between "something changed" and "reconcile", with client-go's
//! workqueue guarantees and kube-runtime's delayed scheduling:
//!
//! * **dedupe** — a key added many times before a worker takes it is handed out once;
//! * **delay** — `add_after` schedules a key for later; when a key is both scheduled and
//!   added, the earliest time wins;
//! * **stingy** — a key is never handed to two workers at once: a key added while it is being
//!   processed is parked ("dirty") and handed out again only after `done`;
//! * **per-key backoff** — `done(key, Outcome::Retry)` re-schedules the key after an
//!   exponentially growing delay; a success resets that key's failure count;
//! * **per-key cooldown** — after a key's reconcile took `d`, the key is not handed out again
//!   before `factor × d` (at most `max`) has passed, however often it is added meanwhile.
//!   A key whose object changes faster than it can be reconciled (a service with 100,000
//!   tasks, each reporting its progress) then takes at most `1 / (1 + factor)` of a worker,
//!   and the changes of the cooldown coalesce into one run. Keys that reconcile in
//!   microseconds are barely delayed.
//!
//! Keys are cheap identifiers (object names), never objects: a worker always reads the
//! current object from the cache, which is what makes reconcilers level-triggered.

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::backoff::BackoffConfig;

/// What happened to a key a worker took; tells `done` what to do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Succeeded; run again only when something changes.
    Forget,
    /// Succeeded; run again after this long at the latest.
    Requeue(Duration),
    /// Failed; retry after this key's backoff delay.
    Retry,
    /// Lost a write race (a stale `resourceVersion`): not a failure; run again as soon as
    /// the cooldown allows, on fresher state, without growing the backoff.
    Conflict,
}

/// How long a key rests after a reconcile: `factor ×` the time it took, at most `max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cooldown {
    pub factor: u32,
    pub max: Duration,
}

impl Cooldown {
    /// No rest: a key added while it is reconciled runs again as soon as it is done.
    pub const NONE: Cooldown = Cooldown {
        factor: 0,
        max: Duration::ZERO,
    };

    /// The rest after a reconcile that took `took`.
    pub fn after(&self, took: Duration) -> Duration {
        took.saturating_mul(self.factor).min(self.max)
    }
}

/// A deduplicating, delaying work queue; cheap to clone (clones share the queue).
#[derive(Debug)]
pub struct WorkQueue<K> {
    inner: Arc<Mutex<Inner<K>>>,
    notify: Arc<Notify>,
    backoff: BackoffConfig,
    cooldown: Cooldown,
}

impl<K> Clone for WorkQueue<K> {
    fn clone(&self) -> Self {
        WorkQueue {
            inner: self.inner.clone(),
            notify: self.notify.clone(),
            backoff: self.backoff,
            cooldown: self.cooldown,
        }
    }
}

#[derive(Debug)]
struct Inner<K> {
    /// Waiting keys and when each may run (plus its tie-breaking sequence number).
    pending: HashMap<K, (Instant, u64)>,
    /// The same keys, ordered by time.
    order: BTreeSet<(Instant, u64, K)>,
    /// Keys a worker holds, and since when.
    processing: HashMap<K, Instant>,
    /// Keys resting after a reconcile: not handed out before this time.
    not_before: HashMap<K, Instant>,
    /// Size of `not_before` at which expired rests are swept out.
    sweep_at: usize,
    /// Keys added while being processed: when they may run once `done`.
    dirty: HashMap<K, Instant>,
    failures: HashMap<K, u32>,
    seq: u64,
    shut_down: bool,
}

impl<K: Clone + Eq + Hash + Ord + Send + 'static> WorkQueue<K> {
    /// A queue without cooldown.
    pub fn new(backoff: BackoffConfig) -> Self {
        Self::with_cooldown(backoff, Cooldown::NONE)
    }

    pub fn with_cooldown(backoff: BackoffConfig, cooldown: Cooldown) -> Self {
        WorkQueue {
            inner: Arc::new(Mutex::new(Inner {
                pending: HashMap::new(),
                order: BTreeSet::new(),
                processing: HashMap::new(),
                not_before: HashMap::new(),
                sweep_at: SWEEP_MIN,
                dirty: HashMap::new(),
                failures: HashMap::new(),
                seq: 0,
                shut_down: false,
            })),
            notify: Arc::new(Notify::new()),
            backoff,
            cooldown,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner<K>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Schedules `key` now.
    pub fn add(&self, key: K) {
        self.add_at(key, Instant::now());
    }

    /// Schedules `key` after `delay` (or earlier, if it is already scheduled earlier).
    pub fn add_after(&self, key: K, delay: Duration) {
        self.add_at(key, Instant::now() + delay);
    }

    fn add_at(&self, key: K, at: Instant) {
        let mut q = self.lock();
        if q.shut_down {
            return;
        }
        q.schedule(key, at);
        drop(q);
        self.notify.notify_waiters();
    }

    /// Waits for a key that is due and not being processed, and marks it as processing.
    /// Returns `None` once the queue is shut down.
    pub async fn next(&self) -> Option<K> {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            // Register for wake-ups before looking, so an `add` between the look and the
            // wait is not lost.
            notified.as_mut().enable();
            let wait_until = {
                let mut q = self.lock();
                if q.shut_down {
                    return None;
                }
                match q.order.first().cloned() {
                    Some((at, seq, key)) if at <= Instant::now() => {
                        q.order.remove(&(at, seq, key.clone()));
                        q.pending.remove(&key);
                        q.not_before.remove(&key);
                        q.processing.insert(key.clone(), Instant::now());
                        return Some(key);
                    }
                    Some((at, _, _)) => Some(at),
                    None => None,
                }
            };
            match wait_until {
                Some(at) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        _ = &mut notified => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// Releases a key taken with `next`, and schedules it again as `outcome` says (or
    /// earlier, if it was added meanwhile), but not before its cooldown has passed. Returns
    /// the delay of a `Retry`.
    pub fn done(&self, key: &K, outcome: Outcome) -> Option<Duration> {
        let mut q = self.lock();
        let now = Instant::now();
        if let Some(started) = q.processing.remove(key) {
            let rest = self.cooldown.after(now.saturating_duration_since(started));
            if !rest.is_zero() {
                q.rest(key.clone(), now + rest);
            }
        }
        let mut retry = None;
        let again = match outcome {
            Outcome::Forget => {
                q.failures.remove(key);
                None
            }
            Outcome::Requeue(d) => {
                q.failures.remove(key);
                Some(now + d)
            }
            Outcome::Retry => {
                let n = q.failures.entry(key.clone()).or_insert(0);
                *n = n.saturating_add(1);
                let d = self.backoff.jittered(*n);
                retry = Some(d);
                Some(now + d)
            }
            Outcome::Conflict => Some(now),
        };
        let dirty = q.dirty.remove(key);
        let at = match (again, dirty) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(at) = at
            && !q.shut_down
        {
            q.schedule(key.clone(), at);
        }
        drop(q);
        self.notify.notify_waiters();
        retry
    }

    /// Keys waiting (scheduled or parked behind a worker).
    pub fn len(&self) -> usize {
        let q = self.lock();
        q.pending.len() + q.dirty.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Consecutive failures recorded for `key`.
    pub fn failures(&self, key: &K) -> u32 {
        self.lock().failures.get(key).copied().unwrap_or(0)
    }

    /// Makes every `next` return `None`; later adds are ignored.
    pub fn shut_down(&self) {
        self.lock().shut_down = true;
        self.notify.notify_waiters();
    }
}

/// Below this many resting keys, expired rests are not swept out.
const SWEEP_MIN: usize = 1024;

impl<K: Clone + Eq + Hash + Ord> Inner<K> {
    /// Keeps `key` from being handed out before `until`. Rests of keys that are never added
    /// again are swept out once they have expired, whenever the map has doubled.
    fn rest(&mut self, key: K, until: Instant) {
        self.not_before.insert(key, until);
        if self.not_before.len() >= self.sweep_at {
            let now = Instant::now();
            self.not_before.retain(|_, t| *t > now);
            self.sweep_at = (self.not_before.len() * 2).max(SWEEP_MIN);
        }
    }

    fn schedule(&mut self, key: K, at: Instant) {
        let at = match self.not_before.get(&key) {
            Some(&rest) => at.max(rest),
            None => at,
        };
        if self.processing.contains_key(&key) {
            let e = self.dirty.entry(key).or_insert(at);
            *e = (*e).min(at);
            return;
        }
        if let Some(&(old_at, old_seq)) = self.pending.get(&key) {
            if old_at <= at {
                return;
            }
            self.order.remove(&(old_at, old_seq, key.clone()));
        }
        self.seq += 1;
        let seq = self.seq;
        self.pending.insert(key.clone(), (at, seq));
        self.order.insert((at, seq, key));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_JITTER: BackoffConfig = BackoffConfig {
        initial: Duration::from_millis(100),
        max: Duration::from_secs(10),
        jitter: false,
    };

    fn q() -> WorkQueue<String> {
        WorkQueue::new(NO_JITTER)
    }

    #[tokio::test(start_paused = true)]
    async fn duplicate_adds_are_handed_out_once() {
        let q = q();
        for _ in 0..5 {
            q.add("a".to_string());
        }
        q.add("b".to_string());
        assert_eq!(q.len(), 2);
        assert_eq!(q.next().await.as_deref(), Some("a"));
        assert_eq!(q.next().await.as_deref(), Some("b"));
        assert!(q.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_is_never_processed_twice_at_once() {
        let q = q();
        q.add("a".to_string());
        let k = q.next().await.unwrap();
        // Added again while a worker holds it: parked, not handed to a second worker.
        q.add("a".to_string());
        q.add("b".to_string());
        assert_eq!(q.next().await.as_deref(), Some("b"));
        let second = tokio::time::timeout(Duration::from_secs(5), q.next()).await;
        assert!(second.is_err(), "a was handed out while still processing");
        // Once released it runs again (it changed meanwhile).
        q.done(&k, Outcome::Forget);
        assert_eq!(q.next().await.as_deref(), Some("a"));
    }

    #[tokio::test(start_paused = true)]
    async fn delays_are_honoured_and_the_earliest_wins() {
        let q = q();
        let start = Instant::now();
        q.add_after("late".to_string(), Duration::from_secs(10));
        q.add_after("soon".to_string(), Duration::from_secs(2));
        assert_eq!(q.next().await.as_deref(), Some("soon"));
        assert!(Instant::now() - start >= Duration::from_secs(2));
        // An immediate add beats the pending 10 s.
        q.add("late".to_string());
        assert_eq!(q.next().await.as_deref(), Some("late"));
        assert!(Instant::now() - start < Duration::from_secs(10));
        // A later schedule does not postpone an earlier one.
        q.add_after("x".to_string(), Duration::from_secs(1));
        q.add_after("x".to_string(), Duration::from_secs(100));
        let t = Instant::now();
        assert_eq!(q.next().await.as_deref(), Some("x"));
        assert!(Instant::now() - t <= Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn errors_back_off_per_key_and_success_resets() {
        let q = q();
        q.add("a".to_string());
        let mut delays = Vec::new();
        for _ in 0..4 {
            let k = q.next().await.unwrap();
            delays.push(q.done(&k, Outcome::Retry).unwrap().as_millis());
        }
        assert_eq!(delays, vec![100, 200, 400, 800]);
        assert_eq!(q.failures(&"a".to_string()), 4);
        let k = q.next().await.unwrap();
        q.done(&k, Outcome::Requeue(Duration::from_secs(1)));
        assert_eq!(q.failures(&"a".to_string()), 0);
        let k = q.next().await.unwrap();
        assert_eq!(q.done(&k, Outcome::Retry), Some(Duration::from_millis(100)));
    }

    fn cooling(factor: u32, max_ms: u64) -> WorkQueue<String> {
        WorkQueue::with_cooldown(
            NO_JITTER,
            Cooldown {
                factor,
                max: Duration::from_millis(max_ms),
            },
        )
    }

    /// Takes `key` and holds it for `took`, as a reconcile that long would.
    async fn reconcile_for(q: &WorkQueue<String>, took: Duration, outcome: Outcome) -> Instant {
        let k = q.next().await.unwrap();
        tokio::time::advance(took).await;
        q.done(&k, outcome);
        Instant::now()
    }

    #[tokio::test(start_paused = true)]
    async fn a_hot_key_rests_for_a_multiple_of_its_last_reconcile() {
        let q = cooling(3, 1000);
        q.add("svc".to_string());
        let k = q.next().await.unwrap();
        tokio::time::advance(Duration::from_millis(100)).await;
        // Changes while it is reconciled, and right after: one run, 3 × 100 ms later.
        q.add("svc".to_string());
        q.done(&k, Outcome::Forget);
        let done = Instant::now();
        for _ in 0..10 {
            q.add("svc".to_string());
        }
        // Another key is not held up by svc's rest.
        q.add("other".to_string());
        assert_eq!(q.next().await.as_deref(), Some("other"));
        assert!(Instant::now() - done < Duration::from_millis(1));
        assert_eq!(q.next().await.as_deref(), Some("svc"));
        assert_eq!(Instant::now() - done, Duration::from_millis(300));
        assert_eq!(q.len(), 0, "the adds of the rest coalesced into one run");
    }

    #[tokio::test(start_paused = true)]
    async fn the_rest_is_capped_and_ends() {
        let q = cooling(10, 500);
        q.add("a".to_string());
        let done = reconcile_for(&q, Duration::from_secs(2), Outcome::Forget).await;
        q.add("a".to_string());
        let k = q.next().await.unwrap();
        assert_eq!(Instant::now() - done, Duration::from_millis(500));
        // A reconcile that took no time leaves no rest: an add runs at once.
        q.done(&k, Outcome::Forget);
        q.add("a".to_string());
        let t = Instant::now();
        assert_eq!(q.next().await.as_deref(), Some("a"));
        assert_eq!(Instant::now(), t);
    }

    #[tokio::test(start_paused = true)]
    async fn a_conflict_runs_again_after_the_rest_without_backoff() {
        let cq = cooling(2, 1000);
        cq.add("a".to_string());
        let mut last_done = None;
        for _ in 0..5 {
            let k = cq.next().await.unwrap();
            if let Some(done) = last_done {
                assert_eq!(Instant::now() - done, Duration::from_millis(40));
            }
            tokio::time::advance(Duration::from_millis(20)).await;
            assert_eq!(cq.done(&k, Outcome::Conflict), None);
            assert_eq!(cq.failures(&k), 0, "a conflict is not a failure");
            last_done = Some(Instant::now());
        }
        // Without a cooldown, at once.
        let q = q();
        q.add("b".to_string());
        let k = q.next().await.unwrap();
        q.done(&k, Outcome::Conflict);
        let t = Instant::now();
        assert_eq!(q.next().await.as_deref(), Some("b"));
        assert_eq!(Instant::now(), t);
    }

    #[tokio::test(start_paused = true)]
    async fn expired_rests_are_swept() {
        let q = cooling(1, 1000);
        for i in 0..(SWEEP_MIN + 10) {
            q.add(format!("k{i}"));
            reconcile_for(&q, Duration::from_millis(1), Outcome::Forget).await;
            tokio::time::advance(Duration::from_millis(2)).await;
        }
        assert!(q.lock().not_before.len() < SWEEP_MIN);
    }

    #[tokio::test(start_paused = true)]
    async fn shut_down_releases_waiting_workers() {
        let q = q();
        let waiter = {
            let q = q.clone();
            tokio::spawn(async move { q.next().await })
        };
        tokio::task::yield_now().await;
        q.shut_down();
        assert_eq!(waiter.await.unwrap(), None);
        q.add("a".to_string());
        assert!(q.is_empty());
    }
}
