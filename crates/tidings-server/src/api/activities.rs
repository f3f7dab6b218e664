//! Publishing from the outbox, reading activities, replies, versions, retraction and actions.

use crate::AppState;
use crate::auth::AuthUser;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::pagination::{PageArgs, PageBody};
use crate::response::RawJson;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::time::Duration;
use tidings_core::activity::normalize;
use tidings_core::expr::is_valid_slug;
use tidings_store::StoreError;
use tidings_store::model::User;
use tidings_store::model::{PublishInput, Published};
use utoipa::{IntoParams, ToSchema};

/// How long `?wait=routed` waits before answering anyway.
const ROUTE_WAIT: Duration = Duration::from_secs(30);

/// Publish arguments.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PublishArgs {
    /// `routed`: answer only once every inbox entry is written. `replied`: answer with the
    /// first consumer's reply (a webhook's 2xx body): 200 `{activity, reply, replied_by,
    /// status}`; 503 `no_responder` when no active subscription is owed the activity; 504
    /// `reply_timeout` at the deadline. Either way the activity is stored (`details.id`).
    #[param(pattern = "^(routed|replied)$")]
    pub wait: Option<String>,
    /// With `wait=replied`: how long to wait for the reply, in ms (1–60000, default 10000).
    /// (Read as text: a query string spells numbers as text, `5000` or `5000.0` alike.)
    #[param(value_type = Option<i64>, minimum = 1, maximum = 60000)]
    pub timeout_ms: Option<String>,
}

/// Versions of an activity.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionList {
    /// The original record, then each Update record, oldest first.
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<Value>,
}

/// An activity to publish, in the forms the engine takes: a Create of an object, or a verb on
/// an activity's id. The engine also normalises looser spellings (blanks around names,
/// upper-case tags, a single string for `to` or `tag`); the document states the canonical ones.
pub struct PublishBody;

/// A slug as the engine stores it: circles, usernames.
pub const SLUG_PATTERN: &str = "^[a-z0-9][a-z0-9_-]{0,62}$";

impl PublishBody {
    /// The schema as JSON Schema text.
    pub fn json() -> Value {
        let limits = tidings_core::activity::Limits::default();
        let audience = json!({
            "type": "string",
            "pattern": "^\\s*(public|as:Public|https://www\\.w3\\.org/ns/activitystreams#Public|followers|(circle|user|topic):\\s*[A-Za-z0-9][A-Za-z0-9_-]{0,62}|group:\\s*[A-Za-z0-9][A-Za-z0-9_-]{0,62}(@[A-Za-z0-9][A-Za-z0-9_-]{0,62})?)\\s*$",
        });
        let tag = json!({"type": "string", "pattern": "^\\s*#?[\\p{L}\\p{N}_.-]{1,64}\\s*$"});
        let shared = json!({
            "to": {
                "description": "public, followers, circle:NAME, user:NAME, group:NAME, group:NAME@CIRCLE, topic:NAME",
                "anyOf": [audience, {"type": "array", "items": audience, "maxItems": limits.max_audience}, {"type": "null"}],
            },
            "tag": {
                "description": "user tags",
                "anyOf": [tag, {"type": "array", "items": tag, "maxItems": limits.max_tags}, {"type": "null"}],
            },
            "inReplyTo": {
                "description": "id of the activity this replies to (blank: none)",
                "type": ["string", "null"], "maxLength": limits.max_string_chars,
            },
            "publish_at": {
                "description": "publish later, once, at this RFC 3339 time (admins and services; a time already past publishes at once): the answer is 202 with the schedule",
                "type": ["string", "null"], "format": "date-time",
            },
        });
        let mut create_props = shared.clone();
        create_props["type"] = json!({"type": "string", "enum": ["Create"]});
        create_props["object"] = json!({
            "type": "object",
            "description": format!(
                "the object: a Note (default) or an Article; its other fields (`content`, usually \
                 text, at most {} characters; `name`, `summary`, …) are kept as sent, with strings \
                 at most {} characters, `url`/`href` absolute http(s) URLs (or this server's `/api/v1/media/…`), nesting at most 8 \
                 deep, at most 64 keys and 256 items each",
                limits.max_content_chars, limits.max_string_chars
            ),
            "properties": {
                "type": {"type": "string", "enum": ["Note", "Article"]},
            },
        });
        let mut verb_props = shared;
        verb_props["type"] = json!({
            "type": "string",
            "enum": ["Like", "Announce", "Undo", "Delete", "Dislike", "Flag"],
        });
        verb_props["object"] = json!({
            "type": "string", "description": "the id of the activity acted on",
            "minLength": 1, "maxLength": limits.max_string_chars, "pattern": "\\S",
        });
        json!({
            "oneOf": [
                {"type": "object", "title": "Create", "required": ["object"], "properties": create_props},
                {"type": "object", "title": "Verb", "required": ["type", "object"], "properties": verb_props},
            ],
        })
    }
}

impl utoipa::PartialSchema for PublishBody {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        crate::openapi::schema_from_json(Self::json())
    }
}

impl utoipa::ToSchema for PublishBody {}

fn idempotency_key(headers: &HeaderMap) -> ApiResult<Option<String>> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= 200)
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_idempotency_key",
                "Idempotency-Key must be 1–200 visible ASCII characters",
            )
        })?;
    Ok(Some(key.to_owned()))
}

/// Validates, registers custom-type defaults, and appends one activity.
pub async fn publish_value(
    state: &AppState,
    actor: User,
    body: &Value,
    idempotency_key: Option<String>,
) -> ApiResult<Published> {
    let types = state.types.clone();
    let mut draft = normalize(body, &state.config.limits, &|name| types.status(name))?;
    state.types.apply(body, &mut draft)?;
    Ok(state
        .store
        .publish(PublishInput {
            actor,
            draft,
            idempotency_key,
        })
        .await?)
}

async fn respond_published(
    state: &AppState,
    published: Published,
    wait_routed: bool,
) -> ApiResult<(StatusCode, HeaderMap, RawJson)> {
    let mut headers = HeaderMap::new();
    if wait_routed {
        let routed = tokio::time::timeout(ROUTE_WAIT, state.store.wait_routed(published.seq)).await;
        let value = if matches!(routed, Ok(Ok(()))) {
            "routed"
        } else {
            "pending"
        };
        headers.insert("routing", HeaderValue::from_static(value));
    }
    if let Ok(location) = HeaderValue::from_str(&format!("/api/v1/activities/{}", published.id)) {
        headers.insert(header::LOCATION, location);
    }
    if published.replayed {
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok((StatusCode::CREATED, headers, RawJson(published.activity)))
}

/// Publish an activity from the caller's outbox (a user's session, or a service's key with
/// the `publish` scope: the service is the author).
#[utoipa::path(post, path = "/api/v1/outbox", tag = "activities", security(("bearer" = [])),
    params(PublishArgs, ("Idempotency-Key" = Option<String>, Header, max_length = 200, pattern = "^[!-~]([ -~]*[!-~])?$", description = "a retry with the same key returns the first result (1–200 visible ASCII characters)")),
    request_body(content = PublishBody, description = "ActivityStreams 2.0 activity: type, object, to, tag, actions, inReplyTo"),
    responses((status = 200, description = "`wait=replied`: `{activity, reply, replied_by, status}`, the first consumer's reply"), (status = 201, description = "the stored activity"), (status = 202, description = "`publish_at`: the one-shot schedule (a `ScheduleView`)"), (status = 400, description = "the activity's errors, `invalid_wait`, `invalid_timeout`, `invalid_time` (publish_at)"), (status = 403, description = "`schedule_not_allowed`: publish_at from a user who is not an admin"), (status = 413), (status = 422), (status = 503, description = "`no_responder` (wait=replied): the activity is stored, its id in `details.id`; or, as everywhere, `store_unavailable` / `shutting_down`: retry after `Retry-After` seconds", headers(("Retry-After" = i64, description = "Seconds to wait before retrying (`store_unavailable`, `shutting_down`)"))), (status = 504, description = "`reply_timeout` (wait=replied): the activity is stored and delivered on, its id in `details.id`")))]
pub async fn publish(
    State(state): State<AppState>,
    crate::integration::auth::Publisher(author): crate::integration::auth::Publisher,
    headers: HeaderMap,
    ApiQuery(args): ApiQuery<PublishArgs>,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<(StatusCode, HeaderMap, RawJson)> {
    let (wait_routed, wait_replied) = match args.wait.as_deref() {
        None => (false, false),
        Some("routed") => (true, false),
        Some("replied") => (false, true),
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_wait",
                "wait must be \"routed\" or \"replied\"",
            ));
        }
    };
    let timeout_ms = match args.timeout_ms.as_deref() {
        None => crate::integration::schedules::REPLY_TIMEOUT_DEFAULT_MS,
        // Checked whatever `wait` says (without wait=replied it is then ignored).
        Some(text) => text
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|ms| {
                ms.fract() == 0.0
                    && (1.0..=crate::integration::schedules::REPLY_TIMEOUT_MAX_MS as f64)
                        .contains(ms)
            })
            .map(|ms| ms as u64)
            .ok_or_else(|| {
                ApiError::bad_request("invalid_timeout", "timeout_ms is a whole 1 to 60000")
            })?,
    };
    let key = idempotency_key(&headers)?;
    if body.get("publish_at").is_some_and(|v| !v.is_null()) {
        // Not published now: there is nothing to wait for, and `wait` is ignored.
        return crate::integration::schedules::publish_later(&state, author, &headers, body).await;
    }
    let published = publish_value(&state, author, &body, key).await?;
    if wait_replied {
        let answer = crate::integration::schedules::wait_reply(
            &state,
            &published,
            Duration::from_millis(timeout_ms),
        )
        .await?;
        let mut headers = HeaderMap::new();
        if let Ok(location) = HeaderValue::from_str(&format!("/api/v1/activities/{}", published.id))
        {
            headers.insert(header::LOCATION, location);
        }
        return Ok((StatusCode::OK, headers, answer));
    }
    respond_published(&state, published, wait_routed).await
}

/// One activity (410 with a tombstone once retracted).
#[utoipa::path(get, path = "/api/v1/activities/{id}", tag = "activities", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, description = "the activity"), (status = 404), (status = 410)))]
pub async fn get_activity(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let (_, activity) = state.store.activity(&id, auth.user).await?;
    Ok(Json(activity))
}

/// Replies to an activity, newest first.
#[utoipa::path(get, path = "/api/v1/activities/{id}/replies", tag = "activities", security(("bearer" = [])),
    params(("id" = String, Path), PageArgs), responses((status = 200, body = PageBody), (status = 404), (status = 410)))]
pub async fn replies(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(id): ApiPath<String>,
    ApiQuery(args): ApiQuery<PageArgs>,
) -> ApiResult<RawJson> {
    let (from, limit) = args.resolve()?;
    let page = state.store.replies(&id, auth.user, from, limit).await?;
    Ok(PageBody::render(page, from))
}

/// Every version of an activity (the log keeps them all).
#[utoipa::path(get, path = "/api/v1/activities/{id}/versions", tag = "activities", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = VersionList), (status = 404), (status = 410)))]
pub async fn versions(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<VersionList>> {
    let items = state.store.versions(&id, auth.user).await?;
    Ok(Json(VersionList { items }))
}

/// Retract one's own activity: appends a Delete; the activity leaves every listing.
#[utoipa::path(post, path = "/api/v1/activities/{id}/retract", tag = "activities", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 201, description = "the Delete activity"), (status = 403), (status = 404), (status = 410)))]
pub async fn retract(
    State(state): State<AppState>,
    auth: AuthUser,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<(StatusCode, HeaderMap, RawJson)> {
    let key = idempotency_key(&headers)?;
    // Read first: unknown or unreadable ids are 404, retracted ones 410 — except for a retry
    // with an Idempotency-Key, which the store replays (or refuses as retracted itself).
    match state.store.activity(&id, auth.user.clone()).await {
        Err(StoreError::Gone { .. }) if key.is_some() => {}
        other => {
            other?;
        }
    }
    let published = publish_value(
        &state,
        auth.user,
        &json!({"type": "Delete", "object": id}),
        key,
    )
    .await?;
    respond_published(&state, published, false).await
}

/// Take a named action of an activity: recorded, and the URL to open is returned.
#[utoipa::path(post, path = "/api/v1/activities/{id}/actions/{action}", tag = "activities", security(("bearer" = [])),
    params(("id" = String, Path), ("action" = String, Path)),
    responses((status = 200, description = "{activity, action, url, method, taken}"), (status = 404), (status = 410)))]
pub async fn take_action(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath((id, action)): ApiPath<(String, String)>,
) -> ApiResult<Json<Value>> {
    if !is_valid_slug(&action) {
        return Err(ApiError::not_found("action"));
    }
    Ok(Json(
        state.store.take_action(&id, &action, auth.user).await?,
    ))
}

/// A user's outbox as the caller may see it.
#[utoipa::path(get, path = "/api/v1/users/{username}/outbox", tag = "activities", security(("bearer" = [])),
    params(("username" = String, Path), PageArgs), responses((status = 200, body = PageBody), (status = 404)))]
pub async fn outbox(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(username): ApiPath<String>,
    ApiQuery(args): ApiQuery<PageArgs>,
) -> ApiResult<RawJson> {
    let (from, limit) = args.resolve()?;
    let page = state
        .store
        .outbox(&username, auth.user, from, limit)
        .await?;
    Ok(PageBody::render(page, from))
}
