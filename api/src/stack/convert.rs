//! Compose → objects, as docker/cli's `cli/compose/convert` does: names `<stack>_<name>`
//! (unless `name:`), the `swarm.stack` label everywhere, the default network, service-name
//! aliases, secrets/configs read from files, and Swarm's effective defaults.
//!
//! Every service is converted on its own, so one bad service does not hide another's errors.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use base64::Engine;

use super::compose::*;
use super::de::from_node;
use super::envfile::parse_env_file;
use super::error::{Issue, Pos};
use super::source::SourceFs;
use super::units::shell_split;
use super::yaml::{Node, Value};
use crate::meta::STACK_LABEL;
use crate::objects::*;
use crate::{AnyObject, Duration};

/// What conversion needs besides the merged document.
pub struct Context<'a> {
    pub stack: &'a str,
    /// Directory relative paths (binds, `env_file`, `file:`) are resolved against.
    pub working_dir: PathBuf,
    pub env: &'a dyn Fn(&str) -> Option<String>,
    pub fs: &'a dyn SourceFs,
}

/// The objects, in order (networks, secrets, configs, services; each by name).
#[derive(Default)]
pub struct Output {
    pub objects: Vec<AnyObject>,
    pub warnings: Vec<Issue>,
    pub errors: Vec<Issue>,
}

/// Resolves a path of keys under `node` to the deepest existing node: its position and path.
fn locate(node: &Node, base: &str, keys: &[&str]) -> (Pos, String) {
    let mut cur = node;
    let mut path = base.to_string();
    for k in keys {
        let next = if let Some(i) = k.strip_prefix('#') {
            match (&cur.value, i.parse::<usize>()) {
                (Value::Seq(items), Ok(i)) => items.get(i).map(|n| (n, format!("{path}[{i}]"))),
                _ => None,
            }
        } else if let Value::Seq(items) = &cur.value {
            // A list of names (`networks: [a, b]`): the item with that name.
            items
                .iter()
                .enumerate()
                .find(|(_, n)| n.as_str() == Some(k))
                .map(|(i, n)| (n, format!("{path}[{i}]")))
        } else {
            cur.as_map().and_then(|m| {
                m.iter()
                    .find(|(key, _)| key.text == *k)
                    .map(|(_, v)| (v, join(&path, k)))
            })
        };
        match next {
            Some((n, p)) => {
                cur = n;
                path = p;
            }
            None => break,
        }
    }
    (cur.pos, path)
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn scoped(stack: &str, name: &str) -> String {
    format!("{stack}_{name}")
}

fn stack_labels(stack: &str, labels: &Option<ListOrDict>) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = labels
        .as_ref()
        .map(|l| {
            l.to_map('=')
                .into_iter()
                .map(|(k, v)| (k, v.unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    out.insert(STACK_LABEL.to_string(), stack.to_string());
    out
}

/// Lexically cleans a path (`a/./b/../c` → `a/c`), as Go's `filepath.Clean`.
fn clean(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

impl Context<'_> {
    fn resolve(&self, p: &str) -> PathBuf {
        if let Some(rest) = p
            .strip_prefix("~/")
            .or(if p == "~" { Some("") } else { None })
            && let Some(home) = (self.env)("HOME")
        {
            return clean(&Path::new(&home).join(rest));
        }
        clean(&self.working_dir.join(p))
    }
}

/// A decoded top-level section: name → (config, node).
type Section<'n, T> = BTreeMap<String, (T, &'n Node)>;

fn decode_section<'n, T: serde::de::DeserializeOwned + Default>(
    root: &'n Node,
    key: &str,
    nullable: bool,
    out: &mut Output,
) -> Section<'n, T> {
    let mut section = BTreeMap::new();
    let Some(node) = root.get(key) else {
        return section;
    };
    if node.is_null() {
        return section;
    }
    let Some(entries) = node.as_map() else {
        out.errors.push(Issue::new(
            node.pos,
            key,
            format!("expected a mapping of names, found {}", node.describe()),
        ));
        return section;
    };
    for (k, v) in entries {
        let path = join(key, &k.text);
        let decoded = if nullable && v.is_null() {
            Ok(T::default())
        } else {
            from_node::<T>(v, &path)
        };
        match decoded {
            Ok(t) => {
                section.insert(k.text.clone(), (t, v));
            }
            Err(e) => out.errors.extend(every_error::<T>(v, &path, e)),
        }
    }
    section
}

/// Serde stops at an entry's first error. Decoding, one at a time, copies of the entry cut
/// down to a single path through its nested mappings finds the others too: a copy holds one
/// key at each level (`deploy: {update_config: {parallelism: x}}`), so each bad leaf fails on
/// its own. Fields are optional in every entry type, so a cut-down copy fails only where the
/// file is wrong; "missing field" errors from the cutting itself are dropped.
fn every_error<T: serde::de::DeserializeOwned>(
    node: &Node,
    path: &str,
    first: Issue,
) -> Vec<Issue> {
    let mut found = vec![first];
    let mut copies = Vec::new();
    let mut budget = MAX_SINGLE_PATHS;
    single_paths(node, &mut copies, &mut budget);
    for copy in &copies {
        if let Err(e) = from_node::<T>(copy, path)
            && !e.message.starts_with("missing field")
            && !found.contains(&e)
        {
            found.push(e);
        }
    }
    found
}

/// Bounds the work `every_error` does on a huge broken entry.
const MAX_SINGLE_PATHS: usize = 2000;

/// Pushes onto `out` one copy of `node` per path from its root to a leaf through mappings
/// (sequences and scalars are kept whole), each copy keeping a single key per level.
fn single_paths(node: &Node, out: &mut Vec<Node>, budget: &mut usize) {
    let Value::Map(entries) = &node.value else {
        return;
    };
    for (key, value) in entries {
        let mut inner = Vec::new();
        match &value.value {
            Value::Map(m) if m.len() > 1 => single_paths(value, &mut inner, budget),
            _ => inner.push(value.clone()),
        }
        for v in inner {
            if *budget == 0 {
                return;
            }
            *budget -= 1;
            out.push(Node {
                pos: node.pos,
                value: Value::Map(vec![(key.clone(), v)]),
            });
        }
    }
}

/// Converts the merged document.
pub fn convert(root: &Node, cx: &Context<'_>) -> Output {
    let mut out = Output::default();
    let networks: Section<NetworkConfig> = decode_section(root, "networks", true, &mut out);
    let volumes: Section<VolumeConfig> = decode_section(root, "volumes", true, &mut out);
    let secrets: Section<FileObjectConfig> = decode_section(root, "secrets", false, &mut out);
    let configs: Section<FileObjectConfig> = decode_section(root, "configs", false, &mut out);
    let services: Section<ServiceConfig> = decode_section(root, "services", false, &mut out);

    let mut objects: Vec<AnyObject> = Vec::new();
    // Secrets and configs: every declared one that is not external.
    let mut file_objects = |section: &Section<FileObjectConfig>, kind: &str, out: &mut Output| {
        for (name, (cfg, node)) in section {
            let path = format!("{kind}s.{name}");
            if cfg.external.as_ref().is_some_and(External::is_external) {
                if cfg.file.is_some() {
                    out.errors.push(Issue::new(
                        node.pos,
                        &path,
                        "`external` and `file` cannot be combined; drop one",
                    ));
                }
                continue;
            }
            if cfg.driver.is_some() || cfg.driver_opts.is_some() {
                let (pos, p) = locate(node, &path, &["driver"]);
                out.warnings.push(Issue::new(
                    pos,
                    p,
                    "secret drivers are not supported by swarm; ignored",
                ));
            }
            let Some(file) = &cfg.file else {
                out.errors.push(Issue::new(
                    node.pos,
                    &path,
                    format!("{kind} {name:?} needs `file:` (or `external: true` for one that already exists)"),
                ));
                continue;
            };
            let full = cx.resolve(file);
            let data = match cx.fs.read(&full) {
                Ok(d) => d,
                Err(e) => {
                    let (pos, p) = locate(node, &path, &["file"]);
                    out.errors.push(Issue::new(
                        pos,
                        p,
                        format!("cannot read {}: {e}", full.display()),
                    ));
                    continue;
                }
            };
            let obj_name = cfg.name.clone().unwrap_or_else(|| scoped(cx.stack, name));
            let spec = DataSpec {
                data: base64::engine::general_purpose::STANDARD.encode(&data),
                template_driver: cfg.template_driver.clone(),
            };
            let labels = stack_labels(cx.stack, &cfg.labels);
            let obj = if kind == "secret" {
                let mut s = Secret::new(obj_name, spec);
                s.metadata.labels = labels;
                AnyObject::Secret(s)
            } else {
                let mut c = Config::new(obj_name, spec);
                c.metadata.labels = labels;
                AnyObject::Config(c)
            };
            objects.push(obj);
        }
    };
    file_objects(&secrets, "secret", &mut out);
    file_objects(&configs, "config", &mut out);

    // Services, and which networks they use.
    let mut used_networks: BTreeSet<String> = BTreeSet::new();
    let refs = Refs {
        networks: &networks,
        volumes: &volumes,
        secrets: &secrets,
        configs: &configs,
    };
    for (name, (svc, node)) in &services {
        let path = join("services", name);
        warn_ignored_keys(node, &path, &mut out);
        let mut sc = ServiceConv {
            cx,
            refs: &refs,
            node,
            path: path.clone(),
            name,
            errors: Vec::new(),
            warnings: Vec::new(),
        };
        let service = sc.service(svc, &mut used_networks);
        let had_errors = !sc.errors.is_empty();
        out.errors.append(&mut sc.errors);
        out.warnings.append(&mut sc.warnings);
        if let Some(service) = service
            && !had_errors
        {
            objects.push(AnyObject::Service(Box::new(service)));
        }
    }

    // Networks: only those some service uses (as docker/cli), external ones are not created.
    for net in &used_networks {
        let declared = networks.get(net);
        if let Some((cfg, _)) = declared
            && cfg.external.as_ref().is_some_and(External::is_external)
        {
            continue;
        }
        let (cfg, node) = match declared {
            Some((cfg, node)) => (cfg.clone(), Some(*node)),
            None => (NetworkConfig::default(), None),
        };
        let path = join("networks", net);
        let pos = node.map(|n| n.pos).unwrap_or(root.pos);
        let driver = match cfg.driver.as_deref() {
            None | Some("overlay") => NetworkDriver::Overlay,
            Some("bridge") => NetworkDriver::Bridge,
            Some(other) => {
                let (pos, p) = node.map_or((pos, path.clone()), |n| locate(n, &path, &["driver"]));
                out.errors.push(Issue::new(
                    pos,
                    p,
                    format!("network driver {other:?} is not supported; use overlay or bridge"),
                ));
                continue;
            }
        };
        let mut ipam = NetworkIpam::default();
        if let Some(ip) = &cfg.ipam {
            let pools = ip.config.as_deref().unwrap_or_default();
            if pools.len() > 1 {
                let (pos, p) = node.map_or((pos, path.clone()), |n| {
                    locate(n, &path, &["ipam", "config"])
                });
                out.errors.push(Issue::new(
                    pos,
                    p,
                    "swarm networks take one subnet; list only one ipam config",
                ));
            }
            ipam.subnet = pools.first().map(|p| p.subnet.clone());
            if ip.driver.as_deref().is_some_and(|d| d != "default") {
                let (pos, p) = node.map_or((pos, path.clone()), |n| {
                    locate(n, &path, &["ipam", "driver"])
                });
                out.warnings.push(Issue::new(
                    pos,
                    p,
                    "ipam drivers are not supported; the default is used",
                ));
            }
        }
        let spec = NetworkSpec {
            driver,
            driver_opts: cfg
                .driver_opts
                .as_ref()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect())
                .unwrap_or_default(),
            attachable: cfg.attachable.unwrap_or(false),
            internal: cfg.internal.unwrap_or(false),
            ipam,
            ingress: false,
        };
        let obj_name = cfg.name.clone().unwrap_or_else(|| scoped(cx.stack, net));
        let mut n = Network::new(obj_name, spec);
        n.metadata.labels = stack_labels(cx.stack, &cfg.labels);
        objects.push(AnyObject::Network(n));
    }

    // Object-level validation, reported at the object's source.
    for obj in &objects {
        let (section, key) = match obj {
            AnyObject::Network(_) => ("networks", source_key(obj.name(), cx.stack, &networks)),
            AnyObject::Secret(_) => ("secrets", source_key(obj.name(), cx.stack, &secrets)),
            AnyObject::Config(_) => ("configs", source_key(obj.name(), cx.stack, &configs)),
            _ => ("services", source_key(obj.name(), cx.stack, &services)),
        };
        let path = join(section, &key);
        let pos = root
            .get(section)
            .and_then(|s| s.get(&key))
            .map(|n| n.pos)
            .unwrap_or(root.pos);
        for cause in crate::validation::validate(obj) {
            out.errors.push(Issue::new(
                pos,
                &path,
                format!(
                    "{} {:?}: {}: {}",
                    obj.kind(),
                    obj.name(),
                    cause.field,
                    cause.message
                ),
            ));
        }
    }

    objects.sort_by(|a, b| order(a).cmp(&order(b)).then_with(|| a.name().cmp(b.name())));
    out.objects = objects;
    out
}

fn source_key<T>(obj_name: &str, stack: &str, section: &Section<T>) -> String {
    let prefix = format!("{stack}_");
    match obj_name.strip_prefix(&prefix) {
        Some(k) if section.contains_key(k) => k.to_string(),
        _ => obj_name.to_string(),
    }
}

fn order(o: &AnyObject) -> u8 {
    match o {
        AnyObject::Network(_) => 0,
        AnyObject::Secret(_) => 1,
        AnyObject::Config(_) => 2,
        AnyObject::Service(_) => 3,
        _ => 4,
    }
}

/// Warnings for keys docker ignores ("unsupported", "deprecated").
fn warn_ignored_keys(node: &Node, path: &str, out: &mut Output) {
    let Some(entries) = node.as_map() else { return };
    for (k, _) in entries {
        let kind = if UNSUPPORTED_SERVICE_KEYS.contains(&k.text.as_str()) {
            "unsupported"
        } else if DEPRECATED_SERVICE_KEYS.contains(&k.text.as_str()) {
            "deprecated"
        } else if k.text == "credential_spec" {
            "unsupported by swarm"
        } else {
            continue;
        };
        let extra = if k.text == "restart" {
            " (used only as the fallback for deploy.restart_policy)"
        } else {
            ""
        };
        out.warnings.push(Issue::new(
            k.pos,
            join(path, &k.text),
            format!("ignoring {kind} option {:?}{extra}", k.text),
        ));
    }
}

struct Refs<'a, 'n> {
    networks: &'a Section<'n, NetworkConfig>,
    volumes: &'a Section<'n, VolumeConfig>,
    secrets: &'a Section<'n, FileObjectConfig>,
    configs: &'a Section<'n, FileObjectConfig>,
}

struct ServiceConv<'a, 'n> {
    cx: &'a Context<'a>,
    refs: &'a Refs<'a, 'n>,
    node: &'a Node,
    path: String,
    name: &'a str,
    errors: Vec<Issue>,
    warnings: Vec<Issue>,
}

/// The object name of a top-level entry: `name:`, an external's name, or `<stack>_<key>`.
fn object_name(
    stack: &str,
    key: &str,
    name: &Option<String>,
    external: &Option<External>,
) -> String {
    if let Some(External::Named { name }) = external {
        return name.clone();
    }
    if let Some(n) = name {
        return n.clone();
    }
    if external.as_ref().is_some_and(External::is_external) {
        return key.to_string();
    }
    scoped(stack, key)
}

impl ServiceConv<'_, '_> {
    fn error(&mut self, keys: &[&str], msg: impl Into<String>) {
        let (pos, path) = locate(self.node, &self.path, keys);
        self.errors.push(Issue::new(pos, path, msg));
    }

    fn warn(&mut self, keys: &[&str], msg: impl Into<String>) {
        let (pos, path) = locate(self.node, &self.path, keys);
        self.warnings.push(Issue::new(pos, path, msg));
    }

    fn words(&mut self, v: &Option<StringOrList>, key: &str) -> Vec<String> {
        match v {
            None => Vec::new(),
            Some(StringOrList::List(l)) => l.clone(),
            Some(StringOrList::String(s)) => match shell_split(s) {
                Ok(w) => w,
                Err(e) => {
                    self.error(&[key], e);
                    Vec::new()
                }
            },
        }
    }

    fn service(
        &mut self,
        svc: &ServiceConfig,
        used_networks: &mut BTreeSet<String>,
    ) -> Option<Service> {
        let stack = self.cx.stack;
        let image = match svc.image.as_deref().map(str::trim) {
            Some(i) if !i.is_empty() => i.to_string(),
            _ => {
                self.error(
                    &["image"],
                    "every service needs an `image:` (swarm does not build images)",
                );
                String::new()
            }
        };
        let mut c = ContainerSpec {
            image,
            ..ContainerSpec::default()
        };
        c.labels = stack_labels(stack, &svc.labels);
        c.command = self.words(&svc.entrypoint, "entrypoint");
        c.args = self.words(&svc.command, "command");
        c.env = self.environment(svc);
        c.hostname = svc.hostname.clone().unwrap_or_default();
        c.user = svc.user.clone().unwrap_or_default();
        c.working_dir = svc.working_dir.clone().unwrap_or_default();
        c.tty = svc.tty.unwrap_or(false);
        c.open_stdin = svc.stdin_open.unwrap_or(false);
        c.read_only = svc.read_only.unwrap_or(false);
        c.init = svc.init;
        c.isolation = svc.isolation.clone();
        c.stop_signal = svc.stop_signal.clone();
        if let Some(d) = svc.stop_grace_period {
            c.stop_grace_period = d.0;
        }
        c.hosts = self.extra_hosts(svc);
        c.dns_config = DnsConfig {
            nameservers: svc
                .dns
                .as_ref()
                .map(StringOrList::to_vec)
                .unwrap_or_default(),
            search: svc
                .dns_search
                .as_ref()
                .map(StringOrList::to_vec)
                .unwrap_or_default(),
            options: Vec::new(),
        };
        c.sysctls = svc
            .sysctls
            .as_ref()
            .map(|s| {
                s.to_map('=')
                    .into_iter()
                    .map(|(k, v)| (k, v.unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default();
        c.ulimits = svc
            .ulimits
            .as_ref()
            .map(|m| {
                m.iter()
                    .map(|(name, u)| match u {
                        UlimitConfig::Single(v) => Ulimit {
                            name: name.clone(),
                            soft: *v,
                            hard: *v,
                        },
                        UlimitConfig::SoftHard { soft, hard } => Ulimit {
                            name: name.clone(),
                            soft: *soft,
                            hard: *hard,
                        },
                    })
                    .collect()
            })
            .unwrap_or_default();
        c.cap_add = svc.cap_add.clone().unwrap_or_default();
        c.cap_drop = svc.cap_drop.clone().unwrap_or_default();
        c.oom_score_adj = svc.oom_score_adj;
        c.healthcheck = self.healthcheck(svc);
        c.secrets = self.file_refs(&svc.secrets, "secrets");
        c.configs = self.file_refs(&svc.configs, "configs");
        c.mounts = self.mounts(svc);

        let log_driver = match &svc.logging {
            Some(LoggingConfig {
                driver: Some(d),
                options,
            }) => Some(Driver {
                name: d.clone(),
                options: options
                    .as_ref()
                    .map(|o| {
                        o.iter()
                            .map(|(k, v)| {
                                (
                                    k.clone(),
                                    v.as_ref().map(|s| s.0.clone()).unwrap_or_default(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            }),
            Some(_) => {
                self.warn(
                    &["logging"],
                    "logging options without a driver are ignored; set `driver:`",
                );
                None
            }
            None => None,
        };

        let networks = self.networks(svc, used_networks);
        let deploy = svc.deploy.clone().unwrap_or_default();
        let mut spec = ServiceSpec {
            task_template: TaskTemplate {
                container: c,
                networks,
                log_driver,
                ..TaskTemplate::default()
            },
            ..ServiceSpec::default()
        };
        spec.mode = self.mode(&deploy);
        spec.endpoint = EndpointSpec {
            mode: match deploy.endpoint_mode {
                Some(EndpointModeConfig::Dnsrr) => EndpointMode::Dnsrr,
                _ => EndpointMode::Vip,
            },
            ports: self.ports(svc),
        };
        // dnsrr with ingress-mode ports is refused by object validation (`validation.rs`).
        if let Some(p) = &deploy.placement {
            spec.task_template.placement = Placement {
                constraints: p.constraints.clone().unwrap_or_default(),
                preferences: p
                    .preferences
                    .as_deref()
                    .unwrap_or_default()
                    .iter()
                    .map(|p| PlacementPreference {
                        spread: p.spread.clone(),
                    })
                    .collect(),
                max_replicas_per_node: p.max_replicas_per_node.unwrap_or(0),
                platforms: Vec::new(),
            };
        }
        if let Some(r) = &deploy.resources {
            spec.task_template.resources = self.resources(r);
        }
        spec.task_template.restart_policy = self.restart_policy(svc, &deploy);
        if let Some(u) = &deploy.update_config {
            spec.update_config = update_config(u);
        }
        if let Some(u) = &deploy.rollback_config {
            if u.failure_action == Some(FailureActionConfig::Rollback) {
                self.error(
                    &["deploy", "rollback_config", "failure_action"],
                    "a rollback cannot itself roll back; use pause or continue",
                );
            }
            spec.rollback_config = update_config(u);
        }
        let mut service = Service::new(scoped(stack, self.name), spec);
        service.metadata.labels = stack_labels(stack, &deploy.labels);
        Some(service)
    }

    fn environment(&mut self, svc: &ServiceConfig) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        if let Some(files) = &svc.env_file {
            for (i, f) in files.to_vec().iter().enumerate() {
                let idx = format!("#{i}");
                let keys: Vec<&str> = match files {
                    StringOrList::String(_) => vec!["env_file"],
                    StringOrList::List(_) => vec!["env_file", &idx],
                };
                let full = self.cx.resolve(f);
                match self.cx.fs.read(&full) {
                    Err(e) => self.error(
                        &keys,
                        format!("cannot read env file {}: {e}", full.display()),
                    ),
                    Ok(bytes) => match parse_env_file(&bytes, self.cx.env) {
                        Ok(vars) => env.extend(vars),
                        Err(e) => self.error(&keys, format!("env file {}: {e}", full.display())),
                    },
                }
            }
        }
        if let Some(e) = &svc.environment {
            for (k, v) in e.to_map('=') {
                match v.or_else(|| (self.cx.env)(&k)) {
                    Some(v) => {
                        env.insert(k, v);
                    }
                    None => {
                        env.remove(&k);
                    }
                }
            }
        }
        env
    }

    fn extra_hosts(&mut self, svc: &ServiceConfig) -> Vec<String> {
        let mut out = Vec::new();
        match &svc.extra_hosts {
            None => {}
            Some(ListOrDict::List(items)) => {
                for (i, h) in items.iter().enumerate() {
                    // `host:ip` (or `host=ip`) → `ip host`.
                    let split = h.split_once('=').or_else(|| h.split_once(':'));
                    match split {
                        Some((host, ip)) if !host.is_empty() && !ip.is_empty() => {
                            out.push(format!("{ip} {host}"))
                        }
                        _ => self.error(
                            &["extra_hosts", &format!("#{i}")],
                            format!("invalid extra host {h:?}: expected HOST:IP"),
                        ),
                    }
                }
            }
            Some(ListOrDict::Dict(m)) => {
                for (host, ip) in m {
                    match ip {
                        Some(ip) => out.push(format!("{} {host}", ip.0)),
                        None => self.error(
                            &["extra_hosts", host],
                            format!("extra host {host:?} needs an IP"),
                        ),
                    }
                }
            }
        }
        out
    }

    fn healthcheck(&mut self, svc: &ServiceConfig) -> Option<Healthcheck> {
        let h = svc.healthcheck.as_ref()?;
        let disabled = h.disable.unwrap_or(false);
        if disabled && h.test.is_some() {
            self.error(
                &["healthcheck", "disable"],
                "`disable: true` cannot be combined with `test`",
            );
        }
        let test = if disabled {
            vec!["NONE".to_string()]
        } else {
            match &h.test {
                None => Vec::new(),
                Some(StringOrList::String(s)) => vec!["CMD-SHELL".to_string(), s.clone()],
                Some(StringOrList::List(l)) => {
                    if let Some(first) = l.first()
                        && !matches!(first.as_str(), "CMD" | "CMD-SHELL" | "NONE")
                    {
                        self.error(
                            &["healthcheck", "test"],
                            format!("a healthcheck test list starts with CMD, CMD-SHELL or NONE, found {first:?}"),
                        );
                    }
                    l.clone()
                }
            }
        };
        Some(Healthcheck {
            test,
            interval: h.interval.map(|d| d.0),
            timeout: h.timeout.map(|d| d.0),
            retries: h.retries,
            start_period: h.start_period.map(|d| d.0),
            start_interval: h.start_interval.map(|d| d.0),
        })
    }

    fn file_refs(&mut self, refs: &Option<Vec<FileRefConfig>>, kind: &str) -> Vec<FileReference> {
        let Some(refs) = refs else { return Vec::new() };
        let section = if kind == "secrets" {
            self.refs.secrets
        } else {
            self.refs.configs
        };
        let mut out = Vec::new();
        for (i, r) in refs.iter().enumerate() {
            let idx = format!("#{i}");
            let Some((cfg, _)) = section.get(&r.source) else {
                self.error(
                    &[kind, &idx],
                    format!(
                        "{} {:?} is not declared; add it under the top-level `{kind}:`",
                        kind.trim_end_matches('s'),
                        r.source
                    ),
                );
                continue;
            };
            let source = object_name(self.cx.stack, &r.source, &cfg.name, &cfg.external);
            let target = match (kind, &r.target) {
                ("secrets", Some(t)) => t.strip_prefix("/run/secrets/").unwrap_or(t).to_string(),
                ("secrets", None) => r.source.clone(),
                (_, Some(t)) => t.clone(),
                (_, None) => format!("/{}", r.source),
            };
            out.push(FileReference {
                source,
                target,
                uid: r.uid.clone().unwrap_or_else(|| "0".to_string()),
                gid: r.gid.clone().unwrap_or_else(|| "0".to_string()),
                mode: r.mode.map(|m| m.0).unwrap_or(DEFAULT_FILE_MODE),
            });
        }
        out
    }

    fn named_volume(
        &mut self,
        keys: &[&str],
        source: &str,
        nocopy: bool,
        subpath: Option<String>,
    ) -> Option<Mount> {
        let Some((vol, _)) = self.refs.volumes.get(source) else {
            self.error(
                keys,
                format!("volume {source:?} is not declared; add it under the top-level `volumes:` (or write a path such as ./{source} for a bind mount)"),
            );
            return None;
        };
        let external = vol.external.as_ref().is_some_and(External::is_external);
        let name = object_name(self.cx.stack, source, &vol.name, &vol.external);
        let options = if external {
            (nocopy || subpath.is_some()).then(|| VolumeOptions {
                no_copy: nocopy,
                subpath,
                ..VolumeOptions::default()
            })
        } else {
            Some(VolumeOptions {
                no_copy: nocopy,
                labels: stack_labels(self.cx.stack, &vol.labels),
                driver_config: vol.driver.as_ref().map(|d| Driver {
                    name: d.clone(),
                    options: vol
                        .driver_opts
                        .as_ref()
                        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect())
                        .unwrap_or_default(),
                }),
                subpath,
            })
        };
        Some(Mount {
            type_: MountType::Volume,
            source: name,
            target: String::new(),
            read_only: false,
            bind_options: None,
            volume_options: options,
            tmpfs_options: None,
        })
    }

    fn mounts(&mut self, svc: &ServiceConfig) -> Vec<Mount> {
        let Some(vols) = &svc.volumes else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, v) in vols.iter().enumerate() {
            let idx = format!("#{i}");
            let keys = ["volumes", idx.as_str()];
            let mount = match v {
                ServiceVolume::Short {
                    source,
                    target,
                    read_only,
                    options,
                } => {
                    let nocopy = options.iter().any(|o| o == "nocopy");
                    let propagation = options
                        .iter()
                        .find(|o| {
                            o.contains("shared") || o.contains("slave") || o.contains("private")
                        })
                        .cloned();
                    match source {
                        None => Some(Mount {
                            type_: MountType::Volume,
                            ..Mount::default()
                        }),
                        Some(src) if is_path(src) => Some(Mount {
                            type_: MountType::Bind,
                            source: self.cx.resolve(src).to_string_lossy().into_owned(),
                            bind_options: propagation.map(|p| BindOptions {
                                propagation: Some(p),
                            }),
                            ..Mount::default()
                        }),
                        Some(src) => self.named_volume(&keys, src, nocopy, None),
                    }
                    .map(|mut m| {
                        m.target = target.clone();
                        m.read_only = *read_only;
                        m
                    })
                }
                ServiceVolume::Long(l) => {
                    let m = match l.type_ {
                        VolumeTypeConfig::Volume => {
                            match l.source.as_deref().filter(|s| !s.is_empty()) {
                                None => Some(Mount {
                                    type_: MountType::Volume,
                                    volume_options: l.volume.as_ref().map(|v| VolumeOptions {
                                        no_copy: v.nocopy.unwrap_or(false),
                                        subpath: v.subpath.clone(),
                                        ..VolumeOptions::default()
                                    }),
                                    ..Mount::default()
                                }),
                                Some(src) => {
                                    let (nocopy, subpath) = l
                                        .volume
                                        .as_ref()
                                        .map(|v| (v.nocopy.unwrap_or(false), v.subpath.clone()))
                                        .unwrap_or((false, None));
                                    self.named_volume(&keys, src, nocopy, subpath)
                                }
                            }
                        }
                        VolumeTypeConfig::Bind => {
                            match l.source.as_deref().filter(|s| !s.is_empty()) {
                                None => {
                                    self.error(&keys, "a bind mount needs a `source` path");
                                    None
                                }
                                Some(src) => Some(Mount {
                                    type_: MountType::Bind,
                                    source: self.cx.resolve(src).to_string_lossy().into_owned(),
                                    bind_options: l
                                        .bind
                                        .as_ref()
                                        .and_then(|b| b.propagation.clone())
                                        .map(|p| BindOptions {
                                            propagation: Some(p),
                                        }),
                                    ..Mount::default()
                                }),
                            }
                        }
                        VolumeTypeConfig::Tmpfs => {
                            if l.source.as_deref().is_some_and(|s| !s.is_empty()) {
                                self.error(&keys, "a tmpfs mount takes no `source`");
                            }
                            Some(Mount {
                                type_: MountType::Tmpfs,
                                tmpfs_options: l.tmpfs.as_ref().and_then(|t| t.size).map(|s| {
                                    TmpfsOptions {
                                        size_bytes: Some(s.0),
                                        mode: None,
                                    }
                                }),
                                ..Mount::default()
                            })
                        }
                    };
                    m.map(|mut m| {
                        m.target = l.target.clone();
                        m.read_only = l.read_only.unwrap_or(false);
                        m
                    })
                }
            };
            out.extend(mount);
        }
        out
    }

    fn networks(
        &mut self,
        svc: &ServiceConfig,
        used: &mut BTreeSet<String>,
    ) -> Vec<NetworkAttachmentConfig> {
        let entries = match &svc.networks {
            Some(n) => n.entries(),
            None => BTreeMap::new(),
        };
        let entries = if entries.is_empty() {
            BTreeMap::from([("default".to_string(), ServiceNetworkConfig::default())])
        } else {
            entries
        };
        let mut out = Vec::new();
        for (net, cfg) in entries {
            let declared = self.refs.networks.get(&net);
            if declared.is_none() && net != "default" {
                self.error(
                    &["networks", &net],
                    format!(
                        "network {net:?} is not declared; add it under the top-level `networks:`"
                    ),
                );
                continue;
            }
            used.insert(net.clone());
            let target = match declared {
                Some((c, _)) => object_name(self.cx.stack, &net, &c.name, &c.external),
                None => scoped(self.cx.stack, &net),
            };
            let mut aliases = cfg.aliases.clone().unwrap_or_default();
            // Only user-defined networks take aliases (not host, bridge, none).
            if !matches!(target.as_str(), "host" | "bridge" | "none") {
                aliases.push(self.name.to_string());
            }
            out.push(NetworkAttachmentConfig {
                target,
                aliases,
                driver_opts: BTreeMap::new(),
            });
        }
        out.sort_by(|a, b| a.target.cmp(&b.target));
        out
    }

    fn ports(&mut self, svc: &ServiceConfig) -> Vec<PortConfig> {
        let Some(ports) = &svc.ports else {
            return Vec::new();
        };
        let mut out: Vec<PortConfig> = Vec::new();
        for (i, p) in ports.iter().enumerate() {
            match p {
                ServicePort::Short { ports, host_ip } => {
                    if let Some(ip) = host_ip {
                        self.warn(
                            &["ports", &format!("#{i}")],
                            format!("ignoring IP-address {ip:?}: the service will listen on 0.0.0.0 (use `mode: host` ports to bind per node)"),
                        );
                    }
                    for s in ports {
                        out.push(PortConfig {
                            name: String::new(),
                            protocol: match s.protocol.as_str() {
                                "udp" => PortProtocol::Udp,
                                "sctp" => PortProtocol::Sctp,
                                _ => PortProtocol::Tcp,
                            },
                            target_port: s.target,
                            published_port: s.published,
                            publish_mode: PublishMode::Ingress,
                        });
                    }
                }
                ServicePort::Long(l) => out.push(PortConfig {
                    name: String::new(),
                    protocol: match l.protocol {
                        Some(ProtocolConfig::Udp) => PortProtocol::Udp,
                        Some(ProtocolConfig::Sctp) => PortProtocol::Sctp,
                        _ => PortProtocol::Tcp,
                    },
                    target_port: l.target,
                    published_port: l.published,
                    publish_mode: match l.mode {
                        Some(PublishModeConfig::Host) => PublishMode::Host,
                        _ => PublishMode::Ingress,
                    },
                }),
            }
        }
        out.sort_by_key(|p| (p.published_port, p.target_port, p.protocol, p.publish_mode));
        out.dedup();
        out
    }

    fn mode(&mut self, d: &DeployConfig) -> ServiceMode {
        let replicas = d.replicas.unwrap_or(1);
        match d.mode.unwrap_or(DeployMode::Replicated) {
            DeployMode::Replicated => ServiceMode::Replicated { replicas },
            DeployMode::ReplicatedJob => ServiceMode::ReplicatedJob {
                max_concurrent: replicas,
                total_completions: replicas,
            },
            m @ (DeployMode::Global | DeployMode::GlobalJob) => {
                if d.replicas.is_some() {
                    self.error(
                        &["deploy", "replicas"],
                        "`replicas` cannot be used with a global mode (a global service runs one task per node); remove it",
                    );
                }
                if m == DeployMode::Global {
                    ServiceMode::Global {}
                } else {
                    ServiceMode::GlobalJob {}
                }
            }
        }
    }

    fn resources(&mut self, r: &ResourcesConfig) -> ResourceRequirements {
        let conv = |c: &Option<ResourceConfig>| -> Resources {
            let Some(c) = c else {
                return Resources::default();
            };
            Resources {
                nano_cpus: c.cpus.map(|v| v.0).unwrap_or(0),
                memory_bytes: c.memory.map(|v| v.0).unwrap_or(0),
                pids: c.pids.unwrap_or(0),
                generic_resources: c
                    .generic_resources
                    .as_deref()
                    .unwrap_or_default()
                    .iter()
                    .map(|g| GenericResource {
                        kind: g.discrete_resource_spec.kind.clone(),
                        value: g.discrete_resource_spec.value,
                    })
                    .collect(),
            }
        };
        if r.limits
            .as_ref()
            .is_some_and(|l| l.generic_resources.is_some())
        {
            self.error(
                &["deploy", "resources", "limits", "generic_resources"],
                "generic_resources are reservations only; move them under `reservations:`",
            );
        }
        if r.reservations.as_ref().is_some_and(|l| l.pids.is_some()) {
            self.error(
                &["deploy", "resources", "reservations", "pids"],
                "pids is a limit only; move it under `limits:`",
            );
        }
        ResourceRequirements {
            limits: conv(&r.limits),
            reservations: conv(&r.reservations),
        }
    }

    fn restart_policy(&mut self, svc: &ServiceConfig, d: &DeployConfig) -> RestartPolicy {
        let mut policy = RestartPolicy::default();
        if let Some(rp) = &d.restart_policy {
            policy.condition = match rp.condition {
                Some(RestartConditionConfig::None) => RestartCondition::None,
                Some(RestartConditionConfig::OnFailure) => RestartCondition::OnFailure,
                _ => RestartCondition::Any,
            };
            if let Some(delay) = rp.delay {
                policy.delay = delay.0;
            }
            policy.max_attempts = rp.max_attempts.unwrap_or(0);
            policy.window = rp.window.map(|w| w.0).unwrap_or(Duration::ZERO);
            return policy;
        }
        let Some(restart) = svc.restart.as_deref() else {
            return policy;
        };
        match restart {
            "always" | "unless-stopped" => policy.condition = RestartCondition::Any,
            "no" | "" => policy.condition = RestartCondition::None,
            "on-failure" => policy.condition = RestartCondition::OnFailure,
            other => match other.strip_prefix("on-failure:").map(|n| n.parse::<u64>()) {
                Some(Ok(n)) => {
                    policy.condition = RestartCondition::OnFailure;
                    policy.max_attempts = n;
                }
                _ => self.error(
                    &["restart"],
                    format!("invalid restart policy {other:?}: use no, always, unless-stopped or on-failure[:N]"),
                ),
            },
        }
        policy
    }
}

fn is_path(src: &str) -> bool {
    src.starts_with('/') || src.starts_with('.') || src.starts_with('~')
}

/// A present block: parallelism 1 unless given (0 = all), a zero monitor becomes 5s.
fn update_config(u: &UpdateConfigConfig) -> UpdateConfig {
    let d = UpdateConfig::default();
    UpdateConfig {
        parallelism: u.parallelism.unwrap_or(1),
        delay: u.delay.map(|v| v.0).unwrap_or(Duration::ZERO),
        failure_action: match u.failure_action {
            Some(FailureActionConfig::Continue) => FailureAction::Continue,
            Some(FailureActionConfig::Rollback) => FailureAction::Rollback,
            _ => FailureAction::Pause,
        },
        monitor: u
            .monitor
            .map(|v| v.0)
            .filter(|m| !m.is_zero())
            .unwrap_or(d.monitor),
        max_failure_ratio: u.max_failure_ratio.unwrap_or(0.0),
        order: match u.order {
            Some(OrderConfig::StartFirst) => UpdateOrder::StartFirst,
            _ => UpdateOrder::StopFirst,
        },
        start_timeout: None,
    }
}
