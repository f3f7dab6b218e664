//! Consuming a topic without a webhook (decision 0024): pull consumers lease and ack events,
//! streams follow a subscription over Server-Sent Events, and every subscription can be
//! replayed from any log position, paused, resumed and deleted. Topics without subscriptions
//! can be deleted.
//!
//! Offsets are log positions (an activity's `seq`): a pulled or streamed event carries its
//! `position`, a stream's `id:` is the position (so `Last-Event-ID` resumes after it), and a
//! replay or a new subscription's `start` names a position, `beginning`, `now` or a time.
//! Authorization is the webhooks': a service sees and consumes only its own subscriptions
//! (another's answer 404), admins all.

use super::auth::BusCaller;
use super::dispatch::{event_body, replay};
use super::error::BusError;
use super::topics::visible;
use crate::AppState;
use crate::auth::AdminUser;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::convert::Infallible;
use std::time::{Duration, Instant};
use tidings_store::StoreError;
use tidings_store::model::Webhook;
use utoipa::{IntoParams, ToSchema};

/// A waiting pull or an idle stream looks again this often even when nothing rang (other
/// nodes' matches, expired leases).
const IDLE_POLL: Duration = Duration::from_millis(100);
/// An idle stream sends a comment this often, so proxies keep it open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// An idle stream checks this often that its subscription still exists and is not paused.
const STATUS_CHECK: Duration = Duration::from_secs(1);
/// How long a browser waits before reconnecting, in milliseconds.
const RETRY_MS: u32 = 2000;
/// Largest reply stored with an ack (JSON text).
const MAX_REPLY_BYTES: usize = 64 * 1024;

/// Where a replay (or a new subscription) starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// The first activity of the log.
    Beginning,
    /// The log's end: only what is published afterwards.
    Now,
    /// This log position and after.
    At(i64),
}

/// A start point: a string (`format: bus-position`: `"beginning"`, `"now"` or an RFC 3339
/// time; anything else is a 400 `invalid_position`) or a log position (a whole number from 0).
pub fn position_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, Type};
    let one_of = OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::Custom("bus-position".to_owned()))),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(0)),
        )
        .build();
    Schema::OneOf(one_of)
}

/// A new subscription's `start`: a [`position_schema`], or null (the default, `now`).
pub fn start_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
    let Schema::OneOf(mut one_of) = position_schema() else {
        return position_schema();
    };
    one_of
        .items
        .push(ObjectBuilder::new().schema_type(Type::Null).into());
    Schema::OneOf(one_of)
}

/// Reads a start point: `beginning`, `now`, a log position or an RFC 3339 time (the first
/// position published at or after it).
pub async fn parse_position(state: &AppState, value: &Value) -> ApiResult<Position> {
    let invalid = || {
        ApiError::from(BusError::InvalidPosition(
            "a position is \"beginning\", \"now\", a log position (a whole number) or an \
             RFC 3339 time"
                .into(),
        ))
    };
    match value {
        Value::String(text) if text == "beginning" => Ok(Position::Beginning),
        Value::String(text) if text == "now" => Ok(Position::Now),
        Value::String(text) => {
            let at =
                time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                    .map_err(|_| invalid())?;
            Ok(Position::At(state.store.position_at(at).await?))
        }
        Value::Number(n) => {
            let seq = n
                .as_i64()
                .or_else(|| {
                    n.as_f64()
                        .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e18)
                        .map(|f| f as i64)
                })
                .filter(|seq| *seq >= 0)
                .ok_or_else(invalid)?;
            // A position past the log's end replays nothing (there is nothing there yet).
            Ok(Position::At(seq.max(1)))
        }
        _ => Err(invalid()),
    }
}

/// What a replay did.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReplayOutcome {
    /// The first log position the subscription is owed from now on.
    pub from: i64,
    /// How many events from there on it is owed now (0 after `now`).
    pub owed: i64,
}

/// Owes a subscription the log from `position` on again (`now`: drops what it was owed and
/// starts after the log's end).
pub async fn replay_from(
    state: &AppState,
    hook: &Webhook,
    position: Position,
) -> ApiResult<ReplayOutcome> {
    let outcome = match position {
        Position::Now => ReplayOutcome {
            from: state
                .store
                .skip_to_end(hook.id.clone())
                .await?
                .saturating_add(1),
            owed: 0,
        },
        Position::Beginning => ReplayOutcome {
            from: 1,
            owed: replay(&state.store, hook, 1).await?,
        },
        Position::At(seq) => ReplayOutcome {
            from: seq,
            owed: replay(&state.store, hook, seq).await?,
        },
    };
    tracing::info!(subscription = %hook.id, from = outcome.from, owed = outcome.owed, "subscription replayed");
    state.bus_news.notify_waiters();
    Ok(outcome)
}

fn require_mode(hook: &Webhook, wanted: &'static str, operation: &'static str) -> ApiResult<()> {
    if hook.mode != wanted {
        return Err(BusError::WrongMode {
            operation,
            wanted,
            actual: hook.mode.clone(),
        }
        .into());
    }
    if hook.paused {
        return Err(BusError::Paused.into());
    }
    Ok(())
}

/// Pull arguments.
#[derive(Debug, Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PullBody {
    /// At most this many events (1–100, default 10).
    #[schema(minimum = 1, maximum = 100)]
    #[serde(default, deserialize_with = "super::whole")]
    pub max: Option<i64>,
    /// When none is ready, wait up to this long for one, in milliseconds (0–20000, default 0).
    #[schema(minimum = 0, maximum = 20000)]
    #[serde(default, deserialize_with = "super::whole")]
    pub wait_ms: Option<i64>,
}

/// One leased event.
#[derive(Debug, Serialize, ToSchema)]
pub struct PulledEventBody {
    /// What to ack: the same every time this event is leased (drop duplicates by it).
    pub id: String,
    /// The activity's log position.
    pub position: i64,
    /// The topic.
    pub topic: String,
    /// `activity.TYPE`.
    #[serde(rename = "type")]
    pub kind: String,
    /// When the activity was published.
    pub timestamp: Value,
    /// The activity as stored.
    pub data: Value,
    /// How many times it has been leased, this one included.
    pub deliveries: i64,
    /// Until when (unix ms) it is this consumer's; unacked, it comes back then.
    pub lease_until_ms: i64,
}

/// Leased events.
#[derive(Debug, Serialize, ToSchema)]
pub struct PulledEvents {
    /// In log order; empty when none was ready within `wait_ms`.
    pub items: Vec<PulledEventBody>,
}

fn check_range(field: &'static str, value: i64, min: i64, max: i64) -> ApiResult<i64> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(BusError::OutOfRange { field, min, max }.into())
    }
}

/// Lease up to `max` events of a pull subscription (waiting up to `wait_ms` for one). Each
/// stays the caller's for the subscription's `lease_ms`; unacked, it comes back. Consumers of
/// one subscription never hold the same event at once.
#[utoipa::path(post, path = "/api/v1/topics/{topic}/subscriptions/{id}/pull", tag = "bus", operation_id = "pull_events", security(("bearer" = [])),
    params(("topic" = String, Path), ("id" = String, Path)), request_body(content = Option<PullBody>, description = "optional"),
    responses((status = 200, body = PulledEvents), (status = 400, description = "`invalid_json` or `invalid_argument`"), (status = 403, description = "`admin_only`"), (status = 404), (status = 409, description = "`wrong_mode` or `subscription_paused`")))]
pub async fn pull(
    State(state): State<AppState>,
    caller: BusCaller,
    ApiPath((topic, id)): ApiPath<(String, String)>,
    body: Bytes,
) -> ApiResult<Json<PulledEvents>> {
    let body: PullBody = super::optional_body(&body)?;
    let max = check_range("max", body.max.unwrap_or(10), 1, 100)?;
    let wait = check_range("wait_ms", body.wait_ms.unwrap_or(0), 0, 20_000)?;
    let hook = visible(&state, &caller, topic, id).await?;
    require_mode(&hook, "pull", "pulling")?;
    let deadline = Instant::now() + Duration::from_millis(u64::try_from(wait).unwrap_or(0));
    loop {
        // Registered before looking, so news that lands between the look and the wait
        // is not missed.
        let news = state.bus_news.notified();
        tokio::pin!(news);
        news.as_mut().enable();
        let events = state.store.pull_events(hook.id.clone(), max).await?;
        let now = Instant::now();
        if !events.is_empty() || now >= deadline {
            let items = events
                .into_iter()
                .map(|e| {
                    let body = event_body(&hook.topic, &e.id, e.seq, &e.body);
                    PulledEventBody {
                        kind: body["type"].as_str().unwrap_or_default().to_owned(),
                        timestamp: body["timestamp"].clone(),
                        data: body["data"].clone(),
                        id: e.id,
                        position: e.seq,
                        topic: hook.topic.clone(),
                        deliveries: e.deliveries,
                        lease_until_ms: e.lease_until_ms,
                    }
                })
                .collect();
            return Ok(Json(PulledEvents { items }));
        }
        let _ = tokio::time::timeout(IDLE_POLL.min(deadline - now), news).await;
    }
}

/// Acknowledge pulled events.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AckEventsBody {
    /// The events' ids, as pulled (1–1000).
    #[schema(min_items = 1, max_items = 1000)]
    pub ids: Vec<String>,
    /// A reply to keep with each event this ack settles (any JSON, at most 64 KiB), for
    /// producers that wait for one.
    pub reply: Option<Value>,
}

/// One id's outcome.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventAck {
    /// The event's id.
    pub id: String,
    /// True when this ack settled it; false when it was unknown or already acknowledged.
    pub acked: bool,
}

/// Ack outcomes.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventAcks {
    /// One per id, in the order given.
    pub items: Vec<EventAck>,
}

/// Acknowledge events of a pull subscription (each answers for itself), optionally with a
/// reply kept by event. An ack after the lease ran out still settles the event (delivery is at
/// least once: another consumer may have it too).
#[utoipa::path(post, path = "/api/v1/topics/{topic}/subscriptions/{id}/ack", tag = "bus", operation_id = "ack_events", security(("bearer" = [])),
    params(("topic" = String, Path), ("id" = String, Path)), request_body = AckEventsBody,
    responses((status = 200, body = EventAcks), (status = 400, description = "`invalid_json`, `invalid_argument` or `invalid_reply`"), (status = 403, description = "`admin_only`"), (status = 404), (status = 409, description = "`wrong_mode`")))]
pub async fn ack(
    State(state): State<AppState>,
    caller: BusCaller,
    ApiPath((topic, id)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<AckEventsBody>,
) -> ApiResult<Json<EventAcks>> {
    let count = i64::try_from(body.ids.len()).unwrap_or(i64::MAX);
    check_range("ids", count, 1, 1000)?;
    let reply = match body.reply {
        None | Some(Value::Null) => None,
        Some(value) => {
            let text = value.to_string();
            if text.len() > MAX_REPLY_BYTES {
                return Err(ApiError::bad_request(
                    "invalid_reply",
                    "a reply is at most 64 KiB of JSON",
                ));
            }
            Some(text)
        }
    };
    let hook = visible(&state, &caller, topic, id).await?;
    if hook.mode != "pull" {
        return Err(BusError::WrongMode {
            operation: "acking",
            wanted: "pull",
            actual: hook.mode,
        }
        .into());
    }
    let items = state
        .store
        .ack_events(hook.id, body.ids, reply)
        .await?
        .into_iter()
        .map(|(id, acked)| EventAck { id, acked })
        .collect();
    Ok(Json(EventAcks { items }))
}

/// Replay a subscription.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayBody {
    /// `"beginning"`, `"now"` (drop what is owed; only what comes next), a log position (from
    /// it on, inclusive) or an RFC 3339 time (from the first activity published then or later).
    #[schema(schema_with = position_schema)]
    pub from: Value,
}

/// Re-deliver a subscription's topic from any point of the log: what the topic got from there
/// on is owed again (delivered or acked before, or from before the subscription existed).
/// Works in every mode: a webhook is sent it again, a pull consumer leases it again, a queue
/// gets jobs again, a stream can read it from that position.
#[utoipa::path(post, path = "/api/v1/topics/{topic}/subscriptions/{id}/replay", tag = "bus", operation_id = "replay_subscription", security(("bearer" = [])),
    params(("topic" = String, Path), ("id" = String, Path)), request_body = ReplayBody,
    responses((status = 200, body = ReplayOutcome), (status = 400, description = "`invalid_json` or `invalid_position`"), (status = 403, description = "`admin_only`"), (status = 404)))]
pub async fn replay_subscription(
    State(state): State<AppState>,
    caller: BusCaller,
    ApiPath((topic, id)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<ReplayBody>,
) -> ApiResult<Json<ReplayOutcome>> {
    let position = parse_position(&state, &body.from).await?;
    let hook = visible(&state, &caller, topic, id).await?;
    Ok(Json(replay_from(&state, &hook, position).await?))
}

/// Pause a subscription: nothing is sent, leased or streamed; what its topic gets is kept for
/// it and delivered after resuming.
#[utoipa::path(post, path = "/api/v1/topics/{topic}/subscriptions/{id}/pause", tag = "bus", operation_id = "pause_subscription", security(("bearer" = [])),
    params(("topic" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = Webhook), (status = 403, description = "`admin_only`"), (status = 404)))]
pub async fn pause(
    State(state): State<AppState>,
    caller: BusCaller,
    ApiPath((topic, id)): ApiPath<(String, String)>,
) -> ApiResult<Json<Webhook>> {
    let hook = visible(&state, &caller, topic, id).await?;
    Ok(Json(
        state.store.set_subscription_paused(hook.id, true).await?,
    ))
}

/// Resume a paused subscription: its backlog goes out.
#[utoipa::path(post, path = "/api/v1/topics/{topic}/subscriptions/{id}/resume", tag = "bus", operation_id = "resume_subscription", security(("bearer" = [])),
    params(("topic" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = Webhook), (status = 403, description = "`admin_only`"), (status = 404)))]
pub async fn resume(
    State(state): State<AppState>,
    caller: BusCaller,
    ApiPath((topic, id)): ApiPath<(String, String)>,
) -> ApiResult<Json<Webhook>> {
    let hook = visible(&state, &caller, topic, id).await?;
    let hook = state.store.set_subscription_paused(hook.id, false).await?;
    state.bus_news.notify_waiters();
    Ok(Json(hook))
}

/// Delete a subscription with what it is owed, its delivery log and its replies.
#[utoipa::path(delete, path = "/api/v1/topics/{topic}/subscriptions/{id}", tag = "bus", operation_id = "delete_subscription", security(("bearer" = [])),
    params(("topic" = String, Path), ("id" = String, Path)),
    responses((status = 204, description = "deleted"), (status = 403, description = "`admin_only`"), (status = 404)))]
pub async fn delete_subscription(
    State(state): State<AppState>,
    caller: BusCaller,
    ApiPath((topic, id)): ApiPath<(String, String)>,
) -> ApiResult<StatusCode> {
    let hook = visible(&state, &caller, topic, id).await?;
    state.store.delete_subscription(hook.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Delete a topic (admins). Refused while it has subscriptions (409
/// `topic_has_subscriptions`): deleting never cascades to other owners' subscriptions.
/// Activities addressed to it stay in the log; new ones addressed to it are refused.
#[utoipa::path(delete, path = "/api/v1/topics/{topic}", tag = "bus", operation_id = "delete_topic", security(("bearer" = [])),
    params(("topic" = String, Path)),
    responses((status = 204, description = "deleted"), (status = 403, description = "`admin_only`"), (status = 404), (status = 409, description = "`topic_has_subscriptions`")))]
pub async fn delete_topic(
    State(state): State<AppState>,
    _admin: AdminUser,
    ApiPath(topic): ApiPath<String>,
) -> ApiResult<StatusCode> {
    state.store.delete_topic(topic).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Stream arguments.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SubscriptionStreamArgs {
    /// Resume after this log position (`Last-Event-ID` wins when both are sent); without
    /// either the stream starts at the log's end.
    #[param(minimum = 0)]
    pub after: Option<i64>,
}

struct StreamState {
    state: AppState,
    hook: Webhook,
    cursor: i64,
    ready: Option<Bytes>,
    done: bool,
    last_frame: Instant,
    last_check: Instant,
}

fn closed_frame(reason: &str) -> Bytes {
    Bytes::from(format!(
        "event: closed\ndata: {{\"reason\":\"{reason}\"}}\n\n"
    ))
}

impl StreamState {
    /// The next frame: events after the cursor, a keep-alive, or the end.
    async fn next_frame(&mut self) -> Bytes {
        loop {
            let news = self.state.bus_news.notified();
            tokio::pin!(news);
            news.as_mut().enable();
            let events = self
                .state
                .store
                .subscription_events(self.hook.id.clone(), self.cursor, 100)
                .await;
            match events {
                Ok(events) if !events.is_empty() => {
                    let mut out = String::new();
                    for (seq, id, body) in events {
                        let data = event_body(&self.hook.topic, &id, seq, &body);
                        out.push_str(&format!("event: activity\nid: {seq}\ndata: {data}\n\n"));
                        self.cursor = seq;
                    }
                    self.last_frame = Instant::now();
                    return Bytes::from(out);
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, subscription = %self.hook.id, "stream read failed");
                    self.done = true;
                    return closed_frame("error");
                }
            }
            if self.last_check.elapsed() >= STATUS_CHECK {
                self.last_check = Instant::now();
                match self
                    .state
                    .store
                    .webhook(self.hook.topic.clone(), self.hook.id.clone())
                    .await
                {
                    Ok(hook) if hook.paused => {
                        self.done = true;
                        return closed_frame("paused");
                    }
                    Ok(_) => {}
                    Err(StoreError::NotFound { .. }) => {
                        self.done = true;
                        return closed_frame("deleted");
                    }
                    Err(e) => tracing::warn!(error = %e, "stream status check failed"),
                }
            }
            if self.last_frame.elapsed() >= KEEP_ALIVE {
                self.last_frame = Instant::now();
                return Bytes::from_static(b":\n\n");
            }
            let _ = tokio::time::timeout(IDLE_POLL, news).await;
        }
    }
}

/// Follow a stream subscription as Server-Sent Events: `ready` (`id:` = the starting
/// position), then `activity` per event (`id:` = its log position, `data:` = the event as a
/// pull returns it, without lease fields), keep-alive comments, and `closed` (`{"reason"}`:
/// `paused`, `deleted` or `error`) at the end. `Last-Event-ID` resumes after that position.
#[utoipa::path(get, path = "/api/v1/topics/{topic}/subscriptions/{id}/stream", tag = "bus", operation_id = "stream_subscription", security(("bearer" = [])),
    params(("topic" = String, Path), ("id" = String, Path), SubscriptionStreamArgs,
        ("Last-Event-ID" = Option<String>, Header, nullable = false, pattern = r"^[0-9]{1,18}$", description = "resume after this log position")),
    responses((status = 200, content_type = "text/event-stream", description = "events: ready, activity, closed"),
        (status = 400, description = "`invalid_position`"), (status = 403, description = "`admin_only`"), (status = 404), (status = 409, description = "`wrong_mode` or `subscription_paused`")))]
pub async fn stream(
    State(state): State<AppState>,
    caller: BusCaller,
    headers: HeaderMap,
    ApiPath((topic, id)): ApiPath<(String, String)>,
    ApiQuery(args): ApiQuery<SubscriptionStreamArgs>,
) -> ApiResult<Response> {
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|h| h.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty());
    let after = match last_event_id {
        Some(text) => Some(
            text.parse::<i64>()
                .map_err(|_| BusError::InvalidPosition("Last-Event-ID is a log position".into()))?,
        ),
        None => args.after,
    };
    if after.is_some_and(|a| a < 0) {
        return Err(BusError::InvalidPosition("a position is not negative".into()).into());
    }
    let hook = visible(&state, &caller, topic, id).await?;
    require_mode(&hook, "stream", "streaming")?;
    let cursor = match after {
        Some(after) => after,
        None => state.store.last_seq().await?,
    };
    let ready = format!(
        "event: ready\nid: {cursor}\nretry: {RETRY_MS}\ndata: {{\"position\":{cursor}}}\n\n"
    );
    let first = StreamState {
        state,
        hook,
        cursor,
        ready: Some(Bytes::from(ready)),
        done: false,
        last_frame: Instant::now(),
        last_check: Instant::now(),
    };
    let events = futures::stream::unfold(first, |mut s| async move {
        if let Some(ready) = s.ready.take() {
            return Some((Ok::<_, Infallible>(ready), s));
        }
        if s.done {
            return None;
        }
        let frame = s.next_frame().await;
        Some((Ok(frame), s))
    });
    let mut response = Body::from_stream(events).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}
