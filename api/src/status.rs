//! The error body of every failed API call: a Kubernetes-style `Status` object.
//!
//! Clients branch on `reason` (machine-readable) and show `message` (human-readable);
//! `Invalid` carries one cause per bad field so a form or a CLI can point at each of them.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::API_VERSION;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub api_version: String,
    pub kind: String,
    /// Always `Failure` for errors.
    pub status: String,
    pub message: String,
    pub reason: StatusReason,
    /// The HTTP status code, repeated in the body for clients that lose it.
    pub code: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<StatusDetails>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum StatusReason {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    AlreadyExists,
    Conflict,
    Gone,
    Expired,
    Invalid,
    RequestEntityTooLarge,
    MethodNotAllowed,
    Timeout,
    ServiceUnavailable,
    InternalError,
}

impl StatusReason {
    /// The HTTP status code that goes with the reason.
    pub fn http_code(self) -> u16 {
        match self {
            StatusReason::BadRequest => 400,
            StatusReason::Unauthorized => 401,
            StatusReason::Forbidden => 403,
            StatusReason::NotFound => 404,
            StatusReason::MethodNotAllowed => 405,
            StatusReason::AlreadyExists | StatusReason::Conflict => 409,
            StatusReason::Gone | StatusReason::Expired => 410,
            StatusReason::RequestEntityTooLarge => 413,
            StatusReason::Invalid => 422,
            StatusReason::InternalError => 500,
            StatusReason::ServiceUnavailable => 503,
            StatusReason::Timeout => 504,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusDetails {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub causes: Vec<StatusCause>,
}

/// One reason a request was refused, pointing at a field path such as `spec.mode.replicas`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusCause {
    /// A short machine-readable tag: `FieldValueRequired`, `FieldValueInvalid`, `FieldValueNotSupported`,
    /// `FieldValueDuplicate`, `FieldValueForbidden`.
    pub reason: String,
    pub message: String,
    pub field: String,
}

impl StatusCause {
    pub fn new(reason: &str, field: impl Into<String>, message: impl Into<String>) -> Self {
        StatusCause {
            reason: reason.to_string(),
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn required(field: impl Into<String>) -> Self {
        let field = field.into();
        let message = format!("{field} is required");
        StatusCause::new("FieldValueRequired", field, message)
    }

    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        StatusCause::new("FieldValueInvalid", field, message)
    }
}

impl Status {
    pub fn new(reason: StatusReason, message: impl Into<String>) -> Self {
        Status {
            api_version: API_VERSION.to_string(),
            kind: "Status".to_string(),
            status: "Failure".to_string(),
            message: message.into(),
            reason,
            code: reason.http_code(),
            details: None,
        }
    }

    pub fn with_details(mut self, kind: &str, name: &str) -> Self {
        let details = self.details.get_or_insert_with(Default::default);
        details.kind = kind.to_string();
        details.name = name.to_string();
        self
    }

    pub fn not_found(kind: &str, name: &str) -> Self {
        Status::new(StatusReason::NotFound, format!("{kind} {name:?} not found"))
            .with_details(kind, name)
    }

    pub fn already_exists(kind: &str, name: &str) -> Self {
        Status::new(
            StatusReason::AlreadyExists,
            format!("{kind} {name:?} already exists"),
        )
        .with_details(kind, name)
    }

    pub fn conflict(kind: &str, name: &str, why: &str) -> Self {
        Status::new(
            StatusReason::Conflict,
            format!("operation on {kind} {name:?} refused: {why}"),
        )
        .with_details(kind, name)
    }

    /// 422 with one cause per bad field. The message lists every cause, so a client that
    /// shows only `message` still tells the user everything.
    pub fn invalid(kind: &str, name: &str, causes: Vec<StatusCause>) -> Self {
        let list: Vec<String> = causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        let mut s = Status::new(
            StatusReason::Invalid,
            format!("{kind} {name:?} is invalid: {}", list.join("; ")),
        )
        .with_details(kind, name);
        if let Some(d) = s.details.as_mut() {
            d.causes = causes;
        }
        s
    }

    pub fn causes(&self) -> &[StatusCause] {
        self.details.as_ref().map(|d| &d.causes[..]).unwrap_or(&[])
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({:?})", self.message, self.reason)
    }
}

impl std::error::Error for Status {}
