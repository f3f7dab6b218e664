//! Hot projections: the in-memory index that serves inbox reads.
//!
//! The log in the database is the durable truth; this index is derived from it, loaded at
//! start-up and kept current by the writer thread, which applies each committed transaction's
//! [`Effect`]s (never an uncommitted one). It holds, per activity, just what filtering needs
//! (tags, circles, kind, retraction) and, per user, the entries the router wrote, the hidden
//! items and the subscription windows on circles merged at read time. An inbox page is then a
//! k-way merge over in-memory sorted vectors; no SQL runs until the page is hydrated.

use crate::model::{InboxFilter, PageFrom};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tidings_core::merge::{Direction, merge_iters_by};

/// What filtering needs to know about one activity.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct Meta {
    /// Author.
    pub actor: i64,
    /// Create/Update (major) or anything else (minor).
    pub major: bool,
    /// Shown in listings (not an Update, Delete or Undo).
    pub listed: bool,
    /// Retracted by a Delete.
    pub retracted: bool,
    /// Interned tags.
    pub tags: Box<[u32]>,
    /// Circles it was addressed to.
    pub circles: Box<[i64]>,
    /// The activity it replies to.
    pub parent: Option<i64>,
    /// Addressed to the author's followers (or the public): reaches followers' home feeds.
    pub to_followers: bool,
    /// Addressed to the public: anyone may read it, member of its circles or not.
    #[serde(default)]
    pub public: bool,
    /// Interned activity type.
    pub verb: u32,
    /// What it is about, for aggregation: the acted-on activity's seq, a followed user
    /// (`FOLLOWED_USER | id`), or its own seq.
    pub object: u64,
    /// The activity it acts on (Like, Announce), when that is an activity.
    pub target: Option<i64>,
    /// Published, unix seconds.
    pub at: i64,
}

/// Marks [`Meta::object`] keys that are users (Follow), not activities.
pub(crate) const FOLLOWED_USER: u64 = 1 << 62;

/// A follow as the read side sees it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct FollowEdge {
    /// The followed user.
    pub producer: i64,
    /// Only the producer's activities after this seq.
    pub floor: i64,
    /// `follow:NAME`, shared by every item it brings.
    pub via: Arc<str>,
}

/// A subscription window: routes `since < seq <= until`, on one circle or (None) on every
/// circle the subscriber can read.
#[derive(Debug, Clone)]
pub(crate) struct Window {
    /// Subscription id.
    pub id: i64,
    /// The circle, or None for `tag@*`.
    pub circle: Option<i64>,
    /// Interned tag, or None for `*`.
    pub tag: Option<u32>,
    /// Exclusive lower bound.
    pub since: i64,
    /// Inclusive upper bound, None while open.
    pub until: Option<i64>,
    /// `subscription:ID:EXPR`, shared by every item it routes.
    pub via: Arc<str>,
}

/// Author facts shown with each activity.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct ActorInfo {
    /// Whether the account was deleted.
    pub deleted: bool,
    /// The facts as the JSON object shown under `tidings.actor`, encoded once.
    pub json: Arc<str>,
}

impl ActorInfo {
    /// Builds the facts and their JSON form.
    pub fn new(username: String, display_name: String, deleted: bool) -> ActorInfo {
        let shown = if deleted {
            "(deleted)"
        } else {
            display_name.as_str()
        };
        ActorInfo {
            deleted,
            json: Arc::from(actor_json(&username, shown, deleted)),
        }
    }
}

/// The JSON object shown under `tidings.actor` (keys in serde_json's map order, as always).
fn actor_json(username: &str, shown: &str, deleted: bool) -> String {
    #[derive(serde::Serialize)]
    struct Shown<'a> {
        deleted: bool,
        display_name: &'a str,
        username: &'a str,
    }
    serde_json::to_string(&Shown {
        deleted,
        display_name: shown,
        username,
    })
    .unwrap_or_default()
}

/// What the index keeps per user: both names in one allocation, the JSON built when shown
/// (a million users' JSON strings and their hash-map slots were most of a server's memory).
#[derive(Debug)]
struct UserFacts {
    /// The username then the display name, or (split = [`VERBATIM`]) JSON kept as given.
    names: Box<str>,
    /// Where the display name starts.
    split: u32,
    /// Whether the account was deleted.
    deleted: bool,
}

/// [`UserFacts::split`] of facts kept as the JSON text they arrived as.
const VERBATIM: u32 = u32::MAX;

impl UserFacts {
    fn new(username: &str, display_name: &str, deleted: bool) -> UserFacts {
        let split = u32::try_from(username.len()).unwrap_or(VERBATIM);
        if split == VERBATIM {
            return UserFacts::verbatim(&ActorInfo::new(
                username.to_owned(),
                display_name.to_owned(),
                deleted,
            ));
        }
        UserFacts {
            names: [username, display_name].concat().into_boxed_str(),
            split,
            deleted,
        }
    }

    fn verbatim(info: &ActorInfo) -> UserFacts {
        UserFacts {
            names: Box::from(&*info.json),
            split: VERBATIM,
            deleted: info.deleted,
        }
    }

    /// The facts of an [`Effect::User`]: names taken back out of its JSON when that JSON is
    /// exactly what they encode to, kept verbatim otherwise.
    fn from_info(info: &ActorInfo) -> UserFacts {
        #[derive(serde::Deserialize)]
        struct Shown {
            username: String,
            display_name: String,
        }
        match serde_json::from_str::<Shown>(&info.json) {
            Ok(shown)
                if *actor_json(&shown.username, &shown.display_name, info.deleted)
                    == *info.json =>
            {
                UserFacts::new(&shown.username, &shown.display_name, info.deleted)
            }
            _ => UserFacts::verbatim(info),
        }
    }

    fn json(&self) -> Arc<str> {
        if self.split == VERBATIM {
            return Arc::from(&*self.names);
        }
        let (username, display_name) = self
            .names
            .split_at_checked(self.split as usize)
            .unwrap_or((&self.names, ""));
        let shown = if self.deleted {
            "(deleted)"
        } else {
            display_name
        };
        Arc::from(actor_json(username, shown, self.deleted))
    }
}

/// What the index keeps per activity: a [`Meta`] packed (absent seqs as [`NO_SEQ`], flags in a
/// byte, tags and circles behind one pointer since most activities have neither).
#[derive(Debug, Clone, Default)]
pub(crate) struct Fact {
    /// Author.
    pub actor: i64,
    /// Published, unix seconds.
    pub at: i64,
    /// See [`Meta::object`].
    pub object: u64,
    parent: i64,
    target: i64,
    scope: Option<Box<Scope>>,
    /// Interned activity type.
    pub verb: u32,
    flags: u8,
}

/// Tags and circles of an activity that has any.
#[derive(Debug, Clone)]
struct Scope {
    tags: Box<[u32]>,
    circles: Box<[i64]>,
}

/// [`Fact`]'s stand-in for an absent parent or target (seqs are positive).
const NO_SEQ: i64 = i64::MIN;
const MAJOR: u8 = 1;
const LISTED: u8 = 2;
const RETRACTED: u8 = 4;
const TO_FOLLOWERS: u8 = 8;
const PUBLIC: u8 = 16;

impl Fact {
    fn new(meta: Meta) -> Fact {
        let flags = [
            (meta.major, MAJOR),
            (meta.listed, LISTED),
            (meta.retracted, RETRACTED),
            (meta.to_followers, TO_FOLLOWERS),
            (meta.public, PUBLIC),
        ]
        .iter()
        .filter(|(set, _)| *set)
        .fold(0, |all, (_, bit)| all | bit);
        let scope = (!meta.tags.is_empty() || !meta.circles.is_empty()).then(|| {
            Box::new(Scope {
                tags: meta.tags,
                circles: meta.circles,
            })
        });
        Fact {
            actor: meta.actor,
            at: meta.at,
            object: meta.object,
            parent: meta.parent.unwrap_or(NO_SEQ),
            target: meta.target.unwrap_or(NO_SEQ),
            scope,
            verb: meta.verb,
            flags,
        }
    }

    /// Create/Update (major) or anything else (minor).
    pub fn major(&self) -> bool {
        self.flags & MAJOR != 0
    }

    /// Shown in listings.
    pub fn listed(&self) -> bool {
        self.flags & LISTED != 0
    }

    /// Retracted by a Delete.
    pub fn retracted(&self) -> bool {
        self.flags & RETRACTED != 0
    }

    /// Reaches followers' home feeds.
    pub fn to_followers(&self) -> bool {
        self.flags & TO_FOLLOWERS != 0
    }

    /// Addressed to the public.
    pub fn public(&self) -> bool {
        self.flags & PUBLIC != 0
    }

    /// The activity it replies to.
    pub fn parent(&self) -> Option<i64> {
        (self.parent != NO_SEQ).then_some(self.parent)
    }

    /// The activity it acts on (Like, Announce).
    pub fn target(&self) -> Option<i64> {
        (self.target != NO_SEQ).then_some(self.target)
    }

    /// Interned tags.
    pub fn tags(&self) -> &[u32] {
        self.scope.as_ref().map_or(&[], |s| &s.tags)
    }

    /// Circles it was addressed to.
    pub fn circles(&self) -> &[i64] {
        self.scope.as_ref().map_or(&[], |s| &s.circles)
    }
}

/// A follow as the index keeps it (its `via` text is shared per producer).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Follow {
    /// The followed user.
    pub producer: i64,
    /// Only the producer's activities after this seq.
    pub floor: i64,
}

/// A list that is usually one element long (a user's outbox, their follows): held inline
/// until a second arrives, so the common case costs no allocation.
#[derive(Debug, Clone)]
enum Few<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> Default for Few<T> {
    fn default() -> Self {
        Few::Many(Vec::new())
    }
}

impl<T> Few<T> {
    fn as_slice(&self) -> &[T] {
        match self {
            Few::One(item) => std::slice::from_ref(item),
            Few::Many(list) => list,
        }
    }

    fn push(&mut self, item: T) {
        *self = match std::mem::take(self) {
            Few::Many(mut list) if !list.is_empty() => {
                list.push(item);
                Few::Many(list)
            }
            Few::Many(_) => Few::One(item),
            Few::One(first) => Few::Many(vec![first, item]),
        };
    }

    /// Changes the list as a `Vec`, then packs it again.
    fn edit<R>(&mut self, change: impl FnOnce(&mut Vec<T>) -> R) -> R {
        let mut list = match std::mem::take(self) {
            Few::One(item) => vec![item],
            Few::Many(list) => list,
        };
        let result = change(&mut list);
        *self = match (list.len(), list.pop()) {
            (1, Some(item)) => Few::One(item),
            (_, Some(item)) => {
                list.push(item);
                Few::Many(list)
            }
            (_, None) => Few::default(),
        };
        result
    }
}

/// Ids past the dense range by less than this (or twice its length) extend it.
const DENSE_SLACK: usize = 1 << 16;

/// A map keyed by ids the database hands out densely (users): one slot per id, so an entry
/// costs its value alone instead of a hash table's key and spare room. An id far past the
/// dense range (not seen in practice) is kept in a hash map instead.
#[derive(Debug)]
pub(crate) struct IdMap<T> {
    dense: Vec<T>,
    sparse: HashMap<i64, T>,
}

impl<T> Default for IdMap<T> {
    fn default() -> Self {
        IdMap {
            dense: Vec::new(),
            sparse: HashMap::new(),
        }
    }
}

impl<T: Default> IdMap<T> {
    /// The value at `id`; an id never written may give the default value.
    pub fn get(&self, id: i64) -> Option<&T> {
        match usize::try_from(id) {
            Ok(slot) if slot < self.dense.len() => self.dense.get(slot),
            _ => self.sparse.get(&id),
        }
    }

    /// The value at `id`, made (as the default) if needed.
    pub fn entry(&mut self, id: i64) -> &mut T {
        if let Ok(slot) = usize::try_from(id) {
            let reach = self.dense.len().saturating_mul(2).max(DENSE_SLACK);
            if slot >= self.dense.len() && slot < reach {
                self.grow(slot + 1);
            }
            if slot < self.dense.len() {
                return &mut self.dense[slot];
            }
        }
        self.sparse.entry(id).or_default()
    }

    fn grow(&mut self, len: usize) {
        self.dense.resize_with(len, T::default);
        // Sparse ids the dense range now covers move into it.
        let covered: Vec<i64> = self
            .sparse
            .keys()
            .copied()
            .filter(|&id| usize::try_from(id).is_ok_and(|slot| slot < len))
            .collect();
        for id in covered {
            if let (Some(value), Ok(slot)) = (self.sparse.remove(&id), usize::try_from(id)) {
                self.dense[slot] = value;
            }
        }
    }

    /// Frees the spare room left by growing.
    pub fn shrink_to_fit(&mut self) {
        self.dense.shrink_to_fit();
        self.sparse.shrink_to_fit();
    }
}

/// A change to apply once the transaction that made it has committed. Serialisable: in cluster
/// mode each committed transaction's effects are a record of the change log every node applies.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) enum Effect {
    /// A new activity in the log.
    Activity {
        /// Its seq.
        seq: i64,
        /// Its facts (tags as strings; interned on apply).
        meta: Meta,
        /// Its tags.
        tags: Vec<String>,
        /// Its activity type (interned on apply).
        verb: String,
        /// Its stored JSON, to warm the body cache (None when loading at start-up, and not
        /// carried by the change log: other nodes read bodies from the store when asked).
        #[serde(skip)]
        body: Option<Arc<str>>,
    },
    /// An activity was retracted.
    Retract {
        /// The retracted seq.
        seq: i64,
        /// Users whose notifications of it disappear with it (their counts change).
        notified: Vec<i64>,
    },
    /// A user blocked or muted an actor (`on`), or lifted it: the actor's activities leave
    /// (or return to) that user's inbox and notifications.
    Silence {
        /// Whose setting.
        user: i64,
        /// Whom they no longer see.
        actor: i64,
        /// Set or lifted.
        on: bool,
    },
    /// An activity was edited by an Update.
    Edit {
        /// The edited seq.
        target: i64,
    },
    /// The router wrote inbox entries.
    Entries(Vec<(i64, i64, Arc<str>)>),
    /// A circle switched to merge-at-read from this seq.
    Merged {
        /// The circle.
        circle: i64,
        /// First seq merged at read.
        from_seq: i64,
    },
    /// A subscription opened.
    Subscribe {
        /// The subscriber.
        user: i64,
        /// Its id.
        id: i64,
        /// The circle, or None for `tag@*`.
        circle: Option<i64>,
        /// Its tag, None for `*`.
        tag: Option<String>,
        /// Exclusive lower bound.
        since: i64,
        /// `subscription:ID:EXPR`.
        via: Arc<str>,
    },
    /// Subscriptions closed at `until` (one by id, all on a circle, or all of the user's).
    Close {
        /// The subscriber.
        user: i64,
        /// Only this subscription.
        id: Option<i64>,
        /// Only subscriptions on this circle.
        circle: Option<i64>,
        /// The closing seq.
        until: i64,
    },
    /// An item was hidden in one inbox.
    Hide {
        /// The inbox owner.
        user: i64,
        /// The item.
        seq: i64,
    },
    /// A circle was created.
    Circle {
        /// Circle id.
        id: i64,
        /// Its unique name.
        name: String,
        /// Whether anyone may read it.
        public: bool,
    },
    /// A user became (true) or stopped being (false) an active member of a circle.
    Member {
        /// The user.
        user: i64,
        /// The circle.
        circle: i64,
        /// Active member now.
        active: bool,
    },
    /// A follow was made (its backfill arrives as [`Effect::Entries`]).
    Follow {
        /// The follower.
        follower: i64,
        /// The edge.
        edge: FollowEdge,
    },
    /// A follow was undone: its edge and every entry it wrote go.
    Unfollow {
        /// The follower.
        follower: i64,
        /// The followed user.
        producer: i64,
    },
    /// A producer switched to merge-at-read for its followers from this seq.
    ProducerMerged {
        /// The producer.
        producer: i64,
        /// First seq merged at read.
        from_seq: i64,
    },
    /// Notifications raised by routing: (user, seq, reason code).
    Notify(Vec<(i64, i64, u8)>),
    /// A user's seen/read markers of one feed.
    Marker {
        /// The user.
        user: i64,
        /// The feed.
        feed: String,
        /// Everything up to this seq is seen.
        seen: i64,
        /// Everything up to this seq is read.
        read: i64,
    },
    /// Sessions were revoked or a user's status changed: cached sessions must be re-read.
    Sessions,
    /// The integration bus moved: the log was matched further, or a consumer replied. Callers
    /// waiting on a sync publish (`?wait=replied`), on any node, look again.
    BusNews,
    /// A user was created or changed.
    User {
        /// User id.
        id: i64,
        /// Facts shown with activities.
        info: ActorInfo,
        /// Admins read every circle.
        admin: bool,
    },
}

/// The index itself (behind a lock in the store).
#[derive(Debug, Default)]
pub(crate) struct HotIndex {
    tag_ids: HashMap<String, u32>,
    /// Slot `seq` holds the activity with that seq (slot 0 unused).
    activities: Vec<Fact>,
    circle_streams: HashMap<i64, Vec<i64>>,
    merged_from: HashMap<i64, i64>,
    written: HashMap<i64, Vec<(i64, Arc<str>)>>,
    hidden: HashMap<i64, HashSet<i64>>,
    /// Per user, the actors they blocked or muted: never shown to them.
    silenced: HashMap<i64, HashSet<i64>>,
    windows: HashMap<i64, Vec<Window>>,
    replies: HashMap<i64, u32>,
    edited: HashSet<i64>,
    users: IdMap<Option<UserFacts>>,
    circle_ids: HashMap<String, i64>,
    /// Seqs carrying each tag that were addressed to at least one circle.
    tag_streams: HashMap<u32, Vec<i64>>,
    /// Seqs addressed to at least one circle.
    circled: Vec<i64>,
    /// Each actor's activities: the "author" source of their own inbox.
    outboxes: IdMap<Few<i64>>,
    public_circles: HashSet<i64>,
    memberships: HashMap<i64, HashSet<i64>>,
    admins: HashSet<i64>,
    /// Users holding open subscription windows, by what the window watches, with how many:
    /// who a push must wake when an activity is merged at read time. (Followers of a
    /// producer are found through their follows instead: a celebrity's million followers
    /// would cost a hash-map slot each here.)
    holders: HashMap<WindowKey, HashMap<i64, u32>>,
    /// Interned activity types.
    verb_ids: HashMap<String, u32>,
    /// Each user's follows, by producer.
    follows: IdMap<Few<Follow>>,
    /// The `follow:NAME` text of each followed producer, shared by its followers' items.
    follow_vias: HashMap<i64, Arc<str>>,
    /// Producers merged into followers' feeds at read time, from a seq on.
    producer_merged_from: HashMap<i64, i64>,
    /// Each user's notifications (seq, reason code), in seq order.
    notifications: HashMap<i64, Vec<(i64, u8)>>,
    /// Seen/read markers by user and feed.
    markers: HashMap<i64, HashMap<String, (i64, i64)>>,
    /// Live likes and shares per activity.
    reactions: HashMap<i64, (u32, u32)>,
}

/// What a feed read takes from the index besides the inbox filter.
#[derive(Debug, Clone, Default)]
pub(crate) struct FeedFilter {
    /// Only these activity types (interned names, matched case-insensitively); None: all.
    pub verbs: Option<Vec<String>>,
    /// Leave out the reader's own activities.
    pub exclude_own: bool,
    /// Only activities by these users (sorted ids); None: anyone's.
    pub actors: Option<Vec<i64>>,
}

/// What an open window watches, for [`HotIndex::wake_set`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum WindowKey {
    /// One circle (any tag).
    Circle(i64),
    /// `tag@*` (or `*@*` with None): every circle the holder can read.
    AnyCircle(Option<u32>),
}

impl Window {
    fn key(&self) -> WindowKey {
        match self.circle {
            Some(circle) => WindowKey::Circle(circle),
            None => WindowKey::AnyCircle(self.tag),
        }
    }
}

/// Which stream [`HotIndex::stream`] walks.
#[derive(Debug, Clone, Copy)]
pub(crate) enum StreamKey {
    /// A circle's stream, by circle id.
    Circle(i64),
    /// An actor's outbox, by user id.
    Outbox(i64),
}

/// One inbox row before hydration.
pub(crate) type Row = (i64, Option<String>);

/// The order `tidings_core::routing` keeps reasons in: author, addressed, the oldest
/// subscription, a follow.
fn via_rank(via: &str) -> (u8, i64) {
    match via {
        "author" => (0, 0),
        "addressed" => (1, 0),
        v if v.starts_with("follow:") => (3, 0),
        v => v
            .strip_prefix("subscription:")
            .and_then(|rest| rest.split(':').next())
            .and_then(|id| id.parse().ok())
            .map_or((4, 0), |id| (2, id)),
    }
}

impl HotIndex {
    fn tag_id(&mut self, tag: &str) -> u32 {
        if let Some(&id) = self.tag_ids.get(tag) {
            return id;
        }
        let id = self.tag_ids.len() as u32;
        self.tag_ids.insert(tag.to_owned(), id);
        id
    }

    fn verb_id(&mut self, verb: &str) -> u32 {
        if let Some(&id) = self.verb_ids.get(verb) {
            return id;
        }
        let id = self.verb_ids.len() as u32;
        self.verb_ids.insert(verb.to_owned(), id);
        id
    }

    /// The name of an interned activity type.
    pub fn verb_name(&self, id: u32) -> &str {
        self.verb_ids
            .iter()
            .find(|(_, v)| **v == id)
            .map_or("", |(name, _)| name.as_str())
    }

    /// Ids of the activity types matching `names` case-insensitively.
    fn verb_filter(&self, names: &[String]) -> Vec<u32> {
        self.verb_ids
            .iter()
            .filter(|(v, _)| names.iter().any(|n| n.trim().eq_ignore_ascii_case(v)))
            .map(|(_, &id)| id)
            .collect()
    }

    pub(crate) fn meta(&self, seq: i64) -> Option<&Fact> {
        usize::try_from(seq)
            .ok()
            .and_then(|i| self.activities.get(i))
    }

    /// Applies one committed change.
    pub fn apply(&mut self, effect: Effect) {
        match effect {
            Effect::Activity {
                seq,
                mut meta,
                tags,
                verb,
                ..
            } => {
                meta.tags = tags.iter().map(|t| self.tag_id(t)).collect();
                meta.verb = self.verb_id(&verb);
                let Ok(slot) = usize::try_from(seq) else {
                    return;
                };
                if self.activities.len() <= slot {
                    self.activities.resize(slot + 1, Fact::default());
                }
                // Seqs arrive in commit order, which is seq order.
                let push = |stream: &mut Vec<i64>| {
                    if stream.last().is_none_or(|&last| last < seq) {
                        stream.push(seq);
                    }
                };
                for &circle in meta.circles.iter() {
                    push(self.circle_streams.entry(circle).or_default());
                }
                let outbox = self.outboxes.entry(meta.actor);
                if outbox.as_slice().last().is_none_or(|&last| last < seq) {
                    outbox.push(seq);
                }
                if !meta.circles.is_empty() {
                    push(&mut self.circled);
                    for &tag in meta.tags.iter() {
                        push(self.tag_streams.entry(tag).or_default());
                    }
                }
                if meta.listed
                    && let Some(parent) = meta.parent
                {
                    *self.replies.entry(parent).or_default() += 1;
                }
                if let Some(target) = meta.target {
                    self.count_reaction(meta.verb, target, true);
                }
                self.activities[slot] = Fact::new(meta);
            }
            Effect::Retract { seq, .. } => {
                let (parent, reaction) = match usize::try_from(seq)
                    .ok()
                    .and_then(|i| self.activities.get_mut(i))
                {
                    Some(fact) if !fact.retracted() => {
                        fact.flags |= RETRACTED;
                        (
                            fact.parent().filter(|_| fact.listed()),
                            fact.target().map(|t| (fact.verb, t)),
                        )
                    }
                    _ => (None, None),
                };
                if let Some((verb, target)) = reaction {
                    self.count_reaction(verb, target, false);
                }
                if let Some(parent) = parent
                    && let Some(count) = self.replies.get_mut(&parent)
                {
                    *count = count.saturating_sub(1);
                }
            }
            Effect::Edit { target } => {
                self.edited.insert(target);
            }
            Effect::Entries(entries) => {
                for (user, seq, via) in entries {
                    insert_by_seq(self.written.entry(user).or_default(), seq, via);
                }
            }
            Effect::Merged { circle, from_seq } => {
                self.merged_from.entry(circle).or_insert(from_seq);
            }
            Effect::Subscribe {
                user,
                id,
                circle,
                tag,
                since,
                via,
            } => {
                let tag = tag.map(|t| self.tag_id(&t));
                let window = Window {
                    id,
                    circle,
                    tag,
                    since,
                    until: None,
                    via,
                };
                *self
                    .holders
                    .entry(window.key())
                    .or_default()
                    .entry(user)
                    .or_default() += 1;
                self.windows.entry(user).or_default().push(window);
            }
            Effect::Close {
                user,
                id,
                circle,
                until,
            } => {
                if let Some(windows) = self.windows.get_mut(&user) {
                    for w in windows.iter_mut().filter(|w| w.until.is_none()) {
                        if id.is_none_or(|id| id == w.id)
                            && circle.is_none_or(|c| Some(c) == w.circle)
                        {
                            w.until = Some(until);
                            let key = w.key();
                            if let Some(users) = self.holders.get_mut(&key)
                                && let Some(count) = users.get_mut(&user)
                            {
                                *count -= 1;
                                if *count == 0 {
                                    users.remove(&user);
                                }
                            }
                        }
                    }
                }
            }
            Effect::Hide { user, seq } => {
                self.hidden.entry(user).or_default().insert(seq);
            }
            Effect::Silence { user, actor, on } => {
                if on {
                    self.silenced.entry(user).or_default().insert(actor);
                } else if let Some(set) = self.silenced.get_mut(&user) {
                    set.remove(&actor);
                    if set.is_empty() {
                        self.silenced.remove(&user);
                    }
                }
            }
            Effect::Circle { id, name, public } => {
                self.circle_ids.insert(name, id);
                if public {
                    self.public_circles.insert(id);
                }
            }
            Effect::Member {
                user,
                circle,
                active,
            } => {
                let circles = self.memberships.entry(user).or_default();
                if active {
                    circles.insert(circle);
                } else {
                    circles.remove(&circle);
                }
            }
            Effect::Follow { follower, edge } => {
                // Every edge to one producer carries the same text.
                self.follow_vias.entry(edge.producer).or_insert(edge.via);
                let follow = Follow {
                    producer: edge.producer,
                    floor: edge.floor,
                };
                let edges = self.follows.entry(follower);
                if edges.as_slice().is_empty() {
                    edges.push(follow);
                } else {
                    edges.edit(|edges| {
                        match edges.binary_search_by_key(&follow.producer, |e| e.producer) {
                            Ok(pos) => edges[pos] = follow,
                            Err(pos) => edges.insert(pos, follow),
                        }
                    });
                }
            }
            Effect::Unfollow { follower, producer } => {
                let removed =
                    self.follows.get(follower).is_some_and(|edges| {
                        edges.as_slice().iter().any(|e| e.producer == producer)
                    }) && self.follows.entry(follower).edit(|edges| {
                        edges.retain(|e| e.producer != producer);
                        true
                    });
                let via = self.follow_vias.get(&producer).filter(|_| removed);
                if let (Some(via), Some(list)) = (via, self.written.get_mut(&follower)) {
                    list.retain(|(_, v)| v != via);
                }
            }
            Effect::ProducerMerged { producer, from_seq } => {
                self.producer_merged_from
                    .entry(producer)
                    .or_insert(from_seq);
            }
            Effect::Notify(list) => {
                for (user, seq, reason) in list {
                    insert_by_seq(self.notifications.entry(user).or_default(), seq, reason);
                }
            }
            Effect::Marker {
                user,
                feed,
                seen,
                read,
            } => {
                self.markers
                    .entry(user)
                    .or_default()
                    .insert(feed, (seen, read));
            }
            Effect::User { id, info, admin } => {
                self.set_admin(id, admin && !info.deleted);
                *self.users.entry(id) = Some(UserFacts::from_info(&info));
            }
            // Sessions are not part of the index (the store's session cache handles them).
            Effect::Sessions | Effect::BusNews => {}
        }
    }

    /// Adds a user as loaded from the database: what [`Effect::User`] does, without building
    /// the JSON only to take it apart again.
    pub fn load_user(
        &mut self,
        id: i64,
        username: &str,
        display_name: &str,
        deleted: bool,
        admin: bool,
    ) {
        self.set_admin(id, admin && !deleted);
        *self.users.entry(id) = Some(UserFacts::new(username, display_name, deleted));
    }

    fn set_admin(&mut self, id: i64, admin: bool) {
        if admin {
            self.admins.insert(id);
        } else {
            self.admins.remove(&id);
        }
    }

    /// Gives back the spare room the per-user tables grew into while loading.
    pub fn shrink_to_fit(&mut self) {
        self.activities.shrink_to_fit();
        self.users.shrink_to_fit();
        self.outboxes.shrink_to_fit();
        self.follows.shrink_to_fit();
    }

    /// Live (listed, not retracted) seqs of a circle's stream or an actor's outbox, in walk
    /// order, starting after `from`, at most `max`.
    pub fn stream(&self, key: StreamKey, from: PageFrom, max: usize) -> Vec<i64> {
        let list = match key {
            StreamKey::Circle(id) => self.circle_streams.get(&id).map(Vec::as_slice),
            StreamKey::Outbox(id) => self.outboxes.get(id).map(Few::as_slice),
        };
        let Some(list) = list else {
            return Vec::new();
        };
        let (low, high, direction) = match from {
            PageFrom::Newest => (i64::MIN, i64::MAX, Direction::Older),
            PageFrom::Before(s) => (i64::MIN, s - 1, Direction::Older),
            PageFrom::After(s) => (s, i64::MAX, Direction::Newer),
        };
        window(list, |&s| s, low, high, direction)
            .filter(|&&seq| self.meta(seq).is_some_and(|m| m.listed() && !m.retracted()))
            .take(max)
            .copied()
            .collect()
    }

    /// Whether `user` may read one circle now (public, a member, or an admin).
    fn reads_circle(&self, user: i64, circle: i64) -> bool {
        self.admins.contains(&user)
            || self.public_circles.contains(&circle)
            || self
                .memberships
                .get(&user)
                .is_some_and(|m| m.contains(&circle))
    }

    /// Whether `user` may read at least one of the activity's circles (for `tag@*`).
    fn reads_any_circle(&self, user: i64, meta: &Fact) -> bool {
        if self.admins.contains(&user) {
            return true;
        }
        let mine = self.memberships.get(&user);
        meta.circles()
            .iter()
            .any(|c| self.public_circles.contains(c) || mine.is_some_and(|m| m.contains(c)))
    }

    /// Ids of the named circles that exist.
    pub fn circle_ids(&self, names: &[String]) -> Vec<i64> {
        names
            .iter()
            .filter_map(|n| self.circle_ids.get(n).copied())
            .collect()
    }

    /// The JSON object shown under `tidings.actor` for a user's activities.
    pub fn actor_json(&self, id: i64) -> Option<Arc<str>> {
        self.users
            .get(id)
            .and_then(Option::as_ref)
            .map(UserFacts::json)
    }

    fn count_reaction(&mut self, verb: u32, target: i64, up: bool) {
        let like = self.verb_ids.get("Like") == Some(&verb);
        let share = self.verb_ids.get("Announce") == Some(&verb);
        if !like && !share {
            return;
        }
        let counts = self.reactions.entry(target).or_default();
        let slot = if like { &mut counts.0 } else { &mut counts.1 };
        *slot = if up {
            slot.saturating_add(1)
        } else {
            slot.saturating_sub(1)
        };
    }

    /// Live likes and shares of an activity.
    pub fn reactions(&self, seq: i64) -> (u32, u32) {
        self.reactions.get(&seq).copied().unwrap_or((0, 0))
    }

    /// The users `user` follows, with their follow edges, by producer.
    pub fn follows_of(&self, user: i64) -> &[Follow] {
        self.follows.get(user).map_or(&[], Few::as_slice)
    }

    /// From which seq a producer is merged at read time, if it is.
    pub fn producer_merged_from(&self, producer: i64) -> Option<i64> {
        self.producer_merged_from.get(&producer).copied()
    }

    /// The floor a new follow of `producer` gets: just below the `copy_limit`-th newest live
    /// follower-visible activity, so a new follower is shown that many (0 when there are fewer).
    pub fn follow_floor(&self, producer: i64, copy_limit: usize) -> i64 {
        let Some(outbox) = self.outboxes.get(producer).map(Few::as_slice) else {
            return 0;
        };
        if copy_limit == 0 {
            return outbox.last().copied().unwrap_or(0);
        }
        let mut visible = outbox.iter().rev().filter(|&&seq| {
            self.meta(seq)
                .is_some_and(|m| m.listed() && !m.retracted() && m.to_followers())
        });
        // Everything after the (copy_limit + 1)-th newest visible item is shown.
        visible.nth(copy_limit).copied().unwrap_or(0)
    }

    /// The producer's live follower-visible seqs in `(floor, upto]` (a new follow's backfill).
    pub fn follower_visible(&self, producer: i64, floor: i64, upto: i64) -> Vec<i64> {
        let Some(outbox) = self.outboxes.get(producer).map(Few::as_slice) else {
            return Vec::new();
        };
        window(outbox, |&s| s, floor, upto, Direction::Newer)
            .filter(|&&seq| {
                self.meta(seq)
                    .is_some_and(|m| m.listed() && !m.retracted() && m.to_followers())
            })
            .copied()
            .collect()
    }

    /// A user's seen/read markers for a feed.
    pub fn marker(&self, user: i64, feed: &str) -> (i64, i64) {
        self.markers
            .get(&user)
            .and_then(|m| m.get(feed))
            .copied()
            .unwrap_or((0, 0))
    }

    /// A user's live notifications with one of `reasons` (and by one of `actors`, sorted,
    /// when given), up to `watermark`, newest first, at most `max` (a notification feed's
    /// `max_cache`).
    pub fn notifications(
        &self,
        user: i64,
        watermark: i64,
        reasons: &[u8],
        actors: Option<&[i64]>,
        max: usize,
    ) -> Vec<(i64, u8)> {
        let Some(list) = self.notifications.get(&user) else {
            return Vec::new();
        };
        let hidden = self.hidden.get(&user);
        let silenced = self.silenced.get(&user);
        window(list, |n| n.0, 0, watermark, Direction::Older)
            .filter(|(seq, reason)| {
                reasons.contains(reason)
                    && hidden.is_none_or(|h| !h.contains(seq))
                    && self.meta(*seq).is_some_and(|m| {
                        // A like of a retracted activity goes with it.
                        !m.retracted()
                            && silenced.is_none_or(|s| !s.contains(&m.actor))
                            && actors.is_none_or(|a| a.binary_search(&m.actor).is_ok())
                            && m.target()
                                .and_then(|t| self.meta(t))
                                .is_none_or(|t| !t.retracted())
                    })
            })
            .take(max)
            .copied()
            .collect()
    }

    /// Live replies of an activity.
    pub fn reply_count(&self, seq: i64) -> u32 {
        self.replies.get(&seq).copied().unwrap_or(0)
    }

    /// Whether an Update superseded the activity's object.
    pub fn is_edited(&self, seq: i64) -> bool {
        self.edited.contains(&seq)
    }

    /// The author of an activity.
    pub fn author_of(&self, seq: i64) -> Option<i64> {
        self.meta(seq).map(|m| m.actor)
    }

    /// Which of the `connected` users may see something new among the seqs `(after, upto]`
    /// beyond the entries the router wrote: the authors (their own posts) and the holders of
    /// read-time windows on them. A superset is fine (each woken reader re-reads from its
    /// cursor); each set is walked from whichever side is smaller.
    pub fn wake_set(&self, after: i64, upto: i64, connected: &HashSet<i64>) -> HashSet<i64> {
        let mut woken = HashSet::new();
        if connected.is_empty() {
            return woken;
        }
        let wake_holders = |key: WindowKey, woken: &mut HashSet<i64>| {
            let Some(users) = self.holders.get(&key) else {
                return;
            };
            if users.len() <= connected.len() {
                woken.extend(users.keys().filter(|u| connected.contains(u)));
            } else {
                woken.extend(connected.iter().filter(|u| users.contains_key(u)));
            }
        };
        for seq in after.saturating_add(1)..=upto {
            let Some(meta) = self.meta(seq) else {
                continue;
            };
            if !meta.listed() {
                continue;
            }
            if connected.contains(&meta.actor) {
                woken.insert(meta.actor);
            }
            if meta.to_followers()
                && self
                    .producer_merged_from
                    .get(&meta.actor)
                    .is_some_and(|&from| seq >= from)
            {
                let producer = meta.actor;
                woken.extend(connected.iter().filter(|&&user| {
                    self.follows_of(user)
                        .binary_search_by_key(&producer, |f| f.producer)
                        .is_ok()
                }));
            }
            for &circle in meta.circles().iter() {
                if self
                    .merged_from
                    .get(&circle)
                    .is_some_and(|&from| seq >= from)
                {
                    wake_holders(WindowKey::Circle(circle), &mut woken);
                }
            }
            if !meta.circles().is_empty() {
                wake_holders(WindowKey::AnyCircle(None), &mut woken);
                for &tag in meta.tags().iter() {
                    wake_holders(WindowKey::AnyCircle(Some(tag)), &mut woken);
                }
            }
        }
        woken
    }

    /// Reads one page of `user`'s inbox up to the routed `watermark`: rows in walk order
    /// (newest first, or oldest first for `After`), at most `limit + 1`.
    #[allow(clippy::too_many_arguments)]
    pub fn inbox(
        &self,
        user: i64,
        watermark: i64,
        filter: &InboxFilter,
        circle_ids: &[i64],
        feed: &FeedFilter,
        from: PageFrom,
        limit: usize,
    ) -> Vec<Row> {
        let tag_filter: Option<Vec<u32>> = (!filter.tags.is_empty()).then(|| {
            filter
                .tags
                .iter()
                .filter_map(|t| self.tag_ids.get(t).copied())
                .collect()
        });
        if tag_filter.as_ref().is_some_and(Vec::is_empty)
            || (!filter.circles.is_empty() && circle_ids.is_empty())
        {
            // Filtering on tags or circles nothing carries: nothing can match.
            return Vec::new();
        }
        let verbs: Option<Vec<u32>> = feed.verbs.as_ref().map(|names| self.verb_filter(names));
        if verbs.as_ref().is_some_and(Vec::is_empty) {
            // No activity of those types exists yet.
            return Vec::new();
        }
        let exclude_own = feed.exclude_own;
        let actors = feed.actors.as_deref();
        let hidden = self.hidden.get(&user);
        let silenced = self.silenced.get(&user);
        let direct_only = filter.kind.as_deref() == Some("direct");
        let want_major = match filter.kind.as_deref() {
            Some("major") => Some(true),
            Some("minor") => Some(false),
            _ => None,
        };
        let passes = |seq: i64| -> bool {
            let Some(meta) = self.meta(seq) else {
                return false;
            };
            meta.listed()
                && !meta.retracted()
                && !(exclude_own && meta.actor == user)
                && actors.is_none_or(|a| a.binary_search(&meta.actor).is_ok())
                && verbs.as_ref().is_none_or(|v| v.contains(&meta.verb))
                && hidden.is_none_or(|h| !h.contains(&seq))
                && silenced.is_none_or(|s| !s.contains(&meta.actor))
                && want_major.is_none_or(|m| m == meta.major())
                && (circle_ids.is_empty() || meta.circles().iter().any(|c| circle_ids.contains(c)))
                && tag_filter
                    .as_ref()
                    .is_none_or(|tags| meta.tags().iter().any(|t| tags.contains(t)))
        };
        let (low, high) = match from {
            PageFrom::Newest => (0, watermark),
            PageFrom::Before(s) => (0, (s - 1).min(watermark)),
            PageFrom::After(s) => (s, watermark),
        };
        let take = limit + 1;
        let direction = match from {
            PageFrom::After(_) => Direction::Newer,
            _ => Direction::Older,
        };
        // Each source is a lazy, filtered walk: the merge pulls only what the page needs.
        type Source<'a> = Box<dyn Iterator<Item = (i64, Arc<str>)> + 'a>;
        let mut sources: Vec<Source<'_>> = Vec::new();

        // The user's own posts (never written as entries).
        if !direct_only
            && !exclude_own
            && let Some(list) = self.outboxes.get(user).map(Few::as_slice)
        {
            let passes = &passes;
            let author: Arc<str> = Arc::from("author");
            sources.push(Box::new(
                window(list, |&s| s, low, high, direction)
                    .filter(move |&&seq| passes(seq))
                    .map(move |&seq| (seq, author.clone())),
            ));
        }
        // Entries the router wrote.
        if let Some(list) = self.written.get(&user) {
            let passes = &passes;
            sources.push(Box::new(
                window(list, |e| e.0, low, high, direction)
                    .filter(move |e| {
                        passes(e.0)
                            && (!direct_only || &*e.1 == "addressed")
                            // Written for a circle subscription: only while the circle is
                            // still readable (a member removed from a private circle loses
                            // its posts, as every other route says).
                            && (!e.1.starts_with("subscription:")
                                || self
                                    .meta(e.0)
                                    .is_some_and(|m| m.public() || self.reads_any_circle(user, m)))
                    })
                    .map(|e| (e.0, e.1.clone())),
            ));
        }
        // Read-time sources, one per subscription window: circles merged at read time, and
        // every `tag@*` (its audience is per tag, so it is never fanned out).
        if !direct_only && let Some(windows) = self.windows.get(&user) {
            for w in windows {
                let (stream, floor): (&[i64], i64) = match w.circle {
                    Some(circle) => {
                        let Some(&merged_from) = self.merged_from.get(&circle) else {
                            continue;
                        };
                        let circle_stream = self.circle_streams.get(&circle);
                        let tag_stream = w.tag.and_then(|t| self.tag_streams.get(&t));
                        // Walk the shorter of the circle's and the tag's streams.
                        let stream = match (circle_stream, tag_stream) {
                            (Some(c), Some(t)) if t.len() < c.len() => t.as_slice(),
                            (Some(c), _) => c.as_slice(),
                            (None, _) => continue,
                        };
                        (stream, merged_from - 1)
                    }
                    None => {
                        let stream = match w.tag {
                            Some(tag) => match self.tag_streams.get(&tag) {
                                Some(s) => s.as_slice(),
                                None => continue,
                            },
                            None => self.circled.as_slice(),
                        };
                        (stream, 0)
                    }
                };
                let lo = low.max(w.since).max(floor);
                let hi = high.min(w.until.unwrap_or(i64::MAX));
                if lo >= hi {
                    continue;
                }
                let passes = &passes;
                sources.push(Box::new(
                    window(stream, |&s| s, lo, hi, direction)
                        .filter(move |&&seq| {
                            let Some(meta) = self.meta(seq) else {
                                return false;
                            };
                            passes(seq)
                                && w.tag.is_none_or(|tag| meta.tags().contains(&tag))
                                && match w.circle {
                                    Some(circle) => {
                                        meta.circles().contains(&circle)
                                            && (meta.public() || self.reads_circle(user, circle))
                                    }
                                    None => self.reads_any_circle(user, meta),
                                }
                        })
                        .map(|&seq| (seq, w.via.clone())),
                ));
            }
        }
        // Followed producers merged at read time: their outbox after the follow's floor.
        if !direct_only {
            for edge in self.follows_of(user) {
                let Some(&merged_from) = self.producer_merged_from.get(&edge.producer) else {
                    continue;
                };
                let Some(outbox) = self.outboxes.get(edge.producer).map(Few::as_slice) else {
                    continue;
                };
                let Some(via) = self.follow_vias.get(&edge.producer) else {
                    continue;
                };
                let lo = low.max(edge.floor).max(merged_from - 1);
                if lo >= high {
                    continue;
                }
                let passes = &passes;
                sources.push(Box::new(
                    window(outbox, |&s| s, lo, high, direction)
                        .filter(move |&&seq| {
                            passes(seq) && self.meta(seq).is_some_and(|m| m.to_followers())
                        })
                        .map(|&seq| (seq, via.clone())),
                ));
            }
        }
        // Several sources may carry one item: show the reason the router would have written.
        merge_iters_by(sources, direction, take, |new, kept| {
            via_rank(new) < via_rank(kept)
        })
        .into_iter()
        .map(|(seq, via)| (seq, Some(via.to_string())))
        .collect()
    }
}

/// Adds `(seq, value)` to a seq-sorted list: appended in the usual case (effects arrive in seq
/// order), inserted in place when re-applied or backfilled, never twice for one seq.
fn insert_by_seq<T>(list: &mut Vec<(i64, T)>, seq: i64, value: T) {
    match list.last() {
        Some(&(last, _)) if last >= seq => {
            if let Err(pos) = list.binary_search_by_key(&seq, |e| e.0) {
                list.insert(pos, (seq, value));
            }
        }
        _ => list.push((seq, value)),
    }
}

/// How many leading elements of an ascending slice have a key `<= x`, searched by galloping
/// back from the end: pages almost always start near the newest items, so this touches a few
/// cache lines instead of a whole binary search over a million-entry stream.
fn count_le_from_end<T>(list: &[T], key: impl Fn(&T) -> i64, x: i64) -> usize {
    // Invariant: every element of list[hi..] has a key > x.
    let mut hi = list.len();
    let mut step = 1;
    while hi > 0 {
        let probe = hi.saturating_sub(step);
        match list.get(probe) {
            Some(e) if key(e) <= x => {
                let rest = list.get(probe + 1..hi).unwrap_or(&[]);
                return probe + 1 + rest.partition_point(|e| key(e) <= x);
            }
            _ => {}
        }
        hi = probe;
        step *= 2;
    }
    0
}

/// The part of a seq-sorted slice within `(low, high]`, walked lazily in `direction`.
fn window<T>(
    list: &[T],
    key: impl Fn(&T) -> i64 + Copy + 'static,
    low: i64,
    high: i64,
    direction: Direction,
) -> Box<dyn Iterator<Item = &T> + '_> {
    match direction {
        Direction::Older => {
            let end = count_le_from_end(list, key, high);
            let slice = list.get(..end).unwrap_or(&[]);
            Box::new(slice.iter().rev().take_while(move |e| key(e) > low))
        }
        Direction::Newer => {
            let start = count_le_from_end(list, key, low);
            let slice = list.get(start..).unwrap_or(&[]);
            Box::new(slice.iter().take_while(move |e| key(e) <= high))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn activity(seq: i64, circles: &[i64], tags: &[&str]) -> Effect {
        Effect::Activity {
            seq,
            meta: Meta {
                actor: 1,
                major: true,
                listed: true,
                circles: circles.into(),
                ..Meta::default()
            },
            tags: tags.iter().map(|t| t.to_string()).collect(),
            verb: "Create".into(),
            body: None,
        }
    }

    #[test]
    fn merged_windows_and_written_entries_read_together() {
        let mut index = HotIndex::default();
        // Circle 7 is private and user 2 a member: its posts are theirs to read.
        index.apply(Effect::Member {
            user: 2,
            circle: 7,
            active: true,
        });
        index.apply(Effect::Merged {
            circle: 7,
            from_seq: 1,
        });
        index.apply(Effect::Subscribe {
            user: 2,
            id: 5,
            circle: Some(7),
            tag: Some("release".into()),
            since: 1,
            via: "subscription:5:release@eng".into(),
        });
        for seq in 1..=6 {
            index.apply(activity(
                seq,
                &[7],
                if seq % 2 == 0 { &["release"] } else { &[] },
            ));
        }
        index.apply(Effect::Entries(vec![(2, 3, Arc::from("addressed"))]));
        let rows = index.inbox(
            2,
            6,
            &InboxFilter::default(),
            &[],
            &FeedFilter::default(),
            PageFrom::Newest,
            10,
        );
        let seqs: Vec<i64> = rows.iter().map(|r| r.0).collect();
        // seq 2 is before the window (since = 1 means seq > 1 … but 2 > 1): included.
        assert_eq!(seqs, vec![6, 4, 3, 2]);
        assert_eq!(rows[2].1.as_deref(), Some("addressed"));
        // The watermark hides what is not routed yet.
        let rows = index.inbox(
            2,
            4,
            &InboxFilter::default(),
            &[],
            &FeedFilter::default(),
            PageFrom::Newest,
            10,
        );
        assert_eq!(rows.iter().map(|r| r.0).collect::<Vec<_>>(), vec![4, 3, 2]);
        // Closing the window stops later items; hides and retractions drop items.
        index.apply(Effect::Close {
            user: 2,
            id: Some(5),
            circle: None,
            until: 4,
        });
        index.apply(Effect::Hide { user: 2, seq: 3 });
        index.apply(Effect::Retract {
            seq: 2,
            notified: Vec::new(),
        });
        let rows = index.inbox(
            2,
            6,
            &InboxFilter::default(),
            &[],
            &FeedFilter::default(),
            PageFrom::Newest,
            10,
        );
        assert_eq!(rows.iter().map(|r| r.0).collect::<Vec<_>>(), vec![4]);
    }

    #[test]
    fn actor_json_is_unchanged_by_packing() {
        for (name, shown, deleted) in [("ann", "Ann \"A\" ü", false), ("bob", "Bob", true)] {
            let before = serde_json::json!({
                "username": name,
                "display_name": if deleted { "(deleted)" } else { shown },
                "deleted": deleted,
            })
            .to_string();
            let info = ActorInfo::new(name.into(), shown.into(), deleted);
            assert_eq!(&*info.json, before);
            let facts = UserFacts::from_info(&info);
            assert_ne!(facts.split, VERBATIM);
            assert_eq!(&*facts.json(), before);
            assert_eq!(&*UserFacts::new(name, shown, deleted).json(), before);
        }
        let odd = ActorInfo {
            deleted: false,
            json: Arc::from(r#"{"username":"x"}"#),
        };
        assert_eq!(&*UserFacts::from_info(&odd).json(), r#"{"username":"x"}"#);
    }

    #[test]
    fn per_user_slots_stay_small() {
        assert_eq!(std::mem::size_of::<Option<UserFacts>>(), 24);
        assert_eq!(std::mem::size_of::<Fact>(), 56);
        assert_eq!(std::mem::size_of::<Few<i64>>(), 24);
    }

    #[test]
    fn id_map_keeps_far_ids_aside() {
        let mut map: IdMap<Option<i64>> = IdMap::default();
        *map.entry(3) = Some(3);
        *map.entry(1 << 40) = Some(40);
        *map.entry(-1) = Some(-1);
        assert_eq!(map.dense.len(), 4);
        assert_eq!(map.get(3), Some(&Some(3)));
        assert_eq!(map.get(1 << 40), Some(&Some(40)));
        assert_eq!(map.get(-1), Some(&Some(-1)));
        assert_eq!(map.get(7), None);
        // A sparse id the dense range grows over moves into it.
        *map.entry(100_000) = Some(5);
        assert!(map.sparse.contains_key(&100_000));
        *map.entry(60_000) = Some(6);
        *map.entry(110_000) = Some(7);
        assert_eq!(map.dense.len(), 110_001);
        assert_eq!(map.get(100_000), Some(&Some(5)));
        assert!(!map.sparse.contains_key(&100_000));
    }

    #[test]
    fn follows_and_unfollows_keep_edges_sorted() {
        let mut index = HotIndex::default();
        for producer in [9, 4, 6, 4] {
            index.apply(Effect::Follow {
                follower: 1,
                edge: FollowEdge {
                    producer,
                    floor: producer * 10,
                    via: Arc::from(format!("follow:p{producer}")),
                },
            });
        }
        let edges = |index: &HotIndex| -> Vec<(i64, i64)> {
            index
                .follows_of(1)
                .iter()
                .map(|f| (f.producer, f.floor))
                .collect()
        };
        assert_eq!(edges(&index), vec![(4, 40), (6, 60), (9, 90)]);
        index.apply(Effect::Entries(vec![
            (1, 5, Arc::from("follow:p6")),
            (1, 7, Arc::from("follow:p9")),
        ]));
        index.apply(Effect::Unfollow {
            follower: 1,
            producer: 6,
        });
        index.apply(Effect::Unfollow {
            follower: 1,
            producer: 4,
        });
        assert_eq!(edges(&index), vec![(9, 90)]);
        assert_eq!(index.written.get(&1).map(Vec::len), Some(1));
        index.apply(Effect::Unfollow {
            follower: 1,
            producer: 9,
        });
        assert!(index.follows_of(1).is_empty());
    }

    #[test]
    fn galloping_search_matches_partition_point() {
        let list: Vec<i64> = (0..300).map(|i| i * 3 + 1).collect();
        for x in -2..905 {
            assert_eq!(
                count_le_from_end(&list, |&v| v, x),
                list.partition_point(|&v| v <= x),
                "x = {x}"
            );
        }
        assert_eq!(count_le_from_end(&[] as &[i64], |&v| v, 5), 0);
    }

    #[test]
    fn cursors_walk_both_ways() {
        let mut index = HotIndex::default();
        let entries = (1..=9).map(|s| (1, s, Arc::from("author"))).collect();
        for seq in 1..=9 {
            index.apply(activity(seq, &[], &[]));
        }
        index.apply(Effect::Entries(entries));
        let f = InboxFilter::default();
        let page = index.inbox(
            1,
            9,
            &f,
            &[],
            &FeedFilter::default(),
            PageFrom::Before(5),
            2,
        );
        assert_eq!(page.iter().map(|r| r.0).collect::<Vec<_>>(), vec![4, 3, 2]);
        let page = index.inbox(1, 9, &f, &[], &FeedFilter::default(), PageFrom::After(5), 2);
        assert_eq!(page.iter().map(|r| r.0).collect::<Vec<_>>(), vec![6, 7, 8]);
    }
}
