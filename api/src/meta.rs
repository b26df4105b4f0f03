//! Object metadata shared by every kind, as in Kubernetes' `ObjectMeta`.
//!
//! `resourceVersion` is the store revision of the object's last write. The apiserver fills it in
//! on every read and never stores it inside the value; clients treat it as opaque and send it
//! back to make a write conditional (compare-and-swap).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Timestamp;

/// The `apiVersion` of every swarm object.
pub const API_VERSION: &str = "swarm/v1";

/// The label that ties an object to the stack that created it (`docker stack deploy` uses
/// `com.docker.stack.namespace`; swarm accepts that too when reading Compose labels).
pub const STACK_LABEL: &str = "swarm.stack";

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectMeta {
    /// Unique per kind. Services, networks, secrets and configs of a stack are `<stack>_<name>`.
    pub name: String,
    /// Set by the apiserver on create; never changes.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
    /// The store revision of the last write (opaque; send it back for a conditional update).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub resource_version: String,
    /// Bumped by the apiserver on every change of `spec` (never on status or metadata changes).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub generation: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<Timestamp>,
    /// Set when a delete was asked while finalizers remain; the object goes once they are gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_timestamp: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owner_references: Vec<OwnerReference>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finalizers: Vec<String>,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

impl ObjectMeta {
    pub fn named(name: impl Into<String>) -> Self {
        ObjectMeta {
            name: name.into(),
            ..Default::default()
        }
    }

    /// The stack this object belongs to, if any.
    pub fn stack(&self) -> Option<&str> {
        self.labels.get(STACK_LABEL).map(String::as_str)
    }
}

/// Points from a dependent (a task) to its owner (a service); gc deletes orphans.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OwnerReference {
    pub kind: String,
    pub name: String,
    pub uid: String,
    #[serde(default)]
    pub controller: bool,
}

/// A condition as in Kubernetes: `type` is a name (`Converged`, `Ready`), `status` is
/// `True`, `False` or `Unknown`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: ConditionStatus,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub observed_generation: i64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ConditionStatus {
    True,
    False,
    #[default]
    Unknown,
}
