//! `Service`: the Swarm service spec, laid out as SwarmKit lays it out — a `taskTemplate` that
//! every task copies, plus what is about the service as a whole (mode, endpoint, update and
//! rollback policy). A task is "dirty" when its template differs from the service's.
//!
//! Defaults are the ones Swarm really applies (SwarmKit `api/defaults`), so a spec read back
//! from the API shows the effective values.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Condition, Duration, Timestamp};

use super::define_kind;

define_kind!(
    /// A desired set of tasks running one container spec.
    Service, spec: ServiceSpec, status: ServiceStatus
);

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceSpec {
    /// What each task runs; copied into every task.
    #[serde(default)]
    pub task_template: TaskTemplate,
    #[serde(default)]
    pub mode: ServiceMode,
    #[serde(default)]
    pub update_config: UpdateConfig,
    #[serde(default)]
    pub rollback_config: UpdateConfig,
    #[serde(default)]
    pub endpoint: EndpointSpec,
}

impl ServiceSpec {
    /// Replica count for replicated services; `None` for global services and jobs.
    pub fn replicas(&self) -> Option<u64> {
        match self.mode {
            ServiceMode::Replicated { replicas } => Some(replicas),
            _ => None,
        }
    }
}

/// How many tasks and where (`deploy.mode` + `deploy.replicas`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(
    rename_all = "camelCase",
    rename_all_fields = "camelCase",
    deny_unknown_fields
)]
pub enum ServiceMode {
    /// N tasks, in slots 1..N.
    Replicated {
        #[serde(default = "one")]
        replicas: u64,
    },
    /// One task on every eligible node.
    Global {},
    /// Tasks that run to completion: `totalCompletions` in all, at most `maxConcurrent` at once.
    ReplicatedJob {
        #[serde(default = "one")]
        max_concurrent: u64,
        #[serde(default = "one")]
        total_completions: u64,
    },
    /// One task to completion on every eligible node.
    GlobalJob {},
}

fn one() -> u64 {
    1
}

impl Default for ServiceMode {
    fn default() -> Self {
        ServiceMode::Replicated { replicas: 1 }
    }
}

impl ServiceMode {
    /// The name Docker prints in `service ls`: `replicated`, `global`, `replicated job`, `global job`.
    pub fn display_name(&self) -> &'static str {
        match self {
            ServiceMode::Replicated { .. } => "replicated",
            ServiceMode::Global {} => "global",
            ServiceMode::ReplicatedJob { .. } => "replicated job",
            ServiceMode::GlobalJob {} => "global job",
        }
    }

    pub fn is_job(&self) -> bool {
        matches!(
            self,
            ServiceMode::ReplicatedJob { .. } | ServiceMode::GlobalJob {}
        )
    }

    pub fn is_global(&self) -> bool {
        matches!(self, ServiceMode::Global {} | ServiceMode::GlobalJob {})
    }
}

/// What every task of the service runs, and under which policy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TaskTemplate {
    #[serde(default)]
    pub container: ContainerSpec,
    #[serde(default)]
    pub resources: ResourceRequirements,
    #[serde(default)]
    pub restart_policy: RestartPolicy,
    #[serde(default)]
    pub placement: Placement,
    /// Networks the tasks join, with their aliases (the service name is always one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<NetworkAttachmentConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_driver: Option<Driver>,
    /// Bump to redeploy every task with an unchanged spec (`service update --force`).
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub force_update: u64,
}

fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerSpec {
    #[serde(default)]
    pub image: String,
    /// Container labels (Compose's service-level `labels:`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Replaces the image's entrypoint (Compose `entrypoint`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Replaces the image's command (Compose `command`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Environment, name → value. Ordered, so equal specs serialize equally.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hostname: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub working_dir: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(default)]
    pub tty: bool,
    #[serde(default)]
    pub open_stdin: bool,
    #[serde(default)]
    pub read_only: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<Mount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(default = "default_stop_grace")]
    pub stop_grace_period: Duration,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    /// `IP host` pairs added to `/etc/hosts`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "DnsConfig::is_empty")]
    pub dns_config: DnsConfig,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<FileReference>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub configs: Vec<FileReference>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctls: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ulimits: Vec<Ulimit>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_drop: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oom_score_adj: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation: Option<String>,
}

fn default_stop_grace() -> Duration {
    Duration::from_secs(10)
}

impl Default for ContainerSpec {
    fn default() -> Self {
        ContainerSpec {
            image: String::new(),
            labels: BTreeMap::new(),
            command: Vec::new(),
            args: Vec::new(),
            env: BTreeMap::new(),
            hostname: String::new(),
            user: String::new(),
            working_dir: String::new(),
            groups: Vec::new(),
            tty: false,
            open_stdin: false,
            read_only: false,
            init: None,
            mounts: Vec::new(),
            stop_signal: None,
            stop_grace_period: default_stop_grace(),
            healthcheck: None,
            hosts: Vec::new(),
            dns_config: DnsConfig::default(),
            secrets: Vec::new(),
            configs: Vec::new(),
            sysctls: BTreeMap::new(),
            ulimits: Vec::new(),
            cap_add: Vec::new(),
            cap_drop: Vec::new(),
            oom_score_adj: None,
            isolation: None,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DnsConfig {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl DnsConfig {
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty() && self.search.is_empty() && self.options.is_empty()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Ulimit {
    pub name: String,
    pub soft: i64,
    pub hard: i64,
}

/// A log or volume driver with options.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Driver {
    pub name: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

/// A secret or config made available to the task as a file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileReference {
    /// The Secret or Config object's name.
    pub source: String,
    /// File name (secrets: under `/run/secrets/`) or absolute path (configs).
    pub target: String,
    #[serde(default = "zero_string")]
    pub uid: String,
    #[serde(default = "zero_string")]
    pub gid: String,
    /// File mode; Swarm's default is 0444.
    #[serde(default = "default_file_mode")]
    pub mode: u32,
}

fn zero_string() -> String {
    "0".to_string()
}

/// 0o444, r--r--r--.
pub const DEFAULT_FILE_MODE: u32 = 0o444;

fn default_file_mode() -> u32 {
    DEFAULT_FILE_MODE
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Mount {
    #[serde(rename = "type", default)]
    pub type_: MountType,
    /// Volume name (`volume`), host path (`bind`); empty for `tmpfs` and anonymous volumes.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
    pub target: String,
    #[serde(default)]
    pub read_only: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_options: Option<BindOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_options: Option<VolumeOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmpfs_options: Option<TmpfsOptions>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MountType {
    #[default]
    Volume,
    Bind,
    Tmpfs,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BindOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub propagation: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VolumeOptions {
    #[serde(default)]
    pub no_copy: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver_config: Option<Driver>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subpath: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TmpfsOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
}

/// A container healthcheck; `test: ["NONE"]` disables the image's own.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Healthcheck {
    /// `["CMD", "curl", …]`, `["CMD-SHELL", "curl … || exit 1"]` or `["NONE"]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub test: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_period: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_interval: Option<Duration>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceRequirements {
    #[serde(default)]
    pub limits: Resources,
    #[serde(default)]
    pub reservations: Resources,
}

/// CPU in billionths of a CPU (`cpus: 0.5` is 500,000,000), memory in bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Resources {
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub nano_cpus: i64,
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub memory_bytes: i64,
    /// Limits only: the most processes the container may run.
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub pids: i64,
    /// Reservations only: `kind=value` generic resources such as `gpu=1`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub generic_resources: Vec<GenericResource>,
}

fn is_zero_i64(v: &i64) -> bool {
    *v == 0
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GenericResource {
    pub kind: String,
    pub value: i64,
}

/// When a finished task is replaced (`deploy.restart_policy`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RestartPolicy {
    #[serde(default)]
    pub condition: RestartCondition,
    /// Wait between a task ending and its replacement starting (Swarm: 5s).
    #[serde(default = "default_restart_delay")]
    pub delay: Duration,
    /// 0 means unlimited.
    #[serde(default)]
    pub max_attempts: u64,
    /// The window `maxAttempts` counts in; 0 means unbounded.
    #[serde(default)]
    pub window: Duration,
}

fn default_restart_delay() -> Duration {
    Duration::from_secs(5)
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            condition: RestartCondition::Any,
            delay: default_restart_delay(),
            max_attempts: 0,
            window: Duration::ZERO,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RestartCondition {
    None,
    OnFailure,
    #[default]
    Any,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Placement {
    /// `node.role==manager`, `node.labels.zone!=east`, … all must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preferences: Vec<PlacementPreference>,
    /// 0 means unlimited.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub max_replicas_per_node: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<super::Platform>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlacementPreference {
    /// A label to spread tasks evenly over: `node.labels.zone`.
    pub spread: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkAttachmentConfig {
    /// The Network object's name.
    pub target: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub driver_opts: BTreeMap<String, String>,
}

/// Rolling update or rollback policy (`deploy.update_config` / `deploy.rollback_config`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateConfig {
    /// Tasks updated at once; 0 means all.
    #[serde(default = "one")]
    pub parallelism: u64,
    /// Wait between batches.
    #[serde(default)]
    pub delay: Duration,
    #[serde(default)]
    pub failure_action: FailureAction,
    /// How long a new task is watched for failure after it starts.
    #[serde(default = "default_monitor")]
    pub monitor: Duration,
    /// Fraction of failed tasks tolerated before `failureAction` (0 to 1).
    #[serde(default)]
    pub max_failure_ratio: f64,
    #[serde(default)]
    pub order: UpdateOrder,
    /// Beyond Swarm: a new task that has not reached RUNNING by then counts as failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_timeout: Option<Duration>,
}

fn default_monitor() -> Duration {
    Duration::from_secs(5)
}

impl Default for UpdateConfig {
    fn default() -> Self {
        UpdateConfig {
            parallelism: 1,
            delay: Duration::ZERO,
            failure_action: FailureAction::Pause,
            monitor: default_monitor(),
            max_failure_ratio: 0.0,
            order: UpdateOrder::StopFirst,
            start_timeout: None,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FailureAction {
    #[default]
    Pause,
    Continue,
    Rollback,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum UpdateOrder {
    #[default]
    StopFirst,
    StartFirst,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EndpointSpec {
    #[serde(default)]
    pub mode: EndpointMode,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortConfig>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EndpointMode {
    /// One virtual IP per network, balanced over the tasks.
    #[default]
    Vip,
    /// DNS round robin over task addresses; no VIP.
    Dnsrr,
}

#[derive(
    Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortConfig {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default)]
    pub protocol: PortProtocol,
    /// The port inside the container.
    pub target_port: u16,
    /// The port outside; when absent, ipam picks one from 30000–32767 (ingress mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_port: Option<u16>,
    #[serde(default)]
    pub publish_mode: PublishMode,
}

#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum PortProtocol {
    #[default]
    Tcp,
    Udp,
    Sctp,
}

#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum PublishMode {
    /// The routing mesh: every node forwards the port to a task on any node.
    #[default]
    Ingress,
    /// Only the node running the task listens.
    Host,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceStatus {
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub observed_generation: i64,
    #[serde(default)]
    pub replicas: ReplicaStatus,
    /// Ports as published (ipam fills in ports chosen from the dynamic range).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortConfig>,
    /// One VIP per attached network (vip mode).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub virtual_ips: Vec<VirtualIp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_status: Option<UpdateStatus>,
    /// The task templates this service ran, oldest first, at most 10 (the update controller
    /// keeps them; a rollback can go back to any of them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revisions: Vec<ServiceRevision>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// One revision of a service: the template it ran at a generation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceRevision {
    /// The service `generation` that introduced this template.
    pub generation: i64,
    pub template: TaskTemplate,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Timestamp>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReplicaStatus {
    #[serde(default)]
    pub desired: u64,
    #[serde(default)]
    pub running: u64,
    /// Jobs: tasks that completed successfully.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub completed: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VirtualIp {
    pub network: String,
    /// CIDR form, as Docker shows it: `10.0.1.2/24`.
    pub addr: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateStatus {
    pub state: UpdateState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// How many slots (nodes, for a global service) needed replacing when this update or
    /// rollback started: the denominator of `maxFailureRatio` (SwarmKit's `dirtySlots`).
    /// 0 when unknown (written by an older controller).
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub dirty_slots: u64,
}

/// Swarm's update states, with Swarm's spelling.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum UpdateState {
    #[default]
    Updating,
    Paused,
    Completed,
    RollbackStarted,
    RollbackPaused,
    RollbackCompleted,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_spec_gets_swarm_defaults() {
        let spec: ServiceSpec = serde_json::from_str("{}").unwrap();
        assert_eq!(spec.mode, ServiceMode::Replicated { replicas: 1 });
        let u = &spec.update_config;
        assert_eq!(u.parallelism, 1);
        assert_eq!(u.delay, Duration::ZERO);
        assert_eq!(u.failure_action, FailureAction::Pause);
        assert_eq!(u.monitor, Duration::from_secs(5));
        assert_eq!(u.max_failure_ratio, 0.0);
        assert_eq!(u.order, UpdateOrder::StopFirst);
        assert_eq!(spec.rollback_config, UpdateConfig::default());
        let r = &spec.task_template.restart_policy;
        assert_eq!(r.condition, RestartCondition::Any);
        assert_eq!(r.delay, Duration::from_secs(5));
        assert_eq!(
            spec.task_template.container.stop_grace_period,
            Duration::from_secs(10)
        );
    }

    #[test]
    fn partial_blocks_keep_other_defaults() {
        let spec: ServiceSpec = serde_json::from_value(serde_json::json!({
            "mode": {"replicated": {}},
            "updateConfig": {"parallelism": 2},
            "taskTemplate": {"container": {"image": "nginx"}}
        }))
        .unwrap();
        assert_eq!(spec.replicas(), Some(1));
        assert_eq!(spec.update_config.parallelism, 2);
        assert_eq!(spec.update_config.monitor, Duration::from_secs(5));
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err =
            serde_json::from_value::<ServiceSpec>(serde_json::json!({"replicas": 3})).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn modes_serialize_as_tagged_objects() {
        let v = serde_json::to_value(ServiceMode::Global {}).unwrap();
        assert_eq!(v, serde_json::json!({"global": {}}));
        let v = serde_json::to_value(ServiceMode::ReplicatedJob {
            max_concurrent: 2,
            total_completions: 5,
        })
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"replicatedJob": {"maxConcurrent": 2, "totalCompletions": 5}})
        );
    }
}
