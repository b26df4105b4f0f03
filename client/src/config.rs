//! The credentials file (`~/.swarm/config`, `DIR/admin.conf`): where the apiserver is and
//! how to authenticate, in named contexts like a kubeconfig.
//!
//! ```yaml
//! apiVersion: swarm/v1
//! kind: ClientConfig
//! currentContext: default
//! contexts:
//!   - name: default
//!     server: http://127.0.0.1:2377
//! ```
//!
//! Lookup order for the CLI: `--server URL`, then `--config FILE`, then `SWARM_CONFIG`, then
//! `~/.swarm/config`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The default address of the REST API.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:2377";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientConfig {
    #[serde(default = "api_version")]
    pub api_version: String,
    #[serde(default = "config_kind")]
    pub kind: String,
    pub current_context: String,
    pub contexts: Vec<Context>,
}

/// One apiserver and the credentials to use with it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Context {
    pub name: String,
    /// Base URL of the REST API, e.g. `https://10.0.0.1:2377`.
    pub server: String,
    /// PEM file of the cluster CA (TLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_authority: Option<PathBuf>,
    /// PEM files of the client certificate and key (mutual TLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key: Option<PathBuf>,
}

fn api_version() -> String {
    swarm_api::API_VERSION.to_string()
}

fn config_kind() -> String {
    "ClientConfig".to_string()
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid swarm client config: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: current context {name:?} is not among its contexts")]
    NoSuchContext { path: PathBuf, name: String },
}

impl ClientConfig {
    /// A config with one context, `default`, pointing at `server`.
    pub fn single(server: impl Into<String>) -> Self {
        ClientConfig {
            api_version: api_version(),
            kind: config_kind(),
            current_context: "default".to_string(),
            contexts: vec![Context {
                name: "default".to_string(),
                server: server.into(),
                certificate_authority: None,
                client_certificate: None,
                client_key: None,
            }],
        }
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let cfg: ClientConfig = serde_saphyr::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        if cfg.current().is_none() {
            return Err(ConfigError::NoSuchContext {
                path: path.to_path_buf(),
                name: cfg.current_context.clone(),
            });
        }
        Ok(cfg)
    }

    /// Writes the file with mode 0600 (it will hold credentials), creating parent directories.
    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        let write_err = |source| ConfigError::Write {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(write_err)?;
        }
        let text = serde_saphyr::to_string(self).map_err(|e| ConfigError::Write {
            path: path.to_path_buf(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).map_err(write_err)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
                .map_err(write_err)?;
        }
        std::fs::rename(&tmp, path).map_err(write_err)
    }

    /// A config with one context, `name`, for a TLS apiserver: the cluster CA to trust and
    /// the client certificate and key to present.
    pub fn with_credentials(
        name: &str,
        server: impl Into<String>,
        ca: PathBuf,
        cert: PathBuf,
        key: PathBuf,
    ) -> Self {
        ClientConfig {
            api_version: api_version(),
            kind: config_kind(),
            current_context: name.to_string(),
            contexts: vec![Context {
                name: name.to_string(),
                server: server.into(),
                certificate_authority: Some(ca),
                client_certificate: Some(cert),
                client_key: Some(key),
            }],
        }
    }

    /// Adds `ctx`, replacing a context of the same name, and makes it the current one.
    pub fn upsert(&mut self, ctx: Context) {
        self.current_context = ctx.name.clone();
        match self.contexts.iter_mut().find(|c| c.name == ctx.name) {
            Some(existing) => *existing = ctx,
            None => self.contexts.push(ctx),
        }
    }

    /// The context named by `currentContext`.
    pub fn current(&self) -> Option<&Context> {
        self.contexts
            .iter()
            .find(|c| c.name == self.current_context)
    }

    /// `~/.swarm/config`, if a home directory is known.
    pub fn default_path() -> Option<PathBuf> {
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".swarm").join("config"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_and_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/admin.conf");
        let cfg = ClientConfig::single("http://127.0.0.1:9999");
        cfg.save(&path).unwrap();
        let back = ClientConfig::load(&path).unwrap();
        assert_eq!(back, cfg);
        assert_eq!(back.current().unwrap().server, "http://127.0.0.1:9999");
    }

    #[test]
    fn missing_context_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c");
        std::fs::write(
            &path,
            "currentContext: prod\ncontexts:\n  - name: dev\n    server: http://x\n",
        )
        .unwrap();
        let err = ClientConfig::load(&path).unwrap_err();
        assert!(err.to_string().contains("\"prod\""), "{err}");
    }
}
