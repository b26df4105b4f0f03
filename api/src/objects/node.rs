//! `Node`: a machine running an agent. Users set role, availability and labels; the dispatcher
//! and the nodes controller write its status.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Timestamp;

use super::define_kind;

define_kind!(
    /// A machine that runs tasks.
    Node, spec: NodeSpec, status: NodeStatus
);

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeSpec {
    #[serde(default)]
    pub role: NodeRole,
    #[serde(default)]
    pub availability: NodeAvailability,
    /// Node labels, matched by `node.labels.<key>` constraints and spread preferences.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NodeRole {
    #[default]
    Worker,
    Manager,
}

/// What the scheduler may do with a node (`docker node update --availability`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NodeAvailability {
    /// Takes new tasks.
    #[default]
    Active,
    /// Keeps its tasks, takes no new ones.
    Pause,
    /// Its tasks move elsewhere; takes no new ones.
    Drain,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeStatus {
    #[serde(default)]
    pub state: NodeState,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// The address other nodes and the routing mesh reach this node on.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub addr: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hostname: String,
    #[serde(default)]
    pub resources: NodeResources,
    #[serde(default)]
    pub engine: EngineDescription,
    #[serde(default)]
    pub platform: Platform,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_heartbeat: Option<Timestamp>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    #[default]
    Unknown,
    Down,
    Ready,
    Disconnected,
}

/// What a node offers to reservations.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeResources {
    #[serde(default)]
    pub nano_cpus: i64,
    #[serde(default)]
    pub memory_bytes: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EngineDescription {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub engine_version: String,
    /// Docker engine labels, matched by `engine.labels.<key>` constraints.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Platform {
    /// `linux`, `windows`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub os: String,
    /// `x86_64`, `aarch64`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub architecture: String,
}
