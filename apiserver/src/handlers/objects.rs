//! Single-object endpoints: `GET/PUT/DELETE /v1/<plural>/<name>`, `POST /v1/<plural>`,
//! `GET/PUT /v1/<plural>/<name>/status`.
//!
//! The name in the URL must match the body's `metadata.name` (a body without a name takes
//! the URL's). A successful delete answers 200 with the object's last state; a delete held
//! back by finalizers answers 202 with the object, now carrying `deletionTimestamp`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use swarm_api::{AnyObject, Kind, StatusCause};

use super::redact::{RevealParams, redact};
use super::{AppState, JsonBody, ObjectParams, Params, kind_of};
use crate::codec::{decode_request, parse_revision};
use crate::errors::{ApiError, ApiResult};
use crate::registry::Subresource;
use crate::watch_cache::Freshness;

/// The query parameters of a GET.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetParams {
    /// `true`: secrets keep their data (see `redact`).
    pub show_data: Option<String>,
    /// Absent: the latest state; `0`: any (the cache as it is); `N`: no older than `N`.
    pub resource_version: Option<String>,
}

/// The object `name` of `kind` from the watch cache, as fresh as `p.resourceVersion` asks;
/// 404 when it does not exist.
async fn cached(
    st: &AppState,
    kind: Kind,
    name: &str,
    p: &GetParams,
) -> ApiResult<std::sync::Arc<crate::watch_cache::CachedObject>> {
    let freshness = Freshness::parse(p.resource_version.as_deref())?;
    st.cache
        .get(kind, name, freshness)
        .await?
        .ok_or_else(|| ApiError::not_found(kind, name))
}

/// Reads are served by the watch cache once it has caught up with the store (see
/// `watch_cache`), as the bytes it already holds: no store read, no decoding, no encoding.
pub async fn get(
    State(st): State<AppState>,
    Path((plural, name)): Path<(String, String)>,
    Params(p): Params<GetParams>,
) -> ApiResult<Response> {
    let obj = cached(&st, kind_of(&plural)?, &name, &p).await?;
    let reveal = RevealParams {
        show_data: p.show_data,
    }
    .reveal();
    Ok(json_bytes(if reveal {
        obj.json.clone()
    } else {
        obj.public_json.clone()
    }))
}

pub async fn get_status(
    State(st): State<AppState>,
    Path((plural, name)): Path<(String, String)>,
    Params(p): Params<GetParams>,
) -> ApiResult<Response> {
    let obj = cached(&st, status_kind(&plural)?, &name, &p).await?;
    // Kinds with a status hold no secret data.
    Ok(json_bytes(obj.json.clone()))
}

/// A `200` with an already encoded JSON body.
pub fn json_bytes(body: bytes::Bytes) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

pub async fn create(
    State(st): State<AppState>,
    Path(plural): Path<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    let kind = kind_of(&plural)?;
    let obj = decode_request(kind, body, "")?;
    let created = st.registry.create(obj).await?;
    Ok((StatusCode::CREATED, Json(redact(created, false))).into_response())
}

pub async fn replace(
    State(st): State<AppState>,
    Path((plural, name)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<AnyObject>> {
    let kind = kind_of(&plural)?;
    let obj = named(kind, &name, body)?;
    let updated = st.registry.update(obj, Subresource::Main).await?;
    Ok(Json(redact(updated, false)))
}

pub async fn replace_status(
    State(st): State<AppState>,
    Path((plural, name)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<AnyObject>> {
    let kind = status_kind(&plural)?;
    let obj = named(kind, &name, body)?;
    Ok(Json(st.registry.update(obj, Subresource::Status).await?))
}

pub async fn delete(
    State(st): State<AppState>,
    Path((plural, name)): Path<(String, String)>,
    Params(p): Params<ObjectParams>,
) -> ApiResult<Response> {
    let kind = kind_of(&plural)?;
    let precondition = parse_revision(p.resource_version.as_deref().unwrap_or(""))?;
    let (obj, gone) = st.registry.delete(kind, &name, precondition).await?;
    let code = if gone {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((code, Json(redact(obj, false))).into_response())
}

/// The kind of a `/status` URL: only kinds that have a status.
fn status_kind(plural: &str) -> ApiResult<Kind> {
    let kind = kind_of(plural)?;
    if !kind.has_status() {
        return Err(ApiError::new(
            swarm_api::StatusReason::NotFound,
            format!("{plural} have no status subresource"),
        ));
    }
    Ok(kind)
}

/// Decodes a PUT body whose name must match the URL's.
fn named(kind: Kind, name: &str, mut body: serde_json::Value) -> ApiResult<AnyObject> {
    if let Some(meta) = body.get_mut("metadata").and_then(|m| m.as_object_mut()) {
        match meta.get("name").and_then(|n| n.as_str()) {
            None | Some("") => {
                meta.insert("name".into(), name.into());
            }
            Some(n) if n == name => {}
            Some(n) => {
                return Err(ApiError::invalid(
                    kind,
                    name,
                    vec![StatusCause::invalid(
                        "metadata.name",
                        format!(
                            "the name in the body ({n:?}) does not match the name in the URL ({name:?})"
                        ),
                    )],
                ));
            }
        }
    }
    decode_request(kind, body, name)
}
