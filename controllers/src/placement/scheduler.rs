//! The scheduling pass: pending tasks in, node choices out.
//!
//! Tasks are grouped by `(service, serviceGeneration)` — one template, one set of filters — so
//! the O(nodes) filter pass runs once per group, not per task. The nodes that pass are arranged
//! in a tree following the spread preferences (one level per preference, one branch per label
//! value, nodes without the label in a branch of their own); each branch keeps a min-heap of its
//! children by how many tasks of the service they hold, each leaf a min-heap of nodes by
//! `(failed recently, tasks of this service, tasks overall, name)`. Placing one task walks down
//! the tree taking the smallest child at each level: O(depth · log nodes) per task. Resource,
//! host-port and replicas-per-node filters run again on the node that comes out; a node that no
//! longer fits leaves the heap for the rest of the group (within a group, room only shrinks).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use swarm_api::{PublishMode, Task};

use super::cluster::Cluster;
use super::constraint::Constraint;
use super::filter::{Demand, Rejections};

/// Task `task` (an index into the slice given to `schedule`) goes to node `node`
/// (`Cluster::node_name`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Assignment {
    pub task: usize,
    pub node: usize,
}

/// Task `task` fits nowhere; `message` says why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unplaced {
    pub task: usize,
    pub message: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub assigned: Vec<Assignment>,
    pub unplaced: Vec<Unplaced>,
}

/// Places `tasks` (all pending, see `is_pending`) on `cluster`, updating its usage as it goes.
/// Deterministic: the same input gives the same output.
pub fn schedule(cluster: &mut Cluster, tasks: &[&Task]) -> Outcome {
    let mut out = Outcome::default();
    let mut groups: BTreeMap<(&str, i64), Vec<usize>> = BTreeMap::new();
    for (i, t) in tasks.iter().enumerate() {
        if let Some(node) = t.spec.node_name.as_deref() {
            place_preassigned(cluster, i, t, node, &mut out);
        } else {
            groups
                .entry((t.spec.service.as_str(), t.spec.service_generation))
                .or_default()
                .push(i);
        }
    }
    for ((service, _), members) in groups {
        place_group(cluster, tasks, service, &members, &mut out);
    }
    out
}

fn demand_of(t: &Task) -> Result<Demand, String> {
    let tpl = &t.spec.template;
    let constraints = Constraint::parse_all(&tpl.placement.constraints)
        .map_err(|e| format!("no suitable node ({e})"))?;
    let r = &tpl.resources.reservations;
    Ok(Demand {
        constraints,
        platforms: tpl.placement.platforms.clone(),
        nano_cpus: r.nano_cpus,
        memory_bytes: r.memory_bytes,
        generic: r.generic_resources.iter().any(|g| g.value > 0),
        host_ports: t
            .spec
            .ports
            .iter()
            .filter(|p| p.publish_mode == PublishMode::Host)
            .filter_map(|p| p.published_port.map(|port| (p.protocol, port)))
            .collect(),
        max_per_node: tpl.placement.max_replicas_per_node,
    })
}

/// Global tasks come with their node: only the filters run (SwarmKit's
/// `processPreassignedTasks`).
fn place_preassigned(cluster: &mut Cluster, i: usize, t: &Task, node: &str, out: &mut Outcome) {
    let demand = match demand_of(t) {
        Ok(d) => d,
        Err(message) => {
            out.unplaced.push(Unplaced { task: i, message });
            return;
        }
    };
    let Some(n) = cluster.node_index(node) else {
        out.unplaced.push(Unplaced {
            task: i,
            message: format!("no suitable node (node {node} is not known)"),
        });
        return;
    };
    let count = cluster.usage[n].service_count(&t.spec.service);
    match demand.check(&cluster.nodes[n], &cluster.usage[n], count) {
        Ok(()) => {
            take(cluster, n, &demand);
            *cluster.usage[n]
                .per_service
                .entry(t.spec.service.clone())
                .or_default() += 1;
            out.assigned.push(Assignment { task: i, node: n });
        }
        Err(r) => {
            let mut rej = Rejections::default();
            rej.add(r);
            out.unplaced.push(Unplaced {
                task: i,
                message: rej.message(),
            });
        }
    }
}

/// Books one task of `demand` on node `n` (everything but the per-service count).
fn take(cluster: &mut Cluster, n: usize, demand: &Demand) {
    let u = &mut cluster.usage[n];
    u.nano_cpus += demand.nano_cpus;
    u.memory_bytes += demand.memory_bytes;
    u.total += 1;
    u.host_ports.extend(demand.host_ports.iter().copied());
}

/// Heap order of a node: smaller is better.
type NodeKey = (bool, u32, u32, usize);

enum Tree {
    Leaf(BinaryHeap<Reverse<NodeKey>>),
    /// Children by (tasks of the service under them, position).
    Branch(BinaryHeap<Reverse<(u32, usize)>>, Vec<Tree>),
}

/// The per-group state the tree walks over.
struct Group<'c> {
    cluster: &'c mut Cluster,
    demand: Demand,
    /// Tasks of this service per node index (only nodes that passed the filters are read).
    service_count: Vec<u32>,
    failed: Vec<bool>,
    rejections: Rejections,
}

impl Group<'_> {
    fn key(&self, n: usize) -> NodeKey {
        (
            self.failed[n],
            self.service_count[n],
            self.cluster.usage[n].total,
            n,
        )
    }

    /// Takes the best node of `tree` that still fits, booking the task on it.
    fn pick(&mut self, tree: &mut Tree) -> Option<usize> {
        match tree {
            Tree::Leaf(heap) => loop {
                let Reverse((_, _, _, n)) = heap.pop()?;
                let fits = self.demand.check_dynamic(
                    &self.cluster.nodes[n],
                    &self.cluster.usage[n],
                    self.service_count[n],
                );
                match fits {
                    Ok(()) => {
                        take(self.cluster, n, &self.demand);
                        self.service_count[n] += 1;
                        heap.push(Reverse(self.key(n)));
                        return Some(n);
                    }
                    Err(r) => self.rejections.add(r),
                }
            },
            Tree::Branch(heap, children) => loop {
                let Reverse((count, c)) = heap.pop()?;
                if let Some(n) = self.pick(&mut children[c]) {
                    heap.push(Reverse((count + 1, c)));
                    return Some(n);
                }
            },
        }
    }

    /// A tree over `nodes`, which are sorted by their label path from `level` on.
    fn build(&self, nodes: &[usize], paths: &[Vec<Option<String>>], level: usize) -> Tree {
        let depth = paths.first().map_or(0, Vec::len);
        if level >= depth {
            let heap = nodes.iter().map(|&n| Reverse(self.key(n))).collect();
            return Tree::Leaf(heap);
        }
        let mut children = Vec::new();
        let mut heap = BinaryHeap::new();
        let mut start = 0;
        while start < nodes.len() {
            let value = &paths[start][level];
            let mut end = start + 1;
            while end < nodes.len() && &paths[end][level] == value {
                end += 1;
            }
            let count: u32 = nodes[start..end]
                .iter()
                .map(|&n| self.service_count[n])
                .sum();
            heap.push(Reverse((count, children.len())));
            children.push(self.build(&nodes[start..end], &paths[start..end], level + 1));
            start = end;
        }
        Tree::Branch(heap, children)
    }
}

/// The label a spread preference names on a node: `node.labels.dc` or `engine.labels.dc`.
fn spread_value(descriptor: &str, node: &super::node::NodeView) -> Option<String> {
    let d = descriptor.trim();
    let (map, key) = if let Some(k) = d.strip_prefix("node.labels.") {
        (&node.labels, k)
    } else if let Some(k) = d.strip_prefix("engine.labels.") {
        (&node.engine_labels, k)
    } else {
        return None;
    };
    map.get(key).cloned()
}

fn place_group(
    cluster: &mut Cluster,
    tasks: &[&Task],
    service: &str,
    members: &[usize],
    out: &mut Outcome,
) {
    let first = tasks[members[0]];
    let demand = match demand_of(first) {
        Ok(d) => d,
        Err(message) => {
            out.unplaced.extend(members.iter().map(|&task| Unplaced {
                task,
                message: message.clone(),
            }));
            return;
        }
    };
    let n = cluster.len();
    let threshold = cluster.options.failure_threshold;
    let mut service_count = vec![0; n];
    let mut failed = vec![false; n];
    let mut rejections = Rejections::default();
    let mut eligible = Vec::with_capacity(n);
    for i in 0..n {
        let u = &cluster.usage[i];
        service_count[i] = u.service_count(service);
        failed[i] = threshold > 0 && u.failure_count(service) >= threshold;
        match demand.check(&cluster.nodes[i], u, service_count[i]) {
            Ok(()) => eligible.push(i),
            Err(r) => rejections.add(r),
        }
    }
    let prefs: Vec<&str> = first
        .spec
        .template
        .placement
        .preferences
        .iter()
        .map(|p| p.spread.as_str())
        .collect();
    let mut keyed: Vec<(Vec<Option<String>>, usize)> = eligible
        .iter()
        .map(|&i| {
            let path = prefs
                .iter()
                .map(|d| spread_value(d, &cluster.nodes[i]))
                .collect();
            (path, i)
        })
        .collect();
    if !prefs.is_empty() {
        keyed.sort();
    }
    let (paths, nodes): (Vec<_>, Vec<_>) = keyed.into_iter().unzip();
    let mut group = Group {
        cluster,
        demand,
        service_count,
        failed,
        rejections,
    };
    let mut tree = group.build(&nodes, &paths, 0);
    let mut placed_on = Vec::new();
    for (k, &task) in members.iter().enumerate() {
        match group.pick(&mut tree) {
            Some(node) => {
                out.assigned.push(Assignment { task, node });
                placed_on.push(node);
            }
            None => {
                let message = group.rejections.message();
                out.unplaced
                    .extend(members[k..].iter().map(|&task| Unplaced {
                        task,
                        message: message.clone(),
                    }));
                break;
            }
        }
    }
    // Write the per-service counts back, once per node touched.
    placed_on.sort_unstable();
    placed_on.dedup();
    for n in placed_on {
        let count = group.service_count[n];
        match group.cluster.usage[n].per_service.get_mut(service) {
            Some(c) => *c = count,
            None => {
                group.cluster.usage[n]
                    .per_service
                    .insert(service.to_string(), count);
            }
        }
    }
}
