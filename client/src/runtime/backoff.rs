//! Exponential backoff with jitter, shared by the watcher (reconnects) and the work queue
//! (per-key retries after reconcile errors).
//!
//! Each failure doubles the delay from `initial` up to `max`; "full jitter" then picks the
//! actual wait uniformly in `[delay/2, delay]`, so many clients that failed together (an
//! apiserver restart) do not all come back in the same instant. `reset()` after a success
//! starts over from `initial`.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Backoff parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackoffConfig {
    pub initial: Duration,
    pub max: Duration,
    /// Whether to randomize each delay within `[delay/2, delay]`.
    pub jitter: bool,
}

impl BackoffConfig {
    /// kube-runtime's watcher default: 800 ms doubling up to 30 s, with jitter.
    pub const WATCH: BackoffConfig = BackoffConfig {
        initial: Duration::from_millis(800),
        max: Duration::from_secs(30),
        jitter: true,
    };

    /// client-go's per-item default for reconcile errors, 5 ms doubling, capped lower than
    /// client-go's 1000 s so a fixed problem is picked up within a minute.
    pub const RECONCILE: BackoffConfig = BackoffConfig {
        initial: Duration::from_millis(5),
        max: Duration::from_secs(60),
        jitter: true,
    };

    /// The delay after `failures` consecutive failures (1 = the first), before jitter.
    pub fn delay_for(&self, failures: u32) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        let factor = 1u32
            .checked_shl(failures.saturating_sub(1).min(31))
            .unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// `delay_for(failures)` with jitter applied when configured.
    pub fn jittered(&self, failures: u32) -> Duration {
        let d = self.delay_for(failures);
        if self.jitter { jitter(d) } else { d }
    }
}

/// A running backoff: counts failures since the last reset.
#[derive(Clone, Debug)]
pub struct Backoff {
    config: BackoffConfig,
    failures: u32,
}

impl Backoff {
    pub fn new(config: BackoffConfig) -> Self {
        Backoff {
            config,
            failures: 0,
        }
    }

    /// Records a failure and returns how long to wait before the next try.
    pub fn next_delay(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        self.config.jittered(self.failures)
    }

    /// Forgets past failures (call after a success).
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// A uniformly random duration in `[d/2, d]`.
///
/// The randomness comes from std's `RandomState` (randomly keyed SipHash) over a counter:
/// plenty for spreading retries, and no extra dependency.
pub fn jitter(d: Duration) -> Duration {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    let r = h.finish();
    let half = d / 2;
    let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
    if nanos == 0 {
        return d;
    }
    half + Duration::from_nanos(r % (nanos + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap() {
        let c = BackoffConfig {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            jitter: false,
        };
        let delays: Vec<_> = (0..7).map(|f| c.delay_for(f).as_millis()).collect();
        assert_eq!(delays, vec![0, 100, 200, 400, 800, 1000, 1000]);
        // Huge failure counts do not overflow.
        assert_eq!(c.delay_for(u32::MAX), Duration::from_secs(1));
    }

    #[test]
    fn jitter_stays_within_half_to_full() {
        let d = Duration::from_millis(1000);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let j = jitter(d);
            assert!(j >= d / 2 && j <= d, "{j:?}");
            seen.insert(j);
        }
        // Not a constant: spreading retries is the point.
        assert!(seen.len() > 100, "only {} distinct delays", seen.len());
    }

    #[test]
    fn reset_starts_over() {
        let mut b = Backoff::new(BackoffConfig {
            initial: Duration::from_millis(10),
            max: Duration::from_secs(1),
            jitter: false,
        });
        assert_eq!(b.next_delay(), Duration::from_millis(10));
        assert_eq!(b.next_delay(), Duration::from_millis(20));
        b.reset();
        assert_eq!(b.failures(), 0);
        assert_eq!(b.next_delay(), Duration::from_millis(10));
    }
}
