//! The authorization middleware of the REST routes: turns a request into an `authz::Access`
//! and refuses it with 403 when the caller's certificate identity may not do it.
//!
//! Requests over plain HTTP carry no `Peer` (the server runs without TLS) and pass; requests
//! over TLS without a certificate never get here (`tls::require_identity` answers 401).
//! Transactions are checked per operation inside their handler, where the operations are
//! decoded; everything else is decided here from the method and path, reading the stored
//! object or the node's tasks only when a node-scoped rule needs them.

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use swarm_api::{AnyObject, Kind, StatusReason, Task};
use swarm_pki::{Identity, Role};

use super::AppState;
use crate::authz::{Access, Verb, authorize};
use crate::errors::{ApiError, ApiResult};
use crate::tls::Peer;
use crate::watch_cache::Freshness;

pub async fn guard(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let who = match req.extensions().get::<Peer>() {
        Some(Peer(Some(who))) => who.clone(),
        _ => return next.run(req).await,
    };
    match check(&st, &who, req.method(), req.uri()).await {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

pub fn forbidden(message: String) -> ApiError {
    ApiError::new(StatusReason::Forbidden, message)
}

/// The value of a `spec.nodeName=X` (or `==X`) term of a `fieldSelector` query parameter.
fn node_selector(query: &str) -> Option<String> {
    let raw = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("fieldSelector="))?;
    let decoded = percent_decode(raw);
    decoded.split(',').find_map(|term| {
        let v = term
            .strip_prefix("spec.nodeName==")
            .or_else(|| term.strip_prefix("spec.nodeName="))?;
        Some(v.to_string())
    })
}

fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(hi), Some(lo)) => {
                    out.push(hi * 16 + lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The tasks assigned to `node`, for node-scoped reads of secrets, configs and networks: from
/// the watch cache's index of tasks by node, once the cache holds every write committed before
/// the request (a task assigned a moment ago counts; one moved away no longer does).
async fn tasks_on(st: &AppState, node: &str) -> ApiResult<Vec<Task>> {
    Ok(st
        .cache
        .tasks_on(node)
        .await?
        .into_iter()
        .filter_map(|o| match &o.obj {
            AnyObject::Task(t) => Some((**t).clone()),
            _ => None,
        })
        .collect())
}

/// Decides one access for `who`, loading what node-scoped rules need.
pub async fn decide(
    st: &AppState,
    who: &Identity,
    verb: Verb,
    kind: Kind,
    name: Option<&str>,
    node_sel: Option<&str>,
) -> ApiResult<()> {
    let node_scoped = who.role == Role::Worker;
    let current = match (node_scoped, kind, name) {
        (true, Kind::Task | Kind::Node, Some(name)) => st
            .cache
            .get(kind, name, Freshness::Latest)
            .await?
            .map(|o| o.obj.clone()),
        _ => None,
    };
    let tasks = match (node_scoped, kind, verb) {
        (true, Kind::Secret | Kind::Config | Kind::Network, Verb::Get) => {
            tasks_on(st, &who.id).await?
        }
        _ => Vec::new(),
    };
    let access = Access {
        verb,
        kind,
        name,
        node_selector: node_sel,
        current: current.as_ref(),
    };
    authorize(who, &access, &|_| tasks.clone()).map_err(|d| forbidden(d.0))
}

async fn check(
    st: &AppState,
    who: &Identity,
    method: &Method,
    uri: &axum::http::Uri,
) -> ApiResult<()> {
    let segments: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    let query = uri.query().unwrap_or("");
    let watching = query
        .split('&')
        .any(|kv| kv == "watch=true" || kv == "watch=1");
    let (plural, name, status) = match segments.as_slice() {
        // Checked per operation by the transaction handler.
        ["v1", "transactions"] | ["v1", "join" | "ca" | "renew"] => return Ok(()),
        ["v1", "certificates"] => {
            return if who.role == Role::Admin {
                Ok(())
            } else {
                Err(forbidden(format!(
                    "{who} may not have certificates issued: only admins may"
                )))
            };
        }
        ["v1", "join-tokens", ..] => {
            return if matches!(who.role, Role::Admin | Role::Manager) {
                Ok(())
            } else {
                Err(forbidden(format!(
                    "{who} may not see or rotate join tokens: only admins and managers may"
                )))
            };
        }
        ["v1", "stacks", _, "apply"] => {
            let allowed = matches!(who.role, Role::Admin | Role::Manager)
                || (who.role == Role::Controller && who.id == "gitops");
            return if allowed {
                Ok(())
            } else {
                Err(forbidden(format!(
                    "{} may not apply stacks: only admins and the gitops controller may",
                    who
                )))
            };
        }
        // Container logs: what any task of the cluster printed is for admins and managers.
        ["v1", "services" | "tasks", _, "logs"] => {
            return if matches!(who.role, Role::Admin | Role::Manager) {
                Ok(())
            } else {
                Err(forbidden(format!(
                    "{who} may not read container logs: only admins and managers may"
                )))
            };
        }
        ["v1", plural] => (*plural, None, false),
        ["v1", plural, name] => (*plural, Some(*name), false),
        ["v1", plural, name, "status"] => (*plural, Some(*name), true),
        // /healthz, /metrics, /openapi.json: any authenticated caller.
        _ => return Ok(()),
    };
    let Some(kind) = Kind::from_plural(plural) else {
        return Ok(()); // the router answers 404
    };
    let verb = match (method, name.is_some(), status) {
        (&Method::GET, false, _) if watching => Verb::Watch,
        (&Method::GET, false, _) => Verb::List,
        (&Method::POST, false, _) => Verb::Create,
        (&Method::GET, true, _) => Verb::Get,
        (&Method::PUT | &Method::PATCH, true, true) => Verb::UpdateStatus,
        (&Method::PUT | &Method::PATCH, true, false) => Verb::Update,
        (&Method::DELETE, true, _) => Verb::Delete,
        _ => return Ok(()), // the router answers 405
    };
    let node_sel = node_selector(query);
    decide(st, who, verb, kind, name, node_sel.as_deref()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_selectors_are_found_in_encoded_queries() {
        assert_eq!(
            node_selector("watch=true&fieldSelector=spec.nodeName%3Dnode-a").as_deref(),
            Some("node-a")
        );
        assert_eq!(
            node_selector("fieldSelector=status.state%3Drunning,spec.nodeName%3D%3Db").as_deref(),
            Some("b")
        );
        assert_eq!(node_selector("labelSelector=a%3Db"), None);
        assert_eq!(percent_decode("a%2"), "a%2");
    }
}
