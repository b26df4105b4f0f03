//! `swarm service inspect SERVICE...`: the objects as a JSON array (docker's layout),
//! `--format` applied to each, or `--pretty` for people.

use std::process::ExitCode;
use std::time::SystemTime;

use swarm_api::Service;

use super::pretty;
use crate::cmd::inspect_json;
use crate::connect::{ConnectArgs, block_on};
use crate::lookup;
use crate::output;

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  swarm service inspect web
  swarm service inspect --pretty web
  swarm service inspect -f '{{.spec.taskTemplate.container.image}}' web")]
pub struct InspectArgs {
    /// The services (names or IDs).
    #[arg(required = true)]
    pub services: Vec<String>,
    /// Print a human-readable summary instead of JSON.
    #[arg(long)]
    pub pretty: bool,
    /// Go-template-style format applied to each object, e.g. '{{.metadata.name}}'.
    #[arg(short, long)]
    pub format: Option<String>,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

pub fn run(args: InspectArgs) -> anyhow::Result<ExitCode> {
    let client = args.connect.client()?;
    let services = block_on(async {
        let mut v = Vec::new();
        for s in &args.services {
            v.push(lookup::find::<Service>(&client, s).await?);
        }
        anyhow::Ok(v)
    })??;
    let text = if args.pretty {
        services
            .iter()
            .map(|s| pretty::service(s, SystemTime::now()))
            .collect::<Vec<_>>()
            .join("\n")
    } else {
        inspect_json(&services, args.format.as_deref())?
    };
    output::emit(&text)?;
    Ok(ExitCode::SUCCESS)
}
