//! `swarm credentials controller NAME|all -o FILE`: credentials for a controller that runs in
//! its own process (`swarm-controller --config FILE NAME`), under its own identity.
//!
//! A key is made here and never leaves this machine; the CSR goes to the apiserver
//! (`POST /v1/certificates`, admins only), which signs it for `controller:NAME`. FILE is a
//! credentials file like `admin.conf`, with one context per controller (named after it), so
//! the apiserver grants each controller only its kinds. Beside FILE go the certificates and
//! keys (`STEM.crt`/`STEM.key` for one controller, `STEM-NAME.crt`/`.key` for `all`) and the
//! cluster CA (`STEM-ca.crt`); the keys are mode 0600.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use swarm_apiserver::cluster_pki::write_file;
use swarm_client::ClientConfig;
use swarm_client::config::Context;
use swarm_pki::NodeKey;

use crate::connect::{ConnectArgs, block_on};

#[derive(Args, Debug)]
pub struct CredentialsArgs {
    #[command(subcommand)]
    pub what: CredentialsCommand,
}

#[derive(Subcommand, Debug)]
pub enum CredentialsCommand {
    /// A credentials file for controller NAME (replication, ipam, placement, update, nodes,
    /// gc, gitops) or `all` (one context per controller, for `swarm-controller all`).
    #[command(
        after_help = "Examples:\n  swarm credentials controller replication -o replication.conf\n  swarm credentials controller all -o controllers.conf"
    )]
    Controller(ControllerArgs),
}

#[derive(Args, Debug)]
pub struct ControllerArgs {
    /// The controller, or `all`.
    pub name: String,
    /// The credentials file to write.
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

pub fn run(args: CredentialsArgs) -> anyhow::Result<ExitCode> {
    match args.what {
        CredentialsCommand::Controller(args) => controller(args),
    }
}

/// Where FILE's companions go: FILE's directory (absolute, so the file works from anywhere)
/// and its stem.
fn layout(output: &Path) -> anyhow::Result<(PathBuf, String)> {
    let dir = match output.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(d) => d.to_path_buf(),
        None => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let dir =
        std::fs::canonicalize(&dir).with_context(|| format!("cannot resolve {}", dir.display()))?;
    let stem = output
        .file_stem()
        .and_then(|s| s.to_str())
        .filter(|s| !s.is_empty())
        .with_context(|| format!("{} does not name a file", output.display()))?;
    Ok((dir, stem.to_string()))
}

fn controller(args: ControllerArgs) -> anyhow::Result<ExitCode> {
    let names: Vec<&str> = if args.name == "all" {
        swarm_controllers::NAMES.to_vec()
    } else {
        vec![args.name.as_str()]
    };
    let client = args.connect.client()?;
    let (dir, stem) = layout(&args.output)?;
    let issued = block_on(async {
        let mut issued = Vec::new();
        for name in &names {
            let key = NodeKey::generate()?;
            let (cert, ca) = client
                .issue_certificate(&format!("controller:{name}"), &key.csr_pem(name)?)
                .await
                .with_context(|| format!("cannot get a certificate for controller {name}"))?;
            issued.push((name.to_string(), cert, key.key_pem(), ca));
        }
        anyhow::Ok(issued)
    })??;
    let ca_path = dir.join(format!("{stem}-ca.crt"));
    let mut contexts = Vec::new();
    for (name, cert, key, ca) in issued {
        let base = if names.len() == 1 {
            stem.clone()
        } else {
            format!("{stem}-{name}")
        };
        let (crt_path, key_path) = (
            dir.join(format!("{base}.crt")),
            dir.join(format!("{base}.key")),
        );
        write_file(&ca_path, &ca, false)?;
        write_file(&key_path, &key, true)?;
        write_file(&crt_path, &cert, false)?;
        contexts.push(Context {
            name,
            server: client.base_url().to_string(),
            certificate_authority: Some(ca_path.clone()),
            client_certificate: Some(crt_path),
            client_key: Some(key_path),
        });
    }
    let mut config = ClientConfig::single(client.base_url());
    config.current_context = names.first().copied().unwrap_or_default().to_string();
    config.contexts = contexts;
    config
        .save(&args.output)
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    println!(
        "Wrote {} (controller {}). Run the controller with:\n\n    swarm-controller --config {} {}\n",
        args.output.display(),
        args.name,
        args.output.display(),
        args.name
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn companions_go_beside_the_file_under_its_stem() {
        let dir = tempfile::tempdir().unwrap();
        let (d, stem) = layout(&dir.path().join("sub/ctl.conf")).unwrap();
        assert_eq!(d, std::fs::canonicalize(dir.path().join("sub")).unwrap());
        assert_eq!(stem, "ctl");
        assert!(layout(Path::new("/")).is_err());
    }
}
