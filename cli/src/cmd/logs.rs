//! `swarm service logs SERVICE|TASK` and `swarm logs TASK|SERVICE`: container logs through the
//! apiserver, printed as `docker service logs` prints them:
//!
//! ```text
//! web.1.3f1c2b4a5d6e@node-1    | GET / 200
//! web.10.9a0b1c2d3e4f@node-2    | GET / 200
//! ```
//!
//! Each line starts with `<service>.<slot>.<task id>@<node>` (global services: the node name in
//! place of the slot, as in container names), then spaces so the `|` of slots with fewer digits
//! than the replica count line up, then `    | ` and the line. Lines the container wrote to
//! stderr go to stderr. `-t` puts the time first, `--raw` prints the bare lines.
//!
//! A task, or a whole node, whose logs could not be read is reported on stderr, and the
//! command then exits 1 once the stream ends.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context as _;
use futures::StreamExt;
use swarm_api::logs::{LogRecord, LogStream};
use swarm_api::{Kind, Service, Task};
use swarm_client::{Client, ListParams, LogOptions};

use crate::connect::{ConnectArgs, block_on};
use crate::output::humanize::full_id;

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  swarm service logs web
  swarm service logs -f --tail 10 web
  swarm logs web.1.1
  swarm service logs --raw -t 3f1c2b4a5d6e")]
pub struct LogsArgs {
    /// The service, or one task (its name or ID).
    pub target: String,
    /// Follow log output (until Ctrl-C); tasks that start later are followed too.
    #[arg(short, long)]
    pub follow: bool,
    /// Number of lines to show from the end of each task's log, or "all".
    #[arg(short = 'n', long, default_value = "all", value_name = "N")]
    pub tail: String,
    /// Show timestamps.
    #[arg(short, long)]
    pub timestamps: bool,
    /// Do not include task IDs in the prefix.
    #[arg(long)]
    pub no_task_ids: bool,
    /// Do not truncate task IDs.
    #[arg(long)]
    pub no_trunc: bool,
    /// Do not prefix lines (the bare log lines).
    #[arg(long)]
    pub raw: bool,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// How lines are printed.
#[derive(Clone, Copy, Debug, Default)]
pub struct Format {
    pub timestamps: bool,
    pub no_task_ids: bool,
    pub no_trunc: bool,
    pub raw: bool,
    /// Digits of the widest slot (the replica count): narrower slots are padded.
    pub slot_width: usize,
}

fn digits(n: u64) -> usize {
    n.to_string().len()
}

/// docker's task context: `web.1.3f1c2b4a5d6e@node-1`, padded to the slot width.
pub fn prefix(r: &LogRecord, f: &Format) -> String {
    let middle = match r.slot {
        Some(s) => s.to_string(),
        None => r.node.clone(),
    };
    let mut name = format!("{}.{middle}", r.service);
    if !f.no_task_ids {
        let id = full_id(&r.task_id);
        let id = if f.no_trunc {
            id
        } else {
            id.chars().take(12).collect()
        };
        name.push('.');
        name.push_str(&id);
    }
    let pad = f
        .slot_width
        .saturating_sub(r.slot.map_or(f.slot_width, digits));
    format!("{name}@{}{}", r.node, " ".repeat(pad))
}

/// One output line (with its newline) for a line record.
pub fn format_line(r: &LogRecord, f: &Format) -> String {
    let mut out = String::new();
    if f.timestamps
        && let Some(t) = &r.timestamp
    {
        out.push_str(t);
        out.push(' ');
    }
    if !f.raw {
        out.push_str(&prefix(r, f));
        out.push_str("    | ");
    }
    out.push_str(&r.line);
    out.push('\n');
    out
}

/// What an error record says on stderr.
pub fn format_error(r: &LogRecord) -> String {
    if r.task.is_empty() {
        format!("error: logs from node {}: {}\n", r.node, r.error)
    } else {
        format!("error: logs of task {}: {}\n", r.task, r.error)
    }
}

/// `--tail`: a number of lines, or everything.
fn parse_tail(s: &str) -> anyhow::Result<Option<u64>> {
    match s.trim() {
        "" | "all" => Ok(None),
        t => match t.parse::<i64>() {
            Ok(n) if n < 0 => Ok(None),
            Ok(n) => Ok(Some(n as u64)),
            Err(_) => anyhow::bail!("invalid --tail {t:?}: give a number of lines or \"all\""),
        },
    }
}

/// What the target names: a service (and how wide its slots are) or one task.
enum Target {
    Service { name: String, slot_width: usize },
    Task { name: String, slot_width: usize },
}

fn not_found(e: &swarm_client::ClientError) -> bool {
    e.is_not_found()
}

async fn find_service(client: &Client, name: &str) -> anyhow::Result<Option<Target>> {
    match client.get::<Service>(name).await {
        Ok(s) => Ok(Some(Target::Service {
            name: s.metadata.name.clone(),
            slot_width: s.spec.replicas().map_or(1, digits),
        })),
        Err(e) if not_found(&e) => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read service {name}")),
    }
}

fn task_target(t: &Task) -> Target {
    Target::Task {
        name: t.metadata.name.clone(),
        slot_width: t.spec.slot.map_or(1, digits),
    }
}

/// A task by name, else by ID (a unique prefix of the ID `service ps` shows).
async fn find_task(client: &Client, target: &str) -> anyhow::Result<Option<Target>> {
    match client.get::<Task>(target).await {
        Ok(t) => return Ok(Some(task_target(&t))),
        Err(e) if not_found(&e) => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read task {target}")),
    }
    let wanted = full_id(target);
    if wanted.is_empty() || !wanted.chars().all(|c| c.is_ascii_hexdigit()) {
        return Ok(None);
    }
    let tasks = client
        .list_all::<Task>(&ListParams::default())
        .await
        .context("cannot list tasks")?;
    let found: Vec<&Task> = tasks
        .items
        .iter()
        .filter(|t| full_id(&t.metadata.uid).starts_with(&wanted))
        .collect();
    match found.as_slice() {
        [] => Ok(None),
        [t] => Ok(Some(task_target(t))),
        many => anyhow::bail!(
            "task ID {target} is ambiguous: it starts {} task IDs; give more of it",
            many.len()
        ),
    }
}

/// Resolves `target`: services first for `service logs`, tasks first for `logs`.
async fn resolve(client: &Client, target: &str, tasks_first: bool) -> anyhow::Result<Target> {
    let found = if tasks_first {
        match find_task(client, target).await? {
            Some(t) => Some(t),
            None => find_service(client, target).await?,
        }
    } else {
        match find_service(client, target).await? {
            Some(s) => Some(s),
            None => find_task(client, target).await?,
        }
    };
    found.ok_or_else(|| {
        anyhow::anyhow!(
            "no such task or service: {target} (see `swarm service ls` and `swarm service ps SERVICE`)"
        )
    })
}

/// `swarm service logs`.
pub fn run_service(args: LogsArgs) -> anyhow::Result<ExitCode> {
    run_with(args, false)
}

/// `swarm logs`.
pub fn run(args: LogsArgs) -> anyhow::Result<ExitCode> {
    run_with(args, true)
}

fn run_with(args: LogsArgs, tasks_first: bool) -> anyhow::Result<ExitCode> {
    let opts = LogOptions {
        follow: args.follow,
        tail: parse_tail(&args.tail)?,
        timestamps: args.timestamps,
    };
    let client = args.connect.client()?;
    block_on(async move {
        let target = resolve(&client, &args.target, tasks_first).await?;
        let (kind, name, slot_width) = match &target {
            Target::Service { name, slot_width } => (Kind::Service, name, *slot_width),
            Target::Task { name, slot_width } => (Kind::Task, name, *slot_width),
        };
        let format = Format {
            timestamps: args.timestamps,
            no_task_ids: args.no_task_ids,
            no_trunc: args.no_trunc,
            raw: args.raw,
            slot_width,
        };
        let mut records = client
            .logs(kind, name, &opts)
            .await
            .with_context(|| format!("cannot read the logs of {name}"))?;
        let interrupted = tokio::signal::ctrl_c();
        tokio::pin!(interrupted);
        let mut failed = false;
        loop {
            let next = tokio::select! {
                _ = &mut interrupted => return Ok(ExitCode::SUCCESS),
                n = records.next() => n,
            };
            let Some(r) = next else { break };
            let r = r.context("the log stream broke")?;
            if r.is_error() {
                failed = true;
                eprint!("{}", format_error(&r));
                continue;
            }
            let text = format_line(&r, &format);
            let written = match r.stream {
                LogStream::Stdout => crate::output::emit(&text)?,
                LogStream::Stderr => {
                    let mut err = std::io::stderr().lock();
                    err.write_all(text.as_bytes())
                        .and_then(|()| err.flush())
                        .is_ok()
                }
            };
            if !written {
                return Ok(ExitCode::SUCCESS);
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

    fn rec(slot: Option<u64>, node: &str, line: &str) -> LogRecord {
        LogRecord {
            task: "web.1.1".into(),
            task_id: "3f1c2b4a5d6e4f708192a3b4c5d6e7f8".into(),
            node: node.into(),
            service: "web".into(),
            slot,
            timestamp: Some("2026-01-01T00:00:00.000000001Z".into()),
            line: line.into(),
            ..LogRecord::default()
        }
    }

    #[test]
    fn lines_are_prefixed_as_docker_does() {
        let f = Format {
            slot_width: 2,
            ..Format::default()
        };
        // Slots narrower than the replica count are padded so the bars line up.
        assert_eq!(
            format_line(&rec(Some(1), "node-1", "GET / 200"), &f),
            "web.1.3f1c2b4a5d6e@node-1     | GET / 200\n"
        );
        assert_eq!(
            format_line(&rec(Some(10), "node-1", "GET / 200"), &f),
            "web.10.3f1c2b4a5d6e@node-1    | GET / 200\n"
        );
        let f = Format {
            slot_width: 1,
            timestamps: true,
            no_trunc: true,
            ..Format::default()
        };
        assert_eq!(
            format_line(&rec(Some(3), "n2", "x"), &f),
            "2026-01-01T00:00:00.000000001Z web.3.3f1c2b4a5d6e4f708192a3b4c5d6e7f8@n2    | x\n"
        );
        let f = Format {
            slot_width: 1,
            no_task_ids: true,
            ..Format::default()
        };
        // Global services: the node in place of the slot, as in container names.
        assert_eq!(format_line(&rec(None, "n2", "x"), &f), "web.n2@n2    | x\n");
        let raw = Format {
            raw: true,
            ..Format::default()
        };
        assert_eq!(format_line(&rec(Some(1), "n2", "bare"), &raw), "bare\n");
    }

    #[test]
    fn errors_name_the_task_or_the_node() {
        let mut r = rec(Some(1), "n2", "");
        r.error = "node n2 is not connected".into();
        assert_eq!(
            format_error(&r),
            "error: logs of task web.1.1: node n2 is not connected\n"
        );
        r.task.clear();
        assert_eq!(
            format_error(&r),
            "error: logs from node n2: node n2 is not connected\n"
        );
    }

    #[test]
    fn tail_is_a_count_or_all() {
        assert_eq!(parse_tail("all").unwrap(), None);
        assert_eq!(parse_tail("-1").unwrap(), None);
        assert_eq!(parse_tail("5").unwrap(), Some(5));
        assert!(parse_tail("five").is_err());
    }
}
