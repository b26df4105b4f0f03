//! swarm's client side: a typed HTTP client for the apiserver, watch streams, and the
//! controller runtime (watch → cache → queue → reconcile) that every controller shares, and
//! joining a TLS cluster (`join`).

pub mod apply;
pub mod client;
pub mod config;
pub mod error;
pub mod join;
pub mod list;
pub mod logs;
pub mod params;
pub mod runtime;
pub mod transaction;
pub mod watch;

pub use apply::{ApplyAction, ApplyResponse, ApplyResult};
pub use client::{Client, JoinTokens};
pub use config::{ClientConfig, Context};
pub use error::ClientError;
pub use list::ObjectList;
pub use logs::{LogOptions, LogStream};
pub use params::ListParams;
pub use transaction::{Operation, TransactionResponse};
pub use watch::{Bookmark, EventType, WatchEvent, WatchStream};
