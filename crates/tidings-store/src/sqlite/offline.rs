//! Operations the command line runs next to a live server: create users and tokens, verify.
//!
//! They use a plain connection and never the writer, the hot index or the data-dir lock, so
//! `tidings admin …` and `tidings verify` work whether or not `tidings serve` is running.
//! SQLite serialises the writes; a running server sees the new user and session on its next
//! lookup (both are read from the tables on a cache miss).

use super::users::{insert_session, insert_user, user_by_name};
use super::verify::{VerifyReport, verify_log};
use super::{Effects, SqliteStore, StoreConfig, open_connection};
use crate::StoreResult;
use crate::model::User;
use rusqlite::Connection;
use std::path::Path;

/// A connection for offline administration.
pub struct AdminConnection {
    conn: Connection,
}

impl AdminConnection {
    /// Opens the store in `data_dir`, creating and migrating it first if no server has yet.
    pub fn open(data_dir: &Path) -> StoreResult<AdminConnection> {
        let path = data_dir.join("tidings.db");
        if !path.exists() {
            // First run: let the full store create the schema, then let go of it.
            SqliteStore::open(data_dir, StoreConfig::default())?.close();
        }
        Ok(AdminConnection {
            conn: open_connection(&path, false)?,
        })
    }

    fn transaction<R>(&self, f: impl FnOnce(&Connection) -> StoreResult<R>) -> StoreResult<R> {
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        match f(&self.conn) {
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

    /// Creates a user (see `SqliteStore::create_user`).
    pub fn create_user(
        &self,
        username: &str,
        display_name: &str,
        password_hash: Option<String>,
        is_admin: bool,
    ) -> StoreResult<User> {
        self.transaction(|conn| {
            // A server's index learns of the user on restart; until then its activities
            // render through the tables, which always know it.
            insert_user(
                conn,
                &mut Effects::default(),
                username,
                display_name,
                password_hash,
                is_admin,
            )
        })
    }

    /// A user by name.
    pub fn user(&self, username: &str) -> StoreResult<User> {
        user_by_name(&self.conn, username)
    }

    /// Records a new session token (stored hashed).
    pub fn create_session(&self, user_id: i64, token_hash: &str) -> StoreResult<()> {
        self.transaction(|conn| insert_session(conn, user_id, token_hash))
    }

    /// Re-checks every digest and chain on one consistent snapshot.
    pub fn verify(&self) -> StoreResult<VerifyReport> {
        self.conn.execute_batch("BEGIN")?;
        let report = verify_log(&self.conn);
        let _ = self.conn.execute_batch("COMMIT");
        report
    }
}
