//! The OpenAPI 3.1 document, generated from the handlers' annotations, and the `/docs` UI
//! (Swagger UI assets are vendored into the binary, so the page works offline).

use crate::api;
use crate::pagination;
use axum::Json;
use axum::Router;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
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
    }
}

/// Every operation can answer 503 (the store is unreachable, or the server is shutting down),
/// whatever the handler: documented once here rather than on each handler.
struct Unavailable;

impl Modify for Unavailable {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::header::HeaderBuilder;
        use utoipa::openapi::{ObjectBuilder, RefOr, ResponseBuilder, Type};
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
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                operation
                    .responses
                    .responses
                    .entry("503".to_owned())
                    .or_insert_with(|| RefOr::T(response.clone()));
            }
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

    fn too_many(codes: &[&str], budget_headers: bool) -> utoipa::openapi::Response {
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
            .content("application/json", Self::error_body(codes, Some(details)))
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
        response.build()
    }
}

impl Modify for AbuseLimits {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ObjectBuilder, RefOr, ResponseBuilder, Type};
        let budget = Self::too_many(&["rate_limited"], true);
        let login = Self::too_many(&["login_backoff", "login_rate"], false);
        let signup = Self::too_many(&["signup_rate"], false);
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
        for (path, item) in openapi.paths.paths.iter_mut() {
            let operations = [
                ("get", &mut item.get),
                ("put", &mut item.put),
                ("post", &mut item.post),
                ("delete", &mut item.delete),
                ("patch", &mut item.patch),
            ];
            for (method, operation) in operations {
                let Some(operation) = operation else { continue };
                let limited = match (method, path.as_str()) {
                    ("post", "/api/v1/sessions") => Some(&login),
                    ("post", "/api/v1/users") => Some(&signup),
                    _ if operation.security.as_ref().is_some_and(|s| !s.is_empty()) => {
                        Some(&budget)
                    }
                    _ => None,
                };
                let responses = &mut operation.responses.responses;
                if let Some(limited) = limited {
                    responses
                        .entry("429".to_owned())
                        .or_insert_with(|| RefOr::T(limited.clone()));
                }
                if operation.request_body.is_some() {
                    responses
                        .entry("413".to_owned())
                        .or_insert_with(|| RefOr::T(too_large.clone()));
                }
            }
        }
    }
}

/// The API description.
#[derive(OpenApi)]
#[openapi(
    info(title = "Tidings", description = "Activity-stream engine: outboxes, circles, routing, multiplexed inboxes."),
    modifiers(&BearerAuth, &Unavailable, &AbuseLimits),
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
        api::follows::follow, api::follows::unfollow, api::follows::followers,
        api::follows::following, api::follows::like, api::follows::unlike, api::follows::share,
        api::follows::unshare, api::follows::relationship, api::follows::my_reactions,
        api::feeds::list, api::feeds::read, api::feeds::seen, api::feeds::mark_read,
        crate::compat::afs::create_app_key,
    ),
    components(schemas(pagination::PageBody, pagination::PageItemBody))
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
