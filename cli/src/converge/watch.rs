//! The wait loop: watches a service, its tasks and the nodes, keeps the latest of each, and
//! assesses after every change until the service converged and stayed so for its monitor
//! period, failed, or the time ran out.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::{StreamExt, stream::BoxStream};
use swarm_api::{Node, Resource, Service, Task, UpdateStatus};
use swarm_client::{Client, ListParams, WatchEvent};

use super::assess::{Assessment, Goal, Verdict, assess};
use super::progress::Progress;
use crate::output::humanize::human_duration;

enum Change {
    Service(WatchEvent<Service>),
    Task(WatchEvent<Task>),
    Node(WatchEvent<Node>),
}

/// The latest objects seen.
#[derive(Default)]
struct State {
    service: Option<Service>,
    tasks: BTreeMap<String, Task>,
    nodes: BTreeMap<String, Node>,
}

fn apply<T: Resource>(map: &mut BTreeMap<String, T>, ev: WatchEvent<T>) {
    match ev {
        WatchEvent::Added(o) | WatchEvent::Modified(o) => {
            map.insert(o.name().to_string(), o);
        }
        WatchEvent::Deleted(o) => {
            map.remove(o.name());
        }
        WatchEvent::Bookmark(_) | WatchEvent::Error(_) => {}
    }
}

async fn streams(
    client: &Client,
    name: &str,
) -> anyhow::Result<BoxStream<'static, anyhow::Result<Change>>> {
    let svc = client
        .watch::<Service>(
            &ListParams::default().fields(format!("metadata.name={name}")),
            None,
        )
        .await
        .context("cannot watch the service")?
        .map(|r| r.map(Change::Service).map_err(anyhow::Error::from));
    let tasks = client
        .watch::<Task>(
            &ListParams::default().fields(format!("spec.service={name}")),
            None,
        )
        .await
        .context("cannot watch the service's tasks")?
        .map(|r| r.map(Change::Task).map_err(anyhow::Error::from));
    let nodes = client
        .watch::<Node>(&ListParams::default(), None)
        .await
        .context("cannot watch the nodes")?
        .map(|r| r.map(Change::Node).map_err(anyhow::Error::from));
    Ok(futures::stream::select_all([svc.boxed(), tasks.boxed(), nodes.boxed()]).boxed())
}

/// Runs until converged (Ok) or not to be (Err with the reason).
pub async fn run(
    client: &Client,
    name: &str,
    goal: Goal,
    baseline: Option<&UpdateStatus>,
    min_generation: i64,
    timeout: Option<Duration>,
    progress: &mut Progress,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let deadline = timeout.map(|t| started + t);
    let mut last: Option<Assessment> = None;
    // Set while converged: when it began and how long it must last.
    let mut stable_since: Option<(Instant, Duration)> = None;
    'connect: loop {
        let mut state = State::default();
        let mut events = streams(client, name).await?;
        loop {
            let verify_at = stable_since.map(|(since, monitor)| since + monitor);
            let wake = match (verify_at, deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let next = match wake {
                Some(at) => tokio::select! {
                    n = events.next() => Some(n),
                    _ = tokio::time::sleep_until(at.into()) => None,
                },
                None => Some(events.next().await),
            };
            let Some(next) = next else {
                if verify_at.is_some_and(|v| Instant::now() >= v) {
                    if let Some(a) = &last {
                        progress.show(a, Some("Service converged"));
                    }
                    return Ok(());
                }
                let summary = last.as_ref().map(summary).unwrap_or_default();
                anyhow::bail!(
                    "timed out after {} waiting for service {name} to converge{summary}; \
                     see `swarm service ps {name}`",
                    human_duration(started.elapsed()).to_lowercase()
                );
            };
            let change = match next {
                None => continue 'connect,
                Some(Err(e)) => {
                    tracing::debug!("watch ended: {e:#}");
                    continue 'connect;
                }
                Some(Ok(c)) => c,
            };
            match change {
                Change::Service(WatchEvent::Deleted(_)) => {
                    anyhow::bail!("service {name} was removed while waiting for it to converge")
                }
                Change::Service(WatchEvent::Error(s))
                | Change::Task(WatchEvent::Error(s))
                | Change::Node(WatchEvent::Error(s)) => {
                    tracing::debug!("watch error: {}", s.message);
                    continue 'connect;
                }
                Change::Service(WatchEvent::Added(s) | WatchEvent::Modified(s)) => {
                    state.service = Some(s)
                }
                Change::Service(_) => {}
                Change::Task(ev) => apply(&mut state.tasks, ev),
                Change::Node(ev) => apply(&mut state.nodes, ev),
            }
            let Some(service) = state
                .service
                .as_ref()
                .filter(|s| s.metadata.generation >= min_generation)
            else {
                continue;
            };
            let tasks: Vec<Task> = state.tasks.values().cloned().collect();
            let nodes: Vec<Node> = state.nodes.values().cloned().collect();
            let a = assess(service, &tasks, &nodes, goal, baseline);
            let monitor = if goal == Goal::Rollback {
                service.spec.rollback_config.monitor.as_std()
            } else {
                service.spec.update_config.monitor.as_std()
            };
            let verify = match &a.verdict {
                Verdict::Failed(why) => {
                    progress.show(&a, None);
                    anyhow::bail!("{why}");
                }
                Verdict::Converged if monitor.is_zero() => {
                    progress.show(&a, Some("Service converged"));
                    return Ok(());
                }
                Verdict::Converged => {
                    if stable_since.is_none() {
                        stable_since = Some((Instant::now(), monitor));
                    }
                    Some(format!(
                        "Waiting {} seconds to verify that tasks are stable...",
                        monitor.as_secs().max(1)
                    ))
                }
                Verdict::Waiting => {
                    stable_since = None;
                    None
                }
            };
            if last.as_ref() != Some(&a) || verify.is_some() {
                progress.show(&a, verify.as_deref());
            }
            last = Some(a);
        }
    }
}

/// `: 2 out of 3 tasks running (3/3: pending: no suitable node)`.
fn summary(a: &Assessment) -> String {
    let stuck: Vec<String> = a
        .slots
        .iter()
        .filter(|s| s.state != Some(swarm_api::TaskState::Running))
        .take(3)
        .map(|s| {
            let state = s.state.map_or("no task yet", |st| st.as_str());
            if s.message.is_empty() {
                format!("{}: {state}", s.label)
            } else {
                format!("{}: {state}: {}", s.label, s.message)
            }
        })
        .collect();
    let mut out = format!(": {} out of {} tasks running", a.running, a.desired);
    if !stuck.is_empty() {
        out.push_str(&format!(" ({})", stuck.join("; ")));
    }
    out
}
