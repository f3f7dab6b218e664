//! activity-feed-system (seed 004): `GET /me`, `POST /post`, `POST /activity`, `GET /feed/my`,
//! `GET /feed/friends`, `POST /follow`, `POST /unfollow`, authenticated by `X-App-Key`.
//!
//! Mapping (`docs/decisions/0009-compat-profiles.md`):
//! - users are ordinary Tidings users; each may hold one app key, stored hashed like session
//!   tokens (`tidings seed --demo` sets ivan `abc123`, nico `abc124`, eric `abc125`);
//! - a `post` is a Create of a Note, a `photo` a Create of an `AfsPhoto`, both public; their
//!   `object_id` numbers the posts and photos created through this profile (1, 2, 3, … kept
//!   in `compat_afs_objects` beside the activity's seq), so `"object": "photo:21"` names one;
//! - `like` / `share` are Like / Announce, follow / unfollow are Follow / Undo, as in the native
//!   API;
//! - `/feed/my` is what the caller did through this profile (its `activities` table: Undo
//!   records included), `/feed/friends` the engine's flat feed narrowed to the people the
//!   caller follows now (not their own items, nor reactions by anyone else).

use super::{Body, json_object, settle};
use crate::AppState;
use crate::api::activities::publish_value;
use crate::auth::token_hash;
use crate::error::ApiError;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use tidings_core::activity::TypeStatus;
use tidings_core::cursor;
use tidings_core::feeds::FeedSpec;
use tidings_store::StoreError;
use tidings_store::model::LogRecord;
use tidings_store::model::{PageFrom, User, UserStatus};

/// The object type a `photo` is published as (its `content` is the file name).
pub const PHOTO_TYPE: &str = "AfsPhoto";
/// The header carrying the app key.
pub const KEY_HEADER: &str = "x-app-key";
/// Items per feed page when `limit` is not given, and the most allowed.
const DEFAULT_LIMIT: usize = 20;
const MAX_LIMIT: usize = 100;
/// Longest `content` of a post or photo.
const MAX_CONTENT_CHARS: usize = 20_000;

/// A failure in activity-feed-system's shape: `{"error": true, "message": "..."}`.
#[derive(Debug)]
pub struct AfsError {
    status: StatusCode,
    message: String,
    /// A 429's wait, sent as `Retry-After`.
    retry_after: Option<u64>,
}

impl AfsError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        AfsError {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

impl From<ApiError> for AfsError {
    fn from(e: ApiError) -> Self {
        AfsError {
            retry_after: e.retry_after(),
            ..AfsError::new(e.status, e.message)
        }
    }
}

impl From<StoreError> for AfsError {
    fn from(e: StoreError) -> Self {
        ApiError::from(e).into()
    }
}

impl IntoResponse for AfsError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            axum::Json(ErrorBody {
                error: true,
                message: self.message,
            }),
        )
            .into_response();
        crate::error::with_retry_after(&mut response, self.retry_after);
        response
    }
}

type AfsResult<T> = Result<T, AfsError>;

// Response bodies are structs so their keys come out in the seed's order.

/// `/me`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = AfsMe)]
pub struct MeBody {
    id: i64,
    name: String,
    auth_token: String,
    follow_ids: Vec<i64>,
    created_at: String,
    updated_at: String,
}

/// `/post`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = AfsPosted)]
pub struct PostedBody {
    #[serde(rename = "type")]
    kind: String,
    object_id: i64,
    message: &'static str,
}

/// `/activity`, `/follow`, `/unfollow`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = AfsVerb)]
pub struct VerbBody {
    verb: &'static str,
    message: &'static str,
}

fn verb_body(verb: &'static str, message: &'static str) -> axum::Json<VerbBody> {
    axum::Json(VerbBody { verb, message })
}

/// One item of `/feed/my` or `/feed/friends`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = AfsFeedItem)]
pub struct FeedItem {
    actor_name: Option<String>,
    verb: String,
    /// The post or photo's number.
    #[schema(value_type = Option<i64>)]
    object_id: Value,
    /// `post` or `photo`.
    #[schema(value_type = Option<String>)]
    object_type: Value,
    /// Whose object it was, or who was followed.
    #[schema(value_type = Option<String>)]
    target_name: Value,
    time: String,
}

/// `/feed/my`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = AfsMyFeed)]
pub struct MyFeedBody {
    my_feed: Vec<FeedItem>,
    next_url: String,
}

/// `/feed/friends`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = AfsFriendsFeed)]
pub struct FriendsFeedBody {
    friends_feed: Vec<FeedItem>,
    next_url: String,
}

/// An error.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = AfsError)]
pub struct ErrorBody {
    error: bool,
    message: String,
}

/// The caller, identified by its `X-App-Key`.
#[derive(Debug, Clone)]
pub struct AfsUser {
    /// The user.
    pub user: User,
    /// The key it presented (shown back by `/me` as `auth_token`).
    pub key: String,
    /// When the key last changed (RFC 3339).
    pub updated_at: String,
}

impl FromRequestParts<AppState> for AfsUser {
    type Rejection = AfsError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> AfsResult<AfsUser> {
        let unauthorized = |m: &str| AfsError::new(StatusCode::UNAUTHORIZED, m);
        let key = parts
            .headers
            .get(KEY_HEADER)
            .ok_or_else(|| unauthorized("Key is missing: send it in the X-App-Key header"))?
            .to_str()
            .map(str::trim)
            .map_err(|_| unauthorized("Key is not valid"))?
            .to_owned();
        if key.is_empty() {
            return Err(unauthorized(
                "Key is missing: send it in the X-App-Key header",
            ));
        }
        let found = state
            .store
            .app_key_user(token_hash(&key))
            .await?
            .ok_or_else(|| unauthorized("Key is not valid"))?;
        if found.user.status == UserStatus::Active {
            // The key spends the same read and write budgets as a bearer token does, keyed by
            // the key's hash (known good by now: made-up keys cost no budget state).
            crate::limits::charge(parts, state, &token_hash(&key))?;
        }
        match found.user.status {
            UserStatus::Active => Ok(AfsUser {
                user: found.user,
                key,
                updated_at: found.key_updated_at,
            }),
            UserStatus::Suspended => Err(AfsError::new(
                StatusCode::FORBIDDEN,
                "This user is suspended",
            )),
            UserStatus::Deleted => Err(unauthorized("Key is not valid")),
        }
    }
}

// The profile's request and response shapes, for the OpenAPI document only: the handlers read
// bodies by hand (the seed's clients do not always send a content type), so these describe
// exactly what those checks accept.

/// `POST /post`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct AfsPostBody {
    /// `post` or `photo`.
    #[schema(pattern = r"^\s*(post|photo)\s*$")]
    r#type: String,
    /// The text (a photo's file name); not blank, at most 20,000 characters.
    #[schema(min_length = 1, max_length = 20000, pattern = r"\S")]
    content: String,
}

/// `POST /activity`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct AfsActivityBody {
    /// `like` or `share`.
    #[schema(pattern = r"^\s*(like|share)\s*$")]
    verb: String,
    /// `post:ID` or `photo:ID`.
    #[schema(pattern = r"^\s*(post|photo):\s*[+-]?[0-9]{1,18}\s*$")]
    object: String,
}

/// `POST /follow`: `{"follow": NAME}` (or, as the seed's own example does, `{"unfollow": NAME}`).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct AfsFollowBody {
    /// The user to follow.
    #[schema(min_length = 1, pattern = r"\S")]
    follow: String,
}

/// `POST /unfollow`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct AfsUnfollowBody {
    /// The user to unfollow.
    #[schema(min_length = 1, pattern = r"\S")]
    unfollow: String,
}

/// Feed page arguments.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct AfsPageArgs {
    /// Items, 1–100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// The cursor from `next_url`.
    #[param(schema_with = crate::pagination::cursor_schema)]
    before: Option<String>,
}

/// The routes, or (disabled) the same paths saying so.
pub fn routes(enabled: bool) -> Router<AppState> {
    if !enabled {
        return [
            "/me",
            "/post",
            "/activity",
            "/feed/my",
            "/feed/friends",
            "/follow",
            "/unfollow",
        ]
        .into_iter()
        .fold(Router::new(), |r, path| r.route(path, any(disabled)));
    }
    Router::new()
        .route("/me", get(me))
        .route("/post", post(create_post))
        .route("/activity", post(activity))
        .route("/feed/my", get(my_feed))
        .route("/feed/friends", get(friends_feed))
        .route("/follow", post(follow))
        .route("/unfollow", post(unfollow))
}

async fn disabled() -> AfsError {
    AfsError::new(
        StatusCode::NOT_FOUND,
        "the activity-feed-system profile is disabled on this server ([compat] afs)",
    )
}

/// Registers the photo object type (in memory), unless one of that name exists.
pub fn register_types(state: &AppState) {
    if state.types.status(PHOTO_TYPE) != TypeStatus::Unknown {
        return;
    }
    let custom = tidings_store::model::CustomType {
        name: PHOTO_TYPE.to_owned(),
        kind: "object".to_owned(),
        schema: json!({"type": "object", "required": ["content"],
                       "properties": {"content": {"type": "string"}}}),
        actions: Value::Null,
    };
    if let Err(e) = state.types.register(&custom) {
        tracing::warn!(error = %e.message, "activity-feed-system photo type not registered");
    }
}

fn body_of(body: &Body) -> AfsResult<Map<String, Value>> {
    json_object(body)
        .map_err(|(status, message)| AfsError::new(status, message))?
        .ok_or_else(|| AfsError::bad("Must be a JSON request body"))
}

fn string_field(body: &Map<String, Value>, key: &str) -> AfsResult<Option<String>> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.trim().to_owned())),
        Some(_) => Err(AfsError::bad(format!("{key} must be a non-empty string"))),
    }
}

/// `Sun, 10 Feb 2019 09:47:03 GMT` from the store's RFC 3339 UTC time (as the seed's `/me`
/// and `/feed/friends` show times).
fn http_date(rfc3339: &str) -> String {
    let num =
        |range: std::ops::Range<usize>| rfc3339.get(range).and_then(|s| s.parse::<i64>().ok());
    let (Some(y), Some(m), Some(d), Some(clock)) =
        (num(0..4), num(5..7), num(8..10), rfc3339.get(11..19))
    else {
        return rfc3339.to_owned();
    };
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return rfc3339.to_owned();
    }
    // Sakamoto's day-of-week: 0 is Sunday.
    const OFFSETS: [i64; 12] = [0, 3, 2, 5, 0, 3, 5, 1, 4, 6, 2, 4];
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let yy = if m < 3 { y - 1 } else { y };
    let month = (m - 1) as usize;
    let weekday = (yy + yy / 4 - yy / 100 + yy / 400 + OFFSETS[month] + d).rem_euclid(7) as usize;
    format!(
        "{}, {d:02} {} {y:04} {clock} GMT",
        DAYS[weekday], MONTHS[month]
    )
}

/// `2019-02-10T12:01:30.894000+00:00` from the store's RFC 3339 UTC time (as the seed's
/// `/feed/my` shows times).
fn iso_time(rfc3339: &str) -> String {
    let Some(base) = rfc3339.strip_suffix('Z') else {
        return rfc3339.to_owned();
    };
    match base.split_once('.') {
        Some((secs, frac)) => format!("{secs}.{frac:0<6}+00:00"),
        None => format!("{base}.000000+00:00"),
    }
}

/// The profile's name for an object type: `post` for a Note, `photo` for an [`PHOTO_TYPE`].
fn object_kind(object_type: &str) -> String {
    match object_type {
        "Note" => "post".to_owned(),
        PHOTO_TYPE => "photo".to_owned(),
        other => other.to_ascii_lowercase(),
    }
}

fn object_type_of(doc: &Value) -> Option<&str> {
    doc.pointer("/object/type").and_then(Value::as_str)
}

fn object_ref(doc: &Value) -> Option<&str> {
    doc.get("object").and_then(Value::as_str)
}

/// Renders records as the profile's feed items; `time` formats `published`.
async fn feed_items(
    state: &AppState,
    records: &[(i64, Value)],
    time: fn(&str) -> String,
) -> AfsResult<Vec<FeedItem>> {
    // What Likes, Announces and Undos point at, fetched in one go.
    let refs: Vec<String> = records
        .iter()
        .filter(|(_, doc)| {
            matches!(
                doc.get("type").and_then(Value::as_str),
                Some("Like" | "Announce" | "Undo")
            )
        })
        .filter_map(|(_, doc)| object_ref(doc).map(str::to_owned))
        .collect();
    let targets: HashMap<String, (LogRecord, Value)> = state
        .store
        .records_by_ids(refs)
        .await?
        .into_iter()
        .map(|r| {
            let doc = serde_json::from_str(&r.body).unwrap_or(Value::Null);
            (r.id.clone(), (r, doc))
        })
        .collect();
    // Posts and photos are named by the profile's object ids.
    let mut seqs: Vec<i64> = records.iter().map(|(seq, _)| *seq).collect();
    seqs.extend(targets.values().map(|(r, _)| r.seq));
    let object_ids: HashMap<i64, i64> = state
        .store
        .afs_object_ids(seqs)
        .await?
        .into_iter()
        .collect();
    let mut out = Vec::with_capacity(records.len());
    for (seq, doc) in records {
        let kind = doc.get("type").and_then(Value::as_str).unwrap_or("");
        let target = object_ref(doc).and_then(|r| targets.get(r));
        let (verb, object_id, object_type, target_name) = match kind {
            "Create" => (
                "post".to_owned(),
                json!(object_ids.get(seq)),
                json!(object_type_of(doc).map(object_kind)),
                Value::Null,
            ),
            "Like" | "Announce" => (
                if kind == "Like" { "like" } else { "share" }.to_owned(),
                json!(target.and_then(|(r, _)| object_ids.get(&r.seq))),
                json!(target.and_then(|(_, t)| object_type_of(t)).map(object_kind)),
                json!(target.map(|(r, _)| r.actor.clone())),
            ),
            "Follow" => (
                "follow".to_owned(),
                Value::Null,
                Value::Null,
                json!(object_ref(doc).and_then(|r| r.strip_prefix("user:"))),
            ),
            "Undo" => {
                let undone = target
                    .and_then(|(_, t)| t.get("type").and_then(Value::as_str))
                    .unwrap_or("");
                let verb = match undone {
                    "Follow" => "unfollow",
                    "Like" => "unlike",
                    "Announce" => "unshare",
                    _ => "undo",
                };
                let name = target
                    .filter(|_| undone == "Follow")
                    .and_then(|(_, t)| object_ref(t))
                    .and_then(|r| r.strip_prefix("user:"));
                (verb.to_owned(), Value::Null, Value::Null, json!(name))
            }
            other => (
                other.to_ascii_lowercase(),
                Value::Null,
                Value::Null,
                Value::Null,
            ),
        };
        let actor = doc
            .get("actor")
            .and_then(Value::as_str)
            .map(|a| a.strip_prefix("user:").unwrap_or(a));
        let published = doc.get("published").and_then(Value::as_str).unwrap_or("");
        out.push(FeedItem {
            actor_name: actor.map(str::to_owned),
            verb,
            object_id,
            object_type,
            target_name,
            time: time(published),
        });
    }
    Ok(out)
}

/// `limit` and `before` of a feed page.
fn page_args(
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> AfsResult<(Option<i64>, usize, bool)> {
    let Query(args) = query.map_err(|e| AfsError::bad(e.body_text()))?;
    let limit = match args.get("limit") {
        None => DEFAULT_LIMIT,
        Some(raw) => raw
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| AfsError::bad(format!("limit must be between 1 and {MAX_LIMIT}")))?,
    };
    let before = match args.get("before") {
        None => None,
        Some(c) => {
            Some(cursor::decode(c.trim()).map_err(|e| AfsError::bad(format!("before: {e}")))?)
        }
    };
    Ok((before, limit, args.contains_key("limit")))
}

/// The next page's URL, or `""` when this is the last page.
fn next_url(path: &str, last: Option<i64>, more: bool, limit: usize, explicit: bool) -> String {
    match last {
        Some(seq) if more => {
            let limit = if explicit {
                format!("&limit={limit}")
            } else {
                String::new()
            };
            format!("{path}?before={}{limit}", cursor::encode(seq))
        }
        _ => String::new(),
    }
}

/// The caller's details.
#[utoipa::path(get, path = "/me", operation_id = "afs_me", security(("app_key" = [])), tag = "compat: activity-feed-system",
    responses((status = 200, body = MeBody), (status = 401, description = "no or unknown X-App-Key"), (status = 403, description = "the key's user is suspended")))]
pub async fn me(State(state): State<AppState>, auth: AfsUser) -> AfsResult<axum::Json<MeBody>> {
    let follow_ids = state.store.following_ids(auth.user.id).await?;
    Ok(axum::Json(MeBody {
        id: auth.user.id,
        created_at: http_date(&auth.user.created_at),
        name: auth.user.username,
        auth_token: auth.key,
        follow_ids,
        updated_at: http_date(&auth.updated_at),
    }))
}

/// Create a `post` or `photo`; it gets the profile's next `object_id`.
#[utoipa::path(post, path = "/post", operation_id = "afs_post", security(("app_key" = [])), tag = "compat: activity-feed-system", request_body = AfsPostBody,
    responses((status = 200, body = PostedBody), (status = 400, description = "a missing or malformed field"), (status = 401, description = "no or unknown X-App-Key"), (status = 403, description = "the key's user is suspended")))]
pub async fn create_post(
    State(state): State<AppState>,
    auth: AfsUser,
    body: Body,
) -> AfsResult<axum::Json<PostedBody>> {
    let body = body_of(&body)?;
    let kind = string_field(&body, "type")?;
    let object_type = match kind.as_deref() {
        Some("post") => "Note",
        Some("photo") => PHOTO_TYPE,
        _ => return Err(AfsError::bad("type must be \"post\" or \"photo\"")),
    };
    let content =
        string_field(&body, "content")?.ok_or_else(|| AfsError::bad("content is required"))?;
    if content.chars().count() > MAX_CONTENT_CHARS {
        return Err(AfsError::bad(format!(
            "content is longer than {MAX_CONTENT_CHARS} characters"
        )));
    }
    let activity = json!({"type": "Create", "object": {"type": object_type, "content": content},
                          "to": ["public"]});
    let published = publish_value(&state, auth.user.clone(), &activity, None).await?;
    let object_id = state
        .store
        .afs_log_add(auth.user.id, published.seq, true)
        .await?
        .ok_or_else(|| AfsError::from(ApiError::internal("no object id was assigned")))?;
    settle(&state, published.seq).await;
    Ok(axum::Json(PostedBody {
        kind: kind.unwrap_or_default(),
        object_id,
        message: "Activity recorded",
    }))
}

/// `like` or `share` a post or photo named `"post:ID"` / `"photo:ID"`.
#[utoipa::path(post, path = "/activity", operation_id = "afs_activity", security(("app_key" = [])), tag = "compat: activity-feed-system", request_body = AfsActivityBody,
    responses((status = 200, body = VerbBody), (status = 400, description = "a missing or malformed field"), (status = 401, description = "no or unknown X-App-Key"), (status = 403, description = "the key's user is suspended"),
        (status = 404, description = "no such post or photo, or not readable by the caller"),
        (status = 409, description = "already liked or shared"), (status = 410, description = "retracted")))]
pub async fn activity(
    State(state): State<AppState>,
    auth: AfsUser,
    body: Body,
) -> AfsResult<axum::Json<VerbBody>> {
    let body = body_of(&body)?;
    let verb = string_field(&body, "verb")?;
    let (verb, activity_type) = match verb.as_deref() {
        Some("like") => ("like", "Like"),
        Some("share") => ("share", "Announce"),
        _ => return Err(AfsError::bad("verb must be \"like\" or \"share\"")),
    };
    let object = string_field(&body, "object")?
        .ok_or_else(|| AfsError::bad("object is required, as \"post:ID\" or \"photo:ID\""))?;
    let (kind, object_id) = object
        .split_once(':')
        .and_then(|(k, id)| Some((k, id.trim().parse::<i64>().ok()?)))
        .filter(|(k, _)| matches!(*k, "post" | "photo"))
        .ok_or_else(|| AfsError::bad("object must be \"post:ID\" or \"photo:ID\""))?;
    let not_found = || AfsError::new(StatusCode::NOT_FOUND, format!("{object} not found"));
    let seq = state
        .store
        .afs_object_seq(object_id)
        .await?
        .ok_or_else(not_found)?;
    let record = state
        .store
        .record_by_seq(seq)
        .await?
        .ok_or_else(not_found)?;
    let doc: Value = serde_json::from_str(&record.body).unwrap_or(Value::Null);
    let is_kind = doc.get("type").and_then(Value::as_str) == Some("Create")
        && object_type_of(&doc).map(object_kind).as_deref() == Some(kind);
    if !is_kind {
        return Err(not_found());
    }
    // Readable by the caller and not retracted (404 / 410 otherwise).
    let (_, target) = state.store.activity(&record.id, auth.user.clone()).await?;
    let public = target
        .get("to")
        .and_then(Value::as_array)
        .is_some_and(|to| to.iter().any(|a| a == "public"));
    let mut to = Vec::new();
    if record.actor != auth.user.username {
        to.push(format!("user:{}", record.actor));
    }
    if public {
        to.push("followers".to_owned());
    }
    let published = publish_value(
        &state,
        auth.user.clone(),
        &json!({"type": activity_type, "object": record.id, "to": to}),
        None,
    )
    .await?;
    state
        .store
        .afs_log_add(auth.user.id, published.seq, false)
        .await?;
    settle(&state, published.seq).await;
    Ok(verb_body(verb, "Activity recorded"))
}

/// What the caller did through this profile, newest first.
#[utoipa::path(get, path = "/feed/my", operation_id = "afs_feed_my", security(("app_key" = [])), tag = "compat: activity-feed-system", params(AfsPageArgs),
    responses((status = 200, body = MyFeedBody), (status = 400, description = "a malformed argument"), (status = 401, description = "no or unknown X-App-Key"), (status = 403, description = "the key's user is suspended")))]
pub async fn my_feed(
    State(state): State<AppState>,
    auth: AfsUser,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> AfsResult<axum::Json<MyFeedBody>> {
    let (before, limit, explicit) = page_args(query)?;
    let (rows, more) = state
        .store
        .afs_log_page(auth.user.id, before, limit)
        .await?;
    let records: Vec<(i64, Value)> = rows
        .iter()
        .map(|r| (r.seq, serde_json::from_str(&r.body).unwrap_or(Value::Null)))
        .collect();
    let items = feed_items(&state, &records, iso_time).await?;
    let last = rows.last().map(|r| r.seq);
    Ok(axum::Json(MyFeedBody {
        my_feed: items,
        next_url: next_url("/feed/my", last, more, limit, explicit),
    }))
}

/// What the people the caller follows did, newest first.
#[utoipa::path(get, path = "/feed/friends", operation_id = "afs_feed_friends", security(("app_key" = [])), tag = "compat: activity-feed-system", params(AfsPageArgs),
    responses((status = 200, body = FriendsFeedBody), (status = 400, description = "a malformed argument"), (status = 401, description = "no or unknown X-App-Key"), (status = 403, description = "the key's user is suspended")))]
pub async fn friends_feed(
    State(state): State<AppState>,
    auth: AfsUser,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> AfsResult<axum::Json<FriendsFeedBody>> {
    let (before, limit, explicit) = page_args(query)?;
    let spec = FeedSpec {
        include_actor: false,
        ..FeedSpec::flat("afs-friends")
    };
    let from = before.map_or(PageFrom::Newest, PageFrom::Before);
    // Friends are the people the caller follows now: a reaction by someone else (a like of the
    // caller's photo by a stranger or an unfollowed user) is not a friend's activity.
    let friends = state.store.following_ids(auth.user.id).await?;
    let page = state
        .store
        .feed_page_by_actors(auth.user, &spec, friends, from, limit)
        .await?;
    let records: Vec<(i64, Value)> = page
        .items
        .iter()
        .map(|i| {
            (
                i.seq,
                serde_json::from_str(&i.activity).unwrap_or(Value::Null),
            )
        })
        .collect();
    let items = feed_items(&state, &records, http_date).await?;
    let last = page.items.last().map(|i| i.seq);
    Ok(axum::Json(FriendsFeedBody {
        friends_feed: items,
        next_url: next_url("/feed/friends", last, page.has_older, limit, explicit),
    }))
}

async fn target_user(state: &AppState, name: &str) -> AfsResult<User> {
    match state.store.user(name).await {
        Ok(user) if user.status != UserStatus::Deleted => Ok(user),
        Ok(_) | Err(StoreError::NotFound { .. }) => {
            Err(AfsError::new(StatusCode::NOT_FOUND, "User not found"))
        }
        Err(e) => Err(e.into()),
    }
}

async fn do_follow(state: &AppState, auth: AfsUser, name: &str) -> AfsResult<axum::Json<VerbBody>> {
    let target = target_user(state, name).await?;
    if target.id == auth.user.id {
        return Err(AfsError::bad("You can't follow yourself"));
    }
    if state
        .store
        .follow_activity(&auth.user, &target.username)
        .await?
        .is_some()
    {
        return Ok(verb_body("follow", "Already followed"));
    }
    let follow = json!({"type": "Follow", "object": format!("user:{}", target.username),
                        "to": [format!("user:{}", target.username)]});
    let published = match publish_value(state, auth.user.clone(), &follow, None).await {
        Ok(p) => p,
        // A concurrent follow got there first.
        Err(e) if e.code == "already_following" => {
            return Ok(verb_body("follow", "Already followed"));
        }
        Err(e) => return Err(e.into()),
    };
    state
        .store
        .afs_log_add(auth.user.id, published.seq, false)
        .await?;
    settle(state, published.seq).await;
    Ok(verb_body("follow", "User followed"))
}

async fn do_unfollow(
    state: &AppState,
    auth: AfsUser,
    name: &str,
) -> AfsResult<axum::Json<VerbBody>> {
    let target = target_user(state, name).await?;
    let Some(follow_id) = state
        .store
        .follow_activity(&auth.user, &target.username)
        .await?
    else {
        return Ok(verb_body("unfollow", "User not followed"));
    };
    let published = publish_value(
        state,
        auth.user.clone(),
        &json!({"type": "Undo", "object": follow_id}),
        None,
    )
    .await?;
    state
        .store
        .afs_log_add(auth.user.id, published.seq, false)
        .await?;
    settle(state, published.seq).await;
    Ok(verb_body("unfollow", "User unfollowed"))
}

/// Follow a user: `{"follow": NAME}`. The seed's own unfollow example posts
/// `{"unfollow": NAME}` here, so that is accepted too.
#[utoipa::path(post, path = "/follow", operation_id = "afs_follow", security(("app_key" = [])), tag = "compat: activity-feed-system", request_body = AfsFollowBody,
    responses((status = 200, body = VerbBody), (status = 400, description = "a missing field, or following oneself"), (status = 401, description = "no or unknown X-App-Key"), (status = 403, description = "the key's user is suspended"),
        (status = 404, description = "no such user")))]
pub async fn follow(
    State(state): State<AppState>,
    auth: AfsUser,
    body: Body,
) -> AfsResult<axum::Json<VerbBody>> {
    let body = body_of(&body)?;
    match (
        string_field(&body, "follow")?,
        string_field(&body, "unfollow")?,
    ) {
        (Some(name), None) => do_follow(&state, auth, &name).await,
        (None, Some(name)) => do_unfollow(&state, auth, &name).await,
        _ => Err(AfsError::bad(
            "give the user to follow as {\"follow\": NAME}",
        )),
    }
}

/// Unfollow a user: `{"unfollow": NAME}`.
#[utoipa::path(post, path = "/unfollow", operation_id = "afs_unfollow", security(("app_key" = [])), tag = "compat: activity-feed-system", request_body = AfsUnfollowBody,
    responses((status = 200, body = VerbBody), (status = 400, description = "a missing field"), (status = 401, description = "no or unknown X-App-Key"), (status = 403, description = "the key's user is suspended"),
        (status = 404, description = "no such user")))]
pub async fn unfollow(
    State(state): State<AppState>,
    auth: AfsUser,
    body: Body,
) -> AfsResult<axum::Json<VerbBody>> {
    let body = body_of(&body)?;
    let name = string_field(&body, "unfollow")?
        .ok_or_else(|| AfsError::bad("give the user to unfollow as {\"unfollow\": NAME}"))?;
    do_unfollow(&state, auth, &name).await
}

/// A new app key, shown once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AppKeyBody {
    /// Whose key it is.
    pub username: String,
    /// The value for the `X-App-Key` header; it replaces any earlier key of the user.
    pub app_key: String,
}

/// `POST /api/v1/me/app-key` (bearer auth): mints the caller's activity-feed-system app key,
/// replacing any earlier one. Only its hash is stored, so it is shown this once.
#[utoipa::path(post, path = "/api/v1/me/app-key", tag = "compat", security(("bearer" = [])),
    responses((status = 201, body = AppKeyBody, description = "the key for activity-feed-system's X-App-Key header"),
              (status = 401)))]
pub async fn create_app_key(
    State(state): State<AppState>,
    auth: crate::auth::AuthUser,
) -> Result<(StatusCode, axum::Json<AppKeyBody>), ApiError> {
    let mut bytes = [0u8; 24];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    let key = format!("afs_{}", hex::encode(bytes));
    state
        .store
        .set_app_key(auth.user.id, token_hash(&key))
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(AppKeyBody {
            username: auth.user.username,
            app_key: key,
        }),
    ))
}

/// The seed's demo users with their app keys, in id order on a fresh data dir.
pub const DEMO_USERS: [(&str, &str); 3] =
    [("ivan", "abc123"), ("nico", "abc124"), ("eric", "abc125")];

/// Creates the seed's demo users (those missing), sets their app keys, and makes ivan follow
/// nico as in the seed's `/me` example. Safe to run again. Returns the three users.
pub async fn seed_demo(store: &tidings_store::Store) -> Result<Vec<User>, ApiError> {
    let mut users = Vec::new();
    for (name, key) in DEMO_USERS {
        let user = match store.user(name).await {
            Ok(user) => user,
            Err(StoreError::NotFound { .. }) => {
                let mut display = name.to_owned();
                if let Some(first) = display.get_mut(..1) {
                    first.make_ascii_uppercase();
                }
                store
                    .create_user(name.to_owned(), display, None, false)
                    .await?
            }
            Err(e) => return Err(e.into()),
        };
        store.set_app_key(user.id, token_hash(key)).await?;
        users.push(user);
    }
    if let [ivan, nico, _] = users.as_slice()
        && store.follow_activity(ivan, &nico.username).await?.is_none()
    {
        let follow = json!({"type": "Follow", "object": format!("user:{}", nico.username),
                            "to": [format!("user:{}", nico.username)]});
        let draft = tidings_core::activity::normalize(
            &follow,
            &tidings_core::activity::Limits::default(),
            &|_| TypeStatus::BuiltIn,
        )?;
        let published = store
            .publish(tidings_store::model::PublishInput {
                actor: ivan.clone(),
                draft,
                idempotency_key: None,
            })
            .await?;
        store.afs_log_add(ivan.id, published.seq, false).await?;
        store.wait_routed(published.seq).await?;
    }
    Ok(users)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_render_as_the_seed_shows_them() {
        assert_eq!(
            http_date("2019-02-10T09:47:03.123Z"),
            "Sun, 10 Feb 2019 09:47:03 GMT"
        );
        assert_eq!(
            http_date("2026-11-23T13:26:29.000Z"),
            "Mon, 23 Nov 2026 13:26:29 GMT"
        );
        assert_eq!(
            iso_time("2019-02-10T12:01:30.894Z"),
            "2019-02-10T12:01:30.894000+00:00"
        );
        assert_eq!(http_date("garbage"), "garbage");
    }

    #[test]
    fn next_url_only_when_more() {
        assert_eq!(next_url("/feed/my", Some(5), false, 20, false), "");
        let url = next_url("/feed/my", Some(5), true, 2, true);
        assert!(url.starts_with("/feed/my?before=") && url.ends_with("&limit=2"));
    }
}
