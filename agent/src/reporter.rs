//! Task status reports waiting to be sent. The latest report of a task replaces an unsent
//! earlier one (latest wins), so a batch carries at most one report per task; a batch that
//! could not be sent goes back unless a newer report arrived meanwhile.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use swarm_api::TaskStatus;

#[derive(Default)]
struct Pending {
    seq: u64,
    /// task → (sequence number, status).
    reports: HashMap<String, (u64, TaskStatus)>,
}

/// The outbox of status reports; cheap to clone.
#[derive(Clone, Default)]
pub struct Reporter {
    inner: Arc<Mutex<Pending>>,
}

/// A batch taken from the outbox.
pub type Batch = Vec<(String, u64, TaskStatus)>;

impl Reporter {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `status` for `task`, replacing an unsent earlier report.
    pub fn report(&self, task: &str, status: TaskStatus) {
        let mut p = self.lock();
        p.seq += 1;
        let seq = p.seq;
        p.reports.insert(task.to_string(), (seq, status));
    }

    /// Takes up to `max` reports.
    pub fn take(&self, max: usize) -> Batch {
        let mut p = self.lock();
        let names: Vec<String> = p.reports.keys().take(max).cloned().collect();
        names
            .into_iter()
            .filter_map(|n| p.reports.remove(&n).map(|(seq, s)| (n, seq, s)))
            .collect()
    }

    /// Puts back a batch that was not sent, keeping newer reports that arrived meanwhile.
    pub fn put_back(&self, batch: Batch) {
        let mut p = self.lock();
        for (name, seq, status) in batch {
            let newer = p.reports.get(&name).is_some_and(|(s, _)| *s > seq);
            if !newer {
                p.reports.insert(name, (seq, status));
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.lock().reports.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_api::TaskState;

    fn status(s: TaskState) -> TaskStatus {
        TaskStatus {
            state: s,
            ..Default::default()
        }
    }

    #[test]
    fn latest_wins_and_put_back_keeps_newer() {
        let r = Reporter::default();
        r.report("a", status(TaskState::Accepted));
        r.report("a", status(TaskState::Preparing));
        r.report("b", status(TaskState::Running));
        let batch = r.take(10);
        assert_eq!(batch.len(), 2);
        let a = batch.iter().find(|(n, _, _)| n == "a").unwrap();
        assert_eq!(a.2.state, TaskState::Preparing);
        assert!(r.is_empty());
        // A newer report of `a` arrives while the batch fails to send.
        r.report("a", status(TaskState::Running));
        r.put_back(batch);
        let again = r.take(10);
        let a = again.iter().find(|(n, _, _)| n == "a").unwrap();
        assert_eq!(a.2.state, TaskState::Running);
        assert_eq!(again.len(), 2);
    }
}
