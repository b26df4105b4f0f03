//! Join tokens: `GET /v1/join-tokens` (both current tokens) and
//! `POST /v1/join-tokens/{role}/rotate` (a fresh token for `worker` or `manager`; the old one
//! stops working at once). Admins and managers only (`guard`); what `swarm join-token` shows.

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};
use swarm_api::StatusReason;
use swarm_pki::Role;

use super::AppState;
use crate::cluster_pki::ClusterPki;
use crate::errors::{ApiError, ApiResult};

fn pki(st: &AppState) -> ApiResult<&ClusterPki> {
    st.pki.as_deref().ok_or_else(|| {
        ApiError::new(
            StatusReason::NotFound,
            "this apiserver runs without TLS, so it has no join tokens; start it with --tls",
        )
    })
}

fn role_named(role: &str) -> ApiResult<Role> {
    match role {
        "worker" => Ok(Role::Worker),
        "manager" => Ok(Role::Manager),
        other => Err(ApiError::bad_request(format!(
            "unknown role {other:?}: join tokens exist for `worker` and `manager`"
        ))),
    }
}

/// `GET /v1/join-tokens` → `{"worker": "SWMTKN-1-…", "manager": "SWMTKN-1-…"}`.
pub async fn get(State(st): State<AppState>) -> ApiResult<Json<Value>> {
    let pki = pki(&st)?;
    pki.refresh_tokens()
        .await
        .map_err(|e| ApiError::internal(format!("cannot read the join tokens: {e}")))?;
    let tokens = pki.tokens();
    Ok(Json(json!({
        "worker": tokens.worker.to_string(),
        "manager": tokens.manager.to_string(),
    })))
}

/// `POST /v1/join-tokens/{role}/rotate` → `{"role": "worker", "token": "SWMTKN-1-…"}`.
pub async fn rotate(
    State(st): State<AppState>,
    Path(role): Path<String>,
) -> ApiResult<Json<Value>> {
    let which = role_named(&role)?;
    let fresh = pki(&st)?
        .rotate(which)
        .await
        .map_err(|e| ApiError::internal(format!("cannot rotate the {role} join token: {e}")))?;
    tracing::info!(%role, "join token rotated");
    Ok(Json(json!({ "role": role, "token": fresh.to_string() })))
}
