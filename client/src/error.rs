//! What can go wrong talking to the apiserver: the server said no (`Api`, with its `Status`),
//! the server could not be reached (`Transport`), or it answered something we cannot read.
//!
//! Every message says what happened and, where there is one, what to do about it.

use swarm_api::{Status, StatusReason};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The apiserver refused the request and said why.
    #[error("{}", .0.message)]
    Api(Box<Status>),

    /// The request never got an answer: connection refused, DNS, TLS, timeout.
    #[error(
        "cannot reach the apiserver at {url}: {message} — is 'swarm server' running? \
         (use --server or SWARM_CONFIG)"
    )]
    Transport { url: String, message: String },

    /// The apiserver answered with an error that is not a `Status` object.
    #[error("the apiserver answered {code} to {method} {url}: {body}")]
    UnexpectedStatus {
        method: String,
        url: String,
        code: u16,
        body: String,
    },

    /// A 2xx answer whose body is not what the API promises.
    #[error("cannot read the apiserver's answer to {what}: {message}")]
    Decode { what: String, message: String },

    /// The client could not be set up (bad URL, unreadable certificate).
    #[error("invalid client configuration: {0}")]
    Config(String),

    /// A watch line longer than any object the API may hold.
    #[error("a watch event is longer than {limit} bytes; the stream is not NDJSON")]
    LineTooLong { limit: usize },
}

impl ClientError {
    /// The `Status` the apiserver sent, if it sent one.
    pub fn status(&self) -> Option<&Status> {
        match self {
            ClientError::Api(s) => Some(s),
            _ => None,
        }
    }

    fn reason(&self) -> Option<StatusReason> {
        self.status().map(|s| s.reason)
    }

    pub fn is_not_found(&self) -> bool {
        self.reason() == Some(StatusReason::NotFound)
    }

    pub fn is_already_exists(&self) -> bool {
        self.reason() == Some(StatusReason::AlreadyExists)
    }

    /// A stale `resourceVersion` precondition (re-read and retry).
    pub fn is_conflict(&self) -> bool {
        self.reason() == Some(StatusReason::Conflict)
    }

    /// The requested `resourceVersion` is compacted away (re-list, then watch again).
    pub fn is_gone(&self) -> bool {
        matches!(
            self.reason(),
            Some(StatusReason::Gone | StatusReason::Expired)
        ) || self.status().is_some_and(|s| s.code == 410)
    }

    pub fn is_invalid(&self) -> bool {
        self.reason() == Some(StatusReason::Invalid)
    }

    /// The server could not be reached at all.
    pub fn is_transport(&self) -> bool {
        matches!(self, ClientError::Transport { .. })
    }

    /// Worth retrying with backoff: transport failures, 429, 5xx.
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Transport { .. } => true,
            ClientError::Api(s) => s.code == 429 || s.code >= 500,
            ClientError::UnexpectedStatus { code, .. } => *code == 429 || *code >= 500,
            _ => false,
        }
    }

    /// Turns a reqwest failure into a `Transport` error whose message names the root cause
    /// (`connection refused`, `timed out`) rather than reqwest's outermost wrapper.
    pub(crate) fn transport(url: &str, err: &reqwest::Error) -> ClientError {
        ClientError::Transport {
            url: url.to_string(),
            message: root_cause(err),
        }
    }
}

impl From<Status> for ClientError {
    fn from(s: Status) -> Self {
        ClientError::Api(Box::new(s))
    }
}

/// The innermost message of an error chain, with reqwest's timeouts spelled out.
fn root_cause(err: &reqwest::Error) -> String {
    if err.is_timeout() {
        return "the request timed out".to_string();
    }
    let mut cur: &dyn std::error::Error = err;
    let mut msg = cur.to_string();
    while let Some(next) = cur.source() {
        cur = next;
        msg = cur.to_string();
    }
    // io::Error messages look like "Connection refused (os error 111)".
    let msg = match msg.find(" (os error") {
        Some(i) => msg[..i].to_string(),
        None => msg,
    };
    lowercase_first(&msg)
}

fn lowercase_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_classify() {
        let e = ClientError::from(Status::not_found("Service", "web"));
        assert!(e.is_not_found());
        assert!(!e.is_conflict());
        assert_eq!(e.to_string(), "Service \"web\" not found");
        let gone = ClientError::from(Status::new(StatusReason::Expired, "too old"));
        assert!(gone.is_gone());
        assert!(!gone.is_retryable());
        let busy = ClientError::from(Status::new(StatusReason::ServiceUnavailable, "busy"));
        assert!(busy.is_retryable());
    }

    #[test]
    fn transport_message_says_what_to_do() {
        let e = ClientError::Transport {
            url: "http://127.0.0.1:2377".into(),
            message: "connection refused".into(),
        };
        assert_eq!(
            e.to_string(),
            "cannot reach the apiserver at http://127.0.0.1:2377: connection refused — \
             is 'swarm server' running? (use --server or SWARM_CONFIG)"
        );
        assert!(e.is_transport() && e.is_retryable());
    }

    #[test]
    fn lowercases_only_the_first_letter() {
        assert_eq!(lowercase_first("Connection Refused"), "connection Refused");
        assert_eq!(lowercase_first(""), "");
    }
}
