//! `POST /v1/certificates`: an admin has the CA sign a certificate for a controller that runs
//! in its own process (`swarm credentials controller NAME`), so it acts under its own
//! identity and the authorization rules give it only its kinds.
//!
//! Admins only (`guard`). The CA signs only the CSR's public key; the identity is the one
//! asked for, checked against the controllers the rules know. Nodes get theirs by joining
//! with a token; admin credentials come from `swarm init` / `swarm server`.
//!
//! ```json
//! → {"identity": "controller:replication", "csr": "-----BEGIN CERTIFICATE REQUEST-----…"}
//! ← {"identity": "controller:replication", "certificate": "-----BEGIN CERTIFICATE-----…",
//!    "ca": "-----BEGIN CERTIFICATE-----…"}
//! ```

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};
use swarm_api::StatusReason;
use swarm_pki::{Identity, Role};

use super::join::{invalid, sign_csr};
use super::{AppState, JsonBody};
use crate::authz::CONTROLLERS;
use crate::errors::{ApiError, ApiResult};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CertificateRequest {
    /// `controller:<name>`.
    identity: String,
    csr: String,
}

/// The controller name in `controller:<name>`, if it is one the authorization rules know.
fn controller_named(identity: &str) -> ApiResult<&str> {
    let Some(name) = identity.strip_prefix("controller:") else {
        return Err(invalid(
            "identity",
            format!(
                "{identity:?} is not an identity issued here: ask for `controller:<name>` \
                 (nodes join with a token; admin credentials come from `swarm init`)"
            ),
        ));
    };
    if CONTROLLERS.contains(&name) {
        Ok(name)
    } else {
        Err(invalid(
            "identity",
            format!(
                "unknown controller {name:?}; known: {}",
                CONTROLLERS.join(", ")
            ),
        ))
    }
}

pub async fn issue(State(st): State<AppState>, JsonBody(body): JsonBody) -> ApiResult<Json<Value>> {
    let Some(pki) = st.pki.as_ref() else {
        return Err(ApiError::new(
            StatusReason::NotFound,
            "this apiserver runs without TLS, so it has no CA to issue certificates; start it \
             without --no-tls",
        ));
    };
    let req: CertificateRequest = serde_json::from_value(body)
        .map_err(|e| ApiError::bad_request(format!("invalid certificate request: {e}")))?;
    let name = controller_named(&req.identity)?;
    let identity = Identity::new(name, Role::Controller, pki.ca.cluster_id());
    let certificate = sign_csr(pki, &req.csr, &identity)?;
    tracing::info!(%identity, "controller certificate issued");
    Ok(Json(json!({
        "identity": req.identity,
        "certificate": certificate,
        "ca": pki.ca.cert_pem(),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_known_controllers_get_a_certificate() {
        assert_eq!(
            controller_named("controller:placement").unwrap(),
            "placement"
        );
        assert!(controller_named("controller:root").is_err());
        assert!(controller_named("admin").is_err());
        assert!(controller_named("replication").is_err());
    }
}
