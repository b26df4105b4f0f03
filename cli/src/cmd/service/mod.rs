//! `swarm service …`: docker's service commands — create, ls, ps, inspect, logs, scale,
//! update, rollback, rm.

pub mod container;
pub mod create;
pub mod flags;
pub mod inspect;
pub mod ls;
pub mod parse;
pub mod pretty;
pub mod ps;
pub mod rm;
pub mod rollback;
pub mod scale;
pub mod update;

use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct ServiceArgs {
    #[command(subcommand)]
    pub command: ServiceCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum ServiceCommand {
    /// Create a service and wait for it to converge.
    Create(Box<create::CreateArgs>),
    /// List services.
    #[command(alias = "list")]
    Ls(ls::LsArgs),
    /// List the tasks of services.
    Ps(ps::PsArgs),
    /// Show services in detail (JSON, --format or --pretty).
    Inspect(inspect::InspectArgs),
    /// Fetch the logs of a service or task.
    Logs(crate::cmd::logs::LogsArgs),
    /// Change the number of tasks of replicated services.
    Scale(scale::ScaleArgs),
    /// Change a service and wait for the change to roll out.
    Update(Box<update::UpdateArgs>),
    /// Go back to a service's previous revision.
    Rollback(rollback::RollbackArgs),
    /// Remove services.
    #[command(alias = "remove")]
    Rm(rm::RmArgs),
}

pub fn run(args: ServiceArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        ServiceCommand::Create(a) => create::run(*a),
        ServiceCommand::Ls(a) => ls::run(a),
        ServiceCommand::Ps(a) => ps::run(a),
        ServiceCommand::Inspect(a) => inspect::run(a),
        ServiceCommand::Logs(a) => crate::cmd::logs::run_service(a),
        ServiceCommand::Scale(a) => scale::run(a),
        ServiceCommand::Update(a) => update::run(*a),
        ServiceCommand::Rollback(a) => rollback::run(a),
        ServiceCommand::Rm(a) => rm::run(a),
    }
}
