//! The runtime's events, routed to the runner of the task each one concerns.
//!
//! The runtime broadcasts every container event of the node. Were each runner subscribed to
//! that broadcast, every event would wake every runner of the node just to be filtered out
//! — a node with 100 tasks would do 100 wake-ups per container start. One routing task per
//! node reads the broadcast instead and hands each event to its task's runner only; an event
//! for no task in particular (`task` empty), or a gap in the broadcast, goes to every runner,
//! which then looks at its container again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{broadcast, mpsc};

use crate::runtime::RuntimeEvent;

type Routes = Arc<Mutex<HashMap<String, mpsc::UnboundedSender<RuntimeEvent>>>>;

/// The node's event router; ends its routing task when dropped.
pub struct Events {
    routes: Routes,
    router: tokio::task::AbortHandle,
}

/// The events of one task, for its runner. Dropping it unregisters the task.
pub struct TaskEvents {
    task: String,
    rx: mpsc::UnboundedReceiver<RuntimeEvent>,
    routes: Routes,
}

fn lock(routes: &Routes) -> MutexGuard<'_, HashMap<String, mpsc::UnboundedSender<RuntimeEvent>>> {
    routes.lock().unwrap_or_else(|p| p.into_inner())
}

impl Events {
    /// Starts routing the runtime's events (`Runtime::events`).
    pub fn start(events: broadcast::Receiver<RuntimeEvent>) -> Events {
        let routes: Routes = Arc::default();
        let router = tokio::spawn(route(events, routes.clone())).abort_handle();
        Events { routes, router }
    }

    /// The events of `task` from now on (a later subscription of the same task replaces this
    /// one).
    pub fn subscribe(&self, task: &str) -> TaskEvents {
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&self.routes).insert(task.to_string(), tx);
        TaskEvents {
            task: task.to_string(),
            rx,
            routes: self.routes.clone(),
        }
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        self.router.abort();
    }
}

impl TaskEvents {
    /// The next event of the task (one with an empty `task`: look again, events may have
    /// been missed); never returns once the node's router is gone.
    pub async fn next(&mut self) -> RuntimeEvent {
        match self.rx.recv().await {
            Some(ev) => ev,
            None => std::future::pending().await,
        }
    }
}

impl Drop for TaskEvents {
    fn drop(&mut self) {
        self.rx.close();
        let mut routes = lock(&self.routes);
        // Only this subscription's route: a newer runner of the task may have replaced it.
        if routes.get(&self.task).is_some_and(|tx| tx.is_closed()) {
            routes.remove(&self.task);
        }
    }
}

async fn route(mut events: broadcast::Receiver<RuntimeEvent>, routes: Routes) {
    loop {
        let ev = match events.recv().await {
            Ok(ev) => ev,
            Err(broadcast::error::RecvError::Lagged(_)) => RuntimeEvent {
                task: String::new(),
                exit_code: None,
            },
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let mut routes = lock(&routes);
        if ev.task.is_empty() {
            routes.retain(|_, tx| tx.send(ev.clone()).is_ok());
        } else if let Some(tx) = routes.get(&ev.task)
            && tx.send(ev.clone()).is_err()
        {
            routes.remove(&ev.task);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn event(task: &str) -> RuntimeEvent {
        RuntimeEvent {
            task: task.into(),
            exit_code: None,
        }
    }

    /// Each runner gets its own task's events and the ones for everybody, nothing else; a gap
    /// in the runtime's broadcast reaches everybody as a "look again".
    #[tokio::test]
    async fn events_reach_only_their_tasks_runner() {
        let (runtime, _) = broadcast::channel(16);
        let events = Events::start(runtime.subscribe());
        let mut a = events.subscribe("a");
        let mut b = events.subscribe("b");
        for ev in [event("a"), event(""), event("b")] {
            runtime.send(ev).unwrap();
        }
        assert_eq!(a.next().await, event("a"));
        assert_eq!(a.next().await, event(""));
        assert_eq!(b.next().await, event(""));
        assert_eq!(b.next().await, event("b"));
        // Nothing else is queued for `a`.
        assert!(
            tokio::time::timeout(Duration::from_millis(50), a.next())
                .await
                .is_err()
        );
        // The router fell behind the broadcast: everybody looks again.
        let (runtime, _) = broadcast::channel(1);
        let events2 = Events::start(runtime.subscribe());
        let mut c = events2.subscribe("c");
        runtime.send(event("x")).unwrap();
        runtime.send(event("y")).unwrap();
        assert_eq!(c.next().await, event(""));
        drop(events2);
        // A dropped subscription leaves the routes.
        drop(b);
        assert!(!lock(&events.routes).contains_key("b"));
        assert!(lock(&events.routes).contains_key("a"));
    }
}
