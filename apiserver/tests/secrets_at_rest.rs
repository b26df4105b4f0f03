//! Secrets are encrypted at rest: the plaintext never reaches the embedded store's files, the
//! API still serves it, and it survives a restart (the key file persists in the data dir).

use serde_json::{Value, json};
use swarm_apiserver::server::{SECRETS_KEY_FILE, Server, ServerOptions};

/// base64 of a phrase that appears nowhere else.
const DATA: &str = "dGhlLXBsYWludGV4dC10aGF0LW11c3Qtbm90LWxlYWs=";
const PLAIN: &str = "the-plaintext-that-must-not-leak";

fn options(dir: &std::path::Path) -> ServerOptions {
    ServerOptions {
        data_dir: dir.to_path_buf(),
        ..ServerOptions::loopback()
    }
}

fn files_contain(dir: &std::path::Path, needle: &str) -> bool {
    std::fs::read_dir(dir).unwrap().any(|e| {
        let bytes = std::fs::read(e.unwrap().path()).unwrap_or_default();
        bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
    })
}

async fn get_secret(url: &str) -> Value {
    reqwest::get(format!("{url}/v1/secrets/db?showData=true"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn secret_data_is_never_stored_in_plaintext_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::bind(options(dir.path())).await.unwrap().spawn();
    let url = server.url();
    let created = reqwest::Client::new()
        .post(format!("{url}/v1/secrets"))
        .json(&json!({"kind": "Secret", "metadata": {"name": "db"}, "spec": {"data": DATA}}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 201);
    assert_eq!(get_secret(&url).await["spec"]["data"], DATA);
    server.shutdown().await.unwrap();

    // Neither the base64 form the API carries nor the decoded text is in any store file.
    assert!(!files_contain(dir.path(), DATA));
    assert!(!files_contain(dir.path(), PLAIN));
    assert!(dir.path().join(SECRETS_KEY_FILE).exists());

    let again = Server::bind(options(dir.path())).await.unwrap().spawn();
    assert_eq!(get_secret(&again.url()).await["spec"]["data"], DATA);
    again.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_lost_key_file_makes_secrets_unreadable_not_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::bind(options(dir.path())).await.unwrap().spawn();
    let url = server.url();
    reqwest::Client::new()
        .post(format!("{url}/v1/secrets"))
        .json(&json!({"kind": "Secret", "metadata": {"name": "db"}, "spec": {"data": DATA}}))
        .send()
        .await
        .unwrap();
    server.shutdown().await.unwrap();

    // A new key is made on start; the old secret cannot be opened with it, and the API says so.
    std::fs::remove_file(dir.path().join(SECRETS_KEY_FILE)).unwrap();
    let again = Server::bind(options(dir.path())).await.unwrap().spawn();
    let resp = reqwest::get(format!("{}/v1/secrets/db?showData=true", again.url()))
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 500);
    let status: Value = resp.json().await.unwrap();
    assert!(
        status["message"]
            .as_str()
            .unwrap_or_default()
            .contains("encryption key"),
        "{status}"
    );
    again.shutdown().await.unwrap();
}

#[tokio::test]
async fn secret_data_is_write_only_unless_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::bind(options(dir.path())).await.unwrap().spawn();
    let url = server.url();
    let http = reqwest::Client::new();
    let watch = http
        .get(format!("{url}/v1/secrets?watch=true"))
        .send()
        .await
        .unwrap();
    let created: Value = http
        .post(format!("{url}/v1/secrets"))
        .json(&json!({"kind": "Secret", "metadata": {"name": "db"}, "spec": {"data": DATA}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(created["spec"]["data"], "");
    // Watchers see the secret without its data too.
    let mut events = watch.bytes_stream();
    let mut line = Vec::new();
    while !line.contains(&b'\n') {
        use futures::StreamExt;
        line.extend_from_slice(&events.next().await.unwrap().unwrap());
    }
    let event: Value = serde_json::from_slice(line.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!(event["type"], "ADDED");
    assert_eq!(event["object"]["spec"]["data"], "");
    assert!(!String::from_utf8_lossy(&line).contains(DATA));
    let plain: Value = reqwest::get(format!("{url}/v1/secrets/db"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(plain["spec"]["data"], "");
    let list: Value = reqwest::get(format!("{url}/v1/secrets"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"][0]["spec"]["data"], "");
    let list: Value = reqwest::get(format!("{url}/v1/secrets?showData=true"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"][0]["spec"]["data"], DATA);

    // Writing back what was read (data empty) relabels without losing the data.
    let mut relabel = plain.clone();
    relabel["metadata"]["labels"] = json!({"team": "db"});
    let r = http
        .put(format!("{url}/v1/secrets/db"))
        .json(&relabel)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let after = get_secret(&url).await;
    assert_eq!(after["spec"]["data"], DATA);
    assert_eq!(after["metadata"]["labels"]["team"], "db");
    server.shutdown().await.unwrap();
}
