//! The embedded SQLite adapter (the default): one database file in the data directory.
//!
//! Concurrency model: every write runs on one thread that owns the only writable connection.
//! Jobs that arrive together share one transaction and one fsync (each inside its own
//! savepoint, so one refusal does not undo its neighbours); a job's caller hears back only once
//! the commit that holds it is durable. The router runs on the same thread between group
//! commits. Reads run on a bounded pool of WAL readers; a background thread checkpoints the WAL.

use crate::adapters::Backend;
use crate::engine::router;
use crate::engine::{
    Effects, Heads, Job, JobQueue, MAX_BATCH, SLOW, Shared, Store, StoreConfig, StreamHead,
    hot_load, run_batch,
};
use crate::sql::Connection;
use crate::{StoreError, StoreResult};
pub(crate) mod backup;

use rusqlite::OpenFlags;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

/// The SQLite side of a [`Store`]: the writer's queue, the reader pool, the background threads.
pub(crate) struct SqliteBackend {
    path: PathBuf,
    /// The WAL file beside the database, whose size decides when the writer finishes a checkpoint.
    wal_path: PathBuf,
    jobs: JobQueue,
    /// Idle reader connections.
    readers: Mutex<Vec<Connection>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    checkpointer: Mutex<Option<std::thread::JoinHandle<()>>>,
    pub(crate) stopping: std::sync::atomic::AtomicBool,
    /// Exclusive lock on `tidings.lock`: one process owns the writer, the heads and the index.
    lock: Mutex<Option<std::fs::File>>,
}

impl SqliteBackend {
    /// Queues a job for the writer.
    pub(crate) fn submit(&self, job: Job) -> StoreResult<()> {
        self.jobs.submit(job)
    }

    /// An idle reader, or a new one.
    pub(crate) fn take_reader(&self) -> StoreResult<Connection> {
        match self.readers.lock().ok().and_then(|mut pool| pool.pop()) {
            Some(conn) => Ok(conn),
            None => open_connection(&self.path, true),
        }
    }

    /// Returns a reader to the pool (up to `max` are kept).
    pub(crate) fn give_back(&self, conn: Connection, max: usize) {
        if let Ok(mut pool) = self.readers.lock()
            && pool.len() < max
        {
            pool.push(conn);
        }
    }

    /// Bytes of the database file and its WAL.
    pub(crate) fn size_bytes(&self) -> u64 {
        [&self.path, &self.wal_path]
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    }

    /// Stops accepting writes and waits for the writer to finish what it holds.
    pub(crate) fn close(&self) {
        self.jobs.close();
        let handle = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(handle) = handle {
            let _ = handle.join();
        }
        self.stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let handle = self.checkpointer.lock().ok().and_then(|mut c| c.take());
        if let Some(handle) = handle {
            let _ = handle.join();
        }
        // Let go of the data directory: another store may open it now.
        if let Ok(mut lock) = self.lock.lock() {
            lock.take();
        }
    }
}

fn wal_path(shared: &Shared) -> &Path {
    match &shared.backend {
        Backend::Sqlite(sqlite) => &sqlite.wal_path,
        Backend::Postgres(_) => Path::new(""),
    }
}

/// Opens (creating if needed) the store in `data_dir`, migrates it and starts the writer.
pub(crate) fn open(data_dir: &Path, config: StoreConfig) -> StoreResult<Store> {
    std::fs::create_dir_all(data_dir)
        .map_err(|e| StoreError::Corrupt(format!("cannot create {}: {e}", data_dir.display())))?;
    let lock = lock_data_dir(data_dir)?;
    let path = data_dir.join("tidings.db");
    let conn = open_connection(&path, false)?;
    conn.execute_batch("PRAGMA journal_mode = WAL")?;
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
    // The index is read through a connection of its own that does not map the file: the load
    // touches nearly every page once, and mapped pages stay in this process's resident set
    // (a byte per byte of database, about 940 B a user) for as long as the mapping lives.
    let (hot, heads) = {
        let loader = open_connection(&path, true)?;
        loader.execute_batch("PRAGMA mmap_size = 0")?;
        (hot_load::load(&loader)?, load_heads(&loader)?)
    };
    let (jobs, job_rx) = JobQueue::new();
    let backend = SqliteBackend {
        path: path.clone(),
        wal_path: data_dir.join("tidings.db-wal"),
        jobs,
        readers: Mutex::new(Vec::new()),
        writer: Mutex::new(None),
        checkpointer: Mutex::new(None),
        stopping: std::sync::atomic::AtomicBool::new(false),
        lock: Mutex::new(Some(lock)),
    };
    let shared = Arc::new(Shared::new(
        Backend::Sqlite(backend),
        config,
        hot,
        heads,
        routed,
    ));
    let Backend::Sqlite(backend) = &shared.backend else {
        return Err(StoreError::Closed);
    };
    let writer_shared = shared.clone();
    let handle = std::thread::Builder::new()
        .name("tidings-writer".into())
        .spawn(move || writer_loop(conn, job_rx, writer_shared))
        .map_err(|e| StoreError::Corrupt(format!("cannot start writer thread: {e}")))?;
    if let Ok(mut w) = backend.writer.lock() {
        *w = Some(handle);
    }
    let checkpoint_conn = open_connection(&path, false)?;
    let checkpoint_shared = shared.clone();
    let handle = std::thread::Builder::new()
        .name("tidings-checkpoint".into())
        .spawn(move || checkpoint_loop(checkpoint_conn, checkpoint_shared))
        .map_err(|e| StoreError::Corrupt(format!("cannot start checkpoint thread: {e}")))?;
    if let Ok(mut c) = backend.checkpointer.lock() {
        *c = Some(handle);
    }
    Ok(Store { shared })
}

/// Opens a plain connection to the embedded database (for offline administration).
pub(crate) fn open_plain(data_dir: &Path) -> StoreResult<Connection> {
    open_connection(&data_dir.join("tidings.db"), false)
}

/// Takes the data directory for this process: the stream heads and the hot index live in one
/// process's memory, so a second writer (a server, or `seed` run against a live server's data)
/// would corrupt the chains.
pub(crate) fn lock_data_dir(data_dir: &Path) -> StoreResult<std::fs::File> {
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

pub(crate) fn open_connection(path: &Path, read_only: bool) -> StoreResult<Connection> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = rusqlite::Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // FULL: a commit is on disk before anyone hears "201".
    conn.execute_batch(
        "PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL; PRAGMA cache_size = -16384;
         PRAGMA temp_store = MEMORY; PRAGMA mmap_size = 1073741824;",
    )?;
    conn.set_prepared_statement_cache_capacity(128);
    Ok(Connection::Sqlite(conn))
}

fn load_heads(conn: &Connection) -> StoreResult<Heads> {
    let mut heads = Heads::default();
    // Each outbox with its owner's id, which the writer keys outbox heads by.
    let mut stmt = conn.prepare(
        "SELECT l.stream, l.pos, l.chain, u.id FROM stream_links l
         LEFT JOIN users u ON substr(l.stream, 1, 7) = 'outbox:' AND u.username = substr(l.stream, 8)
         ORDER BY l.seq",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        heads.committed.insert(
            r.get(0)?,
            r.get(3)?,
            StreamHead {
                pos: r.get(1)?,
                chain: r.get(2)?,
            },
        );
    }
    heads.committed.shrink_to_fit();
    Ok(heads)
}

/// Moves schema version 1 (stream tables keyed by stream first) to version 2 (keyed by seq
/// first, so publishes append), then to version 3 (follows and feeds), 4 (integer `via`), 5
/// (session devices) and 6 (the search index). Copies rows as they
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
    let version: String = conn.query_row(
        "SELECT value FROM meta WHERE key = 'schema_version'",
        [],
        |r| r.get(0),
    )?;
    if version == "4" {
        migrate_sessions_v5(conn)?;
    }
    let version: String = conn.query_row(
        "SELECT value FROM meta WHERE key = 'schema_version'",
        [],
        |r| r.get(0),
    )?;
    if version == "5" {
        // Version 6 adds the search index (schema.sql created its tables); an existing log
        // is indexed once here.
        tracing::info!("migrating the store to schema version 6 (search index)");
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let indexed = crate::engine::search::reindex_all(conn).and_then(|_| {
            Ok(conn.execute(
                "UPDATE meta SET value = '6' WHERE key = 'schema_version'",
                [],
            )?)
        });
        match indexed {
            Ok(_) => conn.execute_batch("COMMIT")?,
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(e);
            }
        }
    }
    let version: String = conn.query_row(
        "SELECT value FROM meta WHERE key = 'schema_version'",
        [],
        |r| r.get(0),
    )?;
    if version == "6" {
        migrate_integration_v7(conn)?;
    }
    let version: String = conn.query_row(
        "SELECT value FROM meta WHERE key = 'schema_version'",
        [],
        |r| r.get(0),
    )?;
    if version == "7" {
        migrate_queues_v8(conn)?;
    }
    let version: String = conn.query_row(
        "SELECT value FROM meta WHERE key = 'schema_version'",
        [],
        |r| r.get(0),
    )?;
    if version == "8" {
        migrate_subscription_modes_v9(conn)?;
    }
    let version: String = conn.query_row(
        "SELECT value FROM meta WHERE key = 'schema_version'",
        [],
        |r| r.get(0),
    )?;
    if version == "9" {
        migrate_bus_schedules_v10(conn)?;
    }
    let version: String = conn.query_row(
        "SELECT value FROM meta WHERE key = 'schema_version'",
        [],
        |r| r.get(0),
    )?;
    if version == "10" {
        migrate_saved_searches_v11(conn)?;
    }
    let version: String = conn.query_row(
        "SELECT value FROM meta WHERE key = 'schema_version'",
        [],
        |r| r.get(0),
    )?;
    if version == "11" {
        migrate_moderation_v12(conn)?;
    }
    let version: String = conn.query_row(
        "SELECT value FROM meta WHERE key = 'schema_version'",
        [],
        |r| r.get(0),
    )?;
    if version == "12" {
        migrate_conversations_v13(conn)?;
    }
    let version: String = conn.query_row(
        "SELECT value FROM meta WHERE key = 'schema_version'",
        [],
        |r| r.get(0),
    )?;
    if version == "13" {
        migrate_media_v14(conn)?;
    }
    Ok(())
}

// ---- schema version 14: media (decision 0026) ----

/// Version 14 adds media (decision 0026): `media` (one row per upload: its sizes as JSON, alt
/// text; mutable), `media_uses` (which activity attaches which media: a projection of the
/// log, written in the publish's transaction) and `avatars` (a person's or circle's current
/// avatar; mutable). New tables only, so a new store takes the same step.
fn migrate_media_v14(conn: &Connection) -> StoreResult<()> {
    tracing::info!("migrating the store to schema version 14 (media)");
    conn.execute_batch(
        "BEGIN IMMEDIATE;
         CREATE TABLE IF NOT EXISTS media (
             id         TEXT PRIMARY KEY,
             owner_id   INTEGER NOT NULL REFERENCES users(id),
             media_type TEXT NOT NULL,
             width      INTEGER NOT NULL,
             height     INTEGER NOT NULL,
             blurhash   TEXT NOT NULL,
             alt        TEXT,
             variants   TEXT NOT NULL,
             created_at TEXT NOT NULL
         );
         CREATE INDEX IF NOT EXISTS media_by_owner ON media(owner_id);
         CREATE TABLE IF NOT EXISTS media_uses (
             media_id TEXT NOT NULL,
             seq      INTEGER NOT NULL,
             PRIMARY KEY (media_id, seq)
         ) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS avatars (
             subject  TEXT PRIMARY KEY,
             media_id TEXT NOT NULL
         ) WITHOUT ROWID;
         CREATE INDEX IF NOT EXISTS avatars_by_media ON avatars(media_id);
         UPDATE meta SET value = '14' WHERE key = 'schema_version';
         COMMIT;",
    )?;
    Ok(())
}

// ---- end of schema version 14 ----

// ---- schema version 13: conversations and user groups (decision 0027) ----------------------
// One self-contained step, so it can be renumbered at merge.

/// Version 13 adds user groups (`user_groups`, mutable state like circles; `group_members`,
/// derived from the Add/Remove activities that name the group), and conversations
/// (`conversation_members`, `conversation_messages`: projections of the log; `conversation_reads`:
/// read markers, kept). An existing log's direct messages are grouped once here.
fn migrate_conversations_v13(conn: &Connection) -> StoreResult<()> {
    tracing::info!("migrating the store to schema version 13 (conversations and user groups)");
    conn.execute_batch(&format!("BEGIN IMMEDIATE;\n{}", V13_TABLES))?;
    let step = crate::engine::conversations::reindex_all(conn).and_then(|_| {
        Ok(conn.execute(
            "UPDATE meta SET value = '13' WHERE key = 'schema_version'",
            [],
        )?)
    });
    match step {
        Ok(_) => conn.execute_batch("COMMIT")?,
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(e);
        }
    }
    Ok(())
}

/// The tables of schema version 13.
const V13_TABLES: &str = "
         CREATE TABLE IF NOT EXISTS user_groups (
             id              TEXT PRIMARY KEY,
             name            TEXT NOT NULL,
             owner_user_id   INTEGER,
             owner_circle_id INTEGER,
             created_at      TEXT NOT NULL
         );
         CREATE UNIQUE INDEX IF NOT EXISTS user_groups_by_person
             ON user_groups(owner_user_id, name) WHERE owner_user_id IS NOT NULL;
         CREATE UNIQUE INDEX IF NOT EXISTS user_groups_by_circle
             ON user_groups(owner_circle_id, name) WHERE owner_circle_id IS NOT NULL;
         CREATE TABLE IF NOT EXISTS group_members (
             group_id  TEXT NOT NULL,
             user_id   INTEGER NOT NULL,
             since_seq INTEGER NOT NULL,
             PRIMARY KEY (group_id, user_id)
         ) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS conversation_members (
             user_id         INTEGER NOT NULL,
             conversation_id TEXT NOT NULL,
             PRIMARY KEY (user_id, conversation_id)
         ) WITHOUT ROWID;
         CREATE INDEX IF NOT EXISTS conversation_members_by_id
             ON conversation_members(conversation_id);
         CREATE TABLE IF NOT EXISTS conversation_messages (
             conversation_id TEXT NOT NULL,
             seq             INTEGER NOT NULL,
             PRIMARY KEY (conversation_id, seq)
         ) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS conversation_reads (
             user_id         INTEGER NOT NULL,
             conversation_id TEXT NOT NULL,
             read_seq        INTEGER NOT NULL,
             PRIMARY KEY (user_id, conversation_id)
         ) WITHOUT ROWID;
";
// ---- end of schema version 13---------------------------------------------------------------

// ---- schema step: moderation (version 12) ----
/// Version 12 adds moderation's derived state (decision 0029): the report queue and circle
/// bans, plus each person's blocks and mutes (`silences`, their own settings, like hides). Both are mutable tables re-derivable from the log (the Flag and decision activities
/// carry everything); the decisions themselves are activities, appended to each circle's
/// `moderation:NAME` stream.
fn migrate_moderation_v12(conn: &Connection) -> StoreResult<()> {
    tracing::info!("migrating the store to schema version 12 (moderation)");
    conn.execute_batch(
        "BEGIN IMMEDIATE;
         CREATE TABLE IF NOT EXISTS reports (
             flag_seq     INTEGER NOT NULL,
             circle_id    INTEGER NOT NULL,
             target_seq   INTEGER NOT NULL,
             author_id    INTEGER NOT NULL,
             reporter_id  INTEGER NOT NULL,
             reason       TEXT NOT NULL,
             comment      TEXT NOT NULL,
             created_at   TEXT NOT NULL,
             decision_seq INTEGER,
             decision     TEXT,
             PRIMARY KEY (flag_seq, circle_id)
         ) WITHOUT ROWID;
         CREATE INDEX IF NOT EXISTS reports_by_target ON reports(circle_id, target_seq);
         CREATE INDEX IF NOT EXISTS reports_by_author ON reports(circle_id, author_id);
         CREATE TABLE IF NOT EXISTS circle_bans (
             circle_id INTEGER NOT NULL,
             user_id   INTEGER NOT NULL,
             until     TEXT,
             by_seq    INTEGER NOT NULL,
             PRIMARY KEY (circle_id, user_id)
         ) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS silences (
             user_id    INTEGER NOT NULL,
             actor_id   INTEGER NOT NULL,
             kind       TEXT NOT NULL,
             created_at TEXT NOT NULL,
             PRIMARY KEY (user_id, actor_id)
         ) WITHOUT ROWID;
         CREATE INDEX IF NOT EXISTS silences_by_actor ON silences(actor_id) WHERE kind = 'block';
         UPDATE meta SET value = '12' WHERE key = 'schema_version';
         COMMIT;",
    )?;
    Ok(())
}
// ---- end of schema step 12 ----

/// Version 11 (decision 0028): saved searches are subscriptions with a `search_word`, a word
/// every match contains, by which the router looks them up for each new activity's words
/// (NULL for `tag@circle` subscriptions); and the search index holds stemmed words, so an
/// existing index is re-derived. Kept in one step so it is easy to renumber.
fn migrate_saved_searches_v11(conn: &Connection) -> StoreResult<()> {
    tracing::info!(
        "migrating the store to schema version 11 (saved searches, stemmed search index)"
    );
    // A store some test took back to an older version may have the column already.
    let has_column: bool = conn.query_row(
        "SELECT EXISTS(SELECT 1 FROM pragma_table_info('subscriptions') WHERE name = 'search_word')",
        [],
        |r| r.get(0),
    )?;
    let add_column = if has_column {
        ""
    } else {
        "ALTER TABLE subscriptions ADD COLUMN search_word TEXT;"
    };
    conn.execute_batch(&format!(
        "BEGIN IMMEDIATE;
         {add_column}
         CREATE INDEX IF NOT EXISTS subscriptions_by_word ON subscriptions(search_word)
             WHERE search_word IS NOT NULL;"
    ))?;
    // The index now holds stemmed words (`tidings_core::search::words`): re-derive it.
    let done = crate::engine::search::reindex_all(conn).and_then(|_| {
        Ok(conn.execute(
            "UPDATE meta SET value = '11' WHERE key = 'schema_version'",
            [],
        )?)
    });
    match done {
        Ok(_) => conn.execute_batch("COMMIT")?,
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(e);
        }
    }
    Ok(())
}

// ---- schema version 9: subscription modes (decision 0024) -------------------------------
// One block, easy to renumber: the step's number appears only in this function's name, its
// log line and its `schema_version` update.

/// Version 9 gives bus subscriptions their modes (decision 0024): `mode` (webhook, pull,
/// stream, queue), `paused`, the target `queue` of a queue-mode subscription and a pull
/// subscription's `lease_ms`; a partial index finds a subscription's pending events in log
/// order; `bus_replies` keeps what a pull consumer answered with its ack, by event.
fn migrate_subscription_modes_v9(conn: &Connection) -> StoreResult<()> {
    tracing::info!("migrating the store to schema version 9 (subscription modes)");
    // A store already past this step (marked older by hand, as the tests do) has the columns.
    let has_mode: bool = conn.query_row(
        "SELECT EXISTS(SELECT 1 FROM pragma_table_info('bus_webhooks') WHERE name = 'mode')",
        [],
        |r| r.get(0),
    )?;
    let columns = if has_mode {
        ""
    } else {
        "ALTER TABLE bus_webhooks ADD COLUMN mode TEXT NOT NULL DEFAULT 'webhook';
         ALTER TABLE bus_webhooks ADD COLUMN paused INTEGER NOT NULL DEFAULT 0;
         ALTER TABLE bus_webhooks ADD COLUMN queue TEXT;
         ALTER TABLE bus_webhooks ADD COLUMN lease_ms INTEGER NOT NULL DEFAULT 30000;"
    };
    conn.execute_batch(&format!(
        "BEGIN IMMEDIATE;
         {columns}
         CREATE INDEX IF NOT EXISTS bus_deliveries_pending
             ON bus_deliveries(webhook_id, seq) WHERE state = 'pending';
         CREATE TABLE IF NOT EXISTS bus_replies (
             webhook_id  TEXT NOT NULL,
             seq         INTEGER NOT NULL,
             activity_id TEXT NOT NULL,
             reply       TEXT NOT NULL,
             at          TEXT NOT NULL,
             PRIMARY KEY (webhook_id, seq)
         );
         CREATE INDEX IF NOT EXISTS bus_replies_by_activity ON bus_replies(activity_id);
         UPDATE meta SET value = '9' WHERE key = 'schema_version';
         COMMIT;"
    ))?;
    Ok(())
}

// ---- schema version 10: sync replies, schedules, ordered webhooks (decision 0025) ---------
// One block, easy to renumber: the version string below and `SCHEMA_VERSION` in the
// PostgreSQL adapter (whose schema.sql has the matching block).

/// Version 10 adds the bus's sync replies (the first consumer's answer per activity), scheduled
/// and cron publishing (mutable state, not log), and per-webhook ordering. Version 9 comes first.
fn migrate_bus_schedules_v10(conn: &Connection) -> StoreResult<()> {
    tracing::info!("migrating the store to schema version 10 (bus schedules and replies)");
    // A store whose version was wound back (tests do) may have the column already.
    let ordered: bool = conn.query_row(
        "SELECT EXISTS(SELECT 1 FROM pragma_table_info('bus_webhooks') WHERE name = 'in_order')",
        [],
        |r| r.get(0),
    )?;
    let add_column = if ordered {
        ""
    } else {
        "ALTER TABLE bus_webhooks ADD COLUMN in_order INTEGER NOT NULL DEFAULT 0;"
    };
    conn.execute_batch(&format!(
        "BEGIN IMMEDIATE;
         {}
         {add_column}
         UPDATE meta SET value = '10' WHERE key = 'schema_version';
         COMMIT;",
        include_str!("schedules.sql")
    ))?;
    Ok(())
}
// ---- end of schema version 10 -----------------------------------------------------------

/// Version 7 adds the integration bus: services, topics, webhook subscriptions, deliveries and
/// their attempts (new tables only, so a store created as version 7 takes the same step).
fn migrate_integration_v7(conn: &Connection) -> StoreResult<()> {
    tracing::info!("migrating the store to schema version 7 (integration bus)");
    conn.execute_batch(&format!(
        "BEGIN IMMEDIATE;
         {}
         UPDATE meta SET value = '7' WHERE key = 'schema_version';
         COMMIT;",
        include_str!("integration.sql")
    ))?;
    Ok(())
}

/// Version 8 adds durable work queues (decision 0023): mutable work state, not log. A job's
/// `state` is 0 (waiting: ready once `visible_at` passed), 1 (leased until `visible_at`, then
/// ready again) or 2 (dead). Job ids are AUTOINCREMENT: an acked job's id is never given to
/// another (an idempotency key answers it for a day, and FIFO/LIFO order by id). Versions 6
/// (search) and 7 (the integration bus) come first.
fn migrate_queues_v8(conn: &Connection) -> StoreResult<()> {
    tracing::info!("migrating the store to schema version 8 (work queues)");
    conn.execute_batch(
        "BEGIN IMMEDIATE;
         CREATE TABLE IF NOT EXISTS queues (
             name                  TEXT PRIMARY KEY,
             discipline            TEXT NOT NULL,
             visibility_timeout_ms INTEGER NOT NULL,
             max_attempts          INTEGER NOT NULL,
             backoff_initial_ms    INTEGER NOT NULL,
             backoff_factor        REAL NOT NULL,
             backoff_max_ms        INTEGER NOT NULL,
             rate_limit            INTEGER,
             created_at            TEXT NOT NULL
         );
         CREATE TABLE IF NOT EXISTS queue_jobs (
             id          INTEGER PRIMARY KEY AUTOINCREMENT,
             queue       TEXT NOT NULL,
             payload     TEXT NOT NULL,
             priority    INTEGER NOT NULL,
             group_key   TEXT,
             state       INTEGER NOT NULL,
             visible_at  INTEGER NOT NULL,
             attempts    INTEGER NOT NULL,
             lease_token TEXT,
             enqueued_at INTEGER NOT NULL,
             last_error  TEXT
         );
         CREATE INDEX IF NOT EXISTS queue_jobs_by_id ON queue_jobs(queue, id) WHERE state < 2;
         CREATE INDEX IF NOT EXISTS queue_jobs_by_priority
             ON queue_jobs(queue, priority DESC, id) WHERE state < 2;
         CREATE INDEX IF NOT EXISTS queue_jobs_dead ON queue_jobs(queue, id) WHERE state = 2;
         CREATE TABLE IF NOT EXISTS queue_keys (
             queue      TEXT NOT NULL,
             key        TEXT NOT NULL,
             job_id     INTEGER NOT NULL,
             created_ms INTEGER NOT NULL,
             PRIMARY KEY (queue, key)
         ) WITHOUT ROWID;
         CREATE INDEX IF NOT EXISTS queue_keys_by_age ON queue_keys(created_ms);
         CREATE TABLE IF NOT EXISTS queue_counters (
             queue    TEXT NOT NULL,
             shard    INTEGER NOT NULL,
             enqueued INTEGER NOT NULL,
             acked    INTEGER NOT NULL,
             failed   INTEGER NOT NULL,
             PRIMARY KEY (queue, shard)
         ) WITHOUT ROWID;
         UPDATE meta SET value = '8' WHERE key = 'schema_version';
         COMMIT;",
    )?;
    Ok(())
}

/// Version 5 gives sessions what a device list needs: a public id, when each was last used,
/// when it expires, the user agent and address that opened it. A store created as version 5
/// already has the columns; sessions from before are named at random, count as last used when
/// they were created, and are kept 30 days from the upgrade (the default lifetime).
fn migrate_sessions_v5(conn: &Connection) -> StoreResult<()> {
    let has_id: bool = conn.query_row(
        "SELECT EXISTS(SELECT 1 FROM pragma_table_info('sessions') WHERE name = 'id')",
        [],
        |r| r.get(0),
    )?;
    tracing::info!("migrating the store to schema version 5 (session devices)");
    let add_columns = if has_id {
        ""
    } else {
        "ALTER TABLE sessions ADD COLUMN id TEXT NOT NULL DEFAULT '';
         ALTER TABLE sessions ADD COLUMN last_used_at TEXT NOT NULL DEFAULT '';
         ALTER TABLE sessions ADD COLUMN expires_at TEXT NOT NULL DEFAULT '';
         ALTER TABLE sessions ADD COLUMN user_agent TEXT;
         ALTER TABLE sessions ADD COLUMN ip TEXT;"
    };
    conn.execute_batch(&format!(
        "BEGIN IMMEDIATE;
         {add_columns}
         UPDATE sessions SET id = lower(hex(randomblob(16))) WHERE id = '';
         UPDATE sessions SET last_used_at = created_at WHERE last_used_at = '';
         UPDATE sessions SET expires_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '+30 days')
             WHERE expires_at = '';
         CREATE UNIQUE INDEX IF NOT EXISTS sessions_by_id ON sessions(id);
         UPDATE meta SET value = '5' WHERE key = 'schema_version';
         COMMIT;"
    ))?;
    Ok(())
}

/// Copies committed WAL pages into the database off the writer thread. PASSIVE never blocks
/// the writer or readers; the WAL restarts from its beginning once a pass catches up.
fn checkpoint_loop(conn: Connection, shared: Arc<Shared>) {
    use std::sync::atomic::Ordering;
    loop {
        let stopping = match &shared.backend {
            Backend::Sqlite(sqlite) => sqlite.stopping.load(Ordering::SeqCst),
            Backend::Postgres(_) => true,
        };
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
    let large = std::fs::metadata(wal_path(shared)).is_ok_and(|m| m.len() > WAL_FINALIZE_BYTES);
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
            // In-process statements are cheap; a slice is bounded by its size (and each
            // commit costs an fsync, so fewer, larger slices are faster).
            max_deliveries: router::EMBEDDED_SLICE_DELIVERIES,
            max_slice: None,
        },
        &mut fx,
    );
    let took = started.elapsed();
    if took > SLOW {
        tracing::warn!(ms = took.as_millis() as u64, "slow routing slice");
    }
    match outcome {
        Ok((routed, more)) => {
            shared.apply_change(fx.list, Some(routed));
            more
        }
        Err(e) => {
            tracing::error!(error = %e, "routing failed; will retry");
            std::thread::sleep(std::time::Duration::from_millis(100));
            true
        }
    }
}
