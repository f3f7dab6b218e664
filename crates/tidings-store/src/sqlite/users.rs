//! Users and sessions.

use super::SqliteStore;
use crate::model::{User, UserStatus};
use crate::{StoreError, StoreResult, now_rfc3339};
use rusqlite::{Connection, OptionalExtension, Row, params};

const USER_COLUMNS: &str = "id, username, display_name, is_admin, status, created_at";

fn user_from_row(row: &Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: row.get(0)?,
        username: row.get(1)?,
        display_name: row.get(2)?,
        is_admin: row.get(3)?,
        status: UserStatus::from_db(&row.get::<_, String>(4)?),
        created_at: row.get(5)?,
    })
}

/// Looks a user up by name on any connection.
pub(crate) fn user_by_name(conn: &Connection, username: &str) -> StoreResult<User> {
    conn.prepare_cached(&format!(
        "SELECT {USER_COLUMNS} FROM users WHERE username = ?1"
    ))?
    .query_row([username], user_from_row)
    .optional()?
    .ok_or(StoreError::not_found("user"))
}

/// Looks a user up by id.
pub(crate) fn user_by_id(conn: &Connection, id: i64) -> StoreResult<User> {
    conn.prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"))?
        .query_row([id], user_from_row)
        .optional()?
        .ok_or(StoreError::not_found("user"))
}

/// The largest seq in the log (0 when empty); exact on the writer thread.
pub(crate) fn last_seq(conn: &Connection) -> StoreResult<i64> {
    Ok(conn
        .prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM activities")?
        .query_row([], |r| r.get(0))?)
}

impl SqliteStore {
    /// Creates a user; `username_taken` if the name exists (deleted names stay taken).
    pub async fn create_user(
        &self,
        username: String,
        display_name: String,
        password_hash: Option<String>,
        is_admin: bool,
    ) -> StoreResult<User> {
        self.write(move |conn| {
            let taken: bool = conn
                .prepare_cached("SELECT EXISTS(SELECT 1 FROM users WHERE username = ?1)")?
                .query_row([&username], |r| r.get(0))?;
            if taken {
                return Err(StoreError::conflict(
                    "username_taken",
                    format!("the username {username:?} is taken"),
                ));
            }
            conn.prepare_cached(
                "INSERT INTO users(username, display_name, password_hash, is_admin, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                username,
                display_name,
                password_hash,
                is_admin,
                now_rfc3339()
            ])?;
            user_by_id(conn, conn.last_insert_rowid())
        })
        .await
    }

    /// Returns a user by name.
    pub async fn user(&self, username: &str) -> StoreResult<User> {
        let username = username.to_owned();
        self.read(move |conn| user_by_name(conn, &username)).await
    }

    /// Returns a user with its password hash, for login.
    pub async fn user_with_password(&self, username: &str) -> StoreResult<(User, Option<String>)> {
        let username = username.to_owned();
        self.read(move |conn| {
            let user = user_by_name(conn, &username)?;
            let hash: Option<String> = conn
                .prepare_cached("SELECT password_hash FROM users WHERE id = ?1")?
                .query_row([user.id], |r| r.get(0))?;
            Ok((user, hash))
        })
        .await
    }

    /// Records a new session token (stored hashed).
    pub async fn create_session(&self, user_id: i64, token_hash: String) -> StoreResult<()> {
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO sessions(token_hash, user_id, created_at) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![token_hash, user_id, now_rfc3339()])?;
            Ok(())
        })
        .await
    }

    /// The user a live (unrevoked) session token belongs to.
    pub async fn session_user(&self, token_hash: String) -> StoreResult<Option<User>> {
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(&format!(
                    "SELECT {} FROM sessions s JOIN users u ON u.id = s.user_id
                     WHERE s.token_hash = ?1 AND s.revoked_at IS NULL",
                    USER_COLUMNS
                        .split(", ")
                        .map(|c| format!("u.{c}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))?
                .query_row([token_hash], user_from_row)
                .optional()?)
        })
        .await
    }

    /// Revokes one session token.
    pub async fn revoke_session(&self, token_hash: String) -> StoreResult<()> {
        self.write(move |conn| {
            conn.prepare_cached(
                "UPDATE sessions SET revoked_at = ?2 WHERE token_hash = ?1 AND revoked_at IS NULL",
            )?
            .execute(params![token_hash, now_rfc3339()])?;
            Ok(())
        })
        .await
    }

    /// Sets a user's status. Suspending or deleting revokes every session; deleting also
    /// closes the user's subscriptions so nothing more is routed to it.
    pub async fn set_user_status(&self, username: &str, status: UserStatus) -> StoreResult<User> {
        let username = username.to_owned();
        self.write(move |conn| {
            let user = user_by_name(conn, &username)?;
            if user.status == UserStatus::Deleted {
                return Err(StoreError::conflict(
                    "user_deleted",
                    "the user is deleted; its state cannot change",
                ));
            }
            conn.prepare_cached("UPDATE users SET status = ?2 WHERE id = ?1")?
                .execute(params![user.id, status.as_str()])?;
            if status != UserStatus::Active {
                conn.prepare_cached(
                    "UPDATE sessions SET revoked_at = ?2 WHERE user_id = ?1 AND revoked_at IS NULL",
                )?
                .execute(params![user.id, now_rfc3339()])?;
            }
            if status == UserStatus::Deleted {
                let seq = last_seq(conn)?;
                conn.prepare_cached(
                    "UPDATE subscriptions SET until_seq = ?2 WHERE user_id = ?1 AND until_seq IS NULL",
                )?
                .execute(params![user.id, seq])?;
                conn.prepare_cached("UPDATE users SET password_hash = NULL WHERE id = ?1")?
                    .execute([user.id])?;
            }
            user_by_id(conn, user.id)
        })
        .await
    }

    /// Number of users (for first-run checks and tests).
    pub async fn user_count(&self) -> StoreResult<i64> {
        self.read(|conn| Ok(conn.query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0))?))
            .await
    }
}
