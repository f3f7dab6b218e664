//! `tidings rebuild`: re-derives the routed projections from the log (DESIGN principle 2).
//!
//! What is derived, and so wiped and recomputed: inbox entries (addressed, subscriptions,
//! follows), notifications, the search index, conversations, group memberships, and the merge-at-read decisions (`circles.merged_from_seq`,
//! `producers_merged`), the report queue and circle bans (from the moderation activities), by resetting the routed watermark to 0 and running the router over the
//! whole log. The in-memory index, feed pages and counts are derived from those tables each
//! time a server starts, so they follow.
//!
//! What is kept, because it is not in the log: users, sessions, circles and memberships,
//! subscriptions (their seq windows already say which activities each one covers), follow
//! edges, hides, read markers (of feeds and of conversations), user groups (their
//! memberships are replayed from the log's Add/Remove activities), custom types, idempotency keys, and the notifications a
//! FeedStream Activity event raised for its named consumer (the compat profile decides those,
//! not the router). Retractions and edits are log indexes written with the activity that
//! causes them, so they are kept too.
//!
//! It runs offline: it refuses a data directory a server holds, and a PostgreSQL database any
//! other session is connected to. The wipe is one transaction; routing then commits slice by
//! slice, so an interrupted rebuild is finished by the next `tidings serve` (its router resumes
//! from the watermark) or by running `tidings rebuild` again.

use super::router::{self, Thresholds};
use super::{Effects, StoreConfig};
use crate::adapters::{self, StoreLocation};
use crate::sql::Connection;
use crate::{StoreError, StoreResult};

/// What a rebuild changed.
#[derive(Debug, Clone, Default)]
pub struct RebuildReport {
    /// Activities in the log, all routed again.
    pub activities: i64,
    /// The newest seq in the log.
    pub last_seq: i64,
    /// The routed watermark the rebuild reached (the newest seq once it is complete).
    pub routed: i64,
    /// Inbox entries before and after.
    pub entries: (i64, i64),
    /// Notifications before and after.
    pub notifications: (i64, i64),
    /// Activities in the search index after the rebuild.
    pub indexed: u64,
    /// Reports and moderation decisions re-derived from the log.
    pub moderation: (i64, i64),
    /// Direct messages grouped into conversations after the rebuild.
    pub conversation_messages: u64,
    /// Group membership changes replayed from the log.
    pub group_changes: u64,
}

/// Re-derives every routed projection of the store at `location` from its log.
pub fn rebuild(location: &StoreLocation, config: &StoreConfig) -> StoreResult<RebuildReport> {
    adapters::postgres::off_async(|| rebuild_here(location, config))
}

fn rebuild_here(location: &StoreLocation, config: &StoreConfig) -> StoreResult<RebuildReport> {
    let thresholds = Thresholds {
        circle: config.merge_threshold,
        followers: config.follower_merge_threshold,
        max_deliveries: router::EMBEDDED_SLICE_DELIVERIES,
        max_slice: None,
    };
    match location {
        StoreLocation::Embedded(dir) => {
            if !dir.join("tidings.db").exists() {
                return Err(StoreError::not_found("store"));
            }
            // Opening the full store once brings an older schema up to date.
            crate::Store::open(location, StoreConfig::default())?.close();
            // Held to the end: a server that starts meanwhile is refused.
            let _lock = adapters::sqlite::lock_data_dir(dir)?;
            let conn = adapters::sqlite::open_plain(dir)?;
            rebuild_on(&conn, thresholds)
        }
        StoreLocation::Postgres(url) => {
            let conn = adapters::postgres::connect(url)?;
            adapters::postgres::migrate(&conn)?;
            let others: i64 = conn.query_row(
                "SELECT COUNT(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND pid <> pg_backend_pid()
                   AND backend_type = 'client backend'",
                [],
                |r| r.get(0),
            )?;
            // A node keeps connections open for as long as it runs (its tailer, at least).
            if others > 0 {
                return Err(StoreError::Locked {
                    dir: format!("{} ({others} other connection(s))", location.describe()),
                });
            }
            // And no node that starts meanwhile routes beside the rebuild.
            if !adapters::postgres::try_router_lock(&conn)? {
                return Err(StoreError::Locked {
                    dir: location.describe(),
                });
            }
            rebuild_on(&conn, thresholds)
        }
    }
}

fn count(conn: &Connection, table: &str) -> StoreResult<i64> {
    Ok(conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))?)
}

fn rebuild_on(conn: &Connection, thresholds: Thresholds) -> StoreResult<RebuildReport> {
    let mut report = RebuildReport {
        activities: count(conn, "activities")?,
        ..RebuildReport::default()
    };
    report.last_seq = conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM activities", [], |r| {
        r.get(0)
    })?;
    report.entries.0 = count(conn, "inbox_entries")?;
    report.notifications.0 = count(conn, "notifications")?;
    adapters::begin_write(conn)?;
    let wiped = conn.execute_batch(
        "DELETE FROM inbox_entries;
         DELETE FROM notifications WHERE seq NOT IN (
             SELECT a.seq FROM activities a JOIN compat_fs_actors f ON f.user_id = a.actor_id);
         DELETE FROM producers_merged;
         UPDATE circles SET merged_from_seq = NULL WHERE merged_from_seq IS NOT NULL;
         UPDATE meta SET value = '0' WHERE key = 'routed_seq';",
    );
    match wiped {
        Ok(()) => conn.execute_batch("COMMIT")?,
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(e.into());
        }
    }
    loop {
        // The effects are for a live index; none runs now, and each server loads its index
        // from the tables when it starts.
        let mut fx = Effects::default();
        let (routed, more) = router::route_pending(conn, thresholds, &mut fx)?;
        tracing::debug!(routed, "rebuild routed a slice");
        report.routed = routed;
        if !more {
            break;
        }
    }
    // The search index is a projection too: wiped and re-derived in one transaction.
    adapters::begin_write(conn)?;
    match super::search::reindex_all(conn) {
        Ok(indexed) => {
            conn.execute_batch("COMMIT")?;
            report.indexed = indexed;
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(e);
        }
    }
    // So are the report queue and the bans: re-derived from the moderation activities.
    adapters::begin_write(conn)?;
    match super::moderation::rederive(conn) {
        Ok((reports, decisions)) => {
            conn.execute_batch("COMMIT")?;
            report.moderation = (reports, decisions);
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(e);
        }
    }
    // Conversations and group memberships are projections too (decision 0027); read
    // markers and the groups themselves are kept.
    adapters::begin_write(conn)?;
    let derived = super::conversations::reindex_all(conn)
        .and_then(|grouped| Ok((grouped, super::groups::replay_all(conn)?)));
    match derived {
        Ok((grouped, replayed)) => {
            conn.execute_batch("COMMIT")?;
            report.conversation_messages = grouped;
            report.group_changes = replayed;
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(e);
        }
    }
    report.entries.1 = count(conn, "inbox_entries")?;
    report.notifications.1 = count(conn, "notifications")?;
    Ok(report)
}
