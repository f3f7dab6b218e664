//! The Tidings store: the log of immutable activities and the projections derived from it.
//!
//! Layout:
//! - [`model`] — records the store returns (users, circles, activities, inbox pages), shared by
//!   every adapter.
//! - `hot` — the in-memory index inbox reads are served from (derived, rebuilt at start-up).
//! - [`error`] — [`StoreError`], the typed failures the HTTP edge maps to statuses.
//! - [`sqlite`] — the embedded adapter (the default): one writer thread with group commit, a
//!   pool of readers, the router that fans activities out, and `verify`.
//!
//! [`Store`] is the port the engine talks to. Its methods speak the domain (publish, read an
//! inbox, join a circle), never SQL, so a PostgreSQL adapter can sit behind the same methods.

pub mod error;
pub(crate) mod hot;
pub mod model;
pub mod sqlite;

pub use error::StoreError;
pub use sqlite::SqliteStore as Store;

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

fn format_time(now: time::OffsetDateTime) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    now.format(&format)
        .unwrap_or_else(|_| now.unix_timestamp().to_string())
}
