//! Search: the full-text index over the log's text, and finding activities, circles and
//! people with it.
//!
//! The index is a projection (decision 0020): `search_docs` holds each indexed activity's
//! current text (the latest edit's, for edited ones) and the engine's own index holds its
//! words as [`tidings_core::search::index_text`] spells them, so both engines agree on what a
//! word is: SQLite an FTS5 table (`search_fts`, rowid = seq), PostgreSQL a weighted `tsvector`
//! column with a GIN index. Publishing writes it in the activity's own transaction, an edit
//! replaces it, a retraction removes it; `tidings rebuild` and `tidings store copy` re-derive
//! it from the log ([`reindex_all`]).
//!
//! Visibility is part of every search statement (the same rule as every listing,
//! [`super::activities::READABLE`], plus the caller's hides), applied before ranking: a best-
//! match search ranks the [`SEARCH_CANDIDATES`] newest matches the caller may read.

use super::activities::{LIVE, READABLE, render_text};
use super::circles::{CIRCLE_COLUMNS, circle_from_row, membership};
use super::users::{USER_COLUMNS, user_from_row};
use super::{Shared, Store};
use crate::model::{
    ActivityHit, ActivitySearch, CircleHit, PersonHit, SEARCH_CANDIDATES, SearchPage, SearchSort,
    User,
};
use crate::sql::{Connection, Engine, OptionalExtension, OwnedValue, params, params_from_iter};
use crate::{StoreError, StoreResult};
use serde_json::Value;
use tidings_core::activity::record_tags;
use tidings_core::search::{BestCursor, Query, Term, highlight, index_text};

/// Characters of text a snippet shows.
const SNIPPET_CHARS: usize = 200;
/// Characters of a title shown (names are short; a long one is cut like a snippet).
const TITLE_CHARS: usize = 120;

/// The text of an activity's inline object that search looks at: (object type, title,
/// body). None when the activity has no inline object (a like, a follow, a share).
pub(crate) fn object_text(object: &Value) -> Option<(String, String, String)> {
    let map = object.as_object()?;
    let text = |key: &str| map.get(key).and_then(Value::as_str).unwrap_or("").trim();
    let object_type = map.get("type").and_then(Value::as_str).unwrap_or("Note");
    let body = [text("summary"), text("content")]
        .into_iter()
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    Some((object_type.to_owned(), text("name").to_owned(), body))
}

/// Writes (or replaces) the index entry of `seq`.
fn put_doc(
    conn: &Connection,
    seq: i64,
    object_type: &str,
    title: &str,
    body: &str,
    tags: &str,
) -> StoreResult<()> {
    remove_doc(conn, seq)?;
    conn.prepare_cached(
        "INSERT INTO search_docs(seq, object_type, title, body, tags) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![seq, object_type, title, body, tags])?;
    let (title_words, tag_words, body_words) =
        (index_text(title), index_text(tags), index_text(body));
    match conn.engine() {
        Engine::Sqlite => {
            conn.prepare_cached(
                "INSERT INTO search_fts(rowid, title, tags, body) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![seq, title_words, tag_words, body_words])?;
        }
        Engine::Postgres => {
            conn.prepare_cached(
                "UPDATE search_docs SET doc =
                     setweight(to_tsvector('simple'::regconfig, CAST(?2 AS TEXT)), 'A')
                  || setweight(to_tsvector('simple'::regconfig, CAST(?3 AS TEXT)), 'B')
                  || setweight(to_tsvector('simple'::regconfig, CAST(?4 AS TEXT)), 'C')
                 WHERE seq = ?1",
            )?
            .execute(params![seq, title_words, tag_words, body_words])?;
        }
    }
    Ok(())
}

/// Removes the index entry of `seq`, if it has one.
fn remove_doc(conn: &Connection, seq: i64) -> StoreResult<()> {
    let removed = conn
        .prepare_cached("DELETE FROM search_docs WHERE seq = ?1")?
        .execute([seq])?;
    if removed > 0 && conn.engine() == Engine::Sqlite {
        conn.prepare_cached("DELETE FROM search_fts WHERE rowid = ?1")?
            .execute([seq])?;
    }
    Ok(())
}

/// Indexes a newly published activity when it carries an object with text; says whether it
/// did.
pub(crate) fn index_published(conn: &Connection, seq: i64, record: &Value) -> StoreResult<bool> {
    let Some((object_type, title, body)) = record.get("object").and_then(object_text) else {
        return Ok(false);
    };
    let tags = record_tags(record).join(" ");
    if title.is_empty() && body.is_empty() && tags.is_empty() {
        return Ok(false);
    }
    put_doc(conn, seq, &object_type, &title, &body, &tags)?;
    Ok(true)
}

/// An Update of `target` was published: its entry now holds the update's object's text.
pub(crate) fn index_edit(conn: &Connection, target: i64, update: &Value) -> StoreResult<()> {
    let Some((object_type, title, body)) = update.get("object").and_then(object_text) else {
        return Ok(());
    };
    let target_body: Option<String> = conn
        .prepare_cached("SELECT body FROM activities WHERE seq = ?1")?
        .query_row([target], |r| r.get(0))
        .optional()?;
    let tags = match target_body {
        Some(text) => record_tags(&serde_json::from_str(&text)?).join(" "),
        None => String::new(),
    };
    put_doc(conn, target, &object_type, &title, &body, &tags)
}

/// `seq` was retracted: it leaves the index in the same transaction.
pub(crate) fn index_retraction(conn: &Connection, seq: i64) -> StoreResult<()> {
    remove_doc(conn, seq)
}

/// Re-derives the whole index from the log: every listed, unretracted activity with text,
/// with its latest edit's text. Runs inside the caller's transaction.
pub(crate) fn reindex_all(conn: &Connection) -> StoreResult<u64> {
    conn.execute_batch("DELETE FROM search_docs")?;
    if conn.engine() == Engine::Sqlite {
        conn.execute_batch("DELETE FROM search_fts")?;
    }
    let mut indexed = 0u64;
    let mut last = 0i64;
    loop {
        // In slices, so a large log is never held in memory at once.
        let rows: Vec<(i64, String, Option<String>)> = conn
            .prepare_cached(&format!(
                "SELECT a.seq, a.body,
                        (SELECT u.body FROM edits e JOIN activities u ON u.seq = e.update_seq
                         WHERE e.target_seq = a.seq ORDER BY e.update_seq DESC LIMIT 1)
                 FROM activities a WHERE a.seq > ?1 AND {LIVE} ORDER BY a.seq LIMIT 500"
            ))?
            .query_map([last], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?;
        let Some(&(end, _, _)) = rows.last() else {
            break;
        };
        for (seq, body, edit) in rows {
            let record: Value = serde_json::from_str(&body)?;
            if !index_published(conn, seq, &record)? {
                continue;
            }
            if let Some(edit) = edit {
                index_edit(conn, seq, &serde_json::from_str(&edit)?)?;
            }
            indexed += 1;
        }
        last = end;
    }
    Ok(indexed)
}

/// A statement built piece by piece, its arguments numbered as they are added.
#[derive(Default)]
struct Sql {
    text: String,
    args: Vec<OwnedValue>,
}

impl Sql {
    /// Adds an argument; returns its placeholder.
    fn arg(&mut self, value: OwnedValue) -> String {
        self.args.push(value);
        format!("?{}", self.args.len())
    }

    fn text_arg(&mut self, value: &str) -> String {
        self.arg(OwnedValue::Text(value.to_owned()))
    }

    fn push(&mut self, text: &str) {
        self.text.push_str(text);
    }
}

/// A term in FTS5's syntax: a quoted phrase of its words (a `*` after it makes the last one
/// a prefix). Words are letters and digits only, so quoting cannot be escaped from.
fn fts5_term(term: &Term) -> String {
    let star = if term.prefix { "*" } else { "" };
    format!("\"{}\"{star}", term.words.join(" "))
}

/// A term in `tsquery` syntax: its words adjacent (`<->`), the last one `:*` if a prefix.
fn tsquery_term(term: &Term) -> String {
    let last = term.words.len().saturating_sub(1);
    term.words
        .iter()
        .enumerate()
        .map(|(i, w)| {
            if term.prefix && i == last {
                format!("'{w}':*")
            } else {
                format!("'{w}'")
            }
        })
        .collect::<Vec<_>>()
        .join(" <-> ")
}

/// The engine's match expression for "every one of `include`, none of `exclude`"; None when
/// `include` is empty (an engine cannot match on exclusions alone).
fn match_expr(engine: Engine, include: &[Term], exclude: &[Term]) -> Option<String> {
    if include.is_empty() {
        return None;
    }
    Some(match engine {
        Engine::Sqlite => {
            let inc = include.iter().map(fts5_term).collect::<Vec<_>>();
            let mut expr = format!("({})", inc.join(" AND "));
            if !exclude.is_empty() {
                let exc = exclude.iter().map(fts5_term).collect::<Vec<_>>();
                expr = format!("{expr} NOT ({})", exc.join(" OR "));
            }
            expr
        }
        Engine::Postgres => {
            let mut parts: Vec<String> = include
                .iter()
                .map(|t| format!("({})", tsquery_term(t)))
                .collect();
            parts.extend(exclude.iter().map(|t| format!("!({})", tsquery_term(t))));
            parts.join(" & ")
        }
    })
}

/// The filters every activity search applies, over `a` (activities) and `d` (search_docs):
/// the caller may read it (no admin exception: search shows a person what is theirs to
/// read), it is listed and not retracted, not hidden by them, and the query's filters.
fn filters(sql: &mut Sql, viewer: &User, search: &ActivitySearch) {
    let v = sql.arg(OwnedValue::Integer(viewer.id));
    let readable = READABLE.replace("?V", &v).replace("?A", "FALSE");
    sql.push(&format!(
        " AND {readable} AND {LIVE}
          AND NOT EXISTS(SELECT 1 FROM inbox_hidden h WHERE h.user_id = {v} AND h.seq = a.seq)"
    ));
    let q = &search.query;
    for author in &q.from {
        let p = sql.text_arg(author);
        sql.push(&format!(
            " AND a.actor_id IN (SELECT id FROM users WHERE username = {p})"
        ));
    }
    for circle in &q.circles {
        let p = sql.text_arg(circle);
        sql.push(&format!(
            " AND EXISTS(SELECT 1 FROM activity_circles ac JOIN circles c ON c.id = ac.circle_id
                         WHERE ac.seq = a.seq AND c.name = {p})"
        ));
    }
    for tag in &q.tags {
        let p = sql.text_arg(tag);
        sql.push(&format!(
            " AND EXISTS(SELECT 1 FROM activity_tags t WHERE t.seq = a.seq AND t.tag = {p})"
        ));
    }
    if !search.object_types.is_empty() {
        let list: Vec<String> = search
            .object_types
            .iter()
            .map(|t| sql.text_arg(t))
            .collect();
        sql.push(&format!(" AND d.object_type IN ({})", list.join(", ")));
    }
    if let Some(since) = &search.since {
        let p = sql.text_arg(since);
        sql.push(&format!(" AND a.published >= {p}"));
    }
    if let Some(until) = &search.until {
        let p = sql.text_arg(until);
        sql.push(&format!(" AND a.published < {p}"));
    }
}

/// The FROM clause and match predicate: the engine's index when there are words to match,
/// the documents alone otherwise (filters and exclusions only). Returns the column to order
/// and bound by: the index's own order where it has one (FTS5 walks rowids in either
/// direction and stops early; sorting by the joined `a.seq` would sort every match).
fn source(sql: &mut Sql, engine: Engine, search: &ActivitySearch) -> &'static str {
    let q = &search.query;
    let expr = match_expr(engine, &q.include, &q.exclude);
    match (engine, expr) {
        (Engine::Sqlite, Some(expr)) => {
            let p = sql.text_arg(&expr);
            sql.push(&format!(
                " FROM search_fts JOIN activities a ON a.seq = search_fts.rowid
                  JOIN search_docs d ON d.seq = a.seq
                  WHERE search_fts MATCH {p}"
            ));
            "search_fts.rowid"
        }
        (Engine::Postgres, Some(expr)) => {
            let p = sql.text_arg(&expr);
            sql.push(&format!(
                " FROM search_docs d JOIN activities a ON a.seq = d.seq
                  WHERE d.doc @@ to_tsquery('simple'::regconfig, CAST({p} AS TEXT))"
            ));
            "d.seq"
        }
        (_, None) => {
            sql.push(" FROM search_docs d JOIN activities a ON a.seq = d.seq WHERE TRUE");
            let any: Vec<Term> = q.exclude.clone();
            for term in &any {
                let excluded = match_expr(engine, std::slice::from_ref(term), &[]);
                let Some(excluded) = excluded else { continue };
                let p = sql.text_arg(&excluded);
                match engine {
                    Engine::Sqlite => sql.push(&format!(
                        " AND a.seq NOT IN (SELECT rowid FROM search_fts WHERE search_fts MATCH {p})"
                    )),
                    Engine::Postgres => sql.push(&format!(
                        " AND NOT (d.doc @@ to_tsquery('simple'::regconfig, CAST({p} AS TEXT)))"
                    )),
                }
            }
            "d.seq"
        }
    }
}

/// One activity found.
struct Found {
    seq: i64,
    score: f64,
    /// Its cursor position.
    position: i64,
    /// Its indexed title and text (fetched with it: on PostgreSQL each lookup is a round trip).
    title: String,
    body: String,
}

/// Finds activities: a page of them in order, and whether more follow.
fn find_activities(
    conn: &Connection,
    viewer: &User,
    search: &ActivitySearch,
) -> StoreResult<(Vec<Found>, bool)> {
    let engine = conn.engine();
    let want = search.limit + 1;
    let mut sql = Sql::default();
    let best = search.sort == SearchSort::Best && !search.query.include.is_empty();
    if !best {
        sql.push("SELECT a.seq, d.title, d.body");
        let order = source(&mut sql, engine, search);
        filters(&mut sql, viewer, search);
        if let Some(before) = search.after {
            let p = sql.arg(OwnedValue::Integer(before));
            sql.push(&format!(" AND {order} < {p}"));
        }
        let n = sql.arg(OwnedValue::Integer(want as i64));
        sql.push(&format!(" ORDER BY {order} DESC LIMIT {n}"));
        let rows: Vec<(i64, String, String)> = conn
            .prepare_cached(&sql.text)?
            .query_map(params_from_iter(sql.args), |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?
            .collect::<Result<_, _>>()?;
        let more = rows.len() > search.limit;
        let hits = rows
            .into_iter()
            .take(search.limit)
            .map(|(seq, title, body)| Found {
                seq,
                score: 0.0,
                position: seq,
                title,
                body,
            })
            .collect();
        return Ok((hits, more));
    }
    // Best match: the newest SEARCH_CANDIDATES readable matches up to a fixed seq, ranked.
    let cursor = match search.after {
        Some(position) => BestCursor::unpack(position),
        None => BestCursor {
            upto: conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM activities", [], |r| {
                r.get(0)
            })?,
            offset: 0,
        },
    };
    match engine {
        Engine::Sqlite => {
            sql.push(
                "SELECT c.seq, c.score, d2.title, d2.body FROM (SELECT a.seq AS seq,
                 -bm25(search_fts, 10.0, 4.0, 1.0) AS score",
            );
        }
        Engine::Postgres => sql.push(
            "SELECT c.seq, c.score, d2.title, d2.body FROM (SELECT a.seq AS seq, d.doc AS doc",
        ),
    }
    let order = source(&mut sql, engine, search);
    filters(&mut sql, viewer, search);
    let upto = sql.arg(OwnedValue::Integer(cursor.upto));
    let candidates = sql.arg(OwnedValue::Integer(SEARCH_CANDIDATES));
    sql.push(&format!(
        " AND {order} <= {upto} ORDER BY {order} DESC LIMIT {candidates}) c
          JOIN search_docs d2 ON d2.seq = c.seq"
    ));
    if engine == Engine::Postgres {
        // Ranked outside the candidate subquery, so only the candidates are ranked.
        let expr =
            match_expr(engine, &search.query.include, &search.query.exclude).unwrap_or_default();
        let p = sql.text_arg(&expr);
        sql.text = sql.text.replacen(
            "SELECT c.seq, c.score, d2.title, d2.body FROM",
            &format!(
                "SELECT c.seq, CAST(ts_rank_cd(c.doc, to_tsquery('simple'::regconfig, CAST({p} AS TEXT)), 1) AS DOUBLE PRECISION) AS score, d2.title, d2.body FROM"
            ),
            1,
        );
    }
    let n = sql.arg(OwnedValue::Integer(want as i64));
    let offset = sql.arg(OwnedValue::Integer(cursor.offset));
    sql.push(&format!(
        " ORDER BY score DESC, c.seq DESC LIMIT {n} OFFSET {offset}"
    ));
    let rows: Vec<(i64, f64, String, String)> = conn
        .prepare_cached(&sql.text)?
        .query_map(params_from_iter(sql.args), |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?
        .collect::<Result<_, _>>()?;
    let more = rows.len() > search.limit;
    let mut hits = Vec::with_capacity(search.limit);
    for (i, (seq, score, title, body)) in rows.into_iter().take(search.limit).enumerate() {
        let position = BestCursor {
            upto: cursor.upto,
            offset: cursor.offset + i as i64 + 1,
        }
        .pack()
        .ok_or_else(|| StoreError::Corrupt("search cursor out of range".into()))?;
        hits.push(Found {
            seq,
            score,
            position,
            title,
            body,
        });
    }
    Ok((hits, more))
}

/// Escapes `%`, `_` and `\` for a LIKE pattern with `ESCAPE '\'`.
fn like_escape(word: &str) -> String {
    word.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// LIKE conditions over `haystack` (a lowercased SQL expression): every included word
/// appears, no excluded term has all its words.
fn like_filters(sql: &mut Sql, haystack: &str, query: &Query) {
    for term in &query.include {
        for word in &term.words {
            let p = sql.text_arg(&format!("%{}%", like_escape(word)));
            sql.push(&format!(" AND {haystack} LIKE {p} ESCAPE '\\'"));
        }
    }
    for term in &query.exclude {
        let all: Vec<String> = term
            .words
            .iter()
            .map(|w| {
                let p = sql.text_arg(&format!("%{}%", like_escape(w)));
                format!("{haystack} LIKE {p} ESCAPE '\\'")
            })
            .collect();
        sql.push(&format!(" AND NOT ({})", all.join(" AND ")));
    }
}

/// Bits of a circle or person position that hold the id; the bucket sits above them.
const ID_BITS: u32 = 40;

/// How well a name matches the query's first word: 0 exactly, 1 as a prefix, 2 elsewhere
/// (newest first ignores it: always 0).
fn bucket_expr(sql: &mut Sql, name: &str, query: &Query, sort: SearchSort) -> String {
    let first = query.include.first().and_then(|t| t.words.first());
    match (sort, first) {
        (SearchSort::Best, Some(word)) => {
            let exact = sql.text_arg(word);
            let prefix = sql.text_arg(&format!("{}%", like_escape(word)));
            format!(
                "(CASE WHEN lower({name}) = {exact} THEN 0
                       WHEN lower({name}) LIKE {prefix} ESCAPE '\\' THEN 1 ELSE 2 END)"
            )
        }
        _ => "0".to_owned(),
    }
}

/// The keyset condition after `position` for rows ordered by (bucket, id DESC).
fn after_position(sql: &mut Sql, bucket: &str, id: &str, position: Option<i64>) {
    if let Some(position) = position {
        let (b, last) = (position >> ID_BITS, position & ((1 << ID_BITS) - 1));
        let pb = sql.arg(OwnedValue::Integer(b));
        let pid = sql.arg(OwnedValue::Integer(last));
        sql.push(&format!(
            " AND ({bucket} > {pb} OR ({bucket} = {pb} AND {id} < {pid}))"
        ));
    }
}

impl Store {
    /// Finds activities the viewer may read (see [`ActivitySearch`]).
    pub async fn search_activities(
        &self,
        viewer: User,
        search: ActivitySearch,
    ) -> StoreResult<SearchPage<ActivityHit>> {
        let shared = self.shared.clone();
        self.read(move |conn| search_activities_on(conn, &shared, &viewer, &search))
            .await
    }

    /// Finds circles the viewer may see: public ones and their own.
    pub async fn search_circle_hits(
        &self,
        viewer: User,
        query: Query,
        sort: SearchSort,
        after: Option<i64>,
        limit: usize,
    ) -> StoreResult<SearchPage<CircleHit>> {
        self.read(move |conn| {
            let mut sql = Sql::default();
            let bucket = bucket_expr(&mut sql, "c.name", &query, sort);
            sql.push(&format!(
                "SELECT {CIRCLE_COLUMNS}, {bucket} AS bucket FROM circles c WHERE TRUE"
            ));
            let v = sql.arg(OwnedValue::Integer(viewer.id));
            sql.push(&format!(
                " AND (c.visibility = 'public' OR EXISTS(SELECT 1 FROM memberships m
                       WHERE m.circle_id = c.id AND m.user_id = {v} AND m.state = 'active'))"
            ));
            like_filters(
                &mut sql,
                "lower(c.name || ' ' || c.display_name || ' ' || c.description)",
                &query,
            );
            after_position(&mut sql, &bucket, "c.id", after);
            let n = sql.arg(OwnedValue::Integer(limit as i64 + 1));
            sql.push(&format!(" ORDER BY bucket, c.id DESC LIMIT {n}"));
            let rows: Vec<(crate::model::Circle, i64)> = conn
                .prepare_cached(&sql.text)?
                .query_map(params_from_iter(sql.args), |r| {
                    Ok((circle_from_row(r)?, r.get(10)?))
                })?
                .collect::<Result<_, _>>()?;
            let more = rows.len() > limit;
            let marks = query.marks();
            let mut items = Vec::with_capacity(limit);
            for (mut circle, bucket) in rows.into_iter().take(limit) {
                circle.my_membership = membership(conn, circle.id, viewer.id)?;
                items.push(CircleHit {
                    position: (bucket << ID_BITS) | circle.id,
                    title: highlight(&circle.display_name, &marks, TITLE_CHARS),
                    snippet: highlight(&circle.description, &marks, SNIPPET_CHARS),
                    circle,
                });
            }
            let next = more.then(|| items.last().map(|h| h.position)).flatten();
            Ok(SearchPage { items, next })
        })
        .await
    }

    /// Finds people (active accounts) by user name and display name.
    pub async fn search_people(
        &self,
        query: Query,
        sort: SearchSort,
        after: Option<i64>,
        limit: usize,
    ) -> StoreResult<SearchPage<PersonHit>> {
        self.read(move |conn| {
            let mut sql = Sql::default();
            let bucket = bucket_expr(&mut sql, "u.username", &query, sort);
            let columns = USER_COLUMNS
                .split(", ")
                .map(|c| format!("u.{c}"))
                .collect::<Vec<_>>()
                .join(", ");
            sql.push(&format!(
                "SELECT {columns}, {bucket} AS bucket FROM users u WHERE u.status = 'active'"
            ));
            like_filters(
                &mut sql,
                "lower(u.username || ' ' || u.display_name)",
                &query,
            );
            after_position(&mut sql, &bucket, "u.id", after);
            let n = sql.arg(OwnedValue::Integer(limit as i64 + 1));
            sql.push(&format!(" ORDER BY bucket, u.id DESC LIMIT {n}"));
            let rows: Vec<(User, i64)> = conn
                .prepare_cached(&sql.text)?
                .query_map(params_from_iter(sql.args), |r| {
                    Ok((user_from_row(r)?, r.get(6)?))
                })?
                .collect::<Result<_, _>>()?;
            let more = rows.len() > limit;
            let marks = query.marks();
            let items: Vec<PersonHit> = rows
                .into_iter()
                .take(limit)
                .map(|(user, bucket)| PersonHit {
                    position: (bucket << ID_BITS) | user.id,
                    title: highlight(&user.display_name, &marks, TITLE_CHARS),
                    snippet: highlight(&user.username, &marks, TITLE_CHARS),
                    user,
                })
                .collect();
            let next = more.then(|| items.last().map(|h| h.position)).flatten();
            Ok(SearchPage { items, next })
        })
        .await
    }
}

fn search_activities_on(
    conn: &Connection,
    shared: &Shared,
    viewer: &User,
    search: &ActivitySearch,
) -> StoreResult<SearchPage<ActivityHit>> {
    if conn.engine() == Engine::Postgres {
        // A prepared statement's generic plan cannot know how common the words are: it walks
        // the newest rows for a rare word (measured: 18 ms instead of 1 ms at 20k posts). A
        // custom plan per search reads the words' statistics and picks the GIN index or the
        // seq order; SET LOCAL keeps that to this transaction.
        conn.execute_batch("BEGIN READ ONLY; SET LOCAL plan_cache_mode = force_custom_plan")?;
        let page = page_of_activities(conn, shared, viewer, search);
        let end = if page.is_ok() { "COMMIT" } else { "ROLLBACK" };
        conn.execute_batch(end)?;
        return page;
    }
    page_of_activities(conn, shared, viewer, search)
}

fn page_of_activities(
    conn: &Connection,
    shared: &Shared,
    viewer: &User,
    search: &ActivitySearch,
) -> StoreResult<SearchPage<ActivityHit>> {
    let (found, more) = find_activities(conn, viewer, search)?;
    let marks = search.query.marks();
    let mut items = Vec::with_capacity(found.len());
    for hit in found {
        items.push(ActivityHit {
            seq: hit.seq,
            position: hit.position,
            score: hit.score,
            activity: render_text(conn, shared, hit.seq)?,
            title: highlight(&hit.title, &marks, TITLE_CHARS),
            snippet: highlight(&hit.body, &marks, SNIPPET_CHARS),
        });
    }
    let next = more.then(|| items.last().map(|h| h.position)).flatten();
    Ok(SearchPage { items, next })
}
