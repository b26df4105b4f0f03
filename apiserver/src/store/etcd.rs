//! The etcd `Store`: a thin mapping of the trait onto etcd's v3 API (etcd-client).
//!
//! * **Transactions** become one etcd `Txn`: a compare per operation (`create_revision == 0` for
//!   a create, `mod_revision == expected` or `create_revision > 0` for updates and deletes), the
//!   writes in the *then* branch, and a `get` of every key in the *else* branch. When a compare
//!   fails, the else branch's reads — taken atomically with the compare — tell exactly which
//!   operation failed and why, so the error names its index just as the embedded store does.
//! * **Lists** are ranges `[start, prefix_end)` with a limit and a revision; paging starts the
//!   next range just after the last key (`key + "\0"`).
//! * **Watches** are etcd watches with `prev_kv`. etcd-client's stream does not reconnect, so a
//!   task owns it and, when it breaks (etcd restarted, connection lost), opens a new one from
//!   the last revision delivered, skipping what was already sent: the consumer sees one
//!   unbroken, duplicate-free stream. A watch cancelled for compaction ends with `Compacted`.
//! * **Limits** are etcd's: a transaction holds at most `--max-txn-ops` (default 128)
//!   operations and a request at most `--max-request-bytes` (1.5 MiB); beyond them etcd refuses
//!   the request (reported as `Internal`).
//! * **Compaction point**: etcd does not report it, but a read at revision `r` fails exactly when
//!   `r` is below it, so `compacted_revision` finds it by binary search (a few cheap reads).

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType as EtcdEventType,
    GetOptions, PutOptions, Txn, TxnOp as EtcdTxnOp, TxnOpResponse, WatchOptions,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tracing::{debug, warn};

use super::{
    Event, EventType, KeyValue, ListOptions, ListResult, Result, Revision, Store, StoreError,
    TxnOp, TxnResult, WatchStream, check_distinct_keys, check_op, prefix_end,
};

/// gRPC status codes (a stable part of the wire protocol) that mean "try again later".
const GRPC_CANCELLED: i32 = 1;
const GRPC_DEADLINE_EXCEEDED: i32 = 4;
const GRPC_UNAVAILABLE: i32 = 14;

/// Events buffered between a watch task and its consumer.
const WATCH_BUFFER: usize = 1024;
/// The longest pause between attempts to re-open a broken watch.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// A `Store` on an etcd cluster. Cloning shares the connection.
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
}

/// How an etcd error reads to the rest of the store.
fn map_err(e: etcd_client::Error) -> StoreError {
    match e {
        etcd_client::Error::GRpcStatus(s) => {
            let code = i32::from(s.code());
            if [GRPC_UNAVAILABLE, GRPC_DEADLINE_EXCEEDED, GRPC_CANCELLED].contains(&code) {
                StoreError::Unavailable(format!("etcd: {}", s.message()))
            } else {
                StoreError::Internal(format!("etcd: {}", s.message()))
            }
        }
        etcd_client::Error::TransportError(e) => StoreError::Unavailable(format!("etcd: {e}")),
        etcd_client::Error::IoError(e) => StoreError::Unavailable(format!("etcd: {e}")),
        other => StoreError::Internal(format!("etcd: {other}")),
    }
}

/// etcd's "mvcc: required revision has been compacted".
fn is_compacted(e: &etcd_client::Error) -> bool {
    matches!(e, etcd_client::Error::GRpcStatus(s) if s.message().contains("has been compacted"))
}

/// etcd's "mvcc: required revision is a future revision".
fn is_future(e: &etcd_client::Error) -> bool {
    matches!(e, etcd_client::Error::GRpcStatus(s) if s.message().contains("future revision"))
}

fn utf8_key(key: &[u8]) -> Result<String> {
    String::from_utf8(key.to_vec())
        .map_err(|e| StoreError::Internal(format!("etcd key is not UTF-8: {e}")))
}

fn to_kv(kv: &etcd_client::KeyValue) -> Result<KeyValue> {
    Ok(KeyValue {
        key: utf8_key(kv.key())?,
        value: Bytes::copy_from_slice(kv.value()),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
    })
}

fn to_event(ev: &etcd_client::Event) -> Result<Event> {
    let kv = ev
        .kv()
        .ok_or_else(|| StoreError::Internal("etcd watch event without a key".into()))?;
    let prev = ev.prev_kv();
    let prev_value = prev.map(|p| Bytes::copy_from_slice(p.value()));
    Ok(match ev.event_type() {
        EtcdEventType::Put => Event {
            kind: EventType::Put,
            key: utf8_key(kv.key())?,
            value: Bytes::copy_from_slice(kv.value()),
            prev_value,
            revision: kv.mod_revision(),
            create_revision: kv.create_revision(),
        },
        // etcd's delete event carries only the key and the deletion's revision; the old value
        // and creation revision come from `prev_kv`.
        EtcdEventType::Delete => Event {
            kind: EventType::Delete,
            key: utf8_key(kv.key())?,
            value: prev_value.clone().unwrap_or_default(),
            prev_value,
            revision: kv.mod_revision(),
            create_revision: prev.map_or(0, |p| p.create_revision()),
        },
    })
}

/// The first key of a range over `prefix` (etcd has no empty key: `"\0"` starts everything).
fn range_start(prefix: &str) -> Vec<u8> {
    if prefix.is_empty() {
        vec![0]
    } else {
        prefix.as_bytes().to_vec()
    }
}

/// The end of a range over `prefix` (`"\0"` means "to the last key" in etcd).
fn range_end(prefix: &str) -> Vec<u8> {
    prefix_end(prefix.as_bytes()).unwrap_or_else(|| vec![0])
}

impl EtcdStore {
    /// Connects to the etcd cluster at `endpoints` (e.g. `http://127.0.0.1:2379`) and checks
    /// that it answers.
    pub async fn connect(endpoints: &[String]) -> Result<EtcdStore> {
        let opts = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            // Notice a dead connection (and so a dead watch) within seconds.
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(5))
            .with_keep_alive_while_idle(true)
            // A member cut off from the leader refuses requests instead of serving stale data.
            .with_require_leader(true);
        let client = Client::connect(endpoints, Some(opts))
            .await
            .map_err(map_err)?;
        let store = EtcdStore { client };
        store.current_revision().await?;
        debug!(?endpoints, "connected to etcd");
        Ok(store)
    }

    /// Whether a read at `revision` fails because that history is compacted.
    async fn compacted_at(&self, revision: Revision) -> Result<bool> {
        let opts = GetOptions::new().with_revision(revision).with_count_only();
        match self.client.kv_client().get(vec![0], Some(opts)).await {
            Ok(_) => Ok(false),
            Err(e) if is_compacted(&e) => Ok(true),
            Err(e) if is_future(&e) => Ok(false),
            Err(e) => Err(map_err(e)),
        }
    }

    async fn compacted_error(&self, requested: Revision) -> StoreError {
        match self.compacted_revision().await {
            Ok(compacted) => StoreError::Compacted {
                requested,
                compacted,
            },
            Err(e) => e,
        }
    }

    /// Diagnoses a transaction whose compares failed, from the else branch's reads.
    fn failed_op(ops: &[TxnOp], responses: &[TxnOpResponse]) -> StoreError {
        for (index, (op, resp)) in ops.iter().zip(responses).enumerate() {
            let TxnOpResponse::Get(get) = resp else {
                continue;
            };
            let current = match get.kvs().first().map(to_kv).transpose() {
                Ok(c) => c,
                Err(e) => return e,
            };
            if let Err(source) = check_op(op, current.as_ref()) {
                return StoreError::Txn {
                    index,
                    source: Box::new(source),
                };
            }
        }
        StoreError::Internal("etcd transaction failed, but every operation's check passes".into())
    }
}

#[async_trait]
impl Store for EtcdStore {
    async fn current_revision(&self) -> Result<Revision> {
        let resp = self
            .client
            .kv_client()
            .get(vec![0], Some(GetOptions::new().with_count_only()))
            .await
            .map_err(map_err)?;
        Ok(resp.header().map_or(0, |h| h.revision()))
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let resp = self
            .client
            .kv_client()
            .get(key, None)
            .await
            .map_err(map_err)?;
        resp.kvs().first().map(to_kv).transpose()
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult> {
        let start = match &opts.start_after {
            Some(after) if after.as_str() >= prefix => {
                let mut k = after.as_bytes().to_vec();
                k.push(0);
                k
            }
            _ => range_start(prefix),
        };
        let mut get = GetOptions::new()
            .with_range(range_end(prefix))
            .with_limit(opts.limit as i64);
        if opts.revision > 0 {
            get = get.with_revision(opts.revision);
        }
        let resp = match self.client.kv_client().get(start, Some(get)).await {
            Ok(r) => r,
            Err(e) if is_compacted(&e) => return Err(self.compacted_error(opts.revision).await),
            Err(e) if is_future(&e) => {
                return Err(StoreError::FutureRevision {
                    requested: opts.revision,
                    current: self.current_revision().await?,
                });
            }
            Err(e) => return Err(map_err(e)),
        };
        let items = resp.kvs().iter().map(to_kv).collect::<Result<Vec<_>>>()?;
        let revision = if opts.revision > 0 {
            opts.revision
        } else {
            resp.header().map_or(0, |h| h.revision())
        };
        Ok(ListResult {
            items,
            revision,
            more: resp.more(),
        })
    }

    async fn txn(&self, ops: Vec<TxnOp>) -> Result<TxnResult> {
        check_distinct_keys(&ops)?;
        if ops.is_empty() {
            return Ok(TxnResult {
                revision: self.current_revision().await?,
                results: Vec::new(),
            });
        }
        let mut compares = Vec::new();
        let mut then = Vec::new();
        let mut otherwise = Vec::new();
        for op in &ops {
            let key = op.key();
            match op {
                TxnOp::Create { value, .. } => {
                    compares.push(Compare::create_revision(key, CompareOp::Equal, 0));
                    let put = PutOptions::new().with_prev_key();
                    then.push(EtcdTxnOp::put(key, value.to_vec(), Some(put)));
                }
                TxnOp::Update {
                    value, expected, ..
                } => {
                    compares.extend(guard(key, *expected));
                    let put = PutOptions::new().with_prev_key();
                    then.push(EtcdTxnOp::put(key, value.to_vec(), Some(put)));
                }
                TxnOp::Delete { expected, .. } => {
                    compares.extend(guard(key, *expected));
                    let del = DeleteOptions::new().with_prev_key();
                    then.push(EtcdTxnOp::delete(key, Some(del)));
                }
            }
            otherwise.push(EtcdTxnOp::get(key, None));
        }
        let txn = Txn::new().when(compares).and_then(then).or_else(otherwise);
        let resp = self.client.kv_client().txn(txn).await.map_err(map_err)?;
        let responses = resp.op_responses();
        if !resp.succeeded() {
            return Err(Self::failed_op(&ops, &responses));
        }
        let revision = resp.header().map_or(0, |h| h.revision());
        let mut results = Vec::with_capacity(ops.len());
        for (op, r) in ops.iter().zip(&responses) {
            match (op, r) {
                (
                    TxnOp::Create { key, value } | TxnOp::Update { key, value, .. },
                    TxnOpResponse::Put(p),
                ) => results.push(KeyValue {
                    key: key.clone(),
                    value: value.clone(),
                    create_revision: p.prev_key().map_or(revision, |kv| kv.create_revision()),
                    mod_revision: revision,
                }),
                (TxnOp::Delete { .. }, TxnOpResponse::Delete(d)) => {
                    let old = d.prev_kvs().first().ok_or_else(|| {
                        StoreError::Internal("etcd delete returned no previous value".into())
                    })?;
                    results.push(to_kv(old)?);
                }
                _ => {
                    return Err(StoreError::Internal(
                        "etcd transaction answered with the wrong kind of response".into(),
                    ));
                }
            }
        }
        Ok(TxnResult { revision, results })
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        let after = after.max(0);
        // Refuse at once if the history is gone, as the embedded store does: a read at `after`
        // fails exactly when `after` is below the compaction point.
        if self.compacted_at(after.max(1)).await? {
            return Err(self.compacted_error(after).await);
        }
        let watch = RunningWatch {
            client: self.client.clone(),
            prefix: prefix.to_string(),
            last_revision: after,
            seen_at_last: usize::MAX,
        };
        let stream = watch.open().await?;
        let (tx, rx) = mpsc::channel(WATCH_BUFFER);
        tokio::spawn(watch.run(stream, tx));
        Ok(Box::pin(ReceiverStream::new(rx)))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        match self.client.kv_client().compact(revision, None).await {
            Ok(_) => Ok(()),
            // Already compacted at or past it: nothing to do.
            Err(e) if is_compacted(&e) => Ok(()),
            Err(e) if is_future(&e) => Err(StoreError::FutureRevision {
                requested: revision,
                current: self.current_revision().await?,
            }),
            Err(e) => Err(map_err(e)),
        }
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        // Reads at revisions below the compaction point fail; find the lowest that works.
        if !self.compacted_at(1).await? {
            return Ok(0);
        }
        // Invariant: `lo` is compacted, `hi` is not (the current revision never is).
        let (mut lo, mut hi) = (1, self.current_revision().await?);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.compacted_at(mid).await? {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Ok(hi)
    }
}

/// The compares guarding an update or delete: the key exists and, if given, has `expected`.
fn guard(key: &str, expected: Option<Revision>) -> Vec<Compare> {
    match expected {
        // `mod_revision == e` (e > 0) also implies that the key exists.
        Some(e) if e > 0 => vec![Compare::mod_revision(key, CompareOp::Equal, e)],
        Some(e) => vec![
            Compare::create_revision(key, CompareOp::Greater, 0),
            Compare::mod_revision(key, CompareOp::Equal, e),
        ],
        None => vec![Compare::create_revision(key, CompareOp::Greater, 0)],
    }
}

/// A watch's state, owned by its task: where it stands, to resume after a broken stream.
struct RunningWatch {
    client: Client,
    prefix: String,
    /// The revision of the last event delivered (or the start point)…
    last_revision: Revision,
    /// …and how many of that revision's events were delivered (`MAX`: all of them).
    seen_at_last: usize,
}

impl RunningWatch {
    /// Opens an etcd watch that starts *at* the last revision (not after it): etcd then refuses
    /// it if that revision is compacted, and events already sent are skipped in `run`.
    async fn open(&self) -> Result<etcd_client::WatchStream> {
        let opts = WatchOptions::new()
            .with_range(range_end(&self.prefix))
            .with_start_revision(self.last_revision.max(1))
            .with_prev_key();
        self.client
            .watch_client()
            .watch(range_start(&self.prefix), Some(opts))
            .await
            .map_err(map_err)
    }

    async fn run(mut self, first: etcd_client::WatchStream, out: mpsc::Sender<Result<Event>>) {
        let mut stream = Some(first);
        let mut backoff = Duration::from_millis(50);
        loop {
            let mut current = match stream.take() {
                Some(s) => s,
                None => {
                    // The old stream broke: wait a little, then re-open from where we are.
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = out.closed() => return,
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    match self.open().await {
                        Ok(s) => s,
                        Err(e) => {
                            debug!(prefix = self.prefix, error = %e, "re-opening etcd watch failed");
                            continue;
                        }
                    }
                }
            };
            // Events of the revision currently being received, counted to skip repeats.
            let mut rev_in_stream = 0;
            let mut seen_in_stream = 0;
            loop {
                let msg = tokio::select! {
                    m = current.message() => m,
                    _ = out.closed() => return,
                };
                let resp = match msg {
                    Ok(Some(resp)) => resp,
                    Ok(None) => {
                        warn!(prefix = self.prefix, "etcd watch stream ended; re-watching");
                        break;
                    }
                    Err(e) => {
                        warn!(prefix = self.prefix, error = %e, "etcd watch broke; re-watching");
                        break;
                    }
                };
                if resp.compact_revision() > 0 {
                    let e = StoreError::Compacted {
                        requested: self.last_revision,
                        compacted: resp.compact_revision(),
                    };
                    let _ = out.send(Err(e)).await;
                    return;
                }
                if resp.canceled() {
                    warn!(
                        prefix = self.prefix,
                        reason = resp.cancel_reason(),
                        "etcd cancelled the watch; re-watching"
                    );
                    break;
                }
                backoff = Duration::from_millis(50);
                for ev in resp.events() {
                    let ev = match to_event(ev) {
                        Ok(ev) => ev,
                        Err(e) => {
                            let _ = out.send(Err(e)).await;
                            return;
                        }
                    };
                    if ev.revision != rev_in_stream {
                        rev_in_stream = ev.revision;
                        seen_in_stream = 0;
                    }
                    seen_in_stream += 1;
                    // Skip what an earlier stream already delivered.
                    if ev.revision < self.last_revision
                        || (ev.revision == self.last_revision
                            && seen_in_stream <= self.seen_at_last)
                    {
                        continue;
                    }
                    self.last_revision = ev.revision;
                    self.seen_at_last = seen_in_stream;
                    if out.send(Ok(ev)).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance::{Backend, assert_quiet, b, conformance_tests, next_event};
    use crate::store::etcd_testing::EtcdServer;

    /// A fresh etcd with a store connected to it.
    pub(crate) struct EtcdBackend {
        server: EtcdServer,
        store: EtcdStore,
    }

    impl EtcdBackend {
        pub(crate) async fn start() -> EtcdBackend {
            let server = EtcdServer::start().await;
            let store = EtcdStore::connect(&[server.endpoint()]).await.unwrap();
            EtcdBackend { server, store }
        }
    }

    #[async_trait]
    impl Backend for EtcdBackend {
        fn store(&self) -> &dyn Store {
            &self.store
        }

        async fn restart(&mut self) {
            self.server.restart().await;
            self.store = EtcdStore::connect(&[self.server.endpoint()]).await.unwrap();
        }
    }

    conformance_tests!(EtcdBackend::start().await);

    /// Retries a write while etcd comes back.
    async fn create_retrying(s: &EtcdStore, key: &str) -> KeyValue {
        for _ in 0..100 {
            match s.create(key, b(key)).await {
                Ok(kv) => return kv,
                Err(StoreError::Unavailable(_)) => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(e) => panic!("create {key}: {e}"),
            }
        }
        panic!("etcd did not come back");
    }

    /// etcd-client's watch stream dies with the connection; ours re-watches from the last
    /// delivered revision, so the consumer sees every event exactly once across restarts.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn watch_survives_etcd_restarts() {
        let mut backend = EtcdBackend::start().await;
        let s = backend.store.clone();
        let p = "/registry/rewatch/";
        let base = s.current_revision().await.unwrap();
        let mut w = s.watch(p, base).await.unwrap();
        // A transaction's events share a revision: a re-watch must not repeat or drop them.
        let t = s
            .txn(
                (0..3)
                    .map(|i| TxnOp::Create {
                        key: format!("{p}t{i}"),
                        value: b("t"),
                    })
                    .collect(),
            )
            .await
            .unwrap();
        let mut want = vec![
            (t.revision, format!("{p}t0")),
            (t.revision, format!("{p}t1")),
            (t.revision, format!("{p}t2")),
        ];
        for (rev, key) in &want {
            let e = next_event(&mut w).await;
            assert_eq!((&e.revision, &e.key), (rev, key));
        }
        want.clear();
        for round in 0..2 {
            backend.server.restart().await;
            for i in 0..5 {
                let key = format!("{p}r{round}-{i}");
                want.push((create_retrying(&s, &key).await.mod_revision, key));
            }
        }
        for (rev, key) in &want {
            let e = next_event(&mut w).await;
            assert_eq!((&e.revision, &e.key), (rev, key));
        }
        assert_quiet(&mut w, 300).await;
    }

    /// Without etcd, connecting fails as `Unavailable` rather than hanging.
    #[tokio::test]
    async fn connect_to_a_dead_endpoint_is_unavailable() {
        let mut server = EtcdServer::start().await;
        server.kill();
        match EtcdStore::connect(&[server.endpoint()]).await {
            Err(StoreError::Unavailable(_)) => {}
            Err(e) => panic!("expected Unavailable, got {e}"),
            Ok(_) => panic!("connected to a dead etcd"),
        }
    }
}
