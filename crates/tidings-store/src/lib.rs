//! The Tidings store: the log of immutable activities and the projections derived from it.
//!
//! Layout:
//! - [`model`] — records the store returns (users, circles, activities, inbox pages), shared by
//!   every adapter.
//! - `hot` — the in-memory index inbox reads are served from (derived, rebuilt at start-up).
//! - [`queues`] — work queues' records (definitions, jobs, counts); their SQL is in
//!   `engine::queues`.
//! - [`media`] — media objects' records (uploads, their sizes, avatars); their SQL is in
//!   `engine::media`.
//! - [`error`] — [`StoreError`], the typed failures the HTTP edge maps to statuses.
//! - `engine` — the domain operations (publish, route, feeds, circles, follows, verify),
//!   written once over [`sql::Connection`]: the same code runs on both stores.
//! - `adapters` — where that SQL runs: `sqlite` (embedded, the default: one writer thread with
//!   group commit, a reader pool) and `postgres` (cluster mode: a writer per node serialised by
//!   the log lock, a change log every node applies, one router chosen by an advisory lock).
//! - [`sql`] — the connection type both adapters provide, and the portable SQL rules.
//!
//! [`Store`] is the port the engine talks to. Its methods speak the domain (publish, read an
//! inbox, join a circle), never SQL; [`Store::open`] picks the adapter from a
//! [`StoreLocation`].

pub(crate) mod adapters;
pub(crate) mod engine;
pub mod error;
pub(crate) mod hot;
pub mod media;
pub mod model;
pub mod queues;
pub mod sql;

pub use adapters::StoreLocation;
pub use adapters::postgres::create_database as create_postgres_database;
pub use adapters::sqlite::backup::{
    BackupManifest, BackupReport, backup_embedded, restore_embedded,
};
pub use engine::copy::{CopyReport, copy_store};
pub use engine::moderation::{DecisionInput, SilenceKind};
pub use engine::rebuild::{RebuildReport, rebuild};
pub use engine::{AdminConnection, Store, StoreConfig};
pub use error::StoreError;

impl Store {
    /// Opens the store at `location` (creating and migrating it if needed) and starts its
    /// writer and router.
    pub fn open(location: &StoreLocation, config: StoreConfig) -> StoreResult<Store> {
        match location {
            StoreLocation::Embedded(dir) => adapters::sqlite::open(dir, config),
            StoreLocation::Postgres(url) => adapters::postgres::open(url, config),
        }
    }

    /// Creates or upgrades the schema at `location` without starting anything
    /// (`tidings migrate`). Safe while other nodes run: migrations take a lock. With
    /// `grant_to` (PostgreSQL), also grants that role what a server needs: INSERT and SELECT
    /// only on the log tables.
    pub fn migrate(location: &StoreLocation, grant_to: Option<&str>) -> StoreResult<()> {
        match location {
            StoreLocation::Embedded(dir) => {
                if grant_to.is_some() {
                    return Err(StoreError::unprocessable(
                        "grants_need_postgres",
                        "--grant-to is for PostgreSQL; the embedded store has no roles",
                    ));
                }
                adapters::sqlite::open(dir, StoreConfig::default())?.close();
                Ok(())
            }
            StoreLocation::Postgres(url) => adapters::postgres::off_async(|| {
                let conn = adapters::postgres::connect(url)?;
                adapters::postgres::migrate(&conn)?;
                match grant_to {
                    Some(role) => adapters::postgres::grant_to(&conn, role),
                    None => Ok(()),
                }
            }),
        }
    }
}

/// Result alias for store operations.
pub type StoreResult<T> = Result<T, StoreError>;

/// Current time as RFC 3339 with milliseconds, UTC.
pub fn now_rfc3339() -> String {
    now_with_unix().0
}

/// Current time as RFC 3339 with milliseconds, UTC, and as unix seconds.
pub fn now_with_unix() -> (String, i64) {
    let now = time::OffsetDateTime::now_utc();
    (format_time(now), now.unix_timestamp())
}

pub(crate) fn format_time(now: time::OffsetDateTime) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    now.format(&format)
        .unwrap_or_else(|_| now.unix_timestamp().to_string())
}

/// An RFC 3339 time in any offset, rewritten as [`now_rfc3339`] writes it (UTC, milliseconds),
/// so stored times compare as text; None if it does not parse or is out of range.
pub fn canonical_time(text: &str) -> Option<String> {
    let at = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .ok()?
        .to_offset(time::UtcOffset::UTC);
    (1..=9999).contains(&at.year()).then(|| format_time(at))
}

/// The time `after` from now, written as [`now_rfc3339`] writes it.
pub(crate) fn rfc3339_after(after: std::time::Duration) -> String {
    let span = time::Duration::try_from(after).unwrap_or(time::Duration::MAX);
    let then = time::OffsetDateTime::now_utc()
        .checked_add(span)
        .unwrap_or(time::PrimitiveDateTime::MAX.assume_utc());
    format_time(then)
}

/// The time `before` ago, written as [`now_rfc3339`] writes it.
pub(crate) fn rfc3339_before(before: std::time::Duration) -> String {
    let span = time::Duration::try_from(before).unwrap_or(time::Duration::MAX);
    let then = time::OffsetDateTime::now_utc()
        .checked_sub(span)
        .unwrap_or(time::PrimitiveDateTime::MIN.assume_utc());
    format_time(then)
}

/// Unix milliseconds of a stored RFC 3339 time; None if it does not parse.
pub(crate) fn unix_ms(text: &str) -> Option<i64> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .ok()
        .and_then(|t| i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok())
}

/// Now, in unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000)
        .unwrap_or(i64::MAX)
}
