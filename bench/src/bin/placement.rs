//! Placement benchmark (issue #3): the scheduler alone, in-process, no store and no HTTP.
//!
//! Builds 1,000 ready nodes and 100,000 PENDING tasks as API objects, then times what the
//! placement controller does per pass: build the `Cluster` from the snapshot, `schedule`, and
//! apply each decision to its task (`spec.nodeName`, state ASSIGNED). Each scenario runs
//! `--runs` times (default 3) and the median is reported. `cargo run --release -p swarm-bench
//! --bin placement [-- --tasks N --nodes N --runs N]`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use swarm_api::{
    Node, NodeSpec, NodeState, PlacementPreference, Task, TaskSpec, TaskState, TaskTemplate,
};
use swarm_controllers::placement::{Cluster, Options, is_pending, schedule};

struct Scenario {
    name: &'static str,
    services: usize,
    /// Each service's tasks need `zone==<one of 4 zones>`.
    constrained: bool,
    /// Each task reserves 64 MiB and 0.01 CPU.
    reservations: bool,
    /// Spread over `node.labels.dc` (10 values).
    spread: bool,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "1 service",
        services: 1,
        constrained: false,
        reservations: false,
        spread: false,
    },
    Scenario {
        name: "100 services",
        services: 100,
        constrained: false,
        reservations: false,
        spread: false,
    },
    Scenario {
        name: "100 services, reservations",
        services: 100,
        constrained: false,
        reservations: true,
        spread: false,
    },
    Scenario {
        name: "100 services, constraint+spread+resv",
        services: 100,
        constrained: true,
        reservations: true,
        spread: true,
    },
];

fn nodes(n: usize) -> Vec<Node> {
    (0..n)
        .map(|i| {
            let labels = BTreeMap::from([
                ("zone".to_string(), format!("z{}", i % 4)),
                ("dc".to_string(), format!("dc{}", i % 10)),
            ]);
            let mut node = Node::new(
                format!("node-{i:05}"),
                NodeSpec {
                    labels,
                    ..Default::default()
                },
            );
            node.status.state = NodeState::Ready;
            node.status.hostname = node.metadata.name.clone();
            node.status.resources.memory_bytes = 64 << 30;
            node.status.resources.nano_cpus = 32_000_000_000;
            node.status.platform.os = "linux".into();
            node.status.platform.architecture = "x86_64".into();
            node
        })
        .collect()
}

fn tasks(total: usize, s: &Scenario) -> Vec<Task> {
    let per_service = total / s.services;
    let mut out = Vec::with_capacity(total);
    for svc in 0..s.services {
        let mut template = TaskTemplate::default();
        template.container.image = "swarm-examples/hello:1".into();
        if s.constrained {
            template.placement.constraints = vec![format!("node.labels.zone==z{}", svc % 4)];
        }
        if s.spread {
            template.placement.preferences = vec![PlacementPreference {
                spread: "node.labels.dc".into(),
            }];
        }
        if s.reservations {
            template.resources.reservations.memory_bytes = 64 << 20;
            template.resources.reservations.nano_cpus = 10_000_000;
        }
        let service = format!("svc-{svc:03}");
        for slot in 1..=per_service as u64 {
            let mut t = Task::new(
                format!("{service}.{slot}.1"),
                TaskSpec {
                    service: service.clone(),
                    slot: Some(slot),
                    attempt: 1,
                    service_generation: 1,
                    template: template.clone(),
                    desired_state: TaskState::Running,
                    ..Default::default()
                },
            );
            t.status.state = TaskState::Pending;
            out.push(t);
        }
    }
    out
}

/// One pass; returns the time taken and how many tasks were placed.
fn pass(nodes: &[Node], mut tasks: Vec<Task>) -> anyhow::Result<(Duration, usize)> {
    let start = Instant::now();
    let mut cluster = Cluster::build(nodes, &tasks, SystemTime::now(), Options::default());
    let (pending_idx, pending): (Vec<usize>, Vec<&Task>) = tasks
        .iter()
        .enumerate()
        .filter(|(_, t)| is_pending(t))
        .unzip();
    let out = schedule(&mut cluster, &pending);
    let decisions: Vec<(usize, usize)> = out
        .assigned
        .iter()
        .map(|a| (pending_idx[a.task], a.node))
        .collect();
    for (t, n) in &decisions {
        let task = &mut tasks[*t];
        task.spec.node_name = Some(cluster.node_name(*n).to_string());
        task.status.state = TaskState::Assigned;
        task.status.message = "scheduler assigned task to node".into();
    }
    let took = start.elapsed();
    if !out.unplaced.is_empty() {
        bail!(
            "{} tasks unplaced: {}",
            out.unplaced.len(),
            out.unplaced[0].message
        );
    }
    // Sanity: the spread is even within one task.
    let mut per_node = vec![0usize; nodes.len()];
    for (_, n) in &decisions {
        per_node[*n] += 1;
    }
    let (min, max) = (
        per_node.iter().min().copied().unwrap_or(0),
        per_node.iter().max().copied().unwrap_or(0),
    );
    if max - min > 1 {
        bail!("uneven spread: {min}..{max} tasks per node");
    }
    Ok((took, decisions.len()))
}

fn arg(args: &[String], name: &str, default: usize) -> anyhow::Result<usize> {
    match args.iter().position(|a| a == name) {
        Some(i) => args
            .get(i + 1)
            .with_context(|| format!("{name} needs a value"))?
            .parse()
            .with_context(|| format!("{name} must be a number")),
        None => Ok(default),
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let total = arg(&args, "--tasks", 100_000)?;
    let n_nodes = arg(&args, "--nodes", 1_000)?;
    let runs = arg(&args, "--runs", 3)?.max(1);
    let nodes = nodes(n_nodes);
    println!("placement: {total} tasks on {n_nodes} nodes, median of {runs} runs");
    println!(
        "{:<38} {:>9} {:>12} {:>14}",
        "scenario", "placed", "total", "tasks/s"
    );
    for s in SCENARIOS {
        let mut times = Vec::with_capacity(runs);
        let mut placed = 0;
        for _ in 0..runs {
            let input = tasks(total, s);
            let (took, n) = pass(&nodes, input).with_context(|| s.name.to_string())?;
            times.push(took);
            placed = n;
        }
        times.sort();
        let median = times[times.len() / 2];
        let rate = placed as f64 / median.as_secs_f64();
        println!(
            "{:<38} {:>9} {:>10.1}ms {:>14.0}",
            s.name,
            placed,
            median.as_secs_f64() * 1000.0,
            rate
        );
    }
    Ok(())
}
