//! Users and sessions.

use super::{Effects, Store};
use crate::hot::{ActorInfo, Effect};
use crate::model::{User, UserStatus};
use crate::sql::{Connection, OptionalExtension, Row, params};
use crate::{StoreError, StoreResult, now_rfc3339};

const USER_COLUMNS: &str = "id, username, display_name, is_admin, status, created_at";

fn user_from_row(row: &Row<'_>) -> crate::sql::Result<User> {
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

/// Creates a user; `username_taken` if the name exists (deleted names stay taken).
pub(crate) fn insert_user(
    conn: &Connection,
    fx: &mut Effects,
    username: &str,
    display_name: &str,
    password_hash: Option<String>,
    is_admin: bool,
) -> StoreResult<User> {
    let taken: bool = conn
        .prepare_cached("SELECT EXISTS(SELECT 1 FROM users WHERE username = ?1)")?
        .query_row([username], |r| r.get(0))?;
    if taken {
        return Err(StoreError::conflict(
            "username_taken",
            format!("the username {username:?} is taken"),
        ));
    }
    let id: i64 = conn
        .prepare_cached(
            "INSERT INTO users(username, display_name, password_hash, is_admin, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
        )?
        .query_row(
            params![
                username,
                display_name,
                password_hash,
                is_admin,
                now_rfc3339()
            ],
            |r| r.get(0),
        )?;
    let user = user_by_id(conn, id)?;
    user_effect(fx, &user);
    Ok(user)
}

/// Records a session token (stored hashed).
pub(crate) fn insert_session(conn: &Connection, user_id: i64, token_hash: &str) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO sessions(token_hash, user_id, created_at) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![token_hash, user_id, now_rfc3339()])?;
    Ok(())
}

/// Records a user's shown facts for the hot index.
fn user_effect(fx: &mut Effects, user: &User) {
    fx.push(Effect::User {
        id: user.id,
        info: ActorInfo::new(
            user.username.clone(),
            user.display_name.clone(),
            user.status == UserStatus::Deleted,
        ),
        admin: user.is_admin,
    });
}

/// The largest seq in the log (0 when empty); exact on the writer thread.
pub(crate) fn last_seq(conn: &Connection) -> StoreResult<i64> {
    Ok(conn
        .prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM activities")?
        .query_row([], |r| r.get(0))?)
}

impl Store {
    /// Creates a user; `username_taken` if the name exists (deleted names stay taken).
    pub async fn create_user(
        &self,
        username: String,
        display_name: String,
        password_hash: Option<String>,
        is_admin: bool,
    ) -> StoreResult<User> {
        self.write(move |conn, fx| {
            insert_user(conn, fx, &username, &display_name, password_hash, is_admin)
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
        self.write(move |conn, _fx| insert_session(conn, user_id, &token_hash))
            .await
    }

    /// The user a live (unrevoked) session token belongs to (cached; revocation and status
    /// changes invalidate the cache before they are acknowledged).
    pub async fn session_user(&self, token_hash: String) -> StoreResult<Option<User>> {
        if let Some(user) = self.shared.sessions.get(&token_hash) {
            return Ok(Some(user));
        }
        let key = token_hash.clone();
        let generation = *self.shared.session_changes.borrow();
        let user = self
            .read(move |conn| {
                Ok(conn
                    .prepare_cached(
                        "SELECT u.id, u.username, u.display_name, u.is_admin, u.status, u.created_at
                         FROM sessions s JOIN users u ON u.id = s.user_id
                         WHERE s.token_hash = ?1 AND s.revoked_at IS NULL",
                    )?
                    .query_row([key], user_from_row)
                    .optional()?)
            })
            .await?;
        // Only cache what no revocation raced with.
        if let Some(user) = &user
            && *self.shared.session_changes.borrow() == generation
        {
            self.shared.sessions.insert(token_hash, user.clone());
        }
        Ok(user)
    }

    /// Revokes one session token.
    pub async fn revoke_session(&self, token_hash: String) -> StoreResult<()> {
        let key = token_hash.clone();
        self.write(move |conn, fx| {
            conn.prepare_cached(
                "UPDATE sessions SET revoked_at = ?2 WHERE token_hash = ?1 AND revoked_at IS NULL",
            )?
            .execute(params![key, now_rfc3339()])?;
            fx.push(Effect::Sessions);
            Ok(())
        })
        .await?;
        // Bump first: a session read that raced the revocation then refuses to cache it.
        self.shared.session_changes.send_modify(|g| *g += 1);
        self.shared.sessions.invalidate(&token_hash);
        Ok(())
    }

    /// Sets a user's status. Suspending or deleting revokes every session; deleting also
    /// closes the user's subscriptions so nothing more is routed to it.
    pub async fn set_user_status(&self, username: &str, status: UserStatus) -> StoreResult<User> {
        let username = username.to_owned();
        let result = self.write(move |conn, fx| {
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
                fx.push(Effect::Close {
                    user: user.id,
                    id: None,
                    circle: None,
                    until: seq,
                });
                conn.prepare_cached("UPDATE users SET password_hash = NULL WHERE id = ?1")?
                    .execute([user.id])?;
                // A deleted account leaves its circles (owners stay, so circles keep an owner).
                conn.prepare_cached("DELETE FROM memberships WHERE user_id = ?1 AND role != 'owner'")?
                    .execute([user.id])?;
            }
            let user = user_by_id(conn, user.id)?;
            user_effect(fx, &user);
            fx.push(Effect::Sessions);
            Ok(user)
        })
        .await;
        // Sessions were revoked (or the user changed): drop every cached session.
        self.shared.session_changes.send_modify(|g| *g += 1);
        self.shared.sessions.invalidate_all();
        result
    }

    /// Number of users (for first-run checks and tests).
    pub async fn user_count(&self) -> StoreResult<i64> {
        self.read(|conn| Ok(conn.query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0))?))
            .await
    }
}
