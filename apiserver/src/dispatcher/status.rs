//! Task status reports, written in batches across nodes. Within one node's request the last
//! report of a task wins; every report is planned as a `/status` write (so the registry's
//! admission refuses an observed-state regression). The `StatusWriter` then commits the
//! reports of every node that reported meanwhile together, one store transaction of up to
//! `max_ops_per_txn` operations, like the embedded store's group commit: a thousand nodes
//! reporting every 100 ms cost a few transactions a second, not thousands. A report is
//! refused — and only that report — when its task is unknown, bound to another node, or
//! would move backwards.

use std::collections::HashSet;

use swarm_api::{AnyObject, Kind, StatusReason, TaskStatus};
use swarm_proto::v1::{RefusedUpdate, TaskStatusUpdate};
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::batch;
use crate::errors::{ApiError, ApiResult};
use crate::registry::{Planned, Registry, Subresource, plan_update};

/// Batches committed at once: while they commit, new reports queue up for the next ones.
const IN_FLIGHT: usize = 4;

/// Requests waiting for the writer.
const QUEUE: usize = 1024;

/// Reports of one node, at most `max_ops` of them, and where their refusals go.
struct Job {
    node: String,
    reports: Vec<(String, TaskStatus)>,
    reply: oneshot::Sender<ApiResult<Vec<RefusedUpdate>>>,
}

/// The handle sessions send their reports through; cheap to clone. The writer task ends
/// when the last handle is dropped.
#[derive(Clone)]
pub struct StatusWriter {
    jobs: mpsc::Sender<Job>,
    max_ops: usize,
}

impl StatusWriter {
    /// Starts the writer over `registry`, committing up to `max_ops` reports per transaction.
    pub fn start(registry: Registry, max_ops: usize) -> (StatusWriter, tokio::task::AbortHandle) {
        let (writer, jobs) = StatusWriter::unstarted(max_ops);
        let task = tokio::spawn(run(registry, writer.max_ops, jobs)).abort_handle();
        (writer, task)
    }

    /// The handle and the queue the writer will take jobs from.
    fn unstarted(max_ops: usize) -> (StatusWriter, mpsc::Receiver<Job>) {
        let (jobs, rx) = mpsc::channel(QUEUE);
        let max_ops = max_ops.max(1);
        (StatusWriter { jobs, max_ops }, rx)
    }

    /// Applies `updates` from `node`; returns the refused ones.
    pub async fn apply(
        &self,
        node: &str,
        updates: Vec<TaskStatusUpdate>,
    ) -> ApiResult<Vec<RefusedUpdate>> {
        let (mut refused, parsed) = parse(updates);
        let mut replies = Vec::new();
        for chunk in parsed.chunks(self.max_ops) {
            let (reply, answer) = oneshot::channel();
            let job = Job {
                node: node.to_string(),
                reports: chunk.to_vec(),
                reply,
            };
            self.jobs.send(job).await.map_err(|_| stopped())?;
            replies.push(answer);
        }
        for answer in replies {
            refused.extend(answer.await.map_err(|_| stopped())??);
        }
        Ok(refused)
    }
}

fn stopped() -> ApiError {
    ApiError::new(
        StatusReason::ServiceUnavailable,
        "the dispatcher is shutting down; report again after registering",
    )
}

/// Latest wins: each task's last report, in first-seen order; undecodable ones are refused.
fn parse(updates: Vec<TaskStatusUpdate>) -> (Vec<RefusedUpdate>, Vec<(String, TaskStatus)>) {
    let mut order: Vec<String> = Vec::new();
    let mut latest: std::collections::HashMap<String, Vec<u8>> = Default::default();
    for u in updates {
        if latest.insert(u.task_name.clone(), u.status).is_none() {
            order.push(u.task_name);
        }
    }
    let mut refused = Vec::new();
    let mut parsed = Vec::with_capacity(order.len());
    for name in order {
        let raw = latest.remove(&name).unwrap_or_default();
        match serde_json::from_slice::<TaskStatus>(&raw) {
            Ok(s) => parsed.push((name, s)),
            Err(e) => refused.push(RefusedUpdate {
                task_name: name,
                reason: format!("invalid status: {e}"),
            }),
        }
    }
    (refused, parsed)
}

/// Takes whatever jobs are queued, up to `max_ops` reports of distinct tasks, and commits
/// them as one batch; up to `IN_FLIGHT` batches at a time.
async fn run(registry: Registry, max_ops: usize, mut jobs: mpsc::Receiver<Job>) {
    let permits = std::sync::Arc::new(Semaphore::new(IN_FLIGHT));
    let mut next: Option<Job> = None;
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let first = match next.take() {
            Some(j) => j,
            None => match jobs.recv().await {
                Some(j) => j,
                None => return,
            },
        };
        let mut tasks: HashSet<String> = first.reports.iter().map(|(n, _)| n.clone()).collect();
        let mut batch = vec![first];
        while tasks.len() < max_ops {
            let Ok(job) = jobs.try_recv() else { break };
            // A task twice in one transaction is refused by the store: the later report
            // waits for the next batch, as does a job that would overfill this one.
            if tasks.len() + job.reports.len() > max_ops
                || job.reports.iter().any(|(n, _)| tasks.contains(n))
            {
                next = Some(job);
                break;
            }
            tasks.extend(job.reports.iter().map(|(n, _)| n.clone()));
            batch.push(job);
        }
        let registry = registry.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let reports: Vec<Report<'_>> = batch
                .iter()
                .flat_map(|j| {
                    j.reports.iter().map(|(name, status)| Report {
                        node: &j.node,
                        task: name,
                        status,
                    })
                })
                .collect();
            let outcome = write_batch(&registry, &reports).await;
            drop(reports);
            let mut refusals = match outcome {
                Ok(r) => r.into_iter(),
                Err(e) => {
                    for job in batch {
                        let _ = job.reply.send(Err(e.clone()));
                    }
                    return;
                }
            };
            for job in batch {
                let mine = refusals.by_ref().take(job.reports.len()).flatten();
                let _ = job.reply.send(Ok(mine.collect()));
            }
        });
    }
}

/// One report in a batch.
struct Report<'a> {
    node: &'a str,
    task: &'a str,
    status: &'a TaskStatus,
}

/// Commits `reports` in one transaction; for each report, its refusal if it was refused.
async fn write_batch(
    registry: &Registry,
    reports: &[Report<'_>],
) -> ApiResult<Vec<Option<RefusedUpdate>>> {
    let refused = batch::commit_each(
        registry,
        Kind::Task,
        reports,
        |r| r.task,
        |r, current| plan_report(current, r.task, r.node, r.status),
        "status batch kept conflicting with other writers; retry",
    )
    .await?;
    Ok(reports
        .iter()
        .zip(refused)
        .map(|(r, e)| {
            e.map(|e| RefusedUpdate {
                task_name: r.task.to_string(),
                reason: e.status().message.clone(),
            })
        })
        .collect())
}

/// Plans `node`'s report of `status` for task `name`, given the task as stored (or cached):
/// refused when the task is unknown, bound to another node, or would move backwards.
fn plan_report(
    current: Option<&AnyObject>,
    name: &str,
    node: &str,
    status: &TaskStatus,
) -> ApiResult<Planned> {
    let Some(current) = current else {
        return Err(ApiError::new(
            StatusReason::NotFound,
            format!("task {name:?} not found"),
        ));
    };
    let AnyObject::Task(task) = current else {
        return Err(ApiError::internal("not a task"));
    };
    if task.spec.node_name.as_deref() != Some(node) {
        return Err(ApiError::new(
            StatusReason::Forbidden,
            format!("task {name:?} is not assigned to node {node:?}"),
        ));
    }
    let mut new = task.clone();
    new.status = status.clone();
    plan_update(Some(current), AnyObject::Task(new), Subresource::Status)
}

#[cfg(test)]
mod tests {
    use swarm_api::{Task, TaskSpec, TaskState};

    use super::*;
    use crate::store::Store;
    use crate::testing::LaggingCache;

    fn task(node: &str, state: TaskState) -> AnyObject {
        named("web.1.1", node, state)
    }

    fn named(name: &str, node: &str, state: TaskState) -> AnyObject {
        let mut t = Task::new(
            name,
            TaskSpec {
                service: "web".into(),
                node_name: Some(node.into()),
                ..Default::default()
            },
        );
        t.status.state = state;
        AnyObject::Task(Box::new(t))
    }

    fn report(state: TaskState) -> TaskStatusUpdate {
        report_of("web.1.1", state)
    }

    fn report_of(name: &str, state: TaskState) -> TaskStatusUpdate {
        let status = TaskStatus {
            state,
            ..Default::default()
        };
        TaskStatusUpdate {
            task_name: name.into(),
            status: serde_json::to_vec(&status).unwrap(),
        }
    }

    async fn stored(lag: &LaggingCache) -> Task {
        stored_task(lag, "web.1.1").await
    }

    async fn stored_task(lag: &LaggingCache, name: &str) -> Task {
        let kv = lag.store.get(&Kind::Task.key(name)).await.unwrap();
        match crate::codec::decode_kv(Kind::Task, &kv.unwrap()).unwrap() {
            AnyObject::Task(t) => *t,
            _ => unreachable!(),
        }
    }

    /// Reports are planned against the watch cache, but the node binding and the state order
    /// that decide are the store's: here the cache still has the task on node `b`, the store
    /// has moved it to node `a`.
    #[tokio::test]
    async fn reports_planned_on_a_stale_cache_are_decided_by_the_store() {
        let lag = LaggingCache::new().await;
        lag.put(&task("b", TaskState::Assigned), true).await;
        lag.put(&task("a", TaskState::Assigned), false).await;

        // `b` is no longer the task's node: refused, and nothing written.
        let (writer, _task) = StatusWriter::start(lag.registry.clone(), 100);
        let refused = writer
            .apply("b", vec![report(TaskState::Accepted)])
            .await
            .unwrap();
        assert_eq!(refused.len(), 1);
        assert!(
            refused[0].reason.contains("not assigned to node \"b\""),
            "{}",
            refused[0].reason
        );
        assert_eq!(stored(&lag).await.status.state, TaskState::Assigned);

        // `a` is: accepted, on top of the stored object.
        let refused = writer
            .apply("a", vec![report(TaskState::Running)])
            .await
            .unwrap();
        assert!(refused.is_empty(), "{refused:?}");
        let t = stored(&lag).await;
        assert_eq!(t.status.state, TaskState::Running);
        assert_eq!(t.spec.node_name.as_deref(), Some("a"));
    }

    /// Reports that queued up while the writer was busy — here, before it starts — are
    /// committed together: one transaction for three nodes. A second report of a task already
    /// in the batch goes to the next one (the store refuses a key twice in one transaction).
    #[tokio::test]
    async fn reports_of_several_nodes_share_one_transaction() {
        let lag = LaggingCache::new().await;
        for (name, node) in [("web.1.1", "a"), ("web.2.1", "b"), ("web.3.1", "c")] {
            lag.put(&named(name, node, TaskState::Assigned), true).await;
        }
        let before = lag.store.current_revision().await.unwrap();
        let (writer, jobs) = StatusWriter::unstarted(100);
        let mut calls = Vec::new();
        for (name, node, state) in [
            ("web.1.1", "a", TaskState::Preparing),
            ("web.2.1", "b", TaskState::Running),
            ("web.3.1", "c", TaskState::Running),
            ("web.1.1", "a", TaskState::Running),
        ] {
            let (writer, report) = (writer.clone(), report_of(name, state));
            calls.push(tokio::spawn(async move {
                writer.apply(node, vec![report]).await
            }));
            // Queued in this order.
            while jobs.len() < calls.len() {
                tokio::task::yield_now().await;
            }
        }
        tokio::spawn(run(lag.registry.clone(), 100, jobs));
        for c in calls {
            c.await.unwrap().unwrap();
        }
        // Two transactions: the first three reports, then the second one of `web.1.1`.
        assert_eq!(lag.store.current_revision().await.unwrap(), before + 2);
        let rv = |t: &Task| t.metadata.resource_version.clone();
        let (t2, t3) = (
            stored_task(&lag, "web.2.1").await,
            stored_task(&lag, "web.3.1").await,
        );
        assert_eq!(rv(&t3), rv(&t2));
        assert_eq!(t3.status.state, TaskState::Running);
        // The two batches may commit in either order; the state only moves forward.
        let t1 = stored_task(&lag, "web.1.1").await;
        assert_eq!(t1.status.state, TaskState::Running);
    }
}
