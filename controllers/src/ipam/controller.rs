//! The ipam controller: the pure plans of `plan` and `subnet` carried out as transactions.
//!
//! One `Controller<Task>`: a task's key is its name; networks and services are keyed
//! `network/<name>` and `service/<name>` (object names cannot contain `/`). A network change
//! also wakes the NEW tasks and the services that wait on it; a claim marker change wakes its
//! holder and everything still waiting for a subnet or a port. NEW → PENDING writes are
//! queued and sent in batched transactions by one more key, `FLUSH`. See the module
//! documentation of `ipam` for why no interleaving of two ipam processes can hand out one
//! address twice.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use ipnet::Ipv4Net;
use swarm_api::meta::ConditionStatus;
use swarm_api::{
    Condition, Lease, LeaseSpec, Network, PortProtocol, Service, Task, TaskState, Timestamp,
};
use swarm_client::runtime::watcher::Config;
use swarm_client::runtime::{
    Action, Change, Controller, ControllerConfig, ReconcileError, Store, Trigger,
};
use swarm_client::{Client, ClientError, Operation};
use tokio_util::sync::CancellationToken;

use super::ledger::{Owner, parse_owner};
use super::plan::{self, TaskPlan};
use super::{ALLOCATED, ingress, ports, subnet};
use crate::Options;
use crate::placement::batch::{self, OpError, revision};

/// The key that sends the queued NEW → PENDING writes.
pub const FLUSH: &str = "~flush";

/// The key that makes sure an ingress network exists (queued once when ipam starts).
pub const INGRESS: &str = "~ingress";

/// SwarmKit's message for a task that has its resources.
pub const PENDING_MESSAGE: &str = "pending task scheduling";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Api {
        what: String,
        #[source]
        source: ClientError,
    },
    #[error("cannot encode {what}: {source}")]
    Encode {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("moving tasks to pending: {0}")]
    Flush(String),
}

/// Conflicts (a lost CAS) are found in the `source()` chain and retried promptly.
impl ReconcileError for Error {}

fn api(what: impl Into<String>) -> impl FnOnce(ClientError) -> Error {
    let what = what.into();
    move |source| Error::Api { what, source }
}

fn enc(what: &str) -> impl FnOnce(serde_json::Error) -> Error + '_ {
    move |source| Error::Encode {
        what: what.to_string(),
        source,
    }
}

pub struct Ctx {
    pub client: Client,
    pub tasks: Store<Task>,
    pub networks: Store<Network>,
    pub services: Store<Service>,
    pub leases: Store<Lease>,
    trigger: Trigger,
    /// The newest copy of each network this process wrote (the cache may lag our writes).
    fresh: Mutex<HashMap<String, Arc<Network>>>,
    /// Serializes this process's allocations on one network (another process is kept out by
    /// the store, not by this).
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// NEW → PENDING status writes waiting for the next `FLUSH`.
    to_pending: Mutex<HashMap<String, Task>>,
    /// Where networks that ask for no subnet get theirs.
    pool: ipnet::Ipv4Net,
}

impl Ctx {
    /// The newer of the cached and the last written copy of a network.
    fn network(&self, name: &str) -> Option<Arc<Network>> {
        let cached = self.networks.get(name);
        let fresh = self
            .fresh
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned();
        match (cached, fresh) {
            (Some(c), Some(f)) => {
                let newer = revision(&f.metadata.resource_version)
                    > revision(&c.metadata.resource_version)
                    && f.metadata.uid == c.metadata.uid;
                Some(if newer { f } else { c })
            }
            (c, _) => c,
        }
    }

    fn remember(&self, n: Network) {
        self.fresh
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(n.metadata.name.clone(), Arc::new(n));
    }

    fn lock_of(&self, network: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(network.to_string())
            .or_default()
            .clone()
    }

    /// Re-reads networks after losing a race, so the retry starts from the winner's ledger.
    async fn refresh(&self, names: &[String]) {
        for n in names {
            if let Ok(net) = self.client.get::<Network>(n).await {
                self.remember(net);
            }
        }
    }
}

fn network_key(name: &str) -> String {
    format!("network/{name}")
}

fn service_key(name: &str) -> String {
    format!("service/{name}")
}

pub fn controller(client: Client, opts: &Options) -> (Controller<Task>, Arc<Ctx>) {
    let config = ControllerConfig {
        concurrency: opts.concurrency,
        ..ControllerConfig::default()
    };
    let mut c = opts.controller::<Task>("ipam", client.clone(), config);
    // A task gives ipam work while it is NEW (to allocate) and once it has ended or is gone
    // (to release); the steps in between (PENDING … RUNNING) wake nothing.
    c.filter_primary(|t: &Task, change| {
        change == Change::Deleted
            || t.status.state == TaskState::New
            || t.status.state.is_terminal()
    });
    let tasks = c.store();
    let services = c.watches(Config::default(), |s: &Service| {
        vec![service_key(&s.metadata.name)]
    });
    let (t2, s2) = (tasks.clone(), services.clone());
    let networks = c.watches(Config::default(), move |n: &Network| {
        let name = n.metadata.name.as_str();
        let mut keys = vec![network_key(name)];
        let uses =
            |nets: &[swarm_api::NetworkAttachmentConfig]| nets.iter().any(|a| a.target == name);
        keys.extend(
            t2.filter(|t| t.status.state == TaskState::New && uses(&t.spec.template.networks))
                .iter()
                .map(|t| t.metadata.name.clone()),
        );
        keys.extend(
            s2.filter(|s| {
                uses(&s.spec.task_template.networks) || (n.spec.ingress && ingress::publishes(s))
            })
            .iter()
            .map(|s| service_key(&s.metadata.name)),
        );
        keys
    });
    let (n3, s3) = (networks.clone(), services.clone());
    let leases = c.watches(Config::default(), move |l: &Lease| {
        let name = l.metadata.name.as_str();
        if !name.starts_with("ipam-") {
            return Vec::new();
        }
        let holder = l.spec.holder_identity.as_str();
        let mut keys = Vec::new();
        if let Some((n, _)) = subnet::holder_network(holder) {
            keys.push(network_key(n));
        }
        if let Some((s, _)) = ports::holder_service(holder) {
            keys.push(service_key(s));
        }
        // Whatever still waits for a subnet or a port may fit now.
        keys.extend(
            n3.filter(|n| n.status.subnet.is_empty())
                .iter()
                .map(|n| network_key(&n.metadata.name)),
        );
        keys.extend(
            s3.filter(|s| {
                s.status
                    .conditions
                    .iter()
                    .any(|c| c.type_ == ALLOCATED && c.status == ConditionStatus::False)
            })
            .iter()
            .map(|s| service_key(&s.metadata.name)),
        );
        keys
    });
    let ctx = Arc::new(Ctx {
        client,
        trigger: c.trigger(),
        tasks,
        networks,
        services,
        leases,
        fresh: Mutex::new(HashMap::new()),
        locks: Mutex::new(HashMap::new()),
        to_pending: Mutex::new(HashMap::new()),
        pool: opts.default_addr_pool,
    });
    c.trigger().enqueue(INGRESS);
    (c, ctx)
}

/// Runs the ipam controller until `stop` (without leader election: that is `crate::run`'s).
pub async fn run(client: Client, opts: Options, stop: CancellationToken) {
    let (c, ctx) = controller(client, &opts);
    c.run(reconcile, ctx, stop).await;
}

pub async fn reconcile(key: String, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if key == FLUSH {
        flush(&ctx).await
    } else if key == INGRESS {
        ensure_ingress(&ctx).await
    } else if let Some(n) = key.strip_prefix("network/") {
        reconcile_network(n, &ctx).await
    } else if let Some(s) = key.strip_prefix("service/") {
        reconcile_service(s, &ctx).await
    } else {
        reconcile_task(&key, &ctx).await
    }
}

/// Sets condition `type_` (keeping its transition time when the status does not change).
fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    ok: bool,
    reason: &str,
    message: &str,
    generation: i64,
) {
    let status = if ok {
        ConditionStatus::True
    } else {
        ConditionStatus::False
    };
    let previous = conditions.iter().position(|c| c.type_ == type_);
    let since = previous
        .and_then(|i| {
            let c = &conditions[i];
            (c.status == status).then_some(c.last_transition_time)
        })
        .flatten()
        .or_else(|| Some(Timestamp::now()));
    let c = Condition {
        type_: type_.to_string(),
        status,
        reason: reason.to_string(),
        message: message.to_string(),
        last_transition_time: since,
        observed_generation: generation,
    };
    match previous {
        Some(i) => conditions[i] = c,
        None => conditions.push(c),
    }
}

fn marker(name: String, holder: String) -> Lease {
    Lease::new(
        name,
        LeaseSpec {
            holder_identity: holder,
            ..Default::default()
        },
    )
}

/// Claim markers currently in the cache: subnet blocks and ports, with their holders.
fn claims(
    ctx: &Ctx,
) -> (
    HashMap<Ipv4Net, String>,
    HashMap<(PortProtocol, u16), String>,
) {
    let mut blocks = HashMap::new();
    let mut ports_taken = HashMap::new();
    for l in ctx.leases.state() {
        let holder = l.spec.holder_identity.clone();
        if let Some(b) = subnet::parse_marker(&l.metadata.name) {
            blocks.insert(b, holder);
        } else if let Some(p) = ports::parse_marker(&l.metadata.name) {
            ports_taken.insert(p, holder);
        }
    }
    (blocks, ports_taken)
}

/// Creates `ingress` unless a network is marked ingress already (see `ingress`).
async fn ensure_ingress(ctx: &Ctx) -> Result<Action, Error> {
    if let Some(n) = ingress::find(&ctx.networks.state()) {
        tracing::debug!(network = %n.metadata.name, "ingress network present");
        return Ok(Action::await_change());
    }
    if ctx.networks.get(ingress::NAME).is_some() {
        tracing::warn!(
            "network {:?} exists but is not marked ingress: services publishing ports in \
             ingress mode get no ingress VIP until a network is marked ingress",
            ingress::NAME
        );
        return Ok(Action::await_change());
    }
    let (blocks, _) = claims(ctx);
    let net = ingress::network(ctx.pool, &blocks);
    match ctx.client.create(&net).await {
        Ok(_) => {
            tracing::info!(subnet = ?net.spec.ipam.subnet, "created the ingress network");
            Ok(Action::await_change())
        }
        Err(e) if e.is_already_exists() => Ok(Action::await_change()),
        Err(e) => Err(api("creating the ingress network")(e)),
    }
}

async fn reconcile_network(name: &str, ctx: &Ctx) -> Result<Action, Error> {
    release_markers(ctx, |holder| {
        subnet::holder_network(holder).is_some_and(|(n, _)| n == name)
    })
    .await?;
    let Some(net) = ctx.network(name) else {
        return Ok(Action::await_change());
    };
    if net.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    if net.status.subnet.is_empty() {
        allocate_subnet(&net, ctx).await?;
        return Ok(Action::await_change());
    }
    release_addresses(&net, ctx).await?;
    Ok(Action::await_change())
}

async fn allocate_subnet(net: &Network, ctx: &Ctx) -> Result<(), Error> {
    let name = net.metadata.name.clone();
    let (blocks, _) = claims(ctx);
    let generation = net.metadata.generation;
    let mut out = net.clone();
    match subnet::choose(net, &blocks, ctx.pool) {
        Ok(claim) => {
            out.status.subnet = claim.subnet.to_string();
            out.status.gateway = claim.gateway.to_string();
            out.status.observed_generation = generation;
            set_condition(
                &mut out.status.conditions,
                ALLOCATED,
                true,
                "Allocated",
                "",
                generation,
            );
            let holder = subnet::holder(net);
            let mut ops = Vec::new();
            for b in &claim.blocks {
                if blocks.get(b) != Some(&holder) {
                    let m = marker(subnet::marker_name(*b), holder.clone());
                    ops.push(Operation::create(&m).map_err(enc(&name))?);
                }
            }
            ops.push(Operation::update_status(&out).map_err(enc(&name))?);
            let resp = ctx
                .client
                .transaction(&ops)
                .await
                .map_err(api(format!("subnet {} for network {name}", claim.subnet)))?;
            if let Some(v) = resp.results.last()
                && let Ok(written) = serde_json::from_value::<Network>(v.clone())
            {
                ctx.remember(written);
            }
            tracing::info!(network = %name, subnet = %claim.subnet, "allocated subnet");
        }
        Err(e) => {
            // Reported on the object; retried when claims change (a marker event), not blindly.
            set_condition(
                &mut out.status.conditions,
                ALLOCATED,
                false,
                e.reason(),
                &e.to_string(),
                generation,
            );
            out.status.observed_generation = generation;
            if out.status != net.status {
                ctx.client
                    .replace_status(&out)
                    .await
                    .map_err(api(format!("status of network {name}")))?;
            }
        }
    }
    Ok(())
}

/// Removes ledger entries whose owners, read afresh, no longer hold them.
async fn release_addresses(net: &Network, ctx: &Ctx) -> Result<(), Error> {
    let name = net.metadata.name.as_str();
    let candidates = plan::release_candidates(net, |t| ctx.tasks.get(t), |s| ctx.services.get(s));
    if candidates.is_empty() {
        return Ok(());
    }
    let mut confirmed = Vec::new();
    for (addr, owner) in candidates {
        let holds = match parse_owner(&owner) {
            Some(Owner::Task(t)) => match ctx.client.get::<Task>(t).await {
                Ok(t) => plan::task_holds(&t, name, &addr),
                Err(e) if e.is_not_found() => false,
                Err(e) => return Err(api(format!("task {t}"))(e)),
            },
            Some(Owner::Service(s)) => match ctx.client.get::<Service>(s).await {
                Ok(s) => plan::service_holds(&s, name, &addr),
                Err(e) if e.is_not_found() => false,
                Err(e) => return Err(api(format!("service {s}"))(e)),
            },
            None => true,
        };
        if !holds {
            confirmed.push(addr);
        }
    }
    if confirmed.is_empty() {
        return Ok(());
    }
    let lock = ctx.lock_of(name);
    let _guard = lock.lock().await;
    let mut out = net.clone();
    for a in &confirmed {
        out.status.addresses.remove(a);
    }
    match ctx.client.replace_status(&out).await {
        Ok(written) => {
            tracing::debug!(network = %name, released = confirmed.len(), "released addresses");
            ctx.remember(written);
            Ok(())
        }
        Err(e) => {
            ctx.refresh(&[name.to_string()]).await;
            Err(api(format!("release on network {name}"))(e))
        }
    }
}

/// Deletes claim markers (of holders `mine` selects) whose holder, read afresh, is gone.
async fn release_markers(ctx: &Ctx, mine: impl Fn(&str) -> bool) -> Result<(), Error> {
    let markers: Vec<Arc<Lease>> = ctx
        .leases
        .filter(|l| l.metadata.name.starts_with("ipam-") && mine(&l.spec.holder_identity));
    let mut checked: HashMap<String, bool> = HashMap::new();
    for m in markers {
        let holder = m.spec.holder_identity.clone();
        let alive = match checked.get(&holder) {
            Some(a) => *a,
            None => {
                let a = holder_alive(ctx, &holder, &m.metadata.name).await?;
                checked.insert(holder.clone(), a);
                a
            }
        };
        if !alive {
            let rv = Some(m.metadata.resource_version.clone()).filter(|v| !v.is_empty());
            match ctx
                .client
                .delete::<Lease>(&m.metadata.name, rv.as_deref())
                .await
            {
                Ok(()) => tracing::info!(marker = %m.metadata.name, %holder, "released claim"),
                Err(e) if e.is_not_found() || e.is_conflict() => {}
                Err(e) => return Err(api(format!("marker {}", m.metadata.name))(e)),
            }
        }
    }
    Ok(())
}

/// Whether the holder of a marker still exists (same uid) and still wants what it claims.
async fn holder_alive(ctx: &Ctx, holder: &str, marker: &str) -> Result<bool, Error> {
    if let Some((n, uid)) = subnet::holder_network(holder) {
        return match ctx.client.get::<Network>(n).await {
            Ok(net) => Ok(net.metadata.uid == uid && net.metadata.deletion_timestamp.is_none()),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(api(format!("network {n}"))(e)),
        };
    }
    if let Some((s, uid)) = ports::holder_service(holder) {
        return match ctx.client.get::<Service>(s).await {
            Ok(svc) => {
                let port = ports::parse_marker(marker);
                let wants = svc
                    .status
                    .ports
                    .iter()
                    .any(|p| Some((p.protocol, p.published_port.unwrap_or(0))) == port)
                    || svc.spec.endpoint.ports.iter().any(|p| {
                        p.published_port
                            .is_some_and(|pp| Some((p.protocol, pp)) == port)
                    });
                Ok(svc.metadata.uid == uid && svc.metadata.deletion_timestamp.is_none() && wants)
            }
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(api(format!("service {s}"))(e)),
        };
    }
    Ok(true)
}

async fn reconcile_service(name: &str, ctx: &Ctx) -> Result<Action, Error> {
    let Some(svc) = ctx.services.get(name) else {
        release_markers(ctx, |h| {
            ports::holder_service(h).is_some_and(|(s, _)| s == name)
        })
        .await?;
        wake_ledgers_of(ctx, &super::ledger::service_owner(name));
        return Ok(Action::await_change());
    };
    let (_, port_markers) = claims(ctx);
    let ingress_net = ingress::publishes(&svc)
        .then(|| ingress::find(&ctx.networks.state()).map(|n| n.metadata.name.clone()))
        .flatten();
    let mut targets: BTreeSet<String> = svc
        .spec
        .task_template
        .networks
        .iter()
        .map(|n| n.target.clone())
        .collect();
    targets.extend(ingress_net.clone());
    let locks: Vec<_> = targets.iter().map(|n| ctx.lock_of(n)).collect();
    let mut guards = Vec::new();
    for l in &locks {
        guards.push(l.lock().await);
    }
    let plan = plan::plan_service(
        &svc,
        |n| ctx.network(n),
        ingress_net.as_deref(),
        &port_markers,
    );
    // VIPs the service no longer needs: their ledgers release them once it is written.
    let dropped: Vec<String> = svc
        .status
        .virtual_ips
        .iter()
        .filter(|v| !plan.vips.contains(v))
        .map(|v| v.network.clone())
        .collect();
    let mut out = (*svc).clone();
    out.status.virtual_ips = plan.vips.clone();
    out.status.ports = plan.ports.clone();
    let generation = svc.metadata.generation;
    if plan.problems.is_empty() {
        set_condition(
            &mut out.status.conditions,
            ALLOCATED,
            true,
            "Allocated",
            "",
            generation,
        );
    } else {
        set_condition(
            &mut out.status.conditions,
            ALLOCATED,
            false,
            "Waiting",
            &plan.problems.join("; "),
            generation,
        );
    }
    let me = ports::holder(&svc);
    let mut ops = Vec::new();
    for n in &plan.networks {
        ops.push(Operation::update_status(n).map_err(enc(name))?);
    }
    for (p, port) in &plan.claim {
        let m = marker(ports::marker_name(*p, *port), me.clone());
        ops.push(Operation::create(&m).map_err(enc(name))?);
    }
    for m in &plan.release {
        let rv = ctx
            .leases
            .get(m)
            .map(|l| l.metadata.resource_version.clone());
        ops.push(Operation::delete::<Lease>(m.clone(), rv));
    }
    if out.status != svc.status {
        ops.push(Operation::update_status(&out).map_err(enc(name))?);
    }
    if ops.is_empty() {
        return Ok(Action::await_change());
    }
    match ctx.client.transaction(&ops).await {
        Ok(resp) => {
            for v in resp.results.iter().take(plan.networks.len()) {
                if let Ok(n) = serde_json::from_value::<Network>(v.clone()) {
                    ctx.remember(n);
                }
            }
            for n in dropped {
                ctx.trigger.enqueue(network_key(&n));
            }
            Ok(Action::await_change())
        }
        Err(e) => {
            let names: Vec<String> = plan
                .networks
                .iter()
                .map(|n| n.metadata.name.clone())
                .collect();
            drop(guards);
            ctx.refresh(&names).await;
            Err(api(format!("allocations of service {name}"))(e))
        }
    }
}

/// Asks every network whose ledger names `owner` to look at it again.
fn wake_ledgers_of(ctx: &Ctx, owner: &str) {
    for n in ctx
        .networks
        .filter(|n| n.status.addresses.values().any(|o| o == owner))
    {
        ctx.trigger.enqueue(network_key(&n.metadata.name));
    }
}

async fn reconcile_task(name: &str, ctx: &Ctx) -> Result<Action, Error> {
    let Some(task) = ctx.tasks.get(name) else {
        wake_ledgers_of(ctx, &super::ledger::task_owner(name));
        return Ok(Action::await_change());
    };
    if task.status.state.is_terminal() {
        wake_ledgers_of(ctx, &super::ledger::task_owner(name));
        return Ok(Action::await_change());
    }
    let targets: BTreeSet<String> = task
        .spec
        .template
        .networks
        .iter()
        .map(|n| n.target.clone())
        .collect();
    let locks: Vec<_> = targets.iter().map(|n| ctx.lock_of(n)).collect();
    let mut guards = Vec::new();
    for l in &locks {
        guards.push(l.lock().await);
    }
    let attached = match plan::plan_task(&task, |n| ctx.network(n)) {
        TaskPlan::Skip => return Ok(Action::await_change()),
        TaskPlan::Pending => (*task).clone(),
        TaskPlan::Wait(message) => {
            if task.status.message != message {
                let mut out = (*task).clone();
                out.status.message = message;
                match ctx.client.replace_status(&out).await {
                    Ok(_) => {}
                    Err(e) if e.is_conflict() || e.is_not_found() => {}
                    Err(e) => return Err(api(format!("status of task {name}"))(e)),
                }
            }
            return Ok(Action::await_change());
        }
        TaskPlan::Attach {
            task: out,
            networks,
        } => {
            let mut ops = Vec::new();
            for n in &networks {
                ops.push(Operation::update_status(n).map_err(enc(name))?);
            }
            ops.push(Operation::update(&*out).map_err(enc(name))?);
            match ctx.client.transaction(&ops).await {
                Ok(resp) => {
                    for v in resp.results.iter().take(networks.len()) {
                        if let Ok(n) = serde_json::from_value::<Network>(v.clone()) {
                            ctx.remember(n);
                        }
                    }
                    let written = resp
                        .results
                        .last()
                        .and_then(|v| serde_json::from_value::<Task>(v.clone()).ok());
                    match written {
                        Some(t) => t,
                        None => return Ok(Action::await_change()),
                    }
                }
                Err(e) => {
                    let names: Vec<String> =
                        networks.iter().map(|n| n.metadata.name.clone()).collect();
                    drop(guards);
                    ctx.refresh(&names).await;
                    return Err(api(format!("addresses of task {name}"))(e));
                }
            }
        }
    };
    drop(guards);
    // Safe to stop here: a task with every attachment and still NEW just gets this write.
    // The writes are batched: queued here, sent by the `FLUSH` key in transactions of up to
    // 100 (one HTTP round trip per batch instead of per task).
    let mut out = attached;
    out.status.state = TaskState::Pending;
    out.status.message = PENDING_MESSAGE.to_string();
    out.status.timestamp = Some(Timestamp::now());
    ctx.to_pending
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(name.to_string(), out);
    ctx.trigger.enqueue(FLUSH);
    Ok(Action::await_change())
}

/// Sends the queued NEW → PENDING writes.
async fn flush(ctx: &Ctx) -> Result<Action, Error> {
    let queued: Vec<Task> = {
        let mut q = ctx.to_pending.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *q).into_values().collect()
    };
    if queued.is_empty() {
        return Ok(Action::await_change());
    }
    let mut ops = Vec::with_capacity(queued.len());
    for t in &queued {
        ops.push(Operation::update_status(t).map_err(enc(&t.metadata.name))?);
    }
    let mut failed = None;
    for (t, r) in queued.iter().zip(batch::commit(&ctx.client, ops).await) {
        match r {
            Ok(_) | Err(OpError::Raced(_)) => {}
            Err(OpError::Failed(e)) => {
                // Put it back; the retry of this key sends it again.
                ctx.to_pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(t.metadata.name.clone())
                    .or_insert_with(|| t.clone());
                failed.get_or_insert(e);
            }
        }
    }
    match failed {
        Some(e) => Err(Error::Flush(e)),
        None => Ok(Action::await_change()),
    }
}
