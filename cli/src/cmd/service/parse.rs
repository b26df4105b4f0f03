//! Parsers for `service create|update` flag values, with docker's syntax: `KEY=VALUE` pairs,
//! published ports (`8080:80/udp`, `published=8080,target=80,mode=host`), durations, sizes,
//! CPUs, and the wire names of enums (`on-failure`, `start-first`).

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use swarm_api::{Duration, FileReference, PortConfig, PortProtocol, PublishMode};

/// `KEY=VALUE` → `(KEY, VALUE)`; a bare `KEY` has an empty value (labels).
pub fn key_value(s: &str) -> (String, String) {
    match s.split_once('=') {
        Some((k, v)) => (k.to_string(), v.to_string()),
        None => (s.to_string(), String::new()),
    }
}

/// An environment entry: `KEY=VALUE`, or `KEY` to pass this shell's value on (as docker does).
pub fn env_entry(
    s: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<(String, String)> {
    match s.split_once('=') {
        Some(("", _)) => anyhow::bail!("invalid --env {s:?}: the name is empty"),
        Some((k, v)) => Ok((k.to_string(), v.to_string())),
        None => match lookup(s) {
            Some(v) => Ok((s.to_string(), v)),
            None => anyhow::bail!(
                "--env {s}: {s} is not set in this shell; give a value with --env {s}=VALUE"
            ),
        },
    }
}

/// The entries of an env file, as docker reads `--env-file`: one `KEY=VALUE` (or `KEY`, this
/// shell's value) per line; blank lines and lines starting with `#` are skipped.
pub fn env_file(
    path: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read --env-file {path}: {e}"))?;
    let mut entries = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let entry =
            env_entry(line, lookup).map_err(|e| anyhow::anyhow!("{path}:{}: {e}", i + 1))?;
        entries.push(entry);
    }
    Ok(entries)
}

/// A placement preference: `spread=node.labels.KEY`.
pub fn placement_pref(s: &str) -> anyhow::Result<swarm_api::PlacementPreference> {
    let spread = s
        .strip_prefix("spread=")
        .filter(|l| !l.is_empty())
        .ok_or_else(|| {
            anyhow::anyhow!("invalid placement preference {s:?}: use spread=node.labels.KEY")
        })?;
    Ok(swarm_api::PlacementPreference {
        spread: spread.to_string(),
    })
}

/// Labels from `KEY=VALUE` flags.
pub fn labels(items: &[String]) -> BTreeMap<String, String> {
    items.iter().map(|s| key_value(s)).collect()
}

/// A published port in docker's short (`[PUBLISHED:]TARGET[/PROTOCOL]`) or long
/// (`published=…,target=…,protocol=…,mode=ingress|host`) syntax.
pub fn port(s: &str) -> anyhow::Result<PortConfig> {
    let bad = |why: &str| {
        anyhow::anyhow!(
            "invalid --publish {s:?}: {why}; use PUBLISHED:TARGET[/PROTOCOL] (8080:80/tcp) or \
             published=8080,target=80[,protocol=udp][,mode=host]"
        )
    };
    let num = |v: &str| {
        v.trim()
            .parse::<u16>()
            .map_err(|_| bad(&format!("{v:?} is not a port number")))
    };
    let mut p = PortConfig::default();
    if s.contains('=') {
        let mut target = None;
        for field in s.split(',') {
            let (k, v) = field
                .split_once('=')
                .ok_or_else(|| bad(&format!("{field:?} is not KEY=VALUE")))?;
            match k.trim() {
                "published" => p.published_port = Some(num(v)?),
                "target" => target = Some(num(v)?),
                "protocol" => {
                    p.protocol = wire_enum::<PortProtocol>(v)
                        .map_err(|_| bad("protocol is tcp, udp or sctp"))?
                }
                "mode" => {
                    p.publish_mode =
                        wire_enum::<PublishMode>(v).map_err(|_| bad("mode is ingress or host"))?
                }
                "name" => p.name = v.to_string(),
                other => return Err(bad(&format!("unknown key {other:?}"))),
            }
        }
        p.target_port = target.ok_or_else(|| bad("target is required"))?;
        return Ok(p);
    }
    let (ports, proto) = match s.split_once('/') {
        Some((ports, proto)) => (ports, Some(proto)),
        None => (s, None),
    };
    if let Some(proto) = proto {
        p.protocol = wire_enum::<PortProtocol>(proto)
            .map_err(|_| bad("the protocol is tcp, udp or sctp"))?;
    }
    match ports.split_once(':') {
        Some((published, target)) => {
            p.published_port = Some(num(published)?);
            p.target_port = num(target)?;
        }
        None => p.target_port = num(ports)?,
    }
    Ok(p)
}

/// A secret or config given to tasks: `NAME` or `source=NAME[,target=PATH][,uid=…][,gid=…][,mode=0440]`.
/// A secret's file defaults to its name under `/run/secrets/`; a config's to `/NAME`.
pub fn file_reference(s: &str, config: bool) -> anyhow::Result<FileReference> {
    let mut r = FileReference {
        uid: "0".into(),
        gid: "0".into(),
        mode: swarm_api::DEFAULT_FILE_MODE,
        ..Default::default()
    };
    if s.contains('=') {
        for field in s.split(',') {
            let (k, v) = key_value(field);
            match k.as_str() {
                "source" | "src" => r.source = v,
                "target" => r.target = v,
                "uid" => r.uid = v,
                "gid" => r.gid = v,
                "mode" => {
                    r.mode = u32::from_str_radix(v.trim_start_matches("0o"), 8).map_err(|_| {
                        anyhow::anyhow!("invalid mode {v:?} in {s:?}: use octal, e.g. 0440")
                    })?
                }
                other => anyhow::bail!(
                    "invalid reference {s:?}: unknown key {other:?} (source, target, uid, gid, mode)"
                ),
            }
        }
    } else {
        r.source = s.to_string();
    }
    if r.source.is_empty() {
        anyhow::bail!("invalid reference {s:?}: source is required");
    }
    if r.target.is_empty() {
        r.target = if config {
            format!("/{}", r.source)
        } else {
            r.source.clone()
        };
    }
    Ok(r)
}

/// `10s`, `1m30s`, `500ms`.
pub fn duration(s: &str) -> Result<Duration, String> {
    s.parse::<Duration>().map_err(|e| e.to_string())
}

/// `512M`, `1g` → bytes.
pub fn bytes(s: &str) -> Result<i64, String> {
    swarm_api::stack::parse_bytes(s)
}

/// `0.5` CPUs → nano-CPUs.
pub fn cpus(s: &str) -> Result<i64, String> {
    swarm_api::stack::parse_cpus(s)
}

/// An enum from its wire spelling (`on-failure`, `start-first`, `drain`).
pub fn wire_enum<T: DeserializeOwned>(s: &str) -> anyhow::Result<T> {
    Ok(serde_json::from_value(serde_json::Value::String(
        s.trim().to_string(),
    ))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_short_and_long() {
        let p = port("8080:80").unwrap();
        assert_eq!(
            (p.published_port, p.target_port, p.protocol),
            (Some(8080), 80, PortProtocol::Tcp)
        );
        let p = port("53:53/udp").unwrap();
        assert_eq!(p.protocol, PortProtocol::Udp);
        let p = port("80").unwrap();
        assert_eq!((p.published_port, p.target_port), (None, 80));
        let p = port("published=9000,target=90,mode=host,protocol=udp").unwrap();
        assert_eq!(
            (p.published_port, p.target_port, p.publish_mode, p.protocol),
            (Some(9000), 90, PublishMode::Host, PortProtocol::Udp)
        );
        let err = port("80:http").unwrap_err().to_string();
        assert!(
            err.contains("\"http\" is not a port number") && err.contains("PUBLISHED:TARGET"),
            "{err}"
        );
        assert!(
            port("published=80")
                .unwrap_err()
                .to_string()
                .contains("target is required")
        );
        assert!(port("80/icmp").is_err());
    }

    #[test]
    fn env_files_and_placement_prefs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.env");
        std::fs::write(&path, "# comment\n\nA=1\n  B=two words\nTOKEN\n").unwrap();
        let path = path.to_str().unwrap();
        let lookup = |k: &str| (k == "TOKEN").then(|| "s3cret".to_string());
        assert_eq!(
            env_file(path, &lookup).unwrap(),
            [
                ("A".to_string(), "1".to_string()),
                ("B".to_string(), "two words".to_string()),
                ("TOKEN".to_string(), "s3cret".to_string())
            ]
        );
        std::fs::write(dir.path().join("bad.env"), "A=1\nMISSING\n").unwrap();
        let bad = dir.path().join("bad.env");
        let err = env_file(bad.to_str().unwrap(), &lookup)
            .unwrap_err()
            .to_string();
        assert!(err.contains("bad.env:2:"), "{err}");
        assert_eq!(
            placement_pref("spread=node.labels.zone").unwrap().spread,
            "node.labels.zone"
        );
        assert!(placement_pref("binpack=x").is_err());
    }

    #[test]
    fn env_entries() {
        let lookup = |k: &str| (k == "HOME").then(|| "/root".to_string());
        assert_eq!(
            env_entry("A=b=c", &lookup).unwrap(),
            ("A".into(), "b=c".into())
        );
        assert_eq!(
            env_entry("HOME", &lookup).unwrap(),
            ("HOME".into(), "/root".into())
        );
        let err = env_entry("NOPE", &lookup).unwrap_err().to_string();
        assert!(err.contains("--env NOPE=VALUE"), "{err}");
    }

    #[test]
    fn references_and_units() {
        let r = file_reference("db_pass", false).unwrap();
        assert_eq!(
            (r.source.as_str(), r.target.as_str(), r.mode),
            ("db_pass", "db_pass", 0o444)
        );
        let r = file_reference("source=site,target=/etc/nginx.conf,mode=0440", true).unwrap();
        assert_eq!((r.target.as_str(), r.mode), ("/etc/nginx.conf", 0o440));
        assert_eq!(file_reference("site", true).unwrap().target, "/site");
        assert_eq!(bytes("512M").unwrap(), 512 * 1024 * 1024);
        assert_eq!(cpus("0.5").unwrap(), 500_000_000);
        assert_eq!(duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(
            wire_enum::<swarm_api::RestartCondition>("on-failure").unwrap(),
            swarm_api::RestartCondition::OnFailure
        );
        assert_eq!(key_value("a"), ("a".into(), String::new()));
    }
}
