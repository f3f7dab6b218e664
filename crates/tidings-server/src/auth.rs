//! Authentication: argon2 password hashes, random bearer tokens stored hashed, and the
//! extractors that make every handler state who may call it.

use crate::AppState;
use crate::error::ApiError;
use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use rand::RngCore;
use sha2::{Digest, Sha256};
use tidings_store::model::{SessionLookup, User, UserStatus};

/// Hashes a password with argon2id and a fresh salt (slow on purpose: run off the async threads).
pub fn hash_password(password: &str) -> Result<String, ApiError> {
    let mut salt_bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut salt_bytes);
    let salt = SaltString::encode_b64(&salt_bytes).map_err(ApiError::internal)?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(ApiError::internal)
}

/// Checks a password against a stored argon2 hash.
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A new random bearer token (shown once) and the hash that is stored.
pub fn new_token() -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = format!("tdg_{}", hex::encode(bytes));
    let hash = token_hash(&token);
    (token, hash)
}

/// The stored form of a token.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The authenticated caller: an active user with a live session.
#[derive(Debug, Clone)]
pub struct AuthUser {
    /// The user.
    pub user: User,
    /// Hash of the token used, to revoke it on logout.
    pub token_hash: String,
    /// Public id of the session the token opened (what the device list shows).
    pub session_id: String,
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthenticated("send Authorization: Bearer <token>"))?;
        let token = bearer_token(header).ok_or_else(|| {
            ApiError::unauthenticated("the Authorization header must be 'Bearer <token>'")
        })?;
        let caller = authenticate(state, token).await?;
        // Charged only once the token is known to be good: made-up tokens cost no budget state.
        crate::limits::charge(parts, state, &caller.token_hash)?;
        Ok(caller)
    }
}

/// The token of an `Authorization: Bearer <token>` header value (scheme case-insensitive).
pub fn bearer_token(header: &axum::http::HeaderValue) -> Option<&str> {
    header
        .to_str()
        .ok()
        .and_then(|h| h.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|t| !t.is_empty())
}

/// Resolves a bearer token (from a header, a handshake or a query argument) to its caller,
/// and pushes the session's expiry forward when it was last pushed `[sessions] refresh`
/// ago or more (at most one write per session per interval, off the request's path).
pub async fn authenticate(state: &AppState, token: &str) -> Result<AuthUser, ApiError> {
    if crate::integration::auth::is_service_key(token) {
        return Err(crate::integration::error::BusError::ServiceKeyNotAllowed.into());
    }
    let token_hash = token_hash(token);
    let session = match state.store.session(token_hash.clone()).await? {
        SessionLookup::Live(session) => session,
        SessionLookup::Expired => {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "session_expired",
                "this session expired after going unused; log in again",
            ));
        }
        SessionLookup::Unknown => {
            return Err(ApiError::unauthenticated("the token is unknown or revoked"));
        }
    };
    match session.user.status {
        UserStatus::Active => {}
        UserStatus::Suspended => {
            return Err(ApiError::forbidden(
                "account_suspended",
                "this account is suspended",
            ));
        }
        UserStatus::Deleted => return Err(ApiError::unauthenticated("this account was deleted")),
    }
    let sessions = state.config.sessions;
    let refresh_ms = i64::try_from(sessions.refresh.as_millis()).unwrap_or(i64::MAX);
    if unix_now_ms().saturating_sub(session.last_used_ms) >= refresh_ms {
        let store = state.store.clone();
        let hash = token_hash.clone();
        tokio::spawn(async move {
            if let Err(e) = store.touch_session(hash, sessions.ttl).await {
                tracing::warn!(error = %e, "could not refresh a session's expiry");
            }
        });
    }
    Ok(AuthUser {
        user: session.user,
        token_hash,
        session_id: session.id,
    })
}

/// Deletes the rows of sessions that ended more than `[sessions] keep_ended_seconds` ago,
/// now and then every `prune_interval_seconds`, until the store closes. Each node of a
/// cluster runs its own: the delete is idempotent, so overlapping runs do no harm.
pub fn start_session_pruner(store: tidings_store::Store, sessions: crate::config::SessionConfig) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(sessions.prune_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match store.prune_sessions(sessions.keep_ended).await {
                Ok(0) => {}
                Ok(pruned) => tracing::info!(pruned, "ended sessions pruned"),
                Err(tidings_store::StoreError::Closed) => return,
                Err(e) => tracing::warn!(error = %e, "could not prune ended sessions"),
            }
        }
    });
}

/// Now, in unix milliseconds.
fn unix_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// What a sign-in records about the device: its `User-Agent` (cut to 256 characters) and
/// the peer address of its connection. Never rejects: both are optional.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    /// The `User-Agent` header, if any.
    pub user_agent: Option<String>,
    /// The connection's peer address, if known.
    pub ip: Option<String>,
}

/// Longest user agent kept with a session.
const MAX_USER_AGENT_CHARS: usize = 256;

impl<S: Send + Sync> FromRequestParts<S> for ClientInfo {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let user_agent = parts
            .headers
            .get(axum::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(MAX_USER_AGENT_CHARS).collect::<String>())
            .filter(|v| !v.trim().is_empty());
        let ip = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|info| info.0.ip().to_string());
        Ok(ClientInfo { user_agent, ip })
    }
}

/// An authenticated admin.
#[derive(Debug, Clone)]
pub struct AdminUser(pub User);

impl FromRequestParts<AppState> for AdminUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let AuthUser { user, .. } = AuthUser::from_request_parts(parts, state).await?;
        if !user.is_admin {
            return Err(ApiError::forbidden("admin_only", "only admins can do this"));
        }
        Ok(AdminUser(user))
    }
}
