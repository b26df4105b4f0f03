//! `GET /v1/<plural>`: list with selectors and pagination, or — with `?watch=true` — hand over
//! to the watch handler.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use swarm_api::Kind;
use swarm_api::selector::{FieldSelector, LabelSelector};

use super::{AppState, Params, flag, kind_of};
use crate::errors::{ApiError, ApiResult};
use crate::registry::ListQuery;
use crate::watch_cache::{CachedList, Freshness};

/// The query parameters of `GET /v1/<plural>`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListParams {
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    pub limit: Option<String>,
    #[serde(rename = "continue")]
    pub continue_token: Option<String>,
    pub watch: Option<String>,
    pub resource_version: Option<String>,
    pub allow_watch_bookmarks: Option<String>,
    pub timeout_seconds: Option<String>,
    /// `true`: secrets keep their data (see `redact`).
    pub show_data: Option<String>,
}

impl ListParams {
    /// The selectors and paging of the request, validated.
    pub fn query(&self, kind: Kind) -> ApiResult<ListQuery> {
        let labels = LabelSelector::parse(self.label_selector.as_deref().unwrap_or(""))
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let fields = FieldSelector::parse_for(kind, self.field_selector.as_deref().unwrap_or(""))
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let limit = match self.limit.as_deref() {
            None | Some("") => 0,
            Some(l) => l
                .parse::<usize>()
                .map_err(|_| ApiError::bad_request(format!("invalid limit {l:?}")))?,
        };
        Ok(ListQuery {
            labels,
            fields,
            limit,
            continue_token: self.continue_token.clone().filter(|c| !c.is_empty()),
        })
    }
}

pub async fn list(
    State(st): State<AppState>,
    axum::extract::Path(plural): axum::extract::Path<String>,
    Params(p): Params<ListParams>,
) -> ApiResult<Response> {
    let kind = kind_of(&plural)?;
    if flag(&p.watch, "watch")? {
        return super::watch::watch(st, kind, p).await;
    }
    let q = p.query(kind)?;
    let reveal = flag(&p.show_data, "showData")?;
    let freshness = Freshness::parse(p.resource_version.as_deref())?;
    if let Some(list) = st.cache.list(kind, &q, freshness).await {
        return Ok(super::objects::json_bytes(cached_list_body(
            kind, &list, reveal,
        )));
    }
    let list = st.registry.list(kind, &q).await?;
    let mut json = list.to_json();
    if let Some(items) = json.get_mut("items").and_then(|i| i.as_array_mut()) {
        for item in items {
            super::redact::redact_json(item, reveal);
        }
    }
    Ok(Json(json).into_response())
}

/// The wire form of a list from the cache (as `ObjectList::to_json`), written from the bytes
/// the cache holds for each object.
fn cached_list_body(kind: Kind, list: &CachedList, reveal: bool) -> Bytes {
    let mut out = Vec::with_capacity(
        128 + list
            .items
            .iter()
            .map(|o| o.public_json.len() + 1)
            .sum::<usize>(),
    );
    out.extend_from_slice(
        format!(
            "{{\"apiVersion\":\"{}\",\"kind\":\"{}List\",\"metadata\":{{\"resourceVersion\":\"{}\"}},\"items\":[",
            swarm_api::API_VERSION,
            kind.name(),
            list.revision
        )
        .as_bytes(),
    );
    for (i, o) in list.items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(if reveal { &o.json } else { &o.public_json });
    }
    out.extend_from_slice(b"]}");
    Bytes::from(out)
}
