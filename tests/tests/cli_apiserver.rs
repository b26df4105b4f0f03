//! The `swarm` CLI against a real `swarm server`: apply (created, unchanged, configured, dry
//! run, prune, refused), diff exit codes, get in every format, get -w events, describe, delete,
//! and the message when no server is there.

use std::path::{Path, PathBuf};

use swarm_tests::{Server, closed_port, swarm_command, workspace_root};

/// The voting app of the Swarm labs, cut down to what these tests need: 5 services, 2 networks.
const VOTING: &str = r#"
services:
  redis:
    image: redis:alpine
    networks: [frontend]
  db:
    image: postgres:15-alpine
    environment:
      POSTGRES_USER: postgres
      POSTGRES_PASSWORD: postgres
    networks: [backend]
  vote:
    image: dockersamples/examplevotingapp_vote:before
    ports: ["5000:80"]
    networks: [frontend]
    deploy:
      replicas: 2
  result:
    image: dockersamples/examplevotingapp_result:before
    ports: ["5001:80"]
    networks: [backend]
  worker:
    image: dockersamples/examplevotingapp_worker
    networks: [frontend, backend]
networks:
  frontend: {}
  backend: {}
"#;

const VOTING_OBJECTS: [&str; 7] = [
    "service/voting_redis",
    "service/voting_db",
    "service/voting_vote",
    "service/voting_result",
    "service/voting_worker",
    "network/voting_frontend",
    "network/voting_backend",
];

fn start() -> Server {
    Server::start_api_only().unwrap_or_else(|e| panic!("{e:#}"))
}

/// Writes a stack file named `voting.yml` into a fresh directory under the server's scratch dir.
fn write_stack(server: &Server, tag: &str, text: &str) -> PathBuf {
    let dir = server.dir().join(tag);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("voting.yml");
    std::fs::write(&path, text).unwrap();
    path
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// `apply` output as a sorted list of `(reference, action)`.
fn actions(stdout: &str) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = stdout
        .lines()
        .map(|l| {
            let mut parts = l.splitn(2, ' ');
            (
                parts.next().unwrap_or("").to_string(),
                parts.next().unwrap_or("").to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

fn expect_all(stdout: &str, action: &str) {
    let mut want: Vec<(String, String)> = VOTING_OBJECTS
        .iter()
        .map(|r| (r.to_string(), action.to_string()))
        .collect();
    want.sort();
    assert_eq!(actions(stdout), want, "{stdout}");
}

fn service_names(server: &Server) -> Vec<String> {
    let list = server.swarm(&["get", "services", "-o", "json"]).ok().json();
    assert_eq!(list["kind"], "ServiceList");
    let mut names: Vec<String> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

#[test]
fn apply_reapply_edit_and_diff() {
    let server = start();
    let file = write_stack(&server, "v1", VOTING);

    // Nothing there yet: diff shows everything as added and exits 1.
    let diff = server.swarm(&["diff", "-f", p(&file)]);
    assert_eq!(diff.code, Some(1), "{diff:#?}");
    assert!(
        diff.stdout.contains("+++ desired/service/voting_vote"),
        "{diff:#?}"
    );

    let first = server.swarm(&["apply", "-f", p(&file)]).ok();
    expect_all(&first.stdout, "created");
    assert!(first.lines().contains(&"service/voting_vote created"));

    let again = server.swarm(&["apply", "-f", p(&file)]).ok();
    expect_all(&again.stdout, "unchanged");

    let diff = server.swarm(&["diff", "-f", p(&file)]);
    assert_eq!(diff.code, Some(0), "{diff:#?}");
    assert_eq!(diff.stdout, "");

    // Change the replicas of one service.
    let edited = write_stack(&server, "v2", &VOTING.replace("replicas: 2", "replicas: 3"));
    let diff = server.swarm(&["diff", "-f", p(&edited)]);
    assert_eq!(diff.code, Some(1), "{diff:#?}");
    assert!(
        diff.stdout.contains("live/service/voting_vote"),
        "{diff:#?}"
    );
    let changed: Vec<&str> = diff
        .lines()
        .into_iter()
        .filter(|l| {
            (l.starts_with('+') || l.starts_with('-'))
                && !l.starts_with("+++")
                && !l.starts_with("---")
        })
        .collect();
    assert_eq!(changed.len(), 2, "{}", diff.stdout);
    assert!(
        changed[0].starts_with('-') && changed[0].contains("replicas: 2"),
        "{changed:?}"
    );
    assert!(
        changed[1].starts_with('+') && changed[1].contains("replicas: 3"),
        "{changed:?}"
    );

    let third = server.swarm(&["apply", "-f", p(&edited)]).ok();
    let acts = actions(&third.stdout);
    for (reference, action) in &acts {
        let want = if reference == "service/voting_vote" {
            "configured"
        } else {
            "unchanged"
        };
        assert_eq!(action, want, "{}", third.stdout);
    }
    assert_eq!(acts.len(), VOTING_OBJECTS.len());
    let vote = server
        .swarm(&["get", "svc", "voting_vote", "-o", "json"])
        .ok()
        .json();
    assert_eq!(vote["spec"]["mode"]["replicated"]["replicas"], 3);
    assert_eq!(server.swarm(&["diff", "-f", p(&edited)]).code, Some(0));
}

#[test]
fn dry_run_writes_nothing() {
    let server = start();
    let file = write_stack(&server, "v1", VOTING);
    let dry = server.swarm(&["apply", "--dry-run", "-f", p(&file)]).ok();
    expect_all(&dry.stdout, "created (dry run)");
    assert!(service_names(&server).is_empty());
    let nets = server.swarm(&["get", "networks", "-o", "json"]).ok().json();
    assert_eq!(nets["items"].as_array().map(Vec::len), Some(0), "{nets}");
}

#[test]
fn prune_deletes_what_the_file_no_longer_lists() {
    let server = start();
    let file = write_stack(&server, "v1", VOTING);
    server.swarm(&["apply", "-f", p(&file)]).ok();

    let start = VOTING.find("  worker:").unwrap();
    let end = VOTING.find("networks:\n  frontend").unwrap();
    let without_worker = format!("{}{}", &VOTING[..start], &VOTING[end..]);
    let smaller = write_stack(&server, "v2", &without_worker);

    // Without --prune the worker is left alone.
    let keep = server.swarm(&["apply", "-f", p(&smaller)]).ok();
    assert!(!keep.stdout.contains("voting_worker"), "{}", keep.stdout);
    assert!(service_names(&server).contains(&"voting_worker".to_string()));

    let diff = server.swarm(&["diff", "--prune", "-f", p(&smaller)]);
    assert_eq!(diff.code, Some(1), "{diff:#?}");
    assert!(
        diff.stdout.contains("--- live/service/voting_worker"),
        "{diff:#?}"
    );
    assert!(diff.stdout.contains("-  name: voting_worker"), "{diff:#?}");

    let pruned = server.swarm(&["apply", "--prune", "-f", p(&smaller)]).ok();
    assert!(
        pruned.lines().contains(&"service/voting_worker pruned"),
        "{}",
        pruned.stdout
    );
    assert!(!service_names(&server).contains(&"voting_worker".to_string()));
    let gone = server.swarm(&["get", "svc", "voting_worker"]);
    assert!(!gone.success());
    assert!(gone.stderr.contains("not found"), "{gone:#?}");
}

#[test]
fn get_prints_tables_json_and_yaml_and_describe_explains() {
    let server = start();
    let file = write_stack(&server, "v1", VOTING);
    server.swarm(&["apply", "-f", p(&file)]).ok();

    let table = server.swarm(&["get", "svc"]).ok();
    let lines = table.lines();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "MODE", "REPLICAS", "IMAGE", "PORTS", "AGE"]
    );
    assert_eq!(lines.len(), 6, "{}", table.stdout);
    let vote: Vec<&str> = lines
        .iter()
        .find(|l| l.starts_with("voting_vote "))
        .unwrap_or_else(|| panic!("{}", table.stdout))
        .split_whitespace()
        .collect();
    assert_eq!(vote[1], "replicated");
    assert!(vote[2].ends_with("/2"), "{vote:?}");
    assert_eq!(vote[3], "dockersamples/examplevotingapp_vote:before");
    assert_eq!(vote[4], "*:5000->80/tcp");

    let wide = server.swarm(&["get", "Service", "-o", "wide"]).ok();
    assert!(wide.lines()[0].contains("NETWORKS"), "{}", wide.stdout);

    let nets = server.swarm(&["get", "net"]).ok();
    let header: Vec<&str> = nets.lines()[0].split_whitespace().collect();
    assert_eq!(header, ["NAME", "DRIVER", "SUBNET", "AGE"]);
    assert_eq!(nets.lines().len(), 3, "{}", nets.stdout);

    let list = server
        .swarm(&["get", "services", "-l", "swarm.stack=voting", "-o", "json"])
        .ok()
        .json();
    assert_eq!(list["kind"], "ServiceList");
    assert_eq!(list["apiVersion"], "swarm/v1");
    assert_eq!(list["items"].as_array().map(Vec::len), Some(5));
    let none = server
        .swarm(&["get", "services", "-l", "swarm.stack=other", "-o", "json"])
        .ok()
        .json();
    assert_eq!(none["items"].as_array().map(Vec::len), Some(0));

    let one = server
        .swarm(&["get", "svc", "voting_db", "-o", "json"])
        .ok()
        .json();
    assert_eq!(one["kind"], "Service");
    assert_eq!(
        one["spec"]["taskTemplate"]["container"]["env"]["POSTGRES_USER"],
        "postgres"
    );

    let yaml = server
        .swarm(&["get", "svc", "voting_db", "-o", "yaml"])
        .ok();
    assert!(yaml.stdout.contains("kind: Service"), "{}", yaml.stdout);
    assert!(yaml.stdout.contains("name: voting_db"), "{}", yaml.stdout);

    let described = server.swarm(&["describe", "svc", "voting_vote"]).ok();
    for want in [
        "Name:",
        "voting_vote",
        "Labels:",
        "swarm.stack=voting",
        "Spec:",
        "Replicas:",
        "Status:",
        "Tasks:",
    ] {
        assert!(
            described.stdout.contains(want),
            "{want:?} missing in\n{}",
            described.stdout
        );
    }
    let missing = server.swarm(&["describe", "svc", "nope"]);
    assert_eq!(missing.code, Some(1));
    assert!(missing.stderr.contains("not found"), "{missing:#?}");
}

#[test]
fn get_watch_prints_one_json_line_per_event() {
    let server = start();
    let file = write_stack(&server, "v1", VOTING);
    server.swarm(&["apply", "-f", p(&file)]).ok();

    let mut watch = server
        .spawn_lines(&["get", "services", "-w", "-o", "json"])
        .unwrap();
    let mut initial = Vec::new();
    for _ in 0..5 {
        let line = watch.next_line().unwrap();
        let ev: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(ev["type"], "ADDED", "{line}");
        assert!(!line.contains('\n'));
        initial.push(
            ev["object"]["metadata"]["name"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    initial.sort();
    assert_eq!(
        initial,
        [
            "voting_db",
            "voting_redis",
            "voting_result",
            "voting_vote",
            "voting_worker"
        ]
    );

    let edited = write_stack(&server, "v2", &VOTING.replace("replicas: 2", "replicas: 4"));
    server.swarm(&["apply", "-f", p(&edited)]).ok();
    let (line, _) = watch
        .until(|l| l.contains("\"MODIFIED\"") && l.contains("voting_vote"))
        .unwrap();
    let ev: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(ev["object"]["spec"]["mode"]["replicated"]["replicas"], 4);

    server.swarm(&["delete", "svc", "voting_redis"]).ok();
    let (line, _) = watch.until(|l| l.contains("\"DELETED\"")).unwrap();
    let ev: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(ev["object"]["metadata"]["name"], "voting_redis");

    // Ctrl-C ends the watch successfully.
    let status = watch.interrupt().unwrap();
    assert_eq!(status.code(), Some(0), "{status}");
}

/// `(resourceVersion, "TYPE Kind name")` of the next `n` lines of `swarm events -o json`.
fn event_lines(events: &mut swarm_tests::Lines, n: usize) -> Vec<(u64, String)> {
    (0..n)
        .map(|_| {
            let line = events.next_line().unwrap();
            let ev: serde_json::Value =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
            let o = &ev["object"];
            let rv = o["metadata"]["resourceVersion"].as_str().unwrap();
            (
                rv.parse().unwrap(),
                format!(
                    "{} {} {}",
                    ev["type"].as_str().unwrap(),
                    o["kind"].as_str().unwrap(),
                    o["metadata"]["name"].as_str().unwrap()
                ),
            )
        })
        .collect()
}

/// `swarm events` against a `swarm server` process: networks and configs written interleaved
/// come out in revision order, and `--since` a printed revision resumes with exactly the rest.
#[test]
fn events_of_two_kinds_come_in_revision_order_and_resume_exactly() {
    let server = start();
    let since =
        server.swarm(&["get", "networks", "-o", "json"]).json()["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .to_string();
    let data = server.dir().join("data.txt");
    std::fs::write(&data, "x").unwrap();
    let mut written = Vec::new();
    for i in 0..3 {
        server
            .swarm(&["network", "create", &format!("net-{i}")])
            .ok();
        written.push(format!("ADDED Network net-{i}"));
        for j in ["a", "b"] {
            let name = format!("cfg-{i}{j}");
            server
                .swarm(&["config", "create", &name, data.to_str().unwrap()])
                .ok();
            written.push(format!("ADDED Config {name}"));
        }
    }
    let args = |from: &str| -> Vec<String> {
        [
            "events", "-o", "json", "--kind", "network", "--kind", "config", "--since", from,
        ]
        .map(String::from)
        .to_vec()
    };
    let mut events = server
        .spawn_lines(&args(&since).iter().map(String::as_str).collect::<Vec<_>>())
        .unwrap();
    let all = event_lines(&mut events, written.len());
    let names: Vec<&str> = all.iter().map(|(_, e)| e.as_str()).collect();
    assert_eq!(names, written, "in the order written: {all:?}");
    assert!(all.windows(2).all(|w| w[0].0 < w[1].0), "{all:?}");
    assert_eq!(events.interrupt().unwrap().code(), Some(0));

    let cut = 4;
    let from = all[cut - 1].0.to_string();
    let mut rest = server
        .spawn_lines(&args(&from).iter().map(String::as_str).collect::<Vec<_>>())
        .unwrap();
    assert_eq!(event_lines(&mut rest, all.len() - cut), all[cut..]);
    // Nothing more: a write after the resume comes next, not a repeat.
    server.swarm(&["network", "create", "net-late"]).ok();
    assert_eq!(event_lines(&mut rest, 1)[0].1, "ADDED Network net-late");
}

#[test]
fn get_watch_as_a_table_prints_a_row_per_event() {
    let server = start();
    let file = write_stack(&server, "v1", VOTING);
    server.swarm(&["apply", "-f", p(&file)]).ok();
    let mut watch = server.spawn_lines(&["get", "networks", "-w"]).unwrap();
    let header: Vec<String> = watch
        .next_line()
        .unwrap()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert_eq!(header, ["EVENT", "NAME", "DRIVER", "SUBNET", "AGE"]);
    let mut rows = vec![watch.next_line().unwrap(), watch.next_line().unwrap()];
    rows.sort();
    assert!(
        rows[0].starts_with("ADDED") && rows[0].contains("voting_backend"),
        "{rows:?}"
    );
    assert!(
        rows[1].starts_with("ADDED") && rows[1].contains("voting_frontend"),
        "{rows:?}"
    );
    server.swarm(&["delete", "network", "voting_backend"]).ok();
    let (row, _) = watch.until(|l| l.starts_with("DELETED")).unwrap();
    assert!(row.contains("voting_backend"), "{row}");
}

#[test]
fn delete_prints_what_it_deleted() {
    let server = start();
    let file = write_stack(&server, "v1", VOTING);
    server.swarm(&["apply", "-f", p(&file)]).ok();
    let del = server
        .swarm(&["delete", "svc", "voting_redis", "voting_db"])
        .ok();
    assert_eq!(
        del.lines(),
        ["service/voting_redis deleted", "service/voting_db deleted"]
    );
    assert_eq!(
        service_names(&server),
        ["voting_result", "voting_vote", "voting_worker"]
    );
    let again = server.swarm(&["delete", "service", "voting_redis"]);
    assert_eq!(again.code, Some(1));
    assert!(
        again.stderr.contains("service/voting_redis") && again.stderr.contains("not found"),
        "{again:#?}"
    );
}

#[test]
fn a_refused_apply_names_the_cause_and_writes_nothing() {
    let server = start();
    let text = r#"
services:
  web:
    image: nginx:alpine
    networks: [outside]
  api:
    image: nginx:alpine
networks:
  outside:
    external: true
    name: no_such_network
"#;
    let file = write_stack(&server, "bad", text);
    let refused = server.swarm(&["apply", "-f", p(&file)]);
    assert!(!refused.success(), "{refused:#?}");
    assert!(refused.stderr.contains("no_such_network"), "{refused:#?}");
    assert_eq!(refused.stdout, "");
    assert!(service_names(&server).is_empty());
}

#[test]
fn apply_of_the_example_voting_stack() {
    let example = workspace_root().join("examples/stacks/voting.yml");
    let server = start();
    let file = if example.exists() {
        example
    } else {
        write_stack(&server, "v1", VOTING)
    };
    let out = server
        .swarm(&["apply", "--stack", "voting", "-f", p(&file)])
        .ok();
    assert!(!out.stdout.is_empty());
    for line in out.lines() {
        assert!(line.ends_with(" created"), "{}", out.stdout);
    }
    assert!(
        out.lines().contains(&"service/voting_vote created"),
        "{}",
        out.stdout
    );
    let again = server
        .swarm(&["apply", "--stack", "voting", "-f", p(&file)])
        .ok();
    assert!(
        again.lines().iter().all(|l| l.ends_with(" unchanged")),
        "{}",
        again.stdout
    );
    assert_eq!(again.lines().len(), out.lines().len());
}

#[test]
fn without_a_server_the_error_says_what_to_do() {
    let home = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{}", closed_port());
    let out = swarm_command(home.path())
        .args(["get", "services", "--server", &url])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot reach the apiserver at {url}")),
        "{stderr}"
    );
    assert!(stderr.contains("is 'swarm server' running?"), "{stderr}");

    // The same through a credentials file.
    let conf = home.path().join("admin.conf");
    swarm_client_config(&conf, &url);
    let out = swarm_command(home.path())
        .env("SWARM_CONFIG", &conf)
        .args(["delete", "svc", "web"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot reach the apiserver at {url}")),
        "{stderr}"
    );

    // diff reports "could not tell" as 2, not as "changes".
    let stack = home.path().join("s.yml");
    std::fs::write(&stack, "services:\n  web:\n    image: nginx\n").unwrap();
    let out = swarm_command(home.path())
        .args(["diff", "-f", p(&stack), "--server", &url])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Writes a one-context credentials file by hand (the format of `swarm_client::ClientConfig`).
fn swarm_client_config(path: &Path, url: &str) {
    std::fs::write(
        path,
        format!("apiVersion: swarm/v1\nkind: ClientConfig\ncurrentContext: default\ncontexts:\n  - name: default\n    server: {url}\n"),
    )
    .unwrap();
}
