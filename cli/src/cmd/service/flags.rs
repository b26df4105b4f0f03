//! The `service create` / `service update` flags that set one spec field each — update and
//! rollback policy, restart policy, resources, container basics — and how they apply.

use swarm_api::{Duration, ServiceSpec, UpdateConfig};

use super::parse;

/// Flags `create` and `update` share; each one given overrides its spec field.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct SpecFlags {
    /// Tasks updated at once (0 updates all at once).
    #[arg(long, value_name = "N", help_heading = "Update")]
    pub update_parallelism: Option<u64>,
    /// Wait between updating batches (e.g. 10s).
    #[arg(long, value_name = "DURATION", value_parser = parse::duration, help_heading = "Update")]
    pub update_delay: Option<Duration>,
    /// What to do when an update fails: pause, continue or rollback.
    #[arg(long, value_name = "ACTION", value_parser = ["pause", "continue", "rollback"], help_heading = "Update")]
    pub update_failure_action: Option<String>,
    /// How long to watch each new task for failure.
    #[arg(long, value_name = "DURATION", value_parser = parse::duration, help_heading = "Update")]
    pub update_monitor: Option<Duration>,
    /// Fraction of failed tasks tolerated during an update (0 to 1).
    #[arg(long, value_name = "RATIO", help_heading = "Update")]
    pub update_max_failure_ratio: Option<f64>,
    /// stop-first (default) or start-first.
    #[arg(long, value_name = "ORDER", value_parser = ["stop-first", "start-first"], help_heading = "Update")]
    pub update_order: Option<String>,

    /// Tasks rolled back at once (0 rolls back all at once).
    #[arg(long, value_name = "N", help_heading = "Rollback")]
    pub rollback_parallelism: Option<u64>,
    /// Wait between rolling back batches.
    #[arg(long, value_name = "DURATION", value_parser = parse::duration, help_heading = "Rollback")]
    pub rollback_delay: Option<Duration>,
    /// What to do when a rollback fails: pause or continue.
    #[arg(long, value_name = "ACTION", value_parser = ["pause", "continue"], help_heading = "Rollback")]
    pub rollback_failure_action: Option<String>,
    /// How long to watch each rolled-back task for failure.
    #[arg(long, value_name = "DURATION", value_parser = parse::duration, help_heading = "Rollback")]
    pub rollback_monitor: Option<Duration>,
    /// Fraction of failed tasks tolerated during a rollback.
    #[arg(long, value_name = "RATIO", help_heading = "Rollback")]
    pub rollback_max_failure_ratio: Option<f64>,
    /// stop-first (default) or start-first.
    #[arg(long, value_name = "ORDER", value_parser = ["stop-first", "start-first"], help_heading = "Rollback")]
    pub rollback_order: Option<String>,

    /// When to restart a finished task: none, on-failure or any.
    #[arg(long, value_name = "CONDITION", value_parser = ["none", "on-failure", "any"], help_heading = "Restart")]
    pub restart_condition: Option<String>,
    /// Wait between restart attempts.
    #[arg(long, value_name = "DURATION", value_parser = parse::duration, help_heading = "Restart")]
    pub restart_delay: Option<Duration>,
    /// Most restarts before giving up (0: unlimited).
    #[arg(long, value_name = "N", help_heading = "Restart")]
    pub restart_max_attempts: Option<u64>,
    /// The window restart attempts are counted in.
    #[arg(long, value_name = "DURATION", value_parser = parse::duration, help_heading = "Restart")]
    pub restart_window: Option<Duration>,

    /// CPU limit per task (e.g. 0.5).
    #[arg(long, value_name = "CPUS", value_parser = parse::cpus, help_heading = "Resources")]
    pub limit_cpu: Option<i64>,
    /// Memory limit per task (e.g. 512M).
    #[arg(long, value_name = "BYTES", value_parser = parse::bytes, help_heading = "Resources")]
    pub limit_memory: Option<i64>,
    /// Most processes per task (0: unlimited).
    #[arg(long, value_name = "N", help_heading = "Resources")]
    pub limit_pids: Option<i64>,
    /// CPUs reserved for each task on its node.
    #[arg(long, value_name = "CPUS", value_parser = parse::cpus, help_heading = "Resources")]
    pub reserve_cpu: Option<i64>,
    /// Memory reserved for each task on its node.
    #[arg(long, value_name = "BYTES", value_parser = parse::bytes, help_heading = "Resources")]
    pub reserve_memory: Option<i64>,
    /// Most tasks of this service per node (0: unlimited).
    #[arg(long, value_name = "N", help_heading = "Placement")]
    pub replicas_max_per_node: Option<u64>,

    /// Working directory inside the container.
    #[arg(short = 'w', long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// User[:group] the container runs as.
    #[arg(short = 'u', long, value_name = "USER")]
    pub user: Option<String>,
    /// Container hostname.
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,
    /// Time to wait after the stop signal before killing the container.
    #[arg(long, value_name = "DURATION", value_parser = parse::duration)]
    pub stop_grace_period: Option<Duration>,
    /// Signal that stops the container (e.g. SIGINT).
    #[arg(long, value_name = "SIGNAL")]
    pub stop_signal: Option<String>,
    /// vip (one virtual IP, default) or dnsrr (DNS round robin).
    #[arg(long, value_name = "MODE", value_parser = ["vip", "dnsrr"])]
    pub endpoint_mode: Option<String>,
}

impl SpecFlags {
    /// Sets every field whose flag was given.
    pub fn apply(&self, spec: &mut ServiceSpec) -> anyhow::Result<()> {
        policy(
            &mut spec.update_config,
            [
                self.update_parallelism.map(Policy::Parallelism),
                self.update_delay.map(Policy::Delay),
                self.update_failure_action
                    .clone()
                    .map(Policy::FailureAction),
                self.update_monitor.map(Policy::Monitor),
                self.update_max_failure_ratio.map(Policy::MaxFailureRatio),
                self.update_order.clone().map(Policy::Order),
            ],
        )?;
        policy(
            &mut spec.rollback_config,
            [
                self.rollback_parallelism.map(Policy::Parallelism),
                self.rollback_delay.map(Policy::Delay),
                self.rollback_failure_action
                    .clone()
                    .map(Policy::FailureAction),
                self.rollback_monitor.map(Policy::Monitor),
                self.rollback_max_failure_ratio.map(Policy::MaxFailureRatio),
                self.rollback_order.clone().map(Policy::Order),
            ],
        )?;
        let t = &mut spec.task_template;
        let r = &mut t.restart_policy;
        if let Some(c) = &self.restart_condition {
            r.condition = parse::wire_enum(c)?;
        }
        set(&mut r.delay, self.restart_delay);
        set(&mut r.max_attempts, self.restart_max_attempts);
        set(&mut r.window, self.restart_window);
        set(&mut t.resources.limits.nano_cpus, self.limit_cpu);
        set(&mut t.resources.limits.memory_bytes, self.limit_memory);
        set(&mut t.resources.limits.pids, self.limit_pids);
        set(&mut t.resources.reservations.nano_cpus, self.reserve_cpu);
        set(
            &mut t.resources.reservations.memory_bytes,
            self.reserve_memory,
        );
        set(
            &mut t.placement.max_replicas_per_node,
            self.replicas_max_per_node,
        );
        let c = &mut t.container;
        set(&mut c.working_dir, self.workdir.clone());
        set(&mut c.user, self.user.clone());
        set(&mut c.hostname, self.hostname.clone());
        set(&mut c.stop_grace_period, self.stop_grace_period);
        if let Some(s) = &self.stop_signal {
            c.stop_signal = Some(s.clone());
        }
        if let Some(m) = &self.endpoint_mode {
            spec.endpoint.mode = parse::wire_enum(m)?;
        }
        Ok(())
    }
}

fn set<T>(field: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *field = v;
    }
}

enum Policy {
    Parallelism(u64),
    Delay(Duration),
    FailureAction(String),
    Monitor(Duration),
    MaxFailureRatio(f64),
    Order(String),
}

fn policy<const N: usize>(
    cfg: &mut UpdateConfig,
    flags: [Option<Policy>; N],
) -> anyhow::Result<()> {
    for flag in flags.into_iter().flatten() {
        match flag {
            Policy::Parallelism(n) => cfg.parallelism = n,
            Policy::Delay(d) => cfg.delay = d,
            Policy::FailureAction(a) => cfg.failure_action = parse::wire_enum(&a)?,
            Policy::Monitor(d) => cfg.monitor = d,
            Policy::MaxFailureRatio(r) => {
                if !(0.0..=1.0).contains(&r) {
                    anyhow::bail!("a max failure ratio is between 0 and 1, not {r}");
                }
                cfg.max_failure_ratio = r
            }
            Policy::Order(o) => cfg.order = parse::wire_enum(&o)?,
        }
    }
    Ok(())
}
