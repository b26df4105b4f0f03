//! The typed client against a real `swarm server`: CRUD with resourceVersion preconditions,
//! paginated lists, watches resumed from a version, and transactions.

use futures::StreamExt;
use swarm_api::{Network, NetworkSpec, Task, TaskSpec};
use swarm_client::{Client, ClientConfig, EventType, ListParams, Operation, WatchEvent};
use swarm_tests::{Server, WAIT};

fn client(server: &Server) -> Client {
    let cfg = ClientConfig::load(&server.config).unwrap();
    Client::from_config(&cfg).unwrap()
}

#[tokio::test]
async fn crud_with_preconditions() {
    let server = Server::start_api_only().unwrap_or_else(|e| panic!("{e:#}"));
    let c = client(&server);

    let created = c
        .create(&Network::new("front", NetworkSpec::default()))
        .await
        .unwrap();
    assert!(!created.metadata.resource_version.is_empty());
    assert!(
        c.create(&Network::new("front", NetworkSpec::default()))
            .await
            .unwrap_err()
            .is_already_exists()
    );

    let mut changed = created.clone();
    changed.spec.attachable = true;
    let updated = c.replace(&changed).await.unwrap();
    assert!(updated.spec.attachable);
    assert_ne!(
        updated.metadata.resource_version,
        created.metadata.resource_version
    );

    // Writing from the stale version is refused.
    let err = c.replace(&changed).await.unwrap_err();
    assert!(err.is_conflict(), "{err:?}");
    let err = c
        .delete::<Network>("front", Some(&created.metadata.resource_version))
        .await
        .unwrap_err();
    assert!(err.is_conflict(), "{err:?}");

    let got: Network = c.get("front").await.unwrap();
    assert_eq!(got, updated);
    c.delete::<Network>("front", Some(&updated.metadata.resource_version))
        .await
        .unwrap();
    assert!(c.get::<Network>("front").await.unwrap_err().is_not_found());
}

#[tokio::test]
async fn list_all_follows_continue_tokens() {
    let server = Server::start_api_only().unwrap_or_else(|e| panic!("{e:#}"));
    let c = client(&server);
    for i in 0..7 {
        c.create(&Network::new(format!("n{i}"), NetworkSpec::default()))
            .await
            .unwrap();
    }
    let page = c
        .list::<Network>(&ListParams::default().limit(3))
        .await
        .unwrap();
    assert_eq!(page.items.len(), 3);
    assert!(!page.is_last_page());
    let all = c
        .list_all::<Network>(&ListParams::default().limit(3))
        .await
        .unwrap();
    let names: Vec<&str> = all.items.iter().map(|n| n.metadata.name.as_str()).collect();
    assert_eq!(names, ["n0", "n1", "n2", "n3", "n4", "n5", "n6"]);
    assert!(all.is_last_page());
}

#[tokio::test]
async fn watch_from_a_list_version_sees_only_later_changes() {
    let server = Server::start_api_only().unwrap_or_else(|e| panic!("{e:#}"));
    let c = client(&server);
    c.create(&Network::new("before", NetworkSpec::default()))
        .await
        .unwrap();
    let list = c.list::<Network>(&ListParams::default()).await.unwrap();
    let mut stream = c
        .watch::<Network>(&ListParams::default(), Some(&list.resource_version))
        .await
        .unwrap();
    let after = c
        .create(&Network::new("after", NetworkSpec::default()))
        .await
        .unwrap();
    let ev = tokio::time::timeout(WAIT, stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(ev.event_type(), EventType::Added);
    assert_eq!(ev.object().map(|n| n.metadata.name.as_str()), Some("after"));
    assert_eq!(
        ev.resource_version(),
        Some(after.metadata.resource_version.as_str())
    );

    c.delete::<Network>("after", None).await.unwrap();
    let ev = tokio::time::timeout(WAIT, stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        matches!(&ev, WatchEvent::Deleted(n) if n.metadata.name == "after"),
        "{ev:?}"
    );
}

#[tokio::test]
async fn transactions_commit_all_or_nothing() {
    let server = Server::start_api_only().unwrap_or_else(|e| panic!("{e:#}"));
    let c = client(&server);
    let t1 = Task::new(
        "web.1.1",
        TaskSpec {
            service: "web".into(),
            ..Default::default()
        },
    );
    let t2 = Task::new(
        "web.2.1",
        TaskSpec {
            service: "web".into(),
            ..Default::default()
        },
    );
    c.transaction(&[
        Operation::create(&t1).unwrap(),
        Operation::create(&t2).unwrap(),
    ])
    .await
    .unwrap();
    let tasks = c
        .list::<Task>(&ListParams::default().fields("spec.service=web"))
        .await
        .unwrap();
    assert_eq!(tasks.items.len(), 2);

    // The second operation fails (it already exists), so the first is not written either.
    let t3 = Task::new(
        "web.3.1",
        TaskSpec {
            service: "web".into(),
            ..Default::default()
        },
    );
    let err = c
        .transaction(&[
            Operation::create(&t3).unwrap(),
            Operation::create(&t1).unwrap(),
        ])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("operations[1]"), "{err}");
    assert!(c.get::<Task>("web.3.1").await.unwrap_err().is_not_found());
}
