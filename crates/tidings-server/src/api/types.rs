//! Custom activity and object types: listed by anyone signed in, registered by admins.

use crate::AppState;
use crate::auth::{AdminUser, AuthUser};
use crate::error::ApiResult;
use crate::extract::ApiJson;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use tidings_store::model::CustomType;
use utoipa::ToSchema;

/// Registered custom types.
#[derive(Debug, Serialize, ToSchema)]
pub struct TypeList {
    /// Types registered through the API (config-file types are listed too).
    pub items: Vec<CustomType>,
}

/// Custom types.
#[utoipa::path(get, path = "/api/v1/types", operation_id = "list_types", tag = "types", security(("bearer" = [])),
    responses((status = 200, body = TypeList)))]
pub async fn list(State(state): State<AppState>, _auth: AuthUser) -> ApiResult<Json<TypeList>> {
    let mut items = state.config.custom_types.clone();
    for stored in state.store.custom_types().await? {
        if !items.iter().any(|t| t.name == stored.name) {
            items.push(stored);
        }
    }
    Ok(Json(TypeList { items }))
}

/// Register (or replace) a custom type with its JSON Schema and default actions (admin).
#[utoipa::path(post, path = "/api/v1/types", request_body = CustomType, tag = "types", security(("bearer" = [])),
    responses((status = 201, body = CustomType), (status = 400), (status = 403), (status = 409)))]
pub async fn register(
    State(state): State<AppState>,
    AdminUser(_admin): AdminUser,
    ApiJson(custom): ApiJson<CustomType>,
) -> ApiResult<(StatusCode, Json<CustomType>)> {
    // Check before storing so a bad schema changes nothing.
    state.types.check(&custom)?;
    let stored = state.store.register_type(custom).await?;
    state.types.register(&stored)?;
    Ok((StatusCode::CREATED, Json(stored)))
}
