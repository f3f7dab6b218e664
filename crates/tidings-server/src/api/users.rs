//! Sign-up, sessions, profiles, and admin moderation of users.

use crate::AppState;
use crate::auth::{AdminUser, AuthUser, ClientInfo, hash_password, new_token, verify_password};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath};
use crate::limits::ClientIp;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tidings_core::expr::normalize_slug;
use tidings_store::model::{NewSession, SessionInfo, User, UserStatus};
use utoipa::ToSchema;

/// Sign-up request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignupBody {
    /// Lowercase slug, 1–63 characters (`fs-` is reserved for the FeedStream profile).
    #[schema(pattern = "^(?!fs-)[a-z0-9][a-z0-9_-]{0,62}$")]
    pub username: String,
    /// 8 to 1024 characters.
    #[schema(min_length = 8, max_length = 1024)]
    pub password: String,
    /// Shown name, at most 100 printable characters (defaults to the username when blank).
    #[schema(max_length = 100, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$")]
    pub display_name: Option<String>,
}

/// Login request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    /// Username.
    pub username: String,
    /// Password.
    pub password: String,
}

/// A new session.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionBody {
    /// Bearer token; shown once.
    pub token: String,
    /// Who logged in.
    pub user: User,
    /// The session as the device list shows it (its id, when it expires unless used).
    pub session: SessionInfo,
}

/// Checks a username; clear 400s.
pub fn check_username(raw: &str) -> ApiResult<String> {
    let name = normalize_slug(raw).map_err(|e| {
        ApiError::bad_request("invalid_username", format!("username: {}", e.message))
    })?;
    if name != raw {
        return Err(ApiError::bad_request(
            "invalid_username",
            "username must be lowercase letters, digits, '-' or '_' (1–63 characters)",
        ));
    }
    // FeedStream's producers and consumers get users under this prefix (`compat::feedstream`).
    if name.starts_with(crate::compat::feedstream::USER_PREFIX) {
        return Err(ApiError::bad_request(
            "invalid_username",
            "usernames starting with \"fs-\" are reserved for the FeedStream profile",
        ));
    }
    Ok(name)
}

/// Checks a password's length.
pub fn check_password(password: &str) -> ApiResult<()> {
    let n = password.chars().count();
    if !(8..=1024).contains(&n) {
        return Err(ApiError::bad_request(
            "invalid_password",
            "password must be 8 to 1024 characters",
        ));
    }
    Ok(())
}

/// Checks a display name as sent (so a blank-padded or control-laden name is refused rather
/// than trimmed into shape: the document's `maxLength` and `pattern` say the same), then trims it.
pub fn check_display_name(raw: Option<&str>, fallback: &str) -> ApiResult<String> {
    if let Some(raw) = raw
        && (raw.chars().count() > 100 || raw.chars().any(char::is_control))
    {
        return Err(ApiError::bad_request(
            "invalid_display_name",
            "display_name must be at most 100 printable characters",
        ));
    }
    let name = raw
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or(fallback);
    Ok(name.to_owned())
}

/// Hashes off the async threads (argon2 is slow on purpose).
pub async fn hash_password_blocking(password: String) -> ApiResult<String> {
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(ApiError::internal)?
}

/// Checks a password against its hash off the async threads (argon2 is slow on purpose).
pub async fn verify_password_blocking(password: String, hash: String) -> ApiResult<bool> {
    tokio::task::spawn_blocking(move || verify_password(&password, &hash))
        .await
        .map_err(ApiError::internal)
}

/// Sign up.
#[utoipa::path(post, path = "/api/v1/users", request_body = SignupBody, tag = "users",
    responses((status = 201, body = User), (status = 400), (status = 403, description = "registration closed"), (status = 409, description = "username taken")))]
pub async fn signup(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<SignupBody>,
) -> ApiResult<(StatusCode, Json<User>)> {
    if !state.config.registration_open {
        return Err(ApiError::forbidden(
            "registration_closed",
            "registration is closed on this instance",
        ));
    }
    let username = check_username(&body.username)?;
    check_password(&body.password)?;
    let display_name = check_display_name(body.display_name.as_deref(), &username)?;
    // Counted before the (slow) hash and the store: taken usernames count too, so probing
    // for them is limited as well.
    state.limiters.signup_attempt(ip)?;
    let hash = hash_password_blocking(body.password).await?;
    let user = state
        .store
        .create_user(username, display_name, Some(hash), false)
        .await?;
    Ok((StatusCode::CREATED, Json(user)))
}

/// Log in: returns a bearer token.
#[utoipa::path(post, path = "/api/v1/sessions", request_body = LoginBody, tag = "users",
    responses((status = 201, body = SessionBody), (status = 401, description = "wrong username or password"), (status = 403, description = "suspended")))]
pub async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    client: ClientInfo,
    ApiJson(body): ApiJson<LoginBody>,
) -> ApiResult<(StatusCode, Json<SessionBody>)> {
    let limiters = &state.limiters;
    limiters.login_attempt(&body.username, ip)?;
    let wrong = || {
        limiters.login_failed(&body.username, ip);
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "wrong username or password",
        )
    };
    let (user, hash) = match state.store.user_with_password(&body.username).await {
        Ok(found) => found,
        Err(tidings_store::StoreError::NotFound { .. }) => return Err(wrong()),
        Err(e) => return Err(e.into()),
    };
    let Some(hash) = hash else {
        return Err(wrong());
    };
    let ok = verify_password_blocking(body.password.clone(), hash).await?;
    if !ok || user.status == UserStatus::Deleted {
        return Err(wrong());
    }
    limiters.login_succeeded(&body.username, ip);
    if user.status == UserStatus::Suspended {
        return Err(ApiError::forbidden(
            "account_suspended",
            "this account is suspended",
        ));
    }
    let (token, token_hash) = new_token();
    let session = state
        .store
        .open_session(
            user.id,
            NewSession {
                token_hash,
                ttl: state.config.sessions.ttl,
                user_agent: client.user_agent,
                // The address the limits see (a trusted proxy's header when configured).
                ip: Some(ip.to_string()),
            },
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(SessionBody {
            token,
            user,
            session,
        }),
    ))
}

/// Log out: revokes the token used.
#[utoipa::path(delete, path = "/api/v1/sessions/current", tag = "users", security(("bearer" = [])),
    responses((status = 204), (status = 401)))]
pub async fn logout(State(state): State<AppState>, auth: AuthUser) -> ApiResult<StatusCode> {
    state.store.revoke_session(auth.token_hash).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller.
#[utoipa::path(get, path = "/api/v1/me", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = User), (status = 401)))]
pub async fn me(auth: AuthUser) -> Json<User> {
    Json(auth.user)
}

/// A user's profile.
#[utoipa::path(get, path = "/api/v1/users/{username}", tag = "users", security(("bearer" = [])),
    params(("username" = String, Path)), responses((status = 200, body = User), (status = 404)))]
pub async fn get_user(
    State(state): State<AppState>,
    _auth: AuthUser,
    ApiPath(username): ApiPath<String>,
) -> ApiResult<Json<User>> {
    Ok(Json(state.store.user(&username).await?))
}

async fn set_status(state: &AppState, username: &str, status: UserStatus) -> ApiResult<User> {
    Ok(state.store.set_user_status(username, status).await?)
}

/// Suspend a user (admin): it can no longer log in, publish or read; its sessions are revoked.
#[utoipa::path(post, path = "/api/v1/users/{username}/suspend", tag = "admin", security(("bearer" = [])),
    params(("username" = String, Path)), responses((status = 200, body = User), (status = 403), (status = 404), (status = 409, description = "`cannot_suspend_self`")))]
pub async fn suspend(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    ApiPath(username): ApiPath<String>,
) -> ApiResult<Json<User>> {
    if admin.username == username {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "cannot_suspend_self",
            "admins cannot suspend themselves",
        ));
    }
    Ok(Json(
        set_status(&state, &username, UserStatus::Suspended).await?,
    ))
}

/// Lift a suspension (admin).
#[utoipa::path(post, path = "/api/v1/users/{username}/unsuspend", tag = "admin", security(("bearer" = [])),
    params(("username" = String, Path)), responses((status = 200, body = User), (status = 403), (status = 404)))]
pub async fn unsuspend(
    State(state): State<AppState>,
    AdminUser(_admin): AdminUser,
    ApiPath(username): ApiPath<String>,
) -> ApiResult<Json<User>> {
    Ok(Json(
        set_status(&state, &username, UserStatus::Active).await?,
    ))
}

/// Delete a user (admin, or the user itself): sessions revoked, activities kept in the log.
#[utoipa::path(delete, path = "/api/v1/users/{username}", tag = "admin", security(("bearer" = [])),
    params(("username" = String, Path)), responses((status = 204), (status = 403), (status = 404)))]
pub async fn delete_user(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(username): ApiPath<String>,
) -> ApiResult<StatusCode> {
    if !auth.user.is_admin && auth.user.username != username {
        return Err(ApiError::forbidden(
            "admin_only",
            "only admins delete other users",
        ));
    }
    set_status(&state, &username, UserStatus::Deleted).await?;
    Ok(StatusCode::NO_CONTENT)
}
