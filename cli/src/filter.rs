//! docker's `--filter KEY=VALUE` flags: splitting one, and the `label` test every kind's
//! filters share (`label=KEY` or `label=KEY=VALUE`).

use std::collections::BTreeMap;

/// `KEY=VALUE` → `(KEY, VALUE)`; `example` shows a valid filter in the error.
pub fn split<'a>(filter: &'a str, example: &str) -> anyhow::Result<(&'a str, &'a str)> {
    filter.split_once('=').ok_or_else(|| {
        anyhow::anyhow!("invalid filter {filter:?}: expected KEY=VALUE, e.g. {example}")
    })
}

/// Whether `labels` has `want`: a key (`KEY`) or a key with a value (`KEY=VALUE`).
pub fn has_label(labels: &BTreeMap<String, String>, want: &str) -> bool {
    match want.split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
        None => labels.contains_key(want),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_split_and_labels_match() {
        assert_eq!(split("name=web", "name=web").unwrap(), ("name", "web"));
        assert_eq!(split("label=a=b", "x").unwrap(), ("label", "a=b"));
        let err = split("web", "name=web").unwrap_err().to_string();
        assert!(err.contains("e.g. name=web"), "{err}");
        let labels = BTreeMap::from([("a".to_string(), "1".to_string())]);
        assert!(has_label(&labels, "a"));
        assert!(has_label(&labels, "a=1"));
        assert!(!has_label(&labels, "a=2"));
        assert!(!has_label(&labels, "b"));
    }
}
