//! One transaction for many independent writes, each planned against the watch cache.
//!
//! The dispatcher's status reports and heartbeats write many objects at once. Each write is
//! planned against the cache's copy; the store's revision check decides. When one of them
//! lost a race (the object changed since the cache saw it), only that one is planned again,
//! from a store read, and the transaction is sent again: a batch of 100 costs one store read
//! per lost race, not 100, and a batch never fails because other writers keep touching a few
//! of its objects. (Re-planning every item from the store on every retry, as before, cost 100
//! sequential reads per retry — seconds on etcd under load — and gave up after 5 retries:
//! heartbeats lost that way made a loaded cluster mark hundreds of healthy nodes down.)

use swarm_api::{AnyObject, Kind};

use crate::errors::{ApiError, ApiResult};
use crate::registry::{Planned, Registry};
use crate::store::StoreError;

/// Retries beyond one per item, for races lost on a store read (the object changed again).
const EXTRA_ATTEMPTS: usize = 5;

/// Commits one planned write of `kind` per item (`name` of the object, `plan` of the write
/// given its current copy), all in one transaction. Returns, per item, its plan's refusal,
/// if it was refused (a refused item is left out; a no-op writes nothing).
pub async fn commit_each<T>(
    registry: &Registry,
    kind: Kind,
    items: &[T],
    name: impl Fn(&T) -> &str,
    plan: impl Fn(&T, Option<&AnyObject>) -> ApiResult<Planned>,
    gave_up: &str,
) -> ApiResult<Vec<Option<ApiError>>> {
    let mut from_store = vec![false; items.len()];
    for _ in 0..items.len() + EXTRA_ATTEMPTS {
        let mut refused = Vec::with_capacity(items.len());
        let mut plans = Vec::with_capacity(items.len());
        // Which item each plan is for.
        let mut item_of = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let n = name(item);
            let guess = if from_store[i] {
                None
            } else {
                registry.guess(kind, n, None)
            };
            let planned = registry
                .plan(kind, n, guess, |current| plan(item, current))
                .await?;
            refused.push(match planned {
                Ok(Planned::Noop { .. }) => None,
                Ok(p) => {
                    plans.push(p);
                    item_of.push(i);
                    None
                }
                Err(e) => Some(e),
            });
        }
        match registry.commit(plans).await {
            Ok(_) => return Ok(refused),
            Err((at, StoreError::Conflict { .. } | StoreError::NotFound { .. })) => {
                match at.and_then(|p| item_of.get(p).copied()) {
                    Some(i) if !from_store[i] => from_store[i] = true,
                    // Lost on a store read already, or the store did not say which: read
                    // them all next time.
                    _ => from_store.iter_mut().for_each(|f| *f = true),
                }
            }
            Err((_, e)) => return Err(ApiError::from(e)),
        }
    }
    Err(ApiError::new(
        swarm_api::StatusReason::Conflict,
        gave_up.to_string(),
    ))
}
