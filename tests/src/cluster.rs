//! A whole cluster on this machine, as a user runs it: `swarm server` (apiserver and every
//! controller) and real `swarm-agent` processes on the Docker engine, each a node with its own
//! name, data directory and advertise address (127.0.0.1, 127.0.0.2, … — all loopback on
//! Linux), driven through the `swarm` CLI.
//!
//! Node names start with a prefix unique to the test and the process, and each cluster cuts
//! its networks' subnets from a /16 of its own (`--default-addr-pool`: bridge networks of
//! clusters sharing an engine share the host's address space), so tests run in parallel on
//! one engine; everything the agents create in Docker carries `swarm.node=<node>`, and
//! dropping the `Cluster` removes those containers and networks (also when the test panicked).
//! The demo images are built first by `examples/apps/build.sh` if they are missing.
//! What clusters of killed test runs left behind is swept at the first start (by the pid in
//! the node names). The server's and agents' logs are printed when a test fails (always with `SWARM_E2E_LOGS`
//! set; add `-- --nocapture`).

use std::collections::BTreeSet;
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::Value;

use crate::{Run, Server, workspace_root};

/// The longest a wait in a cluster test lasts (containers start, nodes time out); waits end
/// as soon as what they wait for holds.
pub const PATIENCE: Duration = Duration::from_secs(120);

static IMAGES: Mutex<bool> = Mutex::new(false);

/// Builds `swarm-examples/hello:{1,2,bad}` with `examples/apps/build.sh` unless present.
pub fn build_images() {
    let mut built = IMAGES.lock().unwrap_or_else(|p| p.into_inner());
    if *built {
        return;
    }
    let have = |tag: &str| {
        Command::new("docker")
            .args(["image", "inspect", tag])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !["1", "2", "bad"]
        .iter()
        .all(|t| have(&format!("swarm-examples/hello:{t}")))
    {
        let script = workspace_root().join("examples/apps/build.sh");
        let st = Command::new("bash")
            .arg(&script)
            .status()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(st.success(), "{} failed", script.display());
    }
    *built = true;
}

/// `docker ARGS…`: (succeeded, stdout, stderr), trimmed.
pub fn docker(args: &[&str]) -> (bool, String, String) {
    match Command::new("docker").args(args).output() {
        Ok(o) => (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).trim().to_string(),
            String::from_utf8_lossy(&o.stderr).trim().to_string(),
        ),
        Err(e) => (false, String::new(), format!("cannot run docker: {e}")),
    }
}

/// One HTTP/1.1 GET of `/` at `ip:port`; the whole answer, or `None` if nothing answered.
pub fn http_get(ip: &str, port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let addr = std::net::SocketAddr::new(ip.parse().ok()?, port);
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET / HTTP/1.1\r\nHost: {ip}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    (!out.is_empty()).then_some(out)
}

/// A TCP port free on loopback right now (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port on loopback: {e}"))
}

/// Polls `check` until it returns `Ok`, at most `PATIENCE`; panics with `what` and the last
/// `Err` (what was seen instead) otherwise.
#[track_caller]
pub fn wait_for<T>(what: &str, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match check() {
            Ok(v) => return v,
            Err(seen) if Instant::now() > deadline => {
                panic!("timed out after {PATIENCE:?} waiting for {what}; last seen: {seen}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

/// A `10.X.0.0/16` that no network on the engine uses and no other cluster of this process
/// took, for this cluster's `--default-addr-pool`. Processes start looking at different
/// places (by pid), so concurrent test processes rarely meet.
pub fn address_pool() -> String {
    static TAKEN: Mutex<BTreeSet<u8>> = Mutex::new(BTreeSet::new());
    let mut taken = TAKEN.lock().unwrap_or_else(|p| p.into_inner());
    let (_, ids, _) = docker(&["network", "ls", "-q"]);
    let mut args = vec![
        "network",
        "inspect",
        "--format",
        "{{range .IPAM.Config}}{{.Subnet}} {{end}}",
    ];
    args.extend(ids.lines());
    let (_, subnets, _) = docker(&args);
    let used: BTreeSet<u8> = subnets
        .split_whitespace()
        .filter_map(|s| s.strip_prefix("10.")?.split('.').next()?.parse().ok())
        .collect();
    // 10.0/16 is the default pool's start (a cluster without the flag); 10.255 holds some
    // engines' DNS.
    let start = std::process::id() % 230;
    let x = (0..230u32)
        .map(|i| (20 + (start + i) % 230) as u8)
        .find(|x| !used.contains(x) && !taken.contains(x))
        .unwrap_or_else(|| panic!("no free 10.X.0.0/16 on this engine (used: {used:?})"));
    taken.insert(x);
    format!("10.{x}.0.0/16")
}

/// Removes what clusters of test processes that no longer run left behind (a run killed
/// before its drops ran): containers and networks whose `swarm.node` is `e2e-<test>-<pid>-…`
/// with no process `<pid>`. Once per process.
pub fn sweep_leftovers() {
    static SWEPT: Mutex<bool> = Mutex::new(false);
    let mut swept = SWEPT.lock().unwrap_or_else(|p| p.into_inner());
    if *swept {
        return;
    }
    *swept = true;
    let dead = |node: &str| -> bool {
        let Some(rest) = node.strip_prefix("e2e-") else {
            return false;
        };
        let parts: Vec<&str> = rest.split('-').collect();
        match parts
            .len()
            .checked_sub(2)
            .and_then(|i| parts[i].parse::<u32>().ok())
        {
            Some(pid) => !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            None => false,
        }
    };
    let format = "{{.ID}} {{.Label \"swarm.node\"}}";
    let (_, containers, _) = docker(&[
        "ps",
        "-a",
        "--filter",
        "label=swarm.node",
        "--format",
        format,
    ]);
    let ids: Vec<&str> = containers
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(_, node)| dead(node))
        .map(|(id, _)| id)
        .collect();
    if !ids.is_empty() {
        let mut args = vec!["rm", "-f", "-v"];
        args.extend(&ids);
        docker(&args);
    }
    let (_, nets, _) = docker(&[
        "network",
        "ls",
        "--filter",
        "label=swarm.node",
        "--format",
        format,
    ]);
    for (id, _) in nets
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(_, node)| dead(node))
    {
        docker(&["network", "rm", id]);
    }
    if let Ok(dir) = std::fs::read_dir("/dev/shm") {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.strip_prefix("swarm-agent-").is_some_and(dead) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

/// One node: a `swarm-agent` process.
pub struct Agent {
    pub name: String,
    pub addr: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Agent {
    /// The agent's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A running container of the cluster, as `docker ps` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Container {
    pub id: String,
    pub name: String,
    pub node: String,
    pub task: String,
    pub service: String,
}

/// `swarm server` and its agents; see the module doc.
pub struct Cluster {
    pub server: Server,
    /// Unique to this test and process; node names start with it.
    pub prefix: String,
    agents: Vec<Agent>,
}

impl Cluster {
    /// `swarm server` (apiserver and controllers, no local agent) with its dispatcher on
    /// loopback and an address pool of its own, plus `extra` arguments; no node yet (see
    /// `add_agent`).
    pub fn start(test: &str, extra: &[&str]) -> Cluster {
        build_images();
        sweep_leftovers();
        let prefix = format!("e2e-{test}-{}", std::process::id());
        // The dispatcher's port is chosen here (the server does not print it); a port taken
        // in between makes the server exit, and another is tried.
        let mut last = None;
        for _ in 0..5 {
            let dispatcher = format!("127.0.0.1:{}", free_port());
            let pool = address_pool();
            let mut args = vec![
                "--agent",
                "none",
                "--dispatcher-listen",
                &dispatcher,
                "--default-addr-pool",
                &pool,
            ];
            args.extend_from_slice(extra);
            match Server::start_with(&args) {
                Ok(server) => {
                    return Cluster {
                        server,
                        prefix,
                        agents: Vec::new(),
                    };
                }
                Err(e) => last = Some(e),
            }
        }
        panic!("swarm server did not start: {last:?}")
    }

    /// Starts a node named `<prefix>-<suffix>` advertising `ip`, with its own data
    /// directory, on the Docker runtime: `swarm join --token … ADDR:PORT` with the worker
    /// token, as a user adds a machine. Returns the node's name.
    ///
    /// The one place that knows how a node joins: change it here if joining changes.
    pub fn add_agent(&mut self, suffix: &str, ip: &str) -> String {
        let name = format!("{}-{suffix}", self.prefix);
        let data = self.server.dir().join(format!("agent-{suffix}"));
        let log = self.server.dir().join(format!("agent-{suffix}.log"));
        let out = File::create(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        let err = out
            .try_clone()
            .unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        let token = self.server.swarm(&["join-token", "-q", "worker"]).ok();
        let config = swarm_client::ClientConfig::load(&self.server.config)
            .unwrap_or_else(|e| panic!("{}: {e}", self.server.config.display()));
        let api = config
            .current()
            .map(|c| c.server.trim_start_matches("https://").to_string())
            .unwrap_or_default();
        let child = crate::swarm_command(self.server.dir())
            .args(["join", "--token", token.stdout.trim(), &api, "--data-dir"])
            .arg(&data)
            .args([
                "--runtime",
                "docker",
                "--advertise-addr",
                ip,
                "--node-name",
                &name,
            ])
            .env("SWARM_LOG", "info")
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start swarm join: {e}"));
        self.agents.push(Agent {
            name: name.clone(),
            addr: ip.to_string(),
            child: Some(child),
            log,
        });
        name
    }

    /// Starts `n` nodes advertising 127.0.0.1, 127.0.0.2, … and waits until all are ready.
    pub fn add_agents(&mut self, n: usize) -> Vec<String> {
        let names: Vec<String> = (1..=n)
            .map(|i| self.add_agent(&format!("n{i}"), &format!("127.0.0.{i}")))
            .collect();
        for name in &names {
            self.wait_node_status(name, "ready");
        }
        names
    }

    pub fn agents(&self) -> &[Agent] {
        &self.agents
    }

    /// Kills the node's agent process at once (SIGKILL), as a crashed machine would stop
    /// talking; its containers stay on the engine.
    pub fn kill_agent(&mut self, name: &str) {
        let agent = self
            .agents
            .iter_mut()
            .find(|a| a.name == name)
            .unwrap_or_else(|| panic!("no agent {name}"));
        if let Some(mut child) = agent.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Runs `swarm ARGS…` against the server.
    pub fn swarm(&self, args: &[&str]) -> Run {
        self.server.swarm(args)
    }

    /// `swarm get KIND -o json` (with `--field-selector` if given): the items.
    pub fn get_items(&self, kind: &str, fields: Option<&str>) -> Result<Vec<Value>, String> {
        let mut args = vec!["get", kind, "-o", "json"];
        if let Some(f) = fields {
            args.extend(["--field-selector", f]);
        }
        let run = self.swarm(&args);
        if !run.success() {
            return Err(format!("swarm {args:?} failed: {}", run.stderr));
        }
        serde_json::from_str::<Value>(&run.stdout)
            .map_err(|e| format!("not JSON ({e}): {}", run.stdout))
            .map(|v| v["items"].as_array().cloned().unwrap_or_default())
    }

    /// The service's tasks that should run (desired state `running`), as objects.
    pub fn desired_running(&self, service: &str) -> Result<Vec<Value>, String> {
        Ok(self
            .get_items("tasks", Some(&format!("spec.service={service}")))?
            .into_iter()
            .filter(|t| t["spec"]["desiredState"] == "running")
            .collect())
    }

    /// Waits until the node's `status.state` is `state` (`ready`, `down`).
    pub fn wait_node_status(&self, name: &str, state: &str) {
        wait_for(&format!("node {name} to be {state}"), || {
            let nodes = self.get_items("nodes", None)?;
            let node = nodes
                .iter()
                .find(|n| n["metadata"]["name"] == name)
                .ok_or_else(|| format!("no node {name} among {} nodes", nodes.len()))?;
            let seen = &node["status"]["state"];
            if seen == state {
                Ok(())
            } else {
                Err(format!("status {}", node["status"]))
            }
        })
    }

    /// The running containers of this cluster's nodes on the engine, by `swarm.*` labels.
    pub fn containers(&self) -> Vec<Container> {
        let mut out = Vec::new();
        for a in &self.agents {
            let (ok, stdout, stderr) = docker(&[
                "ps",
                "--filter",
                &format!("label=swarm.node={}", a.name),
                "--format",
                "{{.ID}}\t{{.Names}}\t{{.Label \"swarm.node\"}}\t{{.Label \"swarm.task\"}}\t{{.Label \"swarm.service\"}}",
            ]);
            assert!(ok, "docker ps: {stderr}");
            for line in stdout.lines() {
                let f: Vec<&str> = line.split('\t').collect();
                if let [id, name, node, task, service] = f[..] {
                    out.push(Container {
                        id: id.into(),
                        name: name.into(),
                        node: node.into(),
                        task: task.into(),
                        service: service.into(),
                    });
                }
            }
        }
        out
    }

    /// The running containers of `service` whose node's agent is alive.
    pub fn live_containers(&self, service: &str) -> Vec<Container> {
        let alive: Vec<&str> = self
            .agents
            .iter()
            .filter(|a| a.child.is_some())
            .map(|a| a.name.as_str())
            .collect();
        self.containers()
            .into_iter()
            .filter(|c| c.service == service && alive.contains(&c.node.as_str()))
            .collect()
    }

    /// Everything the server and the agents logged (for failure messages).
    pub fn logs(&self) -> String {
        let mut s = format!("--- swarm server ---\n{}", self.server.log());
        for a in &self.agents {
            s.push_str(&format!("--- agent {} ---\n{}", a.name, a.log()));
        }
        s
    }

    /// Removes every container and network the agents made, and their tmpfs files. All
    /// containers go first: a network one node created may hold containers of the others.
    fn clean_docker(&self) {
        let labels: Vec<String> = self
            .agents
            .iter()
            .map(|a| format!("label=swarm.node={}", a.name))
            .collect();
        for label in &labels {
            let (_, ids, _) = docker(&["ps", "-aq", "--filter", label]);
            let ids: Vec<&str> = ids.lines().collect();
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f", "-v"];
                args.extend(ids);
                docker(&args);
            }
        }
        for label in &labels {
            let (_, nets, _) = docker(&["network", "ls", "-q", "--filter", label]);
            for n in nets.lines() {
                docker(&["network", "rm", n]);
            }
        }
        for a in &self.agents {
            let _ = std::fs::remove_dir_all(format!("/dev/shm/swarm-agent-{}", a.name));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("SWARM_E2E_LOGS").is_some() {
            eprintln!("{}", self.logs());
        }
        // Agents first, so none recreates what is being removed.
        for a in &mut self.agents {
            if let Some(mut child) = a.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        self.clean_docker();
    }
}

/// Reads `examples/…` relative to the workspace.
pub fn example(path: &str) -> anyhow::Result<String> {
    let p = workspace_root().join(path);
    std::fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))
}
