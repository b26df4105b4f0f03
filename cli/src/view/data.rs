//! `secret ls` (`ID NAME DRIVER CREATED UPDATED`) and `config ls` (`ID NAME CREATED UPDATED`).
//! Secret and config data never change (new data means a new name), so UPDATED is CREATED.

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
    }
}
