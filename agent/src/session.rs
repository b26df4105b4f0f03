//! One node's session with the dispatcher: register, then — until the session breaks —
//! heartbeat on the period the server returns, apply the assignment stream to the worker and
//! flush status reports every 100 ms in batches. Any failure ends the session; the node
//! registers again after a backoff and gets a complete set, so nothing is lost across
//! apiserver restarts or network cuts.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use swarm_proto::DispatcherClient;
use swarm_proto::v1::{
    AssignmentChange, AssignmentsRequest, EngineDescription, HeartbeatRequest, NodeDescription,
    Platform, RegisterRequest, RoutesMessage, RoutesRequest, TaskStatusUpdate,
    UpdateTaskStatusRequest, assignments_message::Type,
};
use tokio::sync::watch;
use tonic::transport::{Channel, Endpoint};

use crate::reporter::Reporter;
use crate::runtime::{NodeInfo, Runtime};
use crate::worker::Worker;

/// Reports sent per `UpdateTaskStatus` call.
const MAX_BATCH: usize = 500;
/// Largest gRPC message.
const MAX_MESSAGE: usize = 8 * 1024 * 1024;

/// Who this node is and where its manager is.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// `host:port` (or a URL) of the dispatcher.
    pub manager: String,
    /// The node's certificate for mutual TLS with the dispatcher (`None`: plain gRPC, for
    /// dispatchers running without TLS).
    pub tls: Option<crate::credentials::SharedCredentials>,
    pub node_name: String,
    pub advertise_addr: String,
    /// Run the routing mesh on the advertise address.
    pub mesh: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("cannot reach the dispatcher at {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("dispatcher: {0}")]
    Rpc(#[from] tonic::Status),
    #[error("the assignment stream ended")]
    StreamEnded,
}

/// The dispatcher endpoint for `manager` (`host:port` or a URL): over mutual TLS with `tls`.
pub fn endpoint(
    manager: &str,
    tls: Option<&crate::credentials::SharedCredentials>,
) -> Result<Endpoint, SessionError> {
    let hostport = manager.split("://").last().unwrap_or(manager);
    let url = match tls {
        Some(_) => format!("https://{hostport}"),
        None if manager.contains("://") => manager.to_string(),
        None => format!("http://{hostport}"),
    };
    let err = |source| SessionError::Connect {
        addr: url.clone(),
        source,
    };
    let mut endpoint = Endpoint::from_shared(url.clone())
        .map_err(err)?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_while_idle(true);
    if let Some(creds) = tls {
        endpoint = endpoint.tls_config(creds.tls_config()).map_err(err)?;
    }
    Ok(endpoint)
}

fn description(info: &NodeInfo, cfg: &NodeConfig) -> NodeDescription {
    NodeDescription {
        hostname: info.hostname.clone(),
        nano_cpus: info.nano_cpus,
        memory_bytes: info.memory_bytes,
        engine: Some(EngineDescription {
            engine_version: info.engine_version.clone(),
            labels: info
                .engine_labels
                .clone()
                .into_iter()
                .collect::<HashMap<_, _>>(),
        }),
        platform: Some(Platform {
            os: info.os.clone(),
            architecture: info.architecture.clone(),
        }),
        advertise_addr: cfg.advertise_addr.clone(),
    }
}

/// Runs the node until `shutdown` flips. Containers are left as they are at shutdown, so a
/// restarted agent adopts them. `channel`: share one connection (sim nodes); `None`: connect.
pub async fn run_node(
    cfg: NodeConfig,
    rt: Arc<dyn Runtime>,
    channel: Option<Channel>,
    mut shutdown: watch::Receiver<bool>,
) {
    let reporter = Reporter::default();
    let mut worker = Worker::new(rt.clone(), reporter.clone());
    let mut backoff = Duration::from_millis(200);
    loop {
        if *shutdown.borrow() {
            break;
        }
        let info = match rt.describe().await {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!(error = %e, "cannot describe the node; retrying");
                NodeInfo::default()
            }
        };
        let result = session(
            &cfg,
            &info,
            rt.clone(),
            channel.clone(),
            &mut worker,
            &reporter,
            &mut shutdown,
        )
        .await;
        match result {
            Ok(()) => break,
            Err(e) => {
                tracing::warn!(node = %cfg.node_name, error = %e, "session ended; registering again")
            }
        }
        let pause = backoff.mul_f64(0.5 + rand::random::<f64>());
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.changed() => break,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
    worker.detach();
}

async fn session(
    cfg: &NodeConfig,
    info: &NodeInfo,
    rt: Arc<dyn Runtime>,
    channel: Option<Channel>,
    worker: &mut Worker,
    reporter: &Reporter,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), SessionError> {
    let channel = match channel {
        Some(c) => c,
        None => endpoint(&cfg.manager, cfg.tls.as_ref())?
            .connect()
            .await
            .map_err(|source| SessionError::Connect {
                addr: cfg.manager.clone(),
                source,
            })?,
    };
    let mut client = DispatcherClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    let reg = client
        .register(RegisterRequest {
            node_name: cfg.node_name.clone(),
            description: Some(description(info, cfg)),
        })
        .await?
        .into_inner();
    let session_id = reg.session_id.clone();
    tracing::info!(node = %reg.node_name, "registered");
    let mut stream = client
        .assignments(AssignmentsRequest {
            session_id: session_id.clone(),
        })
        .await?
        .into_inner();
    // Log subscriptions for the length of this session.
    let logs = tokio::spawn(crate::logs::run(client.clone(), session_id.clone(), rt));
    let _logs = AbortOnDrop(logs.abort_handle());
    let mut next_beat =
        tokio::time::Instant::now() + Duration::from_millis(u64::from(reg.heartbeat_period_ms));
    let mut flush = tokio::time::interval(Duration::from_millis(100));
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut maintain = tokio::time::interval(Duration::from_secs(10));
    maintain.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut complete: Vec<AssignmentChange> = Vec::new();
    let mut routes: Option<tonic::Streaming<RoutesMessage>> = None;
    let mut mesh = None;
    if cfg.mesh
        && let Ok(ip) = cfg.advertise_addr.parse()
    {
        routes = Some(
            client
                .routes(RoutesRequest {
                    session_id: session_id.clone(),
                })
                .await?
                .into_inner(),
        );
        mesh = Some(crate::mesh::Mesh::new(ip));
    }
    loop {
        tokio::select! {
            _ = shutdown.changed() => return Ok(()),
            msg = stream.message() => {
                let Some(m) = msg? else { return Err(SessionError::StreamEnded) };
                if m.r#type == Type::Complete as i32 {
                    complete.extend(m.changes);
                    if !m.more {
                        worker.complete(std::mem::take(&mut complete)).await;
                    }
                } else {
                    worker.incremental(m.changes);
                }
            }
            _ = tokio::time::sleep_until(next_beat) => {
                let r = client
                    .heartbeat(HeartbeatRequest { session_id: session_id.clone() })
                    .await?
                    .into_inner();
                next_beat = tokio::time::Instant::now()
                    + Duration::from_millis(u64::from(r.period_ms.max(100)));
            }
            _ = flush.tick() => {
                while !reporter.is_empty() {
                    let batch = reporter.take(MAX_BATCH);
                    let updates = batch
                        .iter()
                        .map(|(name, _, status)| TaskStatusUpdate {
                            task_name: name.clone(),
                            status: serde_json::to_vec(status).unwrap_or_default(),
                        })
                        .collect();
                    let req = UpdateTaskStatusRequest { session_id: session_id.clone(), updates };
                    match client.update_task_status(req).await {
                        Ok(resp) => {
                            for r in resp.into_inner().refused {
                                tracing::warn!(task = %r.task_name, reason = %r.reason, "status report refused");
                            }
                        }
                        Err(e) => {
                            reporter.put_back(batch);
                            return Err(e.into());
                        }
                    }
                }
            }
            _ = maintain.tick() => worker.maintain().await,
            r = next_routes(&mut routes) => {
                let Some(table) = r? else { return Err(SessionError::StreamEnded) };
                if let Some(m) = mesh.as_mut() {
                    m.apply(&table.routes).await;
                }
            }
        }
    }
}

/// Aborts a task when dropped (when the session ends, however it ends).
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The next routing table, or never when the mesh is off.
async fn next_routes(
    routes: &mut Option<tonic::Streaming<RoutesMessage>>,
) -> Result<Option<RoutesMessage>, tonic::Status> {
    match routes {
        Some(s) => s.message().await,
        None => std::future::pending().await,
    }
}
