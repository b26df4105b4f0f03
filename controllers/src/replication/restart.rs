//! The restart policy (`deploy.restart_policy`): whether and when a task that ended by
//! itself gets a successor in its slot.
//!
//! SwarmKit keeps restart counts in the leader's memory, so a failover forgets them (and a
//! crash-looping service restarts forever). Here the count lives in the objects: each
//! successor task carries, in the annotation `swarm.restart.history`, the times (Unix ms) of
//! the restarts of its slot that still count. The latest task of a slot is never trimmed
//! from history, so a restarted controller reads the same count back.
//!
//! * `condition`: `none` never restarts, `on-failure` restarts unless the task completed
//!   (exit 0), `any` always restarts;
//! * `max_attempts` (0 = unlimited) restarts within `window` (0 = ever) — then the slot is
//!   left with its failed task, as Swarm shows `0/1`;
//! * `delay` is measured from when the task ended (`status.timestamp`);
//! * counts start over when the service's spec changes (a new generation), as in Swarm.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use swarm_api::{RestartCondition, RestartPolicy, Task, TaskState};

/// The annotation holding the restart times of a slot.
pub const HISTORY_ANNOTATION: &str = "swarm.restart.history";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Create the successor at `at`, carrying `history`.
    Restart { at: SystemTime, history: Vec<u64> },
    /// Leave the slot as it is.
    GiveUp,
}

/// Decides for `task`, which ended by itself (observed state terminal, still wanted).
pub fn decide(policy: &RestartPolicy, task: &Task, generation: i64, now: SystemTime) -> Decision {
    let wanted = match policy.condition {
        RestartCondition::None => false,
        RestartCondition::OnFailure => task.status.state != TaskState::Complete,
        RestartCondition::Any => true,
    };
    if !wanted {
        return Decision::GiveUp;
    }
    let now_ms = millis(now);
    let ended = task.status.timestamp.map(|t| t.0).unwrap_or(UNIX_EPOCH);
    let at = ended + policy.delay.as_std();
    // The task ran an older spec: its successor is the first task of the new spec, not a
    // restart (the update controller would have replaced it anyway).
    if task.spec.service_generation != generation {
        return Decision::Restart {
            at,
            history: Vec::new(),
        };
    }
    let mut history = history_of(task);
    let window = policy.window.as_std();
    if !window.is_zero() {
        let since = now_ms.saturating_sub(u64::try_from(window.as_millis()).unwrap_or(u64::MAX));
        history.retain(|t| *t >= since);
    }
    let max = policy.max_attempts;
    if max > 0 && history.len() as u64 >= max {
        return Decision::GiveUp;
    }
    if max > 0 {
        history.push(now_ms.max(millis(at)));
        let keep = usize::try_from(max).unwrap_or(usize::MAX);
        if history.len() > keep {
            history.drain(..history.len() - keep);
        }
    } else {
        history.clear();
    }
    Decision::Restart { at, history }
}

/// The restart times recorded on `task`.
pub fn history_of(task: &Task) -> Vec<u64> {
    task.metadata
        .annotations
        .get(HISTORY_ANNOTATION)
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// Records `history` on a successor task (nothing when empty).
pub fn annotate(task: &mut Task, history: &[u64]) {
    if history.is_empty() {
        return;
    }
    let text: Vec<String> = history.iter().map(u64::to_string).collect();
    task.metadata
        .annotations
        .insert(HISTORY_ANNOTATION.to_string(), text.join(","));
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// How long until `at` (zero if past).
pub fn until(at: SystemTime, now: SystemTime) -> Duration {
    at.duration_since(now).unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_api::{Duration as D, Timestamp};

    fn failed(at: SystemTime, history: &[u64], generation: i64) -> Task {
        let mut t = Task::default();
        t.status.state = TaskState::Failed;
        t.status.timestamp = Some(Timestamp(at));
        t.spec.service_generation = generation;
        annotate(&mut t, history);
        t
    }

    fn policy(condition: RestartCondition, max: u64, window: u64) -> RestartPolicy {
        RestartPolicy {
            condition,
            delay: D::from_secs(5),
            max_attempts: max,
            window: D::from_secs(window),
        }
    }

    #[test]
    fn conditions() {
        let now = UNIX_EPOCH + Duration::from_secs(1000);
        let mut done = failed(now, &[], 1);
        done.status.state = TaskState::Complete;
        let f = failed(now, &[], 1);
        assert_eq!(
            decide(&policy(RestartCondition::None, 0, 0), &f, 1, now),
            Decision::GiveUp
        );
        assert_eq!(
            decide(&policy(RestartCondition::OnFailure, 0, 0), &done, 1, now),
            Decision::GiveUp
        );
        assert!(matches!(
            decide(&policy(RestartCondition::OnFailure, 0, 0), &f, 1, now),
            Decision::Restart { .. }
        ));
        assert!(matches!(
            decide(&policy(RestartCondition::Any, 0, 0), &done, 1, now),
            Decision::Restart { .. }
        ));
    }

    #[test]
    fn delay_counts_from_the_end_of_the_task() {
        let ended = UNIX_EPOCH + Duration::from_secs(1000);
        let now = ended + Duration::from_secs(2);
        match decide(
            &policy(RestartCondition::Any, 0, 0),
            &failed(ended, &[], 1),
            1,
            now,
        ) {
            Decision::Restart { at, history } => {
                assert_eq!(at, ended + Duration::from_secs(5));
                assert_eq!(until(at, now), Duration::from_secs(3));
                assert!(history.is_empty(), "unlimited attempts need no history");
            }
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn max_attempts_counts_persisted_restarts_and_resets_on_a_new_generation() {
        let now = UNIX_EPOCH + Duration::from_secs(1000);
        let p = policy(RestartCondition::Any, 2, 0);
        let Decision::Restart { history, .. } = decide(&p, &failed(now, &[], 1), 1, now) else {
            panic!()
        };
        assert_eq!(history.len(), 1);
        let Decision::Restart { history, .. } = decide(&p, &failed(now, &history, 1), 1, now)
        else {
            panic!()
        };
        assert_eq!(history.len(), 2);
        assert_eq!(
            decide(&p, &failed(now, &history, 1), 1, now),
            Decision::GiveUp
        );
        // The service changed since: counting starts over, and replacing the old-spec task
        // is not a restart.
        assert!(matches!(
            decide(&p, &failed(now, &history, 1), 2, now),
            Decision::Restart { history, .. } if history.is_empty()
        ));
    }

    #[test]
    fn only_restarts_within_the_window_count() {
        let now = UNIX_EPOCH + Duration::from_secs(1000);
        let p = policy(RestartCondition::Any, 2, 60);
        let old = millis(now - Duration::from_secs(120));
        let recent = millis(now - Duration::from_secs(10));
        assert!(matches!(
            decide(&p, &failed(now, &[old, recent], 1), 1, now),
            Decision::Restart { .. }
        ));
        assert_eq!(
            decide(&p, &failed(now, &[recent, recent], 1), 1, now),
            Decision::GiveUp
        );
    }

    #[test]
    fn history_round_trips_through_the_annotation() {
        let mut t = Task::default();
        annotate(&mut t, &[1, 22, 333]);
        assert_eq!(t.metadata.annotations[HISTORY_ANNOTATION], "1,22,333");
        assert_eq!(history_of(&t), vec![1, 22, 333]);
    }
}
