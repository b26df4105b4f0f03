//! Joining and certificates: `POST /v1/join` (a machine with a join token and a CSR gets a
//! certificate), `GET /v1/ca`, `POST /v1/renew`.
//!
//! The only endpoint served without a client certificate. The token (checked in constant
//! time) decides the role; the apiserver, not the CSR, decides the identity: the node's name,
//! the token's role, this cluster. The machine checked our CA against the token's digest
//! before calling (it pins the CA for this one request), so a forged manager learns nothing.
//!
//! The node's name is the one it asks for (its hostname by default) when no node has it yet,
//! else that name with a random suffix. As SwarmKit does when it issues a node certificate,
//! joining creates the `Node` object — with create-if-absent, which is what makes the name
//! one machine's: two machines asking for one name at once get two names.
//!
//! ```json
//! → {"token": "SWMTKN-1-…", "csr": "-----BEGIN CERTIFICATE REQUEST-----…", "hostname": "worker-1"}
//! ← {"nodeId": "worker-1", "role": "swarm-worker", "certificate": "-----BEGIN CERTIFICATE-----…",
//!    "ca": "-----BEGIN CERTIFICATE-----…", "dispatcherPort": 4242}
//! ```

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};
use swarm_api::{AnyObject, Node, StatusCause, StatusReason};
use swarm_pki::{Identity, JoinToken, Role};

use super::{AppState, JsonBody};
use crate::errors::{ApiError, ApiResult};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JoinRequest {
    token: String,
    csr: String,
    #[serde(default)]
    hostname: String,
    /// The machine means to run a control plane if the token is a manager's (`swarm join`):
    /// it then needs the shared store, which only an etcd-backed cluster has.
    #[serde(default, rename = "controlPlane")]
    control_plane: bool,
}

pub(super) fn invalid(field: &str, message: String) -> ApiError {
    ApiError(Box::new(swarm_api::Status::invalid(
        "JoinRequest",
        "",
        vec![StatusCause::invalid(field, message)],
    )))
}

/// Signs a caller's certificate signing request for `identity`, with the cluster's usual
/// lifetime; a CSR that cannot be used is a 422 on the `csr` field. Join, renewal and
/// controller certificates all go through here.
pub(super) fn sign_csr(
    pki: &crate::cluster_pki::ClusterPki,
    csr: &str,
    identity: &Identity,
) -> ApiResult<String> {
    pki.ca
        .sign_csr(csr, identity, &[], pki.validity())
        .map_err(|e| {
            invalid(
                "csr",
                format!("not a usable certificate signing request: {e}"),
            )
        })
}

pub async fn join(State(st): State<AppState>, JsonBody(body): JsonBody) -> ApiResult<Json<Value>> {
    let Some(pki) = st.pki.as_ref() else {
        return Err(ApiError::new(
            StatusReason::NotFound,
            "this apiserver runs without TLS, so it has no CA to join; start it with --tls",
        ));
    };
    let req: JoinRequest = serde_json::from_value(body)
        .map_err(|e| ApiError::bad_request(format!("invalid join request: {e}")))?;
    let presented: JoinToken = req
        .token
        .parse()
        .map_err(|e: swarm_pki::TokenError| invalid("token", e.to_string()))?;
    if presented.ca_digest != pki.ca.digest() {
        return Err(ApiError::new(
            StatusReason::Unauthorized,
            "the join token belongs to another cluster (its CA digest is not this cluster's CA)",
        ));
    }
    pki.refresh_tokens()
        .await
        .map_err(|e| ApiError::internal(format!("cannot read the join tokens: {e}")))?;
    let Some(role) = pki.role_for(&presented) else {
        return Err(ApiError::new(
            StatusReason::Unauthorized,
            "the join token is not valid (it may have been rotated); get the current one with `swarm join-token worker` on a manager",
        ));
    };
    let manager = if role == Role::Manager && req.control_plane {
        Some(manager_setup(pki)?)
    } else {
        None
    };
    let node_id = claim_node_name(&st, &req.hostname, role).await?;
    let identity = Identity::new(&node_id, role, pki.ca.cluster_id());
    let certificate = sign_csr(pki, &req.csr, &identity)?;
    tracing::info!(node = %node_id, hostname = %req.hostname, %role, "machine joined");
    Ok(Json(json!({
        "nodeId": node_id,
        "role": role.as_str(),
        "certificate": certificate,
        "ca": pki.ca.cert_pem(),
        "dispatcherPort": st.dispatcher_port,
        "manager": manager,
    })))
}

/// What a joining manager needs to run a control plane over this cluster's store: where the
/// store is, and a copy of the key that encrypts it at rest (which also seals the CA key
/// there). Refused when this manager's store is the embedded one: no other process can open it.
fn manager_setup(pki: &crate::cluster_pki::ClusterPki) -> ApiResult<Value> {
    let Some(shared) = pki.shared() else {
        return Err(ApiError::new(
            StatusReason::BadRequest,
            "this swarm keeps its state in the embedded store, which only this manager's \
             process can open, so no second manager can join it; run the managers over etcd \
             (`swarm server --store etcd --etcd-endpoints …`)",
        ));
    };
    let key = std::fs::read(&shared.secrets_key).map_err(|e| {
        ApiError::internal(format!("cannot read {}: {e}", shared.secrets_key.display()))
    })?;
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    Ok(json!({ "etcdEndpoints": shared.etcd_endpoints, "secretsKey": hex }))
}

/// How many suffixed names are tried before giving up.
const NAME_ATTEMPTS: usize = 5;

/// A node name made of what the machine asked for: lowercase letters, digits, `-`, `.` and
/// `_`, at most 63 characters; `node` when nothing usable is left.
fn node_name_from(wanted: &str) -> String {
    let name: String = wanted
        .trim()
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_') {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    let name = name.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    if name.is_empty() {
        "node".to_string()
    } else {
        name.to_string()
    }
}

/// Creates the joining machine's `Node` under the name it asked for, or that name with a
/// random suffix when it is taken, and returns the name.
async fn claim_node_name(st: &AppState, wanted: &str, role: Role) -> ApiResult<String> {
    let base = node_name_from(wanted);
    let spec = swarm_api::NodeSpec {
        role: match role {
            Role::Manager => swarm_api::NodeRole::Manager,
            _ => swarm_api::NodeRole::Worker,
        },
        ..Default::default()
    };
    let mut name = base.clone();
    for _ in 0..NAME_ATTEMPTS {
        let node = AnyObject::Node(Node::new(&name, spec.clone()));
        match st.registry.create(node).await {
            Ok(_) => return Ok(name),
            Err(e) if e.reason() == StatusReason::AlreadyExists => {
                let suffix = crate::cluster_pki::new_id();
                name = format!("{base}-{}", &suffix[..6.min(suffix.len())]);
            }
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::new(
        StatusReason::Conflict,
        format!(
            "nodes named {base:?} and several suffixed names exist already; join with another name"
        ),
    ))
}

/// `GET /v1/ca`: the cluster CA certificate, served without a client certificate. A joining
/// machine fetches it without trusting the connection, then trusts it only if its digest is
/// the one in the join token.
pub async fn ca(State(st): State<AppState>) -> ApiResult<Json<Value>> {
    let Some(pki) = st.pki.as_ref() else {
        return Err(ApiError::new(
            StatusReason::NotFound,
            "this apiserver runs without TLS, so it has no CA; start it with --tls",
        ));
    };
    Ok(Json(json!({
        "ca": pki.ca.cert_pem(),
        "dispatcherPort": st.dispatcher_port,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RenewRequest {
    csr: String,
}

/// `POST /v1/renew`: a certificate holder gets a fresh certificate for a new key, with the
/// same identity; the old certificate is what authenticates the request.
pub async fn renew(
    State(st): State<AppState>,
    peer: Option<axum::Extension<crate::tls::Peer>>,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Value>> {
    let (Some(pki), Some(axum::Extension(crate::tls::Peer(Some(who))))) = (st.pki.as_ref(), peer)
    else {
        return Err(ApiError::new(
            StatusReason::Unauthorized,
            "not authenticated: renewing needs the current certificate of the caller",
        ));
    };
    let req: RenewRequest = serde_json::from_value(body)
        .map_err(|e| ApiError::bad_request(format!("invalid renew request: {e}")))?;
    let certificate = sign_csr(pki, &req.csr, &who)?;
    tracing::info!(identity = %who, "certificate renewed");
    Ok(Json(
        json!({ "certificate": certificate, "ca": pki.ca.cert_pem() }),
    ))
}
