//! Records the store returns, shared by every adapter.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tidings_core::activity::Draft;
use utoipa::ToSchema;

/// Account state of a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum UserStatus {
    /// Can log in, publish and read.
    Active,
    /// Blocked by an admin; can do nothing until unsuspended.
    Suspended,
    /// Removed; its past activities stay in the log.
    Deleted,
}

impl UserStatus {
    /// Parses the stored text form.
    pub fn from_db(s: &str) -> UserStatus {
        match s {
            "suspended" => UserStatus::Suspended,
            "deleted" => UserStatus::Deleted,
            _ => UserStatus::Active,
        }
    }
    /// Stored text form.
    pub fn as_str(self) -> &'static str {
        match self {
            UserStatus::Active => "active",
            UserStatus::Suspended => "suspended",
            UserStatus::Deleted => "deleted",
        }
    }
}

/// A user account as shown through the API.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct User {
    /// Internal id.
    #[serde(skip)]
    pub id: i64,
    /// Unique slug, also the actor id `user:NAME`.
    pub username: String,
    /// Name shown in the UI.
    pub display_name: String,
    /// Whether the user administers this instance.
    pub is_admin: bool,
    /// Account state.
    pub status: UserStatus,
    /// When the account was created.
    pub created_at: String,
}

/// How long a session lives without being used, unless the server is configured otherwise.
pub const DEFAULT_SESSION_TTL: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);

/// What a new session records: the hash of its token and the device that opened it.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// The stored form of the bearer token.
    pub token_hash: String,
    /// How long it lives without being used.
    pub ttl: std::time::Duration,
    /// The `User-Agent` that signed in, so its owner recognises the device.
    pub user_agent: Option<String>,
    /// The address that signed in.
    pub ip: Option<String>,
}

impl NewSession {
    /// A session with the default lifetime and no device details (command-line tokens).
    pub fn plain(token_hash: String) -> NewSession {
        NewSession {
            token_hash,
            ttl: DEFAULT_SESSION_TTL,
            user_agent: None,
            ip: None,
        }
    }
}

/// One signed-in device as its owner sees it: never the token.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SessionInfo {
    /// Public id: what `DELETE /api/v1/me/sessions/{id}` takes.
    pub id: String,
    /// When it signed in.
    pub created_at: String,
    /// When it was last seen (refreshed at most every few minutes).
    pub last_used_at: String,
    /// When it stops working unless used again before.
    pub expires_at: String,
    /// The `User-Agent` that signed in, if it sent one.
    pub user_agent: Option<String>,
    /// The address that signed in, if known.
    pub ip: Option<String>,
    /// Whether this is the session making the request.
    pub current: bool,
}

/// A live session behind a token, as authentication needs it.
#[derive(Debug, Clone)]
pub struct LiveSession {
    /// Whose it is.
    pub user: User,
    /// Its public id.
    pub id: String,
    /// When it was last refreshed, in unix milliseconds.
    pub last_used_ms: i64,
    /// When it expires, in unix milliseconds.
    pub expires_ms: i64,
}

/// What a token turned out to be.
#[derive(Debug, Clone)]
pub enum SessionLookup {
    /// A live session.
    Live(LiveSession),
    /// A session that was not used within its lifetime.
    Expired,
    /// No such token, or revoked.
    Unknown,
}

/// Who can see a circle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    /// Anyone can find and read it.
    Public,
    /// Only members can see it exists.
    Private,
}

/// How people get into a circle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JoinPolicy {
    /// Anyone may join.
    Open,
    /// Joining creates a request a moderator approves.
    Approval,
    /// Only owners and moderators add members.
    Invite,
}

/// A member's role in a circle.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Ordinary member.
    Member,
    /// Manages members and requests.
    Moderator,
    /// Created the circle; can do everything.
    Owner,
}

/// Membership state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MembershipState {
    /// A full member.
    Active,
    /// Asked to join an approval circle; waits for a moderator.
    Requested,
}

/// A circle as shown through the API.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Circle {
    /// Internal id.
    #[serde(skip)]
    pub id: i64,
    /// Unique slug, also the address `circle:NAME`.
    pub name: String,
    /// Name shown in the UI.
    pub display_name: String,
    /// What the circle is for.
    pub description: String,
    /// Who can see it.
    pub visibility: Visibility,
    /// How people join.
    pub join_policy: JoinPolicy,
    /// Username of the owner.
    pub owner: String,
    /// Active members.
    pub member_count: i64,
    /// When it was created.
    pub created_at: String,
    /// When it was archived (read-only since).
    pub archived_at: Option<String>,
    /// The caller's membership, if any.
    pub my_membership: Option<Membership>,
}

/// One enrolment.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Membership {
    /// The circle.
    pub circle: String,
    /// The member.
    pub username: String,
    /// Role in the circle.
    pub role: Role,
    /// Active member or pending request.
    pub state: MembershipState,
    /// Since when.
    pub since: String,
}

/// A `tag@circle` subscription.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Subscription {
    /// Id used to remove it.
    pub id: i64,
    /// Canonical expression.
    pub expr: String,
    /// When it was made.
    pub created_at: String,
}

/// A stored activity with the derived state readers need.
#[derive(Debug, Clone)]
pub struct StoredActivity {
    /// Position in the global log.
    pub seq: i64,
    /// Public id.
    pub id: String,
    /// Author's user id.
    pub actor_id: i64,
    /// The canonical stored JSON (immutable).
    pub body: String,
}

/// A retraction tombstone's facts.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Tombstone {
    /// Id of the retracted activity.
    pub id: String,
    /// Always "Tombstone".
    #[serde(rename = "type")]
    pub kind: String,
    /// Type the activity had.
    #[serde(rename = "formerType")]
    pub former_type: String,
    /// When the Delete was published.
    pub deleted: String,
    /// Id of the Delete activity.
    #[serde(rename = "deletedBy")]
    pub deleted_by: String,
}

/// An inbox entry before hydration: which activity and why it is there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryRef {
    /// The activity's seq, also the cursor position.
    pub seq: i64,
    /// Why it is in the inbox.
    pub via: String,
}

/// Filters of an inbox read.
#[derive(Debug, Clone, Default)]
pub struct InboxFilter {
    /// Only activities addressed to one of these circles.
    pub circles: Vec<String>,
    /// Only activities carrying one of these tags.
    pub tags: Vec<String>,
    /// major | minor | direct.
    pub kind: Option<String>,
}

/// Which way a page walks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageFrom {
    /// The newest items.
    Newest,
    /// Items older than this seq.
    Before(i64),
    /// Items newer than this seq.
    After(i64),
}

/// A page of activities with derived presentation state, newest first.
#[derive(Debug, Clone)]
pub struct Page {
    /// Items, newest first.
    pub items: Vec<PageItem>,
    /// Whether older items exist beyond the last one.
    pub has_older: bool,
}

/// One item of a page.
#[derive(Debug, Clone)]
pub struct PageItem {
    /// Cursor position.
    pub seq: i64,
    /// Why it is there (inbox only).
    pub via: Option<String>,
    /// The activity as the reader should see it, as JSON text (served without re-encoding).
    pub activity: String,
}

/// A registered custom type.
#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema)]
pub struct CustomType {
    /// Type name, e.g. `Poll`: CamelCase letters and digits, 1–64 characters.
    #[schema(pattern = "^[A-Z][A-Za-z0-9]{0,63}$")]
    pub name: String,
    /// `activity` or `object`.
    #[schema(pattern = "^(activity|object)$")]
    pub kind: String,
    /// JSON Schema its payload must satisfy (an object, or `true` / `false`).
    #[schema(schema_with = json_schema_document)]
    pub schema: Value,
    /// Default actions added to objects of this type: `{name, url, method}` each.
    #[serde(default)]
    #[schema(value_type = Option<Vec<ActionSpec>>)]
    pub actions: Value,
}

/// What a JSON Schema document is: an object or a boolean.
fn json_schema_document() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Object, Type::Boolean]))
        .build()
}

/// A default action of a custom type (documents the shape [`CustomType::actions`] takes).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ActionSpec {
    /// Lowercase slug.
    #[schema(pattern = "^[a-z0-9][a-z0-9_-]{0,62}$")]
    pub name: String,
    /// Absolute http(s) URL.
    #[schema(pattern = "^https?://[^/?#\\s]+[^\\s]*$")]
    pub url: String,
    /// HTTP method, any case (default GET).
    #[schema(
        pattern = "^([Gg][Ee][Tt]|[Pp][Oo][Ss][Tt]|[Pp][Uu][Tt]|[Pp][Aa][Tt][Cc][Hh]|[Dd][Ee][Ll][Ee][Tt][Ee])$"
    )]
    pub method: Option<String>,
}

/// Routing progress, one per routing slice: the seqs `(after, upto]` became readable, and
/// `users` got entries written by the router.
#[derive(Debug, Clone)]
pub struct RoutedNotice {
    /// Watermark before the slice.
    pub after: i64,
    /// Watermark after it.
    pub upto: i64,
    /// Users with new written entries, sorted, unique.
    pub users: Vec<i64>,
}

/// Unseen and unread counts of a feed for one reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedCounts {
    /// Items (groups, for an aggregated feed) newer than the seen marker.
    pub unseen: usize,
    /// Items (groups) newer than the read marker.
    pub unread: usize,
    /// The seen marker's seq (0: nothing seen).
    pub seen_cursor: i64,
    /// The read marker's seq.
    pub read_cursor: i64,
}

/// One group of an aggregated feed page.
#[derive(Debug, Clone)]
pub struct FeedGroup {
    /// Stable identity of the group (verb, object, actor, time bucket).
    pub id: String,
    /// Its newest member: its cursor and sort position.
    pub newest_seq: i64,
    /// The members' activity type.
    pub verb: String,
    /// Members in the group.
    pub activity_count: usize,
    /// Distinct actors in the group.
    pub actor_count: usize,
    /// The most recent actors, as JSON objects (`username`, `display_name`, `deleted`).
    pub actors: Vec<std::sync::Arc<str>>,
    /// The newest few members, rendered.
    pub activities: Vec<PageItem>,
}

/// A page of groups, newest first.
#[derive(Debug, Clone)]
pub struct GroupPage {
    /// Groups, newest first.
    pub groups: Vec<FeedGroup>,
    /// Whether older groups exist.
    pub has_older: bool,
}

/// The result of a publish.
#[derive(Debug, Clone)]
pub struct Published {
    /// Log position.
    pub seq: i64,
    /// Public id.
    pub id: String,
    /// The activity as stored and rendered for its author (JSON text).
    pub activity: String,
    /// True when an earlier publish with the same idempotency key was returned instead.
    pub replayed: bool,
}

/// Input of a publish that the edge has validated.
#[derive(Debug, Clone)]
pub struct PublishInput {
    /// The author.
    pub actor: User,
    /// The normalised activity.
    pub draft: Draft,
    /// `Idempotency-Key` header, if any.
    pub idempotency_key: Option<String>,
}

/// What a new circle looks like.
#[derive(Debug, Clone)]
pub struct NewCircle {
    /// Slug.
    pub name: String,
    /// Shown name.
    pub display_name: String,
    /// What it is for.
    pub description: String,
    /// Who can see it.
    pub visibility: Visibility,
    /// How people join.
    pub join_policy: JoinPolicy,
}

/// The outcome of a PUT on a membership.
#[derive(Debug, Clone)]
pub struct MembershipChange {
    /// The membership as it is now.
    pub membership: Membership,
    /// Whether it did not exist before.
    pub created: bool,
}

/// A user found by an activity-feed-system app key.
#[derive(Debug, Clone)]
pub struct AppKeyUser {
    /// The user.
    pub user: User,
    /// When the key was set (RFC 3339).
    pub key_created_at: String,
    /// When the key last changed (RFC 3339).
    pub key_updated_at: String,
}

/// One stored activity record with where it sits in the log.
#[derive(Debug, Clone)]
pub struct LogRecord {
    /// Log position.
    pub seq: i64,
    /// Activity id.
    pub id: String,
    /// Author's username.
    pub actor: String,
    /// The immutable record (canonical JSON).
    pub body: String,
}

/// One entry of a followers or following list.
#[derive(Debug, Clone)]
pub struct FollowEntry {
    /// The other user.
    pub user: User,
    /// Seq of the Follow activity (the list's cursor).
    pub follow_seq: i64,
    /// When the follow was made.
    pub since: String,
}

/// What a verification pass found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    /// Activities checked.
    pub activities: u64,
    /// Streams walked.
    pub streams: u64,
    /// Stream links checked.
    pub links: u64,
    /// Every mismatch, human-readable.
    pub problems: Vec<String>,
}

impl VerifyReport {
    /// True when nothing was wrong.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// How search results are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SearchSort {
    /// Newest first (the default).
    #[default]
    Newest,
    /// Best match first, among the newest matches (see [`SEARCH_CANDIDATES`]).
    Best,
}

/// How many of the newest matches a best-match search ranks: ranking costs grow with the
/// matches, so a word found in almost every post still answers fast.
pub const SEARCH_CANDIDATES: i64 = 1000;

/// An activity search: the parsed query with every filter folded in.
#[derive(Debug, Clone)]
pub struct ActivitySearch {
    /// Words, phrases, exclusions, and the `from:`/`in:`/`tag:` filters.
    pub query: tidings_core::search::Query,
    /// Object types the result must have (any of them; empty: all).
    pub object_types: Vec<String>,
    /// Published at or after this RFC 3339 UTC time (as the store writes times).
    pub since: Option<String>,
    /// Published before this RFC 3339 UTC time.
    pub until: Option<String>,
    /// Order.
    pub sort: SearchSort,
    /// Cursor position of the page (None: the first page).
    pub after: Option<i64>,
    /// Page size.
    pub limit: usize,
}

/// One activity found, with its highlighted text.
#[derive(Debug, Clone)]
pub struct ActivityHit {
    /// Its seq.
    pub seq: i64,
    /// Cursor position of this hit (pass as `before` to continue after it).
    pub position: i64,
    /// Relevance (higher is better; 0 when sorted by time).
    pub score: f64,
    /// The activity's rendered JSON text.
    pub activity: String,
    /// The object's `name`, escaped, matched words marked (empty when it has none).
    pub title: String,
    /// A piece of its text around the first match, escaped, matched words marked.
    pub snippet: String,
}

/// A circle found, with its highlighted names.
#[derive(Debug, Clone)]
pub struct CircleHit {
    /// Cursor position of this hit.
    pub position: i64,
    /// The circle.
    pub circle: Circle,
    /// Its display name, escaped, matches marked.
    pub title: String,
    /// Its description around the first match, escaped, matches marked.
    pub snippet: String,
}

/// A person found, with their highlighted names.
#[derive(Debug, Clone)]
pub struct PersonHit {
    /// Cursor position of this hit.
    pub position: i64,
    /// The person.
    pub user: User,
    /// Their display name, escaped, matches marked.
    pub title: String,
    /// Their user name, escaped, matches marked.
    pub snippet: String,
}

/// A page of search results.
#[derive(Debug, Clone)]
pub struct SearchPage<T> {
    /// The hits, in order.
    pub items: Vec<T>,
    /// Cursor position of the next page, when there is one.
    pub next: Option<i64>,
}

/// A registered service of the integration bus: an actor with API keys and scopes.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Service {
    /// Internal id.
    #[serde(skip)]
    pub id: i64,
    /// Unique slug; also the username it publishes as (`user:NAME`).
    pub name: String,
    /// What it is for.
    pub description: String,
    /// What it may do: `publish`, `subscribe`.
    pub scopes: Vec<String>,
    /// The user it acts as.
    #[serde(skip)]
    pub user_id: i64,
    /// When it was registered.
    pub created_at: String,
}

/// One of a service's API keys, as listed (never the key itself).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ServiceKey {
    /// Public id of the key (what revocation names).
    pub id: String,
    /// When it was made.
    pub created_at: String,
    /// When it stops working (set when a newer key replaced it).
    pub expires_at: Option<String>,
    /// When it was revoked.
    pub revoked_at: Option<String>,
}

/// A topic of the integration bus.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Topic {
    /// Internal id.
    #[serde(skip)]
    pub id: i64,
    /// Unique slug; producers address it as `topic:NAME`.
    pub name: String,
    /// The content-routing filter; none: only what is addressed to the topic.
    pub filter: Option<String>,
    /// What it carries.
    pub description: String,
    /// When it was created.
    pub created_at: String,
}

/// A webhook subscription to a topic.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Webhook {
    /// Public id.
    pub id: String,
    /// The topic's name.
    pub topic: String,
    /// The service that owns it (none: an admin's).
    pub owner: Option<String>,
    /// How it receives its topic: `webhook`, `pull`, `stream` or `queue`.
    pub mode: String,
    /// Where deliveries are POSTed (webhook mode; empty for the others).
    pub url: String,
    /// The queue its events become jobs in (queue mode).
    pub queue: Option<String>,
    /// How long a pulled event stays leased to its consumer, in milliseconds (pull mode).
    pub lease_ms: Option<i64>,
    /// Paused by its owner: nothing is sent or leased, what the topic gets is kept for it.
    pub paused: bool,
    /// `active`, or `disabled` (a 410, or too many failures in a row).
    pub status: String,
    /// Why it was disabled.
    pub disabled_reason: Option<String>,
    /// Failed attempts in a row.
    pub failures: i64,
    /// Delivered in log order: the next delivery waits until the previous one succeeded (or
    /// was dead-lettered).
    pub ordered: bool,
    /// When it was made.
    pub created_at: String,
    /// The owning service's internal id.
    #[serde(skip)]
    pub service_id: Option<i64>,
    /// The signing secret (`whsec_…`), shown only when made or rotated.
    #[serde(skip)]
    pub secret: String,
    /// The previous secret while it still signs.
    #[serde(skip)]
    pub old_secret: Option<String>,
    /// Until when (unix ms) the previous secret signs.
    #[serde(skip)]
    pub old_secret_until_ms: Option<i64>,
}

/// What a subscription is made with (beyond its topic, owner and id).
#[derive(Debug, Clone)]
pub struct NewSubscription {
    /// `webhook`, `pull`, `stream` or `queue`.
    pub mode: String,
    /// The webhook URL (webhook mode; empty otherwise).
    pub url: String,
    /// The signing secret (webhook mode; empty otherwise).
    pub secret: String,
    /// The target queue (queue mode).
    pub queue: Option<String>,
    /// The lease of a pulled event, in milliseconds (pull mode).
    pub lease_ms: i64,
    /// Deliver in log order, each after the previous one succeeded (webhook mode).
    pub ordered: bool,
}

/// An event leased to a pull consumer.
#[derive(Debug, Clone)]
pub struct PulledEvent {
    /// The delivery's id: what the consumer acks, the same every time it is leased.
    pub id: String,
    /// The activity's log position.
    pub seq: i64,
    /// How many times it has been leased, this one included.
    pub deliveries: i64,
    /// Until when (unix ms) it is this consumer's.
    pub lease_until_ms: i64,
    /// The stored activity.
    pub body: std::sync::Arc<str>,
}

/// What a pull consumer answered when it acked an event.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BusReply {
    /// The subscription that answered.
    pub subscription: String,
    /// The event's activity id.
    pub activity: String,
    /// Its log position.
    pub position: i64,
    /// The reply, as JSON text.
    pub reply: String,
    /// When it was stored.
    pub at: String,
}

/// What the matcher routes with: every topic and every webhook
/// (`(id, topic id, owed after seq)`), at a generation that changes with any of them.
#[derive(Debug, Clone)]
pub struct BusRouting {
    /// Bumped whenever topics or webhooks change.
    pub generation: i64,
    /// Every topic.
    pub topics: Vec<Topic>,
    /// Webhooks: id, topic id, the seq after which they are owed activities.
    pub webhooks: Vec<(String, i64, i64)>,
}

/// An activity as the bus reads it from the log.
#[derive(Debug, Clone)]
pub struct BusActivity {
    /// Log position.
    pub seq: i64,
    /// The stored record (canonical JSON).
    pub body: std::sync::Arc<str>,
}

/// A delivery leased for sending.
#[derive(Debug, Clone)]
pub struct LeasedDelivery {
    /// The `webhook-id`.
    pub id: String,
    /// The activity's log position.
    pub seq: i64,
    /// Attempts made since it was last (re)queued.
    pub attempts: i64,
    /// Where it goes and how it is signed.
    pub webhook: Webhook,
    /// The stored activity.
    pub body: std::sync::Arc<str>,
}

/// One attempt's result, as logged.
#[derive(Debug, Clone)]
pub struct NewAttempt {
    /// The HTTP status, if a response came.
    pub status: Option<i64>,
    /// How long it took.
    pub latency_ms: i64,
    /// `delivered`, `failed`, `throttled`, `gone`, `refused`, `timeout`, …
    pub outcome: String,
    /// The start of the response body or the error.
    pub excerpt: String,
    /// A 2xx response's body (up to the response cap): recorded as the activity's reply when
    /// it is the first (see [`crate::Store::reply`]).
    pub reply: Option<String>,
}

/// What happens to a delivery after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptNext {
    /// Done.
    Delivered,
    /// Try again at this time (unix ms).
    Retry {
        /// When.
        at_ms: i64,
    },
    /// Out of attempts: into the dead-letter list.
    Dead,
    /// Dead, and the webhook is disabled (a 410).
    Disable {
        /// Why.
        reason: String,
    },
}

/// A logged delivery attempt.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeliveryAttempt {
    /// 1 for the first.
    pub attempt: i64,
    /// When it was made.
    pub at: String,
    /// The HTTP status, if a response came.
    pub status: Option<i64>,
    /// How long it took.
    pub latency_ms: i64,
    /// `delivered`, `failed`, `throttled`, `gone`, `refused`, `timeout`, …
    pub outcome: String,
    /// The start of the response body (or the error).
    pub excerpt: String,
}

/// One activity owed to a webhook, with its attempts.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Delivery {
    /// The `webhook-id` header (the same on every attempt).
    pub id: String,
    /// The activity's log position.
    pub seq: i64,
    /// The activity's id.
    pub activity: String,
    /// `pending`, `delivered` or `dead` (the dead-letter list).
    pub state: String,
    /// Attempts made.
    pub attempts: i64,
    /// When the next attempt is due (unix ms), while pending.
    pub next_attempt_ms: Option<i64>,
    /// When it was owed.
    pub created_at: String,
    /// Every attempt, oldest first.
    pub attempts_log: Vec<DeliveryAttempt>,
}

/// The first reply a consumer gave to an activity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reply {
    /// Who replied: a webhook delivery's id (`msg_…`), or what a pull consumer names.
    pub source: String,
    /// The HTTP status of a webhook's reply.
    pub status: Option<i64>,
    /// The reply's body as received (JSON text, usually).
    pub body: String,
}

/// Where the bus is with one activity, for a sync publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusProgress {
    /// Not matched against topics yet.
    Unmatched,
    /// Matched, and no active subscription is owed it: nobody will reply.
    NoResponder,
    /// Matched; this many active subscriptions are owed it, none has replied yet.
    Waiting(i64),
    /// Replied.
    Replied(Reply),
}

/// A scheduled publish: once (`publish_at`) or on a cron schedule.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Schedule {
    /// Public id (`sch_…`).
    pub id: String,
    /// Unique name (a one-shot `publish_at` is named after its id).
    pub name: String,
    /// Who publishes it (the author of every activity it makes).
    pub actor: String,
    /// The service that owns it (none: an admin's).
    pub owner: Option<String>,
    /// 5 or 6 fields; none for a one-shot.
    pub cron: Option<String>,
    /// The IANA zone the cron expression is read in.
    pub timezone: Option<String>,
    /// The activity published at each fire, as sent.
    #[schema(value_type = Object)]
    pub activity: Value,
    /// `active`, `paused`, or `done` (a one-shot that fired, or a cron that never fires again).
    pub status: String,
    /// The next fire, unix ms (none when paused or done).
    #[serde(skip)]
    pub next_at_ms: Option<i64>,
    /// How many times it fired.
    pub fired: i64,
    /// When it last fired.
    pub last_fired_at: Option<String>,
    /// The id of the activity it last published.
    pub last_activity: Option<String>,
    /// Why its last fire did not publish, if it did not.
    pub last_error: Option<String>,
    /// When it was made.
    pub created_at: String,
    /// The owning service's internal id.
    #[serde(skip)]
    pub service_id: Option<i64>,
    /// The publishing user's internal id.
    #[serde(skip)]
    pub actor_id: i64,
}

/// A schedule to create.
#[derive(Debug, Clone)]
pub struct NewSchedule {
    /// Public id.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// The publishing user.
    pub actor_id: i64,
    /// The owning service, if a service made it.
    pub service_id: Option<i64>,
    /// Cron expression (none: once).
    pub cron: Option<String>,
    /// Its zone.
    pub timezone: Option<String>,
    /// The activity, as JSON text.
    pub activity: String,
    /// The first fire (unix ms); none: a cron that never fires (refused by the caller).
    pub next_at_ms: i64,
}

/// A report as its reporter sees it once filed.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Report {
    /// The id of the Flag activity that records it.
    pub id: String,
    /// The reported activity.
    pub activity: String,
    /// One of the fixed reasons.
    pub reason: String,
    /// The reporter's words (moderators only).
    pub comment: String,
    /// Circles whose moderators received it (empty: only site admins).
    pub circles: Vec<String>,
    /// When it was filed.
    pub created_at: String,
}

/// One report on a queued item, as moderators see it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReportEntry {
    /// The Flag activity's id.
    pub id: String,
    /// Who reported (moderators only: this list is never shown to members).
    pub reporter: String,
    /// One of the fixed reasons.
    pub reason: String,
    /// The reporter's words.
    pub comment: String,
    /// When it was filed.
    pub created_at: String,
    /// dismiss, hide, remove or ban once resolved.
    pub decision: Option<String>,
}

/// What moderators know of a reported item's author in this circle.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuthorHistory {
    /// The author's username.
    pub username: String,
    /// Activities they addressed to the circle.
    pub posts: i64,
    /// Distinct items of theirs reported in the circle.
    pub reported: i64,
    /// Distinct items of theirs taken down in the circle.
    pub taken_down: i64,
    /// Whether a ban holds now.
    pub banned: bool,
}

/// One reported item in a circle's queue.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReportItem {
    /// The reported activity's id.
    pub activity_id: String,
    /// The reported activity as stored (with its derived `tidings` fields).
    #[schema(value_type = Object)]
    pub activity: serde_json::Value,
    /// Whether it has been taken down (by its author or a moderator).
    pub retracted: bool,
    /// open while any report on it is unresolved, else resolved.
    pub state: String,
    /// Its reports, oldest first.
    pub reports: Vec<ReportEntry>,
    /// Its author's record in this circle.
    pub author: AuthorHistory,
}

/// What resolving a reported item did.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Resolution {
    /// The decision activity's id (in the circle's moderation log).
    pub id: String,
    /// dismiss, hide, remove or ban.
    pub decision: String,
    /// The item.
    pub activity: String,
    /// Reports it resolved.
    pub resolved: i64,
    /// A ban's end (absent: for good, or no ban).
    pub until: Option<String>,
}

/// A ban from a circle.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CircleBan {
    /// Who is banned.
    pub username: String,
    /// Until when (absent: for good).
    pub until: Option<String>,
    /// The decision activity that banned them.
    pub by: String,
}

/// One entry of a circle's public moderation log.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ModerationLogEntry {
    /// The activity's id.
    pub id: String,
    /// Position in the circle's moderation stream (1-based).
    pub pos: i64,
    /// report, or the decision: dismiss, hide, remove, ban.
    pub action: String,
    /// Who acted: the moderator; absent for reports unless the reader moderates the circle.
    pub actor: Option<String>,
    /// The item acted on.
    pub object: String,
    /// The report reason or the moderator's reason.
    pub reason: String,
    /// A ban's end.
    pub until: Option<String>,
    /// When.
    pub published: String,
}

/// A user group (decision 0027): a named set of people owned by a person or by a circle.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UserGroup {
    /// Stable id (membership activities name the group by it, so a name used again later is
    /// a different group).
    pub id: String,
    /// Name, a slug, unique per owner.
    pub name: String,
    /// How to address it: `group:NAME` (a person's own) or `group:NAME@CIRCLE`.
    pub address: String,
    /// The owning person's username (None for a circle's group).
    pub owner: Option<String>,
    /// The owning circle's name (None for a person's group).
    pub circle: Option<String>,
    /// Members' usernames, sorted.
    pub members: Vec<String>,
    /// When it was created.
    pub created_at: String,
}

/// What a conversations list shows of one conversation.
#[derive(Debug, Clone)]
pub struct ConversationSummary {
    /// The conversation id (`cv_…`, a digest of the participant set).
    pub id: String,
    /// Usernames of everyone in it (the reader included), sorted.
    pub participants: Vec<String>,
    /// Seq of the newest live message (the list's cursor position).
    pub last_seq: i64,
    /// The newest live message as readers see it (JSON text).
    pub last_message: String,
    /// Live messages from others newer than the reader's marker.
    pub unread: i64,
    /// The reader's marker: messages up to this seq are read (0: none).
    pub read_seq: i64,
}

/// A page of conversations, newest activity first.
#[derive(Debug, Clone)]
pub struct ConversationPage {
    /// Conversations, newest last message first.
    pub items: Vec<ConversationSummary>,
    /// Whether older conversations exist beyond the last one.
    pub has_older: bool,
}
