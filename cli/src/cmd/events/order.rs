//! Puts the events of several per-kind watches into one stream in store-revision order.
//!
//! Each kind is its own watch, and each delivers its events in revision order, but nothing
//! orders one watch against another: a task event at revision 12 may arrive before a service
//! event at revision 11. So events wait in a buffer until every watch has passed their
//! revision, then leave in order of (revision, kind).
//!
//! What a watch has *passed* — `complete`, the revision up to which it has delivered
//! everything — advances two ways:
//! * a `BOOKMARK` at R: everything up to and including R;
//! * an event at R: everything *before* R. Not R itself: one transaction writes several
//!   objects at one revision, and the rest of them may still be on their way.
//!
//! The server bookmarks each kind with the store's revision, also a kind that has no events,
//! so an idle kind does not hold the others back for longer than the bookmark interval.
//!
//! A watch that ends is resumed from its `complete` revision, so the siblings of its last
//! event come again; the events it already delivered at that revision (known by name) are
//! dropped, as are any at or below `complete`. Nothing is lost, nothing repeats.

use std::collections::{BTreeMap, HashMap, HashSet};

use swarm_api::Kind;

/// What one kind's watch has delivered.
#[derive(Debug, Default)]
struct Progress {
    /// Every event at or below this revision has been delivered.
    complete: u64,
    /// The revision of the last event delivered, and the names delivered at it.
    last: u64,
    names_at_last: HashSet<String>,
}

/// The buffer between the per-kind watches and the output.
#[derive(Debug)]
pub struct RevisionOrder<E> {
    kinds: HashMap<Kind, Progress>,
    /// Events waiting for every watch to pass them, by (revision, kind, arrival).
    pending: BTreeMap<(u64, Kind, u64), E>,
    arrivals: u64,
}

impl<E> RevisionOrder<E> {
    /// Watches of `kinds`, all starting after revision `start` (they deliver what follows it).
    pub fn new(kinds: &[Kind], start: u64) -> Self {
        let kinds = kinds
            .iter()
            .map(|k| {
                let p = Progress {
                    complete: start,
                    last: start,
                    ..Progress::default()
                };
                (*k, p)
            })
            .collect();
        RevisionOrder {
            kinds,
            pending: BTreeMap::new(),
            arrivals: 0,
        }
    }

    /// The revision to resume `kind`'s watch from after it ended (a watch from R delivers
    /// the events after R).
    pub fn resume_from(&self, kind: Kind) -> u64 {
        self.kinds.get(&kind).map_or(0, |p| p.complete)
    }

    /// An event of `kind` on object `name` at `revision`. `false`: already delivered before
    /// the watch was resumed, dropped.
    pub fn event(&mut self, kind: Kind, name: &str, revision: u64, event: E) -> bool {
        let Some(p) = self.kinds.get_mut(&kind) else {
            return false;
        };
        if revision <= p.complete {
            return false;
        }
        if revision == p.last {
            if !p.names_at_last.insert(name.to_string()) {
                return false;
            }
        } else {
            p.last = revision;
            p.names_at_last = HashSet::from([name.to_string()]);
        }
        p.complete = p.complete.max(revision - 1);
        self.pending.insert((revision, kind, self.arrivals), event);
        self.arrivals += 1;
        true
    }

    /// A bookmark of `kind` at `revision`: it has delivered everything up to it.
    pub fn bookmark(&mut self, kind: Kind, revision: u64) {
        if let Some(p) = self.kinds.get_mut(&kind) {
            p.complete = p.complete.max(revision);
        }
    }

    /// The revision every watch has passed.
    pub fn released_through(&self) -> u64 {
        self.kinds.values().map(|p| p.complete).min().unwrap_or(0)
    }

    /// The events every watch has passed, in (revision, kind) order, taken out of the buffer.
    pub fn ready(&mut self) -> Vec<(u64, Kind, E)> {
        let through = self.released_through();
        let mut ready = Vec::new();
        while let Some(entry) = self.pending.first_entry()
            && entry.key().0 <= through
        {
            let ((rev, kind, _), e) = entry.remove_entry();
            ready.push((rev, kind, e));
        }
        ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order() -> RevisionOrder<&'static str> {
        RevisionOrder::new(&[Kind::Service, Kind::Task], 10)
    }

    fn revs(v: Vec<(u64, Kind, &'static str)>) -> Vec<&'static str> {
        v.into_iter().map(|(_, _, e)| e).collect()
    }

    #[test]
    fn events_wait_until_every_kind_has_passed_them() {
        let mut o = order();
        assert!(o.event(Kind::Task, "web.1.1", 12, "task@12"));
        // The service watch has not said anything past 10 yet.
        assert!(o.ready().is_empty());
        assert!(o.event(Kind::Service, "web", 11, "service@11"));
        // Tasks are complete through 11, services through 10 only (11 may have siblings).
        assert!(o.ready().is_empty());
        o.bookmark(Kind::Service, 13);
        assert_eq!(revs(o.ready()), ["service@11"]);
        o.bookmark(Kind::Task, 12);
        assert_eq!(revs(o.ready()), ["task@12"]);
        assert!(o.ready().is_empty());
    }

    #[test]
    fn an_idle_kind_releases_through_its_bookmarks() {
        let mut o = order();
        assert!(o.event(Kind::Service, "web", 11, "service@11"));
        assert!(o.event(Kind::Service, "web", 14, "service@14"));
        o.bookmark(Kind::Task, 12);
        assert_eq!(revs(o.ready()), ["service@11"]);
        o.bookmark(Kind::Task, 20);
        // Services are complete through 13 only: 14 may have siblings.
        assert!(o.ready().is_empty());
        o.bookmark(Kind::Service, 20);
        assert_eq!(revs(o.ready()), ["service@14"]);
    }

    #[test]
    fn one_transaction_across_kinds_leaves_together_by_kind() {
        let mut o = order();
        assert!(o.event(Kind::Task, "web.1.1", 11, "task.1@11"));
        assert!(o.event(Kind::Service, "web", 11, "service@11"));
        assert!(o.event(Kind::Task, "web.2.1", 11, "task.2@11"));
        o.bookmark(Kind::Task, 11);
        o.bookmark(Kind::Service, 11);
        assert_eq!(revs(o.ready()), ["service@11", "task.1@11", "task.2@11"]);
    }

    #[test]
    fn a_resumed_watch_repeats_nothing() {
        let mut o = order();
        assert!(o.event(Kind::Task, "web.1.1", 11, "a"));
        assert!(o.event(Kind::Task, "web.2.1", 12, "b"));
        // The watch ends; it resumes from 11 and delivers 12's events again, and one more.
        assert_eq!(o.resume_from(Kind::Task), 11);
        assert!(!o.event(Kind::Task, "web.2.1", 12, "b again"));
        assert!(o.event(Kind::Task, "web.3.1", 12, "c"));
        // Before the resume point: dropped.
        assert!(!o.event(Kind::Task, "web.1.1", 11, "a again"));
        o.bookmark(Kind::Task, 12);
        o.bookmark(Kind::Service, 12);
        assert_eq!(revs(o.ready()), ["a", "b", "c"]);
    }

    #[test]
    fn unknown_kinds_are_ignored() {
        let mut o = order();
        assert!(!o.event(Kind::Node, "n", 11, "node"));
        o.bookmark(Kind::Node, 50);
        assert_eq!(o.released_through(), 10);
    }
}
