//! Docker's event stream, narrowed to this node's containers and turned into runner wake-ups.
//! When the stream breaks, it is reopened and every runner is told to look again (events may
//! have been missed meanwhile), so waking on events never loses a change.

use std::collections::HashMap;
use std::time::Duration;

use bollard::Docker;
use bollard::query_parameters::EventsOptionsBuilder;
use futures::StreamExt;
use tokio::sync::broadcast;

use super::spec::{LABEL_NODE, LABEL_TASK};
use crate::runtime::RuntimeEvent;

/// Follows container events of `node` forever, publishing them on `tx`.
pub async fn pump(docker: Docker, node: String, tx: broadcast::Sender<RuntimeEvent>) {
    loop {
        let mut filters: HashMap<&str, Vec<String>> = HashMap::new();
        filters.insert("type", vec!["container".into()]);
        filters.insert("label", vec![format!("{LABEL_NODE}={node}")]);
        let opts = EventsOptionsBuilder::new().filters(&filters).build();
        let mut stream = docker.events(Some(opts));
        // Anything may have happened while no stream was open.
        let _ = tx.send(RuntimeEvent {
            task: String::new(),
            exit_code: None,
        });
        while let Some(item) = stream.next().await {
            match item {
                Ok(ev) => {
                    let attrs = ev.actor.and_then(|a| a.attributes).unwrap_or_default();
                    let Some(task) = attrs.get(LABEL_TASK).cloned() else {
                        continue;
                    };
                    let action = ev.action.unwrap_or_default();
                    let exit_code = if action == "die" {
                        attrs.get("exitCode").and_then(|c| c.parse().ok())
                    } else {
                        None
                    };
                    tracing::debug!(%task, %action, "docker event");
                    let _ = tx.send(RuntimeEvent { task, exit_code });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "docker event stream broke; reopening");
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
