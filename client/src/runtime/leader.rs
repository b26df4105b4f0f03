//! `leader`: leader election on a `Lease` object, so that of several replicas of a
//! controller exactly one acts, and another takes over when it dies.
//!
//! The protocol is client-go's `leaderelection`, over swarm's CAS writes:
//!
//! * **acquire** — if the lease does not exist, create it naming ourselves (create-if-absent:
//!   of two candidates only one create succeeds). If it exists and is free (no holder) or
//!   expired, replace it naming ourselves, conditional on the `resourceVersion` we read (of
//!   two candidates only one replace succeeds).
//! * **expiry is judged on the local clock**: a candidate notes *when it first saw* the
//!   lease's current `resourceVersion`; the lease is expired when that version has not changed
//!   for `leaseDurationSeconds`. No two machines' clocks are ever compared.
//! * **renew** — the leader rewrites the lease every `retry_period`. If it cannot renew
//!   within `renew_deadline` (shorter than the lease duration), or finds someone else holds
//!   it, it stops acting *before* any other candidate may consider the lease expired.
//! * **release** — on orderly shutdown the leader clears the holder, so a successor need not
//!   wait out the lease. A killed leader does not: the others take over after one lease
//!   duration.

use std::future::Future;
use std::time::{Duration, Instant};

use swarm_api::{Lease, LeaseSpec, Timestamp};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::metrics::Metrics;
use crate::{Client, ClientError};

/// Timing and identity of one candidate.
#[derive(Clone, Debug)]
pub struct LeaderConfig {
    /// The `Lease` object's name (one per controller).
    pub lease_name: String,
    /// This replica's unique name (recorded as the holder).
    pub identity: String,
    /// How long a lease stays valid without renewal.
    pub lease_duration: Duration,
    /// The leader gives up if it cannot renew for this long (< `lease_duration`).
    pub renew_deadline: Duration,
    /// How often the leader renews and candidates retry.
    pub retry_period: Duration,
}

impl LeaderConfig {
    /// Client-go's proportions: renew deadline 2/3 of the duration, retry every 1/6.
    pub fn new(
        lease_name: impl Into<String>,
        identity: impl Into<String>,
        lease_duration: Duration,
    ) -> Self {
        let lease_duration = lease_duration.max(Duration::from_secs(1));
        LeaderConfig {
            lease_name: lease_name.into(),
            identity: identity.into(),
            renew_deadline: lease_duration * 2 / 3,
            retry_period: (lease_duration / 6).max(Duration::from_millis(100)),
            lease_duration,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("lease {name}: {source}")]
    Api {
        name: String,
        #[source]
        source: ClientError,
    },
}

/// One candidate; `run` campaigns, leads and steps down until shutdown.
pub struct LeaderElector {
    client: Client,
    config: LeaderConfig,
    /// The lease version last seen, and when it was first seen (local clock).
    observed: Option<(String, Instant)>,
    leading: watch::Sender<bool>,
    metrics: Option<Metrics>,
}

impl LeaderElector {
    pub fn new(client: Client, config: LeaderConfig) -> Self {
        let (leading, _) = watch::channel(false);
        LeaderElector {
            client,
            config,
            observed: None,
            leading,
            metrics: None,
        }
    }

    /// Also report leadership in `metrics`.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Follows whether this candidate currently leads.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.leading.subscribe()
    }

    fn set_leading(&self, on: bool) {
        self.leading.send_replace(on);
        if let Some(m) = &self.metrics {
            m.set_leader(on);
        }
    }

    /// Campaigns until elected, then runs `lead(token)`; `token` is cancelled when the
    /// lease is lost or at shutdown, and `lead` is expected to return soon after. Then
    /// campaigns again, until `shutdown`. Releases the lease on the way out.
    pub async fn run<F, Fut>(mut self, shutdown: CancellationToken, lead: F)
    where
        F: Fn(CancellationToken) -> Fut,
        Fut: Future<Output = ()>,
    {
        let name = self.config.lease_name.clone();
        let me = self.config.identity.clone();
        loop {
            if !self.acquire(&shutdown).await {
                return;
            }
            tracing::info!(lease = %name, identity = %me, "became leader");
            self.set_leading(true);
            let stop = shutdown.child_token();
            let work = lead(stop.clone());
            tokio::pin!(work);
            let mut finished = false;
            tokio::select! {
                _ = &mut work => finished = true,
                _ = self.keep_renewing() => {
                    tracing::warn!(lease = %name, identity = %me, "lost the lease, stepping down");
                }
                _ = shutdown.cancelled() => {}
            }
            stop.cancel();
            if !finished {
                work.await;
            }
            self.set_leading(false);
            if shutdown.is_cancelled() {
                self.release().await;
                return;
            }
        }
    }

    /// Retries until this candidate holds the lease (`true`) or shutdown (`false`).
    async fn acquire(&mut self, shutdown: &CancellationToken) -> bool {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => return true,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "leader election: cannot read or write the lease")
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return false,
                _ = tokio::time::sleep(self.config.retry_period) => {}
            }
        }
    }

    /// Renews every `retry_period`; returns when leadership is lost.
    async fn keep_renewing(&mut self) {
        let mut last_renew = Instant::now();
        loop {
            tokio::time::sleep(self.config.retry_period).await;
            match self.try_acquire_or_renew().await {
                Ok(true) => last_renew = Instant::now(),
                Ok(false) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "leader election: renewal failed");
                    if last_renew.elapsed() >= self.config.renew_deadline {
                        return;
                    }
                }
            }
        }
    }

    /// One attempt: `Ok(true)` if we hold the lease afterwards.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, LeaderError> {
        let cfg = &self.config;
        let api = |source| LeaderError::Api {
            name: cfg.lease_name.clone(),
            source,
        };
        let now = Timestamp::now();
        let secs = u32::try_from(cfg.lease_duration.as_secs().max(1)).unwrap_or(u32::MAX);
        let current = match self.client.get::<Lease>(&cfg.lease_name).await {
            Ok(l) => l,
            Err(e) if e.is_not_found() => {
                let lease = Lease::new(
                    cfg.lease_name.clone(),
                    LeaseSpec {
                        holder_identity: cfg.identity.clone(),
                        lease_duration_seconds: secs,
                        acquire_time: Some(now),
                        renew_time: Some(now),
                        lease_transitions: 0,
                    },
                );
                return match self.client.create(&lease).await {
                    Ok(created) => {
                        self.observed = Some((created.metadata.resource_version, Instant::now()));
                        Ok(true)
                    }
                    Err(e) if e.is_already_exists() => Ok(false),
                    Err(e) => Err(api(e)),
                };
            }
            Err(e) => return Err(api(e)),
        };
        let rv = current.metadata.resource_version.clone();
        let first_seen = match &self.observed {
            Some((seen, at)) if *seen == rv => *at,
            _ => {
                let at = Instant::now();
                self.observed = Some((rv.clone(), at));
                at
            }
        };
        let holder = current.spec.holder_identity.as_str();
        let duration = match current.spec.lease_duration_seconds {
            0 => cfg.lease_duration,
            s => Duration::from_secs(u64::from(s)),
        };
        let mine = holder == cfg.identity;
        if !mine && !holder.is_empty() && first_seen.elapsed() < duration {
            return Ok(false);
        }
        let mut next = current.clone();
        if !mine {
            next.spec.lease_transitions = next.spec.lease_transitions.saturating_add(1);
            next.spec.acquire_time = Some(now);
        }
        next.spec.holder_identity = cfg.identity.clone();
        next.spec.renew_time = Some(now);
        next.spec.lease_duration_seconds = secs;
        match self.client.replace(&next).await {
            Ok(written) => {
                self.observed = Some((written.metadata.resource_version, Instant::now()));
                Ok(true)
            }
            Err(e) if e.is_conflict() || e.is_not_found() => Ok(false),
            Err(e) => Err(api(e)),
        }
    }

    /// Clears the holder if it is still us, so a successor need not wait.
    async fn release(&mut self) {
        let Ok(mut lease) = self.client.get::<Lease>(&self.config.lease_name).await else {
            return;
        };
        if lease.spec.holder_identity != self.config.identity {
            return;
        }
        lease.spec.holder_identity.clear();
        lease.spec.renew_time = Some(Timestamp::now());
        match self.client.replace(&lease).await {
            Ok(_) => tracing::info!(lease = %self.config.lease_name, "released the lease"),
            Err(e) => tracing::warn!(error = %e, "could not release the lease"),
        }
    }
}
