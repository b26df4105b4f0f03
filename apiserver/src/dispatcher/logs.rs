//! The log broker: how container logs travel from node agents to a REST client, as SwarmKit's
//! log broker does it.
//!
//! A REST reader opens a [`Subscriber`] and adds the tasks it wants ([`Subscriber::add`]). The
//! broker groups them by node and sends each node a *part*: a `LogSubscription` with its own id
//! and that node's task names, over the node's `LogSubscriptions` stream ([`LogBroker::listen`]).
//! The node answers on a `PublishLogs` stream of its own for that part ([`LogBroker::publish`]);
//! its lines become [`LogRecord`]s in the subscriber's channel, which the REST handler writes
//! out as they come, so a slow reader slows the node's stream down instead of piling lines up.
//!
//! A node may publish only for parts sent to it, and only lines of the tasks a part names;
//! anything else ends its stream with `PermissionDenied`.
//!
//! Every part ends, one way or another, with either the node's `close` or an error record:
//! the node is not connected, its session ends, its stream breaks, or — when not following —
//! it stays silent for `answer_timeout`. When the reader goes away (the [`Subscriber`] is
//! dropped) every open part is withdrawn with a `close` message to its node, and the node's
//! next publish finds the part gone and stops. Without `follow`, a subscription ends once it
//! is sealed ([`Subscriber::seal`]: no more tasks will be added) and all its parts have ended.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::{Stream, StreamExt};
use swarm_api::logs::{LogRecord, LogStream};
use swarm_proto::v1::{
    LogOptions, LogSubscription, PublishLogsMessage, PublishLogsResponse, log_line,
};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::sessions::Session;

/// Subscriptions queued for one node before it is considered stuck.
const NODE_QUEUE: usize = 64;
/// Records queued between the broker and one REST reader.
const READER_QUEUE: usize = 256;
/// How long a node may stay silent on a part that does not follow, by default.
pub const DEFAULT_ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// A task whose logs are wanted, with what its records carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskRef {
    pub name: String,
    /// The uid without dashes.
    pub task_id: String,
    pub service: String,
    pub slot: Option<u64>,
    pub node: String,
}

/// What a reader asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadOptions {
    pub follow: bool,
    /// The last N lines of each task; `None`: all.
    pub tail: Option<u64>,
    /// Records carry the time the container wrote the line.
    pub timestamps: bool,
}

struct Listener {
    /// Tells one registration of a node from the next.
    generation: u64,
    tx: mpsc::Sender<LogSubscription>,
}

struct Part {
    sub: u64,
    node: String,
    tasks: HashMap<String, TaskRef>,
    /// Set when the node's last message arrived (or the part was sent).
    last_heard: Instant,
    /// A publish stream has taken the part (a second one is refused).
    taken: bool,
}

struct Sub {
    out: mpsc::Sender<LogRecord>,
    opts: ReadOptions,
    parts: HashSet<String>,
    sealed: bool,
}

#[derive(Default)]
struct State {
    next_id: u64,
    listeners: HashMap<String, Listener>,
    parts: HashMap<String, Part>,
    subs: HashMap<u64, Sub>,
}

impl State {
    fn next(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }
}

/// The broker; cheap to clone (clones share one broker).
#[derive(Clone)]
pub struct LogBroker {
    state: Arc<Mutex<State>>,
    answer_timeout: Duration,
}

impl std::fmt::Debug for LogBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogBroker")
            .field("answer_timeout", &self.answer_timeout)
            .finish_non_exhaustive()
    }
}

impl Default for LogBroker {
    fn default() -> Self {
        LogBroker::new(DEFAULT_ANSWER_TIMEOUT)
    }
}

/// An error record about `task` (or about the whole node when `task` is `None`).
fn error_record(node: &str, task: Option<&TaskRef>, message: String) -> LogRecord {
    let mut r = LogRecord {
        node: node.to_string(),
        error: message,
        ..LogRecord::default()
    };
    if let Some(t) = task {
        r.task = t.name.clone();
        r.task_id = t.task_id.clone();
        r.service = t.service.clone();
        r.slot = t.slot;
    }
    r
}

/// RFC 3339 with nanoseconds, as `docker logs -t` prints it.
fn rfc3339_nanos(nanos: i64) -> Option<String> {
    if nanos <= 0 {
        return None;
    }
    let t = std::time::UNIX_EPOCH + Duration::from_nanos(nanos as u64);
    Some(humantime::format_rfc3339_nanos(t).to_string())
}

impl LogBroker {
    /// A broker whose non-following parts fail after `answer_timeout` of silence from a node.
    pub fn new(answer_timeout: Duration) -> LogBroker {
        LogBroker {
            state: Arc::new(Mutex::new(State::default())),
            answer_timeout,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens a subscription for a reader.
    pub fn subscribe(&self, opts: ReadOptions) -> Subscriber {
        let (out, rx) = mpsc::channel(READER_QUEUE);
        let mut st = self.lock();
        let id = st.next();
        st.subs.insert(
            id,
            Sub {
                out,
                opts,
                parts: HashSet::new(),
                sealed: false,
            },
        );
        Subscriber {
            id,
            broker: self.clone(),
            rx,
        }
    }

    /// The subscription stream of one node's session: parts to serve, and `close` for parts
    /// withdrawn. It ends when the session ends or the node goes away; the node's open parts
    /// then end with an error record.
    pub fn listen(&self, session: Session) -> ReceiverStream<Result<LogSubscription, Status>> {
        let (tx, mut rx) = mpsc::channel(NODE_QUEUE);
        let generation = {
            let mut st = self.lock();
            let generation = st.next();
            if let Some(old) = st
                .listeners
                .insert(session.node.clone(), Listener { generation, tx })
            {
                drop(old);
                let msg = format!(
                    "node {} registered again; its earlier logs end",
                    session.node
                );
                self.fail_node_parts(&mut st, &session.node, &msg);
            }
            generation
        };
        let (out_tx, out_rx) = mpsc::channel(NODE_QUEUE);
        let broker = self.clone();
        let mut ended = session.ended.clone();
        let node = session.node.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    sub = rx.recv() => match sub {
                        Some(s) => if out_tx.send(Ok(s)).await.is_err() { break },
                        None => break,
                    },
                    ended_now = async { ended.wait_for(|e| *e).await.is_ok() } => {
                        if ended_now {
                            let _ = out_tx
                                .send(Err(Status::aborted("session ended; register again")))
                                .await;
                        }
                        break;
                    }
                    _ = out_tx.closed() => break,
                }
            }
            broker.unlisten(&node, generation);
        });
        ReceiverStream::new(out_rx)
    }

    /// The node's subscription stream ended: its open parts end with an error.
    fn unlisten(&self, node: &str, generation: u64) {
        let mut st = self.lock();
        if st.listeners.get(node).map(|l| l.generation) != Some(generation) {
            return; // a newer registration took over
        }
        st.listeners.remove(node);
        let msg = format!("node {node} disconnected; its logs end here");
        self.fail_node_parts(&mut st, node, &msg);
        tracing::debug!(%node, "log subscriptions stream ended");
    }

    fn fail_node_parts(&self, st: &mut State, node: &str, message: &str) {
        let ids: Vec<String> = st
            .parts
            .iter()
            .filter(|(_, p)| p.node == node)
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            self.end_part(st, &id, Some(message.to_string()));
        }
    }

    /// Ends a part: an error record for each of its tasks when `error` is set, and the end of
    /// its subscription when that was its last part.
    fn end_part(&self, st: &mut State, id: &str, error: Option<String>) {
        let Some(part) = st.parts.remove(id) else {
            return;
        };
        let Some(sub) = st.subs.get_mut(&part.sub) else {
            return;
        };
        sub.parts.remove(id);
        if let Some(message) = error {
            let mut tasks: Vec<&TaskRef> = part.tasks.values().collect();
            tasks.sort_by(|a, b| a.name.cmp(&b.name));
            for t in tasks {
                send_detached(&sub.out, error_record(&part.node, Some(t), message.clone()));
            }
        }
        if sub.sealed && sub.parts.is_empty() && !sub.opts.follow {
            st.subs.remove(&part.sub);
        }
    }

    /// Sends the part for `tasks` (all on `node`) of subscription `sub`.
    fn add_part(&self, sub_id: u64, node: &str, tasks: Vec<TaskRef>) {
        let mut st = self.lock();
        let Some(opts) = st.subs.get(&sub_id).map(|s| s.opts) else {
            return;
        };
        let id = format!("{sub_id}.{}", st.next());
        let names: Vec<String> = tasks.iter().map(|t| t.name.clone()).collect();
        st.parts.insert(
            id.clone(),
            Part {
                sub: sub_id,
                node: node.to_string(),
                tasks: tasks.into_iter().map(|t| (t.name.clone(), t)).collect(),
                last_heard: Instant::now(),
                taken: false,
            },
        );
        if let Some(sub) = st.subs.get_mut(&sub_id) {
            sub.parts.insert(id.clone());
        }
        let msg = LogSubscription {
            id: id.clone(),
            tasks: names,
            options: Some(LogOptions {
                follow: opts.follow,
                tail: opts.tail.map_or(-1, |n| n.min(i64::MAX as u64) as i64),
            }),
            close: false,
        };
        let sent = match st.listeners.get(node) {
            None => Err(format!(
                "node {node} is not connected to this manager; its logs are unavailable"
            )),
            Some(l) => l.tx.try_send(msg).map_err(|_| {
                format!("node {node} is not taking log subscriptions; its logs are unavailable")
            }),
        };
        match sent {
            Err(message) => self.end_part(&mut st, &id, Some(message)),
            Ok(()) if !opts.follow => {
                drop(st);
                self.watch_silence(id);
            }
            Ok(()) => {}
        }
    }

    /// Ends a non-following part when its node stays silent for `answer_timeout`.
    fn watch_silence(&self, id: String) {
        let broker = self.clone();
        let timeout = self.answer_timeout;
        tokio::spawn(async move {
            loop {
                let due = match broker.lock().parts.get(&id) {
                    None => return,
                    Some(p) => p.last_heard + timeout,
                };
                tokio::time::sleep_until(due).await;
                let mut st = broker.lock();
                let Some(p) = st.parts.get(&id) else { return };
                if p.last_heard + timeout <= Instant::now() {
                    let message = format!(
                        "node {} did not send logs within {}s; its logs end here",
                        p.node,
                        timeout.as_secs_f64()
                    );
                    broker.end_part(&mut st, &id, Some(message));
                    return;
                }
            }
        });
    }

    /// Withdraws every part of a subscription (its reader went away).
    fn close(&self, sub_id: u64) {
        let mut st = self.lock();
        let Some(sub) = st.subs.remove(&sub_id) else {
            return;
        };
        for id in sub.parts {
            let Some(part) = st.parts.remove(&id) else {
                continue;
            };
            if let Some(l) = st.listeners.get(&part.node) {
                let _ = l.tx.try_send(LogSubscription {
                    id,
                    close: true,
                    ..LogSubscription::default()
                });
            }
        }
    }

    fn seal(&self, sub_id: u64) {
        let mut st = self.lock();
        let Some(sub) = st.subs.get_mut(&sub_id) else {
            return;
        };
        sub.sealed = true;
        if sub.parts.is_empty() && !sub.opts.follow {
            st.subs.remove(&sub_id);
        }
    }

    /// Serves one `PublishLogs` stream of `node`, whose first message is `first`. Ends when the
    /// node closes the part, the reader goes away, or the stream breaks.
    pub async fn publish<S>(
        &self,
        node: &str,
        first: PublishLogsMessage,
        mut rest: S,
    ) -> Result<PublishLogsResponse, Status>
    where
        S: Stream<Item = Result<PublishLogsMessage, Status>> + Unpin,
    {
        let id = first.subscription_id.clone();
        let session = first.session_id.clone();
        {
            let mut st = self.lock();
            match st.parts.get_mut(&id) {
                None => return Ok(PublishLogsResponse {}), // withdrawn or ended: stop
                Some(p) if p.node != node => {
                    return Err(Status::permission_denied(format!(
                        "log subscription {id:?} was not sent to node {node}"
                    )));
                }
                Some(p) if p.taken => {
                    return Err(Status::already_exists(format!(
                        "log subscription {id:?} is already being published"
                    )));
                }
                Some(p) => p.taken = true,
            }
        }
        let mut msg = Some(first);
        loop {
            let m = match msg.take() {
                Some(m) => m,
                None => match rest.next().await {
                    Some(Ok(m)) => m,
                    Some(Err(e)) => {
                        let mut st = self.lock();
                        let message = format!("node {node} stopped sending logs: {}", e.message());
                        self.end_part(&mut st, &id, Some(message));
                        return Err(e);
                    }
                    None => {
                        let mut st = self.lock();
                        let message = format!("node {node} stopped sending logs");
                        self.end_part(&mut st, &id, Some(message));
                        return Ok(PublishLogsResponse {});
                    }
                },
            };
            if m.subscription_id != id || m.session_id != session {
                let mut st = self.lock();
                self.end_part(
                    &mut st,
                    &id,
                    Some(format!("node {node} broke the log protocol")),
                );
                return Err(Status::invalid_argument(
                    "every message of a PublishLogs stream must name the same session and subscription",
                ));
            }
            let (records, out, close) = {
                let mut guard = self.lock();
                let st: &mut State = &mut guard;
                let Some(part) = st.parts.get_mut(&id) else {
                    return Ok(PublishLogsResponse {}); // the reader went away
                };
                part.last_heard = Instant::now();
                let Some(sub) = st.subs.get(&part.sub) else {
                    return Ok(PublishLogsResponse {});
                };
                let (timestamps, out) = (sub.opts.timestamps, sub.out.clone());
                let mut records = Vec::with_capacity(m.lines.len() + m.errors.len());
                let mut stranger = None;
                for line in m.lines {
                    match part.tasks.get(&line.task) {
                        Some(t) => records.push(line_record(t, line, timestamps)),
                        None => {
                            stranger = Some(line.task);
                            break;
                        }
                    }
                }
                if let Some(task) = stranger {
                    let message = format!("node {node} sent logs of a task it was not asked for");
                    self.end_part(st, &id, Some(message));
                    return Err(Status::permission_denied(format!(
                        "task {task:?} is not part of log subscription {id:?}"
                    )));
                }
                for e in m.errors {
                    records.push(error_record(node, part.tasks.get(&e.task), e.message));
                }
                (records, Some(out), m.close)
            };
            let Some(out) = out else {
                return Ok(PublishLogsResponse {});
            };
            for r in records {
                if out.send(r).await.is_err() {
                    return Ok(PublishLogsResponse {}); // the reader went away
                }
            }
            if close {
                let mut st = self.lock();
                self.end_part(&mut st, &id, None);
                return Ok(PublishLogsResponse {});
            }
        }
    }

    /// Open parts, subscriptions and listening nodes (tests, metrics).
    pub fn counts(&self) -> (usize, usize, usize) {
        let st = self.lock();
        (st.parts.len(), st.subs.len(), st.listeners.len())
    }
}

fn line_record(t: &TaskRef, line: swarm_proto::v1::LogLine, timestamps: bool) -> LogRecord {
    let stream = match log_line::Stream::try_from(line.stream) {
        Ok(log_line::Stream::Stderr) => LogStream::Stderr,
        _ => LogStream::Stdout,
    };
    LogRecord {
        task: t.name.clone(),
        task_id: t.task_id.clone(),
        node: t.node.clone(),
        service: t.service.clone(),
        slot: t.slot,
        stream,
        timestamp: if timestamps {
            rfc3339_nanos(line.timestamp_nanos)
        } else {
            None
        },
        line: String::from_utf8_lossy(&line.data).into_owned(),
        error: String::new(),
    }
}

/// Hands a record over without waiting (from code that holds the broker's lock): at once if
/// there is room, else from a task of its own.
fn send_detached(out: &mpsc::Sender<LogRecord>, r: LogRecord) {
    match out.try_send(r) {
        Ok(()) => {}
        Err(mpsc::error::TrySendError::Full(r)) => {
            let out = out.clone();
            tokio::spawn(async move {
                let _ = out.send(r).await;
            });
        }
        Err(mpsc::error::TrySendError::Closed(_)) => {}
    }
}

/// One reader's subscription. Dropping it withdraws every open part.
pub struct Subscriber {
    id: u64,
    broker: LogBroker,
    rx: mpsc::Receiver<LogRecord>,
}

impl Subscriber {
    /// Adds tasks: one part per node. Tasks without a node are skipped.
    pub fn add(&self, tasks: Vec<TaskRef>) {
        let mut by_node: HashMap<String, Vec<TaskRef>> = HashMap::new();
        for t in tasks {
            if !t.node.is_empty() {
                by_node.entry(t.node.clone()).or_default().push(t);
            }
        }
        let mut nodes: Vec<(String, Vec<TaskRef>)> = by_node.into_iter().collect();
        nodes.sort_by(|a, b| a.0.cmp(&b.0));
        for (node, tasks) in nodes {
            self.broker.add_part(self.id, &node, tasks);
        }
    }

    /// No more tasks will be added: without `follow`, the subscription ends once its parts
    /// have.
    pub fn seal(&self) {
        self.broker.seal(self.id);
    }

    /// The next record; `None` once the subscription has ended.
    pub async fn next(&mut self) -> Option<LogRecord> {
        self.rx.recv().await
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.broker.close(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatcher::sessions::Sessions;
    use swarm_proto::v1::{LogError, LogLine};

    fn task(name: &str, node: &str) -> TaskRef {
        TaskRef {
            name: name.into(),
            task_id: format!("id-{name}"),
            service: "web".into(),
            slot: name.split('.').nth(1).and_then(|s| s.parse().ok()),
            node: node.into(),
        }
    }

    fn line(task: &str, text: &str) -> LogLine {
        LogLine {
            task: task.into(),
            stream: log_line::Stream::Stdout as i32,
            timestamp_nanos: 1_767_225_600_000_000_001,
            data: text.as_bytes().to_vec(),
        }
    }

    fn msg(session: &str, sub: &str, lines: Vec<LogLine>, close: bool) -> PublishLogsMessage {
        PublishLogsMessage {
            session_id: session.into(),
            subscription_id: sub.into(),
            lines,
            errors: Vec::new(),
            close,
        }
    }

    /// Publishes `msgs` as one stream of `node`.
    async fn publish(
        b: &LogBroker,
        node: &str,
        mut msgs: Vec<PublishLogsMessage>,
    ) -> Result<PublishLogsResponse, Status> {
        let first = msgs.remove(0);
        b.publish(node, first, futures::stream::iter(msgs.into_iter().map(Ok)))
            .await
    }

    async fn drain(s: &mut Subscriber) -> Vec<LogRecord> {
        let mut out = Vec::new();
        while let Some(r) = tokio::time::timeout(Duration::from_secs(10), s.next())
            .await
            .expect("the subscription ends")
        {
            out.push(r);
        }
        out
    }

    #[tokio::test]
    async fn lines_of_several_nodes_fan_in_and_the_subscription_ends() {
        let b = LogBroker::default();
        let sessions = Sessions::default();
        let (s1, s2) = (sessions.open("n1"), sessions.open("n2"));
        let mut l1 = b.listen(s1.clone());
        let mut l2 = b.listen(s2.clone());
        let mut sub = b.subscribe(ReadOptions {
            tail: Some(1),
            timestamps: true,
            ..Default::default()
        });
        sub.add(vec![task("web.1.1", "n1"), task("web.2.1", "n2")]);
        sub.seal();
        let p1 = l1.next().await.unwrap().unwrap();
        let p2 = l2.next().await.unwrap().unwrap();
        assert_eq!(p1.tasks, vec!["web.1.1"]);
        assert_eq!(p2.tasks, vec!["web.2.1"]);
        assert_eq!(p1.options.unwrap().tail, 1);
        assert_ne!(p1.id, p2.id);
        publish(
            &b,
            "n1",
            vec![msg(&s1.id, &p1.id, vec![line("web.1.1", "a")], true)],
        )
        .await
        .unwrap();
        publish(
            &b,
            "n2",
            vec![
                msg(&s2.id, &p2.id, vec![line("web.2.1", "b")], false),
                msg(&s2.id, &p2.id, vec![], true),
            ],
        )
        .await
        .unwrap();
        let got = drain(&mut sub).await;
        let lines: Vec<(&str, &str, &str)> = got
            .iter()
            .map(|r| (r.task.as_str(), r.node.as_str(), r.line.as_str()))
            .collect();
        assert_eq!(lines, vec![("web.1.1", "n1", "a"), ("web.2.1", "n2", "b")]);
        assert_eq!(got[0].slot, Some(1));
        assert_eq!(got[0].task_id, "id-web.1.1");
        assert_eq!(
            got[0].timestamp.as_deref(),
            Some("2026-01-01T00:00:00.000000001Z")
        );
        assert_eq!(b.counts(), (0, 0, 2));
    }

    #[tokio::test]
    async fn a_node_may_publish_only_its_parts_and_their_tasks() {
        let b = LogBroker::default();
        let sessions = Sessions::default();
        let (s1, s2) = (sessions.open("n1"), sessions.open("n2"));
        let mut l1 = b.listen(s1.clone());
        let _l2 = b.listen(s2.clone());
        let mut sub = b.subscribe(ReadOptions::default());
        sub.add(vec![task("web.1.1", "n1")]);
        sub.seal();
        let p1 = l1.next().await.unwrap().unwrap();
        // Another node cannot publish for n1's part.
        let e = publish(
            &b,
            "n2",
            vec![msg(&s2.id, &p1.id, vec![line("web.1.1", "x")], true)],
        )
        .await
        .unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        // n1 cannot publish lines of a task the part does not name.
        let e = publish(
            &b,
            "n1",
            vec![msg(&s1.id, &p1.id, vec![line("db.1.1", "x")], true)],
        )
        .await
        .unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        let got = drain(&mut sub).await;
        assert_eq!(got.len(), 1);
        assert!(got[0].is_error(), "{got:?}");
        assert!(!got.iter().any(|r| r.line == "x"));
    }

    #[tokio::test]
    async fn a_node_that_is_not_connected_or_goes_away_ends_its_part_with_an_error() {
        let b = LogBroker::default();
        let sessions = Sessions::default();
        let s1 = sessions.open("n1");
        let l1 = b.listen(s1.clone());
        let mut sub = b.subscribe(ReadOptions::default());
        sub.add(vec![task("web.1.1", "n1"), task("web.2.1", "gone")]);
        sub.seal();
        // n1 disconnects before answering.
        drop(l1);
        let got = drain(&mut sub).await;
        let mut errors: Vec<(&str, &str)> = got
            .iter()
            .map(|r| (r.task.as_str(), r.error.as_str()))
            .collect();
        errors.sort();
        assert_eq!(
            errors,
            vec![
                ("web.1.1", "node n1 disconnected; its logs end here"),
                (
                    "web.2.1",
                    "node gone is not connected to this manager; its logs are unavailable"
                ),
            ]
        );
        assert_eq!(b.counts(), (0, 0, 0));
    }

    #[tokio::test]
    async fn a_silent_node_ends_its_part_after_the_answer_timeout() {
        let b = LogBroker::new(Duration::from_millis(50));
        let sessions = Sessions::default();
        let s1 = sessions.open("n1");
        let _l1 = b.listen(s1);
        let mut sub = b.subscribe(ReadOptions::default());
        sub.add(vec![task("web.1.1", "n1")]);
        sub.seal();
        let got = drain(&mut sub).await;
        assert_eq!(got.len(), 1);
        assert!(got[0].error.contains("did not send logs within"), "{got:?}");
    }

    #[tokio::test]
    async fn a_reader_going_away_withdraws_its_parts() {
        let b = LogBroker::default();
        let sessions = Sessions::default();
        let s1 = sessions.open("n1");
        let mut l1 = b.listen(s1.clone());
        let sub = b.subscribe(ReadOptions {
            follow: true,
            ..Default::default()
        });
        sub.add(vec![task("web.1.1", "n1")]);
        let p1 = l1.next().await.unwrap().unwrap();
        assert!(p1.options.unwrap().follow);
        drop(sub);
        let closed = l1.next().await.unwrap().unwrap();
        assert_eq!((closed.id.as_str(), closed.close), (p1.id.as_str(), true));
        // The node's next publish finds the part gone and ends quietly.
        publish(
            &b,
            "n1",
            vec![msg(&s1.id, &p1.id, vec![line("web.1.1", "a")], false)],
        )
        .await
        .unwrap();
        assert_eq!(b.counts(), (0, 0, 1));
    }

    #[tokio::test]
    async fn following_subscriptions_take_tasks_added_later_and_errors_of_the_node() {
        let b = LogBroker::default();
        let sessions = Sessions::default();
        let s1 = sessions.open("n1");
        let mut l1 = b.listen(s1.clone());
        let mut sub = b.subscribe(ReadOptions {
            follow: true,
            ..Default::default()
        });
        sub.seal();
        sub.add(vec![task("web.1.1", "n1")]);
        let p1 = l1.next().await.unwrap().unwrap();
        let mut m = msg(&s1.id, &p1.id, vec![line("web.1.1", "first")], true);
        m.errors.push(LogError {
            task: "web.1.1".into(),
            message: "container is gone".into(),
        });
        publish(&b, "n1", vec![m]).await.unwrap();
        assert_eq!(sub.next().await.unwrap().line, "first");
        assert_eq!(sub.next().await.unwrap().error, "container is gone");
        // A task that starts later (a scale-up) gets a part of its own.
        sub.add(vec![task("web.2.1", "n1")]);
        let p2 = l1.next().await.unwrap().unwrap();
        assert_eq!(p2.tasks, vec!["web.2.1"]);
        publish(
            &b,
            "n1",
            vec![msg(&s1.id, &p2.id, vec![line("web.2.1", "later")], false)],
        )
        .await
        .unwrap();
        assert_eq!(sub.next().await.unwrap().line, "later");
    }
}
