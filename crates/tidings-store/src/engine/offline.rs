//! Operations the command line runs next to a live server: create users and tokens, verify.
//!
//! They use a plain connection and never the writer, the hot index or the data-dir lock, so
//! `tidings admin …` and `tidings verify` work whether or not `tidings serve` is running.
//! Embedded: SQLite serialises the writes; a running server sees the new user and session on
//! its next lookup (both are read from the tables on a cache miss). PostgreSQL: the write takes
//! the log lock and records its change, so every running node learns of it at once.

use super::Effects;
use super::users::{insert_session, insert_user, user_by_name};
use super::verify::verify_log;
use crate::adapters::{self, StoreLocation};
use crate::model::{NewSession, User, VerifyReport};
use crate::sql::{Connection, Engine};
use crate::{StoreConfig, StoreResult};

/// A connection for offline administration.
pub struct AdminConnection {
    conn: Connection,
}

impl AdminConnection {
    /// Opens the store at `location`, creating and migrating it first if no server has yet.
    pub fn open(location: &StoreLocation) -> StoreResult<AdminConnection> {
        let conn = match location {
            StoreLocation::Embedded(dir) => {
                if !dir.join("tidings.db").exists() {
                    // First run: let the full store create the schema, then let go of it.
                    crate::Store::open(location, StoreConfig::default())?.close();
                }
                adapters::sqlite::open_plain(dir)?
            }
            StoreLocation::Postgres(url) => {
                let conn = adapters::postgres::connect(url)?;
                adapters::postgres::migrate(&conn)?;
                conn
            }
        };
        Ok(AdminConnection { conn })
    }

    fn transaction<R>(
        &self,
        f: impl FnOnce(&Connection, &mut Effects) -> StoreResult<R>,
    ) -> StoreResult<R> {
        adapters::begin_write(&self.conn)?;
        let mut fx = Effects::default();
        let outcome = f(&self.conn, &mut fx)
            .and_then(|r| adapters::record_change(&self.conn, &fx.list, None, true).map(|_| r));
        match outcome {
            Ok(r) => {
                self.conn.execute_batch("COMMIT")?;
                Ok(r)
            }
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }

    /// Creates a user (see `Store::create_user`).
    pub fn create_user(
        &self,
        username: &str,
        display_name: &str,
        password_hash: Option<String>,
        is_admin: bool,
    ) -> StoreResult<User> {
        self.transaction(|conn, fx| {
            // Embedded: a server's index learns of the user on restart; until then its
            // activities render through the tables, which always know it.
            insert_user(conn, fx, username, display_name, password_hash, is_admin)
        })
    }

    /// A user by name.
    pub fn user(&self, username: &str) -> StoreResult<User> {
        user_by_name(&self.conn, username)
    }

    /// Records a new session token (stored hashed).
    pub fn create_session(&self, user_id: i64, token_hash: &str) -> StoreResult<()> {
        let session = NewSession::plain(token_hash.to_owned());
        self.transaction(|conn, _fx| insert_session(conn, user_id, &session).map(|_| ()))
    }

    /// Re-checks every digest and chain on one consistent snapshot.
    pub fn verify(&self) -> StoreResult<VerifyReport> {
        begin_snapshot(&self.conn)?;
        let report = verify_log(&self.conn);
        let _ = self.conn.execute_batch("COMMIT");
        report
    }
}

/// Starts a read-only transaction that sees one consistent state of the database.
pub(crate) fn begin_snapshot(conn: &Connection) -> StoreResult<()> {
    Ok(conn.execute_batch(match conn.engine() {
        Engine::Sqlite => "BEGIN",
        Engine::Postgres => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
    })?)
}
