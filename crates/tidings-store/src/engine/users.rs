//! Users and sessions.

use super::{Effects, Store};
use crate::hot::{ActorInfo, Effect};
use crate::model::{LiveSession, NewSession, SessionInfo, SessionLookup, User, UserStatus};
use crate::sql::{Connection, OptionalExtension, Row, params};
use crate::{StoreError, StoreResult, now_ms, now_rfc3339, rfc3339_after, rfc3339_before, unix_ms};

pub(crate) const USER_COLUMNS: &str = "id, username, display_name, is_admin, status, created_at";

pub(crate) fn user_from_row(row: &Row<'_>) -> crate::sql::Result<User> {
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

/// Records a session (its token stored hashed) and returns it as its device list shows it.
pub(crate) fn insert_session(
    conn: &Connection,
    user_id: i64,
    session: &NewSession,
) -> StoreResult<SessionInfo> {
    let now = now_rfc3339();
    let info = SessionInfo {
        id: uuid::Uuid::now_v7().simple().to_string(),
        created_at: now.clone(),
        last_used_at: now,
        expires_at: rfc3339_after(session.ttl),
        user_agent: session.user_agent.clone(),
        ip: session.ip.clone(),
        current: true,
    };
    conn.prepare_cached(
        "INSERT INTO sessions(token_hash, user_id, created_at, id, last_used_at, expires_at,
                              user_agent, ip)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        session.token_hash,
        user_id,
        info.created_at,
        info.id,
        info.last_used_at,
        info.expires_at,
        info.user_agent,
        info.ip
    ])?;
    Ok(info)
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

    /// Records a new session token (stored hashed) with the default lifetime and no device
    /// details.
    pub async fn create_session(&self, user_id: i64, token_hash: String) -> StoreResult<()> {
        self.open_session(user_id, NewSession::plain(token_hash))
            .await
            .map(|_| ())
    }

    /// Records a new session and returns it as the device list shows it.
    pub async fn open_session(
        &self,
        user_id: i64,
        session: NewSession,
    ) -> StoreResult<SessionInfo> {
        self.write(move |conn, _fx| insert_session(conn, user_id, &session))
            .await
    }

    /// The user a live (unrevoked, unexpired) session token belongs to.
    pub async fn session_user(&self, token_hash: String) -> StoreResult<Option<User>> {
        Ok(match self.session(token_hash).await? {
            SessionLookup::Live(session) => Some(session.user),
            SessionLookup::Expired | SessionLookup::Unknown => None,
        })
    }

    /// What a token is: a live session (cached per node; revocation and status changes
    /// invalidate the cache before they are acknowledged), an expired one, or nothing.
    pub async fn session(&self, token_hash: String) -> StoreResult<SessionLookup> {
        if let Some(session) = self.shared.sessions.get(&token_hash) {
            if session.expires_ms > now_ms() {
                return Ok(SessionLookup::Live(session));
            }
            // Expired here, but another node may have used (and extended) it since: ask.
            self.shared.sessions.invalidate(&token_hash);
        }
        let key = token_hash.clone();
        let generation = *self.shared.session_changes.borrow();
        let found = self
            .read(move |conn| {
                Ok(conn
                    .prepare_cached(
                        "SELECT u.id, u.username, u.display_name, u.is_admin, u.status, u.created_at,
                                s.id, s.last_used_at, s.expires_at
                         FROM sessions s JOIN users u ON u.id = s.user_id
                         WHERE s.token_hash = ?1 AND s.revoked_at IS NULL",
                    )?
                    .query_row([key], |row| {
                        Ok((
                            user_from_row(row)?,
                            row.get::<_, String>(6)?,
                            row.get::<_, String>(7)?,
                            row.get::<_, String>(8)?,
                        ))
                    })
                    .optional()?)
            })
            .await?;
        let Some((user, id, last_used_at, expires_at)) = found else {
            return Ok(SessionLookup::Unknown);
        };
        // A time that does not parse counts as expired: refuse rather than keep a token forever.
        let expires_ms = unix_ms(&expires_at).unwrap_or(i64::MIN);
        if expires_ms <= now_ms() {
            return Ok(SessionLookup::Expired);
        }
        let session = LiveSession {
            user,
            id,
            last_used_ms: unix_ms(&last_used_at).unwrap_or(i64::MIN),
            expires_ms,
        };
        // Only cache what no revocation raced with.
        if *self.shared.session_changes.borrow() == generation {
            self.shared.sessions.insert(token_hash, session.clone());
        }
        Ok(SessionLookup::Live(session))
    }

    /// Marks a live session used now: it expires `ttl` from now. The cached copy changes
    /// first, so requests arriving meanwhile do not refresh it again; a revoked or expired
    /// session is left alone.
    pub async fn touch_session(
        &self,
        token_hash: String,
        ttl: std::time::Duration,
    ) -> StoreResult<()> {
        let now = now_rfc3339();
        let expires_at = rfc3339_after(ttl);
        let (now_at, expires_ms) = (now_ms(), unix_ms(&expires_at).unwrap_or(i64::MAX));
        // Changes only an entry that is there: a revocation's invalidation is never undone.
        self.shared
            .sessions
            .entry_by_ref(&token_hash)
            .and_compute_with(|entry| match entry {
                Some(entry) => {
                    let mut session = entry.into_value();
                    session.last_used_ms = now_at;
                    session.expires_ms = expires_ms;
                    moka::ops::compute::Op::Put(session)
                }
                None => moka::ops::compute::Op::Nop,
            });
        self.write(move |conn, _fx| {
            conn.prepare_cached(
                "UPDATE sessions SET last_used_at = ?2, expires_at = ?3
                 WHERE token_hash = ?1 AND revoked_at IS NULL AND expires_at > ?2",
            )?
            .execute(params![token_hash, now, expires_at])?;
            Ok(())
        })
        .await
    }

    /// A user's live sessions, most recently used first; `current` marks the caller's.
    pub async fn sessions_of(
        &self,
        user_id: i64,
        current_token_hash: String,
    ) -> StoreResult<Vec<SessionInfo>> {
        self.read(move |conn| {
            let rows = conn
                .prepare_cached(
                    "SELECT id, created_at, last_used_at, expires_at, user_agent, ip, token_hash
                     FROM sessions
                     WHERE user_id = ?1 AND revoked_at IS NULL AND expires_at > ?2
                     ORDER BY last_used_at DESC, created_at DESC, id",
                )?
                .query_map(params![user_id, now_rfc3339()], |row| {
                    Ok(SessionInfo {
                        id: row.get(0)?,
                        created_at: row.get(1)?,
                        last_used_at: row.get(2)?,
                        expires_at: row.get(3)?,
                        user_agent: row.get(4)?,
                        ip: row.get(5)?,
                        current: row.get::<_, String>(6)? == current_token_hash,
                    })
                })?;
            let mut sessions = Vec::new();
            for row in rows {
                sessions.push(row?);
            }
            Ok(sessions)
        })
        .await
    }

    /// Revokes one of a user's live sessions by its public id; `not_found` if the user has no
    /// such live session (another user's id is not found either).
    pub async fn revoke_session_by_id(&self, user_id: i64, id: String) -> StoreResult<()> {
        let revoked = self
            .write(move |conn, fx| {
                let now = now_rfc3339();
                let hash: Option<String> = conn
                    .prepare_cached(
                        "UPDATE sessions SET revoked_at = ?3
                         WHERE id = ?1 AND user_id = ?2 AND revoked_at IS NULL AND expires_at > ?3
                         RETURNING token_hash",
                    )?
                    .query_row(params![id, user_id, now], |r| r.get(0))
                    .optional()?;
                let hash = hash.ok_or(StoreError::not_found("session"))?;
                fx.push(Effect::Sessions);
                Ok(hash)
            })
            .await?;
        self.shared.session_changes.send_modify(|g| *g += 1);
        self.shared.sessions.invalidate(&revoked);
        Ok(())
    }

    /// Sets a new password hash for an active user and revokes every other session of theirs
    /// (`keep_token_hash` stays); returns how many were revoked.
    pub async fn change_password(
        &self,
        user_id: i64,
        password_hash: String,
        keep_token_hash: String,
    ) -> StoreResult<usize> {
        let result = self
            .write(move |conn, fx| {
                let changed = conn
                    .prepare_cached(
                        "UPDATE users SET password_hash = ?2 WHERE id = ?1 AND status = 'active'",
                    )?
                    .execute(params![user_id, password_hash])?;
                if changed == 0 {
                    return Err(StoreError::not_found("user"));
                }
                let revoked = conn
                    .prepare_cached(
                        "UPDATE sessions SET revoked_at = ?3
                         WHERE user_id = ?1 AND token_hash != ?2 AND revoked_at IS NULL",
                    )?
                    .execute(params![user_id, keep_token_hash, now_rfc3339()])?;
                fx.push(Effect::Sessions);
                Ok(revoked)
            })
            .await;
        // Other sessions were revoked: drop every cached session.
        self.shared.session_changes.send_modify(|g| *g += 1);
        self.shared.sessions.invalidate_all();
        result
    }

    /// Deletes the rows of sessions that ended (expired or were revoked) more than
    /// `ended_for` ago; returns how many. A live session is never touched, and an ended one
    /// already fails, so nothing a client sees changes: its token stays refused (as unknown).
    /// Idempotent, so nodes of a cluster may run it at the same time.
    pub async fn prune_sessions(&self, ended_for: std::time::Duration) -> StoreResult<usize> {
        let cutoff = rfc3339_before(ended_for);
        self.write(move |conn, _fx| {
            Ok(conn
                .prepare_cached(
                    "DELETE FROM sessions
                     WHERE expires_at < ?1 OR (revoked_at IS NOT NULL AND revoked_at < ?1)",
                )?
                .execute(params![cutoff])?)
        })
        .await
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
                // Nor does it keep a public face (its media stay readable as their posts say).
                conn.prepare_cached("DELETE FROM avatars WHERE subject = ?1")?
                    .execute([format!("user:{}", user.id)])?;
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
