//! The PostgreSQL adapter: the system of record of a cluster of identical nodes.
//!
//! Every node runs the same domain code as the embedded store (`crate::engine`) against the
//! same tables. What is different:
//! - **One order for the whole cluster.** Each node has one writer thread doing group commits
//!   like the embedded writer; every write transaction first locks the `log_head` row and holds
//!   it to COMMIT, so transactions of all nodes commit one at a time. A seq taken inside the
//!   lock (`MAX(seq) + 1`) is therefore gap-free and in commit order: a tailer reading
//!   `seq > applied` can never skip a transaction that committed late.
//! - **The change log.** Each write transaction also appends what it did to the read index
//!   (its [`Effect`]s) as one `changes` record, numbered by `log_head.change_seq`. Every node
//!   applies the records in order to its own in-memory index, so the same prefix of the change
//!   log gives the same index, the same pages and the same cursors on every node. A node's own
//!   writer applies up to its record before answering (read your writes); a tailer thread
//!   polls for the records of other nodes.
//! - **One router.** The node holding a PostgreSQL advisory lock routes; if it dies, its
//!   session ends, the lock is freed and another node takes over from the persisted watermark.
//!   A routing step re-checks the watermark inside the log lock, so a step is never applied
//!   twice.

use crate::adapters::{Backend, unavailable};
use crate::engine::{
    Heads, Job, JobQueue, MAX_BATCH, Shared, Store, StoreConfig, hot_load, router, run_batch,
};
use crate::hot::Effect;
use crate::sql::{Connection, OptionalExtension, PgConnection, params};
use crate::{StoreError, StoreResult};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Advisory lock key held while migrating (any constant unique to Tidings).
const MIGRATE_LOCK: i64 = 0x7469_6469_6e67_0001;
/// Advisory lock key held by the node that routes.
const ROUTER_LOCK: i64 = 0x7469_6469_6e67_0002;
/// With a bus attached, the tailer and the router still look this often when no doorbell
/// rang (a lost message costs at most this much).
const BUS_FALLBACK_POLL: Duration = Duration::from_millis(25);
/// Change records read per query.
const TAIL_BATCH: i64 = 1000;
/// How long a connection attempt may take before the request gets a 503.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest a routing step spends deciding (notices still ask PostgreSQL per activity) before
/// it writes: every node's publishes wait behind the log lock it holds.
const MAX_ROUTING_SLICE: Duration = Duration::from_millis(10);
/// Entries a routing step writes at most, in one statement: large enough that the step's
/// dozen round trips are a small part of it, small enough that the lock is held for tens of
/// milliseconds, not hundreds.
const ROUTING_SLICE_DELIVERIES: usize = 5_000;
/// A pooled reader idle longer than this is checked before use.
const PING_AFTER_IDLE: Duration = Duration::from_secs(2);
/// Pause between attempts while PostgreSQL is unreachable.
const RETRY_PAUSE: Duration = Duration::from_millis(250);

/// One committed write transaction as the change log stores it.
#[derive(serde::Serialize, serde::Deserialize)]
struct ChangeRecord {
    /// Its effects on the read index.
    effects: Vec<Effect>,
    /// For a routing step: the routed watermark after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    routed: Option<i64>,
    /// Written by a writer's transaction (which may also have routed its own batch), not by
    /// a routing step alone. Older records lack it: theirs is `routed.is_none()`.
    #[serde(default)]
    writes: bool,
}

/// The PostgreSQL side of a [`Store`].
pub(crate) struct PgBackend {
    url: String,
    jobs: JobQueue,
    /// Idle reader connections, with when each was last used.
    readers: Mutex<Vec<(Connection, std::time::Instant)>>,
    /// The last change record applied to this node's index; held while applying.
    applied: Mutex<i64>,
    stopping: AtomicBool,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// Set when another node says the change log grew; the tailer sleeps on it.
    /// Bumped whenever the change log may have grown (a doorbell, a local commit); the
    /// tailer and the router each wait for it to move.
    woken: (Mutex<u64>, std::sync::Condvar),
    /// Told the change position after each change this node commits (the bus doorbell).
    ringer: std::sync::RwLock<Option<Ringer>>,
    /// How long the tailer sleeps when nothing wakes it.
    tail_poll: Duration,
    /// Whether this node holds the router lock now.
    routing: AtomicBool,
    /// The last applied change that was not a routing step (only those append to streams).
    last_plain_change: AtomicI64,
    /// The change this node's writer last committed, at which the stream heads it keeps were
    /// current; -1 before its first.
    heads_at: AtomicI64,
}

/// Passes a committed change position on (to the bus).
type Ringer = Box<dyn Fn(i64) + Send + Sync>;

/// Runs `f` where blocking PostgreSQL calls are allowed: the synchronous client drives its own
/// runtime, which must not run on a thread that drives async tasks (opening a store from an
/// async `main` or test does exactly that). Off such a thread `f` simply runs.
pub(crate) fn off_async<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|scope| match scope.spawn(f).join() {
        Ok(value) => value,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

/// Connects to PostgreSQL.
pub(crate) fn connect(url: &str) -> StoreResult<Connection> {
    let conn = PgConnection::connect(url, CONNECT_TIMEOUT).map_err(unavailable)?;
    Ok(Connection::Postgres(Box::new(conn)))
}

/// The schema version `schema.sql` creates.
const SCHEMA_VERSION: &str = "14";

/// Log tables: INSERT and SELECT only, for everyone (triggers) and for the server's role
/// (grants).
const APPEND_ONLY: &[&str] = &[
    "activities",
    "stream_links",
    "changes",
    "activity_tags",
    "activity_circles",
    "activity_addressees",
    "activity_followers",
];

/// Creates or upgrades the schema, once, whichever node gets there first. A store already at
/// the current version is left alone, so a server whose role may not create tables (see
/// [`grant_to`]) starts without trying.
pub(crate) fn migrate(conn: &Connection) -> StoreResult<()> {
    if current_version(conn)?.as_deref() == Some(SCHEMA_VERSION) {
        return Ok(());
    }
    conn.execute("SELECT pg_advisory_lock(?1)", [MIGRATE_LOCK])?;
    let outcome = migrate_locked(conn);
    conn.execute("SELECT pg_advisory_unlock(?1)", [MIGRATE_LOCK])?;
    outcome
}

/// The migration itself, under the migration lock. A store from before version 11 has its
/// log indexed for search (again, with stemmed words) once.
fn migrate_locked(conn: &Connection) -> StoreResult<()> {
    let before = current_version(conn)?;
    conn.execute_batch(include_str!("schema.sql"))?;
    // Before version 6 there was no index; before version 11 (decision 0028) it held unstemmed
    // words. Either way the log is indexed again.
    let unindexed = before
        .as_deref()
        .and_then(|v| v.parse::<u32>().ok())
        .is_some_and(|v| v < 11);
    // ---- schema version 13 (decision 0027): an existing log's direct messages grouped once.
    let ungrouped = before
        .as_deref()
        .and_then(|v| v.parse::<u32>().ok())
        .is_some_and(|v| v < 13);
    if ungrouped {
        tracing::info!("grouping direct messages into conversations (schema version 13)");
        conn.execute_batch("BEGIN")?;
        match crate::engine::conversations::reindex_all(conn) {
            Ok(_) => conn.execute_batch("COMMIT")?,
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(e);
            }
        }
    }
    if unindexed {
        tracing::info!("indexing the log for search (stemmed words, schema version 11)");
        conn.execute_batch("BEGIN")?;
        match crate::engine::search::reindex_all(conn) {
            Ok(_) => conn.execute_batch("COMMIT")?,
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(e);
            }
        }
    }
    Ok(())
}

fn current_version(conn: &Connection) -> StoreResult<Option<String>> {
    let exists: bool =
        conn.query_row("SELECT to_regclass('meta') IS NOT NULL", [], |r| r.get(0))?;
    if !exists {
        return Ok(None);
    }
    Ok(conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .optional()?)
}

/// Grants `role` what a server needs and no more: INSERT and SELECT on the log tables, read
/// and write on the projections. Run by the schema's owner (`tidings migrate --grant-to`).
pub(crate) fn grant_to(conn: &Connection, role: &str) -> StoreResult<()> {
    if role.is_empty() || !role.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(StoreError::unprocessable(
            "bad_role_name",
            "a role name is letters, digits and underscores",
        ));
    }
    let log = APPEND_ONLY.join(", ");
    conn.execute_batch(&format!(
        "GRANT USAGE ON SCHEMA public TO {role};
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role};
         REVOKE UPDATE, DELETE, TRUNCATE ON {log} FROM {role};
         REVOKE TRUNCATE ON ALL TABLES IN SCHEMA public FROM {role};
         GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role};"
    ))?;
    Ok(())
}

/// Connects, migrates, loads the read index from a consistent snapshot and starts this node's
/// writer, tailer and (if it has the role) router.
pub(crate) fn open(url: &str, config: StoreConfig) -> StoreResult<Store> {
    off_async(|| open_here(url, config))
}

fn open_here(url: &str, config: StoreConfig) -> StoreResult<Store> {
    let conn = connect(url)?;
    migrate(&conn)?;
    // The index, the watermark and the change position from one snapshot: applying the change
    // log from that position on then reproduces exactly what every other node has.
    conn.execute_batch("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")?;
    let loaded = (|| -> StoreResult<_> {
        let change_seq: i64 =
            conn.query_row("SELECT change_seq FROM log_head WHERE id = 1", [], |r| {
                r.get(0)
            })?;
        let routed: i64 = conn.query_row(
            "SELECT CAST(value AS BIGINT) FROM meta WHERE key = 'routed_seq'",
            [],
            |r| r.get(0),
        )?;
        let hot = hot_load::load(&conn)?;
        Ok((change_seq, routed, hot))
    })();
    conn.execute_batch("COMMIT")?;
    let (change_seq, routed, hot) = loaded?;
    let (jobs, job_rx) = JobQueue::new();
    let backend = PgBackend {
        url: url.to_owned(),
        jobs,
        readers: Mutex::new(vec![(conn, std::time::Instant::now())]),
        applied: Mutex::new(change_seq),
        stopping: AtomicBool::new(false),
        threads: Mutex::new(Vec::new()),
        woken: (Mutex::new(0), std::sync::Condvar::new()),
        ringer: std::sync::RwLock::new(None),
        tail_poll: config.tail_poll,
        routing: AtomicBool::new(false),
        last_plain_change: AtomicI64::new(0),
        heads_at: AtomicI64::new(-1),
    };
    let router_role = config.router;
    let shared = Arc::new(Shared::new(
        Backend::Postgres(backend),
        config,
        hot,
        Heads::default(),
        routed,
    ));
    let Backend::Postgres(backend) = &shared.backend else {
        return Err(StoreError::Closed);
    };
    let mut threads = Vec::new();
    let writer_shared = shared.clone();
    threads.push(spawn("tidings-pg-writer", move || {
        writer_loop(job_rx, writer_shared)
    })?);
    let tail_shared = shared.clone();
    threads.push(spawn("tidings-pg-tailer", move || tail_loop(tail_shared))?);
    if router_role {
        let router_shared = shared.clone();
        threads.push(spawn("tidings-pg-router", move || {
            router_loop(router_shared)
        })?);
    }
    if let Ok(mut slot) = backend.threads.lock() {
        *slot = threads;
    }
    Ok(Store { shared })
}

fn spawn(
    name: &str,
    f: impl FnOnce() + Send + 'static,
) -> StoreResult<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map_err(|e| StoreError::Corrupt(format!("cannot start {name}: {e}")))
}

impl PgBackend {
    /// Queues a job for the writer.
    pub(crate) fn submit(&self, job: Job) -> StoreResult<()> {
        self.jobs.submit(job)
    }

    /// An idle reader, or a new connection. A reader idle for a while is pinged first: a
    /// database restart kills sockets the client has not noticed yet.
    pub(crate) fn take_reader(&self) -> StoreResult<Connection> {
        loop {
            match self.readers.lock().ok().and_then(|mut pool| pool.pop()) {
                Some((conn, _)) if is_closed(&conn) => continue,
                Some((conn, idle_since)) if idle_since.elapsed() > PING_AFTER_IDLE => {
                    if conn.execute_batch("SELECT 1").is_ok() {
                        return Ok(conn);
                    }
                }
                Some((conn, _)) => return Ok(conn),
                None => return connect(&self.url),
            }
        }
    }

    /// Returns a reader to the pool unless its connection broke.
    pub(crate) fn give_back(&self, conn: Connection, max: usize) {
        if is_closed(&conn) {
            return;
        }
        if let Ok(mut pool) = self.readers.lock()
            && pool.len() < max
        {
            pool.push((conn, std::time::Instant::now()));
        }
    }

    /// Stops the writer (after the jobs it holds), the tailer and the router.
    pub(crate) fn close(&self) {
        self.jobs.close();
        self.stopping.store(true, Ordering::SeqCst);
        self.wake();
        let threads = self
            .threads
            .lock()
            .map(|mut t| std::mem::take(&mut *t))
            .unwrap_or_default();
        for handle in threads {
            let _ = handle.join();
        }
    }

    /// Applies every change record this node has not applied yet, in order.
    pub(crate) fn catch_up(&self, conn: &Connection, shared: &Shared) {
        if let Err(e) = self.try_catch_up(conn, shared) {
            tracing::warn!(error = %e, "reading the change log failed; will retry");
        }
    }

    fn try_catch_up(&self, conn: &Connection, shared: &Shared) -> StoreResult<()> {
        let mut applied = self.applied.lock().map_err(|_| StoreError::Closed)?;
        loop {
            let records = conn
                .prepare_cached(
                    "SELECT seq, body FROM changes WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                )?
                .query_map(params![*applied, TAIL_BATCH], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            let full = records.len() as i64 == TAIL_BATCH;
            for (seq, body) in records {
                if seq != *applied + 1 {
                    // Cannot happen while every writer takes the log lock; applying past a
                    // hole would make this node's index differ from the others'.
                    return Err(StoreError::Corrupt(format!(
                        "change log gap: expected record {}, found {seq}",
                        *applied + 1
                    )));
                }
                let record: ChangeRecord = serde_json::from_str(&body)?;
                if record.writes || record.routed.is_none() {
                    self.last_plain_change.store(seq, Ordering::SeqCst);
                }
                shared.apply_change(record.effects, record.routed);
                *applied = seq;
            }
            if !full {
                return Ok(());
            }
        }
    }
}

impl PgBackend {
    /// Installs the doorbell.
    pub(crate) fn set_ringer(&self, ringer: Ringer) {
        if let Ok(mut slot) = self.ringer.write() {
            *slot = Some(ringer);
        }
    }

    /// Tells the bus that this node committed changes up to what it has applied.
    pub(crate) fn ring(&self) {
        if let Ok(slot) = self.ringer.read()
            && let Some(ring) = slot.as_ref()
        {
            ring(self.applied());
        }
    }

    /// Wakes the tailer and the router now.
    pub(crate) fn wake(&self) {
        let (generation, signal) = &self.woken;
        if let Ok(mut generation) = generation.lock() {
            *generation += 1;
            signal.notify_all();
        }
    }

    /// The current wake generation, to wait on with [`PgBackend::sleep_until_woken`].
    fn generation(&self) -> u64 {
        self.woken.0.lock().map(|g| *g).unwrap_or(0)
    }

    /// Sleeps until woken after `seen` or until the poll interval passed: the configured one
    /// without a bus, a long fallback with one (the doorbell does the waking).
    fn sleep_until_woken(&self, seen: u64) {
        let has_bus = self.ringer.read().map(|r| r.is_some()).unwrap_or(false);
        let timeout = if has_bus {
            self.tail_poll.max(BUS_FALLBACK_POLL)
        } else {
            self.tail_poll
        };
        let (generation, signal) = &self.woken;
        let Ok(guard) = generation.lock() else { return };
        let _ = signal.wait_timeout_while(guard, timeout, |now| *now == seen);
    }

    /// Notes that the stream heads this node's writer keeps were current at its change
    /// `change` (it just committed it).
    pub(crate) fn heads_current_at(&self, change: i64) {
        self.heads_at.store(change, Ordering::SeqCst);
    }

    /// Whether the stream heads this node's writer keeps are still current: called in the
    /// log lock after catching up, true when no writer but this one recorded anything but
    /// routing steps (which append to no stream) since its last commit.
    pub(crate) fn heads_still_current(&self) -> bool {
        self.last_plain_change.load(Ordering::SeqCst) == self.heads_at.load(Ordering::SeqCst)
    }

    /// Whether this node holds the router lock.
    pub(crate) fn is_routing(&self) -> bool {
        self.routing.load(Ordering::SeqCst)
    }

    /// Whether the store is closing.
    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// The last change record this node applied.
    pub(crate) fn applied(&self) -> i64 {
        self.applied.lock().map(|a| *a).unwrap_or(0)
    }
}

fn is_closed(conn: &Connection) -> bool {
    match conn {
        Connection::Postgres(pg) => pg.is_closed(),
        Connection::Sqlite(_) => false,
    }
}

fn backend(shared: &Shared) -> Option<&PgBackend> {
    match &shared.backend {
        Backend::Postgres(pg) => Some(pg),
        Backend::Sqlite(_) => None,
    }
}

/// Appends a transaction's effects to the change log (inside the log lock). A transaction that
/// changed nothing the index holds records nothing.
pub(crate) fn append_change(
    conn: &Connection,
    effects: &[Effect],
    routed: Option<i64>,
    writes: bool,
) -> StoreResult<Option<i64>> {
    if effects.is_empty() && routed.is_none() {
        return Ok(None);
    }
    let body = serde_json::to_string(&ChangeRecordRef {
        effects,
        routed,
        writes,
    })?;
    let seq: i64 = conn.query_row(
        "UPDATE log_head SET change_seq = change_seq + 1 WHERE id = 1 RETURNING change_seq",
        [],
        |r| r.get(0),
    )?;
    conn.execute(
        "INSERT INTO changes(seq, body) VALUES (?1, ?2)",
        params![seq, body],
    )?;
    Ok(Some(seq))
}

/// [`ChangeRecord`] borrowed, for writing.
#[derive(serde::Serialize)]
struct ChangeRecordRef<'a> {
    effects: &'a [Effect],
    #[serde(skip_serializing_if = "Option::is_none")]
    routed: Option<i64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    writes: bool,
}

/// Connects, retrying while PostgreSQL is unreachable; None once the store is stopping.
fn connect_until_stopped(shared: &Shared, role: &str) -> Option<Connection> {
    let pg = backend(shared)?;
    loop {
        if pg.stopping.load(Ordering::SeqCst) {
            return None;
        }
        match connect(&pg.url) {
            Ok(conn) => return Some(conn),
            Err(e) => {
                tracing::warn!(role, error = %e, "cannot reach PostgreSQL; retrying");
                std::thread::sleep(RETRY_PAUSE);
            }
        }
    }
}

fn writer_loop(jobs: mpsc::Receiver<Job>, shared: Arc<Shared>) {
    let mut conn: Option<Connection> = None;
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if conn.as_ref().is_none_or(is_closed) {
            // One attempt per batch: while PostgreSQL is down, callers get a 503 at once
            // instead of queueing behind a retry loop.
            conn = backend(&shared).and_then(|pg| connect(&pg.url).ok());
        }
        match &conn {
            Some(c) => run_batch(c, batch, &shared),
            None => refuse_batch(batch),
        }
    }
}

fn refuse_batch(batch: Vec<Job>) {
    // Dropping a job drops its reply channel: its caller hears `Unavailable` (`refusal`).
    drop(batch);
    tracing::warn!("PostgreSQL unreachable; writes refused");
}

fn tail_loop(shared: Arc<Shared>) {
    let Some(pg) = backend(&shared) else { return };
    let mut conn: Option<Connection> = None;
    while !pg.stopping.load(Ordering::SeqCst) {
        if conn.as_ref().is_none_or(is_closed) {
            conn = connect(&pg.url).ok();
        }
        if let Some(c) = &conn {
            let seen = pg.generation();
            pg.catch_up(c, &shared);
            pg.sleep_until_woken(seen);
        } else {
            std::thread::sleep(RETRY_PAUSE);
        }
    }
}

/// Takes the router lock for this connection's session if no node holds it (`tidings
/// rebuild` routes alone).
pub(crate) fn try_router_lock(conn: &Connection) -> StoreResult<bool> {
    Ok(
        conn.query_row("SELECT pg_try_advisory_lock(?1)", [ROUTER_LOCK], |r| {
            r.get::<_, bool>(0)
        })?,
    )
}

/// Routes while this node holds the router lock; waits for it otherwise.
fn router_loop(shared: Arc<Shared>) {
    let Some(pg) = backend(&shared) else { return };
    'session: while let Some(conn) = connect_until_stopped(&shared, "router") {
        // Wait for the router lock (session-level: freed when this connection ends).
        loop {
            if pg.stopping.load(Ordering::SeqCst) {
                return;
            }
            match conn
                .query_row("SELECT pg_try_advisory_lock(?1)", [ROUTER_LOCK], |r| {
                    r.get::<_, bool>(0)
                })
                .optional()
            {
                Ok(Some(true)) => break,
                Ok(_) => std::thread::sleep(Duration::from_millis(200)),
                Err(e) => {
                    tracing::warn!(error = %e, "router lock check failed");
                    continue 'session;
                }
            }
        }
        tracing::info!("this node routes the log");
        pg.routing.store(true, Ordering::SeqCst);
        let thresholds = router::Thresholds {
            circle: shared.config.merge_threshold,
            followers: shared.config.follower_merge_threshold,
            max_deliveries: ROUTING_SLICE_DELIVERIES,
            max_slice: Some(MAX_ROUTING_SLICE),
        };
        let mut last_routed = -1;
        while !pg.stopping.load(Ordering::SeqCst) {
            let seen = pg.generation();
            let mut fx = crate::engine::Effects::default();
            match router::route_pending(&conn, thresholds, &mut fx) {
                Ok((routed, more)) => {
                    pg.catch_up(&conn, &shared);
                    if routed != last_routed {
                        // A routing step committed: other nodes may show it now.
                        pg.ring();
                        last_routed = routed;
                    }
                    if !more {
                        // Until a commit here or a doorbell from elsewhere says there is more.
                        pg.sleep_until_woken(seen);
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "routing failed; will retry");
                    if is_closed(&conn) {
                        // The lock went with the connection.
                        pg.routing.store(false, Ordering::SeqCst);
                        continue 'session;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
        return;
    }
}

/// Creates database `name` on the server of `admin_url` (which names an existing database) and
/// returns the URL of the new one. For test suites and `.ci/run`, which want a throwaway
/// database per run.
pub fn create_database(admin_url: &str, name: &str) -> StoreResult<String> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(StoreError::unprocessable(
            "bad_database_name",
            "a database name is letters, digits and underscores",
        ));
    }
    off_async(|| -> StoreResult<()> {
        Ok(connect(admin_url)?.execute_batch(&format!("CREATE DATABASE {name}"))?)
    })?;
    let base = match admin_url.rsplit_once('/') {
        Some((base, _)) => base,
        None => admin_url,
    };
    Ok(format!("{base}/{name}"))
}
