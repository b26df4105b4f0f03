//! `Lease`: a leader-election lock held by one replica of a controller at a time.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Timestamp;

use super::define_kind;

define_kind!(
    /// Who leads a controller, until when.
    Lease, spec: LeaseSpec
);

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LeaseSpec {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub holder_identity: String,
    #[serde(default)]
    pub lease_duration_seconds: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acquire_time: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_time: Option<Timestamp>,
    #[serde(default)]
    pub lease_transitions: u32,
}
