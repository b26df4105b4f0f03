//! Finding objects the way docker does — by name, or by a prefix of the ID docker prints —
//! and read-modify-write updates that retry when someone else wrote first.

use anyhow::Context as _;
use swarm_api::Resource;
use swarm_client::{Client, ListParams};

use crate::output::humanize::full_id;

/// How many times a conflicting update is retried before giving up.
const RETRIES: usize = 5;

/// The object named `name_or_id`, or else the one whose ID starts with it.
pub async fn find<T: Resource>(client: &Client, name_or_id: &str) -> anyhow::Result<T> {
    let noun = noun::<T>();
    match client.get::<T>(name_or_id).await {
        Ok(obj) => return Ok(obj),
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(e).with_context(|| format!("cannot get {noun} {name_or_id:?}")),
    }
    let prefix = full_id(name_or_id);
    let all = client
        .list_all::<T>(&ListParams::default())
        .await
        .with_context(|| format!("cannot list {noun}s"))?;
    let mut matches: Vec<T> = all
        .items
        .into_iter()
        .filter(|o| !prefix.is_empty() && full_id(&o.meta().uid).starts_with(&prefix))
        .collect();
    match matches.len() {
        0 => anyhow::bail!("no such {noun}: {name_or_id} (list them with `swarm {noun} ls`)"),
        1 => Ok(matches.remove(0)),
        n => anyhow::bail!(
            "{n} {noun}s have an ID starting with {name_or_id:?}: give more of the ID, or the name"
        ),
    }
}

/// Reads the object, lets `change` edit it, and writes it back conditionally; when another
/// writer got there first, reads again and retries. Returns the object as stored.
pub async fn update<T: Resource>(
    client: &Client,
    name_or_id: &str,
    mut change: impl FnMut(&mut T) -> anyhow::Result<()>,
) -> anyhow::Result<T> {
    let noun = noun::<T>();
    let mut last_err = None;
    for _ in 0..RETRIES {
        let mut obj = find::<T>(client, name_or_id).await?;
        change(&mut obj)?;
        match client.replace(&obj).await {
            Ok(stored) => return Ok(stored),
            Err(e) if e.is_conflict() => last_err = Some(e),
            Err(e) => {
                return Err(e).with_context(|| format!("cannot update {noun} {}", obj.name()));
            }
        }
    }
    let e = last_err
        .map(anyhow::Error::new)
        .unwrap_or_else(|| anyhow::anyhow!("conflict"));
    Err(e.context(format!(
        "{noun} {name_or_id} kept changing while being updated; try again"
    )))
}

/// `service`, `node`, … for messages.
pub fn noun<T: Resource>() -> String {
    T::KIND.name().to_ascii_lowercase()
}
