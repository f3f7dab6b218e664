//! Conversations (decision 0027): direct messages grouped by the set of people they are
//! between.
//!
//! Which activities are messages and which conversation each is in is decided by
//! [`tidings_core::conversations`] from the stored record alone. Two tables are projections of
//! the log, written in the message's own transaction and re-derived by `tidings rebuild`
//! ([`reindex_all`]): `conversation_members` (who is in each conversation) and
//! `conversation_messages` (which seqs it holds). `conversation_reads` holds each person's read
//! marker per conversation: state a person made, not derived, so a rebuild keeps it.
//!
//! Reads come from these tables, never from the hot index, so every node answers alike on
//! both stores; a retracted message leaves the listing, the last message and the unread count
//! at once (they all skip retracted seqs).

use super::activities::{LIVE, finish_page, list_rows, render_page, render_text};
use super::{Shared, Store};
use crate::model::{ConversationPage, ConversationSummary, Page, PageFrom, User};
use crate::sql::OwnedValue as SqlValue;
use crate::sql::{Connection, OptionalExtension, params};
use crate::{StoreError, StoreResult};
use serde_json::Value;
use tidings_core::conversations::conversation_of;

/// Records `seq` in its conversation if the record is a direct message. `people`: the author's
/// and the addressed people's user ids. Runs in the publishing transaction.
pub(crate) fn index_message(
    conn: &Connection,
    seq: i64,
    record: &Value,
    people: &[i64],
) -> StoreResult<Option<String>> {
    let Some(id) = conversation_of(record) else {
        return Ok(None);
    };
    for user in people {
        conn.prepare_cached(
            "INSERT INTO conversation_members(user_id, conversation_id) VALUES (?1, ?2)
             ON CONFLICT DO NOTHING",
        )?
        .execute(params![user, id])?;
    }
    conn.prepare_cached(
        "INSERT INTO conversation_messages(conversation_id, seq) VALUES (?1, ?2)
         ON CONFLICT DO NOTHING",
    )?
    .execute(params![id, seq])?;
    Ok(Some(id))
}

/// Re-derives both conversation projections from the log (inside the caller's transaction);
/// returns how many messages it grouped.
pub(crate) fn reindex_all(conn: &Connection) -> StoreResult<u64> {
    conn.execute_batch("DELETE FROM conversation_messages; DELETE FROM conversation_members;")?;
    let mut grouped = 0u64;
    let mut last = 0i64;
    loop {
        // In slices, so a large log is never held in memory at once.
        let rows: Vec<(i64, String)> = conn
            .prepare_cached(
                "SELECT a.seq, a.body FROM activities a
                 WHERE a.seq > ?1 AND a.listed AND a.type = 'Create' ORDER BY a.seq LIMIT 500",
            )?
            .query_map([last], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        let Some(&(end, _)) = rows.last() else {
            break;
        };
        for (seq, body) in rows {
            let record: Value = serde_json::from_str(&body)?;
            let Some(names) = tidings_core::conversations::participants(&record) else {
                continue;
            };
            let mut people = Vec::with_capacity(names.len());
            for name in &names {
                let id: Option<i64> = conn
                    .prepare_cached("SELECT id FROM users WHERE username = ?1")?
                    .query_row([name], |r| r.get(0))
                    .optional()?;
                people.extend(id);
            }
            if index_message(conn, seq, &record, &people)?.is_some() {
                grouped += 1;
            }
        }
        last = end;
    }
    Ok(grouped)
}

/// Whether `user` is in conversation `id` (outsiders are told "not found").
fn is_participant(conn: &Connection, id: &str, user: i64) -> StoreResult<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS(SELECT 1 FROM conversation_members
             WHERE user_id = ?1 AND conversation_id = ?2)",
        )?
        .query_row(params![user, id], |r| r.get(0))?)
}

/// The newest live message of a conversation, if any.
fn last_live(conn: &Connection, id: &str) -> StoreResult<Option<i64>> {
    Ok(conn
        .prepare_cached(
            "SELECT MAX(m.seq) FROM conversation_messages m
             WHERE m.conversation_id = ?1
               AND NOT EXISTS(SELECT 1 FROM retractions r WHERE r.seq = m.seq)",
        )?
        .query_row([id], |r| r.get::<_, Option<i64>>(0))?)
}

/// One conversation as `user` sees it in the list.
fn summary(
    conn: &Connection,
    shared: &Shared,
    id: &str,
    last_seq: i64,
    user: i64,
) -> StoreResult<ConversationSummary> {
    let participants = conn
        .prepare_cached(
            "SELECT u.username FROM conversation_members p JOIN users u ON u.id = p.user_id
             WHERE p.conversation_id = ?1 ORDER BY u.username",
        )?
        .query_map([id], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    let read_seq: i64 = conn
        .prepare_cached(
            "SELECT read_seq FROM conversation_reads WHERE user_id = ?1 AND conversation_id = ?2",
        )?
        .query_row(params![user, id], |r| r.get(0))
        .optional()?
        .unwrap_or(0);
    let unread: i64 = conn
        .prepare_cached(
            "SELECT COUNT(*) FROM conversation_messages m JOIN activities a ON a.seq = m.seq
             WHERE m.conversation_id = ?1 AND m.seq > ?2 AND a.actor_id != ?3
               AND NOT EXISTS(SELECT 1 FROM retractions r WHERE r.seq = m.seq)",
        )?
        .query_row(params![id, read_seq, user], |r| r.get(0))?;
    Ok(ConversationSummary {
        id: id.to_owned(),
        participants,
        last_seq,
        last_message: render_text(conn, shared, last_seq)?,
        unread,
        read_seq,
    })
}

impl Store {
    /// `user`'s conversations, the one with the newest live message first.
    pub async fn conversations(
        &self,
        user: User,
        from: PageFrom,
        limit: usize,
    ) -> StoreResult<ConversationPage> {
        let shared = self.shared.clone();
        self.read(move |conn| {
            // Every seq is in one conversation at most, so the last message's seq orders the
            // list and is its cursor.
            let (bound, order, cursor) = match from {
                PageFrom::Newest => ("<", "DESC", i64::MAX),
                PageFrom::Before(s) => ("<", "DESC", s),
                PageFrom::After(s) => (">", "ASC", s),
            };
            let sql = format!(
                "SELECT t.id, t.last_seq FROM (
                     SELECT p.conversation_id AS id,
                            (SELECT MAX(m.seq) FROM conversation_messages m
                             WHERE m.conversation_id = p.conversation_id
                               AND NOT EXISTS(SELECT 1 FROM retractions r WHERE r.seq = m.seq))
                            AS last_seq
                     FROM conversation_members p WHERE p.user_id = ?1) t
                 WHERE t.last_seq IS NOT NULL AND t.last_seq {bound} ?2
                 ORDER BY t.last_seq {order} LIMIT ?3"
            );
            let rows: Vec<(String, i64)> = conn
                .prepare_cached(&sql)?
                .query_map(params![user.id, cursor, limit as i64 + 1], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?
                .collect::<Result<_, _>>()?;
            let mut rows = rows;
            let more = rows.len() > limit;
            rows.truncate(limit);
            let has_older = match from {
                PageFrom::After(_) => {
                    rows.reverse();
                    true
                }
                _ => more,
            };
            let items = rows
                .iter()
                .map(|(id, last)| summary(conn, &shared, id, *last, user.id))
                .collect::<StoreResult<Vec<_>>>()?;
            Ok(ConversationPage { items, has_older })
        })
        .await
    }

    /// One conversation's summary; "not found" unless `user` is in it.
    pub async fn conversation(&self, id: &str, user: User) -> StoreResult<ConversationSummary> {
        let id = id.to_owned();
        let shared = self.shared.clone();
        self.read(move |conn| {
            if !is_participant(conn, &id, user.id)? {
                return Err(StoreError::not_found("conversation"));
            }
            let last = last_live(conn, &id)?.ok_or(StoreError::not_found("conversation"))?;
            summary(conn, &shared, &id, last, user.id)
        })
        .await
    }

    /// A conversation's live messages, newest first; "not found" unless `user` is in it.
    pub async fn conversation_messages(
        &self,
        id: &str,
        user: User,
        from: PageFrom,
        limit: usize,
    ) -> StoreResult<Page> {
        let id = id.to_owned();
        let shared = self.shared.clone();
        self.read(move |conn| {
            if !is_participant(conn, &id, user.id)? {
                return Err(StoreError::not_found("conversation"));
            }
            let sql = format!(
                "SELECT a.seq, NULL FROM conversation_messages m JOIN activities a ON a.seq = m.seq
                 WHERE m.conversation_id = ?1 AND {LIVE}"
            );
            let rows = list_rows(conn, &sql, vec![SqlValue::Text(id.clone())], from, limit)?;
            let (rows, more) = finish_page(rows, from, limit);
            render_page(conn, &shared, rows, more)
        })
        .await
    }

    /// Moves `user`'s read marker of a conversation forward to `upto` (None: its newest
    /// message); a marker never moves back. Returns the conversation as it now reads.
    pub async fn mark_conversation_read(
        &self,
        id: &str,
        user: User,
        upto: Option<i64>,
    ) -> StoreResult<ConversationSummary> {
        let id = id.to_owned();
        let shared = self.shared.clone();
        self.write(move |conn, _fx| {
            if !is_participant(conn, &id, user.id)? {
                return Err(StoreError::not_found("conversation"));
            }
            let last = last_live(conn, &id)?.ok_or(StoreError::not_found("conversation"))?;
            let mark = upto.unwrap_or(last).min(last);
            conn.prepare_cached(
                "INSERT INTO conversation_reads(user_id, conversation_id, read_seq)
                 VALUES (?1, ?2, ?3)
                 ON CONFLICT(user_id, conversation_id) DO UPDATE
                 SET read_seq = CASE WHEN excluded.read_seq > conversation_reads.read_seq
                                     THEN excluded.read_seq ELSE conversation_reads.read_seq END",
            )?
            .execute(params![user.id, id, mark])?;
            summary(conn, &shared, &id, last, user.id)
        })
        .await
    }
}
