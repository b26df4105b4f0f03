//! Stack apply and transactions over HTTP: actions, atomicity, dry runs, pruning, refusals.

mod common;

use common::*;
use serde_json::{Value, json};

fn actions(body: &Value) -> Vec<(String, String, String)> {
    body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["kind"].as_str().unwrap().to_string(),
                r["name"].as_str().unwrap().to_string(),
                r["action"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn t3(k: &str, n: &str, a: &str) -> (String, String, String) {
    (k.into(), n.into(), a.into())
}

fn voting(image: &str) -> Value {
    let mut vote = service("voting_vote", image);
    vote["spec"]["taskTemplate"]["networks"] = json!([{"target": "voting_front"}]);
    json!({"objects": [network("voting_front"), vote, service("voting_db", "postgres")]})
}

#[tokio::test]
async fn apply_creates_configures_leaves_unchanged_and_prunes() {
    let t = start().await;
    let r = t.post("/v1/stacks/voting/apply", &voting("vote:1")).await;
    assert_eq!(r.code, 200, "{}", r.body);
    assert_eq!(r.body["stack"], "voting");
    assert_eq!(r.body["dryRun"], false);
    assert_eq!(
        actions(&r.body),
        [
            t3("Network", "voting_front", "created"),
            t3("Service", "voting_vote", "created"),
            t3("Service", "voting_db", "created"),
        ]
    );
    let svc = t.get("/v1/services/voting_vote").await.body;
    assert_eq!(svc["metadata"]["labels"]["swarm.stack"], "voting");

    // Same request again: nothing written at all.
    let before = t.revision().await;
    let r = t.post("/v1/stacks/voting/apply", &voting("vote:1")).await;
    assert!(actions(&r.body).iter().all(|(_, _, a)| a == "unchanged"));
    assert_eq!(t.revision().await, before);

    // A new image: configured, the rest unchanged, generation bumped.
    let r = t.post("/v1/stacks/voting/apply", &voting("vote:2")).await;
    assert_eq!(
        actions(&r.body)[1],
        t3("Service", "voting_vote", "configured")
    );
    assert_eq!(actions(&r.body)[2], t3("Service", "voting_db", "unchanged"));
    assert_eq!(
        t.get("/v1/services/voting_vote").await.body["metadata"]["generation"],
        2
    );

    // Prune: drop the db from the request.
    let mut fewer = voting("vote:2");
    fewer["objects"].as_array_mut().unwrap().pop();
    let r = t.post("/v1/stacks/voting/apply?prune=true", &fewer).await;
    assert_eq!(r.code, 200, "{}", r.body);
    assert!(actions(&r.body).contains(&t3("Service", "voting_db", "pruned")));
    assert_eq!(t.get("/v1/services/voting_db").await.code, 404);
    // Objects of other stacks are never pruned.
    assert_eq!(
        actions(
            &t.post(
                "/v1/stacks/other/apply",
                &json!({"objects": [service("other_x", "x")]})
            )
            .await
            .body
        ),
        [t3("Service", "other_x", "created")]
    );
    t.post("/v1/stacks/voting/apply?prune=true", &fewer).await;
    assert_eq!(t.get("/v1/services/other_x").await.code, 200);
}

#[tokio::test]
async fn dry_run_writes_nothing_and_answers_the_same() {
    let t = start().await;
    let before = t.revision().await;
    let r = t
        .post("/v1/stacks/voting/apply?dryRun=true", &voting("vote:1"))
        .await;
    assert_eq!(r.code, 200, "{}", r.body);
    assert_eq!(r.body["dryRun"], true);
    assert!(actions(&r.body).iter().all(|(_, _, a)| a == "created"));
    assert_eq!(t.revision().await, before);
    assert_eq!(t.get("/v1/services/voting_vote").await.code, 404);
}

#[tokio::test]
async fn a_refused_apply_writes_nothing() {
    let t = start().await;
    let before = t.revision().await;
    // Two invalid objects: every cause is listed, prefixed with its object.
    let mut body = voting("vote:1");
    body["objects"][1]["spec"]["taskTemplate"]["container"]["image"] = json!("");
    body["objects"][2]["spec"]["taskTemplate"]["container"]["bogus"] = json!(1);
    let r = t.post("/v1/stacks/voting/apply", &body).await;
    assert_eq!(r.code, 422, "{}", r.body);
    let fields: Vec<&str> = r.body["details"]["causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "objects[1].spec.taskTemplate.container.image",
            "objects[2].spec.taskTemplate.container.bogus"
        ]
    );
    assert_eq!(t.revision().await, before);

    // A service on a network that exists nowhere.
    let mut web = service("voting_web", "web");
    web["spec"]["taskTemplate"]["networks"] = json!([{"target": "ext"}]);
    let r = t
        .post(
            "/v1/stacks/voting/apply",
            &json!({"objects": [network("voting_front"), web]}),
        )
        .await;
    assert_eq!(r.code, 422, "{}", r.body);
    let msg = r.body["details"]["causes"][0]["message"].as_str().unwrap();
    assert_eq!(
        msg,
        "network \"ext\" not found: create it or remove it from services.web.networks"
    );
    assert_eq!(t.revision().await, before);
    assert_eq!(t.get("/v1/networks/voting_front").await.code, 404);

    // Once it exists (outside the stack), the same apply goes through.
    t.post("/v1/networks", &network("ext")).await;
    let mut web = service("voting_web", "web");
    web["spec"]["taskTemplate"]["networks"] = json!([{"target": "ext"}]);
    let r = t
        .post("/v1/stacks/voting/apply", &json!({"objects": [web]}))
        .await;
    assert_eq!(r.code, 200, "{}", r.body);
}

#[tokio::test]
async fn apply_refuses_changing_secret_data() {
    let t = start().await;
    let body = json!({"objects": [secret("s_pw", "YQ==")]});
    assert_eq!(t.post("/v1/stacks/s/apply", &body).await.code, 200);
    let before = t.revision().await;
    let body = json!({"objects": [secret("s_pw", "Yg==")]});
    let r = t.post("/v1/stacks/s/apply", &body).await;
    assert_eq!(r.code, 422);
    assert_eq!(
        r.body["details"]["causes"][0]["field"],
        "objects[0].spec.data"
    );
    assert_eq!(t.revision().await, before);
}

#[tokio::test]
async fn transactions_commit_all_or_nothing() {
    let t = start().await;
    let old = t.post("/v1/tasks", &task("web.1.1", "web")).await.body;
    let mut stopped = old.clone();
    stopped["spec"]["desiredState"] = json!("shutdown");
    let ok = t
        .post(
            "/v1/transactions",
            &json!({"operations": [
                {"op": "update", "object": stopped},
                {"op": "create", "object": task("web.1.2", "web")},
            ]}),
        )
        .await;
    assert_eq!(ok.code, 200, "{}", ok.body);
    let rev = ok.body["resourceVersion"].as_str().unwrap().to_string();
    assert_eq!(rv(&ok.body["results"][0]), rev);
    assert_eq!(rv(&ok.body["results"][1]), rev);
    assert_eq!(ok.body["results"][0]["spec"]["desiredState"], "shutdown");

    // Second operation is stale: nothing of the first is written.
    let before = t.revision().await;
    let r = t
        .post(
            "/v1/transactions",
            &json!({"operations": [
                {"op": "create", "object": task("web.1.3", "web")},
                {"op": "delete", "kind": "Task", "name": "web.1.1", "resourceVersion": rv(&old)},
            ]}),
        )
        .await;
    assert_eq!(r.code, 409, "{}", r.body);
    assert!(
        r.body["message"]
            .as_str()
            .unwrap()
            .starts_with("operations[1]: ")
    );
    assert_eq!(r.body["details"]["causes"][0]["field"], "operations[1]");
    assert_eq!(t.revision().await, before);
    assert_eq!(t.get("/v1/tasks/web.1.3").await.code, 404);

    // Create of an existing name names its operation too.
    let r = t
        .post(
            "/v1/transactions",
            &json!({"operations": [{"op": "create", "object": task("web.1.2", "web")}]}),
        )
        .await;
    assert_eq!(r.code, 409);
    assert_eq!(r.body["reason"], "AlreadyExists");
    assert_eq!(r.body["details"]["causes"][0]["field"], "operations[0]");

    // Status updates go through admission: a regression is refused.
    let cur = t.get("/v1/tasks/web.1.2").await.body;
    let mut running = cur.clone();
    running["status"] = json!({"state": "running"});
    let r = t
        .post(
            "/v1/transactions",
            &json!({"operations": [{"op": "updateStatus", "object": running}]}),
        )
        .await;
    assert_eq!(r.code, 200, "{}", r.body);
    let mut back = r.body["results"][0].clone();
    back["status"]["state"] = json!("new");
    let r = t
        .post(
            "/v1/transactions",
            &json!({"operations": [{"op": "updateStatus", "object": back}]}),
        )
        .await;
    assert_eq!(r.code, 409);
    assert!(
        r.body["message"]
            .as_str()
            .unwrap()
            .contains("from running to new")
    );

    // Validation failures are 422 with causes under the operation.
    let r = t
        .post(
            "/v1/transactions",
            &json!({"operations": [{"op": "create", "object": {"kind": "Task", "metadata": {"name": "x"}}}, {"op": "frobnicate"}]}),
        )
        .await;
    assert_eq!(r.code, 422, "{}", r.body);
    let fields: Vec<&str> = r.body["details"]["causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["operations[0].spec.service", "operations[1].op"]);
}
