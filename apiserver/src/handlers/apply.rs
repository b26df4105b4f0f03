//! `POST /v1/stacks/<name>/apply[?dryRun=true&prune=true]`: make a stack's objects be exactly
//! what the request says, atomically.
//!
//! 1. Every object is decoded (defaults applied), labelled `swarm.stack=<name>` and validated;
//!    all problems are reported together, their fields prefixed `objects[i].`.
//! 2. The current state of each object — and, with `prune`, every Service, Network, Secret and
//!    Config labelled with the stack — is read.
//! 3. References are checked: a service's networks, secrets and configs must be in the request
//!    or in the store (and not about to be pruned).
//! 4. Each object is planned as created, configured or unchanged (spec, labels and annotations
//!    equal after decoding — nothing is written for it), and the pruned ones as deleted.
//! 5. All writes go in one store transaction, each conditional on the revision read in step 2.
//!    If another writer got in between, the whole apply is re-read and re-planned (a few
//!    times). A dry run stops before the commit and answers the same results.
//!
//! A refused apply writes nothing.

use std::collections::{BTreeSet, HashSet};

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use swarm_api::meta::STACK_LABEL;
use swarm_api::selector::LabelSelector;
use swarm_api::{AnyObject, Kind, StatusCause, validation};

use super::{AppState, JsonBody, Params, flag};
use crate::codec::decode_any;
use crate::errors::{ApiError, ApiResult};
use crate::registry::{
    ListQuery, Planned, Subresource, plan_create, plan_delete, plan_update, prefix_causes,
};
use crate::store::StoreError;

const MAX_ATTEMPTS: usize = 5;

/// The kinds a stack owns and `prune` may delete.
const PRUNABLE: [Kind; 4] = [Kind::Service, Kind::Network, Kind::Secret, Kind::Config];

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplyParams {
    pub dry_run: Option<String>,
    pub prune: Option<String>,
}

/// What happened to one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Created,
    Configured,
    Unchanged,
    Pruned,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Created => "created",
            Action::Configured => "configured",
            Action::Unchanged => "unchanged",
            Action::Pruned => "pruned",
        }
    }
}

pub async fn apply(
    State(st): State<AppState>,
    Path(stack): Path<String>,
    Params(p): Params<ApplyParams>,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<serde_json::Value>> {
    let dry_run = flag(&p.dry_run, "dryRun")?;
    let prune = flag(&p.prune, "prune")?;
    let desired = decode_objects(&stack, body)?;
    for attempt in 1..=MAX_ATTEMPTS {
        let (plans, actions) = plan(&st, &stack, &desired, prune).await?;
        let results: Vec<serde_json::Value> = plans
            .iter()
            .zip(&actions)
            .map(|(p, a)| {
                serde_json::json!({
                    "kind": p.object().kind().name(),
                    "name": p.object().name(),
                    "action": a.as_str(),
                })
            })
            .collect();
        let revision = if dry_run {
            st.registry.store().current_revision().await?
        } else {
            match st.registry.commit(plans).await {
                Ok((rev, _)) => rev,
                Err((
                    _,
                    e @ (StoreError::Conflict { .. }
                    | StoreError::AlreadyExists { .. }
                    | StoreError::NotFound { .. }),
                )) if attempt < MAX_ATTEMPTS => {
                    tracing::debug!(stack, error = %e, "apply lost a race; re-planning");
                    continue;
                }
                Err((_, e)) => return Err(ApiError::from(e)),
            }
        };
        return Ok(Json(serde_json::json!({
            "stack": stack,
            "dryRun": dry_run,
            "resourceVersion": revision.to_string(),
            "results": results,
        })));
    }
    Err(ApiError::new(
        swarm_api::StatusReason::Conflict,
        format!("stack {stack:?}: apply kept conflicting with concurrent writers; try again"),
    ))
}

fn invalid(stack: &str, causes: Vec<StatusCause>) -> ApiError {
    ApiError(Box::new(swarm_api::Status::invalid("Stack", stack, causes)))
}

/// Step 1: decode, label and validate every object; report every problem at once.
fn decode_objects(stack: &str, body: serde_json::Value) -> ApiResult<Vec<AnyObject>> {
    if let Some(problem) = validation::name_problem(stack) {
        return Err(invalid(stack, vec![StatusCause::invalid("stack", problem)]));
    }
    let Some(items) = body.get("objects").and_then(|o| o.as_array()) else {
        return Err(invalid(stack, vec![StatusCause::required("objects")]));
    };
    let mut causes = Vec::new();
    let mut desired = Vec::new();
    let mut seen = HashSet::new();
    for (i, v) in items.iter().enumerate() {
        let at = format!("objects[{i}]");
        match decode_any(v.clone()) {
            Ok(mut obj) => {
                obj.meta_mut()
                    .labels
                    .insert(STACK_LABEL.to_string(), stack.to_string());
                causes.extend(prefix_causes(validation::validate(&obj), &at));
                if !seen.insert((obj.kind(), obj.name().to_string())) {
                    causes.push(StatusCause::new(
                        "FieldValueDuplicate",
                        format!("{at}.metadata.name"),
                        format!("{} {:?} appears twice", obj.kind(), obj.name()),
                    ));
                }
                desired.push(obj);
            }
            Err(e) => {
                let inner = e.status().causes().to_vec();
                if inner.is_empty() {
                    causes.push(StatusCause::invalid(at, e.status().message.clone()));
                } else {
                    causes.extend(prefix_causes(inner, &at));
                }
            }
        }
    }
    if !causes.is_empty() {
        return Err(invalid(stack, causes));
    }
    Ok(desired)
}

/// Steps 2–4: read, check references, plan.
async fn plan(
    st: &AppState,
    stack: &str,
    desired: &[AnyObject],
    prune: bool,
) -> ApiResult<(Vec<Planned>, Vec<Action>)> {
    let reg = &st.registry;
    let wanted: BTreeSet<(Kind, String)> = desired
        .iter()
        .map(|o| (o.kind(), o.name().to_string()))
        .collect();
    // Stack members to prune.
    let mut pruned = Vec::new();
    if prune {
        let q = ListQuery {
            labels: LabelSelector::parse(&format!("{STACK_LABEL}={stack}"))
                .map_err(|e| ApiError::bad_request(e.to_string()))?,
            ..Default::default()
        };
        for kind in PRUNABLE {
            for obj in reg.list(kind, &q).await?.items {
                if !wanted.contains(&(kind, obj.name().to_string())) {
                    pruned.push(obj);
                }
            }
        }
    }
    let pruned_keys: BTreeSet<(Kind, String)> = pruned
        .iter()
        .map(|o| (o.kind(), o.name().to_string()))
        .collect();
    // References.
    let mut causes = Vec::new();
    for (i, obj) in desired.iter().enumerate() {
        let AnyObject::Service(svc) = obj else {
            continue;
        };
        let short = svc
            .metadata
            .name
            .strip_prefix(&format!("{stack}_"))
            .unwrap_or(&svc.metadata.name)
            .to_string();
        let tt = &svc.spec.task_template;
        let refs = tt
            .networks
            .iter()
            .enumerate()
            .map(|(j, n)| {
                (
                    Kind::Network,
                    n.target.clone(),
                    "networks",
                    format!("spec.taskTemplate.networks[{j}].target"),
                )
            })
            .chain(tt.container.secrets.iter().enumerate().map(|(j, s)| {
                (
                    Kind::Secret,
                    s.source.clone(),
                    "secrets",
                    format!("spec.taskTemplate.container.secrets[{j}].source"),
                )
            }))
            .chain(tt.container.configs.iter().enumerate().map(|(j, c)| {
                (
                    Kind::Config,
                    c.source.clone(),
                    "configs",
                    format!("spec.taskTemplate.container.configs[{j}].source"),
                )
            }));
        for (kind, name, list, field) in refs {
            let key = (kind, name.clone());
            let present = wanted.contains(&key)
                || (!pruned_keys.contains(&key) && reg.read(kind, &name).await?.is_some());
            if !present {
                let shown = name.strip_prefix(&format!("{stack}_")).unwrap_or(&name);
                causes.push(StatusCause::new(
                    "FieldValueNotFound",
                    format!("objects[{i}].{field}"),
                    format!(
                        "{} {shown:?} not found: create it or remove it from services.{short}.{list}",
                        kind.name().to_ascii_lowercase()
                    ),
                ));
            }
        }
    }
    if !causes.is_empty() {
        return Err(invalid(stack, causes));
    }
    // Plans.
    let mut plans = Vec::new();
    let mut actions = Vec::new();
    for (i, obj) in desired.iter().enumerate() {
        let at = format!("objects[{i}]");
        let current = reg.read(obj.kind(), obj.name()).await?;
        let (planned, action) = match &current {
            None => (plan_create(None, obj.clone()), Action::Created),
            Some(cur) if unchanged(cur, obj) => {
                (Ok(Planned::Noop { obj: cur.clone() }), Action::Unchanged)
            }
            Some(cur) => {
                // Apply owns spec, labels and annotations; the rest stays as stored.
                let mut next = obj.clone();
                let m = next.meta_mut();
                m.resource_version.clear();
                m.finalizers = cur.meta().finalizers.clone();
                m.owner_references = cur.meta().owner_references.clone();
                (
                    plan_update(Some(cur), next, Subresource::Main),
                    Action::Configured,
                )
            }
        };
        let planned = planned.map_err(|e| e.in_context(&at))?;
        let action = match planned {
            Planned::Noop { .. } => Action::Unchanged,
            _ => action,
        };
        plans.push(planned);
        actions.push(action);
    }
    for obj in pruned {
        let planned = plan_delete(obj.kind(), obj.name(), Some(&obj), None)?;
        plans.push(planned);
        actions.push(Action::Pruned);
    }
    Ok((plans, actions))
}

/// Spec, labels and annotations equal (defaults were applied when both were decoded).
fn unchanged(current: &AnyObject, desired: &AnyObject) -> bool {
    let (c, d) = (current.to_value(), desired.to_value());
    c.get("spec") == d.get("spec")
        && current.meta().labels == desired.meta().labels
        && current.meta().annotations == desired.meta().annotations
}
