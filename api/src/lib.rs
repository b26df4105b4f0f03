//! swarm's API types: the objects stored by the apiserver, their validation, and the
//! stack-file loader that turns Compose files and manifests into objects.
//!
//! This crate is pure: no async runtime, no network, no store. File reading happens only in
//! the stack loader, through a small `SourceFs` seam so tests and fuzzers can feed it memory.

pub mod duration;
pub mod kind;
pub mod logs;
pub mod meta;
pub mod objects;
pub mod selector;
pub mod stack;
pub mod status;
pub mod time;
pub mod validation;

pub use duration::Duration;
pub use kind::{AnyObject, Kind, Resource};
pub use meta::{API_VERSION, Condition, ObjectMeta, OwnerReference};
pub use objects::*;
pub use status::{Status, StatusCause, StatusReason};
pub use time::Timestamp;
