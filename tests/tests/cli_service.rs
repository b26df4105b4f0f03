//! docker's service, node, network and stack commands against a real `swarm server` process
//! (with its controllers, without agents): what the binary prints and what it writes.

use swarm_tests::Server;

fn start() -> Server {
    Server::start().unwrap_or_else(|e| panic!("{e:#}"))
}

#[test]
fn service_lifecycle_with_docker_output() {
    let server = start();
    let id = server
        .swarm(&[
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
        .ok();
    assert_eq!(id.stdout.trim().len(), 32, "the service ID: {id:#?}");

    let ls = server.swarm(&["service", "ls"]).ok();
    let lines = ls.lines();
    assert_eq!(
        lines[0],
        "ID             NAME      MODE         REPLICAS   IMAGE        PORTS"
    );
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(row[0], &id.stdout.trim()[..12]);
    assert_eq!(&row[1..3], ["web", "replicated"]);
    assert_eq!(row[4..], ["nginx:1.27", "*:8080->80/tcp"]);

    let ps = server.swarm(&["service", "ps", "web"]).ok();
    assert!(
        ps.stdout.starts_with("ID "),
        "service ps prints docker's header: {ps:#?}"
    );
    assert!(
        ps.lines()[0].contains("NAME") && ps.lines()[0].contains("DESIRED STATE   CURRENT STATE"),
        "{ps:#?}"
    );

    let scaled = server.swarm(&["service", "scale", "-d", "web=3"]).ok();
    assert_eq!(scaled.stdout, "web scaled to 3\n");
    let updated = server
        .swarm(&[
            "service",
            "update",
            "-d",
            "--image",
            "nginx:1.28",
            "--env-add",
            "A=1",
            "web",
        ])
        .ok();
    assert_eq!(updated.stdout, "web\n");
    let fmt = server
        .swarm(&[
            "service",
            "inspect",
            "-f",
            "{{.spec.taskTemplate.container.image}} {{.spec.taskTemplate.container.env.A}}",
            "web",
        ])
        .ok();
    assert_eq!(fmt.stdout, "nginx:1.28 1\n");
    let json = server
        .swarm(&["service", "ls", "--format", "{{json .}}"])
        .ok();
    let v: serde_json::Value = serde_json::from_str(json.stdout.trim()).unwrap();
    assert_eq!(v["Name"], "web");
    assert!(v["Replicas"].as_str().unwrap().ends_with("/3"), "{v}");

    let global = server.swarm(&["service", "scale", "-d", "web=x"]).run_err();
    assert!(global.contains("whole number"), "{global}");
    assert_eq!(server.swarm(&["service", "rm", "web"]).ok().stdout, "web\n");
}

#[test]
fn node_network_and_stack_commands() {
    let server = start();
    let nodes = server.swarm(&["node", "ls"]).ok();
    assert!(nodes.stdout.starts_with("ID "), "{nodes:#?}");
    assert!(
        nodes.lines()[0]
            .contains("HOSTNAME   STATUS    AVAILABILITY   MANAGER STATUS   ENGINE VERSION")
    );

    server
        .swarm(&["network", "create", "--attachable", "front"])
        .ok();
    let nets = server
        .swarm(&[
            "network",
            "ls",
            "--format",
            "{{.Name}} {{.Driver}} {{.Scope}}",
        ])
        .ok();
    assert!(nets.lines().contains(&"front overlay swarm"), "{nets:#?}");

    let dir = server.dir().join("stack");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("shop.yml");
    std::fs::write(
        &file,
        "services:\n  api:\n    image: api:1\n    deploy:\n      replicas: 2\n",
    )
    .unwrap();
    let deploy = server
        .swarm(&[
            "stack",
            "deploy",
            "-d",
            "-c",
            file.to_str().unwrap(),
            "shop",
        ])
        .ok();
    assert!(
        deploy.lines().contains(&"Creating service shop_api"),
        "{deploy:#?}"
    );
    assert_eq!(
        server.swarm(&["stack", "ls"]).ok().stdout,
        "NAME      SERVICES\nshop      1\n"
    );
    let services = server
        .swarm(&[
            "stack",
            "services",
            "--format",
            "{{.Name}} {{.Mode}}",
            "shop",
        ])
        .ok();
    assert_eq!(services.stdout, "shop_api replicated\n");
    let rm = server.swarm(&["stack", "rm", "shop"]).ok();
    assert_eq!(
        rm.stdout,
        "Removing service shop_api\nRemoving network shop_default\n"
    );
}

trait RunErr {
    fn run_err(self) -> String;
}

impl RunErr for swarm_tests::Run {
    /// stderr of a run that must have failed.
    fn run_err(self) -> String {
        assert_ne!(self.code, Some(0), "expected a failure: {self:#?}");
        self.stderr
    }
}

/// The whole pipeline — replication, ipam, placement, the update controller and simulated
/// agents — behind `service create`, `update` and `rollback`, each waiting for convergence.
#[test]
fn create_update_rollback_converge_on_simulated_nodes() {
    let c = swarm_tests::Server::start_with(&["--agent", "sim", "--sim-nodes", "2"]).unwrap();
    // The simulated nodes register with the dispatcher: wait until both are ready.
    let deadline = std::time::Instant::now() + swarm_tests::WAIT;
    loop {
        let nodes = c.swarm(&["node", "ls", "--format", "{{.Status}}"]).ok();
        if nodes.lines() == ["Ready", "Ready"] {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the simulated nodes never became ready: {nodes:#?}\n{}",
            c.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    let create = c.swarm(&[
        "service",
        "create",
        "--name",
        "web",
        "--replicas",
        "3",
        "--update-monitor",
        "0s",
        "--rollback-monitor",
        "0s",
        "--timeout",
        "60s",
        "app:1",
    ]);
    assert_eq!(create.code, Some(0), "{create:#?}\n{}", c.log());
    assert!(
        create.stdout.contains("overall progress: 3 out of 3 tasks"),
        "{create:#?}"
    );
    assert!(
        create.stdout.ends_with("verify: Service converged\n"),
        "{create:#?}"
    );

    let update = c.swarm(&[
        "service",
        "update",
        "--image",
        "app:2",
        "--timeout",
        "60s",
        "web",
    ]);
    assert_eq!(update.code, Some(0), "{update:#?}\n{}", c.log());
    assert!(
        update.stdout.ends_with("verify: Service converged\n"),
        "{update:#?}"
    );
    let running = c.swarm(&[
        "service",
        "ps",
        "--filter",
        "desired-state=running",
        "--format",
        "{{.Image}} {{.CurrentState}}",
        "web",
    ]);
    let lines: Vec<&str> = running.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{running:#?}");
    assert!(
        lines.iter().all(|l| l.starts_with("app:2 Running")),
        "{running:#?}"
    );

    let rollback = c.swarm(&["service", "rollback", "--timeout", "60s", "web"]);
    assert_eq!(rollback.code, Some(0), "{rollback:#?}\n{}", c.log());
    assert!(
        rollback
            .stdout
            .starts_with("web\nrollback: manually requested rollback\n"),
        "{rollback:#?}"
    );
    let image = c.swarm(&[
        "service",
        "inspect",
        "-f",
        "{{.spec.taskTemplate.container.image}}",
        "web",
    ]);
    assert_eq!(image.stdout, "app:1\n");
}

/// `node ls` shows the manager whose server holds the controllers' leases as `Leader`: here
/// `swarm server`'s own node (its local agent's first simulated node), while the other
/// simulated manager is `Reachable`; `node inspect --pretty` agrees.
#[test]
fn node_ls_shows_the_servers_own_node_as_leader() {
    let c = swarm_tests::Server::start_with(&[
        "--agent",
        "sim",
        "--sim-nodes",
        "2",
        "--node-name",
        "lead",
    ])
    .unwrap();
    let deadline = std::time::Instant::now() + swarm_tests::WAIT;
    let format = "{{.Hostname}} {{.Status}} {{.ManagerStatus}}";
    loop {
        let nodes = c.swarm(&["node", "ls", "--format", format]).ok();
        if nodes.lines() == ["lead-0000 Ready Leader", "lead-0001 Ready Reachable"] {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the server's node never showed as the leader: {nodes:#?}\n{}",
            c.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let table = c.swarm(&["node", "ls"]).ok();
    assert!(
        table.lines()[1].contains("lead-0000   Ready     Active         Leader "),
        "{table:#?}"
    );
    let pretty = c.swarm(&["node", "inspect", "--pretty", "lead-0000"]).ok();
    assert!(pretty.stdout.contains(" Leader:\t\tYes\n"), "{pretty:#?}");
}
