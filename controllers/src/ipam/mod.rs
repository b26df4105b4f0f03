//! ipam: subnets for networks, VIPs and published ports for services, addresses for tasks
//! (NEW → PENDING once every attachment has an address), and the ingress network (`ingress`).
//!
//! Race safety (two ipam processes, or an ipam that lost its lease but has not noticed): every
//! allocation is recorded where the store settles races, in the same `POST /v1/transactions`
//! as its owner.
//! * **Subnets and published ports** are cluster-wide: each /24 block a subnet covers and each
//!   published port has a claim marker, a `Lease` with a deterministic name
//!   (`ipam-subnet-10.0.5.0-24`, `ipam-port-tcp-30000`) created create-if-absent together with
//!   the network's or service's status. Two writers choosing the same block or port create the
//!   same name; one gets `AlreadyExists` and the whole transaction is void.
//! * **Addresses** are per network: the network's `status.addresses` ledger (address → owner)
//!   is updated with a `resourceVersion` precondition in the transaction that writes the
//!   owner's attachment (task `spec.networks`) or VIP (service `status.virtualIps`). Two
//!   writers that read one ledger version cannot both commit.
//! * **Releases** are level-triggered: a ledger entry whose owner looks gone or finished in the
//!   caches is confirmed with a fresh read of the owner, then removed with the ledger's
//!   precondition; markers whose holder (`Network/<name>/<uid>`) is confirmed gone are deleted
//!   with the marker's own precondition. A cache that lags can delay a release, never cause a
//!   double allocation.
//!
//! The decisions are pure (`subnet`, `ledger`, `ports`, `plan`); `controller` does the I/O.

pub mod controller;
pub mod ingress;
pub mod ledger;
pub mod plan;
pub mod ports;
pub mod subnet;

/// The condition type ipam reports on networks and services.
pub const ALLOCATED: &str = "Allocated";
