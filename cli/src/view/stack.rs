//! `stack ls`: `NAME SERVICES`, stacks being the distinct `swarm.stack` labels of services.

use std::collections::BTreeMap;

use serde_json::json;
use swarm_api::Service;

use super::natural_cmp;
use crate::output::listing::{Listing, record};

pub const FORMAT: &str = "table {{.Name}}\t{{.Services}}";
pub const HEADERS: &[(&str, &str)] = &[("Name", "NAME"), ("Services", "SERVICES")];

/// One row per stack with the number of its services.
pub fn list(services: &[Service]) -> Listing {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for s in services {
        if let Some(stack) = s.metadata.stack() {
            *counts.entry(stack).or_default() += 1;
        }
    }
    let mut names: Vec<(&str, usize)> = counts.into_iter().collect();
    names.sort_by(|a, b| natural_cmp(a.0, b.0));
    let mut l = Listing::new(FORMAT, HEADERS);
    for (name, n) in names {
        l.rows.push(record([
            ("Name", json!(name)),
            ("Services", json!(n.to_string())),
            ("ID", json!(name)),
        ]));
    }
    l
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn golden_stack_ls() {
        let services: Vec<Service> = [
            json!({"metadata": {"name": "voting_vote", "labels": {"swarm.stack": "voting"}}}),
            json!({"metadata": {"name": "voting_db", "labels": {"swarm.stack": "voting"}}}),
            json!({"metadata": {"name": "mon_prom", "labels": {"swarm.stack": "mon"}}}),
            json!({"metadata": {"name": "loose"}}),
        ]
        .into_iter()
        .map(|v| serde_json::from_value(v).unwrap())
        .collect();
        let l = list(&services);
        assert_eq!(
            l.render(None, false).unwrap(),
            "NAME      SERVICES\nmon       1\nvoting    2\n"
        );
        assert_eq!(l.render(None, true).unwrap(), "mon\nvoting\n");
        assert_eq!(
            l.render(Some("{{json .}}"), false).unwrap(),
            concat!(
                r#"{"ID":"mon","Name":"mon","Services":"1"}"#,
                "\n",
                r#"{"ID":"voting","Name":"voting","Services":"2"}"#,
                "\n"
            )
        );
    }
}
