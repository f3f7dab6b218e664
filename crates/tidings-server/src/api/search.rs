//! Search: `GET /api/v1/search` over activities, circles or people (decision 0020).
//!
//! The query is parsed by the pure core (`tidings_core::search`, typed errors → 400 here);
//! the filter parameters fold into it; the store runs it with visibility inside the statement.

use crate::AppState;
use crate::auth::AuthUser;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiQuery;
use crate::pagination::{MAX_LIMIT, optional_cursor_schema};
use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use tidings_core::cursor;
use tidings_core::expr::{normalize_slug, normalize_tag};
use tidings_core::search::{self, Query, QueryError};
use tidings_store::model::{ActivitySearch, Circle, SearchSort, User};
use utoipa::{IntoParams, ToSchema};

/// What a search looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SearchKind {
    /// Activities the caller may read (the default).
    #[default]
    Activities,
    /// Circles the caller may see.
    Circles,
    /// People (active accounts).
    People,
}

/// Search arguments.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchArgs {
    /// The query, at most 256 characters: words (all must match), `"a phrase"`, `-word` or
    /// `-"a phrase"` (must not match), `word*` (prefix), and the filters `from:USER`,
    /// `in:CIRCLE`, `tag:TAG`. The last word is matched as a prefix while typing (end the
    /// query with a space to match it whole). May be empty when a filter is given.
    #[serde(default)]
    #[param(max_length = 256)]
    pub q: String,
    /// What to find: `activities` (default), `circles` or `people`.
    #[serde(rename = "type")]
    #[param(rename = "type", inline)]
    pub kind: Option<SearchKind>,
    /// Activities addressed to this circle (same as `in:`).
    #[param(pattern = "^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")]
    pub circle: Option<String>,
    /// Activities by this user (same as `from:`).
    #[param(pattern = "^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")]
    pub author: Option<String>,
    /// Activities with this tag (same as `tag:`).
    #[param(pattern = r"^#?[\p{L}\p{N}_.-]{1,64}$")]
    pub tag: Option<String>,
    /// Activities whose object has this type (`Note`, `Article`, …).
    #[param(pattern = "^[A-Za-z0-9_]{1,64}$")]
    pub object_type: Option<String>,
    /// Activities published at or after this time (RFC 3339).
    #[param(format = DateTime)]
    pub since: Option<String>,
    /// Activities published before this time (RFC 3339).
    #[param(format = DateTime)]
    pub until: Option<String>,
    /// `newest` (default) or `best` (relevance, among the 1,000 newest matches).
    #[param(inline)]
    pub sort: Option<SearchSort>,
    /// Results per page, 1–100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<usize>,
    /// Cursor: the `next` of the previous page.
    #[param(schema_with = crate::pagination::cursor_schema)]
    pub before: Option<String>,
}

/// Highlighted text of a result: HTML-escaped, every matched word wrapped in
/// `<mark>`…`</mark>` (the only markup it contains, so it is safe to insert as HTML).
#[derive(Debug, Serialize, ToSchema)]
pub struct Highlight {
    /// The title (an object's `name`, a circle's or person's display name); may be empty.
    pub title: String,
    /// A piece of the text around the first match (≤ 200 characters, `…` where cut); a
    /// circle's description, a person's user name.
    pub snippet: String,
}

/// One result. Exactly one of `activity`, `circle` and `user` is present, as `type` asked.
#[derive(Debug, Serialize, ToSchema)]
pub struct SearchHit {
    /// Pass as `before` to continue after this result.
    #[schema(schema_with = crate::pagination::cursor_schema)]
    pub cursor: String,
    /// Relevance with `sort=best` (higher is better; comparable within one result only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    /// Highlighted text.
    pub highlight: Highlight,
    /// The activity, as `GET /activities/{id}` shows it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub activity: Option<serde_json::Value>,
    /// The circle.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub circle: Option<Circle>,
    /// The person.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<User>,
}

/// A page of results.
#[derive(Debug, Serialize, ToSchema)]
pub struct SearchResults {
    /// Results in order (newest first, or best first).
    pub items: Vec<SearchHit>,
    /// Pass as `before` for the next page; null at the end.
    #[schema(schema_with = optional_cursor_schema)]
    pub next: Option<String>,
}

/// The query with the filter parameters folded in.
fn full_query(args: &SearchArgs) -> ApiResult<Query> {
    let mut query = if args.q.trim().is_empty() {
        if args.q.chars().count() > search::MAX_QUERY_CHARS {
            return Err(QueryError::TooLong {
                chars: args.q.chars().count(),
                max: search::MAX_QUERY_CHARS,
            }
            .into());
        }
        Query::default()
    } else {
        match search::parse(&args.q) {
            Ok(query) => query,
            // Filters alone make a query.
            Err(QueryError::Empty) => Query::default(),
            Err(e) => return Err(e.into()),
        }
    };
    let invalid = |field: &'static str, e: tidings_core::expr::TagError| {
        ApiError::bad_request("invalid_filter", format!("{field}: {}", e.message))
            .with_details(serde_json::json!({ "field": field }))
    };
    if let Some(author) = &args.author {
        let name = normalize_slug(author).map_err(|e| invalid("author", e))?;
        query.from.push(name);
    }
    if let Some(circle) = &args.circle {
        let name = normalize_slug(circle).map_err(|e| invalid("circle", e))?;
        query.circles.push(name);
    }
    if let Some(tag) = &args.tag {
        let tag = normalize_tag(tag).map_err(|e| invalid("tag", e))?;
        query.tags.push(tag);
    }
    Ok(query)
}

/// An RFC 3339 time as the store writes times (UTC, milliseconds), so text order is time
/// order.
fn store_time(field: &'static str, raw: &str) -> ApiResult<String> {
    let bad = || {
        ApiError::bad_request(
            "invalid_filter",
            format!("{field} must be an RFC 3339 time, e.g. 2026-12-01T09:30:00Z"),
        )
        .with_details(serde_json::json!({ "field": field }))
    };
    let at = time::OffsetDateTime::parse(raw, &time::format_description::well_known::Rfc3339)
        .map_err(|_| bad())?
        .to_offset(time::UtcOffset::UTC);
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    at.format(&format).map_err(|_| bad())
}

/// Search activities, circles or people. Activities are only those the caller may read
/// (public, addressed to them, to their followers' circle when they follow the author, to a
/// circle that is public or that they are an active member of), never retracted ones or ones
/// they hid; edits are found by their latest text.
#[utoipa::path(get, path = "/api/v1/search", operation_id = "full_text_search", params(SearchArgs), tag = "search", security(("bearer" = [])),
    responses(
        (status = 200, body = SearchResults),
        (status = 400, description = "`query_too_long`, `query_too_many_terms`, `query_unclosed_quote`, `query_empty_operator`, `query_invalid_operator`, `query_empty`, `invalid_filter`, `invalid_limit`, `invalid_cursor`", body = crate::openapi::ErrorBody),
    ))]
pub async fn search(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiQuery(args): ApiQuery<SearchArgs>,
) -> ApiResult<Json<SearchResults>> {
    let limit = args.limit.unwrap_or(crate::pagination::DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::bad_request(
            "invalid_limit",
            format!("limit must be between 1 and {MAX_LIMIT}"),
        ));
    }
    let after = args
        .before
        .as_deref()
        .map(cursor::decode)
        .transpose()
        .map_err(|e| ApiError::bad_request("invalid_cursor", e.to_string()))?;
    let sort = args.sort.unwrap_or_default();
    let query = full_query(&args)?;
    let kind = args.kind.unwrap_or_default();
    let activity_filters = [
        ("circle", args.circle.is_some()),
        ("author", args.author.is_some()),
        ("tag", args.tag.is_some()),
        ("object_type", args.object_type.is_some()),
        ("since", args.since.is_some()),
        ("until", args.until.is_some()),
    ];
    if kind != SearchKind::Activities
        && let Some((field, _)) = activity_filters.iter().find(|(_, given)| *given)
    {
        return Err(ApiError::bad_request(
            "invalid_filter",
            format!("{field} filters activities; it does not apply to type=circles or people"),
        )
        .with_details(serde_json::json!({ "field": field })));
    }
    let results = match kind {
        SearchKind::Activities => {
            if query.is_empty() {
                return Err(QueryError::Empty.into());
            }
            let object_types = match &args.object_type {
                Some(t)
                    if t.is_empty()
                        || t.chars().count() > 64
                        || !t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
                {
                    return Err(ApiError::bad_request(
                        "invalid_filter",
                        "object_type must be 1–64 letters, digits or '_' (e.g. Note)",
                    )
                    .with_details(serde_json::json!({ "field": "object_type" })));
                }
                Some(t) => vec![t.clone()],
                None => Vec::new(),
            };
            let since = args
                .since
                .as_deref()
                .map(|t| store_time("since", t))
                .transpose()?;
            let until = args
                .until
                .as_deref()
                .map(|t| store_time("until", t))
                .transpose()?;
            let page = state
                .store
                .search_activities(
                    auth.user,
                    ActivitySearch {
                        query,
                        object_types,
                        since,
                        until,
                        sort,
                        after,
                        limit,
                    },
                )
                .await?;
            let mut items = Vec::with_capacity(page.items.len());
            for hit in page.items {
                let activity: serde_json::Value =
                    serde_json::from_str(&hit.activity).map_err(ApiError::internal)?;
                items.push(SearchHit {
                    cursor: cursor::encode(hit.position),
                    score: (sort == SearchSort::Best).then_some(hit.score),
                    highlight: Highlight {
                        title: hit.title,
                        snippet: hit.snippet,
                    },
                    activity: Some(activity),
                    circle: None,
                    user: None,
                });
            }
            SearchResults {
                items,
                next: page.next.map(cursor::encode),
            }
        }
        SearchKind::Circles => {
            let page = state
                .store
                .search_circle_hits(auth.user, query, sort, after, limit)
                .await?;
            SearchResults {
                items: page
                    .items
                    .into_iter()
                    .map(|hit| SearchHit {
                        cursor: cursor::encode(hit.position),
                        score: None,
                        highlight: Highlight {
                            title: hit.title,
                            snippet: hit.snippet,
                        },
                        activity: None,
                        circle: Some(hit.circle),
                        user: None,
                    })
                    .collect(),
                next: page.next.map(cursor::encode),
            }
        }
        SearchKind::People => {
            let page = state.store.search_people(query, sort, after, limit).await?;
            SearchResults {
                items: page
                    .items
                    .into_iter()
                    .map(|hit| SearchHit {
                        cursor: cursor::encode(hit.position),
                        score: None,
                        highlight: Highlight {
                            title: hit.title,
                            snippet: hit.snippet,
                        },
                        activity: None,
                        circle: None,
                        user: Some(hit.user),
                    })
                    .collect(),
                next: page.next.map(cursor::encode),
            }
        }
    };
    Ok(Json(results))
}
