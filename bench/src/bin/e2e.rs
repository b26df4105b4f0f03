//! End-to-end benchmark (issue #3): one replicated service of `--tasks` replicas, from the
//! create to every task RUNNING on `--nodes` simulated nodes, with every real part in one
//! process.
//!
//! The API server runs in-process over the embedded store or a real etcd (started for the run
//! by `swarm_apiserver::store::etcd_testing`), with its gRPC dispatcher on a loopback port;
//! every controller runs in-process as `swarm server` runs them (`swarm_controllers::run("all",
//! …)`, over HTTP); the nodes are the agent's `sim` runtime (`swarm_agent::run` with
//! `RuntimeKind::Sim`), registered and fed through the real dispatcher. A watch on tasks,
//! opened before the create, times the phases: every task created (replication), allocated
//! (ipam: PENDING), assigned (placement: ASSIGNED with a node) and RUNNING (agent → dispatcher).
//! The apiserver's `/metrics` before and after give the store operations and requests the run
//! cost. Then the service is deleted and the time until gc has deleted every task is reported.
//!
//! `cargo run --release -p swarm-bench --bin e2e -- --nodes 1000 --tasks 100000 --store both`
//! (also `--start-latency-ms` of the sim runtime, default 50, and `--timeout-s`, default 900).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use swarm_agent::runtime::sim::SimOptions;
use swarm_agent::{AgentOptions, RuntimeKind};
use swarm_api::{Node, NodeState, Service, ServiceMode, ServiceSpec, Task, TaskState};
use swarm_bench::{ApiServer, StoreKind, load_average, print_table};
use swarm_client::{Client, ClientConfig, ListParams, WatchEvent};
use tokio_util::sync::CancellationToken;

/// The allocator the binaries use (see `swarm`'s `main.rs`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The service the bench creates.
const SERVICE: &str = "bench";

struct Args {
    nodes: usize,
    tasks: usize,
    stores: Vec<StoreKind>,
    start_latency: Duration,
    timeout: Duration,
}

fn value<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn number(args: &[String], name: &str, default: u64) -> Result<u64> {
    match value(args, name) {
        Some(v) => v
            .parse()
            .with_context(|| format!("{name} must be a number, not {v:?}")),
        None if args.iter().any(|a| a == name) => bail!("{name} needs a value"),
        None => Ok(default),
    }
}

fn parse_args() -> Result<Args> {
    let args: Vec<String> = std::env::args().collect();
    Ok(Args {
        nodes: number(&args, "--nodes", 100)? as usize,
        tasks: number(&args, "--tasks", 10_000)? as usize,
        stores: StoreKind::parse_list(value(&args, "--store").unwrap_or("embedded"))?,
        start_latency: Duration::from_millis(number(&args, "--start-latency-ms", 50)?),
        timeout: Duration::from_secs(number(&args, "--timeout-s", 900)?),
    })
}

/// How far a task has got, as the phases of the bench.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Created = 0,
    Allocated = 1,
    Assigned = 2,
    Running = 3,
}

const PHASES: [&str; 4] = ["created", "allocated", "assigned", "running"];

fn phase(t: &Task) -> Phase {
    let s = t.status.state;
    if s == TaskState::Running {
        Phase::Running
    } else if s >= TaskState::Assigned && t.spec.node_name.is_some() {
        Phase::Assigned
    } else if s >= TaskState::Pending {
        Phase::Allocated
    } else {
        Phase::Created
    }
}

/// What the watch has seen, shared with the main task.
#[derive(Default)]
struct Progress {
    /// Task → its phase.
    tasks: HashMap<String, Phase>,
    /// Tasks that reached each phase (or a later one).
    reached: [usize; 4],
    /// When each phase was reached by every task, from the create.
    done: [Option<Duration>; 4],
    /// Task events received (ADDED/MODIFIED/DELETED).
    events: u64,
    /// Tasks that ended in a state past RUNNING (failed, rejected, …).
    failed: usize,
    /// Times the watch was resumed or re-listed.
    resumed: u32,
    /// Tasks deleted (after the service is deleted), and when the last went.
    deleted: usize,
    delete_started: Option<Instant>,
    all_deleted: Option<Duration>,
}

impl Progress {
    fn observe(&mut self, t: &Task, target: usize, since: Instant) {
        if t.spec.service != SERVICE {
            return;
        }
        if t.status.state > TaskState::Running {
            self.failed += 1;
            return;
        }
        let now = phase(t);
        let before = self.tasks.get(&t.metadata.name).copied();
        if before.is_some_and(|b| b >= now) {
            return;
        }
        self.tasks.insert(t.metadata.name.clone(), now);
        let from = before.map_or(0, |b| b as usize + 1);
        for p in from..=now as usize {
            self.reached[p] += 1;
            if self.reached[p] == target && self.done[p].is_none() {
                self.done[p] = Some(since.elapsed());
            }
        }
    }
}

/// Follows task events from `rv` into `progress` until `stop`; resumes a broken watch from the
/// last version seen, and re-lists after a 410.
async fn follow(
    client: Client,
    mut rv: String,
    progress: Arc<Mutex<Progress>>,
    target: usize,
    since: Instant,
    stop: CancellationToken,
) {
    let params = ListParams::default().bookmarks(true);
    loop {
        let stream = tokio::select! {
            _ = stop.cancelled() => return,
            s = client.watch::<Task>(&params, Some(&rv)) => s,
        };
        let mut stream = match stream {
            Ok(s) => s,
            Err(e) if e.is_gone() => {
                relist(&client, &mut rv, &progress, target, since).await;
                continue;
            }
            Err(e) => {
                eprintln!("watch failed: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        loop {
            let item = tokio::select! {
                _ = stop.cancelled() => return,
                i = stream.next() => i,
            };
            match item {
                Some(Ok(WatchEvent::Error(status))) => {
                    eprintln!("watch ended by the server: {}", status.message);
                    relist(&client, &mut rv, &progress, target, since).await;
                    break;
                }
                Some(Ok(ev)) => {
                    if let Some(v) = ev.resource_version() {
                        rv = v.to_string();
                    }
                    let mut p = progress.lock().unwrap_or_else(|e| e.into_inner());
                    match &ev {
                        WatchEvent::Deleted(t) if t.spec.service == SERVICE => {
                            p.events += 1;
                            p.deleted += 1;
                            if p.deleted == target
                                && let Some(at) = p.delete_started
                            {
                                p.all_deleted = Some(at.elapsed());
                            }
                        }
                        WatchEvent::Added(t) | WatchEvent::Modified(t) => {
                            p.events += 1;
                            p.observe(t, target, since);
                        }
                        _ => {}
                    }
                }
                Some(Err(e)) => {
                    eprintln!("watch broke: {e}; resuming");
                    break;
                }
                None => break,
            }
        }
        progress.lock().unwrap_or_else(|e| e.into_inner()).resumed += 1;
    }
}

async fn relist(
    client: &Client,
    rv: &mut String,
    progress: &Arc<Mutex<Progress>>,
    target: usize,
    since: Instant,
) {
    match client.list_all::<Task>(&ListParams::default()).await {
        Ok(list) => {
            *rv = list.resource_version.clone();
            let mut p = progress.lock().unwrap_or_else(|e| e.into_inner());
            for t in &list.items {
                p.observe(t, target, since);
            }
        }
        Err(e) => eprintln!("re-list failed: {e}"),
    }
}

/// Counters and sums from `/metrics`, by series (name and labels).
async fn scrape(url: &str) -> Result<BTreeMap<String, f64>> {
    let text = reqwest::get(format!("{url}/metrics")).await?.text().await?;
    Ok(text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.contains("_bucket{"))
        .filter_map(|l| {
            let (series, v) = l.rsplit_once(' ')?;
            Some((series.to_string(), v.parse().ok()?))
        })
        .collect())
}

/// CPU time (user + system) this process has used.
fn cpu_time() -> Duration {
    let ticks = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the command name in parentheses; utime and stime are 14 and 15.
            let rest = s.rsplit_once(')')?.1.to_string();
            let f: Vec<u64> = rest
                .split_whitespace()
                .skip(11)
                .take(2)
                .filter_map(|x| x.parse().ok())
                .collect();
            Some(f.iter().sum::<u64>())
        })
        .unwrap_or(0);
    // USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

struct Outcome {
    registered: Duration,
    /// Why the run stopped before every task was RUNNING (the figures are then up to there).
    timed_out: Option<String>,
    deleted: Option<Duration>,
    done: [Option<Duration>; 4],
    events: u64,
    resumed: u32,
    cpu: Duration,
    store_ops: Vec<(String, f64, f64)>,
    reconciles: Vec<(String, f64, f64)>,
    requests: Vec<(String, f64)>,
    load: (String, String),
}

async fn run(args: &Args, store: StoreKind) -> Result<Outcome> {
    let load_before = load_average();
    let server = ApiServer::start_with(store, true).await?;
    let dispatcher = server.dispatcher.context("the dispatcher did not start")?;
    let client = Client::from_config(&ClientConfig::single(server.url.clone()))?;

    let stop = CancellationToken::new();
    let controllers = {
        let (client, stop) = (client.clone(), stop.clone());
        tokio::spawn(async move {
            let opts = swarm_controllers::Options {
                identity: "bench".into(),
                ..swarm_controllers::Options::default()
            };
            if let Err(e) = swarm_controllers::run("all", client, opts, stop).await {
                eprintln!("controllers failed: {e}");
            }
        })
    };

    // The nodes, and wait until every one is ready.
    let agent_dir = tempfile::tempdir()?;
    let mut opts = AgentOptions::new(dispatcher.to_string(), agent_dir.path());
    opts.runtime = RuntimeKind::Sim;
    opts.node_name = Some("sim".into());
    opts.sim_nodes = args.nodes;
    opts.sim = SimOptions {
        start_latency: args.start_latency,
        ..SimOptions::default()
    };
    let (agent_stop, agent_rx) = tokio::sync::watch::channel(false);
    let agent = tokio::spawn(async move {
        if let Err(e) = swarm_agent::run(opts, agent_rx).await {
            eprintln!("agent failed: {e}");
        }
    });
    let t_reg = Instant::now();
    loop {
        let nodes = client.list_all::<Node>(&ListParams::default()).await?;
        let ready = nodes
            .items
            .iter()
            .filter(|n| n.status.state == NodeState::Ready)
            .count();
        if ready >= args.nodes {
            break;
        }
        if t_reg.elapsed() > args.timeout {
            bail!("only {ready} of {} nodes ready", args.nodes);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let registered = t_reg.elapsed();
    eprintln!(
        "{}: {} nodes ready in {:.1} s",
        store.name(),
        args.nodes,
        registered.as_secs_f64()
    );

    // Watch tasks from now on, then create the service.
    let rv = client
        .list::<Task>(&ListParams::default().limit(1))
        .await?
        .resource_version;
    let before = scrape(&server.url).await?;
    let reconciles_before = swarm_client::runtime::metrics::registry().snapshots();
    let cpu_before = cpu_time();
    let progress = Arc::new(Mutex::new(Progress::default()));
    let start = Instant::now();
    let watch_stop = CancellationToken::new();
    let watcher = tokio::spawn(follow(
        client.clone(),
        rv,
        progress.clone(),
        args.tasks,
        start,
        watch_stop.clone(),
    ));
    let mut spec = ServiceSpec {
        mode: ServiceMode::Replicated {
            replicas: args.tasks as u64,
        },
        ..ServiceSpec::default()
    };
    spec.task_template.container.image = "swarm-examples/hello:1".into();
    client.create(&Service::new(SERVICE, spec)).await?;

    let mut last_print = Instant::now();
    let result = loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (reached, done, failed) = {
            let p = progress.lock().unwrap_or_else(|e| e.into_inner());
            (p.reached, p.done, p.failed)
        };
        if done[Phase::Running as usize].is_some() {
            break Ok(());
        }
        if last_print.elapsed() >= Duration::from_secs(5) {
            last_print = Instant::now();
            eprintln!(
                "{}: {:>6.1} s  created {} allocated {} assigned {} running {} (failed {failed}) load {}",
                store.name(),
                start.elapsed().as_secs_f64(),
                reached[0],
                reached[1],
                reached[2],
                reached[3],
                load_average()
            );
        }
        if start.elapsed() > args.timeout {
            break Err(anyhow::anyhow!(
                "timed out after {:?}: created {} allocated {} assigned {} running {}",
                args.timeout,
                reached[0],
                reached[1],
                reached[2],
                reached[3]
            ));
        }
    };
    let cpu = cpu_time().saturating_sub(cpu_before);
    let after = scrape(&server.url).await?;
    // Reconciles per controller (their counters live in this process).
    let reconciles: Vec<(String, f64, f64)> = swarm_client::runtime::metrics::registry()
        .snapshots()
        .into_iter()
        .map(|(name, a)| {
            let b = reconciles_before.get(&name).copied().unwrap_or_default();
            let n = a.reconciles.saturating_sub(b.reconciles) as f64;
            let us = a.reconcile_micros.saturating_sub(b.reconcile_micros);
            (name, n, us as f64 / 1e6)
        })
        .collect();
    let load_after = load_average();

    // Then delete the service: gc deletes its tasks (the service waits on its finalizer).
    let mut deleted = None;
    if result.is_ok() {
        progress
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .delete_started = Some(Instant::now());
        client.delete::<Service>(SERVICE, None).await?;
        let t_del = Instant::now();
        let mut last_print = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let (done, n) = {
                let p = progress.lock().unwrap_or_else(|e| e.into_inner());
                (p.all_deleted, p.deleted)
            };
            if done.is_some() {
                deleted = done;
                break;
            }
            if last_print.elapsed() >= Duration::from_secs(5) {
                last_print = Instant::now();
                eprintln!(
                    "{}: {:>6.1} s after the delete: {n} tasks deleted",
                    store.name(),
                    t_del.elapsed().as_secs_f64()
                );
            }
            if t_del.elapsed() > args.timeout {
                eprintln!(
                    "{}: only {n} tasks deleted after {:?}",
                    store.name(),
                    args.timeout
                );
                break;
            }
        }
    }
    watch_stop.cancel();
    let _ = watcher.await;
    agent_stop.send_replace(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), agent).await;
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), controllers).await;
    server.stop().await?;
    // A run that timed out still reports what it cost up to there.
    let timed_out = result.err().map(|e| e.to_string());

    let delta =
        |k: &str| after.get(k).copied().unwrap_or(0.0) - before.get(k).copied().unwrap_or(0.0);
    let mut store_ops = Vec::new();
    for k in after.keys() {
        if let Some(rest) = k.strip_prefix("swarm_apiserver_store_duration_seconds_count{op=\"") {
            let op = rest.trim_end_matches("\"}");
            let sum = format!("swarm_apiserver_store_duration_seconds_sum{{op=\"{op}\"}}");
            let n = delta(k);
            if n > 0.0 {
                store_ops.push((op.to_string(), n, delta(&sum)));
            }
        }
    }
    let mut requests: BTreeMap<String, f64> = BTreeMap::new();
    for k in after.keys() {
        if let Some(rest) = k.strip_prefix("swarm_apiserver_requests_total{") {
            // verb="…",resource="…",code="…"
            let labels: Vec<&str> = rest.trim_end_matches('}').split(',').collect();
            let name = labels
                .iter()
                .filter(|l| !l.starts_with("code="))
                .map(|l| l.split('"').nth(1).unwrap_or(""))
                .collect::<Vec<_>>()
                .join(" ");
            *requests.entry(name).or_default() += delta(k);
        }
    }
    let p = progress.lock().unwrap_or_else(|e| e.into_inner());
    Ok(Outcome {
        registered,
        timed_out,
        deleted,
        done: p.done,
        events: p.events,
        resumed: p.resumed,
        cpu,
        store_ops,
        reconciles,
        requests: requests.into_iter().filter(|(_, n)| *n > 0.0).collect(),
        load: (load_before, load_after),
    })
}

fn secs(d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| format!("{:.2}", d.as_secs_f64()))
}

fn main() -> Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let args = parse_args()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut rows = Vec::new();
    let mut details = Vec::new();
    for &store in &args.stores {
        let o = rt.block_on(run(&args, store))?;
        let total = o.done[Phase::Running as usize].unwrap_or_default();
        let mut row = vec![
            store.name().to_string(),
            args.nodes.to_string(),
            args.tasks.to_string(),
            format!("{:.1}", o.registered.as_secs_f64()),
        ];
        row.extend(o.done.iter().map(|d| secs(*d)));
        row.push(match o.timed_out {
            None => format!("{:.0}", args.tasks as f64 / total.as_secs_f64()),
            Some(_) => "-".into(),
        });
        row.push(secs(o.deleted));
        row.push(format!("{:.1}", o.cpu.as_secs_f64()));
        row.push(format!("{:.2}", o.events as f64 / args.tasks as f64));
        row.push(format!("{} → {}", o.load.0, o.load.1));
        rows.push(row);
        details.push((store, o));
    }
    println!();
    let mut header = vec!["store", "nodes", "tasks", "nodes ready s"];
    header.extend(PHASES.iter().map(|p| match *p {
        "created" => "all created s",
        "allocated" => "all allocated s",
        "assigned" => "all assigned s",
        _ => "all running s",
    }));
    header.extend([
        "tasks/s",
        "all deleted s",
        "CPU s",
        "task events/task",
        "load before → after",
    ]);
    print_table(&header, &rows);
    for (store, o) in details {
        println!();
        if let Some(why) = &o.timed_out {
            println!("{}: {why}; the figures below are up to there", store.name());
        }
        println!(
            "{} — store operations and API requests from the create to all RUNNING (watch resumed {} times):",
            store.name(),
            o.resumed
        );
        let mut rows = Vec::new();
        for (op, n, sum) in &o.store_ops {
            rows.push(vec![
                format!("store {op}"),
                format!("{n:.0}"),
                format!("{:.3}", n / args.tasks as f64),
                format!("{sum:.1}"),
            ]);
        }
        for (name, n, sum) in &o.reconciles {
            rows.push(vec![
                format!("reconcile {name}"),
                format!("{n:.0}"),
                format!("{:.3}", n / args.tasks as f64),
                format!("{sum:.1}"),
            ]);
        }
        for (r, n) in &o.requests {
            rows.push(vec![
                r.clone(),
                format!("{n:.0}"),
                format!("{:.3}", n / args.tasks as f64),
                String::new(),
            ]);
        }
        print_table(&["operation", "count", "per task", "time s"], &rows);
    }
    Ok(())
}
