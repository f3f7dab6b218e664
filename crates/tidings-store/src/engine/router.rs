//! The router: fans committed activities out to inboxes, strictly in log order.
//!
//! Runs on the writer thread between group commits (embedded store) or on the routing node's
//! router thread (PostgreSQL, where a writer may also route the batch it just appended), a
//! bounded slice at a time so publishes never wait long behind a big fan-out. Progress (`routed_seq`) commits in the same
//! transaction as the entries it covers, so a crash resumes exactly where it stopped.
//! A circle whose open subscriptions pass the merge threshold switches (once, at the activity
//! being routed) to being merged into inboxes at read time; `tag@*` subscriptions are always
//! merged at read time.
//!
//! A slice reads what routing needs about all of its activities in a few set queries over its
//! seq range ([`SliceFacts`]) and writes all of its entries in one statement: on PostgreSQL
//! every statement is a round trip made inside the log lock, so their number per slice, not
//! per activity, is what bounds fan-out there.

use super::Effects;
use super::activities::readable_sql;
use crate::StoreResult;
use crate::hot::Effect;
use crate::sql::{Connection, OptionalExtension, params};
use std::collections::HashMap;
use std::sync::Arc;
use tidings_core::expr::SubscriptionExpr;
use tidings_core::feeds::{NoticeFacts, notifications};
use tidings_core::routing::{Candidate, RouteFacts, SearchHit, Via, route_activity};
use tidings_core::saved::{MatchDoc, SavedSearch, parse_saved};

/// Most activities routed per slice.
const SLICE_ACTIVITIES: i64 = 256;

/// Audiences above which a source is merged at read time instead of fanned out, and how big
/// a slice may grow.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Thresholds {
    /// Open subscriptions on a circle.
    pub circle: i64,
    /// Followers of a producer.
    pub followers: i64,
    /// A slice stops taking activities once it holds about this many entries.
    pub max_deliveries: usize,
    /// Longest a slice may spend deciding before it writes (PostgreSQL, where publishes of
    /// every node wait behind the log lock); None: bounded by size only.
    pub max_slice: Option<std::time::Duration>,
}

/// Entries per slice where statements are in-process and each commit costs an fsync (the
/// embedded store): fewer, larger slices are faster.
pub(crate) const EMBEDDED_SLICE_DELIVERIES: usize = 20_000;

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
    /// Addressed to the public.
    public: bool,
}

/// A circle some activity of the slice is addressed to.
struct CircleFacts {
    name: String,
    public: bool,
    /// Merged at read time (from before this slice, or switched during it).
    merged: bool,
    /// Open subscriptions (what the merge threshold is compared with).
    audience: i64,
    /// Its subscriptions that may be current at some seq of the slice.
    subscriptions: Vec<SubscriptionRow>,
}

/// A subscription on a circle, with what decides whether it takes an activity at a seq.
struct SubscriptionRow {
    id: i64,
    user_id: i64,
    expr: String,
    tag: Option<String>,
    since_seq: i64,
    until_seq: Option<i64>,
    /// An active member of the circle, or an admin (who may read any circle).
    member_or_admin: bool,
}

/// A producer whose followers some activity of the slice goes to.
struct Producer {
    /// Every follow of it (what the merge threshold is compared with).
    audience: i64,
    /// Followers that are not deleted, with each follow's floor (read only while the
    /// audience is under the threshold).
    followers: Vec<(i64, i64)>,
}

/// What routing needs about every activity of a slice `(after, upto]`, each read in one set
/// query over the seq range.
#[derive(Default)]
struct SliceFacts {
    /// Addressed users that are not deleted, by seq.
    addressed: HashMap<i64, Vec<i64>>,
    tags: HashMap<i64, Vec<String>>,
    /// Circle ids by seq.
    circles_of: HashMap<i64, Vec<i64>>,
    circles: HashMap<i64, CircleFacts>,
    producers: HashMap<i64, Producer>,
    /// Saved searches and the text they are matched against (empty without saved searches).
    saved: SavedFacts,
}

/// What saved-search routing needs about a slice: each listed activity's indexed text, and
/// the saved searches current in the slice whose key word one of them contains.
#[derive(Default)]
struct SavedFacts {
    /// (title, tags as indexed, body, words of all three) by seq.
    docs: HashMap<i64, (String, String, String, std::collections::HashSet<String>)>,
    /// The saved searches, oldest first.
    searches: Vec<SavedRow>,
}

/// A saved search that may take an activity of the slice.
struct SavedRow {
    id: i64,
    user_id: i64,
    expr: String,
    search: SavedSearch,
    since_seq: i64,
    until_seq: Option<i64>,
}

impl SavedFacts {
    /// Reads the slice's text and the saved searches its words may match; nothing when no
    /// saved search is current in the slice (the common case costs one indexed query).
    fn read(conn: &Connection, after: i64, upto: i64) -> StoreResult<Self> {
        let mut facts = SavedFacts::default();
        let any: bool = conn
            .prepare_cached(
                "SELECT EXISTS(SELECT 1 FROM subscriptions
                               WHERE search_word IS NOT NULL AND since_seq < ?2
                                 AND (until_seq IS NULL OR until_seq > ?1))",
            )?
            .query_row(params![after, upto], |r| r.get(0))?;
        if !any {
            return Ok(facts);
        }
        let rows = conn
            .prepare_cached(
                "SELECT seq, body FROM activities WHERE seq > ?1 AND seq <= ?2 AND listed
                 ORDER BY seq",
            )?
            .query_map(params![after, upto], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let mut all_words = std::collections::BTreeSet::new();
        for (seq, body) in rows {
            let record: serde_json::Value = serde_json::from_str(&body)?;
            // The same text, taken the same way, as the search index holds for it.
            let Some((_, title, text)) = record.get("object").and_then(super::search::object_text)
            else {
                continue;
            };
            let tags = tidings_core::activity::record_tags(&record).join(" ");
            let words: std::collections::HashSet<String> = [&title, &tags, &text]
                .into_iter()
                .flat_map(|t| tidings_core::search::words(t))
                .collect();
            all_words.extend(words.iter().cloned());
            facts.docs.insert(seq, (title, tags, text, words));
        }
        if all_words.is_empty() {
            return Ok(facts);
        }
        let list = serde_json::to_string(&all_words)?;
        let in_words = match conn.engine() {
            crate::sql::Engine::Sqlite => "IN (SELECT value FROM json_each(?1))",
            crate::sql::Engine::Postgres => {
                "IN (SELECT jsonb_array_elements_text(CAST(?1 AS JSONB)))"
            }
        };
        let rows = conn
            .prepare_cached(&format!(
                "SELECT id, user_id, expr, since_seq, until_seq FROM subscriptions
                 WHERE search_word {in_words} AND since_seq < ?2
                   AND (until_seq IS NULL OR until_seq > ?3)
                 ORDER BY id"
            ))?
            .query_map(params![list, upto, after], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, Option<i64>>(4)?,
                ))
            })?;
        for row in rows {
            let (id, user_id, expr, since_seq, until_seq) = row?;
            // Stored terms were parsed when saved; one that no longer parses takes nothing.
            match parse_saved(&expr) {
                Ok(search) => facts.searches.push(SavedRow {
                    id,
                    user_id,
                    expr,
                    search,
                    since_seq,
                    until_seq,
                }),
                Err(e) => tracing::warn!(subscription = id, error = %e, "saved search skipped"),
            }
        }
        Ok(facts)
    }
}

impl SliceFacts {
    /// `authors`: the producers whose followers some activity of the slice goes to.
    fn read(
        conn: &Connection,
        after: i64,
        upto: i64,
        authors: &[i64],
        follower_threshold: i64,
    ) -> StoreResult<Self> {
        let mut facts = SliceFacts {
            saved: SavedFacts::read(conn, after, upto)?,
            ..SliceFacts::default()
        };
        let range = params![after, upto];
        let rows = conn
            .prepare_cached(
                "SELECT x.seq, x.user_id FROM activity_addressees x JOIN users u ON u.id = x.user_id
                 WHERE x.seq > ?1 AND x.seq <= ?2 AND u.status != 'deleted'
                 ORDER BY x.seq, x.user_id",
            )?
            .query_map(range, |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))?;
        for row in rows {
            let (seq, user) = row?;
            facts.addressed.entry(seq).or_default().push(user);
        }
        let rows = conn
            .prepare_cached(
                "SELECT seq, tag FROM activity_tags WHERE seq > ?1 AND seq <= ?2 ORDER BY seq, tag",
            )?
            .query_map(range, |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
        for row in rows {
            let (seq, tag) = row?;
            facts.tags.entry(seq).or_default().push(tag);
        }
        let rows = conn
            .prepare_cached(
                "SELECT ac.seq, c.id, c.name, c.visibility = 'public', c.merged_from_seq IS NOT NULL,
                        (SELECT COUNT(*) FROM subscriptions s
                         WHERE s.circle_id = c.id AND s.until_seq IS NULL
                           AND s.search_word IS NULL)
                 FROM activity_circles ac JOIN circles c ON c.id = ac.circle_id
                 WHERE ac.seq > ?1 AND ac.seq <= ?2 ORDER BY ac.seq, c.id",
            )?
            .query_map(range, |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    CircleFacts {
                        name: r.get(2)?,
                        public: r.get(3)?,
                        merged: r.get(4)?,
                        audience: r.get(5)?,
                        subscriptions: Vec::new(),
                    },
                ))
            })?;
        for row in rows {
            let (seq, id, circle) = row?;
            facts.circles_of.entry(seq).or_default().push(id);
            facts.circles.entry(id).or_insert(circle);
        }
        let open: Vec<i64> = facts
            .circles
            .iter()
            .filter(|(_, c)| !c.merged)
            .map(|(id, _)| *id)
            .collect();
        if !open.is_empty() {
            let rows = conn
                .prepare_cached(&format!(
                    "SELECT s.circle_id, s.id, s.user_id, s.expr, s.tag, s.since_seq, s.until_seq,
                            EXISTS(SELECT 1 FROM memberships m WHERE m.circle_id = s.circle_id
                                   AND m.user_id = s.user_id AND m.state = 'active')
                            -- admins may read (and so subscribe to) any circle, as at read time
                            OR EXISTS(SELECT 1 FROM users u WHERE u.id = s.user_id AND u.is_admin)
                     FROM subscriptions s
                     WHERE s.circle_id {} AND s.search_word IS NULL
                       AND s.since_seq < ?2 AND (s.until_seq IS NULL OR s.until_seq > ?3)
                     ORDER BY s.id",
                    conn.in_id_list(1)
                ))?
                .query_map(params![open, upto, after], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        SubscriptionRow {
                            id: r.get(1)?,
                            user_id: r.get(2)?,
                            expr: r.get(3)?,
                            tag: r.get(4)?,
                            since_seq: r.get(5)?,
                            until_seq: r.get(6)?,
                            member_or_admin: r.get(7)?,
                        },
                    ))
                })?;
            for row in rows {
                let (circle, subscription) = row?;
                if let Some(c) = facts.circles.get_mut(&circle) {
                    c.subscriptions.push(subscription);
                }
            }
        }
        if authors.is_empty() {
            return Ok(facts);
        }
        // Each producer's audience (one already merged at read time has none to write) ...
        let rows = conn
            .prepare_cached(&format!(
                "SELECT f.followee_id, COUNT(*) FROM follows f
                 WHERE f.followee_id {}
                   AND NOT EXISTS(SELECT 1 FROM producers_merged pm
                                  WHERE pm.user_id = f.followee_id)
                 GROUP BY f.followee_id",
                conn.in_id_list(1)
            ))?
            .query_map(params![authors], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
            })?;
        for row in rows {
            let (producer, audience) = row?;
            facts.producers.insert(
                producer,
                Producer {
                    audience,
                    followers: Vec::new(),
                },
            );
        }
        // ... and its followers only while under the threshold: one over it switches to merge
        // at read time and is never fanned out, however many follow it.
        let small: Vec<i64> = facts
            .producers
            .iter()
            .filter(|(_, p)| p.audience <= follower_threshold)
            .map(|(id, _)| *id)
            .collect();
        if !small.is_empty() {
            let rows = conn
                .prepare_cached(&format!(
                    "SELECT f.followee_id, f.follower_id, f.floor_seq
                     FROM follows f JOIN users u ON u.id = f.follower_id
                     WHERE f.followee_id {} AND u.status != 'deleted'
                     ORDER BY f.followee_id, f.follower_id",
                    conn.in_id_list(1)
                ))?
                .query_map(params![small], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                })?;
            for row in rows {
                let (producer, follower, floor) = row?;
                if let Some(p) = facts.producers.get_mut(&producer) {
                    p.followers.push((follower, floor));
                }
            }
        }
        Ok(facts)
    }
}

/// Reads the routed watermark and up to a slice of the activities past it.
fn read_pending(conn: &Connection) -> StoreResult<(i64, Vec<Pending>)> {
    let routed: i64 = conn
        .prepare_cached("SELECT CAST(value AS BIGINT) FROM meta WHERE key = 'routed_seq'")?
        .query_row([], |r| r.get(0))?;
    let pending = conn
        .prepare_cached(
            "SELECT a.seq, a.actor_id, a.listed, a.type, a.object_ref, u.username,
                    a.is_public OR EXISTS(SELECT 1 FROM activity_followers af WHERE af.seq = a.seq),
                    p.actor_id, a.is_public
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
                public: r.get(8)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok((routed, pending))
}

/// Routes one slice of the backlog in its own transaction. Returns the new watermark and
/// whether a backlog remains.
pub(crate) fn route_pending(
    conn: &Connection,
    thresholds: Thresholds,
    fx: &mut Effects,
) -> StoreResult<(i64, bool)> {
    // Read outside the log lock: the log past the watermark only grows.
    let (routed, pending) = read_pending(conn)?;
    if pending.is_empty() {
        return Ok((routed, false));
    }
    crate::adapters::begin_write(conn)?;
    let result = (|| -> StoreResult<(i64, bool)> {
        // Inside the log lock: if another router moved the watermark meanwhile (a takeover
        // after this one was presumed dead, or a writer that routed its own batch), this
        // slice is already routed; do nothing.
        let current: i64 = conn
            .prepare_cached("SELECT CAST(value AS BIGINT) FROM meta WHERE key = 'routed_seq'")?
            .query_row([], |r| r.get(0))?;
        if current != routed {
            return Ok((current, true));
        }
        let (watermark, more) = route_slice(conn, routed, &pending, thresholds, fx)?;
        crate::adapters::record_change(conn, &fx.list, Some(watermark), false)?;
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

/// Routes a slice of the backlog inside the caller's write transaction (which holds the log
/// lock and records the change): a writer routing the batch it just appended saves the
/// separate routing commit. Returns the new watermark, None when nothing was pending.
pub(crate) fn route_in_transaction(
    conn: &Connection,
    thresholds: Thresholds,
    fx: &mut Effects,
) -> StoreResult<Option<(i64, bool)>> {
    let (routed, pending) = read_pending(conn)?;
    if pending.is_empty() {
        return Ok(None);
    }
    route_slice(conn, routed, &pending, thresholds, fx).map(Some)
}

/// Routes `pending` (the activities just past `routed`) inside the log lock, up to the
/// thresholds' bounds, and moves the watermark; the caller records the change and commits.
fn route_slice(
    conn: &Connection,
    routed: i64,
    pending: &[Pending],
    thresholds: Thresholds,
    fx: &mut Effects,
) -> StoreResult<(i64, bool)> {
    let Some(last_available) = pending.last().map(|p| p.seq) else {
        return Ok((routed, false));
    };
    // Read in the lock, so nothing changes them before this slice commits.
    let mut authors: Vec<i64> = pending
        .iter()
        .filter(|p| p.listed && p.to_followers)
        .map(|p| p.actor_id)
        .collect();
    authors.sort_unstable();
    authors.dedup();
    let mut facts = SliceFacts::read(conn, routed, last_available, &authors, thresholds.followers)?;
    let mut rows = Vec::new();
    let mut watermark = routed;
    let started = std::time::Instant::now();
    for activity in pending {
        if activity.listed {
            route_one(conn, fx, &mut facts, activity, thresholds, &mut rows)?;
        } else if activity.activity_type == "Join" {
            // Unlisted: nobody gets an item, but the circle's keepers get their notice.
            notify(conn, fx, activity, &[])?;
        }
        watermark = activity.seq;
        if rows.len() >= thresholds.max_deliveries
            || thresholds
                .max_slice
                .is_some_and(|max| started.elapsed() >= max)
        {
            break;
        }
    }
    super::insert_entries(conn, &rows)?;
    conn.prepare_cached("UPDATE meta SET value = ?1 WHERE key = 'routed_seq'")?
        .execute([watermark.to_string()])?;
    let more = watermark < last_available || pending.len() as i64 == SLICE_ACTIVITIES;
    Ok((watermark, more))
}

/// Decides one activity's deliveries from the slice's facts; adds its rows to `rows` (written
/// with the slice) and its entries to the effects.
fn route_one(
    conn: &Connection,
    fx: &mut Effects,
    facts: &mut SliceFacts,
    activity: &Pending,
    thresholds: Thresholds,
    rows: &mut Vec<(i64, i64, i64)>,
) -> StoreResult<()> {
    let (seq, actor_id) = (activity.seq, activity.actor_id);
    let addressed = facts.addressed.remove(&seq).unwrap_or_default();
    let tags = facts.tags.remove(&seq).unwrap_or_default();
    let circle_ids = facts.circles_of.remove(&seq).unwrap_or_default();

    let mut names = Vec::with_capacity(circle_ids.len());
    let mut candidates = Vec::new();
    for circle_id in circle_ids {
        let Some(circle) = facts.circles.get_mut(&circle_id) else {
            continue;
        };
        names.push(circle.name.clone());
        if !circle.merged && circle.audience > thresholds.circle {
            conn.prepare_cached("UPDATE circles SET merged_from_seq = ?2 WHERE id = ?1")?
                .execute(params![circle_id, seq])?;
            fx.push(Effect::Merged {
                circle: circle_id,
                from_seq: seq,
            });
            circle.merged = true;
            tracing::info!(circle = %circle.name, audience = circle.audience, from_seq = seq, "circle switched to merge-at-read");
        }
        if circle.merged {
            continue;
        }
        for s in &circle.subscriptions {
            let current = s.since_seq < seq && s.until_seq.is_none_or(|until| until >= seq);
            let tagged = s.tag.as_ref().is_none_or(|tag| tags.contains(tag));
            if !(current && tagged && (circle.public || s.member_or_admin)) {
                continue;
            }
            if let Ok(expr) = s.expr.parse::<SubscriptionExpr>() {
                candidates.push(Candidate {
                    id: s.id,
                    user_id: s.user_id,
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
        followers_to_write(conn, fx, facts, activity, thresholds.followers)?
    } else {
        Vec::new()
    };
    notify(conn, fx, activity, &addressed)?;
    let searches = saved_search_hits(conn, &facts.saved, activity, &names, &tags)?;

    let deliveries = route_activity(
        &RouteFacts {
            author: actor_id,
            addressed: &addressed,
            pushed_circles: &names,
            tags: &tags,
            followers: &followers,
            author_name,
            searches: &searches,
        },
        &candidates,
    );
    // The author's own copy is never written: the multiplexer reads it from the author's
    // outbox in memory (one random B-tree insert less per publish). Routing still decides
    // with it, so the author never also gets a subscription entry for their own post.
    // Entries with the same reason share one text.
    let mut texts: HashMap<i64, Arc<str>> = HashMap::new();
    let mut entries = Vec::with_capacity(deliveries.len());
    for d in deliveries.iter().filter(|d| d.via != Via::Author) {
        let code = super::via_code(&d.via, actor_id).unwrap_or(0);
        rows.push((d.user_id, seq, code));
        let text = texts
            .entry(code)
            .or_insert_with(|| Arc::from(d.via.as_text()))
            .clone();
        entries.push((d.user_id, seq, text));
    }
    fx.push(Effect::Entries(entries));
    Ok(())
}

/// The saved searches that match one activity and whose subscriber may read it: a public
/// activity, or one in a circle they may read (public, or an active member; no admin
/// exception, as for search). This is the rule the multiplexer applies to every entry a
/// subscription wrote, so an entry written here is never hidden at read time.
fn saved_search_hits(
    conn: &Connection,
    saved: &SavedFacts,
    activity: &Pending,
    circles: &[String],
    tags: &[String],
) -> StoreResult<Vec<SearchHit>> {
    let seq = activity.seq;
    let Some((title, tag_text, body, words)) = saved.docs.get(&seq) else {
        return Ok(Vec::new());
    };
    let doc = MatchDoc {
        title,
        tags: tag_text,
        body,
        author: &activity.author_name,
        circles,
        tag_list: tags,
    };
    let mut hits = Vec::new();
    for s in &saved.searches {
        let current = s.since_seq < seq && s.until_seq.is_none_or(|until| until >= seq);
        if !current
            || s.user_id == activity.actor_id
            || !s.search.key_word().is_some_and(|w| words.contains(w))
            || !s.search.matches(&doc)
        {
            continue;
        }
        let readable: bool = activity.public
            || conn
                .prepare_cached(
                    "SELECT EXISTS(
                         SELECT 1 FROM activity_circles ac JOIN circles c ON c.id = ac.circle_id
                         WHERE ac.seq = ?1
                           AND (c.visibility = 'public'
                                OR EXISTS(SELECT 1 FROM memberships m
                                          WHERE m.circle_id = c.id AND m.user_id = ?2
                                            AND m.state = 'active')))",
                )?
                .query_row(params![seq, s.user_id], |r| r.get(0))?;
        if readable {
            hits.push(SearchHit {
                id: s.id,
                user_id: s.user_id,
                expr: s.expr.clone(),
            });
        }
    }
    Ok(hits)
}

/// The followers an activity is written to: none once the author has too many (from then on
/// they read the author's outbox at read time), else every follow whose floor is below it.
fn followers_to_write(
    conn: &Connection,
    fx: &mut Effects,
    facts: &mut SliceFacts,
    activity: &Pending,
    threshold: i64,
) -> StoreResult<Vec<i64>> {
    let (seq, actor_id) = (activity.seq, activity.actor_id);
    // Absent: already merged at read time, or followed by nobody.
    let Some(producer) = facts.producers.get_mut(&actor_id) else {
        return Ok(Vec::new());
    };
    if producer.audience > threshold {
        conn.prepare_cached("INSERT INTO producers_merged(user_id, from_seq) VALUES (?1, ?2)")?
            .execute(params![actor_id, seq])?;
        fx.push(Effect::ProducerMerged {
            producer: actor_id,
            from_seq: seq,
        });
        tracing::info!(producer = %activity.author_name, audience = producer.audience, from_seq = seq, "producer switched to merge-at-read");
        // Switched once, at this activity: its later activities read it at read time.
        facts.producers.remove(&actor_id);
        return Ok(Vec::new());
    }
    Ok(producer
        .followers
        .iter()
        .filter(|(_, floor)| *floor < seq)
        .map(|(follower, _)| *follower)
        .collect())
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
