//! Topics, webhook subscriptions to them, and their deliveries.
//!
//! Admins create topics. A service with the `subscribe` scope (or an admin) subscribes a
//! webhook; a service sees only its own subscriptions and their deliveries (another's answer
//! 404, as if they did not exist).

use super::auth::BusCaller;
use super::error::BusError;
use super::outbound::{Outbound, check_url};
use crate::AppState;
use crate::auth::AdminUser;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use tidings_core::expr::is_valid_slug;
use tidings_core::filter::Filter;
use tidings_core::webhook::Secret;
use tidings_store::model::{Delivery, Topic, Webhook};
use utoipa::{IntoParams, ToSchema};

/// How long a replaced webhook secret keeps signing unless the rotation says otherwise.
const DEFAULT_SECRET_OVERLAP_SECS: u64 = 24 * 3600;

/// Create a topic.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTopicBody {
    /// Lowercase slug, unique; producers address it as `topic:NAME`.
    #[schema(pattern = "^[a-z0-9][a-z0-9_-]{0,62}$")]
    pub name: String,
    /// Content routing: every new activity this filter matches (see docs/bus.md); without
    /// one the topic receives only what is addressed to it.
    #[schema(schema_with = filter_schema)]
    pub filter: Option<String>,
    /// What it carries (at most 2000 characters).
    #[serde(default)]
    #[schema(max_length = 2000)]
    pub description: String,
}

/// Topics.
#[derive(Debug, Serialize, ToSchema)]
pub struct TopicList {
    /// Every topic, by name.
    pub items: Vec<Topic>,
}

/// How a subscription receives its topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Signed HTTP POSTs (Standard Webhooks), retried until delivered or dead.
    Webhook,
    /// Consumers lease events (`…/pull`), ack them (`…/ack`); unacked ones come back.
    Pull,
    /// Server-Sent Events (`…/stream`), resumable by `Last-Event-ID` (the log position).
    Stream,
    /// Each event becomes a job in an existing work queue.
    Queue,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Webhook => "webhook",
            Mode::Pull => "pull",
            Mode::Stream => "stream",
            Mode::Queue => "queue",
        }
    }
}

/// A webhook subscription's settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// Where deliveries are POSTed: an absolute http(s) URL without credentials whose host
    /// is not internal (loopback, private, link-local) unless the config allows it.
    pub url: String,
    /// Where it starts (default `now`); see [`PullSettings::start`].
    pub start: Option<serde_json::Value>,
    /// Deliver in log order: each delivery waits until the previous one succeeded (or was
    /// dead-lettered). Default false: deliveries go out concurrently.
    #[serde(default)]
    pub ordered: bool,
}

/// A pull subscription's settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullSettings {
    /// How long a pulled event stays the consumer's before it comes back, in milliseconds
    /// (1000–3600000, default 30000).
    #[serde(default, deserialize_with = "super::whole")]
    pub lease_ms: Option<i64>,
    /// Where it starts: `"now"` (default: what is published from now on), `"beginning"` (the
    /// whole log), a log position (events from it on) or an RFC 3339 time.
    pub start: Option<serde_json::Value>,
}

/// A stream subscription's settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamSettings {
    /// Where it starts (default `now`); see [`PullSettings::start`].
    pub start: Option<serde_json::Value>,
}

/// A queue subscription's settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueSettings {
    /// The existing queue each event becomes a job in.
    pub queue: String,
    /// Where it starts (default `now`); see [`PullSettings::start`].
    pub start: Option<serde_json::Value>,
}

/// Subscribe to a topic: `mode` says how, and which other fields apply (its schema is written
/// by hand below: one closed object per mode).
#[derive(Debug, Deserialize)]
#[serde(tag = "mode", rename_all = "lowercase")]
pub enum CreateWebhookBody {
    /// Signed HTTP POSTs (Standard Webhooks), retried until delivered or dead.
    Webhook(WebhookSettings),
    /// Consumers lease events (`…/pull`) and ack them (`…/ack`); unacked ones come back.
    Pull(PullSettings),
    /// Server-Sent Events (`…/stream`), resumable by `Last-Event-ID` (the log position).
    Stream(StreamSettings),
    /// Each event becomes a job in an existing work queue.
    Queue(QueueSettings),
}

impl utoipa::PartialSchema for CreateWebhookBody {
    /// One closed object per mode, told apart by `mode` (what serde's internally tagged enum
    /// reads); the derive would put each mode's fields behind a closed `$ref`, which no object
    /// with a `mode` can satisfy.
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{
            AdditionalProperties, ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type,
        };
        let branch = |mode: &str, description: &str| {
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .description(Some(description.to_owned()))
                .property(
                    "mode",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .enum_values(Some([mode.to_owned()])),
                )
                .required("mode")
                .property("start", super::consume::start_schema())
                .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        };
        let webhook = branch(
            "webhook",
            "Signed HTTP POSTs (Standard Webhooks), retried until delivered or dead.",
        )
        .property("url", webhook_url_schema())
        .required("url");
        let pull = branch(
            "pull",
            "Consumers lease events (`…/pull`) and ack them (`…/ack`); unacked ones come back \
             after `lease_ms` (1000–3600000, default 30000).",
        )
        .property(
            "lease_ms",
            ObjectBuilder::new()
                .schema_type(SchemaType::from_iter([Type::Integer, Type::Null]))
                .minimum(Some(1000))
                .maximum(Some(3_600_000)),
        );
        let stream = branch(
            "stream",
            "Server-Sent Events (`…/stream`), resumable by `Last-Event-ID` (the log position).",
        );
        let queue = branch(
            "queue",
            "Each event becomes a job in the existing queue `queue` (422 `unknown_queue`).",
        )
        .property(
            "queue",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some("^[a-z0-9][a-z0-9_-]{0,62}$")),
        )
        .required("queue");
        let one_of = OneOfBuilder::new()
            .description(Some(
                "Subscribe to a topic: `mode` says how, and which other fields apply; `start` \
                 is `\"now\"` (default), `\"beginning\"`, a log position or an RFC 3339 time."
                    .to_owned(),
            ))
            .item(webhook)
            .item(pull)
            .item(stream)
            .item(queue)
            .build();
        Schema::OneOf(one_of).into()
    }
}

impl ToSchema for CreateWebhookBody {}

impl CreateWebhookBody {
    fn mode(&self) -> Mode {
        match self {
            CreateWebhookBody::Webhook(_) => Mode::Webhook,
            CreateWebhookBody::Pull(_) => Mode::Pull,
            CreateWebhookBody::Stream(_) => Mode::Stream,
            CreateWebhookBody::Queue(_) => Mode::Queue,
        }
    }

    fn start(&self) -> Option<&serde_json::Value> {
        match self {
            CreateWebhookBody::Webhook(s) => s.start.as_ref(),
            CreateWebhookBody::Pull(s) => s.start.as_ref(),
            CreateWebhookBody::Stream(s) => s.start.as_ref(),
            CreateWebhookBody::Queue(s) => s.start.as_ref(),
        }
    }
}

/// A subscription and, for a webhook, its signing secret, shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookWithSecret {
    /// The subscription.
    pub subscription: Webhook,
    /// The signing secret (`whsec_…`), for verifying `webhook-signature` (webhooks only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// Subscriptions.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookList {
    /// The topic's subscriptions the caller may see, oldest first.
    pub items: Vec<Webhook>,
}

/// Rotate a webhook's secret.
#[derive(Debug, Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSecretBody {
    /// How long the old secret keeps signing beside the new one, in seconds (default a day,
    /// at most 30 days; 0: not at all).
    #[schema(minimum = 0, maximum = 2592000)]
    #[serde(default, deserialize_with = "super::whole_seconds")]
    pub previous_valid_seconds: Option<u64>,
}

/// Delivery listing arguments.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveryArgs {
    /// `pending`, `delivered` or `dead` (the dead-letter list); all by default.
    #[param(pattern = "^(pending|delivered|dead)$")]
    pub state: Option<String>,
    /// At most this many, newest first (1–100, default 50).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
}

/// Deliveries.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryList {
    /// Newest first, each with its attempts.
    pub items: Vec<Delivery>,
}

/// A topic filter (`format: topic-filter`): its grammar is in docs/bus.md, beyond what a JSON
/// Schema can say; one that does not parse is a 400 `invalid_filter` with the position.
pub fn filter_schema() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ObjectBuilder, SchemaFormat, SchemaType, Type};
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .format(Some(SchemaFormat::Custom("topic-filter".to_owned())))
        .max_length(Some(tidings_core::filter::MAX_FILTER_CHARS))
        .build()
}

/// A webhook URL (`format: webhook-url`): absolute http(s), no credentials, a host that
/// resolves to addresses webhooks may reach; otherwise a 400 `invalid_url` or
/// `url_not_allowed`.
pub fn webhook_url_schema() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ObjectBuilder, SchemaFormat, Type};
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::Custom("webhook-url".to_owned())))
        .pattern(Some("^https?://"))
        .max_length(Some(2048))
        .build()
}

fn new_secret() -> ApiResult<Secret> {
    let mut bytes = vec![0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    Secret::from_bytes(bytes).map_err(ApiError::internal)
}

/// Create a topic (admins); its filter is checked first.
#[utoipa::path(post, path = "/api/v1/topics", tag = "bus", operation_id = "create_topic", security(("bearer" = [])),
    request_body = CreateTopicBody,
    responses((status = 201, body = Topic), (status = 400, description = "`invalid_name`, `invalid_description`, or `invalid_filter` with `details.position`"), (status = 403, description = "`admin_only`"), (status = 409, description = "`topic_exists`")))]
pub async fn create(
    State(state): State<AppState>,
    _admin: AdminUser,
    ApiJson(body): ApiJson<CreateTopicBody>,
) -> ApiResult<(StatusCode, Json<Topic>)> {
    if !is_valid_slug(&body.name) {
        return Err(BusError::InvalidName.into());
    }
    if body.description.chars().count() > 2000 {
        return Err(ApiError::bad_request(
            "invalid_description",
            "description must be at most 2000 characters",
        ));
    }
    let filter = match body.filter {
        Some(text) => Some(Filter::parse(&text).map_err(BusError::from)?.to_string()),
        None => None,
    };
    let topic = state
        .store
        .create_topic(body.name, filter, body.description)
        .await?;
    Ok((StatusCode::CREATED, Json(topic)))
}

/// Every topic (admins and services).
#[utoipa::path(get, path = "/api/v1/topics", tag = "bus", operation_id = "list_topics", security(("bearer" = [])),
    responses((status = 200, body = TopicList), (status = 403, description = "`admin_only`: a user who is not an admin")))]
pub async fn list(State(state): State<AppState>, _caller: BusCaller) -> ApiResult<Json<TopicList>> {
    Ok(Json(TopicList {
        items: state.store.topics().await?,
    }))
}

/// One topic (admins and services).
#[utoipa::path(get, path = "/api/v1/topics/{topic}", tag = "bus", operation_id = "get_topic", security(("bearer" = [])),
    params(("topic" = String, Path)),
    responses((status = 200, body = Topic), (status = 403, description = "`admin_only`: a user who is not an admin"), (status = 404)))]
pub async fn get(
    State(state): State<AppState>,
    _caller: BusCaller,
    ApiPath(topic): ApiPath<String>,
) -> ApiResult<Json<Topic>> {
    Ok(Json(state.store.topic(topic).await?))
}

/// Subscribe to a topic (a service with `subscribe`, or an admin) as a webhook, a pull
/// consumer group, a stream or a queue feed; a webhook's secret is shown once. It receives
/// what the topic gets from `start` on (default: from now).
#[utoipa::path(post, path = "/api/v1/topics/{topic}/subscriptions", tag = "bus", operation_id = "create_topic_subscription", security(("bearer" = [])),
    params(("topic" = String, Path)), request_body = CreateWebhookBody,
    responses((status = 201, body = WebhookWithSecret), (status = 400, description = "`invalid_json` (fields that do not fit the mode among them), `invalid_url`, `url_not_allowed`, `invalid_position` or `invalid_argument`"), (status = 403, description = "`admin_only` or `missing_scope`"), (status = 404), (status = 422, description = "`unknown_queue`")))]
pub async fn subscribe(
    State(state): State<AppState>,
    caller: BusCaller,
    ApiPath(topic): ApiPath<String>,
    ApiJson(body): ApiJson<CreateWebhookBody>,
) -> ApiResult<(StatusCode, Json<WebhookWithSecret>)> {
    if let BusCaller::Service(service) = &caller {
        service.require("subscribe")?;
    }
    let mode = body.mode();
    let start = match body.start() {
        Some(value) => super::consume::parse_position(&state, value).await?,
        None => super::consume::Position::Now,
    };
    let mut secret = None;
    let mut url = String::new();
    let mut queue = None;
    let mut lease_ms = 30_000;
    let mut ordered = false;
    match &body {
        CreateWebhookBody::Webhook(settings) => {
            let checked = check_url(&settings.url)?;
            // The address is checked again at every attempt (names can move); this refuses
            // the obvious cases now.
            Outbound::new(&state.config.webhooks)
                .resolve(&checked)
                .await?;
            url = settings.url.clone();
            secret = Some(new_secret()?.to_text());
            ordered = settings.ordered;
        }
        CreateWebhookBody::Pull(settings) => {
            lease_ms = settings.lease_ms.unwrap_or(30_000);
            if !(1_000..=3_600_000).contains(&lease_ms) {
                return Err(BusError::OutOfRange {
                    field: "lease_ms",
                    min: 1_000,
                    max: 3_600_000,
                }
                .into());
            }
        }
        CreateWebhookBody::Queue(settings) => {
            if let BusCaller::Service(service) = &caller {
                // Feeding a queue is producing to it.
                service.require("queues")?;
            }
            if !is_valid_slug(&settings.queue) {
                return Err(BusError::UnknownQueue(settings.queue.clone()).into());
            }
            match state.queues.get(&state.store, &settings.queue).await {
                Ok(_) => {}
                Err(e) if e.status == StatusCode::NOT_FOUND => {
                    return Err(BusError::UnknownQueue(settings.queue.clone()).into());
                }
                Err(e) => return Err(e),
            }
            queue = Some(settings.queue.clone());
        }
        CreateWebhookBody::Stream(_) => {}
    }
    // 404 before anything is stored.
    state.store.topic(topic.clone()).await?;
    let id = format!("sub_{}", uuid::Uuid::now_v7().simple());
    let spec = tidings_store::model::NewSubscription {
        mode: mode.as_str().into(),
        url,
        secret: secret.clone().unwrap_or_default(),
        queue,
        lease_ms,
        ordered,
    };
    let mut subscription = state
        .store
        .create_subscription(topic, caller.owner(), id, spec)
        .await?;
    if start != super::consume::Position::Now {
        super::consume::replay_from(&state, &subscription, start).await?;
        subscription = state
            .store
            .webhook(subscription.topic.clone(), subscription.id.clone())
            .await?;
    }
    Ok((
        StatusCode::CREATED,
        Json(WebhookWithSecret {
            subscription,
            secret,
        }),
    ))
}

/// A topic's subscriptions: all for an admin, its own for a service.
#[utoipa::path(get, path = "/api/v1/topics/{topic}/subscriptions", tag = "bus", operation_id = "list_topic_subscriptions", security(("bearer" = [])),
    params(("topic" = String, Path)),
    responses((status = 200, body = WebhookList), (status = 403, description = "`admin_only`"), (status = 404)))]
pub async fn subscriptions(
    State(state): State<AppState>,
    caller: BusCaller,
    ApiPath(topic): ApiPath<String>,
) -> ApiResult<Json<WebhookList>> {
    Ok(Json(WebhookList {
        items: state.store.webhooks(topic, caller.owner()).await?,
    }))
}

/// The subscription if the caller may see it; 404 otherwise.
pub(crate) async fn visible(
    state: &AppState,
    caller: &BusCaller,
    topic: String,
    id: String,
) -> ApiResult<Webhook> {
    let hook = state.store.webhook(topic, id).await?;
    if !caller.may_see(hook.service_id) {
        return Err(ApiError::not_found("subscription"));
    }
    Ok(hook)
}

/// One subscription (its owner or an admin).
#[utoipa::path(get, path = "/api/v1/topics/{topic}/subscriptions/{id}", tag = "bus", operation_id = "get_topic_subscription", security(("bearer" = [])),
    params(("topic" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = Webhook), (status = 403, description = "`admin_only`"), (status = 404)))]
pub async fn subscription(
    State(state): State<AppState>,
    caller: BusCaller,
    ApiPath((topic, id)): ApiPath<(String, String)>,
) -> ApiResult<Json<Webhook>> {
    Ok(Json(visible(&state, &caller, topic, id).await?))
}

/// Rotate a subscription's secret; the old one keeps signing beside it for the overlap.
#[utoipa::path(post, path = "/api/v1/topics/{topic}/subscriptions/{id}/secret", tag = "bus", operation_id = "rotate_subscription_secret", security(("bearer" = [])),
    params(("topic" = String, Path), ("id" = String, Path)), request_body(content = Option<RotateSecretBody>, description = "optional"),
    responses((status = 201, body = WebhookWithSecret), (status = 400, description = "`invalid_time`"), (status = 403, description = "`admin_only`"), (status = 404)))]
pub async fn rotate_secret(
    State(state): State<AppState>,
    caller: BusCaller,
    ApiPath((topic, id)): ApiPath<(String, String)>,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, Json<WebhookWithSecret>)> {
    let body: RotateSecretBody = super::optional_body(&body)?;
    let overlap = body
        .previous_valid_seconds
        .unwrap_or(DEFAULT_SECRET_OVERLAP_SECS);
    if overlap > 30 * 24 * 3600 {
        return Err(BusError::InvalidTime(
            "previous_valid_seconds is at most 2592000 (30 days)".into(),
        )
        .into());
    }
    let hook = visible(&state, &caller, topic, id).await?;
    let secret = new_secret()?;
    let until = super::dispatch::now_ms()
        .saturating_add(i64::try_from(overlap.saturating_mul(1000)).unwrap_or(i64::MAX));
    let subscription = state
        .store
        .rotate_webhook_secret(hook.id, secret.to_text(), until)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(WebhookWithSecret {
            subscription,
            secret: Some(secret.to_text()),
        }),
    ))
}

/// Turn a disabled subscription back on; what it is owed is sent again.
#[utoipa::path(post, path = "/api/v1/topics/{topic}/subscriptions/{id}/enable", tag = "bus", operation_id = "enable_subscription", security(("bearer" = [])),
    params(("topic" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = Webhook), (status = 403, description = "`admin_only`"), (status = 404)))]
pub async fn enable(
    State(state): State<AppState>,
    caller: BusCaller,
    ApiPath((topic, id)): ApiPath<(String, String)>,
) -> ApiResult<Json<Webhook>> {
    let hook = visible(&state, &caller, topic, id).await?;
    Ok(Json(state.store.enable_webhook(hook.id).await?))
}

/// A subscription's deliveries with every attempt (status, latency, response excerpt);
/// `state=dead` is its dead-letter list.
#[utoipa::path(get, path = "/api/v1/topics/{topic}/subscriptions/{id}/deliveries", tag = "bus", operation_id = "list_deliveries", security(("bearer" = [])),
    params(("topic" = String, Path), ("id" = String, Path), DeliveryArgs),
    responses((status = 200, body = DeliveryList), (status = 400, description = "`invalid_state` or `invalid_limit`"), (status = 403, description = "`admin_only`"), (status = 404)))]
pub async fn deliveries(
    State(state): State<AppState>,
    caller: BusCaller,
    ApiPath((topic, id)): ApiPath<(String, String)>,
    ApiQuery(args): ApiQuery<DeliveryArgs>,
) -> ApiResult<Json<DeliveryList>> {
    if let Some(s) = &args.state
        && !matches!(s.as_str(), "pending" | "delivered" | "dead")
    {
        return Err(BusError::InvalidState.into());
    }
    let limit = args.limit.unwrap_or(50);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_limit",
            "limit must be between 1 and 100",
        ));
    }
    let hook = visible(&state, &caller, topic, id).await?;
    Ok(Json(DeliveryList {
        items: state.store.deliveries(hook.id, args.state, limit).await?,
    }))
}

/// Send a delivery again (a dead letter, or one already delivered) with a fresh retry budget.
#[utoipa::path(post, path = "/api/v1/topics/{topic}/subscriptions/{id}/deliveries/{delivery}/redeliver", tag = "bus", operation_id = "redeliver", security(("bearer" = [])),
    params(("topic" = String, Path), ("id" = String, Path), ("delivery" = String, Path)),
    responses((status = 202, description = "queued again"), (status = 403, description = "`admin_only`"), (status = 404)))]
pub async fn redeliver(
    State(state): State<AppState>,
    caller: BusCaller,
    ApiPath((topic, id, delivery)): ApiPath<(String, String, String)>,
) -> ApiResult<StatusCode> {
    let hook = visible(&state, &caller, topic, id).await?;
    state.store.redeliver(hook.id, delivery).await?;
    Ok(StatusCode::ACCEPTED)
}
