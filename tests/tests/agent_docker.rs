//! The agent on the real Docker engine, driven by an in-process apiserver and dispatcher.
//!
//! Each test runs its own apiserver (embedded store in a temp dir, dispatcher on loopback) and
//! its own agent under a unique node name, so tests run in parallel; everything a test creates
//! in Docker carries `swarm.node=<that name>` and is removed by label when the test ends. The
//! demo images are built once with `examples/apps/build.sh` if missing (no registry needed).
//! Tasks are created already bound to the node (`spec.nodeName`, state ASSIGNED), as
//! placement would leave them.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use swarm_agent::{AgentOptions, RuntimeKind};
use swarm_api::{
    AnyObject, DataSpec, EndpointSpec, FileReference, Healthcheck, Kind, Network,
    NetworkAttachment, NetworkSpec, PortConfig, PublishMode, Secret, Service, ServiceSpec, Task,
    TaskSpec, TaskState,
};
use swarm_apiserver::registry::{Registry, Subresource};
use swarm_apiserver::server::{RunningServer, Server, ServerOptions};
use swarm_apiserver::store::Store;
use swarm_apiserver::store::embedded::EmbeddedStore;
use tokio::sync::watch;

/// The longest any wait lasts; waits end as soon as what they wait for happens.
const PATIENCE: Duration = Duration::from_secs(90);

fn docker(args: &[&str]) -> (bool, String, String) {
    let o = Command::new("docker").args(args).output().expect("docker");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).trim().to_string(),
        String::from_utf8_lossy(&o.stderr).trim().to_string(),
    )
}

fn docker_json(args: &[&str]) -> Value {
    let (ok, out, err) = docker(args);
    assert!(ok, "docker {args:?}: {err}");
    serde_json::from_str(&out).expect("docker json")
}

/// Containers of this node (all states), by label.
fn containers(node: &str, extra: Option<&str>) -> Vec<String> {
    let mut args = vec![
        "ps".to_string(),
        "-aq".to_string(),
        "--filter".to_string(),
        format!("label=swarm.node={node}"),
    ];
    if let Some(e) = extra {
        args.push("--filter".into());
        args.push(format!("label={e}"));
    }
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let (_, out, _) = docker(&a);
    out.lines().map(str::to_string).collect()
}

struct Agent {
    stop: watch::Sender<bool>,
    handle: tokio::task::JoinHandle<()>,
}

impl Agent {
    async fn stop(self) {
        self.stop.send_replace(true);
        let _ = tokio::time::timeout(PATIENCE, self.handle).await;
    }
}

/// One apiserver with its dispatcher, and a node name unique to the test.
struct Cluster {
    node: String,
    registry: Registry,
    server: Option<RunningServer>,
    dir: tempfile::TempDir,
    _store: Arc<dyn Store>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let ids = containers(&self.node, None);
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(ids.iter().map(String::as_str));
            docker(&args);
        }
        let (_, nets, _) = docker(&[
            "network",
            "ls",
            "-q",
            "--filter",
            &format!("label=swarm.node={}", self.node),
        ]);
        for n in nets.lines() {
            docker(&["network", "rm", n]);
        }
        // Secrets live on tmpfs, outside the test's temp dir.
        let _ = std::fs::remove_dir_all(format!("/dev/shm/swarm-agent-{}", self.node));
        drop(self.server.take());
    }
}

impl Cluster {
    async fn start(test: &str) -> Cluster {
        swarm_tests::cluster::build_images();
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(EmbeddedStore::open(&dir.path().join("store.db")).unwrap());
        let opts = ServerOptions {
            ..ServerOptions::loopback_with_dispatcher()
        };
        let server = Server::with_store(store.clone(), opts)
            .await
            .unwrap()
            .spawn();
        Cluster {
            node: format!("t-{test}-{}", std::process::id()),
            registry: Registry::new(store.clone()),
            server: Some(server),
            dir,
            _store: store,
        }
    }

    fn agent(&self) -> Agent {
        self.agent_as(&self.node, "127.0.0.1")
    }

    /// An agent for node `node` advertising `addr` (several agents share this engine).
    fn agent_as(&self, node: &str, addr: &str) -> Agent {
        let dispatcher = self.server.as_ref().unwrap().dispatcher_addr.unwrap();
        let dir = self.dir.path().join(format!("agent-{node}"));
        let mut opts = AgentOptions::new(dispatcher.to_string(), dir);
        opts.runtime = RuntimeKind::Docker;
        opts.node_name = Some(node.to_string());
        opts.advertise_addr = Some(addr.parse().unwrap());
        let (stop, rx) = watch::channel(false);
        let handle = tokio::spawn(async move {
            swarm_agent::run(opts, rx).await.expect("agent");
        });
        Agent { stop, handle }
    }

    /// A task of `service` in `slot`, bound to this node and ASSIGNED.
    async fn task(
        &self,
        service: &str,
        slot: u64,
        image: &str,
        edit: impl FnOnce(&mut Task),
    ) -> String {
        let name = format!("{service}.{slot}.1");
        let mut t = Task::new(
            &name,
            TaskSpec {
                service: service.into(),
                slot: Some(slot),
                node_name: Some(self.node.clone()),
                attempt: 1,
                desired_state: TaskState::Running,
                ..Default::default()
            },
        );
        t.metadata
            .labels
            .insert("swarm.stack".into(), "teststack".into());
        t.spec.template.container.image = image.into();
        t.spec.template.container.stop_grace_period = Duration::from_secs(2).into();
        edit(&mut t);
        let AnyObject::Task(mut t) = self
            .registry
            .create(AnyObject::Task(Box::new(t)))
            .await
            .unwrap()
        else {
            unreachable!()
        };
        t.status.state = TaskState::Assigned;
        self.registry
            .update(AnyObject::Task(t), Subresource::Status)
            .await
            .unwrap();
        name
    }

    async fn get(&self, name: &str) -> Task {
        match self.registry.get(Kind::Task, name).await.unwrap() {
            AnyObject::Task(t) => *t,
            other => panic!("not a task: {other:?}"),
        }
    }

    /// Waits until the task reaches `state` (or a later one, which fails the wait).
    async fn wait_state(&self, name: &str, state: TaskState) -> Task {
        let r = tokio::time::timeout(PATIENCE, async {
            loop {
                let t = self.get(name).await;
                if t.status.state >= state {
                    return t;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        let t = match r {
            Ok(t) => t,
            Err(_) => {
                let t = self.get(name).await;
                panic!("{name} did not reach {state} in time: {:?}", t.status)
            }
        };
        assert_eq!(
            t.status.state, state,
            "{name}: expected {state}, got {:?}",
            t.status
        );
        t
    }

    fn container_name(&self, t: &Task) -> String {
        format!(
            "{}.{}.{}",
            t.spec.service,
            t.spec.slot.unwrap(),
            t.metadata.uid.replace('-', "")
        )
    }
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    tokio::time::timeout(PATIENCE, async {
        while !f() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_runs_as_a_labelled_container_and_fails_when_removed() {
    let c = Cluster::start("run").await;
    let agent = c.agent();
    let name = c.task("web", 1, "swarm-examples/hello:1", |_| {}).await;
    let t = c.wait_state(&name, TaskState::Running).await;
    assert!(!t.status.container_id.is_empty());

    let cname = c.container_name(&t);
    let info = docker_json(&["inspect", &cname]);
    let labels = &info[0]["Config"]["Labels"];
    assert_eq!(labels["swarm.service"], "web");
    assert_eq!(labels["swarm.task"], name.as_str());
    assert_eq!(labels["swarm.node"], c.node.as_str());
    assert_eq!(labels["swarm.stack"], "teststack");
    assert_eq!(info[0]["Id"], t.status.container_id.as_str());
    assert_eq!(info[0]["State"]["Running"], true);
    let env: Vec<String> = serde_json::from_value(info[0]["Config"]["Env"].clone()).unwrap();
    assert!(env.contains(&format!("TASK_NAME={name}")), "{env:?}");

    // Removed behind the agent's back: the task fails.
    let (ok, _, err) = docker(&["rm", "-f", &cname]);
    assert!(ok, "{err}");
    let t = c.wait_state(&name, TaskState::Failed).await;
    assert!(t.status.err.contains("container removed"), "{:?}", t.status);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_that_exits_fails_with_its_exit_code() {
    let c = Cluster::start("bad").await;
    let agent = c.agent();
    let name = c.task("bad", 1, "swarm-examples/hello:bad", |_| {}).await;
    let t = c.wait_state(&name, TaskState::Failed).await;
    assert_eq!(t.status.err, "task: non-zero exit (1)");
    assert_eq!(t.status.exit_code, Some(1));
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_image_is_rejected_with_dockers_message() {
    let c = Cluster::start("nope").await;
    let agent = c.agent();
    let name = c.task("nope", 1, "swarm-examples/nope:1", |_| {}).await;
    let t = c.wait_state(&name, TaskState::Rejected).await;
    assert!(!t.status.err.is_empty());
    // The same words `docker pull` prints.
    let (ok, _, pull_err) = docker(&["pull", "swarm-examples/nope:1"]);
    assert!(!ok);
    assert!(
        pull_err.contains(&t.status.err),
        "task err {:?} not in docker's {pull_err:?}",
        t.status.err
    );
    assert!(containers(&c.node, None).is_empty());
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn desired_shutdown_stops_and_remove_removes_the_container() {
    let c = Cluster::start("stop").await;
    let agent = c.agent();
    let name = c.task("stop", 1, "swarm-examples/hello:1", |_| {}).await;
    let t = c.wait_state(&name, TaskState::Running).await;
    let cname = c.container_name(&t);

    let mut t = c.get(&name).await;
    t.spec.desired_state = TaskState::Shutdown;
    c.registry
        .update(AnyObject::Task(Box::new(t)), Subresource::Main)
        .await
        .unwrap();
    c.wait_state(&name, TaskState::Shutdown).await;
    let info = docker_json(&["inspect", &cname]);
    assert_eq!(info[0]["State"]["Running"], false);

    let mut t = c.get(&name).await;
    t.spec.desired_state = TaskState::Remove;
    c.registry
        .update(AnyObject::Task(Box::new(t)), Subresource::Main)
        .await
        .unwrap();
    wait_until("container removed", || !docker(&["inspect", &cname]).0).await;
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_agent_adopts_its_container_and_removes_unclaimed_ones() {
    let c = Cluster::start("adopt").await;
    let agent = c.agent();
    let name = c.task("adopt", 1, "swarm-examples/hello:1", |_| {}).await;
    let t = c.wait_state(&name, TaskState::Running).await;
    let id = t.status.container_id.clone();
    agent.stop().await;

    // While the agent is down: a container of this node that no task claims.
    let ghost = format!("ghost-{}", c.node);
    let (ok, _, err) = docker(&[
        "run",
        "-d",
        "--name",
        &ghost,
        "--label",
        &format!("swarm.node={}", c.node),
        "--label",
        "swarm.task=ghost.1.1",
        "swarm-examples/hello:1",
    ]);
    assert!(ok, "{err}");

    let agent = c.agent();
    wait_until("unclaimed container removed", || {
        !docker(&["inspect", &ghost]).0
    })
    .await;
    // The task's container was adopted, not duplicated, and is still the running one.
    let mine = containers(&c.node, Some(&format!("swarm.task={name}")));
    assert_eq!(mine.len(), 1, "{mine:?}");
    assert!(id.starts_with(&mine[0]));
    let t = c.get(&name).await;
    assert_eq!(t.status.state, TaskState::Running);
    assert_eq!(t.status.container_id, id);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_on_one_network_reach_each_other_by_service_name() {
    let c = Cluster::start("net").await;
    let net = format!("n{}", std::process::id());
    c.registry
        .create(AnyObject::Network(Network::new(
            &net,
            NetworkSpec::default(),
        )))
        .await
        .unwrap();
    let agent = c.agent();
    let attach = |t: &mut Task| {
        t.spec.networks = vec![NetworkAttachment {
            network: net.clone(),
            ..Default::default()
        }]
    };
    let alpha = c.task("alpha", 1, "swarm-examples/hello:1", attach).await;
    let ta = c.wait_state(&alpha, TaskState::Running).await;
    // beta asks alpha's /health by service name and exits 0 if it answered 200.
    let beta = c
        .task("beta", 1, "swarm-examples/hello:1", |t| {
            attach(t);
            t.spec.template.container.args =
                vec!["probe".into(), "http://alpha:8080/health".into()];
            t.spec.template.container.healthcheck = Some(Healthcheck {
                test: vec!["NONE".into()],
                ..Default::default()
            });
        })
        .await;
    c.wait_state(&beta, TaskState::Complete).await;

    let info = docker_json(&["network", "inspect", &format!("swarm-{net}")]);
    assert_eq!(info[0]["Labels"]["swarm.node"], c.node.as_str());
    let cinfo = docker_json(&["inspect", &c.container_name(&ta)]);
    let aliases = &cinfo[0]["NetworkSettings"]["Networks"][format!("swarm-{net}")]["Aliases"];
    assert!(
        aliases
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x == "alpha")),
        "{aliases}"
    );

    // Once no task needs it, the network goes.
    for n in [&alpha, &beta] {
        c.registry.delete(Kind::Task, n, None).await.unwrap();
    }
    wait_until("network removed", || {
        !docker(&["network", "inspect", &format!("swarm-{net}")]).0
    })
    .await;
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_ports_publish_and_unhealthy_containers_fail() {
    let c = Cluster::start("ports").await;
    let agent = c.agent();
    let name = c
        .task("ports", 1, "swarm-examples/hello:1", |t| {
            t.spec.ports = vec![PortConfig {
                target_port: 8080,
                publish_mode: PublishMode::Host,
                ..Default::default()
            }];
            t.spec
                .template
                .container
                .env
                .insert("UNHEALTHY_AFTER".into(), "4".into());
            t.spec.template.container.healthcheck = Some(Healthcheck {
                test: vec!["CMD".into(), "/hello".into(), "probe".into()],
                interval: Some(Duration::from_secs(1).into()),
                retries: Some(1),
                ..Default::default()
            });
        })
        .await;
    let t = c.wait_state(&name, TaskState::Running).await;
    let port = t
        .status
        .ports
        .iter()
        .find(|p| p.target_port == 8080)
        .and_then(|p| p.published_port)
        .expect("a published host port");
    let body = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(s, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    })
    .await
    .unwrap();
    assert!(body.contains(&name), "{body}");

    // Its /health turns 500 after 4 s: the container is unhealthy and the task fails.
    let t = c.wait_state(&name, TaskState::Failed).await;
    assert_eq!(t.status.err, "unhealthy container");
    agent.stop().await;
}

/// One HTTP GET on loopback; the body, or `None` if nothing answered.
fn get(port: u16) -> Option<String> {
    get_at("127.0.0.1", port)
}

fn get_at(ip: &str, port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect((ip, port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    (!out.is_empty()).then_some(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_routing_mesh_forwards_a_published_port_to_every_task() {
    let c = Cluster::start("mesh").await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut spec = ServiceSpec {
        endpoint: EndpointSpec {
            ports: vec![PortConfig {
                target_port: 8080,
                published_port: Some(port),
                publish_mode: PublishMode::Ingress,
                ..Default::default()
            }],
            ..Default::default()
        },
        ..Default::default()
    };
    spec.task_template.container.image = "swarm-examples/hello:1".into();
    c.registry
        .create(AnyObject::Service(Box::new(Service::new("meshweb", spec))))
        .await
        .unwrap();
    let agent = c.agent();
    let one = c.task("meshweb", 1, "swarm-examples/hello:1", |_| {}).await;
    let two = c.task("meshweb", 2, "swarm-examples/hello:1", |_| {}).await;
    let t1 = c.wait_state(&one, TaskState::Running).await;
    c.wait_state(&two, TaskState::Running).await;
    assert!(
        t1.status
            .ports
            .iter()
            .any(|p| p.target_port == 8080 && p.publish_mode == PublishMode::Ingress),
        "{:?}",
        t1.status.ports
    );
    // Both tasks answer on the one published port, round robin.
    let (mut saw_one, mut saw_two) = (false, false);
    let r = tokio::time::timeout(PATIENCE, async {
        while !(saw_one && saw_two) {
            let body = tokio::task::spawn_blocking(move || get(port))
                .await
                .unwrap();
            if let Some(b) = body {
                saw_one |= b.contains(&one);
                saw_two |= b.contains(&two);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(r.is_ok(), "answers: task 1 {saw_one}, task 2 {saw_two}");
    agent.stop().await;
    // With the agent gone, nothing listens on the port any more.
    let closed = tokio::task::spawn_blocking(move || get(port))
        .await
        .unwrap();
    assert!(closed.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_is_mounted_read_only_at_run_secrets() {
    let c = Cluster::start("secret").await;
    c.registry
        .create(AnyObject::Secret(Secret::new(
            "db_pw",
            DataSpec {
                data: "aHVudGVyMg==".into(), // hunter2
                template_driver: None,
            },
        )))
        .await
        .unwrap();
    let agent = c.agent();
    let name = c
        .task("sec", 1, "swarm-examples/hello:1", |t| {
            t.spec.template.container.secrets = vec![FileReference {
                source: "db_pw".into(),
                target: "password".into(),
                uid: "0".into(),
                gid: "0".into(),
                mode: 0o400,
            }];
        })
        .await;
    let t = c.wait_state(&name, TaskState::Running).await;
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("pw");
    let (ok, _, err) = docker(&[
        "cp",
        &format!("{}:/run/secrets/password", c.container_name(&t)),
        dest.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert_eq!(std::fs::read_to_string(&dest).unwrap(), "hunter2");
    let info = docker_json(&["inspect", &c.container_name(&t)]);
    let mounts = info[0]["Mounts"].as_array().unwrap();
    let m = mounts
        .iter()
        .find(|m| m["Destination"] == "/run/secrets/password")
        .expect("secret mount");
    assert_eq!(m["RW"], false);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_answers_on_a_published_port_even_without_a_task() {
    let c = Cluster::start("mesh2").await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut spec = ServiceSpec {
        endpoint: EndpointSpec {
            ports: vec![PortConfig {
                target_port: 8080,
                published_port: Some(port),
                publish_mode: PublishMode::Ingress,
                ..Default::default()
            }],
            ..Default::default()
        },
        ..Default::default()
    };
    spec.task_template.container.image = "swarm-examples/hello:1".into();
    c.registry
        .create(AnyObject::Service(Box::new(Service::new("meshtwo", spec))))
        .await
        .unwrap();
    // Two nodes on this engine: the task runs on the first; the second has none.
    let a = c.agent();
    let b = c.agent_as(&format!("{}-b", c.node), "127.0.0.2");
    let one = c.task("meshtwo", 1, "swarm-examples/hello:1", |_| {}).await;
    c.wait_state(&one, TaskState::Running).await;
    for ip in ["127.0.0.2", "127.0.0.1"] {
        let name = one.clone();
        let r = tokio::time::timeout(PATIENCE, async move {
            loop {
                let body = tokio::task::spawn_blocking(move || get_at(ip, port))
                    .await
                    .unwrap();
                if body.is_some_and(|b| b.contains(&name)) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        assert!(r.is_ok(), "node {ip} did not forward port {port}");
    }
    b.stop().await;
    a.stop().await;
}
