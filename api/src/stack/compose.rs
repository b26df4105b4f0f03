//! The typed Compose v3 model as `docker stack deploy` accepts it (the legacy v3 schema, not
//! compose-spec): unknown keys are refused, `x-` extension keys are allowed (they are removed
//! before decoding; the JSON Schema allows them by pattern). Short forms (`"8080:80"`,
//! `src:dst:ro`, `1m30s`, `512M`) are parsed here, so their errors carry positions.
//!
//! Keys docker ignores with a warning are accepted as free-form values and reported by the
//! loader; the forbidden keys (`extends`, `mem_limit`, …) are not part of the model.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use super::units;

/// Keys `docker stack deploy` refuses outright.
pub const FORBIDDEN_SERVICE_KEYS: [&str; 8] = [
    "extends",
    "volume_driver",
    "volumes_from",
    "cpu_quota",
    "cpu_shares",
    "cpuset",
    "mem_limit",
    "memswap_limit",
];

/// Keys `docker stack deploy` ignores with "Ignoring unsupported options".
pub const UNSUPPORTED_SERVICE_KEYS: [&str; 16] = [
    "build",
    "cgroupns_mode",
    "cgroup_parent",
    "devices",
    "domainname",
    "external_links",
    "ipc",
    "links",
    "mac_address",
    "network_mode",
    "pid",
    "privileged",
    "restart",
    "security_opt",
    "shm_size",
    "userns_mode",
];

/// Keys `docker stack deploy` ignores with "Ignoring deprecated options".
pub const DEPRECATED_SERVICE_KEYS: [&str; 2] = ["container_name", "expose"];

/// A whole stack file.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "swarm stack file",
    description = "A Compose v3 file as `swarm` (and `docker stack deploy`) accepts it.",
    extend("patternProperties" = {"^x-": {}})
)]
pub struct ComposeFile {
    /// `3`, `3.8`, …; every file of one stack must carry the same version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<Scalar>,
    #[serde(default)]
    pub services: BTreeMap<String, ServiceConfig>,
    #[serde(default)]
    pub networks: BTreeMap<String, Option<NetworkConfig>>,
    #[serde(default)]
    pub volumes: BTreeMap<String, Option<VolumeConfig>>,
    #[serde(default)]
    pub secrets: BTreeMap<String, FileObjectConfig>,
    #[serde(default)]
    pub configs: BTreeMap<String, FileObjectConfig>,
}

/// The top-level keys of a stack file.
pub const TOP_LEVEL_KEYS: [&str; 6] = [
    "version", "services", "networks", "volumes", "secrets", "configs",
];

/// One service.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("patternProperties" = {"^x-": {}}))]
pub struct ServiceConfig {
    /// Required: the image every task runs.
    #[serde(default)]
    pub image: Option<String>,
    /// Replaces the image's CMD; a string is split like a shell would.
    #[serde(default)]
    pub command: Option<StringOrList>,
    /// Replaces the image's ENTRYPOINT; a string is split like a shell would.
    #[serde(default)]
    pub entrypoint: Option<StringOrList>,
    #[serde(default)]
    pub environment: Option<ListOrDict>,
    /// Files of `KEY=VALUE` lines, relative to the first stack file's directory.
    #[serde(default)]
    pub env_file: Option<StringOrList>,
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub extra_hosts: Option<ListOrDict>,
    #[serde(default)]
    pub dns: Option<StringOrList>,
    #[serde(default)]
    pub dns_search: Option<StringOrList>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub tty: Option<bool>,
    #[serde(default)]
    pub stdin_open: Option<bool>,
    #[serde(default)]
    pub read_only: Option<bool>,
    #[serde(default)]
    pub init: Option<bool>,
    #[serde(default)]
    pub isolation: Option<String>,
    #[serde(default)]
    pub stop_grace_period: Option<ComposeDuration>,
    #[serde(default)]
    pub stop_signal: Option<String>,
    #[serde(default)]
    pub sysctls: Option<ListOrDict>,
    #[serde(default)]
    pub ulimits: Option<BTreeMap<String, UlimitConfig>>,
    #[serde(default)]
    pub cap_add: Option<Vec<String>>,
    #[serde(default)]
    pub cap_drop: Option<Vec<String>>,
    #[serde(default)]
    pub oom_score_adj: Option<i64>,
    /// Container labels (service labels go under `deploy.labels`).
    #[serde(default)]
    pub labels: Option<ListOrDict>,
    #[serde(default)]
    pub logging: Option<LoggingConfig>,
    #[serde(default)]
    pub healthcheck: Option<HealthcheckConfig>,
    /// Accepted for compatibility; swarm has no credential specs (ignored with a warning).
    #[serde(default)]
    pub credential_spec: Option<serde_json::Value>,
    #[serde(default)]
    pub configs: Option<Vec<FileRefConfig>>,
    #[serde(default)]
    pub secrets: Option<Vec<FileRefConfig>>,
    #[serde(default)]
    pub networks: Option<ServiceNetworks>,
    #[serde(default)]
    pub volumes: Option<Vec<ServiceVolume>>,
    #[serde(default)]
    pub ports: Option<Vec<ServicePort>>,
    #[serde(default)]
    pub deploy: Option<DeployConfig>,
    /// Accepted and ignored, as by docker (list form only).
    #[serde(default)]
    pub depends_on: Option<Vec<String>>,
    /// Accepted and ignored, as by docker.
    #[serde(default)]
    pub tmpfs: Option<StringOrList>,
    /// Ignored with a warning, except as the fallback for `deploy.restart_policy`:
    /// `always`/`unless-stopped` → any, `on-failure[:N]`, `no` → none.
    #[serde(default)]
    pub restart: Option<String>,
    // Ignored with a warning ("unsupported"), as by docker.
    #[serde(default)]
    pub build: Option<serde_json::Value>,
    #[serde(default)]
    pub cgroupns_mode: Option<serde_json::Value>,
    #[serde(default)]
    pub cgroup_parent: Option<serde_json::Value>,
    #[serde(default)]
    pub devices: Option<serde_json::Value>,
    #[serde(default)]
    pub domainname: Option<serde_json::Value>,
    #[serde(default)]
    pub external_links: Option<serde_json::Value>,
    #[serde(default)]
    pub ipc: Option<serde_json::Value>,
    #[serde(default)]
    pub links: Option<serde_json::Value>,
    #[serde(default)]
    pub mac_address: Option<serde_json::Value>,
    #[serde(default)]
    pub network_mode: Option<serde_json::Value>,
    #[serde(default)]
    pub pid: Option<serde_json::Value>,
    #[serde(default)]
    pub privileged: Option<serde_json::Value>,
    #[serde(default)]
    pub security_opt: Option<serde_json::Value>,
    #[serde(default)]
    pub shm_size: Option<serde_json::Value>,
    #[serde(default)]
    pub userns_mode: Option<serde_json::Value>,
    // Ignored with a warning ("deprecated"), as by docker.
    #[serde(default)]
    pub container_name: Option<serde_json::Value>,
    #[serde(default)]
    pub expose: Option<serde_json::Value>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeployConfig {
    #[serde(default)]
    pub mode: Option<DeployMode>,
    /// Default 1; 0 is valid. Not allowed with a global mode.
    #[serde(default)]
    pub replicas: Option<u64>,
    #[serde(default)]
    pub endpoint_mode: Option<EndpointModeConfig>,
    /// Service labels (container labels are the service-level `labels:`).
    #[serde(default)]
    pub labels: Option<ListOrDict>,
    #[serde(default)]
    pub placement: Option<PlacementConfig>,
    #[serde(default)]
    pub resources: Option<ResourcesConfig>,
    #[serde(default)]
    pub restart_policy: Option<RestartPolicyConfig>,
    #[serde(default)]
    pub update_config: Option<UpdateConfigConfig>,
    #[serde(default)]
    pub rollback_config: Option<UpdateConfigConfig>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum DeployMode {
    Replicated,
    Global,
    ReplicatedJob,
    GlobalJob,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EndpointModeConfig {
    Vip,
    Dnsrr,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlacementConfig {
    #[serde(default)]
    pub constraints: Option<Vec<String>>,
    #[serde(default)]
    pub preferences: Option<Vec<PreferenceConfig>>,
    #[serde(default)]
    pub max_replicas_per_node: Option<u64>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PreferenceConfig {
    pub spread: String,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourcesConfig {
    #[serde(default)]
    pub limits: Option<ResourceConfig>,
    #[serde(default)]
    pub reservations: Option<ResourceConfig>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceConfig {
    #[serde(default)]
    pub cpus: Option<Cpus>,
    #[serde(default)]
    pub memory: Option<ByteSize>,
    /// Limits only.
    #[serde(default)]
    pub pids: Option<i64>,
    /// Reservations only.
    #[serde(default)]
    pub generic_resources: Option<Vec<GenericResourceConfig>>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GenericResourceConfig {
    pub discrete_resource_spec: DiscreteResourceSpec,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DiscreteResourceSpec {
    pub kind: String,
    pub value: i64,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RestartPolicyConfig {
    #[serde(default)]
    pub condition: Option<RestartConditionConfig>,
    #[serde(default)]
    pub delay: Option<ComposeDuration>,
    #[serde(default)]
    pub max_attempts: Option<u64>,
    #[serde(default)]
    pub window: Option<ComposeDuration>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RestartConditionConfig {
    None,
    OnFailure,
    Any,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateConfigConfig {
    /// 1 when the block is present without it; 0 means all at once.
    #[serde(default)]
    pub parallelism: Option<u64>,
    #[serde(default)]
    pub delay: Option<ComposeDuration>,
    #[serde(default)]
    pub failure_action: Option<FailureActionConfig>,
    /// 0 (or absent) means Swarm's 5s.
    #[serde(default)]
    pub monitor: Option<ComposeDuration>,
    #[serde(default)]
    pub max_failure_ratio: Option<f64>,
    #[serde(default)]
    pub order: Option<OrderConfig>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FailureActionConfig {
    Pause,
    Continue,
    Rollback,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum OrderConfig {
    StopFirst,
    StartFirst,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthcheckConfig {
    /// A string runs in a shell (`CMD-SHELL`); a list is `["CMD", …]`, `["CMD-SHELL", …]` or `["NONE"]`.
    #[serde(default)]
    pub test: Option<StringOrList>,
    #[serde(default)]
    pub interval: Option<ComposeDuration>,
    #[serde(default)]
    pub timeout: Option<ComposeDuration>,
    #[serde(default)]
    pub retries: Option<u64>,
    #[serde(default)]
    pub start_period: Option<ComposeDuration>,
    #[serde(default)]
    pub start_interval: Option<ComposeDuration>,
    /// `true` turns off the image's healthcheck (cannot be combined with `test`).
    #[serde(default)]
    pub disable: Option<bool>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoggingConfig {
    #[serde(default)]
    pub driver: Option<String>,
    #[serde(default)]
    pub options: Option<BTreeMap<String, Option<Scalar>>>,
}

/// `nofile: 1024` or `nofile: {soft: 1024, hard: 2048}`.
#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum UlimitConfig {
    Single(i64),
    SoftHard { soft: i64, hard: i64 },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SoftHard {
    soft: i64,
    hard: i64,
}

impl<'de> Deserialize<'de> for UlimitConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = UlimitConfig;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number or {soft, hard}")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<UlimitConfig, E> {
                Ok(UlimitConfig::Single(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<UlimitConfig, E> {
                i64::try_from(v)
                    .map(UlimitConfig::Single)
                    .map_err(|_| E::custom("ulimit is too large"))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<UlimitConfig, A::Error> {
                let sh = SoftHard::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(UlimitConfig::SoftHard {
                    soft: sh.soft,
                    hard: sh.hard,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// A top-level network.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("patternProperties" = {"^x-": {}}))]
pub struct NetworkConfig {
    /// `overlay` (default) or `bridge`.
    #[serde(default)]
    pub driver: Option<String>,
    #[serde(default)]
    pub driver_opts: Option<BTreeMap<String, Scalar>>,
    #[serde(default)]
    pub attachable: Option<bool>,
    #[serde(default)]
    pub internal: Option<bool>,
    #[serde(default)]
    pub labels: Option<ListOrDict>,
    #[serde(default)]
    pub ipam: Option<IpamConfig>,
    #[serde(default)]
    pub external: Option<External>,
    /// Used verbatim instead of `<stack>_<key>`.
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IpamConfig {
    #[serde(default)]
    pub driver: Option<String>,
    #[serde(default)]
    pub config: Option<Vec<IpamPool>>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IpamPool {
    pub subnet: String,
}

/// A top-level volume.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("patternProperties" = {"^x-": {}}))]
pub struct VolumeConfig {
    #[serde(default)]
    pub driver: Option<String>,
    #[serde(default)]
    pub driver_opts: Option<BTreeMap<String, Scalar>>,
    #[serde(default)]
    pub labels: Option<ListOrDict>,
    #[serde(default)]
    pub external: Option<External>,
    #[serde(default)]
    pub name: Option<String>,
}

/// A top-level secret or config.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("patternProperties" = {"^x-": {}}))]
pub struct FileObjectConfig {
    /// Read relative to the first stack file's directory.
    #[serde(default)]
    pub file: Option<String>,
    #[serde(default)]
    pub external: Option<External>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub labels: Option<ListOrDict>,
    /// `golang` expands `{{.Service.Name}}`-style templates per task.
    #[serde(default)]
    pub template_driver: Option<String>,
    /// Secrets only; accepted and ignored with a warning (swarm stores secrets itself).
    #[serde(default)]
    pub driver: Option<String>,
    /// Secrets only; accepted and ignored with a warning.
    #[serde(default)]
    pub driver_opts: Option<BTreeMap<String, Scalar>>,
}

/// `external: true` or the older `external: {name: x}`.
#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum External {
    Flag(bool),
    Named { name: String },
}

impl External {
    pub fn is_external(&self) -> bool {
        !matches!(self, External::Flag(false))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExternalNamed {
    name: String,
}

impl<'de> Deserialize<'de> for External {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = External;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("true, false or {name: …}")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<External, E> {
                Ok(External::Flag(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<External, E> {
                match v.to_ascii_lowercase().as_str() {
                    "true" | "yes" | "y" | "on" => Ok(External::Flag(true)),
                    "false" | "no" | "n" | "off" => Ok(External::Flag(false)),
                    _ => Err(E::custom(format!(
                        "expected true, false or {{name: …}}, found {v:?}"
                    ))),
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<External, A::Error> {
                let n = ExternalNamed::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(External::Named { name: n.name })
            }
        }
        d.deserialize_any(V)
    }
}

/// A service's `networks:`: a list of names, or a mapping of name → options (or nothing).
#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum ServiceNetworks {
    List(Vec<String>),
    Map(BTreeMap<String, Option<ServiceNetworkConfig>>),
}

impl ServiceNetworks {
    /// Name → options, in name order.
    pub fn entries(&self) -> BTreeMap<String, ServiceNetworkConfig> {
        match self {
            ServiceNetworks::List(l) => l
                .iter()
                .map(|n| (n.clone(), ServiceNetworkConfig::default()))
                .collect(),
            ServiceNetworks::Map(m) => m
                .iter()
                .map(|(k, v)| (k.clone(), v.clone().unwrap_or_default()))
                .collect(),
        }
    }
}

impl<'de> Deserialize<'de> for ServiceNetworks {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ServiceNetworks;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of network names or a mapping of network → options")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<ServiceNetworks, A::Error> {
                Vec::deserialize(de::value::SeqAccessDeserializer::new(seq))
                    .map(ServiceNetworks::List)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ServiceNetworks, A::Error> {
                BTreeMap::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(ServiceNetworks::Map)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceNetworkConfig {
    #[serde(default)]
    pub aliases: Option<Vec<String>>,
    /// Accepted and ignored, as by docker.
    #[serde(default)]
    pub ipv4_address: Option<String>,
    /// Accepted and ignored, as by docker.
    #[serde(default)]
    pub ipv6_address: Option<String>,
}

/// A secret or config given to a service: `- name` or `{source, target, uid, gid, mode}`.
#[derive(Clone, Debug, Default, Serialize, JsonSchema)]
#[schemars(with = "FileRefSchema")]
pub struct FileRefConfig {
    pub source: String,
    pub target: Option<String>,
    pub uid: Option<String>,
    pub gid: Option<String>,
    pub mode: Option<FileMode>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct FileRefLong {
    source: String,
    #[serde(default)]
    target: Option<String>,
    #[serde(default)]
    uid: Option<String>,
    #[serde(default)]
    gid: Option<String>,
    /// Octal as YAML writes it: `0400`, `0o400`.
    #[serde(default)]
    mode: Option<FileMode>,
}

#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum FileRefSchema {
    Short(String),
    Long(FileRefLong),
}

impl<'de> Deserialize<'de> for FileRefConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FileRefConfig;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a name or {source, target, uid, gid, mode}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<FileRefConfig, E> {
                Ok(FileRefConfig {
                    source: v.to_string(),
                    ..Default::default()
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<FileRefConfig, A::Error> {
                let l = FileRefLong::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(FileRefConfig {
                    source: l.source,
                    target: l.target,
                    uid: l.uid,
                    gid: l.gid,
                    mode: l.mode,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// A port: short syntax (`"8080:80"`, `"80"`, `"127.0.0.1:8080:80/udp"`, ranges) or long.
#[derive(Clone, Debug, Serialize, JsonSchema)]
#[schemars(with = "PortSchema")]
pub enum ServicePort {
    /// Parsed short syntax: one entry per port of a range; `host_ip` is dropped with a warning.
    Short {
        ports: Vec<units::PortSpec>,
        host_ip: Option<String>,
    },
    Long(LongPort),
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LongPort {
    pub target: u16,
    #[serde(default)]
    pub published: Option<u16>,
    #[serde(default)]
    pub protocol: Option<ProtocolConfig>,
    /// `ingress` (default, the routing mesh) or `host`.
    #[serde(default)]
    pub mode: Option<PublishModeConfig>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProtocolConfig {
    Tcp,
    Udp,
    Sctp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PublishModeConfig {
    Ingress,
    Host,
}

#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum PortSchema {
    /// `[ip:]published[-end]:target[-end][/proto]` or `target[/proto]`.
    Short(String),
    Number(u16),
    Long(LongPort),
}

impl<'de> Deserialize<'de> for ServicePort {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ServicePort;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port such as \"8080:80\" or {target, published, protocol, mode}")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ServicePort, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ServicePort, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ServicePort, E> {
                let (ports, host_ip) = units::parse_port_spec(v).map_err(E::custom)?;
                Ok(ServicePort::Short { ports, host_ip })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ServicePort, A::Error> {
                LongPort::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(ServicePort::Long)
            }
        }
        d.deserialize_any(V)
    }
}

/// A volume: short syntax (`src:dst[:ro]`, `dst`) or long.
#[derive(Clone, Debug, Serialize, JsonSchema)]
#[schemars(with = "VolumeSchema")]
pub enum ServiceVolume {
    Short {
        source: Option<String>,
        target: String,
        read_only: bool,
        /// Other options after the second colon (`nocopy`, `rprivate`, `z`, …).
        options: Vec<String>,
    },
    Long(LongVolume),
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LongVolume {
    #[serde(rename = "type")]
    pub type_: VolumeTypeConfig,
    #[serde(default)]
    pub source: Option<String>,
    pub target: String,
    #[serde(default)]
    pub read_only: Option<bool>,
    /// Accepted and ignored (Docker Desktop only).
    #[serde(default)]
    pub consistency: Option<String>,
    #[serde(default)]
    pub bind: Option<BindConfig>,
    #[serde(default)]
    pub volume: Option<VolumeOptionsConfig>,
    #[serde(default)]
    pub tmpfs: Option<TmpfsConfig>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum VolumeTypeConfig {
    #[default]
    Volume,
    Bind,
    Tmpfs,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BindConfig {
    #[serde(default)]
    pub propagation: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VolumeOptionsConfig {
    #[serde(default)]
    pub nocopy: Option<bool>,
    #[serde(default)]
    pub subpath: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TmpfsConfig {
    #[serde(default)]
    pub size: Option<ByteSize>,
}

#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum VolumeSchema {
    /// `src:dst[:ro]` or `dst`.
    Short(String),
    Long(LongVolume),
}

impl<'de> Deserialize<'de> for ServiceVolume {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ServiceVolume;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a volume such as \"data:/var/lib/data\" or {type, source, target}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ServiceVolume, E> {
                units::parse_volume_spec(v).map_err(E::custom)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ServiceVolume, A::Error> {
                LongVolume::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(ServiceVolume::Long)
            }
        }
        d.deserialize_any(V)
    }
}

/// Any scalar, as its text (`80`, `true`, `1.10` stay as written).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, JsonSchema)]
#[schemars(with = "ScalarSchema")]
pub struct Scalar(pub String);

#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum ScalarSchema {
    S(String),
    N(f64),
    B(bool),
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Scalar)
    }
}

/// A string or a list of strings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum StringOrList {
    String(String),
    List(Vec<String>),
}

impl StringOrList {
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            StringOrList::String(s) => vec![s.clone()],
            StringOrList::List(l) => l.clone(),
        }
    }
}

impl<'de> Deserialize<'de> for StringOrList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StringOrList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<StringOrList, E> {
                Ok(StringOrList::String(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<StringOrList, E> {
                Ok(StringOrList::String(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<StringOrList, E> {
                Ok(StringOrList::String(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<StringOrList, E> {
                Ok(StringOrList::String(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<StringOrList, E> {
                Ok(StringOrList::String(v.to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<StringOrList, A::Error> {
                let items: Vec<Scalar> =
                    Vec::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
                Ok(StringOrList::List(items.into_iter().map(|s| s.0).collect()))
            }
        }
        d.deserialize_any(V)
    }
}

/// `["KEY=value", "KEY"]` or `{KEY: value, KEY: null}`; a value-less key is `None`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum ListOrDict {
    List(Vec<String>),
    Dict(BTreeMap<String, Option<Scalar>>),
}

impl ListOrDict {
    /// Key → value (`None` when only the key was given), later entries winning.
    pub fn to_map(&self, sep: char) -> BTreeMap<String, Option<String>> {
        match self {
            ListOrDict::List(items) => items
                .iter()
                .map(|item| match item.split_once(sep) {
                    Some((k, v)) => (k.trim().to_string(), Some(v.to_string())),
                    None => (item.trim().to_string(), None),
                })
                .collect(),
            ListOrDict::Dict(m) => m
                .iter()
                .map(|(k, v)| (k.clone(), v.as_ref().map(|s| s.0.clone())))
                .collect(),
        }
    }
}

impl<'de> Deserialize<'de> for ListOrDict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ListOrDict;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of KEY=value strings or a mapping")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<ListOrDict, A::Error> {
                let items: Vec<Scalar> =
                    Vec::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
                Ok(ListOrDict::List(items.into_iter().map(|s| s.0).collect()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ListOrDict, A::Error> {
                BTreeMap::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(ListOrDict::Dict)
            }
        }
        d.deserialize_any(V)
    }
}

/// Parses a scalar's text with `parse`; the schema is `schema`.
macro_rules! text_newtype {
    ($(#[$doc:meta])* $name:ident($inner:ty), $parse:path, $schema:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
        pub struct $name(pub $inner);

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V(PhantomData<$name>);
                impl<'de> Visitor<'de> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str(stringify!($name))
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<$name, E> {
                        $parse(v).map($name).map_err(E::custom)
                    }
                    fn visit_u64<E: de::Error>(self, v: u64) -> Result<$name, E> {
                        self.visit_str(&v.to_string())
                    }
                    fn visit_i64<E: de::Error>(self, v: i64) -> Result<$name, E> {
                        self.visit_str(&v.to_string())
                    }
                    fn visit_f64<E: de::Error>(self, v: f64) -> Result<$name, E> {
                        self.visit_str(&v.to_string())
                    }
                }
                d.deserialize_str(V(PhantomData))
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                $schema
            }
        }
    };
}

text_newtype!(
    /// A Go-style duration: `10s`, `1m30s`, `500ms`.
    ComposeDuration(crate::Duration),
    units::parse_duration,
    json_schema!({
        "description": "A duration such as 10s, 1m30s or 500ms.",
        "type": "string"
    })
);

text_newtype!(
    /// Bytes: a number, or a number with a unit b, k, m, g (optional trailing b; powers of 1024).
    ByteSize(i64),
    units::parse_bytes,
    json_schema!({
        "description": "Bytes: 512M, 1g, 100kb (powers of 1024) or a plain number.",
        "type": ["string", "integer"]
    })
);

text_newtype!(
    /// CPUs as a decimal (`0.5`), stored as billionths of a CPU.
    Cpus(i64),
    units::parse_cpus,
    json_schema!({
        "description": "A number of CPUs such as 0.5 or \"1.5\".",
        "type": ["string", "number"]
    })
);

text_newtype!(
    /// A file mode; YAML 1.1 octal (`0400`) as docker reads it, or `0o400`, or decimal.
    FileMode(u32),
    units::parse_file_mode,
    json_schema!({
        "description": "A file mode such as 0400 (octal) or 292 (decimal).",
        "type": ["integer", "string"]
    })
);
