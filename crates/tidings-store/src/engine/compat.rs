//! Narrow store operations for the compat profiles (FeedStream's `/v1`, activity-feed-system's
//! `/me`, `/post`, …): the ids and keys those APIs speak, mapped onto ordinary users and
//! activities. Everything they publish goes through [`Store::publish`] like any activity.

use super::Store;
use super::users::{insert_user, user_by_id};
use crate::hot::Effect;
use crate::model::User;
use crate::model::{AppKeyUser, LogRecord};
use crate::sql::{Connection, OptionalExtension, params};
use crate::{StoreError, StoreResult, now_rfc3339};
use tidings_core::feeds::Reason;

fn fs_user(conn: &Connection, ext_id: &str) -> StoreResult<Option<User>> {
    let id: Option<i64> = conn
        .prepare_cached("SELECT user_id FROM compat_fs_actors WHERE ext_id = ?1")?
        .query_row([ext_id], |r| r.get(0))
        .optional()?;
    id.map(|id| user_by_id(conn, id)).transpose()
}

const RECORD_SQL: &str = "SELECT a.seq, a.id, u.username, a.body FROM activities a
     JOIN users u ON u.id = a.actor_id";

fn record_row(r: &crate::sql::Row<'_>) -> crate::sql::Result<LogRecord> {
    Ok(LogRecord {
        seq: r.get(0)?,
        id: r.get(1)?,
        actor: r.get(2)?,
        body: r.get(3)?,
    })
}

impl Store {
    /// The user standing for a FeedStream producer/consumer id. With `candidates` (usernames to
    /// try, in order) it is created on first use, without a password; without, `None` when the
    /// id was never seen.
    pub async fn fs_actor(
        &self,
        ext_id: &str,
        candidates: Vec<String>,
    ) -> StoreResult<Option<User>> {
        let ext_id = ext_id.to_owned();
        if candidates.is_empty() {
            return self.read(move |conn| fs_user(conn, &ext_id)).await;
        }
        // Checked again on the writer: two first uses of one id race to create it.
        self.write(move |conn, fx| {
            if let Some(user) = fs_user(conn, &ext_id)? {
                return Ok(Some(user));
            }
            for name in &candidates {
                let taken: bool = conn
                    .prepare_cached("SELECT EXISTS(SELECT 1 FROM users WHERE username = ?1)")?
                    .query_row([name], |r| r.get(0))?;
                if taken {
                    continue;
                }
                let user = insert_user(conn, fx, name, &ext_id, None, false)?;
                conn.prepare_cached(
                    "INSERT INTO compat_fs_actors(ext_id, user_id) VALUES (?1, ?2)",
                )?
                .execute(params![ext_id, user.id])?;
                return Ok(Some(user));
            }
            Err(StoreError::conflict(
                "username_taken",
                format!("no free username for {ext_id:?}"),
            ))
        })
        .await
    }

    /// The log position of a FeedStream item: the newest activity by a FeedStream actor whose
    /// object is `item_id`, or else the activity with that id.
    pub async fn fs_item_seq(&self, item_id: &str) -> StoreResult<Option<i64>> {
        let item_id = item_id.to_owned();
        self.read(move |conn| {
            let by_item: Option<i64> = conn
                .prepare_cached(
                    "SELECT a.seq FROM activities a WHERE a.object_ref = ?1
                     AND a.actor_id IN (SELECT user_id FROM compat_fs_actors)
                     ORDER BY a.seq DESC LIMIT 1",
                )?
                .query_row([&item_id], |r| r.get(0))
                .optional()?;
            if by_item.is_some() {
                return Ok(by_item);
            }
            Ok(conn
                .prepare_cached("SELECT seq FROM activities WHERE id = ?1")?
                .query_row([&item_id], |r| r.get(0))
                .optional()?)
        })
        .await
    }

    /// Raises a notification for `user` about the activity at `seq` with a given reason (a
    /// FeedStream Activity event names its consumer and verb itself). Idempotent.
    pub async fn notify_directly(&self, user: i64, seq: i64, reason: Reason) -> StoreResult<()> {
        self.write(move |conn, fx| {
            let added = conn
                .prepare_cached(
                    "INSERT INTO notifications(user_id, seq, reason) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                )?
                .execute(params![user, seq, reason.code()])?;
            if added > 0 {
                fx.push(Effect::Notify(vec![(user, seq, reason.code())]));
            }
            Ok(())
        })
        .await
    }

    /// Who was notified of the activity at `seq`, with the reason, in user id order (the
    /// consumers a FeedStream Activity event reached).
    pub async fn notified_users(&self, seq: i64) -> StoreResult<Vec<(i64, Reason)>> {
        self.read(move |conn| {
            let rows = conn
                .prepare_cached(
                    "SELECT user_id, reason FROM notifications WHERE seq = ?1 ORDER BY user_id",
                )?
                .query_map([seq], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows
                .into_iter()
                .filter_map(|(user, code)| {
                    let code = u8::try_from(code).ok()?;
                    Reason::from_code(code).map(|reason| (user, reason))
                })
                .collect())
        })
        .await
    }

    /// Sets (or replaces) a user's activity-feed-system app key, given hashed.
    pub async fn set_app_key(&self, user_id: i64, key_hash: String) -> StoreResult<()> {
        self.write(move |conn, _fx| {
            let now = now_rfc3339();
            let created: Option<String> = conn
                .prepare_cached("SELECT created_at FROM compat_afs_keys WHERE user_id = ?1")?
                .query_row([user_id], |r| r.get(0))
                .optional()?;
            let owner: Option<i64> = conn
                .prepare_cached("SELECT user_id FROM compat_afs_keys WHERE key_hash = ?1")?
                .query_row([&key_hash], |r| r.get(0))
                .optional()?;
            if owner.is_some_and(|o| o != user_id) {
                return Err(StoreError::conflict(
                    "app_key_taken",
                    "that app key belongs to another user",
                ));
            }
            conn.prepare_cached("DELETE FROM compat_afs_keys WHERE user_id = ?1")?
                .execute([user_id])?;
            conn.prepare_cached(
                "INSERT INTO compat_afs_keys(key_hash, user_id, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![
                key_hash,
                user_id,
                created.unwrap_or_else(|| now.clone()),
                now
            ])?;
            Ok(())
        })
        .await
    }

    /// The user an app key (given hashed) belongs to.
    pub async fn app_key_user(&self, key_hash: String) -> StoreResult<Option<AppKeyUser>> {
        self.read(move |conn| {
            let row: Option<(i64, String, String)> = conn
                .prepare_cached(
                    "SELECT user_id, created_at, updated_at FROM compat_afs_keys WHERE key_hash = ?1",
                )?
                .query_row([&key_hash], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()?;
            let Some((user_id, key_created_at, key_updated_at)) = row else {
                return Ok(None);
            };
            Ok(Some(AppKeyUser {
                user: user_by_id(conn, user_id)?,
                key_created_at,
                key_updated_at,
            }))
        })
        .await
    }

    /// Ids of the users `user_id` follows, in id order.
    pub async fn following_ids(&self, user_id: i64) -> StoreResult<Vec<i64>> {
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT f.followee_id FROM follows f JOIN users u ON u.id = f.followee_id
                     WHERE f.follower_id = ?1 AND u.status != 'deleted' ORDER BY f.followee_id",
                )?
                .query_map([user_id], |r| r.get(0))?
                .collect::<Result<Vec<i64>, _>>()?)
        })
        .await
    }

    /// Records that `user_id` did the activity at `seq` through activity-feed-system; with
    /// `object`, numbers it as the profile's next object and returns that number.
    pub async fn afs_log_add(
        &self,
        user_id: i64,
        seq: i64,
        object: bool,
    ) -> StoreResult<Option<i64>> {
        self.write(move |conn, _fx| {
            conn.prepare_cached(
                "INSERT INTO compat_afs_log(user_id, seq) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
            )?
            .execute(params![user_id, seq])?;
            if !object {
                return Ok(None);
            }
            conn.prepare_cached(
                "INSERT INTO compat_afs_objects(seq) VALUES (?1) ON CONFLICT DO NOTHING",
            )?
            .execute([seq])?;
            Ok(Some(
                conn.prepare_cached("SELECT object_id FROM compat_afs_objects WHERE seq = ?1")?
                    .query_row([seq], |r| r.get(0))?,
            ))
        })
        .await
    }

    /// The log position of an activity-feed-system object id.
    pub async fn afs_object_seq(&self, object_id: i64) -> StoreResult<Option<i64>> {
        self.read(move |conn| {
            Ok(conn
                .prepare_cached("SELECT seq FROM compat_afs_objects WHERE object_id = ?1")?
                .query_row([object_id], |r| r.get(0))
                .optional()?)
        })
        .await
    }

    /// The activity-feed-system object ids of these log positions (those that have one), as
    /// (seq, object_id).
    pub async fn afs_object_ids(&self, seqs: Vec<i64>) -> StoreResult<Vec<(i64, i64)>> {
        self.read(move |conn| {
            let mut stmt =
                conn.prepare_cached("SELECT object_id FROM compat_afs_objects WHERE seq = ?1")?;
            let mut out = Vec::new();
            for seq in seqs {
                if let Some(id) = stmt.query_row([seq], |r| r.get(0)).optional()? {
                    out.push((seq, id));
                }
            }
            Ok(out)
        })
        .await
    }

    /// A page of what `user_id` did through activity-feed-system, newest first, older than
    /// `before`; activities retracted by a Delete are left out. Returns whether more exist.
    pub async fn afs_log_page(
        &self,
        user_id: i64,
        before: Option<i64>,
        limit: usize,
    ) -> StoreResult<(Vec<LogRecord>, bool)> {
        self.read(move |conn| {
            let mut rows = conn
                .prepare_cached(&format!(
                    "{RECORD_SQL} JOIN compat_afs_log l ON l.seq = a.seq
                     WHERE l.user_id = ?1 AND l.seq < ?2
                       AND NOT EXISTS(SELECT 1 FROM retractions r JOIN activities d ON d.seq = r.by_seq
                                      WHERE r.seq = a.seq AND d.type = 'Delete')
                     ORDER BY l.seq DESC LIMIT ?3"
                ))?
                .query_map(
                    params![user_id, before.unwrap_or(i64::MAX), limit as i64 + 1],
                    record_row,
                )?
                .collect::<Result<Vec<_>, _>>()?;
            let more = rows.len() > limit;
            rows.truncate(limit);
            Ok((rows, more))
        })
        .await
    }

    /// The records with these activity ids (those that exist).
    pub async fn records_by_ids(&self, ids: Vec<String>) -> StoreResult<Vec<LogRecord>> {
        self.read(move |conn| {
            let mut out = Vec::with_capacity(ids.len());
            let mut stmt = conn.prepare_cached(&format!("{RECORD_SQL} WHERE a.id = ?1"))?;
            for id in &ids {
                if let Some(record) = stmt.query_row([id], record_row).optional()? {
                    out.push(record);
                }
            }
            Ok(out)
        })
        .await
    }

    /// The record at a log position.
    pub async fn record_by_seq(&self, seq: i64) -> StoreResult<Option<LogRecord>> {
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(&format!("{RECORD_SQL} WHERE a.seq = ?1"))?
                .query_row([seq], record_row)
                .optional()?)
        })
        .await
    }
}
