//! `swarm service rm SERVICE...`: deletes services, printing each name as docker does.

use std::process::ExitCode;

use swarm_api::Service;

use crate::connect::{ConnectArgs, block_on};
use crate::lookup;
use crate::output;

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  swarm service rm web
  swarm service rm web api")]
pub struct RmArgs {
    /// The services (names or IDs).
    #[arg(required = true)]
    pub services: Vec<String>,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

pub fn run(args: RmArgs) -> anyhow::Result<ExitCode> {
    let client = args.connect.client()?;
    block_on(async {
        let mut failed = false;
        for name in &args.services {
            let deleted = async {
                let svc = lookup::find::<Service>(&client, name).await?;
                client.delete::<Service>(&svc.metadata.name, None).await?;
                anyhow::Ok(())
            };
            match deleted.await {
                Ok(()) => {
                    output::emit(&format!("{name}\n"))?;
                }
                Err(e) => {
                    eprintln!(
                        "error: cannot remove service {name}: {}",
                        output::describe_error(&e)
                    );
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
