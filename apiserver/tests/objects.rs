//! Single-object endpoints over HTTP: status codes, CAS, generation, no-op writes,
//! subresources, admission, finalizers, selectors and pagination.

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn create_get_update_delete_and_their_status_codes() {
    let t = start().await;
    let created = t.post("/v1/services", &service("web", "nginx")).await;
    assert_eq!(created.code, 201, "{}", created.body);
    assert_eq!(created.body["metadata"]["generation"], 1);
    assert!(
        created.body["metadata"]["uid"]
            .as_str()
            .is_some_and(|u| !u.is_empty())
    );

    let again = t.post("/v1/services", &service("web", "nginx")).await;
    assert_eq!(again.code, 409);
    assert_eq!(again.body["kind"], "Status");
    assert_eq!(again.body["reason"], "AlreadyExists");

    let got = t.get("/v1/services/web").await;
    assert_eq!(got.code, 200);
    assert_eq!(rv(&got.body), rv(&created.body));

    let missing = t.get("/v1/services/nope").await;
    assert_eq!(missing.code, 404);
    assert_eq!(missing.body["reason"], "NotFound");
    assert_eq!(missing.body["code"], 404);

    // A write with the current resourceVersion succeeds; the same version again is stale.
    let mut v2 = got.body.clone();
    v2["spec"]["taskTemplate"]["container"]["image"] = json!("nginx:2");
    let updated = t.put("/v1/services/web", &v2).await;
    assert_eq!(updated.code, 200, "{}", updated.body);
    assert_eq!(updated.body["metadata"]["generation"], 2);
    let stale = t.put("/v1/services/web", &v2).await;
    assert_eq!(stale.code, 409);
    assert_eq!(stale.body["reason"], "Conflict");

    // Stale delete precondition: 409; then a plain delete: 200 and gone.
    let stale_delete = t
        .delete(&format!(
            "/v1/services/web?resourceVersion={}",
            rv(&created.body)
        ))
        .await;
    assert_eq!(stale_delete.code, 409);
    let deleted = t.delete("/v1/services/web").await;
    assert_eq!(deleted.code, 200);
    assert_eq!(t.get("/v1/services/web").await.code, 404);
    assert_eq!(t.delete("/v1/services/web").await.code, 404);

    // Unknown resources and kinds without status.
    assert_eq!(t.get("/v1/pods").await.code, 404);
    t.post("/v1/secrets", &secret("pw", "YQ==")).await;
    assert_eq!(t.get("/v1/secrets/pw/status").await.code, 404);
}

#[tokio::test]
async fn invalid_bodies_are_422_with_field_causes() {
    let t = start().await;
    let mut bad = service("web", "nginx");
    bad["spec"]["taskTemplate"]["container"]["imag"] = json!("x");
    let r = t.post("/v1/services", &bad).await;
    assert_eq!(r.code, 422);
    assert_eq!(r.body["reason"], "Invalid");
    assert_eq!(
        r.body["details"]["causes"][0]["field"],
        "spec.taskTemplate.container.imag"
    );

    let r = t.post("/v1/services", &service("web", "")).await;
    assert_eq!(r.code, 422);
    assert_eq!(
        r.body["details"]["causes"][0]["field"],
        "spec.taskTemplate.container.image"
    );

    t.post("/v1/services", &service("web", "nginx")).await;
    let r = t.put("/v1/services/web", &service("other", "nginx")).await;
    assert_eq!(r.code, 422);
    assert_eq!(r.body["details"]["causes"][0]["field"], "metadata.name");

    let r = t
        .post(
            "/v1/services",
            &json!({"kind": "Network", "metadata": {"name": "x"}}),
        )
        .await;
    assert_eq!(r.code, 422);
    assert_eq!(r.body["details"]["causes"][0]["field"], "kind");

    // Not JSON: 400 with a Status.
    let resp = t
        .http
        .post(format!("{}/v1/services", t.url))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["reason"], "BadRequest");
}

#[tokio::test]
async fn oversized_bodies_are_413_with_a_status() {
    let t = start().await;
    let mut big = service("web", "nginx");
    big["metadata"]["annotations"] = json!({"blob": "x".repeat(4 * 1024 * 1024)});
    let r = t.post("/v1/services", &big).await;
    assert_eq!(r.code, 413);
    assert_eq!(r.body["kind"], "Status");
    assert_eq!(r.body["reason"], "RequestEntityTooLarge");
}

#[tokio::test]
async fn noop_writes_keep_the_resource_version() {
    let t = start().await;
    let created = t.post("/v1/services", &service("web", "nginx")).await.body;
    let before = t.revision().await;
    let same = t.put("/v1/services/web", &created).await;
    assert_eq!(same.code, 200);
    assert_eq!(rv(&same.body), rv(&created));
    // Spelled-out defaults decode to the same object: still a no-op.
    let mut explicit = created.clone();
    explicit["spec"]["mode"] = json!({"replicated": {"replicas": 1}});
    let same = t.put("/v1/services/web", &explicit).await;
    assert_eq!(rv(&same.body), rv(&created));
    assert_eq!(t.revision().await, before);
}

#[tokio::test]
async fn generation_follows_spec_only_and_subresources_split_writers() {
    let t = start().await;
    let created = t.post("/v1/services", &service("web", "nginx")).await.body;

    // Labels: written, generation unchanged.
    let mut labelled = created.clone();
    labelled["metadata"]["labels"] = json!({"tier": "front"});
    let labelled = t.put("/v1/services/web", &labelled).await.body;
    assert_eq!(labelled["metadata"]["generation"], 1);
    assert_ne!(rv(&labelled), rv(&created));

    // Status through the main resource is ignored.
    let mut with_status = labelled.clone();
    with_status["status"] = json!({"observedGeneration": 7});
    let r = t.put("/v1/services/web", &with_status).await.body;
    assert_eq!(
        rv(&r),
        rv(&labelled),
        "status-only change via PUT must be a no-op"
    );

    // Status through /status is written; spec in that body is ignored; generation unchanged.
    let mut st = labelled.clone();
    st["status"] = json!({"observedGeneration": 1});
    st["spec"]["taskTemplate"]["container"]["image"] = json!("evil");
    let r = t.put("/v1/services/web/status", &st).await;
    assert_eq!(r.code, 200, "{}", r.body);
    assert_eq!(r.body["status"]["observedGeneration"], 1);
    assert_eq!(
        r.body["spec"]["taskTemplate"]["container"]["image"],
        "nginx"
    );
    assert_eq!(r.body["metadata"]["generation"], 1);
}

#[tokio::test]
async fn secret_data_is_immutable() {
    let t = start().await;
    let created = t.post("/v1/secrets", &secret("pw", "YQ==")).await.body;
    let mut relabel = created.clone();
    relabel["metadata"]["labels"] = json!({"a": "b"});
    assert_eq!(t.put("/v1/secrets/pw", &relabel).await.code, 200);
    let mut change = secret("pw", "Yg==");
    change["metadata"]["labels"] = json!({"a": "b"});
    let r = t.put("/v1/secrets/pw", &change).await;
    assert_eq!(r.code, 422);
    assert_eq!(
        r.body["details"]["causes"][0]["message"],
        "only updates to Labels are allowed"
    );
}

#[tokio::test]
async fn task_state_regression_is_refused() {
    let t = start().await;
    let created = t.post("/v1/tasks", &task("web.1.1", "web")).await;
    assert_eq!(created.code, 201, "{}", created.body);
    let mut running = created.body.clone();
    running["status"] = json!({"state": "running"});
    let r = t.put("/v1/tasks/web.1.1/status", &running).await;
    assert_eq!(r.code, 200, "{}", r.body);
    let mut back = r.body.clone();
    back["status"]["state"] = json!("pending");
    let refused = t.put("/v1/tasks/web.1.1/status", &back).await;
    assert_eq!(refused.code, 409);
    assert_eq!(refused.body["reason"], "Conflict");
    let msg = refused.body["message"].as_str().unwrap();
    assert!(msg.contains("from running to pending"), "{msg}");
    assert_eq!(
        t.get("/v1/tasks/web.1.1").await.body["status"]["state"],
        "running"
    );
}

#[tokio::test]
async fn finalizers_turn_delete_into_a_pending_deletion() {
    let t = start().await;
    let mut n = network("net");
    n["metadata"]["finalizers"] = json!(["swarm/ipam"]);
    t.post("/v1/networks", &n).await;
    let r = t.delete("/v1/networks/net").await;
    assert_eq!(r.code, 202);
    assert!(r.body["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(t.get("/v1/networks/net").await.code, 200);
    let mut released = r.body.clone();
    released["metadata"]["finalizers"] = json!([]);
    let r = t.put("/v1/networks/net", &released).await;
    assert_eq!(r.code, 200, "{}", r.body);
    assert_eq!(t.get("/v1/networks/net").await.code, 404);
}

#[tokio::test]
async fn selectors_and_pagination() {
    let t = start().await;
    for (name, node, state) in [
        ("web.1.1", "n1", "running"),
        ("web.2.1", "n2", "running"),
        ("web.3.1", "n1", "failed"),
        ("db.1.1", "n1", "running"),
    ] {
        let mut tk = task(name, name.split('.').next().unwrap());
        tk["metadata"]["labels"] = json!({"app": name.split('.').next().unwrap()});
        tk["spec"]["nodeName"] = json!(node);
        let created = t.post("/v1/tasks", &tk).await.body;
        let mut s = created.clone();
        s["status"] = json!({"state": state});
        assert_eq!(
            t.put(&format!("/v1/tasks/{name}/status"), &s).await.code,
            200
        );
    }
    let names = |body: &serde_json::Value| -> Vec<String> {
        body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    let r = t.get("/v1/tasks?labelSelector=app%3Dweb").await;
    assert_eq!(r.body["kind"], "TaskList");
    assert_eq!(r.body["apiVersion"], "swarm/v1");
    assert_eq!(names(&r.body), ["web.1.1", "web.2.1", "web.3.1"]);
    let r = t.get("/v1/tasks?labelSelector=app%20notin%20(web)").await;
    assert_eq!(names(&r.body), ["db.1.1"]);
    let r = t
        .get("/v1/tasks?fieldSelector=spec.nodeName%3Dn1,status.state!%3Dfailed")
        .await;
    assert_eq!(names(&r.body), ["db.1.1", "web.1.1"]);
    let r = t
        .get("/v1/tasks?fieldSelector=spec.service%3D%3Dweb&labelSelector=app")
        .await;
    assert_eq!(names(&r.body).len(), 3);

    assert_eq!(
        t.get("/v1/tasks?labelSelector=app%20in%20(web").await.code,
        400
    );
    assert_eq!(
        t.get("/v1/tasks?fieldSelector=spec.bogus%3D1").await.code,
        400
    );
    assert_eq!(t.get("/v1/tasks?limit=abc").await.code, 400);
    assert_eq!(t.get("/v1/tasks?limit=1&continue=garbage").await.code, 400);

    // Pages of 3 with a selector, all at the first page's revision.
    let p1 = t
        .get("/v1/tasks?limit=2&labelSelector=app%3Dweb")
        .await
        .body;
    assert_eq!(names(&p1), ["web.1.1", "web.2.1"]);
    let token = p1["metadata"]["continue"].as_str().unwrap().to_string();
    t.post("/v1/tasks", &task("web.9.1", "web")).await;
    let p2 = t
        .get(&format!(
            "/v1/tasks?limit=2&labelSelector=app%3Dweb&continue={token}"
        ))
        .await
        .body;
    assert_eq!(names(&p2), ["web.3.1"]);
    assert_eq!(
        p2["metadata"]["resourceVersion"],
        p1["metadata"]["resourceVersion"]
    );
    assert!(
        p2["metadata"]
            .get("continue")
            .is_none_or(|c| c.is_null() || c == "")
    );

    // A token whose revision was compacted away: 410 Expired.
    let p1 = t.get("/v1/tasks?limit=1").await.body;
    let token = p1["metadata"]["continue"].as_str().unwrap().to_string();
    t.post("/v1/tasks", &task("web.10.1", "web")).await;
    let now = t.revision().await;
    t.store.compact(now).await.unwrap();
    let r = t.get(&format!("/v1/tasks?limit=1&continue={token}")).await;
    assert_eq!(r.code, 410, "{}", r.body);
    assert_eq!(r.body["reason"], "Expired");
}

#[tokio::test]
async fn health_metrics_and_openapi() {
    let t = start().await;
    assert_eq!(t.get("/healthz").await.code, 200);
    assert_eq!(t.get("/readyz").await.code, 200);
    t.get("/v1/services/nope").await;
    let m = t.get("/metrics").await;
    let text = m.body.as_str().unwrap();
    assert!(
        text.contains(
            "swarm_apiserver_requests_total{verb=\"GET\",resource=\"services\",code=\"404\"} 1"
        ),
        "{text}"
    );
    // The GET was answered by the watch cache, which asked the store for its revision first.
    assert!(
        text.contains("swarm_apiserver_store_duration_seconds_count{op=\"current_revision\"}"),
        "{text}"
    );
    let doc = t.get("/openapi.json").await.body;
    assert!(doc["paths"]["/v1/services/{name}"]["put"].is_object());
    assert!(doc["components"]["schemas"]["Service"].is_object());
}
