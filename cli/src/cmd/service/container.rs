//! The container flags that add to or take from a list: mounts, extra hosts, DNS, groups,
//! capabilities, sysctls and ulimits. `service create` only adds (`--mount`, `--host`, …),
//! `service update` adds and removes (`--mount-add`, `--mount-rm`, …), both through
//! [`UpdateLists::apply`].

use swarm_api::{ContainerSpec, Mount, Ulimit};

use super::parse;

/// `service create`'s list flags: each adds to its list.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct CreateLists {
    /// Attach a filesystem mount: type=bind|volume|tmpfs,source=…,target=…[,readonly].
    #[arg(long = "mount", value_name = "MOUNT", help_heading = "Container")]
    pub mounts: Vec<String>,
    /// Add a line to /etc/hosts: HOST:IP.
    #[arg(long = "host", value_name = "HOST:IP", help_heading = "Container")]
    pub hosts: Vec<String>,
    /// Set a DNS server.
    #[arg(long = "dns", value_name = "IP", help_heading = "Container")]
    pub dns: Vec<String>,
    /// Set a DNS search domain.
    #[arg(long = "dns-search", value_name = "DOMAIN", help_heading = "Container")]
    pub dns_search: Vec<String>,
    /// Set a DNS option (e.g. ndots:2).
    #[arg(long = "dns-option", value_name = "OPTION", help_heading = "Container")]
    pub dns_option: Vec<String>,
    /// Add a supplementary group for the user.
    #[arg(long = "group", value_name = "GROUP", help_heading = "Container")]
    pub groups: Vec<String>,
    /// Add a Linux capability (e.g. NET_ADMIN).
    #[arg(long, value_name = "CAP", help_heading = "Container")]
    pub cap_add: Vec<String>,
    /// Drop a Linux capability.
    #[arg(long, value_name = "CAP", help_heading = "Container")]
    pub cap_drop: Vec<String>,
    /// Set a kernel parameter, KEY=VALUE.
    #[arg(long = "sysctl", value_name = "KEY=VALUE", help_heading = "Container")]
    pub sysctls: Vec<String>,
    /// Set a ulimit, NAME=SOFT[:HARD] (e.g. nofile=1024:2048).
    #[arg(long = "ulimit", value_name = "ULIMIT", help_heading = "Container")]
    pub ulimits: Vec<String>,
}

/// `service update`'s list flags: `-add` adds or replaces, `-rm` removes.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct UpdateLists {
    /// Add or replace a mount (by target): type=…,source=…,target=…[,readonly].
    #[arg(long, value_name = "MOUNT", help_heading = "Container")]
    pub mount_add: Vec<String>,
    /// Remove the mount at a target path.
    #[arg(long, value_name = "PATH", help_heading = "Container")]
    pub mount_rm: Vec<String>,
    /// Add a line to /etc/hosts: HOST:IP.
    #[arg(long, value_name = "HOST:IP", help_heading = "Container")]
    pub host_add: Vec<String>,
    /// Remove the /etc/hosts lines of HOST (or exactly HOST:IP).
    #[arg(long, value_name = "HOST", help_heading = "Container")]
    pub host_rm: Vec<String>,
    /// Add a DNS server.
    #[arg(long, value_name = "IP", help_heading = "Container")]
    pub dns_add: Vec<String>,
    /// Remove a DNS server.
    #[arg(long, value_name = "IP", help_heading = "Container")]
    pub dns_rm: Vec<String>,
    /// Add a DNS search domain.
    #[arg(long, value_name = "DOMAIN", help_heading = "Container")]
    pub dns_search_add: Vec<String>,
    /// Remove a DNS search domain.
    #[arg(long, value_name = "DOMAIN", help_heading = "Container")]
    pub dns_search_rm: Vec<String>,
    /// Add a DNS option.
    #[arg(long, value_name = "OPTION", help_heading = "Container")]
    pub dns_option_add: Vec<String>,
    /// Remove a DNS option.
    #[arg(long, value_name = "OPTION", help_heading = "Container")]
    pub dns_option_rm: Vec<String>,
    /// Add a supplementary group.
    #[arg(long, value_name = "GROUP", help_heading = "Container")]
    pub group_add: Vec<String>,
    /// Remove a supplementary group.
    #[arg(long, value_name = "GROUP", help_heading = "Container")]
    pub group_rm: Vec<String>,
    /// Add a Linux capability (and stop dropping it).
    #[arg(long, value_name = "CAP", help_heading = "Container")]
    pub cap_add: Vec<String>,
    /// Drop a Linux capability (and stop adding it).
    #[arg(long, value_name = "CAP", help_heading = "Container")]
    pub cap_drop: Vec<String>,
    /// Add or change a kernel parameter, KEY=VALUE.
    #[arg(long, value_name = "KEY=VALUE", help_heading = "Container")]
    pub sysctl_add: Vec<String>,
    /// Remove a kernel parameter.
    #[arg(long, value_name = "KEY", help_heading = "Container")]
    pub sysctl_rm: Vec<String>,
    /// Add or replace a ulimit, NAME=SOFT[:HARD].
    #[arg(long, value_name = "ULIMIT", help_heading = "Container")]
    pub ulimit_add: Vec<String>,
    /// Remove a ulimit by name.
    #[arg(long, value_name = "NAME", help_heading = "Container")]
    pub ulimit_rm: Vec<String>,
}

impl CreateLists {
    /// Adds every item to `c`.
    pub fn apply(&self, c: &mut ContainerSpec) -> anyhow::Result<()> {
        UpdateLists {
            mount_add: self.mounts.clone(),
            host_add: self.hosts.clone(),
            dns_add: self.dns.clone(),
            dns_search_add: self.dns_search.clone(),
            dns_option_add: self.dns_option.clone(),
            group_add: self.groups.clone(),
            cap_add: self.cap_add.clone(),
            cap_drop: self.cap_drop.clone(),
            sysctl_add: self.sysctls.clone(),
            ulimit_add: self.ulimits.clone(),
            ..UpdateLists::default()
        }
        .apply(c)
    }
}

impl UpdateLists {
    /// Removes, then adds (so `--x-rm A --x-add A` replaces A), each list as docker does.
    pub fn apply(&self, c: &mut ContainerSpec) -> anyhow::Result<()> {
        c.mounts.retain(|m| !self.mount_rm.contains(&m.target));
        for m in &self.mount_add {
            let m = mount(m)?;
            c.mounts.retain(|x| x.target != m.target);
            c.mounts.push(m);
        }
        c.hosts.retain(|h| {
            !self
                .host_rm
                .iter()
                .any(|rm| h == rm || host_name(h) == Some(rm.as_str()))
        });
        for h in &self.host_add {
            if host_name(h).is_none() {
                anyhow::bail!("invalid host {h:?}: use HOST:IP, e.g. db:10.0.0.5");
            }
            add(&mut c.hosts, h);
        }
        edit(&mut c.dns_config.nameservers, &self.dns_add, &self.dns_rm);
        edit(
            &mut c.dns_config.search,
            &self.dns_search_add,
            &self.dns_search_rm,
        );
        edit(
            &mut c.dns_config.options,
            &self.dns_option_add,
            &self.dns_option_rm,
        );
        edit(&mut c.groups, &self.group_add, &self.group_rm);
        edit(&mut c.cap_add, &self.cap_add, &self.cap_drop);
        edit(&mut c.cap_drop, &self.cap_drop, &self.cap_add);
        for k in &self.sysctl_rm {
            c.sysctls.remove(k);
        }
        for s in &self.sysctl_add {
            match s.split_once('=') {
                Some((k, v)) if !k.is_empty() => {
                    c.sysctls.insert(k.to_string(), v.to_string());
                }
                _ => anyhow::bail!(
                    "invalid sysctl {s:?}: use KEY=VALUE, e.g. net.core.somaxconn=1024"
                ),
            }
        }
        c.ulimits.retain(|u| !self.ulimit_rm.contains(&u.name));
        for u in &self.ulimit_add {
            let u = ulimit(u)?;
            c.ulimits.retain(|x| x.name != u.name);
            c.ulimits.push(u);
        }
        Ok(())
    }
}

/// Removes `rm`, then appends each of `adds` not already there.
fn edit(list: &mut Vec<String>, adds: &[String], rm: &[String]) {
    list.retain(|x| !rm.contains(x));
    for a in adds {
        add(list, a);
    }
}

fn add(list: &mut Vec<String>, item: &str) {
    if !list.iter().any(|x| x == item) {
        list.push(item.to_string());
    }
}

/// The host of a `HOST:IP` entry (docker also accepts `HOST=IP`).
fn host_name(entry: &str) -> Option<&str> {
    let (host, ip) = entry.split_once([':', '='])?;
    (!host.is_empty() && !ip.is_empty()).then_some(host)
}

/// A mount in docker's `--mount` syntax: comma-separated `KEY=VALUE` fields —
/// `type` (volume, bind, tmpfs), `source`/`src`, `target`/`destination`/`dst`,
/// `readonly`/`ro` (alone or `=true|false`), `bind-propagation`, `volume-nocopy`,
/// `volume-label`, `volume-driver`, `volume-opt`, `volume-subpath`, `tmpfs-size`, `tmpfs-mode`.
pub fn mount(s: &str) -> anyhow::Result<Mount> {
    let bad = |why: String| {
        anyhow::anyhow!(
            "invalid --mount {s:?}: {why}; use e.g. type=bind,source=/data,target=/data,readonly"
        )
    };
    let flag = |k: &str, v: Option<&str>| match v {
        None | Some("true") | Some("1") => Ok(true),
        Some("false") | Some("0") => Ok(false),
        Some(v) => Err(bad(format!("{k} is true or false, not {v:?}"))),
    };
    let mut m = Mount::default();
    for field in s.split(',').filter(|f| !f.is_empty()) {
        let (k, v) = match field.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v)),
            None => (field.trim(), None),
        };
        let value = || v.ok_or_else(|| bad(format!("{k} needs a value ({k}=…)")));
        match k {
            "type" => {
                m.type_ = parse::wire_enum(value()?)
                    .map_err(|_| bad("type is volume, bind or tmpfs".into()))?
            }
            "source" | "src" => m.source = value()?.to_string(),
            "target" | "destination" | "dst" => m.target = value()?.to_string(),
            "readonly" | "ro" => m.read_only = flag(k, v)?,
            "bind-propagation" => {
                m.bind_options
                    .get_or_insert_with(Default::default)
                    .propagation = Some(value()?.to_string())
            }
            "volume-nocopy" => {
                m.volume_options
                    .get_or_insert_with(Default::default)
                    .no_copy = flag(k, v)?
            }
            "volume-label" => {
                let (lk, lv) = parse::key_value(value()?);
                m.volume_options
                    .get_or_insert_with(Default::default)
                    .labels
                    .insert(lk, lv);
            }
            "volume-driver" => {
                let o = m.volume_options.get_or_insert_with(Default::default);
                o.driver_config.get_or_insert_with(Default::default).name = value()?.to_string();
            }
            "volume-opt" => {
                let (ok, ov) = parse::key_value(value()?);
                let o = m.volume_options.get_or_insert_with(Default::default);
                o.driver_config
                    .get_or_insert_with(Default::default)
                    .options
                    .insert(ok, ov);
            }
            "volume-subpath" => {
                m.volume_options
                    .get_or_insert_with(Default::default)
                    .subpath = Some(value()?.to_string())
            }
            "tmpfs-size" => {
                m.tmpfs_options
                    .get_or_insert_with(Default::default)
                    .size_bytes =
                    Some(parse::bytes(value()?).map_err(|e| bad(format!("tmpfs-size: {e}")))?)
            }
            "tmpfs-mode" => {
                let v = value()?;
                let mode = u32::from_str_radix(v.trim_start_matches("0o"), 8)
                    .map_err(|_| bad(format!("tmpfs-mode is octal, e.g. 1777, not {v:?}")))?;
                m.tmpfs_options.get_or_insert_with(Default::default).mode = Some(mode)
            }
            other => return Err(bad(format!("unknown key {other:?}"))),
        }
    }
    if m.target.is_empty() {
        return Err(bad("target is required".into()));
    }
    Ok(m)
}

/// A ulimit: `NAME=SOFT[:HARD]` (hard defaults to soft).
pub fn ulimit(s: &str) -> anyhow::Result<Ulimit> {
    let bad =
        || anyhow::anyhow!("invalid ulimit {s:?}: use NAME=SOFT[:HARD], e.g. nofile=1024:2048");
    let (name, limits) = s.split_once('=').ok_or_else(bad)?;
    let (soft, hard) = limits.split_once(':').unwrap_or((limits, limits));
    let num = |v: &str| v.trim().parse::<i64>().map_err(|_| bad());
    if name.is_empty() {
        return Err(bad());
    }
    Ok(Ulimit {
        name: name.to_string(),
        soft: num(soft)?,
        hard: num(hard)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_api::MountType;

    #[test]
    fn mounts_read_like_docker() {
        let m = mount("type=bind,source=/data,target=/srv,readonly").unwrap();
        assert_eq!(m.type_, MountType::Bind);
        assert_eq!((m.source.as_str(), m.target.as_str()), ("/data", "/srv"));
        assert!(m.read_only);
        let v = mount("src=cache,dst=/cache,volume-nocopy,volume-label=a=b").unwrap();
        assert_eq!(v.type_, MountType::Volume);
        let o = v.volume_options.unwrap();
        assert!(o.no_copy);
        assert_eq!(o.labels["a"], "b");
        let t = mount("type=tmpfs,target=/tmp,tmpfs-size=64M,tmpfs-mode=1777").unwrap();
        let o = t.tmpfs_options.unwrap();
        assert_eq!(o.size_bytes, Some(64 * 1024 * 1024));
        assert_eq!(o.mode, Some(0o1777));
        let err = mount("type=nfs,target=/x").unwrap_err().to_string();
        assert!(err.contains("type is volume, bind or tmpfs"), "{err}");
        let err = mount("source=/a").unwrap_err().to_string();
        assert!(err.contains("target is required"), "{err}");
        assert!(mount("target=/a,ro=maybe").is_err());
    }

    #[test]
    fn ulimits() {
        assert_eq!(
            ulimit("nofile=1024:2048").unwrap(),
            Ulimit {
                name: "nofile".into(),
                soft: 1024,
                hard: 2048
            }
        );
        assert_eq!(ulimit("nproc=64").unwrap().hard, 64);
        assert!(ulimit("nofile").is_err());
        assert!(ulimit("nofile=x").is_err());
    }

    #[test]
    fn update_removes_then_adds() {
        let mut c = ContainerSpec::default();
        CreateLists {
            mounts: vec!["type=volume,source=a,target=/a".into()],
            hosts: vec!["db:10.0.0.5".into(), "cache:10.0.0.6".into()],
            dns: vec!["1.1.1.1".into()],
            cap_add: vec!["NET_ADMIN".into()],
            sysctls: vec!["net.core.somaxconn=1024".into()],
            ulimits: vec!["nofile=10".into()],
            ..CreateLists::default()
        }
        .apply(&mut c)
        .unwrap();
        UpdateLists {
            mount_add: vec!["type=volume,source=b,target=/a".into()],
            host_rm: vec!["db".into()],
            dns_add: vec!["8.8.8.8".into(), "1.1.1.1".into()],
            cap_drop: vec!["NET_ADMIN".into()],
            sysctl_rm: vec!["net.core.somaxconn".into()],
            ulimit_add: vec!["nofile=20:30".into()],
            ..UpdateLists::default()
        }
        .apply(&mut c)
        .unwrap();
        assert_eq!(c.mounts.len(), 1);
        assert_eq!(c.mounts[0].source, "b", "replaced by target");
        assert_eq!(c.hosts, ["cache:10.0.0.6"]);
        assert_eq!(c.dns_config.nameservers, ["1.1.1.1", "8.8.8.8"]);
        assert!(c.cap_add.is_empty());
        assert_eq!(c.cap_drop, ["NET_ADMIN"]);
        assert!(c.sysctls.is_empty());
        assert_eq!((c.ulimits[0].soft, c.ulimits[0].hard), (20, 30));
        let bad = UpdateLists {
            host_add: vec!["nohost".into()],
            ..UpdateLists::default()
        };
        assert!(bad.apply(&mut c).is_err());
    }
}
