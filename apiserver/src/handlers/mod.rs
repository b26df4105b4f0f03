//! HTTP handlers, one module per endpoint family, sharing `AppState` and the extractors here.
//!
//! Extractors turn every malformed request into a `Status` body: a body over the size limit
//! is 413 `RequestEntityTooLarge`, malformed JSON or query parameters are 400 `BadRequest`
//! (axum's own rejections are plain text, which kube-style clients cannot parse).

pub mod apply;
pub mod certificates;
pub mod guard;
pub mod health;
pub mod join;
pub mod join_tokens;
pub mod list;
pub mod logs;
pub mod objects;
pub mod redact;
pub mod txn;
pub mod watch;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use bytes::Bytes;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use swarm_api::{Kind, StatusReason};
use tokio::sync::watch as signal;

use crate::errors::{ApiError, ApiResult};
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::watch_cache::WatchCache;

/// Everything a handler needs, cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub registry: Registry,
    pub cache: WatchCache,
    pub metrics: Arc<Metrics>,
    pub bookmark_interval: Duration,
    pub max_body_bytes: usize,
    /// Flips to `true` when the server shuts down, ending every open watch.
    pub shutdown: signal::Receiver<bool>,
    /// The cluster PKI, when serving TLS (it signs join requests).
    pub pki: Option<Arc<crate::cluster_pki::ClusterPki>>,
    /// The port of the gRPC dispatcher, told to joining machines.
    pub dispatcher_port: Option<u16>,
    /// The dispatcher's log broker (the log endpoints read container logs through it).
    pub logs: crate::dispatcher::logs::LogBroker,
}

/// A request body parsed as JSON (any shape; typed decoding comes after, with field paths).
pub struct JsonBody(pub serde_json::Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            if r.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusReason::RequestEntityTooLarge,
                    "request body too large",
                )
            } else {
                ApiError::bad_request(format!("cannot read the request body: {}", r.body_text()))
            }
        })?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))
    }
}

/// Query parameters, with rejections as `Status` 400.
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let q = parts.uri.query().unwrap_or("");
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|axum::extract::Query(t)| Params(t))
            .map_err(|e| ApiError::bad_request(format!("invalid query {q:?}: {}", e.body_text())))
    }
}

/// The kind a `/v1/<plural>` path names.
pub fn kind_of(plural: &str) -> ApiResult<Kind> {
    Kind::from_plural(plural).ok_or_else(|| {
        ApiError::new(
            StatusReason::NotFound,
            format!("the server could not find the requested resource {plural:?}"),
        )
    })
}

/// `?dryRun=true&prune=true` style booleans.
pub fn flag(v: &Option<String>, name: &str) -> ApiResult<bool> {
    match v.as_deref() {
        None | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") | Some("") | Some("All") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!(
            "invalid {name}={other:?}: expected true or false"
        ))),
    }
}

/// Query parameters of object endpoints (`?resourceVersion=` on delete).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectParams {
    pub resource_version: Option<String>,
}
