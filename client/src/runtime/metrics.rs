//! `metrics`: counters a controller keeps about itself, rendered in Prometheus' text format.
//!
//! Plain atomics: the hot path (one reconcile) costs a few relaxed increments, and a
//! `/metrics` endpoint or a test reads a consistent-enough snapshot at any time.
//!
//! Every `Controller` registers its counters in the process-wide `registry()` under its name
//! (replicas of one controller in one process share them), so a binary serves them all with
//! `registry().render()`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// One controller's counters; cheap to clone (clones share the counters).
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    inner: Arc<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    reconciles: AtomicU64,
    errors: AtomicU64,
    conflicts: AtomicU64,
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
    pub conflicts: u64,
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

    /// A reconcile that lost a write race (counted as a reconcile, not as an error).
    pub fn conflicted(&self, took: std::time::Duration) {
        self.reconciled(took, true);
        self.inner.conflicts.fetch_add(1, Ordering::Relaxed);
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
            conflicts: c.conflicts.load(Ordering::Relaxed),
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
        render_all(&[(controller, self)])
    }
}

/// The counters of every controller of this process, by name.
#[derive(Debug, Default)]
pub struct Registry {
    by_name: Mutex<BTreeMap<String, Metrics>>,
}

/// The process-wide registry.
pub fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Registry::default)
}

impl Registry {
    /// The counters of controller `name` (created on first use).
    pub fn register(&self, name: &str) -> Metrics {
        let mut m = self.by_name.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(name.to_string()).or_default().clone()
    }

    /// A copy of every controller's counters, by name (benchmarks diff two of these).
    pub fn snapshots(&self) -> BTreeMap<String, Snapshot> {
        let m = self.by_name.lock().unwrap_or_else(|e| e.into_inner());
        m.iter().map(|(k, v)| (k.clone(), v.snapshot())).collect()
    }

    /// Every controller's counters in Prometheus text format.
    pub fn render(&self) -> String {
        let m = self.by_name.lock().unwrap_or_else(|e| e.into_inner());
        let all: Vec<(&str, &Metrics)> = m.iter().map(|(k, v)| (k.as_str(), v)).collect();
        render_all(&all)
    }
}

/// One `# HELP`/`# TYPE` block per metric, with a line per controller.
fn render_all(controllers: &[(&str, &Metrics)]) -> String {
    let mut out = String::new();
    let snaps: Vec<(String, Snapshot)> = controllers
        .iter()
        .map(|(name, m)| (format!("{{controller=\"{}\"}}", escape(name)), m.snapshot()))
        .collect();
    type Row = (
        &'static str,
        &'static str,
        &'static str,
        fn(&Snapshot) -> String,
    );
    let rows: [Row; 9] = [
        (
            "swarm_controller_reconciles_total",
            "counter",
            "Reconciles run.",
            |s| s.reconciles.to_string(),
        ),
        (
            "swarm_controller_reconcile_errors_total",
            "counter",
            "Reconciles that returned an error.",
            |s| s.errors.to_string(),
        ),
        (
            "swarm_controller_reconcile_conflicts_total",
            "counter",
            "Reconciles that lost a write race (run again promptly, not errors).",
            |s| s.conflicts.to_string(),
        ),
        (
            "swarm_controller_requeues_total",
            "counter",
            "Keys scheduled again after a reconcile.",
            |s| s.requeues.to_string(),
        ),
        (
            "swarm_controller_watch_events_total",
            "counter",
            "Watch events received.",
            |s| s.watch_events.to_string(),
        ),
        (
            "swarm_controller_watch_errors_total",
            "counter",
            "Watch errors (each followed by a retry).",
            |s| s.watch_errors.to_string(),
        ),
        (
            "swarm_controller_queue_depth",
            "gauge",
            "Keys waiting in the work queue.",
            |s| s.queue_depth.to_string(),
        ),
        (
            "swarm_controller_reconcile_seconds_total",
            "counter",
            "Time spent reconciling.",
            |s| format!("{:.6}", s.reconcile_micros as f64 / 1e6),
        ),
        (
            "swarm_controller_leader",
            "gauge",
            "1 while this replica holds the lease.",
            |s| u8::from(s.leader).to_string(),
        ),
    ];
    for (name, kind, help, value) in rows {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (label, snap) in &snaps {
            let _ = writeln!(out, "{name}{label} {}", value(snap));
        }
    }
    out
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
        m.conflicted(std::time::Duration::from_millis(1));
        m.set_queue_depth(7);
        m.set_leader(true);
        let s = m.snapshot();
        assert_eq!((s.reconciles, s.errors, s.conflicts), (3, 1, 1));
        assert_eq!(s.queue_depth, 7);
        assert_eq!(s.reconcile_micros, 6000);
        let text = m.render("replication");
        assert!(
            text.contains("swarm_controller_reconciles_total{controller=\"replication\"} 3\n"),
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

    #[test]
    fn the_registry_shares_counters_by_name_and_renders_every_controller() {
        let r = Registry::default();
        r.register("gc").reconciled(std::time::Duration::ZERO, true);
        r.register("gc").reconciled(std::time::Duration::ZERO, true);
        r.register("nodes").set_queue_depth(3);
        let snaps = r.snapshots();
        assert_eq!(snaps["gc"].reconciles, 2);
        assert_eq!(snaps["nodes"].queue_depth, 3);
        let text = r.render();
        assert!(
            text.contains("swarm_controller_reconciles_total{controller=\"gc\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("swarm_controller_queue_depth{controller=\"nodes\"} 3\n"),
            "{text}"
        );
        // One HELP/TYPE header per metric, not per controller.
        assert_eq!(
            text.matches("# TYPE swarm_controller_queue_depth gauge")
                .count(),
            1
        );
    }
}
