//! Merging several `-f` files, later over earlier, as docker/cli's `loader/merge.go` does:
//!
//! - top level: services merge by name; networks, volumes, secrets and configs are replaced
//!   whole by name; `x-` keys are replaced;
//! - inside a service: mappings merge key by key, scalars are replaced, lists are **appended**
//!   (mergo `WithAppendSlice`), except: `command`/`entrypoint` are replaced; `ports` are
//!   unioned (identical entries once); `secrets`/`configs` merge by `source` and `volumes` by
//!   `target` (a later entry replaces an earlier one with the same key); `environment`,
//!   `labels`, `deploy.labels` and `sysctls` merge as mappings even when written as lists;
//!   `networks` merge by network name; `logging` merges options when the driver is the same
//!   and is replaced otherwise; `healthcheck.test` is replaced.
//!
//! One difference, on purpose: mergo's `WithOverride` does not let a zero value (`false`,
//! `0`, `""`) in a later file override an earlier value; here an explicit value always wins.

use super::yaml::{Key, Node, Value};

/// Merges `over` into `base` (both whole files).
pub fn merge_files(base: &mut Node, over: Node) {
    let (Value::Map(base_entries), Value::Map(over_entries)) = (&mut base.value, over.value) else {
        return;
    };
    for (key, value) in over_entries {
        match key.text.as_str() {
            "version" => {}
            "services" => match find(base_entries, "services") {
                Some(existing) => merge_services(existing, value),
                None => base_entries.push((key, value)),
            },
            "networks" | "volumes" | "secrets" | "configs" => match find(base_entries, &key.text) {
                Some(existing) => replace_by_name(existing, value),
                None => base_entries.push((key, value)),
            },
            _ => set(base_entries, key, value),
        }
    }
}

fn find<'a>(entries: &'a mut [(Key, Node)], key: &str) -> Option<&'a mut Node> {
    entries
        .iter_mut()
        .find(|(k, _)| k.text == key)
        .map(|(_, v)| v)
}

fn set(entries: &mut Vec<(Key, Node)>, key: Key, value: Node) {
    match entries.iter_mut().find(|(k, _)| k.text == key.text) {
        Some(slot) => *slot = (key, value),
        None => entries.push((key, value)),
    }
}

fn replace_by_name(base: &mut Node, over: Node) {
    match (&mut base.value, over.value) {
        (Value::Map(b), Value::Map(o)) => {
            for (k, v) in o {
                set(b, k, v);
            }
        }
        (_, v) => base.value = v,
    }
}

fn merge_services(base: &mut Node, over: Node) {
    match (&mut base.value, over.value) {
        (Value::Map(b), Value::Map(o)) => {
            for (k, v) in o {
                match find(b, &k.text) {
                    Some(existing) => merge_service(existing, v),
                    None => b.push((k, v)),
                }
            }
        }
        (_, v) => base.value = v,
    }
}

fn merge_service(base: &mut Node, over: Node) {
    let Value::Map(o) = over.value else {
        base.value = over.value;
        return;
    };
    let Value::Map(b) = &mut base.value else {
        base.value = Value::Map(o);
        return;
    };
    for (k, v) in o {
        let Some(existing) = find(b, &k.text) else {
            b.push((k, v));
            continue;
        };
        match k.text.as_str() {
            "command" | "entrypoint" => *existing = v,
            "ports" => union(existing, v),
            "secrets" | "configs" => merge_keyed(existing, v, source_key),
            "volumes" => merge_keyed(existing, v, target_key),
            "environment" | "labels" | "sysctls" => {
                normalize_list_or_dict(existing);
                let mut v = v;
                normalize_list_or_dict(&mut v);
                merge_node(existing, v);
            }
            "networks" => {
                normalize_networks(existing);
                let mut v = v;
                normalize_networks(&mut v);
                merge_node(existing, v);
            }
            "logging" => merge_logging(existing, v),
            "deploy" => merge_deploy(existing, v),
            "healthcheck" => merge_healthcheck(existing, v),
            _ => merge_node(existing, v),
        }
    }
}

/// Maps merge recursively, lists append, anything else is replaced.
fn merge_node(base: &mut Node, over: Node) {
    match (&mut base.value, over.value) {
        (Value::Map(b), Value::Map(o)) => {
            for (k, v) in o {
                match find(b, &k.text) {
                    Some(existing) => merge_node(existing, v),
                    None => b.push((k, v)),
                }
            }
        }
        (Value::Seq(b), Value::Seq(o)) => b.extend(o),
        (_, v) => {
            base.value = v;
            base.pos = over.pos;
        }
    }
}

fn union(base: &mut Node, over: Node) {
    match (&mut base.value, over.value) {
        (Value::Seq(b), Value::Seq(o)) => {
            for item in o {
                let json = item.to_json();
                if !b.iter().any(|e| e.to_json() == json) {
                    b.push(item);
                }
            }
        }
        (_, v) => base.value = v,
    }
}

fn source_key(n: &Node) -> Option<String> {
    match &n.value {
        Value::Scalar { text, .. } => Some(text.clone()),
        Value::Map(_) => n.get("source").and_then(Node::as_str).map(str::to_string),
        Value::Seq(_) => None,
    }
}

fn target_key(n: &Node) -> Option<String> {
    match &n.value {
        Value::Scalar { text, .. } => {
            let parts: Vec<&str> = text.split(':').collect();
            Some(match parts.as_slice() {
                [t] => t.to_string(),
                [_, t, ..] => t.to_string(),
                _ => text.clone(),
            })
        }
        Value::Map(_) => n.get("target").and_then(Node::as_str).map(str::to_string),
        Value::Seq(_) => None,
    }
}

fn merge_keyed(base: &mut Node, over: Node, key: fn(&Node) -> Option<String>) {
    match (&mut base.value, over.value) {
        (Value::Seq(b), Value::Seq(o)) => {
            for item in o {
                let k = key(&item);
                match b.iter_mut().find(|e| k.is_some() && key(e) == k) {
                    Some(slot) => *slot = item,
                    None => b.push(item),
                }
            }
        }
        (_, v) => base.value = v,
    }
}

/// `["A=1", "B"]` → `{A: "1", B: null}`, so lists and mappings merge alike.
pub fn normalize_list_or_dict(node: &mut Node) {
    if let Value::Seq(items) = &node.value {
        let entries = items
            .iter()
            .map(|item| {
                let text = item.as_str().unwrap_or_default();
                let (k, v) = match text.split_once('=') {
                    Some((k, v)) => (k.to_string(), Node::scalar(item.pos, v, true)),
                    None => (text.to_string(), Node::scalar(item.pos, "", false)),
                };
                (
                    Key {
                        text: k,
                        pos: item.pos,
                    },
                    v,
                )
            })
            .collect();
        node.value = Value::Map(entries);
    }
}

fn normalize_networks(node: &mut Node) {
    if let Value::Seq(items) = &node.value {
        let entries = items
            .iter()
            .map(|item| {
                (
                    Key {
                        text: item.as_str().unwrap_or_default().to_string(),
                        pos: item.pos,
                    },
                    Node::scalar(item.pos, "", false),
                )
            })
            .collect();
        node.value = Value::Map(entries);
    }
}

fn merge_logging(base: &mut Node, over: Node) {
    let bd = base
        .get("driver")
        .and_then(Node::as_str)
        .map(str::to_string);
    let od = over
        .get("driver")
        .and_then(Node::as_str)
        .map(str::to_string);
    match (bd, od) {
        (Some(b), Some(o)) if b != o => *base = over,
        _ => merge_node(base, over),
    }
}

fn merge_deploy(base: &mut Node, over: Node) {
    if let Value::Map(b) = &mut base.value
        && let Some(labels) = find(b, "labels")
    {
        normalize_list_or_dict(labels);
    }
    let mut over = over;
    if let Value::Map(o) = &mut over.value
        && let Some(labels) = find(o, "labels")
    {
        normalize_list_or_dict(labels);
    }
    merge_node(base, over);
}

fn merge_healthcheck(base: &mut Node, over: Node) {
    let mut over = over;
    let test = match &mut over.value {
        Value::Map(o) => o
            .iter()
            .position(|(k, _)| k.text == "test")
            .map(|i| o.remove(i)),
        _ => None,
    };
    merge_node(base, over);
    if let (Some((k, v)), Value::Map(b)) = (test, &mut base.value) {
        set(b, k, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::yaml::parse_documents;

    fn merged(a: &str, b: &str) -> serde_json::Value {
        let mut base = parse_documents(a, 0).unwrap().remove(0);
        let over = parse_documents(b, 1).unwrap().remove(0);
        merge_files(&mut base, over);
        base.to_json()
    }

    #[test]
    fn services_merge_maps_and_replace_scalars_and_commands() {
        let v = merged(
            "services:\n  web:\n    image: a\n    command: [x, y]\n    environment: [A=1, B=2]\n    dns: [1.1.1.1]\n",
            "services:\n  web:\n    image: b\n    command: z\n    environment: {B: '3', C: '4'}\n    dns: [8.8.8.8]\n  db:\n    image: pg\n",
        );
        let web = &v["services"]["web"];
        assert_eq!(web["image"], "b");
        assert_eq!(web["command"], "z");
        assert_eq!(
            web["environment"],
            serde_json::json!({"A": "1", "B": "3", "C": "4"})
        );
        assert_eq!(web["dns"], serde_json::json!(["1.1.1.1", "8.8.8.8"]));
        assert_eq!(v["services"]["db"]["image"], "pg");
    }

    #[test]
    fn keyed_lists_merge_by_key() {
        let v = merged(
            "services:\n  web:\n    ports: ['80:80']\n    secrets: [a, {source: b, target: x}]\n    volumes: ['d:/data', 'e:/e']\n",
            "services:\n  web:\n    ports: ['80:80', '443:443']\n    secrets: [{source: b, target: y}]\n    volumes: ['f:/data']\n",
        );
        let web = &v["services"]["web"];
        assert_eq!(web["ports"], serde_json::json!(["80:80", "443:443"]));
        assert_eq!(
            web["secrets"],
            serde_json::json!(["a", {"source": "b", "target": "y"}])
        );
        assert_eq!(web["volumes"], serde_json::json!(["f:/data", "e:/e"]));
    }

    #[test]
    fn top_level_objects_are_replaced_by_name() {
        let v = merged(
            "networks:\n  a: {driver: overlay, attachable: true}\n  b: {}\n",
            "networks:\n  a: {internal: true}\n",
        );
        assert_eq!(
            v["networks"],
            serde_json::json!({"a": {"internal": true}, "b": {}})
        );
    }

    #[test]
    fn logging_and_healthcheck() {
        let v = merged(
            "services:\n  w:\n    logging: {driver: json-file, options: {max-size: 1m}}\n    healthcheck: {test: [CMD, a], retries: 3}\n",
            "services:\n  w:\n    logging: {options: {max-file: '2'}}\n    healthcheck: {test: [CMD, b]}\n",
        );
        let w = &v["services"]["w"];
        assert_eq!(
            w["logging"],
            serde_json::json!({"driver": "json-file", "options": {"max-size": "1m", "max-file": "2"}})
        );
        assert_eq!(
            w["healthcheck"],
            serde_json::json!({"test": ["CMD", "b"], "retries": 3})
        );
        let v = merged(
            "services:\n  w:\n    logging: {driver: json-file, options: {max-size: 1m}}\n",
            "services:\n  w:\n    logging: {driver: syslog}\n",
        );
        assert_eq!(
            v["services"]["w"]["logging"],
            serde_json::json!({"driver": "syslog"})
        );
    }
}
