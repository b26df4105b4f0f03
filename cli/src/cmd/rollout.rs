//! `swarm rollout status|history|undo service/NAME`: kubectl's rollout commands over a
//! service's update status and the revisions the update controller keeps in
//! `status.revisions`.

use std::process::ExitCode;
use std::time::SystemTime;

use swarm_api::{Kind, Service};

use crate::cmd::service::rollback;
use crate::cmd::wait::target;
use crate::connect::{ConnectArgs, block_on};
use crate::converge::{self, Goal, WaitArgs};
use crate::lookup;
use crate::output::{self, humanize::ago, tabwriter::tabwrite};

#[derive(clap::Args, Debug)]
pub struct RolloutArgs {
    #[command(subcommand)]
    pub command: RolloutCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum RolloutCommand {
    /// Wait for the service's latest change to roll out; fail if it paused or rolled back.
    #[command(
        after_help = "Examples:\n  swarm rollout status service/web\n  swarm rollout status --timeout 5m service/web"
    )]
    Status {
        /// service/NAME.
        target: String,
        #[command(flatten)]
        wait: WaitArgs,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// List the revisions the service can roll back to.
    #[command(after_help = "Example:\n  swarm rollout history service/web")]
    History {
        /// service/NAME.
        target: String,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Roll back to the previous revision, or to --to-revision N.
    #[command(
        after_help = "Examples:\n  swarm rollout undo service/web\n  swarm rollout undo --to-revision 2 service/web"
    )]
    Undo {
        /// service/NAME.
        target: String,
        /// The revision (as `rollout history` lists it).
        #[arg(long, value_name = "N")]
        to_revision: Option<i64>,
        #[command(flatten)]
        wait: WaitArgs,
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

fn service_name(t: &str) -> anyhow::Result<String> {
    let (kind, name) = target(t)?;
    if kind != Kind::Service {
        anyhow::bail!("rollout works on services only, e.g. service/web; {t} is a {kind}");
    }
    Ok(name)
}

/// The revision table: `REVISION IMAGE CREATED`, the current one marked.
pub fn history(s: &Service, now: SystemTime) -> String {
    let mut text = String::from("REVISION\tIMAGE\tCREATED\t\n");
    for r in &s.status.revisions {
        let current = if r.template == s.spec.task_template {
            " (current)"
        } else {
            ""
        };
        text.push_str(&format!(
            "{}{current}\t{}\t{}\t\n",
            r.generation,
            r.template.container.image,
            ago(r.created_at.as_ref(), now)
        ));
    }
    tabwrite(&text)
        .lines()
        .map(|l| format!("{}\n", l.trim_end()))
        .collect()
}

pub fn run(args: RolloutArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        RolloutCommand::Status {
            target,
            wait,
            connect,
        } => {
            let name = service_name(&target)?;
            let client = connect.client()?;
            block_on(async {
                let s = lookup::find::<Service>(&client, &name).await?;
                let generation = s.metadata.generation;
                converge::wait_service(&client, &name, Goal::Update, None, generation, &wait)
                    .await?;
                output::emit(&format!("service \"{name}\" successfully rolled out\n"))?;
                Ok(ExitCode::SUCCESS)
            })?
        }
        RolloutCommand::History { target, connect } => {
            let name = service_name(&target)?;
            let client = connect.client()?;
            let s = block_on(lookup::find::<Service>(&client, &name))??;
            if s.status.revisions.is_empty() {
                eprintln!(
                    "service/{name} has no recorded revisions yet (the update controller keeps them in \
                     status.revisions); current generation: {}",
                    s.metadata.generation
                );
                return Ok(ExitCode::SUCCESS);
            }
            output::emit(&format!(
                "service/{name}\n{}",
                history(&s, SystemTime::now())
            ))?;
            Ok(ExitCode::SUCCESS)
        }
        RolloutCommand::Undo {
            target,
            to_revision,
            wait,
            connect,
        } => {
            let name = service_name(&target)?;
            let client = connect.client()?;
            block_on(async {
                let before = lookup::find::<Service>(&client, &name).await?;
                let baseline = before.status.update_status.clone();
                let s = lookup::update::<Service>(&client, &name, |s| {
                    rollback::request(s, to_revision)
                })
                .await?;
                output::emit(&format!("service/{name} rolled back\n"))?;
                let generation = s.metadata.generation;
                converge::wait_service(&client, &name, Goal::Rollback, baseline, generation, &wait)
                    .await
            })?
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::fixtures::{ago, now};
    use serde_json::json;

    #[test]
    fn golden_history() {
        let s: Service = serde_json::from_value(json!({
            "metadata": {"name": "web"},
            "spec": {"taskTemplate": {"container": {"image": "nginx:1.27"}}},
            "status": {"revisions": [
                {"generation": 1, "template": {"container": {"image": "nginx:1.26"}}, "createdAt": ago(7200)},
                {"generation": 3, "template": {"container": {"image": "nginx:1.27"}}, "createdAt": ago(60)}
            ]}
        }))
        .unwrap();
        assert_eq!(
            history(&s, now()),
            "REVISION      IMAGE        CREATED\n\
             1             nginx:1.26   2 hours ago\n\
             3 (current)   nginx:1.27   About a minute ago\n"
        );
        assert!(
            service_name("node/n1")
                .unwrap_err()
                .to_string()
                .contains("services only")
        );
    }
}
