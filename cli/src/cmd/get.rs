//! `swarm get KIND [NAME]`: list or show objects as a table, JSON or YAML, and with `-w` follow
//! every change as it happens (one compact JSON line per event with `-o json`).

use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Context as _;
use futures::StreamExt;
use swarm_api::Kind;
use swarm_client::{Client, ListParams, WatchEvent};

use crate::connect::{ConnectArgs, block_on};
use crate::output::{self, Format, columns, table::Table};

#[derive(clap::Args, Debug)]
pub struct GetArgs {
    /// What to list: service (svc), task, node (no), network (net), secret, config, lease,
    /// gitsync — singular, plural or kind name.
    pub kind: String,
    /// One object by name (default: all of the kind).
    pub name: Option<String>,
    /// Label selector, e.g. `swarm.stack=voting` or `tier in (front,back)`.
    #[arg(short = 'l', long = "selector", value_name = "SELECTOR")]
    pub selector: Option<String>,
    /// Field selector, e.g. `spec.service=voting_vote` for tasks.
    #[arg(long, value_name = "SELECTOR")]
    pub field_selector: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    /// After listing, print every change until interrupted (Ctrl-C).
    #[arg(short = 'w', long)]
    pub watch: bool,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

pub fn run(args: GetArgs) -> anyhow::Result<ExitCode> {
    let kind: Kind = args.kind.parse()?;
    let client = args.connect.client()?;
    block_on(async move {
        if args.watch {
            watch(&client, kind, &args).await
        } else {
            get(&client, kind, &args).await
        }
    })?
}

fn params(args: &GetArgs) -> ListParams {
    ListParams {
        label_selector: args.selector.clone(),
        field_selector: args.field_selector.clone(),
        ..Default::default()
    }
}

async fn get(client: &Client, kind: Kind, args: &GetArgs) -> anyhow::Result<ExitCode> {
    let wide = args.output == Format::Wide;
    let now = SystemTime::now();
    if let Some(name) = &args.name {
        let obj = client
            .get_any(kind, name)
            .await
            .with_context(|| format!("cannot get {}/{name}", kind.name().to_ascii_lowercase()))?;
        let text = match args.output {
            Format::Json => format!("{}\n", serde_json::to_string_pretty(&obj)?),
            Format::Yaml => output::to_yaml(&obj)?,
            Format::Table | Format::Wide => {
                let mut t = Table::new(columns::header(kind, wide));
                t.add_row(columns::row(kind, &obj, wide, now));
                t.render()
            }
        };
        output::emit(&text)?;
        return Ok(ExitCode::SUCCESS);
    }
    let list = client
        .list_all_any(kind, &params(args))
        .await
        .with_context(|| format!("cannot list {}", kind.plural()))?;
    let text = match args.output {
        Format::Json | Format::Yaml => {
            let doc = serde_json::json!({
                "apiVersion": swarm_api::API_VERSION,
                "kind": format!("{}List", kind.name()),
                "metadata": {"resourceVersion": list.resource_version},
                "items": list.items,
            });
            if args.output == Format::Json {
                format!("{}\n", serde_json::to_string_pretty(&doc)?)
            } else {
                output::to_yaml(&doc)?
            }
        }
        Format::Table | Format::Wide => {
            if list.items.is_empty() {
                eprintln!("No {} found.", kind.plural());
                return Ok(ExitCode::SUCCESS);
            }
            let mut t = Table::new(columns::header(kind, wide));
            for item in &list.items {
                t.add_row(columns::row(kind, item, wide, now));
            }
            t.render()
        }
    };
    output::emit(&text)?;
    Ok(ExitCode::SUCCESS)
}

/// Minimum column widths of watch tables, whose rows cannot be measured in advance.
const WATCH_WIDTHS: [usize; 11] = [8, 28, 14, 12, 12, 12, 8, 10, 10, 10, 10];

async fn watch(client: &Client, kind: Kind, args: &GetArgs) -> anyhow::Result<ExitCode> {
    let wide = args.output == Format::Wide;
    let table = matches!(args.output, Format::Table | Format::Wide);
    if table {
        let mut head = vec!["EVENT".to_string()];
        head.extend(columns::header(kind, wide));
        if !output::emit(&output::table::line(&head, &WATCH_WIDTHS))? {
            return Ok(ExitCode::SUCCESS);
        }
    }
    let params = params(args);
    let mut resume: Option<String> = None;
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        let mut stream = tokio::select! {
            _ = &mut interrupted => return Ok(ExitCode::SUCCESS),
            s = client.watch_any(kind, &params, resume.as_deref()) => match s {
                Ok(s) => s,
                // The version we would resume from is compacted away: start over from now.
                Err(e) if e.is_gone() && resume.is_some() => {
                    resume = None;
                    continue;
                }
                Err(e) => return Err(e).with_context(|| format!("cannot watch {}", kind.plural())),
            },
        };
        loop {
            let next = tokio::select! {
                _ = &mut interrupted => return Ok(ExitCode::SUCCESS),
                n = stream.next() => n,
            };
            let event = match next {
                // The server closed the stream (a timeout or a restart): resume where we were.
                None => break,
                Some(Err(e)) if e.is_transport() => {
                    return Err(e).with_context(|| format!("the watch of {} ended", kind.plural()));
                }
                Some(Err(e)) => {
                    eprintln!("warning: skipping an unreadable event: {e}");
                    continue;
                }
                Some(Ok(ev)) => ev,
            };
            if let WatchEvent::Error(status) = &event {
                if status.code == 410 {
                    resume = None;
                    break;
                }
                anyhow::bail!("the watch of {} failed: {}", kind.plural(), status.message);
            }
            if let Some(rv) = event_version(&event) {
                resume = Some(rv);
            }
            if let (Some(name), Some(obj)) = (&args.name, event.object())
                && obj.pointer("/metadata/name").and_then(|v| v.as_str()) != Some(name.as_str())
            {
                continue;
            }
            let text = match args.output {
                Format::Json => format!("{}\n", event.to_line(kind)),
                Format::Yaml => format!("---\n{}", output::to_yaml(&event.to_wire(kind))?),
                Format::Table | Format::Wide => match event.object() {
                    Some(obj) => {
                        let mut cells = vec![event.event_type().to_string()];
                        cells.extend(columns::row(kind, obj, wide, SystemTime::now()));
                        output::table::line(&cells, &WATCH_WIDTHS)
                    }
                    None => continue,
                },
            };
            if !output::emit(&text)? {
                return Ok(ExitCode::SUCCESS);
            }
        }
    }
}

fn event_version(event: &WatchEvent<serde_json::Value>) -> Option<String> {
    match event {
        WatchEvent::Bookmark(b) => Some(b.resource_version.clone()),
        other => other
            .object()
            .and_then(|o| o.pointer("/metadata/resourceVersion"))
            .and_then(|v| v.as_str())
            .map(str::to_string),
    }
}
