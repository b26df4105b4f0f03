//! The hub: the dispatcher's view of what is assigned to which node.
//!
//! It holds one subscription per kind (Task, Network, Secret, Config) on the apiserver's watch
//! cache — not one per node, so a thousand sessions cost four watches — and keeps:
//! * the tasks visible to each node: `spec.nodeName` set and observed state at least
//!   ASSIGNED (as SwarmKit, a task is handed to its node once placement has assigned it);
//! * the networks, secrets and configs, which sessions send only to nodes whose tasks
//!   reference them.
//!
//! A change is pushed to the owning session's bounded channel. A task update that changes
//! only status (the agent's own report coming back) is not pushed. A session that falls
//! behind is cut off with a reason; its agent reconnects and gets a complete set again.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use swarm_api::{AnyObject, Kind, PortProtocol, PublishMode, TaskHealth, TaskState};
use swarm_proto::v1::Route;
use tokio::sync::{mpsc, watch};

use crate::registry::ListQuery;
use crate::store::{EventType, Revision};
use crate::watch_cache::{CachedObject, Start, WatchCache};

/// The kinds the hub follows.
pub const KINDS: [Kind; 6] = [
    Kind::Task,
    Kind::Network,
    Kind::Secret,
    Kind::Config,
    Kind::Service,
    Kind::Node,
];

/// Room in a session's channel before the session is cut off as too slow.
const SINK_BUFFER: usize = 8192;

/// One change for one session.
#[derive(Clone, Debug)]
pub enum HubEvent {
    /// A task now visible to the node, or whose spec changed.
    TaskPut(Arc<CachedObject>),
    /// A task no longer visible to the node (deleted, moved, or no longer assigned).
    TaskGone(String),
    /// A network, secret or config changed (`None`: deleted). Sent to every session; each
    /// keeps only what its tasks reference.
    Object {
        kind: Kind,
        name: String,
        obj: Option<Arc<CachedObject>>,
    },
}

struct Sink {
    id: u64,
    tx: mpsc::Sender<HubEvent>,
    closed: Arc<OnceLock<String>>,
}

#[derive(Default)]
struct State {
    loaded: usize,
    revision: Revision,
    tasks: HashMap<String, BTreeMap<String, Arc<CachedObject>>>,
    task_node: HashMap<String, String>,
    objects: HashMap<(Kind, String), Arc<CachedObject>>,
    sinks: HashMap<String, Sink>,
    /// Node name → the address other nodes reach it on (for the routing mesh).
    node_addrs: HashMap<String, String>,
    /// Something the routing table depends on changed since it was last computed.
    routes_dirty: bool,
}

/// The node a task is visible to, if any.
fn visible_node(obj: &AnyObject) -> Option<&str> {
    match obj {
        AnyObject::Task(t) if t.status.state >= TaskState::Assigned => t.spec.node_name.as_deref(),
        _ => None,
    }
}

/// Whether a service change matters to agents: its endpoint or its published ports.
fn same_endpoint(a: &AnyObject, b: &AnyObject) -> bool {
    match (a, b) {
        (AnyObject::Service(a), AnyObject::Service(b)) => {
            a.spec.endpoint == b.spec.endpoint && a.status.ports == b.status.ports
        }
        _ => false,
    }
}

fn same_spec(a: &AnyObject, b: &AnyObject) -> bool {
    match (a, b) {
        (AnyObject::Task(a), AnyObject::Task(b)) => a.spec == b.spec,
        _ => false,
    }
}

impl State {
    fn send(&mut self, node: &str, ev: HubEvent) {
        let Some(sink) = self.sinks.get(node) else {
            return;
        };
        if let Err(e) = sink.tx.try_send(ev) {
            if matches!(e, mpsc::error::TrySendError::Full(_)) {
                let _ = sink.closed.set(format!(
                    "assignment stream fell more than {SINK_BUFFER} changes behind; reconnect"
                ));
            }
            self.sinks.remove(node);
        }
    }

    fn put_task(&mut self, obj: Arc<CachedObject>) {
        let name = obj.obj.name().to_string();
        let new_node = visible_node(&obj.obj).map(str::to_string);
        let old_node = self.task_node.get(&name).cloned();
        if let Some(old) = &old_node
            && Some(old) != new_node.as_ref()
        {
            if let Some(m) = self.tasks.get_mut(old) {
                m.remove(&name);
            }
            self.task_node.remove(&name);
            self.send(old, HubEvent::TaskGone(name.clone()));
        }
        if let Some(new) = new_node {
            let prev = self
                .tasks
                .entry(new.clone())
                .or_default()
                .insert(name.clone(), obj.clone());
            self.task_node.insert(name, new.clone());
            if prev.is_none_or(|p| !same_spec(&p.obj, &obj.obj)) {
                self.send(&new, HubEvent::TaskPut(obj));
            }
        }
    }

    fn remove_task(&mut self, name: &str) {
        if let Some(node) = self.task_node.remove(name) {
            if let Some(m) = self.tasks.get_mut(&node) {
                m.remove(name);
            }
            self.send(&node, HubEvent::TaskGone(name.to_string()));
        }
    }

    fn set_object(&mut self, kind: Kind, name: &str, obj: Option<Arc<CachedObject>>) {
        if kind == Kind::Node {
            // Heartbeats change nodes all the time; only an address change matters here.
            let old = match obj.as_ref().map(|o| &o.obj) {
                Some(AnyObject::Node(n)) => self
                    .node_addrs
                    .insert(name.to_string(), n.status.addr.clone()),
                _ => self.node_addrs.remove(name),
            };
            if old.as_deref() != self.node_addrs.get(name).map(String::as_str) {
                self.routes_dirty = true;
            }
            return;
        }
        let key = (kind, name.to_string());
        let prev = match &obj {
            Some(o) => self.objects.insert(key, o.clone()),
            None => self.objects.remove(&key),
        };
        if kind == Kind::Service
            && let (Some(p), Some(o)) = (&prev, &obj)
            && same_endpoint(&p.obj, &o.obj)
        {
            return; // only replica counts and the like changed
        }
        let nodes: Vec<String> = self.sinks.keys().cloned().collect();
        for node in nodes {
            self.send(
                &node,
                HubEvent::Object {
                    kind,
                    name: name.to_string(),
                    obj: obj.clone(),
                },
            );
        }
    }
}

/// What a session gets when it attaches: the node's tasks now, then its channel.
pub struct Attached {
    pub tasks: Vec<Arc<CachedObject>>,
    pub revision: Revision,
    pub rx: mpsc::Receiver<HubEvent>,
    /// Why the hub closed the channel, when it did so on purpose.
    pub closed: Arc<OnceLock<String>>,
    hub: Arc<Hub>,
    node: String,
    id: u64,
}

impl Attached {
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        let mut st = self.hub.lock();
        if st.sinks.get(&self.node).is_some_and(|s| s.id == self.id) {
            st.sinks.remove(&self.node);
        }
    }
}

/// The assignment index over the watch cache.
pub struct Hub {
    state: Mutex<State>,
    ready: watch::Sender<bool>,
    next_id: AtomicU64,
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
    routes: watch::Sender<Arc<Vec<Route>>>,
}

impl Hub {
    /// Starts following the watch cache.
    pub fn start(cache: WatchCache) -> Arc<Hub> {
        let (ready, _) = watch::channel(false);
        let (routes, _) = watch::channel(Arc::new(Vec::new()));
        let hub = Arc::new(Hub {
            state: Mutex::new(State::default()),
            ready,
            next_id: AtomicU64::new(1),
            tasks: Mutex::new(Vec::new()),
            routes,
        });
        let mut handles: Vec<_> = KINDS
            .into_iter()
            .map(|kind| tokio::spawn(hub.clone().follow(cache.clone(), kind)).abort_handle())
            .collect();
        handles.push(tokio::spawn(hub.clone().route_loop()).abort_handle());
        *hub.tasks.lock().unwrap_or_else(|p| p.into_inner()) = handles;
        hub
    }

    /// Stops following the cache and ends every session's channel.
    pub fn stop(&self) {
        for t in self
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            t.abort();
        }
        self.lock().sinks.clear();
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn follow(self: Arc<Self>, cache: WatchCache, kind: Kind) {
        let mut first = true;
        loop {
            let mut sub = match cache.kind(kind).subscribe(None, ListQuery::default()).await {
                Start::Cached(s) => s,
                Start::TooOld => continue, // not returned for a snapshot subscription
            };
            self.load(kind, &sub.initial, sub.revision, first);
            first = false;
            while let Some(ev) = sub.recv().await {
                let mut st = self.lock();
                if kind != Kind::Node {
                    st.routes_dirty = true;
                }
                st.revision = st.revision.max(ev.revision);
                let name = ev.object.obj.name().to_string();
                match (kind, ev.kind) {
                    (Kind::Task, EventType::Put) => st.put_task(ev.object.clone()),
                    (Kind::Task, EventType::Delete) => st.remove_task(&name),
                    (_, EventType::Put) => st.set_object(kind, &name, Some(ev.object.clone())),
                    (_, EventType::Delete) => st.set_object(kind, &name, None),
                }
            }
            let why = sub.closed.get().map(|s| s.message.clone());
            tracing::warn!(%kind, reason = ?why, "dispatcher: cache watch ended; re-listing");
        }
    }

    /// Replaces one kind's state with a snapshot. After the first load, every session is
    /// ended so its agent gets a complete set built from the new state.
    fn load(
        &self,
        kind: Kind,
        initial: &[(crate::watch_cache::WatchEventType, Arc<CachedObject>)],
        revision: Revision,
        first: bool,
    ) {
        let mut st = self.lock();
        st.routes_dirty = true;
        st.revision = st.revision.max(revision);
        if kind == Kind::Node {
            st.node_addrs.clear();
            for (_, obj) in initial {
                if let AnyObject::Node(n) = &obj.obj {
                    st.node_addrs
                        .insert(n.metadata.name.clone(), n.status.addr.clone());
                }
            }
        } else if kind == Kind::Task {
            st.tasks.clear();
            st.task_node.clear();
            for (_, obj) in initial {
                if let Some(node) = visible_node(&obj.obj) {
                    let (node, name) = (node.to_string(), obj.obj.name().to_string());
                    st.tasks
                        .entry(node.clone())
                        .or_default()
                        .insert(name.clone(), obj.clone());
                    st.task_node.insert(name, node);
                }
            }
        } else {
            st.objects.retain(|(k, _), _| *k != kind);
            for (_, obj) in initial {
                st.objects
                    .insert((kind, obj.obj.name().to_string()), obj.clone());
            }
        }
        if first {
            st.loaded += 1;
            if st.loaded == KINDS.len() {
                self.ready.send_replace(true);
            }
        } else {
            for (_, sink) in st.sinks.drain() {
                let _ = sink
                    .closed
                    .set("the dispatcher re-listed; reconnect".to_string());
            }
        }
    }

    /// Attaches the session of `node`, replacing an earlier one of the same node.
    pub async fn attach(self: &Arc<Self>, node: &str) -> Attached {
        let mut ready = self.ready.subscribe();
        let _ = ready.wait_for(|r| *r).await;
        let (tx, rx) = mpsc::channel(SINK_BUFFER);
        let closed = Arc::new(OnceLock::new());
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut st = self.lock();
        let tasks = st
            .tasks
            .get(node)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        if let Some(old) = st.sinks.insert(
            node.to_string(),
            Sink {
                id,
                tx,
                closed: closed.clone(),
            },
        ) {
            let _ = old
                .closed
                .set("replaced by a newer assignment stream".to_string());
        }
        let revision = st.revision;
        drop(st);
        Attached {
            tasks,
            revision,
            rx,
            closed,
            hub: self.clone(),
            node: node.to_string(),
            id,
        }
    }

    /// A network, secret or config as the hub has it.
    pub fn object(&self, kind: Kind, name: &str) -> Option<Arc<CachedObject>> {
        self.lock().objects.get(&(kind, name.to_string())).cloned()
    }

    /// The latest store revision the hub has seen.
    pub fn revision(&self) -> Revision {
        self.lock().revision
    }
}

impl Hub {
    /// The routing mesh's table, recomputed (at most every 200 ms) when tasks, services or
    /// nodes change.
    pub fn routes(&self) -> watch::Receiver<Arc<Vec<Route>>> {
        self.routes.subscribe()
    }

    async fn route_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(200));
        loop {
            tick.tick().await;
            let table = {
                let mut st = self.lock();
                if !std::mem::take(&mut st.routes_dirty) {
                    continue;
                }
                Arc::new(route_table(&st))
            };
            self.routes.send_if_modified(|cur| {
                if **cur == *table {
                    false
                } else {
                    *cur = table.clone();
                    true
                }
            });
        }
    }
}

/// Every ingress-published TCP port, with the running, not unhealthy tasks behind it, each
/// reached on its node's address and the host port Docker bound for it.
fn route_table(st: &State) -> Vec<Route> {
    let mut routes = Vec::new();
    for ((kind, name), obj) in &st.objects {
        let (Kind::Service, AnyObject::Service(svc)) = (kind, &obj.obj) else {
            continue;
        };
        let ports = if svc.status.ports.is_empty() {
            &svc.spec.endpoint.ports
        } else {
            &svc.status.ports
        };
        for p in ports {
            let (PublishMode::Ingress, PortProtocol::Tcp, Some(published)) =
                (p.publish_mode, p.protocol, p.published_port)
            else {
                continue;
            };
            let mut backends = Vec::new();
            for (node, tasks) in &st.tasks {
                let Some(addr) = st.node_addrs.get(node).filter(|a| !a.is_empty()) else {
                    continue;
                };
                for t in tasks.values() {
                    let AnyObject::Task(t) = &t.obj else { continue };
                    if t.spec.service != *name
                        || t.status.state != TaskState::Running
                        || t.spec.desired_state > TaskState::Running
                        || t.status.health == Some(TaskHealth::Unhealthy)
                    {
                        continue;
                    }
                    if let Some(host) = t
                        .status
                        .ports
                        .iter()
                        .find(|tp| tp.target_port == p.target_port && tp.protocol == p.protocol)
                        .and_then(|tp| tp.published_port)
                    {
                        backends.push(format!("{addr}:{host}"));
                    }
                }
            }
            backends.sort();
            routes.push(Route {
                service: name.clone(),
                published_port: u32::from(published),
                protocol: "tcp".into(),
                backends,
            });
        }
    }
    routes.sort_by_key(|r| r.published_port);
    routes
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_api::{EndpointSpec, PortConfig, Service, ServiceSpec, Task, TaskSpec, TaskStatus};

    fn task(name: &str, node: &str, state: TaskState, host_port: Option<u16>) -> Arc<CachedObject> {
        let mut t = Task::new(
            name,
            TaskSpec {
                service: "web".into(),
                node_name: Some(node.into()),
                desired_state: TaskState::Running,
                ..Default::default()
            },
        );
        t.status = TaskStatus {
            state,
            ports: host_port
                .map(|p| PortConfig {
                    target_port: 80,
                    published_port: Some(p),
                    publish_mode: PublishMode::Ingress,
                    ..Default::default()
                })
                .into_iter()
                .collect(),
            ..Default::default()
        };
        CachedObject::new(AnyObject::Task(Box::new(t)))
    }

    #[test]
    fn the_route_table_lists_running_tasks_on_their_nodes() {
        let mut st = State::default();
        let svc = Service::new(
            "web",
            ServiceSpec {
                endpoint: EndpointSpec {
                    ports: vec![PortConfig {
                        target_port: 80,
                        published_port: Some(8000),
                        ..Default::default()
                    }],
                    ..Default::default()
                },
                ..Default::default()
            },
        );
        st.set_object(
            Kind::Service,
            "web",
            Some(CachedObject::new(AnyObject::Service(Box::new(svc)))),
        );
        st.node_addrs.insert("n1".into(), "10.0.0.1".into());
        st.node_addrs.insert("n2".into(), "10.0.0.2".into());
        st.put_task(task("web.1.1", "n1", TaskState::Running, Some(32001)));
        st.put_task(task("web.2.1", "n2", TaskState::Running, Some(32002)));
        st.put_task(task("web.3.1", "n2", TaskState::Starting, Some(32003)));
        st.put_task(task("web.4.1", "n1", TaskState::Running, None));
        let routes = route_table(&st);
        assert_eq!(routes.len(), 1);
        assert_eq!(routes[0].published_port, 8000);
        assert_eq!(routes[0].backends, ["10.0.0.1:32001", "10.0.0.2:32002"]);
        // A task that stopped leaves the table.
        st.put_task(task("web.1.1", "n1", TaskState::Failed, Some(32001)));
        assert_eq!(route_table(&st)[0].backends, ["10.0.0.2:32002"]);
    }
}
