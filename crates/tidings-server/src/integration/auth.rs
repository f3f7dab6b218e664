//! Service API keys (`tds_…`, stored hashed like session tokens) and the extractors that say
//! who may call a bus route: a service with its key, or an admin with a session.

use super::error::BusError;
use crate::AppState;
use crate::auth::{AdminUser, AuthUser, bearer_token, token_hash};
use crate::error::ApiError;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use rand::RngCore;
use tidings_store::model::{Service, User};

/// What every service key starts with, so a key is told from a session token at a glance.
pub const SERVICE_KEY_PREFIX: &str = "tds_";

/// The scopes a service may hold.
pub const SCOPES: &[&str] = &["publish", "subscribe", "queues"];

/// A new service key (shown once), its stored hash and its public id.
pub fn new_service_key() -> (String, String, String) {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let key = format!("{SERVICE_KEY_PREFIX}{}", hex::encode(bytes));
    let mut id = [0u8; 8];
    rand::rng().fill_bytes(&mut id);
    (key.clone(), token_hash(&key), hex::encode(id))
}

/// Whether a bearer token is a service key.
pub fn is_service_key(token: &str) -> bool {
    token.starts_with(SERVICE_KEY_PREFIX)
}

fn bearer(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(bearer_token)
}

/// Resolves a service key to its live service (401 when unknown, revoked or expired).
async fn service_for(parts: &Parts, state: &AppState, key: &str) -> Result<Service, ApiError> {
    let hash = token_hash(key);
    let service = state
        .store
        .service_by_key(hash.clone())
        .await?
        .ok_or_else(|| {
            ApiError::unauthenticated("the service key is unknown, revoked or expired")
        })?;
    crate::limits::charge(parts, state, &hash)?;
    Ok(service)
}

/// A caller authenticated with a service key.
#[derive(Debug, Clone)]
pub struct ServiceCaller(pub Service);

impl ServiceCaller {
    /// Refuses unless the service holds `scope`.
    pub fn require(&self, scope: &'static str) -> Result<(), ApiError> {
        if self.0.scopes.iter().any(|s| s == scope) {
            Ok(())
        } else {
            Err(BusError::MissingScope(scope).into())
        }
    }
}

/// Who calls a bus route: an admin (sees and manages everything) or a service (its own).
#[derive(Debug, Clone)]
pub enum BusCaller {
    /// An admin with a session.
    Admin(User),
    /// A service with its key.
    Service(ServiceCaller),
}

impl BusCaller {
    /// The service whose subscriptions the caller may see; None: all (an admin).
    pub fn owner(&self) -> Option<i64> {
        match self {
            BusCaller::Admin(_) => None,
            BusCaller::Service(s) => Some(s.0.id),
        }
    }

    /// Whether the caller may see a subscription owned by `service_id`.
    pub fn may_see(&self, service_id: Option<i64>) -> bool {
        match self {
            BusCaller::Admin(_) => true,
            BusCaller::Service(s) => service_id == Some(s.0.id),
        }
    }
}

impl FromRequestParts<AppState> for BusCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(key) = bearer(parts).filter(|t| is_service_key(t)) {
            let key = key.to_owned();
            return Ok(BusCaller::Service(ServiceCaller(
                service_for(parts, state, &key).await?,
            )));
        }
        let AdminUser(user) = AdminUser::from_request_parts(parts, state).await?;
        Ok(BusCaller::Admin(user))
    }
}

/// Who publishes to the outbox: a user with a session, or a service (with the `publish`
/// scope) acting as its user, so the service is the activity's author.
#[derive(Debug, Clone)]
pub struct Publisher(pub User);

impl FromRequestParts<AppState> for Publisher {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(key) = bearer(parts).filter(|t| is_service_key(t)) {
            let key = key.to_owned();
            let service = ServiceCaller(service_for(parts, state, &key).await?);
            service.require("publish")?;
            let user = state.store.user(&service.0.name).await?;
            // An admin may suspend the user a service acts as, which stops its publishing.
            if user.status != tidings_store::model::UserStatus::Active {
                return Err(ApiError::forbidden(
                    "account_suspended",
                    "the user this service acts as is suspended or deleted",
                ));
            }
            return Ok(Publisher(user));
        }
        let AuthUser { user, .. } = AuthUser::from_request_parts(parts, state).await?;
        Ok(Publisher(user))
    }
}

/// Who calls a queue route: a user with a session (admins may do everything) or a service
/// with its key (the `queues` scope lets it enqueue, lease, ack and nack).
#[derive(Debug, Clone)]
pub enum QueueCaller {
    /// A user with a session.
    User(User),
    /// A service with its key.
    Service(ServiceCaller),
}

impl FromRequestParts<AppState> for QueueCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(key) = bearer(parts).filter(|t| is_service_key(t)) {
            let key = key.to_owned();
            return Ok(QueueCaller::Service(ServiceCaller(
                service_for(parts, state, &key).await?,
            )));
        }
        let AuthUser { user, .. } = AuthUser::from_request_parts(parts, state).await?;
        Ok(QueueCaller::User(user))
    }
}
