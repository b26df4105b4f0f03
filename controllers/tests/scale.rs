//! A scale smoke run, ignored by default (`cargo test --test scale -- --ignored --nocapture`):
//! how long replication takes to create N tasks for one service against the embedded store,
//! and how long gc takes to delete them with the service. Prints figures; asserts only the
//! outcome.

mod common;

use std::time::Instant;

use common::*;
use swarm_api::ServiceMode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn replication_creates_thousands_of_tasks() {
    let n: u64 = std::env::var("SCALE_TASKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
    let c = start().await;
    let ctl = c.run("replication", opts("r1"));
    let started = Instant::now();
    c.create_service(&service("big", ServiceMode::Replicated { replicas: n }))
        .await;
    let deadline = Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let l = c
            .client
            .list_all::<swarm_api::Task>(&swarm_client::ListParams::default())
            .await
            .unwrap();
        if l.items.len() as u64 == n {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {n} tasks",
            l.items.len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let took = started.elapsed();
    println!(
        "replication created {n} tasks in {:.2} s ({:.0} tasks/s)",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64()
    );

    // gc deletes them all once the service is gone.
    let gc = c.run("gc", opts("g1"));
    let started = Instant::now();
    c.client
        .delete::<swarm_api::Service>("big", None)
        .await
        .unwrap();
    loop {
        let l = c
            .client
            .list::<swarm_api::Task>(&swarm_client::ListParams::default().limit(1))
            .await
            .unwrap();
        if l.items.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline + std::time::Duration::from_secs(120));
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let took = started.elapsed();
    println!(
        "gc deleted {n} tasks in {:.2} s ({:.0} tasks/s)",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64()
    );
    gc.stop().await;
    ctl.stop().await;
}
