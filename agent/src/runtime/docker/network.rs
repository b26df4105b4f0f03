//! Swarm networks as Docker bridge networks on this node: `swarm-<name>`, created with the
//! subnet and gateway the ipam controller allocated (Docker picks them if there are none),
//! labelled with the node that created them, and removed when no task here needs them.

use std::collections::{BTreeSet, HashMap};

use bollard::Docker;
use bollard::models::{Ipam, IpamConfig, NetworkCreateRequest};
use bollard::query_parameters::ListNetworksOptionsBuilder;
use swarm_api::Network;

use super::spec::{LABEL_NETWORK, LABEL_NODE, NETWORK_PREFIX, docker_network};
use super::{docker_error, is_status};
use crate::runtime::RuntimeError;

/// Serializes network creation within this process (see `ensure`).
static CREATING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Makes `swarm-<name>` exist.
pub async fn ensure(
    docker: &Docker,
    node: &str,
    name: &str,
    net: Option<&Network>,
) -> Result<(), RuntimeError> {
    let dn = docker_network(name);
    // One creation at a time in this agent: two runners creating the same network at once
    // make Docker refuse the second with "Pool overlaps" while the first is still in flight.
    let _one_at_a_time = CREATING.lock().await;
    match docker.inspect_network(&dn, None).await {
        Ok(_) => return Ok(()),
        Err(e) if is_status(&e, 404) => {}
        Err(e) => return Err(docker_error(e)),
    }
    let (subnet, gateway) = match net {
        Some(n) => {
            let subnet = if !n.status.subnet.is_empty() {
                Some(n.status.subnet.clone())
            } else {
                n.spec.ipam.subnet.clone()
            };
            let gateway = if !n.status.gateway.is_empty() {
                Some(n.status.gateway.clone())
            } else {
                n.spec.ipam.gateway.clone()
            };
            (subnet, gateway)
        }
        None => (None, None),
    };
    let ipam = subnet.map(|s| Ipam {
        config: Some(vec![IpamConfig {
            subnet: Some(s),
            gateway,
            ..Default::default()
        }]),
        ..Default::default()
    });
    let mut labels = HashMap::new();
    labels.insert(LABEL_NODE.to_string(), node.to_string());
    labels.insert(LABEL_NETWORK.to_string(), name.to_string());
    let req = NetworkCreateRequest {
        name: dn.clone(),
        driver: Some("bridge".into()),
        internal: net.map(|n| n.spec.internal),
        attachable: Some(true),
        ipam,
        labels: Some(labels),
        ..Default::default()
    };
    match docker.create_network(req).await {
        Ok(_) => {
            tracing::info!(network = %dn, "network created");
            Ok(())
        }
        // Created concurrently by another runner: fine.
        Err(e) if is_status(&e, 409) => Ok(()),
        // Another agent on the same engine creating the same network at once: Docker does not
        // always answer the loser with 409 — with a fixed subnet it says "Pool overlaps". If
        // the network is there now, the race was lost to a twin, not to a real conflict.
        Err(e) if docker.inspect_network(&dn, None).await.is_ok() => {
            tracing::debug!(network = %dn, error = %super::message(&e), "created concurrently");
            Ok(())
        }
        Err(e) => Err(RuntimeError::Fatal(format!(
            "cannot create network {dn}: {}",
            super::message(&e)
        ))),
    }
}

/// Removes this node's networks not in `in_use`; one still in use by a container stays.
pub async fn prune(
    docker: &Docker,
    node: &str,
    in_use: &BTreeSet<String>,
) -> Result<(), RuntimeError> {
    let mut filters: HashMap<&str, Vec<String>> = HashMap::new();
    filters.insert("label", vec![format!("{LABEL_NODE}={node}")]);
    let nets = docker
        .list_networks(Some(
            ListNetworksOptionsBuilder::new().filters(&filters).build(),
        ))
        .await
        .map_err(docker_error)?;
    for n in nets {
        let Some(dn) = n.name else { continue };
        let Some(name) = dn.strip_prefix(NETWORK_PREFIX) else {
            continue;
        };
        if in_use.contains(name) {
            continue;
        }
        match docker.remove_network(&dn).await {
            Ok(()) => tracing::info!(network = %dn, "unused network removed"),
            Err(e) => tracing::debug!(network = %dn, error = %e, "network not removed yet"),
        }
    }
    Ok(())
}
