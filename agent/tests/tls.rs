//! An agent in a TLS cluster: it joins with the token on first start, registers under the
//! name its certificate carries, and renews its certificate without a restart.

use std::time::Duration;

use swarm_agent::credentials::{SharedCredentials, TlsOptions, renew_once};
use swarm_agent::{AgentOptions, RuntimeKind, TlsJoin};
use swarm_api::{Node, NodeState};
use swarm_apiserver::server::{Server, ServerOptions};
use swarm_client::{Client, ClientConfig, ListParams};

struct Cluster {
    server: swarm_apiserver::server::RunningServer,
    admin: Client,
    token: String,
    dir: tempfile::TempDir,
}

async fn start() -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let opts = ServerOptions {
        data_dir: dir.path().join("server"),
        tls: true,
        ..ServerOptions::loopback_with_dispatcher()
    };
    let server = Server::bind(opts).await.unwrap();
    let pki = server.pki().unwrap().clone();
    let server = server.spawn();
    let (cert, key) = pki.write_admin_credentials(dir.path()).unwrap();
    let admin = Client::from_config(&ClientConfig::with_credentials(
        "t",
        server.url(),
        pki.ca_path(),
        cert,
        key,
    ))
    .unwrap();
    Cluster {
        server,
        admin,
        token: pki.tokens().worker.to_string(),
        dir,
    }
}

async fn ready_nodes(admin: &Client) -> Vec<String> {
    let nodes = admin.list::<Node>(&ListParams::default()).await.unwrap();
    nodes
        .items
        .into_iter()
        .filter(|n| n.status.state == NodeState::Ready)
        .map(|n| n.metadata.name)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_joins_with_the_token_and_renews_its_certificate() {
    let c = start().await;
    let data = c.dir.path().join("agent");
    let mut opts = AgentOptions::new(c.server.dispatcher_addr.unwrap().to_string(), &data);
    opts.runtime = RuntimeKind::Sim;
    opts.node_name = Some("edge".into());
    opts.tls = Some(TlsJoin {
        api_url: c.server.url(),
        token: Some(c.token.clone()),
    });
    let (stop, rx) = tokio::sync::watch::channel(false);
    let agent = tokio::spawn(swarm_agent::run(opts.clone(), rx));
    tokio::time::timeout(Duration::from_secs(20), async {
        while ready_nodes(&c.admin).await != vec!["edge-0000".to_string()] {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the simulated node joins and becomes ready");
    stop.send_replace(true);
    let _ = agent.await;

    // Renewal: a new key and certificate, same identity, saved in place.
    let pki = data.join("nodes/edge-0000/pki");
    let creds = SharedCredentials::load(&pki).unwrap();
    let before = creds.get();
    let tls = TlsOptions {
        dir: pki.clone(),
        api_url: c.server.url(),
    };
    renew_once(&tls, &creds).await.unwrap();
    let after = creds.get();
    assert_eq!(after.identity, before.identity);
    assert_ne!(after.cert_pem, before.cert_pem);
    assert_ne!(after.key_pem, before.key_pem);
    let saved = std::fs::read_to_string(pki.join("node.crt")).unwrap();
    assert_eq!(saved, after.cert_pem);

    // Restarted without a token, the agent uses the renewed certificate it kept.
    opts.tls = Some(TlsJoin {
        api_url: c.server.url(),
        token: None,
    });
    let restarted = swarm_api::Timestamp::now();
    let (stop, rx) = tokio::sync::watch::channel(false);
    let agent = tokio::spawn(swarm_agent::run(opts, rx));
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let node = c.admin.get::<Node>("edge-0000").await.unwrap();
            let registered_again = node.status.state == NodeState::Ready
                && node.status.last_heartbeat > Some(restarted);
            if registered_again {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the agent comes back with its renewed certificate");
    stop.send_replace(true);
    let _ = agent.await;
    c.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_certificate_or_a_token_the_agent_says_to_join_first() {
    let c = start().await;
    let mut opts = AgentOptions::new(
        c.server.dispatcher_addr.unwrap().to_string(),
        c.dir.path().join("agent"),
    );
    opts.runtime = RuntimeKind::Sim;
    opts.tls = Some(TlsJoin {
        api_url: c.server.url(),
        token: None,
    });
    let (_stop, rx) = tokio::sync::watch::channel(false);
    let err = swarm_agent::run(opts, rx).await.unwrap_err().to_string();
    assert!(err.contains("join the cluster first"), "{err}");
    c.server.shutdown().await.unwrap();
}
