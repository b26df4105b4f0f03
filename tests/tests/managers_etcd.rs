//! Two managers over one etcd (`swarm server --store etcd`, then `swarm join` with the manager
//! token): one CA, one pair of join tokens, one set of objects. And a manager join against an
//! embedded-store server is refused, saying why.

use std::path::Path;

use swarm_apiserver::store::etcd_testing::EtcdServer;
use swarm_tests::{Lines, Server, api_addr, eventually, swarm_command};

/// `swarm ARGS` with the credentials file `config`.
fn swarm(home: &Path, config: &Path, args: &[&str]) -> std::process::Output {
    swarm_command(home)
        .env("SWARM_CONFIG", config)
        .args(args)
        .output()
        .unwrap()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_second_manager_joins_over_etcd_and_shares_everything() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let etcd = rt.block_on(EtcdServer::start());
    let m1 =
        Server::start_with(&["--store", "etcd", "--etcd-endpoints", &etcd.endpoint()]).unwrap();
    let token = m1.swarm(&["join-token", "-q", "manager"]).ok();
    let token = token.stdout.trim().to_string();

    // Manager 2 joins through manager 1 and runs its own control plane.
    let home = m1.dir();
    let data2 = home.join("manager-2");
    let mut join = swarm_command(home);
    join.args(["join", "--token", &token, &api_addr(&m1.config)])
        .args([
            "--listen",
            "127.0.0.1:0",
            "--dispatcher-listen",
            "127.0.0.1:0",
        ])
        .args([
            "--runtime",
            "none",
            "--node-name",
            "manager-2",
            "--data-dir",
        ])
        .arg(&data2);
    let mut manager2 = Lines::spawn(&mut join).unwrap();
    let (joined, _) = manager2
        .until(|l| l.starts_with("This node joined a swarm as a manager"))
        .unwrap();
    assert!(joined.contains(&etcd.endpoint()), "{joined}");
    let conf2 = data2.join("admin.conf");
    eventually("manager 2 to write its admin.conf", || {
        conf2.exists().then_some(())
    });
    assert_ne!(api_addr(&conf2), api_addr(&m1.config));
    // One CA: the files of both managers hold the same CA certificate.
    let ca = |dir: &Path| std::fs::read_to_string(dir.join("pki/ca.crt")).unwrap();
    assert_eq!(ca(&data2), ca(m1.config.parent().unwrap()));
    // The CA key is in etcd only sealed.
    let raw = rt.block_on(async {
        use swarm_apiserver::store::Store as _;
        let etcd_store = swarm_apiserver::store::etcd::EtcdStore::connect(&[etcd.endpoint()])
            .await
            .unwrap();
        etcd_store
            .get("/swarm/pki/ca-key")
            .await
            .unwrap()
            .unwrap()
            .value
    });
    assert!(
        !String::from_utf8_lossy(&raw).contains("PRIVATE KEY"),
        "the CA key is in etcd in the clear"
    );

    // An object created through manager 1 is served by manager 2.
    m1.swarm(&["network", "create", "backend"]).ok();
    let got = eventually("manager 2 to serve the network", || {
        let out = swarm(home, &conf2, &["get", "networks", "backend"]);
        out.status.success().then(|| stdout(&out))
    });
    assert!(got.contains("backend"), "{got}");

    // A worker joins through manager 2 and is seen through manager 1.
    let worker_token = stdout(&swarm(home, &conf2, &["join-token", "-q", "worker"]));
    let worker_token = worker_token.trim().to_string();
    let mut worker = swarm_command(home);
    worker
        .args(["join", "--token", &worker_token, &api_addr(&conf2)])
        .args(["--runtime", "sim", "--node-name", "w2", "--data-dir"])
        .arg(home.join("worker"));
    let _worker = Lines::spawn(&mut worker).unwrap();
    eventually("the worker to be ready through manager 1", || {
        let ls = m1.swarm(&["node", "ls", "--format", "{{.Hostname}} {{.Status}}"]);
        ls.stdout
            .lines()
            .any(|l| l == "w2-0000 Ready")
            .then_some(())
    });

    // A token rotated on manager 1 is the token manager 2 shows, and the old one is refused
    // by manager 2.
    let rotated = m1.swarm(&["join-token", "--rotate", "-q", "worker"]).ok();
    let seen = stdout(&swarm(home, &conf2, &["join-token", "-q", "worker"]));
    assert_eq!(seen.trim(), rotated.stdout.trim());
    assert_ne!(seen.trim(), worker_token);
    let late = swarm_command(home)
        .args([
            "join",
            "--token",
            &worker_token,
            &api_addr(&conf2),
            "--data-dir",
        ])
        .arg(home.join("late"))
        .output()
        .unwrap();
    assert!(!late.status.success());
    assert!(
        String::from_utf8_lossy(&late.stderr).contains("not valid (it may have been rotated)"),
        "{late:#?}"
    );
    let _ = manager2.interrupt();
}

#[test]
fn a_manager_cannot_join_a_swarm_on_the_embedded_store() {
    let server = Server::start_api_only().unwrap();
    let token = server.swarm(&["join-token", "-q", "manager"]).ok();
    let out = swarm_command(server.dir())
        .args([
            "join",
            "--token",
            token.stdout.trim(),
            &api_addr(&server.config),
        ])
        .args(["--runtime", "none", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(server.dir().join("manager-2"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("embedded store") && stderr.contains("--store etcd"),
        "{stderr}"
    );
}
