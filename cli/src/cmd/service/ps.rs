//! `swarm service ps SERVICE...`: the tasks of services, current ones first in each slot, with
//! their history indented; `--filter desired-state=running|node=|name=|id=`, `--no-trunc`, `-q`.

use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Context as _;
use swarm_api::{Service, Task};
use swarm_client::{Client, ListParams};

use crate::connect::{ConnectArgs, block_on};
use crate::lookup;
use crate::output;
use crate::view::task::{TaskFilter, list};

/// The flags every task list (`service ps`, `node ps`, `stack ps`) takes.
#[derive(clap::Args, Debug, Default)]
pub struct TaskListFlags {
    /// Only display task IDs.
    #[arg(short, long)]
    pub quiet: bool,
    /// Do not truncate IDs, images and errors.
    #[arg(long)]
    pub no_trunc: bool,
    /// Filter: desired-state=running|shutdown|accepted, node=NODE, name=NAME, id=ID.
    #[arg(short, long, value_name = "KEY=VALUE")]
    pub filter: Vec<String>,
    /// Go-template-style format, e.g. '{{.Name}} {{.CurrentState}}' or '{{json .}}'.
    #[arg(long)]
    pub format: Option<String>,
}

impl TaskListFlags {
    /// The table (or format) of `tasks`.
    pub fn render(&self, tasks: &[Task]) -> anyhow::Result<String> {
        let filter = TaskFilter::parse(&self.filter)?;
        let l = list(tasks, &filter, !self.no_trunc, SystemTime::now());
        Ok(l.render(self.format.as_deref(), self.quiet)?)
    }
}

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  swarm service ps web
  swarm service ps --filter desired-state=running web api
  swarm service ps --no-trunc --format '{{.Name}} {{.Error}}' web")]
pub struct PsArgs {
    /// The services (names or IDs).
    #[arg(required = true)]
    pub services: Vec<String>,
    #[command(flatten)]
    pub flags: TaskListFlags,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// Every task whose `spec.service` is `name`.
pub async fn tasks_of(client: &Client, name: &str) -> anyhow::Result<Vec<Task>> {
    Ok(client
        .list_all::<Task>(&ListParams::default().fields(format!("spec.service={name}")))
        .await
        .with_context(|| format!("cannot list the tasks of service {name}"))?
        .items)
}

pub fn run(args: PsArgs) -> anyhow::Result<ExitCode> {
    let client = args.connect.client()?;
    let tasks = block_on(async {
        let mut tasks = Vec::new();
        for s in &args.services {
            let svc = lookup::find::<Service>(&client, s).await?;
            tasks.extend(tasks_of(&client, &svc.metadata.name).await?);
        }
        anyhow::Ok(tasks)
    })??;
    output::emit(&args.flags.render(&tasks)?)?;
    Ok(ExitCode::SUCCESS)
}
