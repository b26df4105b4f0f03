//! Secrets and configs as files: each referenced secret or config is written, with its mode
//! and owner, into a directory of the task's own — secrets on tmpfs (`/dev/shm`) where there is
//! one, so they never touch disk — and bind-mounted read-only at `/run/secrets/<target>`
//! (secrets) or at the config's target path. Contents are never logged. The directory goes
//! with the task's container.
//!
//! A secret or config with `templateDriver: golang` is rendered for the task first (see
//! `template`); a config whose template reads a secret is then kept like a secret.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use bollard::models::{Mount, MountType};
use swarm_api::{DataSpec, FileReference, Task};

use super::template::{self, Context, NodeFacts};
use crate::runtime::{Assets, RuntimeError};

/// The only template driver there is, as in Docker.
pub const GOLANG: &str = swarm_api::TEMPLATE_DRIVER_GOLANG;

/// Where a node keeps task files: secrets (tmpfs if possible) and configs.
#[derive(Clone, Debug)]
pub struct FileDirs {
    pub secrets: PathBuf,
    pub configs: PathBuf,
    pub node: NodeFacts,
}

/// One secret or config a task references, decoded.
struct File<'a> {
    kind: &'static str,
    r: &'a FileReference,
    spec: &'a DataSpec,
    data: Vec<u8>,
    /// Where it is mounted in the container.
    target: String,
}

impl FileDirs {
    pub fn new(data_dir: &Path, node: NodeFacts) -> FileDirs {
        let shm = Path::new("/dev/shm");
        let secrets = if shm.is_dir() {
            shm.join(format!("swarm-agent-{}", node.id))
        } else {
            data_dir.join("secrets")
        };
        FileDirs {
            secrets,
            configs: data_dir.join("configs"),
            node,
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

    /// Writes the task's secrets and configs (templates rendered); returns their mounts.
    pub fn write(&self, task: &Task, assets: &Assets) -> Result<Vec<Mount>, RuntimeError> {
        let c = &task.spec.template.container;
        let [sdir, cdir] = self.task_dirs(&task.metadata.name);
        // Everything decoded first: a template may read the task's other files.
        let mut files = Vec::new();
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
            files.push(File::decode("secret", r, &secret.spec, target)?);
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
            files.push(File::decode("config", r, &config.spec, target)?);
        }
        let templated = files.iter().any(|f| f.spec.template_driver.is_some());
        let cx = templated.then(|| self.context(task, assets, &files));
        let mut mounts = Vec::new();
        for f in &files {
            let (data, sensitive) = f.render(cx.as_ref())?;
            let dir = if sensitive { &sdir } else { &cdir };
            mounts.push(write_one(dir, f.r, &data, &f.target)?);
        }
        Ok(mounts)
    }

    /// What the task's templates see.
    fn context(&self, task: &Task, assets: &Assets, files: &[File<'_>]) -> Context {
        let mut cx = Context::for_task(task, assets.services.get(&task.spec.service), &self.node);
        let by_target = |kind: &str| -> BTreeMap<String, String> {
            files
                .iter()
                .filter(|f| f.kind == kind)
                .map(|f| {
                    (
                        f.r.target.clone(),
                        String::from_utf8_lossy(&f.data).into_owned(),
                    )
                })
                .collect()
        };
        cx.secrets = by_target("secret");
        cx.configs = by_target("config");
        cx
    }
}

impl<'a> File<'a> {
    fn decode(
        kind: &'static str,
        r: &'a FileReference,
        spec: &'a DataSpec,
        target: String,
    ) -> Result<File<'a>, RuntimeError> {
        let data = base64::engine::general_purpose::STANDARD
            .decode(spec.data.trim())
            .map_err(|_| RuntimeError::Fatal(format!("{}: data is not base64", r.source)))?;
        Ok(File {
            kind,
            r,
            spec,
            data,
            target,
        })
    }

    /// The content to write, and whether it must be kept like a secret.
    fn render(&self, cx: Option<&Context>) -> Result<(Vec<u8>, bool), RuntimeError> {
        let secret = self.kind == "secret";
        let (driver, Some(cx)) = (self.spec.template_driver.as_deref(), cx) else {
            return Ok((self.data.clone(), secret));
        };
        let named = format!("{} {}", self.kind, self.r.source);
        match driver {
            Some("") | None => Ok((self.data.clone(), secret)),
            Some(GOLANG) => {
                let src = std::str::from_utf8(&self.data).map_err(|_| {
                    RuntimeError::Fatal(format!(
                        "{named}: template driver {GOLANG} needs UTF-8 text, and the data is not"
                    ))
                })?;
                let out = template::render(src, cx)
                    .map_err(|e| RuntimeError::Fatal(format!("{named}: template: {e}")))?;
                Ok((out.text.into_bytes(), secret || out.uses_secret))
            }
            Some(other) => Err(RuntimeError::Fatal(format!(
                "{named}: template driver {other:?} is not supported (use {GOLANG:?} or none)"
            ))),
        }
    }
}

fn io(what: &str, e: std::io::Error) -> RuntimeError {
    RuntimeError::Temporary(format!("{what}: {e}"))
}

fn write_one(
    dir: &Path,
    r: &FileReference,
    data: &[u8],
    target: &str,
) -> Result<Mount, RuntimeError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).map_err(|e| io("cannot create the files directory", e))?;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    let file = dir.join(target.trim_start_matches('/').replace('/', "_"));
    std::fs::write(&file, data).map_err(|e| io("cannot write a file", e))?;
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
    use swarm_api::{Config, Secret, Service, ServiceSpec, TaskSpec};

    fn dirs(dir: &Path) -> FileDirs {
        FileDirs {
            secrets: dir.join("s"),
            configs: dir.join("c"),
            node: NodeFacts {
                id: "node-a".into(),
                hostname: "host-a".into(),
                os: "linux".into(),
                architecture: "x86_64".into(),
            },
        }
    }

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn reference(source: &str, target: &str) -> FileReference {
        FileReference {
            source: source.into(),
            target: target.into(),
            uid: "0".into(),
            gid: "0".into(),
            mode: 0o444,
        }
    }

    /// Task `web.2.3` of service `web` (labelled `tier=front`), with `GREETING=hi`, reading
    /// config `app` at `/etc/app.conf` and secret `pw` at `db_password`.
    fn templated(app: &str, driver: Option<&str>) -> (Task, Assets) {
        let mut t = Task::new(
            "web.2.3",
            TaskSpec {
                service: "web".into(),
                slot: Some(2),
                ..Default::default()
            },
        );
        t.metadata.uid = "1234-abcd".into();
        let c = &mut t.spec.template.container;
        c.env.insert("GREETING".into(), "hi".into());
        c.configs = vec![reference("app", "/etc/app.conf")];
        c.secrets = vec![reference("pw", "db_password")];
        let mut assets = Assets::default();
        let spec = |data: &str, driver: Option<&str>| DataSpec {
            data: b64(data),
            template_driver: driver.map(str::to_string),
        };
        assets
            .configs
            .insert("app".into(), Config::new("app", spec(app, driver)));
        assets
            .secrets
            .insert("pw".into(), Secret::new("pw", spec("hunter2", None)));
        let mut svc = Service::new("web", ServiceSpec::default());
        svc.metadata.uid = "svc-1".into();
        svc.metadata.labels.insert("tier".into(), "front".into());
        assets.services.insert("web".into(), svc);
        (t, assets)
    }

    fn content(m: &Mount) -> String {
        std::fs::read_to_string(m.source.as_deref().unwrap()).unwrap()
    }

    #[test]
    fn a_golang_template_is_rendered_for_the_task() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = dirs(dir.path());
        let (t, assets) = templated(
            "{{.Service.Name}}/{{.Service.ID}}/{{index .Service.Labels \"tier\"}} \
             {{.Task.Name}} slot {{.Task.Slot}} id {{.Task.ID}} \
             on {{.Node.ID}}/{{.Node.Hostname}}/{{.Node.Platform.OS}} {{env \"GREETING\"}}",
            Some(GOLANG),
        );
        let mounts = dirs.write(&t, &assets).unwrap();
        let conf = mounts
            .iter()
            .find(|m| m.target.as_deref() == Some("/etc/app.conf"))
            .unwrap();
        assert_eq!(
            content(conf),
            "web/svc-1/front web.2.1234abcd slot 2 id 1234abcd on node-a/host-a/linux hi"
        );
        // A config stays with the configs.
        assert!(
            conf.source
                .as_deref()
                .unwrap()
                .starts_with(dirs.configs.to_str().unwrap())
        );
    }

    #[test]
    fn without_a_driver_braces_are_data() {
        let dir = tempfile::tempdir().unwrap();
        let (t, assets) = templated("{{.Service.Name}}", None);
        let mounts = dirs(dir.path()).write(&t, &assets).unwrap();
        assert_eq!(content(&mounts[1]), "{{.Service.Name}}");
    }

    #[test]
    fn a_config_that_reads_a_secret_is_kept_like_a_secret() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = dirs(dir.path());
        let (t, assets) = templated("password={{secret \"db_password\"}}", Some(GOLANG));
        let mounts = dirs.write(&t, &assets).unwrap();
        let conf = &mounts[1];
        assert_eq!(conf.target.as_deref(), Some("/etc/app.conf"));
        assert_eq!(content(conf), "password=hunter2");
        assert!(
            conf.source
                .as_deref()
                .unwrap()
                .starts_with(dirs.secrets.to_str().unwrap())
        );
    }

    #[test]
    fn a_bad_template_rejects_the_task_naming_the_config_and_the_placeholder() {
        let dir = tempfile::tempdir().unwrap();
        let (t, assets) = templated("a\n{{.Task.Nmae}}", Some(GOLANG));
        let e = dirs(dir.path()).write(&t, &assets).unwrap_err();
        assert_eq!(
            e,
            RuntimeError::Fatal(
                "config app: template: line 2: unknown field .Task.Nmae \
                 (known: .Task.ID, .Task.Name, .Task.Slot)"
                    .into()
            )
        );
        let (t, assets) = templated("x", Some("jinja"));
        let e = dirs(dir.path()).write(&t, &assets).unwrap_err();
        assert_eq!(
            e,
            RuntimeError::Fatal(
                "config app: template driver \"jinja\" is not supported (use \"golang\" or none)"
                    .into()
            )
        );
    }

    #[test]
    fn secrets_are_written_with_their_mode_and_mounted_read_only() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = dirs(dir.path());
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
