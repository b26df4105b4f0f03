//! `queue`: the work queue between "something changed" and "reconcile", with client-go's
//! workqueue guarantees and kube-runtime's delayed scheduling:
//!
//! * **dedupe** — a key added many times before a worker takes it is handed out once;
//! * **delay** — `add_after` schedules a key for later; when a key is both scheduled and
//!   added, the earliest time wins;
//! * **stingy** — a key is never handed to two workers at once: a key added while it is being
//!   processed is parked ("dirty") and handed out again only after `done`;
//! * **per-key backoff** — `done(key, Outcome::Retry)` re-schedules the key after an
//!   exponentially growing delay; a success resets that key's failure count.
//!
//! Keys are cheap identifiers (object names), never objects: a worker always reads the
//! current object from the cache, which is what makes reconcilers level-triggered.

use std::collections::{BTreeSet, HashMap, HashSet};
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
}

/// A deduplicating, delaying work queue; cheap to clone (clones share the queue).
#[derive(Debug)]
pub struct WorkQueue<K> {
    inner: Arc<Mutex<Inner<K>>>,
    notify: Arc<Notify>,
    backoff: BackoffConfig,
}

impl<K> Clone for WorkQueue<K> {
    fn clone(&self) -> Self {
        WorkQueue {
            inner: self.inner.clone(),
            notify: self.notify.clone(),
            backoff: self.backoff,
        }
    }
}

#[derive(Debug)]
struct Inner<K> {
    /// Waiting keys and when each may run (plus its tie-breaking sequence number).
    pending: HashMap<K, (Instant, u64)>,
    /// The same keys, ordered by time.
    order: BTreeSet<(Instant, u64, K)>,
    /// Keys a worker holds.
    processing: HashSet<K>,
    /// Keys added while being processed: when they may run once `done`.
    dirty: HashMap<K, Instant>,
    failures: HashMap<K, u32>,
    seq: u64,
    shut_down: bool,
}

impl<K: Clone + Eq + Hash + Ord + Send + 'static> WorkQueue<K> {
    pub fn new(backoff: BackoffConfig) -> Self {
        WorkQueue {
            inner: Arc::new(Mutex::new(Inner {
                pending: HashMap::new(),
                order: BTreeSet::new(),
                processing: HashSet::new(),
                dirty: HashMap::new(),
                failures: HashMap::new(),
                seq: 0,
                shut_down: false,
            })),
            notify: Arc::new(Notify::new()),
            backoff,
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
                        q.processing.insert(key.clone());
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
    /// earlier, if it was added meanwhile). Returns the delay of a `Retry`.
    pub fn done(&self, key: &K, outcome: Outcome) -> Option<Duration> {
        let mut q = self.lock();
        q.processing.remove(key);
        let now = Instant::now();
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

impl<K: Clone + Eq + Hash + Ord> Inner<K> {
    fn schedule(&mut self, key: K, at: Instant) {
        if self.processing.contains(&key) {
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
