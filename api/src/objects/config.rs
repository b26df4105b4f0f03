//! `Secret` and `Config`: data handed to tasks as files. Data is base64, as in Kubernetes;
//! secrets are encrypted at rest by the apiserver and never logged.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::define_kind;

/// Largest secret or config payload, as in Swarm (500 KiB).
pub const MAX_DATA_BYTES: usize = 500 * 1024;

/// The one template driver (`templateDriver`): Go templates, rendered per task by the agent.
pub const TEMPLATE_DRIVER_GOLANG: &str = "golang";

define_kind!(
    /// Sensitive data mounted into tasks at `/run/secrets/<name>`.
    Secret, spec: DataSpec
);

define_kind!(
    /// Non-sensitive data mounted into tasks at a chosen path.
    Config, spec: DataSpec
);

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DataSpec {
    /// The content, base64-encoded.
    #[serde(default)]
    pub data: String,
    /// `golang` to expand `{{.Service.Name}}`-style templates per task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_driver: Option<String>,
}
