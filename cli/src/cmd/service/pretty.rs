//! `service inspect --pretty`: docker's human-readable layout of a service (tabs included).

use std::fmt::Write as _;
use std::time::SystemTime;

use swarm_api::{Service, ServiceMode, UpdateConfig, UpdateState};

use crate::output::columns::wire;
use crate::output::humanize::{ago, bytes_size, cpus, full_id};

/// The summary of one service.
pub fn service(s: &Service, now: SystemTime) -> String {
    let mut o = String::new();
    let spec = &s.spec;
    let _ = writeln!(o, "\nID:\t\t{}", full_id(&s.metadata.uid));
    let _ = writeln!(o, "Name:\t\t{}", s.metadata.name);
    if !s.metadata.labels.is_empty() {
        o.push_str("Labels:\n");
        for (k, v) in &s.metadata.labels {
            let _ = writeln!(
                o,
                " {k}{}",
                if v.is_empty() {
                    String::new()
                } else {
                    format!("={v}")
                }
            );
        }
    }
    match &spec.mode {
        ServiceMode::Global {} => o.push_str("Service Mode:\tGlobal\n"),
        ServiceMode::Replicated { replicas } => {
            let _ = writeln!(o, "Service Mode:\tReplicated\n Replicas:\t{replicas}");
        }
        ServiceMode::ReplicatedJob {
            max_concurrent,
            total_completions,
        } => {
            let _ = writeln!(
                o,
                "Service Mode:\tReplicated Job\n Max Concurrent:\t{max_concurrent}\n Total Completions:\t{total_completions}"
            );
        }
        ServiceMode::GlobalJob {} => o.push_str("Service Mode:\tGlobal Job\n"),
    }
    if let Some(u) = &s.status.update_status {
        let _ = writeln!(o, "UpdateStatus:\n State:\t\t{}", wire(&u.state));
        if u.started_at.is_some() {
            let _ = writeln!(o, " Started:\t{}", ago(u.started_at.as_ref(), now));
        }
        if u.state == UpdateState::Completed && u.completed_at.is_some() {
            let _ = writeln!(o, " Completed:\t{}", ago(u.completed_at.as_ref(), now));
        }
        let _ = writeln!(o, " Message:\t{}", u.message);
    }
    let p = &spec.task_template.placement;
    o.push_str("Placement:\n");
    if !p.constraints.is_empty() {
        let _ = writeln!(o, " Constraints:\t[{}]", p.constraints.join(" "));
    }
    if !p.preferences.is_empty() {
        let prefs: Vec<String> = p
            .preferences
            .iter()
            .map(|x| format!("spread={}", x.spread))
            .collect();
        let _ = writeln!(o, " Preferences:   [{}]", prefs.join(" "));
    }
    if p.max_replicas_per_node > 0 {
        let _ = writeln!(o, " Max Replicas Per Node:   {}", p.max_replicas_per_node);
    }
    policy(
        &mut o,
        "UpdateConfig",
        "Update order:     ",
        &spec.update_config,
    );
    policy(
        &mut o,
        "RollbackConfig",
        "Rollback order:   ",
        &spec.rollback_config,
    );
    let c = &spec.task_template.container;
    let _ = writeln!(o, "ContainerSpec:\n Image:\t\t{}", c.image);
    if !c.args.is_empty() {
        let _ = writeln!(o, " Args:\t\t{} ", c.args.join(" "));
    }
    if !c.env.is_empty() {
        let env: Vec<String> = c.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = writeln!(o, " Env:\t\t{} ", env.join(" "));
    }
    if !c.working_dir.is_empty() {
        let _ = writeln!(o, " Dir:\t\t{}", c.working_dir);
    }
    if let Some(init) = c.init {
        let _ = writeln!(o, " Init:\t\t{init}");
    }
    if !c.user.is_empty() {
        let _ = writeln!(o, " User: {}", c.user);
    }
    if !c.cap_add.is_empty() || !c.cap_drop.is_empty() {
        o.push_str("Capabilities:\n");
        if !c.cap_add.is_empty() {
            let _ = writeln!(o, " Add: {}", c.cap_add.join(", "));
        }
        if !c.cap_drop.is_empty() {
            let _ = writeln!(o, " Drop: {}", c.cap_drop.join(", "));
        }
    }
    if !c.sysctls.is_empty() {
        o.push_str("SysCtls:\n");
        for (k, v) in &c.sysctls {
            let _ = writeln!(o, " {k}: {v}");
        }
    }
    if !c.ulimits.is_empty() {
        o.push_str("Ulimits:\n");
        for u in &c.ulimits {
            let _ = writeln!(o, " {}: {}:{}", u.name, u.soft, u.hard);
        }
    }
    if !c.mounts.is_empty() {
        o.push_str("Mounts:\n");
        for m in &c.mounts {
            let _ = writeln!(
                o,
                " Target:\t{}\n  Source:\t{}\n  ReadOnly:\t{}\n  Type:\t\t{}",
                m.target,
                m.source,
                m.read_only,
                wire(&m.type_)
            );
        }
    }
    for (title, refs) in [("Configs", &c.configs), ("Secrets", &c.secrets)] {
        if !refs.is_empty() {
            let _ = writeln!(o, "{title}:");
            for r in refs {
                let _ = writeln!(o, " Target:\t{}\n  Source:\t{}", r.target, r.source);
            }
        }
    }
    if let Some(d) = &spec.task_template.log_driver {
        let _ = writeln!(o, "Log Driver:\n Name:\t\t{}", d.name);
        if !d.options.is_empty() {
            o.push_str(" LogOpts:\n");
            for (k, v) in &d.options {
                let _ = writeln!(o, "  {k}={v}");
            }
        }
    }
    let r = &spec.task_template.resources;
    let has_res = r.reservations.nano_cpus > 0 || r.reservations.memory_bytes > 0;
    let has_lim = r.limits.nano_cpus > 0 || r.limits.memory_bytes > 0 || r.limits.pids > 0;
    if has_res || has_lim {
        o.push_str("Resources:\n");
        for (title, res, show) in [
            (" Reservations:", &r.reservations, has_res),
            (" Limits:", &r.limits, has_lim),
        ] {
            if !show {
                continue;
            }
            let _ = writeln!(o, "{title}");
            if res.nano_cpus > 0 {
                let _ = writeln!(o, "  CPU:\t\t{}", cpus(res.nano_cpus));
            }
            if res.memory_bytes > 0 {
                let _ = writeln!(o, "  Memory:\t{}", bytes_size(res.memory_bytes as f64));
            }
            if res.pids > 0 {
                let _ = writeln!(o, "  PIDs:\t\t{}", res.pids);
            }
        }
    }
    if !spec.task_template.networks.is_empty() {
        let nets: String = spec
            .task_template
            .networks
            .iter()
            .map(|n| format!(" {}", n.target))
            .collect();
        let _ = writeln!(o, "Networks:{nets} ");
    }
    let _ = writeln!(o, "Endpoint Mode:\t{}", wire(&spec.endpoint.mode));
    if !spec.endpoint.ports.is_empty() {
        o.push_str("Ports:\n");
        for p in &spec.endpoint.ports {
            let published = p
                .published_port
                .or_else(|| {
                    s.status
                        .ports
                        .iter()
                        .find(|a| a.target_port == p.target_port)
                        .and_then(|a| a.published_port)
                })
                .unwrap_or(0);
            let _ = writeln!(
                o,
                " PublishedPort = {published}\n  Protocol = {}\n  TargetPort = {}\n  PublishMode = {}",
                wire(&p.protocol),
                p.target_port,
                wire(&p.publish_mode)
            );
        }
    }
    o
}

fn policy(o: &mut String, title: &str, order_label: &str, u: &UpdateConfig) {
    let _ = writeln!(o, "{title}:\n Parallelism:\t{}", u.parallelism);
    if !u.delay.is_zero() {
        let _ = writeln!(o, " Delay:\t\t{}", u.delay);
    }
    let _ = writeln!(o, " On failure:\t{}", wire(&u.failure_action));
    if !u.monitor.is_zero() {
        let _ = writeln!(o, " Monitoring Period: {}", u.monitor);
    }
    let _ = writeln!(o, " Max failure ratio: {}", u.max_failure_ratio);
    let _ = writeln!(o, " {order_label} {}", wire(&u.order));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::fixtures::{ago, now};
    use serde_json::json;

    #[test]
    fn golden_pretty() {
        let s: Service = serde_json::from_value(json!({
            "metadata": {"name": "web", "uid": "3f1c2b4a-5d6e-4f70-8192-a3b4c5d6e7f8",
                         "labels": {"tier": "front"}},
            "spec": {
                "mode": {"replicated": {"replicas": 3}},
                "taskTemplate": {
                    "container": {"image": "nginx:1.27", "args": ["nginx", "-g", "daemon off;"],
                                  "env": {"A": "1"}, "secrets": [{"source": "pw", "target": "pw"}],
                                  "init": true, "capAdd": ["NET_ADMIN"], "capDrop": ["MKNOD"],
                                  "sysctls": {"net.core.somaxconn": "1024"},
                                  "ulimits": [{"name": "nofile", "soft": 1024, "hard": 2048}]},
                    "logDriver": {"name": "json-file", "options": {"max-size": "10m"}},
                    "placement": {"constraints": ["node.role==worker"]},
                    "resources": {"limits": {"memoryBytes": 268435456, "nanoCpus": 500000000}},
                    "networks": [{"target": "front"}]
                },
                "updateConfig": {"parallelism": 2, "delay": "10s"},
                "endpoint": {"ports": [{"targetPort": 80, "publishedPort": 8080}]}
            },
            "status": {"updateStatus": {"state": "completed", "startedAt": ago(300),
                                        "completedAt": ago(240), "message": "update completed"}}
        }))
        .unwrap();
        let text = service(&s, now());
        assert_eq!(
            text,
            "
ID:\t\t3f1c2b4a5d6e4f708192a3b4c5d6e7f8
Name:\t\tweb
Labels:
 tier=front
Service Mode:\tReplicated
 Replicas:\t3
UpdateStatus:
 State:\t\tcompleted
 Started:\t5 minutes ago
 Completed:\t4 minutes ago
 Message:\tupdate completed
Placement:
 Constraints:\t[node.role==worker]
UpdateConfig:
 Parallelism:\t2
 Delay:\t\t10s
 On failure:\tpause
 Monitoring Period: 5s
 Max failure ratio: 0
 Update order:      stop-first
RollbackConfig:
 Parallelism:\t1
 On failure:\tpause
 Monitoring Period: 5s
 Max failure ratio: 0
 Rollback order:    stop-first
ContainerSpec:
 Image:\t\tnginx:1.27
 Args:\t\tnginx -g daemon off; 
 Env:\t\tA=1 
 Init:\t\ttrue
Capabilities:
 Add: NET_ADMIN
 Drop: MKNOD
SysCtls:
 net.core.somaxconn: 1024
Ulimits:
 nofile: 1024:2048
Secrets:
 Target:\tpw
  Source:\tpw
Log Driver:
 Name:\t\tjson-file
 LogOpts:
  max-size=10m
Resources:
 Limits:
  CPU:\t\t0.5
  Memory:\t256MiB
Networks: front 
Endpoint Mode:\tvip
Ports:
 PublishedPort = 8080
  Protocol = tcp
  TargetPort = 80
  PublishMode = ingress
"
        );
    }
}
