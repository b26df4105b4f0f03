//! `secret ls` (`ID NAME DRIVER CREATED UPDATED`) and `config ls` (`ID NAME CREATED UPDATED`),
//! and their `inspect --pretty`. Secret and config data never change (new data means a new
//! name), so UPDATED is CREATED.

use std::fmt::Write as _;
use std::time::SystemTime;

use serde_json::json;
use swarm_api::ObjectMeta;

use super::{labels, natural_cmp};
use crate::output::humanize::{ago, full_id};
use crate::output::listing::{Listing, record};

pub const SECRET_FORMAT: &str =
    "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.CreatedAt}}\t{{.UpdatedAt}}";
pub const CONFIG_FORMAT: &str = "table {{.ID}}\t{{.Name}}\t{{.CreatedAt}}\t{{.UpdatedAt}}";
pub const HEADERS: &[(&str, &str)] = &[
    ("ID", "ID"),
    ("Name", "NAME"),
    ("Driver", "DRIVER"),
    ("CreatedAt", "CREATED"),
    ("UpdatedAt", "UPDATED"),
    ("Labels", "LABELS"),
];

/// Secrets or configs (given by their metadata), sorted by name.
pub fn list(metas: &[&ObjectMeta], format: &'static str, now: SystemTime) -> Listing {
    let mut sorted: Vec<&ObjectMeta> = metas.to_vec();
    sorted.sort_by(|a, b| natural_cmp(&a.name, &b.name));
    let mut l = Listing::new(format, HEADERS);
    for m in sorted {
        let created = ago(m.creation_timestamp.as_ref(), now);
        l.rows.push(record([
            ("ID", json!(full_id(&m.uid))),
            ("Name", json!(m.name)),
            ("Driver", json!("")),
            ("CreatedAt", json!(created)),
            ("UpdatedAt", json!(created)),
            ("Labels", json!(labels(&m.labels))),
        ]));
    }
    l
}

/// `secret|config inspect --pretty`, in docker's layout; `data` is a config's content (a
/// secret's is never shown).
pub fn pretty(m: &ObjectMeta, data: Option<&str>) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "ID:              {}", full_id(&m.uid));
    let _ = writeln!(o, "Name:            {}", m.name);
    if !m.labels.is_empty() {
        o.push_str("Labels:\n");
        for (k, v) in &m.labels {
            let value = if v.is_empty() {
                String::new()
            } else {
                format!("={v}")
            };
            let _ = writeln!(o, " - {k}{value}");
        }
    }
    if data.is_none() {
        o.push_str("Driver:\n");
    }
    let created = m
        .creation_timestamp
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    let _ = writeln!(o, "Created at:      {created}");
    let _ = writeln!(o, "Updated at:      {created}");
    if let Some(d) = data {
        let _ = writeln!(o, "Data:\n{d}");
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::fixtures::{ago, now};
    use serde_json::json;

    fn metas() -> Vec<ObjectMeta> {
        [
            json!({"name": "db_password", "uid": "abcdefab-1111-4222-8333-444455556666",
                   "creationTimestamp": ago(7200)}),
            json!({"name": "api_key", "uid": "01234567-1111-4222-8333-444455556666",
                   "creationTimestamp": ago(30)}),
        ]
        .into_iter()
        .map(|v| serde_json::from_value(v).unwrap())
        .collect()
    }

    #[test]
    fn golden_secret_and_config_ls() {
        let m = metas();
        let refs: Vec<&ObjectMeta> = m.iter().collect();
        assert_eq!(
            list(&refs, SECRET_FORMAT, now())
                .render(None, false)
                .unwrap(),
            "\
ID                                 NAME          DRIVER    CREATED          UPDATED
01234567111142228333444455556666   api_key                 30 seconds ago   30 seconds ago
abcdefab111142228333444455556666   db_password             2 hours ago      2 hours ago
"
        );
        assert_eq!(
            list(&refs, CONFIG_FORMAT, now())
                .render(None, false)
                .unwrap(),
            "\
ID                                 NAME          CREATED          UPDATED
01234567111142228333444455556666   api_key       30 seconds ago   30 seconds ago
abcdefab111142228333444455556666   db_password   2 hours ago      2 hours ago
"
        );
        assert_eq!(
            list(&refs, CONFIG_FORMAT, now())
                .render(Some("{{.Name}}"), false)
                .unwrap(),
            "api_key\ndb_password\n"
        );
        assert_eq!(
            list(&refs, SECRET_FORMAT, now())
                .render(Some("{{json .}}"), false)
                .unwrap()
                .lines()
                .next()
                .unwrap(),
            r#"{"CreatedAt":"30 seconds ago","Driver":"","ID":"01234567111142228333444455556666","Labels":"","Name":"api_key","UpdatedAt":"30 seconds ago"}"#
        );
    }

    #[test]
    fn golden_secret_and_config_pretty() {
        let mut m: ObjectMeta = serde_json::from_value(json!({
            "name": "db_password", "uid": "abcdefab-1111-4222-8333-444455556666",
            "creationTimestamp": "2026-01-01T00:00:00Z"}))
        .unwrap();
        m.labels.insert("swarm.stack".into(), "voting".into());
        assert_eq!(
            pretty(&m, None),
            "ID:              abcdefab111142228333444455556666
Name:            db_password
Labels:
 - swarm.stack=voting
Driver:
Created at:      2026-01-01T00:00:00.000Z
Updated at:      2026-01-01T00:00:00.000Z
"
        );
        m.labels.clear();
        assert_eq!(
            pretty(&m, Some("port=80")),
            "ID:              abcdefab111142228333444455556666
Name:            db_password
Created at:      2026-01-01T00:00:00.000Z
Updated at:      2026-01-01T00:00:00.000Z
Data:
port=80
"
        );
    }
}
