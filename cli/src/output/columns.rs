//! The columns `swarm get` shows for each kind, and how each cell is worked out from an object.

use std::time::SystemTime;

use serde::Serialize;
use swarm_api::{
    AnyObject, Kind, Network, Node, ObjectMeta, PortConfig, Service, ServiceMode, Task, Timestamp,
};

/// The header of the table of `kind` (`wide` adds a few columns).
pub fn header(kind: Kind, wide: bool) -> Vec<String> {
    let (base, extra): (&[&str], &[&str]) = match kind {
        Kind::Service => (
            &["NAME", "MODE", "REPLICAS", "IMAGE", "PORTS", "AGE"],
            &["ENDPOINT", "NETWORKS", "UPDATE", "GENERATION"],
        ),
        Kind::Task => (
            &["NAME", "SERVICE", "NODE", "DESIRED", "STATE", "AGE"],
            &["SLOT", "CONTAINER", "MESSAGE"],
        ),
        Kind::Node => (
            &["NAME", "STATUS", "AVAILABILITY", "ROLE", "AGE"],
            &["ADDRESS", "ENGINE", "PLATFORM"],
        ),
        Kind::Network => (
            &["NAME", "DRIVER", "SUBNET", "AGE"],
            &["GATEWAY", "ATTACHABLE", "INTERNAL"],
        ),
        _ => (&["NAME", "AGE"], &["LABELS"]),
    };
    let mut h: Vec<String> = base.iter().map(|s| s.to_string()).collect();
    if wide {
        h.extend(extra.iter().map(|s| s.to_string()));
    }
    h
}

/// The cells of one object, matching `header(kind, wide)`. An object that does not decode as
/// its kind still gets its name and age.
pub fn row(kind: Kind, value: &serde_json::Value, wide: bool, now: SystemTime) -> Vec<String> {
    let head = header(kind, wide);
    let cols = head.len();
    let obj = AnyObject::from_value(value.clone()).ok();
    let mut cells = match &obj {
        Some(AnyObject::Service(s)) => service(s, wide, now),
        Some(AnyObject::Task(t)) => task(t, wide, now),
        Some(AnyObject::Node(n)) => node(n, wide, now),
        Some(AnyObject::Network(n)) => network(n, wide, now),
        Some(o) => {
            let mut c = vec![o.name().to_string(), age(&o.meta().creation_timestamp, now)];
            if wide {
                c.push(labels(o.meta()));
            }
            c
        }
        None => fallback(value, &head, now),
    };
    cells.resize(cols, String::new());
    cells
}

fn fallback(value: &serde_json::Value, head: &[String], now: SystemTime) -> Vec<String> {
    let name = value
        .pointer("/metadata/name")
        .and_then(|v| v.as_str())
        .unwrap_or("<unknown>")
        .to_string();
    let created = value
        .pointer("/metadata/creationTimestamp")
        .and_then(|v| serde_json::from_value::<Timestamp>(v.clone()).ok());
    head.iter()
        .enumerate()
        .map(|(i, h)| match (i, h.as_str()) {
            (0, _) => name.clone(),
            (_, "AGE") => age(&created, now),
            _ => String::new(),
        })
        .collect()
}

fn service(s: &Service, wide: bool, now: SystemTime) -> Vec<String> {
    let spec = &s.spec;
    let st = &s.status.replicas;
    let replicas = match &spec.mode {
        ServiceMode::Replicated { replicas } => format!("{}/{}", st.running, replicas),
        ServiceMode::Global {} => format!("{}/{}", st.running, st.desired),
        ServiceMode::ReplicatedJob {
            total_completions, ..
        } => format!(
            "{}/{} ({}/{} completed)",
            st.running, st.desired, st.completed, total_completions
        ),
        ServiceMode::GlobalJob {} => {
            format!("{}/{} ({} completed)", st.running, st.desired, st.completed)
        }
    };
    let mut c = vec![
        s.metadata.name.clone(),
        spec.mode.display_name().to_string(),
        replicas,
        spec.task_template.container.image.clone(),
        ports(&spec.endpoint.ports, &s.status.ports),
        age(&s.metadata.creation_timestamp, now),
    ];
    if wide {
        c.push(wire(&spec.endpoint.mode));
        c.push(dash(
            spec.task_template
                .networks
                .iter()
                .map(|n| n.target.as_str())
                .collect::<Vec<_>>()
                .join(","),
        ));
        c.push(dash(
            s.status
                .update_status
                .as_ref()
                .map(|u| wire(&u.state))
                .unwrap_or_default(),
        ));
        c.push(format!(
            "{}/{}",
            s.status.observed_generation, s.metadata.generation
        ));
    }
    c
}

/// Docker's port notation, `*:8080->80/tcp`; a port the server has yet to pick shows as `*:?`.
fn ports(spec: &[PortConfig], allocated: &[PortConfig]) -> String {
    let cells: Vec<String> = spec
        .iter()
        .map(|p| {
            let published = p.published_port.or_else(|| {
                allocated
                    .iter()
                    .find(|a| a.target_port == p.target_port && a.protocol == p.protocol)
                    .and_then(|a| a.published_port)
            });
            let published = published.map_or("?".to_string(), |n| n.to_string());
            format!("*:{published}->{}/{}", p.target_port, wire(&p.protocol))
        })
        .collect();
    dash(cells.join(","))
}

fn task(t: &Task, wide: bool, now: SystemTime) -> Vec<String> {
    let mut c = vec![
        t.metadata.name.clone(),
        t.spec.service.clone(),
        dash(t.spec.node_name.clone().unwrap_or_default()),
        t.spec.desired_state.to_string(),
        t.status.state.to_string(),
        age(&t.metadata.creation_timestamp, now),
    ];
    if wide {
        c.push(t.spec.slot.map_or("-".to_string(), |s| s.to_string()));
        c.push(dash(t.status.container_id.chars().take(12).collect()));
        let msg = if t.status.err.is_empty() {
            &t.status.message
        } else {
            &t.status.err
        };
        c.push(dash(msg.clone()));
    }
    c
}

fn node(n: &Node, wide: bool, now: SystemTime) -> Vec<String> {
    let mut c = vec![
        n.metadata.name.clone(),
        wire(&n.status.state),
        wire(&n.spec.availability),
        wire(&n.spec.role),
        age(&n.metadata.creation_timestamp, now),
    ];
    if wide {
        c.push(dash(n.status.addr.clone()));
        c.push(dash(n.status.engine.engine_version.clone()));
        let p = &n.status.platform;
        c.push(if p.os.is_empty() && p.architecture.is_empty() {
            "-".to_string()
        } else {
            format!("{}/{}", p.os, p.architecture)
        });
    }
    c
}

fn network(n: &Network, wide: bool, now: SystemTime) -> Vec<String> {
    let subnet = if n.status.subnet.is_empty() {
        n.spec.ipam.subnet.clone().unwrap_or_default()
    } else {
        n.status.subnet.clone()
    };
    let mut c = vec![
        n.metadata.name.clone(),
        wire(&n.spec.driver),
        dash(subnet),
        age(&n.metadata.creation_timestamp, now),
    ];
    if wide {
        let gateway = if n.status.gateway.is_empty() {
            n.spec.ipam.gateway.clone().unwrap_or_default()
        } else {
            n.status.gateway.clone()
        };
        c.push(dash(gateway));
        c.push(n.spec.attachable.to_string());
        c.push(n.spec.internal.to_string());
    }
    c
}

fn labels(meta: &ObjectMeta) -> String {
    dash(
        meta.labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","),
    )
}

/// An enum as the API spells it (`drain`, `stop-first`).
pub fn wire<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

fn dash(s: String) -> String {
    if s.is_empty() { "-".to_string() } else { s }
}

/// How long ago, kubectl-style: `45s`, `12m`, `5h`, `3d`.
pub fn age(created: &Option<Timestamp>, now: SystemTime) -> String {
    let Some(t) = created else {
        return "<unknown>".to_string();
    };
    let secs = now.duration_since(t.0).map(|d| d.as_secs()).unwrap_or(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 48 * 3600 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    fn at(secs_ago: u64, now: SystemTime) -> Option<Timestamp> {
        Some(Timestamp(now - Duration::from_secs(secs_ago)))
    }

    #[test]
    fn ages_read_like_kubectl() {
        let now = SystemTime::now();
        assert_eq!(age(&at(5, now), now), "5s");
        assert_eq!(age(&at(600, now), now), "10m");
        assert_eq!(age(&at(3 * 3600, now), now), "3h");
        assert_eq!(age(&at(5 * 86400, now), now), "5d");
        assert_eq!(age(&None, now), "<unknown>");
    }

    #[test]
    fn service_row() {
        let v = json!({
            "apiVersion": "swarm/v1", "kind": "Service",
            "metadata": {"name": "voting_vote", "generation": 2},
            "spec": {
                "mode": {"replicated": {"replicas": 2}},
                "taskTemplate": {"container": {"image": "dockersamples/examplevotingapp_vote"},
                                 "networks": [{"target": "voting_front"}]},
                "endpoint": {"ports": [{"targetPort": 80, "publishedPort": 5000}, {"targetPort": 81}]}
            },
            "status": {"replicas": {"desired": 2, "running": 1}, "observedGeneration": 1,
                       "ports": [{"targetPort": 81, "publishedPort": 30001}]}
        });
        let now = SystemTime::now();
        let r = row(Kind::Service, &v, true, now);
        assert_eq!(
            r,
            vec![
                "voting_vote",
                "replicated",
                "1/2",
                "dockersamples/examplevotingapp_vote",
                "*:5000->80/tcp,*:30001->81/tcp",
                "<unknown>",
                "vip",
                "voting_front",
                "-",
                "1/2"
            ]
        );
        assert_eq!(r.len(), header(Kind::Service, true).len());
        assert_eq!(row(Kind::Service, &v, false, now).len(), 6);
    }

    #[test]
    fn task_node_network_rows() {
        let now = SystemTime::now();
        let t = json!({"kind": "Task", "metadata": {"name": "web.1.1"},
            "spec": {"service": "web", "slot": 1, "nodeName": "n1", "desiredState": "running"},
            "status": {"state": "pending", "message": "no suitable node"}});
        assert_eq!(
            row(Kind::Task, &t, true, now),
            vec![
                "web.1.1",
                "web",
                "n1",
                "running",
                "pending",
                "<unknown>",
                "1",
                "-",
                "no suitable node"
            ]
        );
        let n = json!({"kind": "Node", "metadata": {"name": "n1"},
            "spec": {"role": "manager", "availability": "drain"}, "status": {"state": "ready"}});
        assert_eq!(
            row(Kind::Node, &n, false, now),
            vec!["n1", "ready", "drain", "manager", "<unknown>"]
        );
        let net = json!({"kind": "Network", "metadata": {"name": "front"},
            "spec": {"driver": "overlay"}, "status": {"subnet": "10.0.1.0/24"}});
        assert_eq!(
            row(Kind::Network, &net, false, now),
            vec!["front", "overlay", "10.0.1.0/24", "<unknown>"]
        );
    }

    /// Whole `swarm get` tables, narrow and wide: nodes, networks, tasks, and a kind with
    /// only the generic columns (secrets: name, age, labels).
    #[test]
    fn golden_get_tables() {
        let now = SystemTime::now();
        let created = |secs: u64| serde_json::to_value(at(secs, now)).unwrap();
        let table = |kind: Kind, wide: bool, objects: &[serde_json::Value]| {
            let mut t = crate::output::table::Table::new(header(kind, wide));
            for o in objects {
                t.add_row(row(kind, o, wide, now));
            }
            t.render()
        };
        let nodes = [
            json!({"kind": "Node", "metadata": {"name": "manager-1", "creationTimestamp": created(7200)},
                   "spec": {"role": "manager"},
                   "status": {"state": "ready", "addr": "10.0.0.1",
                              "engine": {"engineVersion": "27.3.1"},
                              "platform": {"os": "linux", "architecture": "x86_64"}}}),
            json!({"kind": "Node", "metadata": {"name": "worker-2", "creationTimestamp": created(30)},
                   "spec": {"availability": "drain"}, "status": {"state": "down"}}),
        ];
        assert_eq!(
            table(Kind::Node, true, &nodes),
            "NAME        STATUS   AVAILABILITY   ROLE      AGE   ADDRESS    ENGINE   PLATFORM\n\
             manager-1   ready    active         manager   2h    10.0.0.1   27.3.1   linux/x86_64\n\
             worker-2    down     drain          worker    30s   -          -        -\n"
        );
        let nets = [
            json!({"kind": "Network", "metadata": {"name": "front", "creationTimestamp": created(600)},
            "spec": {"driver": "overlay", "attachable": true},
            "status": {"subnet": "10.0.1.0/24", "gateway": "10.0.1.1"}}),
        ];
        assert_eq!(
            table(Kind::Network, false, &nets),
            "NAME    DRIVER    SUBNET        AGE\nfront   overlay   10.0.1.0/24   10m\n"
        );
        assert_eq!(
            table(Kind::Network, true, &nets).lines().nth(1).unwrap(),
            "front   overlay   10.0.1.0/24   10m   10.0.1.1   true         false"
        );
        let tasks = [
            json!({"kind": "Task", "metadata": {"name": "web.1.1", "creationTimestamp": created(60)},
            "spec": {"service": "web", "slot": 1, "nodeName": "manager-1", "desiredState": "running"},
            "status": {"state": "running", "containerId": "0123456789abcdef0123"}}),
        ];
        assert_eq!(
            table(Kind::Task, true, &tasks),
            "NAME      SERVICE   NODE        DESIRED   STATE     AGE   SLOT   CONTAINER      MESSAGE\n\
             web.1.1   web       manager-1   running   running   60s   1      0123456789ab   -\n"
        );
        let secrets = [
            json!({"kind": "Secret", "metadata": {"name": "db_password", "creationTimestamp": created(3 * 86400),
                   "labels": {"swarm.stack": "voting"}}, "spec": {"data": ""}}),
            json!({"kind": "Secret", "metadata": {"name": "api_key", "creationTimestamp": created(5)},
                   "spec": {"data": ""}}),
        ];
        assert_eq!(
            table(Kind::Secret, true, &secrets),
            "NAME          AGE   LABELS\n\
             db_password   3d    swarm.stack=voting\n\
             api_key       5s    -\n"
        );
    }

    #[test]
    fn undecodable_objects_still_show_their_name() {
        let now = SystemTime::now();
        let v = json!({"kind": "Service", "metadata": {"name": "odd"}, "spec": {"bogus": true}});
        let r = row(Kind::Service, &v, false, now);
        assert_eq!(r, vec!["odd", "", "", "", "", "<unknown>"]);
    }
}
