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

/// The API description.
#[derive(OpenApi)]
#[openapi(
    info(title = "Tidings", description = "Activity-stream engine: outboxes, circles, routing, multiplexed inboxes."),
    modifiers(&BearerAuth, &Unavailable),
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
        api::account::list_sessions, api::account::revoke_session, api::account::change_password,
        api::account::delete_account,
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
