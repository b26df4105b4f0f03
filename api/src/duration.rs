//! A duration written the way Docker and Compose users write them: `"5s"`, `"1m30s"`, `"250ms"`.
//!
//! Stored as a `std::time::Duration`, (de)serialized as a human-readable string, so a
//! `swarm get -o yaml` shows `delay: 5s` rather than a count of nanoseconds.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    pub const ZERO: Duration = Duration(std::time::Duration::ZERO);

    pub const fn from_secs(secs: u64) -> Self {
        Duration(std::time::Duration::from_secs(secs))
    }

    pub const fn from_millis(ms: u64) -> Self {
        Duration(std::time::Duration::from_millis(ms))
    }

    pub fn is_zero(&self) -> bool {
        self.0.is_zero()
    }

    pub fn as_std(&self) -> std::time::Duration {
        self.0
    }
}

impl From<std::time::Duration> for Duration {
    fn from(d: std::time::Duration) -> Self {
        Duration(d)
    }
}

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: expected a number with a unit, e.g. 10s, 1m30s, 500ms")]
pub struct ParseDurationError {
    pub input: String,
}

impl FromStr for Duration {
    type Err = ParseDurationError;

    /// Accepts Go's `time.ParseDuration` forms (`1h2m3.5s`, `300ms`, `2us`, `0`) and humantime's
    /// (`1 min`, `2days`), which covers what Compose files contain in practice.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let err = || ParseDurationError {
            input: s.to_string(),
        };
        if t == "0" {
            return Ok(Duration::ZERO);
        }
        if t.is_empty() || t.starts_with('-') {
            return Err(err());
        }
        if let Some(d) = parse_go_duration(t) {
            return Ok(Duration(d));
        }
        humantime::parse_duration(t)
            .map(Duration)
            .map_err(|_| err())
    }
}

/// Go-style durations allow fractions (`1.5s`) and concatenated units (`1m30s`).
fn parse_go_duration(s: &str) -> Option<std::time::Duration> {
    let mut total_nanos: u128 = 0;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let (num, after) = rest.split_at(num_len);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let scale: f64 = match unit {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        let value: f64 = num.parse().ok()?;
        let nanos = value * scale;
        if !nanos.is_finite() || nanos > 1e20 {
            return None;
        }
        total_nanos = total_nanos.checked_add(nanos.round() as u128)?;
        rest = after;
    }
    let secs = u64::try_from(total_nanos / 1_000_000_000).ok()?;
    Some(std::time::Duration::new(
        secs,
        (total_nanos % 1_000_000_000) as u32,
    ))
}

impl fmt::Display for Duration {
    /// Go's format: `1h2m3s`, `1.5s`, `250ms`, `0s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d.is_zero() {
            return f.write_str("0s");
        }
        let total = d.as_nanos();
        if total < 1_000 {
            return write!(f, "{total}ns");
        }
        if total < 1_000_000 {
            return write!(f, "{}us", trim_fraction(total, 1_000));
        }
        if total < 1_000_000_000 {
            return write!(f, "{}ms", trim_fraction(total, 1_000_000));
        }
        let secs = d.as_secs();
        let (h, m) = (secs / 3600, (secs % 3600) / 60);
        let s_nanos = total - u128::from(h * 3600 + m * 60) * 1_000_000_000;
        if h > 0 {
            write!(f, "{h}h")?;
        }
        if h > 0 || m > 0 {
            write!(f, "{m}m")?;
        }
        write!(f, "{}s", trim_fraction(s_nanos, 1_000_000_000))
    }
}

/// `value / unit` as a decimal without trailing zeros: (1500, 1000) → "1.5".
fn trim_fraction(value: u128, unit: u128) -> String {
    let whole = value / unit;
    let frac = value % unit;
    if frac == 0 {
        return whole.to_string();
    }
    let width = unit.ilog10() as usize;
    let frac = format!("{frac:0width$}");
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as 10s or 1m30s")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Duration, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Duration, E> {
                // A bare number is nanoseconds, as in Docker's JSON API.
                Ok(Duration(std::time::Duration::from_nanos(v)))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Duration, E> {
                u64::try_from(v)
                    .map(|n| Duration(std::time::Duration::from_nanos(n)))
                    .map_err(|_| E::custom("a duration cannot be negative"))
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A duration such as 10s, 1m30s or 500ms (a bare integer is nanoseconds).",
            "type": ["string", "integer"],
            "pattern": "^([0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$|^0$",
            "minimum": 0
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_and_compose_forms() {
        let cases = [
            ("10s", 10_000_000_000u128),
            ("1m30s", 90_000_000_000),
            ("1.5s", 1_500_000_000),
            ("250ms", 250_000_000),
            ("2h", 7_200_000_000_000),
            ("0", 0),
            ("0s", 0),
            ("1us", 1_000),
        ];
        for (input, nanos) in cases {
            let d: Duration = input.parse().unwrap();
            assert_eq!(d.0.as_nanos(), nanos, "{input}");
        }
    }

    #[test]
    fn refuses_garbage() {
        for bad in ["", "ten", "-5s", "5x", "s", "1.2.3s"] {
            assert!(bad.parse::<Duration>().is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn displays_like_go() {
        let cases = [
            (0, "0s"),
            (5_000_000_000u64, "5s"),
            (90_000_000_000, "1m30s"),
            (1_500_000_000, "1.5s"),
            (250_000_000, "250ms"),
            (3_600_000_000_000, "1h0m0s"),
        ];
        for (nanos, text) in cases {
            assert_eq!(
                Duration(std::time::Duration::from_nanos(nanos)).to_string(),
                text
            );
        }
    }

    #[test]
    fn round_trips_through_json() {
        let d: Duration = "1m30s".parse().unwrap();
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, "\"1m30s\"");
        let back: Duration = serde_json::from_str(&json).unwrap();
        assert_eq!(back, d);
    }
}
