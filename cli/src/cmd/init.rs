//! `swarm init`: make a new cluster's identity in a data directory — the CA, the manager's
//! certificate, the worker and manager join tokens — and the admin's credentials, then print
//! how to start the manager and how machines join it, as `docker swarm init` does.
//!
//! The manager itself is `swarm server --data-dir DIR`, which finds the PKI made here (and
//! makes one itself on first start when `swarm init` was skipped).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use swarm_apiserver::cluster_pki::ClusterPki;
use swarm_client::ClientConfig;

#[derive(Args, Debug)]
pub struct InitArgs {
    /// Where the manager keeps its store and PKI [default: ~/.swarm/data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The address other machines reach this manager on (goes into its certificate and the
    /// join command).
    #[arg(long)]
    pub advertise_addr: Option<std::net::IpAddr>,
    /// The API's port.
    #[arg(long, default_value_t = 2377)]
    pub port: u16,
}

/// `~/.swarm/data`.
fn default_data_dir() -> Option<PathBuf> {
    ClientConfig::default_path().and_then(|p| p.parent().map(|d| d.join("data")))
}

pub fn run(args: InitArgs) -> anyhow::Result<ExitCode> {
    let data_dir = args
        .data_dir
        .clone()
        .or_else(default_data_dir)
        .context("cannot tell where the data directory goes: pass --data-dir")?;
    if data_dir.join("pki").join("ca.crt").exists() {
        anyhow::bail!(
            "{} already holds a swarm: start its manager with `swarm server --data-dir {}`, or \
             pick another --data-dir for a new swarm",
            data_dir.display(),
            data_dir.display()
        );
    }
    let ip = args
        .advertise_addr
        .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]));
    let addr = SocketAddr::new(ip, args.port);
    let sans: Vec<String> = args.advertise_addr.iter().map(|a| a.to_string()).collect();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    let pki = ClusterPki::load_or_init(&data_dir, &sans).context("cannot make the cluster CA")?;
    let (cert, key) = pki
        .write_admin_credentials(&data_dir)
        .context("cannot write the admin credentials")?;
    let server = format!("https://{addr}");
    let cluster = pki.ca.cluster_id().to_string();
    let admin = ClientConfig::with_credentials(&cluster, server, pki.ca_path(), cert, key);
    let conf = data_dir.join("admin.conf");
    admin
        .save(&conf)
        .with_context(|| format!("cannot write {}", conf.display()))?;
    let user_conf = ClientConfig::default_path();
    if let Some(path) = &user_conf {
        let mut merged = match ClientConfig::load(path) {
            Ok(existing) => existing,
            Err(_) if !path.exists() => admin.clone(),
            Err(e) => return Err(e).context("cannot add this swarm to your credentials file"),
        };
        for ctx in admin.contexts.iter().cloned() {
            merged.upsert(ctx);
        }
        merged
            .save(path)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let listen = if args.advertise_addr.is_some() {
        format!("--listen 0.0.0.0:{} --advertise-addr {ip}", args.port)
    } else {
        format!("--listen {addr}")
    };
    println!(
        "Swarm initialized: cluster {cluster}, data in {dir}.\n\
         Admin credentials: {conf}{user}.\n\n\
         Start the manager with:\n\n    swarm server --data-dir {dir} {listen}\n\n\
         To add a worker to this swarm, run the following command:\n\n    \
         swarm join --token {worker} {addr}\n\n\
         To add a manager to this swarm, run 'swarm join-token manager' and follow the instructions.",
        dir = data_dir.display(),
        conf = conf.display(),
        user = user_conf
            .map(|p| format!(" (and context {cluster} in {})", p.display()))
            .unwrap_or_default(),
        worker = pki.tokens().worker,
    );
    Ok(ExitCode::SUCCESS)
}
