//! The caller's inbox (multiplexed, filtered, paged) and its `tag@circle` subscriptions.

use crate::AppState;
use crate::auth::AuthUser;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::pagination::{PageArgs, PageBody};
use crate::response::RawJson;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tidings_core::expr::{normalize_slug, normalize_tag, parse};
use tidings_core::saved::{SubscriptionTerm, is_saved_search, parse_saved};
use tidings_store::model::{InboxFilter, Subscription};
use utoipa::{IntoParams, ToSchema};

/// Inbox arguments: filters plus pagination.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InboxArgs {
    /// Comma-separated circle names (at most 32).
    #[param(
        pattern = r"^\s*(?:[A-Za-z0-9][A-Za-z0-9_-]{0,62})?\s*(?:,\s*(?:[A-Za-z0-9][A-Za-z0-9_-]{0,62})?\s*){0,31}$"
    )]
    pub circles: Option<String>,
    /// Comma-separated tags (user tags, or system tags like `sys:reply`; at most 32).
    #[param(
        pattern = r"^\s*(?:(?:sys:)?\s*#?[\p{L}\p{N}_.-]{1,64})?\s*(?:,\s*(?:(?:sys:)?\s*#?[\p{L}\p{N}_.-]{1,64})?\s*){0,31}$"
    )]
    pub tags: Option<String>,
    /// major | minor | direct (empty: any).
    #[param(pattern = "^(major|minor|direct)?$")]
    pub kind: Option<String>,
    /// Only activities by the members of a group: `group:NAME` (yours) or
    /// `group:NAME@CIRCLE` (a circle's you are a member of).
    #[param(
        pattern = r"^\s*(group:[A-Za-z0-9][A-Za-z0-9_-]{0,62}(@[A-Za-z0-9][A-Za-z0-9_-]{0,62})?)?\s*$"
    )]
    pub from: Option<String>,
    /// Items per page, 1–100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<usize>,
    /// Cursor: older than (give `before` or `after`, not both).
    #[param(schema_with = crate::pagination::cursor_schema)]
    pub before: Option<String>,
    /// Cursor: newer than (give `before` or `after`, not both).
    #[param(schema_with = crate::pagination::cursor_schema)]
    pub after: Option<String>,
}

const MAX_FILTER_TERMS: usize = 32;

fn split_list(raw: &Option<String>, what: &str) -> ApiResult<Vec<String>> {
    let items: Vec<String> = raw
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if items.len() > MAX_FILTER_TERMS {
        return Err(ApiError::bad_request(
            "invalid_filter",
            format!("at most {MAX_FILTER_TERMS} {what} per filter"),
        ));
    }
    Ok(items)
}

/// The `from=group:NAME[@CIRCLE]` filter, checked (400 for anything else).
pub fn parse_from(args: &InboxArgs) -> ApiResult<Option<tidings_core::conversations::GroupRef>> {
    let raw = match args.from.as_deref().map(str::trim) {
        None | Some("") => return Ok(None),
        Some(raw) => raw,
    };
    let bad = || {
        ApiError::bad_request(
            "invalid_filter",
            format!("from {raw:?} must be group:NAME or group:NAME@CIRCLE"),
        )
    };
    let name = raw.strip_prefix("group:").ok_or_else(bad)?;
    tidings_core::conversations::GroupRef::parse(name)
        .map(Some)
        .ok_or_else(bad)
}

/// Parses the filter arguments with clear errors.
pub fn parse_filter(args: &InboxArgs) -> ApiResult<InboxFilter> {
    parse_from(args)?;
    let circles = split_list(&args.circles, "circles")?
        .iter()
        .map(|c| {
            normalize_slug(c).map_err(|e| {
                ApiError::bad_request("invalid_filter", format!("circle {c:?}: {}", e.message))
            })
        })
        .collect::<ApiResult<Vec<_>>>()?;
    let tags = split_list(&args.tags, "tags")?
        .iter()
        .map(|t| {
            match t.strip_prefix("sys:") {
                Some(rest) => normalize_tag(rest).map(|n| format!("sys:{n}")),
                None => normalize_tag(t),
            }
            .map_err(|e| {
                ApiError::bad_request("invalid_filter", format!("tag {t:?}: {}", e.message))
            })
        })
        .collect::<ApiResult<Vec<_>>>()?;
    let kind = match args.kind.as_deref() {
        None | Some("") => None,
        Some(k @ ("major" | "minor" | "direct")) => Some(k.to_owned()),
        Some(other) => {
            return Err(ApiError::bad_request(
                "invalid_filter",
                format!("kind {other:?} must be major, minor or direct"),
            ));
        }
    };
    Ok(InboxFilter {
        circles,
        tags,
        kind,
    })
}

/// The caller's inbox, newest first; each item says `via` what it arrived.
#[utoipa::path(get, path = "/api/v1/inbox", operation_id = "read_inbox", tag = "inbox", security(("bearer" = [])),
    params(InboxArgs), responses((status = 200, body = PageBody), (status = 400), (status = 401), (status = 404, description = "no such group of yours")))]
pub async fn read(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiQuery(args): ApiQuery<InboxArgs>,
) -> ApiResult<RawJson> {
    let filter = parse_filter(&args)?;
    let (from, limit) = PageArgs {
        limit: args.limit,
        before: args.before.clone(),
        after: args.after.clone(),
    }
    .resolve()?;
    let group = parse_from(&args)?;
    let page = match group {
        None => state.store.inbox(auth.user, filter, from, limit).await?,
        Some(group) => {
            let members = state
                .store
                .group_member_ids(auth.user.clone(), group)
                .await?;
            state
                .store
                .inbox_from(auth.user, filter, members, from, limit)
                .await?
        }
    };
    Ok(PageBody::render(page, from))
}

/// Hide one activity in the caller's inbox only.
#[utoipa::path(delete, path = "/api/v1/inbox/{id}", tag = "inbox", security(("bearer" = [])),
    params(("id" = String, Path, description = "activity id")), responses((status = 204), (status = 404)))]
pub async fn hide(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    state.store.hide_in_inbox(auth.user, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Subscribe request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscribeBody {
    /// `tag@circle`, either side may be `*`: `*@design`, `release@eng`, `urgent@*` (the
    /// canonical spelling; blanks around it and upper-case tags are normalised); or a saved
    /// search, a quoted query with an optional circle: `"tokio panic"@eng`, `"rust async"`
    /// (every public post and circle the caller may read). A saved search delivers each new
    /// activity a search for its query would find, with `via`
    /// `subscription:ID:"QUERY"@CIRCLE`; its query uses the search syntax (phrases in inner
    /// quotes, `-exclusions`, `from:`/`in:`/`tag:`) and needs at least one whole word.
    #[schema(
        max_length = 200,
        pattern = "^[ \\t\\n\\f\\r]*(?:(\\*|#?[\\p{L}\\p{N}_.-]{1,64})@(\\*|[A-Za-z0-9][A-Za-z0-9_-]{0,62})|\"(?: {0,3}[\\p{L}\\p{N}]{1,20}){1,16} {0,3}\"(?:@(?:\\*|[A-Za-z0-9][A-Za-z0-9_-]{0,62}))?)[ \\t\\n\\f\\r]*$"
    )]
    pub expr: String,
}

/// Subscriptions.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionList {
    /// Open subscriptions, oldest first.
    pub items: Vec<Subscription>,
}

/// The caller's subscriptions.
#[utoipa::path(get, path = "/api/v1/subscriptions", tag = "inbox", security(("bearer" = [])),
    responses((status = 200, body = SubscriptionList)))]
pub async fn list_subscriptions(
    State(state): State<AppState>,
    auth: AuthUser,
) -> ApiResult<Json<SubscriptionList>> {
    let items = state.store.subscriptions(auth.user.id).await?;
    Ok(Json(SubscriptionList { items }))
}

/// Subscribe to `tag@circle` or save a search as a subscription (`"tokio panic"@eng`; a
/// public circle needs no membership).
#[utoipa::path(post, path = "/api/v1/subscriptions", request_body = SubscribeBody, tag = "inbox", security(("bearer" = [])),
    responses((status = 201, body = Subscription), (status = 200, body = Subscription, description = "already subscribed"), (status = 400, description = "parse error with position"), (status = 404)))]
pub async fn subscribe(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiJson(body): ApiJson<SubscribeBody>,
) -> ApiResult<(StatusCode, Json<Subscription>)> {
    if body.expr.chars().count() > 200 {
        return Err(ApiError::bad_request(
            "invalid_expression",
            "expr must be at most 200 characters",
        )
        .with_details(json!({ "position": 200 })));
    }
    let term: SubscriptionTerm = if is_saved_search(&body.expr) {
        parse_saved(&body.expr)
            .map_err(|e| {
                ApiError::bad_request("invalid_expression", e.to_string())
                    .with_details(json!({ "position": e.position(), "expr": body.expr }))
            })?
            .into()
    } else {
        parse(&body.expr)
            .map_err(|e| {
                ApiError::bad_request("invalid_expression", e.to_string())
                    .with_details(json!({ "position": e.position, "expr": body.expr }))
            })?
            .into()
    };
    let (subscription, created) = state.store.add_subscription(auth.user, term).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(subscription)))
}

/// Remove a subscription.
#[utoipa::path(delete, path = "/api/v1/subscriptions/{id}", tag = "inbox", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 204), (status = 404)))]
pub async fn unsubscribe(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    // Taken as text, not `i64`: a non-numeric id names no subscription, so it gets the same
    // JSON 404 as any other unknown id instead of a path-shape 400.
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::not_found("subscription"))?;
    state.store.remove_subscription(auth.user.id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
