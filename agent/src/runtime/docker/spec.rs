//! A task's container as Docker's create request: names, labels and every field of the
//! service's `ContainerSpec` that Docker has an equivalent for. Pure, so it is unit-tested.

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, EndpointIpamConfig, EndpointSettings, HealthConfig, HostConfig, Mount,
    MountBindOptions, MountBindOptionsPropagationEnum, MountTmpfsOptions, MountType,
    MountVolumeOptions, MountVolumeOptionsDriverConfig, NetworkingConfig, PortBinding,
    ResourcesUlimits,
};
use swarm_api::meta::STACK_LABEL;
use swarm_api::{MountType as SwarmMount, PortConfig, PortProtocol, PublishMode, Task};

/// Labels every managed container carries.
pub const LABEL_NODE: &str = "swarm.node";
pub const LABEL_TASK: &str = "swarm.task";
pub const LABEL_TASK_ID: &str = "swarm.task.id";
pub const LABEL_SERVICE: &str = "swarm.service";
pub const LABEL_SLOT: &str = "swarm.slot";
/// `8080/tcp,9000/udp`: the container ports published for the routing mesh (ingress mode).
pub const LABEL_INGRESS: &str = "swarm.ports.ingress";
/// Networks the agent created carry the node that created them.
pub const LABEL_NETWORK: &str = "swarm.network";

/// Docker networks are named after the swarm network with this prefix.
pub const NETWORK_PREFIX: &str = "swarm-";

pub fn docker_network(name: &str) -> String {
    format!("{NETWORK_PREFIX}{name}")
}

/// The task's id in container names: its uid without dashes (or its name if it has none).
pub fn task_id(task: &Task) -> String {
    if task.metadata.uid.is_empty() {
        task.metadata.name.clone()
    } else {
        task.metadata.uid.replace('-', "")
    }
}

/// `<service>.<slot>.<taskid>`, or `<service>.<node>.<taskid>` for global services.
pub fn container_name(task: &Task, node: &str) -> String {
    let middle = match task.spec.slot {
        Some(s) => s.to_string(),
        None => node.to_string(),
    };
    format!("{}.{}.{}", task.spec.service, middle, task_id(task))
}

/// The networks a task joins, as (network object name, address without prefix, aliases).
pub fn attachments(task: &Task) -> Vec<(String, Option<String>, Vec<String>)> {
    let mut out: Vec<(String, Option<String>, Vec<String>)> = Vec::new();
    let service_alias = task.spec.service.clone();
    for n in &task.spec.networks {
        let addr = n
            .addresses
            .first()
            .map(|a| a.split('/').next().unwrap_or(a).to_string());
        let mut aliases = vec![service_alias.clone()];
        aliases.extend(n.aliases.iter().cloned());
        out.push((n.network.clone(), addr, aliases));
    }
    for n in &task.spec.template.networks {
        if out.iter().any(|(name, _, _)| *name == n.target) {
            continue;
        }
        let mut aliases = vec![service_alias.clone()];
        aliases.extend(n.aliases.iter().cloned());
        out.push((n.target.clone(), None, aliases));
    }
    for (_, _, aliases) in &mut out {
        aliases.dedup();
    }
    out
}

fn endpoint(addr: &Option<String>, aliases: &[String]) -> EndpointSettings {
    EndpointSettings {
        ipam_config: addr.as_ref().map(|a| EndpointIpamConfig {
            ipv4_address: Some(a.clone()),
            ..Default::default()
        }),
        aliases: Some(aliases.to_vec()),
        ..Default::default()
    }
}

/// The endpoint of `task` on its `i`-th network (for networks joined after create).
pub fn endpoint_for(task: &Task, network: &str) -> Option<EndpointSettings> {
    attachments(task)
        .into_iter()
        .find(|(n, _, _)| n == network)
        .map(|(_, addr, aliases)| endpoint(&addr, &aliases))
}

fn nanos(d: &swarm_api::Duration) -> i64 {
    d.as_std().as_nanos().min(i64::MAX as u128) as i64
}

fn proto(p: PortProtocol) -> &'static str {
    match p {
        PortProtocol::Tcp => "tcp",
        PortProtocol::Udp => "udp",
        PortProtocol::Sctp => "sctp",
    }
}

/// The labels of the task's container.
pub fn labels(task: &Task, node: &str) -> HashMap<String, String> {
    let c = &task.spec.template.container;
    let mut labels: HashMap<String, String> = c.labels.clone().into_iter().collect();
    labels.insert(LABEL_NODE.into(), node.into());
    labels.insert(LABEL_TASK.into(), task.metadata.name.clone());
    labels.insert(LABEL_TASK_ID.into(), task_id(task));
    labels.insert(LABEL_SERVICE.into(), task.spec.service.clone());
    if let Some(slot) = task.spec.slot {
        labels.insert(LABEL_SLOT.into(), slot.to_string());
    }
    if let Some(stack) = task
        .metadata
        .labels
        .get(STACK_LABEL)
        .or_else(|| c.labels.get(STACK_LABEL))
    {
        labels.insert(STACK_LABEL.into(), stack.clone());
    }
    labels
}

fn mounts(task: &Task) -> Vec<Mount> {
    task.spec
        .template
        .container
        .mounts
        .iter()
        .map(|m| Mount {
            target: Some(m.target.clone()),
            source: (!m.source.is_empty()).then(|| m.source.clone()),
            typ: Some(match m.type_ {
                SwarmMount::Volume => MountType::VOLUME,
                SwarmMount::Bind => MountType::BIND,
                SwarmMount::Tmpfs => MountType::TMPFS,
            }),
            read_only: Some(m.read_only),
            bind_options: m.bind_options.as_ref().map(|b| MountBindOptions {
                propagation: b.propagation.as_deref().and_then(|p| {
                    serde_json::from_value::<MountBindOptionsPropagationEnum>(
                        serde_json::Value::String(p.to_string()),
                    )
                    .ok()
                }),
                ..Default::default()
            }),
            volume_options: m.volume_options.as_ref().map(|v| MountVolumeOptions {
                no_copy: Some(v.no_copy),
                labels: (!v.labels.is_empty())
                    .then(|| v.labels.clone().into_iter().collect::<HashMap<_, _>>()),
                driver_config: v
                    .driver_config
                    .as_ref()
                    .map(|d| MountVolumeOptionsDriverConfig {
                        name: Some(d.name.clone()),
                        options: Some(d.options.clone().into_iter().collect()),
                    }),
                subpath: v.subpath.clone(),
            }),
            tmpfs_options: m.tmpfs_options.as_ref().map(|t| MountTmpfsOptions {
                size_bytes: t.size_bytes,
                mode: t.mode.map(i64::from),
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect()
}

/// The container's environment: the spec's, plus `TASK_NAME`, `TASK_SLOT`, `NODE_NAME` and
/// `SERVICE_NAME` unless the spec sets them.
fn env(task: &Task, node: &str) -> Vec<String> {
    let mut env = task.spec.template.container.env.clone();
    let mut add = |k: &str, v: String| {
        env.entry(k.to_string()).or_insert(v);
    };
    add("TASK_NAME", task.metadata.name.clone());
    add("SERVICE_NAME", task.spec.service.clone());
    add("NODE_NAME", node.to_string());
    if let Some(slot) = task.spec.slot {
        add("TASK_SLOT", slot.to_string());
    }
    env.iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// Docker's create request for the task's container on `node`.
pub fn create_body(task: &Task, node: &str, ports: &[PortConfig]) -> ContainerCreateBody {
    let c = &task.spec.template.container;
    let limits = &task.spec.template.resources.limits;
    let some_vec = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
    let some_str = |s: &String| (!s.is_empty()).then(|| s.clone());

    let healthcheck = c.healthcheck.as_ref().map(|h| HealthConfig {
        test: some_vec(&h.test),
        interval: h.interval.as_ref().map(nanos),
        timeout: h.timeout.as_ref().map(nanos),
        retries: h.retries.map(|r| r as i64),
        start_period: h.start_period.as_ref().map(nanos),
        start_interval: h.start_interval.as_ref().map(nanos),
    });

    let mut exposed = Vec::new();
    let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for p in ports {
        let key = format!("{}/{}", p.target_port, proto(p.protocol));
        exposed.push(key.clone());
        let host_port = match p.publish_mode {
            PublishMode::Host => p.published_port.map(|n| n.to_string()).unwrap_or_default(),
            // Ingress: published on an ephemeral host port; the routing mesh forwards to it.
            PublishMode::Ingress => String::new(),
        };
        bindings
            .entry(key)
            .or_insert(None)
            .get_or_insert_with(Vec::new)
            .push(PortBinding {
                host_ip: None,
                host_port: Some(host_port),
            });
    }

    let nets = attachments(task);
    let (network_mode, networking_config) = match nets.first() {
        Some((name, addr, aliases)) => {
            let dn = docker_network(name);
            let mut endpoints = HashMap::new();
            endpoints.insert(dn.clone(), endpoint(addr, aliases));
            (
                Some(dn),
                Some(NetworkingConfig {
                    endpoints_config: Some(endpoints),
                }),
            )
        }
        None => (None, None),
    };

    let host_config = HostConfig {
        nano_cpus: (limits.nano_cpus > 0).then_some(limits.nano_cpus),
        memory: (limits.memory_bytes > 0).then_some(limits.memory_bytes),
        pids_limit: (limits.pids > 0).then_some(limits.pids),
        init: c.init,
        readonly_rootfs: Some(c.read_only),
        mounts: Some(mounts(task)).filter(|m| !m.is_empty()),
        sysctls: (!c.sysctls.is_empty()).then(|| c.sysctls.clone().into_iter().collect()),
        ulimits: (!c.ulimits.is_empty()).then(|| {
            c.ulimits
                .iter()
                .map(|u| ResourcesUlimits {
                    name: Some(u.name.clone()),
                    soft: Some(u.soft),
                    hard: Some(u.hard),
                })
                .collect()
        }),
        cap_add: some_vec(&c.cap_add),
        cap_drop: some_vec(&c.cap_drop),
        group_add: some_vec(&c.groups),
        oom_score_adj: c.oom_score_adj,
        // Swarm's `hosts` are "IP host"; Docker wants "host:IP".
        extra_hosts: (!c.hosts.is_empty()).then(|| {
            c.hosts
                .iter()
                .filter_map(|h| {
                    let mut parts = h.split_whitespace();
                    let ip = parts.next()?;
                    Some(parts.map(|n| format!("{n}:{ip}")).collect::<Vec<_>>())
                })
                .flatten()
                .collect()
        }),
        dns: some_vec(&c.dns_config.nameservers),
        dns_search: some_vec(&c.dns_config.search),
        dns_options: some_vec(&c.dns_config.options),
        port_bindings: (!bindings.is_empty()).then_some(bindings),
        network_mode,
        ..Default::default()
    };

    ContainerCreateBody {
        image: Some(c.image.clone()),
        hostname: some_str(&c.hostname),
        user: some_str(&c.user),
        working_dir: some_str(&c.working_dir),
        env: Some(env(task, node)),
        entrypoint: some_vec(&c.command),
        cmd: some_vec(&c.args),
        tty: Some(c.tty),
        open_stdin: Some(c.open_stdin),
        labels: Some({
            let mut l = labels(task, node);
            let ingress: Vec<String> = ports
                .iter()
                .filter(|p| p.publish_mode == PublishMode::Ingress)
                .map(|p| format!("{}/{}", p.target_port, proto(p.protocol)))
                .collect();
            if !ingress.is_empty() {
                l.insert(LABEL_INGRESS.into(), ingress.join(","));
            }
            l
        }),
        stop_signal: c.stop_signal.clone(),
        stop_timeout: Some(c.stop_grace_period.as_std().as_secs() as i64),
        healthcheck,
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        host_config: Some(host_config),
        networking_config,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_api::{NetworkAttachment, TaskSpec};

    fn task() -> Task {
        let mut t = Task::new(
            "web.2.1",
            TaskSpec {
                service: "shop_web".into(),
                slot: Some(2),
                ..Default::default()
            },
        );
        t.metadata.uid = "0f7a-11".into();
        t.metadata.labels.insert(STACK_LABEL.into(), "shop".into());
        let c = &mut t.spec.template.container;
        c.image = "swarm-examples/hello:1".into();
        c.env.insert("A".into(), "1".into());
        c.command = vec!["/hello".into()];
        c.args = vec!["--port".into(), "80".into()];
        c.hosts = vec!["10.0.0.1 db cache".into()];
        c.cap_add = vec!["NET_ADMIN".into()];
        t.spec.template.resources.limits.nano_cpus = 500_000_000;
        t.spec.template.resources.limits.pids = 64;
        t.spec.networks = vec![NetworkAttachment {
            network: "shop_front".into(),
            addresses: vec!["10.0.1.5/24".into()],
            aliases: vec!["www".into()],
        }];
        t.spec.ports = vec![PortConfig {
            target_port: 80,
            published_port: Some(8080),
            publish_mode: PublishMode::Host,
            ..Default::default()
        }];
        t
    }

    #[test]
    fn names_and_labels() {
        let t = task();
        assert_eq!(container_name(&t, "n1"), "shop_web.2.0f7a11");
        let mut global = t.clone();
        global.spec.slot = None;
        assert_eq!(container_name(&global, "n1"), "shop_web.n1.0f7a11");
        let l = labels(&t, "n1");
        assert_eq!(l[LABEL_NODE], "n1");
        assert_eq!(l[LABEL_TASK], "web.2.1");
        assert_eq!(l[LABEL_SERVICE], "shop_web");
        assert_eq!(l[STACK_LABEL], "shop");
        assert_eq!(l[LABEL_SLOT], "2");
    }

    #[test]
    fn create_body_maps_the_spec() {
        let t = task();
        let b = create_body(&t, "n1", &t.spec.ports);
        let env = b.env.unwrap();
        assert!(env.contains(&"A=1".to_string()));
        assert!(env.contains(&"TASK_NAME=web.2.1".to_string()));
        assert!(env.contains(&"TASK_SLOT=2".to_string()));
        assert!(env.contains(&"NODE_NAME=n1".to_string()));
        assert_eq!(b.entrypoint, Some(vec!["/hello".to_string()]));
        assert_eq!(b.cmd, Some(vec!["--port".to_string(), "80".to_string()]));
        assert_eq!(b.stop_timeout, Some(10));
        let h = b.host_config.unwrap();
        assert_eq!(h.nano_cpus, Some(500_000_000));
        assert_eq!(h.pids_limit, Some(64));
        assert_eq!(
            h.extra_hosts,
            Some(vec![
                "db:10.0.0.1".to_string(),
                "cache:10.0.0.1".to_string()
            ])
        );
        assert_eq!(h.network_mode.as_deref(), Some("swarm-shop_front"));
        let pb = h.port_bindings.unwrap();
        assert_eq!(
            pb["80/tcp"].as_ref().unwrap()[0].host_port.as_deref(),
            Some("8080")
        );
        let ep = &b.networking_config.unwrap().endpoints_config.unwrap()["swarm-shop_front"];
        assert_eq!(
            ep.ipam_config.as_ref().unwrap().ipv4_address.as_deref(),
            Some("10.0.1.5")
        );
        assert_eq!(
            ep.aliases.clone().unwrap(),
            vec!["shop_web".to_string(), "www".to_string()]
        );
    }
}
