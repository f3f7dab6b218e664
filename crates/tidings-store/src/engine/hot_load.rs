//! Builds the hot index from the database at start-up.

use crate::StoreResult;
use crate::hot::{Effect, FOLLOWED_USER, FollowEdge, HotIndex, Meta};
use crate::sql::{Connection, Engine, OptionalExtension};
use std::collections::HashMap;
use std::sync::Arc;

/// Reads every projection the index mirrors.
pub(crate) fn load(conn: &Connection) -> StoreResult<HotIndex> {
    let started = std::time::Instant::now();
    let mut index = HotIndex::default();

    let mut stmt =
        conn.prepare("SELECT id, username, display_name, status, is_admin FROM users")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let username: String = r.get(1)?;
        let display_name: String = r.get(2)?;
        index.load_user(
            r.get(0)?,
            &username,
            &display_name,
            r.get::<_, String>(3)? == "deleted",
            r.get(4)?,
        );
    }

    let mut stmt =
        conn.prepare("SELECT id, name, merged_from_seq, visibility = 'public' FROM circles")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let id: i64 = r.get(0)?;
        index.apply(Effect::Circle {
            id,
            name: r.get(1)?,
            public: r.get(3)?,
        });
        if let Some(from_seq) = r.get::<_, Option<i64>>(2)? {
            index.apply(Effect::Merged {
                circle: id,
                from_seq,
            });
        }
    }

    let mut stmt =
        conn.prepare("SELECT user_id, circle_id FROM memberships WHERE state = 'active'")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        index.apply(Effect::Member {
            user: r.get(0)?,
            circle: r.get(1)?,
            active: true,
        });
    }

    // Tags and circles per activity, gathered before the activities themselves.
    let mut tags: HashMap<i64, Vec<String>> = HashMap::new();
    let mut stmt = conn.prepare("SELECT seq, tag FROM activity_tags")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        tags.entry(r.get(0)?).or_default().push(r.get(1)?);
    }
    let mut circles: HashMap<i64, Vec<i64>> = HashMap::new();
    let mut stmt = conn.prepare("SELECT seq, circle_id FROM activity_circles")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        circles.entry(r.get(0)?).or_default().push(r.get(1)?);
    }
    // `published` is RFC 3339 text in both stores; each engine has its own date functions.
    let published_unix = match conn.engine() {
        Engine::Sqlite => "CAST(strftime('%s', a.published) AS INTEGER)",
        Engine::Postgres => "CAST(EXTRACT(EPOCH FROM CAST(a.published AS timestamptz)) AS BIGINT)",
    };
    let mut stmt = conn.prepare(&format!(
        "SELECT a.seq, a.actor_id, a.kind = 'major', a.listed, p.seq, a.type,
                a.is_public OR EXISTS(SELECT 1 FROM activity_followers af WHERE af.seq = a.seq),
                t.seq, fu.id, {published_unix}, a.is_public
         FROM activities a
         LEFT JOIN activities p ON p.id = a.in_reply_to
         LEFT JOIN activities t ON t.id = a.object_ref
         LEFT JOIN users fu ON a.type = 'Follow' AND a.object_ref LIKE 'user:%'
                           AND fu.username = substr(a.object_ref, 6)
         ORDER BY a.seq"
    ))?;
    let mut rows = stmt.query([])?;
    let mut count = 0u64;
    while let Some(r) = rows.next()? {
        let seq: i64 = r.get(0)?;
        let verb: String = r.get(5)?;
        let target: Option<i64> = r.get(7)?;
        let followed: Option<i64> = r.get(8)?;
        index.apply(Effect::Activity {
            seq,
            meta: Meta {
                actor: r.get(1)?,
                major: r.get(2)?,
                listed: r.get(3)?,
                retracted: false,
                tags: Box::new([]),
                circles: circles.remove(&seq).unwrap_or_default().into(),
                parent: r.get(4)?,
                to_followers: r.get(6)?,
                public: r.get(10)?,
                verb: 0,
                object: match (followed, target) {
                    (Some(user), _) => FOLLOWED_USER | user as u64,
                    (None, Some(target)) => target as u64,
                    (None, None) => seq as u64,
                },
                target: target.filter(|_| matches!(verb.as_str(), "Like" | "Announce")),
                at: r.get::<_, Option<i64>>(9)?.unwrap_or(0),
            },
            tags: tags.remove(&seq).unwrap_or_default(),
            verb,
            body: None,
        });
        count += 1;
    }

    let mut stmt = conn.prepare("SELECT seq FROM retractions")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        index.apply(Effect::Retract {
            seq: r.get(0)?,
            notified: Vec::new(),
        });
    }
    let mut stmt = conn.prepare("SELECT target_seq FROM edits")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        index.apply(Effect::Edit { target: r.get(0)? });
    }

    // Subscriptions first: their `via` text is shared with the entries they wrote.
    let mut subscription_vias: HashMap<i64, Arc<str>> = HashMap::new();
    let mut stmt = conn.prepare(
        "SELECT id, user_id, circle_id, tag, since_seq, until_seq, expr, search_word
         FROM subscriptions ORDER BY id",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let id: i64 = r.get(0)?;
        let user: i64 = r.get(1)?;
        let expr: String = r.get(6)?;
        let via: Arc<str> = Arc::from(format!("subscription:{id}:{expr}"));
        subscription_vias.insert(id, via.clone());
        // A saved search is always fanned out on write: it has entries, never a window.
        if r.get::<_, Option<String>>(7)?.is_some() {
            continue;
        }
        index.apply(Effect::Subscribe {
            user,
            id,
            circle: r.get(2)?,
            tag: r.get(3)?,
            since: r.get(4)?,
            via,
        });
        if let Some(until) = r.get::<_, Option<i64>>(5)? {
            index.apply(Effect::Close {
                user,
                id: Some(id),
                circle: None,
                until,
            });
        }
    }

    // Written entries, in (user, seq) order. Each stored `via` code (see `via_code`) is turned
    // back into the text the router first gave it once, and its entries share that allocation.
    let addressed: Arc<str> = Arc::from("addressed");
    let mut follow_vias: HashMap<i64, Arc<str>> = HashMap::new();
    let mut name_of = conn.prepare("SELECT username FROM users WHERE id = ?1")?;
    let mut batch = Vec::new();
    let mut stmt =
        conn.prepare("SELECT user_id, seq, via FROM inbox_entries ORDER BY user_id, seq")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let code: i64 = r.get(2)?;
        let known = match code {
            0 => Some(addressed.clone()),
            id if id > 0 => subscription_vias.get(&id).cloned(),
            id => match follow_vias.get(&-id) {
                Some(via) => Some(via.clone()),
                None => {
                    let name = name_of
                        .query_row([-id], |r| r.get::<_, String>(0))
                        .optional()?;
                    name.map(|name| {
                        let via: Arc<str> = Arc::from(format!("follow:{name}"));
                        follow_vias.insert(-id, via.clone());
                        via
                    })
                }
            },
        };
        let via = known.unwrap_or_else(|| {
            // Subscriptions and users are never deleted, so this is a damaged store.
            tracing::warn!(code, "inbox entry names a missing subscription or user");
            addressed.clone()
        });
        batch.push((r.get(0)?, r.get(1)?, via));
        if batch.len() >= 100_000 {
            index.apply(Effect::Entries(std::mem::take(&mut batch)));
        }
    }
    index.apply(Effect::Entries(batch));
    // One entry per subscription: not needed once the entries hold their texts.
    drop(subscription_vias);

    let mut stmt = conn.prepare("SELECT user_id, actor_id FROM silences")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        index.apply(Effect::Silence {
            user: r.get(0)?,
            actor: r.get(1)?,
            on: true,
        });
    }

    let mut stmt = conn.prepare("SELECT user_id, seq FROM inbox_hidden")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        index.apply(Effect::Hide {
            user: r.get(0)?,
            seq: r.get(1)?,
        });
    }

    let mut stmt = conn.prepare(
        "SELECT f.follower_id, f.followee_id, f.floor_seq, u.username
         FROM follows f JOIN users u ON u.id = f.followee_id",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let producer: i64 = r.get(1)?;
        // The index keeps one text per producer: only its first follow's is built.
        let via = match follow_vias.get(&producer) {
            Some(via) => via.clone(),
            None => {
                let via: Arc<str> = Arc::from(format!("follow:{}", r.get::<_, String>(3)?));
                follow_vias.insert(producer, via.clone());
                via
            }
        };
        index.apply(Effect::Follow {
            follower: r.get(0)?,
            edge: FollowEdge {
                producer,
                floor: r.get(2)?,
                via,
            },
        });
    }
    drop(follow_vias);
    let mut stmt = conn.prepare("SELECT user_id, from_seq FROM producers_merged")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        index.apply(Effect::ProducerMerged {
            producer: r.get(0)?,
            from_seq: r.get(1)?,
        });
    }
    let mut batch = Vec::new();
    let mut stmt =
        conn.prepare("SELECT user_id, seq, reason FROM notifications ORDER BY user_id, seq")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        batch.push((r.get(0)?, r.get(1)?, r.get(2)?));
    }
    index.apply(Effect::Notify(batch));
    let mut stmt = conn.prepare("SELECT user_id, feed, seen_seq, read_seq FROM feed_markers")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        index.apply(Effect::Marker {
            user: r.get(0)?,
            feed: r.get(1)?,
            seen: r.get(2)?,
            read: r.get(3)?,
        });
    }
    index.shrink_to_fit();
    tracing::info!(
        activities = count,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "hot index loaded"
    );
    Ok(index)
}
