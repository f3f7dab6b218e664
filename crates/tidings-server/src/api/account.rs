//! A person's own account: the devices signed in to it, changing its password, deleting it.
//!
//! Every operation here acts on the caller only (`/me/...`): nobody names another user's
//! session or account. Password change and deletion ask for the current password again, so a
//! token left on a shared computer cannot lock its owner out or erase them.

use crate::AppState;
use crate::api::users::{check_password, hash_password_blocking, verify_password_blocking};
use crate::auth::AuthUser;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiPath};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tidings_store::model::{SessionInfo, UserStatus};
use utoipa::ToSchema;

/// The caller's signed-in devices.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionList {
    /// Live sessions, most recently used first; `current` marks the one asking.
    pub items: Vec<SessionInfo>,
}

/// Password change request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChangeBody {
    /// The password in use now.
    #[schema(min_length = 1, max_length = 1024)]
    pub current_password: String,
    /// The new password: 8 to 1024 characters, as at sign-up.
    #[schema(min_length = 8, max_length = 1024)]
    pub new_password: String,
}

/// What a password change did.
#[derive(Debug, Serialize, ToSchema)]
pub struct PasswordChanged {
    /// How many other sessions were signed out (the caller's stays).
    pub revoked_sessions: usize,
}

/// Account deletion request: the password, to confirm.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteAccountBody {
    /// The account's password.
    #[schema(min_length = 1, max_length = 1024)]
    pub password: String,
}

/// The devices signed in to the caller's account.
#[utoipa::path(get, path = "/api/v1/me/sessions", tag = "account", security(("bearer" = [])),
    responses(
        (status = 200, body = SessionList),
        (status = 401, body = ErrorBody, description = "`unauthenticated` (no, unknown or revoked token) or `session_expired`"),
        (status = 403, body = ErrorBody, description = "`account_suspended`"),
    ))]
pub async fn list_sessions(
    State(state): State<AppState>,
    auth: AuthUser,
) -> ApiResult<Json<SessionList>> {
    let items = state
        .store
        .sessions_of(auth.user.id, auth.token_hash)
        .await?;
    Ok(Json(SessionList { items }))
}

/// Sign one device out: its token stops working on every node at once.
#[utoipa::path(delete, path = "/api/v1/me/sessions/{id}", tag = "account", security(("bearer" = [])),
    params(("id" = String, Path, description = "A session id from `GET /api/v1/me/sessions`")),
    responses(
        (status = 204, description = "signed out"),
        (status = 401, body = ErrorBody, description = "`unauthenticated` or `session_expired`"),
        (status = 403, body = ErrorBody, description = "`account_suspended`"),
        (status = 404, body = ErrorBody, description = "`not_found`: the caller has no live session with that id"),
    ))]
pub async fn revoke_session(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    state.store.revoke_session_by_id(auth.user.id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Checks the caller's password (off the async threads); `wrong_password` if it does not match.
async fn confirm_password(state: &AppState, auth: &AuthUser, password: String) -> ApiResult<()> {
    let (user, hash) = state.store.user_with_password(&auth.user.username).await?;
    let wrong =
        || ApiError::forbidden("wrong_password", "the password given is not this account's");
    let Some(hash) = hash else {
        return Err(wrong());
    };
    let matches = verify_password_blocking(password, hash).await?;
    if !matches || user.status != UserStatus::Active {
        return Err(wrong());
    }
    Ok(())
}

/// Change the caller's password: every other session is signed out, this one stays.
#[utoipa::path(put, path = "/api/v1/me/password", request_body = PasswordChangeBody, tag = "account", security(("bearer" = [])),
    responses(
        (status = 200, body = PasswordChanged),
        (status = 400, body = ErrorBody, description = "`invalid_password` (the new one is not 8 to 1024 characters) or `invalid_json`"),
        (status = 401, body = ErrorBody, description = "`unauthenticated` or `session_expired`"),
        (status = 403, body = ErrorBody, description = "`wrong_password` (the current password does not match; nothing changed) or `account_suspended`"),
        (status = 413, body = ErrorBody, description = "`body_too_large`"),
        (status = 415, body = ErrorBody, description = "`unsupported_media_type`: send `application/json`"),
    ))]
pub async fn change_password(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiJson(body): ApiJson<PasswordChangeBody>,
) -> ApiResult<Json<PasswordChanged>> {
    check_password(&body.new_password)?;
    confirm_password(&state, &auth, body.current_password).await?;
    let hash = hash_password_blocking(body.new_password).await?;
    let revoked_sessions = state
        .store
        .change_password(auth.user.id, hash, auth.token_hash)
        .await?;
    tracing::info!(user = %auth.user.username, revoked_sessions, "password changed");
    Ok(Json(PasswordChanged { revoked_sessions }))
}

/// Delete the caller's own account, as an admin deletion does: every session ends, the name
/// stays taken, and what the account published stays in the log shown as from a deleted
/// account.
#[utoipa::path(delete, path = "/api/v1/me", request_body = DeleteAccountBody, tag = "account", security(("bearer" = [])),
    responses(
        (status = 204, description = "deleted"),
        (status = 400, body = ErrorBody, description = "`invalid_json`: the body must carry the password"),
        (status = 401, body = ErrorBody, description = "`unauthenticated` or `session_expired`"),
        (status = 403, body = ErrorBody, description = "`wrong_password` (nothing changed) or `account_suspended`"),
        (status = 413, body = ErrorBody, description = "`body_too_large`"),
        (status = 415, body = ErrorBody, description = "`unsupported_media_type`: send `application/json`"),
    ))]
pub async fn delete_account(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiJson(body): ApiJson<DeleteAccountBody>,
) -> ApiResult<StatusCode> {
    confirm_password(&state, &auth, body.password).await?;
    state
        .store
        .set_user_status(&auth.user.username, UserStatus::Deleted)
        .await?;
    tracing::info!(user = %auth.user.username, "account deleted by its owner");
    Ok(StatusCode::NO_CONTENT)
}
