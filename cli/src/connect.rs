//! How a command finds the apiserver: `--server URL`, else `--config FILE` (or `SWARM_CONFIG`),
//! else `~/.swarm/config` when it exists, else `http://127.0.0.1:2377`. Also the async runtime
//! the commands run their requests on.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use swarm_client::{Client, ClientConfig, config::DEFAULT_SERVER};

/// The connection flags every command that talks to the apiserver takes.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ConnectArgs {
    /// The apiserver's URL (overrides the credentials file).
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// The credentials file [default: ~/.swarm/config].
    #[arg(long, value_name = "FILE", env = "SWARM_CONFIG")]
    pub config: Option<PathBuf>,
}

impl ConnectArgs {
    /// A client for the apiserver these flags point at.
    pub fn client(&self) -> anyhow::Result<Client> {
        let cfg = resolve(
            self.server.as_deref(),
            self.config.as_deref(),
            ClientConfig::default_path().as_deref(),
        )?;
        Ok(Client::from_config(&cfg)?)
    }
}

/// The config to connect with. A file named explicitly must exist; the default file is used
/// only when it does.
pub fn resolve(
    server: Option<&str>,
    config: Option<&Path>,
    default_path: Option<&Path>,
) -> anyhow::Result<ClientConfig> {
    if let Some(url) = server {
        return Ok(ClientConfig::single(url));
    }
    if let Some(path) = config {
        return ClientConfig::load(path)
            .with_context(|| "check --config or SWARM_CONFIG".to_string());
    }
    if let Some(path) = default_path.filter(|p| p.exists()) {
        return Ok(ClientConfig::load(path)?);
    }
    Ok(ClientConfig::single(DEFAULT_SERVER))
}

/// Runs a command's future to completion on a single-threaded runtime.
pub fn block_on<F: std::future::Future>(fut: F) -> anyhow::Result<F::Output> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    Ok(rt.block_on(fut))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_of(cfg: &ClientConfig) -> &str {
        &cfg.current().unwrap().server
    }

    #[test]
    fn server_flag_wins() {
        let cfg = resolve(Some("http://a:1"), Some(Path::new("/nonexistent")), None).unwrap();
        assert_eq!(server_of(&cfg), "http://a:1");
    }

    #[test]
    fn explicit_config_must_exist() {
        let err = resolve(None, Some(Path::new("/nonexistent/conf")), None).unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("/nonexistent/conf") && msg.contains("SWARM_CONFIG"),
            "{msg}"
        );
    }

    #[test]
    fn default_file_is_used_when_present_else_localhost() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        let cfg = resolve(None, None, Some(&path)).unwrap();
        assert_eq!(server_of(&cfg), DEFAULT_SERVER);
        ClientConfig::single("http://b:2").save(&path).unwrap();
        let cfg = resolve(None, None, Some(&path)).unwrap();
        assert_eq!(server_of(&cfg), "http://b:2");
    }
}
