//! kubectl-style automation run as the built binary against an apiserver in this process:
//! `swarm wait`, `swarm events`, `swarm rollout` and `swarm completion`.

mod common;

use common::{finish, start};
use swarm_api::{Service, ServiceRevision, TaskState};
use swarm_client::ListParams;
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::test(flavor = "multi_thread")]
async fn wait_for_jsonpath_delete_and_timeout() {
    let c = start().await;
    c.swarm(&["service", "create", "-d", "--name", "web", "app:1"])
        .await
        .ok();
    let child = c
        .command(&[
            "wait",
            "--for=jsonpath={.status.replicas.running}=2",
            "service/web",
        ])
        .spawn()
        .unwrap();
    c.service_status("web", |s| s.status.replicas.running = 2)
        .await;
    let run = finish(child).await.ok();
    assert_eq!(run.stdout, "service/web condition met\n");

    let child = c
        .command(&["wait", "--for=delete", "svc/web"])
        .spawn()
        .unwrap();
    c.client.delete::<Service>("web", None).await.unwrap();
    assert_eq!(
        finish(child).await.ok().stdout,
        "service/web condition met\n"
    );
    // Already gone: met at once.
    c.swarm(&["wait", "--for=delete", "service/web"]).await.ok();

    c.node("node-1").await;
    let run = c
        .swarm(&[
            "wait",
            "--for=condition=Ready",
            "--timeout",
            "1s",
            "node/node-1",
        ])
        .await;
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert!(
        run.stderr
            .contains("timed out waiting for the condition on nodes/node-1"),
        "{run:#?}"
    );
    // A service with no running task has not converged, nodes or not.
    c.swarm(&["service", "create", "-d", "--name", "api", "app:1"])
        .await
        .ok();
    let run = c
        .swarm(&[
            "wait",
            "--for=condition=Converged",
            "--timeout",
            "1s",
            "service/api",
        ])
        .await;
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert!(
        run.stderr
            .contains("timed out waiting for the condition on services/api"),
        "{run:#?}"
    );
    let bad = c.swarm(&["wait", "--for=ready", "node/node-1"]).await;
    assert!(bad.stderr.contains("condition=NAME"), "{bad:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn wait_for_convergence_of_a_service() {
    let c = start().await;
    c.node("node-1").await;
    c.swarm(&[
        "service",
        "create",
        "-d",
        "--name",
        "web",
        "--update-monitor",
        "0s",
        "app:1",
    ])
    .await
    .ok();
    let child = c
        .command(&["wait", "--for=condition=Converged", "service/web"])
        .spawn()
        .unwrap();
    let svc = c.service_when("web", |_| true).await;
    c.task(&svc, 1, 1, "node-1", TaskState::Running, "").await;
    assert_eq!(
        finish(child).await.ok().stdout,
        "service/web condition met\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn events_are_json_lines_resumable_by_revision() {
    let c = start().await;
    let since = c
        .client
        .list::<Service>(&ListParams::default())
        .await
        .unwrap()
        .resource_version;
    let mut child = c
        .command(&["events", "-o", "json", "--since", &since])
        .spawn()
        .unwrap();
    c.swarm(&["network", "create", "front"]).await.ok();
    c.swarm(&["service", "create", "-d", "--name", "web", "app:1"])
        .await
        .ok();
    c.swarm(&["service", "rm", "web"]).await.ok();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let line = tokio::time::timeout(common::PATIENCE, lines.next_line())
            .await
            .expect("an event line")
            .unwrap()
            .expect("the stream goes on");
        let ev: serde_json::Value = serde_json::from_str(&line).unwrap();
        seen.push(format!(
            "{} {} {}",
            ev["type"].as_str().unwrap(),
            ev["object"]["kind"].as_str().unwrap(),
            ev["object"]["metadata"]["name"].as_str().unwrap()
        ));
        assert!(
            ev["object"]["metadata"]["resourceVersion"].is_string(),
            "{line}"
        );
    }
    seen.sort();
    assert_eq!(
        seen,
        vec![
            "ADDED Network front",
            "ADDED Service web",
            "DELETED Service web"
        ]
    );
    child.kill().await.unwrap();

    // Text lines, from the revision after the network was created: only the service's events.
    let net_rv = c
        .client
        .get::<swarm_api::Network>("front")
        .await
        .unwrap()
        .metadata
        .resource_version;
    let mut child = c
        .command(&["events", "--since", &net_rv, "--kind", "service"])
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(common::PATIENCE, lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        first.contains(" service create web (resourceVersion="),
        "{first}"
    );
    child.kill().await.unwrap();
}

/// Reads `n` JSON event lines of `child` as `(resourceVersion, "TYPE Kind name")`.
async fn event_lines(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    n: usize,
) -> Vec<(u64, String)> {
    let mut seen = Vec::new();
    while seen.len() < n {
        let line = tokio::time::timeout(common::PATIENCE, lines.next_line())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "event {} of {n} within the patience window: {seen:?}",
                    seen.len() + 1
                )
            })
            .unwrap()
            .expect("the stream goes on");
        let ev: serde_json::Value = serde_json::from_str(&line).unwrap();
        let rv = ev["object"]["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        seen.push((
            rv,
            format!(
                "{} {} {}",
                ev["type"].as_str().unwrap(),
                ev["object"]["kind"].as_str().unwrap(),
                ev["object"]["metadata"]["name"].as_str().unwrap()
            ),
        ));
    }
    seen
}

/// Events of several kinds — written interleaved, and some in one transaction — come out in
/// store-revision order (each kind is its own watch; the CLI merges them), and `--since` the
/// revision of any printed event resumes with exactly the events after it.
#[tokio::test(flavor = "multi_thread")]
async fn events_of_several_kinds_come_out_in_revision_order_and_resume_exactly() {
    use swarm_api::{Config, DataSpec, Network, NetworkSpec};
    let c = start().await;
    let since = c
        .client
        .list::<Service>(&ListParams::default())
        .await
        .unwrap()
        .resource_version;
    // Written before `events` starts, so the CLI receives each kind's events as one replayed
    // batch per kind: it must interleave them itself (two configs per network, so taking the
    // watches in turn would not happen to get it right).
    let mut written = Vec::new();
    for i in 0..3 {
        let n = c
            .client
            .create(&Network::new(format!("net-{i}"), NetworkSpec::default()))
            .await
            .unwrap();
        written.push((
            n.metadata.resource_version.parse::<u64>().unwrap(),
            format!("ADDED Network net-{i}"),
        ));
        for j in ["a", "b"] {
            let cfg = c
                .client
                .create(&Config::new(format!("cfg-{i}{j}"), DataSpec::default()))
                .await
                .unwrap();
            written.push((
                cfg.metadata.resource_version.parse::<u64>().unwrap(),
                format!("ADDED Config cfg-{i}{j}"),
            ));
        }
    }
    let kinds = ["--kind", "network", "--kind", "config", "--kind", "service"];
    let mut args = vec!["events", "-o", "json", "--since", &since];
    args.extend(kinds);
    let mut child = c.command(&args).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = event_lines(&mut lines, written.len()).await;
    assert_eq!(first, written, "in revision order, nothing missing");

    // Live: a stack deploy writes a network and a service in one transaction (one revision);
    // a config written after it comes after both.
    let dir = c.dir.path().join("stack");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("shop.yml");
    std::fs::write(&file, "services:\n  api:\n    image: api:1\n").unwrap();
    c.swarm(&[
        "stack",
        "deploy",
        "-d",
        "-c",
        file.to_str().unwrap(),
        "shop",
    ])
    .await
    .ok();
    let late = c
        .client
        .create(&Config::new("cfg-late", DataSpec::default()))
        .await
        .unwrap();
    let live = event_lines(&mut lines, 3).await;
    child.kill().await.unwrap();
    assert_eq!(
        live[0].0, live[1].0,
        "one transaction, one revision: {live:?}"
    );
    assert_eq!(
        [live[0].1.as_str(), live[1].1.as_str()],
        ["ADDED Network shop_default", "ADDED Service shop_api"],
        "within a revision, by kind"
    );
    assert_eq!(
        live[2],
        (
            late.metadata.resource_version.parse().unwrap(),
            "ADDED Config cfg-late".to_string()
        )
    );
    let all: Vec<(u64, String)> = first.into_iter().chain(live).collect();

    // Resuming from any printed event's revision gives exactly what followed it.
    for cut in [2, 5, 9] {
        let from = all[cut - 1].0.to_string();
        let mut args = vec!["events", "-o", "json", "--since", &from];
        args.extend(kinds);
        let mut child = c.command(&args).spawn().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let rest = event_lines(&mut lines, all.len() - cut).await;
        child.kill().await.unwrap();
        assert_eq!(rest, all[cut..], "resumed from {from}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rollout_history_and_undo() {
    let c = start().await;
    c.swarm(&["service", "create", "-d", "--name", "web", "app:1"])
        .await
        .ok();
    let empty = c.swarm(&["rollout", "history", "service/web"]).await.ok();
    assert!(
        empty.stderr.contains("no recorded revisions yet"),
        "{empty:#?}"
    );
    let v1 = c.service_when("web", |_| true).await;
    c.swarm(&["service", "update", "-d", "--image", "app:2", "web"])
        .await
        .ok();
    let v2 = c.service_when("web", |s| s.metadata.generation == 2).await;
    c.service_status("web", |s| {
        s.status.revisions = vec![
            ServiceRevision {
                generation: 1,
                template: v1.spec.task_template.clone(),
                created_at: None,
            },
            ServiceRevision {
                generation: 2,
                template: v2.spec.task_template.clone(),
                created_at: None,
            },
        ]
    })
    .await;
    let history = c.swarm(&["rollout", "history", "service/web"]).await.ok();
    assert_eq!(
        history.stdout,
        "service/web\nREVISION      IMAGE     CREATED\n1             app:1\n2 (current)   app:2\n"
    );
    let undo = c
        .swarm(&["rollout", "undo", "-d", "--to-revision", "1", "service/web"])
        .await
        .ok();
    assert_eq!(undo.stdout, "service/web rolled back\n");
    let s = c.client.get::<Service>("web").await.unwrap();
    assert_eq!(s.metadata.annotations["swarm.rollback"], "1");
    let missing = c
        .swarm(&["rollout", "undo", "--to-revision", "9", "service/web"])
        .await;
    assert!(missing.stderr.contains("has no revision 9"), "{missing:#?}");
}

/// `rollout status` waits for the latest change and says it rolled out; a paused update
/// fails it with the reason.
#[tokio::test(flavor = "multi_thread")]
async fn rollout_status_waits_and_fails_on_a_paused_update() {
    let c = start().await;
    c.node("node-1").await;
    c.swarm(&[
        "service",
        "create",
        "-d",
        "--name",
        "web",
        "--update-monitor",
        "0s",
        "app:1",
    ])
    .await
    .ok();
    let child = c
        .command(&["rollout", "status", "service/web"])
        .spawn()
        .unwrap();
    let svc = c.service_when("web", |_| true).await;
    c.task(&svc, 1, 1, "node-1", TaskState::Running, "").await;
    let done = finish(child).await.ok();
    assert!(
        done.stdout
            .ends_with("service \"web\" successfully rolled out\n"),
        "{done:#?}"
    );

    c.swarm(&["service", "update", "-d", "--image", "app:2", "web"])
        .await
        .ok();
    c.pause_update("web", "web.1.2").await;
    let paused = c.swarm(&["rollout", "status", "service/web"]).await;
    assert_eq!(paused.code, Some(1), "{paused:#?}");
    assert!(
        paused.stderr.contains("update paused due to failure"),
        "{paused:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn completion_scripts_know_the_commands() {
    let c = start().await;
    for shell in ["bash", "zsh", "fish"] {
        let run = c.swarm(&["completion", shell]).await.ok();
        assert!(run.stdout.contains("swarm"), "{shell}");
        assert!(
            run.stdout.contains("rollback"),
            "{shell}: {}",
            &run.stdout[..200.min(run.stdout.len())]
        );
    }
    let bad = c.swarm(&["completion", "cmd"]).await;
    assert_eq!(bad.code, Some(2));
}
