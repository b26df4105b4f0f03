//! `service ls` (and `stack services`): `ID NAME MODE REPLICAS IMAGE PORTS`.

use serde_json::json;
use swarm_api::{PortConfig, PublishMode, Service, ServiceMode};

use super::natural_cmp;
use crate::output::columns::wire;
use crate::output::humanize::{familiar_image, short_id};
use crate::output::listing::{Listing, record};

pub const FORMAT: &str =
    "table {{.ID}}\t{{.Name}}\t{{.Mode}}\t{{.Replicas}}\t{{.Image}}\t{{.Ports}}";
pub const HEADERS: &[(&str, &str)] = &[
    ("ID", "ID"),
    ("Name", "NAME"),
    ("Mode", "MODE"),
    ("Replicas", "REPLICAS"),
    ("Image", "IMAGE"),
    ("Ports", "PORTS"),
];

/// The services, sorted by name as docker sorts them.
pub fn list(services: &[Service]) -> Listing {
    let mut sorted: Vec<&Service> = services.iter().collect();
    sorted.sort_by(|a, b| natural_cmp(&a.metadata.name, &b.metadata.name));
    let mut l = Listing::new(FORMAT, HEADERS);
    for s in sorted {
        l.rows.push(record([
            ("ID", json!(short_id(&s.metadata.uid))),
            ("Name", json!(s.metadata.name)),
            ("Mode", json!(s.spec.mode.display_name())),
            ("Replicas", json!(replicas(s))),
            (
                "Image",
                json!(familiar_image(&s.spec.task_template.container.image)),
            ),
            ("Ports", json!(ports(s))),
        ]));
    }
    l
}

/// `running/desired`; jobs add their completions, a per-node cap is noted as docker does.
pub fn replicas(s: &Service) -> String {
    let st = &s.status.replicas;
    match &s.spec.mode {
        ServiceMode::Replicated { replicas } => {
            let max = s.spec.task_template.placement.max_replicas_per_node;
            if max > 0 {
                format!("{}/{replicas} (max {max} per node)", st.running)
            } else {
                format!("{}/{replicas}", st.running)
            }
        }
        ServiceMode::Global {} => format!("{}/{}", st.running, st.desired),
        ServiceMode::ReplicatedJob {
            total_completions, ..
        } => format!(
            "{}/{} ({}/{total_completions} completed)",
            st.running, st.desired, st.completed
        ),
        ServiceMode::GlobalJob {} => format!(
            "{}/{} ({}/{} completed)",
            st.running,
            st.desired,
            st.completed,
            st.desired + st.completed
        ),
    }
}

/// The published ingress ports, `*:8080->80/tcp`, consecutive ports grouped into ranges
/// (`*:80-81->80-81/tcp`) as docker groups them. A port whose published number is not
/// allocated yet is left out.
pub fn ports(s: &Service) -> String {
    let mut ports: Vec<(String, u16, u16)> = s
        .spec
        .endpoint
        .ports
        .iter()
        .filter(|p| p.publish_mode == PublishMode::Ingress)
        .filter_map(|p| {
            published(p, &s.status.ports).map(|n| (wire(&p.protocol), n, p.target_port))
        })
        .collect();
    ports.sort();
    let mut out: Vec<String> = Vec::new();
    let mut range: Option<Range> = None;
    for (protocol, pub_port, target) in ports {
        if let Some(r) = range.as_mut()
            && r.protocol == protocol
            && pub_port == r.p_end + 1
            && target == r.t_end + 1
        {
            r.p_end = pub_port;
            r.t_end = target;
            continue;
        }
        if let Some(r) = range.take() {
            out.push(r.to_string());
        }
        range = Some(Range {
            protocol,
            p_start: pub_port,
            p_end: pub_port,
            t_start: target,
            t_end: target,
        });
    }
    if let Some(r) = range {
        out.push(r.to_string());
    }
    out.join(", ")
}

fn published(p: &PortConfig, allocated: &[PortConfig]) -> Option<u16> {
    p.published_port.or_else(|| {
        allocated
            .iter()
            .find(|a| a.target_port == p.target_port && a.protocol == p.protocol)
            .and_then(|a| a.published_port)
    })
}

struct Range {
    protocol: String,
    p_start: u16,
    p_end: u16,
    t_start: u16,
    t_end: u16,
}

impl std::fmt::Display for Range {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let span = |a: u16, b: u16| {
            if b > a {
                format!("{a}-{b}")
            } else {
                a.to_string()
            }
        };
        write!(
            f,
            "*:{}->{}/{}",
            span(self.p_start, self.p_end),
            span(self.t_start, self.t_end),
            self.protocol
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(v: serde_json::Value) -> Service {
        serde_json::from_value(v).unwrap()
    }

    fn services() -> Vec<Service> {
        vec![
            service(json!({
                "metadata": {"name": "web", "uid": "3f1c2b4a-5d6e-4f70-8192-a3b4c5d6e7f8"},
                "spec": {"mode": {"replicated": {"replicas": 3}},
                         "taskTemplate": {"container": {"image": "nginx:1.27@sha256:0123"}},
                         "endpoint": {"ports": [
                            {"targetPort": 80, "publishedPort": 8080},
                            {"targetPort": 81, "publishedPort": 8081},
                            {"targetPort": 53, "publishedPort": 53, "protocol": "udp"},
                            {"targetPort": 9000, "publishMode": "host", "publishedPort": 9000},
                            {"targetPort": 443}]}},
                "status": {"replicas": {"desired": 3, "running": 2},
                           "ports": [{"targetPort": 443, "publishedPort": 30001}]}
            })),
            service(json!({
                "metadata": {"name": "agent", "uid": "a1b2c3d4-0000-4000-8000-000000000001"},
                "spec": {"mode": {"global": {}},
                         "taskTemplate": {"container": {"image": "docker.io/library/alpine"}}},
                "status": {"replicas": {"desired": 4, "running": 4}}
            })),
            service(json!({
                "metadata": {"name": "migrate", "uid": "b1b2c3d4-0000-4000-8000-000000000002"},
                "spec": {"mode": {"replicatedJob": {"maxConcurrent": 2, "totalCompletions": 5}},
                         "taskTemplate": {"container": {"image": "app:2"}}},
                "status": {"replicas": {"desired": 2, "running": 1, "completed": 3}}
            })),
            service(json!({
                "metadata": {"name": "cache", "uid": "c1b2c3d4-0000-4000-8000-000000000003"},
                "spec": {"mode": {"replicated": {"replicas": 2}},
                         "taskTemplate": {"container": {"image": "redis:7"},
                                          "placement": {"maxReplicasPerNode": 1}}}
            })),
        ]
    }

    #[test]
    fn golden_service_ls() {
        let text = list(&services()).render(None, false).unwrap();
        assert_eq!(
            text,
            "\
ID             NAME      MODE             REPLICAS               IMAGE        PORTS
a1b2c3d40000   agent     global           4/4                    alpine       
c1b2c3d40000   cache     replicated       0/2 (max 1 per node)   redis:7      
b1b2c3d40000   migrate   replicated job   1/2 (3/5 completed)    app:2        
3f1c2b4a5d6e   web       replicated       2/3                    nginx:1.27   *:8080-8081->80-81/tcp, *:30001->443/tcp, *:53->53/udp
"
        );
    }

    #[test]
    fn golden_service_ls_quiet_and_formats() {
        let l = list(&services());
        assert_eq!(
            l.render(None, true).unwrap(),
            "a1b2c3d40000\nc1b2c3d40000\nb1b2c3d40000\n3f1c2b4a5d6e\n"
        );
        assert_eq!(
            l.render(Some("{{.Name}} {{.Replicas}}"), false).unwrap(),
            "agent 4/4\ncache 0/2 (max 1 per node)\nmigrate 1/2 (3/5 completed)\nweb 2/3\n"
        );
        let json = l.render(Some("{{json .}}"), false).unwrap();
        assert_eq!(
            json.lines().next().unwrap(),
            r#"{"ID":"a1b2c3d40000","Image":"alpine","Mode":"global","Name":"agent","Ports":"","Replicas":"4/4"}"#
        );
        assert_eq!(
            l.render(Some("table {{.Name}}\\t{{.Mode}}"), false)
                .unwrap(),
            "NAME      MODE\nagent     global\ncache     replicated\nmigrate   replicated job\nweb       replicated\n"
        );
    }
}
