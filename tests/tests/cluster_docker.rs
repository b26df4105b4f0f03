//! The whole system on the real Docker engine, as a user runs it: `swarm server` (apiserver and
//! controllers), `swarm-agent` processes as nodes (distinct names, advertise addresses
//! 127.0.0.1–3), and the `swarm` CLI. Each test has its own server, nodes, stack and published
//! port, so tests run in parallel; `Cluster`'s drop removes what the nodes created in Docker.
//!
//! Needs `cargo build -p swarm-cli -p swarm-agent` first (`scripts/test.sh` builds everything).

use std::collections::BTreeSet;

use serde_json::Value;
use swarm_tests::cluster::{Cluster, Container, docker, example, free_port, http_get, wait_for};

/// Waits until `service` has exactly `n` running containers on live nodes.
#[track_caller]
fn wait_containers(c: &Cluster, service: &str, n: usize) -> Vec<Container> {
    wait_for(&format!("{n} running containers of {service}"), || {
        let cs = c.live_containers(service);
        if cs.len() == n {
            Ok(cs)
        } else {
            Err(format!("{} containers: {cs:#?}", cs.len()))
        }
    })
}

/// `swarm service ps SERVICE`'s error of the first task in state `state` (Docker quotes
/// errors in that column), or what the command printed.
fn ps_error(c: &Cluster, service: &str, state: &str) -> Result<String, String> {
    let run = c.swarm(&[
        "service",
        "ps",
        "--no-trunc",
        "--format",
        "{{.CurrentState}}\t{{.Error}}",
        service,
    ]);
    if !run.success() {
        return Err(format!("{run:?}"));
    }
    run.lines()
        .iter()
        .find(|l| l.starts_with(state))
        .and_then(|l| l.split_once('\t'))
        .map(|(_, e)| {
            let e = e.strip_prefix('"').and_then(|e| e.strip_suffix('"'));
            e.unwrap_or_default().to_string()
        })
        .ok_or(run.stdout)
}

/// The task named in the hello app's answer (`"task":"<name>"`).
fn answering_task(answer: &str) -> Option<String> {
    let body = answer.split("\r\n\r\n").nth(1)?;
    let v: Value = serde_json::from_str(body.lines().find(|l| l.starts_with('{'))?).ok()?;
    v["task"].as_str().map(str::to_string)
}

/// `examples/stacks/hello.yml` deployed as a user would (3 replicas behind the routing mesh),
/// on three nodes: every node answers on the published port, and more than one task answers;
/// scaling to 6 runs 6 containers; a container removed behind swarm's back is replaced.
#[test]
fn hello_stack_runs_answers_on_every_node_scales_and_replaces_a_removed_container() {
    let mut c = Cluster::start("hello", &[]);
    let nodes = c.add_agents(3);
    let stack = format!("hello{}", std::process::id());
    let service = format!("{stack}_hello");
    // The example as shipped, on a port of this test's own.
    let port = free_port();
    let yml = example("examples/stacks/hello.yml")
        .unwrap()
        .replace("\"8080:8080\"", &format!("\"{port}:8080\""));
    assert!(yml.contains(&format!("\"{port}:8080\"")), "{yml}");
    let file = c.server.dir().join("hello.yml");
    std::fs::write(&file, yml).unwrap();
    let file = file.to_str().unwrap();

    c.swarm(&[
        "stack",
        "deploy",
        "-q",
        "--timeout",
        "120s",
        "-c",
        file,
        &stack,
    ])
    .ok();
    let three = wait_containers(&c, &service, 3);
    let tasks: BTreeSet<&str> = three.iter().map(|c| c.task.as_str()).collect();
    assert_eq!(tasks.len(), 3, "one container per task: {three:#?}");
    // The example runs under Docker's init (so a stop does not wait out the grace period).
    let (ok, init, err) = docker(&["inspect", "--format", "{{.HostConfig.Init}}", &three[0].id]);
    assert!(ok, "docker inspect: {err}");
    assert_eq!(init, "true");

    // The routing mesh: every node's address answers, and the answers come from more than
    // one task.
    let mut answered_by = BTreeSet::new();
    for a in c.agents() {
        let addr = a.addr.clone();
        let task = wait_for(&format!("an answer on {addr}:{port}"), || {
            let answer = http_get(&addr, port).ok_or("no answer")?;
            answering_task(&answer).ok_or(answer)
        });
        assert!(
            tasks.contains(task.as_str()),
            "{task} is not one of {tasks:?}"
        );
        answered_by.insert(task);
    }
    wait_for("answers from more than one task", || {
        for a in c.agents() {
            if let Some(t) = http_get(&a.addr, port).as_deref().and_then(answering_task) {
                answered_by.insert(t);
            }
        }
        if answered_by.len() > 1 {
            Ok(())
        } else {
            Err(format!("only {answered_by:?}"))
        }
    });

    // Scale to 6 (detached: the containers are what this test watches; `stack deploy` above
    // already waited as a user would).
    c.swarm(&["service", "scale", "-d", &format!("{service}=6")])
        .ok();
    let six = wait_containers(&c, &service, 6);
    let on: BTreeSet<&str> = six.iter().map(|c| c.node.as_str()).collect();
    assert!(on.len() > 1, "6 tasks on one node of {nodes:?}: {six:#?}");

    // A container removed behind swarm's back: its task fails and a new attempt in the same
    // slot runs, back to 6.
    // `docker ps` lists the newest first: a task just scaled up, usually still STARTING (its
    // health check has not passed yet) — where the agent used to create a second container
    // for the same task instead of failing it.
    let victim = six[0].clone();
    let (ok, _, err) = docker(&["rm", "-f", &victim.id]);
    assert!(ok, "docker rm -f {}: {err}", victim.id);
    let slot = victim
        .task
        .rsplit_once('.')
        .map(|(slot, _)| format!("{slot}."))
        .unwrap();
    wait_for(&format!("a replacement of {} running", victim.task), || {
        let cs = c.live_containers(&service);
        let replaced = cs
            .iter()
            .any(|x| x.task.starts_with(&slot) && x.task != victim.task);
        if replaced && cs.len() == 6 && cs.iter().all(|x| x.id != victim.id) {
            Ok(())
        } else {
            Err(format!("{cs:#?}"))
        }
    });
    let old = c
        .get_items("tasks", Some(&format!("metadata.name={}", victim.task)))
        .unwrap();
    assert_eq!(old.len(), 1, "{old:#?}");
    assert_eq!(
        old[0]["status"]["state"], "failed",
        "{:#}",
        old[0]["status"]
    );
}

/// Three nodes: a drained node's tasks move to the others; a node whose agent is killed goes
/// `down` after the heartbeat timeout and its tasks are replaced on the node left.
#[test]
fn drained_and_dead_nodes_tasks_move_to_the_others() {
    // 1 s heartbeats: a silent node is down after 3 s.
    let mut c = Cluster::start("failover", &["--heartbeat-period", "1s"]);
    let nodes = c.add_agents(3);
    let service = format!("failover{}", std::process::id());
    // The demo app is PID 1 without a SIGTERM handler: a short grace period keeps each stop
    // short (the kill after it is what stops it either way).
    c.swarm(&[
        "service",
        "create",
        "-d",
        "--name",
        &service,
        "--replicas",
        "6",
        "--stop-grace-period",
        "1s",
        "swarm-examples/hello:1",
    ])
    .ok();
    let six = wait_containers(&c, &service, 6);
    for n in &nodes {
        assert!(
            six.iter().any(|x| &x.node == n),
            "no task on {n} (spread over 3 ready nodes): {six:#?}"
        );
    }

    // Drain the first node: its tasks shut down and run on the other two.
    let drained = &nodes[0];
    c.swarm(&["node", "update", "--availability", "drain", drained])
        .ok();
    wait_for(&format!("6 tasks running off {drained}"), || {
        let cs = c.live_containers(&service);
        let running = running_tasks(&c, &service)?;
        if cs.len() == 6
            && cs.iter().all(|x| &x.node != drained)
            && running.len() == 6
            && running.iter().all(|(_, node)| node != drained)
        {
            Ok(())
        } else {
            Err(format!("containers {cs:#?}\ntasks {running:?}"))
        }
    });

    // Kill the second node's agent: the node goes down and its tasks run on the third.
    let dead = &nodes[1];
    let last = &nodes[2];
    c.kill_agent(dead);
    c.wait_node_status(dead, "down");
    wait_for(&format!("6 tasks running on {last}"), || {
        let cs = c.live_containers(&service);
        let running = running_tasks(&c, &service)?;
        if cs.len() == 6
            && cs.iter().all(|x| &x.node == last)
            && running.len() == 6
            && running.iter().all(|(_, node)| node == last)
        {
            Ok(())
        } else {
            Err(format!("containers {cs:#?}\ntasks {running:?}"))
        }
    });
}

/// (task name, node) of the service's tasks that should run and do.
fn running_tasks(c: &Cluster, service: &str) -> Result<Vec<(String, String)>, String> {
    Ok(c.desired_running(service)?
        .iter()
        .filter(|t| t["status"]["state"] == "running")
        .map(|t| {
            (
                t["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                t["spec"]["nodeName"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect())
}

/// A service whose image exists nowhere: its tasks are REJECTED, and `swarm service ps` shows
/// Docker's own reason.
#[test]
fn a_missing_image_rejects_the_task_with_dockers_reason() {
    let mut c = Cluster::start("nope", &[]);
    c.add_agents(1);
    let service = format!("nope{}", std::process::id());
    let image = "swarm-examples/nope:1";
    c.swarm(&["service", "create", "-d", "--name", &service, image])
        .ok();
    let error = wait_for("a rejected task in service ps", || {
        ps_error(&c, &service, "Rejected")
    });
    assert!(!error.is_empty(), "no reason given");
    // The same words `docker pull` prints.
    let (ok, _, pull) = docker(&["pull", image]);
    assert!(!ok, "{image} exists?");
    assert!(pull.contains(&error), "{error:?} is not Docker's {pull:?}");
    assert!(c.live_containers(&service).is_empty());
}

/// Configs with `template_driver: golang` (from a stack file, or `swarm config create
/// --template-driver golang`) are rendered per task, as are the service's hostname and
/// environment; a template naming an unknown field rejects its task with the config and the
/// placeholder in the error.
#[test]
fn templates_are_rendered_per_task_and_a_bad_one_is_rejected() {
    let mut c = Cluster::start("tmpl", &[]);
    let nodes = c.add_agents(1);
    let stack = format!("tmpl{}", std::process::id());
    let dir = c.server.dir().join("stack");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("page.tmpl"),
        "{{.Service.Name}} slot {{.Task.Slot}} on {{.Node.ID}}: \
         {{env \"GREETING\"}} {{index .Service.Labels \"tier\"}}\n",
    )
    .unwrap();
    std::fs::write(dir.join("broken.tmpl"), "name={{.Task.Nmae}}\n").unwrap();
    let yml = r#"
version: "3.8"
configs:
  page:
    file: ./page.tmpl
    template_driver: golang
services:
  web:
    image: swarm-examples/hello:1
    hostname: "{{.Node.ID}}-{{.Task.Slot}}"
    environment:
      GREETING: hi
      WHO: "{{.Service.Name}}.{{.Task.Slot}}"
    configs:
      - source: page
        target: /etc/page.txt
    deploy:
      replicas: 2
      labels:
        tier: front
"#;
    let file = dir.join("stack.yml");
    std::fs::write(&file, yml).unwrap();
    c.swarm(&[
        "stack",
        "deploy",
        "-d",
        "-c",
        file.to_str().unwrap(),
        &stack,
    ])
    .ok();

    let web = format!("{stack}_web");
    let two = wait_containers(&c, &web, 2);
    let mut pages = BTreeSet::new();
    for x in &two {
        let out = c.server.dir().join(format!("page-{}", x.id));
        let (ok, _, err) = docker(&[
            "cp",
            &format!("{}:/etc/page.txt", x.id),
            out.to_str().unwrap(),
        ]);
        assert!(ok, "docker cp: {err}");
        pages.insert(std::fs::read_to_string(&out).unwrap());
        let (ok, seen, err) = docker(&[
            "inspect",
            "--format",
            "{{.Config.Hostname}} {{range .Config.Env}}{{.}} {{end}}",
            &x.id,
        ]);
        assert!(ok, "docker inspect: {err}");
        let slot = x.task.split('.').nth(1).unwrap();
        assert!(
            seen.starts_with(&format!("{}-{slot} ", nodes[0])),
            "hostname of {}: {seen}",
            x.task
        );
        assert!(
            seen.contains(&format!(" WHO={web}.{slot} ")),
            "env of {}: {seen}",
            x.task
        );
    }
    let want: BTreeSet<String> = [1, 2]
        .iter()
        .map(|slot| format!("{web} slot {slot} on {}: hi front\n", nodes[0]))
        .collect();
    assert_eq!(pages, want);

    let broken = format!("broken{}", std::process::id());
    let tmpl = dir.join("broken.tmpl");
    c.swarm(&[
        "config",
        "create",
        "--template-driver",
        "golang",
        &broken,
        tmpl.to_str().unwrap(),
    ])
    .ok();
    c.swarm(&[
        "service",
        "create",
        "-d",
        "--name",
        &broken,
        "--config-add",
        &format!("source={broken},target=/etc/broken.txt"),
        "swarm-examples/hello:1",
    ])
    .ok();
    let error = wait_for("the broken template's task rejected", || {
        ps_error(&c, &broken, "Rejected")
    });
    assert_eq!(
        error,
        format!(
            "config {broken}: template: line 1: unknown field .Task.Nmae \
             (known: .Task.ID, .Task.Name, .Task.Slot)"
        )
    );
}
