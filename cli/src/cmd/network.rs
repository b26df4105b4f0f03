//! `swarm network create|ls|inspect|rm`: docker's network commands for cluster networks.

use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Context as _;
use swarm_api::{Network, NetworkSpec};
use swarm_client::ListParams;

use crate::cmd::{inspect_json, service::parse};
use crate::connect::{ConnectArgs, block_on};
use crate::output::{self, columns::wire, humanize::full_id};
use crate::view;
use crate::{filter, lookup};

#[derive(clap::Args, Debug)]
pub struct NetworkArgs {
    #[command(subcommand)]
    pub command: NetworkCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum NetworkCommand {
    /// Create a network; prints its ID.
    #[command(
        after_help = "Examples:\n  swarm network create -d overlay --attachable front\n  swarm network create --subnet 10.0.9.0/24 --gateway 10.0.9.1 back"
    )]
    Create(CreateArgs),
    /// List networks.
    #[command(
        alias = "list",
        after_help = "Examples:\n  swarm network ls\n  swarm network ls --filter driver=overlay -q"
    )]
    Ls {
        #[arg(short, long)]
        quiet: bool,
        /// Do not truncate IDs.
        #[arg(long)]
        no_trunc: bool,
        /// Go-template-style format, e.g. '{{.Name}} {{.Subnet}}' or '{{json .}}'.
        #[arg(long)]
        format: Option<String>,
        /// Filter: name=PREFIX, driver=overlay|bridge, label=KEY[=VALUE].
        #[arg(short, long, value_name = "KEY=VALUE")]
        filter: Vec<String>,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Show networks in detail.
    #[command(after_help = "Example:\n  swarm network inspect -f '{{.status.subnet}}' front")]
    Inspect {
        #[arg(required = true)]
        networks: Vec<String>,
        #[arg(short, long)]
        format: Option<String>,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Remove networks.
    #[command(
        alias = "remove",
        after_help = "Example:\n  swarm network rm front back"
    )]
    Rm {
        #[arg(required = true)]
        networks: Vec<String>,
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    pub name: String,
    /// overlay (default) or bridge.
    #[arg(short, long, default_value = "overlay", value_parser = ["overlay", "bridge"])]
    pub driver: String,
    /// Subnet in CIDR form (default: one picked from the pool).
    #[arg(long)]
    pub subnet: Option<String>,
    /// Gateway address in the subnet.
    #[arg(long)]
    pub gateway: Option<String>,
    /// Let standalone containers join the network too.
    #[arg(long)]
    pub attachable: bool,
    /// No route to the outside.
    #[arg(long)]
    pub internal: bool,
    /// Driver option, KEY=VALUE.
    #[arg(short = 'o', long = "opt", value_name = "KEY=VALUE")]
    pub opts: Vec<String>,
    /// Network label, KEY=VALUE.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// The network the flags describe.
pub fn build(a: &CreateArgs) -> anyhow::Result<Network> {
    let mut spec = NetworkSpec {
        driver: parse::wire_enum(&a.driver)?,
        driver_opts: parse::labels(&a.opts),
        attachable: a.attachable,
        internal: a.internal,
        ..Default::default()
    };
    spec.ipam.subnet = a.subnet.clone();
    spec.ipam.gateway = a.gateway.clone();
    let mut n = Network::new(a.name.clone(), spec);
    n.metadata.labels = parse::labels(&a.labels);
    Ok(n)
}

fn keeps(n: &Network, filters: &[String]) -> anyhow::Result<bool> {
    for f in filters {
        let (k, v) = filter::split(f, "driver=overlay")?;
        let ok = match k {
            "name" => n.metadata.name.contains(v),
            "driver" => wire(&n.spec.driver) == v,
            "id" => full_id(&n.metadata.uid).starts_with(&full_id(v)),
            "label" => filter::has_label(&n.metadata.labels, v),
            _ => anyhow::bail!(
                "invalid filter {k:?}: the network filters are name, driver, id and label"
            ),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

pub fn run(args: NetworkArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        NetworkCommand::Create(a) => {
            let net = build(&a)?;
            let client = a.connect.client()?;
            let created = block_on(client.create(&net))?
                .with_context(|| format!("cannot create network {}", a.name))?;
            output::emit(&format!("{}\n", full_id(&created.metadata.uid)))?;
        }
        NetworkCommand::Ls {
            quiet,
            no_trunc,
            format,
            filter,
            connect,
        } => {
            let client = connect.client()?;
            let all = block_on(client.list_all::<Network>(&ListParams::default()))?
                .context("cannot list networks")?
                .items;
            let mut kept = Vec::new();
            for n in all {
                if keeps(&n, &filter)? {
                    kept.push(n);
                }
            }
            let l = view::network::list(&kept, !no_trunc, SystemTime::now());
            output::emit(&l.render(format.as_deref(), quiet)?)?;
        }
        NetworkCommand::Inspect {
            networks,
            format,
            connect,
        } => {
            let client = connect.client()?;
            let found = block_on(async {
                let mut v = Vec::new();
                for n in &networks {
                    v.push(lookup::find::<Network>(&client, n).await?);
                }
                anyhow::Ok(v)
            })??;
            output::emit(&inspect_json(&found, format.as_deref())?)?;
        }
        NetworkCommand::Rm { networks, connect } => {
            let client = connect.client()?;
            return remove::<Network>(&client, &networks);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Removes objects by name or ID, printing each as given; failures are reported and the rest
/// still removed.
pub fn remove<T: swarm_api::Resource>(
    client: &swarm_client::Client,
    names: &[String],
) -> anyhow::Result<ExitCode> {
    block_on(async {
        let mut failed = false;
        for name in names {
            let result = async {
                let obj = lookup::find::<T>(client, name).await?;
                client.delete::<T>(obj.name(), None).await?;
                anyhow::Ok(())
            };
            match result.await {
                Ok(()) => {
                    output::emit(&format!("{name}\n"))?;
                }
                Err(e) => {
                    eprintln!(
                        "error: cannot remove {} {name}: {}",
                        lookup::noun::<T>(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: CreateArgs,
    }

    #[test]
    fn flags_map_onto_the_spec() {
        let cli = Cli::try_parse_from([
            "create",
            "-d",
            "overlay",
            "--subnet",
            "10.0.9.0/24",
            "--gateway",
            "10.0.9.1",
            "--attachable",
            "-o",
            "encrypted=true",
            "--label",
            "team=a",
            "front",
        ])
        .unwrap();
        let n = build(&cli.args).unwrap();
        assert_eq!(n.metadata.name, "front");
        assert_eq!(n.spec.ipam.subnet.as_deref(), Some("10.0.9.0/24"));
        assert_eq!(n.spec.ipam.gateway.as_deref(), Some("10.0.9.1"));
        assert!(n.spec.attachable && !n.spec.internal);
        assert_eq!(n.spec.driver_opts["encrypted"], "true");
        assert_eq!(n.metadata.labels["team"], "a");
        assert!(keeps(&n, &["driver=overlay".into(), "label=team=a".into()]).unwrap());
        assert!(!keeps(&n, &["driver=bridge".into()]).unwrap());
    }
}
