//! What each docker-style list shows, worked out from objects: one module per list, each a
//! pure function from objects (and a clock, for relative times) to a `Listing`.

pub mod data;
pub mod network;
pub mod node;
pub mod service;
pub mod stack;
pub mod task;

use std::cmp::Ordering;
use std::collections::BTreeMap;

/// docker's `sortorder.NaturalLess` as an ordering: runs of digits compare as numbers, so
/// `web.2` sorts before `web.10`.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut x, mut y) = (a.as_bytes(), b.as_bytes());
    loop {
        match (x.first(), y.first()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(c), Some(d)) if c.is_ascii_digit() && d.is_ascii_digit() => {
                let xn = x.iter().take_while(|c| c.is_ascii_digit()).count();
                let yn = y.iter().take_while(|c| c.is_ascii_digit()).count();
                let (xd, yd) = (trim_zeros(&x[..xn]), trim_zeros(&y[..yn]));
                let ord = xd.len().cmp(&yd.len()).then_with(|| xd.cmp(yd));
                if ord != Ordering::Equal {
                    return ord;
                }
                x = &x[xn..];
                y = &y[yn..];
            }
            (Some(c), Some(d)) => {
                if c != d {
                    return c.cmp(d);
                }
                x = &x[1..];
                y = &y[1..];
            }
        }
    }
}

fn trim_zeros(d: &[u8]) -> &[u8] {
    let n = d.iter().take_while(|c| **c == b'0').count();
    &d[n..]
}

/// Labels as docker's `{{.Labels}}` field prints them: `k=v,k2=v2`.
pub fn labels(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! A fixed clock and object builders for golden tests.

    use std::time::{Duration, SystemTime};

    use swarm_api::Timestamp;

    /// 2026-01-01T00:00:00Z: every golden test's "now".
    pub fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600)
    }

    /// `secs` seconds before `now()`, as a JSON timestamp.
    pub fn ago(secs: u64) -> serde_json::Value {
        serde_json::to_value(Timestamp(now() - Duration::from_secs(secs))).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order() {
        let mut v = vec!["web.10", "web.2", "api", "web.1", "web.02x"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(v, vec!["api", "web.1", "web.2", "web.02x", "web.10"]);
    }
}
