//! `GitSync`: a Git repository path whose stack files the gitops controller keeps applied.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Condition, Duration};

use super::define_kind;

define_kind!(
    /// Keeps a stack in sync with files in a Git repository.
    GitSync, spec: GitSyncSpec, status: GitSyncStatus
);

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GitSyncSpec {
    /// Clone URL (`https://…`, `file://…`).
    #[serde(default)]
    pub repo: String,
    /// Branch, tag or commit.
    #[serde(default = "default_ref", rename = "ref")]
    pub reference: String,
    /// Directory or file inside the repository holding the stack files.
    #[serde(default)]
    pub path: String,
    /// The stack name the files are applied as; defaults to the object's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<String>,
    #[serde(default = "default_interval")]
    pub interval: Duration,
    /// Delete objects of the stack that the files no longer contain.
    #[serde(default)]
    pub prune: bool,
    #[serde(default)]
    pub suspend: bool,
}

fn default_ref() -> String {
    "main".to_string()
}

fn default_interval() -> Duration {
    Duration::from_secs(60)
}

impl Default for GitSyncSpec {
    fn default() -> Self {
        GitSyncSpec {
            repo: String::new(),
            reference: default_ref(),
            path: String::new(),
            stack: None,
            interval: default_interval(),
            prune: false,
            suspend: false,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GitSyncStatus {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_applied_commit: String,
    /// `kind/name` of every object the last sync applied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inventory: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default)]
    pub observed_generation: i64,
}
