//! `GET /v1/<plural>?watch=true`: a stream of newline-delimited JSON events.
//!
//! Where the events come from depends on `resourceVersion`:
//! * absent or `"0"`: the watch cache's current objects as `ADDED`, then live events
//!   (`kubectl get -w`);
//! * `N` within the cache's window: every event after `N` replayed from memory, then live —
//!   also when the store has compacted past `N` meanwhile (the cache still holds those events);
//! * `N` older than the window but not compacted: a store watch of its own from `N` (the rare
//!   "client was away a long time" case; it does not switch over to the cache later);
//! * `N` older than the window and compacted: 410 `Expired` before any streaming starts;
//! * `N` newer than the store's current revision: 504 `Timeout` with a
//!   `ResourceVersionTooLarge` cause, as Kubernetes answers (see `too_large`).
//!
//! Each client watch runs as a task writing lines into a small channel that feeds the HTTP
//! body. The task ends when the client goes away, the cache cuts the watch off, `timeoutSeconds`
//! passes, or the server shuts down. With `allowWatchBookmarks=true` it sends a `BOOKMARK`
//! every `bookmark_interval`, carrying a revision up to which the client has seen everything.
//! That revision follows the store's, not just the kind's own events (`Subscription::
//! bookmark_revision`), so a client watching several kinds can order them against each other,
//! and resuming from it is always served from the cache.
//!
//! A slow client: when a client stops reading, the HTTP body stops being polled, the channel
//! fills and the task waits to hand over its next line. Meanwhile the cache keeps pushing into
//! the watcher's bounded channel; when that is full the cache cuts the watcher off (never
//! waiting for it). The task waits for that cut-off *alongside* the blocked hand-over, so it
//! ends at once: it drops its backlog, frees its cache slot and open-watch count, and leaves
//! the final `ERROR` line in a one-shot slot that the body yields after the lines already
//! buffered. A client that reads again gets those lines, the `ERROR`, and the end of the
//! stream, and resumes from the last `resourceVersion` it saw. (What stays is the connection
//! itself, with at most `BODY_BUFFER` lines, until the client reads or goes away.)

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use swarm_api::{Kind, Status, StatusCause, StatusReason};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;

use super::list::ListParams;
use super::{AppState, flag};
use crate::codec::{decode_stored, parse_revision};
use crate::errors::{ApiError, ApiResult};
use crate::registry::ListQuery;
use crate::store::{EventType, Revision, StoreError, WatchStream};
use crate::watch_cache::{
    CachedEvent, CachedObject, CloseReason, Start, Subscription, bookmark_line, error_line,
    event_line,
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
    let store = st.registry.store();
    if let Some(n) = after {
        let current = store.current_revision().await?;
        if n > current {
            return Err(too_large(n, current));
        }
    }
    let source = match st.cache.kind(kind).subscribe(after, filter.clone()).await {
        // The cache holds every event after `n`, even if the store compacted past it since:
        // a client resuming from a bookmark of a quiet kind is served, not sent to re-list.
        Start::Cached(sub) => Source::Cache(sub),
        Start::TooOld => {
            let n = after.unwrap_or(0);
            let compacted = store.compacted_revision().await?;
            if n < compacted {
                return Err(ApiError::from(StoreError::Compacted {
                    requested: n,
                    compacted,
                }));
            }
            let stream = store.watch(&kind.key_prefix(), n).await?;
            Source::Store {
                stream,
                filter: Arc::new(filter),
                last: n,
            }
        }
    };
    let (tx, rx) = mpsc::channel::<Bytes>(BODY_BUFFER);
    let (last_tx, last_rx) = oneshot::channel::<Bytes>();
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
        if let Some(line) = task.run(source).await {
            let _ = last_tx.send(line);
        }
    });
    // The lines, then the final line if the task left one (it never waits to leave it).
    let last = futures::stream::once(last_rx).filter_map(|r| std::future::ready(r.ok()));
    let body = Body::from_stream(ReceiverStream::new(rx).chain(last).map(Ok::<_, Infallible>));
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
    /// Streams until the watch ends; returns the final line to send, if any.
    async fn run(self, source: Source) -> Option<Bytes> {
        let Err(last) = self.stream(source).await;
        last
    }

    /// Streams; ends with `Err` and the final line, if any.
    async fn stream(&self, mut source: Source) -> Result<Infallible, Option<Bytes>> {
        // Set when the cache cuts the watcher off; a watch served by the store has none.
        let closed = match &source {
            Source::Cache(sub) => Some(sub.closed.clone()),
            Source::Store { .. } => None,
        };
        let closed = closed.as_deref();
        if let Source::Cache(sub) = &mut source {
            for (t, obj) in std::mem::take(&mut sub.initial) {
                self.deliver(closed, event_line(t, &obj.public_json))
                    .await?;
            }
        }
        let mut ticker = tokio::time::interval(self.interval.max(Duration::from_millis(10)));
        ticker.tick().await; // the first tick is immediate
        let deadline =
            tokio::time::sleep(self.timeout.unwrap_or(Duration::from_secs(u64::MAX / 4)));
        tokio::pin!(deadline);
        let mut shutdown = self.shutdown.clone();
        loop {
            let step = tokio::select! {
                step = next(&mut source, self.kind) => step,
                _ = ticker.tick(), if self.bookmarks => match bookmark_revision(&source) {
                    Some(rev) => Step::Line(bookmark_line(self.kind, rev)),
                    None => Step::Skip,
                },
                _ = &mut deadline => Step::End(None),
                _ = self.tx.closed() => Step::End(None),
                _ = shutdown.wait_for(|s| *s) => Step::End(None),
            };
            match step {
                Step::Line(line) => self.deliver(closed, line).await?,
                Step::Skip => {}
                Step::End(last) => return Err(last),
            }
        }
    }

    /// Hands `line` to the HTTP body, waiting while the client reads slowly. `Err` ends the
    /// watch: the client went away or the server shuts down (no final line), or the cache cut
    /// the watcher off while it waited (its `ERROR` line).
    async fn deliver(
        &self,
        closed: Option<&CloseReason>,
        line: Bytes,
    ) -> Result<(), Option<Bytes>> {
        let mut shutdown = self.shutdown.clone();
        tokio::select! {
            biased;
            sent = self.tx.send(line) => sent.map_err(|_| None),
            status = cut_off(closed) => Err(Some(error_line(status))),
            _ = shutdown.wait_for(|s| *s) => Err(None),
        }
    }
}

/// Resolves when the cache cuts the watcher off; never without a cache subscription.
async fn cut_off(closed: Option<&CloseReason>) -> &Status {
    match closed {
        Some(c) => c.wait().await,
        None => std::future::pending().await,
    }
}

/// The answer to a watch from a revision the store has not reached.
///
/// Kubernetes answers 504 `Timeout` with a `ResourceVersionTooLarge` cause ("Too large resource
/// version") after waiting up to 3 s for its watch cache to catch up; this server does the same,
/// so kube-style clients recognise it (client-go re-lists from scratch on that cause), and
/// `FutureRevision` from a list already maps to 504 `Timeout`. It does not wait: the revision is
/// compared with the store's own current revision, not with a cache that might lag behind, so
/// a revision past it was never handed out by this store (a client of another cluster, or of a
/// store restored from an older backup) and waiting could not make it valid.
fn too_large(requested: Revision, current: Revision) -> ApiError {
    let mut status = Status::new(
        StatusReason::Timeout,
        format!(
            "Too large resource version: {requested}, current: {current}; \
             re-list to get a current resourceVersion"
        ),
    );
    status
        .details
        .get_or_insert_with(Default::default)
        .causes
        .push(StatusCause::new(
            "ResourceVersionTooLarge",
            "resourceVersion",
            "Too large resource version",
        ));
    ApiError::from(status)
}

fn bookmark_revision(source: &Source) -> Option<Revision> {
    match source {
        Source::Cache(sub) => sub.bookmark_revision(),
        Source::Store { last, .. } => Some(*last),
    }
}

async fn next(source: &mut Source, kind: Kind) -> Step {
    match source {
        Source::Cache(sub) => match sub.recv().await {
            Some(ev) => match ev.for_filter(&sub.filter) {
                Some(t) => Step::Line(event_line(t, &ev.object.public_json)),
                None => Step::Skip,
            },
            None => Step::End(Some(match sub.closed.get() {
                Some(status) => error_line(status),
                None => error_line(&Status::new(
                    StatusReason::Expired,
                    "watch ended by the server; re-list",
                )),
            })),
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
                        Some(t) => Step::Line(event_line(t, &ev.object.public_json)),
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
