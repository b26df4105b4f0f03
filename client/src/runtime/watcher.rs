//! `watcher`: an endless stream of changes to one kind, built as an explicit state machine
//! over the apiserver's list and watch calls (kube-runtime's `watcher`, re-done for swarm).
//!
//! ```text
//!   Empty ──Init──► InitListing ──(pages: InitApply…)──► InitListed ──watch(rv)──► Watching
//!     ▲                                                      ▲                      │
//!     └────────── 410 Gone / ERROR Expired (relist) ─────────┼──────────────────────┤
//!                                                            └─ stream ended, transport
//!                                                               error (resume from rv) ┘
//! ```
//!
//! * **List, then watch from the list's `resourceVersion`**: the list is a consistent
//!   snapshot (all pages are read at the first page's revision), and the watch delivers
//!   exactly the changes after it, so nothing is missed or seen twice.
//! * **Resume**: a broken stream (server timeout, connection reset, cut off for falling
//!   behind) re-watches from the last revision whose every event was delivered (`Resume`):
//!   one transaction is one revision but many events, and resuming *after* a revision the
//!   stream broke inside would lose the rest of that transaction. A `BOOKMARK` moves the
//!   resume point to its version.
//! * **Relist** when that version is gone (410, or an `ERROR` event with `Expired`/`Gone`),
//!   or is newer than anything the server has (504 `ResourceVersionTooLarge`: the store was
//!   replaced or restored behind the watcher's back):
//!   the emitted `Init … InitApply … InitDone` bracket lets a cache swap its whole content
//!   atomically, which also forgets objects deleted while we were away.
//! * **Backoff**: after an error the next request waits an exponentially growing, jittered
//!   delay (`BackoffConfig::WATCH`); any successful event resets it.
//!
//! Errors are yielded as items so the caller can log them; the stream itself never ends.

use std::collections::VecDeque;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::{StreamExt, TryFutureExt};
use swarm_api::{Resource, Status};

use super::backoff::{Backoff, BackoffConfig};
use crate::watch::{WatchEvent, WatchStream};
use crate::{Client, ClientError, ListParams};

/// What the watcher saw.
#[derive(Clone, Debug, PartialEq)]
pub enum Event<K> {
    /// An object was created or changed.
    Apply(K),
    /// An object was deleted (its last state).
    Delete(K),
    /// A (re)list starts: the objects until `InitDone` are the complete current state.
    Init,
    /// One object of the (re)list.
    InitApply(K),
    /// The (re)list is complete; live changes follow.
    InitDone,
}

/// How to list and watch.
#[derive(Clone, Debug)]
pub struct Config {
    /// Label and field selectors (`limit`/`continue` are managed by the watcher).
    pub params: ListParams,
    /// Objects per list page.
    pub page_size: u32,
    /// The server ends each watch after this long; the watcher resumes transparently.
    pub timeout_seconds: u32,
    pub backoff: BackoffConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            params: ListParams::default(),
            page_size: 500,
            timeout_seconds: 290,
            backoff: BackoffConfig::WATCH,
        }
    }
}

impl Config {
    pub fn labels(mut self, selector: impl Into<String>) -> Self {
        self.params = self.params.labels(selector);
        self
    }

    pub fn fields(mut self, selector: impl Into<String>) -> Self {
        self.params = self.params.fields(selector);
        self
    }

    pub fn backoff(mut self, backoff: BackoffConfig) -> Self {
        self.backoff = backoff;
        self
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("listing failed: {0}")]
    List(#[source] ClientError),
    #[error("starting the watch failed: {0}")]
    WatchStart(#[source] ClientError),
    #[error("the watch stream failed: {0}")]
    Stream(#[source] ClientError),
    #[error("the apiserver ended the watch with an error: {}", .0.message)]
    ErrorEvent(Box<Status>),
}

impl WatchError {
    /// The watcher will relist (its resume version was compacted away, or is from a store
    /// that is not there any more).
    pub fn is_gone(&self) -> bool {
        match self {
            WatchError::List(e) | WatchError::WatchStart(e) | WatchError::Stream(e) => {
                e.is_gone() || e.status().is_some_and(is_too_large)
            }
            WatchError::ErrorEvent(s) => is_gone_status(s),
        }
    }
}

fn is_gone_status(s: &Status) -> bool {
    s.code == 410
        || matches!(
            s.reason,
            swarm_api::StatusReason::Expired | swarm_api::StatusReason::Gone
        )
        || is_too_large(s)
}

/// The server has not reached the requested version (Kubernetes' "Too large resource
/// version"); after a store restore it never will, so waiting is no answer.
fn is_too_large(s: &Status) -> bool {
    s.causes()
        .iter()
        .any(|c| c.reason == "ResourceVersionTooLarge")
}

/// The states of the machine; see the module documentation.
enum State<K> {
    Empty,
    InitListing {
        continue_token: Option<String>,
        /// The first page's version: the version of the whole snapshot.
        resource_version: Option<String>,
        buffer: VecDeque<K>,
        last_page: bool,
    },
    InitListed {
        resource_version: String,
    },
    Watching {
        resume: Resume,
        stream: WatchStream<K>,
        /// Whether this connection delivered anything (a connection that ends at once,
        /// repeatedly, is backed off like an error).
        productive: bool,
    },
}

/// The machine plus what it needs to step.
struct Machine<K> {
    client: Client,
    config: Config,
    state: State<K>,
    backoff: Backoff,
    /// Wait this long before the next request (set after a failure).
    delay: Option<Duration>,
}

/// Watches every object of `K` matching `config`'s selectors; see the module docs.
pub fn watcher<K: Resource>(
    client: Client,
    config: Config,
) -> BoxStream<'static, Result<Event<K>, WatchError>> {
    let machine = Machine {
        backoff: Backoff::new(config.backoff),
        client,
        config,
        state: State::Empty,
        delay: None,
    };
    futures::stream::unfold(machine, |mut m| async move {
        let item = m.step().await;
        Some((item, m))
    })
    .boxed()
}

impl<K: Resource> Machine<K> {
    /// Advances until there is something to yield.
    async fn step(&mut self) -> Result<Event<K>, WatchError> {
        loop {
            if let Some(d) = self.delay.take() {
                tokio::time::sleep(d).await;
            }
            match self.step_once().await {
                Step::Yield(event) => {
                    self.backoff.reset();
                    return Ok(event);
                }
                Step::Fail(e) => {
                    self.delay = Some(self.backoff.next_delay());
                    tracing::warn!(kind = %K::KIND.name(), error = %e, "watcher error, retrying");
                    return Err(e);
                }
                Step::Quiet => {}
                Step::Idle => self.delay = Some(self.backoff.next_delay()),
            }
        }
    }

    async fn step_once(&mut self) -> Step<K> {
        let state = std::mem::replace(&mut self.state, State::Empty);
        let (next, step) = match state {
            State::Empty => (
                State::InitListing {
                    continue_token: None,
                    resource_version: None,
                    buffer: VecDeque::new(),
                    last_page: false,
                },
                Step::Yield(Event::Init),
            ),
            State::InitListing {
                continue_token,
                resource_version,
                mut buffer,
                last_page,
            } => {
                if let Some(obj) = buffer.pop_front() {
                    let next = State::InitListing {
                        continue_token,
                        resource_version,
                        buffer,
                        last_page,
                    };
                    (next, Step::Yield(Event::InitApply(obj)))
                } else if let (true, Some(rv)) = (last_page, resource_version.clone()) {
                    (
                        State::InitListed {
                            resource_version: rv,
                        },
                        Step::Yield(Event::InitDone),
                    )
                } else {
                    self.list_page(continue_token, resource_version).await
                }
            }
            State::InitListed { resource_version } => {
                let mut params = self.config.params.clone().bookmarks(true);
                params.timeout_seconds = Some(self.config.timeout_seconds);
                match self
                    .client
                    .watch::<K>(&params, Some(&resource_version))
                    .map_err(WatchError::WatchStart)
                    .await
                {
                    Ok(stream) => (
                        State::Watching {
                            resume: Resume::at(resource_version),
                            stream,
                            productive: false,
                        },
                        Step::Quiet,
                    ),
                    Err(e) if e.is_gone() => (State::Empty, Step::Fail(e)),
                    Err(e) => (State::InitListed { resource_version }, Step::Fail(e)),
                }
            }
            State::Watching {
                mut resume,
                mut stream,
                productive,
            } => match stream.next().await {
                Some(Ok(event)) => {
                    if let Some(rv) = event.resource_version() {
                        match &event {
                            WatchEvent::Bookmark(_) => resume.bookmark(rv),
                            _ => resume.event(rv),
                        }
                    }
                    let step = match event {
                        WatchEvent::Added(o) | WatchEvent::Modified(o) => {
                            Step::Yield(Event::Apply(o))
                        }
                        WatchEvent::Deleted(o) => Step::Yield(Event::Delete(o)),
                        WatchEvent::Bookmark(_) => Step::Quiet,
                        WatchEvent::Error(status) => {
                            let gone = is_gone_status(&status);
                            let e = WatchError::ErrorEvent(status);
                            return self.set(
                                if gone {
                                    State::Empty
                                } else {
                                    State::InitListed {
                                        resource_version: resume.complete,
                                    }
                                },
                                Step::Fail(e),
                            );
                        }
                    };
                    (
                        State::Watching {
                            resume,
                            stream,
                            productive: true,
                        },
                        step,
                    )
                }
                // A line we cannot decode: report it, keep the stream.
                Some(Err(e @ ClientError::Decode { .. })) => (
                    State::Watching {
                        resume,
                        stream,
                        productive,
                    },
                    Step::Fail(WatchError::Stream(e)),
                ),
                Some(Err(e)) => (
                    State::InitListed {
                        resource_version: resume.complete,
                    },
                    Step::Fail(WatchError::Stream(e)),
                ),
                // The server ended the watch (timeout, shutdown): resume from where we are.
                None => (
                    State::InitListed {
                        resource_version: resume.complete,
                    },
                    if productive { Step::Quiet } else { Step::Idle },
                ),
            },
        };
        self.set(next, step)
    }

    fn set(&mut self, state: State<K>, step: Step<K>) -> Step<K> {
        self.state = state;
        step
    }

    // `&mut self`, not `&self`: the machine holds a stream that is `Send` but not `Sync`.
    async fn list_page(
        &mut self,
        continue_token: Option<String>,
        resource_version: Option<String>,
    ) -> (State<K>, Step<K>) {
        let mut params = self.config.params.clone().limit(self.config.page_size);
        params.continue_token = continue_token.clone();
        match self.client.list::<K>(&params).await {
            Ok(page) => {
                let rv = resource_version.unwrap_or(page.resource_version);
                (
                    State::InitListing {
                        last_page: page.continue_token.is_none(),
                        continue_token: page.continue_token,
                        resource_version: Some(rv),
                        buffer: page.items.into(),
                    },
                    Step::Quiet,
                )
            }
            // The continue token outlived the snapshot: start the list over.
            Err(e) if e.is_gone() => (State::Empty, Step::Fail(WatchError::List(e))),
            Err(e) => (
                State::InitListing {
                    continue_token,
                    resource_version,
                    buffer: VecDeque::new(),
                    last_page: false,
                },
                Step::Fail(WatchError::List(e)),
            ),
        }
    }
}

/// Where a broken watch resumes from.
///
/// A transaction is one store revision, delivered as one event per object it wrote. A watch
/// that breaks part-way through those events (cut off for falling behind, a reset connection)
/// must not resume *after* that revision: the rest of the transaction would never come. So
/// the watcher resumes from the last revision known to be complete — one that an event of a
/// later revision, or a bookmark, has closed — and takes the events of the open revision it
/// already had once more (applying an object twice changes nothing).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Resume {
    /// Every event at or before this version has been delivered.
    complete: String,
    /// The version of the last event, whose revision may have more events to come.
    open: Option<String>,
}

impl Resume {
    fn at(complete: String) -> Self {
        Resume {
            complete,
            open: None,
        }
    }

    /// An object event at `rv`: a new revision closes the one before it.
    fn event(&mut self, rv: &str) {
        if self.open.as_deref() != Some(rv)
            && let Some(closed) = self.open.replace(rv.to_string())
        {
            self.complete = closed;
        }
    }

    /// A bookmark at `rv`: everything up to it has been delivered.
    fn bookmark(&mut self, rv: &str) {
        self.complete = rv.to_string();
        self.open = None;
    }
}

/// The outcome of one transition.
enum Step<K> {
    /// Emit this event.
    Yield(Event<K>),
    /// Emit this error, then back off.
    Fail(WatchError),
    /// Nothing to emit; step again at once.
    Quiet,
    /// Nothing to emit, but the last connection was useless: back off before stepping.
    Idle,
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_api::{StatusCause, StatusReason};

    #[test]
    fn a_watch_resumes_from_the_last_revision_it_has_every_event_of() {
        let mut r = Resume::at("10".into());
        // Three objects written by one transaction at 12, the watch breaks after two.
        r.event("12");
        r.event("12");
        assert_eq!(r.complete, "10");
        // An event of a later revision closes 12.
        r.event("12");
        r.event("13");
        assert_eq!(r.complete, "12");
        // A bookmark closes everything up to it, the open revision too.
        r.bookmark("15");
        assert_eq!(r, Resume::at("15".into()));
        r.event("17");
        assert_eq!(r.complete, "15");
    }

    #[test]
    fn gone_too_large_and_other_errors_are_told_apart() {
        let gone = Status::new(StatusReason::Expired, "too old resource version");
        assert!(WatchError::ErrorEvent(Box::new(gone.clone())).is_gone());
        assert!(WatchError::WatchStart(ClientError::from(gone)).is_gone());
        // Kubernetes' answer to a version the server has not reached: relist too.
        let mut too_large = Status::new(StatusReason::Timeout, "Too large resource version");
        too_large.code = 504;
        too_large.details = Some(swarm_api::status::StatusDetails {
            causes: vec![StatusCause::new(
                "ResourceVersionTooLarge",
                "resourceVersion",
                "Too large resource version",
            )],
            ..Default::default()
        });
        assert!(WatchError::WatchStart(ClientError::from(too_large)).is_gone());
        // A plain timeout or an unreachable server: resume from the same version instead.
        let busy = Status::new(StatusReason::Timeout, "busy");
        assert!(!WatchError::WatchStart(ClientError::from(busy)).is_gone());
        let down = ClientError::Transport {
            url: "http://x".into(),
            message: "connection refused".into(),
        };
        assert!(!WatchError::Stream(down).is_gone());
    }
}
