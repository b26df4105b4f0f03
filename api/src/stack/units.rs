//! The small text formats of Compose files: durations, byte sizes (docker's `RAMInBytes`),
//! CPU counts, file modes, the short port and volume syntaxes, and shell-style word splitting
//! of `command:`/`entrypoint:` strings.

use serde::Serialize;

use super::compose::ServiceVolume;

/// `10s`, `1m30s`, `500ms` (Go's `time.ParseDuration` forms).
pub fn parse_duration(s: &str) -> Result<crate::Duration, String> {
    s.parse::<crate::Duration>().map_err(|e| e.to_string())
}

/// Docker's `units.RAMInBytes`: a decimal number with an optional unit b, k, m, g, t, p
/// (case-insensitive, optional trailing `b`), powers of 1024.
pub fn parse_bytes(s: &str) -> Result<i64, String> {
    let err = || {
        format!(
            "invalid size {s:?}: expected a number with an optional unit b, k, m or g, e.g. 512M"
        )
    };
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(err());
    }
    let n: f64 = num.parse().map_err(|_| err())?;
    let unit = unit.trim().to_ascii_lowercase();
    let mult: f64 = match unit.as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "tib" => 1024.0f64.powi(4),
        "p" | "pb" | "pib" => 1024.0f64.powi(5),
        _ => return Err(err()),
    };
    let v = n * mult;
    if !v.is_finite() || v >= i64::MAX as f64 {
        return Err(format!("size {s:?} is too large"));
    }
    Ok(v as i64)
}

/// `0.5` → 500,000,000 nano-CPUs; exact (no float rounding), at most 9 decimals.
pub fn parse_cpus(s: &str) -> Result<i64, String> {
    let err = || format!("invalid cpus {s:?}: expected a number such as 0.5 or 2");
    let t = s.trim();
    let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
    if (whole.is_empty() && frac.is_empty())
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(err());
    }
    if frac.len() > 9 {
        return Err(format!("cpus {s:?} has more than 9 decimals"));
    }
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| err())?
    };
    let frac_nanos: i64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().map_err(|_| err())?
    };
    whole
        .checked_mul(1_000_000_000)
        .and_then(|w| w.checked_add(frac_nanos))
        .ok_or_else(|| format!("cpus {s:?} is too large"))
}

/// A file mode as go-yaml (YAML 1.1) reads it: a leading `0` means octal (`0400` = 256),
/// `0o400` is octal too, anything else decimal.
pub fn parse_file_mode(s: &str) -> Result<u32, String> {
    let t = s.trim();
    let err = || format!("invalid file mode {s:?}: write it in octal, e.g. 0400 or 0o444");
    let v = if let Some(o) = t.strip_prefix("0o") {
        u32::from_str_radix(o, 8).map_err(|_| err())?
    } else if t.len() > 1 && t.starts_with('0') {
        u32::from_str_radix(&t[1..], 8).map_err(|_| err())?
    } else {
        t.parse::<u32>().map_err(|_| err())?
    };
    if v > 0o7777 {
        return Err(format!("file mode {s:?} is larger than 0o7777"));
    }
    Ok(v)
}

/// One port from the short syntax.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PortSpec {
    pub target: u16,
    pub published: Option<u16>,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
}

fn parse_range(s: &str, what: &str, whole: &str) -> Result<(u16, u16), String> {
    let port = |p: &str| -> Result<u16, String> {
        match p.trim().parse::<u16>() {
            Ok(v) if v > 0 => Ok(v),
            _ => Err(format!(
                "invalid {what} port {p:?} in {whole:?}: ports are numbers from 1 to 65535"
            )),
        }
    };
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (port(a)?, port(b)?);
            if b < a {
                return Err(format!(
                    "invalid {what} port range {s:?} in {whole:?}: the end is before the start"
                ));
            }
            Ok((a, b))
        }
        None => {
            let p = port(s)?;
            Ok((p, p))
        }
    }
}

/// `[ip:][published[-end]:]target[-end][/proto]`; returns the ports and the dropped host IP.
pub fn parse_port_spec(s: &str) -> Result<(Vec<PortSpec>, Option<String>), String> {
    let (rest, protocol) = match s.rsplit_once('/') {
        Some((r, p)) => {
            let p = p.to_ascii_lowercase();
            if !matches!(p.as_str(), "tcp" | "udp" | "sctp") {
                return Err(format!(
                    "invalid protocol {p:?} in port {s:?}: use tcp, udp or sctp"
                ));
            }
            (r, p)
        }
        None => (s, "tcp".to_string()),
    };
    // An IPv6 host address is bracketed: [::1]:8080:80.
    let (host_ip, rest) = if let Some(r) = rest.strip_prefix('[') {
        let (ip, after) = r
            .split_once(']')
            .ok_or_else(|| format!("invalid port {s:?}: unclosed '[' around the host IP"))?;
        let after = after
            .strip_prefix(':')
            .ok_or_else(|| format!("invalid port {s:?}: expected ':' after the host IP"))?;
        (Some(ip.to_string()), after)
    } else {
        (None, rest)
    };
    let parts: Vec<&str> = rest.split(':').collect();
    let (host_ip, published, target) = match (host_ip, parts.as_slice()) {
        (None, [t]) => (None, None, *t),
        (None, [p, t]) => (None, Some(*p), *t),
        (None, [ip, p, t]) => (Some(ip.to_string()), Some(*p), *t),
        (Some(ip), [p, t]) => (Some(ip), Some(*p), *t),
        _ => {
            return Err(format!(
                "invalid port {s:?}: expected [IP:]PUBLISHED:TARGET[/PROTOCOL] or TARGET[/PROTOCOL]"
            ));
        }
    };
    let (t0, t1) = parse_range(target, "target", s)?;
    let published = match published {
        None | Some("") => None,
        Some(p) => Some(parse_range(p, "published", s)?),
    };
    if let Some((p0, p1)) = published
        && p1 - p0 != t1 - t0
    {
        return Err(format!(
            "invalid port {s:?}: the published and target ranges have different lengths"
        ));
    }
    let ports = (0..=(t1 - t0))
        .map(|i| PortSpec {
            target: t0 + i,
            published: published.map(|(p0, _)| p0 + i),
            protocol: protocol.clone(),
        })
        .collect();
    Ok((ports, host_ip.filter(|ip| !ip.is_empty())))
}

/// `src:dst[:mode]` or `dst`; modes `ro`, `rw` and others (`nocopy`, `rprivate`, `z`, …)
/// separated by commas.
pub fn parse_volume_spec(s: &str) -> Result<ServiceVolume, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let (source, target, mode) = match parts.as_slice() {
        [t] => (None, *t, None),
        [src, t] => (Some(*src), *t, None),
        [src, t, m] => (Some(*src), *t, Some(*m)),
        _ => {
            return Err(format!(
                "invalid volume {s:?}: expected SOURCE:TARGET[:MODE] or TARGET"
            ));
        }
    };
    if target.is_empty() || !target.starts_with('/') {
        return Err(format!(
            "invalid volume {s:?}: the target {target:?} must be an absolute path in the container"
        ));
    }
    if source == Some("") {
        return Err(format!("invalid volume {s:?}: the source is empty"));
    }
    let mut read_only = false;
    let mut options = Vec::new();
    for m in mode.unwrap_or("").split(',').filter(|m| !m.is_empty()) {
        match m {
            "ro" => read_only = true,
            "rw" => read_only = false,
            "nocopy" | "z" | "Z" | "shared" | "rshared" | "slave" | "rslave" | "private"
            | "rprivate" | "consistent" | "cached" | "delegated" => options.push(m.to_string()),
            other => {
                return Err(format!(
                    "invalid volume {s:?}: unknown mode {other:?} (use ro, rw, nocopy or a propagation such as rprivate)"
                ));
            }
        }
    }
    Ok(ServiceVolume::Short {
        source: source.map(str::to_string),
        target: target.to_string(),
        read_only,
        options,
    })
}

/// Splits a command string into words like a POSIX shell (quotes, backslashes), without
/// expansion, as docker/cli's `shlex` does.
pub fn shell_split(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err(format!("unclosed single quote in {s:?}")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => cur.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                cur.push('\\');
                                cur.push(c);
                            }
                            None => return Err(format!("unclosed double quote in {s:?}")),
                        },
                        Some(c) => cur.push(c),
                        None => return Err(format!("unclosed double quote in {s:?}")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some('\n') => {}
                    Some(c) => cur.push(c),
                    None => cur.push('\\'),
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_use_powers_of_1024() {
        assert_eq!(parse_bytes("512M").unwrap(), 512 * 1024 * 1024);
        assert_eq!(parse_bytes("1g").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("100kb").unwrap(), 102_400);
        assert_eq!(parse_bytes("1.5k").unwrap(), 1536);
        assert_eq!(parse_bytes("42").unwrap(), 42);
        assert_eq!(parse_bytes("42b").unwrap(), 42);
        assert!(parse_bytes("12x").is_err());
        assert!(parse_bytes("m").is_err());
        assert!(parse_bytes("99999999999p").is_err());
    }

    #[test]
    fn cpus_are_exact() {
        assert_eq!(parse_cpus("0.5").unwrap(), 500_000_000);
        assert_eq!(parse_cpus("2").unwrap(), 2_000_000_000);
        assert_eq!(parse_cpus("0.001").unwrap(), 1_000_000);
        assert_eq!(parse_cpus(".25").unwrap(), 250_000_000);
        assert!(parse_cpus("-1").is_err());
        assert!(parse_cpus("one").is_err());
        assert!(parse_cpus("99999999999999999999").is_err());
    }

    #[test]
    fn file_modes_are_octal_like_go_yaml() {
        assert_eq!(parse_file_mode("0400").unwrap(), 0o400);
        assert_eq!(parse_file_mode("0o444").unwrap(), 0o444);
        assert_eq!(parse_file_mode("292").unwrap(), 0o444);
        assert!(parse_file_mode("0999").is_err());
        assert!(parse_file_mode("99999").is_err());
    }

    fn ports(s: &str) -> Vec<(u16, Option<u16>, String)> {
        parse_port_spec(s)
            .unwrap()
            .0
            .into_iter()
            .map(|p| (p.target, p.published, p.protocol))
            .collect()
    }

    #[test]
    fn short_ports() {
        assert_eq!(ports("8080:80"), [(80, Some(8080), "tcp".to_string())]);
        assert_eq!(ports("80"), [(80, None, "tcp".to_string())]);
        assert_eq!(ports("53:53/udp"), [(53, Some(53), "udp".to_string())]);
        assert_eq!(
            ports("8000-8002:80-82"),
            [
                (80, Some(8000), "tcp".to_string()),
                (81, Some(8001), "tcp".to_string()),
                (82, Some(8002), "tcp".to_string())
            ]
        );
        let (p, ip) = parse_port_spec("127.0.0.1:8080:80/udp").unwrap();
        assert_eq!(ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(p[0].published, Some(8080));
        let (_, ip) = parse_port_spec("[::1]:8080:80").unwrap();
        assert_eq!(ip.as_deref(), Some("::1"));
        assert!(parse_port_spec("8000-8002:80").is_err());
        assert!(parse_port_spec("70000:80").is_err());
        assert!(parse_port_spec("80/icmp").is_err());
        assert!(parse_port_spec("a:b:c:d").is_err());
    }

    #[test]
    fn short_volumes() {
        match parse_volume_spec("data:/var/lib/data:ro").unwrap() {
            ServiceVolume::Short {
                source,
                target,
                read_only,
                ..
            } => {
                assert_eq!(source.as_deref(), Some("data"));
                assert_eq!(target, "/var/lib/data");
                assert!(read_only);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_volume_spec("/anon").unwrap(),
            ServiceVolume::Short { source: None, .. }
        ));
        assert!(parse_volume_spec("data:relative").is_err());
        assert!(parse_volume_spec("a:/b:bogus").is_err());
    }

    #[test]
    fn shell_words() {
        assert_eq!(
            shell_split(r#"sh -c "echo 'hi there'" a\ b"#).unwrap(),
            ["sh", "-c", "echo 'hi there'", "a b"]
        );
        assert_eq!(shell_split("  ").unwrap(), Vec::<String>::new());
        assert_eq!(shell_split("''").unwrap(), [""]);
        assert!(shell_split("echo 'oops").is_err());
    }
}
