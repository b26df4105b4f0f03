//! `swarm service scale SERVICE=N...`: sets replica counts, prints `web scaled to 3`, then
//! waits for each service to converge unless `--detach`.

use std::process::ExitCode;

use swarm_api::{Service, ServiceMode};

use crate::connect::{ConnectArgs, block_on};
use crate::converge::{self, Goal, WaitArgs};
use crate::lookup;
use crate::output;

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  swarm service scale web=5
  swarm service scale -d web=5 api=2")]
pub struct ScaleArgs {
    /// SERVICE=REPLICAS pairs.
    #[arg(required = true, value_name = "SERVICE=REPLICAS")]
    pub pairs: Vec<String>,
    #[command(flatten)]
    pub wait: WaitArgs,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// `web=3` → `("web", 3)`.
pub fn pair(s: &str) -> anyhow::Result<(String, u64)> {
    let (name, n) = s.split_once('=').ok_or_else(|| {
        anyhow::anyhow!("invalid scale specifier {s:?}: use SERVICE=REPLICAS, e.g. web=3")
    })?;
    let n = n.parse::<u64>().map_err(|_| {
        anyhow::anyhow!("invalid replicas value {n:?} for {name}: use a whole number")
    })?;
    Ok((name.to_string(), n))
}

fn set_replicas(svc: &mut Service, n: u64) -> anyhow::Result<()> {
    match &mut svc.spec.mode {
        ServiceMode::Replicated { replicas } => *replicas = n,
        ServiceMode::ReplicatedJob {
            total_completions, ..
        } => *total_completions = n,
        other => anyhow::bail!(
            "scale can only be used with replicated or replicated-job mode; {} is {}",
            svc.metadata.name,
            other.display_name()
        ),
    }
    Ok(())
}

pub fn run(args: ScaleArgs) -> anyhow::Result<ExitCode> {
    let pairs: Vec<(String, u64)> = args
        .pairs
        .iter()
        .map(|p| pair(p))
        .collect::<anyhow::Result<_>>()?;
    let client = args.connect.client()?;
    block_on(async {
        let mut scaled = Vec::new();
        let mut failed = false;
        for (name, n) in &pairs {
            let baseline = lookup::find::<Service>(&client, name)
                .await
                .ok()
                .and_then(|s| s.status.update_status);
            match lookup::update::<Service>(&client, name, |s| set_replicas(s, *n)).await {
                Ok(svc) => {
                    output::emit(&format!("{name} scaled to {n}\n"))?;
                    scaled.push((svc.metadata.name, baseline, svc.metadata.generation));
                }
                Err(e) => {
                    eprintln!("error: {}", output::describe_error(&e));
                    failed = true;
                }
            }
        }
        let mut code = if failed {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        };
        for (name, baseline, generation) in scaled {
            if converge::wait_service(
                &client,
                &name,
                Goal::Update,
                baseline,
                generation,
                &args.wait,
            )
            .await?
                != ExitCode::SUCCESS
            {
                code = ExitCode::FAILURE;
            }
        }
        Ok(code)
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_parse() {
        assert_eq!(pair("web=3").unwrap(), ("web".to_string(), 3));
        assert!(
            pair("web")
                .unwrap_err()
                .to_string()
                .contains("SERVICE=REPLICAS")
        );
        assert!(
            pair("web=x")
                .unwrap_err()
                .to_string()
                .contains("whole number")
        );
        let mut s = Service::default();
        s.spec.mode = ServiceMode::Global {};
        assert!(
            set_replicas(&mut s, 2)
                .unwrap_err()
                .to_string()
                .contains("global")
        );
    }
}
