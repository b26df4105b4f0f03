//! The records of the log endpoints (`GET /v1/services/{name}/logs`, `GET /v1/tasks/{name}/logs`):
//! newline-delimited JSON, one record per container log line, or an error record when the
//! logs of a task or of a whole node could not be read.
//!
//! ```json
//! {"task":"web.1.1","taskId":"3f1c…","node":"n1","service":"web","slot":1,"stream":"stdout","timestamp":"2026-01-01T00:00:00.123456789Z","line":"GET / 200"}
//! {"task":"web.2.1","taskId":"9a0b…","node":"n2","service":"web","slot":2,"error":"node n2 is not connected"}
//! ```

use serde::{Deserialize, Serialize};

/// Which output of the container a line came from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogStream {
    #[default]
    Stdout,
    Stderr,
}

/// One log line of one task, or an error (then `error` is set and `line` is empty).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogRecord {
    /// The task's object name (`web.1.1`); empty in an error about a whole node.
    #[serde(default)]
    pub task: String,
    /// The task's ID as `service ps` shows it untruncated (its uid without dashes).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub task_id: String,
    #[serde(default)]
    pub node: String,
    #[serde(default)]
    pub service: String,
    /// Replicated services: the task's slot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<u64>,
    #[serde(default)]
    pub stream: LogStream,
    /// RFC 3339 with nanoseconds, when the container wrote the line (and it was asked for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    /// The line without its newline (invalid UTF-8 replaced).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub line: String,
    /// Why this task's (or node's) logs end here.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
}

impl LogRecord {
    pub fn is_error(&self) -> bool {
        !self.error.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_omit_what_is_empty() {
        let r = LogRecord {
            task: "web.1.1".into(),
            task_id: "abc".into(),
            node: "n1".into(),
            service: "web".into(),
            slot: Some(1),
            stream: LogStream::Stderr,
            timestamp: None,
            line: "boom".into(),
            error: String::new(),
        };
        let s = serde_json::to_string(&r).unwrap();
        assert_eq!(
            s,
            r#"{"task":"web.1.1","taskId":"abc","node":"n1","service":"web","slot":1,"stream":"stderr","line":"boom"}"#
        );
        assert_eq!(serde_json::from_str::<LogRecord>(&s).unwrap(), r);
        let e: LogRecord = serde_json::from_str(r#"{"node":"n2","error":"gone"}"#).unwrap();
        assert!(e.is_error());
        assert_eq!(e.stream, LogStream::Stdout);
    }
}
