//! `Task`: one attempt at running one slot of a service on one node.
//!
//! Tasks are one-shot: a task never moves to another node and its observed state only moves
//! forward. A replacement is a new task in the same slot, named `<service>.<slot>.<attempt>`
//! (global services: `<service>.<node>.<attempt>`) so two controllers racing to replace a slot
//! cannot both create one.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Timestamp, objects::PortConfig};

use super::{TaskTemplate, define_kind};

define_kind!(
    /// One attempt at running one slot of a service.
    Task, spec: TaskSpec, status: TaskStatus
);

/// `TaskSpec::default()` is what an empty JSON spec reads as: desired state RUNNING.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TaskSpec {
    /// The owning service's name.
    pub service: String,
    /// Replicated services and replicated jobs: the slot, 1..N.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<u64>,
    /// The node the task runs on: set by placement (or at creation for global services).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// Which replacement this is within its slot, from 1.
    #[serde(default)]
    pub attempt: u64,
    /// The service's `generation` whose template this task copies.
    #[serde(default)]
    pub service_generation: i64,
    /// What to run: a copy of the service's template at `serviceGeneration`.
    #[serde(default)]
    pub template: TaskTemplate,
    /// Written by controllers only: RUNNING, READY (prepare and hold), COMPLETE (jobs),
    /// SHUTDOWN or REMOVE.
    #[serde(default = "running")]
    pub desired_state: TaskState,
    /// Network attachments with allocated addresses: written by ipam.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<NetworkAttachment>,
    /// Ports published by this task (host mode), filled in from the service's endpoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortConfig>,
}

fn running() -> TaskState {
    TaskState::Running
}

impl Default for TaskSpec {
    /// The same spec serde reads from `{"service": ""}`: a task is created to run.
    fn default() -> TaskSpec {
        TaskSpec {
            service: String::new(),
            slot: None,
            node_name: None,
            attempt: 0,
            service_generation: 0,
            template: TaskTemplate::default(),
            desired_state: running(),
            networks: Vec::new(),
            ports: Vec::new(),
        }
    }
}

/// A task's place on one network.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkAttachment {
    pub network: String,
    /// CIDR form: `10.0.1.5/24`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TaskStatus {
    /// The observed state; the apiserver refuses a write that moves it backwards.
    #[serde(default)]
    pub state: TaskState,
    /// Human-readable progress or reason (`no suitable node (…)`, `started`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// The error, when the task failed or was rejected (`task: non-zero exit (1)`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub err: String,
    /// When the task entered its current state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub container_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<TaskHealth>,
    /// Host-mode ports as actually bound.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortConfig>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TaskHealth {
    Starting,
    Healthy,
    Unhealthy,
}

/// The task life cycle, in SwarmKit's order: a later state always compares greater.
///
/// ```text
/// NEW ─► PENDING ─► ASSIGNED ─► ACCEPTED ─► PREPARING ─► READY ─► STARTING ─► RUNNING
///  (replication) (ipam)  (placement)      (agent …)                              │
///                                   REJECTED ◄─┘ before STARTING     COMPLETE / SHUTDOWN / FAILED
/// ```
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
pub enum TaskState {
    #[default]
    New,
    Pending,
    Assigned,
    Accepted,
    Preparing,
    Ready,
    Starting,
    Running,
    Complete,
    Shutdown,
    Failed,
    Rejected,
    /// Desired state only: the task is to be deleted once it has stopped.
    Remove,
    /// The node has been down too long; the task's fate is unknown.
    Orphaned,
}

impl TaskState {
    pub const ALL: [TaskState; 14] = [
        TaskState::New,
        TaskState::Pending,
        TaskState::Assigned,
        TaskState::Accepted,
        TaskState::Preparing,
        TaskState::Ready,
        TaskState::Starting,
        TaskState::Running,
        TaskState::Complete,
        TaskState::Shutdown,
        TaskState::Failed,
        TaskState::Rejected,
        TaskState::Remove,
        TaskState::Orphaned,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::New => "new",
            TaskState::Pending => "pending",
            TaskState::Assigned => "assigned",
            TaskState::Accepted => "accepted",
            TaskState::Preparing => "preparing",
            TaskState::Ready => "ready",
            TaskState::Starting => "starting",
            TaskState::Running => "running",
            TaskState::Complete => "complete",
            TaskState::Shutdown => "shutdown",
            TaskState::Failed => "failed",
            TaskState::Rejected => "rejected",
            TaskState::Remove => "remove",
            TaskState::Orphaned => "orphaned",
        }
    }

    /// A task in this state will not run again.
    pub fn is_terminal(self) -> bool {
        self > TaskState::Running
    }

    /// Docker's capitalized form for tables: `Running`, `Shutdown`.
    pub fn title(self) -> String {
        let s = self.as_str();
        let mut c = s.chars();
        match c.next() {
            Some(first) => first.to_ascii_uppercase().to_string() + c.as_str(),
            None => String::new(),
        }
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown task state {0:?}")]
pub struct UnknownTaskState(pub String);

impl FromStr for TaskState {
    type Err = UnknownTaskState;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TaskState::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownTaskState(s.to_string()))
    }
}

/// The name of a replicated task: `<service>.<slot>.<attempt>`.
pub fn slot_task_name(service: &str, slot: u64, attempt: u64) -> String {
    format!("{service}.{slot}.{attempt}")
}

/// The name of a global task: `<service>.<node>.<attempt>`.
pub fn node_task_name(service: &str, node: &str, attempt: u64) -> String {
    format!("{service}.{node}.{attempt}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_are_ordered_as_in_swarmkit() {
        let mut sorted = TaskState::ALL;
        sorted.sort();
        assert_eq!(sorted, TaskState::ALL);
        assert!(TaskState::New < TaskState::Pending);
        assert!(TaskState::Assigned < TaskState::Accepted);
        assert!(TaskState::Running < TaskState::Complete);
        assert!(TaskState::Failed < TaskState::Rejected);
        assert!(TaskState::Rejected < TaskState::Remove);
        assert!(TaskState::Remove < TaskState::Orphaned);
    }

    #[test]
    fn terminal_states() {
        assert!(!TaskState::Running.is_terminal());
        assert!(TaskState::Complete.is_terminal());
        assert!(TaskState::Rejected.is_terminal());
    }

    #[test]
    fn parse_and_print() {
        for s in TaskState::ALL {
            assert_eq!(s.as_str().parse::<TaskState>().unwrap(), s);
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
        }
        assert_eq!(TaskState::Running.title(), "Running");
    }

    #[test]
    fn the_rust_default_is_the_json_default() {
        let from_json: TaskSpec = serde_json::from_str(r#"{"service": ""}"#).unwrap();
        assert_eq!(TaskSpec::default(), from_json);
        assert_eq!(TaskSpec::default().desired_state, TaskState::Running);
    }

    #[test]
    fn names_are_deterministic() {
        assert_eq!(slot_task_name("web", 3, 2), "web.3.2");
        assert_eq!(node_task_name("agent", "node-1", 1), "agent.node-1.1");
    }
}
