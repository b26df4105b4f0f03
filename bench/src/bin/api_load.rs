//! Open-loop load on the API server: create, update and get of tasks at a fixed offered rate,
//! over HTTP on loopback, with the embedded store and with a real etcd.
//!
//! Open loop: request `i` of a phase is sent at `start + i / rate` whether or not the earlier
//! ones have finished, and its latency is measured from that *scheduled* time — so a stall of
//! the server shows in every request it delays (no coordinated omission). The pacing runs on a
//! thread of its own with the OS's fine-grained sleep (Tokio's timer has a 1 ms tick, which
//! would add up to a millisecond of the generator's own lateness to every request); "send lag"
//! is how late each request's task started, the generator's share of the latency. Each phase
//! also lists its *stalls*: runs of requests over 10 ms, by scheduled time (one stall of the
//! whole process delays every request scheduled during it). The phases run in
//! order on one server: `create` makes `rate × seconds` tasks, `update` replaces each of them
//! once (with its `resourceVersion`, as a controller does), `get` reads them.
//!
//! ```text
//! cargo run --release -p swarm-bench --bin api_load -- \
//!     [--store embedded|etcd|both] [--rate 1000] [--seconds 20] [--pacer thread|tokio]
//! ```
//!
//! The API server runs in this process (on its Tokio runtime, sharing the machine's cores with
//! the load generator); etcd, when used, is started from PATH (or `$ETCD`) in a temp dir.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use swarm_bench::{ApiServer, StoreKind, Summary, load_average, ms, print_table};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Create,
    Update,
    Get,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Update => "update",
            Op::Get => "get",
        }
    }
}

struct Args {
    stores: Vec<StoreKind>,
    rate: f64,
    seconds: f64,
    /// Pace with Tokio's timer instead of the pacer thread (to compare the two).
    tokio_pacer: bool,
}

fn args() -> Result<Args> {
    let mut a = Args {
        stores: StoreKind::parse_list("both")?,
        rate: 1000.0,
        seconds: 20.0,
        tokio_pacer: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--store" => a.stores = StoreKind::parse_list(&value()?)?,
            "--rate" => a.rate = value()?.parse().context("--rate")?,
            "--seconds" => a.seconds = value()?.parse().context("--seconds")?,
            "--pacer" => {
                a.tokio_pacer = match value()?.as_str() {
                    "thread" => false,
                    "tokio" => true,
                    other => bail!("--pacer {other:?}: thread or tokio"),
                }
            }
            other => bail!("unknown argument {other:?}; see the top of api_load.rs"),
        }
    }
    if a.rate <= 0.0 || a.seconds <= 0.0 {
        bail!("--rate and --seconds must be positive");
    }
    Ok(a)
}

/// The outcome of one phase.
struct Phase {
    op: Op,
    summary: Summary,
    errors: usize,
    first_error: Option<String>,
    /// Completed requests per second of wall time (until the last one finished).
    achieved: f64,
    /// How late each request's task started after its scheduled time.
    send_lag: Summary,
    /// Runs of slow requests (see `stalls`).
    stalls: Vec<Stall>,
}

/// Requests over `STALL_MS`, scheduled within `STALL_GAP` of each other: one stall.
struct Stall {
    /// Scheduled time of its first request, from the phase's start.
    at: Duration,
    requests: usize,
    worst: Duration,
}

const STALL_MS: u64 = 10;
const STALL_GAP: Duration = Duration::from_millis(50);

/// The stalls of a phase, from each request's scheduled offset and latency (in send order).
fn stalls(samples: &[(Duration, Duration)]) -> Vec<Stall> {
    let mut out: Vec<Stall> = Vec::new();
    let mut last_slow: Option<Duration> = None;
    for &(at, latency) in samples {
        if latency < Duration::from_millis(STALL_MS) {
            continue;
        }
        match out.last_mut() {
            Some(s) if last_slow.is_some_and(|l| at - l <= STALL_GAP) => {
                s.requests += 1;
                s.worst = s.worst.max(latency);
            }
            _ => out.push(Stall {
                at,
                requests: 1,
                worst: latency,
            }),
        }
        last_slow = Some(at);
    }
    out
}

/// The server's latency histograms (`/metrics`): for each histogram series (name and labels),
/// its cumulative bucket counts by upper bound.
type Histograms = std::collections::BTreeMap<String, Vec<(f64, f64)>>;

async fn histograms(http: &reqwest::Client, url: &str) -> Result<Histograms> {
    let text = swarm_bench::metrics_text(http, url).await?;
    let mut out = Histograms::new();
    for line in text.lines() {
        // name_bucket{labels,le="0.005"} 123
        let Some((series, count)) = line.rsplit_once(' ') else {
            continue;
        };
        let Some((head, le)) = series.split_once("_bucket{") else {
            continue;
        };
        let Some((labels, bound)) = le.rsplit_once(",le=\"") else {
            continue;
        };
        let bound = bound.trim_end_matches("\"}");
        let bound = if bound == "+Inf" {
            f64::INFINITY
        } else {
            bound.parse()?
        };
        out.entry(format!("{head}{{{labels}}}"))
            .or_default()
            .push((bound, count.parse()?));
    }
    Ok(out)
}

/// Per series, what one phase added: count and the share of samples at or under 1, 5, 10 and
/// 25 ms (the server's buckets), for the series of the phase's verb and the store calls.
fn histogram_rows(
    store: StoreKind,
    op: Op,
    before: &Histograms,
    after: &Histograms,
) -> Vec<Vec<String>> {
    let verb = match op {
        Op::Create => "CREATE",
        Op::Update => "UPDATE",
        Op::Get => "GET",
    };
    let mut rows = Vec::new();
    for (series, buckets) in after {
        let wanted = series.contains("store_duration")
            || (series.contains("request_duration")
                && series.contains(&format!("verb=\"{verb}\""))
                && series.contains("tasks"));
        if !wanted {
            continue;
        }
        let old = before.get(series);
        let delta: Vec<(f64, f64)> = buckets
            .iter()
            .enumerate()
            .map(|(i, (b, c))| (*b, c - old.and_then(|o| o.get(i)).map_or(0.0, |x| x.1)))
            .collect();
        let total = delta.last().map_or(0.0, |x| x.1);
        if total < 1.0 {
            continue;
        }
        let share = |ms: f64| {
            let at = delta
                .iter()
                .find(|(b, _)| (*b - ms / 1000.0).abs() < 1e-9)
                .map_or(0.0, |x| x.1);
            format!("{:.2}%", 100.0 * at / total)
        };
        rows.push(vec![
            store.name().to_string(),
            op.name().to_string(),
            series
                .trim_start_matches("swarm_apiserver_")
                .replace("_duration_seconds", ""),
            format!("{total}"),
            share(1.0),
            share(5.0),
            share(10.0),
            share(25.0),
        ]);
    }
    rows
}

/// One request's outcome: the object the server answered with, or the error.
type Outcome = Result<Value, String>;

async fn request(
    http: &reqwest::Client,
    url: &str,
    op: Op,
    i: usize,
    objects: &[Value],
) -> Outcome {
    let resp = match op {
        Op::Create => {
            let task = json!({
                "kind": "Task",
                "metadata": {"name": format!("web.{}.1", i + 1), "labels": {"app": "bench"}},
                "spec": {"service": "web", "slot": i + 1, "nodeName": format!("node-{}", i % 50)},
            });
            http.post(format!("{url}/v1/tasks"))
                .json(&task)
                .send()
                .await
        }
        Op::Update | Op::Get => {
            let obj = &objects[i % objects.len()];
            let name = obj["metadata"]["name"].as_str().unwrap_or_default();
            if op == Op::Get {
                http.get(format!("{url}/v1/tasks/{name}")).send().await
            } else {
                let mut changed = obj.clone();
                changed["metadata"]["labels"]["bench-update"] = json!(format!("u{i}"));
                http.put(format!("{url}/v1/tasks/{name}"))
                    .json(&changed)
                    .send()
                    .await
            }
        }
    };
    let resp = resp.map_err(|e| e.to_string())?;
    let code = resp.status();
    let body = resp.bytes().await.map_err(|e| e.to_string())?;
    if !code.is_success() {
        return Err(format!("{code}: {}", String::from_utf8_lossy(&body)));
    }
    if op == Op::Get {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&body).map_err(|e| e.to_string())
}

/// Runs one phase; returns its outcome and, for `create`, the created objects.
async fn phase(
    http: &reqwest::Client,
    url: &str,
    op: Op,
    args: &Args,
    objects: Arc<Vec<Value>>,
) -> Result<(Phase, Vec<Value>)> {
    if op != Op::Create && objects.is_empty() {
        bail!("no objects to {}: every create failed", op.name());
    }
    let total = (args.rate * args.seconds).round() as usize;
    let interval = Duration::from_secs_f64(1.0 / args.rate);
    let start = Instant::now() + Duration::from_millis(20);
    // The pacer: a plain thread sleeping to each scheduled time, handing the request to the
    // runtime (see the module docs).
    let runtime = tokio::runtime::Handle::current();
    let (http2, url2) = (http.clone(), url.to_string());
    let send = move |i: usize, at: Instant| {
        let (http, url, objects) = (http2.clone(), url2.clone(), objects.clone());
        runtime.spawn(async move {
            let lag = at.elapsed();
            let outcome = request(&http, &url, op, i, &objects).await;
            (at - start, lag, at.elapsed(), outcome)
        })
    };
    let scheduled = move |i: usize| start + interval.mul_f64(i as f64);
    let handles = if args.tokio_pacer {
        let mut handles = Vec::with_capacity(total);
        for i in 0..total {
            tokio::time::sleep_until(scheduled(i).into()).await;
            handles.push(send(i, scheduled(i)));
        }
        handles
    } else {
        tokio::task::spawn_blocking(move || {
            let mut handles = Vec::with_capacity(total);
            for i in 0..total {
                if let Some(wait) = scheduled(i).checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                handles.push(send(i, scheduled(i)));
            }
            handles
        })
        .await?
    };
    let mut latencies = Vec::with_capacity(total);
    let mut lags = Vec::with_capacity(total);
    let mut by_time = Vec::with_capacity(total);
    let mut created = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    for h in handles {
        let (offset, lag, latency, outcome) = h.await?;
        latencies.push(latency);
        lags.push(lag);
        by_time.push((offset, latency));
        match outcome {
            Ok(obj) => {
                if op == Op::Create {
                    created.push(obj);
                }
            }
            Err(e) => {
                errors += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    Ok((
        Phase {
            op,
            summary: Summary::of(&mut latencies),
            errors,
            first_error,
            achieved: (total - errors) as f64 / elapsed,
            send_lag: Summary::of(&mut lags),
            stalls: stalls(&by_time),
        },
        created,
    ))
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = args()?;
    println!(
        "api_load: {} req/s for {} s per op; load average before: {}",
        args.rate,
        args.seconds,
        load_average()
    );
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .timeout(Duration::from_secs(30))
        .build()?;
    let mut rows = Vec::new();
    let mut server_rows = Vec::new();
    let mut stall_rows = Vec::new();
    for &store in &args.stores {
        let server = ApiServer::start(store).await?;
        let mut objects = Arc::new(Vec::new());
        for op in [Op::Create, Op::Update, Op::Get] {
            let before = histograms(&http, &server.url).await?;
            let (p, created) = phase(&http, &server.url, op, &args, objects.clone()).await?;
            let after = histograms(&http, &server.url).await?;
            server_rows.extend(histogram_rows(store, op, &before, &after));
            if op == Op::Create {
                objects = Arc::new(created);
            }
            if let Some(e) = &p.first_error {
                eprintln!("{} {}: first error: {e}", store.name(), op.name());
            }
            let row = vec![
                store.name().to_string(),
                p.op.name().to_string(),
                format!("{}", args.rate),
                format!("{:.0}", p.achieved),
                p.summary.count.to_string(),
                p.errors.to_string(),
                ms(p.summary.p50),
                ms(p.summary.p99),
                ms(p.summary.p999),
                ms(p.summary.max),
                ms(p.send_lag.p99),
                ms(p.send_lag.max),
            ];
            for st in &p.stalls {
                stall_rows.push(vec![
                    store.name().to_string(),
                    p.op.name().to_string(),
                    format!("{:.3}", st.at.as_secs_f64()),
                    st.requests.to_string(),
                    ms(st.worst),
                ]);
            }
            println!("{}", row.join("  "));
            rows.push(row);
        }
        server.stop().await?;
    }
    println!();
    print_table(
        &[
            "store",
            "op",
            "offered/s",
            "achieved/s",
            "requests",
            "errors",
            "p50 ms",
            "p99 ms",
            "p99.9 ms",
            "max ms",
            "send lag p99 ms",
            "send lag max ms",
        ],
        &rows,
    );
    println!(
        "\nstalls (requests over {STALL_MS} ms, grouped when scheduled within {STALL_GAP:?}):"
    );
    print_table(
        &["store", "phase", "at s", "requests", "worst ms"],
        &stall_rows,
    );
    println!(
        "\nserver side, per phase (apiserver /metrics: request handling without the client, and each store call):"
    );
    print_table(
        &[
            "store", "phase", "series", "count", "<=1ms", "<=5ms", "<=10ms", "<=25ms",
        ],
        &server_rows,
    );
    println!("\nload average after: {}", load_average());
    Ok(())
}
