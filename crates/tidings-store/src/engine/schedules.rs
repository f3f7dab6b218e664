//! The bus's sync replies and scheduled publishing (decision 0025).
//!
//! - **Replies.** The first reply a consumer gives to an activity (a webhook's 2xx body, or a
//!   pull consumer's ack payload) is kept by the activity's seq, first writer wins, and rings
//!   [`Effect::BusNews`](crate::hot::Effect::BusNews) so a `?wait=replied` publish waiting on
//!   any node looks again. [`Store::bus_progress`] says where the bus is with an activity.
//! - **Schedules.** A schedule is mutable state: the next fire time, a status, counters. A fire
//!   publishes with the idempotency key `schedule:ID:FIRE_MS` (the publish path stores a key
//!   once per actor, inside the log's write transaction) and then moves `next_at_ms` with a
//!   compare-and-set on the fire it published. A node that dies between the two, or two nodes
//!   firing at once, publish the same key: the log stores one activity.

use super::Store;
use crate::model::{BusProgress, NewSchedule, Reply, Schedule};
use crate::sql::{Connection, OptionalExtension, Row, params};
use crate::{StoreError, StoreResult, now_ms, now_rfc3339};

/// Records `body` as the reply to the activity at `seq` unless one is there; true when this
/// one was recorded.
pub(crate) fn insert_reply(
    conn: &Connection,
    seq: i64,
    source: &str,
    status: Option<i64>,
    body: &str,
) -> StoreResult<bool> {
    let inserted = conn
        .prepare_cached(
            "INSERT INTO bus_sync_replies(seq, source, status, body, at_ms) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT DO NOTHING",
        )?
        .execute(params![seq, source, status, body, now_ms()])?;
    Ok(inserted > 0)
}

const SCHEDULE_COLUMNS: &str = "s.id, s.name, u.username, v.name, s.cron, s.timezone, s.activity, \
     s.status, s.next_at_ms, s.fired, s.last_fired_at, s.last_activity, s.last_error, \
     s.created_at, s.service_id, s.actor_id";

const SCHEDULE_FROM: &str = "bus_schedules s JOIN users u ON u.id = s.actor_id \
     LEFT JOIN bus_services v ON v.id = s.service_id";

fn schedule_from_row(r: &Row<'_>) -> crate::sql::Result<Schedule> {
    let activity: String = r.get(6)?;
    Ok(Schedule {
        id: r.get(0)?,
        name: r.get(1)?,
        actor: r.get(2)?,
        owner: r.get(3)?,
        cron: r.get(4)?,
        timezone: r.get(5)?,
        activity: serde_json::from_str(&activity).unwrap_or(serde_json::Value::Null),
        status: r.get(7)?,
        next_at_ms: r.get(8)?,
        fired: r.get(9)?,
        last_fired_at: r.get(10)?,
        last_activity: r.get(11)?,
        last_error: r.get(12)?,
        created_at: r.get(13)?,
        service_id: r.get(14)?,
        actor_id: r.get(15)?,
    })
}

fn schedule_by_name(conn: &Connection, name: &str) -> StoreResult<Schedule> {
    conn.prepare_cached(&format!(
        "SELECT {SCHEDULE_COLUMNS} FROM {SCHEDULE_FROM} WHERE s.name = ?1"
    ))?
    .query_row([name], schedule_from_row)
    .optional()?
    .ok_or_else(|| StoreError::not_found("schedule"))
}

impl Store {
    /// Records a consumer's reply to the activity at `seq` (first writer wins; false when a
    /// reply was already there). Webhook replies are recorded with their attempt; a pull
    /// consumer's ack payload comes through here.
    pub async fn record_reply(
        &self,
        seq: i64,
        source: String,
        status: Option<i64>,
        body: String,
    ) -> StoreResult<bool> {
        self.write(move |conn, fx| {
            let inserted = insert_reply(conn, seq, &source, status, &body)?;
            if inserted {
                fx.push(crate::hot::Effect::BusNews);
            }
            Ok(inserted)
        })
        .await
    }

    /// The first reply to the activity at `seq`, if any.
    pub async fn reply(&self, seq: i64) -> StoreResult<Option<Reply>> {
        self.read(move |conn| {
            Ok(conn
                .prepare_cached("SELECT source, status, body FROM bus_sync_replies WHERE seq = ?1")?
                .query_row([seq], |r| {
                    Ok(Reply {
                        source: r.get(0)?,
                        status: r.get(1)?,
                        body: r.get(2)?,
                    })
                })
                .optional()?)
        })
        .await
    }

    /// Whether any subscription that can reply (webhook or pull) is active: with none, nobody
    /// can reply to anything.
    pub async fn has_active_webhooks(&self) -> StoreResult<bool> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT EXISTS(SELECT 1 FROM bus_webhooks
                     WHERE status = 'active' AND mode IN ('webhook', 'pull'))",
                )?
                .query_row([], |r| r.get(0))?)
        })
        .await
    }

    /// Where the bus is with the activity at `seq`: a reply, deliveries owed to active
    /// subscriptions and pending or delivered, or none (no responder), or not matched yet.
    pub async fn bus_progress(&self, seq: i64) -> StoreResult<BusProgress> {
        self.read(move |conn| {
            let reply = conn
                .prepare_cached("SELECT source, status, body FROM bus_sync_replies WHERE seq = ?1")?
                .query_row([seq], |r| {
                    Ok(Reply {
                        source: r.get(0)?,
                        status: r.get(1)?,
                        body: r.get(2)?,
                    })
                })
                .optional()?;
            if let Some(reply) = reply {
                return Ok(BusProgress::Replied(reply));
            }
            let matched: i64 = conn
                .prepare_cached("SELECT CAST(value AS BIGINT) FROM meta WHERE key = 'bus_seq'")?
                .query_row([], |r| r.get(0))?;
            if matched < seq {
                return Ok(BusProgress::Unmatched);
            }
            let owed: i64 = conn
                .prepare_cached(
                    "SELECT COUNT(*) FROM bus_deliveries d JOIN bus_webhooks w ON w.id = d.webhook_id
                     WHERE d.seq = ?1 AND d.state <> 'dead' AND w.status = 'active'
                       AND w.mode IN ('webhook', 'pull')",
                )?
                .query_row([seq], |r| r.get(0))?;
            Ok(if owed == 0 {
                BusProgress::NoResponder
            } else {
                BusProgress::Waiting(owed)
            })
        })
        .await
    }

    /// Forgets replies recorded before `before_ms` (nobody waits that long).
    pub async fn prune_replies(&self, before_ms: i64) -> StoreResult<usize> {
        self.write(move |conn, _fx| {
            Ok(conn
                .prepare_cached("DELETE FROM bus_sync_replies WHERE at_ms < ?1")?
                .execute([before_ms])?)
        })
        .await
    }

    /// Creates a schedule. 409 `schedule_exists` when the name is taken.
    pub async fn create_schedule(&self, new: NewSchedule) -> StoreResult<Schedule> {
        self.write(move |conn, _fx| {
            let taken: bool = conn
                .prepare_cached("SELECT EXISTS(SELECT 1 FROM bus_schedules WHERE name = ?1)")?
                .query_row([new.name.as_str()], |r| r.get(0))?;
            if taken {
                return Err(StoreError::conflict(
                    "schedule_exists",
                    format!("a schedule is already named {:?}", new.name),
                ));
            }
            conn.prepare_cached(
                "INSERT INTO bus_schedules(id, name, actor_id, service_id, cron, timezone, activity,
                                           status, next_at_ms, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'active', ?8, ?9)",
            )?
            .execute(params![
                new.id,
                new.name,
                new.actor_id,
                new.service_id,
                new.cron,
                new.timezone,
                new.activity,
                new.next_at_ms,
                now_rfc3339()
            ])?;
            schedule_by_name(conn, &new.name)
        })
        .await
    }

    /// Schedules by name; only those `owner` owns when it is given.
    pub async fn schedules(&self, owner: Option<i64>) -> StoreResult<Vec<Schedule>> {
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(&format!(
                    "SELECT {SCHEDULE_COLUMNS} FROM {SCHEDULE_FROM}
                     WHERE CAST(?1 AS BIGINT) IS NULL OR s.service_id = ?1
                     ORDER BY s.name"
                ))?
                .query_map(params![owner], schedule_from_row)?
                .collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    /// One schedule by name.
    pub async fn schedule(&self, name: String) -> StoreResult<Schedule> {
        self.read(move |conn| schedule_by_name(conn, &name)).await
    }

    /// Sets a schedule's status and next fire: pausing keeps it (a paused schedule is never
    /// due, but a fire in flight still records against it), resuming gives the next fire from
    /// now. A done one stays done.
    pub async fn set_schedule_status(
        &self,
        name: String,
        status: &'static str,
        next_at_ms: Option<i64>,
    ) -> StoreResult<Schedule> {
        self.write(move |conn, _fx| {
            let schedule = schedule_by_name(conn, &name)?;
            if schedule.status == "done" {
                return Err(StoreError::conflict(
                    "schedule_done",
                    "this schedule has nothing left to fire",
                ));
            }
            conn.prepare_cached(
                "UPDATE bus_schedules SET status = ?2, next_at_ms = ?3 WHERE id = ?1",
            )?
            .execute(params![schedule.id, status, next_at_ms])?;
            schedule_by_name(conn, &name)
        })
        .await
    }

    /// Deletes a schedule (what it published stays in the log).
    pub async fn delete_schedule(&self, name: String) -> StoreResult<()> {
        self.write(move |conn, _fx| {
            let changed = conn
                .prepare_cached("DELETE FROM bus_schedules WHERE name = ?1")?
                .execute([name.as_str()])?;
            if changed == 0 {
                return Err(StoreError::not_found("schedule"));
            }
            Ok(())
        })
        .await
    }

    /// Active schedules due at `now_ms`, oldest due first, at most `max`.
    pub async fn due_schedules(&self, now_ms: i64, max: i64) -> StoreResult<Vec<Schedule>> {
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(&format!(
                    "SELECT {SCHEDULE_COLUMNS} FROM {SCHEDULE_FROM}
                     WHERE s.status = 'active' AND s.next_at_ms <= ?1
                     ORDER BY s.next_at_ms, s.id LIMIT ?2"
                ))?
                .query_map(params![now_ms, max], schedule_from_row)?
                .collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    /// The earliest fire of any active schedule (unix ms), to sleep until.
    pub async fn next_schedule_at(&self) -> StoreResult<Option<i64>> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT MIN(next_at_ms) FROM bus_schedules WHERE status = 'active'",
                )?
                .query_row([], |r| r.get(0))?)
        })
        .await
    }

    /// Records the fire due at `fired_ms`: moves the schedule to `next` (None: done), counts
    /// it and keeps what it published or why it could not. False (nothing written) when that
    /// fire was already recorded, by this node or another.
    pub async fn schedule_fired(
        &self,
        id: String,
        fired_ms: i64,
        next: Option<i64>,
        activity: Option<String>,
        error: Option<String>,
    ) -> StoreResult<bool> {
        self.write(move |conn, _fx| {
            let status = if next.is_some() { "active" } else { "done" };
            let changed = conn
                .prepare_cached(
                    "UPDATE bus_schedules
                     SET next_at_ms = ?3, fired = fired + ?4, last_fired_at = ?5,
                         last_activity = COALESCE(?6, last_activity), last_error = ?7,
                         status = CASE WHEN status = 'active' THEN ?8 ELSE status END
                     WHERE id = ?1 AND next_at_ms = ?2",
                )?
                .execute(params![
                    id,
                    fired_ms,
                    next,
                    i64::from(activity.is_some()),
                    now_rfc3339(),
                    activity,
                    error,
                    status
                ])?;
            Ok(changed > 0)
        })
        .await
    }
}
