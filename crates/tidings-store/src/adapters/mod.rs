//! Where the store's SQL runs: the embedded SQLite database (the default) or PostgreSQL (cluster
//! mode). The domain code in `crate::engine` is the same for both; an adapter owns connections,
//! the writer, the schema and its migrations, and how committed changes reach the read index.

pub(crate) mod postgres;
pub(crate) mod sqlite;

use crate::hot::Effect;
use crate::sql::{Connection, Engine};
use crate::{StoreError, StoreResult};

/// The adapter behind a [`crate::Store`].
pub(crate) enum Backend {
    /// The embedded database.
    Sqlite(sqlite::SqliteBackend),
    /// PostgreSQL, shared by every node of a cluster.
    Postgres(postgres::PgBackend),
}

impl Backend {
    /// Which engine this is.
    pub(crate) fn engine(&self) -> Engine {
        match self {
            Backend::Sqlite(_) => Engine::Sqlite,
            Backend::Postgres(_) => Engine::Postgres,
        }
    }

    /// Queues a write job for this node's writer.
    pub(crate) fn submit(&self, job: crate::engine::Job) -> StoreResult<()> {
        match self {
            Backend::Sqlite(b) => b.submit(job),
            Backend::Postgres(b) => b.submit(job),
        }
    }

    /// A connection for reads.
    pub(crate) fn take_reader(&self) -> StoreResult<Connection> {
        match self {
            Backend::Sqlite(b) => b.take_reader(),
            Backend::Postgres(b) => b.take_reader(),
        }
    }

    /// Returns a reader connection to the pool.
    pub(crate) fn give_back(&self, conn: Connection, max: usize) {
        match self {
            Backend::Sqlite(b) => b.give_back(conn, max),
            Backend::Postgres(b) => b.give_back(conn, max),
        }
    }

    /// Why a queued write was dropped without running.
    pub(crate) fn refusal(&self) -> StoreError {
        match self {
            Backend::Postgres(b) if !b.is_stopping() => {
                StoreError::Unavailable("the writer cannot reach PostgreSQL".into())
            }
            _ => StoreError::Closed,
        }
    }

    /// Stops the background threads after they finish what they hold.
    pub(crate) fn close(&self) {
        match self {
            Backend::Sqlite(b) => b.close(),
            Backend::Postgres(b) => b.close(),
        }
    }
}

/// Opens a write transaction. SQLite takes the database's write lock; PostgreSQL takes the log
/// lock (the `log_head` row), which every writer of every node takes first, so write
/// transactions commit one after the other and the log's seqs are gap-free in commit order.
pub(crate) fn begin_write(conn: &Connection) -> StoreResult<()> {
    match conn.engine() {
        Engine::Sqlite => Ok(conn.execute_batch("BEGIN IMMEDIATE")?),
        Engine::Postgres => {
            conn.execute_batch("BEGIN")?;
            conn.query_row(
                "SELECT change_seq FROM log_head WHERE id = 1 FOR UPDATE",
                [],
                |r| r.get::<_, i64>(0),
            )?;
            Ok(())
        }
    }
}

/// Before COMMIT: in PostgreSQL, appends the transaction's effects to the change log every
/// node applies (with the new routed watermark when it routed). `writes`: the transaction
/// wrote more than a routing step (a writer's batch). Nothing in SQLite, whose one process
/// applies its effects itself.
/// Returns the change's number, if one was recorded.
pub(crate) fn record_change(
    conn: &Connection,
    effects: &[Effect],
    routed: Option<i64>,
    writes: bool,
) -> StoreResult<Option<i64>> {
    match conn.engine() {
        Engine::Sqlite => Ok(None),
        Engine::Postgres => postgres::append_change(conn, effects, routed, writes),
    }
}

/// Where a store lives: a data directory (embedded) or a PostgreSQL URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// The embedded database in this directory.
    Embedded(std::path::PathBuf),
    /// A PostgreSQL database.
    Postgres(String),
}

impl StoreLocation {
    /// `postgres://…` or `postgresql://…` is PostgreSQL; anything else is a directory.
    pub fn parse(text: &str) -> StoreLocation {
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            StoreLocation::Postgres(text.to_owned())
        } else {
            StoreLocation::Embedded(text.into())
        }
    }

    /// What to print about it (a URL without its password).
    pub fn describe(&self) -> String {
        match self {
            StoreLocation::Embedded(dir) => dir.display().to_string(),
            StoreLocation::Postgres(url) => match url.split_once('@') {
                Some((auth, host)) => match auth.rsplit_once(':') {
                    Some((user, _)) if !user.ends_with('/') => format!("{user}:***@{host}"),
                    _ => url.clone(),
                },
                None => url.clone(),
            },
        }
    }
}

/// Refuses a PostgreSQL error that means the data broke a rule of the schema.
pub(crate) fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}
