//! `swarm node ls|inspect|ps|update|promote|demote|rm`: docker's node commands.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Context as _;
use swarm_api::{Node, NodeRole, NodeState, Task};
use swarm_client::ListParams;

use crate::cmd::service::ps::TaskListFlags;
use crate::cmd::{inspect_json, service::parse};
use crate::connect::{ConnectArgs, block_on};
use crate::output::{self, columns::wire, humanize};
use crate::view::node::{self as view, hostname, local_hostname};
use crate::{filter, leader, lookup};

#[derive(clap::Args, Debug)]
pub struct NodeArgs {
    #[command(subcommand)]
    pub command: NodeCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum NodeCommand {
    /// List nodes (`*` marks this machine).
    #[command(
        alias = "list",
        after_help = "Examples:\n  swarm node ls\n  swarm node ls --filter role=manager -q\n  swarm node ls --format '{{.Hostname}} {{.Availability}}'"
    )]
    Ls {
        #[arg(short, long)]
        quiet: bool,
        /// Go-template-style format, e.g. '{{.Hostname}} {{.Status}}' or '{{json .}}'.
        #[arg(long)]
        format: Option<String>,
        /// Filter: role=manager|worker, name=PREFIX, availability=active|pause|drain, id=PREFIX,
        /// node.label=KEY[=VALUE], label=KEY[=VALUE] (engine labels).
        #[arg(short, long, value_name = "KEY=VALUE")]
        filter: Vec<String>,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Show nodes in detail.
    #[command(
        after_help = "Examples:\n  swarm node inspect --pretty node-1\n  swarm node inspect -f '{{.status.addr}}' node-1"
    )]
    Inspect {
        #[arg(required = true)]
        nodes: Vec<String>,
        /// Print a human-readable summary instead of JSON.
        #[arg(long)]
        pretty: bool,
        #[arg(short, long)]
        format: Option<String>,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// List the tasks on nodes (default: this machine's node).
    #[command(
        after_help = "Examples:\n  swarm node ps node-1\n  swarm node ps --filter desired-state=running node-1 node-2"
    )]
    Ps {
        nodes: Vec<String>,
        #[command(flatten)]
        flags: TaskListFlags,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Change a node's availability, role or labels.
    #[command(
        after_help = "Examples:\n  swarm node update --availability drain node-2\n  swarm node update --label-add zone=east --label-rm old node-1"
    )]
    Update {
        node: String,
        /// active, pause or drain.
        #[arg(long, value_parser = ["active", "pause", "drain"])]
        availability: Option<String>,
        /// worker or manager.
        #[arg(long, value_parser = ["worker", "manager"])]
        role: Option<String>,
        /// Add or change a label, KEY=VALUE.
        #[arg(long, value_name = "KEY=VALUE")]
        label_add: Vec<String>,
        /// Remove a label.
        #[arg(long, value_name = "KEY")]
        label_rm: Vec<String>,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Make nodes managers.
    #[command(after_help = "Example:\n  swarm node promote node-2")]
    Promote {
        #[arg(required = true)]
        nodes: Vec<String>,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Make managers workers.
    #[command(after_help = "Example:\n  swarm node demote node-2")]
    Demote {
        #[arg(required = true)]
        nodes: Vec<String>,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Remove nodes that are down (--force: also ones that are not).
    #[command(alias = "remove", after_help = "Example:\n  swarm node rm node-3")]
    Rm {
        #[arg(required = true)]
        nodes: Vec<String>,
        #[arg(short, long)]
        force: bool,
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

pub fn run(args: NodeArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        NodeCommand::Ls {
            quiet,
            format,
            filter,
            connect,
        } => {
            let client = connect.client()?;
            let (nodes, leaders) = block_on(async {
                let nodes = client
                    .list_all::<Node>(&ListParams::default())
                    .await
                    .context("cannot list nodes")?
                    .items;
                anyhow::Ok((nodes, leader::fetch_leader_nodes(&client).await?))
            })??;
            let mut kept = Vec::new();
            for n in nodes {
                if keeps(&n, &filter)? {
                    kept.push(n);
                }
            }
            let me = local_hostname();
            let listing = view::list(&kept, me.as_deref(), &leaders);
            output::emit(&listing.render(format.as_deref(), quiet)?)?;
        }
        NodeCommand::Inspect {
            nodes,
            pretty,
            format,
            connect,
        } => {
            let client = connect.client()?;
            let found = block_on(find_all(&client, &nodes))??;
            let text = if pretty {
                let leaders = block_on(leader::fetch_leader_nodes(&client))??;
                found
                    .iter()
                    .map(|n| pretty_node(n, &leaders, SystemTime::now()))
                    .collect::<Vec<_>>()
                    .join("\n")
            } else {
                inspect_json(&found, format.as_deref())?
            };
            output::emit(&text)?;
        }
        NodeCommand::Ps {
            nodes,
            flags,
            connect,
        } => {
            let client = connect.client()?;
            let nodes = if nodes.is_empty() {
                vec![local_hostname().context("cannot tell this machine's hostname: name the node, e.g. `swarm node ps node-1`")?]
            } else {
                nodes
            };
            let tasks = block_on(async {
                let mut tasks: Vec<Task> = Vec::new();
                for n in &nodes {
                    let node = lookup::find::<Node>(&client, n).await?;
                    let list = client
                        .list_all::<Task>(
                            &ListParams::default()
                                .fields(format!("spec.nodeName={}", node.metadata.name)),
                        )
                        .await
                        .with_context(|| format!("cannot list the tasks of node {n}"))?;
                    tasks.extend(list.items);
                }
                anyhow::Ok(tasks)
            })??;
            output::emit(&flags.render(&tasks)?)?;
        }
        NodeCommand::Update {
            node,
            availability,
            role,
            label_add,
            label_rm,
            connect,
        } => {
            let client = connect.client()?;
            let updated = block_on(lookup::update::<Node>(&client, &node, |n| {
                if let Some(a) = &availability {
                    n.spec.availability = parse::wire_enum(a)?;
                }
                if let Some(r) = &role {
                    n.spec.role = parse::wire_enum(r)?;
                }
                for k in &label_rm {
                    n.spec.labels.remove(k);
                }
                n.spec.labels.extend(parse::labels(&label_add));
                Ok(())
            }))??;
            output::emit(&format!("{}\n", updated.metadata.name))?;
        }
        NodeCommand::Promote { nodes, connect } => {
            return set_role(&connect, &nodes, NodeRole::Manager);
        }
        NodeCommand::Demote { nodes, connect } => {
            return set_role(&connect, &nodes, NodeRole::Worker);
        }
        NodeCommand::Rm {
            nodes,
            force,
            connect,
        } => {
            let client = connect.client()?;
            return block_on(async {
                let mut failed = false;
                for name in &nodes {
                    let result = async {
                        let n = lookup::find::<Node>(&client, name).await?;
                        if !force && n.status.state == NodeState::Ready {
                            anyhow::bail!(
                                "node {name} is not down and can't be removed; drain it first \
                                 (`swarm node update --availability drain {name}`) or use --force"
                            );
                        }
                        client.delete::<Node>(&n.metadata.name, None).await?;
                        anyhow::Ok(())
                    };
                    match result.await {
                        Ok(()) => {
                            output::emit(&format!("{name}\n"))?;
                        }
                        Err(e) => {
                            eprintln!("error: {}", output::describe_error(&e));
                            failed = true;
                        }
                    }
                }
                Ok(if failed {
                    ExitCode::FAILURE
                } else {
                    ExitCode::SUCCESS
                })
            })?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn find_all(client: &swarm_client::Client, names: &[String]) -> anyhow::Result<Vec<Node>> {
    let mut v = Vec::new();
    for n in names {
        v.push(lookup::find::<Node>(client, n).await?);
    }
    Ok(v)
}

fn set_role(connect: &ConnectArgs, nodes: &[String], role: NodeRole) -> anyhow::Result<ExitCode> {
    let client = connect.client()?;
    block_on(async {
        for name in nodes {
            let before = lookup::find::<Node>(&client, name).await?;
            let msg = match (role, before.spec.role == role) {
                (NodeRole::Manager, true) => format!("Node {name} is already a manager."),
                (NodeRole::Worker, true) => format!("Node {name} is already a worker."),
                (NodeRole::Manager, false) => {
                    format!("Node {name} promoted to a manager in the swarm.")
                }
                (NodeRole::Worker, false) => format!("Manager {name} demoted in the swarm."),
            };
            if before.spec.role != role {
                lookup::update::<Node>(&client, name, |n| {
                    n.spec.role = role;
                    Ok(())
                })
                .await?;
            }
            output::emit(&format!("{msg}\n"))?;
        }
        Ok(ExitCode::SUCCESS)
    })?
}

/// docker's node filters: role, name, availability (and id).
pub fn keeps(n: &Node, filters: &[String]) -> anyhow::Result<bool> {
    for f in filters {
        let (k, v) = filter::split(f, "role=manager")?;
        let ok = match k {
            "role" => wire(&n.spec.role) == v,
            "name" => n.metadata.name.starts_with(v) || hostname(n).starts_with(v),
            "availability" => wire(&n.spec.availability) == v,
            "id" => humanize::full_id(&n.metadata.uid).starts_with(&humanize::full_id(v)),
            "node.label" => filter::has_label(&n.spec.labels, v),
            "label" => filter::has_label(&n.status.engine.labels, v),
            _ => anyhow::bail!(
                "invalid filter {k:?}: the node filters are role, name, availability, id, \
                 node.label and label (engine labels)"
            ),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// `node inspect --pretty`, in docker's layout; `leaders` as for `node ls`.
pub fn pretty_node(n: &Node, leaders: &BTreeSet<String>, now: SystemTime) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "ID:\t\t\t{}", humanize::full_id(&n.metadata.uid));
    let _ = writeln!(o, "Name:\t\t\t{}", n.metadata.name);
    if !n.spec.labels.is_empty() {
        o.push_str("Labels:\n");
        for (k, v) in &n.spec.labels {
            let _ = writeln!(
                o,
                " - {k}{}",
                if v.is_empty() {
                    String::new()
                } else {
                    format!("={v}")
                }
            );
        }
    }
    let _ = writeln!(o, "Hostname:              \t{}", hostname(n));
    let _ = writeln!(
        o,
        "Joined at:             \t{}",
        humanize::ago(n.metadata.creation_timestamp.as_ref(), now)
    );
    let _ = writeln!(
        o,
        "Status:\n State:\t\t\t{}",
        humanize::pretty(&wire(&n.status.state))
    );
    if !n.status.message.is_empty() {
        let _ = writeln!(o, " Message:              \t{}", n.status.message);
    }
    let _ = writeln!(
        o,
        " Availability:         \t{}",
        humanize::pretty(&wire(&n.spec.availability))
    );
    if !n.status.addr.is_empty() {
        let _ = writeln!(o, " Address:\t\t{}", n.status.addr);
    }
    if n.spec.role == NodeRole::Manager {
        let status = view::manager_status(n, leaders);
        let _ = writeln!(
            o,
            "Manager Status:\n Address:\t\t{}\n Raft Status:\t\t{}",
            n.status.addr,
            if status == "Leader" {
                "Reachable"
            } else {
                status
            }
        );
        let leads = if status == "Leader" { "Yes" } else { "No" };
        let _ = writeln!(o, " Leader:\t\t{leads}");
    }
    let p = &n.status.platform;
    let _ = writeln!(
        o,
        "Platform:\n Operating System:\t{}\n Architecture:\t\t{}",
        p.os, p.architecture
    );
    let r = &n.status.resources;
    let mem = if r.memory_bytes > 0 {
        humanize::bytes_size(r.memory_bytes as f64)
    } else {
        String::new()
    };
    let _ = writeln!(
        o,
        "Resources:\n CPUs:\t\t\t{}\n Memory:\t\t{mem}",
        r.nano_cpus / 1_000_000_000
    );
    let _ = writeln!(o, "Engine Version:\t\t{}", n.status.engine.engine_version);
    if !n.status.engine.labels.is_empty() {
        o.push_str("Engine Labels:\n");
        for (k, v) in &n.status.engine.labels {
            let _ = writeln!(o, " - {k}={v}");
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::fixtures::{ago, now};
    use serde_json::json;

    fn node() -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": "node-1", "uid": "11111111-0000-4000-8000-000000000000",
                         "creationTimestamp": ago(7200)},
            "spec": {"role": "manager", "labels": {"zone": "east"}},
            "status": {"state": "ready", "addr": "10.0.0.1", "hostname": "node-1",
                       "resources": {"nanoCpus": 4000000000u64, "memoryBytes": 8589934592u64},
                       "engine": {"engineVersion": "27.3.1"},
                       "platform": {"os": "linux", "architecture": "x86_64"}}
        }))
        .unwrap()
    }

    #[test]
    fn golden_node_pretty() {
        let leaders = BTreeSet::from(["node-1".to_string()]);
        assert_eq!(
            pretty_node(&node(), &leaders, now()),
            "ID:\t\t\t11111111000040008000000000000000
Name:\t\t\tnode-1
Labels:
 - zone=east
Hostname:              \tnode-1
Joined at:             \t2 hours ago
Status:
 State:\t\t\tReady
 Availability:         \tActive
 Address:\t\t10.0.0.1
Manager Status:
 Address:\t\t10.0.0.1
 Raft Status:\t\tReachable
 Leader:\t\tYes
Platform:
 Operating System:\tlinux
 Architecture:\t\tx86_64
Resources:
 CPUs:\t\t\t4
 Memory:\t\t8GiB
Engine Version:\t\t27.3.1
"
        );
        let follower = pretty_node(&node(), &BTreeSet::new(), now());
        assert!(
            follower.contains(" Raft Status:\t\tReachable\n Leader:\t\tNo\n"),
            "{follower}"
        );
    }

    #[test]
    fn filters() {
        let n = node();
        assert!(keeps(&n, &["role=manager".into(), "name=node".into()]).unwrap());
        assert!(!keeps(&n, &["availability=drain".into()]).unwrap());
        assert!(keeps(&n, &["node.label=zone=east".into()]).unwrap());
        assert!(!keeps(&n, &["node.label=zone=west".into()]).unwrap());
        assert!(!keeps(&n, &["label=zone".into()]).unwrap(), "engine labels");
        assert!(keeps(&n, &["bogus=1".into()]).is_err());
    }
}
