//! The tonic service: request checking and the four RPCs, over `nodes`, `hub`, `stream` and
//! `status`.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use swarm_proto::v1::{
    AssignmentsMessage, AssignmentsRequest, HeartbeatRequest, HeartbeatResponse, LogSubscription,
    LogSubscriptionsRequest, PublishLogsMessage, PublishLogsResponse, RegisterRequest,
    RegisterResponse, RoutesMessage, RoutesRequest, UpdateTaskStatusRequest,
    UpdateTaskStatusResponse,
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::DispatcherOptions;
use super::hub::Hub;
use super::nodes::{self, Heartbeats};
use super::sessions::{Session, SessionError, Sessions, identity_from_peer};
use super::status::StatusWriter;
use crate::errors::ApiError;
use crate::registry::Registry;
use crate::watch_cache::WatchCache;

struct Inner {
    registry: Registry,
    hub: Arc<Hub>,
    sessions: Sessions,
    heartbeats: Heartbeats,
    statuses: StatusWriter,
    opts: DispatcherOptions,
    flusher: tokio::task::AbortHandle,
    status_writer: tokio::task::AbortHandle,
}

/// The dispatcher service; cheap to clone.
#[derive(Clone)]
pub struct DispatcherService {
    inner: Arc<Inner>,
}

fn api_status(e: ApiError) -> Status {
    use swarm_api::StatusReason as R;
    let msg = e.status().message.clone();
    match e.reason() {
        R::NotFound => Status::not_found(msg),
        R::AlreadyExists => Status::already_exists(msg),
        R::Conflict => Status::aborted(msg),
        R::Invalid | R::BadRequest => Status::invalid_argument(msg),
        R::ServiceUnavailable | R::Timeout => Status::unavailable(msg),
        _ => Status::internal(msg),
    }
}

fn session_status(e: SessionError) -> Status {
    match e {
        SessionError::Unknown(_) => Status::not_found(e.to_string()),
        SessionError::WrongNode { .. } => Status::permission_denied(e.to_string()),
    }
}

impl DispatcherService {
    /// Starts the hub and the heartbeat flusher.
    pub fn start(registry: Registry, cache: WatchCache, opts: DispatcherOptions) -> Self {
        let hub = Hub::start(cache);
        let (statuses, status_writer) = StatusWriter::start(registry.clone(), opts.max_ops_per_txn);
        let inner = Arc::new_cyclic(|weak: &std::sync::Weak<Inner>| {
            let weak = weak.clone();
            let every = opts.heartbeat_flush;
            let flusher = tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let Some(inner) = weak.upgrade() else { return };
                    inner
                        .heartbeats
                        .flush(&inner.registry, inner.opts.max_ops_per_txn)
                        .await;
                }
            })
            .abort_handle();
            Inner {
                registry,
                hub,
                sessions: Sessions::default(),
                heartbeats: Heartbeats::default(),
                statuses,
                opts,
                flusher,
                status_writer,
            }
        });
        DispatcherService { inner }
    }

    /// Ends sessions and background work.
    pub fn stop(&self) {
        self.inner.flusher.abort();
        self.inner.status_writer.abort();
        self.inner.sessions.end_all();
        self.inner.hub.stop();
    }

    /// The number of open sessions.
    pub fn session_count(&self) -> usize {
        self.inner.sessions.len()
    }

    fn session<T>(&self, req: &Request<T>, id: &str) -> Result<Session, Status> {
        let caller = identity_from_peer(req)?;
        self.inner
            .sessions
            .get(id, caller.as_deref())
            .map_err(session_status)
    }

    /// The next heartbeat period, jittered.
    fn period(&self) -> Duration {
        let base = self.inner.opts.heartbeat_period;
        let jitter = self.inner.opts.heartbeat_jitter.as_millis() as i64;
        let delta = if jitter > 0 {
            rand::rng().random_range(-jitter..=jitter)
        } else {
            0
        };
        let ms = (base.as_millis() as i64 + delta).max(1);
        Duration::from_millis(ms as u64)
    }
}

fn valid_node_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
}

#[tonic::async_trait]
impl swarm_proto::Dispatcher for DispatcherService {
    async fn register(
        &self,
        req: Request<RegisterRequest>,
    ) -> Result<Response<RegisterResponse>, Status> {
        let peer = identity_from_peer(&req)?;
        let req = req.into_inner();
        let desc = req
            .description
            .ok_or_else(|| Status::invalid_argument("description is required"))?;
        let wanted = if req.node_name.is_empty() {
            desc.hostname.clone()
        } else {
            req.node_name.clone()
        };
        let name = peer.unwrap_or(wanted);
        if !valid_node_name(&name) {
            return Err(Status::invalid_argument(format!(
                "invalid node name {name:?}: letters, digits, '-', '.' and '_' only"
            )));
        }
        nodes::register(&self.inner.registry, &name, &desc)
            .await
            .map_err(api_status)?;
        let session = self.inner.sessions.open(&name);
        tracing::info!(node = %name, addr = %desc.advertise_addr, "node registered");
        Ok(Response::new(RegisterResponse {
            node_name: name,
            session_id: session.id,
            heartbeat_period_ms: self.period().as_millis() as u32,
        }))
    }

    async fn heartbeat(
        &self,
        req: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        let session = self.session(&req, &req.get_ref().session_id)?;
        self.inner.heartbeats.beat(&session.node);
        Ok(Response::new(HeartbeatResponse {
            period_ms: self.period().as_millis() as u32,
        }))
    }

    type AssignmentsStream = ReceiverStream<Result<AssignmentsMessage, Status>>;

    async fn assignments(
        &self,
        req: Request<AssignmentsRequest>,
    ) -> Result<Response<Self::AssignmentsStream>, Status> {
        let session = self.session(&req, &req.get_ref().session_id)?;
        let attached = self.inner.hub.attach(&session.node).await;
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(super::stream::run(
            attached,
            session,
            self.inner.opts.clone(),
            tx,
        ));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn update_task_status(
        &self,
        req: Request<UpdateTaskStatusRequest>,
    ) -> Result<Response<UpdateTaskStatusResponse>, Status> {
        let session = self.session(&req, &req.get_ref().session_id)?;
        let updates = req.into_inner().updates;
        let refused = self
            .inner
            .statuses
            .apply(&session.node, updates)
            .await
            .map_err(api_status)?;
        Ok(Response::new(UpdateTaskStatusResponse { refused }))
    }

    type RoutesStream = ReceiverStream<Result<RoutesMessage, Status>>;

    async fn routes(
        &self,
        req: Request<RoutesRequest>,
    ) -> Result<Response<Self::RoutesStream>, Status> {
        let mut session = self.session(&req, &req.get_ref().session_id)?;
        let mut routes = self.inner.hub.routes();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            loop {
                let table = routes.borrow_and_update().clone();
                let msg = RoutesMessage {
                    routes: table.as_ref().clone(),
                };
                if tx.send(Ok(msg)).await.is_err() {
                    return;
                }
                tokio::select! {
                    r = routes.changed() => if r.is_err() { return },
                    _ = session.ended.changed() => {
                        let _ = tx.send(Err(Status::aborted("session ended; register again"))).await;
                        return;
                    }
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    type LogSubscriptionsStream = ReceiverStream<Result<LogSubscription, Status>>;

    async fn log_subscriptions(
        &self,
        req: Request<LogSubscriptionsRequest>,
    ) -> Result<Response<Self::LogSubscriptionsStream>, Status> {
        let session = self.session(&req, &req.get_ref().session_id)?;
        Ok(Response::new(self.inner.opts.logs.listen(session)))
    }

    async fn publish_logs(
        &self,
        req: Request<tonic::Streaming<PublishLogsMessage>>,
    ) -> Result<Response<PublishLogsResponse>, Status> {
        let peer = identity_from_peer(&req)?;
        let mut stream = req.into_inner();
        let Some(first) = stream.message().await? else {
            return Ok(Response::new(PublishLogsResponse {}));
        };
        let session = self
            .inner
            .sessions
            .get(&first.session_id, peer.as_deref())
            .map_err(session_status)?;
        let logs = &self.inner.opts.logs;
        logs.publish(&session.node, first, stream)
            .await
            .map(Response::new)
    }
}
