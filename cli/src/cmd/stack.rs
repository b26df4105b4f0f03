//! `swarm stack deploy|ls|ps|services|rm`: docker's stack commands. `deploy` is `apply`'s
//! code path (one transaction), then waits for the stack's changed services to converge;
//! `rm` deletes every object labelled `swarm.stack=NAME`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use swarm_api::meta::STACK_LABEL;
use swarm_api::{Config, Network, Resource, Secret, Service, UpdateStatus};
use swarm_client::{ApplyAction, ApplyResponse, Client, ListParams};

use crate::cmd::apply::load;
use crate::cmd::service::ps::{TaskListFlags, tasks_of};
use crate::connect::{ConnectArgs, block_on};
use crate::converge::{self, Goal, WaitArgs};
use crate::output;
use crate::view;

#[derive(clap::Args, Debug)]
pub struct StackArgs {
    #[command(subcommand)]
    pub command: StackCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum StackCommand {
    /// Deploy a stack from Compose files (or manifests) and wait for its services.
    #[command(
        alias = "up",
        after_help = "Examples:\n  swarm stack deploy -c voting.yml voting\n  swarm stack deploy -c base.yml -c prod.yml --prune -d voting"
    )]
    Deploy {
        /// Compose files or manifests; later ones override earlier ones.
        #[arg(
            short = 'c',
            long = "compose-file",
            value_name = "FILE",
            required = true
        )]
        files: Vec<PathBuf>,
        /// Remove the stack's objects the files no longer list.
        #[arg(long)]
        prune: bool,
        /// The stack's name.
        stack: String,
        #[command(flatten)]
        wait: WaitArgs,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// List stacks.
    #[command(
        alias = "list",
        after_help = "Examples:\n  swarm stack ls\n  swarm stack ls --format '{{.Name}}'"
    )]
    Ls {
        /// Only display stack names.
        #[arg(short, long)]
        quiet: bool,
        /// Go-template-style format, e.g. '{{.Name}} {{.Services}}'.
        #[arg(long)]
        format: Option<String>,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// List the tasks of a stack.
    #[command(
        after_help = "Examples:\n  swarm stack ps voting\n  swarm stack ps --filter desired-state=running voting"
    )]
    Ps {
        stack: String,
        #[command(flatten)]
        flags: TaskListFlags,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// List the services of a stack.
    #[command(
        after_help = "Examples:\n  swarm stack services voting\n  swarm stack services -q voting\n  swarm stack services --filter name=voting_vote voting"
    )]
    Services {
        stack: String,
        #[arg(short, long)]
        quiet: bool,
        /// Go-template-style format, e.g. '{{.Name}} {{.Replicas}}'.
        #[arg(long)]
        format: Option<String>,
        /// Filter: name=PREFIX, id=PREFIX, label=KEY[=VALUE], mode=replicated|global.
        #[arg(short, long, value_name = "KEY=VALUE")]
        filter: Vec<String>,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Remove stacks: every object labelled with the stack's name.
    #[command(alias = "down", after_help = "Example:\n  swarm stack rm voting")]
    Rm {
        #[arg(required = true)]
        stacks: Vec<String>,
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

fn selector(stack: &str) -> ListParams {
    ListParams::default().labels(format!("{STACK_LABEL}={stack}"))
}

/// The objects of kind `T` in `stack`.
async fn of_stack<T: Resource>(client: &Client, stack: &str) -> anyhow::Result<Vec<T>> {
    Ok(client
        .list_all::<T>(&selector(stack))
        .await
        .with_context(|| {
            format!(
                "cannot list the {}s of stack {stack}",
                crate::lookup::noun::<T>()
            )
        })?
        .items)
}

/// docker's deploy lines: `Creating service voting_vote`, `Updating network …`, `Removing …`.
pub fn describe_apply(resp: &ApplyResponse) -> String {
    let mut out = String::new();
    for r in &resp.results {
        let verb = match r.action {
            ApplyAction::Created => "Creating",
            ApplyAction::Configured => "Updating",
            ApplyAction::Pruned => "Removing",
            ApplyAction::Unchanged => continue,
        };
        out.push_str(&format!(
            "{verb} {} {}\n",
            r.kind.to_ascii_lowercase(),
            r.name
        ));
    }
    out
}

/// Waits for each service the apply created or changed; `baselines` are their update states
/// from before it.
pub async fn wait_applied(
    client: &Client,
    resp: &ApplyResponse,
    baselines: &BTreeMap<String, Option<UpdateStatus>>,
    wait: &WaitArgs,
) -> anyhow::Result<ExitCode> {
    let changed = resp.results.iter().any(|r| {
        r.kind == "Service" && matches!(r.action, ApplyAction::Created | ApplyAction::Configured)
    });
    if !changed || !converge::should_wait(client, wait).await? {
        return Ok(ExitCode::SUCCESS);
    }
    for r in &resp.results {
        if r.kind != "Service" {
            continue;
        }
        let goal = match r.action {
            ApplyAction::Created => Goal::Create,
            ApplyAction::Configured => Goal::Update,
            _ => continue,
        };
        if !wait.quiet {
            output::emit(&format!("{}\n", r.name))?;
        }
        let baseline = baselines.get(&r.name).cloned().flatten();
        // The generation the apply wrote, read back from the store.
        let generation = client
            .get::<Service>(&r.name)
            .await
            .map(|s| s.metadata.generation)
            .unwrap_or(0);
        converge::wait_service(client, &r.name, goal, baseline, generation, wait).await?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The update status of every service of `stack`, before a change.
pub async fn baselines(
    client: &Client,
    stack: &str,
) -> anyhow::Result<BTreeMap<String, Option<UpdateStatus>>> {
    Ok(of_stack::<Service>(client, stack)
        .await?
        .into_iter()
        .map(|s| (s.metadata.name, s.status.update_status))
        .collect())
}

pub fn run(args: StackArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        StackCommand::Deploy {
            files,
            prune,
            stack,
            wait,
            connect,
        } => {
            let loaded = load(&files, Some(&stack))?;
            let client = connect.client()?;
            block_on(async {
                let before = baselines(&client, &loaded.name).await?;
                let resp = client
                    .apply_stack(&loaded.name, &loaded.objects, false, prune)
                    .await
                    .with_context(|| format!("deploy of stack {:?} refused", loaded.name))?;
                output::emit(&describe_apply(&resp))?;
                wait_applied(&client, &resp, &before, &wait).await
            })?
        }
        StackCommand::Ls {
            quiet,
            format,
            connect,
        } => {
            let client = connect.client()?;
            let services =
                block_on(client.list_all::<Service>(&ListParams::default().labels(STACK_LABEL)))?
                    .context("cannot list services")?
                    .items;
            output::emit(&view::stack::list(&services).render(format.as_deref(), quiet)?)?;
            Ok(ExitCode::SUCCESS)
        }
        StackCommand::Ps {
            stack,
            flags,
            connect,
        } => {
            let client = connect.client()?;
            let tasks = block_on(async {
                let mut tasks = Vec::new();
                for s in of_stack::<Service>(&client, &stack).await? {
                    tasks.extend(tasks_of(&client, &s.metadata.name).await?);
                }
                anyhow::Ok(tasks)
            })??;
            if tasks.is_empty() && !flags.quiet {
                eprintln!("Nothing found in stack: {stack}");
                return Ok(ExitCode::SUCCESS);
            }
            output::emit(&flags.render(&tasks)?)?;
            Ok(ExitCode::SUCCESS)
        }
        StackCommand::Services {
            stack,
            quiet,
            format,
            filter,
            connect,
        } => {
            let client = connect.client()?;
            let mut services = Vec::new();
            for s in block_on(of_stack::<Service>(&client, &stack))?? {
                if crate::cmd::service::ls::keeps(&s, &filter)? {
                    services.push(s);
                }
            }
            if services.is_empty() && !quiet {
                eprintln!("Nothing found in stack: {stack}");
                return Ok(ExitCode::SUCCESS);
            }
            output::emit(&view::service::list(&services).render(format.as_deref(), quiet)?)?;
            Ok(ExitCode::SUCCESS)
        }
        StackCommand::Rm { stacks, connect } => {
            let client = connect.client()?;
            block_on(async {
                let mut failed = false;
                for stack in &stacks {
                    failed |= !remove_stack(&client, stack).await?;
                }
                Ok(if failed {
                    ExitCode::FAILURE
                } else {
                    ExitCode::SUCCESS
                })
            })?
        }
    }
}

/// Deletes a stack's services, then its secrets, configs and networks. `false` when some
/// object could not be removed.
async fn remove_stack(client: &Client, stack: &str) -> anyhow::Result<bool> {
    let services = of_stack::<Service>(client, stack).await?;
    let secrets = of_stack::<Secret>(client, stack).await?;
    let configs = of_stack::<Config>(client, stack).await?;
    let networks = of_stack::<Network>(client, stack).await?;
    if services.is_empty() && secrets.is_empty() && configs.is_empty() && networks.is_empty() {
        eprintln!("Nothing found in stack: {stack}");
        return Ok(true);
    }
    let mut ok = true;
    ok &= delete_all(client, &services).await?;
    ok &= delete_all(client, &secrets).await?;
    ok &= delete_all(client, &configs).await?;
    ok &= delete_all(client, &networks).await?;
    Ok(ok)
}

async fn delete_all<T: Resource>(client: &Client, objects: &[T]) -> anyhow::Result<bool> {
    let noun = crate::lookup::noun::<T>();
    let mut ok = true;
    for o in objects {
        output::emit(&format!("Removing {noun} {}\n", o.name()))?;
        match client.delete::<T>(o.name(), None).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) if e.is_transport() => return Err(e.into()),
            Err(e) => {
                eprintln!("error: cannot remove {noun} {}: {e}", o.name());
                ok = false;
            }
        }
    }
    Ok(ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deploy_lines_read_like_docker() {
        let resp: ApplyResponse = serde_json::from_value(serde_json::json!({
            "stack": "voting", "results": [
                {"kind": "Network", "name": "voting_front", "action": "created"},
                {"kind": "Service", "name": "voting_vote", "action": "created"},
                {"kind": "Service", "name": "voting_db", "action": "configured"},
                {"kind": "Service", "name": "voting_redis", "action": "unchanged"},
                {"kind": "Service", "name": "voting_old", "action": "pruned"}
            ]
        }))
        .unwrap();
        assert_eq!(
            describe_apply(&resp),
            "Creating network voting_front\nCreating service voting_vote\n\
             Updating service voting_db\nRemoving service voting_old\n"
        );
    }
}
