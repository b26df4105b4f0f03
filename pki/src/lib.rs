//! swarm's cluster PKI, shared by the apiserver (which holds the CA and signs), and the agent and
//! CLI (which join): the cluster CA, identities carried in certificates, and join tokens.
//!
//! The model is Swarm's. `swarm init` makes a CA; every component gets a certificate whose
//! subject says who it is — CN the node (or user) id, OU its role, O the cluster id — so the
//! apiserver authorizes a TLS peer from its certificate alone. A machine joins with a token
//! `SWMTKN-1-<CA digest>-<secret>`: the digest lets it check the manager's CA before trusting
//! it, the secret lets the manager check the machine before signing its CSR.

mod ca;
mod identity;
mod renewal;
mod token;

pub use ca::{CaError, ClusterCa, NodeKey, ca_digest_of_pem};
pub use identity::{Identity, IdentityError, Role};
pub use renewal::{renewal_time, until_renewal, validity};
pub use token::{JoinToken, TokenError};

/// How long a node certificate is valid unless configured otherwise (Swarm's default).
pub const DEFAULT_CERT_VALIDITY: std::time::Duration = std::time::Duration::from_secs(90 * 86_400);
