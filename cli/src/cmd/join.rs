//! `swarm join --token TOKEN ADDR:PORT`: this machine joins a swarm and runs its agent; and
//! `swarm join-token [-q] [--rotate] worker|manager`: what to run on the machines that join.
//!
//! Joining trusts nothing at first: the manager's CA is fetched blind and kept only if its
//! digest is the one in the token; then a key is made here, and a CSR sent with the token
//! gets back a certificate naming this node and its role. The credentials are kept in the
//! data directory, so running `swarm join` again (or after a reboot) just starts the agent.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use swarm_client::join::{self, NodeCredentials};

use crate::connect::{ConnectArgs, block_on};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RuntimeArg {
    /// This machine's Docker engine.
    Docker,
    /// Simulated containers (hollow nodes, for scale tests).
    Sim,
}

#[derive(Args, Debug)]
pub struct JoinArgs {
    /// The join token (`swarm join-token worker` on a manager prints it).
    #[arg(long)]
    pub token: String,
    /// The manager's API address, `ADDR:PORT`.
    pub manager: String,
    /// Where the agent keeps its credentials and state [default: ~/.swarm/agent].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The name this node asks for (default: its hostname); the manager adds a suffix when
    /// another node has it.
    #[arg(long)]
    pub node_name: Option<String>,
    /// The address other nodes and the routing mesh reach this node on.
    #[arg(long)]
    pub advertise_addr: Option<std::net::IpAddr>,
    #[arg(long, value_enum, default_value = "docker")]
    pub runtime: RuntimeArg,
    /// With `--runtime sim`: how many simulated nodes.
    #[arg(long, default_value_t = 1)]
    pub sim_nodes: usize,
}

fn api_url(manager: &str) -> String {
    if manager.contains("://") {
        manager.trim_end_matches('/').to_string()
    } else {
        format!("https://{manager}")
    }
}

pub fn run(args: JoinArgs) -> anyhow::Result<ExitCode> {
    let data_dir = args
        .data_dir
        .clone()
        .or_else(|| {
            swarm_client::ClientConfig::default_path()
                .and_then(|p| p.parent().map(|d| d.join("agent")))
        })
        .context("cannot tell where the agent's data goes: pass --data-dir")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(join_and_run(args, data_dir))
}

async fn join_and_run(args: JoinArgs, data_dir: PathBuf) -> anyhow::Result<ExitCode> {
    let api = api_url(&args.manager);
    let mut opts = swarm_agent::AgentOptions::new(String::new(), data_dir.clone());
    opts.runtime = match args.runtime {
        RuntimeArg::Docker => swarm_agent::RuntimeKind::Docker,
        RuntimeArg::Sim => swarm_agent::RuntimeKind::Sim,
    };
    opts.sim_nodes = args.sim_nodes;
    opts.node_name = args.node_name.clone();
    opts.advertise_addr = args.advertise_addr;
    let ca_pem = match args.runtime {
        // Each simulated node joins for itself when the agent starts.
        RuntimeArg::Sim => join::fetch_ca(&api, &args.token.parse()?).await?,
        RuntimeArg::Docker => {
            let pki = data_dir.join("pki");
            let creds = match NodeCredentials::load(&pki) {
                Ok(creds) => {
                    eprintln!(
                        "This node is already part of a swarm as {}.",
                        creds.identity.id
                    );
                    creds
                }
                Err(_) => {
                    let wanted = args.node_name.clone().unwrap_or_else(hostname);
                    let creds = join::join(&api, &args.token, &wanted).await?;
                    creds.save(&pki)?;
                    let role = match creds.role() {
                        swarm_pki::Role::Manager => "a manager",
                        _ => "a worker",
                    };
                    println!(
                        "This node joined a swarm as {role} ({}).",
                        creds.identity.id
                    );
                    creds
                }
            };
            creds.ca_pem
        }
    };
    opts.manager = join::dispatcher_addr(&api, &ca_pem).await?;
    opts.tls = Some(swarm_agent::TlsJoin {
        api_url: api,
        token: Some(args.token.clone()),
    });
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        tx.send_replace(true);
    });
    swarm_agent::run(opts, rx).await?;
    Ok(ExitCode::SUCCESS)
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "node".to_string())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TokenRole {
    Worker,
    Manager,
}

impl TokenRole {
    fn as_str(self) -> &'static str {
        match self {
            TokenRole::Worker => "worker",
            TokenRole::Manager => "manager",
        }
    }
}

#[derive(Args, Debug)]
pub struct JoinTokenArgs {
    pub role: TokenRole,
    /// Print only the token.
    #[arg(short, long)]
    pub quiet: bool,
    /// Replace the token; the old one stops working at once (machines already joined keep
    /// their certificates).
    #[arg(long)]
    pub rotate: bool,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

pub fn run_token(args: JoinTokenArgs) -> anyhow::Result<ExitCode> {
    let client = args.connect.client()?;
    let role = args.role.as_str();
    let token = block_on(async {
        if args.rotate {
            client.rotate_join_token(role).await
        } else {
            client.join_tokens().await.map(|t| match args.role {
                TokenRole::Worker => t.worker,
                TokenRole::Manager => t.manager,
            })
        }
    })?
    .with_context(|| format!("cannot get the {role} join token"))?;
    if args.quiet {
        println!("{token}");
        return Ok(ExitCode::SUCCESS);
    }
    if args.rotate {
        println!("Successfully rotated {role} join token.\n");
    }
    let addr = client
        .base_url()
        .split("://")
        .last()
        .unwrap_or_default()
        .to_string();
    println!(
        "To add a {role} to this swarm, run the following command:\n\n    swarm join --token {token} {addr}\n"
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_address_is_an_https_url() {
        assert_eq!(api_url("10.0.0.1:2377"), "https://10.0.0.1:2377");
        assert_eq!(api_url("https://m:2377/"), "https://m:2377");
    }
}
