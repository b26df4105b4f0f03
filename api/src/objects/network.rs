//! `Network`: a network tasks attach to. Users write the spec; ipam allocates the subnet.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::define_kind;

define_kind!(
    /// A network services attach to; each node has it as a Docker network.
    Network, spec: NetworkSpec, status: NetworkStatus
);

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkSpec {
    #[serde(default)]
    pub driver: NetworkDriver,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub driver_opts: BTreeMap<String, String>,
    /// Standalone containers may join it too (`docker network create --attachable`).
    #[serde(default)]
    pub attachable: bool,
    /// No route to the outside.
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub ipam: NetworkIpam,
    /// The routing-mesh network (`docker network create --ingress`): services that publish
    /// ports in ingress mode get a VIP on it. One per cluster; ipam creates `ingress` when
    /// none exists.
    #[serde(default, skip_serializing_if = "is_false")]
    pub ingress: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NetworkDriver {
    #[default]
    Overlay,
    Bridge,
}

/// What the user asks of addressing; empty means "pick from the default pool".
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkIpam {
    /// CIDR such as `10.0.9.0/24`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkStatus {
    /// The allocated subnet (CIDR).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subnet: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub gateway: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<crate::Condition>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub observed_generation: i64,
    /// ipam's ledger of the addresses handed out on this network: address (no prefix) →
    /// owner (`task/<name>` or `service/<name>`). Written together with the owner in one
    /// transaction, conditional on this object's `resourceVersion`, so two allocators can
    /// never hand out one address twice.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub addresses: BTreeMap<String, String>,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}
