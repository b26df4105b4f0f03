//! The `Store` conformance suite: one set of checks every backend must pass.
//!
//! Each check is an async function taking the store under test (or, for restarts, a `Backend`
//! that can restart it). Backends run the whole suite with the `conformance_tests!` macro, which
//! expands to one `#[tokio::test]` per check, each on a fresh store:
//!
//! ```ignore
//! conformance_tests!(EmbeddedBackend::new());          // in embedded.rs
//! conformance_tests!(EtcdBackend::start().await);      // in etcd.rs
//! ```
//!
//! The checks assert exact revisions relative to the store's revision when they start, so they
//! need a store nobody else writes to while they run.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::future::join_all;

use super::{
    Event, EventType, KeyValue, ListOptions, ProgressWatchStream, Revision, Store, StoreError,
    TxnOp, WatchItem, WatchStream,
};

/// A store under test that can be restarted on its data (re-open the file, restart etcd).
#[async_trait]
pub(crate) trait Backend: Send {
    fn store(&self) -> &dyn Store;
    /// Stops the store and starts it again on the same data.
    async fn restart(&mut self);
}

/// Expands to one test per conformance check; `$backend` builds a fresh `Backend`.
macro_rules! conformance_tests {
    ($backend:expr) => {
        $crate::store::conformance::conformance_tests!(@store $backend;
            crud_cas, revisions_monotonic, list_at_revision, pagination, txn_atomic,
            watch_from_revision, watch_live_tail, watch_progress, concurrent_writers,
            concurrent_cas, compaction);

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn conformance_restart() {
            let mut backend = $backend;
            $crate::store::conformance::restart(&mut backend).await;
        }
    };
    (@store $backend:expr; $($check:ident),*) => {
        mod conformance {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let backend = $backend;
                    $crate::store::conformance::$check(
                        $crate::store::conformance::Backend::store(&backend),
                    )
                    .await;
                }
            )*
        }
    };
}
pub(crate) use conformance_tests;

pub(crate) fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// The next event of a watch, failing the test after 10 s.
pub(crate) async fn next_event(w: &mut WatchStream) -> Event {
    match tokio::time::timeout(Duration::from_secs(10), w.next()).await {
        Err(_) => panic!("timed out waiting for a watch event"),
        Ok(None) => panic!("watch ended"),
        Ok(Some(Err(e))) => panic!("watch failed: {e}"),
        Ok(Some(Ok(ev))) => ev,
    }
}

/// Fails if the watch delivers anything within `ms` milliseconds.
pub(crate) async fn assert_quiet(w: &mut WatchStream, ms: u64) {
    if let Ok(item) = tokio::time::timeout(Duration::from_millis(ms), w.next()).await {
        panic!("expected no watch event, got {item:?}");
    }
}

fn put(key: &str, value: &str, prev: Option<&str>, revision: Revision, create: Revision) -> Event {
    Event {
        kind: EventType::Put,
        key: key.into(),
        value: b(value),
        prev_value: prev.map(b),
        revision,
        create_revision: create,
    }
}

fn del(key: &str, value: &str, revision: Revision, create: Revision) -> Event {
    Event {
        kind: EventType::Delete,
        key: key.into(),
        value: b(value),
        prev_value: Some(b(value)),
        revision,
        create_revision: create,
    }
}

fn kv(key: &str, value: &str, create: Revision, modified: Revision) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: b(value),
        create_revision: create,
        mod_revision: modified,
    }
}

fn keys(items: &[KeyValue]) -> Vec<&str> {
    items.iter().map(|kv| kv.key.as_str()).collect()
}

async fn list_at(s: &dyn Store, prefix: &str, revision: Revision) -> Vec<KeyValue> {
    let opts = ListOptions {
        revision,
        ..Default::default()
    };
    let r = s.list(prefix, opts).await.unwrap();
    assert!(!r.more);
    if revision > 0 {
        assert_eq!(r.revision, revision);
    }
    r.items
}

/// Create, update and delete, with and without an expected revision.
pub(crate) async fn crud_cas(s: &dyn Store) {
    let key = "/registry/crud/a";
    let base = s.current_revision().await.unwrap();

    let a1 = s.create(key, b("1")).await.unwrap();
    assert_eq!(a1, kv(key, "1", base + 1, base + 1));
    assert_eq!(s.get(key).await.unwrap(), Some(a1.clone()));
    assert_eq!(s.get("/registry/crud/").await.unwrap(), None);
    assert_eq!(s.get("/registry/crud/a/b").await.unwrap(), None);

    match s.create(key, b("x")).await {
        Err(StoreError::AlreadyExists { key: k }) => assert_eq!(k, key),
        other => panic!("create of an existing key: {other:?}"),
    }
    assert_eq!(s.current_revision().await.unwrap(), base + 1);

    let a2 = s.update(key, b("2"), Some(a1.mod_revision)).await.unwrap();
    assert_eq!(a2, kv(key, "2", base + 1, base + 2));

    // A stale expected revision is a conflict and writes nothing.
    match s.update(key, b("x"), Some(a1.mod_revision)).await {
        Err(StoreError::Conflict {
            key: k,
            expected,
            actual,
        }) => assert_eq!((k.as_str(), expected, actual), (key, base + 1, base + 2)),
        other => panic!("stale update: {other:?}"),
    }
    assert_eq!(s.get(key).await.unwrap(), Some(a2.clone()));
    assert_eq!(s.current_revision().await.unwrap(), base + 2);

    let a3 = s.update(key, b("3"), None).await.unwrap();
    assert_eq!(a3, kv(key, "3", base + 1, base + 3));

    let missing = "/registry/crud/missing";
    for r in [
        s.update(missing, b("x"), None).await,
        s.update(missing, b("x"), Some(a3.mod_revision)).await,
        s.delete(missing, None).await,
        s.delete(missing, Some(a3.mod_revision)).await,
    ] {
        match r {
            Err(StoreError::NotFound { key: k }) => assert_eq!(k, missing),
            other => panic!("write to a missing key: {other:?}"),
        }
    }
    assert_eq!(s.get(missing).await.unwrap(), None);

    match s.delete(key, Some(a2.mod_revision)).await {
        Err(StoreError::Conflict {
            expected, actual, ..
        }) => assert_eq!((expected, actual), (base + 2, base + 3)),
        other => panic!("stale delete: {other:?}"),
    }
    assert_eq!(s.get(key).await.unwrap(), Some(a3.clone()));
    assert_eq!(s.current_revision().await.unwrap(), base + 3);

    // Delete returns the key as it was.
    let gone = s.delete(key, Some(a3.mod_revision)).await.unwrap();
    assert_eq!(gone, a3);
    assert_eq!(s.get(key).await.unwrap(), None);
    assert_eq!(s.current_revision().await.unwrap(), base + 4);

    // A re-created key starts a new life.
    let a5 = s.create(key, b("5")).await.unwrap();
    assert_eq!(a5, kv(key, "5", base + 5, base + 5));
    let b1 = s.update(key, b("6"), None).await.unwrap();
    let d = s.delete(key, None).await.unwrap();
    assert_eq!(d, b1);
}

/// Every write takes the next revision; reads and failed writes take none.
pub(crate) async fn revisions_monotonic(s: &dyn Store) {
    let mut rev = s.current_revision().await.unwrap();
    for i in 0..30 {
        let key = format!("/registry/mono/{}", i % 7);
        let r = match s.get(&key).await.unwrap() {
            None => s.create(&key, b("v")).await.unwrap().mod_revision,
            Some(_) if i % 3 == 0 => {
                s.delete(&key, None).await.unwrap();
                s.current_revision().await.unwrap()
            }
            Some(cur) => {
                // A failing CAS in between must not use up a revision.
                assert!(
                    s.update(&key, b("x"), Some(cur.mod_revision - 1))
                        .await
                        .is_err()
                );
                s.update(&key, b("w"), Some(cur.mod_revision))
                    .await
                    .unwrap()
                    .mod_revision
            }
        };
        assert_eq!(r, rev + 1, "write {i}");
        rev = r;
        assert_eq!(s.current_revision().await.unwrap(), rev);
        s.list("/registry/mono/", ListOptions::default())
            .await
            .unwrap();
        assert_eq!(s.current_revision().await.unwrap(), rev);
    }
}

/// Lists read the state at any revision since the compaction point, by prefix.
pub(crate) async fn list_at_revision(s: &dyn Store) {
    let p = "/registry/hist/";
    let base = s.current_revision().await.unwrap();
    for k in ["a", "b", "c"] {
        s.create(&format!("{p}{k}"), b("1")).await.unwrap();
    }
    let r0 = base + 3;
    s.update("/registry/hist/a", b("2"), None).await.unwrap(); // r0+1
    s.delete("/registry/hist/b", None).await.unwrap(); // r0+2
    s.create("/registry/hist/d", b("1")).await.unwrap(); // r0+3
    s.create("/registry/histx", b("outside")).await.unwrap(); // r0+4
    s.create("/registry/hist", b("outside")).await.unwrap(); // r0+5
    let now = r0 + 5;
    assert_eq!(s.current_revision().await.unwrap(), now);

    let latest = s.list(p, ListOptions::default()).await.unwrap();
    assert_eq!(latest.revision, now);
    assert!(!latest.more);
    assert_eq!(
        latest.items,
        vec![
            kv("/registry/hist/a", "2", base + 1, r0 + 1),
            kv("/registry/hist/c", "1", base + 3, base + 3),
            kv("/registry/hist/d", "1", r0 + 3, r0 + 3),
        ]
    );
    assert_eq!(list_at(s, p, now).await, latest.items);

    assert_eq!(
        list_at(s, p, r0).await,
        vec![
            kv("/registry/hist/a", "1", base + 1, base + 1),
            kv("/registry/hist/b", "1", base + 2, base + 2),
            kv("/registry/hist/c", "1", base + 3, base + 3),
        ]
    );
    assert_eq!(
        keys(&list_at(s, p, r0 + 1).await),
        ["/registry/hist/a", "/registry/hist/b", "/registry/hist/c"]
    );
    assert_eq!(list_at(s, p, r0 + 1).await[0].value, b("2"));
    assert_eq!(
        keys(&list_at(s, p, r0 + 2).await),
        ["/registry/hist/a", "/registry/hist/c"]
    );
    assert_eq!(keys(&list_at(s, p, base + 1).await), ["/registry/hist/a"]);

    // The empty prefix lists everything; a prefix without the slash includes the neighbours.
    let all = list_at(s, "", 0).await;
    assert!(keys(&all).contains(&"/registry/histx"));
    assert_eq!(
        keys(&list_at(s, "/registry/hist", 0).await),
        [
            "/registry/hist",
            "/registry/hist/a",
            "/registry/hist/c",
            "/registry/hist/d",
            "/registry/histx"
        ]
    );

    let future = ListOptions {
        revision: now + 1,
        ..Default::default()
    };
    match s.list(p, future).await {
        Err(StoreError::FutureRevision { requested, current }) => {
            assert_eq!((requested, current), (now + 1, now))
        }
        other => panic!("list in the future: {other:?}"),
    }
}

/// Pages at a fixed revision stay consistent while writes continue.
pub(crate) async fn pagination(s: &dyn Store) {
    let p = "/registry/page/";
    let ops = (0..25)
        .map(|i| TxnOp::Create {
            key: format!("{p}k{i:02}"),
            value: b(&format!("v{i}")),
        })
        .collect();
    let created = s.txn(ops).await.unwrap();
    let expected = created.results.clone();

    let page = |revision, start_after: Option<String>, limit| ListOptions {
        revision,
        limit,
        start_after,
    };
    let first = s.list(p, page(0, None, 10)).await.unwrap();
    assert_eq!(first.revision, created.revision);
    assert!(first.more);
    assert_eq!(first.items, expected[..10]);

    // Writes between pages: before, inside and after the next pages' ranges.
    s.create("/registry/page/k115", b("new")).await.unwrap();
    s.delete("/registry/page/k15", None).await.unwrap();
    s.update("/registry/page/k20", b("changed"), None)
        .await
        .unwrap();
    s.create("/registry/page/k99", b("new")).await.unwrap();
    s.delete("/registry/page/k00", None).await.unwrap();

    let last = first.items.last().map(|kv| kv.key.clone());
    let second = s.list(p, page(first.revision, last, 10)).await.unwrap();
    assert_eq!(second.revision, first.revision);
    assert!(second.more);
    assert_eq!(second.items, expected[10..20]);

    s.create("/registry/page/k21a", b("new")).await.unwrap();

    let last = second.items.last().map(|kv| kv.key.clone());
    let third = s.list(p, page(first.revision, last, 10)).await.unwrap();
    assert!(!third.more);
    assert_eq!(third.items, expected[20..]);

    // A limit that exactly fits the rest: no `more`.
    let exact = s
        .list(p, page(first.revision, Some(format!("{p}k19")), 5))
        .await
        .unwrap();
    assert!(!exact.more);
    assert_eq!(exact.items, expected[20..]);

    // Paging the latest state sees the writes.
    let now = s
        .list(p, page(0, Some(format!("{p}k11")), 3))
        .await
        .unwrap();
    assert_eq!(
        keys(&now.items),
        [
            "/registry/page/k115",
            "/registry/page/k12",
            "/registry/page/k13"
        ]
    );
    assert!(now.more);

    // A start before the prefix starts at the prefix; one after it gives nothing.
    let before = s
        .list(p, page(first.revision, Some("/registry/a".into()), 1))
        .await
        .unwrap();
    assert_eq!(before.items, expected[..1]);
    let after = s
        .list(p, page(first.revision, Some("/registry/zzz".into()), 1))
        .await
        .unwrap();
    assert!(after.items.is_empty() && !after.more);
}

/// A transaction commits all its operations at one revision, or none of them.
pub(crate) async fn txn_atomic(s: &dyn Store) {
    let p = "/registry/txn/";
    let x = s.create("/registry/txn/x", b("x1")).await.unwrap();
    let r1 = x.mod_revision;

    let t = s
        .txn(vec![
            TxnOp::Create {
                key: format!("{p}a"),
                value: b("a1"),
            },
            TxnOp::Update {
                key: format!("{p}x"),
                value: b("x2"),
                expected: Some(r1),
            },
            TxnOp::Create {
                key: format!("{p}b"),
                value: b("b1"),
            },
        ])
        .await
        .unwrap();
    assert_eq!(t.revision, r1 + 1);
    assert_eq!(
        t.results,
        vec![
            kv("/registry/txn/a", "a1", r1 + 1, r1 + 1),
            kv("/registry/txn/x", "x2", r1, r1 + 1),
            kv("/registry/txn/b", "b1", r1 + 1, r1 + 1),
        ]
    );
    let state = list_at(s, p, 0).await;

    // Each failing position, each failure kind: the error names the operation; nothing lands.
    type Case = (Vec<TxnOp>, usize, fn(&StoreError) -> bool);
    let failing: Vec<Case> = vec![
        (
            vec![
                TxnOp::Create {
                    key: format!("{p}c"),
                    value: b("c1"),
                },
                TxnOp::Update {
                    key: format!("{p}x"),
                    value: b("x3"),
                    expected: Some(r1),
                },
                TxnOp::Delete {
                    key: format!("{p}a"),
                    expected: None,
                },
            ],
            1,
            |e| matches!(e, StoreError::Conflict { expected, .. } if *expected > 0),
        ),
        (
            vec![
                TxnOp::Update {
                    key: format!("{p}a"),
                    value: b("a2"),
                    expected: None,
                },
                TxnOp::Delete {
                    key: format!("{p}x"),
                    expected: Some(r1 + 1),
                },
                TxnOp::Create {
                    key: format!("{p}b"),
                    value: b("b2"),
                },
            ],
            2,
            |e| matches!(e, StoreError::AlreadyExists { key } if key == "/registry/txn/b"),
        ),
        (
            vec![
                TxnOp::Delete {
                    key: format!("{p}nope"),
                    expected: None,
                },
                TxnOp::Create {
                    key: format!("{p}c"),
                    value: b("c1"),
                },
            ],
            0,
            |e| matches!(e, StoreError::NotFound { key } if key == "/registry/txn/nope"),
        ),
        (
            vec![
                TxnOp::Create {
                    key: format!("{p}d"),
                    value: b("d1"),
                },
                TxnOp::Update {
                    key: format!("{p}d"),
                    value: b("d2"),
                    expected: None,
                },
            ],
            1,
            |_| true, // the same key twice
        ),
    ];
    for (i, (ops, want_index, want)) in failing.into_iter().enumerate() {
        match s.txn(ops).await {
            Err(StoreError::Txn { index, source }) => {
                assert_eq!(index, want_index, "case {i}: {source}");
                assert!(want(&source), "case {i}: unexpected error {source:?}");
            }
            other => panic!("case {i}: expected a failed transaction, got {other:?}"),
        }
        assert_eq!(s.current_revision().await.unwrap(), r1 + 1, "case {i}");
        assert_eq!(list_at(s, p, 0).await, state, "case {i}");
    }

    let d = s
        .txn(vec![
            TxnOp::Delete {
                key: format!("{p}a"),
                expected: Some(r1 + 1),
            },
            TxnOp::Delete {
                key: format!("{p}b"),
                expected: None,
            },
            TxnOp::Update {
                key: format!("{p}x"),
                value: b("x3"),
                expected: None,
            },
        ])
        .await
        .unwrap();
    assert_eq!(d.revision, r1 + 2);
    assert_eq!(d.results[..2], state[..2]);
    assert_eq!(d.results[2], kv("/registry/txn/x", "x3", r1, r1 + 2));
    assert_eq!(keys(&list_at(s, p, 0).await), ["/registry/txn/x"]);

    // An empty transaction writes nothing.
    let empty = s.txn(Vec::new()).await.unwrap();
    assert_eq!(empty.revision, r1 + 2);
    assert!(empty.results.is_empty());
    assert_eq!(s.current_revision().await.unwrap(), r1 + 2);
}

/// A watch from a revision replays every later event under its prefix, in order.
pub(crate) async fn watch_from_revision(s: &dyn Store) {
    let p = "/registry/w/";
    let a = "/registry/w/a";
    let base = s.current_revision().await.unwrap();
    s.create(a, b("v1")).await.unwrap(); // base+1
    s.create("/registry/wx", b("outside")).await.unwrap(); // base+2
    s.update(a, b("v2"), None).await.unwrap(); // base+3
    s.txn(vec![
        TxnOp::Create {
            key: format!("{p}b"),
            value: b("b1"),
        },
        TxnOp::Update {
            key: a.into(),
            value: b("v3"),
            expected: Some(base + 3),
        },
        TxnOp::Create {
            key: "/registry/other".into(),
            value: b("outside"),
        },
        TxnOp::Create {
            key: format!("{p}c"),
            value: b("c1"),
        },
    ])
    .await
    .unwrap(); // base+4
    s.delete(a, Some(base + 4)).await.unwrap(); // base+5
    s.create(a, b("v4")).await.unwrap(); // base+6

    let all = [
        put(a, "v1", None, base + 1, base + 1),
        put(a, "v2", Some("v1"), base + 3, base + 1),
        put("/registry/w/b", "b1", None, base + 4, base + 4),
        put(a, "v3", Some("v2"), base + 4, base + 1),
        put("/registry/w/c", "c1", None, base + 4, base + 4),
        del(a, "v3", base + 5, base + 1),
        put(a, "v4", None, base + 6, base + 6),
    ];
    for (after, skip) in [
        (base, 0),
        (base + 1, 1),
        (base + 3, 2),
        (base + 4, 5),
        (base + 6, 7),
    ] {
        let mut w = s.watch(p, after).await.unwrap();
        for (i, want) in all[skip..].iter().enumerate() {
            assert_eq!(
                &next_event(&mut w).await,
                want,
                "watch after {after}, event {i}"
            );
        }
        assert_quiet(&mut w, 100).await;
    }

    // A watch on one key's exact name also matches by prefix.
    let mut w = s.watch("/registry/w/c", base).await.unwrap();
    assert_eq!(next_event(&mut w).await.key, "/registry/w/c");
    assert_quiet(&mut w, 100).await;
}

/// A watch from the current revision follows live writes, delivered to every watcher.
pub(crate) async fn watch_live_tail(s: &dyn Store) {
    let p = "/registry/live/";
    let now = s.current_revision().await.unwrap();
    let mut w1 = s.watch(p, now).await.unwrap();
    let mut all = s.watch("", now).await.unwrap();
    assert_quiet(&mut w1, 100).await;

    let k = "/registry/live/k";
    let c = s.create(k, b("1")).await.unwrap();
    assert_eq!(
        next_event(&mut w1).await,
        put(k, "1", None, now + 1, now + 1)
    );

    // A watcher joining now starts after the write it has seen in a list.
    let mut w2 = s.watch(p, c.mod_revision).await.unwrap();
    s.create("/registry/elsewhere", b("x")).await.unwrap();
    s.update(k, b("2"), Some(c.mod_revision)).await.unwrap();
    s.delete(k, None).await.unwrap();
    let want = [
        put(k, "2", Some("1"), now + 3, now + 1),
        del(k, "2", now + 4, now + 1),
    ];
    for w in [&mut w1, &mut w2] {
        for e in &want {
            assert_eq!(&next_event(w).await, e);
        }
        assert_quiet(w, 100).await;
    }
    // A watch from a future revision starts there.
    let mut future = s.watch(p, now + 6).await.unwrap();
    s.create(k, b("3")).await.unwrap(); // now+5
    s.update(k, b("4"), None).await.unwrap(); // now+6
    s.update(k, b("5"), None).await.unwrap(); // now+7
    assert_eq!(
        next_event(&mut future).await,
        put(k, "5", Some("4"), now + 7, now + 5)
    );
    assert_quiet(&mut future, 100).await;

    let revs: Vec<_> = [
        next_event(&mut all).await,
        next_event(&mut all).await,
        next_event(&mut all).await,
        next_event(&mut all).await,
    ]
    .iter()
    .map(|e| e.revision)
    .collect();
    assert_eq!(revs, [now + 1, now + 2, now + 3, now + 4]);
}

/// The next item of a progress watch, failing the test after 10 s.
async fn next_item(w: &mut ProgressWatchStream) -> WatchItem {
    match tokio::time::timeout(Duration::from_secs(10), w.next()).await {
        Err(_) => panic!("timed out waiting for a progress watch item"),
        Ok(None) => panic!("watch ended"),
        Ok(Some(Err(e))) => panic!("watch failed: {e}"),
        Ok(Some(Ok(item))) => item,
    }
}

/// A progress watch tells when it has passed writes under other prefixes (what lets the watch
/// cache of a quiet kind answer consistent reads and send current bookmarks), and never
/// reports a revision before it has yielded every event up to it — checked while another
/// task writes under both prefixes and asks for reports all along.
pub(crate) async fn watch_progress(s: &dyn Store) {
    let (quiet, busy) = ("/registry/quiet/", "/registry/busy/");
    let base = s.current_revision().await.unwrap();
    let mut w = s
        .watch_with_progress(quiet, base)
        .await
        .unwrap()
        .expect("every real backend reports progress");

    // Writes elsewhere only: reports (asked for) reach them, and no event comes.
    for i in 0..3 {
        let rev = s
            .create(&format!("{busy}b{i}"), b("b"))
            .await
            .unwrap()
            .mod_revision;
        s.request_progress(quiet).await;
        loop {
            match next_item(&mut w).await {
                WatchItem::Progress(r) if r >= rev => break,
                WatchItem::Progress(_) => {}
                WatchItem::Event(ev) => panic!("unexpected event {ev:?}"),
            }
        }
    }

    // Writes under both prefixes, with reports asked for after each: every report comes
    // after the events of every write under the watched prefix up to its revision.
    const WRITES: usize = 60;
    let writer = async {
        let mut quiet_revs = Vec::new();
        for i in 0..WRITES {
            let (prefix, name) = if i % 3 == 0 {
                (quiet, "q")
            } else {
                (busy, "w")
            };
            let kv = s
                .create(&format!("{prefix}{name}{i}"), b("v"))
                .await
                .unwrap();
            if prefix == quiet {
                quiet_revs.push(kv.mod_revision);
            }
            s.request_progress(quiet).await;
        }
        quiet_revs
    };
    let reader = async {
        let mut items = Vec::new();
        let mut events = 0;
        while events < WRITES.div_ceil(3) {
            let item = next_item(&mut w).await;
            events += usize::from(matches!(item, WatchItem::Event(_)));
            items.push(item);
        }
        items
    };
    let (quiet_revs, items) = futures::join!(writer, reader);
    let mut seen = Vec::new();
    for item in &items {
        match item {
            WatchItem::Event(ev) => {
                assert!(ev.key.starts_with(quiet), "{ev:?}");
                seen.push(ev.revision);
            }
            WatchItem::Progress(r) => {
                let owed: Vec<_> = quiet_revs
                    .iter()
                    .filter(|q| *q <= r && !seen.contains(q))
                    .collect();
                assert!(
                    owed.is_empty(),
                    "progress {r} reported before the events at {owed:?}"
                );
            }
        }
    }
    assert_eq!(seen, quiet_revs);
}

/// Many writers at once: each write gets its own revision, and a watch sees them all in order.
pub(crate) async fn concurrent_writers(s: &dyn Store) {
    const WRITERS: usize = 16;
    const EACH: usize = 20;
    let p = "/registry/conc/";
    let base = s.current_revision().await.unwrap();
    let mut w = s.watch(p, base).await.unwrap();

    let writer = |i: usize| async move {
        let mut revs = Vec::new();
        for j in 0..EACH {
            let key = format!("{p}w{i:02}-{j:02}");
            revs.push((s.create(&key, b(&key)).await.unwrap().mod_revision, key));
        }
        revs
    };
    let mut written: Vec<(Revision, String)> = join_all((0..WRITERS).map(writer))
        .await
        .into_iter()
        .flatten()
        .collect();
    written.sort();
    let revs: Vec<Revision> = written.iter().map(|(r, _)| *r).collect();
    let n = (WRITERS * EACH) as i64;
    assert_eq!(revs, ((base + 1)..=(base + n)).collect::<Vec<_>>());
    assert_eq!(s.current_revision().await.unwrap(), base + n);

    for (rev, key) in &written {
        let e = next_event(&mut w).await;
        assert_eq!((e.revision, &e.key), (*rev, key));
    }
    assert_quiet(&mut w, 100).await;
}

/// Read-modify-write with CAS from many tasks at once: no lost update.
pub(crate) async fn concurrent_cas(s: &dyn Store) {
    const TASKS: usize = 8;
    const EACH: usize = 10;
    let key = "/registry/cas/counter";
    s.create(key, b("0")).await.unwrap();
    let incr = |_| async move {
        let mut conflicts = 0;
        for _ in 0..EACH {
            loop {
                let cur = s.get(key).await.unwrap().unwrap();
                let n: usize = std::str::from_utf8(&cur.value).unwrap().parse().unwrap();
                match s
                    .update(key, b(&(n + 1).to_string()), Some(cur.mod_revision))
                    .await
                {
                    Ok(_) => break,
                    Err(StoreError::Conflict { .. }) => conflicts += 1,
                    Err(e) => panic!("increment: {e}"),
                }
            }
        }
        conflicts
    };
    let conflicts: usize = join_all((0..TASKS).map(incr)).await.into_iter().sum();
    let v = s.get(key).await.unwrap().unwrap();
    assert_eq!(v.value, b(&(TASKS * EACH).to_string()));
    tracing::debug!(conflicts, "concurrent CAS increments");
}

/// After compaction, older lists and watches fail with `Compacted`; newer ones still work.
pub(crate) async fn compaction(s: &dyn Store) {
    let p = "/registry/compact/";
    let (a, bk, c) = (
        "/registry/compact/a",
        "/registry/compact/b",
        "/registry/compact/c",
    );
    let base = s.current_revision().await.unwrap();
    assert_eq!(s.compacted_revision().await.unwrap(), 0);
    s.create(a, b("1")).await.unwrap(); // base+1
    s.create(bk, b("1")).await.unwrap(); // base+2
    s.update(a, b("2"), None).await.unwrap(); // base+3
    s.delete(bk, None).await.unwrap(); // base+4
    s.create(c, b("1")).await.unwrap(); // base+5
    s.update(a, b("3"), None).await.unwrap(); // base+6
    let at = base + 4;

    s.compact(at).await.unwrap();
    assert_eq!(s.compacted_revision().await.unwrap(), at);

    for rev in [base + 1, base + 3] {
        let opts = ListOptions {
            revision: rev,
            ..Default::default()
        };
        match s.list(p, opts).await {
            Err(StoreError::Compacted {
                requested,
                compacted,
            }) => assert_eq!((requested, compacted), (rev, at)),
            other => panic!("list at compacted revision {rev}: {other:?}"),
        }
        match s.watch(p, rev).await {
            Err(StoreError::Compacted { compacted, .. }) => assert_eq!(compacted, at),
            Err(e) => panic!("watch from compacted revision {rev}: {e}"),
            Ok(_) => panic!("watch from compacted revision {rev} succeeded"),
        }
    }

    // The compaction point itself and everything after it is still readable.
    assert_eq!(
        list_at(s, p, at).await,
        vec![kv(a, "2", base + 1, base + 3)]
    );
    assert_eq!(
        list_at(s, p, base + 5).await,
        vec![
            kv(a, "2", base + 1, base + 3),
            kv(c, "1", base + 5, base + 5)
        ]
    );
    assert_eq!(
        list_at(s, p, 0).await,
        vec![
            kv(a, "3", base + 1, base + 6),
            kv(c, "1", base + 5, base + 5)
        ]
    );
    let mut w = s.watch(p, at).await.unwrap();
    assert_eq!(
        next_event(&mut w).await,
        put(c, "1", None, base + 5, base + 5)
    );
    assert_eq!(
        next_event(&mut w).await,
        put(a, "3", Some("2"), base + 6, base + 1)
    );

    // Compacting to an older point changes nothing; to a future one is refused.
    s.compact(base + 2).await.unwrap();
    assert_eq!(s.compacted_revision().await.unwrap(), at);
    match s.compact(base + 100).await {
        Err(StoreError::FutureRevision { requested, .. }) => assert_eq!(requested, base + 100),
        other => panic!("compact in the future: {other:?}"),
    }

    // Writes go on as before, and the running watch sees them.
    let d = s.update(a, b("4"), Some(base + 6)).await.unwrap();
    assert_eq!(d.mod_revision, base + 7);
    assert_eq!(
        next_event(&mut w).await,
        put(a, "4", Some("3"), base + 7, base + 1)
    );
}

/// Everything written survives a restart: values, revisions, history.
pub(crate) async fn restart(backend: &mut dyn Backend) {
    let p = "/registry/restart/";
    let s = backend.store();
    let base = s.current_revision().await.unwrap();
    let mut expected = BTreeMap::new();
    for i in 0..10 {
        let kv = s
            .create(&format!("{p}k{i}"), b(&format!("v{i}")))
            .await
            .unwrap();
        expected.insert(kv.key.clone(), kv);
    }
    let t = s
        .txn(vec![
            TxnOp::Update {
                key: format!("{p}k1"),
                value: b("changed"),
                expected: Some(base + 2),
            },
            TxnOp::Delete {
                key: format!("{p}k2"),
                expected: None,
            },
        ])
        .await
        .unwrap();
    expected.insert(t.results[0].key.clone(), t.results[0].clone());
    expected.remove(&format!("{p}k2"));
    let rev = s.current_revision().await.unwrap();
    assert_eq!(rev, base + 11);

    backend.restart().await;
    let s = backend.store();

    assert_eq!(s.current_revision().await.unwrap(), rev);
    let now = list_at(s, p, 0).await;
    assert_eq!(now, expected.into_values().collect::<Vec<_>>());
    assert_eq!(
        s.get(&format!("{p}k1")).await.unwrap().map(|kv| kv.value),
        Some(b("changed"))
    );
    // History survives too.
    assert_eq!(list_at(s, p, base + 10).await.len(), 10);
    let mut w = s.watch(p, base).await.unwrap();
    for i in 0..10 {
        assert_eq!(next_event(&mut w).await.revision, base + 1 + i);
    }
    let e1 = next_event(&mut w).await;
    let e2 = next_event(&mut w).await;
    assert_eq!(
        (e1.revision, e2.revision, e2.kind),
        (rev, rev, EventType::Delete)
    );

    // And the revision counter continues where it was.
    let n = s.create(&format!("{p}new"), b("x")).await.unwrap();
    assert_eq!(n.mod_revision, rev + 1);
    assert_eq!(next_event(&mut w).await.revision, rev + 1);
}
