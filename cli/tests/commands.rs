//! docker's list, inspect and management commands run as the built binary against an
//! apiserver in this process: service, node, network, secret, config and stack.

mod common;

use common::start;
use swarm_api::{Node, NodeAvailability, NodeRole, Service, TaskState};

#[tokio::test(flavor = "multi_thread")]
async fn service_ls_ps_inspect() {
    let c = start().await;
    c.node("node-1").await;
    c.swarm(&[
        "service",
        "create",
        "-d",
        "--name",
        "web",
        "--replicas",
        "2",
        "-p",
        "8080:80",
        "nginx:1.27",
    ])
    .await
    .ok();
    let svc = c.service_when("web", |_| true).await;
    let old = c
        .task(
            &svc,
            1,
            1,
            "node-1",
            TaskState::Failed,
            "task: non-zero exit (1)",
        )
        .await;
    assert_eq!(old.status.state, TaskState::Failed);
    c.task(&svc, 1, 2, "node-1", TaskState::Running, "").await;
    c.service_status("web", |s| s.status.replicas.running = 1)
        .await;

    let ls = c.swarm(&["service", "ls"]).await.ok();
    let lines: Vec<&str> = ls.stdout.lines().collect();
    assert_eq!(
        lines[0],
        "ID             NAME      MODE         REPLICAS   IMAGE        PORTS"
    );
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        &row[1..],
        ["web", "replicated", "1/2", "nginx:1.27", "*:8080->80/tcp"],
        "{ls:#?}"
    );
    let quiet = c.swarm(&["service", "ls", "-q"]).await.ok();
    assert_eq!(quiet.stdout.trim(), row[0]);
    let fmt = c
        .swarm(&["service", "ls", "--format", "{{.Name}} {{.Replicas}}"])
        .await
        .ok();
    assert_eq!(fmt.stdout, "web 1/2\n");
    let bad = c.swarm(&["service", "ls", "--format", "{{.Nope}}"]).await;
    assert_eq!(bad.code, Some(1));
    assert!(bad.stderr.contains("there is no field .Nope"), "{bad:#?}");

    let ps = c.swarm(&["service", "ps", "web"]).await.ok();
    let lines: Vec<&str> = ps.stdout.lines().collect();
    assert!(
        lines[0].starts_with(
            "ID             NAME        IMAGE        NODE      DESIRED STATE   CURRENT STATE"
        ),
        "{ps:#?}"
    );
    assert!(
        lines[1].contains(
            "   web.1       nginx:1.27   node-1    Running         Running 10 minutes ago"
        ),
        "{ps:#?}"
    );
    assert!(
        lines[2].contains(
            "    \\_ web.1   nginx:1.27   node-1    Shutdown        Failed 10 minutes ago"
        ),
        "{ps:#?}"
    );
    assert!(lines[2].contains("\"task: non-zero exit (1)\""), "{ps:#?}");
    let running = c
        .swarm(&[
            "service",
            "ps",
            "--filter",
            "desired-state=running",
            "--format",
            "{{.Name}}",
            "web",
        ])
        .await
        .ok();
    assert_eq!(running.stdout, "web.1\n");
    let ids = c
        .swarm(&["service", "ps", "-q", "--no-trunc", "web"])
        .await
        .ok();
    assert!(ids.stdout.lines().all(|l| l.len() == 32), "{ids:#?}");

    let inspect = c.swarm(&["service", "inspect", "web"]).await.ok();
    let v: serde_json::Value = serde_json::from_str(&inspect.stdout).unwrap();
    assert_eq!(v[0]["metadata"]["name"], "web");
    assert!(
        inspect.stdout.starts_with("[\n    {\n"),
        "docker indents by four: {inspect:#?}"
    );
    let image = c
        .swarm(&[
            "service",
            "inspect",
            "-f",
            "{{.spec.taskTemplate.container.image}}",
            "web",
        ])
        .await
        .ok();
    assert_eq!(image.stdout, "nginx:1.27\n");
    let pretty = c
        .swarm(&["service", "inspect", "--pretty", "web"])
        .await
        .ok();
    assert!(
        pretty
            .stdout
            .contains("Name:\t\tweb\nService Mode:\tReplicated\n Replicas:\t2\n"),
        "{pretty:#?}"
    );
    // By ID prefix, as docker allows.
    let by_id = c
        .swarm(&[
            "service",
            "inspect",
            "-f",
            "{{.metadata.name}}",
            &row[0][..6],
        ])
        .await
        .ok();
    assert_eq!(by_id.stdout, "web\n");

    let missing = c.swarm(&["service", "ps", "nope"]).await;
    assert_eq!(missing.code, Some(1));
    assert!(
        missing.stderr.contains("no such service: nope"),
        "{missing:#?}"
    );
    let rm = c.swarm(&["service", "rm", "web"]).await.ok();
    assert_eq!(rm.stdout, "web\n");
    assert!(
        c.client
            .get::<Service>("web")
            .await
            .unwrap_err()
            .is_not_found()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn node_commands() {
    let c = start().await;
    c.node("node-1").await;
    c.node("node-2").await;
    let ls = c.swarm(&["node", "ls"]).await.ok();
    let lines: Vec<&str> = ls.stdout.lines().collect();
    assert!(lines[0].starts_with("ID "), "{ls:#?}");
    assert!(
        lines[0].contains("HOSTNAME   STATUS    AVAILABILITY   MANAGER STATUS   ENGINE VERSION"),
        "{ls:#?}"
    );
    assert!(lines[1].contains("node-1     Ready     Active"), "{ls:#?}");
    c.swarm(&[
        "node",
        "update",
        "--availability",
        "drain",
        "--label-add",
        "zone=east",
        "node-2",
    ])
    .await
    .ok();
    let n = c.client.get::<Node>("node-2").await.unwrap();
    assert_eq!(n.spec.availability, NodeAvailability::Drain);
    assert_eq!(n.spec.labels["zone"], "east");
    let promote = c.swarm(&["node", "promote", "node-2"]).await.ok();
    assert_eq!(
        promote.stdout,
        "Node node-2 promoted to a manager in the swarm.\n"
    );
    assert_eq!(
        c.client.get::<Node>("node-2").await.unwrap().spec.role,
        NodeRole::Manager
    );
    let fmt = c
        .swarm(&[
            "node",
            "ls",
            "--filter",
            "role=manager",
            "--format",
            "{{.Hostname}} {{.Availability}} {{.ManagerStatus}}",
        ])
        .await
        .ok();
    assert_eq!(fmt.stdout, "node-2 Drain Reachable\n");
    let demote = c.swarm(&["node", "demote", "node-2"]).await.ok();
    assert_eq!(demote.stdout, "Manager node-2 demoted in the swarm.\n");
    let refused = c.swarm(&["node", "rm", "node-2"]).await;
    assert_eq!(refused.code, Some(1));
    assert!(
        refused.stderr.contains("is not down and can't be removed"),
        "{refused:#?}"
    );
    c.swarm(&["node", "rm", "--force", "node-2"]).await.ok();
    assert_eq!(
        c.swarm(&["node", "ls", "-q"])
            .await
            .ok()
            .stdout
            .lines()
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn network_secret_config_commands() {
    let c = start().await;
    let id = c
        .swarm(&[
            "network",
            "create",
            "-d",
            "overlay",
            "--subnet",
            "10.0.9.0/24",
            "--attachable",
            "front",
        ])
        .await
        .ok();
    assert_eq!(id.stdout.trim().len(), 32, "{id:#?}");
    let ls = c.swarm(&["network", "ls"]).await.ok();
    assert_eq!(
        ls.stdout.lines().next(),
        Some("NETWORK ID     NAME      DRIVER    SCOPE")
    );
    assert!(
        ls.stdout
            .lines()
            .nth(1)
            .unwrap()
            .ends_with("   front     overlay   swarm"),
        "{ls:#?}"
    );
    let sub = c
        .swarm(&[
            "network",
            "inspect",
            "-f",
            "{{.spec.ipam.subnet}} {{.spec.attachable}}",
            "front",
        ])
        .await
        .ok();
    assert_eq!(sub.stdout, "10.0.9.0/24 true\n");
    assert_eq!(
        c.swarm(&["network", "rm", "front"]).await.ok().stdout,
        "front\n"
    );

    let file = c.dir.path().join("pw.txt");
    std::fs::write(&file, "s3cret").unwrap();
    let file = file.to_str().unwrap();
    c.swarm(&["secret", "create", "db_password", file])
        .await
        .ok();
    let ls = c.swarm(&["secret", "ls"]).await.ok();
    let lines: Vec<&str> = ls.stdout.lines().collect();
    // CREATED depends on how long ago the server created it: check the layout around it.
    assert!(
        lines[0]
            .starts_with("ID                                 NAME          DRIVER    CREATED   "),
        "{ls:#?}"
    );
    assert!(lines[0].trim_end().ends_with("   UPDATED"), "{ls:#?}");
    assert!(lines[1].contains("   db_password             "), "{ls:#?}");
    assert!(lines[1].trim_end().ends_with(" ago"), "{ls:#?}");
    let inspect = c.swarm(&["secret", "inspect", "db_password"]).await.ok();
    assert!(
        !inspect.stdout.contains("czNjcmV0"),
        "secret data must not be printed: {inspect:#?}"
    );
    let pretty = c
        .swarm(&["secret", "inspect", "--pretty", "db_password"])
        .await
        .ok();
    assert!(pretty.stdout.contains("\nDriver:\n"), "{pretty:#?}");
    assert!(!pretty.stdout.contains("Data:"), "{pretty:#?}");
    // `-` reads the data from stdin.
    let mut cmd = c.command(&["config", "create", "motd", "-"]);
    cmd.stdin(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    {
        use tokio::io::AsyncWriteExt as _;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"k3y").await.unwrap();
    }
    common::finish(child).await.ok();
    let motd = c.client.get::<swarm_api::Config>("motd").await.unwrap();
    assert_eq!(motd.spec.data, "azN5");
    c.client
        .delete::<swarm_api::Config>("motd", None)
        .await
        .unwrap();
    c.swarm(&["config", "create", "site", file]).await.ok();
    let data = c
        .swarm(&["config", "inspect", "-f", "{{.spec.data}}", "site"])
        .await
        .ok();
    assert_eq!(data.stdout, "czNjcmV0\n");
    let pretty = c
        .swarm(&["config", "inspect", "--pretty", "site"])
        .await
        .ok();
    assert!(pretty.stdout.starts_with("ID:  "), "{pretty:#?}");
    assert!(
        pretty.stdout.contains("Name:            site\n"),
        "{pretty:#?}"
    );
    assert!(pretty.stdout.ends_with("Data:\ns3cret\n"), "{pretty:#?}");
    assert_eq!(
        c.swarm(&["config", "ls", "--format", "{{.Name}}"])
            .await
            .ok()
            .stdout,
        "site\n"
    );
    for (filter, names) in [("name=si", "site\n"), ("name=zz", ""), ("label=x", "")] {
        let ls = c
            .swarm(&["config", "ls", "-f", filter, "--format", "{{.Name}}"])
            .await
            .ok();
        assert_eq!(ls.stdout, names, "--filter {filter}");
    }
    assert_eq!(
        c.swarm(&["secret", "rm", "db_password"]).await.ok().stdout,
        "db_password\n"
    );
    let gone = c.swarm(&["config", "rm", "nope"]).await;
    assert_eq!(gone.code, Some(1));
    assert!(gone.stderr.contains("no such config: nope"), "{gone:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn stack_deploy_ls_services_ps_rm() {
    let c = start().await;
    let file = c.dir.path().join("voting.yml");
    std::fs::write(
        &file,
        "services:\n  vote:\n    image: vote:1\n    ports: [\"5000:80\"]\n    networks: [front]\n    deploy:\n      replicas: 2\n  redis:\n    image: redis:7\n    networks: [front]\nnetworks:\n  front: {}\n",
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let deploy = c
        .swarm(&["stack", "deploy", "-d", "-c", file, "voting"])
        .await
        .ok();
    assert_eq!(
        deploy.stdout,
        "Creating network voting_front\nCreating service voting_redis\nCreating service voting_vote\n",
        "{deploy:#?}"
    );
    assert_eq!(
        c.swarm(&["stack", "ls"]).await.ok().stdout,
        "NAME      SERVICES\nvoting    2\n"
    );
    let services = c
        .swarm(&[
            "stack",
            "services",
            "--format",
            "{{.Name}} {{.Mode}} {{.Replicas}} {{.Ports}}",
            "voting",
        ])
        .await
        .ok();
    assert_eq!(
        services.stdout,
        "voting_redis replicated 0/1 \nvoting_vote replicated 0/2 *:5000->80/tcp\n"
    );
    let vote = c
        .swarm(&[
            "stack",
            "services",
            "-q",
            "--filter",
            "name=voting_v",
            "voting",
        ])
        .await
        .ok();
    assert_eq!(vote.stdout.lines().count(), 1, "{vote:#?}");
    let svc = c.service_when("voting_vote", |_| true).await;
    c.node("node-1").await;
    c.task(&svc, 1, 1, "node-1", TaskState::Running, "").await;
    let ps = c
        .swarm(&[
            "stack",
            "ps",
            "--format",
            "{{.Name}} {{.CurrentState}}",
            "voting",
        ])
        .await
        .ok();
    assert_eq!(ps.stdout, "voting_vote.1 Running 10 minutes ago\n");
    let again = c
        .swarm(&["stack", "deploy", "-d", "-c", file, "voting"])
        .await
        .ok();
    assert_eq!(
        again.stdout, "",
        "an unchanged stack changes nothing: {again:#?}"
    );
    let rm = c.swarm(&["stack", "rm", "voting"]).await.ok();
    assert_eq!(
        rm.stdout,
        "Removing service voting_redis\nRemoving service voting_vote\nRemoving network voting_front\n"
    );
    let nothing = c.swarm(&["stack", "rm", "voting"]).await.ok();
    assert!(
        nothing.stderr.contains("Nothing found in stack: voting"),
        "{nothing:#?}"
    );
}
