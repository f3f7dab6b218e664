//! `tidings store copy`: moves a whole store (every activity, digest, chain, user, session,
//! circle, membership, follow, subscription, hide, marker, notification and compat record) to an
//! empty store of either kind — in practice, an embedded deployment into PostgreSQL.
//!
//! Rows are copied as they are, ids and seqs included, so digests and chains verify on the
//! other side and every inbox reads the same. The target's read index is then built from the
//! copied tables when it opens (its change log starts empty).

use super::offline::begin_snapshot;
use crate::adapters::{self, StoreLocation};
use crate::sql::{Connection, Engine, OwnedValue, params_from_iter};
use crate::{StoreError, StoreResult};

/// Tables in an order that satisfies every foreign key, each with its columns (the same in
/// both schemas) and the column it is walked by.
const TABLES: &[(&str, &[&str])] = &[
    (
        "users",
        &[
            "id",
            "username",
            "display_name",
            "password_hash",
            "is_admin",
            "status",
            "created_at",
        ],
    ),
    (
        "sessions",
        &[
            "token_hash",
            "user_id",
            "created_at",
            "revoked_at",
            "id",
            "last_used_at",
            "expires_at",
            "user_agent",
            "ip",
        ],
    ),
    (
        "circles",
        &[
            "id",
            "name",
            "display_name",
            "description",
            "visibility",
            "join_policy",
            "owner_id",
            "created_at",
            "archived_at",
            "merged_from_seq",
        ],
    ),
    (
        "memberships",
        &["circle_id", "user_id", "role", "state", "created_at"],
    ),
    (
        "subscriptions",
        &[
            "id",
            "user_id",
            "expr",
            "tag",
            "circle_id",
            "since_seq",
            "until_seq",
            "created_at",
            "search_word",
        ],
    ),
    (
        "activities",
        &[
            "seq",
            "id",
            "actor_id",
            "type",
            "kind",
            "listed",
            "object_ref",
            "in_reply_to",
            "is_public",
            "published",
            "digest",
            "body",
        ],
    ),
    ("stream_links", &["seq", "stream", "pos", "chain"]),
    ("activity_tags", &["tag", "seq"]),
    ("activity_circles", &["seq", "circle_id"]),
    ("activity_addressees", &["seq", "user_id"]),
    ("activity_followers", &["seq"]),
    ("inbox_entries", &["user_id", "seq", "via"]),
    ("inbox_hidden", &["user_id", "seq"]),
    ("retractions", &["seq", "by_seq"]),
    ("edits", &["target_seq", "update_seq"]),
    ("idempotency_keys", &["user_id", "key", "seq"]),
    ("action_log", &["id", "seq", "user_id", "action", "at"]),
    (
        "custom_types",
        &["name", "kind", "schema", "actions", "created_at"],
    ),
    (
        "follows",
        &[
            "follower_id",
            "followee_id",
            "floor_seq",
            "follow_seq",
            "created_at",
        ],
    ),
    ("producers_merged", &["user_id", "from_seq"]),
    ("notifications", &["user_id", "seq", "reason"]),
    ("feed_markers", &["user_id", "feed", "seen_seq", "read_seq"]),
    ("compat_fs_actors", &["ext_id", "user_id"]),
    (
        "compat_afs_keys",
        &["key_hash", "user_id", "created_at", "updated_at"],
    ),
    ("compat_afs_log", &["user_id", "seq"]),
    ("compat_afs_objects", &["object_id", "seq"]),
    (
        "bus_services",
        &[
            "id",
            "name",
            "description",
            "scopes",
            "user_id",
            "created_at",
        ],
    ),
    (
        "bus_service_keys",
        &[
            "key_hash",
            "id",
            "service_id",
            "created_at",
            "expires_at",
            "revoked_at",
        ],
    ),
    (
        "bus_topics",
        &["id", "name", "filter", "description", "created_at"],
    ),
    (
        "bus_webhooks",
        &[
            "id",
            "topic_id",
            "service_id",
            "url",
            "secret",
            "old_secret",
            "old_secret_until_ms",
            "since_seq",
            "status",
            "disabled_reason",
            "failures",
            "created_at",
        ],
    ),
    (
        "bus_deliveries",
        &[
            "id",
            "webhook_id",
            "seq",
            "state",
            "attempts",
            "round_start",
            "next_at_ms",
            "lease_until_ms",
            "created_at",
        ],
    ),
    (
        "bus_attempts",
        &[
            "delivery_id",
            "attempt",
            "at",
            "status",
            "latency_ms",
            "outcome",
            "excerpt",
        ],
    ),
    (
        "reports",
        &[
            "flag_seq",
            "circle_id",
            "target_seq",
            "author_id",
            "reporter_id",
            "reason",
            "comment",
            "created_at",
            "decision_seq",
            "decision",
        ],
    ),
    ("circle_bans", &["circle_id", "user_id", "until", "by_seq"]),
    ("silences", &["user_id", "actor_id", "kind", "created_at"]),
    // Conversations and user groups (schema version 13, decision 0027).
    (
        "user_groups",
        &[
            "id",
            "name",
            "owner_user_id",
            "owner_circle_id",
            "created_at",
        ],
    ),
    ("group_members", &["group_id", "user_id", "since_seq"]),
    ("conversation_members", &["user_id", "conversation_id"]),
    ("conversation_messages", &["conversation_id", "seq"]),
    (
        "conversation_reads",
        &["user_id", "conversation_id", "read_seq"],
    ),
    // Media (schema version 9): the metadata; the blobs stay in their blob store.
    (
        "media",
        &[
            "id",
            "owner_id",
            "media_type",
            "width",
            "height",
            "blurhash",
            "alt",
            "variants",
            "created_at",
        ],
    ),
    ("media_uses", &["media_id", "seq"]),
    ("avatars", &["subject", "media_id"]),
];

/// Tables whose ids PostgreSQL generates: their sequences move past the copied ids.
const IDENTITIES: &[(&str, &str)] = &[
    ("users", "id"),
    ("circles", "id"),
    ("subscriptions", "id"),
    ("action_log", "id"),
    ("compat_afs_objects", "object_id"),
    ("bus_services", "id"),
    ("bus_topics", "id"),
];

/// Rows per INSERT statement.
const ROWS_PER_INSERT: usize = 200;

/// What a copy moved.
#[derive(Debug, Clone, Default)]
pub struct CopyReport {
    /// Rows copied per table, in copy order.
    pub tables: Vec<(String, u64)>,
}

impl CopyReport {
    /// Rows copied in all.
    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|(_, n)| n).sum()
    }
}

fn open_plain(location: &StoreLocation) -> StoreResult<Connection> {
    match location {
        StoreLocation::Embedded(dir) => {
            if !dir.join("tidings.db").exists() {
                return Err(StoreError::not_found("store"));
            }
            // Opening the full store once brings an older schema up to date.
            crate::Store::open(location, crate::StoreConfig::default())?.close();
            adapters::sqlite::open_plain(dir)
        }
        StoreLocation::Postgres(url) => adapters::postgres::connect(url),
    }
}

/// Copies the store at `from` into the empty store at `to` (created if needed). Refuses a
/// target that holds any user or activity. The source is read from one snapshot; stop its
/// server first so nothing published meanwhile is left behind.
pub fn copy_store(from: &StoreLocation, to: &StoreLocation) -> StoreResult<CopyReport> {
    adapters::postgres::off_async(|| copy_here(from, to))
}

fn copy_here(from: &StoreLocation, to: &StoreLocation) -> StoreResult<CopyReport> {
    let source = open_plain(from)?;
    if let StoreLocation::Embedded(_) = to {
        // Let the embedded store create its schema first.
        crate::Store::open(to, crate::StoreConfig::default())?.close();
    }
    let target = match to {
        StoreLocation::Embedded(dir) => adapters::sqlite::open_plain(dir)?,
        StoreLocation::Postgres(url) => {
            let conn = adapters::postgres::connect(url)?;
            adapters::postgres::migrate(&conn)?;
            conn
        }
    };
    let occupied: i64 = target.query_row(
        "SELECT (SELECT COUNT(*) FROM users) + (SELECT COUNT(*) FROM activities)",
        [],
        |r| r.get(0),
    )?;
    if occupied > 0 {
        return Err(StoreError::conflict(
            "target_not_empty",
            "the target store already holds users or activities; copy into an empty one",
        ));
    }
    begin_snapshot(&source)?;
    adapters::begin_write(&target)?;
    let copied = copy_tables(&source, &target);
    let _ = source.execute_batch("COMMIT");
    match copied {
        Ok(report) => {
            target.execute_batch("COMMIT")?;
            Ok(report)
        }
        Err(e) => {
            let _ = target.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

fn copy_tables(source: &Connection, target: &Connection) -> StoreResult<CopyReport> {
    let mut report = CopyReport::default();
    for (table, columns) in TABLES {
        let list = columns.join(", ");
        let mut stmt = source.prepare(&format!("SELECT {list} FROM {table}"))?;
        let mut rows = stmt.query([])?;
        let mut pending: Vec<OwnedValue> = Vec::new();
        let mut count = 0u64;
        while let Some(row) = rows.next()? {
            for i in 0..columns.len() {
                pending.push(row.get(i)?);
            }
            count += 1;
            if pending.len() >= ROWS_PER_INSERT * columns.len() {
                insert_rows(target, table, columns, std::mem::take(&mut pending))?;
            }
        }
        if !pending.is_empty() {
            insert_rows(target, table, columns, pending)?;
        }
        report.tables.push(((*table).to_owned(), count));
    }
    // The routing watermark, and the bus's (how far the log was matched against topics).
    for key in ["routed_seq", "bus_seq"] {
        let value: String =
            source.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))?;
        target.execute(
            "UPDATE meta SET value = ?1 WHERE key = ?2",
            [value, key.to_owned()],
        )?;
    }
    // The search index is not copied: it is derived from the log just copied.
    super::search::reindex_all(target)?;
    if target.engine() == Engine::Postgres {
        for (table, column) in IDENTITIES {
            target.execute_batch(&format!(
                "SELECT setval(pg_get_serial_sequence('{table}', '{column}'),
                               GREATEST((SELECT MAX({column}) FROM {table}), 1),
                               (SELECT MAX({column}) FROM {table}) IS NOT NULL)"
            ))?;
        }
    }
    Ok(report)
}

fn insert_rows(
    target: &Connection,
    table: &str,
    columns: &[&str],
    values: Vec<OwnedValue>,
) -> StoreResult<()> {
    let width = columns.len();
    let rows = values.len() / width;
    let mut sql = format!("INSERT INTO {table} ({}) VALUES ", columns.join(", "));
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for column in 0..width {
            if column > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("?{}", row * width + column + 1));
        }
        sql.push(')');
    }
    target.execute(&sql, params_from_iter(values))?;
    Ok(())
}
