//! The router: fans committed activities out to inboxes, strictly in log order.
//!
//! Runs on the writer thread between group commits, a bounded slice at a time so publishes
//! never wait long behind a big fan-out. Progress (`routed_seq`) commits in the same
//! transaction as the entries it covers, so a crash resumes exactly where it stopped.
//! A circle whose open subscriptions pass the merge threshold switches (once, at the activity
//! being routed) to being merged into inboxes at read time; `tag@*` subscriptions are always
//! merged at read time.

use super::Effects;
use super::activities::readable_sql;
use crate::StoreResult;
use crate::hot::Effect;
use crate::sql::{Connection, OptionalExtension, params};
use std::sync::Arc;
use tidings_core::expr::SubscriptionExpr;
use tidings_core::feeds::{NoticeFacts, notifications};
use tidings_core::routing::{Candidate, RouteFacts, Via, route_activity};

/// Most activities routed per slice.
const SLICE_ACTIVITIES: i64 = 256;
/// A slice stops once it has written about this many entries.
const SLICE_DELIVERIES: usize = 20_000;

/// Audiences above which a source is merged at read time instead of fanned out.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Thresholds {
    /// Open subscriptions on a circle.
    pub circle: i64,
    /// Followers of a producer.
    pub followers: i64,
    /// Longest a slice may hold the write lock (PostgreSQL, where every statement is a round
    /// trip and publishes of every node wait behind the log lock); None: bounded by count only.
    pub max_slice: Option<std::time::Duration>,
}

/// What routing needs of one pending activity, read with the slice in one query.
struct Pending {
    seq: i64,
    actor_id: i64,
    listed: bool,
    activity_type: String,
    object_ref: Option<String>,
    author_name: String,
    /// Addressed to followers or the public.
    to_followers: bool,
    /// Author of the activity it replies to.
    parent_author: Option<i64>,
}

struct CircleFacts {
    id: i64,
    name: String,
    public: bool,
    merged: bool,
}

/// Routes one slice of the backlog. Returns the new watermark and whether a backlog remains.
pub(crate) fn route_pending(
    conn: &Connection,
    thresholds: Thresholds,
    fx: &mut Effects,
) -> StoreResult<(i64, bool)> {
    let routed: i64 = conn
        .prepare_cached("SELECT CAST(value AS BIGINT) FROM meta WHERE key = 'routed_seq'")?
        .query_row([], |r| r.get(0))?;
    let pending = conn
        .prepare_cached(
            "SELECT a.seq, a.actor_id, a.listed, a.type, a.object_ref, u.username,
                    a.is_public OR EXISTS(SELECT 1 FROM activity_followers af WHERE af.seq = a.seq),
                    p.actor_id
             FROM activities a JOIN users u ON u.id = a.actor_id
             LEFT JOIN activities p ON p.id = a.in_reply_to
             WHERE a.seq > ?1 ORDER BY a.seq LIMIT ?2",
        )?
        .query_map(params![routed, SLICE_ACTIVITIES], |r| {
            Ok(Pending {
                seq: r.get(0)?,
                actor_id: r.get(1)?,
                listed: r.get(2)?,
                activity_type: r.get(3)?,
                object_ref: r.get(4)?,
                author_name: r.get(5)?,
                to_followers: r.get(6)?,
                parent_author: r.get(7)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let Some(last_available) = pending.last().map(|p| p.seq) else {
        return Ok((routed, false));
    };
    crate::adapters::begin_write(conn)?;
    let result = (|| -> StoreResult<(i64, bool)> {
        // Inside the log lock: if another router moved the watermark meanwhile (a takeover
        // after this one was presumed dead), this slice is already routed; do nothing.
        let current: i64 = conn
            .prepare_cached("SELECT CAST(value AS BIGINT) FROM meta WHERE key = 'routed_seq'")?
            .query_row([], |r| r.get(0))?;
        if current != routed {
            return Ok((current, true));
        }
        let mut delivered = 0usize;
        let mut watermark = routed;
        let started = std::time::Instant::now();
        for activity in &pending {
            if activity.listed {
                delivered += route_one(conn, fx, activity, thresholds)?;
            } else if activity.activity_type == "Join" {
                // Unlisted: nobody gets an item, but the circle's keepers get their notice.
                notify(conn, fx, activity, &[])?;
            }
            watermark = activity.seq;
            if delivered >= SLICE_DELIVERIES
                || thresholds
                    .max_slice
                    .is_some_and(|max| started.elapsed() >= max)
            {
                break;
            }
        }
        conn.prepare_cached("UPDATE meta SET value = ?1 WHERE key = 'routed_seq'")?
            .execute([watermark.to_string()])?;
        let more = watermark < last_available || pending.len() as i64 == SLICE_ACTIVITIES;
        crate::adapters::record_change(conn, &fx.list, Some(watermark))?;
        Ok((watermark, more))
    })();
    match result {
        Ok(outcome) => {
            conn.execute_batch("COMMIT")?;
            Ok(outcome)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

fn route_one(
    conn: &Connection,
    fx: &mut Effects,
    activity: &Pending,
    thresholds: Thresholds,
) -> StoreResult<usize> {
    let (seq, actor_id) = (activity.seq, activity.actor_id);
    let merge_threshold = thresholds.circle;
    let addressed = conn
        .prepare_cached(
            "SELECT x.user_id FROM activity_addressees x JOIN users u ON u.id = x.user_id
             WHERE x.seq = ?1 AND u.status != 'deleted'",
        )?
        .query_map([seq], |r| r.get::<_, i64>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    let tags = conn
        .prepare_cached("SELECT tag FROM activity_tags WHERE seq = ?1")?
        .query_map([seq], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    let mut circles = conn
        .prepare_cached(
            "SELECT c.id, c.name, c.visibility = 'public', c.merged_from_seq IS NOT NULL
             FROM activity_circles ac JOIN circles c ON c.id = ac.circle_id WHERE ac.seq = ?1",
        )?
        .query_map([seq], |r| {
            Ok(CircleFacts {
                id: r.get(0)?,
                name: r.get(1)?,
                public: r.get(2)?,
                merged: r.get(3)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;

    let mut candidates = Vec::new();
    for circle in &mut circles {
        if !circle.merged {
            let audience: i64 = conn
                .prepare_cached(
                    "SELECT COUNT(*) FROM subscriptions WHERE circle_id = ?1 AND until_seq IS NULL",
                )?
                .query_row([circle.id], |r| r.get(0))?;
            if audience > merge_threshold {
                conn.prepare_cached("UPDATE circles SET merged_from_seq = ?2 WHERE id = ?1")?
                    .execute(params![circle.id, seq])?;
                fx.push(Effect::Merged {
                    circle: circle.id,
                    from_seq: seq,
                });
                circle.merged = true;
                tracing::info!(circle = %circle.name, audience, from_seq = seq, "circle switched to merge-at-read");
            }
        }
        if circle.merged {
            continue;
        }
        let mut stmt = conn.prepare_cached(
            "SELECT s.id, s.user_id, s.expr,
                    ?3 OR EXISTS(SELECT 1 FROM memberships m WHERE m.circle_id = s.circle_id
                                 AND m.user_id = s.user_id AND m.state = 'active')
                       -- admins may read (and so subscribe to) any circle, as at read time
                       OR EXISTS(SELECT 1 FROM users u WHERE u.id = s.user_id AND u.is_admin)
             FROM subscriptions s
             WHERE s.circle_id = ?1 AND s.since_seq < ?2 AND (s.until_seq IS NULL OR s.until_seq >= ?2)
               AND (s.tag IS NULL OR EXISTS(SELECT 1 FROM activity_tags t WHERE t.seq = ?2 AND t.tag = s.tag))",
        )?;
        let rows = stmt.query_map(params![circle.id, seq, circle.public], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, bool>(3)?,
            ))
        })?;
        for row in rows {
            let (id, user_id, expr, readable) = row?;
            if let (true, Ok(expr)) = (readable, expr.parse::<SubscriptionExpr>()) {
                candidates.push(Candidate {
                    id,
                    user_id,
                    expr,
                    readable_circles: vec![circle.name.clone()],
                });
            }
        }
    }

    // Subscriptions on any circle (`urgent@*`) are never written: their audience is per tag,
    // so the multiplexer merges them at read time from the tag's stream.

    let author_name = activity.author_name.as_str();
    let followers = if activity.to_followers {
        followers_to_write(conn, fx, seq, actor_id, author_name, thresholds.followers)?
    } else {
        Vec::new()
    };
    notify(conn, fx, activity, &addressed)?;

    let names: Vec<String> = circles.iter().map(|c| c.name.clone()).collect();
    let deliveries = route_activity(
        &RouteFacts {
            author: actor_id,
            addressed: &addressed,
            pushed_circles: &names,
            tags: &tags,
            followers: &followers,
            author_name,
        },
        &candidates,
    );
    // The author's own copy is never written: the multiplexer reads it from the author's
    // outbox in memory (one random B-tree insert less per publish). Routing still decides
    // with it, so the author never also gets a subscription entry for their own post.
    let deliveries: Vec<_> = deliveries
        .into_iter()
        .filter(|d| d.via != Via::Author)
        .collect();
    let rows: Vec<(i64, i64, i64)> = deliveries
        .iter()
        .map(|d| {
            let code = super::via_code(&d.via, actor_id).unwrap_or(0);
            (d.user_id, seq, code)
        })
        .collect();
    super::write_entries(conn, &rows)?;
    fx.push(Effect::Entries(
        deliveries
            .iter()
            .map(|d| (d.user_id, seq, Arc::<str>::from(d.via.as_text())))
            .collect(),
    ));
    Ok(deliveries.len())
}

/// The followers an activity is written to: none once the author has too many (from then on
/// they read the author's outbox at read time), else every follow whose floor is below it.
fn followers_to_write(
    conn: &Connection,
    fx: &mut Effects,
    seq: i64,
    actor_id: i64,
    author_name: &str,
    threshold: i64,
) -> StoreResult<Vec<i64>> {
    let merged: bool = conn
        .prepare_cached("SELECT EXISTS(SELECT 1 FROM producers_merged WHERE user_id = ?1)")?
        .query_row([actor_id], |r| r.get(0))?;
    if merged {
        return Ok(Vec::new());
    }
    let audience: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM follows WHERE followee_id = ?1")?
        .query_row([actor_id], |r| r.get(0))?;
    if audience > threshold {
        conn.prepare_cached("INSERT INTO producers_merged(user_id, from_seq) VALUES (?1, ?2)")?
            .execute(params![actor_id, seq])?;
        fx.push(Effect::ProducerMerged {
            producer: actor_id,
            from_seq: seq,
        });
        tracing::info!(producer = %author_name, audience, from_seq = seq, "producer switched to merge-at-read");
        return Ok(Vec::new());
    }
    Ok(conn
        .prepare_cached(
            "SELECT f.follower_id FROM follows f JOIN users u ON u.id = f.follower_id
             WHERE f.followee_id = ?1 AND f.floor_seq < ?2 AND u.status != 'deleted'",
        )?
        .query_map(params![actor_id, seq], |r| r.get::<_, i64>(0))?
        .collect::<Result<Vec<_>, _>>()?)
}

/// Raises the activity's notifications: to the author of what it likes, shares or replies to,
/// to the user it follows, to the keepers of the circle it joins, to the users it names, each
/// only if they may read it.
fn notify(
    conn: &Connection,
    fx: &mut Effects,
    activity: &Pending,
    addressed: &[i64],
) -> StoreResult<()> {
    let seq = activity.seq;
    let activity_type = activity.activity_type.as_str();
    let mut target_author = None;
    let mut followed = None;
    let mut keepers = Vec::new();
    if let Some(reference) = &activity.object_ref {
        match activity_type {
            "Like" | "Announce" => {
                target_author = conn
                    .prepare_cached("SELECT actor_id FROM activities WHERE id = ?1")?
                    .query_row([reference], |r| r.get(0))
                    .optional()?;
            }
            "Follow" => {
                if let Some(name) = reference.strip_prefix("user:") {
                    followed = conn
                        .prepare_cached("SELECT id FROM users WHERE username = ?1")?
                        .query_row([name], |r| r.get(0))
                        .optional()?;
                }
            }
            "Join" => {
                if let Some(name) = reference.strip_prefix("circle:") {
                    keepers = conn
                        .prepare_cached(
                            "SELECT m.user_id FROM memberships m JOIN circles c ON c.id = m.circle_id
                             WHERE c.name = ?1 AND m.state = 'active'
                               AND m.role IN ('owner', 'moderator')",
                        )?
                        .query_map([name], |r| r.get::<_, i64>(0))?
                        .collect::<Result<Vec<_>, _>>()?;
                }
            }
            _ => {}
        }
    }
    let raised = notifications(&NoticeFacts {
        actor: activity.actor_id,
        activity_type,
        target_author,
        parent_author: activity.parent_author,
        followed,
        joined_circle_keepers: &keepers,
        addressed,
    });
    let mut written = Vec::with_capacity(raised.len());
    for (user, reason) in raised {
        let readable: bool = conn
            .prepare_cached(&format!(
                "SELECT EXISTS(SELECT 1 FROM activities a JOIN users u ON u.id = ?2
                 WHERE a.seq = ?1 AND u.status != 'deleted' AND {})",
                readable_sql(2, 3)
            ))?
            .query_row(params![seq, user, false], |r| r.get(0))?;
        if !readable {
            continue;
        }
        conn.prepare_cached(
            "INSERT INTO notifications(user_id, seq, reason) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
        )?
        .execute(params![user, seq, reason.code()])?;
        written.push((user, seq, reason.code()));
    }
    if !written.is_empty() {
        fx.push(Effect::Notify(written));
    }
    Ok(())
}
