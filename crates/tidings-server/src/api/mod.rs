//! REST resources under `/api/v1`, one module each, merged into one router here.

pub mod account;
pub mod activities;
pub mod circles;
pub mod conversations;
pub mod feeds;
pub mod follows;
pub mod groups;
pub mod inbox;
pub mod media;
pub mod moderation;
pub mod search;
pub mod types;
pub mod users;

use crate::AppState;
use crate::error::ApiError;
use crate::integration::queues::api as queues;
use crate::integration::{consume, schedules, services, topics};
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post, put};
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    let max_body = state.config.max_body_bytes;
    // A multipart upload's framing and alt text come on top of the file itself.
    let media_body = usize::try_from(state.config.media.max_bytes)
        .unwrap_or(usize::MAX)
        .saturating_add(64 * 1024);
    let api = Router::new()
        .route("/users", post(users::signup))
        .route(
            "/users/{username}",
            get(users::get_user).delete(users::delete_user),
        )
        .route("/users/{username}/suspend", post(users::suspend))
        .route("/users/{username}/unsuspend", post(users::unsuspend))
        .route("/users/{username}/circles", get(circles::user_circles))
        .route("/users/{username}/outbox", get(activities::outbox))
        .route(
            "/users/{username}/follow",
            get(follows::relationship)
                .post(follows::follow)
                .delete(follows::unfollow),
        )
        .route("/users/{username}/followers", get(follows::followers))
        .route("/users/{username}/following", get(follows::following))
        .route("/feeds", get(feeds::list))
        .route("/feeds/{name}", get(feeds::read))
        .route("/feeds/{name}/seen", post(feeds::seen))
        .route("/feeds/{name}/read", post(feeds::mark_read))
        .route("/sessions", post(users::login))
        .route("/sessions/current", delete(users::logout))
        .route("/me", get(users::me).delete(account::delete_account))
        .route("/me/sessions", get(account::list_sessions))
        .route("/me/sessions/{id}", delete(account::revoke_session))
        .route("/me/password", put(account::change_password))
        .route("/me/reactions", get(follows::my_reactions))
        .route("/me/blocks", get(moderation::blocks))
        .route(
            "/me/blocks/{username}",
            put(moderation::block).delete(moderation::unblock),
        )
        .route("/me/mutes", get(moderation::mutes))
        .route(
            "/me/mutes/{username}",
            put(moderation::mute).delete(moderation::unmute),
        )
        .route("/me/app-key", post(crate::compat::afs::create_app_key))
        .route("/circles", get(circles::search).post(circles::create))
        .route("/circles/{name}", get(circles::get_circle))
        .route("/circles/{name}/archive", post(circles::archive))
        .route(
            "/circles/{name}/members",
            get(circles::members).post(groups::add_to_circle),
        )
        .route(
            "/circles/{name}/members/{username}",
            put(circles::put_member).delete(circles::remove_member),
        )
        .route("/circles/{name}/stream", get(circles::stream))
        .route("/circles/{name}/reports", get(moderation::queue))
        .route(
            "/circles/{name}/reports/{id}/resolution",
            post(moderation::resolve),
        )
        .route("/circles/{name}/bans", get(moderation::bans))
        .route("/circles/{name}/moderation-log", get(moderation::log))
        .route("/activities/{id}/reports", post(moderation::report))
        .route("/outbox", post(activities::publish))
        .route("/activities/{id}", get(activities::get_activity))
        .route("/activities/{id}/replies", get(activities::replies))
        .route("/activities/{id}/versions", get(activities::versions))
        .route("/activities/{id}/retract", post(activities::retract))
        .route(
            "/activities/{id}/like",
            post(follows::like).delete(follows::unlike),
        )
        .route(
            "/activities/{id}/share",
            post(follows::share).delete(follows::unshare),
        )
        .route(
            "/activities/{id}/actions/{action}",
            post(activities::take_action),
        )
        .route("/conversations", get(conversations::list))
        .route("/conversations/{id}", get(conversations::messages))
        .route("/conversations/{id}/read", post(conversations::mark_read))
        .route("/groups", get(groups::list).post(groups::create))
        .route(
            "/groups/{group}",
            get(groups::get_one).delete(groups::delete),
        )
        .route("/groups/{group}/members", post(groups::add_members))
        .route(
            "/groups/{group}/members/{username}",
            delete(groups::remove_member),
        )
        .route("/inbox", get(inbox::read))
        .route("/inbox/stream", get(crate::push::sse::stream))
        .route("/inbox/{id}", delete(inbox::hide))
        .route(
            "/subscriptions",
            get(inbox::list_subscriptions).post(inbox::subscribe),
        )
        .route("/subscriptions/{id}", delete(inbox::unsubscribe))
        .route("/types", get(types::list).post(types::register))
        .route("/search", get(search::search))
        .route(
            "/media",
            // Uploads have their own size limit (`[media] max_bytes`), checked while reading.
            post(media::upload).layer(DefaultBodyLimit::max(media_body)),
        )
        .route("/media/{id}", get(media::get_media))
        .route("/media/{id}/{size}", get(media::get_bytes))
        .route("/me/avatar", put(media::put_my_avatar))
        .route("/users/{username}/avatar", get(media::user_avatar))
        .route(
            "/circles/{name}/avatar",
            get(media::circle_avatar).put(media::put_circle_avatar),
        )
        .route("/services", get(services::list).post(services::create))
        .route("/services/{name}", get(services::get))
        .route("/services/{name}/keys", post(services::rotate))
        .route("/services/{name}/keys/{key_id}", delete(services::revoke))
        .route("/schedules", get(schedules::list).post(schedules::create))
        .route(
            "/schedules/{name}",
            get(schedules::get).delete(schedules::delete),
        )
        .route("/schedules/{name}/pause", post(schedules::pause))
        .route("/schedules/{name}/resume", post(schedules::resume))
        .route("/topics", get(topics::list).post(topics::create))
        .route(
            "/topics/{topic}",
            get(topics::get).delete(consume::delete_topic),
        )
        .route(
            "/topics/{topic}/subscriptions",
            get(topics::subscriptions).post(topics::subscribe),
        )
        .route(
            "/topics/{topic}/subscriptions/{id}",
            get(topics::subscription).delete(consume::delete_subscription),
        )
        .route(
            "/topics/{topic}/subscriptions/{id}/pull",
            post(consume::pull),
        )
        .route("/topics/{topic}/subscriptions/{id}/ack", post(consume::ack))
        .route(
            "/topics/{topic}/subscriptions/{id}/replay",
            post(consume::replay_subscription),
        )
        .route(
            "/topics/{topic}/subscriptions/{id}/pause",
            post(consume::pause),
        )
        .route(
            "/topics/{topic}/subscriptions/{id}/resume",
            post(consume::resume),
        )
        .route(
            "/topics/{topic}/subscriptions/{id}/stream",
            get(consume::stream),
        )
        .route(
            "/topics/{topic}/subscriptions/{id}/secret",
            post(topics::rotate_secret),
        )
        .route(
            "/topics/{topic}/subscriptions/{id}/enable",
            post(topics::enable),
        )
        .route(
            "/topics/{topic}/subscriptions/{id}/deliveries",
            get(topics::deliveries),
        )
        .route(
            "/topics/{topic}/subscriptions/{id}/deliveries/{delivery}/redeliver",
            post(topics::redeliver),
        )
        .route("/queues", get(queues::list).post(queues::create))
        .route(
            "/queues/{name}",
            get(queues::get_queue).delete(queues::delete_queue),
        )
        .route("/queues/{name}/jobs", post(queues::enqueue))
        .route("/queues/{name}/lease", post(queues::lease))
        .route("/queues/{name}/ack", post(queues::ack_many))
        .route("/queues/{name}/jobs/{id}/ack", post(queues::ack))
        .route("/queues/{name}/jobs/{id}/nack", post(queues::nack))
        .route("/queues/{name}/dead", get(queues::dead))
        .route("/queues/{name}/dead/retry", post(queues::retry_dead))
        .route("/openapi.json", get(crate::openapi::document))
        .fallback(api_fallback)
        .method_not_allowed_fallback(api_method_not_allowed);
    Router::new()
        .nest("/api/v1", api)
        .merge(crate::compat::router(&state))
        .merge(crate::web::router())
        .merge(crate::openapi::docs_router())
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(crate::metrics::render))
        .merge(crate::push::engineio::router(state.clone()))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            read_your_writes,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            refuse_roles_not_served,
        ))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::limits::budget_layer,
        ))
        // Innermost first: each layer below wraps the ones above it. A request meets the
        // request-id bounds, gets its id, then its span, then is counted and timed.
        .layer(axum::middleware::from_fn(crate::metrics::track))
        .layer(
            TraceLayer::new_for_http().make_span_with(crate::request_id::span::<axum::body::Body>),
        )
        .layer(PropagateRequestIdLayer::new(
            crate::request_id::HEADER.clone(),
        ))
        .layer(SetRequestIdLayer::new(
            crate::request_id::HEADER.clone(),
            crate::request_id::MakeUuidV7,
        ))
        .layer(axum::middleware::map_request(drop_unacceptable_request_id))
        .with_state(state)
}

/// See [`crate::request_id::drop_unacceptable`].
async fn drop_unacceptable_request_id(request: axum::extract::Request) -> axum::extract::Request {
    crate::request_id::drop_unacceptable(request)
}

/// Whether a path is a live channel (the push role) rather than the API.
fn is_live_channel(path: &str) -> bool {
    path == "/api/v1/inbox/stream" || path == "/socket.io" || path.starts_with("/socket.io/")
}

/// `serve --roles`: a request for a role this node does not run is answered 421 (Misdirected
/// Request) saying which role serves it; health, readiness and metrics are always answered.
async fn refuse_roles_not_served(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let roles = state.config.roles;
    let path = request.uri().path();
    let needed = if path == "/healthz" || path == "/readyz" || path == "/metrics" {
        None
    } else if is_live_channel(path) {
        (!roles.push).then_some("push")
    } else {
        (!roles.api).then_some("api")
    };
    match needed {
        None => next.run(request).await,
        Some(role) => ApiError::new(
            StatusCode::MISDIRECTED_REQUEST,
            "role_not_served",
            format!("this node does not run the {role} role (serve --roles); send this request to a node that does"),
        )
        .with_details(serde_json::json!({ "role": role }))
        .into_response(),
    }
}

/// The header that carries a node's change-log position (cluster mode): answered on every
/// response, and honoured on requests so a client reads its own writes on any node.
pub const POSITION_HEADER: &str = "tidings-position";

/// Read-your-writes across nodes: a request carrying `Tidings-Position` (the position a node
/// answered after a write) is served once this node has applied the log that far, catching up
/// at once if it is behind; every response says where the answering node is. On the embedded
/// store there is one node and no position to answer, but a malformed header is still refused,
/// so a client learns of its bug before it meets a cluster.
async fn read_your_writes(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    // The native API's header: the compat profiles answer in their own error shapes, and
    // their clients do not know it.
    let raw = request
        .uri()
        .path()
        .starts_with("/api/")
        .then(|| request.headers().get(POSITION_HEADER))
        .flatten();
    if let Some(raw) = raw {
        let Some(position) = parse_position(raw) else {
            return ApiError::bad_request(
                "invalid_position",
                "Tidings-Position must be 1-18 digits, as a Tidings-Position response header gave it",
            )
            .into_response();
        };
        // One node (the embedded store) has always applied everything it answered.
        if state.store.position().is_some() {
            match state.store.reach_position(position).await {
                Ok(()) => {}
                Err(tidings_store::StoreError::Unprocessable { message, .. }) => {
                    return ApiError::bad_request("invalid_position", message).into_response();
                }
                Err(e) => return ApiError::from(e).into_response(),
            }
        }
    }
    let mut response = next.run(request).await;
    if let Some(position) = state.store.position() {
        response
            .headers_mut()
            .insert(POSITION_HEADER, axum::http::HeaderValue::from(position));
    }
    response
}

/// The form of a `Tidings-Position` value, for the API document.
pub const POSITION_PATTERN: &str = "^[0-9]{1,18}$";

/// A `Tidings-Position` value: 1–18 ASCII digits (no sign, no spaces), so every value the
/// document allows parses and nothing else does.
fn parse_position(raw: &axum::http::HeaderValue) -> Option<i64> {
    let bytes = raw.as_bytes();
    if bytes.is_empty() || bytes.len() > 18 || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// Change records a node may lag behind the log and still call itself ready.
const READY_LAG: i64 = 100;

/// `GET /readyz`: 200 once this node reaches its store and has applied the log (within a few
/// records); 503 while it catches up or while the store is unreachable. Load balancers send
/// traffic only to ready nodes; `/healthz` only says the process is alive.
async fn readyz(State(state): State<AppState>) -> axum::response::Response {
    use axum::response::IntoResponse;
    match state.store.lag().await {
        Ok(lag) if lag <= READY_LAG => axum::Json(serde_json::json!({
            "status": "ready",
            "lag": lag,
            "routed_seq": state.store.routed_seq(),
            "router": state.store.is_routing(),
        }))
        .into_response(),
        Ok(lag) => ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "catching_up",
            format!("this node is {lag} changes behind the log"),
        )
        .with_details(serde_json::json!({ "lag": lag }))
        .into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

async fn api_fallback() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_such_route",
        "no such API route; see /api/v1/openapi.json",
    )
}

async fn api_method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this API route does not accept that method; see /api/v1/openapi.json",
    )
}
