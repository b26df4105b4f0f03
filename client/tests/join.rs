//! Joining a TLS apiserver: the CA is checked against the token before anything is sent, the
//! certificate carries the identity the manager chose, and it renews with the same identity.

use swarm_apiserver::server::{RunningServer, Server, ServerOptions};
use swarm_client::join::{JoinError, NodeCredentials, join, renewal_time, validity};
use swarm_client::{Client, ClientError};
use swarm_pki::{ClusterCa, JoinToken, Role};

async fn start(dir: &std::path::Path) -> (RunningServer, String, String) {
    let opts = ServerOptions {
        data_dir: dir.to_path_buf(),
        tls: true,
        ..ServerOptions::loopback()
    };
    let server = Server::bind(opts).await.unwrap();
    let tokens = server.pki().unwrap().tokens();
    let server = server.spawn();
    let url = server.url();
    (server, url, tokens.worker.to_string())
}

#[tokio::test]
async fn a_worker_joins_uses_its_certificate_and_renews_it() {
    let dir = tempfile::tempdir().unwrap();
    let (server, url, token) = start(&dir.path().join("manager")).await;

    let creds = join(&url, &token, "worker-1").await.unwrap();
    assert_eq!(creds.role(), Role::Worker);
    // The node is named as it asked, and joining created its Node.
    assert_eq!(creds.identity.id, "worker-1");

    // Saved, reloaded, and used through a credentials file: the node may read its own Node
    // and may not list services (403).
    let node_dir = dir.path().join("node");
    creds.save(&node_dir).unwrap();
    let again = NodeCredentials::load(&node_dir).unwrap();
    assert_eq!(again.identity, creds.identity);
    let client = Client::from_config(&NodeCredentials::client_config(&node_dir, &url)).unwrap();
    let own = client
        .get::<swarm_api::Node>(&creds.identity.id)
        .await
        .unwrap();
    assert_eq!(own.spec.role, swarm_api::NodeRole::Worker);
    match client
        .list_all::<swarm_api::Service>(&Default::default())
        .await
    {
        Err(ClientError::Api(s)) => assert_eq!(s.code, 403, "{s:?}"),
        other => panic!("expected 403, got {other:?}"),
    }

    // Renewal keeps the identity, changes the key and certificate.
    let renewed = creds.renew(&url).await.unwrap();
    assert_eq!(renewed.identity, creds.identity);
    assert_ne!(renewed.cert_pem, creds.cert_pem);
    assert_ne!(renewed.key_pem, creds.key_pem);

    // Renewal is planned between 50 % and 80 % of the life.
    let (start, end) = validity(&creds.cert_pem).unwrap();
    let life = end.duration_since(start).unwrap();
    let early = renewal_time(&creds.cert_pem, 0.0).unwrap();
    let late = renewal_time(&creds.cert_pem, 0.999).unwrap();
    assert_eq!(early.duration_since(start).unwrap(), life / 2);
    let late_share = late.duration_since(start).unwrap().as_secs_f64() / life.as_secs_f64();
    assert!((0.79..0.8).contains(&late_share), "{late_share}");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_token_for_another_cluster_is_caught_before_the_csr_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let (server, url, _) = start(dir.path()).await;
    let other = ClusterCa::generate("elsewhere").unwrap();
    let foreign = JoinToken::generate(other.digest()).unwrap().to_string();
    let err = join(&url, &foreign, "w").await.unwrap_err();
    assert!(matches!(err, JoinError::CaMismatch { .. }), "{err}");
    assert!(err.to_string().contains("refusing to trust it"));

    let err = join(&url, "SWMTKN-garbage", "w").await.unwrap_err();
    assert!(err.to_string().contains("swarm join-token"), "{err}");
    server.shutdown().await.unwrap();
}
