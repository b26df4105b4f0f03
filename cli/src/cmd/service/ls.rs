//! `swarm service ls`: `ID NAME MODE REPLICAS IMAGE PORTS`, `-q`, `--format`, `--filter`.

use std::process::ExitCode;

use anyhow::Context as _;
use swarm_api::Service;
use swarm_client::ListParams;

use crate::connect::{ConnectArgs, block_on};
use crate::filter;
use crate::output::{self, humanize::full_id};
use crate::view;

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  swarm service ls
  swarm service ls --filter mode=global -q
  swarm service ls --format '{{.Name}} {{.Replicas}}'
  swarm service ls --format 'table {{.Name}}\\t{{.Image}}'")]
pub struct LsArgs {
    /// Only display IDs.
    #[arg(short, long)]
    pub quiet: bool,
    /// Go-template-style format: '{{.Name}} {{.Replicas}}', '{{json .}}', 'table {{.ID}}\t{{.Name}}'.
    #[arg(long)]
    pub format: Option<String>,
    /// Filter: name=PREFIX, id=PREFIX, label=KEY[=VALUE], mode=replicated|global.
    #[arg(short, long, value_name = "KEY=VALUE")]
    pub filter: Vec<String>,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// Whether `s` passes every `key=value` filter (docker's service filters).
pub fn keeps(s: &Service, filters: &[String]) -> anyhow::Result<bool> {
    for f in filters {
        let (k, v) = filter::split(f, "mode=global")?;
        let ok = match k {
            "name" => s.metadata.name.starts_with(v),
            "id" => full_id(&s.metadata.uid).starts_with(&full_id(v)),
            "mode" => s.spec.mode.display_name() == v.replace('-', " "),
            "label" => filter::has_label(&s.metadata.labels, v),
            _ => anyhow::bail!(
                "invalid filter {k:?}: the service filters are name, id, label and mode"
            ),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

pub fn run(args: LsArgs) -> anyhow::Result<ExitCode> {
    let client = args.connect.client()?;
    let list = block_on(client.list_all::<Service>(&ListParams::default()))?
        .context("cannot list services")?;
    let mut services = Vec::new();
    for s in list.items {
        if keeps(&s, &args.filter)? {
            services.push(s);
        }
    }
    let text = view::service::list(&services).render(args.format.as_deref(), args.quiet)?;
    output::emit(&text)?;
    Ok(ExitCode::SUCCESS)
}
