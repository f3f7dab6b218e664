//! Moderation: reports, moderators' decisions, circle bans and the moderation log
//! (decision 0029).
//!
//! Every report is a Flag activity and every decision a Reject/Remove/Block activity, each
//! carrying an engine-written `moderation` object (see `tidings_core::moderation`) and
//! appended to the circle's `moderation:NAME` stream, so the log is the audit trail: hashed,
//! chained, immutable. The report queue (`reports`) and the bans (`circle_bans`) are mutable
//! state derived from those activities, written in the same transaction, and re-derived from
//! the log by [`rederive`] (run by `tidings rebuild`).
//!
//! A decision that takes an item down retracts it as its author's Delete would (the
//! `retractions` row points at the decision), so every projection — inboxes, streams,
//! search, merge-at-read — already honours it.

use super::activities::{
    append_link, body, notified_of, publish_in, readable_seq, render, retraction, seq_by_id,
};
use super::circles::{circle_keepers, manages, membership, visible_circle};
use super::subscriptions::close_circle_subscriptions;
use super::users::user_by_id;
use super::{Effects, Shared, Store};
use crate::hot::Effect;
use crate::model::{
    AuthorHistory, Circle, CircleBan, ModerationLogEntry, PublishInput, Report, ReportEntry,
    ReportItem, Resolution, Role, User, UserStatus,
};
use crate::sql::{Connection, OptionalExtension, params};
use crate::{StoreError, StoreResult, now_rfc3339};
use serde_json::Value;
use tidings_core::activity::{Addressee, Draft, Kind};
use tidings_core::moderation::{
    Decision, ReportReason, ban_holds, decision_fields, flag_fields, read_decision, read_flag,
};

/// The stream a circle's moderation activities are chained in.
fn log_stream(circle: &str) -> String {
    format!("moderation:{circle}")
}

/// The end of a ban that holds now on `user` in `circle` (`Some(None)`: for good).
pub(crate) fn ban(
    conn: &Connection,
    circle_id: i64,
    user_id: i64,
) -> StoreResult<Option<Option<String>>> {
    let row: Option<Option<String>> = conn
        .prepare_cached("SELECT until FROM circle_bans WHERE circle_id = ?1 AND user_id = ?2")?
        .query_row(params![circle_id, user_id], |r| r.get(0))
        .optional()?;
    let now = now_rfc3339();
    Ok(row.filter(|until| ban_holds(until.as_deref(), &now)))
}

/// The error a banned person gets for posting to, or joining, the circle.
pub(crate) fn banned_error(circle: &str, until: Option<&str>) -> StoreError {
    StoreError::forbidden(
        "banned_from_circle",
        match until {
            Some(until) => format!("you are banned from circle {circle:?} until {until}"),
            None => format!("you are banned from circle {circle:?}"),
        },
    )
}

/// A draft built by the engine (never posted): a verb on `object`, with its moderation object.
fn engine_draft(
    verb: &str,
    object: &str,
    to: Vec<Addressee>,
    extra: serde_json::Map<String, Value>,
) -> Draft {
    Draft {
        activity_type: verb.to_owned(),
        object: Value::String(object.to_owned()),
        object_type: None,
        object_ref: Some(object.to_owned()),
        to,
        tags: Vec::new(),
        actions: Vec::new(),
        in_reply_to: None,
        kind: Kind::Minor,
        extra,
    }
}

/// Publishes an engine-built moderation activity and chains it into each circle's moderation
/// stream; returns its seq and id.
fn publish_moderation(
    conn: &Connection,
    shared: &Shared,
    fx: &mut Effects,
    actor: &User,
    draft: Draft,
    circles: &[String],
) -> StoreResult<(i64, String, String)> {
    let published = publish_in(
        conn,
        shared,
        fx,
        PublishInput {
            actor: actor.clone(),
            draft,
            idempotency_key: None,
        },
    )?;
    let (digest, at): (String, String) = conn
        .prepare_cached("SELECT digest, published FROM activities WHERE seq = ?1")?
        .query_row([published.seq], |r| Ok((r.get(0)?, r.get(1)?)))?;
    for circle in circles {
        append_link(
            conn,
            shared,
            fx,
            log_stream(circle),
            None,
            published.seq,
            &digest,
        )?;
    }
    Ok((published.seq, published.id, at))
}

/// Circles an activity was addressed to: (id, name).
fn activity_circles(conn: &Connection, seq: i64) -> StoreResult<Vec<(i64, String)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT c.id, c.name FROM activity_circles ac JOIN circles c ON c.id = ac.circle_id
         WHERE ac.seq = ?1 ORDER BY c.name",
    )?;
    let rows = stmt
        .query_map([seq], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<Vec<(i64, String)>, _>>()?;
    Ok(rows)
}

/// Writes the report rows a Flag stands for (also used when re-deriving).
#[allow(clippy::too_many_arguments)]
fn insert_reports(
    conn: &Connection,
    flag_seq: i64,
    circle_ids: &[i64],
    target_seq: i64,
    author_id: i64,
    reporter_id: i64,
    reason: ReportReason,
    comment: &str,
    at: &str,
) -> StoreResult<()> {
    for circle_id in circle_ids {
        conn.prepare_cached(
            "INSERT INTO reports(flag_seq, circle_id, target_seq, author_id, reporter_id, reason,
                                 comment, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT DO NOTHING",
        )?
        .execute(params![
            flag_seq,
            circle_id,
            target_seq,
            author_id,
            reporter_id,
            reason.as_str(),
            comment,
            at
        ])?;
    }
    Ok(())
}

/// Applies a decision's derived state: resolves the open reports on the item in the circle,
/// takes the item down, removes or bans its author. Returns how many reports it resolved.
#[allow(clippy::too_many_arguments)]
fn apply_decision(
    conn: &Connection,
    fx: &mut Effects,
    circle_id: i64,
    target_seq: i64,
    author_id: i64,
    decision: Decision,
    until: Option<&str>,
    decision_seq: i64,
) -> StoreResult<i64> {
    let resolved = conn
        .prepare_cached(
            "UPDATE reports SET decision_seq = ?3, decision = ?4
             WHERE circle_id = ?1 AND target_seq = ?2 AND decision_seq IS NULL",
        )?
        .execute(params![
            circle_id,
            target_seq,
            decision_seq,
            decision.as_str()
        ])?;
    if decision.takes_down() {
        let inserted = conn
            .prepare_cached(
                "INSERT INTO retractions(seq, by_seq) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
            )?
            .execute(params![target_seq, decision_seq])?;
        if inserted > 0 {
            super::search::index_retraction(conn, target_seq)?;
            let mut notified = notified_of(conn, target_seq)?;
            notified.push(author_id);
            fx.push(Effect::Retract {
                seq: target_seq,
                notified,
            });
        }
    }
    if matches!(decision, Decision::Remove | Decision::Ban) {
        let removed = conn
            .prepare_cached(
                "DELETE FROM memberships WHERE circle_id = ?1 AND user_id = ?2 AND role <> 'owner'",
            )?
            .execute(params![circle_id, author_id])?;
        if removed > 0 {
            fx.push(Effect::Member {
                user: author_id,
                circle: circle_id,
                active: false,
            });
            close_circle_subscriptions(conn, fx, author_id, circle_id)?;
        }
    }
    if decision == Decision::Ban {
        conn.prepare_cached(
            "INSERT INTO circle_bans(circle_id, user_id, until, by_seq) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(circle_id, user_id) DO UPDATE SET until = excluded.until, by_seq = excluded.by_seq",
        )?
        .execute(params![circle_id, author_id, until, decision_seq])?;
    }
    Ok(resolved as i64)
}

/// The circle as a moderator of it (or a site admin) acts on it; members get 403, outsiders
/// of a private circle 404.
fn moderated_circle(conn: &Connection, name: &str, actor: &User) -> StoreResult<Circle> {
    let circle = visible_circle(conn, name, Some(actor))?;
    if manages(&circle.my_membership).is_none() && !actor.is_admin {
        return Err(StoreError::forbidden(
            "not_circle_moderator",
            "only the circle's owner and moderators (or a site admin) moderate it",
        ));
    }
    Ok(circle)
}

fn is_keeper(circle: &Circle, viewer: &User) -> bool {
    viewer.is_admin || manages(&circle.my_membership).is_some()
}

/// A decision a moderator asks for.
#[derive(Debug, Clone)]
pub struct DecisionInput {
    /// What to do.
    pub decision: Decision,
    /// Why (shown to the author and in the public log).
    pub reason: String,
    /// A ban's end (canonical RFC 3339, see [`crate::canonical_time`]); None: for good.
    pub until: Option<String>,
}

impl Store {
    /// Files a report on an activity `reporter` may read: a Flag addressed to the owner and
    /// moderators of every circle the activity was addressed to (with none, site admins see
    /// it), chained into each circle's moderation stream.
    pub async fn report(
        &self,
        reporter: User,
        activity_id: &str,
        reason: ReportReason,
        comment: String,
    ) -> StoreResult<Report> {
        let activity_id = activity_id.to_owned();
        let shared = self.shared.clone();
        self.write(move |conn, fx| {
            let target = readable_seq(conn, &activity_id, &reporter)?
                .ok_or(StoreError::not_found("activity"))?;
            if let Some(t) = retraction(conn, target)? {
                return Err(StoreError::Gone {
                    tombstone: serde_json::to_value(t)?,
                });
            }
            let (_, author_id) = body(conn, target)?;
            if author_id == reporter.id {
                return Err(StoreError::unprocessable(
                    "own_activity",
                    "you cannot report your own activity; retract it instead",
                ));
            }
            let again: bool = conn
                .prepare_cached(
                    "SELECT EXISTS(SELECT 1 FROM reports WHERE target_seq = ?1 AND reporter_id = ?2
                     AND decision_seq IS NULL)",
                )?
                .query_row(params![target, reporter.id], |r| r.get(0))?;
            if again {
                return Err(StoreError::conflict(
                    "already_reported",
                    "you already reported this activity and it is not resolved yet",
                ));
            }
            let circles = activity_circles(conn, target)?;
            let mut keepers = Vec::new();
            for (id, _) in &circles {
                keepers.extend(circle_keepers(conn, *id)?);
            }
            keepers.sort();
            keepers.dedup();
            let names: Vec<String> = circles.iter().map(|(_, n)| n.clone()).collect();
            let draft = engine_draft(
                "Flag",
                &activity_id,
                keepers.into_iter().map(Addressee::User).collect(),
                flag_fields(&names, reason, &comment),
            );
            let (seq, id, at) = publish_moderation(conn, &shared, fx, &reporter, draft, &names)?;
            let ids: Vec<i64> = circles.iter().map(|(id, _)| *id).collect();
            // Reports on items outside every circle are kept under circle 0: site admins'.
            let ids = if ids.is_empty() { vec![0] } else { ids };
            insert_reports(
                conn,
                seq,
                &ids,
                target,
                author_id,
                reporter.id,
                reason,
                &comment,
                &at,
            )?;
            // The reporter learns which circles' moderators have it, of those they can see: a
            // private circle's name is not theirs to learn from a post addressed to them too.
            let mut shown = Vec::new();
            for name in names {
                let circle = super::circles::circle_by_name(conn, &name)?;
                if super::circles::can_read_circle(conn, &circle, Some(&reporter))? {
                    shown.push(name);
                }
            }
            Ok(Report {
                id,
                activity: activity_id,
                reason: reason.as_str().to_owned(),
                comment,
                circles: shown,
                created_at: at,
            })
        })
        .await
    }

    /// A circle's report queue, oldest reported item first: `open` items (any unresolved
    /// report), or resolved ones. Moderators and site admins only.
    pub async fn report_queue(
        &self,
        circle: &str,
        viewer: User,
        open: bool,
        limit: i64,
    ) -> StoreResult<Vec<ReportItem>> {
        let circle = circle.to_owned();
        self.read(move |conn| {
            let circle = moderated_circle(conn, &circle, &viewer)?;
            let mut stmt = conn.prepare_cached(
                "SELECT target_seq, author_id FROM reports WHERE circle_id = ?1
                 GROUP BY target_seq, author_id
                 HAVING (SUM(CASE WHEN decision_seq IS NULL THEN 1 ELSE 0 END) > 0) = ?2
                 ORDER BY MIN(flag_seq) LIMIT ?3",
            )?;
            let targets = stmt
                .query_map(params![circle.id, open, limit], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?
                .collect::<Result<Vec<(i64, i64)>, _>>()?;
            let mut items = Vec::with_capacity(targets.len());
            for (target, author_id) in targets {
                let activity = render(conn, target)?;
                let mut stmt = conn.prepare_cached(
                    "SELECT a.id, u.username, r.reason, r.comment, r.created_at, r.decision
                     FROM reports r JOIN activities a ON a.seq = r.flag_seq
                     JOIN users u ON u.id = r.reporter_id
                     WHERE r.circle_id = ?1 AND r.target_seq = ?2 ORDER BY r.flag_seq",
                )?;
                let reports = stmt
                    .query_map(params![circle.id, target], |r| {
                        Ok(ReportEntry {
                            id: r.get(0)?,
                            reporter: r.get(1)?,
                            reason: r.get(2)?,
                            comment: r.get(3)?,
                            created_at: r.get(4)?,
                            decision: r.get(5)?,
                        })
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                let state = if reports.iter().any(|r| r.decision.is_none()) {
                    "open"
                } else {
                    "resolved"
                };
                items.push(ReportItem {
                    activity_id: activity
                        .get("id")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    retracted: retraction(conn, target)?.is_some(),
                    activity,
                    state: state.to_owned(),
                    reports,
                    author: author_history(conn, circle.id, author_id)?,
                });
            }
            Ok(items)
        })
        .await
    }

    /// Resolves every open report on `activity_id` in the circle with one decision, recorded
    /// as an activity addressed to the author and the circle's keepers.
    pub async fn resolve_reports(
        &self,
        circle: &str,
        activity_id: &str,
        moderator: User,
        input: DecisionInput,
    ) -> StoreResult<Resolution> {
        let circle = circle.to_owned();
        let activity_id = activity_id.to_owned();
        let shared = self.shared.clone();
        self.write(move |conn, fx| {
            let circle = moderated_circle(conn, &circle, &moderator)?;
            let target = seq_by_id(conn, &activity_id)?.ok_or(StoreError::not_found("report"))?;
            let (open, any): (i64, i64) = conn
                .prepare_cached(
                    "SELECT COALESCE(SUM(CASE WHEN decision_seq IS NULL THEN 1 ELSE 0 END), 0),
                            COUNT(*)
                     FROM reports WHERE circle_id = ?1 AND target_seq = ?2",
                )?
                .query_row(params![circle.id, target], |r| Ok((r.get(0)?, r.get(1)?)))?;
            if any == 0 {
                return Err(StoreError::not_found("report"));
            }
            if open == 0 {
                return Err(StoreError::conflict(
                    "already_resolved",
                    "every report on this activity in this circle is resolved",
                ));
            }
            let flags: Vec<String> = conn
                .prepare_cached(
                    "SELECT a.id FROM reports r JOIN activities a ON a.seq = r.flag_seq
                     WHERE r.circle_id = ?1 AND r.target_seq = ?2 AND r.decision_seq IS NULL
                     ORDER BY r.flag_seq",
                )?
                .query_map(params![circle.id, target], |r| r.get(0))?
                .collect::<Result<Vec<String>, _>>()?;
            let (_, author_id) = body(conn, target)?;
            let author = user_by_id(conn, author_id)?;
            if matches!(input.decision, Decision::Remove | Decision::Ban) {
                let role = membership(conn, circle.id, author_id)?.map(|m| m.role);
                if role == Some(Role::Owner) {
                    return Err(StoreError::conflict(
                        "owner_cannot_leave",
                        "the owner cannot be removed or banned from their circle",
                    ));
                }
                let by_owner = manages(&circle.my_membership) == Some(Role::Owner);
                if role == Some(Role::Moderator) && !by_owner && !moderator.is_admin {
                    return Err(StoreError::forbidden(
                        "owner_only",
                        "only the owner removes or bans a moderator",
                    ));
                }
            }
            let until = input.until.filter(|_| input.decision == Decision::Ban);
            let mut to: Vec<Addressee> = circle_keepers(conn, circle.id)?
                .into_iter()
                .map(Addressee::User)
                .collect();
            if author.status != UserStatus::Deleted {
                to.push(Addressee::User(author.username.clone()));
            }
            to.sort();
            to.dedup();
            let draft = engine_draft(
                input.decision.verb(),
                &activity_id,
                to,
                decision_fields(
                    &circle.name,
                    input.decision,
                    &input.reason,
                    until.as_deref(),
                    &flags,
                ),
            );
            let (seq, id, _) = publish_moderation(
                conn,
                &shared,
                fx,
                &moderator,
                draft,
                std::slice::from_ref(&circle.name),
            )?;
            let resolved = apply_decision(
                conn,
                fx,
                circle.id,
                target,
                author_id,
                input.decision,
                until.as_deref(),
                seq,
            )?;
            Ok(Resolution {
                id,
                decision: input.decision.as_str().to_owned(),
                activity: activity_id,
                resolved,
                until,
            })
        })
        .await
    }

    /// Bans that hold now in a circle (moderators and site admins only).
    pub async fn circle_bans(&self, circle: &str, viewer: User) -> StoreResult<Vec<CircleBan>> {
        let circle = circle.to_owned();
        self.read(move |conn| {
            let circle = moderated_circle(conn, &circle, &viewer)?;
            let mut stmt = conn.prepare_cached(
                "SELECT u.username, b.until, a.id FROM circle_bans b
                 JOIN users u ON u.id = b.user_id JOIN activities a ON a.seq = b.by_seq
                 WHERE b.circle_id = ?1 ORDER BY u.username",
            )?;
            let now = now_rfc3339();
            let bans = stmt
                .query_map([circle.id], |r| {
                    Ok(CircleBan {
                        username: r.get(0)?,
                        until: r.get(1)?,
                        by: r.get(2)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(bans
                .into_iter()
                .filter(|b| ban_holds(b.until.as_deref(), &now))
                .collect())
        })
        .await
    }

    /// A circle's moderation log, newest first, for anyone who may read the circle. Reports
    /// are listed without their reporter or comment unless the reader moderates the circle.
    pub async fn moderation_log(
        &self,
        circle: &str,
        viewer: User,
        before: Option<i64>,
        limit: i64,
    ) -> StoreResult<Vec<ModerationLogEntry>> {
        let circle = circle.to_owned();
        self.read(move |conn| {
            let circle = visible_circle(conn, &circle, Some(&viewer))?;
            let keeper = is_keeper(&circle, &viewer);
            let mut stmt = conn.prepare_cached(
                "SELECT l.pos, a.id, a.body, u.username, a.published FROM stream_links l
                 JOIN activities a ON a.seq = l.seq JOIN users u ON u.id = a.actor_id
                 WHERE l.stream = ?1 AND l.pos < ?2 ORDER BY l.pos DESC LIMIT ?3",
            )?;
            let rows = stmt
                .query_map(
                    params![log_stream(&circle.name), before.unwrap_or(i64::MAX), limit],
                    |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, String>(3)?,
                            r.get::<_, String>(4)?,
                        ))
                    },
                )?
                .collect::<Result<Vec<_>, _>>()?;
            let mut entries = Vec::with_capacity(rows.len());
            for (pos, id, stored, actor, published) in rows {
                let record: Value = serde_json::from_str(&stored)?;
                let object = record
                    .get("object")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                if let Some(flag) = read_flag(&record) {
                    entries.push(ModerationLogEntry {
                        id,
                        pos,
                        action: "report".into(),
                        actor: keeper.then_some(actor),
                        object,
                        reason: flag.reason.as_str().to_owned(),
                        until: None,
                        published,
                    });
                } else if let Some(d) = read_decision(&record) {
                    entries.push(ModerationLogEntry {
                        id,
                        pos,
                        action: d.decision.as_str().to_owned(),
                        actor: Some(actor),
                        object,
                        reason: d.reason,
                        until: d.until,
                        published,
                    });
                }
            }
            Ok(entries)
        })
        .await
    }
}

/// The author's record in a circle, for the queue.
fn author_history(conn: &Connection, circle_id: i64, author_id: i64) -> StoreResult<AuthorHistory> {
    let author = user_by_id(conn, author_id)?;
    let posts: i64 = conn
        .prepare_cached(
            "SELECT COUNT(*) FROM activity_circles ac JOIN activities a ON a.seq = ac.seq
             WHERE ac.circle_id = ?1 AND a.actor_id = ?2 AND a.listed",
        )?
        .query_row(params![circle_id, author_id], |r| r.get(0))?;
    let (reported, taken_down): (i64, i64) = conn
        .prepare_cached(
            "SELECT COUNT(DISTINCT target_seq),
                    COUNT(DISTINCT CASE WHEN decision IN ('hide', 'remove', 'ban') THEN target_seq END)
             FROM reports WHERE circle_id = ?1 AND author_id = ?2",
        )?
        .query_row(params![circle_id, author_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(AuthorHistory {
        username: author.username,
        posts,
        reported,
        taken_down,
        banned: ban(conn, circle_id, author_id)?.is_some(),
    })
}

/// Re-derives the report queue and the bans from the log's moderation activities, in log
/// order (`tidings rebuild`). Only engine-written records count: a hand-posted Flag has no
/// moderation object.
pub(crate) fn rederive(conn: &Connection) -> StoreResult<(i64, i64)> {
    conn.execute_batch("DELETE FROM reports; DELETE FROM circle_bans;")?;
    let mut stmt = conn.prepare(
        "SELECT seq, type, actor_id, object_ref, published, body FROM activities
         WHERE type IN ('Flag', 'Reject', 'Remove', 'Block') AND NOT listed ORDER BY seq",
    )?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let (mut reports, mut decisions) = (0, 0);
    // Retractions and memberships are not touched here: retractions are log indexes kept by a
    // rebuild, and memberships are not derived state.
    for (seq, verb, actor_id, object, published, stored) in rows {
        let record: Value = serde_json::from_str(&stored)?;
        let Some(target) = object
            .as_deref()
            .map(|o| seq_by_id(conn, o))
            .transpose()?
            .flatten()
        else {
            continue;
        };
        let (_, author_id) = body(conn, target)?;
        if verb == "Flag" {
            let Some(flag) = read_flag(&record) else {
                continue;
            };
            let mut ids = Vec::new();
            for name in &flag.circles {
                if let Some(id) = circle_id(conn, name)? {
                    ids.push(id);
                }
            }
            if flag.circles.is_empty() {
                ids.push(0);
            }
            insert_reports(
                conn,
                seq,
                &ids,
                target,
                author_id,
                actor_id,
                flag.reason,
                &flag.comment,
                &published,
            )?;
            reports += 1;
        } else if let Some(d) = read_decision(&record) {
            let Some(circle) = circle_id(conn, &d.circle)? else {
                continue;
            };
            conn.prepare_cached(
                "UPDATE reports SET decision_seq = ?3, decision = ?4
                 WHERE circle_id = ?1 AND target_seq = ?2 AND decision_seq IS NULL",
            )?
            .execute(params![circle, target, seq, d.decision.as_str()])?;
            if d.decision == Decision::Ban {
                conn.prepare_cached(
                    "INSERT INTO circle_bans(circle_id, user_id, until, by_seq) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT(circle_id, user_id) DO UPDATE SET until = excluded.until, by_seq = excluded.by_seq",
                )?
                .execute(params![circle, author_id, d.until, seq])?;
            }
            decisions += 1;
        }
    }
    Ok((reports, decisions))
}

fn circle_id(conn: &Connection, name: &str) -> StoreResult<Option<i64>> {
    Ok(conn
        .prepare_cached("SELECT id FROM circles WHERE name = ?1")?
        .query_row([name], |r| r.get(0))
        .optional()?)
}

/// Whether `user` blocks `actor`.
pub(crate) fn blocks(conn: &Connection, user: i64, actor: i64) -> StoreResult<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS(SELECT 1 FROM silences WHERE user_id = ?1 AND actor_id = ?2
             AND kind = 'block')",
        )?
        .query_row(params![user, actor], |r| r.get(0))?)
}

/// What a blocked person gets for reaching the person who blocked them. It says no more than
/// that: not who, since the call named them.
pub(crate) fn blocked_error() -> StoreError {
    StoreError::forbidden(
        "blocked",
        "you cannot address, follow or reply to someone who blocked you",
    )
}

/// Block (they cannot address, follow or reply to you; you never see them) or mute (you stop
/// seeing them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SilenceKind {
    /// Both ways: no contact, nothing seen.
    Block,
    /// One way: nothing seen.
    Mute,
}

impl SilenceKind {
    fn as_str(self) -> &'static str {
        match self {
            SilenceKind::Block => "block",
            SilenceKind::Mute => "mute",
        }
    }
}

impl Store {
    /// Blocks or mutes `target` for `user` (a block also ends a follow either way); answers
    /// whether it is new. Changing a mute into a block (or back) is allowed.
    pub async fn silence(&self, user: User, target: &str, kind: SilenceKind) -> StoreResult<bool> {
        let target = target.to_owned();
        self.write(move |conn, fx| {
            let other = super::users::user_by_name(conn, &target)?;
            if other.id == user.id {
                return Err(StoreError::unprocessable(
                    "cannot_silence_self",
                    "you cannot block or mute yourself",
                ));
            }
            let earlier: Option<String> = conn
                .prepare_cached("SELECT kind FROM silences WHERE user_id = ?1 AND actor_id = ?2")?
                .query_row(params![user.id, other.id], |r| r.get(0))
                .optional()?;
            conn.prepare_cached(
                "INSERT INTO silences(user_id, actor_id, kind, created_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(user_id, actor_id) DO UPDATE SET kind = excluded.kind",
            )?
            .execute(params![user.id, other.id, kind.as_str(), now_rfc3339()])?;
            if kind == SilenceKind::Block {
                // Neither follows the other any more: the blocked person stops receiving the
                // blocker's follower posts, and the blocker stops receiving theirs.
                if super::activities::follow_row(conn, other.id, user.id)?.is_some() {
                    super::activities::unfollow_in(conn, fx, other.id, &user)?;
                }
                if super::activities::follow_row(conn, user.id, other.id)?.is_some() {
                    super::activities::unfollow_in(conn, fx, user.id, &other)?;
                }
            }
            fx.push(Effect::Silence {
                user: user.id,
                actor: other.id,
                on: true,
            });
            Ok(earlier.is_none())
        })
        .await
    }

    /// Lifts a block or mute of `target` (of the given kind).
    pub async fn unsilence(&self, user: User, target: &str, kind: SilenceKind) -> StoreResult<()> {
        let target = target.to_owned();
        self.write(move |conn, fx| {
            let other = super::users::user_by_name(conn, &target)?;
            let removed = conn
                .prepare_cached(
                    "DELETE FROM silences WHERE user_id = ?1 AND actor_id = ?2 AND kind = ?3",
                )?
                .execute(params![user.id, other.id, kind.as_str()])?;
            if removed == 0 {
                return Err(StoreError::not_found(match kind {
                    SilenceKind::Block => "block",
                    SilenceKind::Mute => "mute",
                }));
            }
            fx.push(Effect::Silence {
                user: user.id,
                actor: other.id,
                on: false,
            });
            Ok(())
        })
        .await
    }

    /// The usernames `user` blocks or mutes, by name.
    pub async fn silenced(&self, user: User, kind: SilenceKind) -> StoreResult<Vec<String>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT u.username FROM silences s JOIN users u ON u.id = s.actor_id
                 WHERE s.user_id = ?1 AND s.kind = ?2 ORDER BY u.username",
            )?;
            let names = stmt
                .query_map(params![user.id, kind.as_str()], |r| r.get(0))?
                .collect::<Result<Vec<String>, _>>()?;
            Ok(names)
        })
        .await
    }
}
