//! The apiserver over TLS: client certificates required, machines join with tokens, and each
//! identity does only what it may. Each refusal is checked for a clear message.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use swarm_apiserver::server::{RunningServer, Server, ServerOptions};
use swarm_pki::{ClusterCa, Identity, JoinToken, NodeKey, Role};

struct Cluster {
    server: RunningServer,
    url: String,
    ca_pem: String,
    admin: reqwest::Client,
    tokens: (JoinToken, JoinToken),
    pki: std::sync::Arc<swarm_apiserver::cluster_pki::ClusterPki>,
    _dir: tempfile::TempDir,
}

fn client(ca_pem: &str, identity: Option<(&str, &str)>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap()]);
    if let Some((cert, key)) = identity {
        let pem = format!("{cert}\n{key}");
        b = b.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
    }
    b.build().unwrap()
}

async fn start() -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let opts = ServerOptions {
        data_dir: dir.path().to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
        tls: true,
        ..ServerOptions::default()
    };
    let server = Server::bind(opts).await.unwrap();
    let pki = server.pki().unwrap().clone();
    let server = server.spawn();
    let url = server.url();
    assert!(url.starts_with("https://"), "{url}");
    let (crt, key) = pki.write_admin_credentials(dir.path()).unwrap();
    let ca_pem = pki.ca.cert_pem().to_string();
    let admin = client(&ca_pem, Some((&read(&crt), &read(&key))));
    let t = pki.tokens();
    Cluster {
        server,
        url,
        ca_pem,
        admin,
        tokens: (t.worker, t.manager),
        pki,
        _dir: dir,
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap()
}

/// Joins with `token`; returns the node id and a client holding the node's certificate.
async fn join(c: &Cluster, token: &str) -> Result<(String, reqwest::Client), Value> {
    let key = NodeKey::generate().unwrap();
    let resp = client(&c.ca_pem, None)
        .post(format!("{}/v1/join", c.url))
        .json(&json!({"token": token, "csr": key.csr_pem("host").unwrap(), "hostname": "host"}))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap();
    if status != 200 {
        return Err(body);
    }
    let cert = body["certificate"].as_str().unwrap().to_string();
    let node_id = body["nodeId"].as_str().unwrap().to_string();
    Ok((node_id, client(&c.ca_pem, Some((&cert, &key.key_pem())))))
}

async fn send(req: reqwest::RequestBuilder) -> (u16, Value) {
    let resp = req.send().await.unwrap();
    let code = resp.status().as_u16();
    (code, resp.json().await.unwrap_or(Value::Null))
}

fn task(name: &str, node: &str, secret: &str) -> Value {
    json!({"kind": "Task", "metadata": {"name": name},
           "spec": {"service": "web", "nodeName": node,
                    "template": {"container": {"image": "x",
                        "secrets": [{"source": secret, "target": secret}]}}}})
}

#[tokio::test]
async fn without_a_client_certificate_the_api_says_not_authenticated() {
    let c = start().await;
    let (code, body) = send(client(&c.ca_pem, None).get(format!("{}/v1/services", c.url))).await;
    assert_eq!(code, 401);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("not authenticated: "),
        "{body}"
    );
    // The admin credentials work.
    let (code, _) = send(c.admin.get(format!("{}/v1/services", c.url))).await;
    assert_eq!(code, 200);
    c.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn join_tokens_are_checked_and_rotation_retires_the_old_one() {
    let c = start().await;
    let (worker, manager) = (c.tokens.0.to_string(), c.tokens.1.to_string());
    assert!(join(&c, &worker).await.is_ok());
    assert!(join(&c, &manager).await.is_ok());

    // A well-formed token with the right CA digest but a wrong secret.
    let forged = JoinToken::generate(c.pki.ca.digest()).unwrap().to_string();
    let err = join(&c, &forged).await.unwrap_err();
    assert!(
        err["message"].as_str().unwrap().contains("not valid"),
        "{err}"
    );

    // A token of another cluster.
    let other = ClusterCa::generate("elsewhere").unwrap();
    let foreign = JoinToken::generate(other.digest()).unwrap().to_string();
    let err = join(&c, &foreign).await.unwrap_err();
    assert!(
        err["message"].as_str().unwrap().contains("another cluster"),
        "{err}"
    );

    // Rotated away.
    c.pki.rotate(Role::Worker).unwrap();
    let err = join(&c, &worker).await.unwrap_err();
    assert!(
        err["message"].as_str().unwrap().contains("rotated"),
        "{err}"
    );
    assert!(join(&c, &c.pki.tokens().worker.to_string()).await.is_ok());

    // Garbage is a 422 naming the field.
    let err = join(&c, "hello").await.unwrap_err();
    assert_eq!(err["details"]["causes"][0]["field"], "token", "{err}");
    c.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_node_reads_and_writes_only_what_is_its_own() {
    let c = start().await;
    let (a, node_a) = join(&c, &c.tokens.0.to_string()).await.unwrap();
    let (b, _node_b) = join(&c, &c.tokens.0.to_string()).await.unwrap();
    let u = &c.url;
    for body in [task("t-a", &a, "s-a"), task("t-b", &b, "s-b")] {
        let (code, resp) = send(c.admin.post(format!("{u}/v1/tasks")).json(&body)).await;
        assert_eq!(code, 201, "{resp}");
    }
    for s in ["s-a", "s-b"] {
        let secret = json!({"kind": "Secret", "metadata": {"name": s}, "spec": {"data": "eA=="}});
        let (code, resp) = send(c.admin.post(format!("{u}/v1/secrets")).json(&secret)).await;
        assert_eq!(code, 201, "{resp}");
    }

    // Its own task and the secret it references: yes.
    let (code, _) = send(node_a.get(format!("{u}/v1/tasks/t-a"))).await;
    assert_eq!(code, 200);
    let (code, got) = send(node_a.get(format!("{u}/v1/secrets/s-a?showData=true"))).await;
    assert_eq!((code, got["spec"]["data"].clone()), (200, json!("eA==")));
    let sel = format!("{u}/v1/tasks?fieldSelector=spec.nodeName%3D{a}");
    let (code, list) = send(node_a.get(sel)).await;
    assert_eq!(code, 200);
    assert_eq!(list["items"].as_array().unwrap().len(), 1);

    // B's task, B's secret, all tasks, writing B's task, creating a service: no.
    let (code, body) = send(node_a.get(format!("{u}/v1/tasks/t-b"))).await;
    assert_eq!(code, 403);
    assert_eq!(body["reason"], "Forbidden");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("not assigned to this node"),
        "{body}"
    );
    let (code, _) = send(node_a.get(format!("{u}/v1/secrets/s-b"))).await;
    assert_eq!(code, 403);
    let (code, _) = send(node_a.get(format!("{u}/v1/tasks"))).await;
    assert_eq!(code, 403);
    let (_, tb) = send(c.admin.get(format!("{u}/v1/tasks/t-b"))).await;
    let (code, _) = send(node_a.put(format!("{u}/v1/tasks/t-b/status")).json(&tb)).await;
    assert_eq!(code, 403);
    let svc = json!({"kind": "Service", "metadata": {"name": "evil"},
                     "spec": {"taskTemplate": {"container": {"image": "x"}}}});
    let (code, body) = send(node_a.post(format!("{u}/v1/services")).json(&svc)).await;
    assert_eq!(code, 403);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with(&format!("node {a} may not create services: ")),
        "{body}"
    );
    c.server.shutdown().await.unwrap();
}

/// The guard answers from the watch cache's index of tasks by node, brought up to date with
/// the store before each decision: an assignment, a move and a deletion count at once.
#[tokio::test]
async fn node_reads_follow_task_assignments_at_once() {
    let c = start().await;
    let (a, node_a) = join(&c, &c.tokens.0.to_string()).await.unwrap();
    let (b, node_b) = join(&c, &c.tokens.0.to_string()).await.unwrap();
    let u = &c.url;
    let secret = json!({"kind": "Secret", "metadata": {"name": "s-x"}, "spec": {"data": "eA=="}});
    let (code, resp) = send(c.admin.post(format!("{u}/v1/secrets")).json(&secret)).await;
    assert_eq!(code, 201, "{resp}");
    let reads = |n: &reqwest::Client| n.get(format!("{u}/v1/secrets/s-x?showData=true"));
    // Referenced by no task: nobody.
    assert_eq!(send(reads(&node_a)).await.0, 403);
    assert_eq!(send(reads(&node_b)).await.0, 403);
    for round in 0..3 {
        let name = format!("t-x{round}");
        // Assigned to B: B reads it at once; A, whose tasks do not reference it, gets 403.
        let (code, mut t) = send(
            c.admin
                .post(format!("{u}/v1/tasks"))
                .json(&task(&name, &b, "s-x")),
        )
        .await;
        assert_eq!(code, 201, "{t}");
        assert_eq!(send(reads(&node_b)).await.0, 200);
        assert_eq!(send(reads(&node_a)).await.0, 403);
        // Moved to A: now the other way round.
        t["spec"]["nodeName"] = json!(a);
        let (code, t) = send(c.admin.put(format!("{u}/v1/tasks/{name}")).json(&t)).await;
        assert_eq!(code, 200, "{t}");
        assert_eq!(send(reads(&node_a)).await.0, 200);
        assert_eq!(send(reads(&node_b)).await.0, 403);
        // Deleted: nobody again.
        let (code, _) = send(c.admin.delete(format!("{u}/v1/tasks/{name}"))).await;
        assert_eq!(code, 200);
        assert_eq!(send(reads(&node_a)).await.0, 403);
        assert_eq!(send(reads(&node_b)).await.0, 403);
    }
    c.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_controller_writes_only_its_kinds_even_inside_a_transaction() {
    let c = start().await;
    let (cert, key) = c
        .pki
        .ca
        .issue(
            &Identity::new("placement", Role::Controller, c.pki.ca.cluster_id()),
            &[],
            Duration::from_secs(3600),
        )
        .unwrap();
    let placement = client(&c.ca_pem, Some((&cert, &key)));
    let u = &c.url;
    let (code, _) = send(
        c.admin
            .post(format!("{u}/v1/tasks"))
            .json(&task("t", "n", "s")),
    )
    .await;
    assert_eq!(code, 201);

    // Reads are fine; creating a task (replication's job) is not, even in a transaction.
    let (code, _) = send(placement.get(format!("{u}/v1/tasks"))).await;
    assert_eq!(code, 200);
    let txn = json!({"operations": [{"op": "create", "object": task("t2", "n", "s")}]});
    let (code, body) = send(placement.post(format!("{u}/v1/transactions")).json(&txn)).await;
    assert_eq!(code, 403, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("operations[0]: "),
        "{body}"
    );
    let (code, _) = send(placement.get(format!("{u}/v1/tasks/t2"))).await;
    assert_eq!(code, 404, "nothing was written");
    c.server.shutdown().await.unwrap();
}
