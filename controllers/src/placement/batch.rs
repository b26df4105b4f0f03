//! Batched writes: many independent operations sent as `POST /v1/transactions` of bounded
//! size. A transaction is all-or-nothing, so when the server names the operation that failed
//! (`operations[3]: …` — a stale `resourceVersion`, an object gone), that one is set aside
//! and the rest are sent again: one loser never holds back the batch.

use futures::StreamExt;
use swarm_client::{Client, ClientError, Operation};

/// Operations per transaction: below etcd's default `--max-txn-ops` of 128, which refuses a
/// larger transaction whole (SwarmKit batches 200 changes, but its store has no such limit).
pub const BATCH: usize = 100;

/// Why one operation did not commit.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// The object changed or went away since it was read: the caller re-reads, not retries.
    #[error("lost a race: {0}")]
    Raced(String),
    /// The server refused or could not be reached; retrying later may help.
    #[error("{0}")]
    Failed(String),
}

/// The index of the operation a transaction error names.
fn failed_index(e: &ClientError) -> Option<usize> {
    let status = e.status()?;
    let from = |s: &str| -> Option<usize> {
        let rest = s.strip_prefix("operations[")?;
        rest.split(']').next()?.parse().ok()
    };
    from(&status.message).or_else(|| status.causes().iter().find_map(|c| from(&c.field)))
}

/// Transactions of one `commit` in flight at once. The store commits transactions that
/// arrive together in one sync (group commit), so a few in flight are worth several times one
/// at a time; more would only queue behind each other.
const IN_FLIGHT: usize = 4;

/// Commits `ops` in transactions of at most `BATCH`, up to `IN_FLIGHT` at once; one result per
/// operation, in order: the object as written, or why not.
pub async fn commit(
    client: &Client,
    ops: Vec<Operation>,
) -> Vec<Result<serde_json::Value, OpError>> {
    let mut results: Vec<Option<Result<serde_json::Value, OpError>>> =
        (0..ops.len()).map(|_| None).collect();
    let mut chunks: Vec<Vec<(usize, Operation)>> = Vec::new();
    for (i, op) in ops.into_iter().enumerate() {
        match chunks.last_mut() {
            Some(chunk) if chunk.len() < BATCH => chunk.push((i, op)),
            _ => chunks.push(vec![(i, op)]),
        }
    }
    let done: Vec<Vec<(usize, Result<serde_json::Value, OpError>)>> = futures::stream::iter(chunks)
        .map(|chunk| commit_chunk(client, chunk))
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    for (i, r) in done.into_iter().flatten() {
        results[i] = Some(r);
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(OpError::Failed("not sent".into()))))
        .collect()
}

/// Commits one chunk as one transaction; an operation the server names as failed is set aside
/// and the rest sent again.
async fn commit_chunk(
    client: &Client,
    chunk: Vec<(usize, Operation)>,
) -> Vec<(usize, Result<serde_json::Value, OpError>)> {
    let mut out = Vec::with_capacity(chunk.len());
    let mut live = chunk;
    while !live.is_empty() {
        let batch: Vec<Operation> = live.iter().map(|(_, op)| op.clone()).collect();
        match client.transaction(&batch).await {
            Ok(resp) => {
                let mut values = resp.results.into_iter();
                for (i, _) in live.drain(..) {
                    out.push((i, Ok(values.next().unwrap_or_default())));
                }
            }
            Err(e) => match failed_index(&e) {
                Some(k) if k < live.len() => {
                    let raced = e.is_conflict() || e.is_not_found() || e.is_already_exists();
                    let err = if raced {
                        OpError::Raced(e.to_string())
                    } else {
                        OpError::Failed(e.to_string())
                    };
                    let (i, _) = live.remove(k);
                    out.push((i, Err(err)));
                }
                _ => {
                    let msg = e.to_string();
                    for (i, _) in live.drain(..) {
                        out.push((i, Err(OpError::Failed(msg.clone()))));
                    }
                }
            },
        }
    }
    out
}

/// The `resourceVersion` as a number (the store revision), for "is this copy older" checks.
pub fn revision(rv: &str) -> u64 {
    rv.parse().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_api::{Status, StatusCause, StatusReason};

    #[test]
    fn the_failed_operation_is_read_from_the_message_or_the_causes() {
        let e = ClientError::Api(Box::new(Status::new(
            StatusReason::Conflict,
            "operations[3]: tasks \"web.1.1\" was modified",
        )));
        assert_eq!(failed_index(&e), Some(3));
        let e = ClientError::Api(Box::new(Status::invalid(
            "Transaction",
            "",
            vec![StatusCause::invalid("operations[12].object.spec", "bad")],
        )));
        assert_eq!(failed_index(&e), Some(12));
        let e = ClientError::Api(Box::new(Status::new(StatusReason::Conflict, "busy")));
        assert_eq!(failed_index(&e), None);
        assert_eq!(revision("42"), 42);
        assert_eq!(revision(""), 0);
    }
}
