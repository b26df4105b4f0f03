//! `swarm`: the command-line tool. Each subcommand lives in its own module under `cmd/`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;
mod connect;
mod converge;
mod lookup;
mod output;
mod view;

#[derive(Parser)]
#[command(
    name = "swarm",
    version,
    about = "A container orchestrator: Swarm's features, Kubernetes' architecture"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create or update a stack's objects from Compose files or manifests.
    Apply(cmd::apply::ApplyArgs),
    /// Show what `apply` would change, as a unified diff (exit 1 when something would).
    Diff(cmd::diff::DiffArgs),
    /// List objects, or follow their changes with -w.
    Get(cmd::get::GetArgs),
    /// Show one object in detail.
    Describe(cmd::describe::DescribeArgs),
    /// Delete objects by name.
    Delete(cmd::delete::DeleteArgs),
    /// Check stack files without a server: every error, with file, line and column.
    Validate(cmd::validate::ValidateArgs),
    /// Print the objects stack files become (YAML stream or JSON), without a server.
    Convert(cmd::convert::ConvertArgs),
    /// Write the JSON Schemas of the stack file and every kind into a directory.
    Schema(cmd::schema::SchemaArgs),
    /// Run the control plane (the apiserver, for now) in this process.
    Server(cmd::server::ServerArgs),
    /// Manage services (docker's `service` commands).
    Service(cmd::service::ServiceArgs),
    /// Manage nodes (docker's `node` commands).
    Node(cmd::node::NodeArgs),
    /// Manage networks (docker's `network` commands).
    Network(cmd::network::NetworkArgs),
    /// Manage secrets (docker's `secret` commands).
    Secret(cmd::data::DataArgs),
    /// Manage configs (docker's `config` commands).
    Config(cmd::data::DataArgs),
    /// Manage stacks (docker's `stack` commands).
    Stack(cmd::stack::StackArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SWARM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Apply(args) => output::report(cmd::apply::run(args)),
        Command::Diff(args) => cmd::diff::run(args),
        Command::Get(args) => output::report(cmd::get::run(args)),
        Command::Describe(args) => output::report(cmd::describe::run(args)),
        Command::Delete(args) => output::report(cmd::delete::run(args)),
        Command::Validate(args) => cmd::validate::run(args),
        Command::Convert(args) => cmd::convert::run(args),
        Command::Schema(args) => cmd::schema::run(args),
        Command::Server(args) => output::report(cmd::server::run(args)),
        Command::Service(args) => output::report(cmd::service::run(args)),
        Command::Node(args) => output::report(cmd::node::run(args)),
        Command::Network(args) => output::report(cmd::network::run(args)),
        Command::Secret(args) => output::report(cmd::data::run(args, false)),
        Command::Config(args) => output::report(cmd::data::run(args, true)),
        Command::Stack(args) => output::report(cmd::stack::run(args)),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    /// clap's own consistency checks over every subcommand (duplicate flags, bad defaults).
    #[test]
    fn the_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
