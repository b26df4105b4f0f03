//! `service ps`, `node ps`, `stack ps`:
//! `ID NAME IMAGE NODE DESIRED STATE CURRENT STATE ERROR PORTS`, a slot's earlier tasks under
//! its current one as ` \_ web.1`, times as `Running 4 minutes ago`.

use std::time::SystemTime;

use serde_json::json;
use swarm_api::Task;

use super::natural_cmp;
use crate::output::humanize::{
    ellipsis, familiar_image, full_id, human_duration, pretty, short_id,
};
use crate::output::listing::{Listing, record};

pub const FORMAT: &str = "table {{.ID}}\t{{.Name}}\t{{.Image}}\t{{.Node}}\t{{.DesiredState}}\t{{.CurrentState}}\t{{.Error}}\t{{.Ports}}";
pub const HEADERS: &[(&str, &str)] = &[
    ("ID", "ID"),
    ("Name", "NAME"),
    ("Image", "IMAGE"),
    ("Node", "NODE"),
    ("DesiredState", "DESIRED STATE"),
    ("CurrentState", "CURRENT STATE"),
    ("Error", "ERROR"),
    ("Ports", "PORTS"),
];

/// Errors longer than this are cut (without `--no-trunc`).
const MAX_ERR: usize = 30;

/// Which tasks `--filter` keeps (docker's `desired-state`, `node`, `name`, `id`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskFilter {
    pub desired_state: Vec<String>,
    pub node: Vec<String>,
    pub name: Vec<String>,
    pub id: Vec<String>,
}

impl TaskFilter {
    /// Parses `key=value` filters; the same key given twice matches either value.
    pub fn parse(filters: &[String]) -> anyhow::Result<TaskFilter> {
        let mut f = TaskFilter::default();
        for raw in filters {
            let Some((k, v)) = raw.split_once('=') else {
                anyhow::bail!(
                    "invalid filter {raw:?}: expected KEY=VALUE, e.g. desired-state=running"
                );
            };
            let v = v.to_string();
            match k {
                "desired-state" => {
                    if !matches!(
                        v.as_str(),
                        "running" | "shutdown" | "accepted" | "ready" | "complete" | "remove"
                    ) {
                        anyhow::bail!(
                            "invalid filter desired-state={v:?}: use running, shutdown, accepted, ready, complete or remove"
                        );
                    }
                    f.desired_state.push(v)
                }
                "node" => f.node.push(v),
                "name" => f.name.push(v),
                "id" => f.id.push(v),
                _ => anyhow::bail!(
                    "invalid filter {k:?}: the task filters are desired-state, node, name and id"
                ),
            }
        }
        Ok(f)
    }

    fn keeps(&self, t: &Task, name: &str) -> bool {
        let any = |vals: &[String], f: &dyn Fn(&str) -> bool| {
            vals.is_empty() || vals.iter().any(|v| f(v))
        };
        any(&self.desired_state, &|v| t.spec.desired_state.as_str() == v)
            && any(&self.node, &|v| t.spec.node_name.as_deref() == Some(v))
            && any(&self.name, &|v| {
                name.starts_with(v) || t.metadata.name.starts_with(v)
            })
            && any(&self.id, &|v| {
                full_id(&t.metadata.uid).starts_with(&full_id(v))
            })
    }
}

/// docker's task name: `<service>.<slot>`, or `<service>.<node>` for global services.
pub fn display_name(t: &Task) -> String {
    match (t.spec.slot, &t.spec.node_name) {
        (Some(slot), _) => format!("{}.{slot}", t.spec.service),
        (None, Some(node)) => format!("{}.{node}", t.spec.service),
        (None, None) => t.metadata.name.clone(),
    }
}

/// The tasks as a list: grouped by name, newest first within a slot, earlier tasks indented.
pub fn list(tasks: &[Task], filter: &TaskFilter, trunc: bool, now: SystemTime) -> Listing {
    let mut named: Vec<(String, &Task)> = tasks
        .iter()
        .map(|t| (display_name(t), t))
        .filter(|(n, t)| filter.keeps(t, n))
        .collect();
    named.sort_by(|(an, a), (bn, b)| {
        natural_cmp(an, bn).then_with(|| {
            b.metadata
                .creation_timestamp
                .cmp(&a.metadata.creation_timestamp)
                .then_with(|| b.spec.attempt.cmp(&a.spec.attempt))
        })
    });
    let mut l = Listing::new(FORMAT, HEADERS);
    let mut prev = String::new();
    for (name, t) in named {
        let shown = if name == prev {
            format!(" \\_ {name}")
        } else {
            name.clone()
        };
        prev = name;
        let image = &t.spec.template.container.image;
        l.rows.push(record([
            (
                "ID",
                json!(if trunc {
                    short_id(&t.metadata.uid)
                } else {
                    full_id(&t.metadata.uid)
                }),
            ),
            ("Name", json!(shown)),
            (
                "Image",
                json!(if trunc {
                    familiar_image(image)
                } else {
                    image.clone()
                }),
            ),
            ("Node", json!(t.spec.node_name.clone().unwrap_or_default())),
            ("DesiredState", json!(pretty(t.spec.desired_state.as_str()))),
            ("CurrentState", json!(current_state(t, now))),
            ("Error", json!(error(t, trunc))),
            ("Ports", json!(ports(t))),
        ]));
    }
    l
}

/// `Running 4 minutes ago`: the state and how long it has been in it.
pub fn current_state(t: &Task, now: SystemTime) -> String {
    let since = t
        .status
        .timestamp
        .as_ref()
        .or(t.metadata.creation_timestamp.as_ref());
    let state = pretty(t.status.state.as_str());
    match since {
        Some(ts) => format!(
            "{state} {} ago",
            human_duration(now.duration_since(ts.0).unwrap_or_default()).to_lowercase()
        ),
        None => state,
    }
}

fn error(t: &Task, trunc: bool) -> String {
    let err = if trunc {
        ellipsis(&t.status.err, MAX_ERR)
    } else {
        t.status.err.clone()
    };
    if err.is_empty() {
        err
    } else {
        format!("\"{err}\"")
    }
}

fn ports(t: &Task) -> String {
    t.status
        .ports
        .iter()
        .map(|p| {
            format!(
                "*:{}->{}/{}",
                p.published_port.unwrap_or(0),
                p.target_port,
                crate::output::columns::wire(&p.protocol)
            )
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::fixtures::{ago, now};
    use serde_json::json;

    #[allow(clippy::too_many_arguments)]
    fn task(
        name: &str,
        slot: u64,
        attempt: u64,
        node: &str,
        desired: &str,
        state: &str,
        secs: u64,
        err: &str,
    ) -> Task {
        serde_json::from_value(json!({
            "metadata": {"name": name, "uid": format!("{:08x}-aaaa-4bbb-8ccc-dddddddddddd", slot * 100 + attempt),
                         "creationTimestamp": ago(secs + 5)},
            "spec": {"service": "web", "slot": slot, "attempt": attempt, "nodeName": node,
                     "desiredState": desired,
                     "template": {"container": {"image": if attempt > 1 {"nginx:1.27"} else {"nginx:1.26"}}}},
            "status": {"state": state, "timestamp": ago(secs), "err": err}
        }))
        .unwrap()
    }

    fn tasks() -> Vec<Task> {
        vec![
            task("web.1.1", 1, 1, "node-1", "shutdown", "shutdown", 300, ""),
            task("web.1.2", 1, 2, "node-1", "running", "running", 240, ""),
            task(
                "web.2.1",
                2,
                1,
                "node-2",
                "shutdown",
                "failed",
                3000,
                "task: non-zero exit (1): the container crashed while starting",
            ),
            task("web.2.2", 2, 2, "node-2", "running", "starting", 0, ""),
            task("web.10.1", 10, 1, "node-3", "running", "running", 90, ""),
        ]
    }

    #[test]
    fn golden_service_ps() {
        let text = list(&tasks(), &TaskFilter::default(), true, now())
            .render(None, false)
            .unwrap();
        assert_eq!(
            text,
            "\
ID             NAME        IMAGE        NODE      DESIRED STATE   CURRENT STATE                     ERROR                              PORTS
00000066aaaa   web.1       nginx:1.27   node-1    Running         Running 4 minutes ago                                                
00000065aaaa    \\_ web.1   nginx:1.26   node-1    Shutdown        Shutdown 5 minutes ago                                               
000000caaaaa   web.2       nginx:1.27   node-2    Running         Starting less than a second ago                                      
000000c9aaaa    \\_ web.2   nginx:1.26   node-2    Shutdown        Failed 50 minutes ago             \"task: non-zero exit (1): the …\"   
000003e9aaaa   web.10      nginx:1.26   node-3    Running         Running about a minute ago                                           
"
        );
    }

    #[test]
    fn golden_service_ps_filters_no_trunc_quiet() {
        let f = TaskFilter::parse(&["desired-state=running".to_string()]).unwrap();
        let l = list(&tasks(), &f, false, now());
        assert_eq!(
            l.render(Some("{{.Name}} {{.CurrentState}} {{.Error}}"), false)
                .unwrap(),
            "web.1 Running 4 minutes ago \nweb.2 Starting less than a second ago \nweb.10 Running about a minute ago \n"
        );
        let f = TaskFilter::parse(&["node=node-2".to_string()]).unwrap();
        let l = list(&tasks(), &f, false, now());
        assert_eq!(
            l.render(None, true).unwrap(),
            "000000caaaaa4bbb8cccdddddddddddd\n000000c9aaaa4bbb8cccdddddddddddd\n"
        );
        assert_eq!(
            l.render(Some("{{.Error}}"), false).unwrap(),
            "\n\"task: non-zero exit (1): the container crashed while starting\"\n"
        );
        let f = TaskFilter::parse(&["id=000003e9".to_string()]).unwrap();
        assert_eq!(list(&tasks(), &f, true, now()).rows.len(), 1);
        let f = TaskFilter::parse(&["name=web.1".to_string()]).unwrap();
        // web.1 and web.10 both start with web.1, as docker's prefix match.
        assert_eq!(list(&tasks(), &f, true, now()).rows.len(), 3);
        let f = TaskFilter::parse(&["id=000003e9".to_string()]).unwrap();
        assert_eq!(
            list(&tasks(), &f, true, now())
                .render(Some("{{json .}}"), false)
                .unwrap(),
            r#"{"CurrentState":"Running about a minute ago","DesiredState":"Running","Error":"","ID":"000003e9aaaa","Image":"nginx:1.26","Name":"web.10","Node":"node-3","Ports":""}
"#
        );
    }

    #[test]
    fn bad_filters_say_what_is_allowed() {
        let err = TaskFilter::parse(&["state=running".to_string()]).unwrap_err();
        assert!(
            err.to_string().contains("desired-state, node, name and id"),
            "{err}"
        );
        let err = TaskFilter::parse(&["desired-state".to_string()]).unwrap_err();
        assert!(err.to_string().contains("KEY=VALUE"), "{err}");
    }
}
