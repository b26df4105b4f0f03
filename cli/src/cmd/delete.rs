//! `swarm delete KIND NAME...`: deletes objects by name, printing `service/web deleted` for each.

use std::process::ExitCode;

use swarm_api::Kind;

use crate::connect::{ConnectArgs, block_on};
use crate::output;

#[derive(clap::Args, Debug)]
pub struct DeleteArgs {
    /// The kind: service (svc), task, node, network (net), secret, config, lease, gitsync.
    pub kind: String,
    /// The objects to delete.
    #[arg(required = true)]
    pub names: Vec<String>,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// Deletes each object in turn; one that fails is reported and the others are still deleted.
pub fn run(args: DeleteArgs) -> anyhow::Result<ExitCode> {
    let kind: Kind = args.kind.parse()?;
    let client = args.connect.client()?;
    let kind_ref = kind.name().to_ascii_lowercase();
    block_on(async {
        let mut failed = false;
        for name in &args.names {
            match client.delete_any(kind, name, None).await {
                Ok(()) => {
                    output::emit(&format!("{kind_ref}/{name} deleted\n"))?;
                }
                Err(e) if e.is_transport() => return Err(e.into()),
                Err(e) => {
                    eprintln!("error: cannot delete {kind_ref}/{name}: {e}");
                    failed = true;
                }
            }
        }
        Ok(if failed {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        })
    })?
}
