//! The embedded `Store`: one SQLite file holding a revision log, in the style of k3s's kine.
//!
//! # Layout of the file
//! ```sql
//! log(id, rev, key, create_rev, deleted, value)  -- id = rev << 20 | seq, the rowid
//! log_key_rev ON log(key, rev, deleted)          -- each key's history, oldest first
//! meta(name, value)                              -- 'compacted', 'schema'
//! ```
//! Every committed transaction takes the next revision; its operations become log rows with
//! `seq` 0, 1, … in operation order, packed with the revision into the rowid so that rowid
//! order *is* event order. The log is the whole store:
//! * a watch from revision `r` reads `id > r << 20 | MAX_SEQ` in rowid order;
//! * the state at revision `r` (a `get`, or a list at any revision) is, for each key, its
//!   newest row with `rev <= r`, unless that row is a deletion: a seek (`get`) or a scan (list)
//!   of `log_key_rev`;
//! * the current revision is the newest row's revision.
//!
//! Each write appends one row and one index entry and nothing else, so a commit dirties few
//! pages (this matters: the WAL `fsync` per commit grows with the pages written). Values sit
//! in a rowid table, where rows up to nearly a page are stored inline.
//!
//! # Threads
//! rusqlite is synchronous. One dedicated *writer thread* owns the only writable connection and
//! takes requests over a channel. Whatever requests queued up while it was committing the
//! previous batch are applied together in one SQLite transaction (group commit), each one in
//! its own savepoint and at its own revision, so one `fsync` serves many writers. Reads run on
//! a small pool of read-only connections through `spawn_blocking`; in WAL mode they never wait
//! for the writer.
//!
//! # Watch
//! After each commit the writer publishes the new events on a `tokio::sync::broadcast` channel.
//! A watcher first subscribes, then replays the log from its start revision up to the snapshot
//! revision, then follows the broadcast, skipping what the replay already delivered. If it falls
//! so far behind that the broadcast drops messages (`Lagged`), it goes back to the log, so it
//! never loses or reorders an event; if compaction removed the part of the log it still needed,
//! it ends with `Compacted`.
//!
//! # Durability
//! WAL mode with `synchronous = FULL`: a write is acknowledged only after its commit is synced
//! to disk, so it survives `kill -9` (and power loss). A lock file next to the database keeps a
//! second process (or a second `open` in this one) from writing the same file.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tracing::{debug, error, trace, warn};

use super::{
    Event, EventType, KeyValue, ListOptions, ListResult, ProgressWatchStream, Result, Revision,
    Store, StoreError, TxnOp, TxnResult, WatchItem, WatchStream, check_distinct_keys, check_op,
    events_only, prefix_end,
};

/// Tuning knobs; the defaults suit the apiserver, tests shrink them to reach edge cases.
#[derive(Clone, Debug)]
pub struct EmbeddedOptions {
    /// Commit batches the live-watch broadcast keeps; a watcher further behind re-reads the log.
    pub broadcast_capacity: usize,
    /// The most requests folded into one SQLite commit.
    pub max_batch: usize,
    /// Idle read connections kept open.
    pub max_idle_readers: usize,
    /// Events buffered between a watch task and its consumer.
    pub watch_buffer: usize,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            broadcast_capacity: 4096,
            max_batch: 512,
            max_idle_readers: 8,
            watch_buffer: 1024,
        }
    }
}

/// Events a watcher's replay reads from the log per query.
const REPLAY_CHUNK: i64 = 1024;

/// The SQLite-backed store. Cheap to share behind an `Arc`; dropping it stops the writer
/// thread (running watches then end with `Unavailable`).
pub struct EmbeddedStore {
    shared: Arc<Shared>,
    events: broadcast::Sender<Arc<Committed>>,
    writer: Option<Writer>,
}

/// What readers and watch tasks share.
struct Shared {
    path: PathBuf,
    readers: Mutex<Vec<Connection>>,
    max_idle_readers: usize,
    /// The last committed revision, published by the writer after each commit.
    revision: AtomicI64,
    /// The compaction point, published by the writer.
    compacted: AtomicI64,
    /// How often a watcher fell behind the broadcast and re-read the log.
    lagged: AtomicU64,
    watch_buffer: usize,
}

/// One commit batch as seen by watchers: its last revision and all its events in order.
struct Committed {
    revision: Revision,
    events: Vec<Event>,
}

struct Writer {
    requests: mpsc::Sender<Request>,
    thread: JoinHandle<()>,
    /// Dropping it stops the checkpointer.
    stop_checkpoints: std::sync::mpsc::Sender<()>,
    checkpointer: JoinHandle<()>,
}

enum Request {
    Txn {
        ops: Vec<TxnOp>,
        reply: oneshot::Sender<Result<TxnResult>>,
    },
    Compact {
        revision: Revision,
        reply: oneshot::Sender<Result<()>>,
    },
}

/// The format version in `meta`; a file with another one is refused.
const SCHEMA_VERSION: i64 = 2;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS log(
    id         INTEGER PRIMARY KEY,  -- rev << 20 | seq
    rev        INTEGER NOT NULL,
    key        BLOB    NOT NULL,
    create_rev INTEGER NOT NULL,
    deleted    INTEGER NOT NULL,     -- 1: a deletion (value empty)
    value      BLOB    NOT NULL
);
CREATE INDEX IF NOT EXISTS log_key_rev ON log(key, rev, deleted);
CREATE TABLE IF NOT EXISTS meta(
    name  TEXT    NOT NULL PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO meta(name, value) VALUES ('compacted', 0), ('schema', 2);
";

/// Bits of a log row id that hold the operation's index in its transaction.
const SEQ_BITS: u32 = 20;
/// The largest `seq`: a transaction holds at most this many operations.
const MAX_SEQ: i64 = (1 << SEQ_BITS) - 1;

/// The log row id of operation `seq` at `rev`.
fn row_id(rev: Revision, seq: i64) -> i64 {
    (rev << SEQ_BITS) | seq
}

fn sql_err(e: rusqlite::Error) -> StoreError {
    StoreError::Internal(format!("sqlite: {e}"))
}

fn bad_key(e: std::string::FromUtf8Error) -> StoreError {
    StoreError::Internal(format!("stored key is not UTF-8: {e}"))
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store in the SQLite file at `path`.
    pub fn open(path: &Path) -> Result<EmbeddedStore> {
        Self::open_with(path, EmbeddedOptions::default())
    }

    pub fn open_with(path: &Path, options: EmbeddedOptions) -> Result<EmbeddedStore> {
        // Only one writer per file: SQLite would serialise two, but our in-memory revision
        // counter and the watch broadcast assume this process made every write.
        let lock_path = lock_path(path);
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| StoreError::Unavailable(format!("open {}: {e}", lock_path.display())))?;
        lock.try_lock().map_err(|e| {
            StoreError::Unavailable(format!(
                "{} is in use by another store ({e})",
                path.display()
            ))
        })?;

        let conn = Connection::open(path)
            .map_err(|e| StoreError::Unavailable(format!("open {}: {e}", path.display())))?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(sql_err)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(sql_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Internal(format!(
                "could not switch {} to WAL mode (got {mode})",
                path.display()
            )));
        }
        // FULL: the WAL is synced at every commit, so an acknowledged write is on disk.
        // No automatic checkpoints inside commits (a latency spike for whichever writer hits
        // the threshold): the checkpointer thread copies the WAL into the database instead.
        conn.execute_batch(
            "PRAGMA synchronous = FULL; PRAGMA foreign_keys = OFF; PRAGMA wal_autocheckpoint = 0;
             PRAGMA journal_size_limit = 67108864;",
        )
        .map_err(sql_err)?;
        conn.execute_batch(SCHEMA).map_err(sql_err)?;
        let version: i64 = conn
            .query_row("SELECT value FROM meta WHERE name = 'schema'", [], |r| {
                r.get(0)
            })
            .map_err(sql_err)?;
        if version != SCHEMA_VERSION {
            return Err(StoreError::Internal(format!(
                "{} has store format {version}; this build reads format {SCHEMA_VERSION}",
                path.display()
            )));
        }
        let (revision, compacted) = read_state(&conn)?;
        debug!(path = %path.display(), revision, compacted, "opened embedded store");

        let shared = Arc::new(Shared {
            path: path.to_path_buf(),
            readers: Mutex::new(Vec::new()),
            max_idle_readers: options.max_idle_readers,
            revision: AtomicI64::new(revision),
            compacted: AtomicI64::new(compacted),
            lagged: AtomicU64::new(0),
            watch_buffer: options.watch_buffer.max(1),
        });
        let (events, _) = broadcast::channel(options.broadcast_capacity.max(1));
        let (requests, rx) = mpsc::channel(options.max_batch.max(1) * 2);
        let state = WriterState {
            conn,
            _lock: lock,
            shared: shared.clone(),
            events: events.clone(),
            revision,
            compacted,
            max_batch: options.max_batch.max(1),
        };
        let checkpoint_conn = Connection::open(path)
            .map_err(|e| StoreError::Unavailable(format!("open {}: {e}", path.display())))?;
        let (stop_checkpoints, stop_rx) = std::sync::mpsc::channel();
        let checkpointer = std::thread::Builder::new()
            .name("store-checkpoint".into())
            .spawn(move || checkpoint_loop(checkpoint_conn, stop_rx))
            .map_err(|e| StoreError::Internal(format!("spawn checkpoint thread: {e}")))?;
        let thread = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || state.run(rx))
            .map_err(|e| StoreError::Internal(format!("spawn writer thread: {e}")))?;
        Ok(EmbeddedStore {
            shared,
            events,
            writer: Some(Writer {
                requests,
                thread,
                stop_checkpoints,
                checkpointer,
            }),
        })
    }

    async fn send(&self, req: Request) -> Result<()> {
        let writer = self
            .writer
            .as_ref()
            .ok_or_else(|| StoreError::Unavailable("store closed".into()))?;
        writer
            .requests
            .send(req)
            .await
            .map_err(|_| StoreError::Unavailable("store writer stopped".into()))
    }

    /// Runs `f` on a pooled read connection in the blocking pool.
    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        read(&self.shared, f).await
    }
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        if let Some(writer) = self.writer.take() {
            // Closing the channels ends the threads' loops once they have finished their work;
            // joining makes sure the file is closed and unlocked when `drop` returns (so it can
            // be re-opened at once).
            drop(writer.requests);
            if writer.thread.join().is_err() {
                error!("store writer thread panicked");
            }
            drop(writer.stop_checkpoints);
            if writer.checkpointer.join().is_err() {
                error!("store checkpoint thread panicked");
            }
        }
    }
}

/// Every 250 ms, copies committed WAL pages into the database file (PASSIVE: never waits for,
/// nor blocks, the writer or readers), so the WAL stays small without commits paying for it.
fn checkpoint_loop(conn: Connection, stop: std::sync::mpsc::Receiver<()>) {
    use std::sync::mpsc::RecvTimeoutError;
    while let Err(RecvTimeoutError::Timeout) = stop.recv_timeout(Duration::from_millis(250)) {
        let r = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        });
        match r {
            Ok((wal_pages, copied)) => trace!(wal_pages, copied, "checkpoint"),
            Err(e) => warn!(error = %e, "WAL checkpoint failed"),
        }
    }
}

fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-lock");
    PathBuf::from(name)
}

/// The current revision (the newest log row's) and the compaction point.
fn read_state(conn: &Connection) -> Result<(Revision, Revision)> {
    let current = conn
        .prepare_cached("SELECT COALESCE(MAX(id), 0) >> 20 FROM log")
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .map_err(sql_err)?;
    let compacted = conn
        .prepare_cached("SELECT value FROM meta WHERE name = 'compacted'")
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .map_err(sql_err)?;
    Ok((current, compacted))
}

async fn read<T, F>(shared: &Arc<Shared>, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
{
    let shared = shared.clone();
    tokio::task::spawn_blocking(move || {
        let mut conn = shared.take_reader()?;
        let result = f(&mut conn);
        shared.put_reader(conn);
        result
    })
    .await
    .map_err(|e| StoreError::Internal(format!("read task failed: {e}")))?
}

impl Shared {
    fn take_reader(&self) -> Result<Connection> {
        if let Some(conn) = self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop() {
            return Ok(conn);
        }
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| StoreError::Unavailable(format!("open {}: {e}", self.path.display())))?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(sql_err)?;
        Ok(conn)
    }

    fn put_reader(&self, conn: Connection) {
        // A connection left inside a transaction (after an error) is not reused.
        if !conn.is_autocommit() {
            return;
        }
        let mut idle = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < self.max_idle_readers {
            idle.push(conn);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The writer thread
// ---------------------------------------------------------------------------------------------

struct WriterState {
    conn: Connection,
    /// Held (locked) for as long as the writer runs.
    _lock: File,
    shared: Arc<Shared>,
    events: broadcast::Sender<Arc<Committed>>,
    revision: Revision,
    compacted: Revision,
    max_batch: usize,
}

/// A transaction request with its outcome, waiting for the batch's commit.
type Pending = (
    oneshot::Sender<Result<TxnResult>>,
    Result<TxnResult>,
    Vec<Event>,
);

impl WriterState {
    fn run(mut self, mut rx: mpsc::Receiver<Request>) {
        // `blocking_recv` returns None once the store (the only sender) is dropped.
        while let Some(first) = rx.blocking_recv() {
            let mut batch = vec![first];
            while batch.len() < self.max_batch {
                match rx.try_recv() {
                    Ok(req) => batch.push(req),
                    Err(_) => break,
                }
            }
            let mut txns = Vec::new();
            for req in batch {
                match req {
                    Request::Txn { ops, reply } => txns.push((ops, reply)),
                    Request::Compact { revision, reply } => {
                        // Keep request order: commit the transactions that came before it.
                        self.commit_txns(std::mem::take(&mut txns));
                        let _ = reply.send(self.compact(revision));
                    }
                }
            }
            self.commit_txns(txns);
        }
        debug!(path = %self.shared.path.display(), "store writer stopped");
    }

    /// Applies the transactions in one SQLite commit, then publishes and answers them.
    fn commit_txns(&mut self, txns: Vec<(Vec<TxnOp>, oneshot::Sender<Result<TxnResult>>)>) {
        if txns.is_empty() {
            return;
        }
        let mut revision = self.revision;
        let mut pending: Vec<Pending> = Vec::with_capacity(txns.len());
        let outcome = (|| -> rusqlite::Result<()> {
            let mut tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            for (ops, reply) in txns.into_iter() {
                if ops.is_empty() {
                    let r = TxnResult {
                        revision,
                        results: Vec::new(),
                    };
                    pending.push((reply, Ok(r), Vec::new()));
                    continue;
                }
                // Each request gets a savepoint, so a failing one leaves the others intact.
                let sp = tx.savepoint()?;
                match apply(&sp, revision + 1, &ops) {
                    Ok(Ok((results, events))) => {
                        sp.commit()?;
                        revision += 1;
                        let r = TxnResult { revision, results };
                        pending.push((reply, Ok(r), events));
                    }
                    // A failed check: nothing was written; the savepoint rolls back on drop.
                    Ok(Err(e)) => pending.push((reply, Err(e), Vec::new())),
                    Err(e) => {
                        warn!(error = %e, "store transaction failed in SQLite");
                        pending.push((reply, Err(sql_err(e)), Vec::new()));
                    }
                }
            }
            tx.commit()
        })();

        if let Err(e) = outcome {
            // The whole batch rolled back: every request in it failed, none was written.
            error!(error = %e, "store commit failed");
            let msg = format!("commit failed: {e}");
            for (reply, result, _) in pending {
                let _ = reply.send(result.and(Err(StoreError::Unavailable(msg.clone()))));
            }
            return;
        }

        self.revision = revision;
        self.shared.revision.store(revision, Ordering::Release);
        let events: Vec<Event> = pending
            .iter_mut()
            .flat_map(|(_, _, ev)| std::mem::take(ev))
            .collect();
        if !events.is_empty() {
            // Err means no watcher is subscribed right now; they read the log when they come.
            let _ = self.events.send(Arc::new(Committed { revision, events }));
        }
        for (reply, result, _) in pending {
            let _ = reply.send(result);
        }
    }

    fn compact(&mut self, revision: Revision) -> Result<()> {
        if revision <= self.compacted {
            return Ok(());
        }
        if revision > self.revision {
            return Err(StoreError::FutureRevision {
                requested: revision,
                current: self.revision,
            });
        }
        let started = std::time::Instant::now();
        let deleted = (|| -> rusqlite::Result<usize> {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            // A row older than the compaction point is history unless it is still the key's
            // state at that point: the newest row at or below it, and not a deletion.
            let n = tx.execute(
                "DELETE FROM log WHERE id < ?2 AND (deleted = 1 OR EXISTS (
                     SELECT 1 FROM log AS newer
                     WHERE newer.key = log.key AND newer.rev > log.rev AND newer.rev <= ?1))",
                [revision, row_id(revision, 0)],
            )?;
            tx.execute(
                "UPDATE meta SET value = ?1 WHERE name = 'compacted'",
                [revision],
            )?;
            tx.commit()?;
            Ok(n)
        })()
        .map_err(sql_err)?;
        self.compacted = revision;
        self.shared.compacted.store(revision, Ordering::Release);
        debug!(revision, deleted, elapsed = ?started.elapsed(), "compacted store");
        Ok(())
    }
}

/// Checks then applies one transaction at `revision`. The outer `Result` is SQLite failing, the
/// inner one a failed check (nothing written).
#[allow(clippy::type_complexity)]
fn apply(
    conn: &Connection,
    revision: Revision,
    ops: &[TxnOp],
) -> rusqlite::Result<Result<(Vec<KeyValue>, Vec<Event>)>> {
    // Check every operation against the current state before writing anything.
    if let Err(e) = check_distinct_keys(ops) {
        return Ok(Err(e));
    }
    if ops.len() as i64 > MAX_SEQ {
        return Ok(Err(StoreError::Internal(format!(
            "a transaction holds at most {MAX_SEQ} operations"
        ))));
    }
    let mut current: Vec<Option<KeyValue>> = Vec::with_capacity(ops.len());
    for (index, op) in ops.iter().enumerate() {
        let cur = get_kv(conn, op.key())?;
        if let Err(source) = check_op(op, cur.as_ref()) {
            return Ok(Err(StoreError::Txn {
                index,
                source: Box::new(source),
            }));
        }
        current.push(cur);
    }

    let mut insert_log = conn.prepare_cached(
        "INSERT INTO log(id, rev, key, create_rev, deleted, value) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    let mut results = Vec::with_capacity(ops.len());
    let mut events = Vec::with_capacity(ops.len());
    for (seq, (op, cur)) in ops.iter().zip(current).enumerate() {
        let key = op.key();
        let prev_value = cur.as_ref().map(|kv| kv.value.clone());
        match op {
            TxnOp::Create { value, .. } | TxnOp::Update { value, .. } => {
                let create_revision = cur.as_ref().map_or(revision, |kv| kv.create_revision);
                insert_log.execute(params![
                    row_id(revision, seq as i64),
                    revision,
                    key.as_bytes(),
                    create_revision,
                    0,
                    &value[..],
                ])?;
                results.push(KeyValue {
                    key: key.to_string(),
                    value: value.clone(),
                    create_revision,
                    mod_revision: revision,
                });
                events.push(Event {
                    kind: EventType::Put,
                    key: key.to_string(),
                    value: value.clone(),
                    prev_value,
                    revision,
                    create_revision,
                });
            }
            TxnOp::Delete { .. } => {
                let Some(old) = cur else {
                    unreachable!("checked above: deletes only existing keys")
                };
                insert_log.execute(params![
                    row_id(revision, seq as i64),
                    revision,
                    key.as_bytes(),
                    old.create_revision,
                    1,
                    &b""[..],
                ])?;
                events.push(Event {
                    kind: EventType::Delete,
                    key: key.to_string(),
                    value: old.value.clone(),
                    prev_value: Some(old.value.clone()),
                    revision,
                    create_revision: old.create_revision,
                });
                results.push(old);
            }
        }
    }
    Ok(Ok((results, events)))
}

/// The current value of `key`.
fn get_kv(conn: &Connection, key: &str) -> rusqlite::Result<Option<KeyValue>> {
    let row = state_at(conn, key.as_bytes(), Revision::MAX)?;
    Ok(row.map(|(value, create_revision, mod_revision)| KeyValue {
        key: key.to_string(),
        value: Bytes::from(value),
        create_revision,
        mod_revision,
    }))
}

/// A key's value, create and mod revision as of `revision` (None: absent then): its newest
/// log row at or below `revision`, unless that is a deletion.
fn state_at(
    conn: &Connection,
    key: &[u8],
    revision: Revision,
) -> rusqlite::Result<Option<(Vec<u8>, Revision, Revision)>> {
    let newest = conn
        .prepare_cached(
            "SELECT value, create_rev, rev, deleted FROM log
             WHERE key = ?1 AND rev <= ?2 ORDER BY rev DESC LIMIT 1",
        )?
        .query_row(params![key, revision], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get::<_, bool>(3)?))
        })
        .optional()?;
    Ok(match newest {
        Some((value, create_rev, rev, false)) => Some((value, create_rev, rev)),
        _ => None,
    })
}

// ---------------------------------------------------------------------------------------------
// Reads
// ---------------------------------------------------------------------------------------------

/// The SQL condition selecting keys in `[lower, upper)` (`lower` exclusive when paging), with
/// its parameters appended to `args`.
fn key_range(
    column: &str,
    prefix: &str,
    start_after: Option<&str>,
    args: &mut Vec<rusqlite::types::Value>,
) -> String {
    use rusqlite::types::Value;
    let mut cond = match start_after {
        Some(after) if after.as_bytes() >= prefix.as_bytes() => {
            args.push(Value::Blob(after.as_bytes().to_vec()));
            format!("{column} > ?{}", args.len())
        }
        _ => {
            args.push(Value::Blob(prefix.as_bytes().to_vec()));
            format!("{column} >= ?{}", args.len())
        }
    };
    if let Some(end) = prefix_end(prefix.as_bytes()) {
        args.push(Value::Blob(end));
        cond.push_str(&format!(" AND {column} < ?{}", args.len()));
    }
    cond
}

/// A listed key: key, value, create revision, mod revision.
type Row = (Vec<u8>, Vec<u8>, Revision, Revision);

/// Up to `limit` (0: all) keys as they were at `revision`, and whether more follow.
///
/// Scans the `(key, rev, deleted)` index in key order — no table access — keeping per key its
/// newest entry at or below `revision`; a key whose entry is not a deletion is listed, its row
/// then fetched by id. The scan covers the history since the last compaction, which compaction
/// keeps short.
fn list_at(
    conn: &Connection,
    prefix: &str,
    start_after: Option<&str>,
    limit: usize,
    revision: Revision,
) -> rusqlite::Result<(Vec<Row>, bool)> {
    use rusqlite::types::Value;
    let mut args = Vec::new();
    let range = key_range("key", prefix, start_after, &mut args);
    args.push(Value::Integer(revision));
    let sql = format!(
        "SELECT key, deleted, id FROM log INDEXED BY log_key_rev
         WHERE {range} AND rev <= ?{} ORDER BY key, rev",
        args.len()
    );
    let mut scan = conn.prepare_cached(&sql)?;
    let mut fetch =
        conn.prepare_cached("SELECT key, value, create_rev, rev FROM log WHERE id = ?1")?;
    let mut entries = scan.query(rusqlite::params_from_iter(args))?;
    let mut rows = Vec::new();
    // The newest entry so far of the key being scanned: (key, deleted, id).
    let mut newest: Option<(Vec<u8>, bool, i64)> = None;
    loop {
        let entry = entries.next()?;
        let next = match entry {
            Some(e) => Some((
                e.get::<_, Vec<u8>>(0)?,
                e.get::<_, bool>(1)?,
                e.get::<_, i64>(2)?,
            )),
            None => None,
        };
        // A new key (or the end) settles the previous one.
        let settled = match (&newest, &next) {
            (Some((k, _, _)), Some((n, _, _))) if k == n => None,
            _ => newest.take(),
        };
        if let Some((_, false, id)) = settled {
            if limit != 0 && rows.len() == limit {
                return Ok((rows, true));
            }
            rows.push(fetch.query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?);
        }
        match next {
            Some(n) => newest = Some(n),
            None => return Ok((rows, false)),
        }
    }
}

fn list_in(conn: &mut Connection, prefix: &str, opts: &ListOptions) -> Result<ListResult> {
    // One read transaction: the revision and the rows come from the same snapshot.
    let tx = conn.transaction().map_err(sql_err)?;
    let (current, compacted) = read_state(&tx)?;
    let revision = if opts.revision <= 0 {
        current
    } else {
        opts.revision
    };
    if revision > current {
        return Err(StoreError::FutureRevision {
            requested: revision,
            current,
        });
    }
    if revision < compacted {
        return Err(StoreError::Compacted {
            requested: revision,
            compacted,
        });
    }
    let (rows, more) = list_at(
        &tx,
        prefix,
        opts.start_after.as_deref(),
        opts.limit,
        revision,
    )
    .map_err(sql_err)?;
    let items = rows
        .into_iter()
        .map(|(key, value, create_revision, mod_revision)| {
            Ok(KeyValue {
                key: String::from_utf8(key).map_err(bad_key)?,
                value: Bytes::from(value),
                create_revision,
                mod_revision,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(ListResult {
        items,
        revision,
        more,
    })
}

/// One replay query: up to `REPLAY_CHUNK` events under `prefix` after log row `cursor` and at
/// most at revision `until` (None: the snapshot's current revision, returned as the bound),
/// each with its row id.
///
/// `cursor` is a row id: `row_id(r, MAX_SEQ)` means "all of revision `r` delivered", any other
/// value "up to that operation of its revision". Fails with `Compacted` if compaction removed
/// rows the watcher has not seen yet.
fn replay_chunk(
    conn: &mut Connection,
    prefix: &str,
    cursor: i64,
    until: Option<Revision>,
) -> Result<(Vec<(i64, Event)>, Revision)> {
    use rusqlite::types::Value;
    let tx = conn.transaction().map_err(sql_err)?;
    let (current, compacted) = read_state(&tx)?;
    // The newest revision whose events have all been delivered.
    let done = if cursor & MAX_SEQ == MAX_SEQ {
        cursor >> SEQ_BITS
    } else {
        (cursor >> SEQ_BITS) - 1
    };
    if compacted > done {
        return Err(StoreError::Compacted {
            requested: done,
            compacted,
        });
    }
    let until = until.unwrap_or(current);
    let mut args = vec![
        Value::Integer(cursor),
        Value::Integer(row_id(until, MAX_SEQ)),
    ];
    let range = key_range("l.key", prefix, None, &mut args);
    // The previous value is the key's row before this one, unless that was a deletion. It is
    // never compacted away while this row can still be replayed: compaction keeps each key's
    // newest row at or below the compaction point, and replays only go past that point.
    let sql = format!(
        "SELECT l.id, l.rev, l.key, l.create_rev, l.deleted, l.value,
                (SELECT CASE WHEN p.deleted THEN NULL ELSE p.value END FROM log AS p
                 WHERE p.key = l.key AND p.rev < l.rev ORDER BY p.rev DESC LIMIT 1)
         FROM log AS l
         WHERE l.id > ?1 AND l.id <= ?2 AND {range}
         ORDER BY l.id LIMIT {REPLAY_CHUNK}"
    );
    let mut stmt = tx.prepare_cached(&sql).map_err(sql_err)?;
    let rows = stmt
        .query_map(rusqlite::params_from_iter(args), |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, Vec<u8>>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, bool>(4)?,
                r.get::<_, Vec<u8>>(5)?,
                r.get::<_, Option<Vec<u8>>>(6)?,
            ))
        })
        .map_err(sql_err)?;
    let mut events = Vec::new();
    for row in rows {
        let (id, rev, key, create_revision, deleted, value, prev_value) = row.map_err(sql_err)?;
        let prev_value = prev_value.map(Bytes::from);
        let (kind, value) = if deleted {
            (EventType::Delete, prev_value.clone().unwrap_or_default())
        } else {
            (EventType::Put, Bytes::from(value))
        };
        events.push((
            id,
            Event {
                kind,
                key: String::from_utf8(key).map_err(bad_key)?,
                value,
                prev_value,
                revision: rev,
                create_revision,
            },
        ));
    }
    Ok((events, until))
}

/// The body of a watch: replay the log, then follow the broadcast; back to the log on lag.
async fn run_watch(
    shared: Arc<Shared>,
    prefix: String,
    after: Revision,
    mut live: broadcast::Receiver<Arc<Committed>>,
    out: mpsc::Sender<Result<WatchItem>>,
    progress: bool,
) {
    // Every event up to `delivered` has been sent (or was not under the prefix).
    let mut delivered = after;
    loop {
        // Replay from the log up to the revision of the first query's snapshot.
        let mut cursor = row_id(delivered, MAX_SEQ);
        let mut until = None;
        loop {
            let p = prefix.clone();
            let chunk = read(&shared, move |conn| replay_chunk(conn, &p, cursor, until)).await;
            let (events, bound) = match chunk {
                Ok(c) => c,
                Err(e) => {
                    let _ = out.send(Err(e)).await;
                    return;
                }
            };
            until = Some(bound);
            // A full chunk may have stopped mid-way: continue after its last row. A short one
            // reached the snapshot's end.
            let full = events.len() as i64 == REPLAY_CHUNK;
            for (id, ev) in events {
                cursor = id;
                if out.send(Ok(WatchItem::Event(ev))).await.is_err() {
                    return;
                }
            }
            if !full {
                // (A watch from a future revision keeps its start: nothing up to it is wanted.)
                delivered = delivered.max(bound);
                if progress && out.send(Ok(WatchItem::Progress(delivered))).await.is_err() {
                    return;
                }
                break;
            }
        }

        // Follow live commits, skipping what the replay already covered.
        loop {
            let msg = tokio::select! {
                m = live.recv() => m,
                _ = out.closed() => return,
            };
            match msg {
                Ok(batch) => {
                    if batch.revision <= delivered {
                        continue;
                    }
                    for ev in batch.events.iter() {
                        if ev.revision > delivered
                            && ev.key.starts_with(&prefix)
                            && out.send(Ok(WatchItem::Event(ev.clone()))).await.is_err()
                        {
                            return;
                        }
                    }
                    delivered = batch.revision;
                    // Every batch is reported, also one with nothing under the prefix.
                    if progress && out.send(Ok(WatchItem::Progress(delivered))).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    shared.lagged.fetch_add(1, Ordering::Relaxed);
                    debug!(
                        prefix,
                        skipped = n,
                        delivered,
                        "watch lagged; replaying the log"
                    );
                    break;
                }
                Err(broadcast::error::RecvError::Closed) => {
                    let _ = out
                        .send(Err(StoreError::Unavailable("store closed".into())))
                        .await;
                    return;
                }
            }
        }
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.shared.revision.load(Ordering::Acquire))
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let key = key.to_string();
        self.read(move |conn| get_kv(conn, &key).map_err(sql_err))
            .await
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult> {
        let prefix = prefix.to_string();
        self.read(move |conn| list_in(conn, &prefix, &opts)).await
    }

    async fn txn(&self, ops: Vec<TxnOp>) -> Result<TxnResult> {
        let (reply, rx) = oneshot::channel();
        self.send(Request::Txn { ops, reply }).await?;
        rx.await
            .map_err(|_| StoreError::Unavailable("store writer stopped".into()))?
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        Ok(events_only(self.watch_items(prefix, after, false).await?))
    }

    async fn watch_with_progress(
        &self,
        prefix: &str,
        after: Revision,
    ) -> Result<Option<ProgressWatchStream>> {
        Ok(Some(self.watch_items(prefix, after, true).await?))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let (reply, rx) = oneshot::channel();
        self.send(Request::Compact { revision, reply }).await?;
        rx.await
            .map_err(|_| StoreError::Unavailable("store writer stopped".into()))?
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        Ok(self.shared.compacted.load(Ordering::Acquire))
    }
}

impl EmbeddedStore {
    /// A watch task from `after`, with progress reports if `progress`.
    async fn watch_items(
        &self,
        prefix: &str,
        after: Revision,
        progress: bool,
    ) -> Result<ProgressWatchStream> {
        let after = after.max(0);
        // Subscribe before replaying, so no commit falls between the replay and the tail.
        let live = self.events.subscribe();
        let compacted = self.shared.compacted.load(Ordering::Acquire);
        if after < compacted {
            return Err(StoreError::Compacted {
                requested: after,
                compacted,
            });
        }
        let (tx, rx) = mpsc::channel(self.shared.watch_buffer);
        tokio::spawn(run_watch(
            self.shared.clone(),
            prefix.to_string(),
            after,
            live,
            tx,
            progress,
        ));
        Ok(Box::pin(ReceiverStream::new(rx)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance::{Backend, conformance_tests};
    use futures::StreamExt;

    /// A store in a fresh temporary directory, re-openable on the same file.
    pub(crate) struct EmbeddedBackend {
        dir: tempfile::TempDir,
        store: Option<EmbeddedStore>,
    }

    impl EmbeddedBackend {
        pub(crate) fn new() -> EmbeddedBackend {
            let dir = tempfile::tempdir().unwrap();
            let store = EmbeddedStore::open(&dir.path().join("store.db")).unwrap();
            EmbeddedBackend {
                dir,
                store: Some(store),
            }
        }
    }

    #[async_trait]
    impl Backend for EmbeddedBackend {
        fn store(&self) -> &dyn Store {
            self.store.as_ref().unwrap()
        }

        async fn restart(&mut self) {
            drop(self.store.take());
            self.store = Some(EmbeddedStore::open(&self.dir.path().join("store.db")).unwrap());
        }
    }

    conformance_tests!(EmbeddedBackend::new());

    use crate::store::conformance::{assert_quiet, b, next_event};
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};

    fn small_buffers() -> EmbeddedOptions {
        EmbeddedOptions {
            broadcast_capacity: 2,
            watch_buffer: 1,
            ..Default::default()
        }
    }

    /// A watcher that stops reading overflows the broadcast, then catches up from the log.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lagging_watcher_catches_up_from_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let s = EmbeddedStore::open_with(&dir.path().join("db"), small_buffers()).unwrap();
        let mut w = s.watch("/registry/lag/", 0).await.unwrap();
        let mut want = Vec::new();
        for i in 0..300 {
            let key = format!("/registry/lag/{i:03}");
            want.push((s.create(&key, b("v")).await.unwrap().mod_revision, key));
            if i % 7 == 0 {
                s.create(&format!("/registry/other/{i}"), b("v"))
                    .await
                    .unwrap();
            }
        }
        // Some from a concurrent burst, so batches hold several revisions.
        let burst = futures::future::join_all((0..50).map(|i| {
            let s = &s;
            async move {
                let key = format!("/registry/lag/z{i:02}");
                (s.create(&key, b("v")).await.unwrap().mod_revision, key)
            }
        }))
        .await;
        want.extend(burst);
        want.sort();
        for (rev, key) in &want {
            let e = next_event(&mut w).await;
            assert_eq!((&e.revision, &e.key), (rev, key));
        }
        assert_quiet(&mut w, 100).await;
        assert!(s.shared.lagged.load(Ordering::Relaxed) > 0, "never lagged");
    }

    /// A watcher whose unread history is compacted away ends with `Compacted`, not a gap.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lagging_watcher_past_compaction_ends_with_compacted() {
        let dir = tempfile::tempdir().unwrap();
        let s = EmbeddedStore::open_with(&dir.path().join("db"), small_buffers()).unwrap();
        let mut w = s.watch("/registry/c/", 0).await.unwrap();
        for i in 0..50 {
            s.create(&format!("/registry/c/{i:02}"), b("v"))
                .await
                .unwrap();
        }
        s.compact(40).await.unwrap();
        let mut last = 0;
        loop {
            match tokio::time::timeout(std::time::Duration::from_secs(10), w.next())
                .await
                .unwrap()
            {
                Some(Ok(e)) => {
                    assert_eq!(e.revision, last + 1, "a gap in the events");
                    last = e.revision;
                }
                Some(Err(StoreError::Compacted { compacted, .. })) => {
                    assert_eq!(compacted, 40);
                    break;
                }
                other => panic!("expected events then Compacted, got {other:?}"),
            }
        }
        assert!(last < 40, "delivered {last} events, then Compacted");
        assert!(w.next().await.is_none());
    }

    /// The next item of a progress watch (within a generous bound).
    async fn next_item(w: &mut ProgressWatchStream) -> WatchItem {
        tokio::time::timeout(std::time::Duration::from_secs(10), w.next())
            .await
            .expect("no watch item in time")
            .expect("watch ended")
            .expect("watch failed")
    }

    /// A progress watch reports each commit, also those under other prefixes, after the
    /// events it carries under its own; a plain watch on the same store sees no reports.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn progress_reports_follow_every_commit() {
        let dir = tempfile::tempdir().unwrap();
        let s = EmbeddedStore::open(&dir.path().join("db")).unwrap();
        s.create("/registry/a/old", b("v")).await.unwrap();
        let mut w = s
            .watch_with_progress("/registry/a/", 0)
            .await
            .unwrap()
            .unwrap();
        let mut plain = s.watch("/registry/a/", 0).await.unwrap();
        // The replay, then the revision it reached.
        assert!(matches!(next_item(&mut w).await, WatchItem::Event(e) if e.revision == 1));
        assert_eq!(next_item(&mut w).await, WatchItem::Progress(1));
        // A write elsewhere: a report only.
        s.create("/registry/b/x", b("v")).await.unwrap();
        assert_eq!(next_item(&mut w).await, WatchItem::Progress(2));
        // A transaction over both prefixes: its events under the prefix, then the report.
        let ops = vec![
            TxnOp::Create {
                key: "/registry/a/1".into(),
                value: b("v"),
            },
            TxnOp::Create {
                key: "/registry/b/y".into(),
                value: b("v"),
            },
            TxnOp::Create {
                key: "/registry/a/2".into(),
                value: b("v"),
            },
        ];
        assert_eq!(s.txn(ops).await.unwrap().revision, 3);
        for key in ["/registry/a/1", "/registry/a/2"] {
            match next_item(&mut w).await {
                WatchItem::Event(e) => assert_eq!((e.revision, e.key.as_str()), (3, key)),
                other => panic!("expected the event of {key}, got {other:?}"),
            }
        }
        assert_eq!(next_item(&mut w).await, WatchItem::Progress(3));
        // The plain watch: the three events, nothing else.
        for rev in [1, 3, 3] {
            assert_eq!(next_event(&mut plain).await.revision, rev);
        }
        assert_quiet(&mut plain, 100).await;
    }

    /// One writer per file: a second open fails until the first store is dropped.
    #[tokio::test]
    async fn second_open_of_the_same_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let s = EmbeddedStore::open(&path).unwrap();
        s.create("/k", b("v")).await.unwrap();
        match EmbeddedStore::open(&path) {
            Err(StoreError::Unavailable(msg)) => assert!(msg.contains("in use"), "{msg}"),
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("a second open of the same file succeeded"),
        }
        drop(s);
        let s = EmbeddedStore::open(&path).unwrap();
        assert_eq!(s.current_revision().await.unwrap(), 1);
    }

    /// Set in the child process of `acknowledged_writes_survive_kill_9` to make it the writer.
    const CRASH_WRITER_ENV: &str = "SWARM_STORE_CRASH_WRITER";

    /// A child process writes two-key transactions from 8 tasks and prints each acknowledged
    /// one; we `kill -9` it mid-stream, re-open the file and look for every acknowledged write.
    #[test]
    fn acknowledged_writes_survive_kill_9() {
        if let Some(path) = std::env::var_os(CRASH_WRITER_ENV) {
            crash_writer(Path::new(&path));
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "store::embedded::tests::acknowledged_writes_survive_kill_9",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CRASH_WRITER_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut acked: Vec<(Revision, String, String)> = Vec::new();
        let mut killed = false;
        // Lines keep coming until the pipe closes: those printed before the kill still count.
        for line in stdout.lines() {
            let line = line.unwrap();
            let Some(rest) = line.strip_prefix("ack ") else {
                continue;
            };
            let mut parts = rest.split(' ');
            let rev = parts.next().unwrap().parse().unwrap();
            let a = parts.next().unwrap().to_string();
            let b = parts.next().unwrap().to_string();
            acked.push((rev, a, b));
            if acked.len() == 400 && !killed {
                child.kill().unwrap(); // SIGKILL
                killed = true;
            }
        }
        let status = child.wait().unwrap();
        assert!(killed, "the writer stopped on its own: {status:?}");
        assert!(acked.len() >= 400);

        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let s = EmbeddedStore::open(&path).unwrap();
            let current = s.current_revision().await.unwrap();
            for (rev, a, b) in &acked {
                for key in [a, b] {
                    let kv = s.get(key).await.unwrap();
                    let kv = kv.unwrap_or_else(|| panic!("acknowledged {key}@{rev} was lost"));
                    assert_eq!(kv.mod_revision, *rev);
                }
            }
            let max = acked.iter().map(|(r, _, _)| *r).max().unwrap();
            assert!(current >= max, "revision went back: {current} < {max}");
            // Every surviving transaction is whole: two keys per revision, revisions dense.
            let all = s.list("/crash/", ListOptions::default()).await.unwrap();
            assert_eq!(all.items.len() as i64, current * 2);
            let mut revs: Vec<_> = all.items.iter().map(|kv| kv.mod_revision).collect();
            revs.sort();
            revs.dedup();
            assert_eq!(revs, (1..=current).collect::<Vec<_>>());
            let next = s.create("/after-crash", b("v")).await.unwrap();
            assert_eq!(next.mod_revision, current + 1);
        });
    }

    /// The child's side: write forever, printing each acknowledgement.
    fn crash_writer(path: &Path) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let s = Arc::new(EmbeddedStore::open(path).unwrap());
            let tasks: Vec<_> = (0..8)
                .map(|t| {
                    let s = s.clone();
                    tokio::spawn(async move {
                        for i in 0.. {
                            let (a, b) = (format!("/crash/{t}-{i}-a"), format!("/crash/{t}-{i}-b"));
                            let ops = vec![
                                TxnOp::Create {
                                    key: a.clone(),
                                    value: Bytes::from(vec![7u8; 512]),
                                },
                                TxnOp::Create {
                                    key: b.clone(),
                                    value: Bytes::from(vec![8u8; 512]),
                                },
                            ];
                            let r = s.txn(ops).await.unwrap();
                            let mut out = std::io::stdout().lock();
                            writeln!(out, "ack {} {a} {b}", r.revision).unwrap();
                            out.flush().unwrap();
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
        });
    }
}
