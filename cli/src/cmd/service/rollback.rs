//! `swarm service rollback SERVICE`: back to the previous revision. The revision's template
//! comes from `status.revisions` (kept by the update controller); the request is recorded in
//! `spec.rollback` so the controller rolls it out under `rollbackConfig`.

use std::process::ExitCode;

use swarm_api::{RollbackRequest, Service};

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

/// Puts the template of revision `to` (default: the latest revision that differs from the
/// current template) back into the spec and records the request.
pub fn request(svc: &mut Service, to: Option<i64>) -> anyhow::Result<()> {
    let name = &svc.metadata.name;
    let revisions = &svc.status.revisions;
    let target = match to {
        Some(g) => revisions.iter().find(|r| r.generation == g).ok_or_else(|| {
            let known: Vec<String> = revisions.iter().map(|r| r.generation.to_string()).collect();
            anyhow::anyhow!(
                "service {name} has no revision {g}; its revisions are: {} (see `swarm rollout history service/{name}`)",
                if known.is_empty() { "none recorded yet".to_string() } else { known.join(", ") }
            )
        })?,
        None => revisions
            .iter()
            .rev()
            .find(|r| r.template != svc.spec.task_template)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "service {name} does not have a previous revision to roll back to \
                     (status.revisions lists {} revision(s), none different from the current spec)",
                    revisions.len()
                )
            })?,
    };
    let generation = target.generation;
    svc.spec.task_template = target.template.clone();
    let id = svc.spec.rollback.as_ref().map_or(0, |r| r.id) + 1;
    svc.spec.rollback = Some(RollbackRequest {
        id,
        to_generation: Some(generation),
    });
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
    fn previous_revision_by_default_or_the_one_asked_for() {
        let mut s = service();
        request(&mut s, None).unwrap();
        assert_eq!(s.spec.task_template.container.image, "nginx:2");
        assert_eq!(
            s.spec.rollback,
            Some(RollbackRequest {
                id: 1,
                to_generation: Some(2)
            })
        );
        request(&mut s, Some(1)).unwrap();
        assert_eq!(s.spec.task_template.container.image, "nginx:1");
        assert_eq!(s.spec.rollback.as_ref().unwrap().id, 2);
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
