-- Tidings embedded store, schema version 1.
--
-- Two kinds of tables live here:
--   the log (activities, stream_links): append-only, guarded by triggers that refuse UPDATE and
--   DELETE, hashed per activity and chained per stream;
--   projections (everything else about activities): derived from the log, mutable.

CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS users (
    id            INTEGER PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    display_name  TEXT NOT NULL,
    password_hash TEXT,
    is_admin      INTEGER NOT NULL DEFAULT 0,
    status        TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended', 'deleted')),
    created_at    TEXT NOT NULL
);

-- A signed-in device. `token_hash` is what a bearer token is looked up by; `id` is the public
-- name the owner's device list shows and revokes by (never the token). Times are RFC 3339 UTC
-- with milliseconds, so comparing the text compares the times. `expires_at` slides forward
-- when the session is used (see `engine::users`); schema version 5 added the device columns.
CREATE TABLE IF NOT EXISTS sessions (
    token_hash   TEXT PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users(id),
    created_at   TEXT NOT NULL,
    revoked_at   TEXT,
    id           TEXT NOT NULL DEFAULT '',
    last_used_at TEXT NOT NULL DEFAULT '',
    expires_at   TEXT NOT NULL DEFAULT '',
    user_agent   TEXT,
    ip           TEXT
);
CREATE INDEX IF NOT EXISTS sessions_by_user ON sessions(user_id);

CREATE TABLE IF NOT EXISTS circles (
    id              INTEGER PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    display_name    TEXT NOT NULL,
    description     TEXT NOT NULL DEFAULT '',
    visibility      TEXT NOT NULL CHECK (visibility IN ('public', 'private')),
    join_policy     TEXT NOT NULL CHECK (join_policy IN ('open', 'approval', 'invite')),
    owner_id        INTEGER NOT NULL REFERENCES users(id),
    created_at      TEXT NOT NULL,
    archived_at     TEXT,
    -- NULL: fanned out to inboxes on write. Otherwise activities from this seq on are merged
    -- into subscribers' inboxes at read time (set once, by the router, when the audience grows).
    merged_from_seq INTEGER
);

CREATE TABLE IF NOT EXISTS memberships (
    circle_id  INTEGER NOT NULL REFERENCES circles(id),
    user_id    INTEGER NOT NULL REFERENCES users(id),
    role       TEXT NOT NULL CHECK (role IN ('owner', 'moderator', 'member')),
    state      TEXT NOT NULL CHECK (state IN ('active', 'requested', 'invited')),
    created_at TEXT NOT NULL,
    PRIMARY KEY (circle_id, user_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS memberships_by_user ON memberships(user_id, circle_id);

-- A subscription routes activities with since_seq < seq <= until_seq (until_seq NULL: open).
-- Removing one closes it instead of deleting it, so read-time merging stays exact.
CREATE TABLE IF NOT EXISTS subscriptions (
    id         INTEGER PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users(id),
    expr       TEXT NOT NULL,
    tag        TEXT,
    circle_id  INTEGER REFERENCES circles(id),
    since_seq  INTEGER NOT NULL,
    until_seq  INTEGER,
    created_at TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS subscriptions_open ON subscriptions(user_id, expr) WHERE until_seq IS NULL;
CREATE INDEX IF NOT EXISTS subscriptions_by_circle ON subscriptions(circle_id, tag);
CREATE INDEX IF NOT EXISTS subscriptions_any_circle ON subscriptions(tag) WHERE circle_id IS NULL;
CREATE INDEX IF NOT EXISTS subscriptions_by_user ON subscriptions(user_id);

-- The log. `body` is the canonical JSON as stored and served; `digest` covers it.
CREATE TABLE IF NOT EXISTS activities (
    seq         INTEGER PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,
    actor_id    INTEGER NOT NULL REFERENCES users(id),
    type        TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('major', 'minor')),
    listed      INTEGER NOT NULL,
    object_ref  TEXT,
    in_reply_to TEXT,
    is_public   INTEGER NOT NULL,
    published   TEXT NOT NULL,
    digest      TEXT NOT NULL,
    body        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS activities_by_parent ON activities(in_reply_to, seq) WHERE in_reply_to IS NOT NULL;
CREATE INDEX IF NOT EXISTS activities_by_ref ON activities(object_ref, seq) WHERE object_ref IS NOT NULL;

CREATE TRIGGER IF NOT EXISTS activities_refuse_update BEFORE UPDATE ON activities
BEGIN SELECT RAISE(ABORT, 'activities are immutable'); END;
CREATE TRIGGER IF NOT EXISTS activities_refuse_delete BEFORE DELETE ON activities
BEGIN SELECT RAISE(ABORT, 'activities are immutable'); END;

-- Each stream ('outbox:NAME', 'circle:NAME') is a hash chain: chain = H(previous chain, digest).
-- Keyed by seq first so a publish appends at the end of the B-tree (no random page per stream);
-- the writer keeps each stream's head in memory and `verify` walks the links in seq order.
CREATE TABLE IF NOT EXISTS stream_links (
    seq    INTEGER NOT NULL REFERENCES activities(seq),
    stream TEXT NOT NULL,
    pos    INTEGER NOT NULL,
    chain  TEXT NOT NULL,
    PRIMARY KEY (seq, stream)
) WITHOUT ROWID;

CREATE TRIGGER IF NOT EXISTS stream_links_refuse_update BEFORE UPDATE ON stream_links
BEGIN SELECT RAISE(ABORT, 'streams are immutable'); END;
CREATE TRIGGER IF NOT EXISTS stream_links_refuse_delete BEFORE DELETE ON stream_links
BEGIN SELECT RAISE(ABORT, 'streams are immutable'); END;

-- Indexes over the log (append-only like it).
CREATE TABLE IF NOT EXISTS activity_tags (
    tag TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (tag, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS activity_tags_by_seq ON activity_tags(seq);

-- Keyed by seq first (appends); circle streams are read from the in-memory index.
CREATE TABLE IF NOT EXISTS activity_circles (
    seq       INTEGER NOT NULL,
    circle_id INTEGER NOT NULL,
    PRIMARY KEY (seq, circle_id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS activity_addressees (
    seq     INTEGER NOT NULL,
    user_id INTEGER NOT NULL,
    PRIMARY KEY (seq, user_id)
) WITHOUT ROWID;

-- Projections.
-- Entries the router wrote. `via` is stored as a small integer (see `sqlite::via_code`): 0 for
-- addressed, a subscription's id, or minus the followed author's user id; the text clients see
-- (`subscription:ID:EXPR`, `follow:NAME`) is rebuilt from those rows when the index loads.
CREATE TABLE IF NOT EXISTS inbox_entries (
    user_id INTEGER NOT NULL,
    seq     INTEGER NOT NULL,
    via     INTEGER NOT NULL,
    PRIMARY KEY (user_id, seq)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS inbox_hidden (
    user_id INTEGER NOT NULL,
    seq     INTEGER NOT NULL,
    PRIMARY KEY (user_id, seq)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS retractions (
    seq    INTEGER PRIMARY KEY,
    by_seq INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS edits (
    target_seq INTEGER NOT NULL,
    update_seq INTEGER NOT NULL,
    PRIMARY KEY (target_seq, update_seq)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS idempotency_keys (
    user_id INTEGER NOT NULL,
    key     TEXT NOT NULL,
    seq     INTEGER NOT NULL,
    PRIMARY KEY (user_id, key)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS action_log (
    id      INTEGER PRIMARY KEY,
    seq     INTEGER NOT NULL,
    user_id INTEGER NOT NULL,
    action  TEXT NOT NULL,
    at      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS action_log_by_activity ON action_log(seq, action);

CREATE TABLE IF NOT EXISTS custom_types (
    name       TEXT PRIMARY KEY,
    kind       TEXT NOT NULL CHECK (kind IN ('activity', 'object')),
    schema     TEXT NOT NULL,
    actions    TEXT NOT NULL,
    created_at TEXT NOT NULL
);

-- Log index (append-only like the log): activities addressed to the author's followers.
CREATE TABLE IF NOT EXISTS activity_followers (
    seq INTEGER PRIMARY KEY
);

-- Follows. A follower sees the followee's follower-visible activities (addressed to followers or
-- public) with seq > floor_seq: floor_seq keeps the backfill to the newest few at follow time.
-- Unfollowing deletes the row (and the entries it wrote): the follow's items leave the feed.
CREATE TABLE IF NOT EXISTS follows (
    follower_id INTEGER NOT NULL REFERENCES users(id),
    followee_id INTEGER NOT NULL REFERENCES users(id),
    floor_seq   INTEGER NOT NULL,
    follow_seq  INTEGER NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (follower_id, followee_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS follows_by_followee ON follows(followee_id, follower_id);

-- Producers with too many followers to fan out on write: from from_seq on, their activities
-- are merged into followers' feeds at read time (set once, by the router).
CREATE TABLE IF NOT EXISTS producers_merged (
    user_id  INTEGER PRIMARY KEY,
    from_seq INTEGER NOT NULL
);

-- Notifications: activities aimed at one user, and why (tidings_core::feeds::Reason code).
CREATE TABLE IF NOT EXISTS notifications (
    user_id INTEGER NOT NULL,
    seq     INTEGER NOT NULL,
    reason  INTEGER NOT NULL,
    PRIMARY KEY (user_id, seq)
) WITHOUT ROWID;
-- A retraction looks up who was notified of what it retracts.
CREATE INDEX IF NOT EXISTS notifications_by_seq ON notifications(seq);

-- Seen / read markers per user and feed: every item with seq <= the marker is seen / read.
CREATE TABLE IF NOT EXISTS feed_markers (
    user_id  INTEGER NOT NULL,
    feed     TEXT NOT NULL,
    seen_seq INTEGER NOT NULL DEFAULT 0,
    read_seq INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, feed)
) WITHOUT ROWID;

-- Compat profiles (tidings-server `compat`). FeedStream's opaque producer/consumer ids and the
-- users that stand for them.
CREATE TABLE IF NOT EXISTS compat_fs_actors (
    ext_id  TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL UNIQUE
);

-- activity-feed-system's app keys (`X-App-Key`), stored hashed like session tokens; one per user.
CREATE TABLE IF NOT EXISTS compat_afs_keys (
    key_hash   TEXT PRIMARY KEY,
    user_id    INTEGER NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- What each user did through activity-feed-system (its `activities` table): the seqs of the
-- activities, so `/feed/my` can show Undo records the outbox does not list.
CREATE TABLE IF NOT EXISTS compat_afs_log (
    user_id INTEGER NOT NULL,
    seq     INTEGER NOT NULL,
    PRIMARY KEY (user_id, seq)
) WITHOUT ROWID;

-- activity-feed-system's integer object ids: one per post or photo created through it.
CREATE TABLE IF NOT EXISTS compat_afs_objects (
    object_id INTEGER PRIMARY KEY,
    seq       INTEGER NOT NULL UNIQUE
);

-- Search (schema version 6, decision 0020): a projection of the log. `search_docs` holds each
-- indexed activity's current text (the latest edit's); `search_fts` its words as
-- tidings_core::search::index_text spells them (rowid = seq), so both stores agree on words.
CREATE TABLE IF NOT EXISTS search_docs (
    seq         INTEGER PRIMARY KEY,
    object_type TEXT NOT NULL,
    title       TEXT NOT NULL,
    body        TEXT NOT NULL,
    tags        TEXT NOT NULL
);
CREATE VIRTUAL TABLE IF NOT EXISTS search_fts USING fts5(
    title, tags, body,
    tokenize = 'unicode61 remove_diacritics 0',
    prefix = '2 3'
);
