//! `swarm service logs` and `swarm logs` end to end on the real Docker engine: `swarm server`
//! with its local Docker agent, the hello service with 2 replicas behind the routing mesh,
//! requests sent to its published port, and the request lines read back through the
//! apiserver's log broker (the CLI never talks to Docker).
//!
//! The agent runs under a node name of its own, so this test shares the engine with others;
//! whatever it leaves in Docker carries `swarm.node=<that name>` and is removed at the end.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use swarm_tests::{Server, WAIT};

/// Builds the demo images (always: an image from an older checkout may not log requests).
fn build_images() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let st = Command::new("bash")
        .arg(format!("{root}/examples/apps/build.sh"))
        .status()
        .expect("run examples/apps/build.sh");
    assert!(st.success(), "examples/apps/build.sh failed");
}

fn docker_ids(args: &[&str]) -> Vec<String> {
    let o = Command::new("docker").args(args).output().expect("docker");
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// Removes what the agent of `node` left in Docker, however the test ended.
struct Cleanup {
    node: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let label = format!("label=swarm.node={}", self.node);
        let ids = docker_ids(&["ps", "-aq", "--filter", &label]);
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids.iter().map(String::as_str));
            let _ = Command::new("docker").args(&args).output();
        }
        let label = format!("label=swarm.network={}", self.node);
        for id in docker_ids(&["network", "ls", "-q", "--filter", &label]) {
            let _ = Command::new("docker").args(["network", "rm", &id]).output();
        }
    }
}

/// `GET path` on 127.0.0.1:port; the JSON body.
fn get(port: u16, path: &str) -> Option<Value> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let body = text.split("\r\n\r\n").nth(1)?;
    serde_json::from_str(body).ok()
}

/// One running task: (name as `service ps` shows it, `svc.<slot>`; its short ID).
fn running_tasks(server: &Server, svc: &str) -> Vec<(String, String)> {
    let run = server
        .swarm(&[
            "service",
            "ps",
            svc,
            "--filter",
            "desired-state=running",
            "--format",
            "{{.Name}} {{.ID}}",
        ])
        .ok();
    let mut tasks: Vec<(String, String)> = run
        .lines()
        .iter()
        .filter_map(|l| {
            let (name, id) = l.split_once(' ')?;
            Some((name.to_string(), id.to_string()))
        })
        .collect();
    tasks.sort();
    tasks
}

/// The port ipam published the service on (written into its status; waited for).
fn published_port(server: &Server, svc: &str) -> u16 {
    let deadline = Instant::now() + WAIT;
    loop {
        let inspect = server.swarm(&["service", "inspect", svc]).ok().json();
        let port = inspect[0]["status"]["ports"][0]["publishedPort"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok());
        match port {
            Some(p) => return p,
            None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(200)),
            None => panic!("no published port in {inspect:#}"),
        }
    }
}

#[test]
fn service_logs_show_each_task_s_request_lines_with_docker_s_prefixes() {
    build_images();
    let node = format!(
        "logs-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
    );
    let _cleanup = Cleanup { node: node.clone() };
    let server = Server::start_with(&["--agent", "docker", "--node-name", &node])
        .expect("swarm server starts");
    let svc = "logsdemo";
    let created = server.swarm(&[
        "service",
        "create",
        "--name",
        svc,
        "--replicas",
        "2",
        "-p",
        "8080",
        "swarm-examples/hello:1",
    ]);
    assert!(created.success(), "{created:#?}\n{}", server.log());
    let port = published_port(&server, svc);
    let tasks = running_tasks(&server, svc);
    assert_eq!(tasks.len(), 2, "{tasks:?}");
    // `svc.<slot>.<12-char id>@<node>`, as docker prints it (2 replicas: no padding).
    let prefixes: BTreeMap<String, String> = tasks
        .iter()
        .map(|(name, id)| (name.clone(), format!("{name}.{id}@{node}    | ")))
        .collect();

    // Requests through the routing mesh until both tasks have answered.
    let deadline = Instant::now() + WAIT;
    let mut served: BTreeMap<String, u32> = BTreeMap::new();
    while served.len() < 2 {
        assert!(
            Instant::now() < deadline,
            "both tasks did not answer on port {port}: {served:?}\n{}",
            server.log()
        );
        match get(port, "/") {
            Some(v) => {
                let slot = v["slot"].as_str().map(str::to_string).unwrap_or_default();
                *served.entry(format!("{svc}.{slot}")).or_default() += 1;
            }
            None => std::thread::sleep(Duration::from_millis(200)),
        }
    }

    // Every task's request lines, under its own prefix; the startup line went to stderr.
    let all = server.swarm(&["service", "logs", svc]).ok();
    for (name, prefix) in &prefixes {
        let lines: Vec<&str> = all
            .lines()
            .into_iter()
            .filter(|l| l.starts_with(prefix.as_str()))
            .collect();
        assert_eq!(
            lines.len() as u32,
            served[name],
            "{name}: {:#?}",
            all.lines()
        );
        assert!(
            lines.iter().all(|l| l.contains("hello: GET / 200 from")),
            "{lines:#?}"
        );
        assert!(
            all.stderr
                .lines()
                .any(|l| l.starts_with(prefix.as_str()) && l.contains("listening on :8080")),
            "{}",
            all.stderr
        );
    }
    assert_eq!(
        all.lines().len() as u32,
        served.values().sum::<u32>(),
        "{all:#?}"
    );

    // --tail 1: the last line of each task (a request line: health probes are not logged).
    let tail = server.swarm(&["service", "logs", "--tail", "1", svc]).ok();
    let mut got: Vec<&str> = tail.lines();
    got.sort();
    assert_eq!(got.len(), 2, "{tail:#?}");
    for (line, prefix) in got.iter().zip(prefixes.values()) {
        assert!(line.starts_with(prefix.as_str()), "{line} vs {prefix}");
    }
    assert!(tail.stderr.is_empty(), "{tail:#?}");

    // One task by name (`swarm logs`): only its lines.
    let (first, first_prefix) = prefixes.iter().next().expect("a task");
    let task_name = format!("{first}.1");
    let one = server.swarm(&["logs", &task_name]).ok();
    assert_eq!(one.lines().len() as u32, served[first], "{one:#?}");
    assert!(
        one.lines()
            .iter()
            .all(|l| l.starts_with(first_prefix.as_str())),
        "{one:#?}"
    );

    // -f: a line written after it started arrives. `--tail 1` first shows each task's last
    // line, which proves both containers' logs are being followed before the new request.
    let mut follow = server
        .spawn_lines(&["service", "logs", "-f", "--tail", "1", svc])
        .expect("service logs -f starts");
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 2 {
        let line = follow.next_line().expect("each task's last line");
        if let Some((name, _)) = prefixes.iter().find(|(_, p)| line.starts_with(p.as_str())) {
            seen.insert(name.clone());
        }
    }
    let marker = format!("/followed-{}", std::process::id());
    assert!(get(port, &marker).is_some(), "no answer on port {port}");
    let (line, _) = follow
        .until(|l| l.contains(marker.as_str()))
        .expect("the followed line arrives");
    assert!(
        prefixes.values().any(|p| line.starts_with(p.as_str())),
        "{line}"
    );
    let status = follow.interrupt().expect("interrupt");
    assert!(status.success(), "{status}");

    // Unknown targets are errors; the service goes away with its containers.
    let missing = server.swarm(&["service", "logs", "no-such-service"]);
    assert_eq!(missing.code, Some(1), "{missing:#?}");
    assert!(
        missing
            .stderr
            .contains("no such task or service: no-such-service"),
        "{missing:#?}"
    );
    server.swarm(&["service", "rm", svc]).ok();
}
