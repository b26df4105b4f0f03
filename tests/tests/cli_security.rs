//! Security as a user meets it through the CLI: `swarm server` is TLS by default, machines
//! join with `swarm join --token`, `swarm join-token` shows and rotates tokens, `swarm init`
//! makes a swarm that `swarm server` then runs; each refusal says clearly what is wrong.

use std::time::Duration;

use swarm_client::ClientConfig;
use swarm_tests::{Lines, Server, eventually, swarm_command};

/// `host:port` of the server's API, from its admin.conf.
fn api_addr(server: &Server) -> String {
    swarm_tests::api_addr(&server.config)
}

#[test]
fn without_a_client_certificate_the_cli_says_not_authenticated() {
    let server = Server::start_api_only().unwrap();
    let conf = ClientConfig::load(&server.config).unwrap();
    let ctx = conf.current().unwrap();
    assert!(
        ctx.server.starts_with("https://"),
        "TLS by default: {}",
        ctx.server
    );
    // The CA, but no client certificate.
    let mut anonymous = ClientConfig::single(ctx.server.clone());
    anonymous.contexts[0].certificate_authority = ctx.certificate_authority.clone();
    let path = server.dir().join("anonymous.conf");
    anonymous.save(&path).unwrap();
    let out = swarm_command(server.dir())
        .env("SWARM_CONFIG", &path)
        .args(["get", "services"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("not authenticated: "), "{stderr}");
    // The admin's credentials work.
    server.swarm(&["get", "services"]).ok();
}

#[test]
fn a_machine_joins_with_the_token_and_a_rotated_token_is_refused() {
    let server = Server::start().unwrap();
    let addr = api_addr(&server);
    let shown = server.swarm(&["join-token", "worker"]).ok();
    assert!(
        shown
            .stdout
            .contains("To add a worker to this swarm, run the following command:"),
        "{shown:#?}"
    );
    let token = server.swarm(&["join-token", "-q", "worker"]).ok();
    let token = token.stdout.trim().to_string();
    assert!(
        shown
            .stdout
            .contains(&format!("swarm join --token {token} {addr}")),
        "{shown:#?}"
    );

    // A simulated node joins and becomes Ready.
    let data = server.dir().join("joined");
    let mut join = swarm_command(server.dir());
    join.args([
        "join",
        "--token",
        &token,
        &addr,
        "--runtime",
        "sim",
        "--node-name",
        "edge",
    ])
    .arg("--data-dir")
    .arg(&data);
    let _agent = Lines::spawn(&mut join).unwrap();
    eventually("the joined node to be ready", || {
        let ls = server.swarm(&["node", "ls", "--format", "{{.Hostname}} {{.Status}}"]);
        ls.stdout
            .lines()
            .any(|l| l == "edge-0000 Ready")
            .then_some(())
    });
    assert!(data.join("nodes/edge-0000/pki/node.crt").exists());

    // Every controller acts under its own certificate, and each may do its part: ipam makes
    // the ingress network, and a service converges on the joined node.
    eventually("ipam to create the ingress network", || {
        server
            .swarm(&["get", "networks", "ingress"])
            .success()
            .then_some(())
    });
    let created = server.swarm(&[
        "service",
        "create",
        "--name",
        "web",
        "--replicas",
        "2",
        "--timeout",
        "60s",
        "swarm-examples/hello:1",
    ]);
    assert!(created.success(), "{created:#?}\n{}", server.log());
    let ps = server.swarm(&[
        "service",
        "ps",
        "web",
        "--format",
        "{{.Node}} {{.CurrentState}}",
    ]);
    let on_edge = ps
        .stdout
        .lines()
        .filter(|l| l.starts_with("edge-0000 Running"))
        .count();
    assert_eq!(on_edge, 2, "{ps:#?}");
    assert!(
        !server.log().contains("may not"),
        "an authorization refusal:\n{}",
        server.log()
    );

    // Rotation retires the old token: joining with it is refused, with advice.
    let rotated = server.swarm(&["join-token", "--rotate", "worker"]).ok();
    assert!(
        rotated
            .stdout
            .starts_with("Successfully rotated worker join token."),
        "{rotated:#?}"
    );
    let out = swarm_command(server.dir())
        .args(["join", "--token", &token, &addr, "--data-dir"])
        .arg(server.dir().join("late"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("not valid (it may have been rotated)"),
        "{stderr}"
    );

    // A token of another swarm: the CA this manager shows is not the one in the token.
    let other = Server::start_api_only().unwrap();
    let foreign = other.swarm(&["join-token", "-q", "worker"]).ok();
    let out = swarm_command(server.dir())
        .args([
            "join",
            "--token",
            foreign.stdout.trim(),
            &addr,
            "--data-dir",
        ])
        .arg(server.dir().join("foreign"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("does not match the join token"), "{stderr}");
}

#[test]
fn swarm_init_makes_the_swarm_that_swarm_server_runs() {
    let home = tempfile::tempdir().unwrap();
    let data = home.path().join("data");
    let port = swarm_tests::closed_port().to_string();
    let init = swarm_command(home.path())
        .args(["init", "--port", &port, "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&init.stdout);
    assert!(init.status.success(), "{init:#?}");
    assert!(stdout.contains("swarm join --token SWMTKN-1-"), "{stdout}");
    // `~/.swarm/config` now points at the swarm.
    let user_conf = ClientConfig::load(&home.path().join(".swarm/config")).unwrap();
    let cluster = std::fs::read_to_string(data.join("pki/cluster-id")).unwrap();
    assert_eq!(user_conf.current_context, cluster.trim());

    // Again: refused, it is a swarm already.
    let again = swarm_command(home.path())
        .args(["init", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds a swarm"));

    // The manager runs it; the CLI finds it through ~/.swarm/config alone.
    let log = std::fs::File::create(home.path().join("server.log")).unwrap();
    let mut server = swarm_command(home.path())
        .args([
            "server",
            "--agent",
            "none",
            "--dispatcher-listen",
            "127.0.0.1:0",
        ])
        .args(["--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(&data)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let listed = eventually("the server to answer", || {
        let out = swarm_command(home.path())
            .args(["get", "nodes"])
            .output()
            .ok()?;
        out.status.success().then_some(out)
    });
    let _ = server.kill();
    let _ = server.wait();
    assert!(listed.status.success(), "{listed:#?}");
    // Same CA as `swarm init` made: the cluster id did not change.
    let after = std::fs::read_to_string(data.join("pki/cluster-id")).unwrap();
    assert_eq!(after, cluster);
}

/// `swarm credentials controller all` and `swarm-controller --config FILE all`: controllers in
/// their own process, each under its own certificate, do their job against a TLS server that
/// runs none; with a controller's certificate, kinds not its own and issuing certificates are
/// refused.
#[test]
fn an_out_of_process_controller_works_under_its_own_certificate() {
    use std::os::unix::fs::PermissionsExt;
    use swarm_api::{Service, ServiceMode, ServiceSpec, StatusReason, Task};

    let server = Server::start_api_only().unwrap();
    let conf = server.dir().join("ctl/controllers.conf");
    let issued = server
        .swarm(&[
            "credentials",
            "controller",
            "all",
            "-o",
            conf.to_str().unwrap(),
        ])
        .ok();
    assert!(
        issued
            .stdout
            .contains(&format!("swarm-controller --config {} all", conf.display())),
        "{issued:#?}"
    );
    let file = ClientConfig::load(&conf).unwrap();
    let names: Vec<&str> = file.contexts.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["replication", "ipam", "placement", "update", "nodes", "gc"]
    );
    let key = file.contexts[0].client_key.clone().unwrap();
    let mode = std::fs::metadata(&key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{}", key.display());

    let log_path = server.dir().join("controller.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let _controller = KillOnDrop(
        std::process::Command::new(swarm_tests::bin_dir().join("swarm-controller"))
            .arg("--config")
            .arg(&conf)
            .args(["all", "--lease-duration", "5s"])
            .env("RUST_LOG", "info")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let controller_log = || std::fs::read_to_string(&log_path).unwrap_or_default();

    let rt = tokio::runtime::Runtime::new().unwrap();
    let admin =
        swarm_client::Client::from_config(&ClientConfig::load(&server.config).unwrap()).unwrap();
    let mut spec = ServiceSpec {
        mode: ServiceMode::Replicated { replicas: 2 },
        ..ServiceSpec::default()
    };
    spec.task_template.container.image = "swarm-examples/hello:1".into();
    rt.block_on(admin.create(&Service::new("web", spec.clone())))
        .unwrap();
    // replication (its certificate) creates the tasks; ipam (its own) the ingress network.
    eventually("the controller to create the tasks", || {
        let tasks = rt
            .block_on(admin.list::<Task>(&swarm_client::ListParams::default()))
            .ok()?;
        let mut names: Vec<String> = tasks.items.into_iter().map(|t| t.metadata.name).collect();
        names.sort();
        (names == ["web.1.1", "web.2.1"]).then_some(())
    });
    eventually("ipam to create the ingress network", || {
        server
            .swarm(&["get", "networks", "ingress"])
            .success()
            .then_some(())
    });
    assert!(
        !controller_log().contains("may not"),
        "an authorization refusal:\n{}",
        controller_log()
    );

    // With replication's certificate: reading is fine, creating a service is not its part.
    let mut as_replication = file.clone();
    as_replication.current_context = "replication".into();
    let replication = swarm_client::Client::from_config(&as_replication).unwrap();
    rt.block_on(replication.get::<Service>("web")).unwrap();
    let refused = rt
        .block_on(replication.create(&Service::new("sneaky", spec)))
        .unwrap_err();
    assert_eq!(
        refused.status().map(|s| s.reason),
        Some(StatusReason::Forbidden),
        "{refused}"
    );
    assert!(
        refused
            .to_string()
            .contains("controller replication may not create services"),
        "{refused}"
    );
    // Nor may a controller have certificates issued.
    let out = swarm_command(server.dir())
        .env("SWARM_CONFIG", &conf)
        .args(["credentials", "controller", "gc", "-o"])
        .arg(server.dir().join("stolen.conf"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("may not have certificates issued: only admins may"),
        "{stderr}"
    );
    // An unknown controller name is refused with the known ones.
    let unknown = server.swarm(&[
        "credentials",
        "controller",
        "root",
        "-o",
        server.dir().join("root.conf").to_str().unwrap(),
    ]);
    assert!(!unknown.success());
    assert!(
        unknown.stderr.contains("unknown controller \"root\""),
        "{unknown:#?}"
    );
}

/// A child process killed when the test ends, passing or not.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `swarm server` with certificates that last 8 s: the apiserver's serving certificate, the
/// in-process controllers' and the local agent's client certificates are all renewed without
/// a restart, so after the first ones expired the cluster still converges a service.
#[test]
fn certificates_are_renewed_without_a_restart() {
    use std::path::PathBuf;
    let server = Server::start_with(&["--agent", "sim", "--cert-validity", "8s"]).unwrap();
    let data = server.config.parent().unwrap().to_path_buf();
    let read = |p: &PathBuf| std::fs::read_to_string(p).ok();
    let node_crt = eventually("the local agent to join", || {
        find_file(&data.join("agent"), "node.crt")
    });
    let mut files: Vec<PathBuf> = vec![data.join("pki/apiserver.crt"), node_crt];
    for name in ["replication", "ipam", "placement", "update", "nodes", "gc"] {
        files.push(data.join(format!("pki/controllers/{name}.crt")));
    }
    let first: Vec<String> = files
        .iter()
        .map(|f| eventually("the certificates to be written", || read(f)))
        .collect();
    let expiry = first
        .iter()
        .map(|pem| swarm_client::join::validity(pem).unwrap().1)
        .max()
        .unwrap();
    // Every certificate replaced on disk (and in use), and every first one expired.
    eventually(
        "every certificate to be renewed after the first ones expired",
        || {
            let all_new = files
                .iter()
                .zip(&first)
                .all(|(f, old)| read(f).is_some_and(|now| &now != old));
            (all_new && std::time::SystemTime::now() > expiry + Duration::from_secs(1))
                .then_some(())
        },
    );
    for f in &files {
        let (_, not_after) = swarm_client::join::validity(&read(f).unwrap()).unwrap();
        assert!(
            not_after > std::time::SystemTime::now(),
            "{} holds an expired certificate",
            f.display()
        );
    }
    let created = server.swarm(&[
        "service",
        "create",
        "--name",
        "web",
        "--replicas",
        "2",
        "--timeout",
        "60s",
        "swarm-examples/hello:1",
    ]);
    assert!(created.success(), "{created:#?}\n{}", server.log());
    let ps = server.swarm(&["service", "ps", "web", "--format", "{{.CurrentState}}"]);
    let running = ps
        .stdout
        .lines()
        .filter(|l| l.starts_with("Running"))
        .count();
    assert_eq!(running, 2, "{ps:#?}");
}

/// The first file named `name` under `dir`, searched depth first.
fn find_file(dir: &std::path::Path, name: &str) -> Option<std::path::PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if let Some(found) = find_file(&path, name) {
                return Some(found);
            }
        } else if path.file_name().is_some_and(|n| n == name) {
            return Some(path);
        }
    }
    None
}
