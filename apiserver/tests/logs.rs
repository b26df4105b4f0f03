//! The log endpoints end to end inside the apiserver: a REST reader, the log broker, and a
//! node played by this test over the real gRPC dispatcher (register, `LogSubscriptions`,
//! `PublishLogs`). And who may read logs over TLS.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use swarm_api::logs::{LogRecord, LogStream};
use swarm_apiserver::server::{RunningServer, Server, ServerOptions};
use swarm_pki::{Identity, Role};
use swarm_proto::DispatcherClient;
use swarm_proto::v1::{
    LogLine, LogSubscription, LogSubscriptionsRequest, NodeDescription, PublishLogsMessage,
    RegisterRequest, log_line,
};
use tonic::transport::Channel;

const PATIENCE: Duration = Duration::from_secs(20);

struct Fixture {
    server: RunningServer,
    url: String,
    http: reqwest::Client,
    grpc: DispatcherClient<Channel>,
    _dir: tempfile::TempDir,
}

async fn start() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let opts = ServerOptions {
        data_dir: dir.path().to_path_buf(),
        ..ServerOptions::loopback_with_dispatcher()
    };
    let server = Server::bind(opts).await.unwrap().spawn();
    let addr = server.dispatcher_addr.unwrap();
    let grpc = DispatcherClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    Fixture {
        url: server.url(),
        server,
        http: reqwest::Client::new(),
        grpc,
        _dir: dir,
    }
}

/// A node: registered, listening for log subscriptions.
struct Node {
    session: String,
    subs: tonic::Streaming<LogSubscription>,
}

async fn node(f: &Fixture, name: &str) -> Node {
    let mut c = f.grpc.clone();
    let session = c
        .register(RegisterRequest {
            node_name: name.into(),
            description: Some(NodeDescription {
                hostname: name.into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .session_id;
    let subs = c
        .log_subscriptions(LogSubscriptionsRequest {
            session_id: session.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    Node { session, subs }
}

async fn post(f: &Fixture, plural: &str, body: Value) -> Value {
    let resp = f
        .http
        .post(format!("{}/v1/{plural}", f.url))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    resp.json().await.unwrap()
}

/// A service `web`, and task `web.<slot>.1` on `node` with a container (as the agent reports).
async fn service_with_tasks(f: &Fixture, tasks: &[(u64, &str)]) {
    post(
        f,
        "services",
        json!({"kind": "Service", "metadata": {"name": "web"},
               "spec": {"taskTemplate": {"container": {"image": "hello"}}}}),
    )
    .await;
    for (slot, node) in tasks {
        let name = format!("web.{slot}.1");
        let mut t = post(
            f,
            "tasks",
            json!({"kind": "Task", "metadata": {"name": name},
                   "spec": {"service": "web", "slot": slot, "nodeName": node,
                            "template": {"container": {"image": "hello"}}}}),
        )
        .await;
        t["status"] = json!({"state": "running", "containerId": format!("c{slot}")});
        let resp = f
            .http
            .put(format!("{}/v1/tasks/{name}/status", f.url))
            .json(&t)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    }
}

async fn publish(f: &Fixture, n: &Node, sub: &LogSubscription, lines: &[(&str, &str)]) {
    let msg = PublishLogsMessage {
        session_id: n.session.clone(),
        subscription_id: sub.id.clone(),
        lines: lines
            .iter()
            .map(|(task, text)| LogLine {
                task: task.to_string(),
                stream: log_line::Stream::Stderr as i32,
                timestamp_nanos: 1_767_225_600_000_000_000,
                data: text.as_bytes().to_vec(),
            })
            .collect(),
        errors: Vec::new(),
        close: true,
    };
    f.grpc
        .clone()
        .publish_logs(futures::stream::iter(vec![msg]))
        .await
        .unwrap();
}

/// Reads NDJSON records until the stream ends.
async fn records(resp: reqwest::Response) -> Vec<LogRecord> {
    assert_eq!(resp.status().as_u16(), 200);
    let body = tokio::time::timeout(PATIENCE, resp.bytes())
        .await
        .expect("the log stream ends")
        .unwrap();
    body.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect()
}

#[tokio::test]
async fn service_logs_gather_every_node_s_lines_through_the_broker() {
    let f = start().await;
    let mut n1 = node(&f, "n1").await;
    let mut n2 = node(&f, "n2").await;
    service_with_tasks(&f, &[(1, "n1"), (2, "n2")]).await;
    let req = f
        .http
        .get(format!(
            "{}/v1/services/web/logs?tail=5&timestamps=true",
            f.url
        ))
        .send();
    let reader = tokio::spawn(async move { records(req.await.unwrap()).await });
    let s1 = n1.subs.message().await.unwrap().unwrap();
    let s2 = n2.subs.message().await.unwrap().unwrap();
    assert_eq!(s1.tasks, vec!["web.1.1"]);
    assert_eq!(s2.tasks, vec!["web.2.1"]);
    let o = s1.options.unwrap();
    assert_eq!((o.follow, o.tail), (false, 5));
    publish(&f, &n1, &s1, &[("web.1.1", "GET / from n1")]).await;
    publish(&f, &n2, &s2, &[("web.2.1", "GET / from n2")]).await;
    let mut got = reader.await.unwrap();
    got.sort_by(|a, b| a.task.cmp(&b.task));
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(
        (got[0].node.as_str(), got[0].slot, got[0].line.as_str()),
        ("n1", Some(1), "GET / from n1")
    );
    assert_eq!(got[1].line, "GET / from n2");
    assert_eq!(got[0].stream, LogStream::Stderr);
    assert_eq!(
        got[0].timestamp.as_deref(),
        Some("2026-01-01T00:00:00.000000000Z")
    );
    assert_eq!(got[0].service, "web");
    assert_eq!(got[0].task_id.len(), 32);
    f.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn task_logs_ask_only_the_task_s_node_and_a_down_node_ends_with_an_error() {
    let f = start().await;
    let mut n1 = node(&f, "n1").await;
    service_with_tasks(&f, &[(1, "n1"), (2, "n2")]).await;

    // One task: only its node is asked.
    let req = f
        .http
        .get(format!("{}/v1/tasks/web.1.1/logs", f.url))
        .send();
    let reader = tokio::spawn(async move { records(req.await.unwrap()).await });
    let s1 = n1.subs.message().await.unwrap().unwrap();
    assert_eq!(s1.tasks, vec!["web.1.1"]);
    publish(&f, &n1, &s1, &[("web.1.1", "one")]).await;
    let got = reader.await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].line.as_str(), got[0].timestamp.as_deref()),
        ("one", None)
    );

    // n2 never connected: its task's part ends with an error record, the stream ends.
    let resp = f
        .http
        .get(format!("{}/v1/tasks/web.2.1/logs", f.url))
        .send()
        .await
        .unwrap();
    let got = records(resp).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].task, "web.2.1");
    assert!(got[0].error.contains("node n2 is not connected"), "{got:?}");
    f.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn following_picks_up_tasks_that_start_later_and_closes_when_the_reader_leaves() {
    let f = start().await;
    let mut n1 = node(&f, "n1").await;
    service_with_tasks(&f, &[(1, "n1")]).await;
    let resp = f
        .http
        .get(format!("{}/v1/services/web/logs?follow=true", f.url))
        .send()
        .await
        .unwrap();
    let mut body = resp.bytes_stream();
    let s1 = n1.subs.message().await.unwrap().unwrap();
    assert!(s1.options.unwrap().follow);
    // A second task appears (a scale-up): the broker sends it as a new part.
    let t2 = json!({"kind": "Task", "metadata": {"name": "web.2.1"},
                    "spec": {"service": "web", "slot": 2, "nodeName": "n1",
                             "template": {"container": {"image": "hello"}}}});
    let mut t2 = post(&f, "tasks", t2).await;
    t2["status"] = json!({"state": "running", "containerId": "c2"});
    f.http
        .put(format!("{}/v1/tasks/web.2.1/status", f.url))
        .json(&t2)
        .send()
        .await
        .unwrap();
    let s2 = tokio::time::timeout(PATIENCE, n1.subs.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(s2.tasks, vec!["web.2.1"]);
    publish(&f, &n1, &s2, &[("web.2.1", "late line")]).await;
    let chunk = tokio::time::timeout(PATIENCE, body.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let r: LogRecord = serde_json::from_slice(chunk.trim_ascii()).unwrap();
    assert_eq!((r.task.as_str(), r.line.as_str()), ("web.2.1", "late line"));
    // The reader goes away: the node is told to stop the open part.
    drop(body);
    let closed = tokio::time::timeout(PATIENCE, n1.subs.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!((closed.id, closed.close), (s1.id, true));
    f.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_unknown_service_is_404_and_a_service_without_tasks_ends_at_once() {
    let f = start().await;
    let resp = f
        .http
        .get(format!("{}/v1/services/nope/logs", f.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    let status: Value = resp.json().await.unwrap();
    assert_eq!(status["reason"], "NotFound");
    service_with_tasks(&f, &[]).await;
    let resp = f
        .http
        .get(format!("{}/v1/services/web/logs", f.url))
        .send()
        .await
        .unwrap();
    assert!(records(resp).await.is_empty());
    let resp = f
        .http
        .get(format!("{}/v1/services/web/logs?tail=x", f.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    f.server.shutdown().await.unwrap();
}

fn tls_client(ca_pem: &str, cert: &str, key: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap()])
        .identity(reqwest::Identity::from_pem(format!("{cert}\n{key}").as_bytes()).unwrap())
        .build()
        .unwrap()
}

#[tokio::test]
async fn only_admins_and_managers_read_logs() {
    let dir = tempfile::tempdir().unwrap();
    let opts = ServerOptions {
        data_dir: dir.path().to_path_buf(),
        tls: true,
        ..ServerOptions::loopback()
    };
    let server = Server::bind(opts).await.unwrap();
    let pki = server.pki().unwrap().clone();
    let server = server.spawn();
    let url = server.url();
    let ca = pki.ca.cert_pem().to_string();
    let as_role = |id: &str, role: Role| {
        let (cert, key) = pki
            .ca
            .issue(
                &Identity::new(id, role, pki.ca.cluster_id()),
                &[],
                Duration::from_secs(3600),
            )
            .unwrap();
        tls_client(&ca, &cert, &key)
    };
    let admin = as_role("admin", Role::Admin);
    let svc = json!({"kind": "Service", "metadata": {"name": "web"},
                     "spec": {"taskTemplate": {"container": {"image": "hello"}}}});
    let r = admin
        .post(format!("{url}/v1/services"))
        .json(&svc)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    for (who, role, code) in [
        ("admin", Role::Admin, 200),
        ("m1", Role::Manager, 200),
        ("n1", Role::Worker, 403),
        ("placement", Role::Controller, 403),
    ] {
        let c = as_role(who, role);
        for path in ["services/web/logs", "tasks/web.1.1/logs"] {
            let r = c.get(format!("{url}/v1/{path}")).send().await.unwrap();
            let got = r.status().as_u16();
            // Admins and managers pass the guard (the task does not exist: 404).
            let want = if code == 200 && path.starts_with("tasks") {
                404
            } else {
                code
            };
            assert_eq!(got, want, "{who} GET {path}");
            if got == 403 {
                let body: Value = r.json().await.unwrap();
                let msg = body["message"].as_str().unwrap();
                assert!(msg.contains("may not read container logs"), "{msg}");
            }
        }
    }
    server.shutdown().await.unwrap();
}
