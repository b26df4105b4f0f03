//! `swarm events [--since RV] [-l SEL] [-o json]`: every change to every kind, as it happens.
//! Text lines read like docker's (`TIME KIND ACTION NAME (resourceVersion=N)`); `-o json`
//! prints one watch event per line. Each event carries its `resourceVersion`: pass the last
//! one to `--since` to resume without missing or repeating anything of a kind.

use std::process::ExitCode;

use anyhow::Context as _;
use futures::{StreamExt, stream::BoxStream};
use serde_json::Value;
use swarm_api::{Kind, Timestamp};
use swarm_client::{Client, ListParams, WatchEvent};

use crate::connect::{ConnectArgs, block_on};
use crate::output;

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  swarm events
  swarm events -o json --since 1234
  swarm events -l swarm.stack=voting --kind service --kind task")]
pub struct EventsArgs {
    /// Only changes after this resourceVersion (default: from now on).
    #[arg(long, value_name = "RV")]
    pub since: Option<String>,
    /// Label selector, e.g. swarm.stack=voting.
    #[arg(short = 'l', long = "selector", value_name = "SELECTOR")]
    pub selector: Option<String>,
    /// Only these kinds (repeatable; default: all).
    #[arg(long = "kind", value_name = "KIND")]
    pub kinds: Vec<String>,
    /// text (default) or json (one watch event per line).
    #[arg(short, long, default_value = "text", value_parser = ["text", "json"])]
    pub output: String,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// docker's action names for watch event types.
fn action(ev: &WatchEvent<Value>) -> &'static str {
    match ev {
        WatchEvent::Added(_) => "create",
        WatchEvent::Modified(_) => "update",
        WatchEvent::Deleted(_) => "remove",
        WatchEvent::Bookmark(_) | WatchEvent::Error(_) => "",
    }
}

/// One text line: `2026-01-01T00:00:00.000Z service update web (resourceVersion=42)`.
pub fn text_line(kind: Kind, ev: &WatchEvent<Value>, now: Timestamp) -> Option<String> {
    let obj = ev.object()?;
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let rv = obj
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    Some(format!(
        "{now} {} {} {name} (resourceVersion={rv})\n",
        kind.name().to_ascii_lowercase(),
        action(ev)
    ))
}

type Events = BoxStream<'static, (Kind, Result<WatchEvent<Value>, swarm_client::ClientError>)>;

async fn watch_all(
    client: &Client,
    kinds: &[Kind],
    params: &ListParams,
    since: &[(Kind, String)],
) -> anyhow::Result<Events> {
    let mut streams = Vec::new();
    for &kind in kinds {
        let rv = since
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, rv)| rv.as_str());
        let s = match client.watch_any(kind, params, rv).await {
            Ok(s) => s,
            Err(e) if e.is_gone() => anyhow::bail!(
                "revision {} is compacted: the events since then are gone; start again without --since",
                rv.unwrap_or("?")
            ),
            Err(e) => return Err(e).with_context(|| format!("cannot watch {}", kind.plural())),
        };
        streams.push(s.map(move |e| (kind, e)).boxed());
    }
    Ok(futures::stream::select_all(streams).boxed())
}

pub fn run(args: EventsArgs) -> anyhow::Result<ExitCode> {
    let kinds: Vec<Kind> = if args.kinds.is_empty() {
        Kind::ALL.to_vec()
    } else {
        args.kinds
            .iter()
            .map(|k| k.parse())
            .collect::<Result<_, _>>()?
    };
    let client = args.connect.client()?;
    let params = ListParams {
        label_selector: args.selector.clone(),
        ..Default::default()
    }
    .bookmarks(true);
    let json = args.output == "json";
    block_on(async move {
        let start = match &args.since {
            Some(rv) => rv.clone(),
            None => {
                client
                    .list_any(kinds[0], &ListParams::default().limit(1))
                    .await
                    .context("cannot read the current revision")?
                    .resource_version
            }
        };
        // Where each kind's watch resumes after the server ends a stream.
        let mut resume: Vec<(Kind, String)> = kinds.iter().map(|k| (*k, start.clone())).collect();
        let interrupted = tokio::signal::ctrl_c();
        tokio::pin!(interrupted);
        loop {
            let mut events = watch_all(&client, &kinds, &params, &resume).await?;
            loop {
                let next = tokio::select! {
                    _ = &mut interrupted => return Ok(ExitCode::SUCCESS),
                    n = events.next() => n,
                };
                let Some((kind, ev)) = next else { break };
                let ev = match ev {
                    Ok(ev) => ev,
                    Err(e) if e.is_transport() => {
                        return Err(anyhow::Error::new(e).context("the event stream ended"));
                    }
                    Err(e) => {
                        eprintln!("warning: skipping an unreadable event: {e}");
                        continue;
                    }
                };
                let rv = match &ev {
                    WatchEvent::Bookmark(b) => Some(b.resource_version.clone()),
                    WatchEvent::Error(s) if s.code == 410 => anyhow::bail!(
                        "the events after revision {} are compacted away; start again without --since",
                        start
                    ),
                    WatchEvent::Error(s) => anyhow::bail!("the event stream failed: {}", s.message),
                    other => other
                        .object()
                        .and_then(|o| o.pointer("/metadata/resourceVersion"))
                        .and_then(Value::as_str)
                        .map(str::to_string),
                };
                if let Some(rv) = rv
                    && let Some(slot) = resume.iter_mut().find(|(k, _)| *k == kind)
                {
                    slot.1 = rv;
                }
                let line = if json {
                    ev.object().map(|_| format!("{}\n", ev.to_line(kind)))
                } else {
                    text_line(kind, &ev, Timestamp::now())
                };
                if let Some(line) = line
                    && !output::emit(&line)?
                {
                    return Ok(ExitCode::SUCCESS);
                }
            }
        }
    })?
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_lines_read_like_docker_events() {
        let now = Timestamp(
            std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_767_225_600),
        );
        let obj = json!({"metadata": {"name": "web", "resourceVersion": "42"}});
        assert_eq!(
            text_line(Kind::Service, &WatchEvent::Modified(obj.clone()), now).unwrap(),
            "2026-01-01T00:00:00.000Z service update web (resourceVersion=42)\n"
        );
        assert_eq!(
            text_line(Kind::Task, &WatchEvent::Deleted(obj), now).unwrap(),
            "2026-01-01T00:00:00.000Z task remove web (resourceVersion=42)\n"
        );
        let bookmark = WatchEvent::Bookmark(swarm_client::Bookmark {
            resource_version: "7".into(),
        });
        assert_eq!(text_line(Kind::Task, &bookmark, now), None);
    }
}
