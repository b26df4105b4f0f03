//! Waiting for a service to converge after `service create|update|scale|rollback`,
//! `stack deploy` and `apply`, with docker's progress display. The service, its tasks and the
//! nodes are followed through the watch API; every change is assessed again (`assess`) and
//! shown (`progress`). Once converged, the service must stay so for its monitor period
//! (`verify: Waiting 5 seconds to verify that tasks are stable...`).

pub mod assess;
pub mod progress;
mod watch;

use std::io::IsTerminal as _;
use std::process::ExitCode;

use anyhow::Context as _;
use swarm_api::{Duration, Node, UpdateStatus};
use swarm_client::{Client, ListParams};

pub use assess::Goal;
use progress::{Mode, Progress};

/// The flags of every command that waits for convergence.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct WaitArgs {
    /// Return at once instead of waiting for the service to converge.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Print no progress (still wait, unless --detach).
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Stop waiting after this long and fail (e.g. 2m); 0 waits as long as it takes.
    #[arg(long, value_name = "DURATION", default_value = "0", value_parser = crate::cmd::service::parse::duration)]
    pub timeout: Duration,
}

impl WaitArgs {
    fn mode(&self) -> Mode {
        if self.quiet {
            Mode::Quiet
        } else if std::io::stdout().is_terminal() {
            Mode::Terminal
        } else {
            Mode::Plain
        }
    }
}

/// Waits (unless `--detach`) until service `name` converges. A paused update, a rollback
/// (when not asked for), tasks that keep failing or the timeout are errors that say why.
/// Service states older than `min_generation` (the generation this command wrote) are not
/// judged: a watch may start from a cache a moment behind the write.
pub async fn wait_service(
    client: &Client,
    name: &str,
    goal: Goal,
    baseline: Option<UpdateStatus>,
    min_generation: i64,
    args: &WaitArgs,
) -> anyhow::Result<ExitCode> {
    if !should_wait(client, args).await? {
        return Ok(ExitCode::SUCCESS);
    }
    let mut progress = Progress::new(args.mode(), Box::new(std::io::stdout()));
    let timeout = (!args.timeout.is_zero()).then(|| args.timeout.as_std());
    watch::run(
        client,
        name,
        goal,
        baseline.as_ref(),
        min_generation,
        timeout,
        &mut progress,
    )
    .await?;
    Ok(ExitCode::SUCCESS)
}

/// Waits silently for `name` to converge, however many nodes there are (for `swarm wait`).
pub async fn until_converged(
    client: &Client,
    name: &str,
    timeout: Option<std::time::Duration>,
) -> anyhow::Result<()> {
    let mut progress = Progress::new(Mode::Quiet, Box::new(std::io::sink()));
    watch::run(client, name, Goal::Update, None, 0, timeout, &mut progress).await
}

/// Whether to wait at all: not with `--detach`, and not in a cluster without nodes, which can
/// run no task (waiting would never end; a warning says so).
pub async fn should_wait(client: &Client, args: &WaitArgs) -> anyhow::Result<bool> {
    if args.detach {
        return Ok(false);
    }
    if no_nodes(client).await? {
        eprintln!(
            "warning: not waiting for convergence: no node has joined the cluster yet \
             (start an agent; -d skips waiting)"
        );
        return Ok(false);
    }
    Ok(true)
}

/// A cluster without nodes can run no task: waiting would never end.
async fn no_nodes(client: &Client) -> anyhow::Result<bool> {
    let nodes = client
        .list::<Node>(&ListParams::default().limit(1))
        .await
        .context("cannot list nodes")?;
    Ok(nodes.items.is_empty())
}
