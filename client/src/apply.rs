//! The stack apply endpoint's answer: what happened (or would happen) to each object.

use std::fmt;

use serde::{Deserialize, Serialize};

/// `POST /v1/stacks/<name>/apply` response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplyResponse {
    pub stack: String,
    #[serde(default)]
    pub dry_run: bool,
    /// The store revision after the apply (unchanged by a dry run).
    #[serde(default)]
    pub resource_version: String,
    #[serde(default)]
    pub results: Vec<ApplyResult>,
}

impl ApplyResponse {
    /// Whether applying would change anything.
    pub fn changes_anything(&self) -> bool {
        self.results
            .iter()
            .any(|r| r.action != ApplyAction::Unchanged)
    }
}

/// What happened to one object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplyResult {
    /// The kind's name, `Service`.
    pub kind: String,
    pub name: String,
    pub action: ApplyAction,
}

impl ApplyResult {
    /// `service/voting_vote`, as kubectl prints objects.
    pub fn reference(&self) -> String {
        format!("{}/{}", self.kind.to_ascii_lowercase(), self.name)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApplyAction {
    Created,
    Configured,
    Unchanged,
    Pruned,
}

impl fmt::Display for ApplyAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ApplyAction::Created => "created",
            ApplyAction::Configured => "configured",
            ApplyAction::Unchanged => "unchanged",
            ApplyAction::Pruned => "pruned",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_contract() {
        let r: ApplyResponse = serde_json::from_str(
            r#"{"stack":"voting","dryRun":true,"resourceVersion":"9","results":[
                {"kind":"Service","name":"voting_vote","action":"created"},
                {"kind":"Network","name":"voting_front","action":"unchanged"}]}"#,
        )
        .unwrap();
        assert!(r.dry_run);
        assert!(r.changes_anything());
        assert_eq!(r.results[0].reference(), "service/voting_vote");
        assert_eq!(r.results[1].action.to_string(), "unchanged");
    }
}
