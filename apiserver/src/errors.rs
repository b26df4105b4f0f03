//! Every failure the API answers with, as a kube-style `Status` body.
//!
//! Handlers return `Result<_, ApiError>`; `ApiError` is a `Status` plus the `IntoResponse` that
//! sends it with the matching HTTP code. Store errors are translated here, in one place, so
//! that `Conflict` always reads the same way whichever endpoint hit it:
//!
//! | store                | HTTP | reason          |
//! |----------------------|------|-----------------|
//! | `NotFound`           | 404  | `NotFound`      |
//! | `AlreadyExists`      | 409  | `AlreadyExists` |
//! | `Conflict`           | 409  | `Conflict`      |
//! | `Compacted`          | 410  | `Expired`       |
//! | `FutureRevision`     | 504  | `Timeout`       |
//! | `Unavailable`        | 503  | `ServiceUnavailable` |
//! | `Internal`           | 500  | `InternalError` |

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use swarm_api::{Kind, Status, StatusCause, StatusReason};

use crate::store::StoreError;

/// An API failure: the `Status` to send. Boxed, since `Status` is large and errors travel far.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError(pub Box<Status>);

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(reason: StatusReason, message: impl Into<String>) -> Self {
        ApiError(Box::new(Status::new(reason, message)))
    }

    pub fn status(&self) -> &Status {
        &self.0
    }

    pub fn reason(&self) -> StatusReason {
        self.0.reason
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusReason::BadRequest, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(StatusReason::InternalError, message)
    }

    pub fn not_found(kind: Kind, name: &str) -> Self {
        ApiError(Box::new(Status::not_found(kind.plural(), name)))
    }

    pub fn already_exists(kind: Kind, name: &str) -> Self {
        ApiError(Box::new(Status::already_exists(kind.plural(), name)))
    }

    /// The kube wording for a stale `resourceVersion`.
    pub fn stale(kind: Kind, name: &str) -> Self {
        let mut s = Status::new(
            StatusReason::Conflict,
            format!(
                "Operation cannot be fulfilled on {} {name:?}: the object has been modified; \
                 please apply your changes to the latest version and try again",
                kind.plural()
            ),
        );
        s = s.with_details(kind.plural(), name);
        ApiError(Box::new(s))
    }

    pub fn conflict(kind: Kind, name: &str, why: &str) -> Self {
        ApiError(Box::new(Status::conflict(kind.plural(), name, why)))
    }

    pub fn invalid(kind: Kind, name: &str, causes: Vec<StatusCause>) -> Self {
        ApiError(Box::new(Status::invalid(kind.name(), name, causes)))
    }

    pub fn expired(message: impl Into<String>) -> Self {
        ApiError::new(StatusReason::Expired, message)
    }

    /// Maps a store error about the object `kind/name`.
    pub fn from_store(kind: Kind, name: &str, e: StoreError) -> Self {
        match e {
            StoreError::NotFound { .. } => ApiError::not_found(kind, name),
            StoreError::AlreadyExists { .. } => ApiError::already_exists(kind, name),
            StoreError::Conflict { .. } => ApiError::stale(kind, name),
            StoreError::Txn { source, .. } => ApiError::from_store(kind, name, *source),
            other => ApiError::from(other),
        }
    }

    /// Prefixes the message with `context: ` and adds a cause naming the field `context`
    /// (a transaction names the operation that failed this way: `operations[1]`).
    pub fn in_context(mut self, context: &str) -> Self {
        let status = &mut self.0;
        status.message = format!("{context}: {}", status.message);
        let details = status.details.get_or_insert_with(Default::default);
        if details.causes.is_empty() {
            details.causes.push(StatusCause::new(
                &format!("{:?}", status.reason),
                context,
                status.message.clone(),
            ));
        } else {
            for c in &mut details.causes {
                c.field = if c.field.is_empty() {
                    context.to_string()
                } else {
                    format!("{context}.{}", c.field)
                };
            }
        }
        self
    }

    pub fn http_status(&self) -> StatusCode {
        StatusCode::from_u16(self.0.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

/// Store errors without object context (lists, watches, health checks).
impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match &e {
            StoreError::Compacted {
                requested,
                compacted,
            } => ApiError::expired(format!(
                "too old resource version: {requested} ({compacted})"
            )),
            StoreError::FutureRevision { .. } => ApiError::new(
                StatusReason::Timeout,
                format!("Too large resource version: {e}"),
            ),
            StoreError::Unavailable(_) => {
                ApiError::new(StatusReason::ServiceUnavailable, e.to_string())
            }
            StoreError::NotFound { .. } => ApiError::new(StatusReason::NotFound, e.to_string()),
            StoreError::AlreadyExists { .. } => {
                ApiError::new(StatusReason::AlreadyExists, e.to_string())
            }
            StoreError::Conflict { .. } => ApiError::new(StatusReason::Conflict, e.to_string()),
            StoreError::Txn { .. } | StoreError::Internal(_) => {
                tracing::error!(error = %e, "store error");
                ApiError::internal(e.to_string())
            }
        }
    }
}

impl From<Status> for ApiError {
    fn from(s: Status) -> Self {
        ApiError(Box::new(s))
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.http_status();
        (code, Json(*self.0)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_map_to_kube_reasons() {
        let e = ApiError::from_store(
            Kind::Service,
            "web",
            StoreError::Conflict {
                key: "k".into(),
                expected: 1,
                actual: 2,
            },
        );
        assert_eq!(e.reason(), StatusReason::Conflict);
        assert_eq!(e.http_status(), StatusCode::CONFLICT);
        assert!(e.status().message.contains("has been modified"));

        let e = ApiError::from(StoreError::Compacted {
            requested: 3,
            compacted: 10,
        });
        assert_eq!(e.http_status(), StatusCode::GONE);
        assert_eq!(e.reason(), StatusReason::Expired);
    }

    #[test]
    fn context_names_the_operation() {
        let e = ApiError::already_exists(Kind::Task, "t").in_context("operations[1]");
        assert!(e.status().message.starts_with("operations[1]: "));
        assert_eq!(e.status().causes()[0].field, "operations[1]");

        let e = ApiError::invalid(Kind::Task, "t", vec![StatusCause::required("spec.service")])
            .in_context("objects[2]");
        assert_eq!(e.status().causes()[0].field, "objects[2].spec.service");
    }
}
