//! Publishing into the log, and reading activities, streams, replies and versions.

use super::circles::{can_read_circle, circle_by_name, membership, visible_circle};
use super::users::{user_by_id, user_by_name};
use super::{Effects, Shared, Store, StreamHead};
use crate::hot::{ActorInfo, Effect, FOLLOWED_USER, FollowEdge, Meta, StreamKey};
use crate::model::{
    CustomType, MembershipState, Page, PageFrom, PageItem, Tombstone, User, UserStatus,
};
use crate::model::{PublishInput, Published};
use crate::sql::OwnedValue as SqlValue;
use crate::sql::{Connection, Engine, OptionalExtension, params, params_from_iter};
use crate::{StoreError, StoreResult, now_rfc3339, now_with_unix};
use serde_json::{Value, json};
use std::sync::Arc;
use tidings_core::activity::Kind;
use tidings_core::activity::{Addressee, record_tags};
use tidings_core::canonical::{activity_digest, canonical_json, chain_hash};
use tidings_core::moderation::MODERATION_KEY;

/// Visibility predicate over `a` (activities) for viewer `?V` and admin flag `?A`.
/// Kept as one SQL fragment so every listing applies the same rule.
pub(crate) const READABLE: &str = "(?A OR a.actor_id = ?V OR a.is_public
    OR EXISTS(SELECT 1 FROM activity_addressees x WHERE x.seq = a.seq AND x.user_id = ?V)
    OR (EXISTS(SELECT 1 FROM activity_followers af WHERE af.seq = a.seq)
        AND EXISTS(SELECT 1 FROM follows f WHERE f.follower_id = ?V AND f.followee_id = a.actor_id))
    OR EXISTS(SELECT 1 FROM activity_circles ac JOIN circles c ON c.id = ac.circle_id
              WHERE ac.seq = a.seq AND (c.visibility = 'public' OR EXISTS(
                  SELECT 1 FROM memberships m WHERE m.circle_id = c.id AND m.user_id = ?V
                  AND m.state = 'active'))))";

/// Listed, not retracted.
pub(crate) const LIVE: &str =
    "a.listed AND NOT EXISTS(SELECT 1 FROM retractions r WHERE r.seq = a.seq)";

/// Fills the viewer placeholders of [`READABLE`] with numbered parameters.
pub(crate) fn readable_sql(viewer_param: usize, admin_param: usize) -> String {
    READABLE
        .replace("?V", &format!("?{viewer_param}"))
        .replace("?A", &format!("?{admin_param}"))
}

pub(super) fn seq_by_id(conn: &Connection, id: &str) -> StoreResult<Option<i64>> {
    Ok(conn
        .prepare_cached("SELECT seq FROM activities WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?)
}

/// The seq of an activity `viewer` may read; None when it does not exist or is hidden from them
/// (both look the same to the caller, so existence never leaks). Store errors propagate.
pub(crate) fn readable_seq(conn: &Connection, id: &str, viewer: &User) -> StoreResult<Option<i64>> {
    match seq_by_id(conn, id)? {
        Some(seq) if can_read(conn, seq, viewer)? => Ok(Some(seq)),
        _ => Ok(None),
    }
}

/// Whether `viewer` may read the activity at `seq`.
pub(crate) fn can_read(conn: &Connection, seq: i64, viewer: &User) -> StoreResult<bool> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT EXISTS(SELECT 1 FROM activities a WHERE a.seq = ?1 AND {})",
            readable_sql(2, 3)
        ))?
        .query_row(params![seq, viewer.id, viewer.is_admin], |r| r.get(0))?)
}

pub(super) fn retraction(conn: &Connection, seq: i64) -> StoreResult<Option<Tombstone>> {
    Ok(conn
        .prepare_cached(
            "SELECT a.id, a.type, d.id, d.published FROM retractions r
             JOIN activities a ON a.seq = r.seq JOIN activities d ON d.seq = r.by_seq
             WHERE r.seq = ?1",
        )?
        .query_row([seq], |r| {
            Ok(Tombstone {
                id: r.get(0)?,
                kind: "Tombstone".into(),
                former_type: r.get(1)?,
                deleted_by: r.get(2)?,
                deleted: r.get(3)?,
            })
        })
        .optional()?)
}

pub(super) fn body(conn: &Connection, seq: i64) -> StoreResult<(String, i64)> {
    conn.prepare_cached("SELECT body, actor_id FROM activities WHERE seq = ?1")?
        .query_row([seq], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?
        .ok_or(StoreError::not_found("activity"))
}

/// The activity as readers see it: the stored record, with the latest edit's object shown and
/// derived state (author profile, edit history, reply count) under `tidings`. Everything
/// outside `tidings` except a superseded `object` is the immutable record its `digest` covers.
pub(crate) fn render(conn: &Connection, seq: i64) -> StoreResult<Value> {
    let (stored, actor_id) = body(conn, seq)?;
    let mut activity: Value = serde_json::from_str(&stored)?;
    let actor = user_by_id(conn, actor_id)?;
    let mut meta = serde_json::Map::new();
    meta.insert(
        "actor".into(),
        serde_json::from_str(&actor_info(&actor).json)?,
    );
    let latest_edit: Option<(String, i64, String)> = conn
        .prepare_cached(
            "SELECT u.body, (SELECT COUNT(*) FROM edits WHERE target_seq = ?1), u.published
             FROM edits e JOIN activities u ON u.seq = e.update_seq
             WHERE e.target_seq = ?1 ORDER BY e.update_seq DESC LIMIT 1",
        )?
        .query_row([seq], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    if let Some((update_body, edits, at)) = latest_edit {
        let update: Value = serde_json::from_str(&update_body)?;
        if let (Some(obj), Some(doc)) = (update.get("object"), activity.as_object_mut()) {
            let mut shown = obj.clone();
            if let Some(map) = shown.as_object_mut() {
                map.remove("id");
            }
            doc.insert("object".into(), shown);
        }
        meta.insert(
            "edited".into(),
            json!({"at": at, "versions": edits + 1, "latest": update.get("id")}),
        );
    }
    let replies: i64 = conn
        .prepare_cached(&format!(
            "SELECT COUNT(*) FROM activities a WHERE a.in_reply_to = ?1 AND {LIVE}"
        ))?
        .query_row(
            [activity.get("id").and_then(Value::as_str).unwrap_or("")],
            |r| r.get(0),
        )?;
    meta.insert("replies".into(), json!(replies));
    let (likes, shares): (i64, i64) = conn
        .prepare_cached(
            "SELECT CAST(COALESCE(SUM(CASE WHEN a.type = 'Like' THEN 1 ELSE 0 END), 0) AS BIGINT),
                    CAST(COALESCE(SUM(CASE WHEN a.type = 'Announce' THEN 1 ELSE 0 END), 0) AS BIGINT)
             FROM activities a WHERE a.object_ref = ?1 AND a.type IN ('Like', 'Announce')
             AND NOT EXISTS(SELECT 1 FROM retractions r WHERE r.seq = a.seq)",
        )?
        .query_row(
            [activity.get("id").and_then(Value::as_str).unwrap_or("")],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
    meta.insert("likes".into(), json!(likes));
    meta.insert("shares".into(), json!(shares));
    if let Some(doc) = activity.as_object_mut() {
        doc.insert("tidings".into(), Value::Object(meta));
    }
    Ok(activity)
}

/// The author facts shown with an activity.
pub(crate) fn actor_info(user: &User) -> ActorInfo {
    ActorInfo::new(
        user.username.clone(),
        user.display_name.clone(),
        user.status == UserStatus::Deleted,
    )
}

/// Appends the derived `tidings` key to a stored body without re-parsing it: the same JSON
/// [`render`] builds for an activity that was never edited.
fn compose(body: &str, actor_json: &str, counts: Counts) -> String {
    let trimmed = body.trim_end();
    let open = trimmed.strip_suffix('}').unwrap_or(trimmed);
    let mut out = String::with_capacity(body.len() + actor_json.len() + 48);
    out.push_str(open);
    if !open.trim_end().ends_with('{') {
        out.push(',');
    }
    // Keys in sorted order, as `render` (serde_json's map) writes them.
    out.push_str("\"tidings\":{\"actor\":");
    out.push_str(actor_json);
    out.push_str(&format!(
        ",\"likes\":{},\"replies\":{},\"shares\":{}}}}}",
        counts.likes, counts.replies, counts.shares
    ));
    out
}

/// Derived counts shown under `tidings`.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    likes: u32,
    replies: u32,
    shares: u32,
}

/// The rendered JSON text of one activity for listings: stored bytes from the cache plus
/// derived state from the hot index; edited activities take the full [`render`] path.
pub(crate) fn render_text(conn: &Connection, shared: &Shared, seq: i64) -> StoreResult<String> {
    let Some((actor, counts)) = derived(shared, seq) else {
        return Ok(render(conn, seq)?.to_string());
    };
    let stored = match shared.bodies.get(&seq) {
        Some(stored) => stored,
        None => {
            let (stored, _) = body(conn, seq)?;
            let stored: Arc<str> = Arc::from(stored);
            shared.bodies.insert(seq, stored.clone());
            stored
        }
    };
    Ok(compose(&stored, &actor, counts))
}

/// The derived state the hot index holds for an activity (author JSON, reply count); None
/// when the activity was edited or its author is unknown to the index, which need [`render`].
fn derived(shared: &Shared, seq: i64) -> Option<(Arc<str>, Counts)> {
    let hot = shared.hot.read().ok()?;
    if hot.is_edited(seq) {
        return None;
    }
    let actor = hot.author_of(seq).and_then(|a| hot.actor_json(a))?;
    let (likes, shares) = hot.reactions(seq);
    Some((
        actor,
        Counts {
            likes,
            replies: hot.reply_count(seq),
            shares,
        },
    ))
}

/// Renders from memory alone: None when a body is not cached or [`derived`] has nothing.
fn cached_text(shared: &Shared, seq: i64) -> Option<String> {
    let (actor, counts) = derived(shared, seq)?;
    let stored = shared.bodies.get(&seq)?;
    Some(compose(&stored, &actor, counts))
}

/// Renders a page without touching the database when everything it needs is in memory, so
/// the common inbox read never leaves the async thread.
pub(crate) fn render_page_cached(
    shared: &Shared,
    rows: &[(i64, Option<String>)],
    has_older: bool,
) -> Option<Page> {
    let mut items = Vec::with_capacity(rows.len());
    for (seq, via) in rows {
        items.push(PageItem {
            seq: *seq,
            via: via.clone(),
            activity: cached_text(shared, *seq)?,
        });
    }
    Some(Page { items, has_older })
}

/// Renders a page from seqs (already filtered and ordered newest first).
pub(crate) fn render_page(
    conn: &Connection,
    shared: &Shared,
    rows: Vec<(i64, Option<String>)>,
    has_older: bool,
) -> StoreResult<Page> {
    let mut items = Vec::with_capacity(rows.len());
    for (seq, via) in rows {
        items.push(PageItem {
            seq,
            via,
            activity: render_text(conn, shared, seq)?,
        });
    }
    Ok(Page { items, has_older })
}

/// Runs a seq-ordered listing query. `sql` selects `a.seq` and a `via` column (or NULL) FROM …
/// WHERE …; this function appends the cursor bound, the order and the limit. Rows come back in
/// walk order (newest first, or oldest first when walking forward), up to `limit + 1`.
pub(crate) fn list_rows(
    conn: &Connection,
    sql: &str,
    mut args: Vec<SqlValue>,
    from: PageFrom,
    limit: usize,
) -> StoreResult<Vec<(i64, Option<String>)>> {
    let n = args.len();
    let (bound, order) = match from {
        PageFrom::Newest => (String::new(), "DESC"),
        PageFrom::Before(s) => {
            args.push(SqlValue::Integer(s));
            (format!(" AND a.seq < ?{}", n + 1), "DESC")
        }
        PageFrom::After(s) => {
            args.push(SqlValue::Integer(s));
            (format!(" AND a.seq > ?{}", n + 1), "ASC")
        }
    };
    args.push(SqlValue::Integer(limit as i64 + 1));
    let full = format!("{sql}{bound} ORDER BY a.seq {order} LIMIT ?{}", args.len());
    let mut stmt = conn.prepare_cached(&full)?;
    let rows = stmt
        .query_map(params_from_iter(args), |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, Option<String>>(1)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Cuts walk-ordered rows to a page: newest first, and whether older items exist.
pub(crate) fn finish_page(
    mut rows: Vec<(i64, Option<String>)>,
    from: PageFrom,
    limit: usize,
) -> (Vec<(i64, Option<String>)>, bool) {
    let more = rows.len() > limit;
    rows.truncate(limit);
    match from {
        PageFrom::After(_) => {
            rows.reverse();
            // Walking forward, the cursor itself is older, so older items exist.
            (rows, true)
        }
        _ => (rows, more),
    }
}

/// Lists and renders in one step (for single-source listings).
fn list_page(
    conn: &Connection,
    shared: &Shared,
    sql: &str,
    args: Vec<SqlValue>,
    from: PageFrom,
    limit: usize,
) -> StoreResult<Page> {
    let rows = list_rows(conn, sql, args, from, limit)?;
    let (rows, more) = finish_page(rows, from, limit);
    render_page(conn, shared, rows, more)
}

/// A page of a stream served from the hot index: live seqs in walk order, kept when `keep`
/// says the viewer may see them (checked outside the index lock, in chunks).
fn stream_page(
    conn: &Connection,
    shared: &Shared,
    key: StreamKey,
    from: PageFrom,
    limit: usize,
    keep: impl Fn(&Connection, i64) -> StoreResult<bool>,
) -> StoreResult<Page> {
    let want = limit + 1;
    let chunk = want * 4;
    let mut rows = Vec::with_capacity(want);
    let mut cursor = from;
    loop {
        let candidates = shared
            .hot
            .read()
            .map_err(|_| StoreError::Corrupt("hot index lock".into()))?
            .stream(key, cursor, chunk);
        for &seq in &candidates {
            if rows.len() < want && keep(conn, seq)? {
                rows.push((seq, None));
            }
        }
        match candidates.last() {
            Some(&last) if rows.len() < want && candidates.len() == chunk => {
                cursor = match from {
                    PageFrom::After(_) => PageFrom::After(last),
                    _ => PageFrom::Before(last),
                };
            }
            _ => break,
        }
    }
    let (rows, more) = finish_page(rows, from, limit);
    render_page(conn, shared, rows, more)
}

/// Appends `seq` to a stream's hash chain, after the head the writer holds in memory
/// (`owner`: the user whose outbox it is).
pub(super) fn append_link(
    conn: &Connection,
    shared: &Shared,
    fx: &mut Effects,
    stream: String,
    owner: Option<i64>,
    seq: i64,
    digest: &str,
) -> StoreResult<()> {
    let head = next_head(conn, shared, fx, &stream, owner, digest)?;
    conn.prepare_cached(
        "INSERT INTO stream_links(seq, stream, pos, chain) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![seq, stream, head.pos, head.chain])?;
    fx.advance(stream, owner, head);
    Ok(())
}

/// The head a stream gets when an activity with `digest` is appended to it (`owner`: the
/// user whose outbox it is). The chain does not depend on the activity's seq.
fn next_head(
    conn: &Connection,
    shared: &Shared,
    fx: &Effects,
    stream: &str,
    owner: Option<i64>,
    digest: &str,
) -> StoreResult<StreamHead> {
    let kept = match fx.own_head(stream) {
        Some(head) => Some(head.clone()),
        None => shared
            .heads
            .lock()
            .map_err(|_| StoreError::Corrupt("stream heads lock".into()))?
            .get(stream, owner),
    };
    let prev = match (kept, conn.engine()) {
        (Some(head), _) => Some(head),
        (None, Engine::Sqlite) => None,
        // Not kept by this node's writer (another node appended since, or it never did): read
        // in the log lock (earlier jobs of this transaction are visible to it).
        (None, Engine::Postgres) => conn
            .prepare_cached(
                "SELECT pos, chain FROM stream_links WHERE stream = ?1 ORDER BY pos DESC LIMIT 1",
            )?
            .query_row([stream], |r| {
                Ok(StreamHead {
                    pos: r.get(0)?,
                    chain: r.get(1)?,
                })
            })
            .optional()?,
    };
    Ok(match prev {
        Some(prev) => StreamHead {
            pos: prev.pos + 1,
            chain: chain_hash(Some(&prev.chain), digest),
        },
        None => StreamHead {
            pos: 1,
            chain: chain_hash(None, digest),
        },
    })
}

pub(super) fn publish_in(
    conn: &Connection,
    shared: &Shared,
    fx: &mut Effects,
    input: PublishInput,
) -> StoreResult<Published> {
    let PublishInput {
        actor,
        mut draft,
        idempotency_key,
    } = input;
    if let Some(key) = &idempotency_key {
        let earlier: Option<i64> = conn
            .prepare_cached("SELECT seq FROM idempotency_keys WHERE user_id = ?1 AND key = ?2")?
            .query_row(params![actor.id, key], |r| r.get(0))
            .optional()?;
        if let Some(seq) = earlier {
            let activity = render(conn, seq)?;
            return Ok(Published {
                seq,
                id: activity
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                activity: activity.to_string(),
                replayed: true,
            });
        }
    }

    // The parent of a reply: readable, not retracted; its audience is the default one.
    let mut parent_seq = None;
    // Whose groups a `group:` addressee names: the author's, except in an audience inherited
    // from the parent, where it names the parent author's (a reply reaches the group the
    // parent went to, as it is now, without the replier having to own it).
    let mut group_context: Option<User> = None;
    if let Some(parent_id) = &draft.in_reply_to {
        let parent = readable_seq(conn, parent_id, &actor)?.ok_or_else(|| {
            StoreError::unprocessable(
                "unknown_parent",
                format!("no activity {parent_id:?} to reply to"),
            )
        })?;
        parent_seq = Some(parent);
        let (_, parent_actor) = body(conn, parent)?;
        if super::moderation::blocks(conn, parent_actor, actor.id)? {
            return Err(super::moderation::blocked_error());
        }
        if retraction(conn, parent)?.is_some() {
            return Err(StoreError::unprocessable(
                "parent_retracted",
                "the activity you reply to was retracted",
            ));
        }
        if draft.to.is_empty() {
            let (parent_body, parent_actor) = body(conn, parent)?;
            let parent_doc: Value = serde_json::from_str(&parent_body)?;
            let mut to: Vec<Addressee> = parent_doc
                .get("to")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .filter_map(Addressee::parse)
                        .collect()
                })
                .unwrap_or_default();
            let parent_author = user_by_id(conn, parent_actor)?;
            if parent_author.id != actor.id {
                to.push(Addressee::User(parent_author.username.clone()));
            }
            group_context = Some(parent_author);
            // Inherited people who have since been deleted, or who block the replier, are
            // dropped, not refused: the replier never named them.
            to.retain(|a| match a {
                Addressee::User(name) => user_by_name(conn, name).is_ok_and(|u| {
                    u.status != UserStatus::Deleted
                        && !super::moderation::blocks(conn, u.id, actor.id).unwrap_or(true)
                }),
                _ => true,
            });
            to.sort();
            to.dedup();
            draft.to = to;
        }
    }

    // The activity acted on (Update, Delete, Like, …).
    let mut target_seq = None;
    if let Some(reference) = &draft.object_ref {
        let needs_target = matches!(
            draft.activity_type.as_str(),
            "Update" | "Delete" | "Like" | "Dislike" | "Announce" | "Undo" | "Flag"
        );
        let found = readable_seq(conn, reference, &actor)?;
        match (found, needs_target) {
            (Some(seq), _) => target_seq = Some(seq),
            (None, true) => {
                return Err(StoreError::unprocessable(
                    "unknown_object",
                    format!("no activity {reference:?} to act on"),
                ));
            }
            (None, false) => {}
        }
    }
    if let Some(target) = target_seq {
        let kind = draft.activity_type.as_str();
        if matches!(kind, "Update" | "Delete" | "Undo") {
            let (target_body, target_actor) = body(conn, target)?;
            if target_actor != actor.id {
                return Err(StoreError::forbidden(
                    "not_author",
                    format!("only the author can {} this activity", kind.to_lowercase()),
                ));
            }
            if let Some(t) = retraction(conn, target)? {
                return Err(StoreError::Gone {
                    tombstone: serde_json::to_value(t)?,
                });
            }
            if kind == "Update" {
                let target_doc: Value = serde_json::from_str(&target_body)?;
                if target_doc.get("type").and_then(Value::as_str) != Some("Create") {
                    return Err(StoreError::unprocessable(
                        "not_editable",
                        "only a Create activity's object can be edited",
                    ));
                }
            }
        } else if kind != "Flag"
            && let Some(t) = retraction(conn, target)?
        {
            // Liking or announcing a retracted activity would put it back into inboxes.
            return Err(StoreError::Gone {
                tombstone: serde_json::to_value(t)?,
            });
        }
    }

    // One live like (and one live share) per actor and activity.
    if let (Some(reference), "Like" | "Announce") =
        (&draft.object_ref, draft.activity_type.as_str())
    {
        let again: bool = conn
            .prepare_cached(
                "SELECT EXISTS(SELECT 1 FROM activities a WHERE a.actor_id = ?1 AND a.type = ?2
                 AND a.object_ref = ?3 AND NOT EXISTS(SELECT 1 FROM retractions r WHERE r.seq = a.seq))",
            )?
            .query_row(params![actor.id, draft.activity_type, reference], |r| r.get(0))?;
        if again {
            let (code, what) = if draft.activity_type == "Like" {
                ("already_liked", "liked")
            } else {
                ("already_shared", "shared")
            };
            return Err(StoreError::conflict(
                code,
                format!("you already {what} this activity; undo it first"),
            ));
        }
    }
    // A Follow of `user:NAME` makes a follow edge.
    let mut followee = None;
    if draft.activity_type == "Follow"
        && let Some(name) = draft
            .object_ref
            .as_deref()
            .and_then(|r| r.strip_prefix("user:"))
    {
        let user = user_by_name(conn, name)
            .ok()
            .filter(|u| u.status != UserStatus::Deleted)
            .ok_or_else(|| {
                StoreError::unprocessable("unknown_user", format!("no user {name:?}"))
            })?;
        if user.id == actor.id {
            return Err(StoreError::unprocessable(
                "cannot_follow_self",
                "you cannot follow yourself",
            ));
        }
        if super::moderation::blocks(conn, user.id, actor.id)? {
            return Err(super::moderation::blocked_error());
        }
        if follow_row(conn, actor.id, user.id)?.is_some() {
            return Err(StoreError::conflict(
                "already_following",
                format!("you already follow {name:?}"),
            ));
        }
        followee = Some(user);
    }

    let engine_record = draft.extra.contains_key(MODERATION_KEY);
    // Resolve the audience.
    let mut circle_ids = Vec::new();
    let mut addressed = Vec::new();
    let mut is_public = false;
    let mut to_followers = false;
    for addressee in &draft.to {
        match addressee {
            Addressee::Public => is_public = true,
            Addressee::Followers => to_followers = true,
            Addressee::Circle(name) => {
                let circle = circle_by_name(conn, name).map_err(|_| {
                    StoreError::unprocessable("unknown_circle", format!("no circle {name:?}"))
                })?;
                if let Some(until) = super::moderation::ban(conn, circle.id, actor.id)? {
                    return Err(super::moderation::banned_error(name, until.as_deref()));
                }
                let member = membership(conn, circle.id, actor.id)?
                    .is_some_and(|m| m.state == MembershipState::Active);
                if !member {
                    if !can_read_circle(conn, &circle, Some(&actor))? {
                        return Err(StoreError::unprocessable(
                            "unknown_circle",
                            format!("no circle {name:?}"),
                        ));
                    }
                    return Err(StoreError::forbidden(
                        "not_circle_member",
                        format!("only members publish to circle {name:?}"),
                    ));
                }
                if circle.archived_at.is_some() {
                    return Err(StoreError::unprocessable(
                        "circle_archived",
                        format!("circle {name:?} is archived and read-only"),
                    ));
                }
                circle_ids.push(circle.id);
            }
            Addressee::User(name) => {
                let user = user_by_name(conn, name)
                    .ok()
                    .filter(|u| u.status != UserStatus::Deleted)
                    .ok_or_else(|| {
                        StoreError::unprocessable("unknown_user", format!("no user {name:?}"))
                    })?;
                // Engine-written moderation records reach their keepers and authors whatever
                // those blocked: a report or a decision is not the actor reaching out.
                if !engine_record && super::moderation::blocks(conn, user.id, actor.id)? {
                    return Err(super::moderation::blocked_error());
                }
                addressed.push(user.id);
            }
            // A group reaches its members as they are now (decision 0027).
            Addressee::Group(reference) => {
                let context = group_context.as_ref().unwrap_or(&actor);
                // A member who blocks the author is left out, silently: the author named
                // the group, not them, and learns nothing of the block.
                for member in super::groups::audience(conn, reference, context)? {
                    if engine_record || !super::moderation::blocks(conn, member, actor.id)? {
                        addressed.push(member);
                    }
                }
            }
            // Topics reach no inbox: the integration bus routes them from the log.
            Addressee::Topic(name) => {
                if super::integration::topic_by_name(conn, name).is_err() {
                    return Err(StoreError::unprocessable(
                        "unknown_topic",
                        format!("no topic {name:?}"),
                    ));
                }
            }
        }
    }

    addressed.sort_unstable();
    addressed.dedup();
    let group_change = super::groups::is_membership_change(&draft);

    let id = uuid::Uuid::now_v7().to_string();
    let (published, at) = now_with_unix();
    let activity_type = draft.activity_type.clone();
    let kind = draft.kind;
    let object_ref = draft.object_ref.clone();
    let in_reply_to = draft.in_reply_to.clone();
    let mut record = draft.into_record(&id, &format!("user:{}", actor.username), &published);
    let digest = activity_digest(&record);
    if let Some(doc) = record.as_object_mut() {
        doc.insert("digest".into(), Value::String(digest.clone()));
    }
    let stored = canonical_json(&record);
    // Updates, retractions and undos act on other activities; a Join is news for the circle's
    // keepers (a notification), not an item for anyone's inbox or outbox. So are moderation
    // records (reports and decisions): they live in the circle's moderation stream.
    let listed = !group_change
        && !matches!(
            activity_type.as_str(),
            "Update" | "Delete" | "Undo" | "Join"
        )
        && record.get(MODERATION_KEY).is_none();

    // Attachments must be the actor's own uploads: attaching widens who may read them.
    let media_refs = tidings_core::media::media_refs(&record);
    super::media::check_refs(conn, actor.id, &media_refs)?;

    // The next seq is explicit rather than a sequence's: writers are serialised (one writer
    // thread in SQLite, the log lock in PostgreSQL), so the log has no gaps in either store.
    let outbox = format!("outbox:{}", actor.username);
    let seq: i64 = match conn.engine() {
        Engine::Sqlite => {
            let seq = conn.prepare_cached(
                "INSERT INTO activities(seq, id, actor_id, type, kind, listed, object_ref, in_reply_to, is_public, published, digest, body)
                 VALUES ((SELECT COALESCE(MAX(seq), 0) + 1 FROM activities), ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                 RETURNING seq",
            )?
            .query_row(params![
                id,
                actor.id,
                activity_type,
                kind.as_str(),
                listed,
                object_ref,
                in_reply_to,
                is_public,
                published,
                digest,
                stored
            ], |r| r.get(0))?;
            append_link(conn, shared, fx, outbox, Some(actor.id), seq, &digest)?;
            if to_followers {
                conn.prepare_cached("INSERT INTO activity_followers(seq) VALUES (?1)")?
                    .execute([seq])?;
            }
            seq
        }
        // Each statement is a round trip here: the activity, its outbox link (whose chain does
        // not depend on the seq) and its followers mark go in one.
        Engine::Postgres => {
            let head = next_head(conn, shared, fx, &outbox, Some(actor.id), &digest)?;
            let seq = conn.prepare_cached(
                "WITH a AS (
                     INSERT INTO activities(seq, id, actor_id, type, kind, listed, object_ref, in_reply_to, is_public, published, digest, body)
                     VALUES ((SELECT COALESCE(MAX(seq), 0) + 1 FROM activities), ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                     RETURNING seq),
                 link AS (INSERT INTO stream_links(seq, stream, pos, chain)
                          SELECT seq, ?12, ?13, ?14 FROM a),
                 followers AS (INSERT INTO activity_followers(seq) SELECT seq FROM a WHERE ?15)
                 SELECT seq FROM a",
            )?
            .query_row(params![
                id,
                actor.id,
                activity_type,
                kind.as_str(),
                listed,
                object_ref,
                in_reply_to,
                is_public,
                published,
                digest,
                stored,
                outbox,
                head.pos,
                head.chain,
                to_followers
            ], |r| r.get(0))?;
            fx.advance(outbox, Some(actor.id), head);
            seq
        }
    };

    for addressee in &draft_circles(&record) {
        append_link(
            conn,
            shared,
            fx,
            format!("circle:{addressee}"),
            None,
            seq,
            &digest,
        )?;
    }
    for circle_id in &circle_ids {
        conn.prepare_cached("INSERT INTO activity_circles(seq, circle_id) VALUES (?1, ?2)")?
            .execute(params![seq, circle_id])?;
    }
    for user_id in &addressed {
        conn.prepare_cached(
            "INSERT INTO activity_addressees(seq, user_id) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
        )?
        .execute(params![seq, user_id])?;
    }
    super::media::record_uses(conn, seq, &media_refs)?;
    let tags = record_tags(&record);
    if listed {
        let _indexed = super::search::index_published(conn, seq, &record)?;
        let mut people = addressed.clone();
        people.push(actor.id);
        super::conversations::index_message(conn, seq, &record, &people)?;
    }
    for tag in &tags {
        conn.prepare_cached(
            "INSERT INTO activity_tags(tag, seq) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
        )?
        .execute(params![tag, seq])?;
    }
    fx.push(Effect::Activity {
        seq,
        meta: Meta {
            actor: actor.id,
            major: kind == Kind::Major,
            listed,
            retracted: false,
            tags: Box::new([]),
            circles: circle_ids.clone().into(),
            parent: parent_seq,
            to_followers: to_followers || is_public,
            public: is_public,
            verb: 0,
            object: match (&followee, target_seq) {
                (Some(user), _) => FOLLOWED_USER | user.id as u64,
                (None, Some(target)) => target as u64,
                (None, None) => seq as u64,
            },
            target: target_seq.filter(|_| matches!(activity_type.as_str(), "Like" | "Announce")),
            at,
        },
        tags,
        verb: activity_type.clone(),
        body: Some(Arc::from(stored.as_str())),
    });
    if let Some(user) = followee {
        follow_in(conn, shared, fx, &actor, &user, seq)?;
    }
    if let Some(target) = target_seq {
        match activity_type.as_str() {
            "Delete" => {
                conn.prepare_cached(
                    "INSERT INTO retractions(seq, by_seq) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                )?
                .execute(params![target, seq])?;
                // A retraction leaves the search index at once.
                super::search::index_retraction(conn, target)?;
                // So does its author's notice of each like and share of it.
                let mut notified = notified_of(conn, target)?;
                notified.extend(
                    conn.prepare_cached("SELECT actor_id FROM activities WHERE seq = ?1")?
                        .query_row([target], |r| r.get::<_, i64>(0))
                        .optional()?,
                );
                fx.push(Effect::Retract {
                    seq: target,
                    notified,
                });
            }
            "Update" => {
                conn.prepare_cached("INSERT INTO edits(target_seq, update_seq) VALUES (?1, ?2)")?
                    .execute(params![target, seq])?;
                super::search::index_edit(conn, target, &record)?;
                fx.push(Effect::Edit { target });
            }
            "Undo" => undo_in(conn, fx, &actor, target, seq)?,
            _ => {}
        }
    }
    if let Some(key) = idempotency_key {
        conn.prepare_cached("INSERT INTO idempotency_keys(user_id, key, seq) VALUES (?1, ?2, ?3)")?
            .execute(params![actor.id, key, seq])?;
    }
    Ok(Published {
        seq,
        activity: compose(&stored, &actor_info(&actor).json, Counts::default()),
        id,
        replayed: false,
    })
}

/// The follow edge between two users: (floor_seq, follow_seq).
pub(crate) fn follow_row(
    conn: &Connection,
    follower: i64,
    followee: i64,
) -> StoreResult<Option<(i64, i64)>> {
    Ok(conn
        .prepare_cached(
            "SELECT floor_seq, follow_seq FROM follows WHERE follower_id = ?1 AND followee_id = ?2",
        )?
        .query_row(params![follower, followee], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

/// Makes the follow edge of a Follow activity at `follow_seq`, and copies the producer's recent
/// activities into the follower's feed: those already routed and fanned out on write (later
/// ones are routed with the edge in place; merged ones are read from the outbox).
fn follow_in(
    conn: &Connection,
    shared: &Shared,
    fx: &mut Effects,
    follower: &User,
    followee: &User,
    follow_seq: i64,
) -> StoreResult<()> {
    let routed: i64 = conn
        .prepare_cached("SELECT CAST(value AS BIGINT) FROM meta WHERE key = 'routed_seq'")?
        .query_row([], |r| r.get(0))?;
    let via = format!("follow:{}", followee.username);
    let (floor, backfill) = {
        let hot = shared
            .hot
            .read()
            .map_err(|_| StoreError::Corrupt("hot index lock".into()))?;
        let floor = hot.follow_floor(followee.id, shared.config.follow_copy_limit);
        let upto = match hot.producer_merged_from(followee.id) {
            Some(from) => routed.min(from - 1),
            None => routed,
        };
        (floor, hot.follower_visible(followee.id, floor, upto))
    };
    conn.prepare_cached(
        "INSERT INTO follows(follower_id, followee_id, floor_seq, follow_seq, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        follower.id,
        followee.id,
        floor,
        follow_seq,
        now_rfc3339()
    ])?;
    let shared_via: Arc<str> = Arc::from(via.as_str());
    let code = super::follow_via_code(followee.id);
    let rows: Vec<(i64, i64, i64)> = backfill
        .iter()
        .map(|&seq| (follower.id, seq, code))
        .collect();
    // Only the entries this follow wrote: an item already in the inbox keeps its reason.
    let entries: Vec<_> = super::write_entries(conn, &rows)?
        .into_iter()
        .map(|(user, seq)| (user, seq, shared_via.clone()))
        .collect();
    fx.push(Effect::Follow {
        follower: follower.id,
        edge: FollowEdge {
            producer: followee.id,
            floor,
            via: shared_via,
        },
    });
    fx.push(Effect::Entries(entries));
    Ok(())
}

/// Who holds a notification raised by `seq`.
pub(super) fn notified_of(conn: &Connection, seq: i64) -> StoreResult<Vec<i64>> {
    let mut stmt = conn.prepare_cached("SELECT user_id FROM notifications WHERE seq = ?1")?;
    let users = stmt
        .query_map([seq], |r| r.get(0))?
        .collect::<Result<Vec<i64>, _>>()?;
    Ok(users)
}

/// The side effects of an Undo: a like, share or follow stops counting (it is retracted), and
/// an undone follow takes its edge and the entries it wrote with it.
fn undo_in(
    conn: &Connection,
    fx: &mut Effects,
    actor: &User,
    target: i64,
    undo_seq: i64,
) -> StoreResult<()> {
    let (target_type, object_ref): (String, Option<String>) = conn
        .prepare_cached("SELECT type, object_ref FROM activities WHERE seq = ?1")?
        .query_row([target], |r| Ok((r.get(0)?, r.get(1)?)))?;
    if !matches!(target_type.as_str(), "Like" | "Announce" | "Follow") {
        return Ok(());
    }
    conn.prepare_cached(
        "INSERT INTO retractions(seq, by_seq) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
    )?
    .execute(params![target, undo_seq])?;
    fx.push(Effect::Retract {
        seq: target,
        notified: notified_of(conn, target)?,
    });
    if target_type == "Follow"
        && let Some(name) = object_ref.as_deref().and_then(|r| r.strip_prefix("user:"))
        && let Ok(followee) = user_by_name(conn, name)
        && let Some((_, follow_seq)) = follow_row(conn, actor.id, followee.id)?
        && follow_seq == target
    {
        unfollow_in(conn, fx, actor.id, &followee)?;
    }
    Ok(())
}

/// Removes a follow edge and every entry only it put in the follower's feed.
pub(super) fn unfollow_in(
    conn: &Connection,
    fx: &mut Effects,
    follower: i64,
    followee: &User,
) -> StoreResult<()> {
    conn.prepare_cached("DELETE FROM follows WHERE follower_id = ?1 AND followee_id = ?2")?
        .execute(params![follower, followee.id])?;
    conn.prepare_cached("DELETE FROM inbox_entries WHERE user_id = ?1 AND via = ?2")?
        .execute(params![follower, super::follow_via_code(followee.id)])?;
    fx.push(Effect::Unfollow {
        follower,
        producer: followee.id,
    });
    Ok(())
}

fn draft_circles(record: &Value) -> Vec<String> {
    record
        .get("to")
        .and_then(Value::as_array)
        .map(|to| {
            to.iter()
                .filter_map(Value::as_str)
                .filter_map(|t| t.strip_prefix("circle:"))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

impl Store {
    /// Appends an activity to the log (one transaction with its stream links and indexes).
    pub async fn publish(&self, input: PublishInput) -> StoreResult<Published> {
        let shared = self.shared.clone();
        self.write(move |conn, fx| publish_in(conn, &shared, fx, input))
            .await
    }

    /// One activity as `viewer` sees it; `Gone` with a tombstone once retracted.
    pub async fn activity(&self, id: &str, viewer: User) -> StoreResult<(i64, Value)> {
        let id = id.to_owned();
        self.read(move |conn| {
            let seq = readable_seq(conn, &id, &viewer)?.ok_or(StoreError::not_found("activity"))?;
            if let Some(t) = retraction(conn, seq)? {
                return Err(StoreError::Gone {
                    tombstone: serde_json::to_value(t)?,
                });
            }
            Ok((seq, render(conn, seq)?))
        })
        .await
    }

    /// Every version of an activity's object: the original record, then each Update record.
    pub async fn versions(&self, id: &str, viewer: User) -> StoreResult<Vec<Value>> {
        let id = id.to_owned();
        self.read(move |conn| {
            let seq = readable_seq(conn, &id, &viewer)?.ok_or(StoreError::not_found("activity"))?;
            if let Some(t) = retraction(conn, seq)? {
                return Err(StoreError::Gone {
                    tombstone: serde_json::to_value(t)?,
                });
            }
            let mut stmt = conn.prepare_cached(
                "SELECT body FROM activities WHERE seq = ?1
                 UNION ALL
                 SELECT u.body FROM edits e JOIN activities u ON u.seq = e.update_seq
                 WHERE e.target_seq = ?1",
            )?;
            let bodies = stmt
                .query_map([seq], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            bodies
                .iter()
                .map(|b| serde_json::from_str(b).map_err(StoreError::from))
                .collect()
        })
        .await
    }

    /// Replies to an activity that the viewer may read, newest first.
    pub async fn replies(
        &self,
        id: &str,
        viewer: User,
        from: PageFrom,
        limit: usize,
    ) -> StoreResult<Page> {
        let id = id.to_owned();
        let shared = self.shared.clone();
        self.read(move |conn| {
            let seq = readable_seq(conn, &id, &viewer)?.ok_or(StoreError::not_found("activity"))?;
            if let Some(t) = retraction(conn, seq)? {
                return Err(StoreError::Gone {
                    tombstone: serde_json::to_value(t)?,
                });
            }
            let sql = format!(
                "SELECT a.seq, NULL FROM activities a WHERE a.in_reply_to = ?1 AND {LIVE} AND {}",
                readable_sql(2, 3)
            );
            let args = vec![
                SqlValue::Text(id.clone()),
                SqlValue::Integer(viewer.id),
                SqlValue::Integer(viewer.is_admin as i64),
            ];
            list_page(conn, &shared, &sql, args, from, limit)
        })
        .await
    }

    /// A user's outbox as the viewer may see it, newest first.
    pub async fn outbox(
        &self,
        username: &str,
        viewer: User,
        from: PageFrom,
        limit: usize,
    ) -> StoreResult<Page> {
        let username = username.to_owned();
        let shared = self.shared.clone();
        self.read(move |conn| {
            let author = user_by_name(conn, &username)?;
            let everything = viewer.id == author.id || viewer.is_admin;
            stream_page(
                conn,
                &shared,
                StreamKey::Outbox(author.id),
                from,
                limit,
                |conn, seq| Ok(everything || can_read(conn, seq, &viewer)?),
            )
        })
        .await
    }

    /// A circle's stream, newest first (members only for private circles).
    pub async fn circle_stream(
        &self,
        name: &str,
        viewer: User,
        from: PageFrom,
        limit: usize,
    ) -> StoreResult<Page> {
        let name = name.to_owned();
        let shared = self.shared.clone();
        self.read(move |conn| {
            let circle = visible_circle(conn, &name, Some(&viewer))?;
            stream_page(
                conn,
                &shared,
                StreamKey::Circle(circle.id),
                from,
                limit,
                |_, _| Ok(true),
            )
        })
        .await
    }

    /// Records that `viewer` took a named action of an activity; returns the action.
    pub async fn take_action(&self, id: &str, action: &str, viewer: User) -> StoreResult<Value> {
        let id = id.to_owned();
        let action = action.to_owned();
        self.write(move |conn, _fx| {
            let seq = readable_seq(conn, &id, &viewer)?.ok_or(StoreError::not_found("activity"))?;
            if let Some(t) = retraction(conn, seq)? {
                return Err(StoreError::Gone {
                    tombstone: serde_json::to_value(t)?,
                });
            }
            let shown = render(conn, seq)?;
            let found = shown
                .get("actions")
                .and_then(Value::as_array)
                .and_then(|actions| {
                    actions
                        .iter()
                        .find(|a| a.get("name").and_then(Value::as_str) == Some(action.as_str()))
                        .cloned()
                })
                .ok_or(StoreError::not_found("action"))?;
            conn.prepare_cached(
                "INSERT INTO action_log(seq, user_id, action, at) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![seq, viewer.id, action, now_rfc3339()])?;
            let taken: i64 = conn
                .prepare_cached("SELECT COUNT(*) FROM action_log WHERE seq = ?1 AND action = ?2")?
                .query_row(params![seq, action], |r| r.get(0))?;
            Ok(json!({
                "activity": id,
                "action": action,
                "url": found.get("url"),
                "method": found.get("method"),
                "taken": taken,
            }))
        })
        .await
    }

    /// Registers (or replaces) a custom type.
    pub async fn register_type(&self, custom: CustomType) -> StoreResult<CustomType> {
        self.write(move |conn, _fx| {
            conn.prepare_cached(
                "INSERT INTO custom_types(name, kind, schema, actions, created_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(name) DO UPDATE SET kind = excluded.kind, schema = excluded.schema, actions = excluded.actions",
            )?
            .execute(params![
                custom.name,
                custom.kind,
                custom.schema.to_string(),
                custom.actions.to_string(),
                now_rfc3339()
            ])?;
            Ok(custom)
        })
        .await
    }

    /// Every registered custom type.
    pub async fn custom_types(&self) -> StoreResult<Vec<CustomType>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT name, kind, schema, actions FROM custom_types ORDER BY name",
            )?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter()
                .map(|(name, kind, schema, actions)| {
                    Ok(CustomType {
                        name,
                        kind,
                        schema: serde_json::from_str(&schema)?,
                        actions: serde_json::from_str(&actions)?,
                    })
                })
                .collect()
        })
        .await
    }
}
