//! Values the way docker prints them: `4 minutes` (go-units `HumanDuration`), `512MiB`
//! (`BytesSize`), `Running` (capitalized enums), 12-character IDs, `…`-shortened errors and
//! images without their digest.

use std::time::{Duration, SystemTime};

use swarm_api::Timestamp;

/// go-units' `HumanDuration`: `Less than a second`, `About a minute`, `4 minutes`, `3 hours`…
pub fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs < 1 {
        return "Less than a second".to_string();
    }
    if secs == 1 {
        return "1 second".to_string();
    }
    if secs < 60 {
        return format!("{secs} seconds");
    }
    let minutes = secs / 60;
    if minutes == 1 {
        return "About a minute".to_string();
    }
    if minutes < 60 {
        return format!("{minutes} minutes");
    }
    let hours = (d.as_secs_f64() / 3600.0 + 0.5) as u64;
    if hours == 1 {
        return "About an hour".to_string();
    }
    if hours < 48 {
        return format!("{hours} hours");
    }
    if hours < 24 * 7 * 2 {
        return format!("{} days", hours / 24);
    }
    if hours < 24 * 30 * 2 {
        return format!("{} weeks", hours / 24 / 7);
    }
    if hours < 24 * 365 * 2 {
        return format!("{} months", hours / 24 / 30);
    }
    format!("{} years", secs / 3600 / 24 / 365)
}

/// `About a minute ago`; `""` for an unknown time.
pub fn ago(t: Option<&Timestamp>, now: SystemTime) -> String {
    match t {
        Some(t) => format!(
            "{} ago",
            human_duration(now.duration_since(t.0).unwrap_or_default())
        ),
        None => String::new(),
    }
}

/// go-units' `BytesSize`: binary units with four significant digits (`1.5GiB`, `512MiB`).
pub fn bytes_size(bytes: f64) -> String {
    const UNITS: [&str; 9] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];
    let mut size = bytes;
    let mut i = 0;
    while size >= 1024.0 && i + 1 < UNITS.len() {
        size /= 1024.0;
        i += 1;
    }
    format!("{}{}", sig4(size), UNITS[i])
}

/// Go's `%.4g` for values below 10000: four significant digits, trailing zeros dropped.
fn sig4(v: f64) -> String {
    if v == 0.0 {
        return "0".to_string();
    }
    let digits = v.abs().log10().floor() as i32 + 1;
    let decimals = (4 - digits).max(0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// A nano-CPU count as docker prints CPUs: `0.5`, `2`.
pub fn cpus(nano: i64) -> String {
    let v = nano as f64 / 1e9;
    let s = format!("{v:.9}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// docker's `PrettyPrint` of an enum: the first letter capitalized (`running` → `Running`).
pub fn pretty(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

/// An object's ID as docker shows it: the uid without dashes.
pub fn full_id(uid: &str) -> String {
    uid.chars().filter(|c| *c != '-').collect()
}

/// The first 12 characters of the ID (`docker … ls` without `--no-trunc`).
pub fn short_id(uid: &str) -> String {
    full_id(uid).chars().take(12).collect()
}

/// docker's `Ellipsis`: at most `max` characters, the last one `…` when cut.
pub fn ellipsis(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// An image reference for tables: a tagged reference loses its digest, and Docker Hub's
/// `docker.io/library/` prefix is dropped (`nginx:1.27@sha256:…` → `nginx:1.27`).
pub fn familiar_image(image: &str) -> String {
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    let last = name.rsplit('/').next().unwrap_or(name);
    let tagged = last.contains(':');
    let shown = if tagged || digest.is_none() {
        name.to_string()
    } else {
        image.to_string()
    };
    shown
        .strip_prefix("docker.io/library/")
        .or_else(|| shown.strip_prefix("docker.io/"))
        .map(str::to_string)
        .unwrap_or(shown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_docker() {
        let d = Duration::from_secs;
        assert_eq!(
            human_duration(Duration::from_millis(300)),
            "Less than a second"
        );
        assert_eq!(human_duration(d(1)), "1 second");
        assert_eq!(human_duration(d(45)), "45 seconds");
        assert_eq!(human_duration(d(90)), "About a minute");
        assert_eq!(human_duration(d(4 * 60 + 10)), "4 minutes");
        assert_eq!(human_duration(d(3600 + 60)), "About an hour");
        assert_eq!(human_duration(d(5 * 3600)), "5 hours");
        assert_eq!(human_duration(d(3 * 86400)), "3 days");
        assert_eq!(human_duration(d(21 * 86400)), "3 weeks");
        assert_eq!(human_duration(d(90 * 86400)), "3 months");
        assert_eq!(human_duration(d(800 * 86400)), "2 years");
    }

    #[test]
    fn ago_is_relative_to_the_given_clock() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let t = Timestamp(now - Duration::from_secs(240));
        assert_eq!(ago(Some(&t), now), "4 minutes ago");
        assert_eq!(ago(None, now), "");
    }

    #[test]
    fn sizes_and_cpus() {
        assert_eq!(bytes_size(512.0 * 1024.0 * 1024.0), "512MiB");
        assert_eq!(bytes_size(1.5 * 1024.0 * 1024.0 * 1024.0), "1.5GiB");
        assert_eq!(bytes_size(100.0), "100B");
        assert_eq!(bytes_size(1234.0 * 1024.0), "1.205MiB");
        assert_eq!(cpus(500_000_000), "0.5");
        assert_eq!(cpus(2_000_000_000), "2");
    }

    #[test]
    fn ids_errors_images() {
        let uid = "0f8e4c2a-1b3d-4e5f-8a9b-0c1d2e3f4a5b";
        assert_eq!(full_id(uid), "0f8e4c2a1b3d4e5f8a9b0c1d2e3f4a5b");
        assert_eq!(short_id(uid), "0f8e4c2a1b3d");
        assert_eq!(ellipsis("short", 30), "short");
        assert_eq!(ellipsis("abcdef", 4), "abc…");
        assert_eq!(familiar_image("nginx:1.27@sha256:abc"), "nginx:1.27");
        assert_eq!(familiar_image("nginx@sha256:abc"), "nginx@sha256:abc");
        assert_eq!(familiar_image("docker.io/library/redis:7"), "redis:7");
        assert_eq!(familiar_image("localhost:5000/app"), "localhost:5000/app");
        assert_eq!(pretty("running"), "Running");
    }
}
