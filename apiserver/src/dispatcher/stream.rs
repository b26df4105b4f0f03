//! One node's assignment stream: a complete set first (split into bounded messages, `more`
//! set on all but the last), then incremental changes as the hub pushes them, batched by
//! draining what is queued, each message bounded in changes and bytes.
//!
//! The session's `View` remembers which tasks the node has and which networks, secrets and
//! configs it was sent, so a referenced object is sent before the first task that needs it
//! and removed after the last task that needed it is gone.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use swarm_api::{AnyObject, Kind};
use swarm_proto::v1::{
    AssignmentChange, AssignmentsMessage, ObjectKind, assignment_change::Action,
    assignments_message::Type,
};
use tokio::sync::mpsc;

use super::DispatcherOptions;
use super::hub::{Attached, HubEvent};
use super::sessions::Session;
use crate::watch_cache::CachedObject;

type Ref = (Kind, String);

fn object_kind(kind: Kind) -> ObjectKind {
    match kind {
        Kind::Task => ObjectKind::Task,
        Kind::Network => ObjectKind::Network,
        Kind::Secret => ObjectKind::Secret,
        Kind::Config => ObjectKind::Config,
        Kind::Service => ObjectKind::Service,
        _ => ObjectKind::Unspecified,
    }
}

fn update(kind: Kind, obj: &CachedObject) -> AssignmentChange {
    AssignmentChange {
        action: Action::Update as i32,
        kind: object_kind(kind) as i32,
        name: obj.obj.name().to_string(),
        object: obj.json.to_vec(),
    }
}

fn remove(kind: Kind, name: &str) -> AssignmentChange {
    AssignmentChange {
        action: Action::Remove as i32,
        kind: object_kind(kind) as i32,
        name: name.to_string(),
        object: Vec::new(),
    }
}

/// What a task references: its service, networks, secrets and configs.
pub fn references(obj: &AnyObject) -> BTreeSet<Ref> {
    let mut refs = BTreeSet::new();
    if let AnyObject::Task(t) = obj {
        refs.insert((Kind::Service, t.spec.service.clone()));
        for n in &t.spec.networks {
            refs.insert((Kind::Network, n.network.clone()));
        }
        for n in &t.spec.template.networks {
            refs.insert((Kind::Network, n.target.clone()));
        }
        for s in &t.spec.template.container.secrets {
            refs.insert((Kind::Secret, s.source.clone()));
        }
        for c in &t.spec.template.container.configs {
            refs.insert((Kind::Config, c.source.clone()));
        }
    }
    refs
}

/// What the node has been sent.
#[derive(Default)]
struct View {
    tasks: HashMap<String, BTreeSet<Ref>>,
    sent: BTreeSet<Ref>,
}

impl View {
    fn referenced(&self, r: &Ref) -> bool {
        self.tasks.values().any(|refs| refs.contains(r))
    }

    fn put_task(
        &mut self,
        obj: &Arc<CachedObject>,
        lookup: impl Fn(Kind, &str) -> Option<Arc<CachedObject>>,
        out: &mut Vec<AssignmentChange>,
    ) {
        let refs = references(&obj.obj);
        for r in &refs {
            if !self.sent.contains(r)
                && let Some(o) = lookup(r.0, &r.1)
            {
                out.push(update(r.0, &o));
                self.sent.insert(r.clone());
            }
        }
        out.push(update(Kind::Task, obj));
        let old = self.tasks.insert(obj.obj.name().to_string(), refs);
        if let Some(old) = old {
            self.release(old, out);
        }
    }

    fn remove_task(&mut self, name: &str, out: &mut Vec<AssignmentChange>) {
        if let Some(refs) = self.tasks.remove(name) {
            out.push(remove(Kind::Task, name));
            self.release(refs, out);
        }
    }

    /// Removes objects in `refs` that no task references any more.
    fn release(&mut self, refs: BTreeSet<Ref>, out: &mut Vec<AssignmentChange>) {
        for r in refs {
            if self.sent.contains(&r) && !self.referenced(&r) {
                self.sent.remove(&r);
                out.push(remove(r.0, &r.1));
            }
        }
    }

    fn object(
        &mut self,
        kind: Kind,
        name: &str,
        obj: Option<&Arc<CachedObject>>,
        out: &mut Vec<AssignmentChange>,
    ) {
        let r = (kind, name.to_string());
        if !self.referenced(&r) {
            return;
        }
        match obj {
            Some(o) => {
                self.sent.insert(r);
                out.push(update(kind, o));
            }
            None => {
                if self.sent.remove(&r) {
                    out.push(remove(kind, name));
                }
            }
        }
    }
}

/// Splits `changes` into messages of at most `max_changes` changes and about `max_bytes`.
pub fn batch(
    kind: Type,
    changes: Vec<AssignmentChange>,
    revision: i64,
    max_changes: usize,
    max_bytes: usize,
) -> Vec<AssignmentsMessage> {
    let mut out = Vec::new();
    let mut cur: Vec<AssignmentChange> = Vec::new();
    let mut bytes = 0;
    for c in changes {
        let size = c.object.len() + c.name.len() + 16;
        if !cur.is_empty() && (cur.len() >= max_changes.max(1) || bytes + size > max_bytes) {
            out.push(std::mem::take(&mut cur));
            bytes = 0;
        }
        bytes += size;
        cur.push(c);
    }
    if !cur.is_empty() || out.is_empty() {
        out.push(cur);
    }
    let n = out.len();
    out.into_iter()
        .enumerate()
        .map(|(i, changes)| AssignmentsMessage {
            r#type: kind as i32,
            more: kind == Type::Complete && i + 1 < n,
            changes,
            revision,
        })
        .collect()
}

type Tx = mpsc::Sender<Result<AssignmentsMessage, tonic::Status>>;

async fn send_all(tx: &Tx, msgs: Vec<AssignmentsMessage>) -> bool {
    for m in msgs {
        if tx.send(Ok(m)).await.is_err() {
            return false;
        }
    }
    true
}

/// Runs one session's stream until the client goes, the session ends or the hub cuts it.
pub async fn run(mut attached: Attached, mut session: Session, opts: DispatcherOptions, tx: Tx) {
    let hub = attached.hub().clone();
    let lookup = |k: Kind, n: &str| hub.object(k, n);
    let mut view = View::default();
    let mut changes = Vec::new();
    for t in std::mem::take(&mut attached.tasks) {
        view.put_task(&t, lookup, &mut changes);
    }
    let (maxc, maxb) = (opts.max_changes_per_message, opts.max_message_bytes);
    let complete = batch(Type::Complete, changes, attached.revision, maxc, maxb);
    if !send_all(&tx, complete).await {
        return;
    }
    loop {
        let first = tokio::select! {
            ev = attached.rx.recv() => ev,
            _ = session.ended.changed() => {
                let _ = tx.send(Err(tonic::Status::aborted("session ended; register again"))).await;
                return;
            }
            _ = tx.closed() => return,
        };
        let Some(first) = first else {
            let why = attached
                .closed
                .get()
                .cloned()
                .unwrap_or_else(|| "the dispatcher is shutting down".to_string());
            let _ = tx.send(Err(tonic::Status::aborted(why))).await;
            return;
        };
        let mut out = Vec::new();
        let mut next = Some(first);
        // Drain what is queued, up to a few messages' worth, into one batch.
        let mut taken = 0;
        while let Some(ev) = next.take() {
            taken += 1;
            match ev {
                HubEvent::TaskPut(t) => view.put_task(&t, lookup, &mut out),
                HubEvent::TaskGone(name) => view.remove_task(&name, &mut out),
                HubEvent::Object { kind, name, obj } => {
                    view.object(kind, &name, obj.as_ref(), &mut out)
                }
            }
            if taken < maxc * 4 {
                next = attached.rx.try_recv().ok();
            }
        }
        if out.is_empty() {
            continue;
        }
        let msgs = batch(Type::Incremental, out, hub.revision(), maxc, maxb);
        if !send_all(&tx, msgs).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(n: usize, size: usize) -> AssignmentChange {
        AssignmentChange {
            action: Action::Update as i32,
            kind: ObjectKind::Task as i32,
            name: format!("t{n}"),
            object: vec![b'x'; size],
        }
    }

    #[test]
    fn complete_sets_are_split_and_marked() {
        let changes: Vec<_> = (0..450).map(|i| change(i, 10)).collect();
        let msgs = batch(Type::Complete, changes, 7, 200, 1 << 20);
        assert_eq!(
            msgs.iter().map(|m| m.changes.len()).collect::<Vec<_>>(),
            [200, 200, 50]
        );
        assert_eq!(
            msgs.iter().map(|m| m.more).collect::<Vec<_>>(),
            [true, true, false]
        );
        // An empty complete set is still one message.
        let empty = batch(Type::Complete, Vec::new(), 7, 200, 1 << 20);
        assert_eq!(empty.len(), 1);
        assert!(!empty[0].more);
    }

    #[test]
    fn messages_are_bounded_in_bytes() {
        let changes: Vec<_> = (0..10).map(|i| change(i, 400)).collect();
        let msgs = batch(Type::Incremental, changes, 1, 200, 1000);
        assert!(msgs.iter().all(|m| m.changes.len() <= 2));
        assert_eq!(msgs.iter().map(|m| m.changes.len()).sum::<usize>(), 10);
        assert!(msgs.iter().all(|m| !m.more));
    }
}
