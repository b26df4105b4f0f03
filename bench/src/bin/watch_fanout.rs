//! Watch fan-out: many client watches on tasks, a series of writes; the delivery latency from
//! each write's acknowledgement (the `201` received by the writer) to each watcher's receipt
//! of its event, and whether every watcher got every event, in order.
//!
//! ```text
//! cargo run --release -p swarm-bench --bin watch_fanout -- \
//!     [--store embedded|etcd|both] [--watchers 1000] [--writes 100] [--interval-ms 50]
//! ```
//!
//! The watchers are HTTP/1.1 connections of this process (one per watch, as agents have), the
//! API server runs in this process too; everything shares the machine's cores. An event can
//! reach a watcher before the writer has read its `201`: such samples count as 0 ms and are
//! reported in the "before ack" column; the latency from the write's *sending* is reported
//! too (an upper bound: it includes the write itself).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use serde_json::json;
use swarm_bench::{ApiServer, StoreKind, Summary, load_average, ms, open_watches, print_table};
use tokio::sync::watch;

struct Args {
    stores: Vec<StoreKind>,
    watchers: usize,
    writes: usize,
    interval: Duration,
}

fn args() -> Result<Args> {
    let mut a = Args {
        stores: StoreKind::parse_list("both")?,
        watchers: 1000,
        writes: 100,
        interval: Duration::from_millis(50),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--store" => a.stores = StoreKind::parse_list(&value()?)?,
            "--watchers" => a.watchers = value()?.parse().context("--watchers")?,
            "--writes" => a.writes = value()?.parse().context("--writes")?,
            "--interval-ms" => {
                a.interval = Duration::from_millis(value()?.parse().context("--interval-ms")?)
            }
            other => bail!("unknown argument {other:?}; see the top of watch_fanout.rs"),
        }
    }
    if a.watchers == 0 || a.writes == 0 {
        bail!("--watchers and --writes must be positive");
    }
    Ok(a)
}

/// The object's `resourceVersion` in an event line, found without parsing the whole line
/// (the first `resourceVersion` of a watch event is the object's own).
fn line_revision(line: &[u8]) -> Option<i64> {
    const KEY: &[u8] = b"\"resourceVersion\":\"";
    let at = line.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let end = line[at..].iter().position(|b| *b == b'"')? + at;
    std::str::from_utf8(&line[at..end]).ok()?.parse().ok()
}

/// One watcher: opens the watch, then records (revision, arrival) of each event until it has
/// `want` of them or `stop` flips.
async fn watcher(
    http: reqwest::Client,
    url: String,
    want: usize,
    opened: Arc<AtomicUsize>,
    mut stop: watch::Receiver<bool>,
) -> Result<Vec<(i64, Instant)>> {
    let resp = http
        .get(format!("{url}/v1/tasks?watch=true"))
        .send()
        .await?;
    if !resp.status().is_success() {
        bail!("watch answered {}", resp.status());
    }
    opened.fetch_add(1, Ordering::SeqCst);
    let mut stream = resp.bytes_stream();
    let mut buf = Vec::new();
    let mut got = Vec::with_capacity(want);
    while got.len() < want {
        let chunk = tokio::select! {
            c = stream.next() => match c {
                Some(c) => c?,
                None => break,
            },
            _ = stop.wait_for(|s| *s) => break,
        };
        let now = Instant::now();
        buf.extend_from_slice(&chunk);
        while let Some(i) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=i).collect();
            if line.starts_with(b"{\"type\":\"BOOKMARK\"") {
                continue;
            }
            if let Some(rev) = line_revision(&line) {
                got.push((rev, now));
            }
        }
    }
    Ok(got)
}

struct Outcome {
    summary: Summary,
    from_send: Summary,
    delivered: usize,
    complete: usize,
    before_ack: usize,
    write: Summary,
}

async fn run(store: StoreKind, args: &Args) -> Result<Outcome> {
    let server = ApiServer::start(store).await?;
    let url = server.url.clone();
    // Watchers get their own pool, so the writer's connection is not queued behind them.
    let watch_http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.watchers + 8)
        .build()?;
    let http = reqwest::Client::new();
    let opened = Arc::new(AtomicUsize::new(0));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut handles = Vec::with_capacity(args.watchers);
    for _ in 0..args.watchers {
        handles.push(tokio::spawn(watcher(
            watch_http.clone(),
            url.clone(),
            args.writes,
            opened.clone(),
            stop_rx.clone(),
        )));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while opened.load(Ordering::SeqCst) < args.watchers
        || open_watches(&http, &url, "tasks").await? < args.watchers as u64
    {
        if Instant::now() > deadline {
            bail!(
                "only {} of {} watches opened in 60 s",
                opened.load(Ordering::SeqCst),
                args.watchers
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The writes, one at a time, spaced by the interval.
    let mut acks = HashMap::new();
    let mut write_latency = Vec::with_capacity(args.writes);
    for k in 0..args.writes {
        let task = json!({"kind": "Task", "metadata": {"name": format!("fan.{}.1", k + 1)},
                          "spec": {"service": "fan", "slot": k + 1}});
        let sent = Instant::now();
        let resp = http
            .post(format!("{url}/v1/tasks"))
            .json(&task)
            .send()
            .await?;
        let code = resp.status();
        let body = resp.bytes().await?;
        let ack = Instant::now();
        if !code.is_success() {
            bail!(
                "write {k} answered {code}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        write_latency.push(ack - sent);
        let rev = line_revision(&body).context("no resourceVersion in the write's answer")?;
        acks.insert(rev, (sent, ack));
        tokio::time::sleep(args.interval).await;
    }

    // Every watcher should have every event; give stragglers 30 s, then stop them.
    let stopper = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        let _ = stop_tx.send(true);
    });
    let mut latencies = Vec::with_capacity(args.watchers * args.writes);
    let mut from_send = Vec::with_capacity(args.watchers * args.writes);
    let (mut complete, mut before_ack, mut delivered) = (0, 0, 0);
    let mut expected: Vec<i64> = acks.keys().copied().collect();
    expected.sort_unstable();
    for h in handles {
        let got = h.await??;
        delivered += got.len();
        let revs: Vec<i64> = got.iter().map(|(r, _)| *r).collect();
        if revs == expected {
            complete += 1;
        }
        for (rev, at) in got {
            if let Some((sent, ack)) = acks.get(&rev) {
                if at < *ack {
                    before_ack += 1;
                }
                latencies.push(at.saturating_duration_since(*ack));
                from_send.push(at.saturating_duration_since(*sent));
            }
        }
    }
    stopper.abort();
    server.stop().await?;
    Ok(Outcome {
        summary: Summary::of(&mut latencies),
        from_send: Summary::of(&mut from_send),
        delivered,
        complete,
        before_ack,
        write: Summary::of(&mut write_latency),
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = args()?;
    println!(
        "watch_fanout: {} watchers, {} writes {} ms apart; load average before: {}",
        args.watchers,
        args.writes,
        args.interval.as_millis(),
        load_average()
    );
    let mut rows = Vec::new();
    for &store in &args.stores {
        let o = run(store, &args).await?;
        let row = vec![
            store.name().to_string(),
            args.watchers.to_string(),
            args.writes.to_string(),
            format!("{}/{}", o.delivered, args.watchers * args.writes),
            format!("{}/{}", o.complete, args.watchers),
            ms(o.summary.p50),
            ms(o.summary.p99),
            ms(o.summary.p999),
            ms(o.summary.max),
            o.before_ack.to_string(),
            ms(o.from_send.p50),
            ms(o.from_send.p99),
            ms(o.write.p50),
            ms(o.write.p99),
        ];
        println!("{}", row.join("  "));
        rows.push(row);
    }
    println!();
    print_table(
        &[
            "store",
            "watchers",
            "writes",
            "events delivered",
            "watchers with every event",
            "delivery p50 ms",
            "delivery p99 ms",
            "delivery p99.9 ms",
            "delivery max ms",
            "before ack",
            "from send p50 ms",
            "from send p99 ms",
            "write p50 ms",
            "write p99 ms",
        ],
        &rows,
    );
    println!("\nload average after: {}", load_average());
    Ok(())
}
