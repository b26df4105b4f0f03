//! The registry: typed create/read/update/delete/list of objects on top of the raw `Store`.
//!
//! Writes happen in two steps, so that single-object endpoints, transactions and stack apply
//! share every rule:
//!
//! 1. **Plan** (pure): given what is stored now and what the client sent, decide what to write
//!    — a `Planned` create, update, delete or *nothing* — applying the API conventions:
//!    * `uid`, `creationTimestamp`, `generation` (1) are set on create; `status` is ignored on
//!      create and on a main-resource update, `spec` and `metadata` on a `/status` update;
//!    * `generation` is bumped only when `spec` changes;
//!    * a write whose result equals what is stored is a no-op: nothing is written, so the
//!      `resourceVersion` stays and no watch event fires (kube-apiserver skips byte-identical
//!      writes the same way);
//!    * a client `resourceVersion` that is stale is a 409 Conflict;
//!    * deleting an object with finalizers only sets `deletionTimestamp`; the update that
//!      removes the last finalizer of such an object deletes it;
//!    * validation (`swarm_api::validation`) and admission (`admission`) run on the result.
//! 2. **Commit**: the planned writes become one store transaction, each conditional on the
//!    `mod_revision` that was read, so a concurrent writer makes the commit fail instead of
//!    being silently overwritten. Single-object writes without a client precondition re-read
//!    and re-plan on such a conflict (kube's `GuaranteedUpdate`).
//!
//! `resourceVersion` is never stored: it is the key's `mod_revision`, stamped on every read.

use std::sync::Arc;

use base64::Engine;
use serde::{Deserialize, Serialize};
use swarm_api::selector::{FieldSelector, LabelSelector};
use swarm_api::{AnyObject, Kind, StatusCause, Timestamp, validation};

use crate::admission::admit_update;
use crate::codec::{decode_kv, encode, parse_revision};
use crate::errors::{ApiError, ApiResult};
use crate::store::{KeyValue, ListOptions, Revision, Store, StoreError, TxnOp};
use crate::watch_cache::WatchCache;

/// How many times a write without a client precondition is retried after losing a race.
const MAX_RETRIES: usize = 5;

/// Which part of an object a write may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subresource {
    /// `PUT /v1/<plural>/<name>`: spec and metadata; status is ignored.
    Main,
    /// `PUT /v1/<plural>/<name>/status`: status only.
    Status,
}

/// One decided write. `obj` is the object as it will be (or is) stored.
#[derive(Clone, Debug, PartialEq)]
pub enum Planned {
    Create {
        obj: AnyObject,
    },
    Update {
        obj: AnyObject,
        expected: Revision,
    },
    Delete {
        obj: AnyObject,
        expected: Revision,
    },
    /// Nothing to write; `obj` is the stored object.
    Noop {
        obj: AnyObject,
    },
}

impl Planned {
    pub fn object(&self) -> &AnyObject {
        match self {
            Planned::Create { obj }
            | Planned::Update { obj, .. }
            | Planned::Delete { obj, .. }
            | Planned::Noop { obj } => obj,
        }
    }

    /// The store operation, or `None` for a no-op.
    pub fn to_op(&self) -> Option<TxnOp> {
        match self {
            Planned::Create { obj } => Some(TxnOp::Create {
                key: obj.kind().key(obj.name()),
                value: encode(obj),
            }),
            Planned::Update { obj, expected } => Some(TxnOp::Update {
                key: obj.kind().key(obj.name()),
                value: encode(obj),
                expected: Some(*expected),
            }),
            Planned::Delete { obj, expected } => Some(TxnOp::Delete {
                key: obj.kind().key(obj.name()),
                expected: Some(*expected),
            }),
            Planned::Noop { .. } => None,
        }
    }

    /// The object as the client sees it after a commit at `revision`.
    fn committed(self, revision: Revision) -> AnyObject {
        match self {
            Planned::Noop { obj } => obj,
            Planned::Create { mut obj }
            | Planned::Update { mut obj, .. }
            | Planned::Delete { mut obj, .. } => {
                obj.meta_mut().resource_version = revision.to_string();
                obj
            }
        }
    }
}

/// Replaces `target`'s top-level field `part` (`spec` or `status`) with `source`'s.
fn with_part(target: &AnyObject, part: &str, source: &AnyObject) -> ApiResult<AnyObject> {
    let mut v = target.to_value();
    let from = source.to_value().get(part).cloned();
    if let Some(map) = v.as_object_mut() {
        match from {
            Some(p) => map.insert(part.to_string(), p),
            None => map.remove(part),
        };
    }
    crate::codec::from_value(target.kind(), v)
}

/// Gives `to` the status of `from` (the same kind; kinds without a status are left alone).
/// Typed, where `with_part` goes through JSON: this runs on every update.
fn copy_status(to: &mut AnyObject, from: &AnyObject) {
    match (to, from) {
        (AnyObject::Node(t), AnyObject::Node(f)) => t.status = f.status.clone(),
        (AnyObject::Network(t), AnyObject::Network(f)) => t.status = f.status.clone(),
        (AnyObject::Service(t), AnyObject::Service(f)) => t.status = f.status.clone(),
        (AnyObject::Task(t), AnyObject::Task(f)) => t.status = f.status.clone(),
        (AnyObject::GitSync(t), AnyObject::GitSync(f)) => t.status = f.status.clone(),
        _ => {}
    }
}

/// Whether two objects of one kind have equal specs.
fn same_spec(a: &AnyObject, b: &AnyObject) -> bool {
    match (a, b) {
        (AnyObject::Node(a), AnyObject::Node(b)) => a.spec == b.spec,
        (AnyObject::Network(a), AnyObject::Network(b)) => a.spec == b.spec,
        (AnyObject::Secret(a), AnyObject::Secret(b)) => a.spec == b.spec,
        (AnyObject::Config(a), AnyObject::Config(b)) => a.spec == b.spec,
        (AnyObject::Service(a), AnyObject::Service(b)) => a.spec == b.spec,
        (AnyObject::Task(a), AnyObject::Task(b)) => a.spec == b.spec,
        (AnyObject::Lease(a), AnyObject::Lease(b)) => a.spec == b.spec,
        (AnyObject::GitSync(a), AnyObject::GitSync(b)) => a.spec == b.spec,
        _ => false,
    }
}

fn check_valid(obj: &AnyObject) -> ApiResult<()> {
    let causes = validation::validate(obj);
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(obj.kind(), obj.name(), causes))
    }
}

fn check_precondition(new: &AnyObject, current: &AnyObject) -> ApiResult<()> {
    if let Some(rv) = parse_revision(&new.meta().resource_version)?
        && rv.to_string() != current.meta().resource_version
    {
        return Err(ApiError::stale(new.kind(), new.name()));
    }
    Ok(())
}

/// Plans creating `new`, given what is stored under its name.
pub fn plan_create(current: Option<&AnyObject>, new: AnyObject) -> ApiResult<Planned> {
    let kind = new.kind();
    if current.is_some() {
        return Err(ApiError::already_exists(kind, new.name()));
    }
    // Status is not the creator's to set: start from the kind's default status.
    let mut obj = if kind.has_status() {
        let blank = crate::codec::from_value(
            kind,
            serde_json::json!({"kind": kind.name(), "metadata": {"name": new.name()}}),
        )?;
        with_part(&new, "status", &blank)?
    } else {
        new
    };
    let meta = obj.meta_mut();
    meta.resource_version.clear();
    meta.uid = uuid::Uuid::new_v4().to_string();
    meta.creation_timestamp = Some(Timestamp::now());
    meta.deletion_timestamp = None;
    meta.generation = 1;
    check_valid(&obj)?;
    Ok(Planned::Create { obj })
}

/// Plans replacing the stored object with `new` (main resource or `/status`).
pub fn plan_update(
    current: Option<&AnyObject>,
    new: AnyObject,
    sub: Subresource,
) -> ApiResult<Planned> {
    let kind = new.kind();
    let Some(current) = current else {
        return Err(ApiError::not_found(kind, new.name()));
    };
    check_precondition(&new, current)?;
    let mut obj = match sub {
        Subresource::Main => {
            let mut new = new;
            // Secret data is write-only over the API (handlers::redact): a write that carries
            // none keeps what is stored.
            if let (AnyObject::Secret(stored), AnyObject::Secret(n)) = (current, &mut new)
                && n.spec.data.is_empty()
            {
                n.spec.data = stored.spec.data.clone();
            }
            let mut obj = new;
            copy_status(&mut obj, current);
            // Server-managed metadata comes from the stored object.
            let (cm, m) = (current.meta(), obj.meta_mut());
            m.uid = cm.uid.clone();
            m.creation_timestamp = cm.creation_timestamp;
            m.deletion_timestamp = cm.deletion_timestamp;
            m.generation = cm.generation;
            if !same_spec(&obj, current) {
                obj.meta_mut().generation += 1;
            }
            obj
        }
        Subresource::Status => {
            if !kind.has_status() {
                return Err(ApiError::not_found(kind, new.name()));
            }
            let mut obj = current.clone();
            copy_status(&mut obj, &new);
            obj
        }
    };
    obj.meta_mut().resource_version = current.meta().resource_version.clone();
    admit_update(current, &obj)?;
    check_valid(&obj)?;
    let expected = revision_of(current)?;
    // Equal as stored (`resourceVersion`, not stored, was made equal above).
    if obj == *current {
        return Ok(Planned::Noop {
            obj: current.clone(),
        });
    }
    if obj.meta().deletion_timestamp.is_some() && obj.meta().finalizers.is_empty() {
        return Ok(Planned::Delete { obj, expected });
    }
    Ok(Planned::Update { obj, expected })
}

/// Plans deleting the stored object, honouring a client precondition and finalizers.
pub fn plan_delete(
    kind: Kind,
    name: &str,
    current: Option<&AnyObject>,
    precondition: Option<Revision>,
) -> ApiResult<Planned> {
    let Some(current) = current else {
        return Err(ApiError::not_found(kind, name));
    };
    let expected = revision_of(current)?;
    if precondition.is_some_and(|p| p != expected) {
        return Err(ApiError::stale(kind, name));
    }
    if current.meta().finalizers.is_empty() {
        return Ok(Planned::Delete {
            obj: current.clone(),
            expected,
        });
    }
    if current.meta().deletion_timestamp.is_some() {
        return Ok(Planned::Noop {
            obj: current.clone(),
        });
    }
    let mut obj = current.clone();
    obj.meta_mut().deletion_timestamp = Some(Timestamp::now());
    Ok(Planned::Update { obj, expected })
}

fn revision_of(obj: &AnyObject) -> ApiResult<Revision> {
    parse_revision(&obj.meta().resource_version)?
        .ok_or_else(|| ApiError::internal("stored object without a revision"))
}

/// What a list request asks for.
#[derive(Clone, Debug, Default)]
pub struct ListQuery {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    /// At most this many items (0: all).
    pub limit: usize,
    /// The token from the previous page.
    pub continue_token: Option<String>,
}

impl ListQuery {
    pub fn matches(&self, obj: &AnyObject) -> bool {
        self.labels.matches(&obj.meta().labels) && self.fields.matches(obj)
    }
}

/// One page of a list.
#[derive(Clone, Debug)]
pub struct ObjectList {
    pub kind: Kind,
    pub revision: Revision,
    pub continue_token: Option<String>,
    pub items: Vec<AnyObject>,
}

impl ObjectList {
    /// The wire form: `{"apiVersion","kind":"<Kind>List","metadata":{…},"items":[…]}`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut metadata = serde_json::json!({"resourceVersion": self.revision.to_string()});
        if let Some(c) = &self.continue_token {
            metadata["continue"] = c.clone().into();
        }
        serde_json::json!({
            "apiVersion": swarm_api::API_VERSION,
            "kind": format!("{}List", self.kind.name()),
            "metadata": metadata,
            "items": self.items,
        })
    }
}

/// The opaque `continue` token: the list's revision and the last key read.
#[derive(Serialize, Deserialize)]
struct ContinueToken {
    rev: Revision,
    start: String,
}

fn encode_token(rev: Revision, start: &str) -> String {
    let json = serde_json::json!({"rev": rev, "start": start}).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
}

fn decode_token(token: &str, kind: Kind) -> ApiResult<ContinueToken> {
    let bad = || ApiError::bad_request(format!("invalid continue token {token:?}"));
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let t: ContinueToken = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    if !t.start.starts_with(&kind.key_prefix()) {
        return Err(bad());
    }
    Ok(t)
}

/// Typed access to the objects in a store.
#[derive(Clone)]
pub struct Registry {
    store: Arc<dyn Store>,
    /// Where single-object writes take their first guess of the stored object (see `write_one`).
    cache: Option<WatchCache>,
}

impl Registry {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Registry { store, cache: None }
    }

    /// Lets single-object writes plan against the watch cache's copy of the object instead of
    /// reading the store first; the commit's revision check still decides (see `write_one`).
    pub fn with_cache(mut self, cache: WatchCache) -> Self {
        self.cache = Some(cache);
        self
    }

    /// The watch cache's copy of an object, if this registry has a cache and it holds one.
    fn cached(&self, kind: Kind, name: &str) -> Option<AnyObject> {
        let cache = self.cache.as_ref()?;
        cache.kind(kind).get_cached(name).map(|o| o.obj.clone())
    }

    /// What a write to `name` may plan against before reading the store (see `write_one`):
    /// the watch cache's copy, when there is one and it is the revision `precondition` names
    /// (without a precondition, any). `None`: no usable guess; plan against a store read.
    pub fn guess(
        &self,
        kind: Kind,
        name: &str,
        precondition: Option<Revision>,
    ) -> Option<Option<AnyObject>> {
        self.cached(kind, name)
            .filter(|c| precondition.is_none_or(|p| c.meta().resource_version == p.to_string()))
            .map(Some)
    }

    /// Plans one write: against `guess` if there is one (`Some(None)`: assume absent), else
    /// against a store read. A plan that the guess refuses or finds a no-op is decided again on
    /// a store read, since a refusal from a stale copy may be wrong and no commit would check
    /// a no-op. Any other plan from a guess is checked by the commit, which is conditional on
    /// the revision planned against (a create on the key's absence): a stale guess fails it
    /// exactly as a concurrent writer would.
    ///
    /// The outer error is a failed store read; the inner one, the plan's refusal.
    pub async fn plan<F>(
        &self,
        kind: Kind,
        name: &str,
        guess: Option<Option<AnyObject>>,
        plan: F,
    ) -> ApiResult<ApiResult<Planned>>
    where
        F: Fn(Option<&AnyObject>) -> ApiResult<Planned>,
    {
        if let Some(g) = guess
            && let Ok(p) = plan(g.as_ref())
            && !matches!(p, Planned::Noop { .. })
        {
            return Ok(Ok(p));
        }
        Ok(plan(self.read(kind, name).await?.as_ref()))
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The stored object, or `None`.
    pub async fn read(&self, kind: Kind, name: &str) -> ApiResult<Option<AnyObject>> {
        match self.store.get(&kind.key(name)).await? {
            Some(kv) => Ok(Some(decode_kv(kind, &kv)?)),
            None => Ok(None),
        }
    }

    pub async fn get(&self, kind: Kind, name: &str) -> ApiResult<AnyObject> {
        self.read(kind, name)
            .await?
            .ok_or_else(|| ApiError::not_found(kind, name))
    }

    /// Commits planned writes in one transaction. On failure, the error carries the index of
    /// the plan whose operation failed.
    pub async fn commit(
        &self,
        plans: Vec<Planned>,
    ) -> Result<(Revision, Vec<AnyObject>), (Option<usize>, StoreError)> {
        let mut ops = Vec::new();
        let mut op_plan = Vec::new();
        for (i, p) in plans.iter().enumerate() {
            if let Some(op) = p.to_op() {
                ops.push(op);
                op_plan.push(i);
            }
        }
        let revision = if ops.is_empty() {
            self.store.current_revision().await.map_err(|e| (None, e))?
        } else {
            match self.store.txn(ops).await {
                Ok(r) => r.revision,
                Err(StoreError::Txn { index, source }) => {
                    return Err((op_plan.get(index).copied(), *source));
                }
                Err(e) => return Err((None, e)),
            }
        };
        let objs = plans.into_iter().map(|p| p.committed(revision)).collect();
        Ok((revision, objs))
    }

    /// Runs read → plan → commit for one object, retrying on a lost race unless the client
    /// gave a precondition (then the race is the client's to resolve).
    ///
    /// `guess` is what the first attempt plans against instead of reading the store (`Some(None)`:
    /// assume absent): the watch cache's copy, or nothing for a create. It is safe because the
    /// commit is conditional on the revision planned against (a create on the key's absence): a
    /// wrong guess fails the commit exactly as a concurrent writer would, and then
    /// * with a client precondition, that failure is the right answer (the key's revision is not
    ///   the one the client named, or the key exists);
    /// * without one, the write is re-planned against a store read.
    ///
    /// A guess that plans to write nothing is checked against a store read, since no commit
    /// would check it.
    async fn write_one<F>(
        &self,
        kind: Kind,
        name: &str,
        guarded: bool,
        mut guess: Option<Option<AnyObject>>,
        plan: F,
    ) -> ApiResult<(AnyObject, Planned)>
    where
        F: Fn(Option<&AnyObject>) -> ApiResult<Planned>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let planned = self.plan(kind, name, guess.take(), &plan).await??;
            let decided = planned.clone();
            match self.commit(vec![planned]).await {
                Ok((_, mut objs)) => {
                    let obj = objs
                        .pop()
                        .ok_or_else(|| ApiError::internal("commit returned no object"))?;
                    return Ok((obj, decided));
                }
                Err((
                    _,
                    e @ (StoreError::Conflict { .. }
                    | StoreError::NotFound { .. }
                    | StoreError::AlreadyExists { .. }),
                )) if !guarded && attempt < MAX_RETRIES => {
                    tracing::debug!(%kind, name, error = %e, "write lost a race; retrying");
                }
                Err((_, e)) => return Err(ApiError::from_store(kind, name, e)),
            }
        }
    }

    /// Creates `obj`. No read first: the store's create fails if the name is taken.
    pub async fn create(&self, obj: AnyObject) -> ApiResult<AnyObject> {
        let (kind, name) = (obj.kind(), obj.name().to_string());
        let (obj, _) = self
            .write_one(kind, &name, true, Some(None), |cur| {
                plan_create(cur, obj.clone())
            })
            .await?;
        Ok(obj)
    }

    /// Replaces the object (main resource or status), planning first against the watch
    /// cache's copy when it is the revision the client names (or, without a precondition, any).
    pub async fn update(&self, obj: AnyObject, sub: Subresource) -> ApiResult<AnyObject> {
        let (kind, name) = (obj.kind(), obj.name().to_string());
        let precondition = parse_revision(&obj.meta().resource_version)?;
        let guarded = precondition.is_some();
        let guess = self.guess(kind, &name, precondition);
        let (obj, _) = self
            .write_one(kind, &name, guarded, guess, |cur| {
                plan_update(cur, obj.clone(), sub)
            })
            .await?;
        Ok(obj)
    }

    /// Deletes (or marks for deletion, with finalizers). Returns the object and whether it
    /// is gone now.
    pub async fn delete(
        &self,
        kind: Kind,
        name: &str,
        precondition: Option<Revision>,
    ) -> ApiResult<(AnyObject, bool)> {
        let (obj, planned) = self
            .write_one(kind, name, precondition.is_some(), None, |cur| {
                plan_delete(kind, name, cur, precondition)
            })
            .await?;
        Ok((obj, matches!(planned, Planned::Delete { .. })))
    }

    /// One page of objects of `kind`, read at one revision across pages.
    pub async fn list(&self, kind: Kind, q: &ListQuery) -> ApiResult<ObjectList> {
        let prefix = kind.key_prefix();
        let (mut revision, mut start) = match &q.continue_token {
            Some(t) => {
                let t = decode_token(t, kind)?;
                (t.rev, Some(t.start))
            }
            None => (0, None),
        };
        let mut items = Vec::new();
        let continue_token = loop {
            let want = if q.limit == 0 {
                0
            } else {
                q.limit - items.len()
            };
            let page = self
                .store
                .list(
                    &prefix,
                    ListOptions {
                        revision,
                        limit: want,
                        start_after: start.clone(),
                    },
                )
                .await?;
            revision = page.revision;
            for kv in &page.items {
                start = Some(kv.key.clone());
                if let Some(obj) = decode_listed(kind, kv)
                    && q.matches(&obj)
                {
                    items.push(obj);
                }
            }
            if !page.more {
                break None;
            }
            if q.limit > 0 && items.len() >= q.limit {
                break start.as_deref().map(|s| encode_token(revision, s));
            }
        };
        Ok(ObjectList {
            kind,
            revision,
            continue_token,
            items,
        })
    }
}

/// Decodes a listed value; a corrupt one is logged and skipped rather than failing the list.
fn decode_listed(kind: Kind, kv: &KeyValue) -> Option<AnyObject> {
    match decode_kv(kind, kv) {
        Ok(o) => Some(o),
        Err(e) => {
            tracing::error!(key = %kv.key, error = %e, "skipping undecodable object");
            None
        }
    }
}

/// Prefixes every cause's field with `prefix` (`objects[3]`), for batch endpoints.
pub fn prefix_causes(causes: Vec<StatusCause>, prefix: &str) -> Vec<StatusCause> {
    causes
        .into_iter()
        .map(|mut c| {
            c.field = if c.field.is_empty() {
                prefix.to_string()
            } else {
                format!("{prefix}.{}", c.field)
            };
            c
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::decode_request;
    use crate::testing::MemStore;
    use serde_json::json;
    use swarm_api::StatusReason;

    fn registry() -> Registry {
        Registry::new(Arc::new(MemStore::new()))
    }

    fn service(name: &str, image: &str) -> AnyObject {
        decode_request(
            Kind::Service,
            json!({"metadata": {"name": name},
                   "spec": {"taskTemplate": {"container": {"image": image}}}}),
            name,
        )
        .unwrap()
    }

    #[tokio::test]
    async fn create_sets_server_fields_and_ignores_status() {
        let r = registry();
        let mut v = service("web", "nginx").to_value();
        v["status"] = json!({"replicas": {"desired": 9, "running": 9}});
        let obj = crate::codec::from_value(Kind::Service, v).unwrap();
        let created = r.create(obj).await.unwrap();
        let m = created.meta();
        assert_eq!(m.generation, 1);
        assert!(!m.uid.is_empty());
        assert!(m.creation_timestamp.is_some());
        assert_eq!(m.resource_version, "1");
        assert_eq!(
            created.to_value()["status"]["replicas"]["desired"],
            json!(0)
        );
        let again = r.create(service("web", "nginx")).await.unwrap_err();
        assert_eq!(again.reason(), StatusReason::AlreadyExists);
    }

    #[tokio::test]
    async fn generation_moves_only_with_spec_and_noop_writes_nothing() {
        let r = registry();
        let created = r.create(service("web", "nginx")).await.unwrap();
        // Same object again: nothing written.
        let same = r.update(created.clone(), Subresource::Main).await.unwrap();
        assert_eq!(
            same.meta().resource_version,
            created.meta().resource_version
        );
        assert_eq!(r.store().current_revision().await.unwrap(), 1);
        // Labels change: written, generation stays.
        let mut labelled = same.clone();
        labelled.meta_mut().labels.insert("a".into(), "b".into());
        let labelled = r.update(labelled, Subresource::Main).await.unwrap();
        assert_eq!(labelled.meta().generation, 1);
        assert_eq!(labelled.meta().resource_version, "2");
        // Spec change: generation bumps.
        let mut v = labelled.to_value();
        v["spec"]["taskTemplate"]["container"]["image"] = json!("nginx:2");
        let changed = r
            .update(
                crate::codec::from_value(Kind::Service, v).unwrap(),
                Subresource::Main,
            )
            .await
            .unwrap();
        assert_eq!(changed.meta().generation, 2);
        // Status change: generation stays.
        let mut v = changed.to_value();
        v["status"]["observedGeneration"] = json!(2);
        let st = r
            .update(
                crate::codec::from_value(Kind::Service, v).unwrap(),
                Subresource::Status,
            )
            .await
            .unwrap();
        assert_eq!(st.meta().generation, 2);
        assert_eq!(st.to_value()["status"]["observedGeneration"], json!(2));
    }

    #[tokio::test]
    async fn stale_resource_version_is_a_conflict() {
        let r = registry();
        let created = r.create(service("web", "nginx")).await.unwrap();
        let mut a = created.clone();
        a.meta_mut().labels.insert("x".into(), "1".into());
        r.update(a, Subresource::Main).await.unwrap();
        let mut b = created.clone();
        b.meta_mut().labels.insert("x".into(), "2".into());
        let e = r.update(b, Subresource::Main).await.unwrap_err();
        assert_eq!(e.reason(), StatusReason::Conflict);
    }

    #[tokio::test]
    async fn finalizers_delay_deletion() {
        let r = registry();
        let mut obj = service("web", "nginx");
        obj.meta_mut().finalizers = vec!["swarm/cleanup".into()];
        r.create(obj).await.unwrap();
        let (pending, gone) = r.delete(Kind::Service, "web", None).await.unwrap();
        assert!(!gone);
        assert!(pending.meta().deletion_timestamp.is_some());
        let mut released = r.get(Kind::Service, "web").await.unwrap();
        released.meta_mut().finalizers.clear();
        r.update(released, Subresource::Main).await.unwrap();
        assert!(r.read(Kind::Service, "web").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn pagination_reads_one_snapshot() {
        let r = registry();
        for i in 0..5 {
            r.create(service(&format!("s{i}"), "nginx")).await.unwrap();
        }
        let q = ListQuery {
            limit: 2,
            ..Default::default()
        };
        let p1 = r.list(Kind::Service, &q).await.unwrap();
        assert_eq!(p1.items.len(), 2);
        // A write between pages is not seen by later pages.
        r.create(service("s9", "nginx")).await.unwrap();
        let mut names: Vec<String> = p1.items.iter().map(|o| o.name().to_string()).collect();
        let mut token = p1.continue_token.clone();
        while let Some(t) = token {
            let p = r
                .list(
                    Kind::Service,
                    &ListQuery {
                        limit: 2,
                        continue_token: Some(t),
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            assert_eq!(p.revision, p1.revision);
            names.extend(p.items.iter().map(|o| o.name().to_string()));
            token = p.continue_token;
        }
        assert_eq!(names, ["s0", "s1", "s2", "s3", "s4"]);
    }
}
