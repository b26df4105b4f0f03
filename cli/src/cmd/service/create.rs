//! `swarm service create [OPTIONS] IMAGE [ARG...]`: a new service from flags, as docker's;
//! prints its ID and, unless `--detach`, waits for it to converge.

use std::process::ExitCode;

use anyhow::Context as _;
use swarm_api::{NetworkAttachmentConfig, Service, ServiceMode, ServiceSpec, stack::shell_split};

use super::container::CreateLists;
use super::flags::SpecFlags;
use super::parse;
use crate::connect::{ConnectArgs, block_on};
use crate::converge::{self, Goal, WaitArgs};
use crate::output::{self, humanize::full_id};

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  swarm service create --name web --replicas 3 -p 8080:80 nginx:1.27
  swarm service create --name agent --mode global --constraint node.role==worker alpine sleep 1d
  swarm service create -d --name api -e LOG=debug --limit-memory 256M --network back app:2")]
pub struct CreateArgs {
    /// The image every task runs.
    pub image: String,
    /// The command and arguments (replace the image's CMD).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
    /// Service name [default: the image's name and a random suffix].
    #[arg(long)]
    pub name: Option<String>,
    /// replicated, global, replicated-job or global-job.
    #[arg(long, default_value = "replicated", value_parser = ["replicated", "global", "replicated-job", "global-job"])]
    pub mode: String,
    /// Number of tasks (replicated), or completions (replicated-job).
    #[arg(long, value_name = "N")]
    pub replicas: Option<u64>,
    /// Replicated jobs: most tasks running at once.
    #[arg(long, value_name = "N")]
    pub max_concurrent: Option<u64>,
    /// Environment variable, KEY=VALUE (KEY alone passes this shell's value).
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Read environment variables from a file (KEY=VALUE lines; # comments).
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_files: Vec<String>,
    /// Publish a port: [PUBLISHED:]TARGET[/PROTOCOL] or published=P,target=T[,mode=host].
    #[arg(short = 'p', long = "publish", value_name = "PORT")]
    pub publish: Vec<String>,
    /// Placement constraint, e.g. node.role==worker or node.labels.zone!=east.
    #[arg(long = "constraint", value_name = "EXPR")]
    pub constraints: Vec<String>,
    /// Spread tasks over the values of a node label, e.g. spread=node.labels.zone.
    #[arg(long = "placement-pref", value_name = "PREF")]
    pub placement_prefs: Vec<String>,
    /// Service label, KEY=VALUE.
    #[arg(short = 'l', long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Container label, KEY=VALUE.
    #[arg(long = "container-label", value_name = "KEY=VALUE")]
    pub container_labels: Vec<String>,
    /// Network to attach the tasks to.
    #[arg(long = "network", value_name = "NETWORK")]
    pub networks: Vec<String>,
    /// Secret to give the tasks: NAME or source=NAME,target=FILE.
    #[arg(long = "secret", value_name = "SECRET")]
    pub secrets: Vec<String>,
    /// Config to give the tasks: NAME or source=NAME,target=/PATH (docker's --config; that
    /// name is taken here by the credentials file).
    #[arg(long = "config-add", value_name = "CONFIG")]
    pub configs: Vec<String>,
    /// Replace the image's entrypoint (shell words).
    #[arg(long, value_name = "CMD")]
    pub entrypoint: Option<String>,
    #[command(flatten)]
    pub spec: SpecFlags,
    #[command(flatten)]
    pub lists: CreateLists,
    #[command(flatten)]
    pub wait: WaitArgs,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// The service the flags describe (`lookup` reads this shell's environment).
pub fn build(
    args: &CreateArgs,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<Service> {
    let mode = match args.mode.as_str() {
        "global" => {
            if args.replicas.is_some() {
                anyhow::bail!("--replicas can only be used with replicated or replicated-job mode");
            }
            ServiceMode::Global {}
        }
        "global-job" => ServiceMode::GlobalJob {},
        "replicated-job" => ServiceMode::ReplicatedJob {
            max_concurrent: args.max_concurrent.unwrap_or(1),
            total_completions: args.replicas.unwrap_or(1),
        },
        _ => ServiceMode::Replicated {
            replicas: args.replicas.unwrap_or(1),
        },
    };
    let mut spec = ServiceSpec {
        mode,
        ..Default::default()
    };
    let t = &mut spec.task_template;
    let c = &mut t.container;
    c.image = args.image.clone();
    c.args = args.args.clone();
    if let Some(e) = &args.entrypoint {
        c.command = shell_split(e).map_err(|e| anyhow::anyhow!("invalid --entrypoint: {e}"))?;
    }
    // As docker: the files first, then --env over them.
    for f in &args.env_files {
        c.env.extend(parse::env_file(f, lookup)?);
    }
    for e in &args.env {
        let (k, v) = parse::env_entry(e, lookup)?;
        c.env.insert(k, v);
    }
    c.labels = parse::labels(&args.container_labels);
    for s in &args.secrets {
        c.secrets.push(parse::file_reference(s, false)?);
    }
    for s in &args.configs {
        c.configs.push(parse::file_reference(s, true)?);
    }
    t.placement.constraints = args.constraints.clone();
    for p in &args.placement_prefs {
        t.placement.preferences.push(parse::placement_pref(p)?);
    }
    t.networks = args
        .networks
        .iter()
        .map(|n| NetworkAttachmentConfig {
            target: n.clone(),
            ..Default::default()
        })
        .collect();
    for p in &args.publish {
        spec.endpoint.ports.push(parse::port(p)?);
    }
    args.spec.apply(&mut spec)?;
    args.lists.apply(&mut spec.task_template.container)?;
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| generated_name(&args.image));
    let mut service = Service::new(name, spec);
    service.metadata.labels = parse::labels(&args.labels);
    Ok(service)
}

/// `nginx:1.27` → `nginx_3fa2`: the image's name and four hex digits.
fn generated_name(image: &str) -> String {
    let base = image
        .rsplit('/')
        .next()
        .unwrap_or(image)
        .split([':', '@'])
        .next()
        .unwrap_or("service");
    let base: String = base
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{base}_{:04x}", (nanos ^ std::process::id()) & 0xffff)
}

pub fn run(args: CreateArgs) -> anyhow::Result<ExitCode> {
    let service = build(&args, &|k| std::env::var(k).ok())?;
    let client = args.connect.client()?;
    block_on(async {
        let created = client
            .create(&service)
            .await
            .with_context(|| format!("cannot create service {}", service.metadata.name))?;
        output::emit(&format!("{}\n", full_id(&created.metadata.uid)))?;
        converge::wait_service(
            &client,
            &created.metadata.name,
            Goal::Create,
            None,
            created.metadata.generation,
            &args.wait,
        )
        .await
    })?
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use swarm_api::{PublishMode, RestartCondition, UpdateOrder};

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: CreateArgs,
    }

    fn build_from(argv: &[&str]) -> anyhow::Result<Service> {
        let cli = Cli::try_parse_from(std::iter::once("create").chain(argv.iter().copied()))?;
        build(&cli.args, &|k| (k == "TOKEN").then(|| "s3cret".to_string()))
    }

    #[test]
    fn flags_map_onto_the_spec() {
        let s = build_from(&[
            "--name",
            "web",
            "--replicas",
            "3",
            "-e",
            "A=1",
            "-e",
            "TOKEN",
            "-p",
            "8080:80",
            "-p",
            "published=9000,target=90,mode=host",
            "--constraint",
            "node.role==worker",
            "-l",
            "tier=front",
            "--container-label",
            "c=1",
            "--network",
            "front",
            "--update-parallelism",
            "2",
            "--update-delay",
            "10s",
            "--update-order",
            "start-first",
            "--update-failure-action",
            "rollback",
            "--rollback-parallelism",
            "0",
            "--restart-condition",
            "on-failure",
            "--restart-max-attempts",
            "3",
            "--limit-cpu",
            "0.5",
            "--limit-memory",
            "256M",
            "--reserve-memory",
            "64M",
            "--secret",
            "db_pass",
            "--workdir",
            "/app",
            "nginx:1.27",
            "nginx",
            "-g",
            "daemon off;",
        ])
        .unwrap();
        assert_eq!(s.metadata.name, "web");
        assert_eq!(s.metadata.labels["tier"], "front");
        let spec = &s.spec;
        assert_eq!(spec.replicas(), Some(3));
        let c = &spec.task_template.container;
        assert_eq!(c.image, "nginx:1.27");
        assert_eq!(c.args, vec!["nginx", "-g", "daemon off;"]);
        assert_eq!(c.env["A"], "1");
        assert_eq!(c.env["TOKEN"], "s3cret");
        assert_eq!(c.labels["c"], "1");
        assert_eq!(c.working_dir, "/app");
        assert_eq!(c.secrets[0].target, "db_pass");
        assert_eq!(spec.endpoint.ports.len(), 2);
        assert_eq!(spec.endpoint.ports[1].publish_mode, PublishMode::Host);
        assert_eq!(
            spec.task_template.placement.constraints,
            vec!["node.role==worker"]
        );
        assert_eq!(spec.task_template.networks[0].target, "front");
        assert_eq!(spec.update_config.parallelism, 2);
        assert_eq!(spec.update_config.delay, swarm_api::Duration::from_secs(10));
        assert_eq!(spec.update_config.order, UpdateOrder::StartFirst);
        assert_eq!(
            spec.update_config.failure_action,
            swarm_api::FailureAction::Rollback
        );
        assert_eq!(spec.rollback_config.parallelism, 0);
        let t = &spec.task_template;
        assert_eq!(t.restart_policy.condition, RestartCondition::OnFailure);
        assert_eq!(t.restart_policy.max_attempts, 3);
        assert_eq!(t.resources.limits.nano_cpus, 500_000_000);
        assert_eq!(t.resources.limits.memory_bytes, 256 << 20);
        assert_eq!(t.resources.reservations.memory_bytes, 64 << 20);
    }

    /// The container flags docker has beyond the basics: mounts, hosts, DNS, capabilities,
    /// healthcheck, logging, read-only root, init, TTY.
    #[test]
    fn container_flags_map_onto_the_spec() {
        let s = build_from(&[
            "--mount",
            "type=bind,source=/data,target=/data,readonly",
            "--host",
            "db:10.0.0.5",
            "--dns",
            "1.1.1.1",
            "--dns-search",
            "example.org",
            "--dns-option",
            "ndots:2",
            "--group",
            "audio",
            "--cap-add",
            "NET_ADMIN",
            "--cap-drop",
            "MKNOD",
            "--sysctl",
            "net.core.somaxconn=1024",
            "--ulimit",
            "nofile=1024:2048",
            "--health-cmd",
            "curl -f http://localhost/",
            "--health-interval",
            "5s",
            "--health-retries",
            "3",
            "--log-driver",
            "json-file",
            "--log-opt",
            "max-size=10m",
            "--read-only",
            "--init",
            "-t",
            "nginx",
        ])
        .unwrap();
        let t = &s.spec.task_template;
        let c = &t.container;
        assert_eq!(
            c.image, "nginx",
            "optional-value flags do not eat the image"
        );
        assert_eq!(c.mounts[0].target, "/data");
        assert!(c.mounts[0].read_only);
        assert_eq!(c.hosts, ["db:10.0.0.5"]);
        assert_eq!(c.dns_config.nameservers, ["1.1.1.1"]);
        assert_eq!(c.dns_config.search, ["example.org"]);
        assert_eq!(c.dns_config.options, ["ndots:2"]);
        assert_eq!(c.groups, ["audio"]);
        assert_eq!(
            (c.cap_add.as_slice(), c.cap_drop.as_slice()),
            (&["NET_ADMIN".to_string()][..], &["MKNOD".to_string()][..])
        );
        assert_eq!(c.sysctls["net.core.somaxconn"], "1024");
        assert_eq!(c.ulimits[0].hard, 2048);
        let h = c.healthcheck.as_ref().unwrap();
        assert_eq!(h.test, ["CMD-SHELL", "curl -f http://localhost/"]);
        assert_eq!(h.interval, Some(swarm_api::Duration::from_secs(5)));
        assert_eq!(h.retries, Some(3));
        let log = t.log_driver.as_ref().unwrap();
        assert_eq!(log.name, "json-file");
        assert_eq!(log.options["max-size"], "10m");
        assert!(c.read_only && c.tty);
        assert_eq!(c.init, Some(true));

        let dir = tempfile::tempdir().unwrap();
        let env = dir.path().join("app.env");
        std::fs::write(&env, "A=0\nB=2\n").unwrap();
        let s = build_from(&["--env-file", env.to_str().unwrap(), "-e", "A=1", "nginx"]).unwrap();
        let e = &s.spec.task_template.container.env;
        assert_eq!(
            (e["A"].as_str(), e["B"].as_str()),
            ("1", "2"),
            "--env over the file"
        );

        let none = build_from(&["--no-healthcheck", "nginx"]).unwrap();
        let h = none.spec.task_template.container.healthcheck.unwrap();
        assert_eq!(h.test, ["NONE"]);
        let err = build_from(&["--log-opt", "max-size=1m", "nginx"]).unwrap_err();
        assert!(err.to_string().contains("--log-driver"), "{err}");
    }

    #[test]
    fn modes() {
        let s = build_from(&["--mode", "global", "alpine"]).unwrap();
        assert_eq!(s.spec.mode, ServiceMode::Global {});
        assert!(
            s.metadata.name.starts_with("alpine_"),
            "{}",
            s.metadata.name
        );
        let err = build_from(&["--mode", "global", "--replicas", "2", "alpine"]).unwrap_err();
        assert!(err.to_string().contains("replicated"), "{err}");
        let s = build_from(&[
            "--mode",
            "replicated-job",
            "--replicas",
            "5",
            "--max-concurrent",
            "2",
            "app",
        ])
        .unwrap();
        assert_eq!(
            s.spec.mode,
            ServiceMode::ReplicatedJob {
                max_concurrent: 2,
                total_completions: 5
            }
        );
        assert!(build_from(&["--mode", "bogus", "app"]).is_err());
        assert!(build_from(&["--update-max-failure-ratio", "2", "app"]).is_err());
    }
}
