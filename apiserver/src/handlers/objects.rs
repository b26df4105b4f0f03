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
use swarm_api::{AnyObject, Kind, StatusCause};

use super::redact::{RevealParams, redact};
use super::{AppState, JsonBody, ObjectParams, Params, kind_of};
use crate::codec::{decode_request, parse_revision};
use crate::errors::{ApiError, ApiResult};
use crate::registry::Subresource;

pub async fn get(
    State(st): State<AppState>,
    Path((plural, name)): Path<(String, String)>,
    Params(show): Params<RevealParams>,
) -> ApiResult<Json<AnyObject>> {
    let kind = kind_of(&plural)?;
    let obj = st.registry.get(kind, &name).await?;
    Ok(Json(redact(obj, show.reveal())))
}

pub async fn get_status(
    State(st): State<AppState>,
    Path((plural, name)): Path<(String, String)>,
) -> ApiResult<Json<AnyObject>> {
    let kind = status_kind(&plural)?;
    Ok(Json(st.registry.get(kind, &name).await?))
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
