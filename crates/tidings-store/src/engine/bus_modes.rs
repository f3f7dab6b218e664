//! Subscription modes beyond webhooks (decision 0024): pull consumers that lease and ack
//! events, SSE streams that read a subscription's matched events by log position, replay
//! from any point of the log, pause / resume / delete, and deleting topics.
//!
//! Every mode shares the webhook machinery's one table of what is owed: the matcher records a
//! `bus_deliveries` row per (subscription, matching activity), whatever the mode. A pull
//! consumer leases pending rows in log order (a write job: on PostgreSQL inside the log lock,
//! so two nodes never lease the same event), a stream reads the rows after its cursor, a queue
//! subscription's rows are leased by the dispatcher and turned into jobs.

use super::Store;
use super::integration::{bump_generation, topic_by_name, webhook_by_id};
use super::users::last_seq;
use crate::model::{BusReply, PulledEvent, Webhook};
use crate::sql::{Connection, OptionalExtension, params};
use crate::{StoreError, StoreResult, now_ms, now_rfc3339};
use std::sync::Arc;

/// Deletes a subscription's deliveries (with their attempts) in `seq <= upto` that are still
/// pending; `None`: all of them, whatever their state.
fn drop_deliveries(conn: &Connection, id: &str, pending_upto: Option<i64>) -> StoreResult<i64> {
    let upto = pending_upto.unwrap_or(i64::MAX);
    let all = i64::from(pending_upto.is_none());
    conn.prepare_cached(
        "DELETE FROM bus_attempts WHERE delivery_id IN (
             SELECT id FROM bus_deliveries
             WHERE webhook_id = ?1 AND seq <= ?2 AND (?3 = 1 OR state = 'pending'))",
    )?
    .execute(params![id, upto, all])?;
    let dropped = conn
        .prepare_cached(
            "DELETE FROM bus_deliveries
             WHERE webhook_id = ?1 AND seq <= ?2 AND (?3 = 1 OR state = 'pending')",
        )?
        .execute(params![id, upto, all])?;
    Ok(i64::try_from(dropped).unwrap_or(i64::MAX))
}

impl Store {
    /// Pauses or resumes a subscription. A paused one is sent and leased nothing, but the
    /// matcher keeps recording what its topic gets, so resuming delivers the backlog.
    pub async fn set_subscription_paused(&self, id: String, paused: bool) -> StoreResult<Webhook> {
        self.write(move |conn, _fx| {
            conn.prepare_cached("UPDATE bus_webhooks SET paused = ?2 WHERE id = ?1")?
                .execute(params![id, i64::from(paused)])?;
            webhook_by_id(conn, &id)
        })
        .await
    }

    /// Deletes a subscription with everything it is owed, its attempt log and its replies.
    pub async fn delete_subscription(&self, id: String) -> StoreResult<()> {
        self.write(move |conn, _fx| {
            webhook_by_id(conn, &id)?;
            drop_deliveries(conn, &id, None)?;
            conn.prepare_cached("DELETE FROM bus_replies WHERE webhook_id = ?1")?
                .execute([id.as_str()])?;
            conn.prepare_cached("DELETE FROM bus_webhooks WHERE id = ?1")?
                .execute([id.as_str()])?;
            // The matcher must stop recording deliveries for it.
            bump_generation(conn)?;
            Ok(())
        })
        .await
    }

    /// Deletes a topic that has no subscriptions; 409 `topic_has_subscriptions` otherwise
    /// (deleting is never a cascade: each subscription's owner deletes its own first).
    pub async fn delete_topic(&self, name: String) -> StoreResult<()> {
        self.write(move |conn, _fx| {
            let topic = topic_by_name(conn, &name)?;
            let subscriptions: i64 = conn
                .prepare_cached("SELECT COUNT(*) FROM bus_webhooks WHERE topic_id = ?1")?
                .query_row([topic.id], |r| r.get(0))?;
            if subscriptions > 0 {
                return Err(StoreError::conflict(
                    "topic_has_subscriptions",
                    format!(
                        "topic {name:?} has {subscriptions} subscription(s): delete them first"
                    ),
                ));
            }
            conn.prepare_cached("DELETE FROM bus_topics WHERE id = ?1")?
                .execute([topic.id])?;
            bump_generation(conn)?;
            Ok(())
        })
        .await
    }

    /// Leases up to `max` of a pull subscription's pending events, oldest position first,
    /// for its `lease_ms`: events nobody holds, or whose lease ran out. A write job, so on
    /// PostgreSQL it runs inside the log lock and two consumers (or two nodes) never hold one
    /// event at once.
    pub async fn pull_events(&self, id: String, max: i64) -> StoreResult<Vec<PulledEvent>> {
        self.write(move |conn, _fx| {
            let hook = webhook_by_id(conn, &id)?;
            let now = now_ms();
            let until = now.saturating_add(hook.lease_ms.unwrap_or(30_000));
            let due: Vec<(String, i64, i64)> = conn
                .prepare_cached(
                    "SELECT id, seq, attempts FROM bus_deliveries
                     WHERE webhook_id = ?1 AND state = 'pending' AND lease_until_ms <= ?2
                     ORDER BY seq LIMIT ?3",
                )?
                .query_map(params![id, now, max], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            let mut out = Vec::with_capacity(due.len());
            for (delivery, seq, attempts) in due {
                conn.prepare_cached(
                    "UPDATE bus_deliveries SET lease_until_ms = ?2, attempts = attempts + 1
                     WHERE id = ?1",
                )?
                .execute(params![delivery, until])?;
                let body: Arc<str> = conn
                    .prepare_cached("SELECT body FROM activities WHERE seq = ?1")?
                    .query_row([seq], |r| r.get(0))?;
                out.push(PulledEvent {
                    id: delivery,
                    seq,
                    deliveries: attempts + 1,
                    lease_until_ms: until,
                    body,
                });
            }
            Ok(out)
        })
        .await
    }

    /// Acknowledges pulled events; each answers for itself: true when it was pending (now
    /// done), false when unknown or already acknowledged. A `reply` (JSON text) is kept by
    /// event for each event this ack settled (the first reply wins), and becomes the reply a
    /// `?wait=replied` publish answers with unless another consumer replied first.
    pub async fn ack_events(
        &self,
        id: String,
        events: Vec<String>,
        reply: Option<String>,
    ) -> StoreResult<Vec<(String, bool)>> {
        self.write(move |conn, fx| {
            let mut out = Vec::with_capacity(events.len());
            for event in events {
                let seq: Option<i64> = conn
                    .prepare_cached(
                        "UPDATE bus_deliveries SET state = 'delivered', lease_until_ms = 0
                         WHERE id = ?1 AND webhook_id = ?2 AND state = 'pending'
                         RETURNING seq",
                    )?
                    .query_row(params![event, id], |r| r.get(0))
                    .optional()?;
                if let (Some(seq), Some(reply)) = (seq, &reply) {
                    let activity: String = conn
                        .prepare_cached("SELECT id FROM activities WHERE seq = ?1")?
                        .query_row([seq], |r| r.get(0))?;
                    conn.prepare_cached(
                        "INSERT INTO bus_replies(webhook_id, seq, activity_id, reply, at)
                         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
                    )?
                    .execute(params![
                        id,
                        seq,
                        activity,
                        reply,
                        now_rfc3339()
                    ])?;
                    if super::schedules::insert_reply(conn, seq, &id, None, reply)? {
                        // Wakes a sync publish waiting for this activity, on any node.
                        fx.push(crate::hot::Effect::BusNews);
                    }
                }
                out.push((event, seq.is_some()));
            }
            Ok(out)
        })
        .await
    }

    /// What consumers answered to an event (by activity id), oldest first.
    pub async fn replies_to(&self, activity: String) -> StoreResult<Vec<BusReply>> {
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT webhook_id, activity_id, seq, reply, at FROM bus_replies
                     WHERE activity_id = ?1 ORDER BY at, webhook_id",
                )?
                .query_map([activity.as_str()], |r| {
                    Ok(BusReply {
                        subscription: r.get(0)?,
                        activity: r.get(1)?,
                        position: r.get(2)?,
                        reply: r.get(3)?,
                        at: r.get(4)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    /// Replays a stretch of the log to a subscription: every delivery it has in
    /// `[from, upto]` is owed again (pending, a fresh retry budget, no lease), and the
    /// positions in `matched` (the activities of that stretch its topic gets, found by the
    /// caller) are added where missing. Returns how many events of the stretch are owed now.
    pub async fn replay_range(
        &self,
        id: String,
        from: i64,
        upto: i64,
        matched: Vec<i64>,
    ) -> StoreResult<i64> {
        self.write(move |conn, _fx| {
            webhook_by_id(conn, &id)?;
            let now = now_ms();
            conn.prepare_cached(
                "UPDATE bus_deliveries SET state = 'pending', next_at_ms = ?4, lease_until_ms = 0,
                                           round_start = attempts
                 WHERE webhook_id = ?1 AND seq >= ?2 AND seq <= ?3",
            )?
            .execute(params![id, from, upto, now])?;
            let created_at = now_rfc3339();
            let mut insert = conn.prepare_cached(
                "INSERT INTO bus_deliveries(id, webhook_id, seq, state, next_at_ms, created_at)
                 VALUES (?1, ?2, ?3, 'pending', ?4, ?5) ON CONFLICT DO NOTHING",
            )?;
            for seq in matched.iter().filter(|s| (from..=upto).contains(*s)) {
                let delivery = format!("msg_{}", uuid::Uuid::now_v7().simple());
                insert.execute(params![delivery, id, seq, now, created_at])?;
            }
            Ok(conn
                .prepare_cached(
                    "SELECT COUNT(*) FROM bus_deliveries
                     WHERE webhook_id = ?1 AND seq >= ?2 AND seq <= ?3",
                )?
                .query_row(params![id, from, upto], |r| r.get(0))?)
        })
        .await
    }

    /// Moves a subscription to the log's end: what it was still owed is dropped, and it is
    /// owed only what is published after. Returns the log position it now starts after.
    pub async fn skip_to_end(&self, id: String) -> StoreResult<i64> {
        self.write(move |conn, _fx| {
            webhook_by_id(conn, &id)?;
            let last = last_seq(conn)?;
            conn.prepare_cached(
                "UPDATE bus_webhooks SET since_seq = ?2 WHERE id = ?1 AND since_seq < ?2",
            )?
            .execute(params![id, last])?;
            drop_deliveries(conn, &id, Some(last))?;
            // The matcher must pick up the new start.
            bump_generation(conn)?;
            Ok(last)
        })
        .await
    }

    /// The first log position published at or after `at` (RFC 3339, UTC, as the store writes
    /// times); one past the log's end when there is none.
    pub async fn position_at(&self, at: time::OffsetDateTime) -> StoreResult<i64> {
        self.read(move |conn| {
            let text = crate::format_time(at.to_offset(time::UtcOffset::UTC));
            let first: Option<i64> = conn
                .prepare_cached(
                    "SELECT seq FROM activities WHERE published >= ?1 ORDER BY seq LIMIT 1",
                )?
                .query_row([text.as_str()], |r| r.get(0))
                .optional()?;
            match first {
                Some(seq) => Ok(seq),
                None => Ok(last_seq(conn)?.saturating_add(1)),
            }
        })
        .await
    }

    /// Up to `limit` of a subscription's matched events after position `after`, in log order
    /// (position, delivery id, activity): what a stream sends (its cursor is the position).
    pub async fn subscription_events(
        &self,
        id: String,
        after: i64,
        limit: i64,
    ) -> StoreResult<Vec<(i64, String, Arc<str>)>> {
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT d.seq, d.id, a.body FROM bus_deliveries d JOIN activities a ON a.seq = d.seq
                     WHERE d.webhook_id = ?1 AND d.seq > ?2 ORDER BY d.seq LIMIT ?3",
                )?
                .query_map(params![id, after, limit], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?
                .collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }
}
