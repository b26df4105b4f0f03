//! `swarm service update [OPTIONS] SERVICE`: changes a service with docker's flags (`--image`,
//! `--env-add`, `--publish-rm`, `--force`, `--rollback`, …), prints its name and, unless
//! `--detach`, waits for the change to roll out.

use std::process::ExitCode;

use swarm_api::{NetworkAttachmentConfig, Service, ServiceMode, stack::shell_split};

use super::container::UpdateLists;
use super::flags::SpecFlags;
use super::{parse, rollback};
use crate::connect::{ConnectArgs, block_on};
use crate::converge::{self, Goal, WaitArgs};
use crate::lookup;
use crate::output;

#[derive(clap::Args, Debug, Default)]
#[command(after_help = "Examples:
  swarm service update --image nginx:1.28 web
  swarm service update --env-add LOG=debug --publish-add 8443:443 web
  swarm service update --force web          # redeploy every task
  swarm service update --rollback web       # back to the previous revision")]
pub struct UpdateArgs {
    /// The service (name or ID).
    pub service: String,
    /// A new image.
    #[arg(long)]
    pub image: Option<String>,
    /// A new number of tasks (replicated services).
    #[arg(long, value_name = "N")]
    pub replicas: Option<u64>,
    /// New command arguments (shell words).
    #[arg(long, value_name = "ARGS")]
    pub args: Option<String>,
    /// A new entrypoint (shell words; "" goes back to the image's).
    #[arg(long, value_name = "CMD")]
    pub entrypoint: Option<String>,
    /// Add or change an environment variable, KEY=VALUE.
    #[arg(long, value_name = "KEY=VALUE")]
    pub env_add: Vec<String>,
    /// Remove an environment variable.
    #[arg(long, value_name = "KEY")]
    pub env_rm: Vec<String>,
    /// Publish a port ([PUBLISHED:]TARGET[/PROTOCOL]).
    #[arg(long, value_name = "PORT")]
    pub publish_add: Vec<String>,
    /// Stop publishing a target port (TARGET[/PROTOCOL] or PUBLISHED:TARGET).
    #[arg(long, value_name = "PORT")]
    pub publish_rm: Vec<String>,
    /// Add a placement constraint.
    #[arg(long, value_name = "EXPR")]
    pub constraint_add: Vec<String>,
    /// Remove a placement constraint (exactly as written).
    #[arg(long, value_name = "EXPR")]
    pub constraint_rm: Vec<String>,
    /// Add a placement preference, spread=node.labels.KEY.
    #[arg(long, value_name = "PREF")]
    pub placement_pref_add: Vec<String>,
    /// Remove a placement preference (spread=node.labels.KEY).
    #[arg(long, value_name = "PREF")]
    pub placement_pref_rm: Vec<String>,
    /// Add or change a service label.
    #[arg(long, value_name = "KEY=VALUE")]
    pub label_add: Vec<String>,
    /// Remove a service label.
    #[arg(long, value_name = "KEY")]
    pub label_rm: Vec<String>,
    /// Add or change a container label.
    #[arg(long, value_name = "KEY=VALUE")]
    pub container_label_add: Vec<String>,
    /// Remove a container label.
    #[arg(long, value_name = "KEY")]
    pub container_label_rm: Vec<String>,
    /// Attach the tasks to a network.
    #[arg(long, value_name = "NETWORK")]
    pub network_add: Vec<String>,
    /// Detach the tasks from a network.
    #[arg(long, value_name = "NETWORK")]
    pub network_rm: Vec<String>,
    /// Give the tasks a secret (NAME or source=NAME,target=FILE).
    #[arg(long, value_name = "SECRET")]
    pub secret_add: Vec<String>,
    /// Take a secret away (by name).
    #[arg(long, value_name = "NAME")]
    pub secret_rm: Vec<String>,
    /// Give the tasks a config (NAME or source=NAME,target=/PATH).
    #[arg(long, value_name = "CONFIG")]
    pub config_add: Vec<String>,
    /// Take a config away (by name).
    #[arg(long, value_name = "NAME")]
    pub config_rm: Vec<String>,
    /// Redeploy every task even if nothing changed.
    #[arg(long)]
    pub force: bool,
    /// Roll back to the previous revision (alone; no other change).
    #[arg(long)]
    pub rollback: bool,
    #[command(flatten)]
    pub spec: SpecFlags,
    #[command(flatten)]
    pub lists: UpdateLists,
    #[command(flatten)]
    pub wait: WaitArgs,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// Applies the flags to `svc` (`lookup` reads this shell's environment).
pub fn apply(
    svc: &mut Service,
    a: &UpdateArgs,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<()> {
    let spec = &mut svc.spec;
    if let Some(n) = a.replicas {
        match &mut spec.mode {
            ServiceMode::Replicated { replicas } => *replicas = n,
            ServiceMode::ReplicatedJob {
                total_completions, ..
            } => *total_completions = n,
            _ => anyhow::bail!(
                "--replicas can only be used with replicated or replicated-job mode; {} is {}",
                svc.metadata.name,
                spec.mode.display_name()
            ),
        }
    }
    let t = &mut spec.task_template;
    let c = &mut t.container;
    if let Some(image) = &a.image {
        c.image = image.clone();
    }
    if let Some(args) = &a.args {
        c.args = shell_split(args).map_err(|e| anyhow::anyhow!("invalid --args: {e}"))?;
    }
    if let Some(e) = &a.entrypoint {
        c.command = shell_split(e).map_err(|e| anyhow::anyhow!("invalid --entrypoint: {e}"))?;
    }
    for k in &a.env_rm {
        c.env.remove(k);
    }
    for e in &a.env_add {
        let (k, v) = parse::env_entry(e, lookup)?;
        c.env.insert(k, v);
    }
    for k in &a.container_label_rm {
        c.labels.remove(k);
    }
    c.labels.extend(parse::labels(&a.container_label_add));
    c.secrets.retain(|s| !a.secret_rm.contains(&s.source));
    for s in &a.secret_add {
        let r = parse::file_reference(s, false)?;
        c.secrets.retain(|x| x.source != r.source);
        c.secrets.push(r);
    }
    c.configs.retain(|s| !a.config_rm.contains(&s.source));
    for s in &a.config_add {
        let r = parse::file_reference(s, true)?;
        c.configs.retain(|x| x.source != r.source);
        c.configs.push(r);
    }
    let constraints = &mut t.placement.constraints;
    constraints.retain(|x| !a.constraint_rm.contains(x));
    for x in &a.constraint_add {
        if !constraints.contains(x) {
            constraints.push(x.clone());
        }
    }
    let prefs = &mut t.placement.preferences;
    for p in &a.placement_pref_rm {
        let rm = parse::placement_pref(p)?;
        prefs.retain(|x| *x != rm);
    }
    for p in &a.placement_pref_add {
        let add = parse::placement_pref(p)?;
        if !prefs.contains(&add) {
            prefs.push(add);
        }
    }
    t.networks.retain(|n| !a.network_rm.contains(&n.target));
    for n in &a.network_add {
        if !t.networks.iter().any(|x| &x.target == n) {
            t.networks.push(NetworkAttachmentConfig {
                target: n.clone(),
                ..Default::default()
            });
        }
    }
    if a.force {
        t.force_update += 1;
    }
    let ports = &mut spec.endpoint.ports;
    for p in &a.publish_rm {
        let rm = parse::port(p)?;
        ports.retain(|x| !(x.target_port == rm.target_port && x.protocol == rm.protocol));
    }
    for p in &a.publish_add {
        let add = parse::port(p)?;
        ports.retain(|x| {
            !(x.protocol == add.protocol
                && (x.target_port == add.target_port
                    || (add.published_port.is_some() && x.published_port == add.published_port)))
        });
        ports.push(add);
    }
    a.spec.apply(spec)?;
    a.lists.apply(&mut spec.task_template.container)?;
    let labels = &mut svc.metadata.labels;
    for k in &a.label_rm {
        labels.remove(k);
    }
    labels.extend(parse::labels(&a.label_add));
    Ok(())
}

pub fn run(a: UpdateArgs) -> anyhow::Result<ExitCode> {
    let client = a.connect.client()?;
    block_on(async {
        let before = lookup::find::<Service>(&client, &a.service).await?;
        let baseline = before.status.update_status.clone();
        let goal = if a.rollback {
            Goal::Rollback
        } else {
            Goal::Update
        };
        let updated = lookup::update::<Service>(&client, &a.service, |svc| {
            let original = svc.clone();
            apply(svc, &a, &|k| std::env::var(k).ok())?;
            if a.rollback {
                if svc.spec != original.spec || svc.metadata.labels != original.metadata.labels {
                    anyhow::bail!("--rollback cannot be combined with other changes");
                }
                rollback::request(svc, None)?;
            }
            Ok(())
        })
        .await?;
        output::emit(&format!("{}\n", updated.metadata.name))?;
        if a.rollback && !a.wait.quiet && !a.wait.detach {
            output::emit("rollback: manually requested rollback\n")?;
        }
        let generation = updated.metadata.generation;
        let name = &updated.metadata.name;
        converge::wait_service(&client, name, goal, baseline, generation, &a.wait).await
    })?
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use serde_json::json;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: UpdateArgs,
    }

    fn service() -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "labels": {"a": "1", "b": "2"}},
            "spec": {
                "mode": {"replicated": {"replicas": 2}},
                "taskTemplate": {
                    "container": {"image": "nginx:1.26", "env": {"A": "1", "B": "2"}},
                    "placement": {"constraints": ["node.role==worker"]},
                    "networks": [{"target": "front"}]
                },
                "endpoint": {"ports": [{"targetPort": 80, "publishedPort": 8080},
                                       {"targetPort": 53, "protocol": "udp"}]}
            }
        }))
        .unwrap()
    }

    fn updated(argv: &[&str]) -> anyhow::Result<Service> {
        let cli = Cli::try_parse_from(std::iter::once("update").chain(argv.iter().copied()))?;
        let mut s = service();
        apply(&mut s, &cli.args, &|_| None)?;
        Ok(s)
    }

    #[test]
    fn add_and_rm_flags() {
        let s = updated(&[
            "--image",
            "nginx:1.27",
            "--replicas",
            "5",
            "--env-add",
            "C=3",
            "--env-rm",
            "A",
            "--publish-rm",
            "53/udp",
            "--publish-add",
            "9090:80",
            "--constraint-rm",
            "node.role==worker",
            "--constraint-add",
            "node.labels.zone==a",
            "--label-add",
            "c=3",
            "--label-rm",
            "a",
            "--network-add",
            "back",
            "--network-rm",
            "front",
            "--force",
            "--update-parallelism",
            "3",
            "--limit-memory",
            "1G",
            "web",
        ])
        .unwrap();
        let c = &s.spec.task_template.container;
        assert_eq!(c.image, "nginx:1.27");
        assert_eq!(s.spec.replicas(), Some(5));
        assert_eq!(c.env.keys().collect::<Vec<_>>(), vec!["B", "C"]);
        let ports: Vec<(u16, Option<u16>)> = s
            .spec
            .endpoint
            .ports
            .iter()
            .map(|p| (p.target_port, p.published_port))
            .collect();
        assert_eq!(ports, vec![(80, Some(9090))]);
        assert_eq!(
            s.spec.task_template.placement.constraints,
            vec!["node.labels.zone==a"]
        );
        assert_eq!(s.metadata.labels.keys().collect::<Vec<_>>(), vec!["b", "c"]);
        assert_eq!(s.spec.task_template.networks[0].target, "back");
        assert_eq!(s.spec.task_template.networks.len(), 1);
        assert_eq!(s.spec.task_template.force_update, 1);
        assert_eq!(s.spec.update_config.parallelism, 3);
        assert_eq!(s.spec.task_template.resources.limits.memory_bytes, 1 << 30);
    }

    #[test]
    fn container_list_and_scalar_flags() {
        let s = updated(&[
            "--mount-add",
            "type=volume,source=cache,target=/cache",
            "--host-add",
            "db:10.0.0.5",
            "--dns-add",
            "1.1.1.1",
            "--cap-add",
            "NET_ADMIN",
            "--health-cmd",
            "true",
            "--read-only",
            "--tty=false",
            "--entrypoint",
            "/bin/sh -c",
            "--placement-pref-add",
            "spread=node.labels.zone",
            "web",
        ])
        .unwrap();
        assert_eq!(s.spec.task_template.container.command, ["/bin/sh", "-c"]);
        assert_eq!(
            s.spec.task_template.placement.preferences[0].spread,
            "node.labels.zone"
        );
        let c = &s.spec.task_template.container;
        assert_eq!(c.mounts[0].source, "cache");
        assert_eq!(c.hosts, ["db:10.0.0.5"]);
        assert_eq!(c.dns_config.nameservers, ["1.1.1.1"]);
        assert_eq!(c.cap_add, ["NET_ADMIN"]);
        assert_eq!(c.healthcheck.as_ref().unwrap().test, ["CMD-SHELL", "true"]);
        assert!(c.read_only && !c.tty);
        let again = Cli::try_parse_from([
            "update",
            "--mount-rm",
            "/cache",
            "--host-rm",
            "db",
            "--dns-rm",
            "1.1.1.1",
            "--cap-drop",
            "NET_ADMIN",
            "--read-only=false",
            "--placement-pref-rm",
            "spread=node.labels.zone",
            "web",
        ])
        .unwrap();
        let mut back = s.clone();
        apply(&mut back, &again.args, &|_| None).unwrap();
        let c = &back.spec.task_template.container;
        assert!(c.mounts.is_empty() && c.hosts.is_empty() && c.dns_config.is_empty());
        assert!(c.cap_add.is_empty() && !c.read_only);
        assert!(back.spec.task_template.placement.preferences.is_empty());
        assert_eq!(c.cap_drop, ["NET_ADMIN"]);
    }

    #[test]
    fn nothing_given_changes_nothing() {
        assert_eq!(updated(&["web"]).unwrap(), service());
    }

    #[test]
    fn replicas_of_a_global_service_are_refused() {
        let cli = Cli::try_parse_from(["update", "--replicas", "2", "agent"]).unwrap();
        let mut s = service();
        s.spec.mode = ServiceMode::Global {};
        let err = apply(&mut s, &cli.args, &|_| None).unwrap_err();
        assert!(err.to_string().contains("global"), "{err}");
    }
}
