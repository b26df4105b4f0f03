//! `swarm secret …` and `swarm config …`: create from a file or stdin, ls, inspect, rm.
//! Both kinds hold base64 data; secret data is never printed back.

use std::io::Read as _;
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Context as _;
use base64::Engine as _;
use swarm_api::{Config, DataSpec, MAX_DATA_BYTES, ObjectMeta, Resource, Secret};
use swarm_client::{Client, ListParams};

use crate::cmd::network::remove;
use crate::cmd::{inspect_json, service::parse};
use crate::connect::{ConnectArgs, block_on};
use crate::output::{self, humanize::full_id};
use crate::view::data as view;
use crate::{filter, lookup};

#[derive(clap::Args, Debug)]
pub struct DataArgs {
    #[command(subcommand)]
    pub command: DataCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum DataCommand {
    /// Create from a file, or from stdin with `-`; prints the ID.
    #[command(
        after_help = "Examples:\n  swarm secret create db_password ./password.txt\n  printf s3cret | swarm secret create api_key -"
    )]
    Create {
        name: String,
        /// The file holding the data, or `-` for stdin.
        file: String,
        /// Label, KEY=VALUE.
        #[arg(short, long = "label", value_name = "KEY=VALUE")]
        labels: Vec<String>,
        /// `golang`: the data is a Go template, rendered for each task that mounts it
        /// (`{{.Service.Name}}`, `{{.Task.Slot}}`, `{{.Node.Hostname}}`, `{{env "X"}}`…).
        #[arg(long, value_name = "DRIVER", value_parser = [swarm_api::TEMPLATE_DRIVER_GOLANG])]
        template_driver: Option<String>,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// List them.
    #[command(
        alias = "list",
        after_help = "Examples:\n  swarm secret ls\n  swarm secret ls --filter label=swarm.stack=voting -q\n  swarm config ls --format '{{.Name}} {{.CreatedAt}}'"
    )]
    Ls {
        #[arg(short, long)]
        quiet: bool,
        /// Go-template-style format, e.g. '{{.Name}}' or '{{json .}}'.
        #[arg(long)]
        format: Option<String>,
        /// Filter: name=PREFIX, id=PREFIX, label=KEY[=VALUE].
        #[arg(short, long, value_name = "KEY=VALUE")]
        filter: Vec<String>,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Show them in detail (secret data is left out).
    #[command(
        after_help = "Examples:\n  swarm config inspect -f '{{.metadata.labels}}' site\n  swarm secret inspect --pretty db_password"
    )]
    Inspect {
        #[arg(required = true)]
        names: Vec<String>,
        /// Print a human-readable summary instead of JSON (a config's data included).
        #[arg(long, conflicts_with = "format")]
        pretty: bool,
        #[arg(short, long)]
        format: Option<String>,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Remove them.
    #[command(
        alias = "remove",
        after_help = "Example:\n  swarm secret rm db_password"
    )]
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

/// Reads `file` (`-`: stdin) as base64 data, refusing more than swarm accepts.
fn read_data(file: &str) -> anyhow::Result<String> {
    let mut bytes = Vec::new();
    if file == "-" {
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("cannot read the data from stdin")?;
    } else {
        bytes = std::fs::read(file).with_context(|| format!("cannot read {file}"))?;
    }
    if bytes.len() > MAX_DATA_BYTES {
        anyhow::bail!(
            "{file} holds {} bytes; secrets and configs hold at most {MAX_DATA_BYTES} (500 KiB)",
            bytes.len()
        );
    }
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// The content of `spec`, decoded for display (`None` if it is not base64).
fn decoded(spec: &DataSpec) -> Option<String> {
    base64::engine::general_purpose::STANDARD
        .decode(&spec.data)
        .ok()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// docker's secret and config filters: name, id, label.
fn keeps(m: &ObjectMeta, filters: &[String]) -> anyhow::Result<bool> {
    for f in filters {
        let (k, v) = filter::split(f, "label=swarm.stack=voting")?;
        let ok = match k {
            "name" => m.name.starts_with(v),
            "id" => full_id(&m.uid).starts_with(&full_id(v)),
            "label" => filter::has_label(&m.labels, v),
            _ => anyhow::bail!("invalid filter {k:?}: the filters are name, id and label"),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Runs `swarm secret …` (`config: false`) or `swarm config …`.
pub fn run(args: DataArgs, config: bool) -> anyhow::Result<ExitCode> {
    if config {
        run_kind::<Config>(
            args,
            view::CONFIG_FORMAT,
            |o| &o.metadata,
            |o| &o.spec,
            Config::new,
        )
    } else {
        run_kind::<Secret>(
            args,
            view::SECRET_FORMAT,
            |o| &o.metadata,
            |o| &o.spec,
            Secret::new,
        )
    }
}

fn run_kind<T: Resource>(
    args: DataArgs,
    format: &'static str,
    meta: fn(&T) -> &ObjectMeta,
    data: fn(&T) -> &DataSpec,
    new: fn(String, DataSpec) -> T,
) -> anyhow::Result<ExitCode> {
    let noun = lookup::noun::<T>();
    match args.command {
        DataCommand::Create {
            name,
            file,
            labels,
            template_driver,
            connect,
        } => {
            let spec = DataSpec {
                data: read_data(&file)?,
                template_driver,
            };
            let mut obj = new(name.clone(), spec);
            obj.meta_mut().labels = parse::labels(&labels);
            let client = connect.client()?;
            let created = block_on(client.create(&obj))?
                .with_context(|| format!("cannot create {noun} {name}"))?;
            output::emit(&format!("{}\n", full_id(&created.meta().uid)))?;
        }
        DataCommand::Ls {
            quiet,
            format: f,
            filter: filters,
            connect,
        } => {
            let client = connect.client()?;
            let items = block_on(client.list_all::<T>(&ListParams::default()))?
                .with_context(|| format!("cannot list {noun}s"))?
                .items;
            let mut metas: Vec<&ObjectMeta> = Vec::new();
            for m in items.iter().map(meta) {
                if keeps(m, &filters)? {
                    metas.push(m);
                }
            }
            let l = view::list(&metas, format, SystemTime::now());
            output::emit(&l.render(f.as_deref(), quiet)?)?;
        }
        DataCommand::Inspect {
            names,
            pretty,
            format: f,
            connect,
        } => {
            let client = connect.client()?;
            let found = block_on(find_all::<T>(&client, &names))??;
            if pretty {
                let texts: Vec<String> = found
                    .iter()
                    .map(|o| {
                        let content = (T::KIND == swarm_api::Kind::Config)
                            .then(|| decoded(data(o)))
                            .flatten();
                        view::pretty(meta(o), content.as_deref())
                    })
                    .collect();
                output::emit(&texts.join("\n"))?;
                return Ok(ExitCode::SUCCESS);
            }
            let mut values: Vec<serde_json::Value> = found
                .iter()
                .map(serde_json::to_value)
                .collect::<Result<_, _>>()?;
            if T::KIND == swarm_api::Kind::Secret {
                for v in &mut values {
                    if let Some(spec) = v.get_mut("spec").and_then(|s| s.as_object_mut()) {
                        spec.remove("data");
                    }
                }
            }
            output::emit(&inspect_json(&values, f.as_deref())?)?;
        }
        DataCommand::Rm { names, connect } => {
            let client = connect.client()?;
            return remove::<T>(&client, &names);
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn find_all<T: Resource>(client: &Client, names: &[String]) -> anyhow::Result<Vec<T>> {
    let mut v = Vec::new();
    for n in names {
        v.push(lookup::find::<T>(client, n).await?);
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_by_name_id_and_label() {
        let mut m = ObjectMeta {
            name: "db_password".into(),
            uid: "11111111-0000-4000-8000-000000000000".into(),
            ..ObjectMeta::default()
        };
        m.labels.insert("swarm.stack".into(), "voting".into());
        assert!(keeps(&m, &["name=db".into(), "label=swarm.stack=voting".into()]).unwrap());
        assert!(keeps(&m, &["id=1111".into()]).unwrap());
        assert!(!keeps(&m, &["label=swarm.stack=shop".into()]).unwrap());
        assert!(keeps(&m, &["driver=x".into()]).is_err());
    }

    #[test]
    fn data_is_base64_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let small = dir.path().join("small");
        std::fs::write(&small, b"s3cret").unwrap();
        assert_eq!(read_data(small.to_str().unwrap()).unwrap(), "czNjcmV0");
        let big = dir.path().join("big");
        std::fs::write(&big, vec![0u8; MAX_DATA_BYTES + 1]).unwrap();
        let err = read_data(big.to_str().unwrap()).unwrap_err().to_string();
        assert!(err.contains("at most"), "{err}");
        let err = read_data("/nonexistent/file").unwrap_err();
        assert!(
            format!("{err:#}").contains("cannot read /nonexistent/file"),
            "{err:#}"
        );
    }
}
