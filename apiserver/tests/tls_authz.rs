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
    start_with(swarm_pki::DEFAULT_CERT_VALIDITY).await
}

/// `start`, the apiserver issuing certificates valid for `cert_validity`.
async fn start_with(cert_validity: Duration) -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let opts = ServerOptions {
        data_dir: dir.path().to_path_buf(),
        tls: true,
        cert_validity,
        ..ServerOptions::loopback_with_dispatcher()
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
    let (node_id, cert, key) = join_as(c, token, "host").await?;
    Ok((node_id, client(&c.ca_pem, Some((&cert, &key)))))
}

/// Joins with `token` asking for the name `hostname`; returns the node id, its certificate
/// and its key (PEM).
async fn join_as(
    c: &Cluster,
    token: &str,
    hostname: &str,
) -> Result<(String, String, String), Value> {
    let key = NodeKey::generate().unwrap();
    let resp = client(&c.ca_pem, None)
        .post(format!("{}/v1/join", c.url))
        .json(&json!({"token": token, "csr": key.csr_pem(hostname).unwrap(), "hostname": hostname}))
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
    Ok((node_id, cert, key.key_pem()))
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
    c.pki.rotate(Role::Worker).await.unwrap();
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

/// A gRPC client of the dispatcher presenting `identity` (certificate, key), or none.
async fn dispatcher(
    c: &Cluster,
    identity: Option<(&str, &str)>,
) -> Result<swarm_proto::DispatcherClient<tonic::transport::Channel>, tonic::transport::Error> {
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity as TlsIdentity};
    let addr = c.server.dispatcher_addr.unwrap();
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&c.ca_pem));
    if let Some((cert, key)) = identity {
        tls = tls.identity(TlsIdentity::from_pem(cert, key));
    }
    let channel = Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)?
        .connect()
        .await?;
    Ok(swarm_proto::DispatcherClient::new(channel))
}

fn register(name: &str) -> swarm_proto::v1::RegisterRequest {
    swarm_proto::v1::RegisterRequest {
        node_name: name.to_string(),
        description: Some(swarm_proto::v1::NodeDescription {
            hostname: name.to_string(),
            ..Default::default()
        }),
    }
}

#[tokio::test]
async fn the_dispatcher_knows_nodes_by_their_certificate_only() {
    let c = start().await;
    let token = c.tokens.0.to_string();
    let (a, a_cert, a_key) = join_as(&c, &token, "node-a").await.unwrap();
    let (b, b_cert, b_key) = join_as(&c, &token, "node-b").await.unwrap();
    assert_eq!((a.as_str(), b.as_str()), ("node-a", "node-b"));

    // Node A asks to be B: it registers as A, the name in its certificate.
    let mut client_a = dispatcher(&c, Some((&a_cert, &a_key))).await.unwrap();
    let reg = client_a.register(register(&b)).await.unwrap().into_inner();
    assert_eq!(reg.node_name, a);

    // Node B cannot use A's session.
    let mut client_b = dispatcher(&c, Some((&b_cert, &b_key))).await.unwrap();
    let err = client_b
        .heartbeat(swarm_proto::v1::HeartbeatRequest {
            session_id: reg.session_id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("belongs to node"), "{err:?}");

    // An admin certificate is not a node's.
    let (crt, key) = c.pki.write_admin_credentials(c._dir.path()).unwrap();
    let mut admin = dispatcher(&c, Some((&read(&crt), &read(&key))))
        .await
        .unwrap();
    let err = admin.register(register("admin")).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("only node certificates"), "{err:?}");

    // Without a certificate there is no connection at all.
    let refused = match dispatcher(&c, None).await {
        Err(_) => true,
        Ok(mut anon) => anon.register(register("anon")).await.is_err(),
    };
    assert!(
        refused,
        "the dispatcher served a client without a certificate"
    );

    // A certificate of another cluster is refused too.
    let other = ClusterCa::generate("elsewhere").unwrap();
    let (fcert, fkey) = other
        .issue(
            &Identity::new("node-a", Role::Worker, "elsewhere"),
            &[],
            Duration::from_secs(3600),
        )
        .unwrap();
    let refused = match dispatcher(&c, Some((&fcert, &fkey))).await {
        Err(_) => true,
        Ok(mut foreign) => foreign.register(register("node-a")).await.is_err(),
    };
    assert!(refused, "the dispatcher served a foreign certificate");
    c.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn joining_names_the_node_and_creates_it_once() {
    let c = start().await;
    let token = c.tokens.0.to_string();
    let (first, _, _) = join_as(&c, &token, "Worker 1").await.unwrap();
    assert_eq!(first, "worker-1");
    // The name is taken: the second machine gets it with a suffix.
    let (second, _, _) = join_as(&c, &token, "worker-1").await.unwrap();
    assert!(
        second.starts_with("worker-1-") && second.len() > "worker-1-".len(),
        "{second}"
    );
    for (name, role) in [(&first, "worker"), (&second, "worker")] {
        let (code, node) = send(c.admin.get(format!("{}/v1/nodes/{name}", c.url))).await;
        assert_eq!(code, 200, "{node}");
        assert_eq!(node["spec"]["role"], role, "{node}");
    }
    let (manager, _, _) = join_as(&c, &c.tokens.1.to_string(), "m").await.unwrap();
    let (_, node) = send(c.admin.get(format!("{}/v1/nodes/{manager}", c.url))).await;
    assert_eq!(node["spec"]["role"], "manager", "{node}");
    c.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn join_tokens_are_shown_and_rotated_to_admins_only() {
    let c = start().await;
    let (code, tokens) = send(c.admin.get(format!("{}/v1/join-tokens", c.url))).await;
    assert_eq!(code, 200);
    assert_eq!(tokens["worker"], c.tokens.0.to_string());
    let (code, rotated) = send(
        c.admin
            .post(format!("{}/v1/join-tokens/worker/rotate", c.url)),
    )
    .await;
    assert_eq!(code, 200, "{rotated}");
    let fresh = rotated["token"].as_str().unwrap().to_string();
    assert_ne!(fresh, c.tokens.0.to_string());
    assert!(join(&c, &c.tokens.0.to_string()).await.is_err());
    let (_, node) = join(&c, &fresh).await.unwrap();
    let (code, body) = send(node.get(format!("{}/v1/join-tokens", c.url))).await;
    assert_eq!(code, 403, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("join tokens"),
        "{body}"
    );
    let (code, body) = send(
        c.admin
            .post(format!("{}/v1/join-tokens/root/rotate", c.url)),
    )
    .await;
    assert_eq!(code, 400, "{body}");
    c.server.shutdown().await.unwrap();
}

/// The certificate a TLS server at `addr` presents to a new connection that trusts only the
/// cluster CA (with `identity` as the client certificate, for the dispatcher).
async fn presented_cert(
    addr: std::net::SocketAddr,
    ca_pem: &str,
    identity: Option<(&str, &str)>,
) -> Vec<u8> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = connector
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// The end of a DER certificate's validity.
fn not_after(der: &[u8]) -> std::time::SystemTime {
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    std::time::UNIX_EPOCH + Duration::from_secs(cert.validity().not_after.timestamp() as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_serving_certificate_is_renewed_without_a_restart() {
    // Certificates that last 6 s: the apiserver renews its own at 3–4.8 s.
    let c = start_with(Duration::from_secs(6)).await;
    let addr = c.server.addr;
    let (node, cert, key) = join_as(&c, &c.tokens.0.to_string(), "node-r")
        .await
        .unwrap();
    assert_eq!(node, "node-r");
    let first = presented_cert(addr, &c.ca_pem, None).await;
    let dispatched = presented_cert(
        c.server.dispatcher_addr.unwrap(),
        &c.ca_pem,
        Some((&cert, &key)),
    )
    .await;
    assert_eq!(
        dispatched, first,
        "one certificate for the REST API and the dispatcher"
    );

    // Wait (well past) until the first certificate has expired; new connections still
    // handshake (trusting only the CA, so each certificate presented is valid), and are
    // shown a different certificate than the first.
    let expired_at = not_after(&first);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::SystemTime::now() <= expired_at + Duration::from_secs(1) {
        assert!(
            std::time::Instant::now() < deadline,
            "the first certificate never expired"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let now_served = presented_cert(addr, &c.ca_pem, None).await;
    assert_ne!(now_served, first, "the serving certificate was not renewed");
    assert!(not_after(&now_served) > std::time::SystemTime::now());
    // A client that connected before the renewals works, and so does a new one.
    let (code, _) = send(c.admin.get(format!("{}/v1/services", c.url))).await;
    assert_eq!(code, 200);
    let (admin_crt, admin_key) = c.pki.write_admin_credentials(c._dir.path()).unwrap();
    let fresh = client(&c.ca_pem, Some((&read(&admin_crt), &read(&admin_key))));
    let (code, _) = send(fresh.get(format!("{}/v1/services", c.url))).await;
    assert_eq!(code, 200);
    c.server.shutdown().await.unwrap();
}
