//! The `service create` / `service update` flags that set one spec field each — update and
//! rollback policy, restart policy, resources, container basics, healthcheck, logging — and
//! how they apply.

use swarm_api::{Driver, Duration, Healthcheck, ServiceSpec, UpdateConfig};

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
    /// Mount the container's root filesystem read-only (--read-only=false undoes it).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub read_only: Option<bool>,
    /// Run an init inside the container that reaps processes (--init=false undoes it).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub init: Option<bool>,
    /// Allocate a pseudo-TTY (--tty=false undoes it).
    #[arg(short = 't', long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub tty: Option<bool>,
    /// Container isolation technology (default, process, hyperv).
    #[arg(long, value_name = "ISOLATION")]
    pub isolation: Option<String>,

    /// Command run to check health (shell form, e.g. 'curl -f http://localhost/').
    #[arg(long, value_name = "CMD", help_heading = "Healthcheck")]
    pub health_cmd: Option<String>,
    /// Time between health checks.
    #[arg(long, value_name = "DURATION", value_parser = parse::duration, help_heading = "Healthcheck")]
    pub health_interval: Option<Duration>,
    /// Longest a health check may run.
    #[arg(long, value_name = "DURATION", value_parser = parse::duration, help_heading = "Healthcheck")]
    pub health_timeout: Option<Duration>,
    /// Consecutive failures that make the container unhealthy.
    #[arg(long, value_name = "N", help_heading = "Healthcheck")]
    pub health_retries: Option<u64>,
    /// Time to start before failures count.
    #[arg(long, value_name = "DURATION", value_parser = parse::duration, help_heading = "Healthcheck")]
    pub health_start_period: Option<Duration>,
    /// Time between checks during the start period.
    #[arg(long, value_name = "DURATION", value_parser = parse::duration, help_heading = "Healthcheck")]
    pub health_start_interval: Option<Duration>,
    /// Disable the image's HEALTHCHECK.
    #[arg(long, help_heading = "Healthcheck", conflicts_with = "health_cmd")]
    pub no_healthcheck: bool,

    /// Logging driver for the tasks (e.g. json-file).
    #[arg(long, value_name = "DRIVER", help_heading = "Logging")]
    pub log_driver: Option<String>,
    /// Logging driver option, KEY=VALUE (replaces the options; needs --log-driver or a
    /// driver already set).
    #[arg(long, value_name = "KEY=VALUE", help_heading = "Logging")]
    pub log_opt: Vec<String>,
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
        let c = &mut spec.task_template.container;
        set(&mut c.read_only, self.read_only);
        if self.init.is_some() {
            c.init = self.init;
        }
        set(&mut c.tty, self.tty);
        if let Some(i) = &self.isolation {
            c.isolation = Some(i.clone());
        }
        self.healthcheck(&mut c.healthcheck);
        self.logging(&mut spec.task_template.log_driver)
    }

    /// The health flags given, over the healthcheck there is.
    fn healthcheck(&self, hc: &mut Option<Healthcheck>) {
        if self.no_healthcheck {
            *hc = Some(Healthcheck {
                test: vec!["NONE".into()],
                ..Healthcheck::default()
            });
            return;
        }
        let given = self.health_cmd.is_some()
            || self.health_interval.is_some()
            || self.health_timeout.is_some()
            || self.health_retries.is_some()
            || self.health_start_period.is_some()
            || self.health_start_interval.is_some();
        if !given {
            return;
        }
        let h = hc.get_or_insert_with(Healthcheck::default);
        if let Some(cmd) = &self.health_cmd {
            h.test = vec!["CMD-SHELL".into(), cmd.clone()];
        }
        if h.test.first().is_some_and(|t| t == "NONE") {
            h.test.clear();
        }
        for (field, value) in [
            (&mut h.interval, self.health_interval),
            (&mut h.timeout, self.health_timeout),
            (&mut h.start_period, self.health_start_period),
            (&mut h.start_interval, self.health_start_interval),
        ] {
            if value.is_some() {
                *field = value;
            }
        }
        if self.health_retries.is_some() {
            h.retries = self.health_retries;
        }
    }

    /// `--log-driver` and `--log-opt` over the log driver there is.
    fn logging(&self, driver: &mut Option<Driver>) -> anyhow::Result<()> {
        if let Some(name) = &self.log_driver {
            let d = driver.get_or_insert_with(Driver::default);
            if d.name != *name {
                d.options.clear();
            }
            d.name = name.clone();
        }
        if !self.log_opt.is_empty() {
            let Some(d) = driver.as_mut() else {
                anyhow::bail!("--log-opt needs a logging driver: add --log-driver, e.g. json-file");
            };
            d.options = parse::labels(&self.log_opt);
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
