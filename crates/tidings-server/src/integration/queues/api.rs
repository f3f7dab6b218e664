//! Work queues: create, list, inspect, delete; enqueue; lease (long-poll), ack, nack; the
//! dead-letter list. Every route checks [`may_use_queue`] (admins, and services with the `queues` scope).

use super::{QueueAction, QueueInfo, may_use_queue};
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::integration::auth::QueueCaller;
use crate::integration::{optional_body, whole, whole_required};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tidings_store::queues::{
    AckOutcome, Backoff, Discipline, Enqueued, Nacked, NewJob, QueueJob, QueueSpec,
};
use utoipa::{IntoParams, ToSchema};

/// Longest visibility timeout: 12 hours.
const MAX_VISIBILITY_MS: i64 = 43_200_000;
/// Most attempts a queue may allow.
const MAX_ATTEMPTS: i64 = 1000;
/// Highest lease rate limit (jobs a second).
const MAX_RATE: i64 = 100_000;
/// Longest enqueue delay (and nack delay): 7 days.
const MAX_DELAY_MS: i64 = 604_800_000;
/// Priorities run from minus this to this.
const MAX_PRIORITY: i64 = 1_000_000_000;
/// Most jobs in one enqueue.
const MAX_BATCH: usize = 1000;
/// Most jobs in one lease.
const MAX_LEASE: usize = 100;
/// Longest a lease waits for jobs.
const MAX_WAIT_MS: u64 = 20_000;
/// Longest idempotency key, group key and nack reason, in characters.
const MAX_KEY_CHARS: usize = 200;

/// Create-queue request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateQueueBody {
    /// Lowercase slug, 1–63 characters, unique among queues.
    #[schema(pattern = "^[a-z0-9][a-z0-9_-]{0,62}$")]
    pub name: String,
    /// fifo (default), lifo or priority.
    pub discipline: Option<Discipline>,
    /// true (default): kept in the store, shared by every node, survives restarts. false: a
    /// memory queue, in this node's memory only and lost on restart.
    pub durable: Option<bool>,
    /// How long a lease lasts before its job is ready again (1–43,200,000 ms; default 30,000).
    #[schema(minimum = 1, maximum = 43_200_000)]
    #[serde(default, deserialize_with = "whole")]
    pub visibility_timeout_ms: Option<i64>,
    /// Deliveries before a job moves to the dead-letter list (1–1000; default 5).
    #[schema(minimum = 1, maximum = 1000)]
    #[serde(default, deserialize_with = "whole")]
    pub max_attempts: Option<i64>,
    /// Delay of a nack that names none (default 1,000 ms doubling up to 60,000 ms).
    pub backoff: Option<Backoff>,
    /// Most jobs leased per second from this queue, per node (1–100,000; default unlimited).
    #[schema(minimum = 1, maximum = 100_000)]
    #[serde(default, deserialize_with = "whole")]
    pub rate_limit: Option<i64>,
}

/// Queues.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueueList {
    /// Every queue (durable, and this node's memory queues), by name.
    pub items: Vec<QueueInfo>,
}

/// What a deletion dropped.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueueDeleted {
    /// The queue.
    pub name: String,
    /// Jobs dropped with it (ready, delayed, leased and dead); leases on them end.
    pub jobs_dropped: i64,
}

/// One job to enqueue.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobBody {
    /// The work, any JSON.
    pub payload: Value,
    /// Higher is served first by a priority queue (−1,000,000,000 to 1,000,000,000; default 0).
    #[schema(minimum = -1_000_000_000, maximum = 1_000_000_000)]
    #[serde(default, deserialize_with = "whole")]
    pub priority: Option<i64>,
    /// Not ready before this many milliseconds (0–604,800,000; default 0).
    #[schema(minimum = 0, maximum = 604_800_000)]
    #[serde(default, deserialize_with = "whole")]
    pub delay_ms: Option<i64>,
    /// A retried enqueue with the same key (within a day) stores nothing and answers the first
    /// job's id (1–200 characters).
    #[schema(min_length = 1, max_length = 200)]
    pub idempotency_key: Option<String>,
    /// The job's group (ordering) key, kept with the job (1–200 characters).
    #[schema(min_length = 1, max_length = 200)]
    pub group: Option<String>,
}

/// Several jobs to enqueue, all or none.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobBatchBody {
    /// 1–1000 jobs.
    #[schema(min_items = 1, max_items = 1000)]
    pub jobs: Vec<JobBody>,
}

/// One job, or a batch.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum EnqueueBody {
    /// `{"jobs": [...]}`.
    Batch(JobBatchBody),
    /// A single job.
    One(JobBody),
}

/// What an enqueue stored.
#[derive(Debug, Serialize, ToSchema)]
pub struct EnqueuedList {
    /// One entry per job, in the order sent.
    pub jobs: Vec<Enqueued>,
}

/// Lease request.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeaseBody {
    /// Most jobs to lease (1–100; default 1).
    #[schema(minimum = 1, maximum = 100)]
    #[serde(default, deserialize_with = "whole")]
    pub max: Option<i64>,
    /// How long to wait for a job when none is ready (0–20,000 ms; default 0).
    #[schema(minimum = 0, maximum = 20_000)]
    #[serde(default, deserialize_with = "whole")]
    pub wait_ms: Option<i64>,
}

/// Leased jobs.
#[derive(Debug, Serialize, ToSchema)]
pub struct LeasedList {
    /// In the queue's discipline; empty when none was ready in time.
    pub jobs: Vec<QueueJob>,
}

/// Ack request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AckBody {
    /// The lease's token, as the lease gave it.
    #[schema(min_length = 1, max_length = 200)]
    pub lease_token: String,
}

/// One lease to acknowledge in a batch.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AckItem {
    /// The job's id.
    #[schema(minimum = 1)]
    #[serde(deserialize_with = "whole_required")]
    pub id: i64,
    /// Its lease's token.
    #[schema(min_length = 1, max_length = 200)]
    pub lease_token: String,
}

/// Batch ack request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AckBatchBody {
    /// 1–100 leased jobs.
    #[schema(min_items = 1, max_items = 100)]
    pub jobs: Vec<AckItem>,
}

/// What acknowledging one job of a batch did.
#[derive(Debug, Serialize, ToSchema)]
pub struct AckResult {
    /// The job's id.
    pub id: i64,
    /// `acked`, `lease_lost` or `not_found`.
    pub outcome: AckOutcome,
}

/// Batch ack answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct AckBatchResult {
    /// One per job, in the order sent.
    pub jobs: Vec<AckResult>,
}

/// Nack request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NackBody {
    /// The lease's token, as the lease gave it.
    #[schema(min_length = 1, max_length = 200)]
    pub lease_token: String,
    /// Ready again after this many milliseconds (0–604,800,000; default: the queue's backoff).
    #[schema(minimum = 0, maximum = 604_800_000)]
    #[serde(default, deserialize_with = "whole")]
    pub delay_ms: Option<i64>,
    /// Why it failed (kept with the job; at most 200 characters).
    #[schema(max_length = 200)]
    pub error: Option<String>,
}

/// An acknowledged job.
#[derive(Debug, Serialize, ToSchema)]
pub struct Acked {
    /// The job, now done and gone.
    pub id: i64,
}

/// Dead-letter list arguments.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeadArgs {
    /// Jobs after this id (default: from the start).
    #[param(minimum = 0)]
    pub after: Option<i64>,
    /// At most this many (1–100, default 50).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
}

/// A page of the dead-letter list.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadList {
    /// Dead jobs, oldest first.
    pub jobs: Vec<QueueJob>,
    /// `after` for the next page, when there may be one.
    pub next: Option<i64>,
}

/// Retry request: one dead job, or all of them.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryBody {
    /// The dead job to retry; without it, every dead job is retried.
    #[schema(minimum = 1)]
    #[serde(default, deserialize_with = "whole")]
    pub id: Option<i64>,
}

/// What a retry moved.
#[derive(Debug, Serialize, ToSchema)]
pub struct Retried {
    /// Dead jobs made ready again (with fresh attempts).
    pub retried: i64,
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_queue_request", message)
}

fn check_range(field: &str, value: Option<i64>, min: i64, max: i64) -> ApiResult<()> {
    match value {
        Some(v) if v < min || v > max => {
            Err(invalid(format!("{field} must be between {min} and {max}"))
                .with_details(serde_json::json!({ "field": field })))
        }
        _ => Ok(()),
    }
}

fn check_text(field: &str, value: Option<&str>, min: usize) -> ApiResult<()> {
    match value.map(|v| v.chars().count()) {
        Some(n) if n < min || n > MAX_KEY_CHARS => Err(invalid(format!(
            "{field} must be {min} to {MAX_KEY_CHARS} characters"
        ))
        .with_details(serde_json::json!({ "field": field }))),
        _ => Ok(()),
    }
}

fn check_name(name: &str) -> ApiResult<()> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let rest_ok =
        chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !first_ok || !rest_ok || name.len() > 63 {
        return Err(ApiError::bad_request(
            "invalid_queue_name",
            "name must be lowercase letters, digits, '-' or '_' (1–63 characters, not starting with '-' or '_')",
        ));
    }
    Ok(())
}

fn spec_from(body: &CreateQueueBody) -> ApiResult<QueueSpec> {
    check_name(&body.name)?;
    check_range(
        "visibility_timeout_ms",
        body.visibility_timeout_ms,
        1,
        MAX_VISIBILITY_MS,
    )?;
    check_range("max_attempts", body.max_attempts, 1, MAX_ATTEMPTS)?;
    check_range("rate_limit", body.rate_limit, 1, MAX_RATE)?;
    let backoff = body.backoff.unwrap_or_default();
    check_range(
        "backoff.initial_ms",
        Some(backoff.initial_ms),
        0,
        86_400_000,
    )?;
    check_range("backoff.max_ms", Some(backoff.max_ms), 0, 86_400_000)?;
    if !(1.0..=10.0).contains(&backoff.factor) {
        return Err(invalid("backoff.factor must be between 1 and 10")
            .with_details(serde_json::json!({ "field": "backoff.factor" })));
    }
    Ok(QueueSpec {
        name: body.name.clone(),
        discipline: body.discipline.unwrap_or(Discipline::Fifo),
        visibility_timeout_ms: body.visibility_timeout_ms.unwrap_or(30_000),
        max_attempts: body.max_attempts.unwrap_or(5),
        backoff,
        rate_limit: body.rate_limit,
    })
}

fn new_job(body: JobBody) -> ApiResult<NewJob> {
    check_range("priority", body.priority, -MAX_PRIORITY, MAX_PRIORITY)?;
    check_range("delay_ms", body.delay_ms, 0, MAX_DELAY_MS)?;
    check_text("idempotency_key", body.idempotency_key.as_deref(), 1)?;
    check_text("group", body.group.as_deref(), 1)?;
    Ok(NewJob {
        payload: body.payload.to_string(),
        priority: body.priority.unwrap_or(0),
        delay_ms: body.delay_ms.unwrap_or(0),
        idempotency_key: body.idempotency_key,
        group: body.group,
    })
}

/// Create a queue (admin). `durable: false` makes a memory queue: this node only, lost on
/// restart.
#[utoipa::path(post, path = "/api/v1/queues", operation_id = "create_queue", request_body = CreateQueueBody, tag = "queues", security(("bearer" = [])),
    responses((status = 201, body = QueueInfo), (status = 400), (status = 403), (status = 409)))]
pub async fn create(
    State(state): State<AppState>,
    caller: QueueCaller,
    ApiJson(body): ApiJson<CreateQueueBody>,
) -> ApiResult<(StatusCode, Json<QueueInfo>)> {
    may_use_queue(&caller, Some(&body.name), QueueAction::Manage)?;
    let spec = spec_from(&body)?;
    let info = state
        .queues
        .create(&state.store, spec, body.durable.unwrap_or(true))
        .await?;
    Ok((StatusCode::CREATED, Json(info)))
}

/// List every queue with its depths and counters (admin).
#[utoipa::path(get, path = "/api/v1/queues", operation_id = "list_queues", tag = "queues", security(("bearer" = [])),
    responses((status = 200, body = QueueList), (status = 403)))]
pub async fn list(
    State(state): State<AppState>,
    caller: QueueCaller,
) -> ApiResult<Json<QueueList>> {
    may_use_queue(&caller, None, QueueAction::Manage)?;
    Ok(Json(QueueList {
        items: state.queues.list(&state.store).await?,
    }))
}

/// One queue: definition, depth per state (ready, delayed, leased, dead), the oldest ready
/// job's age, and counts enqueued / acked / failed (admin).
#[utoipa::path(get, path = "/api/v1/queues/{name}", operation_id = "get_queue", tag = "queues", security(("bearer" = [])),
    params(("name" = String, Path, description = "Queue name")),
    responses((status = 200, body = QueueInfo), (status = 403), (status = 404)))]
pub async fn get_queue(
    State(state): State<AppState>,
    caller: QueueCaller,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<QueueInfo>> {
    may_use_queue(&caller, Some(&name), QueueAction::Manage)?;
    Ok(Json(state.queues.get(&state.store, &name).await?))
}

/// Delete a queue and every job in it, whatever its state; outstanding leases end (their
/// acks answer 404) (admin).
#[utoipa::path(delete, path = "/api/v1/queues/{name}", operation_id = "delete_queue", tag = "queues", security(("bearer" = [])),
    params(("name" = String, Path, description = "Queue name")),
    responses((status = 200, body = QueueDeleted), (status = 403), (status = 404)))]
pub async fn delete_queue(
    State(state): State<AppState>,
    caller: QueueCaller,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<QueueDeleted>> {
    may_use_queue(&caller, Some(&name), QueueAction::Manage)?;
    let jobs_dropped = state.queues.delete(&state.store, &name).await?;
    Ok(Json(QueueDeleted { name, jobs_dropped }))
}

/// Enqueue one job, or a batch (`{"jobs": [...]}`, all or none). 201 when something was
/// stored; 200 when every job was an idempotent repeat (nothing stored, the first ids
/// answered).
#[utoipa::path(post, path = "/api/v1/queues/{name}/jobs", operation_id = "enqueue_jobs", request_body = EnqueueBody, tag = "queues", security(("bearer" = [])),
    params(("name" = String, Path, description = "Queue name")),
    responses((status = 201, body = EnqueuedList), (status = 200, body = EnqueuedList, description = "Every job was a repeat of an idempotency key"),
        (status = 400), (status = 403), (status = 404)))]
pub async fn enqueue(
    State(state): State<AppState>,
    caller: QueueCaller,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<EnqueueBody>,
) -> ApiResult<(StatusCode, Json<EnqueuedList>)> {
    may_use_queue(&caller, Some(&name), QueueAction::Produce)?;
    let bodies = match body {
        EnqueueBody::Batch(batch) => batch.jobs,
        EnqueueBody::One(job) => vec![job],
    };
    if bodies.is_empty() || bodies.len() > MAX_BATCH {
        return Err(invalid(format!("a batch holds 1 to {MAX_BATCH} jobs")));
    }
    let jobs = bodies
        .into_iter()
        .map(new_job)
        .collect::<ApiResult<Vec<_>>>()?;
    let jobs = state.queues.enqueue(&state.store, &name, jobs).await?;
    let status = if jobs.iter().all(|j| j.duplicate) {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(EnqueuedList { jobs })))
}

/// Lease up to `max` jobs in the queue's discipline, waiting up to `wait_ms` for one to be
/// ready. Each job comes with a lease token and an expiry (the visibility timeout); a job not
/// acked by then is ready again.
#[utoipa::path(post, path = "/api/v1/queues/{name}/lease", operation_id = "lease_jobs", request_body(content = Option<LeaseBody>, description = "Optional; defaults to one job, no wait"), tag = "queues", security(("bearer" = [])),
    params(("name" = String, Path, description = "Queue name")),
    responses((status = 200, body = LeasedList), (status = 400), (status = 403), (status = 404)))]
pub async fn lease(
    State(state): State<AppState>,
    caller: QueueCaller,
    ApiPath(name): ApiPath<String>,
    body: Bytes,
) -> ApiResult<Json<LeasedList>> {
    may_use_queue(&caller, Some(&name), QueueAction::Consume)?;
    let body: LeaseBody = optional_body(&body)?;
    let max = body.max.unwrap_or(1);
    let wait_ms = body.wait_ms.unwrap_or(0);
    if !(1..=MAX_LEASE as i64).contains(&max) {
        return Err(invalid(format!("max must be between 1 and {MAX_LEASE}"))
            .with_details(serde_json::json!({ "field": "max" })));
    }
    if !(0..=MAX_WAIT_MS as i64).contains(&wait_ms) {
        return Err(
            invalid(format!("wait_ms must be between 0 and {MAX_WAIT_MS}"))
                .with_details(serde_json::json!({ "field": "wait_ms" })),
        );
    }
    let jobs = state
        .queues
        .lease(
            &state.store,
            &name,
            max as usize,
            std::time::Duration::from_millis(wait_ms.unsigned_abs()),
        )
        .await?;
    Ok(Json(LeasedList { jobs }))
}

/// Acknowledge a leased job: done, gone. 409 `lease_lost` when the token no longer holds the
/// lease (it expired, or the job was leased again).
#[utoipa::path(post, path = "/api/v1/queues/{name}/jobs/{id}/ack", operation_id = "ack_job", request_body = AckBody, tag = "queues", security(("bearer" = [])),
    params(("name" = String, Path, description = "Queue name"), ("id" = i64, Path, description = "Job id")),
    responses((status = 200, body = Acked), (status = 403), (status = 404), (status = 409)))]
pub async fn ack(
    State(state): State<AppState>,
    caller: QueueCaller,
    ApiPath((name, id)): ApiPath<(String, i64)>,
    ApiJson(body): ApiJson<AckBody>,
) -> ApiResult<Json<Acked>> {
    may_use_queue(&caller, Some(&name), QueueAction::Consume)?;
    state
        .queues
        .ack(&state.store, &name, id, &body.lease_token)
        .await?;
    Ok(Json(Acked { id }))
}

/// Acknowledge up to 100 leased jobs in one call (one commit). Each job answers for itself:
/// `acked`, or `lease_lost` / `not_found` as the single ack would answer 409 / 404.
#[utoipa::path(post, path = "/api/v1/queues/{name}/ack", operation_id = "ack_jobs", request_body = AckBatchBody, tag = "queues", security(("bearer" = [])),
    params(("name" = String, Path, description = "Queue name")),
    responses((status = 200, body = AckBatchResult), (status = 400), (status = 403), (status = 404)))]
pub async fn ack_many(
    State(state): State<AppState>,
    caller: QueueCaller,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<AckBatchBody>,
) -> ApiResult<Json<AckBatchResult>> {
    may_use_queue(&caller, Some(&name), QueueAction::Consume)?;
    if body.jobs.is_empty() || body.jobs.len() > MAX_LEASE {
        return Err(invalid(format!("a batch acks 1 to {MAX_LEASE} jobs")));
    }
    for item in &body.jobs {
        check_range("id", Some(item.id), 1, i64::MAX)?;
        check_text("lease_token", Some(&item.lease_token), 1)?;
    }
    let leases: Vec<(i64, String)> = body
        .jobs
        .into_iter()
        .map(|j| (j.id, j.lease_token))
        .collect();
    let ids: Vec<i64> = leases.iter().map(|l| l.0).collect();
    let outcomes = state.queues.ack_many(&state.store, &name, leases).await?;
    Ok(Json(AckBatchResult {
        jobs: ids
            .into_iter()
            .zip(outcomes)
            .map(|(id, outcome)| AckResult { id, outcome })
            .collect(),
    }))
}

/// Give a leased job back: ready again after `delay_ms` (default: the queue's backoff), or
/// moved to the dead-letter list when it used its last attempt. 409 `lease_lost` as for ack.
#[utoipa::path(post, path = "/api/v1/queues/{name}/jobs/{id}/nack", operation_id = "nack_job", request_body = NackBody, tag = "queues", security(("bearer" = [])),
    params(("name" = String, Path, description = "Queue name"), ("id" = i64, Path, description = "Job id")),
    responses((status = 200, body = Nacked), (status = 400), (status = 403), (status = 404), (status = 409)))]
pub async fn nack(
    State(state): State<AppState>,
    caller: QueueCaller,
    ApiPath((name, id)): ApiPath<(String, i64)>,
    ApiJson(body): ApiJson<NackBody>,
) -> ApiResult<Json<Nacked>> {
    may_use_queue(&caller, Some(&name), QueueAction::Consume)?;
    check_range("delay_ms", body.delay_ms, 0, MAX_DELAY_MS)?;
    check_text("error", body.error.as_deref(), 0)?;
    let nacked = state
        .queues
        .nack(
            &state.store,
            &name,
            id,
            &body.lease_token,
            body.delay_ms,
            body.error,
        )
        .await?;
    Ok(Json(nacked))
}

/// The dead-letter list: jobs that used their attempts, oldest first (admin).
#[utoipa::path(get, path = "/api/v1/queues/{name}/dead", operation_id = "dead_jobs", tag = "queues", security(("bearer" = [])),
    params(("name" = String, Path, description = "Queue name"), DeadArgs),
    responses((status = 200, body = DeadList), (status = 403), (status = 404)))]
pub async fn dead(
    State(state): State<AppState>,
    caller: QueueCaller,
    ApiPath(name): ApiPath<String>,
    ApiQuery(args): ApiQuery<DeadArgs>,
) -> ApiResult<Json<DeadList>> {
    may_use_queue(&caller, Some(&name), QueueAction::Manage)?;
    check_range("after", args.after, 0, i64::MAX)?;
    check_range("limit", args.limit, 1, 100)?;
    let limit = args.limit.unwrap_or(50) as usize;
    let jobs = state
        .queues
        .dead(&state.store, &name, args.after.unwrap_or(0), limit)
        .await?;
    let next = (jobs.len() == limit)
        .then(|| jobs.last().map(|j| j.id))
        .flatten();
    Ok(Json(DeadList { jobs, next }))
}

/// Retry dead jobs: one (`{"id": …}`) or all (no body, or `{}`); they are ready again with
/// fresh attempts (admin).
#[utoipa::path(post, path = "/api/v1/queues/{name}/dead/retry", operation_id = "retry_dead", request_body(content = Option<RetryBody>, description = "Optional; without an id every dead job is retried"), tag = "queues", security(("bearer" = [])),
    params(("name" = String, Path, description = "Queue name")),
    responses((status = 200, body = Retried), (status = 403), (status = 404)))]
pub async fn retry_dead(
    State(state): State<AppState>,
    caller: QueueCaller,
    ApiPath(name): ApiPath<String>,
    body: Bytes,
) -> ApiResult<Json<Retried>> {
    may_use_queue(&caller, Some(&name), QueueAction::Manage)?;
    let body: RetryBody = optional_body(&body)?;
    check_range("id", body.id, 1, i64::MAX)?;
    let retried = state
        .queues
        .retry_dead(&state.store, &name, body.id)
        .await?;
    Ok(Json(Retried { retried }))
}
