//! `swarm diff -f FILE...`: what `swarm apply` would change, as a unified diff of each object's
//! labels, annotations and spec (never status, uid, versions or timestamps).
//!
//! The apiserver decides what changes (a dry-run apply), so `diff` and `apply` always agree;
//! the diff text shows how. Exit codes as `kubectl diff`: 0 no change, 1 changes, 2 error.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use similar::TextDiff;
use swarm_api::{AnyObject, Kind, meta::STACK_LABEL};
use swarm_client::{ApplyAction, Client};

use crate::cmd::apply::{Loaded, load};
use crate::connect::{ConnectArgs, block_on};
use crate::output;

#[derive(clap::Args, Debug)]
pub struct DiffArgs {
    /// Compose files or manifests, as for `swarm apply`.
    #[arg(short = 'f', long = "file", value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
    /// The stack's name [default: the first file's name without extension].
    #[arg(long, value_name = "NAME")]
    pub stack: Option<String>,
    /// Also show the stack's objects that `apply --prune` would delete.
    #[arg(long)]
    pub prune: bool,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// Exit code for "something differs".
const CHANGED: u8 = 1;
/// Exit code for "could not tell".
const ERROR: u8 = 2;

pub fn run(args: DiffArgs) -> ExitCode {
    match diff(&args) {
        Ok(false) => ExitCode::SUCCESS,
        Ok(true) => ExitCode::from(CHANGED),
        Err(e) => {
            eprintln!("error: {}", output::describe_error(&e));
            ExitCode::from(ERROR)
        }
    }
}

/// Prints the diff; `true` when applying would change anything.
fn diff(args: &DiffArgs) -> anyhow::Result<bool> {
    let loaded = load(&args.files, args.stack.as_deref())?;
    let client = args.connect.client()?;
    let text = block_on(render(&client, &loaded, args.prune))??;
    if let Some(text) = &text {
        output::emit(text)?;
    }
    Ok(text.is_some())
}

async fn render(client: &Client, loaded: &Loaded, prune: bool) -> anyhow::Result<Option<String>> {
    let plan = client
        .apply_stack(&loaded.name, &loaded.objects, true, prune)
        .await
        .with_context(|| format!("apply of stack {:?} would be refused", loaded.name))?;
    if !plan.changes_anything() {
        return Ok(None);
    }
    let mut out = String::new();
    for r in &plan.results {
        let kind: Kind = r.kind.parse()?;
        let desired = || {
            loaded
                .objects
                .iter()
                .find(|o| o.kind() == kind && o.name() == r.name)
                .map(|o| normalize(&o.to_value(), &loaded.name, true))
                .transpose()
                .map(Option::unwrap_or_default)
        };
        let live = || async {
            let v = client
                .get_any(kind, &r.name)
                .await
                .with_context(|| format!("cannot read the live {}", r.reference()))?;
            normalize(&v, &loaded.name, false)
        };
        let (old, new) = match r.action {
            ApplyAction::Unchanged => continue,
            ApplyAction::Created => (String::new(), desired()?),
            ApplyAction::Pruned => (live().await?, String::new()),
            ApplyAction::Configured => (live().await?, desired()?),
        };
        let reference = r.reference();
        let udiff = TextDiff::from_lines(&old, &new)
            .unified_diff()
            .context_radius(3)
            .header(
                &format!("live/{reference}"),
                &format!("desired/{reference}"),
            )
            .to_string();
        if udiff.is_empty() {
            // The server sees a change in something the diff leaves out (e.g. defaults it fills in).
            out.push_str(&format!(
                "# {reference}: changes outside labels, annotations and spec\n"
            ));
        } else {
            out.push_str(&udiff);
        }
    }
    Ok(Some(out))
}

/// The part of an object `diff` compares, as YAML: apiVersion, kind, name, labels, annotations
/// and spec, with the defaults the API fills in. A desired object gets the stack label the
/// apiserver adds on apply.
fn normalize(value: &serde_json::Value, stack: &str, desired: bool) -> anyhow::Result<String> {
    let typed = AnyObject::from_value(value.clone())
        .map(|o| o.to_value())
        .unwrap_or_else(|_| value.clone());
    let mut meta = serde_json::Map::new();
    meta.insert("name".into(), typed["metadata"]["name"].clone());
    for key in ["labels", "annotations"] {
        if let Some(v) = typed["metadata"].get(key) {
            meta.insert(key.into(), v.clone());
        }
    }
    if desired {
        let labels = meta
            .entry("labels")
            .or_insert_with(|| serde_json::json!({}));
        if let Some(l) = labels.as_object_mut() {
            l.entry(STACK_LABEL).or_insert_with(|| stack.into());
        }
    }
    let mut doc = serde_json::Map::new();
    doc.insert("apiVersion".into(), swarm_api::API_VERSION.into());
    doc.insert("kind".into(), typed["kind"].clone());
    doc.insert("metadata".into(), meta.into());
    if let Some(spec) = typed.get("spec") {
        doc.insert("spec".into(), spec.clone());
    }
    output::to_yaml(&doc.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn normalize_drops_server_fields_and_fills_defaults() {
        let live = json!({
            "apiVersion": "swarm/v1", "kind": "Network",
            "metadata": {"name": "voting_front", "uid": "u1", "resourceVersion": "12",
                         "creationTimestamp": "2026-11-22T10:00:00.000Z",
                         "labels": {"swarm.stack": "voting"}},
            "spec": {"driver": "overlay"},
            "status": {"subnet": "10.0.1.0/24"}
        });
        let desired = json!({"kind": "Network", "metadata": {"name": "voting_front"}, "spec": {}});
        let a = normalize(&live, "voting", false).unwrap();
        let b = normalize(&desired, "voting", true).unwrap();
        assert_eq!(a, b);
        for gone in ["uid", "resourceVersion", "creationTimestamp", "10.0.1.0"] {
            assert!(!a.contains(gone), "{gone} in {a}");
        }
    }

    #[test]
    fn a_spec_change_shows_in_the_diff() {
        let live = json!({"kind": "Service", "metadata": {"name": "web", "labels": {"swarm.stack": "s"}},
                          "spec": {"mode": {"replicated": {"replicas": 1}}}});
        let desired = json!({"kind": "Service", "metadata": {"name": "web"},
                             "spec": {"mode": {"replicated": {"replicas": 3}}}});
        let old = normalize(&live, "s", false).unwrap();
        let new = normalize(&desired, "s", true).unwrap();
        let d = TextDiff::from_lines(&old, &new).unified_diff().to_string();
        assert!(
            d.contains("-        replicas: 1") || d.contains("-      replicas: 1"),
            "{d}"
        );
        assert!(
            d.contains("+        replicas: 3") || d.contains("+      replicas: 3"),
            "{d}"
        );
        assert_eq!(
            d.lines()
                .filter(|l| l.starts_with('+') && !l.starts_with("+++"))
                .count(),
            1,
            "{d}"
        );
    }
}
