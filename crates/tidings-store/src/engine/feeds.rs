//! Feeds and follows: flat feeds (the inbox narrowed by verbs), notification feeds with
//! seen/read markers, aggregated feeds, and follower/following lists.
//!
//! Every feed is read from the hot index up to the routed watermark, like the inbox, so its
//! cursors walk exactly once while new items arrive.

use super::Store;
use super::activities::{follow_row, render_page, render_page_cached};
use super::users::user_by_name;
use crate::hot::{Effect, FeedFilter, HotIndex};
use crate::model::FollowEntry;
use crate::model::{FeedCounts, FeedGroup, GroupPage, InboxFilter, Page, PageFrom, User};
use crate::sql::{OptionalExtension, params};
use crate::{StoreError, StoreResult};
use std::sync::RwLockReadGuard;
use tidings_core::feeds::{FeedKind, FeedSpec, GroupFacts, Reason, aggregate};

/// Members of a group rendered with it.
const GROUP_SAMPLE: usize = 3;
/// Actors named in a group.
const GROUP_ACTORS: usize = 5;

impl Store {
    fn hot(&self) -> StoreResult<RwLockReadGuard<'_, HotIndex>> {
        self.shared
            .hot
            .read()
            .map_err(|_| StoreError::Corrupt("hot index lock".into()))
    }

    /// Reads a flat feed as declared.
    pub async fn feed_page(
        &self,
        user: User,
        spec: &FeedSpec,
        filter: InboxFilter,
        from: PageFrom,
        limit: usize,
    ) -> StoreResult<Page> {
        self.flat_feed(user, filter, flat_filter(spec), from, limit)
            .await
    }

    /// Reads a flat feed as declared, narrowed to activities by `actors` (a compat profile's
    /// relations: whom the reader follows now).
    pub async fn feed_page_by_actors(
        &self,
        user: User,
        spec: &FeedSpec,
        mut actors: Vec<i64>,
        from: PageFrom,
        limit: usize,
    ) -> StoreResult<Page> {
        actors.sort_unstable();
        let feed = FeedFilter {
            actors: Some(actors),
            ..flat_filter(spec)
        };
        self.flat_feed(user, InboxFilter::default(), feed, from, limit)
            .await
    }

    /// Reads a notification feed: items aimed at the user, newest `max_cache`, with their
    /// reason as `via`.
    pub async fn notification_page(
        &self,
        user: User,
        spec: &FeedSpec,
        from: PageFrom,
        limit: usize,
    ) -> StoreResult<Page> {
        self.notifications_by(user, spec, None, from, limit).await
    }

    /// Reads a notification feed narrowed to items by `actors` (a compat profile's relations).
    pub async fn notification_page_by_actors(
        &self,
        user: User,
        spec: &FeedSpec,
        mut actors: Vec<i64>,
        from: PageFrom,
        limit: usize,
    ) -> StoreResult<Page> {
        actors.sort_unstable();
        self.notifications_by(user, spec, Some(actors), from, limit)
            .await
    }

    async fn notifications_by(
        &self,
        user: User,
        spec: &FeedSpec,
        actors: Option<Vec<i64>>,
        from: PageFrom,
        limit: usize,
    ) -> StoreResult<Page> {
        let watermark = self.routed_seq();
        let rows: Vec<(i64, Option<String>)> = {
            let hot = self.hot()?;
            let kept = hot.notifications(
                user.id,
                watermark,
                &reason_codes(spec),
                actors.as_deref(),
                spec.max_cache,
            );
            let reason = |code: u8| Reason::from_code(code).map(|r| r.as_str().to_owned());
            match from {
                PageFrom::Newest => kept
                    .iter()
                    .take(limit + 1)
                    .map(|&(s, r)| (s, reason(r)))
                    .collect(),
                PageFrom::Before(c) => kept
                    .iter()
                    .filter(|n| n.0 < c)
                    .take(limit + 1)
                    .map(|&(s, r)| (s, reason(r)))
                    .collect(),
                PageFrom::After(c) => kept
                    .iter()
                    .rev()
                    .filter(|n| n.0 > c)
                    .take(limit + 1)
                    .map(|&(s, r)| (s, reason(r)))
                    .collect(),
            }
        };
        self.hydrate(rows, from, limit).await
    }

    /// Reads an aggregated feed: the newest `max_cache` items of its source folded into groups,
    /// paged by each group's newest member.
    pub async fn aggregated_page(
        &self,
        user: User,
        spec: &FeedSpec,
        from: PageFrom,
        limit: usize,
    ) -> StoreResult<GroupPage> {
        let (groups, has_older) = {
            let hot = self.hot()?;
            let groups = self.groups(&hot, user.id, spec);
            let mut page: Vec<_> = match from {
                PageFrom::Newest => groups.into_iter().take(limit + 1).collect(),
                PageFrom::Before(c) => groups
                    .into_iter()
                    .filter(|g| g.newest() < c)
                    .take(limit + 1)
                    .collect(),
                PageFrom::After(c) => {
                    let mut newer: Vec<_> = groups.into_iter().filter(|g| g.newest() > c).collect();
                    // The oldest `limit` of the newer groups, shown newest first.
                    let skip = newer.len().saturating_sub(limit);
                    newer.drain(..skip);
                    newer
                }
            };
            let has_older = match from {
                PageFrom::After(_) => true,
                _ => page.len() > limit,
            };
            page.truncate(limit);
            let shown = page
                .into_iter()
                .map(|g| {
                    let verb = g
                        .seqs
                        .first()
                        .and_then(|&s| hot.meta(s))
                        .map(|m| hot.verb_name(m.verb).to_owned())
                        .unwrap_or_default();
                    let actors = g
                        .actors
                        .iter()
                        .take(GROUP_ACTORS)
                        .filter_map(|&a| hot.actor_json(a))
                        .collect();
                    (g, verb, actors)
                })
                .collect::<Vec<_>>();
            (shown, has_older)
        };
        let mut out = Vec::with_capacity(groups.len());
        for (group, verb, actors) in groups {
            let sample: Vec<(i64, Option<String>)> = group
                .seqs
                .iter()
                .take(GROUP_SAMPLE)
                .map(|&s| (s, None))
                .collect();
            let members = match render_page_cached(&self.shared, &sample, false) {
                Some(page) => page,
                None => {
                    let shared = self.shared.clone();
                    self.read(move |conn| render_page(conn, &shared, sample, false))
                        .await?
                }
            };
            out.push(FeedGroup {
                id: group.key.label(),
                newest_seq: group.newest(),
                verb,
                activity_count: group.seqs.len(),
                actor_count: group.actors.len(),
                actors,
                activities: members.items,
            });
        }
        Ok(GroupPage {
            groups: out,
            has_older,
        })
    }

    /// The groups of an aggregated feed, newest first.
    fn groups(
        &self,
        hot: &HotIndex,
        user: i64,
        spec: &FeedSpec,
    ) -> Vec<tidings_core::feeds::Group> {
        let watermark = self.routed_seq();
        let seqs: Vec<i64> = match spec.source {
            Some(FeedKind::Notification) => hot
                .notifications(user, watermark, &reason_codes(spec), None, spec.max_cache)
                .into_iter()
                .map(|n| n.0)
                .collect(),
            _ => hot
                .inbox(
                    user,
                    watermark,
                    &InboxFilter::default(),
                    &[],
                    &flat_filter(spec),
                    PageFrom::Newest,
                    spec.max_cache.saturating_sub(1),
                )
                .into_iter()
                .map(|r| r.0)
                .collect(),
        };
        let facts = seqs.into_iter().filter_map(|seq| {
            hot.meta(seq).map(|m| GroupFacts {
                seq,
                verb: m.verb,
                object: m.object,
                actor: m.actor,
                at: m.at,
            })
        });
        aggregate(facts, &spec.group_by, spec.window_seconds)
    }

    /// Unseen and unread counts of a feed (items, or groups for an aggregated feed), each at
    /// most `max_cache`.
    pub fn feed_counts(&self, user: &User, spec: &FeedSpec) -> StoreResult<FeedCounts> {
        let hot = self.hot()?;
        let (seen, read) = hot.marker(user.id, &spec.name);
        let newest: Vec<i64> = match spec.kind {
            FeedKind::Notification => hot
                .notifications(
                    user.id,
                    self.routed_seq(),
                    &reason_codes(spec),
                    None,
                    spec.max_cache,
                )
                .into_iter()
                .map(|n| n.0)
                .collect(),
            FeedKind::Aggregated => self
                .groups(&hot, user.id, spec)
                .iter()
                .map(|g| g.newest())
                .collect(),
            FeedKind::Flat => hot
                .inbox(
                    user.id,
                    self.routed_seq(),
                    &InboxFilter::default(),
                    &[],
                    &flat_filter(spec),
                    PageFrom::After(seen.min(read)),
                    spec.max_cache.saturating_sub(1),
                )
                .into_iter()
                .map(|r| r.0)
                .collect(),
        };
        Ok(FeedCounts {
            unseen: newest.iter().filter(|&&s| s > seen).count(),
            unread: newest.iter().filter(|&&s| s > read).count(),
            seen_cursor: seen,
            read_cursor: read,
        })
    }

    /// Moves a feed's seen (and, with `read`, read) marker forward to `upto` (or to everything
    /// routed so far); markers never move back. Returns the markers after the change.
    pub async fn mark_feed(
        &self,
        user: User,
        feed: &str,
        upto: Option<i64>,
        read: bool,
    ) -> StoreResult<(i64, i64)> {
        let upto = upto
            .unwrap_or_else(|| self.routed_seq())
            .min(self.routed_seq());
        let feed = feed.to_owned();
        self.write(move |conn, fx| {
            let (seen0, read0): (i64, i64) = conn
                .prepare_cached(
                    "SELECT seen_seq, read_seq FROM feed_markers WHERE user_id = ?1 AND feed = ?2",
                )?
                .query_row(params![user.id, feed], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?
                .unwrap_or((0, 0));
            let seen = seen0.max(upto);
            let read_to = if read { read0.max(upto) } else { read0 };
            conn.prepare_cached(
                "INSERT INTO feed_markers(user_id, feed, seen_seq, read_seq) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(user_id, feed) DO UPDATE SET seen_seq = ?3, read_seq = ?4",
            )?
            .execute(params![user.id, feed, seen, read_to])?;
            fx.push(Effect::Marker {
                user: user.id,
                feed,
                seen,
                read: read_to,
            });
            Ok((seen, read_to))
        })
        .await
    }

    /// Whether `follower` follows `followee`; with the Follow activity's id.
    pub async fn follow_activity(
        &self,
        follower: &User,
        followee: &str,
    ) -> StoreResult<Option<String>> {
        let follower = follower.id;
        let followee = followee.to_owned();
        self.read(move |conn| {
            let followee = user_by_name(conn, &followee)?;
            let Some((_, follow_seq)) = follow_row(conn, follower, followee.id)? else {
                return Ok(None);
            };
            Ok(conn
                .prepare_cached("SELECT id FROM activities WHERE seq = ?1")?
                .query_row([follow_seq], |r| r.get(0))
                .optional()?)
        })
        .await
    }

    /// The actor's live Like or Announce of an activity, by id.
    pub async fn live_reaction(
        &self,
        actor: &User,
        activity_type: &str,
        target_id: &str,
    ) -> StoreResult<Option<String>> {
        let actor = actor.id;
        let activity_type = activity_type.to_owned();
        let target_id = target_id.to_owned();
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT a.id FROM activities a WHERE a.actor_id = ?1 AND a.type = ?2
                     AND a.object_ref = ?3
                     AND NOT EXISTS(SELECT 1 FROM retractions r WHERE r.seq = a.seq)
                     ORDER BY a.seq DESC LIMIT 1",
                )?
                .query_row(params![actor, activity_type, target_id], |r| r.get(0))
                .optional()?)
        })
        .await
    }

    /// Which of `target_ids` the actor has a live Like and a live Announce of, as
    /// `(liked, shared)` per id, in the order given.
    pub async fn my_reactions(
        &self,
        actor: &User,
        target_ids: Vec<String>,
    ) -> StoreResult<Vec<(bool, bool)>> {
        let actor = actor.id;
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT a.type FROM activities a WHERE a.object_ref = ?2 AND a.actor_id = ?1
                 AND a.type IN ('Like', 'Announce')
                 AND NOT EXISTS(SELECT 1 FROM retractions r WHERE r.seq = a.seq)",
            )?;
            target_ids
                .iter()
                .map(|id| {
                    let types = stmt
                        .query_map(params![actor, id], |r| r.get::<_, String>(0))?
                        .collect::<Result<Vec<_>, _>>()?;
                    Ok((
                        types.iter().any(|t| t == "Like"),
                        types.iter().any(|t| t == "Announce"),
                    ))
                })
                .collect()
        })
        .await
    }

    /// Whether `me` follows `other` and `other` follows `me`: the follow's seq, each way.
    pub async fn relationship(
        &self,
        me: &User,
        other: &str,
    ) -> StoreResult<(Option<i64>, Option<i64>)> {
        let me = me.id;
        let other = other.to_owned();
        self.read(move |conn| {
            let other = user_by_name(conn, &other)?;
            Ok((
                follow_row(conn, me, other.id)?.map(|(_, seq)| seq),
                follow_row(conn, other.id, me)?.map(|(_, seq)| seq),
            ))
        })
        .await
    }

    /// Who follows `username` (`followers = true`) or whom they follow, newest follow first.
    pub async fn follow_list(
        &self,
        username: &str,
        followers: bool,
        from: PageFrom,
        limit: usize,
    ) -> StoreResult<(Vec<FollowEntry>, bool)> {
        let username = username.to_owned();
        self.read(move |conn| {
            let user = user_by_name(conn, &username)?;
            let (mine, other) = if followers {
                ("followee_id", "follower_id")
            } else {
                ("follower_id", "followee_id")
            };
            let (bound, order, cursor) = match from {
                PageFrom::Newest => ("", "DESC", i64::MAX),
                PageFrom::Before(c) => ("AND f.follow_seq < ?2", "DESC", c),
                PageFrom::After(c) => ("AND f.follow_seq > ?2", "ASC", c),
            };
            let sql = format!(
                "SELECT u.id, u.username, u.display_name, u.is_admin, u.status, u.created_at,
                        f.follow_seq, f.created_at
                 FROM follows f JOIN users u ON u.id = f.{other}
                 WHERE f.{mine} = ?1 AND u.status != 'deleted' {bound} AND ?2 = ?2
                 ORDER BY f.follow_seq {order} LIMIT ?3"
            );
            let mut rows = conn
                .prepare_cached(&sql)?
                .query_map(params![user.id, cursor, limit as i64 + 1], |r| {
                    Ok(FollowEntry {
                        user: User {
                            id: r.get(0)?,
                            username: r.get(1)?,
                            display_name: r.get(2)?,
                            is_admin: r.get(3)?,
                            status: crate::model::UserStatus::from_db(&r.get::<_, String>(4)?),
                            created_at: r.get(5)?,
                        },
                        follow_seq: r.get(6)?,
                        since: r.get(7)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            let more = rows.len() > limit;
            rows.truncate(limit);
            if let PageFrom::After(_) = from {
                rows.reverse();
                return Ok((rows, true));
            }
            Ok((rows, more))
        })
        .await
    }

    /// How many follow `username`, and how many they follow.
    pub async fn follow_counts(&self, username: &str) -> StoreResult<(i64, i64)> {
        let username = username.to_owned();
        self.read(move |conn| {
            let user = user_by_name(conn, &username)?;
            let count = |sql: &str| -> StoreResult<i64> {
                Ok(conn
                    .prepare_cached(sql)?
                    .query_row([user.id], |r| r.get(0))?)
            };
            Ok((
                count("SELECT COUNT(*) FROM follows WHERE followee_id = ?1")?,
                count("SELECT COUNT(*) FROM follows WHERE follower_id = ?1")?,
            ))
        })
        .await
    }
}

fn flat_filter(spec: &FeedSpec) -> FeedFilter {
    FeedFilter {
        verbs: (!spec.verbs.is_empty()).then(|| spec.verbs.clone()),
        exclude_own: !spec.include_actor,
        actors: None,
    }
}

fn reason_codes(spec: &FeedSpec) -> Vec<u8> {
    spec.reasons().into_iter().map(Reason::code).collect()
}
