//! Registered services: an admin registers one and gets its API key once; keys rotate with an
//! overlap and are revoked at once.

use super::auth::{SCOPES, new_service_key};
use super::error::BusError;
use crate::AppState;
use crate::auth::AdminUser;
use crate::error::ApiResult;
use crate::extract::{ApiJson, ApiPath};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tidings_core::expr::is_valid_slug;
use tidings_store::model::{Service, ServiceKey};
use utoipa::ToSchema;

/// How long a replaced key keeps working unless the rotation says otherwise: a day.
const DEFAULT_OVERLAP: Duration = Duration::from_secs(24 * 3600);
/// Longest overlap a rotation may give the old keys: 30 days.
const MAX_OVERLAP: Duration = Duration::from_secs(30 * 24 * 3600);

/// Register a service.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateServiceBody {
    /// Lowercase slug, unique among services and users (the service publishes as `user:NAME`).
    #[schema(pattern = "^[a-z0-9][a-z0-9_-]{0,62}$")]
    pub name: String,
    /// What it is for (at most 2000 characters).
    #[serde(default)]
    #[schema(max_length = 2000)]
    pub description: String,
    /// What it may do: `publish` (to the outbox and topics), `subscribe` (to topics), `queues`
    /// (enqueue, lease, ack and nack jobs of any queue).
    #[schema(value_type = Vec<ScopeName>)]
    pub scopes: Vec<String>,
}

/// A scope a service may hold.
#[derive(Debug, ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum ScopeName {
    /// Publish to the outbox (and so to topics).
    Publish,
    /// Subscribe webhooks to topics.
    Subscribe,
    /// Enqueue, lease, ack and nack jobs of the work queues.
    Queues,
}

/// A service and a key shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceWithKey {
    /// The service.
    pub service: Service,
    /// The API key (`Authorization: Bearer tds_…`); only its hash is stored.
    pub key: String,
    /// The key's public id (what revocation names).
    pub key_id: String,
}

/// A service and its keys.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceDetail {
    /// The service.
    pub service: Service,
    /// Its keys, newest first (never the keys themselves).
    pub keys: Vec<ServiceKey>,
}

/// Services.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceList {
    /// Every registered service, by name.
    pub items: Vec<Service>,
}

/// Rotate a service's key.
#[derive(Debug, Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateKeyBody {
    /// How long the service's current keys keep working, in seconds (0: stop now; default a
    /// day; at most 30 days).
    #[schema(minimum = 0, maximum = 2592000)]
    #[serde(default, deserialize_with = "super::whole_seconds")]
    pub previous_valid_seconds: Option<u64>,
}

/// A new key shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct NewKey {
    /// The API key; only its hash is stored.
    pub key: String,
    /// Its public id.
    pub key_id: String,
    /// How long the previous keys keep working, in seconds.
    pub previous_valid_seconds: u64,
}

fn check_name(name: &str) -> Result<(), BusError> {
    if is_valid_slug(name) {
        Ok(())
    } else {
        Err(BusError::InvalidName)
    }
}

fn check_scopes(scopes: &[String]) -> Result<Vec<String>, BusError> {
    let mut out: Vec<String> = Vec::new();
    for scope in scopes {
        if !SCOPES.contains(&scope.as_str()) {
            return Err(BusError::InvalidScope(scope.chars().take(64).collect()));
        }
        if !out.contains(scope) {
            out.push(scope.clone());
        }
    }
    Ok(out)
}

/// Register a service (admins): the key is shown once.
#[utoipa::path(post, path = "/api/v1/services", tag = "bus", operation_id = "create_service", security(("bearer" = [])),
    request_body = CreateServiceBody,
    responses((status = 201, body = ServiceWithKey), (status = 400, description = "`invalid_name`, `invalid_scope` or `invalid_description`"), (status = 403, description = "`admin_only`"), (status = 409, description = "`name_taken`: a user or service has the name")))]
pub async fn create(
    State(state): State<AppState>,
    _admin: AdminUser,
    ApiJson(body): ApiJson<CreateServiceBody>,
) -> ApiResult<(StatusCode, Json<ServiceWithKey>)> {
    check_name(&body.name)?;
    let scopes = check_scopes(&body.scopes)?;
    if body.description.chars().count() > 2000 {
        return Err(crate::error::ApiError::bad_request(
            "invalid_description",
            "description must be at most 2000 characters",
        ));
    }
    let (key, hash, key_id) = new_service_key();
    let (service, _) = state
        .store
        .create_service(body.name, body.description, scopes, hash, key_id.clone())
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(ServiceWithKey {
            service,
            key,
            key_id,
        }),
    ))
}

/// Every service (admins).
#[utoipa::path(get, path = "/api/v1/services", tag = "bus", operation_id = "list_services", security(("bearer" = [])),
    responses((status = 200, body = ServiceList), (status = 403, description = "`admin_only`")))]
pub async fn list(
    State(state): State<AppState>,
    _admin: AdminUser,
) -> ApiResult<Json<ServiceList>> {
    Ok(Json(ServiceList {
        items: state.store.services().await?,
    }))
}

/// One service and its keys (admins).
#[utoipa::path(get, path = "/api/v1/services/{name}", tag = "bus", operation_id = "get_service", security(("bearer" = [])),
    params(("name" = String, Path)),
    responses((status = 200, body = ServiceDetail), (status = 403, description = "`admin_only`"), (status = 404)))]
pub async fn get(
    State(state): State<AppState>,
    _admin: AdminUser,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<ServiceDetail>> {
    let (service, keys) = state.store.service(name).await?;
    Ok(Json(ServiceDetail { service, keys }))
}

/// Give a service a new key (admins); its current keys keep working for the overlap.
#[utoipa::path(post, path = "/api/v1/services/{name}/keys", tag = "bus", operation_id = "rotate_service_key", security(("bearer" = [])),
    params(("name" = String, Path)), request_body(content = Option<RotateKeyBody>, description = "optional"),
    responses((status = 201, body = NewKey), (status = 400, description = "`invalid_time`"), (status = 403, description = "`admin_only`"), (status = 404)))]
pub async fn rotate(
    State(state): State<AppState>,
    _admin: AdminUser,
    ApiPath(name): ApiPath<String>,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, Json<NewKey>)> {
    let body: RotateKeyBody = super::optional_body(&body)?;
    let overlap = match body.previous_valid_seconds {
        None => DEFAULT_OVERLAP,
        Some(secs) if Duration::from_secs(secs) <= MAX_OVERLAP => Duration::from_secs(secs),
        Some(_) => {
            return Err(BusError::InvalidTime(
                "previous_valid_seconds is at most 2592000 (30 days)".into(),
            )
            .into());
        }
    };
    let (key, hash, key_id) = new_service_key();
    state
        .store
        .rotate_service_key(name, hash, key_id.clone(), overlap)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(NewKey {
            key,
            key_id,
            previous_valid_seconds: overlap.as_secs(),
        }),
    ))
}

/// Revoke one of a service's keys at once (admins).
#[utoipa::path(delete, path = "/api/v1/services/{name}/keys/{key_id}", tag = "bus", operation_id = "revoke_service_key", security(("bearer" = [])),
    params(("name" = String, Path), ("key_id" = String, Path)),
    responses((status = 204, description = "revoked"), (status = 403, description = "`admin_only`"), (status = 404)))]
pub async fn revoke(
    State(state): State<AppState>,
    _admin: AdminUser,
    ApiPath((name, key_id)): ApiPath<(String, String)>,
) -> ApiResult<StatusCode> {
    state.store.revoke_service_key(name, key_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
