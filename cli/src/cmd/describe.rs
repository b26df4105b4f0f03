//! `swarm describe KIND NAME`: one object for humans, in sections — metadata, a spec summary,
//! status, conditions, and for a service the tasks that run it.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Context as _;
use swarm_api::{AnyObject, Kind, ObjectMeta, Service, Task, Timestamp};
use swarm_client::{Client, ListParams};

use crate::connect::{ConnectArgs, block_on};
use crate::output::{self, columns, table::Table};

#[derive(clap::Args, Debug)]
pub struct DescribeArgs {
    /// The kind: service (svc), task, node (no), network (net), secret, config, lease, gitsync.
    pub kind: String,
    pub name: String,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

pub fn run(args: DescribeArgs) -> anyhow::Result<ExitCode> {
    let kind: Kind = args.kind.parse()?;
    let client = args.connect.client()?;
    let text = block_on(describe(&client, kind, &args.name))??;
    output::emit(&text)?;
    Ok(ExitCode::SUCCESS)
}

async fn describe(client: &Client, kind: Kind, name: &str) -> anyhow::Result<String> {
    let value = client
        .get_any(kind, name)
        .await
        .with_context(|| format!("cannot get {}/{name}", kind.name().to_ascii_lowercase()))?;
    let now = SystemTime::now();
    let mut out = String::new();
    let meta: ObjectMeta = serde_json::from_value(value["metadata"].clone())
        .with_context(|| format!("the apiserver sent a {kind} without valid metadata"))?;
    metadata(&mut out, kind, &meta, now);

    match AnyObject::from_value(value.clone()) {
        Ok(AnyObject::Service(s)) => {
            service(&mut out, &s);
            let tasks = client
                .list_all_any(
                    Kind::Task,
                    &ListParams::default().fields(format!("spec.service={name}")),
                )
                .await
                .context("cannot list the service's tasks")?;
            section(&mut out, "Tasks");
            if tasks.items.is_empty() {
                out.push_str("  <none>\n");
            } else {
                let mut t = Table::new(columns::header(Kind::Task, true));
                for item in &tasks.items {
                    t.add_row(columns::row(Kind::Task, item, true, now));
                }
                indent(&mut out, &t.render());
            }
        }
        Ok(AnyObject::Task(t)) => task(&mut out, &t),
        _ => {
            generic(&mut out, "Spec", value.get("spec"))?;
            let mut status = value.get("status").cloned().unwrap_or_default();
            if let Some(map) = status.as_object_mut() {
                map.remove("conditions");
            }
            generic(&mut out, "Status", Some(&status))?;
        }
    }
    conditions(&mut out, value.pointer("/status/conditions"), now);
    Ok(out)
}

fn section(out: &mut String, title: &str) {
    let _ = writeln!(out, "\n{title}:");
}

fn field(out: &mut String, indent: usize, label: &str, value: impl std::fmt::Display) {
    let pad = 18usize.saturating_sub(indent);
    let _ = writeln!(out, "{:indent$}{:<pad$}{}", "", format!("{label}:"), value);
}

fn indent(out: &mut String, text: &str) {
    for line in text.lines() {
        let _ = writeln!(out, "  {line}");
    }
}

fn none_if_empty(s: String) -> String {
    if s.is_empty() {
        "<none>".to_string()
    } else {
        s
    }
}

fn pairs<'a>(it: impl Iterator<Item = (&'a String, &'a String)>) -> String {
    none_if_empty(
        it.map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", "),
    )
}

fn metadata(out: &mut String, kind: Kind, meta: &ObjectMeta, now: SystemTime) {
    field(out, 0, "Name", &meta.name);
    field(out, 0, "Kind", kind);
    field(out, 0, "Labels", pairs(meta.labels.iter()));
    field(out, 0, "Annotations", pairs(meta.annotations.iter()));
    field(out, 0, "Created", when(&meta.creation_timestamp, now));
    if meta.deletion_timestamp.is_some() {
        field(
            out,
            0,
            "Deleting since",
            when(&meta.deletion_timestamp, now),
        );
    }
    field(out, 0, "UID", none_if_empty(meta.uid.clone()));
    field(
        out,
        0,
        "Resource version",
        none_if_empty(meta.resource_version.clone()),
    );
    field(out, 0, "Generation", meta.generation);
    if !meta.owner_references.is_empty() {
        let owners: Vec<String> = meta
            .owner_references
            .iter()
            .map(|o| format!("{}/{}", o.kind.to_ascii_lowercase(), o.name))
            .collect();
        field(out, 0, "Owners", owners.join(", "));
    }
    if !meta.finalizers.is_empty() {
        field(out, 0, "Finalizers", meta.finalizers.join(", "));
    }
}

fn when(t: &Option<Timestamp>, now: SystemTime) -> String {
    match t {
        Some(ts) => format!("{ts} ({} ago)", columns::age(t, now)),
        None => "<unknown>".to_string(),
    }
}

fn service(out: &mut String, s: &Service) {
    let spec = &s.spec;
    let c = &spec.task_template.container;
    section(out, "Spec");
    field(out, 2, "Mode", spec.mode.display_name());
    if let Some(r) = spec.replicas() {
        field(out, 2, "Replicas", r);
    }
    field(out, 2, "Image", &c.image);
    if !c.command.is_empty() {
        field(out, 2, "Command", c.command.join(" "));
    }
    if !c.args.is_empty() {
        field(out, 2, "Args", c.args.join(" "));
    }
    if !c.env.is_empty() {
        field(out, 2, "Env", pairs(c.env.iter()));
    }
    let ports: Vec<String> = spec
        .endpoint
        .ports
        .iter()
        .map(|p| {
            let published = p
                .published_port
                .map_or("auto".to_string(), |n| n.to_string());
            format!(
                "{published}->{}/{} ({})",
                p.target_port,
                columns::wire(&p.protocol),
                columns::wire(&p.publish_mode)
            )
        })
        .collect();
    field(out, 2, "Ports", none_if_empty(ports.join(", ")));
    field(out, 2, "Endpoint mode", columns::wire(&spec.endpoint.mode));
    let nets: Vec<String> = spec
        .task_template
        .networks
        .iter()
        .map(|n| {
            if n.aliases.is_empty() {
                n.target.clone()
            } else {
                format!("{} (aliases: {})", n.target, n.aliases.join(", "))
            }
        })
        .collect();
    field(out, 2, "Networks", none_if_empty(nets.join(", ")));
    let p = &spec.task_template.placement;
    if !p.constraints.is_empty() {
        field(out, 2, "Constraints", p.constraints.join(", "));
    }
    let u = &spec.update_config;
    field(
        out,
        2,
        "Update",
        format!(
            "parallelism {}, delay {}, on failure {}, monitor {}, max failure ratio {}, {}",
            u.parallelism,
            u.delay,
            columns::wire(&u.failure_action),
            u.monitor,
            u.max_failure_ratio,
            columns::wire(&u.order)
        ),
    );
    let r = &spec.task_template.restart_policy;
    field(
        out,
        2,
        "Restart",
        format!(
            "on {}, delay {}, max attempts {}",
            columns::wire(&r.condition),
            r.delay,
            if r.max_attempts == 0 {
                "unlimited".to_string()
            } else {
                r.max_attempts.to_string()
            }
        ),
    );

    let st = &s.status;
    section(out, "Status");
    field(out, 2, "Observed gen.", st.observed_generation);
    field(
        out,
        2,
        "Replicas",
        format!(
            "{} running / {} desired",
            st.replicas.running, st.replicas.desired
        ),
    );
    if let Some(u) = &st.update_status {
        let msg = if u.message.is_empty() {
            String::new()
        } else {
            format!(" ({})", u.message)
        };
        field(
            out,
            2,
            "Update",
            format!("{}{msg}", columns::wire(&u.state)),
        );
    }
    if !st.virtual_ips.is_empty() {
        let vips: Vec<String> = st
            .virtual_ips
            .iter()
            .map(|v| format!("{} {}", v.network, v.addr))
            .collect();
        field(out, 2, "Virtual IPs", vips.join(", "));
    }
}

fn task(out: &mut String, t: &Task) {
    let spec = &t.spec;
    section(out, "Spec");
    field(out, 2, "Service", &spec.service);
    if let Some(slot) = spec.slot {
        field(out, 2, "Slot", slot);
    }
    field(out, 2, "Attempt", spec.attempt);
    field(
        out,
        2,
        "Node",
        spec.node_name.as_deref().unwrap_or("<unassigned>"),
    );
    field(out, 2, "Desired state", spec.desired_state);
    field(out, 2, "Image", &spec.template.container.image);
    field(out, 2, "Service gen.", spec.service_generation);
    for n in &spec.networks {
        field(
            out,
            2,
            "Network",
            format!("{} {}", n.network, n.addresses.join(", ")),
        );
    }
    let st = &t.status;
    section(out, "Status");
    field(out, 2, "State", st.state);
    if let Some(ts) = &st.timestamp {
        field(out, 2, "Since", ts);
    }
    if !st.message.is_empty() {
        field(out, 2, "Message", &st.message);
    }
    if !st.err.is_empty() {
        field(out, 2, "Error", &st.err);
    }
    if !st.container_id.is_empty() {
        field(out, 2, "Container", &st.container_id);
    }
    if let Some(code) = st.exit_code {
        field(out, 2, "Exit code", code);
    }
    if let Some(h) = &st.health {
        field(out, 2, "Health", columns::wire(h));
    }
}

/// A section holding a value as indented YAML (`<none>` when empty).
fn generic(out: &mut String, title: &str, value: Option<&serde_json::Value>) -> anyhow::Result<()> {
    section(out, title);
    match value {
        Some(v) if !is_empty(v) => indent(out, &output::to_yaml(v)?),
        _ => out.push_str("  <none>\n"),
    }
    Ok(())
}

fn is_empty(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Null => true,
        serde_json::Value::Object(m) => m.is_empty(),
        _ => false,
    }
}

fn conditions(out: &mut String, value: Option<&serde_json::Value>, now: SystemTime) {
    let Some(list) = value.and_then(|v| v.as_array()).filter(|l| !l.is_empty()) else {
        return;
    };
    section(out, "Conditions");
    let mut t = Table::new(
        ["TYPE", "STATUS", "REASON", "MESSAGE", "AGE"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
    );
    for c in list {
        let s = |k: &str| c.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
        let since = c
            .get("lastTransitionTime")
            .and_then(|v| serde_json::from_value::<Timestamp>(v.clone()).ok());
        let age = if since.is_some() {
            columns::age(&since, now)
        } else {
            String::new()
        };
        t.add_row(vec![s("type"), s("status"), s("reason"), s("message"), age]);
    }
    indent(out, &t.render());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_align() {
        let mut out = String::new();
        field(&mut out, 0, "Name", "web");
        field(&mut out, 2, "Image", "nginx");
        assert_eq!(out, "Name:             web\n  Image:          nginx\n");
    }

    #[test]
    fn conditions_table() {
        let mut out = String::new();
        let v =
            serde_json::json!([{"type": "Converged", "status": "True", "reason": "AllRunning"}]);
        conditions(&mut out, Some(&v), SystemTime::now());
        assert!(out.contains("Conditions:\n  TYPE"), "{out}");
        assert!(out.contains("Converged   True     AllRunning"), "{out}");
        let mut none = String::new();
        conditions(&mut none, Some(&serde_json::json!([])), SystemTime::now());
        assert!(none.is_empty());
    }
}
