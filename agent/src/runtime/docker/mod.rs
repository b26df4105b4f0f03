//! The `docker` runtime: tasks as containers on the local Docker engine, through bollard.
//!
//! * `spec` — a task's container as Docker's create request (names, labels, every mapped field);
//! * `events` — Docker's event stream for this node's containers, as runner wake-ups;
//! * `network` — swarm networks as Docker bridge networks;
//! * `files` — secrets and configs as read-only files mounted into the container;
//! * `template` — `templateDriver: golang` secrets and configs, rendered per task;
//! * `logs` — container logs cut into lines.
//!
//! Every step is idempotent, as SwarmKit's adapter: a name conflict on create means the
//! container is already there; start only starts a container that is not running; stop and
//! remove of a missing container succeed.

mod events;
mod files;
mod logs;
mod network;
pub mod spec;
mod template;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use async_trait::async_trait;
use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::{ContainerStateStatusEnum, HealthStatusEnum, NetworkConnectRequest};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, ListContainersOptionsBuilder,
    RemoveContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use futures::StreamExt;
use swarm_api::{PortConfig, PortProtocol, PublishMode, Task, TaskHealth};
use tokio::sync::broadcast;

use super::{
    Assets, ContainerStatus, LogLines, LogRequest, Managed, NodeInfo, Observed, Runtime,
    RuntimeError, RuntimeEvent,
};
use spec::{LABEL_NODE, LABEL_TASK, container_name, create_body, docker_network};

/// Docker's own message for an error (the daemon's text when it sent one).
pub fn message(e: &DockerError) -> String {
    match e {
        DockerError::DockerResponseServerError { message, .. } => message.clone(),
        DockerError::DockerStreamError { error } => error.clone(),
        other => other.to_string(),
    }
}

pub(crate) fn is_status(e: &DockerError, code: u16) -> bool {
    matches!(e, DockerError::DockerResponseServerError { status_code, .. } if *status_code == code)
}

pub(crate) fn docker_error(e: DockerError) -> RuntimeError {
    RuntimeError::Temporary(format!("docker: {}", message(&e)))
}

/// The docker runtime of one node.
pub struct DockerRuntime {
    docker: Docker,
    node: String,
    events: broadcast::Sender<RuntimeEvent>,
    pump: tokio::task::AbortHandle,
    files: files::FileDirs,
}

impl Drop for DockerRuntime {
    fn drop(&mut self) {
        self.pump.abort();
    }
}

impl DockerRuntime {
    /// Connects to the local engine (unix socket), negotiates the API version and starts
    /// following its events for `node`'s containers.
    pub async fn connect(node: &str, data_dir: &Path) -> Result<DockerRuntime, RuntimeError> {
        let docker = Docker::connect_with_unix_defaults()
            .map_err(docker_error)?
            .negotiate_version()
            .await
            .map_err(docker_error)?;
        // What templated secrets and configs may say about this node (`.Node.*`).
        let info = docker.info().await.map_err(docker_error)?;
        let facts = template::NodeFacts {
            id: node.to_string(),
            hostname: info.name.unwrap_or_default(),
            os: info.os_type.unwrap_or_else(|| "linux".into()),
            architecture: info.architecture.unwrap_or_default(),
        };
        let (events, _) = broadcast::channel(1024);
        let pump = tokio::spawn(events::pump(
            docker.clone(),
            node.to_string(),
            events.clone(),
        ))
        .abort_handle();
        Ok(DockerRuntime {
            docker,
            node: node.to_string(),
            events,
            pump,
            files: files::FileDirs::new(data_dir, facts),
        })
    }

    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    fn name(&self, task: &Task) -> String {
        container_name(task, &self.node)
    }

    /// Makes the image present: used if local, pulled otherwise; a failed pull is fatal
    /// with Docker's message.
    async fn ensure_image(&self, image: &str) -> Result<(), RuntimeError> {
        if image.is_empty() {
            return Err(RuntimeError::Fatal("task has no image".into()));
        }
        match self.docker.inspect_image(image).await {
            Ok(_) => return Ok(()),
            Err(e) if is_status(&e, 404) => {}
            Err(e) => return Err(docker_error(e)),
        }
        // Without a tag Docker would pull every tag of the repository.
        let last = image.rsplit('/').next().unwrap_or(image);
        let reference = if image.contains('@') || last.contains(':') {
            image.to_string()
        } else {
            format!("{image}:latest")
        };
        tracing::info!(image = %reference, "pulling image");
        let opts = CreateImageOptionsBuilder::new()
            .from_image(&reference)
            .build();
        let mut pull = self.docker.create_image(Some(opts), None, None);
        while let Some(item) = pull.next().await {
            match item {
                Ok(info) => {
                    if let Some(err) = info.error_detail.and_then(|d| d.message) {
                        return Err(RuntimeError::Fatal(err));
                    }
                }
                Err(e) => return Err(RuntimeError::Fatal(message(&e))),
            }
        }
        Ok(())
    }
}

fn health(h: Option<HealthStatusEnum>) -> Option<TaskHealth> {
    match h? {
        HealthStatusEnum::STARTING => Some(TaskHealth::Starting),
        HealthStatusEnum::HEALTHY => Some(TaskHealth::Healthy),
        HealthStatusEnum::UNHEALTHY => Some(TaskHealth::Unhealthy),
        HealthStatusEnum::NONE | HealthStatusEnum::EMPTY => None,
    }
}

/// Ports as Docker bound them; `ingress` lists the `port/proto` keys published for the mesh.
fn ports(map: Option<bollard::models::PortMap>, ingress: &str) -> Vec<PortConfig> {
    let mut out = Vec::new();
    for (key, bindings) in map.unwrap_or_default() {
        let (port, proto) = key.split_once('/').unwrap_or((key.as_str(), "tcp"));
        let Ok(target) = port.parse::<u16>() else {
            continue;
        };
        let protocol = match proto {
            "udp" => PortProtocol::Udp,
            "sctp" => PortProtocol::Sctp,
            _ => PortProtocol::Tcp,
        };
        let mode = if ingress.split(',').any(|k| k == key) {
            PublishMode::Ingress
        } else {
            PublishMode::Host
        };
        let published = bindings
            .unwrap_or_default()
            .into_iter()
            .find_map(|b| b.host_port.and_then(|p| p.parse::<u16>().ok()));
        if published.is_none() {
            continue; // exposed by the image, not published
        }
        out.push(PortConfig {
            name: String::new(),
            protocol,
            target_port: target,
            published_port: published,
            publish_mode: mode,
        });
    }
    out.sort();
    out.dedup();
    out
}

#[async_trait]
impl Runtime for DockerRuntime {
    async fn describe(&self) -> Result<NodeInfo, RuntimeError> {
        let info = self.docker.info().await.map_err(docker_error)?;
        let engine_labels = info
            .labels
            .unwrap_or_default()
            .into_iter()
            .filter_map(|l| {
                l.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect();
        Ok(NodeInfo {
            hostname: info.name.unwrap_or_default(),
            nano_cpus: info.ncpu.unwrap_or(0) * 1_000_000_000,
            memory_bytes: info.mem_total.unwrap_or(0),
            engine_version: info.server_version.unwrap_or_default(),
            engine_labels,
            os: info.os_type.unwrap_or_else(|| "linux".into()),
            architecture: info.architecture.unwrap_or_default(),
        })
    }

    fn events(&self) -> broadcast::Receiver<RuntimeEvent> {
        self.events.subscribe()
    }

    async fn list(&self) -> Result<Vec<Managed>, RuntimeError> {
        let mut filters: HashMap<&str, Vec<String>> = HashMap::new();
        filters.insert("label", vec![format!("{LABEL_NODE}={}", self.node)]);
        let opts = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let list = self
            .docker
            .list_containers(Some(opts))
            .await
            .map_err(docker_error)?;
        Ok(list
            .into_iter()
            .filter_map(|c| {
                let task = c.labels?.get(LABEL_TASK)?.clone();
                Some(Managed {
                    task,
                    id: c.id.unwrap_or_default(),
                })
            })
            .collect())
    }

    async fn prepare(&self, task: &Task, assets: &Assets) -> Result<(), RuntimeError> {
        let name = self.name(task);
        match self.docker.inspect_container(&name, None).await {
            Ok(_) => return Ok(()),
            Err(e) if is_status(&e, 404) => {}
            Err(e) => return Err(docker_error(e)),
        }
        // Swarm's templates in the container spec (`{{.Task.Slot}}` in the hostname, …).
        let mut task = task.clone();
        let cx = template::Context::for_task(
            &task,
            assets.services.get(&task.spec.service),
            &self.files.node,
        );
        template::expand_container(&mut task.spec.template.container, &cx)
            .map_err(RuntimeError::Fatal)?;
        let task = &task;
        let nets = spec::attachments(task);
        for (net, _, _) in &nets {
            network::ensure(&self.docker, &self.node, net, assets.networks.get(net)).await?;
        }
        self.ensure_image(&task.spec.template.container.image)
            .await?;
        let mut body = create_body(task, &self.node, &super::task_ports(task, assets));
        let file_mounts = self.files.write(task, assets)?;
        if !file_mounts.is_empty()
            && let Some(hc) = body.host_config.as_mut()
        {
            hc.mounts.get_or_insert_with(Vec::new).extend(file_mounts);
        }
        let opts = CreateContainerOptionsBuilder::new().name(&name).build();
        match self.docker.create_container(Some(opts), body).await {
            Ok(_) => {}
            Err(e) if is_status(&e, 409) => return Ok(()), // created by an earlier attempt
            Err(e) if is_status(&e, 400) || is_status(&e, 404) => {
                return Err(RuntimeError::Fatal(message(&e)));
            }
            Err(e) => return Err(docker_error(e)),
        }
        // Docker API 1.41 joins one network at create; the others are joined before start.
        for (net, _, _) in nets.iter().skip(1) {
            let req = NetworkConnectRequest {
                container: name.clone(),
                endpoint_config: spec::endpoint_for(task, net),
            };
            match self.docker.connect_network(&docker_network(net), req).await {
                Ok(()) => {}
                Err(e) if is_status(&e, 403) || is_status(&e, 409) => {} // already joined
                Err(e) => return Err(RuntimeError::Fatal(message(&e))),
            }
        }
        tracing::info!(container = %name, "container created");
        Ok(())
    }

    async fn start(&self, task: &Task) -> Result<(), RuntimeError> {
        let name = self.name(task);
        match self.docker.start_container(&name, None).await {
            Ok(()) => Ok(()),
            Err(e) if is_status(&e, 304) => Ok(()), // already running
            Err(e) if is_status(&e, 404) => Err(RuntimeError::Temporary(message(&e))),
            Err(e) => Err(RuntimeError::Fatal(message(&e))),
        }
    }

    async fn inspect(&self, task: &Task) -> Result<Option<Observed>, RuntimeError> {
        let c = match self.docker.inspect_container(&self.name(task), None).await {
            Ok(c) => c,
            Err(e) if is_status(&e, 404) => return Ok(None),
            Err(e) => return Err(docker_error(e)),
        };
        let state = c.state.unwrap_or_default();
        let status = match state.status {
            Some(ContainerStateStatusEnum::CREATED) => ContainerStatus::Created,
            Some(ContainerStateStatusEnum::RUNNING) => ContainerStatus::Running,
            Some(ContainerStateStatusEnum::EXITED) => ContainerStatus::Exited,
            other => ContainerStatus::Other(format!("{other:?}")),
        };
        Ok(Some(Observed {
            id: c.id.unwrap_or_default(),
            status,
            exit_code: state.exit_code,
            health: health(state.health.and_then(|h| h.status)),
            error: state.error.unwrap_or_default(),
            ports: ports(
                c.network_settings.and_then(|n| n.ports),
                c.config
                    .and_then(|cfg| cfg.labels)
                    .and_then(|l| l.get(spec::LABEL_INGRESS).cloned())
                    .unwrap_or_default()
                    .as_str(),
            ),
        }))
    }

    async fn stop(&self, task: &Task) -> Result<(), RuntimeError> {
        let c = &task.spec.template.container;
        let grace = c.stop_grace_period.as_std().as_secs().min(i32::MAX as u64) as i32;
        let mut opts = StopContainerOptionsBuilder::new().t(grace);
        if let Some(sig) = &c.stop_signal {
            opts = opts.signal(sig);
        }
        match self
            .docker
            .stop_container(&self.name(task), Some(opts.build()))
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if is_status(&e, 304) || is_status(&e, 404) => Ok(()),
            Err(e) => Err(docker_error(e)),
        }
    }

    async fn remove(&self, task: &str) -> Result<(), RuntimeError> {
        self.files.remove(task);
        for m in self.list().await? {
            if m.task != task {
                continue;
            }
            let opts = RemoveContainerOptionsBuilder::new()
                .force(true)
                .v(true)
                .build();
            match self.docker.remove_container(&m.id, Some(opts)).await {
                Ok(()) => tracing::info!(%task, id = %m.id, "container removed"),
                Err(e) if is_status(&e, 404) || is_status(&e, 409) => {}
                Err(e) => return Err(docker_error(e)),
            }
        }
        Ok(())
    }

    async fn prune_networks(&self, in_use: &BTreeSet<String>) -> Result<(), RuntimeError> {
        network::prune(&self.docker, &self.node, in_use).await
    }

    async fn logs(&self, task: &str, req: LogRequest) -> Result<LogLines, RuntimeError> {
        let Some(m) = self.list().await?.into_iter().find(|m| m.task == task) else {
            return Err(RuntimeError::Fatal(format!(
                "task {task} has no container on node {}",
                self.node
            )));
        };
        let opts = bollard::query_parameters::LogsOptions {
            follow: req.follow,
            stdout: true,
            stderr: true,
            timestamps: true,
            tail: req
                .tail
                .map_or_else(|| "all".to_string(), |n| n.to_string()),
            ..Default::default()
        };
        let lines = self
            .docker
            .logs(&m.id, Some(opts))
            .flat_map(|frame| {
                let items: Vec<Result<_, RuntimeError>> = match frame {
                    Ok(f) => logs::frame_lines(f).into_iter().map(Ok).collect(),
                    Err(e) => vec![Err(docker_error(e))],
                };
                futures::stream::iter(items)
            })
            .boxed();
        Ok(lines)
    }
}
