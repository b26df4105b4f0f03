//! `swarm service rollback SERVICE`: back to the previous revision. The request is the
//! annotation the update controller reads, `swarm.rollback=previous` (or `=<generation>` for
//! `rollout undo --to-revision`); the controller swaps the revision's template in from
//! `status.revisions`, drops the annotation and rolls the change out under `rollbackConfig`,
//! reporting `rollback_started` … `rollback_completed`.

use std::process::ExitCode;

use swarm_api::Service;

use crate::connect::{ConnectArgs, block_on};
use crate::converge::{self, Goal, WaitArgs};
use crate::lookup;
use crate::output;

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  swarm service rollback web
  swarm service rollback -d web")]
pub struct RollbackArgs {
    /// The service (name or ID).
    pub service: String,
    #[command(flatten)]
    pub wait: WaitArgs,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// The annotation the update controller takes a rollback request from.
pub const ROLLBACK_ANNOTATION: &str = "swarm.rollback";

/// Asks for a rollback to revision `to` (default: the previous one). Refuses at once when
/// `status.revisions` shows there is nothing to go back to.
pub fn request(svc: &mut Service, to: Option<i64>) -> anyhow::Result<()> {
    let name = &svc.metadata.name;
    let revisions = &svc.status.revisions;
    let value = match to {
        Some(g) => {
            if !revisions.iter().any(|r| r.generation == g) {
                let known: Vec<String> =
                    revisions.iter().map(|r| r.generation.to_string()).collect();
                anyhow::bail!(
                    "service {name} has no revision {g}; its revisions are: {} (see `swarm rollout history service/{name}`)",
                    if known.is_empty() {
                        "none recorded yet".to_string()
                    } else {
                        known.join(", ")
                    }
                );
            }
            g.to_string()
        }
        None => {
            if !revisions
                .iter()
                .any(|r| r.template != svc.spec.task_template)
            {
                anyhow::bail!(
                    "service {name} does not have a previous revision to roll back to \
                     (status.revisions lists {} revision(s), none different from the current spec)",
                    revisions.len()
                );
            }
            "previous".to_string()
        }
    };
    svc.metadata
        .annotations
        .insert(ROLLBACK_ANNOTATION.to_string(), value);
    Ok(())
}

pub fn run(args: RollbackArgs) -> anyhow::Result<ExitCode> {
    let client = args.connect.client()?;
    block_on(async {
        let before = lookup::find::<Service>(&client, &args.service).await?;
        let baseline = before.status.update_status.clone();
        let svc = lookup::update::<Service>(&client, &args.service, |s| request(s, None)).await?;
        output::emit(&format!("{}\n", svc.metadata.name))?;
        if !args.wait.quiet && !args.wait.detach {
            output::emit("rollback: manually requested rollback\n")?;
        }
        converge::wait_service(
            &client,
            &svc.metadata.name,
            Goal::Rollback,
            baseline,
            svc.metadata.generation,
            &args.wait,
        )
        .await
    })?
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service() -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "generation": 3},
            "spec": {"taskTemplate": {"container": {"image": "nginx:3"}}},
            "status": {"revisions": [
                {"generation": 1, "template": {"container": {"image": "nginx:1"}}},
                {"generation": 2, "template": {"container": {"image": "nginx:2"}}},
                {"generation": 3, "template": {"container": {"image": "nginx:3"}}}
            ]}
        }))
        .unwrap()
    }

    #[test]
    fn the_request_is_the_update_controllers_annotation() {
        let mut s = service();
        request(&mut s, None).unwrap();
        assert_eq!(s.metadata.annotations[ROLLBACK_ANNOTATION], "previous");
        assert_eq!(
            s.spec.task_template.container.image, "nginx:3",
            "the controller swaps it"
        );
        request(&mut s, Some(1)).unwrap();
        assert_eq!(s.metadata.annotations[ROLLBACK_ANNOTATION], "1");
    }

    #[test]
    fn no_history_is_an_error_that_says_so() {
        let mut s = service();
        s.status.revisions.clear();
        let err = request(&mut s, None).unwrap_err().to_string();
        assert!(err.contains("does not have a previous revision"), "{err}");
        let err = request(&mut service(), Some(7)).unwrap_err().to_string();
        assert!(
            err.contains("no revision 7") && err.contains("1, 2, 3"),
            "{err}"
        );
    }
}
