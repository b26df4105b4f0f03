//! The controller runtime every swarm controller shares (modelled on kube-rs'
//! `kube-runtime`), one idea per module:
//!
//! * `watcher` — list then watch one kind, resuming and relisting as needed;
//! * `reflector` — an in-memory cache (`Store`) fed by a watcher;
//! * `shared` — one watcher and cache per kind for all the controllers of a process;
//! * `queue` — a work queue that dedupes, delays, rests hot keys, and never runs one key
//!   twice at once;
//! * `controller` — ties them together and drives `reconcile(key, ctx) -> Action`;
//! * `leader` — leader election on `Lease` objects;
//! * `backoff` — exponential backoff with jitter;
//! * `metrics` — counters with a Prometheus text rendering.

pub mod backoff;
pub mod controller;
pub mod leader;
pub mod metrics;
pub mod queue;
pub mod reflector;
pub mod shared;
pub mod watcher;

pub use backoff::{Backoff, BackoffConfig};
pub use controller::{Action, Change, Controller, ControllerConfig, ReconcileError, Trigger};
pub use leader::{LeaderConfig, LeaderElector};
pub use metrics::Metrics;
pub use queue::{Cooldown, Outcome, WorkQueue};
pub use reflector::{IndexFn, Store, Writer, reflector};
pub use shared::{Informer, SharedCaches, Subscription};
pub use watcher::{Event, WatchError, watcher};
