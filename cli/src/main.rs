//! `swarm`: the command-line tool. Each subcommand lives in its own module under `cmd/`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;
mod connect;
mod converge;
mod filter;
mod leader;
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
    #[command(
        after_help = "Examples:\n  swarm apply -f voting.yml\n  swarm apply -f base.yml -f prod.yml --stack voting --prune\n  swarm apply -d -f voting.yml"
    )]
    Apply(cmd::apply::ApplyArgs),
    /// Show what `apply` would change, as a unified diff (exit 1 when something would).
    #[command(
        after_help = "Examples:\n  swarm diff -f voting.yml\n  swarm diff -f voting.yml --prune"
    )]
    Diff(cmd::diff::DiffArgs),
    /// List objects, or follow their changes with -w.
    #[command(
        after_help = "Examples:\n  swarm get services\n  swarm get tasks --field-selector spec.service=web -o wide\n  swarm get service web -o yaml\n  swarm get tasks -w -o json"
    )]
    Get(cmd::get::GetArgs),
    /// Show one object in detail.
    #[command(after_help = "Examples:\n  swarm describe service web\n  swarm describe node node-1")]
    Describe(cmd::describe::DescribeArgs),
    /// Delete objects by name.
    #[command(
        after_help = "Examples:\n  swarm delete service web api\n  swarm delete network voting_front"
    )]
    Delete(cmd::delete::DeleteArgs),
    /// Check stack files without a server: every error, with file, line and column.
    #[command(
        after_help = "Examples:\n  swarm validate -f voting.yml\n  swarm validate -f base.yml -f prod.yml"
    )]
    Validate(cmd::validate::ValidateArgs),
    /// Print the objects stack files become (YAML stream or JSON), without a server.
    #[command(
        after_help = "Examples:\n  swarm convert -f voting.yml\n  swarm convert -f voting.yml -o json"
    )]
    Convert(cmd::convert::ConvertArgs),
    /// Write the JSON Schemas of the stack file and every kind into a directory.
    #[command(after_help = "Examples:\n  swarm schema --out schemas/")]
    Schema(cmd::schema::SchemaArgs),
    /// Run a manager in this process: apiserver, dispatcher, controllers and a local agent.
    #[command(
        after_help = "Examples:\n  swarm server --data-dir /var/lib/swarm\n  swarm server --data-dir ./data --listen 127.0.0.1:0\n  swarm server --data-dir ./data --store etcd --etcd-endpoints http://127.0.0.1:2379"
    )]
    Server(cmd::server::ServerArgs),
    /// Make a new swarm: its CA, join tokens and admin credentials (docker's `swarm init`).
    #[command(
        after_help = "Examples:\n  swarm init --data-dir /var/lib/swarm\n  swarm init --advertise-addr 10.0.0.1"
    )]
    Init(cmd::init::InitArgs),
    /// Join a swarm with a token and run this machine's agent (docker's `swarm join`).
    #[command(
        after_help = "Examples:\n  swarm join --token SWMTKN-1-… 10.0.0.1:2377\n  swarm join --token SWMTKN-1-… --node-name worker-2 10.0.0.1:2377"
    )]
    Join(cmd::join::JoinArgs),
    /// Show or rotate the worker and manager join tokens (docker's `swarm join-token`).
    #[command(
        name = "join-token",
        after_help = "Examples:\n  swarm join-token worker\n  swarm join-token -q manager\n  swarm join-token --rotate worker"
    )]
    JoinToken(cmd::join::JoinTokenArgs),
    /// Issue credentials for a component that runs in its own process (admins).
    #[command(
        after_help = "Examples:\n  swarm credentials controller replication -o replication.conf\n  swarm credentials controller all -o controllers.conf"
    )]
    Credentials(cmd::credentials::CredentialsArgs),
    /// Manage services (docker's `service` commands).
    #[command(
        after_help = "Examples:\n  swarm service create --name web --replicas 3 -p 8080:80 nginx:1.27\n  swarm service ls\n  swarm service update --image nginx:1.28 web"
    )]
    Service(cmd::service::ServiceArgs),
    /// Manage nodes (docker's `node` commands).
    #[command(
        after_help = "Examples:\n  swarm node ls\n  swarm node update --availability drain node-2\n  swarm node promote node-2"
    )]
    Node(cmd::node::NodeArgs),
    /// Manage networks (docker's `network` commands).
    #[command(
        after_help = "Examples:\n  swarm network create -d overlay --attachable front\n  swarm network ls"
    )]
    Network(cmd::network::NetworkArgs),
    /// Manage secrets (docker's `secret` commands).
    #[command(
        after_help = "Examples:\n  printf s3cret | swarm secret create db_password -\n  swarm secret ls"
    )]
    Secret(cmd::data::DataArgs),
    /// Manage configs (docker's `config` commands).
    #[command(
        after_help = "Examples:\n  swarm config create nginx_conf ./nginx.conf\n  swarm config inspect --pretty nginx_conf"
    )]
    Config(cmd::data::DataArgs),
    /// Manage stacks (docker's `stack` commands).
    #[command(
        after_help = "Examples:\n  swarm stack deploy -c voting.yml voting\n  swarm stack ps voting\n  swarm stack rm voting"
    )]
    Stack(cmd::stack::StackArgs),
    /// Wait for a condition on an object (kubectl's `wait`).
    Wait(cmd::wait::WaitCmdArgs),
    /// Follow every change in the cluster, resumable by revision.
    Events(cmd::events::EventsArgs),
    /// Fetch the logs of a task (or a service), as `service logs` does.
    Logs(cmd::logs::LogsArgs),
    /// Roll-out status, history and undo of services (kubectl's `rollout`).
    #[command(
        after_help = "Examples:\n  swarm rollout status service/web\n  swarm rollout undo --to-revision 2 service/web"
    )]
    Rollout(cmd::rollout::RolloutArgs),
    /// Print a shell completion script.
    Completion(cmd::completion::CompletionArgs),
}

/// mimalloc rather than glibc's malloc, which took a third of the CPU of a busy cluster.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        Command::Init(args) => output::report(cmd::init::run(args)),
        Command::Join(args) => output::report(cmd::join::run(args)),
        Command::JoinToken(args) => output::report(cmd::join::run_token(args)),
        Command::Credentials(args) => output::report(cmd::credentials::run(args)),
        Command::Service(args) => output::report(cmd::service::run(args)),
        Command::Node(args) => output::report(cmd::node::run(args)),
        Command::Network(args) => output::report(cmd::network::run(args)),
        Command::Secret(args) => output::report(cmd::data::run(args, false)),
        Command::Config(args) => output::report(cmd::data::run(args, true)),
        Command::Stack(args) => output::report(cmd::stack::run(args)),
        Command::Wait(args) => output::report(cmd::wait::run(args)),
        Command::Events(args) => output::report(cmd::events::run(args)),
        Command::Logs(args) => output::report(cmd::logs::run(args)),
        Command::Rollout(args) => output::report(cmd::rollout::run(args)),
        Command::Completion(args) => output::report(cmd::completion::run(
            args,
            <Cli as clap::CommandFactory>::command(),
        )),
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

    /// `--help` of every command, and of every group of commands, shows at least one example.
    #[test]
    fn every_command_has_an_example() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            let path = format!("{path} {}", cmd.get_name());
            for sub in cmd.get_subcommands() {
                walk(sub, &path, missing);
            }
            if !cmd
                .get_after_help()
                .is_some_and(|h| h.to_string().contains("Example"))
            {
                missing.push(path);
            }
        }
        let mut missing = Vec::new();
        for sub in super::Cli::command().get_subcommands() {
            walk(sub, "swarm", &mut missing);
        }
        assert!(
            missing.is_empty(),
            "commands without an example: {missing:?}"
        );
    }
}
