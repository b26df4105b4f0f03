//! The runtime against a real in-process apiserver over a fresh embedded store: the watcher's
//! list → watch → resume → relist cycle, the reflector cache, and leader election between two
//! candidates. Timeouts here only guard against hangs; the assertions are about behaviour.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use futures::{Stream, StreamExt};
use swarm_api::{Lease, Network, NetworkSpec};
use swarm_apiserver::server::{RunningServer, Server, ServerOptions};
use swarm_apiserver::store::Store as KvStore;
use swarm_apiserver::store::embedded::EmbeddedStore;
use swarm_apiserver::watch_cache::CacheOptions;
use swarm_client::runtime::watcher::{self, Event, WatchError};
use swarm_client::runtime::{
    BackoffConfig, LeaderConfig, LeaderElector, SharedCaches, Writer, reflector,
};
use swarm_client::{Client, Operation};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

const PATIENCE: Duration = Duration::from_secs(20);

struct Api {
    _server: RunningServer,
    store: Arc<dyn KvStore>,
    client: Client,
    _dir: tempfile::TempDir,
}

async fn start(bookmark_interval: Duration) -> Api {
    start_with_window(bookmark_interval, 1000).await
}

/// `start`, with the server's watch cache holding the last `window` events per kind.
async fn start_with_window(bookmark_interval: Duration, window: usize) -> Api {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn KvStore> =
        Arc::new(EmbeddedStore::open(&dir.path().join("store.db")).unwrap());
    let opts = ServerOptions {
        bookmark_interval,
        cache: CacheOptions {
            window,
            watcher_buffer: 1000,
            retry_delay: Duration::from_millis(50),
        },
        ..ServerOptions::loopback()
    };
    let server = Server::with_store(store.clone(), opts)
        .await
        .unwrap()
        .spawn();
    let client = Client::new(&server.url()).unwrap();
    Api {
        _server: server,
        store,
        client,
        _dir: dir,
    }
}

fn net(name: &str, labels: &[(&str, &str)]) -> Network {
    let mut n = Network::new(name, NetworkSpec::default());
    for (k, v) in labels {
        n.metadata.labels.insert(k.to_string(), v.to_string());
    }
    n
}

/// Fast retries and short server-side watch timeouts, so resumes happen within a test.
fn quick() -> watcher::Config {
    watcher::Config {
        timeout_seconds: 1,
        backoff: BackoffConfig {
            initial: Duration::from_millis(20),
            max: Duration::from_millis(200),
            jitter: true,
        },
        ..watcher::Config::default()
    }
}

async fn next<S>(s: &mut S) -> S::Item
where
    S: Stream + Unpin,
{
    tokio::time::timeout(PATIENCE, s.next())
        .await
        .expect("an item within the patience window")
        .expect("the watcher never ends")
}

/// The next successful event (errors are expected between some steps and skipped).
async fn next_event<S>(s: &mut S, errors: &mut Vec<WatchError>) -> Event<Network>
where
    S: Stream<Item = Result<Event<Network>, WatchError>> + Unpin,
{
    loop {
        match next(s).await {
            Ok(e) => return e,
            Err(e) => errors.push(e),
        }
    }
}

fn name(e: &Event<Network>) -> String {
    match e {
        Event::Apply(o) | Event::Delete(o) | Event::InitApply(o) => o.metadata.name.clone(),
        Event::Init => "<init>".into(),
        Event::InitDone => "<done>".into(),
    }
}

#[tokio::test]
async fn lists_then_watches_and_resumes_across_server_timeouts() {
    let api = start(Duration::from_millis(100)).await;
    for n in ["a", "b", "c"] {
        api.client.create(&net(n, &[])).await.unwrap();
    }
    // Page size 2 forces two list pages; both must come from one snapshot.
    let config = watcher::Config {
        page_size: 2,
        ..quick()
    };
    let mut w = watcher::watcher::<Network>(api.client.clone(), config);
    let mut errors = Vec::new();
    assert_eq!(next_event(&mut w, &mut errors).await, Event::Init);
    let mut listed = Vec::new();
    loop {
        match next_event(&mut w, &mut errors).await {
            Event::InitApply(o) => listed.push(o.metadata.name),
            Event::InitDone => break,
            other => panic!("unexpected {other:?} during the list"),
        }
    }
    listed.sort();
    assert_eq!(listed, vec!["a", "b", "c"]);

    api.client.create(&net("d", &[])).await.unwrap();
    let e = next_event(&mut w, &mut errors).await;
    assert!(
        matches!(&e, Event::Apply(o) if o.metadata.name == "d"),
        "{e:?}"
    );

    // Outlive several 1 s server-side watch timeouts: the watcher re-watches from its last
    // version, so the next change arrives once, as a plain Apply — no relist, nothing replayed.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    api.client.delete::<Network>("a", None).await.unwrap();
    let e = next_event(&mut w, &mut errors).await;
    assert_eq!(
        (name(&e), matches!(e, Event::Delete(_))),
        ("a".into(), true)
    );
    api.client.create(&net("e", &[])).await.unwrap();
    let e = next_event(&mut w, &mut errors).await;
    assert_eq!(name(&e), "e");
    assert!(errors.is_empty(), "{errors:?}");
}

#[tokio::test]
async fn relists_when_its_version_is_compacted_away() {
    // No bookmarks: a watcher whose selector matches nothing keeps the list's old version.
    // A window of two events: the server's watch cache, which would serve any version it
    // still covers (compacted in the store or not), lets it go after the writes below.
    let api = start_with_window(Duration::from_secs(3600), 2).await;
    api.client
        .create(&net("mine", &[("app", "x")]))
        .await
        .unwrap();
    let mut w = watcher::watcher::<Network>(api.client.clone(), quick().labels("app=x"));
    let mut errors = Vec::new();
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(name(&next_event(&mut w, &mut errors).await));
    }
    assert_eq!(seen, vec!["<init>", "mine", "<done>"]);

    // Other objects change; history up to now is compacted. The watcher's version is gone
    // from the store and from the cache's window.
    for i in 0..5 {
        api.client
            .create(&net(&format!("other{i}"), &[]))
            .await
            .unwrap();
    }
    let rev = api.store.current_revision().await.unwrap();
    api.store.compact(rev).await.unwrap();
    // While away, "mine" is deleted: a relist is the only way to learn it.
    api.client.delete::<Network>("mine", None).await.unwrap();
    api.client
        .create(&net("new", &[("app", "x")]))
        .await
        .unwrap();

    // At its next re-watch (≤ 1 s) the server answers 410; the watcher relists.
    let mut relisted = Vec::new();
    loop {
        let e = next_event(&mut w, &mut errors).await;
        relisted.push(name(&e));
        if e == Event::InitDone {
            break;
        }
    }
    assert!(errors.iter().any(WatchError::is_gone), "{errors:?}");
    // Only the relist's objects: a cache swapping at InitDone forgets "mine".
    let start = relisted.iter().rposition(|n| n == "<init>").unwrap();
    assert_eq!(&relisted[start..], &["<init>", "new", "<done>"]);
}

/// A loopback proxy to `upstream` that cuts the first response carrying at least `after`
/// `ADDED` events right after the `after`th event's line, and forwards everything else whole.
/// Sets `cut` when it has cut.
async fn cutting_proxy(upstream: String, after: usize, cut: Arc<AtomicBool>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut down, _)) = listener.accept().await {
            let (upstream, cut) = (upstream.clone(), cut.clone());
            tokio::spawn(async move {
                let Ok(up) = tokio::net::TcpStream::connect(&upstream).await else {
                    return;
                };
                let (mut up_read, mut up_write) = up.into_split();
                let (mut down_read, mut down_write) = down.split();
                let requests = tokio::io::copy(&mut down_read, &mut up_write);
                let responses = async {
                    let mut seen = Vec::new();
                    let mut sent = 0;
                    let mut buf = [0u8; 16 * 1024];
                    loop {
                        let n = up_read.read(&mut buf).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        seen.extend_from_slice(&buf[..n]);
                        let cut_here = if cut.load(Ordering::SeqCst) {
                            None
                        } else {
                            after_nth_event(&seen, after)
                        };
                        let end = cut_here.unwrap_or(seen.len());
                        if down_write.write_all(&seen[sent..end]).await.is_err() {
                            return;
                        }
                        sent = end;
                        if cut_here.is_some() {
                            cut.store(true, Ordering::SeqCst);
                            return; // drops both halves: the client sees the stream break
                        }
                    }
                };
                tokio::select! {
                    _ = requests => {}
                    _ = responses => {}
                }
            });
        }
    });
    format!("http://{addr}")
}

/// The offset just past the line of the `n`th `ADDED` event in `bytes`, once that line is whole.
fn after_nth_event(bytes: &[u8], n: usize) -> Option<usize> {
    let needle = b"\"ADDED\"";
    let at = bytes
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .nth(n - 1)?
        .0;
    let newline = bytes[at..].iter().position(|b| *b == b'\n')?;
    Some(at + newline + 1)
}

#[tokio::test]
async fn a_watch_broken_inside_a_transaction_resumes_without_losing_its_other_writes() {
    let api = start(Duration::from_secs(60)).await;
    let cut = Arc::new(AtomicBool::new(false));
    let upstream = api._server.url().trim_start_matches("http://").to_string();
    let proxy = cutting_proxy(upstream, 5, cut.clone()).await;
    let via_proxy = Client::new(&proxy).unwrap();
    let mut w = watcher::watcher::<Network>(via_proxy, quick());
    let mut errors = Vec::new();
    assert_eq!(next_event(&mut w, &mut errors).await, Event::Init);
    assert_eq!(next_event(&mut w, &mut errors).await, Event::InitDone);
    // Twenty networks in one transaction: one revision, twenty events. The proxy breaks the
    // watch after the fifth; the watcher must resume from before that revision.
    let names: Vec<String> = (0..20).map(|i| format!("txn{i:02}")).collect();
    let ops: Vec<Operation> = names
        .iter()
        .map(|n| Operation::create(&net(n, &[])).unwrap())
        .collect();
    api.client.transaction(&ops).await.unwrap();
    let mut got = BTreeSet::new();
    while got.len() < names.len() {
        let e = next_event(&mut w, &mut errors).await;
        if let Event::Apply(o) = e {
            got.insert(o.metadata.name);
        }
    }
    assert!(cut.load(Ordering::SeqCst), "the proxy never cut the watch");
    assert!(
        !errors.is_empty(),
        "the watch was cut, so the watcher saw it break"
    );
    assert_eq!(got.into_iter().collect::<Vec<_>>(), names);
}

#[tokio::test]
async fn bookmarks_advance_the_resume_version() {
    let api = start(Duration::from_millis(100)).await;
    let mut w = watcher::watcher::<Network>(api.client.clone(), quick().labels("app=x"));
    let mut errors = Vec::new();
    assert_eq!(next_event(&mut w, &mut errors).await, Event::Init);
    assert_eq!(next_event(&mut w, &mut errors).await, Event::InitDone);
    // Unrelated writes; bookmarks (every 100 ms) carry the watcher's version past them,
    // so compacting them away does not force a relist.
    for i in 0..5 {
        api.client
            .create(&net(&format!("other{i}"), &[]))
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let rev = api.store.current_revision().await.unwrap();
    api.store.compact(rev).await.unwrap();
    // Let the 1 s watch time out and resume from the bookmarked version.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    api.client
        .create(&net("mine", &[("app", "x")]))
        .await
        .unwrap();
    let e = next_event(&mut w, &mut errors).await;
    assert!(
        matches!(&e, Event::Apply(o) if o.metadata.name == "mine"),
        "{e:?}"
    );
    assert!(errors.is_empty(), "a relist happened: {errors:?}");
}

/// Records what a subscriber of a shared cache is handed.
fn recorder(
    log: &Arc<std::sync::Mutex<Vec<String>>>,
) -> impl Fn(&Event<Network>) + Send + Sync + 'static {
    let log = log.clone();
    move |e| log.lock().unwrap().push(name(e))
}

async fn until_logged(log: &Arc<std::sync::Mutex<Vec<String>>>, what: &str) {
    tokio::time::timeout(PATIENCE, async {
        while !log.lock().unwrap().iter().any(|n| n == what) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what} never arrived: {:?}", log.lock().unwrap()));
}

#[tokio::test]
async fn shared_caches_hand_every_subscriber_every_object_whenever_it_arrives() {
    let api = start(Duration::from_millis(100)).await;
    api.client.create(&net("a", &[])).await.unwrap();
    let stop = CancellationToken::new();
    let caches = SharedCaches::new(api.client.clone(), stop.clone());
    let informer = caches.informer::<Network>(None);
    let early = Arc::new(std::sync::Mutex::new(Vec::new()));
    let _early_sub = informer.subscribe(recorder(&early));
    until_logged(&early, "<done>").await;
    api.client.create(&net("b", &[])).await.unwrap();
    until_logged(&early, "b").await;

    // A late subscriber (a controller that starts leading now) is shown the cache as a list,
    // at once; the same kind asked for again is the same informer, with an index added.
    let again =
        caches.informer::<Network>(Some(|n: &Network| n.metadata.labels.get("app").cloned()));
    let late = Arc::new(std::sync::Mutex::new(Vec::new()));
    let late_sub = again.subscribe(recorder(&late));
    let mut replayed = late.lock().unwrap().clone();
    let done = replayed.pop();
    replayed.sort();
    assert_eq!(
        (replayed, done),
        (vec!["a".into(), "b".into()], Some("<done>".into()))
    );

    // Both get what follows; the index covers what was cached before it was asked for.
    api.client
        .create(&net("c", &[("app", "web")]))
        .await
        .unwrap();
    until_logged(&early, "c").await;
    until_logged(&late, "c").await;
    assert_eq!(informer.store().len(), 3);
    assert_eq!(again.store().indexed("web").len(), 1);

    // Unsubscribed: nothing more.
    drop(late_sub);
    api.client.create(&net("d", &[])).await.unwrap();
    until_logged(&early, "d").await;
    assert!(!late.lock().unwrap().iter().any(|n| n == "d"));
    stop.cancel();
}

#[tokio::test]
async fn reflector_store_is_ready_after_the_first_list_and_follows_changes() {
    let api = start(Duration::from_millis(100)).await;
    api.client.create(&net("a", &[])).await.unwrap();
    let writer = Writer::<Network>::new();
    let store = writer.store();
    let stream = reflector(
        writer,
        watcher::watcher::<Network>(api.client.clone(), quick()),
    );
    let driver = tokio::spawn(stream.for_each(|_| async {}));
    assert!(
        tokio::time::timeout(PATIENCE, store.wait_until_ready())
            .await
            .unwrap()
    );
    assert!(store.get("a").is_some());
    api.client.create(&net("b", &[])).await.unwrap();
    api.client.delete::<Network>("a", None).await.unwrap();
    tokio::time::timeout(PATIENCE, async {
        while store.get("a").is_some() || store.get("b").is_none() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the cache follows the changes");
    // Readers get a snapshot of the object, as the server has it.
    let b = store.get("b").unwrap();
    let fresh = api.client.get::<Network>("b").await.unwrap();
    assert_eq!(*b, fresh);
    driver.abort();
}

/// Counts candidates acting right now; a guard decrements when its work ends or is dropped
/// (a killed task drops its futures without running anything else).
struct Acting(Arc<AtomicUsize>);

impl Drop for Acting {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn candidate(
    client: &Client,
    identity: &str,
    acting: &Arc<AtomicUsize>,
    max_seen: &Arc<AtomicUsize>,
    shutdown: CancellationToken,
) -> (
    tokio::task::JoinHandle<()>,
    tokio::sync::watch::Receiver<bool>,
) {
    let config = LeaderConfig::new("test-lease", identity, Duration::from_secs(2));
    let elector = LeaderElector::new(client.clone(), config);
    let leading = elector.subscribe();
    let (acting, max_seen) = (acting.clone(), max_seen.clone());
    let handle = tokio::spawn(elector.run(shutdown, move |stop| {
        let (acting, max_seen) = (acting.clone(), max_seen.clone());
        async move {
            let now = acting.fetch_add(1, Ordering::SeqCst) + 1;
            max_seen.fetch_max(now, Ordering::SeqCst);
            let _guard = Acting(acting);
            stop.cancelled().await;
        }
    }));
    (handle, leading)
}

async fn wait_for(rx: &mut tokio::sync::watch::Receiver<bool>) {
    tokio::time::timeout(PATIENCE, rx.wait_for(|l| *l))
        .await
        .expect("leadership within the patience window")
        .unwrap();
}

#[tokio::test]
async fn exactly_one_of_two_leads_and_the_other_takes_over_when_it_is_killed() {
    let api = start(Duration::from_millis(100)).await;
    let acting = Arc::new(AtomicUsize::new(0));
    let max_seen = Arc::new(AtomicUsize::new(0));
    let stop = CancellationToken::new();
    let (h1, mut l1) = candidate(&api.client, "one", &acting, &max_seen, stop.clone());
    let (h2, mut l2) = candidate(&api.client, "two", &acting, &max_seen, stop.clone());
    tokio::select! {
        _ = wait_for(&mut l1) => {}
        _ = wait_for(&mut l2) => {}
    }
    // Several renewal periods pass with both candidates alive: never two acting.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(acting.load(Ordering::SeqCst), 1);
    assert_eq!(max_seen.load(Ordering::SeqCst), 1);
    let (leader, mut follower_rx, follower, follower_id) = if *l1.borrow() {
        (h1, l2, h2, "two")
    } else {
        (h2, l1, h1, "one")
    };
    assert!(!*follower_rx.borrow());
    let before = api.client.get::<Lease>("test-lease").await.unwrap();

    // Kill the leader: no release, so the follower must wait out the lease.
    leader.abort();
    let _ = leader.await;
    assert_eq!(acting.load(Ordering::SeqCst), 0);
    wait_for(&mut follower_rx).await;
    assert_eq!(acting.load(Ordering::SeqCst), 1);
    assert_eq!(max_seen.load(Ordering::SeqCst), 1);
    let after = api.client.get::<Lease>("test-lease").await.unwrap();
    assert_eq!(after.spec.holder_identity, follower_id);
    assert_eq!(
        after.spec.lease_transitions,
        before.spec.lease_transitions + 1
    );

    // Orderly shutdown releases the lease.
    stop.cancel();
    follower.await.unwrap();
    assert_eq!(acting.load(Ordering::SeqCst), 0);
    let released = api.client.get::<Lease>("test-lease").await.unwrap();
    assert_eq!(released.spec.holder_identity, "");
}

#[tokio::test]
async fn a_released_lease_is_taken_over_without_waiting_it_out() {
    let api = start(Duration::from_millis(100)).await;
    let acting = Arc::new(AtomicUsize::new(0));
    let max_seen = Arc::new(AtomicUsize::new(0));
    let stop1 = CancellationToken::new();
    let (h1, mut l1) = candidate(&api.client, "one", &acting, &max_seen, stop1.clone());
    wait_for(&mut l1).await;
    let stop2 = CancellationToken::new();
    let (h2, mut l2) = candidate(&api.client, "two", &acting, &max_seen, stop2.clone());
    stop1.cancel();
    h1.await.unwrap();
    wait_for(&mut l2).await;
    let lease = api.client.get::<Lease>("test-lease").await.unwrap();
    assert_eq!(lease.spec.holder_identity, "two");
    assert_eq!(max_seen.load(Ordering::SeqCst), 1);
    stop2.cancel();
    h2.await.unwrap();
}
