//! `swarm service create|update|rollback|scale` wait for convergence against a real apiserver
//! in this process; the test plays the controllers and agents by writing tasks and statuses.

mod common;

use common::{Cluster, finish, start};
use swarm_api::{ServiceRevision, TaskState, UpdateState, UpdateStatus};

async fn cluster_with_nodes() -> Cluster {
    let c = start().await;
    c.node("node-1").await;
    c.node("node-2").await;
    c
}

#[tokio::test(flavor = "multi_thread")]
async fn create_waits_until_every_replica_runs() {
    let c = cluster_with_nodes().await;
    let child = c
        .command(&[
            "service",
            "create",
            "--name",
            "web",
            "--replicas",
            "2",
            "--update-monitor",
            "0s",
            "nginx:1.27",
        ])
        .spawn()
        .unwrap();
    let svc = c.service_when("web", |_| true).await;
    let t1 = c.task(&svc, 1, 1, "node-1", TaskState::Pending, "").await;
    c.set_state(t1, TaskState::Running, "").await;
    c.task(&svc, 2, 1, "node-2", TaskState::Running, "").await;
    let run = finish(child).await.ok();
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        lines[0].len(),
        32,
        "the first line is the service ID: {run:#?}"
    );
    assert!(
        lines.contains(&"overall progress: 2 out of 2 tasks"),
        "{run:#?}"
    );
    assert!(lines.contains(&"1/2: running"), "{run:#?}");
    assert!(lines.contains(&"2/2: running"), "{run:#?}");
    assert_eq!(lines.last(), Some(&"verify: Service converged"), "{run:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn detach_returns_at_once_and_quiet_prints_only_the_id() {
    let c = cluster_with_nodes().await;
    let run = c
        .swarm(&["service", "create", "-d", "--name", "web", "nginx"])
        .await
        .ok();
    assert_eq!(run.stdout.lines().count(), 1, "{run:#?}");
    assert!(c.client.get::<swarm_api::Service>("web").await.is_ok());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_update_fails_with_the_reason() {
    let c = cluster_with_nodes().await;
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
    let svc = c.service_when("web", |_| true).await;
    c.task(&svc, 1, 1, "node-1", TaskState::Running, "").await;
    let child = c
        .command(&["service", "update", "--image", "app:2", "web"])
        .spawn()
        .unwrap();
    let svc = c
        .service_when("web", |s| s.spec.task_template.container.image == "app:2")
        .await;
    c.task(
        &svc,
        1,
        2,
        "node-1",
        TaskState::Failed,
        "task: non-zero exit (1)",
    )
    .await;
    c.pause_update("web", "web.1.2").await;
    let run = finish(child).await;
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert!(run.stdout.starts_with("web\n"), "{run:#?}");
    assert!(
        run.stderr.contains("error: service update paused: update paused due to failure or early termination of task web.1.2"),
        "{run:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_automatic_rollback_fails_the_update() {
    let c = cluster_with_nodes().await;
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
        .command(&["service", "update", "--image", "app:2", "web"])
        .spawn()
        .unwrap();
    c.service_when("web", |s| s.spec.task_template.container.image == "app:2")
        .await;
    c.service_status("web", |s| {
        s.status.update_status = Some(UpdateStatus {
            state: UpdateState::RollbackCompleted,
            message: "rollback completed".into(),
            ..Default::default()
        })
    })
    .await;
    let run = finish(child).await;
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert!(
        run.stderr
            .contains("service rolled back: rollback completed"),
        "{run:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tasks_that_keep_failing_end_the_wait() {
    let c = cluster_with_nodes().await;
    let child = c
        .command(&["service", "create", "--name", "web", "app:bad"])
        .spawn()
        .unwrap();
    let svc = c.service_when("web", |_| true).await;
    for attempt in 1..=3 {
        c.task(
            &svc,
            1,
            attempt,
            "node-1",
            TaskState::Failed,
            "task: non-zero exit (2)",
        )
        .await;
    }
    let run = finish(child).await;
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert!(
        run.stderr.contains("keep failing: web.1 failed 3 times"),
        "{run:#?}"
    );
    assert!(run.stderr.contains("non-zero exit (2)"), "{run:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn rollback_restores_the_previous_revision_and_waits_for_it() {
    let c = cluster_with_nodes().await;
    c.swarm(&[
        "service",
        "create",
        "-d",
        "--name",
        "web",
        "--rollback-monitor",
        "0s",
        "app:1",
    ])
    .await
    .ok();
    let v1 = c.service_when("web", |_| true).await;
    c.swarm(&["service", "update", "-d", "--image", "app:2", "web"])
        .await
        .ok();
    let v2 = c.service_when("web", |s| s.metadata.generation == 2).await;
    let revisions = vec![
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
    ];
    c.service_status("web", |s| s.status.revisions = revisions.clone())
        .await;
    let child = c.command(&["service", "rollback", "web"]).spawn().unwrap();
    // The CLI asks through the update controller's annotation …
    let asked = c
        .service_when("web", |s| {
            s.metadata.annotations.contains_key("swarm.rollback")
        })
        .await;
    assert_eq!(asked.metadata.annotations["swarm.rollback"], "previous");
    assert_eq!(asked.spec.task_template.container.image, "app:2");
    // … and keeps waiting while the current (v2) tasks run: the rollback has not started.
    c.task(&asked, 1, 2, "node-1", TaskState::Running, "").await;
    // The test plays the update controller: swap the template in, drop the annotation.
    let mut back = asked.clone();
    back.metadata.annotations.remove("swarm.rollback");
    back.spec.task_template = v1.spec.task_template.clone();
    let back = c.client.replace(&back).await.unwrap();
    c.service_status("web", |s| {
        s.status.update_status = Some(UpdateStatus {
            state: UpdateState::RollbackStarted,
            message: "manually requested rollback".into(),
            ..Default::default()
        })
    })
    .await;
    c.task(&back, 1, 3, "node-1", TaskState::Running, "").await;
    c.service_status("web", |s| {
        s.status.update_status = Some(UpdateStatus {
            state: UpdateState::RollbackCompleted,
            ..Default::default()
        })
    })
    .await;
    let run = finish(child).await.ok();
    assert!(
        run.stdout
            .starts_with("web\nrollback: manually requested rollback\n"),
        "{run:#?}"
    );
    assert!(
        run.stdout
            .contains("overall progress: rolling back update: 1 out of 1 tasks"),
        "{run:#?}"
    );
    assert!(
        run.stdout.ends_with("verify: Service converged\n"),
        "{run:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn scale_prints_and_waits_for_the_new_count() {
    let c = cluster_with_nodes().await;
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
    let svc = c.service_when("web", |_| true).await;
    c.task(&svc, 1, 1, "node-1", TaskState::Running, "").await;
    let child = c.command(&["service", "scale", "web=2"]).spawn().unwrap();
    let svc = c
        .service_when("web", |s| s.spec.replicas() == Some(2))
        .await;
    c.task(&svc, 2, 1, "node-2", TaskState::Running, "").await;
    let run = finish(child).await.ok();
    assert!(run.stdout.starts_with("web scaled to 2\n"), "{run:#?}");
    assert!(
        run.stdout.contains("overall progress: 2 out of 2 tasks"),
        "{run:#?}"
    );
    let err = c.swarm(&["service", "scale", "web=x"]).await;
    assert_eq!(err.code, Some(1));
    assert!(err.stderr.contains("whole number"), "{err:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_timeout_names_what_is_stuck() {
    let c = cluster_with_nodes().await;
    let run = c
        .swarm(&[
            "service",
            "create",
            "--name",
            "web",
            "--timeout",
            "1s",
            "app:1",
        ])
        .await;
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert!(run.stderr.contains("timed out after"), "{run:#?}");
    assert!(
        run.stderr
            .contains("0 out of 1 tasks running (1/1: no task yet)"),
        "{run:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_nodes_there_is_nothing_to_wait_for() {
    let c = start().await;
    let run = c
        .swarm(&["service", "create", "--name", "web", "app:1"])
        .await
        .ok();
    assert!(
        run.stderr.contains("no node has joined the cluster"),
        "{run:#?}"
    );
}

/// `stack deploy` and `apply` wait for the services they create or change, with the same
/// progress as `service create`; `stack deploy` fails when the update pauses.
#[tokio::test(flavor = "multi_thread")]
async fn stack_deploy_and_apply_wait_for_their_services() {
    let c = cluster_with_nodes().await;
    let dir = c.dir.path().join("stack");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("shop.yml");
    let write = |image: &str| {
        std::fs::write(
            &file,
            format!(
                "services:\n  api:\n    image: {image}\n    deploy:\n      update_config:\n        monitor: 0s\n"
            ),
        )
        .unwrap()
    };
    write("api:1");
    let path = file.to_str().unwrap().to_string();
    let child = c
        .command(&["stack", "deploy", "-c", &path, "shop"])
        .spawn()
        .unwrap();
    let svc = c.service_when("shop_api", |_| true).await;
    c.task(&svc, 1, 1, "node-1", TaskState::Running, "").await;
    let run = finish(child).await.ok();
    assert!(
        run.stdout.contains("Creating service shop_api\n"),
        "{run:#?}"
    );
    assert!(
        run.stdout.contains("overall progress: 1 out of 1 tasks"),
        "{run:#?}"
    );
    assert!(
        run.stdout.ends_with("verify: Service converged\n"),
        "{run:#?}"
    );

    write("api:2");
    let child = c
        .command(&["apply", "-f", &path, "--stack", "shop"])
        .spawn()
        .unwrap();
    let svc = c
        .service_when("shop_api", |s| {
            s.spec.task_template.container.image == "api:2"
        })
        .await;
    c.task(
        &svc,
        1,
        2,
        "node-1",
        TaskState::Failed,
        "task: non-zero exit (1)",
    )
    .await;
    c.pause_update("shop_api", "shop_api.1.2").await;
    let run = finish(child).await;
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert!(
        run.stdout.contains("service/shop_api configured"),
        "{run:#?}"
    );
    assert!(run.stderr.contains("update paused"), "{run:#?}");
}
