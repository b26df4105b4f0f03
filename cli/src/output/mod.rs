//! How the commands print: output formats, tables, YAML, and errors on stderr.

pub mod columns;
pub mod humanize;
pub mod listing;
pub mod table;
pub mod tabwriter;
pub mod template;

use std::io::{self, Write};
use std::process::ExitCode;

use swarm_client::ClientError;

/// `-o` of `swarm get`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Columns chosen per kind.
    Table,
    /// The table with a few more columns.
    Wide,
    Json,
    Yaml,
}

/// Prints a command's failure on stderr and picks the exit code (1, or the command's own).
pub fn report(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", describe_error(&e));
            ExitCode::FAILURE
        }
    }
}

/// An error chain as one message; an apiserver refusal also lists each cause on its own line.
pub fn describe_error(e: &anyhow::Error) -> String {
    let mut msg = format!("{e:#}");
    if let Some(status) = e
        .chain()
        .find_map(|c| c.downcast_ref::<ClientError>())
        .and_then(ClientError::status)
    {
        // Causes the message already spells out are not repeated.
        let head = msg.clone();
        for cause in status
            .causes()
            .iter()
            .filter(|c| !head.contains(&c.message))
        {
            if cause.field.is_empty() {
                msg.push_str(&format!("\n  - {}", cause.message));
            } else {
                msg.push_str(&format!("\n  - {}: {}", cause.field, cause.message));
            }
        }
    }
    msg
}

/// A value as YAML (the same document `-o json` would print).
pub fn to_yaml(v: &serde_json::Value) -> anyhow::Result<String> {
    Ok(serde_saphyr::to_string(v)?)
}

/// Writes `text` to stdout and flushes. Returns `false` when stdout is closed (a pipe whose
/// reader went away), which callers treat as the end of the output, not an error.
pub fn emit(text: &str) -> anyhow::Result<bool> {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_api::{Status, StatusCause};

    #[test]
    fn refusals_list_every_cause() {
        let status = Status::invalid(
            "Stack",
            "voting",
            vec![
                StatusCause::invalid("services.vote.networks", "network \"ext\" not found"),
                StatusCause::required("services.db.image"),
            ],
        );
        let mut status = status;
        status.message = "stack \"voting\" is invalid".into();
        let e = anyhow::Error::new(ClientError::from(status))
            .context("apply of stack \"voting\" refused");
        let msg = describe_error(&e);
        assert!(
            msg.starts_with("apply of stack \"voting\" refused: "),
            "{msg}"
        );
        assert!(
            msg.contains("\n  - services.vote.networks: network \"ext\" not found"),
            "{msg}"
        );
        assert!(
            msg.contains("\n  - services.db.image: services.db.image is required"),
            "{msg}"
        );
    }

    #[test]
    fn causes_in_the_message_are_not_repeated() {
        let status = Status::invalid("Stack", "s", vec![StatusCause::invalid("a.b", "bad value")]);
        let msg = describe_error(&anyhow::Error::new(ClientError::from(status)));
        assert_eq!(msg.matches("bad value").count(), 1, "{msg}");
    }

    #[test]
    fn yaml_of_json() {
        let y = to_yaml(&serde_json::json!({"kind":"Service","spec":{"replicas":2}})).unwrap();
        assert!(y.contains("kind: Service"), "{y}");
        assert!(y.contains("replicas: 2"), "{y}");
    }
}
