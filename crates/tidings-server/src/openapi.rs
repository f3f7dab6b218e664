//! The OpenAPI 3.1 document, generated from the handlers' annotations, and the `/docs` UI
//! (Swagger UI assets are vendored into the binary, so the page works offline).

use crate::api;
use crate::pagination;
use axum::Json;
use axum::Router;
use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn, PathItem};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, ObjectBuilder, Ref, RefOr, Required, Response, ResponseBuilder, Type,
};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::{Config, SwaggerUi};

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        // activity-feed-system's compat routes authenticate by app key instead.
        components.add_security_scheme(
            "app_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-App-Key"))),
        );
    }
}

/// The HTTP methods an operation can sit under, mutably, for modifiers that touch every one.
fn operations_of(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.patch,
        &mut item.head,
        &mut item.options,
        &mut item.trace,
    ]
    .into_iter()
    .flatten()
}

/// Adds `response` under `status` unless the handler documented that status itself (its own
/// description is more precise than the generic one).
fn add_response(operation: &mut Operation, status: &str, response: &Response) {
    operation
        .responses
        .responses
        .entry(status.to_owned())
        .or_insert_with(|| RefOr::T(response.clone()));
}

/// Cluster mode, documented once for every operation: 421 when the node does not run the role
/// that serves the request (`serve --roles`).
struct ClusterRoles;

impl Modify for ClusterRoles {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        // The native error shape on every route, compat ones included: the role check runs
        // before any profile sees the request.
        let misdirected = ResponseBuilder::new()
            .description(
                "`role_not_served`: this node does not run the role (api or push) that serves \
                 the request (`serve --roles`); `details.role` names it",
            )
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build();
        for item in openapi.paths.paths.values_mut() {
            for operation in operations_of(item) {
                add_response(operation, "421", &misdirected);
            }
        }
    }
}

/// Read-your-writes across nodes (cluster mode), as a formal part of every native operation:
/// the optional `Tidings-Position` request header, the same header on every response, and the
/// 400 `invalid_position` for a malformed position or one the cluster never reached. Runs after
/// [`SharedStatuses`] so that an existing 400 keeps its description and gains this cause.
struct ReadYourWrites;

impl Modify for ReadYourWrites {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let position_schema = || {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(api::POSITION_PATTERN))
                .max_length(Some(18))
        };
        let parameter = ParameterBuilder::new()
            .name("Tidings-Position")
            .parameter_in(ParameterIn::Header)
            .required(Required::False)
            .description(Some(
                "A change-log position this client saw in a `Tidings-Position` response header \
                 (after a write on any node). The answering node applies the log at least that \
                 far before serving the request. Ignored by the embedded store, which has one \
                 node, but checked for its form there too.",
            ))
            .schema(Some(position_schema()))
            .build();
        let header = HeaderBuilder::new()
            .schema(position_schema())
            .description(Some(
                "Cluster mode: the answering node's change-log position; send it back to read \
                 your own writes on any node",
            ))
            .build();
        let cause = "`invalid_position`: the `Tidings-Position` header is not 1–18 digits, or \
                     names a position the cluster never reached";
        let invalid = ResponseBuilder::new().description(cause).build();
        for (path, item) in openapi.paths.paths.iter_mut() {
            if !path.starts_with("/api/") {
                continue;
            }
            for operation in operations_of(item) {
                operation
                    .parameters
                    .get_or_insert_with(Vec::new)
                    .push(parameter.clone());
                match operation.responses.responses.get_mut("400") {
                    Some(RefOr::T(response)) => {
                        response.description = format!("{}; or {cause}", response.description);
                    }
                    Some(RefOr::Ref(_)) => {}
                    None => add_response(operation, "400", &invalid),
                }
                for response in operation.responses.responses.values_mut() {
                    if let RefOr::T(response) = response {
                        response
                            .headers
                            .insert("Tidings-Position".to_owned(), header.clone());
                    }
                }
            }
        }
    }
}

/// Every operation can answer 503 (the store is unreachable, or the server is shutting down),
/// whatever the handler: documented once here rather than on each handler.
struct Unavailable;

impl Modify for Unavailable {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let response = ResponseBuilder::new()
            .description(
                "`store_unavailable` (the database cannot be reached) or `shutting_down`; \
                 retry after `Retry-After` seconds",
            )
            .header(
                "Retry-After",
                HeaderBuilder::new()
                    .schema(ObjectBuilder::new().schema_type(Type::Integer))
                    .description(Some("Seconds to wait before retrying"))
                    .build(),
            )
            .build();
        let retry_after = HeaderBuilder::new()
            .schema(ObjectBuilder::new().schema_type(Type::Integer))
            .description(Some(
                "Seconds to wait before retrying (`store_unavailable`, `shutting_down`)",
            ))
            .build();
        for item in openapi.paths.paths.values_mut() {
            for operation in operations_of(item) {
                add_response(operation, "503", &response);
                // A handler that documents its own 503 (`media_busy`, say) can still answer
                // the shared one: it keeps the header.
                if let Some(RefOr::T(own)) = operation.responses.responses.get_mut("503") {
                    own.headers
                        .entry("Retry-After".to_owned())
                        .or_insert_with(|| retry_after.clone());
                }
            }
        }
    }
}

/// Statuses that come from what every operation of a kind shares rather than from its handler,
/// added where they apply so that a new operation inherits them:
/// - bearer-secured: 401 (no, malformed, unknown or revoked token) and 403 (suspended account,
///   or a service key where a session is needed);
/// - with a request body: 400 (not JSON, or the wrong shape), 413 (over `max_body_bytes`) and,
///   on the native API, 415 (not `application/json`; compat profiles read any content type);
/// - with path or query parameters: 400 (a parameter that does not parse).
struct SharedStatuses;

impl Modify for SharedStatuses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let described = |text: &str| ResponseBuilder::new().description(text).build();
        let unauthenticated = described(
            "`unauthenticated`: no bearer token, a malformed `Authorization` header, or a token \
             that is unknown, expired or revoked",
        );
        let suspended = described(
            "`account_suspended`: the caller's account is suspended; \
             `service_key_not_allowed`: a service key where a user's session is needed",
        );
        let bad_body = described(
            "`invalid_json`: the body is not JSON, or misses a required field, has an unknown \
             one or a value of the wrong type or out of its range",
        );
        let bad_params = described(
            "`invalid_path` / `invalid_query`, or a parameter out of its documented range",
        );
        let too_large = described("`body_too_large`: the body is larger than `max_body_bytes`");
        let media_type =
            described("`unsupported_media_type`: the body is not sent as `application/json`");
        for (path, item) in openapi.paths.paths.iter_mut() {
            let native = path.starts_with("/api/");
            for operation in operations_of(item) {
                if is_bearer_secured(operation) {
                    add_response(operation, "401", &unauthenticated);
                    add_response(operation, "403", &suspended);
                }
                let body_required = operation
                    .request_body
                    .as_ref()
                    .map(|body| matches!(body.required, Some(Required::True)));
                if let Some(required) = body_required {
                    add_response(operation, "400", &bad_body);
                    add_response(operation, "413", &too_large);
                    // Required JSON bodies are read by the JSON extractor, which checks the
                    // content type; optional ones (and the compat profiles') are read as bytes.
                    if native && required {
                        add_response(operation, "415", &media_type);
                    }
                }
                let has_params = operation.parameters.as_ref().is_some_and(|p| {
                    p.iter()
                        .any(|p| matches!(p.parameter_in, ParameterIn::Path | ParameterIn::Query))
                });
                if has_params {
                    add_response(operation, "400", &bad_params);
                }
            }
        }
    }
}

/// Whether an operation asks for the bearer scheme.
fn is_bearer_secured(operation: &Operation) -> bool {
    let Some(requirements) = &operation.security else {
        return false;
    };
    serde_json::to_value(requirements).is_ok_and(|value| {
        value
            .as_array()
            .is_some_and(|reqs| reqs.iter().any(|r| r.get("bearer").is_some()))
    })
}

/// The native error shape, `{"error": {"code", "message", "details"?}}`, as a schema.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ErrorBody {
    /// The error.
    error: ErrorDetail,
}

/// What went wrong.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ErrorDetail {
    /// Stable machine-readable code (`invalid_json`, `not_found`, …).
    code: String,
    /// Human-readable message.
    message: String,
    /// Extra structured context (field, position, tombstone…), when there is any.
    #[schema(value_type = Option<Object>)]
    details: Option<serde_json::Value>,
}

/// Every 4xx and 5xx response that names no body gets its profile's error shape: the native
/// one under `/api/`, FeedStream's under `/v1/`, activity-feed-system's elsewhere. Handlers
/// then only list statuses; the shape cannot be forgotten.
struct ErrorShapes;

impl Modify for ErrorShapes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let content = |schema: &str| {
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(schema)))
                .build()
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            let schema = if path.starts_with("/api/") || !path.starts_with('/') {
                "ErrorBody"
            } else if path.starts_with("/v1/") {
                "FeedStreamError"
            } else {
                "AfsError"
            };
            for operation in operations_of(item) {
                for (status, response) in operation.responses.responses.iter_mut() {
                    let is_error = status.starts_with('4') || status.starts_with('5');
                    if let (true, RefOr::T(response)) = (is_error, response)
                        && response.content.is_empty()
                    {
                        response
                            .content
                            .insert("application/json".to_owned(), content(schema));
                    }
                }
            }
        }
    }
}

/// One OpenAPI link: after `from` answers `status`, `to` can be called with parameters (and a
/// body) taken from that exchange. Schemathesis' stateful phase walks these, so operations on
/// ids are exercised with ids that exist.
struct LinkSpec {
    /// Operation id of the call that yields the value.
    from: &'static str,
    /// Its status that carries it.
    status: &'static str,
    /// Operation id of the call it feeds.
    to: &'static str,
    /// `(parameter, runtime expression)` pairs.
    parameters: &'static [(&'static str, &'static str)],
    /// Body fields, as `(field, runtime expression)` pairs (none: no body).
    body: &'static [(&'static str, &'static str)],
}

const fn link(
    from: &'static str,
    status: &'static str,
    to: &'static str,
    parameters: &'static [(&'static str, &'static str)],
) -> LinkSpec {
    LinkSpec {
        from,
        status,
        to,
        parameters,
        body: &[],
    }
}

const NEW_USER: &[(&str, &str)] = &[("username", "$response.body#/username")];
const SAME_USER: &[(&str, &str)] = &[("username", "$request.path.username")];
const NEW_CIRCLE: &[(&str, &str)] = &[("name", "$response.body#/name")];
const FIRST_CIRCLE: &[(&str, &str)] = &[("name", "$response.body#/items/0/name")];
const NEW_ACTIVITY: &[(&str, &str)] = &[("id", "$response.body#/id")];
const SAME_ACTIVITY: &[(&str, &str)] = &[("id", "$request.path.id")];
const FIRST_ITEM: &[(&str, &str)] = &[("id", "$response.body#/items/0/activity/id")];
const FIRST_FEED: &[(&str, &str)] = &[("name", "$response.body#/0/name")];
const NEW_QUEUE: &[(&str, &str)] = &[("name", "$response.body#/name")];
const SAME_QUEUE: &[(&str, &str)] = &[("name", "$request.path.name")];

/// The links of the document: create → read, act → undo, list → item.
const LINKS: &[LinkSpec] = &[
    LinkSpec {
        from: "signup",
        status: "201",
        to: "login",
        parameters: &[],
        body: &[
            ("username", "$response.body#/username"),
            ("password", "$request.body#/password"),
        ],
    },
    link("signup", "201", "get_user", NEW_USER),
    link(
        "login",
        "201",
        "get_user",
        &[("username", "$response.body#/user/username")],
    ),
    link("me", "200", "get_user", NEW_USER),
    link("me", "200", "user_circles", NEW_USER),
    link("me", "200", "outbox", NEW_USER),
    link("me", "200", "followers", NEW_USER),
    link("me", "200", "following", NEW_USER),
    link("create", "201", "get_circle", NEW_CIRCLE),
    link("create", "201", "members", NEW_CIRCLE),
    link("create", "201", "circle_stream", NEW_CIRCLE),
    link("create", "201", "archive", NEW_CIRCLE),
    link("search", "200", "get_circle", FIRST_CIRCLE),
    link("search", "200", "members", FIRST_CIRCLE),
    link("search", "200", "circle_stream", FIRST_CIRCLE),
    link("publish", "201", "get_activity", NEW_ACTIVITY),
    link("publish", "201", "replies", NEW_ACTIVITY),
    link("publish", "201", "versions", NEW_ACTIVITY),
    link("publish", "201", "retract", NEW_ACTIVITY),
    link("publish", "201", "like", NEW_ACTIVITY),
    link("publish", "201", "share", NEW_ACTIVITY),
    link("publish", "201", "hide", NEW_ACTIVITY),
    link("read_inbox", "200", "get_activity", FIRST_ITEM),
    link("read_inbox", "200", "replies", FIRST_ITEM),
    link("read_inbox", "200", "like", FIRST_ITEM),
    link("read_inbox", "200", "share", FIRST_ITEM),
    link("like", "201", "unlike", SAME_ACTIVITY),
    link("share", "201", "unshare", SAME_ACTIVITY),
    link(
        "subscribe",
        "201",
        "unsubscribe",
        &[("id", "$response.body#/id")],
    ),
    link("follow", "201", "relationship", SAME_USER),
    link("follow", "201", "unfollow", SAME_USER),
    link("list_feeds", "200", "read_feed", FIRST_FEED),
    link("create_queue", "201", "get_queue", NEW_QUEUE),
    link("create_queue", "201", "enqueue_jobs", NEW_QUEUE),
    link("create_queue", "201", "lease_jobs", NEW_QUEUE),
    link("create_queue", "201", "dead_jobs", NEW_QUEUE),
    link("create_queue", "201", "retry_dead", NEW_QUEUE),
    link("create_queue", "201", "delete_queue", NEW_QUEUE),
    link("enqueue_jobs", "201", "lease_jobs", SAME_QUEUE),
    LinkSpec {
        from: "lease_jobs",
        status: "200",
        to: "ack_job",
        parameters: &[
            ("name", "$request.path.name"),
            ("id", "$response.body#/jobs/0/id"),
        ],
        body: &[("lease_token", "$response.body#/jobs/0/lease_token")],
    },
    LinkSpec {
        from: "lease_jobs",
        status: "200",
        to: "nack_job",
        parameters: &[
            ("name", "$request.path.name"),
            ("id", "$response.body#/jobs/0/id"),
        ],
        body: &[("lease_token", "$response.body#/jobs/0/lease_token")],
    },
    link("list_feeds", "200", "seen", FIRST_FEED),
    link("list_feeds", "200", "mark_read", FIRST_FEED),
    LinkSpec {
        from: "feedstream_subscribe",
        status: "200",
        to: "feedstream_consume",
        parameters: &[
            ("event_name", "$request.body#/event_name"),
            ("consumer_id", "$request.body#/consumer_id"),
        ],
        body: &[],
    },
    LinkSpec {
        from: "feedstream_publish",
        status: "200",
        to: "feedstream_retract",
        parameters: &[],
        body: &[
            ("verb", "$request.body#/verb"),
            ("producer_id", "$request.body#/producer_id"),
            ("item_id", "$request.body#/item_id"),
        ],
    },
];

/// Adds [`LINKS`] to the responses they start from.
struct Links;

impl Modify for Links {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            for operation in operations_of(item) {
                let Some(id) = operation.operation_id.clone() else {
                    continue;
                };
                for spec in LINKS.iter().filter(|l| l.from == id) {
                    let Some(RefOr::T(response)) =
                        operation.responses.responses.get_mut(spec.status)
                    else {
                        continue;
                    };
                    // utoipa 5.5 writes `Link`'s own fields in snake_case (`operation_id`,
                    // `request_body`), which no OpenAPI reader knows; its extensions are written
                    // as given, so the link's fields go there under their OpenAPI names.
                    let mut fields = Extensions::default();
                    fields.insert("operationId".to_owned(), spec.to.into());
                    let parameters: serde_json::Map<String, serde_json::Value> = spec
                        .parameters
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).into()))
                        .collect();
                    if !parameters.is_empty() {
                        fields.insert("parameters".to_owned(), parameters.into());
                    }
                    let body: serde_json::Map<String, serde_json::Value> = spec
                        .body
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).into()))
                        .collect();
                    if !body.is_empty() {
                        fields.insert("requestBody".to_owned(), body.into());
                    }
                    let link = LinkBuilder::new().extensions(Some(fields));
                    response
                        .links
                        .insert(spec.to.to_owned(), RefOr::T(link.build()));
                }
            }
        }
    }
}

/// A schema written as JSON Schema text, for request bodies whose rules are easier to state that
/// way than through derive attributes. The texts are fixed: a unit test parses every one.
pub fn schema_from_json(
    value: serde_json::Value,
) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    match serde_json::from_value(value) {
        Ok(schema) => schema,
        Err(e) => {
            tracing::error!(error = %e, "a hand-written schema does not parse");
            Default::default()
        }
    }
}

/// The abuse limits' answers (decision 0016), documented where they apply: 429 on login and
/// sign-up (per address and account) and on every operation that takes a bearer token (its
/// read or write budget), and 413 on every operation with a request body.
struct AbuseLimits;

impl AbuseLimits {
    /// `{"error": {"code", "message", "details"}}` with the given codes.
    fn error_body(
        codes: &[&str],
        details: Option<utoipa::openapi::Object>,
    ) -> utoipa::openapi::Content {
        use utoipa::openapi::{ContentBuilder, ObjectBuilder, Type};
        let mut error = ObjectBuilder::new()
            .property(
                "code",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(codes.iter().copied())),
            )
            .required("code")
            .property("message", ObjectBuilder::new().schema_type(Type::String))
            .required("message");
        if let Some(details) = details {
            error = error.property("details", details).required("details");
        }
        ContentBuilder::new()
            .schema(Some(
                ObjectBuilder::new()
                    .property("error", error)
                    .required("error")
                    .build(),
            ))
            .build()
    }

    /// A 429 with `Retry-After` (and the budget headers when asked); `native` gives it the
    /// native error body with these codes, otherwise [`ErrorShapes`] gives it its profile's.
    fn too_many(codes: &[&str], budget_headers: bool, native: bool) -> utoipa::openapi::Response {
        use utoipa::openapi::header::HeaderBuilder;
        use utoipa::openapi::{ObjectBuilder, ResponseBuilder, Type};
        let integer = || {
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(0))
        };
        let details = ObjectBuilder::new()
            .property("retry_after", integer())
            .required("retry_after")
            .build();
        let mut response = ResponseBuilder::new()
            .description(format!(
                "Rate limited ({}): retry after `Retry-After` seconds",
                codes.join(", ")
            ))
            .header(
                "Retry-After",
                HeaderBuilder::new()
                    .schema(integer())
                    .description(Some("Seconds to wait before retrying"))
                    .build(),
            );
        if budget_headers {
            for (name, what) in [
                (
                    "RateLimit-Limit",
                    "Requests the token's budget holds (reads and writes have one each)",
                ),
                (
                    "RateLimit-Remaining",
                    "Requests left in the budget (also sent on every authenticated answer)",
                ),
                ("RateLimit-Reset", "Seconds until the budget is full again"),
            ] {
                response = response.header(
                    name,
                    HeaderBuilder::new()
                        .schema(integer())
                        .description(Some(what))
                        .build(),
                );
            }
        }
        if native {
            response = response.content("application/json", Self::error_body(codes, Some(details)));
        }
        response.build()
    }
}

impl Modify for AbuseLimits {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ObjectBuilder, ResponseBuilder, Type};
        // A token's (or an app key's) budget; for requests without a token, the address's.
        let budget = Self::too_many(&["rate_limited"], true, true);
        let compat_budget = Self::too_many(&["rate_limited"], true, false);
        let stream = Self::too_many(&["rate_limited", "too_many_connections"], true, true);
        let login = Self::too_many(&["login_backoff", "login_rate"], false, true);
        let signup = Self::too_many(&["signup_rate"], false, true);
        let too_large = ResponseBuilder::new()
            .description("`body_too_large`: the body is larger than the server accepts")
            .content(
                "application/json",
                Self::error_body(
                    &["body_too_large"],
                    Some(
                        ObjectBuilder::new()
                            .property("limit", ObjectBuilder::new().schema_type(Type::Integer))
                            .build(),
                    ),
                ),
            )
            .build();
        let body_timeout = ResponseBuilder::new()
            .description(
                "`body_timeout`: the body did not arrive whole within `[limits] \
                 body_read_seconds` of the request head; nothing was done",
            )
            .content(
                "application/json",
                Self::error_body(
                    &["body_timeout"],
                    Some(
                        ObjectBuilder::new()
                            .property("seconds", ObjectBuilder::new().schema_type(Type::Number))
                            .build(),
                    ),
                ),
            )
            .build();
        for (path, item) in openapi.paths.paths.iter_mut() {
            // `/sessions` and `/users` hold one operation each: login and sign-up.
            let own_limit = match path.as_str() {
                "/api/v1/sessions" => Some(&login),
                "/api/v1/users" => Some(&signup),
                "/api/v1/inbox/stream" => Some(&stream),
                _ => None,
            };
            let native = path.starts_with("/api/");
            // FeedStream's `/v1` has no tokens: every request spends the address's budget.
            let feedstream = path.starts_with("/v1/");
            let by_kind = [
                (&mut item.get, true),
                (&mut item.head, true),
                (&mut item.put, false),
                (&mut item.post, false),
                (&mut item.delete, false),
                (&mut item.patch, false),
                (&mut item.options, false),
                (&mut item.trace, false),
            ];
            for (operation, is_read) in by_kind
                .into_iter()
                .filter_map(|(op, is_read)| op.as_mut().map(|op| (op, is_read)))
            {
                let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
                // Reads without a token under `/api/` spend the address's budget.
                let anonymous_read = native && !secured && is_read;
                let general = if native { &budget } else { &compat_budget };
                let limited =
                    own_limit.or((secured || feedstream || anonymous_read).then_some(general));
                if let Some(limited) = limited {
                    add_response(operation, "429", limited);
                }
                if operation.request_body.is_some() {
                    add_response(operation, "413", &too_large);
                    add_response(operation, "408", &body_timeout);
                }
            }
        }
    }
}

/// The API description.
#[derive(OpenApi)]
#[openapi(
    info(title = "Tidings", description = "Activity-stream engine: outboxes, circles, routing, multiplexed inboxes."),
    modifiers(&BearerAuth, &Unavailable, &ClusterRoles, &AbuseLimits, &SharedStatuses, &ReadYourWrites, &ErrorShapes, &Links),
    paths(
        api::users::signup, api::users::login, api::users::logout, api::users::me,
        api::users::get_user, api::users::suspend, api::users::unsuspend, api::users::delete_user,
        api::circles::create, api::circles::search, api::circles::get_circle, api::circles::archive,
        api::circles::members, api::circles::user_circles, api::circles::put_member,
        api::circles::remove_member, api::circles::stream,
        api::activities::publish, api::activities::get_activity, api::activities::replies,
        api::activities::versions, api::activities::retract, api::activities::take_action,
        api::activities::outbox,
        api::inbox::read, api::inbox::hide, api::inbox::list_subscriptions, api::inbox::subscribe,
        api::inbox::unsubscribe,
        api::types::list, api::types::register,
        api::search::search,
        api::moderation::report, api::moderation::queue, api::moderation::resolve,
        api::moderation::bans, api::moderation::log,
        api::moderation::block, api::moderation::unblock, api::moderation::blocks,
        api::moderation::mute, api::moderation::unmute, api::moderation::mutes,
        api::conversations::list, api::conversations::messages, api::conversations::mark_read,
        api::groups::create, api::groups::list, api::groups::get_one, api::groups::delete,
        api::groups::add_members, api::groups::remove_member, api::groups::add_to_circle,
        api::media::upload, api::media::get_media, api::media::get_bytes,
        api::media::put_my_avatar, api::media::put_circle_avatar, api::media::user_avatar,
        api::media::circle_avatar,
        api::follows::follow, api::follows::unfollow, api::follows::followers,
        api::follows::following, api::follows::like, api::follows::unlike, api::follows::share,
        api::follows::unshare, api::follows::relationship, api::follows::my_reactions,
        api::feeds::list, api::feeds::read, api::feeds::seen, api::feeds::mark_read,
        crate::push::sse::stream,
        crate::compat::afs::create_app_key,
        crate::compat::feedstream::subscribe, crate::compat::feedstream::unsubscribe,
        crate::compat::feedstream::publish, crate::compat::feedstream::retract,
        crate::compat::feedstream::consume,
        crate::compat::afs::me, crate::compat::afs::create_post, crate::compat::afs::activity,
        crate::compat::afs::my_feed, crate::compat::afs::friends_feed, crate::compat::afs::follow,
        crate::compat::afs::unfollow,
        api::account::list_sessions, api::account::revoke_session, api::account::change_password,
        api::account::delete_account,
        crate::integration::services::create, crate::integration::services::list,
        crate::integration::services::get, crate::integration::services::rotate,
        crate::integration::services::revoke,
        crate::integration::topics::create, crate::integration::topics::list,
        crate::integration::topics::get, crate::integration::topics::subscribe,
        crate::integration::topics::subscriptions, crate::integration::topics::subscription,
        crate::integration::topics::rotate_secret, crate::integration::topics::enable,
        crate::integration::topics::deliveries, crate::integration::topics::redeliver,
        crate::integration::consume::pull, crate::integration::consume::ack,
        crate::integration::consume::replay_subscription, crate::integration::consume::pause,
        crate::integration::consume::resume, crate::integration::consume::delete_subscription,
        crate::integration::consume::delete_topic, crate::integration::consume::stream,
        crate::integration::schedules::create, crate::integration::schedules::list,
        crate::integration::schedules::get, crate::integration::schedules::pause,
        crate::integration::schedules::resume, crate::integration::schedules::delete,
        crate::integration::queues::api::create, crate::integration::queues::api::list, crate::integration::queues::api::get_queue, crate::integration::queues::api::delete_queue,
        crate::integration::queues::api::enqueue, crate::integration::queues::api::lease, crate::integration::queues::api::ack, crate::integration::queues::api::ack_many, crate::integration::queues::api::nack,
        crate::integration::queues::api::dead, crate::integration::queues::api::retry_dead,
    ),
    components(schemas(
        pagination::PageBody, pagination::PageItemBody, ErrorBody, ErrorDetail,
        api::feeds::GroupBody, api::feeds::GroupPageBody,
        crate::compat::feedstream::ErrorBody, crate::compat::afs::ErrorBody,
    ))
)]
pub struct ApiDoc;

/// `GET /api/v1/openapi.json`.
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// `/docs`: Swagger UI reading `/api/v1/openapi.json`.
pub fn docs_router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    SwaggerUi::new("/docs")
        .config(Config::from("/api/v1/openapi.json"))
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_written_schemas_parse() {
        for (name, schema) in [
            (
                "PublishBody",
                <api::activities::PublishBody as utoipa::PartialSchema>::schema(),
            ),
            (
                "FeedPageBody",
                <api::feeds::FeedPageBody as utoipa::PartialSchema>::schema(),
            ),
        ] {
            let text = serde_json::to_value(&schema).expect("serialise");
            assert_ne!(
                text,
                serde_json::to_value(RefOr::<utoipa::openapi::schema::Schema>::default())
                    .expect("serialise"),
                "{name} did not parse"
            );
        }
    }

    /// Every operation of the document, as JSON, with its path and method.
    fn operations() -> Vec<(String, String, serde_json::Value)> {
        let doc = serde_json::to_value(ApiDoc::openapi()).expect("serialise");
        let mut out = Vec::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("path item") {
                out.push((path.clone(), method.clone(), op.clone()));
            }
        }
        out
    }

    #[test]
    fn operation_ids_are_unique_so_links_can_name_them() {
        let mut seen = std::collections::HashSet::new();
        for (path, method, op) in operations() {
            let id = op["operationId"]
                .as_str()
                .expect("an operation id")
                .to_owned();
            assert!(
                seen.insert(id.clone()),
                "{method} {path}: operation id {id} is taken"
            );
        }
    }

    #[test]
    fn every_link_joins_two_documented_operations() {
        let ops = operations();
        let ids: Vec<&str> = ops
            .iter()
            .filter_map(|(_, _, op)| op["operationId"].as_str())
            .collect();
        let mut attached = 0;
        for (path, method, op) in &ops {
            for (status, response) in op["responses"].as_object().expect("responses") {
                for (name, link) in response["links"].as_object().into_iter().flatten() {
                    let target = link["operationId"].as_str().expect("operationId");
                    assert!(
                        ids.contains(&target),
                        "{method} {path} {status}: link {name} to nothing"
                    );
                    attached += 1;
                }
            }
        }
        assert_eq!(
            attached,
            LINKS.len(),
            "a link's source operation or status is not documented"
        );
    }

    #[test]
    fn parameters_sit_where_the_server_reads_them() {
        for (path, method, op) in operations() {
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            for param in &params {
                let name = param["name"].as_str().expect("name");
                let in_template = path.contains(&format!("{{{name}}}"));
                assert_eq!(
                    param["in"] == "path",
                    in_template,
                    "{method} {path}: parameter {name} is documented in {}",
                    param["in"]
                );
            }
            for segment in path.split('/').filter(|s| s.starts_with('{')) {
                let name = segment.trim_matches(['{', '}']);
                assert!(
                    params
                        .iter()
                        .any(|p| p["name"] == name && p["in"] == "path"),
                    "{method} {path}: path parameter {name} is not documented"
                );
            }
        }
    }

    #[test]
    fn shared_statuses_and_error_shapes_are_on_every_operation() {
        for (path, method, op) in operations() {
            let responses = op["responses"].as_object().expect("responses");
            let has = |status: &str| responses.contains_key(status);
            assert!(has("503"), "{method} {path}: no 503");
            if op["security"].to_string().contains("\"bearer\"") {
                assert!(
                    has("401") && has("403"),
                    "{method} {path}: bearer without 401/403"
                );
            }
            if op.get("requestBody").is_some() {
                assert!(
                    has("400") && has("413"),
                    "{method} {path}: a body without 400/413"
                );
            }
            for (status, response) in responses {
                if status.starts_with('4') || status.starts_with('5') {
                    assert!(
                        response["content"]["application/json"]["schema"].is_object(),
                        "{method} {path} {status}: no error shape"
                    );
                }
            }
        }
    }
}
