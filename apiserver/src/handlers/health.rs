//! `/healthz` (the process answers), `/readyz` (the store answers and the watch caches have
//! loaded), `/metrics` (Prometheus text) and `/openapi.json`.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use swarm_api::StatusReason;

use super::AppState;
use crate::errors::{ApiError, ApiResult};

pub async fn healthz() -> &'static str {
    "ok"
}

pub async fn readyz(State(st): State<AppState>) -> ApiResult<&'static str> {
    st.registry.store().current_revision().await.map_err(|e| {
        ApiError::new(
            StatusReason::ServiceUnavailable,
            format!("store not reachable: {e}"),
        )
    })?;
    Ok("ok")
}

pub async fn metrics(State(st): State<AppState>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        st.metrics.render(),
    )
        .into_response()
}

pub async fn openapi() -> Json<serde_json::Value> {
    Json(crate::openapi::document())
}
