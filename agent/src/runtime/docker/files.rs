//! Secrets and configs as files: each referenced secret or config is written, with its mode
//! and owner, into a directory of the task's own — secrets on tmpfs (`/dev/shm`) where there is
//! one, so they never touch disk — and bind-mounted read-only at `/run/secrets/<target>`
//! (secrets) or at the config's target path. Contents are never logged. The directory goes
//! with the task's container.

use std::path::{Path, PathBuf};

use base64::Engine;
use bollard::models::{Mount, MountType};
use swarm_api::{FileReference, Task};

use crate::runtime::{Assets, RuntimeError};

/// Where a node keeps task files: secrets (tmpfs if possible) and configs.
#[derive(Clone, Debug)]
pub struct FileDirs {
    pub secrets: PathBuf,
    pub configs: PathBuf,
}

impl FileDirs {
    pub fn new(data_dir: &Path, node: &str) -> FileDirs {
        let shm = Path::new("/dev/shm");
        let secrets = if shm.is_dir() {
            shm.join(format!("swarm-agent-{node}"))
        } else {
            data_dir.join("secrets")
        };
        FileDirs {
            secrets,
            configs: data_dir.join("configs"),
        }
    }

    fn task_dirs(&self, task: &str) -> [PathBuf; 2] {
        let safe: String = task
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        [self.secrets.join(&safe), self.configs.join(&safe)]
    }

    /// Removes the task's files.
    pub fn remove(&self, task: &str) {
        for d in self.task_dirs(task) {
            let _ = std::fs::remove_dir_all(d);
        }
    }

    /// Writes the task's secrets and configs; returns their mounts.
    pub fn write(&self, task: &Task, assets: &Assets) -> Result<Vec<Mount>, RuntimeError> {
        let c = &task.spec.template.container;
        let [sdir, cdir] = self.task_dirs(&task.metadata.name);
        let mut mounts = Vec::new();
        for r in &c.secrets {
            let secret = assets
                .secrets
                .get(&r.source)
                .ok_or_else(|| RuntimeError::Fatal(format!("secret not found: {}", r.source)))?;
            let target = if r.target.starts_with('/') {
                r.target.clone()
            } else {
                format!("/run/secrets/{}", r.target)
            };
            mounts.push(write_one(&sdir, r, &secret.spec.data, &target)?);
        }
        for r in &c.configs {
            let config = assets
                .configs
                .get(&r.source)
                .ok_or_else(|| RuntimeError::Fatal(format!("config not found: {}", r.source)))?;
            let target = if r.target.starts_with('/') {
                r.target.clone()
            } else {
                format!("/{}", r.target)
            };
            mounts.push(write_one(&cdir, r, &config.spec.data, &target)?);
        }
        Ok(mounts)
    }
}

fn io(what: &str, e: std::io::Error) -> RuntimeError {
    RuntimeError::Temporary(format!("{what}: {e}"))
}

fn write_one(
    dir: &Path,
    r: &FileReference,
    data_b64: &str,
    target: &str,
) -> Result<Mount, RuntimeError> {
    use std::os::unix::fs::PermissionsExt;
    let data = base64::engine::general_purpose::STANDARD
        .decode(data_b64.trim())
        .map_err(|_| RuntimeError::Fatal(format!("{}: data is not base64", r.source)))?;
    std::fs::create_dir_all(dir).map_err(|e| io("cannot create the files directory", e))?;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    let file = dir.join(target.trim_start_matches('/').replace('/', "_"));
    std::fs::write(&file, &data).map_err(|e| io("cannot write a file", e))?;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(r.mode & 0o7777))
        .map_err(|e| io("cannot set a file's mode", e))?;
    let uid = r.uid.parse::<u32>().ok();
    let gid = r.gid.parse::<u32>().ok();
    if let Err(e) = std::os::unix::fs::chown(&file, uid, gid) {
        tracing::debug!(source = %r.source, error = %e, "cannot set a file's owner");
    }
    Ok(Mount {
        target: Some(target.to_string()),
        source: Some(file.to_string_lossy().into_owned()),
        typ: Some(MountType::BIND),
        read_only: Some(true),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_api::{DataSpec, Secret, TaskSpec};

    #[test]
    fn secrets_are_written_with_their_mode_and_mounted_read_only() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = FileDirs {
            secrets: dir.path().join("s"),
            configs: dir.path().join("c"),
        };
        let mut t = Task::new(
            "web.1.1",
            TaskSpec {
                service: "web".into(),
                ..Default::default()
            },
        );
        t.spec.template.container.secrets = vec![FileReference {
            source: "pw".into(),
            target: "db_password".into(),
            uid: "0".into(),
            gid: "0".into(),
            mode: 0o400,
        }];
        let mut assets = Assets::default();
        let missing = dirs.write(&t, &assets).unwrap_err();
        assert_eq!(missing, RuntimeError::Fatal("secret not found: pw".into()));
        assets.secrets.insert(
            "pw".into(),
            Secret::new(
                "pw",
                DataSpec {
                    data: "aHVudGVyMg==".into(),
                    template_driver: None,
                },
            ),
        );
        let mounts = dirs.write(&t, &assets).unwrap();
        assert_eq!(
            mounts[0].target.as_deref(),
            Some("/run/secrets/db_password")
        );
        assert_eq!(mounts[0].read_only, Some(true));
        let src = PathBuf::from(mounts[0].source.clone().unwrap());
        assert_eq!(std::fs::read_to_string(&src).unwrap(), "hunter2");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&src).unwrap().permissions().mode() & 0o777,
            0o400
        );
        dirs.remove("web.1.1");
        assert!(!src.exists());
    }
}
