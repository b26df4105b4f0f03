//! Property: conversion is deterministic. The same stack, with its mapping keys written in
//! any order, converts to byte-identical JSON.

use std::collections::BTreeMap;
use std::path::PathBuf;

use proptest::prelude::*;
use swarm_api::stack::{MemFs, load_stack};

#[derive(Debug, Clone)]
struct Svc {
    env: BTreeMap<String, String>,
    labels: BTreeMap<String, String>,
    networks: Vec<String>,
    ports: Vec<(u16, u16)>,
    replicas: u8,
}

fn svc() -> impl Strategy<Value = Svc> {
    (
        prop::collection::btree_map("[A-Z]{1,6}", "[a-z0-9]{0,6}", 0..5),
        prop::collection::btree_map("[a-z]{1,6}", "[a-z0-9]{0,6}", 0..4),
        prop::collection::btree_set(prop::sample::select(vec!["n1", "n2", "n3"]), 0..3),
        prop::collection::btree_map(1u16..30000, 1u16..30000, 0..3),
        0u8..5,
    )
        .prop_map(|(env, labels, nets, ports, replicas)| Svc {
            env,
            labels,
            networks: nets.into_iter().map(str::to_string).collect(),
            ports: ports.into_iter().collect(),
            replicas,
        })
}

/// Renders the stack, writing every mapping in the order `rev` picks.
fn render(services: &BTreeMap<String, Svc>, rev: bool) -> String {
    fn ordered<T: Clone>(items: Vec<T>, rev: bool) -> Vec<T> {
        if rev {
            items.into_iter().rev().collect()
        } else {
            items
        }
    }
    let mut y = String::from("version: '3.8'\nservices:\n");
    for (name, s) in ordered(services.iter().collect(), rev) {
        y.push_str(&format!("  {name}:\n"));
        let mut keys = vec![format!("    image: img/{name}\n")];
        let env: String = ordered(s.env.iter().collect(), rev)
            .into_iter()
            .map(|(k, v)| format!("      {k}: '{v}'\n"))
            .collect();
        keys.push(format!("    environment:\n{env}").replace(":\n\n", ": {}\n"));
        if s.env.is_empty() {
            keys.pop();
        }
        if !s.labels.is_empty() {
            let l: String = ordered(s.labels.iter().collect(), rev)
                .into_iter()
                .map(|(k, v)| format!("      - {k}={v}\n"))
                .collect();
            keys.push(format!("    labels:\n{l}"));
        }
        if !s.networks.is_empty() {
            let n = ordered(s.networks.clone(), rev).join(", ");
            keys.push(format!("    networks: [{n}]\n"));
        }
        if !s.ports.is_empty() {
            let p: String = ordered(s.ports.clone(), rev)
                .into_iter()
                .map(|(a, b)| format!("      - '{a}:{b}'\n"))
                .collect();
            keys.push(format!("    ports:\n{p}"));
        }
        keys.push(format!("    deploy:\n      replicas: {}\n", s.replicas));
        for k in ordered(keys, rev) {
            y.push_str(&k);
        }
    }
    y.push_str("networks:\n");
    for n in ordered(vec!["n1", "n2", "n3"], rev) {
        y.push_str(&format!("  {n}: {{}}\n"));
    }
    y
}

fn convert(yaml: &str) -> Result<String, String> {
    let fs = MemFs::new().with("/d/s.yml", yaml);
    let no_env = |_: &str| None;
    load_stack(&[PathBuf::from("/d/s.yml")], None, &no_env, &fs)
        .map(|s| serde_json::to_string(&s.objects).unwrap())
        .map_err(|e| e.to_string())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn conversion_is_independent_of_key_order(
        services in prop::collection::btree_map("[a-z]{1,8}", svc(), 1..4)
    ) {
        let forward = render(&services, false);
        let backward = render(&services, true);
        let a = convert(&forward);
        let b = convert(&backward);
        // Published ports may collide across a service's entries; both orders must agree anyway.
        prop_assert_eq!(&a, &b, "\n{}\n---\n{}", forward, backward);
        prop_assert_eq!(a.clone(), convert(&forward));
        if let Ok(json) = &a {
            for name in services.keys() {
                let expected = format!("\"s_{name}\"");
                prop_assert!(json.contains(&expected));
            }
        }
    }
}
