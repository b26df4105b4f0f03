//! `swarm wait --for=condition=NAME|delete|jsonpath='{.path}'=VALUE KIND/NAME`: kubectl's wait,
//! on the watch API. `condition=Converged` on a service also accepts convergence as
//! `service create` judges it (every task of the current template running).

use std::process::ExitCode;

use anyhow::Context as _;
use futures::StreamExt;
use serde_json::Value;
use swarm_api::{Duration, Kind};
use swarm_client::{Client, ListParams, WatchEvent};

use crate::connect::{ConnectArgs, block_on};
use crate::converge;
use crate::output;

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  swarm wait --for=condition=Converged service/web
  swarm wait --for=delete --timeout 1m service/web
  swarm wait --for=jsonpath='{.status.replicas.running}'=3 service/web
  swarm wait --for=jsonpath='{.status.state}'=ready node/node-1")]
pub struct WaitCmdArgs {
    /// condition=NAME[=VALUE], delete, or jsonpath='{.a.b}'[=VALUE].
    #[arg(long = "for", value_name = "CONDITION")]
    pub for_: String,
    /// KIND/NAME, e.g. service/web.
    pub target: String,
    /// Give up after this long (exit 1).
    #[arg(long, default_value = "30s", value_parser = crate::cmd::service::parse::duration)]
    pub timeout: Duration,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// What `--for` asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Want {
    Delete,
    /// `status.conditions[type=NAME].status` equals the value (default `True`).
    Condition {
        name: String,
        value: String,
    },
    /// The value at the path, printed as a string, equals `value` (or exists, without one).
    JsonPath {
        path: Vec<Segment>,
        value: Option<String>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segment {
    Field(String),
    Index(usize),
}

impl Want {
    pub fn parse(s: &str) -> anyhow::Result<Want> {
        if s == "delete" {
            return Ok(Want::Delete);
        }
        if let Some(rest) = s.strip_prefix("condition=") {
            let (name, value) = match rest.split_once('=') {
                Some((n, v)) => (n, v),
                None => (rest, "True"),
            };
            if name.is_empty() {
                anyhow::bail!("--for=condition= needs a condition name, e.g. condition=Converged");
            }
            return Ok(Want::Condition {
                name: name.to_string(),
                value: value.to_string(),
            });
        }
        if let Some(rest) = s.strip_prefix("jsonpath=") {
            let rest = rest.trim_start_matches('\'');
            let close = rest.find('}').ok_or_else(|| anyhow::anyhow!("--for=jsonpath needs a path in braces, e.g. jsonpath='{{.status.replicas.running}}'=3"))?;
            let expr = rest[..close].trim_start_matches('{');
            let value = rest[close + 1..].trim_start_matches('\'');
            let value = value
                .strip_prefix('=')
                .map(|v| v.trim_matches('\'').to_string());
            return Ok(Want::JsonPath {
                path: parse_path(expr)?,
                value,
            });
        }
        anyhow::bail!(
            "invalid --for {s:?}: use condition=NAME, delete, or jsonpath='{{.path}}'=VALUE"
        )
    }

    /// Whether the object (or its absence) satisfies the wish.
    pub fn met(&self, obj: Option<&Value>) -> bool {
        match (self, obj) {
            (Want::Delete, o) => o.is_none(),
            (_, None) => false,
            (Want::Condition { name, value }, Some(o)) => o
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .any(|c| {
                    c["type"].as_str() == Some(name.as_str())
                        && c["status"]
                            .as_str()
                            .is_some_and(|s| s.eq_ignore_ascii_case(value))
                }),
            (Want::JsonPath { path, value }, Some(o)) => match (lookup(o, path), value) {
                (Some(v), Some(want)) => &text(v) == want,
                (Some(v), None) => !v.is_null(),
                (None, _) => false,
            },
        }
    }
}

fn parse_path(expr: &str) -> anyhow::Result<Vec<Segment>> {
    let mut out = Vec::new();
    for part in expr
        .trim_start_matches('.')
        .split('.')
        .filter(|p| !p.is_empty())
    {
        let (field, rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !field.is_empty() {
            out.push(Segment::Field(field.to_string()));
        }
        for idx in rest.split('[').filter(|x| !x.is_empty()) {
            let n = idx.trim_end_matches(']').parse::<usize>().map_err(|_| {
                anyhow::anyhow!("jsonpath {expr:?}: only numeric indexes such as [0] are supported")
            })?;
            out.push(Segment::Index(n));
        }
    }
    Ok(out)
}

fn lookup<'a>(v: &'a Value, path: &[Segment]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, s| match s {
        Segment::Field(f) => v.get(f.as_str()),
        Segment::Index(i) => v.get(*i),
    })
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `service/web` → (Service, "web").
pub fn target(s: &str) -> anyhow::Result<(Kind, String)> {
    let (kind, name) = s
        .split_once('/')
        .ok_or_else(|| anyhow::anyhow!("invalid target {s:?}: use KIND/NAME, e.g. service/web"))?;
    Ok((kind.parse()?, name.to_string()))
}

pub fn run(args: WaitCmdArgs) -> anyhow::Result<ExitCode> {
    let want = Want::parse(&args.for_)?;
    let (kind, name) = target(&args.target)?;
    let client = args.connect.client()?;
    let reference = format!("{}/{name}", kind.name().to_ascii_lowercase());
    block_on(async {
        let timeout = args.timeout.as_std();
        let waited = if kind == Kind::Service
            && matches!(&want, Want::Condition { name: c, value } if c == "Converged" && value.eq_ignore_ascii_case("true"))
        {
            tokio::select! {
                r = converge::until_converged(&client, &name, Some(timeout)) => r,
                r = until(&client, kind, &name, &want) => r,
            }
        } else {
            match tokio::time::timeout(timeout, until(&client, kind, &name, &want)).await {
                Ok(r) => r,
                Err(_) => Err(anyhow::anyhow!("timed out")),
            }
        };
        match waited {
            Ok(()) => {
                output::emit(&format!("{reference} condition met\n"))?;
                Ok(ExitCode::SUCCESS)
            }
            Err(e) if e.to_string().starts_with("timed out") => anyhow::bail!(
                "timed out waiting for the condition on {}/{name} (after {})",
                kind.plural(),
                args.timeout
            ),
            Err(e) => Err(e),
        }
    })?
}

/// Watches the object until `want` holds.
async fn until(client: &Client, kind: Kind, name: &str, want: &Want) -> anyhow::Result<()> {
    let params = ListParams::default().fields(format!("metadata.name={name}"));
    let mut resume: Option<String> = None;
    loop {
        let mut stream = match client.watch_any(kind, &params, resume.as_deref()).await {
            Ok(s) => s,
            Err(e) if e.is_gone() && resume.is_some() => {
                resume = None;
                continue;
            }
            Err(e) => return Err(e).with_context(|| format!("cannot watch {}", kind.plural())),
        };
        // Watching from now lists what exists as ADDED, then a bookmark-free stream of
        // changes; an object that does not exist sends nothing, which `delete` must see.
        if resume.is_none() && want.met(None) {
            match client.get_any(kind, name).await {
                Err(e) if e.is_not_found() => return Ok(()),
                Err(e) => return Err(e.into()),
                Ok(_) => {}
            }
        }
        while let Some(ev) = stream.next().await {
            let ev = match ev {
                Ok(ev) => ev,
                Err(e) if e.is_transport() => return Err(e.into()),
                Err(_) => continue,
            };
            if let Some(rv) = ev
                .object()
                .and_then(|o| o.pointer("/metadata/resourceVersion"))
                .and_then(Value::as_str)
            {
                resume = Some(rv.to_string());
            }
            let met = match &ev {
                WatchEvent::Added(o) | WatchEvent::Modified(o) => want.met(Some(o)),
                WatchEvent::Deleted(_) => want.met(None),
                WatchEvent::Bookmark(b) => {
                    resume = Some(b.resource_version.clone());
                    false
                }
                WatchEvent::Error(s) if s.code == 410 => {
                    resume = None;
                    break;
                }
                WatchEvent::Error(s) => anyhow::bail!("the watch failed: {}", s.message),
            };
            if met {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wishes_parse_and_match() {
        let obj = json!({"status": {"replicas": {"running": 3}, "state": "ready",
            "conditions": [{"type": "Converged", "status": "True"}], "list": [{"a": "x"}]}});
        assert_eq!(Want::parse("delete").unwrap(), Want::Delete);
        assert!(Want::Delete.met(None) && !Want::Delete.met(Some(&obj)));
        let c = Want::parse("condition=Converged").unwrap();
        assert!(c.met(Some(&obj)));
        assert!(
            !Want::parse("condition=Converged=false")
                .unwrap()
                .met(Some(&obj))
        );
        assert!(!Want::parse("condition=Ready").unwrap().met(Some(&obj)));
        assert!(
            Want::parse("jsonpath='{.status.replicas.running}'=3")
                .unwrap()
                .met(Some(&obj))
        );
        assert!(
            Want::parse("jsonpath={.status.replicas.running}=3")
                .unwrap()
                .met(Some(&obj))
        );
        assert!(
            !Want::parse("jsonpath={.status.replicas.running}=2")
                .unwrap()
                .met(Some(&obj))
        );
        assert!(
            Want::parse("jsonpath={.status.state}=ready")
                .unwrap()
                .met(Some(&obj))
        );
        assert!(
            Want::parse("jsonpath={.status.list[0].a}=x")
                .unwrap()
                .met(Some(&obj))
        );
        assert!(
            Want::parse("jsonpath={.status.state}")
                .unwrap()
                .met(Some(&obj))
        );
        assert!(
            !Want::parse("jsonpath={.status.nope}")
                .unwrap()
                .met(Some(&obj))
        );
        assert!(
            Want::parse("ready")
                .unwrap_err()
                .to_string()
                .contains("condition=NAME")
        );
        assert_eq!(
            target("svc/web").unwrap(),
            (Kind::Service, "web".to_string())
        );
        assert!(target("web").unwrap_err().to_string().contains("KIND/NAME"));
    }
}
