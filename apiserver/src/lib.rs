//! swarm's API server: the REST and watch API over a `Store`, backed by etcd or by an
//! embedded single-file store.
//!
//! The layers, from the wire inwards:
//! * `server` — options, the route table, the axum router and `serve`;
//! * `handlers` — one module per endpoint family (objects, list, watch, apply, transactions);
//! * `watch_cache` — one store watch per kind, fanned out to every client watch from memory;
//! * `registry` — typed CRUD with the API conventions (generation, no-op writes, CAS);
//! * `cluster_pki` — the manager's CA, certificate and join tokens on disk;
//! * `tls` — the TLS accept loop: TLS 1.3, client certificates → caller identity;
//! * `authz` — who may do what, from the caller's certificate identity;
//! * `admission` — rules about changes (immutable data, task states only move forward);
//! * `codec` — request decoding with field paths, and the stored form of objects;
//! * `errors` — everything becomes a kube-style `Status`;
//! * `metrics`, `openapi` — observability and self-description;
//! * `store` — the revisioned key-value store (embedded SQLite or etcd);
//! * `dispatcher` — the gRPC service node agents talk to (register, heartbeat, assignments,
//!   task status).

pub mod admission;
pub mod authz;
pub mod cluster_pki;
pub mod codec;
pub mod dispatcher;
pub mod errors;
pub mod handlers;
pub mod metrics;
pub mod openapi;
pub mod registry;
pub mod server;
pub mod store;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod tls;
pub mod watch_cache;
