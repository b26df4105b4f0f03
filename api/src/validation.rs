//! Checks that a decoded object makes sense, reporting one `StatusCause` per bad field with
//! its path (`spec.mode.replicated.replicas`). Decoding (types, unknown fields) happens first
//! in serde; this is what types cannot say.

use base64::Engine;

use crate::{
    AnyObject, Kind, ObjectMeta, StatusCause,
    objects::{
        DataSpec, EndpointMode, MAX_DATA_BYTES, Network, PublishMode, Service, ServiceMode,
        TEMPLATE_DRIVER_GOLANG,
    },
};

/// Longest object name (DNS label limit ×4, room for `<stack>_<service>.<slot>.<attempt>`).
pub const MAX_NAME_LEN: usize = 253;

/// Why `name` is not a valid object name, if it is not: 1–253 characters from
/// `[A-Za-z0-9_.-]`, starting and ending with a letter or digit.
pub fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("must not be empty".to_string());
    }
    if name.len() > MAX_NAME_LEN {
        return Some(format!("must be at most {MAX_NAME_LEN} characters"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return Some(format!(
            "{name:?} may contain only letters, digits, '_', '.' and '-'"
        ));
    }
    let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !edge_ok(name.chars().next()) || !edge_ok(name.chars().last()) {
        return Some(format!(
            "{name:?} must start and end with a letter or digit"
        ));
    }
    None
}

/// Checks metadata common to every kind.
pub fn validate_meta(meta: &ObjectMeta, causes: &mut Vec<StatusCause>) {
    if let Some(problem) = name_problem(&meta.name) {
        causes.push(StatusCause::invalid("metadata.name", problem));
    }
    for key in meta.labels.keys() {
        if key.is_empty() || key.len() > 253 || key.chars().any(char::is_whitespace) {
            causes.push(StatusCause::invalid(
                format!("metadata.labels[{key:?}]"),
                "label keys must be 1-253 characters without spaces",
            ));
        }
    }
}

/// Validates an object of any kind; an empty result means valid.
pub fn validate(obj: &AnyObject) -> Vec<StatusCause> {
    let mut causes = Vec::new();
    validate_meta(obj.meta(), &mut causes);
    match obj {
        AnyObject::Service(s) => validate_service(s, &mut causes),
        AnyObject::Network(n) => validate_network(n, &mut causes),
        AnyObject::Secret(s) => validate_data(Kind::Secret, &s.spec, &mut causes),
        AnyObject::Config(c) => validate_data(Kind::Config, &c.spec, &mut causes),
        AnyObject::Task(t) => {
            if t.spec.service.is_empty() {
                causes.push(StatusCause::required("spec.service"));
            }
        }
        AnyObject::GitSync(g) => {
            if g.spec.repo.is_empty() {
                causes.push(StatusCause::required("spec.repo"));
            }
        }
        AnyObject::Node(_) | AnyObject::Lease(_) => {}
    }
    causes
}

fn validate_service(s: &Service, causes: &mut Vec<StatusCause>) {
    let spec = &s.spec;
    let c = &spec.task_template.container;
    if c.image.trim().is_empty() {
        causes.push(StatusCause::required("spec.taskTemplate.container.image"));
    }
    if let ServiceMode::ReplicatedJob {
        max_concurrent,
        total_completions,
    } = spec.mode
        && (max_concurrent == 0 || total_completions == 0)
    {
        causes.push(StatusCause::invalid(
            "spec.mode.replicatedJob",
            "maxConcurrent and totalCompletions must be at least 1",
        ));
    }
    for (field, cfg) in [
        ("spec.updateConfig", &spec.update_config),
        ("spec.rollbackConfig", &spec.rollback_config),
    ] {
        if !(0.0..=1.0).contains(&cfg.max_failure_ratio) {
            causes.push(StatusCause::invalid(
                format!("{field}.maxFailureRatio"),
                format!("must be between 0 and 1, found {}", cfg.max_failure_ratio),
            ));
        }
    }
    let mut published = std::collections::BTreeSet::new();
    for (i, p) in spec.endpoint.ports.iter().enumerate() {
        if p.target_port == 0 {
            causes.push(StatusCause::invalid(
                format!("spec.endpoint.ports[{i}].targetPort"),
                "must be between 1 and 65535",
            ));
        }
        if let Some(pp) = p.published_port {
            if pp == 0 {
                causes.push(StatusCause::invalid(
                    format!("spec.endpoint.ports[{i}].publishedPort"),
                    "must be between 1 and 65535",
                ));
            } else if !published.insert((pp, p.protocol)) {
                causes.push(StatusCause::new(
                    "FieldValueDuplicate",
                    format!("spec.endpoint.ports[{i}].publishedPort"),
                    format!("port {pp} is published twice"),
                ));
            }
        }
    }
    if spec.endpoint.mode == EndpointMode::Dnsrr
        && let Some(i) = spec
            .endpoint
            .ports
            .iter()
            .position(|p| p.publish_mode == PublishMode::Ingress)
    {
        // Swarm refuses this too: the routing mesh balances over a VIP, and DNSRR has none.
        causes.push(StatusCause::invalid(
            format!("spec.endpoint.ports[{i}].publishMode"),
            "a dnsrr service cannot publish ports through the routing mesh (ingress mode); \
             publish them in host mode or use endpoint mode vip",
        ));
    }
    for (i, constraint) in spec.task_template.placement.constraints.iter().enumerate() {
        if !(constraint.contains("==") || constraint.contains("!=")) {
            causes.push(StatusCause::invalid(
                format!("spec.taskTemplate.placement.constraints[{i}]"),
                format!("{constraint:?} must have the form KEY==VALUE or KEY!=VALUE"),
            ));
        }
    }
    let r = &spec.task_template.resources;
    for (field, v) in [
        ("limits.nanoCpus", r.limits.nano_cpus),
        ("limits.memoryBytes", r.limits.memory_bytes),
        ("limits.pids", r.limits.pids),
        ("reservations.nanoCpus", r.reservations.nano_cpus),
        ("reservations.memoryBytes", r.reservations.memory_bytes),
    ] {
        if v < 0 {
            causes.push(StatusCause::invalid(
                format!("spec.taskTemplate.resources.{field}"),
                "must not be negative",
            ));
        }
    }
}

fn validate_network(n: &Network, causes: &mut Vec<StatusCause>) {
    if let Some(subnet) = &n.spec.ipam.subnet
        && subnet.parse::<ipnet::IpNet>().is_err()
    {
        causes.push(StatusCause::invalid(
            "spec.ipam.subnet",
            format!("{subnet:?} is not a CIDR such as 10.0.9.0/24"),
        ));
    }
    if let Some(gw) = &n.spec.ipam.gateway {
        match gw.parse::<std::net::IpAddr>() {
            Err(_) => causes.push(StatusCause::invalid(
                "spec.ipam.gateway",
                format!("{gw:?} is not an IP address"),
            )),
            Ok(ip) => {
                if let Some(Ok(net)) = n
                    .spec
                    .ipam
                    .subnet
                    .as_ref()
                    .map(|s| s.parse::<ipnet::IpNet>())
                    && !net.contains(&ip)
                {
                    causes.push(StatusCause::invalid(
                        "spec.ipam.gateway",
                        format!("{gw} is outside the subnet {net}"),
                    ));
                }
            }
        }
    }
}

fn validate_data(kind: Kind, spec: &DataSpec, causes: &mut Vec<StatusCause>) {
    match base64::engine::general_purpose::STANDARD.decode(&spec.data) {
        Err(_) => causes.push(StatusCause::invalid("spec.data", "must be base64")),
        Ok(bytes) if bytes.len() > MAX_DATA_BYTES => causes.push(StatusCause::invalid(
            "spec.data",
            format!(
                "{kind} data is {} bytes; the limit is {MAX_DATA_BYTES}",
                bytes.len()
            ),
        )),
        Ok(_) => {}
    }
    if let Some(d) = &spec.template_driver
        && d != TEMPLATE_DRIVER_GOLANG
    {
        causes.push(StatusCause::invalid(
            "spec.templateDriver",
            format!(
                "template driver {d:?} is not supported: use \"{TEMPLATE_DRIVER_GOLANG}\" or none"
            ),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::*;

    #[test]
    fn names() {
        assert!(name_problem("voting_vote").is_none());
        assert!(name_problem("web.1.3").is_none());
        assert!(name_problem("").is_some());
        assert!(name_problem("-web").is_some());
        assert!(name_problem("web/x").is_some());
        assert!(name_problem(&"a".repeat(254)).is_some());
    }

    #[test]
    fn service_without_image_names_the_field() {
        let svc = Service::new("web", ServiceSpec::default());
        let causes = validate(&AnyObject::Service(Box::new(svc)));
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].field, "spec.taskTemplate.container.image");
    }

    #[test]
    fn every_bad_field_is_reported() {
        let mut spec = ServiceSpec::default();
        spec.update_config.max_failure_ratio = 2.0;
        spec.endpoint.ports = vec![
            PortConfig {
                target_port: 80,
                published_port: Some(8080),
                ..Default::default()
            },
            PortConfig {
                target_port: 81,
                published_port: Some(8080),
                ..Default::default()
            },
        ];
        let mut svc = Service::new("bad name", spec);
        svc.spec.task_template.placement.constraints = vec!["node.role=manager".into()];
        let causes = validate(&AnyObject::Service(Box::new(svc)));
        let fields: Vec<_> = causes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "metadata.name",
                "spec.taskTemplate.container.image",
                "spec.updateConfig.maxFailureRatio",
                "spec.endpoint.ports[1].publishedPort",
                "spec.taskTemplate.placement.constraints[0]",
            ]
        );
    }

    #[test]
    fn dnsrr_cannot_publish_through_the_mesh() {
        let mut svc = Service::new("web", ServiceSpec::default());
        svc.spec.task_template.container.image = "nginx".into();
        svc.spec.endpoint.mode = EndpointMode::Dnsrr;
        svc.spec.endpoint.ports = vec![
            PortConfig {
                target_port: 80,
                publish_mode: PublishMode::Host,
                ..Default::default()
            },
            PortConfig {
                target_port: 81,
                ..Default::default()
            },
        ];
        let causes = validate(&AnyObject::Service(Box::new(svc.clone())));
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].field, "spec.endpoint.ports[1].publishMode");
        assert!(causes[0].message.contains("dnsrr"), "{}", causes[0].message);
        // Host-mode ports only: fine.
        svc.spec.endpoint.ports.pop();
        assert!(validate(&AnyObject::Service(Box::new(svc))).is_empty());
    }

    #[test]
    fn network_subnet_and_gateway() {
        let mut n = Network::new("net", NetworkSpec::default());
        n.spec.ipam.subnet = Some("10.0.9.0/24".into());
        n.spec.ipam.gateway = Some("10.0.8.1".into());
        let causes = validate(&AnyObject::Network(n));
        assert_eq!(causes.len(), 1);
        assert!(causes[0].message.contains("outside"));
    }

    #[test]
    fn secret_data_must_be_base64() {
        let s = Secret::new(
            "pw",
            DataSpec {
                data: "not base64!".into(),
                template_driver: None,
            },
        );
        assert_eq!(validate(&AnyObject::Secret(s))[0].field, "spec.data");
    }

    #[test]
    fn only_the_golang_template_driver() {
        let c = |driver: &str| {
            AnyObject::Config(Config::new(
                "site",
                DataSpec {
                    data: String::new(),
                    template_driver: Some(driver.into()),
                },
            ))
        };
        assert!(validate(&c("golang")).is_empty());
        let causes = validate(&c("jinja"));
        assert_eq!(causes[0].field, "spec.templateDriver");
        assert_eq!(
            causes[0].message,
            "template driver \"jinja\" is not supported: use \"golang\" or none"
        );
    }
}
