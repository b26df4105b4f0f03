//! The node side of the log broker: for the length of a session, listen for log subscriptions
//! and publish the lines of this node's containers for each.
//!
//! Each subscription gets a publisher of its own: it opens the runtime's log of every task the
//! subscription names (the runtime only finds containers of this node), merges them, and sends
//! them on a `PublishLogs` stream in bounded messages — at most `MAX_LINES` lines and about
//! `MAX_BYTES` bytes each, sent as soon as lines are ready — ending with `close` when every log
//! has ended (not following). A task whose log cannot be read is reported as a `LogError`. A
//! `close` from the broker, the end of the session, or the broker ending the stream (its reader
//! went away) stops the publisher.

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use swarm_proto::DispatcherClient;
use swarm_proto::v1::{
    LogError, LogLine, LogSubscription, LogSubscriptionsRequest, PublishLogsMessage, log_line,
};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use crate::runtime::{LogRequest, LogSource, Runtime};

/// Lines per `PublishLogs` message.
pub const MAX_LINES: usize = 500;
/// About this many bytes of lines per message (a line is at most 16 KiB).
pub const MAX_BYTES: usize = 256 * 1024;

/// Publishers of open subscriptions, aborted when this is dropped.
#[derive(Default)]
struct Publishers(HashMap<String, AbortHandle>);

impl Publishers {
    fn start(&mut self, id: String, task: tokio::task::JoinHandle<()>) {
        self.0.retain(|_, h| !h.is_finished());
        if let Some(old) = self.0.insert(id, task.abort_handle()) {
            old.abort();
        }
    }

    fn stop(&mut self, id: &str) {
        if let Some(h) = self.0.remove(id) {
            h.abort();
        }
    }
}

impl Drop for Publishers {
    fn drop(&mut self) {
        for h in self.0.values() {
            h.abort();
        }
    }
}

/// Serves log subscriptions for the session `session_id` until its stream ends. A dispatcher
/// without log support (`Unimplemented`) is noted once and left alone.
pub async fn run(client: DispatcherClient<Channel>, session_id: String, rt: Arc<dyn Runtime>) {
    let req = LogSubscriptionsRequest {
        session_id: session_id.clone(),
    };
    let mut subs = match client.clone().log_subscriptions(req).await {
        Ok(r) => r.into_inner(),
        Err(e) if e.code() == tonic::Code::Unimplemented => {
            tracing::warn!(
                "the dispatcher does not serve logs; `swarm service logs` will not reach this node"
            );
            return;
        }
        Err(e) => {
            tracing::debug!(error = %e, "log subscriptions unavailable");
            return;
        }
    };
    let mut publishers = Publishers::default();
    loop {
        let sub = match subs.message().await {
            Ok(Some(s)) => s,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(error = %e, "log subscriptions ended");
                return;
            }
        };
        if sub.close {
            publishers.stop(&sub.id);
            continue;
        }
        tracing::debug!(id = %sub.id, tasks = sub.tasks.len(), "log subscription");
        let id = sub.id.clone();
        let task = tokio::spawn(publish(client.clone(), session_id.clone(), sub, rt.clone()));
        publishers.start(id, task);
    }
}

fn proto_stream(s: LogSource) -> i32 {
    match s {
        LogSource::Stdout => log_line::Stream::Stdout as i32,
        LogSource::Stderr => log_line::Stream::Stderr as i32,
    }
}

/// One item of the merged logs of a subscription.
enum Item {
    Line(LogLine),
    Error(LogError),
}

/// Publishes one subscription until its logs end (not following), the broker stops reading,
/// or this task is aborted.
async fn publish(
    mut client: DispatcherClient<Channel>,
    session_id: String,
    sub: LogSubscription,
    rt: Arc<dyn Runtime>,
) {
    let opts = sub.options.unwrap_or_default();
    let req = LogRequest {
        follow: opts.follow,
        tail: u64::try_from(opts.tail).ok(),
    };
    let sub_id = sub.id.clone();
    let message = move |lines, errors, close| PublishLogsMessage {
        session_id: session_id.clone(),
        subscription_id: sub_id.clone(),
        lines,
        errors,
        close,
    };
    let (tx, rx) = mpsc::channel::<PublishLogsMessage>(4);
    let call = client.publish_logs(ReceiverStream::new(rx));
    let feed = async move {
        let mut logs = Vec::new();
        let mut errors = Vec::new();
        for task in &sub.tasks {
            match rt.logs(task, req).await {
                Ok(lines) => {
                    let task = task.clone();
                    logs.push(
                        lines
                            .map(move |r| match r {
                                Ok(e) => Item::Line(LogLine {
                                    task: task.clone(),
                                    stream: proto_stream(e.source),
                                    timestamp_nanos: e.timestamp_nanos,
                                    data: e.line,
                                }),
                                Err(e) => Item::Error(LogError {
                                    task: task.clone(),
                                    message: e.to_string(),
                                }),
                            })
                            .boxed(),
                    );
                }
                Err(e) => errors.push(LogError {
                    task: task.clone(),
                    message: e.to_string(),
                }),
            }
        }
        // The first message tells the broker the node is at work, even before any line.
        if tx.send(message(Vec::new(), errors, false)).await.is_err() {
            return;
        }
        let mut merged = futures::stream::select_all(logs).ready_chunks(MAX_LINES);
        while let Some(items) = merged.next().await {
            for msg in batches(items) {
                if tx.send(message(msg.0, msg.1, false)).await.is_err() {
                    return; // the broker stopped reading
                }
            }
        }
        let _ = tx.send(message(Vec::new(), Vec::new(), true)).await;
    };
    tokio::pin!(call, feed);
    let result = tokio::select! {
        // The broker answered first: its reader went away; the logs are dropped.
        r = &mut call => r,
        () = &mut feed => call.await,
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "publishing logs ended");
    }
}

/// Splits ready items into messages of at most `MAX_BYTES` of lines.
fn batches(items: Vec<Item>) -> Vec<(Vec<LogLine>, Vec<LogError>)> {
    let mut out = Vec::new();
    let mut lines = Vec::new();
    let mut errors = Vec::new();
    let mut bytes = 0;
    for item in items {
        match item {
            Item::Line(l) => {
                if bytes + l.data.len() > MAX_BYTES && !lines.is_empty() {
                    out.push((std::mem::take(&mut lines), std::mem::take(&mut errors)));
                    bytes = 0;
                }
                bytes += l.data.len() + l.task.len();
                lines.push(l);
            }
            Item::Error(e) => errors.push(e),
        }
    }
    if !lines.is_empty() || !errors.is_empty() {
        out.push((lines, errors));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_stay_under_the_byte_bound() {
        let line = |n: usize| {
            Item::Line(LogLine {
                task: "t".into(),
                stream: 0,
                timestamp_nanos: 0,
                data: vec![b'x'; n],
            })
        };
        let items = vec![
            line(MAX_BYTES / 2),
            line(MAX_BYTES / 2),
            Item::Error(LogError {
                task: "t".into(),
                message: "gone".into(),
            }),
            line(10),
        ];
        let b = batches(items);
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].0.len(), 1);
        assert_eq!((b[1].0.len(), b[1].1.len()), (2, 1));
        assert!(batches(Vec::new()).is_empty());
    }
}
