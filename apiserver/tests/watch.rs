//! Watches over HTTP: initial state, resume from a revision (memory window and store),
//! 410 on compacted history, bookmarks, selectors, no events for no-op writes.

mod common;

use common::*;
use serde_json::json;
use swarm_apiserver::watch_cache::CacheOptions;

#[tokio::test]
async fn watch_without_version_starts_with_current_objects() {
    let t = start().await;
    t.post("/v1/networks", &network("a")).await;
    t.post("/v1/networks", &network("b")).await;
    let mut w = t.watch("/v1/networks?watch=true").await;
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let e = w.next_change().await.unwrap();
        assert_eq!(e["type"], "ADDED");
        seen.push(
            e["object"]["metadata"]["name"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    seen.sort();
    assert_eq!(seen, ["a", "b"]);
    t.post("/v1/networks", &network("c")).await;
    let e = w.next_change().await.unwrap();
    assert_eq!(e["type"], "ADDED");
    assert_eq!(e["object"]["metadata"]["name"], "c");
    t.delete("/v1/networks/a").await;
    let e = w.next_change().await.unwrap();
    assert_eq!(e["type"], "DELETED");
    assert_eq!(e["object"]["metadata"]["name"], "a");
}

#[tokio::test]
async fn resume_from_a_revision_and_no_event_for_noop_writes() {
    let t = start().await;
    let a = t.post("/v1/services", &service("web", "nginx")).await.body;
    let start_rv = rv(&a);
    // Changes after start_rv: a no-op PUT (nothing), a label change, a new service.
    t.put("/v1/services/web", &a).await;
    let mut changed = a.clone();
    changed["metadata"]["labels"] = json!({"x": "1"});
    let changed = t.put("/v1/services/web", &changed).await.body;
    t.post("/v1/services", &service("db", "postgres")).await;

    let mut w = t
        .watch(&format!(
            "/v1/services?watch=true&resourceVersion={start_rv}"
        ))
        .await;
    let e1 = w.next_change().await.unwrap();
    assert_eq!(e1["type"], "MODIFIED");
    assert_eq!(rv(&e1["object"]), rv(&changed));
    let e2 = w.next_change().await.unwrap();
    assert_eq!(e2["type"], "ADDED");
    assert_eq!(e2["object"]["metadata"]["name"], "db");
}

#[tokio::test]
async fn resume_from_older_than_the_memory_window_uses_the_store() {
    let mut opts = options();
    opts.cache = CacheOptions {
        window: 2,
        ..opts.cache
    };
    let t = start_with(opts).await;
    let first = t.post("/v1/networks", &network("n0")).await.body;
    for i in 1..6 {
        t.post("/v1/networks", &network(&format!("n{i}"))).await;
    }
    let mut w = t
        .watch(&format!(
            "/v1/networks?watch=true&resourceVersion={}",
            rv(&first)
        ))
        .await;
    for i in 1..6 {
        let e = w.next_change().await.unwrap();
        assert_eq!(e["type"], "ADDED");
        assert_eq!(e["object"]["metadata"]["name"], format!("n{i}"));
    }
    // And live events keep coming on that watch.
    t.post("/v1/networks", &network("n6")).await;
    let e = w.next_change().await.unwrap();
    assert_eq!(e["object"]["metadata"]["name"], "n6");
}

#[tokio::test]
async fn compacted_revision_is_410_with_a_status() {
    // A window of one event: resuming from `n0` needs history neither the cache nor the
    // store holds (within the window the cache would serve it, compacted or not).
    let mut opts = options();
    opts.cache = CacheOptions {
        window: 1,
        ..opts.cache
    };
    let t = start_with(opts).await;
    let first = t.post("/v1/networks", &network("n0")).await.body;
    t.post("/v1/networks", &network("n1")).await;
    t.post("/v1/networks", &network("n2")).await;
    t.store.compact(t.revision().await).await.unwrap();
    let r = t
        .get(&format!(
            "/v1/networks?watch=true&resourceVersion={}",
            rv(&first)
        ))
        .await;
    assert_eq!(r.code, 410);
    assert_eq!(r.body["kind"], "Status");
    assert_eq!(r.body["reason"], "Expired");
}

#[tokio::test]
async fn bookmarks_carry_only_the_revision() {
    let t = start().await;
    let a = t.post("/v1/networks", &network("n0")).await.body;
    let mut w = t
        .watch(&format!(
            "/v1/networks?watch=true&resourceVersion={}&allowWatchBookmarks=true",
            rv(&a)
        ))
        .await;
    let e = w.next().await.unwrap();
    assert_eq!(e["type"], "BOOKMARK");
    assert_eq!(e["object"]["kind"], "Network");
    assert_eq!(e["object"]["apiVersion"], "swarm/v1");
    let obj = e["object"].as_object().unwrap();
    assert_eq!(obj.len(), 3, "{e}");
    let bm: i64 = e["object"]["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(bm >= rv(&a).parse::<i64>().unwrap());
}

/// The revision of the next bookmark at or past `at_least` (other lines must be bookmarks).
async fn bookmark_past(w: &mut Watch, at_least: i64) -> i64 {
    loop {
        let e = w.next().await.expect("the watch goes on");
        assert_eq!(e["type"], "BOOKMARK", "{e}");
        let bm: i64 = rv(&e["object"]).parse().unwrap();
        if bm >= at_least {
            return bm;
        }
    }
}

/// A client watching several kinds orders them by bookmarks: the bookmarks of a kind nobody
/// writes still pass the revisions of writes to other kinds, and resuming from one is served
/// without a gap or a 410 — even after the store compacted past it.
#[tokio::test]
async fn bookmarks_of_a_quiet_kind_follow_the_store() {
    let t = start().await;
    let n0 = t.post("/v1/networks", &network("n0")).await.body;
    let mut w = t
        .watch(&format!(
            "/v1/networks?watch=true&resourceVersion={}&allowWatchBookmarks=true",
            rv(&n0)
        ))
        .await;
    let mut last = 0;
    for i in 0..3 {
        let s = t
            .post("/v1/services", &service(&format!("s{i}"), "nginx"))
            .await;
        assert_eq!(s.code, 201, "{}", s.body);
        last = rv(&s.body).parse().unwrap();
        // Only bookmarks come on the networks watch, and they reach each service write.
        assert!(bookmark_past(&mut w, last).await >= last);
    }
    let bm = bookmark_past(&mut w, last).await;

    // History up to now is compacted away in the store; the cache still covers it.
    t.post("/v1/services", &service("s3", "nginx")).await;
    t.store.compact(t.revision().await).await.unwrap();
    let mut resumed = t
        .watch(&format!(
            "/v1/networks?watch=true&resourceVersion={bm}&allowWatchBookmarks=true"
        ))
        .await;
    let n1 = t.post("/v1/networks", &network("n1")).await.body;
    let e = resumed.next_change().await.unwrap();
    assert_eq!(e["type"], "ADDED");
    assert_eq!(e["object"]["metadata"]["name"], "n1");
    assert_eq!(rv(&e["object"]), rv(&n1));
    let after: i64 = rv(&n1).parse().unwrap();
    assert!(bookmark_past(&mut resumed, after).await >= after);
}

#[tokio::test]
async fn selector_watches_see_objects_enter_and_leave() {
    let t = start().await;
    let mut w = t
        .watch("/v1/networks?watch=true&labelSelector=env%3Dprod")
        .await;
    let created = t.post("/v1/networks", &network("n")).await.body; // not matching
    let mut prod = created.clone();
    prod["metadata"]["labels"] = json!({"env": "prod"});
    let prod = t.put("/v1/networks/n", &prod).await.body;
    let mut dev = prod.clone();
    dev["metadata"]["labels"] = json!({"env": "dev"});
    t.put("/v1/networks/n", &dev).await;
    let e = w.next_change().await.unwrap();
    assert_eq!(e["type"], "ADDED");
    assert_eq!(rv(&e["object"]), rv(&prod));
    let e = w.next_change().await.unwrap();
    assert_eq!(e["type"], "DELETED");
    assert_eq!(e["object"]["metadata"]["labels"]["env"], "dev");
}

#[tokio::test]
async fn field_selector_watch_on_tasks() {
    let t = start().await;
    let mut w = t
        .watch("/v1/tasks?watch=true&fieldSelector=spec.nodeName%3Dn2")
        .await;
    let mut a = task("web.1.1", "web");
    a["spec"]["nodeName"] = json!("n1");
    t.post("/v1/tasks", &a).await;
    let mut b = task("web.2.1", "web");
    b["spec"]["nodeName"] = json!("n2");
    t.post("/v1/tasks", &b).await;
    let e = w.next_change().await.unwrap();
    assert_eq!(e["object"]["metadata"]["name"], "web.2.1");
}

#[tokio::test]
async fn bad_watch_parameters_are_400() {
    let t = start().await;
    assert_eq!(
        t.get("/v1/tasks?watch=true&resourceVersion=x").await.code,
        400
    );
    assert_eq!(t.get("/v1/tasks?watch=maybe").await.code, 400);
    assert_eq!(
        t.get("/v1/tasks?watch=true&fieldSelector=spec.nope%3D1")
            .await
            .code,
        400
    );
}

#[tokio::test]
async fn a_future_resource_version_is_refused_as_too_large() {
    let t = start().await;
    t.post("/v1/networks", &network("n0")).await;
    let current = t.revision().await;
    let r = t
        .get(&format!(
            "/v1/networks?watch=true&resourceVersion={}",
            current + 1
        ))
        .await;
    // Kubernetes' answer: 504 Timeout with a ResourceVersionTooLarge cause.
    assert_eq!(r.code, 504, "{}", r.body);
    assert_eq!(r.body["kind"], "Status");
    assert_eq!(r.body["reason"], "Timeout");
    assert_eq!(
        r.body["details"]["causes"][0]["reason"],
        "ResourceVersionTooLarge"
    );
    assert_eq!(r.body["details"]["causes"][0]["field"], "resourceVersion");
    // The current revision itself is fine: the watch streams what comes after it.
    let mut w = t
        .watch(&format!(
            "/v1/networks?watch=true&resourceVersion={current}"
        ))
        .await;
    t.post("/v1/networks", &network("n1")).await;
    let e = w.next_change().await.unwrap();
    assert_eq!(e["type"], "ADDED");
    assert_eq!(e["object"]["metadata"]["name"], "n1");
}

/// A Config with about 300 KB of data: large events fill socket buffers after a few writes.
/// (Config data is immutable, so each write creates a new one.)
fn big_config(i: usize) -> serde_json::Value {
    json!({"kind": "Config", "metadata": {"name": format!("big-{i}")},
           "spec": {"data": "A".repeat(400_000)}})
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off_without_slowing_others() {
    const MAX_WRITES: usize = 150;
    let mut opts = options();
    opts.cache.watcher_buffer = 8;
    let t = start_with(opts).await;
    let rv0 = rv(&t.post("/v1/configs", &big_config(0)).await.body);
    let path = format!("/v1/configs?watch=true&resourceVersion={rv0}");
    let mut fast = t.watch(&path).await;
    let slow = t.stalled_watch(&path).await;
    t.wait_open_watches("configs", 2).await;

    // Keep writing while the slow client reads nothing; the fast watcher gets every event,
    // until the server has let the slow watcher go.
    let mut written = Vec::new();
    let mut write = async |i: usize| {
        let r = t.post("/v1/configs", &big_config(i)).await;
        assert_eq!(r.code, 201, "{}", r.body);
        let e = fast.next_change().await.unwrap();
        assert_eq!(e["type"], "ADDED");
        assert_eq!(rv(&e["object"]), rv(&r.body));
        rv(&r.body)
    };
    for i in 1..=MAX_WRITES {
        written.push(write(i).await);
        if t.open_watches("configs").await == 1 {
            break;
        }
    }
    // The slow watch is ended on the server while its client still reads nothing (before
    // the fix its task sat blocked on the full body forever, holding its backlog).
    t.wait_open_watches("configs", 1).await;
    // Writes go on, and the other watcher still gets every event.
    for i in 1..=3 {
        written.push(write(MAX_WRITES + i).await);
    }

    // The slow client reads at last: an in-order prefix of the events, then an ERROR saying
    // it was cut off, then the end of the stream.
    let (code, events) = slow.read_to_end().await;
    assert_eq!(code, 200);
    let (last, changes) = events.split_last().expect("at least the ERROR line");
    assert_eq!(last["type"], "ERROR", "{last}");
    assert_eq!(last["object"]["kind"], "Status");
    assert_eq!(last["object"]["reason"], "Timeout");
    let got: Vec<String> = changes
        .iter()
        .inspect(|e| assert_eq!(e["type"], "ADDED"))
        .map(|e| rv(&e["object"]))
        .collect();
    assert!(got.len() < written.len(), "the slow client was not cut off");
    assert_eq!(
        got,
        written[..got.len()],
        "a prefix, in order, without gaps"
    );

    // Re-watching from the last version it saw resumes exactly where it stopped.
    let resume_from = got.last().cloned().unwrap_or(rv0);
    let mut again = t
        .watch(&format!(
            "/v1/configs?watch=true&resourceVersion={resume_from}"
        ))
        .await;
    for want in &written[got.len()..] {
        let e = again.next_change().await.unwrap();
        assert_eq!(e["type"], "ADDED");
        assert_eq!(&rv(&e["object"]), want);
    }
}
