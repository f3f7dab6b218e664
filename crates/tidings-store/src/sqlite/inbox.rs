//! The multiplexer: reads one user's inbox by merging the entries the router wrote with the
//! streams of circles that are merged at read time, then filtering and paginating.
//!
//! Every source only looks at activities up to the routed watermark, which advances strictly
//! in log order; that is what makes a cursor walk see every item exactly once while new items
//! keep arriving.

use super::SqliteStore;
use super::activities::{LIVE, can_read, finish_page, list_rows, render_page};
use crate::model::{InboxFilter, Page, PageFrom, User};
use crate::{StoreError, StoreResult};
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::HashMap;
use tidings_core::merge::{Direction, merge_sources};

/// Appends the filter conditions (over `a`) and their arguments.
fn filter_sql(filter: &InboxFilter, args: &mut Vec<SqlValue>) -> String {
    let mut sql = String::new();
    if !filter.circles.is_empty() {
        let marks: Vec<String> = filter
            .circles
            .iter()
            .map(|c| {
                args.push(SqlValue::Text(c.clone()));
                format!("?{}", args.len())
            })
            .collect();
        sql.push_str(&format!(
            " AND EXISTS(SELECT 1 FROM activity_circles fc JOIN circles fcc ON fcc.id = fc.circle_id
                        WHERE fc.seq = a.seq AND fcc.name IN ({}))",
            marks.join(", ")
        ));
    }
    if !filter.tags.is_empty() {
        let marks: Vec<String> = filter
            .tags
            .iter()
            .map(|t| {
                args.push(SqlValue::Text(t.clone()));
                format!("?{}", args.len())
            })
            .collect();
        sql.push_str(&format!(
            " AND EXISTS(SELECT 1 FROM activity_tags ft WHERE ft.seq = a.seq AND ft.tag IN ({}))",
            marks.join(", ")
        ));
    }
    match filter.kind.as_deref() {
        Some("major") => sql.push_str(" AND a.kind = 'major'"),
        Some("minor") => sql.push_str(" AND a.kind = 'minor'"),
        _ => {}
    }
    sql
}

/// The router's order of reasons (`Via`'s order): author, addressed, then subscriptions by id.
fn via_rank(via: &Option<String>) -> (u8, i64) {
    match via.as_deref() {
        Some("author") => (0, 0),
        Some("addressed") => (1, 0),
        Some(v) => v
            .strip_prefix("subscription:")
            .and_then(|rest| rest.split(':').next())
            .and_then(|id| id.parse().ok())
            .map_or((3, 0), |id| (2, id)),
        None => (3, 0),
    }
}

struct MergedSource {
    id: i64,
    expr: String,
    tag: Option<String>,
    circle_id: i64,
    low: i64,
    high: Option<i64>,
}

fn read_inbox(
    conn: &Connection,
    user_id: i64,
    watermark: i64,
    filter: &InboxFilter,
    from: PageFrom,
    limit: usize,
) -> StoreResult<Page> {
    let direct_only = filter.kind.as_deref() == Some("direct");
    let mut sources = Vec::new();

    // Source 0: entries the router wrote.
    let mut args = vec![SqlValue::Integer(user_id), SqlValue::Integer(watermark)];
    let mut sql = format!(
        "SELECT a.seq, e.via FROM inbox_entries e JOIN activities a ON a.seq = e.seq
         WHERE e.user_id = ?1 AND a.seq <= ?2 AND {LIVE}
           AND NOT EXISTS(SELECT 1 FROM inbox_hidden h WHERE h.user_id = ?1 AND h.seq = a.seq)"
    );
    if direct_only {
        sql.push_str(" AND e.via = 'addressed'");
    }
    sql.push_str(&filter_sql(filter, &mut args));
    sources.push(list_rows(conn, &sql, args, from, limit)?);

    // Sources 1…: circles merged at read time, one per subscription window.
    if !direct_only {
        let merged = conn
            .prepare_cached(
                "SELECT s.id, s.expr, s.tag, s.circle_id, MAX(s.since_seq, c.merged_from_seq - 1), s.until_seq
                 FROM subscriptions s JOIN circles c ON c.id = s.circle_id
                 WHERE s.user_id = ?1 AND c.merged_from_seq IS NOT NULL
                   AND (s.until_seq IS NULL OR s.until_seq >= c.merged_from_seq)
                 ORDER BY s.id",
            )?
            .query_map([user_id], |r| {
                Ok(MergedSource {
                    id: r.get(0)?,
                    expr: r.get(1)?,
                    tag: r.get(2)?,
                    circle_id: r.get(3)?,
                    low: r.get(4)?,
                    high: r.get(5)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        for source in merged {
            let mut args = vec![
                SqlValue::Integer(user_id),
                SqlValue::Integer(watermark),
                SqlValue::Integer(source.circle_id),
                SqlValue::Integer(source.low),
                SqlValue::Integer(source.high.unwrap_or(i64::MAX)),
                SqlValue::Text(format!("subscription:{}:{}", source.id, source.expr)),
            ];
            let mut sql = format!(
                "SELECT a.seq, ?6 FROM activity_circles ac JOIN activities a ON a.seq = ac.seq
                 WHERE ac.circle_id = ?3 AND a.seq > ?4 AND a.seq <= ?5 AND a.seq <= ?2 AND {LIVE}
                   AND NOT EXISTS(SELECT 1 FROM inbox_hidden h WHERE h.user_id = ?1 AND h.seq = a.seq)"
            );
            if let Some(tag) = source.tag {
                args.push(SqlValue::Text(tag));
                sql.push_str(&format!(
                    " AND EXISTS(SELECT 1 FROM activity_tags st WHERE st.seq = a.seq AND st.tag = ?{})",
                    args.len()
                ));
            }
            sql.push_str(&filter_sql(filter, &mut args));
            sources.push(list_rows(conn, &sql, args, from, limit)?);
        }
    }

    let direction = match from {
        PageFrom::After(_) => Direction::Newer,
        _ => Direction::Older,
    };
    // An activity several sources carry shows the reason the router would have written, so a
    // circle reads the same whether it is fanned out or merged (a `tag@*` entry must not beat
    // an older `*@circle` subscription just because written entries come first).
    let mut best: HashMap<i64, &Option<String>> = HashMap::new();
    for (seq, via) in sources.iter().flatten() {
        best.entry(*seq)
            .and_modify(|b| {
                if via_rank(via) < via_rank(b) {
                    *b = via;
                }
            })
            .or_insert(via);
    }
    let merged: Vec<(i64, Option<String>)> = merge_sources(&sources, direction, limit + 1)
        .into_iter()
        .map(|(seq, via)| match best.get(&seq) {
            Some(b) => (seq, (*b).clone()),
            None => (seq, via),
        })
        .collect();
    let (rows, more) = finish_page(merged, from, limit);
    render_page(conn, rows, more)
}

impl SqliteStore {
    /// Reads `user`'s inbox: written entries merged with read-time sources, filtered, paged.
    pub async fn inbox(
        &self,
        user: User,
        filter: InboxFilter,
        from: PageFrom,
        limit: usize,
    ) -> StoreResult<Page> {
        let watermark = self.routed_seq();
        self.read(move |conn| read_inbox(conn, user.id, watermark, &filter, from, limit))
            .await
    }

    /// Hides one activity in `user`'s inbox only; the streams keep it.
    pub async fn hide_in_inbox(&self, user: User, activity_id: &str) -> StoreResult<()> {
        let activity_id = activity_id.to_owned();
        self.write(move |conn| {
            let seq: i64 = conn
                .prepare_cached("SELECT seq FROM activities WHERE id = ?1")?
                .query_row([&activity_id], |r| r.get(0))
                .optional()?
                .filter(|&seq| can_read(conn, seq, &user).unwrap_or(false))
                .ok_or(StoreError::not_found("activity"))?;
            conn.prepare_cached(
                "INSERT OR IGNORE INTO inbox_hidden(user_id, seq) VALUES (?1, ?2)",
            )?
            .execute(params![user.id, seq])?;
            Ok(())
        })
        .await
    }
}
