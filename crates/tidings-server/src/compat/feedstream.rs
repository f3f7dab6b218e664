//! FeedStream (seed 001): `POST /v1/subscribe`, `/v1/unsubscribe`, `/v1/publish`,
//! `/v1/retract` and `GET /v1/consume`, with FeedStream's bodies, arguments and responses.
//!
//! Mapping (`docs/decisions/0009-compat-profiles.md`):
//! - a producer or consumer id is a Tidings user created on first use, named `fs-<id>` (or
//!   `fs-<hash of the id>` when the id is not a valid username), with no password;
//! - subscribe is a Follow, unsubscribe its Undo;
//! - each declared feed processes exactly the verbs it lists, as FeedStream's README says;
//! - publish is an activity of a custom type named after the verb (`tweet` → `Tweet`), whose
//!   object (`FeedStreamItem`) carries `item_id`, `verb` and `timestamp`. A verb an Activity
//!   (notification) feed lists is an Activity event: it needs a `consumer_id` and raises a
//!   notification for that consumer whose reason is the verb (`like`, `follow`, `comment`,
//!   `mention`); other verbs are Flat events, addressed to the producer's followers, and refuse
//!   a `consumer_id`;
//! - retract is a Delete of the producer's live activity with that verb and item (for an
//!   Activity event, of that consumer's copy: the others keep theirs);
//! - consume reads the declared feed named `event_name`, newest first; an Activity feed shows
//!   the events of producers the consumer is subscribed to (FeedStream's relations).

use super::{Body, json_object, settle};
use crate::AppState;
use crate::api::activities::publish_value;
use crate::error::ApiError;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use serde::Serialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use tidings_core::activity::{ACTIVITY_TYPES, OBJECT_TYPES, TypeStatus};
use tidings_core::feeds::{FeedKind, FeedSpec, Reason};
use tidings_store::StoreError;
use tidings_store::model::{InboxFilter, PageFrom, User, UserStatus};

/// The object type every FeedStream item is published as.
pub const ITEM_TYPE: &str = "FeedStreamItem";
/// Username prefix of the users standing for FeedStream ids (refused at sign-up).
pub const USER_PREFIX: &str = "fs-";
/// Longest producer, consumer or item id accepted.
const MAX_ID_CHARS: usize = 200;
/// Longest verb accepted.
const MAX_VERB_CHARS: usize = 40;
/// Items per consume when `limit` is not given, and the most allowed.
const DEFAULT_LIMIT: usize = 20;
const MAX_LIMIT: usize = 100;

/// FeedStream's two feeds as its README declares them, shipped as defaults so its examples
/// work on a fresh server; `[[feeds]]` entries with these names replace them.
pub fn default_feeds() -> Vec<FeedSpec> {
    vec![
        FeedSpec {
            verbs: vec!["tweet".into()],
            include_actor: true,
            max_cache: 500,
            ..FeedSpec::flat("feed")
        },
        FeedSpec {
            kind: FeedKind::Notification,
            verbs: vec![
                "like".into(),
                "follow".into(),
                "comment".into(),
                "mention".into(),
            ],
            include_actor: false,
            max_cache: 200,
            ..FeedSpec::flat("notification")
        },
    ]
}

/// A failure in FeedStream's shape: `{"ok": false, "error": "..."}`.
#[derive(Debug)]
pub struct FsError {
    status: StatusCode,
    message: String,
    /// A 429's wait, sent as `Retry-After`.
    retry_after: Option<u64>,
}

impl FsError {
    fn bad(message: impl Into<String>) -> Self {
        FsError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            retry_after: None,
        }
    }

    fn not_found(message: impl Into<String>) -> Self {
        FsError {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
            retry_after: None,
        }
    }
}

impl From<ApiError> for FsError {
    fn from(e: ApiError) -> Self {
        FsError {
            retry_after: e.retry_after(),
            status: e.status,
            message: e.message,
        }
    }
}

impl From<StoreError> for FsError {
    fn from(e: StoreError) -> Self {
        ApiError::from(e).into()
    }
}

impl IntoResponse for FsError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            axum::Json(ErrorBody {
                ok: false,
                error: self.message,
            }),
        )
            .into_response();
        crate::error::with_retry_after(&mut response, self.retry_after);
        response
    }
}

type FsResult<T> = Result<T, FsError>;

/// A consume answer; a struct so `ok` comes first, as FeedStream shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = FeedStreamConsumed)]
pub struct ConsumeBody {
    ok: bool,
    data: Vec<ConsumedItem>,
}

/// One consumed item.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = FeedStreamItem)]
pub struct ConsumedItem {
    /// The item id as published (or a native activity's id).
    #[schema(value_type = Object)]
    item_id: Value,
    /// The verb (or a native activity's lowercased type).
    #[schema(value_type = Object)]
    verb: Value,
}

/// A refusal.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = FeedStreamError)]
pub struct ErrorBody {
    ok: bool,
    error: String,
}

// The profile's request and response shapes, for the OpenAPI document only: the handlers read
// bodies by hand (FeedStream's clients do not always send a content type), so these describe
// exactly what those checks accept.

/// A FeedStream id: non-blank text (trimmed, then 1–200 characters), or an integer.
fn id_schema() -> utoipa::openapi::schema::Schema {
    id_one_of(false)
}

/// An optional FeedStream id: as [`id_schema`], or `null` (the same as leaving it out).
fn optional_id_schema() -> utoipa::openapi::schema::Schema {
    id_one_of(true)
}

fn id_one_of(nullable: bool) -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
    let mut one_of = OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(MAX_ID_CHARS))
                .pattern(Some(r"\S")),
        )
        .item(integer_schema());
    if nullable {
        one_of = one_of.item(ObjectBuilder::new().schema_type(Type::Null));
    }
    utoipa::openapi::schema::Schema::OneOf(one_of.build())
}

/// The integers an id or verb may be given as (JSON numbers the server reads as whole).
fn integer_schema() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::Integer)
        .minimum(Some(i64::MIN as isize))
        .maximum(Some(u64::MAX as usize))
        .build()
}

/// A verb: 1–40 letters, digits, `_` or `-` (case-insensitive, blanks around it ignored), or an
/// integer.
fn verb_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(r"^\s*[A-Za-z0-9_-]{1,40}\s*$")),
        )
        .item(integer_schema())
        .build()
        .into()
}

/// `POST /v1/subscribe` and `/v1/unsubscribe`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct FsRelationBody {
    /// A declared feed (`feed`, `notification`, or a `[[feeds]]` name).
    #[schema(schema_with = id_schema)]
    event_name: String,
    /// Who reads.
    #[schema(schema_with = id_schema)]
    consumer_id: String,
    /// Who is read.
    #[schema(schema_with = id_schema)]
    producer_id: String,
}

/// `POST /v1/publish`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct FsPublishBody {
    /// What happened (`tweet`, `like`, …).
    #[schema(schema_with = verb_schema)]
    verb: String,
    /// Who did it.
    #[schema(schema_with = id_schema)]
    producer_id: String,
    /// What it is about.
    #[schema(schema_with = id_schema)]
    item_id: String,
    /// An Activity event's one consumer (its notification feed): required when an Activity
    /// feed lists the verb, refused otherwise.
    #[schema(schema_with = optional_id_schema)]
    consumer_id: Option<String>,
    /// Unix seconds.
    timestamp: Option<f64>,
    /// The feed the event is for; checked against its verbs when given.
    #[schema(schema_with = optional_id_schema)]
    event_name: Option<String>,
}

/// `POST /v1/retract`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct FsRetractBody {
    /// The verb it was published with.
    #[schema(schema_with = verb_schema)]
    verb: String,
    /// Who published it.
    #[schema(schema_with = id_schema)]
    producer_id: String,
    /// The item.
    #[schema(schema_with = id_schema)]
    item_id: String,
    /// The consumer an Activity event is retracted for (required for Activity-event verbs,
    /// refused for others); other consumers keep theirs.
    #[schema(schema_with = optional_id_schema)]
    consumer_id: Option<String>,
}

/// A FeedStream write's answer: `{"ok": true, "<what>": true}`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct FsOk {
    /// Always true.
    ok: bool,
}

/// `GET /v1/consume` arguments.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct FsConsumeArgs {
    /// The declared feed to read.
    #[param(min_length = 1, pattern = r"\S")]
    event_name: String,
    /// Whose feed.
    #[param(min_length = 1, pattern = r"\S")]
    consumer_id: String,
    /// Items, 1–100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// An item id: items older than it.
    before: Option<String>,
    /// An item id: items newer than it.
    after: Option<String>,
}

/// The routes, or (disabled) one catch-all saying so.
pub fn routes(enabled: bool) -> Router<AppState> {
    if !enabled {
        return Router::new()
            .route("/v1", any(disabled))
            .route("/v1/{*rest}", any(disabled));
    }
    Router::new()
        .route("/v1/subscribe", post(subscribe))
        .route("/v1/unsubscribe", post(unsubscribe))
        .route("/v1/publish", post(publish))
        .route("/v1/retract", post(retract))
        .route("/v1/consume", get(consume))
        .route("/v1", any(no_route))
        .route("/v1/{*rest}", any(no_route))
}

async fn disabled() -> FsError {
    FsError::not_found("the FeedStream profile is disabled on this server ([compat] feedstream)")
}

async fn no_route() -> FsError {
    FsError::not_found(
        "no such FeedStream route: POST /v1/subscribe, /v1/unsubscribe, /v1/publish, /v1/retract; GET /v1/consume",
    )
}

/// Registers the item object type (in memory; activity types are registered per verb on
/// first publish). A type of the same name from the config file or the API is left alone.
pub fn register_types(state: &AppState) {
    ensure_type(state, ITEM_TYPE, "object");
}

fn ensure_type(state: &AppState, name: &str, kind: &str) {
    if state.types.status(name) != TypeStatus::Unknown {
        return;
    }
    let schema = if kind == "object" {
        json!({"type": "object", "required": ["id", "verb"],
               "properties": {"id": {"type": "string"}, "verb": {"type": "string"}}})
    } else {
        json!({"type": "object"})
    };
    let custom = tidings_store::model::CustomType {
        name: name.to_owned(),
        kind: kind.to_owned(),
        schema,
        actions: Value::Null,
    };
    if let Err(e) = state.types.register(&custom) {
        tracing::warn!(name, error = %e.message, "FeedStream type not registered");
    }
}

/// A verb as FeedStream spells it: letters, digits, `_` and `-`, kept in lowercase.
fn check_verb(raw: &str) -> FsResult<String> {
    let verb = raw.trim().to_ascii_lowercase();
    if verb.is_empty()
        || verb.chars().count() > MAX_VERB_CHARS
        || !verb
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(FsError::bad(format!(
            "verb must be 1-{MAX_VERB_CHARS} letters, digits, '_' or '-'"
        )));
    }
    Ok(verb)
}

/// The activity type a verb is published as: `tweet` → `Tweet`, `photo_like` → `PhotoLike`.
/// Built-in names (`like` → `Like`, `follow` → `Follow`) carry engine semantics a FeedStream
/// event does not have, so they become `FeedStreamLike`, `FeedStreamFollow`.
pub fn verb_type(verb: &str) -> String {
    let camel: String = verb
        .split(['_', '-'])
        .filter(|p| !p.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect();
    let clashes = ACTIVITY_TYPES.contains(&camel.as_str())
        || OBJECT_TYPES.contains(&camel.as_str())
        || camel == ITEM_TYPE;
    if clashes || !camel.starts_with(|c: char| c.is_ascii_alphabetic()) {
        format!("FeedStream{camel}")
    } else {
        camel
    }
}

/// Usernames to try for a FeedStream id: readable when the id is a valid username, else a
/// hash of it (ids are opaque: any string).
fn candidates(ext_id: &str) -> Vec<String> {
    let hash = hex::encode(Sha256::digest(ext_id.as_bytes()));
    let mut out = Vec::new();
    let readable = format!("{USER_PREFIX}{ext_id}");
    if tidings_core::expr::is_valid_slug(&readable) {
        out.push(readable);
    }
    out.push(format!("{USER_PREFIX}{}", &hash[..16]));
    out.push(format!("{USER_PREFIX}{}", &hash[..40]));
    out
}

/// An id field: a non-empty string (or an integer, taken as its decimal text).
fn id_field(body: &Map<String, Value>, key: &str) -> FsResult<Option<String>> {
    let text = match body.get(key) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s.trim().to_owned(),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => n.to_string(),
        // JSON does not tell `7` from `7.0`: a whole number is an integer however written.
        Some(Value::Number(n)) if n.as_f64().and_then(whole_number).is_some() => {
            n.as_f64().and_then(whole_number).unwrap_or_default()
        }
        Some(_) => {
            return Err(FsError::bad(format!(
                "{key} must be a string or an integer"
            )));
        }
    };
    if text.is_empty() || text.chars().count() > MAX_ID_CHARS {
        return Err(FsError::bad(format!(
            "{key} must be 1-{MAX_ID_CHARS} characters"
        )));
    }
    Ok(Some(text))
}

/// The decimal text of a float that is a whole number in the integer range ids take.
fn whole_number(f: f64) -> Option<String> {
    // 2^64: the end of the u64 range, exactly representable as an f64.
    const END: f64 = 18_446_744_073_709_551_616.0;
    // Both ends open: a number just past either end rounds onto it as an f64.
    (f.fract() == 0.0 && f > i64::MIN as f64 && f < END).then(|| format!("{}", f as i128))
}

fn required(body: &Map<String, Value>, key: &str) -> FsResult<String> {
    id_field(body, key)?.ok_or_else(|| FsError::bad(format!("{key} is required")))
}

fn body_of(body: &Body) -> FsResult<Map<String, Value>> {
    json_object(body)
        .map_err(|(status, message)| FsError {
            status,
            message,
            retry_after: None,
        })?
        .ok_or_else(|| FsError::bad("a JSON body is required"))
}

fn feed<'a>(state: &'a AppState, name: &str) -> FsResult<&'a FeedSpec> {
    state.config.feed(name).ok_or_else(|| {
        let names: Vec<&str> = state.config.feeds.iter().map(|f| f.name.as_str()).collect();
        FsError::not_found(format!(
            "unknown event_name {name:?}; declared feeds: {}",
            names.join(", ")
        ))
    })
}

/// The user of an id, refused when an admin suspended or deleted it.
fn usable(ext_id: &str, user: User) -> FsResult<User> {
    match user.status {
        UserStatus::Active => Ok(user),
        UserStatus::Suspended => Err(FsError {
            status: StatusCode::FORBIDDEN,
            message: format!("{ext_id:?} is suspended"),
            retry_after: None,
        }),
        UserStatus::Deleted => Err(FsError {
            status: StatusCode::GONE,
            message: format!("{ext_id:?} was deleted"),
            retry_after: None,
        }),
    }
}

async fn actor(state: &AppState, ext_id: &str) -> FsResult<User> {
    let user = state
        .store
        .fs_actor(ext_id, candidates(ext_id))
        .await?
        .ok_or_else(|| FsError::not_found(format!("no such id {ext_id:?}")))?;
    usable(ext_id, user)
}

async fn known_actor(state: &AppState, ext_id: &str) -> FsResult<Option<User>> {
    state
        .store
        .fs_actor(ext_id, Vec::new())
        .await?
        .map(|user| usable(ext_id, user))
        .transpose()
}

fn ok(field: &str) -> axum::Json<Value> {
    let mut body = Map::new();
    body.insert("ok".into(), Value::Bool(true));
    body.insert(field.into(), Value::Bool(true));
    axum::Json(Value::Object(body))
}

/// Subscribe a consumer to a producer (a Follow). Subscribing again changes nothing.
#[utoipa::path(post, path = "/v1/subscribe", operation_id = "feedstream_subscribe", tag = "compat: FeedStream", request_body = FsRelationBody,
    responses((status = 200, body = FsOk, description = "`{\"ok\": true, \"subscribed\": true}`"),
        (status = 400, description = "a missing or malformed field"), (status = 404, description = "unknown event_name"),
        (status = 403, description = "the id's user is suspended"), (status = 410, description = "the id's user was deleted"), (status = 422, description = "a consumer subscribing to itself")))]
pub async fn subscribe(State(state): State<AppState>, body: Body) -> FsResult<axum::Json<Value>> {
    let body = body_of(&body)?;
    let event_name = required(&body, "event_name")?;
    let consumer_id = required(&body, "consumer_id")?;
    let producer_id = required(&body, "producer_id")?;
    feed(&state, &event_name)?;
    if consumer_id == producer_id {
        return Err(FsError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            message: "a consumer cannot subscribe to itself".into(),
            retry_after: None,
        });
    }
    let consumer = actor(&state, &consumer_id).await?;
    let producer = actor(&state, &producer_id).await?;
    if state
        .store
        .follow_activity(&consumer, &producer.username)
        .await?
        .is_none()
    {
        let follow = json!({"type": "Follow", "object": format!("user:{}", producer.username),
                            "to": [format!("user:{}", producer.username)]});
        match publish_value(&state, consumer, &follow, None).await {
            Ok(published) => settle(&state, published.seq).await,
            // A concurrent subscribe got there first: the relation exists, as asked.
            Err(e) if e.code == "already_following" => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(ok("subscribed"))
}

/// Unsubscribe a consumer from a producer (an Undo of the Follow). Unsubscribing when not
/// subscribed changes nothing.
#[utoipa::path(post, path = "/v1/unsubscribe", operation_id = "feedstream_unsubscribe", tag = "compat: FeedStream", request_body = FsRelationBody,
    responses((status = 200, body = FsOk, description = "`{\"ok\": true, \"unsubscribed\": true}`"),
        (status = 400, description = "a missing or malformed field"), (status = 404, description = "unknown event_name"),
        (status = 403, description = "the id's user is suspended"), (status = 410, description = "the id's user was deleted")))]
pub async fn unsubscribe(State(state): State<AppState>, body: Body) -> FsResult<axum::Json<Value>> {
    let body = body_of(&body)?;
    let event_name = required(&body, "event_name")?;
    let consumer_id = required(&body, "consumer_id")?;
    let producer_id = required(&body, "producer_id")?;
    feed(&state, &event_name)?;
    let (Some(consumer), Some(producer)) = (
        known_actor(&state, &consumer_id).await?,
        known_actor(&state, &producer_id).await?,
    ) else {
        return Ok(ok("unsubscribed"));
    };
    if let Some(follow_id) = state
        .store
        .follow_activity(&consumer, &producer.username)
        .await?
    {
        let published = publish_value(
            &state,
            consumer,
            &json!({"type": "Undo", "object": follow_id}),
            None,
        )
        .await?;
        settle(&state, published.seq).await;
    }
    Ok(ok("unsubscribed"))
}

/// Whether a declared feed processes a verb (by FeedStream name or by activity type): FeedStream
/// feeds process exactly the verbs they list, Activity (notification) feeds only with a consumer.
fn feed_takes(spec: &FeedSpec, verb: &str, has_consumer: bool) -> bool {
    match spec.kind {
        FeedKind::Notification => has_consumer && activity_feed_takes(spec, verb),
        _ => {
            !has_consumer
                && (spec.verbs.is_empty()
                    || spec
                        .verbs
                        .iter()
                        .any(|v| v.trim().eq_ignore_ascii_case(verb))
                    || spec.takes_verb(&verb_type(verb)))
        }
    }
}

/// Whether an Activity (notification) feed lists a verb.
fn activity_feed_takes(spec: &FeedSpec, verb: &str) -> bool {
    Reason::parse(verb).is_some_and(|reason| spec.reasons().contains(&reason))
}

/// The declared Activity feeds that process a verb: publishing or retracting it is an Activity
/// event, which FeedStream's README says needs a `consumer_id`.
fn activity_feeds_taking<'a>(state: &'a AppState, verb: &str) -> Vec<&'a str> {
    state
        .config
        .feeds
        .iter()
        .filter(|f| f.kind == FeedKind::Notification && activity_feed_takes(f, verb))
        .map(|f| f.name.as_str())
        .collect()
}

/// Whether a flat or aggregated feed lists the verb by name, so an Activity event of that verb
/// also reaches the producer's subscribers.
fn flat_feed_lists(state: &AppState, verb: &str) -> bool {
    state.config.feeds.iter().any(|f| {
        f.kind != FeedKind::Notification
            && f.verbs.iter().any(|v| v.trim().eq_ignore_ascii_case(verb))
    })
}

/// Checks that `consumer_id` is given exactly when the verb is an Activity event's.
/// A refusal that depends on the declared feeds, not on the body's shape (422).
fn unprocessable(message: String) -> FsError {
    FsError {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        message,
        retry_after: None,
    }
}

fn check_consumer(state: &AppState, verb: &str, consumer_id: Option<&str>) -> FsResult<()> {
    let activity_feeds = activity_feeds_taking(state, verb);
    match (consumer_id, activity_feeds.is_empty()) {
        (None, false) => Err(unprocessable(format!(
            "{verb:?} is an Activity event (processed by {}): consumer_id is required",
            activity_feeds.join(", ")
        ))),
        (Some(_), true) => {
            let taken: Vec<String> = state
                .config
                .feeds
                .iter()
                .filter(|f| f.kind == FeedKind::Notification)
                .map(|f| {
                    let verbs: Vec<&str> = f.verbs.iter().map(|v| v.trim()).collect();
                    format!("{} ({})", f.name, verbs.join(", "))
                })
                .collect();
            Err(unprocessable(format!(
                "no Activity event processes verb {verb:?}, so consumer_id does not apply \
                 (Activity events: {})",
                if taken.is_empty() {
                    "none declared".to_owned()
                } else {
                    taken.join("; ")
                }
            )))
        }
        _ => Ok(()),
    }
}

/// Publish an event by a producer. A verb an Activity feed processes is an Activity event and
/// needs `consumer_id`: it reaches that consumer's Activity feeds (while the consumer is
/// subscribed to the producer, their relation). Other verbs reach the producer's subscribers.
/// Publishing the same (producer, verb, item) again adds no second activity (a new consumer of
/// it is notified).
#[utoipa::path(post, path = "/v1/publish", operation_id = "feedstream_publish", tag = "compat: FeedStream", request_body = FsPublishBody,
    responses((status = 200, body = FsOk, description = "`{\"ok\": true, \"published\": true}`"),
        (status = 400, description = "a missing or malformed field"),
        (status = 404, description = "unknown event_name"), (status = 403, description = "the id's user is suspended"), (status = 410, description = "the id's user was deleted"), (status = 422, description = "the engine refused the activity; an Activity-event verb without consumer_id, a consumer_id with a verb no Activity event takes, or a verb the named event does not take (the declared feeds decide)")))]
pub async fn publish(State(state): State<AppState>, body: Body) -> FsResult<axum::Json<Value>> {
    let body = body_of(&body)?;
    let verb = check_verb(&required(&body, "verb")?)?;
    let producer_id = required(&body, "producer_id")?;
    let item_id = required(&body, "item_id")?;
    let consumer_id = id_field(&body, "consumer_id")?;
    let timestamp = match body.get("timestamp") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(n.clone()),
        Some(_) => return Err(FsError::bad("timestamp must be a number (unix seconds)")),
    };
    if let Some(name) = id_field(&body, "event_name")? {
        let spec = feed(&state, &name)?;
        if spec.kind == FeedKind::Notification && consumer_id.is_none() {
            return Err(unprocessable(format!(
                "{name:?} is an Activity event: consumer_id is required"
            )));
        }
        if !feed_takes(spec, &verb, consumer_id.is_some()) {
            return Err(unprocessable(format!(
                "event {name:?} does not take verb {verb:?}"
            )));
        }
    }
    check_consumer(&state, &verb, consumer_id.as_deref())?;
    let activity_type = verb_type(&verb);
    ensure_type(&state, &activity_type, "activity");
    let producer = actor(&state, &producer_id).await?;
    let consumer = match &consumer_id {
        Some(id) => Some(actor(&state, id).await?),
        None => None,
    };
    let to_subscribers = consumer.is_none() || flat_feed_lists(&state, &verb);
    let existing = state
        .store
        .live_reaction(&producer, &activity_type, &item_id)
        .await?;
    let existing = match existing {
        Some(id) => Some(state.store.activity(&id, producer.clone()).await?),
        None => None,
    };
    // An Activity event's activity reaches no subscribers: a Flat publish of the same item
    // still needs its own.
    let reusable = existing.filter(|(_, doc)| {
        !to_subscribers
            || doc
                .get("to")
                .and_then(Value::as_array)
                .is_some_and(|to| to.iter().any(|a| a == "followers"))
    });
    let seq = match reusable {
        Some((seq, _)) => seq,
        None => {
            let mut object = json!({"type": ITEM_TYPE, "id": item_id, "verb": verb});
            if let (Some(ts), Some(map)) = (timestamp, object.as_object_mut()) {
                map.insert("timestamp".into(), Value::Number(ts));
            }
            let to = if to_subscribers {
                json!(["followers"])
            } else {
                json!([])
            };
            let activity = json!({"type": activity_type, "object": object, "to": to});
            publish_value(&state, producer, &activity, None).await?.seq
        }
    };
    if let Some(consumer) = consumer {
        // check_consumer made sure an Activity feed takes the verb, so it names a reason.
        let reason = Reason::parse(&verb).unwrap_or(Reason::Mention);
        state
            .store
            .notify_directly(consumer.id, seq, reason)
            .await?;
    }
    settle(&state, seq).await;
    Ok(ok("published"))
}

/// Retract an event previously published by a producer. A Flat event's activity is retracted (a
/// Delete); an Activity event is retracted for the consumer named, and stays for any other
/// consumer it reached.
#[utoipa::path(post, path = "/v1/retract", operation_id = "feedstream_retract", tag = "compat: FeedStream", request_body = FsRetractBody,
    responses((status = 200, body = FsOk, description = "`{\"ok\": true, \"retracted\": true}`"),
        (status = 400, description = "a missing or malformed field"), (status = 422, description = "an Activity-event verb without consumer_id, or a consumer_id with a verb no Activity event takes (the declared feeds decide)"), (status = 404, description = "no such published item (for that consumer)"),
        (status = 403, description = "the id's user is suspended"), (status = 410, description = "the id's user was deleted")))]
pub async fn retract(State(state): State<AppState>, body: Body) -> FsResult<axum::Json<Value>> {
    let body = body_of(&body)?;
    let verb = check_verb(&required(&body, "verb")?)?;
    let producer_id = required(&body, "producer_id")?;
    let item_id = required(&body, "item_id")?;
    let consumer_id = id_field(&body, "consumer_id")?;
    check_consumer(&state, &verb, consumer_id.as_deref())?;
    let missing = || {
        FsError::not_found(format!(
            "{producer_id:?} has no published {verb:?} item {item_id:?}{}",
            consumer_id
                .as_deref()
                .map(|c| format!(" for consumer {c:?}"))
                .unwrap_or_default()
        ))
    };
    let producer = known_actor(&state, &producer_id)
        .await?
        .ok_or_else(missing)?;
    let id = state
        .store
        .live_reaction(&producer, &verb_type(&verb), &item_id)
        .await?
        .ok_or_else(missing)?;
    if let Some(consumer_id) = &consumer_id {
        let consumer = known_actor(&state, consumer_id)
            .await?
            .ok_or_else(missing)?;
        let (seq, doc) = state.store.activity(&id, producer.clone()).await?;
        let notified = state.store.notified_users(seq).await?;
        if !notified.iter().any(|(user, _)| *user == consumer.id) {
            return Err(missing());
        }
        let others: Vec<(i64, Reason)> = notified
            .into_iter()
            .filter(|(user, _)| *user != consumer.id)
            .collect();
        if !others.is_empty() {
            // The log is immutable: the event is published anew for the other consumers before
            // the original is retracted, so a crash in between leaves a duplicate, never a loss.
            let again = json!({
                "type": doc.get("type").cloned().unwrap_or(Value::Null),
                "object": doc.get("object").cloned().unwrap_or(Value::Null),
                "to": doc.get("to").cloned().unwrap_or_else(|| json!([])),
            });
            let published = publish_value(&state, producer.clone(), &again, None).await?;
            for (user, reason) in others {
                state
                    .store
                    .notify_directly(user, published.seq, reason)
                    .await?;
            }
        }
    }
    let published = publish_value(
        &state,
        producer,
        &json!({"type": "Delete", "object": id}),
        None,
    )
    .await?;
    settle(&state, published.seq).await;
    Ok(ok("retracted"))
}

/// One consumed item: FeedStream's item id and verb, or for activities published through the
/// native API their id and lowercased type.
fn consumed(activity: &str) -> ConsumedItem {
    let doc: Value = serde_json::from_str(activity).unwrap_or(Value::Null);
    let object = doc.get("object");
    if let Some(object) =
        object.filter(|o| o.get("type").and_then(Value::as_str) == Some(ITEM_TYPE))
    {
        return ConsumedItem {
            item_id: object.get("id").cloned().unwrap_or(Value::Null),
            verb: object.get("verb").cloned().unwrap_or(Value::Null),
        };
    }
    ConsumedItem {
        item_id: doc.get("id").cloned().unwrap_or(Value::Null),
        verb: doc
            .get("type")
            .and_then(Value::as_str)
            .map_or(Value::Null, |t| Value::String(t.to_ascii_lowercase())),
    }
}

async fn item_seq(state: &AppState, key: &str, item_id: &str) -> FsResult<i64> {
    state
        .store
        .fs_item_seq(item_id)
        .await?
        .ok_or_else(|| FsError::not_found(format!("{key}: no item {item_id:?}")))
}

/// Consume a feed for a consumer, newest first; `before` / `after` take an item id.
#[utoipa::path(get, path = "/v1/consume", operation_id = "feedstream_consume", tag = "compat: FeedStream", params(FsConsumeArgs),
    responses((status = 200, body = ConsumeBody),
        (status = 400, description = "a missing or malformed argument, or an aggregated feed"),
        (status = 404, description = "unknown event_name, or no such item in before/after"), (status = 403, description = "the id's user is suspended"), (status = 410, description = "the id's user was deleted")))]
pub async fn consume(
    State(state): State<AppState>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> FsResult<axum::Json<ConsumeBody>> {
    let Query(args) = query.map_err(|e| FsError::bad(e.body_text()))?;
    let arg = |key: &str| -> FsResult<String> {
        args.get(key)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| FsError::bad(format!("{key} is required")))
    };
    let spec = feed(&state, &arg("event_name")?)?;
    let consumer_id = arg("consumer_id")?;
    let limit = match args.get("limit") {
        None => DEFAULT_LIMIT,
        Some(raw) => raw
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| FsError::bad(format!("limit must be between 1 and {MAX_LIMIT}")))?,
    };
    let before = args.get("before").filter(|v| !v.trim().is_empty());
    let after = args.get("after").filter(|v| !v.trim().is_empty());
    let from = match (before, after) {
        (Some(_), Some(_)) => return Err(FsError::bad("give before or after, not both")),
        (Some(b), None) => PageFrom::Before(item_seq(&state, "before", b.trim()).await?),
        (None, Some(a)) => PageFrom::After(item_seq(&state, "after", a.trim()).await?),
        (None, None) => PageFrom::Newest,
    };
    let Some(consumer) = known_actor(&state, &consumer_id).await? else {
        return Ok(axum::Json(ConsumeBody {
            ok: true,
            data: Vec::new(),
        }));
    };
    let page = match spec.kind {
        FeedKind::Flat => {
            // The feed's verbs are FeedStream verbs; its items carry their activity types.
            let mut mapped = spec.clone();
            mapped.verbs = spec
                .verbs
                .iter()
                .flat_map(|v| [v.clone(), verb_type(&v.trim().to_ascii_lowercase())])
                .collect();
            state
                .store
                .feed_page(consumer, &mapped, InboxFilter::default(), from, limit)
                .await?
        }
        FeedKind::Notification => {
            // Activity feeds have relations like Flat ones: a consumer sees the events of the
            // producers it is subscribed to, and unsubscribing takes them out.
            let producers = state.store.following_ids(consumer.id).await?;
            state
                .store
                .notification_page_by_actors(consumer, spec, producers, from, limit)
                .await?
        }
        FeedKind::Aggregated => {
            return Err(FsError::bad(format!(
                "{:?} is an aggregated feed; FeedStream consumes flat and notification feeds",
                spec.name
            )));
        }
    };
    let data = page.items.iter().map(|i| consumed(&i.activity)).collect();
    Ok(axum::Json(ConsumeBody { ok: true, data }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_map_to_type_names_without_clashing_with_built_ins() {
        assert_eq!(verb_type("tweet"), "Tweet");
        assert_eq!(verb_type("photo_like"), "PhotoLike");
        assert_eq!(verb_type("like"), "FeedStreamLike");
        assert_eq!(verb_type("follow"), "FeedStreamFollow");
        assert_eq!(verb_type("note"), "FeedStreamNote");
        assert_eq!(verb_type("1st"), "FeedStream1st");
    }

    #[test]
    fn ids_become_usernames_or_hashes() {
        assert_eq!(candidates("joerogan")[0], "fs-joerogan");
        let odd = candidates("Joe Rogan!");
        assert!(odd[0].starts_with("fs-") && odd[0].len() == 19, "{odd:?}");
    }

    #[test]
    fn verbs_are_checked() {
        assert_eq!(check_verb(" Tweet ").ok().as_deref(), Some("tweet"));
        assert!(check_verb("").is_err());
        assert!(check_verb("two words").is_err());
    }
}
