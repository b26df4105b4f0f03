//! Helpers shared by the end-to-end tests: find the built binaries, start `swarm server` on a
//! free port in a temporary data directory, and run CLI commands against it.
//!
//! The binaries are the ones built into the same target directory as the test executable
//! (`cargo build -p swarm-cli` before `cargo test -p swarm-tests`; `scripts/test.sh` builds the
//! whole workspace first). `SWARM_BIN` overrides where `swarm` is found.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

pub mod cluster;

/// How long a server may take to come up, and the longest any single wait in a test lasts.
/// Waits end as soon as what they wait for happens; this only bounds a broken run.
pub const WAIT: Duration = Duration::from_secs(60);

/// The directory holding the workspace's binaries: `target/<profile>/`, the parent of the
/// `deps/` directory the test executable runs from.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

/// The `swarm` binary to test.
pub fn swarm_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("SWARM_BIN") {
        return PathBuf::from(p);
    }
    let p = bin_dir().join(format!("swarm{}", std::env::consts::EXE_SUFFIX));
    assert!(
        p.exists(),
        "{} does not exist: build it first with `cargo build -p swarm-cli` (same CARGO_TARGET_DIR), \
         or set SWARM_BIN",
        p.display()
    );
    p
}

/// The workspace root (for `examples/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// What a finished command printed.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from_output(o: Output) -> Run {
        Run {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Panics with everything the command printed unless it exited 0.
    #[track_caller]
    pub fn ok(self) -> Run {
        assert!(self.success(), "command failed: {self:#?}");
        self
    }

    /// stdout's lines.
    pub fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }

    /// stdout as JSON.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:#?}"))
    }
}

/// A `swarm` command with an empty environment for configuration: `HOME` points at `home`,
/// so no user config is picked up.
pub fn swarm_command(home: &Path) -> Command {
    let mut cmd = Command::new(swarm_bin());
    cmd.env("HOME", home)
        .env_remove("SWARM_CONFIG")
        .env("SWARM_LOG", "warn")
        .stdin(Stdio::null());
    cmd
}

/// A running `swarm server`, killed when dropped.
pub struct Server {
    child: Child,
    dir: tempfile::TempDir,
    /// `DIR/admin.conf`, written by the server once it listens.
    pub config: PathBuf,
}

impl Server {
    /// Starts `swarm server --data-dir <tmp> --listen 127.0.0.1:0` and waits for its
    /// `admin.conf`.
    pub fn start() -> anyhow::Result<Server> {
        Self::start_with(&[])
    }

    /// The apiserver alone (`--no-controllers`): for tests of the API's own behaviour, which
    /// controllers writing statuses would disturb.
    pub fn start_api_only() -> anyhow::Result<Server> {
        Self::start_with(&["--no-controllers"])
    }

    /// `start` with extra `swarm server` arguments. Unless `extra` says otherwise, the server
    /// runs no local agent (`--agent none`) and its dispatcher listens on an ephemeral
    /// loopback port, so tests can run side by side.
    pub fn start_with(extra: &[&str]) -> anyhow::Result<Server> {
        let dir = tempfile::tempdir()?;
        let data = dir.path().join("data");
        let log = dir.path().join("server.log");
        let log_file = File::create(&log)?;
        let mut defaults: Vec<&str> = Vec::new();
        if !extra.contains(&"--agent") {
            defaults.extend(["--agent", "none"]);
        }
        if !extra.contains(&"--dispatcher-listen") {
            defaults.extend(["--dispatcher-listen", "127.0.0.1:0"]);
        }
        let child = swarm_command(dir.path())
            .arg("server")
            .arg("--data-dir")
            .arg(&data)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .args(&defaults)
            .args(extra)
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .context("cannot start swarm server")?;
        let config = data.join("admin.conf");
        let mut server = Server { child, dir, config };
        let deadline = Instant::now() + WAIT;
        while !server.config.exists() {
            if let Some(status) = server.child.try_wait()? {
                bail!(
                    "swarm server exited ({status}) before writing admin.conf:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "swarm server wrote no admin.conf within {WAIT:?}:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }

    /// A scratch directory that lives as long as the server.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A `swarm` command pointed at this server through `SWARM_CONFIG`.
    pub fn command(&self) -> Command {
        let mut cmd = swarm_command(self.dir.path());
        cmd.env("SWARM_CONFIG", &self.config);
        cmd
    }

    /// Runs `swarm ARGS...` against this server.
    pub fn swarm(&self, args: &[&str]) -> Run {
        let out = self
            .command()
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run swarm {args:?}: {e}"));
        Run::from_output(out)
    }

    /// Starts a long-running `swarm ARGS...` (e.g. `get -w`) whose stdout lines can be read.
    pub fn spawn_lines(&self, args: &[&str]) -> anyhow::Result<Lines> {
        Lines::spawn(self.command().args(args))
    }

    /// The server's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A child process whose stdout is read line by line on a thread; killed when dropped.
pub struct Lines {
    child: Child,
    rx: Receiver<String>,
}

impl Lines {
    pub fn spawn(cmd: &mut Command) -> anyhow::Result<Lines> {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Lines { child, rx })
    }

    /// The next line, waiting at most `WAIT`.
    pub fn next_line(&mut self) -> anyhow::Result<String> {
        match self.rx.recv_timeout(WAIT) {
            Ok(line) => Ok(line),
            Err(RecvTimeoutError::Timeout) => bail!("no output line within {WAIT:?}"),
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.child.wait()?;
                bail!("the command ended ({status}) without printing another line")
            }
        }
    }

    /// Reads lines until one satisfies `pred`, returning it and the lines skipped on the way.
    pub fn until(
        &mut self,
        mut pred: impl FnMut(&str) -> bool,
    ) -> anyhow::Result<(String, Vec<String>)> {
        let mut skipped = Vec::new();
        loop {
            let line = self
                .next_line()
                .with_context(|| format!("after {skipped:#?}"))?;
            if pred(&line) {
                return Ok((line, skipped));
            }
            skipped.push(line);
        }
    }
}

impl Lines {
    /// Sends SIGINT (what Ctrl-C sends) and waits for the process to exit.
    pub fn interrupt(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        let status = Command::new("kill")
            .arg("-INT")
            .arg(self.child.id().to_string())
            .status()
            .context("cannot run kill")?;
        anyhow::ensure!(status.success(), "kill -INT failed: {status}");
        Ok(self.child.wait()?)
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `check` until it returns `Some`, for at most `WAIT`; panics naming `what` after that.
pub fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `host:port` of the API a credentials file (e.g. a server's `admin.conf`) points at.
pub fn api_addr(config: &Path) -> String {
    let conf = swarm_client::ClientConfig::load(config).unwrap_or_else(|e| panic!("{e}"));
    let url = conf.current().map(|c| c.server.clone()).unwrap_or_default();
    url.trim_start_matches("https://").to_string()
}

/// A port nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(9)
}
