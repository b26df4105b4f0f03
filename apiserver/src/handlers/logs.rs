//! `GET /v1/services/{name}/logs` and `GET /v1/tasks/{name}/logs`: container logs as
//! newline-delimited JSON records (`swarm_api::logs::LogRecord`), through the dispatcher's log
//! broker (the apiserver never talks to Docker; the nodes that run the tasks read them).
//!
//! Query: `follow=true` keeps the stream open for new lines; `tail=N` (or `all`) takes the last
//! N lines of each task; `timestamps=true` adds when each line was written.
//!
//! Which tasks: those of the service (or the one task) that have a node and a container — the
//! running ones and the finished ones still kept, as Docker shows. While following, tasks that
//! get a container later (a scale-up, a replacement) are added as the task watch shows them.
//!
//! The stream ends when every node has sent its lines (not following), when the client goes
//! away, or when the server shuts down. A node that is down or does not answer ends its part
//! with an error record instead of holding the stream open.

use std::collections::HashSet;
use std::convert::Infallible;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use serde::Deserialize;
use swarm_api::logs::LogRecord;
use swarm_api::selector::FieldSelector;
use swarm_api::{AnyObject, Kind, Task};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::{AppState, Params, flag};
use crate::dispatcher::logs::{ReadOptions, Subscriber, TaskRef};
use crate::errors::{ApiError, ApiResult};
use crate::registry::ListQuery;
use crate::watch_cache::Start;

/// Lines buffered between the log task and the HTTP body.
const BODY_BUFFER: usize = 64;

/// The query parameters of the log endpoints.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogParams {
    pub follow: Option<String>,
    pub tail: Option<String>,
    pub timestamps: Option<String>,
}

impl LogParams {
    pub fn options(&self) -> ApiResult<ReadOptions> {
        let tail = match self.tail.as_deref().map(str::trim) {
            None | Some("") | Some("all") => None,
            Some(t) => match t.parse::<i64>() {
                Ok(n) if n < 0 => None,
                Ok(n) => Some(n as u64),
                Err(_) => {
                    return Err(ApiError::bad_request(format!(
                        "invalid tail={t:?}: expected a number of lines or \"all\""
                    )));
                }
            },
        };
        Ok(ReadOptions {
            follow: flag(&self.follow, "follow")?,
            tail,
            timestamps: flag(&self.timestamps, "timestamps")?,
        })
    }
}

pub async fn service_logs(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Params(p): Params<LogParams>,
) -> ApiResult<Response> {
    let opts = p.options()?;
    st.registry.get(Kind::Service, &name).await?;
    stream(st, &format!("spec.service={name}"), opts, false).await
}

pub async fn task_logs(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Params(p): Params<LogParams>,
) -> ApiResult<Response> {
    let opts = p.options()?;
    st.registry.get(Kind::Task, &name).await?;
    stream(st, &format!("metadata.name={name}"), opts, true).await
}

/// A task whose container the broker can ask its node for.
fn readable(t: &Task) -> Option<TaskRef> {
    let node = t.spec.node_name.clone().filter(|n| !n.is_empty())?;
    if t.status.container_id.is_empty() {
        return None;
    }
    Some(TaskRef {
        name: t.metadata.name.clone(),
        task_id: t.metadata.uid.replace('-', ""),
        service: t.spec.service.clone(),
        slot: t.spec.slot,
        node,
    })
}

fn as_task(obj: &AnyObject) -> Option<&Task> {
    match obj {
        AnyObject::Task(t) => Some(t),
        _ => None,
    }
}

/// Adds the readable tasks among `objects` that `seen` does not hold yet.
fn add_new<'a>(
    logs: &Subscriber,
    seen: &mut HashSet<String>,
    objects: impl Iterator<Item = &'a AnyObject>,
) -> Vec<String> {
    let mut unreadable = Vec::new();
    let mut fresh = Vec::new();
    for t in objects.filter_map(as_task) {
        match readable(t) {
            Some(r) => {
                if seen.insert(r.name.clone()) {
                    fresh.push(r);
                }
            }
            None => unreadable.push(format!(
                "task {} has no container yet (state {})",
                t.metadata.name, t.status.state
            )),
        }
    }
    fresh.sort_by(|a, b| a.name.cmp(&b.name));
    logs.add(fresh);
    unreadable
}

fn record_line(r: &LogRecord) -> Bytes {
    let mut v = serde_json::to_vec(r).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

async fn stream(
    st: AppState,
    selector: &str,
    opts: ReadOptions,
    one_task: bool,
) -> ApiResult<Response> {
    let fields = FieldSelector::parse_for(Kind::Task, selector)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let filter = ListQuery {
        fields,
        ..ListQuery::default()
    };
    let tasks = st.cache.kind(Kind::Task);
    let Start::Cached(mut watch) = tasks.subscribe(None, filter.clone()).await else {
        return Err(ApiError::internal("the task cache could not start a watch"));
    };
    let logs = st.logs.subscribe(opts);
    let mut seen = HashSet::new();
    let initial = std::mem::take(&mut watch.initial);
    let unreadable = add_new(&logs, &mut seen, initial.iter().map(|(_, o)| &o.obj));
    let mut pending: Vec<Bytes> = Vec::new();
    if one_task && !opts.follow {
        // Asked for one task by name: say why nothing comes.
        for why in unreadable {
            pending.push(record_line(&LogRecord {
                error: why,
                ..LogRecord::default()
            }));
        }
    }
    let watch = if opts.follow {
        Some(watch)
    } else {
        logs.seal();
        None
    };
    let (tx, rx) = mpsc::channel::<Bytes>(BODY_BUFFER);
    let mut shutdown = st.shutdown.clone();
    tokio::spawn(async move {
        let mut logs = logs;
        let mut watch = watch;
        let mut seen = seen;
        for line in pending {
            if tx.send(line).await.is_err() {
                return;
            }
        }
        loop {
            tokio::select! {
                r = logs.next() => match r {
                    Some(r) => if tx.send(record_line(&r)).await.is_err() { return },
                    None => return,
                },
                ev = next_task(&mut watch) => match ev {
                    Some(obj) => { add_new(&logs, &mut seen, std::iter::once(&obj)); }
                    None => {
                        // The cache cut the watch off (slow, or re-listed): watch again
                        // from a fresh snapshot; tasks already followed are skipped.
                        watch = match tasks.subscribe(None, filter.clone()).await {
                            Start::Cached(mut w) => {
                                let initial = std::mem::take(&mut w.initial);
                                add_new(&logs, &mut seen, initial.iter().map(|(_, o)| &o.obj));
                                Some(w)
                            }
                            Start::TooOld => None,
                        };
                    }
                },
                _ = tx.closed() => return,
                _ = async { shutdown.wait_for(|s| *s).await.is_ok() } => return,
            }
        }
    });
    let body = Body::from_stream(ReceiverStream::new(rx).map(Ok::<_, Infallible>));
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        body,
    )
        .into_response())
}

/// The next task the watch reports as added or changed; never when there is no watch; `None`
/// when the watch was cut off.
async fn next_task(watch: &mut Option<crate::watch_cache::Subscription>) -> Option<AnyObject> {
    let Some(w) = watch.as_mut() else {
        return std::future::pending().await;
    };
    loop {
        let ev = w.recv().await?;
        if ev.kind == crate::store::EventType::Put && w.filter.matches(&ev.object.obj) {
            return Some(ev.object.obj.clone());
        }
    }
}
