//! `swarm events [--since RV] [-l SEL] [-o json]`: every change to every kind (leases only
//! with `--kind lease`), as it happens. Text lines read like docker's (`TIME KIND ACTION NAME
//! (resourceVersion=N)`); `-o json` prints one watch event per line. One watch per kind,
//! merged into store-revision order (`order`), so an event is printed once every kind's watch
//! has passed it — at most one bookmark interval after it happened (1 s with `swarm server`).
//! Each event carries its `resourceVersion`: pass the last one printed to `--since` to resume
//! without missing or repeating anything.

use std::process::ExitCode;

use anyhow::Context as _;
use futures::{StreamExt, stream::BoxStream};
use serde_json::Value;
use swarm_api::{Kind, Timestamp};
use swarm_client::{Client, ListParams, WatchEvent};

use crate::connect::{ConnectArgs, block_on};
use crate::output;

mod order;

use order::RevisionOrder;

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
    /// Only these kinds (repeatable; default: every kind but leases, whose leader-election
    /// renewals come several times a second — `--kind lease` shows them).
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

/// One text line, `at` the time the event arrived:
/// `2026-01-01T00:00:00.000Z service update web (resourceVersion=42)`.
pub fn text_line(kind: Kind, ev: &WatchEvent<Value>, at: Timestamp) -> Option<String> {
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
        "{at} {} {} {name} (resourceVersion={rv})\n",
        kind.name().to_ascii_lowercase(),
        action(ev)
    ))
}

/// The kinds `events` follows unless told: all but `Lease` (leader election renews each
/// controller's lease every few seconds, which would drown the changes people look for).
fn default_kinds() -> Vec<Kind> {
    Kind::ALL
        .into_iter()
        .filter(|k| *k != Kind::Lease)
        .collect()
}

/// What one kind's feed yields: its watch's events, then `End` when the server ends it.
enum Item {
    Event(Result<WatchEvent<Value>, swarm_client::ClientError>),
    End,
}

type Feed = BoxStream<'static, (Kind, Item)>;

/// `kind`'s watch from revision `from` (it delivers what follows), bookmarks on.
async fn feed(client: &Client, kind: Kind, params: &ListParams, from: u64) -> anyhow::Result<Feed> {
    let rv = from.to_string();
    let s = match client.watch_any(kind, params, Some(&rv)).await {
        Ok(s) => s,
        Err(e) if e.is_gone() => anyhow::bail!(
            "revision {rv} is compacted: the {} events since then are gone; start again without --since",
            kind.name().to_ascii_lowercase()
        ),
        Err(e) => return Err(e).with_context(|| format!("cannot watch {}", kind.plural())),
    };
    let end = futures::stream::once(std::future::ready((kind, Item::End)));
    Ok(s.map(move |e| (kind, Item::Event(e))).chain(end).boxed())
}

/// A revision as the API writes it (a decimal number).
fn revision(rv: &str) -> anyhow::Result<u64> {
    rv.parse().with_context(|| {
        format!("invalid resourceVersion {rv:?}: expected a number, e.g. --since 1234")
    })
}

pub fn run(args: EventsArgs) -> anyhow::Result<ExitCode> {
    let kinds: Vec<Kind> = if args.kinds.is_empty() {
        default_kinds()
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
            Some(rv) => revision(rv)?,
            None => revision(
                &client
                    .list_any(kinds[0], &ListParams::default().limit(1))
                    .await
                    .context("cannot read the current revision")?
                    .resource_version,
            )?,
        };
        let mut order = RevisionOrder::new(&kinds, start);
        let mut feeds = futures::stream::SelectAll::new();
        for &kind in &kinds {
            feeds.push(feed(&client, kind, &params, start).await?);
        }
        let interrupted = tokio::signal::ctrl_c();
        tokio::pin!(interrupted);
        loop {
            let next = tokio::select! {
                _ = &mut interrupted => return Ok(ExitCode::SUCCESS),
                n = feeds.next() => n,
            };
            let Some((kind, item)) = next else {
                return Ok(ExitCode::SUCCESS);
            };
            let ev = match item {
                // The server ended this watch (timeout, restart of its cache): resume it.
                Item::End => {
                    feeds.push(feed(&client, kind, &params, order.resume_from(kind)).await?);
                    continue;
                }
                Item::Event(Ok(ev)) => ev,
                Item::Event(Err(e)) if e.is_transport() => {
                    return Err(anyhow::Error::new(e).context("the event stream ended"));
                }
                Item::Event(Err(e)) => {
                    eprintln!("warning: skipping an unreadable event: {e}");
                    continue;
                }
            };
            match &ev {
                WatchEvent::Bookmark(b) => order.bookmark(kind, revision(&b.resource_version)?),
                WatchEvent::Error(s) if s.code == 410 => anyhow::bail!(
                    "the events after revision {} are compacted away; start again without --since",
                    order.resume_from(kind)
                ),
                WatchEvent::Error(s) => anyhow::bail!("the event stream failed: {}", s.message),
                WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o) => {
                    let name = o
                        .pointer("/metadata/name")
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    let rv = o
                        .pointer("/metadata/resourceVersion")
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    let rv = revision(rv)?;
                    let name = name.to_string();
                    // Lines show when the event arrived, not when every kind let it out.
                    order.event(kind, &name, rv, (ev, Timestamp::now()));
                }
            }
            for (_, kind, (ev, arrived)) in order.ready() {
                let line = if json {
                    Some(format!("{}\n", ev.to_line(kind)))
                } else {
                    text_line(kind, &ev, arrived)
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
    fn leases_are_left_out_unless_asked_for() {
        let kinds = default_kinds();
        assert!(!kinds.contains(&Kind::Lease));
        assert!(kinds.contains(&Kind::Service) && kinds.contains(&Kind::Task));
        assert_eq!(kinds.len(), Kind::ALL.len() - 1);
    }

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
