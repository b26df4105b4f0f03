//! `GET /v1/<plural>?watch=true`: a stream of newline-delimited JSON events.
//!
//! Where the events come from depends on `resourceVersion`:
//! * absent or `"0"`: the watch cache's current objects as `ADDED`, then live events
//!   (`kubectl get -w`);
//! * `N` within the cache's window: every event after `N` replayed from memory, then live;
//! * `N` older than the window but not compacted: a store watch of its own from `N` (the rare
//!   "client was away a long time" case; it does not switch over to the cache later);
//! * `N` compacted: 410 `Expired` before any streaming starts.
//!
//! Each client watch runs as a task writing lines into a small channel that feeds the HTTP
//! body. The task ends when the client goes away, the cache cuts the watch off (then it writes
//! an `ERROR` line first), `timeoutSeconds` passes, or the server shuts down. With
//! `allowWatchBookmarks=true` it sends a `BOOKMARK` every `bookmark_interval`, carrying a
//! revision up to which the client has seen everything.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use swarm_api::{Kind, Status, StatusReason};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::list::ListParams;
use super::{AppState, flag};
use crate::codec::{decode_stored, parse_revision};
use crate::errors::{ApiError, ApiResult};
use crate::registry::ListQuery;
use crate::store::{EventType, Revision, StoreError, WatchStream};
use crate::watch_cache::{
    CachedEvent, CachedObject, Start, Subscription, bookmark_line, error_line, event_line,
};

/// Lines buffered between the watch task and the HTTP body.
const BODY_BUFFER: usize = 16;

pub async fn watch(st: AppState, kind: Kind, p: ListParams) -> ApiResult<Response> {
    let filter = p.query(kind)?;
    let bookmarks = flag(&p.allow_watch_bookmarks, "allowWatchBookmarks")?;
    let timeout = match p.timeout_seconds.as_deref() {
        None | Some("") => None,
        Some(t) => Some(Duration::from_secs(t.parse::<u64>().map_err(|_| {
            ApiError::bad_request(format!("invalid timeoutSeconds {t:?}"))
        })?)),
    };
    let after = parse_revision(p.resource_version.as_deref().unwrap_or(""))?.filter(|n| *n > 0);
    if let Some(n) = after {
        let compacted = st.registry.store().compacted_revision().await?;
        if n < compacted {
            return Err(ApiError::from(StoreError::Compacted {
                requested: n,
                compacted,
            }));
        }
    }
    let source = match st.cache.kind(kind).subscribe(after, filter.clone()).await {
        Start::Cached(sub) => Source::Cache(sub),
        Start::TooOld => {
            let n = after.unwrap_or(0);
            let stream = st.registry.store().watch(&kind.key_prefix(), n).await?;
            Source::Store {
                stream,
                filter: Arc::new(filter),
                last: n,
            }
        }
    };
    let (tx, rx) = mpsc::channel::<Bytes>(BODY_BUFFER);
    let task = WatchTask {
        kind,
        tx,
        bookmarks,
        interval: st.bookmark_interval,
        timeout,
        shutdown: st.shutdown.clone(),
    };
    let guard = st.metrics.watch_opened(kind);
    tokio::spawn(async move {
        let _guard = guard;
        task.run(source).await;
    });
    let body = Body::from_stream(ReceiverStream::new(rx).map(Ok::<_, Infallible>));
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        body,
    )
        .into_response())
}

enum Source {
    Cache(Subscription),
    Store {
        stream: WatchStream,
        filter: Arc<ListQuery>,
        last: Revision,
    },
}

struct WatchTask {
    kind: Kind,
    tx: mpsc::Sender<Bytes>,
    bookmarks: bool,
    interval: Duration,
    timeout: Option<Duration>,
    shutdown: tokio::sync::watch::Receiver<bool>,
}

/// What the next step of the loop produced.
enum Step {
    Line(Bytes),
    Skip,
    End(Option<Bytes>),
}

impl WatchTask {
    async fn run(mut self, mut source: Source) {
        if let Source::Cache(sub) = &mut source {
            for (t, obj) in std::mem::take(&mut sub.initial) {
                if self.tx.send(event_line(t, &obj.json)).await.is_err() {
                    return;
                }
            }
        }
        let mut ticker = tokio::time::interval(self.interval.max(Duration::from_millis(10)));
        ticker.tick().await; // the first tick is immediate
        let deadline =
            tokio::time::sleep(self.timeout.unwrap_or(Duration::from_secs(u64::MAX / 4)));
        tokio::pin!(deadline);
        loop {
            let step = tokio::select! {
                step = next(&mut source, self.kind) => step,
                _ = ticker.tick(), if self.bookmarks => match bookmark_revision(&source) {
                    Some(rev) => Step::Line(bookmark_line(self.kind, rev)),
                    None => Step::Skip,
                },
                _ = &mut deadline => Step::End(None),
                _ = self.tx.closed() => Step::End(None),
                _ = self.shutdown.wait_for(|s| *s) => Step::End(None),
            };
            match step {
                Step::Line(line) => {
                    if self.tx.send(line).await.is_err() {
                        return;
                    }
                }
                Step::Skip => {}
                Step::End(last) => {
                    if let Some(line) = last {
                        let _ = self.tx.send(line).await;
                    }
                    return;
                }
            }
        }
    }
}

fn bookmark_revision(source: &Source) -> Option<Revision> {
    match source {
        Source::Cache(sub) => sub.bookmark_revision(),
        Source::Store { last, .. } => Some(*last),
    }
}

async fn next(source: &mut Source, kind: Kind) -> Step {
    match source {
        Source::Cache(sub) => match sub.rx.recv().await {
            Some(ev) => match ev.for_filter(&sub.filter) {
                Some(t) => Step::Line(event_line(t, &ev.object.json)),
                None => Step::Skip,
            },
            None => Step::End(Some(error_line(&sub.closed.get().cloned().unwrap_or_else(
                || Status::new(StatusReason::Expired, "watch ended by the server; re-list"),
            )))),
        },
        Source::Store {
            stream,
            filter,
            last,
        } => match stream.next().await {
            Some(Ok(ev)) => {
                *last = ev.revision;
                match store_event(kind, ev) {
                    Some(ev) => match ev.for_filter(filter) {
                        Some(t) => Step::Line(event_line(t, &ev.object.json)),
                        None => Step::Skip,
                    },
                    None => Step::Skip,
                }
            }
            Some(Err(e)) => Step::End(Some(error_line(ApiError::from(e).status()))),
            None => Step::End(None),
        },
    }
}

/// A store event as a cache event (for filtering and encoding alike).
fn store_event(kind: Kind, ev: crate::store::Event) -> Option<CachedEvent> {
    let object = decode_stored(kind, &ev.value, ev.revision).ok()?;
    let prev = ev
        .prev_value
        .as_ref()
        .and_then(|p| decode_stored(kind, p, ev.revision).ok())
        .map(CachedObject::new);
    Some(CachedEvent {
        revision: ev.revision,
        kind: if ev.kind == EventType::Put {
            EventType::Put
        } else {
            EventType::Delete
        },
        object: CachedObject::new(object),
        prev,
    })
}
