//! The embedded SQLite adapter.
//!
//! Layout:
//! - this file — opening the database, the writer thread (group commit), the reader pool and the
//!   routed watermark.
//! - `users`, `circles`, `subscriptions`, `activities`, `inbox`, `feeds` — domain operations.
//! - `router` — fans new activities out to inboxes, in log order, after they commit.
//! - `verify` — re-checks every digest and every stream chain.
//! - `hot_load` — builds the in-memory [`crate::hot`] index from the tables at start-up.
//!
//! Concurrency model: every write runs on one thread that owns the only writable connection.
//! Jobs that arrive together share one transaction and one fsync (each inside its own
//! savepoint, so one refusal does not undo its neighbours); a job's caller hears back only once
//! the commit that holds it is durable. Each job also records the [`Effect`]s its changes have on
//! the in-memory index; they are applied only once the commit succeeded. Reads run on a bounded
//! pool of WAL readers.

mod activities;
mod circles;
pub mod compat;
mod feeds;
mod hot_load;
mod inbox;
mod offline;
mod router;
mod subscriptions;
mod users;
mod verify;

pub use activities::{PublishInput, Published};
pub use circles::{MembershipChange, NewCircle};
pub use feeds::FollowEntry;
pub use offline::AdminConnection;
pub use verify::VerifyReport;

use crate::hot::{Effect, HotIndex};
use crate::model::{RoutedNotice, User};
use crate::{StoreError, StoreResult};
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, RwLock};
use tidings_core::routing::Via;
use tokio::sync::{Semaphore, broadcast, oneshot, watch};

/// Sent back to a job's caller once its transaction's fate is known.
type Reply = Box<dyn FnOnce(StoreResult<()>) + Send>;
/// A unit of work for the writer: runs inside a savepoint, records its effects on the hot
/// index, says whether it succeeded.
type Job = Box<dyn FnOnce(&Connection, &mut Effects) -> (bool, Reply) + Send>;

/// What a job records besides its SQL: effects on the hot index, and the stream heads it
/// advanced (so later jobs of the same batch chain onto them). Both are kept only if the job
/// and then the batch's commit succeed.
#[derive(Debug, Default)]
pub(crate) struct Effects {
    list: Vec<Effect>,
    heads: Vec<(String, StreamHead)>,
}

impl Effects {
    /// Records an effect on the hot index.
    pub(crate) fn push(&mut self, effect: Effect) {
        self.list.push(effect);
    }

    /// Records a stream's new head.
    pub(crate) fn advance(&mut self, stream: String, head: StreamHead) {
        self.heads.push((stream, head));
    }

    /// The head this job itself already advanced the stream to, if any.
    pub(crate) fn own_head(&self, stream: &str) -> Option<&StreamHead> {
        self.heads
            .iter()
            .rev()
            .find(|(s, _)| s == stream)
            .map(|(_, h)| h)
    }
}

/// The last link of a stream: its position and chain hash.
#[derive(Debug, Clone)]
pub(crate) struct StreamHead {
    /// Position of the last link (1-based).
    pub pos: i64,
    /// Chain hash of the last link.
    pub chain: String,
}

/// Stream heads, held by the writer so an append never has to look the head up in a B-tree.
#[derive(Debug, Default)]
pub(crate) struct Heads {
    committed: std::collections::HashMap<String, StreamHead>,
    /// Heads advanced by jobs of the batch being committed.
    batch: std::collections::HashMap<String, StreamHead>,
}

impl Heads {
    /// The current head of a stream as the running job must see it.
    pub(crate) fn get(&self, stream: &str) -> Option<&StreamHead> {
        self.batch
            .get(stream)
            .or_else(|| self.committed.get(stream))
    }
}

fn load_heads(conn: &Connection) -> StoreResult<Heads> {
    let mut heads = Heads::default();
    let mut stmt = conn.prepare("SELECT stream, pos, chain FROM stream_links ORDER BY seq")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        heads.committed.insert(
            r.get(0)?,
            StreamHead {
                pos: r.get(1)?,
                chain: r.get(2)?,
            },
        );
    }
    Ok(heads)
}

/// Moves schema version 1 (stream tables keyed by stream first) to version 2 (keyed by seq
/// first, so publishes append), then to version 3 (follows and feeds). Copies rows as they
/// are: digests and chains do not change.
fn migrate(conn: &Connection) -> StoreResult<()> {
    let version: String = conn.query_row(
        "SELECT value FROM meta WHERE key = 'schema_version'",
        [],
        |r| r.get(0),
    )?;
    if version == "1" {
        tracing::info!("migrating the store to schema version 2");
        conn.execute_batch(
            "BEGIN IMMEDIATE;
             CREATE TABLE stream_links_v2 (
                 seq INTEGER NOT NULL REFERENCES activities(seq), stream TEXT NOT NULL,
                 pos INTEGER NOT NULL, chain TEXT NOT NULL, PRIMARY KEY (seq, stream)
             ) WITHOUT ROWID;
             INSERT INTO stream_links_v2(seq, stream, pos, chain)
                 SELECT seq, stream, pos, chain FROM stream_links;
             DROP TABLE stream_links;
             ALTER TABLE stream_links_v2 RENAME TO stream_links;
             CREATE TABLE activity_circles_v2 (
                 seq INTEGER NOT NULL, circle_id INTEGER NOT NULL, PRIMARY KEY (seq, circle_id)
             ) WITHOUT ROWID;
             INSERT INTO activity_circles_v2(seq, circle_id) SELECT seq, circle_id FROM activity_circles;
             DROP TABLE activity_circles;
             ALTER TABLE activity_circles_v2 RENAME TO activity_circles;
             UPDATE meta SET value = '2' WHERE key = 'schema_version';
             COMMIT;",
        )?;
        // The guards went with the old table; recreate them.
        conn.execute_batch(include_str!("schema.sql"))?;
    }
    let version: String = conn.query_row(
        "SELECT value FROM meta WHERE key = 'schema_version'",
        [],
        |r| r.get(0),
    )?;
    if version == "2" {
        // Version 3 adds follows and feeds. Activities already addressed to `followers` get
        // their log index; notifications are raised for activities routed from now on.
        tracing::info!("migrating the store to schema version 3");
        conn.execute_batch(
            "BEGIN IMMEDIATE;
             INSERT OR IGNORE INTO activity_followers(seq)
                 SELECT seq FROM activities
                 WHERE EXISTS(SELECT 1 FROM json_each(body, '$.to') WHERE value = 'followers');
             UPDATE meta SET value = '3' WHERE key = 'schema_version';
             COMMIT;",
        )?;
    }
    let version: String = conn.query_row(
        "SELECT value FROM meta WHERE key = 'schema_version'",
        [],
        |r| r.get(0),
    )?;
    if version == "3" {
        // Version 4 stores an entry's `via` as an integer instead of its text (the text was
        // most of a row). A store created as version 4 already has the integer column.
        let via_type: String = conn.query_row(
            "SELECT type FROM pragma_table_info('inbox_entries') WHERE name = 'via'",
            [],
            |r| r.get(0),
        )?;
        if via_type.eq_ignore_ascii_case("TEXT") {
            tracing::info!("migrating the store to schema version 4 (compact inbox entries)");
            conn.execute_batch(
                "BEGIN IMMEDIATE;
                 CREATE TABLE inbox_entries_v4 (
                     user_id INTEGER NOT NULL, seq INTEGER NOT NULL, via INTEGER NOT NULL,
                     PRIMARY KEY (user_id, seq)
                 ) WITHOUT ROWID;
                 INSERT INTO inbox_entries_v4(user_id, seq, via)
                     SELECT e.user_id, e.seq,
                            CASE
                                WHEN e.via LIKE 'subscription:%' THEN
                                    CAST(substr(e.via, 14, instr(substr(e.via, 14), ':') - 1) AS INTEGER)
                                WHEN e.via LIKE 'follow:%' THEN
                                    -(SELECT u.id FROM users u WHERE u.username = substr(e.via, 8))
                                ELSE 0
                            END
                     FROM inbox_entries e
                     WHERE e.via NOT LIKE 'follow:%'
                        OR EXISTS(SELECT 1 FROM users u WHERE u.username = substr(e.via, 8));
                 DROP TABLE inbox_entries;
                 ALTER TABLE inbox_entries_v4 RENAME TO inbox_entries;
                 UPDATE meta SET value = '4' WHERE key = 'schema_version';
                 COMMIT;",
            )?;
        } else {
            conn.execute(
                "UPDATE meta SET value = '4' WHERE key = 'schema_version'",
                [],
            )?;
        }
    }
    Ok(())
}

/// How an entry's `via` is stored: 0 for addressed, a subscription's id, or minus the author's
/// user id for a follow (`author_id` is the activity's author). None for the author's own copy,
/// which is never written.
pub(crate) fn via_code(via: &Via, author_id: i64) -> Option<i64> {
    match via {
        Via::Author => None,
        Via::Addressed => Some(0),
        Via::Subscription { id, .. } => Some(*id),
        Via::Follow { .. } => Some(follow_via_code(author_id)),
    }
}

/// The stored `via` of entries written because their reader follows `author_id`.
pub(crate) fn follow_via_code(author_id: i64) -> i64 {
    -author_id
}

/// Bytes of stored activity bodies kept in memory for hydration.
const BODY_CACHE_BYTES: u64 = 512 * 1024 * 1024;

/// Most jobs committed together in one transaction.
const MAX_BATCH: usize = 512;

/// Routing notices kept for a slow push layer before it is told it lagged.
const NOTICE_BACKLOG: usize = 4096;

/// Tunables of the embedded store.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Circles with more subscribers than this are merged into inboxes at read time.
    pub merge_threshold: i64,
    /// Producers with more followers than this are merged into followers' feeds at read time.
    pub follower_merge_threshold: i64,
    /// How many of a producer's recent activities a new follower gets copied in.
    pub follow_copy_limit: usize,
    /// Connections in the reader pool.
    pub readers: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            merge_threshold: 64,
            follower_merge_threshold: 1000,
            follow_copy_limit: 100,
            readers: 8,
        }
    }
}

pub(crate) struct Shared {
    path: PathBuf,
    /// The WAL file beside the database, whose size decides when the writer finishes a checkpoint.
    wal_path: PathBuf,
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    /// Idle reader connections.
    readers: Mutex<Vec<Connection>>,
    /// Bounds open reader connections (each holds its own page cache).
    reader_permits: Arc<Semaphore>,
    routed: watch::Sender<i64>,
    /// One notice per routing slice, for the push layer.
    notices: broadcast::Sender<Arc<RoutedNotice>>,
    /// Users whose feed counts changed outside routing's inbox entries (notifications raised
    /// or withdrawn, markers moved, items hidden), for the push layer's live counts.
    count_changes: broadcast::Sender<Arc<Vec<i64>>>,
    /// Session generation: bumped whenever sessions were revoked or users changed status, so a
    /// session read that raced one is not cached and live connections re-check credentials.
    pub(crate) session_changes: watch::Sender<u64>,
    config: StoreConfig,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    checkpointer: Mutex<Option<std::thread::JoinHandle<()>>>,
    stopping: std::sync::atomic::AtomicBool,
    /// The in-memory index inbox reads are served from.
    pub(crate) hot: RwLock<HotIndex>,
    /// Stream heads; only the writer thread touches them.
    pub(crate) heads: Mutex<Heads>,
    /// Exclusive lock on `tidings.lock`: one process owns the writer, the heads and the index.
    lock: Mutex<Option<std::fs::File>>,
    /// Stored activity bodies by seq: immutable, so never stale.
    pub(crate) bodies: moka::sync::Cache<i64, Arc<str>>,
    /// Live sessions by token hash; invalidated on revocation and status changes.
    pub(crate) sessions: moka::sync::Cache<String, User>,
}

/// Handle to the embedded store; cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    shared: Arc<Shared>,
}

/// Takes the data directory for this process: the stream heads and the hot index live in one
/// process's memory, so a second writer (a server, or `seed` run against a live server's data)
/// would corrupt the chains.
fn lock_data_dir(data_dir: &Path) -> StoreResult<std::fs::File> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(data_dir.join("tidings.lock"))
        .map_err(|e| StoreError::Corrupt(format!("cannot open the lock file: {e}")))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked {
            dir: data_dir.display().to_string(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(StoreError::Corrupt(format!(
            "cannot lock the data directory: {e}"
        ))),
    }
}

fn open_connection(path: &Path, read_only: bool) -> StoreResult<Connection> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // FULL: a commit is on disk before anyone hears "201".
    conn.execute_batch(
        "PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL; PRAGMA cache_size = -16384;
         PRAGMA temp_store = MEMORY; PRAGMA mmap_size = 1073741824;",
    )?;
    conn.set_prepared_statement_cache_capacity(128);
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `data_dir`, migrates it and starts the writer.
    pub fn open(data_dir: &Path, config: StoreConfig) -> StoreResult<SqliteStore> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            StoreError::Corrupt(format!("cannot create {}: {e}", data_dir.display()))
        })?;
        let lock = lock_data_dir(data_dir)?;
        let path = data_dir.join("tidings.db");
        let conn = open_connection(&path, false)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // The writer keeps a large page cache (its B-tree pages are hot), and never checkpoints
        // itself: a background thread copies the WAL into the database so commits stay short.
        conn.execute_batch(
            "PRAGMA cache_size = -262144; PRAGMA wal_autocheckpoint = 0;
             PRAGMA journal_size_limit = 67108864;",
        )?;
        conn.execute_batch(include_str!("schema.sql"))?;
        conn.execute(
            "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', '2'), ('routed_seq', '0')",
            [],
        )?;
        let routed: i64 = conn.query_row(
            "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'routed_seq'",
            [],
            |r| r.get(0),
        )?;
        migrate(&conn)?;
        let hot = hot_load::load(&conn)?;
        let heads = load_heads(&conn)?;
        let (routed_tx, _) = watch::channel(routed);
        let (job_tx, job_rx) = mpsc::channel::<Job>();
        let shared = Arc::new(Shared {
            path: path.clone(),
            wal_path: data_dir.join("tidings.db-wal"),
            jobs: Mutex::new(Some(job_tx)),
            readers: Mutex::new(Vec::new()),
            reader_permits: Arc::new(Semaphore::new(config.readers.max(1))),
            routed: routed_tx,
            notices: broadcast::channel(NOTICE_BACKLOG).0,
            count_changes: broadcast::channel(NOTICE_BACKLOG).0,
            session_changes: watch::channel(0).0,
            config,
            writer: Mutex::new(None),
            checkpointer: Mutex::new(None),
            stopping: std::sync::atomic::AtomicBool::new(false),
            hot: RwLock::new(hot),
            heads: Mutex::new(heads),
            lock: Mutex::new(Some(lock)),
            // Weighed by bytes: activities vary from a line to 20k characters.
            bodies: moka::sync::Cache::builder()
                .max_capacity(BODY_CACHE_BYTES)
                .weigher(|_seq: &i64, body: &Arc<str>| {
                    u32::try_from(body.len() + 64).unwrap_or(u32::MAX)
                })
                .build(),
            sessions: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(std::time::Duration::from_secs(60))
                .build(),
        });
        let writer_shared = shared.clone();
        let handle = std::thread::Builder::new()
            .name("tidings-writer".into())
            .spawn(move || writer_loop(conn, job_rx, writer_shared))
            .map_err(|e| StoreError::Corrupt(format!("cannot start writer thread: {e}")))?;
        if let Ok(mut w) = shared.writer.lock() {
            *w = Some(handle);
        }
        let checkpoint_conn = open_connection(&path, false)?;
        let checkpoint_shared = shared.clone();
        let handle = std::thread::Builder::new()
            .name("tidings-checkpoint".into())
            .spawn(move || checkpoint_loop(checkpoint_conn, checkpoint_shared))
            .map_err(|e| StoreError::Corrupt(format!("cannot start checkpoint thread: {e}")))?;
        if let Ok(mut c) = shared.checkpointer.lock() {
            *c = Some(handle);
        }
        Ok(SqliteStore { shared })
    }

    /// Stops accepting writes and waits for the writer to finish what it holds.
    pub fn close(&self) {
        if let Ok(mut jobs) = self.shared.jobs.lock() {
            jobs.take();
        }
        let handle = self.shared.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(handle) = handle {
            let _ = handle.join();
        }
        self.shared
            .stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let handle = self
            .shared
            .checkpointer
            .lock()
            .ok()
            .and_then(|mut c| c.take());
        if let Some(handle) = handle {
            let _ = handle.join();
        }
        // Let go of the data directory: another store may open it now.
        if let Ok(mut lock) = self.shared.lock.lock() {
            lock.take();
        }
    }

    /// Runs `f` on the writer thread inside the next group commit; resolves after the commit.
    /// `f` records the effects of its changes on the hot index in the given list.
    pub(crate) async fn write<R, F>(&self, f: F) -> StoreResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection, &mut Effects) -> StoreResult<R> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<StoreResult<R>>();
        let job: Job = Box::new(move |conn: &Connection, fx: &mut Effects| {
            let result = f(conn, fx);
            let ok = result.is_ok();
            let reply: Reply = Box::new(move |commit: StoreResult<()>| {
                let _ = tx.send(commit.and(result));
            });
            (ok, reply)
        });
        {
            let jobs = self.shared.jobs.lock().map_err(|_| StoreError::Closed)?;
            let sender = jobs.as_ref().ok_or(StoreError::Closed)?;
            sender.send(job).map_err(|_| StoreError::Closed)?;
        }
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs `f` on a pooled read connection off the async threads.
    pub(crate) async fn read<R, F>(&self, f: F) -> StoreResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<R> + Send + 'static,
    {
        let shared = self.shared.clone();
        let permit = shared
            .reader_permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Closed)?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let conn = match shared.readers.lock().ok().and_then(|mut pool| pool.pop()) {
                Some(conn) => conn,
                None => open_connection(&shared.path, true)?,
            };
            let result = f(&conn);
            if let Ok(mut pool) = shared.readers.lock()
                && pool.len() < shared.config.readers
            {
                pool.push(conn);
            }
            result
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }

    /// Highest seq whose routing is complete: inbox reads never look past it.
    pub fn routed_seq(&self) -> i64 {
        *self.shared.routed.borrow()
    }

    /// Notices of routing progress: who got entries, and which seqs became readable. A
    /// receiver that falls behind gets `Lagged` and should assume everyone may have news.
    pub fn routed_notices(&self) -> broadcast::Receiver<Arc<RoutedNotice>> {
        self.shared.notices.subscribe()
    }

    /// Users whose feed counts (unseen / unread) changed other than by new inbox entries: a
    /// notification raised or withdrawn, a marker moved, an item hidden. A receiver that falls
    /// behind gets `Lagged` and should assume everyone's counts changed.
    pub fn count_changes(&self) -> broadcast::Receiver<Arc<Vec<i64>>> {
        self.shared.count_changes.subscribe()
    }

    /// Changes whenever sessions are revoked or a user's status changes, so live connections
    /// can re-check their credentials.
    pub fn session_changes(&self) -> watch::Receiver<u64> {
        self.shared.session_changes.subscribe()
    }

    /// Which `connected` users may see something new in `(after, upto]` through read-time
    /// sources or their own posts (entries the router wrote are in the notice itself).
    pub fn wake_set(
        &self,
        after: i64,
        upto: i64,
        connected: &std::collections::HashSet<i64>,
    ) -> std::collections::HashSet<i64> {
        match self.shared.hot.read() {
            Ok(hot) => hot.wake_set(after, upto, connected),
            // Wake everyone rather than miss anyone.
            Err(_) => connected.clone(),
        }
    }

    /// Resolves once every activity up to `seq` has been routed.
    pub async fn wait_routed(&self, seq: i64) -> StoreResult<()> {
        let mut rx = self.shared.routed.subscribe();
        rx.wait_for(|routed| *routed >= seq)
            .await
            .map(|_| ())
            .map_err(|_| StoreError::Closed)
    }

    /// The newest seq in the log (0 when empty).
    pub async fn last_seq(&self) -> StoreResult<i64> {
        self.read(users::last_seq).await
    }
}

/// Copies committed WAL pages into the database off the writer thread. PASSIVE never blocks
/// the writer or readers; the WAL restarts from its beginning once a pass catches up.
fn checkpoint_loop(conn: Connection, shared: Arc<Shared>) {
    use std::sync::atomic::Ordering;
    loop {
        let stopping = shared.stopping.load(Ordering::SeqCst);
        // Keep up with the writer: copy continuously while there is a backlog, so that what
        // the writer's own finishing pass has left to copy (and sync) stays small.
        let backlog = match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        }) {
            Ok((log, done)) => log > done,
            Err(e) => {
                tracing::warn!(error = %e, "checkpoint failed; will retry");
                false
            }
        };
        if stopping {
            return;
        }
        let pause = if backlog { 5 } else { 50 };
        std::thread::sleep(std::time::Duration::from_millis(pause));
    }
}

/// WAL size past which the idle writer finishes a checkpoint itself.
const WAL_FINALIZE_BYTES: u64 = 64 * 1024 * 1024;

/// When the writer is about to wait for work and the WAL has grown, it completes a checkpoint
/// (the background pass already copied the bulk, so little is left): its next transaction can
/// then reuse the WAL from the start instead of growing it forever. Doing it only when idle
/// keeps the stall off publishes that are already queued.
fn finalize_checkpoint_if_large(conn: &Connection, shared: &Shared) {
    let large = std::fs::metadata(&shared.wal_path).is_ok_and(|m| m.len() > WAL_FINALIZE_BYTES);
    if !large {
        return;
    }
    let started = std::time::Instant::now();
    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
        tracing::warn!(error = %e, "writer checkpoint failed");
    }
    let took = started.elapsed();
    if took > SLOW {
        tracing::warn!(
            ms = took.as_millis() as u64,
            "slow finishing checkpoint on the writer"
        );
    }
}

/// Writer steps slower than this are logged: they show up directly in publish latency.
const SLOW: std::time::Duration = std::time::Duration::from_millis(100);

fn writer_loop(conn: Connection, jobs: mpsc::Receiver<Job>, shared: Arc<Shared>) {
    let mut routing_due = true;
    loop {
        // Wait for work; while the router has a backlog, only peek.
        let first = if routing_due {
            match jobs.try_recv() {
                Ok(job) => Some(job),
                Err(mpsc::TryRecvError::Empty) => None,
                Err(mpsc::TryRecvError::Disconnected) => {
                    drain_router(&conn, &shared);
                    return;
                }
            }
        } else {
            let job = match jobs.try_recv() {
                Ok(job) => job,
                Err(mpsc::TryRecvError::Disconnected) => return,
                Err(mpsc::TryRecvError::Empty) => {
                    finalize_checkpoint_if_large(&conn, &shared);
                    match jobs.recv() {
                        Ok(job) => job,
                        Err(_) => return,
                    }
                }
            };
            Some(job)
        };
        if let Some(first) = first {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match jobs.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            run_batch(&conn, batch, &shared);
            routing_due = true;
        }
        if routing_due {
            routing_due = route_step(&conn, &shared);
        }
    }
}

fn drain_router(conn: &Connection, shared: &Shared) {
    while route_step(conn, shared) {}
}

/// Routes a bounded amount of the backlog; returns whether more remains.
fn route_step(conn: &Connection, shared: &Shared) -> bool {
    let mut fx = Effects::default();
    let started = std::time::Instant::now();
    let outcome = router::route_pending(
        conn,
        router::Thresholds {
            circle: shared.config.merge_threshold,
            followers: shared.config.follower_merge_threshold,
        },
        &mut fx,
    );
    let took = started.elapsed();
    if took > SLOW {
        tracing::warn!(ms = took.as_millis() as u64, "slow routing slice");
    }
    match outcome {
        Ok((routed, more)) => {
            let before = *shared.routed.borrow();
            // Only gather recipients when someone listens (the push layer).
            let notice = (routed > before && shared.notices.receiver_count() > 0).then(|| {
                let mut users: Vec<i64> = fx
                    .list
                    .iter()
                    .filter_map(|e| match e {
                        Effect::Entries(entries) => Some(entries.iter().map(|e| e.0)),
                        _ => None,
                    })
                    .flatten()
                    .collect();
                users.sort_unstable();
                users.dedup();
                RoutedNotice {
                    after: before,
                    upto: routed,
                    users,
                }
            });
            // The index must hold the entries before the watermark lets readers see them.
            let counted = shared.apply(fx.list);
            shared.routed.send_if_modified(|current| {
                if routed > *current {
                    *current = routed;
                    true
                } else {
                    false
                }
            });
            if let Some(notice) = notice {
                // No receiver left is not an error: the notice is simply not needed.
                let _ = shared.notices.send(Arc::new(notice));
            }
            // After the watermark: counts read up to it, so the new notifications show.
            shared.announce_counts(counted);
            more
        }
        Err(e) => {
            tracing::error!(error = %e, "routing failed; will retry");
            std::thread::sleep(std::time::Duration::from_millis(100));
            true
        }
    }
}

impl Shared {
    /// Applies committed effects to the hot index; returns the users whose feed counts they
    /// changed (gathered only while someone listens for count changes).
    fn apply(&self, effects: Vec<Effect>) -> Vec<i64> {
        let mut counted = Vec::new();
        if effects.is_empty() {
            return counted;
        }
        let listening = self.count_changes.receiver_count() > 0;
        match self.hot.write() {
            Ok(mut hot) => {
                for effect in effects {
                    if listening {
                        match &effect {
                            Effect::Notify(list) => counted.extend(list.iter().map(|n| n.0)),
                            Effect::Marker { user, .. } | Effect::Hide { user, .. } => {
                                counted.push(*user)
                            }
                            Effect::Retract { notified, .. } => counted.extend(notified),
                            _ => {}
                        }
                    }
                    if let Effect::Activity {
                        seq,
                        body: Some(body),
                        ..
                    } = &effect
                    {
                        self.bodies.insert(*seq, body.clone());
                    }
                    hot.apply(effect);
                }
            }
            Err(_) => tracing::error!("hot index lock poisoned; effects dropped"),
        }
        counted
    }

    /// Tells the push layer whose counts changed.
    fn announce_counts(&self, mut users: Vec<i64>) {
        if users.is_empty() {
            return;
        }
        users.sort_unstable();
        users.dedup();
        // No receiver left is not an error.
        let _ = self.count_changes.send(Arc::new(users));
    }
}

fn run_batch(conn: &Connection, batch: Vec<Job>, shared: &Shared) {
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        let message = e.to_string();
        for job in batch {
            // Never ran: tell each caller the transaction could not start.
            let (_, reply) = refuse_job(job, &message);
            reply(Err(StoreError::Corrupt(message.clone())));
        }
        return;
    }
    let mut replies = Vec::with_capacity(batch.len());
    let mut effects = Vec::new();
    for job in batch {
        if let Err(e) = conn.execute_batch("SAVEPOINT job") {
            let (_, reply) = refuse_job(job, &e.to_string());
            replies.push(reply);
            continue;
        }
        let mut fx = Effects::default();
        let (ok, reply) = job(conn, &mut fx);
        if ok {
            effects.extend(fx.list);
            if !fx.heads.is_empty()
                && let Ok(mut heads) = shared.heads.lock()
            {
                heads.batch.extend(fx.heads);
            }
        }
        let end = if ok {
            "RELEASE job"
        } else {
            "ROLLBACK TO job; RELEASE job"
        };
        if let Err(e) = conn.execute_batch(end) {
            tracing::error!(error = %e, "savepoint end failed");
        }
        replies.push(reply);
    }
    let started = std::time::Instant::now();
    let commit = conn.execute_batch("COMMIT").map_err(StoreError::from);
    let took = started.elapsed();
    if took > SLOW {
        tracing::warn!(
            jobs = replies.len(),
            ms = took.as_millis() as u64,
            "slow commit"
        );
    }
    if let Ok(mut heads) = shared.heads.lock() {
        let batch = std::mem::take(&mut heads.batch);
        if commit.is_ok() {
            heads.committed.extend(batch);
        }
    }
    if commit.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    } else {
        let counted = shared.apply(effects);
        shared.announce_counts(counted);
    }
    for reply in replies {
        let outcome = match &commit {
            Ok(()) => Ok(()),
            Err(e) => Err(StoreError::Corrupt(format!("commit failed: {e}"))),
        };
        reply(outcome);
    }
}

/// A job that could not run still owes its caller an answer; run it against nothing.
fn refuse_job(job: Job, message: &str) -> (bool, Reply) {
    let message = message.to_owned();
    // The job holds the only sender of its reply channel; dropping it tells the caller
    // `Closed`. Wrap that in a reply that does nothing so callers see one consistent error.
    drop(job);
    let reply: Reply = Box::new(move |_| tracing::error!(%message, "write job refused"));
    (false, reply)
}
