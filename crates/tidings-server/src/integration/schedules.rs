//! Scheduled and cron publishing, and the sync publish's wait for a reply (decision 0025).
//!
//! - `POST /outbox` with `publish_at` stores a one-shot schedule instead of publishing; `POST
//!   /schedules` stores a cron schedule. Both are rows of `bus_schedules` (state, not log).
//! - [`start`] runs the loop that fires them on every node. A fire publishes with the
//!   idempotency key `schedule:ID:FIRE_MS` and then moves the schedule on with a
//!   compare-and-set, so a fire is stored once however many nodes try it and whenever one
//!   dies between the two steps (see the store's `engine/schedules.rs`). Fires missed while no
//!   node ran collapse into one, at start-up.
//! - [`wait_reply`] answers `?wait=replied`: the first consumer's reply, `503 no_responder`
//!   when no active subscription is owed the activity, `504 reply_timeout` at the deadline.
//!   It wakes on the store's bus news, which every node hears through the change log.

use super::auth::BusCaller;
use super::error::BusError;
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath};
use crate::response::RawJson;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::Duration;
use tidings_core::activity::normalize;
use tidings_core::expr::is_valid_slug;
use tidings_core::schedule::{CronSchedule, format_utc};
use tidings_store::StoreError;
use tidings_store::model::{BusProgress, NewSchedule, Published, Schedule, User};
use utoipa::ToSchema;

/// Fire times shown with a schedule.
const SHOWN_FIRES: usize = 5;
/// Schedules fired per pass of the loop.
const FIRE_BATCH: i64 = 50;
/// Longest sleep of the loop: a schedule made on another node is noticed within it.
const IDLE: Duration = Duration::from_secs(1);
/// How long replies are kept for a sync publish to find.
const REPLY_KEEP: Duration = Duration::from_secs(3600);
/// How often while waiting for a reply the store is asked even without news (news travels
/// by the change log and the NATS doorbell; a lost doorbell costs this much latency).
const REPLY_POLL: Duration = Duration::from_millis(500);
/// Default and longest `timeout_ms` of a sync publish.
pub const REPLY_TIMEOUT_DEFAULT_MS: u64 = 10_000;
/// Longest `timeout_ms` of a sync publish.
pub const REPLY_TIMEOUT_MAX_MS: u64 = 60_000;

/// Create a cron schedule.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateScheduleBody {
    /// Lowercase slug, unique.
    #[schema(pattern = "^[a-z0-9][a-z0-9_-]{0,62}$")]
    pub name: String,
    /// 5 fields (minute hour day-of-month month day-of-week) or 6 (seconds first).
    #[schema(schema_with = cron_schema)]
    pub cron: String,
    /// IANA time zone the expression is read in (default `UTC`).
    #[schema(schema_with = timezone_schema)]
    pub timezone: Option<String>,
    /// The activity to publish at each fire, as `POST /outbox` takes it (a `publish_at` in it
    /// is ignored).
    #[schema(value_type = crate::api::activities::PublishBody)]
    pub activity: Value,
}

/// A cron expression (`format: cron`): 5 or 6 fields as croner reads them (docs/bus.md); one
/// it refuses is a 400 `invalid_cron`.
pub fn cron_schema() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ObjectBuilder, SchemaFormat, Type};
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::Custom("cron".to_owned())))
        .max_length(Some(tidings_core::schedule::MAX_CRON_CHARS))
        .examples(["0 9 * * 1-5"])
        .build()
}

/// An IANA time zone name (`format: timezone`); an unknown one is a 400 `invalid_timezone`.
pub fn timezone_schema() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ObjectBuilder, SchemaFormat, SchemaType, Type};
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .format(Some(SchemaFormat::Custom("timezone".to_owned())))
        .max_length(Some(64))
        .examples(["Europe/Paris"])
        .build()
}

/// A schedule with its next fire times.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScheduleView {
    /// The schedule.
    #[serde(flatten)]
    pub schedule: Schedule,
    /// The next fire (RFC 3339 in the schedule's zone; none when paused or done).
    pub next_at: Option<String>,
    /// The next five fire times (RFC 3339 in the schedule's zone; the offset shows the side
    /// of a daylight-saving change).
    pub next_fires: Vec<String>,
}

/// Schedules.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScheduleList {
    /// The schedules the caller may see, by name.
    pub items: Vec<ScheduleView>,
}

fn view(schedule: Schedule) -> ScheduleView {
    let cron = schedule
        .cron
        .as_deref()
        .and_then(|c| CronSchedule::parse(c, schedule.timezone.as_deref().unwrap_or("UTC")).ok());
    let show = |at: i64| match &cron {
        Some(c) => c.format(at),
        None => format_utc(at),
    };
    let upcoming = schedule.next_at_ms.filter(|_| schedule.status == "active");
    let next_at = upcoming.map(show);
    let next_fires = match (upcoming, &cron) {
        (Some(first), Some(c)) => std::iter::once(first)
            .chain(c.upcoming(first, SHOWN_FIRES - 1))
            .map(show)
            .collect(),
        (Some(first), None) => vec![show(first)],
        (None, _) => Vec::new(),
    };
    ScheduleView {
        schedule,
        next_at,
        next_fires,
    }
}

/// Who may schedule: an admin, or a service with `publish` (its user publishes). Returns the
/// publishing user and the owning service.
async fn scheduler(state: &AppState, caller: &BusCaller) -> ApiResult<(User, Option<i64>)> {
    match caller {
        BusCaller::Admin(user) => Ok((user.clone(), None)),
        BusCaller::Service(service) => {
            service.require("publish")?;
            let user = state.store.user(&service.0.name).await?;
            Ok((user, Some(service.0.id)))
        }
    }
}

/// Checks an activity as `POST /outbox` would, without storing it (400 now rather than a
/// failed fire later).
fn check_activity(state: &AppState, activity: &Value) -> ApiResult<()> {
    if !activity.is_object() {
        return Err(ApiError::bad_request(
            "invalid_json",
            "activity: expected a JSON object",
        ));
    }
    let types = state.types.clone();
    let mut draft = normalize(activity, &state.config.limits, &|name| types.status(name))?;
    state.types.apply(activity, &mut draft)?;
    Ok(())
}

fn now_ms() -> i64 {
    super::dispatch::now_ms()
}

/// The schedule a caller may see (a service: only its own; another's is a 404).
async fn visible(state: &AppState, caller: &BusCaller, name: String) -> ApiResult<Schedule> {
    let schedule = state.store.schedule(name).await?;
    if !caller.may_see(schedule.service_id) {
        return Err(StoreError::not_found("schedule").into());
    }
    Ok(schedule)
}

/// Create a cron schedule (admins, services with `publish`): the activity is published at
/// every fire, by the caller (a service's user for a service).
#[utoipa::path(post, path = "/api/v1/schedules", tag = "bus", operation_id = "create_schedule", security(("bearer" = [])),
    request_body = CreateScheduleBody,
    responses((status = 201, body = ScheduleView), (status = 400, description = "`invalid_name`, `invalid_cron`, `invalid_timezone`, or the activity's own errors"), (status = 403, description = "`admin_only` or `missing_scope`"), (status = 409, description = "`schedule_exists`"), (status = 422, description = "the activity's type is unknown")))]
pub async fn create(
    State(state): State<AppState>,
    caller: BusCaller,
    ApiJson(body): ApiJson<CreateScheduleBody>,
) -> ApiResult<(StatusCode, Json<ScheduleView>)> {
    let (actor, service_id) = scheduler(&state, &caller).await?;
    if !is_valid_slug(&body.name) {
        return Err(BusError::InvalidName.into());
    }
    let timezone = body.timezone.unwrap_or_else(|| "UTC".to_owned());
    let cron = CronSchedule::parse(&body.cron, &timezone).map_err(BusError::from)?;
    let mut activity = body.activity;
    if let Some(fields) = activity.as_object_mut() {
        // Each fire publishes now: a publish_at inside means nothing.
        fields.remove("publish_at");
    }
    check_activity(&state, &activity)?;
    let Some(first) = cron.next_after(now_ms()) else {
        return Err(
            BusError::InvalidSchedule(tidings_core::schedule::ScheduleError::Cron(
                "the expression never fires".into(),
            ))
            .into(),
        );
    };
    let schedule = state
        .store
        .create_schedule(NewSchedule {
            id: format!("sch_{}", uuid::Uuid::now_v7().simple()),
            name: body.name,
            actor_id: actor.id,
            service_id,
            cron: Some(body.cron.trim().to_owned()),
            timezone: Some(timezone),
            activity: activity.to_string(),
            next_at_ms: first,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(view(schedule))))
}

/// Schedules (admins: all; a service: its own), one-shot `publish_at` ones included.
#[utoipa::path(get, path = "/api/v1/schedules", tag = "bus", operation_id = "list_schedules", security(("bearer" = [])),
    responses((status = 200, body = ScheduleList), (status = 403, description = "`admin_only`")))]
pub async fn list(
    State(state): State<AppState>,
    caller: BusCaller,
) -> ApiResult<Json<ScheduleList>> {
    let items = state.store.schedules(caller.owner()).await?;
    Ok(Json(ScheduleList {
        items: items.into_iter().map(view).collect(),
    }))
}

/// One schedule with its next five fire times.
#[utoipa::path(get, path = "/api/v1/schedules/{name}", tag = "bus", operation_id = "get_schedule", security(("bearer" = [])),
    params(("name" = String, Path)),
    responses((status = 200, body = ScheduleView), (status = 403, description = "`admin_only`"), (status = 404)))]
pub async fn get(
    State(state): State<AppState>,
    caller: BusCaller,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<ScheduleView>> {
    Ok(Json(view(visible(&state, &caller, name).await?)))
}

/// Pause a schedule: it fires no more until resumed.
#[utoipa::path(post, path = "/api/v1/schedules/{name}/pause", tag = "bus", operation_id = "pause_schedule", security(("bearer" = [])),
    params(("name" = String, Path)),
    responses((status = 200, body = ScheduleView), (status = 403, description = "`admin_only` or `missing_scope`"), (status = 404), (status = 409, description = "`schedule_done`")))]
pub async fn pause(
    State(state): State<AppState>,
    caller: BusCaller,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<ScheduleView>> {
    scheduler(&state, &caller).await?;
    let schedule = visible(&state, &caller, name).await?;
    let paused = state
        .store
        // The due time stays: a fire already in flight when the pause lands is then still
        // recorded (and counted) against it; paused schedules are never due.
        .set_schedule_status(schedule.name, "paused", schedule.next_at_ms)
        .await?;
    Ok(Json(view(paused)))
}

/// Resume a paused schedule: it fires next at its next time from now (fires missed while
/// paused are skipped; a one-shot whose time passed fires at once).
#[utoipa::path(post, path = "/api/v1/schedules/{name}/resume", tag = "bus", operation_id = "resume_schedule", security(("bearer" = [])),
    params(("name" = String, Path)),
    responses((status = 200, body = ScheduleView), (status = 403, description = "`admin_only` or `missing_scope`"), (status = 404), (status = 409, description = "`schedule_done`")))]
pub async fn resume(
    State(state): State<AppState>,
    caller: BusCaller,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<ScheduleView>> {
    scheduler(&state, &caller).await?;
    let schedule = visible(&state, &caller, name).await?;
    let next = match (&schedule.cron, &schedule.timezone) {
        (Some(cron), timezone) => CronSchedule::parse(cron, timezone.as_deref().unwrap_or("UTC"))
            .map_err(BusError::from)?
            .next_after(now_ms()),
        // A one-shot keeps its time (past: at once).
        (None, _) => Some(schedule.next_at_ms.unwrap_or_else(now_ms)),
    };
    let status = if next.is_some() { "active" } else { "done" };
    let resumed = state
        .store
        .set_schedule_status(schedule.name, status, next)
        .await?;
    Ok(Json(view(resumed)))
}

/// Delete a schedule (what it published stays in the log).
#[utoipa::path(delete, path = "/api/v1/schedules/{name}", tag = "bus", operation_id = "delete_schedule", security(("bearer" = [])),
    params(("name" = String, Path)),
    responses((status = 204), (status = 403, description = "`admin_only` or `missing_scope`"), (status = 404)))]
pub async fn delete(
    State(state): State<AppState>,
    caller: BusCaller,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<StatusCode> {
    scheduler(&state, &caller).await?;
    let schedule = visible(&state, &caller, name).await?;
    state.store.delete_schedule(schedule.name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /outbox` with `publish_at`: stores a one-shot schedule (202 with it). Admins and
/// services with `publish` only; a time already past publishes at once.
pub async fn publish_later(
    state: &AppState,
    author: User,
    headers: &HeaderMap,
    mut body: Value,
) -> ApiResult<(StatusCode, HeaderMap, RawJson)> {
    let at_text = body
        .as_object_mut()
        .and_then(|o| o.remove("publish_at"))
        .unwrap_or(Value::Null);
    let Some(at_text) = at_text.as_str() else {
        return Err(
            BusError::InvalidTime("publish_at is an RFC 3339 date-time string".into()).into(),
        );
    };
    // A time already past is due at once (the scheduler publishes it within a second).
    let at = tidings_core::schedule::parse_instant(at_text).map_err(BusError::from)?;
    // A service key passed the publish scope already (the Publisher extractor); a user must
    // be an admin.
    let service_id = if is_service_call(headers) {
        Some(state.store.service(author.username.clone()).await?.0.id)
    } else if author.is_admin {
        None
    } else {
        return Err(BusError::ScheduleNotAllowed.into());
    };
    check_activity(state, &body)?;
    let id = format!("sch_{}", uuid::Uuid::now_v7().simple());
    let schedule = state
        .store
        .create_schedule(NewSchedule {
            name: id.clone(),
            id,
            actor_id: author.id,
            service_id,
            cron: None,
            timezone: None,
            activity: body.to_string(),
            next_at_ms: at,
        })
        .await?;
    let mut out = HeaderMap::new();
    if let Ok(location) = HeaderValue::from_str(&format!("/api/v1/schedules/{}", schedule.name)) {
        out.insert(header::LOCATION, location);
    }
    let text = serde_json::to_string(&view(schedule)).map_err(ApiError::internal)?;
    Ok((StatusCode::ACCEPTED, out, RawJson(text)))
}

fn is_service_call(headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(crate::auth::bearer_token)
        .is_some_and(super::auth::is_service_key)
}

/// Waits for the first reply to a just-published activity (`?wait=replied`).
pub async fn wait_reply(
    state: &AppState,
    published: &Published,
    timeout: Duration,
) -> ApiResult<RawJson> {
    let deadline = tokio::time::Instant::now() + timeout;
    let store = &state.store;
    // Subscribed before the first look, so news between the look and the wait is not missed.
    let mut news = store.bus_news();
    if !store.has_active_webhooks().await? {
        return Err(BusError::NoResponder(published.id.clone()).into());
    }
    loop {
        news.borrow_and_update();
        match store.bus_progress(published.seq).await? {
            BusProgress::Replied(reply) => return Ok(RawJson(reply_body(published, &reply))),
            BusProgress::NoResponder => {
                return Err(BusError::NoResponder(published.id.clone()).into());
            }
            BusProgress::Unmatched | BusProgress::Waiting(_) => {}
        }
        tokio::select! {
            changed = news.changed() => {
                if changed.is_err() {
                    tokio::time::sleep(REPLY_POLL).await;
                }
            }
            _ = tokio::time::sleep(REPLY_POLL) => {}
            _ = tokio::time::sleep_until(deadline) => {
                return Err(BusError::ReplyTimeout(published.id.clone()).into());
            }
        }
    }
}

/// `{"activity": …, "reply": …, "replied_by": …, "status": …}`: the reply as JSON when it
/// is JSON, else as a string (an empty body is null).
fn reply_body(published: &Published, reply: &tidings_store::model::Reply) -> String {
    let text = reply.body.trim();
    let value: Value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(text).unwrap_or_else(|_| Value::String(reply.body.clone()))
    };
    let rest = serde_json::json!({
        "reply": value,
        "replied_by": reply.source,
        "status": reply.status,
    });
    let rest = rest.to_string();
    // The activity as stored (bytes, not re-serialised), then the rest of the object.
    format!(
        "{{\"activity\":{},{}",
        published.activity,
        rest.strip_prefix('{').unwrap_or("}")
    )
}

/// Starts the loop that fires due schedules on this node; it stops when the store closes.
pub fn start(state: AppState) {
    tokio::spawn(fire_loop(state));
}

async fn fire_loop(state: AppState) {
    let mut pruned = tokio::time::Instant::now();
    loop {
        match fire_due(&state).await {
            Ok(full) if full => continue,
            Ok(_) => {}
            Err(StoreError::Closed) => return,
            Err(e) => tracing::warn!(error = %e, "firing schedules failed; will retry"),
        }
        if pruned.elapsed() > Duration::from_secs(600) {
            pruned = tokio::time::Instant::now();
            let before = now_ms() - i64::try_from(REPLY_KEEP.as_millis()).unwrap_or(0);
            if let Err(e) = state.store.prune_replies(before).await {
                tracing::warn!(error = %e, "pruning bus replies failed");
            }
        }
        let wait = match state.store.next_schedule_at().await {
            Ok(Some(at)) => Duration::from_millis(u64::try_from(at - now_ms()).unwrap_or(0)),
            Ok(None) => IDLE,
            Err(StoreError::Closed) => return,
            Err(_) => IDLE,
        };
        tokio::time::sleep(wait.min(IDLE)).await;
    }
}

/// Fires every due schedule; true when there may be more.
async fn fire_due(state: &AppState) -> Result<bool, StoreError> {
    let due = state.store.due_schedules(now_ms(), FIRE_BATCH).await?;
    let full = due.len() as i64 >= FIRE_BATCH;
    for schedule in due {
        fire(state, schedule).await?;
    }
    Ok(full)
}

/// Publishes one due fire, then moves the schedule on. A publish the store could not take
/// (unavailable) leaves the schedule as it is, to be fired again; a refused one (the author
/// suspended, a circle archived) is recorded as the fire's error and the schedule moves on.
async fn fire(state: &AppState, schedule: Schedule) -> Result<(), StoreError> {
    let Some(fire_ms) = schedule.next_at_ms else {
        return Ok(());
    };
    let now = now_ms();
    let next = match &schedule.cron {
        // Fires missed while no node ran collapse into this one.
        Some(cron) => CronSchedule::parse(cron, schedule.timezone.as_deref().unwrap_or("UTC"))
            .ok()
            .and_then(|c| c.next_after(now.max(fire_ms))),
        None => None,
    };
    let key = format!("schedule:{}:{fire_ms}", schedule.id);
    let outcome = match state.store.user(&schedule.actor).await {
        Ok(user) if user.status == tidings_store::model::UserStatus::Active => {
            crate::api::activities::publish_value(state, user, &schedule.activity, Some(key)).await
        }
        Ok(_) => Err(ApiError::forbidden(
            "account_suspended",
            "the schedule's author is suspended or deleted",
        )),
        Err(e) => Err(e.into()),
    };
    let (activity, error) = match outcome {
        Ok(published) => {
            tracing::info!(schedule = %schedule.name, activity = %published.id, replayed = published.replayed, "schedule fired");
            (Some(published.id), None)
        }
        Err(e) if e.status.is_server_error() => {
            tracing::warn!(schedule = %schedule.name, error = %e.message, "schedule fire failed; will retry");
            return Ok(());
        }
        Err(e) => {
            tracing::warn!(schedule = %schedule.name, error = %e.message, "schedule fire refused");
            (None, Some(format!("{}: {}", e.code, e.message)))
        }
    };
    metrics::counter!("tidings_schedule_fires_total", "outcome" => if activity.is_some() { "published" } else { "refused" })
        .increment(1);
    state
        .store
        .schedule_fired(schedule.id, fire_ms, next, activity, error)
        .await?;
    Ok(())
}
