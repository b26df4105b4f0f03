//! `metrics`: counters a controller keeps about itself, rendered in Prometheus' text format.
//!
//! Plain atomics: the hot path (one reconcile) costs a few relaxed increments, and a
//! `/metrics` endpoint or a test reads a consistent-enough snapshot at any time.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// One controller's counters; cheap to clone (clones share the counters).
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    inner: Arc<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    reconciles: AtomicU64,
    errors: AtomicU64,
    requeues: AtomicU64,
    watch_events: AtomicU64,
    watch_errors: AtomicU64,
    queue_depth: AtomicI64,
    reconcile_micros: AtomicU64,
    leader: AtomicI64,
}

/// A point-in-time copy of the counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub reconciles: u64,
    pub errors: u64,
    pub requeues: u64,
    pub watch_events: u64,
    pub watch_errors: u64,
    pub queue_depth: i64,
    pub reconcile_micros: u64,
    pub leader: bool,
}

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn reconciled(&self, took: std::time::Duration, ok: bool) {
        let c = &self.inner;
        c.reconciles.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        c.reconcile_micros.fetch_add(micros, Ordering::Relaxed);
        if !ok {
            c.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn requeued(&self) {
        self.inner.requeues.fetch_add(1, Ordering::Relaxed);
    }

    pub fn watch_event(&self) {
        self.inner.watch_events.fetch_add(1, Ordering::Relaxed);
    }

    pub fn watch_error(&self) {
        self.inner.watch_errors.fetch_add(1, Ordering::Relaxed);
    }

    pub fn set_queue_depth(&self, depth: usize) {
        let d = i64::try_from(depth).unwrap_or(i64::MAX);
        self.inner.queue_depth.store(d, Ordering::Relaxed);
    }

    pub fn set_leader(&self, leading: bool) {
        self.inner
            .leader
            .store(i64::from(leading), Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> Snapshot {
        let c = &self.inner;
        Snapshot {
            reconciles: c.reconciles.load(Ordering::Relaxed),
            errors: c.errors.load(Ordering::Relaxed),
            requeues: c.requeues.load(Ordering::Relaxed),
            watch_events: c.watch_events.load(Ordering::Relaxed),
            watch_errors: c.watch_errors.load(Ordering::Relaxed),
            queue_depth: c.queue_depth.load(Ordering::Relaxed),
            reconcile_micros: c.reconcile_micros.load(Ordering::Relaxed),
            leader: c.leader.load(Ordering::Relaxed) != 0,
        }
    }

    /// The counters in Prometheus text format, labelled `controller="<name>"`.
    pub fn render(&self, controller: &str) -> String {
        let s = self.snapshot();
        let label = format!("{{controller=\"{}\"}}", escape(controller));
        let rows: [(&str, &str, &str, String); 8] = [
            (
                "swarm_controller_reconciles_total",
                "counter",
                "Reconciles run.",
                s.reconciles.to_string(),
            ),
            (
                "swarm_controller_reconcile_errors_total",
                "counter",
                "Reconciles that returned an error.",
                s.errors.to_string(),
            ),
            (
                "swarm_controller_requeues_total",
                "counter",
                "Keys scheduled again after a reconcile.",
                s.requeues.to_string(),
            ),
            (
                "swarm_controller_watch_events_total",
                "counter",
                "Watch events received.",
                s.watch_events.to_string(),
            ),
            (
                "swarm_controller_watch_errors_total",
                "counter",
                "Watch errors (each followed by a retry).",
                s.watch_errors.to_string(),
            ),
            (
                "swarm_controller_queue_depth",
                "gauge",
                "Keys waiting in the work queue.",
                s.queue_depth.to_string(),
            ),
            (
                "swarm_controller_reconcile_seconds_total",
                "counter",
                "Time spent reconciling.",
                format!("{:.6}", s.reconcile_micros as f64 / 1e6),
            ),
            (
                "swarm_controller_leader",
                "gauge",
                "1 while this replica holds the lease.",
                u8::from(s.leader).to_string(),
            ),
        ];
        let mut out = String::new();
        for (name, kind, help, value) in rows {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name}{label} {value}");
        }
        out
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_renders() {
        let m = Metrics::new();
        m.reconciled(std::time::Duration::from_millis(2), true);
        m.reconciled(std::time::Duration::from_millis(3), false);
        m.set_queue_depth(7);
        m.set_leader(true);
        let s = m.snapshot();
        assert_eq!((s.reconciles, s.errors, s.queue_depth), (2, 1, 7));
        assert_eq!(s.reconcile_micros, 5000);
        let text = m.render("replication");
        assert!(
            text.contains("swarm_controller_reconciles_total{controller=\"replication\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "swarm_controller_reconcile_errors_total{controller=\"replication\"} 1\n"
            )
        );
        assert!(text.contains("swarm_controller_queue_depth{controller=\"replication\"} 7\n"));
        assert!(text.contains("# TYPE swarm_controller_queue_depth gauge\n"));
        assert!(text.contains("swarm_controller_leader{controller=\"replication\"} 1\n"));
    }
}
