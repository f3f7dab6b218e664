//! Authentication: argon2 password hashes, random bearer tokens stored hashed, and the
//! extractors that make every handler state who may call it.

use crate::AppState;
use crate::error::ApiError;
use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use rand::RngCore;
use sha2::{Digest, Sha256};
use tidings_store::model::{User, UserStatus};

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

/// Resolves a bearer token (from a header, a handshake or a query argument) to its caller.
pub async fn authenticate(state: &AppState, token: &str) -> Result<AuthUser, ApiError> {
    let token_hash = token_hash(token);
    let user = state
        .store
        .session_user(token_hash.clone())
        .await?
        .ok_or_else(|| ApiError::unauthenticated("the token is unknown or revoked"))?;
    match user.status {
        UserStatus::Active => Ok(AuthUser { user, token_hash }),
        UserStatus::Suspended => Err(ApiError::forbidden(
            "account_suspended",
            "this account is suspended",
        )),
        UserStatus::Deleted => Err(ApiError::unauthenticated("this account was deleted")),
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
