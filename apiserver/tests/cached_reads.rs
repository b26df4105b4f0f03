//! GETs and lists answered by the watch cache: a client that wrote then reads sees its write,
//! a list never shows half a transaction, and a consistent read does not touch the store.

mod common;

use common::*;
use serde_json::json;

/// How many times the store's `op` was called, from `/metrics`.
async fn store_calls(t: &TestServer, op: &str) -> u64 {
    let text = t.get("/metrics").await.body;
    let text = text.as_str().unwrap_or_default().to_string();
    let prefix = format!("swarm_apiserver_store_duration_seconds_count{{op=\"{op}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_reads_its_own_writes() {
    let t = start().await;
    let mut obj = t.post("/v1/tasks", &task("web.1.1", "web")).await.body;
    for i in 0..100 {
        // Writes to another kind in between: the cache of tasks must not wait for a task event.
        if i % 3 == 0 {
            let r = t.post("/v1/networks", &network(&format!("n{i}"))).await;
            assert_eq!(r.code, 201, "{}", r.body);
        }
        obj["metadata"]["labels"] = json!({"i": i.to_string()});
        let w = t.put("/v1/tasks/web.1.1", &obj).await;
        assert_eq!(w.code, 200, "{}", w.body);
        let r = t.get("/v1/tasks/web.1.1").await;
        assert_eq!(r.code, 200, "{}", r.body);
        assert_eq!(r.body["metadata"]["labels"]["i"], json!(i.to_string()));
        assert_eq!(
            r.body["metadata"]["resourceVersion"],
            w.body["metadata"]["resourceVersion"]
        );
        obj = r.body;

        let name = format!("web.2.{i}");
        assert_eq!(t.post("/v1/tasks", &task(&name, "web")).await.code, 201);
        assert_eq!(t.get(&format!("/v1/tasks/{name}")).await.code, 200);
        assert_eq!(t.delete(&format!("/v1/tasks/{name}")).await.code, 200);
        assert_eq!(t.get(&format!("/v1/tasks/{name}")).await.code, 404);
        // The status subresource reads the same way.
        let s = t.get("/v1/tasks/web.1.1/status").await;
        assert_eq!(s.body["metadata"]["labels"]["i"], json!(i.to_string()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_gets_and_lists_are_answered_from_memory() {
    let t = start().await;
    for i in 0..5 {
        assert_eq!(
            t.post("/v1/tasks", &task(&format!("t{i}"), "web"))
                .await
                .code,
            201
        );
    }
    let pw = t.post("/v1/secrets", &secret("pw", "aHVudGVyMg==")).await;
    assert_eq!(pw.code, 201);
    let (gets, lists) = (store_calls(&t, "get").await, store_calls(&t, "list").await);
    for i in 0..5 {
        let r = t.get(&format!("/v1/tasks/t{i}")).await;
        assert_eq!(r.code, 200);
    }
    assert_eq!(t.get("/v1/tasks/nope").await.code, 404);
    let l = t.get("/v1/tasks?labelSelector=!x").await;
    assert_eq!(l.body["kind"], "TaskList");
    assert_eq!(l.body["items"].as_array().unwrap().len(), 5);
    let rev: i64 = l.body["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(rev, t.revision().await);
    // Secrets stay redacted from memory, and show their data when asked (no TLS here).
    let s = t.get("/v1/secrets/pw").await;
    assert_eq!(s.body["spec"]["data"], "");
    let s = t.get("/v1/secrets/pw?showData=true").await;
    assert_eq!(s.body["spec"]["data"], "aHVudGVyMg==");
    let s = t.get("/v1/secrets").await;
    assert_eq!(s.body["items"][0]["spec"]["data"], "");
    // `resourceVersion=0`: any state will do.
    assert_eq!(t.get("/v1/tasks/t0?resourceVersion=0").await.code, 200);
    assert_eq!(
        (store_calls(&t, "get").await, store_calls(&t, "list").await),
        (gets, lists),
        "a consistent read went to the store"
    );
    // Paging still reads the store (its continue token names a store revision).
    let p = t.get("/v1/tasks?limit=2").await;
    assert_eq!(p.body["items"].as_array().unwrap().len(), 2);
    assert!(store_calls(&t, "list").await > lists);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_sees_a_transaction_whole() {
    let t = start().await;
    for round in 0..30 {
        let ops: Vec<_> = (0..4)
            .map(|i| json!({"op": "create", "object": task(&format!("r{round}.{i}"), "web")}))
            .chain([json!({"op": "create", "object": network(&format!("net{round}"))})])
            .collect();
        let r = t
            .post("/v1/transactions", &json!({"operations": ops}))
            .await;
        assert_eq!(r.code, 200, "{}", r.body);
        let l = t.get("/v1/tasks").await;
        assert_eq!(
            l.body["items"].as_array().unwrap().len(),
            4 * (round + 1),
            "round {round}"
        );
        let n = t.get("/v1/networks").await;
        assert_eq!(n.body["items"].as_array().unwrap().len(), round + 1);
    }
}
