//! Feeds declared in the configuration: flat, notification and aggregated, with seen/read
//! markers.

use crate::AppState;
use crate::api::inbox::{InboxArgs, parse_filter};
use crate::auth::AuthUser;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiPath, ApiQuery};
use crate::pagination::{PageArgs, PageBody, page_cursors, render_item};
use crate::response::RawJson;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tidings_core::cursor;
use tidings_core::feeds::{FeedKind, FeedSpec};
use tidings_store::model::{FeedCounts, PageFrom};
use utoipa::ToSchema;

/// A declared feed with the caller's counts.
#[derive(Debug, Serialize, ToSchema)]
pub struct FeedInfo {
    /// Name, as in `/api/v1/feeds/{name}`.
    pub name: String,
    /// flat | aggregated | notification.
    pub kind: String,
    /// Verbs (activity types, or notification reasons) it takes; empty: all.
    pub verbs: Vec<String>,
    /// Items (groups) newer than the caller's seen marker, at most `max_cache`.
    pub unseen: usize,
    /// Items (groups) newer than the caller's read marker, at most `max_cache`.
    pub unread: usize,
}

/// A marker move: up to a cursor, or (without one) everything so far.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MarkBody {
    /// Mark items up to and including this cursor.
    #[schema(schema_with = crate::pagination::optional_cursor_schema)]
    pub cursor: Option<String>,
}

/// One group of an aggregated feed (documents the shape `render_groups` writes).
#[derive(Debug, Serialize, ToSchema)]
pub struct GroupBody {
    /// Cursor of the group's newest activity.
    pub cursor: String,
    /// Stable id of the group.
    pub id: String,
    /// The verb the group gathers.
    pub verb: String,
    /// Activities in the group.
    pub activity_count: usize,
    /// Distinct actors in the group.
    pub actor_count: usize,
    /// The newest actors.
    #[schema(value_type = Vec<Object>)]
    pub actors: Vec<Value>,
    /// The newest activities, as page items.
    pub activities: Vec<crate::pagination::PageItemBody>,
}

/// A page of an aggregated feed, newest group first.
#[derive(Debug, Serialize, ToSchema)]
pub struct GroupPageBody {
    /// Groups, newest first.
    pub items: Vec<GroupBody>,
    /// Pass as `before` for older groups; absent at the end.
    pub next: Option<String>,
    /// Pass as `after` for newer groups.
    pub prev: Option<String>,
    /// Groups newer than the seen marker.
    pub unseen: usize,
    /// Groups newer than the read marker.
    pub unread: usize,
}

/// What `GET /api/v1/feeds/{name}` answers: a page of items (flat and notification feeds, the
/// latter with `unseen` / `unread`), or a page of groups (aggregated feeds).
pub struct FeedPageBody;

impl utoipa::PartialSchema for FeedPageBody {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        crate::openapi::schema_from_json(serde_json::json!({
            "anyOf": [
                {"$ref": "#/components/schemas/PageBody"},
                {"$ref": "#/components/schemas/GroupPageBody"},
            ],
        }))
    }
}

impl utoipa::ToSchema for FeedPageBody {}

/// The caller's markers and counts after a move.
#[derive(Debug, Serialize, ToSchema)]
pub struct MarkerBody {
    /// Feed name.
    pub feed: String,
    /// Items (groups) newer than the seen marker.
    pub unseen: usize,
    /// Items (groups) newer than the read marker.
    pub unread: usize,
    /// Cursor of the seen marker (null: nothing seen yet).
    pub seen: Option<String>,
    /// Cursor of the read marker.
    pub read: Option<String>,
}

fn feed_spec<'a>(state: &'a AppState, name: &str) -> ApiResult<&'a FeedSpec> {
    state
        .config
        .feed(name)
        .ok_or_else(|| ApiError::not_found("feed"))
}

fn kind_name(kind: FeedKind) -> &'static str {
    match kind {
        FeedKind::Flat => "flat",
        FeedKind::Aggregated => "aggregated",
        FeedKind::Notification => "notification",
    }
}

/// Every declared feed, with the caller's unseen and unread counts.
#[utoipa::path(get, path = "/api/v1/feeds", operation_id = "list_feeds", tag = "feeds", security(("bearer" = [])),
    responses((status = 200, body = Vec<FeedInfo>)))]
pub async fn list(State(state): State<AppState>, auth: AuthUser) -> ApiResult<Json<Vec<FeedInfo>>> {
    let mut out = Vec::new();
    for spec in &state.config.feeds {
        let counts = state.store.feed_counts(&auth.user, spec)?;
        out.push(FeedInfo {
            name: spec.name.clone(),
            kind: kind_name(spec.kind).to_owned(),
            verbs: spec.verbs.clone(),
            unseen: counts.unseen,
            unread: counts.unread,
        });
    }
    Ok(Json(out))
}

/// Splices extra fields into a rendered JSON object.
fn with_fields(body: RawJson, fields: &[(&str, String)]) -> RawJson {
    let mut text = body.0;
    if text.ends_with('}') {
        text.pop();
        for (key, value) in fields {
            text.push_str(&format!(",\"{key}\":{value}"));
        }
        text.push('}');
    }
    RawJson(text)
}

fn counts_fields(counts: &FeedCounts) -> Vec<(&'static str, String)> {
    vec![
        ("unseen", counts.unseen.to_string()),
        ("unread", counts.unread.to_string()),
    ]
}

/// Reads a feed. Flat and notification feeds page like the inbox (`items` with `cursor`,
/// `via`, `activity`; notification items carry their reason as `via`); aggregated feeds page
/// groups (`items` of `{cursor, id, verb, activity_count, actor_count, actors, activities}`).
/// Notification and aggregated pages also carry `unseen` and `unread`.
#[utoipa::path(get, path = "/api/v1/feeds/{name}", operation_id = "read_feed", tag = "feeds", security(("bearer" = [])),
    params(("name" = String, Path), InboxArgs),
    responses((status = 200, body = FeedPageBody), (status = 400), (status = 404),
        (status = 422, description = "`filter_not_supported`: notification and aggregated feeds take no circle, tag or kind filter; no feed takes `from` (an inbox filter)")))]
pub async fn read(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(name): ApiPath<String>,
    ApiQuery(args): ApiQuery<InboxArgs>,
) -> ApiResult<RawJson> {
    let spec = feed_spec(&state, &name)?;
    let (from, limit) = PageArgs {
        limit: args.limit,
        before: args.before.clone(),
        after: args.after.clone(),
    }
    .resolve()?;
    let filter = parse_filter(&args)?;
    if crate::api::inbox::parse_from(&args)?.is_some() {
        // A group filter narrows the inbox only (decision 0027).
        return Err(ApiError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "filter_not_supported",
            "from=group:… filters the inbox, not feeds",
        ));
    }
    let filtered = !filter.circles.is_empty() || !filter.tags.is_empty() || filter.kind.is_some();
    match spec.kind {
        FeedKind::Flat => {
            let page = state
                .store
                .feed_page(auth.user, spec, filter, from, limit)
                .await?;
            Ok(PageBody::render(page, from))
        }
        // Well-formed filters the named feed cannot apply: what fails is the pairing with this
        // feed's kind (configuration), not the request's shape, hence 422 rather than 400.
        FeedKind::Notification | FeedKind::Aggregated if filtered => Err(ApiError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "filter_not_supported",
            format!(
                "{} feeds take no circle, tag or kind filter",
                kind_name(spec.kind)
            ),
        )),
        FeedKind::Notification => {
            let counts = state.store.feed_counts(&auth.user, spec)?;
            let page = state
                .store
                .notification_page(auth.user, spec, from, limit)
                .await?;
            Ok(with_fields(
                PageBody::render(page, from),
                &counts_fields(&counts),
            ))
        }
        FeedKind::Aggregated => {
            let counts = state.store.feed_counts(&auth.user, spec)?;
            let page = state
                .store
                .aggregated_page(auth.user, spec, from, limit)
                .await?;
            Ok(render_groups(page, from, &counts))
        }
    }
}

fn render_groups(
    page: tidings_store::model::GroupPage,
    from: PageFrom,
    counts: &FeedCounts,
) -> RawJson {
    let (next, prev) = page_cursors(
        page.groups.first().map(|g| g.newest_seq),
        page.groups.last().map(|g| g.newest_seq),
        page.has_older,
        from,
    );
    let json = |v: Value| v.to_string();
    let mut out = String::from("{\"items\":[");
    for (i, group) in page.groups.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&format!(
            "{{\"cursor\":{},\"id\":{},\"verb\":{},\"activity_count\":{},\"actor_count\":{},\"actors\":[",
            json(Value::String(cursor::encode(group.newest_seq))),
            json(Value::String(group.id.clone())),
            json(Value::String(group.verb.clone())),
            group.activity_count,
            group.actor_count,
        ));
        out.push_str(
            &group
                .actors
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(","),
        );
        out.push_str("],\"activities\":[");
        for (j, item) in group.activities.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            render_item(&mut out, item);
        }
        out.push_str("]}");
    }
    out.push_str("],\"next\":");
    out.push_str(&json(next.map_or(Value::Null, Value::String)));
    out.push_str(",\"prev\":");
    out.push_str(&json(prev.map_or(Value::Null, Value::String)));
    out.push_str(&format!(
        ",\"unseen\":{},\"unread\":{}}}",
        counts.unseen, counts.unread
    ));
    RawJson(out)
}

/// The optional body of a marker move: empty, or `{"cursor": …}`.
fn mark_body(body: &[u8]) -> ApiResult<Option<MarkBody>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    // JSON `null` is no body too: the body is optional, and that is how JSON says "none".
    serde_json::from_slice::<Option<MarkBody>>(body)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("body: {e}")))
}

async fn mark(
    state: &AppState,
    auth: AuthUser,
    name: &str,
    body: Option<MarkBody>,
    read: bool,
) -> ApiResult<Json<MarkerBody>> {
    let spec = feed_spec(state, name)?;
    let upto = match body.and_then(|b| b.cursor) {
        Some(c) => Some(
            cursor::decode(c.trim())
                .map_err(|e| ApiError::bad_request("invalid_cursor", e.to_string()))?,
        ),
        None => None,
    };
    let (seen, read_to) = state
        .store
        .mark_feed(auth.user.clone(), &spec.name, upto, read)
        .await?;
    let counts = state.store.feed_counts(&auth.user, spec)?;
    let shown = |seq: i64| (seq > 0).then(|| cursor::encode(seq));
    Ok(Json(MarkerBody {
        feed: spec.name.clone(),
        unseen: counts.unseen,
        unread: counts.unread,
        seen: shown(seen),
        read: shown(read_to),
    }))
}

/// Mark a feed seen, up to a cursor or entirely. Markers only move forward.
#[utoipa::path(post, path = "/api/v1/feeds/{name}/seen", tag = "feeds", security(("bearer" = [])),
    params(("name" = String, Path)), request_body(content = Option<MarkBody>, description = "optional"),
    responses((status = 200, body = MarkerBody), (status = 400), (status = 404)))]
pub async fn seen(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(name): ApiPath<String>,
    body: Bytes,
) -> ApiResult<Json<MarkerBody>> {
    mark(&state, auth, &name, mark_body(&body)?, false).await
}

/// Mark a feed read (and so seen), up to a cursor or entirely.
#[utoipa::path(post, path = "/api/v1/feeds/{name}/read", tag = "feeds", security(("bearer" = [])),
    params(("name" = String, Path)), request_body(content = Option<MarkBody>, description = "optional"),
    responses((status = 200, body = MarkerBody), (status = 400), (status = 404)))]
pub async fn mark_read(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(name): ApiPath<String>,
    body: Bytes,
) -> ApiResult<Json<MarkerBody>> {
    mark(&state, auth, &name, mark_body(&body)?, true).await
}
