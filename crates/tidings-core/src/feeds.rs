//! Feeds: named projections over what reaches a user, declared in configuration.
//!
//! Three kinds (see DESIGN.md):
//! - **flat** — the home timeline: follows and circle subscriptions (the inbox), optionally
//!   narrowed to some verbs;
//! - **notification** — activities aimed at one user (likes and shares of their activities,
//!   replies, mentions, follows, joins of their circles), with seen/read markers;
//! - **aggregated** — a flat or notification feed folded into groups ("Ana and 3 others liked
//!   your photo"), by verb, object and/or actor within a time window.
//!
//! Everything here is pure: which notifications an activity raises, how items fold into groups.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// How a feed is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FeedKind {
    /// A timeline of follows and subscriptions.
    Flat,
    /// Groups of similar items.
    Aggregated,
    /// Items aimed at the reader, with seen/read state.
    Notification,
}

/// Why a notification reached a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reason {
    /// Someone replied to one of the user's activities.
    Reply,
    /// Someone liked one of the user's activities.
    Like,
    /// Someone shared (Announce) one of the user's activities.
    Share,
    /// Someone followed the user.
    Follow,
    /// Someone joined one of the user's circles.
    Join,
    /// The user was addressed by name.
    Mention,
}

impl Reason {
    /// Every reason, in a stable order.
    pub const ALL: [Reason; 6] = [
        Reason::Reply,
        Reason::Like,
        Reason::Share,
        Reason::Follow,
        Reason::Join,
        Reason::Mention,
    ];

    /// Stable text form.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Reply => "reply",
            Reason::Like => "like",
            Reason::Share => "share",
            Reason::Follow => "follow",
            Reason::Join => "join",
            Reason::Mention => "mention",
        }
    }

    /// Parses a reason or one of its aliases (`comment` = reply, `announce` = share), any case.
    pub fn parse(raw: &str) -> Option<Reason> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "reply" | "comment" => Some(Reason::Reply),
            "like" => Some(Reason::Like),
            "share" | "announce" => Some(Reason::Share),
            "follow" => Some(Reason::Follow),
            "join" => Some(Reason::Join),
            "mention" => Some(Reason::Mention),
            _ => None,
        }
    }

    /// Compact code for storage.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// Inverse of [`Reason::code`].
    pub fn from_code(code: u8) -> Option<Reason> {
        Reason::ALL.get(usize::from(code)).copied()
    }
}

/// What an aggregated feed groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupPart {
    /// The activity type (Like, Announce, Create, …).
    Verb,
    /// What it acts on (for a Create, the activity itself).
    Object,
    /// Who did it.
    Actor,
}

/// A feed as declared in the configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedSpec {
    /// Name used in `GET /api/v1/feeds/{name}`.
    pub name: String,
    /// How it is built.
    pub kind: FeedKind,
    /// Which activities it takes: activity types for flat and aggregated feeds (`Create`,
    /// `Announce`, …; case-insensitive), reasons for notification feeds (`like`, `follow`,
    /// `reply`/`comment`, `mention`, `share`, `join`). Empty: all.
    #[serde(default)]
    pub verbs: Vec<String>,
    /// Whether the reader's own activities appear (flat and aggregated feeds).
    #[serde(default = "yes")]
    pub include_actor: bool,
    /// Notification and aggregated feeds are built from their newest `max_cache` items (older
    /// ones are not served); for flat feeds it caps the unseen/unread counts.
    #[serde(default = "default_max_cache")]
    pub max_cache: usize,
    /// Aggregated only: the feed it folds (`flat` or `notification`).
    #[serde(default)]
    pub source: Option<FeedKind>,
    /// Aggregated only: what makes items one group.
    #[serde(default = "default_group_by")]
    pub group_by: Vec<GroupPart>,
    /// Aggregated only: items further apart than this never share a group.
    #[serde(default = "default_window")]
    pub window_seconds: i64,
}

fn yes() -> bool {
    true
}
fn default_max_cache() -> usize {
    800
}
fn default_group_by() -> Vec<GroupPart> {
    vec![GroupPart::Verb, GroupPart::Object]
}
fn default_window() -> i64 {
    86_400
}

/// A feed declaration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("feed {feed:?}: {message}")]
pub struct FeedError {
    /// The feed's name.
    pub feed: String,
    /// What is wrong.
    pub message: String,
}

impl FeedSpec {
    /// A flat feed with defaults.
    pub fn flat(name: &str) -> FeedSpec {
        FeedSpec {
            name: name.to_owned(),
            kind: FeedKind::Flat,
            verbs: Vec::new(),
            include_actor: true,
            max_cache: default_max_cache(),
            source: None,
            group_by: default_group_by(),
            window_seconds: default_window(),
        }
    }

    /// The feeds that ship: `home`, `notifications`, `aggregated`.
    pub fn defaults() -> Vec<FeedSpec> {
        vec![
            FeedSpec::flat("home"),
            FeedSpec {
                kind: FeedKind::Notification,
                max_cache: 200,
                ..FeedSpec::flat("notifications")
            },
            FeedSpec {
                kind: FeedKind::Aggregated,
                source: Some(FeedKind::Flat),
                ..FeedSpec::flat("aggregated")
            },
        ]
    }

    /// Checks the declaration.
    pub fn validate(&self) -> Result<(), FeedError> {
        let fail = |message: String| FeedError {
            feed: self.name.clone(),
            message,
        };
        if !crate::expr::is_valid_slug(&self.name) {
            return Err(fail(
                "a feed name is lowercase letters, digits and dashes".into(),
            ));
        }
        if self.max_cache == 0 || self.max_cache > 100_000 {
            return Err(fail("max_cache must be between 1 and 100000".into()));
        }
        if self.kind == FeedKind::Notification || self.source == Some(FeedKind::Notification) {
            if let Some(bad) = self.verbs.iter().find(|v| Reason::parse(v).is_none()) {
                return Err(fail(format!(
                    "{bad:?} is not a notification reason (like, share, reply, comment, mention, follow, join)"
                )));
            }
        } else if let Some(bad) = self.verbs.iter().find(|v| v.trim().is_empty()) {
            return Err(fail(format!("{bad:?} is not a verb")));
        }
        match (self.kind, self.source) {
            (FeedKind::Aggregated, Some(FeedKind::Aggregated)) => {
                return Err(fail(
                    "an aggregated feed folds a flat or notification feed".into(),
                ));
            }
            (FeedKind::Aggregated, _) => {
                if self.group_by.is_empty() {
                    return Err(fail(
                        "group_by needs at least one of verb, object, actor".into(),
                    ));
                }
                if !(1..=31 * 86_400).contains(&self.window_seconds) {
                    return Err(fail("window_seconds must be between 1 and 2678400".into()));
                }
            }
            (_, Some(_)) => {
                return Err(fail("only aggregated feeds have a source".into()));
            }
            _ => {}
        }
        Ok(())
    }

    /// The notification reasons it takes (all when `verbs` is empty).
    pub fn reasons(&self) -> Vec<Reason> {
        if self.verbs.is_empty() {
            return Reason::ALL.to_vec();
        }
        let mut out: Vec<Reason> = self.verbs.iter().filter_map(|v| Reason::parse(v)).collect();
        out.sort();
        out.dedup();
        out
    }

    /// Whether an activity type passes the verb filter (flat and aggregated feeds).
    pub fn takes_verb(&self, activity_type: &str) -> bool {
        self.verbs.is_empty()
            || self
                .verbs
                .iter()
                .any(|v| v.trim().eq_ignore_ascii_case(activity_type))
    }
}

/// Checks a whole configuration: each feed valid, names unique.
pub fn validate_feeds(feeds: &[FeedSpec]) -> Result<(), FeedError> {
    let mut seen = std::collections::HashSet::new();
    for feed in feeds {
        feed.validate()?;
        if !seen.insert(feed.name.as_str()) {
            return Err(FeedError {
                feed: feed.name.clone(),
                message: "declared twice".into(),
            });
        }
    }
    Ok(())
}

/// The facts about one activity that decide its notifications.
#[derive(Debug, Clone, Default)]
pub struct NoticeFacts<'a> {
    /// The author.
    pub actor: i64,
    /// Its type.
    pub activity_type: &'a str,
    /// Author of the activity it acts on (Like, Announce), if that is an activity.
    pub target_author: Option<i64>,
    /// Author of the activity it replies to.
    pub parent_author: Option<i64>,
    /// The user a Follow is about.
    pub followed: Option<i64>,
    /// Owners and moderators of the circle a Join is about.
    pub joined_circle_keepers: &'a [i64],
    /// Users addressed by name.
    pub addressed: &'a [i64],
}

/// Who gets a notification for an activity, and why: at most one per user, never the actor,
/// sorted by user. A direct reason (your post was liked) beats being addressed.
pub fn notifications(facts: &NoticeFacts<'_>) -> Vec<(i64, Reason)> {
    let mut out: HashMap<i64, Reason> = HashMap::new();
    let mut offer = |user: i64, reason: Reason| {
        if user != facts.actor {
            out.entry(user)
                .and_modify(|r| *r = (*r).min(reason))
                .or_insert(reason);
        }
    };
    match facts.activity_type {
        "Like" => {
            if let Some(author) = facts.target_author {
                offer(author, Reason::Like);
            }
        }
        "Announce" => {
            if let Some(author) = facts.target_author {
                offer(author, Reason::Share);
            }
        }
        "Follow" => {
            if let Some(user) = facts.followed {
                offer(user, Reason::Follow);
            }
        }
        "Join" => {
            for &keeper in facts.joined_circle_keepers {
                offer(keeper, Reason::Join);
            }
        }
        _ => {}
    }
    if let Some(parent) = facts.parent_author {
        offer(parent, Reason::Reply);
    }
    for &user in facts.addressed {
        offer(user, Reason::Mention);
    }
    let mut list: Vec<(i64, Reason)> = out.into_iter().collect();
    list.sort();
    list
}

/// What aggregation needs to know about one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupFacts {
    /// Cursor position.
    pub seq: i64,
    /// Interned activity type.
    pub verb: u32,
    /// Interned object key (the target's id, or the activity's own for a Create).
    pub object: u64,
    /// The actor.
    pub actor: i64,
    /// Published, unix seconds.
    pub at: i64,
}

/// The identity of a group: the chosen parts plus the time bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GroupKey {
    verb: Option<u32>,
    object: Option<u64>,
    actor: Option<i64>,
    bucket: i64,
}

impl GroupKey {
    /// Stable text identity: the parts present and the bucket, e.g. `v3.o41.b20450`.
    pub fn label(&self) -> String {
        let mut out = String::new();
        if let Some(v) = self.verb {
            out.push_str(&format!("v{v}."));
        }
        if let Some(o) = self.object {
            out.push_str(&format!("o{o}."));
        }
        if let Some(a) = self.actor {
            out.push_str(&format!("a{a}."));
        }
        out.push_str(&format!("b{}", self.bucket));
        out
    }
}

/// The group an item belongs to: fixed by the item alone, so a group never depends on which
/// page is read (that is what keeps aggregated pages stable).
pub fn group_key(item: &GroupFacts, parts: &[GroupPart], window_seconds: i64) -> GroupKey {
    let has = |p: GroupPart| parts.contains(&p);
    GroupKey {
        verb: has(GroupPart::Verb).then_some(item.verb),
        object: has(GroupPart::Object).then_some(item.object),
        actor: has(GroupPart::Actor).then_some(item.actor),
        bucket: item.at.div_euclid(window_seconds.max(1)),
    }
}

/// One group of an aggregated page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Its key.
    pub key: GroupKey,
    /// Member seqs, newest first.
    pub seqs: Vec<i64>,
    /// Distinct actors, most recent first.
    pub actors: Vec<i64>,
}

impl Group {
    /// The newest member: the group's cursor and sort position.
    pub fn newest(&self) -> i64 {
        self.seqs.first().copied().unwrap_or(0)
    }
}

/// Folds items (newest first) into groups, ordered by their newest member, newest first.
/// Callers bound `items` (a feed's `max_cache`) and fold the same newest items for every page,
/// so a group is always complete and a page walk by [`Group::newest`] sees each group once.
pub fn aggregate(
    items: impl IntoIterator<Item = GroupFacts>,
    parts: &[GroupPart],
    window_seconds: i64,
) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    let mut index: HashMap<GroupKey, usize> = HashMap::new();
    for item in items {
        let key = group_key(&item, parts, window_seconds);
        let slot = *index.entry(key).or_insert_with(|| {
            groups.push(Group {
                key,
                seqs: Vec::new(),
                actors: Vec::new(),
            });
            groups.len() - 1
        });
        if let Some(group) = groups.get_mut(slot) {
            group.seqs.push(item.seq);
            if !group.actors.contains(&item.actor) {
                group.actors.push(item.actor);
            }
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(seq: i64, verb: u32, object: u64, actor: i64, at: i64) -> GroupFacts {
        GroupFacts {
            seq,
            verb,
            object,
            actor,
            at,
        }
    }

    #[test]
    fn defaults_are_valid_and_parse_from_toml_shape() {
        validate_feeds(&FeedSpec::defaults()).expect("defaults valid");
        let spec: FeedSpec = serde_json::from_value(serde_json::json!({
            "name": "notification", "kind": "notification",
            "verbs": ["like", "follow", "comment", "mention"], "include_actor": false,
            "max_cache": 200
        }))
        .expect("parses");
        spec.validate().expect("valid");
        assert_eq!(
            spec.reasons(),
            vec![Reason::Reply, Reason::Like, Reason::Follow, Reason::Mention]
        );
    }

    #[test]
    fn bad_declarations_are_refused() {
        let mut bad = FeedSpec::flat("Home Feed");
        assert!(bad.validate().is_err());
        bad = FeedSpec {
            kind: FeedKind::Notification,
            verbs: vec!["tweet".into()],
            ..FeedSpec::flat("n")
        };
        assert!(bad.validate().is_err());
        bad = FeedSpec {
            max_cache: 0,
            ..FeedSpec::flat("x")
        };
        assert!(bad.validate().is_err());
        bad = FeedSpec {
            kind: FeedKind::Aggregated,
            group_by: vec![],
            ..FeedSpec::flat("x")
        };
        assert!(bad.validate().is_err());
        let twice = vec![FeedSpec::flat("a"), FeedSpec::flat("a")];
        assert!(validate_feeds(&twice).is_err());
    }

    #[test]
    fn notification_reasons() {
        let facts = NoticeFacts {
            actor: 1,
            activity_type: "Like",
            target_author: Some(2),
            addressed: &[2, 3, 1],
            ..NoticeFacts::default()
        };
        assert_eq!(
            notifications(&facts),
            vec![(2, Reason::Like), (3, Reason::Mention)]
        );
        let reply = NoticeFacts {
            actor: 4,
            activity_type: "Create",
            parent_author: Some(2),
            addressed: &[2],
            ..NoticeFacts::default()
        };
        assert_eq!(notifications(&reply), vec![(2, Reason::Reply)]);
        let own = NoticeFacts {
            actor: 2,
            activity_type: "Like",
            target_author: Some(2),
            ..NoticeFacts::default()
        };
        assert!(notifications(&own).is_empty());
        let follow = NoticeFacts {
            actor: 2,
            activity_type: "Follow",
            followed: Some(5),
            addressed: &[5],
            ..NoticeFacts::default()
        };
        assert_eq!(notifications(&follow), vec![(5, Reason::Follow)]);
    }

    #[test]
    fn aggregation_groups_by_key_and_window() {
        let parts = [GroupPart::Verb, GroupPart::Object];
        // Newest first: three likes of object 9, one share, a like of object 9 a day earlier.
        let items = vec![
            item(10, 1, 9, 100, 1_000_050),
            item(9, 2, 9, 101, 1_000_040),
            item(8, 1, 9, 102, 1_000_030),
            item(7, 1, 9, 100, 1_000_020),
            item(6, 1, 9, 103, 1_000_000 - 86_400),
        ];
        let groups = aggregate(items, &parts, 86_400);
        assert_eq!(groups.len(), 3);
        assert_eq!(groups[0].seqs, vec![10, 8, 7]);
        assert_eq!(groups[0].actors, vec![100, 102]);
        assert_eq!(groups[1].seqs, vec![9]);
        assert_eq!(groups[2].seqs, vec![6]);
        // Grouping by actor too splits the first group.
        let by_actor = [GroupPart::Verb, GroupPart::Object, GroupPart::Actor];
        let items = vec![
            item(3, 1, 9, 100, 10),
            item(2, 1, 9, 101, 9),
            item(1, 1, 9, 100, 8),
        ];
        let groups = aggregate(items, &by_actor, 86_400);
        assert_eq!(
            groups.iter().map(|g| g.seqs.clone()).collect::<Vec<_>>(),
            vec![vec![3, 1], vec![2]]
        );
    }
}
